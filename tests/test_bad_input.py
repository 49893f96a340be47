"""Bad input to the magics and the Hub: a one-line error saying what to do, never a traceback."""

from __future__ import annotations

import math
import random
import re
import shlex

import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from aihub_nb import magics
from aihub_nb.errors import UsageError
from aihub_nb.testing import ScriptedReply


@pytest.fixture
def nb(hub, server):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    hub.connect("OLLAMA", "local-chat", name="ol", host=server.ollama_host)
    hub.chat("c", model="oa")
    yield shell
    magics.use_hub(None)


def _outcome(call) -> str:
    """"ok", or the one-line usage error; anything else (a traceback) fails the test."""
    try:
        with capture_output():
            call()
    except IPythonUsageError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, repr(message)
        return message
    return "ok"


@pytest.mark.parametrize(
    ("line", "cell", "says"),
    [
        ("metrics --until 999999999999999w", None, "outside the years"),
        ("calls --since 99999999999999999999d", None, "outside the years"),
        ("agent create a --model oa --max-rounds 99999999999999999999", None, "max_rounds must be a whole number from 1 to 1000"),
        ("chat c --temperature nan", "hi", "finite number"),
        ("chat c --model ol --temperature inf", "hi", "finite number"),
        ("chat c --temperature 1e309", "hi", "finite number"),
        ("metrics x -o __builtins__", None, "-o takes a variable name"),
        ("chats 'a\nb'", None, "unrecognized arguments: a\\nb"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(nb, server, line, cell, says):
    run = (lambda: nb.run_cell_magic("aihub", line, cell)) if cell is not None else (lambda: nb.run_line_magic("aihub", line))
    assert says in _outcome(run)
    assert "__builtins__" in nb.user_ns and not hasattr(nb.user_ns["__builtins__"], "columns")


def test_bad_hub_arguments_are_usage_errors(hub, server):
    hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
    for bad in (math.inf, -math.inf, math.nan, 10**400, "999999999999999w"):
        with pytest.raises(UsageError, match="as a time"):
            hub.metrics(since=bad)
    with pytest.raises(UsageError, match="finite number"):
        hub.chat("c").send("hi", options={"temperature": math.nan})
    with pytest.raises(UsageError, match="from 1 to 1000"):
        hub.agent("a", model="oa", max_rounds=10**30)


_SUBCOMMANDS = ["connect", "connections", "connection", "chat", "chats", "render", "tools", "tool", "agent",
                "agents", "metrics", "calls", "jobs", "price", "prices", "help", "bogus"]
_TOKENS = ["oa", "c", "x", "OPENAI", "OLLAMA", "local", "create", "show", "remove", "edit", "default", "set",
           "--since", "--until", "--status", "-o", "--name", "--model", "--tools", "--permission", "--max-rounds",
           "--instructions", "--delete", "--unlock", "--new-name", "--model-id", "--api-key-env", "--description",
           "--provider", "nan", "inf", "-inf", "-1", "0", "1e309", "99999999999999999999", "999999999999999w", "1h",
           "all", "'", '"', "\x00", "é", "a=b", "=", ",", "a,b", "{x}", "automatic", "user-permitted", "--", "-",
           "2026-13-45", "1" * 300, "\n", "None", "__class__"]
_CELL_OPTIONS = ["--temperature", "--max-tokens", "--seed", "--model", "--agent", "--system", "--no-stream", "--no-interpolate"]


def test_fuzzed_magic_calls_end_in_success_or_one_line(nb, server):
    rng = random.Random(8)
    outcomes = {"ok": 0, "usage": 0}
    for _ in range(400):
        cell = rng.random() < 0.25
        tokens = [rng.choice(_TOKENS + (_CELL_OPTIONS if cell else [])) for _ in range(rng.randint(0, 5))]
        line = " ".join(shlex.quote(t) if rng.random() < 0.7 else t for t in tokens)
        if cell:
            body = rng.choice(["hi", "{x}", "{c.__class__}", ""])
            result = _outcome(lambda: nb.run_cell_magic("aihub", "chat c " + line, body))
        else:
            command = rng.choice(_SUBCOMMANDS) + " " + line
            result = _outcome(lambda: nb.run_line_magic("aihub", command))
        outcomes["ok" if result == "ok" else "usage"] += 1
    assert outcomes["ok"] > 20 and outcomes["usage"] > 100  # both kinds were exercised


def test_dimension_keys_with_quotes_and_a_key_called_name_filter_exactly(hub):
    hub.log_metric("score", 1.0, **{'run "a"': "x", "back\\slash": "y", "it's": "z"}, name="alpha")
    hub.log_metric("score", 2.0, **{'run "a"': "w"}, name="beta")
    assert hub.metrics("score", **{'run "a"': "x"})["value"].tolist() == [1.0]
    assert hub.metrics("score", **{"back\\slash": "y"})["value"].tolist() == [1.0]
    assert hub.metrics("score", **{"it's": "z"})["value"].tolist() == [1.0]
    assert hub.metrics("score", name="beta")["value"].tolist() == [2.0]  # after the metric name: a dimension
    assert hub.metrics(name="score")["value"].tolist() == [1.0, 2.0]  # on its own: the metric name
    assert hub.metrics(None, name="alpha")["dim_name"].tolist() == ["alpha"]


def test_names_in_any_script_are_welcome_but_not_invisible_ones(hub, server):
    hub.connect("OPENAI", "local-chat", name="日本語", base_url=server.openai_base_url)
    server.script(ScriptedReply(text="はい"))
    assert hub.chat("会話", model="日本語").send("こんにちは").text == "はい"
    hub.agent("हिंदी-एजेंट", model="日本語")  # combining vowel signs are part of a word
    assert [c["name"] for c in hub.connections()] == ["日本語"] and hub.chats()[0]["name"] == "会話"
    for bad in ("a b", "x\u200by", "\u202egnp", "-lead", "_x", ""):
        with pytest.raises(UsageError, match="letters \\(any script\\)"):
            hub.chat(bad, model="日本語")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("jobs --status weird", "--status 'weird' is not one of: pending, running, completed, failed, interrupted"),
        ("calls --status weird", "--status 'weird' is not one of: pending, success, error, interrupted"),
        ("metrics latncy_ms", "No metric named 'latncy_ms'; the metrics recorded are: "),
        ("price remove no-such-model", "No price for 'no-such-model'; the prices set are: gpt-4o."),
        ("connect OPENAI m --name u --base-url not-a-url", "is not a URL"),
        ("connect OPENAI m --name p --base-url http://127.0.0.1:99999/v1", "Port out of range"),
    ],
)
def test_bad_values_are_refused_in_one_line(hub, server, line, said):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aihub_nb")
    magics.use_hub(hub)
    try:
        hub.connect("OPENAI", "local-chat", name="oa", base_url=server.openai_base_url)
        server.script(ScriptedReply(text="ok"))
        hub.chat("c", model="oa").send("hi")  # some metrics exist
        hub.set_price("gpt-4o", 2.5, 10)
        with pytest.raises(IPythonUsageError) as refused:
            shell.run_line_magic("aihub", line)
        assert said in str(refused.value) and "\n" not in str(refused.value)
        if line.startswith("metrics"):
            assert "latency_ms" in str(refused.value)
        assert len(hub.prices()) == 1 and [c["name"] for c in hub.connections()] == ["oa"]  # nothing changed
    finally:
        magics.use_hub(None)


def test_price_times_read_to_the_second(hub):
    from aihub_nb.display import text_table

    hub.set_price("gpt-4o", 2.5, 10)
    shown = text_table(hub.prices().to_dict("records"))
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown) and "+00:00" not in shown and ".5" not in shown.split("UTC")[0][-12:]
