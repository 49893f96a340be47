"""Agents: defining them, and tool-calling turns over real HTTP through both providers.

Each turn test asserts what the store holds afterwards (messages, invocations, logs, streams, the
job, metrics) and what the model was sent back (`server.requests[-1].json["messages"]`).
"""

from __future__ import annotations

import builtins
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aihub_nb import Hub
from aihub_nb.agents import input_approver, load_agent
from aihub_nb.errors import NotFoundError, RoundLimitError, UsageError
from aihub_nb.testing import ScriptedReply
from helpers import PROVIDERS, chat_requests as _chat_requests

def add(a: int, b: int) -> int:
    """Add two numbers."""
    print(f"adding {a} and {b}")
    return a + b


def mul(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    print("about to divide")
    return a / b


def _connect(hub: Hub, server, provider: str) -> str:
    if provider == "OPENAI":
        hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
        return "oa"
    hub.connect("OLLAMA", "local-tools", name="ol", host=server.ollama_host)
    return "ol"


def _call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def _tool_messages(server, provider: str) -> list[tuple[str, str]]:
    """What the model was sent back in the last request: (call id or tool name, content) per result."""
    key = "tool_call_id" if provider == "OPENAI" else "tool_name"
    return [(m[key], m["content"]) for m in _chat_requests(server)[-1].json["messages"] if m["role"] == "tool"]


def _log(hub: Hub, row: dict) -> str:
    return hub.store.get("TextLog", row["textLogId"])["text"]


def _metrics(hub: Hub, name: str) -> list[tuple[float, dict]]:
    return [(m["value"], m["dimensions"]) for m in hub.store.find("Metric", name=name)]


def _types(hub: Hub, chat: str) -> list[str]:
    return [m["type"] for m in hub.get_chat(chat).messages()]


def _requested_ids(hub: Hub, chat: str) -> list[str]:
    """The ids of the tool calls the model asked for, in order, from the toolCall messages."""
    return [c["id"] for m in hub.get_chat(chat).messages() if m["type"] == "toolCall" for c in m["data"]["tool_calls"]]


def _job(hub: Hub) -> dict:
    return hub.store.first("Jobs")


@pytest.fixture(params=PROVIDERS)
def provider(request):
    return request.param


@pytest.fixture
def agent(hub, server, provider):
    """Agent "helper" on the provider's connection, with add, mul and divide (automatic)."""
    _connect(hub, server, provider)
    hub.tool(add)
    hub.tool(mul)
    hub.tool(divide)
    hub.agent("helper", tools=["add", "mul", "divide"], instructions="Use your tools.")
    return "helper"


# ---------------------------------------------------------------- turns with tool calls


def test_single_call_round_trip(hub, server, provider, agent):
    server.script(ScriptedReply(tool_calls=[_call("add", a=2, b=3)]), ScriptedReply(text="2 + 3 = 5."))
    reply = hub.chat("work", agent=agent).send("What is 2 + 3?")
    assert (reply.text, reply.status) == ("2 + 3 = 5.", "completed")
    assert _types(hub, "work") == ["user", "toolCall", "toolResult", "agent"]
    [call_id] = _requested_ids(hub, "work")

    [inv] = hub.store.find("ToolInvocation")
    chat = hub.get_chat("work")
    assert inv["toolId"] == hub.store.first("Tool", name="add")["id"]
    assert (inv["status"], inv["parameters"], inv["result"], inv["callId"]) == ("completed", {"a": 2, "b": 3}, {"value": 5}, call_id)
    assert inv["references"] == {"job": _job(hub)["id"], "thread": chat.thread_id, "agent": hub.store.first("Agent")["id"]}
    assert _log(hub, inv) == "adding 2 and 3\n"
    result = chat.messages()[2]
    assert (result["content"], result["data"]["status"], result["references"]) == ("5", "completed", {"invocation": inv["id"]})

    streams = hub.store.find("ResponseStream")
    assert [s["status"] for s in streams] == ["completed", "completed"]
    (asked,), (answered,) = (s["resultMessages"] for s in streams)
    assert asked["type"] == "toolCall" and asked["data"]["tool_calls"][0]["function"]["name"] == "add"
    assert (answered["type"], answered["sourceId"]) == ("agent", hub.store.first("Agent")["id"])
    assert _job(hub)["status"] == "completed"
    dims = {"tool": "add", "agent": "helper", "status": "completed"}
    assert _metrics(hub, "tool_failures") == [(0.0, dims)]
    assert _metrics(hub, "tool_duration_ms") == [(inv["durationMs"], dims)]

    first, last = _chat_requests(server)
    assert [t["function"]["name"] for t in first.json["tools"]] == ["add", "mul", "divide"]
    assert first.json["messages"][0] == {"role": "system", "content": "Use your tools."}
    assert _tool_messages(server, provider) == [(call_id if provider == "OPENAI" else "add", "5")]


def test_demo_model_calls_the_tool_it_is_asked_to(hub, server, provider, agent):
    reply = hub.chat("demo", agent=agent).send("Please call add(a=2, b=3)")
    assert reply.text == "The tool returned: 5"
    assert [(c["name"], c["status"], c["result"]) for c in reply.tool_calls] == [("add", "completed", "5")]


def test_parallel_calls_in_one_reply(hub, server, provider, agent):
    server.script(ScriptedReply(tool_calls=[_call("add", a=2, b=3), _call("mul", a=4, b=5)]), ScriptedReply(text="5 and 20."))
    reply = hub.chat("par", agent=agent).send("Add 2 and 3, multiply 4 by 5.")
    assert reply.text == "5 and 20."
    assert _types(hub, "par") == ["user", "toolCall", "toolResult", "toolResult", "agent"]
    ids = _requested_ids(hub, "par")
    invs = hub.store.find("ToolInvocation")
    assert [(i["callId"], i["status"], i["result"]) for i in invs] == [
        (ids[0], "completed", {"value": 5}), (ids[1], "completed", {"value": 20}),
    ]
    assert len(hub.store.find("ResponseStream")) == 2
    expected = list(zip(ids, ["5", "20"])) if provider == "OPENAI" else [("add", "5"), ("mul", "20")]
    assert _tool_messages(server, provider) == expected
    assert [d["tool"] for _, d in _metrics(hub, "tool_duration_ms")] == ["add", "mul"]


def test_unknown_tool_is_answered_with_the_agents_tools(hub, server, provider, agent):
    server.script(ScriptedReply(tool_calls=[_call("subtract", a=5, b=3)]), ScriptedReply(text="I cannot subtract."))
    reply = hub.chat("unk", agent=agent).send("5 - 3?")
    assert reply.text == "I cannot subtract."
    message = "There is no tool 'subtract' for agent 'helper'; its tools are: add, mul, divide. Use one of those, or answer without it."
    assert _tool_messages(server, provider) == [(_requested_ids(hub, "unk")[0] if provider == "OPENAI" else "subtract", message)]
    result = hub.get_chat("unk").messages()[2]
    assert (result["type"], result["content"], result["data"]["status"]) == ("toolResult", message, "failed")
    assert hub.store.count("ToolInvocation") == 0  # no Tool row to invoke
    assert _metrics(hub, "tool_failures") == [(1.0, {"tool": "subtract", "agent": "helper", "status": "failed"})]
    assert _job(hub)["status"] == "completed"


def test_arguments_failing_validation_are_not_run(hub, server, provider, agent):
    server.script(ScriptedReply(tool_calls=[_call("add", a="two", b=3)]), ScriptedReply(text="Sorry."))
    hub.chat("bad", agent=agent).send("Add two and 3.")
    [inv] = hub.store.find("ToolInvocation")
    error = (
        "Tool 'add' was not run: Arguments do not fit the tool's schema: 'a' must be integer, got string \"two\". "
        "Call it again with arguments that fit its schema."
    )
    assert (inv["status"], inv["parameters"], inv["result"], inv["durationMs"]) == ("failed", {"a": "two", "b": 3}, {"error": error}, None)
    assert _log(hub, inv) == f"failed: {error}\n"  # nothing printed: add never ran
    assert [c for _, c in _tool_messages(server, provider)] == [error]
    assert _metrics(hub, "tool_failures") == [(1.0, {"tool": "add", "agent": "helper", "status": "failed"})]
    assert _metrics(hub, "tool_duration_ms") == []


def test_a_tool_that_raises_becomes_an_error_result(hub, server, provider, agent):
    server.script(ScriptedReply(tool_calls=[_call("divide", a=1, b=0)]), ScriptedReply(text="Division by zero."))
    reply = hub.chat("boom", agent=agent).send("1 / 0?")
    assert (reply.text, reply.status) == ("Division by zero.", "completed")
    [inv] = hub.store.find("ToolInvocation")
    error = "Tool 'divide' failed: ZeroDivisionError: float division by zero"
    assert (inv["status"], inv["parameters"], inv["result"]) == ("failed", {"a": 1, "b": 0}, {"error": error})
    log = _log(hub, inv)
    assert log.startswith("about to divide\nTraceback (most recent call last):\n")
    assert 'in divide\n    return a / b' in log and "aihub_nb/tools.py" not in log
    assert log.endswith(f"ZeroDivisionError: float division by zero\nfailed: {error}\n")
    assert [c for _, c in _tool_messages(server, provider)] == [error]
    assert _job(hub)["status"] == "completed"
    assert [v for v, _ in _metrics(hub, "tool_failures")] == [1.0]
    assert len(_metrics(hub, "tool_duration_ms")) == 1


@pytest.mark.parametrize(
    ("approver", "status", "content"),
    [
        ("yes", "completed", "5"),
        ("no", "denied", "The user denied running tool 'add'; do not call it again for this request, continue without it."),
        (None, "denied", "Tool 'add' needs the user's permission and there was no way to ask, so it was not run; continue without it, or tell the user to allow it."),
    ],
)
def test_user_permitted_tool_needs_approval(hub, server, provider, approver, status, content):
    conn = _connect(hub, server, provider)
    hub.tool(add)
    hub.agent("careful", model=conn, tools=[add], permission={"add": "user-permitted"})
    asked = []

    def approve(name, arguments):
        asked.append((name, arguments))
        return approver == "yes"

    server.script(ScriptedReply(tool_calls=[_call("add", a=2, b=3)]), ScriptedReply(text="Done."))
    hub.chat("perm", agent="careful").send("2 + 3?", approve=approve if approver else None)
    assert asked == ([("add", {"a": 2, "b": 3})] if approver else [])
    [inv] = hub.store.find("ToolInvocation")
    assert (inv["status"], inv["parameters"]) == (status, {"a": 2, "b": 3})
    assert inv["result"] == ({"value": 5} if status == "completed" else {"error": content})
    assert _log(hub, inv) == ("adding 2 and 3\n" if status == "completed" else f"denied: {content}\n")
    assert [c for _, c in _tool_messages(server, provider)] == [content]
    assert hub.get_chat("perm").messages()[2]["data"]["status"] == status
    assert _metrics(hub, "tool_failures") == [(0.0, {"tool": "add", "agent": "careful", "status": status})]


def test_hub_approver_is_the_default(hub, server, provider):
    _connect(hub, server, provider)
    hub.tool(add)
    hub.agent("careful", tools=[add], permission="user-permitted")
    hub.approver = lambda name, arguments: True
    reply = hub.chat("perm", agent="careful").send("Please call add(a=1, b=1)")
    assert reply.text == "The tool returned: 2"


def test_round_limit_stops_the_loop_and_keeps_the_record(hub, server, provider):
    _connect(hub, server, provider)
    hub.tool(add)
    hub.agent("looper", tools=[add], max_rounds=3)
    server.script(*[ScriptedReply(tool_calls=[_call("add", a=i, b=1)]) for i in range(5)])
    chat = hub.chat("loop", agent="looper")
    with pytest.raises(RoundLimitError) as caught:
        chat.send("Keep adding.")
    assert str(caught.value) == (
        "Agent 'looper' used all 3 rounds without a final answer; "
        "raise the limit with hub.agent('looper', max_rounds=N) or simplify the request."
    )
    assert _types(hub, "loop") == ["user"] + ["toolCall", "toolResult"] * 3
    assert [(i["status"], i["result"]) for i in hub.store.find("ToolInvocation")] == [
        ("completed", {"value": 1}), ("completed", {"value": 2}), ("completed", {"value": 3}),
    ]
    assert [s["status"] for s in hub.store.find("ResponseStream")] == ["completed"] * 3
    job = _job(hub)
    assert (job["status"], job["error"]) == ("failed", f"RoundLimitError: {caught.value}")
    assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] is None
    assert len(_metrics(hub, "tool_duration_ms")) == 3


