"""Raw payloads: appended while they stream, stored once, read back byte for byte, pruned."""

from __future__ import annotations

import json
import random
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell

from aihub_nb import magics
from aihub_nb.recording import StoreSink
from aihub_nb.payloads import common_ends, file_bytes
from aihub_nb.recording import recording_transport
from aihub_nb.store import now_iso
from aihub_nb.testing import ScriptedReply


def _wal_bytes(store) -> int:
    return (store.path.parent / (store.path.name + "-wal")).stat().st_size


def test_a_long_reply_is_appended_not_rewritten(hub, server):
    """Each flush adds the new piece: what SQLite writes grows with the reply, not its square."""
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    hub.sink.flush_interval = 0  # a flush per chunk: 200 flushes of a 2 MB reply
    hub.store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # every page written stays in the log
    hub.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    piece = "x" * 10_000
    server.script(ScriptedReply(chunks=[piece] * 200))
    reply = hub.chat("long", model="oa").send("Go.")
    assert reply.text == piece * 200
    written = _wal_bytes(hub.store)
    # the reply is stored as raw output (once), the message and the stream's parsed result: ~7 MB
    # of pages. Rewriting the stored response at each flush wrote ~800 MB.
    assert written < 20_000_000, f"{written:,} bytes written for a 2 MB reply"
    [stream] = hub.store.find("ResponseStream")
    [call] = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    assert stream["rawOutput"] == call["response"] and call["response"].count(piece) == 200
    assert hub.store.count("ResponseChunk", callId=call["id"]) >= 150
    assert partial_text(call["response"]) == reply.text


def partial_text(raw: str) -> str:
    from aihub_nb.recovery import partial_reply

    return partial_reply(raw)


