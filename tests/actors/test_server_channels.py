"""The resource server's batch-settlement channels on the sans-IO role: the book (persisted in SQLite),
the cumulative check and its corrective 402, one request per channel, nothing committed before the
handler succeeded and the voucher was written, the deposit minimum, local verification, refunds, and
the claim/settle cadence. The facilitator is scripted; what the role sends it is asserted."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.actors import BaseDriver, HttpRequest, HttpResponse, run
from x402sim.actors.messages import Handle, Settle, Verify
from x402sim.actors.server import ResourceServer, Route
from x402sim.actors.server_channels import (
    CHANNEL_BUSY,
    CUMULATIVE_MISMATCH,
    DEPOSIT_BELOW_MIN,
    ChannelBook,
    ChannelBookError,
    ChannelRecord,
    claim_batches,
    claim_round_due,
    claims_due,
)
from x402sim.evm import channels as ch
from x402sim.evm.channels import (
    ChannelConfig,
    channel_id,
    claim_batch_digest,
    refund_digest,
    sign_voucher,
)
from x402sim.evm.eip712 import address_of_key, recover_digest
from x402sim.mechanisms import Mechanisms, default_mechanisms
from x402sim.mechanisms.batch_wire import (
    DepositPayload,
    Erc3009Deposit,
    RefundPayload,
    Voucher,
    VoucherPayload,
    parse_payload,
)
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    PaymentPayload,
    PaymentRequired,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
    decode_header,
    encode_header,
)

NETWORK = "eip155:31337"
CHAIN_ID = 31337
TOKEN = "0x" + "22" * 20
RECEIVER = "0x" + "33" * 20
PRICE = 1_000
PAYER_KEY = bytes.fromhex("11" * 32)
PAYER = address_of_key(PAYER_KEY)
AUTHORIZER_KEY = bytes.fromhex("44" * 32)
AUTHORIZER = address_of_key(AUTHORIZER_KEY)
T0 = 1_800_000_000


class _BatchMechanism:
    """batch-settlement's identity as the server looks it up (the facilitator's mechanism supplies
    it once merged): the scheme, family, transfer method and the offer's own extra (none)."""

    scheme = "batch-settlement"
    family = "eip155"
    transfer_method = "eip3009"
    ledger_rules = None
    reports_amount = True

    def extra(self, asset_name: str, asset_version: str) -> dict:
        return {}


def mechanisms() -> Mechanisms:
    found = default_mechanisms()
    if found.find("batch-settlement", NETWORK) is None:
        found = Mechanisms([*found, _BatchMechanism()])
    return found


def make_server(book: ChannelBook | None = None, **kwargs) -> ResourceServer:
    route = Route("GET /data", PRICE, scheme="batch-settlement", **kwargs.pop("route", {}))
    return ResourceServer(
        network=NETWORK,
        asset=TOKEN,
        asset_name="USDC",
        asset_version="2",
        pay_to=RECEIVER,
        routes={route.key: route},
        mechanisms=mechanisms(),
        channels=book or ChannelBook(),
        **{"receiver_authorizer_key": AUTHORIZER_KEY, **kwargs},
    )


def config(salt: int = 0, payer_authorizer: str | None = None) -> ChannelConfig:
    return ChannelConfig(
        PAYER, payer_authorizer or PAYER, RECEIVER, AUTHORIZER, TOKEN, 900, salt.to_bytes(32, "big")
    )


def voucher(cfg: ChannelConfig, amount: int) -> Voucher:
    cid = channel_id(cfg, CHAIN_ID)
    return Voucher(cid, amount, sign_voucher(PAYER_KEY, CHAIN_ID, cid, amount))


def request(server: ResourceServer, body) -> HttpRequest:
    offer = server.offers(server.routes["GET /data"])[0]
    payment = PaymentPayload(x402_version=2, payload=body.to_wire(), accepted=offer)
    return HttpRequest("GET", "/data", ((PAYMENT_SIGNATURE, encode_header(payment)),))


def deposit_body(cfg: ChannelConfig, amount: int, cumulative: int = PRICE) -> DepositPayload:
    auth = Erc3009Deposit(0, T0 + 3600, 7, b"\x01" * 65)
    return DepositPayload(cfg, voucher(cfg, cumulative), amount, auth)


