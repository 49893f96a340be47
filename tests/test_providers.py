"""Both providers over real HTTP against the local test server.

The quirks of other OpenAI-compatible servers, and error lines inside streams, run on mock transports.
"""

from __future__ import annotations

import email.utils
import json
import socket
import time

import httpx
import httpx2
import pytest

from aihub_nb.errors import (
    AuthenticationError,
    ModelNotFoundError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RateLimitError,
    ServerError,
    StreamError,
    ToolArgumentsError,
    UsageError,
)
from aihub_nb.providers import Event, OllamaProvider, OpenAIProvider, ToolCall, Usage, make_provider
from aihub_nb.providers.base import retry_after_seconds
from aihub_nb.recording import MemorySink, recording_transport
from aihub_nb.testing import DEFAULT_MODELS, LocalServer, ScriptedReply

KINDS = ("OPENAI", "OLLAMA")
USER = [{"role": "user", "content": "hi"}]
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    },
}


@pytest.fixture
def srv(server):
    """The session's local server (tests/conftest.py), with no queued replies."""
    return server


def _make(kind: str, srv: LocalServer | None = None, *, url: str | None = None, **kwargs):
    if kind == "OPENAI":
        return make_provider(kind, connection_name="conn", base_url=url or srv.openai_base_url, **kwargs)
    return make_provider(kind, connection_name="conn", host=url or srv.ollama_host, **kwargs)


@pytest.fixture(params=KINDS)
def provider(request, srv):
    made = _make(request.param, srv)
    yield made
    made.close()


@pytest.fixture(params=[True, False], ids=["stream", "whole"])
def stream(request):
    return request.param


def _text(events: list[Event]) -> str:
    return "".join(event.text for event in events)


