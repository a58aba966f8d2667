"""The ledger backend against py-evm for the batch-settlement contract and its deposit collectors.

Hypothesis generates sequences of deposits (through the EIP-3009 collector and the Permit2
collector, with and without an EIP-2612 permit; expired, early, replayed, badly signed, too large,
for a bad channel config or no collector), claims (direct by the receiver side or a stranger, and
relayed with the receiver authorizer's signature; stale rows, rows above their ceiling or the
balance, badly signed vouchers, rows of another authorizer), settlements, refunds (direct and
signed; zero, partial, whole, with a stale nonce or a bad signature), the payer's withdrawals
(initiated and finalized, early, twice, by a stranger), the facilitator's multicall (a signed claim
and a signed refund), direct calls to a collector, replays, mining and time moving, and applies
each to a ``LocalChain`` and a ``LedgerChain`` built alike. Every simulation must give the same
verdict, revert text and gas; every transaction the same status, revert text, logs and gas; after
every block both chains must hold the same channels (``read_channel``), receivers' totals, token
and ether balances. ``make soak`` runs the same machine on many more examples
(``X402SIM_SOAK_STEPS``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib

import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from tests.evm.soak import soak
from x402sim.errors import ChainError
from x402sim.evm import LocalChain, batch_rules, contracts
from x402sim.evm.chain import ETHER, GWEI, ZERO_ADDRESS
from x402sim.evm.channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ChannelConfig,
    VoucherClaim,
    channel_id,
    claim_call,
    claim_with_signature_call,
    deposit_call,
    deposit_witness_digest,
    erc3009_collector_data,
    erc3009_deposit_nonce,
    finalize_withdraw_call,
    initiate_withdraw_call,
    multicall_call,
    permit2_collector_data,
    read_channel,
    read_receiver,
    receive_authorization_digest,
    refund_call,
    refund_with_signature_call,
    settle_call,
    sign_claim_batch,
    sign_refund,
    sign_voucher,
)
from x402sim.evm.eip712 import SECP256K1_N, address_of_key, sign_digest
from x402sim.evm.ledger import LedgerChain
from x402sim.evm.permit2 import PERMIT2_ADDRESS, Eip2612Permit, approve_call, eip2612_digest, eip2612_nonce
from x402sim.evm.token import encode_call, selector
from x402sim.evm.txsign import sign_eip1559

GAS = 1_000_000
NAMES = ("payer", "poor", "authorizer", "receiver", "ra", "ra2", "relayer", "other")
TOKENS_AT_START = {"payer": 10**9, "poor": 2_000, "receiver": 1}
COLLECTORS = {"erc3009": ERC3009_DEPOSIT_COLLECTOR_ADDRESS, "permit2": PERMIT2_DEPOSIT_COLLECTOR_ADDRESS}


@dataclasses.dataclass
class World:
    keys: dict[str, bytes]
    configs: list[ChannelConfig]  # the channels the operations use
    voucher_signers: list[str]  # who signs each channel's vouchers
    authorizer_of: list[str]  # each channel's receiver authorizer (a key name)

    def address(self, name: str) -> str:
        return address_of_key(self.keys[name])


def _build(chain: LocalChain | LedgerChain) -> World:
    keys = {name: keccak(f"batch:{name}".encode()) for name in NAMES}
    a = {name: address_of_key(key) for name, key in keys.items()}
    chain.fund_many([(a[name], TOKENS_AT_START.get(name, 0), ETHER) for name in NAMES])
    # The payer has approved Permit2 (the poor payer has not).
    chain.transact(keys["payer"], chain.usdc, approve_call(PERMIT2_ADDRESS, 10**12))
    chain.mine()
    chain.advance(30)
    token = chain.usdc
    assert token is not None
    configs = [
        ChannelConfig(a["payer"], a["authorizer"], a["receiver"], a["ra"], token, 900, b"\x00" * 32),
        ChannelConfig(a["payer"], ZERO_ADDRESS, a["receiver"], a["ra"], token, 900, b"\x01" * 32),
        ChannelConfig(a["poor"], a["poor"], a["receiver"], a["ra2"], token, 1_000, b"\x02" * 32),
    ]
    # Channels 0 and 1 start with a deposit each (one per collector), so that most operations
    # meet a live channel.
    now = chain.latest_timestamp
    cid = channel_id(configs[0], chain.chain_id)
    nonce = erc3009_deposit_nonce(cid, 0)
    digest = receive_authorization_digest(chain.domain, a["payer"], 10**6, 0, now + 10**6, nonce)
    data = erc3009_collector_data(0, now + 10**6, 0, sign_digest(keys["payer"], digest))
    chain.transact(
        keys["relayer"],
        BATCH_SETTLEMENT_ADDRESS,
        deposit_call(configs[0], 10**6, COLLECTORS["erc3009"], data),
    )
    cid = channel_id(configs[1], chain.chain_id)
    digest = deposit_witness_digest(chain.chain_id, token, 10**6, 0, now + 10**6, cid)
    data = permit2_collector_data(0, now + 10**6, sign_digest(keys["payer"], digest))
    chain.transact(
        keys["relayer"],
        BATCH_SETTLEMENT_ADDRESS,
        deposit_call(configs[1], 10**6, COLLECTORS["permit2"], data),
    )
    chain.mine()
    chain.advance(30)
    return World(keys, configs, ["authorizer", "payer", "poor"], ["ra", "ra", "ra2"])


@pytest.fixture(scope="module", params=contracts.TOKENS)
def bases(request):
    """A funded py-evm chain (reverted to its snapshot by each example) and a funded ledger (copied)."""
    evm, ledger = LocalChain(token=request.param, seed=11), LedgerChain(token=request.param, seed=11)
    world = _build(evm)
    assert _build(ledger) == world
    return evm, evm.snapshot(), ledger, world


channels = st.integers(0, 2)
amounts = st.sampled_from([0, 500, 100_000, 10**10])
operations = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "op": st.just("deposit"),
                "channel": channels,
                "collector": st.sampled_from(["erc3009", "permit2"]),
                "amount": st.sampled_from([0, 500, 100_000, 100_000, 10**10, 2**128 - 1]),
                "fault": st.sampled_from(
                    [None] * 6
                    + ["expired", "early", "other signer", "replay", "v 29", "high-s", "zero payer"]
                    + ["zero receiver", "zero authorizer", "zero token", "delay low", "delay high"]
                    + ["no collector"]
                ),
                "sender": st.sampled_from(["relayer", "relayer", "payer"]),
                "permit": st.sampled_from([None] * 4 + ["good", "expired", "mismatch", "other signer"]),
            }
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("claim"),
                "rows": st.lists(
                    st.fixed_dictionaries(
                        {
                            "channel": channels,
                            "step": st.sampled_from([0, 1, 50, 50, 10**10]),
                            "fault": st.sampled_from(
                                [None] * 5 + ["ceiling", "other signer", "high-s", "v 29"]
                            ),
                        }
                    ),
                    min_size=0,
                    max_size=3,
                ),
                "mode": st.sampled_from(["ra", "receiver", "relayer", "signed", "signed", "signed by other"]),
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("settle"), "receiver": st.sampled_from(["receiver", "receiver", "relayer"])}
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("withdraw"),
                "finalize": st.booleans(),
                "channel": channels,
                "amount": amounts,
                "sender": st.sampled_from(["payer", "payer", "authorizer", "relayer"]),
            }
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("refund"),
                "channel": channels,
                "amount": amounts,
                "mode": st.sampled_from(
                    [
                        "ra",
                        "receiver",
                        "relayer",
                        "signed",
                        "signed",
                        "stale nonce",
                        "signed by other",
                        "high-s",
                    ]
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("multicall"),
                "channel": channels,
                "step": st.sampled_from([0, 10]),
                "amount": amounts,
            }
        ),
        st.fixed_dictionaries({"op": st.just("collect"), "collector": st.sampled_from(list(COLLECTORS))}),
        # tokens sent to the EIP-3009 collector (PYUSD's quiet replay then deposits them)
        st.fixed_dictionaries({"op": st.just("stray")}),
        st.fixed_dictionaries({"op": st.just("replay"), "which": st.integers(0, 10)}),
        st.fixed_dictionaries({"op": st.just("mine")}),
        st.fixed_dictionaries({"op": st.just("advance"), "seconds": st.sampled_from([1, 300, 1_000])}),
    ),
    min_size=1,
    max_size=14,
)


def _note(text: str) -> None:
    """A Hypothesis event, when there is a Hypothesis test to record it."""
    with contextlib.suppress(InvalidArgument):
        event(text)


def _high_s(signature: bytes) -> bytes:
    """The malleable twin of a 65-byte signature: high s, the other v."""
    s = (SECP256K1_N - int.from_bytes(signature[32:64], "big")).to_bytes(32, "big")
    return signature[:32] + s + bytes([55 - signature[64]])


def _spoil(signature: bytes, fault: str | None) -> bytes:
    if fault == "v 29":
        return signature[:64] + b"\x1d"
    if fault == "high-s":
        return _high_s(signature)
    return signature


class Lockstep:
    """The same transactions on both chains, compared."""

    def __init__(self, evm: LocalChain, ledger: LedgerChain, world: World) -> None:
        self.evm, self.ledger, self.w = evm, ledger, world
        self.sent: list[bytes] = []
        self.calls: list[tuple[str, bytes, str]] = []  # (sender name, calldata, to), for replays
        self.salt = 0
        # (function, revert reason or "ok", gas used on py-evm, on the ledger), per receipt
        self.gas: list[tuple[str, str, int, int]] = []
        self.functions: dict[bytes, str] = {}

    @property
    def chains(self) -> tuple[LocalChain, LedgerChain]:
        return self.evm, self.ledger

    @property
    def chain_id(self) -> int:
        return self.evm.chain_id

    @property
    def token(self) -> str:
        token = self.evm.usdc
        assert token is not None
        return token

    def cid(self, index: int) -> bytes:
        return channel_id(self.w.configs[index], self.chain_id)

    def state(self, index: int):
        return read_channel(self.evm, self.cid(index))

    def send(
        self, sender: str, data: bytes, to: str = BATCH_SETTLEMENT_ADDRESS, *, simulate: bool = True
    ) -> None:
        key = self.w.keys[sender]
        if simulate:
            self.simulate(sender, to, data)
        raw = sign_eip1559(
            key,
            chain_id=self.chain_id,
            nonce=self.evm.pending_nonce(address_of_key(key)),
            gas=GAS,
            max_fee_per_gas=2 * self.evm.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=to,
            value=0,
            data=data,
        ).raw
        outcomes: list[bytes | str] = []
        for chain in self.chains:
            try:
                outcomes.append(chain.send_raw_transaction(raw))
            except ChainError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], outcomes
        if isinstance(outcomes[0], bytes):
            other = "collect" if to in COLLECTORS.values() else "token"
            self.functions[outcomes[0]] = batch_rules.FUNCTIONS.get(data[:4], other)
        self.calls.append((sender, data, to))
        self.sent.append(outcomes[0])  # type: ignore[arg-type]

    def simulate(self, sender: str, to: str, data: bytes) -> None:
        address = self.w.address(sender)
        now = self.evm.latest_timestamp + 1
        evm, ledger = (chain.call(to, data, sender=address, timestamp=now) for chain in self.chains)
        path = self.ledger.exit_point(to, data, sender=address, timestamp=now)[1]
        assert (ledger.success, ledger.revert_reason, ledger.gas_used) == (
            evm.success,
            evm.revert_reason,
            evm.gas_used,
        ), path
        if evm.success and to == BATCH_SETTLEMENT_ADDRESS:  # what it returns, not its revert data
            assert ledger.output == evm.output
        _note(f"simulated: {evm.revert_reason or 'ok'}")

    # -- operations ---------------------------------------------------------------------------------

    def deposit(self, op: dict) -> None:
        index, fault, amount = op["channel"], op["fault"], op["amount"]
        config = self.w.configs[index]
        payer_name = "poor" if index == 2 else "payer"
        changes = {
            "zero payer": {"payer": ZERO_ADDRESS},
            "zero receiver": {"receiver": ZERO_ADDRESS},
            "zero authorizer": {"receiver_authorizer": ZERO_ADDRESS},
            "zero token": {"token": ZERO_ADDRESS},
            "delay low": {"withdraw_delay": 899},
            "delay high": {"withdraw_delay": 30 * 24 * 3600 + 1},
        }.get(fault or "", {})
        config = dataclasses.replace(config, **changes)
        if fault == "replay":
            for sender, data, to in reversed(self.calls):
                if data[:4] == deposit_call(config, 1, ZERO_ADDRESS, b"")[:4]:
                    self.send(sender, data, to)
                    return
        signer = "other" if fault == "other signer" else payer_name
        cid = channel_id(config, self.chain_id)
        now = self.evm.latest_timestamp
        self.salt += 1
        if op["collector"] == "erc3009":
            after = now + 300 if fault == "early" else 0
            before = now - 1 if fault == "expired" else now + 3600
            nonce = erc3009_deposit_nonce(cid, self.salt)
            digest = receive_authorization_digest(self.evm.domain, config.payer, amount, after, before, nonce)
            signature = _spoil(sign_digest(self.w.keys[signer], digest), fault)
            data = erc3009_collector_data(after, before, self.salt, signature)
        else:
            deadline = now - 1 if fault == "expired" else now + 3600
            digest = deposit_witness_digest(self.chain_id, self.token, amount, self.salt, deadline, cid)
            signature = _spoil(sign_digest(self.w.keys[signer], digest), fault)
            data = permit2_collector_data(
                self.salt, deadline, signature, self.permit(payer_name, amount, op["permit"])
            )
        collector = ZERO_ADDRESS if fault == "no collector" else COLLECTORS[op["collector"]]
        self.send(
            op["sender"] if op["sender"] != "payer" else payer_name,
            deposit_call(config, amount, collector, data),
        )

    def permit(self, owner: str, amount: int, kind: str | None) -> bytes:
        """The Permit2 collector's optional EIP-2612 segment."""
        if kind is None:
            return b""
        address = self.w.address(owner)
        now = self.evm.latest_timestamp
        deadline = now - 1 if kind == "expired" else now + 600
        nonce = eip2612_nonce(self.evm, self.token, address)
        value = amount + 1 if kind == "mismatch" else amount
        signer = self.w.keys["other" if kind == "other signer" else owner]
        signature = sign_digest(
            signer,
            eip2612_digest(self.evm.domain, Eip2612Permit(address, PERMIT2_ADDRESS, value, nonce, deadline)),
        )
        return encode(
            ["uint256", "uint256", "uint8", "bytes32", "bytes32"],
            [value, deadline, signature[64], signature[:32], signature[32:64]],
        )

    def row(self, spec: dict) -> VoucherClaim:
        index = spec["channel"]
        total = min(self.state(index).total_claimed + spec["step"], 2**128 - 1)
        fault = spec["fault"]
        ceiling = total - 1 if fault == "ceiling" and total > 0 else total
        signer = "other" if fault == "other signer" else self.w.voucher_signers[index]
        signature = sign_voucher(self.w.keys[signer], self.chain_id, self.cid(index), ceiling)
        return VoucherClaim(self.w.configs[index], ceiling, _spoil(signature, fault), total)

    def claim(self, op: dict) -> None:
        rows = [self.row(spec) for spec in op["rows"]]
        mode = op["mode"]
        if mode in ("ra", "receiver", "relayer"):
            sender = mode
            if mode == "ra" and op["rows"]:
                sender = self.w.authorizer_of[op["rows"][0]["channel"]]
            self.send(sender, claim_call(rows))
            return
        signer = "other"
        if mode == "signed":
            signer = self.w.authorizer_of[op["rows"][0]["channel"]] if op["rows"] else "ra"
        signature = sign_claim_batch(self.w.keys[signer], self.chain_id, rows)
        self.send("relayer", claim_with_signature_call(rows, signature))

    def settle(self, op: dict) -> None:
        self.send("relayer", settle_call(self.w.address(op["receiver"]), self.token))

    def withdraw(self, op: dict) -> None:
        index = op["channel"]
        sender = op["sender"]
        if sender == "payer":
            sender = "poor" if index == 2 else "payer"
        config = self.w.configs[index]
        if op["finalize"]:
            self.send(sender, finalize_withdraw_call(config))
        else:
            self.send(sender, initiate_withdraw_call(config, min(op["amount"], 2**128 - 1)))

    def refund(self, op: dict) -> None:
        index, mode, amount = op["channel"], op["mode"], op["amount"]
        config = self.w.configs[index]
        if mode in ("ra", "receiver", "relayer"):
            sender = self.w.authorizer_of[index] if mode == "ra" else mode
            self.send(sender, refund_call(config, amount))
            return
        self.send("relayer", self.signed_refund(index, amount, mode))

    def signed_refund(self, index: int, amount: int, mode: str = "signed") -> bytes:
        nonce = self.state(index).refund_nonce + (mode == "stale nonce")
        signer = "other" if mode == "signed by other" else self.w.authorizer_of[index]
        signature = sign_refund(self.w.keys[signer], self.chain_id, self.cid(index), nonce, amount)
        if mode == "high-s":
            signature = _high_s(signature)
        return refund_with_signature_call(self.w.configs[index], amount, nonce, signature)

    def multicall(self, op: dict) -> None:
        """The facilitator's refund: a signed claim of what was charged, then the signed refund."""
        index = op["channel"]
        calls = []
        if op["step"]:
            rows = [self.row({"channel": index, "step": op["step"], "fault": None})]
            signature = sign_claim_batch(self.w.keys[self.w.authorizer_of[index]], self.chain_id, rows)
            calls.append(claim_with_signature_call(rows, signature))
        calls.append(self.signed_refund(index, op["amount"]))
        self.send("relayer", multicall_call(calls))

    def collect(self, op: dict) -> None:
        data = encode_call(
            "collect(address,address,uint256,bytes32,bytes)",
            self.w.address("payer"),
            self.token,
            1,
            self.cid(0),
            erc3009_collector_data(0, 1, 0, b"\x00" * 65),
        )
        self.send("relayer", data, COLLECTORS[op["collector"]])

    def stray(self, op: dict) -> None:
        data = encode_call("transfer(address,uint256)", ERC3009_DEPOSIT_COLLECTOR_ADDRESS, 100_000)
        self.send("payer", data, self.token, simulate=False)

    def mine(self) -> None:
        blocks = [chain.mine() for chain in self.chains]
        assert blocks[0].tx_hashes == blocks[1].tx_hashes
        for tx_hash in self.sent:
            ours, theirs = self.ledger.receipt(tx_hash), self.evm.receipt(tx_hash)
            assert ours is not None and theirs is not None
            assert (ours.success, ours.revert_reason) == (theirs.success, theirs.revert_reason)
            assert [(log.address, log.topics, log.data) for log in ours.logs] == [
                (log.address, log.topics, log.data) for log in theirs.logs
            ]
            assert ours.gas_used == theirs.gas_used, (ours.revert_reason, ours.gas_used, theirs.gas_used)
            function = self.functions.pop(tx_hash, "")
            self.gas.append((function, theirs.revert_reason or "ok", theirs.gas_used, ours.gas_used))
            _note(f"receipt: {theirs.revert_reason or 'ok'}")
        self.sent = []
        self.compare_state()

    def compare_state(self) -> None:
        evm, ledger, token = self.evm, self.ledger, self.token
        assert ledger.base_fee == evm.base_fee
        for index in range(len(self.w.configs)):
            assert read_channel(ledger, self.cid(index)) == read_channel(evm, self.cid(index))
        for name in ("receiver", "relayer"):
            address = self.w.address(name)
            assert read_receiver(ledger, address, token) == read_receiver(evm, address, token)
        everyone = [self.w.address(name) for name in NAMES] + [BATCH_SETTLEMENT_ADDRESS, *COLLECTORS.values()]
        assert [ledger.balance_of(a) for a in everyone] == [evm.balance_of(a) for a in everyone]
        assert [ledger.eth_balance(a) for a in everyone] == [evm.eth_balance(a) for a in everyone]


