"""Paid requests end to end through the three roles, judged by what the chain says."""

from collections import deque

import pytest

from x402sim import Testbed
from x402sim.actors import (
    BaseDriver,
    Client,
    Facilitator,
    HttpRequest,
    HttpResponse,
    Send,
    SpendPolicy,
    Unreachable,
    run,
)
from x402sim.actors.server import DEFAULT_MAX_TIMEOUT_SECONDS
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    PaymentRequired,
    ReasonClass,
    SettleResponse,
    decode_header,
    encode_header,
    parse_payment_required,
    reason_class,
)

PRICE = 10_000


def _nonce(result) -> bytes:
    return bytes.fromhex(result.payment.payload["authorization"]["nonce"][2:])


def test_paid_request_moves_exactly_the_price_on_chain(tb):
    alice = tb.account(usdc=5_000_000)
    shop = tb.server({"GET /weather": PRICE})
    supply = tb.chain.total_supply()
    block = tb.chain.block_number

    resp = tb.client(alice).get(shop, "/weather")

    assert (
        resp.status == 200
        and resp.settlement.success
        and resp.json() == {"resource": "/weather", "paid": True}
    )
    assert tb.chain.balance_of(alice.address) == 5_000_000 - PRICE
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    assert tb.chain.authorization_state(alice.address, _nonce(resp)) is True
    assert tb.chain.total_supply() == supply
    transfers = tb.chain.transfers(since_block=block + 1)
    assert [(t.from_, t.to, t.value) for t in transfers] == [(alice.address, shop.pay_to, PRICE)]
    assert transfers[0].tx_hash.hex() == resp.settlement.transaction[2:]
    assert resp.settlement.payer == alice.address and resp.settlement.network == tb.chain.network
    record = tb.facilitator.settlements[-1]
    assert record.success and 60_000 < record.gas_used < 90_000 and record.fee_wei > 0


def test_unpaid_request_gets_a_v2_challenge(tb):
    shop = tb.server({"GET /weather": PRICE})
    answer = tb.perform(shop, Send(HttpRequest("GET", "/weather")))
    assert answer.status == 402 and answer.json() == {}
    required = decode_header(answer.header(PAYMENT_REQUIRED), PaymentRequired)
    (offer,) = required.accepts
    assert (offer.scheme, offer.network, offer.amount, offer.asset, offer.pay_to) == (
        "exact",
        tb.chain.network,
        PRICE,
        tb.chain.usdc,
        shop.pay_to,
    )
    assert offer.extra == {"name": "USD Coin", "version": "2"}
    assert required.resource.url == "http://localhost/weather"


def test_free_routes_are_served_without_payment(tb):
    shop = tb.server({"GET /weather": PRICE})
    alice = tb.account(usdc=PRICE)
    resp = tb.client(alice).get(shop, "/about")
    assert resp.status == 200 and resp.payment is None
    assert tb.chain.balance_of(alice.address) == PRICE


