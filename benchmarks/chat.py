"""A streamed chat turn through the hub, with all recording on, against the raw official client.

    python -m benchmarks chat [--tokens 2000] [--runs 20] [--warmup 3] [--provider openai|ollama|both] [--profile]

Both sides stream the same scripted reply (`ScriptedReply.lorem(tokens)`: one word per chunk) from the
same `aihub_nb.testing.LocalServer`, in the same process and run:

* raw: the official client (`openai.OpenAI(..., max_retries=0)` with
  `stream_options={"include_usage": True}`, or `ollama.Client`), one request with one user
  message, iterating every chunk and joining the content;
* hub: `hub.chat(NAME, model=CONNECTION).send(PROMPT)` on a Hub whose store is a real file in a
  temporary directory, a new chat per run so both sides send the same single message. That is a
  whole turn: the Chat and MessageThread rows, the Jobs row and thread lock, the user Message,
  the ResponseStream, the NetworkCall row and its response appended every 0.01 s by the recording
  transport, the final Message and the metrics.

Runs alternate raw/hub (the side that goes first alternates too), after warm-up runs of each;
each hub reply's text must equal the raw reply's. Reported: median and p90 wall time of each
side, the ratio of the medians, and the median of the per-pair ratios hub/raw, which decides
(target <= 1.10). `--profile` shows where one hub turn spends its time (cProfile). Exits 1 when
a ratio misses its target.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import platform
import pstats
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ollama
import openai

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply
from benchmarks._table import text_table

TARGET = 1.10
MODEL = "local-chat"
PROMPT = "Write a long passage of placeholder text, please."


class _Case:
    """One provider: a raw call and a hub turn, each streaming the next scripted reply."""

    def __init__(self, provider: str, hub: Hub, server: LocalServer, tokens: int) -> None:
        self.provider = provider
        self.hub = hub
        self.server = server
        self.tokens = tokens
        self.connection = f"bench-{provider}"
        self.expected = ScriptedReply.lorem(tokens).text
        self.turns = 0
        messages = [{"role": "user", "content": PROMPT}]
        if provider == "openai":
            client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
            hub.connect("OPENAI", MODEL, name=self.connection, base_url=server.openai_base_url, api_key="x")

            def raw() -> str:
                stream = client.chat.completions.create(
                    model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
                )
                return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

            self.close_raw = client.close
        else:
            client = ollama.Client(host=server.ollama_host)
            hub.connect("OLLAMA", MODEL, name=self.connection, host=server.ollama_host)

            def raw() -> str:
                parts = client.chat(model=MODEL, messages=messages, stream=True)
                return "".join(part.message.content or "" for part in parts)

            self.close_raw = client.close
        self._raw = raw

    def _timed(self, call: Callable[[], str]) -> tuple[float, str]:
        self.server.script(ScriptedReply.lorem(self.tokens))
        gc.collect()
        started = time.perf_counter()
        text = call()
        return time.perf_counter() - started, text

    def raw(self) -> float:
        elapsed, text = self._timed(self._raw)
        _check(text == self.expected, f"{self.provider}: the raw reply differs from the scripted one")
        return elapsed

    def hub_turn(self) -> float:
        self.turns += 1
        name = f"{self.connection}-{self.turns}"
        elapsed, text = self._timed(lambda: self.hub.chat(name, model=self.connection).send(PROMPT).text)
        _check(text == self.expected, f"{self.provider}: the hub's reply differs from the raw one")
        return elapsed


def _check(ok: bool, message: str) -> None:
    """An assertion that `python -O` keeps."""
    if not ok:
        raise AssertionError(message)


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _measure(case: _Case, runs: int, warmup: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        case.raw()
        case.hub_turn()
    times: dict[str, list[float]] = {"raw": [], "hub": []}
    for i in range(runs):
        order = (("raw", case.raw), ("hub", case.hub_turn)) if i % 2 == 0 else (("hub", case.hub_turn), ("raw", case.raw))
        for key, run in order:
            times[key].append(run())
    return times


def _check_recording(hub: Hub, case: _Case) -> str:
    """What the last hub turn left in the store: proof that recording was on."""
    chat = hub.get_chat(f"{case.connection}-{case.turns}")
    stream_id = chat.messages()[-1]["references"]["stream"]
    stream = hub.store.get("ResponseStream", stream_id)
    calls = hub.store.referencing(stream_id, model="NetworkCall", name="stream")
    _check(stream["status"] == "completed" and bool(stream["rawOutput"]), "the ResponseStream kept no raw output")
    _check(len(calls) == 1 and calls[0]["status"] == "success" and bool(calls[0]["response"]), "no NetworkCall was recorded")
    metrics = hub.store.count("Metric")
    return f"{case.provider}: rawOutput {len(stream['rawOutput']):,} chars, 1 NetworkCall, {metrics} metric rows so far"


def _profile(case: _Case, top: int = 15) -> str:
    profiler = cProfile.Profile()
    case.server.script(ScriptedReply.lorem(case.tokens))
    case.turns += 1
    name = f"{case.connection}-{case.turns}"
    gc.collect()
    profiler.enable()
    case.hub.chat(name, model=case.connection).send(PROMPT)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    out.write(f"--- one {case.provider} hub turn, top {top} by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    out.write(f"--- one {case.provider} hub turn, top {top} by own time\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _table(rows: list[tuple[str, ...]]) -> str:
    header = ("provider", "raw median", "hub median", "raw p90", "hub p90", "ratio of medians", "median ratio", "target", "result")
    return text_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks chat", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens (chunks) in the streamed reply (default 2000)")
    parser.add_argument("--runs", type=int, default=20, help="measured raw/hub pairs per provider (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs of each side first (default 3)")
    parser.add_argument("--provider", choices=("openai", "ollama", "both"), default="both")
    parser.add_argument("--profile", action="store_true", help="also profile one hub turn (cProfile)")
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.runs < 2 or args.warmup < 0:
        parser.error("--tokens must be >= 1, --runs >= 2 and --warmup >= 0")
    providers = ("openai", "ollama") if args.provider == "both" else (args.provider,)

    rows, notes, profiles, passed = [], [], [], True
    with tempfile.TemporaryDirectory(prefix="aihub-bench-chat-") as tmp, LocalServer() as server:
        hub = Hub(Path(tmp) / "home")
        try:
            for provider in providers:
                case = _Case(provider, hub, server, args.tokens)
                try:
                    times = _measure(case, args.runs, args.warmup)
                    notes.append(_check_recording(hub, case))
                    if args.profile:
                        profiles.append(_profile(case))
                finally:
                    case.close_raw()
                raw, hub_times = times["raw"], times["hub"]
                ratio = statistics.median(h / r for h, r in zip(hub_times, raw))  # per interleaved pair
                ok = ratio <= TARGET
                passed &= ok
                rows.append((
                    provider,
                    f"{statistics.median(raw) * 1000:.1f} ms",
                    f"{statistics.median(hub_times) * 1000:.1f} ms",
                    f"{_p90(raw) * 1000:.1f} ms",
                    f"{_p90(hub_times) * 1000:.1f} ms",
                    f"{statistics.median(hub_times) / statistics.median(raw):.3f}",
                    f"{ratio:.3f}",
                    f"<= {TARGET:.2f}",
                    "PASS" if ok else "MISS",
                ))
        finally:
            hub.close()

    print(
        f"aihub_nb chat benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"openai {openai.__version__}, {platform.system()} {platform.machine()}; a {args.tokens}-token streamed "
        f"reply, {args.runs} interleaved raw/hub pairs per provider after {args.warmup} warm-up runs of each"
    )
    print(_table(rows))
    print("recorded: " + "; ".join(notes))
    if not passed and not args.profile:
        print("A ratio missed its target: run with --profile to see where the hub's time goes.")
    for text in profiles:
        print()
        print(text.rstrip())
    return 0 if passed else 1
