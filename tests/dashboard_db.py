"""A small ingested + analysed database for the dashboard tests.

``build_dashboard_db`` ingests generated images through the real CLI (random weights), then
runs the real ``embedscope analyze`` (k-means as the primary clustering, agglomerative too,
UMAP and PCA in 2-D and 3-D).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from tests.conftest import REPO, make_photo, run_cli, save_jpeg

GROUPS = ("cats", "dogs", "birds")
PER_GROUP = 12
# distinct contents: the groups plus one near-copy (resized, recompressed) filed under birds;
# one more file is an exact duplicate
N_IMAGES = len(GROUPS) * PER_GROUP + 1


def make_drop(root: Path) -> Path:
    """Three labelled folders of visibly different generated images, a near-copy and an exact copy."""
    drop = root / "drop"
    for g, group in enumerate(GROUPS):
        for i in range(PER_GROUP):
            img = np.asarray(make_photo(1000 * g + i, (160, 120)), np.float32)
            tint = np.zeros(3, np.float32)
            tint[g] = 90.0  # red / green / blue cast per folder
            img = np.clip(img * 0.6 + tint, 0, 255).astype(np.uint8)
            save_jpeg(Image.fromarray(img), drop / group / f"{group}_{i:02d}.jpg")
    original = Image.open(drop / "cats" / "cats_01.jpg")
    original.resize((80, 60)).save(drop / "birds" / "small cats_01.jpg", quality=70)  # a perceptual near-duplicate
    dup = drop / "dogs" / "copy of cats_00.jpg"
    dup.write_bytes((drop / "cats" / "cats_00.jpg").read_bytes())
    return drop


def build_dashboard_db(root: Path) -> Path:
    """Ingest ``make_drop`` into ``root/db`` with the real CLI, then the real analysis."""
    drop = make_drop(root)
    db = root / "db"
    run_cli("ingest", str(drop), "--db", str(db), "--weights", "random", "--image-size", "56",
            "--batch-size", "8", "--label-from-folder", "--no-progress")
    run_cli("analyze", "--db", str(db), "--project", "umap,pca", "--dims", "2,3",
            "--cluster", "kmeans,agglomerative", "--k", "3")
    return db


def cached_dashboard_db(tmp_path_factory) -> Path:
    """``build_dashboard_db`` once per test session (shared by the dashboard test modules)."""
    return _built_once(tmp_path_factory, "dashboard-db", build_dashboard_db)


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(root)`` under the session's base temp folder, once per test session; its ``db``."""
    root = tmp_path_factory.getbasetemp() / name
    done = root / ".built"
    if not done.exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build(root)
        done.touch()
    return root / "db"


@contextlib.contextmanager
def running_dashboard(db: Path, log_path: Path, *args: str, env: dict | None = None,
                      headers: dict | None = None, start_timeout: float = 120) -> Iterator[str]:
    """A real ``embedscope dashboard`` subprocess on a free loopback port: yields its URL once
    ``/`` answers (sent with ``headers``, e.g. basic auth), and stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "embedscope", "dashboard", "--db", str(db), "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url + "/", headers=headers or {}), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not start: {log_path.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


IMPORTED_N = 90  # vectors in the imported test set: three labelled Gaussian blobs


def build_imported_db(root: Path) -> Path:
    """``ingest-vectors`` of ids ``vec_000000``… (no thumbnails, no files), then two analyze
    runs (k=3, then k=4), so two runs of one day exist."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 3
    labels = np.repeat(np.arange(3), IMPORTED_N // 3)
    X = (centres[labels] + rng.normal(size=(IMPORTED_N, 32))).astype(np.float32)
    ids = [f"vec_{i:06d}" for i in range(IMPORTED_N)]
    pq.write_table(pa.table({"id": ids, "vector": list(X), "label": [f"class{v}" for v in labels]}),
                   root / "vectors.parquet")
    db = root / "db"
    run_cli("ingest-vectors", str(root / "vectors.parquet"), "--db", str(db), "--model", "imported")
    run_cli("analyze", "--db", str(db), "--project", "pca", "--dims", "2,3", "--cluster", "kmeans,agglomerative", "--k", "3")
    run_cli("analyze", "--db", str(db), "--project", "pca", "--dims", "2", "--cluster", "kmeans", "--k", "4")
    return db


def cached_imported_db(tmp_path_factory) -> Path:
    """``build_imported_db`` once per test session."""
    return _built_once(tmp_path_factory, "imported-db", build_imported_db)
