#!/usr/bin/env bash
# Prepares what control/tests/livepeer.rs needs to run its stand-in go-livepeer orchestrator
# (control/tests/livepeer/orchestrator.py), all under target/ (never committed):
#   target/livepeer-venv      python3 -m venv, with h2 and the protobuf runtime the stubs ask for
#   target/livepeer-gateway   the livepeer-gateway wheel from PyPI (Livepeer's own Python SDK)
#   target/livepeer-stubs     lp_rpc_pb2.py (and lp_rpc_pb2_grpc.py) taken out of that wheel:
#                             go-livepeer's net/lp_rpc.proto compiled by Livepeer, not by zerohop
# Idempotent: a second run checks and returns quickly. Run from anywhere.
set -euo pipefail

# The wheel declares Python >= 3.12 (for its SDK); only its two generated files are used, and
# they need nothing but the protobuf runtime, so any python3 with venv does.
GATEWAY_VERSION=1.0.0
GATEWAY_WHEEL=livepeer_gateway-${GATEWAY_VERSION}-py3-none-any.whl
GATEWAY_SHA256=bbcc96415014fdbf1c5806a4eb9da91bf5fa9e2281e10f5bf4e53f1b5a3a429e
# lp_rpc_pb2.py of that wheel says "Protobuf Python Version: 6.31.1" and calls
# ValidateProtobufRuntimeVersion(6, 31, 1): the runtime must be 6.x and at least 6.31.1.
PROTOBUF_VERSION=6.31.1
H2_VERSION=4.3.0
# Keccak-256 for the stand-in gateway's SegData hash (hashlib's sha3_256 is not Keccak).
PYCRYPTODOME_VERSION=3.23.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
venv=target/livepeer-venv
wheels=target/livepeer-gateway
stubs=target/livepeer-stubs
python="${PYTHON:-python3}"

check() {
    PYTHONPATH="$stubs" "$venv/bin/python" - "$PROTOBUF_VERSION" "$H2_VERSION" <<'PY'
import sys
import google.protobuf, h2
from Crypto.Hash import keccak
assert keccak.new(digest_bits=256, data=b"").hexdigest().startswith("c5d2460186f7233c"), "Keccak-256"
import lp_rpc_pb2
want_pb, want_h2 = sys.argv[1], sys.argv[2]
assert google.protobuf.__version__ == want_pb, f"protobuf {google.protobuf.__version__}, want {want_pb}"
assert h2.__version__ == want_h2, f"h2 {h2.__version__}, want {want_h2}"
n = lp_rpc_pb2.NotifySegment(url="x", taskId=1)
assert lp_rpc_pb2.NotifySegment.FromString(n.SerializeToString()).taskId == 1
print(f"livepeer test venv ready: {sys.version.split()[0]}, protobuf {want_pb}, h2 {want_h2}, lp_rpc_pb2 from livepeer-gateway")
PY
}

if [[ -x "$venv/bin/python" && -f "$stubs/lp_rpc_pb2.py" ]] && check 2>/dev/null; then
    exit 0
fi

mkdir -p target
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "protobuf==$PROTOBUF_VERSION" "h2==$H2_VERSION" "pycryptodome==$PYCRYPTODOME_VERSION"

if [[ ! -f "$wheels/$GATEWAY_WHEEL" ]]; then
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --python-version 3.12 --only-binary=:all: -d "$wheels" "livepeer-gateway==$GATEWAY_VERSION"
fi
got="$(sha256sum "$wheels/$GATEWAY_WHEEL" | cut -d' ' -f1)"
if [[ "$got" != "$GATEWAY_SHA256" ]]; then
    echo "setup.sh: $wheels/$GATEWAY_WHEEL has SHA-256 $got, want $GATEWAY_SHA256" >&2
    exit 1
fi

rm -rf "$stubs"
mkdir -p "$stubs"
"$venv/bin/python" - "$wheels/$GATEWAY_WHEEL" "$stubs" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for want in ("lp_rpc_pb2.py", "lp_rpc_pb2_grpc.py"):
        found = [n for n in names if n.rsplit("/", 1)[-1] == want]
        if not found:
            if want == "lp_rpc_pb2.py":
                sys.exit(f"{wheel} has no {want}")
            continue
        with z.open(found[0]) as src, open(f"{out}/{want}", "wb") as dst:
            dst.write(src.read())
PY
check
