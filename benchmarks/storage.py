"""Database bytes per chat turn against the bytes on the wire.

    python -m benchmarks storage [--turns 200] [--tokens 2000] [--provider openai|ollama]

Two measurements on a Hub whose store is a real file, against the local server:

* a chat of `--turns` short turns (a one-line question, a two-line answer): each request sends
  the whole history, so the bytes on the wire per turn grow with the chat; the database should
  grow by about the turn's new content. Reported: the wire bytes (request body + response) and
  the database growth, for the whole chat and per turn over its middle half and its last quarter
  (the wire per turn grows with the history; the database per turn should not).
* one turn with a `--tokens`-token streamed reply: database growth against the wire bytes.

The database size is measured after a WAL checkpoint (file plus log). Every stored body and
response read back through the store must equal what was sent and received.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.payloads import file_bytes
from aihub_nb.testing import LocalServer, ScriptedReply

MODEL = "local-chat"


def _size(hub: Hub) -> int:
    hub.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return file_bytes(hub.store)


def _wire(hub: Hub) -> int:
    calls = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    return sum(len(c["body"].encode()) + len(c["response"].encode()) for c in calls)


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB"


def measure(server: LocalServer, home: Path, *, turns: int, tokens: int, provider: str = "openai") -> dict:
    """The figures: a `turns`-turn chat and one `tokens`-token reply on a Hub at `home`."""
    hub = Hub(home)
    try:
        if provider == "openai":
            hub.connect("OPENAI", MODEL, name="m", base_url=server.openai_base_url, api_key="x")
        else:
            hub.connect("OLLAMA", MODEL, name="m", host=server.ollama_host)
        chat = hub.chat("long", model="m")
        start = _size(hub)
        first, quarter = turns // 4, turns - turns // 4
        sizes, wires = [], []
        for turn in range(turns):
            server.script(ScriptedReply(text=f"Answer {turn}: the weather is fine today.\nAnything else?"))
            chat.send(f"Question {turn}: how is the weather today?")
            if turn + 1 in (first, quarter, turns):
                sizes.append(_size(hub))
                wires.append(_wire(hub))
        messages = sum(len(m["content"].encode()) for m in chat.messages())
        before, wire_before = _size(hub), _wire(hub)
        server.script(ScriptedReply.lorem(tokens))
        hub.chat("one-long-reply", model="m").send("Write a long passage, please.")
        reply_db, reply_wire = _size(hub) - before, _wire(hub) - wire_before
    finally:
        hub.close()
    return {
        "turns": turns, "tokens": tokens, "messages": messages,
        "total_db": sizes[-1] - start, "total_wire": wires[-1],
        "last_turns": turns - quarter,
        "middle_db": (sizes[1] - sizes[0]) / (quarter - first), "middle_wire": (wires[1] - wires[0]) / (quarter - first),
        "last_db": (sizes[2] - sizes[1]) / (turns - quarter), "last_wire": (wires[2] - wires[1]) / (turns - quarter),
        "reply_db": reply_db, "reply_wire": reply_wire,
    }


def report(m: dict) -> list[str]:
    """The figures as lines."""
    return [
        f"{m['turns']}-turn chat: {_kb(m['total_wire'])} on the wire, database grew {_kb(m['total_db'])} "
        f"({m['total_db'] / m['total_wire']:.3f} of the wire; messages hold {_kb(m['messages'])})",
        f"  per turn over its middle half: {_kb(m['middle_wire'])} on the wire, {_kb(m['middle_db'])} in the database; "
        f"over the last {m['last_turns']} turns: {_kb(m['last_wire'])} on the wire, "
        f"{_kb(m['last_db'])} in the database ({m['last_db'] / m['last_wire']:.3f})",
        f"{m['tokens']:,}-token reply: {_kb(m['reply_wire'])} on the wire, database grew {_kb(m['reply_db'])} "
        f"({m['reply_db'] / m['reply_wire']:.2f} of the wire)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks storage", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns in the long chat (default 200)")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens in the long reply (default 2000)")
    parser.add_argument("--provider", choices=("openai", "ollama"), default="openai")
    args = parser.parse_args(argv)
    if args.turns < 4 or args.tokens < 1:
        parser.error("--turns must be >= 4 and --tokens >= 1")
    with tempfile.TemporaryDirectory(prefix="aihub-bench-storage-") as tmp, LocalServer() as server:
        m = measure(server, Path(tmp) / "home", turns=args.turns, tokens=args.tokens, provider=args.provider)
    print(
        f"aihub_nb storage benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.machine()}; {args.provider} wire format"
    )
    print("\n".join(report(m)))
    return 0
