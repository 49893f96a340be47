"""The %aihub line magic and %%aihub cell magic: parse, call the Hub, display. Nothing else.

    %load_ext aihub_nb
    %aihub connect OPENAI gpt-4o-mini
    %%aihub chat ideas
    Three names for a cat?

Arguments are parsed like a shell (shlex + argparse). A user's mistake (bad arguments, an unknown
chat, a missing key, a provider refusing) is shown as one line, without a traceback; anything
unexpected keeps its traceback. `%aihub help` lists the subcommands.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Unicode

from .display import html_table
from .errors import AihubError
from .redact import redact
from .views import (
    Shown, chat_view, code_view, reply_view, snapshot_view, source_names, target_label, text_view, tool_event_view,
    turn_footer,
)

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["AihubMagics", "default_hub", "load_ipython_extension", "unload_ipython_extension", "use_hub"]

_DEFAULT_HUB: Hub | None = None  # the hub the magics opened, or the one use_hub() pinned
_PINNED = False


def default_hub() -> Hub:
    """The notebook's hub ($AIHUB_HOME, else ~/.aihub, or `%config AihubMagics.home`): the Hub
    most recently opened on that file in this process (so `hub = Hub()` in the notebook is the
    one %aihub and @aihub_nb.tool use from then on), else one opened now."""
    global _DEFAULT_HUB
    if _PINNED and _DEFAULT_HUB is not None:
        return _DEFAULT_HUB
    from .hub import Hub, open_hub

    home = _MAGICS.home or None if _MAGICS is not None else None
    hub = open_hub(home)
    if hub is None:
        hub = Hub(home)
    _DEFAULT_HUB = hub
    return hub


def use_hub(hub: Hub | None) -> None:
    """Point the magics (and `aihub_nb.tool`) at this hub; None goes back to the default one."""
    global _DEFAULT_HUB, _PINNED
    _DEFAULT_HUB, _PINNED = hub, hub is not None


def _one_line(text: str) -> str:
    """Text with control characters (a newline in an argument, a NUL) shown as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line usage error instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise IPythonUsageError(f"{_one_line(message)}. Usage: {self._one_line_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise IPythonUsageError(" ".join((message or self._one_line_usage()).split()))

    def _one_line_usage(self) -> str:
        return " ".join(self.format_usage().split()).removeprefix("usage: ")


def _parser(prog: str, description: str = "") -> _Parser:
    return _Parser(prog=prog, description=description, add_help=False, allow_abbrev=False)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise IPythonUsageError(f"Cannot read the arguments ({exc}); close your quotes.") from None


_INTERPOLATION = re.compile(r"(?<!\{)\{([A-Za-z_]\w*(?:\.\w+|\[[^\]\n{}]+\])*)\}(?!\})")
_FIELD_PART = re.compile(r"\.(\w+)|\[([^\]]+)\]")


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """Fill `{name}`, `{obj.attr}`, `{d[key]}` and `{items[0]}` from the namespace, the way
    `str.format` looks up a field: names, attributes and constant indexes only, nothing is
    evaluated. `{{`/`}}` are literal braces; a name or item not found is left as written; an
    attribute starting with `_` is refused."""

    def fill(match: re.Match) -> str:
        expression = match.group(1)
        root = re.match(r"\w+", expression).group(0)
        if root not in namespace:
            return match.group(0)
        value = namespace[root]
        for attr, key in _FIELD_PART.findall(expression[len(root):]):
            if attr:
                if attr.startswith("_"):
                    raise IPythonUsageError(
                        f"Cannot fill {{{expression}}}: attributes starting with _ are not filled; "
                        "write {{ for a literal brace or use --no-interpolate."
                    )
                try:
                    value = getattr(value, attr)
                except Exception:
                    return match.group(0)
            else:
                try:
                    value = value[int(key) if key.isdigit() else key]
                except Exception:
                    return match.group(0)
        try:
            return str(value)
        except Exception:
            return match.group(0)

    return _INTERPOLATION.sub(fill, text).replace("{{", "{").replace("}}", "}")


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None, empty: str = "Nothing yet.") -> Any:
    from IPython.display import HTML

    return HTML(html_table(rows, columns, empty=empty))


