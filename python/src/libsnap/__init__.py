# SPDX-License-Identifier: LGPL-2.1-or-later
"""libsnap: many processes sharing one large, refreshable table in memory.

    import libsnap
    store = libsnap.open(create=True)          # $LIBSNAP_STORE or the default store
    store.publish("prices", df)                # DataFrame, dict of 1-D arrays, 2-D ndarray
    df = store.read("prices")                  # zero-copy, read-only DataFrame
    with store.pin("prices") as snap:          # a pinned version
        a = snap["price"]                      # read-only numpy view

A version stays pinned exactly as long as any Snapshot, array, Series or DataFrame
made from it is alive. Errors are subclasses of libsnap.Error carrying .code and
.name, generated from the C library's error table.
"""
from . import _core
from ._core import ERRORS, FORMAT_VERSION, LIBRARY_VERSION, Error, OSError
from ._store import GcReport, Snapshot, Store, VersionInfo, open

# One exception class per entry of the C error table (NotFound, Corrupt, ...).
for _cls, _cname, _code, _msg in ERRORS:
    globals()[_cls] = getattr(_core, _cls)
    # class-level defaults, so errors raised by the Python layer carry them too
    globals()[_cls].code, globals()[_cls].name = _code, "SNAP_E" + _cname
del _cls, _cname, _code, _msg

__version__ = LIBRARY_VERSION  # one version number: libsnap.h
__all__ = ["open", "Store", "Snapshot", "VersionInfo", "GcReport", "Error", "OSError",
           "LIBRARY_VERSION", "FORMAT_VERSION"] + [e[0] for e in ERRORS]
