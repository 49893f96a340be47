"""Tools: defining python and HTTP tools, listing and removing them, and invoking them directly.

Tool calls inside agent turns (over both providers) are in test_agents.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import numpy as np
import pytest

from aihub_nb import Hub
from aihub_nb.errors import NotFoundError, ToolError
from aihub_nb.testing import find_in_database
from aihub_nb.tools import MAX_RESULT_CHARS, get_tool, invoke_tool, list_tools, remove_tool, tool_spec
from aihub_nb.toolschema import function_spec


def add(a: int, b: int = 0) -> int:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    print(f"adding {a} and {b}")
    return a + b


@dataclasses.dataclass
class Point:
    x: float
    y: float


def midpoint(p: Point, q: Point, unit: Literal["m", "km"] = "m") -> Point:
    """The point halfway between two points."""
    return Point((p.x + q.x) / 2, (p.y + q.y) / 2)


def _log(hub: Hub, invocation: dict) -> str:
    return hub.store.get("TextLog", invocation["textLogId"])["text"]


def _metrics(hub: Hub, name: str) -> list[tuple[float, dict]]:
    return [(m["value"], m["dimensions"]) for m in hub.store.find("Metric", name=name)]


# ---------------------------------------------------------------- python tools


def test_python_tool_row_holds_schema_and_source(hub):
    hub.tool(add)
    row = get_tool(hub.runtime, "add")
    assert row["type"] == "python"
    assert row["description"] == "Add two numbers."
    assert row["schema"] == function_spec(add)["parameters"]
    assert row["schema"]["properties"]["a"] == {"type": "integer", "description": "The first number."}
    assert row["data"]["module"] == __name__
    assert row["data"]["qualname"] == "add"
    assert row["data"]["signature"] == "(a: int, b: int = 0) -> int"
    assert row["data"]["source"].startswith("def add(a: int, b: int = 0) -> int:")
    assert hub.runtime.tools["add"] is add
    assert tool_spec(row) == {"type": "function", "function": function_spec(add)}


def test_redefining_a_tool_updates_the_same_row(hub):
    hub.tool(add)
    first = get_tool(hub.runtime, "add")
    cell = {}  # the user edits the cell and runs it again
    exec('def add(a: float, b: float) -> float:\n    """Add two real numbers."""\n    return a + b\n', cell)
    hub.tool(cell["add"])
    assert hub.store.count("Tool") == 1
    row = get_tool(hub.runtime, "add")
    assert row["id"] == first["id"]
    assert row["description"] == "Add two real numbers."
    assert row["schema"]["properties"]["a"] == {"type": "number"}
    assert row["data"]["source"] is None  # no source file to read it from
    assert hub.runtime.tools["add"] is cell["add"]


def test_decorator_with_name_and_description(hub):
    @hub.tool(name="plus", description="Sum of a and b.")
    def whatever(a: int, b: int) -> int:
        return a + b

    assert whatever(1, 2) == 3  # the decorator gives back the function itself
    [row] = hub.tools()
    assert (row["name"], row["description"], row["parameters"]) == ("plus", "Sum of a and b.", "a: integer, b: integer")


def test_list_tools_summarises_parameters(hub):
    hub.tool(add)
    hub.tool(midpoint)
    hub.http_tool("get_item", "GET", "http://127.0.0.1:1/items/{item_id}", description="One item.")
    rows = {r["name"]: r for r in list_tools(hub.runtime)}
    assert rows["add"]["parameters"] == "a: integer, b: integer = 0"
    assert rows["midpoint"]["parameters"] == 'p: object, q: object, unit: string = "m"'
    assert rows["get_item"] == {
        "name": "get_item", "type": "http", "description": "One item.", "parameters": "item_id: string",
        "available": True, "id": rows["get_item"]["id"],
    }
    assert all(r["available"] for r in rows.values())


def test_bad_tool_definitions_say_how_to_fix_them(hub):
    with pytest.raises(ToolError, match=r"takes \*\*kw"):
        hub.tool(lambda **kw: None, name="f")
    with pytest.raises(ToolError, match="async"):

        @hub.tool
        async def fetch(url: str) -> str:
            return url

    assert hub.store.count("Tool") == 0


def test_async_generators_and_async_callables_are_rejected_too(hub):
    async def ticks(n: int):
        yield n

    class Fetcher:
        async def __call__(self, url: str) -> str:
            return url

    with pytest.raises(ToolError, match="'ticks' is async; define it with a plain def"):
        hub.tool(ticks)
    with pytest.raises(ToolError, match="is async; define it with a plain def"):
        hub.tool(Fetcher(), name="fetch")
    assert hub.store.count("Tool") == 0


def test_stored_tool_without_its_function_is_unavailable_and_never_rebuilt(tmp_path):
    ran = []

    def side_effect(x: int) -> int:
        ran.append(x)
        return x

    first = Hub(tmp_path)
    first.tool(side_effect)
    first.close()

    again = Hub(tmp_path)  # a kernel restart
    [row] = again.tools()
    assert (row["name"], row["available"]) == ("side_effect", False)
    outcome = invoke_tool(again.runtime, get_tool(again.runtime, "side_effect"), {"x": 1})
    assert outcome.status == "failed"
    assert "define the function in this session" in outcome.content
    assert ran == []
    [inv] = again.store.find("ToolInvocation")
    assert (inv["status"], inv["result"]) == ("failed", {"error": outcome.content})
    assert inv["durationMs"] is None
    again.tool(side_effect)  # running the definition again makes it available
    assert again.tools()[0]["available"] is True
    assert invoke_tool(again.runtime, get_tool(again.runtime, "side_effect"), {"x": 2}).content == "2"
    assert ran == [2]
    again.close()


def test_remove_tool_also_removes_agent_connections(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("helper", tools=["add"])
    assert hub.store.count("AgentToolConnection") == 1
    hub.remove_tool("add")
    assert hub.store.count("Tool") == 0
    assert hub.store.count("AgentToolConnection") == 0
    assert "add" not in hub.runtime.tools
    assert hub.describe_agent("helper")["tools"] == []
    with pytest.raises(NotFoundError, match=r"No tool named 'add' \(there are no tools yet\)"):
        remove_tool(hub.runtime, "add")


# ---------------------------------------------------------------- invoking directly


def test_invocation_records_parameters_result_log_and_metrics(hub):
    hub.tool(add)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "add"), '{"a": 2, "b": 3}', call_id="call_1", references={"job": "j1"})
    assert (outcome.content, outcome.status) == ("5", "completed")
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert inv["toolId"] == outcome.tool_id == get_tool(hub.runtime, "add")["id"]
    assert (inv["status"], inv["parameters"], inv["result"], inv["callId"]) == ("completed", {"a": 2, "b": 3}, {"value": 5}, "call_1")
    assert inv["references"] == {"job": "j1"}
    assert inv["durationMs"] == outcome.duration_ms >= 0
    assert _log(hub, inv) == "adding 2 and 3\n"
    assert _metrics(hub, "tool_failures") == [(0.0, {"tool": "add", "status": "completed"})]
    assert _metrics(hub, "tool_duration_ms") == [(outcome.duration_ms, {"tool": "add", "status": "completed"})]


def test_results_become_json_for_the_store_and_the_model(hub):
    hub.tool(midpoint)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "midpoint"), {"p": {"x": 0, "y": 0}, "q": {"x": 2, "y": 4}})
    assert json.loads(outcome.content) == {"x": 1.0, "y": 2.0}  # arguments became Points, the result an object
    assert hub.store.get("ToolInvocation", outcome.invocation_id)["result"] == {"value": {"x": 1.0, "y": 2.0}}

    @hub.tool
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "greet"), {"name": "Ada"})
    assert outcome.content == "Hello, Ada!"  # a string goes to the model as it is

    @hub.tool
    def tags() -> set[str]:
        return {"b", "a"}

    assert invoke_tool(hub.runtime, get_tool(hub.runtime, "tags"), None).content == '["a", "b"]'


def test_values_json_cannot_hold_reach_the_model_as_values_or_text(hub):
    results = {
        "np_int": np.int64(5),
        "np_array": np.arange(3),
        "np_bool": np.bool_(True),
        "when": datetime.datetime(2024, 5, 1, 12, 30),
        "raw": b"caf\xc3\xa9",
        "keys": {"b": 1, "a": 2}.keys(),
        "pairs": {(1, 2): "x"},  # keys JSON cannot hold
    }
    circular: list = []
    circular.append(circular)
    results["loop"] = circular
    for name, value in results.items():
        hub.tool(lambda value=value: value, name=name)
    stored = {}
    for name in results:
        outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, name), {})
        assert outcome.status == "completed", outcome.content
        stored[name] = (hub.store.get("ToolInvocation", outcome.invocation_id)["result"]["value"], outcome.content)
    assert stored == {
        "np_int": (5, "5"),
        "np_array": ([0, 1, 2], "[0, 1, 2]"),
        "np_bool": (True, "true"),
        "when": ("2024-05-01T12:30:00", "2024-05-01T12:30:00"),
        "raw": ("café", "café"),
        "keys": (["b", "a"], '["b", "a"]'),
        "pairs": ("{(1, 2): 'x'}", "{(1, 2): 'x'}"),
        "loop": ("[[...]]", "[[...]]"),
    }


def test_a_generator_tool_returns_what_it_yields(hub):
    @hub.tool
    def countdown(n: int):
        """Count down from n."""
        for i in range(n, 0, -1):
            print("tick")
            yield i

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "countdown"), {"n": 3})
    assert (outcome.status, outcome.content) == ("completed", "[3, 2, 1]")
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert (inv["result"], _log(hub, inv)) == ({"value": [3, 2, 1]}, "tick\ntick\ntick\n")


def test_a_huge_result_is_cut_for_the_model_and_kept_whole(hub):
    @hub.tool
    def dump() -> str:
        return "x" * (MAX_RESULT_CHARS + 5000)

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "dump"), {})
    assert outcome.status == "completed"
    assert outcome.content == "x" * MAX_RESULT_CHARS + (
        f"\n[cut: the model is shown the first {MAX_RESULT_CHARS} of {MAX_RESULT_CHARS + 5000} characters]"
    )
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert inv["result"] == {"value": "x" * (MAX_RESULT_CHARS + 5000)}


def test_sys_exit_in_a_tool_is_a_failed_call_not_the_end_of_the_session(hub):
    @hub.tool
    def quit_early(code: int) -> None:
        print("giving up")
        sys.exit(code)

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "quit_early"), {"code": 3})
    assert (outcome.status, outcome.content) == ("failed", "Tool 'quit_early' failed: SystemExit: 3")
    log = _log(hub, hub.store.get("ToolInvocation", outcome.invocation_id))
    assert log.startswith("giving up\nTraceback (most recent call last):\n")
    assert log.endswith("SystemExit: 3\nfailed: Tool 'quit_early' failed: SystemExit: 3\n")

    def leave(name, arguments):
        raise SystemExit("no")

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "quit_early"), {"code": 1}, permission="user-permitted", approve=leave)
    assert (outcome.status, outcome.content) == (
        "failed", "Asking the user about tool 'quit_early' failed (SystemExit: no), so it was not run.",
    )


def test_a_broken_schema_fails_the_call_instead_of_raising(hub):
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": "("}}}
    hub.http_tool("search", "GET", "http://127.0.0.1:1/search", parameters=schema)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "search"), {"q": "pens"})
    assert outcome.status == "failed"
    assert outcome.content.startswith("Tool 'search' was not run: its arguments could not be checked (The schema's pattern '(' is not")
    assert hub.store.get("ToolInvocation", outcome.invocation_id)["status"] == "failed"


def test_what_other_threads_print_stays_out_of_a_tools_log(hub, capsys):
    started = threading.Event()
    release = threading.Event()

    @hub.tool
    def wait(label: str) -> str:
        print(f"{label} waiting")
        started.set()
        release.wait(5)
        print(f"{label} done", file=sys.stderr)
        return label

    before = sys.stdout, sys.stderr
    first = threading.Thread(target=invoke_tool, args=(hub.runtime, get_tool(hub.runtime, "wait"), {"label": "one"}))
    first.start()
    assert started.wait(5)
    started.clear()
    second = threading.Thread(target=invoke_tool, args=(hub.runtime, get_tool(hub.runtime, "wait"), {"label": "two"}))
    second.start()
    assert started.wait(5)
    print("the notebook goes on")  # the main thread while two tools run in the background
    release.set()
    first.join(5)
    second.join(5)
    assert (sys.stdout, sys.stderr) == before  # both put back, whatever order the calls ended in
    assert capsys.readouterr().out == "the notebook goes on\n"
    logs = {inv["result"]["value"]: _log(hub, inv) for inv in hub.store.find("ToolInvocation")}
    assert logs == {"one": "one waiting\none done\n", "two": "two waiting\ntwo done\n"}


def test_arguments_that_are_not_json_are_kept_raw(hub):
    hub.tool(add)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "add"), '{"a": 2,')
    assert outcome.status == "failed"
    assert outcome.content.startswith("Tool 'add' was not run: Arguments are invalid: the arguments are not valid JSON")
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert inv["parameters"] == {"_raw": '{"a": 2,'}


def test_an_approver_that_fails_means_the_tool_does_not_run(hub):
    hub.tool(add)

    def broken(name, arguments):
        raise RuntimeError("no prompt here")

    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "add"), {"a": 1, "b": 1}, permission="user-permitted", approve=broken)
    assert (outcome.status, outcome.content) == (
        "failed", "Asking the user about tool 'add' failed (RuntimeError: no prompt here), so it was not run.",
    )
    assert _log(hub, hub.store.get("ToolInvocation", outcome.invocation_id)) == f"failed: {outcome.content}\n"


def test_ctrl_c_in_a_tool_is_recorded_then_stops(hub):
    @hub.tool
    def slow() -> str:
        print("working...")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        invoke_tool(hub.runtime, get_tool(hub.runtime, "slow"), {})
    [inv] = hub.store.find("ToolInvocation")
    assert (inv["status"], inv["result"]) == ("interrupted", {"error": "interrupted by the user"})
    assert _log(hub, inv) == "working...\ninterrupted by the user\n"
    assert hub.store.find("Metric", name="tool_failures")[-1]["value"] == 0.0  # stopped, not failed


# ---------------------------------------------------------------- http tools


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received, as JSON; /fail/... answers 404, /text plain text.
    `received` keeps each request's path and headers as the server saw them."""

    received: list[dict] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.received.append({"path": self.path, "headers": dict(self.headers)})
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", self.path.replace("/moved", "/items", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/fail"):
            payload, status, kind = b'{"detail": "no such item"}', 404, "application/json"
        elif self.path.startswith("/text"):
            payload, status, kind = b"plain words", 200, "text/plain"
        else:
            seen = {
                "method": self.command, "path": self.path, "body": body, "auth": self.headers.get("Authorization"),
                "x-auth": self.headers.get("X-Auth"),
            }
            payload, status, kind = json.dumps(seen).encode(), 200, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_tool_default_schema_comes_from_the_url(hub, echo_url):
    row = hub.http_tool("item", "get", echo_url + "/items/{shop}/{item_id}", description="Look up an item.")
    assert row["type"] == "http"
    assert row["schema"] == {
        "type": "object",
        "properties": {"shop": {"type": "string"}, "item_id": {"type": "string"}},
        "required": ["shop", "item_id"],
        "additionalProperties": False,
    }
    assert row["data"] == {"method": "GET", "url": echo_url + "/items/{shop}/{item_id}", "headers": {}}