def state(cfg: ChannelConfig, balance: int, claimed: int = 0, withdraw: int = 0, nonce: int = 0) -> dict:
    return {
        "channelId": "0x" + channel_id(cfg, CHAIN_ID).hex(),
        "balance": str(balance),
        "totalClaimed": str(claimed),
        "withdrawRequestedAt": withdraw,
        "refundNonce": str(nonce),
    }


class Facilitator(BaseDriver):
    """A scripted facilitator and application: verify answers ``verdict`` (with ``extra`` = the
    channel state), settle answers from ``settles`` in order, the handler answers ``status``."""

    world = "scripted"

    def __init__(self, verdict=None, settles=(), status: int = 200) -> None:
        self.verdict = verdict
        self.settles = list(settles)
        self.status = status
        self.effects: list = []

    def verify(self, effect: Verify):
        self.effects.append(effect)
        return self.verdict

    def settle(self, effect: Settle):
        self.effects.append(effect)
        return self.settles.pop(0)

    def handle(self, effect: Handle):
        self.effects.append(effect)
        return HttpResponse.of_json(self.status, {"data": 42})

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.effects]


def valid(cfg: ChannelConfig, balance: int, claimed: int = 0, withdraw: int = 0) -> VerifyResponse:
    answer = VerifyResponse(is_valid=True, payer=PAYER)
    return answer.model_copy(update={"extra": state(cfg, balance, claimed, withdraw)})


def settled(cfg: ChannelConfig | None = None, balance: int = 0, tx: str = "0x" + "ab" * 32) -> SettleResponse:
    answer = SettleResponse(success=True, transaction=tx, network=NETWORK, amount="")
    if cfg is None:
        return answer
    return answer.model_copy(update={"extra": {"channelState": state(cfg, balance)}})


def open_channel(server: ResourceServer, cfg: ChannelConfig, deposit: int = 50 * PRICE, now: int = T0):
    """A deposit (with its first voucher) served: the channel is in the book."""
    world = Facilitator(valid(cfg, 0), [settled(cfg, deposit)])
    answer = run(server.handle(request(server, deposit_body(cfg, deposit)), now), world)
    assert answer.status == 200, answer.body
    return answer, world


def required_of(answer: HttpResponse) -> PaymentRequired:
    return decode_header(answer.header(PAYMENT_REQUIRED), PaymentRequired)


def settlement_of(answer: HttpResponse) -> SettleResponse:
    return decode_header(answer.header(PAYMENT_RESPONSE), SettleResponse)


# -- the book -------------------------------------------------------------------------------------


def test_the_book_reopened_on_its_file_holds_the_same_channels_and_cadence(tmp_path):
    path = tmp_path / "channels.sqlite"
    book = ChannelBook(path)
    cfg = config(1)
    record = ChannelRecord(
        channel_id(cfg, CHAIN_ID),
        cfg,
        "GET /data",
        3 * PRICE,
        3 * PRICE,
        b"\x05" * 65,
        10**30,
        PRICE,
        T0 + 5,
        2,
        T0,
        T0 + 1,
        PRICE,
    )
    book.put(record)
    book.set_mark("claim:GET /data", T0)
    book.close()
    again = ChannelBook(path)
    assert again.all() == [record]
    assert again.get(record.channel_id) == record
    assert again.mark("claim:GET /data") == T0
    again.delete(record.channel_id)
    again.close()
    assert ChannelBook(path).all() == []


def test_a_file_that_is_no_channel_book_is_refused_naming_it(tmp_path):
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not a database, it is text " * 100)
    with pytest.raises(ChannelBookError, match=r"state\.sqlite"):
        ChannelBook(path)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE channels (id TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ChannelBookError, match=r"other\.sqlite"):
        ChannelBook(other)


# -- serving ----------------------------------------------------------------------------------------


def test_the_offer_names_the_receiver_authorizer_delay_domain_and_minimum_deposit():
    server = make_server(route={"min_deposit": 25 * PRICE, "withdraw_delay": 3600})
    offer = server.offers(server.routes["GET /data"])[0]
    assert offer.scheme == "batch-settlement"
    assert offer.extra["receiverAuthorizer"] == AUTHORIZER
    assert offer.extra["withdrawDelay"] == 3600
    assert (offer.extra["name"], offer.extra["version"]) == ("USDC", "2")
    assert offer.extra["minDeposit"] == str(25 * PRICE)
    plain = make_server()
    assert plain.offers(plain.routes["GET /data"])[0].extra["minDeposit"] == str(10 * PRICE)


