"""Plots and the dashboard, drawn headless (Agg) and asserted on what the Axes and widgets hold."""

from __future__ import annotations

import re
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from aihub_nb import monitoring as mon  # noqa: E402
from aihub_nb import plots  # noqa: E402
from aihub_nb.errors import UsageError  # noqa: E402
from aihub_nb.store import now_iso  # noqa: E402
from aihub_nb.widgets.dashboard import Dashboard  # noqa: E402

HOUR = 3600.0
T0 = pd.Timestamp("2026-11-20T08:00:00Z").timestamp()


def _metric(name: str, value: float, at: float, **dims) -> dict:
    stamp = now_iso(at)
    return {"name": name, "value": value, "dimensions": dims, "createdAt": stamp, "updatedAt": stamp}


def _turn(at: float, provider: str, model: str, latency: float, *, prompt=10, completion=20, cost=None, failed=False):
    dims = {"provider": provider, "model": model, "connection": model, "chat": "c", "status": "failed" if failed else "completed"}
    rows = [_metric("latency_ms", latency, at, **dims)]
    if failed:
        return rows + [_metric("error", 1, at, **dims)]
    rows += [_metric("prompt_tokens", prompt, at, **dims), _metric("completion_tokens", completion, at, **dims)]
    if cost is not None:
        rows.append(_metric("cost_usd", cost, at, **dims))
    return rows


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def filled(store):
    rows = []
    rows += _turn(T0, "OPENAI", "gpt-4o-mini", 100, cost=0.002)
    rows += _turn(T0 + 600, "OPENAI", "gpt-4o-mini", 300, cost=0.002)
    rows += _turn(T0 + 700, "OPENAI", "gpt-4o-mini", 50, failed=True)
    rows += _turn(T0 + 2 * HOUR, "OLLAMA", "llama3.2", 1000, prompt=5, completion=5)
    rows += _turn(T0 + 2 * HOUR + 60, "OLLAMA", "llama3.2", 3000, prompt=5, completion=5)
    store.create_many("Metric", rows)
    return store


# ---------------------------------------------------------------- plots


def test_metric_over_time_buckets_and_lines(filled):
    ax = plots.metric_over_time(filled, "latency_ms", freq="1h")
    (line,) = ax.lines
    y = line.get_ydata()
    assert y[0] == pytest.approx((100 + 300 + 50) / 3) and np.isnan(y[1]) and y[2] == 2000
    assert list(line.get_xdata()) == list(pd.date_range("2026-11-20T08:00", periods=3, freq="h").to_numpy())
    assert ax.get_title() == "latency_ms: mean per 1h" and ax.get_ylabel() == "latency_ms"
    # the ticks read as times of day, the date is in the axis label, not in an offset in a corner
    assert ax.get_xlabel() == "time (UTC), 2026-11-20"
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()][:3] == ["08:00", "08:30", "09:00"]
    assert ax.xaxis.get_offset_text().get_text() == ""

    _, ax2 = plt.subplots()
    assert plots.metric_over_time(mon.metrics(filled), "latency_ms", freq="1h", agg="max", ax=ax2, by="model") is ax2
    lines = {l.get_label(): l.get_ydata() for l in ax2.lines}
    assert set(lines) == {"gpt-4o-mini", "llama3.2"}
    assert list(lines["gpt-4o-mini"]) == [300] and list(lines["llama3.2"]) == [3000]
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["gpt-4o-mini", "llama3.2"]

    counts_ax = plots.metric_over_time(filled, "latency_ms", freq="30m", agg="count")
    assert list(counts_ax.lines[0].get_ydata()) == [3, 0, 0, 0, 2]
    assert _integer_ticks(counts_ax)