def test_http_get_fills_the_url_and_sends_the_rest_as_query(hub, echo_url):
    schema = {
        "type": "object",
        "properties": {"item_id": {"type": "string"}, "limit": {"type": "integer"}, "full": {"type": "boolean"}},
        "required": ["item_id"],
    }
    hub.http_tool("item", "GET", echo_url + "/items/{item_id}", parameters=schema)
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "item"), {"item_id": "a/b c", "limit": 3, "full": True}, references={"job": "j9"})
    assert outcome.status == "completed"
    seen = json.loads(outcome.content)
    assert (seen["method"], seen["path"]) == ("GET", "/items/a%2Fb%20c?limit=3&full=true")
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert inv["result"] == {"value": seen}
    [call] = hub.store.find("NetworkCall")
    assert (call["method"], call["endpoint"], call["status"], call["statusCode"]) == (
        "GET", echo_url + "/items/a%2Fb%20c?limit=3&full=true", "success", 200,
    )
    assert call["references"] == {"invocation": inv["id"], "job": "j9"}
    assert json.loads(call["response"]) == seen


def test_http_post_sends_a_json_body_and_a_secret_header_from_the_environment(hub, echo_url, monkeypatch):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array"}}}
    hub.http_tool("create", "POST", echo_url + "/items", parameters=schema, headers={"Authorization": "Bearer ${ECHO_TOKEN}"})
    monkeypatch.setenv("ECHO_TOKEN", "s3cret-token-value")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "create"), {"name": "pen", "tags": ["blue"]})
    seen = json.loads(outcome.content)
    assert (seen["method"], seen["path"], json.loads(seen["body"])) == ("POST", "/items", {"name": "pen", "tags": ["blue"]})
    assert _Echo.received[-1]["headers"]["Authorization"] == "Bearer s3cret-token-value"  # expanded when called...
    assert seen["auth"] == "Bearer [redacted]"  # ...and masked in what the echo sent back to the model
    assert get_tool(hub.runtime, "create")["data"]["headers"] == {"Authorization": "Bearer ${ECHO_TOKEN}"}  # ...stored as a reference
    [call] = hub.store.find("NetworkCall")
    assert call["requestHeaders"]["authorization"] == "Bearer [redacted]"
    assert "s3cret" not in json.dumps([hub.store.find("Tool"), call["requestHeaders"], call["endpoint"]])


