"""ChatPanel and HubPanel, driven headless: set `.value`, `button.click()`, then assert on what
the store holds and what the widgets show. Turns go over real HTTP to the local server."""

from __future__ import annotations

import sys

import time

import ipywidgets as widgets
import pytest

from aihub_nb import Hub
from aihub_nb import chat as chat_module
from aihub_nb.errors import UsageError
from aihub_nb.testing import ScriptedReply
from aihub_nb.views import markdown_html
from aihub_nb.widgets.base import Panel
from aihub_nb.widgets.chat import DEFAULT, ChatPanel
from aihub_nb.widgets.dashboard import Dashboard
from aihub_nb.widgets.hub import TABS, HubPanel


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.fixture
def oa(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    return "oa"


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _types(hub: Hub, chat: str) -> list[str]:
    return [m["type"] for m in hub.get_chat(chat).messages()]


# ---------------------------------------------------------------- ChatPanel


def test_send_records_the_turn_and_shows_the_reply(hub, server, oa):
    panel = ChatPanel(hub, "c", sync=True)
    assert panel.connection.value == ("model", "oa")  # a new chat starts on the default connection
    assert "New chat" in panel.conversation.value
    server.script(ScriptedReply(text="Hi **there** <script>", prompt_tokens=7, completion_tokens=3))
    panel.message.value = "hello"
    panel.send_button.click()

    assert panel.error.value == ""
    messages = hub.get_chat("c").messages()
    assert [(m["type"], m["content"]) for m in messages] == [("user", "hello"), ("chatModel", "Hi **there** <script>")]
    assert "Hi <strong>there</strong> &lt;script&gt;" in panel.conversation.value  # Markdown, escaped
    assert "7 → 3 tokens" in panel.status.value and "oa (local-chat)" in panel.status.value
    assert panel.message.value == "" and not panel.send_button.disabled and panel.stop_button.disabled
    assert panel.last_reply.text == "Hi **there** <script>"
    assert hub.store.find("Jobs")[-1]["status"] == "completed"


def test_enter_in_the_message_box_sends(hub, server, oa):
    panel = ChatPanel(hub, "c", sync=True)
    server.script(ScriptedReply(text="got it"))
    # what the box's keydown handler sends on Enter (Shift+Enter stays a newline in the browser)
    panel.message._on_message(panel.message, {"event": "submit", "value": "line one\nline two"}, [])
    assert [m["content"] for m in hub.get_chat("c").messages()] == ["line one\nline two", "got it"]
    assert panel.message.value == ""
    assert "Enter sends" in panel.message.placeholder and "data-lm-suppress-shortcuts" in panel.message._esm


def test_status_icons_come_from_the_icon_font_and_the_caret_is_inline(hub, server, oa):
    from aihub_nb.widgets.chat import _LiveTurn

    panel = ChatPanel(hub, "c", sync=True)
    server.script(ScriptedReply(fault="500"), ScriptedReply(fault="500"), ScriptedReply(fault="500"), ScriptedReply(fault="500"))
    panel.submit("hi")
    assert 'class="fa fa-times"' in panel.status.value and "failed: oa (local-chat)" in panel.status.value
    emoji = [ch for ch in panel.status.value + panel.conversation.value if ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) < 0x2800]
    assert emoji == []
    live = _LiveTurn("q", "oa")
    live.event(chat_module.TurnEvent("text", text="streaming **now**"))
    shown = live.html()  # the caret on the text's line, inside its paragraph, not under it
    assert 'now<span class="aihub-caret" style="opacity:.6">▍</span></strong></p>' in shown
    assert panel.chat_name.style.description_width == "initial"


def test_second_send_continues_the_thread(hub, server, oa):
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    first = ChatPanel(hub, "c", sync=True)
    server.script(ScriptedReply(text="first answer"))
    first.message.value = "one"
    first.send_button.click()

    panel = ChatPanel(hub, sync=True)
    assert panel.chat_name.options == ("c",)
    panel.chat_name.value = "c"  # picking an existing chat shows it and what it talks to
    assert panel.connection.value == ("model", "oa") and "first answer" in panel.conversation.value
    server.script(ScriptedReply(text="second answer"))
    panel.message.value = "two"
    panel.send_button.click()

    assert panel.error.value == ""
    sent = server.requests[-1].json["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "one"), ("assistant", "first answer"), ("user", "two"),
    ]
    assert _types(hub, "c") == ["user", "chatModel", "user", "chatModel"]
    assert panel.conversation.value.index("first answer") < panel.conversation.value.index("second answer")

    panel.connection.value = ("model", "ol")  # switching the connection takes effect on Send
    panel.message.value = "three"
    panel.send_button.click()
    assert server.requests[-1].path == "/api/chat"
    assert hub.get_chat("c").source_id == hub.connection("ol")["id"]


