"""Light or dark: which look the hub's panels and plots take (UserSettings.theme).

`auto` follows JupyterLab's theme. Panels need nothing for that: they are styled with
JupyterLab's CSS variables (`var(--jp-layout-color1)`, `var(--jp-ui-font-color1)`, ...), which the
browser resolves. Plots are drawn in Python, so there `auto` is read from JupyterLab's own
settings file, the one its theme menu writes:
``$JUPYTERLAB_SETTINGS_DIR`` (default ``$JUPYTER_CONFIG_DIR/lab/user-settings``, where that is
``~/.jupyter`` unless set)
``/@jupyterlab/apputils-extension/themes.jupyterlab-settings``, key ``"theme"`` (a theme whose
name says "dark" is dark). No file, or no theme chosen there, is JupyterLab's default: light.

    >>> resolve("dark"), resolve("light")
    ('dark', 'light')
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["THEMES", "check_theme", "jupyterlab_theme", "of_store", "plot_style", "resolve", "themed"]

THEMES = ("auto", "light", "dark")

# What a dark plot is drawn with: matplotlib's dark_background, on JupyterLab Dark's own colours
# so a figure sits in the page instead of as a black box.
_DARK = {
    "figure.facecolor": "#111111",
    "axes.facecolor": "#111111",
    "savefig.facecolor": "#111111",
    "axes.edgecolor": "#bdbdbd",
    "axes.labelcolor": "#e0e0e0",
    "text.color": "#e0e0e0",
    "xtick.color": "#bdbdbd",
    "ytick.color": "#bdbdbd",
    "grid.color": "#444444",
    "legend.facecolor": "#1e1e1e",
    "legend.edgecolor": "#444444",
}
_LIGHT = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.edgecolor": "black",
    "axes.labelcolor": "black",
    "text.color": "black",
    "xtick.color": "black",
    "ytick.color": "black",
    "grid.color": "#b0b0b0",
    "legend.facecolor": "inherit",
    "legend.edgecolor": "0.8",
}


def check_theme(value: Any) -> str:
    """`auto`, `light` or `dark` (any case); anything else is one line saying which are valid."""
    from .errors import UsageError

    text = str(value).strip().lower()
    if text not in THEMES:
        raise UsageError(f"theme must be one of {', '.join(THEMES)}, not {value!r}.")
    return text


def _settings_file() -> Path:
    root = os.environ.get("JUPYTERLAB_SETTINGS_DIR")
    config = os.environ.get("JUPYTER_CONFIG_DIR")
    base = (Path(root).expanduser() if root else
            (Path(config).expanduser() if config else Path.home() / ".jupyter") / "lab" / "user-settings")
    return base / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"


def jupyterlab_theme() -> str:
    """`dark` when the JupyterLab theme chosen in its settings is a dark one, else `light`."""
    try:
        text = _settings_file().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "light"
    name = None
    try:  # the file is JSON5: comments allowed
        name = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M)).get("theme")
    except (ValueError, AttributeError):
        match = re.search(r'"theme"\s*:\s*"([^"]*)"', text)
        name = match.group(1) if match else None
    return "dark" if isinstance(name, str) and "dark" in name.lower() else "light"


def resolve(theme: str | None) -> str:
    """`light` or `dark`: the theme itself, or for `auto` (and None) what JupyterLab shows."""
    value = str(theme or "auto").lower()
    if value in ("light", "dark"):
        return value
    return jupyterlab_theme()


def of_store(store: Any) -> str:
    """`light` or `dark`: the theme a hub's store has set (UserSettings.theme), resolved."""
    row = store.first("UserSettings")
    return resolve(row.get("theme") if row else None)


def plot_style(theme: str | None) -> dict[str, str]:
    """The matplotlib rcParams for a theme (resolved first)."""
    return dict(_DARK if resolve(theme) == "dark" else _LIGHT)


@contextmanager
def themed(theme: str | None) -> Iterator[str]:
    """Draw in the theme's colours inside the block; yields `light` or `dark`."""
    import matplotlib as mpl

    with mpl.rc_context(plot_style(theme)):
        yield resolve(theme)
