"""Section 2: kill -9 during a streamed reply or an agent's tool call; what the next open finds."""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

from .common import CountingProxy, Section, content_chars, read_json_line, start_worker, table, wait_until
from .worker import reads

WORDS = 60
TOKEN_DELAY = 0.02
TOOL_SECONDS = 0.8
WINDOW = 0.02  # README: a kill loses at most what arrived in the last 0.02 s
KEY = "sk-reliability-kill-0123456789abcdef"  # a session key: the stream redactor is at work


def run(section: Section, server: LocalServer, tmp: Path, *, trials: int, rng: random.Random) -> None:
    home = tmp / "kills"
    proxy = CountingProxy(server.port)
    rows, results = [], []
    try:
        for t in range(trials):
            provider = "openai" if t % 2 == 0 else "ollama"
            agent = t % 3 == 2
            try:
                results.append(_trial(t, provider, agent, server, proxy, home, rng))
            except Exception as exc:  # noqa: BLE001 - one broken trial is reported, the others go on
                results.append({"trial": t, "provider": provider, "kind": "agent" if agent else "chat", "broken": f"{type(exc).__name__}: {exc}"})
    finally:
        proxy.close()
        server.reset()
    for r in results:
        if "broken" in r:
            rows.append((r["trial"], r["provider"], r["kind"], "-", "trial broke: " + r["broken"][:80]))
            continue
        rows.append((
            r["trial"], r["provider"], r["kind"], f"{r['kill_at']:.2f}", r["phase"], r["stream"], r["call"], r["tool"] or "-",
            r["job"], "yes" if r["interrupted_message"] else "no", r["sent"], r["read"], r["stored"], r["lost"],
            r["read"] - r["early"], r["beyond"],
        ))
    section.lines.append(
        f"{trials} trials: a worker streams a {WORDS}-word reply ({TOKEN_DELAY * 1000:.0f} ms/word; every third through an "
        f"agent whose python tool sleeps {TOOL_SECONDS} s first), SIGKILLed at a random moment after the model request arrives; then a Hub opens the file"
    )
    section.lines.append(
        "reply characters: sent by the server, read by the killed process (its socket reads, logged as they happened), "
        f"stored; lost = read - stored; the bound is what it read in its last {WINDOW:g} s (README), beyond = lost past it"
    )
    section.lines += table(
        ("#", "api", "kind", "kill s", "phase", "stream", "net call", "tool inv", "job", "interrupted msg",
         "sent", "read", "stored", "lost", f"last {WINDOW:g} s", "beyond"),
        rows, right={0, 3, 10, 11, 12, 13, 14, 15},
    )
    done = [r for r in results if "broken" not in r]
    section.check("ResponseStream not left streaming", sum(r["stream"] not in ("streaming", "none") for r in done), sum(r["stream"] != "none" for r in done))
    section.check("NetworkCall not left pending", sum(r["call"] not in ("pending", "none") for r in done), sum(r["call"] != "none" for r in done))
    tools = [r for r in done if r["tool"]]
    section.check("ToolInvocation not left running", sum(r["tool"] not in ("running", "pending") for r in tools), len(tools))
    section.check("Job not left pending/running", sum(r["job"] not in ("pending", "running") for r in done), len(done))
    partial = [r for r in done if r["read"] > 0]
    section.check("partial reply in hub.messages marked interrupted", sum(r["interrupted_message"] for r in partial), len(partial))
    section.check(f"nothing lost beyond what arrived in the last {WINDOW:g} s", sum(r["beyond"] <= 0 for r in partial), len(partial))
    lost = [r["lost"] for r in partial if r["lost"] > 0]
    section.lines.append(
        f"characters lost in {len(lost)}/{len(partial)} kills" + (f": median {statistics.median(lost):g}, max {max(lost)}" if lost else "")
        + f"; beyond the {WINDOW:g} s bound: {sum(max(r['beyond'], 0) for r in partial)}"
    )
    section.data["lost"] = {"kills": len(partial), "lost": len(lost), "beyond": sum(max(r["beyond"], 0) for r in partial)}
    section.check("trials that ran", len(done), trials)
    left_open = sum(r["stream"] == "streaming" or r["call"] == "pending" or r["job"] in ("pending", "running") or r["tool"] in ("running", "pending") for r in done)
    section.headline = (
        f"{len(done)} kills: {left_open} records left open; partial reply kept {sum(r['interrupted_message'] for r in partial)}/{len(partial)}; "
        f"chars lost {sum(max(r['lost'], 0) for r in partial)} (all within the last {WINDOW:g} s: {sum(r['beyond'] for r in partial)} beyond)"
    )
    section.data["trials"] = results


