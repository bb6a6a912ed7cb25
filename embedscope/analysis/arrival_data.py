"""Reading what an arrival check needs: which paths arrived, every path of every image, the
images' columns, quarantine reasons, quality numbers and the embeddings of one model/variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from embedscope.analysis.neighbors import normalize
from embedscope.analysis.reading import embeddings_filter, read_embeddings
from embedscope.analysis.verdicts import NO_PHASH
from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, isin
from embedscope.store.vectors import vectors_to_numpy

Arrival = tuple[str, str]  # (sha256, path); sha256 is '' for a file that could not be read


def source_pairs(db: Database) -> set[Arrival]:
    """Every (sha256, path) the ``sources`` table holds: an ingest's "before" picture."""
    t = db.read(S.SOURCES, ["sha256", "path"])
    return set(zip(t.column("sha256").to_pylist(), t.column("path").to_pylist()))


def arrived_since(db: Database, before: set[Arrival]) -> list[Arrival]:
    """The (sha256, path) rows ``sources`` holds now and did not in ``before``: a path never
    seen, or a path whose content changed."""
    return sorted(source_pairs(db) - before, key=lambda a: a[1])


def arrived_at(db: Database, paths: Iterable[str]) -> list[Arrival]:
    """The current content of each of ``paths`` (the newest ``sources`` row of each path)."""
    paths = list(paths)
    if not paths:
        return []
    t = db.read(S.SOURCES, ["sha256", "path", "seen_at"], where=isin("path", paths))
    newest: dict[str, tuple[Any, str]] = {}
    for sha, path, seen in zip(t.column("sha256").to_pylist(), t.column("path").to_pylist(),
                               t.column("seen_at").to_pylist()):
        if path not in newest or (seen is not None and (newest[path][0] is None or seen > newest[path][0])):
            newest[path] = (seen, sha)
    return sorted(((sha, path) for path, (_, sha) in newest.items()), key=lambda a: a[1])


@dataclass
class ImageInfo:
    path: str
    label: str | None
    phash: int | None
    width: int
    height: int
    ingested_at: float  # seconds since the epoch (0 when unknown)


@dataclass
class ArrivalData:
    """Everything stored that a check compares the arrivals with."""

    paths: dict[str, list[str]]  # sha256 -> every path seen with this content, sorted
    images: dict[str, ImageInfo]
    quarantined: dict[str, str]  # sha256 -> reason
    quality: dict[str, dict[str, float]]
    sha: list[str] = field(default_factory=list)  # embedding rows
    X: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # L2-normalised
    data_model: tuple[str, Any] | None = None  # (analyze run id, its DataModel): novelty from it

    def phashes(self) -> np.ndarray:
        """The phash of each embedding row (:data:`NO_PHASH` where unknown)."""
        out = [self.images[s].phash if s in self.images and self.images[s].phash is not None else NO_PHASH
               for s in self.sha]
        return np.array(out, np.int64)


def read_arrival_data(db: Database, model: str, variant: str, shas: Sequence[str] | None = None) -> ArrivalData:
    """One read of each table the check compares with: every row, or (``shas``) only the rows of
    those contents, as the graph-served check reads just the arrivals and their neighbours."""
    only = None if shas is None else isin("sha256", shas)
    src = db.read(S.SOURCES, ["sha256", "path"], where=only)
    paths: dict[str, list[str]] = {}
    for sha, path in zip(src.column("sha256").to_pylist(), src.column("path").to_pylist()):
        paths.setdefault(sha or "", []).append(path)
    for v in paths.values():
        v.sort()
    imgs = db.read(S.IMAGES, ["sha256", "path", "label", "phash", "width", "height", "ingested_at"], where=only)
    when = imgs.column("ingested_at").cast(pa.int64()).fill_null(0).to_numpy() / 1e6  # column-wise: no datetimes
    images = {sha: ImageInfo(path, label, ph, w or 0, h or 0, t) for sha, path, label, ph, w, h, t in zip(
        *(imgs.column(c).to_pylist() for c in ("sha256", "path", "label", "phash", "width", "height")), when.tolist())}
    q = db.read(S.QUARANTINE, ["sha256", "reason"], where=only)
    quarantined = dict(zip(q.column("sha256").to_pylist(), q.column("reason").to_pylist()))
    qual = db.read(S.QUALITY, where=only)
    quality = {r.pop("sha256"): r for r in qual.to_pylist()}
    data = ArrivalData(paths, images, quarantined, quality)
    if db.has_table(S.embeddings_table_name(model)):
        if shas is None:
            emb = read_embeddings(db, model, variant)
            data.sha, data.X = emb.sha, emb.X
        else:
            data.sha, data.X = embeddings_of(db, model, variant, shas)
        data.data_model = latest_data_model(db, model, variant)
    return data


