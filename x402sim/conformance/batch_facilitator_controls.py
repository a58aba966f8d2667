"""Controls of the ``batch-settlement`` facilitator cases: the reference facilitator with one channel rule
broken on purpose.

Most are the reference with its batch mechanisms replaced by a ``LooseBatch``: rows of its verify or
settle table made to pass (the rows that read the chain, which ``check_on_chain`` runs), the chain's
simulation of a settlement believed to succeed (``BlindChain``), the answer of a deposit built from
the channel state read before it (a stale ``channelState``), the answer of a refund saying the amount
asked rather than the amount refunded, a delegated refund signed with the channel's current nonce
whatever nonce the server sent, or claims refused on a channel whose payer started a withdrawal.
Others are the reference's own switches (``dedupe="share"``: a repeated deposit answered with the
first one's success; ``check_transfer_log=False``: success without the event), or a subclass that
settles a deposit at ``/verify``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, cast

from ..actors.facilitator import Facilitator
from ..evm.chain import CallResult
from ..evm.channels import BATCH_SETTLEMENT_ADDRESS, channel_id, read_channel
from ..mechanisms import (
    BATCH_EIP3009,
    BATCH_PERMIT2,
    EXACT_EIP3009,
    EXACT_PERMIT2,
    UPTO_PERMIT2,
    Judging,
    Mechanism,
    Mechanisms,
    Verdict,
)
from ..mechanisms.batch_settlement import SETTLE_CHECKS, VERIFY_CHECKS, BatchPayment, BatchSettlement
from ..mechanisms.batch_wire import ClaimPayload, DepositPayload, RefundPayload
from ..protocol import Reason
from .controls import control
from .reference import InProcessService, reference_facilitator

ROWS = {what for what, _, _ in (*VERIFY_CHECKS, *SETTLE_CHECKS)}
PAYER_HOLDS = "deposit: the payer holds the deposit"
WITHIN_BALANCE = "maxClaimableAmount is within the balance (plus the deposit)"
ABOVE_CLAIMED = "maxClaimableAmount is above totalClaimed (a refund's: not below)"
VOUCHER_SIGNER = "voucher is signed by the payer authorizer (ECDSA), or by the payer (ECDSA or EIP-1271)"
CLAIM_RAISES = "claim: a row raises its channel's on-chain totalClaimed"
SOMETHING_TO_SETTLE = "settle: the receiver has claimed funds not yet settled"
assert {PAYER_HOLDS, WITHIN_BALANCE, ABOVE_CLAIMED, VOUCHER_SIGNER, CLAIM_RAISES, SOMETHING_TO_SETTLE} <= ROWS


def _passes(_: Any) -> bool:
    return True


@dataclass(frozen=True)
class LooseParts(BatchPayment):
    """A batch verdict's payment whose table has the rows named in ``skip`` passing (same indices,
    so ``check_on_chain`` resumes where ``check`` stopped)."""

    skip: frozenset[str] = frozenset()

    @property
    def rows(self):
        return tuple((what, reason, _passes if what in self.skip else c) for what, reason, c in super().rows)


class BlindChain:
    """``chain`` as a facilitator that does not simulate sees it: every call that names a sender (the
    settlement's simulation) succeeds; the contract's views and the token's reads are the chain's."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    def call(self, to: str, data: bytes, **kwargs: Any) -> CallResult:
        if kwargs.get("sender") and to.lower() == BATCH_SETTLEMENT_ADDRESS.lower():
            return CallResult(True, b"", None, 0)
        return self._chain.call(to, data, **kwargs)


class LooseBatch(BatchSettlement):
    """The batch-settlement mechanism with one rule relaxed (see the module docstring)."""

    def __init__(
        self,
        base: BatchSettlement,
        *,
        skip: tuple[str, ...] = (),
        blind: bool = False,
        stale_answer: bool = False,
        asked_refund: bool = False,
        own_nonce: bool = False,
        no_claim_while_withdrawing: bool = False,
    ) -> None:
        super().__init__(base.transfer_method)
        self.skip = frozenset(skip)
        self.blind, self.stale_answer, self.asked_refund = blind, stale_answer, asked_refund
        self.own_nonce, self.no_claim_while_withdrawing = own_nonce, no_claim_while_withdrawing

    def check(self, payment, requirements, judging: Judging) -> Verdict:
        verdict = super().check(payment, requirements, judging)
        if not verdict.ok or not self.skip:
            return verdict
        parts = cast(BatchPayment, verdict.payload)
        loose = LooseParts(**{f.name: getattr(parts, f.name) for f in fields(parts)}, skip=self.skip)
        return replace(verdict, payload=loose)

    def check_on_chain(self, verdict: Verdict, chain, judging: Judging, mode: str) -> Verdict:
        if verdict.ok:
            parts = cast(BatchPayment, verdict.payload)
            p = parts.payload
            if self.own_nonce and isinstance(p, RefundPayload) and p.refund_signature is None:
                state = read_channel(chain, channel_id(p.config, judging.chain_id))
                verdict = replace(
                    verdict, payload=replace(parts, payload=replace(p, refund_nonce=state.refund_nonce))
                )
            if self.no_claim_while_withdrawing and isinstance(p, ClaimPayload):
                states = [read_channel(chain, channel_id(c.config, judging.chain_id)) for c in p.claims]
                if any(s.withdraw_requested_at for s in states):
                    why = "a channel's payer is withdrawing"
                    return Verdict(Reason("invalid_batch_settlement_evm_claim_simulation_failed"), why)
        return super().check_on_chain(verdict, BlindChain(chain) if self.blind else chain, judging, mode)

    def settle_answer(self, receipt, verdict: Verdict, chain):
        amount, extra = super().settle_answer(receipt, verdict, chain)
        p = cast(BatchPayment, verdict.payload).payload
        if self.stale_answer and isinstance(p, DepositPayload):
            return amount, {"channelState": verdict.extra}  # read at verification, before the deposit
        if self.asked_refund and isinstance(p, RefundPayload):
            return str(p.amount), extra
        return amount, extra


def _facilitator(name: str, role_class: type[Facilitator] = Facilitator, switches=None, **loose):
    def build(env):
        batch: list[Mechanism[Verdict]] = [
            LooseBatch(BATCH_EIP3009, **loose),
            LooseBatch(BATCH_PERMIT2, **loose),
        ]
        mechanisms: Mechanisms[Verdict] = Mechanisms([EXACT_EIP3009, EXACT_PERMIT2, UPTO_PERMIT2, *batch])
        return reference_facilitator(env, role_class, mechanisms=mechanisms, **(switches or {}))[1]

    return InProcessService("facilitator", build, name=name, kind="control")


def _register(name: str, summary: str, kills: tuple[str, ...], **how) -> None:
    @control(name, "facilitator", summary, kills)
    def build():
        return _facilitator(name, **how)


_register(
    "facilitator-batch-stale-deposit-answer",
    "Answers a deposit with the channel state read before it (extra.channelState balance 0)",
    ("facilitator.batch.deposit-settles",),
    stale_answer=True,
)
_register(
    "facilitator-batch-unchecked-deposit",
    "Checks no deposit's funds: no payer balance row, no simulation of the deposit (x402#2559)",
    ("facilitator.batch.deposit-unconfirmed",),
    skip=(PAYER_HOLDS,),
    blind=True,
)
_register(
    "facilitator-batch-shares-deposits",
    "Answers a repeated deposit with the first one's successful settlement (dedupe='share', x402#2883)",
    ("facilitator.batch.deposit-twice",),
    switches={"dedupe": "share"},
)
_register(
    "facilitator-batch-voucher-over-balance",
    "Verifies vouchers without rule 9 (maxClaimableAmount at most the balance)",
    ("facilitator.batch.voucher-over-balance",),
    skip=(WITHIN_BALANCE,),
)
_register(
    "facilitator-batch-voucher-stale",
    "Verifies vouchers without rule 10 (maxClaimableAmount above the on-chain totalClaimed)",
    ("facilitator.batch.voucher-stale",),
    skip=(ABOVE_CLAIMED,),
)
_register(
    "facilitator-batch-voucher-any-signer",
    "Verifies vouchers without rule 6 (the payer's, or its payerAuthorizer's, signature)",
    ("facilitator.batch.voucher-wrong-signer",),
    skip=(VOUCHER_SIGNER,),
)
_register(
    "facilitator-batch-success-without-event",
    "Sends claims that raise nothing and empty sweeps, and answers success without the receipt's event",
    ("facilitator.batch.claim-needs-event", "facilitator.batch.noop-claim-not-success"),
    skip=(CLAIM_RAISES, SOMETHING_TO_SETTLE),
    switches={"check_transfer_log": False},
)
_register(
    "facilitator-batch-refund-own-nonce",
    "Signs a delegated refund with the channel's current refundNonce, whatever nonce the server sent",
    ("facilitator.batch.refund-wrong-nonce",),
    own_nonce=True,
)
_register(
    "facilitator-batch-refund-asked-amount",
    "Answers a refund with the amount asked, not the amount the contract refunded",
    ("facilitator.batch.refund-wrong-amount",),
    asked_refund=True,
)
_register(
    "facilitator-batch-no-claim-while-withdrawing",
    "Refuses claims on a channel whose payer has initiated a withdrawal",
    ("facilitator.batch.withdraw-race",),
    no_claim_while_withdrawing=True,
)


@dataclass
class DepositsAtVerify(Facilitator):
    """Settles a batch deposit it finds valid at /verify (x402#2881: state changed by a verify)."""

    def verify(self, payload, requirements, now):
        answer = super().verify(payload, requirements, now)
        deposit = isinstance(payload.payload, dict) and payload.payload.get("type") == "deposit"
        if answer.is_valid and deposit and isinstance(self.mechanism_for(requirements), BatchSettlement):
            self.begin_settle(payload, requirements, now)  # the node mines it; nobody waits
        return answer


_register(
    "facilitator-batch-deposits-at-verify",
    "Sends a valid deposit's transaction at /verify (x402#2881)",
    ("facilitator.batch.verify-writes-nothing",),
    role_class=DepositsAtVerify,
)
