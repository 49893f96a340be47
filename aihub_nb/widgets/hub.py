"""HubPanel: the whole hub in one panel of tabs.

    >>> panel = HubPanel(hub)                # or %aihub hub

* Connections: every connection (keys masked, the default marked), a form to add one (provider,
  model id, name, base URL or host, the environment variable holding the key), and Remove /
  Make default for the one picked.
* Chats: every chat; pick one and Open it in a ChatPanel under the table (an empty pick starts
  a new chat).
* Agents & tools: every agent, and every tool with the ones not defined in this session marked.
* Jobs: the most recent jobs (chat turns, background runs) with status and error; Refresh.
* Dashboard: the metrics dashboard, built the first time the tab is shown.
* Settings: theme (auto, light, dark), the side area, setup done, the tab to open on, the default
  connection, and the magics' configuration (`%config AihubMagics.x`); each change is kept at once.
  A Setup button shows the setup panel again.

With `side=` (a function taking True or False, given by `%aihub hub`), a button moves the panel to
JupyterLab's side area and back.

A tab's tables are read from the store again when the tab is shown. A failure goes in the
panel's error line, never out of a callback.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..connections import PROVIDERS as CONNECTION_PROVIDERS
from ..display import html_table
from ..errors import UsageError
from .base import Panel
from .chat import ChatPanel

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["HubPanel"]

TABS = ("Connections", "Chats", "Agents & tools", "Jobs", "Dashboard", "Settings")
PROVIDERS = (*CONNECTION_PROVIDERS, "local")
RECENT_JOBS = 50
_NEW_CHAT = ("(new chat)", "")


class HubPanel(Panel):
    """Connections, chats, agents and tools, jobs and the dashboard of one hub, as tabs."""

    def __init__(self, hub: Hub, *, sync: bool = False, magics: Any = None, side: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub = hub
        self.magics = magics  # whose configurable traits the Settings tab edits (the AihubMagics)
        self.side = side
        self.sync = sync  # passed to the ChatPanel the Chats tab opens
        self.chat_panel: ChatPanel | None = None
        self.dashboard: widgets.Widget | None = None
        wide = widgets.Layout(width="320px")

        # Connections
        self.connections_table = widgets.HTML()
        self.connection_pick = widgets.Dropdown(description="connection", layout=wide)
        self.remove_button = widgets.Button(description="Remove", icon="trash", button_style="danger")
        self.default_button = widgets.Button(description="Make default", icon="star")
        self.new_provider = widgets.Dropdown(description="provider", options=list(PROVIDERS), value="OPENAI", layout=wide)
        self.new_model_id = widgets.Text(description="model id", placeholder="gpt-4o-mini, llama3.2, …", layout=wide)
        self.new_name = widgets.Text(description="name", placeholder="(the model id)", layout=wide)
        self.new_endpoint = widgets.Text(description="base URL", placeholder="(the provider's own)", layout=wide)
        self.new_key_env = widgets.Text(description="key env var", placeholder="OPENAI_API_KEY", layout=wide)
        self.new_default = widgets.Checkbox(description="make it the default", indent=False)
        self.add_button = widgets.Button(description="Add", icon="plus", button_style="primary")
        connections_tab = widgets.VBox([
            self.connections_table,
            widgets.HBox([self.connection_pick, self.remove_button, self.default_button]),
            widgets.HTML("<b>Add a connection</b>"),
            widgets.HBox([self.new_provider, self.new_model_id]),
            widgets.HBox([self.new_name, self.new_endpoint]),
            widgets.HBox([self.new_key_env, self.new_default]),
            self.add_button,
        ])

        # Chats
        self.chats_table = widgets.HTML()
        self.chat_pick = widgets.Dropdown(description="chat", layout=wide)
        self.open_button = widgets.Button(description="Open", icon="comments", button_style="primary")
        self.chat_area = widgets.VBox()
        chats_tab = widgets.VBox([self.chats_table, widgets.HBox([self.chat_pick, self.open_button]), self.chat_area])

        # Agents & tools
        self.agents_table = widgets.HTML()
        self.tools_table = widgets.HTML()
        agents_tab = widgets.VBox([widgets.HTML("<b>Agents</b>"), self.agents_table,
                                   widgets.HTML("<b>Tools</b>"), self.tools_table])

        # Jobs
        self.jobs_table = widgets.HTML()
        self.jobs_refresh_button = widgets.Button(description="Refresh", icon="refresh")
        jobs_tab = widgets.VBox([self.jobs_refresh_button, self.jobs_table])

        # Dashboard, built on first view
        self.dashboard_area = widgets.VBox([widgets.HTML('<small style="color:var(--jp-ui-font-color2, #666)">Loading…</small>')])

        settings_tab = self._settings_tab()

        self.tabs = widgets.Tab(children=[connections_tab, chats_tab, agents_tab, jobs_tab, self.dashboard_area, settings_tab],
                                titles=list(TABS))
        self.side_button = widgets.Button(description="Side area", icon="columns", tooltip="Move the hub to JupyterLab's side area")
        self.side_button.layout.display = None if side is not None else "none"
        self.side_button.on_click(self.guarded(self.toggle_side))
        self.set_children(self.tabs, [self.side_button, self.status], self.error)

        self.new_provider.observe(self._on_provider, names="value")
        self.add_button.on_click(self.guarded(self.add_connection))
        self.remove_button.on_click(self.guarded(self.remove_connection))
        self.default_button.on_click(self.guarded(self.make_default))
        self.open_button.on_click(self.guarded(self.open_chat))
        self.jobs_refresh_button.on_click(self.guarded(self.refresh_jobs))
        self.tabs.observe(self._on_tab, names="selected_index")
        self.guard(self.refresh)
        last = self.hub.settings().get("lastPage")  # the tab the hub panel showed last time
        if last in TABS and last != TABS[0]:
            self.guard(self.select, last)

    def close(self) -> None:
        """Close the panel, and the dashboard and chat panel in it (stopping the dashboard's
        auto-refresh)."""
        for child in (self.dashboard, self.chat_panel):
            if child is not None:
                child.close()
        super().close()

    # ------------------------------------------------------------ tabs

    def select(self, title: str) -> None:
        """Show the tab called `title` (one of TABS)."""
        self.tabs.selected_index = TABS.index(title)

    def refresh(self) -> None:
        """Read every table from the store again (the dashboard keeps its own Refresh)."""
        self.refresh_connections()
        self.refresh_chats()
        self.refresh_agents()
        self.refresh_jobs()

    def _on_tab(self, change: dict[str, Any]) -> None:
        title = TABS[change["new"]] if change["new"] is not None else None
        if title is not None:
            self.guard(self.hub.remember_page, title)
        action = {
            "Connections": self.refresh_connections,
            "Chats": self.refresh_chats,
            "Agents & tools": self.refresh_agents,
            "Jobs": self.refresh_jobs,
            "Dashboard": self._show_dashboard,
            "Settings": self.refresh_settings,
        }.get(title)
        if action is not None:
            self.guard(action)

    # ------------------------------------------------------------ connections

    def refresh_connections(self) -> None:
        rows = self.hub.connections()
        for row in rows:
            row["default"] = "★" if row["default"] else ""
        self.connections_table.value = html_table(
            rows, ["name", "provider", "modelId", "endpoint", "api key", "default"],
            empty="No connections yet: add one below.",
        )
        current = self.connection_pick.value
        names = [row["name"] for row in rows]
        self.connection_pick.options = names
        self.connection_pick.value = current if current in names else (names[0] if names else None)
        if self.chat_panel is not None and not self.chat_panel.busy:  # its choices follow the connections
            self.chat_panel.refresh()

    def _on_provider(self, change: dict[str, Any]) -> None:
        provider = change["new"]
        self.new_endpoint.description = "host" if provider == "OLLAMA" else "base URL"
        self.new_endpoint.disabled = self.new_key_env.disabled = provider == "local"
        self.new_key_env.placeholder = "OPENAI_API_KEY" if provider == "OPENAI" else "(none needed)"
        self.new_model_id.placeholder = {"OPENAI": "gpt-4o-mini", "OLLAMA": "llama3.2", "local": "local-chat"}[provider]

    def add_connection(self) -> None:
        """Create the connection the form describes."""
        provider = self.new_provider.value
        model_id = self.new_model_id.value.strip()
        name = self.new_name.value.strip() or None
        default = True if self.new_default.value else None
        if provider == "local":
            row = self.hub.connect_local(model_id or "local-chat", name=name or "local")
            if default:
                self.hub.set_default_connection(row["name"])
        else:
            endpoint = self.new_endpoint.value.strip() or None
            row = self.hub.connect(
                provider, model_id, name=name,
                base_url=endpoint if provider == "OPENAI" else None,
                host=endpoint if provider == "OLLAMA" else None,
                api_key_env=self.new_key_env.value.strip() or None,
                default=default,
            )
        for field in (self.new_model_id, self.new_name, self.new_endpoint, self.new_key_env):
            field.value = ""
        self.new_default.value = False
        self.refresh_connections()
        self.connection_pick.value = row["name"]
        self._done(f"Added connection {row['name']!r} ({row['provider']} {row['modelId']}).")

    def remove_connection(self) -> None:
        """Delete the picked connection."""
        name = self._picked_connection()
        self.hub.remove_connection(name)
        self.refresh_connections()
        self._done(f"Removed connection {name!r}; chats that used it need another one to go on.")

    def make_default(self) -> None:
        """Make the picked connection the one new chats use."""
        name = self._picked_connection()
        self.hub.set_default_connection(name)
        self.refresh_connections()
        self._done(f"{name!r} is now the default connection.")

    def _picked_connection(self) -> str:
        if not self.connection_pick.value:
            raise UsageError("Pick a connection first.")
        return self.connection_pick.value

    # ------------------------------------------------------------ chats

    def refresh_chats(self) -> None:
        rows = self.hub.chats()
        self.chats_table.value = html_table(rows, ["name", "type", "with", "messages", "lastMessageAt"],
                                        empty="No chats yet: Open a new one below.")
        current = self.chat_pick.value
        options = [_NEW_CHAT] + [(row["name"], row["name"]) for row in rows]
        self.chat_pick.options = options
        values = [v for _, v in options]
        self.chat_pick.value = current if current in values else ""

    def open_chat(self, name: str | None = None) -> ChatPanel:
        """Show the chat `name` (default: the picked one; empty: a new chat) in a ChatPanel."""
        name = self.chat_pick.value if name is None else name
        if self.chat_panel is None:
            self.chat_panel = ChatPanel(self.hub, name or None, sync=self.sync)
            self.chat_area.children = [self.chat_panel]
        else:
            self.chat_panel.refresh()
            self.chat_panel.show_chat(name or "")
        return self.chat_panel

    # ------------------------------------------------------------ agents and tools

    def refresh_agents(self) -> None:
        self.agents_table.value = html_table(
            self.hub.agents(), ["name", "model", "tools", "maxRounds", "description"],
            empty="No agents yet: hub.agent(NAME, model=CONNECTION, tools=[...]).",
        )
        rows = self.hub.tools()
        for row in rows:
            row["available"] = "yes" if row["available"] else "⚠ not defined in this session"
        self.tools_table.value = html_table(
            rows, ["name", "type", "description", "parameters", "available"],
            empty="No tools yet: decorate a function with @hub.tool.",
            dim=lambda row: row["available"] != "yes",
        )

    # ------------------------------------------------------------ jobs

    def refresh_jobs(self) -> None:
        frame = self.hub.jobs()
        rows = []
        for job in frame.tail(RECENT_JOBS).iloc[::-1].to_dict("records"):
            rows.append({
                "name": job["name"], "type": job["type"], "status": job["status"],
                "started": _time(job.get("startedAt")), "finished": _time(job.get("finishedAt")),
                "error": job.get("error") if isinstance(job.get("error"), str) else "",
                "progress": _progress(self.hub.store, job["id"]) if job["type"] == "batch" else "",
            })
        self.jobs_table.value = html_table(rows, ["name", "type", "status", "progress", "started", "finished", "error"],
                                       empty="No jobs yet: a chat turn or hub.submit(...) makes one.")

    # ------------------------------------------------------------ dashboard

    def _show_dashboard(self) -> None:
        if self.dashboard is not None:
            return
        try:
            from .dashboard import Dashboard  # loads the plotting side only when the tab is shown

            self.dashboard = Dashboard(self.hub.store)
        except ImportError as exc:
            self.dashboard_area.children = [widgets.HTML(
                f'<p style="color:#666">The dashboard is not available in this installation ({html.escape(str(exc))}).</p>'
            )]
            return
        self.dashboard_area.children = [self.dashboard]

    # ------------------------------------------------------------ settings

    def _settings_tab(self) -> widgets.VBox:
        wide = widgets.Layout(width="320px")
        self.theme_pick = widgets.Dropdown(description="theme", options=["auto", "light", "dark"], layout=wide)
        self.sidebar_box = widgets.Checkbox(description="open in JupyterLab's side area", indent=False)
        self.bootstrapped_box = widgets.Checkbox(description="setup done", indent=False)
        self.last_page_pick = widgets.Dropdown(description="open on", options=list(TABS), layout=wide)
        self.default_pick = widgets.Dropdown(description="default", layout=wide)
        self.setup_button = widgets.Button(description="Setup…", icon="magic", tooltip="Look for models to connect")
        self.setup_area = widgets.VBox()
        self.config_fields: dict[str, widgets.Widget] = {}
        config_rows: list[widgets.Widget] = []
        for name, trait in sorted((self.magics.traits(config=True) if self.magics is not None else {}).items()):
            kind = type(trait).__name__
            field = (widgets.Checkbox(indent=False) if kind == "Bool" else
                     widgets.FloatText(layout=wide) if kind == "Float" else widgets.Text(layout=wide))
            field.description = name
            field.tooltip = trait.help
            self.config_fields[name] = field
            config_rows.append(widgets.HBox([field, widgets.HTML(
                f'<small style="color:var(--jp-ui-font-color2, #666)">{html.escape(trait.help or "")}</small>')]))
        self.refresh_settings()
        for field, key in ((self.theme_pick, "theme"), (self.sidebar_box, "sidebarOpen"),
                           (self.bootstrapped_box, "bootstrapped"), (self.last_page_pick, "lastPage"),
                           (self.default_pick, "defaultConnection")):
            field.observe(self._setting_changed(key), names="value")
        for name, field in self.config_fields.items():
            field.observe(self._config_changed(name), names="value")
        self.setup_button.on_click(self.guarded(self.show_setup))
        return widgets.VBox([
            widgets.HTML("<b>Settings</b>"), self.theme_pick, self.sidebar_box, self.last_page_pick, self.default_pick,
            widgets.HBox([self.bootstrapped_box, self.setup_button]), self.setup_area,
            *([widgets.HTML("<b>Magics</b> (<code>%config AihubMagics.NAME = VALUE</code>)")] + config_rows if config_rows else []),
        ])

    def refresh_settings(self) -> None:
        """Show the stored settings (and the magics' configuration) again."""
        self._settings_loading = True
        try:
            settings = self.hub.settings()
            self.theme_pick.value = settings["theme"] if settings["theme"] in self.theme_pick.options else "auto"
            self.sidebar_box.value = settings["sidebarOpen"]
            self.bootstrapped_box.value = settings["bootstrapped"]
            self.last_page_pick.value = settings["lastPage"] if settings["lastPage"] in TABS else TABS[0]
            names = [row["name"] for row in self.hub.connections()]
            self.default_pick.options = names
            self.default_pick.value = settings["defaultConnection"] if settings["defaultConnection"] in names else None
            for name, field in self.config_fields.items():
                value = getattr(self.magics, name)
                field.value = value if value is not None or isinstance(field, widgets.Checkbox) else ""
        finally:
            self._settings_loading = False

    def _setting_changed(self, key: str):
        def changed(change: dict[str, Any]) -> None:
            if self._settings_loading or change["new"] is None:
                return
            if key == "sidebarOpen" and self.side is not None:
                ok = self.guard(self.side, bool(change["new"]))
            else:
                ok = self.guard(self.hub.set_setting, key, change["new"])
            if ok:
                self._done(f"{key} is now {change['new']}.")
            if key == "defaultConnection":
                self.guard(self.refresh_connections)
            self.guard(self.refresh_settings)

        return changed

    def _config_changed(self, name: str):
        def changed(change: dict[str, Any]) -> None:
            if self._settings_loading:
                return
            value = change["new"]
            if name == "home" and value == "":
                value = None
            if self.guard(setattr, self.magics, name, value):
                self._done(f"AihubMagics.{name} is now {value!r}.")

        return changed

    def show_setup(self) -> None:
        """Show the setup panel in the Settings tab."""
        from .setup import SetupPanel

        self.setup_area.children = [SetupPanel(self.hub)]

    def toggle_side(self) -> None:
        """Move the hub panel to JupyterLab's side area, or back out of it."""
        if self.side is None:
            raise UsageError("The side area is not available here: it needs JupyterLab.")
        self.side(not self.hub.settings()["sidebarOpen"])
        self.guard(self.refresh_settings)

    # ------------------------------------------------------------ messages

    def _done(self, message: str) -> None:
        self.status.value = f'<small style="color:var(--jp-success-color1, #2e7d32)">✔ {html.escape(message, quote=False)}</small>'

    def show_error(self, message: str, details: str | None = None) -> None:
        super().show_error(message, details)
        self.status.value = ""  # the last success no longer describes the panel


def _time(value: Any) -> str:
    """A pandas timestamp (UTC) as `YYYY-MM-DD HH:MM:SS`; NaT and None as empty."""
    if value is None or value != value:  # None, NaT
        return ""
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    except (AttributeError, ValueError):
        return str(value)


def _progress(store: Any, job_id: str) -> str:
    """A batch's progress as the Jobs page shows it: `12/40 · 1 failed · $0.0031`."""
    row = store.first("Jobs", id=job_id)
    p = (row or {}).get("progress") or {}
    if not p:
        return ""
    finished = sum(int(p.get(k) or 0) for k in ("done", "failed", "cached", "skipped"))
    return f"{finished}/{p.get('total', 0)} · {p.get('failed', 0)} failed · ${float(p.get('cost_usd') or 0):.4f}"
