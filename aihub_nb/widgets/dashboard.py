"""Dashboard: a panel of the hub's metrics, with a summary per model.

    >>> Dashboard(hub.store)                 # or %aihub dashboard
    >>> dash.metric.value = "ttft_ms"; dash.group.value = "model"     # plots follow
    >>> dash.auto_refresh(5)                 # redraw every 5 s while turns run; dash.stop()

Choose a metric, a dimension to group it by ("(none)" for no grouping) and a time window, and
tick auto-refresh to redraw every few seconds while turns run (close() stops it). The
panel draws the metric over time (a line per group), by group as bars (or its distribution with
p50/p95 when ungrouped, over all models), and tokens and cost per model; under it, the per-model
summary (a model whose calls all failed flagged "failed only"); an empty hub shows a hint instead.
The time plot's bucket follows the data (see _bucket_for: 20 to 60 points over the span, from
10 ms for a notebook's first calls to weeks; larger when calls come in bursts). Figures are rendered to PNG into an `ipywidgets.Image`, so refreshing
from a timer thread is safe. Errors show in the panel's own error line, never as a traceback from
a callback.
"""

from __future__ import annotations

import io
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .. import monitoring, plots
from ..monitoring.timespan import parse_span
from .base import Panel

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..store import Store

__all__ = ["Dashboard"]

NO_GROUP = "(none)"
WINDOWS = ("15m", "1h", "24h", "7d", "all")
AUTO_SECONDS = 5.0  # the auto-refresh checkbox's period
WINDOW_SECONDS = {w: parse_span(w).total_seconds() for w in WINDOWS if w != "all"}
# the over-time plot's buckets, smallest first: sub-second ones for a notebook's first calls
BUCKETS = (
    ("10ms", 0.01), ("20ms", 0.02), ("50ms", 0.05), ("100ms", 0.1), ("200ms", 0.2), ("500ms", 0.5),
    *(
        (label, parse_span(label).total_seconds())
        for label in (
            "1s", "2s", "5s", "10s", "15s", "30s", "1m", "2m", "5m", "10m", "15m", "30m",
            "1h", "2h", "3h", "6h", "12h", "1d", "2d", "7d", "4w",
        )
    ),
)
MAX_BUCKETS = 60
EMPTY_HINT = (
    '<p style="color:var(--jp-ui-font-color2, #666);margin:12px 4px">No model calls yet: run a chat cell '
    "(<code>%%aihub chat NAME</code>), then Refresh.</p>"
)
FIGSIZE = (11, 7.5)  # inches, drawn at DPI: 880 x 600 px
DPI = 80
FONT_SIZE = 10.0  # the plots' text is sized from it (aihub_nb.plots.FONT_SCALE), whatever rcParams say


