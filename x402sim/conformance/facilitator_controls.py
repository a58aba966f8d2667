"""Facilitator controls: the reference facilitator with one rule broken on purpose.

Each control is either a subclass of the reference ``Facilitator`` overriding one method (served by
the reference ``facilitator_app`` exactly as ``reference.reference_facilitator`` serves the
reference), one of the reference's own switches, or an ASGI middleware over the reference app that
rewrites one thing in the requests it forwards or the answers it returns. ``kills`` lists the cases
each must fail; the calibration tests prove it, and prove the reference passes them.

Not a control: ``dedupe="off"`` (no claims on authorizations in flight). Against the harness's chain,
which mines every transaction as it arrives, and the app, which runs the role one call at a time on
a remote chain, the second copy of a payment is refused by the simulation before it is sent, so no
case can tell it from the reference; ``dedupe="share"`` is the observable weakness.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from ..actors.facilitator import Facilitator, PendingSettlement
from ..errors import ChainError
from ..evm.chain import CallResult
from ..evm.rpc_chain import RpcChain
from ..http.facilitator_app import facilitator_app
from ..http.guard import Asgi
from ..http.serve import facilitator_env
from ..mechanisms.exact_eip3009 import FACILITATOR_VALID_BEFORE_MARGIN, Offer, Verdict, settlement_calldata
from ..protocol import ProtocolError, Reason, VerifyResponse, parse_exact_evm_payload
from .asgi import capture, read_body, replay, send_json, send_raw
from .controls import control
from .reference import InProcessService, reference_facilitator

VERIFY_REASON_CASES = (
    "facilitator.verify.unsupported-scheme",
    "facilitator.verify.network-mismatch",
    "facilitator.verify.foreign-network",
    "facilitator.verify.missing-eip712-domain",
    "facilitator.verify.recipient-mismatch",
    "facilitator.verify.value-under",
    "facilitator.verify.value-over",
    "facilitator.verify.expired",
    "facilitator.verify.expires-too-soon",
    "facilitator.verify.not-yet-valid",
    "facilitator.verify.bad-signature",
    "facilitator.verify.signer-not-from",
    "facilitator.verify.signed-chain-id-mismatch",
    "facilitator.verify.token-name-mismatch",
    "facilitator.verify.token-version-mismatch",
    "facilitator.verify.nonce-used",
    "facilitator.verify.insufficient-balance",
    "facilitator.verify.eoa-asset",
    "facilitator.verify.high-s-signature",
    "facilitator.verify.ignores-accepted",
)
INPUT_CASES = (
    "facilitator.input.non-json",
    "facilitator.input.empty-body",
    "facilitator.input.json-null",
    "facilitator.input.non-object-json",
    "facilitator.input.empty-object",
    "facilitator.input.unknown-version",
    "facilitator.input.v1-shaped",
    "facilitator.input.payload-null",
    "facilitator.input.requirements-null",
    "facilitator.input.accepted-null",
    "facilitator.input.huge-value",
    "facilitator.input.non-hex-signature",
    "facilitator.input.non-integer-value",
    "facilitator.input.loose-number",
    "facilitator.input.tolerated-no-5xx",
    "facilitator.input.short-nonce",
    "facilitator.input.bad-address",
)


# -- building blocks -------------------------------------------------------------------------------


def _chain_and_key(env: dict[str, str]) -> tuple[RpcChain, bytes]:
    parsed = facilitator_env(env)
    return RpcChain(parsed.rpc_url), parsed.key


def _serve(role: Facilitator):
    """``role`` behind the reference app, configured as ``reference.reference_facilitator`` does."""
    return facilitator_app(role, automine=False, settle_timeout=10.0)


def _subclass(cls: type[Facilitator], **switches) -> Callable[[dict[str, str]], Asgi]:
    def build(env: dict[str, str]):
        return _serve(cls(*_chain_and_key(env), **switches))

    return build


def _target(name: str, build: Callable[[dict[str, str]], Asgi]) -> InProcessService:
    return InProcessService("facilitator", build=build, name=f"control: {name}", kind="control")


Rewrite = Callable[[str, Any], Any]  # (path, parsed request body) -> the body to forward
Answer = Callable[[str, Any, int, Any], "tuple[int, Any] | None"]  # (path, request, status, answer)


def middleware(
    app,
    *,
    paths: tuple[str, ...] = ("/verify", "/settle"),
    request: Rewrite | None = None,
    answer: Answer | None = None,
    short_circuit: Callable[[str, Any], tuple[int, Any] | None] | None = None,
):
    """``app`` with the JSON requests to ``paths`` rewritten by ``request`` before it sees them, and
    its answers replaced by ``answer`` (when that returns ``(status, document)``); ``short_circuit``
    may answer without calling ``app`` at all."""

    async def wrapper(scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in paths:
            return await app(scope, receive, send)
        body = await read_body(receive)
        try:
            parsed = json.loads(body) if body else None
            parseable = bool(body)
        except ValueError:
            parsed, parseable = None, False
        path = scope["path"]
        if short_circuit is not None and parseable:
            early = short_circuit(path, parsed)
            if early is not None:
                return await send_json(send, *early)
        if request is not None and parseable:
            body = json.dumps(request(path, parsed)).encode()
            scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
                + [(b"content-length", str(len(body)).encode())],
            }

        status, headers, content = await capture(app, scope, replay(body))
        if answer is not None:
            try:
                document = json.loads(content)
            except ValueError:
                document = None
            replaced = answer(path, parsed, status, document)
            if replaced is not None:
                return await send_json(send, *replaced)
        await send_raw(send, status, headers, content)

    return wrapper


def _over_reference(**wrapping) -> Callable[[dict[str, str]], Asgi]:
    def build(env: dict[str, str]):
        return middleware(reference_facilitator(env)[1], **wrapping)

    return build


def _object_at(d: dict, key: str) -> dict:
    """``d[key]`` when it is a JSON object, else empty."""
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def _parts(body: Any) -> tuple[dict, dict, dict]:
    """(paymentPayload, paymentRequirements, authorization) of a request body, empty when absent."""
    body = body if isinstance(body, dict) else {}
    payment = _object_at(body, "paymentPayload")
    requirements = _object_at(body, "paymentRequirements")
    auth = _object_at(_object_at(payment, "payload"), "authorization")
    return payment, requirements, auth


def _rewrite_requirements(fn: Callable[[dict, dict, dict], dict]) -> Rewrite:
    """A request rewrite that replaces the body's paymentRequirements by ``fn(payment, requirements,
    authorization)`` (and keeps ``accepted`` in step where the rewrite must)."""

    def rewrite(path: str, body: Any) -> Any:
        payment, requirements, auth = _parts(body)
        if not (payment and requirements):
            return body
        return {**body, "paymentRequirements": fn(payment, requirements, auth)}

    return rewrite


# -- /verify that does not refuse ------------------------------------------------------------------


def _stamp(path: str, body: Any, status: int, answer: Any):
    if path == "/verify" and status == 200 and isinstance(answer, dict) and answer.get("isValid") is False:
        return 200, {"isValid": True, "payer": answer.get("payer")}
    return None


@control(
    "facilitator.rubber-stamp-verify",
    "facilitator",
    "/verify answers isValid true to every payment the reference refuses (settle is untouched)",
    kills=VERIFY_REASON_CASES,
)
def rubber_stamp_verify():
    return _target("rubber-stamp-verify", _over_reference(answer=_stamp))


def _vague(path: str, body: Any, status: int, answer: Any):
    if status != 200 or not isinstance(answer, dict):
        return None
    if answer.get("isValid") is False:
        return 200, {**answer, "invalidReason": "invalid_request"}
    if answer.get("success") is False:
        return 200, {**answer, "errorReason": "unexpected_settle_error"}
    return None


@control(
    "facilitator.vague-reasons",
    "facilitator",
    "refuses what the reference refuses, but under a reason code no synonym table knows",
    kills=(
        *VERIFY_REASON_CASES,
        "facilitator.settle.double-settle",
        "facilitator.settle.drained-after-verify",
        "facilitator.settle.nonce-used-elsewhere",
        "facilitator.settle.cancelled-after-verify",
    ),
)
def vague_reasons():
    return _target("vague-reasons", _over_reference(answer=_vague))


# -- one verify check dropped ---------------------------------------------------------------------


@control(
    "facilitator.ignores-scheme",
    "facilitator",
    "treats every payment as exact, whatever scheme the requirements and accepted name",
    kills=("facilitator.verify.unsupported-scheme",),
)
def ignores_scheme():
    def rewrite(path, body):
        payment, requirements, _ = _parts(body)
        if not (payment and requirements):
            return body
        accepted = payment.get("accepted") if isinstance(payment.get("accepted"), dict) else None
        payment = {**payment, "accepted": {**accepted, "scheme": "exact"}} if accepted else payment
        return {**body, "paymentPayload": payment, "paymentRequirements": {**requirements, "scheme": "exact"}}

    return _target("ignores-scheme", _over_reference(request=rewrite))


@control(
    "facilitator.ignores-accepted-network",
    "facilitator",
    "does not compare the payment's accepted network with the requirements' network",
    kills=("facilitator.verify.network-mismatch",),
)
def ignores_accepted_network():
    def rewrite(path, body):
        payment, requirements, _ = _parts(body)
        accepted = payment.get("accepted")
        if not (isinstance(accepted, dict) and requirements):
            return body
        payment = {**payment, "accepted": {**accepted, "network": requirements.get("network")}}
        return {**body, "paymentPayload": payment}

    return _target("ignores-accepted-network", _over_reference(request=rewrite))


@control(
    "facilitator.takes-recipient-from-authorization",
    "facilitator",
    "does not check authorization.to against payTo: it pays whoever the authorization names",
    kills=("facilitator.verify.recipient-mismatch", "facilitator.verify.ignores-accepted"),
)
def takes_recipient():
    rewrite = _rewrite_requirements(lambda p, r, a: {**r, "payTo": a.get("to", r.get("payTo"))})
    return _target("takes-recipient-from-authorization", _over_reference(request=rewrite))


@control(
    "facilitator.takes-amount-from-authorization",
    "facilitator",
    "does not check authorization.value against the amount: any value is accepted",
    kills=("facilitator.verify.value-under", "facilitator.verify.value-over"),
)
def takes_amount():
    rewrite = _rewrite_requirements(lambda p, r, a: {**r, "amount": a.get("value", r.get("amount"))})
    return _target("takes-amount-from-authorization", _over_reference(request=rewrite))


@control(
    "facilitator.judges-accepted",
    "facilitator",
    "judges the payment against its own accepted copy instead of the paymentRequirements sent",
    kills=("facilitator.verify.judges-requirements", "facilitator.verify.ignores-accepted"),
)
def judges_accepted():
    def rewrite(path, body):
        payment, _, _ = _parts(body)
        accepted = payment.get("accepted")
        return {**body, "paymentRequirements": accepted} if isinstance(accepted, dict) else body

    return _target("judges-accepted", _over_reference(request=rewrite))


class _NoExpiryMargin(Facilitator):
    """Checks only validBefore > now (no 6 s margin for the settlement's block)."""

    def verify(self, payload, requirements, now):
        return super().verify(payload, requirements, now - FACILITATOR_VALID_BEFORE_MARGIN + 1)

    def begin_settle(self, payload, requirements, now):
        return super().begin_settle(payload, requirements, now - FACILITATOR_VALID_BEFORE_MARGIN + 1)


@control(
    "facilitator.no-expiry-margin",
    "facilitator",
    "accepts an authorization that expires within the next block (validBefore > now, not >= now + 6)",
    kills=("facilitator.verify.expires-too-soon",),
)
def no_expiry_margin():
    return _target("no-expiry-margin", _subclass(_NoExpiryMargin))


class _BlindChain:
    """The facilitator's chain, except that every asset has code and every simulation succeeds."""

    def __init__(self, chain: RpcChain) -> None:
        self._chain = chain

    def __getattr__(self, name: str):
        return getattr(self._chain, name)

    def code(self, address: str) -> bytes:
        return b"\xfe"

    def call(self, to: str, data: bytes, **kwargs) -> CallResult:
        return CallResult(True, b"", None, 0)


@control(
    "facilitator.skips-onchain-checks",
    "facilitator",
    "verifies offline only: no asset code check, no simulation (nonce, balance, token domain, high s)",
    kills=(
        "facilitator.verify.nonce-used",
        "facilitator.verify.insufficient-balance",
        "facilitator.verify.token-name-mismatch",
        "facilitator.verify.token-version-mismatch",
        "facilitator.verify.eoa-asset",
        "facilitator.verify.high-s-signature",
    ),
)
def skips_onchain_checks():
    def build(env):
        chain, key = _chain_and_key(env)
        return _serve(Facilitator(_BlindChain(chain), key))

    return _target("skips-onchain-checks", build)


# -- verify that settles ---------------------------------------------------------------------------


class _VerifySettles(Facilitator):
    """Settles a payment as soon as it verifies it."""

    def verify(self, payload, requirements, now):
        answer = super().verify(payload, requirements, now)
        if answer.is_valid:
            pending = self.begin_settle(payload, requirements, now)
            if isinstance(pending, PendingSettlement):
                receipt = self.chain.receipt(pending.tx_hash)
                if receipt is not None:
                    self.finish_settle(pending, receipt)
        return answer


@control(
    "facilitator.verify-settles",
    "facilitator",
    "/verify settles the payment it finds valid",
    kills=("facilitator.verify.does-not-move-funds",),
)
def verify_settles():
    return _target("verify-settles", _subclass(_VerifySettles))


# -- answers that misname ----------------------------------------------------------------------------


def _payer_is_payee(path, body, status, answer):
    _, requirements, _ = _parts(body)
    if status == 200 and isinstance(answer, dict) and answer.get("payer") and requirements.get("payTo"):
        return 200, {**answer, "payer": requirements["payTo"]}
    return None


@control(
    "facilitator.misnames-payer",
    "facilitator",
    "answers verify and settle naming the payee as the payer",
    kills=(
        "facilitator.verify.valid-payment",
        "facilitator.settle.valid-lands",
        "facilitator.settle.names-payer",
    ),
)
def misnames_payer():
    return _target("misnames-payer", _over_reference(answer=_payer_is_payee))


def _other_network(path, body, status, answer):
    if path == "/settle" and status == 200 and isinstance(answer, dict) and answer.get("success") is True:
        network = "eip155:1" if answer.get("network") != "eip155:1" else "eip155:8453"
        return 200, {**answer, "network": network}
    return None


@control(
    "facilitator.wrong-network-echo",
    "facilitator",
    "answers a successful settlement with another network than the requirements'",
    kills=("facilitator.settle.echoes-network",),
)
def wrong_network_echo():
    return _target("wrong-network-echo", _over_reference(answer=_other_network))


def _fake_settle(path, body):
    if path != "/settle":
        return None
    _, requirements, auth = _parts(body)
    if not requirements:
        return None
    return 200, {
        "success": True,
        "payer": auth.get("from"),
        "transaction": "0x" + secrets.token_hex(32),
        "network": requirements.get("network"),
    }


@control(
    "facilitator.fake-settle",
    "facilitator",
    "/settle answers success with a made-up transaction hash and sends nothing",
    kills=("facilitator.settle.valid-lands", "facilitator.settle.concurrent-distinct"),
)
def fake_settle():
    return _target("fake-settle", _over_reference(short_circuit=_fake_settle))


# -- settlement ------------------------------------------------------------------------------------


class _FixedTxNonce(Facilitator):
    """Signs every settlement with the transaction nonce it read first (no nonce manager)."""

    def submit(self, calldata: bytes, asset: str, **call: Any) -> bytes:
        fixed = getattr(self, "_fixed_nonce", None)
        if fixed is None:
            fixed = self._fixed_nonce = self.chain.pending_nonce(self.address)
        self._next_nonce = fixed
        return super().submit(calldata, asset, **call)


@control(
    "facilitator.fixed-tx-nonce",
    "facilitator",
    "signs every settlement with one transaction nonce, so the second one collides",
    kills=("facilitator.settle.concurrent-distinct",),
)
def fixed_tx_nonce():
    return _target("fixed-tx-nonce", _subclass(_FixedTxNonce))


@control(
    "facilitator.shares-duplicates",
    "facilitator",
    "the reference's dedupe='share': a repeated authorization is answered with the first settlement's "
    "success (x402#2801, x402#1805)",
    kills=(
        "facilitator.settle.double-settle",
        "facilitator.settle.concurrent-same",
        "facilitator.settle.same-nonce-distinct-payments",
    ),
)
def shares_duplicates():
    return _target("shares-duplicates", lambda env: reference_facilitator(env, dedupe="share")[1])


def _optimistic():
    verified: set[tuple[str, str]] = set()

    def key(body) -> tuple[str, str] | None:
        _, _, auth = _parts(body)
        if isinstance(auth.get("from"), str) and isinstance(auth.get("nonce"), str):
            return auth["from"].lower(), auth["nonce"].lower()
        return None

    def answer(path, body, status, document):
        claim = key(body)
        if claim is None or status != 200 or not isinstance(document, dict):
            return None
        if path == "/verify" and document.get("isValid") is True:
            verified.add(claim)
        elif path == "/settle" and document.get("success") is False and claim in verified:
            return 200, {**document, "success": True, "errorReason": None, "errorMessage": None}
        return None

    return answer


@control(
    "facilitator.optimistic-settle",
    "facilitator",
    "answers /settle with the verdict of an earlier /verify of the same authorization (x402#1169)",
    kills=(
        "facilitator.settle.drained-after-verify",
        "facilitator.settle.nonce-used-elsewhere",
        "facilitator.settle.cancelled-after-verify",
    ),
)
def optimistic_settle():
    return _target(
        "optimistic-settle", lambda env: middleware(reference_facilitator(env)[1], answer=_optimistic())
    )


class _MinedIsSuccess(Facilitator):
    """Answers success for any mined settlement, whatever its receipt says."""

    def finish_settle(self, pending, receipt):
        answer = super().finish_settle(pending, receipt)
        return answer.model_copy(update={"success": True, "error_reason": None, "error_message": None})


@control(
    "facilitator.mined-is-success",
    "facilitator",
    "reports success once the settlement is mined, without looking at the receipt's status or logs",
    kills=("facilitator.settle.reverted-not-success", "facilitator.settle.no-transfer-not-success"),
)
def mined_is_success():
    return _target("mined-is-success", _subclass(_MinedIsSuccess))


@control(
    "facilitator.ignores-transfer-log",
    "facilitator",
    "the reference's check_transfer_log=False: a successful receipt is success, Transfer or not",
    kills=("facilitator.settle.no-transfer-not-success",),
)
def ignores_transfer_log():
    return _target(
        "ignores-transfer-log", lambda env: reference_facilitator(env, check_transfer_log=False)[1]
    )


class _SettleSkipsReverify(Facilitator):
    """Settles whatever parses, without verifying it again (the chain is left to refuse)."""

    def begin_settle(self, payload, requirements, now):
        try:
            offer = Offer.of(requirements, "paymentRequirements")
            parsed = parse_exact_evm_payload(payload.payload)
        except ProtocolError:
            return super().begin_settle(payload, requirements, now)
        payer = parsed.authorization.from_
        verdict = Verdict(None, "", payer, parsed, offer)
        try:
            tx_hash = self.submit(settlement_calldata(parsed), offer.asset)
        except ChainError as exc:
            return self._failed(verdict, Reason.transaction_failed, requirements, str(exc))
        mechanism = self.mechanism_for(requirements)
        return PendingSettlement(tx_hash, payer, offer, verdict, requirements.network, now, mechanism)


@control(
    "facilitator.settle-skips-reverify",
    "facilitator",
    "/settle sends the transaction without verifying the payment again",
    kills=(
        "facilitator.verify.unsupported-scheme",
        "facilitator.verify.network-mismatch",
        "facilitator.verify.recipient-mismatch",
        "facilitator.verify.value-under",
        "facilitator.verify.value-over",
        "facilitator.settle.reverifies-before-sending",
    ),
)
def settle_skips_reverify():
    return _target("settle-skips-reverify", _subclass(_SettleSkipsReverify))


# -- malformed input -------------------------------------------------------------------------------

_MALFORMED = {Reason.invalid_payload, Reason.invalid_payment_requirements, Reason.invalid_x402_version}
_MALFORMED |= {Reason.invalid_exact_evm_failed_to_get_network_config}
_MALFORMED_CODES = {r.value for r in _MALFORMED}


def _crash(path, body, status, answer):
    reason = answer.get("invalidReason") or answer.get("errorReason") if isinstance(answer, dict) else None
    if 400 <= status < 500 or reason in _MALFORMED_CODES:
        return 500, {"error": "Internal Server Error"}
    return None


@control(
    "facilitator.crashes-on-malformed",
    "facilitator",
    "answers HTTP 500 to every body it cannot use (x402#3015)",
    kills=INPUT_CASES,
)
def crashes_on_malformed():
    return _target("crashes-on-malformed", _over_reference(answer=_crash))


def _leak(path, body, status, answer):
    if 400 <= status < 500 or (
        isinstance(answer, dict) and (answer.get("isValid") is False or answer.get("success") is False)
    ):
        return status, {
            "error": 'Traceback (most recent call last):\n  File "facilitator.py", line 1, in verify\n'
            "TypeError: 'NoneType' object is not subscriptable"
        }
    return None


@control(
    "facilitator.leaks-error-text",
    "facilitator",
    "answers malformed bodies with the stack trace of the exception they raised (x402#3171)",
    kills=("facilitator.input.no-error-leak",),
)
def leaks_error_text():
    return _target("leaks-error-text", _over_reference(answer=_leak))


# -- /supported ------------------------------------------------------------------------------------


def _supported(fn):
    def answer(path, body, status, document):
        return (200, fn(document)) if status == 200 and isinstance(document, dict) else None

    return _over_reference(paths=("/supported",), answer=answer)


@control(
    "facilitator.supported-without-version",
    "facilitator",
    "GET /supported lists kinds without x402Version",
    kills=("facilitator.supported.shape",),
)
def supported_without_version():
    def strip(doc):
        kinds = [{k: v for k, v in kind.items() if k != "x402Version"} for kind in doc.get("kinds", [])]
        return {**doc, "kinds": kinds}

    return _target("supported-without-version", _supported(strip))


@control(
    "facilitator.supported-other-network",
    "facilitator",
    "GET /supported lists another network than the one the facilitator settles on",
    kills=("facilitator.supported.harness-network",),
)
def supported_other_network():
    def move(doc):
        return {**doc, "kinds": [{**kind, "network": "eip155:1"} for kind in doc.get("kinds", [])]}

    return _target("supported-other-network", _supported(move))


@control(
    "facilitator.signers-not-addresses",
    "facilitator",
    "GET /supported lists signers that are names, not addresses",
    kills=("facilitator.supported.signers-are-addresses", "facilitator.settle.sender-is-signer"),
)
def signers_not_addresses():
    def rename(doc):
        return {**doc, "signers": {"eip155:*": ["the-facilitator"]}}

    return _target("signers-not-addresses", _supported(rename))


# -- 2026: /verify that writes or remembers ----------------------------------------------------------


class _VerifySendsTransaction(Facilitator):
    """Sends a transaction to itself (moving nothing) for every payment it verifies."""

    def verify(self, payload, requirements, now):
        answer = super().verify(payload, requirements, now)
        self.submit(b"", self.address)
        return answer


@control(
    "facilitator.verify-sends-transaction",
    "facilitator",
    "/verify sends a transaction of its own (to itself, moving no token) for every payment it judges",
    kills=("facilitator.verify.read-only",),
)
def verify_sends_transaction():
    return _target("verify-sends-transaction", _subclass(_VerifySendsTransaction))


class _VerifyRemembersRefusals(Facilitator):
    """Refuses, from then on, every authorization (payer and nonce) a /verify once refused."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._refused: set[tuple[str, str]] = set()

    def verify(self, payload, requirements, now):
        try:
            auth = parse_exact_evm_payload(payload.payload).authorization
        except ProtocolError:
            return super().verify(payload, requirements, now)
        key = (auth.from_.lower(), str(auth.nonce).lower())
        if key in self._refused:
            return VerifyResponse(
                is_valid=False, invalid_reason=Reason.duplicate_settlement.value, payer=auth.from_
            )
        answer = super().verify(payload, requirements, now)
        if not answer.is_valid:
            self._refused.add(key)
        return answer


@control(
    "facilitator.verify-remembers-refusals",
    "facilitator",
    "/verify commits state: an authorization it refused once is refused from then on, valid or not",
    kills=("facilitator.verify.read-only",),
)
def verify_remembers_refusals():
    return _target("verify-remembers-refusals", _subclass(_VerifyRemembersRefusals))


# -- 2026: settlement_pending ----------------------------------------------------------------------


def _pending_instead(transaction: Callable[[str], str]) -> Answer:
    """An answer rewrite turning every successful /settle into ``settlement_pending`` naming
    ``transaction(real hash)``, as a facilitator whose receipt wait timed out would answer."""

    def answer(path, body, status, document):
        if path == "/settle" and status == 200 and isinstance(document, dict) and document.get("success"):
            pending = {**document, "success": False, "errorReason": Reason.settlement_pending.value}
            return 200, {**pending, "transaction": transaction(str(document.get("transaction", "")))}
        return None

    return answer


@control(
    "facilitator.pending-without-hash",
    "facilitator",
    "settles, then answers settlement_pending with an empty transaction (x402#3083)",
    kills=("facilitator.settle.pending-has-transaction",),
)
def pending_without_hash():
    return _target("pending-without-hash", _over_reference(answer=_pending_instead(lambda tx: "")))


@control(
    "facilitator.pending-made-up-hash",
    "facilitator",
    "settles, then answers settlement_pending naming a transaction hash the chain never saw",
    kills=("facilitator.settle.pending-has-transaction",),
)
def pending_made_up_hash():
    made_up = _pending_instead(lambda tx: "0x" + secrets.token_hex(32))
    return _target("pending-made-up-hash", _over_reference(answer=made_up))


@control(
    "facilitator.pending-not-reconciled",
    "facilitator",
    "answers settlement_pending with the real hash, then refuses the resent settle as a duplicate "
    "although the transaction landed",
    kills=("facilitator.settle.pending-has-transaction",),
)
def pending_not_reconciled():
    return _target("pending-not-reconciled", _over_reference(answer=_pending_instead(lambda tx: tx)))


@control(
    "facilitator.pending-rebroadcasts",
    "facilitator",
    "answers settlement_pending with the real hash, and broadcasts the authorization again when the "
    "settle is resent",
    kills=("facilitator.settle.pending-has-transaction",),
)
def pending_rebroadcasts():
    def build(env):
        role = _SettleSkipsReverify(*_chain_and_key(env))
        return middleware(_serve(role), answer=_pending_instead(lambda tx: tx))

    return _target("pending-rebroadcasts", build)


# -- 2026: reserved extra keys ----------------------------------------------------------------------

RESERVED_EXTRA = ("assetTransferMethod", "paymentFlow")


def _without_reserved(document: Any) -> Any:
    """``document`` (requirements or accepted) without the reserved keys in its ``extra``."""
    if not (isinstance(document, dict) and isinstance(document.get("extra"), dict)):
        return document
    extra = {k: v for k, v in document["extra"].items() if k not in RESERVED_EXTRA}
    return {**document, "extra": extra}


@control(
    "facilitator.ignores-reserved-extra",
    "facilitator",
    "does not read extra.assetTransferMethod or extra.paymentFlow: every payment is an EIP-3009 one",
    kills=("facilitator.extra.asset-transfer-method", "facilitator.extra.payment-flow"),
)
def ignores_reserved_extra():
    def rewrite(path, body):
        payment, requirements, _ = _parts(body)
        if not (payment and requirements):
            return body
        payment = {**payment, "accepted": _without_reserved(payment.get("accepted"))}
        return {**body, "paymentPayload": payment, "paymentRequirements": _without_reserved(requirements)}

    return _target("ignores-reserved-extra", _over_reference(request=rewrite))


def _refuse_reserved(path, body):
    _, requirements, _ = _parts(body)
    extra = requirements.get("extra")
    if not (isinstance(extra, dict) and any(key in extra for key in RESERVED_EXTRA)):
        return None
    reason, network = Reason.invalid_payment_requirements.value, requirements.get("network")
    if path == "/verify":
        return 200, {"isValid": False, "invalidReason": reason}
    return 200, {"success": False, "errorReason": reason, "transaction": "", "network": network}


@control(
    "facilitator.refuses-reserved-extra",
    "facilitator",
    "refuses every requirements naming extra.assetTransferMethod or extra.paymentFlow, known values too",
    kills=("facilitator.extra.known-transfer-method", "facilitator.extra.known-payment-flows"),
)
def refuses_reserved_extra():
    return _target("refuses-reserved-extra", _over_reference(short_circuit=_refuse_reserved))
