"""The benchmark runner's own machinery (not timings): expected durations, streamed rows, the
search benchmark's brute-force truth, and the ingest child that runs several commands in one
process."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import _stream, bench_queries, run


def test_expected_durations_are_printed_first(capsys: pytest.CaptureFixture[str]) -> None:
    times = run.announce(["bench_dashboard", "bench_queries", "bench_nothing"], quick=True)
    err = capsys.readouterr().err
    assert err.startswith("quick tier, expected ~")
    assert "aim: 3.0 min in all" in err and "nothing ?" in err
    assert times["bench_queries"] == pytest.approx(bench_queries.expected_seconds(True))
    assert times["bench_nothing"] is None
    full = bench_queries.expected_seconds(False)
    assert full > 10 * times["bench_queries"]  # 300k + 1M against 10k
    # faiss is built up to FAISS_MAX_N only unless asked for: asking costs more
    assert bench_queries.expected_seconds(sizes=(1_000_000,), faiss=True) > bench_queries.expected_seconds(
        sizes=(1_000_000,))


def test_rows_are_shown_once(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _stream.Rows()
    rows.append({"name": "a", "value": 1.5, "unit": "s", "settings": {"cpu_s": 0.7}})
    plain = {"name": "b", "value": None, "unit": ""}
    assert _stream.was_shown(rows[0]) and not _stream.was_shown(plain)
    assert capsys.readouterr().err == "   a: 1.5 s (CPU 0.7 s)\n"


def test_shares_sum_to_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    run.print_shares({"bench_ingest": 30.0, "bench_queries": 10.0}, {"bench_ingest": 35.0}, quick=True)
    err = capsys.readouterr().err
    assert "40 s in all, quick-tier aim 180 s" in err
    assert "75 %" in err and "25 %" in err and "expected ?" in err


def test_search_truth_is_exact_across_chunks() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((250_000, 8)).astype(np.float32)  # three 100k chunks
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    truth = bench_queries._truth(X, queries)
    for q, got in zip(queries, truth):
        assert got == set(np.argsort(-(X @ q))[: bench_queries.K].tolist())


@pytest.mark.slow
def test_ingest_child_streams_each_command(tmp_path) -> None:
    from benchmarks.bench_ingest import _cli_each

    (tmp_path / "empty").mkdir()
    commands = [["ingest", str(tmp_path / "empty"), "--db", str(tmp_path / f"db{i}"), "--weights", "random"]
                for i in range(2)]
    done = list(_cli_each(commands))
    assert [summary["new"] for summary, _ in done] == [0, 0]
    assert all(proc["wall_s"] > 0 and proc["max_rss_mib"] > 0 for _, proc in done)
    with pytest.raises(RuntimeError, match="failed"):
        list(_cli_each([["ingest", str(tmp_path / "missing"), "--db", str(tmp_path / "db")]]))
