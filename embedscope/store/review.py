"""The review queues: exact duplicates, near-duplicate pairs, label conflicts, novel and
contaminated images — each one documented SQL query over the tables (docs/curation.md), so the
dashboard's counts are SQL's counts — and what a pair decision writes as tags.

A near-duplicate pair is ``(sha_a, sha_b)`` from the ``pairs`` table (kind ``near``): ``b`` the
earlier image (shown left), ``a`` the later arrival that duplicates it (shown right). Every
later image has one earlier partner per check, so a pair's decision lives in tags on its two
images (:data:`PAIR_DECISIONS`); a pair leaves the queue when :data:`PAIR_DECIDED` holds.

>>> page = near_pairs(db, sort="cosine", offset=0, limit=20)  # doctest: +SKIP
>>> page.total, page.rows[0]["cosine"]  # doctest: +SKIP
(12, 0.0004)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import isin, literal
from embedscope.store.runs import latest_run, overlay_runs
from embedscope.store.tags import EXCLUDE, KEEP, RELABEL_PREFIX, REVIEWED, check_tag

NOT_DUP = "not_dup"  # on a pair's later image: "not a duplicate of its partner"

# Current tags per image, as a list (the same as images_latest.tags).
_TAGS = "(SELECT sha256, list(tag ORDER BY tag) AS tags FROM image_tags GROUP BY sha256)"

# Every content stored under more than one path (byte-identical copies).
EXACT_DUPLICATES_SQL = f"""
    WITH s AS (SELECT sha256, list(DISTINCT path ORDER BY path) AS paths, count(DISTINCT path) AS n_paths
               FROM sources GROUP BY sha256 HAVING count(DISTINCT path) > 1),
         l AS (SELECT sha256, list(label ORDER BY label) AS labels FROM labels GROUP BY sha256)
    SELECT s.sha256, i.label, COALESCE(l.labels, [i.label]) AS labels, s.paths, s.n_paths,
           COALESCE(t.tags, CAST([] AS VARCHAR[])) AS tags
    FROM s JOIN images i USING (sha256) LEFT JOIN l USING (sha256) LEFT JOIN {_TAGS} t USING (sha256)"""

# A pair is decided once one side is excluded, the later side is marked not_dup, or both are kept.
PAIR_DECIDED = (f"(list_contains(tags_a, {literal(EXCLUDE)}) OR list_contains(tags_b, {literal(EXCLUDE)})"
                f" OR list_contains(tags_a, {literal(NOT_DUP)})"
                f" OR (list_contains(tags_a, {literal(KEEP)}) AND list_contains(tags_b, {literal(KEEP)})))")

# Every near-duplicate pair once (the closest sighting when several checks found it).
NEAR_PAIRS_SQL = f"""
    WITH p AS (SELECT sha_a, sha_b, min(cosine) AS cosine, arg_min(hamming, cosine) AS hamming,
                      arg_min(path_a, cosine) AS path_a, arg_min(path_b, cosine) AS path_b,
                      arg_min(rule, cosine) AS rule, arg_min(run_id, cosine) AS run_id
               FROM pairs WHERE kind = 'near' AND sha_a <> sha_b GROUP BY sha_a, sha_b),
         q AS (SELECT p.*, ia.label AS label_a, ib.label AS label_b,
                      ia.width AS width_a, ia.height AS height_a, ia.size_bytes AS bytes_a,
                      ib.width AS width_b, ib.height AS height_b, ib.size_bytes AS bytes_b,
                      COALESCE(ta.tags, CAST([] AS VARCHAR[])) AS tags_a,
                      COALESCE(tb.tags, CAST([] AS VARCHAR[])) AS tags_b
               FROM p JOIN images ia ON ia.sha256 = p.sha_a JOIN images ib ON ib.sha256 = p.sha_b
               LEFT JOIN {_TAGS} ta ON ta.sha256 = p.sha_a LEFT JOIN {_TAGS} tb ON tb.sha256 = p.sha_b)
    SELECT *, label_a IS DISTINCT FROM label_b AS labels_differ, {PAIR_DECIDED} AS decided FROM q"""

# Content seen under more than one label (the `label_conflicts` view of store/sql.py).
LABEL_CONFLICTS_SQL = f"""
    SELECT c.sha256, i.label, c.labels, c.paths, c.n_labels, COALESCE(t.tags, CAST([] AS VARCHAR[])) AS tags
    FROM label_conflicts c JOIN images i USING (sha256) LEFT JOIN {_TAGS} t USING (sha256)"""

# Novel / contaminated images of the latest analyze run (the images_latest flags).
_FLAGGED_SQL = """
    SELECT sha256, path, label, novelty_score, tags
    FROM images_latest WHERE {column}"""
FLAG_COLUMNS = {"novel": "is_novel", "contaminated": "is_contaminated"}

QUEUES = ("pairs", "exact", "conflicts", "novel", "contaminated")
# per queue: sort name -> ORDER BY
SORTS: dict[str, dict[str, str]] = {
    "pairs": {"closest": "cosine, hamming, sha_a", "farthest": "cosine DESC, sha_a",
              "hamming": "hamming, cosine, sha_a", "labels differ": "labels_differ DESC, cosine, sha_a"},
    "exact": {"most paths": "n_paths DESC, sha256", "label": "label, sha256"},
    "conflicts": {"most labels": "n_labels DESC, sha256", "label": "label, sha256"},
    "novel": {"score": "novelty_score DESC NULLS LAST, sha256", "label": "label, sha256"},
    "contaminated": {"score": "novelty_score DESC NULLS LAST, sha256", "label": "label, sha256"},
}


@dataclass
class QueuePage:
    """One page of a queue: its rows, the queue's total (the SQL count), how many are left to
    review, and every queue's size (:func:`queue_counts`, from the same snapshot)."""

    queue: str
    rows: list[dict[str, Any]]
    total: int
    open: int
    offset: int
    limit: int
    sort: str
    counts: dict[str, int] = field(default_factory=dict)


