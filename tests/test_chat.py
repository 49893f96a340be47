"""Chats over real HTTP through the official openai and ollama clients, against the local server.

Every test asserts on what the user gets back and on what the store holds afterwards.
"""

from __future__ import annotations

import _thread
import json
import os
import socket
import threading
import time

import pytest

from aihub_nb import Hub
from aihub_nb.errors import (
    AuthenticationError,
    ModelNotFoundError,
    NotFoundError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    ServerError,
    StreamError,
    ThreadBusyError,
    UsageError,
)
from aihub_nb.testing import ScriptedReply
from helpers import PROVIDERS, chat_requests as _chat_requests, connect as _connect

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_two_turns_continue_in_a_fresh_hub(tmp_path, server, provider, stream):
    hub = Hub(tmp_path)
    _connect(hub, server, provider)
    server.script(ScriptedReply(text="Hi Ada, nice to meet you."))
    first = hub.chat("intro").send("My name is Ada.", stream=stream)
    assert first.text == "Hi Ada, nice to meet you."
    assert first.status == "completed"
    hub.close()

    again = Hub(tmp_path)  # a kernel restart: a new Hub on the same file
    server.script(ScriptedReply(text="Your name is Ada."))
    second = again.chat("intro").send("What is my name?", stream=stream)
    assert second.text == "Your name is Ada."
    # absent, "stream" means false to OpenAI and true to Ollama
    assert [bool(r.json.get("stream", r.api == "ollama")) for r in _chat_requests(server)] == [stream, stream]
    sent = _chat_requests(server)[-1].json["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "My name is Ada."),
        ("assistant", "Hi Ada, nice to meet you."),
        ("user", "What is my name?"),
    ]
    messages = again.store.find("Message", threadId=again.get_chat("intro").thread_id)
    assert [(m["type"], m["content"]) for m in messages] == [
        ("user", "My name is Ada."),
        ("chatModel", "Hi Ada, nice to meet you."),
        ("user", "What is my name?"),
        ("chatModel", "Your name is Ada."),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_turn_leaves_every_record(hub, server, provider):
    conn = _connect(hub, server, provider, name="rec")
    server.script(ScriptedReply(text="One two three.", chunks=["One", " two", " three."], prompt_tokens=7, completion_tokens=3))
    reply = hub.chat("rows", model="rec").send("Count to three")
    store = hub.store
    chat = store.first("Chat", name="rows")
    assert chat["type"] == "chatModel" and chat["sourceId"] == conn["id"]
    thread_id = chat["references"]["thread"]
    thread = store.get("MessageThread", thread_id)
    assert thread["lockingJob"] is None
    assert thread["references"]["chat"] == chat["id"]

    user, model = store.find("Message", threadId=thread_id)
    assert (user["type"], user["sourceId"], user["content"]) == ("user", "user", "Count to three")
    assert (model["type"], model["sourceId"], model["content"]) == ("chatModel", conn["id"], "One two three.")
    assert user["createdAt"] <= model["createdAt"]

    (stream,) = store.find("ResponseStream")
    assert stream["sourceId"] == conn["id"] and stream["status"] == "completed"
    assert stream["resultMessages"] == [
        {
            "type": "chatModel", "role": "assistant", "sourceId": conn["id"], "content": "One two three.",
            "data": {"finish_reason": "stop"},
        }
    ]
    assert model["data"] == {"finish_reason": "stop"}
    assert model["references"]["stream"] == stream["id"]

    calls = [c for c in store.find("NetworkCall") if c["endpoint"].endswith(("/chat/completions", "/api/chat"))]
    assert len(calls) == 1
    call = calls[0]
    assert call["method"] == "POST" and call["status"] == "success" and call["statusCode"] == 200
    assert call["durationMs"] > 0
    assert json.loads(call["body"])["messages"] == [{"role": "user", "content": "Count to three"}]
    assert stream["rawOutput"] == call["response"]  # the stream exactly as received
    if provider == "OPENAI":
        assert call["response"].rstrip().endswith("data: [DONE]")
        assert '"include_usage": true' in call["body"].replace('":true', '": true')
    else:
        last = json.loads(call["response"].strip().splitlines()[-1])
        assert last["done"] is True and last["eval_count"] == 3
    assert call["references"]["stream"] == stream["id"]

    (job,) = store.find("Jobs")
    assert job["status"] == "completed" and job["type"] == "chat.turn"
    assert job["startedAt"] <= job["finishedAt"]
    assert job["id"] == reply.ids["job"] == stream["references"]["job"]
    log = store.get("TextLog", job["textLogId"])["text"]
    assert "model call completed" in log

    metrics = {m["name"]: m for m in store.find("Metric")}
    assert {"latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "tokens_per_s"} <= set(metrics)
    assert metrics["prompt_tokens"]["value"] == 7 and metrics["completion_tokens"]["value"] == 3
    assert metrics["ttft_ms"]["value"] <= metrics["latency_ms"]["value"]
    assert metrics["latency_ms"]["dimensions"] == {
        "provider": provider, "model": "local-chat", "connection": "rec", "chat": "rows", "status": "completed",
        "finish_reason": "stop",
    }
    assert reply.usage == {"prompt_tokens": 7, "completion_tokens": 3}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_yields_text_as_it_arrives(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply(text="a b c", chunks=["a", " b", " c"], token_delay=0.15))
    chat = hub.chat("s")
    arrivals = []
    for piece in chat.stream("go"):
        arrivals.append((piece, time.perf_counter()))
    assert [p for p, _ in arrivals] == ["a", " b", " c"]
    assert arrivals[-1][1] - arrivals[0][1] >= 0.2  # pieces came apart (0.3 s), not all at the end
    assert chat.last_reply.text == "a b c"


def test_slow_first_token_shows_in_ttft(hub, server):
    _connect(hub, server, "OPENAI")
    server.script(ScriptedReply(text="late", first_token_delay=0.3))
    reply = hub.chat("slow").send("hi")
    assert reply.text == "late"
    assert reply.metrics["ttft_ms"] >= 300


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_is_retried_after_retry_after(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply(fault="429", retry_after=0.4), ScriptedReply(text="made it"))
    started = time.perf_counter()
    reply = hub.chat("rl").send("hi")
    assert reply.text == "made it"
    assert time.perf_counter() - started >= 0.4
    calls = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    assert [(c["statusCode"], c["status"]) for c in calls] == [(429, "error"), (200, "success")]
    stream = hub.store.find("ResponseStream")[-1]
    assert stream["rawOutput"] == calls[-1]["response"]  # the failed attempt is not part of the stream
    assert "retrying" in hub.store.get("TextLog", hub.store.find("Jobs")[-1]["textLogId"])["text"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["500", "503"])
def test_5xx_retry_after_is_honoured(hub, server, provider, fault):
    # a busy server says when to come back: neither the default 0.5 + 1 s nor sooner than asked
    _connect(hub, server, provider)
    server.script(ScriptedReply(fault=fault, retry_after=0.3), ScriptedReply(fault=fault, retry_after=0.3), ScriptedReply("back"))
    started = time.perf_counter()
    reply = hub.chat("busy").send("hi")
    seconds = time.perf_counter() - started
    assert reply.text == "back"
    assert 0.6 <= seconds < 1.3
    posts = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    assert [c["statusCode"] for c in posts] == [int(fault), int(fault), 200]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_5xx_fails_after_bounded_retries(hub, server, provider, monkeypatch):
    from aihub_nb import chat as chat_module

    monkeypatch.setattr(chat_module, "_backoff", lambda attempt, retry_after: 0.01)
    _connect(hub, server, provider, name="flaky")
    server.script(*[ScriptedReply(fault="500") for _ in range(chat_module.MAX_RETRIES + 1)])
    with pytest.raises(ServerError) as caught:
        hub.chat("down").send("hi")
    assert "flaky" in str(caught.value) and caught.value.status_code == 500
    # the same answer every time: not "try again later", but what is likely wrong
    assert "answered HTTP 500 to all 4 attempts in the same way" in str(caught.value)
    assert "try again later" not in str(caught.value).split("The server said:")[0]
    posts = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    assert len(posts) == chat_module.MAX_RETRIES + 1 and {c["status"] for c in posts} == {"error"}
    job = hub.store.find("Jobs")[-1]
    assert job["status"] == "failed" and "ServerError" in job["error"]
    assert hub.store.find("ResponseStream")[-1]["status"] == "failed"
    asked = hub.store.find("Message")[-1]
    assert asked["type"] == "user" and asked["data"] == {"status": "failed"}  # kept, marked failed
    assert "You (failed): hi" in hub.get_chat("down")._repr_mimebundle_()["text/plain"]
    assert hub.store.find("Metric", name="error")[-1]["dimensions"]["status"] == "failed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dropped_stream_keeps_the_partial_reply(hub, server, provider):
    _connect(hub, server, provider, name="dropper")
    server.script(ScriptedReply(text="alpha beta gamma delta epsilon", fault="drop", drop_after=2))
    with pytest.raises(StreamError) as caught:
        hub.chat("cut").send("hi")
    assert "dropper" in str(caught.value)
    stream = hub.store.find("ResponseStream")[-1]
    assert stream["status"] == "failed"
    assert "alpha" in stream["rawOutput"] and "gamma" not in stream["rawOutput"]
    assert stream["resultMessages"][0]["content"] == "alpha beta"
    partial = hub.store.find("Message")[-1]
    assert (partial["type"], partial["content"], partial["data"]) == ("chatModel", "alpha beta", {"status": "failed"})
    call = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"][-1]
    assert call["status"] == "error" and call["error"]
    assert hub.store.find("Jobs")[-1]["status"] == "failed"
    assert hub.store.get("MessageThread", hub.get_chat("cut").thread_id)["lockingJob"] is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_chunk_is_a_stream_error(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply(text="fine so far then broken", fault="malformed", drop_after=2))
    with pytest.raises(StreamError):
        hub.chat("bad").send("hi")
    stream = hub.store.find("ResponseStream")[-1]
    assert stream["status"] == "failed" and "fine" in stream["rawOutput"]


def test_missing_key_for_openai_names_the_variable(hub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hub.connect("OPENAI", "gpt-4o-mini", name="cloud")
    with pytest.raises(AuthenticationError) as caught:
        hub.chat("c", model="cloud").send("hi")
    assert "OPENAI_API_KEY" in str(caught.value) and "cloud" in str(caught.value)
    assert hub.store.find("Jobs")[-1]["status"] == "failed"
    assert hub.store.find("NetworkCall") == []  # nothing was sent


def test_wrong_key_is_401_and_the_key_is_nowhere_in_the_file(tmp_path, monkeypatch):
    from aihub_nb.testing import LocalServer

    secret = "sk-test-" + "x7Q2" * 8
    monkeypatch.setenv("AIHUB_TEST_KEY", secret)
    with LocalServer(api_key=secret) as guarded:
        hub = Hub(tmp_path)
        hub.connect("OPENAI", "local-chat", name="guarded", base_url=guarded.openai_base_url, api_key_env="AIHUB_TEST_KEY")
        assert hub.chat("ok").send("hi").status == "completed"
        assert guarded.requests[-1].headers["authorization"] == f"Bearer {secret}"
        monkeypatch.setenv("AIHUB_TEST_KEY", "sk-wrong-" + "0" * 20)
        with pytest.raises(AuthenticationError) as caught:
            hub.chat("ok").send("again")
        assert "AIHUB_TEST_KEY" in str(caught.value) and caught.value.status_code == 401
        shown = json.dumps(hub.connections()) + json.dumps(hub.store.find("NetworkCall"))
        assert secret not in shown and "[redacted]" in shown
        hub.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("aihub.db"))
    assert secret.encode() not in data
    assert b"Bearer [redacted]" in data


def test_explicit_key_is_used_but_never_stored(tmp_path):
    from aihub_nb.testing import LocalServer

    secret = "sk-given-" + "k" * 24
    with LocalServer(api_key=secret) as guarded:
        hub = Hub(tmp_path)
        view = hub.connect("OPENAI", "local-chat", name="given", base_url=guarded.openai_base_url, api_key=secret)
        assert secret not in json.dumps(view) and view["api key"].startswith("given in this session")
        assert hub.chat("g").send("hi").status == "completed"
        hub.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("aihub.db"))
    assert secret.encode() not in data


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_model_is_a_clear_404(hub, server, provider):
    _connect(hub, server, provider, name="typo", model="no-such-model")
    with pytest.raises(ModelNotFoundError) as caught:
        hub.chat("t").send("hi")
    assert caught.value.status_code == 404 and "no-such-model" in str(caught.value)
    assert hub.store.find("Jobs")[-1]["status"] == "failed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_refused_connection(hub, provider):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if provider == "OPENAI":
        hub.connect("OPENAI", "m", name="gone", base_url=f"http://127.0.0.1:{port}/v1")
    else:
        hub.connect("OLLAMA", "m", name="gone", host=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderUnreachableError) as caught:
        hub.chat("g").send("hi")
    assert "gone" in str(caught.value)
    call = hub.store.find("NetworkCall")[-1]
    assert call["status"] == "error" and call["statusCode"] is None and call["error"]
    assert hub.store.find("Jobs")[-1]["status"] == "failed"


def test_timeout(hub, server):
    _connect(hub, server, "OPENAI", name="patient", timeout=0.3)
    server.script(ScriptedReply(text="too late", first_token_delay=1.5))
    with pytest.raises(ProviderTimeoutError) as caught:
        hub.chat("t").send("hi")
    assert "patient" in str(caught.value)
    assert hub.store.find("Jobs")[-1]["status"] == "failed"


def test_concurrent_turn_on_the_same_thread_is_refused(hub, server):
    _connect(hub, server, "OPENAI")
    server.script(ScriptedReply(text="slow reply", first_token_delay=0.8))
    thread_id = hub.chat("busy").thread_id
    results = {}

    def first_turn():
        results["first"] = hub.chat("busy").send("one")

    worker = threading.Thread(target=first_turn)
    worker.start()
    deadline = time.time() + 5
    while time.time() < deadline:
        if hub.store.get("MessageThread", thread_id)["lockingJob"]:
            break
        time.sleep(0.01)
    with pytest.raises(ThreadBusyError) as caught:
        hub.chat("busy").send("two")
    assert "busy" in str(caught.value)
    worker.join()
    assert results["first"].text == "slow reply"
    contents = [m["content"] for m in hub.get_chat("busy").messages()]
    assert contents == ["one", "slow reply"]  # nothing interleaved
    jobs = hub.store.find("Jobs")
    assert [j["status"] for j in jobs] == ["completed", "failed"]


def test_lock_left_by_a_dead_process_is_recovered(hub, server):
    _connect(hub, server, "OPENAI")
    chat = hub.chat("orphan")
    log = hub.store.create("TextLog")
    dead = hub.store.create("Jobs", name="crashed", type="chat.turn", status="running", textLogId=log["id"], pid=2**22 + 12345)
    hub.store.update("MessageThread", chat.thread_id, lockingJob=dead["id"])
    assert chat.send("still there?").status == "completed"
    assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ctrl_c_mid_stream_keeps_the_partial_reply(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply.lorem(200, token_delay=0.01))
    chat = hub.chat("stop")
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        chat.send("talk for a while")
    timer.cancel()
    stream = hub.store.find("ResponseStream")[-1]
    assert stream["status"] == "interrupted"
    partial = hub.store.find("Message")[-1]
    assert partial["data"] == {"status": "interrupted"} and len(partial["content"].split()) > 5
    assert stream["rawOutput"]
    job = hub.store.find("Jobs")[-1]
    assert job["status"] == "interrupted" and "interrupted" in job["error"]  # stopped, not an error
    latency = hub.store.find("Metric", name="latency_ms")[-1]
    assert latency["dimensions"]["status"] == "interrupted" and hub.store.find("Metric", name="error") == []
    assert hub.summary()["errors"].sum() == 0 and hub.summary()["calls"].sum() == 1
    asked = [m for m in hub.store.find("Message") if m["type"] == "user"][-1]
    assert asked["data"] == {"status": "interrupted"}
    assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] is None
    server.script(ScriptedReply(text="back"))
    assert chat.send("are you there?").text == "back"  # the thread is usable again


