"""The %aihub line magic and %%aihub cell magic: parse, call the Hub, display. Nothing else.

    %load_ext aihub_nb
    %aihub connect OPENAI gpt-4o-mini
    %%aihub chat ideas
    Three names for a cat?

Arguments are split like a shell (shlex) and parsed by IPython's `MagicArgumentParser`; subcommands
route through one table to small functions, each with its parser, from which `%aihub help` (and
`%aihub help SUBCOMMAND`, `%aihub SUBCOMMAND -h`) is generated. A user's mistake (bad arguments, an
unknown chat, a missing key, a provider refusing) is shown as one line, without a traceback; a store
or schema error (a bug, corrupt data) and anything unexpected keep their traceback.
"""

from __future__ import annotations

import html
import keyword
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments
from traitlets import Bool, Float, Unicode

from .current import current_hub, home_from, use_hub
from .display import html_table, text_table
from .errors import AihubError, UsageError
from .media import MediaStore, message_images
from .redact import redact
from .views import (
    Shown, chat_view, code_view, reply_view, snapshot_view, source_names, text_view, tool_event_view,
    turn_footer,
)

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["AihubMagics", "default_hub", "load_ipython_extension", "unload_ipython_extension", "use_hub"]

def default_hub() -> Hub:
    """The notebook's hub ($AIHUB_HOME, else ~/.aihub, or `%config AihubMagics.home`): the Hub
    most recently opened on that file in this process (so `hub = Hub()` in the notebook is the
    one %aihub and @aihub_nb.tool use from then on), else one opened now."""
    return current_hub()


def _configured_home() -> str | None:
    return (_MAGICS.home or None) if _MAGICS is not None else None


home_from(_configured_home)


def _per_image_option(text: str) -> float | dict[str, float]:
    """--per-image: one number, or SIZE=PRICE pairs (keys: a size, a quality, "quality size", *)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    table: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            table[key.strip()] = float(value)
        except ValueError:
            raise UsageError(
                f"--per-image takes a price (0.04) or SIZE=PRICE pairs (1024x1024=0.04,hd 1024x1024=0.08), not {text!r}."
            ) from None
    return table


def _one_line(text: str) -> str:
    """Text with control characters (a newline in an argument, a NUL) shown as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _as_one_line(exc: BaseException, line: str) -> BaseException:
    """`exc`, shown by IPython (terminal and kernel) as one line under its own name, e.g.
    `ProviderUnreachableError: Cannot reach ...`, without a traceback: IPython prints what an
    exception's `_render_traceback_` returns in place of the traceback."""
    shown = [f"{type(exc).__name__}: {line}"]
    exc._render_traceback_ = lambda: shown  # type: ignore[attr-defined]
    return exc


def _split(line: str) -> list[str]:
    # shell-like, quotes removed (IPython's own arg_split keeps them on POSIX)
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise IPythonUsageError(f"Cannot read the arguments ({exc}); close your quotes.") from None


def _subcommand(name: str):
    """The parser of a subcommand, built by IPython's `magic_arguments` from the `argument`
    decorators below it and the function's docstring (its description). `name` is the magic as
    typed without its %: `aihub connect` (a line magic), `%aihub chat` (the cell magic)."""

    def build(func):
        func = magic_arguments(name)(func)
        func.parser.allow_abbrev = False
        return func

    return build


def _arguments(*decorators):
    """Several `argument` decorators as one, to share them between subcommands."""

    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def _usage(parser: MagicArgumentParser) -> str:
    """`%aihub connect PROVIDER [MODEL_ID] [--name NAME] ...`: positionals first, on one line."""
    words = ["%" + parser.prog]
    for action in parser._actions:
        if not action.option_strings:
            word = "|".join(action.choices) if action.choices else (action.metavar or action.dest).upper()
            words.append(f"[{word}]" if action.nargs == "?" else word)
    for action in parser._actions:
        if action.option_strings:
            flag = action.option_strings[0]
            words.append(f"[{flag}]" if action.nargs == 0 else f"[{flag} {action.metavar or action.dest.upper()}]")
    return " ".join(words)


def _parse(parser: MagicArgumentParser, args: list[str]) -> Any:
    """The parsed arguments; a mistake is one line ending with the usage. (MagicArgumentParser
    raises IPython's UsageError instead of exiting; it has no -h: the router shows help instead.)"""
    try:
        return parser.parse_args(args)
    except IPythonUsageError as exc:
        raise _usage_error(parser, str(exc)) from None


def _usage_error(parser: MagicArgumentParser, message: str) -> IPythonUsageError:
    return IPythonUsageError(f"{_one_line(message)}. Usage: {_usage(parser)}")


def _summary(parser: MagicArgumentParser) -> str:
    return " ".join((parser.description or "").strip().split("\n\n")[0].split())


def _flag(action) -> str:
    return action.option_strings[-1] if action.option_strings else (action.metavar or action.dest).upper()


