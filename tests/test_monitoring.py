"""Monitoring: metrics and records as DataFrames, batched metric writes, prices and the summary.

The store is a real file, filled with rows shaped like the chat layer's (aihub_nb.chat), and
at the end with real chats against the local server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from aihub_nb import monitoring as mon
from aihub_nb.errors import NotFoundError, UsageError
from aihub_nb.store import now_iso

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc).timestamp()


def _iso(offset_s: float, base: float = T0) -> str:
    return now_iso(base + offset_s)


def _turn_rows(
    at: float, provider: str, model: str, *, latency: float, prompt: int | None = None, completion: int | None = None,
    cost: float | None = None, status: str = "completed", chat: str = "c1", connection: str | None = None,
) -> list[dict]:
    """The Metric rows one model call writes (chat._finish_call)."""
    dims = {"provider": provider, "model": model, "connection": connection or model, "chat": chat, "status": status}
    values = {"latency_ms": latency}
    if prompt is not None:
        values["prompt_tokens"] = prompt
    if completion is not None:
        values["completion_tokens"] = completion
    if cost is not None:
        values["cost_usd"] = cost
    if status != "completed":
        values["error"] = 1.0
    stamp = now_iso(at)
    return [{"name": n, "value": v, "dimensions": dims, "createdAt": stamp, "updatedAt": stamp} for n, v in values.items()]


@pytest.fixture
def turns(store):
    """Ten calls: six to a priced OpenAI model (one failed), four to an unpriced Ollama model."""
    rows = []
    for i, latency in enumerate([100, 200, 300, 400, 500]):
        rows += _turn_rows(T0 + i * 60, "OPENAI", "gpt-4o-mini", latency=latency, prompt=10, completion=20, cost=0.001)
    rows += _turn_rows(T0 + 330, "OPENAI", "gpt-4o-mini", latency=50, status="failed")
    for i, latency in enumerate([1000, 2000, 3000, 4000]):
        rows += _turn_rows(T0 + 3600 + i * 60, "OLLAMA", "llama3.2", latency=latency, prompt=5, completion=7, chat="c2")
    store.create_many("Metric", rows)
    return store


# ---------------------------------------------------------------- metrics()


def test_metrics_frame_has_typed_columns_one_per_dimension(turns):
    df = mon.metrics(turns)
    assert list(df.columns[:4]) == ["id", "createdAt", "name", "value"]
    assert set(df.columns[4:]) == {"provider", "model", "connection", "chat", "status"}
    assert str(df["createdAt"].dtype) == "datetime64[ms, UTC]"
    assert df["value"].dtype == np.float64
    assert len(df) == 5 * 4 + 2 + 4 * 3
    assert df["createdAt"].is_monotonic_increasing
    first = df.iloc[0]
    assert first["createdAt"] == pd.Timestamp(_iso(0))
    assert (first["provider"], first["model"], first["chat"], first["status"]) == ("OPENAI", "gpt-4o-mini", "c1", "completed")
    # the stored ms survive exactly, and the frame agrees with the rows
    stored = {r["id"]: r for r in turns.find("Metric")}
    for row in df.sample(8, random_state=1).itertuples():
        assert row.value == stored[row.id]["value"]
        assert row.createdAt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" == stored[row.id]["createdAt"]
        assert row.model == stored[row.id]["dimensions"]["model"]


def test_metrics_by_name_and_dimension_filters(turns):
    lat = mon.metrics(turns, "latency_ms")
    assert len(lat) == 10 and set(lat["name"]) == {"latency_ms"}
    openai = mon.metrics(turns, "latency_ms", provider="OPENAI")
    assert sorted(openai["value"]) == [50, 100, 200, 300, 400, 500]
    ok = mon.metrics(turns, "latency_ms", provider="OPENAI", status="completed")
    assert sorted(ok["value"]) == [100, 200, 300, 400, 500]
    either = mon.metrics(turns, ["prompt_tokens", "completion_tokens"], model=["llama3.2", "nope"])
    assert len(either) == 8 and set(either["model"]) == {"llama3.2"}
    none = mon.metrics(turns, "latency_ms", provider="ANTHROPIC")
    assert none.empty and {"id", "createdAt", "name", "value", "provider"} <= set(none.columns)
    assert str(none["createdAt"].dtype) == "datetime64[ms, UTC]"


def test_metrics_since_until_absolute_and_relative(store):
    now = time.time()
    rows = []
    for minutes_ago in (1, 10, 30, 90, 60 * 30, 60 * 24 * 10):
        stamp = now_iso(now - minutes_ago * 60)
        rows.append({"name": "m", "value": minutes_ago, "createdAt": stamp, "updatedAt": stamp, "dimensions": {}})
    store.create_many("Metric", rows)

    def ages(**kw):
        return sorted(mon.metrics(store, "m", **kw)["value"])

    assert ages(since="15m") == [1, 10]
    assert ages(since="1h") == [1, 10, 30]
    assert ages(since="2d") == [1, 10, 30, 90, 1800]
    assert ages(since="2w") == [1, 10, 30, 90, 1800, 14400]
    assert ages(since="all") == ages() == [1, 10, 30, 90, 1800, 14400]
    assert ages(until="1h") == [90, 1800, 14400]
    assert ages(since="2h", until="20m") == [30, 90]
    # absolute bounds: aware datetime, naive datetime (UTC), pandas Timestamp, ISO string
    cut = datetime.fromtimestamp(now - 45 * 60, tz=timezone.utc)
    assert ages(since=cut) == [1, 10, 30]
    assert ages(since=cut.replace(tzinfo=None)) == [1, 10, 30]
    assert ages(since=pd.Timestamp(cut)) == [1, 10, 30]
    assert ages(until=cut.strftime("%Y-%m-%dT%H:%M:%SZ")) == [90, 1800, 14400]
    assert ages(since=timedelta(minutes=20)) == [1, 10]
    with pytest.raises(UsageError, match="15m"):
        mon.metrics(store, since="yesterday-ish")


def test_reads_do_not_wait_for_a_writer_and_close_releases_them(turns):
    import threading

    holding, release = threading.Event(), threading.Event()

    def writer():
        with turns.transaction():  # BEGIN IMMEDIATE, held: a turn writing its rows
            turns.create("Metric", name="latency_ms", value=1, dimensions={"provider": "X"})
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.perf_counter()
        df = mon.metrics(turns, "latency_ms")
        assert time.perf_counter() - started < 2
        assert "X" not in set(df["provider"])  # the last committed state, not the open write
    finally:
        release.set()
        thread.join()
    assert "X" in set(mon.metrics(turns, "latency_ms")["provider"])
    mon.close(turns)
    assert len(mon.metrics(turns, "latency_ms", provider=[])) == 0  # reopens after close
    assert len(mon.metrics(turns, "latency_ms", provider="X")) == 1


def test_rows_written_out_of_order_come_back_newest_last(store):
    stamps = [_iso(s) for s in (30, 10, 20)]
    store.create_many("Metric", [{"name": "m", "value": i, "createdAt": s, "updatedAt": s} for i, s in enumerate(stamps)])
    df = mon.metrics(store, "m")
    assert list(df["value"]) == [1, 2, 0]
    assert df["createdAt"].is_monotonic_increasing


def test_odd_dimensions_are_columns_too(store):
    store.create_many("Metric", [
        {"name": "m", "value": 1, "dimensions": {"weird key": "a", "n": 3}},
        {"name": "m", "value": 2, "dimensions": {"nested": {"x": 1}}},
        {"name": "m", "value": 3},
        {"name": "value", "value": 4, "dimensions": {"value": "clash"}},
    ])
    df = mon.metrics(store)
    assert _values(df["weird key"]) == ["a", None, None, None]
    assert _values(df["n"]) == [3, None, None, None]
    assert df["nested"].iloc[1] == '{"x": 1}'
    assert df["dim_value"].iloc[3] == "clash" and df["value"].iloc[3] == 4
    assert list(mon.metrics(store, **{"weird key": "a"})["value"]) == [1]


def _values(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series.astype(object)]


def test_metric_names_lists_each_name_once(turns):
    assert mon.metric_names(turns) == ["completion_tokens", "cost_usd", "error", "latency_ms", "prompt_tokens"]


# ---------------------------------------------------------------- log_metric / MetricWriter


def test_log_metric_is_batched_and_reads_flush_it(store):
    for i in range(5):
        mon.log_metric(store, "eval_score", i / 10, suite="smoke", model="m1")
    assert store.count("Metric") == 0  # still in the buffer
    df = mon.metrics(store, "eval_score")  # reading flushes first
    assert list(df["value"]) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert set(df["suite"]) == {"smoke"}
    assert store.count("Metric") == 5


def test_writer_flushes_on_size_on_time_and_explicitly(store):
    writer = mon.MetricWriter(store, batch_size=3, max_delay=None)
    writer.log("a", 1)
    writer.log("a", 2)
    assert store.count("Metric") == 0 and writer.pending == 2
    writer.log("a", 3)  # the batch is full
    assert store.count("Metric") == 3 and writer.pending == 0
    writer.log("a", 4)
    assert writer.flush() == 1 and store.count("Metric") == 4

    timed = mon.MetricWriter(store, batch_size=1000, max_delay=0.05)
    timed.log("b", 1, k="v")
    deadline = time.time() + 5
    while store.count("Metric", name="b") == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert store.count("Metric", name="b") == 1
    row = store.first("Metric", name="b")
    assert row["dimensions"] == {"k": "v"}


def test_writer_keeps_log_time_and_rejects_bad_values(store):
    before = now_iso()
    mon.log_metric(store, "t", 1)
    time.sleep(0.02)
    mon.flush_metrics(store)
    row = store.first("Metric", name="t")
    assert before <= row["createdAt"] < now_iso(time.time() - 0.015)
    with pytest.raises(UsageError, match="number"):
        mon.log_metric(store, "t", "fast")
    with pytest.raises(UsageError, match="name"):
        mon.log_metric(store, "", 1)


def test_pending_metrics_are_written_at_exit(tmp_path):
    path = tmp_path / "exit.db"
    code = (
        "from aihub_nb.store import Store\nfrom aihub_nb import monitoring as m\n"
        f"s = Store({str(path)!r})\nfor i in range(7): m.log_metric(s, 'x', i)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    from aihub_nb.store import Store

    s = Store(path)
    try:
        assert s.count("Metric", name="x") == 7
    finally:
        s.close()


def test_importing_monitoring_and_plots_is_cheap():
    code = (
        "import sys, aihub_nb.monitoring, aihub_nb.plots\n"
        "heavy = [m for m in ('pandas', 'matplotlib', 'ipywidgets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- prices and cost


def test_prices_upsert_lookup_and_remove(store):
    assert mon.price_for(store, "OPENAI", "gpt-4o-mini") is None
    assert mon.turn_cost(store, "OPENAI", "gpt-4o-mini", 1000, 1000, package=False) is None  # unpriced, not 0
    mon.set_price(store, "gpt-4o-mini", 0.15, 0.60)
    assert mon.price_for(store, "OPENAI", "gpt-4o-mini") == (0.15, 0.60)
    mon.set_price(store, "gpt-4o-mini", 0.20, 0.80, provider="openai")  # provider-specific wins
    assert mon.price_for(store, "OPENAI", "gpt-4o-mini") == (0.20, 0.80)
    assert mon.price_for(store, "OLLAMA", "gpt-4o-mini") == (0.15, 0.60)
    mon.set_price(store, "gpt-4o-mini", 0.25, 1.00, provider="OPENAI")  # an update, not a second row
    assert store.count("ModelPrice") == 2
    assert mon.turn_cost(store, "OPENAI", "gpt-4o-mini", 2_000_000, 1_000_000) == pytest.approx(0.5 + 1.0)
    mon.set_price(store, "llama3.2", 0, 0, provider="OLLAMA")  # free is a price: 0.0, not None
    assert mon.turn_cost(store, "OLLAMA", "llama3.2", 100, 100) == 0.0

    table = mon.prices(store)
    assert list(table.columns) == ["provider", "model", "inputPerMillion", "outputPerMillion", "perImage", "currency", "updatedAt"]
    assert [tuple(r) for r in table[["provider", "model", "inputPerMillion"]].itertuples(index=False)] == [
        ("", "gpt-4o-mini", 0.15), ("OPENAI", "gpt-4o-mini", 0.25), ("OLLAMA", "llama3.2", 0.0),
    ]
    assert mon.remove_price(store, "gpt-4o-mini", provider="OPENAI") is True
    assert mon.remove_price(store, "gpt-4o-mini", provider="OPENAI") is False
    assert mon.price_for(store, "OPENAI", "gpt-4o-mini") == (0.15, 0.60)
    with pytest.raises(UsageError):
        mon.set_price(store, "m", -1, 1)


def test_per_image_prices_by_size_and_quality(store):
    assert mon.image_price(store, "OPENAI", "dall-e-3", 2, size="1024x1024") is None  # unpriced, not 0
    mon.set_price(store, "dall-e-3", per_image=0.04)
    assert mon.image_price(store, "OPENAI", "dall-e-3", 3, size="1024x1024") == (pytest.approx(0.12), "user")
    assert mon.price_for(store, "OPENAI", "dall-e-3") == (0.0, 0.0)  # token prices start at 0
    mon.set_price(store, "dall-e-3", per_image={"1024x1024": 0.04, "1792x1024": 0.08, "HD  1024x1024": 0.08, "hd": 0.12})
    price = lambda size, quality=None: mon.image_price(store, "OPENAI", "dall-e-3", 1, size=size, quality=quality)  # noqa: E731
    assert price("1024x1024") == (0.04, "user") and price("1792x1024") == (0.08, "user")
    assert price("1024x1024", "hd") == (0.08, "user")  # "quality size" first, then quality, then size
    assert price("1792x1024", "HD") == (0.12, "user") and price("1792x1024", "standard") == (0.08, "user")
    assert price("512x512") is None  # no entry and no "*": unpriced, never a guess
    mon.set_price(store, "dall-e-3", 0.5, 0.5)  # token prices change; the per-image table stays
    assert price("1024x1024") == (0.04, "user") and mon.price_for(store, "OPENAI", "dall-e-3") == (0.5, 0.5)
    assert mon.prices(store)["perImage"].iloc[0].startswith('{"1024x1024": 0.04')
    for bad, said in [(-1, "a number of USD from 0 up"), ({"big": "x"}, "a number of USD"), ({"1024 by 1024": 1}, "keyed by size"),
                      ({}, "table is empty"), (True, "a number of USD")]:
        with pytest.raises(UsageError, match=said):
            mon.set_price(store, "dall-e-3", per_image=bad)
    with pytest.raises(UsageError, match="Give 'x' a price"):
        mon.set_price(store, "x")


# ---------------------------------------------------------------- summary


def test_summary_per_model(turns):
    s = mon.summary(turns)
    assert list(s.columns) == list(mon.SUMMARY_COLUMNS)
    assert list(zip(s["provider"], s["model"])) == [("OLLAMA", "llama3.2"), ("OPENAI", "gpt-4o-mini")]
    ollama, openai = s.iloc[0], s.iloc[1]
    assert (openai["calls"], openai["errors"]) == (6, 1)
    assert openai["error_rate"] == pytest.approx(1 / 6)
    assert (openai["prompt_tokens"], openai["completion_tokens"]) == (50, 100)
    assert openai["cost_usd"] == pytest.approx(0.005) and not openai["unpriced"] and openai["unpriced_calls"] == 0
    assert openai["latency_p50_ms"] == np.percentile([50, 100, 200, 300, 400, 500], 50)
    assert openai["latency_p95_ms"] == pytest.approx(np.percentile([50, 100, 200, 300, 400, 500], 95))
    # the Ollama model has no price: cost is missing and flagged, never $0
    assert (ollama["calls"], ollama["errors"], ollama["error_rate"]) == (4, 0, 0.0)
    assert np.isnan(ollama["cost_usd"]) and ollama["unpriced"] and ollama["unpriced_calls"] == 4
    assert ollama["latency_p50_ms"] == 2500
    assert s["calls"].dtype == np.int64 and s["unpriced"].dtype == bool


def test_summary_partly_priced_window_and_failed_turns_without_latency(turns):
    # one more llama call, after a price was set: its cost counts, the 4 before stay unpriced
    turns.create_many("Metric", _turn_rows(T0 + 7200, "OLLAMA", "llama3.2", latency=10, prompt=5, completion=7, cost=0.5))
    # a failure that recorded only `error` (no latency) still counts as a call
    stamp = _iso(7300)
    turns.create("Metric", name="error", value=1, createdAt=stamp, updatedAt=stamp,
                 dimensions={"provider": "OLLAMA", "model": "llama3.2", "status": "failed"})
    # an interrupted call that still reported usage: it is an error, and not "unpriced"
    turns.create_many("Metric", _turn_rows(T0 + 400, "OPENAI", "gpt-4o-mini", latency=70, prompt=3, status="interrupted"))
    s = mon.summary(turns).set_index("model")
    assert s.loc["gpt-4o-mini", "calls"] == 7 and s.loc["gpt-4o-mini", "errors"] == 2
    assert s.loc["gpt-4o-mini", "prompt_tokens"] == 53 and not s.loc["gpt-4o-mini", "unpriced"]
    assert s.loc["llama3.2", "calls"] == 6 and s.loc["llama3.2", "errors"] == 1
    assert s.loc["llama3.2", "cost_usd"] == 0.5 and s.loc["llama3.2", "unpriced_calls"] == 4
    assert s.loc["llama3.2", "unpriced"]
    # a window holds only what happened in it
    late = mon.summary(turns, since=_iso(7000), until=_iso(8000)).set_index("model")
    assert list(late.index) == ["llama3.2"]
    assert late.loc["llama3.2", "calls"] == 2 and not late.loc["llama3.2", "unpriced"]
    pd.testing.assert_frame_equal(mon.summary_of_frame(mon.metrics(turns)), mon.summary(turns))
    assert mon.summary(turns, since=_iso(10**6)).empty


def test_summary_of_a_loaded_frame_matches_the_sql_one(turns):
    pd.testing.assert_frame_equal(mon.summary_of_frame(mon.metrics(turns)), mon.summary(turns))


# ---------------------------------------------------------------- other records


def test_network_calls_typed_filtered_and_masked(store):
    key = "sk-proj-" + "A1b2C3d4" * 4
    store.create("NetworkCall", endpoint="https://api.openai.com/v1/chat/completions", method="POST",
                 body=json.dumps({"model": "m", "api_key": key}), response='{"ok": 1}', status="success",
                 statusCode=200, durationMs=123.5, requestHeaders={"authorization": "[redacted]", "x-note": f"Bearer {key}"},
                 responseHeaders={"content-type": "application/json"})
    store.create("NetworkCall", endpoint="http://127.0.0.1:11434/api/chat", method="post", status="error",
                 error=f"refused while using {key}")
    df = mon.network_calls(store)
    assert list(df["endpoint"]) == ["https://api.openai.com/v1/chat/completions", "http://127.0.0.1:11434/api/chat"]
    assert str(df["createdAt"].dtype) == "datetime64[ms, UTC]"
    assert str(df["statusCode"].dtype) == "Int64" and df["statusCode"].iloc[0] == 200 and pd.isna(df["statusCode"].iloc[1])
    assert df["durationMs"].dtype == np.float64 and df["durationMs"].iloc[0] == 123.5
    assert df["responseHeaders"].iloc[0] == {"content-type": "application/json"}
    assert key not in df.to_string() and key not in repr(df.to_dict())
    assert json.loads(df["body"].iloc[0])["api_key"] == "sk-proj-***"
    assert df["requestHeaders"].iloc[0]["x-note"] == "Bearer ***"
    assert df["error"].iloc[1] == "refused while using sk-proj-***"
    assert list(mon.network_calls(store, status="error")["method"]) == ["post"]
    assert len(mon.network_calls(store, endpoint="/api/chat")) == 1
    assert len(mon.network_calls(store, method="POST")) == 2
    assert mon.network_calls(store, since="1h", status="success")["statusCode"].tolist() == [200]
    assert mon.network_calls(store, until=_iso(0)).empty


def _chat(store, name: str) -> tuple[dict, str]:
    thread = store.create("MessageThread")
    chat = store.create("Chat", name=name, type="chatModel", sourceId="conn-1", references={"thread": thread["id"]})
    return chat, thread["id"]


def test_messages_of_a_chat_by_name_or_id(store):
    chat, thread = _chat(store, "demo")
    _, other = _chat(store, "other")
    store.create("Message", threadId=other, type="user", content="not mine")
    store.create("Message", threadId=thread, type="system", sourceId="system", content="be brief")
    store.create("Message", threadId=thread, type="user", sourceId="user", content="hi")
    store.create("Message", threadId=thread, type="toolCall", sourceId="conn-1", content="",
                 data={"tool_calls": [{"id": "c1", "function": {"name": "add"}}]})
    store.create("Message", threadId=thread, type="chatModel", sourceId="conn-1", content="hello")
    df = mon.messages(store, "demo")
    assert list(df["type"]) == ["system", "user", "toolCall", "chatModel"]
    assert list(df["content"]) == ["be brief", "hi", "", "hello"]
    assert df["data"].iloc[2]["tool_calls"][0]["id"] == "c1"
    assert df.equals(mon.messages(store, chat["id"]))
    with pytest.raises(NotFoundError, match="demo"):
        mon.messages(store, "nope")


def test_jobs_with_times_and_duration(store):
    store.create("Jobs", name="chat turn: a", type="chat.turn", status="completed", textLogId="",
                 startedAt=_iso(0), finishedAt=_iso(1.25))
    store.create("Jobs", name="chat turn: b", type="chat.turn", status="failed", textLogId="",
                 startedAt=_iso(5), finishedAt=_iso(5.5), error="ServerError: 500")
    store.create("Jobs", name="bg", type="background", status="running", textLogId="", startedAt=_iso(6))
    df = mon.jobs(store)
    assert list(df["name"]) == ["chat turn: a", "chat turn: b", "bg"]
    assert str(df["startedAt"].dtype) == "datetime64[ms, UTC]"
    assert df["durationMs"].iloc[0] == 1250 and df["durationMs"].iloc[1] == 500 and pd.isna(df["durationMs"].iloc[2])
    assert pd.isna(df["finishedAt"].iloc[2])
    assert list(mon.jobs(store, status="failed")["error"]) == ["ServerError: 500"]
    assert len(mon.jobs(store, type="chat.turn")) == 2
    assert len(mon.jobs(store, type=["chat.turn", "background"], status=["running", "failed"])) == 2


def test_tool_invocations_with_tool_names(store):
    add = store.create("Tool", name="add", type="python")
    ls = store.create("Tool", name="ls", type="python")
    store.create("ToolInvocation", toolId=add["id"], parameters={"a": 1, "b": 2}, result={"value": 3}, textLogId="",
                 status="completed", durationMs=1.5, callId="c1")
    store.create("ToolInvocation", toolId=ls["id"], parameters={"path": "/"}, result={"error": "denied"}, textLogId="",
                 status="failed", durationMs=0.25)
    df = mon.tool_invocations(store)
    assert list(df["tool"]) == ["add", "ls"]
    assert df["parameters"].iloc[0] == {"a": 1, "b": 2} and df["result"].iloc[0] == {"value": 3}
    assert df["durationMs"].tolist() == [1.5, 0.25]
    assert list(mon.tool_invocations(store, tool="ls")["status"]) == ["failed"]
    assert list(mon.tool_invocations(store, tool=add["id"])["tool"]) == ["add"]
    assert list(mon.tool_invocations(store, status="completed")["callId"]) == ["c1"]


def test_streams_with_parsed_results(store):
    s = store.create("ResponseStream", sourceId="conn-1", status="completed", rawOutput="data: [DONE]",
                     resultMessages=[{"role": "assistant", "content": "hi"}])
    store.create("ResponseStream", sourceId="conn-2", status="failed", rawOutput="broken")
    df = mon.streams(store)
    assert list(df["status"]) == ["completed", "failed"]
    assert df["resultMessages"].iloc[0] == [{"role": "assistant", "content": "hi"}]
    assert list(mon.streams(store, source="conn-2")["rawOutput"]) == ["broken"]
    assert list(mon.streams(store, status="completed")["id"]) == [s["id"]]
    assert (df["durationMs"] >= 0).all()


# ---------------------------------------------------------------- real chats


def test_real_chats_show_up_in_every_frame(tmp_path, server):
    from aihub_nb import Hub
    from aihub_nb.errors import StreamError
    from aihub_nb.testing import ScriptedReply

    hub = Hub(tmp_path / "hub")
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
        mon.set_price(hub.store, "local-chat", 1.0, 2.0, provider="OPENAI")
        server.script(ScriptedReply(text="one", prompt_tokens=10, completion_tokens=4),
                      ScriptedReply(text="two", prompt_tokens=12, completion_tokens=6))
        chat = hub.chat("priced", model="oa")
        chat.send("first")
        chat.send("second")
        server.script(ScriptedReply(text="three", prompt_tokens=3, completion_tokens=2),
                      ScriptedReply(text="alpha beta gamma", fault="drop", drop_after=1))
        local = hub.chat("free", model="ol")
        local.send("third")
        with pytest.raises(StreamError):
            local.send("fourth")

        s = mon.summary(hub.store).set_index("provider")
        assert s.loc["OPENAI", "calls"] == 2 and s.loc["OPENAI", "errors"] == 0
        assert (s.loc["OPENAI", "prompt_tokens"], s.loc["OPENAI", "completion_tokens"]) == (22, 10)
        assert s.loc["OPENAI", "cost_usd"] == pytest.approx((22 * 1.0 + 10 * 2.0) / 1e6)
        assert not s.loc["OPENAI", "unpriced"]
        assert s.loc["OLLAMA", "calls"] == 2 and s.loc["OLLAMA", "errors"] == 1
        assert np.isnan(s.loc["OLLAMA", "cost_usd"]) and s.loc["OLLAMA", "unpriced_calls"] == 1
        assert s.loc["OLLAMA", "latency_p50_ms"] > 0

        lat = mon.metrics(hub.store, "latency_ms", chat="free")
        assert list(lat["status"]) == ["completed", "failed"] and set(lat["connection"]) == {"ol"}
        assert list(mon.messages(hub.store, "priced")["content"]) == ["first", "one", "second", "two"]
        turns = mon.jobs(hub.store, type="chat.turn")
        assert list(turns["status"]) == ["completed", "completed", "completed", "failed"]
        assert (turns["durationMs"] >= 0).all()
        posts = mon.network_calls(hub.store, method="POST")
        assert list(posts["status"]) == ["success", "success", "success", "error"]
        assert list(mon.streams(hub.store)["status"]) == ["completed", "completed", "completed", "failed"]
    finally:
        hub.close()


def test_a_single_time_bucket_keeps_a_readable_axis(store):
    import matplotlib.dates as mdates
    import pandas as pd

    from aihub_nb import plots
    from aihub_nb.monitoring import log_metric

    log_metric(store, "latency_ms", 120.0, provider="OPENAI", model="m")
    ax = plots.metric_over_time(store, "latency_ms", freq="1h")
    left, right = (pd.Timestamp(mdates.num2date(x)) for x in ax.get_xlim())
    assert right - left == pd.Timedelta("2h")  # one bucket of room each side, not years
    ax = plots.error_rate_over_time(store, freq="1h")
    left, right = (pd.Timestamp(mdates.num2date(x)) for x in ax.get_xlim())
    assert right - left == pd.Timedelta("2h")


def test_plots_of_real_chats_read_well(tmp_path, server):
    """Real turns against the local server, a few seconds apart at most: the dashboard's buckets
    fit the session, counts are whole, costs are in dollars, p50/p95 carry their unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aihub_nb import Hub, plots
    from aihub_nb.testing import ScriptedReply
    from aihub_nb.widgets.dashboard import Dashboard, _bucket_for

    hub = Hub(tmp_path / "hub")
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        hub.connect("OLLAMA", "local-tools", name="ol", host=server.ollama_host)
        mon.set_price(hub.store, "local-chat", 1.0, 2.0, provider="OPENAI")
        server.script(*[ScriptedReply(text="an answer " * (i + 1), first_token_delay=0.02 * i) for i in range(6)])
        for i in range(6):
            hub.chat("a" if i % 2 else "b", model="oa" if i % 2 else "ol").send(f"question {i}")
            hub.log_metric("eval_score", i / 10, suite="smoke")

        dash = Dashboard(hub.store)
        try:
            top, hist, tokens, cost = dash.figure.axes
            # a session of a second or two: sub-second buckets, so a line of several points, not one dot
            assert top.get_title() == f"latency_ms: mean per {_bucket_for(dash.frame)}"
            assert _bucket_for(dash.frame).endswith("ms") and np.isfinite(top.lines[0].get_ydata()).sum() >= 2
            assert top.lines[0].get_marker() == "o" and top.get_xlabel().startswith("time (UTC), 20")
            assert hist.get_title() == "latency_ms: distribution, all models (6 values)"
            assert [t.get_text().split(" = ")[0] for t in hist.texts] == ["p50", "p95"]
            assert all(t.get_text().endswith(" ms") for t in hist.texts)
            assert all(float(t).is_integer() for t in hist.get_yticks())
            ticks = [t.get_text() for t in cost.get_yticklabels() if t.get_text()]
            assert ticks and all(t.startswith("$") for t in ticks) and cost.yaxis.get_offset_text().get_text() == ""
            assert [t.get_text() for t in tokens.texts] == ["unpriced"]  # the Ollama model
        finally:
            dash.close()

        unpriced = plots.tokens_and_cost_by_model(mon.summary(hub.store).query("provider == 'OLLAMA'"))
        assert unpriced.figure.axes == [unpriced] and unpriced.get_title() == "Tokens by model (cost: no prices set)"
        one_model = plots.latency_distribution(mon.metrics(hub.store, "latency_ms", provider="OLLAMA"))
        assert one_model.get_title() == "latency_ms: distribution, model OLLAMA/local-tools (3 values)"
        plt.close("all")
    finally:
        hub.close()


