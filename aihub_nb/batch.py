"""Batch runs: one prompt template over every row of a DataFrame, many requests at once.

    >>> labels = hub.map("Classify the sentiment of: {review}", df, model="local", concurrency=8)
    >>> job = hub.map("...", df, model="local", name="reviews", background=True)   # returns at once
    >>> hub.resume("reviews")        # after a crash or a kernel restart: only the rows without a result

A batch has a name and a MessageThread that holds it (`references.batch`): a user Message per row
(the rendered prompt, with the row's position, index label and request key in `data`), and, per
row answered, the model's Message (`data.status`: completed, failed, invalid, interrupted). Each
run is a Jobs row of type `batch` that locks the thread, logs to its TextLog and keeps its
`progress` ({total, done, failed, cached, tokens, cost_usd}). Each request is recorded like a chat
turn: a ResponseStream, the NetworkCalls of the recording transport, and metrics with a `batch`
dimension. Running the same name again (or `resume`) sends only the rows without a completed
answer; identical requests (same provider, endpoint, model, messages, options and schema) already
answered anywhere in the store are served from it unless `cache=False`.

Requests go through the connection's provider client from a pool of `concurrency` threads behind
an adaptive limiter: a 429 halves the number of requests in flight and pauses all of them for the
Retry-After the server asked (the row is retried, never failed for it); successes raise the limit
again. 5xx answers are retried with backoff. Ctrl-C (or `BatchRun.stop()`) stops sending, marks
the requests under way interrupted, and returns what is done.
"""

from __future__ import annotations

import hashlib
import json
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .chat import MAX_BACKOFF, MAX_RETRIES, MIN_BACKOFF, estimate_tokens
from .errors import NotFoundError, ProviderError, UsageError
from .jobs import JobRun, release_thread
from .monitoring import price_for
from .redact import redact
from .store import now_iso

if TYPE_CHECKING:
    from .recording import CallHandle
    from .store import Store

__all__ = ["BatchRun", "ItemError", "prepare", "resume_spec"]

# A row answered 429 this many times in a row fails after all (a server that never lets up).
MAX_RATE_LIMITED = 50
_PROGRESS_EVERY_S = 0.5


class ItemError(str):
    """A row's failure, kept in its place in the result (a str subclass: it prints as the error)."""

    def __repr__(self) -> str:
        return f"ItemError({str(self)!r})"


@dataclass
class _Item:
    position: int
    label: Any  # the row's index label
    prompt: str
    key: str
    message_id: str | None = None


@dataclass
class _Spec:
    """What a run sends: everything but the rows."""

    name: str
    connection: dict[str, Any]
    options: dict[str, Any]
    schema: dict[str, Any] | None  # {"name": ..., "schema": ...}
    model_class: Any = None  # a pydantic model to validate with, when one was given
    thread_id: str | None = None


