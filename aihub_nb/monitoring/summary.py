"""The per-model summary of chat turns: calls, errors, tokens, cost, latency quantiles.

    >>> summary(store, since="24h")                 # one row per (provider, model)
    >>> summary_of_frame(metrics(store))            # the same from a frame already loaded
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loader import as_floats, fetch, json_object, object_columns
from .timespan import time_where

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["SUMMARY_COLUMNS", "TURN_METRICS", "summary", "summary_of_frame"]

# The metrics a chat turn records (aihub_nb.chat), which summary() aggregates.
TURN_METRICS = (
    "latency_ms", "error", "prompt_tokens", "completion_tokens", "cost_usd",
    "usage_missing", "prompt_tokens_est", "completion_tokens_est",
)

_BASE_METRIC_COLUMNS = ("id", "createdAt", "name", "value")

SUMMARY_COLUMNS = (
    "provider", "model", "calls", "errors", "error_rate", "prompt_tokens", "completion_tokens",
    "usage_missing_calls", "prompt_tokens_est", "completion_tokens_est",
    "cost_usd", "unpriced_calls", "unpriced", "latency_p50_ms", "latency_p95_ms",
)


def summary(store: "Store", /, since: Any = None, until: Any = None) -> "pd.DataFrame":
    """One row per (provider, model) over the chat-turn metrics:

    calls, errors, error_rate, prompt_tokens, completion_tokens, usage_missing_calls,
    prompt_tokens_est, completion_tokens_est, cost_usd, unpriced_calls, unpriced, latency_p50_ms,
    latency_p95_ms.

    prompt_tokens and completion_tokens are what the servers reported. usage_missing_calls counts
    the completed calls whose server reported no token counts; their estimated counts are in the
    *_est columns, never added to the reported ones.

    cost_usd sums the turns that had a price; it is NaN when none had one. unpriced_calls counts
    completed turns that carried no cost (the model had no price then; failed turns are never
    priced and do not count), and `unpriced` is
    True when there is any, so a partly priced total reads as "at least". Counts and sums are
    done in SQL per distinct dimension set; only latency values travel to pandas, for quantiles.
    """
    import pandas as pd

    bounds: list[str] = []
    time_params: list[Any] = []
    time_where('"createdAt"', since, until, bounds, time_params)
    when = "".join(f" AND {w}" for w in bounds)
    marks = ", ".join("?" for _ in TURN_METRICS)
    _, groups = fetch(
        store,
        f'SELECT "dimensions", "name", count(*), sum("value") FROM "Metric" WHERE "name" IN ({marks}){when} '
        'GROUP BY "name", "dimensions"',
        [*TURN_METRICS, *time_params],
    )
    _, latencies = fetch(
        store, f'SELECT "dimensions", "value" FROM "Metric" WHERE "name" = ?{when}', ["latency_ms", *time_params]
    )

    parsed: dict[Any, tuple[str, str, bool]] = {}

    def model_of(text: Any) -> tuple[str, str, bool]:
        if text not in parsed:
            dims = json_object(text)
            failed = dims.get("status") in _FAILED
            parsed[text] = (str(dims.get("provider") or ""), str(dims.get("model") or ""), failed)
        return parsed[text]

    partials = pd.DataFrame(
        [(*model_of(dims), dims, name, n, total) for dims, name, n, total in groups],
        columns=["provider", "model", "failed", "group", "name", "n", "total"],
    )
    table = object_columns(latencies, 2)
    codes, distinct = pd.factorize(table[:, 0], use_na_sentinel=True)
    keys = [model_of(d) for d in distinct] + [model_of(None)]
    lat = pd.DataFrame(
        {
            "provider": [k[0] for k in keys],
            "model": [k[1] for k in keys],
        }
    ).iloc[codes].reset_index(drop=True)
    lat["value"] = as_floats(table[:, 1])
    return _combine(partials, lat)


def _combine(partials: "pd.DataFrame", latencies: "pd.DataFrame") -> "pd.DataFrame":
    """Per-model summary from per-(dimension set, metric name) counts and sums plus latency values.

    A turn writes latency_ms (and error when it failed) under one dimension set, so the turns of a
    set are max(count latency_ms, count error): right whether or not failed turns record latency.
    Only completed turns are priced, so a set whose status is failed / interrupted has no
    unpriced turns even when it used tokens.
    """
    import numpy as np
    import pandas as pd

    if partials.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=_SUMMARY_DTYPES[c]) for c in SUMMARY_COLUMNS})
        return frame
    wide = partials.pivot_table(
        index=["provider", "model", "failed", "group"], columns="name", values=["n", "total"], aggfunc="sum", fill_value=0
    )
    def col(kind: str, name: str):
        return wide[(kind, name)] if (kind, name) in wide.columns else pd.Series(0, index=wide.index, dtype=float)

    per_set = pd.DataFrame(
        {
            "calls": np.maximum(col("n", "latency_ms"), col("n", "error")),
            "errors": col("total", "error"),
            "prompt_tokens": col("total", "prompt_tokens"),
            "completion_tokens": col("total", "completion_tokens"),
            "usage_missing_calls": col("total", "usage_missing"),
            "prompt_tokens_est": col("total", "prompt_tokens_est"),
            "completion_tokens_est": col("total", "completion_tokens_est"),
            "cost_usd": col("total", "cost_usd"),
            "priced_calls": col("n", "cost_usd"),
            # completed turns without a cost, whether or not the provider reported tokens (a
            # failed turn records latency_ms and error, and is never priced)
            "unpriced_calls": np.maximum(
                np.maximum(
                    col("n", "latency_ms") - col("n", "error"),
                    np.maximum(col("n", "prompt_tokens"), col("n", "completion_tokens")),
                )
                - col("n", "cost_usd"),
                0,
            ).where(~wide.index.get_level_values("failed"), 0),
        }
    )
    out = per_set.groupby(level=["provider", "model"], sort=True).sum()
    out["cost_usd"] = out["cost_usd"].where(out["priced_calls"] > 0)
    out["error_rate"] = (out["errors"] / out["calls"].where(out["calls"] > 0)).fillna(0.0)
    out["unpriced"] = out["unpriced_calls"] > 0
    if len(latencies):
        q = latencies.groupby(["provider", "model"])["value"].quantile([0.5, 0.95]).unstack()
        out["latency_p50_ms"] = q[0.5].reindex(out.index)
        out["latency_p95_ms"] = q[0.95].reindex(out.index)
    else:
        out["latency_p50_ms"] = np.nan
        out["latency_p95_ms"] = np.nan
    out = out.reset_index()
    for name in (
        "calls", "errors", "prompt_tokens", "completion_tokens", "usage_missing_calls", "prompt_tokens_est",
        "completion_tokens_est", "unpriced_calls",
    ):
        out[name] = out[name].round().astype("int64")
    return out[list(SUMMARY_COLUMNS)].astype(_SUMMARY_DTYPES)


_FAILED = ("failed", "interrupted")

_SUMMARY_DTYPES = {
    "provider": "str", "model": "str", "calls": "int64", "errors": "int64", "error_rate": "float64",
    "prompt_tokens": "int64", "completion_tokens": "int64", "usage_missing_calls": "int64",
    "prompt_tokens_est": "int64", "completion_tokens_est": "int64", "cost_usd": "float64", "unpriced_calls": "int64",
    "unpriced": "bool", "latency_p50_ms": "float64", "latency_p95_ms": "float64",
}


def summary_of_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """summary() computed from an already loaded metrics() frame instead of the store."""
    base = set(_BASE_METRIC_COLUMNS)
    frame = frame[frame["name"].isin(TURN_METRICS)]
    dims = [c for c in frame.columns if c not in base]
    for key in ("provider", "model"):
        if key not in frame.columns:
            frame = frame.assign(**{key: ""})
    keyed = frame.assign(
        # as objects first: a categorical refuses "" as a value it has not seen
        provider=frame["provider"].astype(object).fillna("").astype(str),
        model=frame["model"].astype(object).fillna("").astype(str),
        group=frame[dims].astype(str).groupby(dims, sort=False, dropna=False).ngroup() if dims and len(frame) else 0,
        failed=frame["status"].isin(_FAILED) if "status" in frame.columns else False,
    )
    partials = (
        keyed.groupby(["provider", "model", "failed", "group", "name"])["value"].agg(n="count", total="sum").reset_index()
    )
    lat = keyed.loc[keyed["name"] == "latency_ms", ["provider", "model", "value"]]
    return _combine(partials, lat)