# ---------------------------------------------------------------- edges a user meets


def test_a_closed_hub_refuses_metrics_instead_of_dropping_them(tmp_path):
    from aihub_nb import Hub

    hub = Hub(tmp_path / "hub")
    hub.log_metric("kept", 1.0)
    hub.close()  # writes what was pending
    with pytest.raises(UsageError, match="closed"):
        hub.log_metric("lost", 2.0)  # not queued for a flush that can only fail
    with pytest.raises(UsageError, match="closed"):
        hub.metrics()
    again = Hub(tmp_path / "hub")
    try:
        assert list(again.metrics()["name"]) == ["kept"]
    finally:
        again.close()


def test_every_secret_stays_masked_url_any_case_bearer_and_logs(store):
    key = "sk-proj-" + "Z9y8X7w6" * 4
    store.create("NetworkCall", endpoint=f"https://proxy.example/v1/chat?api_key={key}", method="POST", status="success",
                 requestHeaders={"x-upstream-auth": "bearer abcdef0123456789"})
    calls = mon.network_calls(store)
    assert calls["endpoint"].iloc[0] == "https://proxy.example/v1/chat?api_key=sk-proj-***"
    assert calls["requestHeaders"].iloc[0] == {"x-upstream-auth": "bearer ***"}

    job_log = store.create("TextLog", text=f"calling with {key}\n")
    store.create("Jobs", name="bg", type="background", status="completed", textLogId=job_log["id"])
    tool_log = store.create("TextLog", text=f"Authorization: Bearer {key}\n")
    tool = store.create("Tool", name="fetch", type="http")
    store.create("ToolInvocation", toolId=tool["id"], textLogId=tool_log["id"], status="completed")
    jobs, invocations = mon.jobs(store), mon.tool_invocations(store)
    assert jobs["log"].tolist() == ["calling with sk-proj-***\n"]
    assert invocations["log"].tolist() == ["Authorization: Bearer ***\n"]
    mon.log_metric(store, "probe", 1, endpoint=f"https://proxy.example/?key={key}")
    dims = mon.metrics(store, "probe")
    assert list(dims["endpoint"]) == ["https://proxy.example/?key=sk-proj-***"]
    for frame in (calls, jobs, invocations, dims):
        assert key not in frame.to_string() and key not in repr(frame.to_dict())


