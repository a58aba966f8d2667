"""The paying client's batch-settlement channels: signing, sizing, persistence, answers, corrections.

These run against a stand-in server (``batch_fakes``) that checks every voucher by signature
recovery, so the client's rules are tested alone; the end-to-end channel life on chain is in
``test_client_channels_e2e``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from x402sim.actors.client import Client
from x402sim.actors.client_channels import ChannelRecord, ChannelStore, ClientChannels, DepositPolicy
from x402sim.actors.driver import run
from x402sim.actors.messages import HttpRequest
from x402sim.actors.server import ResourceServer, Route
from x402sim.actors.server_channels import ChannelBook
from x402sim.evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    EVENT_TOPICS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ChannelState,
    channel_id,
    deposit_call,
    erc3009_collector_data,
    erc3009_deposit_nonce,
    permit2_collector_data,
    read_channel,
    sign_voucher,
)
from x402sim.evm.eip712 import address_of_key
from x402sim.evm.permit2 import PERMIT2_ADDRESS
from x402sim.evm.txsign import GWEI, sign_eip1559
from x402sim.mechanisms import Offer
from x402sim.mechanisms.batch_client import (
    channel_config,
    deposit_payload,
    deposit_size,
    needs_deposit,
    refund_payload,
    voucher_payload,
)
from x402sim.mechanisms.batch_wire import DepositPayload, Erc3009Deposit, VoucherPayload, parse_payload
from x402sim.protocol import PaymentRequirements
from x402sim.testbed import Testbed

from .batch_fakes import (
    AUTHORIZER,
    CHAIN_ID,
    NETWORK,
    PAY_TO,
    TOKEN,
    Book,
    FakeBatchServer,
    FakeChain,
    FakeDriver,
    LedgerFacilitator,
    ServerDriver,
    batch_mechanisms,
    batch_requirements,
)

KEY = bytes.fromhex("11" * 32)
OTHER_KEY = bytes.fromhex("22" * 32)
PAYER = address_of_key(KEY)
NOW = 1_750_000_000
GET = HttpRequest("GET", "/thing", (("Host", "fake"),))


def _offer(price: int = 1000, **extra: Any) -> Offer:
    return Offer.of(batch_requirements(price, **extra))


def _client(key: bytes = KEY, **kwargs: Any) -> Client:
    return Client(key, networks=(NETWORK,), mechanisms=batch_mechanisms(), **kwargs)


def _get(client: Client, server: FakeBatchServer):
    return run(client.fetch(GET, NOW), FakeDriver(server))


def _batch_domain() -> dict[str, Any]:
    return {
        "name": "x402 Batch Settlement",
        "version": "1",
        "chainId": CHAIN_ID,
        "verifyingContract": BATCH_SETTLEMENT_ADDRESS,
    }


def _recover(
    domain: dict[str, Any], types: dict[str, Any], primary: str, message: dict[str, Any], sig: bytes
):
    full = {
        "types": {"EIP712Domain": _domain_type(domain), **types},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }
    return Account.recover_message(encode_typed_data(full_message=full), signature=sig)


def _domain_type(domain: dict[str, Any]) -> list[dict[str, str]]:
    kinds = {"name": "string", "version": "string", "chainId": "uint256", "verifyingContract": "address"}
    return [{"name": k, "type": kinds[k]} for k in kinds if k in domain]


# -- signing, checked with eth-account's typed-data path --------------------------------------------


def test_voucher_and_eip3009_deposit_recover_to_the_payer() -> None:
    offer = _offer(1000)
    config = channel_config(offer, PAYER)
    cid = channel_id(config, CHAIN_ID)
    payload = deposit_payload(KEY, config, offer, 5000, 1000, NOW, b"\x07" * 32)
    assert parse_payload(payload.to_wire()) == payload
    voucher_types = {
        "Voucher": [
            {"name": "channelId", "type": "bytes32"},
            {"name": "maxClaimableAmount", "type": "uint128"},
        ]
    }
    voucher = {"channelId": cid, "maxClaimableAmount": 1000}
    assert _recover(_batch_domain(), voucher_types, "Voucher", voucher, payload.voucher.signature) == PAYER
    auth = payload.authorization
    token_domain = {"name": "USD Coin", "version": "2", "chainId": CHAIN_ID, "verifyingContract": offer.asset}
    receive_types = {
        "ReceiveWithAuthorization": [
            {"name": n, "type": t}
            for n, t in (
                ("from", "address"),
                ("to", "address"),
                ("value", "uint256"),
                ("validAfter", "uint256"),
                ("validBefore", "uint256"),
                ("nonce", "bytes32"),
            )
        ]
    }
    message = {
        "from": PAYER,
        "to": ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        "value": 5000,
        "validAfter": 0,
        "validBefore": NOW + 300,
        "nonce": erc3009_deposit_nonce(cid, auth.salt),
    }
    assert _recover(token_domain, receive_types, "ReceiveWithAuthorization", message, auth.signature) == PAYER
    assert auth.valid_after == 0 and auth.valid_before == NOW + 300


def test_permit2_deposit_recovers_to_the_payer() -> None:
    offer = _offer(1000, assetTransferMethod="permit2")
    config = channel_config(offer, PAYER)
    cid = channel_id(config, CHAIN_ID)
    payload = deposit_payload(KEY, config, offer, 5000, 1000, NOW, b"\x09" * 32)
    auth = payload.authorization
    assert auth.spender == PERMIT2_DEPOSIT_COLLECTOR_ADDRESS and auth.channel_id == cid  # type: ignore[union-attr]
    types = {
        "PermitWitnessTransferFrom": [
            {"name": "permitted", "type": "TokenPermissions"},
            {"name": "spender", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
            {"name": "witness", "type": "DepositWitness"},
        ],
        "TokenPermissions": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "DepositWitness": [{"name": "channelId", "type": "bytes32"}],
    }
    message = {
        "permitted": {"token": offer.asset, "amount": 5000},
        "spender": PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
        "nonce": int.from_bytes(b"\x09" * 32, "big"),
        "deadline": NOW + 300,
        "witness": {"channelId": cid},
    }
    domain = {"name": "Permit2", "chainId": CHAIN_ID, "verifyingContract": PERMIT2_ADDRESS}
    assert _recover(domain, types, "PermitWitnessTransferFrom", message, auth.signature) == PAYER
    assert parse_payload(payload.to_wire()) == payload


def test_refund_voucher_is_zero_charge() -> None:
    config = channel_config(_offer(), PAYER)
    payload = refund_payload(KEY, config, CHAIN_ID, 3200, 1500)
    assert payload.voucher.max_claimable == 3200 and payload.amount == 1500
    assert payload.voucher.signature == sign_voucher(KEY, CHAIN_ID, channel_id(config, CHAIN_ID), 3200)
    assert refund_payload(KEY, config, CHAIN_ID, 3200).to_wire().get("amount") is None
    with pytest.raises(ValueError):
        refund_payload(KEY, config, CHAIN_ID, 3200, 0)


# -- sizing and top-up ------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**12)


@given(
    price=st.integers(min_value=1, max_value=10**9),
    charged=amounts,
    extra_balance=st.integers(min_value=-(10**9), max_value=10**12),
    min_deposit=st.none() | st.integers(min_value=1, max_value=10**12),
    size=st.none() | st.integers(min_value=1, max_value=10**12),
    multiplier=st.integers(min_value=1, max_value=20),
    top_up_below=st.integers(min_value=0, max_value=10**10),
)
def test_deposit_sizing_and_top_up(
    price: int,
    charged: int,
    extra_balance: int,
    min_deposit: int | None,
    size: int | None,
    multiplier: int,
    top_up_below: int,
) -> None:
    balance = max(charged + extra_balance, 0)
    policy = DepositPolicy(size=size, multiplier=multiplier, top_up_below=top_up_below)
    deposit = policy.deposit_for(price, charged, balance, min_deposit)
    remaining = balance - charged - price
    if remaining >= top_up_below:
        assert deposit is None  # enough left: a voucher alone
        return
    assert deposit is not None
    assert balance + deposit >= charged + price  # the voucher is backed
    assert deposit >= price and deposit >= (min_deposit or 0)
    assert deposit >= (size if size is not None else multiplier * price)
    assert deposit == max(
        charged + price - balance, price, min_deposit or 0, size if size is not None else multiplier * price
    )


def test_sizing_examples() -> None:
    assert deposit_size(1000, 0, 0) == 5000  # five prices by default, as the SDKs
    assert deposit_size(1000, 0, 0, min_deposit=10_000) == 10_000  # the server's minDeposit
    assert deposit_size(1000, 0, 0, size=300) == 1000  # never below the price
    assert deposit_size(1000, 9500, 10_000, size=100) == 1000  # nor below what the voucher needs
    assert not needs_deposit(1000, 0, 1000) and needs_deposit(1000, 1, 1000)
    assert needs_deposit(1000, 0, 2500, top_up_below=2000)


# -- the store --------------------------------------------------------------------------------------


def test_store_persists_and_reopens(tmp_path) -> None:
    path = tmp_path / "channels.sqlite"
    config = channel_config(_offer(), PAYER, b"\x05" * 32)
    record = ChannelRecord(
        NETWORK,
        config,
        CHAIN_ID,
        charged=3000,
        signed_max=4000,
        signature=b"\x01" * 65,
        deposited=10**30,
        balance=10**30,
        refunded=7,
    )
    with ChannelStore(path) as store:
        store.put(record)
    with ChannelStore(path) as again:
        assert again.get(record.key) == record
        assert again.by_id(record.channel_id) == record
        assert again.records(PAYER) == [record]
        assert again.records(address_of_key(OTHER_KEY)) == []


def test_store_refuses_a_foreign_file(tmp_path) -> None:
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="not a channel state file"):
        ChannelStore(path)
    (tmp_path / "text").write_text("hello, not a database at all" * 100)
    with pytest.raises(ValueError, match="not a channel state file"):
        ChannelStore(tmp_path / "text")


# -- the client paying through its channel ----------------------------------------------------------


def test_deposit_respects_min_deposit_then_vouchers_then_top_up() -> None:
    server = FakeBatchServer(price=1000, min_deposit=3000)
    client = _client()
    for _ in range(6):
        result = _get(client, server)
        assert result.status == 200 and result.channel_problem is None
    assert [w["type"] for w in server.received] == ["deposit"] + ["voucher"] * 4 + ["deposit"]
    assert [w["deposit"]["amount"] for w in server.received if w["type"] == "deposit"] == ["5000", "5000"]
    assert [int(w["voucher"]["maxClaimableAmount"]) for w in server.received] == [
        1000 * n for n in range(1, 7)
    ]
    (record,) = client.channels.records()
    assert (record.charged, record.balance, record.deposited) == (6000, 10_000, 10_000)
    life = [(e.kind, e.amount, e.cumulative, e.balance) for e in client.channels.life(record)]
    assert life[:2] == [("deposit", 5000, 0, 5000), ("voucher", 1000, 1000, 5000)]
    assert life[-2:] == [("deposit", 5000, 5000, 10_000), ("voucher", 1000, 6000, 10_000)]
    assert len(life) == 8
    assert client.spent == 6000  # the charges, not the deposits


def test_min_deposit_above_the_default_is_deposited() -> None:
    server = FakeBatchServer(price=1000, min_deposit=12_000)
    client = _client(deposit_policy=DepositPolicy(top_up_below=500))
    assert _get(client, server).status == 200
    assert server.received[0]["deposit"]["amount"] == "12000"


def test_charges_below_the_price_are_accepted_and_counted() -> None:
    server = FakeBatchServer(price=1000, charge=400)
    client = _client()
    for _ in range(3):
        assert _get(client, server).channel_problem is None
    assert [int(w["voucher"]["maxClaimableAmount"]) for w in server.received] == [1000, 1400, 1800]
    assert client.channels.records()[0].charged == 1200 and client.spent == 1200


def test_restarted_client_reuses_its_channel(tmp_path) -> None:
    path = tmp_path / "agent.sqlite"
    server = FakeBatchServer(price=1000)
    first = _client(channel_store=ChannelStore(path))
    for _ in range(2):
        assert _get(first, server).status == 200
    first.channels.store.close()
    restarted = _client(channel_store=ChannelStore(path), seed=9)
    assert _get(restarted, server).status == 200
    assert [w["type"] for w in server.received] == ["deposit", "voucher", "voucher"]
    assert len(server.books) == 1  # one channel, not a second
    assert restarted.channels.records()[0].charged == 3000


def test_cold_start_reads_the_chain() -> None:
    offer = _offer(1000)
    cid = channel_id(channel_config(offer, PAYER), CHAIN_ID)
    chain = FakeChain(channels={cid: ChannelState(cid, balance=10_000, total_claimed=3000, refund_nonce=2)})
    server = FakeBatchServer(price=1000)
    server.books[cid] = Book(charged=3000, balance=10_000, claimed=3000)
    client = _client(chain=chain)
    assert _get(client, server).status == 200
    assert server.received[0]["type"] == "voucher"
    assert server.received[0]["voucher"]["maxClaimableAmount"] == "4000"
    kinds = [e.kind for e in client.channels.life(client.channels.records()[0])]
    assert kinds == ["recovered", "voucher"]


def test_cold_start_tops_up_when_the_chain_balance_is_short() -> None:
    offer = _offer(1000)
    cid = channel_id(channel_config(offer, PAYER), CHAIN_ID)
    chain = FakeChain(channels={cid: ChannelState(cid, balance=3500, total_claimed=3000)})
    client = _client(chain=chain)
    payload = parse_payload(client.channels.pay(offer, NOW, b"\x01" * 32))
    assert isinstance(payload, DepositPayload)
    assert payload.voucher.max_claimable == 4000 and payload.amount == 5000


def test_a_refused_payment_makes_the_client_reread_the_chain() -> None:
    offer = _offer(1000)
    cid = channel_id(channel_config(offer, PAYER), CHAIN_ID)
    chain = FakeChain()
    server = FakeBatchServer(price=1000)
    client = _client(chain=chain)
    assert _get(client, server).status == 200  # deposit 5000, charged 1000
    chain.channels[cid] = ChannelState(cid, balance=1500)  # the payer withdrew most of it meanwhile
    server.books[cid].balance = 1500
    refused = _get(client, server)
    assert refused.status == 402 and server.received[-1]["type"] == "voucher"
    assert _get(client, server).status == 200
    assert (
        server.received[-1]["type"] == "deposit"
        and server.received[-1]["voucher"]["maxClaimableAmount"] == "2000"
    )
    assert client.channels.records()[0].balance == 6500


# -- corrective 402 ---------------------------------------------------------------------------------


def _server_ahead(price: int = 1000, charged: int = 6000, signer: bytes = KEY) -> FakeBatchServer:
    """A server that has charged ``charged`` on the payer's channel, on a voucher ``signer`` signed."""
    server = FakeBatchServer(price=price)
    cid = channel_id(channel_config(_offer(price), PAYER), CHAIN_ID)
    server.books[cid] = Book(
        charged=charged,
        balance=20_000,
        signed_max=charged,
        signature=sign_voucher(signer, CHAIN_ID, cid, charged),
    )
    return server