def queue_sql(queue: str) -> str:
    """The documented SQL of a queue (without ORDER BY / LIMIT)."""
    if queue == "pairs":
        return NEAR_PAIRS_SQL
    if queue == "exact":
        return EXACT_DUPLICATES_SQL
    if queue == "conflicts":
        return LABEL_CONFLICTS_SQL
    if queue in FLAG_COLUMNS:
        return _FLAGGED_SQL.format(column=FLAG_COLUMNS[queue])
    raise ConfigError(f"unknown review queue {queue!r}", f"one of: {', '.join(QUEUES)}")


@contextmanager
def _connection(db: Database) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """One read-only SQL connection for several queries (each connection registers every table)."""
    from embedscope.store.sql import connect, execute

    con = connect(db)
    try:
        yield lambda sql: execute(con, sql, limit=None).to_pylist()
    finally:
        con.close()


def queue_page(db: Database, queue: str, *, sort: str | None = None, offset: int = 0, limit: int = 20,
               include_decided: bool = False) -> QueuePage:
    """One sorted page of ``queue``; near-duplicate pairs already decided are left out unless
    ``include_decided`` (``total`` counts them all, ``open`` the undecided ones)."""
    sorts = SORTS[queue] if queue in SORTS else {}
    order = sorts.get(sort or "", next(iter(sorts.values()), "sha256"))
    base = queue_sql(queue)
    decided = "decided" if queue == "pairs" else "FALSE"
    where = "" if include_decided or queue != "pairs" else " WHERE NOT decided"
    with _connection(db) as query:
        sizes = query(f"SELECT count(*) AS total, count(*) FILTER (WHERE {decided}) AS decided FROM ({base})")[0]
        rows = query(f"SELECT * FROM ({base}){where} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}")
        counts = query(_COUNTS_SQL)[0]
    _mark_thumbnails(db, rows, ("a", "b") if queue == "pairs" else ("",))
    if queue in FLAG_COLUMNS:
        reasons = flag_reasons(db, [r["sha256"] for r in rows])
        for r in rows:
            r["reason"] = reasons.get(r["sha256"], {}).get(
                "novelty_reason" if queue == "novel" else "contamination_reason")
    total = int(sizes["total"])
    return QueuePage(queue, rows, total, total - int(sizes["decided"]), int(offset), int(limit),
                     sort if sort in sorts else next(iter(sorts), ""), {q: int(n) for q, n in counts.items()})


def _mark_thumbnails(db: Database, rows: list[dict[str, Any]], ends: tuple[str, ...]) -> None:
    """Set ``has_thumb`` (pairs: ``has_thumb_a`` / ``_b``) on a page's rows: read for those rows
    only, since scanning every thumbnail in SQL would read the largest column of ``images``."""
    key = {e: (f"sha_{e}", f"has_thumb_{e}") if e else ("sha256", "has_thumb") for e in ends}
    shas = list({r[key[e][0]] for r in rows for e in ends})
    thumbs = db.read(S.IMAGES, ["sha256", "thumbnail"], where=isin("sha256", shas)).to_pylist() if shas else []
    have = {t["sha256"] for t in thumbs if t["thumbnail"]}
    for r in rows:
        for sha_key, flag_key in key.values():
            r[flag_key] = r[sha_key] in have


