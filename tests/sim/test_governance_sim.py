"""Governance in the simulator: governors judge the agents' payments in virtual time, compromised
behaviours do what they say, and what the summary claims is checked against the chain and the
audit log."""

from __future__ import annotations

import importlib
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.governance import verify
from x402sim.sim import ScenarioError, load_scenario
from x402sim.sim.cli import parse_overrides
from x402sim.sim.metrics import RunMetrics
from x402sim.sim.records import RowWriter
from x402sim.sim.shards import run_shard
from x402sim.sim.summary import RunFacts, build_summary, stable, summary_from_shards
from x402sim.sim.world import World

run_module = importlib.import_module("x402sim.sim.run")
run, run_world = run_module.run, run_module.run_world
COMPROMISED = Path(__file__).resolve().parents[2] / "scenarios" / "compromised-agent.toml"
HORIZON = 30  # virtual seconds by which what was in flight at a freeze has landed (or failed)


# -- a small world, written as a dict -------------------------------------------------------------


def small(
    agents: list[dict], policies: list[dict] | None = None, duration: float = 200, seed: int = 3
) -> dict:
    """One facilitator, a shop, a price-bait server (x30 at t=100, attack-bound) and an attacker."""
    return {
        "simulation": {"name": "gov", "seed": seed, "duration": duration},
        "chain": {"backend": "ledger"},
        "facilitators": [{"name": "fac"}],
        "servers": [
            {
                "name": "shop",
                "facilitators": ["fac"],
                "endpoints": [{"path": "/a", "price": "0.01"}, {"path": "/b", "price": "0.02"}],
            },
            {
                "name": "bait",
                "facilitators": ["fac"],
                "endpoints": [
                    {"path": "/q", "price": "0.01", "changes": [{"at": 100, "price": "0.3", "attack": True}]}
                ],
            },
            {
                "name": "evil",
                "pay_to": "attacker",
                "facilitators": ["fac"],
                "endpoints": [{"path": "/x", "price": "0.05"}],
            },
        ],
        "agents": agents,
        "policies": policies or [],
    }


def group(name: str = "g", count: int = 2, behaviour=None, rate: float = 0.1, **extra) -> dict:
    out = {
        "name": name,
        "count": count,
        "arrivals": {"kind": "poisson", "rate": rate},
        "targets": ["shop", "bait"],
        **extra,
    }
    if behaviour is not None:
        out["behaviour"] = behaviour
    return out


POLICY = {
    "name": "p",
    "rules": [{"kind": "request-cap", "max": "0.1"}],
    "triggers": [
        {"name": "velocity", "kind": "velocity", "max": "0.2", "window": 60},
        {"name": "new-payee", "kind": "new-payee", "above": "0.04", "known": ["shop", "bait"]},
        {"name": "burst", "kind": "endpoint-burst", "max_requests": 6, "window": 20},
    ],
}


def observed(scenario, audit: Path | None = None, governance: bool = True):
    """Run ``scenario`` as one ``World``, watching the chain: every token transfer as its block is
    mined (before the world forgets the receipt), and each frozen agent's balance ``HORIZON``
    seconds after its freeze. Returns (world, metrics, transfers, balances after freeze)."""
    world = World(scenario, writer=RowWriter(None, keep=True), governance=governance, audit=audit)
    transfers: list[dict] = []
    after_freeze: dict[str, int] = {}
    fold = world.on_block

    def on_block(block):
        for h in block.tx_hashes:
            receipt = world.chain.receipt(h)
            for t in receipt.transfers() if receipt is not None else ():
                if t.token == world.chain.usdc and int(t.from_, 16):
                    transfers.append(
                        {
                            "from": t.from_,
                            "to": t.to,
                            "value": t.value,
                            "time": block.timestamp,
                            "tx": "0x" + h.hex(),
                        }
                    )
        fold(block)

    def watch():
        addresses = {a.name: a.client.address for a in world.agents}
        while True:
            yield world.env.timeout(1)
            for agent, (_, t, _) in list(world.run_metrics.governance.frozen.items()):
                if agent not in after_freeze and world.env.now >= t + HORIZON:
                    after_freeze[agent] = world.chain.balance_of(addresses[agent])

    world.on_block = on_block
    world.env.process(watch())
    metrics = run_world(world)
    return world, metrics, transfers, after_freeze


# -- the shipped scenario ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compromised(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "compromised"
    return run(COMPROMISED, out=out, plots=False)


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    world, metrics, transfers, after_freeze = observed(load_scenario(COMPROMISED), audit)
    return world, metrics, transfers, after_freeze, verify(audit)