def test_corrective_402_is_adopted_under_the_payers_own_voucher() -> None:
    server = _server_ahead()
    client = _client()  # lost its state; no chain to read
    result = _get(client, server)
    assert result.status == 200 and result.channel_problem is None
    assert [w["type"] for w in server.received] == ["deposit", "voucher"]
    assert server.received[1]["voucher"]["maxClaimableAmount"] == "7000"
    record = client.channels.records()[0]
    assert record.charged == 7000 and record.balance == 20_000
    assert [e.kind for e in client.channels.life(record)] == ["corrected", "voucher"]


def test_corrective_402_with_someone_elses_voucher_is_not_adopted() -> None:
    server = _server_ahead(signer=OTHER_KEY)
    client = _client()
    result = _get(client, server)
    assert result.status == 402 and server.served == 0
    assert result.channel_problem is not None and "not this payer" in result.channel_problem
    assert len(server.received) == 1  # not paid again
    assert client.channels.find(_offer()).charged == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "voucher_state",
    [
        lambda book: {"signedMaxClaimable": str(book.charged - 1), "signature": "0x" + book.signature.hex()},
        lambda book: {"signedMaxClaimable": str(book.charged), "signature": "0x1234"},
        lambda book: {"signedMaxClaimable": str(book.charged)},
    ],
    ids=["signed-below-charged", "short-signature", "no-signature"],
)
def test_corrective_402_without_a_valid_proof_is_not_adopted(voucher_state) -> None:
    server = _server_ahead()
    server.voucher_state = voucher_state
    client = _client()
    result = _get(client, server)
    assert result.status == 402 and server.served == 0 and result.channel_problem
    assert client.channels.find(_offer()).charged == 0  # type: ignore[union-attr]


