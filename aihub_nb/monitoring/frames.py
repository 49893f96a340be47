"""The store's records as DataFrames: metrics (one column per dimension), network calls,
messages, jobs, tool invocations and response streams.

Every frame is built at the edge from one SQL query through the loader (aihub_nb.monitoring.loader),
column by column (never row by row), with times as `datetime64[ms, UTC]`, numbers numeric, small
JSON parsed, secrets masked, and newest rows last.

Metric dimensions are JSON text per row. `metrics()` turns them into one column per key without
parsing every row: it reads the text, factorizes it (rows share a handful of distinct dimension
sets) and parses each distinct string once. That keeps a million-row load within a small factor
of a bare `pandas.read_sql`, and needs no registry of keys that could go stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, UsageError
from ..redact import mask_secrets
from .loader import (
    as_floats, as_times, fetch, json_object, load, ms, newest_last, object_columns, objects, where_in, where_sql,
)
from .timespan import time_where

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["jobs", "messages", "metric_names", "metrics", "network_calls", "streams", "tool_invocations"]

# ---------------------------------------------------------------- metrics


def metrics(
    store: "Store",
    name: str | Iterable[str] | None = ...,  # type: ignore[assignment]  # ...: not given
    /,
    since: Any = None,
    until: Any = None,
    **dimension_filters: Any,
) -> "pd.DataFrame":
    """Metric rows as a DataFrame: id, createdAt (UTC), name, value, then one column per dimension.

    `name` is one metric name or several; `since` / `until` bound createdAt (datetime, ISO string,
    or "15m" / "1h" / "7d" / "2w" back from now); each keyword filters a dimension by equality
    (a list means any of them). Newest rows last. `name=` as a keyword is the metric name too,
    unless the name was given first: `metrics(store, None, name="x")` filters a dimension `name`.
    """
    if name is ...:
        name = dimension_filters.pop("name", None)
    where, params = _where('"createdAt"', since, until, {'"name"': name})
    for key, value in dimension_filters.items():
        if isinstance(value, (list, tuple, set, frozenset)) and not value:
            where.append("0")  # any of nothing
            continue
        where_in(_dimension_sql(key), value, where, params)
    # a value written outside aihub_nb that is not a number reads as NaN rather than failing the frame
    value = 'CASE WHEN typeof("value") IN (\'real\', \'integer\') THEN "value" END AS "value"'
    sql = f'SELECT "id", {ms("createdAt")}, "name", {value}, "dimensions" FROM "Metric"'
    sql += where_sql(where)
    _, rows = fetch(store, sql, params)
    return _metric_frame(rows, extra_keys=list(dimension_filters))


def _json_key(key: str) -> str:
    """A JSON path member for `key`, quoted so keys with spaces or dots work: $."my key"."""
    return '"' + key + '"'


def _dimension_sql(key: str) -> str:
    """SQL for the value of dimension `key`: a JSON path where SQLite's paths can spell the key,
    else (a key with " or \\) a look-up by exact key."""
    if not isinstance(key, str):
        raise UsageError(f"A dimension filter needs a text key, not {key!r}.")
    literal = "'" + key.replace("'", "''") + "'"
    if '"' in key or "\\" in key:
        return f'(SELECT value FROM json_each("dimensions") WHERE key = {literal})'
    path = ("$." + _json_key(key)).replace("'", "''")
    return f"json_extract(\"dimensions\", '{path}')"


def _metric_frame(rows: list[tuple], extra_keys: list[str] = ()) -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    table = object_columns(rows, 5)
    codes, distinct = pd.factorize(table[:, 4], use_na_sentinel=True)
    decoded = [json_object(mask_secrets(text)) for text in distinct]  # once per distinct set: cheap
    keys: dict[str, None] = {}
    for dims in decoded:
        keys.update(dict.fromkeys(dims))
    keys.update(dict.fromkeys(k for k in extra_keys if k not in keys))
    data: dict[str, Any] = {
        "id": table[:, 0],
        "createdAt": as_times(table[:, 1]),
        "name": table[:, 2],
        "value": as_floats(table[:, 3]),
    }
    for key in keys:
        # each dimension is a categorical column: its values per distinct dimension string,
        # factorized once, then spread to the rows by the rows' codes (-1, a NULL, stays missing)
        values = [_hashable(dims.get(key)) for dims in decoded]
        column = key if key not in data else f"dim_{key}"
        if _mixes_bools_and_numbers(values):  # True == 1 to a categorical: keep each value as logged
            data[column] = objects([*values, None])[codes]
            continue
        sub_codes, categories = pd.factorize(pd.array(values, dtype=object))
        lookup = np.append(sub_codes, -1).astype(np.int64)
        data[column] = pd.Categorical.from_codes(lookup[codes], categories=categories)
    frame = pd.DataFrame(data, copy=False)
    if not len(frame):
        frame = frame.astype({c: "str" for c in frame.columns if c not in ("createdAt", "value")})
    return newest_last(frame)


def _mixes_bools_and_numbers(values: list[Any]) -> bool:
    types = {type(v) for v in values}
    return bool in types and (int in types or float in types)


def _hashable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)


