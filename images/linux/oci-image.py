#!/usr/bin/env python3
"""Writes OCI image-layout tars for Linux images from layer tars (stdlib only).

  oci-image.py layer OUT.tar.gz < LAYER.tar
      gzip a layer tar from stdin (reproducibly: no name, mtime 0) and write
      OUT.tar.gz.json with its digest, size and diff_id (sha256 of the tar).

  oci-image.py image --name NAME --output OUT.tar [--platform OS/ARCH]
                     --layer L.tar.gz ... [--entrypoint JSON] [--cmd JSON]
                     [--env K=V ...] [--volume PATH ...] [--expose PORT/tcp ...]
                     [--workdir DIR] [--stop-signal SIG] [--user USER[:GROUP]]
      write an OCI image layout tar (oci-layout, index.json, blobs/sha256/*)
      that `ctr images import` accepts (and `docker load` since Docker 25). Layers are listed
      bottom first and must have been written by `layer`.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import zlib

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


def cmd_layer(args):
    raw = hashlib.sha256()
    packed = hashlib.sha256()
    size = 0
    tmp = args.output + ".tmp"
    # wbits 31 = gzip container; zlib writes mtime 0 and no file name.
    z = zlib.compressobj(args.level, zlib.DEFLATED, 31)
    with open(tmp, "wb") as out:
        stdin = sys.stdin.buffer
        while True:
            chunk = stdin.read(CHUNK)
            if not chunk:
                break
            raw.update(chunk)
            data = z.compress(chunk)
            if data:
                packed.update(data)
                out.write(data)
                size += len(data)
        data = z.flush()
        packed.update(data)
        out.write(data)
        size += len(data)
    meta = {
        "mediaType": MT_LAYER_GZIP,
        "digest": "sha256:" + packed.hexdigest(),
        "size": size,
        "diff_id": "sha256:" + raw.hexdigest(),
    }
    with open(args.output + ".json.tmp", "w") as f:
        json.dump(meta, f)
    os.replace(tmp, args.output)
    os.replace(args.output + ".json.tmp", args.output + ".json")


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def cmd_image(args):
    os_name, _, arch = args.platform.partition("/")
    if not os_name or not arch:
        sys.exit(f"--platform {args.platform!r} is not OS/ARCH")
    repo, tag = args.name, "latest"
    last = args.name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = args.name.rsplit(":", 1)
    name = f"{repo}:{tag}"

    layers = []
    for path in args.layer:
        with open(path + ".json") as f:
            meta = json.load(f)
        if os.path.getsize(path) != meta["size"]:
            sys.exit(f"{path}: size does not match {path}.json (rebuild the layer)")
        layers.append((path, meta))

    run = {"Env": args.env}
    if args.entrypoint:
        run["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        run["Cmd"] = json.loads(args.cmd)
    if args.workdir:
        run["WorkingDir"] = args.workdir
    if args.volume:
        run["Volumes"] = {v: {} for v in args.volume}
    if args.expose:
        run["ExposedPorts"] = {p: {} for p in args.expose}
    if args.stop_signal:
        run["StopSignal"] = args.stop_signal
    if args.user:
        run["User"] = args.user
    config = {
        "architecture": arch,
        "os": os_name,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [m["diff_id"] for _, m in layers]},
    }
    config_digest, config_bytes = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"]} for _, m in layers],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": arch, "os": os_name},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }
    tmp = args.output + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        add_dir(tar, "blobs")
        add_dir(tar, "blobs/sha256")
        add_bytes(tar, "blobs/sha256/" + config_digest[7:], config_bytes)
        add_bytes(tar, "blobs/sha256/" + manifest_digest[7:], manifest_bytes)
        seen = set()
        for path, meta in layers:
            if meta["digest"] in seen:
                continue
            seen.add(meta["digest"])
            info = tarfile.TarInfo("blobs/sha256/" + meta["digest"][7:])
            info.size = meta["size"]
            info.mode = 0o644
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, args.output)
    print(json.dumps({"name": name, "manifest": manifest_digest, "config": config_digest,
                      "compressed_bytes": sum(m["size"] for _, m in layers)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("layer")
    lp.add_argument("output")
    lp.add_argument("--level", type=int, default=6)
    ip = sub.add_parser("image")
    ip.add_argument("--name", required=True)
    ip.add_argument("--output", "-o", required=True)
    ip.add_argument("--platform", default="linux/amd64")
    ip.add_argument("--layer", action="append", required=True)
    ip.add_argument("--entrypoint")
    ip.add_argument("--cmd")
    ip.add_argument("--env", action="append", default=[])
    ip.add_argument("--volume", action="append", default=[])
    ip.add_argument("--expose", action="append", default=[])
    ip.add_argument("--workdir")
    ip.add_argument("--stop-signal")
    ip.add_argument("--user")
    args = p.parse_args()
    {"layer": cmd_layer, "image": cmd_image}[args.command](args)


if __name__ == "__main__":
    main()
