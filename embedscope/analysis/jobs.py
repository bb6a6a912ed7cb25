"""Analysis jobs, the entry points the CLI, the daemon and the demo call: the only writers of
analysis results.

Each job lives in its own module; this one names them in one place:

- :class:`AnalysisParams` (:mod:`.params`): what an analyze run does;
- :func:`run_analysis` (:mod:`.full_run`): fit every method on every row — or, above
  ``--fit-sample`` rows, on a seeded sample with the rest placed in a streaming pass
  (:mod:`.sampled_run`);
- :func:`run_novelty_only` (:mod:`.novelty_run`): score new images against the latest
  analyze run without refitting.

Fitting is in :mod:`.fitting`, the rows a run writes in :mod:`.rows`, reading in
:mod:`.reading`; runs are looked up through :mod:`embedscope.store.runs`.
"""

from __future__ import annotations

from embedscope.analysis.full_run import run_analysis
from embedscope.analysis.novelty_run import run_novelty_only
from embedscope.analysis.params import AnalysisParams, new_run_id

__all__ = ["AnalysisParams", "new_run_id", "run_analysis", "run_novelty_only"]
