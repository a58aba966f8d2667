"""Agents that discover tools in a Bazaar, choose, and pay per call (issue 25, section 5).

Small versions of the shipped agent-toolchain scenario and of a one-kind market built here. The
spend figures are judged on chain: each tool server is its own payee, so what the chain says its
address holds is what the summary says the tool was paid.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.actors.discovery import CHOICE_RULES
from x402sim.money import UNIT
from x402sim.sim import ScenarioError, load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.engine import run_world
from x402sim.sim.metrics import RunMetrics
from x402sim.sim.report import markdown_report
from x402sim.sim.scenario import ChoiceRule
from x402sim.sim.summary import RunFacts, build_summary, stable
from x402sim.sim.world import World

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
TOOLCHAIN = SCENARIOS / "agent-toolchain.toml"
SMALL = [
    "simulation.duration=30",
    "agents.thrifty.count=4",
    "agents.careful.count=4",
    "agents.naive.count=4",
    "agents.thrifty.arrivals.rate=0.08",
    "agents.careful.arrivals.rate=0.08",
    "agents.naive.arrivals.rate=0.08",
]


def _world_run(scenario):
    """Run ``scenario`` keeping its world, so the chain can be read after the run."""
    world = World(scenario)
    metrics = run_world(world)
    return world, build_summary(metrics, RunFacts.of(world))


@pytest.fixture(scope="module")
def shipped():
    return _world_run(load_scenario(TOOLCHAIN, parse_overrides(SMALL)))


def test_the_shipped_scenario_runs_small_and_its_figures_agree(shipped):
    world, s = shipped
    t = s["toolchain"]
    assert all(s["invariants"].values()), s["invariants"]
    tasks = t["tasks"]
    assert 0 < tasks["completed"] <= tasks["attempted"]
    assert tasks["attempted"] == tasks["completed"] + tasks["abandoned"] + tasks["unfinished"]
    assert sum(t["spend_by_tool_usdc"].values()) == pytest.approx(t["spend_usdc"], abs=1e-6)
    assert t["unattributed_usdc"] == 0
    assert 0 < t["broken_spend_share"] < 1
    assert t["broken_spend_share"] == pytest.approx(t["broken_spend_usdc"] / t["spend_usdc"], abs=1e-6)
    assert t["cost_per_completed_task_usdc"] == pytest.approx(t["spend_usdc"] / tasks["completed"], abs=1e-6)
    for name, g in t["groups"].items():
        assert g["spend_usdc"] == s["agents"][name]["spend_usdc"]  # the group's own transfers, on chain
        if g["completed"]:
            assert g["cost_per_completed_task_usdc"] == pytest.approx(
                g["spend_usdc"] / g["completed"], abs=1e-6
            )
    assert t["spend_usdc"] == pytest.approx(sum(s["agents"][g]["spend_usdc"] for g in t["groups"]), abs=1e-6)
    assert t["time_to_first_paid_call_ms"]["count"] > 0
    first = t["time_to_first_paid_call_ms"]
    assert first["p50"] <= first["p95"]
    assert "## Toolchain" in markdown_report(s, world.scenario)


def test_each_tool_was_paid_on_chain_what_the_summary_says(shipped):
    """Every tool server is its own payee: its balance on chain is the tool's spend. The tool that
    fails before settling is paid only for the calls that succeeded; the one that charges first is
    paid for every call, failed or not."""
    world, s = shipped
    t = s["toolchain"]
    chain = world.chain
    for name, tool in t["tools"].items():
        server = name.split("/", 1)[0]
        assert chain.balance_of(world.payees[server]) == round(tool["spend_usdc"] * UNIT), name
        price = round(tool["price_usdc"] * UNIT)
        if server == "quicksum":  # order = "upfront": charged, then fails half its calls
            assert tool["spend_usdc"] * UNIT == pytest.approx(tool["calls"] * price)
        else:  # order = "authorization": a failed call settles nothing
            assert tool["spend_usdc"] * UNIT == pytest.approx(tool["paid"] * price)
    quicksum = t["tools"]["quicksum/summarize"]
    assert quicksum["calls"] > quicksum["paid"]  # some calls failed after charging
    assert s["security"]["settled_without_delivery"] >= quicksum["calls"] - quicksum["paid"]
    crawlbox = t["tools"]["crawlbox/fetch_page"]
    assert crawlbox["calls"] > crawlbox["paid"]


def test_metrics_of_shards_merge(shipped):
    """The toolchain counters add up and the first-call sketch merges (as shards' metrics do)."""
    world, _ = shipped
    metrics = world.run_metrics
    merged = RunMetrics.combine([metrics, metrics])
    assert merged.toolchain.first_call.count == 2 * metrics.toolchain.first_call.count
    assert merged.toolchain.spend == metrics.toolchain.spend + metrics.toolchain.spend


def _market(choose: str = "cheapest", **extra) -> dict:
    """One kind of tool, listed most expensive first; a broken tool (charging, then failing every
    call) is the cheapest and declares the worst reputation."""
    tool = {"method": "POST", "transport": "mcp", "kind": "lookup"}
    data = {
        "simulation": {"name": "market", "seed": 3, "duration": 20},
        "facilitators": [{"name": "fac"}],
        "servers": [
            {
                "name": "dear",
                "facilitators": ["fac"],
                "endpoints": [{**tool, "path": "/lookup", "price": "0.05", "reputation": 0.8}],
            },
            {
                "name": "fair",
                "facilitators": ["fac"],
                "endpoints": [{**tool, "path": "/lookup", "price": "0.01", "reputation": 0.9}],
            },
            {
                "name": "junk",
                "facilitators": ["fac"],
                "order": "upfront",
                "endpoints": [{**tool, "path": "/lookup", "price": "0.002", "reputation": 0.1, "fails": 1.0}],
            },
        ],
        "agents": [
            {
                "name": "agents",
                "count": 3,
                "funding": "5",
                "arrivals": {"kind": "poisson", "rate": 0.2},
                "task": {"steps": ["lookup", "lookup"], "choose": choose, "attempts": 3},
            }
        ],
    }
    for key, value in extra.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return data


def _toolchain(data: dict) -> dict:
    return run(data, plots=False, keep_rows=False).summary


def test_the_choice_rule_changes_what_a_task_costs():
    first = _toolchain(_market("first"))["toolchain"]
    cheapest = _toolchain(_market("cheapest"))["toolchain"]
    reputation = _toolchain(_market("reputation"))["toolchain"]
    for t in (first, cheapest, reputation):
        assert t["tasks"]["completed"] > 3
    # listed expensively: "first" pays the dearest tool at each step; "cheapest" the broken one,
    # then the fair one
    assert cheapest["cost_per_completed_task_usdc"] < first["cost_per_completed_task_usdc"]
    assert first["spend_by_tool_usdc"]["junk/lookup"] == 0
    assert cheapest["broken_spend_share"] > 0 and cheapest["failed_calls"] > 0
    # the reputation the listings declare reflects the breakage: the broken tool is never called
    assert reputation["tools"]["junk/lookup"]["calls"] == 0 and reputation["broken_spend_share"] == 0
    assert reputation["failed_calls"] == 0
    assert reputation["cost_per_completed_task_usdc"] < first["cost_per_completed_task_usdc"]


def test_the_budget_and_the_price_cap_apply_to_tasks():
    capped = _toolchain(_market("first", **{"agents.0.policy": {"max_price": "0.02", "budget": "0.05"}}))
    t = capped["toolchain"]
    assert t["tools"]["dear/lookup"]["calls"] == 0  # above the cap: not even a candidate
    assert capped["agents"]["agents"]["spend_usdc"] <= 3 * 0.05
    assert t["tasks"]["abandoned"] > 0  # the budget ran out: every candidate refused
    assert capped["agents"]["agents"]["refused_by_policy"] > 0


def test_the_mcp_session_set_up_shows_in_the_time_to_the_first_paid_call():
    # fast blocks: with 2 s blocks a set-up shorter than the wait for the next block can vanish in it
    slow = {"transports": {"mcp": {"session_setup": 2.0, "per_call": 0.0}}, "chain": {"block_time": 0.1}}
    mcp = _toolchain({**_market(), **slow})
    http = copy.deepcopy(_market())
    for server in http["servers"]:
        server["endpoints"][0]["transport"] = "http"
    plain = _toolchain({**http, **slow})
    t_mcp, t_http = mcp["toolchain"], plain["toolchain"]
    assert mcp["events"]["mcp_sessions"] > 0 and "mcp_sessions" not in plain["events"]
    assert t_mcp["time_to_first_paid_call_ms"]["mean"] > t_http["time_to_first_paid_call_ms"]["mean"] + 300
    # a session is set up once per agent and server
    assert mcp["events"]["mcp_sessions"] <= 3 * 3


def test_same_seed_same_summary():
    data = _market("value")
    assert stable(_toolchain(data)) == stable(_toolchain(data))


def test_scenarios_without_tasks_have_no_toolchain_section():
    s = run(
        SCENARIOS / "quickstart.toml",
        overrides=parse_overrides(["simulation.duration=15", "agents.agents.count=2"]),
        plots=False,
    ).summary
    assert "toolchain" not in s and "mcp_sessions" not in s["events"]


def test_the_choice_rules_are_discovery_s():
    assert get_args(ChoiceRule) == CHOICE_RULES


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("agents.0.task.steps", ["lookup", "translate"], "agents[0].task.steps[1]"),
        ("agents.0.behaviour", "replay", "agents[0].behaviour"),
        ("agents.0.choice", "zipf", "agents[0].choice"),
        ("agents.0.retry", {"max": 2}, "agents[0].retry"),
        ("agents.0.task.choose", "dearest", "agents[0].task.choose"),
        ("servers.0.endpoints.0.method", "GET", "servers[0].endpoints[0]"),
        ("transports.mcp.per_cal", 0.1, "transports.mcp.per_cal"),
    ],
)
def test_bad_task_and_transport_keys_are_refused_naming_the_key(key, value, where):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_market(**{key: value}) if not key.startswith("transports") else _with(key, value))
    assert where in str(caught.value)


