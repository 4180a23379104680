"""Structural checks of the deploy/ manifests, offline (no cluster, no schema).

    validate.py [--passed N --failed M] [--render DIR]... [--rendered NAME=FILE]...
                [--manifest FILE]... [--kind-config FILE] [--containerd-snippet FILE]...
                [--dockerfile FILE] [--chat-overlay NAME=REGISTRY] [--selftest REPO]

--rendered   output of `kubectl kustomize DIR` (NAME is DIR, relative to the repo)
--render     a kustomization DIR to render here, with the subset of kustomize
             this repository uses (no kubectl): resources, namespace,
             configMapGenerator and secretGenerator with literals, images
             (name, newName, newTag, digest); no name hashes
--manifest   a plain manifest file (kubectl apply -f)
--chat-overlay  the render NAME is an overlay of deploy/k8s/chat (as
             registry-overlay.sh writes) whose Wasm images must all be
             REGISTRY/chat/<service>:latest; checked like the base otherwise
--selftest   then break copies of REPO/deploy in known ways (an exec probe on a
             Wasm pod, a missing runtimeClassName, an undefined $(VAR), a
             misspelled Service in a URL, ...) and check that each is caught
Upstreams are addressed by Service name (cluster DNS; the shim hands Wasm
guests the pod's resolv.conf), so the <SERVICE>_SERVICE_HOST/_PORT variables
kubelet injects with service links are not modeled: a $(VAR) must be defined
earlier in its container, and the host of every *_URL variable must be a
Service of the manifests, its port one the Service exposes.
Prints PASS/FAIL lines and, last, "N passed, M failed" (adding --passed and
--failed, counts of checks run before this script); exits 1 on any failure.
Needs PyYAML; tomllib (Python 3.11+) for the TOML checks, else they are skipped.
"""

import argparse
import base64
import os
import re
import sys
import urllib.parse

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

HANDLER = "wasmtime"
RUNTIME_TYPE = "io.containerd.wasmtime.v1"
NODE_LABEL = "wasmtime.containerd.io/enabled"
CHAT_SERVICES = ["session", "chat", "message", "user", "truncator", "gateway"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
CLUSTER_SCOPED = {
    "Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "PersistentVolume", "Node", "CustomResourceDefinition", "PriorityClass",
    "PodSecurityPolicy", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class Checks:
    def __init__(self, passed=0, failed=0):
        self.passed, self.failed = passed, failed

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}")
            for line in str(detail).splitlines()[:20]:
                print(f"     | {line}")
        return ok

    def note(self, text):
        print(f"note: {text}")


# ---------------------------------------------------------------- loading

def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render_subset(directory, seen=None):
    """Renders a kustomization with the subset of kustomize used here."""
    seen = set() if seen is None else seen
    directory = os.path.realpath(directory)
    if directory in seen:
        raise ValueError(f"cycle through {directory}")
    seen.add(directory)
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f) or {}
    supported = {"apiVersion", "kind", "resources", "namespace", "configMapGenerator", "secretGenerator", "images"}
    unknown = set(k) - supported
    if unknown:
        raise ValueError(f"{directory}: the built-in renderer does not support {sorted(unknown)}; install kubectl")
    docs = []
    for res in k.get("resources", []):
        path = os.path.join(directory, res)
        if os.path.isdir(path):
            docs.extend(render_subset(path, seen))
        else:
            docs.extend(load_docs(path))
    for gen_key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for gen in k.get(gen_key, []):
            extra = set(gen) - {"name", "literals"}
            if extra:
                raise ValueError(f"{directory}: {gen_key} fields {sorted(extra)} not supported by the built-in renderer")
            data = {}
            for lit in gen.get("literals", []):
                key, _, value = lit.partition("=")
                data[key] = value
            doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}}
            if kind == "Secret":
                doc["type"] = "Opaque"
                doc["data"] = {key: base64.b64encode(v.encode()).decode() for key, v in data.items()}
            else:
                doc["data"] = data
            docs.append(doc)
    apply_images(directory, docs, k.get("images") or [])
    if k.get("namespace"):
        for d in docs:
            if isinstance(d, dict) and d.get("kind") not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    return docs


def split_image(image):
    """(name, tag or None, digest or None) of an image reference."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def apply_images(directory, docs, images):
    """kustomize's `images:` transformer, for the containers of workloads."""
    for entry in images:
        extra = set(entry) - {"name", "newName", "newTag", "digest"}
        if extra or not entry.get("name"):
            raise ValueError(f"{directory}: images entry {entry} not supported by the built-in renderer")
        for d in docs:
            if not isinstance(d, dict) or d.get("kind") not in WORKLOAD_KINDS:
                continue
            for c in containers(pod_spec(d)):
                name, tag, digest = split_image(str(c.get("image", "")))
                if name != entry["name"]:
                    continue
                name = entry.get("newName", name)
                if "digest" in entry:
                    tag, digest = None, entry["digest"]
                elif "newTag" in entry:
                    tag, digest = str(entry["newTag"]), None
                c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# ---------------------------------------------------------------- helpers

