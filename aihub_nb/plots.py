"""Plots of the hub's metrics, one matplotlib Axes each.

    >>> metric_over_time(store, "latency_ms", freq="15m", agg="p95")
    >>> metric_by(store, "latency_ms", "model")
    >>> latency_distribution(store)
    >>> tokens_and_cost_by_model(store)
    >>> error_rate_over_time(store, freq="1h")

Every function takes either a Store (and queries it, `since=` bounding the rows) or a DataFrame
already loaded with `aihub_nb.monitoring.metrics()`, draws on `ax` (a new figure when None), sets
the title and axis labels, and returns the Axes. Times are drawn in UTC.

Colours follow the theme (`theme="light"`, `"dark"` or `"auto"`; aihub_nb.theme): by default the
hub's own setting when a Store is given, else `auto`, which reads JupyterLab's chosen theme, so a
dark JupyterLab shows dark plots. Drawn on an `ax` of yours from a DataFrame without `theme=`,
a plot takes matplotlib's current style (yours, e.g. `plt.style.context("dark_background")`).

matplotlib and pandas are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .monitoring import metrics, summary, summary_of_frame
from .monitoring.timespan import pandas_freq as _pandas_freq

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "error_rate_over_time",
    "latency_distribution",
    "metric_by",
    "metric_over_time",
    "tokens_and_cost_by_model",
]

def _themed_plot(fn):
    """Draw `fn`'s plot in the theme's colours (the `theme=` keyword, else the store's setting, else
    auto), and keep them for tick labels matplotlib adds when the figure is drawn later."""
    import functools

    @functools.wraps(fn)
    def plot(df_or_store: Any, *args: Any, theme: str | None = None, **kwargs: Any) -> "Axes":
        from .theme import check_theme, of_store, themed

        if theme is not None:
            theme = check_theme(theme)
        elif _is_store(df_or_store):
            theme = of_store(df_or_store)
        elif kwargs.get("ax") is not None:  # your figure, your style
            return fn(df_or_store, *args, **kwargs)
        with themed(theme) as look:
            ax = fn(df_or_store, *args, **kwargs)
            import matplotlib as mpl

            for a in ax.figure.axes if look == "dark" else ():
                a.tick_params(which="both", colors=mpl.rcParams["xtick.color"], labelcolor=mpl.rcParams["xtick.color"])
        return ax

    return plot


def _background() -> str:
    """The axes' background colour of the theme drawn in (for note boxes on the plot)."""
    import matplotlib as mpl

    return mpl.rcParams["axes.facecolor"]


_AGGS = ("mean", "sum", "count", "min", "max", "median", "p50", "p90", "p95", "p99")


def _aggregate(values: "pd.Series | Any", agg: str):
    """Apply a named aggregation to a Series or a (resampled / grouped) Series."""
    if agg not in _AGGS:
        raise UsageError(f"Unknown aggregation {agg!r}; use one of: {', '.join(_AGGS)}.")
    if agg.startswith("p"):
        return values.quantile(int(agg[1:]) / 100)
    return getattr(values, agg)()


def _is_store(obj: Any) -> bool:
    return hasattr(obj, "conn") and hasattr(obj, "models")


def _metric_rows(df_or_store: Any, names: str | Iterable[str], since: Any = None) -> "pd.DataFrame":
    wanted = [names] if isinstance(names, str) else list(names)
    if _is_store(df_or_store):
        return metrics(df_or_store, name=wanted, since=since)
    frame = df_or_store
    if "name" not in getattr(frame, "columns", ()):
        raise UsageError("Pass a Store or a DataFrame from aihub_nb.monitoring.metrics() (it has a 'name' column).")
    return frame[frame["name"].isin(wanted)]


FONT_SCALE = 1.15
"""Plot text is sized from matplotlib's ``rcParams["font.size"]`` times this: titles a little
larger, tick labels and notes a little smaller, never below 8 pt. Raise ``font.size`` (or this) and
every plot's text grows with it; the default keeps an 8 x 4 in figure readable at dpi 60."""


def _sizes() -> dict[str, float]:
    import matplotlib as mpl

    base = float(mpl.rcParams["font.size"]) * FONT_SCALE
    return {"title": base * 1.15, "label": base, "tick": max(base * 0.95, 8.0), "note": max(base * 0.88, 8.0)}


