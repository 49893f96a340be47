"""The current hub: the one `%aihub` and `@aihub_nb.tool` use, kept here below the notebook layer
(no IPython import), so a plain script can define tools too.

    >>> import aihub_nb
    >>> @aihub_nb.tool
    ... def add(a: int, b: int) -> int:
    ...     return a + b

`current_hub()` is the Hub pinned with `use_hub(hub)`, else the Hub most recently opened in this
process on the home folder ($AIHUB_HOME, ~/.aihub, or what the magics are configured with), else
one opened now.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["current_hub", "home_from", "use_hub"]

_CURRENT: Hub | None = None  # the hub last handed out, or the one use_hub() pinned
_PINNED = False
_HOME_SOURCE: Callable[[], str | os.PathLike | None] | None = None


def current_hub() -> Hub:
    """The hub `%aihub` and `@aihub_nb.tool` use (see the module docstring)."""
    global _CURRENT
    if _PINNED and _CURRENT is not None:
        return _CURRENT
    from .hub import Hub, open_hub  # here, not above: `%load_ext aihub_nb` stays cheap

    home = _HOME_SOURCE() if _HOME_SOURCE is not None else None
    hub = open_hub(home)
    if hub is None:
        hub = Hub(home)
    _CURRENT = hub
    return hub


def use_hub(hub: Hub | None) -> None:
    """Point the magics (and `aihub_nb.tool`) at this hub; None goes back to the default one."""
    global _CURRENT, _PINNED
    _CURRENT, _PINNED = hub, hub is not None


def home_from(source: Callable[[], str | os.PathLike | None] | None) -> None:
    """Where the current hub's home comes from when none is pinned (the magics' `home` setting);
    a source that returns None, or no source, means the default home."""
    global _HOME_SOURCE
    _HOME_SOURCE = source
