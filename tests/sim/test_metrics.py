"""A run's metrics: sketches within their accuracy, merges that add up, nothing kept per payment."""

import csv
import gc
import math
import os
import pickle
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import x402sim.sim as sim_package
from x402sim.cli import app
from x402sim.sim import load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.engine import run_world
from x402sim.sim.metrics import PaymentBook, RunMetrics
from x402sim.sim.records import SAMPLE_HEAD, Row, RowWriter
from x402sim.sim.sketch import BIN_LIMIT, RELATIVE_ACCURACY, LatencyStats
from x402sim.sim.summary import RunFacts, build_summary, stable, summary_from_shards
from x402sim.sim.world import World

from .test_engine import small

# -- latency sketches --------------------------------------------------------------------------------

samples = st.lists(st.floats(min_value=1e-6, max_value=1e4, allow_nan=False), min_size=1, max_size=300)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@given(samples, st.sampled_from([1, 10, 50, 90, 99, 99.9, 100]))
def test_a_percentile_is_within_the_sketch_accuracy_of_the_nearest_rank(values, q):
    stats = LatencyStats(values)
    exact = nearest_rank(values, q)
    assert stats.percentile(q) == pytest.approx(exact, rel=RELATIVE_ACCURACY + 1e-9)
    assert (stats.count, stats.min, stats.max) == (len(values), min(values), max(values))
    assert stats.mean == pytest.approx(sum(values) / len(values))


@given(samples, samples)
def test_merged_sketches_are_the_sketch_of_all_samples(a, b):
    merged = LatencyStats(a)
    merged.merge(LatencyStats(b))
    assert merged == LatencyStats(a + b)
    assert pickle.loads(pickle.dumps(merged)) == merged


def test_a_sketch_holds_zeros_and_a_bounded_number_of_bins():
    stats = LatencyStats([0.0, 0.0, 1e-9, 3600.0])
    assert stats.percentile(50) == 0.0 and stats.percentile(100) == 3600.0
    values, fractions = stats.cdf()
    assert values[0] == 0.0 and fractions[0] == 0.5 and fractions[-1] == 1.0
    assert stats.bin_count <= BIN_LIMIT
    assert LatencyStats().percentiles_ms() == {"p50": None, "p90": None, "p99": None}


# -- merging RunMetrics -------------------------------------------------------------------------------

FEES = small(
    facilitators=[
        {"name": "fac", "fee": {"fixed": "0.001", "bps": 25, "free_per_month": 3}},
        {"name": "spare", "fee": {"fixed": "0.002", "free_per_month": 2}},
    ],
    servers=[
        {"name": "shop", "facilitators": ["fac", "spare"], "endpoints": [{"path": "/a", "price": "0.01"}]}
    ],
)
SCENARIO = load_scenario(FEES)
MONTHS = [(2026, 1), (2026, 2)]


