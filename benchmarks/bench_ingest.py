"""Ingest throughput: model ceiling, end to end, the naive baseline, re-ingest, memory.

All figures come from one run, so the ratios hold on a noisy machine:

- ``model_only``: the encoder's forward rate on random tensors (chosen batch + precision)
- ``ingest_e2e``: ``embedscope ingest`` of a copy of ``../shared/datasets/clothing`` (or
  generated JPEGs of the same size when absent), random weights, fresh DB, own process;
  img/s over the run less the time spent waiting for the model to load (reported apart)
- ``naive_loop``: a seed-notebook loop over the same files (one image at a time, fp32)
- ``reingest``: the same drop again (all duplicates) vs ``sha256sum`` of the same files
- ``peak_rss_small`` / ``peak_rss_large``: tiny generated images, a drop 10x the other
- ``sam2_masked`` (``--sam2``): the masked variant, when ``embedscope.models.sam2`` exists
- ``decode_*``: JPEG decode + resize/normalise rates on the same files, one core: Pillow (the
  CPU path), torchvision ``decode_jpeg`` on the CPU (the ``--decode gpu`` code on the CPU
  device), the ``--decode gpu`` worker's small draft decode, and nvJPEG when CUDA is present
- ``model_only_compiled``: ``torch.compile`` vs eager, same batch and precision, interleaved
  windows; the compile time apart (``EMBEDSCOPE_BENCH_COMPILE=0`` or ``--no-compile`` skips
  it; off by default with ``--quick``: compiling takes minutes on a small CPU)
- with CUDA (device auto): the same table on the GPU, plus ``ingest_e2e_gpu_decode``
  (``--decode gpu``) and its ratio to ``model_only``

The five ``embedscope ingest`` runs (start-up, the two memory drops, e2e, re-ingest) each get
a fresh process; with ``--quick`` they share one (``EMBEDSCOPE_BENCH_ONE_PROCESS``), so torch
starts once: ``reingest`` then adds the measured start-up, and the memory peaks are that
process's after each drop. Every row is printed as it is measured.

``python -m benchmarks.bench_ingest [--quick] [--sam2] [--compile|--no-compile]``; sizes via
``EMBEDSCOPE_BENCH_*`` environment variables (see :func:`_sizes`), the image folder via
``EMBEDSCOPE_BENCH_DATA``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from benchmarks._child import MARK
from benchmarks._stream import Rows

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".bench"
MODEL = "dinov2_vits14"


def _sizes(quick: bool) -> dict[str, int]:
    """Benchmark sizes; each can be overridden by ``EMBEDSCOPE_BENCH_<NAME>``."""
    sizes = {
        "images": 64 if quick else 320,  # ingest_e2e / reingest drop
        "image_size": 112 if quick else 224,  # model input side
        "naive_images": 4 if quick else 32,
        "model_seconds": 2 if quick else 20,
        "rss_small": 50 if quick else 1500,
        "rss_large": 500 if quick else 15000,
        "rss_image_size": 28,
        "sam2_images": 8 if quick else 32,
        "decode_images": 16 if quick else 160,
        "compile": 0 if quick else 1,  # measure torch.compile (minutes of compiling on a CPU)
        "one_process": 1 if quick else 0,  # the five ingests in one process (torch starts once) or one each
    }
    for key in sizes:
        env = os.environ.get(f"EMBEDSCOPE_BENCH_{key.upper()}")
        if env:
            sizes[key] = int(env)
    return sizes


def _source_files() -> tuple[list[Path], str]:
    root = Path(os.environ.get("EMBEDSCOPE_BENCH_DATA", REPO.parent / "shared" / "datasets" / "clothing"))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if root.is_dir() else []
    return files, str(root)


def make_drop(dst: Path, n: int) -> str:
    """``n`` images in ``dst``: copies of the clothing set (round-robin over its labels, so
    a subset looks like the whole) or, when it is absent, generated 400x533 JPEGs."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    files, root = _source_files()
    if files:
        by_label: dict[str, list[Path]] = {}
        for f in files:
            by_label.setdefault(f.parent.name, []).append(f)
        picked: list[Path] = []
        while len(picked) < n and any(by_label.values()):
            for label in sorted(by_label):
                if by_label[label] and len(picked) < n:
                    picked.append(by_label[label].pop(0))
        for i, f in enumerate(picked):
            shutil.copyfile(f, dst / f"{i:06d}_{f.parent.name}{f.suffix}")
        if len(picked) == n:
            return f"copy of {root}"
        start = len(picked)
    else:
        start = 0
    generate_jpegs(dst, n - start, (400, 533), start=start)
    return "generated 400x533 JPEGs" if not files else f"copy of {root} + generated"


