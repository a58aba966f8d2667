"""The batch-settlement contract and its deposit collectors on the embedded chain: the SDK's ABI,
digests computed four ways, every state transition with its events and on-chain balances, every
custom error in the Solidity's check order, EIP-1271 payers, multicall's all-or-none, reentrancy.

The world (`batch_world.py`) is built once per module; each test runs on a snapshot of it.
"""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from x402.mechanisms.evm.batch_settlement import abi as sdk_abi
from x402.mechanisms.evm.batch_settlement import constants as sdk_constants
from x402.mechanisms.evm.batch_settlement import types as sdk_types
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id

from x402sim.evm import channels as ch
from x402sim.evm import permit2 as p2
from x402sim.evm.contracts import (
    BATCH_SETTLEMENT,
    ERC3009_DEPOSIT_COLLECTOR,
    PERMIT2_DEPOSIT_COLLECTOR,
    load_artifact,
)
from x402sim.evm.eip712 import sign_digest
from x402sim.evm.hashing import keccak
from x402sim.evm.token import revert_reason

from .batch_world import BAD_COLLECTOR_SOURCE, BATCH, ZERO, World, compiled, error, events, word

CONFIG = "(address,address,address,address,address,uint40,bytes32)"
MAX128 = 2**128 - 1
DELAY = ch.MIN_WITHDRAW_DELAY


@pytest.fixture(scope="module")
def base() -> World:
    return World.build()


@pytest.fixture
def w(base: World):
    snapshot = base.chain.snapshot()
    salt = base.salt
    yield base
    base.chain.revert(snapshot)
    base.salt = salt
    base.wallets.clear()


def reverted_with(w: World, sender: str, data: bytes, expected: bytes) -> None:
    """The call reverts with exactly ``expected``, and so does the transaction (nothing changes)."""
    result = w.call(data, sender=sender)
    assert result.reverted and result.output == expected, (result.output.hex(), result.revert_reason)
    receipt = w.send(sender, data)
    assert not receipt.success and not receipt.logs


# -- the interface -----------------------------------------------------------------------------


def _signature(entry: dict) -> str:
    def kind(item: dict) -> str:
        if item["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in item["components"]) + ")" + item["type"][5:]
        return item["type"]

    return f"{entry['name']}({','.join(kind(i) for i in entry['inputs'])})"


def test_genesis_code_and_the_sdk_abi(w: World):
    for name, address in (
        (BATCH_SETTLEMENT, BATCH),
        (ERC3009_DEPOSIT_COLLECTOR, ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS),
        (PERMIT2_DEPOSIT_COLLECTOR, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS),
    ):
        assert w.chain.code(address) == load_artifact(name).runtime_bytecode
    ours = {
        _signature(e): e for e in load_artifact(BATCH_SETTLEMENT).abi if e["type"] in ("function", "event")
    }
    for entry in sdk_abi.BATCH_SETTLEMENT_ABI:
        mine = ours[_signature(entry)]
        if entry["type"] == "function":
            assert [o["type"] for o in mine["outputs"]] == [o["type"] for o in entry["outputs"]], entry[
                "name"
            ]
            assert mine["stateMutability"] == entry["stateMutability"]
        else:
            assert [i["indexed"] for i in mine["inputs"]] == [i["indexed"] for i in entry["inputs"]]
    # The Solidity's events, with their indexed fields (the SDK's ABI lists only Settled).
    indexed = {
        "ChannelCreated": [True, False],
        "ChannelClosed": [True, False],
        "Deposited": [True, True, False, False],
        "Claimed": [True, True, False, False],
        "Settled": [True, True, True, False],
        "Refunded": [True, True, False],
        "WithdrawInitiated": [True, False, False],
        "WithdrawFinalized": [True, True, False],
    }
    by_topic = {keccak(s.encode()): e for s, e in ours.items() if e["type"] == "event"}
    for name, topic in ch.EVENT_TOPICS.items():
        assert by_topic[topic]["name"] == name
        assert [i["indexed"] for i in by_topic[topic]["inputs"]] == indexed[name]


