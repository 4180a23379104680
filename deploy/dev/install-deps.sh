#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12: containerd
# and runc (Debian's), CNI plugins, busybox-static (native test images),
# debootstrap (MariaDB/Redis images), chromium (the browser test), PyYAML
# (manifest checks), docker-registry (a loopback registry for the pull
# tests), dnsmasq-base (a DNS server in the test pod network), QEMU, ssh
# and jq (the node VM, tests/node-vm/), iptables, conntrack and openssl
# (kube-proxy and the certificates of the test cluster, tests/cluster/),
# the wasm targets. Safe to run again;
# installs only what is missing.
set -euo pipefail

packages=(containerd runc containernetworking-plugins busybox-static iproute2 protobuf-compiler wrk python3 python3-yaml debootstrap curl chromium docker-registry dnsmasq-base qemu-system-x86 qemu-utils openssh-client e2fsprogs jq iptables conntrack openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' services (containerd, docker-registry on :5000 on every
    # address) are not used: tests run their own, on loopback. A policy-rc.d
    # that refuses keeps invoke-rc.d from starting them during the install.
    policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    rc=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ -z "$made_policy" ] || rm -f "$policy"
    [ "$rc" -eq 0 ] || exit "$rc"
fi
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip1 wasm32-wasip2
