"""The wire formats against independent implementations, both ways.

Our providers (the official clients underneath) talk to `_WireServer`, a second server written
here by hand that answers with raw bytes in the shapes other servers send (vLLM, llama.cpp,
LM Studio, OpenRouter, real Ollama). LocalServer's answers are read by a strict parser written
here from the specs, not through the openai or ollama clients.
"""

from __future__ import annotations

import gzip
import http.client
import importlib
import json
import re
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aihub_nb.errors import ModelNotFoundError, ProviderError, ServerError, StreamError
from aihub_nb.providers import Event, ToolCall, Usage, make_provider
from aihub_nb.recording import MemorySink, recording_transport
from aihub_nb.testing import LocalServer, ScriptedReply

USER = [{"role": "user", "content": "hi"}]
FINISHED = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


# -- a second server, written by hand ------------------------------------------------------------


@dataclass
class _Answer:
    """One raw HTTP answer: `pieces` are written (and flushed) one by one.

    `framing` is "chunked", "length" (Content-Length), or "close" (the body ends when the
    connection closes, as HTTP/1.0 servers and some proxies do)."""

    pieces: list[bytes]
    status: int = 200
    content_type: str = "text/event-stream"
    framing: str = "chunked"
    headers: dict[str, str] = field(default_factory=dict)


class _WireHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _WireServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.command, self.path, json.loads(body) if body else None))
        answer = self.server.answers.popleft()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif answer.framing == "length":
            self.send_header("Content-Length", str(sum(map(len, answer.pieces))))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        for piece in answer.pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if answer.framing == "chunked" else piece)
            self.wfile.flush()
        if answer.framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")