def test_a_stalled_stream_is_written_within_the_flush_interval(store, server):
    """A chunk followed by silence is in the store within the interval, before the response ends."""
    import httpx

    sink = StoreSink(store, flush_interval=0.1)
    server.script(ScriptedReply(chunks=["first", " second"], token_delay=1.5))
    client = httpx.Client(transport=recording_transport(sink))
    body = {"model": "local-chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client.stream("POST", server.openai_base_url + "/chat/completions", json=body) as response:
        chunks = response.iter_raw()
        seen = b""
        while b"first" not in seen:
            seen += next(chunks)
        time.sleep(0.4)  # the server waits 1.5 s before the next piece
        [call] = store.find("NetworkCall")
        assert call["status"] == "pending" and "first" in call["response"]
        for _ in chunks:
            pass
    assert store.find("NetworkCall")[0]["status"] == "success"
    client.close()


@pytest.mark.parametrize("provider", ["OPENAI", "OLLAMA"])
def test_a_chats_requests_are_stored_linearly_and_read_back_whole(hub, server, provider):
    if provider == "OPENAI":
        hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    else:
        hub.connect("OLLAMA", "local-chat", name="m", host=server.ollama_host)
    chat = hub.chat("long", model="m")
    for turn in range(30):
        server.script(ScriptedReply(text=f"Answer {turn}: " + "lorem ipsum dolor " * 20))
        chat.send(f"Question {turn}: " + "tell me more " * 20)
    posts = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    sent = [r.json for r in server.requests if r.method == "POST"]
    assert [json.loads(c["body"]) for c in posts] == sent  # read through the store: whole
    frame = hub.network_calls(method="POST")
    assert list(frame["body"]) == [c["body"] for c in posts]  # and in the DataFrame
    stored = hub.store.query('SELECT length(body) AS n, "bodyBase" FROM "NetworkCall" WHERE method = \'POST\'')
    whole = sum(len(c["body"]) for c in posts)
    assert sum(r["n"] for r in stored) < whole / 8  # each turn stores its new messages, not the history
    assert all(r["n"] < 1_500 for r in stored[1:])
    # responses are stored once: the stream reads them from its calls
    assert hub.store.query('SELECT sum(length("rawOutput")) AS n FROM "ResponseStream"')[0]["n"] == 0
    for stream in hub.store.find("ResponseStream"):
        [call] = hub.store.referencing(stream["id"], model="NetworkCall", name="stream")
        assert stream["rawOutput"] == call["response"] != ""


def test_a_body_whose_base_is_deleted_keeps_its_bytes(store):
    sink = StoreSink(store)
    first = "{" + "a" * 1000 + "}"
    second = "{" + "a" * 1000 + "b" * 10 + "}"
    h1 = sink.request(method="POST", url="http://x/v1", headers={}, body=first)
    h2 = sink.request(method="POST", url="http://x/v1", headers={}, body=second)
    assert store.get("NetworkCall", h2.id)["bodyBase"]["call"] == h1.id
    store.delete("NetworkCall", h1.id)
    assert store.get("NetworkCall", h2.id)["body"] == second
    store.set("NetworkCall", h2.id, body="replaced")
    assert store.get("NetworkCall", h2.id)["body"] == "replaced"


def test_common_ends_finds_the_shared_start_and_end():
    rng = random.Random(7)
    for _ in range(300):
        alphabet = "ab√" if rng.random() < 0.5 else "a"
        base = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        head, tail = common_ends(base, text)
        assert head + tail <= min(len(base), len(text))
        assert base[:head] == text[:head] and base[len(base) - tail :] == text[len(text) - tail :]
        assert head == len(base) or head == len(text) or base[head] != text[head]  # the longest start
        rebuilt = base[:head] + text[head : len(text) - tail] + (base[len(base) - tail :] if tail else "")
        assert rebuilt == text


def test_prune_drops_old_payloads_keeps_messages_and_metrics_and_frees_space(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    chat = hub.chat("old", model="oa")
    for turn in range(5):
        server.script(ScriptedReply.lorem(3000))
        chat.send(f"Question {turn}")
    cut = now_iso()
    time.sleep(0.01)
    server.script(ScriptedReply(text="recent"))
    chat.send("A recent question " + "x" * 500)
    recent = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"][-1]
    messages, metrics = chat.messages(), hub.store.count("Metric")
    before = file_bytes(hub.store)

    report = hub.prune(older_than=cut)
    assert report.calls == 5 and report.streams == 5 and report.freed_bytes > 100_000
    assert str(report).startswith("Pruned the raw payloads of 5 network calls and 5 response streams")
    assert file_bytes(hub.store) < before
    old = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"][:-1]
    assert all(c["body"] == "" and c["response"] == "" and c["status"] == "success" for c in old)
    assert [s["rawOutput"] for s in hub.store.find("ResponseStream")][:-1] == [""] * 5
    assert hub.store.count("ResponseChunk") == hub.store.count("ResponseChunk", callId=recent["id"])
    assert chat.messages() == messages and hub.store.count("Metric") == metrics
    kept = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"][-1]
    assert (kept["body"], kept["response"]) == (recent["body"], recent["response"])  # whole, though it built on an old one


def test_prune_magic_reports_in_one_line_and_refuses_a_bad_age(hub):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    try:
        shown = shell.run_line_magic("aihub", "prune --older-than 30d")
        assert str(shown).startswith("Pruned the raw payloads of 0 network calls") and "\n" not in str(shown)
        from IPython.core.error import UsageError

        with pytest.raises(UsageError, match="30d"):
            shell.run_line_magic("aihub", "prune --older-than soon")
    finally:
        magics.use_hub(None)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("provider", ["OPENAI", "OLLAMA"])
def test_a_reply_that_cannot_be_read_is_an_error_call_not_a_success(hub, server, provider, stream):
    """The body arrived whole, so the transport saw no error; but the turn failed on it."""
    if provider == "OPENAI":
        hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    else:
        hub.connect("OLLAMA", "local-chat", name="m", host=server.ollama_host)
    server.script(ScriptedReply(chunks=["one", " two", " three", " four", " five"], fault="malformed"))
    with pytest.raises(Exception, match="malformed data"):
        hub.chat("bad", model="m").send("hi", stream=stream)
    [call] = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
    assert call["status"] == "error" and "malformed data" in call["error"] and call["statusCode"] == 200
    assert hub.store.find("ResponseStream")[0]["status"] == "failed"
    assert hub.network_calls(status="success", method="POST").empty
