"""A small world for the Permit2 tests: a `LocalChain` (Permit2 and the proxies in its genesis), a
payer who approved Permit2, a facilitator, a payee; signing and sending helpers.

These tests run on `LocalChain` rather than the bare tester chain of `helpers.py` because the
genesis placement is part of what they check, and because its calls return the raw revert data
(custom errors are compared byte for byte) and its clock is explicit.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_utils import event_signature_to_log_topic

from x402sim.evm import LocalChain, Receipt, address_of_key, sign_digest
from x402sim.evm import permit2 as p2
from x402sim.evm.chain import CallResult
from x402sim.evm.token import selector

BALANCE = 1_000 * 10**6
ETH = 10**18
ZERO = "0x" + "00" * 20

SETTLED = event_signature_to_log_topic("Settled()")
SETTLED_WITH_PERMIT = event_signature_to_log_topic("SettledWithPermit()")
FAILED_WITH_REASON = event_signature_to_log_topic("EIP2612PermitFailedWithReason(address,address,string)")
FAILED_WITH_DATA = event_signature_to_log_topic("EIP2612PermitFailedWithData(address,address,bytes)")
APPROVAL = event_signature_to_log_topic("Approval(address,address,uint256)")
NONCE_INVALIDATION = event_signature_to_log_topic("UnorderedNonceInvalidation(address,uint256,uint256)")


def error(signature: str, *args: int) -> bytes:
    """Revert data of a custom error: its selector and ABI-encoded arguments."""
    return selector(signature) + b"".join(a.to_bytes(32, "big") for a in args)


def error_string(reason: str) -> bytes:
    return selector("Error(string)") + encode(["string"], [reason])


@dataclass
class World:
    chain: LocalChain
    payer_key: bytes
    payer: str
    facilitator_key: bytes
    facilitator: str
    payee: str
    stranger_key: bytes
    stranger: str

    @classmethod
    def build(cls, token: str = "usdc") -> World:
        chain = LocalChain(token=token)
        keys = [chain.new_key() for _ in range(4)]
        payer, facilitator, payee, stranger = (address_of_key(k) for k in keys)
        chain.fund_many([(payer, BALANCE, ETH), (facilitator, 0, ETH), (stranger, 0, ETH)])
        world = cls(chain, keys[0], payer, keys[1], facilitator, payee, keys[3], stranger)
        world.send(keys[0], chain.usdc, p2.approve_call(p2.PERMIT2_ADDRESS, p2.UINT256_MAX))
        return world

    @property
    def token(self) -> str:
        return self.chain.usdc

    def permit(
        self,
        amount: int = 1_000,
        *,
        nonce: int = 1,
        deadline: int | None = None,
        to: str | None = None,
        valid_after: int | None = None,
        upto: bool = False,
        facilitator: str | None = None,
        spender: str | None = None,
    ) -> p2.PermitTransfer:
        now = self.chain.now
        fac = (facilitator or self.facilitator) if upto else None
        return p2.PermitTransfer(
            token=self.token,
            amount=amount,
            spender=spender or (p2.UPTO_PERMIT2_PROXY_ADDRESS if upto else p2.EXACT_PERMIT2_PROXY_ADDRESS),
            nonce=nonce,
            deadline=now + 600 if deadline is None else deadline,
            to=to or self.payee,
            valid_after=now - 60 if valid_after is None else valid_after,
            facilitator=fac,
        )

    def sign(self, permit: p2.PermitTransfer, key: bytes | None = None) -> bytes:
        return sign_digest(key or self.payer_key, p2.permit_witness_digest(self.chain.chain_id, permit))

    def send(self, key: bytes, to: str, data: bytes) -> Receipt:
        tx_hash = self.chain.transact(key, to, data, gas=1_000_000)
        self.chain.mine()
        receipt = self.chain.receipt(tx_hash)
        assert receipt is not None
        return receipt

    def call(self, to: str, data: bytes, sender: str | None = None) -> CallResult:
        return self.chain.call(to, data, sender=sender or self.facilitator)

    def balance(self, address: str) -> int:
        return self.chain.balance_of(address)
