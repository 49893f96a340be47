"""After a crash: what a killed process left under way, put in a true state.

A kernel killed mid-turn (kill -9, out of memory, a power cut) cannot record how its turn ended.
When a Hub next opens the file, after the jobs of dead processes are marked failed
(`jobs.fail_orphaned_jobs`), `recover_interrupted` looks at the records those jobs left under
way and marks them interrupted:

* a ResponseStream still `streaming`: `interrupted`, and the reply as far as it arrived (parsed
  from its raw output) becomes the thread's model message with `data={"status": "interrupted"}`,
  as a turn interrupted by Ctrl-C leaves it, so the chat shows what arrived;
* a NetworkCall still `pending`: `interrupted`, with the reason in `error`;
* a ToolInvocation still `pending` or `running`: `interrupted`.

Only records whose job is no longer running are touched: a turn under way in another live
process is left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .store import now_iso

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Recovered", "partial_reply", "recover_interrupted"]

INTERRUPTED = "its process ended before the call finished"

# Records under way whose job has ended (or is gone): the job reference is in `references`.
_ENDED_JOB = (
    'SELECT t.id FROM "{table}" t LEFT JOIN "Jobs" j ON j.id = json_extract(t."references", \'$.job\') '
    "WHERE t.status IN ({states}) AND json_extract(t.\"references\", '$.job') IS NOT NULL "
    "AND (j.id IS NULL OR j.status NOT IN ('pending', 'running'))"
)


@dataclass(frozen=True)
class Recovered:
    """How many records a recovery marked interrupted, and how many partial replies it kept."""

    streams: int
    calls: int
    invocations: int
    messages: int

    def __bool__(self) -> bool:
        return bool(self.streams or self.calls or self.invocations)


def _ids(store: Store, table: str, states: tuple[str, ...]) -> list[str]:
    sql = _ENDED_JOB.format(table=table, states=", ".join(f"'{s}'" for s in states))
    return [r[0] for r in store.conn.execute(sql)]


def recover_interrupted(store: Store) -> Recovered:
    """Mark interrupted the streams, network calls and tool invocations of ended jobs that are
    still under way, and keep each stream's partial reply as a message. Returns the counts."""
    with store._lock:
        streams = _ids(store, "ResponseStream", ("streaming",))
        calls = _ids(store, "NetworkCall", ("pending",))
        invocations = _ids(store, "ToolInvocation", ("pending", "running"))
    if not (streams or calls or invocations):
        return Recovered(streams=0, calls=0, invocations=0, messages=0)
    now = now_iso()
    with store.transaction() as conn:
        marked_calls = sum(
            conn.execute(
                'UPDATE "NetworkCall" SET status = \'interrupted\', error = coalesce(error, ?), "updatedAt" = ? '
                "WHERE id = ? AND status = 'pending'",
                (INTERRUPTED, now, call_id),
            ).rowcount
            for call_id in calls
        )
        marked_invocations = sum(
            conn.execute(
                'UPDATE "ToolInvocation" SET status = \'interrupted\', "updatedAt" = ? '
                "WHERE id = ? AND status IN ('pending', 'running')",
                (now, inv_id),
            ).rowcount
            for inv_id in invocations
        )
        kept = sum(_recover_stream(store, stream_id, now) for stream_id in streams)
    return Recovered(streams=len(streams), calls=marked_calls, invocations=marked_invocations, messages=kept)


def _recover_stream(store: Store, stream_id: str, now: str) -> bool:
    """Mark one stream interrupted; keep its partial reply as a message. True if one was kept."""
    stream = store.get("ResponseStream", stream_id)
    refs = stream.get("references") or {}
    text = partial_reply(stream.get("rawOutput") or "")
    message: dict[str, Any] | None = None
    thread_id = refs.get("thread")
    if text and thread_id:
        chat = store.first("Chat", id=refs["chat"]) if refs.get("chat") else None
        agent = chat is not None and chat["type"] == "agent"
        message = {
            "type": "agent" if agent else "chatModel",
            "role": "assistant",
            "sourceId": chat["sourceId"] if agent else stream["sourceId"],
            "content": text,
        }
    kept = False
    if message is not None and store.count("MessageThread", id=thread_id):
        already = store.conn.execute(
            'SELECT 1 FROM "Message" WHERE "threadId" = ? AND json_extract("references", \'$.stream\') = ? LIMIT 1',
            (thread_id, stream_id),
        ).fetchone()
        if not already:
            store.create(
                "Message", threadId=thread_id, type=message["type"], sourceId=message["sourceId"], content=text,
                data={"status": "interrupted"}, references={"stream": stream_id},
            )
            kept = True
    store.conn.execute(
        'UPDATE "ResponseStream" SET status = \'interrupted\', "resultMessages" = ?, "updatedAt" = ? WHERE id = ?',
        (json.dumps([message] if message else [], ensure_ascii=False), now, stream_id),
    )
    return kept


def partial_reply(raw: str) -> str:
    """The reply text in a raw output as far as it arrived: OpenAI's event stream (`data: {...}`
    lines) or whole completion, or Ollama's JSON lines. A line cut off mid-way is skipped."""
    parts: list[str] = []
    for line in raw.splitlines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
            if line == "[DONE]":
                continue
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict):
                part = choice.get("delta") or choice.get("message") or {}
                content = part.get("content") if isinstance(part, dict) else None
                if isinstance(content, str):
                    parts.append(content)
        message = obj.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "".join(parts)
