#!/bin/sh
# The SDK's envelopes against `openssl cms`, both ways: the commands docs/PROTOCOL.md gives
# operators open what the SDK seals, and the SDK opens what those commands make.
# Usage: [RUN="valgrind ..."] tests/interop.sh TEST_INTEROP_BINARY WORK_DIR PKI_DIR
set -eu
bin=$1 dir=$2 pki=$3 run=${RUN:-}
rm -rf "$dir"
mkdir -p "$dir"
chmod 700 "$dir"
$run "$bin" make "$dir" "$pki"

# The request: AuthEnvelopedData with AES-256-GCM, then SignedData verified with the run
# certificate alone, holding exactly the body the SDK signed.
openssl cms -cmsout -print -inform DER -in "$dir/request.der" >"$dir/request.txt"
grep -q 'contentType: id-smime-ct-authEnvelopedData' "$dir/request.txt"
grep -q 'algorithm: aes-256-gcm' "$dir/request.txt"
openssl cms -decrypt -binary -inform DER -in "$dir/request.der" -recip "$dir/store.pem" \
    -inkey "$dir/store.key" -out "$dir/request.signed.der"
openssl cms -cmsout -print -inform DER -in "$dir/request.signed.der" >"$dir/request.signed.txt"
grep -A1 '^    certificates:' "$dir/request.signed.txt" | grep -q '<ABSENT>'   # none inside
grep -q 'algorithm: ecdsa-with-SHA256' "$dir/request.signed.txt"
grep -q 'signedAttrs:' "$dir/request.signed.txt"
openssl cms -verify -binary -inform DER -in "$dir/request.signed.der" -noverify \
    -certfile "$dir/run.pem" -nointern -out "$dir/request.opened.json" 2>/dev/null
cmp "$dir/request.opened.json" "$dir/request.json"
echo "ok - openssl cms opens the SDK's request"

# The response, made by the openssl command line as a service might, opened by the SDK.
openssl cms -sign -binary -nodetach -nocerts -nosmimecap -md sha256 -signer "$dir/store.pem" \
    -inkey "$dir/store.key" -in "$dir/response.json" -outform DER -out "$dir/response.signed.der"
openssl cms -encrypt -binary -aes-256-gcm -recip "$dir/run.pem" -in "$dir/response.signed.der" \
    -outform DER -out "$dir/response.der"
$run "$bin" open "$dir" "$pki"
rm -rf "$dir"   # throwaway keys
