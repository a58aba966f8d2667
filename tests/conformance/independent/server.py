"""An independent x402 v2 resource server (HTTP transport, ``exact`` on EVM), as a plain ASGI app.

``server_app(env)`` reads the e2e variables (``FACILITATOR_URL``, ``EVM_NETWORK``,
``SERVER_EVM_ADDRESS`` or ``EVM_PAYEE_ADDRESS``, ``EVM_ASSET``, ``EVM_ASSET_NAME``,
``EVM_ASSET_VERSION``, ``PRICE_ATOMIC``, ``PROTECTED_PATH``, ``SECOND_PROTECTED_PATH``,
``FAILING_PATH``, ``REDIRECT_PATH``, ``FACILITATOR_TIMEOUT_SECONDS``) and sells ``GET`` of each path
at the price (the redirect path's handler answers 303 to the protected path).

Decisions, with where they come from:

* Unpaid: 402 with ``PAYMENT-REQUIRED`` (base64 of the ``PaymentRequired``, v2 HTTP transport) and
  ``Cache-Control: no-store``. One offer: the server's own requirements, built once, never read
  back from the client.
* A ``PAYMENT-SIGNATURE`` that is not one base64 JSON ``PaymentPayload`` of version 2 (absent
  fields, wrong types, two such headers, more than ``MAX_HEADER`` bytes) is answered 400: the
  transport's error table maps a malformed payment payload to 400.
* ``accepted`` must equal the offer (the payload carries "the payment method chosen", core spec
  5.2.2; addresses compared without case); otherwise 402 with the offer again.
* ``/verify`` then the handler then ``/settle``, each sent the server's own requirements. A
  handler answering other than 2xx is passed through and nothing is settled. Settlement failure:
  402 with ``PAYMENT-RESPONSE`` and no content. A ``settlement_pending`` answer naming a
  transaction is resent once. A facilitator that cannot be reached, times out, or answers what is
  no verify/settle answer: 502, nothing served. Paid answers carry ``PAYMENT-RESPONSE`` and
  ``Cache-Control: private``; nothing the facilitator sends in headers is passed on.
* Paths: the route is found on the path with percent-escapes decoded once, ``//`` and dot segments
  collapsed, a trailing ``/`` dropped and case ignored, so every spelling of a paid path is charged;
  a path holding a control character, a backslash, ``;`` or a ``%`` that survives decoding is
  refused (400).
* A payment (payer and nonce) being processed is refused to a second request at the same time
  (402); a payment already settled is refused by the facilitator, which reads the chain's nonce.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from .wire import ADDRESS, DIGITS, Malformed, decode_header, encode_header, integer, obj, text

MAX_HEADER = 16 * 1024
FACILITATOR_TIMEOUT = 30.0
MAX_TIMEOUT_SECONDS = 300

Send = Callable[[dict], Awaitable[None]]


class FacilitatorDown(Exception):
    """The facilitator did not give a usable answer."""


def canonical_path(raw: bytes) -> str | None:
    """The path a route is looked up by (lower case), or None for a path refused outright."""
    path = raw.split(b"?", 1)[0]
    decoded = unquote_to_bytes(path)
    if any(b < 0x20 or b == 0x7F for b in decoded) or any(c in decoded for c in (b"\\", b";", b"%")):
        return None
    segments: list[str] = []
    for segment in decoded.decode("utf-8", "replace").split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments).lower()


def same_offer(accepted: dict, offer: dict) -> bool:
    def folded(requirements: dict) -> dict:
        return {
            k: v.lower() if k in ("asset", "payTo") and isinstance(v, str) else v
            for k, v in requirements.items()
        }

    return folded(accepted) == folded(offer)


class IndependentServer:
    def __init__(self, env: dict[str, str]) -> None:
        self.facilitator_url = env["FACILITATOR_URL"].rstrip("/")
        self.timeout = float(env.get("FACILITATOR_TIMEOUT_SECONDS") or FACILITATOR_TIMEOUT)
        self.network = env["EVM_NETWORK"]
        pay_to = env.get("SERVER_EVM_ADDRESS") or env.get("EVM_PAYEE_ADDRESS") or ""
        price = env.get("PRICE_ATOMIC", "1000")
        if not ADDRESS.fullmatch(pay_to) or not DIGITS.fullmatch(price):
            raise ValueError("SERVER_EVM_ADDRESS must be an address and PRICE_ATOMIC a decimal integer")
        self.offer = {
            "scheme": "exact",
            "network": self.network,
            "amount": price,
            "asset": env["EVM_ASSET"],
            "payTo": pay_to,
            "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
            "extra": {"name": env["EVM_ASSET_NAME"], "version": env["EVM_ASSET_VERSION"]},
        }
        self.routes: dict[str, tuple[str, int]] = {}  # canonical path -> (configured path, handler status)
        self.main = env.get("PROTECTED_PATH") or "/protected"
        for var, status in (
            ("PROTECTED_PATH", 200),
            ("SECOND_PROTECTED_PATH", 200),
            ("FAILING_PATH", 500),
            ("REDIRECT_PATH", 303),
        ):
            configured = self.main if var == "PROTECTED_PATH" else env.get(var)
            if configured:
                self.routes[canonical_path(configured.encode()) or configured] = (configured, status)
        self.in_flight: set[tuple[str, str]] = set()
        self.http = httpx.AsyncClient(timeout=self.timeout)

    # -- ASGI -----------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await self.http.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        if scope["path"] == "/health":
            return await respond(send, 200, {"status": "ok"})
        canonical = canonical_path(raw)
        if canonical is None:
            return await respond(send, 400, {"error": "malformed path"})
        if canonical not in self.routes:
            return await respond(send, 404, {"error": "not found"})
        if scope["method"] != "GET":
            return await respond(send, 405, {"error": "method not allowed"}, [("allow", "GET")])
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "localhost")
        path, status = self.routes[canonical]
        url = f"{scope.get('scheme', 'http')}://{host}{path}"
        payments = [v for k, v in scope["headers"] if k == b"payment-signature"]
        await self.paid(send, url, path, status, payments)

    async def paid(self, send: Send, url: str, path: str, status: int, payments: list[bytes]) -> None:
        if not payments:
            return await self.challenge(send, url, "PAYMENT-SIGNATURE header is required")
        try:
            payment = read_payment(payments)
        except Malformed as exc:
            return await respond(send, 400, {"error": f"malformed PAYMENT-SIGNATURE: {exc}"}, NO_STORE)
        if not same_offer(payment["accepted"], self.offer):
            return await self.challenge(send, url, "no matching payment requirements")
        key = payment_key(payment)
        if key in self.in_flight:
            return await self.challenge(send, url, "this payment is already being processed")
        self.in_flight.add(key)
        try:
            await self.serve(send, url, path, status, payment)
        except FacilitatorDown:
            await respond(send, 502, {"error": "the facilitator did not answer usably"}, NO_STORE)
        finally:
            self.in_flight.discard(key)

    async def serve(self, send: Send, url: str, path: str, status: int, payment: dict) -> None:
        verdict = await self.facilitator("/verify", payment, ("isValid",))
        if verdict["isValid"] is not True:
            return await self.challenge(send, url, str(verdict.get("invalidReason") or "payment invalid"))
        if status >= 400:  # the handler failed: nothing is settled
            return await respond(send, status, {"error": "handler failed"})
        settlement = await self.facilitator("/settle", payment, ("success",))
        if pending(settlement):  # resent once; a resend that names no transaction keeps the pending one
            again = await self.facilitator("/settle", payment, ("success",))
            settlement = again if again["success"] or again.get("transaction") else settlement
        header = [("payment-response", encode_header(settlement))]
        if settlement["success"] is not True or not settlement.get("transaction"):
            return await respond(send, 402, {}, [*NO_STORE, *header])
        body = {"message": "paid content", "path": path}
        moved = [("location", self.main)] if 300 <= status < 400 else []
        await respond(send, status, body, [("cache-control", "private"), *moved, *header])

    async def challenge(self, send: Send, url: str, error: str) -> None:
        document = {
            "x402Version": 2,
            "error": error,
            "resource": {"url": url, "description": "a paid resource", "mimeType": "application/json"},
            "accepts": [self.offer],
        }
        await respond(send, 402, {}, [*NO_STORE, ("payment-required", encode_header(document))])

    async def facilitator(self, endpoint: str, payment: dict, required: tuple[str, ...]) -> dict:
        """The facilitator's answer, which must be a JSON object whose ``required`` fields are
        booleans; ``FacilitatorDown`` otherwise."""
        body = {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": self.offer}
        try:
            response = await self.http.post(self.facilitator_url + endpoint, json=body)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise FacilitatorDown(endpoint) from exc
        if not isinstance(answer, dict) or any(not isinstance(answer.get(f), bool) for f in required):
            raise FacilitatorDown(endpoint)
        if response.status_code >= 500:
            raise FacilitatorDown(endpoint)
        return answer


NO_STORE = [("cache-control", "no-store")]


def pending(settlement: dict) -> bool:
    return (
        settlement["success"] is False
        and settlement.get("errorReason") == "settlement_pending"
        and isinstance(settlement.get("transaction"), str)
        and bool(settlement["transaction"])
    )


def read_payment(values: list[bytes]) -> dict:
    """The one ``PaymentPayload`` of the request; Malformed when it is not exactly one valid one."""
    if len(values) != 1:
        raise Malformed("more than one PAYMENT-SIGNATURE header")
    if len(values[0]) > MAX_HEADER:
        raise Malformed("PAYMENT-SIGNATURE is too large")
    try:
        document = decode_header(values[0].decode("ascii"))
    except UnicodeError:
        raise Malformed("not ASCII") from None
    if not isinstance(document, dict) or integer(document, "x402Version", "payment") != 2:
        raise Malformed("not a version 2 payment")
    accepted = obj(document, "accepted", "payment")
    payload = obj(document, "payload", "payment")
    authorization = obj(payload, "authorization", "payload")
    for field in ("scheme", "network", "amount", "asset", "payTo"):
        text(accepted, field, "accepted")
    text(payload, "signature", "payload")
    text(authorization, "from", "authorization", ADDRESS)
    text(authorization, "nonce", "authorization")
    return document


def payment_key(payment: dict) -> tuple[str, str]:
    authorization = payment["payload"]["authorization"]
    return authorization["from"].lower(), authorization["nonce"].lower()


async def respond(send: Send, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
    content = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


def server_app(env: dict[str, str]) -> IndependentServer:
    return IndependentServer(env)