@dataclass
class _Tally:
    total: int = 0
    done: int = 0
    failed: int = 0
    cached: int = 0
    skipped: int = 0  # answered by an earlier run of the batch
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rate_limited: int = 0
    started: float = field(default_factory=time.perf_counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        finished = self.done + self.failed
        rate = finished / elapsed if elapsed > 0 else 0.0
        left = self.total - finished - self.cached - self.skipped
        return {
            "total": self.total, "done": self.done, "failed": self.failed, "cached": self.cached,
            "skipped": self.skipped, "tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6), "rate_per_s": round(rate, 2),
            "eta_s": round(left / rate, 1) if rate > 0 and left > 0 else (0.0 if left <= 0 else None),
            "rate_limited": self.rate_limited, "elapsed_s": round(elapsed, 2),
        }


# ---------------------------------------------------------------- input


def rows_of(data: Any) -> tuple[list[Any], list[dict[str, Any]], list[str]]:
    """(index labels, rows as dicts, column names) of a DataFrame, a Series or a list. A Series'
    or a list's items are `{value}` (and a named Series' also by its name)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        columns = [str(c) for c in data.columns]
        records = data.to_dict("records")
        return list(data.index), [{str(k): v for k, v in r.items()} for r in records], columns
    if pd is not None and isinstance(data, pd.Series):
        names = ["value"] + ([str(data.name)] if data.name is not None else [])
        return list(data.index), [{n: v for n in names} for v in data.tolist()], names
    if isinstance(data, (list, tuple)):
        return list(range(len(data))), [{"value": v} for v in data], ["value"]
    raise UsageError(
        f"hub.map needs a DataFrame, a Series or a list of rows, not {type(data).__name__}; "
        "pass e.g. df or df['text']."
    )


def render(template: str | Callable[[dict[str, Any]], str], rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Each row's prompt. Unknown `{fields}` in the template are refused before anything is sent."""
    if callable(template):
        prompts = []
        for i, row in enumerate(rows):
            prompt = template(row)
            if not isinstance(prompt, str) or not prompt.strip():
                raise UsageError(f"The template function gave row {i} an empty prompt or not a string; return the prompt text.")
            prompts.append(prompt)
        return prompts
    if not isinstance(template, str) or not template.strip():
        raise UsageError("The template is empty; write the prompt with {column} fields, e.g. 'Classify: {text}'.")
    fields = []
    try:
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None:
                fields.append(name)
    except ValueError as exc:
        raise UsageError(f"The template is not a valid format string ({exc}); double a literal brace: {{{{ or }}}}.") from None
    unknown = sorted({f.split(".")[0].split("[")[0] for f in fields} - set(columns))
    if "" in unknown or any(f.isdigit() for f in unknown):
        raise UsageError("The template has a positional field {}; name the column, e.g. {text}.")
    if unknown:
        raise UsageError(
            f"Unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in the template; "
            f"the data has: {', '.join(columns) or 'no columns'}."
        )
    return [template.format_map(row) for row in rows]


def schema_of(schema: Any) -> tuple[dict[str, Any] | None, Any]:
    """({"name", "schema"} to send, the pydantic model to validate with or None)."""
    if schema is None:
        return None, None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return {"name": _schema_name(schema.__name__), "schema": _strict(schema.model_json_schema())}, schema
    if isinstance(schema, dict):
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise UsageError(f"The schema is not a valid JSON schema: {exc.message}; fix it or pass a pydantic model.") from None
        return {"name": _schema_name(str(schema.get("title") or "result")), "schema": schema}, None
    raise UsageError(f"schema must be a pydantic model class or a JSON schema dict, not {type(schema).__name__}.")


def _schema_name(name: str) -> str:
    import re

    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "result")[:64]


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema as OpenAI's strict mode wants it: every object closed, every property required."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items()}
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(schema)


