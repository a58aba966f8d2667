"""The reference paid agent as a command: a target for ``x402sim conformance server --transport a2a``.

Usage (the environment is the harness's, as for ``x402sim serve server --from-env``)::

    python -m x402sim.conformance.a2a_reference      # an A2A agent at / of PORT

It serves ``a2a_kit.AppAgent`` around the from-env reference server: one skill per paid route the
environment names (``PROTECTED_PATH`` -> ``protected``...), JSON-RPC at ``/`` (A2A 1.0 and the x402
specification's 0.3 ``message/send``), its card at ``/.well-known/agent-card.json``. Its 402s name a
skill's resource ``<agent URL>/<skill>``. It prints a ``listening`` line once it accepts connections
and runs until it is terminated. Bad environment: one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
import threading

from ..http.runner import LOOPBACK, ServiceError, Services
from .a2a_kit import AppAgent, reference_agent_app
from .mcp_kit import paid_tools


def main() -> int:
    env = dict(os.environ)
    try:
        port = int(env.get("PORT", "0"))
        if not 0 < port < 65536:
            raise ValueError(f"PORT={env.get('PORT')!r}: expected the port to listen on")
        url = f"http://{LOOPBACK}:{port}"
        agent = AppAgent(reference_agent_app(env, url), paid_tools(env), url=url)
    except ValueError as exc:
        print(f"a2a_reference: {exc}", file=sys.stderr)
        return 2
    services = Services(LOOPBACK)
    try:
        services.add("a2a", agent.app, port)
    except ServiceError as exc:
        print(f"a2a_reference: {exc}", file=sys.stderr)
        return 2
    services.start()
    print(f"A2A agent listening at {url}/", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