def metric_names(store: "Store") -> list[str]:
    """The distinct metric names, sorted; a skip-scan of the (name, createdAt) index, not a table scan."""
    sql = (
        'WITH RECURSIVE n(x) AS (SELECT min("name") FROM "Metric" '
        'UNION ALL SELECT (SELECT min("name") FROM "Metric" WHERE "name" > x) FROM n WHERE x IS NOT NULL) '
        "SELECT x FROM n WHERE x IS NOT NULL"
    )
    _, rows = fetch(store, sql)
    return [r[0] for r in rows]


# ---------------------------------------------------------------- other records as frames


def network_calls(
    store: "Store",
    /,
    since: Any = None,
    until: Any = None,
    status: str | Iterable[str] | None = None,
    endpoint: str | None = None,
    method: str | Iterable[str] | None = None,
) -> "pd.DataFrame":
    """Recorded HTTP calls, newest last. `endpoint` matches a part of the URL; `status` is
    "success" / "error" (or a list); bodies and headers have API keys masked."""
    if method is not None:
        method = method.upper() if isinstance(method, str) else [m.upper() for m in method]
    where, params = _where('"createdAt"', since, until, {'"status"': status, 'upper("method")': method})
    if endpoint is not None:
        where.append("instr(\"endpoint\", ?) > 0")
        params.append(endpoint)
    sql = (
        f'SELECT "id", {ms("createdAt")}, "method", "endpoint", "status", "statusCode", '
        f'"durationMs", "error", "body", "response", "requestHeaders", "responseHeaders" FROM "NetworkCall"'
    )
    sql += where_sql(where)
    kinds = {
        "createdAt": "time", "endpoint": "masked", "statusCode": "int", "durationMs": "float", "error": "masked",
        "body": "masked", "response": "masked", "requestHeaders": "json-masked", "responseHeaders": "json-masked",
    }
    return newest_last(load(store, sql, params, kinds, table="NetworkCall"))


def messages(store: "Store", chat: str, /) -> "pd.DataFrame":
    """The messages of a chat's thread in order: chat is a Chat name or id. `status` marks a
    reply that failed or was interrupted; `finish_reason` says why a model's reply ended
    ("length": cut at the token limit)."""
    thread_id = _thread_of(store, chat)
    sql = (
        f'SELECT "id", {ms("createdAt")}, "threadId", "type", "sourceId", "content", '
        "CASE WHEN json_valid(\"data\") THEN json_extract(\"data\", '$.status') END AS \"status\", "
        "CASE WHEN json_valid(\"data\") THEN json_extract(\"data\", '$.finish_reason') END AS \"finish_reason\", "
        '"data" FROM "Message" WHERE "threadId" = ? ORDER BY "createdAt", rowid'
    )
    return load(store, sql, [thread_id], {"createdAt": "time", "data": "json-masked", "content": "masked"})


def _thread_of(store: "Store", chat: str) -> str:
    names, rows = fetch(
        store,
        'SELECT "id", "name", "references" FROM "Chat" WHERE "id" = ? OR "name" = ? ORDER BY ("id" = ?) DESC, rowid DESC LIMIT 1',
        [chat, chat, chat],
    )
    if not rows:
        _, known = fetch(store, 'SELECT DISTINCT "name" FROM "Chat" ORDER BY "name"')
        listing = ", ".join(repr(r[0]) for r in known) or "none yet"
        raise NotFoundError(f"No chat named {chat!r}; chats in this store: {listing}.")
    chat_id, _, references = rows[0]
    refs = json_object(references)
    for key in ("thread", "threadId", "messageThread", "MessageThread"):
        if refs.get(key):
            return refs[key]
    # a chat whose thread is not among its references: the thread that references the chat
    _, rows = fetch(
        store,
        "SELECT \"id\" FROM \"MessageThread\" WHERE EXISTS (SELECT 1 FROM json_each(\"references\") WHERE value = ?) "
        "ORDER BY rowid DESC LIMIT 1",
        [chat_id],
    )
    if not rows:
        raise NotFoundError(f"Chat {chat!r} has no message thread yet; send it a message first.")
    return rows[0][0]