def test_corrective_402_without_voucher_state_uses_the_chains_total_claimed() -> None:
    offer = _offer(1000)
    cid = channel_id(channel_config(offer, PAYER), CHAIN_ID)
    chain = FakeChain()
    server = FakeBatchServer(price=1000)
    server.voucher_state = lambda book: {}  # answers without proof
    client = _client(chain=chain)
    assert _get(client, server).status == 200  # opened: deposit 5000, charged 1000
    chain.channels[cid] = ChannelState(cid, balance=5000, total_claimed=2000)  # claimed more meanwhile
    server.books[cid] = Book(charged=2000, balance=5000, claimed=2000)
    result = _get(client, server)
    assert result.status == 200
    assert server.received[-1]["voucher"]["maxClaimableAmount"] == "3000"


# -- the client's checks of a paid answer -----------------------------------------------------------


def _set(path: str, value: Any):
    def tamper(extra: dict[str, Any]) -> dict[str, Any]:
        if path == "chargedAmount":
            extra["chargedAmount"] = value
        elif value is None:
            del extra["channelState"][path]
        else:
            extra["channelState"][path] = value
        return extra

    return tamper


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_set("chargedAmount", "1001"), "exceeds the price"),
        (_set("chargedAmount", None), "no extra.chargedAmount"),
        (_set("chargedCumulativeAmount", "1500"), "is not the previous"),
        (_set("channelId", "0x" + "ee" * 32), "names channel"),
        (_set("balance", "10"), "does not back"),
    ],
    ids=["over-price", "no-charge", "cumulative", "channel-id", "balance"],
)
def test_a_bad_payment_response_stops_the_channel(tamper, why: str) -> None:
    server = FakeBatchServer(price=1000, tamper=tamper)
    client = _client()
    result = _get(client, server)
    assert result.status == 200  # the answer came; the client stops signing after it
    assert result.channel_problem is not None and why in result.channel_problem
    served = server.served
    again = _get(client, server)
    assert again.status == 402 and again.refused is not None and "stopped" in again.refused
    assert server.served == served and len(server.received) == 1  # nothing more signed or sent
    record = client.channels.records()[0]
    assert record.stopped and client.channels.life(record)[-1].kind == "stopped"