class _WireServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WireHandler)
        self.answers: deque[_Answer] = deque()
        self.received: list[tuple[str, str, dict | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # a client that stops reading early is expected here


@pytest.fixture(scope="module")
def _wire_server():
    server = _WireServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def wire(_wire_server):
    _wire_server.answers.clear()
    _wire_server.received.clear()
    yield _wire_server
    assert not _wire_server.answers, "a scripted answer was not asked for"


def _openai(wire: _WireServer, **kwargs):
    return make_provider("OPENAI", connection_name="conn", base_url=wire.url + "/v1", **kwargs)


def _ollama(wire: _WireServer, **kwargs):
    return make_provider("OLLAMA", connection_name="conn", host=wire.url, **kwargs)


def _chat(provider, *, deltas: bool = False, **kwargs) -> list[Event]:
    """The events of one chat; without `deltas`, less the bare announcements of tool-call pieces."""
    try:
        events = list(provider.chat("m", USER, **kwargs))
    finally:
        provider.close()
    return events if deltas else [e for e in events if e != Event(tool_delta=True)]


def _text(events: list[Event]) -> str:
    return "".join(event.text for event in events)


# -- OpenAI format, other servers' variations ------------------------------------------------------


def _chunk(choices: list, **extra) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
    return json.dumps({**chunk, **extra}).encode()


def _choice(delta: dict, finish_reason: str | None = None, index: int = 0) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish_reason}


def _sse(*datas: bytes, sep: bytes = b": ", eol: bytes = b"\n") -> list[bytes]:
    return [b"data" + sep + data + eol + eol for data in (*datas, b"[DONE]")]


def _tool_delta(index: int | None = None, **fields) -> bytes:
    part = fields if index is None else {"index": index, **fields}
    return _chunk([_choice({"tool_calls": [part]})])


def test_openai_sse_framing_variations(wire):
    """`data:` without a space, CRLF line ends, keep-alive comments, a first chunk without choices,
    null content, usage in the last content chunk (llama.cpp), finish_reason "length"."""
    events = _sse(
        _chunk([]),
        _chunk([_choice({"role": "assistant", "content": None})]),
        _chunk([_choice({"content": "Hel"})]),
        _chunk([_choice({"content": "lo"}, "length")], usage=FINISHED),
        sep=b":",
        eol=b"\r\n",
    )
    wire.answers.append(_Answer([b": keep-alive\r\n\r\n", *events[:2], b": ping\r\n\r\n", *events[2:]]))
    got = _chat(_openai(wire))
    assert got == [Event(text="Hel"), Event(text="lo", usage=Usage(5, 3), finish_reason="length")]


def test_openai_usage_never_sent(wire):
    wire.answers.append(_Answer(_sse(_chunk([_choice({"content": "Hi"})]), _chunk([_choice({}, "stop")]))))
    assert _chat(_openai(wire)) == [Event(text="Hi"), Event(finish_reason="stop")]


def test_openai_tool_call_deltas_split_and_interleaved(wire):
    """Ids and names come first, arguments in many pieces; parallel calls interleave by index;
    usage comes in a last chunk without choices."""
    start = {"type": "function", "function": {"name": "add", "arguments": ""}}
    wire.answers.append(
        _Answer(
            _sse(
                _tool_delta(0, id="call_a", **start),
                _tool_delta(1, id="call_b", type="function", function={"name": "mul", "arguments": ""}),
                _tool_delta(1, function={"arguments": '{"y"'}),
                _tool_delta(0, function={"arguments": '{"x": '}),
                _tool_delta(0, function={"arguments": "1}"}),
                _tool_delta(1, function={"arguments": ": 2}"}),
                _chunk([_choice({}, "tool_calls")], usage=None),
                _chunk([], usage=FINISHED),
            )
        )
    )
    calls = [ToolCall("call_a", "add", '{"x": 1}'), ToolCall("call_b", "mul", '{"y": 2}')]
    assert _chat(_openai(wire), deltas=True) == [
        *[Event(tool_delta=True)] * 6,  # each piece announced as it arrives
        Event(tool_calls=calls, finish_reason="tool_calls"),
        Event(usage=Usage(5, 3)),
    ]


def test_openai_tool_call_deltas_without_index_repeating_the_id(wire):
    """Servers that leave out `index` but repeat the call's id on each of its deltas."""
    call = {"id": "call_a", "type": "function"}
    wire.answers.append(
        _Answer(
            _sse(
                _tool_delta(**call, function={"name": "add", "arguments": '{"x"'}),
                _tool_delta(**call, function={"arguments": ": 1}"}),
                _tool_delta(id="call_b", type="function", function={"name": "mul", "arguments": "{}"}),
                _chunk([_choice({}, "tool_calls")]),
            )
        )
    )
    [event] = _chat(_openai(wire))
    assert event.tool_calls == [ToolCall("call_a", "add", '{"x": 1}'), ToolCall("call_b", "mul", "{}")]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_openai_tool_call_arguments_sent_as_an_object(wire, stream):
    """llama.cpp (some builds) and TGI send `arguments` as a JSON object, not JSON text."""
    call = {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": {"x": 1}}}
    if stream:
        chunks = _sse(_chunk([_choice({"tool_calls": [{"index": 0, **call}]})]), _chunk([_choice({}, "tool_calls")]))
        wire.answers.append(_Answer(chunks))
    else:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}
        wire.answers.append(_Answer([json.dumps(body).encode()], content_type="application/json", framing="length"))
    [event] = _chat(_openai(wire), stream=stream)
    assert event.tool_calls == [ToolCall("call_a", "add", '{"x": 1}')]


def test_openai_only_the_first_choice_is_the_reply(wire):
    """With `n` > 1 a server interleaves choices; the reply is choice 0, not a mix."""
    wire.answers.append(
        _Answer(
            _sse(
                _chunk([_choice({"content": "A"}), _choice({"content": "X"}, index=1)]),
                _chunk([_choice({"content": "Y"}, index=1)]),
                _chunk([_choice({"content": "B"}, "stop")]),
                _chunk([_choice({}, "length", index=1)]),
            )
        )
    )
    events = _chat(_openai(wire), options={"n": 2})
    assert _text(events) == "AB"
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]