def generate_jpegs(dst: Path, n: int, size: tuple[int, int], *, start: int = 0) -> None:
    """Smooth random colour fields with a few shapes: photo-like JPEG sizes, all distinct."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
            x1, y1 = x0 + int(rng.integers(1, w - x0)), y0 + int(rng.integers(1, h - y0))
            draw.ellipse((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        img.save(dst / f"gen{i:06d}.jpg", quality=85)


def _cli_each(commands: list[list[str]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Run each ``embedscope ARGS --json --no-progress`` of ``commands`` in ONE fresh process
    (``benchmarks._child``), yielding (its summary, its wall/peak RSS) as each one ends."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argvs = [[*args, "--json", "--no-progress"] for args in commands]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks._child", json.dumps(argvs)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        reports = (line[len(MARK):] for line in proc.stdout if line.startswith(MARK))
        args = commands[0]
        for args, line in zip(commands, reports):
            done = json.loads(line)
            if done["rc"] != 0 or done["summary"] is None:
                proc.kill()
                break
            yield done["summary"], done
        else:
            if proc.wait() == 0:
                return
        proc.wait()
        err.seek(0)
        raise RuntimeError(f"embedscope {' '.join(args)} failed:\n{err.read()[-3000:]}")


def _cli(args: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``embedscope ARGS --json`` in a fresh process: (its summary, its wall/peak RSS)."""
    return list(_cli_each([args]))[0]


def model_only(image_size: int, seconds: float) -> tuple[dict[str, Any], str, int]:
    """Forward rate on random tensors with what ingest would choose (precision measured at
    start-up, batch size for the device)."""
    import numpy as np

    from embedscope.models.factory import create_encoder

    enc = create_encoder(MODEL, weights="random", image_size=image_size)
    batch_size = enc.choose_batch_size(0)
    x = np.random.default_rng(0).standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32)
    arrays = list(x)
    enc.embed(enc.stack(arrays))  # warm-up

    def rate() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2 * batch_size:
            enc.embed(enc.stack(arrays))
            n += batch_size
        return n / (time.perf_counter() - t0)

    settings = {"model": MODEL, "device": enc.device_name, "precision": enc.precision, "batch_size": batch_size,
                "image_size": image_size, "calibration": {k: round(v, 2) for k, v in enc.calibration.items()}}
    row = {"name": "model_only", "value": round(rate(), 2), "unit": "img/s", "settings": settings}
    row["again"] = rate  # measured once more after the ingest: the ceiling is the better of the two
    return row, enc.precision, batch_size


def naive_loop(files: list[Path], image_size: int, out: Path) -> dict[str, Any]:
    """The seed notebooks' loop: open, convert, resize, normalise, one fp32 forward per image,
    collect, save .npy."""
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from torchvision import transforms as T

    from embedscope.models.dinov2 import RANDOM_INIT
    from embedscope.models.registry import get_encoder_config

    cfg = get_encoder_config(MODEL)
    torch.manual_seed(0)
    model = timm.create_model(cfg.arch, pretrained=False, num_classes=0, img_size=image_size, **RANDOM_INIT).eval()
    tf = T.Compose([T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size),
                    T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    feats = []
    t0 = time.perf_counter()
    for f in files:
        img = Image.open(f).convert("RGB")
        with torch.no_grad():
            feats.append(model(tf(img).unsqueeze(0)).numpy()[0])
    np.save(out, np.stack(feats))
    rate = len(files) / (time.perf_counter() - t0)
    return {"name": "naive_loop", "value": round(rate, 2), "unit": "img/s",
            "settings": {"model": MODEL, "images": len(files), "image_size": image_size, "precision": "fp32",
                         "batch_size": 1}}


def sha256sum_seconds(files: list[Path]) -> float:
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-0", "sha256sum"], input=b"\0".join(str(f).encode() for f in files),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _ratio(name: str, num: float, den: float, target: float | None,
           settings: dict[str, Any] | None = None) -> dict[str, Any]:
    value = num / den if den else 0.0
    aim = {} if target is None else {"target": f">= {target}", "meets_target": value >= target}
    return {"name": name, "value": round(value, 3), "unit": "ratio", "settings": {**aim, **(settings or {})}}


