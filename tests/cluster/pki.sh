# shellcheck shell=bash
# Certificates and kubeconfigs for the test cluster (tests/cluster/lib.sh),
# made with openssl the way a hand-rolled local cluster needs them: one CA
# that signs the apiserver's serving certificate and every client's
# certificate (the apiserver trusts it as --client-ca-file, the kubelet as
# its x509 client CA). Source this file.
#
#   pki_make DIR NODE_NAME SAN_IPS   CA, serving and client certs, SA key pair
#   kubeconfig_write FILE SERVER CA NAME   a kubeconfig using DIR/NAME.{crt,key}
#
# EC P-256 keys: generating them is instant, unlike RSA on a busy machine.
# Valid for 2 days: the cluster lives for one test run.

# A key and a certificate signed by the CA: NAME SUBJECT EXT (an openssl
# extension section's body).
_pki_sign() { # DIR NAME SUBJECT EXT
    local dir=$1 name=$2 subj=$3 ext=$4
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null || return 1
    printf '%s\n' "$ext" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null || return 1
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

_pki_client() { # DIR NAME CN [ORG]
    local subj="/CN=$3"
    [ -z "${4:-}" ] || subj="/O=$4$subj"
    _pki_sign "$1" "$2" "$subj" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
}

pki_make() { # DIR NODE_NAME SAN_IPS(comma separated)
    local dir=$1 node=$2 ips=$3 san ip
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -subj "/CN=wasmtime-cluster-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
    san="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    for ip in ${ips//,/ }; do san="$san,IP:$ip"; done
    _pki_sign "$dir" apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san" || return 1
    # Users the default RBAC roles and the Node authorizer know by name.
    _pki_client "$dir" admin kubernetes-admin system:masters || return 1
    _pki_client "$dir" apiserver-kubelet-client kube-apiserver-kubelet-client system:masters || return 1
    _pki_client "$dir" kubelet "system:node:$node" system:nodes || return 1
    _pki_client "$dir" controller-manager system:kube-controller-manager || return 1
    _pki_client "$dir" scheduler system:kube-scheduler || return 1
    _pki_client "$dir" kube-proxy system:kube-proxy || return 1
    # Service account tokens: the apiserver signs them, the controller
    # manager's token controller too; both verify with the public half.
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/sa.key" 2>/dev/null || return 1
    openssl ec -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null || return 1
    chmod 600 "$dir"/*.key
}

kubeconfig_write() { # FILE SERVER CA_FILE CERT_BASE(path without .crt/.key)
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: wasmtime-cluster
    cluster:
      server: $2
      certificate-authority: $3
users:
  - name: $(basename "$4")
    user:
      client-certificate: $4.crt
      client-key: $4.key
contexts:
  - name: wasmtime-cluster
    context:
      cluster: wasmtime-cluster
      user: $(basename "$4")
current-context: wasmtime-cluster
EOF
}
