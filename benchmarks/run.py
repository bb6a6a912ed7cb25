"""``make bench``: run every ``benchmarks/bench_*.py``, print one table, write bench-results.json.

It first prints the tier's expected duration (each benchmark's and the total); each result is
printed (stderr) as it is measured, then the full table (stdout) and each benchmark's share of
the run's time (stderr). The quick tier aims at :data:`QUICK_BUDGET_S` in all on 2 quiet cores.

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

from benchmarks._stream import show, was_shown

HERE = Path(__file__).resolve().parent

QUICK_BUDGET_S = 180  # the quick tier's aim: about three minutes in all on 2 quiet cores

# Rough wall seconds per benchmark (quick, full) on 2 quiet cores, from CPU-seconds measured on
# the shared machine (docs/benchmarks.md): printed up front so a run says how long it will be.
# A module may define ``expected_seconds(quick) -> float`` instead (bench_queries does, from its
# measured build rates). A benchmark not listed shows "?".
EXPECTED_S: dict[str, tuple[float, float]] = {
    "bench_ingest": (35, 600),  # quick: 61 CPU-s at load 8.6 (the five ingests in one process: torch starts once)
    "bench_analysis": (45, 3 * 3600),  # quick: 74 CPU-s at load 8, numba compiling UMAP most of it
    "bench_dashboard": (8, 40),  # quick: 9 CPU-s
    "bench_map": (45, 150),  # quick 46 s, full 135-147 s (two servers: the second with the full plotly.js, the baseline)
    "bench_multi_model": (15, 120),  # quick: 32 CPU-s at load 8
    "bench_ray": (0, 350),  # skipped in the quick tier (Ray's start-up alone is about a minute)
    "bench_sam2": (20, 1800),  # quick: 35 CPU-s at load 8 with the clothing set
    "bench_verdicts": (25, 3 * 3600),  # quick: 36 CPU-s at load 7
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
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 60:.0f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"


def expected(name: str, quick: bool) -> float | None:
    """Expected wall seconds of benchmark ``name`` in this tier, or None when unknown."""
    try:
        hook = getattr(importlib.import_module(f"benchmarks.{name}"), "expected_seconds", None)
    except Exception:  # a module that does not import fails later, with its error in the table
        hook = None
    if hook is not None:
        return float(hook(quick))
    return EXPECTED_S[name][0 if quick else 1] if name in EXPECTED_S else None


def _expected_text(seconds: float | None) -> str:
    return "?" if seconds is None else "skipped" if seconds == 0 else f"~{_duration(seconds)}"


def announce(names: list[str], quick: bool) -> dict[str, float | None]:
    """Print, before anything runs, each benchmark's expected duration and the total; return them."""
    times = {n: expected(n, quick) for n in names}
    parts = ", ".join(f"{n.removeprefix('bench_')} {_expected_text(t)}" for n, t in times.items())
    total = sum(t for t in times.values() if t is not None)
    aim = f" (aim: {_duration(QUICK_BUDGET_S)} in all)" if quick else ""
    print(f"{'quick' if quick else 'full'} tier, expected ~{_duration(total)} on 2 quiet cores{aim}: {parts}",
          file=sys.stderr, flush=True)
    return times


def print_shares(spent: dict[str, float], times: dict[str, float | None], quick: bool, file: Any = None) -> None:
    """Each benchmark's wall seconds, its share of the run and what was expected (stderr)."""
    file = file or sys.stderr
    total = sum(spent.values()) or 1e-9
    budget = f", quick-tier aim {QUICK_BUDGET_S} s" if quick else ""
    print(f"time per benchmark ({total:.0f} s in all{budget}):", file=file)
    for name, sec in spent.items():
        exp = times.get(name)
        print(f"   {name.removeprefix('bench_'):14} {sec:7.1f} s  {100 * sec / total:4.0f} %   expected "
              f"{_expected_text(exp)}", file=file)
    file.flush()


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
    times = announce(names, args.quick)
    spent: dict[str, float] = {}
    for name in names:
        t0 = time.monotonic()
        exp = times.get(name)
        print(f"== {name} (expected {_expected_text(exp)})", file=sys.stderr, flush=True)
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
        for row in out:  # rows not shown while it ran: show them now
            if not was_shown(row):
                show(row)
        for row in out:
            row.setdefault("settings", {})["benchmark"] = name.removeprefix("bench_")
        rows += out
        spent[name] = time.monotonic() - t0
        used = time.monotonic() - started
        budget = f"; {used:.0f} s of the quick tier's {QUICK_BUDGET_S} s used" if args.quick else ""
        print(f"   {name}: {spent[name]:.0f} s{budget}", file=sys.stderr, flush=True)
    total = round(time.monotonic() - started, 1)
    rows.append({"name": "bench_total", "value": total, "unit": "s",
                 "settings": {"quick": args.quick, "benchmarks": names, **machine()}})
    print_table(rows)
    print_shares(spent, times, args.quick)
    Path(args.out).write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print(f"wrote {args.out} ({len(rows)} measurements, {total}s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