class Dashboard(Panel):
    """Metric, grouping and window choices, three plots and a summary table of one store."""

    def __init__(self, store: "Store", *, metric: str | None = None, window: str = "all", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.figure: Figure | None = None
        self.summary_frame: pd.DataFrame | None = None
        self.frame: pd.DataFrame | None = None
        self._syncing = False
        self._refresh_lock = threading.Lock()
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()

        self.metric = widgets.Dropdown(description="metric", options=[], layout=widgets.Layout(width="260px"))
        self.group = widgets.Dropdown(description="group by", options=[NO_GROUP], value=NO_GROUP,
                                      layout=widgets.Layout(width="220px"))
        self.window = widgets.Dropdown(description="window", options=list(WINDOWS), value=window,
                                       layout=widgets.Layout(width="160px"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="100px"))
        self.auto = widgets.Checkbox(description=f"auto-refresh ({AUTO_SECONDS:g} s)", value=False, indent=False,
                                     layout=widgets.Layout(width="160px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.table = widgets.HTML()
        self.hint = widgets.HTML(EMPTY_HINT, layout=widgets.Layout(display="none"))
        self.set_children(
            [self.metric, self.group, self.window, self.refresh_button, self.auto],
            self.error,
            self.hint,
            self.image,
            self.table,
            self.status,
        )
        self.refresh_button.on_click(lambda _button: self.refresh())
        for control in (self.metric, self.group, self.window):
            control.observe(self._on_change, names="value")
        self.auto.observe(self._on_auto, names="value")
        self._wanted_metric = metric
        self.refresh()

    # -- drawing

    def _on_change(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.refresh()

    def refresh(self) -> None:
        """Query the store again and redraw everything; a failure shows in the error line."""
        with self._refresh_lock:
            started = time.perf_counter()
            if not self.guard(self._refresh):  # shown in the panel, not raised into a widget callback
                return
            self.status.value = (
                f'<small style="color:#666">refreshed {time.strftime("%H:%M:%S")} '
                f"in {time.perf_counter() - started:.2f} s</small>"
            )

    def _refresh(self) -> None:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        since = None if self.window.value == "all" else self.window.value
        names = monitoring.metric_names(self.store)
        self._sync(self.metric, names, self._wanted_metric or self.metric.value or _first_choice(names))
        self._wanted_metric = None
        name = self.metric.value
        frame = monitoring.metrics(self.store, name=name, since=since) if name else None
        dims = plots._dimension_columns(frame) if frame is not None else []
        if frame is not None and frame.empty:  # nothing in this window: keep the choices there were
            dims = [d for d in self.group.options if d != NO_GROUP]
        self._sync(self.group, [NO_GROUP, *dims], self.group.value if self.group.value in dims else NO_GROUP)
        table = monitoring.summary(self.store, since=since)
        group = None if self.group.value == NO_GROUP else self.group.value

        if name is None:  # an empty hub: a hint of what to do, not an empty figure
            self.frame, self.summary_frame, self.figure = frame, table, None
            self.image.layout.display = "none"
            self.hint.layout.display = None
            self.table.value = ""
            return
        from ..theme import of_store, plot_style

        with matplotlib.rc_context({"font.size": FONT_SIZE, **plot_style(of_store(self.store))}):
            fig = Figure(figsize=FIGSIZE, layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplot_mosaic([["time", "time"], ["by", "tokens"]])
            top, left, right = axes["time"], axes["by"], axes["tokens"]
            freq = _bucket_for(frame, self.window.value)
            plots.metric_over_time(frame, name, freq=freq, ax=top, by=group)
            if group is None:  # all of the window's values, whatever their model
                plots.latency_distribution(frame, name=name, ax=left)
            else:
                plots.metric_by(frame, name, group, ax=left)
            plots.tokens_and_cost_by_model(table, ax=right)
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=DPI)
        self.frame, self.summary_frame, self.figure = frame, table, fig
        self.image.value = png.getvalue()
        self.image.layout.display = None
        self.hint.layout.display = "none"
        self.table.value = summary_html(table)

    def _sync(self, dropdown: widgets.Dropdown, options: list[str], value: str | None) -> None:
        """Set a dropdown's options and value without firing a refresh."""
        self._syncing = True
        try:
            if list(dropdown.options) != list(options):
                dropdown.options = options
            dropdown.value = value if value in options else (options[0] if options else None)
        finally:
            self._syncing = False

    # -- timer

    def _on_auto(self, change: dict[str, Any]) -> None:
        if change["new"] and not self.refreshing:
            self.auto_refresh(AUTO_SECONDS)
        elif not change["new"] and self.refreshing:
            self.stop()

    def auto_refresh(self, seconds: float = AUTO_SECONDS) -> "Dashboard":
        """Refresh every `seconds` from a background thread until stop() or close()."""
        self._halt()
        stop = self._stop = threading.Event()

        def loop() -> None:
            while not stop.wait(seconds):
                self.refresh()

        self._timer = threading.Thread(target=loop, name="aihub-dashboard", daemon=True)
        self._timer.start()
        self.auto.value = True
        return self

    def stop(self) -> None:
        """Stop the auto-refresh timer (no-op when none runs)."""
        self._halt()
        self.auto.value = False

    def _halt(self) -> None:
        self._stop.set()
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=10)

    @property
    def refreshing(self) -> bool:
        return self._timer is not None and self._timer.is_alive()

    def close(self) -> None:
        self.stop()
        super().close()


def _first_choice(names: list[str]) -> str | None:
    return "latency_ms" if "latency_ms" in names else (names[0] if names else None)


def _bucket_for(frame: "pd.DataFrame | None", window: str = "all") -> str:
    """The over-time plot's bucket, from the data's span and how its points spread over it.

    The smallest of BUCKETS that puts at most MAX_BUCKETS over the span (a 40 s session of steady
    calls: "1s"; 3 hours: "5m"; 3 days: "2h") when the points then form a line; when most of
    them would be dots between empty buckets (a call every few seconds, or bursts), the next
    larger bucket, until at most a quarter of the filled buckets stand alone, never merging two
    distinct times into a single dot. With no span to measure (one point, or none) the window's
    length stands in for it ("15m": "15s"); "1m" for window "all"."""
    import numpy as np

    times = None
    if frame is not None and len(frame) >= 2:
        times = frame["createdAt"].to_numpy(dtype="datetime64[ns]").astype("int64")  # ns, as pandas buckets them
        span = float(times.max() - times.min()) / 1e9
    else:
        span = 0.0
    if span <= 0:
        times, span = None, WINDOW_SECONDS.get(window, MAX_BUCKETS * 60)
    fitting = [(label, seconds) for label, seconds in BUCKETS if span / seconds <= MAX_BUCKETS] or [BUCKETS[-1]]
    if times is None:
        return fitting[0][0]
    chosen = fitting[0][0]
    for label, seconds in fitting:
        filled = np.unique(times // round(seconds * 1e9))
        if len(filled) < 2:  # one dot: keep the last bucket that still showed a change
            break
        chosen = label
        step = np.diff(filled) == 1
        alone = ~np.r_[False, step] & ~np.r_[step, False]
        if alone.sum() * 4 <= len(filled):
            break
    return chosen


def summary_html(table: "pd.DataFrame") -> str:
    """The summary as a table like the hub's others: counts with separators, calls whose usage was
    not reported (with their estimated tokens, apart from the reported ones), cost as "$…",
    "unpriced" or "≥ $… (+N unpriced)" ("–" when no turn was completed to be priced), latencies
    in ms. A model whose calls all failed says "failed only" and is greyed out."""
    from ..display import html_table

    if table is None or table.empty:
        return '<p style="color:#666">No chat turns in this window.</p>'
    rows = []
    for r in table.itertuples(index=False):
        failed_only = _failed_only(r.calls, r.errors)
        if r.cost_usd != r.cost_usd:  # NaN: no turn of this model had a price
            cost = "unpriced" if r.unpriced_calls else "–"
        elif r.unpriced_calls:
            cost = f"≥ {_usd(r.cost_usd)} (+{r.unpriced_calls} unpriced)"
        else:
            cost = _usd(r.cost_usd)
        missing = "–"
        if r.usage_missing_calls:
            missing = (
                f"{r.usage_missing_calls:,} call{'s' if r.usage_missing_calls != 1 else ''} "
                f"(estimated ~{r.prompt_tokens_est:,} → ~{r.completion_tokens_est:,} tokens)"
            )
        tokens = ("–", "–") if failed_only else (f"{r.prompt_tokens:,}", f"{r.completion_tokens:,}")
        rows.append({
            "provider": r.provider, "model": f"{r.model} (failed only)" if failed_only else r.model,
            "calls": f"{r.calls:,}", "errors": f"{r.errors:,}", "error rate": f"{r.error_rate:.1%}",
            "prompt tokens": tokens[0], "completion tokens": tokens[1], "usage not reported": missing,
            "cost (USD)": cost, "p50 latency": _ms(r.latency_p50_ms), "p95 latency": _ms(r.latency_p95_ms),
            "failed only": failed_only,
        })
    columns = [c for c in rows[0] if c != "failed only"]
    right = ("calls", "errors", "error rate", "prompt tokens", "completion tokens", "cost (USD)", "p50 latency",
             "p95 latency")
    return html_table(rows, columns, right=right, dim=lambda row: row["failed only"])


def _failed_only(calls: int, errors: int) -> bool:
    return calls > 0 and errors >= calls


def _usd(value: float) -> str:
    """Dollars to four decimals, more below $0.001 (two significant digits), so a cheap model's
    $0.000031 never reads as $0.0000."""
    decimals = 4 if value == 0 or abs(value) >= 0.001 else 1 - math.floor(math.log10(abs(value)))
    return f"${value:,.{decimals}f}"


def _ms(value: float) -> str:
    return "–" if value != value else f"{value:,.0f} ms"