def test_new_chat_without_model_uses_the_default_connection(hub, server):
    _connect(hub, server, "OPENAI", name="first")
    _connect(hub, server, "OLLAMA", name="second")
    assert [c["name"] for c in hub.connections() if c["default"]] == ["first"]
    chat = hub.chat("d")
    assert chat.source_id == hub.connection("first")["id"]
    hub.set_default_connection("second")
    assert hub.chat("e").source_id == hub.connection("second")["id"]


def test_system_prompt_goes_first(hub, server):
    _connect(hub, server, "OPENAI")
    hub.chat("sys", system="Answer in French.").send("Hello")
    sent = _chat_requests(server)[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "Answer in French."}


def test_switching_model_on_an_existing_chat(hub, server):
    _connect(hub, server, "OPENAI", name="a")
    _connect(hub, server, "OLLAMA", name="b")
    hub.chat("sw", model="a").send("one")
    hub.chat("sw", model="b").send("two")
    paths = [r.path for r in _chat_requests(server)[-2:]]
    assert paths == ["/v1/chat/completions", "/api/chat"]


def test_bad_input_gives_clear_errors(hub, server):
    with pytest.raises(UsageError, match="connect"):
        hub.chat("nothing-connected")
    _connect(hub, server, "OPENAI")
    with pytest.raises(NotFoundError, match="No connection named 'nope'"):
        hub.chat("x", model="nope")
    with pytest.raises(UsageError, match="empty"):
        hub.chat("x").send("   ")
    with pytest.raises(UsageError, match="valid providers"):
        hub.connect("ANTHROPIC", "claude")
    with pytest.raises(UsageError, match="not valid"):
        hub.chat("bad name!")
    with pytest.raises(NotFoundError, match="chats are: x"):
        hub.get_chat("y")


