"""The weekly reliability report: :func:`build_weekly_report` gathers the data, the renderers present it.

- :func:`build_weekly_report` returns a :class:`Report`: plain dataclasses and DataFrames, no figures.
- :func:`render_html` gives one self-contained HTML file (figures drawn and embedded, no external assets).
- :func:`render_markdown` gives the same findings as Markdown for chat and email (no figures).
- :func:`render_json` gives them as JSON for scripts (the schema is in ``docs/cli-json.md``).
- :func:`render_figures` draws the figures alone, as PNG; :func:`render_summary` is the terminal headline.
"""

from ..analysis import budget_burndown  # kept here for the notebooks written against exec_analytics.report
from .build import (
    AT_RISK_BELOW,
    BudgetStatus,
    Kpi,
    Report,
    ResourceSection,
    VersionFinding,
    WhatChanged,
    build_weekly_report,
    safe_source,
    week_bounds,
)
from .figures import render_figures
from .render import render_html, render_json, render_markdown, render_summary

__all__ = [
    "AT_RISK_BELOW",
    "BudgetStatus",
    "Kpi",
    "Report",
    "ResourceSection",
    "VersionFinding",
    "WhatChanged",
    "budget_burndown",
    "build_weekly_report",
    "render_figures",
    "render_html",
    "render_json",
    "render_markdown",
    "render_summary",
    "safe_source",
    "week_bounds",
]
