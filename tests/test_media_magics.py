"""The magics for images and embeddings, driven through a real IPython InteractiveShell."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from aihub_nb import errors, magics, media
from aihub_nb.demo.model import draw
from aihub_nb.testing import ScriptedReply


@pytest.fixture
def nb(ip, hub, server):
    magics.use_hub(hub)
    url = server.openai_base_url
    ip.run_line_magic("aihub", f"connect OPENAI local-chat --name oa --base-url {url}")
    ip.run_line_magic("aihub", f"connect OPENAI local-image --name pics --type IMAGE --base-url {url}")
    ip.run_line_magic("aihub", f"connect OPENAI local-embed --name vec --type EMBEDDING --base-url {url}")
    yield ip
    magics.use_hub(None)


def test_connect_types_and_image_cell(nb, hub):
    assert {r["name"]: r["type"] for r in hub.store.find("ModelConnections")} == {"oa": "CHAT", "pics": "IMAGE", "vec": "EMBEDDING"}
    with capture_output() as captured:
        result = nb.run_cell_magic("aihub", "image art --model pics --size 32x16 --n 1", "a small boat")
    assert result.images[0] == draw("a small boat", 32, 16)
    assert [r["type"] for r in hub.get_chat("art").messages()] == ["user", "chatModel"]
    with pytest.raises(UsageError, match="is a CHAT connection"):
        nb.run_cell_magic("aihub", "image art2 --model oa", "x")
    with pytest.raises(errors.ProviderError, match="refused the image request"):
        nb.run_cell_magic("aihub", "image art --model pics --size 4000x4000", "x")


def test_embed_line_magic(nb, server):
    nb.user_ns["texts"] = ["a cat", "a dog"]
    with capture_output() as captured:
        nb.run_line_magic("aihub", "embed texts -o vecs --model vec")
    assert nb.user_ns["vecs"].shape == (2, 64) and nb.user_ns["vecs"].dtype == np.float32
    assert "vecs: 2 vectors (2 x 64 float32)" in captured.stdout
    with pytest.raises(UsageError, match="Cannot evaluate 'nothing_here'"):
        nb.run_line_magic("aihub", "embed nothing_here -o v")


def test_chat_cell_attaches_images_and_figures(nb, server, tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "p.png"
    path.write_bytes(draw("x", 12, 9))
    fig, ax = plt.subplots(figsize=(2, 1), dpi=40)
    nb.user_ns["fig"] = fig
    with capture_output():
        nb.run_cell_magic("aihub", f"chat look --model oa --image {path}", "Compare {fig} with the file.")
    plt.close(fig)
    sent = server.requests[-1].json["messages"][-1]["content"]
    assert sent[0] == {"type": "text", "text": "Compare [image 2] with the file."}
    assert [p["type"] for p in sent] == ["text", "image_url", "image_url"]


_HOSTILE_IMAGES = (
    "Look: ![x](data:image/png;base64,{b64}) and <img src=\"data:image/png;base64,{b64}\"> "
    "and <img src=https://example.com/x.png>"
)


def _img_sources(html_text: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html_text)


def test_chat_view_shows_attached_and_generated_images_never_the_models(nb, hub, server):
    attached = draw("attached", 10, 7)
    generated = draw("a small boat", 12, 8)
    b64 = base64.b64encode(draw("hostile", 9, 9)).decode()
    server.script(ScriptedReply(text=_HOSTILE_IMAGES.format(b64=b64)))
    hub.chat("look", model="oa").send("What is this?", images=[attached])
    with capture_output():
        nb.run_cell_magic("aihub", "image look --model pics --size 12x8", "a small boat")
        shown = nb.run_line_magic("aihub", "chat look")
    page = shown._repr_html_()
    assert _img_sources(page) == [media.data_url(attached), media.data_url(generated)]
    assert "&lt;img src=" in page  # the model's <img> shows as text
    assert "Look:" in page and "[image]" in str(shown)


def test_chat_panel_shows_the_attached_images_only(nb, hub, server):
    from aihub_nb.widgets.chat import ChatPanel

    attached = draw("panel", 11, 6)
    b64 = base64.b64encode(draw("hostile", 9, 9)).decode()
    server.script(ScriptedReply(text=_HOSTILE_IMAGES.format(b64=b64)))
    hub.chat("seen", model="oa").send("And this?", images=[attached])
    panel = ChatPanel(hub, "seen", sync=True)
    assert _img_sources(panel.conversation.value) == [media.data_url(attached)]
    for path in (hub.path.parent / "media").iterdir():
        path.unlink()  # a picture deleted outside aihub_nb: a note, not an error
    assert _img_sources(ChatPanel(hub, "seen", sync=True).conversation.value) == []
    assert "[image not available]" in ChatPanel(hub, "seen", sync=True).conversation.value
