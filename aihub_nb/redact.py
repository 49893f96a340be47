"""Secrets out of sight: the one place that knows which secret values are in play and masks them
in any text that is stored, shown, or sent to a model.

    >>> watch_env("WEATHER_TOKEN")            # a variable whose value is a secret
    >>> redact("GET /w?appid=s3cret-value failed")   # with WEATHER_TOKEN=s3cret-value
    'GET /w?appid=[redacted] failed'

The secrets known are the values of the environment variables that hold keys (OPENAI_API_KEY,
OLLAMA_API_KEY, each connection's `api_key_env`, each `${VAR}` an HTTP tool references) and the
keys given from Python for a session. `redact` replaces each of them, and the forms it takes in
error messages, JSON, Python reprs and URLs, with "[redacted]". A value shorter than
`MIN_SECRET_LENGTH` is not masked: masking "abc" would mangle every text while hiding nothing.

Also here: keys read from the environment (`read_key`: surrounding whitespace stripped, a key
with whitespace or control characters inside refused), credential-shaped header and query names
(`redact_headers`, `redact_url`), URLs that carry a credential (`url_credential`), and the
masks shown for a key (`mask_secret`) or for whatever looks like one (`mask_secrets`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from .errors import UsageError

__all__ = [
    "ENV_REF",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "StreamRedactor",
    "add_secret",
    "check_key",
    "env_references",
    "is_secret_name",
    "mask_secret",
    "mask_secrets",
    "read_key",
    "redact",
    "redact_data",
    "redact_headers",
    "redact_url",
    "unset_key_message",
    "url_credential",
    "watch_env",
]

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 6
_QUICK_CHECK_FROM = 4096  # texts longer than this are checked form by form before the regex runs
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # `${VAR}` in an HTTP tool's URL or headers

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"})
_SECRET_PARTS = ("key", "token", "secret", "password")
_INSIDE = re.compile(r"[\s\x00-\x1f\x7f]")  # no key holds whitespace or a control character
_LOOKS_LIKE_KEY = re.compile(r"(sk-(?:proj-|ant-|svcacct-)?)[A-Za-z0-9_\-]{6,}|((?i:bearer)\s+)[A-Za-z0-9_\-.~+/=]{6,}")

_LOCK = threading.Lock()
_VALUES: set[str] = set()  # secret values given directly (session keys)
_ENV_NAMES: set[str] = {"OPENAI_API_KEY", "OLLAMA_API_KEY"}  # the clients read these by themselves
# the secrets the pattern was built from, one regex for them all, and their longest form's length
# and the forms themselves with their first characters (to tell a tail that could begin one)
_PATTERN: tuple[frozenset[str], re.Pattern[str] | None, int, tuple[tuple[str, ...], frozenset[str]]] = (
    frozenset(), None, 0, ((), frozenset())
)


# ---------------------------------------------------------------- what is secret


def add_secret(value: str | None) -> None:
    """Make `value` a known secret for the rest of this process."""
    if value and isinstance(value, str):
        with _LOCK:
            _VALUES.add(value)


def watch_env(name: str | None) -> None:
    """Make the value of environment variable `name` a known secret, whatever it is set to now or later."""
    if name:
        with _LOCK:
            _ENV_NAMES.add(name)


def env_references(text: str) -> list[str]:
    """The names of the `${VAR}` references in `text`."""
    return ENV_REF.findall(text or "")


def _forms(value: str) -> set[str]:
    """The ways `value` shows up in text: as it is, JSON-escaped, in a repr, in bytes, URL-encoded."""
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    forms = {
        value,
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _compiled() -> tuple[frozenset[str], re.Pattern[str] | None, int, tuple[tuple[str, ...], frozenset[str]]]:
    global _PATTERN
    with _LOCK:
        values = set(_VALUES)
        names = list(_ENV_NAMES)
    environ = os.environ
    values.update(environ[name] for name in names if environ.get(name))
    key = frozenset(values)
    cached = _PATTERN
    if key == cached[0]:
        return cached
    forms = sorted(set().union(*(_forms(v) for v in key)) if key else (), key=len, reverse=True)
    compiled = re.compile("|".join(re.escape(f) for f in forms)) if forms else None
    _PATTERN = (key, compiled, len(forms[0]) if forms else 0, (tuple(forms), frozenset(f[0] for f in forms)))
    return _PATTERN


# ---------------------------------------------------------------- masking text


def redact(text: Any) -> Any:
    """`text` with every known secret replaced by "[redacted]"; anything not a str as it is."""
    if not text or not isinstance(text, str):
        return text
    _, pattern, _, (forms, _) = _compiled()
    if pattern is None:
        return text
    # A long text (an embedding response is ~700 KB of base64) is first searched for each form
    # with `in` (memchr speed): the pattern can only match where one of them occurs.
    if len(text) > _QUICK_CHECK_FROM and not any(form in text for form in forms):
        return text
    return pattern.sub(REDACTED, text)


def redact_data(value: Any) -> Any:
    """JSON data (dicts, lists, strings) with every known secret in its strings (keys too) redacted."""
    _, pattern, _, (forms, _) = _compiled()  # once for the whole value, not once per string
    if pattern is None:
        return _copy_data(value)
    return _redact_data(value, pattern, forms)


def _redact_data(value: Any, pattern: re.Pattern[str], forms: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        if not value or (len(value) > _QUICK_CHECK_FROM and not any(form in value for form in forms)):
            return value
        return pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {_redact_data(k, pattern, forms): _redact_data(v, pattern, forms) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_data(v, pattern, forms) for v in value]
    return value


def _copy_data(value: Any) -> Any:
    """`value` as redact_data returns it when no secret is known: dicts and lists copied (tuples as lists)."""
    if isinstance(value, Mapping):
        return {k: _copy_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_data(v) for v in value]
    return value


class StreamRedactor:
    """Redacts text that arrives in pieces: `feed` holds back a piece's last characters only when
    they could begin a known secret that the next piece completes; `final` lets them go."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str, *, final: bool = False) -> str:
        text = self._held + text
        self._held = ""
        if not text:
            return text
        _, pattern, longest, forms = _compiled()
        if pattern is None:
            return text
        cut = len(text) if final else _unfinished_secret(text, longest, forms)
        if cut < len(text):
            joined = text
            text, self._held = joined[:cut], joined[cut:]
            # a secret that straddles the cut moves the cut before it: it is masked whole next time
            for match in pattern.finditer(joined):
                if match.start() < len(text) < match.end():
                    text, self._held = joined[: match.start()], joined[match.start():]
                    break
        return pattern.sub(REDACTED, text) if text else text


