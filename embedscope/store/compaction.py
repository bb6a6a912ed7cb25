"""Compaction: many small commits (a daemon's batches) folded into few fragments."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from embedscope.store.db import Database


def compact_tables(db: Database, names: Iterable[str], *, keep_versions_for: dt.timedelta) -> None:
    """Compact each existing table of ``names`` and drop its versions older than
    ``keep_versions_for`` (readers still on a recent version keep it). The caller holds the
    writer lock."""
    for name in names:
        if db.has_table(name):
            db.table(name).optimize(cleanup_older_than=keep_versions_for)