class _TurnView:
    """Shows a turn in the cell as it happens: the reply (sanitised HTML, aihub_nb.views) updated
    in place, and one collapsible block per tool call."""

    def __init__(self, refresh: float) -> None:
        self.refresh = refresh
        self.wait = refresh
        self.parts: list[str] = []
        self.handle = None
        self.last = 0.0
        self.tools: dict[str, Any] = {}

    def event(self, event) -> None:
        from IPython.display import display

        if event.kind == "text":
            self.parts.append(event.text)
            if self.handle is None:
                self.handle = display(_reply(""), display_id=True)
            now = time.monotonic()
            if now - self.last >= self.wait:
                self.handle.update(_reply("".join(self.parts)))
                # a long reply costs more to render: repaint less often, so rendering stays ~10% of the time
                self.last = time.monotonic()
                self.wait = max(self.refresh, 9 * (self.last - now))
        elif event.kind == "tool_call":
            self.flush()
            self.handle, self.parts = None, []
            self.tools[event.data["id"]] = display(tool_event_view(event.data, "running"), display_id=True)
        elif event.kind == "tool_result":
            handle = self.tools.get(event.data["id"])
            if handle is not None:
                handle.update(tool_event_view(event.data))
        elif event.kind == "retry":
            display(text_view(f"retrying in {event.data['wait']:.1f}s: {event.text}"))

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.update(_reply("".join(self.parts)))


def _reply(text: str) -> Shown:
    return reply_view(text) if text else Shown("<p>…</p>", "…")


def _limit_arguments(p: argparse.ArgumentParser) -> None:
    """A connection's timeouts and reply limit; checked by the hub, which says what is wrong."""
    p.add_argument("--timeout", metavar="SECONDS", help="the whole answer of one request (default 600)")
    p.add_argument("--connect-timeout", metavar="SECONDS", help="opening the connection (default 5)")
    p.add_argument("--read-timeout", metavar="SECONDS", help="between two pieces of the answer (default 60)")
    p.add_argument("--max-tokens", metavar="N", help="reply limit when a turn sets none")


