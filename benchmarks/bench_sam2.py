"""SAM2 cost and the masked variants on the shared datasets.

What it measures:

- ``sam2_grid_s_per_image@<side>``: SAM2 (encoder + one decoder call for the 3×3 prompt
  grid) per image, batched, at several input sides — the cost ``--sam2-max-side`` bounds
- ``sam2_amg_s_per_image@<side>/pps<n>``: ``SAM2AutomaticMaskGenerator`` with an n×n point
  grid, the alternative we did not choose
- per dataset (``../shared/datasets``: clothing, chest_xray_224): fallback rate and mean
  mask area of the chosen masks, and leave-one-out kNN label accuracy (k=5, cosine) of the
  ``full``, ``mean_fill`` and ``crop`` embeddings of the same images

Cost does not depend on the weights, so random weights measure it honestly. The quality
numbers do: with random weights (the default here, as no real weights can be downloaded
offline) they are NOT a comparison of the modes — rerun with ``--weights hub
--sam2-weights hub`` (or file paths) where the real checkpoints are available.

    python -m benchmarks.bench_sam2 [--quick] [--n 40] [--weights random] [--sam2-weights random]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._stream import Rows

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"


def _sample(dataset: Path, n: int, seed: int = 0) -> list[tuple[Path, str]]:
    """``n`` images spread evenly over the labels (folder names), deterministically; at
    least four per label used (fewer labels for a small ``n``), so kNN has neighbours to find."""
    labels = sorted(p for p in dataset.iterdir() if p.is_dir())
    labels = labels[: max(1, min(len(labels), n // 4))]
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, str]] = []
    per = max(1, n // len(labels))
    for label in labels:
        files = sorted(label.glob("*.jp*g"))
        for i in rng.permutation(len(files))[:per]:
            out.append((files[i], label.name))
    return out[:n]


def knn_accuracy(vectors: np.ndarray, labels: list[str], k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (cosine, majority vote, ties → nearest)."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.asarray(labels)
    hits = 0
    for i in range(len(lab)):
        nn = np.argsort(-sims[i])[:k]
        votes: dict[str, int] = {}
        for j in nn:
            votes[lab[j]] = votes.get(lab[j], 0) + 1
        best = max(votes.values())
        pred = next(lab[j] for j in nn if votes[lab[j]] == best)
        hits += pred == lab[i]
    return hits / len(lab)


def _images(paths: list[Path], max_side: int | None = None) -> list[np.ndarray]:
    from embedscope.ingest.decode import decode_image

    return [np.asarray(decode_image(str(p), max_pixels=10**9, draft_to=max_side).image) for p in paths]


def _row(name: str, value: float, unit: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "value": round(float(value), 4), "unit": unit, "settings": settings}


class _Clock:
    """Wall and process-CPU seconds of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self) -> "_Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure_cost(images: list[np.ndarray], sides: list[int], amg: list[tuple[int, int]], device: str,
                 rows: list[dict]) -> list[dict]:
    """Seconds per image of grid-prompted SAM2 and of the automatic mask generator, added to ``rows``
    (a :class:`~benchmarks._stream.Rows` shows each as it is measured)."""
    from embedscope.models.sam2 import Sam2Segmenter, get_sam2_config, resolve_sam2_weights

    config = get_sam2_config("sam2.1_hiera_tiny")
    weights = resolve_sam2_weights(config.name, "random")
    for side in sides:
        seg = Sam2Segmenter(config, weights, device=device, input_size=side)
        seg.candidates(images[:1])  # build + warm up
        with _Clock() as c:
            seg.candidates(images)
        n = len(images)
        rows.append(_row(f"sam2_grid_s_per_image@{side}", c.wall / n, "s", cpu_s=round(c.cpu / n, 2),
                         model=config.name, batch=n, device=seg.device_name, precision=seg.precision, prompts=9))
    for side, pps in amg:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        seg = Sam2Segmenter(config, weights, device=device, input_size=side)
        gen = SAM2AutomaticMaskGenerator(seg.predictor.model, points_per_side=pps, points_per_batch=64)
        gen.predictor._bb_feat_sizes = seg.predictor._bb_feat_sizes
        with _Clock() as c:  # one image: the generator is the slow alternative
            gen.generate(images[0])
        rows.append(_row(f"sam2_amg_s_per_image@{side}/pps{pps}", c.wall, "s", cpu_s=round(c.cpu, 2),
                         model=config.name, device=seg.device_name, prompts=pps * pps))
    return rows