def test_constants_and_domain(w: World):
    for name, expected in (
        ("MIN_WITHDRAW_DELAY", sdk_constants.MIN_WITHDRAW_DELAY),
        ("MAX_WITHDRAW_DELAY", sdk_constants.MAX_WITHDRAW_DELAY),
    ):
        assert w.view(f"{name}()", [], [], ["uint40"]) == (expected,)
    assert w.view("CHANNEL_CONFIG_TYPEHASH()", [], [], ["bytes32"]) == (
        sdk_constants.CHANNEL_CONFIG_TYPEHASH,
    )
    for name, text in (
        ("VOUCHER_TYPEHASH", "Voucher(bytes32 channelId,uint128 maxClaimableAmount)"),
        ("REFUND_TYPEHASH", "Refund(bytes32 channelId,uint256 nonce,uint128 amount)"),
        (
            "CLAIM_ENTRY_TYPEHASH",
            "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)",
        ),
        (
            "CLAIM_BATCH_TYPEHASH",
            "ClaimBatch(ClaimEntry[] claims)"
            "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)",
        ),
    ):
        assert w.view(f"{name}()", [], [], ["bytes32"]) == (keccak(text.encode()),)
    fields, name, version, chain_id, contract, salt, extensions = w.view(
        "eip712Domain()", [], [], ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"]
    )
    assert (fields, name, version, chain_id, contract.lower()) == (
        b"\x0f",
        "x402 Batch Settlement",
        "1",
        w.chain_id,
        BATCH.lower(),
    )
    assert salt == b"\x00" * 32 and extensions == ()
    for collector in (ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS):
        out = w.call(ch.selector("x402BatchSettlement()"), to=collector).output
        assert decode(["address"], out)[0].lower() == BATCH.lower()
    p2c = ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS
    assert (
        decode(["address"], w.call(ch.selector("PERMIT2()"), to=p2c).output)[0].lower()
        == p2.PERMIT2_ADDRESS.lower()
    )
    text = decode(["string"], w.call(ch.selector("DEPOSIT_WITNESS_TYPE_STRING()"), to=p2c).output)[0]
    assert text == ch.DEPOSIT_WITNESS_TYPE_STRING
    typehash = w.call(ch.selector("DEPOSIT_WITNESS_TYPEHASH()"), to=p2c).output
    assert typehash == keccak(b"DepositWitness(bytes32 channelId)")


# -- digests, four ways --------------------------------------------------------------------------

ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
CONFIGS = st.builds(
    ch.ChannelConfig,
    payer=ADDRESSES,
    payer_authorizer=ADDRESSES,
    receiver=ADDRESSES,
    receiver_authorizer=ADDRESSES,
    token=ADDRESSES,
    withdraw_delay=st.integers(0, 2**40 - 1),
    salt=st.binary(min_size=32, max_size=32),
)
U128 = st.integers(0, MAX128)


def _domain(chain_id: int) -> dict:
    return {"name": "x402 Batch Settlement", "version": "1", "chainId": chain_id, "verifyingContract": BATCH}


def _typed_hash(chain_id: int, types: dict, primary: str, message: dict) -> bytes:
    domain_types = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    signable = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": domain_types, **types},
            "primaryType": primary,
            "domain": _domain(chain_id),
            "message": message,
        }
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def _sdk_config(config: ch.ChannelConfig) -> sdk_types.ChannelConfig:
    return sdk_types.ChannelConfig(
        payer=config.payer,
        payer_authorizer=config.payer_authorizer,
        receiver=config.receiver,
        receiver_authorizer=config.receiver_authorizer,
        token=config.token,
        withdraw_delay=config.withdraw_delay,
        salt="0x" + config.salt.hex(),
    )


