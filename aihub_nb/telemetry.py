"""OpenTelemetry export: model calls, tool calls, agent runs and embeddings as GenAI spans and metrics.

    >>> otel = Telemetry(endpoint="http://127.0.0.1:4318")   # or the OTEL_EXPORTER_OTLP_* variables
    >>> otel.model_call(conn, result, values, dims, conversation=thread_id)    # one `chat {model}` span
    >>> otel.status()            # {"endpoint": ..., "queued": 0, "exported": 1, "dropped": 0, "failed": 0}

The hub feeds it at explicit points, after the fact, with the real start and end times: a chat
turn's model call (`chat {model}`, CLIENT), each tool call of an agent (`execute_tool {tool}`), the
agent's rounds around them (`invoke_agent {agent}`, their parent), an embeddings request
(`embeddings {model}`). Attributes follow the OpenTelemetry GenAI semantic conventions
(`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.*`, `gen_ai.response.*`,
`gen_ai.usage.*`, `gen_ai.conversation.id`, `server.address`, `error.type`); the older
`gen_ai.system` is sent too unless OTEL_SEMCONV_STABILITY_OPT_IN names gen_ai_latest_experimental.
Cost, which the conventions do not name yet, is `aihub.cost.usd` with `aihub.cost.source`.

Message content (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
tool arguments and results) is sent only when content capture is on
(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true or `capture_content=True`). Every string
goes through aihub_nb.redact first: no key, no `${VAR}` value, no Authorization header leaves.

Spans go to the SDK's BatchSpanProcessor: ending one appends to a bounded queue and returns; a
background thread sends batches over OTLP/HTTP. A collector that is down costs a turn nothing:
spans wait in the queue, and what does not fit, or fails to send, is counted (`status()`).
Metrics (`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`,
`gen_ai.client.operation.time_to_first_chunk`) go through the SDK's MeterProvider with the
conventions' bucket advice. The SDK is imported only when a Telemetry is made (the `otel` extra).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import UsageError
from .redact import redact, redact_data

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "CONTENT_ENV",
    "COST_ATTRIBUTE",
    "Telemetry",
    "backfill",
    "capture_content_from_env",
    "endpoint_from_env",
]

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
COST_ATTRIBUTE = "aihub.cost.usd"
COST_SOURCE_ATTRIBUTE = "aihub.cost.source"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_DEFAULT_ENDPOINT = "http://localhost:4318"
# The conventions' bucket advice (gen-ai-metrics.md).
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16, ... 67108864
TTFC_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
# The hub's provider -> gen_ai.provider.name
_PROVIDERS = {"OPENAI": "openai", "OLLAMA": "ollama"}
# Turn options -> gen_ai.request.* attributes
_OPTIONS = {
    "temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p", "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed", "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens", "num_predict": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty", "presence_penalty": "gen_ai.request.presence_penalty",
    "stop": "gen_ai.request.stop_sequences", "n": "gen_ai.request.choice.count",
}


def endpoint_from_env() -> str | None:
    """The OTLP endpoint the standard environment variables name, or None."""
    for name in _ENDPOINT_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def capture_content_from_env() -> bool:
    return os.environ.get(CONTENT_ENV, "").strip().lower() in ("true", "1", "yes")


def _latest_only() -> bool:
    opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return "gen_ai_latest_experimental" in [part.strip() for part in opt_in.split(",")]


def wall_ns(perf: float) -> int:
    """A time.perf_counter() reading of the recent past as Unix nanoseconds."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)


def parse_headers(text: str) -> dict[str, str]:
    """OTLP's header format, `k1=v1,k2=v2` (values may be URL-encoded)."""
    from urllib.parse import unquote

    out = {}
    for pair in (text or "").split(","):
        if "=" in pair:
            key, _, value = pair.partition("=")
            out[key.strip()] = unquote(value.strip())
    return out


def _traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _metrics_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    if base.endswith("/v1/traces"):
        base = base[: -len("/v1/traces")]
    return base if base.endswith("/v1/metrics") else base + "/v1/metrics"