def test_removed_connection_shows_in_the_error_line(hub, server, oa):
    ChatPanel(hub, "c", sync=True).submit("hello")
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    hub.remove_connection("oa")
    panel = ChatPanel(hub, "c", sync=True)
    assert panel.connection.value == DEFAULT  # its connection is gone
    panel.message.value = "still there?"
    panel.send_button.click()  # must not raise

    assert "uses a connection that was removed" in panel.error.value
    assert "\n" not in panel.error.value
    assert _types(hub, "c") == ["user", "chatModel"]  # nothing new recorded
    assert not panel.send_button.disabled and not panel.busy


def test_server_errors_show_in_the_error_line(hub, server, oa, monkeypatch):
    monkeypatch.setattr(chat_module, "_backoff", lambda attempt, retry_after: 0)
    server.script(*[ScriptedReply(fault="500") for _ in range(chat_module.MAX_RETRIES + 1)])
    panel = ChatPanel(hub, "c", sync=True)
    panel.message.value = "hello"
    panel.send_button.click()

    assert "the server failed (500" in panel.error.value and "oa" in panel.error.value
    assert "failed" in panel.status.value
    assert _types(hub, "c") == ["user"]
    assert hub.store.find("Jobs")[-1]["status"] == "failed"
    assert not panel.send_button.disabled

    panel.message.value = "   "
    panel.send_button.click()
    assert "Nothing to send" in panel.error.value
    assert len(hub.store.find("Jobs")) == 1


def test_stop_interrupts_a_threaded_turn(hub, server, oa):
    server.script(ScriptedReply.lorem(300, token_delay=0.01))
    panel = ChatPanel(hub, "c")
    panel.message.value = "talk for a while"
    panel.send_button.click()
    _until(lambda: "lorem ipsum" in panel.conversation.value)  # streamed in while the turn runs
    assert panel.busy and panel.send_button.disabled and not panel.stop_button.disabled
    panel.stop_button.click()
    assert panel.wait(5)

    stream = hub.store.find("ResponseStream")[-1]
    assert stream["status"] == "interrupted"
    partial = hub.get_chat("c").messages()[-1]
    assert partial["data"] == {"status": "interrupted"} and 0 < len(partial["content"].split()) < 300
    job = hub.store.find("Jobs")[-1]
    assert job["status"] == "interrupted" and "interrupted" in job["error"]
    assert "(interrupted)" in panel.conversation.value and "stopped" in panel.status.value
    assert panel.error.value == ""

    server.script(ScriptedReply(text="back again"))  # usable again
    assert not panel.send_button.disabled
    panel.message.value = "are you there?"
    panel.send_button.click()
    assert panel.wait(5)
    assert hub.get_chat("c").messages()[-1]["content"] == "back again"
    assert hub.store.get("MessageThread", hub.get_chat("c").thread_id)["lockingJob"] is None


def test_tool_needing_permission_asks_in_the_panel(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("careful", model="oa", tools=[add], permission="user-permitted")
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]), ScriptedReply(text="It is 5."))
    panel = ChatPanel(hub, "perm")
    panel.connection.value = ("agent", "careful")
    panel.message.value = "2 + 3?"
    panel.send_button.click()
    _until(lambda: panel.approval.layout.display == "flex")
    assert "add" in panel.approval_prompt.value
    # the call waits for the user, and says so (not "running")
    assert "— waiting for approval" in panel.conversation.value and "— running" not in panel.conversation.value
    assert 'class="fa fa-hand-paper-o"' in panel.status.value and "waiting for your permission" in panel.status.value
    panel.allow_button.click()
    assert panel.wait(5)

    assert panel.error.value == ""
    [invocation] = hub.store.find("ToolInvocation")
    assert invocation["status"] == "completed"
    assert _types(hub, "perm") == ["user", "toolCall", "toolResult", "agent"]
    assert "<details" in panel.conversation.value and '<i class="fa fa-check"' in panel.conversation.value
    assert "It is 5." in panel.conversation.value and "1 tool call" in panel.status.value
    assert panel.approval.layout.display == "none"


