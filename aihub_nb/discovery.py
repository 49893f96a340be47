"""What models this machine can reach, found without blocking: what `%aihub setup`, the setup panel
and `%aihub connect auto` choose from (`Hub.discover()` from a script).

Looked for, all at once with short timeouts (the whole look-up ends after `deadline`, 1 s):

* an OpenAI key: `$OPENAI_API_KEY` set (never sent anywhere to check it);
* a running Ollama at `$OLLAMA_HOST` (default http://127.0.0.1:11434): `GET /api/tags`, its chat
  models (embedding models left out);
* OpenAI-compatible servers on the usual local ports of 127.0.0.1 answering `GET /v1/models`:
  1234 (LM Studio), 8080 (llama.cpp server), 8000 (vLLM). `$AIHUB_LOCAL_PORTS` replaces that list
  (`"1234,8001"`; empty: look at no port).

    >>> found = discover()
    >>> [f.name for f in found]            # e.g. ['ollama', 'lmstudio']
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import urllib.request
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["LOCAL_PORTS", "Discovery", "Found", "discover", "local_ports"]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
LOCAL_PORTS: tuple[tuple[int, str, str], ...] = (
    (1234, "lmstudio", "LM Studio"),
    (8080, "llamacpp", "llama.cpp server"),
    (8000, "vllm", "vLLM"),
)
_EMBEDDING = ("embed", "bge-", "minilm")


@dataclass(frozen=True)
class Found:
    """One place a model can be reached: what `Hub.connect` needs to connect it."""

    name: str  # the connection name it gets: openai, ollama, lmstudio, llamacpp, vllm, or port-N
    provider: str  # OPENAI or OLLAMA
    label: str  # for a person: "LM Studio at http://127.0.0.1:1234/v1"
    models: tuple[str, ...] = ()
    base_url: str | None = None
    host: str | None = None
    api_key_env: str | None = None

    @property
    def model(self) -> str | None:
        """The model it would connect: the first one offered."""
        return self.models[0] if self.models else None

    def connect_command(self) -> str:
        """The %aihub line that connects it."""
        words = ["%aihub connect", self.provider, self.model or "MODEL_ID", "--name", self.name]
        if self.base_url:
            words += ["--base-url", self.base_url]
        if self.host and self.host != DEFAULT_OLLAMA_HOST:
            words += ["--host", self.host]
        return " ".join(words)


@dataclass
class Discovery:
    """What `discover` found, in the order `connect auto` prefers: OpenAI (a key is set), Ollama,
    then the local OpenAI-compatible servers by port."""

    found: list[Found] = field(default_factory=list)
    looked_at: list[str] = field(default_factory=list)  # what was tried, for "nothing found at ..."

    def __iter__(self):
        return iter(self.found)

    def __len__(self) -> int:
        return len(self.found)

    def __bool__(self) -> bool:
        return bool(self.found)

    def local(self) -> list[Found]:
        """The servers on this machine (not the OpenAI API)."""
        return [f for f in self.found if f.name != "openai"]

    def text(self) -> str:
        """What was found, and the commands to connect it, as plain lines."""
        lines = []
        if self.found:
            lines.append("Found:")
            for f in self.found:
                models = f" ({', '.join(f.models[:5])}{', ...' if len(f.models) > 5 else ''})" if f.models else ""
                lines.append(f"  {f.label}{models}")
                lines.append(f"      {f.connect_command()}")
        else:
            lines.append("Found no model: no $OPENAI_API_KEY, nothing answering at " + ", ".join(self.looked_at) + ".")
        lines.append("The built-in demo model (no key, offline; it shows what the hub does but is no real model):")
        lines.append("      %aihub connect local")
        return "\n".join(lines)


def local_ports() -> list[tuple[int, str, str]]:
    """The ports looked at: LOCAL_PORTS, or those `$AIHUB_LOCAL_PORTS` names."""
    value = os.environ.get("AIHUB_LOCAL_PORTS")
    if value is None:
        return list(LOCAL_PORTS)
    known = {port: (name, label) for port, name, label in LOCAL_PORTS}
    ports = []
    for word in value.replace(",", " ").split():
        if word.isdigit() and 0 < int(word) < 65536:
            port = int(word)
            name, label = known.get(port, (f"port-{port}", f"OpenAI-compatible server on port {port}"))
            ports.append((port, name, label))
    return ports


def discover(
    *,
    ports: Iterable[int | tuple[int, str, str]] | None = None,
    ollama_host: str | None = None,
    timeout: float = 0.4,
    deadline: float = 1.0,
) -> Discovery:
    """Look for models this machine can reach (see the module docstring); never longer than
    `deadline` seconds. `ports` replaces the local ports looked at (numbers, or (port, name,
    label)); `ollama_host` the Ollama address."""
    host = (ollama_host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST).rstrip("/")
    if "://" not in host:
        host = "http://" + host
    chosen = local_ports() if ports is None else [
        p if isinstance(p, tuple) else (int(p), f"port-{p}", f"OpenAI-compatible server on port {p}") for p in ports
    ]
    result = Discovery(looked_at=[host] + [f"127.0.0.1:{port}" for port, _, _ in chosen])
    if os.environ.get("OPENAI_API_KEY"):
        result.found.append(Found("openai", "OPENAI", "OpenAI ($OPENAI_API_KEY is set)", ("gpt-4o-mini",),
                                  api_key_env="OPENAI_API_KEY"))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1 + len(chosen), thread_name_prefix="aihub-discover")
    try:
        futures = [pool.submit(_ollama, host, timeout)]
        futures += [pool.submit(_openai_compatible, port, name, label, timeout) for port, name, label in chosen]
        concurrent.futures.wait(futures, timeout=deadline)
        for future in futures:  # in the order of preference, whatever answered first
            if future.done() and future.exception() is None and future.result() is not None:
                result.found.append(future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return result


def _get_json(url: str, timeout: float) -> object:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read(1_000_000))


def _ollama(host: str, timeout: float) -> Found | None:
    try:
        body = _get_json(host + "/api/tags", timeout)
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("models"), list):
        return None
    names = [m.get("name") or m.get("model") for m in body["models"] if isinstance(m, dict)]
    chat = tuple(n for n in names if isinstance(n, str) and not any(e in n.lower() for e in _EMBEDDING))
    return Found("ollama", "OLLAMA", f"Ollama at {host}", chat, host=host)


def _openai_compatible(port: int, name: str, label: str, timeout: float) -> Found | None:
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        body = _get_json(base_url + "/models", timeout)
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return None
    models = tuple(m["id"] for m in body["data"] if isinstance(m, dict) and isinstance(m.get("id"), str))
    chat = tuple(m for m in models if not any(e in m.lower() for e in _EMBEDDING)) or models
    return Found(name, "OPENAI", f"{label} at {base_url}", chat, base_url=base_url)
