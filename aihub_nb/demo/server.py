"""The local HTTP server that speaks the OpenAI and Ollama chat APIs: what `connect local` talks to,
and what users' tests script through `aihub_nb.testing`.

`LocalServer` listens on 127.0.0.1 and answers, on one port, both the OpenAI chat-completions
API (under ``/v1``) and the Ollama chat API (under ``/api``) in their real wire formats, so the
official ``openai`` and ``ollama`` clients work against it unmodified. Each chat request (either
API, streamed or not) consumes the next `ScriptedReply`; when none is queued the deterministic
demo model of `aihub_nb.demo.model` answers. Every request is recorded in `LocalServer.requests`.

    from aihub_nb.testing import LocalServer, ScriptedReply
    import openai, ollama

    with LocalServer() as server:
        server.script(
            ScriptedReply("Hello world!"),
            ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2}}]),
        )
        oa = openai.OpenAI(base_url=server.openai_base_url, api_key="x")
        oa.chat.completions.create(model="local-chat", messages=[{"role": "user", "content": "hi"}])
        ol = ollama.Client(host=server.ollama_host)
        ol.chat(model="local-chat", messages=[{"role": "user", "content": "add two"}])  # calls add
        server.requests[-1].json["messages"]  # what the ollama client sent

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``,
``POST /v1/images/generations``, ``POST /v1/embeddings``, ``GET /``, ``GET /api/version``,
``GET /api/tags``, ``POST /api/chat``, ``POST /api/embed``. Model names match with
or without ``:latest``; ``/api/tags`` lists them with the tag, as Ollama does. Every GET also
answers HEAD (the ``ollama`` CLI checks the server with ``HEAD /``); request bodies may come
with a Content-Length or chunked.

Images and embeddings: ``local-image`` draws PNGs from the prompt (`aihub_nb.demo.model.draw`;
``b64_json`` with a ``usage`` object as gpt-image-1 answers, or with ``"response_format": "url"`` a
URL on this server, as dall-e-3 may; ``size`` "WxH" up to 2048 each, default 256x256);
``local-embed`` embeds (``encoding_format`` "float" or "base64", at most 2,048 inputs, as OpenAI;
Ollama's ``/api/embed`` the same vectors). `LocalServer.embedding_quirks` makes ``/v1/embeddings``
answer as some compatible servers do: ``"floats"`` (floats whatever was asked), ``"reversed"``
(the data in reverse order, each with its index), ``"no-index"`` (items without an index). The chat models refuse both, and ``local-image`` and
``local-embed`` refuse chat, in the API's error shape. Chat messages may carry images (OpenAI
``image_url`` parts with data URLs, Ollama ``images``): the demo model says how many and their sizes;
models in `LocalServer.text_only_models` refuse them as text-only models do. An image or embedding
request consumes a queued `ScriptedReply` only if it carries a fault (``"policy"``: OpenAI's 400
``content_policy_violation``).

Faults, one request each (a client's retry gets the next reply):

* ``"429"``, ``"500"``, ``"503"``, ``"401"``: that status with the API's error body (OpenAI:
  ``{"error": {"message", "type", "param", "code"}}``, code ``rate_limit_exceeded`` for 429 and
  ``invalid_api_key`` for 401; Ollama: ``{"error": "..."}``), plus a ``Retry-After`` header when
  `ScriptedReply.retry_after` is set (``"2"`` for whole seconds, else e.g. ``"0.5"``);
* with `LocalServer(api_key=..., echo_rejected_key=True)`, a request with another key gets a 401
  that quotes the key it was given;
* ``"drop"``: headers and `ScriptedReply.drop_after` pieces, then the connection closes mid-body
  (a non-streamed answer: half its body);
* ``"malformed"``: `ScriptedReply.drop_after` pieces, then data that is not JSON, then a proper end;
* ``"empty"``: a 200 streamed answer that ends without a single event (llama-cpp-python's answer
  to a request beyond the model's context); a non-streamed answer: an empty body;
* ``"keepalive"`` (OpenAI API): the head, then an SSE comment ``: keep-alive`` every
  `ScriptedReply.token_delay` seconds (default 0.05) and never a reply, until the client hangs up (at most
  two minutes);
* ``"endless"``: a runaway reply: one more word every `ScriptedReply.token_delay` seconds, never
  finishing, until the client hangs up (at most two minutes);
* `ScriptedReply.first_token_delay` / `ScriptedReply.token_delay`: pauses before the first / each next piece.

A 429 storm, as a busy provider answers: `LocalServer.limit_rate(per_second, retry_after=...)`
answers 429 (with ``Retry-After`` when given) to every chat request beyond `per_second` chat
requests in any one-second window; `limit_rate(None)` lifts it. `LocalServer.rate_limited` counts
the requests it refused.

How the reply ends, scripted: `ScriptedReply.finish_reason` is sent as it is ("length",
"content_filter", ...; Ollama's ``done_reason``); None sends none (OpenAI: no chunk carries a
finish reason; Ollama: no ``done_reason``); the default is "stop", or "tool_calls" for tool calls.
`ScriptedReply(usage=False)` sends no token counts at all, even when the client asks with
``stream_options`` (as llama-cpp-python). `ScriptedReply(timings=True)` adds llama.cpp's ``timings``
object (prompt_n, prompt_ms, predicted_n, predicted_ms, predicted_per_second, ...) to the OpenAI
answer (the last chunk of a stream); Ollama answers always carry Ollama's own durations. Tool-call
arguments given as a string are sent as they are, so a call cut short (``'{"a": 1'``) can be
scripted. With `LocalServer.strict_tool_arguments` set, a request whose history holds a tool call
whose arguments are not a JSON object is answered 500, as llama.cpp's server does.

Token counts default to the word-ish tokens of all request messages (prompt) and the number of
streamed pieces (completion: content chunks, plus one per tool call and one per arguments piece).

With ``api_key`` set, every ``/v1`` and ``/api`` request except ``/api/version`` needs the header
``Authorization: Bearer <api_key>`` (give the ``ollama`` client
``headers={"Authorization": "Bearer ..."}``). ``python -m aihub_nb.testing [--host H] [--port N]``
serves until Ctrl-C.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .model import answer as demo_answer
from .model import draw, embedding, message_images, message_text

__all__ = ["DEFAULT_MODELS", "FAULTS", "LocalServer", "RecordedRequest", "ScriptedReply"]

DEFAULT_MODELS = ("local-chat", "local-tools", "local-image", "local-embed")
IMAGE_MODELS = ("local-image",)
EMBEDDING_MODELS = ("local-embed",)
MAX_EMBEDDING_INPUTS = 2048

FAULTS = (None, "429", "500", "503", "401", "drop", "malformed", "empty", "keepalive", "endless", "policy")
_DEFAULT_FINISH = "default"
_ENDLESS_LIMIT = 120.0  # seconds a "keepalive" or "endless" answer goes on without a client hanging up
_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")
_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua"
).split()
_FINGERPRINT = "fp_a1b2c3d4e5"
_OLLAMA_VERSION = "0.12.0"

# fault -> (status, message, type, code) in OpenAI's error shape
_OPENAI_FAULTS = {
    "401": (
        401,
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    "429": (
        429,
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    "500": (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    "503": (503, "The server is overloaded or not ready yet.", "server_error", None),
    "policy": (
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain text "
        "that is not allowed by our safety system.",
        "image_generation_user_error",
        "content_policy_violation",
    ),
}
# fault -> (status, message) in Ollama's error shape
_OLLAMA_FAULTS = {
    "401": (401, "unauthorized"),
    "429": (429, "rate limit exceeded, please try again later"),
    "500": (500, "an error was encountered while running the model"),
    "503": (503, "server busy, please try again.  maximum pending requests exceeded"),
}


@dataclass
class ScriptedReply:
    """One scripted model answer; each chat request (either API) consumes the next one."""

    text: str = ""
    tool_calls: list[dict] | None = None
    chunks: list[str] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    fault: str | None = None
    retry_after: float | None = None
    drop_after: int = 3
    finish_reason: str | None = _DEFAULT_FINISH
    usage: bool = True
    timings: bool = False

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"Unknown fault {self.fault!r}; use one of {FAULTS}.")
        if self.chunks is not None:
            joined = "".join(self.chunks)
            if self.text and self.text != joined:
                raise ValueError("ScriptedReply.chunks must join to ScriptedReply.text; give one or the other.")
            self.text = joined
        for call in self.tool_calls or ():
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ValueError(f"Each tool call needs a 'name': got {call!r}.")

    @classmethod
    def lorem(cls, n_tokens: int, **kw) -> ScriptedReply:
        """A deterministic reply of `n_tokens` chunks, one word each (for benchmarks)."""
        words = (_LOREM[i % len(_LOREM)] for i in range(n_tokens))
        return cls(chunks=[w if i == 0 else " " + w for i, w in enumerate(words)], **kw)


@dataclass
class RecordedRequest:
    """One request the server received. Header names are lower-cased; `json` is None unless
    the body was a JSON object; `api` is "openai" for paths under /v1, else "ollama"."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict | None
    api: str


