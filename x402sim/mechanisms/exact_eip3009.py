"""The ``exact`` scheme on EVM with EIP-3009: sign, verify in the reference order, settle.

Rules of this module:

* Time is an argument (``now``, unix seconds); the clock is never read.
* The facilitator judges a payment against the requirements the *server* sent, never against the
  ``accepted`` copy inside the payload (only its scheme and network are compared).
* Verification is one ordered table, ``CHECKS``, of (what is checked, reason code when it fails),
  in the order of the official Python SDK so that the first failing row gives the same reason.
  The last step, the on-chain simulation and its diagnosis, is written out beside the table in
  ``verify_on_chain`` because its reason depends on what the chain says. There we read the chain
  before the revert text (nonce used, token name, token version, balance), so a wrong EIP-712 name
  or version is reported as such; Python SDK 2.25 maps the revert text first and reports both as a
  bad signature (the interop tests record this difference).
* That last step is done one of two ways, with the same verdict (reason and message) by either:
  ``"simulate"`` runs the call on the chain and reads views; ``"state"`` predicts the call and
  reads the token's storage directly (``state_verify``), for the project's own tokens on a
  ``LocalChain``, and simulates anything else.
* Failures are values: every function here returns a reason, never raises for a bad payment.
* A payload this process's client part signed is parsed once: ``sign`` keeps the wire strings it
  wrote with the model it wrote them from (the last 4,096), and a payload with exactly
  those strings, and no other field, is that model (under ``codec.CHECK_TRUSTED_HOPS`` it is also
  parsed in full and must be equal). Anything else, an altered copy included, is parsed in full.
* The offline rows are judged once per authorization: ``check_offline`` keeps, for the last
  4,096 (payment, requirements) pairs it judged (the same objects: the server hands the
  facilitator at settle the ones it verified), the payload it parsed, the offer and each row's
  result but the two that depend on the time, which are judged again at every call (under
  ``codec.CHECK_TRUSTED_HOPS`` the rest is judged again too, and must not have changed).

v1 and v2 messages are both accepted; each is reduced to an ``Offer`` (the fields that matter)
before checking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ..evm.backend import ChainReads
from ..evm.chain import CallResult, Receipt
from ..evm.eip712 import (
    Authorization,
    SignatureError,
    authorization_digest,
    checksum,
    recover_digest,
    sign_digest,
    split_signature,
)
from ..evm.state_verify import Prediction
from ..evm.token import transfer_with_authorization_call
from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    ExactEvmAuthorization,
    ExactEvmPayload,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    ProtocolError,
    Reason,
    SupportedKind,
    caip2_to_v1,
    codec,
    parse_exact_evm_payload,
    v1_to_caip2,
)
from ..protocol.recent import Recent
from .offer import Offer as Offer  # re-exported: the mechanism's view of a requirement
from .verdict import Judging, Step
from .verdict import Verdict as Verdict  # re-exported: what check_offline makes

SCHEME = "exact"
CLIENT_VALID_AFTER = 0  # what the reference client signs as validAfter (x402#2601)
FACILITATOR_VALID_BEFORE_MARGIN = 6  # one block's time: an authorization must outlive its settlement
VERIFY_MODES = ("state", "simulate")  # how verify_on_chain learns the outcome (see the rules above)


class TokenViews(Protocol):
    """The token views a failed call is diagnosed from (a chain, or ``state_verify.TokenState``)."""

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool: ...
    def balance_of(self, address: str, token: str | None = None) -> int: ...
    def name_of(self, token: str | None = None) -> str: ...
    def version_of(self, token: str | None = None) -> str: ...


# -- client side -------------------------------------------------------------------------------


def sign_authorization(
    key: bytes, payer: str, offer: Offer, now: int, nonce: bytes, *, valid_after: int = CLIENT_VALID_AFTER
) -> ExactEvmPayload:
    """Sign a TransferWithAuthorization paying ``offer`` exactly, valid from ``valid_after`` (0, as the
    SDKs sign since x402#2601: a payer whose clock runs ahead of the chain's is never refused as not
    yet valid) until ``maxTimeoutSeconds`` from ``now``."""
    auth = Authorization(
        from_=payer,
        to=offer.pay_to,
        value=offer.amount,
        valid_after=valid_after,
        valid_before=now + offer.max_timeout_seconds,
        nonce=nonce,
    )
    signature = sign_digest(key, authorization_digest(offer.domain, auth))
    return ExactEvmPayload.model_validate(
        {
            "signature": "0x" + signature.hex(),
            "authorization": {
                "from": checksum(payer),
                "to": offer.pay_to,
                "value": auth.value,
                "valid_after": auth.valid_after,
                "valid_before": auth.valid_before,
                "nonce": "0x" + nonce.hex(),
            },
        }
    )


def authorization_of(payload: ExactEvmPayload) -> Authorization:
    a = payload.authorization
    return Authorization(a.from_, a.to, a.value, a.valid_after, a.valid_before, bytes.fromhex(a.nonce[2:]))


def signature_bytes(payload: ExactEvmPayload) -> bytes:
    return bytes.fromhex(payload.signature[2:])


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One payment under verification: the client's claim, the server's offer and the time."""

    accepted_scheme: str
    accepted_network: str
    offer: Offer
    payload: ExactEvmPayload
    now: int
    chain_id: int

    @property
    def auth(self) -> ExactEvmAuthorization:
        return self.payload.authorization

    def at(self, now: int) -> Candidate:
        """This candidate judged at ``now`` (``dataclasses.replace`` costs several times more)."""
        return Candidate(
            self.accepted_scheme, self.accepted_network, self.offer, self.payload, now, self.chain_id
        )


