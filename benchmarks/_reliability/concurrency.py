"""Section 1: processes writing one hub at once, counted; a second turn on a busy chat."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from aihub_nb.errors import ThreadBusyError
from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

from .common import Section, one_line_error, read_json_line, start_worker, table

SHARED_NAMES = 10  # new chat names every process creates at once


def run(section: Section, server: LocalServer, tmp: Path, *, procs: int, turns: int, metrics: int, busy_tries: int) -> None:
    home = tmp / "concurrency"
    server.reset()
    hub = Hub(home)  # the connection exists before the processes start: they update it, not race to create it
    hub.connect("OPENAI", "local-chat", name="model", base_url=server.openai_base_url, api_key="x", default=True)
    hub.close()
    args = {"home": str(home), "url": server.url, "turns": turns, "turns_per_chat": 10, "metrics": metrics, "shared": SHARED_NAMES}
    args["start_at"] = time.time() + 2.0 + 0.5 * procs  # after every worker's imports
    started = time.perf_counter()
    workers = [start_worker("turns", {**args, "proc": i, "provider": "openai" if i % 2 == 0 else "ollama"}) for i in range(procs)]
    results, errors = [], Counter()
    for proc in workers:
        line = read_json_line(proc, timeout=240)
        while line is not None and line.get("ready"):
            line = read_json_line(proc, timeout=240)
        if line is None:
            proc.kill()
            errors["worker died or hung"] += 1
            tail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-3:]
            section.lines.append("worker output: " + " | ".join(tail))
        else:
            results.append(line)
            errors.update(line.get("errors", {}))
        proc.wait()
    elapsed = time.perf_counter() - started

    hub = Hub(home)
    try:
        q = hub.store.query
        thread_ids = "SELECT json_extract(\"references\", '$.thread') FROM \"Chat\" WHERE name LIKE 'p%-c%'"
        found = {
            "Jobs completed": q("SELECT count(*) AS n FROM \"Jobs\" WHERE type = 'chat.turn' AND status = 'completed'")[0]["n"],
            "Messages": q(f'SELECT count(*) AS n FROM "Message" WHERE threadId IN ({thread_ids})')[0]["n"],
            "ResponseStreams completed": q("SELECT count(*) AS n FROM \"ResponseStream\" WHERE status = 'completed'")[0]["n"],
            "NetworkCalls success": q("SELECT count(*) AS n FROM \"NetworkCall\" WHERE status = 'success'")[0]["n"],
            "Metric rows (log_metric hammer)": q("SELECT count(*) AS n FROM \"Metric\" WHERE name = 'reliability_hammer'")[0]["n"],
            "Chat rows for shared new names": q("SELECT count(*) AS n FROM \"Chat\" WHERE name LIKE 'shared-%'")[0]["n"],
        }
        left = q("SELECT count(*) AS n FROM \"Jobs\" WHERE status IN ('pending', 'running')")[0]["n"]
    finally:
        hub.close()
    total = procs * turns
    expected = {
        "Jobs completed": total,
        "Messages": 2 * total,
        "ResponseStreams completed": total,
        "NetworkCalls success": total,
        "Metric rows (log_metric hammer)": procs * metrics,
        "Chat rows for shared new names": SHARED_NAMES,
    }
    rows = [(name, f"{expected[name]:,}", f"{found[name]:,}", "exact" if found[name] == expected[name] else "MISMATCH") for name in expected]
    section.lines.append(
        f"{procs} processes x {turns} turns (OpenAI and Ollama alternately, distinct chats, one home) "
        f"+ {metrics:,} log_metric each + {SHARED_NAMES} shared new chat names, in {elapsed:.1f} s"
    )
    section.lines += table(("count", "expected", "found", ""), rows, right={1, 2})
    section.lines.append(f"jobs left pending/running: {left}")
    section.lines.append("errors seen: " + (", ".join(f"{k} x{v}" for k, v in errors.most_common()) or "none"))
    for name in expected:
        section.check(f"{name} exact", int(found[name] == expected[name]), 1)
    section.check("turns without error", sum(r.get("ok", 0) for r in results), total)
    section.data.update(expected=expected, found=found, errors=dict(errors))
    section.headline = (
        f"{found['Jobs completed']:,}/{total:,} turns and {found['Metric rows (log_metric hammer)']:,}/{procs * metrics:,} metrics "
        f"from {procs} processes; {found['Chat rows for shared new names']}/{SHARED_NAMES} shared names; errors {sum(errors.values())}"
    )
    _busy(section, server, tmp, busy_tries)


def _busy(section: Section, server: LocalServer, tmp: Path, tries: int) -> None:
    """A second turn on a chat another process is answering must be refused with ThreadBusyError."""
    home = tmp / "busy"
    refused = 0
    outcomes: Counter[str] = Counter()
    for attempt in range(tries):
        server.reset()
        server.script(ScriptedReply.lorem(40, first_token_delay=0.2, token_delay=0.03))
        name = f"busy-{attempt}"
        proc = start_worker("slow", {"home": str(home), "url": server.url, "provider": "openai", "chat": name})
        try:
            if read_json_line(proc, timeout=60) is None:
                outcomes["worker did not start"] += 1
                continue
            time.sleep(0.3)
            hub = Hub(home)
            try:
                hub.connect("OPENAI", "local-chat", name="model", base_url=server.openai_base_url, api_key="x", replace=True)
                hub.chat(name).send("a second turn while the first one streams")
                outcomes["ran (not refused)"] += 1
            except ThreadBusyError as exc:
                ok = one_line_error(exc)
                refused += ok
                outcomes["ThreadBusyError" if ok else "ThreadBusyError, not one line"] += 1
            except Exception as exc:  # noqa: BLE001 - reported by type
                outcomes[type(exc).__name__] += 1
            finally:
                hub.close()
            read_json_line(proc, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    section.lines.append(
        f"second turn on a busy chat (another process streaming): refused cleanly {refused}/{tries} "
        f"({', '.join(f'{k} x{v}' for k, v in outcomes.items())})"
    )
    section.check("second turn on a busy chat refused cleanly", refused, tries)
    section.headline += f"; busy chat refused {refused}/{tries}"