def _tool_calls(events: list[Event]) -> list[ToolCall]:
    return [call for event in events for call in event.tool_calls or ()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- replies -----------------------------------------------------------------------------------


def test_text_and_usage(srv, provider, stream):
    srv.script(ScriptedReply(chunks=["Hel", "lo", " world"], prompt_tokens=7, completion_tokens=3))
    events = list(provider.chat("local-chat", USER, stream=stream))
    assert _text(events) == "Hello world"
    assert len([e for e in events if e.text]) == (3 if stream else 1)
    assert [(e.usage.prompt_tokens, e.usage.completion_tokens) for e in events if e.usage] == [(7, 3)]
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    sent = srv.requests[-1].json
    assert bool(sent.get("stream")) is stream and sent["messages"] == USER
    if provider.name == "OPENAI":
        assert sent.get("stream_options") == ({"include_usage": True} if stream else None)


@pytest.mark.parametrize("count", [1, 3], ids=["single", "parallel"])
def test_tool_calls(srv, provider, stream, count):
    calls = [{"name": f"tool{i}", "arguments": {"a": i, "b": ["x", {"y": None}]}} for i in range(count)]
    srv.script(ScriptedReply(tool_calls=calls))
    events = list(provider.chat("local-tools", USER, tools=[ADD_TOOL], stream=stream))
    got = _tool_calls(events)
    assert [c.name for c in got] == [c["name"] for c in calls]
    assert [json.loads(c.arguments) for c in got] == [c["arguments"] for c in calls]
    assert all(c.id for c in got) and len({c.id for c in got}) == count
    if provider.name == "OPENAI":  # assembled from the deltas, yielded once at the finish
        [with_calls] = [e for e in events if e.tool_calls]
        assert with_calls.finish_reason == "tool_calls"
    assert srv.requests[-1].json["tools"][0]["function"]["name"] == "add"


def test_tool_results_are_sent_back_in_the_providers_shape(srv, provider):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "add(a=1) and add(a=2)"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
                {"id": "call_b", "type": "function", "function": {"name": "mul", "arguments": '{"a": 2}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "4"},
        {"role": "tool", "tool_call_id": "call_a", "content": "1"},
    ]
    events = list(provider.chat("local-tools", messages, tools=[ADD_TOOL]))
    assert _text(events) == "The tool returned: 4; 1"
    sent = srv.requests[-1].json["messages"]
    if provider.name == "OPENAI":
        assert sent == messages
        return
    assert sent[:2] == messages[:2]
    assert sent[2] == {
        "role": "assistant",
        "tool_calls": [
            {"function": {"name": "add", "arguments": {"a": 1}}},
            {"function": {"name": "mul", "arguments": {"a": 2}}},
        ],
    }
    assert sent[3:] == [
        {"role": "tool", "content": "4", "tool_name": "mul"},
        {"role": "tool", "content": "1", "tool_name": "add"},
    ]


def test_options_are_passed_through(srv, provider):
    list(provider.chat("local-chat", USER, options={"temperature": 0.25, "max_tokens": 5, "seed": 7}))
    sent = srv.requests[-1].json
    if provider.name == "OPENAI":
        assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.25, 5, 7)
    else:
        assert sent["options"] == {"temperature": 0.25, "num_predict": 5, "seed": 7}


def test_list_models(srv, provider):
    models = provider.list_models()
    suffix = "" if provider.name == "OPENAI" else ":latest"
    assert [m["id"] for m in models] == [f"{m}{suffix}" for m in DEFAULT_MODELS]
    json.dumps(models)  # plain data, ready to show or store


def test_recording_transport_sees_each_call(srv):
    sinks = {kind: MemorySink() for kind in KINDS}
    for kind, lib in (("OPENAI", "httpx2"), ("OLLAMA", "httpx")):
        made = _make(kind, srv, transport=recording_transport(sinks[kind], lib=lib))
        assert _text(list(made.chat("local-chat", USER))).startswith("Hello from the aihub_nb demo model")
        made.close()
    for kind in KINDS:
        [call] = sinks[kind].calls
        assert call.status_code == 200 and call.error is None and call.finish_count == 1


# -- errors ------------------------------------------------------------------------------------

FAULTS = [
    ("401", AuthenticationError, 401),
    ("429", RateLimitError, 429),
    ("500", ServerError, 500),
    ("503", ServerError, 503),
    ("drop", StreamError, None),
    ("malformed", StreamError, None),
]


@pytest.mark.parametrize(("fault", "error", "status"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_map_to_errors(srv, provider, stream, fault, error, status):
    srv.script(ScriptedReply.lorem(8, fault=fault, retry_after=2.5))
    with pytest.raises(error) as caught:
        list(provider.chat("local-chat", USER, stream=stream))
    exc = caught.value
    assert type(exc) is error
    assert (exc.connection, exc.status_code) == ("conn", status)
    assert "'conn'" in str(exc) and "\n" not in str(exc)
    if fault == "429":
        assert exc.retry_after == 2.5 and "retry after 2.5 s" in str(exc)
    if fault == "401":
        key_env = "OPENAI_API_KEY" if provider.name == "OPENAI" else "OLLAMA_API_KEY"
        assert f"${key_env}" in str(exc)


def test_unknown_model(provider, stream):
    with pytest.raises(ModelNotFoundError) as caught:
        list(provider.chat("no-such-model", USER, stream=stream))
    assert caught.value.status_code == 404 and caught.value.connection == "conn"
    assert "the endpoint has no model 'no-such-model'" in str(caught.value)
    assert "`%aihub models conn`" in str(caught.value)
    assert ("ollama pull no-such-model" in str(caught.value)) is (provider.name == "OLLAMA")


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable(kind, stream):
    url = f"http://127.0.0.1:{_free_port()}" + ("/v1" if kind == "OPENAI" else "")
    made = _make(kind, url=url)
    message = f"Cannot reach connection 'conn' at {url}: is the server running"
    with pytest.raises(ProviderUnreachableError, match=message):
        list(made.chat("local-chat", USER, stream=stream))
    with pytest.raises(ProviderUnreachableError) as caught:
        made.list_models()
    assert caught.value.connection == "conn" and caught.value.status_code is None


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_remote_api_is_not_asked_whether_it_runs(kind):
    url = "https://api.example.invalid" + ("/v1" if kind == "OPENAI" else "")  # a name no resolver knows
    made = _make(kind, url=url)
    with pytest.raises(ProviderUnreachableError) as caught:
        made.list_models()
    said = str(caught.value)
    assert f"Cannot reach connection 'conn' at {url}: check your network" in said
    assert "is the server running" not in said and "\n" not in said


@pytest.mark.parametrize("kind", KINDS)
def test_timeout(srv, kind, stream):
    made = _make(kind, srv, timeout=0.2)
    srv.script(ScriptedReply("late", first_token_delay=0.6))
    with pytest.raises(ProviderTimeoutError, match="did not answer in time") as caught:
        list(made.chat("local-chat", USER, stream=stream))
    assert caught.value.connection == "conn"


def test_missing_key_for_openai_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    sink = MemorySink()
    with pytest.raises(AuthenticationError) as caught:
        make_provider("OPENAI", connection_name="cloud", transport=recording_transport(sink, lib="httpx2"))
    assert str(caught.value) == (
        "Connection 'cloud' needs an API key: $OPENAI_API_KEY is not set; set it (e.g. %env OPENAI_API_KEY=...) "
        "or use --api-key-env OTHER_VAR."
    )
    assert caught.value.connection == "cloud"
    with pytest.raises(AuthenticationError, match=r"\$MY_KEY is not set; set it \(e\.g\. %env MY_KEY=\.\.\.\)"):
        make_provider("OPENAI", connection_name="c", base_url="https://api.openai.com/v1/", api_key_env="MY_KEY")
    assert sink.calls == []


def test_keys_sent_to_local_servers(srv, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_KEY", "k-env")
    for kwargs, header in [
        ({}, "Bearer not-needed"),
        ({"api_key_env": "MY_KEY"}, "Bearer k-env"),
        ({"api_key": "k-given", "api_key_env": "MY_KEY"}, "Bearer k-given"),
    ]:
        list(_make("OPENAI", srv, **kwargs).chat("local-chat", USER))
        assert srv.requests[-1].headers["authorization"] == header
    list(_make("OLLAMA", srv, api_key_env="MY_KEY").chat("local-chat", USER))
    assert srv.requests[-1].headers["authorization"] == "Bearer k-env"


def test_make_provider():
    made = make_provider("openai", connection_name="c", base_url="http://127.0.0.1:1/v1")
    assert isinstance(made, OpenAIProvider) and made.name == "OPENAI"
    made = make_provider("Ollama", connection_name="c", base_url="http://127.0.0.1:2")
    assert isinstance(made, OllamaProvider) and made.url == "http://127.0.0.1:2" and made.name == "OLLAMA"
    with pytest.raises(UsageError, match="valid providers are: OLLAMA, OPENAI"):
        make_provider("claude", connection_name="c")


def test_ollama_refuses_tool_arguments_that_are_not_an_object(srv):
    made = _make("OLLAMA", srv)
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "[1, 2]"}}
    with pytest.raises(ToolArgumentsError, match="'add'"):
        list(made.chat("local-chat", [*USER, {"role": "assistant", "content": "", "tool_calls": [call]}]))
    assert srv.requests == []


def test_retry_after_seconds():
    assert retry_after_seconds(httpx.Headers({"Retry-After": "3"})) == 3
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500", "Retry-After": "3"})) == 1.5
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < retry_after_seconds(httpx.Headers({"Retry-After": in_a_minute})) <= 60
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


# -- OpenAI-compatible servers' quirks, on a mock transport ----------------------------------------


def _sse(*events: dict | str) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n"
        for e in (*events, "[DONE]")
    )


def _chunk(choices: list, usage: dict | None = None) -> dict:
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return {**chunk, "choices": choices, "usage": usage}


def _delta(content: str, finish_reason: str | None = None) -> dict:
    return {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}


def test_openai_server_rejecting_stream_options():
    """Older vLLM / llama.cpp: 400 on stream_options, usage in the last content chunk, empty choices."""
    bodies = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stream_options" in body:
            message = "Unrecognized request argument supplied: stream_options"
            error = {"error": {"message": message, "code": 400}}
            return httpx2.Response(400, json=error)
        usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        content = _sse(_chunk([]), _chunk([_delta("Hi")]), _chunk([_delta(" there", "stop")], usage))
        return httpx2.Response(200, content=content, headers={"content-type": "text/event-stream"})

    made = _make("OPENAI", url="http://compat.test/v1", transport=httpx2.MockTransport(answer))
    for _ in range(2):
        events = list(made.chat("m", USER))
        assert _text(events) == "Hi there"
        assert events[-1] == Event(text=" there", usage=Usage(4, 2), finish_reason="stop")
    # the first chat learnt that the server rejects stream_options: the second sends it no more
    assert ["stream_options" in body for body in bodies] == [True, False, False]


def test_openai_tool_call_deltas_without_finish_reason():
    """Some compatible servers send no finish reason: the calls are yielded at the end of the stream."""
    arguments = ['{"a"', ": 1}"]
    deltas = [
        {"index": 0, "id": "c0", "type": "function", "function": {"name": "add", "arguments": ""}},
        {"index": 1, "id": "c1", "type": "function", "function": {"name": "mul", "arguments": "{}"}},
        *({"index": 0, "function": {"arguments": part}} for part in arguments),
    ]
    choices = ({"index": 0, "delta": {"tool_calls": [d]}, "finish_reason": None} for d in deltas)
    content = _sse(*(_chunk([choice]) for choice in choices))

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=content, headers={"content-type": "text/event-stream"})

    made = _make("OPENAI", url="http://compat.test/v1", transport=httpx2.MockTransport(answer))
    events = list(made.chat("m", USER))
    # each delta is announced as it arrives; the assembled calls come at the end
    assert events[:-1] == [Event(tool_delta=True)] * 4
    assert events[-1] == Event(tool_calls=[ToolCall("c0", "add", '{"a": 1}'), ToolCall("c1", "mul", "{}")])


def test_openai_error_event_mid_stream():
    content = _sse(_chunk([_delta("Hi")]), {"error": {"message": "model crashed"}})

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=content, headers={"content-type": "text/event-stream"})

    made = _make("OPENAI", url="http://compat.test/v1", transport=httpx2.MockTransport(answer))
    with pytest.raises(StreamError, match="model crashed"):
        list(made.chat("m", USER))


def test_ollama_error_line_mid_stream():
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"error": "out of memory"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"".join(json.dumps(line).encode() + b"\n" for line in lines))

    made = _make("OLLAMA", url="http://compat.test", transport=httpx.MockTransport(answer))
    with pytest.raises(StreamError, match="out of memory") as caught:
        list(made.chat("m", USER))
    assert caught.value.connection == "conn"
