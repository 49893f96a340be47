"""`python -m benchmarks reliability`: its quick sections run and report, and its secret scanner
finds what is there."""

from __future__ import annotations

import re

from aihub_nb.store import Store
from benchmarks import reliability
from benchmarks._reliability.common import content_chars, scan_for_secrets


def test_quick_sections_print_their_report(capsys):
    code = reliability.main(["--quick", "--sections", "faults,fuzz,secrets", "--faults", "401,dropped mid", "--fuzz", "50"])
    out = capsys.readouterr().out
    assert code in (0, 1)  # 1 while a check misses: the report says which
    assert "SECTION BROKE" not in out
    assert "== 1. Fault matrix" in out and "== 2. Fuzzed %aihub lines" in out and "== 3. Secrets" in out
    assert "2 faults x {OpenAI, Ollama} x {stream, whole} = 8 cases" in out
    table = [line for line in out.splitlines() if line.startswith(("401 wrong key", "dropped mid-stream"))]
    assert len(table) == 8 and all(line.split()[-1] in ("ok", "BAD") for line in table)
    summary = out.split("== Summary ==", 1)[1]
    for check in (
        "error shown as one line", "failed Job recorded", "NetworkCall in a true state", "user message kept",
        "fuzzed lines clean (success or one-line error)", "targeted bad inputs clean (success or one-line error)",
        "no secret in the store", "scanner finds a planted secret",
    ):
        assert re.search(rf"^{re.escape(check)} \d+/\d+", summary, re.M), check
    assert re.search(r"^fuzzed lines clean \(success or one-line error\) \d+/50", summary, re.M)
    assert "scanner finds a planted secret 1/1" in summary  # else the store's 0 would prove nothing
    assert re.search(r"secret values in the store: \d+ rows", out)


def test_scanner_finds_a_planted_secret_in_any_column(tmp_path):
    store = Store(tmp_path / "aihub.db")
    try:
        store.create("TextLog", text="nothing to see")
        store.create("NetworkCall", endpoint="http://x/v1", method="POST", requestHeaders={"x-key": "sk-planted-123"})
        store.create("Jobs", name="j", type="t", textLogId="", error="Illegal header value b'Bearer sk-planted-123\\n'")
    finally:
        store.close()
    found = scan_for_secrets(tmp_path / "aihub.db", ["sk-planted-123", "absent-value"])
    assert found == {"NetworkCall.requestHeaders": 1, "Jobs.error": 1}
    assert scan_for_secrets(tmp_path / "aihub.db", ["absent-value"]) == {}


def test_reply_characters_are_counted_in_both_wire_formats():
    openai_sse = b'data: {"choices":[{"delta":{"content":"Hello"}}]}\n\ndata: {"choices":[{"delta":{"content":" w\\u00f6rld"}}]}\n\n'
    ollama_ndjson = b'{"message":{"role":"assistant","content":"Hi"},"done":false}\n{"message":{"content":" th'
    assert content_chars(openai_sse) == len("Hello wörld")
    assert content_chars(ollama_ndjson) == 2  # a piece cut off mid-string was not received whole