def _recovers_to_from(c: Candidate) -> bool:
    signature = signature_bytes(c.payload)
    try:
        signer = recover_digest(authorization_digest(c.offer.domain, authorization_of(c.payload)), signature)
    except SignatureError:
        return False
    return signer.lower() == c.auth.from_.lower()


# The verify order of the reference notes (section 3), one row per check: the first row whose
# predicate is False gives the reason.
CHECKS: tuple[tuple[str, Reason, Callable[[Candidate], bool]], ...] = (
    ("scheme is exact", Reason.unsupported_scheme, lambda c: c.accepted_scheme == SCHEME == c.offer.scheme),
    (
        "network matches requirements",
        Reason.network_mismatch,
        lambda c: c.accepted_network == c.offer.network,
    ),
    (
        "network is this chain",
        Reason.invalid_exact_evm_failed_to_get_network_config,
        lambda c: c.offer.chain_id == c.chain_id,
    ),
    (
        "extra has EIP-712 name and version",
        Reason.missing_eip712_domain,
        lambda c: (
            isinstance(c.offer.extra.get("name"), str) and isinstance(c.offer.extra.get("version"), str)
        ),
    ),
    (
        "authorization.to is payTo",
        Reason.invalid_exact_evm_payload_recipient_mismatch,
        lambda c: c.auth.to.lower() == c.offer.pay_to.lower(),
    ),
    (
        "authorization.value is the amount",
        Reason.invalid_exact_evm_payload_authorization_value_mismatch,
        lambda c: c.auth.value == c.offer.amount,
    ),
    (
        "validBefore leaves a block's time",
        Reason.invalid_exact_evm_payload_authorization_valid_before,
        lambda c: c.auth.valid_before >= c.now + FACILITATOR_VALID_BEFORE_MARGIN,
    ),
    (
        "validAfter has passed",
        Reason.invalid_exact_evm_payload_authorization_valid_after,
        lambda c: c.auth.valid_after <= c.now,
    ),
    ("signature recovers to from", Reason.invalid_exact_evm_payload_signature, _recovers_to_from),
)


def _passed(verdict: Verdict) -> tuple[ExactEvmPayload, Offer]:
    """The payload and offer of a verdict that passed (``check_offline`` gives both to those only)."""
    return cast(ExactEvmPayload, verdict.payload), cast(Offer, verdict.offer)


_signed: Recent[tuple[str, ...], ExactEvmPayload] = Recent(4096)
_AUTHORIZATION_FIELDS = ("from", "to", "value", "validAfter", "validBefore", "nonce")
_PAYLOAD_KEYS, _AUTHORIZATION_KEYS = (
    frozenset(("signature", "authorization")),
    frozenset(_AUTHORIZATION_FIELDS),
)