def run(quick: bool = False, sam2: bool = False, compile: bool | None = None) -> list[dict[str, Any]]:
    """Every ingest measurement, in one run (see the module docstring)."""
    sz = _sizes(quick)
    if compile is not None:
        sz["compile"] = int(compile)
    WORK.mkdir(exist_ok=True)
    results = Rows()  # each row is printed as it is added
    drop = WORK / "drop"
    source = make_drop(drop, sz["images"])
    files = sorted(drop.iterdir())
    size = sz["image_size"]
    print(f"bench_ingest: {len(files)} images ({source}), image size {size}", file=sys.stderr)

    mo, precision, batch_size = model_only(size, sz["model_seconds"])
    results.append(mo)
    common = ["--weights", "random", "--model", MODEL, "--image-size", str(size), "--precision", precision,
              "--batch-size", str(batch_size)]
    got = _ingests(sz, drop, common, results, one_process=bool(sz["one_process"]), source=source)
    e2e, naive = got["e2e"], naive_loop(files[: sz["naive_images"]], size, WORK / "naive.npy")
    results.append(naive)
    first, second = mo["value"], round(mo.pop("again")(), 2)
    mo["value"] = max(first, second)
    mo["settings"]["windows"] = [first, second]  # before and after the ingests: the spread is the noise
    print(f"  model_only again {second} img/s (the better window is the ceiling)", file=sys.stderr)
    sha = sha256sum_seconds(files)
    results += [
        {"name": "sha256sum", "value": round(sha, 3), "unit": "s", "settings": {"files": len(files)}},
        _ratio("ingest_e2e/model_only", e2e["value"], mo["value"], 0.85 if e2e["settings"]["device"] == "cpu" else 0.70),
        _ratio("ingest_e2e/naive_loop", e2e["value"], naive["value"], 2.0),
        _ratio("(3*sha256sum+startup)/reingest", 3 * sha + got["startup"], got["reingest"], 1.0,
               {"meaning": "re-ingest within 3x sha256sum plus start-up when >= 1"}),
    ]
    if _cuda():
        results += _gpu_decode_e2e(drop, common, mo["value"])
    decode_rates(files[: sz["decode_images"]], size, results)
    if sz["compile"]:
        results += compile_vs_eager(size, batch_size, precision, sz["model_seconds"])
    else:
        print("  model_only_compiled: skipped (--quick; EMBEDSCOPE_BENCH_COMPILE=1 measures it)", file=sys.stderr)
    if sam2:
        results += _sam2(files[: sz["sam2_images"]], size, precision)
    return results


