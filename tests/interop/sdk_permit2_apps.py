"""The official x402 Python SDK's Permit2 side on a local chain: a client paying exact/Permit2 and upto,
a facilitator settling both with the two gas-sponsoring extensions, and a FastAPI server selling them.

Rules (beyond those of ``sdk_apps``, whose conventions these follow):

* **Client.** The SDK signs a gas-sponsoring extension only when its signer can read the chain
  (allowance, EIP-2612 nonce) and sign transactions: ``EthAccountSignerWithRPC`` over the chain's
  JSON-RPC URL. The same signer serves the exact and the upto client schemes.
* **Facilitator.** The SDK registers ``eip2612GasSponsoring`` as a plain key; ``erc20ApprovalGasSponsoring``
  needs an operator-supplied signer with ``send_transactions``. ``GasTank`` is that operator part,
  written as the x402 e2e facilitators write theirs: fund the payer's gas deficit (``gas *
  maxFeePerGas`` of its approval) from a separate funding wallet, relay the payer's raw approval, then
  send the settle call through the SDK's own signer, each waited for; sequential, not atomic.
* **Server.** Routes are priced in atomic units of the local token (``AssetAmount``); Permit2 routes
  name ``assetTransferMethod`` and declare the extension they accept; the upto route's handler
  names the charge with the SDK's ``set_settlement_overrides`` (from the ``charge`` query parameter).
"""

from __future__ import annotations

import functools
import time

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from fastapi import FastAPI, Response
from hexbytes import HexBytes
from x402 import x402Client, x402FacilitatorSync, x402ResourceServer
from x402.extensions.eip2612_gas_sponsoring import (
    EIP2612_GAS_SPONSORING,
    declare_eip2612_gas_sponsoring_extension,
)
from x402.extensions.erc20_approval_gas_sponsoring import (
    Erc20ApprovalFacilitatorExtension,
    declare_erc20_approval_gas_sponsoring_extension,
)
from x402.extensions.erc20_approval_gas_sponsoring.types import WriteContractCall
from x402.http import (
    FacilitatorConfig,
    HTTPFacilitatorClient,
    PaymentOption,
    RouteConfig,
    x402HTTPResourceServer,
)
from x402.http.middleware.fastapi import payment_middleware, set_settlement_overrides
from x402.mechanisms.evm import EthAccountSignerWithRPC
from x402.mechanisms.evm.exact import ExactEvmClientScheme, ExactEvmFacilitatorScheme, ExactEvmServerScheme
from x402.mechanisms.evm.upto import UptoEvmClientScheme, UptoEvmFacilitatorScheme, UptoEvmServerScheme
from x402.schemas import AssetAmount

from tests.interop.permit2_rig import EXACT_PRICE, UPTO_MAX
from tests.interop.sdk_apps import FACILITATOR_TIMEOUT, facilitator_http_app, sdk_facilitator_signer
from x402sim.evm import address_of_key
from x402sim.evm.rpc_chain import RpcChain
from x402sim.evm.txsign import GWEI, sign_eip1559


def sdk_permit2_client(key: bytes, rpc_url: str, *, network: str, asset: str, max_amount: int) -> x402Client:
    """An SDK client paying exact (EIP-3009 or Permit2) and upto on ``network``, reading the chain at
    ``rpc_url`` for its Permit2 allowance and the gas-sponsoring extensions."""
    signer = EthAccountSignerWithRPC(Account.from_key(key), rpc_url)
    client = x402Client()
    client.register(network, ExactEvmClientScheme(signer))
    client.register(network, UptoEvmClientScheme(signer))
    client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": asset, "max_amount_per_payment": str(max_amount)}]}
    )
    return client