def test_connections_list_models_edit_remove(hub, server):
    _connect(hub, server, "OPENAI", name="oa")
    _connect(hub, server, "OLLAMA", name="ol")
    assert {m["id"] for m in hub.models("oa")} >= {"local-chat", "local-tools"}
    assert any(m["id"].startswith("local-chat") for m in hub.models("ol"))
    edited = hub.edit_connection("oa", model_id="local-tools", new_name="oa2")
    assert (edited["name"], edited["modelId"]) == ("oa2", "local-tools")
    hub.remove_connection("ol")
    assert [c["name"] for c in hub.connections()] == ["oa2"]
    with pytest.raises(NotFoundError):
        hub.connection("ol")


def test_render_stores_a_snapshot(hub, server):
    _connect(hub, server, "OPENAI")
    server.script(ScriptedReply(text="pong"))
    hub.chat("r").send("ping")
    snapshot = hub.render("r")
    assert snapshot["messages"] == [
        {"type": "user", "content": "ping", "html": "<p>ping</p>\n"},
        {"type": "chatModel", "content": "pong", "html": "<p>pong</p>\n"},
    ]
    assert hub.store.find("RenderedConversationThread")[0]["threadId"] == hub.get_chat("r").thread_id


def test_builtin_local_connection_works_offline(hub):
    view = hub.connect_local()
    assert view["endpoint"] == "built-in local server"
    reply = hub.chat("offline").send("Hello")
    assert "You said" in reply.text and reply.status == "completed"