@dataclass
class _Call:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def arguments_object(self) -> object:
        """The arguments as Ollama sends them (an object); unparsable text is sent as is."""
        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


@dataclass
class _Answer:
    """A ScriptedReply resolved against one request: the exact pieces to send."""

    reply: ScriptedReply
    model: str
    chunks: list[str]
    calls: list[_Call]
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def build(cls, reply: ScriptedReply, body: dict) -> _Answer:
        chunks = list(reply.chunks) if reply.chunks is not None else _split(reply.text)
        calls = [
            _Call(
                id=call.get("id") or _call_id(),
                name=call["name"],
                arguments=_arguments_text(call.get("arguments", {})),
            )
            for call in reply.tool_calls or ()
        ]
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        prompt = sum(len(_split(message_text(m.get("content")))) for m in messages if isinstance(m, dict))
        completion = len(chunks) + sum(1 + len(_split(c.arguments)) for c in calls)
        return cls(
            reply=reply,
            model=body["model"],
            chunks=chunks,
            calls=calls,
            prompt_tokens=prompt if reply.prompt_tokens is None else reply.prompt_tokens,
            completion_tokens=completion if reply.completion_tokens is None else reply.completion_tokens,
        )

    def generate(self) -> int:
        """Take as long as streaming would (for non-streamed answers); return when (in
        perf_counter ns) the first token was ready."""
        time.sleep(self.reply.first_token_delay)
        first = time.perf_counter_ns()
        time.sleep(self.reply.token_delay * max(0, len(self.chunks) + len(self.calls) - 1))
        return first