def test_ctrl_c_in_a_tool_stops_the_turn_and_keeps_the_record(hub, server, provider):
    _connect(hub, server, provider)

    @hub.tool
    def wait() -> str:
        """Wait a long time."""
        raise KeyboardInterrupt

    hub.agent("waiter", tools=[wait])
    chat = hub.chat("w", agent="waiter")
    with pytest.raises(KeyboardInterrupt):
        chat.send("Please call wait()")
    [inv] = hub.store.find("ToolInvocation")
    assert (inv["status"], inv["result"]) == ("interrupted", {"error": "interrupted by the user"})
    assert _types(hub, "w") == ["user", "toolCall"]
    assert _job(hub)["status"] == "interrupted"
    assert hub.store.get("MessageThread", chat.thread_id)["lockingJob"] is None


def test_unavailable_python_tool_in_a_new_session(tmp_path, server, provider):
    ran = []

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "noted"

    first = Hub(tmp_path)
    _connect(first, server, provider)
    first.tool(note)
    first.tool(add)
    first.agent("scribe", tools=[note, add])
    first.close()

    hub = Hub(tmp_path)  # a new session on the same file: neither function is defined here
    hub.tool(add)
    assert [(t["name"], t["available"]) for t in hub.describe_agent("scribe")["tools"]] == [("note", False), ("add", True)]
    assert [s["function"]["name"] for s in load_agent(hub.runtime, "scribe").specs()] == ["add"]  # only what can run is offered
    server.script(ScriptedReply(tool_calls=[_call("note", text="hi")]), ScriptedReply(text="I could not take the note."))
    reply = hub.chat("notes", agent="scribe").send("Note 'hi'.")
    assert reply.text == "I could not take the note."
    assert ran == []
    [inv] = hub.store.find("ToolInvocation")
    assert inv["status"] == "failed"
    assert "define the function in this session" in inv["result"]["error"]
    assert [t["function"]["name"] for t in _chat_requests(server)[0].json["tools"]] == ["add"]
    assert "define the function in this session" in _tool_messages(server, provider)[0][1]
    hub.close()