def synthetic(seed: int) -> RunMetrics:
    """Metrics of a made-up shard: every kind of counter, set, sketch and fee book filled at random."""
    rng = random.Random(seed)
    m = RunMetrics.start(SCENARIO)
    for i in range(rng.randrange(1, 30)):
        row = Row(
            i + 1,
            "a",
            rng.choice(["g1", "g2"]),
            "honest",
            rng.choice(["request", "replay"]),
            "shop",
            "/a",
            0.0,
        )
        row.outcome = rng.choice(["paid", "free", "rejected", "error", "refused"])
        row.status, row.amount, row.handled = (
            rng.choice([200, 402, 500]),
            rng.randrange(100),
            rng.random() < 0.5,
        )
        m.tally.add(row)
        m.latency[rng.choice(list(m.latency))].add(rng.expovariate(1.0))
        m.timeline.requests[rng.randrange(m.timeline.buckets)] += 1
        m.timeline.queues[rng.randrange(m.timeline.buckets)]["fac"] = rng.randrange(5)
    for name, fac in m.facilitators.items():
        fac.verifies, fac.settles, fac.max_queue = rng.randrange(9), rng.randrange(9), rng.randrange(9)
        fac.waits.add(rng.random())
        for t in sorted(rng.randrange(10**6) for _ in range(rng.randrange(8))):  # folded in time order
            fac.fees.add(rng.choice(MONTHS), (t, rng.randrange(100), rng.randrange(5)), rng.randrange(1, 50))
            buyer, seller, value = f"b{seed}-{rng.randrange(4)}", f"s{rng.randrange(3)}", rng.randrange(1, 99)
            m.scan.add(buyer, seller, value)
            fac.scan.add(buyer, seller, value)
            m.daily.add(rng.randrange(3), name, buyer, seller, value)
            m.received[seller] += value
            m.spend[rng.choice(["g1", "g2"])] += value
            m.by_gas[(rng.choice([60_000, 80_000]), rng.random() < 0.9)] += 1
    for key in ("double_settlements", "served_without_settlement", "unmatched_transfers"):
        m.security[key] += rng.randrange(3)
    m.events["failover_from_verify"] += rng.randrange(3)
    m.agents["g1"] += rng.randrange(1, 5)
    m.total_gas, m.total_wei, m.mints = rng.randrange(10**6), rng.randrange(10**9), rng.randrange(10**6)
    m.supply.minted = m.supply.supply = m.supply.balances = rng.randrange(10**6)
    m.supply.conserved, m.supply.shards = rng.random() < 0.8, 1
    m.blocks, m.height, m.virtual_seconds = rng.randrange(50), rng.randrange(50, 99), rng.uniform(0, 99)
    return m


seeds = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=40)
@given(seeds, seeds, seeds)
def test_merging_is_associative_and_leaves_its_inputs_alone(x, y, z):
    a, b, c = synthetic(x), synthetic(y), synthetic(z)
    before = pickle.dumps((a, b, c))
    assert a.merge(b).merge(c) == a.merge(b.merge(c)) == RunMetrics.combine([a, b, c])
    assert pickle.dumps((a, b, c)) == before


@settings(max_examples=25)
@given(seeds, seeds)
def test_merged_counters_add_sets_unite_and_the_supply_check_needs_every_shard(x, y):
    a, b = synthetic(x), synthetic(y)
    m = a.merge(b)
    assert m.tally.rows == a.tally.rows + b.tally.rows and m.shards == 2
    assert m.scan.transactions == a.scan.transactions + b.scan.transactions
    assert (
        m.scan.buyers == a.scan.buyers | b.scan.buyers and m.scan.sellers == a.scan.sellers | b.scan.sellers
    )
    assert m.latency["settle"].count == a.latency["settle"].count + b.latency["settle"].count
    assert m.supply.conserved == (a.supply.conserved and b.supply.conserved)
    assert (m.blocks, m.height) == (max(a.blocks, b.blocks), max(a.height, b.height))
    for name, fac in m.facilitators.items():
        fa, fb = a.facilitators[name], b.facilitators[name]
        assert fac.max_queue == max(fa.max_queue, fb.max_queue)
        assert fac.fees.earned >= fa.fees.earned + fb.fees.earned  # one free tier, not two
    facts = RunFacts(SCENARIO, 1, {"shop": "s0"})
    assert stable(summary_from_shards([a, b], facts)) == stable(summary_from_shards([b, a], facts))


def test_the_free_tier_applies_once_to_merged_shards():
    def book(*settlements):
        m = RunMetrics.start(SCENARIO)
        for t, price in settlements:
            m.facilitators["fac"].fees.add((2026, 1), (t, 0, 0), price)
        return m.facilitators["fac"].fees

    a, b = book((1, 10), (5, 20), (9, 30)), book((2, 40), (3, 50))
    merged = RunMetrics.start(SCENARIO).facilitators["fac"].fees
    merged.merge(a)
    merged.merge(b)
    # first three by time (10, 40, 50) are free: 20 + 30 are billed
    assert (a.earned, b.earned, merged.earned) == (0, 0, 50)


