"""MCP client sessions against the shipped demo server: real processes over stdio, real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from aihub_nb.errors import McpError, McpInterrupted
from aihub_nb.mcp import McpSessions, ServerSpec, demo_command, result_text, tool_name
from aihub_nb.mcp.names import TOOL_NAME_RE


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def sessions():
    s = McpSessions(connect_timeout=30)
    yield s
    s.close()


@pytest.fixture(scope="module")
def demo():
    return ServerSpec("demo", command=demo_command())


@pytest.fixture(scope="module")
def http_url():
    proc = subprocess.Popen(demo_command("--http"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    yield url
    proc.terminate()
    proc.wait(10)


# ---------------------------------------------------------------- names and results


def test_tool_names_are_valid_for_providers_and_unique():
    assert tool_name("demo", "add") == "demo__add"
    names = [tool_name("files", "read.file"), tool_name("files", "read_file"), tool_name("a" * 32, "b" * 60), tool_name("a" * 32, "b" * 61)]
    assert all(TOOL_NAME_RE.match(n) for n in names)
    assert len(set(names)) == len(names)
    assert names[1] == "files__read_file"  # already valid: kept as it is


def test_result_text_reads_images_and_resources_as_short_lines():
    data = {
        "content": [
            {"type": "text", "text": "two blocks"},
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "demo://a.txt", "text": "inside"}},
        ],
        "isError": False,
    }
    assert result_text(data) == "two blocks\n[image image/png, 5 bytes]\n[resource demo://a.txt]\ninside"
    assert result_text({"content": [], "structuredContent": {"x": 1}}) == '{"x": 1}'


# ---------------------------------------------------------------- stdio


def test_stdio_lists_tools_with_their_input_schemas(sessions, demo):
    tools = {t["name"]: t for t in sessions.connect(demo)}
    assert {"add", "echo", "image", "fail", "slow", "crash"} <= set(tools)
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    assert sessions.running() == ["demo"]


def test_stdio_call_keeps_text_structured_content_and_images(sessions, demo):
    added = sessions.call(demo, "add", {"a": 2, "b": 3})
    assert added.result == {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": False}
    assert added.text == "5" and added.duration_ms > 0
    image = sessions.call(demo, "image")
    assert image.result["content"][0]["type"] == "image"
    assert image.result["content"][0]["mimeType"] == "image/png"
    assert image.result["content"][0]["data"].startswith("iVBOR")
    doc = sessions.call(demo, "document", {"name": "plan"})
    assert doc.result["content"][0]["resource"]["text"] == "The plan document."


def test_a_tool_error_is_a_result_the_model_reads(sessions, demo):
    failed = sessions.call(demo, "fail", {"message": "disk is full"})
    assert failed.is_error
    assert "disk is full" in failed.text


def test_each_call_gets_the_stderr_lines_written_while_it_ran(sessions, demo):
    shouted = sessions.call(demo, "shout", {"text": "hi"})
    assert shouted.text == "HI"
    assert shouted.stderr == ("shout: got 'hi'", "shout: done")
    assert sessions.call(demo, "echo", {"text": "quiet"}).stderr == ()


def test_a_call_that_takes_too_long_is_cancelled_and_the_server_keeps_running(sessions, demo):
    started = time.monotonic()
    with pytest.raises(McpError, match=r"^MCP tool 'slow' on server 'demo' did not answer within 0.3 s; the call was cancelled\.$"):
        sessions.call(demo, "slow", {"seconds": 5}, timeout=0.3)
    assert time.monotonic() - started < 3
    assert sessions.call(demo, "echo", {"text": "still here"}).text == "still here"


def test_ctrl_c_cancels_the_call_and_the_server_keeps_running(sessions, demo):
    pid = sessions.call(demo, "pid").result["structuredContent"]["result"]
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(McpInterrupted) as caught:
        sessions.call(demo, "slow", {"seconds": 10})
    assert isinstance(caught.value, KeyboardInterrupt)
    assert time.monotonic() - started < 5
    assert 400 < caught.value.duration_ms < 5000
    assert sessions.call(demo, "pid").result["structuredContent"]["result"] == pid  # same process


def test_a_server_crash_fails_the_call_in_one_line_and_the_next_call_restarts_it(sessions, demo):
    pid = sessions.call(demo, "pid").result["structuredContent"]["result"]
    with pytest.raises(McpError) as caught:
        sessions.call(demo, "crash")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("MCP server 'demo' closed the connection during the call of 'crash'")
    assert "crash: exiting now" in message and message.endswith("the next call starts it again.")
    assert caught.value.stderr == ("crash: exiting now",)
    assert _wait_gone(pid)
    assert "demo" not in sessions.running()
    new_pid = sessions.call(demo, "pid").result["structuredContent"]["result"]
    assert new_pid != pid
    assert sessions.running() == ["demo"]


def test_close_stops_every_server_it_started(demo):
    sessions = McpSessions()
    pid = sessions.call(demo, "pid").result["structuredContent"]["result"]
    assert not _gone(pid)
    sessions.close()
    assert _gone(pid)
    assert sessions.running() == []


def test_no_server_outlives_the_interpreter_that_started_it(tmp_path):
    script = textwrap.dedent(
        f"""
        from aihub_nb.mcp import McpSessions, ServerSpec, demo_command
        s = McpSessions()
        print(s.call(ServerSpec("demo", command=demo_command()), "pid").result["structuredContent"]["result"], flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert _wait_gone(int(out.stdout.strip()), 5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "spec, message",
    [
        (ServerSpec("x y", command=["true"]), r"^MCP server name 'x y' is invalid: use 1-32 letters"),
        (ServerSpec("s"), r"^MCP server 's': give either a command to start \(command=\[\.\.\.\]\) or a url, not neither\.$"),
        (ServerSpec("s", command=["cmd"], env={"API_KEY": "literal-secret"}), r"env 'API_KEY' must reference an environment variable, like \{'API_KEY': '\$\{MY_API_KEY\}'\}"),
        (ServerSpec("s", url="ftp://x"), r"'ftp://x' is not an http\(s\) URL"),
        (ServerSpec("s", url="http://x/mcp", headers_env={"Authorization": "Bearer abc"}), r"header 'Authorization' must name an environment variable"),
        (ServerSpec("s", command=["no-such-command-here"]), r"^MCP server 's': the command 'no-such-command-here' was not found; install it or give its full path\.$"),
    ],
)
def test_bad_definitions_fail_in_one_line_before_anything_starts(spec, message):
    sessions = McpSessions()
    with pytest.raises(McpError, match=message):
        sessions.connect(spec)
    assert sessions.running() == []
    sessions.close()


def test_a_command_that_exits_at_once_says_what_it_printed(sessions):
    spec = ServerSpec("quits", command=[sys.executable, "-c", "import sys; print('missing config file', file=sys.stderr); sys.exit(2)"])
    with pytest.raises(McpError, match=r"exited or closed its output before answering initialize; its last stderr line: missing config file; run the command"):
        sessions.connect(spec)
    assert "quits" not in sessions.running()


def test_a_server_that_never_answers_initialize_times_out(demo):
    sessions = McpSessions(connect_timeout=1)
    spec = ServerSpec("mute", command=[sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    with pytest.raises(McpError, match=r"^MCP server 'mute' \(.*\) did not answer initialize within 1 s; check that it is an MCP server\.$"):
        sessions.connect(spec)
    assert time.monotonic() - started < 10
    assert sessions.running() == []
    sessions.close()


def test_a_missing_environment_variable_is_named_when_the_server_starts(sessions, monkeypatch):
    monkeypatch.delenv("AIHUB_TEST_UNSET", raising=False)
    spec = ServerSpec("needs", command=demo_command(), env={"TOKEN": "${AIHUB_TEST_UNSET}"})
    with pytest.raises(McpError, match=r"^MCP server 'needs': env 'TOKEN' needs the environment variable AIHUB_TEST_UNSET, which is not set; set it and try again\.$"):
        sessions.connect(spec)


def test_a_url_that_is_no_mcp_endpoint_says_so(sessions, http_url):
    spec = ServerSpec("web", url=http_url.replace("/mcp", "/nothing-here"))
    with pytest.raises(McpError, match=r"did not answer as an MCP endpoint \(Not Found\); check the URL \(it often ends in /mcp\)"):
        sessions.connect(spec)


# ---------------------------------------------------------------- streamable HTTP


def test_http_server_tools_and_calls_with_a_header_from_the_environment(sessions, http_url, monkeypatch):
    monkeypatch.setenv("AIHUB_TEST_MCP_TOKEN", "tok-5e3c9a1b7d")
    spec = ServerSpec("web", url=http_url, headers_env={"Authorization": "Bearer ${AIHUB_TEST_MCP_TOKEN}", "X-Team": "AIHUB_TEST_MCP_TOKEN"})
    assert "tok-5e3c9a1b7d" not in repr(spec.as_data())
    assert spec.references() == ["AIHUB_TEST_MCP_TOKEN"]
    names = [t["name"] for t in sessions.connect(spec)]
    assert "add" in names
    assert sessions.call(spec, "add", {"a": 20, "b": 22}).result["structuredContent"] == {"result": 42}
    failed = sessions.call(spec, "fail", {"message": "no such row"})
    assert failed.is_error and "no such row" in failed.text


# ---------------------------------------------------------------- the hub's tools as an MCP server


def test_the_hubs_python_tools_are_served_to_other_mcp_clients(tmp_path, monkeypatch, sessions):
    (tmp_path / "aihub_test_served_tools.py").write_text(
        "def add(a: int, b: int) -> int:\n    '''Add two integers.'''\n    return a + b\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import aihub_test_served_tools

    from aihub_nb import Hub

    hub = Hub(tmp_path / "hub")
    hub.tool(aihub_test_served_tools.add)

    @hub.tool
    def local_only(x: int) -> int:
        return x

    hub.close()
    monkeypatch.setenv("AIHUB_TEST_SERVE_PATH", os.pathsep.join([os.getcwd(), str(tmp_path)]))
    spec = ServerSpec(
        "hubtools",
        command=[sys.executable, "-m", "aihub_nb.mcp", "serve", "--home", str(tmp_path / "hub")],
        env={"PYTHONPATH": "${AIHUB_TEST_SERVE_PATH}"},
    )
    tools = sessions.connect(spec)
    assert [(t["name"], t["description"]) for t in tools] == [("add", "Add two integers.")]
    assert sessions.call(spec, "add", {"a": 2, "b": 3}).result == {"content": [{"type": "text", "text": "5"}], "isError": False}
    refused = sessions.call(spec, "add", {"a": "two"})
    assert refused.is_error and "a" in refused.text
    sessions.stop("hubtools")
    hub = Hub(tmp_path / "hub")
    statuses = [r["status"] for r in hub.store.find("ToolInvocation")]
    hub.close()
    assert sorted(statuses) == ["completed", "failed"]
