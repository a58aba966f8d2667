"""The harness's shop for the Bazaar cases: a resource server on loopback whose paths a case lists.

``BazaarShop.app`` is served beside the harness's chain for a facilitator run (``kits.harness_apps``,
under ``SHOP_APP``); ``bazaar_cases`` puts each listed resource's 402 in ``offers``, and the shop
serves an unpaid copy of each beside it (``COPY_PREFIX``), for a control's catalogue to point at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .forge import header_value

SHOP_APP = "bazaar-shop"  # the harness's extra app selling the listed resources
# Beside each listed path the shop serves an unpaid copy under this prefix, as a careless seller
# does: an honest catalogue never lists it (a control does: ``bazaar_controls``).
COPY_PREFIX = "/copy"


@dataclass
class BazaarShop:
    """A resource server for the Bazaar cases: each path of ``offers`` answers an unpaid GET with its
    402 (``PAYMENT-REQUIRED`` and the same JSON body), and ``COPY_PREFIX`` + that path 200 with the
    content (the unpaid copy); anything else 404. It settles nothing: the
    cases pay through the target facilitator themselves."""

    offers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        async def app(scope, receive, send) -> None:  # a plain function: servers take it for ASGI 3
            await self._serve(scope, receive, send)

        self.app = app

    async def _serve(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        headers = [(b"content-type", b"application/json")]
        if path in self.offers:
            required = self.offers[path]
            status, body = 402, required
            headers.append((b"payment-required", header_value(required).encode()))
        elif path.startswith(COPY_PREFIX + "/") and path.removeprefix(COPY_PREFIX) in self.offers:
            status, body = 200, {"content": "listed content", "paid": False}
        else:
            status, body = 404, {"error": f"nothing at {path}"}
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
