# SPDX-License-Identifier: LGPL-2.1-or-later
"""Publishing from pandas and numpy: each column is written once, straight into
the new segment (numpy.copyto into a writable view of the mapping).

Inputs: a DataFrame, a dict of 1-D arrays (or Series), or a 2-D ndarray. The
whole input is checked before the publish begins: a column of an unsupported
dtype is refused with its label and dtype, and nothing is published.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from . import _core

from ._frame import _pyarrow

T = _core.TYPES
_KIND_TYPE = {
    ("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32", ("i", 8): "int64",
    ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32", ("u", 8): "uint64",
    ("f", 4): "float32", ("f", 8): "float64", ("b", 1): "bool",
}
_CODE_TYPES = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}


_UNITS = ("s", "ms", "us", "ns")


def _time_values(label, arr):
    """(libsnap type, int64 values, NaT mask) of a numpy datetime64/timedelta64
    array, in its own unit when libsnap has it (s, ms, us, ns). Other units are
    converted to the nearest one that holds them exactly (D, h, m -> s; ps, fs,
    as -> ns), and a value that would overflow or lose precision is refused
    naming the column and the value: numpy's astype would wrap silently."""
    kind = "timestamp" if arr.dtype.kind == "M" else "duration"
    unit, count = np.datetime_data(arr.dtype)
    if unit not in _UNITS or count != 1:
        target = np.dtype(f"{arr.dtype.kind}8[{'ns' if unit in ('ps', 'fs', 'as') else 's'}]")
        conv = arr.astype(target)
        nat = np.isnat(arr)
        bad = ~nat & (conv.astype(arr.dtype) != arr)
        if bad.any():
            raise _core.InvalidArgument(
                f"column {label!r}: value {arr[bad][0]!r} does not fit {target} "
                f"({kind}s are stored in s, ms, us or ns); nothing was published")
        arr, unit = conv, np.datetime_data(target)[0]
    nat = np.isnat(arr)
    return f"{kind}[{unit}]", arr.view(np.int64), nat


def _refuse(label, dtype, why=""):
    raise _core.InvalidArgument(
        f"column {label!r}: dtype {dtype} is not supported{': ' + why if why else ''}; "
        "nothing was published")


def _json_label(x):
    if isinstance(x, (str, int)) and not isinstance(x, bool):
        return x
    if isinstance(x, tuple):
        return [_json_label(v) for v in x]
    if x is None:
        return None
    return str(x)


class _Col:
    """One column to publish: its schema field and how to fill it."""

    __slots__ = ("label", "name", "type", "nullable", "tz", "data_bytes", "dict_size",
                 "code_type", "values", "mask", "strings", "dictionary")

    def __init__(self, label, name):
        self.label, self.name = label, name
        self.nullable, self.tz = False, None
        self.data_bytes = self.dict_size = 0
        self.code_type = 0
        self.values = self.mask = self.strings = self.dictionary = None

    def field(self):
        return (self.name, T[self.type], self.nullable, self.tz, self.data_bytes,
                self.dict_size, T[self.code_type] if self.code_type else 0)


def _encode_strings(values, label):
    """(offsets int64, data bytes as uint8 array, missing mask or None)."""
    pa = _pyarrow()
    if pa is not None:
        try:
            if isinstance(values, (pa.Array, pa.ChunkedArray)):
                arr = values.cast(pa.large_string())
            else:
                arr = pa.array(values, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            _refuse(label, getattr(values, "dtype", "object"), f"not all strings ({e})")
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        vb, ob, db = arr.buffers()
        offs = np.frombuffer(ob, np.int64, count=len(arr) + 1, offset=arr.offset * 8)
        start, end = int(offs[0]), int(offs[-1])
        data = np.frombuffer(db, np.uint8, count=end - start, offset=start) if db else \
            np.empty(0, np.uint8)
        mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
        return offs - start, data, mask
    obj = np.asarray(values, dtype=object)
    mask = pd.isna(obj)
    parts = []
    for v, m in zip(obj, mask):
        if m:
            parts.append(b"")
        elif isinstance(v, str):
            parts.append(v.encode("utf-8"))
        else:
            _refuse(label, "object", f"holds {type(v).__name__} values, not only strings")
    offs = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offs[1:])
    data = np.frombuffer(b"".join(parts), np.uint8)
    return offs, data, (mask if mask.any() else None)


