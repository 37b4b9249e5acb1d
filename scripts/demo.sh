#!/usr/bin/env bash
# The main job, end to end: install what is needed, build, and run the demo
# (one writer refreshing a table in shared memory while reader processes
# query it). Extra arguments go to the demo, e.g. --readers 8 --rows 5000000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
store=${LIBSNAP_STORE:-/dev/shm/libsnap/demo}
exec ./build/examples/libsnap_demo --store "$store" "$@"
