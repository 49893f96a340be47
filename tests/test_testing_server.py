"""aihub_nb.testing.LocalServer, exercised through the official openai and ollama clients."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from aihub_nb.testing import DEFAULT_MODELS, LocalServer, RecordedRequest, ScriptedReply

USER = [{"role": "user", "content": "hi there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} two numbers",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {}}},
        },
    }
    for name in ("add", "mul")
]


@pytest.fixture(scope="module")
def server():
    with LocalServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()


@pytest.fixture(scope="module")
def oa(server):
    return openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def ol(server):
    return ollama.Client(host=server.ollama_host)


def _sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    return [event.removeprefix("data: ") for event in text.strip("\n").split("\n\n")]


def _assemble_tool_calls(chunks) -> list[dict]:
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                if delta.index not in calls:
                    assert delta.id.startswith("call_") and delta.type == "function"
                    assert delta.function.arguments == ""
                    calls[delta.index] = {"id": delta.id, "name": delta.function.name, "arguments": ""}
                else:
                    assert delta.id is None and delta.function.name is None
                    calls[delta.index]["arguments"] += delta.function.arguments
    return [calls[i] for i in sorted(calls)]


# -- addresses and model lists --------------------------------------------------------------------
def test_addresses(server):
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.openai_base_url == server.url + "/v1"
    assert server.ollama_host == server.url


def test_openai_models_list(oa):
    models = oa.models.list().data
    assert [m.id for m in models] == list(DEFAULT_MODELS)
    assert {(m.object, m.owned_by) for m in models} == {("model", "aihub_nb")}
    assert oa.models.retrieve("local-tools").id == "local-tools"


def test_ollama_list_and_version(server, ol):
    models = ol.list().models
    assert [m.model for m in models] == [m + ":latest" for m in DEFAULT_MODELS]
    assert models[0].details.format == "gguf" and len(models[0].digest) == 64
    assert models[0].modified_at.tzinfo is not None
    assert httpx.get(server.url + "/api/version").json()["version"]
    assert httpx.get(server.url + "/").text == "Ollama is running"


# -- OpenAI chat ----------------------------------------------------------------------------------
def test_openai_non_stream(server, oa):
    server.script(ScriptedReply("Hello world!", prompt_tokens=7))
    done = oa.chat.completions.create(model="local-chat", messages=USER)
    assert done.id.startswith("chatcmpl-") and done.object == "chat.completion"
    assert done.model == "local-chat"
    choice = done.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Hello world!"
    assert choice.message.refusal is None and choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (7, 3, 10)


def test_openai_stream_with_usage(server, oa):
    server.script(ScriptedReply("Hello world!", chunks=["Hel", "lo world", "!"], completion_tokens=9))
    chunks = list(
        oa.chat.completions.create(
            model="local-chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in middle] == ["Hel", "lo world", "!"]
    assert finish.choices[0].finish_reason == "stop" and finish.choices[0].delta.content is None
    assert all(c.usage is None for c in chunks[:-1])
    assert usage.choices == []
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (2, 9)


def test_openai_raw_sse(server):
    body = {"model": "local-chat", "messages": USER, "stream": True}
    with httpx.Client() as client:
        plain = client.post(server.openai_base_url + "/chat/completions", json=body)
        with_usage = client.post(
            server.openai_base_url + "/chat/completions",
            json={**body, "stream_options": {"include_usage": True}},
        )
    assert plain.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert plain.headers["transfer-encoding"] == "chunked"
    events = _sse_events(plain.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}

    events = _sse_events(with_usage.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_openai_stream_single_tool_call(server, oa):
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": "x"}, "id": "call_fixed"}]))
    chunks = list(oa.chat.completions.create(model="local-tools", messages=USER, tools=TOOLS, stream=True))
    calls = _assemble_tool_calls(chunks)
    assert calls == [{"id": "call_fixed", "name": "add", "arguments": '{"a":2,"b":"x"}'}]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_stream_parallel_tool_calls(server, oa):
    server.script(
        ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 1}}, {"name": "mul", "arguments": '{"a": 3}'}])
    )
    chunks = list(oa.chat.completions.create(model="local-tools", messages=USER, tools=TOOLS, stream=True))
    calls = _assemble_tool_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("add", {"a": 1}), ("mul", {"a": 3})]
    assert calls[0]["id"] != calls[1]["id"]


def test_openai_non_stream_tool_calls(server, oa):
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 1}}, {"name": "mul"}]))
    choice = oa.chat.completions.create(model="local-tools", messages=USER, tools=TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(t.type, t.function.name, t.function.arguments) for t in choice.message.tool_calls] == [
        ("function", "add", '{"a":1}'),
        ("function", "mul", "{}"),
    ]


# -- Ollama chat ----------------------------------------------------------------------------------
def test_ollama_stream_and_final_chunk(server, ol):
    server.script(ScriptedReply("Hello world!", token_delay=0.01))
    parts = list(ol.chat(model="local-chat", messages=USER, stream=True))
    assert [p.message.content for p in parts[:-1]] == ["Hello", " world", "!"]
    assert not any(p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert (final.prompt_eval_count, final.eval_count) == (2, 3)
    assert final.eval_duration >= 20_000_000  # two 10 ms pauses between the three chunks
    parts_sum = final.load_duration + final.prompt_eval_duration + final.eval_duration
    assert 0 < parts_sum <= final.total_duration


def test_ollama_non_stream_tool_calls(server, ol):
    calls = [{"name": "add", "arguments": {"a": 2}}, {"name": "mul", "arguments": {"b": 3}}]
    server.script(ScriptedReply(tool_calls=calls))
    done = ol.chat(model="local-tools:latest", messages=USER, tools=TOOLS)
    assert done.done and done.done_reason == "stop" and done.model == "local-tools:latest"
    assert [(t.function.name, dict(t.function.arguments)) for t in done.message.tool_calls] == [
        ("add", {"a": 2}),
        ("mul", {"b": 3}),
    ]


def test_ollama_stream_tool_calls(server, ol):
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2}}]))
    parts = list(ol.chat(model="local-tools", messages=USER, tools=TOOLS, stream=True))
    calls = [t for p in parts for t in p.message.tool_calls or ()]
    assert [(t.function.name, dict(t.function.arguments)) for t in calls] == [("add", {"a": 2})]
    assert parts[-1].done


def test_ollama_streams_by_default(server):
    server.script(ScriptedReply("one two"))
    response = httpx.post(server.url + "/api/chat", json={"model": "local-chat", "messages": USER})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, True]
    assert lines[0]["created_at"].endswith("Z")


# -- faults ---------------------------------------------------------------------------------------
def test_openai_429_with_retry_after(server, oa):
    server.script(ScriptedReply(fault="429", retry_after=2))
    with pytest.raises(openai.RateLimitError) as caught:
        oa.chat.completions.create(model="local-chat", messages=USER)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"


def test_openai_retries_after_a_fault(server):
    server.script(ScriptedReply(fault="503", retry_after=0.05), ScriptedReply("recovered"))
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=1)
    done = client.chat.completions.create(model="local-chat", messages=USER)
    assert done.choices[0].message.content == "recovered"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
        ("401", openai.AuthenticationError, 401),
    ],
)
def test_openai_status_faults(server, oa, fault, error, status):
    server.script(ScriptedReply(fault=fault))
    with pytest.raises(error) as caught:
        oa.chat.completions.create(model="local-chat", messages=USER, stream=True)
    assert caught.value.status_code == status


def test_openai_unknown_model(oa):
    with pytest.raises(openai.NotFoundError) as caught:
        oa.chat.completions.create(model="gpt-nope", messages=USER)
    assert caught.value.code == "model_not_found"
    assert "gpt-nope" in caught.value.message


def test_openai_drop(server, oa):
    server.script(ScriptedReply("a b c d e f", fault="drop", drop_after=2), ScriptedReply("a b c d", fault="drop"))
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa.chat.completions.create(model="local-chat", messages=USER, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "a", " b"]
    with pytest.raises(openai.APIConnectionError):
        oa.chat.completions.create(model="local-chat", messages=USER)


def test_openai_malformed(server, oa):
    server.script(ScriptedReply("a b c d", fault="malformed", drop_after=1), ScriptedReply("a b", fault="malformed"))
    seen = []
    with pytest.raises(json.JSONDecodeError):
        for chunk in oa.chat.completions.create(model="local-chat", messages=USER, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "a"]
    with pytest.raises(json.JSONDecodeError):
        oa.chat.completions.create(model="local-chat", messages=USER)


def test_openai_bad_json_body(server):
    response = httpx.post(server.openai_base_url + "/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_ollama_faults(server, ol):
    server.script(ScriptedReply(fault="429", retry_after=0.5), ScriptedReply(fault="500"), ScriptedReply(fault="401"))
    with pytest.raises(ollama.ResponseError) as caught:
        ol.chat(model="local-chat", messages=USER)
    assert caught.value.status_code == 429
    recorded = server.requests[-1]
    assert recorded.api == "ollama" and recorded.path == "/api/chat"
    with pytest.raises(ollama.ResponseError) as caught:
        list(ol.chat(model="local-chat", messages=USER, stream=True))
    assert caught.value.status_code == 500
    with pytest.raises(ollama.ResponseError) as caught:
        ol.chat(model="local-chat", messages=USER)
    assert caught.value.status_code == 401


def test_ollama_retry_after_header(server):
    server.script(ScriptedReply(fault="503", retry_after=0.5))
    response = httpx.post(server.url + "/api/chat", json={"model": "local-chat", "messages": USER})
    assert response.status_code == 503 and response.headers["retry-after"] == "0.5"
    assert "server busy" in response.json()["error"]


def test_ollama_unknown_model(ol):
    with pytest.raises(ollama.ResponseError) as caught:
        ol.chat(model="llama-nope", messages=USER)
    assert caught.value.status_code == 404
    assert caught.value.error == 'model "llama-nope" not found, try pulling it first'


def test_ollama_drop_and_malformed(server, ol):
    server.script(ScriptedReply("a b c d e", fault="drop", drop_after=2), ScriptedReply("a b c d e", fault="malformed"))
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        for part in ol.chat(model="local-chat", messages=USER, stream=True):
            seen.append(part.message.content)
    assert seen == ["a", " b"]
    seen = []
    with pytest.raises(json.JSONDecodeError):
        for part in ol.chat(model="local-chat", messages=USER, stream=True):
            seen.append(part.message.content)
    assert seen == ["a", " b", " c"]


def test_first_token_delay(server, oa):
    server.script(ScriptedReply("slow start", first_token_delay=0.2))
    started = time.perf_counter()
    stream = oa.chat.completions.create(model="local-chat", messages=USER, stream=True)
    assert next(stream).choices[0].delta.role == "assistant"
    assert next(stream).choices[0].delta.content == "slow"
    assert time.perf_counter() - started >= 0.2
    stream.close()


# -- authentication -------------------------------------------------------------------------------
def test_api_key():
    with LocalServer(api_key="sk-test") as srv:
        good = openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)
        assert good.chat.completions.create(model="local-chat", messages=USER).choices[0].message.content
        bad = openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.models.list()
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=srv.ollama_host).list()
        assert refused.value.status_code == 401
        keyed = ollama.Client(host=srv.ollama_host, headers={"Authorization": "Bearer sk-test"})
        assert len(keyed.list().models) == len(DEFAULT_MODELS)
        assert [r.headers.get("authorization") for r in srv.requests] == [
            "Bearer sk-test",
            "Bearer sk-wrong",
            None,
            "Bearer sk-test",
        ]


# -- the demo model -------------------------------------------------------------------------------
def test_demo_model_echoes_and_counts_turns(oa):
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    text = oa.chat.completions.create(model="local-chat", messages=messages).choices[0].message.content
    assert text.startswith('Hello from the aihub_nb demo model (turn 2). You said: "second"\n')
    assert "| the hub | try |" in text and "```python\n" in text  # a table and a code block to render
    assert "%aihub setup" in text and "no real model" in text  # and how to connect a real one


def test_demo_model_reply_renders_as_a_table_and_code(hub):
    from aihub_nb.views import reply_view

    hub.connect_local()
    shown = reply_view(hub.chat("demo").send("Hi <b>there</b>").text)
    assert "<table>" in shown.data and "<pre><code>from aihub_nb import Hub" in shown.data
    assert "<b>there</b>" not in shown.data  # what the user typed is quoted back, escaped


def test_demo_model_calls_tools_in_parallel(oa):
    text = 'Please add(a=2, b="x") and then mul(a=3.5, b=[1, 2]); not sub(a=1).'
    messages = [{"role": "user", "content": text}]
    chunks = list(oa.chat.completions.create(model="local-chat", messages=messages, tools=TOOLS, stream=True))
    calls = _assemble_tool_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("add", {"a": 2, "b": "x"}),
        ("mul", {"a": 3.5, "b": [1, 2]}),
    ]


def test_demo_model_without_tools_does_not_call(ol):
    done = ol.chat(model="local-tools", messages=[{"role": "user", "content": "add(a=1)"}])
    assert done.message.tool_calls is None
    assert done.message.content.startswith('Hello from the aihub_nb demo model (turn 1). You said: "add(a=1)"')


def test_demo_model_reads_tool_results(ol):
    messages = [
        {"role": "user", "content": "add(a=1) mul(a=2)"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "add", "arguments": {}}}]},
        {"role": "tool", "content": "3", "tool_name": "add"},
        {"role": "tool", "content": "4", "tool_name": "mul"},
    ]
    done = ol.chat(model="local-tools", messages=messages, tools=TOOLS)
    assert done.message.content == "The tool returned: 3; 4"


# -- scripting, recording, ScriptedReply ------------------------------------------------------------------
def test_requests_are_recorded(server, oa, ol):
    server.script(ScriptedReply("one"), ScriptedReply("two"))
    assert oa.chat.completions.create(model="local-chat", messages=USER).choices[0].message.content == "one"
    assert ol.chat(model="local-chat", messages=USER).message.content == "two"
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.api) == ("POST", "/v1/chat/completions", "openai")
    assert first.json == {"model": "local-chat", "messages": USER}
    assert first.headers["authorization"] == "Bearer x"
    assert (second.path, second.api, second.json["stream"]) == ("/api/chat", "ollama", False)
    server.reset()
    assert server.requests == []


def test_reply_lorem_and_validation(server, oa):
    reply = ScriptedReply.lorem(50)
    assert len(reply.chunks) == 50 and reply.text == "".join(reply.chunks)
    assert all(len(chunk.split()) == 1 for chunk in reply.chunks)
    server.script(reply)
    chunks = list(
        oa.chat.completions.create(
            model="local-chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.completion_tokens == 50
    with pytest.raises(ValueError):
        ScriptedReply(fault="418")
    with pytest.raises(ValueError):
        ScriptedReply("abc", chunks=["x"])


def test_keep_alive(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    body = json.dumps({"model": "local-chat", "messages": USER, "stream": True})
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert connection.getresponse().read().endswith(b"data: [DONE]\n\n")
    sock = connection.sock
    connection.request("GET", "/api/tags")
    assert connection.getresponse().status == 200
    assert sock is not None and connection.sock is sock
    connection.close()


def test_command_line():
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "aihub_nb.testing", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        base_url = line.split("OpenAI base URL ")[1].split()[0]
        host = line.split("Ollama host ")[1].split()[0]
        assert base_url == host + "/v1"
        assert httpx.get(host + "/api/version").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_reply_is_a_deprecated_name_of_scripted_reply(server):
    import aihub_nb
    import aihub_nb.testing

    with pytest.warns(DeprecationWarning, match="use aihub_nb.testing.ScriptedReply"):
        from aihub_nb.testing import Reply
    assert Reply is ScriptedReply and Reply is not aihub_nb.Reply
    assert "Reply" not in aihub_nb.testing.__all__
    server.script(Reply("Old tests still run."))
    oa = openai.OpenAI(base_url=server.openai_base_url, api_key="x")
    answer = oa.chat.completions.create(model="local-chat", messages=USER)
    assert answer.choices[0].message.content == "Old tests still run."
    with pytest.raises(AttributeError, match="NoSuchThing"):
        aihub_nb.testing.NoSuchThing  # noqa: B018


def test_the_demo_server_loads_only_when_used_and_needs_nothing_above_it():
    code = (
        "import sys, aihub_nb\n"
        "print(sorted(m for m in sys.modules if m.startswith('aihub_nb.')))\n"
        "import aihub_nb.demo\n"
        "print(sorted(m for m in sys.modules if m.startswith('aihub_nb.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "['aihub_nb.demo', 'aihub_nb.demo.model', 'aihub_nb.demo.server']"]
