"""The ledger backend against py-evm: the same operations must give the same chain.

Hypothesis generates sequences of operations (fund, sign, verify, settle, replay, cancel, expire,
drain, mine) and applies each to a ``LocalChain`` and a ``LedgerChain`` built alike. After every
block both must hold the same balances, supply and authorization states; every transaction the same
status, revert text, logs and gas; every verification the same verdict. This is the licence of the
ledger backend: a difference is a bug in one of the two.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
from eth_hash.auto import keccak
from hypothesis import event, given, settings
from hypothesis import strategies as st

from x402sim.errors import ChainError
from x402sim.evm import LocalChain, contracts
from x402sim.evm.chain import ETHER, ZERO_ADDRESS
from x402sim.evm.eip712 import SECP256K1_N, Authorization, address_of_key
from x402sim.evm.ledger import EXECUTION_GAS, LedgerChain
from x402sim.evm.ledger_gas import calibrate, cancel_call, sign_cancel, sign_transfer, twa_call
from x402sim.evm.token import encode_call
from x402sim.mechanisms.exact_eip3009 import check_offline, verify_on_chain
from x402sim.protocol import PaymentPayload, PaymentRequirements

PAYERS = {"rich": 5_000_000, "exact": 10_000, "poor": 9_999, "broke": 0}
PRICE = 10_000


@dataclasses.dataclass
class Accounts:
    relayer: bytes
    payers: dict[str, bytes]
    payees: list[str]  # one funded before, one fresh
    sink: str


def _build(chain: LocalChain | LedgerChain) -> Accounts:
    accounts = Accounts(
        relayer=keccak(b"relayer"),
        payers={kind: keccak(kind.encode()) for kind in PAYERS},
        payees=[address_of_key(keccak(b"payee:funded")), address_of_key(keccak(b"payee:fresh"))],
        sink=address_of_key(keccak(b"sink")),
    )
    grants = [(address_of_key(key), PAYERS[kind], ETHER) for kind, key in accounts.payers.items()]
    chain.fund_many([*grants, (address_of_key(accounts.relayer), 0, 10 * ETHER), (accounts.payees[0], 1, 0)])
    chain.advance(30)
    return accounts


@pytest.fixture(scope="module", params=contracts.TOKENS)
def bases(request):
    """A funded py-evm chain (reverted to its snapshot by each example) and a funded ledger (copied)."""
    evm, ledger = LocalChain(token=request.param, seed=3), LedgerChain(token=request.param, seed=3)
    accounts = _build(evm)
    assert _build(ledger) == accounts
    return evm, evm.snapshot(), ledger, accounts


payments = st.fixed_dictionaries(
    {
        "op": st.just("pay"),
        "payer": st.sampled_from(list(PAYERS)),
        "payee": st.sampled_from([0, 1, 1]),
        "value": st.sampled_from([PRICE, PRICE - 1, PRICE + 1, 0, 5_000_000, 2**256 - 1]),
        "nonce": st.integers(0, 3),  # few nonces, so that they collide
        "window": st.sampled_from(["ok", "ok", "ok", "early", "expired", "short"]),
        "fault": st.sampled_from(
            [None] * 8 + ["high-s", "v 29", "r zero", "other signer", "tamper value", "to zero", "to self"]
        ),
        "settle": st.booleans() | st.just(True),
    }
)
operations = st.lists(
    st.one_of(
        payments,
        st.fixed_dictionaries({"op": st.just("replay"), "which": st.integers(0, 10)}),
        st.fixed_dictionaries(
            {
                "op": st.just("cancel"),
                "payer": st.sampled_from(list(PAYERS)),
                "nonce": st.integers(0, 3),
                "fault": st.sampled_from([None, None, "other signer", "v 29"]),
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("drain"), "payer": st.sampled_from(list(PAYERS)), "all": st.booleans()}
        ),
        st.fixed_dictionaries({"op": st.just("mine")}),
        st.fixed_dictionaries({"op": st.just("advance"), "seconds": st.sampled_from([1, 5, 61, 700])}),
        st.fixed_dictionaries(
            {
                "op": st.just("mint"),
                "to": st.sampled_from([0, 1, 2]),
                "amount": st.sampled_from([0, 1, 7_000]),
            }
        ),
    ),
    min_size=1,
    max_size=14,
)


class Lockstep:
    def __init__(self, evm: LocalChain, ledger: LedgerChain, accounts: Accounts) -> None:
        self.evm, self.ledger, self.a = evm, ledger, accounts
        self.sent: list[tuple[bytes, bytes]] = []  # (evm hash, ledger hash) awaiting a block
        self.calls: list[tuple[bytes, bytes]] = []  # (key, calldata) of settlements, for replays
        self.nonces: set[tuple[str, bytes]] = set()

    @property
    def chains(self):
        return self.evm, self.ledger

    def send(self, key: bytes, data: bytes, gas: int = 150_000) -> None:
        hashes = []
        for chain in self.chains:
            try:
                hashes.append(chain.transact(key, chain.usdc, data, gas=gas))
            except ChainError as exc:
                hashes.append(str(exc))
        if isinstance(hashes[0], str) or isinstance(hashes[1], str):
            # Both must refuse (for the same kind of reason: too little ether for gas).
            assert isinstance(hashes[0], str) and isinstance(hashes[1], str), hashes
            event("refused by both")
            return
        self.sent.append((hashes[0], hashes[1]))

    def pay(self, op: dict) -> None:
        evm = self.evm
        key = self.a.payers[op["payer"]]
        payer = address_of_key(key)
        now = evm.latest_timestamp
        payee = {"to zero": ZERO_ADDRESS, "to self": payer}.get(op["fault"], self.a.payees[op["payee"]])
        after, before = {"ok": (0, now + 600), "early": (now + 100, now + 600), "expired": (0, now - 1)}.get(
            op["window"], (0, now + 6)
        )
        nonce = op["nonce"].to_bytes(32, "big")
        self.nonces.add((payer, nonce))
        auth = Authorization(payer, payee, op["value"], after, before, nonce)
        signer = (
            self.a.payers["exact" if op["payer"] == "rich" else "rich"]
            if op["fault"] == "other signer"
            else key
        )
        v, r, s = sign_transfer(signer, evm.domain, auth)
        if op["fault"] == "high-s":
            v, s = 55 - v, (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
        elif op["fault"] == "v 29":
            v = 29
        elif op["fault"] == "r zero":
            r = b"\x00" * 32
        elif op["fault"] == "tamper value":
            auth = dataclasses.replace(auth, value=auth.value ^ 1)
        self.verify(auth, v, r, s)
        if op["settle"]:
            data = twa_call(auth, v, r, s)
            self.calls.append((self.a.relayer, data))
            self.send(self.a.relayer, data)

    def verify(self, auth: Authorization, v: int, r: bytes, s: bytes) -> None:
        evm = self.evm
        if auth.value >= 2**255 or auth.to == ZERO_ADDRESS:
            return  # not a payment the protocol's models accept
        requirements = PaymentRequirements(
            scheme="exact",
            network=evm.network,
            amount=str(auth.value),
            asset=evm.usdc,
            pay_to=auth.to,
            max_timeout_seconds=600,
            extra={"name": evm.token_name, "version": evm.token_version},
        )
        payload = {
            "signature": "0x" + (r + s + bytes([v])).hex(),
            "authorization": {
                "from": auth.from_,
                "to": auth.to,
                "value": str(auth.value),
                "validAfter": str(auth.valid_after),
                "validBefore": str(auth.valid_before),
                "nonce": "0x" + auth.nonce.hex(),
            },
        }
        payment = PaymentPayload(x402_version=2, accepted=requirements, payload=payload)
        now = evm.latest_timestamp + 1
        offline = check_offline(payment, requirements, now, evm.chain_id)
        expected = verify_on_chain(offline, evm, now, "simulate")
        assert verify_on_chain(offline, self.ledger, now, "state") == expected
        assert verify_on_chain(offline, self.ledger, now, "simulate") == expected
        event(f"verdict: {expected.reason and expected.reason.value}")

    def cancel(self, op: dict) -> None:
        key = self.a.payers[op["payer"]]
        authorizer = address_of_key(key)
        nonce = op["nonce"].to_bytes(32, "big")
        self.nonces.add((authorizer, nonce))
        signer = self.a.payers["poor"] if op["fault"] == "other signer" else key
        v, r, s = sign_cancel(signer, self.evm.domain, nonce)
        self.send(self.a.relayer, cancel_call(authorizer, nonce, 29 if op["fault"] == "v 29" else v, r, s))

    def drain(self, op: dict) -> None:
        key = self.a.payers[op["payer"]]
        balance = self.evm.balance_of(address_of_key(key))
        amount = balance if op["all"] else balance + 1
        self.send(key, encode_call("transfer(address,uint256)", self.a.sink, amount), gas=100_000)

    def mint(self, op: dict) -> None:
        to = [self.a.sink, self.a.payees[1], ZERO_ADDRESS][op["to"]]
        self.send(self.evm.minter_key, encode_call("mint(address,uint256)", to, op["amount"]))

    def mine(self) -> None:
        blocks = [chain.mine() for chain in self.chains]
        assert len(blocks[0].tx_hashes) == len(blocks[1].tx_hashes)
        for h_evm, h_ledger in self.sent:
            ours, theirs = self.ledger.receipt(h_ledger), self.evm.receipt(h_evm)
            assert ours is not None and theirs is not None
            assert (ours.success, ours.revert_reason) == (theirs.success, theirs.revert_reason)
            assert [(log.address, log.topics, log.data) for log in ours.logs] == [
                (log.address, log.topics, log.data) for log in theirs.logs
            ]
            assert ours.gas_used == theirs.gas_used, (ours.revert_reason, ours.gas_used, theirs.gas_used)
            event(f"receipt: {theirs.revert_reason or 'ok'}")
        self.sent = []
        self.compare_state()

    def compare_state(self) -> None:
        accounts = [
            *(address_of_key(k) for k in self.a.payers.values()),
            *self.a.payees,
            self.a.sink,
            address_of_key(self.a.relayer),
        ]
        for chain in self.chains:
            assert chain.latest_timestamp == self.evm.latest_timestamp
        assert self.ledger.base_fee == self.evm.base_fee
        assert [self.ledger.balance_of(a) for a in accounts] == [self.evm.balance_of(a) for a in accounts]
        assert self.ledger.total_supply() == self.evm.total_supply()
        for payer, nonce in sorted(self.nonces):
            assert self.ledger.authorization_state(payer, nonce) == self.evm.authorization_state(payer, nonce)


@settings(max_examples=200, deadline=None)
@given(ops=operations)
def test_both_backends_give_the_same_chain(bases, ops):
    evm, snapshot, base_ledger, accounts = bases
    evm.revert(snapshot)
    run = Lockstep(evm, copy.deepcopy(base_ledger), accounts)
    for op in ops:
        kind = op["op"]
        if kind == "pay":
            run.pay(op)
        elif kind == "replay":
            if run.calls:
                run.send(*run.calls[op["which"] % len(run.calls)])
        elif kind == "cancel":
            run.cancel(op)
        elif kind == "drain":
            run.drain(op)
        elif kind == "mint":
            run.mint(op)
        elif kind == "mine":
            run.mine()
        else:
            for chain in run.chains:
                chain.set_time(max(chain.now, evm.latest_timestamp) + op["seconds"])
    run.mine()


@pytest.mark.parametrize("variant", contracts.TOKENS)
def test_the_gas_table_is_what_py_evm_measures(variant):
    assert calibrate(variant) == EXECUTION_GAS[variant]


@pytest.mark.parametrize("kwargs", [{}, {"token": "pyusd"}, {"token_address": "0x" + "ab" * 20}])
def test_blocks_and_base_fee_start_where_py_evm_leaves_them(kwargs):
    evm, ledger = LocalChain(**kwargs), LedgerChain(**kwargs)
    assert (ledger.block_number, ledger.base_fee, ledger.usdc) == (evm.block_number, evm.base_fee, evm.usdc)
    assert (ledger.bank, ledger.minter) == (evm.bank, evm.minter)


def test_a_first_payment_to_a_fresh_payee_costs_more():
    ledger = LedgerChain()
    payer_key, relayer = keccak(b"p"), keccak(b"r")
    payer = address_of_key(payer_key)
    ledger.fund_many([(payer, 1_000, 0), (address_of_key(relayer), 0, ETHER)])
    fresh = address_of_key(keccak(b"fresh"))
    used = []
    for n in range(2):
        auth = Authorization(payer, fresh, 10, 0, ledger.now + 600, n.to_bytes(32, "big"))
        h = ledger.transact(
            relayer, ledger.usdc, twa_call(auth, *sign_transfer(payer_key, ledger.domain, auth))
        )
        ledger.mine()
        used.append(ledger.receipt(h).gas_used)
    # A zero balance word set (20,000), then one reset (2,900); calldata and v move a few gas.
    assert abs(used[0] - used[1] - (20_000 - 2_900)) < 50


def test_what_the_ledger_does_not_model_is_refused():
    ledger = LedgerChain()
    key = keccak(b"k")
    ledger.fund(address_of_key(key), eth=ETHER)
    with pytest.raises(ChainError, match="does not model token call"):
        ledger.transact(key, ledger.usdc, encode_call("symbol()"))
    with pytest.raises(ChainError, match="creates no contracts"):
        ledger.transact(key, None, b"\x60\x00")
    with pytest.raises(ChainError, match="models no contract"):
        ledger.transact(key, ledger.bank, b"\x01\x02\x03\x04")
