"""The built-in demo model: deterministic answers to a chat request, with no network and no weights.

Given a chat request body (OpenAI's or Ollama's, they share ``messages`` and ``tools``):

* the last message is the user's, the request offers tools, and the text contains a keyword call
  of an offered tool such as ``add(a=2, b="x")``: it calls that tool (several: parallel calls);
* the last message is a tool result: ``The tool returned: <that round's results joined by "; ">``;
* the request asks for JSON meeting a schema (OpenAI's ``response_format`` of type
  ``json_schema``, Ollama's ``format`` object): JSON that meets it, made from the last user
  message (`json_for_schema`): an enum value named in the message (else one picked by a hash of
  it), the message's first words for a string, its word count for a number;
* the last user message carries images (OpenAI ``image_url`` parts with data URLs, or Ollama
  ``images``): ``Hello from the aihub_nb demo model (turn N). You said: "<text>" I see 2 images:
  640x480 PNG, 32x32 JPEG.``
* otherwise: a short Markdown answer that shows what the hub renders and records: it says it is
  the demo model (turn N), quotes the last user message, lists in a table what the hub does, shows
  a code block, and says how to connect a real model. (Its first line is
  ``Hello from the aihub_nb demo model (turn N).``)

`draw(prompt, width, height)` makes the PNG the demo image model answers with: bands of colour
chosen from the prompt's words, the same picture for the same prompt. `embedding(text)` is the demo
embedding model: a hashed bag of words, normalised, so texts sharing words are closer.

`answer` returns what to say as ``{"text": ...}`` or ``{"tool_calls": [...]}``; the server in
`aihub_nb.demo.server` sends it in the wire format the client asked for.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import json
import math
import re
import struct
import zlib

__all__ = [
    "EMBEDDING_DIMENSIONS", "answer", "demo_text", "describe_images", "draw", "embedding", "json_for_schema", "message_images",
    "message_text",
]

EMBEDDING_DIMENSIONS = 64
_WORD_RE = re.compile(r"\w+")

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
    schema = _requested_schema(body)
    if schema is not None:
        return {"text": json.dumps(json_for_schema(schema, users[-1] if users else ""), ensure_ascii=False)}
    if users and messages[-1].get("role") == "user":
        calls = _find_calls(users[-1], _tool_names(body.get("tools")))
        if calls:
            return {"tool_calls": calls}
    said = users[-1] if users else ""
    images = message_images(messages[-1]) if messages and messages[-1].get("role") == "user" else []
    if images:  # what a vision model does: say what it sees
        return {"text": f'Hello from the aihub_nb demo model (turn {len(users)}). You said: "{said}" ' + describe_images(images)}
    return {"text": demo_text(len(users), said, tools=sorted(_tool_names(body.get("tools"))))}


def demo_text(turn: int, said: str, *, tools: list[str] | None = None) -> str:
    """The demo model's Markdown reply to `said` on turn `turn` (the tools offered, if any)."""
    quoted = " ".join(said.split())
    if len(quoted) > 200:
        quoted = quoted[:199] + "…"
    if tools:
        example = f"write a call such as `{tools[0]}(...)` with keyword arguments and I call the tool"
    else:
        example = "give an agent a tool, write `add(a=2, b=3)`, and I call it"
    return (
        f"Hello from the aihub_nb demo model (turn {turn}). You said: \"{quoted}\"\n\n"
        "I am no real model: I answer the same way every time, to show what the hub does.\n\n"
        "| the hub | try |\n"
        "|---|---|\n"
        "| chats kept across restarts | `%aihub chats` |\n"
        f"| tool calls | {example} |\n"
        "| monitoring | `%aihub dashboard` |\n\n"
        "```python\n"
        "from aihub_nb import Hub\n"
        "reply = Hub().chat(\"ideas\").send(\"Three names for a cat?\")\n"
        "```\n\n"
        "To talk to a real model: `%aihub setup` finds the ones this machine can reach (Ollama, LM Studio, "
        "llama.cpp, vLLM); with `OPENAI_API_KEY` set, `%aihub connect OPENAI gpt-4o-mini`."
    )