def test_markdown_html_escapes_and_formats():
    out = markdown_html("**bold** and `a<b>` and *it* <script>x</script>\n```\nx = '<tag>'\n```\n- item")
    assert "<strong>bold</strong>" in out and "<code>a&lt;b&gt;</code>" in out and "<em>it</em>" in out
    assert "<pre>" in out and "&lt;tag&gt;" in out and "<li>item</li>" in out
    assert "<tag>" not in out and "<script>" not in out
    table = markdown_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n> quoted\n\n1. one\n   - nested")
    assert "<table>" in table and "<td>2</td>" in table and "<blockquote>" in table
    assert "<ol>" in table and "<li>nested</li>" in table
    assert 'href="javascript' not in markdown_html("[x](javascript:alert(1))")


# ---------------------------------------------------------------- HubPanel


def test_connections_tab_adds_removes_and_makes_default(hub, server):
    panel = HubPanel(hub)
    assert "No connections yet" in panel.connections_table.value
    panel.new_provider.value = "OPENAI"
    panel.new_model_id.value = "local-chat"
    panel.new_name.value = "oa"
    panel.new_endpoint.value = server.openai_base_url
    panel.new_key_env.value = "AIHUB_WIDGET_KEY"
    panel.add_button.click()
    assert panel.error.value == ""
    row = hub.store.first("ModelConnections", name="oa")
    assert row["data"] == {"base_url": server.openai_base_url, "api_key_env": "AIHUB_WIDGET_KEY"}
    assert "$AIHUB_WIDGET_KEY (not set)" in panel.connections_table.value and panel.new_name.value == ""

    panel.new_provider.value = "OLLAMA"
    assert panel.new_endpoint.description == "host"
    panel.new_model_id.value = "local-chat"
    panel.new_name.value = "ol"
    panel.new_endpoint.value = server.ollama_host
    panel.add_button.click()
    assert hub.store.first("ModelConnections", name="ol")["data"] == {"host": server.ollama_host}
    assert hub.default_connection()["name"] == "oa"  # the first one stays the default

    panel.connection_pick.value = "ol"
    panel.default_button.click()
    assert hub.default_connection()["name"] == "ol"

    panel.connection_pick.value = "oa"
    panel.remove_button.click()
    assert [r["name"] for r in hub.store.find("ModelConnections")] == ["ol"]
    assert panel.connection_pick.options == ("ol",) and "Removed" in panel.status.value

    panel.new_provider.value = "OPENAI"
    panel.add_button.click()  # no model id: an error line, no row, no exception
    assert "needs a model id" in panel.error.value
    assert hub.store.count("ModelConnections") == 1


def test_chats_tab_opens_a_chat_panel_and_jobs_tab_lists_its_turn(hub, server, oa):
    server.script(ScriptedReply(text="from before"))
    hub.chat("c").send("hello")
    panel = HubPanel(hub, sync=True)
    panel.select("Chats")
    assert 'text-align:left">c</td>' in panel.chats_table.value
    panel.chat_pick.value = "c"
    panel.open_button.click()
    chat_panel = panel.chat_area.children[0]
    assert isinstance(chat_panel, ChatPanel) and chat_panel is panel.chat_panel
    assert chat_panel.chat_name.value == "c" and "from before" in chat_panel.conversation.value

    chat_panel.message.value = "and now?"
    chat_panel.send_button.click()
    panel.select("Jobs")
    assert panel.jobs_table.value.count("chat turn: c") == 2 and "completed" in panel.jobs_table.value

    panel.chat_pick.value = ""  # (new chat): the same panel, emptied for a new name
    panel.open_button.click()
    assert panel.chat_area.children == (chat_panel,) and chat_panel.chat_name.value == ""


