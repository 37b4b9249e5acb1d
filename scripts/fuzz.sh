#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build the libFuzzer targets with clang + ASan/UBSan and run each for SECONDS
# (default 60) on a scratch copy of its seed corpus, two at a time. A crash fails
# the run and leaves its input in build-fuzz/crashes/: copy it into
# fuzz/regressions/<target>/ once fixed, where the suite replays it every run.
# usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSNAP_FUZZ=ON -DSNAP_SANITIZE=address,undefined -DSNAP_BUILD_BENCH=OFF \
  -DSNAP_BUILD_PYTHON=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_segment fuzz_csv fuzz_npy fuzz_protocol fuzz_control \
  fuzz_compose fuzz_s3_xml fuzz_http fuzz_sync
mkdir -p build-fuzz/crashes
SNAP_FUZZ_DIR=$(mktemp -d /dev/shm/snapfuzz-run-XXXXXX)
export SNAP_FUZZ_DIR
trap 'rm -rf "$SNAP_FUZZ_DIR"' EXIT
run() {
  local t=$1 work
  work=$(mktemp -d)
  if ASAN_OPTIONS=detect_leaks=1 "build-fuzz/fuzz/fuzz_$t" -max_total_time="$secs" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="build-fuzz/crashes/$t-" "$work" "fuzz/corpus/$t" \
      >"build-fuzz/fuzz_$t.log" 2>&1; then
    echo "fuzz_$t: $(grep -E 'stat::number_of_executed_units' "build-fuzz/fuzz_$t.log" |
      awk '{print $2}') runs in ${secs}s, no crash"
    rm -rf "$work"
  else
    echo "fuzz_$t: FAILED, see build-fuzz/fuzz_$t.log and build-fuzz/crashes/"
    tail -30 "build-fuzz/fuzz_$t.log"
    rm -rf "$work"
    return 1
  fi
}
status=0
run segment & p1=$!
run csv & p2=$!
wait $p1 || status=1
wait $p2 || status=1
run npy & p3=$!
run protocol & p4=$!
wait $p3 || status=1
wait $p4 || status=1
run control & p5=$!
run compose & p6=$!
wait $p5 || status=1
wait $p6 || status=1
run s3_xml & p7=$!
run http & p8=$!
wait $p7 || status=1
wait $p8 || status=1
run sync || status=1
ctest --test-dir build-fuzz -R fuzz_ --output-on-failure || status=1
exit $status
