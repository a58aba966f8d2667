"""Client controls: the reference client with one rule broken on purpose, to prove the client cases fail.

Every control is a ``pay`` function (env -> JSON verdict, as ``reference.pay_from_env``) wrapped in
``reference.InProcessClient``. They share one small driver, ``loose_pay``: the reference ``Client``
role (a subclass, ``LooseClient``, whose switches relax one choice or signing rule) driven by a
hand-rolled request loop whose ``Drive`` switches relax one transport rule (how often to pay, where
to send the payment, which header to use, how to read a 402). With every switch off, ``loose_pay``
behaves as the reference client: one request, one paid retry at most.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import httpx

from ..actors.client import MAX_TIMEOUT_SECONDS, Client, PaymentRefused, SpendPolicy
from ..http.serve import client_env
from ..mechanisms import PAYMENT_FLOWS
from ..mechanisms.exact_eip3009 import SCHEME, Offer, sign_authorization
from ..protocol import (
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    AnyPaymentPayload,
    AnyPaymentRequired,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    ProtocolError,
    parse_payment_required,
    payment_header_name,
)
from .controls import control
from .reference import InProcessClient

SETTLEMENT_HEADERS = ("payment-response", "x-payment-response")


@dataclass
class LooseClient(Client):
    """The reference ``Client`` with choice and signing rules that can be relaxed one at a time."""

    any_network: bool = False  # sign for any eip155 network, not only the configured ones
    any_timeout: bool = False  # accept any maxTimeoutSeconds (no standing-authorization limit)
    blind: bool = False  # sign for accepts[0], whatever it is
    window: int | None = None  # validity window in seconds instead of maxTimeoutSeconds
    fixed_nonce: bool = False  # one nonce per payer, forever
    domain_name: str | None = None  # sign over this EIP-712 name instead of extra.name
    any_flow: bool = False  # pay offers of any extra.paymentFlow, not only the recognised ones
    flow_blind: bool = False  # choose without preferring the authorization flow

    def choose(self, required: AnyPaymentRequired):
        if self.blind:
            req = required.accepts[0]
            offer = Offer.of(req)
            return req, replace(offer, extra={"name": "", "version": "", **offer.extra})
        if self.flow_blind:
            reasons: list[str] = []
            acceptable = list(self.acceptable_offers(required, reasons))
            if not acceptable:
                raise PaymentRefused("; ".join(reasons) or "the 402 offered nothing")
            first = acceptable[0][1]
            same = [
                pair
                for pair in acceptable
                if (pair[1].network, pair[1].asset) == (first.network, first.asset)
            ]
            return min(same, key=lambda pair: pair[1].amount)
        return super().choose(required)

    def acceptable_offers(self, required: AnyPaymentRequired, reasons: list[str], server=None):
        for req in required.accepts:
            try:
                offer = Offer.of(req)
            except ProtocolError as exc:
                reasons.append(str(exc))
                continue
            if offer.scheme != SCHEME or offer.chain_id is None:
                reasons.append(f"{offer.scheme} on {offer.network} is not payable")
            elif offer.network not in self.networks and not self.any_network:
                reasons.append(f"network {offer.network} is not configured")
            elif offer.max_timeout_seconds > MAX_TIMEOUT_SECONDS and not self.any_timeout:
                reasons.append(f"maxTimeoutSeconds {offer.max_timeout_seconds} is too long")
            elif not (
                isinstance(offer.extra.get("name"), str) and isinstance(offer.extra.get("version"), str)
            ):
                reasons.append("offer lacks the token's EIP-712 name and version")
            elif offer.extra.get("paymentFlow", "authorization") not in PAYMENT_FLOWS and not self.any_flow:
                reasons.append(f"paymentFlow {offer.extra.get('paymentFlow')!r} is not recognised")
            elif why := self.policy.refusal(offer, self._committed) or self.trust_refusal(server, offer):
                reasons.append(why)
            else:
                yield req, offer

    def sign_payment(self, required: AnyPaymentRequired, req, offer: Offer, now: int):
        nonce = hashlib.sha256(self.address.lower().encode()).digest() if self.fixed_nonce else None
        nonce = nonce or self._rng.randbytes(32)
        signing = offer
        if self.window is not None:
            signing = replace(signing, max_timeout_seconds=self.window)
        if self.domain_name is not None:
            signing = replace(signing, extra={**signing.extra, "name": self.domain_name})
        exact = sign_authorization(self.key, self.address, signing, now, nonce).to_wire()
        self._committed += offer.amount
        payment: AnyPaymentPayload
        if isinstance(required, PaymentRequired):
            payment = PaymentPayload(x402_version=2, resource=required.resource, accepted=req, payload=exact)
        else:
            payment = PaymentPayloadV1(x402_version=1, scheme=req.scheme, network=req.network, payload=exact)
        return payment


@dataclass(frozen=True)
class Drive:
    """Transport rules of the request loop; every default is the reference client's behaviour."""

    resign_on_402: int = 0  # further payments signed for later 402s of the same request
    resign_on_lost_answer: bool = False  # one more payment when the paid answer has no settlement header
    follow_resource_url: bool = False  # send the paid request to the 402's resource.url
    pay_any_status: bool = False  # pay a PAYMENT-REQUIRED header whatever the status (even 200)
    lenient_402: bool = False  # read the offers from the body when PAYMENT-REQUIRED does not decode
    swap_headers: bool = False  # v2 payment in X-PAYMENT, v1 in PAYMENT-SIGNATURE
    shared_payment: bool = False  # every run of one payer for one URL reuses the first payment signed
    mangle: Callable[[dict], dict] | None = None  # rewrite the wire payment before sending it
    resign_on_no_answer: bool = False  # one more payment when the paid request gets no answer at all
    timeout: float = 10.0  # seconds the client waits for an answer