def test_metric_by_draws_one_bar_per_value(filled):
    ax = plots.metric_by(filled, "latency_ms", "model", agg="p50")
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["llama3.2", "gpt-4o-mini"]
    assert [p.get_height() for p in ax.patches] == [2000, 100]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("latency_ms: p50 by model", "model", "latency_ms")
    with pytest.raises(UsageError, match="no dimension 'region'"):
        plots.metric_by(filled, "latency_ms", "region")
    with pytest.raises(UsageError, match="aggregation"):
        plots.metric_by(filled, "latency_ms", "model", agg="avg")


def test_latency_distribution_marks_p50_and_p95(filled):
    ax = plots.latency_distribution(filled)
    values = [100, 300, 50, 1000, 3000]
    p50, p95 = np.percentile(values, [50, 95])
    marks = {l.get_label(): l.get_xdata()[0] for l in ax.lines}
    assert marks == {f"p50 = {p50:,.4g}": p50, f"p95 = {p95:,.4g}": p95}
    assert sum(p.get_height() for p in ax.patches) == len(values)
    # labelled with their values and unit, at the top of the axes, not over the bars
    assert sorted(t.get_text() for t in ax.texts) == ["p50 = 300 ms", "p95 = 2,600 ms"]
    assert {t.xycoords for t in ax.texts} == {("data", "axes fraction")} and {t.xy[1] for t in ax.texts} == {1}
    assert ax.get_ylim()[1] >= 1.3 * max(p.get_height() for p in ax.patches)  # the strip they sit in is free
    assert ax.get_legend() is None  # no legend box over the bars: the labels say it
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latency_ms", "count")
    assert ax.get_title() == "latency_ms: distribution, all models (5 values)"  # not one model's p95
    ax.figure.canvas.draw()
    assert _integer_ticks(ax)
    _assert_inside_and_apart(ax, ax.texts)


