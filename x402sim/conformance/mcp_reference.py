"""The reference paid tool server as a command: a target for ``x402sim conformance server --transport mcp``.

Usage (the environment is the harness's, as for ``x402sim serve server --from-env``)::

    python -m x402sim.conformance.mcp_reference           # MCP on stdin/stdout
    python -m x402sim.conformance.mcp_reference --http    # MCP over streamable HTTP at PORT, path /mcp

It serves ``mcp_kit.app_tool_server`` around the from-env reference server: one tool per paid route
the environment names (``PROTECTED_PATH`` -> ``protected``...). Its 402s name a tool's resource
``mcp://tool/<name>`` on stdio; over streamable HTTP the endpoint URL itself, as a server at a URL
does. On stdio nothing but MCP is written to stdout; over HTTP it prints a ``listening`` line once
it accepts connections and runs until it is terminated. Bad environment: one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
import threading

from ..http.runner import LOOPBACK, ServiceError, Services
from ..transports.mcp_carry import TOOL_BASE_URL
from ..transports.mcp_wire import MCP_PATH, run_stdio, streamable_http_app
from .mcp_kit import REFERENCE_RESOURCES, app_tool_server, paid_tools
from .reference import reference_server


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    http = "--http" in args
    env = dict(os.environ)
    try:
        port = int(env.get("PORT", "0")) if http else 0
        if http and not 0 < port < 65536:
            raise ValueError(f"PORT={env.get('PORT')!r}: expected the port to listen on")
        url = f"http://{LOOPBACK}:{port}{MCP_PATH}" if http else TOOL_BASE_URL
        app = reference_server(env, base_url=url)[1]
    except ValueError as exc:
        print(f"mcp_reference: {exc}", file=sys.stderr)
        return 2
    server = app_tool_server(app, paid_tools(env), resources=REFERENCE_RESOURCES)
    if not http:
        import anyio

        anyio.run(run_stdio, server)
        return 0
    services = Services(LOOPBACK)
    try:
        services.add("mcp", streamable_http_app(server), port)
    except ServiceError as exc:
        print(f"mcp_reference: {exc}", file=sys.stderr)
        return 2
    services.start()
    print(f"MCP server listening at {url}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
