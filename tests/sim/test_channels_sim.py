"""batch-settlement in the simulator (issue 24, part 6): small worlds whose channel figures are
checked against the chain (the receivers' balances against the Settled events, the contract's escrow
against deposits less what left it, each payer's wallet against its deposits and refunds), the
withdraw race's loss against what the chain claimed, the channel adversaries, and the scenario keys'
errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from x402sim.evm.channels import BATCH_SETTLEMENT_ADDRESS, read_channel
from x402sim.sim import ScenarioError, load_scenario
from x402sim.sim.cli import parse_overrides
from x402sim.sim.engine import run_world
from x402sim.sim.records import RowWriter
from x402sim.sim.report import markdown_report
from x402sim.sim.summary import RunFacts, build_summary
from x402sim.sim.world import World

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
VERSUS = SCENARIOS / "channels-vs-exact.toml"
RACE = SCENARIOS / "channel-withdraw-race.toml"
SMALL_VERSUS = [
    "simulation.duration=150",
    "simulation.drain=60",
    "agents.exact-buyers.count=3",
    "agents.channel-buyers.count=3",
    "agents.exact-buyers.stop=120",
    "agents.channel-buyers.stop=120",
]
SMALL_RACE = [
    "agents.racers.count=1",
    "agents.honest.count=1",
    "agents.racers.arrivals.rate=0.1",
    "agents.honest.arrivals.rate=0.02",
    "agents.racers.behaviour.at=120",
    "servers.slow-claims.endpoints.0.claim_interval=1200",
    "servers.slow-claims.endpoints.0.settle_interval=1200",
    "simulation.duration=1300",
    "agents.honest.stop=1100",
]


class Ran:
    """A ``World`` run to its end, with its metrics and summary."""

    def __init__(self, scenario) -> None:
        self.scenario = scenario
        self.world = world = World(scenario, writer=RowWriter(None, keep=True))
        self.funding = {a.client.address: a.group.funding for a in world.agents}
        self.metrics = run_world(world)
        self.summary = build_summary(self.metrics, RunFacts.of(world))
        self.rows = world.writer.kept or []
        self.chain = world.chain

    def payee(self, server: str) -> str:
        return self.world.servers[server].role.pay_to


@pytest.fixture(scope="module")
def versus() -> Ran:
    return Ran(load_scenario(VERSUS, parse_overrides(SMALL_VERSUS)))


@pytest.fixture(scope="module")
def race() -> Ran:
    return Ran(load_scenario(RACE, parse_overrides(SMALL_RACE)))


def test_receivers_are_paid_what_was_claimed_and_settled(versus: Ran):
    cm, chain = versus.metrics.channels, versus.chain
    received = chain.balance_of(versus.payee("channels"))
    assert cm.paid > 0 and received > 0
    assert received == cm.amounts["settle"] == cm.amounts["claim"]  # the refunds claimed the rest
    assert versus.summary["payees"]["channels"] == received / 1e6
    assert cm.served == sum(r.amount for r in versus.rows if r.outcome == "paid" and r.server == "channels")
    assert cm.served == received  # every voucher served was claimed, then settled
    assert versus.summary["invariants"] == dict.fromkeys(versus.summary["invariants"], True)


def test_escrow_and_wallets_add_up_on_chain(versus: Ran):
    cm, chain = versus.metrics.channels, versus.chain
    escrow = (
        cm.amounts["deposit"] - cm.amounts["settle"] - cm.amounts["refund"] - cm.amounts["withdraw_finalize"]
    )
    assert chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == escrow == cm.locked == 0  # all refunded at "done"
    for agent in versus.world.groups["channel-buyers"]:
        address = agent.client.address
        spent = sum(r.amount for r in versus.rows if r.payer == address and r.outcome == "paid")
        assert chain.balance_of(address) == versus.funding[address] - spent
        for record in agent.client.channels.records():
            state = read_channel(chain, record.channel_id)
            assert state.balance == state.total_claimed  # refunded: nothing of the payer's left


def test_channels_cost_less_gas_per_paid_request_than_exact(versus: Ran):
    side = versus.summary["channels-vs-exact"]
    exact, channels = side["exact/eip3009"], side["batch-settlement"]
    assert exact["transactions_per_paid_request"] == 1.0
    assert channels["transactions_per_paid_request"] < 0.5
    assert channels["gas_per_paid_request"] < exact["gas_per_paid_request"]
    assert channels["gas_saving"]["exact/eip3009"] > 0
    c = versus.summary["channels"]
    assert c["transactions"]["deposit"] == c["deposits"]["count"] >= 3
    assert c["refunds"]["count"] == 3
    assert c["deposits"]["cost_to_payers_usd"] > 0


def test_exposure_is_never_negative_and_unclaimed_within_unsettled(versus: Ran):
    samples = versus.metrics.channels.samples
    assert samples
    assert all(0 <= unclaimed <= unsettled for _, unclaimed, unsettled in samples)
    assert max(s[1] for s in samples) > 0  # vouchers did wait for their claim
    series = versus.summary["channels"]["exposure"]["series"]
    assert 0 < len(series) <= 240


def test_report_has_the_channel_sections(versus: Ran):
    text = markdown_report(versus.summary, versus.scenario)
    assert "## Channels (batch-settlement)" in text
    assert "### Channels against per-request settlement" in text


def test_withdraw_race_takes_what_the_slow_receiver_had_not_claimed(race: Ran):
    by_server = race.summary["channels"]["by_server"]
    fast, slow = by_server["fast-claims"], by_server["slow-claims"]
    assert fast["race_served_usdc"] > 0 and fast["race_lost_usdc"] == 0
    assert slow["race_served_usdc"] > 0 and slow["race_lost_usdc"] == slow["race_served_usdc"]
    # on chain: the racer's channel with the slow receiver was never claimed, and its escrow went home
    racer = race.world.groups["racers"][0]
    lost = 0
    for record in racer.client.channels.records():
        state = read_channel(race.chain, record.channel_id)
        book = race.world.servers[
            "slow-claims" if record.config.receiver == race.payee("slow-claims") else "fast-claims"
        ].role.channels.get(record.channel_id)
        assert book is not None
        if record.config.receiver == race.payee("slow-claims"):
            assert state.total_claimed == 0 and state.balance == 0
            lost += book.charged - state.total_claimed
        else:
            assert state.total_claimed == book.charged
    assert lost / 1e6 == slow["race_lost_usdc"] == race.summary["channels"]["withdraw_race_lost_usdc"]
    w = race.summary["channels"]["withdrawals"]
    assert w["initiated"] == w["finalized"] == 2
    assert race.summary["invariants"]["supply_conserved"]


def test_the_race_ends_the_same_on_the_ledger_backend(race: Ran):
    ledger = Ran(load_scenario(RACE, parse_overrides([*SMALL_RACE, "chain.backend=ledger"])))
    assert ledger.summary["channels"]["by_server"] == race.summary["channels"]["by_server"]
    assert ledger.summary["channels"]["transactions"] == race.summary["channels"]["transactions"]


def _world(**groups) -> dict:
    return {
        "simulation": {"name": "tiny", "duration": 240, "seed": 2, "drain": 30},
        "facilitators": [{"name": "f"}],
        "servers": [
            {
                "name": "a",
                "facilitators": ["f"],
                "endpoints": [
                    {"path": "/x", "price": "0.001", "scheme": "batch-settlement", "withdraw_delay": 3600}
                ],
            },
            {
                "name": "b",
                "facilitators": ["f"],
                "endpoints": [{"path": "/x", "price": "0.001", "scheme": "batch-settlement"}],
            },
        ],
        "agents": [
            {"name": name, "count": 1, "arrivals": {"kind": "poisson", "rate": 0.1}, **spec}
            for name, spec in groups.items()
        ],
    }


def test_channel_adversaries_are_refused_and_the_chain_pays_no_more_than_deposited():
    ran = Ran(
        load_scenario(
            _world(
                reuse={"targets": ["a", "b"], "deposit": "0.01", "behaviour": "channel-reuse"},
                stingy={"targets": ["b"], "deposit": "0.01", "behaviour": "never-top-up"},
                picky={"targets": ["a", "b"], "max_withdraw_delay": 900},
            )
        )
    )
    reasons = {(r.group, r.outcome, r.reason) for r in ran.rows}
    assert ("reuse", "rejected", "invalid_batch_settlement_evm_receiver_mismatch") in reasons
    assert ("stingy", "rejected", "invalid_batch_settlement_evm_cumulative_exceeds_balance") in reasons
    picky = [r for r in ran.rows if r.group == "picky"]
    assert all(r.outcome == "refused" for r in picky if r.server == "a")
    assert any(r.outcome == "paid" for r in picky if r.server == "b")
    stingy = ran.world.groups["stingy"][0]
    (record,) = stingy.client.channels.records()
    assert read_channel(ran.chain, record.channel_id).balance == 10000  # one deposit, never topped up
    assert sum(r.amount for r in ran.rows if r.group == "stingy" and r.outcome == "paid") == 10000


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"servers.b.endpoints.0.scheme": "exact", "agents.g.targets": ["a"]}, None),
        ({"servers.a.endpoints.0.scheme": "exact"}, "servers[0].endpoints[0].withdraw_delay"),
        ({"chain.backend": "ledger"}, None),  # the ledger has batch-settlement rules (evm.batch_rules)
        ({"agents.g.behaviour": "underpay"}, "agents[0].behaviour"),
        ({"agents.g.behaviour": "channel-reuse", "agents.g.targets": ["b"]}, "agents[0].behaviour"),
        ({"agents.g.refund": {"kind": "idle"}}, "agents[0].refund"),
    ],
)
def test_channel_keys_are_checked_naming_the_key(overrides, where):
    data = _world(g={"targets": ["a", "b"], "deposit": "0.01"})
    if where is None:
        load_scenario(data, overrides)
        return
    with pytest.raises(ScenarioError) as err:
        load_scenario(data, overrides)
    assert where in str(err.value)


def test_channel_group_keys_need_a_channel_target():
    data = _world(g={"targets": ["a"], "deposit": "0.01"})
    data["servers"][0]["endpoints"][0] = {"path": "/x", "price": "0.001"}
    with pytest.raises(ScenarioError, match=r"agents\[0\]\.deposit"):
        load_scenario(data)
    data["agents"][0] = {"name": "g", "targets": ["a"], "behaviour": {"kind": "withdraw-race", "at": 10}}
    with pytest.raises(ScenarioError, match=r"agents\[0\]\.behaviour"):
        load_scenario(data)
