"""Verifying by reading token storage ("state") gives the verdict of simulating the call ("simulate").

The differential test builds random payments over random chain states (funded, underfunded and
unfunded payers; used and canceled nonces; times around the validity window; wrong domains; tampered
fields; malleable and malformed signatures; odd recipients and assets), judges each both ways and
demands the same ``Verdict``, and the same outcome of the bare call, for every token variant.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import vyper
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hypothesis import event, given, settings
from hypothesis import strategies as st

from x402sim import Testbed
from x402sim.actors.facilitator import Facilitator, PendingSettlement
from x402sim.evm import LocalChain, contracts
from x402sim.evm.chain import ETHER, ZERO_ADDRESS
from x402sim.evm.eip712 import (
    SECP256K1_N,
    Authorization,
    Domain,
    address_of_key,
    authorization_digest,
    sign_digest,
    typed_data_digest,
)
from x402sim.evm.state_verify import LAYOUTS, TokenState
from x402sim.evm.token import encode_call, transfer_with_authorization_call
from x402sim.mechanisms.exact_eip3009 import (
    authorization_of,
    check_offline,
    settlement_calldata,
    settlement_vrs,
    verify_on_chain,
)
from x402sim.protocol import PaymentPayload, PaymentRequirements, parse_exact_evm_payload

PRICE = 10_000
RICH = 5_000_000
TIMEOUT = 60
MAX_EXAMPLES = 500  # per token variant: about 5 s each
CANCEL_TYPEHASH = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")
_P = 2**256 - 2**32 - 977  # secp256k1's field prime
# The least x that is no point's x coordinate: x^3 + 7 is not a square mod p (Euler's criterion).
_NOT_AN_X = next(x for x in range(1, 100) if pow(x**3 + 7, (_P - 1) // 2, _P) != 1)


def _chain(variant: str, **kwargs) -> LocalChain:
    return LocalChain(**kwargs) if variant == contracts.USDC else LocalChain(token=variant, **kwargs)


# -- the slot constants ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", contracts.TOKENS)
def test_slots_are_the_compilers(variant):
    source = (Path(contracts.__file__).parent / f"{variant}.vy").read_text()
    layout = vyper.compile_code(source, output_formats=["layout"])["layout"]["storage_layout"]
    ours = LAYOUTS[variant]
    assert {
        "name": layout["name"]["slot"],
        "version": layout["_version"]["slot"],
        "balances": layout["_balances"]["slot"],
        "authorization_states": layout["_authorization_states"]["slot"],
        "total_supply": layout["totalSupply"]["slot"],
    } == dataclasses.asdict(ours)


@pytest.mark.parametrize("variant", contracts.TOKENS)
def test_storage_reads_equal_the_views(variant):
    chain = _chain(variant, token_name="Some Token With A Name Longer Than One Word", token_version="v2.2")
    payer = address_of_key(chain.new_key())
    chain.fund(payer, usdc=123_456)
    nonce = b"\x07" * 32
    token = chain.token_state(chain.usdc)
    assert isinstance(token, TokenState) and token.variant == variant
    assert token.balance_of(payer) == chain.balance_of(payer) == 123_456
    assert token.balance_of(chain.bank) == chain.balance_of(chain.bank) == 0
    assert token.name_of() == chain.name_of() and token.version_of() == chain.version_of() == "v2.2"
    assert token.authorization_state(payer, nonce) is chain.authorization_state(payer, nonce) is False


def test_unknown_code_and_other_chains_are_simulated():
    chain = LocalChain()
    assert chain.token_state(chain.multicall) is None
    assert chain.token_state(chain.bank) is None


# -- the differential test ---------------------------------------------------------------------


@dataclasses.dataclass
class World:
    chain: LocalChain
    relayer: bytes  # submits settlements and cancellations for the history of a case
    payers: dict[str, tuple[bytes, str]]
    payee: str
    eoa: str
    base: object  # snapshot every example starts from


def _world(variant: str) -> World:
    chain = _chain(variant, seed=5)
    relayer = chain.new_key()
    keys = {kind: chain.new_key() for kind in ("rich", "exact", "poor", "broke")}
    payers = {kind: (key, address_of_key(key)) for kind, key in keys.items()}
    payee, eoa = address_of_key(chain.new_key()), address_of_key(chain.new_key())
    grants = [(payers["rich"][1], RICH, 0), (payers["exact"][1], PRICE, 0), (payers["poor"][1], PRICE - 1, 0)]
    chain.fund_many([*grants, (address_of_key(relayer), 0, 10 * ETHER), (payee, 1, 0)])
    chain.advance(30)
    chain.mine()
    return World(chain, relayer, payers, payee, eoa, chain.snapshot())


@pytest.fixture(scope="module", params=contracts.TOKENS)
def world(request) -> World:
    return _world(request.param)


def _sign(key: bytes, domain: Domain, auth: Authorization) -> bytes:
    return sign_digest(key, authorization_digest(domain, auth))


def _settle_first(w: World, key: bytes, payer: str, nonce: bytes) -> None:
    """Use ``nonce`` of ``payer`` on chain with a valid zero-value authorization."""
    chain = w.chain
    now = chain.latest_timestamp
    auth = Authorization(payer, w.payee, 0, 0, now + 3600, nonce)
    sig = _sign(key, chain.domain, auth)
    data = transfer_with_authorization_call(
        payer, w.payee, 0, 0, now + 3600, nonce, sig[64], sig[:32], sig[32:64]
    )
    _mine(chain, chain.transact(w.relayer, chain.usdc, data, gas=200_000))


def _cancel_first(w: World, key: bytes, payer: str, nonce: bytes) -> None:
    chain = w.chain
    struct = keccak(CANCEL_TYPEHASH + bytes.fromhex(payer[2:]).rjust(32, b"\x00") + nonce)
    sig = sign_digest(key, typed_data_digest(chain.domain, struct))
    data = encode_call(
        "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)",
        payer,
        nonce,
        sig[64],
        sig[:32],
        sig[32:64],
    )
    _mine(chain, chain.transact(w.relayer, chain.usdc, data, gas=200_000))


def _mine(chain: LocalChain, tx_hash: bytes) -> None:
    chain.mine()
    assert chain.receipt(tx_hash).success


def _mangle(sig: bytes, how: str) -> bytes:
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    match how:
        case "high-s":  # the malleable twin: recovers to the same signer
            return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
        case "high-s same v":
            return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])
        case "v 0/1":
            return sig[:64] + bytes([v - 27])
        case "v 29" | "v 255" | "v 2":
            return sig[:64] + bytes([int(how[2:])])
        case "r zero":
            return b"\x00" * 32 + sig[32:]
        case "s zero":
            return r + b"\x00" * 32 + bytes([v])
        case "r at order":
            return SECP256K1_N.to_bytes(32, "big") + sig[32:]
        case "r not on curve":
            return _NOT_AN_X.to_bytes(32, "big") + sig[32:]
        case "short":
            return sig[:64]
    return sig


SIGNATURE_FAULTS = (
    "high-s",
    "high-s same v",
    "v 0/1",
    "v 29",
    "v 255",
    "v 2",
    "r zero",
    "s zero",
    "r at order",
    "r not on curve",
    "short",
    "other signer",
)
# At most one fault per payment, so that most payments pass the offline checks and reach the chain.
FAULTS = (
    *[None] * 12,
    "extra: wrong name",
    "extra: wrong version",
    "network: other chain",
    "signed: other name",
    "signed: other version",
    "signed: other chain id",
    "signed: other contract",
    "tamper: value",
    "tamper: to",
    "tamper: value and amount",
    "pay to: zero",
    "pay to: payer",
    "pay to: token",
    "asset: eoa",
    "asset: multicall",
    *SIGNATURE_FAULTS,
)

cases = st.fixed_dictionaries(
    {
        "payer": st.sampled_from(["rich", "exact", "poor", "broke"]),
        "history": st.sampled_from(["fresh", "fresh", "settled", "canceled", "other nonce settled"]),
        "nonce": st.sampled_from([b"\x01" * 32, b"\xff" * 32]) | st.binary(min_size=32, max_size=32),
        "now": st.integers(-12, 3),  # seconds after the latest block (before it: a stale clock)
        # validity window relative to ``now``; the offline checks ask for [..0] and [6..]
        "valid_after": st.sampled_from([-600, -1, 0, 0, 1]) | st.integers(-1000, 0),
        "valid_before": st.sampled_from([5, 6, 6, 7, 12, 18, TIMEOUT]) | st.integers(6, 5000),
        "amount": st.sampled_from([PRICE, PRICE, PRICE - 1, PRICE + 1, 0, RICH, 2**256 - 1]),
        "fault": st.sampled_from(FAULTS),
    }
)


def _payment(w: World, c: dict, now: int) -> tuple[PaymentPayload, PaymentRequirements]:
    chain, fault = w.chain, c["fault"] or ""
    key, payer = w.payers[c["payer"]]
    asset = {"asset: eoa": w.eoa, "asset: multicall": chain.multicall}.get(fault, chain.usdc)
    pay_to = {"pay to: zero": ZERO_ADDRESS, "pay to: payer": payer, "pay to: token": chain.usdc}.get(
        fault, w.payee
    )
    extra = {"name": chain.token_name, "version": chain.token_version}
    if fault == "extra: wrong name":
        extra["name"] = "USDC"
    elif fault == "extra: wrong version":
        extra["version"] = "1"
    requirements = PaymentRequirements(
        scheme="exact",
        network="eip155:1" if fault == "network: other chain" else chain.network,
        amount=c["amount"],
        asset=asset,
        pay_to=to_checksum_address(pay_to),
        max_timeout_seconds=TIMEOUT,
        extra=extra,
    )
    valid_after = max(0, now + c["valid_after"])
    auth = Authorization(payer, pay_to, c["amount"], valid_after, now + c["valid_before"], c["nonce"])
    domain = Domain(extra["name"], extra["version"], chain.chain_id, asset)
    if fault == "signed: other name":
        domain = dataclasses.replace(domain, name=domain.name + "!")
    elif fault == "signed: other version":
        domain = dataclasses.replace(domain, version="3")
    elif fault == "signed: other chain id":
        domain = dataclasses.replace(domain, chain_id=1)
    elif fault == "signed: other contract":
        domain = dataclasses.replace(domain, verifying_contract=w.eoa)
    signer = w.payers["exact" if c["payer"] == "rich" else "rich"][0] if fault == "other signer" else key
    sig = _mangle(_sign(signer, domain, auth), fault)
    if fault == "tamper: value":
        auth = dataclasses.replace(auth, value=auth.value ^ 1)
    elif fault == "tamper: to":
        auth = dataclasses.replace(auth, to=w.eoa)
    elif fault == "tamper: value and amount":
        auth = dataclasses.replace(auth, value=auth.value ^ 1)
        requirements = requirements.model_copy(update={"amount": auth.value})
    payload = {
        "signature": "0x" + sig.hex(),
        "authorization": {
            "from": payer,
            "to": to_checksum_address(auth.to),
            "value": str(auth.value),
            "validAfter": str(auth.valid_after),
            "validBefore": str(auth.valid_before),
            "nonce": "0x" + auth.nonce.hex(),
        },
    }
    return PaymentPayload(x402_version=2, accepted=requirements, payload=payload), requirements


@settings(max_examples=MAX_EXAMPLES)
@given(c=cases)
def test_state_and_simulate_give_the_same_verdict(world, c):
    w, chain = world, world.chain
    chain.revert(w.base)
    key, payer = w.payers[c["payer"]]
    if c["history"] == "settled":
        _settle_first(w, key, payer, c["nonce"])
    elif c["history"] == "canceled":
        _cancel_first(w, key, payer, c["nonce"])
    elif c["history"] == "other nonce settled":
        _settle_first(w, key, payer, keccak(c["nonce"]))
    now = chain.latest_timestamp + c["now"]
    payment, requirements = _payment(w, c, now)

    offline = check_offline(payment, requirements, now, chain.chain_id)
    simulated = verify_on_chain(offline, chain, now, "simulate")
    predicted = verify_on_chain(offline, chain, now, "state")
    assert predicted == simulated
    event(f"verdict: {simulated.reason and simulated.reason.value}: {simulated.message}")

    # The bare call too, whatever the offline checks say, wherever the state way applies.
    token = chain.token_state(requirements.asset)
    assert (token is not None) == (requirements.asset == chain.usdc)
    if token is not None:
        parsed = parse_exact_evm_payload(payment.payload)
        result = chain.call(chain.usdc, settlement_calldata(parsed), timestamp=now)
        prediction = token.predict(authorization_of(parsed), *settlement_vrs(parsed), now)
        assert (prediction.success, prediction.revert_reason) == (result.success, result.revert_reason)
        event(f"call: {result.revert_reason}")


# -- the facilitator ---------------------------------------------------------------------------


def _spy_calls(monkeypatch, chain: LocalChain) -> list:
    calls = []
    real = chain.call

    def call(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(chain, "call", call)
    return calls


@pytest.mark.parametrize("variant", contracts.TOKENS)
def test_state_way_runs_no_simulation(monkeypatch, variant):
    w = _world(variant)
    chain = w.chain
    facilitator = Facilitator(chain, w.relayer)
    payer = w.payers["rich"][1]
    now = chain.now
    c = {
        "payer": "rich",
        "amount": PRICE,
        "nonce": b"\x09" * 32,
        "valid_after": -600,
        "valid_before": TIMEOUT,
    }
    payment, requirements = _payment(w, c | {"fault": None}, now)
    calls = _spy_calls(monkeypatch, chain)

    assert facilitator.verify(payment, requirements, now).is_valid
    pending = facilitator.begin_settle(payment, requirements, now)
    assert isinstance(pending, PendingSettlement) and calls == []
    chain.mine()
    assert facilitator.finish_settle(pending, chain.receipt(pending.tx_hash)).success
    again = facilitator.verify(payment, requirements, chain.now)
    assert calls == []  # the views read below are calls
    assert chain.balance_of(payer) == RICH - PRICE and chain.authorization_state(payer, b"\x09" * 32)
    simulating = Facilitator(chain, w.relayer, verify_mode="simulate")
    assert again == simulating.verify(payment, requirements, chain.now)
    if variant == contracts.USDC:
        assert again.invalid_reason == "invalid_exact_evm_nonce_already_used"


def test_verify_mode_is_checked():
    chain = LocalChain()
    with pytest.raises(ValueError, match="verify_mode"):
        Facilitator(chain, chain.new_key(), verify_mode="guess")
    assert Facilitator(chain, chain.new_key()).verify_mode == "state"


def test_paid_request_settles_end_to_end_without_simulation(monkeypatch):
    tb = Testbed(seed=3)
    assert tb.facilitator.role.verify_mode == "state"
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /data": PRICE})
    block = tb.chain.block_number
    calls = _spy_calls(monkeypatch, tb.chain)

    resp = tb.client(alice).get(shop, "/data")

    assert resp.status == 200 and resp.settlement.success and calls == []
    assert tb.chain.balance_of(alice.address) == 1_000_000 - PRICE
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    transfers = tb.chain.transfers(since_block=block + 1)
    assert [(t.from_, t.to, t.value) for t in transfers] == [(alice.address, shop.pay_to, PRICE)]
    assert transfers[0].tx_hash.hex() == resp.settlement.transaction[2:]