def test_a_secret_header_is_never_recorded_whatever_its_name(hub, echo_url, monkeypatch):
    monkeypatch.setenv("ECHO_TOKEN", "s3cret-token-value")
    hub.http_tool("me", "GET", echo_url + "/me", headers={"X-Auth": "${ECHO_TOKEN}", "Accept": "application/json"})
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "me"), {})
    assert _Echo.received[-1]["headers"]["X-Auth"] == "s3cret-token-value"
    assert json.loads(outcome.content)["x-auth"] == "[redacted]"
    [call] = hub.store.find("NetworkCall")
    assert (call["requestHeaders"]["x-auth"], call["requestHeaders"]["accept"]) == ("${ECHO_TOKEN}", "application/json")
    assert find_in_database(hub.path, "s3cret") == []  # the echo's body had it too


def test_a_secret_in_the_url_is_read_from_the_environment_and_never_recorded(hub, echo_url, monkeypatch):
    monkeypatch.setenv("ECHO_KEY", "k3y/value")
    row = hub.http_tool("find", "GET", echo_url + "/items/{item_id}?appid=${ECHO_KEY}")
    assert row["schema"]["required"] == ["item_id"]  # the key is not something the model fills in
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "find"), {"item_id": "7"})
    assert outcome.status == "completed", outcome.content
    assert _Echo.received[-1]["path"] == "/items/7?appid=k3y%2Fvalue"
    assert json.loads(outcome.content)["path"] == "/items/7?appid=[redacted]"
    [call] = hub.store.find("NetworkCall")
    assert call["endpoint"] == echo_url + "/items/7?appid=[redacted]"

    hub.http_tool("gone", "GET", echo_url + "/fail/{item_id}?appid=${ECHO_KEY}")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "gone"), {"item_id": "7"})
    assert outcome.content.startswith(f"Tool 'gone' failed: HTTP 404 Not Found from GET {echo_url}/fail/7?appid=[redacted]:")

    monkeypatch.delenv("ECHO_KEY")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "find"), {"item_id": "7"})
    assert outcome.content == (
        "Tool 'find' failed: the URL needs the environment variable ECHO_KEY, which is not set; "
        "set it (os.environ['ECHO_KEY'] = ...) and try again"
    )
    assert "k3y" not in json.dumps([hub.store.find("Tool"), [c["endpoint"] for c in hub.store.find("NetworkCall")]])