def embeddings_of(db: Database, model: str, variant: str, shas: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The (sha-sorted) rows of ``shas`` of ``model``/``variant``, L2-normalised."""
    tbl = db.dataset(S.embeddings_table_name(model)).to_table(
        columns=["sha256", "vector"], filter=both(embeddings_filter(model, variant), isin("sha256", shas)))
    sha = tbl.column("sha256").to_pylist()
    order = np.argsort(np.array(sha, dtype=object), kind="stable")
    return [sha[i] for i in order], normalize(vectors_to_numpy(tbl.column("vector"))[order])


def table_quality_columns(db: Database) -> dict[str, np.ndarray]:
    """:func:`quality_columns`'s columns for the whole table, read column-wise (the
    graph-served check's thresholds: no per-row Python objects)."""
    import pyarrow.compute as pc

    qual = db.read(S.QUALITY, ["sha256", "blur", "brightness", "entropy", "colorfulness"])
    imgs = db.read(S.IMAGES, ["sha256", "width", "height"])
    at = pc.index_in(qual.column("sha256"), value_set=imgs.column("sha256").combine_chunks())
    keep = pc.is_valid(at)
    qual, at = qual.filter(keep), at.filter(keep)
    cols = {name: qual.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
            for name in ("blur", "brightness", "entropy", "colorfulness")}
    for name in ("width", "height"):
        cols[name] = imgs.column(name).take(at).cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False)
    return cols


def quality_columns(data: ArrivalData) -> tuple[list[str], dict[str, np.ndarray]]:
    """The measured images and their quality numbers plus width/height, as column arrays."""
    shas = [s for s in data.quality if s in data.images]
    cols: dict[str, np.ndarray] = {}
    for name in ("blur", "brightness", "entropy", "colorfulness"):
        cols[name] = np.array([_num(data.quality[s].get(name)) for s in shas], np.float64)
    cols["width"] = np.array([data.images[s].width for s in shas], np.float64)
    cols["height"] = np.array([data.images[s].height for s in shas], np.float64)
    return shas, cols


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def table_of(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema)


def split_column(db: Database, name: str) -> dict[str, str | None]:
    """``--split-from column:<name>``: each stored path's split, from a ``sources`` column (per
    path, e.g. ``drop``: the drop root it was found under) or an ``images`` column (per content,
    e.g. ``label`` of imported vectors), as text."""
    if name in S.SOURCES_SCHEMA.names:
        t = db.read(S.SOURCES, ["path", name])
        return {p: None if v is None else str(v) for p, v in zip(t.column("path").to_pylist(), t.column(name).to_pylist())}
    if name not in S.IMAGES_SCHEMA.names or name in ("thumbnail", "sha256"):
        known = sorted({*S.SOURCES_SCHEMA.names, *S.IMAGES_SCHEMA.names} - {"thumbnail", "sha256", "path"})
        raise ConfigError(f"--split-from column:{name}: no such column", f"columns: {', '.join(known)}")
    imgs = db.read(S.IMAGES, ["sha256", "path", name])
    by_sha = {s: None if v is None else str(v) for s, v in zip(imgs.column("sha256").to_pylist(),
                                                               imgs.column(name).to_pylist())}
    out = {p: by_sha[s] for s, p in zip(imgs.column("sha256").to_pylist(), imgs.column("path").to_pylist())}
    src = db.read(S.SOURCES, ["sha256", "path"])
    out.update({p: by_sha.get(s) for s, p in zip(src.column("sha256").to_pylist(), src.column("path").to_pylist())})
    return out


def latest_data_model(db: Database, model: str, variant: str) -> tuple[str, Any] | None:
    """The latest analyze run of ``model``/``variant`` and its stored model of the data
    (:class:`~embedscope.analysis.novelty.DataModel`), or None when there is none."""
    from embedscope.analysis.novelty import DataModel
    from embedscope.store.runs import KIND_ANALYZE, latest_run

    run = latest_run(db, kind=KIND_ANALYZE, model=model, variant=variant)
    if run is None:
        return None
    blob = db.read(S.RUN_MODELS, ["blob"], where=eq("run_id", run.run_id)).column("blob").to_pylist()
    return (run.run_id, DataModel.from_bytes(blob[0])) if blob and blob[0] else None