# -- a whole run --------------------------------------------------------------------------------------


def test_a_run_summary_comes_from_its_picklable_metrics():
    result = run(small())
    metrics = pickle.loads(pickle.dumps(result.metrics))
    assert stable(build_summary(metrics, result.facts)) == stable(result.summary)
    assert stable(summary_from_shards([metrics], result.facts)) == stable(result.summary)
    warm = sum(1 for r in result.rows if r.sent >= 2)
    assert result.latencies["end_to_end"].count == warm and result.latencies["end_to_end"].max > 0


def test_two_runs_merged_add_up():
    a, b = run(small(), keep_rows=False), run(small(), seed=2, keep_rows=False)
    s = summary_from_shards([a.metrics, b.metrics], a.facts)
    for key in ("requests", "paid_requests", "settled_payments"):
        assert s[key] == a.summary[key] + b.summary[key]
    assert s["gas"]["total_gas"] == a.summary["gas"]["total_gas"] + b.summary["gas"]["total_gas"]
    assert s["shards"] == 2 and all(s["invariants"].values())
    assert s["latency_ms"]["end_to_end"]["p50"] is not None


# -- what the book decides, authorization by authorization --------------------------------------------


def _row(id_: int, status: int, origin: int = 0) -> Row:
    row = Row(id_, "a-0", "g", "honest", "request", "shop", "/a", 0.0, payer="0xA", nonce=f"0x{id_:02x}")
    row.status, row.origin, row.done = status, origin, 1.0
    return row


def test_an_authorization_is_judged_once_expired_and_written_then_dropped():
    security = Counter()
    book = PaymentBook(security, {"g": 1})
    row = _row(1, 200)
    key = ("0xa", "0x01")
    book.recorded(key, 10, "0xB", valid_before=100)
    book.settled(key, 10, "0xB", block_time=50)
    book.closed(row)
    book.advance(120)
    assert key in book.open  # its row is not written yet
    book.written(row)
    assert key not in book.open and book.sizes() == {"authorizations": 0, "chains": 0, "expiry_heap": 0}
    assert not security
    # a settlement the chain accepted after validBefore, of an authorization already dropped
    book.settled(key, 10, "0xB", block_time=130)
    book.flush()
    assert security["unmatched_transfers"] == 1


def test_a_settlement_after_valid_before_and_a_replay_after_resolution_are_counted():
    security = Counter()
    book = PaymentBook(security, {})
    key = ("0xa", "0x01")
    book.recorded(key, 10, "0xB", valid_before=100)
    book.settled(key, 10, "0xB", block_time=100)  # too late: the token takes it only before 100
    row = _row(1, 200)
    book.closed(row)
    book.written(row)
    book.advance(100)
    assert security["settled_after_expiry"] == security["unmatched_transfers"] == 1
    replay = _row(1, 200)
    book.recorded(key, 10, "0xB", valid_before=100)  # expired already: judged when written
    book.closed(replay)
    book.written(replay)
    assert key not in book.open and security["served_without_settlement"] == 1


def test_retry_chains_count_a_request_paid_twice_and_are_then_dropped():
    security = Counter()
    book = PaymentBook(security, {"g": 1})
    first, retry = _row(1, 502), _row(2, 200, origin=1)
    for i, row in enumerate((first, retry)):
        key = ("0xa", row.nonce)
        book.recorded(key, 10, "0xB", valid_before=100 + i)
        book.settled(key, 10, "0xB", block_time=50)
        book.closed(row)
        book.written(row)
    book.advance(200)
    assert security["requests_paid_twice"] == 1 and not book.chains and not book.open


# -- memory: nothing grows with payments -----------------------------------------------------------------

SIM_DIR = os.path.dirname(sim_package.__file__)


