"""The built-in demo model: deterministic answers to a chat request, with no network and no weights.

Given a chat request body (OpenAI's or Ollama's, they share ``messages`` and ``tools``):

* the last message is the user's, the request offers tools, and the text contains a keyword call
  of an offered tool such as ``add(a=2, b="x")``: it calls that tool (several: parallel calls);
* the last message is a tool result: ``The tool returned: <that round's results joined by "; ">``;
* otherwise: ``Hello from the aihub_nb local model (turn N). You said: "<last user message>"``.

`answer` returns what to say as ``{"text": ...}`` or ``{"tool_calls": [...]}``; the server in
`aihub_nb.demo.server` sends it in the wire format the client asked for.
"""

from __future__ import annotations

import ast
import json
import re

__all__ = ["answer", "message_text"]

_CALL_START_RE = re.compile(r"\b([A-Za-z_]\w*)\(")


def answer(body: dict) -> dict:
    """The demo model's answer to a chat request: ``{"text": str}`` or ``{"tool_calls": [...]}``,
    each call ``{"name": str, "arguments": dict}``."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "tool":
        results = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(message_text(message.get("content")))
        return {"text": "The tool returned: " + "; ".join(reversed(results))}
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    if users and messages[-1].get("role") == "user":
        calls = _find_calls(users[-1], _tool_names(body.get("tools")))
        if calls:
            return {"tool_calls": calls}
    said = users[-1] if users else ""
    return {"text": f'Hello from the aihub_nb local model (turn {len(users)}). You said: "{said}"'}


def message_text(content: object) -> str:
    """The text of a message's content: a string, or OpenAI's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _tool_names(tools: object) -> set[str]:
    names = set()
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _find_calls(text: str, names: set[str]) -> list[dict]:
    """Keyword calls of offered tools written in `text`, such as `add(a=2, b="x")`."""
    calls = []
    for match in _CALL_START_RE.finditer(text):
        if match.group(1) in names:
            call = _parse_call(text, match.start())
            if call is not None:
                calls.append(call)
    return calls


def _parse_call(text: str, start: int) -> dict | None:
    end = text.find(")", start)
    while end != -1:
        try:
            node = ast.parse(text[start : end + 1], mode="eval").body
        except SyntaxError:
            end = text.find(")", end + 1)
            continue
        if not isinstance(node, ast.Call) or node.args or any(k.arg is None for k in node.keywords):
            return None
        try:
            arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            json.dumps(arguments)
        except (ValueError, TypeError, SyntaxError):
            return None
        return {"name": node.func.id, "arguments": arguments}
    return None
