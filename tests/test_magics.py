"""%aihub and %%aihub driven through a real IPython InteractiveShell."""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from aihub_nb import current, errors, magics
from aihub_nb.testing import ScriptedReply


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def nb(ip, hub, server):
    """The shell, with the magics pointed at a fresh hub connected to the local server."""
    magics.use_hub(hub)
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    yield ip
    magics.use_hub(None)


def _texts(captured) -> list[str]:
    out = []
    for o in captured.outputs:
        data = o.data
        out.append(data.get("text/markdown") or data.get("text/html") or data.get("text/plain") or "")
    return out


def _run_cell(ip, line: str, cell: str):
    with capture_output() as captured:
        ip.run_cell_magic("aihub", line, cell)
    return captured


@pytest.mark.parametrize("connection", ["oa", "ol"])
def test_chat_cell_streams_the_reply_and_continues(nb, server, connection):
    server.script(ScriptedReply(text="Hello **Ada**.", chunks=["Hello", " **Ada**", "."]))
    captured = _run_cell(nb, f"chat talk --model {connection}", "My name is Ada.")
    shown = _texts(captured)
    assert '<div class="aihub-reply"><p>Hello <strong>Ada</strong>.</p>\n</div>' in shown  # updated in place to the whole reply
    assert "Hello **Ada**." in [o.data["text/plain"] for o in captured.outputs]  # and readable as text
    assert any(connection in t and "tokens" in t for t in shown)  # the footer
    server.script(ScriptedReply(text="Ada."))
    _run_cell(nb, "chat talk", "What is my name?")
    history = server.requests[-1].json["messages"]
    assert [m["content"] for m in history] == ["My name is Ada.", "Hello **Ada**.", "What is my name?"]


def test_interpolation_from_the_namespace(nb, server):
    nb.user_ns["topic"] = "owls"
    nb.user_ns["items"] = ["first", "second"]
    _run_cell(nb, "chat interp --model oa", "Tell me about {topic} and {items[1]}; keep {missing} and {{braces}}.")
    assert server.requests[-1].json["messages"][-1]["content"] == (
        "Tell me about owls and second; keep {missing} and {braces}."
    )
    _run_cell(nb, "chat interp --no-interpolate", "Literal {topic}")
    assert server.requests[-1].json["messages"][-1]["content"] == "Literal {topic}"


def test_interpolation_looks_up_fields_and_never_evaluates(nb, server, tmp_path):
    import types

    marker = tmp_path / "ran"
    nb.user_ns["cfg"] = types.SimpleNamespace(topic="owls", tags={"main": "night"})
    nb.user_ns["In"] = ["", "x = 1"]
    payload = f"{{In[__builtins__.__import__('os').system('touch {marker}')]}}"
    _run_cell(nb, "chat safe --model oa", f"{payload} {{cfg.topic}} {{cfg.tags[main]}} {{In[1]}}")
    assert not marker.exists()
    assert server.requests[-1].json["messages"][-1]["content"] == f"{payload} owls night x = 1"
    sent = len(server.requests)
    with pytest.raises(UsageError) as info:
        _run_cell(nb, "chat safe", "{cfg.__class__.__init__.__globals__}")
    assert "attributes starting with _" in str(info.value) and "\n" not in str(info.value)
    assert len(server.requests) == sent


def test_system_option(nb, server):
    _run_cell(nb, 'chat sys --model oa --system "Be brief."', "Hi")
    assert server.requests[-1].json["messages"][0] == {"role": "system", "content": "Be brief."}


def test_show_chat_and_list_chats(nb, server):
    server.script(ScriptedReply(text="pong"))
    _run_cell(nb, "chat shown --model oa", "ping")
    shown = nb.run_line_magic("aihub", "chat shown")
    assert "ping" in shown.data and "pong" in shown.data
    listing = nb.run_line_magic("aihub", "chats")
    assert "shown" in listing.data and ">2</td>" in listing.data


