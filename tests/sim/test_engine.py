"""The simulator's engine: determinism, conservation, accounting, queueing, outputs, exit codes."""

import gc
import json
import sys
import weakref
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.sim import OutputExists, engine, load_scenario, run
from x402sim.sim.summary import stable


def small(**changes) -> dict:
    scenario = {
        "simulation": {"name": "small", "seed": 1, "duration": 30, "warmup": 2},
        "network": {"client_server": {"kind": "exponential", "mean": 0.03}},
        "facilitators": [
            {"name": "fac", "verify_time": {"kind": "exponential", "mean": 0.01}, "settle_time": 0.02}
        ],
        "servers": [
            {
                "name": "shop",
                "facilitators": ["fac"],
                "endpoints": [{"path": "/a", "price": "0.001"}, {"path": "/b", "price": "0.25"}],
            }
        ],
        "agents": [
            {"name": "buyers", "count": 6, "funding": "3", "arrivals": {"kind": "poisson", "rate": 0.5}}
        ],
    }
    for key, value in changes.items():
        scenario[key] = value
    return scenario


def test_same_seed_same_summary_and_rows():
    a, b = run(small()), run(small())
    assert stable(a.summary) == stable(b.summary)
    assert [(r.id, r.tx_hash, r.outcome, r.done) for r in a.rows] == [
        (r.id, r.tx_hash, r.outcome, r.done) for r in b.rows
    ]
    c = run(small(), seed=2)
    assert stable(c.summary) != stable(a.summary)


def test_money_is_conserved_and_every_transfer_is_one_recorded_payment():
    result = run(small())
    s = result.summary
    assert s["settled_payments"] > 50 and s["invariants"] == {
        "supply_conserved": True,
        "transfers_match_payments": True,
        "no_authorization_settled_twice": True,
    }
    paid = [r for r in result.rows if r.outcome == "paid"]
    assert len(paid) == s["paid_requests"] == s["settled_payments"]
    assert len({r.tx_hash for r in paid}) == len(paid)
    assert s["volume_usdc"] == pytest.approx(sum(r.amount for r in paid) / 1e6)
    assert s["payees"]["shop"] == s["volume_usdc"] == s["agents"]["buyers"]["spend_usdc"]


def test_total_gas_is_the_per_settlement_figures_times_their_counts():
    s = run(small()).summary
    gas = s["gas"]
    assert gas["total_gas"] == sum(g["gas_used"] * g["transactions"] for g in gas["by_gas_used"])
    assert gas["total_gas"] == sum(f["gas_used"] for f in s["facilitators"].values())
    settled = [g for g in gas["by_gas_used"] if g["settled"]]
    assert sum(g["transactions"] for g in settled) == s["settled_payments"]
    first_payments = sum(g["transactions"] for g in settled if g["gas_used"] > 75_000)
    assert first_payments == 1  # one payee: only its first payment pays for a fresh balance slot
    # l1 default: 1 gwei per gas at $3000 per ETH
    assert gas["usd"] == pytest.approx(gas["total_gas"] * 1e-9 * 3000, rel=1e-6)


def test_one_facilitator_agrees_with_the_mm1_mean_wait_in_queue():
    # Underpaying agents: every request is verified (and refused) and never settled, so the
    # facilitator serves one Poisson stream with exponential service: an M/M/1 queue.
    lam, service = 5.0, 0.1
    scenario = small(
        simulation={"name": "mm1", "seed": 4, "duration": 1000, "warmup": 50},
        network={"client_server": 0.01, "server_facilitator": 0.0, "facilitator_chain": 0.0},
        facilitators=[
            {"name": "fac", "concurrency": 1, "verify_time": {"kind": "exponential", "mean": service}}
        ],
        agents=[
            {
                "name": "cheats",
                "count": 10,
                "arrivals": {"kind": "poisson", "rate": lam / 10},
                "behaviour": "underpay",
                "targets": ["shop/a"],
            }
        ],
    )
    s = run(scenario, keep_rows=False).summary
    expected = lam * service**2 / (1 - lam * service)  # 0.1 s at utilisation 0.5
    measured = s["facilitators"]["fac"]["mean_wait_ms"] / 1000
    assert s["settled_payments"] == 0 and s["facilitators"]["fac"]["verify_requests"] > 4500
    assert measured == pytest.approx(expected, rel=0.15)


