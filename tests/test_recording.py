"""The recording transport, over real HTTP against the local test server, with httpx and httpx2."""

from __future__ import annotations

import importlib
import logging
import socket
import threading

import openai
import pytest

from aihub_nb.recording import (
    CLOSED_EARLY,
    MemorySink,
    Recorder,
    recording_transport,
    redact_headers,
    redact_url,
)
from aihub_nb.testing import LocalServer, ScriptedReply

LIBS = ("httpx", "httpx2")
CHAT = {"model": "local-chat", "messages": [{"role": "user", "content": "héllo"}], "stream": True}


@pytest.fixture
def srv(server):
    """The session's local server (tests/conftest.py), with no queued replies."""
    return server


@pytest.fixture(params=LIBS)
def lib(request):
    return request.param


def _client(lib: str, sink, **kwargs):
    module = importlib.import_module(lib)
    return module.Client(transport=recording_transport(sink, lib=lib), **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_transport_subclasses_the_libs_transport(lib):
    module = importlib.import_module(lib)
    transport = recording_transport(MemorySink(), lib=lib, retries=1)
    assert isinstance(transport, module.HTTPTransport)


def test_unknown_lib_is_refused():
    with pytest.raises(ValueError, match="httpx2"):
        recording_transport(MemorySink(), lib="requests")


def test_records_request_response_and_body_as_fetched_directly(srv, lib):
    module = importlib.import_module(lib)
    direct = module.get(srv.openai_base_url + "/models").content
    sink = MemorySink()
    with _client(lib, sink) as client:
        posted = client.post(srv.openai_base_url + "/chat/completions", json={**CHAT, "stream": False})
        response = client.get(srv.openai_base_url + "/models")
    assert response.content == direct
    post, get = sink.calls
    assert post.method == "POST" and post.body == posted.request.content.decode() and "héllo" in post.body
    assert post.data == posted.content and b"Hello from the aihub_nb demo model" in post.data
    assert (get.method, get.url, get.status_code) == ("GET", srv.openai_base_url + "/models", 200)
    assert get.body == ""
    assert get.data == direct
    assert get.response_headers["content-type"].startswith("application/json")
    assert [c.error for c in sink.calls] == [None, None]
    assert [c.finish_count for c in sink.calls] == [1, 1] and get.duration_ms > 0


def test_streamed_chunks_reach_the_sink_as_the_client_reads_them(srv, lib):
    srv.script(ScriptedReply.lorem(6, token_delay=0.01))
    sink = MemorySink()
    received = []
    with _client(lib, sink) as client:
        with client.stream("POST", srv.openai_base_url + "/chat/completions", json=CHAT) as response:
            for data in response.iter_raw():
                received.append(data)
                # nothing is buffered ahead of the client: the sink holds exactly what it read
                assert sink.calls[0].chunks == received
    call = sink.calls[0]
    assert len(received) > 6
    assert call.data == b"".join(received) and call.data.endswith(b"data: [DONE]\n\n")
    assert call.error is None and call.finish_count == 1
    assert '"héllo"' in call.body


def test_openai_stream_closed_at_done_is_complete(srv):
    """openai's sync reader closes the response at `data: [DONE]`, before the chunked body's end."""
    sink = MemorySink()
    client = openai.OpenAI(
        base_url=srv.openai_base_url,
        api_key="k",
        max_retries=0,
        http_client=_client("httpx2", sink),
    )
    with client:
        stream = client.chat.completions.create(model="local-chat", messages=CHAT["messages"], stream=True)
        chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    call = sink.calls[0]
    assert call.error is None and call.finish_count == 1
    assert call.data.endswith(b"data: [DONE]\n\n")


def test_close_after_the_last_byte_is_complete(srv, lib):
    srv.script(ScriptedReply.lorem(5))
    sink = MemorySink()
    with _client(lib, sink) as client:
        with client.stream("POST", srv.openai_base_url + "/chat/completions", json=CHAT) as response:
            received = b""
            for data in response.iter_raw():
                received += data
                if received.endswith(b"data: [DONE]\n\n"):
                    break  # the chunked body's closing empty chunk is not read
    call = sink.calls[0]
    assert call.data == received
    assert call.error is None and call.finish_count == 1


def test_early_close_is_reported_once(srv, lib):
    srv.script(ScriptedReply.lorem(50, token_delay=0.05))
    sink = MemorySink()
    with _client(lib, sink) as client:
        with client.stream("POST", srv.openai_base_url + "/chat/completions", json=CHAT) as response:
            first = next(response.iter_raw())
    call = sink.calls[0]
    assert call.chunks == [first]
    assert call.error == CLOSED_EARLY and call.finish_count == 1


def test_dropped_stream_is_reported_once_and_reraised(srv, lib):
    module = importlib.import_module(lib)
    srv.script(ScriptedReply.lorem(10, fault="drop", drop_after=3))
    sink = MemorySink()
    received = []
    with _client(lib, sink) as client:
        with pytest.raises(module.RemoteProtocolError):
            with client.stream("POST", srv.openai_base_url + "/chat/completions", json=CHAT) as response:
                for data in response.iter_raw():
                    received.append(data)
    call = sink.calls[0]
    assert call.data == b"".join(received) and received
    assert call.finish_count == 1
    assert call.error.startswith("RemoteProtocolError:") and "incomplete chunked read" in call.error


def test_connection_refused_is_reported_once_and_reraised(lib):
    module = importlib.import_module(lib)
    sink = MemorySink()
    url = f"http://127.0.0.1:{_free_port()}/v1/models"
    with _client(lib, sink) as client:
        with pytest.raises(module.ConnectError):
            client.get(url)
    [call] = sink.calls
    assert call.url == url and call.status_code is None and call.chunks == []
    assert call.error.startswith("ConnectError") and call.finish_count == 1


def test_secrets_are_redacted_in_the_record_but_sent_to_the_server(lib):
    sink = MemorySink()
    with LocalServer(api_key="sk-secret") as server, _client(lib, sink) as client:
        response = client.get(
            server.openai_base_url + "/models?api_key=sk-secret&limit=2",
            headers={"Authorization": "Bearer sk-secret", "x-api-key": "sk-secret", "X-Trace": "t1"},
        )
        assert response.status_code == 200
        assert server.requests[0].headers["authorization"] == "Bearer sk-secret"
    call = sink.calls[0]
    assert "sk-secret" not in call.url + repr(call.headers)
    assert call.url.endswith("/models?api_key=[redacted]&limit=2")
    assert call.headers["authorization"] == "Bearer [redacted]"
    assert call.headers["x-api-key"] == "[redacted]"
    assert call.headers["x-trace"] == "t1"


class _BrokenSink:
    def __init__(self, fail_request: bool) -> None:
        self.fail_request = fail_request
        self.calls = 0

    def request(self, **_):
        self.calls += 1
        if self.fail_request:
            raise RuntimeError("sink down")
        return object()

    def response(self, *_, **__):
        self.calls += 1
        raise RuntimeError("sink down")

    def chunk(self, *_):
        self.calls += 1
        raise RuntimeError("sink down")

    def finish(self, *_, **__):
        self.calls += 1
        raise RuntimeError("sink down")


@pytest.mark.parametrize("fail_request", [True, False])
def test_a_failing_sink_never_breaks_the_call(srv, lib, caplog, fail_request):
    srv.script(ScriptedReply.lorem(20))
    sink = _BrokenSink(fail_request)
    with caplog.at_level(logging.ERROR, logger="aihub_nb.recording"):
        with _client(lib, sink) as client:
            response = client.post(srv.openai_base_url + "/chat/completions", json=CHAT)
    assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
    # after a failed request() the call goes unrecorded; a failed chunk() is not called again
    assert sink.calls == (1 if fail_request else 4)  # request, response, chunk, finish
    assert len(caplog.records) == (1 if fail_request else 3)  # every failure logged once


def test_redact_headers():
    headers = redact_headers(
        [
            ("Authorization", "Bearer sk-1"),
            ("Proxy-Authorization", "Basic dXNlcjpwdw=="),
            ("api-key", "k"),
            ("X-Goog-Api-Key", "k"),
            ("Cookie", "a=1"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Session-Token", "t"),
            ("Client-Secret", "s"),
            ("Content-Type", "application/json"),
            ("Keep-Alive", "timeout=5"),
        ]
    )
    assert headers == {
        "Authorization": "Bearer [redacted]",
        "Proxy-Authorization": "Basic [redacted]",
        "api-key": "[redacted]",
        "X-Goog-Api-Key": "[redacted]",
        "Cookie": "[redacted]",
        "Set-Cookie": "[redacted], [redacted]",
        "X-Session-Token": "[redacted]",
        "Client-Secret": "[redacted]",
        "Content-Type": "application/json",
        "Keep-Alive": "timeout=5",
    }
    assert redact_headers({"authorization": "sk-no-scheme"}) == {"authorization": "[redacted]"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://h/v1/m?key=a&api_key=b&token=c&access_token=d&model=x",
            "https://h/v1/m?key=[redacted]&api_key=[redacted]&token=[redacted]"
            "&access_token=[redacted]&model=x",
        ),
        ("https://user:pw@h/p?q=a%20b&flag", "https://user:[redacted]@h/p?q=a%20b&flag"),
        ("https://sk-abc@h/p", "https://[redacted]@h/p"),
        ("http://127.0.0.1:11434/api/chat", "http://127.0.0.1:11434/api/chat"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_event_stream_that_lingers_after_done_is_complete_without_waiting():
    """A server may hold the connection open after `data: [DONE]` before it ends the body (a
    proxy, another server's framing): the client has all it needs, and so is the record."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx2

    chunk = (
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}\n\n'
        "data: [DONE]\n\n"
    ).encode()

    class Lingering(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            time.sleep(1.0)
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Lingering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = MemorySink()
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="x", max_retries=0,
            http_client=httpx2.Client(transport=recording_transport(sink, lib="httpx2")),
        )
        started = time.perf_counter()
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            if c.choices
        )
        assert text == "hi"
        (call,) = sink.calls
        assert call.error is None and call.finish_count == 1
        assert time.perf_counter() - started < 0.9  # not held until the server ends the body
    finally:
        server.shutdown()
        server.server_close()


# -- the Recorder: one explicit handle per provider call ---------------------------------------------


def _stream(store) -> str:
    return store.create("ResponseStream", sourceId="conn", status="streaming")["id"]


def _post(client, srv, text="hi"):
    srv.script(ScriptedReply(text))
    body = {"model": "local-chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with client.stream("POST", srv.openai_base_url + "/chat/completions", json=body) as response:
        response.read()


def test_a_call_handle_names_the_stream_and_references_of_its_requests_only(store, srv):
    import httpx

    recorder = Recorder(store)
    stream_id = _stream(store)
    with httpx.Client(transport=recorder.transport("httpx")) as client:
        _post(client, srv, "before")
        with recorder.call(stream_id, job="job-1", thread=None) as call:
            _post(client, srv, "during")
            call.close(status="completed", result_messages=[{"content": "during"}])
        _post(client, srv, "after")
    before, during, after = store.find("NetworkCall")
    assert before["references"] == {} and after["references"] == {}
    assert before["streamId"] is None and after["streamId"] is None
    assert during["references"] == {"job": "job-1", "stream": stream_id} and during["streamId"] == stream_id
    stream = store.get("ResponseStream", stream_id)
    assert stream["status"] == "completed" and stream["resultMessages"] == [{"content": "during"}]
    assert "during" in stream["rawOutput"] and "before" not in stream["rawOutput"]


def test_two_hubs_in_one_process_do_not_share_the_call_under_way(tmp_path, srv):
    """A call open on one recorder says nothing about the requests of another (another hub)."""
    import httpx

    from aihub_nb.store import Store

    one, two = Store(tmp_path / "one.db"), Store(tmp_path / "two.db")
    try:
        first, second = Recorder(one), Recorder(two)
        stream_id = _stream(one)
        with (
            httpx.Client(transport=first.transport("httpx")) as client_one,
            httpx.Client(transport=second.transport("httpx")) as client_two,
            first.call(stream_id, job="job-1"),
        ):
            _post(client_two, srv, "other hub")
            _post(client_one, srv, "this hub")
        [other] = two.find("NetworkCall")
        [mine] = one.find("NetworkCall")
    finally:
        one.close()
        two.close()
    assert other["references"] == {} and other["streamId"] is None
    assert mine["references"] == {"job": "job-1", "stream": stream_id}


def test_a_request_from_another_thread_is_not_the_call_under_way(store, srv):
    import httpx

    recorder = Recorder(store)
    stream_id = _stream(store)
    with httpx.Client(transport=recorder.transport("httpx")) as client, recorder.call(stream_id, job="job-1"):
        worker = threading.Thread(target=_post, args=(client, srv, "elsewhere"))
        worker.start()
        worker.join()
    [call] = store.find("NetworkCall")
    assert call["references"] == {} and call["streamId"] is None
    assert recorder.current() is None


@pytest.mark.parametrize(
    ("error", "status"), [(None, "completed"), (RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")]
)
def test_a_call_left_without_closing_closes_its_stream_with_how_the_block_ended(store, error, status):
    recorder = Recorder(store)
    stream_id = _stream(store)
    try:
        with recorder.call(stream_id, job="job-1"):
            if error is not None:
                raise error("stop")
    except BaseException as exc:
        assert type(exc) is error
    assert store.get("ResponseStream", stream_id)["status"] == status
    assert recorder.current() is None


def test_a_closed_call_keeps_its_status_and_cannot_be_reentered(store):
    recorder = Recorder(store)
    stream_id = _stream(store)
    call = recorder.call(stream_id)
    with pytest.raises(RuntimeError), call:
        call.close(status="completed", result_messages=[])
        raise RuntimeError("after the close")
    assert store.get("ResponseStream", stream_id)["status"] == "completed"
    with pytest.raises(RuntimeError, match="already under way"), call:
        pass