def test_replay_after_settlement_is_refused_and_pays_nothing(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    first = tb.client(alice).get(shop, "/weather")
    assert first.paid
    replay = HttpRequest("GET", "/weather", ((PAYMENT_SIGNATURE, encode_header(first.payment)),))
    answer = tb.perform(shop, Send(replay))
    assert answer.status == 402
    assert reason_class(parse_payment_required(answer.headers, answer.body).error) is ReasonClass.nonce_used
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    assert len([t for t in tb.chain.transfers() if t.to == shop.pay_to]) == 1


@pytest.mark.parametrize("dedupe", [True, False])
def test_same_payment_twice_before_it_lands_transfers_once(dedupe):
    tb = Testbed(seed=3, dedupe=dedupe)
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    required = parse_payment_required(*_challenge(tb, shop))
    payment = tb.client(alice).create_payment(required)
    requirements = required.accepts[0]
    facilitator = tb.facilitator.role

    first = facilitator.begin_settle(payment, requirements, tb.now)
    second = facilitator.begin_settle(payment, requirements, tb.now)
    tb.mine()
    outcomes = [first, second]
    finished = [
        facilitator.finish_settle(p, tb.chain.receipt(p.tx_hash)) if not isinstance(p, SettleResponse) else p
        for p in outcomes
    ]
    assert [f.success for f in finished] == [True, False]
    expected = ReasonClass.duplicate if dedupe else ReasonClass.nonce_used
    assert reason_class(finished[1].error_reason) is expected
    if dedupe:
        assert finished[1].transaction == ""  # refused before touching the chain
    assert tb.chain.balance_of(shop.pay_to) == PRICE
    assert len([t for t in tb.chain.transfers() if t.to == shop.pay_to]) == 1


def _challenge(tb, shop, path="/weather"):
    answer = tb.perform(shop, Send(HttpRequest("GET", path)))
    return answer.headers, answer.body


def test_settlement_failure_withholds_the_body(tb):
    alice = tb.account(usdc=1_000_000)

    def slow(request):  # the work outlives the authorization's validity window
        tb.advance(DEFAULT_MAX_TIMEOUT_SECONDS + 60)
        return HttpResponse.of_json(200, {"secret": "the paid content"})

    shop = tb.server({"GET /report": PRICE}, handlers={"GET /report": slow})
    resp = tb.client(alice).get(shop, "/report")
    assert resp.status == 402
    assert b"the paid content" not in resp.body
    assert resp.settlement is not None and not resp.settlement.success
    assert reason_class(resp.settlement.error_reason) is ReasonClass.expired
    assert resp.response.header(PAYMENT_RESPONSE) is not None
    assert tb.chain.balance_of(alice.address) == 1_000_000
    assert tb.chain.authorization_state(alice.address, _nonce(resp)) is False


def test_front_run_settlement_fails_on_chain_and_withholds_the_body(tb):
    """Someone else submits the same authorization first: our transaction reverts on chain."""
    alice = tb.account(usdc=1_000_000)
    thief = tb.account(eth=10**18)

    def front_run(request):
        from x402sim.mechanisms.exact_eip3009 import settlement_calldata
        from x402sim.protocol import parse_exact_evm_payload, read_payment

        payload = parse_exact_evm_payload(read_payment(request.headers).payload)
        tb.chain.transact(thief.key, tb.chain.usdc, settlement_calldata(payload), gas=150_000)
        return HttpResponse.of_json(200, {"secret": "the paid content"})

    shop = tb.server({"GET /report": PRICE}, handlers={"GET /report": front_run})
    resp = tb.client(alice).get(shop, "/report")
    assert resp.status == 402 and b"the paid content" not in resp.body
    assert reason_class(resp.settlement.error_reason) is ReasonClass.nonce_used
    assert resp.settlement.transaction != ""  # it did reach the chain, and reverted there
    receipt = tb.chain.receipt(bytes.fromhex(resp.settlement.transaction[2:]))
    assert not receipt.success and "authorization is used" in receipt.revert_reason
    assert tb.chain.balance_of(shop.pay_to) == PRICE  # paid all the same, through the thief's transaction


def test_handler_error_is_passed_through_and_nothing_is_settled(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server(
        {"GET /broken": PRICE}, handlers={"GET /broken": lambda r: HttpResponse.of_json(503, {})}
    )
    resp = tb.client(alice).get(shop, "/broken")
    assert resp.status == 503 and resp.settlement is None
    assert tb.chain.balance_of(alice.address) == 1_000_000
    assert not tb.facilitator.settlements


def test_upfront_mode_settles_before_the_handler_runs(tb):
    alice = tb.account(usdc=1_000_000)
    seen = []

    def handler(request):
        seen.append(tb.chain.balance_of(alice.address))
        return HttpResponse.of_json(200, {"ok": True})

    shop = tb.server({"GET /job": PRICE}, handlers={"GET /job": handler}, upfront=True)
    resp = tb.client(alice).get(shop, "/job")
    assert resp.status == 200 and resp.paid
    assert seen == [1_000_000 - PRICE]  # the money had moved when the work began


def test_upfront_mode_does_not_run_the_handler_when_settlement_fails(tb):
    poor = tb.account(usdc=PRICE - 1)
    calls = []
    shop = tb.server({"GET /job": PRICE}, handlers={"GET /job": lambda r: calls.append(r)}, upfront=True)
    resp = tb.client(poor).get(shop, "/job")
    assert resp.status == 402 and calls == []
    assert reason_class(resp.settlement.error_reason) is ReasonClass.balance


def test_v1_flow_on_a_chain_with_a_v1_name():
    tb = Testbed(seed=4, chain_id=84532)
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE}, x402_version=1)
    first = tb.perform(shop, Send(HttpRequest("GET", "/weather")))
    assert first.status == 402 and first.json()["x402Version"] == 1
    assert first.json()["accepts"][0]["network"] == "base-sepolia"
    assert first.json()["accepts"][0]["maxAmountRequired"] == str(PRICE)
    resp = tb.client(alice).get(shop, "/weather")
    assert resp.status == 200 and resp.payment.x402_version == 1
    assert resp.response.header(X_PAYMENT_RESPONSE) is not None and resp.settlement.success
    assert resp.settlement.network == "base-sepolia"
    assert tb.chain.balance_of(shop.pay_to) == PRICE


def test_v1_is_refused_for_a_chain_v1_cannot_name(tb):
    with pytest.raises(ValueError, match="no x402 v1 name"):
        tb.server({"GET /weather": PRICE}, x402_version=1)