def measure_dataset(datasets: Path, name: str, n: int, side: int, weights: str, sam2_weights: str, device: str,
                    rows: list[dict]) -> list[dict]:
    """Mask statistics and kNN accuracy of full / mean_fill / crop on ``n`` images of ``name``, added to ``rows``."""
    from PIL import Image

    from embedscope.models.factory import create_encoder
    from embedscope.models.masking import fill_colour
    from embedscope.models.sam2 import Sam2Segmenter, find_main_masks, get_sam2_config, masked_image, resolve_sam2_weights

    sample = _sample(datasets / name, n)
    labels = [label for _, label in sample]
    images = _images([p for p, _ in sample], side)
    enc = create_encoder("dinov2_vits14", weights=weights, device=device,
                         preprocess="xray" if "xray" in name else "default")
    scfg = get_sam2_config("sam2.1_hiera_tiny")
    seg = Sam2Segmenter(scfg, resolve_sam2_weights(scfg.name, sam2_weights), device=device, input_size=side)
    with _Clock() as c:
        mains = [m for i in range(0, len(images), 8) for m in find_main_masks(seg, images[i : i + 8])]
    fill = fill_colour(enc.preprocessor.mean)
    common = {"dataset": name, "n": len(images), "sam2_side": side, "weights": enc.weights.label,
              "sam2_weights": seg.weights.label}
    rows += [
        _row(f"{name}/sam2_s_per_image", c.wall / len(images), "s", cpu_s=round(c.cpu / len(images), 2), **common,
             note="includes model build"),
        _row(f"{name}/fallback_rate", np.mean([m.fallback for m in mains]), "fraction", **common),
        _row(f"{name}/mean_mask_area", np.mean([m.mask.mean() for m in mains if m.mask is not None] or [np.nan]),
             "fraction", **common),
    ]
    for variant in ("full", "mean_fill", "crop"):
        pixels = []
        for im, main in zip(images, mains):
            shown = im if variant == "full" else masked_image(im, main, mode=variant, fill=fill)
            pixels.append(enc.preprocessor(Image.fromarray(shown)))
        vecs = np.concatenate([enc.embed(np.stack(pixels[i : i + 16])).cls for i in range(0, len(pixels), 16)])
        rows.append(_row(f"{name}/knn5_accuracy/{variant}", knn_accuracy(vecs, labels), "fraction", **common,
                         meaningful=not (enc.weights.is_random or seg.weights.is_random)))
    return rows


def run(quick: bool = False, *, n: int | None = None, weights: str = "random", sam2_weights: str = "random",
        device: str = "auto", datasets: Path | None = None) -> list[dict]:
    """The rows described in the module docstring (``quick``: tiny sizes, a few images, the
    clothing set only), each printed as it is measured."""
    from tests.conftest import make_photo  # generated images when the datasets are absent

    datasets = datasets or DEFAULT_DATASETS
    if datasets.is_dir():
        images = _images([p for p, _ in _sample(datasets / "clothing", 2)], 1024)
    else:
        images = [np.asarray(make_photo(i, (533, 400))) for i in range(2)]
    sides = [128] if quick else [256, 512, 1024]
    amg = [(128, 4)] if quick else [(512, 8), (512, 16)]
    rows = Rows()
    measure_cost(images, sides, amg, device, rows)
    if datasets.is_dir():
        for name in ("clothing",) if quick else ("clothing", "chest_xray_224"):
            measure_dataset(datasets, name, n or (8 if quick else 20), 128 if quick else 512, weights, sam2_weights,
                            device, rows)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, help="images per dataset")
    p.add_argument("--weights", default="random", help="DINOv2: hub | random | PATH")
    p.add_argument("--sam2-weights", default="random", help="SAM2: hub | random | PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--datasets", type=Path, help=f"the shared datasets folder (default {DEFAULT_DATASETS})")
    args = p.parse_args()
    rows = run(args.quick, n=args.n, weights=args.weights, sam2_weights=args.sam2_weights, device=args.device,
               datasets=args.datasets)
    print(f"{'name':45} {'value':>10}  unit      settings")
    for r in rows:
        s = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        print(f"{r['name']:45} {r['value']:>10}  {r['unit']:8}  {s}")


if __name__ == "__main__":
    main()