def _classify(col: _Col, values, nrows):
    """Decide the libsnap type of one column and keep what the fill needs."""
    label = col.label
    pa = _pyarrow()
    if pa is not None and isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _classify_arrow(col, values, nrows, pa, True)
    if pa is not None and isinstance(values, _ArrowField):
        return _classify_arrow(col, values.values, nrows, pa, values.nullable)
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        values = values.to_numpy()  # a view of the numpy data
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        values = np.asarray(values)
        dtype = values.dtype
    if len(values) != nrows:
        raise _core.InvalidArgument(f"column {label!r}: {len(values)} rows, expected {nrows}")
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if infer_dtype(cats, skipna=False) not in ("string", "empty"):
            _refuse(label, dtype, "categories must be strings")
        codes = np.asarray(values.codes)
        col.type, col.code_type = "category", _CODE_TYPES[codes.dtype.itemsize]
        col.values = codes
        offs, data, _ = _encode_strings(np.asarray(cats, dtype=object), label)
        col.dictionary = (offs, data)
        col.dict_size, col.data_bytes = len(cats), len(data)
        return
    if isinstance(dtype, pd.DatetimeTZDtype):  # in its own unit: no conversion
        utc = np.asarray(pd.DatetimeIndex(values).asi8).view(f"M8[{dtype.unit}]")
        col.type, col.values, nat = _time_values(label, utc)
        col.tz = str(dtype.tz)
        if nat.any():
            col.nullable, col.mask = True, nat
        return
    if isinstance(dtype, np.dtype) and dtype.kind in "Mm":
        col.type, col.values, nat = _time_values(label, np.asarray(values))
        if nat.any():  # a NaT-free column reads back with the same dtype (docs/python.md)
            col.nullable, col.mask = True, nat
        return
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and hasattr(values, "_mask") \
            and hasattr(values, "_data"):  # pandas masked arrays: Int64, Float64, boolean
        data = np.asarray(values._data)
        key = (data.dtype.kind, data.dtype.itemsize)
        if key not in _KIND_TYPE:
            _refuse(label, dtype)
        # always nullable, nulls or not: the reader rebuilds the masked dtype from
        # the flag, so the dtype read never depends on the values
        col.type, col.values = _KIND_TYPE[key], data
        col.nullable, col.mask = True, np.asarray(values._mask)
        return
    pa = _pyarrow() if isinstance(dtype, pd.ArrowDtype) else None
    is_str = (isinstance(dtype, pd.StringDtype) or
              (dtype == object and infer_dtype(values, skipna=True) in ("string", "empty")) or
              (pa is not None and isinstance(dtype, pd.ArrowDtype) and
               pa.types.is_string(dtype.pyarrow_dtype) or
               pa is not None and isinstance(dtype, pd.ArrowDtype) and
               pa.types.is_large_string(dtype.pyarrow_dtype)))
    if is_str:
        offs, data, mask = _encode_strings(values, label)
        col.type, col.strings, col.data_bytes = "string", (offs, data), len(data)
        if mask is not None:
            col.nullable, col.mask = True, mask
        return
    if isinstance(dtype, pd.ArrowDtype) and pa is not None:
        # an Arrow type is nullable whatever its values: always SNAP_NULLABLE
        return _classify_arrow(col, pa.chunked_array(values._pa_array), nrows, pa, True)
    if isinstance(dtype, np.dtype) and (dtype.kind, dtype.itemsize) in _KIND_TYPE:
        col.type, col.values = _KIND_TYPE[(dtype.kind, dtype.itemsize)], np.asarray(values)
        return
    if dtype == object:
        _refuse(label, dtype, f"holds {infer_dtype(values, skipna=True)} values")
    _refuse(label, dtype)


class _ArrowField:
    """A column of an Arrow table with its field's declared nullability."""

    __slots__ = ("values", "nullable")

    def __init__(self, values, nullable):
        self.values, self.nullable = values, nullable


