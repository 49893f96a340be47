"""Model connections: which provider, which model, where, and which environment variable holds
the key. Keys themselves are never written to the store.

A connection row (ModelConnections) keeps in `data`: `base_url` (OpenAI-compatible endpoints),
`host` (Ollama), `api_key_env` (the *name* of the environment variable with the key),
`builtin: true` for the local server that ships with aihub_nb (aihub_nb.demo), whose address
is found anew in every session, `timeouts` ({"connect", "read", "total"} in seconds, the ones set;
a `timeout` from older versions is the read timeout) and `max_tokens` (the reply limit sent when
a turn sets none). A key passed explicitly is kept in this process's memory only
and shown masked; after a restart, pass it again or put it in an environment variable.
"""

from __future__ import annotations

import math
import os
import threading
import unicodedata
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .redact import add_secret, check_key, mask_secret, redact_url
from .store import find_named

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "PROVIDERS",
    "TYPES",
    "builtin_server",
    "check_max_tokens",
    "check_seconds",
    "find_connection",
    "mask_secret",
    "public_view",
    "session_key",
]

PROVIDERS = ("OPENAI", "OLLAMA")  # the one list of providers (aihub_nb.providers, the panels)
# Where each provider's requests go when a connection names no endpoint.
DEFAULT_URLS = {"OPENAI": "https://api.openai.com/v1", "OLLAMA": "http://127.0.0.1:11434"}
TYPES = ("CHAT", "IMAGE", "EMBEDDING")
DEFAULT_OLLAMA_HOST = DEFAULT_URLS["OLLAMA"]

_SESSION_KEYS: dict[str, str] = {}  # connection id -> a key given explicitly, never stored
_BUILTIN = None
_BUILTIN_LOCK = threading.Lock()


def _name_char(ch: str) -> bool:
    # a letter or digit of any script, a combining mark (Devanagari vowel signs...), or . _ - : @ /
    return ch.isalnum() or ch in "._-:@/" or unicodedata.category(ch).startswith("M")


def check_name(kind: str, name: str) -> str:
    """A chat, agent or connection name: letters and digits of any script (日本語, café) and
    . _ - : @ /, up to 128, starting with a letter or digit; no spaces, controls or invisible
    characters. (Tool names go to providers and keep their ASCII rule, see tools.py.)"""
    if not isinstance(name, str) or not 0 < len(name) <= 128 or not name[0].isalnum() or not all(map(_name_char, name)):
        raise UsageError(
            f"{kind} name {name!r} is not valid: use letters (any script), digits and . _ - : @ / (up to 128), "
            "starting with a letter or digit."
        )
    return name


def check_provider(provider: str) -> str:
    value = str(provider).upper()
    if value not in PROVIDERS:
        raise UsageError(f"Unknown provider {provider!r}; valid providers are: {', '.join(PROVIDERS)}.")
    return value


def check_type(kind: str) -> str:
    value = str(kind).upper()
    if value not in TYPES:
        raise UsageError(f"Unknown connection type {kind!r}; valid types are: {', '.join(TYPES)}.")
    return value


MAX_SECONDS = 86400.0
MAX_TOKENS_LIMIT = 10_000_000


def check_seconds(option: str, value: Any) -> float:
    """A timeout in seconds: a number or numeric text, finite, above 0 and at most a day."""
    number = _number(value)
    if number is None or not 0 < number <= MAX_SECONDS:
        raise UsageError(
            f"{option} must be a number of seconds above 0 and at most {MAX_SECONDS:g} (e.g. 30), not {value!r}."
        )
    return number


