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


def subcommands_from_help(shell) -> tuple[list[str], dict[str, set[str]]]:
    """The subcommands `%aihub help` lists, and the flags it shows for each."""
    shown = shell.run_line_magic("aihub", "help")
    text = getattr(shown, "data", str(shown))
    commands: list[str] = []
    flags: dict[str, set[str]] = {}
    for cell in re.findall(r"`([^`]+)`", text):
        for part in cell.split("·"):
            part = part.strip().removeprefix("%%aihub ")
            word = part.split(" ", 1)[0]
            if re.fullmatch(r"[a-z]+", word):
                if word not in commands:
                    commands.append(word)
                flags.setdefault(word, set()).update(re.findall(r"--[a-z][a-z-]*|-o\b", part))
    for command, extra in _MORE_FLAGS.items():  # flags the help table leaves out
        if command in flags:
            flags[command] |= extra
    return commands, flags


_MORE_FLAGS = {
    "chat": {"--delete"},
    "metrics": {"--until", "--status"},
    "calls": {"--since", "--until", "--status", "-o"},
    "jobs": {"--since", "--until", "--status", "-o"},
    "connection": {"--model-id", "--new-name", "--base-url", "--host", "--api-key-env", "--description"},
    "agent": {"--max-rounds"},
    "connect": {"--description"},
}
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
    "--model": NAMES, "--agent": NAMES, "--name": NAMES, "--new-name": NAMES, "--model-id": ["local-chat", "x", "", "名前"],
    "--api-key-env": ["OPENAI_API_KEY", "NOPE_UNSET", "", "A B", "x" * 300], "--provider": ["", "OPENAI", "x"], "--tools": ["add", "add,add", "", ",", "nope", "add,nope"],
    "--permission": ["automatic", "user-permitted", "add=user-permitted", "add=", "=x", "bogus", "add=automatic,x=y"],
}
_BARE_FLAGS = {"--default", "--delete", "--no-stream", "--no-interpolate"}


def _value(rng: random.Random, flag: str | None = None) -> str:
    pool = _FLAG_VALUES.get(flag or "") or rng.choice([NUMBERS, SPECIAL, TEXTS, URLS, TIMES, NAMES])
    return rng.choice(pool)


def _quote(rng: random.Random, token: str) -> str:
    return token if rng.random() < 0.1 else shlex.quote(token)  # now and then unquoted, to break the shell syntax


def make_line(rng: random.Random, commands: list[str], flags: dict[str, set[str]]) -> tuple[str, str | None]:
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
    own = sorted(flags.get(command) or ()) or ["--bogus"]
    every = sorted(set().union(*flags.values()))
    for _ in range(rng.randint(0, 3)):
        if rng.random() < 0.85:
            flag = rng.choice(own if rng.random() < 0.9 else every)
            tokens.append(flag)
            if flag not in _BARE_FLAGS or rng.random() < 0.1:
                tokens.append(_value(rng, flag))
        else:
            tokens.append(_value(rng))
    line = " ".join([command, *(_quote(rng, t) for t in tokens)])
    return line, cell


# Known-nasty inputs, run before the random ones and reported on their own.
TARGETED_LINES: list[tuple[str, str | None]] = [
    ("metrics --until 999999999999999w", None),
    ("metrics --since inf", None),
    ("jobs --since 1e309s", None),
    ("agent create fz-agent --tools add --max-rounds 99999999999999999999", None),
    ("chat t-nan --model oa --temperature nan", "Hi"),
    ("chat t-inf --model ol --temperature inf", "Hi"),
    ("chat t-big --model oa --max-tokens 99999999999999999999", "Hi"),
    ("chat t-seed --model ol --seed 99999999999999999999", "Hi"),
    ("connect OPENAI local-chat --name v6 --base-url 'http://[::1'", None),
    ("chat t-v6 --model v6", "Hi"),
    ("connect OPENAI local-chat --name port --base-url http://127.0.0.1:99999/v1", None),
    ("chat t-port --model port", "Hi"),
    ("connect OLLAMA local-chat --name nul --host 'http://127.0.0.1:9\x00/'", None),
    ("chat t-nul --model nul", "Hi"),
    ("connect OPENAI local-chat --name creds --base-url http://user:sk-fuzz@127.0.0.1:9/v1", None),
    ("price set m nan inf", None),
    ("price set m 1e309 -1", None),
    ("chat 'a\x00b'", None),
    ("models port", None),
]