def _run(bases, ops) -> Lockstep:
    evm, snapshot, base_ledger, world = bases
    evm.revert(snapshot)
    run = Lockstep(evm, copy.deepcopy(base_ledger), world)
    for op in ops:
        kind = op["op"]
        if kind == "replay":
            if run.calls:
                run.send(*run.calls[op["which"] % len(run.calls)])
        elif kind == "mine":
            run.mine()
        elif kind == "advance":
            for chain in run.chains:
                chain.set_time(max(chain.now, evm.latest_timestamp) + op["seconds"])
        else:
            getattr(run, kind)(op)
    run.mine()
    return run


def _deposit(channel: int = 0, collector: str = "erc3009", amount: int = 100_000, **changes) -> dict:
    op = {"op": "deposit", "channel": channel, "collector": collector, "amount": amount, "fault": None}
    return {**op, "sender": "relayer", "permit": None, **changes}


def _claim(*rows: tuple[int, int], mode: str = "signed", fault: str | None = None) -> dict:
    specs = [{"channel": channel, "step": step, "fault": fault} for channel, step in rows]
    return {"op": "claim", "rows": specs, "mode": mode}


MINE = {"op": "mine"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
# a channel's whole life: deposits both ways, claims both ways, settle, withdrawal, refunds
@example(
    ops=[
        _deposit(0),
        _deposit(1, "permit2", permit="good"),
        MINE,
        _claim((0, 50), (0, 0)),
        _claim((1, 50), mode="ra"),
        MINE,
        {"op": "settle", "receiver": "receiver"},
        {"op": "withdraw", "finalize": False, "channel": 0, "amount": 500, "sender": "authorizer"},
        MINE,
        {"op": "advance", "seconds": 1_000},
        {"op": "refund", "channel": 0, "amount": 100, "mode": "signed"},
        {"op": "withdraw", "finalize": True, "channel": 0, "amount": 0, "sender": "payer"},
        {"op": "multicall", "channel": 1, "step": 10, "amount": 10**10},
        MINE,
        {"op": "refund", "channel": 1, "amount": 500, "mode": "ra"},
    ]
)
# the failures of a claim batch, row by row; a refund with a stale nonce; a deposit of the poor
@example(
    ops=[
        _deposit(2, amount=1_500),
        _deposit(0),
        MINE,
        _claim((0, 1), (2, 1)),
        _claim((0, 10**10)),
        _claim((0, 1), fault="ceiling"),
        _claim((0, 1), fault="high-s", mode="ra"),
        _claim((1, 1), fault="v 29"),
        _claim((0, 1), mode="relayer"),
        _claim(),
        {"op": "refund", "channel": 0, "amount": 100, "mode": "stale nonce"},
        _deposit(2, "permit2", amount=500),
        {"op": "collect", "collector": "permit2"},
    ]
)
# a replayed EIP-3009 deposit after tokens were sent to the collector (PYUSD counts them)
@example(ops=[_deposit(0), MINE, {"op": "stray"}, MINE, _deposit(0, fault="replay")])
def test_both_backends_give_the_same_batch_chain(bases, ops):
    _run(bases, ops)


@pytest.mark.soak
def test_soak_batch_differential(bases):
    """``X402SIM_SOAK_STEPS`` examples (default 2,000) of the same machine."""
    soak(lambda ops: _run(bases, ops), operations)


def test_the_ledger_answers_the_batch_views(bases):
    """The views the mechanisms read answer on the ledger as on py-evm."""
    evm, snapshot, base_ledger, world = bases
    evm.revert(snapshot)
    run = Lockstep(evm, copy.deepcopy(base_ledger), world)
    run.deposit(_deposit(0))
    run.mine()
    rows = [
        run.row({"channel": 0, "step": 7, "fault": None}),
        run.row({"channel": 1, "step": 0, "fault": None}),
    ]
    config = world.configs[0]
    cid = run.cid(0)
    config_type = "(address,address,address,address,address,uint40,bytes32)"
    row_type = f"(({config_type},uint128),bytes,uint128)[]"

    def call(name: str, types: list[str], *args) -> bytes:
        return selector(f"{name}({','.join(types)})") + encode(types, list(args))

    selectors = {
        "getChannelId": call("getChannelId", [config_type], config.as_abi()),
        "getVoucherDigest": call("getVoucherDigest", ["bytes32", "uint128"], cid, 7),
        "getRefundDigest": call("getRefundDigest", ["bytes32", "uint256", "uint128"], cid, 3, 9),
        "channels": call("channels", ["bytes32"], cid),
        "pendingWithdrawals": call("pendingWithdrawals", ["bytes32"], cid),
        "refundNonce": call("refundNonce", ["bytes32"], cid),
        "receivers": call("receivers", ["address", "address"], world.address("receiver"), run.token),
        "getClaimBatchDigest": call("getClaimBatchDigest", [row_type], [r.as_abi() for r in rows]),
    }
    for name, data in selectors.items():
        assert (
            run.ledger.call(BATCH_SETTLEMENT_ADDRESS, data).output
            == evm.call(BATCH_SETTLEMENT_ADDRESS, data).output
        ), name
    for address in (BATCH_SETTLEMENT_ADDRESS, *COLLECTORS.values()):
        assert run.ledger.code(address) == evm.code(address) != b""


def test_what_the_ledger_does_not_model_on_the_batch_contract_is_refused():
    ledger = LedgerChain()
    key = keccak(b"k")
    me = address_of_key(key)
    ledger.fund(me, eth=ETHER)
    config = ChannelConfig(me, me, me, me, ledger.usdc, 900)
    cid = channel_id(config, ledger.chain_id)
    signature = sign_voucher(key, ledger.chain_id, cid, 5)

    def refused(data: bytes, match: str, to: str = BATCH_SETTLEMENT_ADDRESS) -> None:
        with pytest.raises(ChainError, match=match):
            ledger.transact(key, to, data)

    refused(claim_call([VoucherClaim(config, 5, signature[:64], 5)]), "65-byte signatures only")
    payer_contract = dataclasses.replace(config, payer=PERMIT2_ADDRESS, payer_authorizer=ZERO_ADDRESS)
    refused(claim_call([VoucherClaim(payer_contract, 5, signature, 5)]), "no payer with code")
    authorizer_contract = dataclasses.replace(config, receiver_authorizer=PERMIT2_ADDRESS)
    refused(
        refund_with_signature_call(authorizer_contract, 5, 0, signature), "no receiver authorizer with code"
    )
    refused(
        claim_with_signature_call([VoucherClaim(authorizer_contract, 5, signature, 5)], signature),
        "no receiver authorizer with code",
    )
    contract_payer = dataclasses.replace(config, payer=PERMIT2_ADDRESS)
    refused(deposit_call(contract_payer, 5, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, b""), "no payer with code")
    other_token = dataclasses.replace(config, token=PERMIT2_ADDRESS)
    refused(refund_call(other_token, 5), "models no token but")
    refused(deposit_call(config, 5, me, b""), "no collector but the two")
    refused(deposit_call(config, 5, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, b"\x01"), "does not decode")
    refused(multicall_call([multicall_call([])]), "no multicall inside a multicall")
    refused(claim_call([VoucherClaim(config, 5, signature, 5)] * 101), "100 rows at most")
    refused(multicall_call([settle_call(me, me)] * 9), "8 calls of 4096 bytes at most")
    refused(encode_call("MIN_WITHDRAW_DELAY()"), "does not model batch-settlement call")
    with pytest.raises(ChainError, match="no ether sent to the contract"):
        ledger.transact(key, BATCH_SETTLEMENT_ADDRESS, settle_call(me, ledger.usdc), value=1)


def test_the_batch_rules_are_importable_by_name():
    assert importlib.import_module("x402sim.evm.batch_rules") is batch_rules
