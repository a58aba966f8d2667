"""The facilitator role behind HTTP: ``POST /verify``, ``POST /settle``, ``GET /supported``, ``GET /health``,
and the Bazaar's ``GET /discovery/resources`` and ``GET /discovery/search``.

Rules:

* Endpoints are async and the role is called on the event loop when its chain is the embedded one
  (shared with the chain's RPC service on the same loop), or in a worker thread, one call at a
  time, when the chain is remote (``RpcChain`` blocks on HTTP).
* A body that is not JSON (by the protocol's strict parser), too large, or not a facilitator
  request gets HTTP 400 with ``{"error": "<what and where>"}``; a payment the facilitator refuses is
  HTTP 200 with ``isValid: false`` / ``success: false`` and the reason code, as the protocol says.
* **Time is the chain's.** ``now`` is the time the chain will stamp the transfer with: on the
  embedded chain its ``ChainClock`` (the wall clock plus any ``evm_increaseTime``), on a remote
  chain ``RpcChain.time`` (the node's own clock when it is an x402sim chain, else the later of the
  wall clock and its latest block). Verify and settle therefore agree with the block that mines.
* Settlement waits for the receipt up to ``settle_timeout`` seconds: on the embedded chain with
  ``automine`` a block is mined at once; otherwise blocks come from elsewhere and the receipt is
  polled. A settlement still unconfirmed at the timeout answers ``success: false`` with
  ``settlement_pending`` and the transaction hash (it may still land; ``abandon_settle``); a
  resent settle of the same payment waits on that transaction again, sending nothing new.
* What the role says of extensions (``extension_responses``: the Bazaar's status of a listing) is
  sent in the ``EXTENSION-RESPONSES`` header (base64 JSON) of the ``/verify`` or ``/settle`` answer.
* ``/discovery/resources`` and ``/discovery/search`` answer from the role's catalog with the wire
  shapes of the SDKs' Bazaar clients (``protocol.bazaar``); a malformed parameter gets 400 with
  ``{"error": "query parameter <name>: <problem>"}``; a facilitator without a catalog answers 404.
* Verify and settle calls are admitted through an ``Admission`` bound; past it they get 503 with
  ``Retry-After`` before the role is touched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import cast

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..actors.facilitator import Facilitator, PendingSettlement
from ..evm.rpc_chain import RpcChain
from ..protocol import (
    EXTENSION_RESPONSES,
    ProtocolError,
    SettleResponse,
    VerifyResponse,
    parse_facilitator_request,
)
from ..protocol.bazaar import parse_list_query, parse_search_query
from .bodies import BodyError, read_json_body
from .chain_clock import ChainClock, EmbeddedChain
from .guard import Admission, service_app

MAX_BODY_BYTES = 64 * 1024
RECEIPT_POLL_SECONDS = 0.05
MAX_IN_FLIGHT = 64  # verify/settle calls at work (on a remote chain they queue for its one thread)
MAX_WAITING = 1024
MAX_WAIT_SECONDS = 10.0


def _bad_request(problem: str) -> JSONResponse:
    return JSONResponse({"error": problem}, status_code=400)


def _answer(answer: VerifyResponse | SettleResponse) -> JSONResponse:
    """The JSON answer, with the ``EXTENSION-RESPONSES`` header when the role has something to say."""
    responses = answer.extension_responses
    text = json.dumps(responses, separators=(",", ":")).encode() if responses else b""
    headers = {EXTENSION_RESPONSES: base64.b64encode(text).decode("ascii")} if responses else None
    return JSONResponse(answer.to_wire(), headers=headers)


def facilitator_app(
    facilitator: Facilitator,
    *,
    clock: Callable[[], float] = time.time,
    chain_clock: ChainClock | None = None,
    automine: bool = True,
    settle_timeout: float = 30.0,
    max_body: int = MAX_BODY_BYTES,
    admission: Admission | None = None,
):
    """The facilitator's ASGI app. ``clock`` is the wall clock; on the embedded chain, services of
    the same chain share ``chain_clock`` (default: one following ``clock``)."""
    chain = facilitator.chain
    embedded = not chain.remote
    # Not remote means one of the embedded backends (LocalChain, LedgerChain), whose clock can be set;
    # the only remote backend is RpcChain. ``Chain`` itself says neither.
    chain_time = (chain_clock or ChainClock(cast(EmbeddedChain, chain), clock)) if embedded else None
    gate = admission or Admission(MAX_IN_FLIGHT, MAX_WAITING, MAX_WAIT_SECONDS)
    lock = asyncio.Lock()

    async def in_role(fn, *args):
        if embedded:
            return fn(*args)
        async with lock:
            return await asyncio.to_thread(fn, *args)

    async def now() -> int:
        if chain_time is not None:  # None exactly when the chain is remote
            return chain_time.sync()
        return await in_role(cast(RpcChain, chain).time, int(clock()))

    async def parsed(request: Request):
        try:
            return parse_facilitator_request(await read_json_body(request, max_body)), None
        except BodyError as exc:
            return None, _bad_request(exc.problem)
        except ProtocolError as exc:
            return None, _bad_request(str(exc))

    def admitted(endpoint):
        def busy() -> JSONResponse:
            return JSONResponse(
                {"error": "facilitator busy: too many requests in flight"},
                status_code=503,
                headers={"Retry-After": str(gate.retry_after)},
            )

        async def guarded(request: Request) -> JSONResponse:
            return await gate.admit(lambda: endpoint(request), busy)

        return guarded

    @admitted
    async def verify(request: Request) -> JSONResponse:
        body, error = await parsed(request)
        if error is not None:
            return error
        answer = await in_role(
            facilitator.verify, body.payment_payload, body.payment_requirements, await now()
        )
        return _answer(answer)

    @admitted
    async def settle(request: Request) -> JSONResponse:
        body, error = await parsed(request)
        if error is not None:
            return error
        outcome = await in_role(
            facilitator.begin_settle, body.payment_payload, body.payment_requirements, await now()
        )
        if isinstance(outcome, PendingSettlement):
            outcome = await _confirm(outcome)
        return _answer(outcome)

    async def _confirm(pending: PendingSettlement) -> SettleResponse:
        if chain_time is not None and automine:  # chain_time is None exactly when remote
            chain_time.sync()
            chain.mine()
        deadline = time.monotonic() + settle_timeout
        while True:
            receipt = await in_role(chain.receipt, pending.tx_hash)
            if receipt is not None:
                return await in_role(facilitator.finish_settle, pending, receipt)
            if time.monotonic() >= deadline:
                why = f"not confirmed within {settle_timeout} s"
                return await in_role(facilitator.abandon_settle, pending, why)
            await asyncio.sleep(RECEIPT_POLL_SECONDS)  # waiting on a chain, not synchronising a test

    async def supported(request: Request) -> JSONResponse:
        return JSONResponse(facilitator.supported().to_wire())

    async def discovery(request: Request) -> JSONResponse:
        catalog = facilitator.catalog
        if catalog is None:
            return JSONResponse({"error": "this facilitator keeps no Bazaar catalog"}, status_code=404)
        params = dict(request.query_params)
        try:
            if request.url.path.endswith("/search"):
                return JSONResponse(catalog.search(parse_search_query(params)).to_wire())
            return JSONResponse(catalog.list(parse_list_query(params)).to_wire())
        except ProtocolError as exc:
            return _bad_request(str(exc))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "address": facilitator.address, "network": chain.network, **gate.stats()}
        )

    return service_app(
        "facilitator",
        [
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
            Route("/supported", supported, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/discovery/resources", discovery, methods=["GET"]),
            Route("/discovery/search", discovery, methods=["GET"]),
        ],
    )
