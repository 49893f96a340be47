"""Panel: the base of every aihub_nb panel (a VBox with its own error line and status line).

    class Things(Panel):
        def __init__(self, hub, **kwargs):
            super().__init__(**kwargs)
            self.hub = hub
            self.table = widgets.HTML()
            self.add_button = widgets.Button(description="Add")
            self.add_button.on_click(self.guarded(self.add))   # a failure goes to self.error
            self.set_children([self.add_button], self.table, self.status, self.error)
            self.guard(self.refresh)

        def refresh(self) -> None:                           # read what the panel shows again
            self.table.value = ...

A callback's failure never leaves the callback (where it would be lost in the browser's log):
`guard` catches it into the panel's error line, one line. A user's mistake (an `AihubError`, such
as `UsageError` for a missing name or an empty message) shows its message; an unexpected error
shows its type and message, with the traceback folded under it (and logged at debug level). The
error line clears when the next guarded action succeeds. Everything here sets widget values, so
it is safe from a worker or timer thread (no `with out:` on an Output widget).
"""

from __future__ import annotations

import html
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..errors import AihubError

__all__ = ["Panel"]

log = logging.getLogger(__name__)

# A panel shown from a saved notebook's widget state (its kernel gone) is disconnected: ipywidgets
# marks every one of its widgets with a broken-link icon. One line on the panel says it instead.
_DISCONNECTED_CSS = (
    "<style>.aihub-panel .jupyter-widgets-disconnected::before{display:none}"
    ".aihub-panel.jupyter-widgets-disconnected::before{display:block;content:'saved view: run the cell again "
    "for the live panel';font:italic var(--jp-ui-font-size1,13px) var(--jp-ui-font-family,sans-serif);"
    "color:var(--jp-ui-font-color2,#666);padding:2px 0 4px}</style>"
)


class Panel(widgets.VBox):
    """A VBox with an error line (`error`), a status line (`status`), a `guard` for callbacks and
    a `refresh()` hook."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = widgets.HTML()
        self.status = widgets.HTML()
        self.add_class("aihub-panel")
        self._style = widgets.HTML(_DISCONNECTED_CSS, layout=widgets.Layout(display="none"))
        self._error_lock = threading.Lock()
        self._errors = 0  # how many errors were shown: a guarded action clears only what came before it

    def refresh(self) -> None:
        """Read what the panel shows again (panels override it)."""

    # ------------------------------------------------------------ saved outputs

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The widget view, plus a static snapshot of what the panel shows (`text/html`) and a
        line of text (`text/plain`). A notebook saved with this output keeps the snapshot: what
        renders a notebook without a live kernel and its widget state (nbconvert, GitHub, VS Code,
        a terminal IPython) shows it instead of a bare widget placeholder."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        name = type(self).__name__
        bundle["text/html"] = (
            f'<div class="aihub-snapshot">{self.snapshot_html()}'
            f'<div style="color:#666"><small>aihub_nb {html.escape(name)} as it was shown; run the cell again '
            "for the live panel.</small></div></div>"
        )
        bundle["text/plain"] = f"aihub_nb {name} (an interactive panel: run the cell in JupyterLab or Notebook to use it)"
        return bundle

    def snapshot_html(self) -> str:
        """What the panel shows, as static HTML: the values of its HTML widgets (already escaped or
        sanitised where they are set) and the text of its labels, in order, hidden parts left out."""
        parts: list[str] = []

        def walk(widget: Any) -> None:
            if getattr(getattr(widget, "layout", None), "display", None) == "none":
                return
            if isinstance(widget, widgets.HTML | widgets.HTMLMath):
                if widget.value:
                    parts.append(f"<div>{widget.value}</div>")
            elif isinstance(widget, widgets.Label):
                if widget.value:
                    parts.append(f"<div>{html.escape(widget.value)}</div>")
            elif isinstance(widget, widgets.Tab):
                titles = list(getattr(widget, "titles", ()) or ())
                for i, child in enumerate(widget.children):
                    if i < len(titles) and titles[i]:
                        parts.append(f"<h4>{html.escape(titles[i])}</h4>")
                    walk(child)
            for child in getattr(widget, "children", ()) if not isinstance(widget, widgets.Tab) else ():
                walk(child)

        walk(self)
        return "".join(parts)

    def set_children(self, *rows: widgets.Widget | list[widgets.Widget]) -> None:
        """Lay the panel out at once: each row a widget, or a list of widgets side by side. The
        error line goes last unless a row places it."""
        children = [widgets.HBox(row) if isinstance(row, list | tuple) else row for row in rows]
        if not any(child is self.error or self.error in getattr(child, "children", ()) for child in children):
            children.append(self.error)
        self.children = [self._style, *children]

    # ------------------------------------------------------------ errors

    def guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run `fn`; a failure goes to the error line instead of out of the callback. True when it
        succeeded (and the error shown before it, if any, is cleared)."""
        with self._error_lock:
            seen = self._errors
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self.show_exception(exc)
            return False
        with self._error_lock:
            if self._errors == seen and self.error.value:  # nothing newer (from a worker) to keep
                self.error.value = ""
        return True

    def guarded(self, fn: Callable[..., Any]) -> Callable[[Any], None]:
        """`fn` as a guarded widget callback (for `on_click` and `observe`; their argument, the
        button or the change, is dropped)."""

        def callback(_source: Any = None) -> None:
            self.guard(fn)

        return callback

    def show_exception(self, exc: BaseException) -> None:
        """Show `exc` in the error line: a user's mistake as its message, anything else as its type
        and message with the traceback folded under it."""
        if isinstance(exc, AihubError):
            self.show_error(str(exc))
            return
        details = "".join(traceback.format_exception(exc))
        log.debug("%s failed: %s", type(self).__name__, details)
        self.show_error(f"{type(exc).__name__}: {exc}", details)

    def show_error(self, message: str, details: str | None = None) -> None:
        """One line in the error line (newlines folded), `details` in a collapsed block under it."""
        line = " ".join(str(message).split()) or "failed"
        text = f'<span style="color:var(--jp-error-color1, #b00020)">⚠ {html.escape(line, quote=False)}</span>'
        if details:
            text += f"<details><summary><small>traceback</small></summary><pre>{html.escape(details)}</pre></details>"
        with self._error_lock:
            self._errors += 1
            self.error.value = text

    def clear_error(self) -> None:
        with self._error_lock:
            self.error.value = ""
