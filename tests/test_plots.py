"""plots: every helper draws the numbers of the analysis output it is given, accepts ax= and returns it."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from matplotlib.collections import PolyCollection

from exec_analytics import formatting, plots, schema
from exec_analytics.analysis import (
    budget_burndown,
    caller_breakdown,
    compare_versions,
    duration_percentiles,
    failure_rate,
    version_adoption,
)
from exec_analytics.simulator import Workload

START, END = "2026-11-16T00:00Z", "2026-11-20T00:00Z"  # 1.4.0's canary starts 2026-11-17 09:00


def executions_table(wl: Workload, rid: str, start: str, end: str) -> pd.DataFrame:
    """The simulator's ground truth in the executions-table dtypes (what load_executions returns)."""
    return schema.to_frame(pa.Table.from_pandas(wl.ground_truth(rid, start, end)[list(schema.COLUMNS)],
                                                preserve_index=False))  # fmt: skip


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    wl = Workload(seed=0)
    return executions_table(wl, wl.main.rid, START, END)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _dates(values) -> np.ndarray:
    return mdates.date2num(pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None).to_numpy())


def test_failure_rate_line_and_band_are_the_analysis(df, ax):
    rates = failure_rate(df, freq="6h")
    out = plots.plot_failure_rate(rates, ax=ax, rollouts=version_adoption(df, freq="6h", by=None))
    assert out is ax
    line = ax.get_lines()[0]
    np.testing.assert_allclose(mdates.date2num(line.get_xdata()), _dates(rates["period_start"]))
    np.testing.assert_allclose(line.get_ydata(), rates["rate"])
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    verts = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(verts.min(), rates["rate_low"].min()) and np.isclose(verts.max(), rates["rate_high"].max())
    # 1.4.0 first ran in the data's window: a rollout line at its first period; 1.3.0 was already running.
    vlines = [ln for ln in ax.get_lines()[1:] if list(ln.get_ydata()) == [0, 1]]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1.4.0"] and len(vlines) == 1
    adoption = version_adoption(df, freq="6h", by=None)
    t14 = adoption.loc[adoption["resource_version"] == "1.4.0", "period_start"].min()
    assert mdates.date2num(vlines[0].get_xdata()[0]) == pytest.approx(_dates([t14])[0])


def test_duration_percentiles_lines_match_and_log_scale(df, ax):
    pct = duration_percentiles(df, freq="6h")
    plots.plot_duration_percentiles(pct, ax=ax)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"p50", "p95", "p99"}
    for name, ln in lines.items():
        np.testing.assert_allclose(ln.get_ydata(), pct[name])
    assert ax.get_yscale() == "log"
    # The unit is on every labelled tick (the axis label no longer has to carry it).
    ax.figure.canvas.draw()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+(\.\d+)? (ms|s|min|h)", t) for t in ticks), ticks
    fig, other = plt.subplots()
    assert plots.plot_duration_percentiles(pct, ax=other, log=False, percentiles=("p50",)) is other
    assert other.get_yscale() == "linear" and len(other.get_lines()) == 1
    plt.close(fig)


@pytest.mark.parametrize("complementary", [False, True])
def test_duration_distribution_is_the_ecdf_per_version(df, ax, complementary):
    plots.plot_duration_distribution(df, ax=ax, complementary=complementary)
    versions = [str(v) for v in df["resource_version"].cat.categories if (df["resource_version"] == v).any()]
    lines = ax.get_lines()
    assert len(lines) == len(versions) == 2
    for v, ln in zip(versions, lines, strict=True):
        d = np.sort(df.loc[df["resource_version"] == v, "duration_s"].dropna().to_numpy())
        n = len(d)
        assert ln.get_label() == f"{v} (n={n:,})"
        np.testing.assert_array_equal(ln.get_xdata(), d)
        expected = 1 - np.arange(n) / n if complementary else np.arange(1, n + 1) / n
        np.testing.assert_allclose(ln.get_ydata(), expected)
    assert ax.get_xscale() == "log"
    assert ax.get_yscale() == ("log" if complementary else "linear")


