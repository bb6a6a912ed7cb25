"""Analysis jobs, the entry points the CLI, the daemon and the demo call: the only writers of
analysis results.

Each job lives in its own module; this one names them in one place:

- :class:`AnalysisParams` (:mod:`.params`): what an analyze run does;
- :func:`run_analysis` (:mod:`.full_run`): fit every method on every row — or, above
  ``--fit-sample`` rows, on a seeded sample with the rest placed in a streaming pass
  (:mod:`.sampled_run`);
- :func:`run_novelty_only` (:mod:`.novelty_run`): score new images against the latest
  analyze run without refitting;
- :func:`refresh_novelty`: either of the two, whichever brings the novelty flags up to date
  (what the watch daemon wants after its batches);
- :func:`check_arrivals` / :func:`check_table` (:mod:`.arrivals`): a verdict per arrived
  image — new, duplicate, near duplicate, label conflict, leak, low quality, novel
  (docs/verdicts.md).

Fitting is in :mod:`.fitting`, the rows a run writes in :mod:`.rows`, reading in
:mod:`.reading`; runs are looked up through :mod:`embedscope.store.runs`.
"""

from __future__ import annotations

import logging

from embedscope.analysis.arrivals import check_arrivals, check_table
from embedscope.analysis.full_run import run_analysis
from embedscope.analysis.novelty_run import run_novelty_only
from embedscope.analysis.params import AnalysisParams, new_run_id
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.runs import KIND_ANALYZE, latest_run

__all__ = ["AnalysisParams", "check_arrivals", "check_table", "new_run_id", "refresh_novelty", "run_analysis",
           "run_novelty_only"]

log = logging.getLogger(__name__)


def refresh_novelty(db: Database, *, model: str, variant: str = S.VARIANT_FULL) -> str | None:
    """Bring the novelty flags of ``model``/``variant`` up to date: score the images no run has
    scored yet against the latest analyze run, or fit one with the ``analyze`` defaults when
    there is none. Returns the new run's id, or None when there was nothing to score."""
    if latest_run(db, kind=KIND_ANALYZE, model=model, variant=variant) is None:
        log.info("no analyze run for %s/%s yet: fitting one (embedscope analyze defaults)", model, variant)
        return run_analysis(db, AnalysisParams(model=model, variant=variant))
    return run_novelty_only(db, since=None, model=model, variant=variant)
