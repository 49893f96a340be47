"""Names of MCP servers and of their tools as the hub lists them.

A server's name is 1-32 letters, digits, ``_`` or ``-``. Each of its tools is exposed as
``<server>__<tool>``, a name every provider's tool format accepts (OpenAI: ``^[a-zA-Z0-9_-]{1,64}$``):
characters outside that set become ``_``, and a name that had to change or is longer than 64
characters gets a short hash of the original, so two different tools never share a name.

    >>> tool_name("demo", "add")
    'demo__add'
    >>> tool_name("files", "read.file")
    'files__read_file_c214cb95'
"""

from __future__ import annotations

import hashlib
import re

from ..errors import McpError

__all__ = ["SERVER_NAME_RE", "TOOL_NAME_RE", "check_server_name", "tool_name"]

SERVER_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SEPARATOR = "__"
_MAX = 64
_HASH = 8


def check_server_name(name: object) -> str:
    if not isinstance(name, str) or not SERVER_NAME_RE.match(name):
        raise McpError(f"MCP server name {name!r} is invalid: use 1-32 letters, digits, '_' or '-' (e.g. 'files').")
    return name


def tool_name(server: str, tool: str) -> str:
    """The hub's name for `tool` of `server`: ``server__tool``, sanitised and shortened when needed."""
    raw = f"{server}{SEPARATOR}{tool}"
    clean = re.sub(r"[^a-zA-Z0-9_-]", "_", raw)
    if clean == raw and len(raw) <= _MAX:
        return raw
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH]
    return f"{clean[: _MAX - _HASH - 1]}_{digest}"
