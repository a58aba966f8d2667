"""An independent x402 v2 facilitator: ``exact`` on one EVM network with EIP-3009, over JSON-RPC.

``facilitator_app(env)`` reads the e2e variables (``EVM_NETWORK``, ``EVM_RPC_URL``,
``FACILITATOR_EVM_PRIVATE_KEY`` or ``EVM_PRIVATE_KEY``) and returns an ASGI app with
``GET /supported``, ``POST /verify`` and ``POST /settle``.

Decisions, with where they come from:

* A body that is not the request the specification describes (core spec section 7: ``x402Version``
  2, a ``PaymentPayload``, a ``PaymentRequirements``) is answered 400 with the protocol answer
  (``isValid``/``success`` false) and reason ``invalid_payload``, ``invalid_payment_requirements``
  or ``invalid_x402_version`` (the reasons of spec section 9), plus an ``error`` naming the field.
* The payment is judged against ``paymentRequirements`` (what the server asked), never against
  ``accepted``; ``accepted`` must only name the same scheme and network.
* Verification (exact EVM spec, "Verification Logic"; core spec 6.1.2): scheme, network, the
  token's EIP-712 domain in ``extra``, recipient, exact amount, validity window (``validAfter`` not
  in the future, ``validBefore`` at least ``MIN_VALIDITY`` seconds ahead), a low-s signature
  recovering to ``from`` over the token's domain, the asset being a contract, balance, unused
  nonce, and a simulation of ``transferWithAuthorization`` (``eth_call``). ``/verify`` only reads.
* Settlement verifies again, then sends ``transferWithAuthorization`` from the facilitator's key
  and accepts only a successful receipt holding the ``Transfer`` the payment authorises. Sends are
  serialised (one account nonce). A receipt not seen within ``SETTLE_TIMEOUT`` answers
  ``settlement_pending`` with the transaction hash; settling the same payment again then reports
  that transaction instead of sending another.
* A chain that fails mid-answer gives 500 with ``unexpected_verify_error`` /
  ``unexpected_settle_error`` and no detail (spec section 4: server error).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .wire import (
    ADDRESS,
    BYTES32,
    SIGNATURE,
    Malformed,
    chain_id,
    integer,
    obj,
    text,
    transfer_typed_data,
    uint,
)

MIN_VALIDITY = 6  # seconds a settlement needs: a block or two
SETTLE_TIMEOUT = 10.0
RECEIPT_POLL = 0.05
GAS_LIMIT = 200_000
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


TRANSFER_WITH_AUTHORIZATION = _selector(
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
)
BALANCE_OF = _selector("balanceOf(address)")
AUTHORIZATION_STATE = _selector("authorizationState(address,bytes32)")


class Invalid(Exception):
    """The payment is well formed but not acceptable; ``reason`` is the spec's code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChainFailure(Exception):
    """The chain did not answer as a JSON-RPC node should."""


class Rpc:
    """JSON-RPC 2.0 over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=10.0)
        self.ids = 0

    async def answer(self, method: str, params: list) -> dict:
        """The node's whole JSON-RPC answer (``result`` or ``error``)."""
        self.ids += 1
        request = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        try:
            answer = (await self.http.post(self.url, json=request)).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ChainFailure(method) from exc
        if not isinstance(answer, dict) or ("result" not in answer and answer.get("error") is None):
            raise ChainFailure(method)
        return answer

    async def __call__(self, method: str, *params: Any) -> Any:
        answer = await self.answer(method, list(params))
        if "result" not in answer:
            raise ChainFailure(method)
        return answer["result"]

    async def call(self, to: str, data: bytes, sender: str | None = None) -> bytes | None:
        """``eth_call``; None when it reverts."""
        message = {"to": to, "data": "0x" + data.hex(), **({"from": sender} if sender else {})}
        answer = await self.answer("eth_call", [message, "latest"])
        if answer.get("error") is not None:
            return None
        return bytes.fromhex(str(answer.get("result") or "0x")[2:])


