#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `cmake --install` into a temporary prefix, then build the quick start against
# it with find_package(libsnap) (shared and static) and with pkg-config, and run
# each binary.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
store=$(mktemp -d /dev/shm/snaptest-install-XXXXXX)
trap 'rm -rf "$tmp" "$store"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/libsnap/libsnap.h"
# the SONAME link: libsnap.so.MAJOR (libsnap.so.0.MINOR before 1.0)
soname=$(sed -n 's/^#define SNAP_VERSION_\(MAJOR\|MINOR\) \([0-9]*\)$/\2/p' \
  "$src/libsnap/include/libsnap/libsnap.h" | paste -sd.)
case $soname in 0.*) ;; *) soname=${soname%%.*} ;; esac
test -L "$tmp/prefix/lib/libsnap.so.$soname" || test -L "$tmp/prefix/lib64/libsnap.so.$soname"
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  >/dev/null
cmake --build "$tmp/consumer" >/dev/null
libdir=$(dirname "$(find "$tmp/prefix" -name "libsnap.so.$soname" | head -1)")
LD_LIBRARY_PATH=$libdir "$tmp/consumer/quickstart_shared" "$store/a" | grep -q "price 31.50 qty 3"
"$tmp/consumer/quickstart_static" "$store/b" | grep -q "price 10.50 qty 1"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$tmp/qs_pc" "$src/examples/quickstart.c" $(pkg-config --define-prefix --cflags --libs libsnap)
LD_LIBRARY_PATH=$libdir "$tmp/qs_pc" "$store/c" | grep -q "v1 row 1: price 21.00 qty 2"
echo "install test: headers, libsnap.so.$soname, CMake package (shared, static), pkg-config: ok"
