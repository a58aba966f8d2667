"""The ``batch-settlement`` scheme on EVM, the facilitator's part: verify channel payments, settle
deposits, claims, sweeps and refunds on the batch-settlement contract.

Two mechanisms, one rule set: ``BATCH_EIP3009`` and ``BATCH_PERMIT2`` differ only in the
``assetTransferMethod`` the registry finds them by. A deposit is judged by the method the offer
names, or, when it names none, by the authorization the payload carries (as the SDKs resolve it),
so either mechanism verifies a deposit of either kind.

Rules of this module (those of ``exact_eip3009`` hold too: time is an argument, the server's
requirements are what is judged, failures are values):

* ``/verify`` takes the client payloads (``deposit``, ``voucher``, ``refund``); ``/settle`` takes
  ``deposit`` and the server payloads (``claim``, ``settle``, a ``refund`` the server completed).
  Any other type is ``invalid_batch_settlement_evm_payload_type``; a payload of the right type and
  the wrong shape is ``invalid_batch_settlement_evm_<type>_payload``.
* Verification is one ordered table, ``VERIFY_CHECKS``, in the Python SDK facilitator's order
  (``scheme.py`` verify, ``utils.validate_channel_config``, ``deposit.verify_deposit`` with
  ``deposit_eip3009`` / ``deposit_permit2``, ``voucher.verify_voucher``) and with its reasons, so
  the first failing row gives the same reason. Rows that read the chain are marked ``_reads``:
  ``check`` runs the table up to the first of them, ``check_on_chain`` runs the rest (a read that
  fails answers ``..._channel_not_found`` for a voucher or refund, ``..._rpc_read_failed`` for a
  deposit, as the SDK does) and then the on-chain step written out beside the table: a deposit is
  simulated (``..._deposit_simulation_failed``). A passing verify carries the channel snapshot as
  its ``extra``.
* Signatures are checked as the contract's ``SignatureChecker`` will: a voucher whose channel names
  a payer authorizer is an ECDSA signature of that key only; otherwise it, like a deposit
  authorization, is checked against the payer, by ECDSA when the payer has no code and by
  EIP-1271 ``isValidSignature`` when it has (no fallback from one to the other).
* ``/settle`` of server payloads runs ``SETTLE_CHECKS``, the same way, then builds the transaction
  and simulates it (``..._<type>_simulation_failed``). Signed refunds: the refund nonce must be the
  channel's on-chain ``refundNonce`` and a given receiver-authorizer signature must sign this
  channel, nonce and amount. A claim or refund whose server sent no authorizer signature is signed
  here when the channels' ``receiverAuthorizer`` is this facilitator (``/supported`` advertises
  it), else refused (``..._authorizer_address_mismatch``). A refund's claims are sent (as one
  ``multicall`` with the refund) only when one of them raises the channel's ``totalClaimed``.
* A settlement succeeds only with its event in the receipt, from the batch contract: ``Deposited``,
  ``Claimed``, ``Settled`` or ``Refunded``. A receipt without it, or a revert, is the type's
  ``..._transaction_failed`` (the SDKs answer a reverted receipt so). The answer's ``amount`` is
  read from the event (deposited, settled to the receiver, refunded; ``""`` for a claim, which
  moves no tokens) and its ``extra.channelState`` from the chain after the receipt.
* Deduplication: a deposit spends its authorization (the EIP-3009 nonce, or the Permit2 nonce) and
  claims it like an ``exact`` payment does; claims, sweeps and refunds claim nothing (the chain
  makes them idempotent, or the refund nonce protects them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, cast

from eth_abi import decode

from ..errors import ChainError
from ..evm.backend import ChainReads
from ..evm.chain import Log, Receipt
from ..evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    EVENT_TOPICS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ChannelConfig,
    ChannelState,
    VoucherClaim,
    channel_id,
    claim_batch_digest,
    claim_with_signature_call,
    deposit_call,
    deposit_witness_digest,
    erc3009_collector_data,
    erc3009_deposit_nonce,
    multicall_call,
    permit2_collector_data,
    read_channel,
    read_receiver,
    receive_authorization_digest,
    refund_digest,
    refund_with_signature_call,
    settle_call,
    voucher_digest,
)
from ..evm.eip712 import SignatureError, checksum, recover_digest
from ..evm.permit2 import PERMIT2_ADDRESS, allowance
from ..evm.token import encode_call
from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayloadV1,
    PaymentRequirementsV1,
    ProtocolError,
    Reason,
    SupportedKind,
)
from .batch_wire import (
    CLAIM,
    DEPOSIT,
    REFUND,
    SETTLE,
    VOUCHER,
    AnyBatchPayload,
    ClaimPayload,
    DepositPayload,
    Erc3009Deposit,
    PayloadError,
    Permit2Deposit,
    RefundPayload,
    SettlePayload,
    VoucherPayload,
    parse_payload,
)
from .offer import Offer
from .verdict import Judging, Step, Verdict

SCHEME = "batch-settlement"
VALID_BEFORE_MARGIN = 6  # seconds an EIP-3009 deposit authorization must outlive verification
DEADLINE_MARGIN = 6  # the same for a Permit2 deposit's deadline (the SDKs' PERMIT2_DEADLINE_BUFFER)
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
GAS_FLOOR = 100_000  # a settlement's gas limit: twice what its simulation used, and at least this
UNMEASURED_GAS = 3_000_000  # the limit of a settlement whose simulation could not say what it used

R = Reason
_PREFIX = "invalid_batch_settlement_evm_"


def _reason(name: str) -> Reason:
    return Reason(_PREFIX + name)


# -- the candidate under judgement ------------------------------------------------------------------


@dataclass
class Candidate:
    """One payment under judgement: the client's claim, the server's offer, the judging, and
    (in ``check_on_chain`` only) the chain, whose reads are made once, when a row first needs them."""

    accepted_scheme: str
    accepted_network: str
    offer: Offer
    payload: AnyBatchPayload | None
    judging: Judging
    chain: ChainReads | None = None

    # -- what the rows read of the payload
    @property
    def config(self) -> ChannelConfig:
        return cast("DepositPayload | VoucherPayload | RefundPayload", self.payload).config

    @property
    def channel(self) -> bytes:
        """The channel id the voucher names (the config must hash to it: the first row after the head)."""
        return cast("DepositPayload | VoucherPayload | RefundPayload", self.payload).voucher.channel_id

    @property
    def deposit(self) -> DepositPayload | None:
        return self.payload if isinstance(self.payload, DepositPayload) else None

    @property
    def method(self) -> str:
        """The deposit's transfer method: the offer's, else the authorization's kind (the SDKs')."""
        hinted = self.offer.extra.get("assetTransferMethod")
        if isinstance(hinted, str) and hinted:
            return hinted
        deposit = self.deposit
        return "permit2" if deposit and isinstance(deposit.authorization, Permit2Deposit) else "eip3009"

    @property
    def erc3009(self) -> Erc3009Deposit | None:
        d = self.deposit
        if d is None or self.method == "permit2" or not isinstance(d.authorization, Erc3009Deposit):
            return None
        return d.authorization

    @property
    def permit2(self) -> Permit2Deposit | None:
        d = self.deposit
        if d is None or self.method != "permit2" or not isinstance(d.authorization, Permit2Deposit):
            return None
        return d.authorization

    # -- what the rows read of the chain (each once)
    @property
    def reads(self) -> ChainReads:
        if self.chain is None:
            raise RuntimeError("a row that reads the chain ran without one")  # _run never lets it
        return self.chain

    @cached_property
    def state(self) -> ChannelState:
        return read_channel(self.reads, self.channel)

    @cached_property
    def refund_state(self) -> ChannelState:
        refund = cast(RefundPayload, self.payload)
        return read_channel(self.reads, channel_id(refund.config, self.judging.chain_id))

    def signed_by(self, signer: str, digest: bytes, signature: bytes) -> bool:
        """Whether ``signer`` signed ``digest``, as ``SignatureChecker`` decides: EIP-1271 when
        ``signer`` has code, ECDSA otherwise."""
        if self.reads.code(signer):
            call = encode_call("isValidSignature(bytes32,bytes)", digest, signature)
            result = self.reads.call(signer, call)
            return result.success and result.output[:4] == ERC1271_MAGIC
        return _recovers(digest, signature, signer)


def _recovers(digest: bytes, signature: bytes, signer: str) -> bool:
    try:
        return recover_digest(digest, signature).lower() == signer.lower()
    except SignatureError:
        return False


Check = Callable[[Candidate], bool]


def _reads(check: Check) -> Check:
    """Mark a row that reads the chain: ``check`` stops before it, ``check_on_chain`` runs it."""
    check.reads_chain = True  # type: ignore[attr-defined]
    return check


def _is_zero(address: str) -> bool:
    return int(address, 16) == 0


def _uint_of(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


# -- the rows ---------------------------------------------------------------------------------------


def _receiver_authorizer_row(c: Candidate) -> bool:
    wanted = c.offer.extra.get("receiverAuthorizer")
    if not isinstance(wanted, str) or not wanted:
        return False
    try:
        return not _is_zero(wanted) and checksum(wanted) == c.config.receiver_authorizer
    except ValueError:
        return False


def _withdraw_delay_row(c: Candidate) -> bool:
    wanted = c.offer.extra.get("withdrawDelay")
    return wanted is None or _uint_of(wanted) == c.config.withdraw_delay


def _receive_authorization_row(c: Candidate) -> bool:
    a, d = c.erc3009, c.deposit
    if a is None or d is None:
        return True
    nonce = erc3009_deposit_nonce(c.channel, a.salt)
    digest = receive_authorization_digest(
        c.offer.domain, c.config.payer, d.amount, a.valid_after, a.valid_before, nonce
    )
    return c.signed_by(c.config.payer, digest, a.signature)


def _permit2_signature_row(c: Candidate) -> bool:
    p = c.permit2
    if p is None:
        return True
    digest = deposit_witness_digest(c.judging.chain_id, p.token, p.amount, p.nonce, p.deadline, p.channel_id)
    return c.signed_by(p.payer, digest, p.signature)


def _permit2_allowance_row(c: Candidate) -> bool:
    p, d = c.permit2, c.deposit
    if p is None or d is None:
        return True
    try:
        return allowance(c.reads, c.offer.asset, c.config.payer, PERMIT2_ADDRESS) >= d.amount
    except ChainError:
        return False  # the SDK answers an allowance it cannot read as missing


def _voucher_signature_row(c: Candidate) -> bool:
    voucher = cast("DepositPayload | VoucherPayload | RefundPayload", c.payload).voucher
    digest = voucher_digest(c.judging.chain_id, voucher.channel_id, voucher.max_claimable)
    if not _is_zero(c.config.payer_authorizer):
        return _recovers(digest, voucher.signature, c.config.payer_authorizer)  # ECDSA only
    return c.signed_by(c.config.payer, digest, voucher.signature)


def _payer_balance_row(c: Candidate) -> bool:
    d = c.deposit
    return d is None or c.reads.balance_of(c.config.payer, c.offer.asset) >= d.amount


def _ceiling(c: Candidate) -> int:
    return cast("DepositPayload | VoucherPayload | RefundPayload", c.payload).voucher.max_claimable


def _within_balance_row(c: Candidate) -> bool:
    d = c.deposit
    return _ceiling(c) <= c.state.balance + (d.amount if d else 0)


def _above_claimed_row(c: Candidate) -> bool:
    if isinstance(c.payload, RefundPayload):
        return _ceiling(c) >= c.state.total_claimed  # a zero-charge voucher may equal it
    return _ceiling(c) > c.state.total_claimed


def _deposit_only(check: Check) -> Check:
    return lambda c: c.deposit is None or check(c)


def _eip3009_only(check: Check) -> Check:
    return lambda c: c.erc3009 is None or check(c)


def _permit2_only(check: Check) -> Check:
    return lambda c: c.permit2 is None or check(c)


# The rows every operation starts with (scheme.py verify, before the payload is read).
HEAD_CHECKS: tuple[tuple[str, Reason, Check], ...] = (
    (
        "scheme is batch-settlement",
        _reason("scheme"),
        lambda c: c.accepted_scheme == SCHEME == c.offer.scheme,
    ),
    (
        "network matches requirements",
        _reason("network_mismatch"),
        lambda c: c.accepted_network == c.offer.network,
    ),
    # x402sim's: the SDK would read another chain's state
    ("network is this chain", _reason("network_mismatch"), lambda c: c.offer.chain_id == c.judging.chain_id),
)

# /verify of deposit, voucher and refund payloads (and a deposit's /settle), in the SDK's order.
VERIFY_CHECKS: tuple[tuple[str, Reason, Check], ...] = (
    *HEAD_CHECKS,
    # utils.validate_channel_config: spec rules 1-5
    (
        "channel id is the config's hash",
        _reason("channel_id_mismatch"),
        lambda c: channel_id(c.config, c.judging.chain_id) == c.channel,
    ),
    ("receiver is payTo", _reason("receiver_mismatch"), lambda c: c.config.receiver == c.offer.pay_to),
    (
        "receiverAuthorizer is extra.receiverAuthorizer (not zero)",
        _reason("receiver_authorizer_mismatch"),
        _receiver_authorizer_row,
    ),
    ("token is the asset", _reason("token_mismatch"), lambda c: c.config.token == c.offer.asset),
    ("withdrawDelay is extra.withdrawDelay", _reason("withdraw_delay_mismatch"), _withdraw_delay_row),
    (
        "withdrawDelay is 15 minutes to 30 days",
        _reason("withdraw_delay_out_of_range"),
        lambda c: MIN_WITHDRAW_DELAY <= c.config.withdraw_delay <= MAX_WITHDRAW_DELAY,
    ),
    # deposit.verify_deposit: the deposit's authorization
    (
        "deposit: a permit2 offer's deposit carries a permit2Authorization",
        _reason("payload_type"),
        _deposit_only(lambda c: c.method != "permit2" or c.permit2 is not None),
    ),
    # deposit_eip3009.verify_eip3009_deposit_authorization
    (
        "deposit (eip3009): the deposit carries an erc3009Authorization",
        _reason("erc3009_authorization_required"),
        _deposit_only(lambda c: c.method == "permit2" or c.erc3009 is not None),
    ),
    (
        "deposit (eip3009): extra has the token's EIP-712 name and version",
        _reason("missing_eip712_domain"),
        _eip3009_only(lambda c: bool(c.offer.extra.get("name")) and bool(c.offer.extra.get("version"))),
    ),
    (
        "deposit (eip3009): validBefore leaves a block's time",
        _reason("payload_authorization_valid_before"),
        _eip3009_only(
            lambda c: cast(Erc3009Deposit, c.erc3009).valid_before >= c.judging.now + VALID_BEFORE_MARGIN
        ),
    ),
    (
        "deposit (eip3009): validAfter has passed",
        _reason("payload_authorization_valid_after"),
        _eip3009_only(lambda c: cast(Erc3009Deposit, c.erc3009).valid_after <= c.judging.now),
    ),
    (
        "deposit (eip3009): the payer signed ReceiveWithAuthorization to the collector for this channel",
        _reason("receive_authorization_signature"),
        _reads(_receive_authorization_row),
    ),
    # deposit_permit2._verify_permit2_typed_data, resolve_permit2_deposit_branch
    (
        "deposit (permit2): from is the payer",
        _reason("permit2_invalid_signature"),
        _permit2_only(lambda c: cast(Permit2Deposit, c.permit2).payer == c.config.payer),
    ),
    (
        "deposit (permit2): spender is the Permit2 deposit collector",
        _reason("permit2_invalid_spender"),
        _permit2_only(
            lambda c: (
                cast(Permit2Deposit, c.permit2).spender.lower() == PERMIT2_DEPOSIT_COLLECTOR_ADDRESS.lower()
            )
        ),
    ),
    (
        "deposit (permit2): permitted token is the asset",
        _reason("token_mismatch"),
        _permit2_only(lambda c: cast(Permit2Deposit, c.permit2).token == c.offer.asset),
    ),
    (
        "deposit (permit2): permitted amount is the deposit",
        _reason("permit2_amount_mismatch"),
        _permit2_only(
            lambda c: cast(Permit2Deposit, c.permit2).amount == cast(DepositPayload, c.deposit).amount
        ),
    ),
    (
        "deposit (permit2): witness is the channel id",
        _reason("channel_id_mismatch"),
        _permit2_only(lambda c: cast(Permit2Deposit, c.permit2).channel_id == c.channel),
    ),
    (
        "deposit (permit2): deadline leaves a block's time",
        _reason("permit2_deadline_expired"),
        _permit2_only(lambda c: cast(Permit2Deposit, c.permit2).deadline >= c.judging.now + DEADLINE_MARGIN),
    ),
    (
        "deposit (permit2): the payer signed the witness transfer",
        _reason("permit2_invalid_signature"),
        _reads(_permit2_signature_row),
    ),
    (
        "deposit (permit2): the payer's allowance for Permit2 covers the deposit",
        _reason("permit2_allowance_required"),
        _reads(_permit2_allowance_row),
    ),
    # deposit._verify_shared_deposit_state, voucher.verify_voucher: spec rules 6-10
    (
        "voucher is signed by the payer authorizer (ECDSA), or by the payer (ECDSA or EIP-1271)",
        _reason("voucher_signature"),
        _reads(_voucher_signature_row),
    ),
    (
        "voucher, refund: the channel exists (balance > 0)",
        _reason("channel_not_found"),
        _reads(lambda c: c.deposit is not None or c.state.balance > 0),
    ),
    (
        "deposit: the payer holds the deposit",
        _reason("insufficient_balance"),
        _reads(_payer_balance_row),
    ),
    (
        "maxClaimableAmount is within the balance (plus the deposit)",
        _reason("cumulative_exceeds_balance"),
        _reads(_within_balance_row),
    ),
    (
        "maxClaimableAmount is above totalClaimed (a refund's: not below)",
        _reason("cumulative_below_claimed"),
        _reads(_above_claimed_row),
    ),
)


# -- the settle-side rows (claim, settle, a completed refund) -------------------------------------


def _refund(c: Candidate) -> RefundPayload | None:
    return c.payload if isinstance(c.payload, RefundPayload) else None


def _refundable(c: Candidate) -> int | None:
    """What ``refundWithSignature`` would move after the payload's claims (refund.py
    ``_get_refundable_amount``): None when the claims exceed the balance."""
    refund = cast(RefundPayload, c.payload)
    state = c.refund_state
    claimed = max([state.total_claimed, *_claims_of(c, state.channel_id)])
    if claimed > state.balance:
        return None
    return min(cast(int, refund.amount), state.balance - claimed)


def _claims_of(c: Candidate, channel: bytes) -> list[int]:
    refund = cast(RefundPayload, c.payload)
    return [
        claim.total_claimed
        for claim in refund.claims
        if channel_id(claim.config, c.judging.chain_id) == channel
    ]


def _refund_signature_row(c: Candidate) -> bool:
    refund = _refund(c)
    if refund is None or refund.refund_signature is None:
        return True
    digest = refund_digest(
        c.judging.chain_id,
        c.refund_state.channel_id,
        cast(int, refund.refund_nonce),
        cast(int, refund.amount),
    )
    return c.signed_by(refund.config.receiver_authorizer, digest, refund.refund_signature)


def _delegated(c: Candidate) -> bool:
    """Rows whose server sent no authorizer signature must be this facilitator's to sign."""
    me = c.judging.facilitator.lower()
    if isinstance(c.payload, ClaimPayload) and c.payload.claim_signature is None:
        return all(claim.config.receiver_authorizer.lower() == me for claim in c.payload.claims)
    refund = _refund(c)
    if refund is None:
        return True
    if refund.refund_signature is None and refund.config.receiver_authorizer.lower() != me:
        return False
    if refund.claims and refund.claim_signature is None:
        return all(claim.config.receiver_authorizer.lower() == me for claim in refund.claims)
    return True


