"""Embedding through the hub vs the raw openai client, and the cache; database growth per image turn.

`python -m benchmarks embed [--texts N]`: N short texts (default 10,000) embedded through
`hub.embed` against the local server and the same batched requests (2,048 inputs each) through a
raw `openai` client, in alternating rounds (medians; `--rounds`, after one small request each so
imports are not timed): the ratio (target <= 1.2). A second `hub.embed` over the same texts is
served from the cache (target >= 20x faster than the first): in the same kernel from the vectors it
keeps in memory, and, printed too, in a new kernel (a Hub opened afresh on the file) from the store.
Then one image turn: how much the database grew beyond the PNG's own size (target < 20 KB),
counted as the pages in use before and after (the write-ahead log included).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks embed")
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="hub and raw passes, alternating which goes first")
    args = parser.parse_args(argv)

    import openai

    from aihub_nb import Hub
    from aihub_nb.testing import LocalServer

    texts = [f"short text number {i} about topic {i % 97}" for i in range(args.texts)]
    with LocalServer() as server, tempfile.TemporaryDirectory() as home:
        hub = Hub(Path(home) / "hub")
        hub.connect("OPENAI", "local-embed", name="vec", base_url=server.openai_base_url, type="EMBEDDING")
        hub.connect("OPENAI", "local-image", name="pics", base_url=server.openai_base_url, type="IMAGE")
        # One small request each first: the timings below compare requests, not first imports.
        started = time.perf_counter()
        hub.embed(["warm up"], model="vec", progress=False)
        cold = time.perf_counter() - started
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        client.embeddings.create(model="local-embed", input=["warm up"], encoding_format="base64")

        def timed(fn) -> float:
            gc.collect()
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        def raw_pass(batch: list[str]) -> None:
            for start in range(0, len(batch), 2048):
                client.embeddings.create(model="local-embed", input=batch[start : start + 2048], encoding_format="base64")

        # Rounds alternate which side goes first; each hub round embeds new texts (no cache hits).
        hub_times, raw_times = [], []
        for round_ in range(args.rounds):
            batch = [f"{t} (round {round_})" for t in texts]
            sides = [("hub", lambda b=batch: hub.embed(b, model="vec", progress=False)), ("raw", lambda b=batch: raw_pass(b))]
            for side, fn in sides if round_ % 2 == 0 else sides[::-1]:
                (hub_times if side == "hub" else raw_times).append(timed(fn))
        through_hub, raw = statistics.median(hub_times), statistics.median(raw_times)
        cached = statistics.median(timed(lambda: hub.embed(batch, model="vec", progress=False)) for _ in range(args.rounds))
        # A new kernel: nothing in memory, every vector read from the store.
        fresh_times = []
        for _ in range(args.rounds):
            other = Hub(Path(home) / "hub")
            other.embed(["warm up"], model="vec", progress=False)
            fresh_times.append(timed(lambda: other.embed(batch, model="vec", progress=False)))
            other.close()
        fresh = statistics.median(fresh_times)
        print(f"embed {len(texts)} texts (median of {args.rounds} rounds): hub {through_hub:.3f} s, raw client {raw:.3f} s, ratio {through_hub / raw:.2f} (target <= 1.2)")
        print(f"first request through the hub (imports, client, tables): {cold:.3f} s")
        print(f"second pass from the cache: {cached * 1000:.1f} ms, {through_hub / cached:.0f}x faster than the first (target >= 20x)")
        print(f"  the same pass in a new kernel (vectors read from the store): {fresh * 1000:.1f} ms, {through_hub / fresh:.0f}x faster")

        def used() -> int:  # bytes in pages that hold data, as this connection sees the file (WAL too)
            conn = hub.store.conn
            pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
            return pages * conn.execute("PRAGMA page_size").fetchone()[0]

        def row_bytes() -> int:  # the bytes of every value of every row, summed over the tables
            conn = hub.store.conn
            total = 0
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
                columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
                if columns:
                    sizes = " + ".join(f'coalesce(length(CAST("{c}" AS BLOB)), 0)' for c in columns)
                    total += conn.execute(f'SELECT coalesce(sum({sizes}), 0) FROM "{table}"').fetchone()[0]
            return total

        before, rows_before = used(), row_bytes()
        result = hub.image("a lighthouse at dusk " * 10, model="pics", size="1024x1024", chat="art")
        after, rows_after = used(), row_bytes()
        png = len(result.images[0])
        media = sum(p.stat().st_size for p in (Path(home) / "hub" / "media").iterdir())
        print(
            f"image turn: PNG {png} bytes (media/ {media} bytes), database grew {after - before} bytes in pages "
            f"({rows_after - rows_before} bytes of row values) (target < 20 KB)"
        )
        hub.close()
    return 0