def jobs(
    store: "Store",
    /,
    status: str | Iterable[str] | None = None,
    type: str | Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
) -> "pd.DataFrame":
    """Job records, newest last, with startedAt / finishedAt as UTC times, durationMs, and the
    job's log text (secrets masked)."""
    where, params = _where('j."createdAt"', since, until, {'j."status"': status, 'j."type"': type})
    sql = (
        f'SELECT j."id", {ms("createdAt", "j")}, j."name", j."type", j."status", '
        f'{ms("startedAt", "j")}, {ms("finishedAt", "j")}, '
        'j."error", j."textLogId", l."text" AS "log", j."pid" '
        'FROM "Jobs" AS j LEFT JOIN "TextLog" AS l ON l."id" = j."textLogId"'
    )
    sql += where_sql(where)
    out = load(
        store, sql, params,
        {"createdAt": "time", "startedAt": "time", "finishedAt": "time", "pid": "int", "error": "masked", "log": "masked"},
    )
    return newest_last(_with_duration(out, "startedAt", "finishedAt"))


def tool_invocations(
    store: "Store",
    /,
    tool: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
) -> "pd.DataFrame":
    """Tool calls, newest last, with the tool's name, parsed parameters and result, and its log
    text (secrets masked). `tool` is a Tool name or id (or a list)."""
    where, params = _where('i."createdAt"', since, until, {'i."status"': status})
    if tool is not None:
        tools = [tool] if isinstance(tool, str) else list(tool)
        marks = ", ".join("?" for _ in tools)
        where.append(f'(i."toolId" IN ({marks}) OR t."name" IN ({marks}))')
        params.extend(tools + tools)
    sql = (
        f'SELECT i."id", {ms("createdAt", "i")}, i."toolId", t."name" AS "tool", '
        'i."status", i."durationMs", i."parameters", i."result", i."callId", i."textLogId", l."text" AS "log" '
        'FROM "ToolInvocation" AS i LEFT JOIN "Tool" AS t ON t."id" = i."toolId" '
        'LEFT JOIN "TextLog" AS l ON l."id" = i."textLogId"'
    )
    sql += where_sql(where)
    kinds = {
        "createdAt": "time", "durationMs": "float", "parameters": "json-masked", "result": "json-masked", "log": "masked",
    }
    return newest_last(load(store, sql, params, kinds))


def streams(
    store: "Store",
    /,
    status: str | Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
    source: str | Iterable[str] | None = None,
) -> "pd.DataFrame":
    """Response streams, newest last: source, status, raw output, parsed result messages, and
    durationMs from creation to the last update."""
    where, params = _where('"createdAt"', since, until, {'"status"': status, '"sourceId"': source})
    sql = (
        f'SELECT "id", {ms("createdAt")}, {ms("updatedAt")}, '
        '"sourceId", "status", "rawOutput", "resultMessages" FROM "ResponseStream"'
    )
    sql += where_sql(where)
    out = load(
        store, sql, params, {"createdAt": "time", "updatedAt": "time", "rawOutput": "masked", "resultMessages": "json-masked"},
        table="ResponseStream",
    )
    return newest_last(_with_duration(out, "createdAt", "updatedAt"))


def _where(created: str, since: Any, until: Any, equal: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """A frame's WHERE terms and their parameters: `created` within since / until, and each
    expression of `equal` whose value is given (not None) equal to it, or to any of a list."""
    where: list[str] = []
    params: list[Any] = []
    for expr, value in equal.items():
        if value is not None:
            where_in(expr, value, where, params)
    time_where(created, since, until, where, params)
    return where, params


def _with_duration(out: "pd.DataFrame", start: str, end: str) -> "pd.DataFrame":
    """`out` with durationMs, the milliseconds from its `start` time to its `end` time."""
    out["durationMs"] = (out[end] - out[start]).dt.total_seconds() * 1000.0
    return out
