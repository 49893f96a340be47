"""Agents: a chat model with instructions and tools, each tool automatic or user-permitted.

    >>> @hub.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b
    >>> row = hub.agent("helper", model="local", tools=[add], instructions="Use the tools you have.")
    >>> hub.chat("work", agent="helper").send("Please call add(a=2, b=3)").text
    'The tool returned: 5'
    >>> [(t["name"], t["permission"], t["available"]) for t in hub.describe_agent("helper")["tools"]]
    [('add', 'automatic', True)]

An Agent row names its model connection (`chatModelId`), its `instructions` (the system prompt)
and `maxRounds`, the hard limit on model calls in one turn; an AgentToolConnection per tool holds
the tool's permission stance: ``automatic`` runs when the model asks, ``user-permitted`` runs only
when `approve(tool_name, arguments)` says yes (no approver means denied).

Defining an agent again with the same name re-defines it: every field takes the new value (an
omitted one its default) and its tool connections are replaced, as re-running a notebook cell
would expect.

`load_agent` gives the object a chat turn calls (chat.py's `ToolBox`): `specs()` offers the
model only the tools available in this session (a python tool whose function is not defined here
is left out), and `run(call)` runs one call through `aihub_nb.tools.invoke_tool`. A call of a tool
the agent does not have is answered with the list of its tools; it has no Tool row, so no
ToolInvocation is written for it, only its toolResult message and the ``tool_failures`` metric.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .connections import check_name, default_connection, find_connection
from .errors import NotFoundError, UsageError
from .runtime import Approver
from .store import find_named
from .tools import (
    PERMISSIONS,
    ToolOutcome,
    define_python_tool,
    get_tool,
    invoke_tool,
    is_available,
    registered_name,
    tool_dimensions,
    tool_spec,
)
from .views import visible

if TYPE_CHECKING:
    from .providers.base import ToolCall
    from .runtime import Runtime

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "Agent",
    "define_agent",
    "describe_agent",
    "input_approver",
    "list_agents",
    "load_agent",
]

DEFAULT_MAX_ROUNDS = 8
MAX_ROUNDS_LIMIT = 1000  # a hard limit stays a limit: rounds past this are a mistake


# ---------------------------------------------------------------- defining


def define_agent(
    runtime: Runtime,
    name: str,
    *,
    model: str | None = None,
    tools: list[Any] | None = None,
    permission: str | dict[str, str] | None = None,
    instructions: str | None = None,
    max_rounds: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Create or update the agent `name`, a chat model plus tools, and return its row.

    `model` names its connection (the default connection when None); `tools` are tool names,
    functions (defined as python tools first, unless already registered) or Tool rows;
    `permission` is one stance for every tool or {tool name: stance}; a tool not given one is
    ``automatic``, except an MCP tool, which is ``user-permitted`` unless the user says otherwise.
    """
    check_name("Agent", name)
    connection = find_connection(runtime.store, model) if model else default_connection(runtime.store)
    if connection is None:
        raise UsageError(
            f"Agent {name!r} needs a model: connect one first (%aihub connect OPENAI gpt-4o-mini, or %aihub connect local), "
            "or pass model=CONNECTION."
        )
    rounds = DEFAULT_MAX_ROUNDS if max_rounds is None else max_rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS_LIMIT:
        raise UsageError(f"max_rounds must be a whole number from 1 to {MAX_ROUNDS_LIMIT}, got {max_rounds!r}.")
    rows = _tool_rows(runtime, tools or [])
    stances = _stances(permission, [row["name"] for row in rows], mcp={row["name"] for row in rows if row["type"] == "mcp"})
    store = runtime.store
    fields = dict(
        chatModelId=connection["id"], instructions=instructions or "", maxRounds=rounds, description=description or ""
    )
    with store.transaction() as conn:
        existing = store.first("Agent", name=name)
        agent = store.update("Agent", existing["id"], **fields) if existing else store.create("Agent", name=name, **fields)
        conn.execute('DELETE FROM "AgentToolConnection" WHERE agentId = ?', (agent["id"],))
        store.create_many(
            "AgentToolConnection",
            [{"agentId": agent["id"], "toolId": row["id"], "permission": stances[row["name"]]} for row in rows],
        )
    return agent


