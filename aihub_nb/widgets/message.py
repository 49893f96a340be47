"""MessageBox: a multi-line message box where Enter sends and Shift+Enter starts a new line.

ipywidgets' Textarea has no key events (Enter always adds a newline, and nothing tells the kernel
it was pressed), and its `Text` sends on Enter but holds one line only; `continuous_update` only
reports the value, so an Enter cannot be told from a pasted newline. So this is a small anywidget
(a maintained way to ship a few lines of ES module with a widget, working the same in JupyterLab,
Notebook 7 and VS Code): a plain <textarea> whose keydown handler sends a "submit" message to the
kernel on Enter (not while an input method composes a character) and makes Shift+Enter insert
a newline (inserted by the handler itself, since the notebook page may keep Shift+Enter's default
action from the textarea). The textarea carries `data-lm-suppress-shortcuts`, so JupyterLab does not take
Shift+Enter (run cell) or other notebook shortcuts from it.

    box = MessageBox(placeholder="Your message")
    box.on_submit(lambda text: print(text))   # Enter in the browser, or box.submit() from Python
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

__all__ = ["MessageBox"]

_ESM = """
function render({ model, el }) {
  const area = document.createElement("textarea");
  area.className = "aihub-message";
  area.setAttribute("data-lm-suppress-shortcuts", "true");
  area.style.cssText = "width:100%;box-sizing:border-box;resize:vertical;font:inherit;padding:4px 6px;" +
    "color:var(--jp-ui-font-color1,inherit);background:var(--jp-layout-color1,inherit);" +
    "border:1px solid var(--jp-border-color1,#ccc);border-radius:2px";
  const sync = () => {
    area.value = model.get("value");
    area.placeholder = model.get("placeholder");
    area.rows = model.get("rows");
    area.disabled = model.get("disabled");
  };
  sync();
  model.on("change", sync);
  const keep = () => { model.set("value", area.value); model.save_changes(); };
  area.addEventListener("input", keep);
  area.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    event.stopPropagation();
    if (event.shiftKey) {  // the newline inserted here: the notebook page may hold Shift+Enter's default back
      area.setRangeText("\\n", area.selectionStart, area.selectionEnd, "end");
      keep();
      return;
    }
    model.set("value", area.value);
    model.save_changes();
    model.send({ event: "submit", value: area.value });
  });
  el.appendChild(area);
  return () => model.off("change", sync);
}
export default { render };
"""


class MessageBox(anywidget.AnyWidget):
    """A textarea: `value` is its text; Enter calls the `on_submit` callbacks with it."""

    _esm = _ESM
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.Int(3).tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._submit_callbacks: list[Callable[[str], None]] = []
        self.on_msg(self._on_message)

    def on_submit(self, callback: Callable[[str], None]) -> None:
        """Call `callback(text)` when the user presses Enter."""
        self._submit_callbacks.append(callback)

    def submit(self, text: str | None = None) -> None:
        """What Enter does: the callbacks get `text` (default: the box's value)."""
        if self.disabled:
            return
        value = self.value if text is None else text
        for callback in list(self._submit_callbacks):
            callback(value)

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            value = content.get("value")
            if isinstance(value, str):
                self.value = value
            self.submit()
