#!/usr/bin/env python3
"""Sizes of OCI image-layout tars, measured the same way for every image.

    sizes.py NAME=IMAGE.tar ...     prints a markdown table

For each image: its layers, and what a registry would send for it —
config + manifest + every layer gzip-compressed. Layers already stored as
gzip (the Linux images) count as stored; uncompressed layers (wasm-oci
writes tars) are gzipped here at level 6, zlib's default and what
images/linux/oci-image.py uses, so all figures are comparable. "unpacked" is
the sum of the uncompressed layer tars.
"""
import json
import sys
import tarfile
import zlib


def gzip_size(data):
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return len(z.compress(data)) + len(z.flush())


def measure(path):
    with tarfile.open(path) as t:
        blob = lambda digest: t.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()
        index = json.load(t.extractfile("index.json"))
        manifest_desc = index["manifests"][0]
        manifest = json.loads(blob(manifest_desc["digest"]))
        compressed = manifest_desc["size"] + manifest["config"]["size"]
        unpacked = 0
        layers = []
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            if layer["mediaType"].endswith("+gzip"):
                size = len(data)
                raw = len(zlib.decompress(data, 47))
            else:
                size = gzip_size(data)
                raw = len(data)
            compressed += size
            unpacked += raw
            layers.append(size)
    return compressed, unpacked, layers


def mib(n):
    return f"{n / 1048576:.2f}"


def main():
    rows = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        rows.append((name, *measure(path)))
    print("| image | layers (compressed, KiB) | compressed MiB | unpacked MiB |")
    print("|---|---|---:|---:|")
    for name, compressed, unpacked, layers in rows:
        print(f"| {name} | {' + '.join(f'{s / 1024:,.0f}' for s in layers)} | {mib(compressed)} | {mib(unpacked)} |")


if __name__ == "__main__":
    main()
