"""Permit2 payments on EVM: ``exact`` with ``assetTransferMethod: "permit2"``, and ``upto``.

Both sign one ``PermitWitnessTransferFrom`` for the canonical Permit2 whose spender is an x402
proxy: the exact proxy moves exactly the permitted amount to ``witness.to``; the upto proxy moves
any amount up to it, and only when called by ``witness.facilitator``. Any ERC-20 can be paid so,
once its holder has approved Permit2 (or a gas-sponsoring extension does it: ``sponsoring``).

Rules of this module (those of ``exact_eip3009`` hold too: time is an argument, the server's
requirements are what is judged, failures are values):

* Verification is one ordered table per scheme, ``EXACT_CHECKS`` and ``UPTO_CHECKS``, in the Python
  SDK's order and with its reasons, so that the first failing row gives the same reason. The
  on-chain step, written out in ``Permit2Mechanism.check_on_chain``, goes: the asset has code; the
  allowance for Permit2 covers the amount, or a sponsoring extension the facilitator offers is
  carried and sound (else ``permit2_allowance_required``, which a server answers with 412); the
  balance covers it; the Permit2 nonce is unused; and the proxy call is simulated from the
  facilitator's address (the SDKs read the allowance and balance only: a used nonce or a bad permit
  signature would reach the chain and cost gas there). A payment sponsored by an approval
  transaction is not simulated: the approval is not on chain yet.
* ``upto``: at ``/verify`` the requirements' amount is the maximum, which the permit must equal;
  at ``/settle`` it is the charge (``Judging.settling``), which must not exceed the permit
  (``invalid_upto_evm_payload_settlement_exceeds_amount``, the table's last row, as the Python SDK
  checks it after verifying again); a charge of 0 settles with no transaction. The witness must
  name this facilitator.
* Settlement: ``settle`` on the proxy; ``settleWithPermit`` when an EIP-2612 permit gives the
  allowance; with an approval transaction, a bundle: the ether its gas needs (when the payer lacks
  it), the approval, the settlement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from ..evm.backend import ChainReads
from ..evm.chain import Receipt
from ..evm.eip712 import SignatureError, checksum, recover_digest, sign_digest, split_signature
from ..evm.permit2 import (
    EXACT_PERMIT2_PROXY_ADDRESS,
    PERMIT2_ADDRESS,
    UPTO_PERMIT2_PROXY_ADDRESS,
    PermitTransfer,
    allowance,
    exact_settle_call,
    exact_settle_with_permit_call,
    nonce_used,
    permit_witness_digest,
    upto_settle_call,
    upto_settle_with_permit_call,
)
from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayloadV1,
    PaymentRequirementsV1,
    Permit2Payload,
    ProtocolError,
    Reason,
    SupportedKind,
    parse_permit2_payload,
)
from .offer import Offer, evm_address
from .sponsoring import (
    EIP2612_GAS_SPONSORING,
    ERC20_APPROVAL_GAS_SPONSORING,
    Sponsorship,
    eip2612_problem,
    erc20_problem,
    funding,
    read_sponsorship,
)
from .verdict import Judging, Step, Verdict

TRANSFER_METHOD = "permit2"
VALID_AFTER = 0  # what the reference client signs as witness.validAfter (as the SDKs do)
DEADLINE_MARGIN = 6  # seconds a permit must outlive verification: one block's time (the SDKs' buffer)
SETTLE_GAS = 200_000
SETTLE_WITH_PERMIT_GAS = 300_000
FUND_GAS = 21_000


@dataclass(frozen=True)
class Permit2Payment:
    """What a Permit2 verdict carries for settlement: the parsed payload, the permit it signs, the
    signature, and the sponsoring extension the settlement uses (None: the allowance is there)."""

    payload: Permit2Payload
    permit: PermitTransfer
    signature: bytes
    carried: Sponsorship | None  # the sponsoring extension the payment carries, if offered here
    sponsor: Sponsorship | None = None  # the one the settlement uses (set by the on-chain step)


@dataclass(frozen=True)
class Candidate:
    """One payment under verification: the client's claim, the server's offer and the judging."""

    accepted_scheme: str
    accepted_network: str
    offer: Offer
    payment: Permit2Payment
    judging: Judging

    @property
    def permit(self) -> PermitTransfer:
        return self.payment.permit


def _recovers_to_from(c: Candidate) -> bool:
    try:
        signer = recover_digest(permit_witness_digest(c.judging.chain_id, c.permit), c.payment.signature)
    except SignatureError:
        return False
    return signer.lower() == c.payment.payload.permit2_authorization.from_.lower()


def _amount_row(c: Candidate) -> bool:
    # upto at /settle: the requirements name the charge, checked against the permit last
    return (c.offer.scheme == "upto" and c.judging.settling) or c.permit.amount == c.offer.amount


def _charge_row(c: Candidate) -> bool:
    return not c.judging.settling or c.offer.amount <= c.permit.amount


def _rows(scheme: str, proxy: str) -> tuple[tuple[str, Reason, Callable[[Candidate], bool]], ...]:
    upto = scheme == "upto"
    rows: list[tuple[str, Reason, Callable[[Candidate], bool]]] = [
        (
            f"scheme is {scheme}",
            Reason.invalid_upto_evm_scheme if upto else Reason.unsupported_scheme,
            lambda c: c.accepted_scheme == scheme == c.offer.scheme,
        ),
        (
            "network matches requirements",
            Reason.invalid_upto_evm_network_mismatch if upto else Reason.network_mismatch,
            lambda c: c.accepted_network == c.offer.network,
        ),
        (
            "network is this chain",
            Reason.invalid_upto_evm_failed_to_get_network_config
            if upto
            else Reason.invalid_exact_evm_failed_to_get_network_config,
            lambda c: c.offer.chain_id == c.judging.chain_id,
        ),
        (
            "spender is the proxy",
            Reason.invalid_permit2_spender,
            lambda c: c.permit.spender.lower() == proxy.lower(),
        ),
        (
            "witness.to is payTo",
            Reason.invalid_permit2_recipient_mismatch,
            lambda c: c.permit.to.lower() == c.offer.pay_to.lower(),
        ),
    ]
    if upto:
        rows.append(
            (
                "witness.facilitator is this facilitator",
                Reason.upto_facilitator_mismatch,
                lambda c: (c.permit.facilitator or "").lower() == c.judging.facilitator.lower(),
            )
        )
    rows += [
        (
            "deadline leaves a block's time",
            Reason.permit2_deadline_expired,
            lambda c: c.permit.deadline >= c.judging.now + DEADLINE_MARGIN,
        ),
        (
            "witness.validAfter has passed",
            Reason.permit2_not_yet_valid,
            lambda c: c.permit.valid_after <= c.judging.now,
        ),
        ("permitted amount is the amount", Reason.permit2_amount_mismatch, _amount_row),
        (
            "permitted token is the asset",
            Reason.permit2_token_mismatch,
            lambda c: c.permit.token.lower() == c.offer.asset.lower(),
        ),
        ("signature recovers to from", Reason.invalid_permit2_signature, _recovers_to_from),
    ]
    if upto:
        rows.append(
            (
                "the charge is within the permit (at /settle)",
                Reason.invalid_upto_evm_payload_settlement_exceeds_amount,
                _charge_row,
            )
        )
    return tuple(rows)


EXACT_CHECKS = _rows("exact", EXACT_PERMIT2_PROXY_ADDRESS)
UPTO_CHECKS = _rows("upto", UPTO_PERMIT2_PROXY_ADDRESS)


def _permit_of(payload: Permit2Payload) -> PermitTransfer:
    a = payload.permit2_authorization
    return PermitTransfer(
        token=checksum(a.permitted.token),
        amount=a.permitted.amount,
        spender=checksum(a.spender),
        nonce=a.nonce,
        deadline=a.deadline,
        to=checksum(a.witness.to),
        valid_after=a.witness.valid_after,
        facilitator=checksum(a.witness.facilitator) if a.witness.facilitator else None,
    )


def _reason_for_revert(text: str | None, *, upto: bool, simulated: bool) -> Reason:
    """Map a proxy's or Permit2's revert (custom errors by name) to a reason."""
    t = text or ""
    for needle, reason in (
        ("InvalidNonce", Reason.invalid_exact_evm_nonce_already_used),
        ("SignatureExpired", Reason.permit2_deadline_expired),
        ("PaymentTooEarly", Reason.permit2_not_yet_valid),
        ("Permit2612AmountMismatch", Reason.permit2_2612_amount_mismatch),
        ("AmountExceedsPermitted", Reason.invalid_upto_evm_payload_settlement_exceeds_amount),
        ("UnauthorizedFacilitator", Reason.upto_facilitator_mismatch),
        ("InvalidSigner", Reason.invalid_permit2_signature),
        ("InvalidSignature", Reason.invalid_permit2_signature),
        (
            "transfer amount exceeds balance",
            Reason.permit2_insufficient_balance if upto else Reason.invalid_exact_evm_insufficient_balance,
        ),
        ("allowance", Reason.permit2_allowance_required),
    ):
        if needle in t:
            return reason
    if upto:
        return Reason.invalid_upto_evm_transaction_failed
    return Reason.invalid_exact_evm_transaction_simulation_failed if simulated else Reason.transaction_failed


def _passed(verdict: Verdict) -> tuple[Permit2Payment, Offer]:
    return cast(Permit2Payment, verdict.payload), cast(Offer, verdict.offer)


class Permit2Mechanism:
    """A Permit2 mechanism (``scheme`` through ``proxy``): the four parts a ``Mechanism`` supplies
    (see ``mechanisms.base``) and the rules of this module."""

    family = "eip155"
    transfer_method = TRANSFER_METHOD
    ledger_rules: str | None = "evm.permit2_rules"

    def __init__(self, scheme: str, proxy: str) -> None:
        self.scheme = scheme
        self.proxy = proxy
        self.upto = scheme == "upto"
        self.reports_amount = self.upto
        self.checks = UPTO_CHECKS if self.upto else EXACT_CHECKS

    # client part
    def client_refusal(self, offer: Offer) -> str | None:
        if self.upto:
            try:
                evm_address(offer.extra.get("facilitatorAddress"), "extra.facilitatorAddress")
            except ProtocolError:
                return "upto offer lacks extra.facilitatorAddress (the facilitator the permit must name)"
        return None

    def permit_for(self, payer: str, offer: Offer, now: int, nonce: bytes) -> PermitTransfer:
        """The permit a client signs for ``offer``: the (maximum) amount, to this scheme's proxy,
        valid from 0 until ``maxTimeoutSeconds`` from ``now``, with a random uint256 nonce."""
        facilitator = (
            evm_address(offer.extra.get("facilitatorAddress"), "facilitatorAddress") if self.upto else None
        )
        return PermitTransfer(
            token=offer.asset,
            amount=offer.amount,
            spender=self.proxy,
            nonce=int.from_bytes(nonce, "big"),
            deadline=now + offer.max_timeout_seconds,
            to=offer.pay_to,
            valid_after=VALID_AFTER,
            facilitator=facilitator,
        )

    def sign(self, key: bytes, payer: str, offer: Offer, now: int, nonce: bytes) -> dict[str, Any]:
        permit = self.permit_for(payer, offer, now, nonce)
        signature = sign_digest(key, permit_witness_digest(cast(int, offer.chain_id), permit))
        witness: dict[str, Any] = {"to": permit.to, "validAfter": permit.valid_after}
        if permit.facilitator is not None:
            witness = {"to": permit.to, "facilitator": permit.facilitator, "validAfter": permit.valid_after}
        payload = Permit2Payload.model_validate(
            {
                "signature": "0x" + signature.hex(),
                "permit2Authorization": {
                    "from": checksum(payer),
                    "permitted": {"token": permit.token, "amount": permit.amount},
                    "spender": permit.spender,
                    "nonce": permit.nonce,
                    "deadline": permit.deadline,
                    "witness": witness,
                },
            }
        )
        return payload.to_wire()

    # server part
    def extra(self, asset_name: str, asset_version: str) -> dict[str, Any]:
        return {"assetTransferMethod": TRANSFER_METHOD, "name": asset_name, "version": asset_version}

    # facilitator part
    def supported_kinds(self, network: str, facilitator: str = "") -> list[SupportedKind]:
        extra = {"facilitatorAddress": facilitator} if self.upto and facilitator else None
        return [SupportedKind(x402_version=2, scheme=self.scheme, network=network, extra=extra)]

    def check(self, payment: AnyPaymentPayload, requirements: AnyRequirements, judging: Judging) -> Verdict:
        if isinstance(payment, PaymentPayloadV1) or isinstance(requirements, PaymentRequirementsV1):
            return Verdict(Reason.invalid_x402_version, f"{self.scheme} with Permit2 is an x402 v2 scheme")
        try:
            offer = Offer.of(requirements, "paymentRequirements")
        except ProtocolError as exc:
            return Verdict(Reason.invalid_payment_requirements, str(exc))
        what, reason, _ = self.checks[0]
        if not payment.accepted.scheme == self.scheme == offer.scheme:  # before the payload is read:
            return Verdict(reason, f"failed: {what}")  # a payment of another scheme has another shape
        try:
            payload = parse_permit2_payload(payment.payload)
            Offer.of(payment.accepted, "paymentPayload.accepted")
            signature = bytes.fromhex(payload.signature[2:])
        except ProtocolError as exc:
            return Verdict(Reason.invalid_payload, str(exc))
        carried = read_sponsorship(payment.extensions, judging.sponsoring)
        parts = Permit2Payment(payload, _permit_of(payload), signature, carried)
        candidate = Candidate(payment.accepted.scheme, payment.accepted.network, offer, parts, judging)
        payer = checksum(payload.permit2_authorization.from_)
        for what, reason, predicate in self.checks:
            if not predicate(candidate):
                return Verdict(reason, f"failed: {what}", payer)
        return Verdict(None, "", payer, parts, offer, charge=offer.amount)

    def check_on_chain(self, verdict: Verdict, chain: ChainReads, judging: Judging, mode: str) -> Verdict:
        if not verdict.ok:
            return verdict
        parts, offer = _passed(verdict)
        payer, amount = cast(str, verdict.payer), verdict.amount
        worst = parts.permit.amount  # what the payer's balance and allowance must cover
        if not chain.code(offer.asset):
            return Verdict(Reason.asset_not_deployed_contract, f"no contract at asset {offer.asset}", payer)
        sponsor = None
        if allowance(chain, offer.asset, payer, PERMIT2_ADDRESS) < worst:
            sponsor = parts.carried
            problem, message = self._sponsorship_problem(sponsor, payer, offer, parts, chain, judging)
            if problem is not None:
                return Verdict(problem, message, payer)
        if chain.balance_of(payer, offer.asset) < worst:
            short = (
                Reason.permit2_insufficient_balance
                if self.upto
                else Reason.invalid_exact_evm_insufficient_balance
            )
            return Verdict(short, f"the payer holds less than {worst}", payer)
        if nonce_used(chain, payer, parts.permit.nonce):
            return Verdict(Reason.invalid_exact_evm_nonce_already_used, "the Permit2 nonce is used", payer)
        verdict = replace(verdict, payload=replace(parts, sponsor=sponsor))
        if amount == 0 or (sponsor is not None and sponsor.name == ERC20_APPROVAL_GAS_SPONSORING):
            return verdict  # nothing to simulate: nothing moves, or the approval is not on chain yet
        result = chain.call(
            self.proxy,
            self._settle_call(verdict, amount if judging.settling else worst),
            sender=judging.facilitator,
            timestamp=judging.now,
        )
        if result.success:
            return verdict
        reason = _reason_for_revert(result.revert_reason, upto=self.upto, simulated=True)
        return Verdict(reason, f"simulation reverted: {result.revert_reason}", payer)

    @staticmethod
    def _sponsorship_problem(
        sponsor: Sponsorship | None,
        payer: str,
        offer: Offer,
        parts: Permit2Payment,
        chain: ChainReads,
        judging: Judging,
    ) -> tuple[Reason | None, str]:
        if sponsor is None:
            return Reason.permit2_allowance_required, "the payer has not approved Permit2 for this amount"
        if sponsor.problem is not None:
            return sponsor.problem, f"malformed {sponsor.name} info"
        if sponsor.eip2612 is not None:
            problem = eip2612_problem(sponsor.eip2612, payer, offer.asset, parts.permit.amount, judging.now)
            return problem, f"{EIP2612_GAS_SPONSORING}: {problem}" if problem else ""
        return erc20_problem(cast(Any, sponsor.erc20), payer, offer.asset, chain)

    def _settle_call(self, verdict: Verdict, amount: int) -> bytes:
        parts, _ = _passed(verdict)
        owner = cast(str, verdict.payer)
        sponsor = parts.sponsor
        if sponsor is not None and sponsor.eip2612 is not None:
            info = sponsor.eip2612
            try:
                v, r, s = split_signature(bytes.fromhex(info.signature[2:]))
            except SignatureError:
                v, r, s = 0, b"\x00" * 32, b"\x00" * 32  # the token refuses it; the proxy carries on
            permit2612 = (info.amount, info.deadline, v, r, s)
            if self.upto:
                return upto_settle_with_permit_call(permit2612, parts.permit, amount, owner, parts.signature)
            return exact_settle_with_permit_call(permit2612, parts.permit, owner, parts.signature)
        if self.upto:
            return upto_settle_call(parts.permit, amount, owner, parts.signature)
        return exact_settle_call(parts.permit, owner, parts.signature)

    def claim(self, verdict: Verdict) -> tuple[tuple[str, str], int]:
        """The permit a settlement spends, as (payer, "permit2:" nonce), and until when it could."""
        parts, _ = _passed(verdict)
        return (cast(str, verdict.payer).lower(), f"permit2:{parts.permit.nonce}"), parts.permit.deadline

    def side_claims(self, verdict: Verdict) -> tuple[tuple[str, str], ...]:
        """The EIP-2612 permit a sponsored settlement submits, as (payer, "eip2612:" token:nonce)."""
        parts, offer = _passed(verdict)
        sponsor = parts.sponsor
        if sponsor is None or sponsor.eip2612 is None:
            return ()
        return ((cast(str, verdict.payer).lower(), f"eip2612:{offer.asset.lower()}:{sponsor.eip2612.nonce}"),)

    def settlement(self, verdict: Verdict, chain: ChainReads, judging: Judging) -> tuple[Step, ...]:
        parts, _ = _passed(verdict)
        if self.upto and verdict.amount == 0:
            return ()
        sponsor = parts.sponsor
        gas = SETTLE_WITH_PERMIT_GAS if sponsor is not None and sponsor.eip2612 is not None else SETTLE_GAS
        settle = Step(self.proxy, self._settle_call(verdict, verdict.amount), gas=gas)
        if sponsor is None or sponsor.erc20 is None:
            return (settle,)
        approval = sponsor.erc20
        steps = [Step(raw=bytes.fromhex(approval.signed_transaction[2:])), settle]
        wei = funding(approval, chain)
        if wei:
            steps.insert(0, Step(cast(str, verdict.payer), value=wei, sponsored=True, gas=FUND_GAS))
        return tuple(steps)

    def transfer_matches(self, receipt: Receipt, verdict: Verdict) -> bool:
        parts, offer = _passed(verdict)
        return any(
            t.token.lower() == offer.asset.lower()
            and t.from_.lower() == cast(str, verdict.payer).lower()
            and t.to.lower() == parts.permit.to.lower()
            and t.value == verdict.amount
            for t in receipt.transfers()
        )

    def receipt_failure(self, receipt: Receipt, verdict: Verdict) -> Reason:
        """A receipt without the expected ``Transfer`` log, or one that reverted."""
        if receipt.success:
            return Reason.invalid_exact_evm_transfer_event_mismatch
        return self.reason_for_revert(receipt.revert_reason)

    def settle_answer(
        self, receipt: Receipt, verdict: Verdict, chain: ChainReads
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The answer's amount (the charge, when this mechanism reports it) and no ``extra``."""
        return (str(verdict.amount) if self.reports_amount else None), None

    def reason_for_revert(self, text: str | None) -> Reason:
        return _reason_for_revert(text, upto=self.upto, simulated=False)

    def already_settled(self, chain: ChainReads, verdict: Verdict) -> bool:
        parts, _ = _passed(verdict)
        return nonce_used(chain, cast(str, verdict.payer), parts.permit.nonce)


EXACT_PERMIT2 = Permit2Mechanism("exact", EXACT_PERMIT2_PROXY_ADDRESS)
UPTO_PERMIT2 = Permit2Mechanism("upto", UPTO_PERMIT2_PROXY_ADDRESS)
