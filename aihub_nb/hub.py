"""Hub: the one object behind every magic and widget. Everything a notebook does, a script can.

    >>> from aihub_nb import Hub
    >>> hub = Hub()                      # opens $AIHUB_HOME/aihub.db, else ~/.aihub/aihub.db
    >>> hub.connect("OLLAMA", "llama3.2")
    >>> hub.chat("ideas").send("Three names for a cat?")

A Hub owns the `Runtime` (aihub_nb.runtime: store, provider clients, tool functions, metrics,
recording, approver) and hands it to chats, agents and tools; for each turn it decides what the chat
talks to. `with Hub(home) as hub:` closes it at the end of the block.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import agents as _agents
from . import connections as _conn
from . import tools as _tools
from .chat import Chat, TurnTarget, connection_target, rendered_messages
from .errors import NotFoundError, StoreWarning, UsageError
from .jobs import check_unlocked, fail_orphaned_jobs, fail_stale_pending_jobs, run_in_background, unlock_thread
from .recovery import recover_interrupted
from .redact import check_key, env_references, url_credential, watch_env
from .runtime import Approver, Runtime
from .store import Store, find_named

__all__ = ["Estimate", "Hub", "default_home", "open_hub"]

DB_FILENAME = "aihub.db"
_OPEN_HUBS: dict[Path, list[weakref.ref[Hub]]] = {}  # per database file, in the order opened


def open_hub(home: str | os.PathLike | None = None) -> Hub | None:
    """The Hub most recently opened (and not closed) in this process on `home` (default:
    default_home()): the magics use it, so `hub = Hub()` in a notebook and `%aihub` share tools
    and connections."""
    home = Path(home).expanduser() if home is not None else default_home()
    for ref in reversed(_OPEN_HUBS.get((home / DB_FILENAME).resolve(), [])):
        hub = ref()
        if hub is not None:
            return hub
    return None


def _on_runtime(fn):
    """A Hub method that is `fn`, a function of a lower layer, called with the hub's runtime first:
    its signature and docstring are written once, where the work is done."""

    @functools.wraps(fn)
    def method(self: Hub, *args: Any, **kwargs: Any) -> Any:
        return fn(self.runtime, *args, **kwargs)

    return method


def default_home() -> Path:
    """$AIHUB_HOME if set, else ~/.aihub."""
    env = os.environ.get("AIHUB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aihub"


class Hub:
    """A person's AI hub: connections, chats, agents, tools, jobs and monitoring, in one store."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        if self.home.is_file():  # the database file itself: its folder is the hub's home
            if self.home.name != DB_FILENAME:
                raise UsageError(
                    f"Hub() takes the hub's folder (the one holding {DB_FILENAME}), and {str(self.home)!r} is a file: "
                    f"pass its folder, or a new folder for a new hub."
                )
            self.home = self.home.parent
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private_home(self.home)
        self.store = Store(self.home / DB_FILENAME)
        fail_orphaned_jobs(self.store)
        fail_stale_pending_jobs(self.store)
        recover_interrupted(self.store)
        self._watch_secrets()
        self.runtime = Runtime.open(self.store)
        self._vectors: Any = None  # aihub_nb.embeddings.VectorMemo, made by the first embed()
        self._telemetry: Any = None  # aihub_nb.telemetry.Telemetry while OpenTelemetry export is on
        self._telemetry_checked = False
        _ = self.telemetry  # export on (settings or OTEL_EXPORTER_OTLP_*): the runtime gets the exporter now
        refs = _OPEN_HUBS.setdefault(self.path.resolve(), [])
        refs[:] = [ref for ref in refs if ref() is not None] + [weakref.ref(self)]

    def _watch_secrets(self) -> None:
        """Make the values of the variables that connections and HTTP tools name known secrets,
        so they are masked in what this hub shows, records of earlier sessions included."""
        for (data,) in self.store.conn.execute(
            'SELECT data FROM "ModelConnections" UNION ALL SELECT data FROM "Tool" WHERE type = \'http\''
        ):
            try:
                named = json.loads(data or "{}").get("api_key_env")
            except (ValueError, AttributeError):
                named = None
            for name in [named, *env_references(data or "")]:
                watch_env(name)

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def approver(self) -> Approver | None:
        """approve(tool_name, arguments) -> bool, for the tools an agent may run only with the
        user's permission; None: they are denied."""
        return self.runtime.approver

    @approver.setter
    def approver(self, approve: Approver | None) -> None:
        self.runtime.approver = approve

    @property
    def sink(self) -> Any:
        """Where recorded HTTP calls go (NetworkCall rows): the runtime recorder's."""
        return self.runtime.recorder.sink

    def close(self) -> None:
        """Write pending metrics, close provider clients and the store."""
        if self._telemetry is not None:
            self._telemetry.shutdown()
            self._telemetry = None
            self.runtime.telemetry = None
        refs = _OPEN_HUBS.get(self.path.resolve(), [])
        refs[:] = [ref for ref in refs if ref() not in (None, self)]
        if self._vectors is not None:
            self._vectors.clear()
        self.runtime.close()
        self.store.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hub({str(self.home)!r})"

    # ------------------------------------------------------------ connections

    def connect(
        self,
        provider: str,
        model_id: str,
        *,
        name: str | None = None,
        base_url: str | None = None,
        host: str | None = None,
        api_key_env: str | None = None,
        api_key: str | None = None,
        type: str = "CHAT",
        description: str = "",
        default: bool | None = None,
        builtin: bool = False,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_tokens: int | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Create a model connection; return it, secrets masked. A name in use is refused unless
        `replace=True` (which replaces that connection, keeping its id and its chats).

        The key is referenced by environment variable (`api_key_env`, OPENAI_API_KEY by default
        for OpenAI); a key passed as `api_key` is used for this session only and never stored.
        The first connection becomes the default one for new chats. Timeouts, in seconds:
        `timeout` for the whole answer of one request (default 600), `connect_timeout` to open
        the connection (default 5), `read_timeout` between two pieces of the answer (default 60).
        `max_tokens` limits each reply when a turn sets no limit of its own.
        """
        provider = _conn.check_provider(provider)
        if not model_id or not str(model_id).strip():
            raise UsageError("A connection needs a model id, e.g. %aihub connect OPENAI gpt-4o-mini.")
        name = _conn.check_name("Connection", name or str(model_id))
        data: dict[str, Any] = {}
        if builtin:
            data["builtin"] = True
        data.update(_limits(timeout=timeout, connect_timeout=connect_timeout, read_timeout=read_timeout, max_tokens=max_tokens))
        if provider == "OPENAI":
            if host:
                raise UsageError("--host is for OLLAMA connections; for an OpenAI-compatible endpoint use --base-url URL.")
            if base_url:
                data["base_url"] = _check_url(base_url, "--base-url")
            if not builtin:
                data["api_key_env"] = _check_env_name(api_key_env or "OPENAI_API_KEY")
        else:
            if base_url:
                raise UsageError("--base-url is for OPENAI connections; for Ollama use --host URL.")
            if host:
                data["host"] = _check_url(host, "--host")
            if api_key_env:
                data["api_key_env"] = _check_env_name(api_key_env)
        fields = dict(provider=provider, modelId=str(model_id), type=_conn.check_type(type), data=data, description=description)
        if api_key:
            api_key = check_key(str(api_key), "the api_key given")  # before anything is stored
        with self.store.transaction():  # look-up and create as one: a name racing in from another kernel waits
            existing = self.store.first("ModelConnections", name=name)
            if existing and not replace:
                raise UsageError(
                    f"A connection named {name!r} exists already ({existing['provider']} {existing['modelId']}); "
                    "add --replace to replace it (replace=True from Python), or pick another --name."
                )
            if existing:
                row = self.store.update("ModelConnections", existing["id"], **fields)
            else:
                row = self.store.create("ModelConnections", name=name, **fields)
        if existing:
            self.runtime.providers.forget(row["id"])
        if api_key:
            _conn.session_key(row["id"], api_key)
        new_default = fields["type"] == "CHAT" and self._settings().get("defaultConnectionId") in (None, "")
        if default or (default is None and new_default):
            self.set_default_connection(name)
        return _conn.public_view(row)

    def connect_local(
        self, model_id: str = "local-chat", *, name: str = "local", provider: str = "OPENAI", type: str | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        """A connection to the demo model built into aihub_nb: no key, no network, replies that show
        what the hub does (it is no real model). Its image model is `local-image` (type IMAGE), its
        embedding model `local-embed` (EMBEDDING). An existing demo connection of that name is reused."""
        type = type or {"local-image": "IMAGE", "local-embed": "EMBEDDING"}.get(model_id, "CHAT")
        existing = self.store.first("ModelConnections", name=name)
        if existing and (existing.get("data") or {}).get("builtin") and not replace:
            if (existing["modelId"], existing["provider"], existing["type"]) == (model_id, _conn.check_provider(provider), type):
                if type == "CHAT":
                    self._default_if_none(name)
                return _conn.public_view(existing)
        return self.connect(provider, model_id, name=name, builtin=True, type=type,
                            description="aihub_nb's built-in demo model", replace=replace)

    def discover(self, **kwargs: Any):
        """What models this machine can reach (aihub_nb.discovery.discover): an OpenAI key, a running
        Ollama, OpenAI-compatible servers on the usual local ports; at most about a second."""
        from .discovery import discover

        return discover(**kwargs)

    def autoconnect(self, discovery: Any = None) -> dict[str, Any]:
        """The best connection this machine offers: OpenAI if OPENAI_API_KEY is set, else a running
        Ollama, else an OpenAI-compatible server on a usual local port (LM Studio 1234, llama.cpp
        8080, vLLM 8000), else the built-in demo model. Reuses an existing connection of that name;
        becomes the default only when there is none."""
        found = list(discovery if discovery is not None else self.discover())
        for item in found:
            if item.model:
                return self.connect_found(item)
        return self.connect_local()

    def connect_found(self, found: Any, *, default: bool | None = None) -> dict[str, Any]:
        """Connect what `discover()` found (a `discovery.Found`), or reuse the connection of that name
        when it is the same kind; `default=None` makes it the default only when there is none."""
        existing = self.store.first("ModelConnections", name=found.name)
        if existing and existing["provider"] == found.provider and not (existing.get("data") or {}).get("builtin"):
            if default:
                self.set_default_connection(found.name)
            else:
                self._default_if_none(found.name)
            return _conn.public_view(existing)
        if not found.model:
            raise UsageError(f"{found.label} offers no chat model yet; add one there first.")
        return self.connect(found.provider, found.model, name=found.name, base_url=found.base_url, host=found.host,
                            api_key_env=found.api_key_env, default=default)

    def _default_if_none(self, name: str) -> None:
        if self.default_connection() is None:
            self.set_default_connection(name)

    def connection(self, name_or_id: str) -> dict[str, Any]:
        """The stored connection row (data holds no secrets)."""
        return _conn.find_connection(self.store, name_or_id)

    def connections(self) -> list[dict[str, Any]]:
        """Every connection, as shown to a person (secrets masked), oldest first."""
        default = self._settings().get("defaultConnectionId")
        out = []
        for row in self.store.find("ModelConnections"):
            view = _conn.public_view(row)
            view["default"] = row["id"] == default
            out.append(view)
        return out

    def edit_connection(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change a connection: model_id, new_name, base_url, host, api_key_env, api_key, description,
        timeout, connect_timeout, read_timeout, max_tokens."""
        row = self.connection(name)
        allowed = {
            "model_id", "new_name", "base_url", "host", "api_key_env", "api_key", "description",
            "timeout", "connect_timeout", "read_timeout", "max_tokens",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise UsageError(f"Cannot change {', '.join(sorted(unknown))}; changeable: {', '.join(sorted(allowed))}.")
        fields: dict[str, Any] = {}
        data = dict(row.get("data") or {})
        if changes.get("model_id"):
            fields["modelId"] = changes["model_id"]
        if changes.get("new_name"):
            new = _conn.check_name("Connection", changes["new_name"])
            if new != row["name"] and self.store.first("ModelConnections", name=new):
                raise UsageError(f"A connection named {new!r} exists already; pick another name.")
            fields["name"] = new
        for key, option in (("base_url", "--base-url"), ("host", "--host")):
            if changes.get(key):
                data[key] = _check_url(changes[key], option)
        if changes.get("api_key_env"):
            data["api_key_env"] = _check_env_name(changes["api_key_env"])
        limits = _limits(**{k: changes.get(k) for k in ("timeout", "connect_timeout", "read_timeout", "max_tokens")})
        if "timeouts" in limits:
            data["timeouts"] = {**_conn.timeouts_of(data), **limits["timeouts"]}
            data.pop("timeout", None)
        if "max_tokens" in limits:
            data["max_tokens"] = limits["max_tokens"]
        if changes.get("description") is not None:
            fields["description"] = changes["description"]
        if changes.get("api_key"):
            _conn.session_key(row["id"], changes["api_key"])
        updated = self.store.update("ModelConnections", row["id"], data=data, **fields)
        self.runtime.providers.forget(row["id"])
        return _conn.public_view(updated)

    def remove_connection(self, name: str) -> None:
        """Delete a connection. Chats that used it keep their history and need --model to go on."""
        row = self.connection(name)
        self.store.delete("ModelConnections", row["id"])
        self.runtime.providers.forget(row["id"])
        settings = self._settings()
        if settings.get("defaultConnectionId") == row["id"]:
            self.store.update("UserSettings", settings["id"], defaultConnectionId=None)

    def set_default_connection(self, name: str) -> None:
        row = self.connection(name)
        settings = self._settings()
        self.store.update("UserSettings", settings["id"], defaultConnectionId=row["id"])

    def default_connection(self) -> dict[str, Any] | None:
        """The default connection's row; None when there is none."""
        return _conn.default_connection(self.store)

    def models(self, connection: str) -> list[dict[str, Any]]:
        """What the connection's endpoint offers (/v1/models, /api/tags)."""
        return self.runtime.providers.get(self.connection(connection)).list_models()

    def remember_page(self, page: str) -> None:
        """Keep the page (panel tab) the user is on, to reopen there next time (UserSettings.lastPage)."""
        settings = self._settings()
        if settings.get("lastPage") != page:
            self.store.set("UserSettings", settings["id"], lastPage=page)

    def _settings(self) -> dict[str, Any]:
        """The UserSettings row (default connection, last page, telemetry, ...), created on first use."""
        row = self.store.first("UserSettings")
        return row if row is not None else self.store.create("UserSettings", bootstrapped=False, theme="auto")

    # ------------------------------------------------------------ user settings

    def settings(self) -> dict[str, Any]:
        """The user's settings: bootstrapped (setup done), sidebarOpen (the hub panel lives in
        JupyterLab's side area), theme (auto, light, dark), lastPage (the hub panel's tab) and
        defaultConnection (its name)."""
        row = self._settings()
        default = self.default_connection()
        return {
            "bootstrapped": bool(row.get("bootstrapped")),
            "sidebarOpen": bool(row.get("sidebarOpen")),
            "theme": row.get("theme") or "auto",
            "lastPage": row.get("lastPage") or "",
            "defaultConnection": default["name"] if default else None,
        }

    def set_setting(self, key: str, value: Any) -> dict[str, Any]:
        """Change one setting (see `settings()`; `sidebar_open` and such work too), checked; returns
        the settings."""
        name = _SETTING_NAMES.get(str(key).replace("_", "").replace("-", "").lower())
        if name is None:
            raise UsageError(f"Unknown setting {key!r}; settings are: {', '.join(SETTINGS)}.")
        if name == "defaultConnection":
            self.set_default_connection(str(value))
            return self.settings()
        if name == "theme":
            from .theme import check_theme

            stored: Any = check_theme(value)
        elif name == "lastPage":
            stored = str(value).strip()
            if len(stored) > 64 or not stored.isprintable():
                raise UsageError(f"lastPage takes a tab's title, not {value!r}.")
        else:
            stored = _boolean(name, value)
        self.store.set("UserSettings", self._settings()["id"], **{name: stored})
        return self.settings()

    def theme(self) -> str:
        """`light` or `dark`: the theme setting, `auto` resolved from JupyterLab's (aihub_nb.theme)."""
        from .theme import resolve

        return resolve(self._settings().get("theme"))

    def needs_setup(self) -> bool:
        """True in a new home: setup never done and no connection yet. A home with a connection
        counts as set up (and is marked so)."""
        if self._settings().get("bootstrapped"):
            return False
        if self.store.first("ModelConnections") is not None:
            self.set_setting("bootstrapped", True)
            return False
        return True

    # ------------------------------------------------------------ metrics

    def record_metrics(self, values: dict[str, float], dimensions: dict[str, str], *, references: dict[str, str] | None = None) -> None:
        """Write several metrics that share dimensions, in one transaction."""
        self.runtime.metrics.record(values, dimensions, references=references)

    # ------------------------------------------------------------ chats

    def chat(
        self,
        name: str,
        *,
        model: str | None = None,
        agent: str | None = None,
        system: str | None = None,
        description: str | None = None,
    ) -> Chat:
        """The chat called `name`, created if new (with `model`, else the default connection).

        On an existing chat, `model` or `agent` switches what it talks to from the next turn on,
        and `system` adds a system message.
        """
        _conn.check_name("Chat", name)
        if model and agent:
            raise UsageError("A chat talks to a model or to an agent, not both: pass --model or --agent.")
        row = self.store.first("Chat", name=name)
        target = self._chat_target(model, agent) if (model or agent or row is None) else None
        created = False
        if row is None:
            assert target is not None
            with self.store.transaction():  # look again under the write lock: one row per name
                row = self.store.first("Chat", name=name)
                if row is None:
                    thread = self.store.create("MessageThread")
                    row = self.store.create(
                        "Chat", name=name, type=target[0], sourceId=target[1], description=description or "",
                        references={"thread": thread["id"]},
                    )
                    self.store.set_reference("MessageThread", thread["id"], "chat", row["id"])
                    created = True
        if (model or agent) and target and not created and (row["type"], row["sourceId"]) != target:
            row = self.store.update("Chat", row["id"], type=target[0], sourceId=target[1])
        elif description is not None and not created:
            row = self.store.update("Chat", row["id"], description=description)
        chat = Chat(self.runtime, row, self._turn_target)
        if system:
            last_system = [m for m in chat.messages() if m["type"] == "system"]
            if not last_system or last_system[-1]["content"] != system:
                self.store.create("Message", threadId=chat.thread_id, type="system", sourceId="user", content=system)
        return chat

    def _turn_target(self, chat: Chat, approve: Approver | None) -> TurnTarget:
        """What a turn of `chat` talks to: its connection, or its agent's model and tools."""
        if chat.type != "agent":
            return connection_target(chat)
        agent = _agents.load_agent(self.runtime, chat.source_id, approve=approve)
        return TurnTarget(
            connection=self.connection(agent.model_id),
            label=f"agent {agent.name!r}",
            message_type="agent",
            source_id=agent.id,
            system=agent.instructions,
            toolbox=agent,
            agent=agent.name,
        )

    def _chat_target(self, model: str | None, agent: str | None) -> tuple[str, str]:
        if agent:
            return ("agent", _agents.load_agent(self.runtime, agent).id)
        if model:
            return ("chatModel", self.connection(model)["id"])
        row = self.default_connection()
        if row is None:
            raise UsageError(
                "No model to talk to: connect one first (%aihub connect OPENAI gpt-4o-mini, "
                "%aihub connect OLLAMA llama3.2, or %aihub connect local), or pass --model CONNECTION."
            )
        return ("chatModel", row["id"])

    def get_chat(self, name: str) -> Chat:
        """An existing chat; NotFoundError listing the chats there are."""
        row = find_named(self.store, "Chat", name, kind="chat", fix=f"start one with %%aihub chat {name}")
        return Chat(self.runtime, row, self._turn_target)

    def chats(self) -> list[dict[str, Any]]:
        """Every chat: name, what it talks to, how many messages, when last used."""
        thread = 'CASE WHEN json_valid(c."references") THEN json_extract(c."references", \'$.thread\') END'
        rows = self.store.query(
            f'SELECT c.id, c.name, c.type, c.sourceId, c.createdAt, ({thread}) AS thread, '
            f'(SELECT count(*) FROM "Message" m WHERE m.threadId = ({thread})) AS messages, '
            f'(SELECT max(m.createdAt) FROM "Message" m WHERE m.threadId = ({thread})) AS lastMessageAt '
            'FROM "Chat" c ORDER BY c.rowid'
        )
        names = {r["id"]: r["name"] for r in self.store.find("ModelConnections")}
        names.update({r["id"]: r["name"] for r in self.store.find("Agent")})
        for row in rows:
            row["with"] = names.get(row.pop("sourceId"), "(removed)")
            if row.pop("thread") is None:
                warnings.warn(
                    f"Chat row {row['id']!r} ({row['name']!r}): field references names no thread (malformed or missing); "
                    "its messages cannot be listed.", StoreWarning, stacklevel=2,
                )
        return rows

    def delete_chat(self, name: str) -> None:
        """Delete a chat and its thread's messages; refused while a turn is answering in it."""
        chat = self.get_chat(name)
        with self.store.transaction() as conn:
            check_unlocked(
                self.store, chat.thread_id, label=f"Chat {name!r}",
                hint=f"delete it when that turn ends, or if its kernel is gone: %aihub chat {name} --unlock.",
            )
            conn.execute('DELETE FROM "Message" WHERE threadId = ?', (chat.thread_id,))
            conn.execute('DELETE FROM "MessageThread" WHERE id = ?', (chat.thread_id,))
            conn.execute('DELETE FROM "Chat" WHERE id = ?', (chat.id,))

    def unlock(self, chat: str) -> str | None:
        """Free a chat left busy by a turn whose kernel stopped answering; return the id of the job
        that held it (marked interrupted, with a note), or None if the chat was not locked. Refused
        while that turn still runs in a live process."""
        found = self.get_chat(chat)
        return unlock_thread(self.store, found.thread_id, label=f"Chat {chat!r}")

    def render(self, name: str) -> dict[str, Any]:
        """Store a RenderedConversationThread snapshot of the chat's thread and return it."""
        chat = self.get_chat(name)
        return self.store.create(
            "RenderedConversationThread",
            messages=rendered_messages(chat.messages()),
            threadId=chat.thread_id,
            references={"thread": chat.thread_id, "chat": chat.id},
        )

    # ------------------------------------------------------------ tools and agents

    def tool(self, fn=None, *, name: str | None = None, description: str | None = None):
        """Decorator: make a plain annotated function a tool (`@hub.tool` or `@hub.tool(name=...)`).

        Re-defining a function of the same name updates the same Tool row."""

        def register(f):
            _tools.define_python_tool(self.runtime, f, name=name, description=description)
            return f

        return register(fn) if fn is not None else register

    http_tool = _on_runtime(_tools.define_http_tool)

    def tools(self) -> list[dict[str, Any]]:
        """Every tool, with `available` false for a python tool not defined in this session."""
        return _tools.list_tools(self.runtime)

    def get_tool(self, name: str) -> dict[str, Any]:
        """The stored Tool row called `name`; NotFoundError listing the tools there are."""
        return _tools.get_tool(self.runtime, name)

    def remove_tool(self, name: str) -> None:
        _tools.remove_tool(self.runtime, name)

    # ------------------------------------------------------------ MCP servers

    @property
    def mcp_sessions(self) -> Any:
        """The MCP servers' sessions of this hub (one background loop thread, made on first use)."""
        return self.runtime.mcp

    def mcp(
        self,
        name: str,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        headers_env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> list[dict[str, Any]]:
        """Connect an MCP server and register each of its tools as a Tool named ``NAME__TOOL``;
        returns those Tool rows. `command` starts a server over stdio (`env` values reference
        environment variables: ``{"API_KEY": "${MY_KEY}"}``); `url` reaches one over Streamable
        HTTP (`headers_env` maps a header to a variable: ``{"Authorization": "MY_TOKEN"}``)."""
        from .mcp import ServerSpec, registry

        spec = ServerSpec(name, command=tuple(command or ()), url=url, env=env or {}, headers_env=headers_env or {}, cwd=cwd)
        return registry.define_server(self.store, self.mcp_sessions, spec)

    def mcp_servers(self) -> list[dict[str, Any]]:
        """Every MCP server: name, transport, command or URL, tool counts, whether it runs now."""
        from .mcp import registry

        return registry.list_servers(self.store, self.mcp_sessions)

    def mcp_tools(self, name: str) -> list[dict[str, Any]]:
        """The tools of MCP server `name` as `tools()` lists them (unavailable ones too)."""
        from .mcp import registry

        registry.get_server(self.store, name)
        names = {row["name"] for row in registry.server_tools(self.store, name)}
        return [t for t in self.tools() if t["name"] in names]

    def remove_mcp(self, name: str) -> None:
        """Stop MCP server `name` and delete it and its tools (calls already made stay recorded)."""
        from .mcp import registry

        registry.remove_server(self.store, self.mcp_sessions, name)

    def restart_mcp(self, name: str) -> list[dict[str, Any]]:
        """Start MCP server `name` again and store its tool listing anew."""
        from .mcp import registry

        return registry.restart_server(self.store, self.mcp_sessions, name)

    agent = _on_runtime(_agents.define_agent)

    def agents(self) -> list[dict[str, Any]]:
        return _agents.list_agents(self.runtime)

    def remove_agent(self, name: str) -> None:
        """Delete an agent; chats that talked to it keep their history and need --agent or --model to go on."""
        _agents.remove_agent(self.runtime, name)

    def describe_agent(self, name: str) -> dict[str, Any]:
        """An agent with its model and tools (name, permission, available)."""
        return _agents.describe_agent(self.runtime, name)

    # ------------------------------------------------------------ monitoring

    def metrics(self, name: Any = ..., /, since=None, until=None, **dimension_filters: Any):
        """Metrics as a DataFrame: createdAt, name, value and one column per dimension.

        `hub.metrics("latency_ms", provider="OPENAI")`: the metric name first (or `name=`), each
        other keyword filters a dimension; after a positional name, `name=` filters a dimension
        called name."""
        from . import monitoring

        return monitoring.metrics(self.store, name, since=since, until=until, **dimension_filters)

    def log_metric(self, name: str, value: float, /, **dimensions: Any) -> None:
        """Record one of your own metrics (an eval score, a rating); batched, so many are cheap."""
        self.runtime.metrics.log(name, value, **dimensions)

    def network_calls(self, since=None, until=None, **filters: Any):
        from . import monitoring

        return monitoring.network_calls(self.store, since=since, until=until, **filters)

    def prune(self, older_than: Any = "30d"):
        """Drop the raw payloads (request bodies, responses, streams' raw output) of network calls
        and response streams older than `older_than` ("30d", "2w", "12h", or a time), keep their
        other fields, the messages and the metrics, and reclaim the space; returns a PruneReport
        that shows as one line."""
        from . import monitoring
        from .errors import UsageError
        from .payloads import prune

        try:
            before = monitoring.parse_time(older_than)
        except UsageError:
            before = None
        if before is None:
            raise UsageError(
                f"Cannot read the age {older_than!r}; give a span back from now like '30d', '2w' or '12h', or an ISO time."
            )
        monitoring.flush_metrics(self.store)
        return prune(self.store, before)

    def messages(self, chat: str):
        from . import monitoring

        return monitoring.messages(self.store, chat)

    def jobs(self, since=None, until=None, **filters: Any):
        from . import monitoring

        return monitoring.jobs(self.store, since=since, until=until, **filters)

    def tool_invocations(self, since=None, until=None, **filters: Any):
        from . import monitoring

        return monitoring.tool_invocations(self.store, since=since, until=until, **filters)

    def streams(self, since=None, until=None, **filters: Any):
        from . import monitoring

        return monitoring.streams(self.store, since=since, until=until, **filters)

    def summary(self, since=None, until=None):
        """Per provider and model: calls, errors, tokens, cost, p50/p95 latency."""
        from . import monitoring

        return monitoring.summary(self.store, since=since, until=until)

    def set_price(
        self, model: str, input_per_million: float | None = None, output_per_million: float | None = None, *,
        per_image: float | dict[str, float] | None = None, provider: str = "", currency: str = "USD",
    ) -> None:
        """Set what a model costs in USD: per million input and output tokens, and/or per generated
        image (`per_image`: a number, or by size and quality, e.g. {"1024x1024": 0.04,
        "hd 1024x1024": 0.08, "*": 0.04}). What is not given keeps its earlier value."""
        from . import monitoring

        monitoring.set_price(
            self.store, model, input_per_million, output_per_million, provider=provider, currency=currency, per_image=per_image,
        )

    def remove_price(self, model: str, *, provider: str = "") -> None:
        from . import monitoring

        monitoring.remove_price(self.store, model, provider=provider)

    def prices(self):
        from . import monitoring

        return monitoring.prices(self.store)

    # ------------------------------------------------------------ images and embeddings

    def _typed_connection(self, model: str | None, kind: str) -> dict[str, Any]:
        """The connection `model` (or the first of type `kind`), which must be of type `kind`."""
        examples = {"IMAGE": "OPENAI gpt-image-1", "EMBEDDING": "OPENAI text-embedding-3-small"}
        if model is None:
            row = next((r for r in self.store.find("ModelConnections") if r["type"] == kind), None)
            if row is None:
                raise UsageError(
                    f"No {kind} connection yet: connect one with %aihub connect {examples[kind]} --type {kind} "
                    f"(or %aihub connect local {'local-image' if kind == 'IMAGE' else 'local-embed'}), or pass --model CONNECTION."
                )
            return row
        row = self.connection(model)
        if row["type"] != kind:
            raise UsageError(
                f"Connection '{row['name']}' is a {row['type']} connection ({row['modelId']}); this needs an {kind} "
                f"connection: %aihub connect {examples[kind]} --type {kind}."
            )
        return row

    def image(self, prompt: str, *, model: str | None = None, size: str | None = None, n: int = 1, quality: str | None = None, chat: str | None = None):
        """Generate images for `prompt` with IMAGE connection `model`; returns an ImageResult
        (`.images`, `.save(path)`, shown inline). With `chat`, the prompt and images join that chat."""
        from . import monitoring
        from .images import generate_images

        row = self._typed_connection(model, "IMAGE")
        chat_row = None
        if chat is not None:
            existing = self.store.first("Chat", name=chat)
            chat_row = existing if existing is not None else self.chat(chat, model=row["id"])._row
        return generate_images(
            self.store, self.runtime.providers.get(row), row, prompt, size=size, n=n, quality=quality, chat=chat_row,
            record_metrics=self.record_metrics, recorder=self.runtime.recorder,
            price=functools.partial(self._image_price, row),
        )

    def _image_price(
        self, row: dict[str, Any], tokens_in: int | None, tokens_out: int | None, count: int, size: str | None, quality: str | None,
    ) -> tuple[float, str] | None:
        """(cost, price source) of `count` generated images: a model with a per-image price is
        priced by it (no entry for this size and quality: unpriced); else by the tokens the answer
        reported; None when unpriced."""
        from . import monitoring

        per_image = monitoring.per_image_for(self.store, row["provider"], row["modelId"])
        if per_image is not None:
            return monitoring.images_cost(per_image, count, size=size, quality=quality)
        if tokens_in is None and tokens_out is None:
            return None
        data = row.get("data") or {}
        return monitoring.turn_price(
            self.store, row["provider"], row["modelId"], tokens_in or 0, tokens_out or 0,
            base_url=data.get("base_url"), package=not data.get("builtin"),
        )

    def embed(self, texts, *, model: str | None = None, progress: bool | None = None, batch_size: int | None = None):
        """Vectors of `texts` with EMBEDDING connection `model`: a str or a list gives a float32
        numpy array (n x d); a pandas Series gives a Series of vectors with the same index. Texts
        already embedded with the same model are not sent again: they come from the vectors this
        hub keeps in memory (AIHUB_EMBEDDING_MEMORY_MB, 256 by default), else from the store's cache."""
        from . import monitoring
        from .embeddings import VectorMemo, cache_model, embed_texts

        row = self._typed_connection(model, "EMBEDDING")
        if self._vectors is None:
            self._vectors = VectorMemo()
        series = None
        if isinstance(texts, str):
            items = [texts]
        elif type(texts).__name__ == "Series" and hasattr(texts, "index"):
            series = texts
            items = list(texts)
        elif isinstance(texts, (list, tuple)):
            items = list(texts)
        else:
            raise UsageError(f"embed takes a str, a list of str or a pandas Series, not {type(texts).__name__}.")
        provider = self.runtime.providers.get(row)
        data = row.get("data") or {}
        endpoint = "builtin" if data.get("builtin") else provider.url
        show = progress if progress is not None else len(items) > 2048
        bar = _Progress(f"embedding {len(items)} texts") if show else None
        otel = self.telemetry
        record = self.record_metrics
        if otel is not None:  # one `embeddings {model}` span per request sent

            def record(values, dims, *, references=None):  # noqa: F811  the metrics, then the span
                self.record_metrics(values, dims, references=references)
                end = time.time_ns()
                otel.embeddings(
                    provider=row["provider"], model=row["modelId"], start_ns=end - int(values.get("latency_ms", 0) * 1e6),
                    end_ns=end, input_tokens=values.get("prompt_tokens"), inputs=int(values.get("inputs", 0)),
                    base_url=data.get("base_url"),
                )

        try:
            vectors = embed_texts(
                self.store, provider, row, items, model_key=cache_model(row, endpoint),
                record_metrics=record, recorder=self.runtime.recorder,
                price=lambda tokens: monitoring.turn_cost(
                    self.store, row["provider"], row["modelId"], tokens, 0, base_url=data.get("base_url"), package=not data.get("builtin"),
                ),
                progress=bar.update if bar else None, batch_size=batch_size, memo=self._vectors,
            )
        finally:
            if bar:
                bar.close()
        if series is not None:
            import pandas as pd

            return pd.Series(list(vectors), index=series.index, name=series.name)
        return vectors

    def similar(self, query: str, texts, k: int = 5, *, model: str | None = None):
        """The `k` texts (a list or a pandas Series) closest in meaning to `query`, as a DataFrame
        (text, score: cosine similarity), best first; a Series keeps its index."""
        import pandas as pd

        from .embeddings import nearest

        if not isinstance(query, str) or not query:
            raise UsageError("similar needs a non-empty query text.")
        is_series = type(texts).__name__ == "Series" and hasattr(texts, "index")
        items = list(texts) if is_series or isinstance(texts, (list, tuple)) else None
        if items is None:
            raise UsageError(f"similar takes a list of str or a pandas Series of texts, not {type(texts).__name__}.")
        if not items:
            return pd.DataFrame({"text": [], "score": []})
        vectors = self.embed(items + [query], model=model)
        order, scores = nearest(vectors[-1], vectors[:-1], k)
        index = texts.index[order] if is_series else order
        return pd.DataFrame({"text": [items[i] for i in order], "score": scores.astype(float)}, index=index)


    # ------------------------------------------------------------ OpenTelemetry and estimates

    @property
    def telemetry(self):
        """The OpenTelemetry exporter while export is on (`otel("on")`, or an OTEL_EXPORTER_OTLP_*
        endpoint in the environment unless `otel("off")`), else None. Made on first use."""
        if not self._telemetry_checked:
            self._telemetry_checked = True
            settings = self._settings()
            choice = settings.get("otelExport") or ""
            from_env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if choice == "on" or (choice == "" and from_env):
                self._telemetry = self._make_telemetry(settings)
            self.runtime.telemetry = self._telemetry
        return self._telemetry

    def _make_telemetry(self, settings: dict[str, Any], **overrides: Any):
        from .telemetry import Telemetry, parse_headers

        headers = None
        if settings.get("otelHeadersEnv"):
            value = os.environ.get(settings["otelHeadersEnv"])
            if value is None:
                raise UsageError(
                    f"The OTLP headers variable {settings['otelHeadersEnv']} is not set; set it to k=v,k2=v2 "
                    "(e.g. Authorization=Bearer%20TOKEN) or drop --headers-env."
                )
            headers = parse_headers(value)
            for header in headers.values():
                from .redact import add_secret

                add_secret(header)  # never shown or exported
        content = True if settings.get("otelContent") else None
        return Telemetry(endpoint=settings.get("otelEndpoint"), headers=headers, capture_content=content, **overrides)

    def otel(
        self, action: str = "status", *, endpoint: str | None = None, headers_env: str | None = None,
        content: bool | None = None, **telemetry_options: Any,
    ) -> dict[str, Any]:
        """OpenTelemetry export: `otel("on", endpoint="http://127.0.0.1:4318", headers_env="OTLP_HEADERS",
        content=False)`, `otel("off")`, `otel("status")` (endpoint, queued, exported, dropped,
        failed). The choice is kept in the hub's settings (the headers by variable name only)."""
        if action not in ("on", "off", "status"):
            raise UsageError(f"otel takes on, off or status, not {action!r}.")
        if action == "status":
            otel = self.telemetry
            if otel is None:
                return {"export": "off", "endpoint": None}
            return {"export": "on", **otel.status()}
        settings = self._settings()
        changes: dict[str, Any] = {"otelExport": action}
        if action == "on":
            if endpoint is not None:
                changes["otelEndpoint"] = _check_url(endpoint, "--endpoint") if endpoint else None
            if headers_env is not None:
                changes["otelHeadersEnv"] = _check_env_name(headers_env) if headers_env else None
            if content is not None:
                changes["otelContent"] = bool(content)
        settings = {**settings, **changes}
        if self._telemetry is not None:
            self._telemetry.shutdown()
            self._telemetry = None
        if action == "on":
            self._telemetry = self._make_telemetry(settings, **telemetry_options)
        self.runtime.telemetry = self._telemetry
        self._telemetry_checked = True
        self.store.update("UserSettings", settings["id"], **changes)
        return self.otel("status")

    def export_otel(self, since: Any = None, until: Any = None, *, flush: bool = True) -> dict[str, int]:
        """Send the history in the store (model calls, tool calls, agent turns between `since` and
        `until`: "30d", an ISO time, ...) as OpenTelemetry spans with their original times; export
        must be on. Returns how many spans of each kind were sent."""
        from . import monitoring
        from .telemetry import backfill

        otel = self.telemetry
        if otel is None:
            raise UsageError("OpenTelemetry export is off; turn it on first: %aihub otel on --endpoint URL.")
        monitoring.flush_metrics(self.store)
        bounds = [monitoring.parse_time(v) if v is not None else None for v in (since, until)]
        counts = backfill(otel, self.store, *bounds)
        if flush:
            otel.flush()
        return counts

    def estimate(self, chat_or_text: Any, text: str | None = None, *, model: str | None = None) -> Estimate:
        """What sending would cost before sending: the expected input tokens (tiktoken when its
        encoding is on this machine, else about 4 characters a token) and their price. `chat_or_text`
        is a chat (its history, its instructions, plus `text`) or the text itself; `model` a
        connection name (default: the chat's, else the default connection)."""
        from .chat import Chat, _encoding, _sent_text, _to_provider_messages, estimate_tokens
        from .monitoring import turn_price

        messages: list[dict[str, Any]] = []
        conn = None
        chat = chat_or_text if isinstance(chat_or_text, Chat) else None
        if chat is None and isinstance(chat_or_text, str) and self.store.first("Chat", name=chat_or_text):
            chat = self.get_chat(chat_or_text)
        if chat is not None:
            target = chat._resolve(chat, None)
            conn = target.connection
            if target.system:
                messages.append({"role": "system", "content": target.system})
            messages += _to_provider_messages(self.store.find("Message", threadId=chat.thread_id))
            if text:
                messages.append({"role": "user", "content": text})
        elif isinstance(chat_or_text, str):
            messages.append({"role": "user", "content": chat_or_text + (text or "")})
        else:
            raise UsageError("estimate takes a chat (or its name) or the text to send.")
        if model is not None:
            conn = self.connection(model)
        conn = conn or self.default_connection()
        model_id = conn["modelId"] if conn else ""
        tokens = estimate_tokens(_sent_text(messages), model_id)
        encoding = _encoding(model_id)
        method = f"tiktoken {encoding.name}" if encoding is not None else "about 4 characters per token"
        priced = None
        if conn is not None:
            data = conn.get("data") or {}
            priced = turn_price(self.store, conn["provider"], model_id, tokens, 0, base_url=data.get("base_url"),
                                package=not data.get("builtin"))
        return Estimate(
            input_tokens=tokens, method=method, model=model_id, connection=conn["name"] if conn else None,
            cost_usd=priced[0] if priced else None, price_source=priced[1] if priced else None,
        )

    # ------------------------------------------------------------ jobs

    def submit(self, fn, *args: Any, name: str | None = None, **kwargs: Any):
        """Run fn(*args, **kwargs) in the background as a recorded job; returns a BackgroundJob."""
        return run_in_background(self.store, fn, *args, name=name, **kwargs)

    # ------------------------------------------------------------ batch runs

    def map(
        self,
        template,
        data,
        model: str | None = None,
        *,
        concurrency: int = 8,
        schema: Any = None,
        max_cost: float | None = None,
        background: bool = False,
        name: str | None = None,
        cache: bool = True,
        options: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        """Send `template` filled from each row of `data` (a DataFrame, Series or list) to chat
        connection `model` (default: the default connection), `concurrency` requests at once, and
        return the answers as a Series in row order (a DataFrame of the `schema`'s properties
        and an `error` column when a pydantic model or JSON schema asks for structured output).
        A failed row holds an ItemError. Over `max_cost` (US dollars, input alone, from the price
        table) nothing is sent. `name` names the batch: running it again sends only the rows
        without an answer. `background=True` returns a BatchRun at once. See aihub_nb.batch."""
        from . import batch

        concurrency = _concurrency(concurrency)
        conn = self._batch_connection(model)
        items = batch.items_of(template, data)
        name = name or batch.default_name()
        plan = batch.prepare(
            self.store, conn, items, name=name, options=options, schema=schema, cache=cache, max_cost=max_cost
        )
        return self._run_batch(plan, concurrency, background, progress)

    def resume(self, job, *, concurrency: int = 8, background: bool = False, cache: bool = True, progress: bool = True):
        """Run a batch again, by name, job id or BatchRun: only its rows without an answer are sent."""
        from . import batch

        key = getattr(job, "name", None) if isinstance(job, batch.BatchRun) else job
        if not isinstance(key, str):
            raise UsageError(f"resume needs a batch name, a job id or a BatchRun, not {type(job).__name__}.")
        name, thread, refs = batch.resume_spec(self.store, key)
        conn = self.store.first("ModelConnections", id=refs.get("connection", ""))
        if conn is None:
            raise NotFoundError(f"Batch {name!r} used a connection that was removed; run hub.map again with model=NAME.")
        plan = batch.prepare(
            self.store, conn, None, name=name, options=refs.get("options"), schema=(refs.get("schema") or {}).get("schema"),
            cache=cache, max_cost=None, thread=thread,
        )
        if refs.get("schema"):
            plan.spec.schema = refs["schema"]
        return self._run_batch(plan, _concurrency(concurrency), background, progress)

    def batches(self):
        """The batch runs, newest first, as a DataFrame: name, status, progress, times."""
        import pandas as pd

        rows = self.store.query(
            'SELECT id, name, status, progress, createdAt, finishedAt, error FROM "Jobs" WHERE type = \'batch\' '
            "ORDER BY createdAt DESC"
        )
        frame = pd.DataFrame(rows, columns=["id", "name", "status", "progress", "createdAt", "finishedAt", "error"])
        frame["name"] = frame["name"].str.removeprefix("batch: ")
        frame["progress"] = [json.loads(p) if p else {} for p in frame["progress"]]
        return frame

    def _batch_connection(self, model: str | None) -> dict[str, Any]:
        if model is None:
            conn = self.default_connection()
            if conn is None:
                raise UsageError("No connection to send to: pass model=NAME, or make one with hub.connect(...).")
            return conn
        return self.connection(model)

    def _run_batch(self, plan, concurrency: int, background: bool, progress: bool):
        import threading

        from . import batch

        display = None
        if progress:
            if batch.in_notebook():
                display = batch.WidgetProgress(plan.spec.name, len(plan.items))
            elif not background:
                display = batch.TextProgress(plan.spec.name)
        run = batch.BatchRun(self.runtime, plan, concurrency=concurrency, progress=display)
        if isinstance(display, batch.WidgetProgress):
            from IPython.display import display as show

            show(display.box)
        if background:
            threading.Thread(target=_quietly, args=(run.run,), name=f"aihub-batch {plan.spec.name}", daemon=True).start()
            return run
        try:
            run.run()
        except KeyboardInterrupt:
            pass  # stopped cleanly: what is done is returned
        return run.result()


def _quietly(fn) -> None:
    try:
        fn()
    except BaseException:  # recorded in the batch's job; nothing to show in a background thread
        pass


def _concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise UsageError(f"concurrency must be a whole number from 1 to 256, not {value!r}.")
    return value


def _limits(
    *, timeout: Any = None, connect_timeout: Any = None, read_timeout: Any = None, max_tokens: Any = None
) -> dict[str, Any]:
    """The connection settings given, checked: {"timeouts": {...}, "max_tokens": n}."""
    out: dict[str, Any] = {}
    timeouts = {
        key: _conn.check_seconds(option, value)
        for key, option, value in (
            ("total", "timeout", timeout), ("connect", "connect_timeout", connect_timeout), ("read", "read_timeout", read_timeout),
        )
        if value is not None
    }
    if timeouts:
        out["timeouts"] = timeouts
    if max_tokens is not None:
        out["max_tokens"] = _conn.check_max_tokens(max_tokens)
    return out


def _private_home(home: Path) -> None:
    """The hub folder holds the database: readable by its owner only. A folder made earlier with
    wider permissions is tightened when it is yours; otherwise you are told."""
    info = home.stat()
    if not info.st_mode & 0o077:
        return
    if info.st_uid == os.getuid():
        os.chmod(home, stat.S_IMODE(info.st_mode) & 0o700)
    else:
        warnings.warn(
            f"{home} is readable by others (mode {stat.S_IMODE(info.st_mode):o}) and not yours to change; "
            "ask its owner to chmod 700 it, or set AIHUB_HOME to a folder of your own.",
            stacklevel=3,
        )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NOT_IN_URLS = re.compile(r"[\s\x00-\x1f\x7f]")


SETTINGS = ("bootstrapped", "sidebarOpen", "theme", "lastPage", "defaultConnection")
_SETTING_NAMES = {name.lower(): name for name in SETTINGS}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise UsageError(f"{name} is true or false (also yes/no, on/off), not {value!r}.")


def _check_url(url: str, option: str) -> str:
    """A connection's endpoint as stored: an http(s) URL with a host and a valid port, without a
    trailing slash, and without credentials. `option` (`--base-url`, `--host`) names it in errors,
    which never repeat the URL: it may hold a key."""
    example = "http://127.0.0.1:11434" if option == "--host" else "http://127.0.0.1:8000/v1"
    url = str(url).strip()
    if _NOT_IN_URLS.search(url):
        raise UsageError(f"The URL given as {option} holds a space or a control character; give one like {example}.")
    if "://" not in url:
        if option != "--host":  # Ollama's own convention: host[:port] alone means http
            raise UsageError(f"The {option} given is not a URL (no http:// or https://); give one like {example}.")
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"The URL given as {option} is malformed ({exc}); give one like {example}.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"{option} must be an http:// or https:// URL, not {parts.scheme}://; give one like {example}.")
    if not parts.hostname:
        raise UsageError(f"The URL given as {option} has no host; give one like {example}.")
    if port == 0:
        raise UsageError(f"The URL given as {option} has port 0; use a port from 1 to 65535, as in {example}.")
    credential = url_credential(url)
    if credential:
        raise UsageError(
            f"The URL given as {option} holds a credential, {credential}; keys never go in URLs: "
            "put the key in an environment variable and pass --api-key-env VAR."
        )
    return url.rstrip("/")


def _check_env_name(name: str) -> str:
    """The name of the environment variable holding a key (never the key itself)."""
    name = str(name).strip()
    if not _ENV_NAME.match(name):
        raise UsageError(
            "--api-key-env takes the NAME of the environment variable that holds the key (like OPENAI_API_KEY), "
            "not the key itself; put the key in a variable (%env MY_KEY=...) and pass --api-key-env MY_KEY."
        )
    watch_env(name)
    return name



class _Progress:
    """A progress bar for long embeddings: ipywidgets in a notebook, a line on stderr elsewhere."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar = None
        try:
            from IPython import get_ipython

            if get_ipython() is not None and type(get_ipython()).__name__ == "ZMQInteractiveShell":
                import ipywidgets
                from IPython.display import display

                self._bar = ipywidgets.IntProgress(min=0, max=1, description="embedding")
                display(self._bar)
        except ImportError:
            self._bar = None

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.max, self._bar.value = total, done
        else:
            import sys

            print(f"\r{self.label}: {done}/{total} sent", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            import sys

            print(file=sys.stderr)

@dataclass(kw_only=True)
class Estimate:
    """What a message would cost before it is sent: input tokens, how they were counted, and the
    input's price (None when the model is unpriced: not $0) with where the price came from."""

    input_tokens: int
    method: str
    model: str
    connection: str | None
    cost_usd: float | None
    price_source: str | None

    def __str__(self) -> str:
        cost = f"${self.cost_usd:.6f} ({self.price_source})" if self.cost_usd is not None else "unpriced"
        return f"~{self.input_tokens} input tokens ({self.method}) to {self.model or 'no model'} · input cost {cost} · not sent"

    def __repr__(self) -> str:
        return f"<Estimate {self}>"

    def _repr_html_(self) -> str:
        import html

        return f"<div class='aihub-estimate'>{html.escape(str(self))}</div>"
