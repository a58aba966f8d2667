"""A resource server built on the official Python x402 SDK (FastAPI payment middleware), as an e2e target.

Environment (the official e2e harness's): ``PORT``, ``FACILITATOR_URL``, ``EVM_NETWORK``,
``EVM_PAYEE_ADDRESS`` (or ``SERVER_EVM_ADDRESS``), ``PROTECTED_PATH``, ``SECOND_PROTECTED_PATH``,
``FAILING_PATH`` (a paid route whose handler answers 500), ``REDIRECT_PATH`` (one whose handler answers
303 to ``PROTECTED_PATH``); on the local chain also ``EVM_ASSET``,
``EVM_ASSET_NAME``, ``EVM_ASSET_VERSION`` and ``PRICE_ATOMIC``. ``FACILITATOR_TIMEOUT_SECONDS``, when
set, bounds each facilitator call (the SDK's own default is 90 s).

``PERMIT2_PATH`` and ``UPTO_PATH`` (x402sim's additions), when set, add an exact route paid with
Permit2 (declaring both gas-sponsoring extensions, as the official e2e servers do) and an upto route
whose maximum is the price and whose handler charges the ``charge`` query parameter through the SDK's
``set_settlement_overrides``; both are priced in ``EVM_ASSET`` with its EIP-712 name and version
(``UptoEvmServerScheme`` is registered for the upto one).

``BATCH_PATH`` (x402sim's addition), when set, adds a ``batch-settlement`` route at ``PRICE_ATOMIC``
per request in ``EVM_ASSET``, paid to ``EVM_PAYEE_ADDRESS`` through the SDK's batch-settlement server
scheme in its default configuration: its channels in the SDK's in-memory storage, no receiver
authorizer of its own (so the offer's ``receiverAuthorizer`` is the one the facilitator's
``/supported`` names, and the facilitator signs the claims and refunds), the least withdraw delay the
contract allows, ``minDeposit`` advertised as the SDK's default. The SDK's channel manager is not run:
this server claims and settles nothing on its own.

Configuration is the SDK's default: every route costs ``"$0.001"`` on ``EVM_NETWORK``, the exact EVM
scheme is registered with the SDK's helper, and the SDK picks its default USDC for the network. On
the local chain (``eip155:31337``), which has no default asset in the SDK, each route is priced with
an explicit ``AssetAmount`` (atomic amount, token, EIP-712 name and version) instead.
"""

from __future__ import annotations

import os

from _common import LOCAL_NETWORK, env, serve
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from x402 import x402ResourceServer
from x402.extensions.eip2612_gas_sponsoring import declare_eip2612_gas_sponsoring_extension
from x402.extensions.erc20_approval_gas_sponsoring import declare_erc20_approval_gas_sponsoring_extension
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    PaymentOption,
    RouteConfig,
    x402HTTPResourceServer,
)
from x402.http.middleware.fastapi import payment_middleware, set_settlement_overrides
from x402.mechanisms.evm.batch_settlement.server import BatchSettlementEvmScheme as BatchServerScheme
from x402.mechanisms.evm.exact.register import register_exact_evm_server
from x402.mechanisms.evm.upto import UptoEvmServerScheme
from x402.schemas import AssetAmount

network = env("EVM_NETWORK")
pay_to = env("EVM_PAYEE_ADDRESS", "SERVER_EVM_ADDRESS")
paths = [env("PROTECTED_PATH"), env("SECOND_PROTECTED_PATH"), env("FAILING_PATH"), env("REDIRECT_PATH")]
if network == LOCAL_NETWORK:
    price = AssetAmount(
        amount=env("PRICE_ATOMIC"),
        asset=env("EVM_ASSET"),
        extra={"name": env("EVM_ASSET_NAME"), "version": env("EVM_ASSET_VERSION")},
    )
else:
    price = "$0.001"

timeout = os.environ.get("FACILITATOR_TIMEOUT_SECONDS")
bound = {"timeout": float(timeout)} if timeout else {}
server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=env("FACILITATOR_URL"), **bound)))
register_exact_evm_server(server)
server.register("eip155:*", UptoEvmServerScheme())  # beside the exact helper's eip155:*
routes = {
    f"GET {path}": RouteConfig(
        accepts=PaymentOption(scheme="exact", pay_to=pay_to, price=price, network=network),
        description="x402sim conformance target",
        mime_type="application/json",
    )
    for path in paths
}
permit2_path, upto_path = os.environ.get("PERMIT2_PATH", ""), os.environ.get("UPTO_PATH", "")
batch_path = os.environ.get("BATCH_PATH", "")


def permit2_price() -> AssetAmount:
    extra = {
        "name": env("EVM_ASSET_NAME"),
        "version": env("EVM_ASSET_VERSION"),
        "assetTransferMethod": "permit2",
    }
    return AssetAmount(amount=env("PRICE_ATOMIC"), asset=env("EVM_ASSET"), extra=extra)


if permit2_path:
    routes[f"GET {permit2_path}"] = RouteConfig(
        accepts=PaymentOption(scheme="exact", pay_to=pay_to, price=permit2_price(), network=network),
        description="x402sim conformance target (Permit2)",
        mime_type="application/json",
        extensions={
            **declare_eip2612_gas_sponsoring_extension(),
            **declare_erc20_approval_gas_sponsoring_extension(),
        },
    )
if upto_path:
    routes[f"GET {upto_path}"] = RouteConfig(
        accepts=PaymentOption(scheme="upto", pay_to=pay_to, price=permit2_price(), network=network),
        description="x402sim conformance target (upto)",
        mime_type="application/json",
    )
if batch_path:
    server.register("eip155:*", BatchServerScheme(pay_to))  # one receiver: this server's payTo
    batch_price = AssetAmount(
        amount=env("PRICE_ATOMIC"),
        asset=env("EVM_ASSET"),
        extra={"name": env("EVM_ASSET_NAME"), "version": env("EVM_ASSET_VERSION")},
    )
    routes[f"GET {batch_path}"] = RouteConfig(
        accepts=PaymentOption(scheme="batch-settlement", pay_to=pay_to, price=batch_price, network=network),
        description="x402sim conformance target (batch-settlement)",
        mime_type="application/json",
    )
x402HTTPResourceServer(server, routes).initialize()  # a configuration error raises here, before readiness

app = FastAPI()
app.middleware("http")(payment_middleware(routes, server))


@app.get(paths[0])
async def protected() -> dict:
    return {"resource": paths[0], "paid": True}


@app.get(paths[1])
async def second() -> dict:
    return {"resource": paths[1], "paid": True}


@app.get(paths[2])
async def failing() -> JSONResponse:
    return JSONResponse({"error": "the handler failed"}, status_code=500)


@app.get(paths[3])
async def redirect() -> RedirectResponse:
    return RedirectResponse(paths[0], status_code=303)


if permit2_path:

    @app.get(permit2_path)
    async def permit2() -> dict:
        return {"resource": permit2_path, "paid": True}


if upto_path:

    @app.get(upto_path)
    async def upto(request: Request, response: Response) -> dict:
        charge = request.query_params.get("charge")
        if charge is not None:
            set_settlement_overrides(response, {"amount": charge})
        return {"resource": upto_path, "paid": True}


if batch_path:

    @app.get(batch_path)
    async def batch() -> dict:
        return {"resource": batch_path, "paid": True}


serve(app, "Server listening")