def test_render_stores_a_snapshot(nb, hub, server):
    server.script(ScriptedReply(text="pong"))
    _run_cell(nb, "chat snap --model oa", "ping")
    shown = nb.run_line_magic("aihub", "render snap")
    (snapshot,) = hub.store.find("RenderedConversationThread")
    assert "pong" in shown.data and "pong" in shown.text
    when = f"{snapshot['createdAt'][:10]} {snapshot['createdAt'][11:19]} UTC"
    assert f"snapshot stored {when}, 2 messages" in shown.data and shown.text.endswith(f"snapshot stored {when}, 2 messages")
    for uuid in (snapshot["id"], hub.get_chat("snap").id, hub.get_chat("snap").thread_id):  # no raw ids shown
        assert uuid not in shown.data and uuid not in shown.text
    assert not re.search(_UUID, shown.data + shown.text)


def test_connect_and_connections_mask_keys(ip, hub, monkeypatch):
    magics.use_hub(hub)
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnopqrstuvwxyz")
        out = ip.run_line_magic("aihub", "connect OPENAI gpt-4o-mini --name cloud")
        assert "$OPENAI_API_KEY (set)" in out.data
        listing = ip.run_line_magic("aihub", "connections")
        assert "cloud" in listing.data and "sk-live" not in listing.data
        ip.run_line_magic("aihub", "connection edit cloud --model-id gpt-4o")
        assert hub.connection("cloud")["modelId"] == "gpt-4o"
        ip.run_line_magic("aihub", "connection remove cloud")
        assert hub.connections() == []
    finally:
        magics.use_hub(None)


def test_models_lists_the_endpoint(nb):
    shown = nb.run_line_magic("aihub", "models oa")
    assert "local-chat" in shown.data and "local-tools" in shown.data


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "aihub help"),
        ("bogus", "Unknown subcommand 'bogus'; valid ones are: "),
        ("connect", "required: provider"),
        ("connect OPENAI", "model_id"),
        ("connect ANTHROPIC claude", "valid providers are: OPENAI, OLLAMA"),
        ("chat nope", "No chat named 'nope'"),
        ('connect OPENAI "gpt', "close your quotes"),
        ("connection frobnicate oa", "invalid choice"),
        ("metrics --bogus", "unrecognized arguments"),
    ],
)
def test_usage_errors_are_one_line(nb, line, message):
    with pytest.raises(UsageError) as caught:
        nb.run_line_magic("aihub", line)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip()


def test_cell_usage_errors(nb, server):
    with pytest.raises(UsageError, match="No connection named 'missing'"):
        nb.run_cell_magic("aihub", "chat c --model missing", "hi")
    with pytest.raises(UsageError, match="not a cell magic"):
        nb.run_cell_magic("aihub", "connections", "hi")
    with pytest.raises(UsageError, match="empty"):
        nb.run_cell_magic("aihub", "chat c --model oa", "\n\n")
    with pytest.raises(UsageError, match="required: name"):
        nb.run_cell_magic("aihub", "chat", "hi")


def test_provider_failure_is_one_line_and_recorded(nb, hub, server, monkeypatch):
    from aihub_nb import chat as chat_module

    monkeypatch.setattr(chat_module, "_backoff", lambda attempt, retry_after: 0.0)
    server.script(*[ScriptedReply(fault="500") for _ in range(chat_module.MAX_RETRIES + 1)])
    with pytest.raises(errors.ServerError) as caught:
        nb.run_cell_magic("aihub", "chat failing --model oa", "hi")
    assert "'oa'" in str(caught.value)
    assert hub.store.find("Jobs")[-1]["status"] == "failed"


def test_run_cell_shows_usage_error_without_traceback(nb, capsys):
    result = nb.run_cell("%aihub chat nope")
    assert not result.success
    assert "No chat named 'nope'" in str(result.error_in_exec)
    err = capsys.readouterr()
    assert "Traceback" not in err.out + err.err


