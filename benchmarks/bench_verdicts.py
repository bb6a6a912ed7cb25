"""Arrival verdicts at scale (issue 17, docs/verdicts.md): what the check costs per image,
against the embedding time per image measured in the same run.

- ``embed_per_image``: seconds per image of dinov2_vits14 (random weights, CPU, batch 8,
  224 px, random tensors: the model alone, no decode);
- ``check_per_image_<N>``: a drop of 64 arrivals (half near copies of stored images, half new)
  judged by the real job (``check_arrivals``: reading what is stored, the neighbour search, the
  phash scan, quality, writing the rows) against N stored 384-d vectors (clustered random unit
  vectors with phash, quality and source rows, written with the real store), in seconds per
  arrival and as a ratio to ``embed_per_image``; ``first_drop_per_image_<N>``: the same for the
  first drop on the table, which also draws the calibration (a 5,000-row kNN against the whole
  table; later drops reuse it until the table has grown by 10%);
- ``table_pass_<N>``: the whole table judged as one drop (``check_table``, ``embedscope
  verdicts``), total seconds and per image;
- ``graph_build_<N>`` / ``graph_load_<N>`` (from 20k rows, where the hnswlib graph serves the
  check): building the graph once, and loading the saved one (a one-shot ``ingest``); the drops
  share one graph cache, as the ``watch`` daemon does.

Quick tier: N = 10k (per arrival and whole table); full tier: per arrival at 10k, 100k and 1M,
the whole table at 100k and 1M.

    python -m benchmarks.bench_verdicts [--quick] [--sizes 1e4,1e5] [--table-sizes 1e5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks._stream import Rows
from benchmarks.bench_queries import _vectors  # clustered random unit vectors, 384-d

DIM = 384
MODEL = "dinov2_vits14"
ARRIVALS = 64
EMBED_BATCH = 8
EMBED_SIZE = 224
REPEATS = 3  # drops after the first, timed; the median is reported (the machine may be shared)


def embed_seconds_per_image(seconds: float = 8.0) -> tuple[float, dict[str, Any]]:
    """The model's forward time per image on the CPU (random weights, a small batch)."""
    from embedscope.models.factory import create_encoder

    enc = create_encoder(MODEL, weights="random", device="cpu", precision="fp32", image_size=EMBED_SIZE)
    x = list(np.random.default_rng(0).standard_normal((EMBED_BATCH, 3, EMBED_SIZE, EMBED_SIZE), dtype=np.float32))
    enc.embed(enc.stack(x))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2 * EMBED_BATCH:
        enc.embed(enc.stack(x))
        n += EMBED_BATCH
    return (time.perf_counter() - t0) / n, {"model": MODEL, "weights": "random", "device": "cpu", "precision": "fp32",
                                            "batch_size": EMBED_BATCH, "image_size": EMBED_SIZE}


def _write(db: Any, X: np.ndarray, phash: np.ndarray, first: int, when: dt.datetime,
           label_of: np.ndarray | None = None) -> list[tuple[str, str]]:
    """Embeddings, images, quality and sources rows for ``X`` (ids from ``first``; labels
    ``c<label_of % 50>``, by default of the ids); the (sha, path)s."""
    import pyarrow as pa

    from embedscope.ingest.rows import embedding_rows
    from embedscope.store import schema as S

    rng = np.random.default_rng(first)
    written = []
    for start in range(0, len(X), 200_000):
        part = X[start:start + 200_000]
        ids = range(first + start, first + start + len(part))
        labels = [f"c{i % 50}" for i in (ids if label_of is None else label_of[start:start + len(part)])]
        shas = [f"{i:064x}" for i in ids]
        paths = [f"/data/train/{label}/{i}.jpg" for label, i in zip(labels, ids)]
        m = len(part)
        db.upsert(S.embeddings_table_name(MODEL), embedding_rows(shas, part, model=MODEL, variant="full", weights="random"))
        db.append(S.IMAGES, pa.table({"sha256": shas, "path": paths, "label": labels,
                                      "phash": phash[start:start + m], "width": np.full(m, 320, np.int32),
                                      "height": np.full(m, 240, np.int32),
                                      "ingested_at": pa.array([when] * m, pa.timestamp("us", tz="UTC"))}))
        db.append(S.QUALITY, pa.table({"sha256": shas, "blur": rng.lognormal(5, 0.3, m).astype(np.float32),
                                       "brightness": rng.normal(120, 10, m).astype(np.float32),
                                       "entropy": rng.normal(7, 0.2, m).astype(np.float32),
                                       "colorfulness": rng.normal(30, 5, m).astype(np.float32)}))
        db.append(S.SOURCES, pa.table({"sha256": shas, "path": paths}))
        written += list(zip(shas, paths))
    return written