def test_compromised_agent_prevents_loss_at_a_small_visible_cost(compromised):
    s = compromised.summary
    g = s["governance"]
    assert all(s["invariants"].values()), s["invariants"]
    spend = g["attack_spend_usdc"]
    assert g["loss_prevented_usdc"] > 0
    assert g["loss_prevented_usdc"] == pytest.approx(spend["without_governance"] - spend["with_governance"])
    assert spend["without_governance"] > 4 * spend["with_governance"]
    assert g["honest_payments_blocked"]["count"] > 0 and 0 < g["honest_payments_blocked"]["share"] < 0.1
    assert g["attack_payments_after_cutoff_on_chain"] == 0 and g["payments_after_freeze_on_chain"] == 0
    assert (
        g["attacked_agents"] == 8 and g["time_to_cutoff_s"]["count"] == 8 - g["attacked_agents_not_cut_off"]
    )
    assert g["approvals"]["requested"] == g["approvals"]["granted"] + g["approvals"]["refused"] > 0
    assert g["approvals"]["granted"] > 0
    # every rule the brief asks of the scenario shows up somewhere: blocked spend, freezes, approvals
    rules = g["spend_blocked_usdc"]["fleet"]
    assert {"approval", "frozen", "new-payee"} <= set(rules) and g["freezes_by_trigger"]
    assert {"endpoint-burst", "new-payee", "failure-streak"} <= set(g["freezes_by_trigger"])
    assert s["agents"]["runaway"]["denied"] > 0 and s["failures"]["governance"] > 0
    # the audit log is written with the run, and its head is the summary's
    audit = verify(compromised.out / "audit.jsonl", head=g["audit"]["head"])
    assert audit.ok and len(audit.entries) == g["audit"]["entries"]
    report = (compromised.out / "report.md").read_text()
    assert "## Governance" in report and "Loss prevented" in report


def test_no_payment_signed_after_a_freeze_lands_on_chain(watched):
    """From the chain and the audit log alone: every transfer out of a governed agent is a payment
    its governor allowed (a settled outcome naming the transaction), allowed before any freeze of
    that agent."""
    world, _, transfers, _, audit = watched
    assert audit.ok
    agents = {a.client.address: a.name for a in world.agents}
    freeze_seq, allowed_seq, ticket_of_tx = {}, {}, {}
    for e in audit.entries:
        key = (e["agent"], e.get("ticket"))
        if e["event"] == "freeze":
            freeze_seq.setdefault(e["agent"], e["seq"])
        elif e["event"] in ("decision", "approval") and e["decision"] == "allow":
            allowed_seq[key] = e["seq"]
        elif e["event"] == "outcome" and e["outcome"] == "settled":
            ticket_of_tx[e["tx"].lower()] = key
    paid = [t for t in transfers if t["from"] in agents]
    assert len(paid) > 1000 and freeze_seq
    for t in paid:
        agent, ticket = ticket_of_tx[t["tx"].lower()]
        assert agent == agents[t["from"]]
        assert allowed_seq[(agent, ticket)] < freeze_seq.get(agent, float("inf")), t


def test_a_frozen_agent_pays_nothing(watched):
    """Once what was in flight at its freeze has landed, a frozen agent's balance never moves."""
    world, metrics, transfers, after_freeze, _ = watched
    frozen = metrics.governance.frozen
    assert len(after_freeze) >= 8 and set(after_freeze) <= set(frozen)
    for agent in world.agents:
        if agent.name in after_freeze:
            assert world.chain.balance_of(agent.client.address) == after_freeze[agent.name], agent.name
            freeze = world.start_time + frozen[agent.name][1]
            late = [
                t for t in transfers if t["from"] == agent.client.address and t["time"] > freeze + HORIZON
            ]
            assert late == [], agent.name
    summary = build_summary(metrics, RunFacts.of(world))
    assert summary["governance"]["payments_after_freeze_on_chain"] == 0
    assert not any(row.after_freeze for row in world.writer.kept)


def test_attack_spend_is_what_attack_bound_payments_moved_on_chain(watched):
    world, metrics, transfers, _, _ = watched
    rows = {row.tx_hash.lower(): row for row in world.writer.kept if row.tx_hash}
    attack = [t for t in transfers if rows[t["tx"].lower()].attack]
    assert metrics.governance.attack["settled"] == len(attack) > 0
    assert metrics.governance.attack["settled_amount"] == sum(t["value"] for t in attack)
    attacker = world.payees["attacker"]
    assert {t["to"] for t in transfers if t["to"] == attacker} <= {t["to"] for t in attack}


