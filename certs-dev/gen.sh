#!/usr/bin/env bash
# Regenerates the development certificates in this folder (openssl CLI only, no downloads).
# See README.md here for what each file is. Usage: certs-dev/gen.sh   (overwrites the files)
set -euo pipefail
cd "$(dirname "$0")"

CA_DAYS=3650     # dev CA: 10 years
LEAF_DAYS=1825   # leaves: 5 years
PASS='kafka-tls-proxy-dev'   # passphrase of service-encrypted.key (also in service-encrypted.pass)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() { # $1 = output file: RSA 2048, unencrypted PKCS#8 ("BEGIN PRIVATE KEY")
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# --- dev CA ---------------------------------------------------------------
newkey ca.key
cat >"$tmp/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
openssl req -new -key ca.key -subj "/O=kafka-tls-proxy dev/CN=kafka-tls-proxy dev CA" -out "$tmp/ca.csr"
openssl x509 -req -in "$tmp/ca.csr" -signkey ca.key -days "$CA_DAYS" -sha256 \
  -extfile "$tmp/ca.ext" -set_serial "0x$(openssl rand -hex 16)" -out ca.pem 2>/dev/null

# leaf NAME CN EKU SAN -> NAME.key, NAME.pem (leaf + CA chain)
leaf() {
  local name=$1 cn=$2 eku=$3 san=${4:-}
  newkey "$name.key"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [ -n "$san" ] && echo "subjectAltName = $san"
  } >"$tmp/$name.ext"
  openssl req -new -key "$name.key" -subj "/O=kafka-tls-proxy dev/CN=$cn" -out "$tmp/$name.csr"
  openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey ca.key -days "$LEAF_DAYS" -sha256 \
    -extfile "$tmp/$name.ext" -set_serial "0x$(openssl rand -hex 16)" -out "$tmp/$name.crt" 2>/dev/null
  cat "$tmp/$name.crt" ca.pem >"$name.pem"
}

# Broker: one wildcard certificate like MSK's ACM one; also the inter-broker client certificate.
# Subject CN=broker, so the broker principal is User:broker (see ssl.principal.mapping.rules).
leaf broker broker "serverAuth, clientAuth" "DNS:*.msk.test, DNS:msk.test"
# Client certificates (principals User:admin, User:service, User:readonly).
leaf admin admin clientAuth
leaf service service clientAuth
leaf readonly readonly clientAuth
# The proxy's optional TLS listener.
leaf proxy-server localhost serverAuth "DNS:localhost, IP:127.0.0.1"

# The service key again, passphrase-encrypted PKCS#8 (PBES2: PBKDF2 + AES-256-CBC).
openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -in service.key \
  -passout "pass:$PASS" -out service-encrypted.key
chmod 600 service-encrypted.key
printf '%s\n' "$PASS" >service-encrypted.pass

# Checks
for n in broker admin service readonly proxy-server; do
  openssl verify -CAfile ca.pem "$n.pem" >/dev/null
done
openssl pkey -in service-encrypted.key -passin "file:service-encrypted.pass" -noout
echo "certs-dev: regenerated in $(pwd)"