def request_key(connection: dict[str, Any], messages: list[dict[str, Any]], options: dict[str, Any], schema: dict | None) -> str:
    """What makes two requests identical: provider, endpoint, model, messages, options, schema."""
    data = connection.get("data") or {}
    endpoint = "builtin" if data.get("builtin") else (data.get("base_url") or data.get("host") or "")
    blob = json.dumps(
        [connection["provider"], endpoint, connection["modelId"], messages, options, schema],
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _label_json(label: Any) -> Any:
    try:
        json.dumps(label)
        return label
    except (TypeError, ValueError):
        item = getattr(label, "item", None)  # numpy scalars
        if callable(item):
            try:
                return _label_json(item())
            except Exception:
                pass
        return str(label)


# ---------------------------------------------------------------- planning a run


@dataclass
class Plan:
    """A run ready to go: nothing has been sent yet."""

    spec: _Spec
    items: list[_Item]  # every row of the batch, in order
    pending: list[_Item]  # the rows to send
    answered: dict[str, dict[str, Any]]  # key -> the completed answer Message already in the batch
    cached: dict[str, dict[str, Any]]  # key -> a completed answer from elsewhere in the store
    estimate_tokens: int
    estimate_cost: float | None
    resumed: bool

    def summary(self) -> str:
        cost = "unpriced" if self.estimate_cost is None else f"~${self.estimate_cost:.4f}"
        done = len(self.items) - len(self.pending)
        return (
            f"batch {self.spec.name!r}: {len(self.items)} rows, {len(self.pending)} to send"
            + (f" ({done} answered already or from the store)" if done else "")
            + f", ~{self.estimate_tokens} input tokens, {cost} input"
        )


def prepare(
    store: Store,
    connection: dict[str, Any],
    items_in: list[tuple[Any, str]] | None,
    *,
    name: str,
    options: dict[str, Any] | None,
    schema: Any,
    cache: bool,
    max_cost: float | None,
    thread: dict[str, Any] | None = None,
) -> Plan:
    """Check everything and plan the run: which rows to send, which are answered already, and
    the estimate. `items_in` None resumes the batch's stored prompts. Raises UsageError, one
    line, before anything is sent."""
    if (connection.get("type") or "CHAT").upper() != "CHAT":
        raise UsageError(
            f"Connection {connection['name']!r} is a {connection.get('type', '').lower()} model, not a chat model; "
            "pass a chat model connection with model=NAME."
        )
    send_schema, model_class = schema_of(schema)
    options = dict(options or {})
    spec = _Spec(name=name, connection=connection, options=options, schema=send_schema, model_class=model_class)
    if thread is None:
        thread = find_thread(store, name)
    stored: list[dict[str, Any]] = []
    answered: dict[str, dict[str, Any]] = {}
    if thread is not None:
        spec.thread_id = thread["id"]
        rows = store.query(
            'SELECT id, type, content, data FROM "Message" WHERE threadId = ? ORDER BY createdAt, id', (thread["id"],)
        )
        for row in rows:
            data = json.loads(row["data"]) if row["data"] else {}
            if row["type"] == "user":
                stored.append({"id": row["id"], "content": row["content"], **data})
            elif data.get("status") == "completed" and data.get("key"):
                answered[data["key"]] = {"id": row["id"], "content": row["content"], "data": data}
    if items_in is None:
        if not stored:
            raise UsageError(f"Batch {name!r} has no rows stored; run hub.map(template, data, name={name!r}) first.")
        items = [
            _Item(position=s.get("item", i), label=s.get("label", i), prompt=s["content"], key=s["key"], message_id=s["id"])
            for i, s in enumerate(stored) if s.get("key")
        ]
    else:
        if not items_in:
            raise UsageError("The data is empty: there are no rows to send; pass a DataFrame with rows.")
        by_key = {s.get("key"): s["id"] for s in stored}
        items = []
        for position, (label, prompt) in enumerate(items_in):
            key = request_key(connection, [{"role": "user", "content": prompt}], options, send_schema)
            items.append(_Item(position, _label_json(label), prompt, key, by_key.get(key)))
    todo = [item for item in items if item.key not in answered]
    cached: dict[str, dict[str, Any]] = {}
    if cache and todo:
        cached = _cached_answers(store, {item.key for item in todo}, exclude_thread=spec.thread_id)
    pending = [item for item in todo if item.key not in cached]
    model = connection["modelId"]
    extra = json.dumps(send_schema["schema"]) if send_schema else ""
    tokens = sum(estimate_tokens(item.prompt + extra, model) for item in pending)
    price = price_for(store, connection["provider"], model)
    cost = None if price is None else tokens * price[0] / 1_000_000
    if max_cost is not None and pending:
        if cost is None:
            raise UsageError(
                f"Model {model!r} has no price, so max_cost=${max_cost:g} cannot be checked; set one with "
                f"hub.set_price({model!r}, IN, OUT) or leave max_cost out."
            )
        if cost > max_cost:
            raise UsageError(
                f"Batch {name!r} would cost about ${cost:.4f} for its input alone ({tokens} tokens over {len(pending)} rows), "
                f"over max_cost=${max_cost:g}; raise max_cost or send fewer rows."
            )
    return Plan(spec, items, pending, answered, cached, tokens, cost, resumed=thread is not None)


def find_thread(store: Store, name: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT id FROM \"MessageThread\" WHERE json_extract(\"references\", '$.batch') = ? ORDER BY createdAt DESC LIMIT 1",
        (name,),
    )
    return store.get("MessageThread", rows[0]["id"]) if rows else None


def resume_spec(store: Store, job_or_name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, thread, its stored spec) of a batch, from its name or the id of one of its jobs."""
    job = store.first("Jobs", id=job_or_name)
    if job is not None and job["type"] == "batch":
        thread = store.first("MessageThread", id=(job["references"] or {}).get("thread", ""))
    else:
        thread = find_thread(store, job_or_name)
    if thread is None:
        raise NotFoundError(f"No batch named or run as {job_or_name!r}; hub.batches() lists them.")
    refs = thread["references"] or {}
    return refs["batch"], thread, refs


def _cached_answers(store: Store, keys: set[str], *, exclude_thread: str | None) -> dict[str, dict[str, Any]]:
    """Completed answers to any of these request keys, from other batches."""
    out: dict[str, dict[str, Any]] = {}
    keys = set(keys)
    chunk = list(keys)
    for start in range(0, len(chunk), 500):
        part = chunk[start:start + 500]
        marks = ",".join("?" * len(part))
        rows = store.query(
            f"SELECT id, threadId, content, data FROM \"Message\" WHERE type = 'chatModel' AND data IS NOT NULL "
            f"AND json_extract(data, '$.status') = 'completed' AND json_extract(data, '$.key') IN ({marks})",
            tuple(part),
        )
        for row in rows:
            if row["threadId"] == exclude_thread:
                continue
            data = json.loads(row["data"])
            out.setdefault(data["key"], {"id": row["id"], "content": row["content"], "data": data})
    return out


# ---------------------------------------------------------------- the limiter


class _Stopped(Exception):
    pass


class AdaptiveLimiter:
    """At most `limit` requests in flight; a 429 halves that and pauses every request for the
    server's Retry-After; each run of successes as long as the current allowance raises it by one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.allowed = limit
        self.active = 0
        self.paused_until = 0.0
        self._streak = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> None:
        with self._cond:
            while True:
                if stop.is_set():
                    raise _Stopped
                now = time.monotonic()
                if now < self.paused_until:
                    self._cond.wait(min(0.1, self.paused_until - now))
                elif self.active >= self.allowed:
                    self._cond.wait(0.1)
                else:
                    self.active += 1
                    return

    def release(self, ok: bool) -> None:
        with self._cond:
            self.active -= 1
            if ok:
                self._streak += 1
                if self._streak >= self.allowed and self.allowed < self.limit:
                    self.allowed += 1
                    self._streak = 0
            self._cond.notify_all()

    def slow_down(self, retry_after: float | None) -> float:
        """A 429 arrived: fewer requests at once, and all wait. Returns the pause in seconds."""
        wait_s = min(max(float(retry_after), MIN_BACKOFF), MAX_BACKOFF) if retry_after is not None else 1.0
        with self._cond:
            self.allowed = max(1, self.allowed // 2)
            self._streak = 0
            self.paused_until = max(self.paused_until, time.monotonic() + wait_s)
            self._cond.notify_all()
        return wait_s


# ---------------------------------------------------------------- a run


class BatchRun:
    """One run of a batch: its job, its progress, and (once finished) its result.

    `result()` waits and gives a Series (or, with a schema, a DataFrame with one column per
    property and an `error` column), in the order of the rows; a failed row holds an ItemError.
    `stop()` asks a run to stop (as Ctrl-C does in the foreground)."""

    def __init__(self, runtime: Any, plan: Plan, *, concurrency: int, progress: Any = None) -> None:
        self.runtime = runtime
        self.plan = plan
        self.name = plan.spec.name
        self.concurrency = concurrency
        self.tally = _Tally(
            total=len(plan.items), cached=sum(1 for i in plan.items if i.key in plan.cached and i.key not in plan.answered),
            skipped=sum(1 for i in plan.items if i.key in plan.answered),
        )
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._results: dict[str, tuple[str, str, Any]] = {}  # key -> (status, text, value or error)
        self._error: BaseException | None = None
        self._progress = progress
        self.limiter = AdaptiveLimiter(concurrency)
        self._setup()

    # -- what it is

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def status(self) -> str:
        return self.runtime.store.get("Jobs", self.job.id)["status"]

    @property
    def progress(self) -> dict[str, Any]:
        return self.tally.as_dict()

    def done(self) -> bool:
        return self._finished.is_set()

    def stop(self) -> None:
        self._stop.set()

    def __repr__(self) -> str:
        p = self.progress
        return f"<BatchRun {self.name!r} job={self.job.id} {p['done']}/{p['total']} done, {p['failed']} failed>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        line = progress_line(self.name, self.progress, finished=self.done())
        return {"text/plain": line, "text/html": f"<pre>{html.escape(line)}</pre>"}

    # -- setting up (in the caller's thread: bad input fails before anything is sent)

    def _setup(self) -> None:
        store = self.runtime.store
        spec = self.plan.spec
        if spec.thread_id is None:
            thread = store.create(
                "MessageThread",
                references={"batch": spec.name, "connection": spec.connection["id"]},
            )
            spec.thread_id = thread["id"]
        store.set(
            "MessageThread", spec.thread_id,
            references={
                "batch": spec.name, "connection": spec.connection["id"],
                "options": spec.options, "schema": spec.schema,
            },
        )
        self.job = JobRun(
            store, f"batch: {spec.name}", "batch",
            references={"thread": spec.thread_id, "batch": spec.name, "connection": spec.connection["id"]},
        )
        self.job.start(lock=spec.thread_id, label=f"Batch {spec.name!r}")
        try:
            new = [item for item in self.plan.items if item.message_id is None]
            if new:
                rows = [
                    {
                        "id": None, "threadId": spec.thread_id, "type": "user", "sourceId": "user", "content": item.prompt,
                        "data": {"item": item.position, "label": item.label, "key": item.key},
                    }
                    for item in new
                ]
                from .store import uuid7

                for item, row in zip(new, rows):
                    row["id"] = item.message_id = uuid7()
                store.create_many("Message", rows)
            self._serve_cached()
            self.job.log(self.plan.summary())
            self._save_progress()
        except BaseException as exc:
            self._end(exc)
            raise

    def _serve_cached(self) -> None:
        spec = self.plan.spec
        rows = []
        for item in self.plan.items:
            hit = self.plan.cached.get(item.key)
            if hit is None or item.key in self.plan.answered or item.key in self._results:
                continue
            status, value = self._parse(hit["content"])
            self._results[item.key] = (status, hit["content"], value)
            rows.append({
                "threadId": spec.thread_id, "type": "chatModel", "sourceId": spec.connection["id"], "content": hit["content"],
                "data": {"item": item.position, "key": item.key, "status": "completed", "cached_from": hit["id"]},
                "references": {"user": item.message_id},
            })
        if rows:
            self.runtime.store.create_many("Message", rows)
            self.job.log(f"{len(rows)} rows served from the store (identical requests answered before)")

    # -- running

    def run(self) -> None:
        """Send the pending rows; returns when all are answered, or stopped (Ctrl-C included)."""
        error: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"aihub-batch-{self.name}"[:40])
        try:
            futures = [pool.submit(self._item, item) for item in self.plan.pending]
            last = 0.0
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.1)
                for f in finished:
                    exc = f.exception()
                    if exc is not None and not isinstance(exc, _Stopped):
                        self._stop.set()
                        error = error or exc
                now = time.monotonic()
                if now - last >= _PROGRESS_EVERY_S:
                    last = now
                    self._show()
                    self._save_progress()
        except BaseException as exc:  # Ctrl-C in the foreground
            error = exc
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            pool.shutdown(wait=True)
        self._end(error)
        if error is not None and not isinstance(error, KeyboardInterrupt):
            raise error

    def _end(self, error: BaseException | None) -> None:
        self._error = error
        self._save_progress()
        self._show(final=True)
        store = self.runtime.store
        p = self.progress
        self.job.log(
            f"{p['done']} done, {p['failed']} failed, {p['cached']} from the store, {p['skipped']} answered before; "
            f"{p['tokens']} tokens, ${p['cost_usd']:.6f}, {p['elapsed_s']} s"
        )
        if error is None and self._stop.is_set():
            error = KeyboardInterrupt()
        self.job.finish(error)
        release_thread(store, self.plan.spec.thread_id, self.job.id)
        self._finished.set()

    def _save_progress(self) -> None:
        self.runtime.store.set("Jobs", self.job.id, progress=self.progress)

    def _show(self, final: bool = False) -> None:
        if self._progress is not None:
            try:
                self._progress.update(self.progress, final=final)
            except Exception:
                pass

    def _item(self, item: _Item) -> None:
        spec = self.plan.spec
        runtime = self.runtime
        store = runtime.store
        conn = spec.connection
        if self._stop.is_set():
            raise _Stopped
        provider = runtime.providers.get(conn)
        messages = [{"role": "user", "content": item.prompt}]
        self.limiter.acquire(self._stop)
        held, ok = True, False
        stream_row = store.create(
            "ResponseStream", sourceId=conn["id"], status="streaming",
            references={"job": self.job.id, "thread": spec.thread_id, "message": item.message_id or ""},
        )
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        usage = None
        finish = None
        status, error = "streaming", None
        failures = 0
        limited = 0
        with runtime.recorder.call(stream_row["id"], job=self.job.id) as call:
            try:
                while True:
                    parts.clear()
                    try:
                        events = provider.chat(
                            conn["modelId"], messages, stream=True, options=spec.options or None, schema=spec.schema
                        )
                        try:
                            for event in events:
                                if self._stop.is_set():
                                    raise KeyboardInterrupt
                                if event.text:
                                    if first is None:
                                        first = time.perf_counter()
                                    parts.append(event.text)
                                if event.usage is not None:
                                    usage = event.usage
                                if event.finish_reason:
                                    finish = event.finish_reason
                        finally:
                            close = getattr(events, "close", None)
                            if close:
                                close()
                        status = "completed"
                        break
                    except ProviderError as exc:
                        if exc.status_code == 429 and limited < MAX_RATE_LIMITED and first is None:
                            limited += 1
                            with self.tally.lock:
                                self.tally.rate_limited += 1
                            held = False
                            self.limiter.release(False)
                            pause = self.limiter.slow_down(exc.retry_after)
                            self.job.log(f"row {item.position}: rate limited; all requests pause {pause:.2f}s, at most {self.limiter.allowed} at once")
                            self.limiter.acquire(self._stop)
                            held = True
                            continue
                        if exc.retryable and exc.status_code != 429 and failures < MAX_RETRIES and first is None:
                            failures += 1
                            if self._sleep(min(max(exc.retry_after or 0.5 * 2**failures, MIN_BACKOFF), MAX_BACKOFF)):
                                raise KeyboardInterrupt from None
                            continue
                        raise
                ok = True
            except _Stopped:
                status, error = "interrupted", "stopped before it was answered"
            except KeyboardInterrupt:
                status, error = "interrupted", "interrupted by the user"
            except ProviderError as exc:
                status, error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - a row's failure is the row's, not the run's
                status, error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                if held:
                    self.limiter.release(ok)
                ended = time.perf_counter()
                text = redact("".join(parts))
                self._record(item, call, status, error, text, usage, finish, started, first, ended)

    def _sleep(self, seconds: float) -> bool:
        """Wait, unless stopped; True when stopped."""
        return self._stop.wait(seconds)

    def _parse(self, text: str) -> tuple[str, Any]:
        return parse_answer(self.plan.spec, text)

    def _record(
        self, item: _Item, call: CallHandle, status: str, error: str | None, text: str, usage: Any, finish: str | None,
        started: float, first: float | None, ended: float,
    ) -> None:
        runtime = self.runtime
        store = runtime.store
        spec = self.plan.spec
        conn = spec.connection
        stream_id = call.stream_id
        value: Any = ItemError(error or status)
        if status == "completed":
            status, value = self._parse(text)
            if status == "invalid":
                error = str(value)
        message = {"type": "chatModel", "role": "assistant", "sourceId": conn["id"], "content": text}
        call.close(status="completed" if status == "invalid" else status, result_messages=[message])
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        values: dict[str, float] = {"latency_ms": round((ended - started) * 1000, 3)}
        if first is not None:
            values["ttft_ms"] = round((first - started) * 1000, 3)
        if prompt is not None:
            values["prompt_tokens"] = prompt
        if completion is not None:
            values["completion_tokens"] = completion
        if status in ("completed", "invalid") and prompt is None and completion is None:
            values["usage_missing"] = 1.0
            values["prompt_tokens_est"] = estimate_tokens(item.prompt, conn["modelId"])
            values["completion_tokens_est"] = estimate_tokens(text, conn["modelId"])
        cost = None
        if status in ("completed", "invalid"):
            price = self._price()
            if price is not None:
                cost = ((prompt or 0) * price[0] + (completion or 0) * price[1]) / 1_000_000
                values["cost_usd"] = cost
        if status != "completed":
            values["error"] = 1.0
        dims = {
            "provider": conn["provider"], "model": conn["modelId"], "connection": conn["name"], "batch": spec.name,
            "status": status,
        }
        if finish:
            dims["finish_reason"] = finish
        data: dict[str, Any] = {"item": item.position, "key": item.key, "status": status}
        if finish:
            data["finish_reason"] = finish
        if error:
            data["error"] = redact(error)
        with store.transaction():
            store.create(
                "Message", threadId=spec.thread_id, type="chatModel", sourceId=conn["id"], content=text, data=data,
                references={"stream": stream_id, "user": item.message_id or ""},
            )
            runtime.metrics.record(values, dims, references={"stream": stream_id, "job": self.job.id})
        with self.tally.lock:
            self._results[item.key] = (status, text, value)
            if status == "completed":
                self.tally.done += 1
            else:
                self.tally.failed += 1
            self.tally.prompt_tokens += int(prompt or values.get("prompt_tokens_est", 0))
            self.tally.completion_tokens += int(completion or values.get("completion_tokens_est", 0))
            self.tally.cost_usd += cost or 0.0

    _PRICE: Any = ...

    def _price(self) -> tuple[float, float] | None:
        if self._PRICE is ...:
            conn = self.plan.spec.connection
            self._PRICE = price_for(self.runtime.store, conn["provider"], conn["modelId"])
        return self._PRICE

    # -- the result

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The answers, in row order (waits for a background run)."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"Batch {self.name!r} is still running; wait longer or look at .progress.")
        return collect(self.runtime.store, self.plan, self._results)