def _tool_rows(runtime: Runtime, tools: list[Any]) -> list[dict[str, Any]]:
    """The Tool rows for names, functions or rows, in order, each once."""
    if isinstance(tools, (str, dict)) or callable(tools):
        tools = [tools]
    rows: dict[str, dict[str, Any]] = {}
    for item in tools:
        if isinstance(item, str):
            row = get_tool(runtime, item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            row = get_tool(runtime, item["name"])
        elif callable(item):
            registered = registered_name(runtime, item)
            row = get_tool(runtime, registered) if registered else define_python_tool(runtime, item)
        else:
            raise UsageError(f"An agent's tools are tool names, functions or tool rows, not {type(item).__name__}.")
        rows.setdefault(row["name"], row)
    return list(rows.values())


def _stances(permission: str | dict[str, str] | None, names: list[str], *, mcp: set[str] = frozenset()) -> dict[str, str]:
    """Each tool's permission stance, checked (by default automatic, user-permitted for MCP tools)."""
    if permission is None:
        return {name: "user-permitted" if name in mcp else "automatic" for name in names}
    if isinstance(permission, dict):
        unknown = [n for n in permission if n not in names]
        if unknown:
            listed = ", ".join(names) if names else "none"
            raise UsageError(f"permission names {', '.join(map(repr, unknown))}, not among the agent's tools ({listed}).")
        given = list(permission.values())
        stances = {name: permission.get(name, "user-permitted" if name in mcp else "automatic") for name in names}
    else:
        given = [permission]
        stances = dict.fromkeys(names, permission)
    for stance in given:
        if stance not in PERMISSIONS:
            raise UsageError(f"Unknown permission {stance!r}; valid permissions are: {', '.join(PERMISSIONS)}.")
    return stances


# ---------------------------------------------------------------- reading


def _find_agent(runtime: Runtime, name_or_id: str) -> dict[str, Any]:
    return find_named(
        runtime.store, "Agent", name_or_id, kind="agent", fix=f"create one with hub.agent({name_or_id!r}, tools=[...])", by_id=True
    )


def remove_agent(runtime: Runtime, name: str) -> None:
    """Delete an agent and its tool connections; chats with it keep their history."""
    row = _find_agent(runtime, name)
    with runtime.store.transaction() as conn:
        conn.execute('DELETE FROM "AgentToolConnection" WHERE agentId = ?', (row["id"],))
        conn.execute('DELETE FROM "Agent" WHERE id = ?', (row["id"],))


def _connected_tools(runtime: Runtime, agent_id: str) -> list[tuple[dict[str, Any], str]]:
    """(Tool row, permission) for each of the agent's tools that still exists, in order."""
    out = []
    for link in runtime.store.find("AgentToolConnection", agentId=agent_id):
        tool = runtime.store.first("Tool", id=link["toolId"])
        if tool is not None:
            out.append((tool, link["permission"]))
    return out


def _connection_name(runtime: Runtime, connection_id: str) -> str | None:
    row = runtime.store.first("ModelConnections", id=connection_id)
    return row["name"] if row else None


def list_agents(runtime: Runtime) -> list[dict[str, Any]]:
    """Every agent: name, model (connection name), tools, maxRounds, description, id."""
    return [
        {
            "name": row["name"],
            "model": _connection_name(runtime, row["chatModelId"]) or "(removed)",
            "tools": ", ".join(tool["name"] for tool, _ in _connected_tools(runtime, row["id"])),
            "maxRounds": row["maxRounds"],
            "description": row["description"],
            "id": row["id"],
        }
        for row in runtime.store.find("Agent")
    ]


def describe_agent(runtime: Runtime, name: str) -> dict[str, Any]:
    """An agent with its model, instructions and tools (name, type, permission, available)."""
    row = _find_agent(runtime, name)
    connection = runtime.store.first("ModelConnections", id=row["chatModelId"])
    return {
        "name": row["name"],
        "description": row["description"],
        "model": connection["name"] if connection else "(removed)",
        "provider": connection["provider"] if connection else None,
        "modelId": connection["modelId"] if connection else None,
        "instructions": row["instructions"],
        "maxRounds": row["maxRounds"],
        "tools": [
            {
                "name": tool["name"],
                "type": tool["type"],
                "permission": stance,
                "available": is_available(runtime, tool),
                "description": tool["description"],
            }
            for tool, stance in _connected_tools(runtime, row["id"])
        ],
        "id": row["id"],
    }


def load_agent(runtime: Runtime, name_or_id: str, *, approve: Approver | None = None) -> Agent:
    """The agent as a chat turn uses it; `approve` decides on its user-permitted tools."""
    row = _find_agent(runtime, name_or_id)
    if _connection_name(runtime, row["chatModelId"]) is None:
        raise NotFoundError(
            f"Agent {row['name']!r} uses a connection that was removed; re-define it with hub.agent({row['name']!r}, model=CONNECTION, ...)."
        )
    return Agent(runtime, row, _connected_tools(runtime, row["id"]), approve=approve)


# ---------------------------------------------------------------- the turn loop's view


class Agent:
    """An agent loaded for one turn: the ToolBox that chat.py's turn loop calls."""

    def __init__(
        self, runtime: Runtime, row: dict[str, Any], tools: list[tuple[dict[str, Any], str]], *, approve: Approver | None = None
    ) -> None:
        self.runtime = runtime
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.model_id: str = row["chatModelId"]  # the ModelConnections id
        self.instructions: str = row["instructions"] or ""
        self.max_rounds: int = row["maxRounds"] or DEFAULT_MAX_ROUNDS
        self.tools = {tool["name"]: (tool, stance) for tool, stance in tools}
        self.approve = approve

    def specs(self) -> list[dict[str, Any]]:
        """The tools offered to the model: those available in this session, in OpenAI's format."""
        return [tool_spec(tool) for tool, _ in self.tools.values() if is_available(self.runtime, tool)]

    def run(self, call: ToolCall, *, job_id: str, thread_id: str) -> ToolOutcome:
        """Run one tool call the model asked for; a failure comes back as the outcome's content."""
        references = {"job": job_id, "thread": thread_id, "agent": self.id}
        found = self.tools.get(call.name)
        if found is None:
            return self._unknown_tool(call.name, references)
        tool, stance = found
        return invoke_tool(
            self.runtime, tool, call.arguments, permission=stance, approve=self.approve, call_id=call.id,
            references=references, agent=self.name,
        )

    def _unknown_tool(self, name: str, references: dict[str, str]) -> ToolOutcome:
        offered = [spec["function"]["name"] for spec in self.specs()]
        tools = f"its tools are: {', '.join(offered)}" if offered else "it has no tools"
        content = f"There is no tool {name!r} for agent {self.name!r}; {tools}. Use one of those, or answer without it."
        self.runtime.metrics.record({"tool_failures": 1.0}, tool_dimensions(name, self.name, "failed"), references=references)
        return ToolOutcome(content, "failed")

    def __repr__(self) -> str:
        return f"<Agent {self.name!r}: {len(self.tools)} tools, max {self.max_rounds} rounds>"


# ---------------------------------------------------------------- asking the user


def input_approver(tool_name: str, arguments: dict[str, Any]) -> bool:
    """Ask at the prompt whether a user-permitted tool may run; "y" or "yes" allows it.

    The tool's name and arguments come from the model: they are shown with nothing hidden
    (control, bidi and zero-width characters as escapes, padding counted, long values cut).
    Where nothing can be typed (a kernel without stdin, a closed stdin), says so and denies."""
    name = visible(tool_name, 80)
    shown = visible(json.dumps(arguments, ensure_ascii=False, default=str), 500)
    question = f"Allow tool '{name}' to run with {shown}? [y/N] "
    try:
        answer = input(question)
    except _no_stdin_errors():
        print(f"Tool '{name}' needs your permission, but this session cannot ask for input; it was denied.")
        return False
    return answer.strip().lower() in ("y", "yes")


def _no_stdin_errors() -> tuple[type[BaseException], ...]:
    try:
        from IPython.core.error import StdinNotImplementedError
    except ImportError:
        return (EOFError,)
    return (EOFError, StdinNotImplementedError)
