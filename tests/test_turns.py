"""Chat turns against servers that behave like real ones: true speed figures, visible finish
reasons, usage that was not reported, empty answers, histories that stay valid, timeouts and
reply limits. Over real HTTP through the official openai and ollama clients, against the local
server; each test asserts on what the user sees and what the store holds.
"""

from __future__ import annotations

import json
import time

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.utils.capture import capture_output

from aihub_nb import Hub, magics
from aihub_nb.errors import ProviderTimeoutError, StreamError, UsageError
from aihub_nb.testing import ScriptedReply
from aihub_nb.widgets import ChatPanel
from helpers import PROVIDERS, chat_requests as _chat_requests, connect as _connect

def _metrics(hub: Hub) -> dict[str, dict]:
    """The metrics of the last model call, by name."""
    rows = hub.store.find("Metric")
    last_stream = rows[-1]["references"]["stream"]
    return {m["name"]: m for m in rows if m["references"].get("stream") == last_stream}


def _posts(hub: Hub) -> list[dict]:
    return [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]


# ---------------------------------------------------------------- speed: ttft and tokens/s


@pytest.mark.parametrize("provider", PROVIDERS)
def test_whole_reply_has_no_client_ttft_and_speed_from_the_server(hub, server, provider):
    _connect(hub, server, provider)
    # 11 pieces, 0.03 s apart: about 0.3 s of generation for 11 tokens
    server.script(ScriptedReply.lorem(11, token_delay=0.03, completion_tokens=11))
    reply = hub.chat("whole").send("go", stream=False)
    values = {name: m["value"] for name, m in _metrics(hub).items()}
    body = json.loads(_posts(hub)[-1]["response"])
    if provider == "OLLAMA":  # the server's own figures: eval_count over eval_duration, load + prompt time
        assert values["tokens_per_s"] == pytest.approx(body["eval_count"] / body["eval_duration"] * 1e9, rel=1e-3)
        assert values["ttft_ms"] == pytest.approx((body["load_duration"] + body["prompt_eval_duration"]) / 1e6, abs=1e-3)
    else:  # an OpenAI answer without timings says nothing about speed: none is made up
        assert "tokens_per_s" not in values and "ttft_ms" not in values
    assert values["latency_ms"] >= 250
    assert reply.metrics.get("ttft_ms") != reply.metrics["latency_ms"]

    # llama.cpp's server adds `timings`: those are the figures
    server.script(ScriptedReply.lorem(11, token_delay=0.03, completion_tokens=11, timings=True))
    hub.chat("whole").send("again", stream=False)
    values = {name: m["value"] for name, m in _metrics(hub).items()}
    if provider == "OPENAI":
        timings = json.loads(_posts(hub)[-1]["response"])["timings"]
        assert values["tokens_per_s"] == pytest.approx(timings["predicted_per_second"], rel=1e-3)
        assert values["ttft_ms"] == pytest.approx(timings["prompt_ms"], rel=1e-3, abs=1e-3)  # stored to the µs
    assert 10 < values["tokens_per_s"] < 60  # about 11 tokens in 0.3 s, not millions


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_tokens_per_s_is_n_minus_1_over_first_to_last(hub, server, provider):
    _connect(hub, server, provider)
    # 5 tokens: the first ends the wait, the other 4 take 4 x 0.25 s: 4 tokens/s (5 / 1 s would be 5)
    server.script(ScriptedReply(chunks=["a", " b", " c", " d", " e"], token_delay=0.25, completion_tokens=5))
    reply = hub.chat("speed").send("go")
    assert reply.metrics["tokens_per_s"] == pytest.approx(4.0, rel=0.1)
    assert _metrics(hub)["tokens_per_s"]["value"] == reply.metrics["tokens_per_s"]


def test_streamed_tool_call_times_its_first_piece(hub, server):
    """The first piece of a tool call is the first token, not the moment the call is complete."""
    _connect(hub, server, "OPENAI")
    hub.chat("warm-up").send("hi")  # the first call builds the client: not what this test times
    arguments = {"a": 1, "b": 2, "c": 3, "d": 4}
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": arguments}], token_delay=0.05))
    reply = hub.chat("tools").send("go")
    values = {name: m["value"] for name, m in _metrics(hub).items()}
    pieces = int(values["completion_tokens"])  # one per call and per piece of its arguments
    assert pieces >= 10
    assert values["ttft_ms"] < 100 < values["latency_ms"] - 300
    assert values["tokens_per_s"] == pytest.approx(20.0, rel=0.25)  # 1 / 0.05 s
    assert reply.metrics["ttft_ms"] == values["ttft_ms"]


