"""The write stage: commits encoded batches on a background thread, in order.

The encoder hands each batch's rows to a :class:`BatchWriter` and goes on with the next
batch; the writer coalesces what has queued up (fewer, larger LanceDB commits, fewer
fragments) and calls ``commit`` with it. Jobs are committed strictly in submission order, so
the per-batch write order that crash safety relies on is kept; a failure in the writer is
raised in the submitting thread at its next ``submit`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa


@dataclass
class WriteJob:
    """Everything one or more batches want written."""

    tables: dict[str, list[pa.Table]] = field(default_factory=dict)  # embeddings (and masks)
    items: list[Any] = field(default_factory=list)  # DecodedItems (pixels already dropped)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.items)

    def absorb(self, other: "WriteJob") -> None:
        """Append ``other`` (a later job) to this one, keeping order."""
        for name, parts in other.tables.items():
            self.tables.setdefault(name, []).extend(parts)
        self.items.extend(other.items)
        self.quarantine.extend(other.quarantine)
        self.sources.extend(other.sources)

    def empty(self) -> bool:
        return not (self.tables or self.items or self.quarantine or self.sources)


_CLOSE = object()


class BatchWriter:
    """A single background thread that runs ``commit(job)`` for queued jobs, in order.

    A commit happens once ``min_images`` images (or ``min_rows`` path rows) have queued up,
    or ``max_delay`` seconds after the oldest uncommitted job, or at ``close``. At most
    ``max_queued`` jobs wait; ``submit`` blocks beyond that (back-pressure, flat memory).
    """

    def __init__(self, commit: Callable[[WriteJob], None], *, min_images: int = 256, min_rows: int = 4096,
                 max_delay: float = 5.0, max_queued: int = 8) -> None:
        self.commit = commit
        self.min_images = min_images
        self.min_rows = min_rows
        self.max_delay = max_delay
        self.seconds = 0.0  # time spent in commit
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._loop, name="ingest-writer", daemon=True)
        self._thread.start()

    def submit(self, job: WriteJob) -> None:
        """Queue ``job``; raises the writer's error if it has failed."""
        while True:
            self._raise()
            try:
                self._queue.put(job, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise()
                    raise RuntimeError("ingest writer thread stopped")

    def close(self) -> None:
        """Commit everything queued, stop the thread, raise its error if any."""
        if self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.put(_CLOSE, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        pending = WriteJob()
        first_at: float | None = None
        closing = False
        try:
            while not closing:
                timeout = None if first_at is None else max(0.0, first_at + self.max_delay - time.monotonic())
                try:
                    job = self._queue.get(timeout=timeout)
                except queue.Empty:
                    job = None
                if job is _CLOSE:
                    closing = True
                elif job is not None:
                    pending.absorb(job)
                    first_at = first_at if first_at is not None else time.monotonic()
                due = (
                    closing
                    or pending.images >= self.min_images
                    or len(pending.sources) + len(pending.quarantine) >= self.min_rows
                    or (first_at is not None and time.monotonic() - first_at >= self.max_delay)
                )
                if due and not pending.empty():
                    t0 = time.monotonic()
                    self.commit(pending)
                    self.seconds += time.monotonic() - t0
                    pending, first_at = WriteJob(), None
        except BaseException as exc:  # surfaced to the submitting thread by submit() / close()
            self.error = exc
