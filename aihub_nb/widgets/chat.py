"""ChatPanel: talk to a chat from a panel instead of a cell.

    >>> panel = ChatPanel(hub, "ideas")      # or %aihub panel ideas
    >>> panel.message.value = "Three names for a cat?"
    >>> panel.send_button.click()            # the reply streams into panel.conversation
    >>> panel.wait(30)                       # join the background turn (scripts, tests)

Pick a chat (an existing name, or type a new one), what it talks to (a connection or an agent),
write the message and Send. The turn runs in a background thread, so the notebook stays usable
while the reply streams in; Stop interrupts it, and the chat keeps the partial reply marked
interrupted. Tool calls show as collapsible blocks as they happen; a tool the agent may only run
with the user's permission asks with Allow / Deny buttons. Model, tokens and latency of the last
reply go in the status line; a failure goes in the error line, one line, never as a traceback out
of a callback. `sync=True` runs turns in the calling thread (scripts, tests, nbval), where nobody
can click Allow, so user-permitted tools are decided by `approve=` or `hub.approver` (else denied).
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..chat import drive
from ..errors import NotFoundError, UsageError
from ..media import MediaStore, message_images
from ..views import (
    block, conversation_html, frame, icon, markdown_html, note, small, source_names, tool_event_view,
    turn_footer, visible,
)
from .base import Panel
from .message import MessageBox

if TYPE_CHECKING:
    from ..chat import Approver, Chat, Reply, TurnEvent
    from ..hub import Hub

__all__ = ["ChatPanel", "conversation_html"]

DEFAULT = ("default", "")  # the connection choice meaning "the chat's own, else the default connection"
REFRESH = 0.05  # seconds between repaints of a streaming reply
APPROVAL_TIMEOUT = 600.0  # seconds a tool waits for Allow / Deny before it is denied

class ChatPanel(Panel):
    """A chat picker, a connection or agent choice, a message box, Send / Stop, and the thread."""

    def __init__(
        self,
        hub: Hub,
        name: str | None = None,
        *,
        sync: bool = False,
        approve: Approver | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hub = hub
        self.sync = sync
        self.approve = approve
        self.last_reply: Reply | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._busy = False
        self._loading = False
        self._pending: tuple[threading.Event, list[bool]] | None = None
        self._live: _LiveTurn | None = None  # the running turn, and how to repaint it
        self._repaint: Any = None

        wide = {"description_width": "initial"}  # the label as long as it is, never cut
        self.chat_name = widgets.Combobox(
            description="chat", placeholder="pick a chat or type a new name", ensure_option=False,
            style=wide, layout=widgets.Layout(width="auto", min_width="260px", flex="1 1 260px"),
        )
        self.connection = widgets.Dropdown(
            description="with", style=wide, layout=widgets.Layout(width="auto", min_width="300px", flex="1 1 300px"),
        )
        self.refresh_button = widgets.Button(icon="refresh", tooltip="reload chats and connections",
                                             layout=widgets.Layout(width="40px"))
        self.conversation = widgets.HTML()
        self.message = MessageBox(placeholder="Your message (Enter sends, Shift+Enter starts a new line)", rows=3,
                                  layout=widgets.Layout(width="100%"))
        self.send_button = widgets.Button(description="Send", icon="paper-plane", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.approval_prompt = widgets.HTML()
        self.allow_button = widgets.Button(description="Allow", button_style="success")
        self.deny_button = widgets.Button(description="Deny", button_style="danger")
        self.approval = widgets.HBox([self.approval_prompt, self.allow_button, self.deny_button],
                                     layout=widgets.Layout(display="none"))
        self.set_children(
            [self.chat_name, self.connection, self.refresh_button],
            self.conversation,
            self.approval,
            self.message,
            [self.send_button, self.stop_button],
            self.status,
            self.error,
        )
        self.chat_name.observe(self._on_chat_name, names="value")
        self.send_button.on_click(lambda _b: self.submit())
        self.message.on_submit(lambda _text: self.submit())
        self.stop_button.on_click(lambda _b: self.stop())
        self.refresh_button.on_click(self.guarded(self.refresh))
        self.allow_button.on_click(lambda _b: self._answer(True))
        self.deny_button.on_click(lambda _b: self._answer(False))
        self.guard(self.refresh)
        if name:
            self.chat_name.value = name

    # ------------------------------------------------------------ state

    @property
    def busy(self) -> bool:
        """True while a turn runs."""
        return self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background turn to end; True when none is running any more."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def refresh(self) -> None:
        """Reload the chat names and the connection / agent choices, keeping what is picked."""
        self.chat_name.options = [row["name"] for row in self.hub.chats()]
        choices: list[tuple[str, tuple[str, str]]] = [("(the chat's own, else the default)", DEFAULT)]
        choices += [(f"{c['name']} ({c['modelId']})", ("model", c["name"])) for c in self.hub.connections()]
        choices += [(f"agent {a['name']}", ("agent", a["name"])) for a in self.hub.agents()]
        current = self.connection.value
        self.connection.options = choices
        values = [v for _, v in choices]
        if current in values and current != DEFAULT:
            self.connection.value = current
        else:
            self.connection.value = self._choice_for(self.chat_name.value.strip(), values)
        if not self._busy:
            self._show_thread()

    def show_chat(self, name: str) -> None:
        """Show the chat called `name` (a new name starts a new chat on the next Send)."""
        if self._busy:
            self.show_error("A turn is running in this panel; Stop it or wait before switching chats.")
            return
        self.chat_name.value = name

    def _choice_for(self, name: str, values: list[tuple[str, str]]) -> tuple[str, str]:
        """What the picker should show for chat `name`: its connection or agent, else the default."""
        row = self.hub.store.first("Chat", name=name) if name else None
        source = None
        if row is not None:
            kind = "agent" if row["type"] == "agent" else "model"
            source = self.hub.store.first("Agent" if kind == "agent" else "ModelConnections", id=row["sourceId"])
        if source is not None:
            choice = (kind, source["name"])
        else:  # a new chat, or one whose connection or agent was removed: the default connection
            default = self.hub.default_connection()
            choice = ("model", default["name"]) if default else DEFAULT
        return choice if choice in values else DEFAULT

    def _on_chat_name(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        self.guard(self._load_chat)

    def _load_chat(self) -> None:
        self.clear_error()
        self.connection.value = self._choice_for(self.chat_name.value.strip(), [v for _, v in self.connection.options])
        self._show_thread()

    def _show_thread(self) -> None:
        """The picked chat's stored conversation (or a note for a new one) in the conversation area."""
        name = self.chat_name.value.strip()
        row = self.hub.store.first("Chat", name=name) if name else None
        if row is None:
            self.conversation.value = frame(
                note(f"New chat {name!r}: write a message and Send." if name else "Pick a chat or type a new name.")
            )
            return
        messages = self.hub.store.find("Message", threadId=row["references"]["thread"])
        self.conversation.value = frame(self._conversation(messages) or note("No messages yet."))

    def _labels(self) -> dict[str, str]:
        """Who said it, as the turn shows it while it runs: "name (model)" or "agent name"."""
        return source_names(self.hub.store)

    # ------------------------------------------------------------ sending

    def submit(self, text: str | None = None) -> None:
        """Send `text` (default: the message box) to the picked chat; errors go to the error line."""
        self.guard(self._start_turn, text)

    def _start_turn(self, text: str | None) -> None:
        if self._busy:
            raise UsageError("A turn is already running; wait for it or Stop it.")
        text = self.message.value if text is None else text
        name = self.chat_name.value.strip()
        if not name:
            raise UsageError("Name the chat first: pick one or type a new name.")
        if not text.strip():
            raise UsageError("Nothing to send: write a message first.")
        kind, target = self.connection.value or DEFAULT
        try:
            chat = self.hub.chat(name, model=target if kind == "model" else None, agent=target if kind == "agent" else None)
        except NotFoundError:
            if kind == DEFAULT[0]:
                raise
            self.refresh()  # removed since the list was loaded: offer what there is now
            raise UsageError(f"{target!r} was removed; pick another in the 'with' list.") from None
        if name not in self.chat_name.options:
            self.chat_name.options = [*self.chat_name.options, name]
        self.clear_error()
        self.message.value = ""
        self._stop.clear()
        self._set_busy(True)
        self._status("sending", "sending…")
        if self.sync:
            self._run_turn(chat, text)
        else:
            self._worker = threading.Thread(target=self._run_turn, args=(chat, text), name="aihub-chat-panel", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Interrupt the running turn: the chat keeps the partial reply, marked interrupted."""
        if not self._busy:
            return
        self._stop.set()
        self._answer(False)
        self._status("stopping", "stopping…")

    def _run_turn(self, chat: Chat, text: str) -> None:
        """The turn, event by event; runs in the worker thread (or the caller's with sync=True)."""
        label = chat.name
        live = _LiveTurn(text, label)
        reply = None
        stopped = False
        painted, wait = 0.0, REFRESH
        try:
            label = live.label = self._target_label(chat)
            history = self._history_html(chat)
            approve = self.approve or self.hub.approver or (None if self.sync else self._ask)
            turn = chat.turn(text, approve=approve)

            def repaint() -> None:
                self.conversation.value = frame(history + live.html())

            self._live, self._repaint = live, repaint

            def show(event: TurnEvent) -> None:
                nonlocal painted, wait
                live.event(event)
                now = time.monotonic()
                if event.kind != "text" or now - painted >= wait:
                    repaint()
                    # a long reply costs more to render: repaint less often (rendering ~10% of the time)
                    painted = time.monotonic()
                    wait = max(REFRESH, 9 * (painted - now))

            try:  # Stop: drive() closes the turn at the next event, recorded as interrupted
                reply = drive(turn, show, self._stop.is_set)
                stopped = reply is None
            except KeyboardInterrupt:  # Ctrl-C / kernel interrupt in sync mode: the turn recorded it
                stopped = True
        except Exception as exc:  # one line in the error line (an unexpected one with its traceback)
            self.show_exception(exc)
        finally:
            self._live = self._repaint = None
            self._finish(chat, reply, stopped, label, live)

    def _finish(self, chat: Chat, reply: Reply | None, stopped: bool, label: str, live: _LiveTurn) -> None:
        try:
            self.last_reply = reply if reply is not None else self.last_reply
            self._show_thread()
            if reply is not None:
                self.status.value = turn_footer(reply, label).data
            elif stopped:
                self._status("interrupted", f"stopped: {label} — the partial reply ({len(live.text)} characters) is kept, marked interrupted")
            else:
                self._status("failed", f"failed: {label}")
        except Exception as exc:
            self.show_exception(exc)
        finally:
            self._set_busy(False)

    def _history_html(self, chat: Chat) -> str:
        return self._conversation(chat.messages())

    def _conversation(self, messages: list[dict]) -> str:
        """The messages as HTML, with the pictures they reference read from the hub's media folder."""
        images = message_images(messages, MediaStore.beside(self.hub.store))
        return conversation_html(messages, self._labels(), images=images)

    def _target_label(self, chat: Chat) -> str:
        return chat.target().label

    def _status(self, status: str, text: str) -> None:
        """The status line: an icon of the icon font ipywidgets ships, and the words."""
        self.status.value = f"{icon(status)} {small(text)}"

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
        self.chat_name.disabled = busy
        self.connection.disabled = busy

    # ------------------------------------------------------------ tool approval

    def _ask(self, tool: str, arguments: dict[str, Any]) -> bool:
        """Ask with Allow / Deny (from the worker thread, so the kernel is free for the click)."""
        if self._stop.is_set():
            return False
        event, answer = threading.Event(), [False]
        self._pending = (event, answer)
        args = visible(json.dumps(arguments, ensure_ascii=False, default=str), 500)
        self.approval_prompt.value = f"Run tool <code>{html.escape(visible(tool, 80))}({html.escape(args)})</code>?"
        self.approval.layout.display = "flex"
        self._status("waiting for approval", f"waiting for your permission to run {visible(tool, 80)}")
        self._tool_status("waiting for approval")
        try:
            event.wait(APPROVAL_TIMEOUT)
        finally:
            self._pending = None
            self.approval.layout.display = "none"
            self._tool_status("running" if answer[0] else "denied")
            self._status("running", "running…")
        return answer[0]

    def _tool_status(self, status: str) -> None:
        """Show the tool call being asked about (the last one shown) with this status."""
        live, repaint = self._live, self._repaint
        if live is not None and repaint is not None:
            live.tool_status(status)
            repaint()

    def _answer(self, allowed: bool) -> None:
        pending = self._pending
        if pending is not None:
            pending[1][0] = allowed
            pending[0].set()


class _LiveTurn:
    """What a running turn has shown so far: the user's message, text pieces and tool calls."""

    def __init__(self, user_text: str, label: str) -> None:
        self.user_text = user_text
        self.label = label
        self.segments: list[list[Any]] = []  # ["text", str] | ["tool", data] | ["note", str]

    @property
    def text(self) -> str:
        return "".join(s[1] for s in self.segments if s[0] == "text")

    def tool_status(self, status: str) -> None:
        """The latest tool call, still without its result, now in this status (waiting for approval...)."""
        for segment in reversed(self.segments):
            if segment[0] == "tool":
                if segment[1].get("result") is None:
                    segment[1] = {**segment[1], "status": status}
                return

    def event(self, event: TurnEvent) -> None:
        if event.kind == "text":
            if self.segments and self.segments[-1][0] == "text":
                self.segments[-1][1] += event.text
            else:
                self.segments.append(["text", event.text])
        elif event.kind == "tool_call":
            self.segments.append(["tool", {**event.data, "status": "running"}])
        elif event.kind == "tool_result":
            for segment in self.segments:
                if segment[0] == "tool" and segment[1].get("id") == event.data.get("id"):
                    segment[1] = dict(event.data)
        elif event.kind == "retry":
            self.segments.append(["note", f"retrying in {event.data.get('wait', 0):.1f}s: {event.text}"])

    def html(self) -> str:
        parts = []
        for kind, value in self.segments:
            if kind == "text":
                parts.append(markdown_html(value))
            elif kind == "tool":
                parts.append(tool_event_view(value).data)
            else:
                parts.append(note(value))
        body = "".join(parts) or "<em>…</em>"
        if self.segments and self.segments[-1][0] == "text":
            body = _with_caret(body)
        else:
            body += _CARET
        return block("You", "user", markdown_html(self.user_text)) + block(self.label, "assistant", body)


_CARET = '<span class="aihub-caret" style="opacity:.6">▍</span>'
_CLOSING = re.compile(r"(?:</[a-z0-9]+>\s*)+$")


def _with_caret(body: str) -> str:
    """The streaming caret at the end of the text, inside its last paragraph, list item or code
    block (not on a line of its own under it)."""
    body = body.rstrip()
    closing = _CLOSING.search(body)
    at = closing.start() if closing else len(body)
    return body[:at] + _CARET + body[at:]