def meta(d):
    return d.get("metadata") or {}


def ident(d):
    m = meta(d)
    return f"{d.get('kind')}/{m.get('namespace', '-')}/{m.get('name')}"


def pod_spec(d):
    if d.get("kind") == "Pod":
        return d.get("spec") or {}
    return ((d.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(d):
    if d.get("kind") == "Pod":
        return meta(d).get("labels") or {}
    return (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def containers(spec):
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def probes(c):
    return {k: c[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if c.get(k)}


def find(docs, kind, name_prefix=None, generated=False):
    """Documents of a kind; with a name prefix, the name or (generated) name-<hash>."""
    out = []
    for d in docs:
        if d.get("kind") != kind:
            continue
        name = meta(d).get("name", "")
        if name_prefix is None or name == name_prefix or (generated and re.fullmatch(re.escape(name_prefix) + r"-[a-z0-9]{10}", name)):
            out.append(d)
    return out


def service_ports(docs):
    """{(namespace, Service name): the ports it exposes}."""
    return {(meta(s).get("namespace"), meta(s).get("name")): {p.get("port") for p in (s.get("spec") or {}).get("ports") or []}
            for s in find(docs, "Service")}


def service_of_host(host, namespace):
    """(namespace, name) of the Service a cluster DNS name means from a pod in
    namespace: name, name.ns, name.ns.svc or name.ns.svc.cluster.local; None
    for anything else (an IP address, an outside name)."""
    labels = host.lower().split(".")
    if len(labels) == 1 or labels[2:] in ([], ["svc"], ["svc", "cluster", "local"]):
        return (labels[1] if len(labels) > 1 else namespace), labels[0]
    return None


def container_env(docs, namespace, c):
    """The environment kubelet would give container c (values expanded)."""
    env, unresolved = {}, []
    by_name = {(d.get("kind"), meta(d).get("name")): d for d in docs if meta(d).get("namespace") == namespace}

    def data_of(kind, name):
        d = by_name.get((kind, name))
        if d is None:
            return None
        data = d.get("data") or {}
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return data

    for ef in c.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in ef:
                data = data_of(kind, ef[key]["name"])
                if data is None:
                    unresolved.append(f"envFrom {kind} {ef[key]['name']} not found")
                else:
                    env.update({ef.get("prefix", "") + k: v for k, v in data.items()})
    for e in c.get("env") or []:
        if "value" in e:
            def sub(m):
                name = m.group(1)
                if name in env:
                    return env[name]
                unresolved.append(f"{e['name']}: $({name}) is not defined before it")
                return m.group(0)
            env[e["name"]] = VAR_REF.sub(sub, str(e["value"]))
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in vf:
                    data = data_of(kind, vf[key]["name"])
                    if data is None or vf[key]["key"] not in data:
                        unresolved.append(f"{e['name']}: {kind} {vf[key]['name']} has no key {vf[key]['key']}")
                    else:
                        env[e["name"]] = data[vf[key]["key"]]
            if "fieldRef" in vf:
                env[e["name"]] = f"<{vf['fieldRef']['fieldPath']}>"
    return env, unresolved


# ---------------------------------------------------------------- checks

def check_documents(ck, name, docs):
    bad = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            bad.append(f"document {i} is not a mapping")
            continue
        for field in ("apiVersion", "kind"):
            if not isinstance(d.get(field), str) or not d.get(field):
                bad.append(f"document {i} ({ident(d)}) has no {field}")
        n = meta(d).get("name")
        if not isinstance(n, str) or not n:
            bad.append(f"document {i} ({d.get('kind')}) has no metadata.name")
        elif not DNS_SUBDOMAIN.match(n) or len(n) > 253:
            bad.append(f"{ident(d)}: name is not a DNS subdomain")
    ck.check(not bad and docs, f"{name}: {len(docs)} documents, each with apiVersion, kind and a valid metadata.name", "\n".join(bad) or "no documents")
    ids = [f"{d.get('apiVersion', '').split('/')[0] if '/' in d.get('apiVersion', '') else ''}:{ident(d)}" for d in docs if isinstance(d, dict)]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    ck.check(not dup, f"{name}: no object defined twice", "\n".join(dup))


def check_workloads(ck, name, docs):
    for d in docs:
        if d.get("kind") not in WORKLOAD_KINDS:
            continue
        spec, label = pod_spec(d), f"{name}: {d['kind']} {meta(d).get('name')}"
        if d["kind"] != "Pod":
            sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            labels = pod_labels(d)
            ck.check(sel and all(labels.get(k) == v for k, v in sel.items()),
                     f"{label}: selector matches the pod template's labels", f"selector {sel}, labels {labels}")
        cs = containers(spec)
        ck.check(cs and all(c.get("name") and c.get("image") for c in cs) and len({c['name'] for c in cs}) == len(cs),
                 f"{label}: containers have unique names and an image")
        if spec.get("runtimeClassName") == HANDLER:
            check_wasm_pod(ck, label, spec)


def check_wasm_pod(ck, label, spec):
    bad = []
    for c in containers(spec):
        ports = {p.get("name") for p in c.get("ports") or []} | {p.get("containerPort") for p in c.get("ports") or []}
        for kind, p in probes(c).items():
            handlers = [h for h in ("exec", "tcpSocket", "httpGet", "grpc") if h in p]
            if handlers == ["exec"]:
                # An exec in a Wasm container runs another Wasm command from
                # its rootfs (CRI ExecSync): no shell, no native program.
                cmd = (p["exec"].get("command") or [""])[0]
                if not cmd.endswith((".wasm", ".wat")):
                    bad.append(f"{c['name']}.{kind} execs {cmd!r}: in a Wasm container an exec probe must run a Wasm command (.wasm/.wat)")
                continue
            if handlers != ["tcpSocket"] and handlers != ["httpGet"]:
                bad.append(f"{c['name']}.{kind} uses {handlers or 'nothing'}: Wasm containers need tcpSocket, httpGet or an exec of a Wasm command")
                continue
            port = p[handlers[0]].get("port")
            if port not in ports:
                bad.append(f"{c['name']}.{kind} probes port {port!r}, which the container does not declare")
        for hook, h in ((c.get("lifecycle") or {}).items()):
            if "exec" in (h or {}):
                bad.append(f"{c['name']}: lifecycle {hook} exec cannot run in a Wasm container")
        if c.get("tty") or c.get("stdin"):
            bad.append(f"{c['name']}: tty/stdin: terminals are not emulated for Wasm containers")
    ck.check(not bad, f"{label}: runtimeClassName wasmtime; probes are tcpSocket/httpGet on declared ports or exec a Wasm command, no tty", "\n".join(bad))


def check_services(ck, name, docs):
    workloads = [d for d in docs if d.get("kind") in WORKLOAD_KINDS]
    for s in find(docs, "Service"):
        spec, ns = s.get("spec") or {}, meta(s).get("namespace")
        sel = spec.get("selector") or {}
        targets = [w for w in workloads if meta(w).get("namespace") == ns and sel and all(pod_labels(w).get(k) == v for k, v in sel.items())]
        problems = [] if targets else [f"selector {sel} matches no pod template"]
        for port in spec.get("ports") or []:
            tp = port.get("targetPort", port.get("port"))
            declared = [p for w in targets for c in containers(pod_spec(w)) for p in c.get("ports") or []]
            if not any(tp in (p.get("name"), p.get("containerPort")) for p in declared):
                problems.append(f"targetPort {tp!r} is no containerPort of the selected pods")
        ck.check(not problems, f"{name}: Service {meta(s).get('name')} selects pods and their ports", "\n".join(problems))


def check_env(ck, name, docs):
    for d in docs:
        if d.get("kind") not in WORKLOAD_KINDS:
            continue
        ns, spec = meta(d).get("namespace"), pod_spec(d)
        problems = []
        for c in containers(spec):
            env, unresolved = container_env(docs, ns, c)
            problems += [f"{c['name']}: {u}" for u in unresolved]
            for arg in (c.get("command") or []) + (c.get("args") or []):
                for var in VAR_REF.findall(str(arg)):
                    if var not in env:
                        problems.append(f"{c['name']}: $({var}) in command/args is not defined")
        if any(c.get("env") or c.get("envFrom") for c in containers(spec)):
            ck.check(not problems, f"{name}: {d['kind']} {meta(d).get('name')}: every env reference and $(VAR) resolves", "\n".join(problems))


def check_upstreams(ck, name, docs):
    """Each *_URL variable names a Service of these manifests and a port it exposes."""
    services = service_ports(docs)
    for d in docs:
        if d.get("kind") not in WORKLOAD_KINDS:
            continue
        ns, spec = meta(d).get("namespace"), pod_spec(d)
        problems, urls = [], 0
        for c in containers(spec):
            env, _ = container_env(docs, ns, c)
            for var, value in sorted(env.items()):
                if not var.endswith("_URL") or VAR_REF.search(value):
                    continue  # an unresolved $(VAR) is check_env's to report
                urls += 1
                where = f"{c['name']}: {var}"
                try:
                    u = urllib.parse.urlsplit(value)
                    host, port = u.hostname, u.port
                except ValueError as e:
                    problems.append(f"{where} is no URL ({e})")
                    continue
                svc = service_of_host(host, ns) if host else None
                if svc is None:
                    problems.append(f"{where}: host {host!r} is not a Service name")
                elif svc not in services:
                    known = ", ".join(sorted(n for s_ns, n in services if s_ns == svc[0])) or "none"
                    problems.append(f"{where}: host {host!r}: no Service {svc[1]} in namespace {svc[0]} (Services there: {known})")
                elif port is None:
                    problems.append(f"{where}: no port (Service {svc[1]} exposes {sorted(services[svc])})")
                elif port not in services[svc]:
                    problems.append(f"{where}: port {port}: Service {svc[1]} exposes {sorted(services[svc])}, not {port}")
        if urls or problems:
            ck.check(not problems, f"{name}: {d['kind']} {meta(d).get('name')}: upstream URLs name Services and ports they expose", "\n".join(problems))


def check_runtimeclass(ck, name, docs, expect=True):
    rcs = find(docs, "RuntimeClass")
    if not expect and not rcs:
        return
    ck.check(len(rcs) == 1, f"{name}: includes one RuntimeClass", f"found {len(rcs)}")
    for rc in rcs:
        sched = ((rc.get("scheduling") or {}).get("nodeSelector")) or {}
        ck.check(rc.get("apiVersion") == "node.k8s.io/v1" and meta(rc).get("name") == HANDLER and rc.get("handler") == HANDLER
                 and "namespace" not in meta(rc) and sched == {NODE_LABEL: "true"},
                 f"{name}: RuntimeClass wasmtime (node.k8s.io/v1, handler wasmtime, nodeSelector {NODE_LABEL}=\"true\", cluster-scoped)",
                 yaml.safe_dump(rc))


def check_chat(ck, name, docs, registry=None):
    """The chat app; with registry, an overlay pulling its Wasm images from there."""
    namespaced = [d for d in docs if d.get("kind") not in CLUSTER_SCOPED]
    ck.check(all(meta(d).get("namespace") == "chat" for d in namespaced) and find(docs, "Namespace", "chat"),
             f"{name}: everything namespaced is in namespace chat, which it creates",
             "\n".join(ident(d) for d in namespaced if meta(d).get("namespace") != "chat"))
    for svc in CHAT_SERVICES:
        deps = find(docs, "Deployment", svc)
        if not ck.check(len(deps) == 1, f"{name}: Deployment {svc} exists"):
            continue
        spec = pod_spec(deps[0])
        cs = spec.get("containers") or []
        c = cs[0] if cs else {}
        ck.check(spec.get("runtimeClassName") == HANDLER, f"{name}: {svc} runs with runtimeClassName wasmtime")
        image = f"{registry or 'localhost'}/chat/{svc}:latest"
        ck.check(c.get("image") == image and c.get("imagePullPolicy") == "IfNotPresent",
                 f"{name}: {svc} image {image}, imagePullPolicy IfNotPresent", f"{c.get('image')} {c.get('imagePullPolicy')}")
        ck.check(c.get("readinessProbe") and c.get("livenessProbe"), f"{name}: {svc} has readiness and liveness probes")
        ck.check(find(docs, "Service", svc), f"{name}: Service {svc} exists")
    missing = []
    for d in docs:
        if d.get("kind") in WORKLOAD_KINDS:
            for c in containers(pod_spec(d)):
                r = c.get("resources") or {}
                for part in ("requests", "limits"):
                    if not all((r.get(part) or {}).get(x) for x in ("cpu", "memory")):
                        missing.append(f"{meta(d)['name']}/{c['name']}: {part}")
    ck.check(not missing, f"{name}: every container has cpu and memory requests and limits", "\n".join(missing))
    if registry:
        wasm = [(meta(d).get("name"), c) for d in docs if d.get("kind") in WORKLOAD_KINDS
                and pod_spec(d).get("runtimeClassName") == HANDLER for c in containers(pod_spec(d))]
        elsewhere = [f"{n}/{c.get('name')}: {c.get('image')}" for n, c in wasm if not str(c.get("image", "")).startswith(registry + "/")]
        ck.check(len(wasm) == len(CHAT_SERVICES) and not elsewhere,
                 f"{name}: all {len(CHAT_SERVICES)} Wasm containers pull from {registry}, and only Wasm pods run with runtimeClassName wasmtime",
                 "\n".join(elsewhere) or f"{len(wasm)} containers in wasmtime pods")

    mysql = find(docs, "StatefulSet", "mysql")
    ok = len(mysql) == 1
    if ok:
        spec = mysql[0]["spec"]
        c = pod_spec(mysql[0])["containers"][0]
        mounts = {m["name"] for m in c.get("volumeMounts") or []}
        vcts = {meta(v).get("name") for v in spec.get("volumeClaimTemplates") or []}
        ok = c.get("image") == "mysql:8" and vcts and vcts <= mounts and find(docs, "Service", spec.get("serviceName"))
    ck.check(ok, f"{name}: MySQL is a StatefulSet of mysql:8 with a volumeClaimTemplate mounted and its governing Service")
    redis = find(docs, "Deployment", "redis")
    ck.check(len(redis) == 1 and pod_spec(redis[0])["containers"][0].get("image") == "redis:7" and find(docs, "Service", "redis"),
             f"{name}: Redis is a Deployment of redis:7 with a Service")

    secrets = find(docs, "Secret", "chat-credentials", generated=True)
    configs = find(docs, "ConfigMap", "chat-config", generated=True)
    ck.check(len(secrets) == 1 and len(configs) == 1, f"{name}: credentials in a generated Secret, settings in a generated ConfigMap")
    if configs:
        ck.check((configs[0].get("data") or {}).get("TRUNCATOR_ENABLED") == "false", f"{name}: TRUNCATOR_ENABLED is \"false\"")
    literal_secrets = [ident(d) for d in find(docs, "Secret") if d not in secrets]
    ck.check(not literal_secrets, f"{name}: no other Secret", "\n".join(literal_secrets))

    # The environment each service would get, as kubelet expands it; each
    # upstream by the name of the right Service (check_upstreams checks that
    # the names and ports exist, this that each points where it should).
    expect = {
        "session": {"DATABASE_URL": r"mysql://[^:@/]+:[^@/]+@mysql:3306/chat", "LISTEN_PORT": "8081"},
        "chat": {"DATABASE_URL": r"mysql://.+@mysql:3306/chat", "LISTEN_PORT": "8082"},
        "message": {"DATABASE_URL": r"mysql://.+@mysql:3306/chat", "LISTEN_PORT": "8083"},
        "user": {"DATABASE_URL": r"mysql://.+@mysql:3306/chat", "REDIS_URL": r"redis://:[^@]+@redis:6379", "LISTEN_PORT": "8084"},
        "truncator": {"DATABASE_URL": r"mysql://.+@mysql:3306/chat", "REDIS_URL": r"redis://:[^@]+@redis:6379",
                      "LISTEN_PORT": "8085", "TRUNCATOR_ENABLED": "false"},
        "gateway": {"SESSION_URL": r"http://session:8081", "CHAT_URL": r"http://chat:8082",
                    "MESSAGE_URL": r"http://message:8083", "USER_URL": r"http://user:8084",
                    "TRUNCATOR_URL": r"http://truncator:8085", "WASI_HTTP_PORT": "3000", "STATIC_DIR": "/www"},
    }
    for svc, want in expect.items():
        deps = find(docs, "Deployment", svc)
        if not deps:
            continue
        spec = pod_spec(deps[0])
        env, unresolved = container_env(docs, "chat", spec["containers"][0])
        wrong = [f"{k}={env.get(k)!r} does not match {v}" for k, v in want.items() if not re.fullmatch(v, env.get(k) or "")]
        ck.check(not wrong and not unresolved, f"{name}: {svc} gets {', '.join(sorted(want))} as kubelet would expand them", "\n".join(wrong + unresolved))


def check_installer(ck, name, docs, dockerfile):
    ds = find(docs, "DaemonSet")
    if not ck.check(len(ds) == 1, f"{name}: one DaemonSet"):
        return
    spec = pod_spec(ds[0])
    cs = containers(spec)
    host_vols = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes") or [] if "hostPath" in v}
    install = [c for c in spec.get("initContainers") or [] if any("install.sh" in str(x) for x in c.get("command") or [])]
    ck.check(spec.get("hostPID") is True, f"{name}: hostPID (nsenter -t 1 reaches the node's systemd)")
    ck.check(install and all((c.get("securityContext") or {}).get("privileged") for c in install), f"{name}: install.sh runs in a privileged init container")
    ok = bool(install)
    for c in install:
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
        cmd = c.get("command") or []
        root = cmd[cmd.index("--host-root") + 1] if "--host-root" in cmd else None
        ok = ok and any(host_vols.get(n) == "/" and p == root for n, p in mounts.items())
        ok = ok and any(e.get("name") == "NODE_NAME" for e in c.get("env") or []) and "--label-node" in cmd
    ck.check(ok, f"{name}: the host's / is mounted where --host-root points; NODE_NAME is set for --label-node", str(host_vols))
    sa = spec.get("serviceAccountName")
    roles = [r for r in find(docs, "ClusterRole") if any("nodes" in (rule.get("resources") or []) and "patch" in (rule.get("verbs") or []) for rule in r.get("rules") or [])]
    bound = [b for b in find(docs, "ClusterRoleBinding") if any(s.get("name") == sa for s in b.get("subjects") or [])
             and any((b.get("roleRef") or {}).get("name") == meta(r)["name"] for r in roles)]
    ck.check(find(docs, "ServiceAccount", sa) and roles and bound, f"{name}: ServiceAccount {sa} may patch nodes (ClusterRole + binding)")
    if dockerfile:
        with open(dockerfile) as f:
            text = f.read()
        paths = {x for c in cs for x in (c.get("command") or []) if str(x).startswith("/opt/")}
        ck.check(all(p.rsplit("/", 1)[0] in text and p.rsplit("/", 1)[1] in text for p in paths),
                 f"{name}: the image ({os.path.basename(dockerfile)}) provides {', '.join(sorted(paths))}")


def check_toml_snippets(ck, files):
    if tomllib is None:
        ck.note("no tomllib (Python < 3.11): containerd snippets not parsed")
        return
    for path in files:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            ck.check(False, f"{path}: valid TOML", e)
            continue
        plugins = data.get("plugins") or {}
        found = [(p, ((v.get("containerd") or {}).get("runtimes") or {}).get(HANDLER, {}).get("runtime_type")) for p, v in plugins.items()]
        found = [f for f in found if f[1]]
        ok = found == [("io.containerd.grpc.v1.cri", RUNTIME_TYPE)] or found == [("io.containerd.cri.v1.runtime", RUNTIME_TYPE)]
        if "version" in data:
            ok = ok and data["version"] == 3 and found[0][0] == "io.containerd.cri.v1.runtime"
        ck.check(ok, f"{path}: registers handler {HANDLER} → {RUNTIME_TYPE} ({found[0][0] if found else 'nothing'})", str(found))


def check_kind_config(ck, path):
    docs = load_docs(path)
    c = docs[0] if docs else {}
    ck.check(len(docs) == 1 and c.get("kind") == "Cluster" and c.get("apiVersion") == "kind.x-k8s.io/v1alpha4",
             f"{path}: a kind Cluster (kind.x-k8s.io/v1alpha4)")
    nodes = c.get("nodes") or []
    mounted = [n for n in nodes if any(m.get("containerPath") == "/usr/local/bin/containerd-shim-wasmtime-v1" and m.get("hostPath") for m in n.get("extraMounts") or [])]
    ck.check(nodes and len(mounted) == len(nodes), f"{path}: every node mounts the shim at /usr/local/bin/containerd-shim-wasmtime-v1")
    ck.check(nodes and all((n.get("labels") or {}).get(NODE_LABEL) == "true" for n in nodes), f"{path}: every node has the RuntimeClass's label {NODE_LABEL}=true")
    if tomllib is None:
        return
    merged = {}
    for patch in c.get("containerdConfigPatches") or []:
        try:
            merged.update(tomllib.loads(patch))
        except tomllib.TOMLDecodeError as e:
            ck.check(False, f"{path}: containerdConfigPatches are valid TOML", e)
            return
    cri = (merged.get("plugins") or {}).get("io.containerd.grpc.v1.cri") or {}
    runtimes = (cri.get("containerd") or {}).get("runtimes") or {}
    ck.check((runtimes.get(HANDLER) or {}).get("runtime_type") == RUNTIME_TYPE,
             f"{path}: containerd patch registers handler {HANDLER} → {RUNTIME_TYPE} (config version 2 names)")
    ck.check(((runtimes.get("runc") or {}).get("options") or {}).get("SystemdCgroup") is False,
             f"{path}: runc uses cgroupfs, matching the kubelet patch")
    kubelet = [yaml.safe_load(p) for p in c.get("kubeadmConfigPatches") or []]
    ck.check(any((k or {}).get("kind") == "KubeletConfiguration" and k.get("cgroupDriver") == "cgroupfs" for k in kubelet),
             f"{path}: kubelet uses the cgroupfs driver")


def parse_args(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--passed", type=int, default=0)
    ap.add_argument("--failed", type=int, default=0)
    ap.add_argument("--rendered", action="append", default=[])
    ap.add_argument("--render", action="append", default=[])
    ap.add_argument("--manifest", action="append", default=[])
    ap.add_argument("--kind-config")
    ap.add_argument("--containerd-snippet", action="append", default=[])
    ap.add_argument("--dockerfile")
    ap.add_argument("--chat-overlay", action="append", default=[], metavar="NAME=REGISTRY")
    ap.add_argument("--selftest", metavar="REPO", help="check that the checks catch mistakes, on mutated copies of REPO/deploy")
    return ap.parse_args(argv)


def run(a):
    ck = Checks(a.passed, a.failed)
    renders = []
    for item in a.rendered:
        name, _, path = item.partition("=")
        try:
            renders.append((name, load_docs(path)))
        except yaml.YAMLError as e:
            ck.check(False, f"{name}: rendered output is YAML", e)
    for directory in a.render:
        try:
            docs = render_subset(directory)
        except (OSError, ValueError, yaml.YAMLError) as e:
            ck.check(False, f"{directory}: rendered with the built-in subset renderer", e)
            continue
        ck.check(True, f"{directory}: rendered with the built-in subset renderer")
        renders.append((directory, docs))
    for path in a.manifest:
        try:
            renders.append((path, load_docs(path)))
        except yaml.YAMLError as e:
            ck.check(False, f"{path}: valid YAML", e)

    overlays = dict(item.partition("=")[::2] for item in a.chat_overlay)
    for name, docs in renders:
        check_documents(ck, name, docs)
        docs = [d for d in docs if isinstance(d, dict)]
        check_workloads(ck, name, docs)
        check_services(ck, name, docs)
        check_env(ck, name, docs)
        check_upstreams(ck, name, docs)
        base = name.rstrip("/")
        if name in overlays:
            check_runtimeclass(ck, name, docs)
            check_chat(ck, name, docs, registry=overlays[name])
        elif base.endswith("deploy/k8s/chat"):
            check_runtimeclass(ck, name, docs)
            check_chat(ck, name, docs)
        elif base.endswith("deploy/k8s/runtimeclass") or base.endswith("runtimeclass.yaml"):
            check_runtimeclass(ck, name, docs)
        elif base.endswith("deploy/node-installer"):
            check_installer(ck, name, docs, a.dockerfile)
        else:
            check_runtimeclass(ck, name, docs, expect=False)
            wasm = [d for d in docs if d.get("kind") in WORKLOAD_KINDS and pod_spec(d).get("runtimeClassName") == HANDLER]
            local = [d for d in docs if d.get("kind") in WORKLOAD_KINDS and any(c.get("image", "").startswith("localhost/test/") for c in containers(pod_spec(d)))]
            if local:
                ck.check(all(c.get("imagePullPolicy") in ("Never", "IfNotPresent") for d in local for c in containers(pod_spec(d))),
                         f"{name}: locally loaded images are never pulled")
            if "kind/pods" in name and not wasm and not local:
                ck.check(False, f"{name}: a check pod uses the wasmtime RuntimeClass or a local test image")

    check_toml_snippets(ck, a.containerd_snippet)
    if a.kind_config:
        check_kind_config(ck, a.kind_config)
    return ck


# Mistakes the checks must catch: (file under deploy/, text, replacement,
# a FAIL line that must appear[, a detail that FAIL line must give]).
MUTATIONS = [
    ("k8s/chat/session.yaml", "          readinessProbe:\n            tcpSocket:\n              port: http",
     "          readinessProbe:\n            exec:\n              command: [\"true\"]", "session: runtimeClassName wasmtime; probes are tcpSocket/httpGet"),
    ("k8s/chat/chat.yaml", "      runtimeClassName: wasmtime\n", "", "chat runs with runtimeClassName wasmtime"),
    ("k8s/chat/user.yaml", "$(REDIS_PASSWORD)@", "$(REDIS_PASWORD)@", "Deployment user: every env reference", "$(REDIS_PASWORD) is not defined"),
    # The old scheme: with service links off, nothing defines the variables.
    ("k8s/chat/chat.yaml", "@mysql:3306/", "@$(MYSQL_SERVICE_HOST):$(MYSQL_SERVICE_PORT)/", "Deployment chat: every env reference",
     "$(MYSQL_SERVICE_HOST) is not defined"),
    ("k8s/chat/gateway.yaml", "http://session:8081", "http://sesion:8081", "Deployment gateway: upstream URLs name Services",
     "SESSION_URL: host 'sesion': no Service sesion in namespace chat"),
    ("k8s/chat/truncator.yaml", "@redis:6379", "@redis:6380", "Deployment truncator: upstream URLs name Services",
     "REDIS_URL: port 6380: Service redis exposes [6379]"),
    ("k8s/chat/session.yaml", "@mysql:3306/", "@mysql.chat.svc:3307/", "Deployment session: upstream URLs name Services",
     "DATABASE_URL: port 3307: Service mysql exposes [3306]"),
    ("k8s/chat/message.yaml", "@mysql:3306/", "@10.96.0.10:3306/", "Deployment message: upstream URLs name Services",
     "DATABASE_URL: host '10.96.0.10' is not a Service name"),
    ("k8s/chat/kustomization.yaml", "TRUNCATOR_ENABLED=false", "TRUNCATOR_ENABLED=true", "TRUNCATOR_ENABLED is \"false\""),
    ("k8s/chat/gateway.yaml", "      targetPort: http", "      targetPort: web", "Service gateway selects pods and their ports"),
    ("k8s/chat/message.yaml", "          imagePullPolicy: IfNotPresent", "          imagePullPolicy: Always", "message image localhost/chat/message:latest, imagePullPolicy IfNotPresent"),
    ("k8s/chat/redis.yaml", "              memory: 128Mi\n", "", "every container has cpu and memory requests and limits"),
    ("k8s/chat/namespace.yaml", "  name: chat\n", "", "each with apiVersion, kind and a valid metadata.name"),
    ("k8s/runtimeclass/runtimeclass.yaml", "handler: wasmtime", "handler: wasm", "RuntimeClass wasmtime (node.k8s.io/v1"),
    ("kind/kind-config.yaml", "runtimes.wasmtime]", "runtimes.wasm]", "containerd patch registers handler wasmtime"),
    ("kind/pods/http.yaml", "        tcpSocket:\n          port: http\n        periodSeconds: 2",
     "        tcpSocket:\n          port: 9999\n        periodSeconds: 2", "wasm-http: runtimeClassName wasmtime; probes are tcpSocket/httpGet on declared ports"),
    ("node-installer/daemonset.yaml", "      hostPID: true", "      hostPID: false", "hostPID"),
    ("containerd/wasmtime-v3.toml", "io.containerd.wasmtime.v1", "io.containerd.wasmtime.v2", "wasmtime-v3.toml: registers handler"),
]


def selftest(repo, ck):
    import contextlib
    import io
    import shutil
    import tempfile

    for rel, old, new, expect, *detail in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(os.path.join(repo, "deploy"), os.path.join(tmp, "deploy"), symlinks=True)
            path = os.path.join(tmp, "deploy", rel)
            with open(path) as f:
                text = f.read()
            if old not in text:
                ck.check(False, f"selftest: {rel}: the text to mutate is still there", old)
                continue
            with open(path, "w") as f:
                f.write(text.replace(old, new, 1))
            d = os.path.join(tmp, "deploy")
            argv = ["--render", f"{d}/k8s/chat", "--render", f"{d}/k8s/runtimeclass", "--render", f"{d}/node-installer",
                    "--manifest", f"{d}/kind/pods/http.yaml", "--kind-config", f"{d}/kind/kind-config.yaml",
                    "--dockerfile", f"{d}/node-installer/Dockerfile"]
            for snippet in ("wasmtime-v2.toml", "wasmtime-v3.toml", "conf.d/wasmtime.toml"):
                argv += ["--containerd-snippet", f"{d}/containerd/{snippet}"]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                result = run(parse_args(argv))
            lines = out.getvalue().splitlines()
            caught = []
            for i, line in enumerate(lines):
                if line.startswith("FAIL") and expect in line:
                    details = []
                    for more in lines[i + 1:]:
                        if not more.startswith("     | "):
                            break
                        details.append(more)
                    if all(any(x in m for m in details) for x in detail):
                        caught.append(line)
            what = f"FAIL …{expect}…" + "".join(f" saying …{x}…" for x in detail)
            ck.check(result.failed > 0 and caught, f"selftest: a broken {rel} is caught: {what}",
                     f"expected a FAIL line with {expect!r}" + "".join(f" and a detail with {x!r}" for x in detail) + "; got:\n"
                     + "\n".join(l for l in lines if l.startswith("FAIL") or l.startswith("     | ")))


def main():
    a = parse_args(sys.argv[1:])
    ck = run(a)
    if a.selftest:
        selftest(a.selftest, ck)
    print()
    print(f"{ck.passed} passed, {ck.failed} failed")
    sys.exit(1 if ck.failed else 0)


if __name__ == "__main__":
    main()
