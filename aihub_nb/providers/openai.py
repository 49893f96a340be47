"""OpenAI and OpenAI-compatible endpoints (vLLM, llama.cpp, LM Studio, ...) through the openai client.

The client runs on httpx2 and never retries (`max_retries=0`): retrying is the caller's
business. Streams ask for usage with `stream_options`, and cope with servers that reject
it, put usage in the last content chunk, send chunks without choices, or send an error
as a bare `{"object": "error", ...}` chunk (vLLM).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from aihub_nb.connections import DEFAULT_URLS
from aihub_nb.errors import ProviderError
from aihub_nb.providers.base import (
    Embeddings,
    Event,
    GeneratedImage,
    Images,
    Provider,
    Timeouts,
    Timings,
    ToolCall,
    Usage,
    _ReportedError,
    deadline_transport,
    json_text,
    tool_call,
)

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider"]

DEFAULT_BASE_URL = DEFAULT_URLS["OPENAI"]
_KEY_ENV = "OPENAI_API_KEY"
# Local servers want no key, but the client insists on one.
_PLACEHOLDER_KEY = "not-needed"


class OpenAIProvider(Provider):
    """An OpenAI-compatible endpoint at `url` (else api.openai.com); a key is needed by OpenAI's
    own host and by a connection that names its variable, while a local server may have none."""

    name = "OPENAI"
    key_env = _KEY_ENV

    def _default_url(self) -> str:
        return DEFAULT_BASE_URL

    def _needs_key(self, api_key_env: str | None) -> bool:
        # A local server wants no key; a variable named on purpose must hold one.
        return _is_openai_host(self.url) or self._key_env != _KEY_ENV

    def _open(self, api_key: str | None, transport: httpx2.BaseTransport | None, timeouts: Timeouts) -> None:
        client_timeout = timeouts.for_client(httpx2)
        # Given to the client itself too: otherwise it sends its own default (600 s) with each request.
        self._http = httpx2.Client(transport=deadline_transport(transport, timeouts, httpx2), timeout=client_timeout)
        self._client = openai.OpenAI(
            base_url=self.url,
            api_key=api_key or _PLACEHOLDER_KEY,
            http_client=self._http,
            timeout=client_timeout,
            max_retries=0,
        )
        # Cleared for good once the endpoint rejects `stream_options`.
        self._stream_options = True

    def _chat(
        self, model: str, messages: list[dict], *, tools: list[dict] | None, stream: bool, options: dict,
        schema: dict | None = None,
    ) -> Iterator[Event]:
        request: dict[str, Any] = {"model": model, "messages": messages, "extra_body": options or None}
        if tools:
            request["tools"] = tools
        if schema:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema["name"], "schema": schema["schema"], "strict": True},
            }
        if not stream:
            yield _completion_event(self._client.chat.completions.create(**request))
            return
        with self._open_stream(request) as chunks:
            yield from _chunk_events(chunks)

    def _open_stream(self, request: dict[str, Any]) -> openai.Stream:
        create = self._client.chat.completions.create
        if self._stream_options:
            try:
                return create(stream=True, stream_options={"include_usage": True}, **request)
            except openai.APIStatusError as exc:  # 400, or 422 from strict validators (axum, FastAPI)
                if exc.status_code not in (400, 422) or "stream_options" not in f"{exc.message} {exc.body}":
                    raise
                self._stream_options = False
        return create(stream=True, **request)

    def _list_models(self) -> list[dict]:
        return [model.model_dump() for model in self._client.models.list()]

    def _generate_images(self, model: str, prompt: str, *, size: str | None, n: int, quality: str | None) -> Images:
        request: dict[str, Any] = {"model": model, "prompt": prompt, "n": n}
        if size:
            request["size"] = size
        if quality:
            request["quality"] = quality
        if model.startswith("dall-e"):  # gpt-image models always answer b64_json and refuse the option
            request["response_format"] = "b64_json"
        answer = self._client.images.generate(**request)
        images = []
        for item in answer.data or ():
            if item.b64_json:
                data = base64.b64decode(item.b64_json)
            elif item.url:  # a compatible server that only answers URLs: fetched through the same client
                response = self._http.get(item.url)
                response.raise_for_status()
                data = response.content
            else:
                continue
            images.append(GeneratedImage(data=data, mime=_image_mime(data), revised_prompt=item.revised_prompt))
        usage = getattr(answer, "usage", None)
        tokens = Usage(usage.input_tokens, usage.output_tokens) if usage else None
        return Images(images=images, usage=tokens)

    def _embed(self, model: str, texts: list[str]) -> Embeddings:
        import numpy as np

        # The answer's JSON read once here: the client's typed objects (one per vector) would
        # cost more than the request.
        raw = self._client.embeddings.with_raw_response.create(model=model, input=texts, encoding_format="base64")
        try:
            answer = json.loads(raw.http_response.content)
            # In index order; a server that gives no index gives them in input order.
            items = list(enumerate(answer["data"]))
            embeddings = [row["embedding"] for _, row in sorted(items, key=lambda item: item[1].get("index", item[0]))]
            if not embeddings:
                vectors = np.zeros((0, 0), np.float32)
            elif all(isinstance(e, str) for e in embeddings):
                data = b"".join([base64.b64decode(e) for e in embeddings])
                vectors = np.frombuffer(data, dtype="<f4").reshape(len(embeddings), -1)
            else:  # some compatible servers answer floats whatever was asked
                vectors = np.vstack([
                    np.frombuffer(base64.b64decode(e), dtype="<f4") if isinstance(e, str) else np.asarray(e, dtype=np.float32)
                    for e in embeddings
                ]).astype(np.float32, copy=False)
        except (ValueError, TypeError, KeyError) as exc:
            raise ProviderError(
                f"Connection '{self.connection}' answered the embedding request with no readable vectors ({exc}); "
                "check that the model is an embedding model.",
                connection=self.connection,
            ) from None
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return Embeddings(vectors=vectors, prompt_tokens=tokens if isinstance(tokens, int) else None)

    def _map_error(self, exc: Exception, model: str | None) -> ProviderError | None:
        if isinstance(exc, openai.APIStatusError):
            headers = exc.response.headers
            return self._status_error(exc.status_code, _detail(exc), model=model, headers=headers)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            mapped = self._transport_error(cause) if cause is not None else None
            return mapped or self._stream_error(f"the connection failed ({exc.message})")
        if isinstance(exc, openai.APIError):
            return self._reported_error(exc.message)
        return super()._map_error(exc, model)


def _image_mime(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _is_openai_host(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "openai.com" or host.endswith(".openai.com")


def _detail(exc: openai.APIStatusError) -> str:
    """The server's own words: the error's message, else the body (`{"error": "..."}`, a
    validator's `{"detail": ...}`, a proxy's page), else the client's "Error code: N"."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body
    if body:
        return json.dumps(body)
    return exc.message