def _style(ax: "Axes", *others: "Axes") -> None:
    """Size the title, axis labels, tick labels and legend of `ax` (and of twin axes) from _sizes()."""
    size = _sizes()
    ax.title.set_fontsize(size["title"])
    for a in (ax, *others):
        a.xaxis.label.set_fontsize(size["label"])
        a.yaxis.label.set_fontsize(size["label"])
        a.tick_params(labelsize=size["tick"])
        a.yaxis.get_offset_text().set_fontsize(size["tick"])
    legend = ax.get_legend()
    if legend is not None:
        for text in legend.get_texts():
            text.set_fontsize(size["note"])
        legend.get_title().set_fontsize(size["note"])


def _axes(ax: "Axes | None") -> "Axes":
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(8, 4), layout="constrained")  # nothing cut off, at any dpi
    return ax


def _times(index) -> Any:
    """A tz-aware DatetimeIndex as naive UTC datetime64 values, which matplotlib draws directly."""
    return index.tz_convert("UTC").tz_localize(None).to_numpy() if getattr(index, "tz", None) else index.to_numpy()


def _date_axis(ax: "Axes", freq: str | None = None) -> None:
    """Time ticks that read as times: "10:26:50" (seconds; "10:26:50.76" below a second), "10:25"
    (minutes, hours), "Nov 27" (days). The date goes into the axis label ("time (UTC), 2026-11-27")
    rather than an offset in a corner. A single time bucket gets one bucket of room on each side
    (else matplotlib spreads the axis over years around one point)."""
    import matplotlib.dates as mdates
    import pandas as pd

    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    locator.intervald[mdates.SECONDLY] = [1, 2, 5, 10, 15, 30]  # a 9 s span: 5 ticks, not 1
    locator.intervald[mdates.MINUTELY] = [1, 2, 5, 10, 15, 30]
    formatter = mdates.ConciseDateFormatter(
        locator,
        # years, months, days, hours, minutes, seconds (and below: trailing zeros of "%f" are cut)
        formats=["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%H:%M:%S.%f"],
        zero_formats=["", "%Y", "%b", "%b %d", "%H:%M", "%H:%M:%S"],
        show_offset=False,
    )
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    if not xs:
        return
    first, last = pd.Timestamp(min(xs)), pd.Timestamp(max(xs))
    if first.date() == last.date():
        ax.set_xlabel(f"time (UTC), {first:%Y-%m-%d}")
    else:
        ax.set_xlabel(f"time (UTC), {first:%Y-%m-%d} – {last:%Y-%m-%d}")
    if freq and first == last:
        span = pd.Timedelta(freq)
        ax.set_xlim(first - span, first + span)


def _plot_series(ax: "Axes", x: Any, y: Any, **kwargs: Any) -> None:
    """A line with its points marked when there are few of them; of many, only the points that
    have no neighbour (between gaps) are marked, as a line cannot show them."""
    import numpy as np

    finite = np.isfinite(y)
    if len(y) <= 48:
        marker = {"marker": "o", "ms": 7 if finite.sum() <= 2 else 4.5}
    else:
        before = np.r_[False, finite[:-1]]
        after = np.r_[finite[1:], False]
        alone = finite & ~before & ~after
        marker = {"marker": "o", "ms": 4.5, "markevery": alone} if alone.any() else {}
    ax.plot(x, y, **marker, **kwargs)


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: "Axes", message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4",
            fontsize=_sizes()["label"])
    _style(ax)


def _unit(name: str) -> str:
    """The unit a metric's name ends in, as a suffix for its values: "latency_ms" -> " ms"."""
    for suffix, unit in (("_ms", " ms"), ("_seconds", " s"), ("_s", " s"), ("_tokens", " tokens"), ("_usd", " USD")):
        if name.endswith(suffix):
            return unit
    return ""


