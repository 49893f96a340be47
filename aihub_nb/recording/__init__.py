"""Network-call recording: every HTTP exchange a provider client or an HTTP tool makes.

    transport.py   `recording_transport(sink, lib=...)`: an httpx / httpx2 transport that reports
                   each exchange (request, response, body chunks as the client reads them, end)
                   to a `CallSink`, headers and URL redacted (aihub_nb.redact)
    store_sink.py  `StoreSink`: NetworkCall rows, the response appended as it streams (ResponseChunk
                   rows, a background flush), request bodies stored against earlier ones
    recorder.py    `Recorder`: a hub's recording, owned by its runtime; `recorder.call(...)` is
                   the explicit handle of one provider call, opened around it and closed with its
                   stream's final status
    memory.py      `MemorySink`: calls kept in memory, for tests and quick looks
"""

from __future__ import annotations

from ..redact import REDACTED, redact_headers, redact_url
from .memory import MemorySink, RecordedCall
from .recorder import CallHandle, Recorder
from .store_sink import StoreSink
from .transport import CLOSED_EARLY, CallSink, recording_transport

__all__ = [
    "CLOSED_EARLY",
    "REDACTED",
    "CallHandle",
    "CallSink",
    "MemorySink",
    "RecordedCall",
    "Recorder",
    "StoreSink",
    "recording_transport",
    "redact_headers",
    "redact_url",
]
