"""The latest run's values as columns joined onto ``images`` (read-only).

``image_results(db)`` returns one row per image of the latest analyze run (of a model/variant),
overlaid with the novelty-only runs scored against it (a later score wins):
``sha256, path, label, run_id, cluster, x, y, z, novelty_score, is_novel, is_contaminated,
dup_group, phash_group``. ``cluster`` is the run's primary clustering, ``x, y (, z)`` its primary
projection. Old runs stay in the tables; pass ``run_id`` to read one of them instead.
"""

from __future__ import annotations

import pyarrow as pa

from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq
from embedscope.store.runs import KIND_ANALYZE, overlay_runs, run_or_latest

COLUMNS = ("sha256", "path", "label", "run_id", "cluster", "x", "y", "z", "novelty_score", "is_novel",
           "is_contaminated", "dup_group", "phash_group")


def image_results(db: Database, *, run_id: str | None = None, model: str | None = None,
                  variant: str | None = None) -> pa.Table:
    """Per-image results of the latest (or the given) analyze run, as a pyarrow table."""
    run = run_or_latest(db, run_id, kind=KIND_ANALYZE, model=model, variant=variant)
    if run is None:
        raise NotFoundError(f"no analyze run in {db.uri}", "run `embedscope analyze --db DIR` first")
    run_ids = [run.run_id] if run_id else [r.run_id for r in overlay_runs(db, run)]
    rows: dict[str, dict] = {}
    for rid in run_ids:  # later runs overwrite earlier ones
        where = eq("run_id", rid)
        for r in db.read(S.FLAGS, ["sha256", "novelty_score", "is_novel", "is_contaminated", "dup_group",
                                   "phash_group"], where=where).to_pylist():
            rows.setdefault(r["sha256"], {}).update(r, run_id=rid)
        for r in db.read(S.CLUSTERS, ["sha256", "cluster"],
                         where=both(where, eq("method", run.primary_cluster))).to_pylist():
            rows.setdefault(r["sha256"], {})["cluster"] = r["cluster"]
        if run.primary_projection:
            for r in db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                             where=both(where, eq("method", run.primary_projection),
                                        eq("dims", run.primary_dims))).to_pylist():
                rows.setdefault(r["sha256"], {}).update(x=r["x"], y=r["y"], z=r["z"])
    images = db.read(S.IMAGES, ["sha256", "path", "label"]).to_pylist()
    meta = {r["sha256"]: r for r in images}
    out = [{**{c: None for c in COLUMNS}, **meta.get(s, {}), **v, "sha256": s} for s, v in sorted(rows.items())]
    schema = pa.schema([("sha256", pa.string()), ("path", pa.string()), ("label", pa.string()), ("run_id", pa.string()),
                        ("cluster", pa.int32()), ("x", pa.float32()), ("y", pa.float32()), ("z", pa.float32()),
                        ("novelty_score", pa.float32()), ("is_novel", pa.bool_()), ("is_contaminated", pa.bool_()),
                        ("dup_group", pa.int64()), ("phash_group", pa.int64())])
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in out], schema=schema)
