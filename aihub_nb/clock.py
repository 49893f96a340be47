"""Timestamps as the store writes them: UTC ISO-8601 with milliseconds and Z."""

from __future__ import annotations

import time

__all__ = ["now_iso"]


def now_iso(t: float | None = None) -> str:
    """UTC ISO-8601 with milliseconds and Z, as every timestamp in the store is written."""
    ms = int((time.time() if t is None else t) * 1000)
    seconds, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
