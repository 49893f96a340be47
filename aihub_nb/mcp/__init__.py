"""MCP (Model Context Protocol): the hub as a client of MCP servers, and as a server of its tools.

* `client`: `McpSessions`, the servers one hub talks to, each session kept open on one background
  event-loop thread and called from plain code; `ServerSpec`, how to reach a server (a command
  over stdio, or a Streamable HTTP URL; secrets only as references to environment variables).
* `names`: the name each MCP tool gets in the hub (``server__tool``, valid for every provider).
* `results`: a tool result as JSON (text, images, resources, structured content) and as text.
* `demo_server`: a tiny server with deterministic tools (``python -m aihub_nb.mcp.demo_server``).
* ``python -m aihub_nb.mcp serve``: the hub's own python tools as an MCP server over stdio.

Importing this package does not import the `mcp` SDK; it loads when a server is first used.
"""

from __future__ import annotations

from .client import CallResult, McpSessions, ServerSpec, demo_command
from .names import check_server_name, tool_name
from .results import result_json, result_text

__all__ = [
    "CallResult",
    "McpSessions",
    "ServerSpec",
    "check_server_name",
    "demo_command",
    "result_json",
    "result_text",
    "tool_name",
]