def test_a_permit2_route_says_so_in_its_offer():
    server = make_server(route={"transfer_method": "permit2"})
    offer = server.offers(server.routes["GET /data"])[0]
    assert offer.extra["assetTransferMethod"] == "permit2"
    plain = make_server()
    assert "assetTransferMethod" not in plain.offers(plain.routes["GET /data"])[0].extra


def test_a_deposit_then_vouchers_are_charged_one_price_each_and_answered_with_the_channel_state():
    server = make_server()
    cfg = config()
    answer, world = open_channel(server, cfg)
    assert world.kinds() == ["Verify", "Handle", "Settle"]
    deposit = settlement_of(answer)
    assert deposit.transaction == "0x" + "ab" * 32
    assert deposit.extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)
    assert deposit.extra["chargedAmount"] == str(PRICE)
    for n in (2, 3):
        world = Facilitator(valid(cfg, 50 * PRICE))
        server.channel_state_ttl = 0  # always the facilitator
        answer = run(
            server.handle(request(server, VoucherPayload(cfg, voucher(cfg, n * PRICE))), T0 + n), world
        )
        assert answer.status == 200 and answer.json() == {"data": 42}
        assert world.kinds() == ["Verify", "Handle"]
        paid = settlement_of(answer)
        assert (paid.success, paid.transaction, paid.amount) == (True, "", "")
        assert paid.extra["chargedAmount"] == str(PRICE)
        assert paid.extra["channelState"]["chargedCumulativeAmount"] == str(n * PRICE)
        assert paid.extra["channelState"]["balance"] == str(50 * PRICE)
    record = server.channels.get(channel_id(cfg, CHAIN_ID))
    assert (record.charged, record.signed_max, record.balance) == (3 * PRICE, 3 * PRICE, 50 * PRICE)


def test_a_voucher_off_the_cumulative_gets_the_corrective_402_with_the_server_state():
    server = make_server()
    cfg = config()
    open_channel(server, cfg)
    held = voucher(cfg, PRICE)
    world = Facilitator(valid(cfg, 50 * PRICE))
    stale = request(server, VoucherPayload(cfg, voucher(cfg, 5 * PRICE)))
    answer = run(server.handle(stale, T0 + 1), world)
    assert answer.status == 402 and world.effects == []  # nothing verified, nothing served
    required = required_of(answer)
    assert required.error == CUMULATIVE_MISMATCH
    extra = required.accepts[0].extra
    assert extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)
    assert extra["channelState"]["balance"] == str(50 * PRICE)
    assert extra["voucherState"] == {
        "signedMaxClaimable": str(PRICE),
        "signature": "0x" + held.signature.hex(),
    }
    assert server.channels.get(held.channel_id).charged == PRICE


def test_a_second_request_on_a_channel_in_flight_is_refused_busy():
    server = make_server()
    cfg = config()
    open_channel(server, cfg)
    first = server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 1)
    server.channel_state_ttl = 0
    assert isinstance(next(first), Verify)  # in flight, waiting for the facilitator
    world = Facilitator(valid(cfg, 50 * PRICE))
    second = run(server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 1), world)
    assert second.status == 402 and world.effects == []
    assert required_of(second).error == CHANNEL_BUSY
    assert isinstance(first.send(valid(cfg, 50 * PRICE)), Handle)
    with pytest.raises(StopIteration) as done:
        first.send(HttpResponse.of_json(200, {}))
    assert done.value.value.status == 200
    third = Facilitator(valid(cfg, 50 * PRICE))
    answer = run(server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 3 * PRICE))), T0 + 2), third)
    assert answer.status == 200  # freed once the first was answered


def test_a_failed_handler_or_a_failed_verify_commits_nothing():
    server = make_server(channel_state_ttl=0)
    cfg = config()
    open_channel(server, cfg)
    before = server.channels.get(channel_id(cfg, CHAIN_ID))
    failing = Facilitator(valid(cfg, 50 * PRICE), status=503)
    answer = run(
        server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 1), failing
    )
    assert answer.status == 503 and answer.header(PAYMENT_RESPONSE) is None
    refused = Facilitator(
        VerifyResponse(is_valid=False, invalid_reason="invalid_batch_settlement_evm_voucher_signature")
    )
    answer = run(
        server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 2), refused
    )
    assert answer.status == 402 and refused.kinds() == ["Verify"]
    assert server.channels.get(channel_id(cfg, CHAIN_ID)) == before


