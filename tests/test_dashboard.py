"""Plots and the dashboard, drawn headless (Agg) and asserted on what the Axes and widgets hold."""

from __future__ import annotations

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
    assert ax.get_title() == "latency_ms: mean per 1h" and ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "latency_ms"

    _, ax2 = plt.subplots()
    assert plots.metric_over_time(mon.metrics(filled), "latency_ms", freq="1h", agg="max", ax=ax2, by="model") is ax2
    lines = {l.get_label(): l.get_ydata() for l in ax2.lines}
    assert set(lines) == {"gpt-4o-mini", "llama3.2"}
    assert list(lines["gpt-4o-mini"]) == [300] and list(lines["llama3.2"]) == [3000]
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["gpt-4o-mini", "llama3.2"]

    counts = plots.metric_over_time(filled, "latency_ms", freq="30m", agg="count").lines[0].get_ydata()
    assert list(counts) == [3, 0, 0, 0, 2]


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
    assert {t.get_text() for t in ax.texts} == {"p50", "p95"}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latency_ms", "count")


def test_tokens_and_cost_by_model_marks_unpriced(filled):
    ax = plots.tokens_and_cost_by_model(filled)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["OLLAMA/llama3.2", "OPENAI/gpt-4o-mini"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [10, 20, 10, 40]  # prompt bars, then completion bars
    (cost_ax,) = [a for a in ax.figure.axes if a is not ax]
    cost = cost_ax.lines[0].get_ydata()
    assert np.isnan(cost[0]) and cost[1] == pytest.approx(0.004)
    assert [(t.get_text(), t.xy[0]) for t in ax.texts] == [("unpriced", 0)]  # over the llama3.2 bars
    assert cost_ax.get_ylabel() == "cost (USD)" and ax.get_ylabel() == "tokens"
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
    assert left.get_title() == "latency_ms: distribution"
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


def test_empty_store_dashboard(store):
    dash = Dashboard(store)
    assert dash.error.value == "" and dash.metric.value is None
    assert "No chat turns" in dash.table.value
    assert any("No metrics recorded yet" in t.get_text() for t in dash.figure.axes[0].texts)


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
    cells = {row.split("</td>")[1].removeprefix("<td>"): row for row in dash.table.value.split("<tr>")[2:]}
    assert "$0.000036" in cells["gpt-4o-mini"]  # not "$0.0000", which reads as free
    assert "unpriced" in cells["llama3.2"]
    assert "unpriced" not in cells["gpt-4o"] and "–" in cells["gpt-4o"]
    tokens = dash.figure.axes[2]
    assert [t.get_text() for t in tokens.texts] == ["unpriced"]  # over llama3.2 only


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
