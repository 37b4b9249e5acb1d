#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Python package as users get it: a wheel that carries the shared libraries it
# needs, the way `auditwheel repair` makes manylinux wheels.
#
#   bash scripts/wheel.sh          build build-wheel/dist/libsnap-*.whl
#   bash scripts/wheel.sh --test   ... then install it into a fresh venv and run the
#                                  Python tests against that install, with compilers,
#                                  headers and the system's liburcu/lmdb/xxhash hidden
#                                  (root: a private mount namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
test=0
case "${1:-}" in
  --test) test=1 ;;
  "") ;;
  *) echo "usage: scripts/wheel.sh [--test]" >&2; exit 2 ;;
esac

bash scripts/venv.sh .venv python/requirements-test.txt      # builds the wheel (pip)
bash scripts/venv.sh .venv-wheel python/requirements-wheel.txt
rm -rf build-wheel
.venv/bin/pip wheel -q --no-deps -w build-wheel/raw ./python
rm -rf python/build python/src/libsnap.egg-info
# The oldest manylinux tag this build's glibc symbols allow, as auditwheel reports it.
plat=$(.venv-wheel/bin/auditwheel show build-wheel/raw/*.whl 2>/dev/null |
  tr -s ' \n' ' ' | grep -o 'constrains the platform tag to "[^"]*"' | cut -d'"' -f2) ||
  true
if [ -z "$plat" ]; then
  echo "wheel: could not read the platform tag from 'auditwheel show':" >&2
  .venv-wheel/bin/auditwheel show build-wheel/raw/*.whl >&2
  exit 1
fi
if ! PATH="$PWD/.venv-wheel/bin:$PATH" .venv-wheel/bin/auditwheel repair --plat "$plat" \
  -w build-wheel/dist build-wheel/raw/*.whl >build-wheel/repair.log 2>&1; then
  cat build-wheel/repair.log >&2
  exit 1
fi
wheel=$(echo build-wheel/dist/*.whl)
echo "wheel: $wheel"
((test)) || exit 0

# A fresh venv with the wheel and the test requirements, binaries only (nothing
# may be compiled on the way in).
# the interpreter the wheel was built for (.venv's), not whatever python3 is first
"$(readlink -f .venv/bin/python)" -m venv build-wheel/venv
build-wheel/venv/bin/pip install -q --only-binary :all: "$wheel" \
  -r python/requirements-test.txt

hide_and_run() {
  # In a private mount namespace: no headers, no C compiler, and the system's copies
  # of the libraries the wheel bundles replaced by empty files, so a module that
  # still needed them would fail to import.
  mount -t tmpfs none /usr/include
  for d in /usr/lib/gcc /usr/libexec/gcc /usr/lib/llvm-*; do
    [ -d "$d" ] && mount -t tmpfs none "$d"
  done
  for f in /usr/lib/x86_64-linux-gnu/{liburcu-bp,liblmdb,libxxhash}.*; do
    [ -f "$f" ] && mount --bind /dev/null "$f"
  done
  if echo 'int main(void){return 0;}' | cc -x c - -o /dev/null 2>/dev/null; then
    echo "wheel test: a C compiler still works in the namespace" >&2
    exit 1
  fi
  exec "$@"
}
run=(build-wheel/venv/bin/python -m pytest -q -p no:cacheprovider python/tests)
check=(build-wheel/venv/bin/python -c 'import libsnap, sys, os
sys.exit(not libsnap.__file__.startswith(os.path.abspath("build-wheel/venv")))')
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  export -f hide_and_run
  unshare -m --propagation private bash -c 'set -euo pipefail; hide_and_run "$@"' _ \
    bash -c "${check[*]@Q} && ${run[*]@Q}"
else
  echo "wheel test: not root, so compilers and system libraries stay visible"
  "${check[@]}" && "${run[@]}"
fi