def test_a_deposit_below_the_minimum_is_refused_before_anything():
    server = make_server(route={"min_deposit": 20 * PRICE})
    world = Facilitator(valid(config(), 0), [settled(config(), 5 * PRICE)])
    answer = run(server.handle(request(server, deposit_body(config(), 19 * PRICE)), T0), world)
    assert answer.status == 402 and world.effects == []
    assert required_of(answer).error == DEPOSIT_BELOW_MIN
    assert server.channels.all() == []


def test_a_deposit_whose_settlement_fails_serves_and_counts_nothing():
    server = make_server()
    cfg = config()
    failed = SettleResponse(
        success=False, error_reason="invalid_batch_settlement_evm_deposit_transaction_failed", network=NETWORK
    )
    world = Facilitator(valid(cfg, 0), [failed])
    answer = run(server.handle(request(server, deposit_body(cfg, 50 * PRICE)), T0), world)
    assert answer.status == 402 and b"42" not in answer.body
    assert server.channels.all() == []
    no_tx = Facilitator(valid(cfg, 0), [settled(cfg, 50 * PRICE, tx="")])
    answer = run(server.handle(request(server, deposit_body(cfg, 50 * PRICE)), T0), no_tx)
    assert answer.status == 402 and server.channels.all() == []


class _BrokenBook(ChannelBook):
    def put_many(self, records) -> None:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_voucher_that_cannot_be_written_is_not_served():
    server = make_server(book=_BrokenBook(), channel_state_ttl=0)
    cfg = config()
    world = Facilitator(valid(cfg, 50 * PRICE))
    answer = run(server.handle(request(server, VoucherPayload(cfg, voucher(cfg, PRICE))), T0), world)
    assert world.kinds() == ["Verify", "Handle"]  # the work was done, then held back
    assert answer.status == 500 and answer.header(PAYMENT_RESPONSE) is None
    assert b"42" not in answer.body


def test_a_fresh_mirror_verifies_vouchers_locally_and_refuses_a_forged_one():
    server = make_server()
    cfg = config()
    open_channel(server, cfg)  # synced with the deposit's settlement
    world = Facilitator()
    answer = run(server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 10), world)
    assert answer.status == 200 and world.kinds() == ["Handle"]
    cid = channel_id(cfg, CHAIN_ID)
    forged = Voucher(cid, 3 * PRICE, sign_voucher(AUTHORIZER_KEY, CHAIN_ID, cid, 3 * PRICE))
    answer = run(server.handle(request(server, VoucherPayload(cfg, forged)), T0 + 11), world)
    assert answer.status == 402 and world.kinds() == ["Handle"]
    too_much = ChannelRecord(cid, cfg, "GET /data")  # a mirror without the balance for it
    server.channels.put(replace(server.channels.get(cid), balance=2 * PRICE))
    answer = run(server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 3 * PRICE))), T0 + 12), world)
    assert answer.status == 402 and too_much.charged == 0
    stale = Facilitator(valid(cfg, 50 * PRICE))
    answer = run(
        server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 3 * PRICE))), T0 + 10_000), stale
    )
    assert answer.status == 200 and stale.kinds() == ["Verify", "Handle"]  # the mirror went stale


def test_a_refund_is_completed_signed_settled_and_the_drained_channel_forgotten():
    server = make_server(channel_state_ttl=0)
    cfg = config()
    open_channel(server, cfg, deposit=50 * PRICE)
    cid = channel_id(cfg, CHAIN_ID)
    world = Facilitator(valid(cfg, 50 * PRICE), [settled(cfg, PRICE)])
    answer = run(server.handle(request(server, RefundPayload(cfg, voucher(cfg, PRICE))), T0 + 5), world)
    assert answer.status == 200 and world.kinds() == ["Verify", "Settle"]  # no handler
    assert answer.json()["channelId"] == "0x" + cid.hex()
    sent = parse_payload(world.effects[1].payload.payload)
    assert isinstance(sent, RefundPayload) and sent.completed
    assert (sent.amount, sent.refund_nonce) == (49 * PRICE, 0)
    assert [(c.max_claimable, c.total_claimed) for c in sent.claims] == [(PRICE, PRICE)]
    assert recover_digest(refund_digest(CHAIN_ID, cid, 0, 49 * PRICE), sent.refund_signature) == AUTHORIZER
    assert recover_digest(claim_batch_digest(CHAIN_ID, sent.claims), sent.claim_signature) == AUTHORIZER
    assert settlement_of(answer).extra["channelState"]["chargedCumulativeAmount"] == str(PRICE)
    assert server.channels.get(cid) is None