def test_empty_frames_have_the_columns_and_dtypes_of_full_ones(store):
    store.create("NetworkCall", endpoint="http://x/v1", method="POST", body="{}", response="ok", status="success")
    full, empty = mon.network_calls(store), mon.network_calls(store, status="nope")
    assert empty.empty and list(empty.columns) == list(full.columns)
    for name in ("endpoint", "body", "response"):
        assert empty[name].dtype == full[name].dtype == full["id"].dtype, name


def test_a_dimension_mixing_bools_and_numbers_keeps_each_value(store):
    for value in (True, 1, 0, False, 2.5, None):
        mon.log_metric(store, "m", 1.0, flag=value)
    df = mon.metrics(store, "m")
    assert _values(df["flag"]) == [True, 1, 0, False, 2.5, None]
    assert [type(v) for v in _values(df["flag"])[:4]] == [bool, int, int, bool]


def test_an_unpriced_model_that_reports_no_usage_is_still_unpriced(store):
    # a provider that sends no token counts: the completed turns have latency and nothing else
    rows = _turn_rows(T0, "OPENAI", "no-usage", latency=100) + _turn_rows(T0 + 60, "OPENAI", "no-usage", latency=200)
    rows += _turn_rows(T0 + 120, "OPENAI", "all-failed", latency=50, status="failed")
    store.create_many("Metric", rows)
    s = mon.summary(store).set_index("model")
    assert s.loc["no-usage", "unpriced"] and s.loc["no-usage", "unpriced_calls"] == 2
    assert np.isnan(s.loc["no-usage", "cost_usd"])
    # only failed turns: nothing was completed, so nothing is unpriced (and no cost either)
    assert not s.loc["all-failed", "unpriced"] and np.isnan(s.loc["all-failed", "cost_usd"])
    pd.testing.assert_frame_equal(mon.summary_of_frame(mon.metrics(store)), mon.summary(store))


