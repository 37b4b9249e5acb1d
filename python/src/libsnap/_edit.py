# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writers without a private copy of the table (docs/python.md, "Editing and
building in place").

``store.edit(name)``: a writable DataFrame over a private, copy-on-write mapping
of the current version. The kernel copies a page only when the writer writes
it; leaving the block publishes a version that holds only the chunks with
written pages (read from /proc/self/pagemap, not found by comparing) and the
columns that were replaced, sharing the rest with the base version.

``store.build(name, schema, nrows)``: writable numpy arrays (and a DataFrame)
inside the new segment itself; leaving the block publishes it.
"""
from __future__ import annotations

import json
import resource

import numpy as np
import pandas as pd

from . import _core
from ._frame import (_frame_from_blocks, column_dtype as _column_dtype,
                     layout as _layout, to_pandas as _to_pandas)
from ._write import (_KIND_TYPE, _Col, _json_label, _segment_name, _append_fast,
                     publish as _publish)

_PAGE = resource.getpagesize()


class Edit:
    """An edit in progress: ``with store.edit(name) as df:``.

    ``df`` is a writable pandas DataFrame over a private copy-on-write view of
    the version current when the block began (its base). Usual pandas
    operations work on it in place: ``df.loc[mask, col] = ...``,
    ``df[col] *= 1.01``, ``df.iloc[i, j] = x``; replacing a column with a new
    array works too (that column is then published from the new array).
    ``append(rows)`` adds rows at the end of the same version. On leaving the
    block the new version is published (its number in ``version``); an
    exception inside the block publishes nothing.

    If another version of the dataset became current meanwhile, leaving the
    block raises ``libsnap.Conflict`` and publishes nothing: the edit is not
    rebased (a rebase would need to know what the other writer changed;
    begin the edit again from the new version).

    Memory: the pages written are this process's until ``df`` (and every array
    taken from it) is gone; the rest stays the shared segment. A pandas
    operation that copies the whole frame (``df = df * 2``, consolidating
    blocks, a Series kept alive across a write under copy-on-write) costs what
    it costs in pandas: a private copy, then compared at the commit.
    """

    def __init__(self, store, dataset: str):
        self._store, self.dataset = store, dataset
        self._e = None
        self._df = None
        self._rows = []
        self._base = None
        self._written = None
        self.version = None

    def __enter__(self) -> pd.DataFrame:
        if self._e is not None or self._base is not None:
            raise ValueError("an Edit is entered once; begin a new one with store.edit()")
        self._e = self._store._s.edit(self.dataset)
        self._df = _to_pandas(self._e)
        self._shape0 = (self._df.columns.copy(), self._df.index.copy(),
                        _blocks_sig(self._df))
        self._names = (list(self._df.columns.names), list(self._df.index.names))
        return self._df

    def __exit__(self, etype, evalue, tb):
        try:
            if etype is None:
                self._written = self._e.written() * _PAGE
                self.version = self._commit()
        finally:
            # the Edit keeps neither the base pinned nor the written pages: the
            # frame (and arrays from it) alone hold them from here on
            self._rows.clear()
            self._base = self._e.base
            self._df = self._e = None
        return False

    @property
    def frame(self) -> pd.DataFrame:
        """The writable frame (what ``with`` gives)."""
        return self._df

    @property
    def base(self) -> int:
        """The version the edit began from."""
        return self._e.base if self._e is not None else self._base

    def written_bytes(self) -> int:
        """Bytes of the table written so far (private memory: pages copied on
        write); after the block, what had been written when it ended."""
        if self._e is None:
            if self._written is None:
                raise ValueError("the edit was not entered, or ended with an exception")
            return self._written
        return self._e.written() * _PAGE

    def append(self, rows) -> None:
        """Rows (a DataFrame with the table's columns and dtypes) to add at the
        end of the new version, continuing its RangeIndex. Without a copy of
        the old rows when the table is one ``store.append`` takes in place."""
        if self._e is None:
            raise ValueError("append() belongs inside the edit's with block")
        self._rows.append(rows)

    def _in_view(self, lay) -> bool:
        """Every data column of the frame is still the view's own array, at its
        place, with the table's labels and RangeIndex: nothing replaced."""
        df, idx = self._df, lay.meta.get("index") or {}
        if (list(df.columns) != lay.labels or idx.get("kind") != "range" or
                not isinstance(df.index, pd.RangeIndex) or
                (df.index.start, df.index.stop, df.index.step) !=
                (idx["start"], idx["stop"], idx["step"])):
            return False
        for j, c in enumerate(lay.data_cols):
            arr = df.iloc[:, j].array
            if isinstance(arr, pd.arrays.NumpyExtensionArray):
                arr = arr.to_numpy()
            if not isinstance(arr, np.ndarray) or \
                    arr.__array_interface__["data"][0] != self._e.buffer("values", c).address:
                return False
        return True

    def _unchanged_layout(self) -> bool:
        """The frame is still the view's own blocks, in place, with the same
        labels and index: the C commit can publish the view as it is."""
        cols, index, sig = self._shape0
        df = self._df
        # names too: renaming an axis changes the same Index object in place
        return (sig is not None and _blocks_sig(df) == sig and
                df.columns.equals(cols) and list(df.columns.names) == self._names[0] and
                df.index.equals(index) and list(df.index.names) == self._names[1])

    def _commit(self) -> int:
        s, e, df = self._store, self._e, self._df
        if not self._rows and self._unchanged_layout():
            return e.commit()  # snap_edit_commit: no per-column work in Python
        if self._rows:
            rows = self._rows[0] if len(self._rows) == 1 else pd.concat(self._rows)
            self._rows = []
            lay = _layout(e)
            if self._in_view(lay):
                dtypes = {lab: _column_dtype(e, lay, i)
                          for lab, i in zip(lay.labels, lay.data_cols)}
                v = _append_fast(s, self.dataset, rows, lay.labels, dtypes, lay.meta,
                                 edit=e)
                if v is not None:
                    return v
            whole = pd.concat([df, rows], ignore_index=isinstance(df.index, pd.RangeIndex))
            return _publish(s._s, self.dataset, whole, edit=e)
        return _publish(s._s, self.dataset, df, edit=e)


def _blocks_sig(df):
    """Where each block of @df keeps its values (address, shape, strides, dtype,
    columns), or None when a block is not a plain numpy array (pandas internals,
    read only; None also when they moved)."""
    try:
        sig = []
        for blk in df._mgr.blocks:
            v = blk.values
            if not isinstance(v, np.ndarray):
                return None
            sig.append((v.__array_interface__["data"][0], v.shape, v.strides, v.dtype.str,
                        tuple(blk.mgr_locs.as_array.tolist())))
        return sorted(sig)
    except AttributeError:
        return None


def _field_type(label, dtype):
    """The libsnap type of a column built in place (fixed width only)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is not None and (dt.kind, dt.itemsize) in _KIND_TYPE:
        return _KIND_TYPE[(dt.kind, dt.itemsize)], dt
    if dt is not None and dt.kind in "Mm":
        unit, count = np.datetime_data(dt)
        if unit in ("s", "ms", "us", "ns") and count == 1:
            return (f"{'timestamp' if dt.kind == 'M' else 'duration'}[{unit}]"), dt
    raise _core.InvalidArgument(
        f"column {label!r}: dtype {dt if dt is not None else dtype} cannot be built in place (numeric, bool, "
        "datetime64 and timedelta64 in s, ms, us or ns can; publish() takes every "
        "dtype); nothing was published")


def _schema_of(schema, like):
    """[(label, dtype)], the column-labels metadata."""
    if like is not None:
        if schema is not None:
            raise TypeError("give a schema or like=, not both")
        if isinstance(like, pd.DataFrame):
            cols = like.columns
            spec = ({"kind": "range", "start": cols.start, "stop": cols.stop,
                     "step": cols.step, "name": _json_label(cols.name)}
                    if isinstance(cols, pd.RangeIndex) else
                    {"kind": "list", "name": _json_label(cols.name), "names": None})
            return list(zip(cols, like.dtypes)), spec
        arrow_schema = getattr(like, "schema", like)  # a pyarrow Table or Schema
        if hasattr(arrow_schema, "names") and hasattr(arrow_schema, "field"):
            items = []
            for f in arrow_schema:
                try:
                    items.append((f.name, f.type.to_pandas_dtype()))
                except NotImplementedError:
                    items.append((f.name, f.type))
            return items, {"kind": "list", "name": None}
        raise TypeError(f"like= takes a pandas DataFrame or a pyarrow Schema or Table, "
                        f"not {type(like).__name__}")
    if isinstance(schema, dict):
        return list(schema.items()), {"kind": "list", "name": None}
    if isinstance(schema, (list, tuple)):
        return [tuple(x) for x in schema], {"kind": "list", "name": None}
    raise TypeError("schema: a dict {label: dtype} or a list of (label, dtype)")


class Build:
    """A new version built in place: ``with store.build(name, schema, nrows) as b:``.

    ``b[label]`` is a writable 1-D numpy array inside the new segment (no
    private copy), ``b.frame`` a writable DataFrame over all of them. Leaving
    the block publishes the version (its number in ``version``); an exception
    publishes nothing. Chunks equal to the current version's are shared with
    it, as with ``publish``. Every value starts at zero.

    The arrays stay readable after the block, with what was written (a private
    copy-on-write mapping of the published file: a write then changes only
    this process's memory, never the published version).
    """

    def __init__(self, store, dataset: str, schema=None, nrows=None, like=None):
        items, spec = _schema_of(schema, like)
        if nrows is None:
            if not isinstance(like, pd.DataFrame):
                raise TypeError("nrows is required (except with like=DataFrame)")
            nrows = len(like)
        if isinstance(nrows, bool) or not isinstance(nrows, (int, np.integer)) or nrows < 0:
            raise _core.InvalidArgument(f"nrows = {nrows!r}: must be an integer >= 0")
        nrows = int(nrows)
        used: set = set()
        cols, dtypes = [], []
        for label, dtype in items:
            c = _Col(label, _segment_name(label, used))
            c.type, dt = _field_type(label, dtype)
            cols.append(c)
            dtypes.append(dt)
        meta = {"libsnap_python": 1,
                "columns": [{"label": _json_label(c.label), "col": i} for i, c in enumerate(cols)],
                "column_labels": spec,
                "index": {"kind": "range", "start": 0, "stop": nrows, "step": 1, "name": None},
                "ordered": {}}
        self.dataset, self.nrows, self.version = dataset, nrows, None
        self._labels = [c.label for c in cols]
        self._pub = store._s.begin(dataset, nrows, [c.field() for c in cols],
                                   json.dumps(meta).encode())
        try:
            self._pub.keep_view()
            self._arrays = {}
            blocks = []
            b = 0
            seen = 0
            while seen < len(cols):
                buf, stride, members = self._pub.block(b)
                dt = dtypes[members[0]]
                k = len(members)
                if nrows and k:
                    m = np.ndarray((k, nrows), dt, buffer=buf,
                                   strides=(stride, dt.itemsize))
                else:
                    m = np.zeros((k, nrows), dt)
                for pos, c in enumerate(members):
                    self._arrays[c] = m[pos]
                blocks.append((m, np.array(members, dtype=np.intp)))
                seen += k
                b += 1
            self._blocks = blocks
            self._spec = spec
            self._frame = None
        except BaseException:
            self._pub.abort()
            raise

    def __getitem__(self, label) -> np.ndarray:
        try:
            return self._arrays[self._labels.index(label)]
        except ValueError:
            raise KeyError(label) from None

    @property
    def columns(self) -> list:
        return list(self._labels)

    @property
    def frame(self) -> pd.DataFrame:
        """A writable DataFrame over the new version's columns (no copy)."""
        if self._frame is None:
            idx = pd.RangeIndex(self.nrows)
            if self._spec.get("kind") == "range":
                cols = pd.RangeIndex(self._spec["start"], self._spec["stop"], self._spec["step"],
                                     name=self._spec.get("name"))
            else:
                cols = pd.Index(self._labels, tupleize_cols=False)
            self._frame = _frame_from_blocks(self._blocks, idx, cols)
        return self._frame

    def commit(self) -> int:
        """Publish the new version now; returns its number."""
        if self.version is not None:
            raise ValueError(f"already published as version {self.version}")
        self.version = self._pub.commit()
        return self.version

    def abort(self) -> None:
        """Publish nothing."""
        self._pub.abort()

    def __enter__(self) -> "Build":
        return self

    def __exit__(self, etype, evalue, tb):
        if etype is not None:
            self.abort()
        elif self.version is None:
            self.commit()
        return False