def _wire_strings(payload: object) -> tuple[str, ...] | None:
    """The strings of an exact payload's wire dict, if it has exactly the fields of one, all strings."""
    if type(payload) is not dict or payload.keys() != _PAYLOAD_KEYS:
        return None
    auth = payload["authorization"]
    if type(auth) is not dict or auth.keys() != _AUTHORIZATION_KEYS:
        return None
    strings = (payload["signature"], *(auth[name] for name in _AUTHORIZATION_FIELDS))
    return strings if all(type(s) is str for s in strings) else None


def _remember_signed(wire: dict[str, Any], signed: ExactEvmPayload) -> None:
    strings = _wire_strings(wire)
    if strings is not None:
        _signed.keep(strings, signed)


def _parse_payload(data: dict[str, Any]) -> ExactEvmPayload:
    """``parse_exact_evm_payload``, for a payload this process signed without parsing it again."""
    strings = _wire_strings(data)
    known = _signed.get(strings) if strings is not None else None
    if known is not None and not codec.CHECK_TRUSTED_HOPS:
        return known
    parsed = parse_exact_evm_payload(data)
    if known is not None and parsed != known:
        raise AssertionError("a payload this process signed parses to another model")
    return known if known is not None else parsed


# Rows judged again at every call of ``check_offline``: they depend on ``now``.
_TIME_CHECKS = ("validBefore leaves a block's time", "validAfter has passed")
TIME_ROWS = frozenset(i for i, (what, _, _) in enumerate(CHECKS) if what in _TIME_CHECKS)
if len(TIME_ROWS) != len(_TIME_CHECKS):  # a renamed row must not be kept as if it were timeless
    raise RuntimeError(f"CHECKS has no row named one of {_TIME_CHECKS}")


@dataclass(frozen=True)
class _Judged:
    """What ``check_offline`` keeps of one (payment, requirements) pair (see the rules): the pair
    itself (so its identity stays theirs), and either the verdict of a check before the table or
    the candidate and each row's result up to the first that fails (None for the rows of
    ``TIME_ROWS``)."""

    payment: object
    requirements: object
    early: Verdict | None
    candidate: Candidate | None
    rows: tuple[bool | None, ...]


_judged: Recent[tuple[int, int, int], _Judged] = Recent(4096)


def check_offline(
    payment: PaymentPayload | PaymentPayloadV1,
    requirements: PaymentRequirements | PaymentRequirementsV1,
    now: int,
    chain_id: int,
) -> Verdict:
    """Rows 1-9 of the table: everything that needs no chain."""
    key = (id(payment), id(requirements), chain_id)
    judged = _judged.get(key)
    if judged is None or judged.payment is not payment or judged.requirements is not requirements:
        judged = _judge_offline(payment, requirements, chain_id)
        _judged.keep(key, judged)
    elif codec.CHECK_TRUSTED_HOPS and _judge_offline(payment, requirements, chain_id) != judged:
        raise AssertionError("a payment changed between two offline checks of it")
    if judged.early is not None:
        return judged.early
    candidate = cast(Candidate, judged.candidate)
    payer = candidate.payload.authorization.from_
    timed = None
    for i, (what, reason, predicate) in enumerate(CHECKS):
        passed = judged.rows[i]
        if passed is None:
            timed = timed or candidate.at(now)
            passed = predicate(timed)
        if not passed:
            return Verdict(reason, f"failed: {what}", payer)
    return Verdict(None, "", payer, candidate.payload, candidate.offer)