@pytest.mark.parametrize(
    "error",
    [
        b'data: {"error": {"object": "error", "message": "boom", "type": "BadRequestError", "code": 400}}\n\n',
        b'data: {"object": "error", "message": "boom", "type": "BadRequestError", "param": null, "code": 400}\n\n',
    ],
    ids=["wrapped", "vllm-bare"],
)
def test_openai_error_event_mid_stream(wire, error):
    wire.answers.append(_Answer([*_sse(_chunk([_choice({"content": "Hi"})]))[:1], error, b"data: [DONE]\n\n"]))
    with pytest.raises(StreamError, match="boom"):
        _chat(_openai(wire))


def test_openai_llama_cpp_error_field_instead_of_a_reply(wire):
    """llama.cpp sends `error: {...}` (an SSE field clients ignore), then `data: [DONE]`: with
    nothing else in the stream, that must not pass for an (empty) reply."""
    error = b'error: {"code": 500, "message": "the request exceeds the available context size", "type": "server_error"}\n\n'
    wire.answers.append(_Answer([error, b"data: [DONE]\n\n"]))
    with pytest.raises(StreamError, match="ended before any reply arrived") as caught:
        _chat(_openai(wire))
    assert caught.value.connection == "conn"


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_openai_stream_with_content_but_no_finish_is_taken_as_it_came(wire, framing):
    """Some compatible servers never send a finish reason: the text that came is the reply."""
    wire.answers.append(_Answer(_sse(_chunk([_choice({"content": "Hi"})]))[:1], framing=framing))
    assert _chat(_openai(wire)) == [Event(text="Hi")]


def test_openai_non_stream_other_servers_fields(wire):
    """Null content, a reasoning field (vLLM), finish "length"."""
    message = {"role": "assistant", "content": None, "reasoning_content": "hmm"}
    body = {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "length"}], "usage": FINISHED,
    }  # fmt: skip
    wire.answers.append(_Answer([json.dumps(body).encode()], content_type="application/json", framing="length"))
    assert _chat(_openai(wire), stream=False) == [Event(usage=Usage(5, 3), finish_reason="length")]


ERROR_BODIES = [
    (400, b'{"error": {"message": "bad thing", "type": "invalid_request_error", "param": null, "code": null}}',
     ProviderError, "(400: bad thing)"),
    (400, b'{"object": "error", "message": "bad thing", "type": "BadRequestError", "param": null, "code": 400}',
     ProviderError, "(400: bad thing)"),
    (400, b'{"error": "bad thing"}', ProviderError, "(400: bad thing)"),
    (422, b'{"detail": [{"loc": ["body", "temperature"], "msg": "bad thing"}]}', ProviderError, "bad thing"),
    (502, b"<html><body>502 Bad Gateway</body></html>", ServerError, "502 Bad Gateway"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "error", "detail"), ERROR_BODIES)
def test_openai_error_bodies_keep_the_servers_message(wire, status, body, error, detail):
    wire.answers.append(_Answer([body], status=status, content_type="application/json", framing="length"))
    with pytest.raises(error) as caught:
        _chat(_openai(wire), stream=False)
    assert type(caught.value) is error and caught.value.status_code == status
    assert detail in str(caught.value)


@pytest.mark.parametrize(
    ("body", "missing_model"),
    [
        (b'{"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}', True),
        (b'{"object": "error", "message": "The model `m` does not exist.", "code": 404}', True),
        (b'{"detail": "Not Found"}', False),
        (b"404 page not found", False),
    ],
    ids=["openai", "vllm", "wrong-path-fastapi", "wrong-path-go"],
)
def test_openai_404_tells_a_missing_model_from_a_wrong_url(wire, body, missing_model):
    wire.answers.append(_Answer([body], status=404, content_type="application/json", framing="length"))
    with pytest.raises(ModelNotFoundError) as caught:
        _chat(_openai(wire))
    assert ("has no model 'm'" in str(caught.value)) is missing_model
    assert ("check the connection's URL" in str(caught.value)) is not missing_model


