"""Read-side lookups for the dashboard: map points, thumbnails, image detail, neighbours,
cluster galleries, flags, metrics.

Every function takes a :class:`~embedscope.store.db.Database` and returns plain Python /
numpy / pandas values, so the dashboard never touches LanceDB and its figure builders stay
pure. A sha256 is validated first (64 lowercase hex digits); every value reaches a Lance
filter through :mod:`embedscope.store.filters`. Runs come from :mod:`embedscope.store.runs`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, isin
from embedscope.store.runs import KIND_ZERO_SHOT, Run, latest_run, list_runs, run_or_latest
from embedscope.store.vectors import vectors_to_numpy

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
RANDOM_WEIGHTS = "random"

# colour options of the map besides "cluster:<method>"
COLOR_LABEL = "label"
COLOR_NOVELTY = "novelty"
COLOR_CONTAMINATION = "contamination"
COLOR_DROP = "drop"
COLOR_DATE = "ingest_date"
COLOR_CLUSTER_PREFIX = "cluster:"
COLOR_TAG_PREFIX = "tag:"  # curation: tagged with <name> or not
COLOR_ZERO_SHOT = "zero_shot_tag"  # the latest `analyze --zero-shot` run's best tag
COLOR_LABEL_DISAGREEMENT = "label_disagreement"  # ... and whether it contradicts the label


def is_sha256(value: Any) -> bool:
    """True for a 64-digit lowercase hex string: the key of an ingested file (see is_image_key for any stored id)."""
    return isinstance(value, str) and bool(_SHA_RE.match(value))


def is_image_key(value: Any) -> bool:
    """True for a string that can be a stored image's key: a sha256, or an id imported by
    ``ingest-vectors`` (``vec_000123``). Only the shape is judged (printable, at most 512
    characters, no ``..`` path segment); whether it is stored is a lookup's job."""
    return (isinstance(value, str) and 0 < len(value) <= 512 and value.isprintable()
            and ".." not in value.replace("\\", "/").split("/"))


def _sha_filter(shas: Sequence[str]) -> str:
    """``sha256 IN (...)`` over the well-formed image keys among ``shas`` (none: matches nothing)."""
    return isin("sha256", [s for s in shas if is_image_key(s)])


# -- runs: the dashboard's names for store.runs -----------------------------------------------



def projection_options(db: Database, run_id: str) -> list[tuple[str, int]]:
    """``(method, dims)`` pairs stored for ``run_id``."""
    t = db.read(S.PROJECTIONS, ["method", "dims"], where=eq("run_id", run_id))
    if t.num_rows == 0:
        return []
    pairs = {(m, int(d)) for m, d in zip(t.column("method").to_pylist(), t.column("dims").to_pylist())}
    return sorted(pairs)


def cluster_methods(db: Database, run_id: str) -> list[str]:
    t = db.read(S.CLUSTERS, ["method"], where=eq("run_id", run_id))
    return sorted(set(t.column("method").to_pylist()))


def color_options(db: Database, run: Run | None) -> list[tuple[str, str]]:
    """``(value, label)`` pairs of what the map can be coloured by for ``run``."""
    opts: list[tuple[str, str]] = []
    if run is not None:
        methods = cluster_methods(db, run.run_id)
        if run.primary_cluster in methods:  # primary first
            methods.remove(run.primary_cluster)
            methods.insert(0, run.primary_cluster)
        opts += [(COLOR_CLUSTER_PREFIX + m, f"cluster ({m})") for m in methods]
    opts += [(COLOR_LABEL, "label"), (COLOR_NOVELTY, "novelty score"), (COLOR_CONTAMINATION, "contamination"),
             (COLOR_DROP, "folder"), (COLOR_DATE, "ingest date")]
    if latest_run(db, kind=KIND_ZERO_SHOT) is not None:
        opts += [(COLOR_ZERO_SHOT, "zero-shot tag"), (COLOR_LABEL_DISAGREEMENT, "label vs zero-shot tag")]
    return opts + [(COLOR_TAG_PREFIX + t, f"tag {t}") for t in _tag_names(db)]


