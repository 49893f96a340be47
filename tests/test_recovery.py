"""A kernel killed mid-turn (SIGKILL, real subprocesses): the next Hub open puts the record right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from aihub_nb import Hub, magics
from aihub_nb.recovery import partial_reply
from aihub_nb.testing import ScriptedReply

ROOT = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from aihub_nb import Hub

    home, provider, url, mode = sys.argv[1:5]
    hub = Hub(home)
    if provider == "OPENAI":
        hub.connect("OPENAI", "local-chat", name="m", base_url=url)
    else:
        hub.connect("OLLAMA", "local-chat", name="m", host=url)

    def slow(seconds: int) -> str:
        \"\"\"Wait a while.\"\"\"
        open(home + ".tool-started", "w").close()  # (its prints go to its log)
        time.sleep(seconds)
        return "done"

    if mode == "tool":
        hub.tool(slow)
        hub.agent("waiter", model="m", tools=["slow"])
        chat = hub.chat("story", agent="waiter")
    else:
        chat = hub.chat("story", model="m")
    for text in chat.stream("Tell me a long story."):
        print(json.dumps(text), flush=True)
    """
)


def _start(tmp_path: Path, home: Path, provider: str, server, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    url = server.openai_base_url if provider == "OPENAI" else server.ollama_host
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(home), provider, url, mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _read_until(proc: subprocess.Popen, enough) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not enough(seen):
        line = proc.stdout.readline()
        assert line, f"the child ended early: {proc.stderr.read()}"
        seen.append(json.loads(line))
        assert time.monotonic() < deadline
    return seen


def _kill(proc: subprocess.Popen) -> list[str]:
    """SIGKILL the child; what it had printed and not yet read."""
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return [json.loads(line) for line in rest.splitlines() if line.strip()]


@pytest.mark.parametrize("provider", ["OPENAI", "OLLAMA"])
def test_a_turn_killed_mid_stream_is_recovered_on_the_next_open(tmp_path, server, provider):
    home = tmp_path / "home"
    full = ScriptedReply.lorem(400).text
    server.script(ScriptedReply.lorem(400, token_delay=0.02))  # 8 s of streaming
    proc = _start(tmp_path, home, provider, server, "stream")
    seen = _read_until(proc, lambda seen: len(seen) >= 20)
    time.sleep(0.5)  # well past the flush interval: what arrived by now must survive the kill
    seen += _kill(proc)
    printed = "".join(seen)
    assert full.startswith(printed) and 20 <= len(printed.split()) < 400

    with closing(Hub(home)) as hub:
        chat = hub.get_chat("story")
        job = hub.store.first("Jobs", type="chat.turn")
        [stream] = hub.store.find("ResponseStream")
        [call] = [c for c in hub.store.find("NetworkCall") if c["method"] == "POST"]
        messages = chat.messages()
        assert job["status"] == "failed" and hub.store.get("MessageThread", chat.thread_id)["lockingJob"] in (None, job["id"])
        assert stream["status"] == "interrupted"
        assert (call["status"], call["error"]) == ("interrupted", "its process ended before the call finished")
        # What arrived is kept: all but the last flush interval (0.01 s; allow a few words).
        recovered = messages[-1]["content"]
        assert [m["type"] for m in messages] == ["user", "chatModel"]
        assert messages[-1]["data"] == {"status": "interrupted"}
        assert messages[-1]["references"] == {"stream": stream["id"]}
        assert full.startswith(recovered) and len(recovered.split()) >= len(printed.split()) - 6
        assert recovered == partial_reply(stream["rawOutput"])
        assert stream["resultMessages"][0]["content"] == recovered
        assert list(hub.messages("story")["content"])[-1] == recovered

        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "aihub_nb")
        magics.use_hub(hub)
        try:
            shown = shell.run_line_magic("aihub", "chat story").data
        finally:
            magics.use_hub(None)
        assert recovered[-40:] in shown and "interrupted" in shown

        # The chat goes on: the next turn is not refused (an unfinished reply is not sent back).
        server.script(ScriptedReply(text="And then it ended."))
        assert chat.send("Go on.").text == "And then it ended."
        assert recovered not in json.dumps(server.requests[-1].json["messages"])

    with closing(Hub(home)) as hub:  # a second open changes nothing
        assert [m["type"] for m in hub.get_chat("story").messages()] == ["user", "chatModel", "user", "chatModel"]


def test_a_tool_killed_mid_run_is_marked_interrupted(tmp_path, server):
    home = tmp_path / "home"
    server.script(ScriptedReply(tool_calls=[{"name": "slow", "arguments": {"seconds": 60}}]))
    proc = _start(tmp_path, home, "OPENAI", server, "tool")
    marker = Path(f"{home}.tool-started")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    _kill(proc)

    with closing(Hub(home)) as hub:
        [inv] = hub.store.find("ToolInvocation")
        [stream] = hub.store.find("ResponseStream")
        assert inv["status"] == "interrupted"
        assert stream["status"] == "completed"  # the model's call had ended before the tool ran
        assert hub.store.first("Jobs", type="chat.turn")["status"] == "failed"
        assert [m["type"] for m in hub.get_chat("story").messages()] == ["user", "toolCall"]


def test_a_live_turn_in_another_process_is_left_alone(tmp_path, server):
    home = tmp_path / "home"
    server.script(ScriptedReply.lorem(300, token_delay=0.02))
    proc = _start(tmp_path, home, "OPENAI", server, "stream")
    try:
        _read_until(proc, lambda seen: len(seen) >= 5)
        with closing(Hub(home)) as hub:
            [stream] = hub.store.find("ResponseStream")
            assert stream["status"] == "streaming"
            assert hub.store.first("Jobs", type="chat.turn")["status"] == "running"
    finally:
        _kill(proc)


def test_partial_reply_reads_both_wire_formats_and_skips_a_cut_line():
    sse = 'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"delta":{"content":"lo"}}]}\n\ndata: {"choi'
    ndjson = '{"message":{"role":"assistant","content":"Hel"},"done":false}\n{"message":{"content":"lo"}}\n{"mess'
    assert partial_reply(sse) == partial_reply(ndjson) == "Hello"
    assert partial_reply("") == ""