def _claims_raise(c: Candidate, claims: Sequence[VoucherClaim]) -> bool:
    """Whether any of ``claims`` raises its channel's on-chain ``totalClaimed``."""
    chain_id = c.judging.chain_id
    return any(
        claim.total_claimed > read_channel(c.reads, channel_id(claim.config, chain_id)).total_claimed
        for claim in claims
    )


def _something_to_settle(c: Candidate) -> bool:
    if not isinstance(c.payload, SettlePayload):
        return True
    claimed, settled = read_receiver(c.reads, c.payload.receiver, c.payload.token)
    return claimed > settled


SETTLE_CHECKS: tuple[tuple[str, Reason, Check], ...] = (
    *HEAD_CHECKS,
    # x402sim's: the SDK raises on a missing amount (..._refund_transaction_failed) and lets the
    # contract refuse a zero one (ZeroRefund)
    (
        "refund: amount is given and positive",
        _reason("refund_amount_invalid"),
        lambda c: (r := _refund(c)) is None or bool(r.amount),
    ),
    # refund.execute_refund_with_signature
    (
        "refund: something is left to refund after the claims",
        _reason("refund_no_balance"),
        _reads(lambda c: _refund(c) is None or _refundable(c) != 0),
    ),
    # spec rule 11 (the SDK leaves both to the simulation, whose reason they share)
    (
        "refund: refundNonce is the channel's on-chain refundNonce",
        _reason("refund_simulation_failed"),
        _reads(lambda c: (r := _refund(c)) is None or r.refund_nonce == c.refund_state.refund_nonce),
    ),
    (
        "refund: the receiver authorizer signed this channel, nonce and amount",
        _reason("refund_simulation_failed"),
        _reads(_refund_signature_row),
    ),
    # claim.execute_claim_with_signature, refund.execute_refund_with_signature
    (
        "claim, refund: what the server did not sign, this facilitator may (it is the receiverAuthorizer)",
        _reason("authorizer_address_mismatch"),
        _delegated,
    ),
    # x402sim's: a batch that raises no channel's totalClaimed would land without a Claimed event
    (
        "claim: a row raises its channel's on-chain totalClaimed",
        _reason("claim_simulation_failed"),
        _reads(lambda c: not isinstance(c.payload, ClaimPayload) or _claims_raise(c, c.payload.claims)),
    ),
    # settle.execute_settle
    (
        "settle: the receiver has claimed funds not yet settled",
        _reason("nothing_to_settle"),
        _reads(_something_to_settle),
    ),
)