def test_openai_stream_options_refused_with_422(wire):
    """Servers that validate strictly (axum, FastAPI with extra="forbid") answer 422."""
    refusal = b'{"error": "Failed to deserialize the JSON body: unknown field `stream_options`"}'
    wire.answers.append(_Answer([refusal], status=422, content_type="application/json", framing="length"))
    wire.answers.append(_Answer(_sse(_chunk([_choice({"content": "Hi"}, "stop")]))))
    assert _text(_chat(_openai(wire))) == "Hi"
    assert ["stream_options" in body for _, _, body in wire.received] == [True, False]


# -- Ollama format, real Ollama's variations --------------------------------------------------------


def _line(content: str = "", done: bool = False, **extra) -> bytes:
    message = {"role": "assistant", "content": content, **extra.pop("message", {})}
    line = {"model": "m", "created_at": "2025-05-27T22:54:57.641643Z", "message": message, "done": done}
    return json.dumps({**line, **extra}).encode() + b"\n"


FINAL = {
    "total_duration": 9000, "load_duration": 1000, "prompt_eval_count": 5, "prompt_eval_duration": 2000,
    "eval_count": 3, "eval_duration": 4000,
}  # fmt: skip


def test_ollama_ndjson_variations(wire):
    """Thinking, tool calls in a chunk before the last, the last content in the final chunk,
    done_reason "length"."""
    call = {"function": {"name": "add", "arguments": {"a": 1}}}
    wire.answers.append(
        _Answer(
            [
                _line(message={"thinking": "Let me see"}),
                _line("Hel"),
                _line(message={"tool_calls": [call]}),
                _line("lo", True, done_reason="length", **FINAL),
            ],
            content_type="application/x-ndjson",
        )
    )
    events = _chat(_ollama(wire))
    assert [e.text for e in events] == ["Hel", "", "lo"]
    [with_calls] = [e for e in events if e.tool_calls]
    assert [(c.name, json.loads(c.arguments)) for c in with_calls.tool_calls] == [("add", {"a": 1})]
    assert events[-1].usage == Usage(5, 3) and events[-1].finish_reason == "length"


def test_ollama_tool_call_ids_are_unique_across_replies(wire):
    """Ollama's client drops call ids: the ones made up here must not repeat from one reply to
    the next, as tool results are matched to their calls by id over the whole chat."""
    calls = [{"function": {"name": "add", "arguments": {"a": 1}}}, {"function": {"name": "add", "arguments": {}}}]
    line = _line(message={"tool_calls": calls}, done=True, done_reason="stop", **FINAL)
    wire.answers.extend(_Answer([line], content_type="application/x-ndjson") for _ in range(2))
    ids = [call.id for _ in range(2) for event in _chat(_ollama(wire)) for call in event.tool_calls or ()]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_ollama_error_line_mid_stream(wire):
    error = b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'
    wire.answers.append(_Answer([_line("Hi"), error], content_type="application/x-ndjson"))
    with pytest.raises(StreamError, match="unexpected EOF"):
        _chat(_ollama(wire))


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_ollama_stream_that_ends_without_done_keeps_what_came(wire, framing):
    wire.answers.append(_Answer([_line("Hi")], content_type="application/x-ndjson", framing=framing))
    assert [e.text for e in _chat(_ollama(wire))] == ["Hi"]


@pytest.mark.parametrize(
    ("body", "missing_model"),
    [(b'{"error":"model \\"m\\" not found, try pulling it first"}', True), (b"404 page not found", False)],
    ids=["missing-model", "wrong-path"],
)
def test_ollama_404_tells_a_missing_model_from_a_wrong_url(wire, body, missing_model):
    wire.answers.append(_Answer([body], status=404, content_type="application/json", framing="length"))
    with pytest.raises(ModelNotFoundError) as caught:
        _chat(_ollama(wire))
    assert ("ollama pull m" in str(caught.value)) is missing_model
    assert ("check the connection's URL" in str(caught.value)) is not missing_model