def test_accepted_that_differs_from_every_offer_gets_no_matching_requirements(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    required = parse_payment_required(*_challenge(tb, shop))
    cheap = required.model_copy(update={"accepts": [required.accepts[0].model_copy(update={"amount": 1})]})
    payment = tb.client(alice).create_payment(cheap)
    answer = tb.perform(
        shop, Send(HttpRequest("GET", "/weather", ((PAYMENT_SIGNATURE, encode_header(payment)),)))
    )
    assert answer.status == 402
    assert parse_payment_required(answer.headers, answer.body).error == "No matching payment requirements"
    assert tb.chain.balance_of(alice.address) == 1_000_000


def test_malformed_payment_header_gets_400_naming_the_problem(tb):
    shop = tb.server({"GET /weather": PRICE})
    for header, value in (
        (PAYMENT_SIGNATURE, "not base64!"),
        (X_PAYMENT, "e30="),
        (PAYMENT_SIGNATURE, "e30="),
    ):
        answer = tb.perform(shop, Send(HttpRequest("GET", "/weather", ((header, value),))))
        assert answer.status == 400 and answer.header(PAYMENT_REQUIRED) is None
        assert answer.json()["error"].startswith("invalid payment header")
    assert shop.stats["malformed"] == 3 and shop.stats["paid"] == 0


def test_unreachable_facilitator_gives_502(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    client = tb.client(alice)

    class Driver(BaseDriver):  # the server answers; its facilitator does not
        world = "test"

        def send(self, effect):
            return run(shop.role.handle(effect.request), self)

        def verify(self, effect):
            raise Unreachable("facilitator", "connection refused")

        settle = verify

    result = run(client.role.fetch(HttpRequest("GET", "/weather"), tb.now), Driver())
    assert result.status == 502 and "facilitator unreachable" in result.json()["error"]
    assert tb.chain.balance_of(alice.address) == 1_000_000


def test_spend_policy_refuses_and_pays_nothing(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /cheap": 1_000, "GET /dear": 50_000})
    client = tb.client(alice, SpendPolicy(max_price=10_000, budget=2_500))
    assert client.get(shop, "/dear").refused.startswith("price 50000 exceeds max price")
    assert client.get(shop, "/cheap").paid
    assert client.get(shop, "/cheap").paid
    over = client.get(shop, "/cheap")
    assert over.status == 402 and "budget" in over.refused
    assert client.spent == 2_000 == 1_000_000 - tb.chain.balance_of(alice.address)
    allowed = tb.client(alice, SpendPolicy(allowed_pay_to=["0x" + "00" * 20]))
    assert "payTo" in allowed.get(shop, "/cheap").refused


def test_client_records_what_it_paid(tb):
    alice = tb.account(usdc=1_000_000)
    shop = tb.server({"GET /a": 100, "GET /b": 200})
    client = tb.client(alice)
    client.get(shop, "/a")
    client.get(shop, "/b")
    assert [(p.resource, p.amount, p.settled, p.pay_to) for p in client.payments] == [
        ("/a", 100, True, shop.pay_to),
        ("/b", 200, True, shop.pay_to),
    ]
    assert client.spent == 300


def test_many_settlements_pending_at_once_from_one_facilitator_key(tb):
    payers = tb.accounts(5, usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    required = parse_payment_required(*_challenge(tb, shop))
    facilitator = tb.facilitator.role
    pendings = [
        facilitator.begin_settle(tb.client(p).create_payment(required), required.accepts[0], tb.now)
        for p in payers
    ]
    assert tb.chain.pending_count == 5
    tb.mine()
    assert all(facilitator.finish_settle(p, tb.chain.receipt(p.tx_hash)).success for p in pendings)
    assert tb.chain.balance_of(shop.pay_to) == 5 * PRICE


def test_the_facilitator_forgets_expired_claims_and_still_refuses_their_replays(monkeypatch):
    from x402sim.actors import facilitator as facilitator_module

    monkeypatch.setattr(facilitator_module, "PRUNE_FLOOR", 4)
    tb = Testbed(seed=5)
    payers = tb.accounts(6, usdc=1_000_000)
    shop = tb.server({"GET /weather": PRICE})
    role = tb.facilitator.role
    results = [tb.client(p).get(shop, "/weather") for p in payers[:3]]
    assert role.claimed == 3
    tb.advance(3600)  # every authorization so far is expired
    for p in payers[3:]:
        assert tb.client(p).get(shop, "/weather").paid
    assert role.claimed < 6  # the expired three were forgotten
    replay = HttpRequest("GET", "/weather", ((PAYMENT_SIGNATURE, encode_header(results[0].payment)),))
    answer = tb.perform(shop, Send(replay))
    assert answer.status == 402
    assert reason_class(parse_payment_required(answer.headers, answer.body).error) is ReasonClass.expired
    assert tb.chain.balance_of(shop.pay_to) == 6 * PRICE


def test_bounded_history_keeps_the_newest_records_and_counts_every_settled_payment(tb):
    alice = tb.account(usdc=5_000_000)
    shop = tb.server({"GET /weather": PRICE})
    client = tb.client(alice)
    client.role.payments = deque(maxlen=2)  # as Client(history=2) makes it
    tb.facilitator.role.settlements = deque(maxlen=0)  # as Facilitator(history=0)
    nonces = [_nonce(client.get(shop, "/weather")) for _ in range(3)]
    assert [bytes.fromhex(p.nonce[2:]) for p in client.payments] == nonces[1:]
    assert client.spent == 3 * PRICE == 5_000_000 - tb.chain.balance_of(alice.address)
    assert not tb.facilitator.settlements
    assert list(Client(b"\x01" * 32, ("eip155:1",), history=2).payments) == []
    assert Client(b"\x01" * 32, ("eip155:1",), history=2).payments.maxlen == 2
    assert Facilitator(tb.chain, b"\x02" * 32, history=0).settlements.maxlen == 0