def test_help_lists_subcommands(nb):
    shown = nb.run_line_magic("aihub", "help")
    for word in ("connect", "chats", "render", "metrics", "dashboard"):
        assert word in shown.data


def test_help_is_generated_from_every_parser(nb):
    table = magics._MAGICS._line_commands
    shown = nb.run_line_magic("aihub", "help")
    bundle = shown._repr_mimebundle_()
    for name, handler in table.items():  # every subcommand and every one of its flags, so help never drifts
        assert f"`{name}" in shown.data and f"\n  {name}" in bundle["text/plain"]
        for action in handler.parser._actions:
            assert not action.option_strings or any(flag in shown.data for flag in action.option_strings)
    assert "`%%aihub chat NAME [--model CONNECTION]" in shown.data and "[--no-stream]" in shown.data
    assert "connection show\\|edit\\|remove\\|default NAME" in shown.data  # a pipe cannot end a table cell
    assert "connection show|edit|remove|default NAME" in bundle["text/plain"]  # the plain text reads as typed
    one = nb.run_line_magic("aihub", "help connect")
    assert "--api-key-env: the environment variable that holds the key" in one.text and "chats" not in one.text
    assert nb.run_line_magic("aihub", "connect -h").text == one.text
    both = nb.run_line_magic("aihub", "help chat").text
    assert "%%aihub chat NAME" in both and "--unlock: free a chat" in both
    with pytest.raises(UsageError, match="Unknown subcommand 'bogus'; valid ones are: agent, agents, calls"):
        nb.run_line_magic("aihub", "help bogus")


