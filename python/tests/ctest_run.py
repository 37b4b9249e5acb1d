# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs the Python tests for ctest: `python ctest_run.py [pytest args...]`.

A plain `cmake && ctest` on a machine whose Python lacks the test requirements
(python/requirements-test.txt) skips these tests with the reason, exit code 77,
which CMake registers as SKIP_RETURN_CODE, instead of failing them.
Optional packages (pyarrow, polars, duckdb, hypothesis) skip per test module.
"""
import importlib.util
import os
import sys

NEEDED = ("pytest", "numpy", "pandas")


def main():
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        print(f"SKIP: the Python tests need {', '.join(NEEDED)}; {sys.executable} lacks "
              f"{', '.join(missing)} (pip install -r python/requirements-test.txt, or "
              "configure with -DPython3_EXECUTABLE=a venv that has them)")
        return 77
    import pytest
    return pytest.main(["-q", "-p", "no:cacheprovider", os.path.dirname(__file__)]
                       + sys.argv[1:])


# The guard matters: multiprocessing's spawn and forkserver children import the
# main module again, and must not start another test session.
if __name__ == "__main__":
    sys.exit(main())