def test_a_stopped_channel_stays_stopped_after_a_restart(tmp_path) -> None:
    path = tmp_path / "agent.sqlite"
    server = FakeBatchServer(price=1000, tamper=_set("chargedAmount", "5000"))
    assert _get(_client(channel_store=ChannelStore(path)), server).channel_problem
    again = _get(_client(channel_store=ChannelStore(path)), server)
    assert again.refused is not None and "stopped" in again.refused


# -- refunds ----------------------------------------------------------------------------------------


def test_refund_then_top_up_on_the_same_channel() -> None:
    server = FakeBatchServer(price=1000)
    client = _client()
    for _ in range(2):
        _get(client, server)
    result = run(client.refund(GET, NOW, amount=1000), FakeDriver(server))
    assert result.status == 200 and result.settlement is not None and result.settlement.amount == "1000"
    sent = server.received[-1]
    assert sent["type"] == "refund" and sent["amount"] == "1000"
    assert sent["voucher"]["maxClaimableAmount"] == "2000"  # zero-charge: what was charged
    record = client.channels.records()[0]
    assert (record.balance, record.refunded, record.charged) == (4000, 1000, 2000)
    full = run(client.refund(GET, NOW), FakeDriver(server))
    assert full.settlement is not None and full.settlement.amount == "2000"
    assert client.channels.records()[0].available == 0
    nothing = run(client.refund(GET, NOW), FakeDriver(server))
    assert nothing.refused is not None and "nothing to refund" in nothing.refused
    assert _get(client, server).status == 200
    assert server.received[-1]["type"] == "deposit"  # the same channel, topped up again
    assert len(server.books) == 1
    kinds = [e.kind for e in client.channels.life(client.channels.records()[0])]
    assert kinds.count("refund") == 2 and kinds[-2:] == ["deposit", "voucher"]