# -- schema --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "where", "problem"),
    [
        (
            'agents.research.policy="fleeet"',
            "agents[0].policy",
            "no policy named 'fleeet' (did you mean 'fleet'?)",
        ),
        ('agents.research.policy={bugdet="1"}', "agents[0].policy.bugdet", "did you mean 'budget'?"),
        (
            'agents.drain.behaviour={kind="slow-drain", at=240, target="attacker/tips"}',
            "agents[4].behaviour.target",
            "no endpoint named 'attacker/tips'",
        ),
        (
            'agents.drain.behaviour={kind="slow-drain", at=240, target="attacker/tip", evry=3}',
            "agents[4].behaviour.evry",
            "did you mean 'every'?",
        ),
        ('agents.runaway.behaviour={kind="runaway"}', "agents[3].behaviour.at", "required key is missing"),
        ('agents.runaway.behaviour={kind="runaway", at=900}', "agents[3].behaviour.at", "no attack"),
        ("agents.injected.behaviour.share=0", "agents[2].behaviour.share", "greater than 0"),
        ("agents.research.approver={grant=1.5}", "agents[0].approver.grant", "less than or equal to 1"),
        ('agents.research.behaviour="tamper"', "agents[0].policy", "signs without the reference client"),
        (
            'policies.fleet.rules.ops-vendors.applies_to="project:opps"',
            "policies[0].rules[2].applies_to",
            "'ops'",
        ),
        ('policies.fleet.rules.cap.applies_to="agent:ops-8"', "policies[0].rules[0].applies_to", "no agent"),
        ('policies.fleet.rules.ops-vendors.payees=["wether"]', "policies[0].rules[2].payees[0]", "'weather'"),
        ('policies.fleet.triggers.new-payee.known=["atacker"]', "policies[0].triggers[1].known[0]", "payee"),
        ("policies.fleet.triggers.velocity.max=0.5", "policies[0].triggers[0].max", "decimal strings"),
        (
            "servers.quotes.endpoints.0.changes.0.atack=true",
            "servers[3].endpoints[0].changes[0].atack",
            "attack",
        ),
    ],
)
def test_schema_errors_name_the_key_path(override, where, problem):
    with pytest.raises(ScenarioError) as info:
        load_scenario(COMPROMISED, parse_overrides([override]))
    assert info.value.where == f"{COMPROMISED}: {where}"
    assert problem in info.value.problem


def test_a_policy_scoped_to_a_group_that_does_not_use_it_is_refused():
    scenario = small(
        [group("a", policy="p"), group("b")],
        [{**POLICY, "rules": [{"kind": "request-cap", "max": "0.1", "applies_to": "project:b"}]}],
    )
    with pytest.raises(ScenarioError, match=r"policies\[0\]\.rules\[0\]\.applies_to: group 'b' does not use"):
        load_scenario(scenario)


def test_the_inline_spend_policy_keeps_working():
    scenario = load_scenario(small([group(policy={"max_price": "0.015"})]))
    assert scenario.agents[0].spend_policy.max_price == 15_000 and scenario.agents[0].policy_name is None
    s = run(scenario, plots=False, keep_rows=False).summary
    assert s["governance"]["governed"] is False and s["agents"]["g"]["refused_by_policy"] > 0
    assert "denied" not in s["agents"]["g"] and "governance" not in s["failures"]
    budget = run("scenarios/budget-governance.toml", plots=False, keep_rows=False).summary
    assert "governance" not in budget and budget["agents"]["guarded"]["refused_by_policy"] > 0


# -- the behaviours, without governance (what they do) ---------------------------------------------------