def _tag_names(db: Database) -> list[str]:
    if not db.has_table(S.TAGS):  # no curation yet: skip the SQL connection
        return []
    from embedscope.store.tags import current_tags

    return sorted(set(current_tags(db).column("tag").to_pylist()))


# -- map ------------------------------------------------------------------------------------


@dataclass
class MapPoints:
    """What the map sends to the browser: coordinates, one colour value and the point's key."""

    sha256: list[str]
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None
    color: list[Any] = field(default_factory=list)
    continuous: bool = False
    total: int = 0  # points in the projection before downsampling

    @property
    def shown(self) -> int:
        return len(self.sha256)

    @property
    def downsampled(self) -> bool:
        return self.shown < self.total


def map_coordinates(db: Database, run_id: str, method: str, dims: int, *, max_points: int) -> MapPoints:
    """The projection's points sorted by sha256; a fixed-seed random sample of ``max_points``
    when there are more (the order, and so a point's index, is deterministic)."""
    t = db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                where=both(eq("run_id", run_id), eq("method", method), eq("dims", int(dims))))
    if t.num_rows == 0:
        return MapPoints([], np.zeros(0), np.zeros(0), None, total=0)
    t = t.sort_by("sha256")
    total = t.num_rows
    if total > max_points:
        keep = np.sort(np.random.default_rng(0).choice(total, size=max_points, replace=False))
        t = t.take(pa.array(keep))
    z = t.column("z").to_numpy(zero_copy_only=False).astype(np.float32) if dims >= 3 else None
    return MapPoints(t.column("sha256").to_pylist(),
                     t.column("x").to_numpy(zero_copy_only=False).astype(np.float32),
                     t.column("y").to_numpy(zero_copy_only=False).astype(np.float32), z, total=total)


def point_colors(db: Database, run_id: str, shas: Sequence[str], color_by: str) -> tuple[list[Any], bool]:
    """One colour value per sha (``None`` where unknown) and whether the values are continuous."""
    if color_by.startswith(COLOR_CLUSTER_PREFIX):
        method = color_by[len(COLOR_CLUSTER_PREFIX):]
        t = db.read(S.CLUSTERS, ["sha256", "cluster"], where=both(eq("run_id", run_id), eq("method", method)))
        m = dict(zip(t.column("sha256").to_pylist(), t.column("cluster").to_pylist()))
        return [("noise" if m[s] == -1 else f"cluster {m[s]}") if m.get(s) is not None else None for s in shas], False
    if color_by in (COLOR_NOVELTY, COLOR_CONTAMINATION):
        col = "novelty_score" if color_by == COLOR_NOVELTY else "is_contaminated"
        t = db.read(S.FLAGS, ["sha256", col], where=eq("run_id", run_id))
        m = dict(zip(t.column("sha256").to_pylist(), t.column(col).to_pylist()))
        if color_by == COLOR_NOVELTY:
            return [m.get(s) for s in shas], True
        return [None if m.get(s) is None else ("contaminated" if m[s] else "clean") for s in shas], False
    if color_by in (COLOR_ZERO_SHOT, COLOR_LABEL_DISAGREEMENT):
        return _zero_shot_colors(db, shas, color_by), False
    if color_by == COLOR_DROP:
        img = db.read(S.IMAGES, ["sha256", "path"])
        first = dict(zip(img.column("sha256").to_pylist(), img.column("path").to_pylist()))
        src = db.read(S.SOURCES, ["sha256", "path", "drop"])
        drops = {(s, p): d for s, p, d in zip(*(src.column(c).to_pylist() for c in ("sha256", "path", "drop")))}
        return [folder_under_drop(first.get(s), drops.get((s, first.get(s)))) for s in shas], False
    if color_by in (COLOR_LABEL, COLOR_DATE):
        col = "label" if color_by == COLOR_LABEL else "ingested_at"
        t = db.read(S.IMAGES, ["sha256", col])
        m = dict(zip(t.column("sha256").to_pylist(), t.column(col).to_pylist()))
        if color_by == COLOR_DATE:
            return [m[s].strftime("%Y-%m-%d") if m.get(s) else None for s in shas], False
        return [m.get(s) for s in shas], False
    if color_by.startswith(COLOR_TAG_PREFIX):
        from embedscope.store.tags import current_tags

        tag = color_by[len(COLOR_TAG_PREFIX):]
        tagged = {r["sha256"] for r in current_tags(db).to_pylist() if r["tag"] == tag}
        return [tag if s in tagged else "untagged" for s in shas], False
    raise NotFoundError(f"unknown colour {color_by!r}", "pick one from the dropdown")


