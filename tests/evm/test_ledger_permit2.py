"""The ledger backend against py-evm for Permit2, the x402 Permit2 proxies and token allowances.

Hypothesis generates sequences of approvals, EIP-2612 permits (good, badly signed, expired, with a
stale nonce), proxy settlements (exact and upto; plain and with a permit; bad witnesses, reused
nonces, the wrong facilitator, too early, above the permitted amount, a permit for another
amount), Permit2 nonce invalidations, ether transfers and sponsored bundles (ether to a payer
without any, its approval, the settlement), and applies each to a ``LocalChain`` and a
``LedgerChain`` built alike. Every simulation must give the same verdict, revert text and gas;
every transaction the same status, revert text, logs and gas; after every block both chains must
hold the same token and ether balances, allowances, EIP-2612 nonces and Permit2 nonce bitmaps.
``make soak`` runs the same machine on many more examples (``X402SIM_SOAK_STEPS``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib

import pytest
from eth_hash.auto import keccak
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from tests.evm.soak import soak
from x402sim.errors import ChainError
from x402sim.evm import LocalChain, contracts, permit2_rules
from x402sim.evm.chain import ETHER, GWEI, ZERO_ADDRESS
from x402sim.evm.eip712 import SECP256K1_N, address_of_key, sign_digest
from x402sim.evm.ledger import LedgerChain
from x402sim.evm.permit2 import (
    EXACT_PERMIT2_PROXY_ADDRESS,
    PERMIT2_ADDRESS,
    UPTO_PERMIT2_PROXY_ADDRESS,
    Eip2612Permit,
    PermitTransfer,
    allowance,
    approve_call,
    eip2612_digest,
    eip2612_nonce,
    exact_settle_call,
    exact_settle_with_permit_call,
    invalidate_nonces_call,
    permit_witness_digest,
    upto_settle_call,
    upto_settle_with_permit_call,
)
from x402sim.evm.token import encode_call
from x402sim.evm.txsign import sign_eip1559
from x402sim.mechanisms import EXACT_EIP3009, EXACT_PERMIT2, UPTO_PERMIT2, ledger_refusal

PAYERS = {"rich": 5_000_000, "poor": 9_999, "gasless": 50_000}
PRICE = 10_000
GAS = 300_000


@dataclasses.dataclass
class Accounts:
    payers: dict[str, bytes]
    facilitator: bytes
    other_facilitator: bytes
    payees: list[str]  # one funded before, one fresh


def _build(chain: LocalChain | LedgerChain) -> Accounts:
    accounts = Accounts(
        payers={kind: keccak(f"p2:{kind}".encode()) for kind in PAYERS},
        facilitator=keccak(b"p2:facilitator"),
        other_facilitator=keccak(b"p2:other facilitator"),
        payees=[address_of_key(keccak(b"p2:payee:funded")), address_of_key(keccak(b"p2:payee:fresh"))],
    )
    grants = [
        (address_of_key(key), PAYERS[kind], 0 if kind == "gasless" else ETHER)
        for kind, key in accounts.payers.items()
    ]
    facilitators = [
        (address_of_key(k), 0, 10 * ETHER) for k in (accounts.facilitator, accounts.other_facilitator)
    ]
    chain.fund_many([*grants, *facilitators, (accounts.payees[0], 1, 0)])
    # The rich payer has approved Permit2 for a hundred payments (the others have not).
    chain.transact(accounts.payers["rich"], chain.usdc, approve_call(PERMIT2_ADDRESS, 100 * PRICE))
    chain.mine()
    chain.advance(30)
    return accounts


@pytest.fixture(scope="module", params=contracts.TOKENS)
def bases(request):
    """A funded py-evm chain (reverted to its snapshot by each example) and a funded ledger (copied)."""
    evm, ledger = LocalChain(token=request.param, seed=5), LedgerChain(token=request.param, seed=5)
    accounts = _build(evm)
    assert _build(ledger) == accounts
    return evm, evm.snapshot(), ledger, accounts


payer_names = st.sampled_from(list(PAYERS))
operations = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "op": st.just("approve"),
                "payer": payer_names,
                "amount": st.sampled_from([0, PRICE, 2**256 - 1]),
                "spender": st.sampled_from(["permit2", "permit2", "facilitator", "zero"]),
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("transfer_from"), "payer": payer_names, "value": st.sampled_from([1, PRICE])}
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("permit"),
                "payer": payer_names,
                "value": st.sampled_from([PRICE, 2**256 - 1]),
                "fault": st.sampled_from(
                    [None, None, "other signer", "expired", "wrong nonce", "v 29", "high-s"]
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("settle"),
                "upto": st.booleans(),
                "payer": payer_names,
                "permitted": st.sampled_from([PRICE, PRICE, 0, 10**12]),
                "charge": st.sampled_from([0, 0, -1, 1, None]),  # upto: the permitted amount plus this
                "nonce": st.sampled_from([0, 1, 2, 256]),  # few nonces, so that they collide
                "fault": st.sampled_from(
                    [None] * 5
                    + ["bad witness", "other signer", "v 29", "expired", "early", "to zero", "owner zero"]
                ),
                "sender": st.sampled_from(["facilitator", "facilitator", "other", "payer"]),
                "permit": st.sampled_from(
                    [None, None, None, "good", "good", "expired", "other signer", "mismatch", "stale nonce"]
                ),
            }
        ),
        st.fixed_dictionaries({"op": st.just("replay"), "which": st.integers(0, 10)}),
        st.fixed_dictionaries(
            {
                "op": st.just("invalidate"),
                "payer": payer_names,
                "word": st.sampled_from([0, 1]),
                "mask": st.sampled_from([0, 1, 2, 0b111]),
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("ether"), "payer": payer_names, "value": st.sampled_from([0, ETHER // 100])}
        ),
        st.fixed_dictionaries(
            {
                "op": st.just("bundle"),
                "amount": st.sampled_from([PRICE, 2**256 - 1]),
                "short": st.booleans() | st.just(False),  # one wei too little ether for the approval
                "nonce": st.sampled_from([0, 1, 2, 256]),
            }
        ),
        st.fixed_dictionaries({"op": st.just("mine")}),
        st.fixed_dictionaries({"op": st.just("advance"), "seconds": st.sampled_from([1, 61, 700])}),
    ),
    min_size=1,
    max_size=12,
)


def _note(text: str) -> None:
    """A Hypothesis event, when there is a Hypothesis test to record it."""
    with contextlib.suppress(InvalidArgument):
        event(text)


class Lockstep:
    def __init__(self, evm: LocalChain, ledger: LedgerChain, accounts: Accounts) -> None:
        self.evm, self.ledger, self.a = evm, ledger, accounts
        self.sent: list[bytes] = []  # hashes (the same raw transactions go to both) awaiting a block
        self.settles: list[tuple[bytes, str, bytes]] = []  # (key, proxy, calldata), for replays

    @property
    def chains(self):
        return self.evm, self.ledger

    @property
    def token(self) -> str:
        return self.evm.usdc

    def raw(
        self, key: bytes, to: str, data: bytes, *, value: int = 0, gas: int = GAS, offset: int = 0
    ) -> bytes:
        return sign_eip1559(
            key,
            chain_id=self.evm.chain_id,
            nonce=self.evm.pending_nonce(address_of_key(key)) + offset,
            gas=gas,
            max_fee_per_gas=2 * self.evm.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=to,
            value=value,
            data=data,
        ).raw

    def submit(self, raws: list[bytes]) -> None:
        """Send one transaction, or a bundle, to both chains: both take it, or both refuse it."""
        outcomes: list[list[bytes] | str] = []
        for chain in self.chains:
            try:
                outcomes.append(
                    chain.send_bundle(raws) if len(raws) > 1 else [chain.send_raw_transaction(raws[0])]
                )
            except ChainError as exc:
                outcomes.append(str(exc))
        if isinstance(outcomes[0], str) or isinstance(outcomes[1], str):
            assert isinstance(outcomes[0], str) and isinstance(outcomes[1], str), outcomes
            _note("refused by both")
            return
        assert outcomes[0] == outcomes[1]
        self.sent.extend(outcomes[0])

    def send(self, key: bytes, to: str, data: bytes, value: int = 0) -> None:
        self.submit([self.raw(key, to, data, value=value)])

    def simulate(self, key: bytes, to: str, data: bytes) -> None:
        sender = address_of_key(key)
        now = self.evm.latest_timestamp + 1
        evm, ledger = (chain.call(to, data, sender=sender, timestamp=now) for chain in self.chains)
        assert (ledger.success, ledger.revert_reason, ledger.gas_used) == (
            evm.success,
            evm.revert_reason,
            evm.gas_used,
        )
        _note(f"simulated: {evm.revert_reason or 'ok'}")

    # -- operations ---------------------------------------------------------------------------------

    def approve(self, op: dict) -> None:
        spender = {
            "permit2": PERMIT2_ADDRESS,
            "facilitator": address_of_key(self.a.facilitator),
            "zero": ZERO_ADDRESS,
        }[op["spender"]]
        self.send(self.a.payers[op["payer"]], self.token, approve_call(spender, op["amount"]))

    def transfer_from(self, op: dict) -> None:
        payer = address_of_key(self.a.payers[op["payer"]])
        data = encode_call("transferFrom(address,address,uint256)", payer, self.a.payees[1], op["value"])
        self.send(self.a.facilitator, self.token, data)

    def permit2612(
        self, payer_key: bytes, value: int, fault: str | None
    ) -> tuple[int, int, int, bytes, bytes]:
        """An EIP-2612 permit of ``value`` for Permit2: (value, deadline, v, r, s), spoilt by ``fault``."""
        owner = address_of_key(payer_key)
        now = self.evm.latest_timestamp
        nonce = eip2612_nonce(self.evm, self.token, owner) + (fault in ("wrong nonce", "stale nonce"))
        deadline = now - 1 if fault == "expired" else now + 600
        signer = self.a.payers["poor" if payer_key != self.a.payers["poor"] else "rich"]
        key = signer if fault == "other signer" else payer_key
        signature = sign_digest(
            key,
            eip2612_digest(self.evm.domain, Eip2612Permit(owner, PERMIT2_ADDRESS, value, nonce, deadline)),
        )
        v, r, s = signature[64], signature[:32], signature[32:64]
        if fault == "v 29":
            v = 29
        elif fault == "high-s":
            v, s = 55 - v, (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
        return value, deadline, v, r, s

    def permit(self, op: dict) -> None:
        key = self.a.payers[op["payer"]]
        value, deadline, v, r, s = self.permit2612(key, op["value"], op["fault"])
        data = encode_call(
            "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
            address_of_key(key),
            PERMIT2_ADDRESS,
            value,
            deadline,
            v,
            r,
            s,
        )
        self.send(self.a.facilitator, self.token, data)

    def settle(self, op: dict) -> None:
        key = self.a.payers[op["payer"]]
        payer = address_of_key(key)
        fault, now = op["fault"], self.evm.latest_timestamp
        sender = {"facilitator": self.a.facilitator, "other": self.a.other_facilitator, "payer": key}[
            op["sender"]
        ]
        permit = PermitTransfer(
            token=self.token,
            amount=op["permitted"],
            spender=UPTO_PERMIT2_PROXY_ADDRESS if op["upto"] else EXACT_PERMIT2_PROXY_ADDRESS,
            nonce=op["nonce"],
            deadline=now - 1 if fault == "expired" else now + 600,
            to=ZERO_ADDRESS if fault == "to zero" else self.a.payees[0],
            valid_after=now + 300 if fault == "early" else 0,
            facilitator=address_of_key(self.a.facilitator) if op["upto"] else None,
        )
        signer = (
            self.a.payers["poor" if op["payer"] != "poor" else "rich"] if fault == "other signer" else key
        )
        signature = sign_digest(signer, permit_witness_digest(self.evm.chain_id, permit))
        if fault == "v 29":
            signature = signature[:64] + b"\x1d"
        if fault == "bad witness":  # signed for one payee, settled to another
            permit = dataclasses.replace(permit, to=self.a.payees[1])
        owner = ZERO_ADDRESS if fault == "owner zero" else payer
        with_permit = None
        if op["permit"] is not None:
            value = permit.amount + (op["permit"] == "mismatch")
            with_permit = self.permit2612(
                key, value, None if op["permit"] in ("good", "mismatch") else op["permit"]
            )
        if op["upto"]:
            charge = permit.amount if op["charge"] is None else max(0, PRICE + op["charge"])
            if with_permit is None:
                data = upto_settle_call(permit, charge, owner, signature)
            else:
                data = upto_settle_with_permit_call(with_permit, permit, charge, owner, signature)
        elif with_permit is None:
            data = exact_settle_call(permit, owner, signature)
        else:
            data = exact_settle_with_permit_call(with_permit, permit, owner, signature)
        proxy = permit.spender
        self.simulate(sender, proxy, data)
        self.settles.append((sender, proxy, data))
        self.send(sender, proxy, data)

    def bundle(self, op: dict) -> None:
        """The gas-sponsored approval: ether for the approval's gas, the approval, the settlement."""
        payer_key, facilitator = self.a.payers["gasless"], self.a.facilitator
        payer = address_of_key(payer_key)
        approve = self.raw(payer_key, self.token, approve_call(PERMIT2_ADDRESS, op["amount"]), gas=60_000)
        needed = 60_000 * (2 * self.evm.base_fee + GWEI) - self.evm.eth_balance(payer)
        ether = self.raw(facilitator, payer, b"", value=max(0, needed - op["short"]), gas=21_000)
        permit = PermitTransfer(
            token=self.token,
            amount=PRICE,
            spender=EXACT_PERMIT2_PROXY_ADDRESS,
            nonce=op["nonce"],
            deadline=self.evm.latest_timestamp + 600,
            to=self.a.payees[1],
            valid_after=0,
        )
        signature = sign_digest(payer_key, permit_witness_digest(self.evm.chain_id, permit))
        settle = self.raw(
            facilitator, EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, payer, signature), offset=1
        )
        self.submit([ether, approve, settle])

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
            _note(f"receipt: {theirs.revert_reason or 'ok'}")
        self.sent = []
        self.compare_state()

    def compare_state(self) -> None:
        evm, ledger, token = self.evm, self.ledger, self.token
        payers = [address_of_key(k) for k in self.a.payers.values()]
        facilitators = [address_of_key(k) for k in (self.a.facilitator, self.a.other_facilitator)]
        everyone = [*payers, *facilitators, *self.a.payees]
        assert ledger.base_fee == evm.base_fee
        for chain in (ledger,):
            assert [chain.balance_of(a) for a in everyone] == [evm.balance_of(a) for a in everyone]
            assert [chain.eth_balance(a) for a in everyone] == [evm.eth_balance(a) for a in everyone]
        for payer in payers:
            for spender in (PERMIT2_ADDRESS, facilitators[0]):
                assert allowance(ledger, token, payer, spender) == allowance(evm, token, payer, spender)
            assert eip2612_nonce(ledger, token, payer) == eip2612_nonce(evm, token, payer)
            for word in (0, 1):
                read = encode_call("nonceBitmap(address,uint256)", payer, word)
                assert ledger.call(PERMIT2_ADDRESS, read).output == evm.call(PERMIT2_ADDRESS, read).output