@magics_class
class AihubMagics(Magics):
    """%aihub and %%aihub. Configure with e.g. `%config AihubMagics.interpolate = False`."""

    home = Unicode(None, allow_none=True, help="Hub folder; default $AIHUB_HOME, else ~/.aihub.").tag(config=True)
    interpolate = Bool(True, help="Fill {name} in chat cells from the notebook's variables.").tag(config=True)
    refresh_interval = Float(0.05, help="Seconds between updates of a streaming reply.").tag(config=True)
    show_footer = Bool(True, help="Show model, tokens and time under each reply.").tag(config=True)

    def __init__(self, shell=None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._line_commands = {
            "help": self._help,
            "connect": self._connect,
            "connections": self._connections,
            "connection": self._connection,
            "models": self._models,
            "chat": self._show_chat,
            "chats": self._chats,
            "render": self._render,
            "tools": self._tools,
            "tool": self._tool,
            "agent": self._agent,
            "agents": self._agents,
            "metrics": self._metrics,
            "calls": self._calls,
            "jobs": self._jobs,
            "prune": self._prune,
            "price": self._price,
            "prices": self._prices,
            "dashboard": self._dashboard,
            "hub": self._hub_panel,
            "panel": self._chat_panel,
        }

    @property
    def hub(self) -> Hub:
        return default_hub()

    # ------------------------------------------------------------ dispatch

    @line_magic("aihub")
    def aihub_line(self, line: str) -> Any:
        return self._run(line, None)

    @cell_magic("aihub")
    def aihub_cell(self, line: str, cell: str) -> Any:
        return self._run(line, cell)

    def _run(self, line: str, cell: str | None) -> Any:
        args = _split(line)
        if not args:
            raise IPythonUsageError("Say what to do: %aihub help lists the subcommands.")
        command, rest = args[0], args[1:]
        try:
            if cell is not None:
                if command != "chat":
                    raise IPythonUsageError(
                        f"%%aihub {command} is not a cell magic; the cell magic is %%aihub chat NAME [--model CONNECTION]."
                    )
                return self._chat_cell(rest, cell)
            handler = self._line_commands.get(command)
            if handler is None:
                raise IPythonUsageError(
                    f"Unknown subcommand {command!r}; valid ones are: {', '.join(sorted(self._line_commands))}."
                )
            return handler(rest)
        except AihubError as exc:
            raise IPythonUsageError(_one_line(redact(str(exc)))) from None

    def _help(self, args: list[str]) -> Any:
        from IPython.display import Markdown

        return Markdown(_HELP)

    # ------------------------------------------------------------ connections

    def _connect(self, args: list[str]) -> Any:
        p = _parser("%aihub connect", "Connect a model.")
        p.add_argument("provider", help="OPENAI, OLLAMA, local or auto")
        p.add_argument("model_id", nargs="?")
        p.add_argument("--name")
        p.add_argument("--base-url")
        p.add_argument("--host")
        p.add_argument("--api-key-env")
        p.add_argument("--description", default="")
        p.add_argument("--default", action="store_true")
        _limit_arguments(p)
        ns = p.parse_args(args)
        kind = ns.provider.lower()
        if kind == "auto":
            row = self.hub.autoconnect()
        elif kind == "local":
            row = self.hub.connect_local(ns.model_id or "local-chat", name=ns.name or "local")
        else:
            if not ns.model_id:
                p.error("the following arguments are required: model_id")
            row = self.hub.connect(
                ns.provider, ns.model_id, name=ns.name, base_url=ns.base_url, host=ns.host,
                api_key_env=ns.api_key_env, description=ns.description, default=True if ns.default else None,
                timeout=ns.timeout, connect_timeout=ns.connect_timeout, read_timeout=ns.read_timeout,
                max_tokens=ns.max_tokens,
            )
        return _table([row], ["name", "provider", "modelId", "endpoint", "api key"])

    def _connections(self, args: list[str]) -> Any:
        _parser("%aihub connections").parse_args(args)
        return _table(
            self.hub.connections(), ["name", "provider", "modelId", "type", "endpoint", "api key", "default"],
            empty="No connections yet: %aihub connect OPENAI gpt-4o-mini, %aihub connect OLLAMA llama3.2 or %aihub connect local.",
        )

    def _connection(self, args: list[str]) -> Any:
        p = _parser("%aihub connection", "Edit, remove or make default a connection.")
        p.add_argument("action", choices=["edit", "remove", "default", "show"])
        p.add_argument("name")
        p.add_argument("--model-id")
        p.add_argument("--new-name")
        p.add_argument("--base-url")
        p.add_argument("--host")
        p.add_argument("--api-key-env")
        p.add_argument("--description")
        _limit_arguments(p)
        ns = p.parse_args(args)
        if ns.action == "remove":
            self.hub.remove_connection(ns.name)
            return _table(self.hub.connections(), ["name", "provider", "modelId", "endpoint", "default"], empty="No connections left.")
        if ns.action == "default":
            self.hub.set_default_connection(ns.name)
            return _table(self.hub.connections(), ["name", "provider", "modelId", "endpoint", "default"])
        if ns.action == "show":
            from .connections import public_view

            return _table([public_view(self.hub.connection(ns.name))])
        changes = {k: v for k, v in vars(ns).items() if k not in ("action", "name") and v is not None}
        if not changes:
            p.error("say what to change, e.g. --model-id gpt-4o")
        return _table([self.hub.edit_connection(ns.name, **changes)], ["name", "provider", "modelId", "endpoint", "api key"])

    def _models(self, args: list[str]) -> Any:
        p = _parser("%aihub models")
        p.add_argument("connection")
        ns = p.parse_args(args)
        models = self.hub.models(ns.connection)
        rows = [{"id": m.get("id"), **{k: v for k, v in m.items() if k not in ("id", "details")}} for m in models]
        return _table(rows, empty="The endpoint offers no models.")

    # ------------------------------------------------------------ chats

    def _chat_cell(self, args: list[str], cell: str) -> None:
        from IPython.display import display

        p = _parser("%%aihub chat", "Send the cell to a chat and stream the reply.")
        p.add_argument("name")
        p.add_argument("--model")
        p.add_argument("--agent")
        p.add_argument("--system")
        p.add_argument("--no-interpolate", action="store_true")
        p.add_argument("--temperature", type=float)
        p.add_argument("--max-tokens", type=int)
        p.add_argument("--seed", type=int)
        p.add_argument("--no-stream", action="store_true", help="ask for the whole reply at once")
        ns = p.parse_args(args)
        options = {k: v for k, v in (("temperature", ns.temperature), ("max_tokens", ns.max_tokens), ("seed", ns.seed)) if v is not None}
        text = cell.strip("\n")
        if self.interpolate and not ns.no_interpolate:
            text = interpolate(text, self.shell.user_ns if self.shell else {})
        chat = self.hub.chat(ns.name, model=ns.model, agent=ns.agent, system=ns.system)
        view = _TurnView(self.refresh_interval)
        from .agents import input_approver

        from .chat import drive

        turn = chat.turn(text, options=options, approve=self.hub.approver or input_approver, stream=not ns.no_stream)
        try:
            reply = drive(turn, view.event)
        except KeyboardInterrupt:  # drive() closed the turn: recorded as interrupted, chat released
            view.flush()
            raise IPythonUsageError(
                f"Interrupted: chat {ns.name!r} keeps the partial reply ({len(''.join(view.parts))} characters), marked interrupted."
            ) from None
        except AihubError:
            view.flush()
            raise
        view.flush()
        if view.handle is None and not view.tools:
            display(_reply(reply.text))
        if self.show_footer:
            agent = chat.type == "agent"
            row = self.hub.store.first("Agent" if agent else "ModelConnections", id=chat._row["sourceId"])
            display(turn_footer(reply, target_label(row, agent=agent)))

    def _show_chat(self, args: list[str]) -> Any:
        p = _parser("%aihub chat", "Show a chat's conversation (to send, use the cell magic %%aihub chat NAME).")
        p.add_argument("name")
        p.add_argument("--delete", action="store_true", help="delete the chat and its messages")
        p.add_argument("--unlock", action="store_true", help="free a chat left busy by a kernel that died")
        ns = p.parse_args(args)
        if ns.unlock:
            from IPython.display import Markdown

            job = self.hub.unlock(ns.name)
            if job is None:
                return Markdown(f"Chat `{ns.name}` was not locked.")
            return Markdown(f"Chat `{ns.name}` unlocked; job `{job}` that held it is marked failed.")
        if ns.delete:
            self.hub.delete_chat(ns.name)
            return self._chats([])
        chat = self.hub.get_chat(ns.name)
        return chat_view(chat.name, chat.messages(), source_names(self.hub.store))

    def _chats(self, args: list[str]) -> Any:
        _parser("%aihub chats").parse_args(args)
        return _table(self.hub.chats(), ["name", "type", "with", "messages", "lastMessageAt"], empty="No chats yet: start one with %%aihub chat NAME.")

    def _render(self, args: list[str]) -> Any:
        p = _parser("%aihub render", "Store a snapshot of a chat's thread and show it.")
        p.add_argument("name")
        ns = p.parse_args(args)
        return snapshot_view(ns.name, self.hub.render(ns.name))

    # ------------------------------------------------------------ tools and agents

    def _tools(self, args: list[str]) -> Any:
        _parser("%aihub tools").parse_args(args)
        return _table(self.hub.tools(), ["name", "type", "description", "available"], empty="No tools yet: decorate a function with @hub.tool.")

    def _tool(self, args: list[str]) -> Any:
        p = _parser("%aihub tool", "Show or remove a tool.")
        p.add_argument("action", choices=["show", "remove"])
        p.add_argument("name")
        ns = p.parse_args(args)
        if ns.action == "remove":
            self.hub.remove_tool(ns.name)
            return self._tools([])
        from .tools import get_tool

        row = get_tool(self.hub, ns.name)
        info = {k: v for k, v in row.items() if k in ("name", "type", "description", "schema")}
        source = (row.get("data") or {}).get("source")
        if source:
            from IPython.display import display

            display(_table([info]))
            return code_view(source)
        return _table([info])

    def _agents(self, args: list[str]) -> Any:
        _parser("%aihub agents").parse_args(args)
        rows = self.hub.agents()
        return _table(
            rows, ["name", "model", "tools", "maxRounds", "description"],
            empty="No agents yet: %aihub agent create NAME --model CONNECTION --tools a,b.",
        )

    def _agent(self, args: list[str]) -> Any:
        p = _parser("%aihub agent", "Create, show or remove an agent.")
        p.add_argument("action", choices=["create", "show", "remove"])
        p.add_argument("name")
        p.add_argument("--model")
        p.add_argument("--tools", default="")
        p.add_argument("--permission", default="automatic", help="automatic, user-permitted, or TOOL=STANCE,...")
        p.add_argument("--instructions")
        p.add_argument("--max-rounds", type=int)
        ns = p.parse_args(args)
        if ns.action == "remove":
            self.hub.remove_agent(ns.name)
            return self._agents([])
        if ns.action == "create":
            tools = [t.strip() for t in ns.tools.split(",") if t.strip()]
            permission: str | dict[str, str] = ns.permission
            if "=" in ns.permission:  # per tool: add=automatic,search=user-permitted
                pairs = [item.split("=", 1) for item in ns.permission.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    p.error("--permission takes one stance, or TOOL=STANCE pairs separated by commas")
                permission = {tool.strip(): stance.strip() for tool, stance in pairs}
            self.hub.agent(
                ns.name, model=ns.model, tools=tools, permission=permission,
                instructions=ns.instructions, max_rounds=ns.max_rounds,
            )
        info = self.hub.describe_agent(ns.name)
        from IPython.display import display

        summary = {k: v for k, v in info.items() if k not in ("tools", "id")}
        display(_table([summary]))
        return _table(info.get("tools", []), empty="This agent has no tools.")

    # ------------------------------------------------------------ monitoring

    def _frame_command(self, prog: str, args: list[str], loader, *, name_arg: bool = False) -> Any:
        p = _parser(prog)
        if name_arg:
            p.add_argument("name", nargs="?")
        p.add_argument("--since")
        p.add_argument("--until")
        p.add_argument("--status")
        p.add_argument("-o", "--output", metavar="VAR", help="keep the DataFrame in this variable")
        ns = p.parse_args(args)
        kwargs = {k: v for k, v in (("since", ns.since), ("until", ns.until)) if v}
        if ns.status:
            kwargs["status"] = ns.status
        if name_arg and ns.name:
            kwargs["name"] = ns.name
        try:
            frame = loader(**kwargs)
        except TypeError as exc:
            raise IPythonUsageError(f"{prog}: {exc}") from None
        if ns.output:
            if not ns.output.isidentifier() or keyword.iskeyword(ns.output) or ns.output.startswith("__"):
                p.error(f"-o takes a variable name, not {ns.output!r}")
            self.shell.user_ns[ns.output] = frame
        return frame

    def _metrics(self, args: list[str]) -> Any:
        return self._frame_command("%aihub metrics", args, self.hub.metrics, name_arg=True)

    def _calls(self, args: list[str]) -> Any:
        return self._frame_command("%aihub calls", args, self.hub.network_calls)

    def _jobs(self, args: list[str]) -> Any:
        return self._frame_command("%aihub jobs", args, self.hub.jobs)

    def _prune(self, args: list[str]) -> Any:
        p = _parser("%aihub prune", "Drop the raw payloads of old network calls and streams; keep messages and metrics.")
        p.add_argument("--older-than", required=True, metavar="AGE", help="a span like 30d, 2w, 12h, or an ISO time")
        ns = p.parse_args(args)
        return self.hub.prune(older_than=ns.older_than)

    def _price(self, args: list[str]) -> Any:
        p = _parser("%aihub price", "Set the price of a model, in USD per million tokens.")
        p.add_argument("action", choices=["set", "remove"])
        p.add_argument("model")
        p.add_argument("input_per_million", type=float, nargs="?")
        p.add_argument("output_per_million", type=float, nargs="?")
        p.add_argument("--provider", default="")
        ns = p.parse_args(args)
        if ns.action == "set":
            if ns.input_per_million is None or ns.output_per_million is None:
                p.error("give both prices: %aihub price set MODEL INPUT_PER_MILLION OUTPUT_PER_MILLION")
            self.hub.set_price(ns.model, ns.input_per_million, ns.output_per_million, provider=ns.provider)
        else:
            self.hub.remove_price(ns.model, provider=ns.provider)
        return self._prices([])

    def _prices(self, args: list[str]) -> Any:
        _parser("%aihub prices").parse_args(args)
        rows = self.hub.prices().to_dict("records")
        return _table(
            rows, ["model", "provider", "inputPerMillion", "outputPerMillion", "currency", "updatedAt"],
            empty="No prices yet: %aihub price set MODEL INPUT_PER_MILLION OUTPUT_PER_MILLION (USD per million tokens).",
        )

    def _dashboard(self, args: list[str]) -> Any:
        _parser("%aihub dashboard").parse_args(args)
        return self.hub.dashboard()

    def _chat_panel(self, args: list[str]) -> Any:
        p = _parser("%aihub panel", "A panel to talk to a chat (pick or type one when NAME is left out).")
        p.add_argument("name", nargs="?")
        ns = p.parse_args(args)
        return self.hub.chat_panel(ns.name)

    def _hub_panel(self, args: list[str]) -> Any:
        _parser("%aihub hub").parse_args(args)
        return self.hub.panel()


_HELP = r"""
**aihub** — subcommands (`%aihub SUBCOMMAND ...`):

| | |
|---|---|
| `%%aihub chat NAME [--model CONNECTION \| --agent AGENT] [--system TEXT] [--no-interpolate] [--temperature T] [--max-tokens N] [--seed N] [--no-stream]` | send the cell, stream the reply |
| `connect PROVIDER MODEL_ID [--name N] [--base-url URL] [--host URL] [--api-key-env VAR] [--default] [--timeout S] [--connect-timeout S] [--read-timeout S] [--max-tokens N]` | connect a model (OPENAI or OLLAMA); timeouts in seconds: whole answer, connecting, between pieces |
| `connect local [MODEL]` / `connect auto` | the built-in local server / the best one this machine has |
| `connections` · `connection show\|edit\|remove\|default NAME` · `models CONNECTION` | manage connections |
| `chat NAME [--delete \| --unlock]` · `chats` · `render NAME` | show (delete, or unlock) a conversation, list chats, store a snapshot |
| `tools` · `tool show\|remove NAME` · `agents` · `agent create NAME --model C --tools a,b [--permission P or TOOL=P,...] [--instructions T]` · `agent show\|remove NAME` | tools and agents |
| `metrics [NAME] [--since 1h] [-o VAR]` · `calls` · `jobs` | monitoring as DataFrames |
| `prune --older-than 30d` | drop old calls' raw payloads (messages and metrics stay), reclaim the space |
| `price set MODEL IN OUT [--provider P]` · `prices` | the price table (USD per million tokens) |
| `dashboard` · `hub` · `panel [NAME]` | panels: monitoring, the whole hub, a chat |
"""

_MAGICS: AihubMagics | None = None


def load_ipython_extension(ipython) -> None:
    global _MAGICS
    _MAGICS = AihubMagics(shell=ipython, config=ipython.config)
    ipython.register_magics(_MAGICS)


def unload_ipython_extension(ipython) -> None:
    global _MAGICS
    if _MAGICS is not None:
        ipython.magics_manager.magics["line"].pop("aihub", None)
        ipython.magics_manager.magics["cell"].pop("aihub", None)
        _MAGICS = None
