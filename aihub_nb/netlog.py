"""Where recorded HTTP calls land: NetworkCall rows, and the raw output of the stream being read.

The recording transports (aihub_nb.recording) call a sink for every request, response, chunk
and end. `StoreSink` writes them to the store while the response streams: a NetworkCall row per
request, its body and headers (already redacted), the response text as it arrives, the status,
HTTP code and duration. When a turn has named a ResponseStream (`streaming_into`), the bytes of
its successful response are appended to that stream's `rawOutput` too, so a reply cut off by a
crash or Ctrl-C keeps what arrived. Writes are batched by time (`flush_interval`), never per
chunk, so recording costs little on a 2,000-token stream.
"""

from __future__ import annotations

import codecs
import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .store import now_iso

if TYPE_CHECKING:
    from .store import Store

__all__ = ["StoreSink", "streaming_into"]

_CURRENT_STREAM: contextvars.ContextVar[str | None] = contextvars.ContextVar("aihub_stream", default=None)
_REFERENCES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("aihub_refs", default=None)


@contextmanager
def streaming_into(stream_id: str | None, **references: str) -> Iterator[None]:
    """Within the block, recorded responses also feed ResponseStream `stream_id`, and new
    NetworkCall rows carry `references` (for example job=..., stream=...)."""
    token = _CURRENT_STREAM.set(stream_id)
    refs = {k: v for k, v in references.items() if v}
    if stream_id:
        refs["stream"] = stream_id
    rtoken = _REFERENCES.set(refs)
    try:
        yield
    finally:
        _CURRENT_STREAM.reset(token)
        _REFERENCES.reset(rtoken)


class _Call:
    __slots__ = ("id", "stream_id", "decoder", "pending", "last_flush", "ok")

    def __init__(self, call_id: str, stream_id: str | None) -> None:
        self.id = call_id
        self.stream_id = stream_id
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending: list[str] = []
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
            endpoint=url,
            method=method,
            body=body,
            status="pending",
            requestHeaders=headers,
            references=dict(_REFERENCES.get() or {}),
        )
        return _Call(row["id"], _CURRENT_STREAM.get())

    def response(self, handle: _Call, *, status_code: int, headers: dict[str, str]) -> None:
        handle.ok = status_code < 400
        self.store.update("NetworkCall", handle.id, statusCode=status_code, responseHeaders=headers)

    def chunk(self, handle: _Call, data: bytes) -> None:
        text = handle.decoder.decode(data)
        if text:
            handle.pending.append(text)
        now = time.monotonic()
        if now - handle.last_flush >= self.flush_interval:
            handle.last_flush = now
            self._flush(handle)

    def finish(self, handle: _Call, *, error: str | None, duration_ms: float) -> None:
        tail = handle.decoder.decode(b"", final=True)
        if tail:
            handle.pending.append(tail)
        self._flush(handle)
        failed = error is not None or not handle.ok
        self.store.update(
            "NetworkCall",
            handle.id,
            status="error" if failed else "success",
            durationMs=round(duration_ms, 3),
            error=error,
        )

    def _flush(self, handle: _Call) -> None:
        if not handle.pending:
            return
        text = "".join(handle.pending)
        handle.pending.clear()
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
