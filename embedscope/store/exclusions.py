"""Why a flag leaves an image out of the curated export: one reason row per (image, flag), read
from the analyze run's ``flags`` and the arrival checks' ``pairs`` / ``arrivals`` tables.

- ``novel`` / ``contaminated``: the latest analyze run's flags (score: ``novelty_score``;
  detail: its reason);
- ``exact_dup``: a perceptual-hash group of that run (``phash_group``) and not its first-ingested
  member (partner: that member);
- ``near_dup``: the later image (``sha_a``) of a ``pairs`` row of kind ``near``; partner: the
  earlier one, with its path, cosine distance and phash Hamming distance in the detail. A
  ``not_dup`` tag on the later image dismisses its pairs, and a pair whose earlier image is
  itself excluded by a tag keeps the later one (someone chose it). Databases without ``pairs``
  (ingested with ``--no-verdicts``) fall back to the run's embedding groups (``dup_group``);
- ``label_conflict``, ``leak``, ``low_quality``: the image got that arrival verdict (detail:
  its reason; partner and distances where it has them); a ``relabel:`` tag resolves a label
  conflict.

A ``keep`` tag overrides every flag (applied by the caller, :mod:`embedscope.store.export`).
"""

from __future__ import annotations

from typing import Any, Sequence

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import isin
from embedscope.store.review import NOT_DUP, flag_reasons
from embedscope.store.tags import RELABEL_PREFIX

ARRIVAL_FLAGS = ("label_conflict", "leak", "low_quality")
FLAGS = ("exact_dup", "near_dup", "novel", "contaminated", *ARRIVAL_FLAGS)
_GROUP_OF = {"exact_dup": "phash_group", "near_dup": "dup_group"}


class FlagReasons:
    """The reasons of the wanted ``flags`` for the images ``images`` (dicts with ``sha256``,
    ``ingested_at``, ``tags``), read once; :meth:`of` gives one image's."""

    def __init__(self, db: Database, images: list[dict[str, Any]], flags: Sequence[str],
                 exclude_tags: Sequence[str]) -> None:
        self.wanted = tuple(flags)
        shas = [img["sha256"] for img in images]
        tags = {img["sha256"]: set(img["tags"] or []) for img in images}
        self.flags = flag_reasons(db, shas) if {"novel", "contaminated", *_GROUP_OF} & set(flags) else {}
        self.partners = _group_partners(images, self.flags, [f for f in flags if f != "near_dup"])
        self.pairs: dict[str, dict[str, Any]] = {}
        if "near_dup" in flags:
            pairs = _near_pairs(db, shas)
            if pairs is None:  # no arrival checks: analyze's embedding groups
                self.partners = _group_partners(images, self.flags, flags)
            else:
                excluded = {s for s, t in tags.items() if t & set(exclude_tags)}
                self.pairs = {a: p for a, p in pairs.items()
                              if NOT_DUP not in tags.get(a, ()) and p["sha_b"] not in excluded}
        self.arrivals = _arrival_verdicts(db, shas, [f for f in flags if f in ARRIVAL_FLAGS])
        self.relabelled = {s for s, t in tags.items() if any(x.startswith(RELABEL_PREFIX) for x in t)}

    def of(self, sha: str) -> list[dict[str, Any]]:
        row, wanted = self.flags.get(sha, {}), self.wanted
        reasons = []
        if "novel" in wanted and row.get("is_novel"):
            reasons.append({"reason": "flag:novel", "detail": row.get("novelty_reason"), "score": row.get("novelty_score")})
        if "contaminated" in wanted and row.get("is_contaminated"):
            reasons.append({"reason": "flag:contaminated", "detail": row.get("contamination_reason")})
        for flag, column in _GROUP_OF.items():
            partner = self.partners.get(sha, {}).get(flag)
            if partner:
                reasons.append({"reason": f"flag:{flag}", "detail": f"duplicates {partner} ({column})",
                                "group": row.get(column), "partner": partner})
        pair = self.pairs.get(sha)
        if pair:
            reasons.append({"reason": "flag:near_dup", "partner": pair["sha_b"], "distance": pair["cosine"],
                            "hamming": pair["hamming"],
                            "detail": (f"near duplicate of {pair['path_b'] or pair['sha_b']} (cosine distance "
                                       f"{pair['cosine']:.4g}, phash {pair['hamming']} bits; rule {pair['rule']})")})
        for verdict, a in self.arrivals.get(sha, {}).items():
            if verdict == "label_conflict" and sha in self.relabelled:
                continue
            partner = a["partner_sha256"] if a["partner_sha256"] != sha else None  # same bytes: no other image
            reasons.append({"reason": f"flag:{verdict}", "detail": a["reason"], "partner": partner,
                            "distance": a["cosine"], "hamming": a["hamming"]})
        return reasons


def _near_pairs(db: Database, shas: list[str]) -> dict[str, dict[str, Any]] | None:
    """Per later image, its closest earlier near-duplicate (``pairs``); None when no arrival
    check ever ran (no ``drops``)."""
    if not db.has_table(S.PAIRS) and not db.has_table(S.DROPS):
        return None
    out: dict[str, dict[str, Any]] = {}
    if not db.has_table(S.PAIRS):
        return out
    cols = ["sha_a", "sha_b", "path_b", "kind", "cosine", "hamming", "rule"]
    for start in range(0, len(shas), 5000):
        rows = db.read(S.PAIRS, cols, where=isin("sha_a", shas[start:start + 5000])).to_pylist()
        for r in sorted(rows, key=lambda r: (r["cosine"] is None, r["cosine"], r["sha_b"]), reverse=True):
            if r["kind"] == "near" and r["sha_a"] != r["sha_b"]:
                out[r["sha_a"]] = r  # the closest sighting wins (sorted farthest first)
    return out


def _arrival_verdicts(db: Database, shas: list[str], verdicts: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """sha256 → verdict → its first ``arrivals`` row, for the wanted verdicts."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not verdicts or not db.has_table(S.ARRIVALS):
        return out
    cols = ["sha256", "verdict", "reason", "partner_sha256", "cosine", "hamming", "created_at", "path"]
    for start in range(0, len(shas), 5000):
        where = f"{isin('sha256', shas[start:start + 5000])} AND {isin('verdict', verdicts)}"
        rows = db.read(S.ARRIVALS, cols, where=where).to_pylist()
        for r in sorted(rows, key=lambda r: (r["created_at"] is None, r["created_at"], r["path"])):
            out.setdefault(r["sha256"], {}).setdefault(r["verdict"], r)
    return out


def _group_partners(images: list[dict], flags: dict[str, dict], wanted: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per sha256 and duplicate flag: the group's first-ingested member it duplicates (that one
    itself has none and stays)."""
    order = {img["sha256"]: (img["ingested_at"] is None, img["ingested_at"], img["sha256"]) for img in images}
    out: dict[str, dict[str, str]] = {}
    for flag, column in _GROUP_OF.items():
        if flag not in wanted:
            continue
        groups: dict[int, list[str]] = {}
        for sha, row in flags.items():
            if row.get(column) is not None and row[column] >= 0:
                groups.setdefault(row[column], []).append(sha)
        for members in groups.values():
            first, *rest = sorted(members, key=order.__getitem__)
            for sha in rest:
                out.setdefault(sha, {})[flag] = first
    return out
