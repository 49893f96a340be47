"""OpenTelemetry export: GenAI spans and metrics from real turns over real HTTP, captured by the
SDK's in-memory exporter and reader, and by an OTLP/HTTP receiver that decodes the protobuf."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from aihub_nb import monitoring as mon  # noqa: E402
from aihub_nb.errors import UsageError  # noqa: E402
from aihub_nb.redact import add_secret  # noqa: E402
from aihub_nb.testing import ScriptedReply  # noqa: E402


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _memory(hub, **options):
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    hub.otel("on", span_exporter=spans, metric_reader=reader, schedule_delay_ms=20, **options)
    return spans, reader


def _spans(hub, exporter):
    hub.telemetry.flush()
    return {s.name: s for s in exporter.get_finished_spans()}


def _metric_points(reader) -> dict[str, list]:
    out: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_a_chat_turn_is_one_chat_span_with_the_genai_attributes_and_metrics(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    spans, reader = _memory(hub)
    server.script(ScriptedReply(chunks=["Hel", "lo"], prompt_tokens=7, completion_tokens=3))
    chat = hub.chat("c", model="oa")
    before = time.time_ns()
    reply = chat.turn("Hi", options={"temperature": 0.2, "seed": 4, "max_tokens": 50})
    from aihub_nb.chat import drive

    reply = drive(reply)
    assert reply.status == "completed"
    span = _spans(hub, spans)["chat local-chat"]
    a = span.attributes
    assert span.kind == SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "local-chat" and a["gen_ai.response.model"] == "local-chat"
    assert a["gen_ai.response.id"].startswith("chatcmpl-")
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 3)
    assert a["gen_ai.conversation.id"] == chat.thread_id
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.seed"], a["gen_ai.request.max_tokens"]) == (0.2, 4, 50)
    assert a["gen_ai.request.stream"] is True
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == server.port
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 5
    assert not any(k.startswith("gen_ai.input") or k.startswith("gen_ai.output") for k in a)  # content is opt-in
    assert before <= span.start_time < span.end_time <= time.time_ns()
    points = _metric_points(reader)
    assert [p.count for p in points["gen_ai.client.operation.duration"]] == [1]
    assert sorted((dict(p.attributes)["gen_ai.token.type"], p.sum) for p in points["gen_ai.client.token.usage"]) == [
        ("input", 7), ("output", 3)
    ]
    assert points["gen_ai.client.token.usage"][0].explicit_bounds[:3] == (1, 4, 16)
    assert len(points["gen_ai.client.operation.time_to_first_chunk"]) == 1


def test_latest_conventions_only_when_opted_in(hub, server, monkeypatch):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    spans, _ = _memory(hub)
    server.script(ScriptedReply(text="ok"))
    hub.chat("c", model="oa").send("Hi")
    a = _spans(hub, spans)["chat local-chat"].attributes
    assert a["gen_ai.provider.name"] == "openai" and "gen_ai.system" not in a


def test_content_is_sent_only_when_asked_and_never_a_secret(hub, server, monkeypatch):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    add_secret("sk-otel-secret-12345")
    spans, _ = _memory(hub, content=True)
    server.script(ScriptedReply(text="The key is sk-otel-secret-12345."))
    hub.chat("c", model="oa", system="Be brief.").send("Remember sk-otel-secret-12345 please")
    a = _spans(hub, spans)["chat local-chat"].attributes
    inputs = json.loads(a["gen_ai.input.messages"])
    assert inputs[-1]["role"] == "user" and inputs[-1]["parts"][0]["content"].startswith("Remember")
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    output = json.loads(a["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant" and output[0]["finish_reason"] == "stop"
    assert "sk-otel-secret-12345" not in json.dumps(dict(a))
    assert "[redacted]" in a["gen_ai.input.messages"]
    spans, _ = _memory(hub, content=False)
    server.script(ScriptedReply(text="ok"))
    hub.chat("c").send("again")
    assert "gen_ai.input.messages" not in _spans(hub, spans)["chat local-chat"].attributes


def test_an_agent_turn_is_invoke_agent_over_its_chat_and_tool_spans(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("helper", tools=["add"], instructions="Use your tools.")
    spans, reader = _memory(hub)
    server.script(
        ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]), ScriptedReply(text="5."),
    )
    reply = hub.chat("c", agent="helper").send("2+3?")
    assert reply.text == "5."
    hub.telemetry.flush()
    finished = spans.get_finished_spans()
    assert sorted(s.name for s in finished) == [
        "chat local-tools", "chat local-tools", "execute_tool add", "invoke_agent helper"
    ]
    agent = next(s for s in finished if s.name == "invoke_agent helper")
    assert agent.parent is None and agent.attributes["gen_ai.agent.name"] == "helper"
    for child in finished:
        if child is not agent:
            assert child.context.trace_id == agent.context.trace_id
            assert child.parent.span_id == agent.context.span_id
            assert agent.start_time <= child.start_time <= child.end_time <= agent.end_time
    tool = next(s for s in finished if s.name == "execute_tool add")
    assert tool.attributes["gen_ai.tool.call.id"] == reply.tool_calls[0]["id"]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    assert [p.count for p in _metric_points(reader)["gen_ai.client.operation.duration"]]


def test_a_failed_call_has_error_type(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    spans, _ = _memory(hub)
    server.script(ScriptedReply(fault="401"))
    with pytest.raises(Exception):
        hub.chat("c", model="oa").send("Hi")
    span = _spans(hub, spans)["chat local-chat"]
    assert span.attributes["error.type"] == "401"
    assert span.status.status_code == StatusCode.ERROR


# ---------------------------------------------------------------- over real HTTP


class _Receiver:
    """An OTLP/HTTP collector on 127.0.0.1: decodes ExportTraceServiceRequest protobuf."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.headers = dict(self.headers)
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            receiver.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.close()


