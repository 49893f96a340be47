"""Plots of the hub's metrics, one matplotlib Axes each.

    >>> metric_over_time(store, "latency_ms", freq="15m", agg="p95")
    >>> metric_by(store, "latency_ms", "model")
    >>> latency_distribution(store)
    >>> tokens_and_cost_by_model(store)
    >>> error_rate_over_time(store, freq="1h")

Every function takes either a Store (and queries it, `since=` bounding the rows) or a DataFrame
already loaded with `aihub_nb.monitoring.metrics()`, draws on `ax` (a new figure when None), sets
the title and axis labels, and returns the Axes. Times are drawn in UTC.

matplotlib and pandas are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import UsageError

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

_AGGS = ("mean", "sum", "count", "min", "max", "median", "p50", "p90", "p95", "p99")
_FREQ = re.compile(r"^\s*(\d*)\s*(s|m|min|h|d|w)\s*$", re.I)
_FREQ_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}


def _pandas_freq(freq: str) -> str:
    """'15m' -> '15min', '7d' -> '7D', '2w' -> '2W'; anything else is passed to pandas as is."""
    m = _FREQ.match(freq)
    if m:
        return (m.group(1) or "1") + _FREQ_UNITS[m.group(2).lower()]
    from pandas.tseries.frequencies import to_offset

    try:
        to_offset(freq)
    except (TypeError, ValueError):
        raise UsageError(f"Cannot use {freq!r} as a time bucket; give one like '1m', '15m', '1h', '1d' or '1w'.") from None
    return freq


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
    from .monitoring import metrics

    wanted = [names] if isinstance(names, str) else list(names)
    if _is_store(df_or_store):
        return metrics(df_or_store, name=wanted, since=since)
    frame = df_or_store
    if "name" not in getattr(frame, "columns", ()):
        raise UsageError("Pass a Store or a DataFrame from aihub_nb.monitoring.metrics() (it has a 'name' column).")
    return frame[frame["name"].isin(wanted)]


def _axes(ax: "Axes | None") -> "Axes":
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(8, 4))
    return ax


def _times(index) -> Any:
    """A tz-aware DatetimeIndex as naive UTC datetime64 values, which matplotlib draws directly."""
    return index.tz_convert("UTC").tz_localize(None).to_numpy() if getattr(index, "tz", None) else index.to_numpy()


def _date_axis(ax: "Axes", freq: str | None = None) -> None:
    """Concise date ticks; a single time bucket gets one bucket of room on each side (else
    matplotlib spreads the axis over years around one point)."""
    import matplotlib.dates as mdates
    import pandas as pd

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    if freq and xs and len(set(xs)) == 1:
        t, span = pd.Timestamp(xs[0]), pd.Timedelta(freq)
        ax.set_xlim(t - span, t + span)


def _no_data(ax: "Axes", message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _label(value: Any) -> str:
    if value is None or value != value:  # None or NaN
        return "(none)"
    return str(value)


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
        ax.plot(_times(line.index), line.to_numpy(dtype=float), marker="o" if len(line) <= 48 else None, ms=3, label=label)
    if by is not None:
        ax.legend(title=by, fontsize="small")
    _date_axis(ax, f)
    return ax


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
    bars = ax.bar([str(k) for k in values.index], values.to_numpy(dtype=float), color="C0")
    ax.bar_label(bars, fmt="{:,.4g}", fontsize="small")
    if len(values) > 4:
        ax.tick_params(axis="x", labelrotation=30)
    return ax


def latency_distribution(
    df_or_store: Any, name: str = "latency_ms", bins: int = 30, ax: "Axes | None" = None, *, since: Any = None
) -> "Axes":
    """A histogram of metric `name` with its p50 and p95 drawn as labelled vertical lines."""
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
    ax.hist(values, bins=bins, color="C0", alpha=0.75)
    p50, p95 = np.percentile(values, [50, 95])
    for q, value, style in (("p50", p50, "--"), ("p95", p95, ":")):
        ax.axvline(value, color="C3" if q == "p95" else "C1", linestyle=style, label=f"{q} = {value:,.4g}")
        ax.annotate(
            q, xy=(value, 1), xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
            fontsize="small",
        )
    ax.legend(fontsize="small")
    return ax


def tokens_and_cost_by_model(df_or_store: Any, ax: "Axes | None" = None, *, since: Any = None) -> "Axes":
    """Prompt and completion tokens per model as bars, cost (USD) as diamonds on a twin axis.

    A model without a price shows the word "unpriced" instead of a cost; one priced only for some
    turns shows its cost and "+N unpriced"; one whose turns all failed shows no cost. Accepts a
    Store, a metrics() frame or a summary() frame.
    """
    import numpy as np

    from .monitoring import summary, summary_of_frame

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
    labels = [f"{p}/{m}" if p else (m or "(unknown)") for p, m in zip(table["provider"], table["model"])]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, table["prompt_tokens"].to_numpy(dtype=float), width=0.4, label="prompt tokens", color="C0")
    ax.bar(x + 0.2, table["completion_tokens"].to_numpy(dtype=float), width=0.4, label="completion tokens", color="C2")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
    cost_ax = ax.twinx()
    cost_ax.set_ylabel("cost (USD)")
    cost = table["cost_usd"].to_numpy(dtype=float)
    cost_ax.plot(x, cost, "D", color="C3", label="cost (USD)")
    top = np.nanmax(cost) if np.isfinite(cost).any() else 1.0
    cost_ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)
    tokens_top = float(np.nanmax(table[["prompt_tokens", "completion_tokens"]].to_numpy(dtype=float), initial=0))
    ax.set_ylim(0, tokens_top * 1.35 if tokens_top > 0 else 1.0)  # room for the legend and the notes
    note = {"ha": "center", "va": "center", "color": "C3", "fontsize": "small",
            "bbox": {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "C3", "lw": 0.8}}
    tops = np.fmax(table["prompt_tokens"].to_numpy(dtype=float), table["completion_tokens"].to_numpy(dtype=float))
    for xi, c, n, top_of_bars in zip(x, cost, table["unpriced_calls"], tops):
        if not np.isfinite(c):
            if n:  # else no turn completed, so there was nothing to price
                ax.annotate("unpriced", (xi, top_of_bars), xytext=(0, 12), textcoords="offset points", **note)
        elif n:
            cost_ax.annotate(f"+{n} unpriced", (xi, c), xytext=(0, 12), textcoords="offset points", **note)
    handles, names = ax.get_legend_handles_labels()
    more, more_names = cost_ax.get_legend_handles_labels()
    ax.legend(handles + more, names + more_names, fontsize="small", loc="upper center", ncols=3, frameon=False)
    return ax


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
    ax.plot(_times(rate.index), rate.to_numpy(dtype=float), marker="o", ms=3, color="C3")
    finite = rate.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    ax.set_ylim(0, max(5.0, float(finite.max(initial=0)) * 1.15))
    _date_axis(ax, f)
    return ax


def _dimension_columns(frame: "pd.DataFrame") -> list[str]:
    return [c for c in frame.columns if c not in ("id", "createdAt", "name", "value")]
