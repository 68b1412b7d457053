"""The weekly reliability report: :func:`build_weekly_report` gathers the data, the renderers present it.

- :func:`build_weekly_report` returns a :class:`Report` (plain dataclasses and DataFrames, figures as PNG).
- :func:`render_html` gives one self-contained HTML file (figures embedded, no external assets).
- :func:`render_markdown` gives the same findings as Markdown for chat and email (no figures).
"""

from .build import (
    BudgetStatus,
    Kpi,
    Report,
    ResourceSection,
    VersionFinding,
    budget_burndown,
    build_weekly_report,
    safe_source,
    week_bounds,
)
from .render import render_html, render_markdown

__all__ = [
    "BudgetStatus",
    "Kpi",
    "Report",
    "ResourceSection",
    "VersionFinding",
    "budget_burndown",
    "build_weekly_report",
    "render_html",
    "render_markdown",
    "safe_source",
    "week_bounds",
]