def test_a_refund_voucher_must_be_the_charged_amount():
    server = make_server(channel_state_ttl=0)
    cfg = config()
    open_channel(server, cfg)
    world = Facilitator(valid(cfg, 50 * PRICE), [settled(cfg, PRICE)])
    answer = run(server.handle(request(server, RefundPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 5), world)
    assert answer.status == 402 and world.effects == []
    assert required_of(answer).error == CUMULATIVE_MISMATCH


# -- the cadence ------------------------------------------------------------------------------------


def claimed_rows(payment: PaymentPayload) -> list[tuple[bytes, int]]:
    body = parse_payload(payment.payload)
    return [(channel_id(c.config, CHAIN_ID), c.total_claimed) for c in body.claims]


def test_channel_work_claims_all_due_channels_in_one_signed_batch_then_settles():
    server = make_server(channel_state_ttl=0, claim_interval=60, settle_interval=120)
    configs = [config(salt) for salt in range(3)]
    for cfg in configs:
        open_channel(server, cfg)
    world = Facilitator(settles=[])
    work = run(server.channel_work(T0), world)  # starts the clock
    assert work.claims == [] and world.effects == []
    work = run(server.channel_work(T0 + 59), world)
    assert world.effects == []
    world.settles = [settled()]
    work = run(server.channel_work(T0 + 60), world)
    assert world.kinds() == ["Settle"]  # the claim; the settle interval has not passed
    for record in server.channels.all():
        assert (record.total_claimed, record.settled, record.unclaimed, record.unsettled) == (
            PRICE,
            0,
            0,
            PRICE,
        )
    world.settles = [settled()]
    settling = run(server.channel_work(T0 + 120), world)
    assert world.kinds() == ["Settle", "Settle"]
    claim, sweep = world.effects
    assert sorted(claimed_rows(claim.payload)) == sorted((channel_id(c, CHAIN_ID), PRICE) for c in configs)
    body = parse_payload(claim.payload.payload)
    assert recover_digest(claim_batch_digest(CHAIN_ID, body.claims), body.claim_signature) == AUTHORIZER
    assert (claim.requirements.to_wire()["amount"], claim.requirements.pay_to) == ("0", RECEIVER)
    assert parse_payload(sweep.payload.payload).to_wire() == {
        "type": "settle",
        "receiver": RECEIVER,
        "token": TOKEN,
    }
    assert work.claims == [(3, "0x" + "ab" * 32)] and len(settling.settlements) == 1
    for record in server.channels.all():
        assert (record.total_claimed, record.settled, record.unclaimed) == (PRICE, PRICE, 0)
    world.effects = []
    assert run(server.channel_work(T0 + 500), world).claims == [] and world.effects == []


def test_a_pending_withdrawal_is_claimed_at_once():
    server = make_server(channel_state_ttl=0)
    cfg, other = config(1), config(2)
    open_channel(server, cfg)
    open_channel(server, other)
    run(server.channel_work(T0), Facilitator())
    cid = channel_id(cfg, CHAIN_ID)
    server.channels.put(replace(server.channels.get(cid), withdraw_requested_at=T0 + 1))
    world = Facilitator(settles=[settled()])
    work = run(server.channel_work(T0 + 2), world)
    assert world.kinds() == ["Settle"] and claimed_rows(world.effects[0].payload) == [(cid, PRICE)]
    assert work.claims == [(1, "0x" + "ab" * 32)]


def test_a_failed_claim_leaves_the_channels_to_claim_again():
    server = make_server(channel_state_ttl=0)
    cfg = config()
    open_channel(server, cfg)
    run(server.channel_work(T0), Facilitator())
    refused = SettleResponse(
        success=False, error_reason="invalid_batch_settlement_evm_claim_transaction_failed", network=NETWORK
    )
    work = run(server.channel_work(T0 + 60), Facilitator(settles=[refused]))
    assert work.errors and server.channels.get(channel_id(cfg, CHAIN_ID)).unclaimed == PRICE


def test_a_refused_claim_batch_is_claimed_channel_by_channel_so_one_drained_channel_holds_none_back():
    server = make_server(channel_state_ttl=0)
    configs = [config(salt) for salt in range(3)]
    for cfg in configs:
        open_channel(server, cfg)
    run(server.channel_work(T0), Facilitator())
    refused = SettleResponse(
        success=False, error_reason="invalid_batch_settlement_evm_claim_simulation_failed", network=NETWORK
    )
    world = Facilitator(settles=[refused, settled(), refused, settled()])  # the batch, then row by row
    work = run(server.channel_work(T0 + 60), world)
    sizes = [len(claimed_rows(effect.payload)) for effect in world.effects]
    assert sizes == [3, 1, 1, 1]
    assert [rows for rows, _ in work.claims] == [1, 1] and len(work.errors) == 1
    unclaimed = [server.channels.get(channel_id(cfg, CHAIN_ID)).unclaimed for cfg in configs]
    assert unclaimed == [0, PRICE, 0]  # only the refused channel is left to claim again


def _record(n: int, authorizer: str, charged: int, claimed: int, withdraw: int, route: str) -> ChannelRecord:
    cfg = ChannelConfig(PAYER, PAYER, RECEIVER, authorizer, TOKEN, 900, n.to_bytes(32, "big"))
    return ChannelRecord(
        channel_id(cfg, CHAIN_ID), cfg, route, charged, charged, b"\x01" * 65, 10**9, claimed, withdraw
    )


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([AUTHORIZER, "0x" + "55" * 20]),
            st.integers(0, 5),
            st.integers(0, 5),
            st.booleans(),
            st.sampled_from(["GET /a", "GET /b"]),
        ),
        max_size=12,
    ),
    due=st.sets(st.sampled_from(["GET /a", "GET /b"])),
    max_claims=st.integers(1, 4),
)
def test_claims_are_due_exactly_for_unclaimed_vouchers_on_due_routes_or_withdrawing(rows, due, max_claims):
    records = [_record(i, a, c, min(c, k), T0 if w else 0, r) for i, (a, c, k, w, r) in enumerate(rows)]
    chosen = claims_due(records, due)
    for r in records:
        expected = r.charged > r.total_claimed and (r.route in due or r.withdraw_requested_at > 0)
        assert (r in chosen) == expected
    batches = claim_batches(chosen, max_claims)
    assert sorted(r.channel_id for b in batches for r in b) == sorted(r.channel_id for r in chosen)
    for batch in batches:
        assert 1 <= len(batch) <= max_claims
        assert len({r.config.receiver_authorizer for r in batch}) == 1