def test_a_dimension_filter_list_may_hold_none(store):
    mon.log_metric(store, "m", 1, model="a")
    mon.log_metric(store, "m", 2)  # no model
    mon.log_metric(store, "m", 3, model="b")
    mon.log_metric(store, "m", 4, model=None)
    assert sorted(mon.metrics(store, "m", model=["a", None])["value"]) == [1, 2, 4]
    assert sorted(mon.metrics(store, "m", model=[None])["value"]) == [2, 4]
    assert sorted(mon.metrics(store, "m", model=None)["value"]) == [2, 4]
    assert sorted(mon.metrics(store, "m", **{"it's": ["x", None]})["value"]) == [1, 2, 3, 4]
    assert mon.metrics(store, "m", model=[]).empty


def test_a_nan_metric_or_price_is_refused_and_cannot_jam_the_writer(store):
    mon.log_metric(store, "score", 0.5)
    for bad in (float("nan"), float("inf"), None):
        with pytest.raises(UsageError, match="finite number"):
            mon.log_metric(store, "score", bad)
    mon.log_metric(store, "score", 0.75)
    assert list(mon.metrics(store, "score")["value"]) == [0.5, 0.75]  # the batch still flushes
    for bad in (float("nan"), float("inf"), "cheap"):
        with pytest.raises(UsageError, match="per million"):
            mon.set_price(store, "m", bad, 1.0)
    with pytest.raises(UsageError, match="USD"):  # turns record cost_usd from it
        mon.set_price(store, "m", 0.15, 0.60, currency="EUR")
    assert mon.prices(store).empty


