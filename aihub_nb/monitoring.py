"""Monitoring: metrics, prices and the store's records as pandas DataFrames.

    >>> log_metric(store, "latency_ms", 812.5, provider="OPENAI", model="gpt-4o-mini")
    >>> metrics(store, "latency_ms", since="1h", provider="OPENAI")        # one row per metric
    >>> set_price(store, "gpt-4o-mini", 0.15, 0.60, provider="OPENAI")    # USD per million tokens
    >>> summary(store, since="24h")                                        # one row per model

Every frame is built at the edge from one SQL query, column by column (never row by row), with
times as `datetime64[ms, UTC]`, numbers numeric, small JSON parsed, and newest rows last.

Reads go through a read-only connection of their own (one per thread), so a long read never holds
the store's lock while a chat turn is writing: SQLite's WAL lets them run side by side.

Metric dimensions are JSON text per row. `metrics()` turns them into one column per key without
parsing every row: it reads the text, factorizes it (rows share a handful of distinct dimension
sets) and parses each distinct string once. That keeps a million-row load within a small factor
of a bare `pandas.read_sql`, and needs no registry of keys that could go stale.

Metric writes from `log_metric` are batched by a `MetricWriter` per store: flushed when the buffer
fills, after `max_delay` seconds, on `flush()`, before any read here, at interpreter exit, and on
SIGTERM. Only a kill -9 (or a power cut) loses metrics: at most the last `max_delay` (1 s).

Costs: `set_price` keeps prices per million tokens in `ModelPrice`; `turn_cost` prices one turn
and returns None for a model without a price, so "unpriced" is never mistaken for $0.

pandas is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import payloads
from .errors import NotFoundError, UsageError
from .redact import mask_secrets
from .store import now_iso

if TYPE_CHECKING:
    import pandas as pd

    from .store import Store

__all__ = [
    "MetricWriter",
    "close",
    "flush_metrics",
    "jobs",
    "log_metric",
    "mask_secrets",
    "messages",
    "metric_names",
    "metrics",
    "network_calls",
    "parse_time",
    "price_for",
    "prices",
    "remove_price",
    "set_price",
    "streams",
    "summary",
    "summary_of_frame",
    "tool_invocations",
    "turn_cost",
]

# The metrics a chat turn records (aihub_nb.chat), which summary() aggregates.
TURN_METRICS = (
    "latency_ms", "error", "prompt_tokens", "completion_tokens", "cost_usd",
    "usage_missing", "prompt_tokens_est", "completion_tokens_est",
)

_BASE_METRIC_COLUMNS = ("id", "createdAt", "name", "value")

# ---------------------------------------------------------------- times

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks)\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MIN_TIME, _MAX_TIME = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31T23:59:59, UTC


def parse_time(value: Any, *, now: float | None = None) -> str | None:
    """A time bound as the store writes it (UTC ISO, ms, Z), or None for "no bound".

    Accepts a datetime / pandas Timestamp / date (naive values are taken as UTC), an ISO string,
    epoch seconds, or a span back from now: "30s", "15m", "1h", "7d", "2w". None and "all" mean
    no bound.
    """
    if value is None:
        return None

    def stamp(t: float) -> str:
        if not _MIN_TIME <= t <= _MAX_TIME:  # NaN fails too
            raise UsageError(
                f"Cannot use {repr(value)[:40]} as a time: it is outside the years 1..9999; "
                "give an ISO time like '2026-11-27T08:00:00Z' or a span back from now like '1h'."
            )
        return now_iso(t)

    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "all"):
            return None
        m = _RELATIVE.match(text)
        if m:
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)[0].lower()]
            return stamp((time.time() if now is None else now) - seconds)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise UsageError(
                f"Cannot read the time {value!r}; give an ISO time like '2026-11-27T08:00:00Z' "
                "or a span back from now like '15m', '1h', '7d', '2w'."
            ) from None
    if isinstance(value, timedelta):
        return stamp((time.time() if now is None else now) - value.total_seconds())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return stamp(float(value))
        except OverflowError:  # an int too large for a float
            return stamp(math.inf)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return now_iso(value.timestamp())
    if isinstance(value, date):
        return now_iso(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp())
    raise UsageError(f"Cannot use {value!r} as a time; give a datetime, an ISO string or a span like '1h'.")


def _where_sql(where: list[str]) -> str:
    return " WHERE " + " AND ".join(where) if where else ""


def _time_where(column: str, since: Any, until: Any, where: list[str], params: list[Any]) -> None:
    lo, hi = parse_time(since), parse_time(until)
    if lo is not None:
        where.append(f'{column} >= ?')
        params.append(lo)
    if hi is not None:
        where.append(f'{column} < ?')
        params.append(hi)


def _in(expr: str, value: Any, where: list[str], params: list[Any]) -> None:
    """`expr = value`, `expr IN (...)` for any iterable but a string (a list, a set, a generator),
    `expr IS NULL` for None (in a list too)."""
    if not isinstance(value, (str, bytes)) and isinstance(value, Iterable):
        value = list(value)
    if value is None:
        where.append(f"{expr} IS NULL")
    elif isinstance(value, list):
        values = [v for v in value if v is not None]
        null = len(values) < len(value)
        if not values:
            where.append(f"{expr} IS NULL" if null else "0")
            return
        test = f"{expr} IN ({', '.join('?' for _ in values)})"
        where.append(f"({test} OR {expr} IS NULL)" if null else test)
        params.extend(values)
    else:
        where.append(f"{expr} = ?")
        params.append(value)


def _ms(column: str, table: str = "") -> str:
    """SQL selecting an ISO time column as integer epoch milliseconds, under its own name (NULL
    stays NULL). Converting in SQL is cheaper than parsing a million strings in pandas."""
    source = f'{table}."{column}"' if table else f'"{column}"'
    return f'CAST(round((julianday({source}) - 2440587.5) * 86400000.0) AS INTEGER) AS "{column}"'



# ---------------------------------------------------------------- reading

class _Reader:
    """One thread's read connection, closed when the thread ends and its locals are freed."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        try:
            self.conn.close()
        except Exception:  # at interpreter exit sqlite3 may be gone already
            pass