def test_autoconnect_falls_back_to_the_builtin_server(hub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens there
    view = hub.autoconnect()
    assert view["name"] == "local" and view["endpoint"] == "built-in local server"
    assert hub.autoconnect()["id"] == view["id"]  # reused, not duplicated
    assert len(hub.connections()) == 1


def test_background_job_is_recorded(hub):
    job = hub.submit(lambda a, b: a + b, 2, 3, name="add")
    assert job.result(timeout=5) == 5
    deadline = time.time() + 5
    while job.status != "completed" and time.time() < deadline:
        time.sleep(0.01)
    row = hub.store.get("Jobs", job.id)
    assert (row["name"], row["type"], row["status"]) == ("add", "background", "completed")
    assert "result: 5" in hub.store.get("TextLog", row["textLogId"])["text"]

    failing = hub.submit(lambda: 1 / 0, name="boom")
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=5)
    deadline = time.time() + 5
    while failing.status != "failed" and time.time() < deadline:
        time.sleep(0.01)
    row = hub.store.get("Jobs", failing.id)
    assert row["status"] == "failed" and "ZeroDivisionError" in row["error"]
    assert "Traceback" in hub.store.get("TextLog", row["textLogId"])["text"]


def test_env_key_picked_up_after_it_is_set(tmp_path, monkeypatch):
    from aihub_nb.testing import LocalServer

    monkeypatch.delenv("LATE_KEY", raising=False)
    with LocalServer(api_key="sk-late-key-000000000000") as guarded:
        hub = Hub(tmp_path)
        hub.connect("OPENAI", "local-chat", name="late", base_url=guarded.openai_base_url, api_key_env="LATE_KEY")
        with pytest.raises(AuthenticationError):
            hub.chat("l").send("hi")
        os.environ["LATE_KEY"] = "sk-late-key-000000000000"
        assert hub.chat("l").send("hi").status == "completed"
        hub.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_leaving_a_stream_early_records_it_as_interrupted(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply.lorem(100))
    chat = hub.chat("early")
    for i, _ in enumerate(chat.stream("go")):
        if i == 4:
            break
    stream = hub.store.find("ResponseStream")[-1]
    assert stream["status"] == "interrupted"
    assert hub.store.find("Jobs")[-1]["status"] == "interrupted"
    assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] is None


