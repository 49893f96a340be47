"""Monitoring reads at scale: a million metrics and a hundred thousand network calls.

    python -m benchmarks monitoring [--db PATH] [--metrics 1000000] [--calls 100000] [--repeats 3] [--rebuild]

Builds (once; reused while the counts match) a store with `--metrics` Metric rows shaped like the
chat layer's (latency_ms, ttft_ms, prompt_tokens, completion_tokens, tokens_per_s, cost_usd for
priced models, error for failed calls; two dimension keys, provider and model) spread over 30
days, and `--calls` NetworkCall rows with realistic bodies and headers. Then, in one run:

* metrics(): loading the whole table as a typed frame (one column per dimension) against a bare
  `pandas.read_sql("SELECT * FROM Metric", conn)` of the same table, interleaved, median of
  `--repeats`; target ratio <= 1.5;
* summary(): the per-model table over everything; target < 2 s;
* network_calls() over all calls, and the dashboard's refresh over all time (informational).

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DB = Path(tempfile.gettempdir()) / "aihub-bench-monitoring" / "bench.db"
_MODELS = [("OPENAI", "gpt-4o-mini", 0.15, 0.60), ("OPENAI", "gpt-4o", 2.5, 10.0), ("OLLAMA", "llama3.2", None, None),
           ("OLLAMA", "qwen2.5", None, None)]
RATIO_TARGET = 1.5
SUMMARY_TARGET_S = 2.0


def _metric_rows(count: int, start: float, span: float):
    from aihub_nb.store import now_iso

    rng = random.Random(7)
    written = 0
    step = span / (count / 5.5)
    at = start
    while written < count:
        provider, model, price_in, price_out = _MODELS[rng.randrange(len(_MODELS))]
        dims = {"provider": provider, "model": model}
        stamp = now_iso(at)
        at += step * rng.uniform(0.5, 1.5)
        latency = rng.lognormvariate(6.5, 0.6)
        if rng.random() < 0.03:
            values = {"latency_ms": latency, "error": 1.0}
        else:
            prompt, completion = rng.randint(20, 2000), rng.randint(5, 800)
            values = {"latency_ms": latency}
            if price_in is not None:  # before the tokens, so the cut at exactly --metrics rows leaves no
                values["cost_usd"] = (prompt * price_in + completion * price_out) / 1e6  # unpriced turn
            values.update({
                "ttft_ms": latency * rng.uniform(0.1, 0.5), "prompt_tokens": prompt, "completion_tokens": completion,
                "tokens_per_s": completion / (latency / 1000),
            })
        for name, value in values.items():
            if written == count:
                return
            yield {"name": name, "value": float(value), "dimensions": dims, "createdAt": stamp, "updatedAt": stamp}
            written += 1


def _call_rows(count: int, start: float, span: float):
    from aihub_nb.store import now_iso

    rng = random.Random(11)
    for i in range(count):
        provider = "OPENAI" if i % 2 else "OLLAMA"
        endpoint = "https://api.openai.com/v1/chat/completions" if provider == "OPENAI" else "http://127.0.0.1:11434/api/chat"
        body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [
            {"role": "user", "content": "Summarise this paragraph for me please. " * rng.randint(1, 8)}]})
        failed = rng.random() < 0.03
        stamp = now_iso(start + span * i / count)
        yield {
            "endpoint": endpoint, "method": "POST", "body": body,
            "response": "" if failed else "data: " + json.dumps({"choices": [{"delta": {"content": "word "}}]}) * 20,
            "status": "error" if failed else "success", "statusCode": 500 if failed else 200,
            "durationMs": rng.lognormvariate(6.5, 0.6), "error": "ServerError: 500" if failed else None,
            "requestHeaders": {"authorization": "[redacted]", "content-type": "application/json"},
            "responseHeaders": {"content-type": "text/event-stream"}, "createdAt": stamp, "updatedAt": stamp,
        }


def _build(path: Path, metrics: int, calls: int, rebuild: bool):
    from aihub_nb.store import Store

    if path.exists() and not rebuild:
        store = Store(path)
        if store.count("Metric") == metrics and store.count("NetworkCall") == calls:
            return store, False
        store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = Store(path)
    span = 30 * 86400.0
    start = time.time() - span
    chunk = 100_000
    rows = _metric_rows(metrics, start, span)
    while True:
        batch = [r for _, r in zip(range(chunk), rows)]
        if not batch:
            break
        store.create_many("Metric", batch)
    calls_rows = _call_rows(calls, start, span)
    while True:
        batch = [r for _, r in zip(range(chunk // 4), calls_rows)]
        if not batch:
            break
        store.create_many("NetworkCall", batch)
    for provider, model, price_in, price_out in _MODELS:
        if price_in is not None:
            from aihub_nb.monitoring import set_price

            set_price(store, model, price_in, price_out, provider=provider)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.conn.execute("ANALYZE")
    return store, True


def _timed(fn):
    gc.collect()
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks monitoring", description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the store to build or reuse (default {DEFAULT_DB})")
    parser.add_argument("--metrics", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the store again even if it matches")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from aihub_nb import monitoring

    t0 = time.perf_counter()
    store, built = _build(args.db, args.metrics, args.calls, args.rebuild)
    print(f"store: {args.db} ({'built in %.1f s' % (time.perf_counter() - t0) if built else 'reused'}): "
          f"{args.metrics:,} metrics, {args.calls:,} network calls")
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, pandas {pd.__version__}, "
          f"{platform.machine()}")

    raw = sqlite3.connect(args.db)
    raw_load = lambda: pd.read_sql("SELECT * FROM Metric", raw)  # noqa: E731
    our_load = lambda: monitoring.metrics(store)  # noqa: E731
    raw_load(), our_load()  # warm the page cache and the imports alike
    raw_times, our_times, ratios = [], [], []
    for _ in range(args.repeats):
        r, frame = _timed(raw_load)
        del frame
        o, frame = _timed(our_load)
        raw_times.append(r)
        our_times.append(o)
        ratios.append(o / r)
    assert len(frame) == args.metrics and {"provider", "model"} <= set(frame.columns)
    del frame
    ratio = statistics.median(our_times) / statistics.median(raw_times)
    print(f"metrics() full load      {statistics.median(our_times):6.2f} s   (runs: {', '.join('%.2f' % t for t in our_times)})")
    print(f"pandas.read_sql(SELECT *) {statistics.median(raw_times):6.2f} s   (runs: {', '.join('%.2f' % t for t in raw_times)})")
    print(f"  ratio {ratio:.2f} (per-pair median {statistics.median(ratios):.2f}), target <= {RATIO_TARGET}")

    one = [_timed(lambda: monitoring.metrics(store, "latency_ms", provider="OPENAI"))[0] for _ in range(args.repeats)]
    print(f"metrics('latency_ms', provider='OPENAI')  {statistics.median(one):6.2f} s")

    summary_times = []
    for _ in range(args.repeats):
        elapsed, table = _timed(lambda: monitoring.summary(store))
        summary_times.append(elapsed)
    summary_s = statistics.median(summary_times)
    print(f"summary()                {summary_s:6.2f} s   target < {SUMMARY_TARGET_S} s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.4g}"))

    calls_s = statistics.median(_timed(lambda: monitoring.network_calls(store))[0] for _ in range(args.repeats))
    print(f"network_calls() all      {calls_s:6.2f} s")

    from aihub_nb.widgets.dashboard import Dashboard

    dash = Dashboard(store, window="all")
    refresh = statistics.median(_timed(dash.refresh)[0] for _ in range(args.repeats))
    dash.window.value = "24h"
    refresh_day = statistics.median(_timed(dash.refresh)[0] for _ in range(args.repeats))
    print(f"dashboard refresh        {refresh:6.2f} s (window all), {refresh_day:.2f} s (window 24h)")
    dash.close()
    raw.close()
    store.close()

    ok = ratio <= RATIO_TARGET and summary_s < SUMMARY_TARGET_S
    print("OK" if ok else "MISSED a target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
