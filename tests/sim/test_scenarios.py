"""Every shipped scenario runs, and shows what it exists to show (judged from the chain)."""

from pathlib import Path

import pytest

from x402sim.sim import load_scenario, run
from x402sim.sim.cli import parse_overrides

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _run(name: str, *overrides: str):
    return run(SCENARIOS / f"{name}.toml", overrides=parse_overrides(list(overrides)), plots=False).summary


def _healthy(s: dict) -> None:
    assert all(s["invariants"].values()), s["invariants"]


def test_every_shipped_scenario_is_documented_at_its_top_and_valid():
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        head = path.read_text().splitlines()[:3]
        assert head[0].startswith(f"# {path.stem}:"), path
        assert any("Look at" in line for line in path.read_text().splitlines()), path
        assert load_scenario(path).simulation.name == path.stem


def test_quickstart_pays_every_request():
    s = _run("quickstart")
    _healthy(s)
    assert s["requests"] > 300 and s["paid_requests"] == s["requests"] == s["settled_payments"]
    assert s["x402scan"]["sellers"] == 2 and s["x402scan"]["buyers"] == 20


def test_replay_attack_obtains_nothing():
    s = _run("replay-attack")
    _healthy(s)
    assert s["security"]["replays_attempted"] > 20 and s["security"]["replays_served"] == 0
    assert s["failures"]["nonce_used"] > 0 and s["failures"]["replay_guard"] > 0
    assert s["settled_payments"] == s["paid_requests"]


def test_toctou_race_serves_for_one_payment_only_when_both_defences_are_off():
    s = _run("toctou-race")  # shared dedupe answers, no replay guard
    _healthy(s)
    assert s["security"]["served_without_settlement"] > 0
    assert s["servers"]["shop"]["paid"] > s["facilitators"]["shop"]["settlements"]
    # across two facilitators the chain settles one copy and the other server refuses
    assert (
        s["facilitators"]["mall-a"]["failed_transactions"]
        + s["facilitators"]["mall-b"]["failed_transactions"]
        > 0
    )
    for defence in ("facilitators.shop.dedupe=refuse", "servers.shop.replay_guard={ttl=3600}"):
        guarded = _run("toctou-race", defence)
        _healthy(guarded)
        assert guarded["security"]["served_without_settlement"] == 0, defence
        assert guarded["servers"]["shop"]["paid"] == guarded["facilitators"]["shop"]["settlements"]
    off = _run("toctou-race", "facilitators.shop.dedupe=off")
    assert off["security"]["served_without_settlement"] == 0
    assert off["facilitators"]["shop"]["failed_transactions"] > 0  # the chain refused the copies, for gas


def test_facilitator_outage_costs_only_the_server_without_failover():
    s = _run("facilitator-outage")
    _healthy(s)
    assert s["servers"]["resilient"]["errors"] == 0 and s["servers"]["fragile"]["errors"] > 10
    assert s["events"]["failover_from_verify"] > 0
    assert s["facilitators"]["backup"]["settlements"] > 0


def test_slow_finality_charges_without_serving_until_the_timeout_covers_it():
    s = _run("slow-finality")
    _healthy(s)
    # The server asks once more after a pending answer (x402#3214): the second wait rescues only the
    # few settlements whose finality fell inside it; every other payer is charged and not served.
    assert s["settled_payments"] > 10 and s["paid_requests"] < s["settled_payments"] / 4
    unserved = s["settled_payments"] - s["paid_requests"]
    assert s["security"]["settled_without_delivery"] == unserved
    assert s["events"]["facilitator_settle_timeouts"] == s["settled_payments"] + unserved
    assert set(s["failures"]) == {"settlement_pending"}
    patient = _run("slow-finality", "facilitators.facilitator.settle_timeout=30")
    assert patient["security"]["settled_without_delivery"] == 0
    assert patient["paid_requests"] == patient["settled_payments"] > 10


def test_fee_economics_a_rollup_pays_for_a_tenth_of_a_cent_an_l1_does_not():
    rollup = _run("fee-economics", "simulation.duration=40")
    _healthy(rollup)
    # ~$0.00005: 64.6k gas at the 0.0002 gwei floor is ~$0.00004, the L1 data fee ~$0.00001
    assert rollup["gas"]["usd_per_settlement"] < 0.0001 < 0.001
    assert 0 < rollup["gas"]["l1_data_usd"] < rollup["gas"]["usd"]
    l1 = _run("fee-economics", "simulation.duration=40", 'chain.fee={model="l1", base_fee_gwei=20}')
    assert l1["gas"]["usd_per_settlement"] > 1.0 > 0.001  # a thousand times the request's price
    assert (
        l1["facilitators"]["facilitator"]["margin_usd"] < 0 < rollup["facilitators"]["facilitator"]["gas_usd"]
    )


def test_budget_governance_policy_keeps_money_from_the_bait_and_the_attacker():
    s = _run("budget-governance")
    _healthy(s)
    guarded, unguarded = s["agents"]["guarded"], s["agents"]["unguarded"]
    assert guarded["refused_by_policy"] > 0 and guarded["spend_usdc"] <= 5 * 1.0
    assert unguarded["spend_usdc"] > 10 * guarded["spend_usdc"]
    assert s["payees"]["attacker"] > 0  # the unguarded agents paid the redirect


def test_non_reverting_token_serves_replays_only_through_the_trusting_facilitator():
    s = _run("non-reverting-token")
    _healthy(s)
    assert s["security"]["replays_served"] > 0
    assert s["security"]["served_without_settlement"] == s["security"]["replays_served"]
    assert s["servers"]["trusting"]["paid"] > s["facilitators"]["trusting"]["settlements"]
    assert s["servers"]["careful"]["paid"] == s["facilitators"]["careful"]["settlements"]
    assert s["failures"]["transfer_event_mismatch"] > 0


@pytest.mark.parametrize("name", ["quickstart", "toctou-race"])
def test_shipped_scenarios_are_deterministic(name):
    from x402sim.sim.summary import stable

    assert stable(_run(name, "simulation.duration=20")) == stable(_run(name, "simulation.duration=20"))


def test_compromised_agent_governance_prevents_loss_and_nothing_lands_after_cut_off():
    s = _run("compromised-agent")
    _healthy(s)
    g = s["governance"]
    assert g["loss_prevented_usdc"] > 0 and g["attack_payments_after_cutoff_on_chain"] == 0
    assert 0 < g["honest_payments_blocked"]["share"] < 0.1
    assert g["approvals"]["granted"] > 0 and g["attacked_agents_not_cut_off"] == 0
