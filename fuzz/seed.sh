#!/usr/bin/env bash
# Seeds each target's corpus from the test fixtures (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
fx=../tests/fixtures
mkdir -p corpus/{ts_demux,h264_nal,result_framing,link_message,profile_json,push_output,livepeer_results}
for f in "$fx"/*.ts; do
  n=$(basename "$f" .ts)
  head -c 65536 "$f" > "corpus/ts_demux/$n"
done
# Access units: the payloads right after each fixture's first video PES header are a fair start.
for f in "$fx"/h264_*.ts "$fx"/hevc_*.ts; do
  n=$(basename "$f" .ts)
  python3 - "$f" "corpus/h264_nal/$n" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
i = data.find(b"\x00\x00\x00\x01\x09")  # AUD: start of an access unit
open(sys.argv[2], "wb").write(data[i:i + 4096] if i >= 0 else data[:4096])
PY
done
printf 'S\x00\x00\x00\x00\x02{}C\x00\x00\x00\x00\xbc' > corpus/result_framing/start_chunk
printf '{"task":1,"stream":"live","seq":"0","profiles":"[{\\"name\\":\\"a\\",\\"width\\":640,\\"height\\":360,\\"bitrate\\":800000}]"}\n{"end_stream":"live"}\n{"capacity":4,"load":1}\n' > corpus/link_message/lines
printf 'P720p30fps16x9,P360p30fps16x9' > corpus/profile_json/presets
printf '[{"name":"a","width":854,"height":480,"bitrate":"1.6M","fps":30000,"fpsDen":1001,"gop":"1.5"}]' > corpus/profile_json/json
# push_output: first byte = piece size and "server ok" bit; then a result stream.
printf '\x01S\xff\x00\x00\x00\x1e{"renditions":["720p","360p"]}C\x00\x00\x00\x00\x02abD\x00\x00\x00\x00\x02{}C\x01\x00\x00\x00\x01cD\x01\x00\x00\x00\x00Z\xff\x00\x00\x00\x02{}' > corpus/push_output/ok
printf '\x07S\xff\x00\x00\x00\x1d{"renditions":["../x","a/b"]}C\x00\x00\x00\x00\x01xC\x01\x00\x00\x00\x01y' > corpus/push_output/bad_names
# livepeer_results: a go-livepeer transcoder's results (the recorded vector's body, cut short).
python3 - "$fx/livepeer/go-transcoder.transcodeResults.http" corpus/livepeer_results/go <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read()
head, body = raw.split(b"\n\n", 1)
b = re.search(rb"boundary=(\S+)", head).group(1)
# The target parses with the boundary "b0und": rename it; keep the parts' headers, trim the media.
body = body.replace(b, b"b0und")
parts = body.split(b"--b0und")
out = b"--b0und".join(p[:600] + (b"\r\n" if i and not p.startswith(b"--") else b"") for i, p in enumerate(parts))
open(sys.argv[2], "wb").write(b"\x40" + out)
PY
