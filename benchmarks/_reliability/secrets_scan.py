"""Section 5: turns with a key that ends in a newline and HTTP tools with `${VAR}` secrets, then
every text column of every table scanned for the secret values."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aihub_nb.hub import Hub
from aihub_nb.testing import LocalServer, ScriptedReply

from .common import Section, scan_for_secrets


class _Echo(BaseHTTPRequestHandler):
    """/fail: a 500 page that echoes the URL and headers; /hop: a redirect to another origin;
    anything else (on the other origin): 200, recording the headers it got."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server
        owner.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.startswith("/fail"):
            body = f"Error 500 for {self.path} with headers {dict(self.headers)}".encode()
            self._send(500, body)
        elif self.path.startswith("/hop"):
            self.send_response(302)
            self.send_header("Location", owner.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(200, b'{"landed": true}')

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(redirect_to: str = "") -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    httpd.daemon_threads = True
    httpd.seen = []
    httpd.redirect_to = redirect_to
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


ENV = ("RELIABILITY_OPENAI_KEY", "RELIABILITY_OLLAMA_KEY", "RELIABILITY_TOOL_TOKEN", "RELIABILITY_TOOL_KEY")


def run(section: Section, server: LocalServer, tmp: Path) -> None:
    values = {
        "RELIABILITY_OPENAI_KEY": "sk-rel" + secrets.token_hex(12),
        "RELIABILITY_OLLAMA_KEY": "ol-rel" + secrets.token_hex(12),
        "RELIABILITY_TOOL_TOKEN": "tt-rel" + secrets.token_hex(12),
        "RELIABILITY_TOOL_KEY": "tk-rel" + secrets.token_hex(12),
    }
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ["RELIABILITY_OPENAI_KEY"] = values["RELIABILITY_OPENAI_KEY"] + "\n"  # as pasted into a .env file
    os.environ["RELIABILITY_OLLAMA_KEY"] = values["RELIABILITY_OLLAMA_KEY"] + "\n"
    os.environ["RELIABILITY_TOOL_TOKEN"] = values["RELIABILITY_TOOL_TOKEN"]
    os.environ["RELIABILITY_TOOL_KEY"] = values["RELIABILITY_TOOL_KEY"]
    other = _serve()
    echo = _serve(f"http://127.0.0.1:{other.server_address[1]}/landing")
    home = tmp / "secrets"
    shown: list[str] = []  # what the user was shown: error lines
    turns: list[str] = []
    try:
        hub = Hub(home)
        hub.approver = lambda *_: False
        try:
            hub.connect("OPENAI", "local-chat", name="key-oa", base_url=server.openai_base_url, api_key_env="RELIABILITY_OPENAI_KEY")
            hub.connect("OLLAMA", "local-chat", name="key-ol", host=server.ollama_host, api_key_env="RELIABILITY_OLLAMA_KEY")
            hub.connect("OPENAI", "local-chat", name="plain", base_url=server.openai_base_url, api_key="x")
            port = echo.server_address[1]
            hub.http_tool(
                "echo_fail", "GET", f"http://127.0.0.1:{port}/fail?key=${{RELIABILITY_TOOL_KEY}}",
                headers={"X-Token": "${RELIABILITY_TOOL_TOKEN}"}, description="Fails, echoing the request.",
            )
            hub.http_tool(
                "hop", "GET", f"http://127.0.0.1:{port}/hop", headers={"Authorization": "Bearer ${RELIABILITY_TOOL_TOKEN}", "X-Token": "${RELIABILITY_TOOL_TOKEN}"},
                description="Redirects to another origin.",
            )
            hub.agent("courier", model="plain", tools=["echo_fail", "hop"])
            for name in ("key-oa", "key-ol"):
                for stream in (True, False):
                    server.reset()
                    turns.append(_turn(hub, f"chat-{name}-{stream}", {"model": name}, "Hello there.", stream, shown))
                server.reset()  # refused: the error line names the key's variable, never its value
                server.script(ScriptedReply(fault="401"))
                turns.append(_turn(hub, f"refused-{name}", {"model": name}, "Hello again.", True, shown))
            for tool in ("echo_fail", "hop"):
                server.reset()
                server.script(ScriptedReply(tool_calls=[{"name": tool, "arguments": {}}]), ScriptedReply("Done."))
                turns.append(_turn(hub, f"tool-{tool}", {"agent": "courier"}, f"Call {tool}.", True, shown))
                sent_to_model = sum(
                    any(v in json.dumps(r.json or {}) for v in values.values()) for r in server.requests
                )
                section.data.setdefault("sent_to_model", 0)
                section.data["sent_to_model"] += sent_to_model
        finally:
            hub.close()
        found = scan_for_secrets(home / "aihub.db", list(values.values()))
        in_errors = sum(any(v in text for v in values.values()) for text in shown)
        cross_origin = sum(values["RELIABILITY_TOOL_TOKEN"] in json.dumps(h) for h in other.seen)
        mode = stat.S_IMODE(os.stat(home / "aihub.db").st_mode)
        planted = _self_check(home / "aihub.db", tmp)
    finally:
        echo.shutdown()
        other.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    rows_total = sum(found.values())
    section.lines.append("turns: " + "; ".join(turns))
    section.lines.append(
        f"secret values in the store: {rows_total} rows" + (f" ({', '.join(f'{k} x{v}' for k, v in sorted(found.items()))})" if found else "")
    )
    section.lines.append(f"secret values in error lines shown to the user: {in_errors}/{len(shown)}")
    section.lines.append(f"secret values sent to the model in request bodies: {section.data.get('sent_to_model', 0)}")
    section.lines.append(f"tool secret re-sent to another origin on a redirect: {cross_origin} (requests that reached the other origin: {len(other.seen)})")
    section.lines.append(f"database file mode: {oct(mode)}; scanner self-check (a planted canary is found): {'yes' if planted else 'NO'}")
    section.check("no secret in the store", int(rows_total == 0), 1)
    section.check("no secret in error lines", len(shown) - in_errors, len(shown))
    section.check("no secret sent to the model", int(section.data.get("sent_to_model", 0) == 0), 1)
    section.check("no secret sent cross-origin", int(cross_origin == 0), 1)
    section.check("database file 0600", int(mode == 0o600), 1)
    section.check("scanner finds a planted secret", int(planted), 1)
    section.data.update(found=found, in_errors=in_errors, cross_origin=cross_origin, mode=mode, planted=planted)
    section.headline = (
        f"secret in store {rows_total} rows, in {in_errors}/{len(shown)} error lines, sent to model {section.data.get('sent_to_model', 0)}, "
        f"cross-origin {cross_origin}; file {mode:o}"
    )


def _turn(hub: Hub, chat: str, target: dict, text: str, stream: bool, shown: list[str]) -> str:
    from aihub_nb.chat import drive

    try:
        reply = drive(hub.chat(chat, **target).turn(text, stream=stream))
        return f"{chat}: {reply.status}"
    except Exception as exc:  # noqa: BLE001 - the error line is what the user sees
        shown.append(f"{type(exc).__name__}: {exc}")
        return f"{chat}: {type(exc).__name__}"


def _self_check(db: Path, tmp: Path) -> bool:
    """Plant a canary in a copy of the database: the scanner must find it, or it proves nothing."""
    copy = tmp / "secrets-canary.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    canary = "canary-" + secrets.token_hex(8)
    dst.execute('INSERT INTO "TextLog" (id, "references", createdAt, updatedAt, text) VALUES (?, ?, ?, ?, ?)',
                ("canary", "{}", "2020-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z", f"key={canary}\n"))
    dst.commit()
    dst.close()
    found = scan_for_secrets(copy, [canary])
    os.remove(copy)
    return found.get("TextLog.text") == 1
