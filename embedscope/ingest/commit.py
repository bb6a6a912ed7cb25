"""The commit stage: a :class:`~embedscope.ingest.writer.WriteJob` → database commits, in the
order crash safety relies on. Shared by every executor (run on one writer thread)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from embedscope.ingest.rows import image_rows, quality_rows
from embedscope.ingest.triage import KnownState
from embedscope.ingest.writer import WriteJob
from embedscope.store import schema as S
from embedscope.store.db import Database


class Committer:
    """The write stage, shared by every executor: one job at a time, on one writer thread.

    Order per job: embeddings (and masks) → images → quarantine → sources. Every write is a
    merge_insert on the table's key, so writing a row twice (a retried batch) leaves one row.
    A path is recorded only once its content is settled (stored or quarantined), so a crash can
    never leave a path in ``sources`` whose image was lost.
    """

    def __init__(self, db: Database, known: KnownState, *, label_from_folder: bool) -> None:
        self.db = db
        self.known = known
        self.label_from_folder = label_from_folder
        self.waiting: list[dict[str, Any]] = []  # path rows whose sha is not settled yet

    def commit(self, job: WriteJob) -> None:
        for name, parts in job.tables.items():
            self.db.upsert(name, pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        if job.items:
            new_images = [it for it in job.items if it.sha256 not in self.known.images]
            if new_images:
                self.db.upsert(S.IMAGES, image_rows(new_images, label_from_folder=self.label_from_folder),
                               update_existing=False)
                self.db.upsert(S.QUALITY, quality_rows(new_images), update_existing=False)
        if job.quarantine:
            self.db.upsert(S.QUARANTINE, pa.Table.from_pylist(job.quarantine, S.QUARANTINE_SCHEMA))
        for it in job.items:
            self.known.images.add(it.sha256)
            for v in it.variants:
                self.known.embedded[v].add(it.sha256)
        settled, waiting = [], []
        for row in self.waiting + job.sources:
            sha = row["sha256"]
            done = not sha or sha in self.known.images or sha in self.known.quarantined
            (settled if done else waiting).append(row)
        if settled:
            self.db.upsert(S.SOURCES, pa.Table.from_pylist(settled, S.SOURCES_SCHEMA))
        self.waiting = waiting
