"""The one loader every frame goes through: one SQL query on the store's read connection, then
the columns converted whole (never row by row) by kind.

    >>> names, rows = fetch(store, 'SELECT "id", ' + ms("createdAt") + ' FROM "Jobs"')
    >>> frame(names, rows, {"createdAt": "time"})

Reads first write the metrics batched by the store's MetricWriter, so a frame shows what was
logged before it. pandas and numpy are imported inside the functions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import payloads
from ..errors import UsageError
from ..redact import mask_secrets
from .writer import check_open, flush_metrics

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store


def fetch(store: "Store", sql: str, params: Iterable[Any] = ()) -> tuple[list[str], list[tuple]]:
    """Column names and rows of one query on this thread's read connection (pending metrics
    written first)."""
    check_open(store)
    flush_metrics(store)
    try:
        cursor = store.reader().execute(sql, list(params))
    except sqlite3.OperationalError as exc:
        if "no such" not in str(exc):
            raise
        raise UsageError(f"{store.path} is missing a table monitoring reads ({exc}); open it with Store() to upgrade it.") from exc
    names = [d[0] for d in cursor.description]
    return names, cursor.fetchall()


# ---------------------------------------------------------------- SQL pieces


def where_sql(where: list[str]) -> str:
    return " WHERE " + " AND ".join(where) if where else ""


def where_in(expr: str, value: Any, where: list[str], params: list[Any]) -> None:
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


def ms(column: str, table: str = "") -> str:
    """SQL selecting an ISO time column as integer epoch milliseconds, under its own name (NULL
    stays NULL). Converting in SQL is cheaper than parsing a million strings in pandas."""
    source = f'{table}."{column}"' if table else f'"{column}"'
    return f'CAST(round((julianday({source}) - 2440587.5) * 86400000.0) AS INTEGER) AS "{column}"'


# ---------------------------------------------------------------- columns


def object_columns(rows: list[tuple], width: int):
    import numpy as np
    from pandas._libs import lib

    if not rows:
        return np.empty((0, width), dtype=object)
    return lib.to_object_array_tuples(rows)


def as_times(values):
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


def as_floats(values):
    import numpy as np

    return np.asarray(values, dtype=float) if len(values) else np.empty(0, dtype=float)


def _as_ints(values):
    import pandas as pd

    return pd.array(list(values), dtype="Int64")


def objects(values: list[Any]):
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


def json_object(text: Any) -> dict[str, Any]:
    """A JSON object's text as a dict ({} for NULL, bad JSON or anything but an object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def frame(names: list[str], rows: list[tuple], kinds: dict[str, str]) -> "pd.DataFrame":
    """A DataFrame from fetched rows, converted column by column.

    kinds: "time" (epoch ms from `ms`), "float", "int" (nullable), "json" (parsed), "json-masked",
    "masked" (text with secrets masked); other columns stay as they come.
    """
    import pandas as pd

    table = object_columns(rows, len(names))
    data: dict[str, Any] = {}
    for i, name in enumerate(names):
        column = table[:, i]
        kind = kinds.get(name)
        if kind == "time":
            column = as_times(column)
        elif kind == "float":
            column = as_floats(column)
        elif kind == "int":
            column = _as_ints(column)
        elif kind == "json":
            column = objects([_parse_json(v) for v in column])
        elif kind == "json-masked":
            # masking the text keeps it valid JSON: the patterns never span a quote or backslash
            column = objects([_parse_json(mask_secrets(v)) for v in column])
        elif kind == "masked":
            column = objects([mask_secrets(v) for v in column])
        data[name] = column
    out = pd.DataFrame(data, copy=False)
    for name in names:  # an empty text column would otherwise stay untyped
        if kinds.get(name) in (None, "masked") and len(out) == 0:
            out[name] = out[name].astype("str")
    return out


def load(
    store: "Store", sql: str, params: Iterable[Any] = (), kinds: dict[str, str] | None = None, *, table: str | None = None
) -> "pd.DataFrame":
    """`frame()` of one query's result. With `table` (NetworkCall, ResponseStream), the raw
    payloads stored in pieces are put back together first (aihub_nb.payloads)."""
    names, rows = fetch(store, sql, params)
    if table is not None:
        rows = payloads.expand_columns(store, table, names, rows)
    return frame(names, rows, kinds or {})


def newest_last(frame: "pd.DataFrame", column: str = "createdAt") -> "pd.DataFrame":
    times = frame[column]
    if len(frame) and not times.is_monotonic_increasing:
        frame = frame.sort_values(column, kind="stable", ignore_index=True)
    return frame
