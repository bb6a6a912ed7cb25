"""``make bench``: run every ``benchmarks/bench_*.py``, print one table, write bench-results.json.

It first prints the tier's expected duration; each result is printed (stderr) as it is
measured, the full table (stdout) at the end.

Each module exposes ``run(quick: bool = False) -> list[dict]`` with dicts
``{"name", "value", "unit", "settings": {...}}``; the JSON file is the list of them all, plus
a last ``bench_total`` row whose settings describe the machine. A module that fails is reported (an entry
with ``"error"`` in its settings) and the others still run; the exit code is then 1.

    python -m benchmarks.run [--quick] [--sam2] [--only ingest,queries] [--out bench-results.json]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks._stream import Rows, show

HERE = Path(__file__).resolve().parent

# Rough wall seconds per benchmark (quick, full) from the last runs on 2 shared cores: printed up
# front so a long run says how long it will be. A benchmark not listed shows "?".
EXPECTED_S: dict[str, tuple[float, float]] = {
    "bench_ingest": (120, 600),  # quick: 548 s measured at load 8-13 (five ingest processes, torch start-up each)
    "bench_analysis": (120, 3 * 3600),  # quick: 201 s measured at load ~9, UMAP numba compile most of it
    "bench_dashboard": (30, 120),
    "bench_queries": (60, 2 * 3600),  # quick: 10k vectors (30k took 159-203 s)
    "bench_ray": (0, 350),  # skipped in the quick tier (Ray's start-up alone is about a minute)
    "bench_sam2": (60, 1800),
    "bench_verdicts": (100, 3 * 3600),
    "bench_map": (150, 600),
}


def discover() -> list[str]:
    """Module names of the benchmarks present, ingest first (its numbers head the table)."""
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return sorted(names, key=lambda n: (n != "bench_ingest", n))


def print_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    """A fixed-width table: name, value, unit and the settings that matter most."""
    file = file or sys.stdout
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':{width}}  {'value':>12}  {'unit':6}  settings", file=file)
    print("-" * (width + 40), file=file)
    for r in rows:
        value = r.get("value")
        shown = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        settings = r.get("settings", {})
        brief = ", ".join(f"{k}={v}" for k, v in settings.items() if not isinstance(v, (dict, list)))
        print(f"{r['name']:{width}}  {shown:>12}  {r.get('unit', ''):6}  {brief[:110]}", file=file)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"


def announce(names: list[str], quick: bool) -> None:
    """Print, before anything runs, each benchmark's expected duration and the total."""
    known = [EXPECTED_S[n][0 if quick else 1] for n in names if n in EXPECTED_S]
    parts = ", ".join(f"{n.removeprefix('bench_')} ~{_duration(EXPECTED_S[n][0 if quick else 1])}"
                      if n in EXPECTED_S else f"{n.removeprefix('bench_')} ?" for n in names)
    print(f"{'quick' if quick else 'full'} tier, expected ~{_duration(sum(known))} on 2 shared cores ({parts})",
          file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run the embedscope benchmarks")
    p.add_argument("--quick", action="store_true", help="small sizes (see the expected time it prints first)")
    p.add_argument("--sam2", action="store_true", help="also the SAM2-masked variant (if present)")
    p.add_argument("--only", help="comma-separated topics, e.g. ingest,queries")
    p.add_argument("--out", default="bench-results.json")
    args = p.parse_args(argv)
    names = discover()
    if args.only:
        wanted = {f"bench_{t.strip()}" for t in args.only.split(",")}
        names = [n for n in names if n in wanted]
    rows: list[dict[str, Any]] = []
    failed = False
    started = time.monotonic()
    announce(names, args.quick)
    for name in names:
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            kwargs: dict[str, Any] = {"quick": args.quick}
            if "sam2" in inspect.signature(module.run).parameters:
                kwargs["sam2"] = args.sam2
            out = module.run(**kwargs)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            out = [{"name": name, "value": None, "unit": "", "settings": {"error": f"{type(exc).__name__}: {exc}"}}]
        if not isinstance(out, Rows):  # not shown while it ran: show it now
            for row in out:
                show(row)
        for row in out:
            row.setdefault("settings", {})["benchmark"] = name.removeprefix("bench_")
        rows += out
        print(f"   {name}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    total = round(time.monotonic() - started, 1)
    rows.append({"name": "bench_total", "value": total, "unit": "s",
                 "settings": {"quick": args.quick, "benchmarks": names, **machine()}})
    print_table(rows)
    Path(args.out).write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print(f"wrote {args.out} ({len(rows)} measurements, {total}s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
