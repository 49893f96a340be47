"""SetupPanel: the first thing a new hub shows: the models this machine can reach, to connect.

    >>> panel = SetupPanel(hub)            # or %aihub setup; shown by %load_ext in a new home

It lists what `hub.discover()` found (an OpenAI key, a running Ollama and its chat models,
OpenAI-compatible servers on the usual local ports), each with a box to tick and a model to pick,
plus the built-in demo model (ticked when nothing else is found). Connect creates the connections
ticked and makes the one picked the default (an existing default is kept unless picked); Not now
connects nothing. Both mark the hub as set up (UserSettings.bootstrapped), so the panel does not
come back unless asked for with `%aihub setup`. Look again searches once more.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import UsageError
from .base import Panel

if TYPE_CHECKING:
    from ..discovery import Discovery, Found
    from ..hub import Hub

__all__ = ["SetupPanel"]

DEMO = "local"
_MUTED = "color:var(--jp-ui-font-color2, #666)"


class _Choice:
    """One row: a tick box, and the model to connect when there is a choice."""

    def __init__(self, found: Found | None, ticked: bool) -> None:
        self.found = found
        label = found.label if found is not None else "the built-in demo model: no key, offline; it shows what the hub does, it is no real model"
        self.box = widgets.Checkbox(value=ticked, description=label, indent=False, layout=widgets.Layout(width="auto"))
        models = list(found.models) if found is not None else []
        self.model = widgets.Dropdown(options=models, value=models[0] if models else None,
                                      layout=widgets.Layout(width="240px"))
        self.model.layout.display = None if len(models) > 1 else "none"
        self.name = found.name if found is not None else DEMO
        if found is not None and not models:
            self.box.value, self.box.disabled = False, True
            self.box.description += " (offers no chat model yet)"

    @property
    def row(self) -> widgets.HBox:
        return widgets.HBox([self.box, self.model])


class SetupPanel(Panel):
    """What this machine offers, to connect in one click; marks the hub as set up."""

    def __init__(self, hub: Hub, discovery: Discovery | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub = hub
        self.choices: list[_Choice] = []
        self.title = widgets.HTML("<b>Set up aihub_nb</b>: pick the models to connect.")
        self.found_area = widgets.VBox()
        self.default_pick = widgets.Dropdown(description="default", layout=widgets.Layout(width="320px"))
        self.connect_button = widgets.Button(description="Connect", icon="plug", button_style="primary")
        self.again_button = widgets.Button(description="Look again", icon="search")
        self.skip_button = widgets.Button(description="Not now")
        self.set_children(self.title, self.found_area, self.default_pick,
                          [self.connect_button, self.again_button, self.skip_button], self.status, self.error)
        self.connect_button.on_click(self.guarded(self.connect))
        self.again_button.on_click(self.guarded(self.look_again))
        self.skip_button.on_click(self.guarded(self.skip))
        self.guard(self.show, discovery if discovery is not None else hub.discover())

    def look_again(self) -> None:
        """Search this machine once more."""
        self.show(self.hub.discover())

    def show(self, discovery: Discovery) -> None:
        self.discovery = discovery
        found = list(discovery)
        usable = [f for f in found if f.models]
        self.choices = [_Choice(f, ticked=f is (usable[0] if usable else None)) for f in found]
        self.choices.append(_Choice(None, ticked=not usable))
        intro = (
            f"Found {len(found)}." if found else
            "Found no model: no <code>$OPENAI_API_KEY</code>, nothing answering at "
            + ", ".join(f"<code>{html.escape(a)}</code>" for a in discovery.looked_at)
            + ". Connect the demo model to try the hub, and a real model when you have one "
              "(<code>%aihub connect OPENAI gpt-4o-mini</code> with a key set, or start Ollama and Look again)."
        )
        self.found_area.children = [widgets.HTML(f'<small style="{_MUTED}">{intro}</small>')] + [c.row for c in self.choices]
        for choice in self.choices:
            choice.box.observe(lambda _change: self._update_default(), names="value")
        self._update_default()

    def _update_default(self) -> None:
        names = [c.name for c in self.choices if c.box.value]
        current = self.hub.default_connection()
        options = names + ([current["name"]] if current and current["name"] not in names else [])
        keep = self.default_pick.value
        self.default_pick.options = options
        self.default_pick.value = keep if keep in options else (current["name"] if current else (names[0] if names else None))

    def connect(self) -> None:
        """Connect the ticked choices, set the default, mark the hub as set up."""
        ticked = [c for c in self.choices if c.box.value]
        if not ticked:
            raise UsageError("Tick a model to connect, or click Not now.")
        made = []
        for choice in ticked:
            if choice.found is None:
                row = self.hub.connect_local()
            else:
                from dataclasses import replace

                found = choice.found
                if choice.model.value and choice.model.value != found.model:
                    found = replace(found, models=(choice.model.value, *[m for m in found.models if m != choice.model.value]))
                row = self.hub.connect_found(found)
            made.append(row["name"])
        if self.default_pick.value:
            self.hub.set_default_connection(self.default_pick.value)
        self.hub.set_setting("bootstrapped", True)
        default = self.hub.default_connection()
        self._done(
            f"Connected {', '.join(made)}; the default is {default['name'] if default else 'none'}. "
            "Next: a %%aihub chat NAME cell, or %aihub hub. %aihub setup shows this again."
        )

    def skip(self) -> None:
        """Connect nothing now; the hub is marked as set up."""
        self.hub.set_setting("bootstrapped", True)
        self._done("Nothing connected. %aihub setup shows this again; %aihub connect auto picks the best model found.")

    def _done(self, message: str) -> None:
        self.status.value = f'<small style="color:var(--jp-success-color1, #2e7d32)">✔ {html.escape(message, quote=False)}</small>'