# ---------------------------------------------------------------- finish reasons


def _shown(captured) -> str:
    return "\n".join(
        o.data.get("text/html") or o.data.get("text/markdown") or o.data.get("text/plain") or "" for o in captured.outputs
    )


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_a_reply_cut_at_the_token_limit_says_so(hub, server, provider, stream, ip):
    _connect(hub, server, provider, name="lim")
    server.script(ScriptedReply("Once upon a time there", finish_reason="length"))
    reply = hub.chat("story", model="lim").send("Tell a story", options={"max_tokens": 5}, stream=stream)
    assert reply.finish_reason == "length"
    assert "cut at the token limit" in reply.summary_line("lim")
    model = hub.store.find("Message", threadId=hub.get_chat("story").thread_id)[-1]
    assert model["data"] == {"finish_reason": "length"}
    (result,) = hub.store.find("ResponseStream")[-1]["resultMessages"]
    assert result["data"] == {"finish_reason": "length"}
    assert _metrics(hub)["latency_ms"]["dimensions"]["finish_reason"] == "length"
    frame = hub.messages("story")
    assert [s if isinstance(s, str) else None for s in frame["finish_reason"]] == [None, "length"]
    assert len(hub.metrics("latency_ms", finish_reason="length")) == 1

    # the cell footer says it too; a filtered reply says so
    magics.use_hub(hub)
    try:
        server.script(ScriptedReply("I can't", finish_reason="content_filter"))
        with capture_output() as captured:
            ip.run_cell_magic("aihub", "chat story" + ("" if stream else " --no-stream"), "Another")
    finally:
        magics.use_hub(None)
    assert "stopped by the content filter" in _shown(captured)
    assert "cut at the token limit" not in _shown(captured)


def test_chat_panel_says_the_reply_was_cut(hub, server):
    _connect(hub, server, "OPENAI", name="lim")
    panel = ChatPanel(hub, "story", sync=True)
    server.script(ScriptedReply("Once upon", finish_reason="length"))
    panel.message.value = "Tell a story"
    panel.send_button.click()
    assert "cut at the token limit" in panel.status.value


# ---------------------------------------------------------------- usage not reported


@pytest.mark.parametrize("provider", PROVIDERS)
def test_calls_without_usage_are_counted_and_estimated_apart(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply("One two three four.", prompt_tokens=9, completion_tokens=4))
    hub.chat("u").send("first")
    server.script(ScriptedReply("Twelve characters and more", usage=False), ScriptedReply("x" * 40, usage=False))
    hub.chat("u").send("second")
    reply = hub.chat("u").send("third")
    assert "estimated" in reply.summary_line("m") and "tokens" in reply.summary_line("m")
    assert reply.usage["completion_tokens_est"] == 10  # 40 characters / 4 (no tiktoken files here)
    assert "completion_tokens" not in reply.usage
    names = [m["name"] for m in hub.store.find("Metric")]
    assert names.count("completion_tokens") == 1 and names.count("usage_missing") == 2
    assert names.count("completion_tokens_est") == 2
    summary = hub.summary()
    row = summary.iloc[0]
    assert (row["calls"], row["completion_tokens"], row["prompt_tokens"]) == (3, 4, 9)  # only what was reported
    assert row["usage_missing_calls"] == 2 and row["completion_tokens_est"] == 7 + 10

    from aihub_nb.widgets.dashboard import summary_html

    assert "usage not reported" in summary_html(summary) and "2 calls" in summary_html(summary)


# ---------------------------------------------------------------- empty answers


@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_stream_is_an_error_that_names_the_context(hub, server, provider):
    _connect(hub, server, provider, name="small")
    server.script(ScriptedReply(fault="empty"))
    with pytest.raises(StreamError) as caught:
        hub.chat("e").send("a very long prompt")
    assert "may exceed the model's context" in str(caught.value) and "small" in str(caught.value)
    (call,) = _posts(hub)
    assert call["statusCode"] == 200 and call["status"] == "error"
    assert "may exceed the model's context" in call["error"]
    assert hub.store.find("ResponseStream")[-1]["status"] == "failed"
    job = hub.store.find("Jobs")[-1]
    assert job["status"] == "failed" and "context" in job["error"]