def _usage(usage: Any) -> Usage | None:
    """Usage, with the cached prompt tokens and the reasoning tokens when the server details them."""
    if not usage:
        return None
    cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
    return Usage(usage.prompt_tokens, usage.completion_tokens, cached, reasoning)


def _reply_id(obj: Any) -> dict[str, str | None]:
    """The reply's id and the model that answered, as the server names them."""
    return {"response_id": getattr(obj, "id", None) or None, "response_model": getattr(obj, "model", None) or None}


def _timings(value: Any) -> Timings | None:
    """llama.cpp's `timings` object (prompt_ms, predicted_n, predicted_ms, ...), when sent."""
    if isinstance(value, Mapping):
        value = dict(value)
    elif value is not None and hasattr(value, "model_dump"):
        value = value.model_dump()
    if not isinstance(value, dict):
        return None
    numbers = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "predicted_ms" not in numbers and "prompt_ms" not in numbers:
        return None
    generated = numbers.get("predicted_n")
    return Timings(
        prompt_ms=numbers.get("prompt_ms"),
        generated=int(generated) if generated is not None else None,
        generation_ms=numbers.get("predicted_ms"),
    )


def _completion_event(completion: Any) -> Event:
    """The whole reply of a non-streamed completion as one event."""
    usage = _usage(completion.usage)
    timings = _timings(getattr(completion, "timings", None))
    if not completion.choices:
        return Event(usage=usage, timings=timings, **_reply_id(completion))
    choice = completion.choices[0]
    message = choice.message
    calls = [
        tool_call(index, call.function.name, call.function.arguments, call.id)
        for index, call in enumerate(message.tool_calls or ())
    ]
    return Event(
        text=message.content or "", tool_calls=calls or None, usage=usage, finish_reason=choice.finish_reason,
        timings=timings, **_reply_id(completion),
    )


def _chunk_events(chunks: Iterable[Any]) -> Iterator[Event]:
    """Events from streamed chunks; tool-call deltas are assembled by index and yielded at the
    finish, or at the end of a stream from a server that sends no finish reason. Each delta is
    also announced as it arrives (`tool_delta`), for the timing of the reply."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if chunk.object == "error":
            raise _ReportedError(getattr(chunk, "message", None) or "error")
        usage = _usage(chunk.usage) if chunk.usage else None
        timings = _timings(getattr(chunk, "timings", None))
        text, finish_reason, tool_calls, delta_arrived = "", None, None, False
        # The reply is choice 0; a server asked for `n` > 1 interleaves the others.
        choices = chunk.choices
        choice = None
        if choices:
            choice = choices[0] if not choices[0].index else next((c for c in choices if not c.index), None)
        if choice is not None:
            delta = choice.delta
            if delta is not None:
                text = delta.content or ""
                for part in delta.tool_calls or ():
                    _add_delta(calls, part)
                    delta_arrived = True
            finish_reason = choice.finish_reason
            if finish_reason and calls:
                tool_calls, calls = _assembled(calls), {}
        if text or tool_calls or usage or finish_reason or delta_arrived or timings:
            yield Event(
                text=text, tool_calls=tool_calls, usage=usage, finish_reason=finish_reason,
                tool_delta=delta_arrived, timings=timings, **_reply_id(chunk),
            )
    if calls:
        yield Event(tool_calls=_assembled(calls))


def _add_delta(calls: dict[int, dict[str, Any]], part: Any) -> None:
    index = part.index
    if index is None:  # servers that omit the index: a delta with a new id starts the next call
        index = next((i for i, call in calls.items() if part.id and call["id"] == part.id), None)
        if index is None:
            index = len(calls) if part.id or not calls else max(calls)
    call = calls.setdefault(index, {"id": None, "name": "", "arguments": []})
    if part.id:
        call["id"] = part.id
    function = part.function
    if function is not None:
        call["name"] = call["name"] or function.name or ""
        if function.arguments:
            call["arguments"].append(json_text(function.arguments))


def _assembled(calls: dict[int, dict[str, Any]]) -> list[ToolCall]:
    return [
        tool_call(index, call["name"], "".join(call["arguments"]), call["id"])
        for index, call in sorted(calls.items())
    ]
