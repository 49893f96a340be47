"""Model providers: one `Provider` per connection, made by `make_provider`.

    provider = make_provider("OLLAMA", connection_name="local")
    for event in provider.chat("llama3.2", [{"role": "user", "content": "Hi"}]):
        print(event.text, end="")
"""

from __future__ import annotations

from typing import Any

from aihub_nb.connections import PROVIDERS
from aihub_nb.errors import UsageError
from aihub_nb.providers.base import Embeddings, Event, GeneratedImage, Images, Provider, Timeouts, Timings, ToolCall, Usage
from aihub_nb.providers.ollama import OllamaProvider
from aihub_nb.providers.openai import OpenAIProvider

__all__ = [
    "Embeddings", "Event", "GeneratedImage", "Images", "OllamaProvider", "OpenAIProvider", "Provider", "Timeouts", "Timings", "ToolCall", "Usage", "make_provider",
]

_KINDS = tuple(sorted(PROVIDERS))


def make_provider(
    provider: str,
    *,
    connection_name: str,
    base_url: str | None = None,
    host: str | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
    transport: Any = None,
    timeout: float | Timeouts | None = None,
) -> Provider:
    """The provider for a connection; `provider` is "OPENAI" or "OLLAMA", in any case.

    `transport` is an httpx2 transport for OPENAI and an httpx transport for OLLAMA
    (see `aihub_nb.recording.recording_transport`). OLLAMA takes `host`, or else `base_url`.
    `timeout` is a `Timeouts` (connect, read, total), or one number: the read timeout.
    """
    kind = provider.upper()
    common = {"api_key": api_key, "api_key_env": api_key_env, "transport": transport, "timeout": timeout}
    if kind == "OPENAI":
        return OpenAIProvider(connection_name, url=base_url, **common)
    if kind == "OLLAMA":
        return OllamaProvider(connection_name, url=host or base_url, **common)
    raise UsageError(
        f"Unknown provider {provider!r} for connection '{connection_name}'; "
        f"valid providers are: {', '.join(_KINDS)}."
    )