class _Readers(threading.local):
    reader: _Reader | None = None


_readers: "weakref.WeakKeyDictionary[Store, tuple[_Readers, weakref.WeakSet[_Reader]]]" = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def _read_connection(store: "Store") -> sqlite3.Connection:
    """This thread's read-only connection to the store's file (WAL: readers never block writers)."""
    with _readers_lock:
        entry = _readers.get(store)
        if entry is None:
            entry = _readers[store] = (_Readers(), weakref.WeakSet())
    local, opened = entry
    if local.reader is None:
        uri = store.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 60000")
        local.reader = _Reader(conn)
        with _readers_lock:
            opened.add(local.reader)
    return local.reader.conn


def close(store: "Store") -> None:
    """Write pending metrics and close this module's read connections to the store (Hub.close)."""
    with _writers_lock:
        writer = _writers.pop(store, None)
    if writer is not None:
        writer.close()
    with _readers_lock:
        entry = _readers.pop(store, None)
    if entry is not None:
        for reader in list(entry[1]):
            reader.conn.close()


def _check_open(store: "Store") -> None:
    try:
        _ = store.conn.in_transaction  # raises on a closed connection
    except sqlite3.ProgrammingError:
        raise UsageError(f"{store.path} was closed; open it again (Hub() or Store()) to read or log metrics.") from None


def _fetch(store: "Store", sql: str, params: Iterable[Any] = ()) -> tuple[list[str], list[tuple]]:
    _check_open(store)
    flush_metrics(store)
    try:
        cursor = _read_connection(store).execute(sql, list(params))
    except sqlite3.OperationalError as exc:
        if "no such" not in str(exc):
            raise
        raise UsageError(f"{store.path} is missing a table monitoring reads ({exc}); open it with Store() to upgrade it.") from exc
    names = [d[0] for d in cursor.description]
    return names, cursor.fetchall()


def _object_columns(rows: list[tuple], width: int):
    import numpy as np
    from pandas._libs import lib

    if not rows:
        return np.empty((0, width), dtype=object)
    return lib.to_object_array_tuples(rows)


