"""The built-in demo model and the local server that serves it, what `%aihub connect local` talks to.

`model` answers chat requests deterministically (no network, no weights); `server` is a real HTTP
server on 127.0.0.1 speaking the OpenAI and Ollama chat APIs in their wire formats, with scripted
replies and fault modes. Users' tests reach the same server through `aihub_nb.testing`.
"""

from __future__ import annotations

from .server import DEFAULT_MODELS, FAULTS, LocalServer, RecordedRequest, ScriptedReply

__all__ = ["DEFAULT_MODELS", "FAULTS", "LocalServer", "RecordedRequest", "ScriptedReply"]