def _rows(agents, duration=200, seed=3, policies=None, governance=False):
    result = run(small(agents, policies, duration, seed), plots=False, governance=governance)
    return result.rows, result.summary


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.floats(20, 150), share=st.sampled_from([0.25, 0.5, 1.0]), seed=st.integers(0, 5))
def test_a_prompt_injected_agent_pays_the_attacker_from_at_on(at, share, seed):
    behaviour = {"kind": "prompt-injected", "at": at, "target": "evil/x", "share": share}
    rows, s = _rows([group(count=3, rate=0.2, behaviour=behaviour)], seed=seed)
    attack = [r for r in rows if r.attack and r.server == "evil"]
    assert all(r.sent >= at for r in attack) and all(not r.attack for r in rows if r.server == "shop")
    assert not [r for r in rows if r.server == "evil" and not r.attack]
    after = [r for r in rows if (r.sent >= at and r.server != "bait") or r.server == "evil"]
    if share == 1.0:
        assert after and all(r.server == "evil" for r in after)
    else:
        assert 0 < len(attack) < len(after)
    every_attack = [r for r in rows if r.attack]  # the bait's too, from t=100
    assert s["governance"]["attack_payments_settled"]["without_governance"] == sum(
        r.outcome == "paid" for r in every_attack
    )


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.floats(10, 120), interval=st.sampled_from([0.25, 0.5, 2.0]))
def test_a_runaway_agent_calls_one_endpoint_back_to_back(at, interval):
    behaviour = {"kind": "runaway", "at": at, "interval": interval}  # default target: its first, shop/a
    rows, _ = _rows([group(count=1, rate=0.01, behaviour=behaviour)])
    loop = sorted((r for r in rows if r.attack), key=lambda r: r.sent)
    assert loop[0].sent == pytest.approx(at) and len(loop) > 5
    assert {(r.server, r.endpoint) for r in loop} == {("shop", "GET /a")}
    for previous, following in itertools.pairwise(loop):
        assert following.sent == pytest.approx(previous.done + interval)
    assert loop[-1].sent < 200


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.floats(0, 100), every=st.floats(5, 40))
def test_a_slow_drain_adds_one_request_every_period(at, every):
    behaviour = {"kind": "slow-drain", "at": at, "target": "evil/x", "every": every}
    rows, _ = _rows([group(count=2, rate=0.05, behaviour=behaviour)])
    for agent in ("g-0", "g-1"):
        sent = sorted(r.sent for r in rows if r.attack and r.agent == agent)
        expected = [at + k * every for k in range(len(sent))]
        assert sent == pytest.approx(expected) and at + len(sent) * every >= 200 > sent[-1]
    assert all(r.server == "evil" and r.outcome == "paid" for r in rows if r.attack)
    # its own traffic goes on as before: honest requests to its targets after at
    assert any(not r.attack and r.sent > at for r in rows)


def test_price_bait_payments_are_attack_bound_after_the_change():
    rows, s = _rows([group(count=4, rate=0.2)])
    bait = [r for r in rows if r.server == "bait"]
    before = [r for r in bait if r.done < 100]
    after = [r for r in bait if r.sent > 100.5]
    assert before and after and not any(r.attack for r in before) and all(r.attack for r in after)
    assert all(r.amount == 300_000 for r in after if r.outcome == "paid")
    assert not any(r.attack for r in rows if r.server == "shop")
    spent = sum(r.amount for r in bait if r.attack and r.outcome == "paid")
    assert s["governance"]["attack_spend_usdc"]["without_governance"] == spent / 1e6 > 0
    assert s["governance"]["governed"] is False and s["governance"]["loss_prevented_usdc"] is None


# -- governance, over an input space -------------------------------------------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["prompt-injected", "runaway", "slow-drain"]),
    velocity=st.sampled_from(["0.05", "0.1", "0.2", "0.5"]),
    burst=st.integers(2, 10),
    streak=st.integers(1, 4),
    seed=st.integers(0, 20),
)
def test_frozen_agents_pay_nothing_whatever_the_thresholds(kind, velocity, burst, streak, seed):
    behaviour = {"kind": kind, "at": 60, "target": "evil/x"}
    if kind == "slow-drain":
        behaviour["every"] = 10
    policy = {
        **POLICY,
        "rules": [*POLICY["rules"], {"kind": "approval", "above": "0.04"}],
        "triggers": [
            {"kind": "velocity", "max": velocity, "window": 60},
            {"kind": "endpoint-burst", "max_requests": burst, "window": 20},
            {"kind": "failure-streak", "count": streak},
        ],
    }
    approver = {"grant": 1.0, "attack_grant": 0.5, "delay": 5}
    agents = [
        group("honest", 2, policy="p", approver=approver),
        group("bad", 2, behaviour=behaviour, policy="p", approver=approver),
    ]
    world, metrics, transfers, after_freeze = observed(load_scenario(small(agents, [policy], 160, seed)))
    frozen = metrics.governance.frozen
    for agent in world.agents:
        if agent.name in frozen:
            freeze = world.start_time + frozen[agent.name][1]
            late = [
                t for t in transfers if t["from"] == agent.client.address and t["time"] > freeze + HORIZON
            ]
            assert late == []
        if agent.name in after_freeze:
            assert world.chain.balance_of(agent.client.address) == after_freeze[agent.name]
    g = build_summary(metrics, RunFacts.of(world))["governance"]
    assert g["payments_after_freeze_on_chain"] == 0 == g["attack_payments_after_cutoff_on_chain"]
    assert g["time_to_cutoff_s"]["count"] + g["attacked_agents_not_cut_off"] == g["attacked_agents"] == 2
    assert all(
        r.outcome != "paid" for r in world.writer.kept if r.agent in frozen and r.sent > frozen[r.agent][1]
    )


