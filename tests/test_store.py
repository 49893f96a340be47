"""The store: what goes in comes back, ids and times, upgrades in place, many processes, errors."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import aihub_nb
from aihub_nb import migrations
from aihub_nb.errors import RecordNotFoundError, UnknownFieldError, UnknownModelError, UnknownTableError
from aihub_nb.hub import Hub
from aihub_nb.store import Store, now_iso, uuid7

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _stored(store: Store, table: str, id: str, column: str):
    """A column exactly as SQLite holds it, and its SQLite type."""
    row = store.conn.execute(f'SELECT "{column}", typeof("{column}") FROM "{table}" WHERE id = ?', (id,)).fetchone()
    return tuple(row)


def _tick() -> None:
    """Let the millisecond clock move, so a later timestamp is a different one."""
    start = now_iso()
    while now_iso() == start:
        time.sleep(0.0005)


# ---------------------------------------------------------------- round trips


def test_string_int_float_and_optional_none_round_trip(store):
    call = store.create(
        "NetworkCall",
        endpoint="https://api.example.com/v1/chat/completions?q=é",
        method="POST",
        body="",
        statusCode=200,
        durationMs=12.25,
    )
    got = store.get("NetworkCall", call["id"])
    assert got == call
    assert got["endpoint"] == "https://api.example.com/v1/chat/completions?q=é"
    assert got["body"] == ""
    assert got["statusCode"] == 200 and isinstance(got["statusCode"], int)
    assert got["durationMs"] == 12.25
    assert got["error"] is None and got["requestHeaders"] is None
    assert _stored(store, "NetworkCall", call["id"], "statusCode") == (200, "integer")
    assert _stored(store, "NetworkCall", call["id"], "durationMs") == (12.25, "real")
    assert _stored(store, "NetworkCall", call["id"], "error") == (None, "null")

    agent = store.create("Agent", name="helper", chatModelId="c1", maxRounds=3)
    assert store.get("Agent", agent["id"])["maxRounds"] == 3
    assert store.create("Agent", name="default", chatModelId="c1")["maxRounds"] == 8


def test_booleans_are_stored_as_0_and_1_and_read_as_bool(store):
    settings = store.create("UserSettings", sidebarOpen=True)
    assert _stored(store, "UserSettings", settings["id"], "sidebarOpen") == (1, "integer")
    assert _stored(store, "UserSettings", settings["id"], "bootstrapped") == (0, "integer")
    got = store.get("UserSettings", settings["id"])
    assert got["sidebarOpen"] is True and got["bootstrapped"] is False
    assert settings["sidebarOpen"] is True and settings["bootstrapped"] is False
    updated = store.update("UserSettings", settings["id"], sidebarOpen=False, bootstrapped=1)
    assert (updated["sidebarOpen"], updated["bootstrapped"]) == (False, True)
    assert _stored(store, "UserSettings", settings["id"], "bootstrapped") == (1, "integer")


def test_create_returns_the_record_as_it_is_stored(store):
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    job = store.create("Jobs", name="index", type="reindex", textLogId="", startedAt=when)
    settings = store.create("UserSettings", sidebarOpen=1)
    assert job == store.get("Jobs", job["id"])
    assert settings == store.get("UserSettings", settings["id"])
    assert job["startedAt"] == "2026-01-02T03:04:05.678Z"


def test_datetimes_round_trip_as_iso_strings(store):
    job = store.create("Jobs", name="n", type="t", textLogId="", startedAt="2026-03-04T05:06:07.089Z")
    assert store.get("Jobs", job["id"])["startedAt"] == "2026-03-04T05:06:07.089Z"
    assert store.get("Jobs", job["id"])["finishedAt"] is None
    done = store.update("Jobs", job["id"], finishedAt=datetime(2026, 3, 4, 5, 7, 0, tzinfo=timezone.utc))
    assert done["finishedAt"] == "2026-03-04T05:07:00.000Z"


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"temperature": 0.2, "stop": None, "stream": True},
        [{"type": "user", "content": "hi"}, {"type": "assistant", "content": "hello"}],
        {"deep": {"list": [1, [2, [3, {"x": "y"}]]], "empty": {}}},
        {"emoji": "🤖", "accents": "café naïve", "cjk": "你好", "quote": 'say "hi"\n'},
    ],
    ids=["empty-dict", "empty-list", "flat", "list-of-dicts", "nested", "unicode"],
)
def test_json_round_trips(store, value):
    tool = store.create("Tool", name="t", type="python", schema=value, data={"v": value})
    got = store.get("Tool", tool["id"])
    assert got["schema"] == value and got["data"] == {"v": value}
    text, kind = _stored(store, "Tool", tool["id"], "schema")
    assert kind == "text" and json.loads(text) == value
    assert "\\u" not in text  # unicode is stored as itself, readable with SQLite's json functions


def test_json_defaults_are_fresh_per_record(store):
    a = store.create("Tool", name="a", type="t")
    a["schema"]["mutated"] = True
    b = store.create("Tool", name="b", type="t")
    assert b["schema"] == {} and store.get("Tool", b["id"])["schema"] == {}
    assert store.create("RenderedConversationThread")["messages"] == []


def test_update_moves_updated_at_and_keeps_created_at(store):
    chat = store.create("Chat", name="c", type="chatModel", sourceId="m")
    _tick()
    changed = store.update("Chat", chat["id"], description="about things")
    assert changed["description"] == "about things"
    assert changed["createdAt"] == chat["createdAt"]
    assert changed["updatedAt"] > chat["updatedAt"]
    assert store.get("Chat", chat["id"]) == changed


# ---------------------------------------------------------------- ids and timestamps


def test_ids_are_time_ordered_uuid7():
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert sorted(ids) == ids and len(set(ids)) == len(ids)
    for text in (ids[0], ids[-1]):
        u = uuid.UUID(text)
        assert str(u) == text
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= int(u.hex[:12], 16) <= after


def test_bulk_ids_are_uuid7_in_order_between_single_ones():
    from aihub_nb.clock import uuid7_many

    first = uuid7()
    batch = uuid7_many(3000)
    last = uuid7()
    ids = [first, *batch, last]
    assert sorted(ids) == ids and len(set(ids)) == len(ids) and uuid7_many(0) == []
    for text in (batch[0], batch[-1]):
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 7 and u.variant == uuid.RFC_4122
    assert uuid7_many(2)[0] > last  # a second batch follows the first


def test_store_ids_sort_in_creation_order(store):
    created = [store.create("Message", threadId="t", type="user", content=str(i))["id"] for i in range(300)]
    assert sorted(created) == created
    assert [m["id"] for m in store.find("Message")] == created
    assert all(uuid.UUID(i).version == 7 for i in created)


def test_timestamps_are_iso_utc_milliseconds_that_pandas_and_sqlite_read(store):
    pd = pytest.importorskip("pandas")
    before = datetime.now(timezone.utc)
    msg = store.create("Message", threadId="t", type="user")
    after = datetime.now(timezone.utc)
    for key in ("createdAt", "updatedAt"):
        assert TIMESTAMP.match(msg[key]), msg[key]
        parsed = pd.to_datetime(msg[key])
        assert str(parsed.tz) == "UTC"
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed.to_pydatetime() <= after
    row = store.conn.execute(
        "SELECT julianday(createdAt), strftime('%Y-%m-%dT%H:%M:%fZ', createdAt),"
        " (julianday('now') - julianday(createdAt)) * 86400 FROM Message WHERE id = ?",
        (msg["id"],),
    ).fetchone()
    assert row[0] is not None
    assert row[1] == msg["createdAt"]
    assert 0 <= row[2] < 5
    frame = pd.read_sql_query("SELECT createdAt FROM Message", store.conn, parse_dates=["createdAt"])
    assert str(frame["createdAt"].dt.tz) == "UTC"


def test_now_iso_formats_a_given_time():
    assert now_iso(0) == "1970-01-01T00:00:00.000Z"
    assert now_iso(1_790_000_000.1234) == "2026-09-21T14:13:20.123Z"
    assert TIMESTAMP.match(now_iso())


# ---------------------------------------------------------------- queries


def test_find_returns_matches_newest_last_and_none_matches_null(store):
    t1 = store.create("MessageThread")
    t2 = store.create("MessageThread", lockingJob="job-1")
    t3 = store.create("MessageThread")
    assert [t["id"] for t in store.find("MessageThread")] == [t1["id"], t2["id"], t3["id"]]
    assert [t["id"] for t in store.find("MessageThread", lockingJob=None)] == [t1["id"], t3["id"]]
    assert [t["id"] for t in store.find("MessageThread", lockingJob="job-1")] == [t2["id"]]
    assert [t["id"] for t in store.find("MessageThread", order="desc", limit=2)] == [t3["id"], t2["id"]]
    assert store.find("MessageThread", lockingJob="nobody") == []


def test_find_matches_booleans_and_several_fields(store):
    store.create("UserSettings", theme="dark", sidebarOpen=True)
    store.create("UserSettings", theme="dark", sidebarOpen=False)
    store.create("UserSettings", theme="light", sidebarOpen=True)
    assert len(store.find("UserSettings", sidebarOpen=True)) == 2
    (match,) = store.find("UserSettings", theme="dark", sidebarOpen=False)
    assert match["sidebarOpen"] is False and match["theme"] == "dark"


def test_first_is_the_newest_match_or_none(store):
    assert store.first("Chat") is None
    store.create("Chat", name="a", type="x", sourceId="1")
    newest = store.create("Chat", name="b", type="x", sourceId="2")
    store.create("Chat", name="c", type="y", sourceId="3")
    assert store.first("Chat", type="x") == newest
    assert store.first("Chat", name="zzz") is None


def test_count_with_and_without_filters(store):
    assert store.count("Message") == 0
    for i in range(5):
        store.create("Message", threadId="t1" if i < 3 else "t2", type="user")
    store.create("MessageThread")
    store.create("MessageThread", lockingJob="j")
    assert store.count("Message") == 5
    assert store.count("Message", threadId="t1") == 3
    assert store.count("Message", threadId="t2", type="user") == 2
    assert store.count("MessageThread", lockingJob=None) == 1


def test_create_many_inserts_rows_with_different_fields_in_one_go(store):
    rows = [{"name": "latency", "value": float(i), "dimensions": {"model": "m", "i": i}} for i in range(100)]
    rows.append({"name": "tokens", "value": 7})
    assert store.create_many("Metric", rows) == 101
    metrics = store.find("Metric")
    assert len(metrics) == 101
    assert [m["value"] for m in metrics[:100]] == [float(i) for i in range(100)]
    assert metrics[50]["dimensions"] == {"model": "m", "i": 50}
    assert metrics[-1]["name"] == "tokens" and metrics[-1]["dimensions"] == {}
    assert all(TIMESTAMP.match(m["createdAt"]) and uuid.UUID(m["id"]).version == 7 for m in metrics)
    assert len({m["id"] for m in metrics}) == 101
    assert store.create_many("Metric", []) == 0


def test_create_many_with_a_bad_field_writes_nothing(store):
    rows = [{"name": "ok", "value": 1.0}, {"name": "bad", "value": 2.0, "valeu": 3}]
    with pytest.raises(UnknownFieldError, match="'valeu'"):
        store.create_many("Metric", rows)
    assert store.count("Metric") == 0


def test_references_by_any_name_and_by_a_given_name_across_models(store):
    thread = store.create("MessageThread")
    other = store.create("MessageThread")
    msg = store.create("Message", threadId=thread["id"], type="user")
    chat = store.create("Chat", name="c", type="chatModel", sourceId="m")
    _tick()
    updated = store.set_reference("Message", msg["id"], "thread", thread["id"])
    assert updated["references"] == {"thread": thread["id"]}
    assert updated["updatedAt"] > msg["updatedAt"]
    store.set_reference("Chat", chat["id"], "current.thread", thread["id"])
    store.set_reference("Chat", chat["id"], "previous", other["id"])

    found = store.referencing(thread["id"])
    assert sorted((r["_model"], r["id"]) for r in found) == sorted([("Message", msg["id"]), ("Chat", chat["id"])])
    assert [r["id"] for r in store.referencing(thread["id"], name="thread")] == [msg["id"]]
    assert [r["id"] for r in store.referencing(thread["id"], name="current.thread")] == [chat["id"]]
    assert [r["id"] for r in store.referencing(thread["id"], model="Chat")] == [chat["id"]]
    assert store.referencing(other["id"], name="thread") == []
    assert store.get("Chat", chat["id"])["references"] == {"current.thread": thread["id"], "previous": other["id"]}

    cleared = store.set_reference("Chat", chat["id"], "current.thread", None)
    assert cleared["references"] == {"previous": other["id"]}
    assert [r["_model"] for r in store.referencing(thread["id"])] == ["Message"]


def test_append_text_appends_in_place_and_moves_updated_at(store):
    stream = store.create("ResponseStream", sourceId="m")
    _tick()
    for chunk in ("Hel", "lo, ", "wörld"):
        store.append_text("ResponseStream", stream["id"], "rawOutput", chunk)
    got = store.get("ResponseStream", stream["id"])
    assert got["rawOutput"] == "Hello, wörld"
    assert got["updatedAt"] > stream["updatedAt"] and got["createdAt"] == stream["createdAt"]
    log = store.create("TextLog")
    store.append_text("TextLog", log["id"], "text", "line 1\n")
    store.append_text("TextLog", log["id"], "text", "line 2\n")
    assert store.get("TextLog", log["id"])["text"] == "line 1\nline 2\n"


def test_delete_removes_the_record(store):
    keep = store.create("TextLog", text="keep")
    gone = store.create("TextLog", text="gone")
    store.delete("TextLog", gone["id"])
    assert [r["id"] for r in store.find("TextLog")] == [keep["id"]]


# ---------------------------------------------------------------- errors


def test_unknown_model_names_the_valid_ones(store):
    with pytest.raises(UnknownModelError) as info:
        store.create("Mesage", content="hi")
    message = str(info.value)
    assert "'Mesage'" in message
    assert all(name in message for name in ("Message", "MessageThread", "Chat", "Metric"))
    for call in (lambda: store.find("Chats"), lambda: store.get("Chats", "x"), lambda: store.count("Chats")):
        with pytest.raises(UnknownModelError):
            call()


def test_the_store_api_says_table_and_keeps_the_older_names(store):
    with pytest.raises(UnknownTableError) as info:
        store.find("Chats")
    assert str(info.value).startswith("Unknown table 'Chats'; valid tables are: ")
    assert UnknownModelError is UnknownTableError
    assert store.table("Chat") is store.model("Chat") is store.models["Chat"]
    chat = store.create(model_name="Chat", name="c", type="chatModel", sourceId="s")  # the older keyword
    assert store.get(model_name="Chat", id=chat["id"])["name"] == "c"
    assert store.count(table="Chat") == 1 and store.find(table="Chat", name="c")[0]["id"] == chat["id"]
    with pytest.raises(UnknownFieldError, match="for table Chat;") as field:
        store.find("Chat", nmae="c")
    assert field.value.table == field.value.model == "Chat"
    thread = store.create("MessageThread")
    store.set_reference("Chat", chat["id"], "thread", thread["id"])
    assert [r["_table"] for r in store.referencing(thread["id"], table="Chat")] == ["Chat"]
    assert [r["_model"] for r in store.referencing(thread["id"], model="Chat")] == ["Chat"]


def test_unknown_field_names_the_valid_ones(store):
    with pytest.raises(UnknownFieldError) as info:
        store.create("Message", threadId="t", type="user", contnet="hi")
    message = str(info.value)
    assert "'contnet'" in message and "Message" in message
    assert all(name in message for name in ("threadId", "content", "sourceId", "createdAt"))
    assert store.count("Message") == 0
    msg = store.create("Message", threadId="t", type="user")
    for call in (
        lambda: store.find("Message", thread="t"),
        lambda: store.update("Message", msg["id"], body="x"),
        lambda: store.count("Message", thread="t"),
        lambda: store.append_text("Message", msg["id"], "text", "x"),
    ):
        with pytest.raises(UnknownFieldError):
            call()


def test_missing_ids_raise_record_not_found(store):
    missing = uuid7()
    for call in (
        lambda: store.get("Chat", missing),
        lambda: store.update("Chat", missing, name="x"),
        lambda: store.delete("Chat", missing),
        lambda: store.set_reference("Chat", missing, "thread", "t"),
    ):
        with pytest.raises(RecordNotFoundError) as info:
            call()
        assert missing in str(info.value) and "Chat" in str(info.value)


# ---------------------------------------------------------------- files and permissions


def test_hub_home_is_0700_and_the_database_files_are_0600(home):
    old_umask = os.umask(0o022)  # a common umask: the store must not rely on a strict one
    try:
        hub = Hub()
        hub.store.create("Message", threadId="t", type="user", content="x")
        assert hub.path == home / "aihub.db"
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in home.glob("aihub.db*")}
        assert files == {"aihub.db": 0o600, "aihub.db-wal": 0o600, "aihub.db-shm": 0o600}
        assert hub.store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        hub.close()
    finally:
        os.umask(old_umask)


def test_a_second_hub_reads_what_the_first_wrote(home):
    first = Hub()
    chat = first.store.create("Chat", name="c", type="chatModel", sourceId="m")
    second = Hub(home)
    assert second.store.get("Chat", chat["id"]) == chat
    first.close()
    second.close()


# ---------------------------------------------------------------- upgrades and migrations


def _old_database(path: Path) -> None:
    """A file from an earlier version: three tables, each missing fields, holding rows."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE "Message" (
            "id" TEXT PRIMARY KEY, "references" TEXT, "createdAt" TEXT NOT NULL, "updatedAt" TEXT NOT NULL,
            "threadId" TEXT NOT NULL, "type" TEXT NOT NULL, "content" TEXT NOT NULL
        );
        CREATE TABLE "Chat" (
            "id" TEXT PRIMARY KEY, "createdAt" TEXT NOT NULL, "updatedAt" TEXT NOT NULL, "name" TEXT NOT NULL,
            "sourceId" TEXT NOT NULL
        );
        CREATE TABLE "MessageThread" ("id" TEXT PRIMARY KEY, "createdAt" TEXT NOT NULL);
        INSERT INTO "MessageThread" VALUES ('thread-1', '2025-01-01T00:00:00.000Z');
        INSERT INTO "Message" VALUES
            ('m1', NULL, '2025-01-01T00:00:01.000Z', '2025-01-01T00:00:01.000Z', 'thread-1', 'user', 'hello'),
            ('m2', '', '2025-01-01T00:00:02.000Z', '2025-01-01T00:00:02.000Z', 'thread-1', 'chatModel', 'hi there'),
            ('m3', '{"thread": "thread-1"}', '2025-01-01T00:00:03.000Z', '2025-01-01T00:00:03.000Z',
             'thread-1', 'user', 'bye');
        INSERT INTO "Chat" VALUES ('c1', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 'my chat', 'conn-1');
        """
    )
    conn.commit()
    conn.close()


def _snapshot(path: Path) -> tuple:
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for _, t, _ in schema if _ == "table"}
        return schema, rows
    finally:
        conn.close()


def test_an_older_database_upgrades_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    before_open = now_iso()
    store = Store(path)
    after_open = now_iso()

    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {m.table for m in store.models.values()} <= tables
    for model in ("Message", "Chat", "MessageThread"):
        columns = {r["name"] for r in store.query(f'PRAGMA table_info("{model}")')}
        assert {f.column for f in store.models[model].fields.values()} <= columns, model

    messages = store.find("Message", threadId="thread-1")
    assert [(m["id"], m["type"], m["content"]) for m in messages] == [
        ("m1", "user", "hello"),
        ("m2", "chatModel", "hi there"),
        ("m3", "user", "bye"),
    ]
    assert [m["references"] for m in messages] == [{}, {}, {"thread": "thread-1"}]  # NULL and '' became {}
    assert [m["sourceId"] for m in messages] == ["", "", ""]  # new column, its @default
    assert [m["data"] for m in messages] == [None, None, None]  # new optional column
    assert messages[0]["createdAt"] == "2025-01-01T00:00:01.000Z"

    chat = store.get("Chat", "c1")
    assert (chat["name"], chat["sourceId"], chat["description"], chat["type"]) == ("my chat", "conn-1", "", "")
    assert chat["references"] == {}
    thread = store.get("MessageThread", "thread-1")
    assert thread["lockingJob"] is None
    assert before_open <= thread["updatedAt"] <= after_open  # a required DateTime added: the upgrade's time

    applied = [r["name"] for r in store.query("SELECT name FROM _aihub_migrations")]
    assert "m001_json_defaults" in applied
    # the upgraded store works like a new one
    new = store.create("Message", threadId="thread-1", type="user", content="after")
    assert store.find("Message", threadId="thread-1")[-1] == new
    store.set_reference("Message", "m1", "thread", "thread-1")
    assert [r["id"] for r in store.referencing("thread-1", name="thread")] == ["m1", "m3"]
    store.close()

    snapshot = _snapshot(path)
    again = Store(path)
    assert again.upgrade() == []
    again.close()
    assert _snapshot(path) == snapshot


def test_a_registered_migration_runs_once_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", dict(migrations.MIGRATIONS))  # restored after the test
    path = tmp_path / "aihub.db"
    store = Store(path)
    store.create("UserSettings", theme="")
    store.create("UserSettings", theme="dark")
    store.close()

    runs = []

    @migrations.migration
    def m900_fill_empty_theme(store):
        runs.append(store.path)
        store.conn.execute("UPDATE \"UserSettings\" SET theme = 'light' WHERE theme = ''")

    store = Store(path)
    assert runs == [path]
    assert sorted(s["theme"] for s in store.find("UserSettings")) == ["dark", "light"]
    recorded = {r["name"]: r["appliedAt"] for r in store.query("SELECT name, appliedAt FROM _aihub_migrations")}
    assert set(recorded) == set(migrations.names()) and "m900_fill_empty_theme" in recorded
    assert TIMESTAMP.match(recorded["m900_fill_empty_theme"])
    store.close()
    Store(path).close()
    assert runs == [path]

    with pytest.raises(ValueError, match="registered twice"):
        migrations.migration(m900_fill_empty_theme)


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", dict(migrations.MIGRATIONS))
    path = tmp_path / "old.db"
    _old_database(path)
    snapshot = _snapshot(path)

    @migrations.migration
    def m901_breaks(store):
        store.conn.execute("UPDATE \"Message\" SET content = 'changed'")
        raise RuntimeError("this migration fails")

    with pytest.raises(RuntimeError, match="this migration fails"):
        Store(path)
    assert _snapshot(path) == snapshot  # no new tables, no columns, no changed rows, nothing recorded

    del migrations.MIGRATIONS["m901_breaks"]
    store = Store(path)
    assert [m["content"] for m in store.find("Message")] == ["hello", "hi there", "bye"]
    store.close()


# ---------------------------------------------------------------- many processes


def _write_rows(path: str, worker: int, rows: int, start, results) -> None:
    """A child process: open the store, wait for the others, write `rows` rows one commit each."""
    try:
        store = Store(path)
        start.wait(timeout=60)
        for i in range(rows):
            if worker % 2:
                store.create("Metric", name="load", value=float(i), dimensions={"worker": worker})
            else:
                store.create("Message", threadId=f"worker-{worker}", type="user", content=str(i))
        store.close()
        results.put((worker, "ok"))
    except BaseException as exc:  # report every failure, "database is locked" above all
        results.put((worker, f"{type(exc).__name__}: {exc}"))


def _open_and_write(path: str, worker: int, start, results) -> None:
    try:
        start.wait(timeout=60)
        store = Store(path)
        store.create("TextLog", text=f"worker {worker}")
        store.close()
        results.put((worker, "ok"))
    except BaseException as exc:
        results.put((worker, f"{type(exc).__name__}: {exc}"))


def _run_workers(target, args_for, n: int = 4) -> dict[int, str]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), start, results)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        outcome = dict(results.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * n
    return outcome


def test_four_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "aihub.db"
    Store(path).close()
    outcome = _run_workers(_write_rows, lambda i: (str(path), i, 2000))
    assert outcome == {0: "ok", 1: "ok", 2: "ok", 3: "ok"}
    store = Store(path)
    assert store.count("Message") + store.count("Metric") == 8000
    for worker in (0, 2):
        assert store.count("Message", threadId=f"worker-{worker}") == 2000
    per_worker = store.query("SELECT json_extract(dimensions, '$.worker') AS w, count(*) AS n FROM Metric GROUP BY w")
    assert per_worker == [{"w": 1, "n": 2000}, {"w": 3, "n": 2000}]
    assert store.query("SELECT count(DISTINCT id) AS n FROM Message")[0]["n"] == 4000
    store.close()


def test_four_processes_creating_a_new_database_at_once(tmp_path):
    path = tmp_path / "new.db"
    outcome = _run_workers(_open_and_write, lambda i: (str(path), i))
    assert outcome == {0: "ok", 1: "ok", 2: "ok", 3: "ok"}
    store = Store(path)
    assert sorted(r["text"] for r in store.find("TextLog")) == [f"worker {i}" for i in range(4)]
    assert [r["name"] for r in store.query("SELECT name FROM _aihub_migrations")] == migrations.names()
    assert store.upgrade() == []
    store.close()


# ---------------------------------------------------------------- import cost


def test_importing_the_package_loads_no_heavy_modules():
    heavy = ["openai", "ollama", "pandas", "matplotlib", "ipywidgets", "sqlite_utils", "httpx", "IPython"]
    code = (
        "import json, sys; import aihub_nb; import aihub_nb.store; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    root = str(Path(aihub_nb.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_set_changes_fields_without_reading_back(store):
    row = store.create("Jobs", name="j", type="t", textLogId="x")
    assert store.set("Jobs", row["id"], status="running") is None
    again = store.get("Jobs", row["id"])
    assert again["status"] == "running" and again["updatedAt"] >= row["updatedAt"]
    with pytest.raises(RecordNotFoundError):
        store.set("Jobs", "missing", status="x")
    with pytest.raises(UnknownFieldError):
        store.set("Jobs", row["id"], nope=1)