def parse_answer(spec: _Spec, text: str) -> tuple[str, Any]:
    """(status, value) of a completed answer: the text, or with a schema the validated object."""
    if spec.schema is None:
        return "completed", text
    try:
        value = json.loads(text)
    except ValueError as exc:
        return "invalid", ItemError(f"the reply is not JSON ({exc.msg}): {text[:80]!r}")
    if spec.model_class is not None:
        import pydantic

        try:
            return "completed", spec.model_class.model_validate(value).model_dump(mode="json")
        except pydantic.ValidationError as exc:
            return "invalid", ItemError(f"the reply does not meet the schema: {_first_error(exc)}")
    import jsonschema

    try:
        jsonschema.validate(value, spec.schema["schema"])
    except jsonschema.ValidationError as exc:
        return "invalid", ItemError(f"the reply does not meet the schema: {exc.message}")
    return "completed", value



def _first_error(exc: Any) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc).splitlines()[0]
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "the reply"
    return f"{where}: {e.get('msg', 'invalid')}"


def collect(store: Store, plan: Plan, results: dict[str, tuple[str, str, Any]]) -> Any:
    """The batch's answers as a Series (or a DataFrame for a schema), rows in order; what this
    run did not answer comes from the store (earlier runs, the cache)."""
    import pandas as pd

    spec = plan.spec
    values: list[Any] = []
    for item in plan.items:
        got = results.get(item.key)
        if got is None:
            earlier = plan.answered.get(item.key) or plan.cached.get(item.key)
            if earlier is not None:
                status, value = parse_answer(spec, earlier["content"])
                got = (status, earlier["content"], value)
            else:
                got = ("interrupted", "", ItemError("not answered: the run stopped first; resume it with hub.resume"))
        values.append(got[2])
    index = pd.Index([item.label for item in plan.items])
    if spec.schema is None:
        out = pd.Series(values, index=index, name=spec.name, dtype=object)
    else:
        props = list((spec.schema["schema"].get("properties") or {}).keys())
        records = []
        for value in values:
            if isinstance(value, ItemError):
                records.append({**{p: None for p in props}, "error": value})
            elif isinstance(value, dict) and props:
                records.append({**{p: value.get(p) for p in props}, "error": None})
            else:
                records.append({"value": value, "error": None})
        out = pd.DataFrame.from_records(records, index=index)
    out.attrs["batch"] = spec.name
    return out