def test_the_approver_answers_in_virtual_time():
    policy = {"name": "p", "rules": [{"kind": "approval", "above": "0.015"}]}
    approver = {"grant": 0.5, "attack_grant": 0.0, "delay": 30}
    rows, s = _rows(
        [group(count=3, rate=0.1, policy="p", approver=approver)], policies=[policy], governance=True
    )
    asked = [r for r in rows if r.endpoint == "GET /b" or (r.server == "bait" and r.attack)]
    assert asked
    assert all(r.done - r.sent >= 30 for r in asked if r.outcome in ("paid", "denied"))
    approvals = s["governance"]["approvals"]
    assert approvals["requested"] == approvals["granted"] + approvals["refused"] and approvals["granted"] > 0
    assert not any(r.outcome == "paid" for r in rows if r.attack)  # attack_grant = 0: none granted
    assert all(r.reason.endswith("refused by simulated approver") for r in rows if r.outcome == "denied")


# -- runs: determinism, counterfactual, shards -------------------------------------------------------------

SHORT = ["simulation.duration=420"]


def test_same_seed_same_summary_and_audit_head():
    first = run(COMPROMISED, overrides=parse_overrides(SHORT), plots=False, keep_rows=False)
    again = run(COMPROMISED, overrides=parse_overrides(SHORT), plots=False, keep_rows=False)
    assert stable(first.summary) == stable(again.summary)
    assert first.summary["governance"]["audit"]["head"] == again.summary["governance"]["audit"]["head"]
    assert first.summary["governance"]["loss_prevented_usdc"] > 0
    other = run(COMPROMISED, overrides=parse_overrides(SHORT), seed=12, plots=False, keep_rows=False)
    assert other.summary["governance"]["audit"]["head"] != first.summary["governance"]["audit"]["head"]


def test_without_the_counterfactual_no_loss_is_claimed(tmp_path):
    s = run(
        COMPROMISED,
        overrides=parse_overrides([*SHORT, "governance.counterfactual=false"]),
        plots=False,
        out=tmp_path / "o",
    )
    g = s.summary["governance"]
    assert g["loss_prevented_usdc"] is None and g["attack_spend_usdc"]["without_governance"] is None
    assert "counterfactual_wall_seconds" not in s.summary["resources"]
    ungoverned = run(
        COMPROMISED, overrides=parse_overrides(SHORT), plots=False, keep_rows=False, governance=False
    ).summary
    g = ungoverned["governance"]
    assert g["governed"] is False and g["decisions"] == {} and g["audit"] is None
    assert g["attack_spend_usdc"] == {
        "with_governance": None,
        "without_governance": pytest.approx(g["attack_spend_usdc"]["without_governance"]),
    }
    assert g["attack_spend_usdc"]["without_governance"] > 0


def test_a_shared_counter_is_refused_across_shards(tmp_path):
    shared = "policies.fleet.rules.daily-budget.shared=true"
    with pytest.raises(ScenarioError) as info:
        run(COMPROMISED, overrides=parse_overrides([shared]), shards=2)
    assert info.value.where == f"{COMPROMISED}: policies[0].rules[1].shared"
    assert "shared counter" in info.value.problem
    out = tmp_path / "never"
    result = CliRunner().invoke(
        app, ["run", str(COMPROMISED), "--set", shared, "--shards", "2", "--out", str(out)]
    )
    assert result.exit_code == 2 and "shared counter" in result.output and not out.exists()


def test_shards_each_govern_their_own_agents_and_merge():
    scenario = load_scenario(COMPROMISED, parse_overrides(SHORT))
    parts = [run_shard(scenario, None, k, 2) for k in range(2)]
    frozen = [set(p.metrics.governance.frozen) for p in parts]
    assert not frozen[0] & frozen[1]
    assert all(int(name.rsplit("-", 1)[1]) % 2 == k for k, names in enumerate(frozen) for name in names)
    merged = RunMetrics.combine([p.metrics for p in parts])
    assert merged.governance.frozen.keys() == frozen[0] | frozen[1]
    assert merged.governance.stats.decisions == sum(
        (p.metrics.governance.stats.decisions for p in parts), start=type(merged.governance.stats.decisions)()
    )
    s = summary_from_shards([p.metrics for p in parts], parts[0].facts)
    g = s["governance"]
    assert g["audit"] is None and s["shards"] == 2
    assert g["attack_payments_after_cutoff_on_chain"] == 0 and g["attacked_agents"] == 8
    json.dumps(s)
