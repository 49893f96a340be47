"""Timestamps as the store writes them: UTC ISO-8601 with milliseconds and Z."""

from __future__ import annotations

import time

__all__ = ["now_iso"]


def now_iso(t: float | None = None) -> str:
    """UTC ISO-8601 with milliseconds and Z, as every timestamp in the store is written."""
    global _last
    ms = int((time.time() if t is None else t) * 1000)
    seconds, ms = divmod(ms, 1000)
    last = _last  # one tuple, read and replaced whole: safe across threads
    if last[0] != seconds:
        last = _last = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{last[1]}.{ms:03d}Z"


_last: tuple[int, str] = (-1, "")  # the last second formatted, and its text
