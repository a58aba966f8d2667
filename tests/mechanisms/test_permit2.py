"""``exact`` with Permit2, ``upto`` and the gas-sponsoring extensions, through the reference roles.

Every outcome is judged on chain: balances, Permit2's nonce bitmap, allowances, ether and the
``Transfer`` logs of the block; a refused payment moves nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402sim.actors.facilitator import Facilitator
from x402sim.actors.messages import HttpRequest, HttpResponse, Send
from x402sim.actors.server import Route, resolve_charge
from x402sim.evm.permit2 import PERMIT2_ADDRESS, allowance, approve_call, eip2612_nonce, nonce_used
from x402sim.evm.txsign import GWEI, sign_eip1559
from x402sim.mechanisms import EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, SPONSORING_EXTENSIONS
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PaymentPayload,
    PaymentRequired,
    Reason,
    decode_header,
    parse_payment_required,
    read_settlement,
)
from x402sim.testbed import Testbed

PRICE = 10_000
MAXIMUM = 50_000
FUNDS = 1_000_000


def _testbed(sponsoring=SPONSORING_EXTENSIONS) -> Testbed:
    return Testbed(seed=23, sponsoring=sponsoring)


def _shop(tb: Testbed, charge=None, **route):
    routes = {
        "GET /permit2": Route("GET /permit2", PRICE, transfer_method="permit2"),
        "GET /upto": Route("GET /upto", MAXIMUM, scheme="upto", usage=charge or (lambda req, resp: PRICE)),
        "GET /eip3009": Route("GET /eip3009", PRICE),
    }
    return tb.server(routes)


def _challenge(tb, shop, path) -> PaymentRequired:
    first = tb.perform(shop, Send(HttpRequest("GET", path)))
    return parse_payment_required(first.headers, first.body)


def _payment(tb, shop, payer, path) -> tuple[PaymentPayload, object]:
    required = _challenge(tb, shop, path)
    payment = tb.client(payer).create_payment(required)
    return payment, required.accepts[0]


def _nonce(payment: PaymentPayload) -> int:
    return int(payment.payload["permit2Authorization"]["nonce"])


def _received(tb, address, since):
    return [(t.from_, t.value) for t in tb.chain.transfers(since_block=since + 1) if t.to == address]


# -- exact with Permit2 ---------------------------------------------------------------------------


def test_an_approved_payer_pays_exactly_once_through_the_exact_proxy():
    tb = _testbed(())
    shop, payer = _shop(tb), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    before = tb.chain.block_number
    payment, requirements = _payment(tb, shop, payer, "/permit2")
    assert requirements.extra["assetTransferMethod"] == "permit2"
    answer = tb.facilitator.settle(payment, requirements)
    assert answer.success and answer.amount is None  # exact answers carry no amount
    assert tb.chain.balance_of(payer.address) == FUNDS - PRICE
    assert _received(tb, shop.pay_to, before) == [(payer.address, PRICE)]
    assert nonce_used(tb.chain, payer.address, _nonce(payment))
    again = tb.facilitator.settle(payment, requirements)
    assert not again.success and again.error_reason == Reason.duplicate_settlement
    assert tb.chain.balance_of(payer.address) == FUNDS - PRICE


def test_a_permit2_nonce_used_on_chain_is_refused_before_any_transaction():
    tb = _testbed(())
    shop, payer = _shop(tb), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, "/permit2")
    assert tb.facilitator.settle(payment, requirements).success
    other = Facilitator(tb.chain, tb.chain.new_key())  # a facilitator that never saw the payment
    tb.chain.fund(other.address, eth=10**18)
    verdict = other.verify(payment, requirements, tb.now)
    assert verdict.invalid_reason == Reason.invalid_exact_evm_nonce_already_used
    assert not other.settle_now(payment, requirements, tb.now).success
    assert tb.chain.nonce(other.address) == 0  # nothing was sent


@pytest.mark.parametrize(
    ("path", "change", "reason"),
    [
        ("/permit2", {"spender": "0x" + "11" * 20}, Reason.invalid_permit2_spender),
        (
            "/permit2",
            {"witness": {"to": "0x" + "22" * 20, "validAfter": "0"}},
            Reason.invalid_permit2_recipient_mismatch,
        ),
        ("/permit2", {"deadline": "1"}, Reason.permit2_deadline_expired),
        ("/permit2", {"witness": None, "validAfter": "9999999999"}, Reason.permit2_not_yet_valid),
        ("/permit2", {"permitted": {"amount": str(PRICE - 1)}}, Reason.permit2_amount_mismatch),
        ("/permit2", {"permitted": {"token": "0x" + "33" * 20}}, Reason.permit2_token_mismatch),
        ("/permit2", {"nonce": "7"}, Reason.invalid_permit2_signature),
        ("/upto", {"permitted": {"amount": str(MAXIMUM - 1)}}, Reason.permit2_amount_mismatch),
        ("/upto", {"witness": None, "facilitator": "0x" + "44" * 20}, Reason.upto_facilitator_mismatch),
        ("/upto", {"spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"}, Reason.invalid_permit2_spender),
    ],
)
def test_each_row_of_the_verify_tables_refuses_with_its_reason_and_nothing_moves(path, change, reason):
    tb = _testbed(())
    shop, payer = _shop(tb), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, path)
    authorization = dict(payment.payload["permit2Authorization"])
    for key, value in change.items():
        if key in ("validAfter", "facilitator"):
            authorization["witness"] = {**authorization["witness"], key: value}
        elif key == "permitted":
            authorization["permitted"] = {**authorization["permitted"], **value}
        elif value is not None:
            authorization[key] = value
    tampered = payment.model_copy(
        update={"payload": {**payment.payload, "permit2Authorization": authorization}}
    )
    verdict = tb.facilitator.verify(tampered, requirements)
    assert verdict.invalid_reason == reason
    sent = tb.chain.nonce(tb.facilitator.address)
    settled = tb.facilitator.settle(tampered, requirements)
    if path == "/upto" and "permitted" in change:  # /settle reads the amount as the charge, checked last
        reason = Reason.invalid_permit2_signature
    assert not settled.success and settled.error_reason == reason and settled.transaction == ""
    assert tb.chain.nonce(tb.facilitator.address) == sent  # no transaction was sent
    assert tb.chain.balance_of(payer.address) == FUNDS


# -- upto -------------------------------------------------------------------------------------------


def test_upto_charges_what_was_used_and_says_how_much():
    tb = _testbed(())
    shop, payer = _shop(tb, charge=lambda req, resp: 1_234), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    required = _challenge(tb, shop, "/upto")
    offer = required.accepts[0]
    assert offer.scheme == "upto" and offer.amount == MAXIMUM
    assert offer.extra["facilitatorAddress"] == tb.facilitator.address
    before = tb.chain.block_number
    result = tb.client(payer).get(shop, "/upto")
    settlement = read_settlement(result.response.headers)
    assert result.response.status == 200 and settlement.success and settlement.amount == "1234"
    assert _received(tb, shop.pay_to, before) == [(payer.address, 1_234)]
    assert tb.chain.balance_of(payer.address) == FUNDS - 1_234
    record = tb.facilitator.settlements[-1]
    assert record.amount == 1_234 and record.success


def test_a_charge_of_zero_sends_nothing_and_leaves_the_permit_unused():
    tb = _testbed(())
    shop, payer = _shop(tb, charge=lambda req, resp: 0), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, "/upto")
    zero = requirements.model_copy(update={"amount": 0})
    facilitator_nonce = tb.chain.nonce(tb.facilitator.address)
    answer = tb.facilitator.settle(payment, zero)
    assert answer.success and answer.transaction == "" and answer.amount == "0"
    assert tb.chain.nonce(tb.facilitator.address) == facilitator_nonce  # no transaction
    assert tb.chain.balance_of(payer.address) == FUNDS
    assert not nonce_used(tb.chain, payer.address, _nonce(payment))


def test_a_charge_above_the_signed_maximum_is_refused_by_the_facilitator_and_the_server():
    tb = _testbed(())
    shop, payer = _shop(tb, charge=lambda req, resp: MAXIMUM + 1), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, "/upto")
    over = requirements.model_copy(update={"amount": MAXIMUM + 1})
    answer = tb.facilitator.settle(payment, over)
    assert not answer.success
    assert answer.error_reason == Reason.invalid_upto_evm_payload_settlement_exceeds_amount
    result = tb.client(payer).get(shop, "/upto")
    assert result.response.status == 402 and shop.stats["overcharge_refused"] == 1
    assert tb.chain.balance_of(payer.address) == FUNDS


def test_only_the_named_facilitator_can_settle_an_upto_permit():
    tb = _testbed(())
    shop, payer = _shop(tb), tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, "/upto")
    other = Facilitator(tb.chain, tb.chain.new_key())
    tb.chain.fund(other.address, eth=10**18)
    assert other.verify(payment, requirements, tb.now).invalid_reason == Reason.upto_facilitator_mismatch
    assert tb.chain.balance_of(payer.address) == FUNDS


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(maximum=st.integers(1, 10**9), share=st.fractions(0, 1), over=st.integers(1, 10**6))
def test_upto_moves_the_charge_when_it_fits_and_nothing_when_it_does_not(maximum, share, over):
    tb = _testbed(())
    charge = int(maximum * share)
    shop = tb.server({"GET /m": Route("GET /m", maximum, scheme="upto")})
    payer = tb.account(usdc=maximum, eth=10**17)
    tb.approve_permit2(payer)
    payment, requirements = _payment(tb, shop, payer, "/m")
    for amount in (maximum + over, charge):
        answer = tb.facilitator.settle(payment, requirements.model_copy(update={"amount": amount}))
        fits = amount <= maximum
        assert answer.success is fits
        assert answer.amount == (str(amount) if fits else None)
    assert tb.chain.balance_of(shop.pay_to) == charge
    assert tb.chain.balance_of(payer.address) == maximum - charge
    assert nonce_used(tb.chain, payer.address, _nonce(payment)) is (charge > 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1500, 1500), ("1500", 1500), ("50%", 25_000), ("33.33%", 16_665), ("$0.002", 2_000), ("100%", MAXIMUM)],
)
def test_charges_read_as_the_sdks_read_their_override(value, expected):
    assert resolve_charge(value, MAXIMUM, 6) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "50.001%", "$", "%", "ten", -3])
def test_a_charge_of_no_known_form_is_an_error(value):
    with pytest.raises(ValueError, match="charge"):
        resolve_charge(value, MAXIMUM, 6)


def test_the_settlement_overrides_header_sets_the_charge_and_never_reaches_the_payer():
    tb = _testbed(())
    shop = tb.server(
        {"GET /llm": Route("GET /llm", MAXIMUM, scheme="upto")},
        handlers={
            "GET /llm": lambda req: HttpResponse.of_json(
                200, {"tokens": 7}, (("Settlement-Overrides", '{"amount": "10%"}'),)
            )
        },
    )
    payer = tb.account(usdc=FUNDS, eth=10**17)
    tb.approve_permit2(payer)
    result = tb.client(payer).get(shop, "/llm")
    assert result.response.status == 200 and result.response.header("Settlement-Overrides") is None
    assert tb.chain.balance_of(shop.pay_to) == MAXIMUM // 10


# -- allowance, 412 and gas sponsoring ----------------------------------------------------------------


def test_without_allowance_or_sponsoring_the_server_answers_412_and_nothing_moves():
    tb = _testbed(())
    shop, payer = _shop(tb), tb.account(usdc=FUNDS)
    payment, requirements = _payment(tb, shop, payer, "/permit2")
    assert tb.facilitator.verify(payment, requirements).invalid_reason == Reason.permit2_allowance_required
    result = tb.client(payer).get(shop, "/permit2")
    assert result.response.status == 412
    required = decode_header(result.response.header(PAYMENT_REQUIRED), PaymentRequired)
    assert required.error == Reason.permit2_allowance_required and required.accepts
    assert tb.chain.balance_of(payer.address) == FUNDS


@pytest.mark.parametrize("extension", SPONSORING_EXTENSIONS)
def test_a_cold_start_wallet_pays_through_each_sponsoring_extension(extension):
    tb = _testbed((extension,))
    shop = _shop(tb)
    required = _challenge(tb, shop, "/permit2")
    assert set(required.extensions or {}) == {extension}
    payer = tb.account(usdc=FUNDS)  # no ether, no allowance
    facilitator_eth = tb.chain.eth_balance(tb.facilitator.address)
    before = tb.chain.block_number
    result = tb.client(payer).get(shop, "/permit2")
    assert result.response.status == 200
    assert _received(tb, shop.pay_to, before) == [(payer.address, PRICE)]
    record = tb.facilitator.settlements[-1]
    spent = facilitator_eth - tb.chain.eth_balance(tb.facilitator.address)
    if extension == EIP2612_GAS_SPONSORING:
        assert eip2612_nonce(tb.chain, tb.chain.usdc, payer.address) == 1  # the permit was used
        assert allowance(tb.chain, tb.chain.usdc, payer.address, PERMIT2_ADDRESS) == 0  # permit = price
        assert record.sponsored_wei == 0 and spent == record.fee_wei
    else:
        assert allowance(tb.chain, tb.chain.usdc, payer.address, PERMIT2_ADDRESS) == 2**256 - 1 - PRICE
        assert tb.chain.nonce(payer.address) == 1  # its approval was mined
        assert record.sponsored_wei > 0 and spent == record.fee_wei + record.sponsored_wei


def test_an_extension_the_facilitator_does_not_offer_is_not_used():
    tb = _testbed((EIP2612_GAS_SPONSORING,))
    shop, payer = _shop(tb), tb.account(usdc=FUNDS)
    required = _challenge(tb, shop, "/permit2")
    declared = {**(required.extensions or {}), ERC20_APPROVAL_GAS_SPONSORING: {"info": {}}}
    del declared[EIP2612_GAS_SPONSORING]
    payment = tb.client(payer).create_payment(required.model_copy(update={"extensions": declared}))
    assert ERC20_APPROVAL_GAS_SPONSORING in (payment.extensions or {})
    verdict = tb.facilitator.verify(payment, required.accepts[0])
    assert verdict.invalid_reason == Reason.permit2_allowance_required


def _approval(tb, payer, *, nonce=0, fee=GWEI, to=None):
    return sign_eip1559(
        payer.key,
        chain_id=tb.chain.chain_id,
        nonce=nonce,
        gas=70_000,
        max_fee_per_gas=fee,
        max_priority_fee_per_gas=0,
        to=to or tb.chain.usdc,
        data=approve_call(PERMIT2_ADDRESS, 2**256 - 1),
    ).raw


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda tb, p: _approval(tb, p, nonce=5), Reason.erc20_approval_tx_wrong_nonce),
        (lambda tb, p: _approval(tb, p, fee=10**12), Reason.erc20_approval_tx_too_costly),
        (lambda tb, p: _approval(tb, p, to="0x" + "55" * 20), Reason.erc20_approval_tx_wrong_target),
        (lambda tb, p: b"\x02" + b"\x00" * 10, Reason.erc20_approval_tx_invalid_signature),
    ],
)
def test_an_approval_a_relayer_should_not_send_is_refused_before_any_ether_moves(build, reason):
    tb = _testbed((ERC20_APPROVAL_GAS_SPONSORING,))
    shop, payer = _shop(tb), tb.account(usdc=FUNDS)
    payment, requirements = _payment(tb, shop, payer, "/permit2")
    info = dict(payment.extensions[ERC20_APPROVAL_GAS_SPONSORING]["info"])
    info["signedTransaction"] = "0x" + build(tb, payer).hex()
    extensions = {ERC20_APPROVAL_GAS_SPONSORING: {"info": info}}
    bad = payment.model_copy(update={"extensions": extensions})
    eth = tb.chain.eth_balance(tb.facilitator.address)
    answer = tb.facilitator.settle(bad, requirements)
    assert not answer.success and answer.error_reason == reason
    assert tb.chain.eth_balance(tb.facilitator.address) == eth and tb.chain.eth_balance(payer.address) == 0


def test_an_eip2612_permit_for_another_value_is_refused_as_the_proxy_would():
    tb = _testbed((EIP2612_GAS_SPONSORING,))
    shop, payer = _shop(tb), tb.account(usdc=FUNDS)
    payment, requirements = _payment(tb, shop, payer, "/permit2")
    info = {**payment.extensions[EIP2612_GAS_SPONSORING]["info"], "amount": str(2**256 - 1)}
    bad = payment.model_copy(update={"extensions": {EIP2612_GAS_SPONSORING: {"info": info}}})
    assert tb.facilitator.verify(bad, requirements).invalid_reason == Reason.permit2_2612_amount_mismatch


# -- the client's choice ------------------------------------------------------------------------------


def test_the_client_pays_the_offer_of_lowest_cost_to_it():
    tb = _testbed(())
    payer = tb.account(usdc=FUNDS, eth=10**17)
    both = {
        "GET /a": Route("GET /a", PRICE, transfer_method="permit2"),
        "GET /b": Route("GET /b", PRICE),
    }
    shop = tb.server(both)
    permit2_offer = _challenge(tb, shop, "/a").accepts[0]
    eip3009_offer = _challenge(tb, shop, "/b").accepts[0]
    required = _challenge(tb, shop, "/a").model_copy(update={"accepts": [permit2_offer, eip3009_offer]})
    client = tb.client(payer).role
    # no allowance and no sponsoring: the Permit2 offer would need the client's own approval first
    assert client.choose(required)[0] == eip3009_offer
    tb.approve_permit2(payer)
    assert client.choose(required)[0] == permit2_offer  # equal cost now: the server's order
    cheaper = eip3009_offer.model_copy(update={"amount": PRICE - 1})
    assert client.choose(required.model_copy(update={"accepts": [permit2_offer, cheaper]}))[0] == cheaper


def test_two_payments_carrying_permits_of_one_nonce_never_both_reach_the_chain():
    tb = _testbed((EIP2612_GAS_SPONSORING,))
    shop, payer = _shop(tb), tb.account(usdc=FUNDS)
    first, requirements = _payment(tb, shop, payer, "/permit2")
    second, _ = _payment(tb, shop, payer, "/permit2")  # signed before the first lands: same permit nonce
    role = tb.facilitator.role
    pending = role.begin_settle(first, requirements, tb.now)
    sent = tb.chain.pending_count
    refused = role.begin_settle(second, requirements, tb.now)
    assert refused.error_reason == Reason.duplicate_settlement and "eip2612" in refused.error_message
    assert tb.chain.pending_count == sent  # nothing more was sent
    tb.chain.mine()
    assert role.finish_settle(pending, tb.chain.receipt(pending.tx_hash)).success
    third, _ = _payment(tb, shop, payer, "/permit2")  # signed now: the next permit nonce
    assert tb.facilitator.settle(third, requirements).success
    assert tb.chain.balance_of(payer.address) == FUNDS - 2 * PRICE
