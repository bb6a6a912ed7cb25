"""``make demo``: build a demo drop that needs no network, ingest and analyse it, say how to explore it.

The drop is scikit-image's bundled sample photos plus generated variants that exercise the
pipeline: exact copies (deduplicated by SHA-256), resized and recompressed near-copies (for
the near-duplicate analysis), an EXIF-rotated copy, grayscale and 16-bit files, and a few
files that must be quarantined (truncated, empty, not an image).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = {
    "animals": ["chelsea", "horse"],  # data.cat() is chelsea again
    "people": ["astronaut", "camera"],
    "objects": ["coffee", "rocket", "clock", "coins", "colorwheel", "logo"],
    "science": ["moon", "hubble_deep_field", "retina", "immunohistochemistry", "microaneurysms"],
    "textures": ["grass", "gravel", "brick"],
    "documents": ["page", "text"],
}

BANNER = """
************************************************************************
*  DINOv2 weights are not available here (offline, not in the cache). *
*  The demo continues with RANDOM weights: the pipeline, tables and    *
*  dashboard all work, but the embeddings are NOT meaningful.          *
*  Every row records weights = 'random'. See docs/weights.md to use    *
*  the real ones.                                                      *
************************************************************************
"""


def build_demo_drop(out: Path) -> dict[str, int]:
    """Write the demo drop under ``out``; returns what an ingest of it should find."""
    import skimage.data as data

    if out.exists():
        shutil.rmtree(out)
    originals: list[Path] = []
    for folder, names in SAMPLES.items():
        for name in names:
            arr = getattr(data, name)()
            img = Image.fromarray(arr)
            if img.mode == "RGBA":
                path = out / folder / f"{name}.png"
            else:
                img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
                path = out / folder / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
            originals.append(path)
    variants = out / "variants"
    variants.mkdir()
    jpegs = [p for p in originals if p.suffix == ".jpg"]
    for src in jpegs[:3]:  # exact copies under another name
        shutil.copy(src, variants / f"copy of {src.name}")
    for src in jpegs[3:8]:  # near-copies: half size, recompressed
        img = Image.open(src).convert("RGB")
        img.resize((img.width // 2, img.height // 2)).save(variants / f"small {src.stem}.jpg", quality=60)
    rotated = Image.open(jpegs[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(variants / "rotated-exif.jpg", quality=90, exif=exif.tobytes())
    Image.open(jpegs[1]).convert("L").save(variants / "grayscale.png")
    deep = (np.asarray(Image.open(jpegs[2]).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(variants / "16-bit.png")
    odd = out / "odd files"
    odd.mkdir()
    good = jpegs[4].read_bytes()
    (odd / "truncated.jpg").write_bytes(good[: len(good) // 4])
    (odd / "empty.jpg").write_bytes(b"")
    (odd / "not-an-image.png").write_text("hello")
    return {
        "files": len(originals) + 3 + 5 + 3 + 3,
        "images": len(originals) + 5 + 3,
        "duplicates": 3,
        "quarantined": 3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedscope.demo", description=__doc__)
    parser.add_argument("--out", default="demo", help="folder for the drop and the database")
    parser.add_argument("--weights", default=None, help="force 'random' or a weights file (default: try hub)")
    args = parser.parse_args(argv)

    from embedscope.config import IngestSettings
    from embedscope.errors import EmbedscopeError, WeightsNotFoundError
    from embedscope.ingest.pipeline import run_ingest
    from embedscope.store.db import Database
    from embedscope.store.queries import stats

    out = Path(args.out).absolute()
    drop, db = out / "drop", out / "db"
    expected = build_demo_drop(drop)
    print(f"demo drop: {drop} ({expected['files']} files)")
    settings = IngestSettings(drops=(str(drop),), db=str(db), weights=args.weights or "hub", label_from_folder=True)
    try:
        try:
            summary = run_ingest(settings)
        except WeightsNotFoundError as exc:
            if args.weights:
                raise
            print(f"note: {exc.message}", file=sys.stderr)
            print(BANNER, file=sys.stderr)
            summary = run_ingest(dataclasses.replace(settings, weights="random"))
    except EmbedscopeError as exc:
        print(f"demo: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print(summary.one_line())
    from embedscope.analysis.jobs import AnalysisParams, run_analysis

    print("analysing (UMAP 2-D/3-D and PCA, HDBSCAN + k-means + agglomerative, novelty, near-duplicates)...")
    params = AnalysisParams(project=("umap", "pca"), dims=(2, 3), cluster=("kmeans", "hdbscan", "agglomerative"),
                            k_max=8)
    run_id = run_analysis(Database(db), params)
    print(f"analysis run {run_id}")
    print(json.dumps(stats(Database(db)), indent=2))
    print(f"\ndatabase: {db}")
    print("explore it:")
    print(f"  embedscope stats --db {db}")
    print(f"  embedscope query --db {db} \"SELECT label, count(*) FROM images GROUP BY label\"")
    print(f"  embedscope report --db {db} --out {out / 'report.html'}")
    print(f"  make dashboard DB={db}    # then open http://127.0.0.1:8050")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
