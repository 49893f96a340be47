"""MCP client sessions kept open on one background event-loop thread, called from plain code.

    >>> sessions = McpSessions()
    >>> spec = ServerSpec("demo", command=demo_command())
    >>> [t["name"] for t in sessions.connect(spec)][:2]
    ['add', 'echo']
    >>> sessions.call(spec, "add", {"a": 2, "b": 3}).result["structuredContent"]
    {'result': 5}
    >>> sessions.close()                 # stops every server it started

The SDK is async and a notebook kernel already runs an event loop, so an `McpSessions` owns one
daemon thread running its own asyncio loop; each server's ClientSession lives in one task on it
(entered and left by that task, as anyio requires), and plain code waits on it through
`run_coroutine_threadsafe`. Everything is bounded: connecting and `initialize` by
`connect_timeout`, each call by its `timeout`.

* stdio: the command is started with the SDK's small default environment (PATH, HOME, ...) plus
  `env`, whose values reference the hub's environment variables (``{"API_KEY": "${MY_KEY}"}``) and
  are read when the server starts. Its stderr is read continuously; a call gets the lines written
  while it ran.
* Streamable HTTP: `headers_env` maps a header to an environment variable (``{"Authorization":
  "MY_TOKEN"}``) or to a template referencing some (``"Bearer ${MY_TOKEN}"``), read when connecting.
  Values of the variables are never stored, and are masked wherever they show up.

A call that the server answers with ``isError`` is a normal result (the model reads it). A server
that dies or drops the connection during a call fails that call with `McpError`, and the next call
starts it again. Ctrl-C while waiting cancels the call (the server is told and keeps running) and
raises `McpInterrupted`, a KeyboardInterrupt carrying what the call had gathered.
`close()` stops every server; open sessions are also closed at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import os
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import McpError, McpInterrupted
from ..redact import ENV_REF, watch_env
from .names import check_server_name
from .results import result_json, result_text

__all__ = ["CallResult", "McpSessions", "ServerSpec", "demo_command"]

CONNECT_TIMEOUT = 30.0  # seconds to start a server, connect and finish `initialize`
CALL_TIMEOUT = 60.0  # seconds for one tool call, unless the caller says otherwise
_STDERR_LINES = 2000  # kept per server; a call gets the ones written while it ran
_VAR = ENV_REF.pattern.removeprefix(r"\$\{").removesuffix(r"\}")


def demo_command(*args: str) -> list[str]:
    """The command that starts the shipped demo server over stdio (it needs only the `mcp` SDK)."""
    return [sys.executable, str(Path(__file__).with_name("demo_server.py")), *args]


# ---------------------------------------------------------------- server definitions


@dataclass(frozen=True)
class ServerSpec:
    """How to reach one MCP server: a `command` the hub starts (stdio) or a `url` (Streamable HTTP)."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    headers_env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", tuple(self.command or ()))
        object.__setattr__(self, "env", dict(self.env or {}))
        object.__setattr__(self, "headers_env", dict(self.headers_env or {}))

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def check(self) -> ServerSpec:
        """Raise McpError (one line, what to do) if the definition cannot work; else return it."""
        name = check_server_name(self.name)
        if bool(self.command) == bool(self.url):
            raise McpError(f"MCP server {name!r}: give either a command to start (command=[...]) or a url, not {'both' if self.url else 'neither'}.", server=name)
        if self.command:
            if not all(isinstance(part, str) and part for part in self.command):
                raise McpError(f"MCP server {name!r}: the command must be a list of non-empty strings, like ['uvx', 'mcp-server-time'].", server=name)
            if self.headers_env:
                raise McpError(f"MCP server {name!r}: headers are for a url; a command's secrets go in env={{'NAME': '${{VAR}}'}}.", server=name)
            for var, value in self.env.items():
                if not isinstance(var, str) or not var or "=" in var:
                    raise McpError(f"MCP server {name!r}: {var!r} is not an environment variable name.", server=name)
                if not isinstance(value, str) or not ENV_REF.search(value):
                    raise McpError(
                        f"MCP server {name!r}: env {var!r} must reference an environment variable, like "
                        f"{{{var!r}: '${{MY_{_upper(var)}}}'}}, so that no value is stored.",
                        server=name,
                    )
        else:
            if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
                raise McpError(f"MCP server {name!r}: {self.url!r} is not an http(s) URL; give the server's endpoint, like http://127.0.0.1:8000/mcp.", server=name)
            if self.env:
                raise McpError(f"MCP server {name!r}: env is for a command the hub starts; for a url use headers_env={{'Authorization': 'MY_TOKEN'}}.", server=name)
            for header, value in self.headers_env.items():
                if not isinstance(value, str) or not (ENV_REF.search(value) or _is_var(value)):
                    raise McpError(
                        f"MCP server {name!r}: header {header!r} must name an environment variable (headers_env={{{header!r}: 'MY_TOKEN'}}) "
                        "or reference one ('Bearer ${MY_TOKEN}').",
                        server=name,
                    )
        for var in self.references():
            watch_env(var)
        return self

    def references(self) -> list[str]:
        """The environment variables the definition reads."""
        names = [v for value in self.env.values() for v in ENV_REF.findall(value)]
        for value in self.headers_env.values():
            names += [value] if _is_var(value) else ENV_REF.findall(value)
        return list(dict.fromkeys(names))

    def as_data(self) -> dict[str, Any]:
        """What is stored of the definition (references only, never a value)."""
        data: dict[str, Any] = {"transport": self.transport}
        if self.command:
            data.update(command=list(self.command), env=dict(self.env))
            if self.cwd:
                data["cwd"] = self.cwd
        else:
            data.update(url=self.url, headersEnv=dict(self.headers_env))
        return data

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> ServerSpec:
        return cls(
            name,
            command=tuple(data.get("command") or ()),
            url=data.get("url"),
            env=data.get("env") or {},
            headers_env=data.get("headersEnv") or {},
            cwd=data.get("cwd"),
        )

    def describe(self) -> str:
        """The command line or URL, for listings (no secrets: only references are stored)."""
        return " ".join(self.command) if self.command else str(self.url)


