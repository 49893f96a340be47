"""What a person sees in JupyterLab: the shipped notebooks after Run All, the panels, hostile replies.

Each test opens a notebook in headless Chromium, runs it from the Run menu, waits for the kernel
to be idle, and reads the page. See conftest.py for the server and the browser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from aihub_nb.store import Store, now_iso

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

PLACEHOLDERS = ("Error displaying widget", "<IPython.core.display", "object at 0x", "Traceback (most recent call last)")

# Which stored replies each shipped notebook shows (the others only print statuses or counts).
# Batch answers show as the cells of a Series or DataFrame (JSON answers as columns), not as replies.
REPLIES_SHOWN = {"quickstart": ("chatModel",), "agents": ("agent",), "monitoring": ("agent",), "batch": ()}
# The part of each notebook worth a screenshot.
FOCUS = {"quickstart": "%%aihub chat hello", "agents": "%%aihub chat maths", "monitoring": "%aihub dashboard",
         "multimodal": "%aihub chat look"}


def _words(text: str) -> str:
    """Text as compared with the page: Markdown punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[*_`#>|\[\]]", " ", text).split())


def _latest_home(lab) -> str:
    """The hub the notebook just wrote: the AIHUB_HOME (the server's or one the notebook made in
    its TMPDIR) whose database changed last."""
    dbs = [p for p in [lab.home / "aihub.db", *lab.tmp.glob("*/aihub.db")] if p.exists()]
    assert dbs, "no hub database was written"
    return str(max(dbs, key=lambda p: p.stat().st_mtime))


def _stored_replies(db: str, types: tuple[str, ...], since: str = "") -> list[str]:
    """The replies stored in `db` since `since` (an ISO time): other notebooks may share the hub."""
    store = Store(db)
    try:
        return [
            m["content"] for m in store.find("Message")
            if m["type"] in types and (m["content"] or "").strip() and m["createdAt"] >= since
        ]
    finally:
        store.close()


def _assert_ran_cleanly(cells: list[dict]) -> None:
    for cell in cells:
        source = cell["source"].strip().splitlines()[0] if cell["source"].strip() else "(empty cell)"
        assert not cell["errors"], f"cell {source!r} shows an error:\n{cell['errors'][0][:2000]}"
        assert re.fullmatch(r"\[\d+\]:", cell["prompt"].strip()), f"cell {source!r} did not run ({cell['prompt']!r})"


def _assert_no_placeholders(page) -> None:
    assert page.widgets_loaded(), "a widget never rendered: the page still says 'Loading widget...'"
    text = page.text()
    for bad in PLACEHOLDERS:
        assert bad not in text, f"the page shows {bad!r}: …{text[max(0, text.index(bad) - 300):text.index(bad) + 300]}…"


def _assert_images_loaded(page) -> None:
    broken = page.driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea img'))"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.src || '').slice(0, 80));")
    assert not broken, f"images that did not render: {broken}"


def _save_element(page, element, name: str) -> None:
    """A screenshot of one output (the whole of it: the window grows to hold it), beside the page's."""
    folder = os.environ.get("AIHUB_SCREENSHOTS")
    if not folder:
        return
    size = page.driver.get_window_size()
    try:
        height = page.driver.execute_script("return arguments[0].getBoundingClientRect().height", element)
        page.driver.set_window_size(size["width"], max(size["height"], int(height) + 300))
        page.scroll_to(element, block="start")
        page.settle(quiet=0.5)
        Path(folder).mkdir(parents=True, exist_ok=True)
        element.screenshot(str(Path(folder) / f"{name}.png"))
    finally:
        page.driver.set_window_size(size["width"], size["height"])


def _widget_labels(page, output) -> set[str]:
    """The labels, button texts and tab titles a widget output shows."""
    return {e.text.strip() for e in page.css(
        ".widget-label, .widget-button, .lm-TabBar-tabLabel, .widget-checkbox", output) if e.text.strip()}


@pytest.mark.parametrize("notebook", [nb.name for nb in NOTEBOOKS], ids=[nb.stem for nb in NOTEBOOKS])
def test_shipped_notebook_runs_all(page, lab, notebook):
    stem = notebook.removesuffix(".ipynb")
    page.open(notebook)
    started = now_iso()
    cells = page.run_all()

    _assert_ran_cleanly(cells)
    _assert_no_placeholders(page)
    _assert_images_loaded(page)

    # Every reply the notebook shows is on the page as the store holds it.
    types = REPLIES_SHOWN.get(stem, ("chatModel", "agent"))
    replies = _stored_replies(_latest_home(lab), types, since=started)
    assert replies or not types, f"{notebook} stored no replies"
    text = _words(page.text())
    for reply in replies:
        first_line = _words(next(line for line in reply.splitlines() if line.strip()))
        assert first_line in text, f"the reply {first_line!r} is not on the page"

    # Widgets render as widgets: the dashboard shows its choices, its plots and the summary.
    outputs = page.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    for cell, element in zip(cells, outputs):
        if cell["source"].strip().startswith("%aihub dashboard"):
            labels = _widget_labels(page, element)
            assert {"metric", "group by", "window", "Refresh"} <= labels, f"dashboard shows only {labels}"
            assert page.css(".widget-image", element), "the dashboard shows no plot"
            assert "p50 latency" in element.text, "the dashboard shows no per-model summary"
            assert page.css("table.aihub-table", element), "the summary is not styled as the hub's tables"
            _save_element(page, element, "dashboard")

    focus = [el for cell, el in zip(cells, outputs) if cell["source"].startswith(FOCUS.get(stem, "\0"))]
    if focus:
        page.scroll_to(focus[0], block="start")


SETUP = """\
import os, tempfile
os.environ["AIHUB_HOME"] = tempfile.mkdtemp(prefix="aihub-browser-")
%load_ext aihub_nb
%aihub connect local"""


def _panel(page, cells: list[dict]):
    """The output element of the last cell (the panel under test)."""
    outputs = page.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea")
    assert len(outputs) == len(cells)
    return outputs[-1]


def test_hub_panel_tabs(page, lab):
    lab.create_notebook("hub-panel.ipynb", [
        SETUP,
        'from aihub_nb.magics import default_hub\ndefault_hub().chat("hello").send("What is WAL mode?").status',
        "%aihub hub",
    ])
    page.open("hub-panel.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    _assert_no_placeholders(page)
    panel = _panel(page, cells)

    tabs = {t.text.strip(): t for t in page.css(".lm-TabBar-tab", panel)}
    assert list(tabs) == ["Connections", "Chats", "Agents & tools", "Jobs", "Dashboard", "Settings"]
    assert "local-chat" in panel.text and {"Add", "Remove", "Make default"} <= _widget_labels(page, panel)

    tabs["Jobs"].click()
    page.wait(lambda: "completed" in panel.text, message="the Jobs tab shows no completed job")
    tabs["Dashboard"].click()
    page.wait(lambda: {"metric", "group by", "window"} <= _widget_labels(page, panel) and page.css(".widget-image", panel),
              message="the Dashboard tab shows no dashboard")
    tabs["Chats"].click()
    page.wait(lambda: "hello" in panel.text, message="the Chats tab does not list the chat")
    from selenium.webdriver.support.select import Select

    pick = [s for s in page.css(".widget-dropdown select", panel) if s.is_displayed()][0]
    Select(pick).select_by_visible_text("hello")
    [b for b in page.css(".widget-button", panel) if b.text.strip() == "Open" and b.is_displayed()][0].click()
    # The chat opens under the table with its conversation.
    page.wait(lambda: "What is WAL mode?" in panel.text and "Send" in _widget_labels(page, panel),
              message="Open did not show the chat")
    page.scroll_to(panel, block="start")


def test_saved_panel_after_restart(page, lab):
    """A notebook saved with a panel, its kernel shut down, the page reloaded: the panel shows as it
    was (JupyterLab saved its widget state in the notebook), not "model not found"."""
    name = "hub-saved.ipynb"
    lab.create_notebook(name, [
        SETUP,
        'from aihub_nb.magics import default_hub\ndefault_hub().chat("kept").send("What is WAL mode?").status',
        "%aihub hub",
    ])
    page.open(name)
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    _assert_no_placeholders(page)
    page.settle()
    # The toolbar's save button, as a person saves.
    page.css('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar [data-command="docmanager:save"]')[0].click()

    def saved():
        nb = lab.api("GET", f"/api/contents/{name}")["content"]
        return nb if nb["metadata"].get("widgets") and nb["cells"][-1]["outputs"] else None

    nb = page.wait(saved, message="saving did not store the widget state in the notebook")
    (output,) = nb["cells"][-1]["outputs"]
    assert {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"} <= set(output["data"])
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert output["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] in state

    for session in lab.api("GET", "/api/sessions"):  # the kernel is gone: its widget models with it
        lab.api("DELETE", f"/api/sessions/{session['id']}")
    assert lab.api("GET", "/api/kernels") == []
    page.driver.refresh()
    page.open(name)
    _assert_no_placeholders(page)
    panel = page.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea")[-1]
    page.wait(lambda: [t.text.strip() for t in page.css(".lm-TabBar-tab", panel)]
              == ["Connections", "Chats", "Agents & tools", "Jobs", "Dashboard", "Settings"],
              message="the reopened notebook does not show the hub panel's tabs")
    assert "local-chat" in panel.text
    assert "model not found" not in page.text()
    # Its widgets are not live: one line on the panel says so, not a broken-link icon on each widget.
    marks = page.driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.jupyter-widgets-disconnected'))"
        ".map(e => getComputedStyle(e, '::before')).filter(s => s.display !== 'none').map(s => s.content);", panel)
    assert marks == ['"saved view: run the cell again for the live panel"'], marks
    page.scroll_to(panel, block="start")


def test_chat_panel_sends_and_streams(page, lab):
    words = ["WAL", "mode", "keeps", "readers", "and", "one", "writer", "apart,", "so", "reads", "never", "block."]
    chunks = [w if i == 0 else " " + w for i, w in enumerate(words)]
    lab.create_notebook("chat-panel.ipynb", [
        SETUP,
        "from aihub_nb.connections import builtin_server\nfrom aihub_nb.testing import ScriptedReply\n"
        f"builtin_server().script(ScriptedReply(chunks={chunks!r}, token_delay=0.25))",
        "%aihub panel sqlite",
    ])
    page.open("chat-panel.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    _assert_no_placeholders(page)
    panel = _panel(page, cells)
    assert {"Send", "Stop"} <= _widget_labels(page, panel)

    page.type_into(page.css("textarea", panel)[0], "What is WAL mode?")
    [b for b in page.css(".widget-button", panel) if b.text.strip() == "Send"][0].click()

    reply = "".join(chunks)
    seen: list[str] = []

    def finished():
        text = " ".join(panel.text.split())
        if not seen or seen[-1] != text:
            seen.append(text)
        return reply in text

    page.wait(finished, message="the reply never completed in the panel")
    assert "What is WAL mode?" in seen[-1], "the panel does not show the user's message"
    partial = [t for t in seen if "WAL mode keeps" in t and reply not in t]
    assert partial, "the reply appeared at once, not streamed"
    page.wait(lambda: not page.css("textarea", panel)[0].get_attribute("value")
              and [b for b in page.css(".widget-button", panel) if b.text.strip() == "Stop"][0].get_attribute("disabled"),
              message="the panel stayed busy after the reply")

    # Enter sends, Shift+Enter is a newline (and does not run the cell: the panel stays one output)
    from selenium.webdriver.common.keys import Keys

    box = page.css("textarea", panel)[0]
    box.click()
    box.send_keys("line one", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "line two")
    page.settle()
    assert box.get_attribute("value") == "line one\nline two", "Shift+Enter did not add a new line"
    box.send_keys(Keys.ENTER)
    page.wait(lambda: "line two" in panel.text and not page.css("textarea", panel)[0].get_attribute("value"),
              message="Enter did not send the message")


# Each payload, if it ran, records itself in window.pwned and changes the tab's title.
_RAN = "(window.pwned=window.pwned||[]).push('{0}');document.title='pwned'"
HOSTILE = "\n\n".join([
    "Here is the page you asked for.",
    f'<img src=x onerror="{_RAN.format("img")}">',
    f'<svg onload="{_RAN.format("svg")}"><circle r="5"/></svg>',
    f"<script>{_RAN.format('script')}</script>",
    '<iframe srcdoc="<script>parent.pwned=(parent.pwned||[]).concat([\'iframe\']);'
    "parent.document.title='pwned'</script>\"></iframe>",
    f'<details open ontoggle="{_RAN.format("details")}">more</details>',
    "[a link](javascript:document.title='pwned') and <a href=\"javascript:document.title='pwned'\">another</a>",
    "End of page.",
])
# Every element, attribute and URL in the notebook's outputs that could run script.
_JS_ACTIVE = """
const hits = [];
for (const el of document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea *')) {
  const tag = el.tagName.toLowerCase();
  if (['script', 'iframe', 'object', 'embed'].includes(tag)) hits.push('<' + tag + '>');
  for (const a of el.attributes) {
    if (/^on/i.test(a.name)) hits.push('<' + tag + ' ' + a.name + '>');
    if (/^(href|src|xlink:href|action|formaction|srcdoc)$/i.test(a.name) && /^\\s*javascript:/i.test(a.value))
      hits.push('<' + tag + ' ' + a.name + '=' + a.value.slice(0, 30) + '>');
  }
}
return hits;
"""


def test_hostile_reply_does_not_run(page, lab):
    """A reply (or tool result) full of HTML and script is shown as text on every display path:
    the chat cell, the chat listing, the rendered snapshot, a Reply object, an agent's tool call
    and answer, and the chat panel."""
    lab.create_notebook("hostile.ipynb", [
        SETUP,
        "from aihub_nb.connections import builtin_server\nfrom aihub_nb.magics import default_hub\n"
        f"from aihub_nb.testing import ScriptedReply\nHOSTILE = {HOSTILE!r}\n"
        "builtin_server().script(ScriptedReply(text=HOSTILE), ScriptedReply(text=HOSTILE))",
        "%%aihub chat page\nSummarise https://example.com for me.",
        "%aihub chat page",
        "%aihub render page",
        'reply = default_hub().chat("page").send("And again?")\nreply',
        "hub = default_hub()\nhub.connect_local('local-tools', name='tools')\n\n"
        "@hub.tool\ndef fetch_page(url: str) -> str:\n    \"\"\"Fetch a web page.\"\"\"\n    return HOSTILE\n\n"
        "hub.agent('reader', model='tools', tools=[fetch_page])",
        '%%aihub chat reading --agent reader\nPlease call fetch_page(url="https://example.com")',
        "%aihub panel page",
    ])
    page.open("hostile.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    _assert_no_placeholders(page)

    # Each display shows the reply, as text.
    outputs = page.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea")
    for cell, output in zip(cells, outputs):
        if cell["source"].startswith(("%%aihub chat", "%aihub chat", "%aihub render", "reply =", "%aihub panel")):
            page.wait(lambda: "Here is the page you asked for." in output.text and "End of page." in output.text,
                      message=f"{cell['source'].splitlines()[0]!r} does not show the reply")

    # Let every image load or fail (an onerror handler would have run by then).
    page.wait(lambda: page.driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea img')).every(i => i.complete)"))
    ran = page.driver.execute_script("return window.pwned || []")
    assert not ran, f"script from the model's reply ran in the page: {ran}"
    assert "pwned" not in page.driver.title, f"the reply changed the tab's title to {page.driver.title!r}"
    active = page.driver.execute_script(_JS_ACTIVE)
    assert not active, f"the outputs hold elements that can run script: {sorted(set(active))}"
    page.scroll_to(outputs[2], block="start")


def test_setup_panel_on_a_new_home(page, lab):
    lab.create_notebook("setup.ipynb", [
        'import os, tempfile\nos.environ["AIHUB_HOME"] = tempfile.mkdtemp(prefix="aihub-browser-")\n%load_ext aihub_nb',
    ])
    page.open("setup.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    panel = _panel(page, cells)
    page.wait(lambda: "Set up aihub_nb" in panel.text and "Found no model" in panel.text,
              message="a new home shows no setup panel")
    assert {"Connect", "Look again", "Not now"} <= _widget_labels(page, panel)
    assert "demo model" in panel.text
    [b for b in page.css(".widget-button", panel) if b.text.strip() == "Connect"][0].click()
    page.wait(lambda: "Connected local; the default is local" in panel.text, message="Connect did not connect the demo model")


def test_hub_sidebar_opens_and_its_tabs_work(page, lab):
    lab.create_notebook("sidebar.ipynb", [SETUP, "%aihub hub --side"])
    page.open("sidebar.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    assert "side area" in _panel(page, cells).text

    def side():
        found = [el for el in page.css("#jp-right-stack .lm-TabBar-tab") if el.is_displayed()]
        return found or None

    page.wait(side, message="the hub did not open in the side area")
    area = page.css("#jp-right-stack")[0]
    tabs = {t.text.strip(): t for t in page.css(".lm-TabBar-tab", area) if t.text.strip()}
    assert {"Connections", "Jobs", "Settings"} <= set(tabs)
    tabs["Settings"].click()
    page.wait(lambda: "theme" in area.text and "default" in area.text, message="the Settings tab shows no settings")
    tabs["Connections"].click()
    page.wait(lambda: "local-chat" in area.text, message="the Connections tab shows no connection")


def test_dark_theme_gives_dark_plots(page, lab):
    lab.create_notebook("dark.ipynb", [
        SETUP,
        "%aihub settings theme dark",
        'from aihub_nb.magics import default_hub\ndefault_hub().chat("c").send("hi").status',
        "from aihub_nb import plots\nplots.latency_distribution(default_hub().store);",
    ])
    page.open("dark.ipynb")
    cells = page.run_all()
    _assert_ran_cleanly(cells)
    images = page.css("img", _panel(page, cells))
    assert images, "the plot shows no image"
    import base64
    import io

    import matplotlib.image as mpimg

    src = images[0].get_attribute("src")
    pixels = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    corner, middle = pixels[3, 3][:3], pixels[pixels.shape[0] // 2, pixels.shape[1] // 2][:3]
    assert corner.mean() < 0.15 and middle.mean() < 0.5, "a dark theme drew a light plot"
