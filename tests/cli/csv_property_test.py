#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Property test: `snapctl publish` of a CSV against pandas.read_csv of the same file.

Random small tables (hypothesis) of integers (int64 edges, uint64 past int64, and
integers that fit neither), floats (17-digit values, long decimal texts, exponents,
the inf/nan spellings pandas reads), bools, timestamps (years 0001..9999, ns
precision, naive or UTC), strings (quotes, commas, newlines, unicode) and nulls are
written with DataFrame.to_csv, published, exported with `snapctl export --format
csv` and compared value by value with pandas.read_csv of the same file (pandas 3).

Documented differences (libsnap's choice on the left; the comparison allows them):
  1. An integer column with nulls stays int64 / uint64 with a validity bitmap;
     pandas makes it float64 (int64) or strings (uint64): compared as numbers.
  2. Timestamps are inferred (timestamp[ns] when every value fits, else
     timestamp[us]); pandas leaves them as strings unless asked (parse_dates):
     compared as instants (pd.Timestamp).
  3. "nan", "NaN", "-nan" are NaN values in a float64 column (valid); pandas
     reads them as nulls (NaN as well): NaN and null compare equal in floats.
     "+nan" and "NAN" are floats to libsnap, strings to pandas: not generated.
  4. pandas' other null spellings ("NA", "null", "None", "n/a", "#N/A", ...) are
     text to libsnap: not generated.
  5. A string column may be stored as a category: its values are the same.
  6. Integers that fit neither int64 nor uint64: a string column of their text;
     pandas gives Python ints (object) or strings: compared as text.
  7. An all-null column is float64 in both; a column of "" and nulls cannot be
     written by to_csv (it writes "" as a null), so it is tested in cli_test.py.
     A quoted empty field ("") is an empty string to libsnap, a null to pandas;
     to_csv writes one for a null in a one-column table: tables have 2+ columns.
  8. Where pandas falls back to strings for a column with nulls (uint64 or mixed
     integers), its nulls read back as "": "" compares equal to a null.

Examples: CSV_PROPERTY_EXAMPLES (default 150, derandomized so a run is repeatable;
setting it draws new random examples each run).
Run: SNAPCTL=build/snapctl/snapctl python3 csv_property_test.py
"""
import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import unittest

try:
    import pandas as pd
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # pragma: no cover
    pd = None

SNAPCTL = os.environ.get("SNAPCTL", "snapctl")
EXAMPLES = int(os.environ.get("CSV_PROPERTY_EXAMPLES", "150"))
I64 = 2**63
NS_MIN = pd.Timestamp("1677-09-22") if pd is not None else None
NS_MAX = pd.Timestamp("2262-04-10") if pd is not None else None
INF_SPELLINGS = ["inf", "-inf", "+inf", "Inf", "INF", "Infinity", "-Infinity",
                 "+Infinity", "infinity"]
NAN_SPELLINGS = ["nan", "NaN", "-nan", "-NaN"]
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
             "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
             "nan", "null"}


if pd is not None:
    def ints(draw):
        kind = draw(st.sampled_from(["int64", "uint64", "wide"]))
        edges = [0, 1, -1, I64 - 1, -I64, 2**53 + 1, 9007199254740993]
        if kind == "int64":
            v = st.one_of(st.sampled_from(edges), st.integers(-I64, I64 - 1))
        elif kind == "uint64":
            v = st.one_of(st.sampled_from([0, I64, 2**64 - 1, 12345678901234567890]),
                          st.integers(0, 2**64 - 1))
        else:
            v = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([-I64 - 1, 2**64]))
        vals = draw(st.lists(v, min_size=1, max_size=8))
        if draw(st.booleans()):
            vals = [None if draw(st.integers(0, 3)) == 0 else x for x in vals]
        return ("int", pd.Series(vals, dtype=object))

    def floats(draw):
        kind = draw(st.sampled_from(["float", "text", "special"]))
        if kind == "float":
            vals = draw(st.lists(st.one_of(
                st.floats(allow_nan=False), st.none(),
                st.sampled_from([0.1, 1e-310, 5e-324, 1.7976931348623157e308, -0.0,
                                 9007199254740993.0, 0.30000000000000004])),
                min_size=1, max_size=8))
            return ("float", pd.Series(vals, dtype="float64"))
        if kind == "text":  # decimal texts of up to 30 digits: correct rounding
            def text(t):
                sign, a, b, e = t
                s = sign + a + ("." + b if b else ".0")
                return s + ("e%d" % e if e is not None else "")
            digits = st.text("0123456789", min_size=1, max_size=20)
            vals = draw(st.lists(st.tuples(
                st.sampled_from(["", "-"]), digits, st.text("0123456789", max_size=20),
                st.one_of(st.none(), st.integers(-330, 310))).map(text),
                min_size=1, max_size=8))
            return ("float", pd.Series(vals, dtype=object))
        vals = draw(st.lists(st.one_of(
            st.sampled_from(INF_SPELLINGS + NAN_SPELLINGS),
            st.floats(allow_nan=False).map(repr)), min_size=1, max_size=8))
        return ("float", pd.Series(vals, dtype=object))

    def bools(draw):
        vals = draw(st.lists(st.one_of(st.booleans(), st.none()), min_size=1, max_size=8))
        return ("bool", pd.Series(vals, dtype=object if None in vals else bool))

    def times(draw):
        ns = draw(st.booleans())
        if ns:  # nanosecond values within its range
            v = st.integers(NS_MIN.value, NS_MAX.value).map(
                lambda x: pd.Timestamp(x, unit="ns"))
            unit = "ns"
        else:  # microseconds, any year
            v = st.datetimes(min_value=pd.Timestamp("0001-01-01").to_pydatetime(),
                             max_value=pd.Timestamp("9999-12-31 23:59:59").to_pydatetime()
                             ).map(pd.Timestamp)
            v = st.one_of(v, st.sampled_from([pd.Timestamp("9999-12-31"),
                                              pd.Timestamp("1000-01-01")]))
            unit = "us"
        vals = draw(st.lists(st.one_of(v, st.none()), min_size=1, max_size=8))
        s = pd.Series([pd.NaT if x is None else x for x in vals]).astype("M8[%s]" % unit)
        if draw(st.booleans()):
            s = s.dt.tz_localize("UTC")
        return ("time", s)

    def strings(draw):
        alphabet = st.sampled_from(list("ab ,\"'\n;xé€𝄞\t") + ["\r\n"])
        v = st.tuples(st.sampled_from(["a", "Z", "é"]), st.lists(alphabet, max_size=6)).map(
            lambda t: t[0] + "".join(t[1]))
        vals = draw(st.lists(st.one_of(v, st.none()), min_size=1, max_size=8))
        return ("string", pd.Series(vals, dtype=object))

    @st.composite
    def tables(draw):
        ncols = draw(st.integers(2, 5))  # one column: to_csv writes a null as ""
        nrows = draw(st.integers(1, 8))
        kinds = [draw(st.sampled_from([ints, floats, bools, times, strings]))
                 for _ in range(ncols)]
        cols = {}
        for i, k in enumerate(kinds):
            kind, s = k(draw)
            s = s.iloc[:nrows].reset_index(drop=True)
            s = s.reindex(range(nrows))  # short lists padded with nulls
            cols["%s%d" % (kind, i)] = s
        return pd.DataFrame(cols)


def snap_value(typ, text):
    """A cell of `snapctl export --format csv` as a Python value (None: null)."""
    if text == "":  # null; to_csv writes no empty string but as a null
        return None
    if typ in ("int64", "uint64"):
        return int(text)
    if typ == "float64":
        return float(text)
    if typ == "bool":
        return {"true": True, "false": False}[text]
    if typ.startswith("timestamp"):
        return pd.Timestamp(text)
    return text


def is_null(v):
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or (
        pd is not None and v is pd.NA)


class CsvPropertyTest(unittest.TestCase):
    def setUp(self):
        if pd is None:
            self.skipTest("pandas and hypothesis are needed")
        self.store = "/dev/shm/snapctl-csvprop-%d" % os.getpid()
        self.tmp = self.store + ".files"
        shutil.rmtree(self.store, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.ctl("init")

    def tearDown(self):
        shutil.rmtree(self.store, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ctl(self, *args):
        p = subprocess.run([SNAPCTL, "--store", self.store] + list(args),
                           capture_output=True)  # bytes: keep "\r\n" in values
        self.assertEqual(p.returncode, 0, "%s: %s" % (args, p.stderr))
        return p.stdout.decode()

    def check_cell(self, col, typ, row, got, want, raw):
        where = "column %s (%s), row %d: snapctl %r, pandas %r (text %r)" % (
            col, typ, row, got, want, raw)
        if typ == "float64":
            if is_null(got) or is_null(want):  # difference 3
                self.assertTrue(is_null(got) and is_null(want), where)
            else:
                self.assertEqual(repr(float(want)), repr(got), where)
            return
        if is_null(want) or want == "":  # difference 8
            self.assertTrue(is_null(got), where)
            return
        self.assertFalse(is_null(got), where)
        if typ in ("int64", "uint64"):  # difference 1
            if isinstance(want, float):
                self.assertEqual(float(got), want, where)
            else:
                self.assertEqual(got, int(want), where)
        elif typ.startswith("timestamp"):  # difference 2
            self.assertEqual(got, pd.Timestamp(want), where)
        elif typ == "bool":
            self.assertEqual(got, bool(want), where)
        else:  # differences 5, 6
            self.assertEqual(got, str(want), where)

    def check(self, df):
        path = os.path.join(self.tmp, "t.csv")
        df.to_csv(path, index=False)
        with open(path, newline="") as f:
            raw = list(csv.reader(f))
        self.ctl("publish", "-q", "t", path)
        types = [c["type"] for c in json.loads(self.ctl("info", "t", "--json"))["columns"]]
        out = list(csv.reader(io.StringIO(self.ctl("export", "t", "--format", "csv"),
                                          newline="")))
        want = pd.read_csv(path)
        self.assertEqual(out[0], list(want.columns))
        self.assertEqual(len(out) - 1, len(want))
        for k, name in enumerate(want.columns):
            typ = types[k]
            kind = name.rstrip("0123456789")
            vals = [x for x in df[name] if not is_null(x)]
            # the type libsnap documents for the values written
            if not vals:
                self.assertEqual(typ, "float64", name)
            elif kind == "int" and df[name].map(lambda x: x is None or
                                                isinstance(x, int)).all():
                lo, hi = min(vals), max(vals)
                want_type = ("int64" if lo >= -I64 and hi < I64 else
                             "uint64" if lo >= 0 and hi < 2**64 else "string")
                self.assertEqual(typ.replace("category", "string"), want_type, name)
            elif kind == "float":
                self.assertEqual(typ, "float64", name)
            elif kind == "bool":
                self.assertEqual(typ, "bool", name)
            elif kind == "time":
                ts = [pd.Timestamp(x) for x in vals]
                fits = all(NS_MIN <= t.tz_localize(None) <= NS_MAX for t in ts)
                self.assertEqual(typ, "timestamp[ns]" if fits else "timestamp[us]", name)
            elif kind == "string":
                self.assertIn(typ, ("string", "category"), name)
            for r in range(len(want)):
                self.check_cell(name, typ, r, snap_value(typ, out[r + 1][k]),
                                want[name].iloc[r], raw[r + 1][k])

    def test_against_pandas(self):
        if pd is None:
            self.skipTest("pandas and hypothesis are needed")

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize="CSV_PROPERTY_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))
        @given(tables())
        def prop(df):
            self.check(df)
        prop()

    def test_known_cases(self):
        """Tables the property found or the issue named, as fixed examples."""
        self.check(pd.DataFrame({"int0": pd.Series([9007199254740993,
                                                    12345678901234567890], dtype=object)}))
        self.check(pd.DataFrame({"int0": pd.Series([-1, 12345678901234567890],
                                                   dtype=object)}))
        self.check(pd.DataFrame({"time0": pd.Series(
            [pd.Timestamp("9999-12-31"), pd.Timestamp("1000-01-01")]).astype("M8[us]")}))
        self.check(pd.DataFrame({"float0": pd.Series(
            ["9007199254740993.0000000000000000001", "2.2250738585072011e-308",
             "Infinity", "nan"], dtype=object)}))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + sys.argv[1:])
