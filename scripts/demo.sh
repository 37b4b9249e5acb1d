#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job, end to end: install what is needed (Debian packages, a Python venv
# with numpy/pandas/pyarrow and the libsnap module), then run the motivating
# workload: 10 Python worker processes answering random queries against one table in
# shared memory while a writer refreshes it every few seconds. Extra arguments go to
# the example, e.g. --workers 16 --rows 5000000 --cols 100 --seconds 60.
# `scripts/demo.sh --c` runs the C demo instead (one writer, C reader processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
store=${LIBSNAP_STORE:-/dev/shm/libsnap/demo}
if [ "${1:-}" = "--c" ]; then
  shift
  cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSNAP_BUILD_PYTHON=OFF \
    >/dev/null
  cmake --build build-demo -j "$(nproc)" --target libsnap_demo
  exec ./build-demo/examples/libsnap_demo --store "$store" "$@"
fi
bash scripts/venv.sh .venv python/requirements-test.txt
.venv/bin/python -m pip install -q ./python
exec .venv/bin/python python/examples/workers.py --store "$store" "$@"