def _as_times(values):
    """Epoch milliseconds (ints, None for NULL) -> DatetimeIndex[ms, UTC]."""
    import numpy as np
    import pandas as pd

    floats = np.asarray(values, dtype=float) if len(values) else np.empty(0, dtype=float)
    missing = np.isnan(floats)
    stamps = np.where(missing, 0, floats).astype(np.int64).view("datetime64[ms]")
    if missing.any():
        stamps = stamps.copy()
        stamps[missing] = np.datetime64("NaT")
    return pd.DatetimeIndex(stamps).tz_localize("UTC")


def _as_floats(values):
    import numpy as np

    return np.asarray(values, dtype=float) if len(values) else np.empty(0, dtype=float)


def _as_ints(values):
    import pandas as pd

    return pd.array(list(values), dtype="Int64")


def _objects(values: list[Any]):
    """A 1-d object array of `values`, even when they are equal-length lists."""
    import numpy as np

    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _parse_json(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value





def _frame(names: list[str], rows: list[tuple], kinds: dict[str, str]) -> "pd.DataFrame":
    """A DataFrame from fetched rows, converted column by column.

    kinds: "time" (epoch ms from `_ms`), "float", "int" (nullable), "json" (parsed), "json-masked",
    "masked" (text with secrets masked); other columns stay as they come.
    """
    import pandas as pd

    table = _object_columns(rows, len(names))
    data: dict[str, Any] = {}
    for i, name in enumerate(names):
        column = table[:, i]
        kind = kinds.get(name)
        if kind == "time":
            column = _as_times(column)
        elif kind == "float":
            column = _as_floats(column)
        elif kind == "int":
            column = _as_ints(column)
        elif kind == "json":
            column = _objects([_parse_json(v) for v in column])
        elif kind == "json-masked":
            # masking the text keeps it valid JSON: the patterns never span a quote or backslash
            column = _objects([_parse_json(mask_secrets(v)) for v in column])
        elif kind == "masked":
            column = _objects([mask_secrets(v) for v in column])
        data[name] = column
    frame = pd.DataFrame(data, copy=False)
    for name in names:  # an empty text column would otherwise stay untyped
        if kinds.get(name) in (None, "masked") and len(frame) == 0:
            frame[name] = frame[name].astype("str")
    return frame


def _newest_last(frame: "pd.DataFrame", column: str = "createdAt") -> "pd.DataFrame":
    times = frame[column]
    if len(frame) and not times.is_monotonic_increasing:
        frame = frame.sort_values(column, kind="stable", ignore_index=True)
    return frame


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
    where: list[str] = []
    params: list[Any] = []
    if name is not None:
        _in('"name"', name, where, params)
    _time_where('"createdAt"', since, until, where, params)
    for key, value in dimension_filters.items():
        if isinstance(value, (list, tuple, set, frozenset)) and not value:
            where.append("0")  # any of nothing
            continue
        _in(_dimension_sql(key), value, where, params)
    # a value written outside aihub_nb that is not a number reads as NaN rather than failing the frame
    value = 'CASE WHEN typeof("value") IN (\'real\', \'integer\') THEN "value" END AS "value"'
    sql = f'SELECT "id", {_ms("createdAt")}, "name", {value}, "dimensions" FROM "Metric"'
    sql += _where_sql(where)
    _, rows = _fetch(store, sql, params)
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

    table = _object_columns(rows, 5)
    codes, distinct = pd.factorize(table[:, 4], use_na_sentinel=True)
    decoded = [_dimensions(mask_secrets(text)) for text in distinct]  # once per distinct set: cheap
    keys: dict[str, None] = {}
    for dims in decoded:
        keys.update(dict.fromkeys(dims))
    keys.update(dict.fromkeys(k for k in extra_keys if k not in keys))
    data: dict[str, Any] = {
        "id": table[:, 0],
        "createdAt": _as_times(table[:, 1]),
        "name": table[:, 2],
        "value": _as_floats(table[:, 3]),
    }
    for key in keys:
        # each dimension is a categorical column: its values per distinct dimension string,
        # factorized once, then spread to the rows by the rows' codes (-1, a NULL, stays missing)
        values = [_hashable(dims.get(key)) for dims in decoded]
        column = key if key not in data else f"dim_{key}"
        if _mixes_bools_and_numbers(values):  # True == 1 to a categorical: keep each value as logged
            data[column] = _objects([*values, None])[codes]
            continue
        sub_codes, categories = pd.factorize(pd.array(values, dtype=object))
        lookup = np.append(sub_codes, -1).astype(np.int64)
        data[column] = pd.Categorical.from_codes(lookup[codes], categories=categories)
    frame = pd.DataFrame(data, copy=False)
    if not len(frame):
        frame = frame.astype({c: "str" for c in frame.columns if c not in ("createdAt", "value")})
    return _newest_last(frame)


def _mixes_bools_and_numbers(values: list[Any]) -> bool:
    types = {type(v) for v in values}
    return bool in types and (int in types or float in types)


def _hashable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)