def test_voucher_payload_shape() -> None:
    config = channel_config(_offer(), PAYER)
    payload = voucher_payload(KEY, config, CHAIN_ID, 1234)
    assert isinstance(parse_payload(payload.to_wire()), VoucherPayload)
    assert payload.to_wire()["channelConfig"]["payerAuthorizer"] == PAYER


# -- against x402sim's resource server (its facilitator a ledger of channel states) -------------------

AUTHORIZER_KEY = bytes.fromhex("44" * 32)


def _resource_server(book: ChannelBook | None = None) -> ResourceServer:
    route = Route("GET /thing", 1000, scheme="batch-settlement")
    return ResourceServer(
        network=NETWORK,
        asset=TOKEN,
        asset_name="USD Coin",
        asset_version="2",
        pay_to=PAY_TO,
        routes={route.key: route},
        mechanisms=batch_mechanisms(),
        receiver_authorizer_key=AUTHORIZER_KEY,
        channels=book or ChannelBook(),
    )


def test_a_channel_life_with_the_resource_server() -> None:
    ledger = LedgerFacilitator()
    driver = ServerDriver(_resource_server(), ledger, NOW)
    client = _client(deposit_policy=DepositPolicy(size=10))  # the server's minDeposit (10 prices) wins
    for _ in range(12):
        result = run(client.fetch(GET, NOW), driver)
        assert result.status == 200 and result.channel_problem is None, result.refused
    deposits = [p for p in ledger.settled if p["type"] == "deposit"]
    assert [d["deposit"]["amount"] for d in deposits] == ["10000", "10000"]  # opened, then topped up
    record = client.channels.records()[0]
    assert (record.charged, record.balance) == (12_000, 20_000)
    assert ledger.state(record.channel_id).balance == 20_000

    partial = run(client.refund(GET, NOW, 3000), driver)
    assert partial.status == 200 and partial.channel_problem is None
    assert ledger.settled[-1]["type"] == "refund" and ledger.settled[-1]["amount"] == "3000"
    assert client.channels.records()[0].balance == 17_000 == ledger.state(record.channel_id).balance
    full = run(client.refund(GET, NOW), driver)
    assert full.status == 200 and full.settlement is not None and full.settlement.amount == "5000"
    record = client.channels.records()[0]
    assert (record.balance, record.refunded, record.available) == (12_000, 8000, 0)

    again = run(client.fetch(GET, NOW), driver)  # the server forgot the drained channel; the client did not
    assert again.status == 200 and ledger.settled[-1]["type"] == "deposit"
    assert ledger.settled[-1]["voucher"]["maxClaimableAmount"] == "13000"
    kinds = [e.kind for e in client.channels.life(client.channels.records()[0])]
    assert kinds.count("deposit") == 3 and kinds.count("refund") == 2 and kinds.count("voucher") == 13


