"""Where recorded HTTP calls land: NetworkCall rows, and the raw output of the stream being read.

The recording transports (`recording_transport`) call a sink for every request, response, chunk
and end. `StoreSink` writes them to the store while the response streams: a NetworkCall row per
request, its body and headers (already redacted), the response text as it arrives, the status,
HTTP code and duration. When a request names a ResponseStream (`stream_id`: the `Recorder` passes
that of the call under way), a successful response is that stream's raw output too (stored once:
aihub_nb.payloads), so a reply cut off by a crash or Ctrl-C keeps what arrived.

The response is appended, never rewritten: each flush adds one ResponseChunk row, so a flush
costs the same at the 100th token and at the 200,000th. Flushes happen at most every
`flush_interval` (0.01 s) while chunks arrive, and a chunk that waits longer (a stream that
stalls) is written by a background flush (checking every half interval); so a process killed
mid-stream loses at most what it read in the last 0.02 s (plus a tail that begins a known
secret, which the redactor holds until the next chunk says whether it is one). A request body
that repeats a recent one (a chat's history) is stored as a reference to it plus what is new.
Every known secret (aihub_nb.redact) is masked in what is written: URL, headers, body, response
and error. Base64 images in a body or a whole JSON response are kept once as files in the hub's
media folder and the row holds their `media:` reference instead (aihub_nb.media.externalize), so
images do not fill the database.

An embedding response (a URL path ending in `/embeddings`, or Ollama's `/api/embed`) is one JSON
answer that is useless in part: it is held until its end and written once, redacted in one pass
(no image scan: it holds vectors). When the request said which EmbeddingCache key each input has
(`embedding_keys`), its base64 vectors are kept in the cache and the response refers to them
(aihub_nb.payloads.store_vectors); reads put them back.
"""

from __future__ import annotations

import codecs
import threading
from urllib.parse import urlsplit
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..media import MediaStore, externalize
from ..payloads import VECTORS, common_ends, store_vectors
from ..redact import StreamRedactor, redact, redact_data
from ..store import now_iso

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["StoreSink"]

# A body is stored against an earlier one when they share at least this many characters.
_MIN_SHARED = 256
_RECENT_BODIES = 4  # per endpoint, the bodies a new one is compared with


class _Call:
    __slots__ = (
        "id", "stream_id", "decoder", "pending", "since", "last_flush", "ok", "lock", "done", "watched", "redactor",
        "size", "json", "vectors", "embedding_keys",
    )

    def __init__(
        self, call_id: str, stream_id: str | None, *, vectors: bool = False,
        embedding_keys: tuple[str, list[str]] | None = None,
    ) -> None:
        self.id = call_id
        self.stream_id = stream_id
        self.vectors = vectors  # an embedding response: held whole, written once
        self.embedding_keys = embedding_keys
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.redactor = StreamRedactor()
        self.pending: list[bytes] = []  # decoded once per flush, not once per chunk
        self.since = 0.0  # when the oldest pending chunk arrived
        self.last_flush = time.monotonic()
        self.ok = False
        self.done = False
        self.watched = False
        self.lock = threading.Lock()
        self.size = 0  # bytes of response so far
        self.json = False  # a whole JSON answer (not a stream): where base64 images come


