"""Dashboard map cost at scale: reading the points of a projection from a real LanceDB
database, colouring them, building the figure, and the JSON sent to the browser.

    python -m benchmarks.bench_dashboard [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time

from benchmarks._stream import Rows


def _synthetic_db(path: str, n: int) -> None:
    import numpy as np
    import pyarrow as pa

    from embedscope.store import schema as S
    from embedscope.store.db import Database

    rng = np.random.default_rng(0)
    db = Database(path, create=True)
    shas = [f"{i:064x}" for i in range(n)]
    now = dt.datetime.now(dt.timezone.utc)
    db.upsert(S.IMAGES, pa.table({"sha256": shas, "path": [f"/drop/{i % 7}/img{i}.jpg" for i in range(n)],
                                  "label": [f"class{i % 7}" for i in range(n)], "ingested_at": [now] * n}))
    db.upsert(S.RUNS, pa.table({"run_id": ["bench"], "kind": ["analyze"], "params": ['{"primary_cluster": "kmeans"}'],
                                "created_at": [now]}))
    db.upsert(S.PROJECTIONS, pa.table({"run_id": ["bench"] * n, "sha256": shas, "method": ["umap"] * n,
                                       "dims": pa.array([2] * n, pa.int32()), "x": rng.normal(size=n).astype("float32"),
                                       "y": rng.normal(size=n).astype("float32"), "z": pa.nulls(n, pa.float32())}))
    db.upsert(S.CLUSTERS, pa.table({"run_id": ["bench"] * n, "sha256": shas, "method": ["kmeans"] * n,
                                    "cluster": pa.array(rng.integers(0, 20, n), pa.int32())}))


def run(quick: bool = False) -> list[dict]:
    from embedscope.dashboard import figures
    from embedscope.store import views
    from embedscope.store.db import Database

    results = Rows()  # each row is printed as it is added
    for n in ([10_000] if quick else [10_000, 100_000]):
        with tempfile.TemporaryDirectory() as tmp:
            _synthetic_db(tmp, n)
            db = Database(tmp)
            settings = {"points": n, "colour": "cluster:kmeans (20 clusters)"}
            t0 = time.perf_counter()
            points = views.map_coordinates(db, "bench", "umap", 2, max_points=150_000)
            t1 = time.perf_counter()
            colours, cont = views.point_colors(db, "bench", points.sha256, "cluster:kmeans")
            t2 = time.perf_counter()
            fig = figures.map_figure(dataclasses.replace(points, color=colours, continuous=cont))
            t3 = time.perf_counter()
            payload = fig.to_json()
            t4 = time.perf_counter()
            results += [
                {"name": "map: read points", "value": round(t1 - t0, 4), "unit": "s", "settings": settings},
                {"name": "map: read colours", "value": round(t2 - t1, 4), "unit": "s", "settings": settings},
                {"name": "map: build figure", "value": round(t3 - t2, 4), "unit": "s", "settings": settings},
                {"name": "map: serialise figure", "value": round(t4 - t3, 4), "unit": "s", "settings": settings},
                {"name": "map: JSON sent", "value": round(len(payload) / n, 1), "unit": "bytes/point", "settings": settings},
            ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for r in run(quick=args.quick):
        print(f"{r['name']:28} {r['value']:>10} {r['unit']:12} {r['settings']}")


if __name__ == "__main__":
    main()