class _Weather(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = json.dumps({"city": self.path.rsplit("/", 1)[-1], "temperature": 12}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_http_tool_in_an_agent_turn(hub, server, provider):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Weather)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _connect(hub, server, provider)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/weather/{{city}}"
        hub.agent("forecaster", tools=[hub.http_tool("weather", "GET", url, description="Weather in a city.")])
        reply = hub.chat("wx", agent="forecaster").send('Please call weather(city="Oslo")')
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert reply.text == 'The tool returned: {"city": "Oslo", "temperature": 12}'
    [inv] = hub.store.find("ToolInvocation")
    assert (inv["status"], inv["parameters"], inv["result"]) == ("completed", {"city": "Oslo"}, {"value": {"city": "Oslo", "temperature": 12}})
    tool_calls = [c for c in hub.store.find("NetworkCall") if c["endpoint"].endswith("/weather/Oslo")]
    assert [(c["method"], c["statusCode"], c["references"]["invocation"]) for c in tool_calls] == [("GET", 200, inv["id"])]
    assert tool_calls[0]["references"]["job"] == _job(hub)["id"]


# ---------------------------------------------------------------- defining agents


def test_define_agent_rows_and_description(hub, server):
    oa = _connect(hub, server, "OPENAI")
    hub.tool(add)
    hub.tool(mul)
    row = hub.agent("helper", tools=["add", mul], permission={"mul": "user-permitted"}, instructions="Be brief.", description="Does sums.")
    assert (row["chatModelId"], row["instructions"], row["maxRounds"], row["description"]) == (
        hub.connection(oa)["id"], "Be brief.", 8, "Does sums.",
    )
    links = hub.store.find("AgentToolConnection", agentId=row["id"])
    assert [(hub.store.get("Tool", link["toolId"])["name"], link["permission"]) for link in links] == [
        ("add", "automatic"), ("mul", "user-permitted"),
    ]
    info = hub.describe_agent("helper")
    assert (info["model"], info["provider"], info["modelId"], info["instructions"]) == ("oa", "OPENAI", "local-tools", "Be brief.")
    assert [(t["name"], t["type"], t["permission"], t["available"]) for t in info["tools"]] == [
        ("add", "python", "automatic", True), ("mul", "python", "user-permitted", True),
    ]
    assert hub.agents() == [
        {"name": "helper", "model": "oa", "tools": "add, mul", "maxRounds": 8, "description": "Does sums.", "id": row["id"]}
    ]


def test_redefining_an_agent_replaces_it(hub, server):
    _connect(hub, server, "OPENAI")
    ol = _connect(hub, server, "OLLAMA")
    hub.tool(add)
    hub.tool(mul)
    first = hub.agent("helper", tools=[add, mul], permission="user-permitted", max_rounds=3)
    again = hub.agent("helper", model=ol, tools=[mul])
    assert again["id"] == first["id"] and hub.store.count("Agent") == 1
    assert (again["chatModelId"], again["maxRounds"]) == (hub.connection(ol)["id"], 8)
    assert [(t["name"], t["permission"]) for t in hub.describe_agent("helper")["tools"]] == [("mul", "automatic")]
    assert hub.store.count("AgentToolConnection") == 1


def test_a_function_given_as_a_tool_is_defined_first(hub, server):
    _connect(hub, server, "OPENAI")

    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    hub.agent("loud", tools=[shout])
    assert hub.store.first("Tool", name="shout")["type"] == "python"
    assert hub.chat("c", agent="loud").send('Please call shout(text="hi")').text == "The tool returned: HI"


def test_a_method_registered_under_its_own_name_is_not_defined_again(hub, server):
    _connect(hub, server, "OPENAI")

    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def bump(self, by: int) -> int:
            """Add to the counter."""
            self.count += by
            return self.count

    counter = Counter()
    hub.tool(counter.bump, name="counter_bump")
    hub.agent("counting", tools=[counter.bump])  # `counter.bump` is a new object at every access
    assert [t["name"] for t in hub.tools()] == ["counter_bump"]
    assert [t["name"] for t in hub.describe_agent("counting")["tools"]] == ["counter_bump"]
    assert hub.chat("c", agent="counting").send("Please call counter_bump(by=2)").text == "The tool returned: 2"


def test_a_function_whose_tool_became_an_http_tool_is_defined_again(hub, server):
    _connect(hub, server, "OPENAI")
    hub.tool(add)
    hub.http_tool("add", "GET", "http://127.0.0.1:1/add")  # the name now belongs to an HTTP tool
    hub.agent("calc", tools=[add])  # the function: a python tool again, not the HTTP one
    [row] = hub.store.find("Tool")
    assert (row["name"], row["type"]) == ("add", "python")
    assert hub.chat("c", agent="calc").send("Please call add(a=2, b=3)").text == "The tool returned: 5"


def test_a_huge_tool_result_reaches_the_model_cut(hub, server, provider):
    from aihub_nb.tools import MAX_RESULT_CHARS

    _connect(hub, server, provider)

    @hub.tool
    def read_log() -> str:
        """The whole log."""
        return "line\n" * MAX_RESULT_CHARS

    hub.agent("reader", tools=[read_log])
    server.script(ScriptedReply(tool_calls=[_call("read_log")]), ScriptedReply(text="The log repeats one line."))
    reply = hub.chat("logs", agent="reader").send("What is in the log?")
    assert reply.text == "The log repeats one line."
    [(_, sent)] = _tool_messages(server, provider)
    assert len(sent) < MAX_RESULT_CHARS + 100
    assert sent.endswith(f"[cut: the model is shown the first {MAX_RESULT_CHARS} of {5 * MAX_RESULT_CHARS} characters]")
    assert hub.get_chat("logs").messages()[2]["content"] == sent
    [inv] = hub.store.find("ToolInvocation")
    assert inv["result"] == {"value": "line\n" * MAX_RESULT_CHARS}


def test_agent_definition_errors(hub, server):
    with pytest.raises(UsageError, match="needs a model: connect one first"):
        hub.agent("helper")
    _connect(hub, server, "OPENAI")
    hub.tool(add)
    with pytest.raises(NotFoundError, match=r"No tool named 'sub' \(tools are: add\)"):
        hub.agent("helper", tools=["add", "sub"])
    with pytest.raises(UsageError, match="Unknown permission 'ask'; valid permissions are: automatic, user-permitted."):
        hub.agent("helper", tools=["add"], permission="ask")
    with pytest.raises(UsageError, match="Unknown permission 'always'"):
        hub.agent("helper", tools=["add"], permission={"add": "always"})
    with pytest.raises(UsageError, match=r"permission names 'mul', not among the agent's tools \(add\)"):
        hub.agent("helper", tools=["add"], permission={"mul": "automatic"})
    with pytest.raises(UsageError, match="max_rounds must be a whole number from 1 to 1000, got 0"):
        hub.agent("helper", tools=["add"], max_rounds=0)
    with pytest.raises(NotFoundError, match="No connection named 'nope'"):
        hub.agent("helper", model="nope")
    assert hub.store.count("Agent") == 0


def test_unknown_agent_lists_the_agents(hub, server):
    _connect(hub, server, "OPENAI")
    with pytest.raises(NotFoundError, match=r"No agent named 'x' \(there are no agents yet\)"):
        hub.chat("c", agent="x")
    hub.agent("helper")
    with pytest.raises(NotFoundError, match=r"No agent named 'x' \(agents are: helper\)"):
        load_agent(hub.runtime, "x")


def test_chat_with_an_agent_points_at_it(hub, server):
    _connect(hub, server, "OPENAI")
    agent = hub.agent("helper")
    chat = hub.chat("c", agent="helper")
    row = hub.store.get("Chat", chat.id)
    assert (row["type"], row["sourceId"]) == ("agent", agent["id"])
    loaded = load_agent(hub.runtime, agent["id"])
    assert (loaded.id, loaded.name, loaded.model_id, loaded.max_rounds, loaded.specs()) == (
        agent["id"], "helper", agent["chatModelId"], 8, [],
    )


def test_agent_whose_connection_was_removed(hub, server):
    _connect(hub, server, "OPENAI")
    hub.agent("helper")
    hub.remove_connection("oa")
    with pytest.raises(NotFoundError, match=r"Agent 'helper' uses a connection that was removed; re-define it"):
        load_agent(hub.runtime, "helper")
    assert hub.agents()[0]["model"] == "(removed)"


# ---------------------------------------------------------------- asking at the prompt


@pytest.mark.parametrize(("answer", "allowed"), [("y", True), (" YES ", True), ("n", False), ("", False)])
def test_input_approver_asks_at_the_prompt(monkeypatch, answer, allowed):
    prompts = []
    monkeypatch.setattr(builtins, "input", lambda prompt: prompts.append(prompt) or answer)
    assert input_approver("add", {"a": 2, "b": 3}) is allowed
    assert prompts == ["Allow tool 'add' to run with {\"a\": 2, \"b\": 3}? [y/N] "]


@pytest.mark.parametrize("error", ["eof", "ipython"])
def test_input_approver_denies_without_stdin(monkeypatch, capsys, error):
    from IPython.core.error import StdinNotImplementedError

    def no_stdin(prompt):
        raise EOFError if error == "eof" else StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")

    monkeypatch.setattr(builtins, "input", no_stdin)
    assert input_approver("add", {}) is False
    assert capsys.readouterr().out == "Tool 'add' needs your permission, but this session cannot ask for input; it was denied.\n"


def test_reply_metrics_add_up_over_rounds(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)

    @hub.tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    hub.agent("summer", model="oa", tools=["add"])
    server.script(
        ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}], prompt_tokens=10, completion_tokens=4),
        ScriptedReply(text="3", prompt_tokens=20, completion_tokens=1),
    )
    reply = hub.chat("sum", agent="summer").send("1+2?")
    assert reply.usage == {"prompt_tokens": 30, "completion_tokens": 5}
    latencies = [m["value"] for m in hub.store.find("Metric", name="latency_ms")]
    ttfts = [m["value"] for m in hub.store.find("Metric", name="ttft_ms")]
    assert len(latencies) == 2
    assert reply.metrics["latency_ms"] == pytest.approx(sum(latencies))
    assert reply.metrics["ttft_ms"] == ttfts[0]
    assert (reply.metrics["prompt_tokens"], reply.metrics["completion_tokens"]) == (30, 5)


def test_a_turn_cut_between_tool_request_and_result_leaves_a_usable_history(hub, server):
    hub.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)

    @hub.tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    hub.agent("asker", model="oa", tools=["add"], permission="user-permitted")

    def interrupt(tool, arguments):
        raise KeyboardInterrupt

    server.script(ScriptedReply(text="Let me add.", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]))
    with pytest.raises(KeyboardInterrupt):
        hub.chat("cut", agent="asker").send("1+2?", approve=interrupt)
    chat = hub.get_chat("cut")
    assert [m["type"] for m in chat.messages()] == ["user", "toolCall"]
    shown = chat._repr_mimebundle_()
    assert "text/markdown" not in shown and "add(" in shown["text/html"] and "not run" in shown["text/html"]
    assert "[tool add(" in shown["text/plain"]

    server.script(ScriptedReply(text="Fine."))
    assert chat.send("never mind").text == "Fine."
    sent = _chat_requests(server)[-1].json["messages"]
    # the unanswered call is left out (APIs refuse a tool call without its result); its text stays
    assert [(m["role"], m.get("content"), "tool_calls" in m) for m in sent[-3:]] == [
        ("user", "1+2?", False),
        ("assistant", "Let me add.", False),
        ("user", "never mind", False),
    ]
