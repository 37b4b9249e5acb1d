# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reading: numpy views and pandas DataFrames over a pinned version, without copies.

Every array made here is a view of a libsnap._core.Buffer, which holds the Pin:
numpy keeps the buffer alive through ``.base``, pyarrow through its Buffer's
parent, so the version stays pinned exactly as long as any of them lives.

What copies (docs/python.md): the validity mask of a nullable numpy-backed
column (one byte per row; the values are not copied), category labels (the
dictionary, not the codes), strings when pyarrow is not installed, and
nullable timestamps/durations of segments sealed before the NaT rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

_PA = []


def _pyarrow():
    """pyarrow if installed (strings stay zero-copy), else
    None. Imported on first need: it costs milliseconds that a numeric table's
    read does not need to pay."""
    if not _PA:
        try:
            import pyarrow
        except ImportError:
            pyarrow = None
        _PA.append(pyarrow)
    return _PA[0]

_NP = {
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "float32": np.float32, "float64": np.float64, "bool": np.bool_,
}
for _u in ("s", "ms", "us", "ns"):
    _NP[f"timestamp[{_u}]"] = np.dtype(f"M8[{_u}]")
    _NP[f"duration[{_u}]"] = np.dtype(f"m8[{_u}]")
_INT64_MIN = np.iinfo(np.int64).min
_MASKED = {"i": pd.arrays.IntegerArray, "u": pd.arrays.IntegerArray,
           "f": pd.arrays.FloatingArray, "b": pd.arrays.BooleanArray}


@dataclass
class Layout:
    cols: list           # _core column tuples: (name, type, nullable, tz, block, pos, code, dict, bytes)
    blocks: list         # _core block tuples: (type, tz, nullable, column indices)
    labels: list         # data column labels, in frame order
    data_cols: list      # segment column index of each label
    index_cols: list     # segment columns that form the index
    meta: dict


def _label(x):
    return tuple(x) if isinstance(x, list) else x


def layout(pin) -> Layout:
    cols, blocks = pin.columns(), pin.blocks()
    raw = pin.metadata
    meta = {}
    if raw:
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = {}
    if meta.get("libsnap_python") == 1:
        data_cols = [c["col"] for c in meta["columns"]]
        labels = [_label(c["label"]) for c in meta["columns"]]
        idx = meta.get("index") or {}
        index_cols = idx.get("cols", []) if idx.get("kind") == "columns" else []
    else:  # published from C or another tool: every column is data
        data_cols = list(range(len(cols)))
        labels = [c[0] for c in cols]
        index_cols = []
    return Layout(cols, blocks, labels, data_cols, index_cols, meta)


def _buf(pin, kind, i):
    return pin.buffer(kind, i)


def _mask(pin, i, nrows):
    """Missing-value mask (True = missing) from the Arrow validity bitmap: a copy
    of one byte per row."""
    bits = np.frombuffer(_buf(pin, "validity", i), np.uint8)
    return ~np.unpackbits(bits, bitorder="little", count=nrows).astype(bool)


def _values(pin, c, i, nrows):
    """Zero-copy 1-D numpy view of a fixed-width column (or category codes)."""
    tname, code = c[1], c[6]
    dt = np.dtype(_NP[code] if tname == "category" else _NP[tname])
    return np.frombuffer(_buf(pin, "values", i), dt, count=nrows)


def _strings(pin, c, i, n, kind_offsets="offsets", kind_data="data", validity=None):
    offs = _buf(pin, kind_offsets, i)
    data = _buf(pin, kind_data, i)
    pa = _pyarrow()
    if pa is not None:
        vb = pa.py_buffer(validity) if validity is not None else None
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(data), vb)
    # without pyarrow: a documented copy into Python str objects (None = missing)
    o = np.frombuffer(offs, np.int64, count=n + 1)
    raw = bytes(memoryview(data))
    out = np.empty(n, dtype=object)
    out[:] = [raw[o[k]:o[k + 1]].decode("utf-8") for k in range(n)]
    if validity is not None:
        bits = np.frombuffer(validity, np.uint8)
        out[~np.unpackbits(bits, bitorder="little", count=n).astype(bool)] = None
    return out


def _categories(pin, c, i):
    d = _strings(pin, c, i, int(c[7]))
    if _pyarrow() is not None:
        d = d.to_pylist()
    return pd.Index(list(d))  # the labels pandas would infer (str in pandas 3)


def _datetime_tz(values_m8, tz):
    dtype = pd.DatetimeTZDtype(np.datetime_data(values_m8.dtype)[0], tz)
    try:  # zero copy: wrap the int64 view as UTC instants of that zone
        return pd.arrays.DatetimeArray._simple_new(values_m8, dtype=dtype)
    except Exception:  # pragma: no cover - private constructor moved
        return pd.DatetimeIndex(values_m8).tz_localize("UTC").tz_convert(tz).array


def column(pin, lay: Layout, i: int):
    """One column as the natural read-only 1-D array (see module doc)."""
    c = lay.cols[i]
    name, tname, nullable, tz, _, _, code, dict_size, _ = c
    n = pin.nrows
    pa = _pyarrow() if tname == "string" else None
    if tname == "string":
        arr = _strings(pin, c, i, n, validity=_buf(pin, "validity", i) if nullable else None)
        return pd.arrays.ArrowExtensionArray(arr) if pa is not None else arr
    if tname == "category":
        codes = _values(pin, c, i, n)
        dtype = pd.CategoricalDtype(_categories(pin, c, i),
                                    ordered=bool(lay.meta.get("ordered", {}).get(str(i))))
        return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
    v = _values(pin, c, i, n)
    if nullable:
        if v.dtype.kind in "Mm":
            # The writer's seal stores NaT (INT64_MIN) in every null slot
            # (docs/format.md), so the values are the datetime64 array as is.
            # Segments sealed before that rule may hold anything there: check,
            # and only then copy and write NaT (same dtype either way).
            miss = _mask(pin, i, n)
            if miss.any() and not (v.view(np.int64)[miss] == _INT64_MIN).all():
                v = v.copy()
                v[miss] = v.dtype.type("NaT")
                v.flags.writeable = False
        else:
            return _MASKED[v.dtype.kind](v, _mask(pin, i, n), copy=False)
    if tz:
        return _datetime_tz(v, tz)
    return v