# -- the recorder, on what servers really send ------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_recorded_response_of_a_gzipped_answer_is_its_text(wire, stream):
    """Servers and proxies compress what the client accepts (httpx asks for gzip); the record
    keeps the text the client read, not the compressed bytes."""
    if stream:
        body = b"".join(_sse(_chunk([_choice({"content": "Hé"}, "stop")])))
        content_type = "text/event-stream"
    else:
        message = {"role": "assistant", "content": "Hé"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [choice], "usage": FINISHED}).encode()  # fmt: skip
        content_type = "application/json"
    packed = gzip.compress(body)
    pieces = [packed[:10], packed[10:]]
    wire.answers.append(_Answer(pieces, content_type=content_type, headers={"Content-Encoding": "gzip"}))
    sink = MemorySink()
    events = _chat(_openai(wire, transport=recording_transport(sink, lib="httpx2")), stream=stream)
    assert _text(events) == "Hé"
    [call] = sink.calls
    assert call.data == body and call.error is None and call.finish_count == 1
    assert call.response_headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("lib", ["httpx", "httpx2"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "gzip, deflate"])
def test_recorded_body_is_decoded_as_the_client_decodes_it(wire, lib, encoding):
    body = '{"models": [{"name": "é"}]}'.encode()
    packed = body
    for coding in encoding.split(", "):
        packed = gzip.compress(packed) if coding == "gzip" else zlib.compress(packed)
    wire.answers.append(_Answer([packed[:7], packed[7:]], content_type="application/json",
                                headers={"Content-Encoding": encoding}))  # fmt: skip
    sink = MemorySink()
    with importlib.import_module(lib).Client(transport=recording_transport(sink, lib=lib)) as client:
        assert client.get(wire.url + "/api/tags").content == body
    [call] = sink.calls
    assert call.data == body and call.error is None and call.finish_count == 1


# -- LocalServer, read by a strict parser written from the specs -----------------------------------

_CHUNK_FIELDS = {"id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage"}
_CHOICE_FIELDS = {"index", "delta", "logprobs", "finish_reason"}
_DELTA_FIELDS = {"role", "content", "refusal", "tool_calls"}
_FINISH_REASONS = {None, "stop", "length", "tool_calls", "content_filter", "function_call"}
_RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def local():
    with LocalServer() as server:
        yield server


def _post(server: LocalServer, path: str, body: dict) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return connection.getresponse()


