"""``python -m aihub_nb.mcp serve``: the hub's own python tools as an MCP server over stdio.

    python -m aihub_nb.mcp serve                      # the hub in $AIHUB_HOME (else ~/.aihub)
    python -m aihub_nb.mcp serve --home ./hub --tools add,weather

Every Tool row of type ``python`` whose function can be imported (its module is importable and
its qualname reaches it: not ``__main__``, not a function defined inside another) is served under
its own name, description and schema. Each call runs through the hub like a model's call: the
arguments are validated against the schema and the call is recorded as a ToolInvocation with its
TextLog and metrics. What cannot be served is said on stderr when the server starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

__all__ = ["main", "servable_tools"]


def servable_tools(hub: Any, only: list[str] | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The python tools of `hub` that can be served, registered in it by name, and one line for
    each one that cannot (why)."""
    rows, problems = {}, []
    for row in hub.store.find("Tool", type="python"):
        if only is not None and row["name"] not in only:
            continue
        data = row["data"] or {}
        module, qualname = data.get("module"), data.get("qualname") or ""
        if not module or module == "__main__" or "<locals>" in qualname:
            problems.append(f"{row['name']}: defined in a notebook or script ({module or '?'}.{qualname}); move it to a module to serve it")
            continue
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except Exception as exc:  # noqa: BLE001 - said in one line, the other tools are served
            problems.append(f"{row['name']}: cannot import {module}.{qualname} ({type(exc).__name__}: {exc})")
            continue
        hub.tool(target, name=row["name"], description=row["description"])
        rows[row["name"]] = hub.store.first("Tool", name=row["name"])
    if only is not None:
        problems += [f"{name}: no python tool of that name" for name in only if name not in rows and not any(p.startswith(f"{name}:") for p in problems)]
    return rows, problems


def serve(hub: Any, rows: dict[str, dict[str, Any]]) -> None:
    """Serve `rows` over stdio until the client closes the connection."""
    import anyio
    from mcp.server import Server
    from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool

    from ..tools import invoke_tool

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(
            tools=[
                Tool(name=row["name"], description=row["description"] or None, input_schema=row["schema"] or {"type": "object", "properties": {}})
                for row in rows.values()
            ]
        )

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        row = rows.get(params.name)
        if row is None:
            return CallToolResult(content=[TextContent(type="text", text=f"Unknown tool {params.name!r}; the tools are {', '.join(rows)}.")], is_error=True)
        outcome = await anyio.to_thread.run_sync(lambda: invoke_tool(hub.runtime, row, dict(params.arguments or {})))
        return CallToolResult(content=[TextContent(type="text", text=outcome.content)], is_error=outcome.status != "completed")

    server = Server("aihub", on_list_tools=list_tools, on_call_tool=call_tool)

    async def run() -> None:
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aihub_nb.mcp", description="MCP for aihub_nb.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the hub's python tools as an MCP server over stdio")
    serve_parser.add_argument("--home", help="the hub's folder (default: $AIHUB_HOME, else ~/.aihub)")
    serve_parser.add_argument("--tools", help="comma-separated tool names to serve (default: every python tool)")
    args = parser.parse_args(argv)

    from ..hub import Hub

    hub = Hub(args.home)
    try:
        only = [n.strip() for n in args.tools.split(",") if n.strip()] if args.tools else None
        rows, problems = servable_tools(hub, only)
        for line in problems:
            print(f"aihub mcp serve: not served: {line}", file=sys.stderr, flush=True)
        if not rows:
            print("aihub mcp serve: no python tool can be served; define tools in an importable module with @hub.tool", file=sys.stderr, flush=True)
            return 2
        print(f"aihub mcp serve: serving {', '.join(rows)} from {hub.path}", file=sys.stderr, flush=True)
        serve(hub, rows)
    finally:
        hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
