#!/usr/bin/env bash
# The HTTP contract, fuzzed: schemathesis (PyPI) runs every operation of doc/openapi.yaml against a
# live `zerohop combined` node (cleartext, HTTP/1.1) with generated inputs and all of its checks
# (status codes, content types, headers, response schemas, 405 with `Allow`, no 5xx but the
# documented ones), then the node must still serve: /healthz and a real segment transcoded.
#
#   control/tests/contract/schemathesis.sh [ZEROHOP_BINARY]   (default target/debug/zerohop)
#
# Installs schemathesis into target/schemathesis-venv (git-ignored) when it is not there; with
# SCHEMATHESIS_SKIP_INSTALL=1 and none installed it says so and exits 0. Bounded: EXAMPLES
# (default 50) generated cases per operation and phase.
set -euo pipefail
cd "$(dirname "$0")/../../.."

bin=${1:-target/debug/zerohop}
examples=${EXAMPLES:-50}
venv=target/schemathesis-venv
if ! [ -x "$venv/bin/schemathesis" ]; then
  if [ "${SCHEMATHESIS_SKIP_INSTALL:-0}" = 1 ]; then
    echo "schemathesis.sh: SKIPPED: schemathesis is not installed in $venv (run without SCHEMATHESIS_SKIP_INSTALL to install it from PyPI)"
    exit 0
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check 'schemathesis==4.32.5'
fi
[ -x "$bin" ] || { echo "schemathesis.sh: no binary at $bin (cargo build first)" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
log=target/schemathesis-node.log
"$bin" combined --service-addr "127.0.0.1:$port" --insecure-cleartext -p P240p30fps16x9 --max-sessions 2 \
  >"$log" 2>&1 &
node=$!
trap 'kill "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$node" 2>/dev/null || { echo "the node exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done

# A stream for the spec's examples (`cam1`, rendition P240p30fps16x9, seq 0) to find.
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @tests/fixtures/stream_seq0.ts "$url/v1/streams/cam1/segments/0")
[ "$code" = 200 ] || { echo "the example stream's segment got $code" >&2; exit 1; }

status=0
"$venv/bin/schemathesis" --config-file control/tests/contract/schemathesis.toml run doc/openapi.yaml \
  --url "$url" --checks all --max-examples "$examples" --workers 2 \
  --report junit --report-dir target/schemathesis-report || status=$?

# Still serving: health, and a real segment transcoded.
alive=0
curl -sf "$url/healthz" >/dev/null || { echo "the node no longer answers /healthz" >&2; alive=1; }
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @tests/fixtures/stream_seq0.ts \
  "$url/v1/streams/after-fuzz/segments/0")
[ "$code" = 200 ] || { echo "a segment after the fuzzing got $code, not 200" >&2; alive=1; }
kill -0 "$node" 2>/dev/null || { echo "the node died:" >&2; tail -50 "$log" >&2; alive=1; }
if [ "$status" -ne 0 ] || [ "$alive" -ne 0 ]; then
  echo "schemathesis.sh: FAILED (schemathesis exit $status; node log: $log)" >&2
  exit 1
fi
echo "schemathesis.sh: ok (every operation of doc/openapi.yaml; the node still serves)"