def _dimensions(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def metric_names(store: "Store") -> list[str]:
    """The distinct metric names, sorted; a skip-scan of the (name, createdAt) index, not a table scan."""
    sql = (
        'WITH RECURSIVE n(x) AS (SELECT min("name") FROM "Metric" '
        'UNION ALL SELECT (SELECT min("name") FROM "Metric" WHERE "name" > x) FROM n WHERE x IS NOT NULL) '
        "SELECT x FROM n WHERE x IS NOT NULL"
    )
    _, rows = _fetch(store, sql)
    return [r[0] for r in rows]


# ---------------------------------------------------------------- writing metrics


class MetricWriter:
    """Batches Metric rows for one store: a log call appends to a buffer; a flush writes them all
    in one transaction. Flushes when `batch_size` rows wait, `max_delay` seconds after the first
    waiting row (a timer thread), on `flush()`, and at interpreter exit.

    Each row keeps the time it was logged as createdAt, not the time it was flushed.
    """

    def __init__(self, store: "Store", *, batch_size: int = 500, max_delay: float = 1.0) -> None:
        self.store = store
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        _live_writers.add(self)
        _register_atexit()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def log(self, name: str, value: float, /, **dimensions: Any) -> None:
        """Queue one metric row; cheap (no database work until the batch is full)."""
        if not isinstance(name, str) or not name:
            raise UsageError(f"A metric needs a non-empty name, got {name!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):  # a NaN would fail the whole batch at every flush after
            raise UsageError(f"Metric {name!r} needs a finite number as its value, got {value!r}.")
        dims = {k: v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for k, v in dimensions.items()}
        _check_open(self.store)  # else the rows would wait for a flush that can only fail
        stamp = now_iso()
        row = {"name": name, "value": number, "dimensions": dims, "createdAt": stamp, "updatedAt": stamp}
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
            if not full and self._timer is None and self.max_delay is not None:
                self._timer = threading.Timer(self.max_delay, self._flush_quietly)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> int:
        """Write every waiting row now; return how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if not rows:
            return 0
        try:
            return self.store.create_many("Metric", rows)
        except BaseException:
            with self._lock:  # keep them for the next flush rather than lose them
                self._rows[:0] = rows
            raise

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except sqlite3.ProgrammingError:  # the store was closed under us
            with self._lock:
                self._rows.clear()
        except sqlite3.OperationalError:  # busy: the next log or read retries
            pass

    def close(self) -> None:
        self.flush()
        _live_writers.discard(self)

    def __repr__(self) -> str:
        return f"<MetricWriter {self.store!r} pending={self.pending}>"


_writers: "weakref.WeakKeyDictionary[Store, MetricWriter]" = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()
_live_writers: "weakref.WeakSet[MetricWriter]" = weakref.WeakSet()
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_flush_all_at_exit)
    _flush_on_sigterm()


_sigterm_installed = False


def _flush_on_sigterm() -> None:
    """Write pending metrics when the process gets SIGTERM too (atexit does not run then), then
    hand the signal on: to the handler that was there, or the default (the process ends).
    Installed once, from the main thread only, and only over the default or a Python handler."""
    global _sigterm_installed
    import signal

    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL and not callable(previous):
        return  # ignored, or set outside Python: leave it alone
    _sigterm_installed = True

    def on_sigterm(signum, frame):
        for writer in list(_live_writers):
            if writer._lock.acquire(timeout=1.0):  # not if this thread was interrupted holding it
                writer._lock.release()
                try:
                    writer.flush()
                except Exception:  # a closed or busy store: nothing more to do on the way out
                    pass
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def _flush_all_at_exit() -> None:
    for writer in list(_live_writers):
        try:
            writer.flush()
        except Exception:  # a closed store at exit: nothing left to write to
            pass


def _writer(store: "Store") -> MetricWriter:
    with _writers_lock:
        writer = _writers.get(store)
        if writer is None:
            writer = _writers[store] = MetricWriter(store)
        return writer


def log_metric(store: "Store", name: str, value: float, /, **dimensions: Any) -> None:
    """Record one metric with its dimensions, batched (see MetricWriter); reads here flush first."""
    _writer(store).log(name, value, **dimensions)


def flush_metrics(store: "Store") -> int:
    """Write the store's batched metrics now (call before closing the store); return how many."""
    writer = _writers.get(store)
    return writer.flush() if writer is not None and writer.pending else 0


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
    where: list[str] = []
    params: list[Any] = []
    _time_where('"createdAt"', since, until, where, params)
    if status is not None:
        _in('"status"', status, where, params)
    if method is not None:
        _in('upper("method")', method.upper() if isinstance(method, str) else [m.upper() for m in method], where, params)
    if endpoint is not None:
        where.append("instr(\"endpoint\", ?) > 0")
        params.append(endpoint)
    sql = (
        f'SELECT "id", {_ms("createdAt")}, "method", "endpoint", "status", "statusCode", '
        f'"durationMs", "error", "body", "response", "requestHeaders", "responseHeaders" FROM "NetworkCall"'
    )
    sql += _where_sql(where)
    names, rows = _fetch(store, sql, params)
    rows = payloads.expand_columns(store, "NetworkCall", names, rows)
    kinds = {
        "createdAt": "time", "endpoint": "masked", "statusCode": "int", "durationMs": "float", "error": "masked",
        "body": "masked", "response": "masked", "requestHeaders": "json-masked", "responseHeaders": "json-masked",
    }
    return _newest_last(_frame(names, rows, kinds))


def messages(store: "Store", chat: str, /) -> "pd.DataFrame":
    """The messages of a chat's thread in order: chat is a Chat name or id. `status` marks a
    reply that failed or was interrupted; `finish_reason` says why a model's reply ended
    ("length": cut at the token limit)."""
    thread_id = _thread_of(store, chat)
    sql = (
        f'SELECT "id", {_ms("createdAt")}, "threadId", "type", "sourceId", "content", '
        "CASE WHEN json_valid(\"data\") THEN json_extract(\"data\", '$.status') END AS \"status\", "
        "CASE WHEN json_valid(\"data\") THEN json_extract(\"data\", '$.finish_reason') END AS \"finish_reason\", "
        '"data" FROM "Message" WHERE "threadId" = ? ORDER BY "createdAt", rowid'
    )
    names, rows = _fetch(store, sql, [thread_id])
    return _frame(names, rows, {"createdAt": "time", "data": "json-masked", "content": "masked"})


def _thread_of(store: "Store", chat: str) -> str:
    names, rows = _fetch(
        store,
        'SELECT "id", "name", "references" FROM "Chat" WHERE "id" = ? OR "name" = ? ORDER BY ("id" = ?) DESC, rowid DESC LIMIT 1',
        [chat, chat, chat],
    )
    if not rows:
        _, known = _fetch(store, 'SELECT DISTINCT "name" FROM "Chat" ORDER BY "name"')
        listing = ", ".join(repr(r[0]) for r in known) or "none yet"
        raise NotFoundError(f"No chat named {chat!r}; chats in this store: {listing}.")
    chat_id, _, references = rows[0]
    refs = _dimensions(references)
    for key in ("thread", "threadId", "messageThread", "MessageThread"):
        if refs.get(key):
            return refs[key]
    # a chat whose thread is not among its references: the thread that references the chat
    _, rows = _fetch(
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
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        _in('j."status"', status, where, params)
    if type is not None:
        _in('j."type"', type, where, params)
    _time_where('j."createdAt"', since, until, where, params)
    sql = (
        f'SELECT j."id", {_ms("createdAt", "j")}, j."name", j."type", j."status", '
        f'{_ms("startedAt", "j")}, {_ms("finishedAt", "j")}, '
        'j."error", j."textLogId", l."text" AS "log", j."pid" '
        'FROM "Jobs" AS j LEFT JOIN "TextLog" AS l ON l."id" = j."textLogId"'
    )
    sql += _where_sql(where)
    names, rows = _fetch(store, sql, params)
    frame = _frame(
        names, rows,
        {"createdAt": "time", "startedAt": "time", "finishedAt": "time", "pid": "int", "error": "masked", "log": "masked"},
    )
    frame["durationMs"] = (frame["finishedAt"] - frame["startedAt"]).dt.total_seconds() * 1000.0
    return _newest_last(frame)


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
    where: list[str] = []
    params: list[Any] = []
    if tool is not None:
        tools = [tool] if isinstance(tool, str) else list(tool)
        marks = ", ".join("?" for _ in tools)
        where.append(f'(i."toolId" IN ({marks}) OR t."name" IN ({marks}))')
        params.extend(tools + tools)
    if status is not None:
        _in('i."status"', status, where, params)
    _time_where('i."createdAt"', since, until, where, params)
    sql = (
        f'SELECT i."id", {_ms("createdAt", "i")}, i."toolId", t."name" AS "tool", '
        'i."status", i."durationMs", i."parameters", i."result", i."callId", i."textLogId", l."text" AS "log" '
        'FROM "ToolInvocation" AS i LEFT JOIN "Tool" AS t ON t."id" = i."toolId" '
        'LEFT JOIN "TextLog" AS l ON l."id" = i."textLogId"'
    )
    sql += _where_sql(where)
    names, rows = _fetch(store, sql, params)
    kinds = {
        "createdAt": "time", "durationMs": "float", "parameters": "json-masked", "result": "json-masked", "log": "masked",
    }
    return _newest_last(_frame(names, rows, kinds))


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
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        _in('"status"', status, where, params)
    if source is not None:
        _in('"sourceId"', source, where, params)
    _time_where('"createdAt"', since, until, where, params)
    sql = (
        f'SELECT "id", {_ms("createdAt")}, {_ms("updatedAt")}, '
        '"sourceId", "status", "rawOutput", "resultMessages" FROM "ResponseStream"'
    )
    sql += _where_sql(where)
    names, rows = _fetch(store, sql, params)
    rows = payloads.expand_columns(store, "ResponseStream", names, rows)
    frame = _frame(
        names, rows, {"createdAt": "time", "updatedAt": "time", "rawOutput": "masked", "resultMessages": "json-masked"}
    )
    frame["durationMs"] = (frame["updatedAt"] - frame["createdAt"]).dt.total_seconds() * 1000.0
    return _newest_last(frame)


# ---------------------------------------------------------------- prices and cost


def _provider_key(provider: str | None) -> str:
    return (provider or "").strip().upper()


def set_price(
    store: "Store",
    model: str,
    input_per_million: float,
    output_per_million: float,
    /,
    provider: str = "",
    currency: str = "USD",
) -> dict[str, Any]:
    """Set (or change) the price of a model per million input and output tokens, in USD.

    provider "" prices the model whatever the provider; a provider-specific price wins over it.
    """
    if not model:
        raise UsageError("set_price needs a model id, e.g. set_price(store, 'gpt-4o-mini', 0.15, 0.60).")
    try:
        inp, out = float(input_per_million), float(output_per_million)
    except (TypeError, ValueError):
        inp = out = math.nan
    if not (math.isfinite(inp) and math.isfinite(out)):
        raise UsageError(
            f"Prices are numbers per million tokens, e.g. 0.15 and 0.60 (got {input_per_million!r}, {output_per_million!r})."
        )
    if inp < 0 or out < 0:
        raise UsageError(f"Prices cannot be negative (got {inp}, {out}).")
    if str(currency).strip().upper() != "USD":  # turns record cost_usd: another currency would be mislabelled
        raise UsageError(f"Costs are kept in USD; give the prices in USD, not {currency!r}.")
    provider = _provider_key(provider)
    with store.transaction():
        row = store.first("ModelPrice", provider=provider, modelId=model)
        fields = {"inputPerMillion": inp, "outputPerMillion": out, "currency": currency.upper()}
        if row is None:
            return store.create("ModelPrice", provider=provider, modelId=model, **fields)
        return store.update("ModelPrice", row["id"], **fields)


def remove_price(store: "Store", model: str, /, provider: str = "") -> bool:
    """Forget a model's price (for that provider, "" = any provider); True if there was one."""
    provider = _provider_key(provider)
    with store.transaction():
        rows = store.find("ModelPrice", provider=provider, modelId=model)
        for row in rows:
            store.delete("ModelPrice", row["id"])
    return bool(rows)


def prices(store: "Store", /) -> "pd.DataFrame":
    """The price table: provider ("" = any), model, inputPerMillion, outputPerMillion, currency."""
    sql = (
        f'SELECT "provider", "modelId" AS "model", "inputPerMillion", "outputPerMillion", "currency", '
        f'{_ms("updatedAt")} FROM "ModelPrice" ORDER BY "modelId", "provider"'
    )
    names, rows = _fetch(store, sql)
    return _frame(names, rows, {"inputPerMillion": "float", "outputPerMillion": "float", "updatedAt": "time"})


def price_for(store: "Store", provider: str | None, model: str, /) -> tuple[float, float] | None:
    """(input, output) price per million tokens: the provider's own row, else the provider-less
    row, else None (the model is unpriced)."""
    rows = store.query(
        'SELECT "inputPerMillion", "outputPerMillion" FROM "ModelPrice" WHERE "modelId" = ? AND "provider" IN (?, \'\') '
        'ORDER BY ("provider" = \'\'), rowid DESC LIMIT 1',
        [model, _provider_key(provider)],
    )
    if not rows:
        return None
    return float(rows[0]["inputPerMillion"]), float(rows[0]["outputPerMillion"])


def turn_cost(
    store: "Store", provider: str | None, model: str, prompt_tokens: float | None, completion_tokens: float | None, /
) -> float | None:
    """The cost of one turn from the price table, or None when the model has no price (unpriced,
    which is not the same as free)."""
    price = price_for(store, provider, model)
    if price is None:
        return None
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1_000_000


# ---------------------------------------------------------------- summary

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

    time_where: list[str] = []
    time_params: list[Any] = []
    _time_where('"createdAt"', since, until, time_where, time_params)
    when = "".join(f" AND {w}" for w in time_where)
    marks = ", ".join("?" for _ in TURN_METRICS)
    _, groups = _fetch(
        store,
        f'SELECT "dimensions", "name", count(*), sum("value") FROM "Metric" WHERE "name" IN ({marks}){when} '
        'GROUP BY "name", "dimensions"',
        [*TURN_METRICS, *time_params],
    )
    _, latencies = _fetch(
        store, f'SELECT "dimensions", "value" FROM "Metric" WHERE "name" = ?{when}', ["latency_ms", *time_params]
    )

    parsed: dict[Any, tuple[str, str, bool]] = {}

    def model_of(text: Any) -> tuple[str, str, bool]:
        if text not in parsed:
            dims = _dimensions(text)
            failed = dims.get("status") in _FAILED
            parsed[text] = (str(dims.get("provider") or ""), str(dims.get("model") or ""), failed)
        return parsed[text]

    partials = pd.DataFrame(
        [(*model_of(dims), dims, name, n, total) for dims, name, n, total in groups],
        columns=["provider", "model", "failed", "group", "name", "n", "total"],
    )
    table = _object_columns(latencies, 2)
    codes, distinct = pd.factorize(table[:, 0], use_na_sentinel=True)
    keys = [model_of(d) for d in distinct] + [model_of(None)]
    lat = pd.DataFrame(
        {
            "provider": [k[0] for k in keys],
            "model": [k[1] for k in keys],
        }
    ).iloc[codes].reset_index(drop=True)
    lat["value"] = _as_floats(table[:, 1])
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
