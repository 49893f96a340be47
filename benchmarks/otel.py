"""A streamed turn with OpenTelemetry export on (to a local OTLP/HTTP receiver) against export off.

    python -m benchmarks otel [--tokens 2000] [--runs 9]

Two hubs, each on its own real store, stream the same scripted reply (`ScriptedReply.lorem(tokens)`)
from the same `aihub_nb.testing.LocalServer`, in the same process and run, alternating (the side
that goes first alternates too): one with export off, one with `hub.otel("on", endpoint=...)`
pointed at a receiver on 127.0.0.1 that answers every OTLP request. Reported: each side's median
wall time per turn, the ratio on/off (target <= 1.05), and the spans the receiver got. Exits 1
when the ratio misses its target.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

TARGET = 1.05


class _Receiver(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/traces":
            type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks otel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp, LocalServer() as server:
        hubs = {"off": Hub(Path(tmp) / "off"), "on": Hub(Path(tmp) / "on")}
        hubs["on"].otel("on", endpoint=endpoint)
        chats = {}
        for side, hub in hubs.items():
            hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url, api_key="x")
            chats[side] = hub.chat(f"bench-{side}", model="m")
        times: dict[str, list[float]] = {"off": [], "on": []}
        for run in range(args.runs + 1):  # the first round warms both up and is not counted
            order = ["off", "on"] if run % 2 else ["on", "off"]
            for side in order:
                server.script(ScriptedReply.lorem(args.tokens))
                started = time.perf_counter()
                reply = chats[side].send("Write placeholder text.")
                elapsed = time.perf_counter() - started
                if reply.status != "completed":
                    raise AssertionError(f"{side}: the turn ended {reply.status}")
                if run:
                    times[side].append(elapsed)
        hubs["on"].telemetry.flush()
        status = hubs["on"].otel("status")
        for hub in hubs.values():
            hub.close()
    receiver.shutdown()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    ratio = on / off
    print(f"streamed turn of {args.tokens} tokens, median of {args.runs}: export off {off * 1000:.1f} ms, "
          f"export on {on * 1000:.1f} ms")
    print(f"ratio on/off {ratio:.3f} (target <= {TARGET}); spans exported {status['exported']}, "
          f"dropped {status['dropped']}, failed {status['failed']}; OTLP trace requests {_Receiver.received}")
    return 0 if ratio <= TARGET else 1
