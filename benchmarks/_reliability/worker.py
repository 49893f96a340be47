"""Worker processes of the reliability benchmark: `python -m benchmarks._reliability.worker MODE JSON`.

* ``turns``: chat turns on this process's own chats, then a hammer of `hub.log_metric`; prints
  one JSON line with what it did and the errors it saw, by type.
* ``slow``: one turn that streams slowly (the parent scripted the reply), optionally through an
  agent whose python tool sleeps; prints ``{"go": ...}`` just before the turn starts, so the parent
  can kill it at a random point, then ``{"done": ...}`` if it lives to the end. With ``reads`` it
  appends every byte its sockets read, with the monotonic time of the read, to that file (one
  write per read, so a kill leaves the file whole): what had arrived in the process when it died.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections import Counter

READ_HEADER = struct.Struct("<dI")  # monotonic time of the read, bytes read


def _hub(args: dict):
    from aihub_nb.hub import Hub

    hub = Hub(args["home"])
    if args["provider"] == "openai":
        hub.connect("OPENAI", "local-chat", name="model", base_url=args["url"] + "/v1", api_key=args.get("key", "x"), default=True, replace=True)
    else:
        hub.connect("OLLAMA", "local-chat", name="model", host=args["url"], api_key=args.get("key"), default=True, replace=True)
    return hub


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def turns(args: dict) -> None:
    errors: Counter[str] = Counter()
    ok = 0
    try:
        hub = _hub(args)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, by type
        _emit({"ok": 0, "errors": {f"{type(exc).__name__} (setup)": 1}, "metrics": 0})
        return
    _emit({"ready": True})
    time.sleep(max(0.0, args.get("start_at", 0) - time.time()))  # all processes start together
    for k in range(args.get("shared", 0)):  # every process creates the same new names at once
        try:
            hub.chat(f"shared-{k}", model="model")
        except Exception as exc:  # noqa: BLE001
            errors[f"{type(exc).__name__} (shared name)"] += 1
    for i in range(args["turns"]):
        name = f"p{args['proc']}-c{i // args['turns_per_chat']}"
        try:
            reply = hub.chat(name, model="model").send(f"turn {i} from process {args['proc']}")
            ok += reply.status == "completed" and bool(reply.text)
        except Exception as exc:  # noqa: BLE001
            errors[type(exc).__name__] += 1
    logged = 0
    for i in range(args["metrics"]):
        try:
            hub.log_metric("reliability_hammer", float(i), proc=str(args["proc"]))
            logged += 1
        except Exception as exc:  # noqa: BLE001
            errors[f"{type(exc).__name__} (log_metric)"] += 1
    try:
        hub.close()
    except Exception as exc:  # noqa: BLE001
        errors[f"{type(exc).__name__} (close)"] += 1
    _emit({"ok": ok, "errors": dict(errors), "metrics": logged})


def _log_reads(path: str) -> None:
    """Every socket read of this process appended to `path` as it happens (httpx reads with recv)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    recv = socket.socket.recv

    def logged_recv(self: socket.socket, *args, **kwargs) -> bytes:
        data = recv(self, *args, **kwargs)
        if data:
            os.write(fd, READ_HEADER.pack(time.monotonic(), len(data)) + data)
        return data

    socket.socket.recv = logged_recv  # type: ignore[method-assign]


def reads(path: str) -> list[tuple[float, bytes]]:
    """What `_log_reads` wrote: (time, bytes) per read, a torn last record left out."""
    try:
        raw = open(path, "rb").read()
    except FileNotFoundError:
        return []
    out, at = [], 0
    while at + READ_HEADER.size <= len(raw):
        when, size = READ_HEADER.unpack_from(raw, at)
        data = raw[at + READ_HEADER.size : at + READ_HEADER.size + size]
        if len(data) < size:
            break
        out.append((when, data))
        at += READ_HEADER.size + size
    return out


def slow(args: dict) -> None:
    if args.get("reads"):
        _log_reads(args["reads"])
    hub = _hub(args)
    chat_args = {"model": "model"}
    if args.get("agent"):
        def slow_tool(seconds: float) -> str:
            """Wait for a while, then say so."""
            time.sleep(seconds)
            return f"waited {seconds} s"

        hub.tool(slow_tool)
        hub.agent("sleeper", model="model", tools=["slow_tool"])
        chat_args = {"agent": "sleeper"}
    chat = hub.chat(args["chat"], **chat_args)
    _emit({"go": time.time()})
    try:
        reply = chat.send(args.get("prompt", "Write slowly, please."))
        _emit({"done": reply.status, "chars": len(reply.text)})
    except Exception as exc:  # noqa: BLE001
        _emit({"done": "error", "error": f"{type(exc).__name__}: {exc}"})
    hub.close()


if __name__ == "__main__":
    mode, payload = sys.argv[1], json.loads(sys.argv[2])
    {"turns": turns, "slow": slow}[mode](payload)