def _targeted_calls(hub) -> list[tuple[str, object]]:
    """Bad values through the Python API, as (label, thunk)."""
    url = "http://127.0.0.1:9/v1"
    return [
        ("hub.connect(..., timeout='5')", lambda: hub.connect("OPENAI", "local-chat", name="t1", base_url=url, api_key="x", timeout="5")),
        ("hub.connect(..., timeout=inf)", lambda: hub.connect("OPENAI", "local-chat", name="t2", base_url=url, api_key="x", timeout=float("inf"))),
        ("hub.connect(..., timeout=nan)", lambda: hub.connect("OPENAI", "local-chat", name="t3", base_url=url, api_key="x", timeout=float("nan"))),
        ("hub.metrics(since=inf)", lambda: hub.metrics(since=float("inf"))),
        ("hub.metrics(until='999999999999999w')", lambda: hub.metrics(until="999999999999999w")),
        ("hub.log_metric('x', 'abc')", lambda: hub.log_metric("x", "abc")),
        ("hub.log_metric('x', 1, name='n')", lambda: hub.log_metric("x", 1.0, name="n")),
        ("hub.metrics(**{'a\"b': 1})", lambda: hub.metrics(**{'a"b': "1"})),
        ("hub.chat('a\x00b', model='oa')", lambda: hub.chat("a\x00b", model="oa")),
        ("hub.agent('x', max_rounds=10**20)", lambda: hub.agent("x-agent", model="oa", tools=["add"], max_rounds=10**20)),
        ("chat.send(..., options={'stream': False})", lambda: hub.chat("opt", model="oa").send("Hi", options={"stream": False, "model": "other"})),
    ]


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
    random_run = _Tally()
    targeted = _Tally()
    old = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    try:
        commands, flags = subcommands_from_help(shell)
        section.lines.append(f"subcommands from %aihub help: {', '.join(commands)}")
        for line, cell in TARGETED_LINES:
            targeted.run(shell, server, line, cell, lambda line=line, cell=cell: _magic(shell, line, cell))
        for label, thunk in _targeted_calls(hub):
            targeted.run(shell, server, label, None, thunk, shown=label)
        for _ in range(lines):
            line, cell = make_line(rng, commands, flags)
            random_run.run(shell, server, line, cell, lambda line=line, cell=cell: _magic(shell, line, cell))
    finally:
        signal.signal(signal.SIGALRM, old)
        magics.use_hub(None)
        hub.close()
        if not loaded:
            shell.run_line_magic("unload_ext", "aihub_nb")
    elapsed = time.perf_counter() - started
    n_targeted = len(TARGETED_LINES) + len(_targeted_calls(hub))
    section.lines.append(f"targeted bad inputs: clean {targeted.clean}/{n_targeted}; " + targeted.summary())
    targeted.details(section.lines)
    section.lines.append(f"random lines: {lines} (seed {seed}), all in {elapsed:.1f} s: clean {random_run.clean}/{lines}; " + random_run.summary())
    random_run.details(section.lines)
    section.check("targeted bad inputs clean (success or one-line error)", targeted.clean, n_targeted)
    section.check("fuzzed lines clean (success or one-line error)", random_run.clean, lines)
    section.data.update(
        outcomes=dict(random_run.outcomes), targeted=dict(targeted.outcomes),
        distinct=[f"{k[0]} at {k[1]}" for k in {**targeted.tracebacks, **random_run.tracebacks}],
    )
    section.headline = (
        f"{n_targeted} targeted + {lines:,} random lines: {targeted.clean + random_run.clean:,} clean, "
        f"{n_targeted + lines - targeted.clean - random_run.clean} tracebacks or unclean"
    )


def _magic(shell, line: str, cell: str | None):
    if cell is not None:
        return shell.run_cell_magic("aihub", line, cell)
    return shell.run_line_magic("aihub", line)


class _Tally:
    """Outcomes of running inputs: success, one-line error, error not on one line, hung, traceback."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.tracebacks: dict[tuple[str, str], dict] = {}
        self.multi: list[str] = []

    @property
    def clean(self) -> int:
        return self.outcomes["success"] + self.outcomes["one-line error"]

    def run(self, shell, server: LocalServer, line: str, cell: str | None, thunk, *, shown: str | None = None) -> None:
        from IPython.core.error import UsageError as IPythonUsageError
        from IPython.utils.capture import capture_output

        server.reset()
        if shown is None:
            shown = ("%%aihub " + line + " <cell " + repr(cell[:30]) + ">") if cell is not None else "%aihub " + line
        signal.alarm(LINE_SECONDS)
        try:
            with capture_output():
                thunk()
            self.outcomes["success"] += 1
        except (IPythonUsageError, AihubError) as exc:
            if "\n" in str(exc).strip() or not str(exc).strip():
                self.outcomes["error not one line"] += 1
                self.multi.append(f"{shown!r}: {str(exc)[:100]!r}")
            else:
                self.outcomes["one-line error"] += 1
        except _Hung:
            self.outcomes["hung"] += 1
            entry = self.tracebacks.setdefault(("hung", shown[:40]), {"line": shown, "text": f"hung > {LINE_SECONDS} s", "n": 0})
            entry["n"] += 1
        except Exception as exc:  # noqa: BLE001 - what the fuzzer is here to find
            self.outcomes["traceback"] += 1
            entry = self.tracebacks.setdefault((type(exc).__name__, _where(exc)), {"line": shown, "text": _tail(exc), "n": 0})
            entry["n"] += 1
        finally:
            signal.alarm(0)

    def summary(self) -> str:
        o = self.outcomes
        distinct = len([k for k in self.tracebacks if k[0] != "hung"])
        return (
            f"success {o['success']}, one-line error {o['one-line error']}, tracebacks {o['traceback']} ({distinct} distinct), "
            f"errors not on one line {o['error not one line']}, hung {o['hung']}"
        )

    def details(self, lines: list[str], limit: int = 10) -> None:
        for (kind, where), entry in list(self.tracebacks.items())[:limit]:
            lines.append(f"  x{entry['n']} {kind} at {where}")
            lines.append(f"     e.g. {entry['line'][:150]!r}")
            for text in entry["text"].splitlines()[-2:]:
                lines.append(f"     {text[:160]}")
        for text in self.multi[:3]:
            lines.append(f"  not on one line: {text}")


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