@given(now=st.integers(0, 10_000), last=st.none() | st.integers(0, 10_000), interval=st.integers(1, 600))
def test_a_claim_round_is_due_once_its_interval_has_passed(now, last, interval):
    assert claim_round_due(now, last, interval) == (last is not None and now - last >= interval)


def test_a_claim_landing_while_a_voucher_is_in_flight_is_not_undone_by_its_commit():
    server = make_server(channel_state_ttl=0)
    cfg = config()
    open_channel(server, cfg)
    run(server.channel_work(T0), Facilitator())
    flight = server.handle(request(server, VoucherPayload(cfg, voucher(cfg, 2 * PRICE))), T0 + 60)
    assert isinstance(next(flight), Verify)
    work = run(server.channel_work(T0 + 60), Facilitator(settles=[settled()]))
    assert work.claims == [(1, "0x" + "ab" * 32)]
    assert isinstance(flight.send(valid(cfg, 50 * PRICE)), Handle)
    with pytest.raises(StopIteration):
        flight.send(HttpResponse.of_json(200, {}))
    record = server.channels.get(channel_id(cfg, CHAIN_ID))
    assert (record.charged, record.total_claimed, record.unclaimed) == (2 * PRICE, PRICE, PRICE)


def test_idle_channels_are_refunded_their_unclaimed_escrow_and_forgotten():
    server = make_server(channel_state_ttl=0, refund_idle=600, claim_interval=10**6)
    cfg = config()
    open_channel(server, cfg, deposit=50 * PRICE)
    world = Facilitator(settles=[settled()])
    assert run(server.channel_work(T0 + 599), world).refunds == [] and world.effects == []
    work = run(server.channel_work(T0 + 600), world)
    assert work.refunds == ["0x" + "ab" * 32]
    sent = parse_payload(world.effects[0].payload.payload)
    assert isinstance(sent, RefundPayload) and (sent.amount, sent.refund_nonce) == (49 * PRICE, 0)
    assert [c.total_claimed for c in sent.claims] == [PRICE]  # what was served is claimed first
    assert server.channels.all() == []