def _classify_arrow(col: _Col, values, nrows, pa, nullable):
    """A pyarrow column: its buffers are copied once, into the segment. Numeric,
    bool and temporal columns are SNAP_NULLABLE when their field is declared
    nullable (pyarrow's default), with nulls or without: the dtype read back is
    then a function of the Arrow type, not of the values."""
    import pyarrow.compute as pc

    label = col.label
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    t = arr.type
    if len(arr) != nrows:
        raise _core.InvalidArgument(f"column {label!r}: {len(arr)} rows, expected {nrows}")
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    if pa.types.is_dictionary(t):
        vt = t.value_type
        if not (pa.types.is_string(vt) or pa.types.is_large_string(vt) or (
                hasattr(pa.types, "is_string_view") and pa.types.is_string_view(vt))):
            _refuse(label, t, "dictionary values must be strings")
        codes = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False)
        width = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}[codes.dtype.itemsize]
        if codes.dtype.kind != "i":
            codes = codes.astype(np.int64)
            width = "int64"
        col.type, col.code_type, col.values = "category", width, codes
        offs, data, _ = _encode_strings(arr.dictionary, label)
        col.dictionary = (offs, data)
        col.dict_size, col.data_bytes = len(arr.dictionary), len(data)
        return
    if pa.types.is_string(t) or pa.types.is_large_string(t) or (
            hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t)):
        offs, data, m = _encode_strings(arr, label)
        col.type, col.strings, col.data_bytes = "string", (offs, data), len(data)
        if m is not None:
            col.nullable, col.mask = True, m
        return
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date(t):
        if pa.types.is_date(t):  # date32 (days) -> seconds, date64 -> ms: exact
            t = pa.timestamp("s" if pa.types.is_date32(t) else "ms")
            arr = arr.cast(t)  # safe cast: cannot overflow int64 for these units
        col.type = ("timestamp" if pa.types.is_timestamp(t) else "duration") + f"[{t.unit}]"
        col.tz = t.tz if pa.types.is_timestamp(t) else None
        # null slots become NaT when the segment is sealed (publish.c)
        col.values = pc.fill_null(arr.view(pa.int64()), 0).to_numpy(zero_copy_only=False)
        col.nullable = nullable
    elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        if pa.types.is_float16(t):
            _refuse(label, t)
        filled = pc.fill_null(arr, False if pa.types.is_boolean(t) else 0) if mask is not None \
            else arr
        v = filled.to_numpy(zero_copy_only=False)  # no copy for numbers without nulls
        key = (v.dtype.kind, v.dtype.itemsize)
        if key not in _KIND_TYPE:
            _refuse(label, t)
        col.type, col.values = _KIND_TYPE[key], v
        col.nullable = nullable
    else:
        _refuse(label, t)
    if mask is not None:
        col.nullable, col.mask = True, mask
    elif col.nullable:
        col.mask = np.zeros(nrows, bool)


def _items(data):
    """(list of (label, values), nrows, index, column-labels metadata)."""
    pa = _pyarrow()
    if pa is not None and not isinstance(data, (pd.DataFrame, np.ndarray, dict)):
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        elif not isinstance(data, pa.Table) and hasattr(data, "__arrow_c_stream__"):
            data = pa.table(data)  # e.g. a polars DataFrame: imported without a copy
        if isinstance(data, pa.Table):
            items = [(f.name, _ArrowField(c, f.nullable))
                     for f, c in zip(data.schema, data.columns)]
            return items, data.num_rows, None, {"kind": "list", "name": None}
    if isinstance(data, pd.DataFrame):
        items = [(lab, data.iloc[:, j].array) for j, lab in enumerate(data.columns)]
        cols = data.columns
        if isinstance(cols, pd.RangeIndex):
            spec = {"kind": "range", "start": cols.start, "stop": cols.stop, "step": cols.step,
                    "name": _json_label(cols.name)}
        else:
            spec = {"kind": "list", "name": _json_label(cols.name),
                    "names": [_json_label(x) for x in cols.names]
                    if isinstance(cols, pd.MultiIndex) else None}
        return items, len(data), data.index, spec
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise _core.InvalidArgument(
                f"a numpy array to publish must be 2-D (rows, columns), not {data.ndim}-D")
        items = [(j, data[:, j]) for j in range(data.shape[1])]
        return items, data.shape[0], None, {"kind": "range", "start": 0,
                                            "stop": data.shape[1], "step": 1, "name": None}
    if isinstance(data, dict):
        items = [(k, v.array if isinstance(v, pd.Series) else v) for k, v in data.items()]
        lens = {len(v) for _, v in items}
        if len(lens) > 1:
            raise _core.InvalidArgument(f"columns of different lengths: {sorted(lens)}")
        return items, lens.pop() if lens else 0, None, {"kind": "list", "name": None}
    raise TypeError(f"cannot publish {type(data).__name__}: pass a DataFrame, a dict of "
                    "1-D arrays or a 2-D numpy array")


def _segment_name(label, used):
    name = "_".join(map(str, label)) if isinstance(label, tuple) else str(label)
    name = name.replace("\0", "?") or "_"
    base, k = name, 1
    while name in used:  # names in the segment stay unique; labels live in metadata
        k += 1
        name = f"{base}.{k}"
    used.add(name)
    return name


def _copy(pub, kind, i, arr):
    """Hand one buffer over; the library reads it at commit and writes only the
    2 MiB chunks that differ from the current version (an array that is a view
    of the current version, e.g. a column of ``store.read()``, is not even read)."""
    arr = np.ascontiguousarray(arr)  # a view when already contiguous
    if arr.dtype.byteorder == ">":  # segments are little-endian
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.nbytes:
        pub.copy(kind, i, arr.view(np.uint8).reshape(-1))