def test_a_job_left_running_by_a_dead_process_is_marked_failed_on_open(tmp_path, server):
    hub = Hub(tmp_path)
    log = hub.store.create("TextLog")
    ghost = hub.store.create("Jobs", name="ghost", type="chat.turn", status="running", textLogId=log["id"], pid=2**22 + 4321)
    mine = hub.submit(lambda: 1, name="alive")
    mine.result(timeout=5)
    hub.close()
    again = Hub(tmp_path)
    row = again.store.get("Jobs", ghost["id"])
    assert (row["status"], row["error"]) == ("failed", "its process ended before the job finished")
    assert row["finishedAt"]
    assert again.store.get("Jobs", mine.id)["status"] == "completed"
    again.close()


def test_connect_checks_its_arguments_and_replaces_by_name_only_when_told(hub, server):
    with pytest.raises(UsageError, match="--host is for OLLAMA"):
        hub.connect("OPENAI", "m", host="http://x")
    with pytest.raises(UsageError, match="--base-url is for OPENAI"):
        hub.connect("OLLAMA", "m", base_url="http://x")
    with pytest.raises(UsageError, match="timeout must be a number of seconds above 0"):
        hub.connect("OPENAI", "m", timeout=0)
    with pytest.raises(UsageError, match="model id"):
        hub.connect("OPENAI", " ")
    first = _connect(hub, server, "OPENAI", name="same")
    with pytest.raises(UsageError, match=r"connection named 'same' exists already \(OPENAI local-chat\); add --replace"):
        hub.connect("OLLAMA", "local-chat", name="same", host=server.ollama_host)
    assert hub.connection("same")["provider"] == "OPENAI"  # untouched
    second = hub.connect("OLLAMA", "local-chat", name="same", host=server.ollama_host, replace=True)
    assert first["id"] == second["id"] and second["provider"] == "OLLAMA"
    assert len(hub.connections()) == 1
    with pytest.raises(UsageError, match="Cannot change colour"):
        hub.edit_connection("same", colour="red")
    _connect(hub, server, "OPENAI", name="other")
    with pytest.raises(UsageError, match="exists already"):
        hub.edit_connection("other", new_name="same")
    with pytest.raises(UsageError, match="not both"):
        hub.chat("x", model="same", agent="a")


