"""MCP servers as hub tools: stored definitions, Tool rows, agent calls, records, bad input."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell

from aihub_nb import Hub, magics
from aihub_nb.errors import McpError
from aihub_nb.mcp import demo_command
from aihub_nb.testing import ScriptedReply
from aihub_nb.tools import get_tool, invoke_tool


def _invocation(hub: Hub) -> dict:
    return hub.store.find("ToolInvocation")[-1]


def _log(hub: Hub, row: dict) -> str:
    return hub.store.get("TextLog", row["textLogId"])["text"]


def _pid(hub: Hub, server: str = "demo") -> int:
    return invoke_tool(hub.runtime, get_tool(hub.runtime, f"{server}__pid"), {}).content and _invocation(hub)["result"]["value"]["structuredContent"]["result"]


def _gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def demo(hub):
    rows = hub.mcp("demo", command=demo_command())
    return rows


def test_a_server_is_stored_and_each_tool_becomes_a_tool_row(hub, demo, monkeypatch):
    assert [r["name"] for r in demo][:3] == ["demo__add", "demo__echo", "demo__now"]
    add = get_tool(hub.runtime, "demo__add")
    assert (add["type"], add["description"]) == ("mcp", "Add two integers.")
    assert add["schema"]["required"] == ["a", "b"]
    assert add["data"] == {"server": "demo", "tool": "add", "available": True}
    [server] = hub.mcp_servers()
    assert (server["name"], server["transport"], server["tools"], server["running"]) == ("demo", "stdio", 10, True)
    assert hub.store.first("McpServer", name="demo")["data"]["command"] == demo_command()


def test_a_call_is_recorded_with_its_result_json_stderr_and_metrics(hub, demo):
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__shout"), '{"text": "hi"}')
    assert (outcome.content, outcome.status) == ("HI", "completed")
    inv = _invocation(hub)
    assert inv["parameters"] == {"text": "hi"}
    assert inv["result"] == {"value": {"content": [{"type": "text", "text": "HI"}], "structuredContent": {"result": "HI"}, "isError": False}}
    assert inv["durationMs"] > 0
    assert _log(hub, inv) == "shout: got 'hi'\nshout: done\n"
    dims = [m["dimensions"] for m in hub.store.find("Metric", name="tool_duration_ms")]
    assert dims == [{"tool": "demo__shout", "status": "completed", "server": "demo"}]


def test_images_stay_in_the_stored_result_and_the_model_reads_a_short_line(hub, demo):
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__image"), {})
    assert outcome.content == "[image image/png, 70 bytes]"
    block = _invocation(hub)["result"]["value"]["content"][0]
    assert (block["type"], block["mimeType"], block["data"][:5]) == ("image", "image/png", "iVBOR")


def test_a_tool_error_goes_back_to_the_model_and_counts_as_a_failure(hub, demo):
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__fail"), {"message": "no such file"})
    assert outcome.status == "failed" and "no such file" in outcome.content
    assert _invocation(hub)["result"]["value"]["isError"] is True
    assert [m["value"] for m in hub.store.find("Metric", name="tool_failures")] == [1.0]


def test_arguments_are_checked_against_the_schema_before_the_server_sees_them(hub, demo):
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__add"), {"a": "two", "b": 3})
    assert outcome.status == "failed"
    assert outcome.content.startswith("Tool 'demo__add' was not run:")
    assert _invocation(hub)["durationMs"] is None


def test_a_crash_is_one_failed_call_and_the_next_call_restarts_the_server(hub, demo):
    pid = _pid(hub)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__crash"), {})
    assert outcome.status == "failed"
    assert outcome.content.startswith("Tool 'demo__crash' failed: MCP server 'demo' closed the connection during the call of 'crash'")
    assert "\n" not in outcome.content
    assert "crash: exiting now" in _log(hub, _invocation(hub))
    assert _gone(pid)
    assert _pid(hub) != pid


def test_stored_servers_start_on_first_use_after_a_restart(tmp_path, home):
    first = Hub(tmp_path / "h")
    first.mcp("demo", command=demo_command())
    pid = _pid(first)
    first.close()
    assert _gone(pid)  # closing the hub stops the servers it started
    second = Hub(tmp_path / "h")
    try:
        assert [s["running"] for s in second.mcp_servers()] == [False]
        assert invoke_tool(second.runtime, get_tool(second.runtime, "demo__add"), {"a": 1, "b": 2}).content == "3"
        assert [s["running"] for s in second.mcp_servers()] == [True]
    finally:
        second.close()


def test_tools_a_server_stopped_offering_are_kept_and_marked_unavailable(hub, demo):
    invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__now"), {})
    rows = hub.mcp("demo", command=demo_command("--only", "add,echo"))
    assert [r["name"] for r in rows] == ["demo__add", "demo__echo"]
    listed = {t["name"]: t["available"] for t in hub.tools()}
    assert listed["demo__add"] and not listed["demo__now"]
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__now"), {})
    assert outcome.status == "failed" and "no longer offers it" in outcome.content
    assert len(hub.store.find("ToolInvocation")) == 2  # the earlier call keeps its tool


def test_a_name_collision_registers_nothing(hub):
    @hub.tool(name="other__add")
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(McpError, match=r"^MCP server 'other': its tool 'add' would be named 'other__add', which the python tool of that name already uses; remove that tool or add the server under another name\.$"):
        hub.mcp("other", command=demo_command())
    assert hub.store.find("McpServer") == []
    assert [t["name"] for t in hub.tools()] == ["other__add"]
    assert hub.mcp_sessions.running() == []


def test_a_server_that_cannot_start_registers_nothing(hub):
    with pytest.raises(McpError, match="exited or closed its output before answering initialize"):
        hub.mcp("broken", command=[sys.executable, "-c", "raise SystemExit(1)"])
    assert hub.store.find("McpServer") == [] and hub.tools() == []


def test_a_failed_connection_is_recorded_as_a_failed_job_with_the_servers_stderr(hub):
    script = "import sys; print('broken: missing config file', file=sys.stderr); sys.exit(3)"
    with pytest.raises(McpError) as caught:
        hub.mcp("broken", command=[sys.executable, "-c", script])
    [job] = hub.store.find("Jobs", type="mcp.connect")
    assert (job["status"], job["error"]) == ("failed", str(caught.value))
    assert "\n" not in job["error"] and "its last stderr line: broken: missing config file" in job["error"]
    assert job["name"].startswith("MCP server broken: connect (")
    log = hub.store.get("TextLog", job["textLogId"])["text"]
    assert log.startswith("broken: missing config file\n")

    with pytest.raises(McpError, match="the command 'no-such-mcp-server' was not found"):
        hub.mcp("missing", command=["no-such-mcp-server"])
    with pytest.raises(McpError, match="did not answer as an MCP endpoint"):
        hub.mcp("web", url="http://127.0.0.1:9/mcp")
    failed = hub.store.find("Jobs", type="mcp.connect", status="failed")
    assert [j["name"].split(":")[0] for j in failed] == ["MCP server broken", "MCP server missing", "MCP server web"]
    assert hub.store.find("McpServer") == []


def test_a_successful_connection_is_a_completed_job(hub, demo):
    [job] = hub.store.find("Jobs", type="mcp.connect")
    assert (job["status"], job["error"]) == ("completed", None)


def test_ctrl_c_during_an_mcp_call_records_it_interrupted_and_the_server_keeps_running(hub, demo):
    pid = _pid(hub)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        invoke_tool(hub.runtime, get_tool(hub.runtime, "demo__slow"), {"seconds": 10})
    inv = _invocation(hub)
    assert (inv["status"], inv["result"]) == ("interrupted", {"error": "interrupted by the user"})
    assert 400 < inv["durationMs"] < 5000
    assert _log(hub, inv).endswith("interrupted by the user\n")
    [failures] = [m for m in hub.store.find("Metric", name="tool_failures") if m["dimensions"]["tool"] == "demo__slow"]
    assert (failures["value"], failures["dimensions"]["status"]) == (0.0, "interrupted")
    assert _pid(hub) == pid


def test_agents_take_mcp_tools_user_permitted_by_default(hub, server, demo):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)

    @hub.tool
    def local(x: int) -> int:
        return x

    hub.agent("helper", tools=["demo__add", "local"])
    stances = {t["name"]: t["permission"] for t in hub.describe_agent("helper")["tools"]}
    assert stances == {"demo__add": "user-permitted", "local": "automatic"}
    hub.agent("helper", tools=["demo__add"], permission={"demo__add": "automatic"})
    server.script(ScriptedReply(tool_calls=[{"name": "demo__add", "arguments": {"a": 2, "b": 3}}]), ScriptedReply(text="5."))
    reply = hub.chat("work", agent="helper").send("2 + 3?")
    assert reply.text == "5."
    inv = _invocation(hub)
    assert (inv["status"], inv["result"]["value"]["structuredContent"]) == ("completed", {"result": 5})
    dims = [m["dimensions"] for m in hub.store.find("Metric", name="tool_duration_ms")]
    assert dims == [{"tool": "demo__add", "status": "completed", "agent": "helper", "server": "demo"}]


# ---------------------------------------------------------------- magics


@pytest.fixture
def ip(hub):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    yield shell
    magics.use_hub(None)


def test_mcp_magics_add_list_tools_restart_remove(ip, hub):
    command = " ".join(demo_command())
    shown = ip.run_line_magic("aihub", f"mcp add demo -- {command} --only add,echo")
    assert "demo__add" in shown.data if hasattr(shown, "data") else "demo__add" in str(shown)
    assert [t["name"] for t in hub.mcp_tools("demo")] == ["demo__add", "demo__echo"]
    assert [s["name"] for s in hub.mcp_servers()] == ["demo"]
    ip.run_line_magic("aihub", "mcp restart demo")
    ip.run_line_magic("aihub", "mcp list")
    ip.run_line_magic("aihub", "mcp remove demo")
    assert hub.mcp_servers() == [] and hub.tools() == []


def test_mcp_magic_mistakes_are_one_line(ip, hub):
    with pytest.raises(IPythonUsageError, match=r"give the command after --"):
        ip.run_line_magic("aihub", "mcp add demo")
    with pytest.raises(McpError, match=r"^MCP server 'x': env 'TOKEN' must reference an environment variable") as caught:
        ip.run_line_magic("aihub", "mcp add x --env TOKEN=abc -- somecommand")
    [shown] = caught.value._render_traceback_()  # one line in the cell, under the error's own name
    assert shown.startswith("McpError: MCP server 'x': env 'TOKEN'")
    with pytest.raises(IPythonUsageError, match=r"^No MCP server named 'nope'"):
        ip.run_line_magic("aihub", "mcp tools nope")
    with pytest.raises(McpError, match=r"the command 'no-such-mcp-command' was not found"):
        ip.run_line_magic("aihub", "mcp add y -- no-such-mcp-command")
    assert hub.mcp_servers() == []


# ---------------------------------------------------------------- a third-party server


def test_mcp_server_time_from_pypi_under_an_agent_that_asks_the_user(hub, server):
    pytest.importorskip("mcp_server_time")
    rows = hub.mcp("time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])
    assert [r["name"] for r in rows] == ["time__get_current_time", "time__convert_time"]
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.agent("clock", tools=["time__get_current_time"])
    asked = []
    server.script(
        ScriptedReply(tool_calls=[{"name": "time__get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}]),
        ScriptedReply(text="It is evening in Tokyo."),
    )
    reply = hub.chat("t", agent="clock").send("Time in Tokyo?", approve=lambda name, args: asked.append((name, args)) or True)
    assert reply.text == "It is evening in Tokyo."
    assert asked == [("time__get_current_time", {"timezone": "Asia/Tokyo"})]
    inv = _invocation(hub)
    assert inv["status"] == "completed"
    answer = inv["result"]["value"]["structuredContent"]
    assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00")