def _judge_offline(
    payment: PaymentPayload | PaymentPayloadV1,
    requirements: PaymentRequirements | PaymentRequirementsV1,
    chain_id: int,
) -> _Judged:
    """The part of ``check_offline`` that does not depend on the time."""

    def early(verdict: Verdict) -> _Judged:
        return _Judged(payment, requirements, verdict, None, ())

    if payment.x402_version != (1 if isinstance(requirements, PaymentRequirementsV1) else 2):
        return early(
            Verdict(Reason.invalid_x402_version, "payload and requirements are of different x402 versions")
        )
    try:
        offer = Offer.of(requirements, "paymentRequirements")
    except ProtocolError as exc:
        return early(Verdict(Reason.invalid_payment_requirements, str(exc)))
    try:
        payload = _parse_payload(payment.payload)
        if isinstance(payment, PaymentPayload):
            Offer.of(payment.accepted, "paymentPayload.accepted")  # signed for an address, or malformed
    except ProtocolError as exc:
        return early(Verdict(Reason.invalid_payload, str(exc)))
    if isinstance(payment, PaymentPayloadV1):
        scheme, network = payment.scheme, v1_to_caip2(payment.network)
    else:
        scheme, network = payment.accepted.scheme, payment.accepted.network
    candidate = Candidate(scheme, network, offer, payload, 0, chain_id)
    rows: list[bool | None] = []
    for i, (_, _, predicate) in enumerate(CHECKS):  # in order, up to the first row that fails
        rows.append(None if i in TIME_ROWS else predicate(candidate))
        if rows[-1] is False:
            break
    return _Judged(payment, requirements, None, candidate, tuple(rows))


def verify_on_chain(verdict: Verdict, chain: ChainReads, now: int, mode: str = "simulate") -> Verdict:
    """Row 10: simulate ``transferWithAuthorization`` at ``now``; on failure, diagnose from the
    chain (nonce used, token name, token version, balance), then from the revert text.

    ``mode="state"`` predicts the call and diagnoses from the token's storage instead when it can
    (see ``state_verify``), and simulates otherwise; the verdict is the same."""
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify mode must be one of {VERIFY_MODES}, got {mode!r}")
    if not verdict.ok:
        return verdict
    payload, offer = _passed(verdict)
    if not chain.code(offer.asset):
        return Verdict(
            Reason.asset_not_deployed_contract, f"no contract at asset {offer.asset}", verdict.payer
        )
    auth = authorization_of(payload)
    token = chain.token_state(offer.asset) if mode == "state" else None
    result: CallResult | Prediction
    reader: TokenViews
    if token is None:
        result, reader = chain.call(offer.asset, settlement_calldata(payload), timestamp=now), chain
    else:
        result, reader = token.predict(auth, *settlement_vrs(payload), now), token
    if result.success:
        return verdict
    reason = _diagnose(reader, offer, auth) or reason_for_revert(result.revert_reason, simulated=True)
    return Verdict(reason, f"simulation reverted: {result.revert_reason}", verdict.payer)


def _diagnose(chain: TokenViews, offer: Offer, auth: Authorization) -> Reason | None:
    try:
        if chain.authorization_state(auth.from_, auth.nonce, offer.asset):
            return Reason.invalid_exact_evm_nonce_already_used
        if chain.name_of(offer.asset) != offer.extra["name"]:
            return Reason.invalid_exact_evm_token_name_mismatch
        if chain.version_of(offer.asset) != offer.extra["version"]:
            return Reason.invalid_exact_evm_token_version_mismatch
        if chain.balance_of(auth.from_, offer.asset) < offer.amount:
            return Reason.invalid_exact_evm_insufficient_balance
    except Exception:  # a token without these views: fall back to the revert text
        return None
    return None


def reason_for_revert(text: str | None, *, simulated: bool = False) -> Reason:
    """Map FiatToken revert text to a reason, by substring as the official SDKs do."""
    t = (text or "").lower()
    for needle, reason in (
        ("authorization is expired", Reason.invalid_exact_evm_payload_authorization_valid_before),
        ("authorization is not yet valid", Reason.invalid_exact_evm_payload_authorization_valid_after),
        ("authorization is used", Reason.invalid_exact_evm_nonce_already_used),
        ("transfer amount exceeds balance", Reason.invalid_exact_evm_insufficient_balance),
        ("invalid signature", Reason.invalid_exact_evm_payload_signature),
    ):
        if needle in t:
            return reason
    return Reason.invalid_exact_evm_transaction_simulation_failed if simulated else Reason.transaction_failed


# -- settlement --------------------------------------------------------------------------------


def settlement_calldata(payload: ExactEvmPayload) -> bytes:
    """``transferWithAuthorization`` calldata (v, r, s overload) for a 65-byte signature."""
    a = payload.authorization
    return transfer_with_authorization_call(
        a.from_,
        a.to,
        a.value,
        a.valid_after,
        a.valid_before,
        bytes.fromhex(a.nonce[2:]),
        *settlement_vrs(payload),
    )