# ---------------------------------------------------------------- the history sent to a model


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_a_cut_tool_call_does_not_poison_the_chat(hub, server):
    """A (parallel) tool call cut by max_tokens, sent back raw, makes llama.cpp's server answer
    500 to every later turn: the history must stay valid on either provider."""
    server.strict_tool_arguments = True
    try:
        _connect(hub, server, "OPENAI", name="oa", model="local-tools")
        _connect(hub, server, "OLLAMA", name="ol")
        hub.tool(add)
        hub.agent("helper", model="oa", tools=["add"])
        cut = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": '{"a": 3, "b'}]
        server.script(ScriptedReply(tool_calls=cut, finish_reason="length"), ScriptedReply("Only the first one worked."))
        first = hub.chat("math", agent="helper").send("Add twice")
        assert first.text == "Only the first one worked."
        assert [c["status"] for c in first.tool_calls] == ["completed", "failed"]
        sent = _chat_requests(server)[-1].json["messages"]
        sent_calls = [c["function"]["arguments"] for m in sent for c in m.get("tool_calls") or ()]
        assert json.loads(sent_calls[1]) == {"_invalid_arguments": '{"a": 3, "b'}
        stored = hub.store.find("Message", type="toolCall")[0]["data"]
        assert stored["tool_calls"][1]["function"]["arguments"] == '{"a": 3, "b'  # kept as it came
        assert stored["finish_reason"] == "length"

        for connection in ("ol", "oa"):  # the plain model, on either provider, goes on
            reply = hub.chat("math", model=connection).send("And now?")
            assert reply.status == "completed" and reply.text.startswith("Hello from")
        ollama_sent = [r for r in _chat_requests(server) if r.api == "ollama"][-1].json["messages"]
        ollama_args = [c["function"]["arguments"] for m in ollama_sent for c in m.get("tool_calls") or ()]
        assert ollama_args[1] == {"_invalid_arguments": '{"a": 3, "b'}
    finally:
        server.strict_tool_arguments = False


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unfinished_replies_are_shown_but_not_sent_back(hub, server, provider):
    _connect(hub, server, provider)
    server.script(ScriptedReply("alpha beta gamma delta", fault="drop", drop_after=2))
    with pytest.raises(StreamError):
        hub.chat("p").send("first")
    chat = hub.get_chat("p")
    # a reply recovered after a crash is marked interrupted the same way
    hub.store.create("Message", threadId=chat.thread_id, type="chatModel", sourceId="x", content="half a", data={"status": "interrupted"})
    server.script(ScriptedReply("fine"))
    hub.chat("p").send("second")
    sent = [(m["role"], m["content"]) for m in _chat_requests(server)[-1].json["messages"]]
    assert sent == [("user", "first"), ("user", "second")]
    frame = hub.messages("p")
    assert [s if isinstance(s, str) else None for s in frame["status"]] == ["failed", "failed", "interrupted", None, None]  # the unanswered message too
    assert list(frame["content"])[1] == "alpha beta"
    shown = chat._repr_mimebundle_()
    assert "(failed)" in shown["text/plain"] and "(interrupted)" in shown["text/plain"]
    assert "<em>(failed)</em>" in shown["text/html"] and "<em>(interrupted)</em>" in shown["text/html"]


# ---------------------------------------------------------------- retries


def test_retry_after_zero_still_waits_a_little(hub, server):
    _connect(hub, server, "OPENAI")
    server.script(*[ScriptedReply(fault="429", retry_after=0) for _ in range(3)], ScriptedReply("at last"))
    started = time.perf_counter()
    reply = hub.chat("r").send("go")
    took = time.perf_counter() - started
    assert reply.text == "at last"
    assert len(_chat_requests(server)) == 4
    assert took >= 3 * 0.25