@given(
    config=CONFIGS,
    amounts=st.lists(st.tuples(U128, U128), min_size=0, max_size=3),
    nonce=st.integers(0, 2**256 - 1),
)
@settings(max_examples=10, deadline=None)
def test_digests_agree_four_ways(base: World, config, amounts, nonce):
    """channels.py, the contract's views, eth-account's full typed data and the SDK agree."""
    chain_id = base.chain_id
    cid = ch.channel_id(config, chain_id)
    message = {k: v for k, v in config.to_wire().items()}
    message["salt"] = config.salt
    assert _typed_hash(chain_id, sdk_constants.CHANNEL_CONFIG_TYPES, "ChannelConfig", message) == cid
    assert compute_channel_id(_sdk_config(config), chain_id) == "0x" + cid.hex()
    assert base.view(f"getChannelId({CONFIG})", [CONFIG], [config.as_abi()], ["bytes32"]) == (cid,)

    amount = amounts[0][0] if amounts else 7
    voucher = ch.voucher_digest(chain_id, cid, amount)
    assert voucher == _typed_hash(
        chain_id, sdk_constants.VOUCHER_TYPES, "Voucher", {"channelId": cid, "maxClaimableAmount": amount}
    )
    assert base.view(
        "getVoucherDigest(bytes32,uint128)", ["bytes32", "uint128"], [cid, amount], ["bytes32"]
    ) == (voucher,)

    refund = ch.refund_digest(chain_id, cid, nonce, amount)
    assert refund == _typed_hash(
        chain_id, sdk_constants.REFUND_TYPES, "Refund", {"channelId": cid, "nonce": nonce, "amount": amount}
    )
    view = base.view(
        "getRefundDigest(bytes32,uint256,uint128)",
        ["bytes32", "uint256", "uint128"],
        [cid, nonce, amount],
        ["bytes32"],
    )
    assert view == (refund,)

    claims = [ch.VoucherClaim(config, m, b"\x01" * 65, t) for m, t in amounts]
    batch = ch.claim_batch_digest(chain_id, claims)
    entries = [{"channelId": cid, "maxClaimableAmount": m, "totalClaimed": t} for m, t in amounts]
    assert batch == _typed_hash(chain_id, sdk_constants.CLAIM_BATCH_TYPES, "ClaimBatch", {"claims": entries})
    claim_type = f"(({CONFIG},uint128),bytes,uint128)[]"
    view = base.view(
        f"getClaimBatchDigest({claim_type})", [claim_type], [[c.as_abi() for c in claims]], ["bytes32"]
    )
    assert view == (batch,)


def test_sdk_signatures_equal_ours(w: World):
    """The SDK's authorizer signs the same claim batch and refund bytes as channels.py (RFC 6979)."""
    key = w.keys["receiver_auth"]
    config = w.config()
    cid = w.cid(config)
    signer = LocalAuthorizerSigner("0x" + key.hex())
    network = f"eip155:{w.chain_id}"
    claims = [w.voucher(config, 500, 400)]
    sdk_claims = [sdk_types.VoucherClaim(_sdk_config(config), "500", "0x" + claims[0].signature.hex(), "400")]
    assert (
        sign_claim_batch(signer, sdk_claims, network)
        == "0x" + ch.sign_claim_batch(key, w.chain_id, claims).hex()
    )
    assert (
        sign_refund(signer, "0x" + cid.hex(), 30, 2, network)
        == "0x" + ch.sign_refund(key, w.chain_id, cid, 2, 30).hex()
    )


# -- deposits ------------------------------------------------------------------------------------


def test_deposit_through_the_eip3009_collector(w: World):
    config = w.config()
    cid = w.cid(config)
    before = w.balance("payer")
    receipt = w.deposit(config, 5_000, via="eip3009")
    assert w.balance("payer") == before - 5_000 and w.balance(BATCH) == 5_000
    assert w.balance(ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS) == 0
    assert w.state(config) == ch.ChannelState(cid, 5_000)
    assert events(receipt, "ChannelCreated") == [((cid,), encode([CONFIG], [config.as_abi()]))]
    relayer = word(w.addr("relayer"))
    assert events(receipt, "Deposited") == [((cid, relayer), word(5_000) + word(5_000))]
    moves = [(t.from_, t.to, t.value) for t in receipt.transfers()]
    assert moves == [
        (config.payer, ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS, 5_000),
        (ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS, BATCH, 5_000),
    ]
    # A top-up: no second ChannelCreated; the authorization nonce binds (channel, salt).
    receipt = w.deposit(config, 1_000, salt=2)
    assert events(receipt, "ChannelCreated") == []
    assert events(receipt, "Deposited") == [((cid, relayer), word(1_000) + word(6_000))]
    nonce = ch.erc3009_deposit_nonce(cid, 2)
    assert w.chain.authorization_state(config.payer, nonce)
    data = ch.deposit_call(
        config, 1_000, ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS, w.erc3009_data(config, 1_000, salt=2)
    )
    result = w.call(data)
    assert result.reverted and result.revert_reason == "FiatTokenV2: authorization is used or canceled"