def _is_var(value: object) -> bool:
    import re

    return isinstance(value, str) and re.fullmatch(_VAR, value) is not None


def _upper(name: object) -> str:
    return str(name).upper().replace("-", "_")


def _expand(where: str, server: str, template: str) -> str:
    def one(match: Any) -> str:
        return _env_value(where, server, match.group(1))

    return ENV_REF.sub(one, template)


def _env_value(where: str, server: str, var: str) -> str:
    watch_env(var)
    if var not in os.environ:
        raise McpError(f"MCP server {server!r}: {where} needs the environment variable {var}, which is not set; set it and try again.", server=server)
    return os.environ[var].strip()


# ---------------------------------------------------------------- results


@dataclass
class CallResult:
    """One answered call: the result JSON (`isError` inside), the server's stderr lines written
    while it ran, and how long it took in milliseconds."""

    result: dict[str, Any]
    stderr: tuple[str, ...]
    duration_ms: float

    @property
    def is_error(self) -> bool:
        return bool(self.result.get("isError"))

    @property
    def text(self) -> str:
        return result_text(self.result)


# ---------------------------------------------------------------- one connection


class _Connection:
    """One server's session, owned by one task on the sessions' loop."""

    def __init__(self, spec: ServerSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.loop = loop
        self.session: Any = None
        self.tools: list[dict[str, Any]] = []
        self.ready: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        self.stopping = asyncio.Event()
        self.closed = asyncio.Event()
        self.dead = False
        self.lines: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self.count = 0  # lines ever received
        self._partial = b""
        self._read_fd: int | None = None
        self.task: asyncio.Task[None] | None = None

    # stderr, read on the loop thread only
    def open_stderr(self) -> Any:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._read_fd = read_fd
        self.loop.add_reader(read_fd, self.drain_stderr)
        return os.fdopen(write_fd, "w")

    def drain_stderr(self) -> None:
        fd = self._read_fd
        if fd is None:
            return
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_stderr()
                return
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            for raw in complete:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r"))
                self.count += 1

    def _close_stderr(self) -> None:
        fd, self._read_fd = self._read_fd, None
        if fd is None:
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        if self._partial:
            self.lines.append(self._partial.decode("utf-8", "replace"))
            self.count += 1
            self._partial = b""

    def lines_since(self, count: int) -> tuple[str, ...]:
        self.drain_stderr()
        new = self.count - count
        return tuple(list(self.lines)[-new:]) if new > 0 else ()

    def last_line(self) -> str:
        self.drain_stderr()
        lines = [line for line in self.lines if line.strip()]
        return lines[-1].strip() if lines else ""

    async def own(self, timeout: float) -> None:
        """Start the server, keep its session open until `stopping` is set, then shut it down."""
        from mcp import ClientSession

        spec = self.spec
        errlog = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if spec.command:
                    from mcp import StdioServerParameters, stdio_client

                    env = {var: _expand(f"env {var!r}", spec.name, value) for var, value in spec.env.items()}
                    params = StdioServerParameters(command=spec.command[0], args=list(spec.command[1:]), env=env, cwd=spec.cwd)
                    errlog = self.open_stderr()
                    read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
                    errlog.close()  # the server holds its own copy: end of file when it exits
                    errlog = None
                else:
                    import httpx2
                    from mcp.client.streamable_http import streamable_http_client

                    headers = {
                        header: _env_value(f"header {header!r}", spec.name, value) if _is_var(value) else _expand(f"header {header!r}", spec.name, value)
                        for header, value in spec.headers_env.items()
                    }
                    client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout, read=300.0))
                    await stack.enter_async_context(client)
                    read, write = await stack.enter_async_context(streamable_http_client(spec.url, http_client=client))
                session = await stack.enter_async_context(ClientSession(read, write))
                import anyio

                with anyio.fail_after(timeout):
                    await session.initialize()
                    tools = await _list_all(session)
                self.session, self.tools = session, tools
                if not self.ready.done():
                    self.ready.set_result(tools)
                await self.stopping.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the connection
            if not self.ready.done():
                self.ready.set_exception(exc if isinstance(exc, Exception) else McpError(f"MCP server {spec.name!r} was stopped while starting.", server=spec.name))
        finally:
            if errlog is not None:
                errlog.close()
            self.dead = True
            self.session = None
            self.drain_stderr()
            self._close_stderr()
            self.closed.set()