def settlement_vrs(payload: ExactEvmPayload) -> tuple[int, bytes, bytes]:
    """The (v, r, s) that settlement sends for the payload's signature."""
    try:
        return split_signature(signature_bytes(payload))
    except SignatureError:
        return 0, b"\x00" * 32, b"\x00" * 32  # cannot succeed on chain; verify reports it first


def transfer_matches(receipt: Receipt, offer: Offer, payload: ExactEvmPayload) -> bool:
    """Whether a settlement receipt holds the expected Transfer log of the asset."""
    a = payload.authorization
    return any(
        t.token.lower() == offer.asset.lower()
        and t.from_.lower() == a.from_.lower()
        and t.to.lower() == a.to.lower()
        and t.value == a.value
        for t in receipt.transfers()
    )


# -- the mechanism -------------------------------------------------------------------------------


class ExactEip3009:
    """``exact`` on ``eip155`` networks by EIP-3009 ``transferWithAuthorization``: the functions of
    this module, as the four parts a ``Mechanism`` supplies (see ``mechanisms.base``)."""

    scheme = SCHEME
    family = "eip155"
    transfer_method = "eip3009"
    checks = CHECKS
    # The ledger backend runs this mechanism's token with ``evm.fiat_rules`` (the token's
    # transferWithAuthorization, cancelAuthorization, transfer and mint).
    ledger_rules: str | None = "evm.fiat_rules"
    reports_amount = False

    # client part
    def client_refusal(self, offer: Offer) -> str | None:
        if not (isinstance(offer.extra.get("name"), str) and isinstance(offer.extra.get("version"), str)):
            return "offer lacks the token's EIP-712 name and version"
        return None

    def sign(self, key: bytes, payer: str, offer: Offer, now: int, nonce: bytes) -> dict[str, Any]:
        signed = sign_authorization(key, payer, offer, now, nonce)
        wire = signed.to_wire()
        _remember_signed(wire, signed)
        return wire

    # server part
    def extra(self, asset_name: str, asset_version: str) -> dict[str, Any]:
        return {"name": asset_name, "version": asset_version}

    # facilitator part
    def supported_kinds(self, network: str, facilitator: str = "") -> list[SupportedKind]:
        kinds = [SupportedKind(x402_version=2, scheme=self.scheme, network=network)]
        v1_name = caip2_to_v1(network)
        if v1_name:
            kinds.append(SupportedKind(x402_version=1, scheme=self.scheme, network=v1_name))
        return kinds

    def check(self, payment: AnyPaymentPayload, requirements: AnyRequirements, judging: Judging) -> Verdict:
        return check_offline(payment, requirements, judging.now, judging.chain_id)

    def check_on_chain(self, verdict: Verdict, chain: ChainReads, judging: Judging, mode: str) -> Verdict:
        return verify_on_chain(verdict, chain, judging.now, mode)

    def claim(self, verdict: Verdict) -> tuple[tuple[str, str], int]:
        """The authorization a settlement spends, as (payer, nonce), and until when it could settle."""
        auth = _passed(verdict)[0].authorization
        return (auth.from_.lower(), auth.nonce.lower()), auth.valid_before

    def side_claims(self, verdict: Verdict) -> tuple[tuple[str, str], ...]:
        return ()

    def settlement(self, verdict: Verdict, chain: ChainReads, judging: Judging) -> tuple[Step, ...]:
        """One transaction: ``transferWithAuthorization`` on the asset."""
        payload, offer = _passed(verdict)
        return (Step(offer.asset, settlement_calldata(payload)),)

    def transfer_matches(self, receipt: Receipt, verdict: Verdict) -> bool:
        payload, offer = _passed(verdict)
        return transfer_matches(receipt, offer, payload)

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
        return reason_for_revert(text)

    def already_settled(self, chain: ChainReads, verdict: Verdict) -> bool:
        """Whether the authorization is used on chain (for a node that keeps no revert text)."""
        payload, offer = _passed(verdict)
        auth = payload.authorization
        return chain.authorization_state(auth.from_, bytes.fromhex(auth.nonce[2:]), offer.asset)


EXACT_EIP3009 = ExactEip3009()