def _run(
    rows: Sequence[tuple[str, Reason, Check]], c: Candidate, start: int
) -> tuple[Reason | None, str, int]:
    """Run ``rows`` from ``start``: (reason, message) of the first that fails, and where a run
    without a chain stopped (the first row that reads it), or ``len(rows)`` when all passed."""
    for i in range(start, len(rows)):
        what, reason, check = rows[i]
        if c.chain is None and getattr(check, "reads_chain", False):
            return None, "", i
        if not check(c):
            return reason, f"failed: {what}", i
    return None, "", len(rows)


# -- the verdict's payment ------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPayment:
    """What a batch-settlement verdict carries: the parsed payload, whether it is judged for
    ``/settle``, the first row ``check_on_chain`` runs, and, once the on-chain step built it, the
    batch contract call a settlement sends with its gas limit."""

    payload: AnyBatchPayload
    settling: bool
    resume: int
    call: bytes = b""
    gas: int | None = None
    channels: tuple[bytes, ...] = field(default=())  # the channels the answer reports

    @property
    def kind(self) -> str:
        return self.payload.type

    @property
    def rows(self) -> Sequence[tuple[str, Reason, Check]]:
        return SETTLE_CHECKS if self.settling and self.kind != DEPOSIT else VERIFY_CHECKS