def _strict_sse(raw: bytes) -> list[dict | str]:
    """Each event is exactly `data: <json>` and a blank line; the last is `data: [DONE]`."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n") and "\r" not in text
    events = text[:-2].split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    assert events[-1] == "data: [DONE]"
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def _check_chunk(chunk: dict, chat_id: str, include_usage: bool) -> None:
    assert set(chunk) == _CHUNK_FIELDS if include_usage else _CHUNK_FIELDS - {"usage"}
    assert chunk["id"] == chat_id and chunk["object"] == "chat.completion.chunk"
    assert type(chunk["created"]) is int and isinstance(chunk["model"], str)
    for choice in chunk["choices"]:
        assert set(choice) == _CHOICE_FIELDS and choice["index"] == 0
        assert choice["finish_reason"] in _FINISH_REASONS
        assert set(choice["delta"]) <= _DELTA_FIELDS
        for call in choice["delta"].get("tool_calls", ()):
            assert type(call["index"]) is int and isinstance(call["function"]["arguments"], str)


@pytest.mark.parametrize("include_usage", [True, False])
def test_local_openai_stream_is_strict_sse(local, include_usage):
    local.script(ScriptedReply("Hi there", tool_calls=[{"name": "add", "arguments": {"a": 1}}], prompt_tokens=4))
    body = {"model": "local-chat", "messages": USER, "stream": True, "n": 1, "max_tokens": 2}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = _post(local, "/v1/chat/completions", body)
    assert response.status == 200
    assert response.getheader("Content-Type").split(";")[0] == "text/event-stream"
    chunks = _strict_sse(response.read())
    for chunk in chunks:
        _check_chunk(chunk, chunks[0]["id"], include_usage)
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in with_choices][-1] == "tool_calls"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert text == "Hi there"
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 4
        usage = chunks[-1]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_local_openai_stream_false_is_one_completion(local):
    response = _post(local, "/v1/chat/completions", {"model": "local-chat", "messages": USER, "stream": False, "n": 3})
    assert response.status == 200 and response.getheader("Content-Type").startswith("application/json")
    completion = json.loads(response.read())
    assert completion["object"] == "chat.completion" and type(completion["created"]) is int
    [choice] = completion["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    assert all(type(completion["usage"][k]) is int for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


def _check_ollama_object(line: dict) -> None:
    assert isinstance(line["model"], str) and _RFC3339_Z.match(line["created_at"])
    assert type(line["done"]) is bool and line["message"]["role"] == "assistant"
    assert isinstance(line["message"]["content"], str)
    for call in line["message"].get("tool_calls", ()):
        assert isinstance(call["function"]["name"], str) and isinstance(call["function"]["arguments"], dict)
    if line["done"]:
        assert line["done_reason"] == "stop"
        for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            assert type(line[name]) is int and line[name] > 0
        assert type(line["prompt_eval_count"]) is int and type(line["eval_count"]) is int
    assert datetime.fromisoformat(line["created_at"]).utcoffset().total_seconds() == 0


def test_local_ollama_stream_is_strict_ndjson(local):
    local.script(ScriptedReply("Hi there", tool_calls=[{"name": "add", "arguments": {"a": 1}}]))
    response = _post(local, "/api/chat", {"model": "local-chat", "messages": USER})
    assert response.status == 200 and response.getheader("Content-Type") == "application/x-ndjson"
    raw = response.read().decode()
    assert raw.endswith("\n") and "\n\n" not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    for line in lines:
        _check_ollama_object(line)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == "Hi there"


def test_local_ollama_non_stream_is_one_object(local):
    response = _post(local, "/api/chat", {"model": "local-chat", "messages": USER, "stream": False})
    assert response.status == 200 and response.getheader("Content-Type").startswith("application/json")
    line = json.loads(response.read())
    _check_ollama_object(line)
    assert line["done"] is True and line["message"]["content"].startswith("Hello from")


def test_local_head_answers_like_get_without_a_body(local):
    """`ollama` (the CLI) checks the server with `HEAD /` before every command."""
    connection = http.client.HTTPConnection("127.0.0.1", local.port, timeout=5)
    for path in ("/", "/api/tags", "/v1/models"):
        connection.request("HEAD", path)
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b""
        assert int(response.getheader("Content-Length")) > 0
    sock = connection.sock
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"Ollama is running" and connection.sock is sock
    connection.close()


def test_local_keep_alive_across_requests_and_errors(local):
    connection = http.client.HTTPConnection("127.0.0.1", local.port, timeout=5)
    headers = {"Content-Type": "application/json"}
    sock = None
    for method, path, body, status in [
        ("POST", "/v1/chat/completions", {"model": "local-chat", "messages": USER, "stream": True}, 200),
        ("GET", "/v1/no-such-route", None, 404),
        ("POST", "/api/chat", {"model": "local-chat", "messages": USER}, 200),
        ("POST", "/api/chat", {"model": "nope", "messages": USER}, 404),
        ("GET", "/nowhere", None, 404),
        ("POST", "/v1/chat/completions", {"model": "local-chat", "messages": USER}, 200),
    ]:
        connection.request(method, path, json.dumps(body) if body else None, headers)
        response = connection.getresponse()
        assert response.status == status, path
        response.read()
        sock = sock or connection.sock
        assert connection.sock is sock
    connection.close()


def test_local_accepts_a_chunked_request_body(local):
    """Clients that stream their request body send it chunked, without Content-Length."""
    body = json.dumps({"model": "local-chat", "messages": USER, "stream": False}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", local.port, timeout=5)
    pieces = iter([body[:10], body[10:]])
    connection.request("POST", "/api/chat", pieces, {"Transfer-Encoding": "chunked"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["done"] is True
    assert local.requests[-1].json["messages"] == USER
    connection.request("GET", "/api/version")  # the same connection, not thrown off by the body
    assert json.loads(connection.getresponse().read()) == {"version": "0.12.0"}
    connection.close()
