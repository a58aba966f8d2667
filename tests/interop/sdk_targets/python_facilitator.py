"""A facilitator built on the official Python x402 SDK (``x402FacilitatorSync``), as an e2e target.

Environment (the official e2e harness's): ``PORT``, ``EVM_NETWORK``, ``EVM_RPC_URL``,
``EVM_PRIVATE_KEY`` (or ``FACILITATOR_EVM_PRIVATE_KEY``; it pays the gas).

The exact EVM scheme (EIP-3009 and Permit2) is registered with the SDK's helper for ``EVM_NETWORK``
over the SDK's web3 signer with its default settings, the upto scheme with ``UptoEvmFacilitatorScheme``
over the same signer, the batch-settlement scheme with ``BatchSettlementEvmFacilitator`` over the
same signer, its receiver authorizer the facilitator's own key (a ``LocalAuthorizerSigner``: then
``/supported`` names that address as ``receiverAuthorizer``, and the facilitator signs the claims and
refunds a server sends unsigned; the harness hands a facilitator one key), and both gas-sponsoring
extensions as the official e2e facilitator registers them. The SDK leaves relaying a sponsored
approval to the operator (a ``send_transactions`` signer): ``Relay`` here does what the e2e
facilitator does, one transaction after the other: it sends the payer the ether its approval's gas
may cost (less what it holds), relays the approval, then sends the settlement, waiting for each.

Endpoints: ``POST /verify`` and ``POST /settle`` (bodies ``{x402Version, paymentPayload,
paymentRequirements}``; FastAPI answers 422 when they do not parse, an error the SDK raises is 400
``{"error": ...}``), ``GET /supported``, ``GET /health``, ``POST /close``. They are plain ``def`` (run
in the thread pool): the web3 signer blocks on HTTP.
"""

from __future__ import annotations

from _common import env, private_key, serve
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hexbytes import HexBytes
from pydantic import BaseModel
from web3 import Web3
from x402 import x402FacilitatorSync
from x402.extensions.eip2612_gas_sponsoring import EIP2612_GAS_SPONSORING
from x402.extensions.erc20_approval_gas_sponsoring import Erc20ApprovalFacilitatorExtension
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator
from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme
from x402.schemas import PaymentError, SettleRequest, VerifyRequest

network = env("EVM_NETWORK")
signer = FacilitatorWeb3Signer(private_key=private_key("facilitator"), rpc_url=env("EVM_RPC_URL"))
facilitator = register_exact_evm_facilitator(x402FacilitatorSync(), signer, networks=network)
facilitator.register([network], UptoEvmFacilitatorScheme(signer))
facilitator.register(
    [network], BatchSettlementEvmFacilitator(signer, LocalAuthorizerSigner(private_key("facilitator")))
)


class Relay:
    """The operator's ``send_transactions`` for sponsored approvals (see the module docstring)."""

    def __init__(self, signer: FacilitatorWeb3Signer, rpc_url: str) -> None:
        self.signer, self.w3 = signer, Web3(Web3.HTTPProvider(rpc_url))
        self.account = Account.from_key(private_key("facilitator"))

    def send_transactions(self, transactions) -> list[str]:
        hashes = []
        for tx in transactions:
            if isinstance(tx, str):
                self._fund_gas(tx)
                sent = self.w3.eth.send_raw_transaction(tx).hex()
            else:
                sent = self.signer.write_contract(tx.address, tx.abi, tx.function, *tx.args)
            sent = sent if sent.startswith("0x") else "0x" + sent
            receipt = self.signer.wait_for_transaction_receipt(sent)
            if receipt.status != 1:
                raise RuntimeError(f"transaction_failed: {sent}")
            hashes.append(sent)
        return hashes

    def _fund_gas(self, raw: str) -> None:
        payer = Account.recover_transaction(raw)
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        cost = int(fields.get("gas", 70_000)) * int(fields.get("maxFeePerGas", 10**9))
        deficit = cost - self.w3.eth.get_balance(payer)
        if deficit > 0:
            funding = {
                "to": payer,
                "value": deficit,
                "gas": 21_000,
                "gasPrice": self.w3.eth.gas_price,
                "nonce": self.signer._reserve_nonce(),
                "chainId": self.w3.eth.chain_id,
            }
            signed = self.account.sign_transaction(funding)
            sent = self.w3.eth.send_raw_transaction(signed.raw_transaction).hex()
            self.signer.wait_for_transaction_receipt(sent if sent.startswith("0x") else "0x" + sent)

    def wait_for_transaction_receipt(self, tx_hash: str):
        return self.signer.wait_for_transaction_receipt(tx_hash)


facilitator.register_extension(EIP2612_GAS_SPONSORING)
facilitator.register_extension(Erc20ApprovalFacilitatorExtension(signer=Relay(signer, env("EVM_RPC_URL"))))


def wire(model: BaseModel) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def answer(call, body: VerifyRequest | SettleRequest) -> JSONResponse:
    try:
        result = call(body.payment_payload, body.payment_requirements)
    except PaymentError as exc:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
    return JSONResponse(wire(result))


app = FastAPI()


@app.post("/verify")
def verify(body: VerifyRequest) -> JSONResponse:
    return answer(facilitator.verify, body)


@app.post("/settle")
def settle(body: SettleRequest) -> JSONResponse:
    return answer(facilitator.settle, body)


@app.get("/supported")
def supported() -> JSONResponse:
    return JSONResponse(wire(facilitator.get_supported()))


serve(app, "Facilitator listening")