def test_failed_turns_in_a_set_without_status_are_not_unpriced(store):
    # rows from before turns carried a status dimension: a failure shares the completed turns' set
    dims = {"provider": "OPENAI", "model": "gpt-4o-mini"}
    rows = [{"name": n, "value": v, "dimensions": dims}
            for n, v in (("latency_ms", 100), ("prompt_tokens", 5), ("completion_tokens", 7), ("cost_usd", 0.001),
                         ("latency_ms", 50), ("error", 1.0))]
    store.create_many("Metric", rows)
    s = mon.summary(store).iloc[0]
    assert (s["calls"], s["errors"], s["unpriced_calls"], bool(s["unpriced"])) == (2, 1, 0, False)
    assert s["cost_usd"] == pytest.approx(0.001)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts open files in /proc/self/fd")
def test_a_finished_threads_read_connection_is_freed(store):
    import os
    import threading

    def open_files() -> int:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return sum(name.startswith(str(store.path)) for name in names)

    mon.metrics(store)  # this thread's reader, kept
    before = open_files()
    for _ in range(30):  # e.g. the dashboard's auto-refresh switched on and off
        thread = threading.Thread(target=mon.metrics, args=(store,))
        thread.start()
        thread.join()
    assert open_files() <= before + 2  # not one more connection per thread that ever read


