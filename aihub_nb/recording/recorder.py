"""The `Recorder`: a hub's network-call recording, with one explicit handle per provider call.

    recorder = Recorder(store)
    client = httpx.Client(transport=recorder.transport("httpx"))
    with recorder.call(stream_id, job=job_id) as call:     # around the provider call
        ...client.post(...)...                               # NetworkCall rows: references job, stream
        call.close(status="completed", result_messages=[...])   # the stream's final status

A call handle is bound to the thread that entered it, in a registry that belongs to its
Recorder (two hubs in one process share nothing). The recorder's transport reports each
exchange to the recorder, which asks that registry for the handle of the call under way in
the requesting thread: its references go on the NetworkCall row, and a successful response
becomes the raw output of its ResponseStream. A request made with no call under way is
recorded without them. Leaving the `with` block unbinds the handle, and closes its stream with
a status that says how the block ended, should the caller not have closed it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..store import now_iso
from .store_sink import StoreSink
from .transport import CallSink, recording_transport

if TYPE_CHECKING:
    from types import TracebackType

    from ..store import Store

__all__ = ["CallHandle", "Recorder"]


class CallHandle:
    """One provider call's recording: the references its NetworkCall rows carry and, with a
    `stream_id`, the ResponseStream its successful responses feed. Made by `Recorder.call`."""

    def __init__(
        self, recorder: Recorder, stream_id: str | None, references: Mapping[str, str | None],
        embedding_keys: tuple[str, list[str]] | None = None,
    ) -> None:
        self.recorder = recorder
        self.stream_id = stream_id
        self.embedding_keys = embedding_keys  # (cache model, each input's EmbeddingCache key)
        refs = {k: v for k, v in references.items() if v}
        if stream_id:
            refs["stream"] = stream_id
        self.references: dict[str, str] = refs
        self.status: str | None = None  # set by close()
        self._thread: int | None = None

    def __enter__(self) -> CallHandle:
        self.recorder._bind(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.recorder._unbind(self)
        if self.status is None and self.stream_id:
            if exc_type is None:
                status = "completed"
            elif issubclass(exc_type, (KeyboardInterrupt, GeneratorExit)):
                status = "interrupted"
            else:
                status = "failed"
            self.close(status=status)

    def close(self, *, status: str, result_messages: list | None = None) -> None:
        """Finish the call's ResponseStream: its status and its result messages, in one UPDATE
        (the raw output is already stored, with its calls). Once; later calls change nothing."""
        if self.status is not None:
            return
        self.status = status
        if self.stream_id:
            self.recorder.store.conn.execute(
                'UPDATE "ResponseStream" SET status = ?, resultMessages = ?, updatedAt = ? WHERE id = ?',
                (
                    status,
                    json.dumps(result_messages or [], ensure_ascii=False, default=str),
                    now_iso(),
                    self.stream_id,
                ),
            )

    def fail_answered(self, error: str) -> None:
        """The call's exchanges went through but their answer was no reply (an empty stream, an
        error inside it): its successful NetworkCall rows become errors, with the reason."""
        if not self.stream_id:
            return
        with self.recorder.store.transaction() as conn:
            conn.execute(
                'UPDATE "NetworkCall" SET status = ?, error = ?, updatedAt = ? '
                "WHERE status = 'success' AND json_extract(\"references\", '$.stream') = ?",
                ("error", error, now_iso(), self.stream_id),
            )


class Recorder:
    """A hub's network-call recording into its store (a `CallSink` itself): transports for
    clients, and `call(...)` handles that say which provider call a request belongs to."""

    def __init__(self, store: Store, *, sink: StoreSink | None = None) -> None:
        self.store = store
        self.sink = sink if sink is not None else StoreSink(store)
        # The calls under way, per thread, innermost last.
        self._calls: dict[int, list[CallHandle]] = {}
        self._lock = threading.Lock()
        # Only `request` needs the call under way; the rest go straight to the store sink.
        self.response = self.sink.response
        self.chunk = self.sink.chunk
        self.finish = self.sink.finish

    def call(
        self, stream_id: str | None = None, *, embedding_keys: tuple[str, list[str]] | None = None,
        **references: str | None,
    ) -> CallHandle:
        """A handle for one provider call, to enter around it: requests made in the block carry
        `references` (empty values are left out) and, with `stream_id`, feed that ResponseStream.
        With `embedding_keys` (the cache's model and the EmbeddingCache key of each input sent), the
        vectors of the embedding responses are kept in the cache, and the responses refer to them."""
        return CallHandle(self, stream_id, references, embedding_keys)

    def transport(self, lib: str = "httpx", sink: CallSink | None = None, **transport_kwargs: Any) -> Any:
        """An HTTP transport of `lib` ("httpx" or "httpx2") recording through this recorder, or
        through `sink` (one that passes calls on to this recorder, say)."""
        return recording_transport(self if sink is None else sink, lib=lib, **transport_kwargs)

    def current(self) -> CallHandle | None:
        """The call under way in this thread, if any."""
        stack = self._calls.get(threading.get_ident())
        return stack[-1] if stack else None

    def request(self, *, method: str, url: str, headers: dict[str, str], body: str) -> Any:
        call = self.current()
        if call is None:
            return self.sink.request(method=method, url=url, headers=headers, body=body)
        return self.sink.request(
            method=method, url=url, headers=headers, body=body, stream_id=call.stream_id, references=call.references,
            embedding_keys=call.embedding_keys,
        )

    def _bind(self, call: CallHandle) -> None:
        if call._thread is not None:
            raise RuntimeError("this call is already under way; make a new one with recorder.call(...)")
        call._thread = threading.get_ident()
        with self._lock:
            self._calls.setdefault(call._thread, []).append(call)

    def _unbind(self, call: CallHandle) -> None:
        """Forget `call` (from the thread that bound it, wherever the block ends)."""
        with self._lock:
            stack = self._calls.get(call._thread or 0, [])
            if call in stack:
                stack.remove(call)
            if not stack:
                self._calls.pop(call._thread or 0, None)