def _attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_spans_arrive_at_an_otlp_http_collector(hub, server, receiver, monkeypatch):
    monkeypatch.setenv("AIHUB_OTLP_HEADERS", "x-team=ml,authorization=Bearer%20otlp-token-999")
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("helper", tools=["add"])
    status = hub.otel("on", endpoint=receiver.url, headers_env="AIHUB_OTLP_HEADERS")
    assert status["export"] == "on" and status["endpoint"] == receiver.url + "/v1/traces"
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}]), ScriptedReply(text="2"))
    hub.chat("c", agent="helper").send("1+1?")
    assert hub.telemetry.flush()
    assert sorted(s.name for s in receiver.spans) == [
        "chat local-tools", "chat local-tools", "execute_tool add", "invoke_agent helper"
    ]
    by_name = {s.name: s for s in receiver.spans}
    agent = by_name["invoke_agent helper"]
    assert by_name["execute_tool add"].parent_span_id == agent.span_id
    assert by_name["chat local-tools"].parent_span_id == agent.span_id
    assert by_name["chat local-tools"].trace_id == agent.trace_id
    chat = _attrs(by_name["chat local-tools"])
    assert chat["gen_ai.operation.name"] == "chat" and chat["gen_ai.request.model"] == "local-tools"
    assert receiver.headers["x-team"] == "ml"
    assert hub.otel("status")["exported"] == 4
    # the headers variable is stored by name; its value is a known secret, never shown
    assert hub.store.first("UserSettings")["otelHeadersEnv"] == "AIHUB_OTLP_HEADERS"
    assert "otlp-token-999" not in json.dumps(hub.store.first("UserSettings"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_collector_that_is_down_costs_turns_nothing_and_drops_are_counted(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    hub.otel("on", endpoint=f"http://127.0.0.1:{_free_port()}", max_queue_size=2, schedule_delay_ms=60_000, export_timeout=0.2)
    chat = hub.chat("c", model="oa")
    for i in range(5):
        server.script(ScriptedReply(text=f"reply {i}"))
        assert chat.send(f"turn {i}").status == "completed"
    started = time.perf_counter()
    hub.telemetry.flush(timeout=2)
    assert time.perf_counter() - started < 5
    status = hub.otel("status")
    # the queue holds 2: the other spans were dropped, or taken and failed to send; none was lost uncounted
    assert status["exported"] == 0 and status["queued"] <= 2
    assert status["dropped"] + status["failed"] + status["queued"] == 5 and status["dropped"] + status["failed"] >= 3


def test_otel_settings_persist_and_off_stops_export(hub, server, tmp_path):
    from aihub_nb import Hub

    assert hub.otel("status") == {"export": "off", "endpoint": None}
    hub.otel("on", endpoint="http://127.0.0.1:4318")
    again = Hub(hub.home)
    try:
        assert again.otel("status")["endpoint"] == "http://127.0.0.1:4318/v1/traces"
        again.otel("off")
        assert again.telemetry is None
    finally:
        again.close()
    with pytest.raises(UsageError, match="endpoint"):
        hub.otel("on", endpoint="not a url")
    with pytest.raises(UsageError, match="not set"):
        hub.otel("on", headers_env="AIHUB_NOT_SET_ANYWHERE")


def test_the_environment_turns_export_on(home, tmp_path, monkeypatch):
    from aihub_nb import Hub

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4999")
    h = Hub(tmp_path / "envhub")
    try:
        assert h.otel("status")["endpoint"] == "http://127.0.0.1:4999/v1/traces"
    finally:
        h.close()


def test_importing_and_using_the_hub_with_export_off_never_imports_opentelemetry(tmp_path):
    code = (
        "import sys, aihub_nb\n"
        f"hub = aihub_nb.Hub({str(tmp_path / 'h')!r})\n"
        "assert hub.telemetry is None\n"
        "hub.close()\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


# ---------------------------------------------------------------- backfill


def test_backfill_sends_history_with_its_original_times(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("helper", tools=["add"])
    server.script(ScriptedReply(text="plain", prompt_tokens=5, completion_tokens=2))
    hub.chat("plain", model="oa").send("Hi")
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]), ScriptedReply(text="3"))
    hub.chat("agentic", agent="helper").send("1+2?")
    done = time.time_ns()
    time.sleep(0.05)
    spans, _ = _memory(hub)
    assert hub.export_otel(since="1h") == {"chat": 3, "execute_tool": 1, "invoke_agent": 1}
    finished = spans.get_finished_spans()
    assert all(s.end_time <= done for s in finished)  # their own times, not the export's
    plain = next(s for s in finished if s.attributes.get("gen_ai.conversation.id") == hub.get_chat("plain").thread_id)
    assert plain.parent is None
    assert (plain.attributes["gen_ai.usage.input_tokens"], plain.attributes["gen_ai.usage.output_tokens"]) == (5, 2)
    assert plain.attributes["gen_ai.response.id"].startswith("chatcmpl-")
    agent = next(s for s in finished if s.name == "invoke_agent helper")
    children = [s for s in finished if s.parent is not None]
    assert len(children) == 3 and all(s.parent.span_id == agent.context.span_id for s in children)
    assert hub.export_otel(since="1h", until="30m") == {"chat": 0, "execute_tool": 0, "invoke_agent": 0}


def test_export_needs_export_on(hub):
    with pytest.raises(UsageError, match="otel on"):
        hub.export_otel(since="1d")


# ---------------------------------------------------------------- prices and estimates


def test_known_openai_models_are_priced_from_genai_prices_and_the_user_table_wins(store):
    import genai_prices

    cost, source = mon.turn_price(store, "OPENAI", "gpt-4o-mini", 1_000_000, 1_000_000)
    assert source == f"genai-prices {genai_prices.__version__}" and cost == pytest.approx(0.75)
    cached, _ = mon.turn_price(store, "OPENAI", "gpt-4o-mini", 1_000_000, 0, cached_tokens=500_000)
    assert cached == pytest.approx(0.5 * 0.15 + 0.5 * 0.075)  # cached input at the cache-read rate
    assert mon.turn_price(store, "OPENAI", "gpt-4o-mini", 10, 10, base_url="http://127.0.0.1:8000/v1") is None
    assert mon.turn_price(store, "OLLAMA", "llama3.2", 10, 10) is None
    assert mon.turn_price(store, "OPENAI", "no-such-model-anywhere", 10, 10) is None  # unpriced, never 0
    mon.set_price(store, "gpt-4o-mini", 1.0, 2.0)
    assert mon.turn_price(store, "OPENAI", "gpt-4o-mini", 1_000_000, 1_000_000) == (3.0, "user")


def test_a_turn_records_its_price_source(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    hub.set_price("local-chat", 1.0, 2.0)
    spans, _ = _memory(hub)
    server.script(ScriptedReply(text="ok", prompt_tokens=1000, completion_tokens=500))
    hub.chat("c", model="oa").send("Hi")
    [(value, dims)] = [(m["value"], m["dimensions"]) for m in hub.store.find("Metric", name="cost_usd")]
    assert value == pytest.approx(0.002) and dims["price_source"] == "user"
    a = _spans(hub, spans)["chat local-chat"].attributes
    assert a["aihub.cost.usd"] == pytest.approx(0.002) and a["aihub.cost.source"] == "user"


def test_estimate_counts_input_tokens_and_prices_them_without_sending(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    first = hub.estimate("x" * 400)
    assert first.input_tokens > 0 and first.cost_usd is None and "unpriced" in str(first)
    server.script(ScriptedReply(text="a reply"))
    hub.chat("c", model="oa", system="Be brief.").send("y" * 400)
    sent = len(server.requests)
    hub.set_price("local-chat", 2.0, 4.0)
    estimate = hub.estimate("c", "z" * 400)
    assert estimate.input_tokens > 200  # history, instructions and the new text
    assert estimate.cost_usd == pytest.approx(estimate.input_tokens * 2.0 / 1_000_000)
    assert estimate.price_source == "user" and "not sent" in str(estimate)
    assert len(server.requests) == sent


def test_estimate_cell_magic_sends_nothing(hub, server):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from aihub_nb import magics

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        with capture_output() as out:
            ip.run_cell_magic("aihub", "chat c --model oa --estimate", "How long is this?")
        assert "input tokens" in str(out.outputs[0].data) and "not sent" in str(out.outputs[0].data)
        assert server.requests == [] and hub.store.find("Message") == []
        table = ip.run_line_magic("aihub", "otel status")
        assert "off" in table.data
        table = ip.run_line_magic("aihub", "otel on --endpoint http://127.0.0.1:4318")
        assert "127.0.0.1:4318/v1/traces" in table.data and "queued" in table.data and "dropped" in table.data
        ip.run_line_magic("aihub", "otel off")
        assert hub.telemetry is None
    finally:
        magics.use_hub(None)


def test_an_embeddings_request_is_an_embeddings_span(hub, server):
    hub.connect("OPENAI", "local-embed", name="vec", base_url=server.openai_base_url, type="EMBEDDING")
    spans, reader = _memory(hub)
    hub.embed(["a cat", "a dog"], model="vec")
    span = _spans(hub, spans)["embeddings local-embed"]
    assert span.kind == SpanKind.CLIENT and span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["aihub.embeddings.inputs"] == 2 and span.attributes["server.address"] == "127.0.0.1"
    assert span.start_time < span.end_time
