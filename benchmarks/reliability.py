"""Safety and reliability under stress: what holds and what the store says afterwards.

    python -m benchmarks reliability [--quick] [--sections concurrency,kills,faults,fuzz,secrets,approval] [--seed N]

Everything runs against `aihub_nb.testing.LocalServer` on 127.0.0.1 and real SQLite files in a
temporary directory, in six sections, each reporting what it counted as "k/K" checks:

1. concurrency: N processes x M chat turns (OpenAI and Ollama alternately, distinct chats, one
   home), a hammer of `hub.log_metric` and the same new chat names created by every process;
   counts expected vs found in the store, errors by type; a second turn on a chat another
   process is answering must be refused with a one-line ThreadBusyError.
2. kills: K trials where a worker streams a slow reply (every third through an agent whose python
   tool sleeps first) and is SIGKILLed at a random moment; a Hub then opens the file and the
   trial reports the ResponseStream, NetworkCall, ToolInvocation and Job statuses, whether the
   partial reply is in `hub.messages(chat)` marked interrupted, and the characters lost: what the
   server had sent (counted by a proxy in front of it) minus what the store holds.
3. faults: each fault the local server offers (429 + Retry-After, 500, 503, 401, 404, dropped
   streams, a malformed chunk, a slow first token past a short timeout, an empty reply, a closed
   port) x {OpenAI, Ollama} x {stream, whole}: a one-line error, a failed Job, NetworkCalls in a
   true state, the user's message kept.
4. fuzz: seeded random `%aihub` / `%%aihub chat` lines (the subcommands `%aihub help` lists, odd
   flags and values) in a real IPython InteractiveShell: clean outcomes (success or a one-line
   error) vs tracebacks, the distinct tracebacks listed where to fix them.
5. secrets: turns with API keys that end in a newline and HTTP tools with `${VAR}` secrets (an
   error page echoing them, a redirect to another origin); every column of every table scanned for
   the secret values, plus the error lines shown and the requests sent to the model.
6. approval: attempts to get a user-permitted tool run while the approver denies (asking again,
   parallel calls, look-alike names, the name in arguments, a truthy "no"): runs must be 0.

`--quick` runs small sizes (about a minute); the full run takes a few minutes on 2 cores. Each
section catches its own failures and reports them. Exits 1 when a check misses or a section broke.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aihub_nb.testing import LocalServer, offline_environment

from ._reliability.common import Section, failure_text, table

SECTIONS = ("concurrency", "kills", "faults", "fuzz", "secrets", "approval", "display", "storage")
TITLES = {
    "concurrency": "Concurrency",
    "kills": "kill -9 trials",
    "faults": "Fault matrix",
    "fuzz": "Fuzzed %aihub lines",
    "secrets": "Secrets",
    "approval": "Approval bypass attempts",
    "display": "Hostile output on display",
    "storage": "Storage and long replies",
}


def _sizes(args: argparse.Namespace) -> dict:
    quick = args.quick
    pick = lambda given, full, small: given if given is not None else (small if quick else full)  # noqa: E731
    return {
        "procs": pick(args.procs, 8, 3),
        "turns": pick(args.turns, 100, 10),
        "metrics": pick(args.metrics, 2500, 200),
        "busy": 3 if not quick else 1,
        "trials": pick(args.trials, 12, 4),
        "fuzz": pick(args.fuzz, 1000, 100),
        "storage_turns": 200 if not quick else 40,
        "long_tokens": pick(args.long_tokens, 200_000, 20_000),
    }


def run_sections(names: list[str], args: argparse.Namespace, *, on_done: Callable[[Section], None] | None = None) -> list[Section]:
    """Run the named sections in order, each catching its own failure; return their reports."""
    from ._reliability import approval, concurrency, display, faults, fuzz, kills, secrets_scan, storage

    sizes = _sizes(args)
    rng = random.Random(args.seed)
    saved = {k: os.environ.get(k) for k in ("AIHUB_HOME", "OPENAI_API_KEY", "OLLAMA_HOST", "MPLBACKEND")}
    sections = []
    with tempfile.TemporaryDirectory(prefix="aihub-bench-reliability-") as tmp_name, LocalServer() as server:
        tmp = Path(tmp_name)
        offline_environment(str(tmp / "default-home"))  # nothing reaches a real provider or ~/.aihub
        runners = {
            "concurrency": lambda s: concurrency.run(
                s, server, tmp, procs=sizes["procs"], turns=sizes["turns"], metrics=sizes["metrics"], busy_tries=sizes["busy"]
            ),
            "kills": lambda s: kills.run(s, server, tmp, trials=sizes["trials"], rng=rng),
            "faults": lambda s: faults.run(s, server, tmp, only=args.faults),
            "fuzz": lambda s: fuzz.run(s, server, tmp, lines=sizes["fuzz"], seed=args.seed),
            "secrets": lambda s: secrets_scan.run(s, server, tmp),
            "approval": lambda s: approval.run(s, server, tmp),
            "display": lambda s: display.run(s, server, tmp),
            "storage": lambda s: storage.run(s, server, tmp, turns=sizes["storage_turns"], tokens=2000, long_tokens=sizes["long_tokens"]),
        }
        try:
            for name in names:
                section = Section(TITLES[name])
                started = time.perf_counter()
                try:
                    runners[name](section)
                except Exception as exc:  # noqa: BLE001 - a broken section is reported, the next one runs
                    section.error = failure_text(exc)
                finally:
                    server.reset()
                section.seconds = time.perf_counter() - started
                sections.append(section)
                if on_done:
                    on_done(section)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return sections


def format_section(number: int, section: Section) -> str:
    out = [f"== {number}. {section.title} ({section.seconds:.1f} s) =="]
    out += section.lines
    if section.error:
        out.append("SECTION BROKE (the harness, not necessarily aihub_nb):")
        out += ["  " + line for line in section.error.splitlines()]
    return "\n".join(out)


def format_summary(sections: list[Section]) -> str:
    """Every check as k/K, then one row per section: its figures, its checks met, its verdict."""
    lines = ["== Checks =="]
    for section in sections:
        if section.error:
            lines.append(f"{section.title}: SECTION BROKE")
        for name, (passed, total) in section.checks.items():
            flag = "" if passed == total else "   <- MISS"
            lines.append(f"{name} {passed}/{total}{flag}")
    rows = []
    for section in sections:
        met = sum(p == t for p, t in section.checks.values())
        verdict = "BROKE" if section.error else "ok" if met == len(section.checks) else "MISS"
        rows.append((section.title, section.headline or "-", f"{met}/{len(section.checks)}", verdict))
    lines += ["", "== Summary ==", *table(("area", "figures", "checks met", "verdict"), rows, right={2})]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from: {', '.join(SECTIONS)}")
    parser.add_argument("--seed", type=int, default=8, help="seed of the kill times and the fuzzer (default 8)")
    parser.add_argument("--procs", type=int, help="concurrency: processes (default 8, quick 3)")
    parser.add_argument("--turns", type=int, help="concurrency: chat turns per process (default 100, quick 10)")
    parser.add_argument("--metrics", type=int, help="concurrency: log_metric calls per process (default 2500, quick 200)")
    parser.add_argument("--trials", type=int, help="kill -9 trials (default 12, quick 4)")
    parser.add_argument("--fuzz", type=int, help="fuzzed lines (default 1000, quick 100)")
    parser.add_argument("--long-tokens", type=int, help="storage: tokens of the long reply, hub vs raw client (default 200000, quick 20000)")
    parser.add_argument("--faults", type=lambda s: [f for f in s.split(",") if f], help="only the faults whose names contain these words")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    for flag in ("procs", "turns", "metrics", "trials", "fuzz", "long_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")

    print(
        f"aihub_nb reliability benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; seed {args.seed}{', quick' if args.quick else ''}",
        flush=True,
    )
    counter = iter(range(1, len(names) + 1))
    started = time.perf_counter()
    sections = run_sections(names, args, on_done=lambda s: print(format_section(next(counter), s) + "\n", flush=True))
    print(format_summary(sections))
    print(f"total {time.perf_counter() - started:.1f} s")
    missed = any(s.error for s in sections) or any(p != t for s in sections for p, t in s.checks.values())
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
