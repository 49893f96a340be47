"""Record every HTTP exchange a provider client makes, at the transport layer.

`recording_transport(sink)` returns an `HTTPTransport` for httpx (ollama's client) or
httpx2 (openai's client) that reports each exchange to a `CallSink`:

    request(...)  -> handle      before the request is sent (headers and URL redacted)
    response(handle, ...)        when the status line and headers arrive
    chunk(handle, data)          for every piece of the body, as the client reads it, with its
                                 Content-Encoding (gzip, ...) undone as the client undoes it
    finish(handle, ...)          exactly once: at the end of the body, on an error,
                                 or when the client closes the response early

The body stays a stream: each chunk goes to the sink and on to the client as it
arrives. A sink that raises never breaks the call; its errors are logged.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol
import h11

from ..redact import redact_headers, redact_url

__all__ = ["CLOSED_EARLY", "CallSink", "recording_transport"]

_log = logging.getLogger(__name__)

CLOSED_EARLY = "closed before the end of the response"

_LIBS = ("httpx", "httpx2")
# How long closing a half-read response may wait for the end of a body already on its way.
_END_OF_BODY_WAIT = 0.1


class CallSink(Protocol):
    """Where recorded exchanges go; headers and URL arrive already redacted."""

    def request(self, *, method: str, url: str, headers: dict[str, str], body: str) -> object: ...

    def response(self, handle: Any, *, status_code: int, headers: dict[str, str]) -> None: ...

    def chunk(self, handle: Any, data: bytes) -> None: ...

    def finish(self, handle: Any, *, error: str | None, duration_ms: float) -> None: ...


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ignore(*_: object) -> None:
    """Stands in for a sink method that failed once, so a broken sink is logged only once."""


def _ends_event_stream(data: bytes) -> bool:
    """Whether the last bytes read end an OpenAI-style event stream (`data: [DONE]`): a client
    that stops there has read all there is, whatever the server's framing after it."""
    return data.rstrip().endswith((b"data: [DONE]", b"data:[DONE]"))


def _rest_of_body_arrived(stream: object) -> bool:
    """Whether a response body that the client stopped reading had in fact fully arrived.

    Clients stop at the last byte they need: openai's SSE reader closes the response at
    `data: [DONE]`, before httpcore has parsed the empty chunk that ends the body. This
    looks at httpcore's h11 parser (private attributes, the same in httpcore and httpcore2)
    and waits at most `_END_OF_BODY_WAIT` for the end of the message. Anything else, be it
    unread body data, HTTP/2, a proxy or a transport of another make, counts as not arrived.
    """
    try:
        connection = stream._httpcore_stream._stream._connection  # type: ignore[attr-defined]
        parser = connection._h11_state
        network = connection._network_stream
        if parser.their_state is h11.DONE:
            return True
        deadline = time.monotonic() + _END_OF_BODY_WAIT
        while (event := parser.next_event()) is h11.NEED_DATA:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            parser.receive_data(network.read(65536, timeout=remaining))
        return type(event) is h11.EndOfMessage
    except Exception:
        return False


class _BodyDecoder:
    """Undoes a response's Content-Encoding for the record, with the lib's own decoders: the
    client gets the bytes as they came, and decodes them itself."""

    def __init__(self, decoders: list[Any]) -> None:
        self._decoders = decoders  # in decoding order: the last coding applied first

    @classmethod
    def for_response(cls, supported: Mapping[str, type], headers: Any) -> _BodyDecoder | None:
        """The decoder for `headers`' Content-Encoding, or None for a body sent as it is."""
        codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
        codings = [c for c in codings if c != "identity" and c in supported]
        return cls([supported[coding]() for coding in reversed(codings)]) if codings else None

    def decode(self, data: bytes) -> bytes:
        for decoder in self._decoders:
            data = _joined(decoder.decode(data))
        return data

    def flush(self) -> bytes:
        data = b""
        for decoder in self._decoders:
            data = _joined(decoder.decode(data)) + _joined(decoder.flush())
        return data


def _joined(out: bytes | Iterable[bytes]) -> bytes:
    """httpx's decoders return bytes, httpx2's an iterator of them."""
    return out if isinstance(out, bytes) else b"".join(out)