def message_images(message: dict) -> list[bytes]:
    """The images a message carries: OpenAI `image_url` parts holding data URLs, and Ollama's
    `images` (base64 without a data-URL prefix). Unreadable ones come back as b""."""
    encoded = []
    content = message.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            encoded.append(url.split(",", 1)[1] if isinstance(url, str) and url.startswith("data:") and "," in url else "")
    for item in message.get("images") or ():
        encoded.append(item if isinstance(item, str) else "")
    images = []
    for item in encoded:
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            images.append(b"")
    return images


def describe_images(images: list[bytes]) -> str:
    """`I see 2 images: 640x480 PNG, 32x32 JPEG.`"""
    described = []
    for data in images:
        kind, size = _image_kind(data)
        described.append(f"{size[0]}x{size[1]} {kind}" if size else "an unreadable image")
    noun = "image" if len(images) == 1 else "images"
    return f"I see {len(images)} {noun}: {', '.join(described)}."


def _image_kind(data: bytes) -> tuple[str, tuple[int, int] | None]:
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return "PNG", struct.unpack(">II", data[16:24])
        if data.startswith((b"GIF87a", b"GIF89a")):
            return "GIF", struct.unpack("<HH", data[6:10])
        if data.startswith(b"\xff\xd8\xff"):
            i = 2
            while i + 9 < len(data) and data[i] == 0xFF:
                marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return "JPEG", (w, h)
                i += 2 + length
            return "JPEG", None
    except struct.error:
        pass
    return "image", None


def draw(prompt: str, width: int = 64, height: int = 64) -> bytes:
    """A PNG of `width` x `height`: one horizontal band of colour per word of the prompt (at most
    eight), each colour from the word's hash; the same prompt gives the same bytes."""
    words = _WORD_RE.findall(prompt.lower())[:8] or [""]
    colours = [hashlib.sha256(w.encode()).digest()[:3] for w in words]
    rows = []
    for y in range(height):
        band = colours[min(len(colours) - 1, y * len(colours) // max(1, height))]
        rows.append(b"\x00" + band * width)
    return _png(width, height, b"".join(rows))


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector: each word (lower-cased) adds 1 to a coordinate chosen by its hash, with a
    sign also from the hash; texts sharing words are closer. An empty text is a fixed vector."""
    vector = [0.0] * dimensions
    for word in _WORD_RE.findall(text.lower()) or [""]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


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


def _requested_schema(body: dict) -> dict | None:
    """The JSON schema a request asks the reply to meet, in either API's shape, else None."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return spec["schema"]
    fmt = body.get("format")
    return fmt if isinstance(fmt, dict) else None


def json_for_schema(schema: dict, text: str) -> object:
    """A value meeting `schema` (the JSON Schema subset structured outputs use: objects, arrays,
    enums, consts, strings, numbers, booleans, null, anyOf, $ref to $defs), made from `text`,
    the same for the same text."""
    return _value(schema, text, schema, "")


def _value(schema: dict, text: str, root: dict, name: str) -> object:
    import zlib

    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _value(target if isinstance(target, dict) else {}, text, root, name)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        options = schema["enum"]
        lowered = text.lower()
        named = [o for o in options if isinstance(o, str) and re.search(rf"\b{re.escape(o.lower())}\b", lowered)]
        return named[0] if named else options[zlib.crc32(text.encode()) % len(options)]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            first = next((s for s in schema[key] if isinstance(s, dict) and s.get("type") != "null"), schema[key][0])
            return _value(first, text, root, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    words = re.findall(r"\w+", text)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {key: _value(sub if isinstance(sub, dict) else {}, text, root, key) for key, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        item = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_value(item, text, root, name) for _ in range(count)]
    if kind in ("integer", "number"):
        value = len(words)
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return zlib.crc32(text.encode()) % 2 == 0
    if kind == "null":
        return None
    value = " ".join(words[:6])
    limit = schema.get("maxLength")
    if isinstance(limit, int):
        value = value[:limit]
    return value.ljust(int(schema.get("minLength") or 0), ".")
