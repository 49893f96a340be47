"""What the magics, the panels and the reprs show of a conversation: one renderer, sanitised.

Model and tool text is hostile input (a prompt-injected page or tool result can say anything),
and JupyterLab trusts the outputs of cells it ran, so nothing a model or a tool wrote may reach
the page as live HTML:

- Markdown becomes HTML with mistune, `escape=True`: HTML written in the text shows as text.
- That HTML then goes through an allow-list sanitiser (nh3): formatting tags only, no event
  handlers, styles or scripts, links only to absolute http, https and mailto URLs. Images are
  shown as links and never loaded (a loaded image can carry data out in its URL).
- Every display is a `Shown`: sanitised `text/html` plus the plain `text/plain`, never
  `text/markdown`, so a saved or exported notebook holds no live script either.
- The pictures a conversation holds (the user's attachments, generated images) are the only
  images shown: `<img>` tags built here from image bytes the caller read from its own media
  files (`images={ref: (mime, bytes)}`), added after the model's text has been sanitised.
- Names, labels and tool arguments are escaped; in prompts that ask for a decision, invisible
  characters (controls, bidi overrides, zero-width) are shown as escapes (`visible`).

mistune and nh3 load on first use.
"""

from __future__ import annotations

import base64
import functools
import html
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .display import cell_text

__all__ = [
    "Shown",
    "block",
    "chat_view",
    "code_view",
    "conversation_html",
    "conversation_text",
    "frame",
    "icon",
    "markdown_html",
    "note",
    "reply_view",
    "rendered_message",
    "sanitize_html",
    "small",
    "snapshot_view",
    "source_names",
    "target_label",
    "text_view",
    "tool_call_html",
    "tool_call_view",
    "tool_event_view",
    "turn_footer",
    "visible",
]

URL_SCHEMES = frozenset({"http", "https", "mailto"})
RESULT_LIMIT = 10_000  # characters of a tool result shown in a block (the store keeps all of it)

_TAGS = frozenset({
    "a", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
})
_ALIGN = {"style": {"text-align:left", "text-align:right", "text-align:center"}}


@functools.cache
def _cleaner() -> Any:
    import nh3

    return nh3.Cleaner(
        tags=set(_TAGS),
        clean_content_tags={"script", "style"},
        attributes={"a": {"href", "title"}, "ol": {"start"}},
        tag_attribute_values={"th": _ALIGN, "td": _ALIGN},
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


@functools.cache
def _markdown() -> Any:
    import mistune
    from mistune.util import striptags

    class Renderer(mistune.HTMLRenderer):
        def image(self, text: str, url: str, title: str | None = None) -> str:
            # shown as a link, never loaded
            return self.link(f"[image: {striptags(text) or 'no description'}]", url, title)

    return mistune.create_markdown(renderer=Renderer(escape=True), plugins=["table", "strikethrough", "url"])


def sanitize_html(fragment: str) -> str:
    """An HTML fragment through the allow-list: formatting tags, safe links, nothing that runs."""
    return _cleaner().clean(fragment or "")


def markdown_html(text: str) -> str:
    """Model or tool text (Markdown) as safe HTML: tables, lists, quotes, code, links to http,
    https and mailto; any HTML in the text shown as text."""
    return sanitize_html(_markdown()(text or ""))


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------- invisible characters

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_REPEATED_ESCAPE = re.compile(r"(\\[nrt]|\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2})\1{3,}")  # also as JSON wrote it


def _hidden(ch: str) -> bool:
    """A character that does not show as itself: controls, format (bidi, zero-width), separators."""
    if ch == " ":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: Any, limit: int | None = 300, *, multiline: bool = False) -> str:
    """`text` with nothing hidden, for a prompt that asks the user to decide: control, bidi and
    zero-width characters as escapes (`\\u202e`), runs of padding counted (`⟨40 spaces⟩`,
    `\\n×30`), and past `limit` characters cut with a note. `multiline` keeps spaces, newlines
    and tabs as they are (a block of output). Returns plain text: escape it for HTML."""
    text = str(text)
    out: list[str] = []
    for ch, run in itertools.groupby(text):
        count = len(list(run))
        if multiline and ch in " \n\t":
            out.append(ch * count)
        elif ch == " ":
            out.append(f" ⟨{count} spaces⟩ " if count > 3 else " " * count)
        elif _hidden(ch):
            out.append(f"{_escaped(ch)}×{count}" if count > 3 else _escaped(ch) * count)
        else:
            out.append(ch * count)
    shown = _REPEATED_ESCAPE.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", "".join(out))
    if limit is not None and len(shown) > limit:
        rest = len(shown) - limit
        shown = f"{shown[:limit]}… ({rest} more characters)"
    return shown


