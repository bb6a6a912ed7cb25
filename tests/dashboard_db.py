"""A small ingested + analysed database for the dashboard tests.

``build_dashboard_db`` ingests generated images through the real CLI (random weights), then
``write_standin_analysis`` writes one analysis run. THE LATTER IS A STAND-IN for
``embedscope analyze`` (written on another branch): it writes rows exactly per
``store/schema.py`` with simple numpy/sklearn maths. After merging, replace its call by
``run_cli("analyze", "--db", db)``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.conftest import make_photo, run_cli, save_jpeg

GROUPS = ("cats", "dogs", "birds")
PER_GROUP = 12
N_IMAGES = len(GROUPS) * PER_GROUP  # distinct contents; one extra file is an exact duplicate
RUN_ID = "standin-run-0001"


def make_drop(root: Path) -> Path:
    """Three labelled folders of visibly different generated images, plus one duplicate file."""
    drop = root / "drop"
    for g, group in enumerate(GROUPS):
        for i in range(PER_GROUP):
            img = np.asarray(make_photo(1000 * g + i, (160, 120)), np.float32)
            tint = np.zeros(3, np.float32)
            tint[g] = 90.0  # red / green / blue cast per folder
            img = np.clip(img * 0.6 + tint, 0, 255).astype(np.uint8)
            from PIL import Image

            save_jpeg(Image.fromarray(img), drop / group / f"{group}_{i:02d}.jpg")
    dup = drop / "dogs" / "copy of cats_00.jpg"
    dup.write_bytes((drop / "cats" / "cats_00.jpg").read_bytes())
    return drop


def build_dashboard_db(root: Path) -> Path:
    """Ingest ``make_drop`` into ``root/db`` with the real CLI, then the stand-in analysis."""
    drop = make_drop(root)
    db = root / "db"
    run_cli("ingest", str(drop), "--db", str(db), "--weights", "random", "--image-size", "56",
            "--batch-size", "8", "--label-from-folder", "--no-progress")
    write_standin_analysis(db)
    return db


def write_standin_analysis(db_path: Path, run_id: str = RUN_ID) -> str:
    """STAND-IN for `embedscope analyze`: one run with kmeans + agglomerative clusters,
    PCA projections (2-D and 3-D, named 'umap' 2-D too so the primary projection exists),
    flags (novelty, contamination, near-duplicates) and metrics with k sweeps."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import silhouette_score

    from embedscope.store import schema as S
    from embedscope.store.db import Database

    db = Database(str(db_path))
    model = db.embedding_models()[0]
    emb = db.read_embeddings(model, "full", ["sha256", "vector"]).sort_by("sha256")
    shas = emb.column("sha256").to_pylist()
    X = np.asarray(emb.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(len(shas), -1)
    n = len(shas)
    labels = dict(zip(*(db.read(S.IMAGES, ["sha256", "label"]).column(c).to_pylist() for c in ("sha256", "label"))))
    now = dt.datetime.now(dt.timezone.utc)

    km = KMeans(3, n_init=4, random_state=0).fit(X)
    agg = AgglomerativeClustering(3).fit_predict(X)
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    P = Xc @ vt[:3].T

    params = {"primary_cluster": "kmeans", "primary_projection": "umap", "primary_dims": 2, "k": 3}
    db.upsert(S.RUNS, pa.table({
        "run_id": [run_id], "kind": ["analyze"], "model": [model], "variant": ["full"],
        "params": [json.dumps(params)], "created_at": [now],
        "table_version": [db.version(S.embeddings_table_name(model))], "n_images": [n]}))
    clusters = []
    for method, lab in (("kmeans", km.labels_), ("agglomerative", agg)):
        clusters.append(pa.table({"run_id": [run_id] * n, "sha256": shas, "method": [method] * n,
                                  "cluster": pa.array(lab.astype(np.int32)), "probability": pa.array(np.ones(n, np.float32))}))
    db.upsert(S.CLUSTERS, pa.concat_tables(clusters))
    proj = []
    for method, dims in (("umap", 2), ("pca", 2), ("pca", 3)):
        proj.append(pa.table({"run_id": [run_id] * n, "sha256": shas, "method": [method] * n, "dims": pa.array([dims] * n, pa.int32()),
                              "x": pa.array(P[:, 0], pa.float32()), "y": pa.array(P[:, 1], pa.float32()),
                              "z": pa.array(P[:, 2] if dims == 3 else np.full(n, np.nan), pa.float32())}))
    db.upsert(S.PROJECTIONS, pa.concat_tables(proj))

    centres = km.cluster_centers_[km.labels_]
    dist = np.linalg.norm(X - centres, axis=1)
    novelty = (dist - dist.min()) / (np.ptp(dist) or 1.0)
    is_novel = novelty >= np.quantile(novelty, 0.9)
    majority = {}
    for c in range(3):
        labs = [labels[s] for s, k in zip(shas, km.labels_) if k == c]
        majority[c] = max(set(labs), key=labs.count)
    contaminated = [labels[s] != majority[k] for s, k in zip(shas, km.labels_)]
    # near-duplicates: the 3 closest pairs by cosine similarity share a group (random weights
    # make every vector similar, so a fixed threshold would group everything)
    sim = X @ X.T
    iu = np.triu_indices(n, 1)
    dup_group: list[int | None] = [None] * n
    for p, idx in enumerate(np.argsort(-sim[iu])[:3]):
        for i in (iu[0][idx], iu[1][idx]):
            dup_group[i] = dup_group[i] if dup_group[i] is not None else p
    db.upsert(S.FLAGS, pa.table({
        "run_id": [run_id] * n, "sha256": shas,
        "novelty_score": pa.array(novelty, pa.float32()), "is_novel": is_novel.tolist(),
        "surprise": pa.array(novelty * 2.0, pa.float32()), "centroid_score": pa.array(dist, pa.float32()),
        "knn_score": pa.array(novelty, pa.float32()), "glosh_score": pa.array(novelty, pa.float32()),
        "novelty_reason": [f"distance to kmeans centroid {d:.2e} (top 10%)" if v else "" for d, v in zip(dist, is_novel)],
        "is_contaminated": contaminated,
        "contamination_reason": [f"label {labels[s]!r} in a cluster of mostly {majority[k]!r}" if c else ""
                                 for s, k, c in zip(shas, km.labels_, contaminated)],
        "dup_group": pa.array(dup_group, pa.int64()), "phash_group": pa.array([None] * n, pa.int64())}))

    rows = [("silhouette", "kmeans", "embedding", None, float(silhouette_score(X, km.labels_))),
            ("silhouette", "agglomerative", "embedding", None, float(silhouette_score(X, agg))),
            ("davies_bouldin", "kmeans", "embedding", None, 1.1), ("calinski_harabasz", "kmeans", "embedding", None, 42.0),
            ("ari", "kmeans", "embedding", None, 0.5), ("nmi", "kmeans", "embedding", None, 0.6),
            ("knn_acc_5", "", "embedding", None, 0.9), ("silhouette", "kmeans", "umap2d", None, 0.4)]
    for k in range(2, 7):
        m = KMeans(k, n_init=2, random_state=0).fit(X)
        rows += [("inertia", "kmeans", "embedding", k, float(m.inertia_)),
                 ("silhouette_vs_k", "kmeans", "embedding", k, float(silhouette_score(X, m.labels_)))]
    names, methods, spaces, ks, values = zip(*rows)
    db.upsert(S.METRICS, pa.table({"run_id": [run_id] * len(rows), "name": list(names), "method": list(methods),
                                   "space": list(spaces), "k": pa.array(list(ks), pa.int32()), "value": list(values)}))
    return run_id


def cached_dashboard_db(tmp_path_factory) -> Path:
    """``build_dashboard_db`` once per test session (shared by the dashboard test modules)."""
    root = tmp_path_factory.getbasetemp() / "dashboard-db"
    done = root / ".built"
    if not done.exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build_dashboard_db(root)
        done.touch()
    return root / "db"
