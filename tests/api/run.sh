#!/usr/bin/env bash
# schemathesis against a real launcher: every operation of its OpenAPI
# document, the checks of schemathesis.toml, no 5xx, every response matching
# the schema, and the daemon alive and answering afterwards.
#
#   tests/api/run.sh [MAX_EXAMPLES]       default 25 cases per operation and phase
#
# Installs schemathesis (pinned) into a venv under target/, starts
# `launcher serve` on 127.0.0.1:0 with a temporary data folder, seeds one
# program, build, run and service (so reads of real records are checked too),
# runs schemathesis with the API token and the launcher's root CA, then stops
# the launcher with SIGTERM (it must exit 0) and checks its log for panics.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
examples="${1:-25}"
version="4.32.5"
venv="$root/target/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

cargo build --quiet -p launcher --bins --manifest-path "$root/Cargo.toml"
launcher="$root/target/debug/launcher"

work="$(mktemp -d)"
chmod 711 "$work"
data="$work/data"
"$launcher" serve --data "$data" --listen 127.0.0.1:0 ${SCHEMATHESIS_CAMB:+--camb-compat} >"$work/stdout" 2>"$work/launcher.log" &
pid=$!
stop() {
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 600); do
  [ -s "$data/launcher.addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/launcher.log"; echo "the launcher exited" >&2; exit 1; }
  sleep 0.1
done
base="https://$(cat "$data/launcher.addr")"
token="$(cat "$data/api-token")"
ca="$data/pki/root.pem"
api() { curl -sS --fail-with-body --cacert "$ca" -H "Authorization: Bearer $token" "$@"; }

# Seed: program 1, build 1, run 1 (ended), service "store".
api -F "file=@$root/tests/programs/hello.c" "$base/v1/programs" >/dev/null
api -X POST "$base/v1/programs/1/builds" >/dev/null
api -X POST "$base/v1/programs/1/runs" >/dev/null
for _ in $(seq 600); do
  api "$base/v1/runs/1" | grep -q '"status":"exited"' && break
  sleep 0.1
done
python3 -c 'import json,sys; print(json.dumps({"base_url": "https://127.0.0.1:9", "ca_pem": open(sys.argv[1]).read()}))' "$ca" |
  api -X PUT -H 'Content-Type: application/json' --data-binary @- "$base/v1/services/store" >/dev/null

status=0
# From the temporary folder: schemathesis keeps a .schemathesis/ cache in its working folder.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$root/tests/api/schemathesis.toml" run "$base/v1/openapi.json" \
  -H "Authorization: Bearer $token" --tls-verify "$ca" \
  --max-examples "$examples" --seed "${SCHEMATHESIS_SEED:-1}" --workers 1 --request-timeout 120 \
  --output-truncate true) >"$work/schemathesis.log" 2>&1 || status=$?
sed -n '/^=* SUMMARY =*$/,$p' "$work/schemathesis.log"
if [ "$status" -ne 0 ]; then
  cat "$work/schemathesis.log"
  echo "schemathesis failed (exit $status)" >&2
  exit 1
fi

# Still alive and answering, then a clean stop, and no panic in between.
curl -sS --fail --cacert "$ca" "$base/healthz" >/dev/null
kill -TERM "$pid"
wait "$pid" || { cat "$work/launcher.log"; echo "the launcher did not exit 0 after SIGTERM" >&2; exit 1; }
if grep -q "panicked" "$work/launcher.log"; then
  grep -B2 -A10 "panicked" "$work/launcher.log"
  echo "the launcher panicked" >&2
  exit 1
fi
echo "schemathesis: $(grep -Eo '[0-9]+ generated' "$work/schemathesis.log" | tail -n 1) test cases, no failure; launcher alive and stopped cleanly"