def _run(bases, ops) -> None:
    evm, snapshot, base_ledger, accounts = bases
    evm.revert(snapshot)
    run = Lockstep(evm, copy.deepcopy(base_ledger), accounts)
    for op in ops:
        kind = op["op"]
        if kind == "replay":
            if run.settles:
                run.send(*run.settles[op["which"] % len(run.settles)])
        elif kind == "invalidate":
            run.send(
                run.a.payers[op["payer"]], PERMIT2_ADDRESS, invalidate_nonces_call(op["word"], op["mask"])
            )
        elif kind == "ether":
            payer = address_of_key(run.a.payers[op["payer"]])
            run.send(run.a.facilitator, payer, b"", value=op["value"])
        elif kind == "mine":
            run.mine()
        elif kind == "advance":
            for chain in run.chains:
                chain.set_time(max(chain.now, evm.latest_timestamp) + op["seconds"])
        else:
            getattr(run, {"permit": "permit", "transfer_from": "transfer_from"}.get(kind, kind))(op)
    run.mine()


def _settle(**changes) -> dict:
    op = {
        "op": "settle",
        "upto": False,
        "payer": "rich",
        "permitted": PRICE,
        "charge": 0,
        "nonce": 0,
        "fault": None,
        "sender": "facilitator",
        "permit": None,
    }
    return {**op, **changes}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
