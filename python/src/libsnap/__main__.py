# SPDX-License-Identifier: LGPL-2.1-or-later
"""python -m libsnap: publish Parquet, Arrow IPC/Feather and CSV files, and export
versions as Arrow IPC or Parquet, through pyarrow.

    python -m libsnap [--store DIR] publish DATASET FILE [--format parquet|arrow|csv]
    python -m libsnap [--store DIR] export DATASET[@VERSION] --format arrow|parquet -o FILE

Exit status: 0 success, 1 operational error (message on stderr naming the file),
2 usage error. A malformed input publishes nothing.
"""
import argparse
import os
import sys
import time

import libsnap


def _progress(msg):
    """One status line on a terminal, overwritten in place; nothing otherwise."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{msg}")
        sys.stderr.flush()


def _done():
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")


def _format_of(path, given):
    if given:
        return given
    ext = os.path.splitext(path)[1].lower()
    return {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
            ".ipc": "arrow", ".csv": "csv"}.get(ext)


def _read(path, fmt):
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        n = f.metadata.num_row_groups
        parts = []
        for i in range(n):  # row group by row group, so progress can move
            _progress(f"{path}: reading row group {i + 1}/{n}")
            parts.append(f.read_row_group(i))
        return pa.concat_tables(parts) if parts else f.schema_arrow.empty_table()
    if fmt == "arrow":
        import pyarrow.feather as feather

        _progress(f"{path}: reading")
        return feather.read_table(path, memory_map=True)
    import pyarrow.csv as csv

    _progress(f"{path}: reading")
    return csv.read_csv(path)


def cmd_publish(store, args):
    fmt = _format_of(args.file, args.format)
    if fmt is None:
        raise SystemExit(_usage(f"{args.file}: unknown file type: give --format"))
    t0 = time.monotonic()
    try:
        table = _read(args.file, fmt)
    except FileNotFoundError as e:
        raise libsnap.Error(f"{args.file}: {e.strerror}") from None
    except Exception as e:  # pyarrow's ArrowInvalid, OSError, ...
        raise libsnap.Error(f"{args.file}: not a valid {fmt} file: {e}") from None
    _progress(f"{args.file}: publishing {table.num_rows} rows x {table.num_columns} columns")
    version = store.publish(args.dataset, table)
    _done()
    print(f"published {args.dataset} version {version}: {table.num_rows} rows x "
          f"{table.num_columns} columns from {args.file} in {time.monotonic() - t0:.2f} s")


def cmd_export(store, args):
    dataset, _, ver = args.dataset.partition("@")
    try:
        version = int(ver) if ver else None
    except ValueError:
        raise SystemExit(_usage(f"{args.dataset}: version must be a number")) from None
    with store.pin(dataset, version) as snap:
        table = snap.to_arrow()
        v = snap.version
    _progress(f"{args.output}: writing {table.num_rows} rows")
    if args.format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, args.output)
    else:
        import pyarrow.feather as feather

        feather.write_feather(table, args.output, compression="uncompressed")
    _done()
    print(f"exported {dataset} version {v} to {args.output} ({args.format})")


def _usage(msg):
    print(f"python -m libsnap: {msg}", file=sys.stderr)
    return 2


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m libsnap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="store directory (default $LIBSNAP_STORE)")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="publish a Parquet, Arrow IPC/Feather or CSV file")
    p.add_argument("dataset")
    p.add_argument("file")
    p.add_argument("--format", choices=["parquet", "arrow", "csv"])
    p.add_argument("--create", action="store_true", help="create the store if missing")
    e = sub.add_parser("export", help="write a version as Arrow IPC or Parquet")
    e.add_argument("dataset", help="DATASET or DATASET@VERSION")
    e.add_argument("--format", choices=["arrow", "parquet"], required=True)
    e.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    try:
        store = libsnap.open(args.store, create=getattr(args, "create", False),
                             readonly=args.command == "export")
        (cmd_publish if args.command == "publish" else cmd_export)(store, args)
    except libsnap.Error as err:
        _done()
        print(f"python -m libsnap {args.command}: {err}", file=sys.stderr)
        return 1
    except ImportError as err:
        print(f"python -m libsnap {args.command}: needs pyarrow ({err})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