def _number(value: float) -> str:
    """4,265 / 224.9 / 4.295 / 0.0123: whole numbers from 1,000 up, else four significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"


def _usd_tick(value: float, locs: Any = ()) -> str:
    """A cost tick in dollars, with as many decimals as the ticks need to differ: $0.00002,
    $0.0025, $1.5; never an "1e-5" offset."""
    import math
    from itertools import pairwise

    if value == 0:
        return "$0"
    ticks = sorted({float(v) for v in locs} | {float(value)})
    steps = [b - a for a, b in pairwise(ticks) if b > a]
    step = min(steps) if steps else abs(value)
    decimals = max(0, math.ceil(-math.log10(step) - 1e-9))
    while decimals < 12 and any(abs(round(v, decimals) - v) > step * 1e-6 for v in ticks):
        decimals += 1
    return f"${value:,.{decimals}f}"


def _usd_formatter() -> Any:
    """A tick formatter writing every tick of a cost axis in dollars with shared decimals."""
    from matplotlib.ticker import Formatter

    class UsdFormatter(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return _usd_tick(x)

        def format_ticks(self, values: Any) -> list[str]:
            return [_usd_tick(v, values) for v in values]

    return UsdFormatter()


def _coverage(frame: "pd.DataFrame") -> str:
    """What a frame's values come from, named as the summary's rows are (provider/model): "all
    models" when from several, "model OPENAI/gpt-4o" when from one, "" when they have no model."""
    if "model" not in frame.columns:
        return ""
    keys = frame[[c for c in ("provider", "model") if c in frame.columns]].dropna(subset=["model"])
    pairs = keys.drop_duplicates()
    if len(pairs) > 1:
        return "all models"
    if len(pairs) == 1:
        row = pairs.iloc[0]
        provider = row.get("provider")
        return f"model {provider}/{row['model']}" if isinstance(provider, str) and provider else f"model {row['model']}"
    return ""


def _label(value: Any) -> str:
    if value is None or value != value:  # None or NaN
        return "(none)"
    return str(value)


@_themed_plot
def metric_over_time(
    df_or_store: Any,
    name: str,
    freq: str = "1h",
    agg: str = "mean",
    ax: "Axes | None" = None,
    *,
    by: str | None = None,
    since: Any = None,
) -> "Axes":
    """A line of `agg` of metric `name` per `freq` bucket ("15m", "1h", "1d"); one line per value
    of dimension `by` when given. Empty buckets are gaps (mean) or zeros (sum, count)."""
    frame = _metric_rows(df_or_store, name, since)
    ax = _axes(ax)
    f = _pandas_freq(freq)
    ax.set_title(f"{name}: {agg} per {freq}" + (f" by {by}" if by else ""))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(name)
    if frame.empty:
        _no_data(ax, f"no {name} metrics")
        return ax
    if by is not None and by not in frame.columns:
        raise UsageError(f"Metric {name!r} has no dimension {by!r}; its dimensions: {', '.join(_dimension_columns(frame)) or 'none'}.")
    series = frame.set_index("createdAt")["value"]
    if by is None:
        lines = [(name, _aggregate(series.resample(f), agg))]
    else:
        keys = frame[by].astype(object).map(_label).to_numpy()
        lines = [(label, _aggregate(part.resample(f), agg)) for label, part in series.groupby(keys, sort=True)]
    for label, line in lines:
        _plot_series(ax, _times(line.index), line.to_numpy(dtype=float), label=label)
    if agg == "count":
        _integer_ticks(ax.yaxis)
    if by is not None:
        _legend(ax, title=by)
    _date_axis(ax, f)
    _style(ax)
    return ax


def _legend(ax: "Axes", **kwargs: Any) -> None:
    """A legend over the lines where it hides the least of them; beside the axes when long."""
    outside = len(ax.get_legend_handles_labels()[1]) > 6
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0} if outside else {"loc": "best"}
    size = _sizes()["note"]
    ax.legend(fontsize=size, title_fontsize=size, framealpha=0.85, **where, **kwargs)


@_themed_plot
def metric_by(
    df_or_store: Any, name: str, dimension: str, agg: str = "mean", ax: "Axes | None" = None, *, since: Any = None
) -> "Axes":
    """Bars of `agg` of metric `name` per value of `dimension`, largest first."""
    frame = _metric_rows(df_or_store, name, since)
    ax = _axes(ax)
    ax.set_title(f"{name}: {agg} by {dimension}")
    ax.set_xlabel(dimension)
    ax.set_ylabel(name)
    if frame.empty:
        _no_data(ax, f"no {name} metrics")
        return ax
    if dimension not in frame.columns:
        raise UsageError(
            f"Metric {name!r} has no dimension {dimension!r}; its dimensions: {', '.join(_dimension_columns(frame)) or 'none'}."
        )
    keys = frame[dimension].astype(object).map(_label).to_numpy()
    values = _aggregate(frame["value"].groupby(keys), agg).sort_values(ascending=False, kind="stable")
    labels = [str(k) for k in values.index]
    bars = ax.bar(labels, values.to_numpy(dtype=float), color="C0")
    ax.bar_label(bars, fmt="{:,.4g}", fontsize=_sizes()["note"], padding=2)
    ax.margins(y=0.12)  # room for the labels over the bars
    if agg == "count":
        _integer_ticks(ax.yaxis)
    if len(values) > 4:  # slanted, each ending under its bar
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", rotation_mode="anchor")
    _style(ax)
    return ax