# the payer settles its own permit (its account is warm), then replays it
@example(ops=[_settle(sender="payer"), {"op": "replay", "which": 0}])
# a failing permit over an approval already given, then one over none
@example(ops=[_settle(upto=True, charge=-1, permit="other signer"), _settle(payer="poor", permit="expired")])
# a good permit and a settlement that then fails, for each proxy
@example(
    ops=[
        _settle(permit="good", fault="bad witness"),
        _settle(upto=True, nonce=1, permit="good", fault="early"),
    ]
)
# the sponsored approval: a bundle that pays, and one a wei short
@example(ops=[{"op": "bundle", "amount": PRICE, "short": False, "nonce": 0}, {"op": "mine"},
              {"op": "bundle", "amount": PRICE, "short": True, "nonce": 1}])  # fmt: skip
def test_both_backends_give_the_same_permit2_chain(bases, ops):
    _run(bases, ops)


@pytest.mark.soak
def test_soak_permit2_differential(bases):
    """``X402SIM_SOAK_STEPS`` examples (default 2,000) of the same machine."""
    soak(lambda ops: _run(bases, ops), operations)


def test_the_ledger_models_the_permit2_reads():
    """The views the mechanisms read answer on the ledger as on py-evm, at the canonical addresses."""
    evm, ledger = LocalChain(), LedgerChain()
    for chain in (evm, ledger):
        for address in (PERMIT2_ADDRESS, EXACT_PERMIT2_PROXY_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS):
            assert chain.code(address) == evm.code(address) != b""
    for to, data in (
        (PERMIT2_ADDRESS, encode_call("DOMAIN_SEPARATOR()")),
        (evm.usdc, encode_call("DOMAIN_SEPARATOR()")),
        (evm.usdc, encode_call("nonces(address)", evm.bank)),
        (evm.usdc, encode_call("allowance(address,address)", evm.bank, PERMIT2_ADDRESS)),
        (PERMIT2_ADDRESS, encode_call("nonceBitmap(address,uint256)", evm.bank, 0)),
    ):
        assert ledger.call(to, data).output == evm.call(to, data).output


