"""The hub's cost per MCP tool call against calling the same tool with the SDK directly.

    python -m benchmarks mcp [--calls 300] [--repeats 5]

Both sides talk to the shipped demo server over stdio (two processes of the same command) and call
its ``add`` tool. A middle line shows the hub's session alone (the background loop, no store).
The hub side is a full recorded call, as an agent makes it: `invoke_tool` (schema
validation, the ToolInvocation and its TextLog, the metrics) over the hub's background session
loop. The baseline is the SDK's ClientSession on its own event loop, `await session.call_tool(...)`
in a plain loop. The two run interleaved in blocks, so drift on the machine hits both alike; the
medians per call and their ratio are printed. Exits 1 when the ratio misses its target (1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time

from aihub_nb.hub import Hub
from aihub_nb.mcp import demo_command, registry
from aihub_nb.tools import get_tool, invoke_tool

TARGET = 1.3


class _Direct:
    """The baseline: one SDK ClientSession on an event loop of its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stop = asyncio.Event()
        self.ready: asyncio.Future = asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(60)

    async def _open(self):
        started = self.loop.create_future()
        self.task = asyncio.ensure_future(self._own(started))
        return await started

    async def _own(self, started) -> None:
        from mcp import ClientSession, StdioServerParameters, stdio_client

        command = demo_command()
        with open("/dev/null", "w") as errlog:
            async with stdio_client(StdioServerParameters(command=command[0], args=command[1:]), errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await session.list_tools()
                    self.session = session
                    started.set_result(True)
                    await self.stop.wait()

    def block(self, calls: int) -> list[float]:
        async def run() -> list[float]:
            times = []
            for i in range(calls):
                t = time.perf_counter()
                result = await self.session.call_tool("add", {"a": i, "b": 1})
                times.append(time.perf_counter() - t)
                assert result.structured_content == {"result": i + 1}
            return times

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(600)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(self.task), 10), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per side per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    block = 50

    with tempfile.TemporaryDirectory(prefix="aihub-bench-mcp-") as home:
        hub = Hub(home)
        direct = _Direct()
        try:
            hub.mcp("demo", command=demo_command())
            tool = get_tool(hub.runtime, "demo__add")
            for i in range(20):  # warm both sides (first calls import and compile schemas)
                invoke_tool(hub.runtime, tool, {"a": i, "b": 1})
            direct.block(20)
            spec = registry.server_spec(hub.store.first("McpServer", name="demo"))
            hub_times: list[float] = []
            session_times: list[float] = []
            sdk_times: list[float] = []
            for _ in range(args.repeats):
                for start in range(0, args.calls, block):
                    n = min(block, args.calls - start)
                    for i in range(n):
                        t = time.perf_counter()
                        outcome = invoke_tool(hub.runtime, tool, {"a": i, "b": 1})
                        hub_times.append(time.perf_counter() - t)
                        if outcome.content != str(i + 1):
                            raise SystemExit(f"unexpected result {outcome.content!r}")
                    for i in range(n):
                        t = time.perf_counter()
                        hub.runtime.mcp.call(spec, "add", {"a": i, "b": 1})
                        session_times.append(time.perf_counter() - t)
                    sdk_times.extend(direct.block(n))
        finally:
            direct.close()
            hub.close()

    hub_ms = statistics.median(hub_times) * 1000
    sdk_ms = statistics.median(sdk_times) * 1000
    session_ms = statistics.median(session_times) * 1000
    ratio = hub_ms / sdk_ms
    print(f"MCP tool call (demo add over stdio), median of {len(hub_times)} calls per side")
    print(f"  SDK ClientSession.call_tool   {sdk_ms:8.3f} ms")
    print(f"  hub session call (not stored) {session_ms:8.3f} ms  ({session_ms / sdk_ms:.2f}x)")
    print(f"  hub invoke_tool (recorded)    {hub_ms:8.3f} ms")
    print(f"  ratio hub / SDK               {ratio:8.2f}x  (target <= {TARGET}x) {'ok' if ratio <= TARGET else 'MISSED'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