def test_autoconnect_prefers_openai_then_a_running_ollama(hub, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", server.ollama_host)  # the local server answers /api/tags
    ollama_view = hub.autoconnect()
    assert (ollama_view["name"], ollama_view["provider"]) == ("ollama", "OLLAMA")
    assert ollama_view["modelId"].startswith("local-chat")
    assert hub.chat("via-ollama").send("hi").status == "completed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + "a" * 20)
    openai_view = hub.autoconnect()
    assert (openai_view["name"], openai_view["provider"], openai_view["modelId"]) == ("openai", "OPENAI", "gpt-4o-mini")
    assert [c["name"] for c in hub.connections() if c["default"]] == ["ollama"]  # an existing default is kept
    assert hub.autoconnect()["id"] == openai_view["id"]


def test_hub_frames_follow_the_store(hub, server):
    _connect(hub, server, "OPENAI")
    server.script(ScriptedReply(text="pong", prompt_tokens=2, completion_tokens=1))
    hub.chat("frames").send("ping")
    assert list(hub.messages("frames")["content"]) == ["ping", "pong"]
    assert list(hub.streams()["status"]) == ["completed"]
    assert hub.tool_invocations().empty
    summary = hub.summary()
    assert summary.loc[0, "calls"] == 1 and bool(summary.loc[0, "unpriced"])
    hub.log_metric("rating", 5, chat="frames")
    assert hub.metrics("rating")["chat"].tolist() == ["frames"]


def test_a_lock_held_by_a_live_process_refuses_and_an_ended_job_does_not(hub, server):
    import subprocess
    import sys

    from aihub_nb.jobs import process_start

    _connect(hub, server, "OPENAI")
    chat = hub.chat("shared")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        log = hub.store.create("TextLog")
        theirs = hub.store.create(
            "Jobs", name="other kernel", type="chat.turn", status="running", textLogId=log["id"],
            pid=other.pid, processStart=process_start(other.pid),
        )
        hub.store.update("MessageThread", chat.thread_id, lockingJob=theirs["id"])
        with pytest.raises(ThreadBusyError, match="still answering"):
            chat.send("mine")
        assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] == theirs["id"]
        hub.store.update("Jobs", theirs["id"], status="completed")
        assert chat.send("now mine").status == "completed"
    finally:
        other.kill()
        other.wait()
