"""The facilitator role behind HTTP: ``POST /verify``, ``POST /settle``, ``GET /supported``, ``GET /health``.

Rules:

* Endpoints are async and the role is called on the event loop when its chain is the embedded one
  (shared with the chain's RPC service on the same loop), or in a worker thread, one call at a
  time, when the chain is remote (``RpcChain`` blocks on HTTP).
* A body that is not JSON, too large, or not a facilitator request gets HTTP 400 with
  ``{"error": "<what and where>"}``; a payment the facilitator refuses is HTTP 200 with
  ``isValid: false`` / ``success: false`` and the reason code, as the protocol says. Never a 500.
* Settlement waits for the receipt up to ``settle_timeout`` seconds: on the embedded chain with
  ``automine`` a block is mined at once; otherwise blocks come from elsewhere and the receipt is
  polled. A settlement still unconfirmed at the timeout answers ``success: false`` with
  ``settlement_pending`` and the transaction hash (it may still land).
* ``now`` is the wall clock (``clock``), as for any real facilitator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..actors.facilitator import Facilitator, PendingSettlement
from ..evm.chain import LocalChain
from ..protocol import ProtocolError, Reason, SettleResponse, parse_facilitator_request
from .bodies import read_body

MAX_BODY_BYTES = 64 * 1024
RECEIPT_POLL_SECONDS = 0.05


def _bad_request(problem: str) -> JSONResponse:
    return JSONResponse({"error": problem}, status_code=400)


async def read_json_body(request: Request, limit: int) -> tuple[object | None, JSONResponse | None]:
    """The parsed JSON body, or a 400 response naming what is wrong with it."""
    body = await read_body(request, limit)
    if body is None:
        return None, _bad_request(f"request body exceeds the limit of {limit} bytes")
    try:
        return json.loads(body), None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, _bad_request(f"request body is not JSON: {exc}")


def facilitator_app(
    facilitator: Facilitator,
    *,
    clock: Callable[[], float] = time.time,
    automine: bool = True,
    settle_timeout: float = 30.0,
    max_body: int = MAX_BODY_BYTES,
) -> Starlette:
    embedded = isinstance(facilitator.chain, LocalChain)
    lock = asyncio.Lock()

    async def in_role(fn, *args):
        if embedded:
            return fn(*args)
        async with lock:
            return await asyncio.to_thread(fn, *args)

    async def parsed(request: Request):
        data, error = await read_json_body(request, max_body)
        if error is not None:
            return None, error
        try:
            return parse_facilitator_request(data), None
        except ProtocolError as exc:
            return None, _bad_request(str(exc))

    async def verify(request: Request) -> JSONResponse:
        body, error = await parsed(request)
        if error is not None:
            return error
        now = int(clock())
        answer = await in_role(facilitator.verify, body.payment_payload, body.payment_requirements, now)
        return JSONResponse(answer.to_wire())

    async def settle(request: Request) -> JSONResponse:
        body, error = await parsed(request)
        if error is not None:
            return error
        now = int(clock())
        outcome = await in_role(
            facilitator.begin_settle, body.payment_payload, body.payment_requirements, now
        )
        if isinstance(outcome, PendingSettlement):
            outcome = await _confirm(outcome)
        return JSONResponse(outcome.to_wire())

    async def _confirm(pending: PendingSettlement) -> SettleResponse:
        if embedded and automine:
            facilitator.chain.set_time(max(facilitator.chain.now, int(clock())))
            facilitator.chain.mine()
        deadline = time.monotonic() + settle_timeout
        while True:
            receipt = await in_role(facilitator.chain.receipt, pending.tx_hash)
            if receipt is not None:
                return await in_role(facilitator.finish_settle, pending, receipt)
            if time.monotonic() >= deadline:
                return SettleResponse(
                    success=False,
                    error_reason=Reason.settlement_pending.value,
                    error_message=f"not confirmed within {settle_timeout} s",
                    payer=pending.payer,
                    transaction="0x" + pending.tx_hash.hex(),
                    network=pending.network,
                )
            await asyncio.sleep(RECEIPT_POLL_SECONDS)  # waiting on a chain, not synchronising a test

    async def supported(request: Request) -> JSONResponse:
        return JSONResponse(facilitator.supported().to_wire())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "address": facilitator.address, "network": facilitator.chain.network}
        )

    return Starlette(
        routes=[
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
            Route("/supported", supported, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
