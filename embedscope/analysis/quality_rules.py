"""Dataset-relative quality verdicts from the raw numbers ingest measured (``quality`` table).

A chest film is dark, soft and grey by nature; a clothing photo is not. So every rule compares
an image with the distribution of the table it joins (median and robust spread), and, so that
a tight distribution cannot make ordinary images "outliers", also with a plain floor that any
bad image passes. Thresholds and the distribution's numbers are returned so they can be stored
with the drop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_MAD_SCALE = 1.4826


@dataclass(frozen=True)
class QualityConfig:
    z: float = 4.0  # robust SDs from the table's median
    dark_max: float = 50.0  # mean luminance: dark only below this, whatever the table
    bright_min: float = 215.0
    blur_ratio: float = 0.05  # blurry also below this fraction of the median Laplacian variance
    entropy_max: float = 2.0  # bits: low information only below this
    tiny_side: int = 32  # tiny: shorter side below max(this, tiny_ratio × the median shorter side)
    tiny_ratio: float = 0.25
    aspect_ratio: float = 2.5  # odd aspect: w/h this many times off the table's median w/h
    grey_max: float = 2.0  # colourfulness at or below this is a grey image ...
    colour_set_min: float = 8.0  # ... odd when 90% of the table is at least this colourful
    min_rows: int = 8  # fewer rows: no relative rules (tiny/blank still apply by their floors)


def _centre(values: np.ndarray, floor: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return math.nan, floor
    med = float(np.median(v))
    return med, max(float(_MAD_SCALE * np.median(np.abs(v - med))), floor)


def quality_thresholds(table: dict[str, np.ndarray], cfg: QualityConfig) -> dict[str, Any]:
    """The cut-offs for a table, from its columns ``blur``, ``brightness``, ``entropy``,
    ``colorfulness``, ``width``, ``height`` (one row per image; NaN where not measured)."""
    n = int(np.isfinite(table["brightness"]).sum())
    relative = n >= cfg.min_rows
    lb_med, lb_sd = _centre(np.log1p(table["blur"]), 0.25)
    br_med, br_sd = _centre(table["brightness"], 5.0)
    en_med, en_sd = _centre(table["entropy"], 0.2)
    short = np.minimum(table["width"], table["height"]).astype(np.float64)
    aspect = np.log(np.maximum(table["width"], 1) / np.maximum(table["height"], 1))
    colour = table["colorfulness"][np.isfinite(table["colorfulness"])]
    inf = math.inf
    return {
        "rows": n,
        "relative": relative,
        "blur_below": max(math.expm1(lb_med - cfg.z * lb_sd), cfg.blur_ratio * math.expm1(lb_med)) if relative else -inf,
        "dark_below": min(br_med - cfg.z * br_sd, cfg.dark_max) if relative else -inf,
        "bright_above": max(br_med + cfg.z * br_sd, cfg.bright_min) if relative else inf,
        "entropy_below": min(en_med - cfg.z * en_sd, cfg.entropy_max) if relative else 0.5,
        "tiny_below": max(cfg.tiny_side, cfg.tiny_ratio * float(np.median(short))) if len(short) else cfg.tiny_side,
        "median_log_aspect": float(np.median(aspect)) if len(aspect) else 0.0,
        "aspect_factor": cfg.aspect_ratio,
        "grey_at_most": cfg.grey_max,
        "colour_set": bool(relative and len(colour) and np.quantile(colour, 0.1) >= cfg.colour_set_min),
    }


def quality_reasons(row: dict[str, float], t: dict[str, Any]) -> list[str]:
    """Why one image is low quality against thresholds ``t`` (empty: it is fine)."""
    out = []
    blur, bright, ent, col = (row.get(k, math.nan) for k in ("blur", "brightness", "entropy", "colorfulness"))
    w, h = int(row["width"]), int(row["height"])
    if ent <= t["entropy_below"]:
        out.append(f"low information (entropy {abs(ent):.2f} bits <= {t['entropy_below']:.2f})")
    elif blur < t["blur_below"]:
        out.append(f"blurry (Laplacian variance {blur:.1f} < {t['blur_below']:.1f})")
    if bright < t["dark_below"]:
        out.append(f"too dark (mean luminance {bright:.0f} < {t['dark_below']:.0f})")
    if bright > t["bright_above"]:
        out.append(f"too bright (mean luminance {bright:.0f} > {t['bright_above']:.0f})")
    if min(w, h) < t["tiny_below"]:
        out.append(f"tiny ({w}x{h}, shorter side < {t['tiny_below']:.0f})")
    off = abs(math.log(max(w, 1) / max(h, 1)) - t["median_log_aspect"])
    if off > math.log(t["aspect_factor"]):
        out.append(f"odd aspect ratio ({w}x{h}: {math.exp(off):.1f}x off the set's usual)")
    if t["colour_set"] and col <= t["grey_at_most"]:
        out.append(f"grayscale in a colour set (colourfulness {col:.1f})")
    return out


def reuse_thresholds(previous: dict[str, Any] | None, previous_config: dict[str, Any] | None, drop_id: str,
                     cfg: QualityConfig, table_rows: int, growth: float) -> dict[str, Any] | None:
    """An earlier drop's thresholds (``previous``, as stored in its params), if they were drawn
    from the whole table (``table_rows`` recorded) under the same settings and the table has
    changed by at most ``growth`` of its size since, as the near-duplicate calibration is reused."""
    if not previous or growth <= 0 or previous_config != asdict(cfg):
        return None
    rows = int(previous.get("table_rows") or 0)
    if rows < cfg.min_rows or abs(table_rows - rows) > growth * rows:
        return None
    return {**previous, "reused_from": previous.get("reused_from") or drop_id}
