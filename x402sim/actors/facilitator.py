"""The reference facilitator: verify, settle and list what it supports, on one chain, for the
mechanisms it is given (``mechanisms``; by default those x402sim ships, ``exact`` with EIP-3009).

Rules:

* The scheme's rules are its mechanism's (``x402sim.mechanisms``): the facilitator finds the
  mechanism of the requirements the server sent and runs its verify table, its on-chain step and its
  settlement transaction. A scheme no mechanism claims is judged by the first mechanism of its
  network family, whose first row refuses it (``unsupported_scheme``).
* The chain is reached only through the ``Chain`` interface (``evm.backend``).

* ``now`` is an argument of every operation; nothing here reads a clock or sleeps.
* Settlement is two halves so that any world can put time between them: ``begin_settle`` verifies,
  claims the authorization and submits the transaction; ``finish_settle`` turns the receipt into a
  ``SettleResponse``. ``settle_now`` joins them for a caller that mines in between.
* An authorization (payer, nonce) that is pending or settled here is refused with
  ``duplicate_settlement`` before the chain is touched: the answer to the verify/settle race that
  the reference servers leave open. A mechanism whose settlement spends no such authorization
  (``claim`` is None: batch-settlement's claims, sweeps and refunds) is not deduplicated here. A
  claim is released when its transaction fails on chain. So is any other one-time thing a
  settlement spends (``side_claims``: an EIP-2612 permit's nonce), so that two payments carrying
  permits of one nonce never both reach the chain, where the second would revert at this
  facilitator's cost.
* Weaknesses seen in deployed facilitators are named switches here, for study, never a second
  implementation: ``dedupe="share"`` answers a duplicate with the settlement already under way
  for that authorization (one transaction, every caller told "success", as in upstream reports
  #1805 and #2801); ``dedupe="off"`` keeps no claims, so every copy is sent to the chain;
  ``check_transfer_log=False`` trusts a receipt's status without looking for the ``Transfer``
  log (which a token that does not revert a reused authorization exploits).
* ``verify`` is read-only: it writes nothing on chain and commits no state here (no claim, no
  pending entry); a later verify or settle cannot tell it happened.
* The Bazaar (``catalog``, ``actors.bazaar_catalog``): a payment that echoes a ``bazaar`` listing
  has it judged; a verify answers ``processing`` or ``rejected`` in its ``extension_responses``
  (what ``EXTENSION-RESPONSES`` carries) and catalogs nothing; a successful settlement catalogs it
  and answers ``success`` (or ``rejected``). ``catalog=None`` turns discovery off.
* Answers carry what the mechanism says of them: a verify's ``extra`` (its verdict's), a
  settlement's ``amount`` and ``extra`` (``settle_answer``, read from the receipt and the chain),
  and the reason of a receipt that failed or lacks the expected log (``receipt_failure``).
* Reserved ``extra`` keys of the requirements are checked before the mechanism's table: an
  ``assetTransferMethod`` no mechanism here speaks is refused with ``unsupported_scheme`` (this
  facilitator does not speak that kind of payment), a ``paymentFlow`` outside ``authorization``,
  ``upfront``, ``escrow`` with ``invalid_payment_requirements``; nothing is claimed or sent. The
  reserved flows verify and settle alike (when to settle is the server's business).
* A world that stops waiting for a receipt calls ``abandon_settle``: the answer is
  ``settlement_pending`` with the transaction hash, never without one (a settlement whose
  submission gave no hash is a ``transaction_failed``), and the claim stays (it may still land).
* A settle resent with the identical payload and requirements after a ``settlement_pending``
  answer (the server's one retry, x402#3083) is reconciled against the transaction already sent:
  ``begin_settle`` hands back that same pending settlement, so the world waits for its receipt
  again (success, failure when it reverted, or pending again with the same hash); nothing is sent
  a second time. The entry is used once (a second copy meets the claim: ``duplicate_settlement``)
  and the store is bounded (``MAX_UNCONFIRMED``, oldest dropped; pruned with the claims).
* The facilitator keeps its own transaction nonce, so many settlements can be pending at once
  from one key (the official Python signer re-reads the pending count and collides).

Hooks. A variant (the conformance suite's broken facilitators) subclasses ``Facilitator`` and
overrides ``submit(calldata, to)``, submission: sign and send the settlement transaction, return its
hash. Verify and settle rules belong to the mechanisms, the weaknesses are the switches above.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from ..errors import ChainError
from ..evm.backend import Chain
from ..evm.chain import GWEI, Receipt
from ..evm.eip712 import address_of_key, sign_digest
from ..evm.txsign import sign_eip1559
from ..mechanisms import (
    SPONSORING_EXTENSIONS,
    Judging,
    Mechanism,
    Mechanisms,
    Offer,
    Step,
    Verdict,
    default_mechanisms,
    payment_flow_problem,
)
from ..mechanisms.exact_eip3009 import VERIFY_MODES
from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayload,
    PaymentRequirementsV1,
    Reason,
    ReasonClass,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
    v1_to_caip2,
)
from .bazaar_catalog import BazaarCatalog, listing_in

DEDUPE_MODES = ("refuse", "share", "off")
PRUNE_FLOOR = 1024  # claims kept before expired ones are looked for
DEFAULT_SETTLE_GAS = 150_000  # a fixed limit, as the SDK signers use; ~82k is spent at most
MAX_UNCONFIRMED = 4096  # settlements answered settlement_pending, kept for the server's resend


@dataclass(frozen=True)
class PendingSettlement:
    """A settlement transaction submitted and not yet judged."""

    tx_hash: bytes
    payer: str
    offer: Offer
    verdict: Verdict
    network: str  # as the requirements named it (a v1 name or CAIP-2)
    submitted_at: int
    mechanism: Mechanism[Verdict]
    # the payment and requirements it settles, whose ``_resend_key`` a resend is reconciled by
    # (None: not reconcilable); the key is made only when the settlement is answered pending
    settles: tuple[AnyPaymentPayload, AnyRequirements] | None = None
    # the transactions sent before the settlement on the payer's behalf (gas sponsoring), with the
    # wei each carried: their fees and values are what the sponsoring cost
    sponsored: tuple[tuple[bytes, int], ...] = ()
    # the payment and requirements whose Bazaar listing is cataloged once this settles (None: none)
    listing: tuple[AnyPaymentPayload, AnyRequirements] | None = None


@dataclass(frozen=True)
class SettlementRecord:
    """One settlement this facilitator finished, with what it cost in gas."""

    tx_hash: bytes
    payer: str
    pay_to: str
    amount: int
    success: bool
    reason: str | None
    gas_used: int
    fee_wei: int
    block_number: int
    sponsored_wei: int = 0  # spent on the payer's behalf before the settlement (gas sponsoring)


@dataclass
class Facilitator:
    """Verifies and settles payments of its ``mechanisms`` on ``chain`` from the account of ``key``.

    ``chain`` is any backend of the ``Chain`` interface: the embedded ``LocalChain``, the ledger
    backend, or an ``RpcChain`` (any node behind JSON-RPC)."""

    chain: Chain
    key: bytes
    settle_gas: int = DEFAULT_SETTLE_GAS
    priority_fee: int = 0
    dedupe: bool | str = "refuse"  # "refuse" (True), "share", or "off" (False): see the rules above
    check_transfer_log: bool = True
    verify_mode: str = "state"  # or "simulate": how exact.verify_on_chain learns a call's outcome
    history: int | None = None  # settlement records kept, newest last (None: all; 0: none)
    mechanisms: Mechanisms[Verdict] = field(default_factory=default_mechanisms)
    sponsoring: frozenset[str] = frozenset()  # gas-sponsoring extensions offered (SPONSORING_EXTENSIONS)
    catalog: BazaarCatalog | None = field(default_factory=BazaarCatalog)  # the Bazaar (None: off)

    def __post_init__(self) -> None:
        if self.verify_mode not in VERIFY_MODES:
            raise ValueError(f"verify_mode must be one of {VERIFY_MODES}, got {self.verify_mode!r}")
        self.sponsoring = frozenset(self.sponsoring)
        if unknown := sorted(self.sponsoring - set(SPONSORING_EXTENSIONS)):
            raise ValueError(
                f"unknown gas-sponsoring extension {unknown[0]!r}: one of {SPONSORING_EXTENSIONS}"
            )
        aliases: dict[bool | str, bool | str] = {True: "refuse", False: "off"}
        self.dedupe = aliases.get(self.dedupe, self.dedupe)
        if self.dedupe not in DEDUPE_MODES:
            raise ValueError(f"dedupe must be one of {DEDUPE_MODES}, got {self.dedupe!r}")
        self.address = address_of_key(self.key)
        self.settlements: deque[SettlementRecord] = deque(maxlen=self.history)
        self._next_nonce: int | None = None
        # (payer, nonce) -> validBefore of every authorization pending or settled here; an expired one
        # can never be settled again, so it is forgotten once the table has doubled (see _prune).
        self._claims: dict[tuple[str, str], int] = {}
        self._prune_at = PRUNE_FLOOR
        self._shared: dict[tuple[str, str], PendingSettlement] = {}  # dedupe="share": the first settle
        self._answers: dict[bytes, SettleResponse] = {}  # dedupe="share": finished answers by tx hash
        # resend key -> a settlement answered settlement_pending, oldest first (see the rules above)
        self._unconfirmed: dict[str, PendingSettlement] = {}

    # -- discovery ------------------------------------------------------------------------------

    def supported(self) -> SupportedResponse:
        network = self.chain.network
        kinds: dict[tuple[int, str, str], SupportedKind] = {}  # one per version, scheme and network
        for m in self.mechanisms:
            for kind in m.supported_kinds(network, self.address):
                key = (kind.x402_version, kind.scheme, kind.network)
                known = kinds[key].extra if key in kinds else None
                extra = {**(known or {}), **(kind.extra or {})}
                kinds[key] = kind.model_copy(update={"extra": extra or None})
        extensions = [name for name in SPONSORING_EXTENSIONS if name in self.sponsoring]
        return SupportedResponse(
            kinds=list(kinds.values()), extensions=extensions, signers={"eip155:*": [self.address]}
        )

    def judging(self, now: int, *, settling: bool = False) -> Judging:
        """What this facilitator's mechanisms judge a payment with at ``now``."""
        return Judging(
            now, self.chain.chain_id, self.address, settling, self.sponsoring, partial(sign_digest, self.key)
        )

    def mechanism_for(self, requirements: AnyRequirements) -> Mechanism[Verdict]:
        """The mechanism that judges a payment against ``requirements`` (see the module's rules)."""
        return self.mechanisms.judge_with(requirements.scheme, _caip2(requirements), requirements.extra)

    # -- verify ---------------------------------------------------------------------------------

    def reserved_refusal(self, requirements: AnyRequirements) -> Verdict | None:
        """The verdict refusing ``requirements`` for a reserved ``extra`` key (see the module's
        rules), or None when both keys are absent or acceptable."""
        extra = requirements.extra
        why = self.mechanisms.method_refusal(requirements.scheme, _caip2(requirements), extra)
        if why is not None:
            return Verdict(Reason.unsupported_scheme, why)
        why = payment_flow_problem(extra)
        if why is not None:
            return Verdict(Reason.invalid_payment_requirements, why)
        return None

    def _judge(self, payload: AnyPaymentPayload, requirements: AnyRequirements, now: int) -> Verdict:
        refusal = self.reserved_refusal(requirements)
        if refusal is not None:
            return refusal
        mechanism = self.mechanism_for(requirements)
        judging = self.judging(now)
        verdict = mechanism.check(payload, requirements, judging)
        return mechanism.check_on_chain(verdict, self.chain, judging, self.verify_mode)

    def verify(self, payload: AnyPaymentPayload, requirements: AnyRequirements, now: int) -> VerifyResponse:
        verdict = self._judge(payload, requirements, now)
        if verdict.ok:
            answer = VerifyResponse(is_valid=True, payer=verdict.payer, extra=verdict.extra)
            return answer.with_extension_responses(
                self.catalog.judge(payload) if self.catalog is not None else None
            )
        return VerifyResponse(
            is_valid=False,
            invalid_reason=cast(Reason, verdict.reason).value,  # a verdict that is not ok has one
            invalid_message=verdict.message,
            payer=verdict.payer,
            extra=verdict.extra,
        )

    # -- settle ---------------------------------------------------------------------------------

    def begin_settle(
        self, payload: AnyPaymentPayload, requirements: AnyRequirements, now: int
    ) -> PendingSettlement | SettleResponse:
        """Verify again, claim the authorization and submit the mechanism's settlement transaction;
        or, for a resend after ``settlement_pending``, the settlement already sent."""
        refusal = self.reserved_refusal(requirements)
        if refusal is not None:
            return self._failed(refusal, cast(Reason, refusal.reason), requirements)
        if self._unconfirmed and (key := _resend_key(payload, requirements)) in self._unconfirmed:
            return self._unconfirmed.pop(key)
        mechanism = self.mechanism_for(requirements)
        judging = self.judging(now, settling=True)
        verdict = mechanism.check(payload, requirements, judging)
        claim, valid_until = None, 0
        if verdict.ok:
            claimed = mechanism.claim(verdict)
            if claimed is not None:
                claim, valid_until = claimed
                if self.dedupe == "share" and claim in self._shared:
                    return self._shared[claim]
                if self.dedupe == "refuse" and claim in self._claims:
                    return self._failed(verdict, Reason.duplicate_settlement, requirements)
            verdict = mechanism.check_on_chain(verdict, self.chain, judging, self.verify_mode)
        if not verdict.ok:
            return self._failed(verdict, cast(Reason, verdict.reason), requirements)
        side = mechanism.side_claims(verdict)
        if self.dedupe != "off" and (spent := next((c for c in side if c in self._claims), None)):
            why = f"{spent[1]} of {spent[0]} is spent by a settlement under way"
            return self._failed(verdict, Reason.duplicate_settlement, requirements, why)
        steps = mechanism.settlement(verdict, self.chain, judging)
        if not steps:  # a charge of 0: nothing moves, nothing is sent, nothing is claimed
            return SettleResponse(
                success=True, payer=verdict.payer, transaction="", network=requirements.network, amount="0"
            )
        try:
            hashes = self.send_steps(steps)
        except ChainError as exc:
            return self._failed(verdict, Reason.transaction_failed, requirements, str(exc))
        tx_hash = hashes[-1] if hashes else b""
        sponsored = [(h, step.value) for h, step in zip(hashes, steps, strict=True) if step.sponsored]
        if not tx_hash:
            return self._failed(verdict, Reason.transaction_failed, requirements, "no transaction hash")
        if self.dedupe != "off":
            for spent in (*((claim,) if claim else ()), *side):
                self._claims[spent] = valid_until
            self._prune(now)
        payer, offer = cast(str, verdict.payer), cast(Offer, verdict.offer)  # an ok verdict names both
        listing = (
            (payload, requirements)
            if isinstance(payload, PaymentPayload) and listing_in(payload.extensions)
            else None
        )
        pending = PendingSettlement(
            tx_hash,
            payer,
            offer,
            verdict,
            requirements.network,
            now,
            mechanism,
            (payload, requirements),
            tuple(sponsored),
            listing,
        )
        if self.dedupe == "share" and claim is not None:
            self._shared[claim] = pending
        return pending

    def send_steps(self, steps: Sequence[Step]) -> list[bytes]:
        """Send a settlement's transactions: one call through ``submit``; several as one bundle
        (the facilitator's calls signed with its next nonces, a payer's transaction as signed), so
        that they land in order in one block. Their hashes (``ChainError`` if refused)."""
        if len(steps) == 1 and not steps[0].raw:
            step = steps[0]
            return [self.submit(step.data, step.to, value=step.value, gas=step.gas)]
        if self._next_nonce is None:
            self._next_nonce = self.chain.pending_nonce(self.address)
        raws, nonce = [], self._next_nonce
        for step in steps:
            if step.raw:
                raws.append(step.raw)
            else:
                raws.append(self._sign(nonce, step.data, step.to, step.value, step.gas))
                nonce += 1
        try:
            hashes = self.chain.send_bundle(raws)
        except ChainError:
            self._next_nonce = None
            raise
        self._next_nonce = nonce
        return hashes

    def finish_settle(self, pending: PendingSettlement, receipt: Receipt) -> SettleResponse:
        """Judge a mined settlement by its receipt and its ``Transfer`` log."""
        if receipt.tx_hash in self._answers:  # a shared settlement, already judged
            return self._answers[receipt.tx_hash]
        offer, verdict, mechanism = pending.offer, pending.verdict, pending.mechanism
        if receipt.success and (not self.check_transfer_log or mechanism.transfer_matches(receipt, verdict)):
            reason = None
        else:
            reason = mechanism.receipt_failure(receipt, verdict)
            if (
                not receipt.success
                and reason.cls is ReasonClass.transaction_failed
                and self._used_on_chain(mechanism, verdict)
            ):
                reason = Reason.invalid_exact_evm_nonce_already_used  # a node that keeps no revert text
        claimed = mechanism.claim(verdict)
        if reason is not None and reason is not Reason.invalid_exact_evm_nonce_already_used:
            for spent in (*((claimed[0],) if claimed else ()), *mechanism.side_claims(verdict)):
                self._claims.pop(spent, None)
            if claimed:
                self._shared.pop(claimed[0], None)
        amount, extra = mechanism.settle_answer(receipt, verdict, self.chain)
        self.settlements.append(
            SettlementRecord(
                tx_hash=receipt.tx_hash,
                payer=pending.payer,
                pay_to=offer.pay_to,
                # what moved, when the mechanism reads it from the receipt (a claim moves nothing)
                amount=int(amount or 0) if reason is None and amount is not None else verdict.amount,
                success=reason is None,
                reason=reason.value if reason else None,
                gas_used=receipt.gas_used,
                fee_wei=receipt.fee,
                block_number=receipt.block_number,
                sponsored_wei=self._sponsored_wei(pending),
            )
        )
        answer = SettleResponse(
            success=reason is None,
            error_reason=reason.value if reason else None,
            error_message=receipt.revert_reason if reason else None,
            payer=pending.payer,
            transaction="0x" + receipt.tx_hash.hex(),
            network=pending.network,
            amount=amount if reason is None else None,
            extra=extra,
        )
        if reason is None and pending.listing is not None and self.catalog is not None:
            payment, requirements = pending.listing
            answer = answer.with_extension_responses(
                self.catalog.learn(payment, requirements, pending.submitted_at)
            )
        if self.dedupe == "share":
            self._answers[receipt.tx_hash] = answer
        return answer

    def abandon_settle(self, pending: PendingSettlement, why: str = "") -> SettleResponse:
        """The answer when a world stops waiting for ``pending``'s receipt: ``settlement_pending``
        with the transaction hash, kept for a resend to reconcile against. The claim stays, since the
        transaction may still land. A pending settlement without a hash is ``transaction_failed``."""
        if not pending.tx_hash:
            return self._failed(
                pending.verdict, Reason.transaction_failed, pending, "no settlement transaction was sent"
            )
        if pending.settles is not None and self.dedupe != "off":
            key = _resend_key(*pending.settles)
            self._unconfirmed.pop(key, None)
            self._unconfirmed[key] = pending
            while len(self._unconfirmed) > MAX_UNCONFIRMED:
                del self._unconfirmed[next(iter(self._unconfirmed))]
        return SettleResponse(
            success=False,
            error_reason=Reason.settlement_pending.value,
            error_message=why or "the settlement transaction was sent and is not yet confirmed",
            payer=pending.payer,
            transaction="0x" + pending.tx_hash.hex(),
            network=pending.network,
        )

    def _sponsored_wei(self, pending: PendingSettlement) -> int:
        """The wei the sponsored steps before ``pending``'s settlement carried, plus their fees."""
        total = 0
        for tx_hash, value in pending.sponsored:
            receipt = self.chain.receipt(tx_hash)
            total += value + (receipt.fee if receipt is not None else 0)
        return total

    @property
    def claimed(self) -> int:
        """Authorizations this facilitator currently remembers as pending or settled."""
        return len(self._claims)

    @property
    def unconfirmed(self) -> int:
        """Settlements answered ``settlement_pending`` and kept for a resend to reconcile against."""
        return len(self._unconfirmed)

    def _prune(self, now: int) -> None:
        if len(self._claims) < self._prune_at:
            return
        self._claims = {claim: before for claim, before in self._claims.items() if before >= now}
        self._unconfirmed = {
            key: p
            for key, p in self._unconfirmed.items()
            if (c := p.mechanism.claim(p.verdict)) is None or c[0] in self._claims
        }
        if self._shared:
            self._shared = {c: p for c, p in self._shared.items() if c in self._claims}
            kept = {p.tx_hash for p in self._shared.values()}
            self._answers = {h: a for h, a in self._answers.items() if h in kept}
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self._claims))

    def _used_on_chain(self, mechanism: Mechanism[Verdict], verdict: Verdict) -> bool:
        try:
            return mechanism.already_settled(self.chain, verdict)
        except ChainError:
            return False

    def settle_now(
        self, payload: AnyPaymentPayload, requirements: AnyRequirements, now: int
    ) -> SettleResponse:
        """Begin, mine one block on the local chain, finish: settlement with instant confirmation."""
        pending = self.begin_settle(payload, requirements, now)
        if isinstance(pending, SettleResponse):
            return pending
        self.chain.mine()
        receipt = self.chain.receipt(pending.tx_hash)
        if receipt is None:
            return self.abandon_settle(pending, "the settlement transaction was not mined")
        return self.finish_settle(pending, receipt)

    def submit(self, calldata: bytes, asset: str, *, value: int = 0, gas: int | None = None) -> bytes:
        """Hook, submission: sign ``calldata`` to ``asset`` (carrying ``value`` wei) from this
        facilitator's key with its own transaction nonce, send it, and return the transaction hash
        (``ChainError`` if refused)."""
        if self._next_nonce is None:
            self._next_nonce = self.chain.pending_nonce(self.address)
        raw = self._sign(self._next_nonce, calldata, asset, value, gas)
        try:
            tx_hash = self.chain.send_raw_transaction(raw)
        except ChainError:
            self._next_nonce = None  # someone else used our key: re-read the nonce next time
            raise
        self._next_nonce += 1
        return tx_hash

    def _sign(self, nonce: int, calldata: bytes, to: str, value: int, gas: int | None) -> bytes:
        return sign_eip1559(
            self.key,
            chain_id=self.chain.chain_id,
            nonce=nonce,
            gas=self.settle_gas if gas is None else gas,
            max_fee_per_gas=2 * self.chain.base_fee + self.priority_fee + GWEI,
            max_priority_fee_per_gas=self.priority_fee,
            to=to,
            value=value,
            data=calldata,
        ).raw

    def _failed(
        self,
        verdict: Verdict,
        reason: Reason,
        requirements: AnyRequirements | PendingSettlement,
        message: str = "",
    ) -> SettleResponse:
        return SettleResponse(
            success=False,
            error_reason=reason.value,
            error_message=message or verdict.message or None,
            payer=verdict.payer,
            transaction="",
            network=requirements.network,
        )


def _caip2(requirements: AnyRequirements) -> str:
    """The network of ``requirements`` in CAIP-2 form (a v1 name translated when it can be)."""
    if isinstance(requirements, PaymentRequirementsV1):
        return v1_to_caip2(requirements.network) or requirements.network
    return requirements.network


def _resend_key(payload: AnyPaymentPayload, requirements: AnyRequirements) -> str:
    """One string for a settle request's payment and requirements: equal for a resent copy."""
    wire = {"payload": payload.to_wire(), "requirements": requirements.to_wire()}
    return json.dumps(wire, sort_keys=True, separators=(",", ":"))
