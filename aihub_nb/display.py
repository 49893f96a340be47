"""Small HTML helpers shared by the magics and the panels (no heavy imports)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

__all__ = ["cell_text", "html_table"]


def cell_text(value: Any) -> str:
    """A value as table text: None empty, booleans yes/no, JSON for dicts and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def html_table(
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    *,
    empty: str = "Nothing yet.",
    dim: Callable[[dict[str, Any]], bool] | None = None,
) -> str:
    """Rows as an escaped HTML table (`dim(row)` true: the row is greyed out)."""
    if not rows:
        return f'<p style="color:#666"><em>{html.escape(empty)}</em></p>'
    columns = columns or list(rows[0])
    head = "".join(f'<th style="text-align:left">{html.escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        style = ' style="opacity:.55"' if dim is not None and dim(row) else ""
        cells = "".join(f'<td style="text-align:left">{html.escape(cell_text(row.get(c)))}</td>' for c in columns)
        body.append(f"<tr{style}>{cells}</tr>")
    return f'<table class="aihub-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