def test_eip3009_collector_failures_are_the_tokens(w: World):
    """A bad authorization fails in the token, and its FiatToken revert text comes back unchanged."""
    config = w.config()
    collector = ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS
    forged = w.erc3009_data(config, 100, key="stranger")
    result = w.call(ch.deposit_call(config, 100, collector, forged))
    assert result.reverted and result.revert_reason == "FiatTokenV2: invalid signature"
    signed_for_less = w.erc3009_data(config, 99)
    result = w.call(ch.deposit_call(config, 100, collector, signed_for_less))
    assert result.reverted and result.revert_reason == "FiatTokenV2: invalid signature"
    now = w.chain.now
    short = ch.erc3009_collector_data(now - 5, now + 600, 1, b"\x01" * 64)
    result = w.call(ch.deposit_call(config, 100, collector, short))
    assert result.reverted and result.revert_reason == "ECRecover: invalid signature length"
    assert w.state(config).balance == 0


def test_deposit_through_the_permit2_collector(w: World):
    config = w.config()
    cid = w.cid(config)
    receipt = w.deposit(config, 3_000, via="permit2", salt=9)
    assert w.state(config).balance == 3_000 and w.balance(BATCH) == 3_000
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(config.payer, BATCH, 3_000)]
    assert events(receipt, "ChannelCreated") and events(receipt, "Deposited")
    assert p2.nonce_used(w.chain, config.payer, 9)
    # The witness binds the channel: the same signature for another channel does not move money.
    other = w.config()
    data = w.permit2_data(config, 3_000, nonce=10)
    result = w.call(ch.deposit_call(other, 3_000, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data))
    assert result.reverted and result.output == error("InvalidSigner()")
    assert cid != w.cid(other)


def _eip2612(w: World, owner_key: str, value: int, deadline: int, *, key: str | None = None) -> bytes:
    permit = p2.Eip2612Permit(
        owner=w.addr(owner_key), spender=p2.PERMIT2_ADDRESS, value=value, nonce=0, deadline=deadline
    )
    signature = sign_digest(w.keys[key or owner_key], p2.eip2612_digest(w.chain.domain, permit))
    r, s, v = signature[:32], signature[32:64], signature[64]
    return encode(["uint256", "uint256", "uint8", "bytes32", "bytes32"], [value, deadline, v, r, s])


def test_permit2_deposit_with_an_eip2612_segment(w: World):
    # A payer who never approved Permit2: the segment's permit grants exactly the amount.
    w.send(
        "payer",
        ch.selector("transfer(address,uint256)")
        + encode(["address", "uint256"], [w.addr("stranger"), 10_000]),
        to=w.token,
    )
    config = w.config(payer="stranger", payer_auth=None)
    deadline = w.chain.now + 600
    segment = _eip2612(w, "stranger", 4_000, deadline)
    data = w.permit2_data(config, 4_000, nonce=3, key="stranger", eip2612=segment)
    receipt = w.send("relayer", ch.deposit_call(config, 4_000, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data))
    assert receipt.success and w.state(config).balance == 4_000
    assert p2.allowance(w.chain, w.token, w.addr("stranger"), p2.PERMIT2_ADDRESS) == 0  # spent by Permit2

    # A segment that fails (a replayed permit) is logged and the deposit goes on when the allowance is there.
    w.send("stranger", p2.approve_call(p2.PERMIT2_ADDRESS, 10**9), to=w.token)
    data = w.permit2_data(config, 4_000, nonce=4, key="stranger", eip2612=segment)
    receipt = w.send("relayer", ch.deposit_call(config, 4_000, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data))
    assert receipt.success and w.state(config).balance == 8_000
    failed = [
        log
        for log in receipt.logs
        if log.topics[0] == keccak(b"EIP2612PermitFailedWithReason(address,address,string)")
    ]
    assert len(failed) == 1 and failed[0].topics[1:] == (word(w.token), word(w.addr("stranger")))
    assert decode(["string"], failed[0].data)[0] == "EIP2612: invalid signature"

    # A segment whose value is not the amount reverts the deposit.
    segment = _eip2612(w, "stranger", 3_999, deadline)
    data = w.permit2_data(config, 4_000, nonce=5, key="stranger", eip2612=segment)
    reverted_with(
        w,
        "relayer",
        ch.deposit_call(config, 4_000, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data),
        error("Permit2612AmountMismatch()"),
    )