class LocalServer:
    """A local OpenAI + Ollama compatible chat server; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: tuple[str, ...] = DEFAULT_MODELS,
        api_key: str | None = None,
        echo_rejected_key: bool = False,
    ) -> None:
        self.host = host
        self.models = tuple(models)
        self.api_key = api_key
        self.echo_rejected_key = echo_rejected_key  # a 401 quotes the key it got, as careless proxies do
        # Answer 500 to a history holding tool-call arguments that are not a JSON object (llama.cpp).
        self.strict_tool_arguments = False
        # Models that refuse image input, as text-only models do.
        self.text_only_models: set[str] = set()
        # How /v1/embeddings departs from OpenAI's answer, as some compatible servers do (see above).
        self.embedding_quirks: set[str] = set()
        # Other names the models answer to, as a local server may serve a model under a hosted one's name.
        self.aliases: dict[str, str] = {}
        self._images: dict[str, bytes] = {}  # served at /v1/images/files/<name> (response_format "url")
        self._port = port
        self._lock = threading.Lock()
        self._queue: deque[ScriptedReply] = deque()
        self._requests: list[RecordedRequest] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started_at = datetime.now(timezone.utc)
        self._rate: tuple[float, float | None] | None = None
        self._recent: deque[float] = deque()
        self.rate_limited = 0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LocalServer:
        """Serve in a daemon thread; with port 0 a free port is chosen (see `port`)."""
        if self._httpd is not None:
            raise RuntimeError("LocalServer is already running; call stop() first.")
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.owner = self
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"aihub_nb-local-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def ollama_host(self) -> str:
        return self.url

    # -- scripting --------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def script(self, *replies: ScriptedReply) -> None:
        """Queue replies; each chat request consumes the next one, then the demo model answers."""
        for reply in replies:
            if not isinstance(reply, ScriptedReply):
                raise TypeError(f"script() takes ScriptedReply objects, got {type(reply).__name__}.")
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Clear the reply queue and the recorded requests, and lift a rate limit."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._rate, self.rate_limited = None, 0
            self._recent.clear()

    def limit_rate(self, per_second: float | None, *, retry_after: float | None = None) -> None:
        """Answer 429 to chat requests beyond `per_second` in any one-second window (None: no limit)."""
        with self._lock:
            self._rate = None if per_second is None else (float(per_second), retry_after)
            self._recent.clear()

    def _over_rate(self) -> float | None | bool:
        """False when this chat request may go ahead; else the Retry-After to send (None: none)."""
        with self._lock:
            if self._rate is None:
                return False
            per_second, retry_after = self._rate
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= per_second:
                self.rate_limited += 1
                return retry_after
            self._recent.append(now)
            return False

    # -- used by the handler ----------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, body: dict) -> ScriptedReply:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        return reply if reply is not None else ScriptedReply(**demo_answer(body))

    def _next_fault(self) -> str | None:
        """The fault of the next queued reply, taken from the queue; None (nothing taken) when the
        next reply is not a fault: image and embedding requests only consume faults."""
        with self._lock:
            if self._queue and self._queue[0].fault is not None:
                return self._queue.popleft().fault
        return None

    def _find_model(self, name: object) -> str | None:
        if not isinstance(name, str):
            return None
        bare = name.removesuffix(":latest")
        bare = self.aliases.get(bare, bare)
        for model in self.models:
            if bare == model.removesuffix(":latest"):
                return model
        return None

    def _authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: LocalServer

    def __init__(self, *args, **kwargs) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client going away is not an error
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aihub_nb-local-server"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:  # the ollama CLI's heartbeat is `HEAD /`
        self._dispatch()

    @property
    def _method(self) -> str:
        """The method to route by: HEAD is answered as GET, without the body."""
        return "GET" if self.command == "HEAD" else self.command

    # -- routing ----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        started = time.perf_counter_ns()
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        api = "openai" if path == "/v1" or path.startswith("/v1/") else "ollama"
        body = _parse_object(self._read_body())
        owner._record(
            RecordedRequest(
                method=self.command,
                path=path,
                headers={k.lower(): v for k, v in self.headers.items()},
                json=body,
                api=api,
            )
        )
        try:
            if api == "openai":
                self._route_openai(path, body, started)
            else:
                self._route_ollama(path, body, started)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        """The request body, sent with a Content-Length or chunked; a malformed one reads as empty
        (a 400 follows) and ends the connection."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        try:
            while size := int(self.rfile.readline(1024).split(b";", 1)[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        except ValueError:
            self.close_connection = True
            return b""
        while self.rfile.readline(1024).strip():  # trailer fields, up to the blank line
            pass
        return b"".join(parts)

    def _route_openai(self, path: str, body: dict | None, started: int) -> None:
        owner = self.server.owner
        if not owner._authorized(self.headers.get("Authorization")):
            if self.headers.get("Authorization"):
                if owner.echo_rejected_key:
                    given = self.headers["Authorization"].removeprefix("Bearer ")
                    return self._openai_error(401, f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key")
                return self._openai_fault("401")
            return self._openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                "invalid_api_key",
            )
        route = (self._method, path)
        if route == ("GET", "/v1/models"):
            data = [_openai_model(m, owner._started_at) for m in owner.models]
            return self._send_json(200, {"object": "list", "data": data})
        if self._method == "GET" and path.startswith("/v1/models/"):
            model = owner._find_model(path.removeprefix("/v1/models/"))
            if model is None:
                return self._openai_model_not_found(path.removeprefix("/v1/models/"))
            return self._send_json(200, _openai_model(model, owner._started_at))
        if route == ("POST", "/v1/chat/completions"):
            return self._openai_chat(body, started)
        if route == ("POST", "/v1/images/generations"):
            return self._openai_images(body)
        if route == ("POST", "/v1/embeddings"):
            return self._openai_embeddings(body)
        if self._method == "GET" and path.startswith("/v1/images/files/"):
            data = owner._images.get(path.removeprefix("/v1/images/files/"))
            if data is not None:
                return self._send(200, data, "image/png")
        return self._openai_error(
            404, f"Invalid URL ({self.command} {path})", "invalid_request_error", None
        )

    def _route_ollama(self, path: str, body: dict | None, started: int) -> None:
        owner = self.server.owner
        route = (self._method, path)
        if route == ("GET", "/"):
            return self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        if route == ("GET", "/api/version"):
            return self._send_json(200, {"version": _OLLAMA_VERSION})
        if not owner._authorized(self.headers.get("Authorization")):
            if owner.echo_rejected_key:
                return self._send_json(401, {"error": f"unauthorized: {self.headers.get('Authorization')}"})
            return self._ollama_fault("401")
        if route == ("GET", "/api/tags"):
            models = [_ollama_model(m, owner._started_at) for m in owner.models]
            return self._send_json(200, {"models": models})
        if route == ("POST", "/api/chat"):
            return self._ollama_chat(body, started)
        if route == ("POST", "/api/embed"):
            return self._ollama_embed(body, started)
        return self._send(404, b"404 page not found", "text/plain")

    # -- OpenAI chat ------------------------------------------------------------------------------
    def _openai_chat(self, body: dict | None, started: int) -> None:
        owner = self.server.owner
        if body is None:
            return self._openai_error(
                400,
                "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.",
                "invalid_request_error",
                None,
            )
        if not body.get("model"):
            return self._openai_error(
                400, "you must provide a model parameter", "invalid_request_error", None
            )
        if not isinstance(body.get("messages"), list):
            return self._openai_error(
                400,
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                "missing_required_parameter",
                param="messages",
            )
        if owner._find_model(body["model"]) is None:
            return self._openai_model_not_found(body["model"])
        if owner._find_model(body["model"]) in IMAGE_MODELS + EMBEDDING_MODELS:
            return self._openai_error(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
                "Did you mean to use v1/completions?",
                "invalid_request_error",
                None,
                param="model",
            )
        if owner._find_model(body["model"]) in owner.text_only_models and _carries_images(body):
            return self._openai_error(
                400,
                "Invalid content type. image_url is only supported by certain models.",
                "invalid_request_error",
                None,
                param="messages",
            )
        broken_history = owner.strict_tool_arguments and _invalid_tool_arguments(body)
        if broken_history:
            return self._send_json(500, {"error": {"code": 500, "message": broken_history, "type": "server_error"}})
        limited = owner._over_rate()
        if limited is not False:
            return self._openai_fault("429", limited)
        reply = owner._next_reply(body)
        if reply.fault in _OPENAI_FAULTS:
            return self._openai_fault(reply.fault, reply.retry_after)
        answer = _Answer.build(reply, body)
        chat_id = "chatcmpl-" + secrets.token_hex(15)[:29]
        created = int(time.time())
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage")) and reply.usage
            events = _OpenAIEvents(chat_id, created, answer, include_usage)
            pieces = events.pieces()
            if reply.fault == "keepalive":
                pieces = _forever(lambda _i: b": keep-alive\n\n")
            elif reply.fault == "endless":
                pieces = _forever(lambda i: events.content(_LOREM[i % len(_LOREM)] + " "))
            return self._send_stream(
                answer.reply,
                "text/event-stream; charset=utf-8",
                events.head(),
                pieces,
                lambda first: events.tail(started, first),
                b'data: {"choices": [\n\n',
            )
        first = answer.generate()
        payload = _openai_completion(chat_id, created, answer, started, first)
        return self._send_whole(answer.reply, payload, b'{"choices": [')

    # -- OpenAI images and embeddings -------------------------------------------------------------
    def _openai_images(self, body: dict | None) -> None:
        owner = self.server.owner
        if body is None or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
            return self._openai_error(
                400, "Missing required parameter: 'prompt'.", "invalid_request_error", "missing_required_parameter", param="prompt"
            )
        model = owner._find_model(body.get("model") or "local-image")
        if model is None:
            return self._openai_model_not_found(body.get("model"))
        if model not in IMAGE_MODELS:
            return self._openai_error(
                400,
                f"Invalid value: '{body.get('model')}'. Supported values are: {', '.join(repr(m) for m in IMAGE_MODELS)}.",
                "invalid_request_error",
                "invalid_value",
                param="model",
            )
        size = _image_size(body.get("size"))
        if size is None:
            return self._openai_error(
                400,
                f"Invalid value: '{body.get('size')}'. Supported values are: 'auto' and 'WIDTHxHEIGHT' up to 2048x2048.",
                "invalid_request_error",
                "invalid_value",
                param="size",
            )
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            return self._openai_error(
                400, f"Invalid value: {n!r}; 'n' must be between 1 and 10.", "invalid_request_error", "invalid_value", param="n"
            )
        fault = owner._next_fault()
        if fault in _OPENAI_FAULTS:
            return self._openai_fault(fault)
        data = []
        for i in range(n):
            png = draw(body["prompt"] if i == 0 else f"{body['prompt']} {i}", *size)
            item: dict = {"revised_prompt": body["prompt"]}
            if body.get("response_format") == "url":
                name = hashlib.sha256(png).hexdigest() + ".png"
                with owner._lock:
                    owner._images[name] = png
                item["url"] = f"{owner.url}/v1/images/files/{name}"
            else:
                item["b64_json"] = base64.b64encode(png).decode()
            data.append(item)
        prompt_tokens = len(_split(body["prompt"]))
        usage = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": prompt_tokens},
            "output_tokens": 272 * n,
            "total_tokens": prompt_tokens + 272 * n,
        }
        self._send_json(
            200,
            {
                "created": int(time.time()),
                "data": data,
                "size": f"{size[0]}x{size[1]}",
                "quality": body.get("quality") if body.get("quality") in ("low", "medium", "high") else "medium",
                "output_format": "png",
                "usage": usage,
            },
        )

    def _openai_embeddings(self, body: dict | None) -> None:
        owner = self.server.owner
        texts = _embedding_inputs(body)
        if texts is None:
            return self._openai_error(
                400,
                f"'$.input' is invalid: give a non-empty string or a list of 1 to {MAX_EMBEDDING_INPUTS} non-empty strings.",
                "invalid_request_error",
                None,
                param="input",
            )
        model = owner._find_model(body.get("model"))
        if model is None:
            return self._openai_model_not_found(body.get("model"))
        if model not in EMBEDDING_MODELS:
            return self._openai_error(
                400, f"The model `{body.get('model')}` does not support embeddings.", "invalid_request_error", None, param="model"
            )
        fault = owner._next_fault()
        if fault in _OPENAI_FAULTS:
            return self._openai_fault(fault)
        quirks = owner.embedding_quirks
        as_base64 = body.get("encoding_format") == "base64" and "floats" not in quirks
        data = []
        for i, text in enumerate(texts):
            vector = embedding(text, _dimensions(body))
            value = base64.b64encode(array.array("f", vector).tobytes()).decode() if as_base64 else vector
            data.append({"object": "embedding", "embedding": value} if "no-index" in quirks else {"object": "embedding", "index": i, "embedding": value})
        if "reversed" in quirks:
            data.reverse()
        tokens = sum(len(_split(t)) for t in texts)
        self._send_json(
            200,
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
        )

    def _openai_fault(self, fault: str, retry_after: float | None = None) -> None:
        status, message, type_, code = _OPENAI_FAULTS[fault]
        self._openai_error(status, message, type_, code, retry_after=retry_after)

    def _openai_model_not_found(self, model: object) -> None:
        self._openai_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    def _openai_error(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        error = {"message": message, "type": type_, "param": param, "code": code}
        self._send_json(status, {"error": error}, retry_after=retry_after)

    # -- Ollama chat ------------------------------------------------------------------------------
    def _ollama_chat(self, body: dict | None, started: int) -> None:
        owner = self.server.owner
        if body is None:
            return self._send_json(400, {"error": "invalid request body: expected a JSON object"})
        if not body.get("model"):
            return self._send_json(400, {"error": "model is required"})
        if owner._find_model(body["model"]) is None:
            error = f"model {json.dumps(body['model'])} not found, try pulling it first"
            return self._send_json(404, {"error": error})
        if owner._find_model(body["model"]) in IMAGE_MODELS + EMBEDDING_MODELS:
            return self._send_json(400, {"error": f"{json.dumps(body['model'])} does not support chat"})
        if owner._find_model(body["model"]) in owner.text_only_models and _carries_images(body):
            return self._send_json(500, {"error": "this model is missing data required for image input"})
        broken_history = owner.strict_tool_arguments and _invalid_tool_arguments(body)
        if broken_history:
            return self._send_json(500, {"error": broken_history})
        limited = owner._over_rate()
        if limited is not False:
            status, message = _OLLAMA_FAULTS["429"]
            return self._send_json(status, {"error": message}, retry_after=limited)
        reply = owner._next_reply(body)
        if reply.fault in _OLLAMA_FAULTS:
            status, message = _OLLAMA_FAULTS[reply.fault]
            return self._send_json(status, {"error": message}, retry_after=reply.retry_after)
        answer = _Answer.build(reply, body)
        chosen = time.perf_counter_ns()
        broken = b'{"model": ' + _dumps(answer.model) + b', "message": {"role": "assistant", "con\n'
        if body.get("stream") is not False:  # Ollama streams unless told not to
            pieces = _ollama_pieces(answer)
            if reply.fault in ("keepalive", "endless"):
                pieces = _forever(lambda i: _ollama_line(answer.model, _LOREM[i % len(_LOREM)] + " "))
            return self._send_stream(
                answer.reply,
                "application/x-ndjson",
                b"",
                pieces,
                lambda first: [_ollama_final(answer, started, chosen, first) + b"\n"],
                broken,
            )
        first = answer.generate()
        message: dict = {"role": "assistant", "content": answer.reply.text}
        if answer.calls:
            message["tool_calls"] = _ollama_tool_calls(answer.calls)
        payload = _ollama_final(answer, started, chosen, first, message)
        return self._send_whole(answer.reply, payload, broken)

    def _ollama_embed(self, body: dict | None, started: int) -> None:
        owner = self.server.owner
        if body is None or not body.get("model"):
            return self._send_json(400, {"error": "model is required"})
        model = owner._find_model(body["model"])
        if model is None:
            return self._send_json(404, {"error": f"model {json.dumps(body['model'])} not found, try pulling it first"})
        if model not in EMBEDDING_MODELS:
            return self._send_json(400, {"error": f"{json.dumps(body['model'])} does not support embeddings"})
        texts = _embedding_inputs(body, limit=None)
        if texts is None:
            return self._send_json(400, {"error": "invalid input type"})
        fault = owner._next_fault()
        if fault in _OLLAMA_FAULTS:
            return self._ollama_fault(fault)
        vectors = [embedding(text, _dimensions(body)) for text in texts]
        now = time.perf_counter_ns()
        self._send_json(
            200,
            {
                "model": body["model"],
                "embeddings": vectors,
                "total_duration": max(2, now - started),
                "load_duration": 1,
                "prompt_eval_count": sum(len(_split(t)) for t in texts),
            },
        )

    def _ollama_fault(self, fault: str) -> None:
        status, message = _OLLAMA_FAULTS[fault]
        self._send_json(status, {"error": message})

    # -- writing ----------------------------------------------------------------------------------
    def _send(
        self, status: int, payload: bytes, content_type: str, *, retry_after: float | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", _seconds(retry_after))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_json(self, status: int, obj: object, *, retry_after: float | None = None) -> None:
        self._send(status, _dumps(obj), "application/json; charset=utf-8", retry_after=retry_after)

    def _send_whole(self, reply: ScriptedReply, payload: bytes, broken: bytes) -> None:
        """A non-streamed 200 answer, or its "drop" (half the body) / "malformed" / "empty" fault."""
        if reply.fault == "empty":
            return self._send(200, b"", "application/json; charset=utf-8")
        if reply.fault in ("keepalive", "endless"):  # a whole answer that never comes
            time.sleep(_ENDLESS_LIMIT if not reply.token_delay else min(_ENDLESS_LIMIT, reply.token_delay * 1000))
            return self._drop()
        if reply.fault == "malformed":
            return self._send(200, broken, "application/json; charset=utf-8")
        if reply.fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            return self._drop()
        return self._send(200, payload, "application/json; charset=utf-8")

    def _send_stream(
        self,
        reply: ScriptedReply,
        content_type: str,
        head: bytes,
        pieces: Iterable[bytes],
        make_tail: Callable[[int], list[bytes]],
        broken: bytes,
    ) -> None:
        """A chunked streamed answer: head, pieces (paced by the reply's delays), then the tail
        built with the time the first piece went out; or the reply's "drop"/"malformed" fault."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        write = self.wfile.write
        if reply.fault == "empty":
            write(b"0\r\n\r\n")
            return
        if head:
            write(_http_chunk(head))
        limit = reply.drop_after if reply.fault in ("drop", "malformed") else -1
        first = 0
        endless = reply.fault in ("keepalive", "endless")
        until = time.monotonic() + _ENDLESS_LIMIT
        for i, piece in enumerate(pieces):
            if i == limit:
                break
            delay = reply.first_token_delay if i == 0 else reply.token_delay
            if endless:
                delay = delay or 0.05
                if time.monotonic() > until:
                    return self._drop()
            if delay:
                time.sleep(delay)
            write(_http_chunk(piece))
            self.wfile.flush()
            first = first or time.perf_counter_ns()
        if reply.fault == "drop":
            return self._drop()
        tail = [broken] if reply.fault == "malformed" else make_tail(first or time.perf_counter_ns())
        for event in tail:
            write(_http_chunk(event))
        write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the connection mid-body, as a crashed upstream would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _OpenAIEvents:
    """The SSE events of one streamed chat completion, pre-encoded."""

    def __init__(self, chat_id: str, created: int, answer: _Answer, include_usage: bool) -> None:
        self.answer = answer
        self.include_usage = include_usage
        self.prefix = (
            b'data: {"id":"' + chat_id.encode() + b'","object":"chat.completion.chunk","created":'
            + str(created).encode() + b',"model":' + _dumps(answer.model)
            + b',"service_tier":"default","system_fingerprint":"' + _FINGERPRINT.encode()
            + b'","choices":['
        )
        self.suffix = (b'],"usage":null}' if include_usage else b"]}") + b"\n\n"

    def _event(self, delta: bytes, finish_reason: bytes = b"null") -> bytes:
        return (
            self.prefix + b'{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":'
            + finish_reason + b"}" + self.suffix
        )

    def head(self) -> bytes:
        return self._event(b'{"role":"assistant","content":"","refusal":null}')

    def content(self, text: str) -> bytes:
        return self._event(b'{"content":' + _dumps(text) + b"}")

    def pieces(self) -> Iterable[bytes]:
        for chunk in self.answer.chunks:
            yield self.content(chunk)
        for index, call in enumerate(self.answer.calls):
            start = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield self._event(b'{"tool_calls":[' + _dumps(start) + b"]}")
            for part in _split(call.arguments):
                delta = {"index": index, "function": {"arguments": part}}
                yield self._event(b'{"tool_calls":[' + _dumps(delta) + b"]}")

    def tail(self, started: int, first: int) -> list[bytes]:
        events = []
        finish = _finish_reason(self.answer)
        if finish is not None:
            events.append(self._event(b"{}", _dumps(finish)))
        if self.answer.reply.timings:  # llama.cpp: on the last chunk
            timings = _dumps(_llama_timings(self.answer, started, first))
            last = events.pop() if events else self.prefix + b"]" + self.suffix
            events.append(last.removesuffix(b"}\n\n") + b',"timings":' + timings + b"}\n\n")
        if self.include_usage:
            usage = _dumps(_openai_usage(self.answer))
            events.append(self.prefix + b'],"usage":' + usage + b"}\n\n")
        events.append(b"data: [DONE]\n\n")
        return events


# -- payloads -------------------------------------------------------------------------------------
def _openai_model(model: str, created: datetime) -> dict:
    return {"id": model, "object": "model", "created": int(created.timestamp()), "owned_by": "aihub_nb"}


def _openai_usage(answer: _Answer) -> dict:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(answer: _Answer) -> str | None:
    if answer.reply.finish_reason == _DEFAULT_FINISH:
        return "tool_calls" if answer.calls else "stop"
    return answer.reply.finish_reason


def _llama_timings(answer: _Answer, started: int, first: int) -> dict:
    """llama.cpp's `timings` object, from the time the request arrived, the first token and now."""
    now = time.perf_counter_ns()
    prompt_ms = max(0.001, (first - started) / 1e6)
    predicted_ms = max(0.001, (now - first) / 1e6)
    n_prompt, n_predicted = answer.prompt_tokens, answer.completion_tokens
    return {
        "cache_n": 0,
        "prompt_n": n_prompt,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / max(1, n_prompt),
        "prompt_per_second": n_prompt * 1000.0 / prompt_ms,
        "predicted_n": n_predicted,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / max(1, n_predicted),
        "predicted_per_second": n_predicted * 1000.0 / predicted_ms,
    }


def _invalid_tool_arguments(body: dict) -> str:
    """What llama.cpp's server says about a history whose tool-call arguments are not a JSON
    object ("" when they all are)."""
    for message in body.get("messages") or ():
        for call in (message.get("tool_calls") or ()) if isinstance(message, dict) else ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, dict):
                continue
            try:
                value = json.loads(arguments) if isinstance(arguments, str) else None
            except ValueError as exc:
                return f"[json.exception.parse_error.101] parse error at line 1, column {exc.pos + 1}: {exc.msg}"
            if not isinstance(value, dict):
                return "[json.exception.type_error.302] type must be object, but is " + type(value).__name__
    return ""


def _forever(make: Callable[[int], bytes]) -> Iterable[bytes]:
    i = 0
    while True:
        yield make(i)
        i += 1


def _openai_completion(chat_id: str, created: int, answer: _Answer, started: int = 0, first: int = 0) -> bytes:
    message: dict = {
        "role": "assistant",
        "content": (answer.reply.text or None) if answer.calls else answer.reply.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.calls
        ]
    completion = {
        "id": chat_id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(answer)}],
        "usage": _openai_usage(answer) if answer.reply.usage else None,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    if answer.reply.timings:
        completion["timings"] = _llama_timings(answer, started, first or started)
    return _dumps(completion)


def _ollama_model(model: str, modified: datetime) -> dict:
    name = model if ":" in model else model + ":latest"
    return {
        "name": name,
        "model": name,
        "modified_at": _rfc3339(modified),
        "size": 1_000_000 + len(name),
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "aihub",
            "families": ["aihub"],
            "parameter_size": "1M",
            "quantization_level": "F16",
        },
    }


