"""aihub_nb: a Jupyter-native hub for everything you do with AI models, kept on your machine.

In a notebook: `%load_ext aihub_nb`, then `%%aihub chat NAME` cells. From Python: `Hub()`.
Importing this package is cheap: heavy modules (openai, ollama, pandas, matplotlib,
ipywidgets, sqlite-utils) load when first used.

Layers: a module imports only modules of its own rank or lower (inside functions and for typing
too), and no import cycle; tests/test_layers.py checks it. A subpackage ranks as a whole.

     0  errors prisma clock
     1  store migrations payloads
     2  redact timespan media
     3  connections jobs recovery recording monitoring providers toolschema demo display views mcp telemetry discovery theme
     4  runtime
     5  tools embeddings images
     6  agents
     7  chat
     8  batch
     9  hub
    10  current
    11  plots
    12  widgets magics testing __init__ __main__

The Hub owns the runtime (store, provider clients, tool functions, metrics, recording, approver)
and hands it down to chat, agents and tools; `current` holds the hub that `%aihub` and
`@aihub_nb.tool` use.
"""

import typing as _typing

__version__ = "0.1.0"

__all__ = [
    "AihubError",
    "Chat",
    "Hub",
    "LocalServer",
    "Reply",
    "Store",
    "__version__",
    "load_ipython_extension",
    "tool",
    "unload_ipython_extension",
]

_LAZY = {
    "AihubError": ("aihub_nb.errors", "AihubError"),
    "Chat": ("aihub_nb.chat", "Chat"),
    "Hub": ("aihub_nb.hub", "Hub"),
    "LocalServer": ("aihub_nb.testing", "LocalServer"),
    "Reply": ("aihub_nb.chat", "Reply"),
    "Store": ("aihub_nb.store", "Store"),
}

if _typing.TYPE_CHECKING:
    from .chat import Chat, Reply
    from .errors import AihubError
    from .hub import Hub
    from .store import Store
    from .testing import LocalServer


def __getattr__(name: str) -> _typing.Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'aihub_nb' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def tool(fn=None, *, name: str | None = None, description: str | None = None):
    """`@aihub_nb.tool`: make a function a tool of the notebook's hub (see `Hub.tool`)."""
    from .current import current_hub

    return current_hub().tool(fn, name=name, description=description)


def load_ipython_extension(ipython) -> None:
    """`%load_ext aihub_nb`: register the %aihub / %%aihub magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
