"""Timestamps and time-ordered ids as the store writes them: UTC ISO-8601 with milliseconds and
Z, and UUIDv7 row ids."""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["now_iso", "uuid7", "uuid7_many"]


_uuid_lock = threading.Lock()
_uuid_last_ms = 0
_uuid_counter = 0


def _tick() -> tuple[int, int]:
    """The next (milliseconds, 12-bit counter) for an id: later than every one given before."""
    global _uuid_last_ms, _uuid_counter
    ms = time.time_ns() // 1_000_000
    with _uuid_lock:
        if ms > _uuid_last_ms:
            _uuid_last_ms, _uuid_counter = ms, random.getrandbits(11)
        else:
            _uuid_counter += 1
            if _uuid_counter > 0xFFF:
                _uuid_last_ms += 1
                _uuid_counter = random.getrandbits(11)
        return _uuid_last_ms, _uuid_counter


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit counter, then random bits.

    Ids made by one process are strictly increasing, so inserts append to the primary key.
    """
    ms, counter = _tick()
    tail = int.from_bytes(os.urandom(8)) & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | tail
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_many(n: int) -> list[str]:
    """`n` UUIDv7s for one bulk insert, strictly increasing and after every id made before (the
    next `uuid7()` comes after them too). They share one timestamp and counter, and their last 48
    bits count up from a random start (RFC 9562's monotonic random bits), so each costs one format
    instead of a clock read, a lock and random bytes."""
    if n <= 0:
        return []
    ms, counter = _tick()
    high = (ms << 32) | (0x7 << 28) | (counter << 16) | 0x8000 | random.getrandbits(14)
    h = f"{high:020x}"
    prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
    start = random.getrandbits(47)  # room to count up to 2**47 without reaching the bits before
    return [f"{prefix}{low:012x}" for low in range(start, start + n)]


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