def test_deposit_checks_in_order(w: World):
    config = w.config()
    collector = ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS
    data = w.erc3009_data(config, 100)
    for field_name in ("payer", "receiver", "receiver_authorizer", "token"):
        bad = ch.ChannelConfig(**{**config.__dict__, field_name: ZERO, "withdraw_delay": 1})
        reverted_with(w, "relayer", ch.deposit_call(bad, 0, ZERO, data), error("InvalidChannel()"))
    for delay in (DELAY - 1, ch.MAX_WITHDRAW_DELAY + 1):
        bad = ch.ChannelConfig(**{**config.__dict__, "withdraw_delay": delay})
        reverted_with(w, "relayer", ch.deposit_call(bad, 0, ZERO, data), error("WithdrawDelayOutOfRange()"))
    reverted_with(w, "relayer", ch.deposit_call(config, 0, ZERO, data), error("ZeroDeposit()"))
    reverted_with(w, "relayer", ch.deposit_call(config, 100, ZERO, data), error("InvalidCollector()"))
    w.deposit(config, 100)
    reverted_with(w, "relayer", ch.deposit_call(config, MAX128, collector, data), error("DepositOverflow()"))
    # The delay's bounds are inclusive.
    for delay in (DELAY, ch.MAX_WITHDRAW_DELAY):
        w.deposit(w.config(delay=delay), 10)


def test_collectors_answer_only_the_batch_contract(w: World):
    config = w.config()
    call = ch.selector("collect(address,address,uint256,bytes32,bytes)") + encode(
        ["address", "address", "uint256", "bytes32", "bytes"],
        [config.payer, w.token, 100, w.cid(config), w.erc3009_data(config, 100)],
    )
    for collector in (ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS):
        result = w.call(call, to=collector)
        assert result.reverted and result.output == error("OnlyX402BatchSettlement()")


def test_a_collector_that_collects_nothing_or_reenters(w: World):
    config = w.config()
    idle = w.deploy(compiled(BAD_COLLECTOR_SOURCE) + encode(["uint256"], [0]))
    reverted_with(w, "relayer", ch.deposit_call(config, 100, idle, b""), error("DepositCollectionFailed()"))
    reentrant = w.deploy(compiled(BAD_COLLECTOR_SOURCE) + encode(["uint256"], [1]))
    reverted_with(
        w, "relayer", ch.deposit_call(config, 100, reentrant, b""), error("ReentrancyGuardReentrantCall()")
    )
    assert w.state(config).balance == 0


# -- claims and settlement -----------------------------------------------------------------------


def test_claim_and_settle(w: World):
    config = w.config()
    cid = w.cid(config)
    w.deposit(config, 1_000)
    receipt = w.send("receiver", ch.claim_call([w.voucher(config, 600, 400)]))
    assert receipt.success and receipt.transfers() == []
    sender = word(w.addr("receiver"))
    assert events(receipt, "Claimed") == [((cid, sender), word(400) + word(400))]
    assert w.state(config).total_claimed == 400 and w.receiver_totals() == (400, 0)
    # The receiver authorizer may claim too; a stale or repeated voucher is a no-op.
    receipt = w.send("receiver_auth", ch.claim_call([w.voucher(config, 600), w.voucher(config, 600, 500)]))
    assert events(receipt, "Claimed") == [((cid, word(w.addr("receiver_auth"))), word(200) + word(600))]
    assert w.receiver_totals() == (600, 0)

    receipt = w.send("stranger", ch.settle_call(w.addr("receiver"), w.token))
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(BATCH, config.receiver, 600)]
    assert events(receipt, "Settled") == [
        ((word(config.receiver), word(w.token), word(w.addr("stranger"))), word(600))
    ]
    assert w.receiver_totals() == (600, 600) and w.balance("receiver") == 600 and w.balance(BATCH) == 400
    assert w.state(config) == ch.ChannelState(cid, 1_000, 600)  # settling leaves the escrow's books
    receipt = w.send("stranger", ch.settle_call(w.addr("receiver"), w.token))
    assert receipt.success and receipt.logs == ()