def test_version_comparison_places_each_effect_on_its_threshold_scale(df, ax):
    cmp = compare_versions(df, "1.3.0", "1.4.0", n_resamples=100)
    plots.plot_version_comparison(cmp, ax=ax)
    pos = plots.effect_position(cmp)
    # Hand check of the scale: a ratio at exactly the threshold lands on +1, a difference at -threshold on -1.
    probe = cmp.iloc[:2].copy()
    probe[["ratio", "ratio_low", "ratio_high"]] = 1.10
    probe[["difference", "difference_low", "difference_high"]] = -0.005
    probe["judged_on"] = ["ratio", "difference"]
    probe["threshold"] = [0.10, 0.005]
    np.testing.assert_allclose(plots.effect_position(probe)["x"], [1.0, -1.0])
    markers = [c for c in ax.containers]
    assert len(markers) == len(cmp)
    n = len(cmp)
    for i, container in enumerate(markers):
        x, y = container.lines[0].get_data()
        assert x[0] == pytest.approx(pos["x"].iloc[i]) and y[0] == n - 1 - i
        colour = matplotlib.colors.to_hex(container.lines[0].get_color())
        assert colour.lower() == plots.VERDICT_COLORS[str(cmp["verdict"].iloc[i])].lower()
    assert [t.get_text() for t in ax.get_yticklabels()] == [formatting.metric_name(m) for m in cmp["metric"]]
    vlines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and list(ln.get_ydata()) == [0, 1]]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [-1, 0, 1]


def test_caller_breakdown_bars_are_the_rates(df, ax):
    callers = caller_breakdown(df, top=6)
    plots.plot_caller_breakdown(callers, ax=ax, reference=0.04, labels={str(callers["caller_rid"][0]): "first"})
    ranked = callers[callers["rank"] > 0]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, ranked["rate"])
    ys = [p.get_y() + p.get_height() / 2 for p in ax.patches]
    assert ys == sorted(ys, reverse=True)  # rank 1 on top
    assert ax.get_yticklabels()[0].get_text() == "first"
    assert any(np.allclose(ln.get_xdata(), 0.04) for ln in ax.get_lines())


def test_error_budget_burndown_line(df, ax):
    burn = budget_burndown(df, slo=0.95, start=START, end=END, freq="6h")
    assert burn["cumulative_bad"].iloc[-1] == (df["status"] != "SUCCEEDED").sum()
    plots.plot_error_budget(burn, ax=ax)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [1.0, *burn["remaining"]])
    assert mdates.date2num(line.get_xdata()[0]) == pytest.approx(_dates([pd.Timestamp(START)])[0])


def test_every_helper_draws_on_the_current_axes_without_ax(df):
    fig = plt.figure()
    try:
        current = fig.add_subplot()
        before = dict(matplotlib.rcParams)
        assert plots.plot_failure_rate(failure_rate(df, freq="1D")) is current
        assert plots.plot_duration_distribution(df) is current
        assert dict(matplotlib.rcParams) == before  # no global style change
    finally:
        plt.close(fig)


def test_bad_input_names_the_missing_columns(ax):
    with pytest.raises(ValueError, match="period_start"):
        plots.plot_failure_rate(pd.DataFrame({"rate": [0.1]}), ax=ax)
    with pytest.raises(TypeError):
        plots.plot_error_budget([1, 2], ax=ax)


def test_short_rid():
    assert plots.short_rid("ri.workshop.main.module.0123456789abcdef") == "workshop.module …89abcdef"
    assert plots.short_rid(None) == "(no caller)"


MATHTEXT = "$\\frac{$"  # unbalanced mathtext: matplotlib raises while drawing it unless it is escaped


