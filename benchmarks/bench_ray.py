"""Ray executor vs local executor: the same drop, random weights, a fresh database each.

- ``local_executor``: ``embedscope ingest`` (threads in one process), img/s over the run
- ``ray_executor``: ``embedscope ingest --executor ray --ray-workers 2`` on a local Ray that
  the command starts itself (2 CPU encoder actors, one torch thread each); img/s over the run
  as the summary reports it (actor start-up and model loads included, ``ray.init`` not)
- ``ray_wall``: the Ray command's whole wall time, cluster start included
- ``ray_vs_local``: the img/s ratio (below 1 on one small machine: the point of Ray is more
  machines, and this measures its overhead, not its gain)

The drop is ``bench_ingest.make_drop`` (a copy of ``../shared/datasets/clothing`` or generated
JPEGs). ``python -m benchmarks.bench_ray [--quick]``; sizes via ``EMBEDSCOPE_BENCH_RAY_IMAGES``
and ``EMBEDSCOPE_BENCH_RAY_IMAGE_SIZE``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

from benchmarks._stream import Rows
from benchmarks.bench_ingest import WORK, _cli, make_drop

RAY_WORKERS = 2


def _sizes(quick: bool) -> dict[str, int]:
    sizes = {"images": 96 if quick else 320, "image_size": 112 if quick else 224}
    for key in sizes:
        env = os.environ.get(f"EMBEDSCOPE_BENCH_RAY_{key.upper()}")
        if env:
            sizes[key] = int(env)
    return sizes


def _ingest(drop: str, db: str, size: int, extra: list[str]) -> tuple[dict[str, Any], float]:
    if os.path.exists(db):
        shutil.rmtree(db)
    t0 = time.perf_counter()
    summary, _ = _cli(["ingest", drop, "--db", db, "--weights", "random", "--image-size", str(size),
                       "--precision", "fp32", *extra])
    return summary, time.perf_counter() - t0


QUICK_SKIP = ("skipped in the quick tier: starting Ray and its actors alone takes about a minute of the quick "
              "tier's three on 2 cores; `make bench` runs it, or python -m benchmarks.bench_ray --quick")


def run(quick: bool = False, force: bool = False) -> list[dict[str, Any]]:
    """Local vs local-Ray ingest of one drop (see the module docstring); in the quick tier only
    when ``force`` (run on its own)."""
    if quick and not force:
        return [{"name": "ray_executor", "value": None, "unit": "img/s", "settings": {"skipped": QUICK_SKIP}}]
    try:
        import ray  # noqa: F401
    except ImportError:
        return [{"name": "ray_executor", "value": None, "unit": "img/s",
                 "settings": {"error": "ray is not installed (pip install 'ray[data]')"}}]
    sz = _sizes(quick)
    WORK.mkdir(exist_ok=True)
    drop = WORK / "ray_drop"
    source = make_drop(drop, sz["images"])
    size = sz["image_size"]
    print(f"bench_ray: {sz['images']} images ({source}), image size {size}", file=sys.stderr)
    common = {"images": sz["images"], "image_size": size, "precision": "fp32", "source": source,
              "cpus": os.cpu_count()}

    rows = Rows()  # each row is printed as it is added
    local, local_wall = _ingest(str(drop), str(WORK / "ray_db_local"), size, [])
    rows.append({"name": "local_executor", "value": local["images_per_s"], "unit": "img/s",
                 "settings": {**common, "device": local["device"], "wall_s": round(local_wall, 1),
                              "stage_seconds": local["stage_seconds"]}})
    ray_, ray_wall = _ingest(str(drop), str(WORK / "ray_db_ray"), size,
                             ["--executor", "ray", "--ray-workers", str(RAY_WORKERS)])
    assert local["new"] == ray_["new"] == sz["images"], (local, ray_)
    rows += [
        {"name": "ray_executor", "value": ray_["images_per_s"], "unit": "img/s",
         "settings": {**common, "workers": RAY_WORKERS, "device": ray_["device"],
                      "stage_seconds": ray_["stage_seconds"]}},
        {"name": "ray_wall", "value": round(ray_wall, 1), "unit": "s",
         "settings": {**common, "workers": RAY_WORKERS, "local_wall_s": round(local_wall, 1),
                      "note": "whole command: Ray start + actors + model loads + run"}},
        {"name": "ray_vs_local", "value": round(ray_["images_per_s"] / local["images_per_s"], 3), "unit": "ratio",
         "settings": {**common, "workers": RAY_WORKERS}},
    ]
    return rows


if __name__ == "__main__":
    from benchmarks.run import print_table

    print_table(run(quick="--quick" in sys.argv, force=True))