class Telemetry:
    """One exporter of spans and metrics. Without `span_exporter` / `metric_reader` it sends
    OTLP/HTTP to `endpoint` (else the OTEL_EXPORTER_OTLP_* variables, else localhost:4318) with
    `headers`; tests pass the SDK's InMemorySpanExporter and InMemoryMetricReader."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        headers: dict[str, str] | None = None,
        service_name: str | None = None,
        capture_content: bool | None = None,
        span_exporter: Any = None,
        metric_reader: Any = None,
        max_queue_size: int = 2048,
        schedule_delay_ms: int = 500,
        export_timeout: float = 10.0,
        metric_interval_ms: int = 60_000,
    ) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise UsageError(
                "OpenTelemetry export needs the SDK: pip install 'aihub_nb[otel]' (opentelemetry-sdk and "
                "opentelemetry-exporter-otlp-proto-http)."
            ) from None
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        self.capture_content = capture_content_from_env() if capture_content is None else bool(capture_content)
        self.latest_only = _latest_only()
        self.endpoint = endpoint or endpoint_from_env() or _DEFAULT_ENDPOINT
        self.exported = self.failed = self.dropped = 0
        self._closed = False
        self._lock = threading.Lock()
        resource = Resource.create({"service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "aihub_nb"})
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(
                endpoint=_traces_url(self.endpoint) if endpoint else None, headers=headers, timeout=export_timeout
            )
            self.endpoint = getattr(span_exporter, "_endpoint", self.endpoint)
        telemetry = self

        class _Counting(SpanExporter):  # counts what was sent and what failed to send
            def export(self, spans):
                try:
                    result = span_exporter.export(spans)
                except Exception:
                    result = SpanExportResult.FAILURE
                with telemetry._lock:
                    if result == SpanExportResult.SUCCESS:
                        telemetry.exported += len(spans)
                    else:
                        telemetry.failed += len(spans)
                return result

            def shutdown(self):
                span_exporter.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return span_exporter.force_flush(timeout_millis)

        self._processor = BatchSpanProcessor(
            _Counting(), max_queue_size=max_queue_size, schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=min(512, max_queue_size),
        )
        self._queue = getattr(getattr(self._processor, "_batch_processor", None), "_queue", None)
        self._max_queue = max_queue_size
        self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._tracer_provider.add_span_processor(self._processor)
        self.tracer = self._tracer_provider.get_tracer("aihub_nb")
        if metric_reader is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_metrics_url(endpoint) if endpoint else None, headers=headers, timeout=export_timeout),
                export_interval_millis=metric_interval_ms,
            )
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader], shutdown_on_exit=False)
        meter = self._meter_provider.get_meter("aihub_nb")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        atexit.register(self.shutdown, 2.0)
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk in a streaming response.",
            explicit_bucket_boundaries_advisory=TTFC_BUCKETS,
        )

    # ------------------------------------------------------------ status

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def status(self) -> dict[str, Any]:
        """Where spans go and how many are waiting, were sent, dropped (queue full) and failed to send."""
        with self._lock:
            return {
                "endpoint": redact(self.endpoint), "queued": self.queued, "exported": self.exported,
                "dropped": self.dropped, "failed": self.failed, "content": self.capture_content,
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what waits now (at most `timeout` seconds); True when all went out."""
        done = self._tracer_provider.force_flush(int(timeout * 1000))
        self._meter_provider.force_flush(int(timeout * 1000))
        return done

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the background threads; what waits is sent first if the collector answers within
        `timeout` seconds (a collector that is down never holds up closing the hub for longer)."""
        if self._closed:
            return
        self._closed = True
        batch = getattr(self._processor, "_batch_processor", None)
        if batch is not None:
            batch.shutdown(timeout_millis=int(timeout * 1000))
        self._tracer_provider.shutdown()
        try:
            self._meter_provider.shutdown(timeout_millis=timeout * 1000)
        except Exception:
            pass

    # ------------------------------------------------------------ spans

    def _start(self, name: str, kind: str, start_ns: int, parent: Any = None) -> Any:
        from opentelemetry import trace

        context = trace.set_span_in_context(parent.span) if parent is not None else None
        kinds = {"client": trace.SpanKind.CLIENT, "internal": trace.SpanKind.INTERNAL}
        return self.tracer.start_span(name, context=context, kind=kinds[kind], start_time=start_ns)

    def _end(self, span: Any, end_ns: int, error_type: str | None = None, message: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if error_type:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, redact(message or error_type)))
        full = self._queue is not None and len(self._queue) >= self._max_queue
        span.end(end_time=end_ns)
        if full:
            with self._lock:
                self.dropped += 1

    def _set(self, span: Any, attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            if value is None or value == [] or value == "":
                continue
            if isinstance(value, str):
                value = redact(value)
            elif isinstance(value, (list, tuple)):
                value = [redact(v) if isinstance(v, str) else v for v in value]
            span.set_attribute(key, value)

    def _provider_attrs(self, provider: str) -> dict[str, Any]:
        name = _PROVIDERS.get(provider, (provider or "").lower())
        attrs = {"gen_ai.provider.name": name}
        if not self.latest_only:
            attrs["gen_ai.system"] = name
        return attrs

    def model_call(
        self, conn: dict[str, Any], result: Any, values: dict[str, float], dims: dict[str, Any], *,
        conversation: str | None = None, parent: Any = None, start_ns: int | None = None, end_ns: int | None = None,
    ) -> None:
        """One `chat {model}` span and its metrics, from a finished model call: the connection row,
        the call's result (started/ended perf times, usage, finish reason, response id and model,
        options, sent messages and reply when content is captured), the metric values and dimensions
        the turn recorded."""
        try:
            self._model_call(conn, result, values, dims, conversation, parent, start_ns, end_ns)
        except Exception:  # export never fails a turn
            with self._lock:
                self.failed += 1

    def _model_call(self, conn, result, values, dims, conversation, parent, start_ns, end_ns) -> None:
        model = conn.get("modelId") or dims.get("model") or ""
        if start_ns is None:
            start_ns, end_ns = wall_ns(result.started), wall_ns(result.ended)
        usage = getattr(result, "usage", None)
        status = getattr(result, "status", dims.get("status"))
        error = getattr(result, "error", None)
        error_type = _error_type(error, status)
        common = {"gen_ai.operation.name": "chat", **self._provider_attrs(conn.get("provider", "")), "gen_ai.request.model": model}
        server = _server(conn)
        common.update(server)
        if getattr(result, "response_model", None):
            common["gen_ai.response.model"] = result.response_model
        span = self._start(f"chat {model}", "client", start_ns, parent)
        attrs: dict[str, Any] = dict(common)
        for key, value in (getattr(result, "options", None) or {}).items():
            if key in _OPTIONS and isinstance(value, (int, float, str, list)) and not isinstance(value, bool):
                attrs[_OPTIONS[key]] = [value] if key == "stop" and isinstance(value, str) else value
        attrs["gen_ai.request.stream"] = bool(getattr(result, "streamed", True))
        attrs["gen_ai.conversation.id"] = conversation
        attrs["gen_ai.response.id"] = getattr(result, "response_id", None)
        finish = getattr(result, "finish_reason", None) or dims.get("finish_reason")
        if finish:
            attrs["gen_ai.response.finish_reasons"] = [finish]
        inp = getattr(usage, "prompt_tokens", None) if usage is not None else values.get("prompt_tokens")
        out = getattr(usage, "completion_tokens", None) if usage is not None else values.get("completion_tokens")
        attrs["gen_ai.usage.input_tokens"] = None if inp is None else int(inp)
        attrs["gen_ai.usage.output_tokens"] = None if out is None else int(out)
        attrs["gen_ai.usage.cache_read.input_tokens"] = getattr(usage, "cached_tokens", None)
        attrs["gen_ai.usage.reasoning.output_tokens"] = getattr(usage, "reasoning_tokens", None)
        ttft = values.get("ttft_ms")
        if ttft is not None and attrs["gen_ai.request.stream"]:
            attrs["gen_ai.response.time_to_first_chunk"] = ttft / 1000
        if "cost_usd" in values:
            attrs[COST_ATTRIBUTE] = float(values["cost_usd"])
            attrs[COST_SOURCE_ATTRIBUTE] = dims.get("price_source")
        attrs["aihub.chat"] = dims.get("chat")
        attrs["aihub.connection"] = dims.get("connection")
        if self.capture_content:
            sent = getattr(result, "sent", None) or []
            system = [m for m in sent if m.get("role") == "system"]
            if system:
                attrs["gen_ai.system_instructions"] = _json([{"type": "text", "content": m.get("content") or ""} for m in system])
            attrs["gen_ai.input.messages"] = _json(_input_messages(m for m in sent if m.get("role") != "system"))
            attrs["gen_ai.output.messages"] = _json([_output_message(result, finish)])
        self._set(span, attrs)
        self._end(span, end_ns, error_type, str(error) if error else None)
        metric_attrs = {k: redact(v) if isinstance(v, str) else v for k, v in common.items()}
        if error_type:
            metric_attrs["error.type"] = error_type
        self.duration.record((end_ns - start_ns) / 1e9, metric_attrs)
        for kind, count in (("input", inp), ("output", out)):
            if count is not None:
                self.tokens.record(int(count), {**metric_attrs, "gen_ai.token.type": kind})
        if ttft is not None and attrs["gen_ai.request.stream"]:
            self.ttfc.record(ttft / 1000, metric_attrs)

    def start_agent(
        self, name: str, agent_id: str, conn: dict[str, Any], *, conversation: str | None = None, start_ns: int | None = None
    ) -> AgentSpan:
        """The `invoke_agent {name}` span, open until `.end(status, error)`; the chat and tool spans
        of its rounds are its children."""
        span = self._start(f"invoke_agent {name}", "internal", start_ns or time.time_ns())
        attrs = {
            "gen_ai.operation.name": "invoke_agent", **self._provider_attrs(conn.get("provider", "")),
            "gen_ai.agent.name": name, "gen_ai.agent.id": agent_id, "gen_ai.request.model": conn.get("modelId"),
            "gen_ai.conversation.id": conversation,
        }
        self._set(span, attrs)
        return AgentSpan(self, span)

    def tool_call(
        self, name: str, call_id: str | None, arguments: Any, outcome: Any, start_ns: int, *,
        parent: Any = None, end_ns: int | None = None,
    ) -> None:
        """One `execute_tool {name}` span: the tool's outcome (status, content) after its run."""
        try:
            status = getattr(outcome, "status", "completed")
            span = self._start(f"execute_tool {name}", "internal", start_ns, parent)
            attrs = {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.type": "function", "aihub.tool.status": status,
            }
            if self.capture_content:
                attrs["gen_ai.tool.call.arguments"] = arguments if isinstance(arguments, str) else _json(arguments)
                content = getattr(outcome, "content", None)
                attrs["gen_ai.tool.call.result"] = content if isinstance(content, str) else _json(content)
            self._set(span, attrs)
            error_type = {"failed": "tool_error", "denied": "denied"}.get(status)
            self._end(span, end_ns or time.time_ns(), error_type, getattr(outcome, "content", None) if error_type else None)
            self.duration.record(
                ((end_ns or time.time_ns()) - start_ns) / 1e9,
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": redact(name),
                 **({"error.type": error_type} if error_type else {})},
            )
        except Exception:
            with self._lock:
                self.failed += 1

    def embeddings(
        self, *, provider: str, model: str, start_ns: int, end_ns: int, input_tokens: int | None = None,
        dimension_count: int | None = None, inputs: int | None = None, base_url: str | None = None,
        error: BaseException | str | None = None, parent: Any = None,
    ) -> None:
        """One `embeddings {model}` CLIENT span and its metrics, for a finished embeddings request."""
        try:
            error_type = _error_type(error, "failed" if error else "completed")
            common = {"gen_ai.operation.name": "embeddings", **self._provider_attrs(provider), "gen_ai.request.model": model}
            common.update(_server({"data": {"base_url": base_url}}))
            span = self._start(f"embeddings {model}", "client", start_ns, parent)
            self._set(span, {
                **common, "gen_ai.usage.input_tokens": input_tokens, "gen_ai.embeddings.dimension.count": dimension_count,
                "aihub.embeddings.inputs": inputs,
            })
            self._end(span, end_ns, error_type, str(error) if error else None)
            metric_attrs = dict(common, **({"error.type": error_type} if error_type else {}))
            self.duration.record((end_ns - start_ns) / 1e9, metric_attrs)
            if input_tokens is not None:
                self.tokens.record(int(input_tokens), {**metric_attrs, "gen_ai.token.type": "input"})
        except Exception:
            with self._lock:
                self.failed += 1