def _memory_scenario(duration: float):
    return load_scenario(
        {
            "simulation": {"name": "mem", "seed": 3, "duration": duration, "warmup": 1, "drain": 30},
            "chain": {"backend": "ledger", "block_time": 1.0},
            "network": {"client_server": 0.01, "server_facilitator": 0.005, "facilitator_chain": 0.005},
            "facilitators": [{"name": "fac", "concurrency": 1000}],
            "servers": [
                {
                    "name": "shop",
                    "facilitators": ["fac"],
                    "endpoints": [{"path": "/a", "price": "0.001", "max_timeout_seconds": 15}],
                }
            ],
            "agents": [
                {
                    "name": "buyers",
                    "count": 20,
                    "funding": "100",
                    "arrivals": {"kind": "poisson", "rate": 1.0},
                    "retry": {"max": 1},
                }
            ],
        }
    )


def _sizes(w: World) -> dict[str, int]:
    p = w.producer
    return {
        "authorizations": len(w.book.open),
        "retry chains": len(w.book.chains),
        "expiry heap": len(w.book._expiry),
        "held txs": w.flight.held(),
        "raw txs": len(w.raw_txs),
        "included": len(p.included_at),
        "final": len(p.final_at),
        "receipts": len(w.chain.receipts()),
        "facilitator records": sum(len(f.role.settlements) for f in w.facilitators.values()),
        "client records": sum(len(a.client.payments) for a in w.agents),
        "holders": len(w._chain_folder().holders),
        "sketch bins": sum(s.bin_count for s in w.latency.values()),
        "by gas": len(w.run_metrics.by_gas),
    }


def _measure(duration: float) -> tuple[int, dict, dict, int]:
    """Settlements; the largest size of each container during the run and at its end; and the bytes
    still held at the end by objects that x402sim.sim allocated during the run."""
    world = World(_memory_scenario(duration), writer=RowWriter(None, keep=False))
    largest: dict[str, int] = {}

    def watch():
        while True:
            yield world.env.timeout(1.0)
            for name, n in _sizes(world).items():
                largest[name] = max(largest.get(name, 0), n)

    world.env.process(watch())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    metrics = run_world(world)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    only_sim = [tracemalloc.Filter(True, os.path.join(SIM_DIR, "*"))]
    held = after.filter_traces(only_sim).compare_to(before.filter_traces(only_sim), "filename")
    return metrics.scan.transactions, largest, _sizes(world), sum(s.size_diff for s in held)


@pytest.mark.soak  # two runs with tracemalloc on, about 17 s: in make soak
def test_what_a_run_keeps_does_not_grow_with_payments():
    short, long = _measure(30), _measure(120)
    assert long[0] > 3.5 * short[0] > 1500  # four times the payments
    for name, most in long[1].items():
        # a validity window's worth of authorizations, a block's worth of transactions: the same
        # in both runs (a container kept per payment would hold four times as much)
        assert most <= 1.5 * short[1][name] + 25, (name, short[1][name], most)
    in_flight = ("authorizations", "retry chains", "expiry heap", "held txs", "raw txs", "included", "final")
    assert {name: long[2][name] for name in (*in_flight, "receipts")} == dict.fromkeys(
        (*in_flight, "receipts"), 0
    )
    assert long[2]["holders"] == 21  # the agents and the payee
    assert long[2]["sketch bins"] <= 4 * BIN_LIMIT
    # bytes kept by the simulator's own objects: no more than a few hash-table resizes apart
    assert long[3] - short[3] < 200_000, (short[3], long[3])


# -- outputs: payments.csv, daily.csv, x402scan targets -----------------------------------------------------


