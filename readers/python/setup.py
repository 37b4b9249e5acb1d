# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds libsnap._core: the CPython binding plus the libsnap C sources (through
src/libsnap/_bundle.c), one extension module with hidden symbols.
System libraries (Debian): liburcu-dev, liblmdb-dev, libxxhash-dev."""
from setuptools import Extension, setup

LIB = "../../libsnap"  # readers/python -> the repository root, where the C library lives

core = Extension(
    "libsnap._core",
    sources=["src/libsnap/_core.c", "src/libsnap/_bundle.c"],  # _bundle.c: libsnap/src/*.c
    include_dirs=[f"{LIB}/include", f"{LIB}/src"],
    libraries=["urcu-bp", "lmdb", "xxhash", "pthread"],
    define_macros=[("LIBSNAP_STATIC", "1")],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
)

setup(ext_modules=[core])