def _fill(pub, i, col: _Col):
    if col.type in ("string", "category"):
        offs, data = col.strings if col.type == "string" else col.dictionary
        _copy(pub, "offsets", i, np.asarray(offs, np.int64))
        _copy(pub, "data", i, data)
        if col.type == "category":
            _copy(pub, "values", i, col.values)
    elif len(col.values):
        _copy(pub, "values", i, col.values)
    if col.nullable:
        _copy(pub, "validity", i,
              np.packbits(~np.asarray(col.mask, dtype=bool), bitorder="little"))


def publish(store, dataset: str, data, share: bool = True, edit=None) -> int:
    """@edit: a _core.Edit the data comes from (store.edit()): buffers still in
    its view are shared unread where no page was written, and the flip is a
    compare-and-swap on its base."""
    items, nrows, index, labels_spec = _items(data)
    used: set = set()
    cols = []
    for label, values in items:
        c = _Col(label, _segment_name(label, used))
        _classify(c, values, nrows)
        cols.append(c)
    index_meta = None
    if index is None or (isinstance(index, pd.RangeIndex)):
        rng = index if index is not None else pd.RangeIndex(nrows)
        index_meta = {"kind": "range", "start": rng.start, "stop": rng.stop, "step": rng.step,
                      "name": _json_label(rng.name)}
    else:  # index levels go last, so they are the trailing rows of their blocks
        names, first = [], len(cols)
        for k in range(index.nlevels):
            level = index.get_level_values(k)
            c = _Col(("__index__", k), _segment_name(f"__index_level_{k}__", used))
            _classify(c, level.array, nrows)
            cols.append(c)
            names.append(_json_label(index.names[k]))
        index_meta = {"kind": "columns", "cols": list(range(first, len(cols))), "names": names}
    ndata = len(items)
    ordered = {str(i): True for i, (_, v) in enumerate(items)
               if isinstance(getattr(v, "dtype", None), pd.CategoricalDtype) and v.dtype.ordered}
    meta = {"libsnap_python": 1,
            "columns": [{"label": _json_label(cols[i].label), "col": i} for i in range(ndata)],
            "column_labels": labels_spec, "index": index_meta, "ordered": ordered}
    pub = store.begin(dataset, nrows, [c.field() for c in cols], json.dumps(meta).encode())
    try:
        if not share:
            pub.full()
        for i, c in enumerate(cols):
            _fill(pub, i, c)
        if edit is not None:
            pub.edit(edit)  # after the last write to its view
        return pub.commit()
    except BaseException:
        try:
            pub.abort()
        except BufferError:  # a view is still alive (e.g. in the traceback): the
            pass             # publish is aborted when its last buffer goes
        raise


def _append_fast(store, dataset, rows, labels, dtypes, meta, edit=None):
    """The version number, or None when the table is not one the C append
    takes (then the caller publishes the concatenation). @labels, @dtypes and
    @meta describe the current version (Snapshot.columns, .dtypes, .metadata)."""
    idx = meta.get("index") or {}
    if (meta.get("libsnap_python") != 1 or idx.get("kind") != "range" or
            not isinstance(rows, pd.DataFrame) or list(rows.columns) != labels
            or len(set(labels)) != len(labels) or len(meta.get("columns", [])) != len(labels)):
        return None
    arrays = []
    for j, label in enumerate(labels):
        dt = dtypes[label]
        src = rows.iloc[:, j]
        if not isinstance(dt, np.dtype) or dt.kind not in "biufMm" or src.dtype != dt:
            return None
        arr = np.ascontiguousarray(src.to_numpy())
        if dt.kind in "Mm" and np.isnat(arr).any():
            return None  # NaT makes the column nullable in the segment
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        arrays.append(arr)
    n = len(rows)
    new_meta = dict(meta)
    new_meta["index"] = dict(idx, stop=idx["stop"] + n * idx["step"])
    try:
        pub = store._s.append_begin(dataset, n, json.dumps(new_meta).encode())
    except _core.InvalidArgument:
        return None  # e.g. a nullable column: published whole
    try:
        if edit is not None:
            pub.edit(edit)  # the old rows from the edit's view
        first = pub.nrows - n  # the rows of the version appended to
        for j, c in enumerate(meta["columns"]):
            if arrays[j].nbytes:
                pub.copy_rows(c["col"], first, arrays[j].view(np.uint8).reshape(-1))
        return pub.commit()
    except BaseException:
        try:
            pub.abort()
        except BufferError:
            pass
        raise


def append(store, dataset: str, rows) -> int:
    # the layout from the pin, without building the current version's frame
    with store.pin(dataset) as snap:
        labels, dtypes, meta = snap.columns, snap.dtypes, snap.metadata
    v = _append_fast(store, dataset, rows, labels, dtypes, meta)
    if v is not None:
        return v
    cur = store.read(dataset)
    whole = pd.concat([cur, rows], ignore_index=isinstance(cur.index, pd.RangeIndex))
    del cur
    return publish(store._s, dataset, whole)