def _ollama_tool_calls(calls: list[_Call]) -> list[dict]:
    return [
        {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments_object()}}
        for i, c in enumerate(calls)
    ]


def _ollama_line(model: str, text: str) -> bytes:
    return (
        b'{"model":' + _dumps(model) + b',"created_at":"' + _rfc3339().encode()
        + b'","message":{"role":"assistant","content":' + _dumps(text) + b'},"done":false}\n'
    )


def _ollama_pieces(answer: _Answer) -> Iterable[bytes]:
    for chunk in answer.chunks:
        yield _ollama_line(answer.model, chunk)
    if answer.calls:
        message = {"role": "assistant", "content": "", "tool_calls": _ollama_tool_calls(answer.calls)}
        line = {"model": answer.model, "created_at": _rfc3339(), "message": message, "done": False}
        yield _dumps(line) + b"\n"


def _ollama_final(
    answer: _Answer, started: int, chosen: int, first: int, message: dict | None = None
) -> bytes:
    """The closing object of an Ollama answer, with measured durations in nanoseconds."""
    now = time.perf_counter_ns()
    final = {
        "model": answer.model,
        "created_at": _rfc3339(),
        "message": message or {"role": "assistant", "content": ""},
        "done_reason": "stop" if answer.reply.finish_reason == _DEFAULT_FINISH else answer.reply.finish_reason,
        "done": True,
        "total_duration": max(3, now - started),
        "load_duration": max(1, chosen - started),
        "prompt_eval_count": answer.prompt_tokens,
        "prompt_eval_duration": max(1, first - chosen),
        "eval_count": answer.completion_tokens,
        "eval_duration": max(1, now - first),
    }
    if final["done_reason"] is None:
        del final["done_reason"]
    if not answer.reply.usage:
        del final["prompt_eval_count"], final["eval_count"]
    return _dumps(final)