def _unfinished_secret(text: str, longest: int, forms: tuple[tuple[str, ...], frozenset[str]]) -> int:
    """Where the longest tail of `text` that is the beginning of a known secret's form starts
    (len(text) when no tail is): the characters a stream must hold until the next piece."""
    known, firsts = forms
    for start in range(max(0, len(text) - longest + 1), len(text)):
        if text[start] in firsts:
            tail = text[start:]
            if any(form.startswith(tail) for form in known):
                return start
    return len(text)


def mask_secrets(text: Any) -> Any:
    """For display: known secrets redacted, and anything that looks like an API key (`sk-...`,
    `Bearer ...`, any case) masked as `sk-***` / `Bearer ***`."""
    text = redact(text)
    if not isinstance(text, str) or ("sk-" not in text and "earer" not in text and "EARER" not in text):
        return text
    return _LOOKS_LIKE_KEY.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


def mask_secret(value: str | None) -> str:
    """A key as shown to a person: `sk-proj-abcdef123456` -> `sk-…3456`; short values masked whole."""
    if not value:
        return ""
    if len(value) < 12:
        return "•" * 8
    return f"{value[:3]}…{value[-4:]}"


# ---------------------------------------------------------------- keys


def check_key(key: str, source: str) -> str:
    """`key` stripped of surrounding whitespace; UsageError naming `source` (never the key) when
    whitespace or a control character is left inside it."""
    key = key.strip()
    if _INSIDE.search(key):
        raise UsageError(
            f"The key in {source} has whitespace or a control character inside it; set it again to the key alone."
        )
    return key


def read_key(name: str) -> str | None:
    """The key in environment variable `name`, stripped (a trailing newline from `$(cat keyfile)`
    is common), and known as a secret from now on; None when unset or blank."""
    watch_env(name)
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return check_key(raw, f"${name}")


def unset_key_message(name: str) -> str:
    """What to say when the variable a key should come from is not set."""
    return f"${name} is not set; set it (e.g. %env {name}=...) or use --api-key-env OTHER_VAR"


# ---------------------------------------------------------------- headers and URLs


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential."""
    name = name.lower()
    return name in _SECRET_HEADERS or any(part in name for part in _SECRET_PARTS)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Copy `headers` with credentials replaced by "[redacted]" (Authorization keeps its scheme)."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    redacted: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in ("authorization", "proxy-authorization") and " " in value.strip():
            value = f"{value.split(None, 1)[0]} {REDACTED}"
        elif is_secret_name(lowered):
            value = REDACTED
        redacted[name] = f"{redacted[name]}, {value}" if name in redacted else value
    return redacted


def redact_url(url: str) -> str:
    """`url` with secret query parameters (key, api_key, token, ...) and any password redacted; a
    user name alone (`https://TOKEN@host`) is redacted too, as it is often a token."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return redact(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    query = "&".join(_redact_param(pair) for pair in parts.query.split("&"))
    return redact(urlunsplit(parts._replace(netloc=netloc, query=query)))


def _redact_param(pair: str) -> str:
    name = pair.split("=", 1)[0]
    return f"{name}={REDACTED}" if is_secret_name(unquote_plus(name)) else pair


def url_credential(url: str) -> str | None:
    """What credential a URL carries (`a user name and password`, `the query parameter 'key'`), or None."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "a user name and password" if parts.password else "a user name"
    for pair in parts.query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and is_secret_name(unquote_plus(name)):
            return f"the query parameter {unquote_plus(name)!r}"
    return None