# ---------------------------------------------------------------- pieces


class Shown:
    """A display: sanitised HTML for a notebook, plain text for a terminal or a log.

    Its mime bundle is `text/html` + `text/plain`; `.data` is the HTML (like IPython's HTML)."""

    def __init__(self, html_text: str, text: str) -> None:
        self.data = html_text
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.data, "text/plain": self.text}

    def _repr_html_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


_BOX = "border-radius:6px;padding:6px 10px;margin:4px 0;"
_STYLES = {
    "user": "background:rgba(33,150,243,.10);",
    "assistant": "background:rgba(127,127,127,.08);",
    "system": "background:rgba(255,193,7,.12);font-size:90%;",
}
_CSS = (
    "<style>.aihub-chat table{border-collapse:collapse;margin:4px 0}"
    ".aihub-chat th,.aihub-chat td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    ".aihub-chat blockquote{border-left:3px solid #ccc;margin:4px 0;padding-left:8px;color:#555}"
    ".aihub-chat p{margin:2px 0}.aihub-chat pre{margin:4px 0;overflow-x:auto;white-space:pre-wrap}</style>"
)
# Status icons from the icon font JupyterLab and ipywidgets ship (Font Awesome, with its v4 names),
# not emoji, which show as empty boxes where no emoji font is installed; the status word is always
# written next to the icon, so a page without the font loses nothing.
_ICONS = {
    "running": "fa-cog", "waiting for approval": "fa-hand-paper-o", "completed": "fa-check", "failed": "fa-times",
    "denied": "fa-ban", "interrupted": "fa-stop", "not run": "fa-minus", "requested": "fa-wrench",
    "sending": "fa-paper-plane", "stopping": "fa-stop",
}
_ICON_COLORS = {"completed": "#2e7d32", "failed": "#b00020", "denied": "#b00020", "waiting for approval": "#e65100"}


def icon(status: str) -> str:
    """A status as an icon of the icon font (`<i class="fa fa-check">`), colored by outcome."""
    color = _ICON_COLORS.get(status)
    style = f' style="color:{color}"' if color else ""
    return f'<i class="fa {_ICONS.get(status, "fa-circle-o")}"{style} aria-hidden="true"></i>'

_LABELS = {"user": "You", "chatModel": "Model", "agent": "Agent", "system": "System", "toolCall": "Tool call", "toolResult": "Tool result"}


def block(label: str, role: str, body: str, suffix: str = "") -> str:
    """One message: its speaker (escaped) over `body` (HTML already made safe)."""
    return f'<div style="{_BOX}{_STYLES.get(role, "")}"><b>{_escape(label)}</b>{suffix}<div>{body}</div></div>'


def frame(body: str, *, scroll: bool = True) -> str:
    """A conversation box; `scroll`: at most 480 px high, staying at its newest message (a
    reversed flex column starts scrolled to the bottom)."""
    if not scroll:
        return f'{_CSS}<div class="aihub-chat">{body}</div>'
    return (
        f'{_CSS}<div class="aihub-chat" style="max-height:480px;overflow-y:auto;display:flex;'
        f'flex-direction:column-reverse"><div>{body}</div></div>'
    )


def note(text: str) -> str:
    return f'<div style="color:#666"><small>{_escape(text)}</small></div>'


def small(text: str) -> str:
    return f'<small style="color:#666">{_escape(text)}</small>'


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        try:
            return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
        except ValueError:
            return arguments
    return json.dumps(arguments, ensure_ascii=False, default=str)


def tool_call_html(name: Any, arguments: Any, status: str, result: Any) -> str:
    """A tool call as a collapsible block: name, arguments and status on the summary line (shown
    with nothing hidden, cut when long), the full arguments and the result inside."""
    args = _arguments_text(arguments)
    summary = f"{visible(name, 80)}({visible(args, 120)})"
    parts = []
    if args:
        parts.append(f'<div><small>arguments</small><pre>{_escape(visible(args, RESULT_LIMIT, multiline=True))}</pre></div>')
    if result is not None:
        parts.append(f'<div><small>result</small><pre>{_escape(visible(result, RESULT_LIMIT, multiline=True))}</pre></div>')
    elif status == "running":
        parts.append("<em>running…</em>")
    elif status == "waiting for approval":
        parts.append("<em>waiting for your permission to run…</em>")
    return (
        f'<details style="margin:4px 0"><summary>{icon(status)} <code>{_escape(summary)}</code> '
        f"— {_escape(status)}</summary>{''.join(parts)}</details>"
    )


def _tool_call_text(name: Any, arguments: Any, status: str, result: Any) -> str:
    line = f"[tool {visible(name, 80)}({visible(_arguments_text(arguments), 200)}) — {status}]"
    return f"{line}\n{result}" if result is not None else line


def tool_call_view(name: Any, arguments: Any, status: str, result: Any) -> Shown:
    """One tool call as its own display (the block, and a line of plain text)."""
    return Shown(tool_call_html(name, arguments, status, result), _tool_call_text(name, arguments, status, result))


def tool_event_view(data: dict[str, Any], status: str | None = None) -> Shown:
    """A tool call from a turn's event data (name, arguments, status, result), as it runs
    (`status` "running") and once it has its result."""
    return tool_call_view(data.get("name", "?"), data.get("arguments"), status or data.get("status", "running"), data.get("result"))


def code_view(source: str) -> Shown:
    """Source code, escaped, in a preformatted block."""
    return Shown(f"<pre>{_escape(source)}</pre>", source)


def target_label(row: dict[str, Any] | None, *, agent: bool = False) -> str:
    """What a chat talks to, named the same in every display: a connection row as
    "name (model id)", an agent row (`agent=True`) as "agent name"; None (it was removed) says so."""
    if row is None:
        return "(removed agent)" if agent else "(removed connection)"
    return f"agent {row['name']}" if agent else f"{row['name']} ({row['modelId']})"


def source_names(store: Any) -> dict[str, str]:
    """Who said it, by a message's sourceId: each connection and agent as `target_label` names it."""
    names = {r["id"]: target_label(r) for r in store.find("ModelConnections")}
    names.update({r["id"]: target_label(r, agent=True) for r in store.find("Agent")})
    return names


# ---------------------------------------------------------------- a conversation


Images = Mapping[str, tuple[str, bytes]]  # a `media:` reference -> (MIME type, the image's bytes)
_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def image_html(ref: str, images: Images | None) -> str:
    """One picture of the conversation as an inline `<img>` from its bytes (never a URL from a
    message), or a note when the bytes are not at hand."""
    found = (images or {}).get(ref)
    if found is None or found[0] not in _IMAGE_MIMES:
        return note("[image not available]")
    mime, data = found
    encoded = base64.b64encode(data).decode("ascii")
    return f'<div><img src="data:{mime};base64,{encoded}" alt="image" style="max-width:100%;max-height:360px"></div>'


def _with_images(pieces: list[tuple], data: dict[str, Any]) -> list[tuple]:
    refs = data.get("images") or []
    return pieces + [("image", ref) for ref in refs if isinstance(ref, str)]


def _items(messages: list[dict[str, Any]], names: dict[str, str]) -> Iterable[tuple[str, str, str, list[tuple]]]:
    """The thread as (label, role, status, pieces); a piece is ("text", str), ("image", ref) or
    ("tool", name, arguments, status, result). Tool results are shown inside the call that asked
    for them."""
    results = {(m.get("data") or {}).get("tool_call_id"): m for m in messages if m["type"] == "toolResult"}
    shown: set[Any] = set()
    for row in messages:
        kind = row["type"]
        data = row.get("data") or {}
        status = data.get("status") if data.get("status") in ("interrupted", "failed") else ""
        if kind == "user":  # marked when its turn failed or was interrupted
            yield "You", "user", status, _with_images([("text", row["content"])], data)
        elif kind == "system":
            yield "System", "system", "", [("text", row["content"])]
        elif kind in ("chatModel", "agent"):
            label = names.get(row.get("sourceId"), "Model" if kind == "chatModel" else "Agent")
            yield label, "assistant", status, _with_images([("text", row["content"])], data)
        elif kind == "toolCall":
            pieces: list[tuple] = [("text", row["content"])] if row["content"] else []
            for call in data.get("tool_calls", []):
                fn = call.get("function", {})
                result = results.get(call.get("id"))
                shown.add(call.get("id"))
                if result is None:
                    pieces.append(("tool", fn.get("name", "?"), fn.get("arguments"), "not run", None))
                else:
                    rstatus = (result.get("data") or {}).get("status", "completed")
                    pieces.append(("tool", fn.get("name", "?"), fn.get("arguments"), rstatus, result["content"]))
            yield names.get(row.get("sourceId"), "Agent"), "assistant", "", pieces
        elif kind == "toolResult" and data.get("tool_call_id") not in shown:
            piece = ("tool", data.get("name", "?"), None, data.get("status", "completed"), row["content"])
            yield "Tool result", "assistant", "", [piece]


def _piece_html(piece: tuple, images: Images | None) -> str:
    if piece[0] == "text":
        return markdown_html(piece[1])
    if piece[0] == "image":
        return image_html(piece[1], images)
    return tool_call_html(*piece[1:])


def conversation_html(
    messages: list[dict[str, Any]], names: dict[str, str] | None = None, *, images: Images | None = None
) -> str:
    """A thread's messages as safe HTML: one block per message, tool calls as collapsible blocks
    holding their results. `names` maps a message's sourceId to the connection or agent name;
    `images` holds the bytes of the pictures the messages reference (`data.images`)."""
    parts = []
    for label, role, status, pieces in _items(messages, names or {}):
        body = "".join(_piece_html(p, images) for p in pieces)
        suffix = f" <em>({_escape(status)})</em>" if status else ""
        parts.append(block(label, role, body, suffix))
    return "".join(parts)


def conversation_text(messages: list[dict[str, Any]], names: dict[str, str] | None = None) -> str:
    """The same thread as plain text."""
    parts = []
    for label, _role, status, pieces in _items(messages, names or {}):
        body = "\n".join(
            p[1] if p[0] == "text" else "[image]" if p[0] == "image" else _tool_call_text(*p[1:]) for p in pieces
        )
        parts.append(f"{label}{f' ({status})' if status else ''}: {body}")
    return "\n\n".join(parts)


def chat_view(
    name: str, messages: list[dict[str, Any]], names: dict[str, str] | None = None, *, images: Images | None = None
) -> Shown:
    """A whole chat, as `%aihub chat NAME` and a Chat in a cell show it, with its pictures."""
    if not messages:
        return Shown(f"<p><b>{_escape(name)}</b>: no messages yet.</p>", f"{name}: no messages yet.")
    title = f'<p style="margin:4px 0"><b>Chat {_escape(name)}</b></p>'
    return Shown(
        frame(title + conversation_html(messages, names, images=images), scroll=False),
        f"Chat {name}\n\n{conversation_text(messages, names)}",
    )


def reply_view(text: str, tool_calls: list[dict[str, Any]] | None = None) -> Shown:
    """One reply (and the tool calls it made): what `%%aihub chat` streams and a Reply shows."""
    calls = tool_calls or []
    body = "".join(tool_call_html(c.get("name", "?"), c.get("arguments"), c.get("status", ""), c.get("result")) for c in calls)
    body += markdown_html(text) if text else "<p><em>(empty reply)</em></p>" if not calls else ""
    plain = "\n".join([*(_tool_call_text(c.get("name", "?"), c.get("arguments"), c.get("status", ""), c.get("result")) for c in calls), text])
    return Shown(f'<div class="aihub-reply">{body}</div>', plain.strip("\n") or "(empty reply)")


def text_view(text: str) -> Shown:
    """A line of our own (a footer, a notice) with any names in it escaped."""
    return Shown(small(text), text)


def turn_footer(reply: Any, label: str) -> Shown:
    """The line under a reply: what answered (`label`, see `target_label`), tokens, time, cost,
    tool calls (the reply's `summary_line`)."""
    return text_view(reply.summary_line(label))


# ---------------------------------------------------------------- snapshots


def rendered_message(row: dict[str, Any]) -> str:
    """One message as the safe HTML a RenderedConversationThread keeps."""
    kind = row["type"]
    data = row.get("data") or {}
    if kind == "toolCall":
        calls = "".join(
            tool_call_html(c.get("function", {}).get("name", "?"), c.get("function", {}).get("arguments"), "requested", None)
            for c in data.get("tool_calls", [])
        )
        return (markdown_html(row["content"]) if row["content"] else "") + calls
    if kind == "toolResult":
        return tool_call_html(data.get("name", "?"), None, data.get("status", "completed"), row["content"])
    return markdown_html(row["content"])


def _snapshot_text(kind: str, content: str) -> str:
    """A snapshot message as a line of text: a tool call as `name(arguments)`, without the
    provider's call id (the stored content is the calls' JSON)."""
    if kind != "toolCall":
        return content
    try:
        calls = json.loads(content)
        return "; ".join(
            f"{c['function'].get('name', '?')}({_call_arguments(c['function'].get('arguments'))})" for c in calls
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return content


def _call_arguments(arguments: Any) -> str:
    try:
        values = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return str(arguments)
    if isinstance(values, dict):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in values.items())
    return "" if values is None else str(arguments)


def snapshot_view(name: str, snapshot: dict[str, Any]) -> Shown:
    """A stored RenderedConversationThread, shown from the HTML it keeps (re-sanitised, so an
    edited row cannot inject either)."""
    blocks, lines = [], []
    for m in snapshot.get("messages") or []:
        kind = m.get("type", "")
        label = _LABELS.get(kind, kind)
        role = "user" if kind == "user" else "system" if kind == "system" else "assistant"
        body = m.get("html")
        body = sanitize_html(body) if body is not None else markdown_html(m.get("content", ""))
        blocks.append(block(label, role, body))
        lines.append(f"{label}: {_snapshot_text(kind, m.get('content', ''))}")
    count = len(snapshot.get("messages") or [])
    note = f"snapshot stored {cell_text(snapshot.get('createdAt'))}, {count} message{'s' if count != 1 else ''}"
    title = f'<p style="margin:4px 0"><b>Chat {_escape(name)}</b></p>'
    return Shown(
        frame(title + "".join(blocks) + small(note), scroll=False),
        f"Chat {name}\n\n" + "\n\n".join(lines) + f"\n\n{note}",
    )
