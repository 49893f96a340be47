"""Tools: Python functions and HTTP endpoints a model may call, and the record of each call.

    >>> @hub.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b
    >>> row = hub.http_tool("weather", "GET", "https://wttr.in/{city}", headers={"Authorization": "Bearer ${WTTR_TOKEN}"})
    >>> [(t["name"], t["type"], t["available"]) for t in hub.tools()]
    [('add', 'python', True), ('weather', 'http', True)]
    >>> invoke_tool(hub.runtime, get_tool(hub.runtime, "add"), '{"a": 2, "b": 3}').content
    '5'

A Tool row keeps, per tool:

* `schema`: the JSON Schema of the tool's parameters (the ``parameters`` of an OpenAI function
  spec), which a model's arguments are validated against; name and description have their own
  columns, and `tool_spec` puts the three together for a provider.
* `data`: for type ``python`` the function's module, qualname, signature and source (for display
  only); for type ``http`` the method, the URL template (``{param}`` filled from the arguments) and
  the headers. Secrets in headers or in the URL are references to environment variables
  (``"Bearer ${MY_TOKEN}"``, ``?appid=${OWM_KEY}``), expanded when the tool is called and never
  stored, nor recorded in its NetworkCall.

A python tool runs only the function registered in this session (the runtime's `tools`): code is never
rebuilt from the database, so after a restart a stored python tool is listed as unavailable until
its definition runs again.

Every call is a ToolInvocation: (pending ->) running -> completed / failed / denied / interrupted
(Ctrl-C), written in two transactions when the tool runs at once (the row, created running; then
its final status, TextLog and metrics together), with the
`parameters` (as validated; arguments that are not a JSON object are kept as ``{"_raw": text}``),
a `result` of ``{"value": <the result as JSON>}`` or ``{"error": "<one line>"}``, `durationMs`
(how long the tool itself ran; none when it did not run), the model's `callId`, and a TextLog
holding what the tool printed, the traceback when it raised, and why it failed or was denied.
Only the thread running the tool is captured: other threads (a notebook's main thread while a
panel runs a turn in the background) keep printing where they did.
A failure never propagates (only Ctrl-C does, once the call is recorded as interrupted): the model
reads the result's value (a string as it is, anything else as JSON text) or the error text,
cut to `MAX_RESULT_CHARS` characters (the stored result is kept whole).
Each call also records the metrics ``tool_failures`` (1 for failed, else 0: a denied or
interrupted call is no failure of the tool) and, when the tool
ran, ``tool_duration_ms``, with dimensions tool, agent (when an agent called it) and status.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import io
import json
import os
import re
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from .errors import ToolArgumentsError, ToolError
from .redact import ENV_REF as _ENV_REF
from .redact import (
    REDACTED,
    env_references,
    is_secret_name,
    redact,
    redact_data,
    redact_headers,
    redact_url,
    watch_env,
)
from .runtime import Approver
from .store import find_named
from .toolschema import call_kwargs, coerce_arguments, function_spec

if TYPE_CHECKING:
    from .providers.base import ToolCall
    from .runtime import Runtime

__all__ = [
    "PERMISSIONS",
    "ToolBox",
    "ToolOutcome",
    "define_http_tool",
    "define_python_tool",
    "get_tool",
    "invoke_tool",
    "is_available",
    "list_tools",
    "registered_name",
    "remove_tool",
    "tool_dimensions",
    "tool_spec",
]

PERMISSIONS = ("automatic", "user-permitted")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BODY_METHODS = ("POST", "PUT", "PATCH")
HTTP_TIMEOUT = 30.0
MAX_RESULT_CHARS = 20_000  # of a tool's result, as the model reads it
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule for function names
_SNIPPET = 300
_INSIDE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what no header value may hold (tabs may)


@dataclass
class ToolOutcome:
    """The result of one tool call, as a chat turn records it and the model reads it."""

    content: str  # what goes back to the model
    status: str  # completed | failed | denied
    tool_id: str | None = None
    invocation_id: str | None = None
    duration_ms: float | None = None


class ToolBox(Protocol):
    """The tools a turn may call (an agent's): their specs, and how to run one call."""

    name: str
    max_rounds: int

    def specs(self) -> list[dict[str, Any]]: ...

    def run(self, call: ToolCall, *, job_id: str, thread_id: str) -> ToolOutcome: ...


# ---------------------------------------------------------------- defining tools


def define_python_tool(runtime: Runtime, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """Store `fn` as a python tool (name, description and schema from its signature and docstring)
    and register it for this session. Defining the same name again updates the same row."""
    if not callable(fn):
        raise ToolError(f"A python tool must be a function, got {type(fn).__name__}; decorate a def with @hub.tool.")
    if _is_async(fn):
        raise ToolError(f"Tool {getattr(fn, '__name__', fn)!r} is async; define it with a plain def.")
    spec = function_spec(fn, name=name, description=description)
    data = {
        "module": getattr(fn, "__module__", None),
        "qualname": getattr(fn, "__qualname__", type(fn).__qualname__),
        "signature": _signature(fn),
        "source": _source(fn),
    }
    row = _save_tool(runtime, spec["name"], "python", spec["description"], spec["parameters"], data)
    runtime.tools[spec["name"]] = fn
    return row


def _is_async(fn: Callable[..., Any]) -> bool:
    """An `async def` (a coroutine or async generator function), also as a callable object's __call__."""
    targets = [fn] if inspect.isroutine(fn) or isinstance(fn, type) else [fn, type(fn).__call__]
    return any(inspect.iscoroutinefunction(t) or inspect.isasyncgenfunction(t) for t in targets)


def registered_name(runtime: Runtime, fn: Callable[..., Any]) -> str | None:
    """The name `fn` is registered under as a python tool in this session, if it is (a bound
    method counts as the same function: `obj.method` is a new object at every access)."""
    return runtime.tools.name_of(fn)


def define_http_tool(
    runtime: Runtime,
    name: str,
    method: str,
    url: str,
    *,
    parameters: dict[str, Any] | None = None,
    description: str = "",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Store a tool that calls an HTTP endpoint; `{param}` in `url` is filled from the arguments.

    `parameters` is the arguments' JSON Schema; by default each `{param}` of the URL is a required
    string. Header values and URL query values that hold a credential must reference an environment
    variable, as in ``{"Authorization": "Bearer ${MY_TOKEN}"}`` or ``?key=${MY_KEY}``; it is read
    when the tool is called.
    """
    _check_tool_name(name)
    method = str(method).upper()
    if method not in HTTP_METHODS:
        raise ToolError(f"HTTP tool {name!r}: method {method!r} is not supported; use one of {', '.join(HTTP_METHODS)}.")
    if not re.match(r"^https?://[^/{}]+", str(url)):
        raise ToolError(f"HTTP tool {name!r}: {url!r} is not an http(s) URL; give one like https://api.example.com/items/{{id}}.")
    placeholders = _url_fields(name, url)
    credential = _url_credential(url)
    if credential:
        raise ToolError(
            f"HTTP tool {name!r}: the URL holds a credential; reference an environment variable instead of "
            f"the secret itself, e.g. {credential}."
        )
    if parameters is None:
        parameters = {
            "type": "object",
            "properties": {p: {"type": "string"} for p in placeholders},
            "required": placeholders,
            "additionalProperties": False,
        }
    elif not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ToolError(f"HTTP tool {name!r}: parameters must be a JSON Schema of type 'object', like {{'type': 'object', 'properties': {{...}}}}.")
    missing = [p for p in placeholders if p not in parameters.get("properties", {})]
    if missing:
        raise ToolError(f"HTTP tool {name!r}: the URL uses {', '.join(missing)}, which the parameters schema does not declare; add them to its properties.")
    headers = dict(headers or {})
    for header, value in headers.items():
        if not isinstance(value, str):
            raise ToolError(f"HTTP tool {name!r}: header {header!r} must be a string, got {type(value).__name__}.")
        if redact_headers({header: value})[header] != value and not _ENV_REF.search(value):
            raise ToolError(
                f"HTTP tool {name!r}: header {header!r} holds a credential; reference an environment variable "
                f"instead of the secret itself, e.g. {header!r}: 'Bearer ${{MY_TOKEN}}'."
            )
    for var in env_references(" ".join([url, *headers.values()])):
        watch_env(var)  # its value is masked wherever it shows up from now on
    data = {"method": method, "url": url, "headers": headers}
    row = _save_tool(runtime, name, "http", description, parameters, data)
    runtime.tools.pop(name, None)  # a python tool of that name is gone: its function must not stand for it
    return row


def _save_tool(runtime: Runtime, name: str, type: str, description: str, schema: dict, data: dict) -> dict[str, Any]:
    fields = dict(type=type, description=description or "", schema=schema, data=data)
    with runtime.store.transaction():  # look-up and create as one: one row per name across kernels
        existing = runtime.store.first("Tool", name=name)
        if existing:
            return runtime.store.update("Tool", existing["id"], **fields)
        return runtime.store.create("Tool", name=name, **fields)


def _check_tool_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToolError(f"Tool name {name!r} is invalid: it must be 1-64 letters, digits, '_' or '-'.")


def _url_fields(name: str, url: str) -> list[str]:
    """The `{param}` names of a URL template, in order, each once (`${VAR}` is no parameter)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(_ENV_REF.sub("", url)) if f is not None]
    except ValueError as exc:
        raise ToolError(f"HTTP tool {name!r}: the URL template {url!r} is malformed ({exc}).") from None
    bad = [f for f in fields if not f.isidentifier()]
    if bad:
        raise ToolError(f"HTTP tool {name!r}: URL placeholders must be plain names like {{city}}, not {{{bad[0]}}}.")
    return list(dict.fromkeys(fields))


def _url_credential(url: str) -> str | None:
    """If a URL template holds a literal secret (`?api_key=abc`, a password), how to reference it instead."""
    try:
        parts = urlsplit(url)
    except ValueError:  # httpx says what is wrong with it when the tool is called
        return None
    if parts.password and not _ENV_REF.fullmatch(parts.password):
        return f"{parts.scheme}://{parts.username}:${{MY_PASSWORD}}@{parts.hostname}"
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if value and not _ENV_REF.search(value) and not re.fullmatch(r"\{\w+\}", value):
            probe = f"http://host/?{key}=x"
            if redact_url(probe) != probe:
                return f"?{key}=${{MY_KEY}}"
    return None


def _signature(fn: Callable[..., Any]) -> str:
    """`(a: int, b: int = 0) -> int`, with string annotations resolved where they can be."""
    try:
        return str(inspect.signature(fn, eval_str=True))
    except Exception:
        return str(inspect.signature(fn))


def _source(fn: Callable[..., Any]) -> str | None:
    try:
        return inspect.getsource(fn)
    except Exception:  # no file (exec, a REPL), a builtin or callable object, a stale cell cache
        return None


# ---------------------------------------------------------------- finding and listing


def get_tool(runtime: Runtime, name: str) -> dict[str, Any]:
    """The Tool row called `name`; NotFoundError listing the tools there are."""
    return find_named(runtime.store, "Tool", name, kind="tool", fix="define one with @hub.tool or hub.http_tool(...)")


def is_available(runtime: Runtime, tool: dict[str, Any]) -> bool:
    """Whether the tool can run in this session (a python tool needs its function defined here;
    an MCP tool that its server no longer offers is unavailable)."""
    if tool["type"] == "mcp":
        return bool((tool["data"] or {}).get("available", True))
    return tool["type"] != "python" or tool["name"] in runtime.tools


def tool_spec(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool in OpenAI's `tools=[...]` format, which the Ollama provider takes too."""
    return {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": tool["description"],
            "parameters": tool["schema"] or {"type": "object", "properties": {}},
        },
    }


def list_tools(runtime: Runtime) -> list[dict[str, Any]]:
    """Every tool: name, type, description, a parameters summary, whether it is available, id."""
    return [
        {
            "name": row["name"],
            "type": row["type"],
            "description": row["description"],
            "parameters": _parameters_summary(row["schema"] or {}),
            "available": is_available(runtime, row),
            "id": row["id"],
        }
        for row in runtime.store.find("Tool")
    ]


def _parameters_summary(schema: dict[str, Any]) -> str:
    """`a: integer, unit: string = "c"`; an optional parameter without a default gets `?`."""
    required = set(schema.get("required", ()))
    parts = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type", "any")
        kind = " | ".join(kind) if isinstance(kind, list) else kind
        if "default" in prop:
            parts.append(f"{name}: {kind} = {json.dumps(prop['default'])}")
        else:
            parts.append(f"{name}: {kind}" if name in required else f"{name}?: {kind}")
    return ", ".join(parts)


def remove_tool(runtime: Runtime, name: str) -> None:
    """Delete a tool and every agent's connection to it."""
    row = get_tool(runtime, name)
    with runtime.store.transaction() as conn:
        conn.execute('DELETE FROM "AgentToolConnection" WHERE toolId = ?', (row["id"],))
        conn.execute('DELETE FROM "Tool" WHERE id = ?', (row["id"],))
    runtime.tools.pop(name, None)


# ---------------------------------------------------------------- invoking


def invoke_tool(
    runtime: Runtime,
    tool: dict[str, Any],
    arguments: str | dict[str, Any] | None,
    *,
    permission: str = "automatic",
    approve: Approver | None = None,
    call_id: str | None = None,
    references: dict[str, str] | None = None,
    agent: str | None = None,
) -> ToolOutcome:
    """Run one call of `tool` with the model's `arguments` (JSON text or a dict), recorded as a
    ToolInvocation; never raises for a failing tool (only for Ctrl-C, after recording it).

    In order: an unavailable python tool fails; the arguments are parsed and validated against the
    tool's schema (on a problem the tool is not run); unless `permission` is ``automatic``, the
    tool runs only if `approve(name, arguments)` returns True, else the call is ``denied``.
    """
    store = runtime.store
    error, args = None, None
    if tool["type"] == "mcp" and not is_available(runtime, tool):
        error = (
            f"Tool {tool['name']!r} is not available: its MCP server {(tool['data'] or {}).get('server')!r} no longer offers it; "
            "see %aihub mcp tools SERVER for the tools it has now."
        )
    elif not is_available(runtime, tool):
        error = (
            f"Tool {tool['name']!r} is not available: its Python function is not defined in this session; "
            "define the function in this session (run the cell with @hub.tool) to use it."
        )
    else:
        try:
            args = coerce_arguments(tool["schema"] or {}, arguments)
        except ToolArgumentsError as exc:
            error = f"Tool {tool['name']!r} was not run: {exc} Call it again with arguments that fit its schema."
        except ToolError as exc:  # the tool's own schema is broken (a bad pattern or $ref)
            error = f"Tool {tool['name']!r} was not run: its arguments could not be checked ({exc})"
    runs_now = error is None and permission == "automatic"
    with store.transaction():  # the call's records start in one transaction, and end in one (finish)
        log = store.create("TextLog", text="")
        row = store.create(
            "ToolInvocation", toolId=tool["id"], parameters=_raw_parameters(arguments) if args is None else args,
            textLogId=log["id"], status="running" if runs_now else "pending", callId=call_id, references=references or {},
        )
    call = _Call(runtime, tool, row, agent)
    if error is not None:
        return call.finish("failed", error=error)
    if not runs_now:
        refusal = call.ask(approve, args)
        if refusal:
            status, why = refusal
            return call.finish(status, error=why)
        store.set("ToolInvocation", row["id"], status="running")
    return call.run(args)


def _raw_parameters(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    """The arguments as recorded before validation: the object if they are one, else {"_raw": text}."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": str(arguments)}


class _Call:
    """One ToolInvocation on its way from pending to its final status."""

    def __init__(self, runtime: Runtime, tool: dict[str, Any], invocation: dict[str, Any], agent: str | None) -> None:
        self.runtime = runtime
        self.tool = tool
        self.name = tool["name"]
        self.id = invocation["id"]
        self.log_id = invocation["textLogId"]
        self.references = invocation["references"]
        self.agent = agent
        self.duration_ms: float | None = None
        self._log: list[str] = []  # written with the final status, in one transaction

    def log(self, text: str) -> None:
        if text:
            text = redact(text)
            self._log.append(text if text.endswith("\n") else text + "\n")

    def ask(self, approve: Approver | None, args: dict[str, Any]) -> tuple[str, str] | None:
        """None if the user allows the call, else (status, why) for the model to read."""
        if approve is None:
            return "denied", (
                f"Tool {self.name!r} needs the user's permission and there was no way to ask, so it was not run; "
                "continue without it, or tell the user to allow it."
            )
        try:
            approved = approve(self.name, args)
        except KeyboardInterrupt:
            self.finish("interrupted", error="interrupted by the user")
            raise
        except BaseException as exc:  # SystemExit too: a failure of this call, not of the session
            return "failed", f"Asking the user about tool {self.name!r} failed ({_one_line(exc)}), so it was not run."
        if approved is True:
            return None
        return "denied", f"The user denied running tool {self.name!r}; do not call it again for this request, continue without it."

    def run(self, args: dict[str, Any]) -> ToolOutcome:
        if self.tool["type"] == "mcp":
            return self._run_mcp(args)
        printed = io.StringIO()
        started = time.perf_counter()
        try:
            with _capture_output(printed):
                value = _jsonable(self._execute(args))
        except KeyboardInterrupt:
            self.duration_ms = _since(started)
            self.log(printed.getvalue())
            self.finish("interrupted", error="interrupted by the user")
            raise
        except BaseException as exc:  # SystemExit too: sys.exit() in a tool ends the call, not the session
            self.duration_ms = _since(started)
            self.log(printed.getvalue())
            if self.tool["type"] == "python":
                self.log(_user_traceback(exc))
            reason = " ".join(str(exc).split()) if isinstance(exc, ToolError) else _one_line(exc)
            return self.finish("failed", error=f"Tool {self.name!r} failed: {reason}")
        self.duration_ms = _since(started)
        self.log(printed.getvalue())
        return self.finish("completed", value=value)

    def _run_mcp(self, args: dict[str, Any]) -> ToolOutcome:
        """An MCP tool call: the result JSON is stored whole, the model reads its text; a result
        with isError is a failed call whose content still goes back to the model."""
        from .errors import McpError, McpInterrupted
        from .mcp import registry

        started = time.perf_counter()
        try:
            answer = registry.call_tool(self.runtime.store, self.runtime.mcp, self.tool, args)
        except McpInterrupted as exc:
            self.duration_ms = exc.duration_ms if exc.duration_ms is not None else _since(started)
            self.log("\n".join(exc.stderr))
            self.finish("interrupted", error="interrupted by the user")
            raise
        except McpError as exc:
            self.duration_ms = exc.duration_ms
            self.log("\n".join(exc.stderr))
            return self.finish("failed", error=f"Tool {self.name!r} failed: {' '.join(str(exc).split())}")
        self.duration_ms = round(answer.duration_ms, 3)
        self.log("\n".join(answer.stderr))
        return self.finish("failed" if answer.is_error else "completed", value=answer.result, content=answer.text)

    def _execute(self, args: dict[str, Any]) -> Any:
        kind = self.tool["type"]
        if kind == "python":
            fn = self.runtime.tools[self.name]
            value = fn(**call_kwargs(fn, args))
            if inspect.isgenerator(value):
                return list(value)
            if inspect.isawaitable(value):
                getattr(value, "close", lambda: None)()
                raise ToolError("it returned an awaitable; a tool must be a plain function that returns its result")
            return value
        if kind == "http":
            return _call_http(self.runtime, self.tool, args, {"invocation": self.id, **self.references})
        raise ToolError(f"tool type {kind!r} cannot run in this version of aihub_nb")

    def finish(self, status: str, *, value: Any = None, error: str | None = None, content: str | None = None) -> ToolOutcome:
        # Known secrets never reach the store or the model, whatever the tool returned or echoed.
        if error is not None:
            error = redact(error)
            self.log(error if status == "interrupted" else f"{status}: {error}")
            result, content = {"error": error}, error
        else:  # `value` is JSON data already (see run)
            value = redact_data(value)
            result = {"value": value}
            if content is None:
                content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            content = redact(content)
        if len(content) > MAX_RESULT_CHARS:
            content = (
                f"{content[:MAX_RESULT_CHARS]}\n[cut: the model is shown the first {MAX_RESULT_CHARS} of "
                f"{len(content)} characters]"
            )
        values = {"tool_failures": 1.0 if status == "failed" else 0.0}
        if self.duration_ms is not None:
            values["tool_duration_ms"] = self.duration_ms
        dims = tool_dimensions(self.name, self.agent, status, server=(self.tool["data"] or {}).get("server") if self.tool["type"] == "mcp" else None)
        store = self.runtime.store
        with store.transaction():  # the log, the final status and the metrics: one commit
            if self._log:
                store.append_text("TextLog", self.log_id, "text", "".join(self._log))
                self._log.clear()
            store.set("ToolInvocation", self.id, status=status, result=result, durationMs=self.duration_ms)
            self.runtime.metrics.record(values, dims, references={"invocation": self.id, **self.references})
        return ToolOutcome(content, status, tool_id=self.tool["id"], invocation_id=self.id, duration_ms=self.duration_ms)


def tool_dimensions(tool: str, agent: str | None, status: str, *, server: str | None = None) -> dict[str, str]:
    """The dimensions of a tool call's metrics (an MCP tool's also name its server)."""
    dims = {"tool": tool, "status": status}
    if agent:
        dims["agent"] = agent
    if server:
        dims["server"] = server
    return dims


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _one_line(exc: BaseException) -> str:
    text = " ".join(redact(str(exc)).split())  # redacted first: a secret may hold a line break
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the tool's own code on (this module's frames left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _jsonable(value: Any) -> Any:
    """`value` as JSON data: dataclasses and pydantic models as objects, sets (sorted), dict views
    and numpy arrays as lists, numpy numbers as numbers, Enums as their value, dates as ISO text,
    UTF-8 bytes as text (pydantic_core converts what it knows), anything else JSON cannot hold
    (a DataFrame, a dict with tuple keys, a list that contains itself) as its str()."""
    try:
        return json.loads(json.dumps(value, default=_json_fallback, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _json_fallback(value: Any) -> Any:
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    plain = _plain_fallback(value)
    if plain is not _NOT_PLAIN:
        return plain
    try:
        return to_jsonable_python(value, fallback=_str_fallback)
    except (PydanticSerializationError, TypeError, ValueError):
        return str(value)


_NOT_PLAIN = object()


def _plain_fallback(value: Any) -> Any:
    """What pydantic_core would write differently: sets sorted, views and ranges, numpy values."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (collections.abc.MappingView, range)):
        return list(value)
    if type(value).__module__ == "numpy" and callable(getattr(value, "tolist", None)):
        return value.tolist()  # numpy scalars and arrays
    return _NOT_PLAIN


def _str_fallback(value: Any) -> Any:
    plain = _plain_fallback(value)
    return str(value) if plain is _NOT_PLAIN else plain


class _OutputRouter:
    """Stands in for sys.stdout or sys.stderr while tools run: what a thread running a tool writes
    goes to that call's buffer; what any other thread writes goes to the stream that was there."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffers: dict[int, io.StringIO] = {}

    def _target(self) -> Any:
        return self.buffers.get(threading.get_ident(), self.stream)

    def write(self, text: str) -> int:
        target = self._target()
        return len(text) if target is None else target.write(text)  # None: no console (pythonw)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        target = self._target()
        if target is not None:
            target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


_ROUTING_LOCK = threading.Lock()
_STREAMS = ("stdout", "stderr")


@contextlib.contextmanager
def _capture_output(buffer: io.StringIO) -> Iterator[None]:
    """Within the block, what this thread prints (stdout and stderr) goes to `buffer`.

    Unlike contextlib.redirect_stdout, which swaps sys.stdout for every thread (so the notebook's
    own prints vanish into a tool's log, and two overlapping calls restore each other's buffer),
    this routes by thread, and puts the original streams back once no call is capturing."""
    me = threading.get_ident()
    with _ROUTING_LOCK:
        routers = [_router(name) for name in _STREAMS]
        saved = [router.buffers.get(me) for router in routers]
        for router in routers:
            router.buffers[me] = buffer
    try:
        yield
    finally:
        with _ROUTING_LOCK:
            for name, router, previous in zip(_STREAMS, routers, saved):
                if previous is None:
                    router.buffers.pop(me, None)
                else:
                    router.buffers[me] = previous
                if not router.buffers and getattr(sys, name) is router:
                    setattr(sys, name, router.stream)


def _router(name: str) -> _OutputRouter:
    current = getattr(sys, name)
    if isinstance(current, _OutputRouter):
        return current
    router = _OutputRouter(current)
    setattr(sys, name, router)
    return router


# ---------------------------------------------------------------- http tools


def _call_http(runtime: Runtime, tool: dict[str, Any], args: dict[str, Any], references: dict[str, str]) -> Any:
    """One request: URL placeholders filled (URL-encoded), the other arguments as the query
    (GET, DELETE) or a JSON body; recorded as a NetworkCall referencing the invocation."""
    import httpx

    data = tool["data"]
    method, template = data["method"], data["url"]
    fields = _url_fields(tool["name"], template)
    missing = [f for f in fields if args.get(f) is None]
    if missing:
        raise ToolError(f"the URL needs {', '.join(missing)}")
    filled = {f: quote(_text(args[f]), safe="") for f in fields}
    pieces = _ENV_REF.split(template)  # text, variable name, text, ...
    in_url = [quote(_env("the URL", var), safe="") for var in pieces[1::2]]
    url = "".join(
        piece.format(**filled) if i % 2 == 0 else in_url[i // 2] for i, piece in enumerate(pieces)
    )
    rest = {k: v for k, v in args.items() if k not in fields}
    stored = data.get("headers", {})
    headers = {k: _expand_env(k, v) for k, v in stored.items()}
    request: dict[str, Any] = {"headers": headers}
    if method in _BODY_METHODS:
        request["json"] = rest
    elif rest:
        request["params"] = {k: _text(v) for k, v in rest.items() if v is not None}
    secret = {k.lower(): v for k, v in stored.items() if _ENV_REF.search(v)}
    hiding = _HidingSink(runtime.recorder, secret, [v for v in in_url if v])
    transport = runtime.recorder.transport("httpx", hiding)
    hooks = {"request": [_secrets_stay_home(httpx.URL(url), secret)]}
    try:
        with (
            httpx.Client(transport=transport, timeout=HTTP_TIMEOUT, follow_redirects=True, event_hooks=hooks) as client,
            runtime.recorder.call(**references),
        ):
            response = client.request(method, url, **request)
    except httpx.HTTPError as exc:
        raise ToolError(hiding.hide(_one_line(exc))) from None
    if not response.is_success:
        body = " ".join(redact(hiding.hide(response.text)).split())[:_SNIPPET]
        where = hiding.hide(redact_url(str(response.url)))
        raise ToolError(f"HTTP {response.status_code} {response.reason_phrase} from {method} {where}: {body}")
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


def _origin(url: Any) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme))


def _secrets_stay_home(first: Any, secret: dict[str, str]) -> Callable[[Any], None]:
    """An httpx request hook: a redirect to another origin (scheme, host or port) goes without the
    headers that carry a secret (those referencing `${VAR}`, and any credential header); they stay
    off for the rest of the redirects, back home included."""
    home = _origin(first)

    def hook(request: Any) -> None:
        if _origin(request.url) != home:
            for name in [n for n in request.headers if n.lower() in secret or is_secret_name(n)]:
                del request.headers[name]

    return hook


class _HidingSink:
    """Passes recorded calls on to `sink` without the values read from environment variables:
    a header that references one is recorded as defined (`Bearer ${TOKEN}`) unless already
    redacted, whatever its name; such a value in the URL becomes [redacted]."""

    def __init__(self, sink: Any, headers: dict[str, str], in_url: list[str]) -> None:
        self._sink = sink
        self._headers = headers  # lower-cased header name -> its value as defined
        self._in_url = in_url  # the URL-encoded values put into the URL

    def hide(self, text: str) -> str:
        for value in self._in_url:
            text = text.replace(value, REDACTED)
        return text

    def request(self, *, method: str, url: str, headers: dict[str, str], body: str) -> Any:
        shown = {
            name: self._headers[name.lower()] if name.lower() in self._headers and REDACTED not in value else value
            for name, value in headers.items()
        }
        return self._sink.request(method=method, url=self.hide(url), headers=shown, body=body)

    def response(self, handle: Any, *, status_code: int, headers: dict[str, str]) -> None:
        self._sink.response(handle, status_code=status_code, headers=headers)

    def chunk(self, handle: Any, data: bytes) -> None:
        self._sink.chunk(handle, data)

    def finish(self, handle: Any, *, error: str | None, duration_ms: float) -> None:
        self._sink.finish(handle, error=error, duration_ms=duration_ms)


def _text(value: Any) -> str:
    """An argument as it goes into a URL: strings as they are, booleans as true/false, else JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _expand_env(header: str, value: str) -> str:
    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        text = _env(f"header {header!r}", name)
        if _INSIDE_HEADER.search(text):  # httpx would refuse it with the value in its message
            raise ToolError(
                f"the environment variable {name} (for header {header!r}) has a control character or line break "
                "inside; set it again to the value alone"
            )
        return text

    return _ENV_REF.sub(expand, value)


def _env(where: str, name: str) -> str:
    """The value of `name`, stripped of surrounding whitespace, and masked wherever it shows up."""
    watch_env(name)
    if name not in os.environ:
        raise ToolError(f"{where} needs the environment variable {name}, which is not set; set it (os.environ[{name!r}] = ...) and try again")
    return os.environ[name].strip()
