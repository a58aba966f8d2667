"""reference/summary-json.md describes exactly the fields summaries have (docsgen/summary_fields.py).

Small runs that between them produce every section: the annotated example (governance, x402scan
targets), an outage (events), the three trust scenarios, upto-llm with a sponsored group
(mechanisms), channels-vs-exact (channels), agent-toolchain (toolchain), and a quickstart split into
two shards (run in this process, as Dask would run each, then merged by ``run`` from a shard
folder, which needs no cluster when every shard is in it).
"""

from __future__ import annotations

from docsgen.formats_page import SCENARIO_EXAMPLE
from docsgen.summary_fields import FIELDS
from docsgen.summary_page import field_paths
from x402sim.sim import load_scenario, run
from x402sim.sim.shard_store import ShardStore
from x402sim.sim.shards import run_shard
from x402sim.sim.summary import summary_from_shards

from .blocks import ROOT

RUNS = [
    (SCENARIO_EXAMPLE, {"servers.api.count": 3, "agents.buyers.count": 3}),
    ("scenarios/facilitator-outage.toml", {"agents.agents.count": 3}),
    ("scenarios/reputation-market.toml", {"simulation.duration": 30}),
    ("scenarios/mandated-agents.toml", {"simulation.duration": 30}),
    ("scenarios/pay-per-crawl.toml", {"simulation.duration": 20}),
    (
        "scenarios/upto-llm.toml",
        {
            "simulation.duration": 15,
            "agents.metered-users.count": 3,
            "agents.flat-users.count": 2,
            "agents.metered-users.approval": "sponsored-erc20",
            "facilitators.facilitator.sponsoring": ["erc20ApprovalGasSponsoring"],
        },
    ),
    (
        "scenarios/channels-vs-exact.toml",
        {
            "simulation.duration": 60,
            "agents.exact-buyers.count": 2,
            "agents.channel-buyers.count": 2,
            "agents.exact-buyers.stop": 50,
            "agents.channel-buyers.stop": 50,
        },
    ),
    (
        "scenarios/agent-toolchain.toml",
        {
            "simulation.duration": 20,
            "agents.thrifty.count": 2,
            "agents.careful.count": 2,
            "agents.naive.count": 2,
        },
    ),
]


def test_every_summary_field_is_described_and_every_description_is_a_field(tmp_path):
    seen: set[str] = set()
    for path, overrides in RUNS:
        seen |= field_paths(run(ROOT / path, overrides=overrides, plots=False, keep_rows=False).summary)
    scenario = load_scenario(
        ROOT / "scenarios/quickstart.toml", {"simulation.duration": 20, "agents.agents.count": 4}
    )
    shards = [run_shard(scenario, None, index, 2) for index in range(2)]
    seen |= field_paths(summary_from_shards([s.metrics for s in shards], shards[0].facts))
    store = ShardStore(tmp_path / "shards", scenario, None, 2)
    for shard in shards:
        store.save(shard)
    seen |= field_paths(run(scenario, shards=2, shard_dir=store.folder, plots=False).summary)
    assert sorted(seen - set(FIELDS)) == [], (
        "summary fields without a description in docsgen/summary_fields.py"
    )
    assert sorted(set(FIELDS) - seen) == [], "described fields that no summary has"


def test_field_paths_name_new_keys_and_placeholders():
    described = frozenset({"gas", "gas.usd", "servers", "servers.<name>", "servers.<name>.paid"})
    summary = {"gas": {"usd": 1.0, "new": 2}, "servers": {"a": {"paid": 1}, "b": {"paid": 2, "odd": 0}}}
    assert field_paths(summary, described) == {
        "gas",
        "gas.usd",
        "gas.new",
        "servers",
        "servers.<name>",
        "servers.<name>.paid",
        "servers.<name>.odd",
    }