class _NoKey(Exception):
    """A receiver authorization is to be signed here, and the judging has no key to sign with."""


def _read_failure(parts: BatchPayment) -> Reason:
    """The reason a failed chain read gives, as the SDK answers it: a voucher or refund's channel
    is not found; a deposit's or a sweep's reads failed; a refund's settlement failed."""
    if parts.kind in (VOUCHER, REFUND) and not parts.settling:
        return _reason("channel_not_found")
    if parts.kind == REFUND:
        return _reason("refund_transaction_failed")
    return _reason("rpc_read_failed")


def _passed(verdict: Verdict) -> tuple[BatchPayment, Offer]:
    return cast(BatchPayment, verdict.payload), cast(Offer, verdict.offer)


def _payer_of(payload: AnyBatchPayload) -> str | None:
    if isinstance(payload, DepositPayload | VoucherPayload | RefundPayload):
        return payload.config.payer
    return None


# -- what the chain says after --------------------------------------------------------------------


def _events(receipt: Receipt, name: str) -> list[Log]:
    topic = EVENT_TOPICS[name]
    return [
        log
        for log in receipt.logs
        if len(log.topics) > 1
        and log.topics[0] == topic
        and log.address.lower() == BATCH_SETTLEMENT_ADDRESS.lower()
    ]