def test_claim_checks(w: World):
    config = w.config()
    w.deposit(config, 1_000)
    reverted_with(w, "receiver", ch.claim_call([]), error("EmptyBatch()"))
    reverted_with(w, "stranger", ch.claim_call([w.voucher(config, 10)]), error("NotAuthorizedToClaim()"))
    reverted_with(w, "receiver", ch.claim_call([w.voucher(config, 10, 11)]), error("ClaimExceedsCeiling()"))
    reverted_with(
        w, "receiver", ch.claim_call([w.voucher(config, 2_000, 1_001)]), error("ClaimExceedsBalance()")
    )
    # A payer authorizer is checked by ECDSA alone, with OpenZeppelin's errors.
    wrong = w.voucher(config, 10, key="payer")
    reverted_with(w, "receiver", ch.claim_call([wrong]), error("InvalidSignature()"))
    good = w.voucher(config, 10)
    short = ch.VoucherClaim(config, 10, good.signature[:64], 10)
    reverted_with(w, "receiver", ch.claim_call([short]), error("ECDSAInvalidSignatureLength(uint256)", 64))
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(good.signature[32:64], "big")
    high = good.signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good.signature[64]])
    malleable = ch.VoucherClaim(config, 10, high, 10)
    reverted_with(w, "receiver", ch.claim_call([malleable]), error("ECDSAInvalidSignatureS(bytes32)", n - s))
    bad_v = ch.VoucherClaim(config, 10, good.signature[:64] + b"\x1d", 10)
    reverted_with(w, "receiver", ch.claim_call([bad_v]), error("ECDSAInvalidSignature()"))
    # One bad row undoes the batch.
    reverted_with(
        w, "receiver", ch.claim_call([good, w.voucher(w.config(), 5)]), error("ClaimExceedsBalance()")
    )
    assert w.state(config).total_claimed == 0


def test_claim_with_signature(w: World):
    first, second = w.config(), w.config(receiver="receiver2")
    w.deposit(first, 1_000)
    w.deposit(second, 1_000)
    claims = [w.voucher(first, 300), w.voucher(second, 200, 150)]
    signature = ch.sign_claim_batch(w.keys["receiver_auth"], w.chain_id, claims)
    receipt = w.send("relayer", ch.claim_with_signature_call(claims, signature))
    assert receipt.success and len(events(receipt, "Claimed")) == 2
    assert w.receiver_totals("receiver") == (300, 0) and w.receiver_totals("receiver2") == (150, 0)

    reverted_with(w, "relayer", ch.claim_with_signature_call([], signature), error("EmptyBatch()"))
    wrong = ch.sign_claim_batch(w.keys["receiver"], w.chain_id, claims)
    reverted_with(w, "relayer", ch.claim_with_signature_call(claims, wrong), error("InvalidSignature()"))
    other = w.config(receiver_auth="stranger")
    w.deposit(other, 100)
    mixed = [w.voucher(first, 400), w.voucher(other, 50)]
    signature = ch.sign_claim_batch(w.keys["receiver_auth"], w.chain_id, mixed)
    reverted_with(
        w, "relayer", ch.claim_with_signature_call(mixed, signature), error("NotReceiverAuthorizer()")
    )


def test_an_eip1271_payer(w: World):
    """A contract payer with no payer authorizer: its vouchers are checked by isValidSignature."""
    w.add_wallet("wallet", "payer_auth")
    config = w.config(payer="wallet", payer_auth=None)
    data = ch.permit2_collector_data(
        1,
        w.chain.now + 600,
        sign_digest(
            w.keys["payer_auth"],
            ch.deposit_witness_digest(w.chain_id, w.token, 700, 1, w.chain.now + 600, w.cid(config)),
        ),
    )
    assert w.send("relayer", ch.deposit_call(config, 700, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data)).success
    assert w.state(config).balance == 700
    reverted_with(
        w, "receiver", ch.claim_call([w.voucher(config, 100, key="payer")]), error("InvalidSignature()")
    )
    receipt = w.send("receiver", ch.claim_call([w.voucher(config, 100, key="payer_auth")]))
    assert receipt.success and w.state(config).total_claimed == 100
    # A contract receiver authorizer signs claim batches and refunds the same way.
    w.add_wallet("rwallet", "receiver_auth")
    config = w.config(receiver_auth="rwallet")
    w.deposit(config, 500)
    claims = [w.voucher(config, 100)]
    signature = ch.sign_claim_batch(w.keys["receiver_auth"], w.chain_id, claims)
    assert w.send("relayer", ch.claim_with_signature_call(claims, signature)).success
    signature = ch.sign_refund(w.keys["receiver_auth"], w.chain_id, w.cid(config), 0, 50)
    assert w.send("relayer", ch.refund_with_signature_call(config, 50, 0, signature)).success
    assert w.state(config).balance == 450


