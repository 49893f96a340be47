"""The store's write path against raw sqlite3, measured in one run on the same machine and schema.

    python -m benchmarks store [--ops 3000] [--rows 10000] [--repeats 5]

The baseline is a second file with the store's own DDL (copied from its sqlite_master) and the
store's PRAGMAs (WAL, synchronous=NORMAL, busy_timeout, foreign_keys), written with a prepared
INSERT and a commit per row, or one `executemany` in one transaction for bulk. The baseline makes
its ids, timestamps and JSON the way the store does (`uuid7()`, `now_iso()`, `json.dumps`), so
the ratio is the cost of the store's own Python work per row.

Store and baseline run interleaved in short blocks, so drift on the machine hits both alike;
single writes report the median per call, bulk the median rows/s over the repeats. Exits 1 when a
ratio misses its target.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.store import Store, now_iso, uuid7
from benchmarks._table import text_table

_BLOCK = 100  # calls per block before switching between store and baseline


def _raw_connection(path: Path, store: Store) -> sqlite3.Connection:
    """A plain sqlite3 file with the store's DDL and PRAGMAs."""
    conn = sqlite3.connect(path)
    for pragma in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys"):
        value = store.conn.execute(f"PRAGMA {pragma}").fetchone()[0]
        conn.execute(f"PRAGMA {pragma} = {value}")
    ddl = store.conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index', rowid"
    ).fetchall()
    for (sql,) in ddl:
        conn.execute(sql)
    conn.commit()
    return conn


def _message_case(store: Store, raw: sqlite3.Connection):
    thread = store.create("MessageThread")["id"]
    sql = (
        'INSERT INTO "Message" ("id", "references", "createdAt", "updatedAt", "threadId", "type", '
        '"sourceId", "content") VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
    )

    def with_store() -> None:
        store.create("Message", threadId=thread, type="user", content="How long is a piece of string?")

    def with_raw() -> None:
        now = now_iso()
        raw.execute(sql, (uuid7(), json.dumps({}), now, now, thread, "user", "", "How long is a piece of string?"))
        raw.commit()

    return with_store, with_raw


