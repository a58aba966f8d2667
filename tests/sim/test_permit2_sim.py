"""Permit2 in the simulator (issue 23): ``upto`` charges, ``exact`` with Permit2, and the approvals a
wallet needs first (given, paid by itself, or sponsored by a facilitator's extension). Small versions
of the two shipped scenarios; what the summary says is checked against the chain (payees' balances,
Permit2's nonce bitmap, allowances, the facilitator's ether), and the schema's new keys are
refused where they cannot run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, allowance, nonce_used
from x402sim.evm.txsign import decode_signed
from x402sim.mechanisms import UPTO_PERMIT2
from x402sim.sim import ScenarioError, load_scenario
from x402sim.sim.build import FACILITATOR_ETH
from x402sim.sim.cli import parse_overrides
from x402sim.sim.records import RowWriter
from x402sim.sim.report import markdown_report
from x402sim.sim.run import run_world
from x402sim.sim.summary import RunFacts, build_summary
from x402sim.sim.world import World

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
UPTO = SCENARIOS / "upto-llm.toml"
COLD = SCENARIOS / "permit2-cold-start.toml"
SMALL_UPTO = [
    "simulation.duration=20",
    "simulation.warmup=0",
    "agents.metered-users.count=4",
    "agents.flat-users.count=4",
]
SMALL_COLD = [
    "simulation.duration=25",
    *(f"agents.{g}.count=2" for g in ("cold-eip2612", "cold-erc20", "self-approved", "approved")),
]


class Observed:
    """A ``World`` run to its end, with every facilitator transaction's receipt and raw bytes kept
    as blocks are mined (the world forgets them once folded)."""

    def __init__(self, path: Path, overrides: list[str]) -> None:
        self.scenario = load_scenario(path, parse_overrides(overrides))
        self.world = world = World(self.scenario, writer=RowWriter(None, keep=True))
        self.start_eth = {a.client.address: world.chain.eth_balance(a.client.address) for a in world.agents}
        facilitators = {f.role.address for f in world.facilitators.values()}
        self.sent: list[tuple] = []  # (receipt, decoded transaction) of each facilitator transaction
        chain, fold = world.chain, world.on_block

        def on_block(block):
            for h in block.tx_hashes:
                receipt = chain.receipt(h)
                if receipt is not None and receipt.sender in facilitators:
                    self.sent.append((receipt, decode_signed(world.raw_txs[h])))
            fold(block)

        world.on_block = on_block
        self.metrics = run_world(world)
        self.summary = build_summary(self.metrics, RunFacts.of(world))
        self.rows = world.writer.kept

    def paid(self, server: str) -> list:
        return [r for r in self.rows if r.outcome == "paid" and r.server == server]


@pytest.fixture(scope="module")
def upto():
    return Observed(UPTO, SMALL_UPTO)


@pytest.fixture(scope="module")
def cold():
    return Observed(COLD, SMALL_COLD)


def test_upto_payees_hold_the_charges_and_every_permit_is_spent(upto):
    world, chain, s = upto.world, upto.world.chain, upto.summary
    assert all(s["invariants"].values()), s["invariants"]
    metered, flat = upto.paid("metered"), upto.paid("flat")
    assert len(metered) > 10 and len(flat) > 10
    maximum = 8192
    # the payee holds exactly the charges the rows report, each at most the signed maximum
    assert chain.balance_of(world.payees["metered"]) == sum(r.amount for r in metered)
    assert all(0 <= r.amount <= maximum for r in metered)
    assert len({r.amount for r in metered}) > 3  # usage varies from request to request
    assert chain.balance_of(world.payees["flat"]) == 1500 * len(flat)
    for r in metered:
        assert nonce_used(chain, r.payer, int(r.nonce)), r  # Permit2 spent the permit
    section = s["mechanisms"]["upto"]["metered GET /complete"]
    assert section["paid"] == len(metered)
    assert section["authorized_usdc"] == maximum * len(metered) / 1e6
    assert section["charged_usdc"] == sum(r.amount for r in metered) / 1e6
    assert section["headroom_usdc"] == round(section["authorized_usdc"] - section["charged_usdc"], 6)
    at_mean = section["at_mean_price"]
    assert at_mean["overpaid_usdc"] == pytest.approx(at_mean["underpaid_usdc"], abs=2e-6)
    by = s["mechanisms"]["by_mechanism"]
    assert by["upto/permit2"]["settlements"] == len(metered) == by["upto/permit2"]["paid"]
    assert by["exact/eip3009"]["settlements"] == len(flat)
    gas = Counter()
    for receipt, tx in upto.sent:
        label = "exact/eip3009" if tx.to.lower() == chain.usdc.lower() else "upto/permit2"
        gas[label] += receipt.gas_used
    assert by["upto/permit2"]["gas_used"] == gas["upto/permit2"]
    assert by["exact/eip3009"]["gas_used"] == gas["exact/eip3009"]
    assert s["servers"]["metered"]["revenue_usdc"] == section["charged_usdc"]


def test_upto_report_has_the_mechanism_sections(upto):
    text = markdown_report(upto.summary, upto.scenario)
    assert "## Mechanisms" in text and "### upto: charged against authorized" in text


def test_a_charge_of_zero_sends_nothing_and_serves():
    small = [*SMALL_UPTO, "agents.flat-users.count=1", "simulation.duration=10"]
    zero = Observed(UPTO, [*small, "servers.metered.endpoints.0.usage.units=0"])
    chain, s = zero.world.chain, zero.summary
    metered = zero.paid("metered")
    assert metered and all(r.amount == 0 and not r.tx_hash for r in metered)
    assert chain.balance_of(zero.world.payees["metered"]) == 0
    assert not any(nonce_used(chain, r.payer, int(r.nonce)) for r in metered)  # nothing reached Permit2
    assert s["mechanisms"]["upto"]["metered GET /complete"]["zero_charges"] == len(metered)
    assert s["mechanisms"]["by_mechanism"]["upto/permit2"]["settlements"] == 0
    assert s["security"]["served_without_settlement"] == 0
    assert all(s["invariants"].values()), s["invariants"]


def test_cold_wallets_pay_through_each_extension_and_the_facilitator_bears_it(cold):
    world, chain, s = cold.world, cold.world.chain, cold.summary
    assert all(s["invariants"].values()), s["invariants"]
    assert s["outcomes"] == {"paid": s["requests"]} and s["requests"] > 10
    groups = {name: [a.client.address for a in members] for name, members in world.groups.items()}
    for address in groups["cold-eip2612"] + groups["cold-erc20"]:
        assert cold.start_eth[address] == 0  # cold: no ether at the start
    for address in groups["cold-eip2612"]:
        assert chain.eth_balance(address) == 0  # the permit rode in the facilitator's transaction
    paid = cold.paid("api")
    spent = Counter()
    for r in paid:
        spent[r.payer.lower()] += r.amount
    for name in ("cold-erc20", "self-approved", "approved"):
        for address in groups[name]:  # approved for the most; each payment drew its amount from it
            assert (
                allowance(chain, chain.usdc, address, PERMIT2_ADDRESS) + spent[address.lower()] == UINT256_MAX
            )
    assert chain.balance_of(world.payees["api"]) == 1000 * len(paid)
    assert all(nonce_used(chain, r.payer, int(r.nonce)) for r in paid)
    # every wei the facilitator lost went to gas or to payers, and the summary names the ether sent
    facilitator = world.facilitators["sponsor"].role.address
    fees = sum(receipt.fee for receipt, _ in cold.sent)
    sent = sum(tx.value for _, tx in cold.sent)
    assert FACILITATOR_ETH - chain.eth_balance(facilitator) == fees + sent
    assert sent > 0 and cold.metrics.mechanisms.ether_sent["sponsor"] == sent
    funded = {tx.to.lower() for _, tx in cold.sent if tx.value}
    assert funded == {a.lower() for a in groups["cold-erc20"]}
    m = s["mechanisms"]
    assert m["sponsoring"]["sponsor"]["funding_transactions"] == len(groups["cold-erc20"])
    approvals = m["approvals"]
    for mode, group in (
        ("self", "self-approved"),
        ("approved", "approved"),
        ("sponsored-erc20", "cold-erc20"),
    ):
        assert approvals[mode]["transactions"] == len(groups[group]), mode
    assert approvals["sponsored-eip2612"]["transactions"] == 0
    # the EIP-2612 wallets' payments each carried a permit for the amount: settleWithPermit every time
    eip2612_paid = sum(1 for r in paid if r.group == "cold-eip2612")
    assert m["by_mechanism"]["exact/permit2"]["settled_with_permit"] == eip2612_paid
    assert (
        m["by_mechanism"]["exact/permit2"]["gas_per_permit_settlement"]
        > m["by_mechanism"]["exact/permit2"]["gas_per_settlement"]
    )


def test_without_sponsoring_a_cold_wallet_is_refused_at_load_and_412_when_unapproved():
    with pytest.raises(ScenarioError) as err:
        load_scenario(COLD, parse_overrides([*SMALL_COLD, "facilitators.sponsor.sponsoring=[]"]))
    assert "agents[0].approval" in str(err.value) and "eip2612GasSponsoring" in str(err.value)


# -- the schema --------------------------------------------------------------------------------------


def _scenario(endpoint: dict, group: dict | None = None, backend: str = "evm") -> dict:
    return {
        "simulation": {"name": "t", "duration": 10},
        "chain": {"backend": backend},
        "facilitators": [{"name": "f"}],
        "servers": [
            {"name": "s", "facilitators": ["f"], "endpoints": [{"path": "/x", "price": "0.01", **endpoint}]}
        ],
        "agents": [{"name": "a", **(group or {})}],
    }


USAGE = {"units": {"kind": "uniform", "low": 0, "high": 100}, "unit_price": "0.0001"}


@settings(max_examples=32, deadline=None)
@given(
    scheme=st.sampled_from([None, "exact", "upto", "bogus"]),
    method=st.sampled_from([None, "eip3009", "permit2", "erc20"]),
    usage=st.booleans(),
)
def test_endpoint_scheme_transfer_method_and_usage(scheme, method, usage):
    endpoint = {k: v for k, v in (("scheme", scheme), ("transfer_method", method)) if v is not None}
    if usage:
        endpoint["usage"] = USAGE
    effective = scheme or "exact"
    valid = (
        scheme != "bogus"
        and method != "erc20"
        and not (effective == "upto" and method == "eip3009")
        and not (effective == "exact" and usage)
    )
    if valid:
        s = load_scenario(_scenario(endpoint))
        e = s.servers[0].endpoints[0]
        assert e.method_of_transfer == (method or ("permit2" if effective == "upto" else "eip3009"))
        assert s.uses_permit2() == (e.method_of_transfer == "permit2")
        return
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario(endpoint))
    assert err.value.where.startswith("scenario: servers[0].endpoints[0]")


@settings(max_examples=15, deadline=None)
@given(approval=st.text(min_size=1, max_size=20))
def test_an_unknown_approval_is_named(approval):
    group = {"approval": approval}
    endpoint = {"transfer_method": "permit2"}
    if approval in ("approved", "self"):
        assert load_scenario(_scenario(endpoint, group)).agents[0].approval == approval
        return
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario(endpoint, group))
    assert err.value.where == "scenario: agents[0].approval"


def test_the_ledger_refuses_only_a_mechanism_the_endpoints_use_and_it_has_no_rules_for(monkeypatch):
    for endpoint in ({}, {"transfer_method": "permit2"}, {"scheme": "upto"}):
        load_scenario(_scenario(endpoint, backend="ledger"))  # the ledger models all three
    monkeypatch.setattr(UPTO_PERMIT2, "ledger_rules", None)
    load_scenario(_scenario({"transfer_method": "permit2"}, backend="ledger"))  # upto unused: fine
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario({"scheme": "upto"}, backend="ledger"))
    assert err.value.where == "scenario: chain.backend" and "upto/eip155/permit2" in err.value.problem


def test_forged_behaviours_are_kept_off_permit2_endpoints():
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario({"transfer_method": "permit2"}, {"behaviour": "underpay"}))
    assert err.value.where == "scenario: agents[0].behaviour" and "Permit2" in err.value.problem
    load_scenario(_scenario({}, {"behaviour": "underpay"}))


def test_upto_needs_the_authorization_order_and_a_permit2_target_for_an_approval():
    data = _scenario({"scheme": "upto", "usage": USAGE})
    data["servers"][0]["order"] = "upfront"
    with pytest.raises(ScenarioError) as err:
        load_scenario(data)
    assert err.value.where == "scenario: servers[0].endpoints[0].scheme"
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario({}, {"approval": "self"}))
    assert err.value.where == "scenario: agents[0].approval"