class GasTank:
    """The operator's ``send_transactions`` for the ERC-20 approval extension (see the module's rules):
    ``funder`` pays payers' gas, ``settler`` (the SDK's facilitator signer) sends the settle call."""

    def __init__(self, funder_key: bytes, rpc_url: str, settler) -> None:
        self.funder_key, self.funder = funder_key, address_of_key(funder_key)
        self.rpc_url = rpc_url
        self.settler = settler
        self.funded: list[tuple[str, int]] = []  # (payer, wei) of each top-up, for the tests to read

    @functools.cached_property
    def chain(self) -> RpcChain:  # made when first used: the chain's service may start after this
        return RpcChain(self.rpc_url)

    def _mined(self, tx_hash: bytes) -> str:
        deadline = time.monotonic() + FACILITATOR_TIMEOUT
        while (receipt := self.chain.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"transaction_failed: 0x{tx_hash.hex()} not mined")
            time.sleep(0.05)  # waiting on the chain's block
        if not receipt.success:
            raise RuntimeError(f"transaction_failed: 0x{tx_hash.hex()}")
        return "0x" + tx_hash.hex()

    def _relay(self, raw_hex: str) -> str:
        raw = bytes.fromhex(raw_hex.removeprefix("0x"))
        payer = Account.recover_transaction(raw)
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        cost = int(fields.get("gas", 70_000)) * int(fields.get("maxFeePerGas", GWEI))
        deficit = cost - self.chain.eth_balance(payer)
        if deficit > 0:
            top_up = sign_eip1559(
                self.funder_key,
                chain_id=self.chain.chain_id,
                nonce=self.chain.pending_nonce(self.funder),
                gas=21_000,
                max_fee_per_gas=2 * self.chain.base_fee + GWEI,
                max_priority_fee_per_gas=0,
                to=payer,
                value=deficit,
            )
            self._mined(self.chain.send_raw_transaction(top_up.raw))
            self.funded.append((payer, deficit))
        return self._mined(self.chain.send_raw_transaction(raw))

    def send_transactions(self, transactions: list) -> list[str]:
        hashes = []
        for tx in transactions:
            if isinstance(tx, str):
                hashes.append(self._relay(tx))
            else:
                call = tx if isinstance(tx, WriteContractCall) else WriteContractCall(**tx)
                tx_hash = self.settler.write_contract(call.address, call.abi, call.function, *call.args)
                receipt = self.settler.wait_for_transaction_receipt(tx_hash)
                if receipt.status != 1:
                    raise RuntimeError(f"transaction_failed: {tx_hash}")
                hashes.append(tx_hash)
        return hashes

    def wait_for_transaction_receipt(self, tx_hash: str):
        return self.settler.wait_for_transaction_receipt(tx_hash)


def sdk_permit2_facilitator(key: bytes, funder_key: bytes, rpc_url: str, network: str):
    """The SDK facilitator for exact (EIP-3009 and Permit2) and upto with both gas-sponsoring
    extensions, its HTTP app, and its ``GasTank``."""
    signer = sdk_facilitator_signer(key, rpc_url)
    tank = GasTank(funder_key, rpc_url, signer)
    facilitator = x402FacilitatorSync()
    facilitator.register([network], ExactEvmFacilitatorScheme(signer))
    facilitator.register([network], UptoEvmFacilitatorScheme(signer))
    facilitator.register_extension(EIP2612_GAS_SPONSORING)
    facilitator.register_extension(Erc20ApprovalFacilitatorExtension(signer=tank))
    return facilitator_http_app(facilitator), tank


def sdk_permit2_server_app(
    facilitator_url: str, *, network: str, asset: str, asset_name: str, asset_version: str, pay_to: str
) -> FastAPI:
    """A FastAPI app with the SDK's middleware selling, through ``facilitator_url``:

    * ``GET /p2`` exact/Permit2 at ``EXACT_PRICE``, no extension (the payer must have approved Permit2);
    * ``GET /p2-eip2612`` and ``GET /p2-erc20`` the same, declaring one gas-sponsoring extension each
      (the ERC-20 one without the token's name and version, as the x402 e2e server does);
    * ``GET /upto`` upto for at most ``UPTO_MAX``, declaring EIP-2612 sponsoring, charged the ``charge``
      query parameter (default the maximum) through ``Settlement-Overrides``."""
    server = x402ResourceServer(
        HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, timeout=FACILITATOR_TIMEOUT))
    )
    server.register(network, ExactEvmServerScheme())
    server.register(network, UptoEvmServerScheme())
    named = {"name": asset_name, "version": asset_version, "assetTransferMethod": "permit2"}

    def route(scheme: str, amount: int, extra: dict, extensions: dict | None) -> RouteConfig:
        price = AssetAmount(amount=str(amount), asset=asset, extra=extra)
        option = PaymentOption(scheme=scheme, pay_to=pay_to, price=price, network=network)
        return RouteConfig(accepts=option, mime_type="application/json", extensions=extensions)

    routes = {
        "GET /p2": route("exact", EXACT_PRICE, named, None),
        "GET /p2-eip2612": route("exact", EXACT_PRICE, named, declare_eip2612_gas_sponsoring_extension()),
        "GET /p2-erc20": route(
            "exact",
            EXACT_PRICE,
            {"assetTransferMethod": "permit2"},
            declare_erc20_approval_gas_sponsoring_extension(),
        ),
        "GET /upto": route("upto", UPTO_MAX, named, declare_eip2612_gas_sponsoring_extension()),
    }
    x402HTTPResourceServer(server, routes).initialize()  # raises on a configuration error
    app = FastAPI(title="x402 SDK Permit2 resource server")
    app.middleware("http")(payment_middleware(routes, server))

    for path in ("/p2", "/p2-eip2612", "/p2-erc20"):
        app.get(path)(lambda: {"paid": True})

    @app.get("/upto")
    async def upto(response: Response, charge: str | None = None) -> dict:
        if charge is not None:
            set_settlement_overrides(response, {"amount": charge})
        return {"paid": True, "metered": charge}

    return app