_DIMENSIONS = {"provider": "openai", "model": "gpt-4o-mini", "connection": "default"}
_METRIC_SQL = (
    'INSERT INTO "Metric" ("id", "references", "createdAt", "updatedAt", "name", "dimensions", "value") '
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _metric_case(store: Store, raw: sqlite3.Connection):
    def with_store() -> None:
        store.create("Metric", name="latency_ms", dimensions=_DIMENSIONS, value=412.5)

    def with_raw() -> None:
        now = now_iso()
        raw.execute(_METRIC_SQL, (uuid7(), json.dumps({}), now, now, "latency_ms", json.dumps(_DIMENSIONS), 412.5))
        raw.commit()

    return with_store, with_raw


def _single_writes(with_store, with_raw, ops: int) -> tuple[float, float]:
    """Median microseconds per call of each, interleaved in blocks."""
    timings: dict[str, list[int]] = {"store": [], "raw": []}
    clock = time.perf_counter_ns
    for fn in (with_store, with_raw):  # warm up statement caches and the file
        for _ in range(_BLOCK):
            fn()
    done = 0
    while done < ops:
        order = (("store", with_store), ("raw", with_raw))
        for key, fn in order if done // _BLOCK % 2 else order[::-1]:
            out = timings[key]
            for _ in range(_BLOCK):
                t0 = clock()
                fn()
                out.append(clock() - t0)
        done += _BLOCK
    return statistics.median(timings["store"]) / 1000, statistics.median(timings["raw"]) / 1000


def _bulk(store: Store, raw: sqlite3.Connection, rows: int, repeats: int) -> tuple[float, float]:
    """Median rows/s of store.create_many vs executemany in one transaction."""

    def batch() -> list[dict]:
        dims = [{"model": "m", "i": str(i % 7)} for i in range(rows)]
        return [{"name": "tokens", "dimensions": d, "value": float(i)} for i, d in enumerate(dims)]

    def with_store(data: list[dict]) -> None:
        store.create_many("Metric", data)

    def with_raw(data: list[dict]) -> None:
        now = now_iso()
        empty = json.dumps({})
        params = [(uuid7(), empty, now, now, r["name"], json.dumps(r["dimensions"]), r["value"]) for r in data]
        with raw:
            raw.executemany(_METRIC_SQL, params)

    speeds: dict[str, list[float]] = {"store": [], "raw": []}
    for i in range(repeats + 1):
        order = (("store", with_store), ("raw", with_raw)) if i % 2 else (("raw", with_raw), ("store", with_store))
        for key, fn in order:
            data = batch()
            gc.collect()
            t0 = time.perf_counter()
            fn(data)
            elapsed = time.perf_counter() - t0
            if i:  # the first round warms up
                speeds[key].append(rows / elapsed)
    return statistics.median(speeds["store"]), statistics.median(speeds["raw"])


def _fresh_python(code: str, runs: int) -> float:
    """Median seconds a fresh interpreter reports for `code`, which prints one float."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _import_time(runs: int) -> float:
    return _fresh_python("import time; t = time.perf_counter(); import aihub_nb; print(time.perf_counter() - t)", runs)


def _first_hub_open(home: Path, runs: int) -> float:
    code = (
        "import time; t = time.perf_counter(); from aihub_nb import Hub; "
        f"Hub({str(home)!r}).close(); print(time.perf_counter() - t)"
    )
    return _fresh_python(code, runs)


def _warm_hub_open(home: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        Hub(home).close()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _key_order(folder: Path, rows: int) -> tuple[float, float]:
    """Bulk inserts into a TEXT primary key (rows/s): time-ordered UUIDv7 keys vs random UUIDv4,
    keys made beforehand, 10,000 rows a transaction, each into a fresh WAL file."""
    import uuid

    from aihub_nb.store import uuid7

    speeds = []
    for name, make in (("v7", uuid7), ("v4", lambda: str(uuid.uuid4()))):
        keys = [make() for _ in range(rows)]
        conn = sqlite3.connect(folder / f"keys-{name}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, value REAL)")
        started = time.perf_counter()
        for at in range(0, rows, 10_000):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t VALUES (?, 1.0)", ((k,) for k in keys[at : at + 10_000]))
            conn.execute("COMMIT")
        speeds.append(rows / (time.perf_counter() - started))
        conn.close()
    return speeds[0], speeds[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks store", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="single writes per side and model (default 3000)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per bulk batch (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="bulk batches and fresh processes (default 5)")
    parser.add_argument("--key-rows", type=int, default=1_000_000, help="rows for the UUIDv7 vs v4 key test (default 1M)")
    args = parser.parse_args(argv)

    results = []  # (measure, store, raw, ratio, target text, passed or None)
    with tempfile.TemporaryDirectory(prefix="aihub-bench-") as tmp:
        home = Path(tmp) / "home"
        hub = Hub(home)
        store = hub.store
        raw = _raw_connection(Path(tmp) / "raw.db", store)

        for label, case in (("create Message", _message_case), ("create Metric", _metric_case)):
            s, r = _single_writes(*case(store, raw), args.ops)
            results.append((f"{label}  (µs/call, median)", f"{s:.1f}", f"{r:.1f}", s / r, "<= 1.5", s / r <= 1.5))

        s, r = _bulk(store, raw, args.rows, args.repeats)
        label = "create_many Metric  (rows/s, median)"
        results.append((label, f"{s:,.0f}", f"{r:,.0f}", s / r, ">= 0.7", s / r >= 0.7))

        rows_in_store = store.count("Metric") + store.count("Message")
        hub.close()
        raw.close()

        runs = max(args.repeats, 5)
        imp = _import_time(runs)
        first = _first_hub_open(home, runs)
        warm = _warm_hub_open(home, 20)
        results.append(("import aihub_nb  (ms, fresh process)", f"{imp * 1000:.1f}", "", None, "", None))
        results.append(("first Hub() on existing file  (ms, fresh)", f"{first * 1000:.1f}", "", None, "", None))
        results.append(("Hub() re-open, existing file  (ms)", f"{warm * 1000:.2f}", "", None, "", None))

        v7, v4 = _key_order(Path(tmp), args.key_rows)
        label = f"{args.key_rows:,} key inserts: UUIDv7 | UUIDv4  (rows/s)"
        results.append((label, f"{v7:,.0f}", f"{v4:,.0f}", v7 / v4, "", None))

    print(
        f"aihub_nb store benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.machine()}; {args.ops} single writes per side, "
        f"bulk {args.rows} rows x {args.repeats}; {rows_in_store:,} rows written by the store"
    )
    header = ("measure", "store", "raw sqlite3", "ratio", "target", "result")
    table = [header] + [
        (m, s, r, "" if q is None else f"{q:.2f}", t, "" if ok is None else ("PASS" if ok else "MISS"))
        for m, s, r, q, t, ok in results
    ]
    print(text_table(header, table[1:]))
    return 0 if all(ok is not False for *_, ok in results) else 1
