"""Thread locks: taken with the job's start, recovered when stale, freed by hand, respected by delete."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest
from IPython.core.error import UsageError as IPythonUsageError

from aihub_nb import Hub
from aihub_nb.errors import ThreadBusyError, UsageError

from aihub_nb.testing import ScriptedReply
from helpers import run_python as _python


def _lock(hub: Hub, chat: str) -> str | None:
    return hub.store.get("MessageThread", hub.get_chat(chat).thread_id)["lockingJob"]


# The process kills itself (SIGKILL) at the moment its turn's job is marked running: after the
# thread's lock was written, before the job started. A TEMP trigger lives in that connection only.
_KILLED_AT_START = """
    import os, signal, sys
    from aihub_nb import Hub
    hub = Hub(sys.argv[1])
    hub.connect("OPENAI", "local-chat", name="m", base_url=sys.argv[2])
    chat = hub.chat("c")
    hub.store.conn.create_function("die", 0, lambda: os.kill(os.getpid(), signal.SIGKILL))
    hub.store.conn.execute(
        'CREATE TEMP TRIGGER die_at_start AFTER UPDATE OF status ON main."Jobs" '
        "WHEN NEW.status = 'running' BEGIN SELECT die(); END"
    )
    chat.send("hi")
"""


def test_a_process_killed_between_lock_and_start_leaves_the_chat_free(tmp_path, server):
    home = tmp_path / "home"
    proc = _python(_KILLED_AT_START, str(home), server.openai_base_url)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    hub = Hub(home)
    try:
        [killed] = hub.store.find("Jobs")
        assert (killed["status"], killed["error"]) == ("failed", "its process ended before the job started")  # recovered on open
        assert _lock(hub, "c") is None
        server.script(ScriptedReply(text="back"))
        assert hub.chat("c").send("again").text == "back"
        assert [m["content"] for m in hub.get_chat("c").messages()] == ["again", "back"]
    finally:
        hub.close()


def test_a_failure_between_lock_and_start_releases_the_lock(hub, server):
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    chat = hub.chat("c")
    conn = hub.store.conn
    conn.execute(
        'CREATE TEMP TRIGGER locked_at_start BEFORE UPDATE OF status ON main."Jobs" '
        "WHEN NEW.status = 'running' BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
    )
    try:
        with pytest.raises(sqlite3.DatabaseError, match="database is locked"):
            chat.send("hi")
    finally:
        conn.execute("DROP TRIGGER temp.locked_at_start")
    assert _lock(hub, "c") is None
    [job] = hub.store.find("Jobs")
    assert job["status"] == "failed" and "database is locked" in job["error"]
    server.script(ScriptedReply(text="fine"))
    assert chat.send("again").text == "fine"


def test_a_legacy_lock_by_a_job_that_never_started_is_stale(hub, server):
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    chat = hub.chat("c")
    log = hub.store.create("TextLog")
    old = "2020-01-01T00:00:00.000Z"
    job = hub.store.create("Jobs", name="t", type="chat.turn", status="pending", textLogId=log["id"], createdAt=old)
    hub.store.conn.execute('UPDATE "Jobs" SET updatedAt = ? WHERE id = ?', (old, job["id"]))
    hub.store.update("MessageThread", chat.thread_id, lockingJob=job["id"])
    server.script(ScriptedReply(text="ok"))
    assert chat.send("hi").text == "ok"
    from aihub_nb.jobs import fail_stale_pending_jobs

    assert fail_stale_pending_jobs(hub.store) == 1
    assert hub.store.get("Jobs", job["id"])["status"] == "failed"


_TURN_IN_PROGRESS = """
    import sys
    from aihub_nb import Hub
    hub = Hub(sys.argv[1])
    hub.chat("c", model="m").send("slow one")
"""


def test_unlock_refuses_a_live_holder_then_frees_a_dead_one_and_delete_respects_the_lock(tmp_path, server):
    from IPython.core.interactiveshell import InteractiveShell

    from aihub_nb import magics

    home = tmp_path / "home"
    hub = Hub(home)
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    hub.chat("c", model="m")
    assert hub.unlock("c") is None  # not locked: nothing to do
    server.script(ScriptedReply(text="slow", first_token_delay=8))
    proc = _python(_TURN_IN_PROGRESS, str(home))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    try:
        deadline = time.monotonic() + 30
        while _lock(hub, "c") is None or not server.requests:  # locked, and the reply under way
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
            time.sleep(0.05)
        held = _lock(hub, "c")
        with pytest.raises(ThreadBusyError) as refused:
            hub.unlock("c")
        said = str(refused.value)  # what is busy, in words: a chat turn, since when, which process
        assert f"another process (pid {proc.pid})" in said and "a chat turn started" in said and "s ago" in said
        assert held not in said and "\n" not in said
        with pytest.raises(IPythonUsageError, match="is busy"):
            ip.run_line_magic("aihub", "chat c --unlock")
        with pytest.raises(ThreadBusyError) as busy:
            hub.delete_chat("c")
        assert "--unlock" in str(busy.value) and "\n" not in str(busy.value)
        assert hub.get_chat("c").messages()[0]["content"] == "slow one"  # nothing deleted
        assert hub.store.get("Jobs", held)["status"] == "running"

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        shown = ip.run_line_magic("aihub", "chat c --unlock")
        assert "unlocked" in shown.data and "marked interrupted" in shown.text
        job = hub.store.get("Jobs", held)
        assert job["status"] == "interrupted" and "unlocked by the user" in job["error"]
        assert _lock(hub, "c") is None
        server.script(ScriptedReply(text="mine now"))
        assert hub.chat("c").send("next").text == "mine now"
        hub.delete_chat("c")
        assert hub.chats() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        magics.use_hub(None)
        hub.close()


def test_unlock_refuses_a_turn_running_in_this_kernel(hub, server):
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    server.script(ScriptedReply(text="a b c", chunks=["a", " b", " c"]))
    turn = hub.chat("c").turn("hi")
    next(turn)  # the turn holds the lock, mid-reply
    with pytest.raises(ThreadBusyError, match="in this kernel"):
        hub.unlock("c")
    turn.close()
    assert _lock(hub, "c") is None


def test_options_cannot_override_what_the_chat_sets(hub, server):
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    chat = hub.chat("c")
    for key, value in (("stream", False), ("model", "other"), ("messages", []), ("tools", [])):
        with pytest.raises(UsageError) as refused:
            chat.send("hi", options={key: value, "temperature": 0})
        assert key in str(refused.value) and "\n" not in str(refused.value)
    assert server.requests == [] and hub.store.find("Jobs") == []
    server.script(ScriptedReply(text="ok"))
    assert chat.send("hi", options={"temperature": 0}).text == "ok"
    assert server.requests[-1].json["temperature"] == 0

