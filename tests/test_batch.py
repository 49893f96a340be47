"""Batch runs (hub.map) over real HTTP against the local server: results, records, 429 storms,
retries, structured output, Ctrl-C, a killed process and resume, the store cache, the magic."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pydantic
import pytest

from aihub_nb.demo.model import demo_text
from aihub_nb.batch import ItemError
from aihub_nb.errors import NotFoundError, UsageError
from aihub_nb.testing import ScriptedReply
from aihub_nb.widgets import HubPanel
from helpers import chat_requests as _chat_requests


@pytest.fixture
def conn(hub, server):
    hub.connect("OPENAI", "local-chat", name="t", base_url=server.openai_base_url)
    return "t"


def _reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review number {i}" for i in range(n)]}, index=[f"r{i}" for i in range(n)])


def test_map_returns_answers_in_row_order_and_records_each_like_a_turn(hub, server, conn):
    df = _reviews(12)
    out = hub.map("Classify: {review}", df, model=conn, concurrency=4, name="reviews", progress=False)
    assert list(out.index) == list(df.index)
    assert out["r3"] == demo_text(1, "Classify: review number 3")
    assert len(_chat_requests(server)) == 12
    job = hub.store.first("Jobs", type="batch")
    assert job["status"] == "completed" and job["name"] == "batch: reviews"
    assert job["progress"]["done"] == 12 and job["progress"]["failed"] == 0 and job["progress"]["tokens"] > 0
    assert "12 done, 0 failed" in hub.store.get("TextLog", job["textLogId"])["text"]
    thread = job["references"]["thread"]
    messages = hub.store.find("Message", threadId=thread)
    assert [m["type"] for m in messages].count("user") == 12 and [m["type"] for m in messages].count("chatModel") == 12
    assert hub.store.count("ResponseStream", status="completed") == 12
    calls = hub.network_calls()
    assert len(calls) == 12 and set(calls["status"]) == {"success"}
    latency = hub.metrics("latency_ms")
    assert len(latency) == 12 and set(latency["batch"]) == {"reviews"}
    assert hub.store.get("MessageThread", thread)["lockingJob"] is None


def test_bad_input_is_one_line_and_nothing_is_sent(hub, server, conn):
    df = _reviews(3)
    with pytest.raises(UsageError, match=r"Unknown column text in the template; the data has: review"):
        hub.map("Classify: {text}", df, model=conn)
    with pytest.raises(UsageError, match="The data is empty"):
        hub.map("Classify: {review}", df.iloc[:0], model=conn)
    with pytest.raises(UsageError, match="not a valid JSON schema"):
        hub.map("Classify: {review}", df, model=conn, schema={"type": "nonsense"})
    hub.store.set("ModelConnections", hub.connection(conn)["id"], type="EMBEDDING")
    with pytest.raises(UsageError, match="is a embedding model, not a chat model"):
        hub.map("Classify: {review}", df, model=conn)
    assert _chat_requests(server) == []
    assert hub.store.count("Jobs") == 0


def test_over_max_cost_refuses_before_sending(hub, server, conn):
    hub.set_price("local-chat", 1_000_000, 1_000_000)  # $1 a token
    with pytest.raises(UsageError, match=r"would cost about \$\d+\.\d+ for its input alone .* over max_cost=\$0\.5"):
        hub.map("Classify: {review}", _reviews(5), model=conn, max_cost=0.5)
    assert _chat_requests(server) == []
    out = hub.map("Classify: {review}", _reviews(2), model=conn, max_cost=1000, progress=False)
    assert len(out) == 2
    job = hub.store.first("Jobs", type="batch")
    assert job["progress"]["cost_usd"] > 0


def test_a_429_storm_slows_the_run_down_and_fails_no_row(hub, server, conn):
    server.limit_rate(5, retry_after=0.3)
    started = time.perf_counter()
    out = hub.map("Classify: {review}", _reviews(20), model=conn, concurrency=8, name="storm", progress=False)
    elapsed = time.perf_counter() - started
    assert server.rate_limited > 0
    assert not any(isinstance(v, ItemError) for v in out)
    job = hub.store.first("Jobs", type="batch")
    assert job["progress"]["done"] == 20 and job["progress"]["failed"] == 0 and job["progress"]["rate_limited"] > 0
    assert elapsed >= 2.5  # 20 rows at 5 per second
    assert "rate limited; all requests pause" in hub.store.get("TextLog", job["textLogId"])["text"]


def test_5xx_answers_are_retried(hub, server, conn):
    server.script(ScriptedReply(fault="503"), ScriptedReply(fault="500"))
    out = hub.map("Classify: {review}", _reviews(3), model=conn, concurrency=1, progress=False)
    assert not any(isinstance(v, ItemError) for v in out)
    assert len(_chat_requests(server)) == 5


def test_a_row_that_fails_keeps_its_error_and_the_others_their_answers(hub, server, conn):
    server.script(ScriptedReply(fault="401"))
    out = hub.map("Classify: {review}", _reviews(3), model=conn, concurrency=1, progress=False)
    assert isinstance(out.iloc[0], ItemError) and "API key" in out.iloc[0]
    assert all(not isinstance(v, ItemError) for v in out.iloc[1:])
    job = hub.store.first("Jobs", type="batch")
    assert job["progress"]["failed"] == 1 and job["status"] == "completed"
    failed = [m for m in hub.store.find("Message", threadId=job["references"]["thread"]) if (m["data"] or {}).get("status") == "failed"]
    assert len(failed) == 1 and failed[0]["data"]["error"]


class Sentiment(pydantic.BaseModel):
    label: str = pydantic.Field(json_schema_extra={"enum": ["positive", "negative", "neutral"]})
    stars: int


@pytest.mark.parametrize("provider", ["OPENAI", "OLLAMA"])
def test_structured_output_is_sent_in_the_providers_format_and_validated(hub, server, provider):
    if provider == "OPENAI":
        hub.connect("OPENAI", "local-chat", name="s", base_url=server.openai_base_url)
    else:
        hub.connect("OLLAMA", "local-chat", name="s", host=server.ollama_host)
    df = pd.DataFrame({"review": ["a negative one", "so positive", "meh"]})
    server.script(ScriptedReply(""), ScriptedReply('{"label": "positive"}'))  # not JSON; JSON missing stars
    out = hub.map("Rate: {review}", df, model="s", schema=Sentiment, concurrency=1, progress=False)
    assert list(out.columns) == ["label", "stars", "error"]
    assert out["error"].iloc[0].startswith("the reply is not JSON")
    assert out["error"].iloc[1] == "the reply does not meet the schema: stars: Field required"
    assert out["label"].iloc[2] in ("positive", "negative", "neutral") and out["stars"].iloc[2] == 2
    body = _chat_requests(server)[-1].json
    if provider == "OPENAI":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["name"] == "Sentiment"
        assert body["response_format"]["json_schema"]["schema"]["required"] == ["label", "stars"]
    else:
        assert body["format"]["properties"]["stars"] == {"title": "Stars", "type": "integer"}
    job = hub.store.first("Jobs", type="batch")
    assert job["progress"]["done"] == 1 and job["progress"]["failed"] == 2


def test_a_json_schema_dict_gives_columns_and_the_demo_model_meets_it(hub, server, conn):
    schema = {"type": "object", "properties": {"topic": {"enum": ["sport", "food"]}}, "required": ["topic"]}
    df = pd.DataFrame({"t": ["we ate food", "a sport match"]})
    out = hub.map("Topic of: {t}", df, model=conn, schema=schema, progress=False)
    assert out["topic"].tolist() == ["food", "sport"]
    assert out["error"].isna().all()


def test_identical_requests_are_served_from_the_store_unless_cache_is_off(hub, server, conn):
    df = _reviews(4)
    first = hub.map("Classify: {review}", df, model=conn, name="one", progress=False)
    server.reset()
    again = hub.map("Classify: {review}", df, model=conn, name="two", progress=False)
    assert _chat_requests(server) == []
    assert again.tolist() == first.tolist()
    job = hub.store.first("Jobs", name="batch: two")
    assert job["progress"]["cached"] == 4
    hub.map("Classify: {review}", df, model=conn, name="three", cache=False, progress=False)
    assert len(_chat_requests(server)) == 4


def test_ctrl_c_stops_cleanly_returns_what_is_done_and_resume_sends_the_rest(hub, server, conn):
    server.script(*[ScriptedReply.lorem(4, token_delay=0.05) for _ in range(60)])
    gone = threading.Event()

    def interrupt_after_five() -> None:  # Ctrl-C in the main thread while the workers stream
        while not gone.is_set():
            if len(hub.store.query(
                "SELECT id FROM \"Message\" WHERE type = 'chatModel' AND json_extract(data, '$.status') = 'completed'"
            )) >= 5:
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    threading.Thread(target=interrupt_after_five, daemon=True).start()
    try:
        out = hub.map("Classify: {review}", _reviews(30), model=conn, concurrency=4, name="stopped", progress=False)
    finally:
        gone.set()
    answered = [v for v in out if not isinstance(v, ItemError)]
    assert 0 < len(answered) < 30
    job = hub.store.first("Jobs", type="batch")
    assert job["status"] == "interrupted" and job["error"] == "interrupted by the user"
    assert hub.store.count("ResponseStream", status="streaming") == 0
    interrupted = hub.store.count("ResponseStream", status="interrupted")
    assert interrupted <= 4
    thread = job["references"]["thread"]
    assert hub.store.get("MessageThread", thread)["lockingJob"] is None
    sent_before = len(_chat_requests(server))
    server.reset()
    rest = hub.resume("stopped", progress=False)
    assert len(_chat_requests(server)) == 30 - len(answered)
    assert not any(isinstance(v, ItemError) for v in rest) and list(rest.index) == list(_reviews(30).index)
    assert sent_before >= len(answered)


_KILLED_RUN = """
import pandas as pd
from aihub_nb import Hub
hub = Hub({home!r})
df = pd.DataFrame({{"review": [f"review number {{i}}" for i in range(40)]}})
hub.map("Classify: {{review}}", df, model="t", concurrency=2, name="killed", progress=False)
"""


def test_a_killed_process_leaves_a_batch_that_resume_finishes(hub, server, conn, tmp_path):
    server.script(*[ScriptedReply.lorem(3, token_delay=0.05) for _ in range(40)])
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN.format(home=str(hub.home))))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = hub.store.query(
                "SELECT count(*) AS n FROM \"Message\" WHERE type = 'chatModel' AND json_extract(data, '$.status') = 'completed'"
            )[0]["n"]
            if done >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert 6 <= done < 40
    from aihub_nb import Hub

    hub.close()
    reopened = Hub(hub.home)
    try:
        assert reopened.store.first("Jobs", type="batch")["status"] == "failed"
        answered_before = reopened.store.query(
            "SELECT count(*) AS n FROM \"Message\" WHERE type = 'chatModel' AND json_extract(data, '$.status') = 'completed'"
        )[0]["n"]
        server.reset()
        out = reopened.resume("killed", progress=False)
        assert len(_chat_requests(server)) == 40 - answered_before
        assert len(out) == 40 and not any(isinstance(v, ItemError) for v in out)
        jobs = reopened.batches()
        assert jobs["status"].tolist() == ["completed", "failed"]
    finally:
        reopened.close()


def test_background_returns_at_once_with_progress(hub, server, conn):
    server.script(*[ScriptedReply.lorem(3, token_delay=0.02) for _ in range(10)])
    run = hub.map("Classify: {review}", _reviews(10), model=conn, concurrency=2, background=True, name="bg")
    assert not run.done()
    assert hub.store.get("Jobs", run.id)["status"] == "running"
    out = run.result(timeout=60)
    assert len(out) == 10 and run.progress["done"] == 10
    assert hub.store.get("Jobs", run.id)["status"] == "completed"
    assert "batch bg: 10/10 · 10 done · 0 failed" in repr(run._repr_mimebundle_()["text/plain"])


def test_a_running_batch_cannot_be_run_twice_at_once(hub, server, conn):
    server.script(*[ScriptedReply.lorem(3, token_delay=0.05) for _ in range(6)])
    run = hub.map("Classify: {review}", _reviews(6), model=conn, concurrency=1, background=True, name="busy")
    from aihub_nb.errors import ThreadBusyError

    with pytest.raises(ThreadBusyError, match="Batch 'busy' is busy"):
        hub.resume("busy", progress=False)
    run.stop()
    run.wait(30)


def test_the_map_cell_magic(hub, server, conn):
    from IPython.core.error import UsageError as IPythonUsageError
    from IPython.core.interactiveshell import InteractiveShell

    from aihub_nb import magics

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    try:
        shell.user_ns["df"] = _reviews(3)
        shell.run_cell_magic("aihub", "map tagged --over df --model t --concurrency 2 -o tags", "Tag: {review}")
        assert list(shell.user_ns["tags"].index) == ["r0", "r1", "r2"]
        with pytest.raises(IPythonUsageError, match="Unknown column nope in the template"):
            shell.run_cell_magic("aihub", "map x --over df --model t", "Tag: {nope}")
        with pytest.raises(IPythonUsageError, match="--over missing: no such variable"):
            shell.run_cell_magic("aihub", "map x --over missing --model t", "Tag: {review}")
    finally:
        magics.use_hub(None)


def test_the_hub_panels_jobs_page_shows_a_batchs_progress(hub, server, conn):
    hub.map("Classify: {review}", _reviews(3), model=conn, name="paneled", progress=False)
    panel = HubPanel(hub)
    panel.refresh_jobs()
    assert "batch: paneled" in panel.jobs_table.value
    assert "3/3 · 0 failed · $0.0000" in panel.jobs_table.value


def test_resume_after_its_connection_was_removed_says_to_map_again(hub, server, conn):
    server.script(*[ScriptedReply("ok") for _ in range(2)])
    hub.map("Classify: {review}", _reviews(2), model=conn, name="orphan", progress=False)
    hub.remove_connection(conn)
    with pytest.raises(NotFoundError) as caught:
        hub.resume("orphan", progress=False)
    assert str(caught.value) == "Batch 'orphan' used a connection that was removed; run hub.map again with model=NAME."