def test_parse_errors_end_with_the_generated_usage(nb):
    with pytest.raises(UsageError) as caught:
        nb.run_line_magic("aihub", "price set m 1 x")
    assert str(caught.value) == (
        "argument OUT: invalid float value: 'x'. Usage: %aihub price set|remove MODEL [IN] [OUT] [--provider PROVIDER] "
        "[--per-image PRICE]"
    )
    with pytest.raises(UsageError, match="unrecognized arguments: --conn"):  # no abbreviations of --connect-timeout
        nb.run_line_magic("aihub", "connection edit oa --conn 3")


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFoundError("No chat named 'x'; %aihub chats lists them."),
        errors.ThreadBusyError("Chat 'x' is busy."),
        errors.AuthenticationError("The key was refused; set $OPENAI_API_KEY.", connection="oa", status_code=401),
        errors.ProviderUnreachableError("Nothing answers at http://127.0.0.1:9; start the server.", connection="oa"),
        errors.ToolArgumentsError("Tool 'add': b must be an integer."),
        errors.RoundLimitError("Agent 'a' used its 8 rounds; raise --max-rounds."),
    ],
)
def test_a_user_facing_error_is_one_line(nb, hub, monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(hub, "chats", fail)
    # a user's mistake is IPython's UsageError; an outage or a tool/agent failure keeps its own name
    shown_as = "UsageError" if isinstance(error, errors.UsageError) else type(error).__name__
    with pytest.raises(UsageError if shown_as == "UsageError" else type(error)) as caught:
        nb.run_line_magic("aihub", "chats")
    assert str(caught.value) == str(error)
    capsys.readouterr()
    nb.run_cell("%aihub chats")  # what the cell shows: one line, under that name, no traceback
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert lines == [f"{shown_as}: {error}"]


@pytest.mark.parametrize(
    "error",
    [
        errors.StoreError("A Chat with name='x' exists already; Chat name must be unique."),
        errors.UnknownTableError("Chats", valid=["Chat"]),
        errors.RecordNotFoundError("Chat", "0193"),
        errors.SchemaError("schema.prisma line 3: cannot read field 'x'."),
    ],
)
def test_store_and_schema_errors_keep_their_traceback(nb, hub, monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(hub, "chats", fail)
    with pytest.raises(type(error)):
        nb.run_line_magic("aihub", "chats")
    result = nb.run_cell("%aihub chats")
    assert result.error_in_exec is not None and not isinstance(result.error_in_exec, UsageError)
    out = capsys.readouterr()
    assert "Traceback" in out.out + out.err


def test_config_traits(ip, nb, server):
    ip.run_line_magic("config", "AihubMagics.interpolate = False")
    try:
        nb.user_ns["topic"] = "owls"
        _run_cell(nb, "chat cfg --model oa", "About {topic}")
        assert server.requests[-1].json["messages"][-1]["content"] == "About {topic}"
    finally:
        ip.run_line_magic("config", "AihubMagics.interpolate = True")


def test_monitoring_magics_keep_frames(nb, hub, server):
    server.script(ScriptedReply(text="one", prompt_tokens=4, completion_tokens=1))
    _run_cell(nb, "chat mon --model oa", "hi")
    frame = nb.run_line_magic("aihub", "metrics latency_ms --since 1h -o lat")
    assert list(frame["name"].unique()) == ["latency_ms"] and len(frame) == 1
    assert frame.loc[0, "connection"] == "oa" and frame.loc[0, "chat"] == "mon"  # names, not ids
    assert str(frame["createdAt"].dtype).startswith("datetime64")
    # the cell shows no raw ids; the frame kept with -o has them
    assert "id" not in frame.columns and not re.search(_UUID, frame.to_string() + frame._repr_html_())
    lat = nb.user_ns["lat"]
    assert list(lat.columns) == ["id", *frame.columns] and lat["id"].str.fullmatch(_UUID).all()
    calls = nb.run_line_magic("aihub", "calls --status success -o calls")
    assert (calls["status"] == "success").all() and calls["endpoint"].str.endswith("/chat/completions").any()
    assert "id" not in calls.columns and "id" in nb.user_ns["calls"].columns
    jobs = nb.run_line_magic("aihub", "jobs -o jobs")
    assert list(jobs["status"]) == ["completed"]
    assert {"id", "textLogId"} & set(jobs.columns) == set() and {"id", "textLogId"} <= set(nb.user_ns["jobs"].columns)
    # a dimension holding ids (a user's own metric) is left out of the cell too, the names stay
    hub.log_metric("review_score", 0.5, job=nb.user_ns["jobs"].loc[0, "id"], reviewer="ann")
    shown = nb.run_line_magic("aihub", "metrics review_score -o reviews")
    assert list(shown.columns) == ["createdAt", "name", "value", "reviewer"]
    assert list(nb.user_ns["reviews"].columns) == ["id", "createdAt", "name", "value", "job", "reviewer"]
    with pytest.raises(UsageError, match="-o takes a variable name"):
        nb.run_line_magic("aihub", "jobs -o 1bad")


def test_price_magic_gives_cost(nb, hub, server):
    nb.run_line_magic("aihub", "price set local-chat 1000000 2000000")
    server.script(ScriptedReply(text="priced", prompt_tokens=3, completion_tokens=2))
    _run_cell(nb, "chat cost --model oa", "hi")
    (cost,) = hub.store.find("Metric", name="cost_usd")
    assert cost["value"] == pytest.approx(3 * 1.0 + 2 * 2.0)
    prices = nb.run_line_magic("aihub", "prices").data
    assert 'text-align:left">local-chat</td>' in prices and 'text-align:right">1000000.0</td>' in prices
    assert list(hub.prices()["model"]) == ["local-chat"]
    shown = nb.run_line_magic("aihub", "price remove local-chat").data
    assert len(hub.prices()) == 0 and "No prices yet" in shown


def test_price_magic_per_image(nb, hub):
    nb.run_line_magic("aihub", "price set dall-e-3 --per-image 0.04")
    assert hub.prices()[["model", "perImage"]].values.tolist() == [["dall-e-3", "0.04"]]
    shown = nb.run_line_magic("aihub", 'price set dall-e-3 --per-image "1024x1024=0.04,hd 1024x1024=0.08"').data
    assert "hd 1024x1024" in shown and hub.prices()["inputPerMillion"].tolist() == [0.0]
    from aihub_nb import monitoring

    assert monitoring.image_price(hub.store, "OPENAI", "dall-e-3", 2, size="1024x1024", quality="hd") == (0.16, "user")
    for line, said in [
        ("price set dall-e-3 --per-image cheap", r"--per-image takes a price \(0.04\) or SIZE=PRICE pairs"),
        ("price set dall-e-3 --per-image 1024x1024=-1", "a number of USD from 0 up"),
        ("price set dall-e-3 0.5", "give both prices"),
        ("price set dall-e-3", "give both prices"),
    ]:
        with pytest.raises(Exception, match=said):
            nb.run_line_magic("aihub", line)


def test_agent_magics_and_a_tool_call_in_the_cell(nb, hub, server):
    @hub.tool
    def add(a: int, b: int = 0) -> int:
        """Add two numbers."""
        return a + b

    @hub.tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    nb.run_line_magic(
        "aihub", 'agent create calc --model oa --tools add,shout --permission add=automatic,shout=user-permitted --instructions "Be exact."'
    )
    info = hub.describe_agent("calc")
    assert {t["name"]: t["permission"] for t in info["tools"]} == {"add": "automatic", "shout": "user-permitted"}
    assert info["instructions"] == "Be exact."
    assert "calc" in nb.run_line_magic("aihub", "agents").data
    assert "shout" in nb.run_line_magic("aihub", "tools").data
    with pytest.raises(UsageError, match="TOOL=STANCE"):
        nb.run_line_magic("aihub", "agent create bad --model oa --tools add --permission add=automatic,oops")

    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]), ScriptedReply(text="It is 5."))
    captured = _run_cell(nb, "chat maths --agent calc", "What is 2 + 3?")
    shown = "\n".join(_texts(captured))
    assert "<details" in shown and "add(" in shown and "completed" in shown and "It is 5." in shown
    (invocation,) = hub.store.find("ToolInvocation")
    assert (invocation["status"], invocation["parameters"], invocation["result"]) == ("completed", {"a": 2, "b": 3}, {"value": 5})
    assert server.requests[-1].json["messages"][0] == {"role": "system", "content": "Be exact."}
    # its render shows the call by name and arguments, not the provider's call id or a store id
    rendered = nb.run_line_magic("aihub", "render maths")
    assert "Tool call: add(a=2, b=3)" in rendered.text and "It is 5." in rendered.text
    call_id = hub.get_chat("maths").messages()[1]["data"]["tool_calls"][0]["id"]
    assert call_id not in rendered.text and call_id not in rendered.data
    assert not re.search(_UUID, rendered.text + rendered.data)