def test_a_literal_secret_in_the_url_is_refused(hub, echo_url):
    with pytest.raises(ToolError, match=r"the URL holds a credential; .* e\.g\. \?api_key=\$\{MY_KEY\}\."):
        hub.http_tool("x", "GET", echo_url + "/w?q={city}&api_key=abc123")
    with pytest.raises(ToolError, match=r"the URL holds a credential; .* e\.g\. http://me:\$\{MY_PASSWORD\}@127\.0\.0\.1"):
        hub.http_tool("x", "GET", echo_url.replace("http://", "http://me:hunter2@") + "/w")
    assert hub.store.count("Tool") == 0
    hub.http_tool("x", "GET", echo_url + "/w?q={city}&api_key={key}&token=${TOKEN}")  # filled in, or referenced
    assert get_tool(hub.runtime, "x")["schema"]["required"] == ["city", "key"]


def test_http_tool_follows_redirects(hub, echo_url):
    hub.http_tool("old", "GET", echo_url + "/moved/{item_id}")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "old"), {"item_id": "7"})
    assert outcome.status == "completed", outcome.content
    assert json.loads(outcome.content)["path"] == "/items/7"
    assert [c["statusCode"] for c in hub.store.find("NetworkCall")] == [302, 200]


def test_http_tool_without_its_environment_variable_fails_clearly(hub, echo_url, monkeypatch):
    monkeypatch.delenv("ECHO_TOKEN", raising=False)
    hub.http_tool("me", "GET", echo_url + "/me", headers={"Authorization": "Bearer ${ECHO_TOKEN}"})
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "me"), {})
    assert outcome.status == "failed"
    assert "environment variable ECHO_TOKEN, which is not set" in outcome.content
    assert hub.store.count("NetworkCall") == 0