def _ingests(sz: dict[str, int], drop: Path, common: list[str], results: Rows, *, one_process: bool,
             source: str) -> dict[str, Any]:
    """The five ``embedscope ingest`` runs: an empty folder (start-up), the two memory drops,
    the drop (``ingest_e2e``) and the same drop again (``reingest``), each in a fresh process,
    or (``one_process``, the quick tier) all in one, so torch starts once. Rows are added as
    each run ends; returns the e2e row and the start-up and re-ingest seconds."""
    db = WORK / "db"
    for stale in (db, WORK / "db-empty", WORK / "db-rss_small", WORK / "db-rss_large"):
        shutil.rmtree(stale, ignore_errors=True)
    (WORK / "empty").mkdir(exist_ok=True)
    memory = ["--weights", "random", "--model", MODEL, "--image-size", str(sz["rss_image_size"]), "--batch-size", "64",
              "--precision", "fp32"]
    commands = {"startup": ["ingest", str(WORK / "empty"), "--db", str(WORK / "db-empty"), *common],
                **{key: ["ingest", str(_memory_drop(sz[key])), "--db", str(WORK / f"db-{key}"), *memory]
                   for key in ("rss_small", "rss_large")},
                "e2e": ["ingest", str(drop), "--db", str(db), *common],
                "reingest": ["ingest", str(drop), "--db", str(db), *common]}
    keys = list(commands)
    batches = [keys] if one_process else [[key] for key in keys]
    how = ("one process for all five (the quick tier): peaks are that process's so far, and the start-up is paid "
           "once, by the first run" if one_process else "a fresh process each")
    got: dict[str, Any] = {}
    for batch in batches:
        for key, (summary, proc) in zip(batch, _cli_each([commands[key] for key in batch])):
            got[key] = proc["wall_s"]
            if key == "startup":
                results.append({"name": "startup", "value": round(proc["wall_s"], 3), "unit": "s",
                                "settings": {"what": "embedscope ingest of an empty folder into a fresh DB "
                                                     "(in-process wall time, imports included)", "processes": how}})
            elif key in ("rss_small", "rss_large"):
                got[f"peak_{key}"] = proc["max_rss_mib"]
                results.append({"name": f"peak_{key}", "value": round(proc["max_rss_mib"], 1), "unit": "MiB",
                                "settings": {"images": summary["new"], "image_size": sz["rss_image_size"],
                                             "img_s": summary["images_per_s"], "what": "64x48 generated JPEGs",
                                             "processes": how}})
            elif key == "e2e":
                got["e2e"] = _e2e_row(summary, proc, common, how)
                got["e2e"]["settings"]["source"] = source
                results.append(got["e2e"])
            else:
                assert summary["new"] == 0, summary
                # a fresh process's wall = its start-up + the run: in one process, add the start-up measured
                got["reingest"] = proc["wall_s"] + (got["startup"] if one_process else 0.0)
                results.append({"name": "reingest", "value": round(got["reingest"], 3), "unit": "s",
                                "settings": {"files": summary["duplicates"], "duplicates": summary["duplicates"],
                                             "run_s": summary["seconds"], "processes": how,
                                             **({"what": "in-process wall + the start-up above"} if one_process else {})}})
    growth = got["peak_rss_large"] / got["peak_rss_small"]
    results.append({"name": "peak_rss_large/peak_rss_small", "value": round(growth, 3), "unit": "ratio",
                    "settings": {"target": "<= 1.10", "meets_target": growth <= 1.10,
                                 "images": [sz["rss_small"], sz["rss_large"]]}})
    for key in ("rss_small", "rss_large"):
        shutil.rmtree(WORK / f"db-{key}", ignore_errors=True)
    return got


def _e2e_row(summary: dict[str, Any], proc: dict[str, Any], common: list[str], how: str) -> dict[str, Any]:
    """``ingest_e2e``: the steady rate, i.e. the run without the wait for the model to load (a
    constant, reported apart like the CLI's start-up); the rate including it is in the settings."""
    stages = summary["stage_seconds"]
    steady = summary["new"] / max(1e-9, summary["seconds"] - stages.get("load_wait", 0.0))
    flags = dict(zip(common[::2], common[1::2]))
    return {"name": "ingest_e2e", "value": round(steady, 2), "unit": "img/s",
            "settings": {"images": summary["new"], "img_s_including_model_load": summary["images_per_s"],
                         "image_size": int(flags["--image-size"]), "precision": flags["--precision"],
                         "batch_size": int(flags["--batch-size"]), "device": summary["device"],
                         "run_s": summary["seconds"], "wall_s": round(proc["wall_s"], 2), "stage_busy_s": stages,
                         "peak_rss_mib": round(proc["max_rss_mib"], 1), "processes": how}}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _gpu_decode_e2e(drop: Path, common: list[str], model_rate: float) -> list[dict[str, Any]]:
    """``ingest_e2e`` again with ``--decode gpu`` (CUDA hosts only)."""
    db = WORK / "db-gpu-decode"
    shutil.rmtree(db, ignore_errors=True)
    summary, proc = _cli(["ingest", str(drop), "--db", str(db), *common, "--decode", "gpu"])
    stages = summary["stage_seconds"]
    steady = summary["new"] / max(1e-9, summary["seconds"] - stages.get("load_wait", 0.0))
    print(f"  ingest_e2e_gpu_decode {steady:.1f} img/s, stages {stages}", file=sys.stderr)
    shutil.rmtree(db, ignore_errors=True)
    return [{"name": "ingest_e2e_gpu_decode", "value": round(steady, 2), "unit": "img/s",
             "settings": {"images": summary["new"], "decode": summary.get("decode"), "device": summary["device"],
                          "img_s_including_model_load": summary["images_per_s"], "stage_busy_s": stages,
                          "peak_rss_mib": round(proc["max_rss_mib"], 1)}},
            _ratio("ingest_e2e_gpu_decode/model_only", steady, model_rate, 0.70)]


