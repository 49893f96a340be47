"""What the reliability sections share: a section's result, tables, a counting TCP proxy, the
content characters of a raw OpenAI/Ollama stream, and a scan of every text column for secrets."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from aihub_nb.errors import AihubError

ROOT = Path(__file__).resolve().parents[2]  # the project folder: benchmarks/ and aihub_nb/ live here


@dataclass
class Section:
    """One section's report: a title, lines to print, and k/K checks (name -> (passed, total))."""

    title: str
    lines: list[str] = field(default_factory=list)
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # raw figures, for tests and --json
    error: str | None = None  # the section itself broke: what happened, in a few lines
    headline: str = ""  # its figures in one line, for the closing summary
    seconds: float = 0.0

    def check(self, name: str, passed: int, total: int) -> None:
        self.checks[name] = (passed, total)

    def add(self, name: str, ok: bool) -> None:
        """Count one more case of check `name`."""
        passed, total = self.checks.get(name, (0, 0))
        self.checks[name] = (passed + bool(ok), total + 1)


def failure_text(exc: BaseException, limit: int = 6) -> str:
    """An exception as its last few traceback lines: enough to find and fix it."""
    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(lines[-limit:])


def one_line_error(exc: BaseException) -> bool:
    """What a notebook user would see as one clean line: an aihub_nb error (IPython shows the
    magics' UsageError without a traceback) whose message is a single non-empty line."""
    text = str(exc)
    return isinstance(exc, AihubError) and bool(text.strip()) and "\n" not in text.strip()


def table(header: tuple[str, ...], rows: list[tuple], right: set[int] | None = None) -> list[str]:
    """A plain text table, first column left-aligned, the columns in `right` right-aligned."""
    cells = [tuple(str(c) for c in header), *[tuple(str(c) for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = right or set()
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


# ---------------------------------------------------------------- subprocesses


def worker_env() -> dict[str, str]:
    """The environment of a worker process: this project importable, nothing real reachable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("OPENAI_API_KEY", None)
    env["OLLAMA_HOST"] = "http://127.0.0.1:9"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def start_worker(mode: str, args: dict) -> subprocess.Popen:
    """`python -m benchmarks._reliability.worker MODE JSON`, stdout a pipe of JSON lines."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks._reliability.worker", mode, json.dumps(args)],
        cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )


def read_json_line(proc: subprocess.Popen, timeout: float) -> dict | None:
    """The next JSON line the worker prints, or None if it ends or stays silent for `timeout` s."""
    result: list[dict | None] = [None]

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            line = line.strip()
            if line.startswith("{"):
                try:
                    result[0] = json.loads(line)
                except ValueError:
                    continue
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- what the server sent


class CountingProxy:
    """A TCP proxy on 127.0.0.1 in front of the local server that keeps every byte it forwarded
    to the client, with when: so after a kill we know what the server had sent."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._down: list[bytes] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True, name="reliability-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self._down.clear()

    def sent(self) -> bytes:
        """Every byte forwarded to clients since the last reset."""
        with self._lock:
            return b"".join(self._down)

    def close(self) -> None:
        self._stopped = True
        try:
            self._listener.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, downstream: bool) -> None:
        try:
            while data := source.recv(65536):
                dest.sendall(data)
                if downstream:
                    with self._lock:
                        self._down.append(data)
        except OSError:
            pass
        finally:
            for s in (source, dest):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


_CONTENT = re.compile(rb'"content":("(?:[^"\\]|\\.)*")')


def content_chars(raw: bytes | str) -> int:
    """Characters of reply text in raw OpenAI SSE or Ollama NDJSON: the sum of every complete
    `"content":"..."` string (deltas and messages)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    total = 0
    for match in _CONTENT.finditer(raw):
        try:
            total += len(json.loads(match.group(1)))
        except ValueError:
            continue
    return total


# ---------------------------------------------------------------- secrets at rest


def scan_for_secrets(db_path: str | os.PathLike, secrets: list[str]) -> dict[str, int]:
    """Rows holding any of `secrets`, per "Table.column", over every column of every table
    (values read as text, so JSON columns count too). Empty when nothing leaked."""
    found: dict[str, int] = {}
    secrets = [s for s in secrets if s]
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for t in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')]
            for c in columns:
                where = " OR ".join(f'instr(CAST("{c}" AS TEXT), ?) > 0' for _ in secrets)
                n = conn.execute(f'SELECT count(*) FROM "{t}" WHERE {where}', secrets).fetchone()[0]
                if n:
                    found[f"{t}.{c}"] = n
    finally:
        conn.close()
    return found


def wait_until(predicate, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