def folder_under_drop(path: str | None, drop: str | None) -> str | None:
    """The first folder of ``path`` under its drop root (``/data/drop/cats/a.jpg`` under
    ``/data/drop`` → ``cats``); ``.`` for a file at the root; None without a drop (imports)."""
    if not path or not drop:
        return None
    root = drop.rstrip("/\\") + "/"
    if not path.startswith(root):
        return None
    parts = path[len(root):].split("/")
    return parts[0] if len(parts) > 1 else "."


def _zero_shot_colors(db: Database, shas: Sequence[str], color_by: str) -> list[Any]:
    """The latest zero-shot run's tag per sha, or "disagrees"/"agrees or no matching label"."""
    run = latest_run(db, kind=KIND_ZERO_SHOT)
    if run is None:
        return [None] * len(shas)
    col = "tag" if color_by == COLOR_ZERO_SHOT else "label_disagreement"
    t = db.read(S.ZERO_SHOT, ["sha256", col], where=eq("run_id", run.run_id))
    m = dict(zip(t.column("sha256").to_pylist(), t.column(col).to_pylist()))
    if color_by == COLOR_ZERO_SHOT:
        return [m.get(s) for s in shas]
    return [None if m.get(s) is None else ("disagrees with label" if m[s] else "agrees / no matching label")
            for s in shas]


# -- images ---------------------------------------------------------------------------------


def thumbnail(db: Database, sha256: str) -> bytes | None:
    """The stored JPEG thumbnail of ``sha256``, or None."""
    if not is_image_key(sha256):
        return None
    t = db.read(S.IMAGES, ["thumbnail"], where=eq("sha256", sha256))
    return t.column("thumbnail")[0].as_py() if t.num_rows else None


def stored_paths(db: Database, sha256: str) -> list[str]:
    """Every path this content was seen at (first-seen path first). Only paths from the DB."""
    if not is_image_key(sha256):
        return []
    first = db.read(S.IMAGES, ["path"], where=eq("sha256", sha256)).column("path").to_pylist()
    others = db.read(S.SOURCES, ["path"], where=eq("sha256", sha256)).column("path").to_pylist()
    return list(dict.fromkeys(p for p in first + sorted(others) if p))


def mask_png(db: Database, sha256: str) -> bytes | None:
    """The first stored SAM2 mask PNG of ``sha256`` that is not a fallback, or None."""
    if not is_image_key(sha256):
        return None
    t = db.read(S.MASKS, ["mask_png", "fallback"], where=eq("sha256", sha256))
    for png, fallback in zip(t.column("mask_png").to_pylist(), t.column("fallback").to_pylist()):
        if png and not fallback:
            return png
    return None


