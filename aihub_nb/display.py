"""Small HTML helpers shared by the magics and the panels (no heavy imports)."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["cell_text", "html_table", "text_table"]

_STORE_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\.\d{3}Z$")
_CELL = "padding:3px 10px;border-bottom:1px solid rgba(127,127,127,.25);vertical-align:top"


def cell_text(value: Any) -> str:
    """A value as table text: None empty, booleans yes/no, JSON for dicts and lists, times to the
    second in UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, datetime):  # a pandas Timestamp too
        if value != value:  # NaT
            return ""
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo is not None else "")
    text = str(value)
    stamp = _STORE_TIME.match(text)
    return f"{stamp.group(1)} {stamp.group(2)} UTC" if stamp else text


def html_table(
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    *,
    empty: str = "Nothing yet.",
    dim: Callable[[dict[str, Any]], bool] | None = None,
    right: Iterable[str] = (),
) -> str:
    """Rows as an escaped HTML table (`dim(row)` true: the row is greyed out). Numbers are aligned
    right, and so are the `right` columns (numbers already written as text: "1,234", "$0.02")."""
    if not rows:
        return f'<p style="color:#666"><em>{html.escape(empty)}</em></p>'
    columns = columns or list(rows[0])
    numeric = {c for c in columns if all(_is_number(row.get(c)) for row in rows if row.get(c) is not None)}
    numeric |= set(right)
    head = "".join(
        f'<th style="{_CELL};text-align:{"right" if c in numeric else "left"}">{html.escape(c)}</th>' for c in columns
    )
    body = []
    for row in rows:
        style = ' style="opacity:.55"' if dim is not None and dim(row) else ""
        cells = "".join(
            f'<td style="{_CELL};text-align:{"right" if c in numeric else "left"}">{html.escape(cell_text(row.get(c)))}</td>'
            for c in columns
        )
        body.append(f"<tr{style}>{cells}</tr>")
    return (
        f'<table class="aihub-table" style="border-collapse:collapse">'
        f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def text_table(rows: list[dict[str, Any]], columns: list[str] | None = None, *, empty: str = "Nothing yet.", width: int = 60) -> str:
    """The same rows as plain text for a terminal: aligned columns, numbers to the right, each
    cell on one line and cut at `width` characters."""
    if not rows:
        return empty
    columns = columns or list(rows[0])
    numeric = {c for c in columns if all(_is_number(row.get(c)) for row in rows if row.get(c) is not None)}

    def cut(value: Any) -> str:
        text = " ".join(cell_text(value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cut(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in numeric else v.ljust(w) for c, v, w in zip(columns, values, widths, strict=True)
        ).rstrip()

    return "\n".join([line(list(columns)), line(["-" * w for w in widths]), *(line(v) for v in cells)])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