# -- the payer's timed withdrawal ------------------------------------------------------------------


def test_withdrawal(w: World):
    config = w.config()
    cid = w.cid(config)
    w.deposit(config, 1_000)
    reverted_with(w, "stranger", ch.initiate_withdraw_call(config, 1), error("InvalidChannel()"))
    reverted_with(w, "payer", ch.initiate_withdraw_call(config, 0), error("NothingToWithdraw()"))
    reverted_with(
        w, "payer", ch.initiate_withdraw_call(config, 1_001), error("WithdrawAmountExceedsAvailable()")
    )
    reverted_with(w, "payer", ch.finalize_withdraw_call(config), error("WithdrawalNotPending()"))
    receipt = w.send("payer_auth", ch.initiate_withdraw_call(config, 800))
    started = receipt.block_timestamp
    assert events(receipt, "WithdrawInitiated") == [((cid,), word(800) + word(started + DELAY))]
    assert w.state(config) == ch.ChannelState(cid, 1_000, 0, 800, started)
    reverted_with(w, "payer", ch.initiate_withdraw_call(config, 1), error("WithdrawalAlreadyPending()"))
    reverted_with(
        w, "stranger", ch.finalize_withdraw_call(config), error("NotAuthorizedToFinalizeWithdraw()")
    )
    w.chain.set_time(started + DELAY - 1)
    reverted_with(w, "payer", ch.finalize_withdraw_call(config), error("WithdrawDelayNotElapsed()"))
    # The receiver claims during the window: the withdrawal is capped to what is left.
    w.send("receiver", ch.claim_call([w.voucher(config, 300)]))
    w.chain.set_time(started + DELAY)
    before = w.balance("payer")
    receipt = w.send("payer", ch.finalize_withdraw_call(config))
    assert events(receipt, "WithdrawFinalized") == [((cid, word(w.addr("payer"))), word(700))]
    assert events(receipt, "ChannelClosed") == []
    assert w.balance("payer") == before + 700 and w.state(config) == ch.ChannelState(cid, 300, 300)
    # The receiver can still settle what it claimed.
    w.send("receiver", ch.settle_call(w.addr("receiver"), w.token))
    assert w.balance("receiver") == 300 and w.balance(BATCH) == 0


def test_a_full_withdrawal_closes_the_channel(w: World):
    config = w.config(delay=ch.MAX_WITHDRAW_DELAY)
    w.deposit(config, 500)
    w.send("payer", ch.initiate_withdraw_call(config, 500))
    w.chain.advance(ch.MAX_WITHDRAW_DELAY)
    receipt = w.send("payer", ch.finalize_withdraw_call(config))
    assert events(receipt, "ChannelClosed") == [((w.cid(config),), encode([CONFIG], [config.as_abi()]))]
    assert w.state(config) == ch.ChannelState(w.cid(config))
    # A deposit after closing opens it again.
    assert events(w.deposit(config, 10), "ChannelCreated")


# -- refunds -------------------------------------------------------------------------------------


def test_refund(w: World):
    config = w.config()
    cid = w.cid(config)
    w.deposit(config, 1_000)
    w.send("receiver", ch.claim_call([w.voucher(config, 200)]))
    reverted_with(w, "stranger", ch.refund_call(config, 1), error("NotAuthorizedToRefund()"))
    reverted_with(w, "receiver", ch.refund_call(config, 0), error("ZeroRefund()"))
    w.send("payer", ch.initiate_withdraw_call(config, 500))
    before = w.balance("payer")
    receipt = w.send("receiver", ch.refund_call(config, 100))
    assert events(receipt, "Refunded") == [((cid, word(w.addr("receiver"))), word(100))]
    state = w.state(config)
    assert (state.balance, state.withdraw_amount, state.refund_nonce) == (900, 400, 1)  # pending reduced
    assert w.balance("payer") == before + 100
    # More than available: capped; the pending withdrawal is cancelled.
    receipt = w.send("receiver_auth", ch.refund_call(config, 10**6))
    assert events(receipt, "Refunded") == [((cid, word(w.addr("receiver_auth"))), word(700))]
    assert w.state(config) == ch.ChannelState(cid, 200, 200, 0, 0, 2)
    # Nothing left: no transfer, no event, but the nonce moves.
    receipt = w.send("receiver", ch.refund_call(config, 5))
    assert receipt.success and receipt.logs == () and w.state(config).refund_nonce == 3


