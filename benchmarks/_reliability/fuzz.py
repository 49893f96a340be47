"""Section 4: seeded random %aihub lines in a real IPython InteractiveShell: clean or traceback."""

from __future__ import annotations

import random
import re
import shlex
import signal
import time
import traceback
from collections import Counter
from pathlib import Path

from aihub_nb.errors import AihubError
from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer

from .common import Section

LINE_SECONDS = 10  # a line running longer counts as hung

NUMBERS = ["0", "-1", "1", "3", "0.5", "-0", "1e308", "-1e309", "99999999999999999999", "999999999999999999999999999999", "1_000", "0x10", "1e-400"]
SPECIAL = ["nan", "NaN", "inf", "-inf", "Infinity"]
TEXTS = [
    "", " ", "x", "oa", "ol", "名前", "ñandú", "🙂", "a\u200bb", "\u202eevil", "Ａｄａ", "a\x00b", '"', "'", "it's",
    'say "hi"', "x" * 300, "../etc/passwd", "DROP TABLE Chat;", "<script>alert(1)</script>", "{topic}", "$HOME", "--", "-",
    "%aihub", "a,b,,c", "=", "add=automatic", "x=y=z", "user-permitted", "automatic", "bogus",
]
URLS = [
    "http://127.0.0.1:99999", "http://127.0.0.1:65536", "http://127.0.0.1:0", "http://127.0.0.1:-1", "http://[::1",
    "http://[::1]:9", "127.0.0.1:9", "http://127.0.0.1:9\x00/v1", "http://user:sk-fuzz@127.0.0.1:9/v1",
    "http://127.0.0.1:9/v1?api-key=sk-fuzz", "ftp://127.0.0.1:9", "http://", "://", "http://127.0.0.1:9/" + "a" * 500,
    "http://127.0.0.1:９", "http:///v1", "localhost:abc",
]
TIMES = ["1h", "30d", "5m", "0s", "-5m", "999999999999999w", "99999999999999999999d", "yesterday", "2026-13-45", "2020-01-01", "1e309s", "nan"]
CELLS = [
    "Hello", "Tell me about {topic}.", "{items[1]} and {items[99]}", "{d['k']}", "{topic.upper}", "{{literal}}", "{missing}",
    "{1+1}", "{__import__}", "{topic[0]}", "{items[-1]}", "\x00", "   ", "🙂" * 50, "<img src=x onerror=alert(1)>", "add(a=2, b=3)",
    "{topic.__class__}", "{d}", "x" * 5000,
]
NAMES = ["oa", "ol", "talk", "fz", "x", "no-such", "名前", "a b", "", "x" * 300, "../x", "a\x00b", "Ａ"]


def subcommands_from_help(shell) -> tuple[list[str], list[str]]:
    """The subcommands and flags `%aihub help` lists."""
    shown = shell.run_line_magic("aihub", "help")
    text = getattr(shown, "data", str(shown))
    commands, flags = [], set(re.findall(r"--[a-z][a-z-]*", text))
    for cell in re.findall(r"`([^`]+)`", text):
        for part in cell.split("·"):
            word = part.strip().removeprefix("%%aihub ").split(" ", 1)[0]
            if re.fullmatch(r"[a-z]+", word) and word not in commands:
                commands.append(word)
    return commands, sorted(flags | {"-o"})


_ACTIONS = {
    "connection": ["show", "edit", "remove", "default", "bogus"],
    "agent": ["create", "show", "remove", "bogus"],
    "tool": ["show", "remove", "bogus"],
    "price": ["set", "remove", "bogus"],
    "connect": ["OPENAI", "OLLAMA", "local", "auto", "openai", "BOGUS"],
}
_FLAG_VALUES = {
    "--base-url": URLS, "--host": URLS, "--since": TIMES, "--until": TIMES, "--temperature": NUMBERS + SPECIAL,
    "--max-tokens": NUMBERS + SPECIAL, "--seed": NUMBERS + SPECIAL, "--max-rounds": NUMBERS + SPECIAL,
    "--model": NAMES, "--agent": NAMES, "--tools": ["add", "add,add", "", ",", "nope", "add,nope"],
    "--permission": ["automatic", "user-permitted", "add=user-permitted", "add=", "=x", "bogus", "add=automatic,x=y"],
}
_BARE_FLAGS = {"--default", "--delete", "--no-stream", "--no-interpolate"}


def _value(rng: random.Random, flag: str | None = None) -> str:
    pool = _FLAG_VALUES.get(flag or "") or rng.choice([NUMBERS, SPECIAL, TEXTS, URLS, TIMES, NAMES])
    return rng.choice(pool)


def _quote(rng: random.Random, token: str) -> str:
    return token if rng.random() < 0.1 else shlex.quote(token)  # now and then unquoted, to break the shell syntax