def test_agents_and_tools_tab_marks_unavailable_tools(hub, server, oa):
    hub.tool(add)
    hub.agent("helper", model="oa", tools=[add])
    other = Hub(hub.home)  # another session: the python tool's function is not defined there
    try:
        panel = HubPanel(other)
        panel.select("Agents & tools")
        assert "helper" in panel.agents_table.value and "add" in panel.agents_table.value
        assert "not defined in this session" in panel.tools_table.value
        assert "not defined" not in HubPanel(hub).tools_table.value
    finally:
        other.close()


def test_dashboard_tab_is_built_when_first_shown(hub, monkeypatch):
    panel = HubPanel(hub)
    assert panel.dashboard is None
    panel.select("Dashboard")

    assert isinstance(panel.dashboard, Dashboard) and panel.dashboard_area.children == (panel.dashboard,)

    monkeypatch.setitem(sys.modules, "aihub_nb.widgets.dashboard", None)  # an install without the plotting side
    bare = HubPanel(hub)
    bare.tabs.selected_index = TABS.index("Dashboard")
    assert bare.dashboard is None and "not available" in bare.dashboard_area.children[0].value
    assert bare.error.value == ""


def test_a_failure_before_the_turn_starts_leaves_the_panel_usable(hub, server, oa, monkeypatch):
    panel = ChatPanel(hub, "c")  # threaded, like in a notebook

    def broken(chat):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(panel, "_history_html", broken)
    panel.message.value = "hello"
    panel.send_button.click()
    assert panel.wait(5)
    assert "disk went away" in panel.error.value
    assert not panel.busy and not panel.send_button.disabled and panel.stop_button.disabled
    monkeypatch.undo()
    server.script(ScriptedReply(text="fine again"))
    panel.submit("hello again")
    assert panel.wait(5) and hub.get_chat("c").messages()[-1]["content"] == "fine again"


def test_removing_the_chats_connection_in_the_hub_panel_updates_the_open_chat(hub, server, oa):
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    server.script(ScriptedReply(text="via oa"))
    hub.chat("c").send("hello")
    panel = HubPanel(hub, sync=True)
    panel.chat_pick.value = "c"
    chat_panel = panel.open_chat()
    assert chat_panel.connection.value == ("model", "oa")

    panel.connection_pick.value = "ol"
    panel.default_button.click()
    panel.connection_pick.value = "oa"
    panel.remove_button.click()
    choices = [value for _, value in chat_panel.connection.options]
    assert ("model", "oa") not in choices  # the removed connection is no longer offered
    assert chat_panel.connection.value == ("model", "ol")  # the default, shown, instead of a dead end

    server.script(ScriptedReply(text="via ol"))
    chat_panel.message.value = "still there?"
    chat_panel.send_button.click()
    assert chat_panel.error.value == ""
    assert hub.get_chat("c").messages()[-1]["content"] == "via ol"
    assert server.requests[-1].path == "/api/chat"


def test_closing_the_hub_panel_stops_its_dashboard(hub):
    panel = HubPanel(hub)
    panel.select("Dashboard")
    panel.dashboard.auto_refresh(0.05)
    thread = panel.dashboard._timer
    panel.close()
    assert not thread.is_alive() and not panel.dashboard.refreshing


def test_sending_with_a_connection_removed_elsewhere_says_so_and_drops_it(hub, server, oa):
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    panel = ChatPanel(hub, "c", sync=True)
    panel.submit("hello")
    assert panel.connection.value == ("model", "oa")
    hub.remove_connection("oa")  # e.g. with %aihub connection remove, while the panel is open
    panel.message.value = "again"
    panel.send_button.click()
    assert "'oa' was removed" in panel.error.value and "with" in panel.error.value
    assert ("model", "oa") not in [value for _, value in panel.connection.options]
    assert _types(hub, "c") == ["user", "chatModel"] and not panel.busy
    panel.connection.value = ("model", "ol")
    panel.send_button.click()
    assert panel.error.value == "" and _types(hub, "c") == ["user", "chatModel", "user", "chatModel"]


def test_hub_panel_reopens_on_the_last_tab(hub):
    panel = HubPanel(hub)
    panel.select("Jobs")
    assert hub.store.first("UserSettings")["lastPage"] == "Jobs"
    again = HubPanel(hub)
    assert TABS[again.tabs.selected_index] == "Jobs"
    panel.close()
    again.close()


# ---------------------------------------------------------------- the panel base