def _stored(root: str, n: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    from embedscope.store.db import Database

    rng = np.random.default_rng(seed)
    db = Database(root, create=True)
    centres = rng.standard_normal((200, DIM), dtype=np.float32)
    X = _vectors(rng, n, centres)
    phash = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64)
    _write(db, X, phash, 0, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    return db, X, phash


def _arrivals(db: Any, X: np.ndarray, phash: np.ndarray, first: int, seed: int) -> list[tuple[str, str]]:
    """``ARRIVALS`` new rows (ids from ``first``): half near copies of stored images (a little
    noise, 2 phash bits flipped), half fresh vectors."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(X), ARRIVALS // 2, replace=False)
    copies = X[src] + 0.002 * rng.standard_normal((len(src), DIM), dtype=np.float32)
    fresh = _vectors(rng, ARRIVALS - len(src), rng.standard_normal((200, DIM), dtype=np.float32))
    V = np.vstack([copies / np.linalg.norm(copies, axis=1, keepdims=True), fresh])
    ph = np.concatenate([phash[src] ^ np.int64(0b101), rng.integers(-2**62, 2**62, len(fresh), dtype=np.int64)])
    label_of = np.concatenate([src, np.arange(first + len(src), first + ARRIVALS)])  # a copy keeps its label
    return _write(db, V, ph, first, dt.datetime.now(dt.timezone.utc), label_of)


def _timed_drop(db: Any, X: np.ndarray, phash: np.ndarray, first: int, cache: Any) -> tuple[float, Any]:
    """One drop of ``ARRIVALS`` judged by the real job (with the graph cache a watch daemon
    keeps across batches): seconds per arrival, and its result."""
    from embedscope.analysis.arrivals import check_arrivals

    arrived = _arrivals(db, X, phash, first, seed=first)
    t0 = time.perf_counter()
    result = check_arrivals(db, arrived, model=MODEL, kind="bench", index_cache=cache)
    return (time.perf_counter() - t0) / len(arrived), result


def _graph_times(db: Any, n: int, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Building the graph (once per table: the first large drop, or ``embedscope index``) and
    loading the saved one (each one-shot ``ingest``); the daemon keeps it in memory."""
    from embedscope.analysis.arrival_graph import GRAPH_MIN_ROWS, verdict_index_cache

    if n < GRAPH_MIN_ROWS:
        return []
    out = []
    for what in ("graph_build", "graph_load"):
        t0 = time.perf_counter()
        verdict_index_cache().graph_for(db, MODEL, "full")
        out.append({"name": f"{what}_{n // 1000}k", "value": round(time.perf_counter() - t0, 2), "unit": "s",
                    "settings": settings})
    return out


def run(quick: bool = False, sizes: tuple[int, ...] | None = None,
        table_sizes: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    from embedscope.analysis.arrival_graph import verdict_index_cache
    from embedscope.analysis.arrivals import check_table

    rows = Rows()
    embed_s, embed_settings = embed_seconds_per_image(2.0 if quick else 10.0)
    rows.append({"name": "embed_per_image", "value": round(embed_s, 5), "unit": "s", "settings": embed_settings})
    per_arrival = sizes if sizes is not None else (10_000,) if quick else (10_000, 100_000, 1_000_000)
    whole = table_sizes if table_sizes is not None else (10_000,) if quick else (100_000, 1_000_000)
    for n in sorted(set(per_arrival) | set(whole)):
        with tempfile.TemporaryDirectory(prefix="bench-verdicts-") as tmp:
            t0 = time.perf_counter()
            db, X, phash = _stored(f"{tmp}/db", n)
            settings = {"stored": n, "dim": DIM, "vectors": "clustered random, 200 centres", "build_s":
                        round(time.perf_counter() - t0, 1)}
            for row in _graph_times(db, n, settings):
                rows.append(row)
            cache = verdict_index_cache()  # kept across the drops, as the watch daemon does
            if n in per_arrival:  # the first drop draws the calibration; the next ones reuse it (until 10% growth)
                first_s, _ = _timed_drop(db, X, phash, n, cache)
                rows.append({"name": f"first_drop_per_image_{n // 1000}k", "value": round(first_s, 5), "unit": "s",
                             "settings": {**settings, "arrivals": ARRIVALS, "calibration": "drawn"}})
                steady = [_timed_drop(db, X, phash, n + ARRIVALS * (1 + i), cache) for i in range(REPEATS)]
                s = float(np.median([t for t, _ in steady]))
                found = {"arrivals": ARRIVALS, "drops": REPEATS, "counts": steady[-1][1].counts,
                         "search": _search_of(db, steady[-1][1].drop_id),
                         "calibration": "reused" if steady[-1][1].calibration.get("reused_from") else "drawn"}
                rows.append({"name": f"check_per_image_{n // 1000}k", "value": round(s, 5), "unit": "s",
                             "settings": {**settings, **found, "what": "median over the drops"}})
                rows.append({"name": f"check_vs_embed_{n // 1000}k", "value": round(s / embed_s, 3), "unit": "x",
                             "settings": {**settings, "what": "check time per arrival / embedding time per image"}})
            if n in whole:
                t0 = time.perf_counter()
                result = check_table(db, model=MODEL, index_cache=cache)
                s = time.perf_counter() - t0
                rows.append({"name": f"table_pass_{n // 1000}k", "value": round(s, 2), "unit": "s",
                             "settings": {**settings, "counts": result.counts,
                                          "search": _search_of(db, result.drop_id)}})
                rows.append({"name": f"table_pass_vs_embed_{n // 1000}k", "value": round(s / result.n / embed_s, 3),
                             "unit": "x", "settings": {**settings, "what": "whole-table pass per image / "
                                                                           "embedding time per image"}})
    return rows


def _search_of(db: Any, drop_id: str) -> str:
    import json

    from embedscope.store import schema as S
    from embedscope.store.filters import eq

    params = db.read(S.DROPS, ["params"], where=eq("drop_id", drop_id)).column("params").to_pylist()
    return json.loads(params[0]).get("search", "") if params else ""


def _sizes(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(float(v)) for v in text.split(",") if v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", help="stored vectors for the per-arrival check, e.g. 1e4,1e5 (one heavy run at a time)")
    p.add_argument("--table-sizes", help="stored vectors for the whole-table pass ('' for none)")
    args = p.parse_args(argv)
    run(quick=args.quick, sizes=_sizes(args.sizes), table_sizes=_sizes(args.table_sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
