"""Reads containerd config files as containerd would merge them and prints one value.

    effective_config.py [--builtin] VERSION KEY FILE [IMPORTED_FILE...]

KEY is '/'-separated (plugins/io.containerd.grpc.v1.cri/sandbox_image). Every
file must parse as TOML (tomllib, Python 3.11+). Imported files are merged in
the order given, as containerd does:
  - version 1/2 (containerd 1.x): an imported file's plugin section replaces
    the whole section of the same plugin (top-level maps merged by key);
  - version 3 (containerd 2.x): tables are merged key by key.
With --builtin, containerd's built-in CRI runtimes are applied the way each
version does (runc, runtime_type io.containerd.runc.v2):
  - version 1/2: only when the CRI section lists no runtimes at all; any
    runtimes table replaces the built-in map (pelletier/go-toml v1 decoding);
  - version 3: the config's runtimes are merged into the built-in ones.
Prints the value (JSON for tables and arrays); exits 1 when KEY is absent,
2 when a file is not valid TOML.
"""

import json
import sys
import tomllib


def deep_merge(into, other):
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v


CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
BUILTIN_RUNTIMES = {"runc": {"runtime_type": "io.containerd.runc.v2"}}


def apply_builtin(merged, version):
    cri = merged.setdefault("plugins", {}).setdefault(CRI_PLUGIN[version], {})
    ctd = cri.setdefault("containerd", {})
    ctd.setdefault("default_runtime_name", "runc")
    builtin = json.loads(json.dumps(BUILTIN_RUNTIMES))
    if version >= 3:
        deep_merge(builtin, ctd.get("runtimes", {}))
        ctd["runtimes"] = builtin
    elif "runtimes" not in ctd:
        ctd["runtimes"] = builtin


def main():
    args = sys.argv[1:]
    builtin = bool(args) and args[0] == "--builtin"
    if builtin:
        args = args[1:]
    version, key, files = int(args[0]), args[1], args[2:]
    merged = {}
    for path in files:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            print(f"{path}: {e}", file=sys.stderr)
            sys.exit(2)
        if version >= 3:
            deep_merge(merged, data)
            continue
        plugins = data.pop("plugins", {})
        merged.update(data)
        merged.setdefault("plugins", {}).update(plugins)
    if builtin:
        apply_builtin(merged, version)
    node = merged
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            sys.exit(1)
        node = node[part]
    print(node if isinstance(node, str) else json.dumps(node, sort_keys=True))


if __name__ == "__main__":
    main()