def test_http_error_status_is_a_failed_invocation(hub, echo_url):
    hub.http_tool("missing", "GET", echo_url + "/fail/{item_id}")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "missing"), {"item_id": "7"})
    assert outcome.status == "failed"
    assert outcome.content == (
        f"Tool 'missing' failed: HTTP 404 Not Found from GET {echo_url}/fail/7: {{\"detail\": \"no such item\"}}"
    )
    inv = hub.store.get("ToolInvocation", outcome.invocation_id)
    assert inv["result"] == {"error": outcome.content}
    assert "HTTP 404" in _log(hub, inv)
    [call] = hub.store.find("NetworkCall")
    assert (call["statusCode"], call["status"]) == (404, "error")
    assert _metrics(hub, "tool_failures") == [(1.0, {"tool": "missing", "status": "failed"})]


def test_http_text_answer_is_returned_as_text(hub, echo_url):
    hub.http_tool("words", "GET", echo_url + "/text")
    outcome = invoke_tool(hub.runtime, get_tool(hub.runtime, "words"), {})
    assert (outcome.status, outcome.content) == ("completed", "plain words")


def test_http_tool_definition_checks(hub, echo_url):
    with pytest.raises(ToolError, match="holds a credential; reference an environment variable"):
        hub.http_tool("x", "GET", echo_url, headers={"Authorization": "Bearer sk-live-123"})
    with pytest.raises(ToolError, match="method 'FETCH' is not supported"):
        hub.http_tool("x", "FETCH", echo_url)
    with pytest.raises(ToolError, match="not an http"):
        hub.http_tool("x", "GET", "ftp://example.com/{a}")
    with pytest.raises(ToolError, match="the URL uses item_id, which the parameters schema does not declare"):
        hub.http_tool("x", "GET", echo_url + "/{item_id}", parameters={"type": "object", "properties": {}})
    with pytest.raises(ToolError, match="Tool name 'bad name' is invalid"):
        hub.http_tool("bad name", "GET", echo_url)
    hub.http_tool("ok", "GET", echo_url, headers={"Accept": "application/json", "X-Api-Key": "${KEY}"})
    assert hub.store.count("Tool") == 1
