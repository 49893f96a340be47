"""ipywidgets panels: one per file, on one Panel base (base.py).

    >>> from aihub_nb.widgets import ChatPanel, Dashboard, HubPanel, SetupPanel
    >>> HubPanel(hub)                 # %aihub hub
    >>> ChatPanel(hub, "ideas")       # %aihub panel ideas
    >>> Dashboard(hub.store)          # %aihub dashboard
    >>> SetupPanel(hub)               # %aihub setup

The panels sit above the Hub (they are built on it), so the Hub has no methods that make them.
"""

from .chat import ChatPanel
from .dashboard import Dashboard
from .hub import HubPanel
from .setup import SetupPanel

__all__ = ["ChatPanel", "Dashboard", "HubPanel", "SetupPanel"]