def test_what_the_ledger_does_not_model_on_the_proxies_is_refused():
    ledger = LedgerChain()
    key = keccak(b"k")
    owner = address_of_key(key)
    ledger.fund(owner, eth=ETHER)
    permit = PermitTransfer(ledger.bank, 1, EXACT_PERMIT2_PROXY_ADDRESS, 0, ledger.now + 60, owner, 0)
    signature = sign_digest(key, permit_witness_digest(ledger.chain_id, permit))
    with pytest.raises(ChainError, match="models no token but"):
        ledger.transact(key, EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, owner, signature))
    permit = dataclasses.replace(permit, token=ledger.usdc)
    with pytest.raises(ChainError, match="65-byte signatures only"):
        ledger.transact(key, EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, owner, signature[:64]))
    with pytest.raises(ChainError, match="no owner with code"):
        ledger.transact(
            key, EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, PERMIT2_ADDRESS, signature)
        )
    with pytest.raises(ChainError, match="does not model Permit2 call"):
        ledger.transact(key, PERMIT2_ADDRESS, encode_call("DOMAIN_SEPARATOR()"))
    with pytest.raises(ChainError, match="no ether sent to the contract"):
        ledger.transact(
            key, EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, owner, signature), value=1
        )
    with pytest.raises(ChainError, match="does not model proxy call"):
        ledger.transact(key, UPTO_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, owner, signature))


