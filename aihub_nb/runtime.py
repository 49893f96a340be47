"""The runtime: what chat turns, agents and tools need from the hub, handed to them explicitly.

A `Hub` owns one `Runtime` and passes it down; chat.py, agents.py and tools.py never see the Hub.

    store      the Store
    providers  a ProviderPool: `.get(connection_row)` gives the connection's provider client,
               built once per connection and configuration, with the recorder's transport
    tools      a ToolRegistry: the python tool functions defined in this session, by name
    metrics    the metric write path: `.record(values, dimensions, references=...)` writes several
               metrics that share dimensions in one transaction; `.log(name, value, **dims)` batches
    recorder   network-call recording (aihub_nb.recording.Recorder): `.transport(lib)` for
               clients, `with .call(stream_id, job=...) as call:` around a provider call, and
               `call.close(status=..., result_messages=...)` when its stream ends
    approver   `approve(tool_name, arguments) -> bool` for user-permitted tools, or None (denied)
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import connections as _conn
from .recording import Recorder

if TYPE_CHECKING:
    from .providers.base import Provider
    from .store import Store

__all__ = ["Approver", "Metrics", "ProviderPool", "Recorder", "Runtime", "ToolRegistry"]

Approver = Callable[[str, dict[str, Any]], bool]


class ToolRegistry(dict[str, Callable[..., Any]]):
    """The python tool functions defined in this session, by tool name."""

    def name_of(self, fn: Callable[..., Any]) -> str | None:
        """The name `fn` is registered under, if it is (a bound method counts as the same
        function: `obj.method` is a new object at every access)."""
        for name, registered in self.items():
            if registered is fn or (
                inspect.ismethod(fn) and inspect.ismethod(registered)
                and registered.__func__ is fn.__func__ and registered.__self__ is fn.__self__
            ):
                return name
        return None


class Metrics:
    """The metric write path of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, values: dict[str, float], dimensions: dict[str, str], *, references: dict[str, str] | None = None) -> None:
        """Write several metrics that share dimensions now, in one transaction, through the store's
        one MetricWriter (with anything log() had queued before them)."""
        from . import monitoring

        monitoring.record_metrics(self.store, values, dimensions, references=references)

    def log(self, name: str, value: float, /, **dimensions: Any) -> None:
        """Record one metric, batched."""
        from . import monitoring

        monitoring.log_metric(self.store, name, value, **dimensions)

    def close(self) -> None:
        """Write what is batched and close the monitoring readers of this store."""
        from . import monitoring

        monitoring.close(self.store)


class ProviderPool:
    """The provider clients of a hub, one per connection and configuration."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._providers: dict[str, tuple[str, Provider]] = {}
        self._lock = threading.Lock()

    def get(self, row: dict[str, Any]) -> Provider:
        """The provider client for a connection row, built once per connection and configuration."""
        from .providers import Timeouts, make_provider

        data = row.get("data") or {}
        base_url, host = data.get("base_url"), data.get("host")
        if data.get("builtin"):
            server = _conn.builtin_server()
            base_url, host = server.openai_base_url, server.ollama_host
        timeout = Timeouts(**_conn.timeouts_of(data))
        env = data.get("api_key_env") or ("OPENAI_API_KEY" if row["provider"] == "OPENAI" else None)
        key = (row["provider"], base_url, host, env, env and os.environ.get(env), _conn.session_key(row["id"]), timeout, row["name"])
        fingerprint = repr(key)
        with self._lock:
            cached = self._providers.get(row["id"])
            if cached and cached[0] == fingerprint:
                return cached[1]
            lib = "httpx2" if row["provider"] == "OPENAI" else "httpx"
            provider = make_provider(
                row["provider"],
                connection_name=row["name"],
                base_url=base_url,
                host=host,
                api_key=_conn.session_key(row["id"]) or ("not-needed" if data.get("builtin") else None),
                api_key_env=data.get("api_key_env"),
                transport=self.recorder.transport(lib),
                timeout=timeout,
            )
            if cached:
                cached[1].close()
            self._providers[row["id"]] = (fingerprint, provider)
            return provider

    def forget(self, connection_id: str) -> None:
        """Close and drop the client of a connection that changed or went away."""
        with self._lock:
            cached = self._providers.pop(connection_id, None)
        if cached:
            cached[1].close()

    def close(self) -> None:
        with self._lock:
            cached, self._providers = list(self._providers.values()), {}
        for _, provider in cached:
            provider.close()


@dataclass
class Runtime:
    """What chat, agents and tools work with, owned by the Hub."""

    store: Store
    providers: ProviderPool
    tools: ToolRegistry
    metrics: Metrics
    recorder: Recorder
    approver: Approver | None = None
    mcp_sessions: Any = None  # the MCP servers' sessions (aihub_nb.mcp.McpSessions), made on first use
    telemetry: Any = None  # aihub_nb.telemetry.Telemetry while OpenTelemetry export is on (set by the Hub)

    @property
    def mcp(self) -> Any:
        """The MCP servers' sessions: one background loop thread, started on first use."""
        if self.mcp_sessions is None:
            from .mcp import McpSessions

            self.mcp_sessions = McpSessions()
        return self.mcp_sessions

    @classmethod
    def open(cls, store: Store) -> Runtime:
        recorder = Recorder(store)
        return cls(
            store=store, providers=ProviderPool(recorder), tools=ToolRegistry(), metrics=Metrics(store), recorder=recorder
        )

    def close(self) -> None:
        """Write pending metrics and close the provider clients (the store stays open)."""
        self.metrics.close()
        self.providers.close()
        if self.mcp_sessions is not None:
            self.mcp_sessions.close()  # stops every MCP server this hub started