def test_data_text_is_drawn_literally_never_as_mathtext(df):
    evil = df.copy()
    evil["resource_version"] = evil["resource_version"].cat.rename_categories(lambda v: f"{v}{MATHTEXT}\x00\u202e")
    evil["caller_rid"] = evil["caller_rid"].cat.rename_categories(lambda c: f"{c}{MATHTEXT}")
    evil["failure_reason"] = evil["failure_reason"].cat.rename_categories(lambda r: f"{r}{MATHTEXT}")
    evil["resource_rid"] = evil["resource_rid"].cat.rename_categories(lambda r: f"{r}{MATHTEXT}")
    baseline, candidate = (f"{v}{MATHTEXT}\x00\u202e" for v in ("1.3.0", "1.4.0"))
    callers = caller_breakdown(evil, top=4)
    first = str(callers["caller_rid"][0])
    fig, axes = plt.subplots(5, figsize=(8, 16))
    try:
        plots.plot_failure_rate(failure_rate(evil, freq="6h", by="resource_rid"), ax=axes[0], hue="resource_rid",
                                rollouts={candidate: pd.Timestamp("2026-11-17T09:00Z")})  # fmt: skip
        plots.plot_duration_distribution(evil, ax=axes[1])
        cmp = compare_versions(evil, baseline, candidate, reasons=True, n_resamples=50)
        plots.plot_version_comparison(cmp, ax=axes[2])
        plots.plot_caller_breakdown(callers, ax=axes[3], labels={first: f"name {MATHTEXT}"})
        plots.plot_duration_percentiles(duration_percentiles(evil, freq="6h"), ax=axes[4],
                                        rollouts=version_adoption(evil, freq="6h", by=None))  # fmt: skip
        fig.savefig(io.BytesIO(), format="png")  # drawing is where mathtext would fail
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        drawn = [t for t in texts if "frac" in t]
        # versions (legend, rollout labels, forest ticks), callers, reasons (forest ticks), resources (legend)
        assert len(drawn) >= 8
        for t in drawn:
            assert not matplotlib.cbook.is_math_text(t), t
            assert MATHTEXT in t.replace("\\$", "$")  # shown as the data says
            assert "\x00" not in t and "\u202e" not in t
        assert any("failure rate (" in t for t in drawn)  # a failure reason inside a forest-plot tick
        assert "name " + MATHTEXT in [t.replace("\\$", "$") for t in drawn]
    finally:
        plt.close(fig)


def test_duration_ticks_read_as_durations() -> None:
    assert [plots._seconds(v) for v in (0.001, 0.1, 0.2, 1.0, 10.0, 60.0, 100.0, 120.0, 3600.0)] == [
        "1 ms", "100 ms", "200 ms", "1 s", "10 s", "1 min", "100 s", "2 min", "1 h"]  # fmt: skip
    fig, (wide, narrow) = plt.subplots(2, 1, figsize=(9.5, 6))  # as wide as the report's figures
    try:
        wide.plot([0.001, 100.0], [0, 1])
        wide.set_xscale("log")
        plots._duration_ticks(wide.xaxis)
        narrow.plot([0.15, 0.9], [0, 1])
        narrow.set_xscale("log")
        plots._duration_ticks(narrow.xaxis)
        fig.canvas.draw()
        shown = [t.get_text() for t in wide.get_xticklabels() if t.get_text()]
        assert {"1 ms", "100 ms", "1 s", "10 s"} <= set(shown) and "2 s" not in shown
        # Less than a decade: 200 ms and 500 ms are labelled, not "2×10⁻¹" minor labels.
        shown = [t.get_text() for t in narrow.get_xticklabels() if t.get_text()]
        assert {"200 ms", "500 ms"} <= set(shown)
        assert not [t.get_text() for t in narrow.get_xticklabels(minor=True) if t.get_text()]
    finally:
        plt.close(fig)


