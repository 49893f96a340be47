"""Where recorded HTTP calls land: NetworkCall rows, and the raw output of the stream being read.

The recording transports (aihub_nb.recording) call a sink for every request, response, chunk
and end. `StoreSink` writes them to the store while the response streams: a NetworkCall row per
request, its body and headers (already redacted), the response text as it arrives, the status,
HTTP code and duration. When a turn has named a ResponseStream (`streaming_into`), the bytes of
its successful response are appended to that stream's `rawOutput` too, so a reply cut off by a
crash or Ctrl-C keeps what arrived. Writes are batched by time (`flush_interval`), never per
chunk, so recording costs little on a 2,000-token stream. Every known secret (aihub_nb.redact) is
masked in what is written: URL, headers, body, response and error.
"""

from __future__ import annotations

import codecs
import contextvars
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .redact import StreamRedactor, redact, redact_data
from .store import now_iso

if TYPE_CHECKING:
    from .store import Store

__all__ = ["StoreSink", "close_stream", "streaming_into"]

_CURRENT_STREAM: contextvars.ContextVar[str | None] = contextvars.ContextVar("aihub_stream", default=None)
_REFERENCES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("aihub_refs", default=None)
_HOLD_TAIL: contextvars.ContextVar[bool] = contextvars.ContextVar("aihub_hold_tail", default=False)
# stream id -> raw output that arrived after the stream's last timed flush, kept for close_stream
_HELD: dict[str, list[str]] = {}
_HELD_LOCK = threading.Lock()


@contextmanager
def streaming_into(stream_id: str | None, *, hold_tail: bool = False, **references: str) -> Iterator[None]:
    """Within the block, recorded responses also feed ResponseStream `stream_id`, and new
    NetworkCall rows carry `references` (for example job=..., stream=...).

    With `hold_tail`, the raw output that arrives after the last timed flush is not written when
    the response ends but kept for `close_stream`, which writes it together with the stream's
    status: the row, by then holding the whole reply, is rewritten once instead of twice.
    Whoever passes `hold_tail=True` must call `close_stream`, also on failure."""
    token = _CURRENT_STREAM.set(stream_id)
    htoken = _HOLD_TAIL.set(hold_tail)
    refs = {k: v for k, v in references.items() if v}
    if stream_id:
        refs["stream"] = stream_id
    rtoken = _REFERENCES.set(refs)
    try:
        yield
    finally:
        _CURRENT_STREAM.reset(token)
        _REFERENCES.reset(rtoken)
        _HOLD_TAIL.reset(htoken)


def close_stream(store: Store, stream_id: str, *, status: str, result_messages: list) -> None:
    """Finish ResponseStream `stream_id`: the raw output held for it, its status and its result
    messages, in one UPDATE (no read-back of the row)."""
    with _HELD_LOCK:
        tail = "".join(_HELD.pop(stream_id, ()))
    with store.transaction() as conn:
        conn.execute(
            'UPDATE "ResponseStream" SET rawOutput = rawOutput || ?, status = ?, resultMessages = ?, updatedAt = ? '
            "WHERE id = ?",
            (tail, status, json.dumps(result_messages, ensure_ascii=False, default=str), now_iso(), stream_id),
        )


class _Call:
    __slots__ = ("id", "stream_id", "hold", "decoder", "redactor", "pending", "last_flush", "ok")

    def __init__(self, call_id: str, stream_id: str | None, hold: bool = False) -> None:
        self.id = call_id
        self.stream_id = stream_id
        self.hold = hold
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.redactor = StreamRedactor()
        self.pending: list[bytes] = []  # decoded once per flush, not once per chunk
        self.last_flush = time.monotonic()
        self.ok = False


class StoreSink:
    """A CallSink that records into a Store."""

    def __init__(self, store: Store, *, flush_interval: float = 0.25) -> None:
        self.store = store
        self.flush_interval = flush_interval

    def request(self, *, method: str, url: str, headers: dict[str, str], body: str) -> _Call:
        row = self.store.create(
            "NetworkCall",
            endpoint=redact(url),
            method=method,
            body=redact(body),
            status="pending",
            requestHeaders=redact_data(headers),
            references=dict(_REFERENCES.get() or {}),
        )
        return _Call(row["id"], _CURRENT_STREAM.get(), _HOLD_TAIL.get())

    def response(self, handle: _Call, *, status_code: int, headers: dict[str, str]) -> None:
        handle.ok = status_code < 400
        self.store.set("NetworkCall", handle.id, statusCode=status_code, responseHeaders=redact_data(headers))

    def chunk(self, handle: _Call, data: bytes) -> None:
        handle.pending.append(data)
        now = time.monotonic()
        if now - handle.last_flush >= self.flush_interval:
            handle.last_flush = now
            self._flush(handle)

    def finish(self, handle: _Call, *, error: str | None, duration_ms: float) -> None:
        """The last of the response and the call's outcome in one UPDATE: the row, by now holding
        the whole response, is rewritten once, and not read back."""
        text = self._take(handle, final=True)
        failed = error is not None or not handle.ok
        to_stream = bool(text and handle.stream_id and handle.ok)
        if to_stream and handle.hold:
            with _HELD_LOCK:
                _HELD.setdefault(handle.stream_id, []).append(text)
            to_stream = False
        now = now_iso()
        with self.store.transaction() as conn:
            conn.execute(
                'UPDATE "NetworkCall" SET response = response || ?, status = ?, durationMs = ?, error = ?, '
                "updatedAt = ? WHERE id = ?",
                (text, "error" if failed else "success", round(duration_ms, 3), redact(error), now, handle.id),
            )
            if to_stream:
                conn.execute(
                    'UPDATE "ResponseStream" SET rawOutput = rawOutput || ?, updatedAt = ? WHERE id = ?',
                    (text, now, handle.stream_id),
                )

    @staticmethod
    def _take(handle: _Call, *, final: bool = False) -> str:
        data = b"".join(handle.pending)
        handle.pending.clear()
        return handle.redactor.feed(handle.decoder.decode(data, final=final), final=final)

    def _flush(self, handle: _Call) -> None:
        text = self._take(handle)
        if not text:
            return
        now = now_iso()
        with self.store.transaction() as conn:
            conn.execute(
                'UPDATE "NetworkCall" SET response = response || ?, updatedAt = ? WHERE id = ?', (text, now, handle.id)
            )
            if handle.stream_id and handle.ok:
                conn.execute(
                    'UPDATE "ResponseStream" SET rawOutput = rawOutput || ?, updatedAt = ? WHERE id = ?',
                    (text, now, handle.stream_id),
                )
