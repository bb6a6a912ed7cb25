"""Several models in one ingest vs one ingest per model.

``ingest --model dinov2_vits14,openclip_vitb32`` decodes each image once and embeds it with
both models; the baseline is ``--model dinov2_vits14`` then ``--model openclip_vitb32`` (the
second a "completing" run over known images, decoding every image again). Same generated JPEGs
(640×480), random weights, CPU, fp32, fresh databases, in this process; wall seconds of each
``run_ingest`` (model loading included on both sides).

``python -m benchmarks.bench_multi_model [--quick]``; ``EMBEDSCOPE_BENCH_MULTI_IMAGES`` sets the
image count (quick 8, else 256). Each row is printed as it is measured.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._stream import Rows

MODELS = ("dinov2_vits14", "openclip_vitb32")


def _drop(root: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    drop = root / "drop"
    drop.mkdir(parents=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        base = (np.sin(xx / (20 + i % 17)) + np.cos(yy / (13 + i % 11)))[..., None] * 60 + 120
        img = np.clip(base + rng.normal(0, 12, (480, 640, 3)) * [1, 0.7, 0.4], 0, 255).astype(np.uint8)
        Image.fromarray(img).save(drop / f"{i:04d}.jpg", quality=90)
    return drop


def _ingest(drop: Path, db: Path, model: str) -> float:
    from embedscope.config import IngestSettings
    from embedscope.ingest.pipeline import run_ingest

    t0 = time.perf_counter()
    run_ingest(IngestSettings(drops=(str(drop),), db=str(db), model=model, weights="random", device="cpu",
                              precision="fp32", progress=False))
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Both ways on the same drop (quick: 8 images, a smoke test whose ratio is mostly model loading)."""
    n = int(os.environ.get("EMBEDSCOPE_BENCH_MULTI_IMAGES", 8 if quick else 256))
    settings = {"images": n, "models": ",".join(MODELS), "device": "cpu", "precision": "fp32"}
    rows = Rows()
    root = Path(tempfile.mkdtemp(prefix="embedscope-bench-multi-"))
    try:
        drop = _drop(root, n)
        for module in ("open_clip", "timm", "embedscope.ingest.pipeline"):  # before the clock: neither side pays
            importlib.import_module(module)

        separate = sum(_ingest(drop, root / "separate", m) for m in MODELS)
        rows.append({"name": "multi_model_separate", "value": round(separate, 2), "unit": "s", "settings": settings})
        together = _ingest(drop, root / "together", ",".join(MODELS))
        rows.append({"name": "multi_model_together", "value": round(together, 2), "unit": "s", "settings": settings})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows.append({"name": "multi_model_ratio", "value": round(separate / together, 3), "unit": "x",
                 "settings": {**settings, "what": "two single-model ingests / one two-model ingest"}})
    return rows


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