def test_a_client_that_lost_its_state_adopts_the_servers_corrective_402() -> None:
    ledger = LedgerFacilitator()
    driver = ServerDriver(_resource_server(), ledger, NOW)
    first = _client()
    for _ in range(3):
        assert run(first.fetch(GET, NOW), driver).status == 200
    amnesiac = _client(seed=5)  # same key, no store, no chain
    result = run(amnesiac.fetch(GET, NOW), driver)
    assert result.status == 200 and result.channel_problem is None
    record = amnesiac.channels.records()[0]
    assert record.charged == 4000 and record.balance == 10_000
    assert [e.kind for e in amnesiac.channels.life(record)] == ["corrected", "voucher"]
    assert len([p for p in ledger.settled if p["type"] == "deposit"]) == 1  # no second deposit


# -- on chain: the client's deposits executed directly on the batch-settlement contract --------------


def _chain_offer(tb: Testbed, price: int = 1000, **extra: Any) -> Offer:
    fields = {
        "receiverAuthorizer": AUTHORIZER,
        "withdrawDelay": 900,
        "name": tb.chain.token_name,
        "version": tb.chain.token_version,
        **extra,
    }
    requirements = PaymentRequirements(
        scheme="batch-settlement",
        network=tb.chain.network,
        amount=str(price),
        asset=tb.chain.usdc,
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        extra=fields,
    )
    return Offer.of(requirements)