def decode_rates(files: list[Path], size: int, out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per-image decode + resize/normalise rates on one core (torch set to one thread), each
    over the same files read into memory first (no disk in the timing)."""
    import torch

    from embedscope.ingest.decode import decode_bytes, perceptual_hash, thumbnail_jpeg
    from embedscope.ingest.jpeg_batch import JpegBatchDecoder, prepare_jpeg
    from embedscope.models.preprocess import Preprocessor
    from embedscope.models.registry import get_encoder_config

    cfg = get_encoder_config(MODEL)
    pre = Preprocessor(size, cfg.mean, cfg.std)
    datas = [d for d in (f.read_bytes() for f in files) if prepare_jpeg(d, max_pixels=178_956_970, small_side=128)]
    max_pixels, thumb = 178_956_970, 128
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = [] if out is None else out  # a benchmarks._stream.Rows shows each row as it is added

    def timed(name: str, what: str, fn: Any, **extra: Any) -> float:
        fn()  # warm-up (codec tables, allocator)
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        rate = len(datas) / best
        out.append({"name": name, "value": round(rate, 1), "unit": "img/s",
                    "settings": {"what": what, "images": len(datas), "image_size": size, "threads": 1, **extra}})
        return rate

    def pil_pixels() -> None:
        for d in datas:
            pre(decode_bytes(d, max_pixels=max_pixels, draft_to=max(size, thumb)).image)

    def pil_worker() -> None:  # the --decode cpu worker's whole per-image job
        for d in datas:
            im = decode_bytes(d, max_pixels=max_pixels, draft_to=max(size, thumb)).image
            pre(im), perceptual_hash(im), thumbnail_jpeg(im, thumb)

    prepared = [prepare_jpeg(d, max_pixels=max_pixels, small_side=thumb) for d in datas]

    def draft_worker() -> None:  # the --decode gpu worker's whole per-image job
        for d in datas:
            p = prepare_jpeg(d, max_pixels=max_pixels, small_side=thumb)
            perceptual_hash(p.small.image), thumbnail_jpeg(p.small.image, thumb)

    try:
        pil = timed("decode_pil_cpu", "Pillow decode (draft to the input size) + resize/crop/normalise", pil_pixels)
        cpu_dec = JpegBatchDecoder("cpu", size, cfg.mean, cfg.std)
        tv = timed("decode_torchvision_cpu", "torchvision decode_jpeg (list) + torch resize/crop/normalise, "
                   "the --decode gpu code on the CPU", lambda: cpu_dec.decode(prepared))
        out.append(_ratio("decode_torchvision_cpu/decode_pil_cpu", tv, pil, None,
                          {"meaning": "> 1: torchvision's CPU decode is faster than the Pillow path"}))
        w_cpu = timed("worker_decode_cpu", "--decode cpu worker per image: full decode, pixels, phash, thumbnail",
                      pil_worker)
        w_gpu = timed("worker_decode_gpu", "--decode gpu worker per image: header + draft decode (longest side "
                      ">= 128), phash, thumbnail; pixels left to the GPU", draft_worker)
        out.append(_ratio("worker_decode_gpu/worker_decode_cpu", w_gpu, w_cpu, None,
                          {"meaning": "how much CPU work per image --decode gpu saves"}))
        if _cuda():
            gpu_dec = JpegBatchDecoder("cuda", size, cfg.mean, cfg.std)

            def nvjpeg() -> None:
                gpu_dec.decode(prepared)
                torch.cuda.synchronize()

            timed("decode_torchvision_cuda", "nvJPEG decode_jpeg (list, one call) + resize/crop/normalise on the GPU",
                  nvjpeg, device=torch.cuda.get_device_name(0))
    finally:
        torch.set_num_threads(threads)
    return out


def compile_vs_eager(size: int, batch_size: int, precision: str, seconds: float) -> list[dict[str, Any]]:
    """``torch.compile`` against eager on random tensors, same batch and precision, on the
    device ingest would use: the compile (first call) timed apart, then eager and compiled
    windows interleaved, best of each."""
    import numpy as np

    from embedscope.models.factory import create_encoder

    eager = create_encoder(MODEL, weights="random", image_size=size, precision=precision)
    compiled = create_encoder(MODEL, weights="random", image_size=size, precision=precision, compile=True)
    x = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), dtype=np.float32)
    batch = eager.stack(list(x))
    print(f"  compiling (batch {batch_size}, {precision}, input {size}) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    a = compiled.embed(batch).cls
    compile_s = time.perf_counter() - t0
    b = eager.embed(batch).cls
    settings: dict[str, Any] = {"model": MODEL, "device": compiled.device_name, "precision": precision,
                                "batch_size": batch_size, "image_size": size, "compile_s": round(compile_s, 1),
                                "cosine_to_eager_min": round(float((a * b).sum(axis=1).min()), 6)}
    if compiled.compile_error:
        print(f"  model_only_compiled: compile failed ({compiled.compile_error}); ran eager", file=sys.stderr)
        settings["compile_error"] = compiled.compile_error
        return [{"name": "model_only_compiled", "value": None, "unit": "img/s", "settings": settings}]

    def rate(enc: Any) -> float:
        n, t1 = 0, time.perf_counter()
        while time.perf_counter() - t1 < seconds / 2 or n < 2 * batch_size:
            enc.embed(batch)
            n += batch_size
        return n / (time.perf_counter() - t1)

    windows: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(3):
        windows["eager"].append(round(rate(eager), 2))
        windows["compiled"].append(round(rate(compiled), 2))
    best_e, best_c = max(windows["eager"]), max(windows["compiled"])
    print(f"  model_only_compiled {best_c:.2f} img/s vs eager {best_e:.2f} (compile {compile_s:.0f} s; "
          f"windows {windows})", file=sys.stderr)
    return [
        {"name": "model_only_compiled", "value": best_c, "unit": "img/s",
         "settings": {**settings, "eager_img_s": best_e, "windows": windows}},
        {"name": "compile_seconds", "value": round(compile_s, 1), "unit": "s",
         "settings": {"what": "first call of the compiled encoder (dynamo tracing + inductor codegen + C++ build)",
                      "device": compiled.device_name,
                      "note": "inductor caches kernels on disk (/tmp/torchinductor_$USER): a repeat with the "
                              "same shapes compiles much faster"}},
        _ratio("model_only_compiled/model_only_eager", best_c, best_e, None,
               {"meaning": "> 1: compiled is faster in steady state (compile time apart); "
                           "the windows show the noise"}),
    ]


def _memory_drop(n: int) -> Path:
    """A folder of ``n`` tiny generated JPEGs (64x48) for the peak-memory pair, kept between runs."""
    drop = WORK / f"mem-{n}"
    if not drop.exists() or len(list(drop.iterdir())) != n:
        shutil.rmtree(drop, ignore_errors=True)
        drop.mkdir(parents=True)
        generate_jpegs(drop, n, (64, 48))
    return drop


def _sam2(files: list[Path], size: int, precision: str) -> list[dict[str, Any]]:
    try:
        import embedscope.models.sam2  # noqa: F401
    except ImportError:
        print("  sam2_masked: skipped (embedscope.models.sam2 is not in this tree)", file=sys.stderr)
        return [{"name": "sam2_masked", "value": None, "unit": "img/s",
                 "settings": {"skipped": "embedscope.models.sam2 is not in this tree"}}]
    drop = WORK / "sam2-drop"
    shutil.rmtree(drop, ignore_errors=True)
    drop.mkdir()
    for f in files:
        shutil.copyfile(f, drop / f.name)
    db = WORK / "db-sam2"
    shutil.rmtree(db, ignore_errors=True)
    summary, proc = _cli(["ingest", str(drop), "--db", str(db), "--weights", "random", "--sam2",
                          "--sam2-weights", "random", "--image-size", str(size), "--precision", precision])
    return [{"name": "sam2_masked", "value": summary["images_per_s"], "unit": "img/s",
             "settings": {"images": summary["new"], "stage_busy_s": summary["stage_seconds"],
                          "peak_rss_mib": round(proc["max_rss_mib"], 1), "image_size": size}}]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.run import print_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sam2", action="store_true")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="measure torch.compile vs eager (default: on, off with --quick)")
    args = p.parse_args(argv)
    print_table(run(quick=args.quick, sam2=args.sam2, compile=args.compile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
