"""A very long streamed reply through the hub, with all recording on, against the raw official client.

    python -m benchmarks longreply [--tokens 200000] [--runs 2] [--provider openai|ollama|both]

Both sides stream the same scripted reply (`ScriptedReply.lorem(tokens)`: one word per chunk) from the
same `aihub_nb.testing.LocalServer`, in the same process and run, alternating (the side that
goes first alternates too):

* raw: the official client (`openai.OpenAI(..., max_retries=0)` with usage included, or
  `ollama.Client`), iterating every chunk and joining the content;
* hub: a whole `hub.chat(NAME, model=CONNECTION).send(PROMPT)` turn on a Hub whose store is a
  real file, recording the NetworkCall, its response (appended every 0.01 s), the ResponseStream
  and the messages and metrics.

The recorder's cost per chunk must not grow with the reply: a recorder that rewrote what it had
stored at each flush would make this hours long. Reported: each side's median wall time, the
ratio hub/raw of the medians (target <= 1.20), the hub's tokens per second, and what the store
holds afterwards (its raw output must equal the bytes on the wire). Exits 1 when a ratio misses
its target.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import ollama
import openai

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply
from benchmarks._table import text_table

TARGET = 1.20
MODEL = "local-chat"
PROMPT = "Write a very long passage of placeholder text, please."


def _check(ok: bool, message: str) -> None:
    """An assertion that `python -O` keeps."""
    if not ok:
        raise AssertionError(message)


def _run(provider: str, hub: Hub, server: LocalServer, tokens: int, runs: int) -> tuple[tuple[str, ...], bool]:
    expected = ScriptedReply.lorem(tokens).text
    messages = [{"role": "user", "content": PROMPT}]
    name = f"long-{provider}"
    if provider == "openai":
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        hub.connect("OPENAI", MODEL, name=name, base_url=server.openai_base_url, api_key="x")

        def raw() -> str:
            stream = client.chat.completions.create(
                model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
            )
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    else:
        client = ollama.Client(host=server.ollama_host)
        hub.connect("OLLAMA", MODEL, name=name, host=server.ollama_host)

        def raw() -> str:
            return "".join(part.message.content or "" for part in client.chat(model=MODEL, messages=messages, stream=True))

    turns = 0

    def hub_turn() -> str:
        nonlocal turns
        turns += 1
        return hub.chat(f"{name}-{turns}", model=name).send(PROMPT).text

    times: dict[str, list[float]] = {"raw": [], "hub": []}
    try:
        for i in range(runs):
            order = (("raw", raw), ("hub", hub_turn)) if i % 2 == 0 else (("hub", hub_turn), ("raw", raw))
            for key, call in order:
                server.script(ScriptedReply.lorem(tokens))
                gc.collect()
                started = time.perf_counter()
                text = call()
                times[key].append(time.perf_counter() - started)
                _check(text == expected, f"{provider} {key}: the reply differs from the scripted one")
    finally:
        client.close() if hasattr(client, "close") else None

    chat = hub.get_chat(f"{name}-{turns}")
    stream = hub.store.get("ResponseStream", chat.messages()[-1]["references"]["stream"])
    [call] = hub.store.referencing(stream["id"], model="NetworkCall", name="stream")
    _check(stream["status"] == "completed" and call["status"] == "success", "the turn was not recorded as completed")
    _check(stream["rawOutput"] == call["response"] and len(call["response"]) > len(expected), "the raw output is incomplete")
    chunks = hub.store.count("ResponseChunk", callId=call["id"])
    raw_median, hub_median = statistics.median(times["raw"]), statistics.median(times["hub"])
    ratio = hub_median / raw_median
    ok = ratio <= TARGET
    row = (
        provider,
        f"{raw_median:.2f} s",
        f"{hub_median:.2f} s",
        f"{ratio:.3f}",
        f"{tokens / hub_median:,.0f}",
        f"{len(call['response']):,} chars in {chunks + 1} pieces",
        f"<= {TARGET:.2f}",
        "PASS" if ok else "MISS",
    )
    return row, ok


def _table(rows: list[tuple[str, ...]]) -> str:
    header = ("provider", "raw median", "hub median", "ratio", "hub tokens/s", "stored response", "target", "result")
    return text_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks longreply", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000, help="tokens (chunks) in the reply (default 200000)")
    parser.add_argument("--runs", type=int, default=2, help="interleaved raw/hub pairs per provider (default 2)")
    parser.add_argument("--provider", choices=("openai", "ollama", "both"), default="openai")
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.runs < 1:
        parser.error("--tokens and --runs must be >= 1")
    providers = ("openai", "ollama") if args.provider == "both" else (args.provider,)
    rows, passed = [], True
    with tempfile.TemporaryDirectory(prefix="aihub-bench-long-") as tmp, LocalServer() as server:
        hub = Hub(Path(tmp) / "home")
        try:
            for provider in providers:
                row, ok = _run(provider, hub, server, args.tokens, args.runs)
                rows.append(row)
                passed &= ok
        finally:
            hub.close()
    print(
        f"aihub_nb long-reply benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"openai {openai.__version__}, {platform.system()} {platform.machine()}; a {args.tokens:,}-token streamed "
        f"reply, {args.runs} interleaved raw/hub pair{'s' if args.runs != 1 else ''} per provider"
    )
    print(_table(rows))
    return 0 if passed else 1
