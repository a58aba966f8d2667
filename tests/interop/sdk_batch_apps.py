"""The official x402 Python SDK's batch-settlement side on a local chain: its facilitator (settling
through the chain's JSON-RPC, signing claims and refunds as the receiver authorizer it advertises),
and a FastAPI resource server selling ``GET /feed`` through channels, with the SDK's channel manager
to claim and settle what it served.

Rules (beyond those of ``sdk_apps``, whose conventions these follow):

* **Facilitator.** The SDK's facilitator scheme is given a ``LocalAuthorizerSigner``: then its
  ``/supported`` names that key's address as ``receiverAuthorizer`` and it signs the claims and
  refunds the server sends without a signature (the delegated mode, as x402sim's facilitator).
* **Server.** The route is priced in atomic units of the local token (``AssetAmount`` with the token's
  EIP-712 name and version); the scheme is built with the withdraw delay the tests name. The
  channel manager is driven by the test (``claim``, ``settle``), not by its timers.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from fastapi import FastAPI
from x402 import x402FacilitatorSync, x402ResourceServer
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    HTTPFacilitatorClientSync,
    PaymentOption,
    RouteConfig,
    x402HTTPResourceServer,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.facilitator import (
    BatchSettlementEvmFacilitator as FacilitatorScheme,
)
from x402.mechanisms.evm.batch_settlement.server import (
    BatchSettlementChannelManagerSync,
    BatchSettlementEvmSchemeServerConfig,
    ChannelManagerConfigSync,
)
from x402.mechanisms.evm.batch_settlement.server import BatchSettlementEvmScheme as ServerScheme
from x402.schemas import AssetAmount

from tests.interop.sdk_apps import FACILITATOR_TIMEOUT, facilitator_http_app, sdk_facilitator_signer


def sdk_batch_facilitator(key: bytes, authorizer_key: bytes, rpc_url: str, network: str) -> FastAPI:
    """The SDK's batch-settlement facilitator (transactions from ``key``, claims and refunds
    authorized by ``authorizer_key``) behind ``sdk_apps``' HTTP face."""
    facilitator = x402FacilitatorSync()
    scheme = FacilitatorScheme(
        sdk_facilitator_signer(key, rpc_url), LocalAuthorizerSigner(Account.from_key(authorizer_key))
    )
    facilitator.register([network], scheme)
    return facilitator_http_app(facilitator)


@dataclass
class SdkBatchServer:
    app: FastAPI
    manager: BatchSettlementChannelManagerSync


def sdk_batch_server(
    facilitator_url: str,
    *,
    network: str,
    asset: str,
    asset_name: str,
    asset_version: str,
    pay_to: str,
    price: int,
    withdraw_delay: int,
) -> SdkBatchServer:
    """A FastAPI app selling ``GET /feed`` for ``price`` through channels to ``pay_to``, and the
    SDK's channel manager for its channels. Builds eagerly: the facilitator must answer now."""
    scheme = ServerScheme(pay_to, BatchSettlementEvmSchemeServerConfig(withdraw_delay=withdraw_delay))
    server = x402ResourceServer(
        HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, timeout=FACILITATOR_TIMEOUT))
    )
    server.register(network, scheme)
    amount = AssetAmount(amount=str(price), asset=asset, extra={"name": asset_name, "version": asset_version})
    routes = {
        "GET /feed": RouteConfig(
            accepts=PaymentOption(scheme="batch-settlement", pay_to=pay_to, price=amount, network=network),
            mime_type="application/json",
        )
    }
    x402HTTPResourceServer(server, routes).initialize()  # raises on a configuration error
    app = FastAPI(title="x402 SDK batch-settlement resource server")
    app.middleware("http")(payment_middleware(routes, server))

    @app.get("/feed")
    async def feed() -> dict:
        return {"paid": True}

    manager = BatchSettlementChannelManagerSync(
        ChannelManagerConfigSync(
            scheme=scheme,
            facilitator=HTTPFacilitatorClientSync(
                FacilitatorConfig(url=facilitator_url, timeout=FACILITATOR_TIMEOUT)
            ),
            receiver=pay_to,
            token=asset,
            network=network,
        )
    )
    return SdkBatchServer(app, manager)