def test_remove_agent_tool_and_chat(nb, hub, server):
    @hub.tool
    def echo(text: str) -> str:
        """Say it back."""
        return text

    nb.run_line_magic("aihub", "agent create parrot --model oa --tools echo")
    shown = nb.run_line_magic("aihub", "tool show echo")
    assert "def echo" in shown.data
    nb.run_line_magic("aihub", "agent remove parrot")
    assert hub.agents() == [] and hub.store.find("AgentToolConnection") == []
    nb.run_line_magic("aihub", "tool remove echo")
    assert hub.tools() == []
    _run_cell(nb, "chat gone --model oa", "hi")
    nb.run_line_magic("aihub", "chat gone --delete")
    assert hub.store.find("Chat") == [] and hub.store.find("Message") == []
    with pytest.raises(UsageError, match="No agent named 'parrot'"):
        nb.run_line_magic("aihub", "agent show parrot")


def test_ctrl_c_while_the_cell_shows_the_reply(nb, hub, server, monkeypatch):
    def interrupted(self, event):
        raise KeyboardInterrupt

    monkeypatch.setattr(magics._TurnView, "event", interrupted)
    server.script(ScriptedReply.lorem(50))
    with pytest.raises(KeyboardInterrupt) as caught:
        nb.run_cell_magic("aihub", "chat stopped --model oa", "talk")
    shown = caught.value._render_traceback_()  # how IPython shows it: one line under its own name
    assert len(shown) == 1 and shown[0].startswith("KeyboardInterrupt: chat 'stopped' keeps the partial reply")
    assert hub.store.find("ResponseStream")[-1]["status"] == "interrupted"
    assert hub.store.find("Jobs")[-1]["status"] == "interrupted"
    thread_id = hub.get_chat("stopped").thread_id
    assert hub.store.get("MessageThread", thread_id)["lockingJob"] is None