def make_line(rng: random.Random, commands: list[str], flags: list[str]) -> tuple[str, str | None]:
    """One random %aihub line (and a cell for %%aihub chat)."""
    cell = None
    command = rng.choice(commands)
    if command == "chat" and rng.random() < 0.6:
        cell = rng.choice(CELLS)
    tokens: list[str] = []
    if command in _ACTIONS and rng.random() < 0.85:
        tokens.append(rng.choice(_ACTIONS[command]))
    if command in ("chat", "connection", "agent", "tool", "models", "render", "panel", "metrics", "connect", "price") and rng.random() < 0.85:
        tokens.append(rng.choice(NAMES) if command != "connect" else rng.choice(["local-chat", "gpt-4o-mini", "x", ""]))
    if command == "price" and rng.random() < 0.7:
        tokens += [_value(rng, "--temperature"), _value(rng, "--temperature")]
    for _ in range(rng.randint(0, 3)):
        if rng.random() < 0.8:
            flag = rng.choice(flags)
            tokens.append(flag)
            if flag not in _BARE_FLAGS or rng.random() < 0.1:
                tokens.append(_value(rng, flag))
        else:
            tokens.append(_value(rng))
    line = " ".join([command, *(_quote(rng, t) for t in tokens)])
    return line, cell


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung(f"still running after {LINE_SECONDS} s")


def run(section: Section, server: LocalServer, tmp: Path, *, lines: int, seed: int) -> None:
    from IPython.core.error import UsageError as IPythonUsageError
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from aihub_nb import magics

    shell = InteractiveShell.instance()
    loaded = "aihub" in shell.magics_manager.magics["line"]
    if not loaded:
        shell.run_line_magic("load_ext", "aihub_nb")
    hub = Hub(tmp / "fuzz")
    hub.approver = lambda *_: False
    magics.use_hub(hub)
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url, api_key="x", default=True)
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)

    @hub.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    shell.user_ns.update(topic="owls", items=["first", "second"], d={"k": "v"})
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    tracebacks: dict[tuple[str, str], dict] = {}
    multi: list[str] = []
    old = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    try:
        commands, flags = subcommands_from_help(shell)
        section.lines.append(f"subcommands from %aihub help: {', '.join(commands)}")
        for _ in range(lines):
            server.reset()
            line, cell = make_line(rng, commands, flags)
            shown = ("%%aihub " + line + " <cell " + repr(cell[:30]) + ">") if cell is not None else "%aihub " + line
            signal.alarm(LINE_SECONDS)
            try:
                with capture_output():
                    if cell is not None:
                        shell.run_cell_magic("aihub", line, cell)
                    else:
                        shell.run_line_magic("aihub", line)
                outcomes["success"] += 1
            except (IPythonUsageError, AihubError) as exc:
                if "\n" in str(exc).strip() or not str(exc).strip():
                    outcomes["error not one line"] += 1
                    multi.append(f"{shown!r}: {str(exc)[:100]!r}")
                else:
                    outcomes["one-line error"] += 1
            except _Hung:
                outcomes["hung"] += 1
                tracebacks.setdefault(("hung", line.split(" ")[0]), {"line": shown, "text": f"hung > {LINE_SECONDS} s", "n": 0})["n"] += 1
            except Exception as exc:  # noqa: BLE001 - what the fuzzer is here to find
                outcomes["traceback"] += 1
                key = (type(exc).__name__, _where(exc))
                entry = tracebacks.setdefault(key, {"line": shown, "text": _tail(exc), "n": 0})
                entry["n"] += 1
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
        magics.use_hub(None)
        hub.close()
        if not loaded:
            shell.run_line_magic("unload_ext", "aihub_nb")
    elapsed = time.perf_counter() - started
    clean = outcomes["success"] + outcomes["one-line error"]
    section.lines.append(
        f"{lines} lines (seed {seed}) in {elapsed:.1f} s: clean {clean}/{lines} (success {outcomes['success']}, "
        f"one-line error {outcomes['one-line error']}); tracebacks {outcomes['traceback']} "
        f"({len([k for k in tracebacks if k[0] != 'hung'])} distinct); errors not one line {outcomes['error not one line']}; hung {outcomes['hung']}"
    )
    for (kind, where), entry in list(tracebacks.items())[:8]:
        section.lines.append(f"  x{entry['n']} {kind} at {where}")
        section.lines.append(f"     e.g. {entry['line'][:150]!r}")
        for text in entry["text"].splitlines()[-2:]:
            section.lines.append(f"     {text[:160]}")
    for text in multi[:3]:
        section.lines.append(f"  not one line: {text}")
    section.check("fuzzed lines clean (success or one-line error)", clean, lines)
    section.data.update(outcomes=dict(outcomes), distinct=[f"{k[0]} at {k[1]}" for k in tracebacks])


def _where(exc: BaseException) -> str:
    """The innermost frame in aihub_nb (else the innermost): where to fix it."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "aihub_nb" in f.filename] or frames
    frame = ours[-1] if ours else None
    if frame is None:
        return "?"
    path = frame.filename.split("aihub_nb/", 1)[-1] if "aihub_nb/" in frame.filename else frame.filename.rsplit("/", 1)[-1]
    return f"{path}:{frame.lineno} {frame.name}"


def _tail(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()
