"""Progress and summary: the per-stage timings, the run's counts (:class:`IngestSummary`, what
``embedscope ingest`` prints), and the progress bar or log line while it runs."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
watch_log = logging.getLogger("embedscope.watch")  # the daemon's lines, under the name its users filter on


@dataclass
class StageTimes:
    hash: float = 0.0
    decode: float = 0.0
    encode: float = 0.0
    write: float = 0.0
    load: float = 0.0  # building the model (overlaps hashing and the first decodes)
    decode_batch: float = 0.0  # --decode gpu: the batched full-size JPEG decode (encoder's thread)
    load_wait: float = 0.0  # the part of ``load`` the encoder had to wait for

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in vars(self).items()}


@dataclass
class IngestSummary:
    db: str
    model: str
    weights: str
    scanned: int = 0
    new: int = 0
    completed: int = 0  # already-known images that got a missing variant (e.g. --sam2 later)
    duplicates: int = 0
    quarantined: int = 0
    embedded: dict[str, int] = field(default_factory=dict)  # variant -> vectors written
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    decode: str = "cpu"  # where JPEG pixels were decoded: cpu (Pillow) or batched:<device>

    @property
    def images_per_s(self) -> float:
        work = self.new + self.completed
        return work / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["images_per_s"] = round(self.images_per_s, 2)
        d["seconds"] = round(self.seconds, 3)
        return d

    def one_line(self) -> str:
        extra = f", {self.completed} completed" if self.completed else ""
        if "sam2" in self.stage_seconds:
            extra += f" (SAM2 {self.stage_seconds['sam2']:.1f}s)"
        return (
            f"ingest: {self.new} new{extra}, {self.duplicates} duplicates, "
            f"{self.quarantined} quarantined of {self.scanned} files in {self.seconds:.1f}s "
            f"({self.images_per_s:.1f} images/s, {self.model}, weights {self.weights})"
        )


class Progress:
    """A tqdm bar on a terminal, a log line every ``every`` seconds otherwise."""

    def __init__(self, enabled: bool, every: float = 10.0) -> None:
        self.enabled = enabled
        self.every = every
        self.bar = None
        self.done = 0
        self.last = time.monotonic()
        self.counts: dict[str, int] = {}
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(unit="file", desc="ingest", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **counts: int) -> None:
        self.done += n
        self.counts = counts
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(counts, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            log.info("ingest progress: %d files, %s", self.done, ", ".join(f"{k} {v}" for k, v in counts.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class WatchTotals:
    batches: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed_batches: int = 0
    analyses: int = 0
    started: float = field(default_factory=time.monotonic)

    def one_line(self) -> str:
        return (f"watch stopped: {self.batches} batches, {self.new} new, {self.duplicates} duplicates, "
                f"{self.quarantined} quarantined in {time.monotonic() - self.started:.0f}s")

    def add_batch(self, summary: Any, files: int, stopped: bool, emit: Any = None) -> None:
        """Count one batch's :class:`IngestSummary`, log its line and emit its JSON event."""
        self.batches += 1
        self.new += summary.new
        self.duplicates += summary.duplicates
        self.quarantined += summary.quarantined
        extra = f", {summary.completed} completed" if summary.completed else ""
        tail = f" (stopped after {summary.scanned} of {files} files; the rest next start)" if stopped else ""
        watch_log.info("batch %d: %d new%s, %d duplicates, %d quarantined of %d files in %.1fs (%.1f images/s)%s",
                       self.batches, summary.new, extra, summary.duplicates, summary.quarantined, summary.scanned,
                       summary.seconds, summary.images_per_s, tail)
        if emit is not None:
            emit({"event": "batch", "batch": self.batches, "files": files, "stopped": stopped, **summary.as_dict()})

    def heartbeat(self, recorded: int, settling: int, unfinished: int, emit: Any = None) -> None:
        """The daemon's periodic "alive" line (and JSON event)."""
        held = f", {unfinished} look unfinished" if unfinished else ""
        watch_log.info("alive: %d paths recorded, %d files settling%s; since start %d batches, %d new, "
                       "%d duplicates, %d quarantined", recorded, settling, held, self.batches, self.new,
                       self.duplicates, self.quarantined)
        if emit is not None:
            emit({"event": "heartbeat", "recorded": recorded, "settling": settling, "held_unfinished": unfinished,
                  "batches": self.batches, "new": self.new, "duplicates": self.duplicates,
                  "quarantined": self.quarantined})
