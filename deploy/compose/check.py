#!/usr/bin/env python3
"""Offline checks of compose.yaml where no Docker is available (needs PyYAML,
Debian's python3-yaml):

  python3 deploy/compose/check.py [deploy/compose/compose.yaml]

Interpolates ${VAR:-default} with the defaults (or the environment), then
checks what `docker compose config` cannot see here and what a typo would
break silently: every Wasm service has the wasmtime runtime and the wasi/wasm
platform and builds from Dockerfile.wasm with args that exist in the repo;
fixed IPs are unique and inside the network's subnet; every URL in an
environment points at the IP and port of a service that listens there;
depends_on names exist; healthchecks exist for the Linux services.

With the default path it also checks the overrides next to it
(compose.registry.yaml, compose.hostnet.yaml): they name only services of
compose.yaml, and in compose.hostnet.yaml every URL points at 127.0.0.1 and
a port that a service on the host network listens on.
"""
import ipaddress
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = "io.containerd.wasmtime.v1"


def interpolate(text):
    def sub(m):
        name, default = m.group(1), m.group(3) or ""
        return os.environ.get(name) or default
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, text)
    return text.replace("$$", "$")


class OverrideLoader(yaml.SafeLoader):
    """Reads compose's merge tags: `!reset` clears a key, `!override` replaces it."""


OverrideLoader.add_constructor("!reset", lambda loader, node: None)
OverrideLoader.add_constructor(
    "!override",
    lambda loader, node: loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode)
    else loader.construct_scalar(node))


def load(path):
    with open(path) as f:
        # ${CHAT_REGISTRY:?…} has no default: give it one for the checks.
        text = re.sub(r"\$\{CHAT_REGISTRY:\?[^}]*\}", "registry.invalid", f.read())
        return yaml.load(interpolate(text), Loader=OverrideLoader)


def listen_port(env):
    """The port a Wasm service listens on: LISTEN_PORT for the socket
    servers, WASI_HTTP_PORT for a wasi:http component (the shim serves it)."""
    port = env.get("LISTEN_PORT") or env.get("WASI_HTTP_PORT")
    return int(port) if port else None


def check_overrides(services, errors):
    for name in ("compose.registry.yaml", "compose.hostnet.yaml"):
        over = load(os.path.join(HERE, name))["services"]
        for svc in over:
            if svc not in services:
                errors.append(f"{name}: service {svc} is not in compose.yaml")
        if name != "compose.hostnet.yaml":
            continue
        ports = {}
        for svc, o in over.items():
            if o.get("network_mode") != "host":
                errors.append(f"{name}: {svc} is not on the host network")
            port = listen_port(o.get("environment", {}))
            if port:
                ports[port] = svc
        for svc, o in over.items():
            for key, value in o.get("environment", {}).items():
                for m in re.finditer(r"http://([0-9.]+):(\d+)", str(value)):
                    if m.group(1) != "127.0.0.1" or int(m.group(2)) not in ports:
                        errors.append(f"{name}: {svc} {key} points at {m.group(1)}:{m.group(2)}, "
                                      "where no host-network service listens")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "compose.yaml")
    doc = load(path)
    errors = []
    services = doc["services"]
    subnet = ipaddress.ip_network(doc["networks"]["chat"]["ipam"]["config"][0]["subnet"])
    ips = {}
    for name, svc in services.items():
        ip = svc.get("networks", {}).get("chat", {}).get("ipv4_address")
        if not ip:
            errors.append(f"{name}: no fixed ipv4_address on network chat")
            continue
        if ipaddress.ip_address(ip) not in subnet:
            errors.append(f"{name}: {ip} is outside {subnet}")
        if ip in ips:
            errors.append(f"{name}: {ip} already used by {ips[ip]}")
        ips[ip] = name
    listens = {}
    for name, svc in services.items():
        env = svc.get("environment", {})
        ip = svc.get("networks", {}).get("chat", {}).get("ipv4_address")
        if listen_port(env):
            listens[(ip, listen_port(env))] = name
        elif svc.get("image", "").startswith("mysql"):
            listens[(ip, 3306)] = name
        elif svc.get("image", "").startswith("redis"):
            listens[(ip, 6379)] = name
    root = os.path.normpath(os.path.join(HERE, "../.."))
    for name, svc in services.items():
        env = svc.get("environment", {})
        build = svc.get("build")
        if build:
            if svc.get("runtime") != RUNTIME or svc.get("platform") != "wasi/wasm":
                errors.append(f"{name}: a Wasm service needs runtime {RUNTIME} and platform wasi/wasm")
            ctx = os.path.normpath(os.path.join(HERE, build["context"]))
            if ctx != root or build.get("dockerfile") != "Dockerfile.wasm":
                errors.append(f"{name}: build must be Dockerfile.wasm in the repository root")
            args = build.get("args", {})
            crate = os.path.join(root, args.get("SERVICE_DIR", ""), args.get("BIN", ""), "Cargo.toml")
            if not os.path.isfile(crate):
                errors.append(f"{name}: no crate at {crate}")
            if build.get("target") == "with-web" and not os.path.isfile(
                    os.path.join(root, args.get("WEB_DIR", ""), "package-lock.json")):
                errors.append(f"{name}: WEB_DIR has no package-lock.json")
            if "healthcheck" in svc:
                errors.append(f"{name}: healthchecks use exec, which Wasm containers do not support")
        elif "healthcheck" not in svc:
            errors.append(f"{name}: a Linux service needs a healthcheck (others wait on it)")
        for key, value in env.items():
            for m in re.finditer(r"(?:mysql|redis|http)://(?:[^@/]*@)?([0-9.]+):(\d+)", str(value)):
                target = listens.get((m.group(1), int(m.group(2))))
                if not target:
                    errors.append(f"{name}: {key} points at {m.group(1)}:{m.group(2)}, where no service listens")
        for dep in svc.get("depends_on", {}):
            if dep not in services:
                errors.append(f"{name}: depends_on unknown service {dep}")
    if len(sys.argv) <= 1:
        check_overrides(services, errors)
    for e in errors:
        print("error:", e)
    print(f"{path}: {len(services)} services, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