@_themed_plot
def latency_distribution(
    df_or_store: Any, name: str = "latency_ms", bins: int = 30, ax: "Axes | None" = None, *, since: Any = None
) -> "Axes":
    """A histogram of metric `name` with its p50 and p95 drawn as vertical lines, labelled with
    their values at the top of the axes ("p95 = 4,265 ms"). The title says what the values cover:
    "all models" when they come from several (the p95 of all calls, not of one model's)."""
    import numpy as np

    frame = _metric_rows(df_or_store, name, since)
    ax = _axes(ax)
    ax.set_title(f"{name}: distribution")
    ax.set_xlabel(name)
    ax.set_ylabel("count")
    values = frame["value"].dropna().to_numpy(dtype=float)
    if not len(values):
        _no_data(ax, f"no {name} metrics")
        return ax
    covers = _coverage(frame)
    ax.set_title(f"{name}: distribution, " + (f"{covers} " if covers else "") + f"({len(values):,} values)")
    counts, _, _ = ax.hist(values, bins=bins, color="C0", alpha=0.75)
    _integer_ticks(ax.yaxis)
    ax.set_ylim(0, max(float(counts.max()), 1.0) * 1.35)  # a free strip at the top for the labels
    p50, p95 = np.percentile(values, [50, 95])
    size, unit = _sizes()["note"], _unit(name)
    texts = {q: f"{q} = {_number(value)}{unit}" for q, value in (("p50", p50), ("p95", p95))}
    # p50's label left of its line, p95's right of its own, so they cannot meet, unless one would
    # run out of the axes; then it turns inward, and p95's goes a line lower if they would overlap
    left, right = ax.get_xlim()
    fig = ax.figure
    axes_pt = max(ax.get_position().width * fig.get_figwidth() * 72, 1.0)
    width = {q: (len(t) * 0.6 * size + 6) / axes_pt for q, t in texts.items()}  # in axes fractions
    at = {q: (v - left) / ((right - left) or 1.0) for q, v in (("p50", p50), ("p95", p95))}
    side = {"p50": -1 if at["p50"] > width["p50"] else 1, "p95": 1 if at["p95"] + width["p95"] < 1 else -1}
    span = {q: sorted((at[q], at[q] + side[q] * width[q])) for q in texts}
    overlap = span["p50"][1] > span["p95"][0] and span["p95"][1] > span["p50"][0]
    for q, value, style, color in (("p50", p50, "--", "C1"), ("p95", p95, ":", "C3")):
        ax.axvline(value, color=color, linestyle=style, lw=1.5, label=f"{q} = {value:,.4g}")
        row = 1 if (q == "p95" and overlap) else 0
        ax.annotate(
            texts[q], xy=(value, 1), xycoords=("data", "axes fraction"),
            xytext=(4 * side[q], -4 - row * 1.6 * size), textcoords="offset points",
            ha="left" if side[q] > 0 else "right", va="top", color=color, fontsize=size, fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": _background(), "ec": "none", "alpha": 0.8},
        )
    _style(ax)
    return ax


