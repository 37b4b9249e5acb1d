# SPDX-License-Identifier: LGPL-2.1-or-later
"""Store and Snapshot: the Python face of libsnap._core."""
from __future__ import annotations

import datetime as _dt
import json
import operator
from dataclasses import dataclass, field
from typing import Any

from . import _core
from ._frame import layout as _layout, to_pandas as _to_pandas

__all__ = ["open", "Store", "Snapshot", "VersionInfo", "GcReport"]


@dataclass(frozen=True)
class VersionInfo:
    """One version of a dataset as listed by Store.versions()."""

    version: int
    state: str  # "current", "retained", "draining" or "lending"
    nrows: int
    ncols: int
    nbytes: int  # memory its own file holds (its own chunks)
    created: _dt.datetime
    pinned: int  # processes pinning it now; -1 if unknown
    shared: int = 0  # bytes it maps from earlier versions' files instead


@dataclass(frozen=True)
class GcReport:
    """What Store.gc() reclaimed, and what is still draining (and who holds it)."""

    freed_versions: int
    freed_bytes: int
    draining_versions: int
    draining_bytes: int
    items: list = field(default_factory=list)  # dicts: dataset, version, nbytes, freed, pinned
    lending_versions: int = 0  # retired, keeping only the chunks later versions share


_U32 = 2**32 - 1
_U64 = 2**64 - 1


