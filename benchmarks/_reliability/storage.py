"""Section 8: storage against the wire (benchmarks/storage.py) and a very long streamed reply,
hub vs the raw client (benchmarks/longreply.py)."""

from __future__ import annotations

from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer

from .. import longreply, storage
from .common import Section

LINEAR = 1.5  # database bytes per turn late in a chat vs in its middle: not growing with the history


def run(section: Section, server: LocalServer, tmp: Path, *, turns: int, tokens: int, long_tokens: int) -> None:
    m = storage.measure(server, tmp / "storage", turns=turns, tokens=tokens)
    server.reset()
    section.lines += storage.report(m)
    section.check(
        f"database per turn not growing with the history (last quarter <= {LINEAR}x middle half)",
        int(m["last_db"] <= LINEAR * m["middle_db"] + 4096), 1,
    )
    section.check(f"{tokens:,}-token reply stored in <= 1.5x its wire bytes", int(m["reply_db"] <= 1.5 * m["reply_wire"]), 1)
    hub = Hub(tmp / "longreply")
    try:
        row, ok = longreply._run("openai", hub, server, long_tokens, 1)
    finally:
        hub.close()
        server.reset()
    _, raw, through_hub, ratio, per_second, stored, target, _ = row
    section.lines.append(
        f"a {long_tokens:,}-token streamed reply (OpenAI): raw client {raw}, through the hub {through_hub}: ratio {ratio} "
        f"(target {target}); hub {per_second} tokens/s; stored {stored}"
    )
    section.check(f"long reply through the hub {target} the raw client's time", int(ok), 1)
    section.headline = (
        f"{m['last_db'] / 1024:.1f} KB/turn late in a {turns}-turn chat (wire {m['last_wire'] / 1024:.1f} KB); "
        f"{tokens:,}-token reply {m['reply_db'] / m['reply_wire']:.2f}x wire; {long_tokens:,} tokens hub/raw {ratio}"
    )
    section.data.update(storage=m, longreply={"tokens": long_tokens, "ratio": float(ratio), "raw": raw, "hub": through_hub})
