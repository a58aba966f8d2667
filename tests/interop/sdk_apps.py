"""The official x402 Python SDK configured for a local chain: a client, a resource server and a facilitator.

Rules:

* Only the SDK's public API is used and nothing is added to its protocol logic, so every answer
  these apps give is the SDK's own decision. What a local chain needs is written out here, once:

  - **Network.** Schemes are registered for the one CAIP-2 network given (``eip155:31337``), v2 only:
    the SDK's registration helpers would also claim its v1 network names (``base-sepolia``, ...),
    which a local JSON-RPC endpoint cannot serve.
  - **Asset and price.** The SDK knows no default stablecoin for a local chain id, so a ``"$0.01"``
    price cannot be converted. The server prices with an explicit ``AssetAmount`` (atomic
    ``amount``, token ``asset``, ``extra`` holding the token's EIP-712 ``name`` and ``version``).
  - **Spend controls.** By default the SDK client pays only assets it knows (capped at $1); a local
    token must be listed in ``allowed_assets`` (here with an atomic cap).
  - **Signers.** The client signs with ``EthAccountSigner`` over an eth-account key; the facilitator
    uses ``FacilitatorWeb3Signer`` pointed at the chain's JSON-RPC URL (its key needs ether for gas).

* The facilitator's endpoints are plain ``def``: the SDK's web3 signer blocks on HTTP, so FastAPI
  runs them in its thread pool and the event loop (which may also serve the chain's JSON-RPC) stays
  free to answer the signer.
* The resource server's route configuration is checked (``initialize``) before the SDK middleware is
  built: on a configuration error the middleware ends the whole process, whereas the check raises.
"""

from __future__ import annotations

from eth_account import Account
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from x402 import x402Client, x402FacilitatorSync, x402ResourceServer
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    PaymentOption,
    RouteConfig,
    x402HTTPResourceServer,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm import EthAccountSigner, FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import (
    ExactEvmClientScheme,
    ExactEvmFacilitatorScheme,
    ExactEvmServerScheme,
)
from x402.schemas import AssetAmount, PaymentError, SettleRequest, VerifyRequest

FACILITATOR_TIMEOUT = 10.0  # seconds for the SDK's calls to a facilitator and its wait for a receipt


def _wire(model: BaseModel) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- client ---------------------------------------------------------------------------------------


def sdk_client(key: bytes, *, network: str, asset: str, max_amount: int) -> x402Client:
    """An SDK client paying ``exact`` on ``network`` with ``key``, allowed to spend up to
    ``max_amount`` atomic units of ``asset`` per payment."""
    client = x402Client()
    client.register(network, ExactEvmClientScheme(EthAccountSigner(Account.from_key(key))))
    client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": asset, "max_amount_per_payment": str(max_amount)}]}
    )
    return client


# -- facilitator ----------------------------------------------------------------------------------


def sdk_facilitator_signer(key: bytes, rpc_url: str) -> FacilitatorWeb3Signer:
    """The SDK's web3 facilitator signer for ``key`` on the chain behind ``rpc_url``."""
    return FacilitatorWeb3Signer(
        private_key="0x" + key.hex(), rpc_url=rpc_url, confirmation_timeout_seconds=FACILITATOR_TIMEOUT
    )


def sdk_facilitator_scheme(key: bytes, rpc_url: str) -> ExactEvmFacilitatorScheme:
    """The SDK's ``exact`` EVM facilitator scheme settling from ``key`` through ``rpc_url``."""
    return ExactEvmFacilitatorScheme(sdk_facilitator_signer(key, rpc_url))


def sdk_facilitator_app(key: bytes, rpc_url: str, network: str) -> FastAPI:
    """``POST /verify``, ``POST /settle`` and ``GET /supported`` answered by the SDK's facilitator.

    Bodies are the protocol's ``{x402Version, paymentPayload, paymentRequirements}`` (FastAPI answers
    422 when they do not parse); an error the SDK raises (no scheme registered for what the payment
    names, a hook abort) is HTTP 400 with ``{"error": ...}``."""
    facilitator = x402FacilitatorSync()
    facilitator.register([network], sdk_facilitator_scheme(key, rpc_url))
    return facilitator_http_app(facilitator)


def facilitator_http_app(facilitator: x402FacilitatorSync) -> FastAPI:
    """The HTTP face of an SDK ``facilitator`` (see ``sdk_facilitator_app``)."""
    app = FastAPI(title="x402 SDK facilitator")

    def answer(call, body: VerifyRequest | SettleRequest) -> JSONResponse:
        try:
            result = call(body.payment_payload, body.payment_requirements)
        except PaymentError as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        return JSONResponse(_wire(result))

    @app.post("/verify")
    def verify(body: VerifyRequest) -> JSONResponse:
        return answer(facilitator.verify, body)

    @app.post("/settle")
    def settle(body: SettleRequest) -> JSONResponse:
        return answer(facilitator.settle, body)

    @app.get("/supported")
    def supported() -> JSONResponse:
        return JSONResponse(_wire(facilitator.get_supported()))

    return app


# -- resource server ------------------------------------------------------------------------------


def sdk_resource_server_app(
    facilitator_url: str,
    *,
    network: str,
    asset: str,
    asset_name: str,
    asset_version: str,
    pay_to: str,
    amount: int,
    path: str = "/weather",
) -> FastAPI:
    """A FastAPI app selling ``GET path`` for ``amount`` atomic units of ``asset`` through the SDK's
    payment middleware, verifying and settling at ``facilitator_url``.

    Builds eagerly: the facilitator must already answer ``GET /supported``."""
    server = x402ResourceServer(
        HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, timeout=FACILITATOR_TIMEOUT))
    )
    server.register(network, ExactEvmServerScheme())
    price = AssetAmount(amount=str(amount), asset=asset, extra={"name": asset_name, "version": asset_version})
    routes = {
        f"GET {path}": RouteConfig(
            accepts=PaymentOption(scheme="exact", pay_to=pay_to, price=price, network=network),
            description="paid by x402sim interop tests",
            mime_type="application/json",
        )
    }
    x402HTTPResourceServer(server, routes).initialize()  # raises on a configuration error
    middleware = payment_middleware(routes, server)

    app = FastAPI(title="x402 SDK resource server")
    app.middleware("http")(middleware)

    @app.get(path)
    async def paid() -> dict:
        return {"resource": path, "paid": True}

    return app
