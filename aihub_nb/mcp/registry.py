"""MCP servers and their tools in the store.

A server is a McpServer row (name, transport, the definition with references only); each tool it
offers is a Tool row of type ``mcp``: named ``server__tool`` (see `names`), with the tool's
description, its input schema as `schema`, and `data` = ``{"server": ..., "tool": <its name on
the server>, "available": true}``. When a server no longer offers a tool, its row stays (calls
already made keep pointing at it) with ``available`` false.

Defining a server connects first and writes only when `initialize` and the tool listing
succeeded and no tool name clashes with another tool: nothing is half-registered. Each start of a
server (defining, restarting, starting on first use) is a Jobs row of type ``mcp.connect``; one
that fails is failed with the one-line error, and what the server wrote to stderr in its TextLog. After a
restart of the kernel, stored servers are started on the first call of one of their tools, and
their listing is stored again then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import McpError, NotFoundError
from ..jobs import JobRun
from .client import CallResult, McpSessions, ServerSpec
from .names import tool_name

__all__ = ["call_tool", "define_server", "get_server", "list_servers", "remove_server", "restart_server", "server_spec", "server_tools"]


def server_spec(row: dict[str, Any]) -> ServerSpec:
    return ServerSpec.from_data(row["name"], row["data"] or {})


def get_server(store: Any, name: str) -> dict[str, Any]:
    row = store.first("McpServer", name=name)
    if row is None:
        names = [r["name"] for r in store.find("McpServer")]
        hint = f"servers are: {', '.join(names)}" if names else "there are none yet"
        raise NotFoundError(f"No MCP server named {name!r} ({hint}); add one with %aihub mcp add NAME -- COMMAND or hub.mcp(NAME, command=[...]).")
    return row


def server_tools(store: Any, name: str) -> list[dict[str, Any]]:
    """The Tool rows of server `name`, in listing order (unavailable ones too)."""
    return [row for row in store.find("Tool", type="mcp") if (row["data"] or {}).get("server") == name]


def define_server(store: Any, sessions: McpSessions, spec: ServerSpec) -> list[dict[str, Any]]:
    """Connect to `spec`'s server, then store it and its tools; returns the available Tool rows."""
    spec.check()
    with _connect_job(store, spec):
        listed = sessions.connect(spec)
        try:
            return _store_listing(store, spec, listed)
        except BaseException:
            existing = store.first("McpServer", name=spec.name)
            if existing is None or server_spec(existing) != spec:
                sessions.stop(spec.name)  # not stored: it must not run on
            raise


@contextlib.contextmanager
def _connect_job(store: Any, spec: ServerSpec) -> Iterator[JobRun]:
    """The Jobs row (type ``mcp.connect``) of starting a server and storing its listing: failed
    with the one-line reason when that does not work, the server's stderr in its TextLog."""
    with JobRun(store, f"MCP server {spec.name}: connect ({spec.describe()})", "mcp.connect") as job:
        try:
            yield job
        except McpError as exc:
            if exc.stderr:
                job.log("\n".join(exc.stderr))
            job.finish(str(exc))
            raise


def _store_listing(store: Any, spec: ServerSpec, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {t["name"]: tool_name(spec.name, t["name"]) for t in listed}
    seen: dict[str, str] = {}
    for remote, local in names.items():
        if local in seen:
            raise McpError(f"MCP server {spec.name!r}: tools {seen[local]!r} and {remote!r} both become {local!r}; the server's tool names clash.", server=spec.name)
        seen[local] = remote
    with store.transaction():
        for remote, local in names.items():
            other = store.first("Tool", name=local)
            if other is not None and not (other["type"] == "mcp" and (other["data"] or {}).get("server") == spec.name):
                raise McpError(
                    f"MCP server {spec.name!r}: its tool {remote!r} would be named {local!r}, which the {other['type']} tool of that name already uses; "
                    "remove that tool or add the server under another name.",
                    server=spec.name,
                )
        server = store.first("McpServer", name=spec.name)
        if server is None:
            server = store.create("McpServer", name=spec.name, transport=spec.transport, data=spec.as_data())
        else:
            server = store.update("McpServer", server["id"], transport=spec.transport, data=spec.as_data())
        rows = []
        for tool in listed:
            local = names[tool["name"]]
            fields = dict(
                type="mcp",
                description=tool.get("description") or "",
                schema=tool.get("inputSchema") or {"type": "object", "properties": {}},
                data={"server": spec.name, "tool": tool["name"], "available": True, **({"annotations": tool["annotations"]} if tool.get("annotations") else {})},
                references={"server": server["id"]},
            )
            existing = store.first("Tool", name=local)
            rows.append(store.update("Tool", existing["id"], **fields) if existing else store.create("Tool", name=local, **fields))
        for row in server_tools(store, spec.name):
            if row["name"] not in seen and (row["data"] or {}).get("available", True):
                store.set("Tool", row["id"], data={**row["data"], "available": False})
    return rows


def list_servers(store: Any, sessions: McpSessions) -> list[dict[str, Any]]:
    """Every stored server: name, transport, command or URL, its tools (available / all), running."""
    running = set(sessions.running())
    out = []
    for row in store.find("McpServer"):
        tools = server_tools(store, row["name"])
        out.append(
            {
                "name": row["name"],
                "transport": row["transport"],
                "target": server_spec(row).describe(),
                "tools": sum(1 for t in tools if (t["data"] or {}).get("available", True)),
                "unavailable": sum(1 for t in tools if not (t["data"] or {}).get("available", True)),
                "running": row["name"] in running,
                "id": row["id"],
            }
        )
    return out


def remove_server(store: Any, sessions: McpSessions, name: str) -> None:
    """Stop the server, delete it, its tools and every agent's connection to them."""
    row = get_server(store, name)
    sessions.stop(name)
    tool_ids = [t["id"] for t in server_tools(store, name)]
    with store.transaction() as conn:
        for tool_id in tool_ids:
            conn.execute('DELETE FROM "AgentToolConnection" WHERE toolId = ?', (tool_id,))
            conn.execute('DELETE FROM "Tool" WHERE id = ?', (tool_id,))
        conn.execute('DELETE FROM "McpServer" WHERE id = ?', (row["id"],))


def restart_server(store: Any, sessions: McpSessions, name: str) -> list[dict[str, Any]]:
    """Stop the server and start it again; its listing is stored again."""
    spec = server_spec(get_server(store, name))
    sessions.stop(name)
    with _connect_job(store, spec):
        return _store_listing(store, spec, sessions.connect(spec))


def call_tool(store: Any, sessions: McpSessions, tool: dict[str, Any], arguments: dict[str, Any], *, timeout: float | None = None) -> CallResult:
    """Call the MCP tool of Tool row `tool`, starting its server first when it does not run (and
    storing its listing again then). Raises McpError / McpInterrupted (see McpSessions.call)."""
    data = tool["data"] or {}
    spec = sessions.live(data.get("server"))
    if spec is None:  # not running in this session: read its definition, start it, store its listing
        server = store.first("McpServer", name=data.get("server"))
        if server is None:
            raise McpError(f"its MCP server {data.get('server')!r} was removed; add it again with hub.mcp(...)", server=data.get("server"))
        spec = server_spec(server)
        with _connect_job(store, spec):
            listed = sessions.connect(spec)
            _store_listing(store, spec, listed)
        if data.get("tool") not in {t["name"] for t in listed}:
            raise McpError(f"the MCP server {spec.name!r} no longer offers {data.get('tool')!r}; see %aihub mcp tools {spec.name}", server=spec.name)
    return sessions.call(spec, data["tool"], arguments, timeout=timeout)
