"""Helpers that several test modules share (imported as `helpers`: pytest puts this folder on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ["OPENAI", "OLLAMA"]


def connect(hub, server, provider: str, *, name: str = "m", model: str = "local-chat", **kw):
    """A connection to `model` on the local server, through the OpenAI or the Ollama API."""
    if provider == "OPENAI":
        return hub.connect("OPENAI", model, name=name, base_url=server.openai_base_url, **kw)
    return hub.connect("OLLAMA", model, name=name, host=server.ollama_host, **kw)


def chat_requests(server) -> list:
    """The chat requests the local server received, both APIs."""
    return [r for r in server.requests if r.path in ("/v1/chat/completions", "/api/chat")]


def run_python(script: str, *args: str) -> subprocess.Popen:
    """`script` in a new Python process that imports this checkout's aihub_nb."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
