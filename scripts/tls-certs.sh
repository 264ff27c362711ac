#!/usr/bin/env bash
# A throwaway CA and one certificate per node, for trying TLS (not for
# production: the CA key sits unencrypted beside the certificates).
#
#   scripts/tls-certs.sh DIR n1 n2 n3
#
# writes DIR/ca.pem, DIR/ca-key.pem and, per node, DIR/<node>.pem and
# DIR/<node>-key.pem. Each node certificate names localhost, 127.0.0.1 and
# the node's name (SAN) and serves both as server and client certificate,
# as the Raft port's mutual TLS needs. Then start each node with
#   RAFT_TLS_CERT_FILE=DIR/n1.pem RAFT_TLS_KEY_FILE=DIR/n1-key.pem RAFT_TLS_CA_FILE=DIR/ca.pem
# and talk to it with `curl --cacert DIR/ca.pem` or `raftkv --cacert DIR/ca.pem`.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 DIR NODE [NODE...]" >&2
    exit 2
fi
dir="$1"; shift
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
days="${TLS_CERT_DAYS:-30}"

if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days "$days" \
        -subj "/CN=raftkv throwaway CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
echo "CA:   $dir/ca.pem"

for node in "$@"; do
    ext="$(mktemp)"
    printf '%s\n' \
        "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:$node" > "$ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$node-key.pem" -out "$dir/$node.csr" -subj "/CN=$node" 2>/dev/null
    openssl x509 -req -in "$dir/$node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -out "$dir/$node.pem" -days "$days" -extfile "$ext" 2>/dev/null
    rm -f "$ext" "$dir/$node.csr"
    chmod 600 "$dir/$node-key.pem"
    echo "$node: $dir/$node.pem $dir/$node-key.pem"
done
chmod 600 "$dir/ca-key.pem"