def test_the_permit2_mechanisms_name_these_rules_and_the_ledger_runs_them():
    for mechanism in (EXACT_PERMIT2, UPTO_PERMIT2):
        assert mechanism.ledger_rules == "evm.permit2_rules"
        assert importlib.import_module(f"x402sim.{mechanism.ledger_rules}") is permit2_rules
    assert ledger_refusal([EXACT_EIP3009, EXACT_PERMIT2, UPTO_PERMIT2]) is None


def test_a_sponsored_bundle_settles_on_both_backends(bases):
    """Ether for the approval's gas, the gasless payer's approval and the settlement, in one block."""
    evm, snapshot, base_ledger, accounts = bases
    evm.revert(snapshot)
    run = Lockstep(evm, copy.deepcopy(base_ledger), accounts)
    payer = address_of_key(accounts.payers["gasless"])
    run.bundle({"amount": PRICE, "short": False, "nonce": 0})
    assert len(run.sent) == 3
    run.mine()
    for chain in run.chains:
        assert chain.balance_of(payer) == PAYERS["gasless"] - PRICE
        assert chain.balance_of(accounts.payees[1]) == PRICE
        assert allowance(chain, chain.usdc, payer, PERMIT2_ADDRESS) == 0
    run.bundle({"amount": PRICE, "short": True, "nonce": 1})
    assert run.sent == []  # refused by both, and nothing of it kept
    assert (evm.pending_count, run.ledger.pending_count) == (0, 0)
