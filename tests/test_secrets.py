"""Secrets stay out of sight: keys from the environment are stripped, every known secret is masked
in what is stored, shown or sent to a model, HTTP tools keep secret headers at home, and URLs with
credentials in them are refused. Each test reads the whole SQLite file for the secret."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell

from aihub_nb import magics
from aihub_nb.errors import AuthenticationError, UsageError
from aihub_nb.redact import StreamRedactor, add_secret, redact
from aihub_nb.testing import LocalServer, ScriptedReply, find_in_database

SECRET = "sk-test-9f8e7d6c5b4a39281706"
KEY_ENV = "AIHUB_TEST_SECRET_KEY"
PROVIDERS = ["OPENAI", "OLLAMA"]


def _connect(hub, provider: str, server: LocalServer, **kwargs):
    if provider == "OPENAI":
        return hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url, **kwargs)
    return hub.connect("OLLAMA", "local-chat", name="c", host=server.ollama_host, **kwargs)


def _frames_text(hub) -> str:
    """Every DataFrame a user can look at, as text."""
    frames = [hub.network_calls(), hub.jobs(), hub.streams(), hub.tool_invocations(), hub.messages("t")]
    return "\n".join(frame.to_json(default_handler=str, date_format="iso") for frame in frames)


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    yield shell
    magics.use_hub(None)


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_with_a_trailing_newline_is_sent_stripped_and_stored_nowhere(hub, server, provider, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET + "\n")
    _connect(hub, provider, server, api_key_env=KEY_ENV)
    server.script(ScriptedReply("hello"))
    reply = hub.chat("t", model="c").send("hi")
    assert reply.text == "hello"
    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert find_in_database(hub.path, SECRET) == []


@pytest.mark.parametrize("source", ["env", "session"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_a_server_echoes_is_masked_in_the_store_the_frames_and_the_error(hub, provider, source, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    given = {"api_key_env": KEY_ENV} if source == "env" else {"api_key": SECRET}
    with LocalServer(api_key="the-right-key-123456", echo_rejected_key=True) as server:
        _connect(hub, provider, server, **given)
        with pytest.raises(AuthenticationError) as caught:
            hub.chat("t", model="c").send("hi")
        assert "[redacted]" in str(caught.value)
        assert SECRET not in str(caught.value)
        [call] = hub.store.find("NetworkCall")
        assert (call["statusCode"], "[redacted]" in call["response"]) == (401, True)
        [job] = hub.store.find("Jobs")
        assert job["status"] == "failed" and "[redacted]" in job["error"]
    assert find_in_database(hub.path, SECRET) == []
    assert SECRET not in _frames_text(hub)


def test_the_magic_error_line_never_shows_the_key(hub, ip, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    magics.use_hub(hub)
    with LocalServer(api_key="the-right-key-123456", echo_rejected_key=True) as server:
        ip.run_line_magic("aihub", f"connect OPENAI local-chat --name c --base-url {server.openai_base_url} --api-key-env {KEY_ENV}")
        with pytest.raises(AuthenticationError) as caught:
            ip.run_cell_magic("aihub", "chat t --model c", "hi")
    [message] = caught.value._render_traceback_()  # the one line the cell shows, under the error's name
    assert message.startswith("AuthenticationError: ") and "Incorrect API key provided: [redacted]" in message
    assert SECRET not in message
    assert find_in_database(hub.path, SECRET) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_with_whitespace_inside_is_refused_naming_the_variable(hub, server, provider, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-9f8e7d6c\n5b4a39281706")
    _connect(hub, provider, server, api_key_env=KEY_ENV)
    before = len(server.requests)
    with pytest.raises(UsageError) as caught:
        hub.chat("t", model="c").send("hi")
    assert str(caught.value) == (
        f"The key in ${KEY_ENV} has whitespace or a control character inside it; set it again to the key alone."
    )
    assert len(server.requests) == before
    [job] = hub.store.find("Jobs")
    assert (job["status"], job["error"]) == ("failed", f"UsageError: {caught.value}")
    assert find_in_database(hub.path, "5b4a39281706") == []


def test_a_session_key_with_whitespace_inside_is_refused_before_anything_is_stored(hub, server):
    with pytest.raises(UsageError, match="The key in the api_key given has whitespace"):
        hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url, api_key="sk-a b-9f8e7d6c5b4a")
    assert hub.store.count("ModelConnections") == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unset_key_variable_is_said_to_be_unset(hub, server, provider, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    _connect(hub, provider, server, api_key_env=KEY_ENV)
    with pytest.raises(AuthenticationError) as caught:
        hub.chat("t", model="c").send("hi")
    assert str(caught.value) == (
        f"Connection 'c' needs an API key: ${KEY_ENV} is not set; set it (e.g. %env {KEY_ENV}=...) "
        "or use --api-key-env OTHER_VAR."
    )


def test_a_refusal_says_when_the_default_key_variable_is_unset(hub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LocalServer(api_key="the-right-key-123456") as server:
        hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url)
        with pytest.raises(AuthenticationError, match=r"\$OPENAI_API_KEY is not set; set it \(e\.g\. %env OPENAI_API_KEY=\.\.\.\)"):
            hub.chat("t", model="c").send("hi")


def test_the_key_itself_given_as_the_variable_name_is_refused(hub, server):
    with pytest.raises(UsageError, match="takes the NAME of the environment variable") as caught:
        hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url, api_key_env=SECRET)
    assert SECRET not in str(caught.value)
    assert find_in_database(hub.path, SECRET) == []


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url, what",
    [
        (f"http://user:{SECRET}@127.0.0.1:8000/v1", "holds a credential, a user name and password"),
        (f"http://{SECRET}@127.0.0.1:8000/v1", "holds a credential, a user name"),
        (f"http://127.0.0.1:8000/v1?api-key={SECRET}", "holds a credential, the query parameter 'api-key'"),
        (f"http://127.0.0.1:8000/v1?key={SECRET}", "holds a credential, the query parameter 'key'"),
        (f"http://127.0.0.1:8000/v1?x=1&token={SECRET}", "holds a credential, the query parameter 'token'"),
        ("http://[::1", "is malformed (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/v1", "is malformed (Port out of range 0-65535)"),
        ("http://127.0.0.1:0/v1", "has port 0"),
        ("http://127.0.0.1:8000/v1\x00", "holds a space or a control character"),
        ("http://127.0.0.1 :8000/v1", "holds a space or a control character"),
        ("not-a-url", "is not a URL (no http:// or https://)"),
        ("ftp://127.0.0.1/v1", "must be an http:// or https:// URL, not ftp://"),
        ("http://:8000/v1", "has no host"),
    ],
)
def test_a_bad_base_url_is_refused_in_one_line_and_nothing_is_stored(hub, url, what):
    with pytest.raises(UsageError) as caught:
        hub.connect("OPENAI", "m", name="c", base_url=url)
    message = str(caught.value)
    assert what in message and "\n" not in message
    assert SECRET not in message
    if "credential" in what:
        assert "--api-key-env" in message
    assert hub.store.count("ModelConnections") == 0


@pytest.mark.parametrize("host", ["http://[::1", "127.0.0.1:99999", f"http://me:{SECRET}@127.0.0.1:11434"])
def test_a_bad_ollama_host_is_refused_through_the_magic(hub, ip, host):
    magics.use_hub(hub)
    with pytest.raises(IPythonUsageError) as caught:
        ip.run_line_magic("aihub", f"connect OLLAMA llama3.2 --host '{host}'")
    assert "--host" in str(caught.value) and SECRET not in str(caught.value)
    assert hub.store.count("ModelConnections") == 0


def test_an_ollama_host_may_omit_the_scheme(hub):
    hub.connect("OLLAMA", "llama3.2", name="o", host="127.0.0.1:11434")
    assert hub.connection("o")["data"]["host"] == "http://127.0.0.1:11434"


def test_a_bad_url_in_an_edit_is_refused(hub, server):
    hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url)
    with pytest.raises(UsageError, match="holds a credential"):
        hub.edit_connection("c", base_url=f"{server.openai_base_url}?api_key={SECRET}")
    assert hub.connection("c")["data"]["base_url"] == server.openai_base_url
    assert find_in_database(hub.path, SECRET) == []


# ---------------------------------------------------------------- HTTP tools


class _Site(BaseHTTPRequestHandler):
    """/away/... redirects to the other site, /home/... to this one; /echo/... answers 404 with the
    path it was asked for (an error page that echoes the URL); anything else answers 200."""

    def do_GET(self) -> None:
        self.server.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith(("/away", "/home")):
            target = self.server.other if self.path.startswith("/away") else self.server.url
            self.send_response(302)
            self.send_header("Location", target + "/land")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, payload = (404, f"<h1>Not found: {self.path}</h1>") if self.path.startswith("/echo") else (200, '{"ok": true}')
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if status == 404 else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def sites():
    """Two HTTP servers on 127.0.0.1: two origins (different ports)."""
    servers = []
    for _ in range(2):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
        httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.received = []
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    servers[0].other, servers[1].other = servers[1].url, servers[0].url
    yield servers
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


HEADERS = {"X-Api-Key": "${TOOL_KEY}", "Authorization": "Bearer ${TOOL_KEY}", "Accept": "application/json"}


def test_secret_headers_are_not_sent_to_another_origin_on_a_redirect(hub, sites, monkeypatch):
    from aihub_nb.tools import get_tool, invoke_tool

    home, other = sites
    monkeypatch.setenv("TOOL_KEY", SECRET)
    hub.http_tool("away", "GET", home.url + "/away", headers=HEADERS)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "away"), {})
    assert outcome.status == "completed", outcome.content
    assert home.received[-1]["headers"]["x-api-key"] == SECRET
    landed = other.received[-1]
    assert landed["path"] == "/land"
    assert "x-api-key" not in landed["headers"] and "authorization" not in landed["headers"]
    assert landed["headers"]["accept"] == "application/json"
    assert find_in_database(hub.path, SECRET) == []


def test_secret_headers_follow_a_redirect_within_the_origin(hub, sites, monkeypatch):
    from aihub_nb.tools import get_tool, invoke_tool

    home, _ = sites
    monkeypatch.setenv("TOOL_KEY", SECRET)
    hub.http_tool("home", "GET", home.url + "/home", headers=HEADERS)
    assert invoke_tool(hub.runtime, get_tool(hub.runtime, "home"), {}).status == "completed"
    assert home.received[-1]["path"] == "/land"
    assert home.received[-1]["headers"]["x-api-key"] == SECRET


def test_an_error_page_echoing_a_secret_reaches_neither_the_model_nor_the_store(hub, server, sites, monkeypatch):
    home, _ = sites
    monkeypatch.setenv("TOOL_KEY", SECRET)
    hub.connect("OPENAI", "local-chat", name="c", base_url=server.openai_base_url)
    hub.http_tool("lookup", "GET", home.url + "/echo/{q}?appid=${TOOL_KEY}")
    hub.agent("a", model="c", tools=["lookup"])
    server.script(ScriptedReply(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]), ScriptedReply("done"))
    reply = hub.chat("t", agent="a").send("look it up")
    assert reply.text == "done"
    assert home.received[-1]["path"] == f"/echo/x?appid={SECRET}"  # the tool did send it
    [result] = [m for m in hub.store.find("Message") if m["type"] == "toolResult"]
    assert "HTTP 404" in result["content"] and "appid=[redacted]" in result["content"]
    next_request = json.dumps(server.requests[-1].json)
    assert "appid=[redacted]" in next_request and SECRET not in next_request
    assert find_in_database(hub.path, SECRET) == []
    assert SECRET not in _frames_text(hub)


# ---------------------------------------------------------------- the redaction itself


def test_a_secret_split_across_pieces_of_a_stream_is_masked():
    secret = "pieces-secret-0123456789"
    add_secret(secret)
    redactor = StreamRedactor()
    text = f"before {secret} middle {secret} after"
    for size in (1, 3, 7, 50):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out = "".join(redactor.feed(p) for p in pieces) + redactor.feed("", final=True)
        assert out == "before [redacted] middle [redacted] after", size


def test_a_stream_holds_back_only_what_could_begin_a_secret():
    # what is held waits for the next piece: past a stall or a kill it is what a stream would lose
    add_secret("held-secret-0123456789")
    redactor = StreamRedactor()
    assert redactor.feed("Lorem ipsum dolor sit amet, ") == "Lorem ipsum dolor sit amet, "
    assert redactor.feed("the key is hel") == "the key is "  # "hel" could begin it
    assert redactor.feed("lo there") == "hello there"
    assert redactor.feed("held-secret-01") == ""
    assert redactor.feed("23456789.") + redactor.feed("", final=True) == "[redacted]."


def test_redaction_covers_the_forms_a_key_takes_in_error_text():
    secret = "forms-secret/+=0123456789"
    add_secret(secret + "\n")
    for text in (
        f"Illegal header value b'Bearer {secret}\\n'",
        json.dumps({"key": secret}),
        f"?appid=forms-secret%2F%2B%3D0123456789",
        repr(secret),
    ):
        assert "0123456789" not in redact(text), text
    assert redact("short abc") == "short abc"


def test_a_tool_secret_with_a_trailing_newline_is_stripped_and_one_with_a_line_break_inside_refused(hub, sites, monkeypatch):
    from aihub_nb.tools import get_tool, invoke_tool

    home, _ = sites
    hub.http_tool("me", "GET", home.url + "/me?appid=${TOOL_KEY}", headers=HEADERS)
    monkeypatch.setenv("TOOL_KEY", SECRET + "\n")
    assert invoke_tool(hub.runtime, get_tool(hub.runtime, "me"), {}).status == "completed"
    assert home.received[-1]["headers"]["x-api-key"] == SECRET
    assert home.received[-1]["path"] == f"/me?appid={SECRET}"
    monkeypatch.setenv("TOOL_KEY", "sk-test-9f8e\n7d6c5b4a39281706")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "me"), {})
    assert outcome.content == (
        "Tool 'me' failed: the environment variable TOOL_KEY (for header 'X-Api-Key') has a control character "
        "or line break inside; set it again to the value alone"
    )
    assert find_in_database(hub.path, SECRET) == [] and find_in_database(hub.path, "7d6c5b4a39281706") == []


def test_a_secret_in_a_long_text_is_masked_in_each_form(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-long-text-secret/+=1")
    body = "QUJD" * 200_000  # a long base64 run, like an embedding response
    for form in ("sk-long-text-secret/+=1", json.dumps("sk-long-text-secret/+=1")[1:-1], "sk-long-text-secret%2F%2B%3D1"):
        assert redact(body + form + body) == body + "[redacted]" + body
    assert redact(body) is body
