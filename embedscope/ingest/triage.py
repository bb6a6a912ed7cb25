"""The triage stage ("skip known"): what to do with one hashed file, given what the database
already holds — store it, complete its missing variants, count it as a duplicate, or
quarantine it. Shared by every executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from embedscope.errors import DecodeError
from embedscope.ingest.decode_stage import DecodedItem
from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.progress import IngestSummary
from embedscope.ingest.rows import quarantine_row, source_row
from embedscope.ingest.scan import FileEntry
from embedscope.ingest.writer import WriteJob
from embedscope.store import filters
from embedscope.store import schema as S
from embedscope.store.db import Database


@dataclass
class KnownState:
    """What the database already holds, loaded once per run (and kept current by the run)."""

    images: set[str]
    quarantined: dict[str, str]  # sha256 -> reason ("" = quarantined by path only)
    embedded: dict[str, set[str]]  # variant -> sha256s with that variant for this model
    quarantined_paths: dict[str, set[str]] = field(default_factory=dict)  # stored path -> its quarantined sha256s

    @classmethod
    def load(cls, db: Database, model: str, variants: Iterable[str]) -> "KnownState":
        images = set(db.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist())
        q = db.read(S.QUARANTINE, ["sha256", "path", "reason"])
        shas, paths = q.column("sha256").to_pylist(), q.column("path").to_pylist()
        quarantined = {sha: reason for sha, reason in zip(shas, q.column("reason").to_pylist()) if sha}
        quarantined_paths: dict[str, set[str]] = {}
        for sha, path in zip(shas, paths):
            quarantined_paths.setdefault(path, set()).add(sha)
        from embedscope.ingest.model_stage import split_key

        embedded: dict[str, set[str]] = {}
        for key in variants:  # a plain variant of ``model``, or "<other model>:<variant>"
            other, variant = split_key(key)
            table = S.embeddings_table_name(other or model)
            if db.has_table(table):
                col = db.read(table, ["sha256"], where=filters.both(filters.eq("variant", variant),
                                                                     filters.eq("model", other or model)))
                embedded[key] = set(col.column("sha256").to_pylist())
            else:
                embedded[key] = set()
        return cls(images, quarantined, embedded, quarantined_paths)

    def missing_variants(self, sha: str, variants: Sequence[str]) -> tuple[str, ...]:
        return tuple(v for v in variants if sha not in self.embedded[v])


class Triage:
    """The "skip known" step, shared by every executor: what to do with one hashed file.

    Counts into ``summary`` and puts the rows a file needs into the given :class:`WriteJob`.
    Files must be offered in scan order so the first path of a content is the one stored.
    """

    def __init__(self, known: KnownState, variants: Sequence[str], summary: IngestSummary, seen_at: Any) -> None:
        self.known = known
        self.variants = tuple(variants)
        self.summary = summary
        self.seen_at = seen_at
        self.claimed: set[str] = set()  # shas being stored by this run (first path wins)

    def admit(self, entry: FileEntry, sha: str | DecodeError | None, job: WriteJob) -> tuple[str, ...] | None:
        """The variants to compute for this file (it must be decoded and encoded), or ``None``
        when it is a duplicate or is quarantined (its rows are already in ``job``).

        ``sha``: the hash stage's result; an error (or ``None``) when the file could not be read
        as named: it is quarantined by path, with an empty sha256."""
        summary, known = self.summary, self.known
        summary.scanned += 1
        if not isinstance(sha, str):  # outside the drop, vanished, not a file, too large, ...
            self._quarantine(entry, "", sha.message if sha is not None else "cannot read file", job)
        elif sha in known.quarantined:
            self._quarantine(entry, sha, known.quarantined[sha], job)
        elif sha in self.claimed or (sha in known.images and not known.missing_variants(sha, self.variants)):
            summary.duplicates += 1
            job.sources.append(source_row(entry, sha, self.seen_at))
        elif entry.size_bytes == 0:
            known.quarantined[sha] = "empty file (0 bytes)"
            self._quarantine(entry, sha, "empty file (0 bytes)", job)
        else:
            self.claimed.add(sha)
            if sha in known.images:
                summary.completed += 1
            else:
                summary.new += 1
            return known.missing_variants(sha, self.variants)
        return None

    def decoded(self, item: DecodedItem, job: WriteJob) -> None:
        """An admitted file decoded: its path is recorded with its batch."""
        job.sources.append(source_row(item.entry, item.sha256, self.seen_at))

    def rejected(self, entry: FileEntry, sha: str, reason: str, job: WriteJob, *, record_path: bool = True,
                 path_only: bool = False) -> None:
        """An admitted file failed to decode: quarantine it instead (``record_path=False``: its
        path row is already in the job, as for a file refused by the batched decode).

        ``path_only``: the file could not be read as named any more (it changed, vanished or
        was retargeted after hashing), which says nothing about the content ``sha``: the path
        is quarantined with an empty sha256 and the content stays free to be stored."""
        if sha in self.known.images:
            self.summary.completed -= 1
        else:
            self.summary.new -= 1
        if path_only:
            self.claimed.discard(sha)
            self._quarantine(entry, "", reason, job, record_path=record_path)
            return
        self.known.quarantined[sha] = reason
        self._quarantine(entry, sha, reason, job, record_path=record_path)

    def unembedded(self, item: DecodedItem, reason: str, job: WriteJob) -> None:
        """A decoded file the encoder failed on (alone): its path is quarantined instead, with
        an empty sha256 (a later run tries its content again)."""
        path = stored_path(item.entry.path)
        job.sources[:] = [r for r in job.sources if not (r["sha256"] == item.sha256 and r["path"] == path)]
        self.rejected(item.entry, item.sha256, reason, job, path_only=True)

    def _quarantine(self, entry: FileEntry, sha: str, reason: str, job: WriteJob, *, record_path: bool = True) -> None:
        self.summary.quarantined += 1
        job.quarantine.append(quarantine_row(entry, sha, reason, self.seen_at))
        if record_path:
            job.sources.append(source_row(entry, sha, self.seen_at))
