"""Progress of a long pass of an analyze run: rows done / total, rate and ETA.

On a terminal it is a tqdm bar (on stderr); otherwise (a log file, a pipe, a test) one log line
when the pass starts, then one every ``every`` seconds, then one when it ends, so a 100k-row
run is never silent for minutes.

    with Progress("place", total=n) as p:
        for batch in batches:
            ...
            p.update(len(batch))
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Rows done of ``total`` for one named pass (see the module docstring)."""

    def __init__(self, label: str, total: int, *, unit: str = "rows", every: float = 5.0,
                 bar: bool | None = None) -> None:
        self.label, self.total, self.unit, self.every = label, int(total), unit, every
        self.done = 0
        self.t0 = self._last = time.perf_counter()
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=label, unit=unit, unit_scale=True, leave=False, file=sys.stderr)
        else:
            log.info("%s: 0 / %s %s", label, f"{self.total:,}", unit)

    def update(self, n: int) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``label: done / total rows (pct), rate/s, ETA`` as of ``now``."""
        el = max((now or time.perf_counter()) - self.t0, 1e-9)
        rate = self.done / el
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / max(self.total, 1)
        eta = _clock(left) if left == left else "?"
        return (f"{self.label}: {self.done:,} / {self.total:,} {self.unit} ({pct:.0f}%), "
                f"{rate:,.0f} {self.unit}/s, ETA {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        el = time.perf_counter() - self.t0
        log.info("%s: %s %s in %s (%s %s/s)", self.label, f"{self.done:,}", self.unit, _clock(el),
                 f"{self.done / max(el, 1e-9):,.0f}", self.unit)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