def test_percentiles_differ_without_colour(df, ax):
    plots.plot_duration_percentiles(duration_percentiles(df, freq="6h"), ax=ax)
    styles = {
        ln.get_label(): (ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines() if ln.get_label()[0] == "p"
    }
    assert len(set(styles.values())) == len(styles) == 3
    assert len({ls for ls, _ in styles.values()}) == 3 and len({m for _, m in styles.values()}) == 3


def test_labels_over_data_have_a_background(df, ax):
    plots.plot_duration_percentiles(duration_percentiles(df, freq="6h"), ax=ax,
                                    rollouts=version_adoption(df, freq="6h", by=None))  # fmt: skip
    (label,) = ax.texts
    assert label.get_text() == "1.4.0" and label.get_bbox_patch() is not None
    assert label.get_bbox_patch().get_facecolor()[:3] == (1.0, 1.0, 1.0) and label.get_zorder() > 2
    fig, other = plt.subplots()
    try:
        plots.plot_error_budget(budget_burndown(df, slo=0.95, start=START, end=END, freq="6h"), ax=other)
        (left,) = other.texts
        assert left.get_text().endswith(" left") and left.get_bbox_patch() is not None
    finally:
        plt.close(fig)


def test_low_volume_hatching_has_a_legend_entry(df, ax):
    callers = caller_breakdown(df, top=8, min_executions=10_000)  # every caller counts as low volume
    assert callers.loc[callers["rank"] > 0, "low_volume"].all()
    plots.plot_caller_breakdown(callers, ax=ax, reference=0.04)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["overall 4.00%", plots.LOW_VOLUME_LABEL]
    fig, other = plt.subplots()
    try:
        plots.plot_caller_breakdown(caller_breakdown(df, top=3, min_executions=1), ax=other)
        assert other.get_legend() is None  # nothing hatched, no reference: nothing to explain
    finally:
        plt.close(fig)


def test_legend_titles_are_words_and_names_replace_rids(df, ax):
    two = pd.concat([df, df.assign(resource_rid="ri.function-registry.main.function.other")])
    two["resource_rid"] = two["resource_rid"].astype("category")
    rates = failure_rate(two, freq="6h", by="resource_rid")
    plots.plot_failure_rate(rates, ax=ax, hue="resource_rid", names={str(df["resource_rid"].iloc[0]): "checkout"})
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "resource"
    assert legend.get_texts()[0].get_text() == "checkout"
    fig, other = plt.subplots()
    try:
        plots.plot_duration_distribution(
            two, ax=other, by="resource_rid", names={str(df["resource_rid"].iloc[0]): "co"}
        )
        labels = [ln.get_label() for ln in other.get_lines()]
        assert labels[0].startswith("co (n=") and labels[1].startswith("ri.function-registry.main.function.other")
        assert other.get_legend().get_title().get_text() == "resource"
    finally:
        plt.close(fig)


def test_version_comparison_legend_only_when_not_annotated(df, ax):
    cmp = compare_versions(df, "1.3.0", "1.4.0", n_resamples=50)
    plots.plot_version_comparison(cmp, ax=ax)
    assert ax.get_legend() is None  # the annotations name the verdicts; the space above is the title's
    fig, other = plt.subplots()
    try:
        plots.plot_version_comparison(cmp, ax=other, annotate=False)
        assert other.get_legend() is not None
    finally:
        plt.close(fig)


@pytest.mark.parametrize("loc", ["center", "left", "right"])
def test_percentile_legend_leaves_the_title_alone(df, loc):
    fig, ax = plt.subplots(figsize=(9.5, 3.4), layout="constrained")
    try:
        plots.plot_duration_percentiles(duration_percentiles(df, freq="6h"), ax=ax)
        ax.set_title("duration percentiles per six hours, this period and the one before", loc=loc)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = next(t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text())
        assert not ax.get_legend().get_window_extent(renderer).overlaps(title.get_window_extent(renderer))
    finally:
        plt.close(fig)


def test_rollout_labels_close_together_do_not_overprint(df, ax):
    rates = failure_rate(df, freq="6h")
    t = pd.Timestamp("2026-11-17T09:00Z")
    plots.plot_failure_rate(rates, ax=ax, rollouts={"1.4.0": t, "1.4.1": t + pd.Timedelta("1h"),
                                                    "1.5.0": t + pd.Timedelta("2D")})  # fmt: skip
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    boxes = {a.get_text(): a.get_window_extent(renderer) for a in ax.texts}
    assert set(boxes) == {"1.4.0", "1.4.1", "1.5.0"}
    assert not boxes["1.4.0"].overlaps(boxes["1.4.1"])
    assert boxes["1.5.0"].y1 == pytest.approx(boxes["1.4.0"].y1)  # far enough apart: back on the top line


def test_failure_rate_legend_covers_no_data(df, ax):
    two = pd.concat([df, df.assign(resource_rid="ri.function-registry.main.function.other")])
    two["resource_rid"] = two["resource_rid"].astype("category")
    plots.plot_failure_rate(failure_rate(two, freq="6h", by="resource_rid"), ax=ax, hue="resource_rid")
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


# --- change points ----------------------------------------------------------------------------------------------


def _change_marks(ax) -> tuple[list, list]:
    bands = [p for p in ax.patches if p.get_gid() == plots.CHANGE_INTERVAL_GID]
    lines = [ln for ln in ax.get_lines() if ln.get_gid() == plots.CHANGE_POINT_GID]
    return bands, lines


def test_change_points_are_drawn_at_their_moment_with_its_interval(df, ax):
    from exec_analytics.analysis import change_points

    rates = failure_rate(df, freq="6h")
    found = change_points(df, metric="failure_rate", freq="1h", start=START, end=END, n_sim=200)
    assert len(found) >= 1  # 1.4.0's timeouts raise the failure rate within the window
    fig, plain = plt.subplots()
    try:
        plots.plot_failure_rate(rates, ax=plain)
        limits = plain.get_xlim()
    finally:
        plt.close(fig)
    plots.plot_failure_rate(rates, ax=ax, change_points=found)
    bands, lines = _change_marks(ax)
    assert len(bands) == len(lines) == len(found)
    # The band spans the interval for the moment, the line sits at the moment: the analysis' own times.
    np.testing.assert_allclose([b.get_x() for b in bands], _dates(found["moment_low"]))
    np.testing.assert_allclose([b.get_x() + b.get_width() for b in bands], _dates(found["moment_high"]))
    np.testing.assert_allclose([float(ln.get_xdata()[0]) for ln in lines], _dates(found["period_start"]))
    assert ax.get_xlim() == pytest.approx(limits)  # marking changes moves no axis
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["failure rate", "failure rate change: interval for its moment", "failure rate change point"]


def test_percentile_change_points_take_their_percentile_colour(df, ax):
    t = pd.Timestamp("2026-11-18T10:00Z")
    h = pd.Timedelta("1h")
    found = pd.DataFrame({"metric": ["p95", "failure_rate", "p50"], "period_start": [t, t + 2 * h, t + 20 * h],
                          "moment_low": [t - 3 * h, t, t + 20 * h],
                          "moment_high": [t + h, t + 4 * h, t + 21 * h]})  # fmt: skip
    plots.plot_duration_percentiles(duration_percentiles(df, freq="6h"), ax=ax, change_points=found)
    bands, lines = _change_marks(ax)
    drawn = found[found["metric"] != "failure_rate"]  # the failure rate's change is not a percentile's
    np.testing.assert_allclose([b.get_x() for b in bands], _dates(drawn["moment_low"]))
    np.testing.assert_allclose([float(ln.get_xdata()[0]) for ln in lines], _dates(drawn["period_start"]))
    series = {ln.get_label(): ln.get_color() for ln in ax.get_lines() if ln.get_gid() is None}
    assert [ln.get_color() for ln in lines] == [series["p95"], series["p50"]]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "p95 change point" in texts and "p50 change: interval for its moment" in texts


def test_change_points_without_their_columns_are_refused(df, ax):
    with pytest.raises(ValueError, match="change_points: data lacks column"):
        plots.plot_failure_rate(failure_rate(df, freq="6h"), ax=ax,
                                change_points=pd.DataFrame({"metric": ["failure_rate"]}))  # fmt: skip
