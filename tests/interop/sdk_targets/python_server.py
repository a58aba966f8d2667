"""A resource server built on the official Python x402 SDK (FastAPI payment middleware), as an e2e target.

Environment (the official e2e harness's): ``PORT``, ``FACILITATOR_URL``, ``EVM_NETWORK``,
``EVM_PAYEE_ADDRESS`` (or ``SERVER_EVM_ADDRESS``), ``PROTECTED_PATH``, ``SECOND_PROTECTED_PATH``,
``FAILING_PATH`` (a paid route whose handler answers 500), ``REDIRECT_PATH`` (one whose handler answers
303 to ``PROTECTED_PATH``); on the local chain also ``EVM_ASSET``,
``EVM_ASSET_NAME``, ``EVM_ASSET_VERSION`` and ``PRICE_ATOMIC``. ``FACILITATOR_TIMEOUT_SECONDS``, when
set, bounds each facilitator call (the SDK's own default is 90 s).

Configuration is the SDK's default: every route costs ``"$0.001"`` on ``EVM_NETWORK``, the exact EVM
scheme is registered with the SDK's helper, and the SDK picks its default USDC for the network. On
the local chain (``eip155:31337``), which has no default asset in the SDK, each route is priced with
an explicit ``AssetAmount`` (atomic amount, token, EIP-712 name and version) instead.
"""

from __future__ import annotations

import os

from _common import LOCAL_NETWORK, env, serve
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from x402 import x402ResourceServer
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    PaymentOption,
    RouteConfig,
    x402HTTPResourceServer,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.exact.register import register_exact_evm_server
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
routes = {
    f"GET {path}": RouteConfig(
        accepts=PaymentOption(scheme="exact", pay_to=pay_to, price=price, network=network),
        description="x402sim conformance target",
        mime_type="application/json",
    )
    for path in paths
}
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


serve(app, "Server listening")
