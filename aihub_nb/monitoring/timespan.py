"""Time spans and bounds, one grammar for the whole package: "30s", "15m", "1h", "7d", "2w".

    >>> parse_span("15m")
    datetime.timedelta(seconds=900)
    >>> parse_time("1h")            # an hour back from now, as the store writes times
    '2026-11-27T07:00:00.000Z'
    >>> pandas_freq("15m")          # the same span as a pandas time bucket (aihub_nb.plots)
    '15min'

`parse_time` is how every `since=` / `until=` is read (frames, summary, plots, the dashboard,
`%aihub metrics --since`); `pandas_freq` is how the plots read a bucket size.
"""

from __future__ import annotations

import math
import re
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..errors import UsageError
from ..store import now_iso

__all__ = ["pandas_freq", "parse_span", "parse_time", "time_where"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks)\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PANDAS_UNITS = {"s": "s", "m": "min", "h": "h", "d": "D", "w": "W"}
_MIN_TIME, _MAX_TIME = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31T23:59:59, UTC


def _span(text: str, *, count_optional: bool) -> tuple[float, str] | None:
    """(count, unit letter) of a span like "15m", or None when `text` is not one."""
    m = _SPAN.match(text)
    if m is None or (m.group(1) is None and not count_optional):
        return None
    return float(m.group(1) or 1), m.group(2)[0].lower()


def _span_seconds(text: str) -> float | None:
    span = _span(text, count_optional=False)
    return None if span is None else span[0] * _UNIT_SECONDS[span[1]]


def parse_span(text: str) -> timedelta | None:
    """A span like "30s", "15m", "1h", "7d", "2w" as a timedelta, or None when `text` is not one."""
    seconds = _span_seconds(text)
    if seconds is None:
        return None
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(f"The span {text!r} is too long; give one like '15m', '1h', '7d' or '2w'.") from None


def pandas_freq(freq: str) -> str:
    """A time bucket as pandas names it: '15m' -> '15min', '7d' -> '7D', 'h' -> '1h'; anything else
    pandas reads as a frequency is passed through; the rest is a UsageError."""
    span = _span(freq, count_optional=True)
    if span is not None:
        count, unit = span
        if count.is_integer():
            return f"{int(count)}{_PANDAS_UNITS[unit]}"
        return f"{round(count * _UNIT_SECONDS[unit] * 1000)}ms"
    from pandas.tseries.frequencies import to_offset

    try:
        to_offset(freq)
    except (TypeError, ValueError):
        raise UsageError(f"Cannot use {freq!r} as a time bucket; give one like '1m', '15m', '1h', '1d' or '1w'.") from None
    return freq


def parse_time(value: Any, *, now: float | None = None) -> str | None:
    """A time bound as the store writes it (UTC ISO, ms, Z), or None for "no bound".

    Accepts a datetime / pandas Timestamp / date (naive values are taken as UTC), an ISO string,
    epoch seconds, a timedelta or a span back from now: "30s", "15m", "1h", "7d", "2w". None and
    "all" mean no bound.
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
        seconds = _span_seconds(text)
        if seconds is not None:
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


def time_where(column: str, since: Any, until: Any, where: list[str], params: list[Any]) -> None:
    """Append SQL bounds `since <= column < until` (each only when given) to `where` / `params`."""
    lo, hi = parse_time(since), parse_time(until)
    if lo is not None:
        where.append(f"{column} >= ?")
        params.append(lo)
    if hi is not None:
        where.append(f"{column} < ?")
        params.append(hi)