class _Help:
    """`%aihub help [SUBCOMMAND]`, generated from the subcommands' parsers: Markdown and plain text."""

    def __init__(self, parsers: list[MagicArgumentParser], *, detailed: bool = False) -> None:
        rows, lines = [], []
        for parser in parsers:
            usage = _usage(parser).removeprefix("%aihub ")
            cell = usage.replace("|", r"\|")  # a pipe inside a table cell
            rows.append(f"| `{cell}` | {_summary(parser)} |")
            lines.append(f"  {usage}\n      {_summary(parser)}")
            if detailed:
                shown = [a for a in parser._actions if a.help]
                rows += [f"| &nbsp;&nbsp;`{_flag(a)}` | {a.help} |" for a in shown]
                lines += [f"      {_flag(a)}: {a.help}" for a in shown]
        self.data = (
            "**aihub** — `%aihub SUBCOMMAND ...` (`%aihub help SUBCOMMAND` explains its arguments):\n\n"
            "| | |\n|---|---|\n" + "\n".join(rows) + "\n"
        )
        self.text = "aihub: %aihub SUBCOMMAND ... (%aihub help SUBCOMMAND explains its arguments)\n" + "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/markdown": self.data, "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


_INTERPOLATION = re.compile(r"(?<!\{)\{([A-Za-z_]\w*(?:\.\w+|\[[^\]\n{}]+\])*)\}(?!\})")
_FIELD_PART = re.compile(r"\.(\w+)|\[([^\]]+)\]")


def _is_image(value: Any) -> bool:
    """A matplotlib Figure, a PIL image or an IPython.display.Image: attached, not printed."""
    kind = type(value)
    return (
        (hasattr(value, "savefig") and kind.__module__.startswith("matplotlib"))
        or (kind.__module__.startswith("PIL.") and hasattr(value, "save"))
        or (kind.__name__ == "Image" and kind.__module__.startswith("IPython"))
    )


def interpolate(text: str, namespace: dict[str, Any], images: list[Any] | None = None) -> str:
    """Fill `{name}`, `{obj.attr}`, `{d[key]}` and `{items[0]}` from the namespace, the way
    `str.format` looks up a field: names, attributes and constant indexes only, nothing is
    evaluated. `{{`/`}}` are literal braces; a name or item not found is left as written; an
    attribute starting with `_` is refused. With `images` (a list), a field whose value is a figure
    or an image is appended to it and written as `[image N]`."""

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
        if images is not None and _is_image(value):
            images.append(value)
            return f"[image {len(images)}]"
        try:
            return str(value)
        except Exception:
            return match.group(0)

    return _INTERPOLATION.sub(fill, text).replace("{{", "{").replace("}}", "}")


def _pair(parser: Any, item: str, form: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise _usage_error(parser, f"{item!r} is not of the form {form}")
    return key.strip(), value.strip()


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None, empty: str = "Nothing yet.") -> Shown:
    """Rows as an HTML table for a notebook and aligned text for a terminal."""
    return Shown(html_table(rows, columns, empty=empty), text_table(rows, columns, empty=empty))


def _line(text: str) -> Shown:
    """One line of our own, escaped, for a notebook and a terminal alike."""
    return Shown(f"<p>{html.escape(text)}</p>", text)


class _TurnView:
    """Shows a turn in the cell as it happens: the reply (sanitised HTML, aihub_nb.views) updated
    in place, and one collapsible block per tool call."""

    def __init__(self, refresh: float, shell: Any = None) -> None:
        from IPython.core.displaypub import DisplayPublisher

        # A terminal (IPython's own publisher prints text/plain and cannot update a display in
        # place): the reply is written as it arrives instead of reprinted at each update.
        self.terminal = shell is not None and type(shell.display_pub) is DisplayPublisher
        self.refresh = refresh
        self.wait = refresh
        self.parts: list[str] = []
        self.handle = None
        self.last = 0.0
        self.tools: dict[str, Any] = {}
        self.last_call: dict[str, Any] | None = None
        self.open_line = False  # terminal: a streamed line not ended yet

    def event(self, event) -> None:
        from IPython.display import display

        if self.terminal and event.kind == "text":
            import sys

            self.parts.append(event.text)
            self.open_line = True
            sys.stdout.write(event.text)
            sys.stdout.flush()
            return
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
            self.last_call = event.data
            self.tools[event.data["id"]] = display(tool_event_view(event.data, "running"), display_id=True)
        elif event.kind == "tool_result":
            handle = self.tools.get(event.data["id"])
            if handle is not None:
                handle.update(tool_event_view(event.data))
        elif event.kind == "retry":
            display(text_view(f"retrying in {event.data['wait']:.1f}s: {event.text}"))

    def flush(self) -> None:
        if self.terminal:
            if self.open_line:
                print()
                self.open_line = False
            return
        if self.handle is not None:
            self.handle.update(_reply("".join(self.parts)))

    def asking(self, approve):
        """`approve`, showing the tool call it decides on as "waiting for approval" meanwhile."""

        def ask(name: str, arguments: dict[str, Any]) -> bool:
            call = self.last_call
            handle = self.tools.get(call["id"]) if call else None
            if handle is not None:
                handle.update(tool_event_view(call, "waiting for approval"))
            allowed = approve(name, arguments)
            if handle is not None:
                handle.update(tool_event_view(call, "running" if allowed else "denied"))
            return allowed

        return ask


def _reply(text: str) -> Shown:
    return reply_view(text) if text else Shown("<p>…</p>", "…")


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _without_ids(frame: Any) -> Any:
    """A frame as the cell shows it: without its raw ids (the row's `id`, `...Id` references and
    any column of nothing but UUIDs); names (chat, connection, model) stay. The frame given with
    -o keeps them all."""
    drop = []
    for column in frame.columns:
        if column == "id" or str(column).endswith("Id"):
            drop.append(column)
        elif frame[column].dtype == object or str(frame[column].dtype) in ("category", "str", "string"):
            values = frame[column].dropna()
            if len(values) and values.astype(str).str.fullmatch(_UUID).all():
                drop.append(column)
    return frame.drop(columns=drop)