def test_refund_with_signature(w: World):
    config = w.config()
    cid = w.cid(config)
    w.deposit(config, 1_000)
    key = w.keys["receiver_auth"]
    reverted_with(
        w,
        "relayer",
        ch.refund_with_signature_call(config, 100, 1, ch.sign_refund(key, w.chain_id, cid, 1, 100)),
        error("InvalidRefundNonce()"),
    )
    reverted_with(
        w,
        "relayer",
        ch.refund_with_signature_call(config, 100, 0, ch.sign_refund(key, w.chain_id, cid, 0, 99)),
        error("InvalidSignature()"),
    )
    reverted_with(
        w,
        "relayer",
        ch.refund_with_signature_call(config, 0, 0, ch.sign_refund(key, w.chain_id, cid, 0, 0)),
        error("ZeroRefund()"),
    )
    signature = ch.sign_refund(key, w.chain_id, cid, 0, 1_000)
    receipt = w.send("relayer", ch.refund_with_signature_call(config, 1_000, 0, signature))
    assert events(receipt, "Refunded") == [((cid, word(w.addr("relayer"))), word(1_000))]
    assert events(receipt, "ChannelClosed") == [((cid,), encode([CONFIG], [config.as_abi()]))]
    assert w.state(config) == ch.ChannelState(cid, 0, 0, 0, 0, 1)
    # The signature cannot be replayed: the nonce moved.
    reverted_with(
        w,
        "relayer",
        ch.refund_with_signature_call(config, 1_000, 0, signature),
        error("InvalidRefundNonce()"),
    )


# -- multicall -----------------------------------------------------------------------------------


def test_multicall_claims_and_refunds_all_or_none(w: World):
    config = w.config()
    cid = w.cid(config)
    w.deposit(config, 1_000)
    key = w.keys["receiver_auth"]
    claims = [w.voucher(config, 300)]
    claim = ch.claim_with_signature_call(claims, ch.sign_claim_batch(key, w.chain_id, claims))
    stale = ch.refund_with_signature_call(config, 500, 1, ch.sign_refund(key, w.chain_id, cid, 1, 500))
    reverted_with(w, "relayer", ch.multicall_call([claim, stale]), error("InvalidRefundNonce()"))
    assert w.state(config) == ch.ChannelState(cid, 1_000)
    reverted_with(w, "relayer", ch.multicall_call([claim, b"\xde\xad\xbe\xef"]), error("FailedCall()"))
    refund = ch.refund_with_signature_call(config, 10**6, 0, ch.sign_refund(key, w.chain_id, cid, 0, 10**6))
    receipt = w.send("relayer", ch.multicall_call([claim, refund]))
    assert receipt.success
    assert events(receipt, "Claimed") and events(receipt, "Refunded") == [
        ((cid, word(w.addr("relayer"))), word(700))
    ]
    assert w.state(config) == ch.ChannelState(cid, 300, 300, 0, 0, 1)
    result = w.call(
        ch.multicall_call([ch.selector(f"getChannelId({CONFIG})") + encode([CONFIG], [config.as_abi()])])
    )
    assert decode(["bytes[]"], result.output)[0] == (cid,)


# -- decoding and the ledger backend -----------------------------------------------------------------


def test_revert_reasons_name_the_channel_errors():
    for signature in ch.CHANNEL_ERRORS:
        if "(" in signature and not signature.endswith("()"):
            continue
        assert revert_reason(error(signature)) == signature
    assert (
        revert_reason(error("ECDSAInvalidSignatureLength(uint256)", 64)) == "ECDSAInvalidSignatureLength(64)"
    )