class AgentSpan:
    """An open `invoke_agent` span: tool calls become its children; `end` closes it."""

    def __init__(self, telemetry: Telemetry, span: Any) -> None:
        self.telemetry = telemetry
        self.span = span

    def tool(self, name: str, call_id: str | None, arguments: Any, outcome: Any, start_ns: int, end_ns: int | None = None) -> None:
        self.telemetry.tool_call(name, call_id, arguments, outcome, start_ns, parent=self, end_ns=end_ns)

    def end(self, status: str = "completed", error: str | None = None, end_ns: int | None = None) -> None:
        try:
            error_type = None if status == "completed" else ("interrupted" if status == "interrupted" else "error")
            self.telemetry._end(self.span, end_ns or time.time_ns(), error_type, error)
        except Exception:
            pass


# ---------------------------------------------------------------- helpers


def _error_type(error: Any, status: str | None) -> str | None:
    if status in (None, "completed") and not error:
        return None
    if status == "interrupted":
        return "interrupted"
    code = getattr(error, "status_code", None)
    if code:
        return str(code)
    if isinstance(error, BaseException):
        return type(error).__name__
    return "error"


def _server(conn: dict[str, Any]) -> dict[str, Any]:
    """server.address and server.port from a connection's URL (no user, password or query)."""
    data = conn.get("data") or {}
    url = data.get("base_url") or data.get("host")
    if not url and conn.get("provider") == "OPENAI" and not data.get("builtin"):
        url = "https://api.openai.com/v1"
    if not url:
        return {}
    try:
        parts = urlsplit(url if "//" in url else "http://" + url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    return {"server.address": host, "server.port": port} if host else {}


def _json(value: Any) -> str:
    return json.dumps(redact_data(value), ensure_ascii=False, default=str)


def _input_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Provider messages in the conventions' shape: role and parts (text, tool_call, tool_call_response)."""
    out = []
    for m in messages:
        role = m.get("role") or "user"
        parts: list[dict[str, Any]] = []
        if role == "tool":
            parts.append({"type": "tool_call_response", "id": m.get("tool_call_id"), "response": m.get("content")})
        elif m.get("content"):
            parts.append({"type": "text", "content": m["content"]})
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")})
        out.append({"role": role, "parts": parts})
    return out


def _output_message(result: Any, finish: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if getattr(result, "text", ""):
        parts.append({"type": "text", "content": result.text})
    for call in getattr(result, "tool_calls", None) or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    return {"role": "assistant", "parts": parts, "finish_reason": finish or ""}


# ---------------------------------------------------------------- backfill


class _Stored:
    """A stored model call, shaped like a live call's result for `Telemetry.model_call`."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def backfill(telemetry: Telemetry, store: Store, since: str | None = None, until: str | None = None) -> dict[str, int]:
    """Send the store's history between `since` and `until` (ISO times, UTC) as spans with their
    original times: each chat turn of an agent as `invoke_agent` (its Jobs row), each model call
    as `chat {model}` (ResponseStream, its metrics, connection and response), each tool call as
    `execute_tool` (ToolInvocation), children under their agent turn. Returns the counts sent."""
    from datetime import datetime

    def ns(stamp: str | None) -> int | None:
        if not stamp:
            return None
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e9)

    where, params = [], []
    if since:
        where.append('s."createdAt" >= ?')
        params.append(since)
    if until:
        where.append('s."createdAt" < ?')
        params.append(until)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    streams = store.query(
        'SELECT s."id", s."sourceId", s."status", s."createdAt", s."updatedAt", s."resultMessages", s."references" '
        f'FROM "ResponseStream" s{clause} ORDER BY s."createdAt"', params,
    )
    counts = {"chat": 0, "execute_tool": 0, "invoke_agent": 0}
    if not streams:
        return counts
    connections = {row["id"]: row for row in store.find("ModelConnections")}
    metrics: dict[str, tuple[dict[str, float], dict[str, Any]]] = {}
    for row in store.query(
        'SELECT "name", "value", "dimensions", json_extract("references", \'$.stream\') AS stream FROM "Metric" '
        f'WHERE json_extract("references", \'$.stream\') IN (SELECT s."id" FROM "ResponseStream" s{clause})', params,
    ):
        values, dims = metrics.setdefault(row["stream"], ({}, {}))
        values[row["name"]] = row["value"]
        dims.update(json.loads(row["dimensions"]) if isinstance(row["dimensions"], str) else row["dimensions"] or {})
    responses: dict[str, dict[str, Any]] = {}
    for stream in streams:
        call = store.first("NetworkCall", streamId=stream["id"])  # read through the store: the whole body
        if call is not None:
            responses[stream["id"]] = _reply_fields(call.get("response") or "")
    agents: dict[str, AgentSpan] = {}
    jobs = {}
    for stream in streams:
        refs = _loads(stream["references"])
        job_id = refs.get("job")
        values, dims = metrics.get(stream["id"], ({}, {}))
        if job_id and dims.get("agent") and job_id not in agents:
            job = store.first("Jobs", id=job_id)
            if job is not None:
                jobs[job_id] = job
                conn = connections.get(stream["sourceId"], {"provider": dims.get("provider", ""), "modelId": dims.get("model")})
                agent_row = store.first("Agent", name=dims["agent"])
                agents[job_id] = telemetry.start_agent(
                    dims["agent"], agent_row["id"] if agent_row else "", conn, conversation=refs.get("thread"),
                    start_ns=ns(job.get("startedAt") or job["createdAt"]),
                )
        conn = connections.get(stream["sourceId"]) or {"provider": dims.get("provider", ""), "modelId": dims.get("model", ""), "data": {}}
        end = ns(stream["updatedAt"])
        start = end - int(values.get("latency_ms", 0) * 1e6) if "latency_ms" in values else ns(stream["createdAt"])
        messages = _loads(stream["resultMessages"]) or []
        reply = messages[0] if messages and isinstance(messages, list) else {}
        data = reply.get("data") or {}
        response = responses.get(stream["id"], {})
        from types import SimpleNamespace

        result = _Stored(
            status=stream["status"], error=None, usage=None, streamed="ttft_ms" in values or response.get("streamed", True),
            finish_reason=data.get("finish_reason"), response_id=response.get("id"), response_model=response.get("model"),
            options={}, sent=[], text=reply.get("content", ""),
            tool_calls=[SimpleNamespace(id=c.get("id"), name=(c.get("function") or {}).get("name"),
                                        arguments=(c.get("function") or {}).get("arguments"))
                        for c in data.get("tool_calls") or ()],
        )
        telemetry.model_call(conn, result, values, dims, conversation=refs.get("thread"),
                             parent=agents.get(job_id), start_ns=start, end_ns=end)
        counts["chat"] += 1
    for job_id, span in agents.items():
        invocations = store.query(
            'SELECT t."name", i."callId", i."parameters", i."result", i."status", i."durationMs", i."updatedAt" '
            'FROM "ToolInvocation" i LEFT JOIN "Tool" t ON t."id" = i."toolId" '
            'WHERE json_extract(i."references", \'$.job\') = ? ORDER BY i."createdAt"', [job_id],
        )
        for inv in invocations:
            end = ns(inv["updatedAt"])
            start = end - int((inv["durationMs"] or 0) * 1e6)
            result = _loads(inv["result"])
            outcome = _Stored(status=inv["status"], content=json.dumps(result.get("value", result.get("error")), default=str))
            span.tool(inv["name"] or "tool", inv["callId"], inv["parameters"], outcome, start, end_ns=end)
            counts["execute_tool"] += 1
        job = jobs[job_id]
        span.end(job["status"], job.get("error"), end_ns=ns(job.get("finishedAt") or job["updatedAt"]))
        counts["invoke_agent"] += 1
    return counts


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


def _reply_fields(response: str) -> dict[str, Any]:
    """The reply's id and model from a recorded response body: a JSON completion or an SSE stream."""
    text = response.lstrip()
    streamed = text.startswith("data:")
    first = text
    if streamed:
        first = text.split("\n", 1)[0][len("data:"):].strip()
    else:
        first = text.split("\n", 1)[0] if text.startswith("{") and "\n" in text.strip() else text
    try:
        obj = json.loads(first)
    except ValueError:
        return {"streamed": streamed}
    if not isinstance(obj, dict):
        return {"streamed": streamed}
    return {"id": obj.get("id") or None, "model": obj.get("model") or None, "streamed": streamed}
