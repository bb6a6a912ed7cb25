"""The arrival check: a verdict per arrived path (new, exact_dup, near_dup, label_conflict,
leak, low_quality, novel, quarantined), written to ``arrivals``, ``pairs``, ``labels`` and one
``drops`` row (last, so a drop that is listed is complete). See docs/verdicts.md.

An arrival is a (sha256, path) that ``sources`` did not hold before the drop. Each content is
judged against every *earlier* image: stored before the drop, or earlier in the drop (by path).
So every duplicate points at one earlier partner and a group is a star around its earliest
image; nothing chains.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any, Callable, Sequence

import numpy as np

from embedscope.analysis.arrival_data import (Arrival, ArrivalData, quality_columns, read_arrival_data, split_column,
                                              table_of, table_quality_columns)
from embedscope.analysis.arrival_graph import (graph_for, graph_search, neighbourhood, sampled_nn_distances,
                                               verdict_index_cache)
from embedscope.analysis.neighbors import KnnIndex, Neighbors
from embedscope.analysis.params import new_run_id
from embedscope.analysis.quality_rules import QualityConfig, quality_reasons, quality_thresholds, reuse_thresholds
from embedscope.analysis.verdicts import (RULE_EXACT, VERDICTS, Calibration, PairFound, VerdictConfig, calibrate,
                                          distinct_nn, near_pairs, parse_split_rule, phash_scan_covers, reuse_calibration,
                                          split_of)
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.drops import list_drops
from embedscope.store.search_cache import SearchIndexCache

log = logging.getLogger(__name__)

Search = Callable[[np.ndarray, int], Neighbors]
"""``search(queries, k) -> Neighbors`` over the embedding rows: exact kNN on a small table, the
hnswlib graph on a large one (:mod:`.arrival_graph`), or one the caller passes."""


@dataclass
class DropResult:
    drop_id: str
    n: int  # arrival paths judged
    counts: dict[str, int] = field(default_factory=dict)  # verdict -> paths
    calibration: dict[str, Any] = field(default_factory=dict)

    def one_line(self) -> str:
        if not self.drop_id:
            return "verdicts: nothing arrived"
        shown = ", ".join(f"{v} {self.counts[v]}" for v in VERDICTS if self.counts.get(v))
        return f"verdicts for drop {self.drop_id}: {shown} ({self.n} paths)"


def check_arrivals(
    db: Database,
    arrivals: Sequence[Arrival],
    *,
    model: str,
    variant: str = S.VARIANT_FULL,
    config: VerdictConfig | None = None,
    quality: QualityConfig | None = None,
    label_from_folder: bool = True,
    kind: str = "ingest",
    sources: Sequence[str] = (),
    drop_id: str | None = None,
    search: Search | None = None,
    index_cache: SearchIndexCache | None = None,
) -> DropResult:
    """Judge ``arrivals`` against everything stored for ``model``/``variant`` and write the
    drop's rows. Labels are the parent folder's name (``label_from_folder``); splits follow
    ``config.split_from``. Nothing arrived: nothing is written (the result's ``drop_id`` is '').

    ``index_cache`` (:func:`~.arrival_graph.verdict_index_cache` by default; a long-running
    process passes the one it keeps): from its ``min_rows`` up, the graph serves and only the
    arrivals' neighbourhood is read (:mod:`.arrival_graph`)."""
    if not arrivals:
        return DropResult("", 0)
    cfg, qcfg = config or VerdictConfig(), quality or QualityConfig()
    started = utc_now()
    drop_id = drop_id or "drop-" + new_run_id()
    graph = None if search is not None else graph_for(db, model, variant, index_cache or verdict_index_cache())
    local = graph is not None and kind != "table"  # the whole table reads every row anyway
    shas = neighbourhood(db, graph, model, variant, arrivals, cfg.k) if local else None
    data = read_arrival_data(db, model, variant, shas)
    if graph is not None:
        search = graph_search(graph, data.sha)
    table_rows = len(graph) if graph is not None else len(data.sha)
    judge = _Judge(data, arrivals, cfg, label_from_folder)
    split_kind, split_name = parse_split_rule(cfg.split_from)
    if split_kind == "column":
        judge.split_by = split_column(db, split_name)
    judge.exact()
    last = None if kind == "table" else _last_calibrated_drop(db, model, variant)
    previous = None
    if last is not None:
        previous = reuse_calibration(last["params"]["calibration"], last["params"].get("config") or {},
                                     last["drop_id"], cfg, table_rows)
    if local and previous is None and len(data.sha):  # the neighbourhood alone cannot calibrate
        previous = calibrate(sampled_nn_distances(graph, cfg), cfg, table_rows)
    calib = judge.near(search, previous)
    thresholds = None
    if local:  # reading a large table's quality columns is the one part of a drop that grows with it
        if last is not None:
            thresholds = reuse_thresholds(last["params"].get("quality_thresholds"), last["params"].get("quality"),
                                          last["drop_id"], qcfg, table_rows, cfg.recalibrate_growth)
        if thresholds is None:
            thresholds = {**quality_thresholds(table_quality_columns(db), qcfg), "table_rows": table_rows}
    thresholds = judge.quality(qcfg, thresholds)
    rows, pairs = judge.finish(drop_id, started)
    counts = {v: len({r["path"] for r in rows if r["verdict"] == v}) for v in VERDICTS}
    counts = {v: n for v, n in counts.items() if n}
    db.upsert(S.LABELS, table_of(judge.label_rows(started), S.LABELS_SCHEMA), update_existing=False)
    db.upsert(S.PAIRS, table_of([{**p, "run_id": drop_id} for p in pairs], S.PAIRS_SCHEMA))
    db.upsert(S.ARRIVALS, table_of(rows, S.ARRIVALS_SCHEMA))
    params = {"config": cfg.as_dict(), "quality": asdict(qcfg),
              "calibration": calib.as_dict() if calib else None, "quality_thresholds": thresholds,
              "label_from_folder": label_from_folder,
              "search": f"hnswlib graph of {table_rows} rows" if graph is not None else "exact",
              "phash_candidates": ("every row read" if phash_scan_covers(len(judge.first_path), len(data.sha))
                                   else f"the {cfg.k + 1} nearest embedding neighbours (a full hash scan is N²)"),
              "novelty": f"analyze run {data.data_model[0]}'s model of the data" if data.data_model else "calibration"}
    db.upsert(S.DROPS, table_of([{
        "drop_id": drop_id, "kind": kind, "model": model, "variant": variant, "sources": json.dumps(list(sources)),
        "started_at": started, "finished_at": utc_now(), "n_images": len(judge.arrivals),
        "counts": json.dumps(counts), "params": json.dumps(params, default=str)}], S.DROPS_SCHEMA))
    return DropResult(drop_id, len(judge.arrivals), counts, calib.as_dict() if calib else {})


def check_table(db: Database, *, model: str, variant: str = S.VARIANT_FULL, **kwargs: Any) -> DropResult:
    """The whole table as one drop (``embedscope verdicts``): every path stored is an arrival,
    judged against the images before it (``ingested_at``, then path)."""
    src = db.read(S.SOURCES, ["sha256", "path"])
    arrivals = set(zip(src.column("sha256").to_pylist(), src.column("path").to_pylist()))
    seen = {sha for sha, _ in arrivals}
    imgs = db.read(S.IMAGES, ["sha256", "path"])  # imported vectors have images rows but no sources
    arrivals |= {(s, p) for s, p in zip(imgs.column("sha256").to_pylist(), imgs.column("path").to_pylist())
                 if s not in seen}
    return check_arrivals(db, sorted(arrivals, key=lambda a: a[1] or ""), model=model, variant=variant, kind="table",
                          **kwargs)


def _last_calibrated_drop(db: Database, model: str, variant: str) -> dict[str, Any] | None:
    """The newest drop of ``model``/``variant`` with a calibration: what a drop may reuse of it
    is decided by :func:`~embedscope.analysis.verdicts.reuse_calibration` and
    :func:`~embedscope.analysis.quality_rules.reuse_thresholds`."""
    for d in list_drops(db):
        if d["model"] == model and d["variant"] == variant and (d["params"] or {}).get("calibration"):
            return d
    return None


def _without_self(nb: Neighbors, rows: np.ndarray) -> np.ndarray:
    """The neighbour distances of ``rows`` with each row's own entry dropped (n × (k-1))."""
    keep = nb.idx != rows[:, None]
    k = nb.idx.shape[1] - 1
    out = np.empty((len(rows), max(k, 0)), np.float64)
    for i in range(len(rows)):
        out[i] = nb.dist[i][keep[i]][:k]
    return out


class _Judge:
    """The verdicts of one drop, built up rule by rule."""

    def __init__(self, data: ArrivalData, arrivals: Sequence[Arrival], cfg: VerdictConfig,
                 label_from_folder: bool) -> None:
        self.data, self.cfg, self.label_from_folder = data, cfg, label_from_folder
        self.arrivals = [(s or "", p) for s, p in arrivals]
        self.arrival_paths = {p for _, p in self.arrivals}
        self.verdicts: dict[str, list[dict[str, Any]]] = {p: [] for _, p in self.arrivals}
        self.pairs: list[dict[str, Any]] = []
        self.first_path: dict[str, str] = {}  # new content -> its first arrival path (the one judged)
        self.split_by: dict[str, str | None] | None = None  # path -> split, for --split-from column:<name>

    # -- facts about paths ------------------------------------------------------------------

    def label(self, path: str) -> str | None:
        return PurePath(path).parent.name or None if self.label_from_folder else None

    def split(self, path: str) -> str | None:
        if self.split_by is not None:
            return self.split_by.get(path)
        return split_of(path, self.cfg.split_from)

    def earlier_paths(self, sha: str, path: str) -> list[str]:
        """The paths of ``sha`` before ``path``: stored before the drop, or earlier in it."""
        return [p for p in self.data.paths.get(sha, []) if p != path and (p not in self.arrival_paths or p < path)]

    def add(self, path: str, verdict: str, reason: str, **extra: Any) -> None:
        self.verdicts[path].append({"verdict": verdict, "reason": reason, **extra})

    # -- rules ----------------------------------------------------------------------------

    def exact(self) -> None:
        """Quarantined files, exact duplicates (same sha256 as an earlier path) with their label
        conflicts and split leaks; the rest is new content for :meth:`near`."""
        for sha, path in self.arrivals:
            if not sha or sha in self.data.quarantined or sha not in self.data.images:
                reason = self.data.quarantined.get(sha) or "cannot read file"
                self.add(path, "quarantined", reason)
                continue
            earlier = self.earlier_paths(sha, path)
            if not earlier:
                self.first_path.setdefault(sha, path)
                continue
            stored = self.data.images[sha].path
            partner = stored if stored in earlier else earlier[0]
            extra = {"partner_sha256": sha, "partner_path": partner, "cosine": 0.0, "hamming": 0}
            self.add(path, "exact_dup", f"identical bytes to {partner}", **extra)
            self.pairs.append({"sha_a": sha, "path_a": path, "sha_b": sha, "path_b": partner, "kind": "exact",
                               "cosine": 0.0, "hamming": 0, "rule": RULE_EXACT})
            self._conflicts(path, sha, [(p, extra) for p in earlier], "identical")

    def _conflicts(self, path: str, sha: str, partners: list[tuple[str, dict[str, Any]]], how: str) -> None:
        """A label conflict and a split leak, each against the first partner path that differs."""
        label, split = self.label(path), self.split(path)
        for other, extra in partners:
            other_label = self.label(other)
            if label and other_label and other_label != label:
                self.add(path, "label_conflict", f"{how} to {other} filed under {other_label!r}, this under {label!r}",
                         **{**extra, "partner_path": other})
                break
        for other, extra in partners:
            other_split = self.split(other)
            if split and other_split and other_split != split:
                self.add(path, "leak", f"{how} to {other} in split {other_split!r}, this in {split!r}",
                         **{**extra, "partner_path": other})
                break

    def near(self, search: Search | None, previous: Calibration | None = None) -> Calibration | None:
        """Near duplicates (with their label conflicts and leaks) and novelty of new content;
        ``previous``: a calibration still valid for this table (else one is drawn now)."""
        d = self.data
        if not len(d.sha):
            return None
        row_of = {s: i for i, s in enumerate(d.sha)}
        queries = np.array([row_of[s] for s in self.first_path if s in row_of], np.int64)
        rank = self._ranks(row_of)
        search = search or KnnIndex(d.X).search
        calib = previous or calibrate(self._nn_distances(search), self.cfg, len(d.sha))
        if not len(queries):
            return calib
        nb = search(d.X[queries], min(self.cfg.k + 1, len(d.sha)))
        dist = _without_self(nb, queries)
        local, nearest_distinct = distinct_nn(dist, self.cfg.distinct_ratio)
        found = near_pairs(queries, rank, d.X, nb.idx, local, d.phashes(), calib, self.cfg)
        by_query: dict[int, list[PairFound]] = {}
        for f in found:
            by_query.setdefault(f.query, []).append(f)
        novel = self._novelty(queries, dist, nearest_distinct, calib)
        for qi, q in enumerate(queries):
            sha = d.sha[q]
            path = self.first_path[sha]
            mine = sorted(by_query.get(int(q), []), key=lambda f: rank[f.ref])
            if mine:
                self._near_verdicts(path, sha, mine)
            elif novel[qi] is not None:
                self.add(path, "novel", novel[qi][0], cosine=novel[qi][1])
        return calib

    def _novelty(self, queries: np.ndarray, dist: np.ndarray, nearest: np.ndarray,
                 calib: Calibration) -> list[tuple[str, float] | None]:
        """Per query, (reason, nearest distance) if it is novel: by the latest analyze run's model
        of the data when there is one (its novelty score from centroid and kNN distances, as
        ``analyze --novelty-only`` scores), else by the table's calibration."""
        if self.data.data_model is not None:
            from embedscope.analysis.novelty import score_with_neighbors

            run_id, dmodel = self.data.data_model
            scores = score_with_neighbors(self.data.X[queries], dist, dmodel)
            return [(f"{scores.novelty_reason[i]}; by analyze run {run_id}'s model of the data", float(nearest[i]))
                    if scores.is_novel[i] else None for i in range(len(queries))]
        if calib.novel is None:
            return [None] * len(queries)
        return [(f"nearest stored image {d:.4f} away (> {calib.novel:.4f}, {self.cfg.novel_z:g} robust SDs above the "
                 f"median {calib.median_nn:.4f}); by the table's calibration (no analyze run)", float(d))
                if d > calib.novel else None for d in nearest]

    def _near_verdicts(self, path: str, sha: str, mine: list[PairFound]) -> None:
        d = self.data
        partners = []
        for f in mine:
            other_sha = d.sha[f.ref]
            other_path = self.first_path.get(other_sha) or d.images[other_sha].path
            extra = {"partner_sha256": other_sha, "partner_path": other_path, "cosine": f.cosine, "hamming": f.hamming}
            partners.append((other_path, extra))
            self.pairs.append({"sha_a": sha, "path_a": path, "sha_b": other_sha, "path_b": other_path, "kind": "near",
                               "cosine": f.cosine, "hamming": f.hamming, "rule": f.rule})
        first, extra = partners[0]
        ham = f", phash {mine[0].hamming} bits" if mine[0].hamming is not None else ""
        self.add(path, "near_dup", f"near duplicate of {first} (cosine distance {mine[0].cosine:.4f} <= "
                 f"{mine[0].bound:.4f}{ham}; rule {mine[0].rule})", **extra)
        every = [(p, {**e, "partner_path": p}) for (o, e) in partners
                 for p in self.earlier_paths(e["partner_sha256"], path) or [o]]
        self._conflicts(path, sha, every, "near duplicate")

    def _ranks(self, row_of: dict[str, int]) -> np.ndarray:
        """Earlier = smaller: images stored before the drop first, then by ``ingested_at``, then
        by path (a whole-table check: the order they were ingested in)."""
        d = self.data
        keys = []
        for s in d.sha:
            info = d.images.get(s)
            when = info.ingested_at if info else 0.0
            keys.append((s in self.first_path, when, self.first_path.get(s) or (info.path if info else "")))
        order = sorted(range(len(keys)), key=keys.__getitem__)
        rank = np.empty(len(keys), np.int64)
        rank[order] = np.arange(len(keys))
        return rank

    def _nn_distances(self, search: Search) -> np.ndarray:
        """Each (sampled) row's cosine distance to its nearest distinct row (:func:`distinct_nn`)."""
        n = len(self.data.sha)
        if n < 2:
            return np.zeros(0)
        rows = np.arange(n)
        if n > self.cfg.calibration_sample:
            rows = np.sort(np.random.default_rng(self.cfg.seed).choice(n, self.cfg.calibration_sample, replace=False))
        nb = search(self.data.X[rows], min(self.cfg.k + 1, n))
        return distinct_nn(_without_self(nb, rows), self.cfg.distinct_ratio)[1]

    def quality(self, qcfg: QualityConfig, thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Low quality, against the table's own distribution of the raw numbers (``thresholds``:
        drawn from the whole table, when the check read only some rows)."""
        shas, cols = quality_columns(self.data)
        t = quality_thresholds(cols, qcfg) if thresholds is None else thresholds
        index = {s: i for i, s in enumerate(shas)}
        for sha, path in self.first_path.items():
            if sha not in index:
                continue
            row = {name: float(col[index[sha]]) for name, col in cols.items()}
            reasons = quality_reasons(row, t)
            if reasons:
                self.add(path, "low_quality", "; ".join(reasons))
        return t

    # -- rows -----------------------------------------------------------------------------

    def finish(self, drop_id: str, now: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The ``arrivals`` rows (``new`` for new content nothing else was said about) and pairs."""
        for sha, path in self.first_path.items():
            if not self.verdicts[path]:
                self.add(path, "new", "no stored image within the near-duplicate threshold")
        rows = []
        for sha, path in self.arrivals:
            for v in self.verdicts[path]:
                rows.append({"drop_id": drop_id, "sha256": sha, "path": path, "label": self.label(path),
                             "split": self.split(path), "created_at": now, **v})
        return rows, self.pairs

    def label_rows(self, now: Any) -> list[dict[str, Any]]:
        out = []
        for sha, path in self.arrivals:
            label = self.label(path)
            if sha and label and sha in self.data.images:
                out.append({"sha256": sha, "label": label, "path": path, "first_seen": now})
        return out
