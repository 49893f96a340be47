"""`MemorySink`: a `CallSink` that keeps recorded calls in memory, for tests and quick looks."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MemorySink", "RecordedCall"]


@dataclass
class RecordedCall:
    """One exchange as `MemorySink` saw it."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    status_code: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    error: str | None = None
    duration_ms: float | None = None
    finish_count: int = 0

    @property
    def data(self) -> bytes:
        """The response body as recorded."""
        return b"".join(self.chunks)


class MemorySink:
    """A `CallSink` that keeps calls in memory, in `calls`; for tests and quick looks."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []

    def request(self, *, method: str, url: str, headers: dict[str, str], body: str) -> RecordedCall:
        call = RecordedCall(method=method, url=url, headers=headers, body=body)
        self.calls.append(call)
        return call

    def response(self, handle: RecordedCall, *, status_code: int, headers: dict[str, str]) -> None:
        handle.status_code = status_code
        handle.response_headers = headers

    def chunk(self, handle: RecordedCall, data: bytes) -> None:
        handle.chunks.append(data)

    def finish(self, handle: RecordedCall, *, error: str | None, duration_ms: float) -> None:
        handle.error = error
        handle.duration_ms = duration_ms
        handle.finish_count += 1