def image_detail(db: Database, sha256: str, run_id: str | None = None) -> dict[str, Any]:
    """Everything stored about one image: metadata, sources, masks, embeddings, and for the
    analysis run (latest by default) its clusters and flags. Raises NotFoundError."""
    if not is_image_key(sha256):
        raise NotFoundError(f"{str(sha256)[:80]!r} is not an image id", "open an image from the map or a gallery")
    cols = [f.name for f in S.IMAGES_SCHEMA if f.name != "thumbnail"]
    rows = db.read(S.IMAGES, cols, where=eq("sha256", sha256)).to_pylist()
    if not rows:
        raise NotFoundError(f"no image {sha256[:40]!r} in the database", "it may have been ingested elsewhere")
    where = eq("sha256", sha256)
    sources = db.read(S.SOURCES, where=where).sort_by("path").to_pylist()
    masks = [{k: v for k, v in m.items() if k != "mask_png"} for m in db.read(S.MASKS, where=where).to_pylist()]
    embeddings = []
    for name in db.embedding_table_names():
        embeddings += db.read(name, ["model", "variant", "dim", "weights", "created_at"], where=where).to_pylist()
    run = run_or_latest(db, run_id)
    clusters, flags = [], None
    if run is not None:
        rw = both(eq("run_id", run.run_id), where)
        clusters = db.read(S.CLUSTERS, ["method", "cluster", "probability"], where=rw).to_pylist()
        f = db.read(S.FLAGS, where=rw).to_pylist()
        flags = f[0] if f else None
    return {"image": rows[0], "sources": sources, "masks": masks, "embeddings": embeddings,
            "run": run, "clusters": clusters, "flags": flags}


def neighbours(db: Database, sha256: str, *, k: int = 8, model: str | None = None,
               variant: str = S.VARIANT_FULL, cache: Any = None) -> list[dict[str, Any]]:
    """The ``k`` nearest other images (cosine), each ``{sha256, path, label, similarity}``;
    ``cache``: the serving process's :class:`~embedscope.store.search_cache.SearchIndexCache`."""
    from embedscope.store.search import similar

    t = similar(db, sha256, k=k + 1, model=model, variant=variant, cache=cache)
    rows = [r for r in t.to_pylist() if r["sha256"] != sha256][:k]
    return [{"sha256": r["sha256"], "path": r["path"], "label": r["label"],
             "similarity": 1.0 - float(r["distance"])} for r in rows]


def image_rows(db: Database, shas: Sequence[str]) -> list[dict[str, Any]]:
    """``{sha256, path, label}`` for ``shas``, in the given order (unknown ones skipped)."""
    if not shas:
        return []
    t = db.read(S.IMAGES, ["sha256", "path", "label"], where=_sha_filter(list(shas)))
    by = {r["sha256"]: r for r in t.to_pylist()}
    return [by[s] for s in shas if s in by]


# -- weights --------------------------------------------------------------------------------


def weights_in_use(db: Database) -> dict[str, list[str]]:
    """``{"<model>/<variant>": [weights, ...]}`` over all stored embeddings."""
    out: dict[str, set[str]] = {}
    for name in db.embedding_table_names():
        t = db.read(name, ["model", "variant", "weights"])
        if t.num_rows == 0:
            continue
        g = t.group_by(["model", "variant", "weights"]).aggregate([])
        for r in g.to_pylist():
            out.setdefault(f"{r['model']}/{r['variant']}", set()).add(r["weights"] or "?")
    return {k: sorted(v) for k, v in sorted(out.items())}


def random_weight_sets(db: Database) -> list[str]:
    """The ``model/variant`` sets whose embeddings (some or all) came from random weights."""
    return [k for k, v in weights_in_use(db).items() if RANDOM_WEIGHTS in v]


# -- analysis tables ------------------------------------------------------------------------


def flags_frame(db: Database, run_id: str) -> "Any":
    """The run's flags joined with path and label, as a pandas DataFrame."""
    f = db.read(S.FLAGS, where=eq("run_id", run_id)).to_pandas()
    img = db.read(S.IMAGES, ["sha256", "path", "label"]).to_pandas()
    return f.merge(img, on="sha256", how="left")


def metrics_frame(db: Database) -> "Any":
    """All metrics with their run's model, variant and creation time (pandas DataFrame)."""
    import pandas as pd

    m = db.read(S.METRICS).to_pandas()
    r = pd.DataFrame([{"run_id": x.run_id, "model": x.model, "variant": x.variant, "created_at": x.created_at}
                      for x in list_runs(db, kind=None)], columns=["run_id", "model", "variant", "created_at"])
    return m.merge(r, on="run_id", how="left")


