"""store.filters: the one way values become SQL text, checked on its edge cases and against
both engines that read the text (Lance filters and DuckDB)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, ident, isin, literal


@pytest.mark.parametrize("value, text", [
    (None, "NULL"),
    (True, "TRUE"),
    (False, "FALSE"),
    (0, "0"),
    (-7, "-7"),
    (2.5, "2.5"),
    ("", "''"),
    ("plain", "'plain'"),
    ("it's", "'it''s'"),
    ("''", "''''''"),
    ("a'; DROP TABLE images; --", "'a''; DROP TABLE images; --'"),
    ("back\\slash", "'back\\slash'"),
    ("naïve ✓", "'naïve ✓'"),
])
def test_literal(value, text):
    assert literal(value) == text


def test_literal_bool_is_not_an_int():
    # bool is a subclass of int: it must still come out as TRUE/FALSE, not 1/0
    assert literal(True) != literal(1) and literal(False) != literal(0)


def test_ident_doubles_embedded_quotes():
    assert ident("images") == '"images"'
    assert ident('we"ird') == '"we""ird"'


def test_eq_isin_both():
    assert eq("run_id", "r'1") == "run_id = 'r''1'"
    assert eq("dup_group", None) == "dup_group IS NULL"
    assert eq("is_novel", False) == "is_novel = FALSE"
    assert eq("dims", 3) == "dims = 3"
    assert isin("sha256", ["a", "b'c"]) == "sha256 IN ('a', 'b''c')"
    assert isin("sha256", []) == "FALSE"
    assert isin("sha256", iter(())) == "FALSE"  # any iterable, consumed once
    assert both() is None and both(None, "") is None
    assert both("a = 1") == "a = 1"
    assert both("a = 1", None, "b = 2") == "(a = 1) AND (b = 2)"


def test_filters_select_the_right_rows_in_lance_and_duckdb(tmp_path):
    """The same text filters a Lance table and a DuckDB query identically, quotes included;
    an empty IN matches nothing (rather than being a syntax error)."""
    from embedscope.store.sql import run_sql

    db = Database(tmp_path / "db", create=True)
    rows = [{"run_id": rid, "kind": kind, "created_at": None}
            for rid, kind in (("plain", "analyze"), ("it's", "analyze"), ("x", "novelty"))]
    db.upsert(S.RUNS, pa.Table.from_pylist(rows, S.RUNS_SCHEMA))
    cases = [
        (eq("run_id", "it's"), {"it's"}),
        (isin("run_id", ["plain", "it's", "absent"]), {"plain", "it's"}),
        (isin("run_id", []), set()),
        (both(eq("kind", "analyze"), isin("run_id", ["x", "plain"])), {"plain"}),
        (eq("model", None), {"plain", "it's", "x"}),
    ]
    for where, expected in cases:
        assert set(db.read(S.RUNS, ["run_id"], where=where).column("run_id").to_pylist()) == expected, where
        got = run_sql(db, f"SELECT run_id FROM {ident('runs')} WHERE {where}").column("run_id").to_pylist()
        assert set(got) == expected, where