def _int_arg(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in lo..hi. Anything else -- bool, float, str, an int
    out of range -- raises libsnap.InvalidArgument (also a ValueError) naming
    the argument and the value: a number is never wrapped, truncated or, for a
    version, taken as "current"."""
    ok = not isinstance(value, (bool, float)) and hasattr(type(value), "__index__")
    if ok and lo <= operator.index(value) <= hi:
        return operator.index(value)
    raise _core.InvalidArgument(
        f"{name} = {value!r}{'' if ok else ' (not an integer)'}: "
        f"must be an integer from {lo} to {hi}")


def _version(version) -> int:
    """0 (the current version) for None, else a version number 1..2**64 - 1."""
    return 0 if version is None else _int_arg("version", version, 1, _U64)


def open(path: str | None = None, create: bool = False, readonly: bool = False) -> "Store":
    """Open the store in directory ``path`` (None: $LIBSNAP_STORE, else the default
    store /dev/shm/libsnap/default). ``create`` makes it if missing; ``readonly``
    refuses publish, gc and rollback through this handle."""
    return Store(path, create=create, readonly=readonly)


class Store:
    """A handle on a libsnap store. Thread-safe: threads may share one.

    Works in processes started by fork, spawn or forkserver; after fork the
    child keeps every pin its parent held and can pin and publish itself.
    """

    def __init__(self, path: str | None = None, create: bool = False,
                 readonly: bool = False):
        self._s = _core.Store(path, create, readonly)

    # -------------------------------------------------------------- reading
    def pin(self, dataset: str, version: int | None = None) -> "Snapshot":
        """Pin the current version (or a retained ``version``). Use as a context
        manager; arrays and frames taken from it keep the version pinned on
        their own after the block ends."""
        return Snapshot(self._s.pin(dataset, _version(version)))

    def read(self, dataset: str, version: int | None = None):
        """The current (or a retained) version as a read-only pandas DataFrame
        over shared memory. The version stays pinned while the frame, or any
        Series or array taken from it, is alive."""
        return _to_pandas(self._s.pin(dataset, _version(version)))

    def datasets(self) -> list[str]:
        """Names of the datasets in the store, sorted."""
        return [d["name"] for d in self._s.datasets()]

    def versions(self, dataset: str) -> list[VersionInfo]:
        """Versions of ``dataset``, oldest first."""
        out = []
        for d in self._s.versions(dataset):
            created = _dt.datetime.fromtimestamp(d["created_ns"] / 1e9, tz=_dt.timezone.utc)
            out.append(VersionInfo(d["version"], d["state"], d["nrows"], d["ncols"],
                                   d["nbytes"], created, d["pinned"], d["shared"]))
        return out

    def current_version(self, dataset: str) -> int:
        return self._s.current_version(dataset)

    # -------------------------------------------------------------- writing
    def publish(self, dataset: str, data: Any, *, share: bool = True) -> int:
        """Publish ``data`` (a pandas DataFrame, a dict of 1-D arrays or a 2-D
        ndarray) as the new current version of ``dataset``; returns its number.
        A column of an unsupported dtype is refused before anything is published.

        The new version holds only the chunks of its data that differ from the
        current version's; the rest it shares with it (no memory, no copy).
        Columns of a frame read from the store (``read()``) that were not
        replaced are shared without even being compared. ``share=False`` writes
        every chunk (a full copy)."""
        from ._write import publish

        return publish(self._s, dataset, data, share=share)

    def append(self, dataset: str, rows: Any) -> int:
        """Append ``rows`` (a DataFrame with the current version's columns and
        dtypes) to ``dataset``: the new version is the current one plus these rows
        at the end, continuing its RangeIndex; returns its number.

        For a table of non-nullable numeric, bool and datetime columns the old rows
        are shared with the current version unread, and the append costs memory and
        time in proportion to the new rows (the table keeps room for more rows; when
        the room runs out it doubles, at the cost of one full copy). Other tables
        (strings, categories, missing values, another index) are published whole as
        the concatenation, which still shares the chunks that did not move.
        Readers of the old version are not disturbed."""
        from ._write import append

        return append(self, dataset, rows)

    def edit(self, dataset: str):
        """Edit the current version in place, without a copy of the table::

            with store.edit("prices") as df:
                df.loc[df["qty"] < 0, "qty"] = 0
                df["price"] *= 1.01

        ``df`` is writable, over a private copy-on-write mapping of the current
        version; leaving the block publishes a version that holds only what was
        written (plus replaced columns), sharing the rest. An exception inside
        the block publishes nothing; a version published by someone else
        meanwhile makes it raise ``libsnap.Conflict`` and publish nothing. The
        returned ``Edit`` also has ``append(rows)``, ``version`` (after the
        block), ``base`` and ``written_bytes()``."""
        from ._edit import Edit

        return Edit(self, dataset)

    def build(self, dataset: str, schema=None, nrows: int | None = None, *, like=None):
        """Build a new version in place: writable numpy arrays inside the new
        segment, no private copy at any point::

            with store.build("m", {"a": "float64", "b": "int64"}, nrows=n) as b:
                b["a"][:] = compute_a()
                for lo in range(0, n, step):
                    b["b"][lo:lo + step] = read_chunk(lo)

        ``schema``: a dict {label: dtype} or a list of (label, dtype); or
        ``like=`` a DataFrame (its columns and dtypes; nrows defaults to its
        length) or a pyarrow Schema or Table. Numeric, bool, datetime64 and
        timedelta64 columns only. ``b.frame`` is a writable DataFrame over the
        same memory. Leaving the block publishes (``b.version``); an exception
        publishes nothing."""
        from ._edit import Build

        return Build(self, dataset, schema, nrows, like)

    def gc(self, dataset: str | None = None, dry_run: bool = False) -> GcReport:
        """Reclaim retired versions nobody pins; report what is still draining."""
        r = self._s.gc(dataset, dry_run)
        return GcReport(r["freed_versions"], r["freed_bytes"], r["draining_versions"],
                        r["draining_bytes"], r["items"], r["lending_versions"])

    def rollback(self, dataset: str, version: int) -> None:
        """Make a retained version current again."""
        self._s.rollback(dataset, _int_arg("version", version, 1, _U64))

    def set_keep(self, keep: int, dataset: str | None = None) -> None:
        """Keep the current version plus ``keep - 1`` others (for ``dataset``, or
        the default for datasets created from now on)."""
        self._s.set_keep(dataset, _int_arg("keep", keep, 1, _U32))

    def set_max_datasets(self, max_datasets: int) -> None:
        """Limit how many datasets the store may hold (0: no limit). A publish
        that would create one more fails with OSError(EDQUOT)."""
        self._s.set_max_datasets(_int_arg("max_datasets", max_datasets, 0, _U32))

    def drop(self, dataset: str, force: bool = False) -> None:
        """Remove ``dataset`` and all its versions. Raises libsnap.Busy (naming
        the pinning pids) while any process pins one of its versions or a
        publish of it is in progress; ``force=True`` drops it anyway and lets
        the pinners read on until they unpin. Version numbers are never reused
        if a dataset of that name is published again."""
        self._s.drop(dataset, bool(force))

    def trim(self) -> None:
        """Let go of cached mappings of versions that are no longer current (an
        idle worker calls this so an old version can be reclaimed at once)."""
        self._s.trim()

    # ------------------------------------------------------------ lifecycle
    @property
    def path(self) -> str:
        return self._s.path

    @property
    def closed(self) -> bool:
        return self._s.closed

    def close(self) -> None:
        """Close the handle. Frames and arrays already read stay valid."""
        self._s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<libsnap.Store {self._s.path!r}>" if not self.closed else "<libsnap.Store closed>"


class Snapshot:
    """One pinned version of a dataset.

    ``with store.pin(name) as snap:`` releases the snapshot's own hold on exit;
    arrays, Series and DataFrames taken from it keep the version pinned for as
    long as they live.
    """

    __slots__ = ("_pin", "_columns", "__weakref__")

    def __init__(self, pin):
        self._pin = pin
        self._columns = None

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self._pin = None

    def release(self) -> None:
        """Drop this snapshot's hold (what leaving the ``with`` block does)."""
        self._pin = None

    @property
    def _p(self):
        if self._pin is None:
            raise ValueError("snapshot released: pin the dataset again")
        return self._pin

    @property
    def dataset(self) -> str:
        return self._p.dataset

    @property
    def version(self) -> int:
        return self._p.version

    @property
    def nrows(self) -> int:
        return self._p.nrows

    def _cols(self):
        if self._columns is None:
            from ._frame import layout

            self._columns = layout(self._p)
        return self._columns

    @property
    def columns(self) -> list:
        """Column labels as published (an index column is not among them)."""
        return list(self._cols().labels)

    @property
    def dtypes(self) -> dict:
        """Column label -> the pandas dtype to_pandas() gives it."""
        from ._frame import column_dtype

        lay = self._cols()
        return {lab: column_dtype(self._p, lay, i) for lab, i in zip(lay.labels, lay.data_cols)}

    @property
    def metadata(self) -> dict:
        m = self._p.metadata
        return json.loads(m) if m else {}

    def __getitem__(self, label):
        """Read-only 1-D view of one column: a numpy array for numeric, bool and
        temporal columns; a pandas array for categorical, string and nullable ones."""
        from ._frame import column

        lay = self._cols()
        try:
            i = lay.data_cols[lay.labels.index(label)]
        except ValueError:
            raise KeyError(label) from None
        return column(self._p, lay, i)

    def to_numpy(self):
        """The whole table as one read-only 2-D (nrows, ncols) view; only for a
        homogeneous table (one dtype block holding every column, in order)."""
        from ._frame import matrix

        return matrix(self._p, self._cols())

    def to_pandas(self):
        """A read-only DataFrame over the pinned version (no copy of numeric data)."""
        from ._frame import to_pandas

        return to_pandas(self._p, self._cols())

    # Arrow PyCapsule interface: pyarrow.table(snap), polars.DataFrame(snap),
    # duckdb, ... read the version without a copy of numeric and string data.
    # Every column of the segment is exported under its segment name (an index
    # published from pandas appears as __index_level_0__ ...). Each exported
    # array holds its own pin until its consumer releases it.
    def __arrow_c_schema__(self):
        return self._p.__arrow_c_schema__()

    def __arrow_c_array__(self, requested_schema=None):
        return self._p.__arrow_c_array__(requested_schema)

    def __arrow_c_stream__(self, requested_schema=None):
        return self._p.__arrow_c_stream__(requested_schema)

    def to_arrow(self):
        """The version as a pyarrow.Table over shared memory (needs pyarrow)."""
        import pyarrow as pa

        return pa.table(self)

    def verify(self) -> None:
        """Recompute the data checksum; raises libsnap.ChecksumError on mismatch."""
        self._p.verify()

    def __repr__(self):
        if self._pin is None:
            return "<libsnap.Snapshot released>"
        return (f"<libsnap.Snapshot {self._pin.dataset!r} v{self._pin.version} "
                f"{self._pin.nrows} rows x {len(self._cols().labels)} columns>")
