"""Near-duplicate recall and precision on a real image set: recompressed and resized copies of
``n`` images, ingested with random weights after the originals (tests/test_verdicts.py, and by
hand: ``python -m tests.verdict_bench ../shared/datasets/clothing /tmp/bench``)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.conftest import run_cli

FAST = ["--weights", "random", "--image-size", "56", "--batch-size", "16", "--workers", "2", "--no-progress"]
SUFFIXES = ("_q60", "_r70")


def family(path: str) -> str:
    stem = Path(path).stem
    for s in SUFFIXES:
        stem = stem.removesuffix(s)
    return stem


def known_pairs(dataset: Path) -> set[frozenset[str]]:
    with open(dataset.parent / "KNOWN_DUPLICATES.csv") as fh:
        return {frozenset((Path(r["path_a"]).stem, Path(r["path_b"]).stem)) for r in csv.DictReader(fh)}


def planted_copies_benchmark(dataset: Path, work: Path, *, n: int = 100, originals: int = 200,
                             extra: tuple[str, ...] = ()) -> dict:
    """Ingest ``originals`` images of ``dataset`` (seeded pick), then a recompressed (JPEG q60)
    and a resized (70%) copy of ``n`` of them; the copies' verdicts give recall, every near
    pair found in either drop gives precision (a pair is right when it joins an image and its
    copy, or is listed in KNOWN_DUPLICATES.csv)."""
    from embedscope.store.db import Database

    files = sorted(p for p in dataset.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pick = [files[i] for i in sorted(np.random.default_rng(17).choice(len(files), originals, replace=False))]
    for p in pick:
        dest = work / "orig" / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    for p in pick[:n]:
        im = Image.open(p).convert("RGB")
        dest = work / "copies" / p.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        im.save(dest / f"{p.stem}_q60.jpg", quality=60)
        im.resize((im.width * 7 // 10, im.height * 7 // 10), Image.BILINEAR).save(dest / f"{p.stem}_r70.jpg", quality=90)
    db = work / "db"
    run_cli("ingest", str(work / "orig"), "--db", str(db), *FAST, "--label-from-folder", *extra)
    run_cli("ingest", str(work / "copies"), "--db", str(db), *FAST, "--label-from-folder", *extra)
    return score(Database(str(db)), dataset)


def score(d: Any, dataset: Path, drop_ids: set[str] | None = None) -> dict:
    """Recall, precision and the largest group of the drops ``drop_ids`` (default: all)."""
    from embedscope.store import schema as S

    arrivals = [r for r in d.read(S.ARRIVALS).to_pylist() if drop_ids is None or r["drop_id"] in drop_ids]
    copies = {r["path"] for r in arrivals if "/copies/" in r["path"]}
    hit = {r["path"] for r in arrivals if r["path"] in copies and r["verdict"] in ("near_dup", "exact_dup")
           and family(r["partner_path"]) == family(r["path"])}
    known = known_pairs(dataset)
    pairs = [p for p in d.read(S.PAIRS).to_pylist()
             if p["kind"] == "near" and (drop_ids is None or p["run_id"] in drop_ids)]
    right = [p for p in pairs if family(p["path_a"]) == family(p["path_b"])
             or frozenset((Path(p["path_a"]).stem, Path(p["path_b"]).stem)) in known]
    stars: dict[str, int] = {}
    for r in arrivals:
        if r["verdict"] in ("near_dup", "exact_dup"):
            stars[r["partner_path"]] = stars.get(r["partner_path"], 0) + 1
    drops = sorted((r for r in d.read(S.DROPS).to_pylist() if drop_ids is None or r["drop_id"] in drop_ids),
                   key=lambda r: r["started_at"])
    return {"copies": len(copies), "recall": len(hit) / max(len(copies), 1),
            "near_pairs": len(pairs), "precision": len(right) / max(len(pairs), 1),
            "largest_group": 1 + max(stars.values(), default=0),
            "wrong": [(Path(p["path_a"]).name, Path(p["path_b"]).name, p["rule"], round(p["cosine"], 4), p["hamming"])
                      for p in pairs if p not in right][:10],
            "missed": sorted(Path(c).name for c in copies - hit)[:10],
            "calibration": [json.loads(r["params"])["calibration"] for r in drops]}


if __name__ == "__main__":
    print(json.dumps(planted_copies_benchmark(Path(sys.argv[1]), Path(sys.argv[2]), extra=tuple(sys.argv[3:])),
                     indent=1, default=str))