_SHARED: dict[tuple[str, str], tuple[str, str]] = {}
_SHARED_LOCK = threading.Lock()


def _challenge(response: httpx.Response, drive: Drive) -> AnyPaymentRequired | None:
    headers = tuple(response.headers.multi_items())
    if response.status_code != 402 and not (drive.pay_any_status and "payment-required" in response.headers):
        return None
    try:
        return parse_payment_required(headers, response.content)
    except ProtocolError:
        if not drive.lenient_402:
            return None
    try:
        return PaymentRequired.from_wire(response.content, "body")
    except ProtocolError:
        return None


def _encode(document: dict) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


@dataclass
class Loose:
    """A control's recipe: ``LooseClient`` switches, a spend policy, and ``Drive`` switches."""

    role: dict = field(default_factory=dict)
    policy: SpendPolicy | None = None
    drive: Drive = field(default_factory=Drive)

    def __call__(self, env: dict[str, str]) -> dict:
        return loose_pay(env, self)


def loose_pay(env: dict[str, str], recipe: Loose) -> dict:
    """One request to the env's resource, paid as ``recipe`` says; the JSON verdict of a client."""
    parsed = client_env(env)
    url = parsed.url
    drive = recipe.drive
    role = LooseClient(
        parsed.key,
        networks=(parsed.network,),
        policy=recipe.policy or SpendPolicy(max_price=parsed.max_amount),
        seed=int.from_bytes(os.urandom(8), "big"),
        **recipe.role,
    )
    limit = 1 + drive.resign_on_402 + (1 if drive.resign_on_lost_answer else 0)
    limit += 1 if drive.resign_on_no_answer else 0
    with httpx.Client(timeout=drive.timeout) as http:
        try:
            response = http.get(url)
            required = _challenge(response, drive)
            paid = 0
            while required is not None and paid < limit:
                header, value = _signed(role, required, drive, url)
                target = url
                if drive.follow_resource_url and isinstance(required, PaymentRequired):
                    target = required.resource.url
                paid += 1
                try:
                    response = http.get(target, headers={header: value})
                except httpx.TransportError:
                    if drive.resign_on_no_answer and paid == 1:
                        continue  # the same 402, paid afresh
                    raise
                lost = not any(h in response.headers for h in SETTLEMENT_HEADERS)
                if drive.resign_on_402 and response.status_code == 402 and paid <= drive.resign_on_402:
                    required = _challenge(response, drive)
                elif drive.resign_on_lost_answer and lost and paid == 1:
                    required = _challenge(response, drive) or required
                else:
                    break
        except (PaymentRefused, ProtocolError, httpx.HTTPError) as exc:
            return {"success": False, "data": None, "status_code": None, "payment_response": None,
                    "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
    return {
        "success": 200 <= response.status_code < 300,
        "data": response.text[:200],
        "status_code": response.status_code,
        "payment_response": None,
    }


def _signed(role: LooseClient, required, drive: Drive, url: str) -> tuple[str, str]:
    """The payment header (name, value) for ``required``: freshly signed, or the shared one."""
    key = (role.address, url)
    with _SHARED_LOCK:
        if drive.shared_payment and key in _SHARED:
            return _SHARED[key]
        payment = role.create_payment(required, int(time.time()))
        document = payment.to_wire()
        if drive.mangle is not None:
            document = drive.mangle(document)
        name = payment_header_name(payment.x402_version)
        if drive.swap_headers:
            name = X_PAYMENT if name == PAYMENT_SIGNATURE else PAYMENT_SIGNATURE
        signed = (name, _encode(document))
        if drive.shared_payment:
            _SHARED[key] = signed
        return signed


def _target(recipe: Loose, name: str) -> InProcessClient:
    return InProcessClient(pay=recipe, name=name, kind="control")


# -- mangling of the wire payment ---------------------------------------------------------------------


def _trim_accepted(document: dict) -> dict:
    accepted = dict(document.get("accepted") or {})
    accepted.pop("extra", None)
    accepted["maxTimeoutSeconds"] = 60
    return {**document, "accepted": accepted}


def _numeric_amounts(document: dict) -> dict:
    auth = document["payload"]["authorization"]
    for name in ("value", "validAfter", "validBefore"):
        auth[name] = int(auth[name])
    return document


def _bare_nonce(document: dict) -> dict:
    auth = document["payload"]["authorization"]
    auth["nonce"] = auth["nonce"].removeprefix("0x")
    return document


# -- the controls -------------------------------------------------------------------------------------


@control(
    "pays-second-402",
    "client",
    "Signs once more when the paid request gets a 402 again (whatever payee or price it names)",
    kills=(
        "client.refuses.redirect-after-settlement",
        "client.refuses.redirect-on-retry",
        "client.refuses.price-bait",
        "client.retries.lost-answer-402",
        "client.retries.settlement-pending",
    ),
)
def pays_second_402():
    return _target(Loose(drive=Drive(resign_on_402=1)), "pays-second-402")


@control(
    "retries-forever",
    "client",
    "Re-signs on every 402 (cut off after 25 payments so the run ends)",
    kills=("client.retries.storm-bounded", "client.retries.lost-answer-402", "client.refuses.price-bait"),
)
def retries_forever():
    return _target(Loose(drive=Drive(resign_on_402=24)), "retries-forever")


@control(
    "resigns-after-lost-answer",
    "client",
    "Signs a new payment when the paid answer carries no settlement header (500, or 402 without it)",
    kills=("client.retries.lost-answer-500", "client.retries.lost-answer-402"),
)
def resigns_after_lost_answer():
    return _target(Loose(drive=Drive(resign_on_lost_answer=True)), "resigns-after-lost-answer")


@control(
    "resigns-after-hang-up",
    "client",
    "Signs a new payment when the paid request gets no answer (the server hung up or went silent)",
    kills=("client.retries.lost-answer-closed", "client.retries.lost-answer-silent"),
)
def resigns_after_hang_up():
    return _target(Loose(drive=Drive(resign_on_no_answer=True)), "resigns-after-hang-up")


@control(
    "resigns-after-timeout",
    "client",
    "Waits half a second for an answer, and signs a new payment when the paid request times out",
    kills=("client.retries.lost-answer-silent",),
)
def resigns_after_timeout():
    return _target(Loose(drive=Drive(resign_on_no_answer=True, timeout=0.5)), "resigns-after-timeout")


@control(
    "pays-unknown-flow",
    "client",
    "Pays an offer whatever its extra.paymentFlow says (streaming included)",
    kills=("client.flow.unrecognised-not-paid",),
)
def pays_unknown_flow():
    return _target(Loose(role={"any_flow": True}), "pays-unknown-flow")


@control(
    "flow-blind",
    "client",
    "Chooses the cheapest offer in the first one's network and asset, whatever its paymentFlow",
    kills=("client.flow.prefers-authorization",),
)
def flow_blind():
    return _target(Loose(role={"flow_blind": True}), "flow-blind")


@control(
    "no-spend-cap",
    "client",
    "Pays any price (no cap per payment)",
    kills=("client.refuses.price-above-cap", "client.refuses.unit-confusion"),
)
def no_spend_cap():
    return _target(Loose(policy=SpendPolicy()), "no-spend-cap")


@control(
    "pays-any-network",
    "client",
    "Signs for any eip155 network, not only EVM_NETWORK",
    kills=("client.refuses.wrong-chain", "client.pays.accepts-order"),
)
def pays_any_network():
    return _target(Loose(role={"any_network": True}), "pays-any-network")


@control(
    "long-validity",
    "client",
    "Signs authorizations valid for a week, whatever maxTimeoutSeconds says",
    kills=("client.signs.validity-window",),
)
def long_validity():
    return _target(Loose(role={"window": 7 * 24 * 3600}), "long-validity")


@control(
    "accepts-any-timeout",
    "client",
    "Signs for any maxTimeoutSeconds, ten years included (a standing authorization)",
    kills=("client.refuses.standing-authorization",),
)
def accepts_any_timeout():
    return _target(Loose(role={"any_timeout": True}), "accepts-any-timeout")


@control(
    "fixed-nonce",
    "client",
    "Derives the nonce from the payer's address, so every payment of a payer has the same nonce",
    kills=("client.signs.fresh-nonce", "client.concurrency.each-pays-once"),
)
def fixed_nonce():
    return _target(Loose(role={"fixed_nonce": True}), "fixed-nonce")


@control(
    "shared-payment",
    "client",
    "Reuses one signed payment for every request of a payer to one URL (concurrent ones included)",
    kills=("client.concurrency.each-pays-once", "client.signs.fresh-nonce"),
)
def shared_payment():
    return _target(Loose(drive=Drive(shared_payment=True)), "shared-payment")


@control(
    "pays-first-offer",
    "client",
    "Signs an exact payment for accepts[0] blindly: any scheme, any network, any price",
    kills=(
        "client.pays.accepts-order",
        "client.pays.cheaper-offer",
        "client.refuses.no-acceptable-offer",
        "client.refuses.wrong-chain",
    ),
)
def pays_first_offer():
    return _target(Loose(role={"blind": True}), "pays-first-offer")


@control(
    "swapped-headers",
    "client",
    "Sends a v2 payment in X-PAYMENT and a v1 payment in PAYMENT-SIGNATURE",
    kills=("client.pays.v2-header", "client.pays.v1-header"),
)
def swapped_headers():
    return _target(Loose(drive=Drive(swap_headers=True)), "swapped-headers")


@control(
    "wrong-domain",
    "client",
    "Signs over a wrong EIP-712 token name, so the signature does not recover to the payer",
    kills=("client.signs.recovers-to-payer", "client.pays.right-amount"),
)
def wrong_domain():
    return _target(Loose(role={"domain_name": "Not The Token"}), "wrong-domain")


@control(
    "trims-accepted",
    "client",
    "Echoes the chosen offer in accepted without its extra and with maxTimeoutSeconds 60",
    kills=("client.signs.accepted-echo",),
)
def trims_accepted():
    return _target(Loose(drive=Drive(mangle=_trim_accepted)), "trims-accepted")


@control(
    "numeric-amounts",
    "client",
    "Writes value, validAfter and validBefore as JSON numbers instead of decimal strings",
    kills=("client.signs.value-string",),
)
def numeric_amounts():
    return _target(Loose(drive=Drive(mangle=_numeric_amounts)), "numeric-amounts")


@control(
    "bare-nonce",
    "client",
    "Writes the nonce as 64 hex digits without the 0x prefix",
    kills=("client.signs.nonce-format",),
)
def bare_nonce():
    return _target(Loose(drive=Drive(mangle=_bare_nonce)), "bare-nonce")


@control(
    "follows-resource-url",
    "client",
    "Sends the paid request to the 402's resource.url instead of the URL it asked for",
    kills=("client.pays.same-origin",),
)
def follows_resource_url():
    return _target(Loose(drive=Drive(follow_resource_url=True)), "follows-resource-url")


@control(
    "pays-ghost-paywall",
    "client",
    "Pays whenever an answer carries PAYMENT-REQUIRED, even a 200",
    kills=("client.pays.nothing-for-free",),
)
def pays_ghost_paywall():
    return _target(Loose(drive=Drive(pay_any_status=True)), "pays-ghost-paywall")


@control(
    "lenient-402",
    "client",
    "Reads the offers from the 402's body when its PAYMENT-REQUIRED header does not decode",
    kills=("client.refuses.malformed-402",),
)
def lenient_402():
    return _target(Loose(drive=Drive(lenient_402=True)), "lenient-402")