def _uint128s(data: bytes, n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in decode(["uint128"] * n, data[: 32 * n]))


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(checksum(address)[2:])


def _answer_events(receipt: Receipt, payment: BatchPayment) -> list[Log]:
    """The logs of ``payment``'s event in ``receipt`` that belong to it."""
    p = payment.payload
    if isinstance(p, DepositPayload):
        return [log for log in _events(receipt, "Deposited") if log.topics[1:2] == (p.voucher.channel_id,)]
    if isinstance(p, ClaimPayload):
        return [log for log in _events(receipt, "Claimed") if log.topics[1] in payment.channels]
    if isinstance(p, SettlePayload):
        return [
            log
            for log in _events(receipt, "Settled")
            if log.topics[1:3] == (_word(p.receiver), _word(p.token))
        ]
    return [log for log in _events(receipt, "Refunded") if log.topics[1] in payment.channels]


# -- the mechanism ----------------------------------------------------------------------------------


class BatchSettlement:
    """``batch-settlement`` on ``eip155`` networks: the facilitator's part of a ``Mechanism`` (see
    ``mechanisms.base``) and the rules of this module. A client pays it through a channel it keeps
    (``client_refusal`` says so to a one-shot payer)."""

    scheme = SCHEME
    family = "eip155"
    ledger_rules: str | None = "evm.batch_rules"
    reports_amount = True
    checks = VERIFY_CHECKS

    def __init__(self, transfer_method: str) -> None:
        self.transfer_method = transfer_method

    # client part: a channel's payments are not one-shot signatures
    def client_refusal(self, offer: Offer) -> str | None:
        return "batch-settlement is paid through a channel, which this one-shot payer does not keep"

    def sign(self, key: bytes, payer: str, offer: Offer, now: int, nonce: bytes) -> dict[str, Any]:
        raise ValueError(self.client_refusal(offer))

    # server part (the server adds receiverAuthorizer and withdrawDelay, which are its own)
    def extra(self, asset_name: str, asset_version: str) -> dict[str, Any]:
        extra: dict[str, Any] = {"name": asset_name, "version": asset_version}
        if self.transfer_method != "eip3009":
            extra["assetTransferMethod"] = self.transfer_method
        return extra

    # facilitator part
    def supported_kinds(self, network: str, facilitator: str = "") -> list[SupportedKind]:
        extra = {"receiverAuthorizer": facilitator} if facilitator else None
        return [SupportedKind(x402_version=2, scheme=self.scheme, network=network, extra=extra)]

    def check(self, payment: AnyPaymentPayload, requirements: AnyRequirements, judging: Judging) -> Verdict:
        if isinstance(payment, PaymentPayloadV1) or isinstance(requirements, PaymentRequirementsV1):
            return Verdict(R.invalid_x402_version, "batch-settlement is an x402 v2 scheme")
        try:
            offer = Offer.of(requirements, "paymentRequirements")
        except ProtocolError as exc:
            return Verdict(R.invalid_payment_requirements, str(exc))
        head = Candidate(payment.accepted.scheme, payment.accepted.network, offer, None, judging)
        reason, message, _ = _run(HEAD_CHECKS, head, 0)
        if reason is not None:
            return Verdict(reason, message)
        try:
            payload = parse_payload(payment.payload)
        except PayloadError as exc:
            kind = "payload_type" if exc.kind == "type" else f"{exc.kind}_payload"
            return Verdict(_reason(kind), str(exc))
        payer = _payer_of(payload)
        allowed = (DEPOSIT, CLAIM, SETTLE, REFUND) if judging.settling else (DEPOSIT, VOUCHER, REFUND)
        if payload.type not in allowed or (
            judging.settling and isinstance(payload, RefundPayload) and not payload.completed
        ):
            op = "/settle" if judging.settling else "/verify"
            return Verdict(_reason("payload_type"), f"{op} does not take a {payload.type} payload", payer)
        parts = BatchPayment(payload, judging.settling, len(HEAD_CHECKS))
        candidate = replace(head, payload=payload)
        reason, message, resume = _run(parts.rows, candidate, parts.resume)
        if reason is not None:
            return Verdict(reason, message, payer)
        charge = payload.amount if isinstance(payload, DepositPayload) else 0
        return Verdict(None, "", payer, replace(parts, resume=resume), offer, charge=charge)

    def check_on_chain(self, verdict: Verdict, chain: ChainReads, judging: Judging, mode: str) -> Verdict:
        if not verdict.ok:
            return verdict
        parts, offer = _passed(verdict)
        c = Candidate(SCHEME, offer.network, offer, parts.payload, judging, chain)
        sends = parts.settling or parts.kind == DEPOSIT  # a voucher or refund /verify ends with the rows
        try:
            reason, message, _ = _run(parts.rows, c, parts.resume)
            if reason is not None:
                return Verdict(reason, message, verdict.payer)
            if not sends:
                return replace(verdict, extra=c.state.to_wire())
            call, channels = self._call(c, parts)
        except ChainError as exc:
            return Verdict(_read_failure(parts), f"a chain read failed: {exc}", verdict.payer)
        except _NoKey as exc:
            return Verdict(_reason("authorizer_not_configured"), str(exc), verdict.payer)
        simulated = chain.call(
            BATCH_SETTLEMENT_ADDRESS, call, sender=judging.facilitator, timestamp=judging.now
        )
        if not simulated.success:
            return Verdict(
                _reason(f"{parts.kind}_simulation_failed"),
                f"simulation reverted: {simulated.revert_reason}",
                verdict.payer,
            )
        # a JSON-RPC eth_call reports no gas used (0): then a limit any batch call fits in
        gas = max(GAS_FLOOR, 2 * simulated.gas_used) if simulated.gas_used else UNMEASURED_GAS
        done = replace(parts, call=call, gas=gas, channels=channels)
        extra = c.state.to_wire() if parts.kind == DEPOSIT else None
        return replace(verdict, payload=done, extra=extra)

    def _call(self, c: Candidate, parts: BatchPayment) -> tuple[bytes, tuple[bytes, ...]]:
        """The batch contract call that settles ``parts``, and the channels it touches; what the
        server did not sign is signed with this facilitator's key (``_delegated`` allowed it)."""
        p, chain_id = parts.payload, c.judging.chain_id
        if isinstance(p, DepositPayload):
            a = p.authorization
            if isinstance(a, Permit2Deposit):
                data = permit2_collector_data(a.nonce, a.deadline, a.signature)
                return deposit_call(p.config, p.amount, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data), (c.channel,)
            data = erc3009_collector_data(a.valid_after, a.valid_before, a.salt, a.signature)
            return deposit_call(p.config, p.amount, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, data), (c.channel,)
        if isinstance(p, SettlePayload):
            return settle_call(p.receiver, p.token), ()
        if isinstance(p, ClaimPayload):
            signature = p.claim_signature or self._sign(c, claim_batch_digest(chain_id, p.claims))
            channels = tuple(dict.fromkeys(channel_id(x.config, chain_id) for x in p.claims))
            return claim_with_signature_call(p.claims, signature), channels
        refund = cast(RefundPayload, p)
        channel = c.refund_state.channel_id
        nonce, amount = cast(int, refund.refund_nonce), cast(int, refund.amount)
        signature = refund.refund_signature or self._sign(c, refund_digest(chain_id, channel, nonce, amount))
        call = refund_with_signature_call(refund.config, amount, nonce, signature)
        if not _claims_raise(c, refund.claims):
            return call, (channel,)
        claim_signature = refund.claim_signature or self._sign(c, claim_batch_digest(chain_id, refund.claims))
        claims = claim_with_signature_call(refund.claims, claim_signature)
        return multicall_call([claims, call]), (channel,)

    @staticmethod
    def _sign(c: Candidate, digest: bytes) -> bytes:
        if c.judging.sign is None:
            raise _NoKey("this facilitator has no key to sign receiver authorizations with")
        return c.judging.sign(digest)

    def claim(self, verdict: Verdict) -> tuple[tuple[str, str], int] | None:
        """A deposit's authorization, keyed as an ``exact`` payment of the same kind is (the
        token's EIP-3009 nonce, or the Permit2 nonce); None for what the chain deduplicates."""
        parts, _ = _passed(verdict)
        p = parts.payload
        if not isinstance(p, DepositPayload):
            return None
        payer = p.config.payer.lower()
        a = p.authorization
        if isinstance(a, Permit2Deposit):
            return (payer, f"permit2:{a.nonce}"), a.deadline
        return (payer, "0x" + erc3009_deposit_nonce(p.voucher.channel_id, a.salt).hex()), a.valid_before

    def side_claims(self, verdict: Verdict) -> tuple[tuple[str, str], ...]:
        return ()

    def settlement(self, verdict: Verdict, chain: ChainReads, judging: Judging) -> tuple[Step, ...]:
        parts, _ = _passed(verdict)
        return (Step(BATCH_SETTLEMENT_ADDRESS, parts.call, gas=parts.gas),)

    def transfer_matches(self, receipt: Receipt, verdict: Verdict) -> bool:
        """Whether the receipt holds the settle type's event from the batch contract."""
        parts, _ = _passed(verdict)
        return bool(_answer_events(receipt, parts))

    def reason_for_revert(self, text: str | None) -> Reason:
        return _reason("transaction_reverted")

    def receipt_failure(self, receipt: Receipt, verdict: Verdict) -> Reason:
        """A reverted receipt, or one without the type's event: the type's ``..._transaction_failed``."""
        parts, _ = _passed(verdict)
        return _reason(f"{parts.kind}_transaction_failed")

    def settle_answer(
        self, receipt: Receipt, verdict: Verdict, chain: ChainReads
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The answer's ``amount`` (from the type's event) and ``extra`` (the channel state, read
        now; for a sweep, the receiver's totals)."""
        parts, _ = _passed(verdict)
        events = _answer_events(receipt, parts) if receipt.success else []
        p = parts.payload
        amount: str | None = ""  # a claim moves no tokens
        if not isinstance(p, ClaimPayload):
            amount = str(sum(_uint128s(log.data, 1)[0] for log in events))
        try:
            if isinstance(p, SettlePayload):
                claimed, settled = read_receiver(chain, p.receiver, p.token)
                receiver = {"receiver": p.receiver, "token": p.token}
                return amount, {
                    "receiverState": {**receiver, "totalClaimed": str(claimed), "totalSettled": str(settled)}
                }
            states = [read_channel(chain, channel).to_wire() for channel in parts.channels]
        except ChainError:
            return amount, None
        extra: dict[str, Any] = {"channelState": states[0]} if len(states) == 1 else {}
        if isinstance(p, ClaimPayload):
            extra["channelStates"] = states
        return amount, extra or None

    def already_settled(self, chain: ChainReads, verdict: Verdict) -> bool:
        return False  # a deposit that reverted is answered as the SDKs do, whatever spent its nonce


BATCH_EIP3009 = BatchSettlement("eip3009")
BATCH_PERMIT2 = BatchSettlement("permit2")

__all__ = [
    "BATCH_EIP3009",
    "BATCH_PERMIT2",
    "HEAD_CHECKS",
    "SCHEME",
    "SETTLE_CHECKS",
    "VERIFY_CHECKS",
    "BatchPayment",
    "BatchSettlement",
    "Candidate",
]