def test_outputs_appear_all_at_once_and_an_existing_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    result = run(small(), out=out, plots=False)
    assert result.out == out
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "payments.csv", "timeline.csv", "report.md"} <= names
    assert json.loads((out / "summary.json").read_text())["paid_requests"] == result.summary["paid_requests"]
    lines = (out / "payments.csv").read_text().splitlines()
    assert len(lines) == 1 + result.summary["requests"]
    with pytest.raises(OutputExists):
        run(small(), out=out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left behind


def test_a_failed_run_leaves_nothing(tmp_path, monkeypatch):
    runner = sys.modules["x402sim.sim.run"]  # the module, which the package's `run` function shadows

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "build_summary", broken)
    with pytest.raises(RuntimeError):
        run(small(), out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_finality_waits_for_confirmations():
    s = run(small(chain={"block_time": 2.0, "confirmations": 3})).summary
    # final three blocks after inclusion: at least 6 s after the request went out
    assert s["latency_ms"]["finality"]["p50"] >= 6000 and s["paid_requests"] > 0


def test_flashblocks_answer_before_the_block_is_sealed():
    slow = run(small(chain={"block_time": 2.0}))
    fast = run(
        small(
            chain={"block_time": 2.0, "preconfirmation": 0.2},
            facilitators=[{"name": "fac", "settle_on": "preconfirmation"}],
        )
    )
    assert fast.summary["paid_requests"] > 0
    assert fast.summary["latency_ms"]["settle"]["p50"] < slow.summary["latency_ms"]["settle"]["p50"] / 3


def test_chain_stall_holds_every_settlement():
    s = run(small(faults=[{"kind": "chain-stall", "start": 5, "end": 20}])).summary
    stalled = run(small()).summary
    assert s["latency_ms"]["settle"]["p99"] > 10_000 > stalled["latency_ms"]["settle"]["p99"]


def test_rpc_errors_and_lost_answers_are_counted_and_not_served():
    s = run(
        small(
            faults=[
                {"kind": "rpc-errors", "start": 5, "end": 10, "probability": 1.0},
                {"kind": "settle-answer-lost", "start": 15, "end": 20},
            ]
        )
    ).summary
    assert s["events"]["rpc_errors_injected"] > 0 and s["failures"]["transaction_failed"] > 0
    assert s["events"]["settle_answers_lost"] > 0
    assert s["security"]["settled_without_delivery"] == s["events"]["settle_answers_lost"]
    assert all(s["invariants"].values())


def test_retries_after_a_lost_answer_pay_twice():
    s = run(
        small(
            agents=[
                {
                    "name": "buyers",
                    "count": 4,
                    "arrivals": {"kind": "poisson", "rate": 0.5},
                    "retry": {"max": 1},
                }
            ],
            faults=[{"kind": "settle-answer-lost", "start": 5, "end": 15}],
        )
    ).summary
    assert s["security"]["requests_paid_twice"] > 0  # the known x402 ambiguity (#452, #808)


def test_facilitator_fees_follow_the_free_tier():
    free = {"fixed": "0.001", "free_per_month": 10}
    s = run(small(facilitators=[{"name": "fac", "fee": free}])).summary
    fac = s["facilitators"]["fac"]
    assert fac["fees_earned_usdc"] == pytest.approx((fac["settlements"] - 10) * 0.001)
    assert fac["margin_usd"] == pytest.approx(fac["fees_earned_usdc"] - fac["gas_usd"])


def test_arrival_kinds_send_what_they_promise():
    def requests(arrivals, count=3, duration=60):
        scenario = small(
            simulation={"name": "a", "duration": duration},
            agents=[{"name": "g", "count": count, "arrivals": arrivals}],
        )
        return run(scenario).rows

    def per_agent(rows):
        return set(Counter(r.agent for r in rows).values())

    assert per_agent(requests({"kind": "interval", "every": 10})) == {6}
    assert per_agent(requests({"kind": "burst", "every": 30, "size": 4})) == {8}
    shaped = requests({"kind": "piecewise", "steps": [[0, 0.0], [30, 1.0]]})
    assert 60 < len(shaped) < 120 and min(r.sent for r in shaped) >= 30  # 3 agents x 1/s x 30 s


runner = CliRunner()


def test_cli_run_writes_the_outputs_and_exits_0(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(Path("scenarios/quickstart.toml").read_text())
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["run", str(path), "--out", str(out), "--quiet", "--set", "simulation.duration=15", "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").exists() and (out / "report.md").exists()
    again = runner.invoke(app, ["run", str(path), "--out", str(out), "--quiet"])
    assert again.exit_code == 2 and "exists" in again.output
    told = runner.invoke(
        app, ["run", str(path), "--out", str(out), "--force", "--set", "simulation.duration=15"]
    )
    assert told.exit_code == 0, told.output
    # where the two reports are, one whole path per line (a narrow terminal does not break them)
    assert f"full report: {out / 'report.md'}\n" in told.output
    assert f"in a browser: {out / 'report.html'}\n" in told.output
    assert (out / "report.html").exists()


def test_cli_bad_scenario_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[simulation]\nname = 'x'\nduratoin = 3\n")
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "simulation.duratoin: unknown key (did you mean 'duration'?)" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_exits_1_when_an_invariant_breaks(tmp_path, monkeypatch):
    import x402sim.sim.summary as summary

    original = summary.build_summary

    def tampered(*args, **kwargs):
        s = original(*args, **kwargs)
        s["invariants"]["supply_conserved"] = False
        return s

    monkeypatch.setattr(sys.modules["x402sim.sim.run"], "build_summary", tampered)
    path = tmp_path / "s.toml"
    path.write_text(Path("scenarios/quickstart.toml").read_text())
    result = runner.invoke(
        app, ["run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--set", "simulation.duration=12"]
    )
    assert result.exit_code == 1 and "invariant violated: supply_conserved" in result.output


def test_cli_schema_and_scenarios_list():
    schema = runner.invoke(app, ["schema"])
    assert schema.exit_code == 0 and json.loads(schema.output)["title"] == "x402sim scenario"
    listing = runner.invoke(app, ["scenarios"])
    assert listing.exit_code == 0 and "toctou-race" in listing.output


def test_load_scenario_accepts_a_path_and_a_dict():
    assert load_scenario("scenarios/quickstart.toml").simulation.name == "quickstart"
    assert load_scenario(small()).simulation.name == "small"


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("underpay", "amount"),
        ("expired", "expired"),
        ("not-yet-valid", "not_yet_valid"),
        ({"kind": "tamper", "field": "recipient"}, "recipient"),
        ({"kind": "tamper", "field": "amount"}, "amount"),
        ("unfunded", "balance"),
        ({"kind": "drain", "after": 0.05}, "balance"),
    ],
)
def test_each_adversary_is_refused_for_its_reason_and_pays_nothing(behaviour, expected):
    scenario = small(
        agents=[
            {"name": "honest", "count": 2, "arrivals": {"kind": "poisson", "rate": 0.3}},
            {
                "name": "adversary",
                "count": 3,
                "arrivals": {"kind": "poisson", "rate": 0.3},
                "behaviour": behaviour,
                "targets": ["shop/b"],
            },
        ]
    )
    result = run(scenario)
    s = result.summary
    assert s["agents"]["adversary"]["requests"] > 5 and s["agents"]["adversary"]["paid"] == 0
    assert s["agents"]["adversary"]["spend_usdc"] == 0  # nothing moved from them to the seller
    assert set(s["failures"]) == {expected}
    assert s["agents"]["honest"]["paid"] > 0 and all(s["invariants"].values())
    if isinstance(behaviour, dict) and behaviour["kind"] == "drain":
        assert s["security"]["handler_runs_unpaid"] > 0  # verified, worked, then the money was gone


