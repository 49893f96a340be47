"""Ollama endpoints through the ollama client (which runs on httpx).

Messages and tools come in OpenAI's format and are converted here: assistant tool
calls carry their arguments as an object, tool results name their tool. HTTP errors
are caught by a response hook, where the headers (Retry-After) are still at hand.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
import ollama

from aihub_nb.connections import DEFAULT_URLS
from aihub_nb.errors import ProviderError, ToolArgumentsError, UsageError
from aihub_nb.providers.base import Embeddings, Event, Provider, Timeouts, Timings, Usage, deadline_transport, error_detail, tool_call

__all__ = ["DEFAULT_HOST", "OllamaProvider"]

DEFAULT_HOST = DEFAULT_URLS["OLLAMA"]
# OpenAI option names that Ollama spells differently.
_OPTION_NAMES = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}


class _HTTPStatusError(Exception):
    """An HTTP error status, with the headers that ollama.ResponseError would drop."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status_code = response.status_code
        self.detail = error_detail(response.text)
        self.headers = response.headers


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        response.read()
        raise _HTTPStatusError(response)


class OllamaProvider(Provider):
    """Ollama at `url` (else $OLLAMA_HOST, else the default host); a key only when the connection
    names a variable for one, or $OLLAMA_API_KEY is set (read here, stripped, not by the client)."""

    name = "OLLAMA"
    key_env = "OLLAMA_API_KEY"

    def _default_url(self) -> str:
        return os.environ.get("OLLAMA_HOST") or DEFAULT_HOST

    def _open(self, api_key: str | None, transport: httpx.BaseTransport | None, timeouts: Timeouts) -> None:
        self._client = ollama.Client(
            host=self.url,
            transport=deadline_transport(transport, timeouts, httpx),
            timeout=timeouts.for_client(httpx),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            event_hooks={"response": [_raise_for_status]},
        )

    def _chat(
        self, model: str, messages: list[dict], *, tools: list[dict] | None, stream: bool, options: dict,
        schema: dict | None = None,
    ) -> Iterator[Event]:
        request: dict[str, Any] = {
            "model": model,
            "messages": _ollama_messages(messages),
            "tools": tools,
            "options": {_OPTION_NAMES.get(name, name): value for name, value in options.items()} or None,
        }
        if schema:
            request["format"] = schema["schema"]
        if not stream:
            yield from _part_events([self._client.chat(**request)])
            return
        with contextlib.closing(self._client.chat(**request, stream=True)) as parts:
            yield from _part_events(parts)

    def _generate_images(self, model: str, prompt: str, *, size: str | None, n: int, quality: str | None):
        raise UsageError(
            f"Connection '{self.connection}': Ollama's image generation is experimental and macOS-only, and "
            "aihub_nb does not drive it; connect an OPENAI image model (gpt-image-1, or a compatible server)."
        )

    def _embed(self, model: str, texts: list[str]) -> Embeddings:
        import numpy as np

        answer = self._client.embed(model=model, input=texts)
        vectors = np.asarray(answer.embeddings, dtype=np.float32)
        return Embeddings(vectors=vectors.reshape(len(texts), -1), prompt_tokens=answer.prompt_eval_count)

    def _list_models(self) -> list[dict]:
        return [
            {"id": model.model, **model.model_dump(mode="json", exclude_none=True, exclude={"model"})}
            for model in self._client.list().models
        ]

    def _map_error(self, exc: Exception, model: str | None) -> ProviderError | None:
        if isinstance(exc, _HTTPStatusError):
            return self._status_error(exc.status_code, exc.detail, model=model, headers=exc.headers)
        if isinstance(exc, ollama.ResponseError):  # an {"error": ...} line inside a stream
            return self._reported_error(str(exc.error))
        return super()._map_error(exc, model)

    def _model_hint(self, model: str) -> str:
        return f"run `ollama pull {model}`, or `%aihub models {self.connection}` lists what it offers"


def _part_events(parts: Iterable[ollama.ChatResponse]) -> Iterator[Event]:
    """Events from Ollama's reply parts; tool calls are yielded as they arrive."""
    count = 0
    for part in parts:
        message = part.message
        calls = []
        for call in message.tool_calls or ():
            arguments = json.dumps(dict(call.function.arguments))
            calls.append(tool_call(count, call.function.name, arguments, getattr(call, "id", None)))
            count += 1
        usage = Usage(part.prompt_eval_count, part.eval_count) if part.done else None
        finish_reason = (part.done_reason or "stop") if part.done else None
        timings = _timings(part) if part.done else None
        text = message.content or ""
        if text or calls or usage:
            yield Event(
                text=text, tool_calls=calls or None, usage=usage, finish_reason=finish_reason, timings=timings,
                response_model=(getattr(part, "model", None) or None) if part.done else None,
            )


def _timings(part: ollama.ChatResponse) -> Timings | None:
    """Ollama's durations (nanoseconds): loading and prompt evaluation, then `eval_count` tokens
    in `eval_duration`."""
    before = [d for d in (part.load_duration, part.prompt_eval_duration) if d is not None]
    if not before and part.eval_duration is None:
        return None
    return Timings(
        prompt_ms=sum(before) / 1e6 if before else None,
        generated=part.eval_count,
        generation_ms=part.eval_duration / 1e6 if part.eval_duration is not None else None,
    )


def _ollama_messages(messages: list[dict]) -> list[dict]:
    """OpenAI-format messages in Ollama's shape."""
    tool_names: dict[str, str] = {}
    converted = []
    for message in messages:
        out: dict[str, Any] = {"role": message["role"], "content": _text(message.get("content"))}
        images = _images(message.get("content"))
        if images:
            out["images"] = images
        if message.get("tool_calls"):
            out["tool_calls"] = []
            for call in message["tool_calls"]:
                function = call["function"]
                tool_names[call.get("id")] = function["name"]
                out["tool_calls"].append(
                    {"function": {"name": function["name"], "arguments": _arguments(function)}}
                )
        if message["role"] == "tool":
            out["tool_name"] = tool_names.get(message.get("tool_call_id")) or message.get("name")
        converted.append(out)
    return converted


def _text(content: str | list | None) -> str:
    """Plain text of a message's content, which OpenAI also allows as a list of parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return content or ""


def _images(content: str | list | None) -> list[str]:
    """The base64 of the images in OpenAI `image_url` parts (data URLs), as Ollama takes them:
    without the `data:...;base64,` prefix."""
    images = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, Mapping) and part.get("type") == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, Mapping) else url
            if isinstance(url, str) and url.startswith("data:") and "," in url:
                images.append(url.split(",", 1)[1])
    return images


def _arguments(function: Mapping[str, Any]) -> dict:
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ToolArgumentsError(
            f"The call to tool '{function['name']}' has arguments that are not a JSON object: {arguments!r}."
        )
    return value