# -- on chain: what the server claims is what it served ---------------------------------------


class ContractWorld(BaseDriver):
    """The batch-settlement contract on a local chain answering the server: verify reads the
    channel from the chain; a claim or settle payload is sent to the contract as the facilitator
    would (``claimWithSignature`` with the server's receiver-authorizer signature; ``settle``)."""

    world = "contract"

    def __init__(self, batch) -> None:
        self.batch = batch

    def verify(self, effect: Verify):
        body = parse_payload(effect.payload.payload)
        on_chain = ch.read_channel(self.batch.chain, body.voucher.channel_id)
        return VerifyResponse(is_valid=True, payer=body.config.payer).model_copy(
            update={"extra": on_chain.to_wire()}
        )

    def handle(self, effect: Handle):
        return HttpResponse.of_json(200, {"data": 42})

    def settle(self, effect: Settle):
        body = parse_payload(effect.payload.payload)
        if body.type == "claim":
            data = ch.claim_with_signature_call(body.claims, body.claim_signature)
        elif body.type == "refund":
            calls = [
                ch.refund_with_signature_call(
                    body.config, body.amount, body.refund_nonce, body.refund_signature
                )
            ]
            if (
                body.claims[0].total_claimed
                > ch.read_channel(self.batch.chain, body.voucher.channel_id).total_claimed
            ):
                calls.insert(0, ch.claim_with_signature_call(body.claims, body.claim_signature))
            data = ch.multicall_call(calls)
        else:
            data = ch.settle_call(body.receiver, body.token)
        receipt = self.batch.send("relayer", data)
        assert receipt.success, receipt.revert_reason
        answer = SettleResponse(success=True, transaction="0x" + receipt.tx_hash.hex(), network=NETWORK)
        if body.type == "refund":
            state = ch.read_channel(self.batch.chain, body.voucher.channel_id)
            answer = answer.model_copy(update={"extra": {"channelState": state.to_wire()}})
        return answer


def contract_server(batch) -> ResourceServer:
    route = Route("GET /data", PRICE, scheme="batch-settlement")
    return ResourceServer(
        network=batch.chain.network,
        asset=batch.token,
        asset_name=batch.chain.token_name,
        asset_version=batch.chain.token_version,
        pay_to=batch.addr("receiver"),
        routes={route.key: route},
        mechanisms=mechanisms(),
        receiver_authorizer_key=batch.keys["receiver_auth"],
        channel_state_ttl=0,
    )


def test_what_the_cadence_claims_and_settles_on_chain_is_exactly_what_was_served():
    from tests.evm.batch_world import World

    batch = World.build()
    server = contract_server(batch)
    configs = [batch.config(), batch.config()]
    world = ContractWorld(batch)
    served = {}
    for cfg, count in zip(configs, (3, 2), strict=True):
        batch.deposit(cfg, 20 * PRICE)
        cid = batch.cid(cfg)
        for n in range(1, count + 1):
            signature = ch.sign_voucher(batch.keys["payer_auth"], batch.chain_id, cid, n * PRICE)
            body = VoucherPayload(cfg, Voucher(cid, n * PRICE, signature))
            assert run(server.handle(request(server, body), T0 + n), world).status == 200
        served[cid] = count * PRICE
    run(server.channel_work(T0), world)
    assert [batch.state(c).total_claimed for c in configs] == [0, 0]
    work = run(server.channel_work(T0 + 60), world)
    assert work.claims and work.claims[0][0] == 2  # both channels in one claim
    assert {batch.cid(c): batch.state(c).total_claimed for c in configs} == served
    before = batch.balance("receiver")
    run(server.channel_work(T0 + 120), world)
    assert batch.balance("receiver") - before == sum(served.values())
    assert batch.receiver_totals() == (sum(served.values()), sum(served.values()))


