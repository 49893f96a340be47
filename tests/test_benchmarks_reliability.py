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
    summary, table_part = out.split("== Checks ==", 1)[1].split("== Summary ==", 1)
    rows = [line for line in table_part.splitlines() if line.startswith(("Fault matrix", "Fuzzed", "Secrets"))]
    assert len(rows) == 3 and all(re.search(r"\d+/\d+ +(ok|MISS)$", row) for row in rows), table_part
    assert re.search(r"\d+ targeted \+ 50 random lines: \d+ clean, \d+ tracebacks or unclean", table_part)
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


def test_display_section_audits_every_display_of_the_hostile_corpus(capsys):
    code = reliability.main(["--sections", "display"])
    out = capsys.readouterr().out
    assert "SECTION BROKE" not in out
    assert re.search(r"^displays of hostile output with no live HTML (\d+)/\1$", out, re.M)  # 0 live
    assert re.search(r"^reply \(%%aihub chat, Reply\) +116 +0 +0$", out, re.M)  # 29 attacks x 2 APIs x 2 modes
    assert code == 0


def test_the_killed_process_read_log_keeps_whole_reads_only(tmp_path):
    from benchmarks._reliability.worker import READ_HEADER, reads

    path = tmp_path / "reads"
    path.write_bytes(READ_HEADER.pack(1.5, 3) + b"abc" + READ_HEADER.pack(2.5, 4) + b"de")  # the kill tore the last
    assert reads(str(path)) == [(1.5, b"abc")]
    assert reads(str(tmp_path / "absent")) == []