def _execute_deposit(tb: Testbed, relayer: Any, payload: DepositPayload) -> Any:
    """Send the deposit ``payload`` authorizes to the contract from ``relayer`` (as a facilitator
    would), mined; its receipt."""
    auth = payload.authorization
    if isinstance(auth, Erc3009Deposit):
        collector = ERC3009_DEPOSIT_COLLECTOR_ADDRESS
        data = erc3009_collector_data(auth.valid_after, auth.valid_before, auth.salt, auth.signature)
    else:
        collector = PERMIT2_DEPOSIT_COLLECTOR_ADDRESS
        data = permit2_collector_data(auth.nonce, auth.deadline, auth.signature)
    signed = sign_eip1559(
        relayer.key,
        chain_id=tb.chain.chain_id,
        nonce=tb.chain.pending_nonce(relayer.address),
        gas=600_000,
        max_fee_per_gas=2 * tb.chain.base_fee + GWEI,
        max_priority_fee_per_gas=0,
        to=BATCH_SETTLEMENT_ADDRESS,
        data=deposit_call(payload.config, payload.amount, collector, data),
    )
    tx = tb.chain.send_raw_transaction(signed.raw)
    tb.chain.mine()
    return tb.chain.receipt(tx)


@pytest.mark.parametrize("method", ["eip3009", "permit2"])
def test_deposits_land_on_chain_and_a_cold_start_finds_the_channel(method: str) -> None:
    tb = Testbed(seed=4)
    payer, relayer = tb.account(usdc=1_000_000, eth=10**17), tb.account(eth=10**18)
    extra = {"assetTransferMethod": "permit2"} if method == "permit2" else {}
    if method == "permit2":
        tb.approve_permit2(payer)
    offer = _chain_offer(tb, 1000, minDeposit="8000", **extra)
    channels = ClientChannels(payer.key, chain=tb.chain)
    payload = parse_payload(channels.pay(offer, tb.now, b"\x03" * 32))
    assert isinstance(payload, DepositPayload) and payload.amount == 8000
    receipt = _execute_deposit(tb, relayer, payload)
    assert receipt.success
    cid = payload.voucher.channel_id
    assert read_channel(tb.chain, cid).balance == 8000
    assert tb.chain.balance_of(payer.address) == 1_000_000 - 8000
    assert tb.chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == 8000
    assert EVENT_TOPICS["Deposited"] in {log.topics[0] for log in receipt.logs}

    restarted = ClientChannels(payer.key, chain=tb.chain)  # nothing stored: a cold start
    again = parse_payload(restarted.pay(offer, tb.now, b"\x04" * 32))
    assert isinstance(again, VoucherPayload) and again.voucher.max_claimable == 1000  # totalClaimed + price
    (record,) = restarted.records()
    assert (record.balance, record.charged) == (8000, 0)
    assert [e.kind for e in restarted.life(record)] == ["recovered"]