@dataclass
class ClusterSummary:
    cluster: int
    size: int
    representatives: list[str]  # nearest the centroid first
    atypical: list[str]  # farthest from the centroid first
    majority_label: str | None
    purity: float | None  # fraction of members with the majority label (None without labels)


def cluster_summaries(db: Database, run: Run, method: str, *, n_rep: int = 6,
                      n_atypical: int = 3, only: Any = None) -> list[ClusterSummary]:
    """Per cluster: size, label purity, members nearest to and farthest from the centroid
    (cosine, in the run's embedding space). Largest cluster first; noise (-1) last. ``only``
    (a set of sha256): the members shown are chosen among these, clusters without one left out."""
    c = db.read(S.CLUSTERS, ["sha256", "cluster"], where=both(eq("run_id", run.run_id), eq("method", method)))
    if c.num_rows == 0:
        return []
    shas = c.column("sha256").to_pylist()
    cl = np.asarray(c.column("cluster").to_pylist(), np.int64)
    labels = _labels_all(db)
    vec = embedding_matrix(db, shas, model=run.model, variant=run.variant or S.VARIANT_FULL)
    out = []
    for k in np.unique(cl):
        idx = np.flatnonzero(cl == k)
        members = [shas[i] for i in idx]
        if vec is not None:
            v = vec[idx]
            centre = v.mean(axis=0)
            centre /= np.linalg.norm(centre) or 1.0
            order = np.argsort(-(v @ centre), kind="stable")
        else:
            order = np.arange(len(idx))
        ranked = [members[i] for i in order]
        if only is not None:
            ranked = [m for m in ranked if m in only]
            if not ranked:
                continue
        labs = [labels.get(s) for s in members if labels.get(s)]
        if labs:
            values, counts = np.unique(labs, return_counts=True)
            majority, purity = str(values[counts.argmax()]), float(counts.max() / len(members))
        else:
            majority, purity = None, None
        out.append(ClusterSummary(int(k), len(members), ranked[:n_rep],
                                  ranked[::-1][:min(n_atypical, max(0, len(ranked) - n_rep))], majority, purity))
    return sorted(out, key=lambda s: (s.cluster == -1, -s.size, s.cluster))


def _labels_all(db: Database) -> dict[str, str | None]:
    t = db.read(S.IMAGES, ["sha256", "label"])
    return dict(zip(t.column("sha256").to_pylist(), t.column("label").to_pylist()))


# -- embeddings -----------------------------------------------------------------------------


def default_model(db: Database) -> str | None:
    models = db.embedding_models()
    return models[0] if models else None


def embedding_matrix(db: Database, shas: Sequence[str] | None, *, model: str | None = None,
                     variant: str = S.VARIANT_FULL) -> np.ndarray | None:
    """Vectors of ``shas`` (rows in that order; all vectors when ``shas`` is None), or None if
    the model has no embeddings. Missing shas raise NotFoundError."""
    model = model or default_model(db)
    if model is None:
        return None
    shas_list, vec = embeddings_table(db, shas, model=model, variant=variant)
    if shas is None:
        return vec
    pos = {s: i for i, s in enumerate(shas_list)}
    missing = [s for s in shas if s not in pos]
    if missing:
        raise NotFoundError(f"no {model}/{variant} embedding for {len(missing)} image(s), e.g. {missing[0][:12]}…")
    return vec[[pos[s] for s in shas]]


def embeddings_table(db: Database, shas: Sequence[str] | None, *, model: str,
                     variant: str = S.VARIANT_FULL) -> tuple[list[str], np.ndarray]:
    """``(shas, matrix)`` of stored vectors, restricted to ``shas`` when given."""
    where = both(eq("variant", variant), _sha_filter(list(shas)) if shas is not None else None)
    t = db.read(S.embeddings_table_name(model), ["sha256", "vector"], where=where)
    out = t.column("sha256").to_pylist()
    if not out:
        return [], np.zeros((0, 0), np.float32)
    return out, vectors_to_numpy(t.column("vector"))