def test_a_refund_completed_by_the_server_returns_the_unclaimed_escrow_on_chain():
    from tests.evm.batch_world import World

    batch = World.build()
    server = contract_server(batch)
    cfg = batch.config()
    batch.deposit(cfg, 20 * PRICE)
    cid = batch.cid(cfg)
    world = ContractWorld(batch)

    def signed(n: int) -> Voucher:
        return Voucher(
            cid, n * PRICE, ch.sign_voucher(batch.keys["payer_auth"], batch.chain_id, cid, n * PRICE)
        )

    for n in (1, 2, 3):
        assert (
            run(server.handle(request(server, VoucherPayload(cfg, signed(n))), T0 + n), world).status == 200
        )
    payer_before = batch.balance("payer")
    answer = run(server.handle(request(server, RefundPayload(cfg, signed(3))), T0 + 10), world)
    assert answer.status == 200, answer.body
    assert batch.balance("payer") - payer_before == 17 * PRICE
    on_chain = batch.state(cfg)
    assert (on_chain.balance, on_chain.total_claimed, on_chain.refund_nonce) == (3 * PRICE, 3 * PRICE, 1)
    assert server.channels.get(cid) is None  # drained: forgotten
    run(server.channel_work(T0 + 11), world)
    run(server.channel_work(T0 + 200), world)  # what the refund claimed is settled to the receiver
    assert batch.receiver_totals() == (3 * PRICE, 3 * PRICE)


def test_a_server_without_the_key_delegates_to_the_facilitators_receiver_authorizer():
    delegate = "0x" + "66" * 20
    kind = SupportedKind(
        x402_version=2, scheme="batch-settlement", network=NETWORK, extra={"receiverAuthorizer": delegate}
    )
    server = make_server(receiver_authorizer_key=None, supported=SupportedResponse(kinds=[kind]))
    offer = server.offers(server.routes["GET /data"])[0]
    assert offer.extra["receiverAuthorizer"] == to_checksum_address(delegate)
    cfg = ChannelConfig(PAYER, PAYER, RECEIVER, delegate, TOKEN, 900, b"\x09" * 32)
    open_channel(server, cfg)
    run(server.channel_work(T0), Facilitator())
    world = Facilitator(settles=[settled()])
    run(server.channel_work(T0 + 60), world)
    claim = parse_payload(world.effects[0].payload.payload)
    assert claim.claim_signature is None  # the facilitator signs as the channel's receiver authorizer
    with pytest.raises(ValueError, match="needs a receiver authorizer"):
        bare = make_server(receiver_authorizer_key=None)
        bare.offers(bare.routes["GET /data"])


class _Always(Facilitator):
    """Every verify valid (a deep balance), every claim and sweep landed."""

    def verify(self, effect: Verify):
        self.effects.append(effect)
        body = parse_payload(effect.payload.payload)
        return valid(body.config, 10**9)

    def settle(self, effect: Settle):
        self.effects.append(effect)
        return settled()


@settings(max_examples=15, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 90), st.one_of(st.integers(0, 2), st.none())),
        min_size=1,
        max_size=15,
    )
)
def test_the_cadence_claims_every_served_voucher_within_its_interval_and_never_more(steps):
    server = make_server(channel_state_ttl=0, claim_interval=60, settle_interval=120)
    configs = [config(salt) for salt in range(3)]
    charged = dict.fromkeys(range(3), 0)
    world, now = _Always(), T0
    run(server.channel_work(now), world)
    for dt, paid in steps:
        now += dt
        if paid is None:  # a round of channel work
            world.effects = []
            due = now - server.channels.mark("claim:GET /data") >= 60
            run(server.channel_work(now), world)
            for effect in world.effects:
                body = parse_payload(effect.payload.payload)
                if body.type == "claim":  # each row claims exactly what was charged on its channel
                    for claim in body.claims:
                        index = next(i for i, c in enumerate(configs) if c == claim.config)
                        assert claim.total_claimed == charged[index] == claim.max_claimable
            last_round = server.channels.mark("claim:GET /data")
            assert now - last_round < 60  # a due round ran
            for record in server.channels.all():
                assert record.settled <= record.total_claimed <= record.charged
                if due:
                    assert record.unclaimed == 0  # a due round claims everything served
        else:
            charged[paid] += PRICE
            body = VoucherPayload(configs[paid], voucher(configs[paid], charged[paid]))
            assert run(server.handle(request(server, body), now), world).status == 200
