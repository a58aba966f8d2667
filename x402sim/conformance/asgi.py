"""Small ASGI helpers the harness's wrappers share: read a request body, replay it, capture an app's
answer, and send an answer (JSON or raw). Wrappers buffer whole messages: bodies here are small."""

from __future__ import annotations

import json
from typing import Any

RawHeaders = list[tuple[bytes, bytes]]


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def replay(body: bytes):
    """A ``receive`` that hands ``body`` to an app as one message."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def capture(app, scope, receive) -> tuple[int, RawHeaders, bytes]:
    """Run ``app`` and return its answer (status, raw headers, body) instead of sending it."""
    start: dict = {}
    chunks: list[bytes] = []

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return start.get("status", 500), start.get("headers", []), b"".join(chunks)


async def send_raw(send, status: int, headers: RawHeaders, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, document: Any) -> None:
    content = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send_raw(send, status, headers, content)


async def serve_lifespan(receive, send) -> None:
    """Answer an ASGI ``lifespan`` scope: startup complete until the server shuts down."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