class Payment:
    """A /verify or /settle request body, read strictly."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise Malformed("the body is not a JSON object")
        version = body.get("x402Version")
        if isinstance(version, bool) or version != 2:
            raise Malformed("x402Version is not 2", "invalid_x402_version")
        payload = obj(body, "paymentPayload", "body")
        if isinstance(payload.get("x402Version"), bool) or payload.get("x402Version") != 2:
            raise Malformed("paymentPayload.x402Version is not 2", "invalid_x402_version")
        self.requirements = self._requirements(body)
        accepted = obj(payload, "accepted", "paymentPayload")
        self.accepted = (text(accepted, "scheme", "accepted"), text(accepted, "network", "accepted"))
        scheme_payload = obj(payload, "payload", "paymentPayload")
        self.signature = text(scheme_payload, "signature", "payload", SIGNATURE)
        authorization = obj(scheme_payload, "authorization", "payload")
        where = "payload.authorization"
        self.payer = to_checksum_address(text(authorization, "from", where, ADDRESS))
        self.to = to_checksum_address(text(authorization, "to", where, ADDRESS))
        self.value = uint(authorization, "value", where)
        self.valid_after = uint(authorization, "validAfter", where)
        self.valid_before = uint(authorization, "validBefore", where)
        self.nonce = text(authorization, "nonce", where, BYTES32).lower()

    @staticmethod
    def _requirements(body: dict) -> dict:
        try:
            found = obj(body, "paymentRequirements", "body")
            where = "paymentRequirements"
            extra = found.get("extra", {})
            if not isinstance(extra, dict):
                raise Malformed(f"{where}.extra is not an object")
            return {
                "scheme": text(found, "scheme", where),
                "network": text(found, "network", where),
                "amount": uint(found, "amount", where),
                "asset": to_checksum_address(text(found, "asset", where, ADDRESS)),
                "payTo": to_checksum_address(text(found, "payTo", where, ADDRESS)),
                "maxTimeoutSeconds": integer(found, "maxTimeoutSeconds", where),
                "extra": extra,
            }
        except Malformed as exc:
            raise Malformed(str(exc), "invalid_payment_requirements") from None

    def transfer_call(self) -> bytes:
        raw = bytes.fromhex(self.signature[2:])
        v = raw[64] if raw[64] >= 27 else raw[64] + 27
        arguments = encode(
            ["address", "address", "uint256", "uint256", "uint256", "bytes32", "uint8", "bytes32", "bytes32"],
            [
                self.payer,
                self.to,
                self.value,
                self.valid_after,
                self.valid_before,
                bytes.fromhex(self.nonce[2:]),
                v,
                raw[:32],
                raw[32:64],
            ],
        )
        return TRANSFER_WITH_AUTHORIZATION + arguments


class IndependentFacilitator:
    def __init__(self, network: str, rpc_url: str, key: str) -> None:
        self.network = network
        self.chain_id = chain_id(network)
        self.rpc = Rpc(rpc_url)
        self.account = Account.from_key(key)
        self.send_lock = asyncio.Lock()
        self.pending: dict[tuple[str, str], str] = {}  # (payer, nonce) -> a hash answered as pending

    # -- verification ------------------------------------------------------------------------------

    def check_terms(self, p: Payment) -> None:
        """Everything that needs no chain: Invalid with the reason when a term is wrong."""
        r = p.requirements
        if r["scheme"] != "exact" or p.accepted[0] != r["scheme"]:
            raise Invalid("unsupported_scheme")
        if r["network"] != self.network or p.accepted[1] != r["network"]:
            raise Invalid("invalid_network")
        name, version = r["extra"].get("name"), r["extra"].get("version")
        if not (isinstance(name, str) and name and isinstance(version, str) and version):
            raise Invalid("invalid_payment_requirements")
        if r["extra"].get("assetTransferMethod", "eip3009") != "eip3009":
            raise Invalid("unsupported_scheme")
        if p.to != r["payTo"]:
            raise Invalid("invalid_exact_evm_payload_recipient_mismatch")
        if p.value != r["amount"]:
            raise Invalid("invalid_exact_evm_payload_authorization_value_mismatch")
        now = int(time.time())
        if p.valid_after > now:
            raise Invalid("invalid_exact_evm_payload_authorization_valid_after")
        if p.valid_before < now + MIN_VALIDITY:
            raise Invalid("invalid_exact_evm_payload_authorization_valid_before")
        raw = bytes.fromhex(p.signature[2:])
        if int.from_bytes(raw[32:64], "big") > SECP256K1_N // 2 or raw[64] not in (0, 1, 27, 28):
            raise Invalid("invalid_exact_evm_payload_signature")
        message = transfer_typed_data(
            name,
            version,
            self.chain_id,
            r["asset"],
            {
                "from": p.payer,
                "to": p.to,
                "value": p.value,
                "validAfter": p.valid_after,
                "validBefore": p.valid_before,
                "nonce": p.nonce,
            },
        )
        try:
            signer = Account.recover_message(encode_typed_data(full_message=message), signature=raw)
        except Exception:  # eth-account raises several types for unrecoverable bytes
            raise Invalid("invalid_exact_evm_payload_signature") from None
        if signer != p.payer:
            raise Invalid("invalid_exact_evm_payload_signature")

    async def check_chain(self, p: Payment) -> None:
        asset = p.requirements["asset"]
        if await self.rpc("eth_getCode", asset, "latest") in ("0x", "0x0", None):
            raise Invalid("invalid_payment_requirements")
        balance = await self.rpc.call(asset, BALANCE_OF + encode(["address"], [p.payer]))
        if balance is None or len(balance) != 32:
            raise Invalid("invalid_transaction_state")
        if int.from_bytes(balance, "big") < p.value:
            raise Invalid("insufficient_funds")
        state = await self.rpc.call(
            asset, AUTHORIZATION_STATE + encode(["address", "bytes32"], [p.payer, bytes.fromhex(p.nonce[2:])])
        )
        if state is None or len(state) != 32:
            raise Invalid("invalid_transaction_state")
        if int.from_bytes(state, "big") != 0:
            raise Invalid("invalid_exact_evm_nonce_already_used")
        if await self.rpc.call(asset, p.transfer_call(), self.account.address) is None:
            raise Invalid(await self.why_refused(p))

    async def why_refused(self, p: Payment) -> str:
        """The reason for a simulation the token refused: a signature over another EIP-712 domain
        than the token's (its ``name()`` or ``version()`` differ from ``extra``) is an invalid
        signature; anything else, a transaction that would fail."""
        extra = p.requirements["extra"]
        for field in ("name", "version"):
            answer = await self.rpc.call(p.requirements["asset"], _selector(f"{field}()"))
            try:
                actual = decode(["string"], answer or b"")[0]
            except Exception:  # eth-abi raises several types for bytes that are no string
                continue
            if actual != extra[field]:
                return "invalid_exact_evm_payload_signature"
        return "invalid_transaction_state"

    async def verify(self, p: Payment) -> None:
        self.check_terms(p)
        await self.check_chain(p)

    # -- settlement --------------------------------------------------------------------------------

    async def settle(self, p: Payment) -> tuple[bool, str, str | None]:
        """(success, transaction hash or "", error reason)."""
        async with self.send_lock:
            key = (p.payer, p.nonce)
            if key in self.pending:
                return await self.outcome(p, self.pending[key])
            await self.verify(p)
            transaction = {
                "to": p.requirements["asset"],
                "data": "0x" + p.transfer_call().hex(),
                "value": 0,
                "gas": GAS_LIMIT,
                "gasPrice": int(await self.rpc("eth_gasPrice"), 16),
                "nonce": int(await self.rpc("eth_getTransactionCount", self.account.address, "pending"), 16),
                "chainId": self.chain_id,
            }
            signed = self.account.sign_transaction(transaction)
            tx_hash = await self.rpc("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
            return await self.outcome(p, tx_hash)

    async def outcome(self, p: Payment, tx_hash: str) -> tuple[bool, str, str | None]:
        key = (p.payer, p.nonce)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (receipt := await self.rpc("eth_getTransactionReceipt", tx_hash)) is None:
            if time.monotonic() > deadline:
                self.pending[key] = tx_hash
                return False, tx_hash, "settlement_pending"
            await asyncio.sleep(RECEIPT_POLL)
        self.pending.pop(key, None)
        if receipt.get("status") != "0x1" or not self.transferred(p, receipt.get("logs") or []):
            return False, "", "invalid_transaction_state"
        return True, tx_hash, None

    @staticmethod
    def transferred(p: Payment, logs: list) -> bool:
        def word(address: str) -> str:
            return "0x" + address[2:].lower().rjust(64, "0")

        wanted = [TRANSFER_TOPIC, word(p.payer), word(p.requirements["payTo"])]
        return any(
            str(log.get("address", "")).lower() == p.requirements["asset"].lower()
            and [str(t).lower() for t in log.get("topics", [])] == wanted
            and int(log.get("data", "0x") or "0x0", 16) == p.value
            for log in logs
        )

    # -- HTTP ----------------------------------------------------------------------------------------

    async def supported(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "kinds": [{"x402Version": 2, "scheme": "exact", "network": self.network}],
                "extensions": [],
                "signers": {"eip155:*": [self.account.address]},
            }
        )

    async def http_verify(self, request: Request) -> JSONResponse:
        return await self.answer(request, settle=False)

    async def http_settle(self, request: Request) -> JSONResponse:
        return await self.answer(request, settle=True)

    async def answer(self, request: Request, *, settle: bool) -> JSONResponse:
        try:
            payment = Payment(await request.json())
        except Malformed as exc:
            return JSONResponse(self.refusal(settle, exc.reason, None) | {"error": str(exc)}, 400)
        except ValueError:
            return JSONResponse(self.refusal(settle, "invalid_payload", None) | {"error": "not JSON"}, 400)
        try:
            if not settle:
                await self.verify(payment)
                return JSONResponse({"isValid": True, "payer": payment.payer})
            success, tx_hash, reason = await self.settle(payment)
        except Invalid as exc:
            return JSONResponse(self.refusal(settle, exc.reason, payment.payer))
        except ChainFailure:
            reason = "unexpected_settle_error" if settle else "unexpected_verify_error"
            return JSONResponse(self.refusal(settle, reason, payment.payer), 500)
        answer = {"success": success, "transaction": tx_hash, "network": self.network, "payer": payment.payer}
        return JSONResponse(answer if success else answer | {"errorReason": reason})

    def refusal(self, settle: bool, reason: str, payer: str | None) -> dict:
        answer: dict = (
            {"success": False, "errorReason": reason, "transaction": "", "network": self.network}
            if settle
            else {"isValid": False, "invalidReason": reason}
        )
        return answer | ({"payer": payer} if payer else {})


def facilitator_app(env: dict[str, str]) -> Starlette:
    key = env.get("FACILITATOR_EVM_PRIVATE_KEY") or env.get("EVM_PRIVATE_KEY")
    if not key:
        raise ValueError("FACILITATOR_EVM_PRIVATE_KEY (or EVM_PRIVATE_KEY) is not set")
    facilitator = IndependentFacilitator(env["EVM_NETWORK"], env["EVM_RPC_URL"], key)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await facilitator.rpc.http.aclose()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/supported", facilitator.supported, methods=["GET"]),
            Route("/verify", facilitator.http_verify, methods=["POST"]),
            Route("/settle", facilitator.http_settle, methods=["POST"]),
        ],
    )
