"""AP2 v0.2 payment mandates bound to x402 payments (``x402sim.trust.mandates``).

What is checked: the wire shapes and the nonce binding, decoded here by hand; every refusal code,
each from a chain built to fail exactly there; a Python model of the stateful constraints (budget
with reservations, settlement and release; recurrence counts and periods) against the verifier on
random mandates and payment sequences; and threads racing for one budget.

Speed: a close plus a check costs about a millisecond of ES256 and SD-JWT work, so each Hypothesis
test sets ``max_examples`` (at most a dozen payments per example) and the file runs in seconds.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import random
import re
import threading
from dataclasses import dataclass, replace

import pytest
from eth_hash.auto import keccak as reference_keccak
from hypothesis import event, given, settings
from hypothesis import strategies as st

from x402sim.mechanisms.exact_eip3009 import Offer
from x402sim.trust.mandates import (
    AGENT_RECURRENCE,
    ALLOWED_INSTRUMENTS,
    ALLOWED_PAYEES,
    AMOUNT_RANGE,
    BUDGET,
    EXTENSION,
    REFUSALS,
    VCT_CLOSED,
    VCT_OPEN,
    AgentMandate,
    MandateChain,
    MandateRefused,
    MandateVerifier,
    PaymentFacts,
    VerifiedMandate,
    _from_major,
    _sign_closed,
    _sign_open,
    _to_major,
    attach,
    attached,
    close_payment_mandate,
    instrument_id,
    key_id,
    mandate_id_of,
    new_key,
    open_payment_mandate,
    public_jwk,
    transaction_id,
)

USER = new_key("user")
AGENT = new_key("agent")
OTHER = new_key("someone else")
PAYEE = "0x" + "a1" * 20
PAYEE_2 = "0x" + "b2" * 20
STRANGER = "0x" + "c3" * 20
ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
OTHER_ASSET = "0x" + "d4" * 20
PAYER = "0x" + "e5" * 20
NETWORK = "eip155:84532"
RESOURCE = "https://api.example/weather?city=Oslo"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = T0 + 60
EXP = T0 + 30 * 86_400
DAY = 86_400

CONSTRAINTS = {
    AMOUNT_RANGE: {"min": 100, "max": 50_000},
    BUDGET: {"max": 2_500_000},
    AGENT_RECURRENCE: {"frequency": "ON_DEMAND", "max_occurrences": 10},
    ALLOWED_PAYEES: [PAYEE, PAYEE_2],
}


def mandate(constraints=None, *, user=USER, issued_at=T0, expires_at=EXP, **kw) -> str:
    return open_payment_mandate(
        user,
        agent_key=AGENT,
        constraints=CONSTRAINTS if constraints is None else constraints,
        issued_at=issued_at,
        expires_at=expires_at,
        rng=random.Random(7),
        **kw,
    )


def close(open_mandate: str, agent=AGENT, **kw) -> MandateChain:
    terms = dict(
        payee=PAYEE, amount=10_000, asset=ASSET, network=NETWORK, payer=PAYER, resource=RESOURCE, now=NOW
    )
    terms.update(kw)
    return close_payment_mandate(open_mandate, agent, **terms)


def facts(chain: MandateChain, **kw) -> PaymentFacts:
    closed = content(chain.closed)
    base = PaymentFacts(
        payer=PAYER,
        pay_to=closed["payee"]["id"],
        asset=ASSET,
        network=NETWORK,
        amount=closed["payment_amount"]["amount"],
        nonce=chain.nonce(),
        resource=RESOURCE,
    )
    return replace(base, **kw)


def check(
    chain: MandateChain, verifier: MandateVerifier | None = None, now: int = NOW, **kw
) -> VerifiedMandate:
    return (verifier or MandateVerifier([USER])).check(chain, facts(chain, **kw), now)


def refused(code: str, chain: MandateChain, verifier=None, now: int = NOW, **kw) -> None:
    with pytest.raises(MandateRefused) as caught:
        check(chain, verifier, now, **kw)
    assert caught.value.code == code, caught.value.message


# --- decoding by hand, independently of the module -----------------------------------------------


def b64json(segment: str):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def b64sha(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def split(token: str) -> tuple[dict, dict, list]:
    jwt, *disclosures = token[:-1].split("~")
    header, payload, _ = jwt.split(".")
    return b64json(header), b64json(payload), [b64json(d) for d in disclosures]


def content(token: str) -> dict:
    _, payload, disclosures = split(token)
    by_digest = {b64sha(d): b64json(d) for d in token[:-1].split("~")[1:]}
    assert len(disclosures) == len(by_digest)
    return by_digest[payload["delegate_payload"][0]["..."]][1]


# --- the happy path and the wire --------------------------------------------------------------------


def test_a_valid_chain_passes_and_its_nonce_is_keccak_of_the_wire_string():
    chain = close(mandate())
    wire = chain.serialize()
    assert wire == chain.open[:-1] + "~~" + chain.closed  # AP2's chain form: open, "~~", closed
    assert wire.count("~~") == 1 and re.fullmatch(r"[A-Za-z0-9_.~-]+", wire)
    assert chain.nonce() == "0x" + reference_keccak(wire.encode("utf-8")).hex()
    assert MandateChain.parse(wire) == chain

    verifier = MandateVerifier([public_jwk(USER)])  # a public dict is as good as the JWK
    verified = verifier.check(MandateChain.parse(wire), facts(chain), NOW)
    assert (verified.amount, verified.payee, verified.payer) == (10_000, PAYEE, PAYER)
    assert (verified.asset, verified.network, verified.chain_nonce) == (ASSET, NETWORK, chain.nonce())
    assert verifier.reserved(verified.mandate_id) == 10_000 and verifier.spent(verified.mandate_id) == 0
    verifier.settled(verified)
    assert verifier.spent(verified.mandate_id) == 10_000 and verifier.uses(verified.mandate_id) == 1
    assert verifier.reserved(verified.mandate_id) == 0
    with pytest.raises(ValueError):
        verifier.settled(verified)


def test_the_open_mandate_has_ap2_shape():
    header, payload, _ = split(mandate(mandate_id="groceries"))
    assert header == {"alg": "ES256", "typ": "dc+sd-jwt", "kid": USER.thumbprint()}
    assert set(payload) == {"delegate_payload", "_sd_alg"} and payload["_sd_alg"] == "sha-256"
    assert list(payload["delegate_payload"][0]) == ["..."]  # the content is itself a disclosure
    body = content(mandate(mandate_id="groceries"))
    assert body["vct"] == VCT_OPEN == "mandate.payment.open.1"
    assert body["jti"] == "groceries" and (body["iat"], body["exp"]) == (T0, EXP)
    assert body["cnf"] == {"jwk": public_jwk(AGENT)} and set(public_jwk(AGENT)) == {"kty", "crv", "x", "y"}
    by_type = {c["type"]: c for c in body["constraints"]}
    assert by_type[AMOUNT_RANGE] == {"type": AMOUNT_RANGE, "currency": "USDC", "max": 50_000, "min": 100}
    # AP2 types the budget as a number of whole tokens: 2_500_000 atomic units are 2.5
    assert by_type[BUDGET] == {"type": BUDGET, "max": 2.5, "currency": "USDC"}
    assert by_type[AGENT_RECURRENCE] == {
        "type": AGENT_RECURRENCE,
        "frequency": "ON_DEMAND",
        "max_occurrences": 10,
    }
    assert all(list(entry) == ["..."] for entry in by_type[ALLOWED_PAYEES]["allowed"])  # each payee hidden


def test_the_closed_mandate_has_ap2_shape_and_binds_the_open_one():
    chain = close(mandate(), amount=12_345)
    header, payload, _ = split(chain.closed)
    assert header == {"alg": "ES256", "typ": "kb+sd-jwt"}
    assert payload["sd_hash"] == b64sha(chain.open)
    assert (payload["iat"], payload["aud"]) == (NOW, "https://api.example")
    assert re.fullmatch(r"[0-9a-f]{32}", payload["nonce"])
    body = content(chain.closed)
    assert body == {
        "vct": VCT_CLOSED,
        "transaction_id": b64sha(RESOURCE),
        "payee": {"id": PAYEE, "name": PAYEE},
        "payment_amount": {"amount": 12_345, "currency": "USDC"},
        "payment_instrument": {
            "id": f"{NETWORK}/erc20:{ASSET}",
            "type": "x402",
            "description": f"x402 exact payment from {PAYER}",
            "payer": PAYER,
        },
    }
    assert VCT_CLOSED == "mandate.payment.1" and transaction_id(RESOURCE) == b64sha(RESOURCE)


def test_closing_discloses_only_the_payee_paid():
    chain = close(mandate(), payee=PAYEE_2)
    _, _, disclosures = split(chain.open)
    payees = [value for _, value in disclosures if "vct" not in value]
    assert payees == [{"id": PAYEE_2, "name": PAYEE_2}]
    _, _, everything = split(mandate())
    assert len(everything) == 3  # the content and both payees, before closing
    check(chain)


def test_keys_are_deterministic_and_every_close_is_a_new_chain():
    assert new_key("user").export_private() == USER.export_private()
    assert new_key(b"user").thumbprint() == USER.thumbprint() == key_id(public_jwk(USER))
    assert new_key("user 2").thumbprint() != USER.thumbprint()
    om = mandate()
    first, second = close(om), close(om)
    assert first.nonce() != second.nonce()
    seeded = [close(om, rng=random.Random(3)) for _ in range(2)]
    # One seed, one chain: salts, nonce and (RFC 6979) ES256 signatures, so the EIP-3009 nonce repeats.
    assert seeded[0].serialize() == seeded[1].serialize() and seeded[0].nonce() == seeded[1].nonce()
    assert mandate() == mandate() and close(om, rng=random.Random(4)).nonce() != seeded[0].nonce()
    check(seeded[0])  # the re-signed chain still verifies (the verifier checks both signatures)
    with pytest.raises(ValueError):
        public_jwk({"kty": "OKP", "crv": "Ed25519", "x": "A" * 43})


def test_an_agent_mandate_closes_one_chain_per_offer():
    om = mandate(mandate_id="weekly")
    agent = AgentMandate(om, AGENT, random.Random(5))
    assert agent.mandate_id == mandate_id_of(om) == "weekly"
    offer = Offer("exact", NETWORK, 10_000, ASSET, PAYEE, 60, {})
    verifier = MandateVerifier([USER])
    chains = [agent.close(offer, PAYER, RESOURCE, NOW) for _ in range(2)]
    assert chains[0].nonce() != chains[1].nonce()
    for chain in chains:
        verifier.settled(check(chain, verifier))
    assert verifier.spent("weekly") == 20_000 and verifier.uses("weekly") == 2
    assert mandate_id_of(mandate()).startswith("ap2-")  # derived from the user's key and the content
    no_jti = content(mandate({AMOUNT_RANGE: {"max": 50_000}}))
    del no_jti["jti"]
    third_party = _sign_open(USER, no_jti)
    issuer_jwt_hash = "sha256:" + b64sha(third_party.split("~")[0])  # AP2's issuer_jwt_hash
    assert mandate_id_of(third_party) == issuer_jwt_hash
    assert check(close(third_party)).mandate_id == mandate_id_of(third_party)


@given(st.integers(0, 10**15))
@settings(max_examples=300)
def test_budget_amounts_survive_the_whole_token_wire_number(atomic):
    assert _from_major(json.loads(json.dumps(_to_major(atomic)))) == atomic


def test_attach_and_attached_carry_the_chain_in_extensions():
    chain = close(mandate())
    extensions = attach({"payment-identifier": {"info": {"id": "x" * 16}}}, chain)
    assert extensions[EXTENSION] == {"info": {"mandate": chain.serialize()}} and EXTENSION == "ap2"
    assert "payment-identifier" in extensions
    assert attached(extensions) == chain
    assert attached(None) is None and attached({}) is None and attached({"other": {}}) is None
    for broken in (
        {"ap2": "x"},
        {"ap2": {"info": {}}},
        {"ap2": {"info": {"mandate": 7}}},
        {"ap2": {"info": {"mandate": "a~~b"}}},
        [],
    ):
        with pytest.raises(MandateRefused) as caught:
            attached(broken)
        assert caught.value.code == "malformed"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no tilde",
        "a.b.c~",
        "a.b.c~~d.e.f~~g.h.i~",
        "a.b.c~~d.e.f~kb.jwt.x",
        "a.b.c~~~",
        "a.b~~c.d.e~",
        "é~~a.b.c~",
    ],
)
def test_parse_refuses_what_is_not_a_chain(text):
    with pytest.raises(MandateRefused) as caught:
        MandateChain.parse(text)
    assert caught.value.code == "malformed"


@given(st.data())
@settings(max_examples=150)
def test_a_changed_character_is_always_refused_and_nothing_else_escapes(data):
    chain = VALID_CHAIN
    wire = chain.serialize()
    at = data.draw(st.integers(0, len(wire) - 1), label="position")
    char = data.draw(st.sampled_from("AbZ09_-.~"), label="replacement")
    if wire[at] == char:
        return
    mutated = wire[:at] + char + wire[at + 1 :]
    with pytest.raises(MandateRefused):
        MUTATION_VERIFIER.check(MandateChain.parse(mutated), facts(chain), NOW)


VALID_CHAIN = close(mandate())
MUTATION_VERIFIER = MandateVerifier([USER])


# --- every refusal, each from a chain built to fail there --------------------------------------------


def craft_open(content_changes: dict) -> str:
    """An open mandate signed by the user with ``content_changes`` applied (no payee list: re-signing
    keeps the digests of the disclosures but not the disclosures)."""
    body = content(mandate({key: value for key, value in CONSTRAINTS.items() if key != ALLOWED_PAYEES}))
    body.update(content_changes)
    return _sign_open(USER, body)


def tamper_signature(token: str) -> str:
    jwt, rest = token.split("~", 1)
    head, body, signature = jwt.split(".")
    i = len(signature) // 2
    return f"{head}.{body}.{signature[:i]}{'B' if signature[i] == 'A' else 'A'}{signature[i + 1 :]}~{rest}"


def _malformed():
    with pytest.raises(MandateRefused) as caught:
        MandateChain.parse("eyJ.not.a~chain")
    assert caught.value.code == "malformed"
    chain = close(mandate())
    stray = base64.urlsafe_b64encode(b'["salt", "extra"]').rstrip(b"=").decode()
    unreferenced = MandateChain(chain.open + stray + "~", chain.closed)  # a disclosure nothing refers to
    refused("malformed", unreferenced)
    no_cnf = content(mandate())
    del no_cnf["cnf"]
    refused("malformed", close(_sign_open(USER, no_cnf)))


def _untrusted_issuer():
    refused("untrusted_issuer", close(mandate()), MandateVerifier([OTHER]))


def _bad_signature():
    chain = close(mandate())
    refused("bad_signature", MandateChain(tamper_signature(chain.open), chain.closed))


def _wrong_vct():
    refused("wrong_vct", close(craft_open({"vct": "mandate.payment.open.2"})))
    refused("wrong_vct", close(craft_open({"vct": "mandate.checkout.open.1"})))
    good = close(mandate())
    body = content(good.closed)
    body["vct"] = "mandate.checkout.1"
    refused(
        "wrong_vct", _sign_closed(good.open, AGENT, body, now=NOW, audience="https://api.example", nonce="n1")
    )


def _expired():
    chain = close(mandate(), now=EXP - 1)
    check(chain, now=EXP - 1)
    refused("expired", chain, now=EXP)
    refused("expired", close(mandate()), MandateVerifier([USER], leeway=5), now=EXP + 5)


def _not_yet_valid():
    refused("not_yet_valid", close(mandate(issued_at=NOW + 1)))
    refused("not_yet_valid", close(mandate(), now=NOW + 10), now=NOW)  # a closed mandate from the future
    check(close(mandate(), now=NOW + 10), MandateVerifier([USER], leeway=10), now=NOW)


def _bad_key_binding():
    refused("bad_key_binding", close(mandate(), agent=OTHER))


def _broken_chain():
    first, second = mandate(mandate_id="first"), mandate(mandate_id="second")
    mixed = MandateChain(close(first).open, close(second).closed)  # same agent key, another open mandate
    refused("broken_chain", mixed)


def _wrong_audience():
    chain = close(mandate())
    refused("wrong_audience", chain, MandateVerifier([USER], audience="https://elsewhere.example"))
    check(chain, MandateVerifier([USER], audience="https://api.example"))
    check(close(mandate(), audience="facilitator"), MandateVerifier([USER], audience="facilitator"))


def _preset_mismatch():
    preset = mandate({AMOUNT_RANGE: {"max": 50_000}}, payee=PAYEE_2)
    refused("preset_mismatch", close(preset, payee=PAYEE))
    check(close(preset, payee=PAYEE_2.upper().replace("0X", "0x")))
    fixed_amount = mandate({}, payment_amount=10_000)
    refused("preset_mismatch", close(fixed_amount, amount=10_001))
    check(close(fixed_amount, amount=10_000))


def _unknown_constraint():
    for kind, body in (
        ("payment.execution_date", {"not_after": "2026-12-31T23:59:59Z"}),
        ("payment.reference", {"conditional_transaction_id": "abc"}),
        ("com.example.mood", {"level": 3}),
    ):
        refused("unknown_constraint", close(mandate({**CONSTRAINTS, kind: body})))


def _incomplete_constraints():
    with pytest.raises(ValueError):
        mandate({AGENT_RECURRENCE: {"frequency": "ON_DEMAND"}})
    recurrence_only = [{"type": AGENT_RECURRENCE, "frequency": "ON_DEMAND"}]
    refused("incomplete_constraints", close(craft_open({"constraints": recurrence_only})))


def _currency_mismatch():
    constraints = {**CONSTRAINTS, AMOUNT_RANGE: {"min": 1, "max": 50_000, "currency": "EURC"}}
    refused("currency_mismatch", close(mandate(constraints)))  # closes in EURC, the budget is in USDC


def _amount_out_of_range():
    refused("amount_out_of_range", close(mandate(), amount=99))
    refused("amount_out_of_range", close(mandate(), amount=50_001))
    check(close(mandate(), amount=100))
    check(close(mandate(), amount=50_000))


def _payee_not_allowed():
    refused("payee_not_allowed", close(mandate(), payee=STRANGER))


def _instrument_not_allowed():
    constraints = {**CONSTRAINTS, ALLOWED_INSTRUMENTS: [instrument_id(NETWORK, OTHER_ASSET)]}
    refused("instrument_not_allowed", close(mandate(constraints)))
    allowed = {
        **CONSTRAINTS,
        ALLOWED_INSTRUMENTS: [instrument_id(NETWORK, OTHER_ASSET), instrument_id(NETWORK, ASSET)],
    }
    check(close(mandate(allowed)))


def _payee_mismatch():
    refused("payee_mismatch", close(mandate()), pay_to=PAYEE_2)  # both allowed; the mandate names PAYEE


def _amount_mismatch():
    in_range = close(mandate(), amount=10_000)
    refused("amount_mismatch", in_range, amount=20_000)  # also in range, but not what the agent closed


def _asset_mismatch():
    refused("asset_mismatch", close(mandate()), asset=OTHER_ASSET)


def _network_mismatch():
    refused("network_mismatch", close(mandate()), network="eip155:8453")


def _payer_mismatch():
    refused("payer_mismatch", close(mandate()), payer=STRANGER)


def _resource_mismatch():
    refused("resource_mismatch", close(mandate()), resource="https://api.example/weather?city=Bergen")


def _nonce_mismatch():
    refused("nonce_mismatch", close(mandate()), nonce="0x" + "11" * 32)
    chain = close(mandate())
    check(chain, nonce=chain.nonce().upper().replace("0X", "0x"))


def _mandate_id_conflict():
    verifier = MandateVerifier([USER, OTHER])
    check(close(mandate(mandate_id="shared")), verifier)
    refused("mandate_id_conflict", close(mandate(mandate_id="shared", user=OTHER)), verifier)


def _replayed():
    verifier = MandateVerifier([USER])
    chain = close(mandate())
    verified = check(chain, verifier)
    refused("replayed", chain, verifier)  # while reserved
    verifier.release(verified)
    refused("replayed", chain, verifier)  # released: the amount is free, the closed mandate is not
    check(close(mandate()), verifier)  # a fresh closed mandate of the same open one passes


def _recurrence_exceeded():
    verifier = MandateVerifier([USER])
    once = mandate({AMOUNT_RANGE: {"max": 50_000}})
    verifier.settled(check(close(once), verifier))
    refused("recurrence_exceeded", close(once), verifier)  # no agent_recurrence: one payment
    twice = mandate({**CONSTRAINTS, AGENT_RECURRENCE: {"frequency": "ON_DEMAND", "max_occurrences": 2}})
    check(close(twice), verifier)
    check(close(twice), verifier)
    refused("recurrence_exceeded", close(twice), verifier)


def _recurrence_too_soon():
    verifier = MandateVerifier([USER])
    daily = mandate({**CONSTRAINTS, AGENT_RECURRENCE: {"frequency": "DAILY"}})
    verifier.settled(check(close(daily), verifier))
    refused("recurrence_too_soon", close(daily, now=T0 + DAY - 1), verifier, now=T0 + DAY - 1)
    check(close(daily, now=T0 + DAY), verifier, now=T0 + DAY)


def _budget_exceeded():
    verifier = MandateVerifier([USER])
    small = mandate({**CONSTRAINTS, BUDGET: {"max": 25_000}})
    check(close(small, amount=15_000), verifier)
    refused("budget_exceeded", close(small, amount=10_001), verifier)
    check(close(small, amount=10_000), verifier)


SCENARIOS = {name[1:]: scenario for name, scenario in globals().items() if name[1:] in REFUSALS}


def test_every_refusal_code_has_a_scenario():
    assert set(SCENARIOS) == set(REFUSALS)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in REFUSALS)


@pytest.mark.parametrize("code", list(REFUSALS))
def test_refusal(code):
    SCENARIOS[code]()


# --- the stateful constraints against a model -------------------------------------------------------

PAYEES = [PAYEE, PAYEE_2, "0x" + "f6" * 20]
ANYONE = [*PAYEES, STRANGER]


@dataclass
class Spec:
    amount_range: tuple[int, int] | None
    budget: int | None
    recurrence: dict | None
    payees: list[str] | None

    def constraints(self) -> dict:
        out: dict = {}
        if self.amount_range is not None:
            out[AMOUNT_RANGE] = {"min": self.amount_range[0], "max": self.amount_range[1]}
        if self.budget is not None:
            out[BUDGET] = {"max": self.budget}
        if self.recurrence is not None:
            out[AGENT_RECURRENCE] = self.recurrence
        if self.payees is not None:
            out[ALLOWED_PAYEES] = self.payees
        return out


@st.composite
def specs(draw) -> Spec:
    frequency = draw(st.sampled_from([None, "ON_DEMAND", "DAILY", "DAILY"]), label="frequency")
    most = draw(st.none() | st.integers(1, 6) | st.just(0), label="max_occurrences")
    recurrence = None if frequency is None else {"frequency": frequency}
    if recurrence is not None and most is not None:
        recurrence["max_occurrences"] = most
    low = draw(st.integers(0, 200))
    amount_range = (low, draw(st.integers(low, 600))) if recurrence or draw(st.booleans()) else None
    budget = draw(st.integers(0, 2_000)) if recurrence or draw(st.booleans()) else None
    payees = draw(st.none() | st.lists(st.sampled_from(PAYEES), min_size=1, max_size=3, unique=True))
    return Spec(amount_range, budget, recurrence, payees)


def actions(spec: Spec):
    """Payments (amount and payee mostly what the mandate allows), settlements and releases."""
    low, high = spec.amount_range or (0, 700)
    pay = st.tuples(
        st.just("pay"),
        st.integers(low, high) | st.integers(0, 700),
        st.sampled_from(spec.payees or ANYONE) | st.sampled_from(ANYONE),
        st.sampled_from([0, 1, DAY]),
    )
    finish = st.tuples(st.sampled_from(["settle", "release"]), st.integers(0, 20))
    return st.lists(st.one_of(pay, pay, finish), min_size=1, max_size=12)


class Model:
    """The constraints as plain Python: what a payment at ``now`` may do given what came before."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.committed = 0
        self.settled_at: list[int] = []
        self.reserved: list[tuple[int, int]] = []

    def accepts(self, amount: int, payee: str, now: int) -> bool:
        spec = self.spec
        if spec.amount_range is not None and not spec.amount_range[0] <= amount <= spec.amount_range[1]:
            return False
        if spec.payees is not None and payee not in spec.payees:
            return False
        uses = len(self.settled_at) + len(self.reserved)
        if spec.recurrence is None:
            if uses >= 1:
                return False
        else:
            most = spec.recurrence.get("max_occurrences")
            if most is not None and uses >= most:
                return False
            times = self.settled_at + [at for _, at in self.reserved]
            if spec.recurrence["frequency"] == "DAILY" and any(t // DAY == now // DAY for t in times):
                return False
        in_flight = sum(amount for amount, _ in self.reserved)
        return spec.budget is None or self.committed + in_flight + amount <= spec.budget


def run_against_model(spec: Spec, steps: list[tuple]) -> collections.Counter:
    """Play ``steps`` through a verifier and the model; they must agree on every payment and on the
    totals after every step. Returns what happened to the payments."""
    om = mandate(spec.constraints(), mandate_id="m", expires_at=T0 + 365 * DAY)
    verifier = MandateVerifier([USER])
    model = Model(spec)
    rng = random.Random(1)
    pending: list[VerifiedMandate] = []
    outcomes: collections.Counter = collections.Counter()
    now = T0
    for action in steps:
        if action[0] == "pay":
            _, amount, payee, step = action
            now += step
            chain = close(om, payee=payee, amount=amount, now=now, rng=rng)
            expected = model.accepts(amount, payee, now)
            try:
                pending.append(verifier.check(chain, facts(chain), now))
            except MandateRefused as refusal:
                assert not expected, f"refused {amount} to {payee} at {now}: {refusal}"
                outcomes[refusal.code] += 1
            else:
                assert expected, f"accepted {amount} to {payee} at {now}"
                outcomes["accepted"] += 1
                model.reserved.append((amount, now))
        elif pending:
            index = action[1] % len(pending)
            verified = pending.pop(index)
            amount, at = model.reserved.pop(index)
            if action[0] == "settle":
                verifier.settled(verified)
                model.committed += amount
                model.settled_at.append(at)
            else:
                verifier.release(verified)
        assert verifier.spent("m") == model.committed
        assert verifier.uses("m") == len(model.settled_at)
        assert verifier.reserved("m") == sum(amount for amount, _ in model.reserved)
    return outcomes


@given(st.data())
@settings(max_examples=150)
def test_the_verifier_accepts_exactly_what_the_model_accepts(data):
    spec = data.draw(specs(), label="mandate")
    for outcome in run_against_model(spec, data.draw(actions(spec), label="steps")):
        event(outcome)


def pay(amount: int, step: int = 0, payee: str = PAYEE) -> tuple:
    return ("pay", amount, payee, step)


CHOSEN = {
    "daily: once a day, reserved or settled, released frees the day": (
        Spec((0, 500), 10_000, {"frequency": "DAILY"}, None),
        [
            pay(10),
            pay(10, 1),
            ("release", 0),
            pay(10, 1),
            ("settle", 0),
            pay(10, 60),
            pay(10, DAY),
            pay(10, 1),
        ],
        {"accepted": 3, "recurrence_too_soon": 3},
    ),
    "budget counts reservations; a release gives them back": (
        Spec((0, 500), 1_000, {"frequency": "ON_DEMAND"}, [PAYEE]),
        [
            pay(400),
            pay(400),
            pay(400),
            ("release", 0),
            pay(400),
            ("settle", 0),
            ("settle", 0),
            pay(200),
            pay(1),
        ],
        {"accepted": 4, "budget_exceeded": 2},
    ),
    "max_occurrences counts reservations; a release frees one": (
        Spec((0, 500), 10_000, {"frequency": "ON_DEMAND", "max_occurrences": 2}, None),
        [pay(1), pay(1), pay(1), ("release", 1), pay(1), ("settle", 0), ("settle", 0), pay(1)],
        {"accepted": 3, "recurrence_exceeded": 2},
    ),
    "without recurrence one payment, unless it is released": (
        Spec(None, 500, None, [PAYEE, PAYEE_2]),
        [
            pay(100, payee=STRANGER),
            pay(100),
            pay(100),
            ("release", 0),
            pay(100, payee=PAYEE_2),
            ("settle", 0),
            pay(1),
        ],
        {"accepted": 2, "payee_not_allowed": 1, "recurrence_exceeded": 2},
    ),
}


@pytest.mark.parametrize("case", list(CHOSEN))
def test_the_verifier_and_the_model_on_chosen_sequences(case):
    spec, steps, outcomes = CHOSEN[case]
    assert run_against_model(spec, steps) == outcomes


# --- threads ----------------------------------------------------------------------------------------


def race(verifier: MandateVerifier, chains: list[MandateChain]) -> list:
    barrier = threading.Barrier(len(chains))
    results: list = [None] * len(chains)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = verifier.check(chains[i], facts(chains[i]), NOW)
        except MandateRefused as refusal:
            results[i] = refusal

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(chains))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("fits", [0, 1, 7, 23])
def test_threads_under_one_budget_get_exactly_what_fits(fits):
    price, threads = 1_000, 24
    constraints = {**CONSTRAINTS, BUDGET: {"max": fits * price}, AGENT_RECURRENCE: {"frequency": "ON_DEMAND"}}
    om = mandate(constraints, mandate_id="shared budget")
    verifier = MandateVerifier([USER])
    results = race(verifier, [close(om, amount=price) for _ in range(threads)])
    passed = [r for r in results if isinstance(r, VerifiedMandate)]
    assert len(passed) == fits
    assert all(r.code == "budget_exceeded" for r in results if isinstance(r, MandateRefused))
    assert verifier.reserved("shared budget") == fits * price
    for verified in passed[:2]:
        verifier.release(verified)
    for verified in passed[2:]:
        verifier.settled(verified)
    freed = min(2, fits)
    second = race(verifier, [close(om, amount=price) for _ in range(threads)])
    assert sum(isinstance(r, VerifiedMandate) for r in second) == freed
    assert verifier.spent("shared budget") == (fits - freed) * price