class StoreSink:
    """A CallSink that records into a Store."""

    def __init__(self, store: Store, *, flush_interval: float = 0.01) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self._recent: dict[str, deque[tuple[str, str]]] = {}
        self._recent_lock = threading.Lock()
        self._open: set[_Call] = set()  # calls whose response is under way, for the background flush
        self._open_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def request(
        self, *, method: str, url: str, headers: dict[str, str], body: str,
        stream_id: str | None = None, references: Mapping[str, str] | None = None,
        embedding_keys: tuple[str, list[str]] | None = None,
    ) -> _Call:
        """A new NetworkCall row carrying `references`; with `stream_id`, a successful response is
        also the raw output of that ResponseStream (and `references` name it as "stream"); with
        `embedding_keys` (the cache's model and each input's key), the vectors of an embedding
        response go to the EmbeddingCache and the response refers to them."""
        url, body = redact(url), externalize(redact(body), MediaStore.beside(self.store))
        fields = {}
        base = self._base(url, body)
        stored = body
        if base is not None:
            base_id, head, tail = base
            stored = body[head : len(body) - tail]
            fields["bodyBase"] = {"call": base_id, "head": head, "tail": tail}
        row = self.store.create(
            "NetworkCall",
            endpoint=url,
            method=method,
            body=stored,
            status="pending",
            requestHeaders=redact_data(headers),
            references=dict(references or {}),
            **fields,
        )
        self._remember(url, row["id"], body)
        path = urlsplit(url).path.rstrip("/")
        vectors = path.endswith(("/embeddings", "/api/embed", "/api/embeddings"))
        return _Call(row["id"], stream_id, vectors=vectors, embedding_keys=embedding_keys if vectors else None)

    def _base(self, url: str, body: str) -> tuple[str, int, int] | None:
        """The recent call whose body this one shares most with, and how much at each end."""
        if len(body) < _MIN_SHARED:
            return None
        with self._recent_lock:
            candidates = list(self._recent.get(url, ()))
        best = None
        for call_id, earlier in reversed(candidates):
            head, tail = common_ends(earlier, body)
            if head + tail >= _MIN_SHARED and (best is None or head + tail > best[1] + best[2]):
                best = (call_id, head, tail)
        return best

    def _remember(self, url: str, call_id: str, body: str) -> None:
        if len(body) < _MIN_SHARED:
            return
        with self._recent_lock:
            recent = self._recent.get(url)
            if recent is None:
                if len(self._recent) >= 64:  # endpoints: keep the table small
                    self._recent.pop(next(iter(self._recent)))
                recent = self._recent[url] = deque(maxlen=_RECENT_BODIES)
            recent.append((call_id, body))

    def response(self, handle: _Call, *, status_code: int, headers: dict[str, str]) -> None:
        handle.ok = status_code < 400
        handle.json = "application/json" in next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        fields = {"statusCode": status_code, "responseHeaders": redact_data(headers)}
        if handle.ok and handle.stream_id:
            fields["streamId"] = handle.stream_id
        else:
            handle.stream_id = None
        self.store.set("NetworkCall", handle.id, **fields)

    def chunk(self, handle: _Call, data: bytes) -> None:
        now = time.monotonic()
        with handle.lock:
            if not handle.pending:
                handle.since = now
            handle.pending.append(data)
            handle.size += len(data)
            if handle.vectors:
                return
            if now - handle.last_flush < self.flush_interval:
                if not handle.watched:
                    self._watch(handle)
                return
            handle.last_flush = now
            self._write(handle, self._take(handle))

    def finish(self, handle: _Call, *, error: str | None, duration_ms: float) -> None:
        """The last of the response and the call's outcome in one UPDATE of a small row."""
        if handle.vectors:
            self._finish_vectors(handle, error=error, duration_ms=duration_ms)
            return
        with handle.lock:
            handle.done = True
            text = self._take(handle, final=True)
        if handle.watched:
            with self._open_lock:
                self._open.discard(handle)
        failed = error is not None or not handle.ok
        self.store.conn.execute(
            'UPDATE "NetworkCall" SET response = response || ?, status = ?, durationMs = ?, error = ?, '
            "updatedAt = ? WHERE id = ?",
            (text, "error" if failed else "success", round(duration_ms, 3), redact(error), now_iso(), handle.id),
        )
        if handle.json and handle.size >= _MEDIA_SCAN_FROM:
            _externalize_response(self.store, handle.id)

    def _finish_vectors(self, handle: _Call, *, error: str | None, duration_ms: float) -> None:
        """An embedding response, whole: redacted at once, its vectors in the cache when the
        inputs' keys are known, written with the call's outcome in one transaction."""
        with handle.lock:
            handle.done = True
            data = b"".join(handle.pending)
            handle.pending.clear()
        text = redact(handle.decoder.decode(data, final=True))
        failed = error is not None or not handle.ok
        now = now_iso()
        with self.store.transaction() as conn:
            stored = None
            if not failed and handle.embedding_keys and text:
                model, keys = handle.embedding_keys
                stored = store_vectors(conn, text, model, keys, now)
            conn.execute(
                'UPDATE "NetworkCall" SET response = ?, status = ?, durationMs = ?, error = ?, updatedAt = ?'
                + (', "references" = json_set(coalesce("references", \'{}\'), \'$.vectors\', ?)' if stored is not None else "")
                + " WHERE id = ?",
                (
                    text if stored is None else stored, "error" if failed else "success", round(duration_ms, 3),
                    redact(error), now, *((VECTORS,) if stored is not None else ()), handle.id,
                ),
            )

    @staticmethod
    def _take(handle: _Call, *, final: bool = False) -> str:
        data = b"".join(handle.pending)
        handle.pending.clear()
        return handle.redactor.feed(handle.decoder.decode(data, final=final), final=final)

    def _write(self, handle: _Call, text: str) -> None:
        if text:
            self.store.create("ResponseChunk", callId=handle.id, text=text)

    # -- the background flush: a chunk that waits past the interval is written anyway

    def _watch(self, handle: _Call) -> None:
        handle.watched = True
        with self._open_lock:
            self._open.add(handle)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="aihub-recording-flush", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        """Runs while some response is under way; ends when none is."""
        interval = max(self.flush_interval, 0.01)
        while True:
            time.sleep(interval / 2)
            with self._open_lock:
                handles = [h for h in self._open if not h.done]
                self._open = set(handles)
                if not handles:
                    self._flusher = None
                    return
            now = time.monotonic()
            for handle in handles:
                if not handle.pending or now - handle.since < interval:
                    continue
                with handle.lock:
                    if handle.done or not handle.pending:
                        continue
                    handle.last_flush = now
                    text = self._take(handle)
                    try:
                        self._write(handle, text)
                    except Exception:  # the store is closed or busy: the next flush or the end writes it
                        handle.pending.insert(0, text.encode())


_MEDIA_SCAN_FROM = 512  # whole JSON responses this long may hold base64 images


def _externalize_response(store: Store, call_id: str) -> None:
    """Keep the base64 images of a recorded JSON response as media files, and store the response
    with their references instead (read back once, replaced only if something changed)."""
    row = store.first("NetworkCall", id=call_id)
    if row is None:
        return
    text = externalize(row["response"], MediaStore.beside(store))
    if text != row["response"]:
        store.set("NetworkCall", call_id, response=text)
