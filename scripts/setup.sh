#!/usr/bin/env bash
# Install what libsnap needs to build and test on a fresh Debian 12 machine.
# Idempotent: does nothing when every package is already there.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config liburcu-dev liblmdb-dev
      libcunit1-dev libxxhash-dev clang-format)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
