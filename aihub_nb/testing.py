"""The public API for testing your own tools, agents and notebooks against aihub_nb's local server.

`LocalServer` is a real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API and
Ollama's chat API in their exact wire formats, so the official ``openai`` and ``ollama`` clients
(and a `Hub` connected to it) work against it unmodified. Script what it answers with
`ScriptedReply`; when nothing is queued, the built-in demo model answers.

    from aihub_nb.testing import LocalServer, ScriptedReply

    with LocalServer() as server:
        hub.connect("OPENAI", "local-chat", name="test", base_url=server.openai_base_url)
        server.script(ScriptedReply("Hello!"), ScriptedReply(fault="429", retry_after=1))
        ...
        server.requests[-1].json["messages"]  # what the client sent

* `ScriptedReply`: text or tool calls, chunking, token counts, delays, finish reason, usage,
  llama.cpp timings, and a fault (one of `FAULTS`: ``"429"``, ``"500"``, ``"503"``, ``"401"``,
  ``"drop"``, ``"malformed"``, ``"empty"``, ``"keepalive"``, ``"endless"``). The endpoints and
  what each fault sends are described in `aihub_nb.demo.server`.
* `offline_environment`: point this process (and the kernels it starts) at a throw-away hub,
  away from real providers.
* `find_in_database`: every cell of a hub's SQLite file that contains a text (for asserting a
  secret is stored nowhere).

``Reply`` is the former name of `ScriptedReply` (deprecated: it is easily confused with
`aihub_nb.Reply`, a chat's answer). ``python -m aihub_nb.testing [--host H] [--port N]`` serves
the local server until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

from .demo.server import DEFAULT_MODELS, FAULTS, LocalServer, RecordedRequest, ScriptedReply

__all__ = [
    "DEFAULT_MODELS",
    "FAULTS",
    "LocalServer",
    "RecordedRequest",
    "ScriptedReply",
    "find_in_database",
    "offline_environment",
]


def __getattr__(name: str) -> object:
    if name == "Reply":  # the former name, kept so existing tests still run
        warnings.warn(
            "aihub_nb.testing.Reply is deprecated; use aihub_nb.testing.ScriptedReply "
            "(aihub_nb.Reply is a chat's answer, a different class).",
            DeprecationWarning,
            stacklevel=2,
        )
        return ScriptedReply
    raise AttributeError(f"module 'aihub_nb.testing' has no attribute {name!r}")


def offline_environment(home: str | None = None) -> str:
    """Point aihub_nb in this process (and the processes it starts, such as notebook kernels)
    at a throw-away hub and away from real providers: AIHUB_HOME = `home` (default: a new
    temporary folder, which the caller removes), no OPENAI_API_KEY, an OLLAMA_HOST where nothing
    listens, no local ports looked at for OpenAI-compatible servers (AIHUB_LOCAL_PORTS empty), and a
    non-GUI matplotlib. `%aihub connect auto` then picks the built-in demo model. Returns the home."""
    home = home or tempfile.mkdtemp(prefix="aihub-offline-")
    os.environ["AIHUB_HOME"] = home
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ["OLLAMA_HOST"] = "http://127.0.0.1:9"
    os.environ["AIHUB_LOCAL_PORTS"] = ""
    os.environ.setdefault("MPLBACKEND", "Agg")
    return home


def find_in_database(path: str | os.PathLike, text: str) -> list[tuple[str, str, str]]:
    """Where `text` occurs in a hub's SQLite file: (table, column, row id) for every cell of every
    table that contains it, read straight from the file. For tests that a secret is stored nowhere:
    `assert find_in_database(hub.path, key) == []`."""
    import sqlite3

    found = []
    conn = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                rows = conn.execute(
                    f'SELECT rowid, "{column}" FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0', (text,)
                )
                found += [(table, column, str(r[0])) for r in rows]
    finally:
        conn.close()
    return found


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aihub_nb.testing",
        description="Serve the aihub_nb local model over the OpenAI and Ollama chat APIs until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = LocalServer(args.host, args.port).start()
    print(
        f"aihub_nb local model: OpenAI base URL {server.openai_base_url}  "
        f"Ollama host {server.ollama_host}  (Ctrl-C to stop)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    _main()
