"""Section 7: the hostile reply corpus (tests/test_views.py) through every display of a reply.

Each attack is the scripted reply of a real turn over HTTP (OpenAI and Ollama, streamed and
whole); what it shows is audited with the test suite's own checker for anything that could run or
load: the Reply's bundle, the whole Chat's bundle, the stored snapshot (`hub.render`) shown back,
and a tool call whose arguments and result carry the attack. Also counted: outputs that offer
`text/markdown` (which JupyterLab renders with raw HTML in it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply
from aihub_nb.views import snapshot_view, tool_call_view

from .common import ROOT, Section, table


def corpus() -> ModuleType:
    """tests/test_views.py, for its HOSTILE corpus and its `problems` audit."""
    spec = importlib.util.spec_from_file_location("_hostile_views", ROOT / "tests" / "test_views.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run(section: Section, server: LocalServer, tmp: Path) -> None:
    views = corpus()
    hostile: list[str] = views.HOSTILE
    hub = Hub(tmp / "display")
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url, api_key="x")
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    counts: dict[str, list[int]] = {}  # path -> [outputs, with live HTML, offering markdown]
    first_bad: list[str] = []

    def audit(path: str, bundle: dict[str, str], payload: str) -> None:
        seen = counts.setdefault(path, [0, 0, 0])
        seen[0] += 1
        found = views.problems(bundle.get("text/html", ""))
        if found:
            seen[1] += 1
            if len(first_bad) < 5:
                first_bad.append(f"{path}: {payload[:50]!r} -> {found[:3]}")
        seen[2] += "text/markdown" in bundle

    try:
        for connection in ("oa", "ol"):
            for stream in (True, False):
                name = f"hostile-{connection}-{'stream' if stream else 'whole'}"
                chat = hub.chat(name, model=connection)
                for payload in hostile:
                    server.script(ScriptedReply(payload))
                    reply = chat.send("Show me something.", stream=stream)
                    audit("reply (%%aihub chat, Reply)", reply._repr_mimebundle_(), payload)
                audit("whole chat (%aihub chat NAME, Chat)", chat._repr_mimebundle_(), name)
                audit("stored snapshot (%aihub render NAME)", snapshot_view(name, hub.render(name))._repr_mimebundle_(), name)
        for payload in hostile:
            audit("tool call (arguments and result)", tool_call_view(payload, {"x": payload}, "completed", payload)._repr_mimebundle_(), payload)
    finally:
        hub.close()
        server.reset()
    rows = [(path, n, live, md) for path, (n, live, md) in counts.items()]
    total = sum(n for n, _, _ in counts.values())
    live = sum(v[1] for v in counts.values())
    markdown = sum(v[2] for v in counts.values())
    section.lines.append(
        f"{len(hostile)} attacks (scripts, event handlers, javascript:/data: links, srcdoc, styles) x "
        "{OpenAI, Ollama} x {stream, whole} as real replies, and as a tool call's arguments and result"
    )
    section.lines += table(("display", "outputs", "with live HTML", "offering markdown"), rows, right={1, 2, 3})
    section.lines += [f"  LIVE {line}" for line in first_bad]
    section.check("displays of hostile output with no live HTML", total - live, total)
    section.check("displays of hostile output not offered as markdown", total - markdown, total)
    section.data["display"] = {"outputs": total, "live": live, "markdown": markdown}
    section.headline = f"{len(hostile)} attacks, {total} displays: {live} with live HTML, {markdown} offering markdown"
