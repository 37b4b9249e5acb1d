#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite: installs what it needs (Debian packages, two Python venvs),
# checks the C formatting, then builds and runs every test twice: once plain
# (-Wall -Wextra -Werror; C tests, install test, Python tests on pandas 3 with
# pyarrow and on pandas 2.2 without it; the auditwheel-repaired wheel in a fresh venv
# with compilers, headers and system libraries hidden, scripts/wheel.sh) and once
# under ASan+UBSan (C tests); then TSan, valgrind, and a
# 60 s libFuzzer smoke run per fuzz target (scripts/fuzz.sh).
# Usage: scripts/test.sh           the whole suite (what CI runs)
#        scripts/test.sh --quick   the loop for a change: one build, the fast tests
#                                  (no torture, sanitizers, valgrind or fuzzing,
#                                  Python on pandas 3 only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
bash scripts/setup.sh
bash scripts/venv.sh .venv python/requirements-test.txt
bash scripts/venv.sh .venv-pd22 python/requirements-pandas22.txt
bash scripts/venv.sh .venv-s3 tests/s3/requirements.txt   # the S3 server for tests/s3

jobs=$(nproc)
echo "== format check (clang-format --dry-run)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

echo "== build and test: release"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-Werror \
  -DSNAP_BUILD_PYTHON=ON -DSNAP_BUILD_BENCH=ON \
  -DPython3_EXECUTABLE="$PWD/.venv/bin/python" -DSNAP_PYTHON_SECOND="$PWD/.venv-pd22/bin/python"
cmake --build build -j "$jobs"
if ((quick)); then
  ctest --test-dir build --output-on-failure -j "$jobs" \
    -E '^(torture|install_test|python_tests_second)$'
  exit 0
fi
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== Python package as users get it: a repaired wheel in a fresh venv, Python tests on it"
bash scripts/wheel.sh --test

echo "== build and test: ASan + UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DSNAP_SANITIZE=address,undefined -DSNAP_BUILD_BENCH=OFF -DSNAP_BUILD_PYTHON=OFF \
  -DCMAKE_C_FLAGS=-Werror
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== build and test: TSan (library, multi-process, torture, snapctl and writerd tests)"
# liburcu is not TSan-instrumented: tests/tsan.supp suppresses its own frames only.
# die_after_fork=0: the tests fork from processes that run urcu's call_rcu thread.
CC=clang cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSNAP_SANITIZE=thread \
  -DSNAP_BUILD_BENCH=OFF -DSNAP_BUILD_PYTHON=OFF -DSNAP_TORTURE_SECONDS=10 >/dev/null
cmake --build build-tsan -j "$jobs"
TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp die_after_fork=0 halt_on_error=1" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" \
  -R '^(segment_test|store_test|arrow_test|share_test|edit_test|replica_test|sync_test|process_test|torture|ingest_test|cli_.*|writerd_.*)$'

echo "== valgrind memcheck (library unit tests)"
ctest --test-dir build -T memcheck -R '^(segment_test|store_test|arrow_test)$' \
  --output-on-failure

echo "== fuzz smoke run (60 s per target) and fuzz regressions"
bash scripts/fuzz.sh 60
