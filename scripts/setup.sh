#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Install what libsnap needs to build and test on a fresh Debian 12 machine.
# Idempotent: does nothing when every package is already there.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config liburcu-dev liblmdb-dev
      libcunit1-dev libxxhash-dev libcurl4-openssl-dev clang-format clang
      libclang-rt-14-dev valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
# Python 3 with venv and headers (the binding is a C extension). Debian's packages
# unless the python3 on PATH already has both.
if ! python3 -c 'import ensurepip, sysconfig, os, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null; then
  for p in python3 python3-dev python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