_STATUSES = {  # what --status can be, per subcommand
    "jobs": ("pending", "running", "completed", "failed", "interrupted"),
    "calls": ("pending", "success", "error", "interrupted"),
    "metrics": ("completed", "failed", "interrupted", "denied"),
}

_limit_arguments = _arguments(  # a connection's timeouts and reply limit; checked by the hub, which says what is wrong
    argument("--timeout", metavar="SECONDS", help="the whole answer of one request (default 600)"),
    argument("--connect-timeout", metavar="SECONDS", help="opening the connection (default 5)"),
    argument("--read-timeout", metavar="SECONDS", help="between two pieces of the answer (default 60)"),
    argument("--max-tokens", metavar="N", help="reply limit when a turn sets none"),
)

_frame_arguments = _arguments(
    argument("--since", metavar="TIME", help="from this time on: 1h, 30d, 2026-01-31..."),
    argument("--until", metavar="TIME", help="up to this time"),
    argument("--status", help="only rows with this status"),
    argument("-o", "--output", metavar="VAR", help="keep the DataFrame in this variable"),
)


@magics_class
class AihubMagics(Magics):
    """%aihub and %%aihub. Configure with e.g. `%config AihubMagics.interpolate = False`."""

    home = Unicode(None, allow_none=True, help="Hub folder; default $AIHUB_HOME, else ~/.aihub.").tag(config=True)
    interpolate = Bool(True, help="Fill {name} in chat cells from the notebook's variables.").tag(config=True)
    refresh_interval = Float(0.05, help="Seconds between updates of a streaming reply.").tag(config=True)
    show_footer = Bool(True, help="Show model, tokens and time under each reply.").tag(config=True)

    def __init__(self, shell=None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._line_commands = {  # subcommand -> handler; each handler's parser is handler.parser
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
            "mcp": self._mcp,
            "agent": self._agent,
            "agents": self._agents,
            "metrics": self._metrics,
            "calls": self._calls,
            "jobs": self._jobs,
            "prune": self._prune,
            "otel": self._otel,
            "price": self._price,
            "prices": self._prices,
            "dashboard": self._dashboard,
            "hub": self._hub_panel,
            "panel": self._chat_panel,
            "embed": self._embed,
            "settings": self._settings,
            "setup": self._setup,
        }
        self._cell_commands = {  # %%aihub subcommand -> handler(ns, cell)
            "chat": self._chat_cell,
            "image": self._image_cell,
            "map": self._map_cell,
        }
        self._sidecar = None

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
        tail = None
        if command == "mcp" and "--" in rest:  # `mcp add NAME [OPTIONS] -- COMMAND [ARGS...]`: the command as it is
            cut = rest.index("--")
            rest, tail = rest[:cut], rest[cut + 1 :]
        try:
            if cell is not None:
                handler = self._cell_commands.get(command)
                if handler is None:
                    raise IPythonUsageError(
                        f"%%aihub {command} is not a cell magic; the cell magics are %%aihub chat NAME [--model CONNECTION], "
                        "%%aihub image NAME [--model CONNECTION] and %%aihub map NAME --over DF."
                    )
            else:
                handler = self._line_commands.get(command)
                if handler is None:
                    raise IPythonUsageError(
                        f"Unknown subcommand {command!r}; valid ones are: {', '.join(sorted(self._line_commands))}."
                    )
            if "-h" in rest or "--help" in rest:
                return _Help([handler.parser], detailed=True)
            ns = _parse(handler.parser, rest)
            if tail is not None:
                ns.command = tail
            return handler(ns, cell) if cell is not None else handler(ns)
        except AihubError as exc:
            if not exc.user_facing:
                raise  # a store or schema error is a bug or corrupt data: keep its traceback
            line = _one_line(redact(str(exc)))
            if isinstance(exc, UsageError):
                raise IPythonUsageError(line) from None
            raise _as_one_line(exc, line) from None  # an outage, a tool or agent failure: under its own name

    def _parsers(self) -> dict[str, list[MagicArgumentParser]]:
        parsers = {name: [handler.parser] for name, handler in self._line_commands.items()}
        parsers["chat"].insert(0, self._chat_cell.parser)
        parsers["image"] = [self._image_cell.parser]
        parsers["map"] = [self._map_cell.parser]
        return parsers

    @_subcommand("aihub help")
    @argument("subcommand", nargs="?", help="explain this subcommand's arguments")
    def _help(self, ns) -> Any:
        """List the subcommands, or explain one."""
        parsers = self._parsers()
        if ns.subcommand is None:
            return _Help([p for group in parsers.values() for p in group])
        if ns.subcommand not in parsers:
            raise IPythonUsageError(
                f"Unknown subcommand {ns.subcommand!r}; valid ones are: {', '.join(sorted(parsers))}."
            )
        return _Help(parsers[ns.subcommand], detailed=True)

    # ------------------------------------------------------------ connections

    @_subcommand("aihub connect")
    @argument("provider", help="OPENAI, OLLAMA, local (the built-in local server) or auto (the best one this machine has)")
    @argument("model_id", nargs="?", help="the model at the endpoint (optional for local)")
    @argument("--name", help="the connection's name")
    @argument("--base-url", metavar="URL", help="OpenAI-compatible endpoint")
    @argument("--host", metavar="URL", help="Ollama host")
    @argument("--api-key-env", metavar="VAR", help="the environment variable that holds the key")
    @argument("--description", default="")
    @argument("--default", action="store_true", help="make it the default connection")
    @argument("--type", help="CHAT (default), IMAGE or EMBEDDING")
    @argument("--replace", action="store_true", help="replace the connection of that name, if there is one")
    @_limit_arguments
    def _connect(self, ns) -> Any:
        """Connect a model (OPENAI or OLLAMA), the built-in demo model (local), or the best one this machine has (auto)."""
        kind = ns.provider.lower()
        if kind == "auto":
            row = self.hub.autoconnect()
        elif kind == "local":
            row = self.hub.connect_local(ns.model_id or "local-chat", name=ns.name or "local", type=ns.type, replace=ns.replace)
            if ns.default:
                self.hub.set_default_connection(row["name"])
        else:
            if not ns.model_id:
                raise _usage_error(self._connect.parser, "the following arguments are required: model_id")
            row = self.hub.connect(
                ns.provider, ns.model_id, name=ns.name, base_url=ns.base_url, host=ns.host,
                api_key_env=ns.api_key_env, description=ns.description, default=True if ns.default else None,
                timeout=ns.timeout, connect_timeout=ns.connect_timeout, read_timeout=ns.read_timeout,
                max_tokens=ns.max_tokens, type=ns.type or "CHAT", replace=ns.replace,
            )
        return _table([row], ["name", "provider", "modelId", "endpoint", "api key"])

    @_subcommand("aihub connections")
    def _connections(self, ns=None) -> Any:
        """List the connections (keys masked)."""
        return _table(
            self.hub.connections(), ["name", "provider", "modelId", "type", "endpoint", "api key", "default"],
            empty="No connections yet: %aihub connect OPENAI gpt-4o-mini, %aihub connect OLLAMA llama3.2 or %aihub connect local.",
        )

    @_subcommand("aihub connection")
    @argument("action", choices=["show", "edit", "remove", "default"])
    @argument("name")
    @argument("--model-id", help="edit: the model at the endpoint")
    @argument("--new-name", help="edit: rename the connection")
    @argument("--base-url", metavar="URL")
    @argument("--host", metavar="URL")
    @argument("--api-key-env", metavar="VAR")
    @argument("--description")
    @_limit_arguments
    def _connection(self, ns) -> Any:
        """Show, edit, remove or make default a connection."""
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
            raise _usage_error(self._connection.parser, "say what to change, e.g. --model-id gpt-4o")
        return _table([self.hub.edit_connection(ns.name, **changes)], ["name", "provider", "modelId", "endpoint", "api key"])

    @_subcommand("aihub models")
    @argument("connection")
    def _models(self, ns) -> Any:
        """List the models a connection's endpoint offers."""
        models = self.hub.models(ns.connection)
        rows = [{"id": m.get("id"), **{k: v for k, v in m.items() if k not in ("id", "details")}} for m in models]
        return _table(rows, empty="The endpoint offers no models.")

    # ------------------------------------------------------------ chats

    @_subcommand("%aihub chat")
    @argument("name")
    @argument("--model", metavar="CONNECTION", help="the connection to talk to (default: the chat's, else the default one)")
    @argument("--agent", help="talk to this agent instead")
    @argument("--system", metavar="TEXT", help="a system message")
    @argument("--no-interpolate", action="store_true", help="send {name} as written")
    @argument("--temperature", metavar="T", type=float)
    @argument("--max-tokens", metavar="N", type=int)
    @argument("--seed", metavar="N", type=int)
    @argument("--no-stream", action="store_true", help="ask for the whole reply at once")
    @argument("--image", action="append", default=[], metavar="PATH", help="attach an image file (repeatable); {fig} of a figure attaches it too")
    @argument("--estimate", action="store_true", help="do not send: show the expected input tokens and cost")
    def _chat_cell(self, ns, cell: str) -> None:
        """Send the cell to a chat and stream the reply."""
        from IPython.display import display

        options = {k: v for k, v in (("temperature", ns.temperature), ("max_tokens", ns.max_tokens), ("seed", ns.seed)) if v is not None}
        text = cell.strip("\n")
        images: list[Any] = list(ns.image)
        if self.interpolate and not ns.no_interpolate:
            text = interpolate(text, self.shell.user_ns if self.shell else {}, images)
        if ns.estimate:
            known = self.hub.store.first("Chat", name=ns.name) is not None
            display(self.hub.estimate(ns.name, text, model=ns.model) if known else self.hub.estimate(text, model=ns.model))
            return
        chat = self.hub.chat(ns.name, model=ns.model, agent=ns.agent, system=ns.system)
        view = _TurnView(self.refresh_interval, self.shell)
        from .agents import input_approver

        from .chat import drive

        approve = view.asking(self.hub.approver or input_approver)
        turn = chat.turn(text, options=options, approve=approve, stream=not ns.no_stream, images=images or None)
        try:
            reply = drive(turn, view.event)
        except KeyboardInterrupt as exc:  # drive() closed the turn: recorded as interrupted, chat released
            view.flush()
            raise _as_one_line(exc, (
                f"chat {ns.name!r} keeps the partial reply ({len(''.join(view.parts))} characters), marked interrupted."
            )) from None
        except AihubError:
            view.flush()
            raise
        streamed = view.terminal and bool("".join(view.parts))
        view.flush()
        if view.handle is None and not view.tools and not streamed:
            display(_reply(reply.text))
        if self.show_footer:
            display(turn_footer(reply, chat.target().label))

    @_subcommand("%aihub image")
    @argument("name", help="the chat that keeps the prompt and the images")
    @argument("--model", metavar="CONNECTION", help="the IMAGE connection (default: the first one)")
    @argument("--size", metavar="WxH")
    @argument("--n", type=int, default=1, help="how many images")
    @argument("--quality", metavar="Q", help="low, medium, high (gpt-image-1); standard, hd (dall-e-3)")
    def _image_cell(self, ns, cell: str) -> Any:
        """Draw the cell's prompt with an IMAGE connection; the images show inline."""
        return self.hub.image(cell.strip(), model=ns.model, size=ns.size, n=ns.n, quality=ns.quality, chat=ns.name)

    @_subcommand("aihub embed")
    @argument("expression", nargs="+", help="a Python expression giving a str, a list of str or a Series")
    @argument("-o", "--output", required=True, metavar="VAR", help="the variable to store the vectors in")
    @argument("--model", metavar="CONNECTION", help="the EMBEDDING connection (default: the first one)")
    def _embed(self, ns) -> None:
        """Embed texts into a variable (cached: a text is never sent twice to the same model)."""
        if not ns.output.isidentifier():
            raise IPythonUsageError(f"-o needs a variable name, not {ns.output!r}.")
        expression = " ".join(ns.expression)
        try:
            texts = self.shell.ev(expression)
        except Exception as exc:
            raise IPythonUsageError(f"Cannot evaluate {expression!r}: {type(exc).__name__}: {exc}") from None
        vectors = self.hub.embed(texts, model=ns.model)
        self.shell.user_ns[ns.output] = vectors
        shape = getattr(vectors, "shape", None)
        print(f"{ns.output}: {len(vectors)} vectors" + (f" ({shape[0]} x {shape[1]} float32)" if shape and len(shape) == 2 else ""))

    @_subcommand("%aihub map")
    @argument("name", help="the batch's name: running it again sends only the rows without an answer")
    @argument("--over", required=True, metavar="DF", help="the notebook variable that holds the rows (DataFrame, Series or list)")
    @argument("--model", metavar="CONNECTION", help="the chat model connection (default: the default connection)")
    @argument("--concurrency", type=int, default=8, metavar="N", help="requests at once (default 8)")
    @argument("--max-cost", type=float, metavar="USD", help="refuse to start when the input would cost more")
    @argument("--no-cache", action="store_true", help="send identical requests again instead of reusing their answers")
    @argument("-o", "--output", metavar="VAR", help="keep the answers in this variable")
    def _map_cell(self, ns, cell: str) -> Any:
        """Send the cell, a prompt template with {column} fields, once per row of a DataFrame."""
        if ns.output and (not ns.output.isidentifier() or keyword.iskeyword(ns.output) or ns.output.startswith("__")):
            raise _usage_error(self._map_cell.parser, f"-o takes a variable name, not {ns.output!r}")
        namespace = self.shell.user_ns if self.shell else {}
        if ns.over not in namespace:
            raise _usage_error(self._map_cell.parser, f"--over {ns.over}: no such variable in the notebook")
        template = cell.strip("\n")
        result = self.hub.map(
            template, namespace[ns.over], model=ns.model, concurrency=ns.concurrency, max_cost=ns.max_cost,
            name=ns.name, cache=not ns.no_cache,
        )
        if ns.output:
            namespace[ns.output] = result
        return result

    @_subcommand("aihub chat")
    @argument("name")
    @argument("--delete", action="store_true", help="delete the chat and its messages")
    @argument("--unlock", action="store_true", help="free a chat left busy by a kernel that died")
    def _show_chat(self, ns) -> Any:
        """Show a chat's conversation (to send, use the cell magic %%aihub chat NAME)."""
        if ns.unlock:
            job = self.hub.unlock(ns.name)
            if job is None:
                return _line(f"Chat {ns.name!r} was not locked.")
            return _line(f"Chat {ns.name!r} unlocked; the turn that held it is marked interrupted.")
        if ns.delete:
            self.hub.delete_chat(ns.name)
            return self._chats()
        chat = self.hub.get_chat(ns.name)
        messages = chat.messages()
        images = message_images(messages, MediaStore.beside(self.hub.store))
        return chat_view(chat.name, messages, source_names(self.hub.store), images=images)

    @_subcommand("aihub chats")
    def _chats(self, ns=None) -> Any:
        """List the chats."""
        return _table(self.hub.chats(), ["name", "type", "with", "messages", "lastMessageAt"], empty="No chats yet: start one with %%aihub chat NAME.")

    @_subcommand("aihub render")
    @argument("name")
    def _render(self, ns) -> Any:
        """Store a snapshot of a chat's thread and show it."""
        return snapshot_view(ns.name, self.hub.render(ns.name))

    # ------------------------------------------------------------ tools and agents

    @_subcommand("aihub tools")
    def _tools(self, ns=None) -> Any:
        """List the tools."""
        return _table(self.hub.tools(), ["name", "type", "description", "available"], empty="No tools yet: decorate a function with @hub.tool.")

    @_subcommand("aihub tool")
    @argument("action", choices=["show", "remove"])
    @argument("name")
    def _tool(self, ns) -> Any:
        """Show or remove a tool."""
        if ns.action == "remove":
            self.hub.remove_tool(ns.name)
            return self._tools()
        row = self.hub.get_tool(ns.name)
        info = {k: v for k, v in row.items() if k in ("name", "type", "description", "schema")}
        source = (row.get("data") or {}).get("source")
        if source:
            from IPython.display import display

            display(_table([info]))
            return code_view(source)
        return _table([info])

    @_subcommand("aihub mcp")
    @argument("action", choices=["add", "list", "tools", "remove", "restart"])
    @argument("name", nargs="?", help="the server's name")
    @argument("command", nargs="*", help="add: after --, the command that starts the server over stdio")
    @argument("--url", help="add: a Streamable HTTP endpoint instead of a command")
    @argument("--env", action="append", default=[], metavar="VAR=${SOURCE}", help="add: an environment variable for the command, as a reference")
    @argument("--header-env", action="append", default=[], metavar="HEADER=VAR", help="add: a header for --url, its value read from VAR")
    def _mcp(self, ns) -> Any:
        """Connect MCP servers (`add NAME -- COMMAND [ARGS...]` or `add NAME --url URL`); list,
        show the tools of, restart or remove them."""
        parser = self._mcp.parser
        if ns.action == "list":
            return _table(
                self.hub.mcp_servers(), ["name", "transport", "target", "tools", "unavailable", "running"],
                empty="No MCP servers yet: %aihub mcp add NAME -- COMMAND [ARGS...] or %aihub mcp add NAME --url URL.",
            )
        if not ns.name:
            raise _usage_error(parser, f"{ns.action} needs the server's NAME")
        if ns.action == "add":
            if not ns.command and not ns.url:
                raise _usage_error(parser, "give the command after --, as in %aihub mcp add time -- uvx mcp-server-time, or --url URL")
            env = dict(_pair(parser, item, "--env VAR=${SOURCE}") for item in ns.env)
            headers = dict(_pair(parser, item, "--header-env HEADER=VAR") for item in ns.header_env)
            self.hub.mcp(ns.name, command=ns.command or None, url=ns.url, env=env, headers_env=headers)
        elif ns.command or ns.url or ns.env or ns.header_env:
            raise _usage_error(parser, f"{ns.action} takes only the server's NAME")
        elif ns.action == "remove":
            self.hub.remove_mcp(ns.name)
            return _table(self.hub.mcp_servers(), ["name", "transport", "target", "tools", "unavailable", "running"], empty="No MCP servers left.")
        elif ns.action == "restart":
            self.hub.restart_mcp(ns.name)
        return _table(
            self.hub.mcp_tools(ns.name), ["name", "description", "parameters", "available"],
            empty=f"MCP server {ns.name} offers no tools.",
        )

    @_subcommand("aihub agents")
    def _agents(self, ns=None) -> Any:
        """List the agents."""
        rows = self.hub.agents()
        return _table(
            rows, ["name", "model", "tools", "maxRounds", "description"],
            empty="No agents yet: %aihub agent create NAME --model CONNECTION --tools a,b.",
        )

    @_subcommand("aihub agent")
    @argument("action", choices=["create", "show", "remove"])
    @argument("name")
    @argument("--model", metavar="CONNECTION", help="create: the chat model it uses")
    @argument("--tools", default="", metavar="A,B", help="create: the tools it may call")
    @argument("--permission", metavar="P", help="automatic, user-permitted, or TOOL=STANCE,... (default: automatic; user-permitted for MCP tools)")
    @argument("--instructions", metavar="TEXT", help="create: its system message")
    @argument("--max-rounds", type=int, metavar="N", help="create: rounds of tool calls before it must answer")
    def _agent(self, ns) -> Any:
        """Create, show or remove an agent: a chat model with tools."""
        if ns.action == "remove":
            self.hub.remove_agent(ns.name)
            return self._agents()
        if ns.action == "create":
            tools = [t.strip() for t in ns.tools.split(",") if t.strip()]
            permission: str | dict[str, str] | None = ns.permission
            if ns.permission and "=" in ns.permission:  # per tool: add=automatic,search=user-permitted
                pairs = [item.split("=", 1) for item in ns.permission.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise _usage_error(self._agent.parser, "--permission takes one stance, or TOOL=STANCE pairs separated by commas")
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

    def _frame_command(self, handler, ns, loader, *, name_arg: bool = False) -> Any:
        if ns.output and (not ns.output.isidentifier() or keyword.iskeyword(ns.output) or ns.output.startswith("__")):
            raise _usage_error(handler.parser, f"-o takes a variable name, not {ns.output!r}")
        kwargs = {k: v for k, v in (("since", ns.since), ("until", ns.until)) if v}
        if ns.status:
            valid = _STATUSES[handler.parser.prog.split()[-1]]
            if ns.status not in valid:
                raise _usage_error(handler.parser, f"--status {ns.status!r} is not one of: {', '.join(valid)}")
            kwargs["status"] = ns.status
        if name_arg and ns.name:
            from .monitoring import metric_names

            names = metric_names(self.hub.store)  # metrics logged a moment ago too (batched)
            if ns.name not in names:
                there = f"the metrics recorded are: {', '.join(names)}" if names else "no metrics are recorded yet"
                raise IPythonUsageError(f"No metric named {_one_line(ns.name)!r}; {there}.")
            kwargs["name"] = ns.name
        try:
            frame = loader(**kwargs)
        except TypeError as exc:
            raise IPythonUsageError(f"%{handler.parser.prog}: {exc}") from None
        if ns.output:
            self.shell.user_ns[ns.output] = frame
        return _without_ids(frame)

    @_subcommand("aihub metrics")
    @argument("name", nargs="?", help="only this metric")
    @_frame_arguments
    def _metrics(self, ns) -> Any:
        """Metrics as a DataFrame."""
        return self._frame_command(self._metrics, ns, self.hub.metrics, name_arg=True)

    @_subcommand("aihub calls")
    @_frame_arguments
    def _calls(self, ns) -> Any:
        """Recorded network calls as a DataFrame (secrets masked)."""
        return self._frame_command(self._calls, ns, self.hub.network_calls)

    @_subcommand("aihub jobs")
    @_frame_arguments
    def _jobs(self, ns) -> Any:
        """Jobs (turns, tool calls) as a DataFrame."""
        return self._frame_command(self._jobs, ns, self.hub.jobs)

    @_subcommand("aihub prune")
    @argument("--older-than", required=True, metavar="AGE", help="a span like 30d, 2w, 12h, or an ISO time")
    def _prune(self, ns) -> Any:
        """Drop the raw payloads of old network calls and streams; keep messages and metrics, reclaim the space."""
        return self.hub.prune(older_than=ns.older_than)

    @_subcommand("aihub price")
    @argument("action", choices=["set", "remove"])
    @argument("model")
    @argument("input_per_million", type=float, nargs="?", metavar="IN")
    @argument("output_per_million", type=float, nargs="?", metavar="OUT")
    @argument("--provider", default="")
    @argument(
        "--per-image", metavar="PRICE", default=None,
        help="USD per generated image: 0.04, or by size and quality: 1024x1024=0.04,hd 1024x1024=0.08,*=0.04",
    )
    def _price(self, ns) -> Any:
        """Set or remove the price of a model, in USD per million input and output tokens, or per image."""
        if ns.action == "set":
            tokens = (ns.input_per_million, ns.output_per_million)
            if (None in tokens and tokens != (None, None)) or (tokens == (None, None) and ns.per_image is None):
                raise _usage_error(
                    self._price.parser,
                    "give both prices: %aihub price set MODEL INPUT_PER_MILLION OUTPUT_PER_MILLION (or --per-image PRICE)",
                )
            per_image = _per_image_option(ns.per_image) if ns.per_image is not None else None
            self.hub.set_price(ns.model, ns.input_per_million, ns.output_per_million, provider=ns.provider, per_image=per_image)
        else:
            prices = self.hub.prices()
            known = sorted({(m, (p or "").upper()) for m, p in zip(prices["model"], prices["provider"], strict=True)})
            if (ns.model, ns.provider.upper()) not in known:
                listed = ", ".join(f"{m} ({p})" if p else m for m, p in known) or "none yet"
                raise IPythonUsageError(
                    f"No price for {_one_line(ns.model)!r}{f' (provider {ns.provider})' if ns.provider else ''}; "
                    f"the prices set are: {listed}."
                )
            self.hub.remove_price(ns.model, provider=ns.provider)
        return self._prices()

    @_subcommand("aihub prices")
    def _prices(self, ns=None) -> Any:
        """The price table (USD per million tokens, and per image)."""
        rows = self.hub.prices().to_dict("records")
        return _table(
            rows, ["model", "provider", "inputPerMillion", "outputPerMillion", "perImage", "currency", "updatedAt"],
            empty="No prices yet: %aihub price set MODEL INPUT_PER_MILLION OUTPUT_PER_MILLION (USD per million tokens).",
        )

    @_subcommand("aihub otel")
    @argument("action", choices=["on", "off", "status", "export"])
    @argument("--endpoint", metavar="URL", help="the OTLP/HTTP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318)")
    @argument("--headers-env", metavar="VAR", help="the environment variable holding the OTLP headers (k=v,k2=v2)")
    @argument("--content", action="store_true", help="send message content too")
    @argument("--no-content", action="store_true", help="stop sending message content")
    @argument("--since", metavar="WHEN", help="export: from (30d, 2h, an ISO time)")
    @argument("--until", metavar="WHEN", help="export: until")
    def _otel(self, ns) -> Any:
        """OpenTelemetry export of model calls, tool calls and agent runs (GenAI spans and metrics)."""
        if ns.action == "export":
            counts = self.hub.export_otel(since=ns.since, until=ns.until)
            return _table([{"kind": k, "spans": v} for k, v in counts.items()])
        content = True if ns.content else (False if ns.no_content else None)
        if ns.action == "on":
            status = self.hub.otel("on", endpoint=ns.endpoint, headers_env=ns.headers_env, content=content)
        else:
            status = self.hub.otel(ns.action)
        return _table([{"setting": k, "value": v} for k, v in status.items()])

    @_subcommand("aihub dashboard")
    def _dashboard(self, ns) -> Any:
        """The monitoring panel."""
        from .widgets import Dashboard

        return Dashboard(self.hub.store)

    @_subcommand("aihub panel")
    @argument("name", nargs="?")
    def _chat_panel(self, ns) -> Any:
        """A panel to talk to a chat (pick or type one when NAME is left out)."""
        from .widgets import ChatPanel

        return ChatPanel(self.hub, ns.name)

    @_subcommand("aihub hub")
    @argument("--side", action="store_true", help="in JupyterLab's side area (remembered for the next %%load_ext)")
    def _hub_panel(self, ns) -> Any:
        """A panel for the whole hub: connections, chats, tools, agents, jobs, dashboard, settings."""
        from IPython.display import display

        if self.hub.needs_setup():
            display(self._setup_view())
        if ns.side:
            if self._open_side():
                return text_view("The hub is in JupyterLab's side area (its Side area button moves it back).")
            display(text_view("The side area needs JupyterLab; here the hub is shown in the cell."))
        return self._panel()

    def _panel(self) -> Any:
        from .widgets import HubPanel

        return HubPanel(self.hub, magics=self, side=self._move_side if _side_area_available(self.shell) else None)

    def _open_side(self) -> bool:
        """Show the hub panel in JupyterLab's side area (jupyterlab-sidecar); False where there is none."""
        if not _side_area_available(self.shell):
            return False
        from sidecar import Sidecar

        if self._sidecar is not None:
            self._sidecar.close()
        self._sidecar = Sidecar(title="aihub", anchor="right")
        self._sidecar.append_display_data(self._panel())
        self.hub.set_setting("sidebarOpen", True)
        return True

    def _move_side(self, open_it: bool) -> None:
        """The hub panel's Side area button and Settings box: open or close the side area."""
        if open_it:
            self._open_side()
            return
        if self._sidecar is not None:
            self._sidecar.close()
            self._sidecar = None
        self.hub.set_setting("sidebarOpen", False)

    @_subcommand("aihub setup")
    def _setup(self, ns=None) -> Any:
        """Look for models on this machine (OpenAI key, Ollama, LM Studio, llama.cpp, vLLM) and connect them."""
        return self._setup_view()

    def _setup_view(self) -> Any:
        """The setup panel in a notebook; in a terminal, what was found and the commands to connect it."""
        if _in_notebook(self.shell):
            from .widgets import SetupPanel

            return SetupPanel(self.hub)
        discovery = self.hub.discover()
        self.hub.set_setting("bootstrapped", True)  # shown once; %aihub setup shows it again
        text = "aihub_nb setup: the models this machine can reach.\n" + discovery.text()
        text += "\n(%aihub setup shows this again.)"
        import html

        return Shown(f"<pre>{html.escape(text)}</pre>", text)

    @_subcommand("aihub settings")
    @argument("key", nargs="?", help="theme, sidebarOpen, bootstrapped, lastPage, defaultConnection")
    @argument("value", nargs="?", help="its new value")
    def _settings(self, ns) -> Any:
        """Show the settings (and the magics' configuration), or set one: %aihub settings theme dark."""
        if ns.key is not None and ns.value is None:
            raise _usage_error(self._settings.parser, f"give {ns.key} a value, e.g. %aihub settings theme dark")
        if ns.key is not None:
            self.hub.set_setting(ns.key, ns.value)
        rows = [{"setting": k, "value": v} for k, v in self.hub.settings().items()]
        rows += [{"setting": f"AihubMagics.{name}", "value": getattr(self, name)} for name in sorted(self.traits(config=True))]
        return _table(rows, ["setting", "value"])

    def restore(self) -> None:
        """What `%load_ext aihub_nb` does after registering the magics: in a new home, show the setup
        panel; if the hub lived in the side area last time, open it there again."""
        from IPython.display import display

        hub = self.hub
        if hub.needs_setup():
            display(self._setup_view())
        if hub.settings()["sidebarOpen"] and _side_area_available(self.shell):
            self._open_side()


def _in_notebook(shell) -> bool:
    """True under a Jupyter kernel (a notebook front end can show widgets), not terminal IPython."""
    return getattr(shell, "kernel", None) is not None


def _parent_command() -> str:
    """The command line of this process's parent (a kernel's is the Jupyter server), or ''."""
    import os

    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            import psutil

            return " ".join(psutil.Process(os.getppid()).cmdline())
        except Exception:  # noqa: BLE001 - no way to tell: no side area
            return ""


def _side_area_available(shell) -> bool:
    """JupyterLab (or Notebook 7, built on it) runs this kernel and jupyterlab-sidecar is installed;
    VS Code, classic Notebook and terminal IPython show the hub in the cell instead."""
    import importlib.util
    import os

    if not _in_notebook(shell) or "VSCODE_PID" in os.environ or importlib.util.find_spec("sidecar") is None:
        return False
    command = _parent_command()
    if "jupyter-lab" in command or "jupyter lab" in command or "jupyterlab" in command:
        return True
    if "jupyter-notebook" in command or "jupyter notebook" in command:
        try:
            from importlib.metadata import version

            return int(version("notebook").split(".")[0]) >= 7
        except Exception:  # noqa: BLE001 - no notebook package to read: classic
            return False
    return False


_MAGICS: AihubMagics | None = None


def load_ipython_extension(ipython) -> None:
    global _MAGICS
    _MAGICS = AihubMagics(shell=ipython, config=ipython.config)
    ipython.register_magics(_MAGICS)
    try:
        _MAGICS.restore()
    except AihubError as exc:  # the magics work anyway; say what stopped the setup
        print(f"aihub: {_one_line(redact(str(exc)))}")


def unload_ipython_extension(ipython) -> None:
    global _MAGICS
    if _MAGICS is not None:
        ipython.magics_manager.magics["line"].pop("aihub", None)
        ipython.magics_manager.magics["cell"].pop("aihub", None)
        _MAGICS = None