# ---------------------------------------------------------------- runaway replies: limits


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_max_tokens_is_the_default_limit(hub, server, provider):
    _connect(hub, server, provider, max_tokens="64")
    assert hub.connection("m")["data"]["max_tokens"] == 64
    hub.chat("mt").send("hi")
    hub.chat("mt").send("hi", options={"max_tokens": 8})
    bodies = [r.json for r in _chat_requests(server)]
    if provider == "OPENAI":
        assert [b.get("max_tokens") for b in bodies] == [64, 8]
    else:
        assert [b["options"]["num_predict"] for b in bodies] == [64, 8]
    assert "max_tokens 64" in hub.connections()[0]["limits"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_runaway_reply_ends_at_the_total_time_limit(hub, server, provider):
    _connect(hub, server, provider, name="slow", timeout=0.8)
    server.script(ScriptedReply(fault="endless", token_delay=0.02))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError) as caught:
        hub.chat("run").send("go")
    took = time.perf_counter() - started
    assert 0.8 <= took < 2.5
    assert "total limit of 0.8 s" in str(caught.value) and "slow" in str(caught.value)
    partial = hub.store.find("Message")[-1]
    assert partial["data"]["status"] == "failed" and partial["content"].startswith("lorem ipsum")
    assert hub.store.find("Jobs")[-1]["status"] == "failed"
    assert _posts(hub)[-1]["status"] == "error"


def test_keep_alives_do_not_keep_a_call_open(hub, server):
    _connect(hub, server, "OPENAI", name="ka", timeout=0.6, read_timeout=5)
    server.script(ScriptedReply(fault="keepalive", token_delay=0.05))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match="total limit"):
        hub.chat("ka").send("go")
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_read_timeout_is_honoured(hub, server, provider, stream):
    _connect(hub, server, provider, name="rt", read_timeout=0.3)
    server.script(ScriptedReply("late", first_token_delay=1.5))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match="did not answer in time"):
        hub.chat("rt").send("go", stream=stream)
    assert time.perf_counter() - started < 1.2


def test_timeouts_are_kept_per_connection(hub, server):
    _connect(hub, server, "OPENAI", name="t", timeout="30", connect_timeout=2, read_timeout=10.5)
    assert hub.connection("t")["data"]["timeouts"] == {"total": 30.0, "connect": 2.0, "read": 10.5}
    hub.edit_connection("t", read_timeout=20)
    assert hub.connection("t")["data"]["timeouts"] == {"total": 30.0, "connect": 2.0, "read": 20.0}
    assert hub.connections()[0]["limits"] == "total 30 s · connect 2 s · read 20 s"
    client = hub.runtime.providers.get(hub.connection("t"))._client
    assert (client.timeout.read, client.timeout.connect) == (20.0, 2.0)


@pytest.mark.parametrize(
    "option, value",
    [
        ("timeout", "inf"), ("timeout", float("inf")), ("timeout", float("nan")), ("timeout", -1), ("timeout", 0),
        ("timeout", "soon"), ("timeout", True), ("read_timeout", "1e400"), ("connect_timeout", [5]),
        ("max_tokens", 0), ("max_tokens", 1.5), ("max_tokens", "many"), ("max_tokens", float("inf")),
    ],
)
def test_bad_limits_are_one_line(hub, option, value):
    with pytest.raises(UsageError) as caught:
        hub.connect("OPENAI", "m", base_url="http://127.0.0.1:9/v1", **{option: value})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(option) and "e.g." in message
    assert hub.store.find("ModelConnections") == []


def test_magic_connect_takes_the_limits(hub, server, ip):
    magics.use_hub(hub)
    try:
        url = server.openai_base_url
        with capture_output():
            ip.run_line_magic(
                "aihub", f"connect OPENAI local-chat --name lm --base-url {url} --timeout 30 --read-timeout 5 --max-tokens 100"
            )
        data = hub.connection("lm")["data"]
        assert data["timeouts"] == {"total": 30.0, "read": 5.0} and data["max_tokens"] == 100
        with pytest.raises(IPythonUsageError, match="timeout must be a number of seconds above 0"):
            ip.run_line_magic("aihub", f"connect OPENAI local-chat --name bad --base-url {url} --timeout inf")
        with capture_output():
            ip.run_line_magic("aihub", "connection edit lm --connect-timeout 1")
        assert hub.connection("lm")["data"]["timeouts"]["connect"] == 1.0
    finally:
        magics.use_hub(None)