def _with(key: str, value) -> dict:
    data = _market()
    data["transports"] = {"mcp": {key.rsplit(".", 1)[1]: value}}
    return data


NAMES = st.text(alphabet=st.sampled_from("abcXYZ019_.-/ ?"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    transport=st.sampled_from(["http", "mcp", "a2a"]),
    method=st.sampled_from(["GET", "POST"]),
    name=NAMES,
    fails=st.floats(-0.5, 1.5, allow_nan=False),
    reputation=st.one_of(st.none(), st.floats(-0.5, 1.5, allow_nan=False)),
)
def test_an_endpoint_s_transport_keys_validate_as_documented(transport, method, name, fails, reputation):
    endpoint = {
        "path": f"/{name}",
        "method": method,
        "transport": transport,
        "kind": "lookup",
        "price": "0.01",
    }
    endpoint["fails"] = fails
    if reputation is not None:
        endpoint["reputation"] = reputation
    data = _market()
    data["servers"][0]["endpoints"] = [endpoint]
    path_ok = all(c not in name for c in " ?")
    tool_ok = method == "POST" and all(c.isalnum() or c in "_.-" for c in name)
    valid = (
        path_ok
        and (transport != "mcp" or tool_ok)
        and 0 <= fails <= 1
        and (reputation is None or 0 <= reputation <= 1)
    )
    try:
        scenario = load_scenario(data)
    except ScenarioError as exc:
        assert not valid, exc
        assert "servers[0].endpoints[0]" in str(exc)
    else:
        assert valid
        assert scenario.servers[0].endpoints[0].transport == transport


def test_a_governor_judges_each_call_and_a_denied_call_fails_over():
    data = _market("cheapest")
    data["policies"] = [
        {
            "name": "fleet",
            "rules": [
                {"kind": "request-cap", "max": "0.02"},
                {"kind": "spend-limit", "max": "0.03", "period": "day"},
            ],
        }
    ]
    data["agents"][0]["policy"] = "fleet"
    data["governance"] = {"counterfactual": False}
    s = _toolchain(data)
    blocked = s["governance"]["payments_blocked"]["fleet"]
    assert blocked["spend-limit#1"] > 0
    assert s["agents"]["agents"]["denied"] > 0
    assert s["toolchain"]["tasks"]["abandoned"] > 0
    assert s["toolchain"]["tools"]["dear/lookup"]["spend_usdc"] == 0  # above the cap: denied, never paid
    assert (
        s["toolchain"]["spend_usdc"] <= 3 * 0.03 + 0.02
    )  # each agent's last allowed call may cross the limit


def test_the_ledger_backend_reconciles_the_spend_by_tool_with_its_balances():
    data = _market("cheapest")
    data["chain"] = {"backend": "ledger"}
    world, s = _world_run(load_scenario(data))
    assert all(s["invariants"].values())
    for name, usdc in s["toolchain"]["spend_by_tool_usdc"].items():
        assert world.chain.balance_of(world.payees[name.split("/", 1)[0]]) == round(usdc * UNIT), name
    assert s["toolchain"]["spend_by_tool_usdc"]["junk/lookup"] > 0  # charged, then failed


def test_a_sharded_run_keeps_the_figures_consistent():
    from x402sim.sim.shards import run_shard
    from x402sim.sim.summary import summary_from_shards

    scenario = load_scenario(_market("value", **{"agents.0.count": 4}))
    shards = [run_shard(scenario, None, index, 2) for index in range(2)]
    t = summary_from_shards([p.metrics for p in shards], shards[0].facts)["toolchain"]
    parts = [p.metrics.toolchain for p in shards]
    assert t["tasks"]["attempted"] == sum(m.tasks[("agents", "attempted")] for m in parts)
    assert t["time_to_first_paid_call_ms"]["count"] == sum(m.first_call.count for m in parts)
    assert sum(t["spend_by_tool_usdc"].values()) == pytest.approx(t["spend_usdc"], abs=1e-6)