def _trial(t: int, provider: str, agent: bool, server: LocalServer, proxy: CountingProxy, home: Path, rng: random.Random) -> dict:
    server.reset()
    proxy.reset()
    replies = [ScriptedReply.lorem(WORDS, token_delay=TOKEN_DELAY)]
    if agent:
        replies.insert(0, ScriptedReply(tool_calls=[{"name": "slow_tool", "arguments": {"seconds": TOOL_SECONDS}}]))
    server.script(*replies)
    chat = f"kill-{t}"
    duration = WORDS * TOKEN_DELAY + (TOOL_SECONDS if agent else 0.0)
    read_log = home.parent / f"kill-{t}.reads"
    proc = start_worker("slow", {"home": str(home), "url": proxy.url, "provider": provider, "chat": chat, "agent": agent,
                                 "reads": str(read_log), "key": KEY})
    try:
        if read_json_line(proc, timeout=60) is None:
            raise RuntimeError("the worker did not start: " + (proc.stderr.read() if proc.stderr else "")[-200:])
        # the clock starts when the model request arrives (the worker's imports take a while first)
        if not wait_until(lambda: server.requests, 60):
            raise RuntimeError("the worker never called the model")
        kill_at = rng.uniform(0.0, duration)
        time.sleep(kill_at)
        finished_first = proc.poll() is not None
        sent = proxy.sent()
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()  # reaped: a zombie would still look alive to the next open
    got = reads(str(read_log))
    read = content_chars(b"".join(data for _, data in got))
    early = content_chars(b"".join(data for when, data in got if when <= killed - WINDOW))
    hub = Hub(home)
    try:
        found = _recovered(hub, chat, content_chars(sent), finished_first)
    finally:
        hub.close()
    stored = found["stored"]
    return {"trial": t, "provider": provider, "kind": "agent" if agent else "chat", "kill_at": kill_at, **found,
            "read": read, "early": early, "lost": read - stored, "beyond": max(0, early - stored)}


def _recovered(hub: Hub, chat_name: str, sent: int, finished_first: bool) -> dict:
    store = hub.store
    chat = store.first("Chat", name=chat_name)
    if chat is None:
        return {"phase": "before the chat existed", "stream": "none", "call": "none", "tool": None, "job": "none",
                "interrupted_message": False, "sent": sent, "stored": 0, "lost": sent}
    job = store.query(
        "SELECT id, status FROM \"Jobs\" WHERE json_extract(\"references\", '$.chat') = ? ORDER BY rowid DESC LIMIT 1", (chat["id"],)
    )
    job_id, job_status = (job[0]["id"], job[0]["status"]) if job else (None, "none")
    streams = store.referencing(chat["id"], model="ResponseStream", name="chat")  # rawOutput read whole
    calls = store.query(
        "SELECT status FROM \"NetworkCall\" WHERE json_extract(\"references\", '$.job') = ? ORDER BY rowid", (job_id,)
    ) if job_id else []
    tools = store.query(
        "SELECT status FROM \"ToolInvocation\" WHERE json_extract(\"references\", '$.job') = ? ORDER BY rowid", (job_id,)
    ) if job_id else []
    stored_raw = content_chars("".join(s["rawOutput"] or "" for s in streams))
    interrupted, message_chars = False, 0
    frame = hub.messages(chat_name)
    for _, row in frame.iterrows():
        data = row.get("data")
        status = data.get("status") if isinstance(data, dict) else (data if isinstance(data, str) else None)
        if row["type"] in ("chatModel", "agent") and status and "interrupted" in str(status) and row["content"]:
            interrupted = True
            message_chars = max(message_chars, len(row["content"]))
    stored = max(stored_raw, message_chars)
    tool_status = tools[-1]["status"] if tools else None
    if finished_first:
        phase = "finished"
    elif tool_status in ("running", "pending", "interrupted"):
        phase = "tool call"
    elif tools and sent == 0:
        phase = "after tool"
    elif sent == 0:
        phase = "before reply"
    elif streams and streams[-1]["status"] == "completed":
        phase = "after reply"
    else:
        phase = "streaming"
    return {
        "phase": phase,
        "stream": _worst([s["status"] for s in streams]),
        "call": _worst([c["status"] for c in calls]),
        "tool": tool_status,
        "job": job_status,
        "interrupted_message": interrupted,
        "sent": sent,
        "stored": stored,
        "lost": sent - stored,
    }


def _worst(statuses: list[str]) -> str:
    """The status that matters of several rows: one left open if any, else the last."""
    for open_status in ("streaming", "pending", "running"):
        if open_status in statuses:
            return open_status
    return statuses[-1] if statuses else "none"