@pytest.mark.parametrize("connection", ["oa", "ol"])
def test_model_options_reach_the_model(nb, server, connection):
    _run_cell(nb, f"chat opts --model {connection} --temperature 0.2 --max-tokens 50 --seed 7", "hi")
    body = server.requests[-1].json
    if connection == "oa":
        assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 50, 7)
        assert body["stream"] is True
    else:
        assert body["options"] == {"temperature": 0.2, "num_predict": 50, "seed": 7}
    _run_cell(nb, f"chat opts --model {connection} --no-stream", "again")
    assert server.requests[-1].json.get("stream", False) is False


def test_default_hub_from_aihub_home_and_the_panels(ip, tmp_path, monkeypatch):
    import ipywidgets

    monkeypatch.setenv("AIHUB_HOME", str(tmp_path / "nb-home"))
    magics.use_hub(None)
    try:
        shown = ip.run_line_magic("aihub", "connect local")
        assert "built-in local server" in shown.data
        hub = magics.default_hub()
        assert hub.path == tmp_path / "nb-home" / "aihub.db"
        captured = _run_cell(ip, "chat offline", "Hello")
        assert any("You said" in t for t in _texts(captured))
        ip.run_line_magic("aihub", "connect local local-tools --name tools")
        ip.run_line_magic("aihub", "connection default tools")
        assert hub.default_connection()["name"] == "tools"
        assert "local-tools" in ip.run_line_magic("aihub", "connection show tools").data
        with pytest.raises(UsageError, match="say what to change"):
            ip.run_line_magic("aihub", "connection edit tools")
        with pytest.raises(UsageError, match="give both prices"):
            ip.run_line_magic("aihub", "price set local-chat 1")
        for line in ("dashboard", "hub", "panel offline"):
            assert isinstance(ip.run_line_magic("aihub", line), ipywidgets.VBox), line
    finally:
        if current._CURRENT is not None:
            current._CURRENT.close()
        magics.use_hub(None)


def test_a_hub_the_notebook_opened_is_the_one_the_magics_use(ip, tmp_path, monkeypatch, server):
    from aihub_nb import Hub

    monkeypatch.setenv("AIHUB_HOME", str(tmp_path / "shared"))
    magics.use_hub(None)
    mine = Hub()
    try:
        @mine.tool
        def double(x: int) -> int:
            """Twice x."""
            return 2 * x

        mine.connect("OPENAI", "local-tools", name="oa", base_url=server.openai_base_url)
        assert magics.default_hub() is mine
        ip.run_line_magic("aihub", "agent create twice --model oa --tools double")
        server.script(ScriptedReply(tool_calls=[{"name": "double", "arguments": {"x": 4}}]), ScriptedReply(text="8"))
        _run_cell(ip, "chat d --agent twice", "double 4")
        (call,) = mine.store.find("ToolInvocation")
        assert (call["status"], call["result"]) == ("completed", {"value": 8})
    finally:
        magics.use_hub(None)
        mine.close()


