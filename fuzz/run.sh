#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20; CI uses a short bound, run it longer by
# hand: fuzz/run.sh 600). Needs cargo-fuzz; nightly features come from RUSTC_BOOTSTRAP=1.
# A crash leaves its input in fuzz/artifacts/<target>/: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
./seed.sh
export RUSTC_BOOTSTRAP=1
for t in ts_demux h264_nal result_framing link_message profile_json push_output livepeer_results; do
  echo "== fuzz $t for ${secs}s"
  log=$(mktemp)
  if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
  rm -f "$log"
done
