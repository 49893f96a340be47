"""The one metric write path: a `MetricWriter` per store, used by chat turns, tools and `log_metric`.

    >>> writer = metric_writer(store)
    >>> writer.log("eval_score", 0.9, suite="smoke")                      # batched
    >>> writer.record({"latency_ms": 812.5, "prompt_tokens": 12}, {"model": "m"},
    ...               references={"stream": stream_id})                     # written now

Both shape and check rows the same way and write them through `_write` (one `create_many`, one
transaction). `log` queues: the batch is written when it fills, `max_delay` seconds after its
first row, on `flush()`, before any read of monitoring, at interpreter exit, and on SIGTERM (only
a kill -9 or a power cut loses metrics: at most the last `max_delay`, 1 s). `record` writes
its rows (and whatever `log` queued before them) before it returns, so a chat turn's metrics are
in the store when the turn returns.
"""

from __future__ import annotations

import atexit
import math
import os
import sqlite3
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..store import now_iso

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["MetricWriter", "flush_metrics", "log_metric", "metric_writer", "record_metrics"]


def check_open(store: "Store") -> None:
    try:
        _ = store.conn.in_transaction  # raises on a closed connection
    except sqlite3.ProgrammingError:
        raise UsageError(f"{store.path} was closed; open it again (Hub() or Store()) to read or log metrics.") from None


def _row(name: str, value: Any, dimensions: dict[str, Any], references: dict[str, str] | None, stamp: str) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise UsageError(f"A metric needs a non-empty name, got {name!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):  # a NaN would fail the whole batch at every flush after
        raise UsageError(f"Metric {name!r} needs a finite number as its value, got {value!r}.")
    row = {"name": name, "value": number, "dimensions": dimensions, "createdAt": stamp, "updatedAt": stamp}
    if references is not None:
        row["references"] = references
    return row


def _dimensions(dimensions: dict[str, Any]) -> dict[str, Any]:
    return {k: v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for k, v in dimensions.items()}


class MetricWriter:
    """Writes Metric rows for one store: `log` batches one row, `record` writes several rows that
    share dimensions now. Batches flush when `batch_size` rows wait, `max_delay` seconds after the
    first waiting row (a timer thread), on `flush()`, and at interpreter exit.

    Each row keeps the time it was logged as createdAt, not the time it was written.
    """

    def __init__(self, store: "Store", *, batch_size: int = 500, max_delay: float | None = 1.0) -> None:
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
        row = _row(name, value, _dimensions(dimensions), None, now_iso())
        check_open(self.store)  # else the rows would wait for a flush that can only fail
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
            if not full and self._timer is None and self.max_delay is not None:
                self._timer = threading.Timer(self.max_delay, self._flush_quietly)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def record(
        self, values: dict[str, float], dimensions: dict[str, Any], /, *, references: dict[str, str] | None = None
    ) -> int:
        """Write several metrics that share dimensions (a chat turn's, a tool call's) now, in one
        transaction with any rows `log` queued before them; return how many rows were written."""
        stamp = now_iso()
        dims = _dimensions(dimensions)
        rows = [_row(name, value, dims, references or {}, stamp) for name, value in values.items()]
        return self._write(rows)

    def flush(self) -> int:
        """Write every waiting row now; return how many were written."""
        return self._write([])

    def _write(self, rows: list[dict[str, Any]]) -> int:
        """The one write: the queued rows, then `rows`, in one transaction. Queued rows that fail
        to be written stay queued for the next try."""
        with self._lock:
            queued, self._rows = self._rows, []
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if not queued and not rows:
            return 0
        try:
            return self.store.create_many("Metric", queued + rows if queued else rows)
        except BaseException:
            if queued:
                with self._lock:  # keep them for the next flush rather than lose them
                    self._rows[:0] = queued
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


def metric_writer(store: "Store") -> MetricWriter:
    """The store's MetricWriter: the one every chat turn, tool call and `log_metric` writes through."""
    with _writers_lock:
        writer = _writers.get(store)
        if writer is None:
            writer = _writers[store] = MetricWriter(store)
        return writer


def log_metric(store: "Store", name: str, value: float, /, **dimensions: Any) -> None:
    """Record one metric with its dimensions, batched (see MetricWriter); reads here flush first."""
    metric_writer(store).log(name, value, **dimensions)


def record_metrics(
    store: "Store", values: dict[str, float], dimensions: dict[str, Any], /, *, references: dict[str, str] | None = None
) -> int:
    """Write several metrics that share dimensions now, through the store's MetricWriter."""
    return metric_writer(store).record(values, dimensions, references=references)


def flush_metrics(store: "Store") -> int:
    """Write the store's batched metrics now (call before closing the store); return how many."""
    writer = _writers.get(store)
    return writer.flush() if writer is not None and writer.pending else 0


def close_writer(store: "Store") -> None:
    """Write the store's pending metrics and forget its writer."""
    with _writers_lock:
        writer = _writers.pop(store, None)
    if writer is not None:
        writer.close()
