"""A batch run through the hub (`hub.map`), everything recorded, against the raw async client.

    python -m benchmarks batch [--prompts 2000] [--concurrency 16] [--tokens 20] [--profile]

Both sides send the same prompts, one user message each, streamed, to the same
`aihub_nb.testing.LocalServer` in the same process and run; the demo model answers each with
`--tokens` chunks (`ScriptedReply.lorem`, scripted per request):

* raw: `openai.AsyncOpenAI(..., max_retries=0)` with `stream_options={"include_usage": True}`,
  `asyncio.gather` over every prompt behind an `asyncio.Semaphore(concurrency)`, each stream
  read to its end and its text joined;
* hub: `hub.map(template, DataFrame, model=CONNECTION, concurrency=concurrency, cache=False)` on a
  Hub whose store is a real file: per row the user Message, a ResponseStream, the NetworkCall of
  the recording transport, the answer Message and its metrics, the batch's Jobs row and progress.

Reported: each side's wall time and throughput (prompts per second), the ratio hub/raw of the
throughputs (target >= 0.85), and the store under that write load: rows per table against the
prompts, and whether any write failed with `database is locked`. Exits 1 when the ratio misses
the target or a row is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time

import openai
import pandas as pd

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

TARGET = 0.85
MODEL = "local-chat"


def _script(server: LocalServer, n: int, tokens: int) -> None:
    server.reset()
    server.script(*[ScriptedReply.lorem(tokens) for _ in range(n)])


async def _raw(base_url: str, prompts: list[str], concurrency: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str:
        async with gate:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True,
                stream_options={"include_usage": True},
            )
            parts = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts)

    try:
        return await asyncio.gather(*(one(p) for p in prompts))
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=20, help="chunks in each answer")
    parser.add_argument("--profile", action="store_true", help="show where the hub run spends its time")
    args = parser.parse_args(argv)
    prompts = [f"Classify item number {i}: is it a fruit or a vegetable?" for i in range(args.prompts)]
    frame = pd.DataFrame({"item": prompts})
    with LocalServer() as server, tempfile.TemporaryDirectory() as home:
        hub = Hub(home)
        hub.connect("OPENAI", MODEL, name="bench", base_url=server.openai_base_url)
        # warm-up: connections, imports, the first statements
        _script(server, 50, args.tokens)
        asyncio.run(_raw(server.openai_base_url, prompts[:50], args.concurrency))
        _script(server, 50, args.tokens)
        hub.map("{item}", frame.iloc[:50], model="bench", concurrency=args.concurrency, cache=False, progress=False, name="warmup")

        _script(server, args.prompts, args.tokens)
        started = time.perf_counter()
        raw = asyncio.run(_raw(server.openai_base_url, prompts, args.concurrency))
        raw_s = time.perf_counter() - started

        _script(server, args.prompts, args.tokens)
        profile = cProfile.Profile() if args.profile else None
        locked: list[str] = []
        started = time.perf_counter()
        if profile:
            profile.enable()
        try:
            out = hub.map("{item}", frame, model="bench", concurrency=args.concurrency, cache=False, progress=False, name="bench")
        except Exception as exc:  # a failed write would end the run: counted, not hidden
            if "database is locked" not in str(exc):
                raise
            locked.append(str(exc))
            out = pd.Series(dtype=object)
        hub_s = time.perf_counter() - started
        if profile:
            profile.disable()

        job = hub.store.first("Jobs", name="batch: bench")
        thread = job["references"]["thread"]
        counts = {
            "user messages": hub.store.count("Message", threadId=thread, type="user"),
            "answers": hub.store.count("Message", threadId=thread, type="chatModel"),
            "response streams": hub.store.query(
                "SELECT count(*) AS n FROM \"ResponseStream\" WHERE json_extract(\"references\", '$.job') = ?", (job["id"],)
            )[0]["n"],
            "network calls": hub.store.query(
                "SELECT count(*) AS n FROM \"NetworkCall\" WHERE json_extract(\"references\", '$.job') = ?", (job["id"],)
            )[0]["n"],
            "latency metrics": hub.store.query(
                "SELECT count(*) AS n FROM \"Metric\" WHERE name = 'latency_ms' AND json_extract(dimensions, '$.batch') = 'bench'"
            )[0]["n"],
        }
        failed_rows = job["progress"]["failed"]
        locked += [
            r["error"] for r in hub.store.query(
                "SELECT error FROM \"NetworkCall\" WHERE error LIKE '%database is locked%'"
            )
        ]
        same = len(out) == len(raw) and list(out) == raw
        hub.close()

    raw_rate, hub_rate = args.prompts / raw_s, args.prompts / hub_s
    ratio = hub_rate / raw_rate
    print(f"batch: {args.prompts} prompts, concurrency {args.concurrency}, {args.tokens} chunks each")
    print(f"  raw AsyncOpenAI + semaphore: {raw_s:7.2f} s  {raw_rate:8.1f} prompts/s")
    print(f"  hub.map (all recorded):      {hub_s:7.2f} s  {hub_rate:8.1f} prompts/s")
    print(f"  throughput ratio hub/raw: {ratio:.2f} (target >= {TARGET})")
    print(f"  same answers: {same}; failed rows: {failed_rows}")
    print("  store under load: " + ", ".join(f"{k} {v}/{args.prompts}" for k, v in counts.items()))
    print(f"  'database is locked': {len(locked)}")
    if profile:
        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("cumulative").print_stats(25)
        print(buf.getvalue())
    complete = all(v == args.prompts for v in counts.values())
    return 0 if ratio >= TARGET and complete and not locked and same and not failed_rows else 1
