"""An MCP tool result as JSON, and as the text a model reads.

The result is kept as the protocol sends it (``content`` blocks: text, image, audio, resource
links and embedded resources; ``structuredContent``; ``isError``), with camelCase keys:

    {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": false}

A model reads the text blocks as they are; other blocks become a short bracketed line (an image's
type and size, a resource's URI and its text when it has some); a result without content but with
structured content reads as that JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["result_json", "result_text"]


def result_json(result: Any) -> dict[str, Any]:
    """A CallToolResult (the SDK's model) as plain JSON, in the protocol's own field names."""
    data = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("resultType", None)
    data.setdefault("isError", False)
    return data


def result_text(data: dict[str, Any]) -> str:
    """What a model reads of a result JSON (see the module docstring)."""
    parts = [_block_text(block) for block in data.get("content") or [] if isinstance(block, dict)]
    parts = [p for p in parts if p]
    if not parts and data.get("structuredContent") is not None:
        return json.dumps(data["structuredContent"], ensure_ascii=False)
    return "\n".join(parts)


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '?')}, {_size(block.get('data'))} bytes]"
    if kind == "resource_link":
        return f"[resource {block.get('uri', '')}]"
    if kind == "resource":
        resource = block.get("resource") or {}
        if "text" in resource:
            return f"[resource {resource.get('uri', '')}]\n{resource['text']}"
        return f"[resource {resource.get('uri', '')} {resource.get('mimeType', '?')}, {_size(resource.get('blob'))} bytes]"
    return f"[{kind}]"


def _size(data: Any) -> int:
    try:
        return len(base64.b64decode(data or "", validate=False))
    except (binascii.Error, ValueError):
        return len(data or "")