def test_a_repeated_deposit_authorization_is_refused_on_chain() -> None:
    tb = Testbed(seed=5)
    payer, relayer = tb.account(usdc=100_000), tb.account(eth=10**18)
    channels = ClientChannels(payer.key, chain=tb.chain)
    payload = parse_payload(channels.pay(_chain_offer(tb), tb.now, b"\x05" * 32))
    assert isinstance(payload, DepositPayload)
    assert _execute_deposit(tb, relayer, payload).success
    assert not _execute_deposit(tb, relayer, payload).success  # its EIP-3009 nonce is spent
    assert read_channel(tb.chain, payload.voucher.channel_id).balance == payload.amount


# -- the whole life in the testbed: x402sim's client, server and facilitator on chain ----------------


def test_a_channel_life_in_the_testbed(tmp_path) -> None:
    tb = Testbed(seed=8)
    receiver = tb.account()
    route = Route("GET /feed", 1000, scheme="batch-settlement", claim_interval=60, settle_interval=60)
    server = tb.server({route.key: route}, pay_to=receiver.address)
    tb.channel_work(server)  # starts the server's claim and settle clocks
    payer = tb.account(usdc=100_000)
    client = tb.client(payer, channel_store=ChannelStore(tmp_path / "agent.sqlite"))
    for _ in range(11):
        result = client.get(server, "/feed")
        assert result.status == 200 and result.channel_problem is None, (result.refused, result.body)
    view = tb.channel(client, server)
    assert view.onchain.balance == 20_000 == view.record.balance  # opened with 10 prices, topped up once
    assert tb.chain.balance_of(payer.address) == 80_000
    assert [e.kind for e in view.life].count("deposit") == 2

    amnesiac = tb.client(payer)  # the same wallet, no store: finds the channel on chain, then the
    assert amnesiac.get(server, "/feed").status == 200  # server's corrective 402 brings it up to date
    assert [e.kind for e in tb.channel(amnesiac, server).life] == ["recovered", "corrected", "voucher"]
    restarted = tb.client(payer, channel_store=ChannelStore(tmp_path / "agent.sqlite"))
    assert restarted.get(server, "/feed").status == 200  # its file was one voucher behind: corrected
    assert [e.kind for e in tb.channel(restarted, server).life][-2:] == ["corrected", "voucher"]
    assert tb.chain.balance_of(payer.address) == 80_000  # never a second channel or deposit

    tb.advance(61)
    work = tb.channel_work(server)  # claims what was served, then settles it to the receiver
    assert len(work.claims) == 1 and len(work.settlements) == 1 and not work.errors
    assert read_channel(tb.chain, view.channel_id).total_claimed == 13_000
    assert tb.chain.balance_of(receiver.address) == 13_000

    refund = restarted.refund(server, "/feed")
    assert refund.status == 200 and refund.channel_problem is None, (refund.refused, refund.body)
    assert tb.chain.balance_of(payer.address) == 100_000 - 13_000
    view = tb.channel(restarted, server)
    assert view.onchain.balance == view.onchain.total_claimed == 13_000 and view.record.available == 0
    assert view.record.refunded == 7000 and view.life[-1].kind == "refund"
    assert restarted.get(server, "/feed").status == 200  # the same channel, topped up again
    assert tb.channel(restarted, server).onchain.balance == 23_000
