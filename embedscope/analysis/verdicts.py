"""Pure rules behind the arrival verdicts (arrays in, arrays out; see docs/verdicts.md).

- :func:`distinct_nn` and :func:`calibrate`: the near-duplicate and novelty thresholds of one
  table, from the distribution of each image's distance to its nearest *distinct* neighbour (no
  threshold in cosine units: chest films sit 0.03 apart by nature, photos 0.3);
- :func:`near_pairs`: for each query image, the *earlier* images it nearly duplicates, by the
  calibrated cosine rule or by perceptual hash guarded by a looser cosine bound — pairs, never
  connected components, so groups cannot chain;
- :func:`split_of`: the split (train / val / test) a path belongs to.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from embedscope.errors import ConfigError

VERDICTS = ("new", "exact_dup", "near_dup", "label_conflict", "leak", "low_quality", "novel", "quarantined")
RULE_EXACT, RULE_COSINE, RULE_PHASH = "sha256", "cosine", "phash+cosine"
NO_PHASH = np.iinfo(np.int64).min  # the phash of a row that has none
_DIST_FLOOR = 1e-6  # cosine distances are floored before the log (identical vectors give 0)
_MAD_SCALE = 1.4826  # MAD → standard deviation for a normal distribution
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test", "holdout": "test"}


@dataclass(frozen=True)
class VerdictConfig:
    """The settings of an arrival check; every one is recorded with the drop."""

    near_z: float = 4.0  # near duplicate: log NN-distance this many robust SDs below the median
    min_ratio: float = 3.0  # ... and at least this many times below the median NN distance
    near_cosine: float | None = None  # a fixed cosine-distance threshold instead of the calibration
    phash_bits: int = 8  # phash candidates: Hamming distance <= this (of 64 bits)
    phash_z: float = 1.0  # a phash candidate must also be this many robust SDs below the median
    novel_z: float = 4.0  # novel: NN distance this many robust SDs above the median
    k: int = 10  # embedding neighbours looked at per image; the k-th one's distance is its local scale
    distinct_ratio: float = 0.1  # a neighbour closer than this × the local scale is not "distinct"
    local_ratio: float = 0.1  # a pair must also be this much closer than the query's local scale
    calibration_sample: int = 5000  # rows whose NN distance calibrates (seeded sample above this)
    min_calibration_rows: int = 8  # fewer rows: the fallback threshold, and no novelty verdicts
    fallback_cosine: float = 0.03  # the near-duplicate threshold when the table is too small
    split_from: str = "folder"  # folder | regex:<re> | column:<name> | none
    seed: int = 0
    recalibrate_growth: float = 0.1  # a drop reuses the last calibration until the table grew this much (0: never)

    def __post_init__(self) -> None:
        parse_split_rule(self.split_from)
        if self.near_z <= 0 or self.novel_z <= 0 or self.k < 1:
            raise ConfigError("--near-z and --novel-z must be > 0, k >= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """Where a table's nearest-neighbour distances sit, and the thresholds drawn from them."""

    rows: int  # NN distances it was computed from
    median_nn: float  # median cosine distance to the nearest other image
    log_sd: float  # robust SD (1.4826 × MAD) of the log NN distance
    near: float  # cosine distance at or below which a pair is a near duplicate
    phash_guard: float  # a phash candidate's cosine distance must be at or below this
    novel: float | None  # NN distance above which an image is novel (None: too few rows)
    source: str  # 'data' | 'flag' | 'fallback'
    table_rows: int = 0  # embedding rows of the table when it was drawn
    reused_from: str | None = None  # the drop whose calibration this is (None: drawn for this one)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def distinct_nn(dist: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of sorted neighbour distances ``dist`` (n × k, self excluded): the local scale
    (the k-th neighbour's distance) and the distance to the nearest neighbour that is not far
    closer than it (>= ``ratio`` × the scale) — the nearest *distinct* image, skipping the
    row's own duplicates, however many rows of the table have one."""
    dist = np.asarray(dist, np.float64)
    if dist.shape[1] == 0:
        empty = np.full(len(dist), np.nan)
        return empty, empty
    scale = dist[:, -1]
    masked = np.where(dist >= ratio * scale[:, None], dist, np.inf)
    return scale, np.minimum(masked.min(axis=1), scale)


def calibrate(nn_dist: np.ndarray, cfg: VerdictConfig, table_rows: int = 0) -> Calibration:
    """Thresholds from each image's distance to its nearest distinct neighbour
    (:func:`distinct_nn`).

    The log of that distance is roughly bell-shaped; a near duplicate is an outlier far on its
    low side. Duplicates are already skipped, and the median and MAD shrug off the rest, so the
    rule is: distance below ``median × exp(-max(near_z × SD, ln min_ratio))`` — relative to the
    data, in units of its own spread. ``near_cosine`` (a flag) overrides it; with too few rows a fixed fallback is
    used and no image is called novel."""
    d = np.asarray(nn_dist, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < cfg.min_calibration_rows:
        near = cfg.near_cosine if cfg.near_cosine is not None else cfg.fallback_cosine
        return Calibration(len(d), float(np.median(d)) if len(d) else math.nan, math.nan, near, near, None,
                           "flag" if cfg.near_cosine is not None else "fallback", table_rows)
    logs = np.log(np.maximum(d, _DIST_FLOOR))
    med = float(np.median(logs))
    sd = max(float(_MAD_SCALE * np.median(np.abs(logs - med))), 0.05)
    near = math.exp(med - max(cfg.near_z * sd, math.log(cfg.min_ratio)))
    guard = math.exp(med - cfg.phash_z * sd)
    source = "data"
    if cfg.near_cosine is not None:
        near, guard, source = cfg.near_cosine, max(guard, cfg.near_cosine), "flag"
    return Calibration(len(d), math.exp(med), sd, near, guard, math.exp(med + cfg.novel_z * sd), source, table_rows)


_CALIBRATION_SETTINGS = ("near_z", "min_ratio", "near_cosine", "phash_z", "novel_z", "k", "distinct_ratio",
                         "calibration_sample", "min_calibration_rows", "seed")


def reuse_calibration(previous: dict[str, Any] | None, previous_config: dict[str, Any], drop_id: str,
                      cfg: VerdictConfig, table_rows: int) -> Calibration | None:
    """An earlier drop's calibration (``previous``, as stored in its params), if it was drawn
    from the data under the same settings and the table has changed by at most
    ``cfg.recalibrate_growth`` of its size since: drawing one costs a kNN search of 5,000
    rows against the whole table, which would dominate every small drop of a large table."""
    if not previous or previous.get("source") != "data" or cfg.recalibrate_growth <= 0:
        return None
    if any(previous_config.get(k) != getattr(cfg, k) for k in _CALIBRATION_SETTINGS):
        return None
    rows = int(previous.get("table_rows") or 0)
    if rows < cfg.min_calibration_rows or abs(table_rows - rows) > cfg.recalibrate_growth * rows:
        return None
    names = [f.name for f in fields(Calibration)]
    return Calibration(**{**{k: previous[k] for k in names if k in previous}, "reused_from": previous.get("reused_from")
                          or drop_id})


@dataclass
class PairFound:
    query: int  # row of the query image
    ref: int  # row of the earlier image it duplicates
    cosine: float
    hamming: int | None
    rule: str
    bound: float  # the cosine-distance bound the pair passed


def near_pairs(
    queries: np.ndarray,
    rank: np.ndarray,
    X: np.ndarray,
    nbr_idx: np.ndarray,
    local: np.ndarray,
    phash: np.ndarray | None,
    calib: Calibration,
    cfg: VerdictConfig,
) -> list[PairFound]:
    """The near-duplicate pairs of each query row with an *earlier* row (``rank`` smaller).

    Candidates: the query's ``nbr_idx`` embedding neighbours, plus every row whose phash is
    within ``phash_bits`` (``phash``: int64 per row, :data:`NO_PHASH` where unknown, or None)
    where :func:`phash_scan_covers` the queries × rows.
    A candidate pairs when its cosine distance is <= ``calib.near`` and <= ``local_ratio`` × the
    query's ``local`` scale (rule ``cosine``; the local test only for a calibrated threshold),
    or its Hamming distance <= ``phash_bits`` and its cosine distance <= ``calib.phash_guard``
    (rule ``phash+cosine``). ``X`` is L2-normalised; rows are indices into it."""
    h = None if phash is None else np.asarray(phash, np.int64).view(np.uint64)
    valid_h = None if phash is None else np.asarray(phash, np.int64) != NO_PHASH
    close = None
    if h is not None and phash_scan_covers(len(queries), len(h)):
        close = phash_close(h, valid_h, queries, cfg.phash_bits)
    found: list[PairFound] = []
    for qi, q in enumerate(queries):
        cand = set(int(j) for j in nbr_idx[qi] if j >= 0)
        if close is not None:
            cand.update(int(j) for j in close[qi])
        cand.discard(int(q))
        earlier = [j for j in cand if rank[j] < rank[q]]
        if not earlier:
            continue
        cos = 1.0 - X[earlier] @ X[q]
        near = min(calib.near, cfg.local_ratio * float(local[qi])) if calib.source == "data" else calib.near
        for j, d in zip(earlier, cos):
            ham = int(np.bitwise_count(h[j] ^ h[q])) if h is not None and valid_h[q] and valid_h[j] else None
            if d <= near:
                found.append(PairFound(int(q), j, float(max(d, 0.0)), ham, RULE_COSINE, near))
            elif ham is not None and ham <= cfg.phash_bits and d <= calib.phash_guard:
                found.append(PairFound(int(q), j, float(max(d, 0.0)), ham, RULE_PHASH, calib.phash_guard))
    return found


PHASH_SCAN_MAX_CELLS = 2_000_000_000  # queries × rows: above it (a whole large table) no full hash scan


def phash_scan_covers(n_queries: int, n_rows: int) -> bool:
    """Whether every row's hash is compared with each query's: a drop against any table, but not
    a whole large table against itself, where that is N² (10¹² at 1M rows); there a query's
    phash candidates are its embedding neighbours only."""
    return n_queries * n_rows <= PHASH_SCAN_MAX_CELLS


def phash_close(h: np.ndarray, valid: np.ndarray, queries: np.ndarray, bits: int, *,
                budget: int = 4_000_000) -> list[np.ndarray]:
    """For each query row, the rows whose 64-bit hash (``h``, uint64; ``valid`` where known) is
    within ``bits`` Hamming bits. Scanned in blocks of queries × all rows of about ``budget``
    cells, so memory stays bounded (~8 bytes a cell) however large the table or the drop."""
    out: list[np.ndarray] = []
    chunk = max(1, budget // max(len(h), 1))
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start:start + chunk], np.int64)
        near = (np.bitwise_count(h[q][:, None] ^ h[None, :]) <= bits) & valid[None, :] & valid[q][:, None]
        out.extend(np.nonzero(row)[0] for row in near)
    return out


def parse_split_rule(rule: str) -> tuple[str, Any]:
    """``folder`` | ``regex:<re>`` | ``column:<name>`` | ``none`` → (kind, compiled pattern,
    column name or None)."""
    if rule in ("folder", "none"):
        return rule, None
    if rule.startswith("column:") and rule[len("column:"):].strip():
        return "column", rule[len("column:"):].strip()
    if rule.startswith("regex:"):
        try:
            return "regex", re.compile(rule[len("regex:"):])
        except re.error as exc:
            raise ConfigError(f"--split-from {rule!r}: bad regular expression ({exc})") from None
    raise ConfigError(f"--split-from {rule!r}: use folder, regex:<re>, column:<name> or none")


def split_of(path: str, rule: str) -> str | None:
    """The split of ``path``: with ``folder``, the last path component named like a split
    (train/training, val/valid/validation/dev, test/testing/holdout → train, val, test); with
    ``regex:<re>``, the first group of the first match (or the whole match); None if none.
    ``column:<name>`` needs the tables (:func:`embedscope.analysis.arrival_data.split_column`)."""
    kind, pattern = parse_split_rule(rule)
    if kind == "none":
        return None
    if kind == "column":
        raise ValueError("a column split is read from the tables, not from the path")
    if kind == "regex":
        m = pattern.search(path)
        return None if m is None else (m.group(1) if m.groups() else m.group(0))
    parts = re.split(r"[\\/]", path)[:-1]
    for part in reversed(parts):
        name = _SPLIT_NAMES.get(part.lower())
        if name:
            return name
    return None
