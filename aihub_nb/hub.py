"""Hub: the one object behind every magic and widget. Everything a notebook does, a script can.

    >>> from aihub_nb import Hub
    >>> hub = Hub()                      # opens $AIHUB_HOME/aihub.db, else ~/.aihub/aihub.db
    >>> hub.store.find("Chat")
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import Store

__all__ = ["Hub", "default_home"]

DB_FILENAME = "aihub.db"


def default_home() -> Path:
    """$AIHUB_HOME if set, else ~/.aihub."""
    env = os.environ.get("AIHUB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aihub"


class Hub:
    """A person's AI hub: connections, chats, agents, tools, jobs and monitoring, in one store."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(self.home / DB_FILENAME)

    @property
    def path(self) -> Path:
        return self.store.path

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"Hub({str(self.home)!r})"