# -- small helpers --------------------------------------------------------------------------------
def _carries_images(body: dict) -> bool:
    return any(isinstance(m, dict) and message_images(m) for m in body.get("messages") or ())


def _image_size(value: object) -> tuple[int, int] | None:
    """(width, height) of a "WxH" size; "auto" and None are 256x256; None when invalid."""
    if value in (None, "auto"):
        return 256, 256
    match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", value) if isinstance(value, str) else None
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    return (width, height) if 1 <= width <= 2048 and 1 <= height <= 2048 else None


def _embedding_inputs(body: dict | None, limit: int | None = MAX_EMBEDDING_INPUTS) -> list[str] | None:
    """The texts of an embeddings request: one string or a list of them; None when invalid."""
    value = body.get("input") if body else None
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or (limit is not None and len(texts) > limit):
        return None
    if not all(isinstance(t, str) and t for t in texts):
        return None
    return texts


def _dimensions(body: dict) -> int:
    value = body.get("dimensions")
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096 else 64

def _split(text: str) -> list[str]:
    """Word-ish tokens that join back to `text`: "Hello world!" -> ["Hello", " world", "!"]."""
    return _TOKEN_RE.findall(text)


def _arguments_text(arguments: object) -> str:
    """Tool-call arguments as OpenAI sends them: compact JSON text; a string is kept as is."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps({} if arguments is None else arguments, separators=(",", ":"))


def _call_id() -> str:
    return "call_" + secrets.token_hex(12)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _parse_object(raw: bytes) -> dict | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: float) -> str:
    """A Retry-After value: "2" for whole seconds, "0.5" otherwise."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