# every queue's size in one statement (near-duplicate pairs: the undecided ones)
_COUNTS_SQL = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM ({queue_sql(q)}){' WHERE NOT decided' if q == 'pairs' else ''}) AS {q}" for q in QUEUES)


def queue_counts(db: Database) -> dict[str, int]:
    """Each queue's size (near-duplicate pairs: the undecided ones)."""
    with _connection(db) as query:
        return {q: int(n) for q, n in query(_COUNTS_SQL)[0].items()}


def label_conflict_count(db: Database) -> int:
    """How many images (contents) were seen under more than one label."""
    from embedscope.store.sql import run_sql

    if not db.has_table(S.LABELS):
        return 0
    return int(run_sql(db, "SELECT count(*) AS n FROM label_conflicts").column("n")[0].as_py())


def flag_reasons(db: Database, shas: list[str]) -> dict[str, dict[str, Any]]:
    """Each image's ``flags`` row of the latest analyze run, overlaid with its novelty-only runs
    (the same precedence as ``images_latest``: a later run wins)."""
    run = latest_run(db)
    if run is None or not shas:
        return {}
    rank = {r.run_id: i for i, r in enumerate(overlay_runs(db, run))}
    wanted = set(shas)
    out: dict[str, dict[str, Any]] = {}
    rows = db.read(S.FLAGS, where=isin("run_id", list(rank))).to_pylist()
    for r in sorted(rows, key=lambda r: rank[r["run_id"]]):
        if r["sha256"] in wanted:
            out[r["sha256"]] = r
    return out


# -- decisions -----------------------------------------------------------------------------------

PAIR_ACTIONS = ("keep_left", "keep_right", "keep_both", "not_dup")


@dataclass(frozen=True)
class TagWrite:
    """One bulk tag write: these images get this tag with this note."""

    shas: tuple[str, ...]
    tag: str
    note: str | None = None


def pair_decision(action: str, left: str, right: str, *, cosine: float | None = None,
                  hamming: int | None = None) -> list[TagWrite]:
    """The tags a pair decision writes (``left`` = the earlier image ``sha_b``, ``right`` = the
    later ``sha_a``):

    - ``keep_left``: right ``exclude`` ("near-duplicate of <left>, cosine d, phash h"), left ``keep``;
    - ``keep_right``: left ``exclude`` ("near-duplicate of <right> ..."), right ``keep``;
    - ``keep_both``: both ``keep`` (an export's ``near_dup`` flag no longer drops either);
    - ``not_dup``: right ``not_dup`` ("not a duplicate of <left>"): the pair is dismissed;
    and always both ``reviewed``."""
    if action not in PAIR_ACTIONS:
        raise ConfigError(f"unknown pair decision {action!r}", f"one of: {', '.join(PAIR_ACTIONS)}")
    how = "".join([f", cosine distance {cosine:.4g}" if cosine is not None else "",
                   f", phash {hamming} bits" if hamming is not None else ""])
    writes = {
        "keep_left": [TagWrite((right,), EXCLUDE, f"near-duplicate of {left}{how}"), TagWrite((left,), KEEP)],
        "keep_right": [TagWrite((left,), EXCLUDE, f"near-duplicate of {right}{how}"), TagWrite((right,), KEEP)],
        "keep_both": [TagWrite((left, right), KEEP, "near-duplicates, both kept")],
        "not_dup": [TagWrite((right,), NOT_DUP, f"not a duplicate of {left}")],
    }[action]
    return [*writes, TagWrite((left, right), REVIEWED, f"pair decision: {action.replace('_', ' ')}")]


def relabel_decision(sha: str, label: str | None) -> list[TagWrite]:
    """A label conflict resolved: ``relabel:<label>`` (the export's label) and ``reviewed``."""
    tag = check_tag(RELABEL_PREFIX + (label or "").strip())
    return [TagWrite((sha,), tag, "label conflict resolved"), TagWrite((sha,), REVIEWED, f"label conflict: {tag}")]


def merge_writes(writes: list[TagWrite]) -> list[TagWrite]:
    """The same writes with one per (tag, note): many decisions in few appends to the tag log."""
    merged: dict[tuple[str, str | None], list[str]] = {}
    for w in writes:
        merged.setdefault((w.tag, w.note), []).extend(w.shas)
    return [TagWrite(tuple(dict.fromkeys(shas)), tag, note) for (tag, note), shas in merged.items()]
