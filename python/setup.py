# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds libsnap._core: the CPython binding plus the libsnap C sources (every
libsnap/src/*.c but the tests, each its own object, as in the CMake build), one
extension module with hidden symbols.
System libraries (Debian): liburcu-dev, liblmdb-dev, libxxhash-dev."""
import glob
import os
import re

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

LIB = "../libsnap"  # python/ -> the library beside it in the repository


def _version():
    """The one version number, from the library's public header."""
    with open(f"{LIB}/include/libsnap/libsnap.h") as f:
        text = f.read()
    return ".".join(re.search(rf"#define SNAP_VERSION_{p} (\d+)", text).group(1)
                    for p in ("MAJOR", "MINOR", "PATCH"))


core = Extension(
    "libsnap._core",
    sources=["src/libsnap/_core.c"] + sorted(
        f for f in glob.glob(f"{LIB}/src/*.c")
        if not f.endswith("_test.c")),
    include_dirs=[f"{LIB}/include", f"{LIB}/src"],
    libraries=["urcu-bp", "lmdb", "xxhash", "pthread"],
    # _LGPL_SOURCE: the inline urcu read side, as the CMake build (libsnap is LGPL)
    define_macros=[("LIBSNAP_STATIC", "1"), ("_LGPL_SOURCE", "1")],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
)

class BuildExt(build_ext):
    """Objects of the library's sources (../libsnap/src/*.c) would be written
    beside python/: keep them inside build/."""

    def build_extensions(self):
        names = self.compiler.object_filenames

        def object_filenames(sources, strip_dir=0, output_dir=""):
            return names([f.replace("../", "up/") for f in sources], strip_dir, output_dir)

        self.compiler.object_filenames = object_filenames
        super().build_extensions()


setup(version=_version(), ext_modules=[core], cmdclass={"build_ext": BuildExt})