def column_dtype(pin, lay: Layout, i: int):
    c = lay.cols[i]
    tname, nullable, tz = c[1], c[2], c[3]
    if tname in ("string", "category") or (nullable and tname in _NP and
                                            np.dtype(_NP[tname]).kind not in "Mm") or tz:
        return column(pin, lay, i).dtype
    return np.dtype(_NP[tname])


def _block_view(pin, b, blk, nrows):
    """The (k, nrows) matrix of a block: a view, strided when the block has room
    for more rows than it holds (after appends; docs/format.md section 10a)."""
    dt = np.dtype(_NP[blk[0]])
    k = len(blk[3])
    buf = _buf(pin, "block", b)
    room = len(buf) // (dt.itemsize * k) if k else nrows
    return np.frombuffer(buf, dt, count=k * room).reshape(k, room)[:, :nrows]


def matrix(pin, lay: Layout):
    """Read-only (nrows, ncols) view of a homogeneous table."""
    plain = [b for b in lay.blocks if not b[2] and b[1] is None]
    if (len(lay.blocks) != 1 or len(plain) != 1 or lay.index_cols or
            list(plain[0][3]) != lay.data_cols):
        kinds = sorted({lay.cols[i][1] for i in lay.data_cols})
        raise TypeError(f"to_numpy() needs one dtype for the whole table without nulls; "
                        f"this one has {', '.join(kinds) or 'no columns'}")
    return _block_view(pin, 0, plain[0], pin.nrows).T


def _index(pin, lay: Layout):
    idx = lay.meta.get("index") or {}
    n = pin.nrows
    if idx.get("kind") == "range":
        return pd.RangeIndex(idx["start"], idx["stop"], idx["step"], name=_label(idx.get("name")))
    if idx.get("kind") == "columns":
        arrays = [column(pin, lay, i) for i in idx["cols"]]
        names = [_label(x) for x in idx.get("names", [None] * len(arrays))]
        if len(arrays) == 1:
            return pd.Index(arrays[0], name=names[0], copy=False)
        return pd.MultiIndex.from_arrays(arrays, names=names)
    return pd.RangeIndex(n)


def _columns_index(lay: Layout):
    spec = lay.meta.get("column_labels") or {}
    name = _label(spec.get("name"))
    if spec.get("kind") == "range":
        return pd.RangeIndex(spec["start"], spec["stop"], spec["step"], name=name)
    if lay.labels and all(isinstance(x, tuple) for x in lay.labels):
        return pd.MultiIndex.from_tuples(lay.labels, names=spec.get("names"))
    return pd.Index(lay.labels, name=name, tupleize_cols=False)


try:  # pandas 3: the public constructor from whole blocks
    from pandas.api.internals import create_dataframe_from_blocks as _from_blocks
except ImportError:  # pandas 2.x: the same through the internal block API
    from pandas.core.internals.api import make_block as _make_block
    from pandas.core.internals.blocks import ensure_block_shape as _block_shape
    from pandas.core.internals.managers import BlockManager as _BlockManager

    def _from_blocks(blocks, index, columns):
        # 2-D-capable arrays (zoned timestamps) must be shaped (1, n) for their block
        mgr = _BlockManager(tuple(_make_block(_block_shape(v, ndim=2), placement=p, ndim=2)
                                  for v, p in blocks), [columns, index])
        return pd.DataFrame._from_mgr(mgr, axes=mgr.axes)


def _frame_from_blocks(blocks, index, columns):
    return _from_blocks(blocks, index=index, columns=columns)


def to_pandas(pin, lay: Layout | None = None) -> pd.DataFrame:
    """DataFrame from whole dtype blocks: a float64 table of any width is one
    consolidated block over the shared memory."""
    if lay is None:
        lay = layout(pin)
    n = pin.nrows
    where = {c: k for k, c in enumerate(lay.data_cols)}  # segment column -> frame position
    blocks, done = [], set()
    for b, blk in enumerate(lay.blocks):
        tname, tz, nullable, members = blk
        if nullable or tz is not None:
            continue
        rows = [r for r, c in enumerate(members) if c in where]
        if not rows:
            continue
        arr = _block_view(pin, b, blk, n)
        # index columns are published last, so they are the trailing rows of their
        # blocks and the data rows are a leading slice: still a view
        if rows != list(range(len(rows))):
            arr = arr[rows]  # pragma: no cover - only for tables published out of order
        else:
            arr = arr[: len(rows)]
        blocks.append((arr, np.array([where[members[r]] for r in rows], dtype=np.intp)))
        done.update(members[r] for r in rows)
    for c in lay.data_cols:
        if c not in done:
            arr = column(pin, lay, c)
            if isinstance(arr, np.ndarray) and arr.dtype != object:
                arr = arr.reshape(1, -1)  # a numpy block is 2-D (e.g. nullable datetime64)
            blocks.append((arr, np.array([where[c]], dtype=np.intp)))
    return _frame_from_blocks(blocks, _index(pin, lay), _columns_index(lay))