# ---------------------------------------------------------------- progress display


def progress_line(name: str, p: dict[str, Any], *, finished: bool = False) -> str:
    total = p["total"]
    finished_n = p["done"] + p["failed"] + p["cached"] + p["skipped"]
    eta = p.get("eta_s")
    bits = [
        f"batch {name}: {finished_n}/{total}",
        f"{p['done']} done", f"{p['failed']} failed",
    ]
    if p["cached"] or p["skipped"]:
        bits.append(f"{p['cached'] + p['skipped']} from the store")
    bits.append(f"{p['rate_per_s']:.1f}/s")
    if not finished and eta:
        bits.append(f"ETA {eta:.0f}s")
    bits.append(f"{p['tokens']} tokens")
    bits.append(f"${p['cost_usd']:.4f}")
    if p.get("rate_limited"):
        bits.append(f"{p['rate_limited']}×429")
    return " · ".join(bits)


class TextProgress:
    """Progress on a text stream (stderr), one line redrawn, at most twice a second."""

    def __init__(self, name: str, stream: Any = None) -> None:
        import sys

        self.name = name
        self.stream = stream or sys.stderr
        self._last = ""

    def update(self, p: dict[str, Any], *, final: bool = False) -> None:
        line = progress_line(self.name, p, finished=final)
        if line == self._last and not final:
            return
        self._last = line
        self.stream.write("\r" + line + ("\n" if final else ""))
        self.stream.flush()


class WidgetProgress:
    """Progress as an ipywidgets HBox (IntProgress and an HTML line), updated by value from any thread."""

    def __init__(self, name: str, total: int) -> None:
        import ipywidgets as widgets

        self.name = name
        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="")
        self.label = widgets.HTML(value="")
        self.box = widgets.HBox([self.bar, self.label])

    def update(self, p: dict[str, Any], *, final: bool = False) -> None:
        import html

        self.bar.value = min(p["done"] + p["failed"] + p["cached"] + p["skipped"], self.bar.max)
        if final:
            self.bar.bar_style = "success" if not p["failed"] else "warning"
        self.label.value = f"<code>{html.escape(progress_line(self.name, p, finished=final))}</code>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a progress widget shows there), False in a script or a terminal."""
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def items_of(template: Any, data: Any) -> list[tuple[Any, str]]:
    labels, rows, columns = rows_of(data)
    if not rows:
        raise UsageError("The data is empty: there are no rows to send; pass a DataFrame with rows.")
    return list(zip(labels, render(template, rows, columns)))


def default_name() -> str:
    return "batch-" + now_iso().replace(":", "").replace("-", "").replace(".", "")[:15]
