"""Cost of one paid MCP tool call, in process and over streamable HTTP, against a paid HTTP request.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/paid_tool_calls.py --n 100 --repeat 3``).

``n`` calls per run, best of ``--repeat``; every figure is measured in the same run:
1. baseline: a paid HTTP request through x402sim's roles in process (the testbed), as
   ``paid_requests.py`` measures it: 402, sign, verify, handler, settle (a mined block);
2. a paid tool call in process: the testbed's tool server (``Testbed.mcp_server``) paid by an
   ``McpPayingClient`` over the MCP SDK's in-memory transport, one session kept open across calls
   (the call and the paid retry are two real ``tools/call`` exchanges), and the same with a fresh
   session per call (``TestClient.call_tool``);
3. over 127.0.0.1: a paid HTTP request to ``x402sim serve``'s stack, and a paid tool call to
   ``x402sim serve mcp``'s stack (chain, facilitator, tools over streamable HTTP), one session kept
   open, then a fresh session per call; a free tool over a kept session (the MCP stack alone) and
   opening and closing a session with nothing called (MCP's set-up: ``initialize`` and its
   notification over HTTP).
It prints milliseconds per call and ratios against the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from x402sim import Testbed
from x402sim.http import PayingClient
from x402sim.http.serve import ChainSetup, serve_all
from x402sim.transports.mcp import McpPayingClient
from x402sim.transports.mcp_serve import serve_mcp_all
from x402sim.transports.mcp_tools import PaidTool
from x402sim.transports.mcp_wire import open_session

ARGUMENTS = {"city": "Oslo"}
PORTS = {"chain": 0, "facilitator": 0, "server": 0, "mcp": 0}


def _weather(arguments: dict) -> dict:
    return {"city": arguments.get("city"), "celsius": 4}


def _http_in_process(n: int) -> float:
    tb = Testbed(seed=1)
    client = tb.client(tb.account(usdc=10**12))
    shop = tb.server({"GET /paid": 1_000})
    start = time.perf_counter()
    for _ in range(n):
        assert client.get(shop, "/paid").status == 200
    return (time.perf_counter() - start) / n


def _timed(n: int, call: Callable[[], Awaitable[object]]) -> Awaitable[float]:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await call()
        return (time.perf_counter() - start) / n

    return run()


def _mcp_in_process(n: int) -> tuple[float, float]:
    """Seconds per paid tool call in process: over one kept in-memory session, and a session each."""
    tb = Testbed(seed=2)
    payer = tb.account(usdc=10**12)
    server = tb.mcp_server([PaidTool("weather", _weather, 1_000)])
    paying = McpPayingClient(payer.key, networks=(tb.chain.network,), clock=lambda: tb.now, seed=2)

    async def kept() -> float:
        async with paying.session(server.server) as session:

            async def call() -> None:
                assert (await paying.call_tool(session, "weather", ARGUMENTS)).paid

            return await _timed(n, call)

    per_call = asyncio.run(kept())
    client = tb.client(payer)
    start = time.perf_counter()
    for _ in range(n):
        assert client.call_tool(server, "weather", ARGUMENTS).paid
    return per_call, (time.perf_counter() - start) / n


def _http_over_loopback(n: int) -> float:
    running = serve_all(ChainSetup(accounts=1), ports=PORTS)
    try:
        info = running.info
        with PayingClient(info["accounts"][0]["private_key"], networks=(info["network"],)) as client:
            start = time.perf_counter()
            for _ in range(n):
                assert client.get(info["server_url"] + "/weather").status == 200
            return (time.perf_counter() - start) / n
    finally:
        running.stop()


def _mcp_over_loopback(n: int) -> dict[str, float]:
    """Seconds per call over streamable HTTP on 127.0.0.1: paid on a kept session, paid with a
    session each, free on a kept session, and a session opened and closed."""
    running = serve_mcp_all(ChainSetup(accounts=1), ports=PORTS)
    try:
        info = running.info
        url = info["mcp_url"]
        paying = McpPayingClient(info["accounts"][0]["private_key"], networks=(info["network"],))

        async def run() -> dict[str, float]:
            times: dict[str, float] = {}
            async with paying.session(url) as session:

                async def paid() -> None:
                    assert (await paying.call_tool(session, "weather", ARGUMENTS)).paid

                async def free() -> None:
                    assert (await paying.call_tool(session, "echo", ARGUMENTS)).status == 200

                times["kept"] = await _timed(n, paid)
                times["free"] = await _timed(n, free)

            async def fresh() -> None:
                assert (await paying.call_tool(url, "weather", ARGUMENTS)).paid

            async def session_only() -> None:
                async with open_session(url):
                    pass

            times["fresh"] = await _timed(n, fresh)
            times["session"] = await _timed(n, session_only)
            return times

        return asyncio.run(run())
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="calls per run (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per way; the best is kept (default 3)")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {}

    def keep(key: str, value: float) -> None:
        runs.setdefault(key, []).append(value)

    for _ in range(args.repeat):
        keep("local", _http_in_process(args.n))
        kept, fresh = _mcp_in_process(args.n)
        keep("mcp_local", kept)
        keep("mcp_local_fresh", fresh)
        keep("http", _http_over_loopback(args.n))
        for key, value in _mcp_over_loopback(args.n).items():
            keep(f"mcp_{key}", value)
    best = {k: min(v) for k, v in runs.items()}
    b = best["local"]
    print(f"paid calls, {args.n} per run, best of {args.repeat} (ms per call, ratio to the baseline):")
    rows = {
        "local": "baseline: paid HTTP request, in process",
        "mcp_local": "paid tool call, in process, kept session",
        "mcp_local_fresh": "  the same, a fresh session per call",
        "http": "paid HTTP request over loopback HTTP",
        "mcp_kept": "paid tool call over streamable HTTP, kept session",
        "mcp_fresh": "  the same, a fresh session per call",
        "mcp_free": "free tool call over streamable HTTP, kept session",
        "mcp_session": "MCP session set-up alone over streamable HTTP",
    }
    for key, label in rows.items():
        print(f"  {label:<52} {best[key] * 1e3:7.2f}   {best[key] / b:5.2f}x")
    over_http = (best["mcp_kept"] - best["http"]) * 1e3
    per_session = (best["mcp_fresh"] - best["mcp_kept"]) * 1e3
    print(
        f"over streamable HTTP: MCP costs {over_http:+.2f} ms per paid call on a kept session; a fresh "
        f"session adds {per_session:.2f} ms (set-up alone {best['mcp_session'] * 1e3:.2f} ms)"
    )


if __name__ == "__main__":
    main()
