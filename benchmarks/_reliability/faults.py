"""Section 3: every fault the local server offers x {OpenAI, Ollama} x {stream, no-stream}."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from aihub_nb.chat import drive
from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

from .common import Section, closed_port, mark, one_line_error, table

PROMPT = "Say something, please."
_LOREM = ScriptedReply.lorem(20).text
_NUMBERS = itertools.count(1)


@dataclass
class Fault:
    name: str
    replies: list[ScriptedReply] = field(default_factory=list)
    expect: str = "error"  # "error": a clean failure; "ok": a completed turn; "either"
    model: str = "local-chat"
    timeout: float | None = None
    refused: bool = False  # talk to a closed port


def faults() -> list[Fault]:
    """The fault cases, each a fresh list of scripted replies (Retry-After keeps retries short)."""
    def retried(code: str) -> list[ScriptedReply]:
        return [ScriptedReply(fault=code, retry_after=0.05) for _ in range(4)]

    return [
        Fault("429 + Retry-After (every try)", retried("429")),
        Fault("429 once, then ok", [ScriptedReply(fault="429", retry_after=0.05), ScriptedReply("Fine now.")], expect="ok"),
        Fault("500 (every try)", retried("500")),
        Fault("503 (every try)", retried("503")),
        Fault("401 wrong key", [ScriptedReply(fault="401")]),
        Fault("404 unknown model", model="no-such-model"),
        Fault("dropped mid-stream", [ScriptedReply(_LOREM, fault="drop", drop_after=3)]),
        Fault("dropped before any token", [ScriptedReply(_LOREM, fault="drop", drop_after=0)]),
        Fault("malformed chunk", [ScriptedReply(_LOREM, fault="malformed", drop_after=3)]),
        Fault("slow first token > timeout", [ScriptedReply("Too late.", first_token_delay=1.5)], timeout=0.5),
        Fault("empty reply", [ScriptedReply("")], expect="either"),
        Fault("connection refused", refused=True),
    ]


def run(section: Section, server: LocalServer, tmp: Path, *, only: list[str] | None = None) -> None:
    hub = Hub(tmp / "faults")
    hub.approver = lambda *_: False
    port = closed_port()
    rows, results = [], []
    cases = [f for f in faults() if not only or any(o.lower() in f.name.lower() for o in only)]
    try:
        for fault in cases:
            for provider in ("OPENAI", "OLLAMA"):
                for stream in (True, False):
                    try:
                        r = _case(hub, server, fault, provider, stream, port)
                    except Exception as exc:  # noqa: BLE001 - the harness's own failure, reported as such
                        r = {"fault": fault.name, "provider": provider, "stream": stream, "broken": f"{type(exc).__name__}: {exc}"}
                    results.append(r)
    finally:
        hub.close()
        server.reset()
    for r in results:
        mode = "stream" if r["stream"] else "whole"
        api = "openai" if r["provider"] == "OPENAI" else "ollama"
        if "broken" in r:
            rows.append((r["fault"], api, mode, "harness broke: " + r["broken"][:70]))
            continue
        rows.append((
            r["fault"], api, mode, r["outcome"], mark(r["one_line"]), r["job"], mark(r["calls_true"]), r["stream_status"],
            mark(r["user_message"]), f"{r['seconds']:.2f}", "ok" if r["good"] else "BAD",
        ))
        section.add("all as expected", r["good"])
        if r["failed"]:
            section.add("error shown as one line", r["one_line"])
            section.add("failed Job recorded", r["job"] == "failed")
        section.add("NetworkCall in a true state", r["calls_true"])
        section.add("user message kept", r["user_message"])
    section.lines.append(f"{len(cases)} faults x {{OpenAI, Ollama}} x {{stream, whole}} = {len(results)} cases")
    section.lines += table(
        ("fault", "api", "mode", "outcome", "1 line", "job", "calls true", "stream", "user msg", "s", "verdict"),
        rows, right={9},
    )
    bad = [r for r in results if "broken" in r or not r["good"]]
    for r in bad[:8]:
        if "broken" not in r:
            section.lines.append(f"  BAD {r['fault']} / {r['provider'].lower()} / {'stream' if r['stream'] else 'whole'}: {r['detail']}")
    section.data["cases"] = results
    section.headline = f"{len(cases)} faults x 2 APIs x 2 modes: {len(results) - len(bad)}/{len(results)} one line, failed job, true records"


def _case(hub: Hub, server: LocalServer, fault: Fault, provider: str, stream: bool, port: int) -> dict:
    server.reset()
    server.script(*fault.replies)
    name = f"fault-{next(_NUMBERS)}"
    url = f"http://127.0.0.1:{port}" if fault.refused else server.url
    kwargs = {"name": name, "timeout": fault.timeout}
    if provider == "OPENAI":
        hub.connect("OPENAI", fault.model, base_url=url + "/v1", api_key="x", **kwargs)
    else:
        hub.connect("OLLAMA", fault.model, host=url, **kwargs)
    chat = hub.chat(name, model=name)
    started = time.perf_counter()
    error: BaseException | None = None
    reply = None
    try:
        reply = drive(chat.turn(PROMPT, stream=stream))
    except Exception as exc:  # noqa: BLE001 - classified below
        error = exc
    seconds = time.perf_counter() - started
    store = hub.store
    job = store.query(
        "SELECT id, status, error FROM \"Jobs\" WHERE json_extract(\"references\", '$.chat') = ? ORDER BY rowid DESC LIMIT 1",
        (chat.id,),
    )
    job_id, job_status = (job[0]["id"], job[0]["status"]) if job else (None, "none")
    calls = store.query(
        "SELECT status, statusCode FROM \"NetworkCall\" WHERE json_extract(\"references\", '$.job') = ? ORDER BY rowid", (job_id,)
    ) if job_id else []
    streams = store.query(
        "SELECT status FROM \"ResponseStream\" WHERE json_extract(\"references\", '$.job') = ? ORDER BY rowid", (job_id,)
    ) if job_id else []
    user = bool(store.query('SELECT 1 FROM "Message" WHERE threadId = ? AND type = \'user\' AND content = ?', (chat.thread_id, PROMPT)))
    failed = error is not None
    statuses = [c["status"] for c in calls]
    # true: none left pending, at least one recorded, and the last one says how the turn ended
    calls_true = bool(statuses) and "pending" not in statuses and statuses[-1] == ("error" if failed else "success")
    stream_status = streams[-1]["status"] if streams else "none"
    one_line = one_line_error(error) if failed else None
    if failed:
        outcome = type(error).__name__
        good = fault.expect in ("error", "either") and one_line and job_status == "failed" and calls_true and user and stream_status == "failed"
    else:
        outcome = f"ok ({len(reply.text)} chars)" if reply is not None else "ok"
        good = fault.expect in ("ok", "either") and job_status == "completed" and calls_true and user and stream_status == "completed"
    detail = []
    if failed and fault.expect == "ok":
        detail.append(f"expected a completed turn, got {outcome}: {str(error)[:120]!r}")
    if not failed and fault.expect == "error":
        detail.append("expected an error, the turn completed")
    if failed and not one_line:
        detail.append(f"not one line: {type(error).__module__}.{type(error).__name__}: {str(error)[:120]!r}")
    if not calls_true:
        detail.append(f"network calls {statuses} (codes {[c['statusCode'] for c in calls]})")
    if failed and job_status != "failed":
        detail.append(f"job {job_status}")
    if not user:
        detail.append("no user message")
    if stream_status != ("failed" if failed else "completed"):
        detail.append(f"stream {stream_status}")
    return {
        "fault": fault.name, "provider": provider, "stream": stream, "outcome": outcome, "failed": failed,
        "one_line": one_line, "job": job_status, "calls_true": calls_true, "stream_status": stream_status,
        "user_message": user, "seconds": seconds, "good": bool(good), "detail": "; ".join(detail),
        "error": str(error) if error else None,
    }
