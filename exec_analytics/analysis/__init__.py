"""Reliability statistics over the executions table: pure functions, DataFrame in, tidy DataFrame out.

Every function takes the executions table (docs/design.md), does no I/O, and returns a DataFrame whose columns
its docstring lists: counts beside every rate, intervals beside every estimate.

- :func:`failure_rate`, :func:`failure_reasons`: how often it fails, and why (Clopper-Pearson intervals).
- :func:`duration_percentiles`: the whole latency distribution, with distribution-free intervals.
- :func:`summarize`: the weekly-report aggregate set (failure rate and percentiles) in one pass.
- :func:`compare_versions`: did the candidate make it worse (caller-adjusted effects, intervals, verdicts).
- :func:`version_regressions`, :func:`version_adoption`: every version against its predecessor; rollouts.
- :func:`caller_breakdown`, :func:`caller_concentration`: who is hurting, and how concentrated traffic is.
- :func:`error_budget`: SLI, budget and multiwindow burn-rate alerts.
- :func:`explain_change`: why a failure rate or percentile changed between two periods (mix or within).
- :func:`change_points`: when within a window a metric shifted, and what coincided.
- :func:`rate_interval`: the interval of every rate above, for counts merged by hand.

A shared vocabulary: ``by`` (grouping columns; ``caller_kind`` is derived from ``caller_rid``), ``freq``
(fixed, epoch-aligned time buckets of ``start_time``, reported as ``period_start``), ``confidence``,
``success_statuses`` (what counts as success; everything else, unknown statuses included, is a failure).
"""

from ._intervals import RATE_METHODS, rate_interval
from .budget import BURN_ALERTS, error_budget
from .burndown import budget_burndown
from .callers import OTHER, caller_breakdown, caller_concentration
from .changepoints import change_points
from .explain import ChangeExplanation, explain_change
from .percentiles import duration_percentiles, summarize
from .rates import failure_rate, failure_reasons
from .regressions import version_adoption, version_regressions
from .versions import VERDICTS, compare_versions

__all__ = [
    "BURN_ALERTS",
    "OTHER",
    "RATE_METHODS",
    "VERDICTS",
    "ChangeExplanation",
    "budget_burndown",
    "caller_breakdown",
    "caller_concentration",
    "change_points",
    "compare_versions",
    "duration_percentiles",
    "error_budget",
    "explain_change",
    "failure_rate",
    "failure_reasons",
    "rate_interval",
    "summarize",
    "version_adoption",
    "version_regressions",
]
