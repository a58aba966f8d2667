"""What the Python SDK targets share: the e2e harness's environment, and serving an app on loopback.

The targets follow the official x402 e2e harness's contract: configuration only from environment
variables, listening on ``127.0.0.1:$PORT``, a ``... listening on ...`` line on stdout once the socket
accepts connections, ``GET /health`` and ``POST /close`` (the process then exits with code 0).
"""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI

HOST = "127.0.0.1"
LOCAL_NETWORK = "eip155:31337"  # the embedded chain's own id: no SDK knows a default asset for it


def env(name: str, *fallbacks: str) -> str:
    """The first non-empty of ``name`` and ``fallbacks``; exit 2 naming ``name`` when none is set."""
    for candidate in (name, *fallbacks):
        value = os.environ.get(candidate, "")
        if value:
            return value
    print(f"{name} environment variable is required", file=sys.stderr)
    raise SystemExit(2)


def private_key(role: str) -> str:
    key = env("EVM_PRIVATE_KEY", f"{role.upper()}_EVM_PRIVATE_KEY")
    return key if key.startswith("0x") else "0x" + key


class _Server(uvicorn.Server):
    """A uvicorn server that announces itself once its socket is bound."""

    ready_line = "listening"

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"{self.ready_line} on http://{HOST}:{self.config.port}", flush=True)


def serve(app: FastAPI, ready_line: str) -> None:
    """Serve ``app`` on ``127.0.0.1:$PORT`` with ``GET /health`` and ``POST /close`` added."""
    port = int(env("PORT"))
    server = _Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off"))
    server.ready_line = ready_line

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/close")
    def close() -> dict:
        server.should_exit = True
        return {"status": "closing"}

    server.run()