def test_a_hub_opened_after_the_magics_takes_over(ip, tmp_path, monkeypatch):
    from aihub_nb import Hub

    monkeypatch.setenv("AIHUB_HOME", str(tmp_path / "later"))
    magics.use_hub(None)
    first = magics.default_hub()
    mine = Hub()
    try:
        assert magics.default_hub() is mine
        mine.close()
        assert magics.default_hub() is first
    finally:
        magics.use_hub(None)
        first.close()


def test_tables_read_well(nb, server):
    from aihub_nb.display import html_table

    _run_cell(nb, "chat tidy --model oa", "hi")
    listing = nb.run_line_magic("aihub", "chats").data
    assert " UTC</td>" in listing and "T" not in listing.split("UTC")[0][-12:]  # a readable time
    table = html_table([{"name": "a", "calls": 3, "cost": float("nan")}, {"name": "b", "calls": 12, "cost": 0.5}])
    assert 'text-align:right">3</td>' in table and 'text-align:left">a</td>' in table  # numbers right
    assert 'text-align:right"></td>' in table  # NaN shows empty


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_a_tool_waiting_for_approval_says_so_in_the_cell(nb, hub, server):
    hub.connect("OPENAI", "local-tools", name="tools", base_url=server.openai_base_url)
    hub.tool(add)
    hub.agent("careful", model="tools", tools=[add], permission="user-permitted")
    server.script(ScriptedReply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]), ScriptedReply(text="5."))
    seen = []

    def approve(name, arguments):
        seen.append(captured.outputs[-1].data["text/plain"])  # what the cell shows while it asks
        return True

    hub.approver = approve
    try:
        with capture_output() as captured:
            nb.run_cell_magic("aihub", "chat perm --agent careful", "2 + 3?")
    finally:
        hub.approver = None
    assert len(seen) == 1 and "— waiting for approval]" in seen[0]
    plain = [o.data["text/plain"] for o in captured.outputs]
    assert any("add" in t and "— completed]" in t for t in plain)


def test_every_table_has_a_readable_text_form(nb, hub, server):
    """In terminal IPython only text/plain is shown: no `<IPython.core.display.HTML object>`."""
    server.script(ScriptedReply(text="hi"))
    _run_cell(nb, "chat c --model oa", "hello")
    hub.tool(add)
    nb.run_line_magic("aihub", "agent create helper --model oa --tools add")
    nb.run_line_magic("aihub", "price set gpt-4o 2.5 10")
    for line, expected in [
        ("connections", ["name", "oa", "local-chat"]),
        ("chats", ["c", "oa", "messages"]),
        ("tools", ["add", "Add two numbers."]),
        ("agents", ["helper", "add"]),
        ("agent show helper", ["add"]),
        ("prices", ["gpt-4o", "2.5", "10"]),
        ("models oa", ["local-chat"]),
        ("help", ["%%aihub chat NAME"]),
        ("chat c", ["You: hello"]),
    ]:
        shown = nb.run_line_magic("aihub", line)
        text = nb.display_formatter.format(shown)[0]["text/plain"]
        assert "object>" not in text and all(word in text for word in expected), (line, text)
    assert "name" in nb.run_line_magic("aihub", "connections").text.splitlines()[0]  # a header, aligned columns


def test_a_terminal_gets_the_reply_streamed_as_text_once(hub, server, capfd):
    """IPython's own display publisher (terminal IPython) prints text/plain and cannot update a
    display in place: the reply is written as it streams, not reprinted at every update."""
    from IPython.core.displaypub import DisplayPublisher

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    assert type(shell.display_pub) is DisplayPublisher
    magics.use_hub(hub)
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        server.script(ScriptedReply(text="one two three four", chunks=["one", " two", " three", " four"]))
        capfd.readouterr()
        shell.run_cell("%%aihub chat t\nhi")
        out = capfd.readouterr().out
    finally:
        magics.use_hub(None)
    assert out.count("one two three four") == 1 and "one two\n" not in out and "…" not in out
    assert "object>" not in out and "oa (local-chat)" in out  # the footer as text
