"""A generated large-map database: ``N`` imported vectors (through the real ``ingest-vectors``
path, :func:`embedscope.analysis.vectors_import.import_vectors`) with a stored 2-D projection
and clustering written directly as result rows (running ``analyze`` on 1M rows would take
minutes; the map only reads its results).

The layout: ``CLUSTERS`` Gaussian blobs; point ``i`` has id ``f"{i:064x}"`` (a valid sha256
key, sorted in row order) and belongs to blob ``i % CLUSTERS``. Every ``THUMB_EVERY``-th
point gets a real stored thumbnail (a flat colour tile), the rest show the map's placeholder.
Used by tests/test_map_scale_browser.py and benchmarks/bench_map.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from pathlib import Path

import numpy as np

CLUSTERS = 12
RUN_ID = "scale-run"
MODEL = "imported"
THUMB_EVERY = 1000
SEED = 7


def blob_centres(k: int = CLUSTERS) -> np.ndarray:
    """Blob centres on a ring (well separated: zooming into one blob shows only its points)."""
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return np.column_stack([10 * np.cos(angles), 10 * np.sin(angles)]).astype(np.float32)


def layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, blob) of ``n`` points: blob ``i % CLUSTERS``, spread 0.9 around its centre."""
    rng = np.random.default_rng(SEED)
    blob = (np.arange(n) % CLUSTERS).astype(np.int32)
    xy = blob_centres()[blob] + rng.normal(scale=0.9, size=(n, 2)).astype(np.float32)
    return xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32), blob


def ids(n: int) -> list[str]:
    return [f"{i:064x}" for i in range(n)]


def _tile(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def build_scale_db(root: Path, n: int) -> Path:
    """Write the database at ``root/db`` and return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedscope.analysis.vectors_import import import_vectors
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    root.mkdir(parents=True, exist_ok=True)
    x, y, blob = layout(n)
    keys = ids(n)
    rng = np.random.default_rng(SEED + 1)
    # 4-D vectors: the layout plus a little noise (tiny dim keeps the build quick)
    X = np.column_stack([x, y, rng.normal(size=n), rng.normal(size=n)]).astype(np.float32) + 20.0
    vec_file = root / "vectors.parquet"
    pq.write_table(pa.table({"id": keys, "vector": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 4),
                             "label": [f"class{b}" for b in blob]}), vec_file)
    db = Database(str(root / "db"), create=True)
    import_vectors(db, vec_file, model=MODEL, batch=n)
    vec_file.unlink()
    now = dt.datetime.now(dt.timezone.utc)
    params = {"primary_cluster": "kmeans", "primary_projection": "umap", "primary_dims": 2}
    db.upsert(S.RUNS, pa.table({"run_id": [RUN_ID], "kind": ["analyze"], "model": [MODEL], "variant": ["full"],
                                "params": [json.dumps(params)], "created_at": [now], "n_images": [n]}))
    db.append(S.PROJECTIONS, pa.table({"run_id": [RUN_ID] * n, "sha256": keys, "method": ["umap"] * n,
                                       "dims": pa.array(np.full(n, 2, np.int32)), "x": x, "y": y,
                                       "z": pa.nulls(n, pa.float32())}))
    db.append(S.CLUSTERS, pa.table({"run_id": [RUN_ID] * n, "sha256": keys, "method": ["kmeans"] * n,
                                    "cluster": pa.array(blob), "probability": pa.array(np.ones(n, np.float32))}))
    thumbs = np.arange(0, n, THUMB_EVERY)
    colours = [(40 + 17 * int(b) % 200, 200 - 13 * int(b) % 180, 90 + 29 * int(b) % 160) for b in blob[thumbs]]
    db.upsert(S.IMAGES, pa.table({"sha256": [keys[i] for i in thumbs], "path": [f"/drop/img{i}.jpg" for i in thumbs],
                                  "label": [f"class{blob[i]}" for i in thumbs], "ingested_at": [now] * len(thumbs),
                                  "thumbnail": [_tile(c) for c in colours]}))
    return root / "db"


def cached_scale_db(tmp_path_factory, n: int) -> tuple[Path, float]:
    """``build_scale_db`` once per test session (or once for good under $EMBEDSCOPE_SCALE_DB_DIR);
    (path, seconds the build took, 0 when cached)."""
    import os

    keep = os.environ.get("EMBEDSCOPE_SCALE_DB_DIR")
    root = (Path(keep) if keep else tmp_path_factory.getbasetemp()) / f"map-scale-{n}"
    done = root / ".built"
    if done.exists():
        return root / "db", 0.0
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    build_scale_db(root, n)
    done.touch()
    return root / "db", time.perf_counter() - t0


def wait_until_warm(log: Path, timeout: float = 300) -> None:
    """Wait until the dashboard writing ``log`` has indexed its map in the background (it logs
    "warmed"): datashader's first compile takes tens of seconds on 2 busy cores."""
    deadline = time.monotonic() + timeout
    while "warmed" not in log.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not warm its map in {timeout}s: {log.read_text()[-2000:]}")
        time.sleep(0.5)


if __name__ == "__main__":
    import sys

    t0 = time.perf_counter()
    print(build_scale_db(Path(sys.argv[1]), int(sys.argv[2])), f"{time.perf_counter() - t0:.1f}s")
