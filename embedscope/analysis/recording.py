"""What a run accumulates while it works: stage timings, metric rows and ``methods_info``."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class Timer:
    """Seconds per named stage of a run (``runs.params["timings_s"]``), logged as each ends."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    def begin(self, name: str, detail: str = "") -> float:
        """Log that stage ``name`` starts (with ``detail``, e.g. its row count); returns its start time."""
        log.info("analyze: %s%s ...", name, f" ({detail})" if detail else "")
        return time.perf_counter()

    def stage(self, name: str, start: float) -> None:
        self.stages[name] = round(time.perf_counter() - start, 3)
        log.info("analyze: %s done in %.1fs", name, self.stages[name])


class Recorder:
    """What a run accumulates while it fits: metric rows, ``methods_info`` and stage timings."""

    def __init__(self, run_id: str, timer: Timer) -> None:
        self.run_id, self.timer = run_id, timer
        self.metric_rows: list[dict[str, Any]] = []
        self.methods_info: dict[str, Any] = {}

    def metric(self, name: str, value: float, method: str = "", space: str = "embedding", k: int | None = None) -> None:
        """One ``metrics`` row; NaN / infinite / None values are left out."""
        if value is not None and np.isfinite(value):
            self.metric_rows.append({"run_id": self.run_id, "name": name, "method": method, "space": space, "k": k,
                                     "value": float(value)})

    def totals(self, *, n: int, novel: int, contaminated: int, dup_groups: int, phash_groups: int) -> None:
        """The run-level metrics every analyze run records once its flags are known."""
        self.metric("novel_fraction", novel / n)
        self.metric("contaminated_fraction", contaminated / n)
        self.metric("dup_groups", float(dup_groups))
        self.metric("phash_groups", float(phash_groups))