class _RecordingStream:
    """Response body wrapper: passes each chunk (decoded) to the sink, then on to the client."""

    def __init__(
        self, inner: Any, sink: CallSink, handle: object, started: float, decoder: _BodyDecoder | None = None
    ) -> None:
        self._inner = inner
        self._sink = sink
        self._handle = handle
        self._started = started
        self._decoder = decoder
        self._finished = False
        self._last = b""

    def __iter__(self) -> Iterator[bytes]:
        record = self._sink.chunk
        # Held here, the inner stream outlives the handlers below: a loop's own reference
        # is dropped on entering them, which would close the connection before `_stopped`.
        chunks = iter(self._inner)
        try:
            for data in chunks:
                text = data if self._decoder is None else self._decode(data)  # the common case inline
                if text:
                    self._last = text
                    try:
                        record(self._handle, text)
                    except Exception:
                        _log.exception("Recording sink failed on a response chunk; chunks are no longer recorded")
                        record = _ignore
                yield data
        except GeneratorExit:  # the client stopped reading
            self._stopped()
            raise
        except BaseException as exc:
            self._finish(_describe(exc))
            raise
        rest = self._decode(b"", final=True)
        if rest:
            self._record(record, rest)
        self._finish(None)

    def _record(self, record: Any, data: bytes) -> Any:
        """Pass `data` to the sink's `record`; the method to use next (`_ignore` once it failed)."""
        try:
            record(self._handle, data)
        except Exception:
            _log.exception("Recording sink failed on a response chunk; chunks are no longer recorded")
            return _ignore
        return record

    def _decode(self, data: bytes, *, final: bool = False) -> bytes:
        """`data` with the Content-Encoding undone (with `final`, what the decoder still holds);
        as it came without a decoder, or once decoding failed: the client reports that itself."""
        if self._decoder is None:
            return b"" if final else data
        try:
            return self._decoder.flush() if final else self._decoder.decode(data)
        except Exception:
            self._decoder = None
            return b"" if final else data

    def close(self) -> None:
        self._stopped()
        self._inner.close()

    def _stopped(self) -> None:
        """The client stopped reading: the call is complete only if the whole body had arrived."""
        if not self._finished:
            complete = _ends_event_stream(self._last) or _rest_of_body_arrived(self._inner)
            self._finish(None if complete else CLOSED_EARLY)

    def _finish(self, error: str | None) -> None:
        if not self._finished:
            self._finished = True
            _finish(self._sink, self._handle, error, self._started)


def _finish(sink: CallSink, handle: object, error: str | None, started: float) -> None:
    try:
        sink.finish(handle, error=error, duration_ms=(time.perf_counter() - started) * 1000.0)
    except Exception:
        _log.exception("Recording sink failed to finish a call")


class _RecordingTransport:
    """Mixed in before `HTTPTransport` of httpx or httpx2; `_stream_class` matches the lib."""

    _stream_class: type[_RecordingStream]
    _decoders: Mapping[str, type]  # the lib's content decoders, by Content-Encoding

    def __init__(self, sink: CallSink, **transport_kwargs: Any) -> None:
        super().__init__(**transport_kwargs)
        self._sink = sink

    def handle_request(self, request: Any) -> Any:
        started = time.perf_counter()
        sink = self._sink
        body = request.read().decode("utf-8", errors="replace")
        try:
            handle = sink.request(
                method=request.method,
                url=redact_url(str(request.url)),
                headers=redact_headers(request.headers),
                body=body,
            )
        except Exception:
            _log.exception("Recording sink failed to record a request; this call is not recorded")
            return super().handle_request(request)  # type: ignore[misc]
        try:
            response = super().handle_request(request)  # type: ignore[misc]
        except BaseException as exc:
            _finish(sink, handle, _describe(exc), started)
            raise
        try:
            sink.response(handle, status_code=response.status_code, headers=redact_headers(response.headers))
        except Exception:
            _log.exception("Recording sink failed to record a response")
        try:
            decoder = _BodyDecoder.for_response(self._decoders, response.headers)
        except Exception:  # an encoding the lib's decoders cannot even start on: record it as it came
            decoder = None
        response.stream = self._stream_class(response.stream, sink, handle, started, decoder)
        return response


def _lib_decoders(lib: str) -> dict[str, type]:
    """The lib's own content decoders by Content-Encoding (a private module, the same in httpx
    and httpx2); none, so bodies are recorded as they came, should it ever move."""
    try:
        return dict(importlib.import_module(f"{lib}._decoders").SUPPORTED_DECODERS)
    except (ImportError, AttributeError):
        return {}


@functools.cache
def _transport_class(lib: str) -> type:
    if lib not in _LIBS:
        raise ValueError(f"lib must be one of {', '.join(_LIBS)}, not {lib!r}")
    module = importlib.import_module(lib)
    decoders = _lib_decoders(lib)
    stream_class = type(
        "RecordingStream", (_RecordingStream, module.SyncByteStream), {"__module__": __name__}
    )
    return type(
        "RecordingTransport",
        (_RecordingTransport, module.HTTPTransport),
        {"__module__": __name__, "_stream_class": stream_class, "_decoders": decoders},
    )


def recording_transport(sink: CallSink, *, lib: str = "httpx", **transport_kwargs: Any) -> Any:
    """An `HTTPTransport` of `lib` ("httpx" or "httpx2") that reports every exchange to `sink`.

    `transport_kwargs` go to `HTTPTransport` (verify, http2, retries, ...).
    """
    return _transport_class(lib)(sink, **transport_kwargs)