def check_max_tokens(value: Any) -> int:
    """A reply limit in tokens: a whole number (or its text) from 1 up."""
    number = _number(value)
    if number is None or not number.is_integer() or not 1 <= number <= MAX_TOKENS_LIMIT:
        raise UsageError(f"max_tokens must be a whole number of tokens from 1 to {MAX_TOKENS_LIMIT:,} (e.g. 1024), not {value!r}.")
    return int(number)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def timeouts_of(data: dict[str, Any]) -> dict[str, float]:
    """The timeouts a connection set ({"connect", "read", "total"}), older `timeout` as read."""
    out = dict(data.get("timeouts") or {})
    if "timeout" in data and "read" not in out:
        out["read"] = data["timeout"]
    return {k: float(v) for k, v in out.items() if k in ("connect", "read", "total")}


def session_key(connection_id: str, key: str | None = None) -> str | None:
    """Get (or, with `key`, set) the explicitly given key of a connection for this session; a key
    set is stripped, checked and masked wherever it shows up (aihub_nb.redact)."""
    if key is not None:
        key = check_key(str(key), "the api_key given")
        add_secret(key)
        _SESSION_KEYS[connection_id] = key
    return _SESSION_KEYS.get(connection_id)


def find_connection(store: Store, name_or_id: str) -> dict[str, Any]:
    """A connection by name (or id); NotFoundError listing the connections there are."""
    return find_named(
        store, "ModelConnections", name_or_id, kind="connection", by_id=True, empty="there are none yet",
        fix=f"create one with %aihub connect PROVIDER MODEL_ID --name {name_or_id}",
    )


def default_connection(store: Store) -> dict[str, Any] | None:
    """The default connection's row (UserSettings.defaultConnectionId); None when there is none."""
    settings = store.first("UserSettings")
    cid = settings.get("defaultConnectionId") if settings else None
    return store.first("ModelConnections", id=cid) if cid else None


def endpoint(row: dict[str, Any]) -> str:
    """Where a connection sends its requests, for display."""
    data = row.get("data") or {}
    if data.get("builtin"):
        return "built-in local server"
    if row["provider"] == "OLLAMA":
        return redact_url(data.get("host") or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST)
    return redact_url(data.get("base_url") or DEFAULT_URLS["OPENAI"])


def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """A connection as shown to a person: secrets masked, the key's source named."""
    data = dict(row.get("data") or {})
    env = data.get("api_key_env")
    explicit = session_key(row["id"])
    if explicit:
        key = f"given in this session ({mask_secret(explicit)})"
    elif row["provider"] == "OLLAMA" and not env:
        key = "none needed"
    elif env:
        key = f"${env} ({'set' if os.environ.get(env) else 'not set'})"
    else:
        key = "none"
    return {
        "name": row["name"],
        "provider": row["provider"],
        "modelId": row["modelId"],
        "type": row["type"],
        "endpoint": endpoint(row),
        "api key": key,
        "limits": _limits_text(data),
        "description": row.get("description") or "",
        "id": row["id"],
    }


def _limits_text(data: dict[str, Any]) -> str:
    """`total 600 s · connect 5 s · read 60 s · max_tokens 1024`: what is set, defaults otherwise."""
    timeouts = {"total": 600.0, "connect": 5.0, "read": 60.0, **timeouts_of(data)}
    bits = [f"{k} {v:g} s" for k, v in timeouts.items()]
    if data.get("max_tokens"):
        bits.append(f"max_tokens {data['max_tokens']}")
    return " · ".join(bits)


def builtin_server():
    """The local OpenAI/Ollama-compatible server of this process, started on first use."""
    global _BUILTIN
    with _BUILTIN_LOCK:
        if _BUILTIN is None:
            from .demo import LocalServer

            _BUILTIN = LocalServer().start()
        return _BUILTIN


def ollama_reachable(host: str | None = None, timeout: float = 0.5) -> list[str] | None:
    """The models a local Ollama offers, or None when none answers at `host`."""
    import json
    import urllib.request

    url = (host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST).rstrip("/")
    if "://" not in url:
        url = "http://" + url
    try:
        with urllib.request.urlopen(url + "/api/tags", timeout=timeout) as response:
            return [m.get("name") or m.get("model") for m in json.load(response).get("models", [])]
    except (OSError, ValueError):
        return None
