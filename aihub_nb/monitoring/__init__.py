"""Monitoring: metrics, prices and the store's records as pandas DataFrames.

    >>> log_metric(store, "latency_ms", 812.5, provider="OPENAI", model="gpt-4o-mini")
    >>> metrics(store, "latency_ms", since="1h", provider="OPENAI")        # one row per metric
    >>> set_price(store, "gpt-4o-mini", 0.15, 0.60, provider="OPENAI")    # USD per million tokens
    >>> summary(store, since="24h")                                        # one row per model

Where each job lives:

    timespan   parse_time / parse_span / pandas_freq: the one reading of "15m", "1h", "7d", ISO
               times and datetimes, for every since= / until= and the plots' buckets
    loader     one SQL query on the store's per-thread read connection (Store.reader), then the
               columns converted whole by kind; every frame goes through it
    frames     metrics (one column per dimension), network_calls, messages, jobs,
               tool_invocations, streams, metric_names
    writer     MetricWriter, the one metric write path: chat turns and tool calls `record` (written
               before the turn returns), `log_metric` `log`s (batched)
    pricing    set_price, prices, price_for, turn_cost, image_price (None when unpriced, never $0)
    summary    the per-model table of chat turns

Every frame is built at the edge from one SQL query, column by column (never row by row), with
times as `datetime64[ms, UTC]`, numbers numeric, small JSON parsed, secrets masked, and newest
rows last. Reads use the store's read-only connection of this thread, so a long read never holds
the store's lock while a chat turn is writing: SQLite's WAL lets them run side by side.

pandas is imported inside the functions that need it, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..redact import mask_secrets
from .frames import jobs, messages, metric_names, metrics, network_calls, streams, tool_invocations
from .pricing import image_price, images_cost, package_price, per_image_for, price_for, prices, remove_price, set_price, turn_cost, turn_price
from .summary import SUMMARY_COLUMNS, TURN_METRICS, summary, summary_of_frame
from .timespan import parse_time
from .writer import MetricWriter, close_writer, flush_metrics, log_metric, metric_writer, record_metrics

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "MetricWriter",
    "SUMMARY_COLUMNS",
    "TURN_METRICS",
    "close",
    "flush_metrics",
    "image_price",
    "images_cost",
    "jobs",
    "log_metric",
    "mask_secrets",
    "messages",
    "metric_names",
    "metric_writer",
    "metrics",
    "network_calls",
    "package_price",
    "parse_time",
    "per_image_for",
    "price_for",
    "prices",
    "record_metrics",
    "remove_price",
    "set_price",
    "streams",
    "summary",
    "summary_of_frame",
    "tool_invocations",
    "turn_cost",
    "turn_price",
]


def close(store: "Store") -> None:
    """Write pending metrics and close the store's read connections (Hub.close); reads reopen them."""
    close_writer(store)
    store.close_readers()