async def _list_all(session: Any) -> list[dict[str, Any]]:
    """Every tool the server lists (following pagination), as JSON with the protocol's names."""
    from mcp.types import PaginatedRequestParams

    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        listed = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]
        cursor = listed.next_cursor
        if not cursor:
            break
    return tools


# ---------------------------------------------------------------- the sessions


_LIVE: weakref.WeakSet[McpSessions] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sessions in list(_LIVE):
        with contextlib.suppress(Exception):
            sessions.close()


class McpSessions:
    """The MCP servers one hub talks to, each session open on one background loop thread."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT, call_timeout: float = CALL_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[str, _Connection] = {}
        self._lock = threading.RLock()
        _LIVE.add(self)

    # the loop thread
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="aihub-mcp", daemon=True)
                self._thread.start()
                started.wait()
                self._loop = loop
            return self._loop

    def _run(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result(timeout)

    # servers
    def live(self, name: str) -> ServerSpec | None:
        """The definition server `name` runs with, if its session is open (what a call uses
        without reading the store; stopping, restarting or removing the server forgets it)."""
        conn = self._connections.get(name)
        return None if conn is None or conn.dead else conn.spec

    def running(self) -> list[str]:
        """The names of the servers with an open session."""
        with self._lock:
            return sorted(name for name, conn in self._connections.items() if not conn.dead)

    def connect(self, spec: ServerSpec) -> list[dict[str, Any]]:
        """Start `spec`'s server (again, if it runs with another definition or died), finish
        `initialize` and return its tools (name, description, inputSchema, ... as JSON)."""
        return self._connection(spec.check()).tools

    def tools(self, spec: ServerSpec, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's tools, listed again when `refresh` (connecting first if needed)."""
        conn = self._connection(spec.check())
        if refresh:
            conn.tools = self._run(_list_all(conn.session), self.connect_timeout + 5)
        return conn.tools

    def _connection(self, spec: ServerSpec) -> _Connection:
        with self._lock:
            conn = self._connections.get(spec.name)
            if conn is not None and not conn.dead and conn.spec == spec:
                return conn
            if conn is not None:
                self._stop(conn)
            spec.check()
            if spec.command and shutil.which(spec.command[0], path=os.environ.get("PATH")) is None and not os.path.isfile(spec.command[0]):
                raise McpError(
                    f"MCP server {spec.name!r}: the command {spec.command[0]!r} was not found; install it or give its full path.",
                    server=spec.name,
                )
            loop = self._ensure_loop()
            conn = _Connection(spec, loop)

            async def start() -> list[dict[str, Any]]:
                conn.task = asyncio.ensure_future(conn.own(self.connect_timeout))
                return await asyncio.shield(conn.ready)

            future = asyncio.run_coroutine_threadsafe(start(), loop)
            try:
                future.result(self.connect_timeout + 10)
            except KeyboardInterrupt:
                self._stop(conn)
                raise
            except BaseException as exc:  # noqa: BLE001 - turned into one line
                self._stop(conn)
                raise McpError(self._connect_message(spec, exc, conn), server=spec.name, stderr=tuple(conn.lines)) from None
            self._connections[spec.name] = conn
            return conn

    def _connect_message(self, spec: ServerSpec, exc: BaseException, conn: _Connection) -> str:
        cause = _root(exc)
        last = conn.lines[-1].strip() if conn.lines else ""
        said = f"; its last stderr line: {last[:300]}" if last else ""
        where = f"MCP server {spec.name!r} ({spec.describe()})"
        if isinstance(cause, McpError):
            return str(cause)
        if isinstance(cause, TimeoutError | concurrent.futures.TimeoutError):
            return f"{where} did not answer initialize within {self.connect_timeout:g} s{said}; check that it is an MCP server."
        if spec.command:
            if isinstance(cause, OSError) and not _is_mcp_error(cause):
                return f"{where} could not be started ({_one_line(cause)}); check the command."
            return f"{where} exited or closed its output before answering initialize{said}; run the command in a terminal to see why."
        return f"{where} did not answer as an MCP endpoint ({_one_line(cause)}); check the URL (it often ends in /mcp) and that the server runs."

    def stop(self, name: str) -> bool:
        """Stop the server `name` if it runs; whether it did."""
        with self._lock:
            conn = self._connections.pop(name, None)
            if conn is None:
                return False
            self._stop(conn)
            return True

    def _stop(self, conn: _Connection, wait: float = 10.0) -> None:
        loop = conn.loop
        if loop.is_closed():
            return

        async def stop() -> None:
            conn.stopping.set()
            if conn.task is None:
                return
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed.wait()), wait)
            except TimeoutError:
                conn.task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(conn.closed.wait(), 3)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(wait + 5)
        if self._connections.get(conn.spec.name) is conn:
            del self._connections[conn.spec.name]

    def close(self) -> None:
        """Stop every server and the loop thread. The sessions object can be used again."""
        with self._lock:
            for conn in list(self._connections.values()):
                self._stop(conn)
            self._connections.clear()
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(5)
            if not loop.is_running():
                loop.close()

    # calls
    def call(self, spec: ServerSpec, tool: str, arguments: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> CallResult:
        """Call `tool` on `spec`'s server (starting it when needed) and wait for its result.

        Raises McpError when the server cannot be reached, drops the connection or does not answer
        within `timeout` seconds (default `call_timeout`); McpInterrupted on Ctrl-C."""
        timeout = self.call_timeout if timeout is None else float(timeout)
        conn = self._connection(spec)  # checked when it connects
        name = spec.name
        state: dict[str, Any] = {}
        done = threading.Event()

        async def call() -> Any:
            start_count = conn.count
            started = time.perf_counter()
            try:
                return await conn.session.call_tool(tool, dict(arguments or {}))
            finally:
                state["duration_ms"] = (time.perf_counter() - started) * 1000
                state["stderr"] = conn.lines_since(start_count)
                done.set()

        future = asyncio.run_coroutine_threadsafe(call(), conn.loop)
        try:
            try:
                result = future.result(timeout)  # the timeout is kept here: no timer on the loop per call
            except TimeoutError:
                if future.cancel():  # cancels the call's task on the loop
                    done.wait(5)
                    raise
                result = future.result()  # it finished just now
        except KeyboardInterrupt:
            future.cancel()
            done.wait(5)
            raise McpInterrupted(
                f"MCP tool {tool!r} on server {name!r} was interrupted.", server=name,
                stderr=state.get("stderr", ()), duration_ms=state.get("duration_ms"),
            ) from None
        except BaseException as exc:  # noqa: BLE001 - turned into one line
            cause = _root(exc)
            stderr, duration = state.get("stderr", ()), state.get("duration_ms")
            if isinstance(cause, TimeoutError):
                raise McpError(
                    f"MCP tool {tool!r} on server {name!r} did not answer within {timeout:g} s; the call was cancelled.",
                    server=name, stderr=stderr, duration_ms=duration,
                ) from None
            if _is_mcp_error(cause) and getattr(cause, "code", None) != _CONNECTION_CLOSED and not conn.dead:
                raise McpError(
                    f"MCP server {name!r} refused the call of {tool!r}: {_one_line(cause)}.", server=name, stderr=stderr, duration_ms=duration
                ) from None
            # the connection is gone: stop what is left, so that the next call starts the server again
            last = conn.last_line()
            with self._lock:
                self._stop(conn, wait=3.0)
            said = f"; its last stderr line: {last[:300]}" if last else ""
            raise McpError(
                f"MCP server {name!r} closed the connection during the call of {tool!r} (it may have crashed){said}; "
                "the next call starts it again.",
                server=name, stderr=stderr, duration_ms=duration,
            ) from None
        return CallResult(result_json(result), state.get("stderr", ()), state.get("duration_ms", 0.0))


_CONNECTION_CLOSED = -32000


def _is_mcp_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "MCPError" and type(exc).__module__.startswith("mcp.")


def _root(exc: BaseException) -> BaseException:
    """The first real cause inside exception groups (anyio task groups wrap what failed)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if _is_mcp_error(exc):
        text = getattr(exc, "message", text) or text
    return text[:300]


