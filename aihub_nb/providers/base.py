"""The contract every model provider fulfils, and the error mapping they share.

A provider turns a chat in OpenAI's message format into a stream of `Event`s and
maps whatever its client library raises to the `aihub_nb.errors` tree, naming the
connection and saying what to do next.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pydantic

from aihub_nb.errors import (
    AuthenticationError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RateLimitError,
    ServerError,
    StreamError,
    UsageError,
)
from aihub_nb.redact import add_secret, check_key, read_key, redact, unset_key_message

__all__ = [
    "Embeddings",
    "Event",
    "GeneratedImage",
    "Images",
    "Provider",
    "Timeouts",
    "Timings",
    "ToolCall",
    "Usage",
    "error_detail",
    "json_text",
    "retry_after_seconds",
    "tool_call",
]

_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException, TimeoutError)
# Failures to open a connection at all; every other transport error broke an exchange under way.
_UNREACHABLE = (
    httpx.ConnectError,
    httpx2.ConnectError,
    httpx.UnsupportedProtocol,
    httpx2.UnsupportedProtocol,
    OSError,
)
_BROKEN = (httpx.TransportError, httpx2.TransportError)
_MALFORMED = (json.JSONDecodeError, pydantic.ValidationError, httpx.DecodingError, httpx2.DecodingError)
_DETAIL_LIMIT = 200


class _ReportedError(Exception):
    """An error the endpoint sent inside a reply, in a shape its client library lets through."""


@dataclass
class ToolCall:
    """A complete tool call; `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


def tool_call(index: int, name: str, arguments: object, id: str | None = None) -> ToolCall:
    """The `index`-th call of a reply; servers that give no id get "call_<index>_<random hex>",
    unique in the chat, since tool results are matched to their calls by id. `arguments` sent
    as an object (llama.cpp, TGI) become JSON text."""
    id = id or f"call_{index}_{secrets.token_hex(6)}"
    return ToolCall(id=id, name=name, arguments=json_text(arguments) or "{}")


def json_text(value: object) -> str:
    """Tool-call arguments as JSON text: a string as it is, None as "", anything else dumped."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value)


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # of prompt_tokens, read from the provider's cache (when it says)
    reasoning_tokens: int | None = None  # of completion_tokens, spent reasoning (when it says)


@dataclass
class Timings:
    """What the server itself measured, when its reply says (Ollama's durations, llama.cpp's
    `timings`): milliseconds until generation began (loading and reading the prompt), and the
    generation: how many tokens in how many milliseconds."""

    prompt_ms: float | None = None
    generated: int | None = None
    generation_ms: float | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.generated and self.generation_ms and self.generation_ms > 0:
            return self.generated * 1000.0 / self.generation_ms
        return None


@dataclass
class Event:
    """One step of a reply, yielded as it arrives.

    `tool_delta` marks a piece of a tool call that is still being assembled (the whole call
    comes later in `tool_calls`): it tells when the model started answering. `finish_reason`
    is the server's word for why the reply ended: "stop", "length" (the token limit),
    "tool_calls", "content_filter", ... (Ollama's `done_reason` the same)."""

    text: str = ""
    tool_calls: list[ToolCall] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_delta: bool = False
    timings: Timings | None = None
    # The server's id of the reply (OpenAI's chatcmpl-...) and the model that answered, as the
    # server names them: what the reply is, not what happened, so events compare without them.
    response_id: str | None = field(default=None, compare=False)
    response_model: str | None = field(default=None, compare=False)


@dataclass
class GeneratedImage:
    """One generated image: its bytes and MIME type, and the prompt the model says it used."""

    data: bytes
    mime: str = "image/png"
    revised_prompt: str | None = None


@dataclass
class Images:
    """What an image request returned; `usage` in tokens when the endpoint says (gpt-image-1)."""

    images: list[GeneratedImage]
    usage: Usage | None = None


@dataclass
class Embeddings:
    """What an embeddings request returned: `vectors` is a numpy float32 array, one row per input."""

    vectors: Any
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class Timeouts:
    """How long to wait, in seconds: to open the connection (`connect`), for each next bytes
    of the answer (`read`), and for the whole answer of one request (`total`, checked whenever
    bytes arrive; a server that goes silent is cut by `read`)."""

    connect: float = 5.0
    read: float = 60.0
    total: float = 600.0

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        """A Timeouts from itself, None (the defaults), or one number (the read timeout)."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        read = float(value)
        return cls(connect=min(cls.connect, read), read=read, total=max(cls.total, read))

    def for_client(self, lib: Any) -> Any:
        """The `lib.Timeout` (httpx or httpx2) for the client: connect, and read/write/pool
        never longer than the total."""
        read = min(self.read, self.total)
        return lib.Timeout(read, connect=min(self.connect, self.total), pool=min(self.connect, self.total))


class _DeadlineStream:
    """A response body that raises `ReadTimeout` once bytes arrive after the deadline."""

    def __init__(self, inner: Any, deadline: float, total: float, lib: Any) -> None:
        self._inner, self._deadline, self._total, self._lib = inner, deadline, total, lib

    def __iter__(self) -> Iterator[bytes]:
        for data in self._inner:
            if time.monotonic() > self._deadline:
                raise self._lib.ReadTimeout(f"the answer took longer than the total limit of {self._total:g} s")
            yield data

    def close(self) -> None:
        self._inner.close()


class _DeadlineTransport:
    """Wraps a transport (httpx or httpx2) so that each request's answer ends within `total`
    seconds: a server that trickles bytes or keep-alive comments forever is cut off."""

    def __init__(self, inner: Any, total: float, lib: Any) -> None:
        self._inner, self._total, self._lib = inner, total, lib

    def handle_request(self, request: Any) -> Any:
        deadline = time.monotonic() + self._total
        response = self._inner.handle_request(request)
        response.stream = _classes(self._lib)[1](response.stream, deadline, self._total, self._lib)
        return response

    def close(self) -> None:
        self._inner.close()


def deadline_transport(transport: Any, timeouts: Timeouts, lib: Any) -> Any:
    """`transport` (or lib's default HTTPTransport) with the total limit of `timeouts`;
    `lib` is the httpx or httpx2 module the client runs on."""
    inner = transport if transport is not None else lib.HTTPTransport()
    return _classes(lib)[0](inner, timeouts.total, lib)


_CLASSES: dict[str, tuple[type, type]] = {}


def _classes(lib: Any) -> tuple[type, type]:
    """The transport and stream classes for `lib`, whose clients check those base classes."""
    if lib.__name__ not in _CLASSES:
        stream = type("DeadlineStream", (_DeadlineStream, lib.SyncByteStream), {})
        transport = type("DeadlineTransport", (_DeadlineTransport, lib.BaseTransport), {})
        _CLASSES[lib.__name__] = (transport, stream)
    return _CLASSES[lib.__name__]


class Provider:
    """Base class: subclasses implement `_open` (which sets `_client`), `_chat` and `_list_models`,
    and extend `_map_error`."""

    name: str
    # The environment variable a key is read from when the connection names none.
    key_env: str
    # The most inputs one embeddings request may carry.
    max_embedding_inputs: int = 2048

    def __init__(
        self,
        connection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        transport: Any = None,
        timeout: float | Timeouts | None = None,
    ) -> None:
        """`url` is the endpoint (the provider's default when None); the key is `api_key` when
        given, else read from $api_key_env (the provider's `key_env` when None); `transport` is
        the httpx or httpx2 transport the client runs on; `timeout` as in `Timeouts.of`."""
        self.connection = connection
        self.url = url or self._default_url()
        self._key_env = api_key_env or self.key_env
        self._explicit_key = bool(api_key)  # a key given from Python rather than read from $key_env
        key = check_key(api_key, "the key given") if api_key else read_key(self._key_env)
        if not key and self._needs_key(api_key_env):
            raise AuthenticationError(
                f"Connection '{connection}' needs an API key: {unset_key_message(self._key_env)}.",
                connection=connection,
            )
        add_secret(key)
        self._open(key, transport, Timeouts.of(timeout))

    def _default_url(self) -> str:
        raise NotImplementedError

    def _needs_key(self, api_key_env: str | None) -> bool:
        """Whether a connection without a key is a mistake; `api_key_env` is the variable it names."""
        return bool(api_key_env)

    def _open(self, api_key: str | None, transport: Any, timeouts: Timeouts) -> None:
        """Build the client on `transport` with `api_key` (None: there is none)."""
        raise NotImplementedError

    def chat(
        self,
        model: str,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        stream: bool = True,
        options: dict | None = None,
        schema: dict | None = None,
    ) -> Iterator[Event]:
        """Send `messages` (OpenAI chat format) to `model`; yield the reply as `Event`s.

        `schema` ({"name": ..., "schema": <JSON schema>}) asks for a reply that is JSON meeting
        the schema, in the provider's own way (OpenAI's `response_format` of type `json_schema`,
        Ollama's `format`).

        A stream that ends with neither a finish reason nor any text or tool call is an
        error (`StreamError`): an empty 200 answer is how some servers (llama-cpp-python) say
        the request exceeds the model's context, and others send an error outside the wire
        format (llama.cpp's `error:` field). A stream with content but no finish reason is
        taken as it came, since some compatible servers never send one.
        """
        with self._errors_mapped(model):
            finished = received = False
            events = self._chat(model, messages, tools=tools or None, stream=stream, options=options or {}, schema=schema)
            for event in events:
                finished = finished or bool(event.finish_reason)
                received = received or bool(event.text or event.tool_calls or event.tool_delta)
                yield event
            if stream and not finished and not received:
                raise StreamError(
                    f"Connection '{self.connection}': the server answered but the stream ended before any "
                    "reply arrived; the request may exceed the model's context (shorten the conversation "
                    "or start a new chat), or the server failed without saying why.",
                    connection=self.connection,
                )

    def list_models(self) -> list[dict]:
        """The models the endpoint offers, as dicts with at least an "id"."""
        with self._errors_mapped(None):
            return self._list_models()

    def generate_images(
        self, model: str, prompt: str, *, size: str | None = None, n: int = 1, quality: str | None = None
    ) -> Images:
        """Images drawn by `model` from `prompt`; `size` is "WxH". A 400 answer (a refused prompt,
        a size or quality the model does not offer) says what to change."""
        try:
            with self._errors_mapped(model):
                return self._generate_images(model, prompt, size=size, n=n, quality=quality)
        except ProviderError as exc:
            if exc.status_code == 400:
                detail = str(exc).split("(400: ", 1)[-1].rsplit(");", 1)[0]
                if "safety" in detail.lower() or "policy" in detail.lower():
                    hint = "rephrase the prompt"
                else:
                    hint = "check the model, --size, --n and --quality"
                exc.args = (f"Connection '{self.connection}' refused the image request (400: {detail}); {hint}.",)
            raise

    def embed(self, model: str, texts: list[str]) -> Embeddings:
        """The vectors of `texts` (at most `max_embedding_inputs`), in order."""
        with self._errors_mapped(model):
            return self._embed(model, texts)

    def _generate_images(self, model: str, prompt: str, *, size: str | None, n: int, quality: str | None) -> Images:
        raise UsageError(f"Connection '{self.connection}' ({self.name}) cannot generate images; connect an OPENAI image model.")

    def _embed(self, model: str, texts: list[str]) -> Embeddings:
        raise UsageError(f"Connection '{self.connection}' ({self.name}) cannot embed texts.")

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def _chat(
        self, model: str, messages: list[dict], *, tools: list[dict] | None, stream: bool, options: dict
    ) -> Iterator[Event]:
        raise NotImplementedError

    def _list_models(self) -> list[dict]:
        raise NotImplementedError

    def _map_error(self, exc: Exception, model: str | None) -> ProviderError | None:
        """The `ProviderError` for a client exception, or None to let it through unchanged.

        Subclasses map their client's own exceptions first, then defer to this.
        """
        if isinstance(exc, _ReportedError):
            return self._reported_error(str(exc))
        if isinstance(exc, _MALFORMED):
            return self._malformed(exc)
        return self._transport_error(exc)

    def _model_hint(self, model: str) -> str:
        """What to do about a model the endpoint does not have."""
        return f"`%aihub models {self.connection}` lists what it offers"

    @contextlib.contextmanager
    def _errors_mapped(self, model: str | None) -> Iterator[None]:
        """Re-raise client exceptions inside the block as the `ProviderError` `_map_error` gives."""
        try:
            yield
        except ProviderError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc, model)
            if mapped is None:
                raise
            mapped.args = (redact(str(mapped)),)  # a client's message may quote the key
            raise mapped from exc

    # -- error construction shared by the providers --------------------------------------

    def _status_error(
        self, status: int, detail: str, *, model: str | None, headers: Mapping[str, str] | None = None
    ) -> ProviderError:
        """The error for an HTTP error status answered by the endpoint."""
        detail = _one_line(detail) or f"HTTP {status}"
        where = f"Connection '{self.connection}'"
        if status in (401, 403):
            if self._explicit_key:
                check = "check the key given for this session"
            elif os.environ.get(self._key_env):
                check = f"check the key in ${self._key_env}"
            else:
                check = unset_key_message(self._key_env)
            return AuthenticationError(
                f"{where} was refused ({status}: {detail}); {check}.",
                connection=self.connection,
                status_code=status,
            )
        if status == 404:
            # A missing model's 404 names it; any other 404 is a path the server does not serve.
            if model and (model in detail or "model" in detail.lower()):
                message = f"{where}: the endpoint has no model '{model}'; {self._model_hint(model)}."
            else:
                for_model = f" for model '{model}'" if model else ""
                message = (
                    f"{where}: {self.url} answered 404 ({detail}){for_model}; check the connection's URL."
                )
            return ModelNotFoundError(message, connection=self.connection, status_code=status)
        if status == 429:
            retry_after = retry_after_seconds(headers or {})
            when = f"retry after {retry_after:g} s" if retry_after is not None else "retry later"
            return RateLimitError(
                f"{where} is rate limited (429: {detail}); {when}.",
                connection=self.connection,
                status_code=status,
                retry_after=retry_after,
            )
        if status >= 500:
            retry_after = retry_after_seconds(headers or {})  # 503 often says when to come back
            return ServerError(
                f"{where}: the server failed ({status}: {detail}); try again later.",
                connection=self.connection,
                status_code=status,
                retry_after=retry_after,
            )
        return ProviderError(
            f"{where} rejected the request ({status}: {detail}); check the model's options and messages.",
            connection=self.connection,
            status_code=status,
        )

    def _transport_error(self, exc: BaseException) -> ProviderError | None:
        """The error for a failure below HTTP (timeout, refused connection, broken stream)."""
        if isinstance(exc, _TIMEOUTS):
            what = _one_line(str(exc)) or type(exc).__name__
            return ProviderTimeoutError(
                f"Connection '{self.connection}': {self.url} did not answer in time ({what}); "
                "try again or raise the timeout.",
                connection=self.connection,
            )
        if isinstance(exc, _UNREACHABLE):
            hint = (
                "is the server running?" if _is_local(self.url)
                else "check your network (offline, DNS, proxy or firewall) and the connection's URL."
            )
            return ProviderUnreachableError(
                f"Cannot reach connection '{self.connection}' at {self.url}: {hint}",
                connection=self.connection,
            )
        if isinstance(exc, _BROKEN):
            return self._stream_error(f"the stream broke off ({type(exc).__name__}: {_one_line(str(exc))})")
        return None

    def _stream_error(self, what: str) -> StreamError:
        return StreamError(f"Connection '{self.connection}': {what}; try again.", connection=self.connection)

    def _reported_error(self, detail: str) -> StreamError:
        """An error the endpoint sent in place of the rest of a reply."""
        return self._stream_error(f"the endpoint reported an error mid-reply ({_one_line(detail)})")

    def _malformed(self, exc: BaseException) -> StreamError:
        return self._stream_error(f"the endpoint sent malformed data ({_one_line(str(exc))})")


def _is_local(url: str) -> bool:
    """True for a server on this machine or the local network (a hub may start it), whose
    absence means it is not running; false for a remote API such as api.openai.com."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()
    if host in ("localhost", "host.docker.internal") or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified or address.is_link_local


def _one_line(text: str) -> str:
    text = " ".join(redact(text).split())  # redacted before it is cut, so no part of a key is left
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def error_detail(body: str) -> str:
    """The message inside an error body (`{"error": {"message": ...}}`, `{"error": "..."}`), else the body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return error if isinstance(error, str) else json.dumps(error)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        seconds = _number(milliseconds)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