def test_tokens_and_cost_by_model_marks_unpriced(filled):
    ax = plots.tokens_and_cost_by_model(filled)
    ax.figure.canvas.draw()
    assert ax.get_title() == "Tokens and cost by model"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["OLLAMA/llama3.2", "OPENAI/gpt-4o-mini"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [10, 20, 10, 40]  # prompt bars, then completion bars
    (cost_ax,) = [a for a in ax.figure.axes if a is not ax]
    cost = cost_ax.lines[0].get_ydata()
    assert np.isnan(cost[0]) and cost[1] == pytest.approx(0.004)
    assert [(t.get_text(), t.xy[0]) for t in ax.texts] == [("unpriced", 0)]  # over the llama3.2 bars
    assert cost_ax.get_ylabel() == "cost (USD)" and ax.get_ylabel() == "tokens"
    cost_ticks = [t.get_text() for t in cost_ax.get_yticklabels()]
    assert cost_ticks[0] == "$0" and all(t.startswith("$") for t in cost_ticks), cost_ticks
    assert "$0.004" in cost_ticks and cost_ax.yaxis.get_offset_text().get_text() == ""
    assert _integer_ticks(ax)
    # the same from a loaded frame, and from a summary frame
    for source in (mon.metrics(filled), mon.summary(filled)):
        again = plots.tokens_and_cost_by_model(source)
        assert [p.get_height() for p in again.patches] == heights


def test_error_rate_over_time(filled):
    ax = plots.error_rate_over_time(filled, freq="1h")
    y = ax.lines[0].get_ydata()
    assert y[0] == pytest.approx(100 / 3) and np.isnan(y[1]) and y[2] == 0
    assert ax.get_ylabel() == "error rate (%)"


def test_plots_of_nothing_say_so(store):
    for ax in (plots.metric_over_time(store, "latency_ms"), plots.latency_distribution(store),
               plots.tokens_and_cost_by_model(store), plots.error_rate_over_time(store)):
        assert ax.texts and ax.texts[0].get_text().startswith("no ")


# ---------------------------------------------------------------- dashboard


@pytest.fixture
def live(store):
    """Turns in the last hour, and older ones, relative to now (the windows are relative)."""
    now = time.time()
    rows = []
    rows += _turn(now - 5 * 60, "OPENAI", "gpt-4o-mini", 100, cost=0.002)
    rows += _turn(now - 4 * 60, "OPENAI", "gpt-4o-mini", 300, cost=0.002)
    rows += _turn(now - 30 * 60, "OLLAMA", "llama3.2", 1000)
    rows += _turn(now - 3 * 86400, "OLLAMA", "llama3.2", 5000)
    store.create_many("Metric", rows)
    return store


def _titles(dash: Dashboard) -> list[str]:
    return [ax.get_title() for ax in dash.figure.axes]


def test_dashboard_draws_the_chosen_metric_and_grouping(live):
    dash = Dashboard(live)
    assert dash.error.value == ""
    assert dash.metric.value == "latency_ms"
    assert list(dash.metric.options) == ["completion_tokens", "cost_usd", "latency_ms", "prompt_tokens"]
    assert list(dash.group.options) == ["(none)", "provider", "model", "connection", "chat", "status"]
    assert dash.group.value == "(none)" and dash.window.value == "all"
    assert bytes(dash.image.value).startswith(b"\x89PNG")
    top, left, right = dash.figure.axes[:3]
    assert top.get_title().startswith("latency_ms: mean per") and len(top.lines) == 1
    assert left.get_title() == "latency_ms: distribution, all models (4 values)"  # the table's p95s are per model
    assert right.get_title() == "Tokens and cost by model"
    pd.testing.assert_frame_equal(dash.summary_frame, mon.summary(live))
    assert "gpt-4o-mini" in dash.table.value and "$0.0040" in dash.table.value
    assert "unpriced" in dash.table.value  # llama3.2 has no price

    dash.group.value = "model"
    top, left = dash.figure.axes[:2]
    assert sorted(l.get_label() for l in top.lines) == ["gpt-4o-mini", "llama3.2"]
    assert left.get_title() == "latency_ms: mean by model"
    assert sorted(p.get_height() for p in left.patches) == [200, 3000]

    dash.metric.value = "prompt_tokens"
    assert dash.group.value == "model"  # still a dimension of the new metric
    assert dash.figure.axes[0].get_title().startswith("prompt_tokens")
    assert dash.figure.axes[1].get_title() == "prompt_tokens: mean by model"


def test_dashboard_window_narrows_plots_and_table(live):
    dash = Dashboard(live, window="1h")
    assert dash.summary_frame.set_index("model")["calls"].to_dict() == {"gpt-4o-mini": 2, "llama3.2": 1}
    dash.window.value = "15m"
    assert list(dash.summary_frame["model"]) == ["gpt-4o-mini"]
    assert sorted(dash.frame["value"]) == [100, 300]
    dash.window.value = "all"
    assert dash.summary_frame.set_index("model")["calls"].to_dict() == {"gpt-4o-mini": 2, "llama3.2": 2}


def test_refresh_button_picks_up_new_turns(live):
    dash = Dashboard(live)
    assert "mistral" not in dash.table.value
    live.create_many("Metric", _turn(time.time(), "OLLAMA", "mistral", 700))
    mon.log_metric(live, "eval_score", 0.9, suite="smoke")  # batched: the refresh flushes it
    dash.refresh_button.click()
    assert "mistral" in dash.table.value and "mistral" in set(dash.summary_frame["model"])
    assert "eval_score" in dash.metric.options


def test_errors_show_in_the_panel(live, monkeypatch):
    dash = Dashboard(live)

    def broken(*args, **kwargs):
        raise RuntimeError("database is on fire")

    monkeypatch.setattr(mon, "summary", broken)
    dash.refresh_button.click()  # no exception escapes the click
    assert "RuntimeError" in dash.error.value and "database is on fire" in dash.error.value
    monkeypatch.undo()
    dash.refresh()
    assert dash.error.value == ""


def test_empty_store_dashboard_shows_a_hint_not_a_blank_figure(store):
    dash = Dashboard(store)
    assert dash.error.value == "" and dash.metric.value is None
    assert dash.figure is None and dash.image.layout.display == "none" and not dash.image.value
    assert dash.hint.layout.display != "none"
    assert "No model calls yet: run a chat cell" in dash.hint.value and "then Refresh" in dash.hint.value
    assert "No model calls yet" in dash.snapshot_html()  # what a saved notebook keeps
    store.create_many("Metric", _turn(time.time(), "OPENAI", "gpt-4o-mini", 120))
    dash.refresh_button.click()
    assert dash.hint.layout.display == "none" and dash.image.layout.display != "none"
    assert bytes(dash.image.value).startswith(b"\x89PNG") and "gpt-4o-mini" in dash.table.value
    dash.close()


def test_auto_refresh_follows_turns_until_stopped(live):
    dash = Dashboard(live)
    dash.auto_refresh(0.05)
    assert dash.refreshing
    live.create_many("Metric", _turn(time.time(), "OPENAI", "gpt-4.1", 400, cost=0.01))
    deadline = time.time() + 10
    while "gpt-4.1" not in set(dash.summary_frame["model"]) and time.time() < deadline:
        time.sleep(0.02)
    assert "gpt-4.1" in dash.table.value
    dash.stop()
    assert not dash.refreshing


def test_small_costs_keep_their_digits_and_failed_only_models_are_not_called_unpriced(store):
    now = time.time()
    rows = _turn(now - 60, "OPENAI", "gpt-4o-mini", 100, prompt=40, completion=50, cost=0.000036)
    rows += _turn(now - 50, "OPENAI", "gpt-4o", 80, failed=True)  # priced or not, nothing completed
    rows += _turn(now - 40, "OLLAMA", "llama3.2", 900)  # no price
    store.create_many("Metric", rows)
    dash = Dashboard(store)
    cells = _summary_cells(dash.table.value)
    assert cells["gpt-4o-mini"]["cost (USD)"] == "$0.000036"  # not "$0.0000", which reads as free
    assert cells["llama3.2"]["cost (USD)"] == "unpriced"
    assert cells["gpt-4o (failed only)"]["cost (USD)"] == "–"
    tokens = dash.figure.axes[2]
    assert sorted(t.get_text() for t in tokens.texts) == ["failed only", "unpriced"]  # over gpt-4o, llama3.2
    cost_ax = dash.figure.axes[3]
    ticks = [t.get_text() for t in cost_ax.get_yticklabels()]
    assert ticks[:3] == ["$0", "$0.00001", "$0.00002"], ticks  # dollars, never "1e-5"
    assert cost_ax.yaxis.get_offset_text().get_text() == ""


def test_a_bucket_pandas_cannot_read_is_a_usage_error(filled):
    with pytest.raises(UsageError, match="time bucket"):
        plots.metric_over_time(filled, "latency_ms", freq="hourly")
    with pytest.raises(UsageError, match="time bucket"):
        plots.error_rate_over_time(filled, freq="often")


def test_auto_refresh_box_starts_it_and_close_stops_the_thread(live):
    dash = Dashboard(live)
    assert not dash.auto.value and not dash.refreshing
    dash.auto.value = True  # ticked in the panel
    assert dash.refreshing
    thread = dash._timer
    dash.auto.value = False
    assert not dash.refreshing and not thread.is_alive()
    dash.auto_refresh(0.05)
    assert dash.auto.value  # the box shows it runs
    thread = dash._timer
    dash.close()
    assert not thread.is_alive() and not dash.refreshing and not dash.auto.value


# ---------------------------------------------------------------- readable plots


def _integer_ticks(ax) -> bool:
    """Every count tick in view is a whole number (no 0.2, 0.4, …)."""
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def _assert_inside_and_apart(ax, texts) -> None:
    """The texts lie within the axes and do not overlap one another."""
    import itertools

    renderer = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    extents = [t.get_window_extent(renderer) for t in texts]
    for text, e in zip(texts, extents):
        assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, text.get_text()
    for a, b in itertools.combinations(extents, 2):
        assert not a.overlaps(b)


def _assert_nothing_cut_off(fig, dpi: float) -> None:
    """Drawn at `dpi`, every title, label, tick label and note lies within the figure."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    tight = fig.get_tightbbox(fig.canvas.get_renderer())  # in inches, of what was drawn
    width, height = fig.get_size_inches()
    assert tight.x0 >= -0.02 and tight.y0 >= -0.02 and tight.x1 <= width + 0.02 and tight.y1 <= height + 0.02, tight


def _text_sizes_px(fig, dpi: float) -> dict[str, float]:
    from matplotlib.text import Text

    return {t.get_text(): t.get_fontsize() * dpi / 72 for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()}


@pytest.mark.parametrize("values", [
    [100, 300, 50, 1000, 3000],
    [100] * 19 + [5000],                  # p95 near the right edge: its label turns inward
    [200] * 5,                            # one value: p50 = p95, labels either side of the line
    list(range(1, 101)),
    [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 500],
])
@pytest.mark.parametrize("figsize", [(8, 4), (4.5, 3)])
def test_histogram_labels_stay_inside_and_apart(store, values, figsize):
    store.create_many("Metric", [_metric("latency_ms", v, T0 + i, model="m") for i, v in enumerate(values)])
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    plots.latency_distribution(store, ax=ax)
    ax.figure.canvas.draw()
    assert [t.get_text().split(" = ")[0] for t in ax.texts] == ["p50", "p95"]
    assert all(t.get_text().endswith(" ms") for t in ax.texts)
    _assert_inside_and_apart(ax, ax.texts)
    assert _integer_ticks(ax)
    assert ax.get_title().startswith("latency_ms: distribution, model m (")  # one model: named


def test_an_unpriced_store_has_no_cost_axis(store):
    rows = _turn(T0, "OLLAMA", "llama3.2", 100) + _turn(T0 + 60, "OLLAMA", "qwen2.5", 200)
    store.create_many("Metric", rows)
    ax = plots.tokens_and_cost_by_model(store)
    ax.figure.canvas.draw()
    assert ax.figure.axes == [ax]  # no empty 0..1.2 cost axis
    assert ax.get_title() == "Tokens by model (cost: no prices set)"
    assert [t.get_text() for t in ax.texts] == ["unpriced", "unpriced"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["prompt", "completion"]
    # nothing completed: nothing was left unpriced either, so no note
    store.create_many("Metric", _turn(T0, "OPENAI", "gpt-4o", 50, failed=True))
    only_failed = plots.tokens_and_cost_by_model(mon.metrics(store, model="gpt-4o"))
    assert only_failed.figure.axes == [only_failed] and only_failed.get_title() == "Tokens and cost by model"


def test_cost_ticks_are_dollars_with_the_digits_they_need():
    usd = plots._usd_tick
    assert [usd(v, [0, 1e-5, 2e-5, 3e-5]) for v in (0, 1e-5, 3e-5)] == ["$0", "$0.00001", "$0.00003"]
    assert [usd(v, [0, 5e-6, 1e-5]) for v in (5e-6, 1e-5)] == ["$0.000005", "$0.000010"]
    assert [usd(v, [0, 0.0025, 0.005]) for v in (0.0025, 0.005)] == ["$0.0025", "$0.0050"]
    assert [usd(v, [0, 0.5, 1, 1.5]) for v in (0.5, 1.5)] == ["$0.5", "$1.5"]
    assert usd(1234.0, [0, 500, 1000, 1500]) == "$1,234" and usd(0.000036) == "$0.000036"
    formatter = plots._usd_formatter()
    assert formatter.format_ticks([0, 2e-5, 4e-5]) == ["$0", "$0.00002", "$0.00004"]


def test_time_ticks_read_as_times_for_short_spans(store):
    # a 40 s session, in 1 s buckets: "08:00:10", not "10" with the date in a corner
    store.create_many("Metric", [_metric("latency_ms", 100 + i, T0 + 2 * i) for i in range(20)])
    ax = plots.metric_over_time(store, "latency_ms", freq="1s")
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3 and all(len(t) == 8 and t.count(":") == 2 for t in labels), labels
    assert ax.get_xlabel() == "time (UTC), 2026-11-20" and ax.xaxis.get_offset_text().get_text() == ""
    # below a second (the notebook's "20ms" buckets): the fractions, after the full time
    fast = mon.metrics(store, "latency_ms").assign(
        createdAt=pd.date_range("2026-11-20T08:00:00Z", periods=20, freq="7ms"))
    ax = plots.metric_over_time(fast, "latency_ms", freq="20ms")
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3 and all(re.fullmatch(r"\d\d:\d\d:\d\d(\.\d\d)?", t) for t in labels), labels
    assert "08:00:00.05" in labels
    # a span over days: the dates are in the ticks, and the label says from when to when
    days = mon.metrics(store, "latency_ms").assign(
        createdAt=pd.date_range("2026-11-20T08:00:00Z", periods=20, freq="6h"))
    ax = plots.metric_over_time(days, "latency_ms", freq="6h")
    ax.figure.canvas.draw()
    assert ax.get_xlabel() == "time (UTC), 2026-11-20 – 2026-11-25"
    assert any(t.get_text().startswith("Nov ") for t in ax.get_xticklabels())


def test_lone_points_are_marked(store):
    mon.log_metric(store, "latency_ms", 120.0)
    (line,) = plots.metric_over_time(store, "latency_ms", freq="1m").lines
    assert line.get_marker() == "o" and line.get_markersize() >= 6  # one bucket: a dot you can see
    # many buckets (no markers), but a value between two gaps is still drawn, as a dot
    rows = [_metric("m", 1.0, T0 + i) for i in range(30)] + [_metric("m", 5.0, T0 + 40)]
    rows += [_metric("m", 2.0, T0 + 50 + i) for i in range(30)]
    store.create_many("Metric", rows)
    (line,) = plots.metric_over_time(store, "m", freq="1s").lines
    marked = np.flatnonzero(line.get_markevery())
    assert line.get_marker() == "o" and list(marked) == [40]


def test_dashboard_text_is_readable_and_nothing_is_cut_off(live):
    from aihub_nb.widgets import dashboard

    for group in ("(none)", "model"):
        dash = Dashboard(live)
        dash.group.value = group
        sizes = _text_sizes_px(dash.figure, dashboard.DPI)
        assert len(sizes) > 15 and min(sizes.values()) >= 11, sizes  # px, at the dashboard's 80 dpi
        assert sizes[dash.figure.axes[0].get_title()] >= 14
        _assert_nothing_cut_off(dash.figure, dashboard.DPI)
        dash.close()


@pytest.mark.parametrize("draw", [
    lambda s: plots.metric_over_time(s, "latency_ms", freq="1h", by="model"),
    lambda s: plots.metric_by(s, "latency_ms", "model"),
    lambda s: plots.latency_distribution(s),
    lambda s: plots.tokens_and_cost_by_model(s),
    lambda s: plots.error_rate_over_time(s, freq="1h"),
])
def test_a_plot_of_its_own_is_readable_at_dpi_60(filled, draw):
    ax = draw(filled)
    sizes = _text_sizes_px(ax.figure, 60)  # as notebooks/monitoring.ipynb shows them
    assert min(sizes.values()) >= 8.4, sizes
    assert sizes[ax.get_title()] >= 10.5
    _assert_nothing_cut_off(ax.figure, 60)
    _assert_nothing_cut_off(ax.figure, 100)


# ---------------------------------------------------------------- the dashboard's time buckets


def _span_frame(seconds: float, n: int = 400) -> pd.DataFrame:
    times = pd.date_range("2026-11-20T08:00:00Z", periods=n, freq=pd.Timedelta(seconds=seconds / (n - 1)))
    return pd.DataFrame({"createdAt": times, "value": 1.0})


@pytest.mark.parametrize(("span", "bucket"), [
    (1, "20ms"), (8, "200ms"), (40, "1s"), (60, "1s"), (100, "2s"), (10 * 60, "10s"), (26 * 60, "30s"),
    (3 * 3600, "5m"), (24 * 3600, "30m"), (3 * 86400, "2h"), (30 * 86400, "12h"), (400 * 86400, "7d"), (1000 * 86400, "4w"),
])
def test_dashboard_bucket_follows_the_span_of_steady_data(span, bucket):
    from aihub_nb.widgets.dashboard import MAX_BUCKETS, _bucket_for

    assert _bucket_for(_span_frame(span)) == bucket
    if bucket != "4w":  # 20 to 60 points on the line
        assert MAX_BUCKETS / 3 <= span / pd.Timedelta(plots._pandas_freq(bucket)).total_seconds() <= MAX_BUCKETS


@pytest.mark.parametrize(("times", "bucket"), [
    ([0.0, 0.3, 0.6, 0.9, 1.2], "200ms"),  # a notebook's calls, under a second apart: not one dot per 1s
    ([2.0 * i for i in range(20)], "2s"),  # a call every 2 s: not a dot, a gap, a dot... per 1s
    ([float(i) for i in range(10)] + [300.0 + i for i in range(10)], "5m"),  # two bursts, 5 minutes apart
    ([0.0, 3 * 86400.0 - 1800, 3 * 86400.0 - 300, 3 * 86400.0 - 240], "2d"),  # never merged into one dot
])
def test_dashboard_bucket_of_sparse_data_gives_a_line_not_dots(times, bucket):
    from aihub_nb.widgets.dashboard import _bucket_for

    frame = pd.DataFrame({"createdAt": pd.Timestamp("2026-11-20T08:00:00Z") + pd.to_timedelta(times, unit="s"),
                          "value": 1.0})
    assert _bucket_for(frame) == bucket
    line = frame.set_index("createdAt")["value"].resample(plots._pandas_freq(bucket)).mean().to_numpy()
    filled = np.isfinite(line)
    alone = filled & ~np.r_[False, filled[:-1]] & ~np.r_[filled[1:], False]
    assert filled.sum() >= 2 and alone.sum() * 4 <= filled.sum() or len(times) == 4


def test_dashboard_bucket_with_nothing_to_measure_follows_the_window():
    from aihub_nb.widgets.dashboard import _bucket_for

    one = _span_frame(10, n=2).iloc[:1]
    assert [_bucket_for(one, w) for w in ("15m", "1h", "24h", "7d", "all")] == ["15s", "1m", "30m", "3h", "1m"]
    assert _bucket_for(None, "1h") == "1m"


def test_dashboard_shows_a_short_session_as_a_line_not_a_dot(store):
    now = time.time()
    rows = []
    for i in range(20):  # a 40 s session, a call every 2 s, as a notebook's first minutes
        rows += _turn(now - 40 + 2 * i, "OPENAI", "gpt-4o-mini", 100 + 10 * (i % 5), cost=0.0001)
    store.create_many("Metric", rows)
    for window in ("15m", "1h", "all"):
        dash = Dashboard(store, window=window)
        top = dash.figure.axes[0]
        assert top.get_title() == "latency_ms: mean per 2s"
        (line,) = top.lines
        y = line.get_ydata()
        assert np.isfinite(y).sum() == 20 and len(y) <= 21  # one point per call, joined
        assert line.get_marker() == "o"  # few points: each one marked
        dash.close()


def test_dashboard_of_a_notebooks_first_calls_draws_a_line(store):
    now = time.time()
    rows = []
    for i in range(8):  # a notebook's cells: 8 calls in under a second
        rows += _turn(now - 1 + 0.12 * i, "OPENAI", "gpt-4o-mini", 10 + i)
    store.create_many("Metric", rows)
    dash = Dashboard(store)
    top = dash.figure.axes[0]
    assert re.fullmatch(r"latency_ms: mean per \d+ms", top.get_title()), top.get_title()
    y = top.lines[0].get_ydata()
    assert np.isfinite(y).sum() >= 5 and top.lines[0].get_marker() == "o"
    dash.close()


def test_dashboard_buckets_of_the_live_fixture(live):
    from aihub_nb.widgets.dashboard import _bucket_for

    for window in ("all", "1h"):  # 3 days of data, most of it in the last half hour; 26 minutes
        dash = Dashboard(live, window=window)
        top = dash.figure.axes[0]
        assert top.get_title() == f"latency_ms: mean per {_bucket_for(dash.frame, window)}"
        assert np.isfinite(top.lines[0].get_ydata()).sum() >= 2  # never all in one dot
        dash.close()

def _summary_cells(table_html: str) -> dict[str, dict[str, str]]:
    """The summary table as {model cell: {column: cell text}}, with whether the row is greyed."""
    import html as html_module

    head = [html_module.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table_html)]
    rows = {}
    for attrs, row in re.findall(r"<tr([^>]*)>(.*?)</tr>", table_html.split("<tbody>")[1]):
        cells = dict(zip(head, (html_module.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)), strict=True))
        rows[cells["model"]] = {**cells, "dimmed": "opacity" in attrs}
    return rows


def test_summary_table_is_styled_like_the_hubs_other_tables(live):
    dash = Dashboard(live)
    assert 'class="aihub-table"' in dash.table.value  # aihub_nb.display.html_table, as %aihub chats etc.
    # numbers aligned right, names left
    heads = re.findall(r'<th style="[^"]*text-align:(\w+)">([^<]*)</th>', dash.table.value)
    assert {name: align for align, name in heads} == {
        "provider": "left", "model": "left", "calls": "right", "errors": "right", "error rate": "right",
        "prompt tokens": "right", "completion tokens": "right", "usage not reported": "left",
        "cost (USD)": "right", "p50 latency": "right", "p95 latency": "right",
    }
    cells = _summary_cells(dash.table.value)
    assert cells["gpt-4o-mini"]["calls"] == "2" and cells["gpt-4o-mini"]["cost (USD)"] == "$0.0040"
    assert cells["gpt-4o-mini"]["p50 latency"] == "200 ms"
    dash.close()


def test_failed_only_models_are_flagged_not_drawn_as_zero_tokens(store):
    now = time.time()
    rows = _turn(now - 60, "OPENAI", "gpt-4o-mini", 100, prompt=40, completion=50, cost=0.001)
    rows += _turn(now - 50, "OPENAI", "gpt-4o", 80, failed=True)
    rows += _turn(now - 45, "OPENAI", "gpt-4o", 90, failed=True)
    store.create_many("Metric", rows)
    dash = Dashboard(store)
    cells = _summary_cells(dash.table.value)
    assert set(cells) == {"gpt-4o-mini", "gpt-4o (failed only)"}
    failed = cells["gpt-4o (failed only)"]
    assert failed["dimmed"] and not cells["gpt-4o-mini"]["dimmed"]
    assert (failed["calls"], failed["errors"], failed["error rate"]) == ("2", "2", "100.0%")
    assert (failed["prompt tokens"], failed["completion tokens"]) == ("–", "–")  # not "0"
    ax = dash.figure.axes[2]
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["OPENAI/gpt-4o", "OPENAI/gpt-4o-mini"]
    heights = [p.get_height() for p in ax.patches]  # prompt bars, then completion bars
    assert heights[1] == 40 and heights[3] == 50  # gpt-4o-mini's
    assert np.isnan(heights[0]) and np.isnan(heights[2]), heights  # gpt-4o has none, not 0
    assert [t.get_text() for t in ax.texts] == ["failed only"]
    assert ax.texts[0].xy[0] == 0  # over gpt-4o's place
    # the plot on its own, from the store, says the same
    alone = plots.tokens_and_cost_by_model(store)
    assert [t.get_text() for t in alone.texts] == ["failed only"]
    dash.close()