def test_payments_csv_all_sample_or_none(tmp_path):
    full = run(small(), out=tmp_path / "all", plots=False, keep_rows=False)
    n = full.summary["requests"]
    assert len((tmp_path / "all" / "payments.csv").read_text().splitlines()) == 1 + n
    none = run(small(), out=tmp_path / "none", plots=False, payments="none")
    assert not (tmp_path / "none" / "payments.csv").exists() and len(none.rows) == n  # rows kept anyway
    assert stable(none.summary) == stable(full.summary)

    writer_rows = []
    for _ in range(2):
        out = []

        class Sink:
            def write(self, text, out=out):
                out.append(text)

        w = RowWriter(Sink(), keep=False, payments="sample", seed=4)
        for i in range(SAMPLE_HEAD + 5000):
            w.write(Row(i + 1, "x", "g", "honest", "request", "s", "/", 0.0))
        writer_rows.append([line.split(",")[0] for line in "".join(out).splitlines()[1:]])
    a, b = writer_rows
    assert a == b  # the same seed draws the same sample
    assert a[:SAMPLE_HEAD] == [str(i + 1) for i in range(SAMPLE_HEAD)] and 20 < len(a) - SAMPLE_HEAD < 90


def test_cli_payments_option(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(Path("scenarios/quickstart.toml").read_text())
    args = ["run", str(path), "--quiet", "--no-plots", "--set", "simulation.duration=12"]
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x"), "--payments", "some"])
    assert bad.exit_code == 2 and "--payments some" in bad.output
    ok = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--payments", "none"])
    assert ok.exit_code == 0, ok.output
    assert not (tmp_path / "o" / "payments.csv").exists() and (tmp_path / "o" / "daily.csv").exists()


def test_daily_series_and_x402scan_targets(tmp_path):
    scenario = small(
        simulation={"name": "days", "seed": 5, "duration": 150_000, "drain": 600},
        chain={"block_time": 5.0},
        agents=[
            {"name": "buyers", "count": 3, "funding": "50", "arrivals": {"kind": "poisson", "rate": 1 / 3600}}
        ],
        x402scan={"transactions": 100, "volume_usdc": "5", "buyers": 3, "sellers": 1, "tolerance": 0.02},
    )
    result = run(scenario, out=tmp_path / "out", plots=False)
    s, daily = result.summary, result.daily
    assert [d["day"] for d in daily] == [0, 1]
    assert sum(d["transactions"] for d in daily) == s["x402scan"]["transactions"] > 50
    assert sum(d["fac.volume_usdc"] for d in daily) == pytest.approx(s["x402scan"]["volume_usdc"])
    assert all(d["buyers"] == 3 and d["sellers"] == 1 for d in daily)  # each buyer counted once a day
    with (tmp_path / "out" / "daily.csv").open() as f:
        assert [int(r["transactions"]) for r in csv.DictReader(f)] == [d["transactions"] for d in daily]
    scan = s["x402scan"]
    assert scan["targets"]["buyers"] == {"target": 3, "deviation": 0.0, "within_tolerance": True}
    expected = (scan["transactions"] - 100) / 100
    assert scan["targets"]["transactions"]["deviation"] == pytest.approx(expected, abs=1e-6)
    assert scan["within_tolerance"] is False and scan["targets"]["volume_usdc"]["target"] == 5.0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### Targets" in report and "### Per virtual day" in report


def test_a_facilitator_sharing_settlements_hands_them_to_late_replays():
    """A replay that reaches a facilitator with dedupe="share" long after the first settlement is
    answered from that settlement's receipt, which is kept (and then dropped) for it."""
    s = run(
        "scenarios/replay-attack.toml",
        overrides=parse_overrides(
            [
                "servers.open.order=upfront",
                "facilitators.facilitator.dedupe=share",
                'agents.replayers.behaviour={kind="replay", times=5, delay={kind="exponential", mean=40.0}}',
            ],
        ),
        plots=False,
        keep_rows=False,
    ).summary
    assert "unfinished" not in s["outcomes"]
    assert s["security"]["replays_served"] == s["security"]["served_without_settlement"] > 0
    assert all(s["invariants"].values())
