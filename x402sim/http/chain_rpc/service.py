"""The JSON-RPC service: the HTTP envelope around the methods, and ``chain_rpc_app``.

``_ChainRpc`` is one served chain (``state.ServedChain``: its clock, block producer, lookups and call
simulation) with its HTTP endpoint (body size limits, JSON parsing, batches, notifications, errors
as JSON-RPC answers) and dispatch to the ``methods`` table. ``chain_rpc_app`` wraps it in a
Starlette app answering ``POST /``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from x402sim.evm.chain import LocalChain
from x402sim.protocol import ProtocolError, parse_json

from ..chain_clock import ChainClock
from ..guard import service_app
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RESPONSE_TOO_LARGE,
    RpcError,
)
from .methods import METHODS
from .params import Params
from .state import ServedChain

log = logging.getLogger(__package__)  # "x402sim.http.chain_rpc", as before the split

MAX_BODY = 1 << 20  # bytes of one HTTP request body
DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read and dropped before the 413
MAX_BATCH = 1000  # calls in one batch (geth's default)
MAX_RESPONSE_BYTES = 10 << 20  # bytes of answers in one response; later calls of a batch are refused


class _ChainRpc(ServedChain):
    """A served chain with its JSON-RPC endpoint: the HTTP envelope, batches, notifications, errors as
    JSON-RPC answers, and dispatch to the ``methods`` table."""

    # -- HTTP ---------------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        try:
            self.start_producer()
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > DRAIN_LIMIT:
                return _too_large()  # not worth reading; the connection closes after the answer
            body, size = bytearray(), 0
            async for chunk in request.stream():
                size += len(chunk)
                if size <= MAX_BODY:
                    body += chunk
                elif size > DRAIN_LIMIT:
                    break
            if size > MAX_BODY:
                return _too_large()
            return await self.answer_body(bytes(body))
        except ClientDisconnect:
            return Response(status_code=204)
        except Exception:  # never a 500: the caller gets a JSON-RPC internal error
            log.exception("chain RPC: unexpected failure")
            return _json(_error_answer(None, RpcError(INTERNAL_ERROR, "internal error")))

    async def answer_body(self, body: bytes) -> Response:
        try:
            message = parse_json(body, "body")
        except ProtocolError as exc:
            return _json(_error_answer(None, RpcError(PARSE_ERROR, f"parse error: {exc}")))
        if isinstance(message, list):
            if not message:
                return _json(_error_answer(None, RpcError(INVALID_REQUEST, "invalid request: empty batch")))
            if len(message) > MAX_BATCH:
                why = f"invalid request: a batch holds at most {MAX_BATCH} calls, got {len(message)}"
                return _json(_error_answer(None, RpcError(INVALID_REQUEST, why)))
            encoded, size = [], 0
            for call in message:
                # Between calls the loop serves everyone else: a long batch costs its sender time,
                # not the other services (they share this loop).
                await asyncio.sleep(0)
                text = _encode(self.answer(call) if size <= MAX_RESPONSE_BYTES else _too_much(call))
                if text is not None:
                    encoded.append(text)
                    size += len(text)
            if not encoded:
                return Response(status_code=204)
            return _json_text("[" + ",".join(encoded) + "]")
        text = _encode(self.answer(message))
        if text is not None and len(text) > MAX_RESPONSE_BYTES:
            text = _encode(_too_much(message))
        return _json_text(text) if text is not None else Response(status_code=204)

    def answer(self, call: Any) -> dict | None:
        """The answer to one call, or None for a notification (a call without ``id``)."""
        if not isinstance(call, dict):
            return _error_answer(None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON object"))
        rid = call.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int | float)):
            why = "invalid request: id must be a string, a number or null"
            return _error_answer(None, RpcError(INVALID_REQUEST, why))
        if call.get("jsonrpc") != "2.0":
            return _error_answer(rid, RpcError(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"'))
        method = call.get("method")
        if not isinstance(method, str):
            return _error_answer(rid, RpcError(INVALID_REQUEST, "invalid request: method must be a string"))
        params = call.get("params", [])
        if params is None:
            params = []
        try:
            self.clock.sync()
            answer = {"jsonrpc": "2.0", "id": rid, "result": self.dispatch(method, params)}
        except RpcError as exc:
            answer = _error_answer(rid, exc)
        except Exception:
            log.exception("chain RPC: %s failed", method)
            answer = _error_answer(rid, RpcError(INTERNAL_ERROR, f"internal error in {method}"))
        return answer if "id" in call else None  # a notification gets no answer, not even an error

    def dispatch(self, method: str, params: Any) -> Any:
        entry = METHODS.get(method)
        if entry is None:
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        if isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, f"invalid params for {method}: params must be an array")
        if not isinstance(params, list):
            raise RpcError(INVALID_REQUEST, "invalid request: params must be an array")
        handler, arity = entry
        if len(params) > arity:
            raise RpcError(
                INVALID_PARAMS,
                f"invalid params for {method}: takes at most {arity} params, got {len(params)}",
            )
        return handler(self, Params(method, params))


def _encode(answer: dict | None) -> str | None:
    return None if answer is None else json.dumps(answer, separators=(",", ":"), allow_nan=False)


def _json_text(text: str) -> Response:
    return Response(text.encode(), media_type="application/json")


def _too_much(call: Any) -> dict | None:
    """The answer to a call whose result would take the response past ``MAX_RESPONSE_BYTES``."""
    if not isinstance(call, dict) or "id" not in call:
        return None
    why = f"response too large: an answer holds at most {MAX_RESPONSE_BYTES} bytes"
    return _error_answer(call.get("id"), RpcError(RESPONSE_TOO_LARGE, why))


def _too_large() -> Response:
    error = RpcError(INVALID_REQUEST, f"request body exceeds {MAX_BODY} bytes")
    return _json(_error_answer(None, error), status=413)


def _error_answer(rid: Any, error: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": error.to_json()}


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json")


# -- the app ----------------------------------------------------------------------------------------


def chain_rpc_app(
    chain: LocalChain,
    *,
    automine: bool = True,
    block_time: float | None = None,
    clock: Callable[[], float] | None = None,
    chain_clock: ChainClock | None = None,
    accounts: Sequence[Mapping[str, Any]] = (),
):
    """Serve ``chain`` as Ethereum JSON-RPC at ``POST /`` (see the package docstring for the rules).

    ``clock`` is the wall clock the chain follows (None: time moves only when told); services of the
    same chain pass one shared ``chain_clock`` instead. ``accounts`` are the funded test accounts to
    publish through ``x402sim_accounts`` (each a JSON object, e.g. ``address``, ``private_key``,
    ``usdc``); they are test keys, never real ones.
    """
    if block_time is not None and not block_time > 0:
        raise ValueError(f"block_time must be a positive number of seconds, got {block_time!r}")
    time_source = chain_clock or ChainClock(chain, clock)
    rpc = _ChainRpc(chain, automine=automine, block_time=block_time, clock=time_source)
    rpc.accounts = [dict(a) for a in accounts]
    json.dumps(rpc.accounts)  # fail here, not in a handler, if they cannot be sent

    @contextlib.asynccontextmanager
    async def lifespan(app):
        rpc.start_producer()
        try:
            yield
        finally:
            await rpc.stop_producer()

    app = service_app("chain RPC", [Route("/", rpc.endpoint, methods=["POST"])], lifespan=lifespan)
    app.state.rpc = rpc
    return app