def test_summary_of_a_frame_with_turn_metrics_missing_provider_or_model(store):
    store.create_many("Metric", _turn_rows(T0, "OPENAI", "gpt-4o-mini", latency=100, prompt=1, completion=2, cost=0.1))
    mon.log_metric(store, "latency_ms", 7)  # your own latency_ms, no dimensions
    mon.log_metric(store, "latency_ms", 8, model="mine")
    frame = mon.metrics(store)
    from_frame = mon.summary_of_frame(frame)
    pd.testing.assert_frame_equal(from_frame, mon.summary(store))
    assert list(zip(from_frame["provider"], from_frame["model"])) == [("", ""), ("", "mine"), ("OPENAI", "gpt-4o-mini")]


def test_a_turn_and_log_metric_write_through_the_one_writer(tmp_path, server):
    from aihub_nb import Hub
    from aihub_nb.testing import ScriptedReply

    hub = Hub(tmp_path / "hub")
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        server.script(ScriptedReply(text="one", prompt_tokens=10, completion_tokens=4),
                      ScriptedReply(text="two", prompt_tokens=10, completion_tokens=4))
        chat = hub.chat("c", model="oa")
        chat.send("warm up")  # the first turn loads the client, which may outlast a batch's delay
        turn_rows = hub.store.count("Metric")
        writer = mon.metric_writer(hub.store)
        assert mon.metric_writer(hub.store) is writer
        hub.log_metric("eval_score", 0.5, suite="smoke")
        assert writer.pending == 1 and hub.store.count("Metric") == turn_rows  # batched
        chat.send("hi")
        # the turn's rows are in the store when send returns, written with what was queued before
        assert writer.pending == 0
        rows = hub.store.find("Metric")
        names = [r["name"] for r in rows]
        assert len(rows) == 2 * turn_rows + 1 and names[turn_rows] == "eval_score"
        assert rows[turn_rows]["dimensions"] == {"suite": "smoke"} and rows[-1]["references"]["stream"]
    finally:
        hub.close()


def test_the_store_owns_the_read_connections_and_closes_them(tmp_path):
    import sqlite3
    import threading

    from aihub_nb.store import Store

    store = Store(tmp_path / "aihub.db")
    mon.metrics(store)
    mine = store.reader()
    assert store.reader() is mine  # one per thread, kept
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(store.reader()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        mine.execute("INSERT INTO Metric (id, name, value) VALUES ('x', 'n', 1)")
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")


def test_spans_read_the_same_in_bounds_and_plot_buckets():
    from aihub_nb import plots
    from aihub_nb.monitoring.timespan import parse_span

    now = T0
    for text in ("90s", "15m", "1.5h", "2 hrs", "7d", "2w"):
        seconds = parse_span(text).total_seconds()
        assert mon.parse_time(text, now=now) == now_iso(now - seconds)
        assert pd.Timedelta(plots._pandas_freq(text)).total_seconds() == seconds
    assert parse_span("yesterday") is None and parse_span("h") is None
    assert plots._pandas_freq("h") == "1h"  # a bucket may leave out its count, a bound may not