def test_facilitator_errors_fail_over_and_slowness_shows_in_the_wait():
    two = [{"name": "fac", "verify_error_rate": 1.0}, {"name": "spare"}]
    servers = [
        {"name": "shop", "facilitators": ["fac", "spare"], "endpoints": [{"path": "/a", "price": "0.01"}]}
    ]
    s = run(small(facilitators=two, servers=servers)).summary
    assert s["events"]["verify_errors_injected"] == s["events"]["failover_from_verify"] > 0
    assert s["paid_requests"] == s["requests"] and s["facilitators"]["fac"]["verify_requests"] == 0

    slow = [{"name": "fac", "concurrency": 1, "verify_time": 0.05, "settle_time": 0.05}]
    fault = [{"kind": "facilitator-slow", "facilitator": "fac", "start": 0, "end": 30, "factor": 20}]
    calm = run(small(facilitators=slow)).summary
    jammed = run(small(facilitators=slow, faults=fault)).summary
    assert jammed["facilitators"]["fac"]["mean_wait_ms"] > 10 * calm["facilitators"]["fac"]["mean_wait_ms"]


def test_a_run_keeps_the_collector_off_the_world_and_gives_its_settings_back(monkeypatch):
    during_run = []
    sample_queues = engine._sample_queues

    def probed(world):  # a process of the run: what the collector is set to while it runs
        during_run.append((gc.get_freeze_count(), gc.get_threshold()))
        yield from sample_queues(world)

    monkeypatch.setattr(engine, "_sample_queues", probed)
    before = gc.get_threshold()
    result = run(small())
    assert result.summary["paid_requests"] > 0
    ((frozen, thresholds),) = during_run
    assert frozen > 10_000 and thresholds[0] == 50_000 > before[0]
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
    with engine.long_lived_frozen():

        class Node:
            pass

        node = Node()
        node.self = node  # type: ignore[attr-defined]  # a cycle made during the run
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None  # is still collected
    with pytest.raises(RuntimeError), engine.long_lived_frozen():
        raise RuntimeError("a run that fails gives the settings back too")
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