def _visible_line(markup: str) -> str:
    """The error line as shown, without its folded traceback."""
    return markup.split("<details>")[0]


class _Counter(Panel):
    """A panel whose button runs whatever `action` is."""

    def __init__(self) -> None:
        super().__init__()
        self.action = lambda: None
        self.clicks = 0
        self.button = widgets.Button(description="go")
        self.button.on_click(self.guarded(self._go))
        self.set_children([self.button], self.status)

    def _go(self) -> None:
        self.action()
        self.clicks += 1
        self.status.value = f"clicked {self.clicks}"


def test_a_failing_callback_shows_one_line_in_the_panel_and_does_not_escape():
    panel = _Counter()
    assert panel.children[-1] is panel.error  # the error line is placed even when the layout omits it

    def broken():
        raise RuntimeError("the disk\nwent away")

    panel.action = broken
    panel.button.click()  # must not raise
    line = _visible_line(panel.error.value)
    assert "RuntimeError: the disk went away" in line and "\n" not in line
    assert "<details>" in panel.error.value and "Traceback" in panel.error.value and "broken" in panel.error.value
    assert panel.clicks == 0

    panel.action = lambda: None
    panel.button.click()  # the next action that succeeds clears it
    assert panel.error.value == "" and panel.status.value == "clicked 1"


def test_a_users_mistake_shows_its_message_without_a_traceback():
    panel = _Counter()

    def mistake():
        raise UsageError("Name the chat first: pick one or type a new name.")

    panel.action = mistake
    panel.button.click()
    assert "Name the chat first: pick one or type a new name." in panel.error.value
    assert "UsageError" not in panel.error.value and "<details>" not in panel.error.value
    assert panel.guard(mistake) is False and panel.guard(lambda: None) is True and panel.error.value == ""


def test_an_error_shown_during_a_guarded_action_is_kept():
    panel = _Counter()
    panel.action = lambda: panel.show_error("the turn failed (shown by its worker)")
    panel.button.click()
    assert "the turn failed" in panel.error.value


def test_every_panel_is_a_panel(hub):
    for panel in (ChatPanel(hub), HubPanel(hub), Dashboard(hub.store)):
        assert isinstance(panel, Panel) and panel.error in panel.children
        panel.close()


def test_the_chat_panels_error_clears_after_a_successful_refresh(hub, oa, monkeypatch):
    panel = ChatPanel(hub, "c", sync=True)

    def broken():
        raise RuntimeError("store unreadable")

    monkeypatch.setattr(hub, "chats", broken)
    panel.refresh_button.click()
    assert "RuntimeError: store unreadable" in _visible_line(panel.error.value)
    monkeypatch.undo()
    panel.refresh_button.click()
    assert panel.error.value == ""


def test_the_hub_panels_mistakes_show_their_message(hub):
    panel = HubPanel(hub)
    panel.remove_button.click()  # nothing to pick: no connections
    assert "Pick a connection first." in panel.error.value and "<details>" not in panel.error.value
    panel.new_provider.value = "local"
    panel.add_button.click()
    assert panel.error.value == "" and "Added connection 'local'" in panel.status.value


def test_a_panel_saved_in_a_notebook_carries_a_static_snapshot(hub, server, oa):
    from IPython.core.interactiveshell import InteractiveShell

    server.script(ScriptedReply(text="Saved **reply** <img src=x onerror=alert(1)>"))
    panel = ChatPanel(hub, "c", sync=True)
    panel.submit("hello")
    data, _ = InteractiveShell.instance().display_formatter.format(panel)
    assert "application/vnd.jupyter.widget-view+json" in data  # the live panel
    snapshot = data["text/html"]  # what a notebook without the widget's model can show
    assert "Saved <strong>reply</strong>" in snapshot and "hello" in snapshot and "tokens" in snapshot
    assert "<img" not in snapshot and "&lt;img" in snapshot  # the escaped view, not the raw reply
    assert "Allow" not in snapshot  # hidden parts stay out
    assert data["text/plain"].startswith("aihub_nb ChatPanel (an interactive panel")
    hub_data, _ = InteractiveShell.instance().display_formatter.format(HubPanel(hub))
    assert "oa" in hub_data["text/html"] and "local-chat" in hub_data["text/html"]
