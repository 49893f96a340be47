"""A tiny MCP server with deterministic tools, for tests, demos and offline notebooks.

    python -m aihub_nb.mcp.demo_server                 # over stdio (what `hub.mcp(command=...)` starts)
    python -m aihub_nb.mcp.demo_server --http          # Streamable HTTP on 127.0.0.1, a free port;
                                                       # the first line printed is its URL
    python -m aihub_nb.mcp.demo_server --only add,echo # serve some of the tools only

Tools: ``add`` (two integers, structured result), ``echo``, ``now`` (a fixed instant), ``image``
(a 1x1 PNG), ``document`` (an embedded text resource), ``fail`` (a tool error), ``slow`` (sleeps),
``shout`` (writes lines to stderr), ``pid`` (its process id), ``crash`` (the process exits mid-call, stdio only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import sys
from typing import Any

from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import EmbeddedResource, TextResourceContents

FIXED_NOW = "2026-01-01T12:00:00Z"
# A 1x1 red PNG.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
TOOL_NAMES = ("add", "echo", "now", "image", "document", "fail", "slow", "shout", "pid", "crash")


def build_server(only: list[str] | None = None) -> MCPServer:
    """The demo MCPServer, with all its tools or the ones named in `only`."""
    server = MCPServer("aihub-demo", instructions="Deterministic tools for testing aihub_nb.", log_level="WARNING")

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    def now() -> str:
        """The current time (always the same instant, so results are reproducible)."""
        return FIXED_NOW

    def image() -> Image:
        """A 1x1 red PNG image."""
        return Image(data=PIXEL_PNG, format="png")

    def document(name: str = "notes") -> EmbeddedResource:
        """A small text document, returned as an embedded resource."""
        return EmbeddedResource(
            type="resource",
            resource=TextResourceContents(uri=f"demo://{name}.txt", mime_type="text/plain", text=f"The {name} document."),
        )

    def fail(message: str = "this tool always fails") -> str:
        """Always fails with the given message."""
        raise ToolError(message)

    async def slow(seconds: float = 1.0) -> str:
        """Wait `seconds`, then answer."""
        await asyncio.sleep(seconds)
        return f"waited {seconds} s"

    def shout(text: str) -> str:
        """Write two lines to stderr, then return the text in capitals."""
        print(f"shout: got {text!r}", file=sys.stderr, flush=True)
        print("shout: done", file=sys.stderr, flush=True)
        return text.upper()

    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    def crash() -> str:
        """Exit the server process in the middle of the call."""
        print("crash: exiting now", file=sys.stderr, flush=True)
        os._exit(3)

    for fn in (add, echo, now, image, document, fail, slow, shout, pid, crash):
        if only is None or fn.__name__ in only:
            server.add_tool(fn)
    return server


def serve_http(server: Any, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve `server` over Streamable HTTP at http://host:port/mcp (port 0: a free one); the URL
    is printed on the first line of stdout once the socket listens."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"http://{host}:{sock.getsockname()[1]}/mcp", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aihub_nb.mcp.demo_server", description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="with --http; 0 picks a free port")
    parser.add_argument("--only", help="comma-separated tool names to serve (default: all)")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if only:
        unknown = [n for n in only if n not in TOOL_NAMES]
        if unknown:
            parser.error(f"unknown tool {unknown[0]!r}; the tools are {', '.join(TOOL_NAMES)}")
    server = build_server(only)
    if args.http:
        serve_http(server, args.host, args.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