@_themed_plot
def tokens_and_cost_by_model(df_or_store: Any, ax: "Axes | None" = None, *, since: Any = None) -> "Axes":
    """Prompt and completion tokens per model as bars, cost (USD) as diamonds on a twin axis in
    dollars. With no cost at all (no model priced) there is no cost axis, and the title says why.

    A model without a price shows the word "unpriced" instead of a cost; one priced only for some
    turns shows its cost and "+N unpriced"; one whose turns all failed shows "failed only", with no
    bars (not bars of 0 tokens) and no cost. Accepts a
    Store, a metrics() frame or a summary() frame.
    """
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    if _is_store(df_or_store):
        table = summary(df_or_store, since=since)
    elif "calls" in df_or_store.columns:
        table = df_or_store
    else:
        table = summary_of_frame(df_or_store)
    ax = _axes(ax)
    ax.set_title("Tokens and cost by model")
    ax.set_xlabel("model")
    ax.set_ylabel("tokens")
    if table.empty:
        _no_data(ax, "no chat turns recorded")
        return ax
    size = _sizes()["note"]
    labels = [f"{p}/{m}" if p else (m or "(unknown)") for p, m in zip(table["provider"], table["model"])]
    x = np.arange(len(labels))
    # a model whose calls all failed has no bars (not bars of 0 tokens) and says so
    failed_only = ((table["calls"] > 0) & (table["errors"] >= table["calls"])).to_numpy()
    prompt = np.where(failed_only, np.nan, table["prompt_tokens"].to_numpy(dtype=float))
    completion = np.where(failed_only, np.nan, table["completion_tokens"].to_numpy(dtype=float))
    ax.bar(x - 0.2, prompt, width=0.4, label="prompt", color="C0")
    ax.bar(x + 0.2, completion, width=0.4, label="completion", color="C2")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
    _integer_ticks(ax.yaxis)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, pos: f"{value:,.0f}"))
    tokens_top = float(np.nanmax(np.r_[prompt, completion], initial=0))
    ax.set_ylim(0, tokens_top * 1.35 if tokens_top > 0 else 1.0)  # room for the legend and the notes
    cost = table["cost_usd"].to_numpy(dtype=float)
    cost_ax = None
    if np.isfinite(cost).any():
        cost_ax = ax.twinx()
        cost_ax.set_ylabel("cost (USD)")
        cost_ax.plot(x, cost, "D", color="C3", ms=7, label="cost")
        top = float(np.nanmax(cost))
        cost_ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)
        cost_ax.yaxis.set_major_formatter(_usd_formatter())
    note = {"ha": "center", "va": "center", "color": "C3", "fontsize": size,
            "bbox": {"boxstyle": "round,pad=0.2", "fc": _background(), "ec": "C3", "lw": 0.8}}
    tops = np.fmax(prompt, completion)
    for xi in x[failed_only]:
        ax.annotate("failed only", (xi, 0), xytext=(0, 14), textcoords="offset points",
                    **{**note, "color": "0.35", "bbox": {**note["bbox"], "ec": "0.5"}})
    for xi, c, n, top_of_bars in zip(x, cost, table["unpriced_calls"], tops):
        if not np.isfinite(c):
            if n:  # else no turn completed, so there was nothing to price
                ax.annotate("unpriced", (xi, top_of_bars), xytext=(0, 12), textcoords="offset points", **note)
        elif n and cost_ax is not None:
            cost_ax.annotate(f"+{n} unpriced", (xi, c), xytext=(0, 12), textcoords="offset points", **note)
    handles, names = ax.get_legend_handles_labels()
    if cost_ax is not None:
        more, more_names = cost_ax.get_legend_handles_labels()
        handles, names = handles + more, names + more_names
    elif int(table["unpriced_calls"].sum()):  # turns completed, none of them priced
        ax.set_title("Tokens by model (cost: no prices set)")
    ax.legend(handles, names, fontsize=size, loc="upper center", ncols=3, frameon=False, columnspacing=1.2,
              handlelength=1.4)
    _style(ax, *([cost_ax] if cost_ax is not None else []))
    return ax


@_themed_plot
def error_rate_over_time(
    df_or_store: Any, freq: str = "1h", ax: "Axes | None" = None, *, since: Any = None
) -> "Axes":
    """The share of chat turns that failed, in percent, per `freq` bucket; buckets without turns
    are gaps. A turn is counted once whether or not its failure also recorded latency_ms."""
    import numpy as np
    import pandas as pd

    frame = _metric_rows(df_or_store, ["latency_ms", "error"], since)
    ax = _axes(ax)
    ax.set_title(f"Error rate per {freq}")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("error rate (%)")
    if frame.empty:
        _no_data(ax, "no chat turns recorded")
        return ax
    f = _pandas_freq(freq)
    dims = _dimension_columns(frame)
    group = frame[dims].astype(str).groupby(dims, sort=False, dropna=False).ngroup() if dims else 0
    keyed = frame.assign(group=group)
    counts = keyed.groupby([pd.Grouper(key="createdAt", freq=f), "group", "name"])["value"].agg(["count", "sum"])
    wide = counts.unstack("name", fill_value=0)

    def col(kind: str, name: str):
        return wide[(kind, name)] if (kind, name) in wide.columns else pd.Series(0, index=wide.index)

    turns = np.maximum(col("count", "latency_ms"), col("count", "error")).groupby(level="createdAt").sum()
    errors = col("sum", "error").groupby(level="createdAt").sum()
    rate = (errors / turns.where(turns > 0) * 100).resample(f).asfreq()
    _plot_series(ax, _times(rate.index), rate.to_numpy(dtype=float), color="C3")
    finite = rate.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    ax.set_ylim(0, max(5.0, float(finite.max(initial=0)) * 1.15))
    _date_axis(ax, f)
    _style(ax)
    return ax


def _dimension_columns(frame: "pd.DataFrame") -> list[str]:
    return [c for c in frame.columns if c not in ("id", "createdAt", "name", "value")]
