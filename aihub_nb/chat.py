"""Chats: a named conversation with a model connection or an agent, kept in the store.

    >>> chat = hub.chat("demo", model="local")
    >>> reply = chat.send("Hello!")          # streams, records, returns a Reply
    >>> for text in chat.stream("More?"):    # or yields the text as it arrives
    ...     print(text, end="")

A Chat owns a MessageThread (`references["thread"]`). One turn, in order:
a Jobs row goes pending -> running and locks the thread (`lockingJob`); the user's Message is
written; each model call gets a ResponseStream whose `rawOutput` fills while the reply streams
(the recording transport also writes one NetworkCall per HTTP request); 429 and 5xx answers are
retried with bounded backoff honouring Retry-After (at least MIN_BACKOFF); the model's Message
is written with the reply's finish reason; metrics (latency_ms, ttft_ms, tokens, tokens_per_s,
cost_usd; estimated token counts when the server reports none) are logged; the job completes and
the lock is released. Taking the lock and starting the job are one transaction, so a turn that
fails or is killed at any point never leaves the chat locked by a job that did not start. When the
chat talks to an agent, tool calls the model asks for run through the
agent's tools (a `ToolBox`, aihub_nb.agents) and their results go back to the model, round after round.
A Chat works with the hub's `Runtime` (store, provider clients, metrics, recording, approver), never
with the Hub itself; the Hub decides what the chat talks to at each turn (a `TurnTarget`: a
connection, or an agent's model and toolbox) and hands it to the turn.
A failure or Ctrl-C at any point leaves all of that recorded, marked failed or interrupted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError, ProviderError, RoundLimitError, UsageError
from .jobs import JobRun, release_thread
from .media import MediaStore, data_url, image_bytes
from .monitoring import turn_price
from .redact import redact
from .runtime import Approver
from .tools import ToolBox, ToolOutcome
from .views import chat_view, rendered_message, reply_view, source_names, target_label

if TYPE_CHECKING:
    from .providers.base import ToolCall
    from .recording import CallHandle
    from .runtime import Runtime

__all__ = ["Approver", "Chat", "Reply", "Target", "ToolBox", "ToolOutcome", "TurnEvent", "TurnTarget", "drive"]

MAX_RETRIES = 3
_ADDITIVE = (
    "latency_ms", "prompt_tokens", "completion_tokens", "prompt_tokens_est", "completion_tokens_est", "cost_usd",
    "error", "usage_missing",
)
MAX_BACKOFF = 30.0
MIN_BACKOFF = 0.25  # even when the server says Retry-After: 0
# 5xx answers that mean "busy" or "a proxy failed": a repeat of these says nothing about the request.
_PASSING_STATUSES = (502, 503, 504)
# Why a reply ended, as the footer and the chat panel say it; other reasons go unsaid.
FINISH_NOTES = {"length": "cut at the token limit", "content_filter": "stopped by the content filter"}
# Replies that did not complete: shown to the user, never sent back to the model.
_UNFINISHED = ("failed", "interrupted")

# Message.type for each role the providers speak
_ROLES = {"user": "user", "system": "system", "chatModel": "assistant", "agent": "assistant", "toolCall": "assistant"}


@dataclass
class TurnEvent:
    """Something that happened during a turn, for a display to show as it happens."""

    kind: str  # "text" | "tool_call" | "tool_result" | "retry" | "round"
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """What a chat talks to, as shown to a person (`Chat.target()`)."""

    kind: str  # "chatModel" | "agent"
    id: str  # the ModelConnections or Agent id
    name: str | None = None  # None when it was removed
    model_id: str | None = None  # a connection's model

    @property
    def label(self) -> str:
        """As every display names it (views.target_label): "name (model)", "agent name", or
        "(removed connection)" / "(removed agent)"."""
        row = None if self.name is None else {"name": self.name, "modelId": self.model_id}
        return target_label(row, agent=self.kind == "agent")


@dataclass
class TurnTarget:
    """What one turn talks to, decided by the hub: a connection, and for an agent its toolbox."""

    connection: dict[str, Any]
    label: str
    message_type: str
    source_id: str
    system: str = ""
    toolbox: ToolBox | None = None
    agent: str | None = None
    span: Any = None  # the agent's invoke_agent span while telemetry is on: parent of the turn's calls


@dataclass
class Reply:
    """The outcome of one turn. Shows in a notebook as sanitised HTML (aihub_nb.views)."""

    text: str
    status: str
    chat: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int | None] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    finish_reason: str | None = None  # of the last model call: "stop", "length", "content_filter", ...

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"<Reply {self.status} chat={self.chat!r} {preview!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return reply_view(self.text, self.tool_calls)._repr_mimebundle_()

    def summary_line(self, label: str) -> str:
        """`label · 12 → 40 tokens · 0.84 s · $0.000031 · 1 tool call`, for under a reply."""
        bits = [label]
        note = FINISH_NOTES.get(self.finish_reason or "")
        if note:
            bits.append(f"⚠ {note}")
        usage = self.usage or {}
        if usage.get("completion_tokens") is not None:
            bits.append(f"{usage.get('prompt_tokens') or 0} → {usage['completion_tokens']} tokens")
        elif usage.get("completion_tokens_est") is not None:
            bits.append(
                f"~{usage.get('prompt_tokens_est') or 0} → ~{usage['completion_tokens_est']} tokens (estimated: not reported)"
            )
        if "latency_ms" in self.metrics:
            bits.append(f"{self.metrics['latency_ms'] / 1000:.2f} s")
        if "cost_usd" in self.metrics:
            bits.append(f"${self.metrics['cost_usd']:.6f}")
        if self.tool_calls:
            bits.append(f"{len(self.tool_calls)} tool call{'s' if len(self.tool_calls) != 1 else ''}")
        return " · ".join(bits)


@dataclass
class _CallResult:
    text: str = ""
    tool_calls: list[Any] = field(default_factory=list)
    usage: Any = None
    finish_reason: str | None = None
    stream_id: str = ""
    started: float = 0.0
    first_token: float | None = None  # the first piece of text or of a tool call
    last_token: float | None = None
    ended: float = 0.0
    status: str = "streaming"
    streamed: bool = True
    timings: Any = None  # the server's own (providers.base.Timings)
    sent: list[dict[str, Any]] = field(default_factory=list)  # the messages of the request
    options: dict[str, Any] = field(default_factory=dict)  # the request's options
    response_id: str | None = None
    response_model: str | None = None
    error: BaseException | None = None


class Chat:
    """A named conversation. Get one with `hub.chat(name, model=...)`.

    `resolve(chat, approve)` gives the TurnTarget of a turn (the hub's choice); without it a chat
    talks to the connection its row names."""

    def __init__(
        self,
        runtime: Runtime,
        row: dict[str, Any],
        resolve: Callable[[Chat, Approver | None], TurnTarget] | None = None,
    ) -> None:
        self.runtime = runtime
        self._row = row
        self._resolve = resolve or connection_target

    # -- what it is

    @property
    def id(self) -> str:
        return self._row["id"]

    @property
    def name(self) -> str:
        return self._row["name"]

    @property
    def type(self) -> str:
        return self._row["type"]

    @property
    def thread_id(self) -> str:
        return self._row["references"]["thread"]

    @property
    def source_id(self) -> str:
        """The id of the connection or agent it talks to."""
        return self._row["sourceId"]

    def target(self) -> Target:
        """What it talks to: kind, id, and (unless removed) name and model."""
        store = self.runtime.store
        if self.type == "agent":
            row = store.first("Agent", id=self.source_id)
            return Target("agent", self.source_id, row["name"] if row else None)
        row = store.first("ModelConnections", id=self.source_id)
        return Target("chatModel", self.source_id, row["name"] if row else None, row["modelId"] if row else None)

    def refresh(self) -> Chat:
        self._row = self.runtime.store.get("Chat", self.id)
        return self

    def messages(self) -> list[dict[str, Any]]:
        """The thread's messages, oldest first."""
        return self.runtime.store.find("Message", threadId=self.thread_id)

    def history(self) -> list[dict[str, Any]]:
        """The thread as provider messages (OpenAI chat format)."""
        return _to_provider_messages(self.messages())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return chat_view(self.name, self.messages(), source_names(self.runtime.store))._repr_mimebundle_()

    def __repr__(self) -> str:
        return f"<Chat {self.name!r} ({self.type} {self.source_id})>"

    # -- talking

    def send(self, text: str, **options: Any) -> Reply:
        """Send `text`, wait for the whole reply, and return it. `images=[...]` (paths, bytes, PIL
        images, matplotlib Figures, IPython Images) go with it, for a vision model."""
        return drive(self.turn(text, **options))

    def stream(self, text: str, **options: Any) -> Iterator[str]:
        """Send `text` and yield the reply's text as it arrives; `.last_reply` holds the Reply.

        Leaving the loop early stops the turn; it is recorded as interrupted."""
        turn = self.turn(text, **options)
        try:
            while True:
                try:
                    event = next(turn)
                except StopIteration as done:
                    self.last_reply = done.value
                    return
                if event.kind == "text":
                    yield event.text
        finally:
            turn.close()

    def turn(
        self,
        text: str,
        *,
        options: dict[str, Any] | None = None,
        approve: Approver | None = None,
        stream: bool = True,
        images: list[Any] | None = None,
    ) -> Iterator[TurnEvent]:
        """The turn as a generator of TurnEvents whose return value is the Reply.

        `options` go to the model (temperature, max_tokens, seed, ...); `approve(tool, arguments)`
        decides on tools an agent may only run with the user's permission (default: the runtime's approver;
        no approver means denied). `stream=False` asks the provider for the whole reply at once.
        """
        if not isinstance(text, str) or not text.strip():
            raise UsageError("Nothing to send: the message is empty; write the message in the cell below the magic.")
        _check_options(options)
        target = self._resolve(self, approve or self.runtime.approver)
        store = self.runtime.store
        image_refs = _keep_images(store, images)
        run = JobRun(store, f"chat turn: {self.name}", "chat.turn", references={"chat": self.id, "thread": self.thread_id})
        reply = Reply(text="", status="running", chat=self.name, ids={"chat": self.id, "thread": self.thread_id, "job": run.id})
        if target.agent and self.runtime.telemetry is not None:
            target.span = self.runtime.telemetry.start_agent(target.agent, target.source_id, target.connection, conversation=self.thread_id)
        try:
            run.start(lock=self.thread_id, label=f"Chat {self.name!r}")  # lock and start: one transaction
            user = store.create(
                "Message", threadId=self.thread_id, type="user", sourceId="user", content=text,
                data={"images": image_refs} if image_refs else None,
            )
            reply.messages.append(user)
            run.log(f"user message {user['id']} ({len(text)} chars) to {target.label}")
            yield from self._rounds(target, run, reply, options or {}, stream)
            reply.status = "completed"
        except BaseException as exc:
            reply.status = "interrupted" if isinstance(exc, (KeyboardInterrupt, GeneratorExit)) else "failed"
            reply.error = str(exc) or type(exc).__name__
            if reply.messages and reply.messages[0]["type"] == "user":  # the message this turn did not answer
                user = reply.messages[0]
                user["data"] = {**(user.get("data") or {}), "status": reply.status}
                store.set("Message", user["id"], data=user["data"])
            run.finish(exc)
            raise
        finally:
            release_thread(store, self.thread_id, run.id)
            if target.span is not None:
                target.span.end(reply.status, reply.error)
        run.finish()
        return reply

    def _rounds(
        self, target: TurnTarget, run: JobRun, reply: Reply, options: dict[str, Any], stream: bool
    ) -> Iterator[TurnEvent]:
        store = self.runtime.store
        toolbox = target.toolbox
        specs = toolbox.specs() if toolbox else None
        limit = toolbox.max_rounds if toolbox else 1
        for round_number in range(1, limit + 1):
            messages = _to_provider_messages(store.find("Message", threadId=self.thread_id), MediaStore.beside(store))
            if target.system:
                messages.insert(0, {"role": "system", "content": target.system})
            result = yield from self._model_call(target, run, reply, messages, specs or None, options, stream)
            calls = result.tool_calls if toolbox else []
            finish = {"finish_reason": result.finish_reason} if result.finish_reason else {}
            if not calls:
                final = store.create(
                    "Message", threadId=self.thread_id, type=target.message_type, sourceId=target.source_id,
                    content=result.text, data=finish or None, references={"stream": result.stream_id},
                )
                reply.messages.append(final)
                reply.text = result.text
                reply.ids["message"] = final["id"]
                return
            request = store.create(
                "Message", threadId=self.thread_id, type="toolCall", sourceId=target.source_id, content=result.text,
                data={"tool_calls": [_call_dict(c) for c in calls], **finish}, references={"stream": result.stream_id},
            )
            reply.messages.append(request)
            for call in calls:
                yield TurnEvent("tool_call", data={"id": call.id, "name": call.name, "arguments": call.arguments})
                started = time.time_ns()
                outcome = toolbox.run(call, job_id=run.id, thread_id=self.thread_id)
                if target.span is not None:
                    target.span.tool(call.name, call.id, call.arguments, outcome, started)
                result_row = store.create(
                    "Message", threadId=self.thread_id, type="toolResult", sourceId=outcome.tool_id or "",
                    content=outcome.content,
                    data={"tool_call_id": call.id, "name": call.name, "status": outcome.status},
                    references={"invocation": outcome.invocation_id} if outcome.invocation_id else {},
                )
                reply.messages.append(result_row)
                summary = {
                    "id": call.id, "name": call.name, "arguments": call.arguments, "status": outcome.status,
                    "result": outcome.content, "invocation": outcome.invocation_id, "duration_ms": outcome.duration_ms,
                }
                reply.tool_calls.append(summary)
                yield TurnEvent("tool_result", text=outcome.content, data=summary)
            yield TurnEvent("round", data={"round": round_number})
        raise RoundLimitError(
            f"{target.label.capitalize()} used all {limit} rounds without a final answer; "
            f"raise the limit with hub.agent({target.agent!r}, max_rounds=N) or simplify the request."
        )

    def _model_call(
        self, target: TurnTarget, run: JobRun, reply: Reply, messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None, options: dict[str, Any], stream: bool,
    ) -> Iterator[TurnEvent]:
        store = self.runtime.store
        conn = target.connection
        provider = self.runtime.providers.get(conn)
        stream_row = store.create(
            "ResponseStream", sourceId=conn["id"], status="streaming",
            references={"job": run.id, "thread": self.thread_id, "chat": self.id},
        )
        result = _CallResult(stream_id=stream_row["id"], started=time.perf_counter(), streamed=stream, sent=messages)
        reply.ids.setdefault("streams", []).append(stream_row["id"])
        run.log(f"model call to {conn['provider']} {conn['modelId']} ({len(messages)} messages), stream {stream_row['id']}")
        options = result.options = _with_defaults(options, conn)
        parts: list[str] = []
        failures: list[ProviderError] = []
        with self.runtime.recorder.call(stream_row["id"], job=run.id) as call:
            try:
                for attempt in range(MAX_RETRIES + 1):
                    events = provider.chat(conn["modelId"], messages, tools=tools, stream=stream, options=options or None)
                    try:
                        for event in events:
                            if event.text or event.tool_delta or event.tool_calls:
                                now = time.perf_counter()
                                if result.first_token is None:
                                    result.first_token = now
                                result.last_token = now
                            if event.text:
                                parts.append(event.text)
                                yield TurnEvent("text", text=event.text)
                            if event.tool_calls:
                                result.tool_calls.extend(event.tool_calls)
                            if event.usage is not None:
                                result.usage = event.usage
                            if event.finish_reason:
                                result.finish_reason = event.finish_reason
                            if event.timings is not None:
                                result.timings = event.timings
                            result.response_id = event.response_id or result.response_id
                            result.response_model = event.response_model or result.response_model
                        break
                    except ProviderError as exc:
                        failures.append(exc)
                        _explain_refused_images(exc, conn, messages)
                        if not exc.retryable or result.first_token is not None or attempt == MAX_RETRIES:
                            raise _same_failure(failures) or exc
                        wait = _backoff(attempt, exc.retry_after)
                        run.log(f"attempt {attempt + 1} failed ({exc}); retrying in {wait:.2f}s")
                        yield TurnEvent("retry", text=str(exc), data={"attempt": attempt + 1, "wait": wait})
                        time.sleep(wait)
                    finally:
                        close = getattr(events, "close", None)
                        if close:
                            close()
                result.status = "completed"
            except BaseException as exc:
                result.status = "interrupted" if isinstance(exc, (KeyboardInterrupt, GeneratorExit)) else "failed"
                result.error = exc
                if isinstance(exc, ProviderError) and exc.status_code is None:
                    call.fail_answered(str(exc))
                raise
            finally:
                result.text = redact("".join(parts))  # stored and sent back: no known secret in it
                result.ended = time.perf_counter()
                self._finish_call(target, run, reply, call, result)
        return result

    def _finish_call(self, target: TurnTarget, run: JobRun, reply: Reply, call: CallHandle, result: _CallResult) -> None:
        stream_id = call.stream_id
        store = self.runtime.store
        conn = target.connection
        # The parsed reply, shaped like a Message row (type, sourceId, content, data) plus its role.
        message: dict[str, Any] = {
            "type": "toolCall" if result.tool_calls else target.message_type,
            "role": "assistant",
            "sourceId": target.source_id,
            "content": result.text,
        }
        if result.tool_calls:
            message["data"] = {"tool_calls": [_call_dict(c) for c in result.tool_calls]}
        if result.finish_reason:
            message.setdefault("data", {})["finish_reason"] = result.finish_reason
        call.close(status=result.status, result_messages=[message])
        if result.status != "completed" and result.text and not reply.text:
            partial = store.create(
                "Message", threadId=self.thread_id, type=target.message_type, sourceId=target.source_id,
                content=result.text, data={"status": result.status}, references={"stream": stream_id},
            )
            reply.messages.append(partial)
            reply.text = result.text
        usage = result.usage
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        latency = (result.ended - result.started) * 1000
        values: dict[str, float] = {"latency_ms": round(latency, 3)}
        values.update(_speed(result, completion))
        if prompt is not None:
            values["prompt_tokens"] = prompt
        if completion is not None:
            values["completion_tokens"] = completion
        if result.status == "completed" and prompt is None and completion is None:
            # Not reported (some servers ignore stream_options): counted, and estimated under other names.
            values["usage_missing"] = 1.0
            values["prompt_tokens_est"] = estimate_tokens(_sent_text(result.sent), conn["modelId"])
            values["completion_tokens_est"] = estimate_tokens(
                result.text + "".join(c.name + c.arguments for c in result.tool_calls), conn["modelId"]
            )
        price_source = None
        if result.status == "completed":
            data = conn.get("data") or {}
            priced = turn_price(
                store, conn["provider"], conn["modelId"], prompt or 0, completion or 0,
                cached_tokens=getattr(usage, "cached_tokens", None), base_url=data.get("base_url"),
                package=not data.get("builtin"),
            )
            if priced is not None:
                values["cost_usd"], price_source = priced
        elif result.status == "failed":  # an interruption (Ctrl-C, Stop) is not an error
            values["error"] = 1.0
        dims = {
            "provider": conn["provider"], "model": conn["modelId"], "connection": conn["name"], "chat": self.name,
            "status": result.status,
        }
        if result.finish_reason:
            dims["finish_reason"] = result.finish_reason
        if target.agent:
            dims["agent"] = target.agent
        if price_source:
            dims["price_source"] = price_source  # "user" or "genai-prices <version>"
        self.runtime.metrics.record(values, dims, references={"stream": stream_id, "job": run.id})
        if self.runtime.telemetry is not None:  # OpenTelemetry export, when on: queued, sent in the background
            self.runtime.telemetry.model_call(conn, result, values, dims, conversation=self.thread_id, parent=target.span)
        for key, value in values.items():  # over an agent's rounds: totals, the first ttft, the last rate
            if key in _ADDITIVE:
                reply.metrics[key] = round(reply.metrics.get(key, 0) + value, 6)
            elif key == "ttft_ms":
                reply.metrics.setdefault(key, value)
            else:
                reply.metrics[key] = value
        if prompt is not None or completion is not None:
            reply.usage["prompt_tokens"] = (reply.usage.get("prompt_tokens") or 0) + (prompt or 0)
            reply.usage["completion_tokens"] = (reply.usage.get("completion_tokens") or 0) + (completion or 0)
        elif "completion_tokens_est" in values:
            for key in ("prompt_tokens_est", "completion_tokens_est"):
                reply.usage[key] = (reply.usage.get(key) or 0) + int(values[key])
        if result.finish_reason:
            reply.finish_reason = result.finish_reason
        run.log(f"model call {result.status}: {len(result.text)} chars, {len(result.tool_calls)} tool calls, {latency:.0f} ms")


def connection_target(chat: Chat, approve: Approver | None = None) -> TurnTarget:
    """The turn's target when a chat talks to the connection its row names."""
    row = chat.runtime.store.first("ModelConnections", id=chat.source_id)
    if row is None:
        raise NotFoundError(
            f"Chat {chat.name!r} uses a connection that was removed; pick another with %%aihub chat {chat.name} --model CONNECTION."
        )
    if row["type"] != "CHAT":
        raise UsageError(
            f"Chat {chat.name!r} uses connection '{row['name']}', an {row['type']} connection ({row['modelId']}), "
            f"which does not chat; pick a chat model with %%aihub chat {chat.name} --model CONNECTION"
            + (f", or draw with %%aihub image {chat.name}." if row["type"] == "IMAGE" else ".")
        )
    return TurnTarget(connection=row, label=f"connection {row['name']!r}", message_type="chatModel", source_id=row["id"])


def drive(
    turn: Iterator[TurnEvent],
    on_event: Callable[[TurnEvent], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Reply | None:
    """Run a turn (`Chat.turn`) to its end, passing each event to `on_event`, and return its
    Reply. When `stop()` is true between two events the turn ends early and None is returned.
    However it ends (Ctrl-C in `on_event` included), the turn is closed, so an unfinished one is
    recorded as interrupted and its chat released at once."""
    try:
        while True:
            if stop is not None and stop():
                return None
            try:
                event = next(turn)
            except StopIteration as done:
                return done.value
            if on_event is not None:
                on_event(event)
    finally:
        turn.close()


# Request fields the chat itself sets: options may not override them.
_RESERVED_OPTIONS = ("messages", "model", "stream", "stream_options", "tools")


def _check_options(options: Any) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise UsageError(f"options must be a dict such as {{'temperature': 0.2}}, not {type(options).__name__}.")
    reserved = sorted(set(options) & set(_RESERVED_OPTIONS))
    if reserved:
        raise UsageError(
            f"options cannot set {', '.join(reserved)}: the chat sets those (the model from its connection, "
            "stream=False for a whole reply at once); pass model options such as temperature, max_tokens or seed."
        )
    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"Option {key} must be a finite number, not {value!r}.")


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and retry_after >= 0:
        return min(max(float(retry_after), MIN_BACKOFF), MAX_BACKOFF)
    return min(0.5 * (2**attempt), MAX_BACKOFF)


def _same_failure(failures: list[ProviderError]) -> ProviderError | None:
    """When every attempt failed with the same server error, in the same words, the request
    itself is the likely cause, not a passing fault: an error that says so, else None."""
    if len(failures) < 2:
        return None
    last = failures[-1]
    status = last.status_code
    if status is None or status < 500 or status in _PASSING_STATUSES:
        return None
    if any(f.status_code != status or str(f) != str(last) for f in failures):
        return None
    return type(last)(
        f"Connection '{last.connection}': the server answered HTTP {status} to all {len(failures)} attempts in the "
        f"same way, so retrying will not help: the request itself is what it cannot handle, for example a "
        f"conversation history this server does not accept; try a new chat, or check the options. "
        f"The server said: {str(last)}",
        connection=last.connection,
        status_code=status,
    )


def _with_defaults(options: dict[str, Any], conn: dict[str, Any]) -> dict[str, Any]:
    """The turn's options, with the connection's default max_tokens when the turn sets no limit."""
    limit = (conn.get("data") or {}).get("max_tokens")
    if limit and not ({"max_tokens", "max_completion_tokens", "num_predict"} & set(options)):
        return {**options, "max_tokens": int(limit)}
    return options


def _speed(result: _CallResult, completion: int | None) -> dict[str, float]:
    """ttft_ms and tokens_per_s of one call. Streamed: from the first piece of text or tool call,
    and n-1 tokens over the time from the first to the last piece (the first token ends the wait,
    it is not generated inside the window). Not streamed there is no first token to see: the
    server's own timings when its answer carries them (Ollama, llama.cpp), else nothing."""
    out: dict[str, float] = {}
    timings = result.timings
    if result.streamed and result.first_token is not None:
        out["ttft_ms"] = round((result.first_token - result.started) * 1000, 3)
    elif timings is not None and timings.prompt_ms is not None:
        out["ttft_ms"] = round(timings.prompt_ms, 3)
    window = (result.last_token or 0) - (result.first_token or 0)
    if result.streamed and completion and completion > 1 and window > 0:
        out["tokens_per_s"] = round((completion - 1) / window, 3)
    elif timings is not None and timings.tokens_per_s is not None:
        out["tokens_per_s"] = round(timings.tokens_per_s, 3)
    return out


def _sent_text(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        content = m.get("content")
        out.append(content if isinstance(content, str) else json.dumps(content or ""))
        for call in m.get("tool_calls") or ():
            out.append(json.dumps(call.get("function", {})))
    return "\n".join(out)


_ENCODINGS: dict[str, Any] = {}


def estimate_tokens(text: str, model: str = "") -> int:
    """About how many tokens `text` is: tiktoken's count when its encoding for `model` (else
    o200k_base) is already on this machine (it is never downloaded here), else characters / 4."""
    encoding = _encoding(model)
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return (len(text) + 3) // 4


def _encoding(model: str) -> Any:
    if model not in _ENCODINGS:
        _ENCODINGS[model] = _offline_encoding(model)
    return _ENCODINGS[model]


_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def _offline_encoding(model: str) -> Any:
    """tiktoken's encoding for `model` when its BPE file is in tiktoken's cache, else None."""
    import hashlib
    import os
    import tempfile

    try:
        import tiktoken
    except ImportError:
        return None
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "o200k_base"
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache is None:
        cache = os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    key = hashlib.sha1(_TIKTOKEN_URL.format(name).encode()).hexdigest()
    if not cache or not os.path.exists(os.path.join(cache, key)):
        return None  # it would be downloaded
    try:
        return tiktoken.get_encoding(name)
    except Exception:
        return None


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _keep_images(store: Any, images: list[Any] | None) -> list[str]:
    """The `media:` references of images to send, each kept once in the media folder."""
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        images = [images]
    media = MediaStore.beside(store)
    return [media.put(*image_bytes(image)) for image in images]


def _explain_refused_images(exc: ProviderError, conn: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """A model that refuses the images sent: one line naming it and what to use instead."""
    sent_images = any(isinstance(m.get("content"), list) for m in messages)
    if sent_images and exc.status_code in (400, 422, 500) and "image" in str(exc).lower():
        detail = str(exc).split("(", 1)[-1].rsplit(")", 1)[0] if "(" in str(exc) else str(exc)
        exc.args = (
            f"Connection '{conn['name']}': model '{conn['modelId']}' does not take images ({detail}); "
            "send images to a vision model (e.g. gpt-4o-mini, or llava / llama3.2-vision on Ollama).",
        )
        exc.retryable = False


def _with_images(message: dict[str, Any], refs: list[str], media: MediaStore | None) -> dict[str, Any]:
    """An OpenAI message whose content is text and `image_url` parts with data URLs."""
    if media is None or not refs:
        return message
    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    for ref in refs:
        parts.append({"type": "image_url", "image_url": {"url": data_url(media.read(ref), MediaStore.mime(ref))}})
    return {**message, "content": parts}


def _to_provider_messages(rows: list[dict[str, Any]], media: MediaStore | None = None) -> list[dict[str, Any]]:
    """The thread as the model gets it, always valid for a provider: a reply that failed or was
    interrupted (data.status) stays out (the user still sees it, marked); tool-call arguments
    that are not a JSON object (a call cut at the token limit) go as {"_invalid_arguments":
    "<the text>"}; calls without results and results without calls are left out."""
    out: list[dict[str, Any]] = []
    for row in rows:
        kind = row["type"]
        data = row.get("data") or {}
        if kind == "toolResult":
            out.append({"role": "tool", "tool_call_id": data.get("tool_call_id", ""), "content": row["content"]})
            continue
        role = _ROLES.get(kind)
        if role is None:
            continue
        if role == "assistant" and data.get("status") in _UNFINISHED:
            continue
        message: dict[str, Any] = {"role": role, "content": row["content"]}
        if data.get("images") and role == "user":
            message = _with_images(message, data["images"], media)
        if kind == "toolCall":
            message["tool_calls"] = [_valid_call(c) for c in data.get("tool_calls", [])]
        out.append(message)
    return _drop_unanswered_tool_calls(out)


def _valid_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        return call
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        value = None
    if isinstance(value, dict):
        return call
    raw = "" if arguments is None else str(arguments)
    return {**call, "function": {**function, "arguments": json.dumps({"_invalid_arguments": raw}, ensure_ascii=False)}}


def _drop_unanswered_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn interrupted between a tool request and its results leaves calls no API accepts;
    a request left out leaves results that answer nothing."""
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    asked: set[str] = set()
    out = []
    for m in messages:
        if m["role"] == "tool" and m.get("tool_call_id") not in asked:
            continue
        if m.get("tool_calls"):
            calls = [c for c in m["tool_calls"] if c.get("id") in answered]
            asked.update(c.get("id") for c in calls)
            if not calls:
                if m["content"]:
                    out.append({"role": "assistant", "content": m["content"]})
                continue
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def rendered_messages(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The thread as RenderedConversationThread.messages: type and content of each message, and
    the sanitised HTML it shows as."""
    out = []
    for row in rows:
        content = row["content"]
        if row["type"] == "toolCall":
            content = json.dumps((row.get("data") or {}).get("tool_calls", []), ensure_ascii=False)
        out.append({"type": row["type"], "content": content, "html": rendered_message(row)})
    return out

