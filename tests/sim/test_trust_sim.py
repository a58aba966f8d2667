"""Trust in the simulator (issue 11): ERC-8004 reputation steering paying agents, AP2 mandates
bounding what they may spend, RFC 9421 signatures deciding which crawlers pay. Small versions of
the three shipped scenarios; every outcome is judged from the chain (balances, Transfer and
NewFeedback logs, registry reads, authorizationState), then compared with what the summary says."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from eth_abi import decode
from typer.testing import CliRunner

from x402sim.cli import app
from x402sim.evm import erc8004
from x402sim.evm.hashing import keccak
from x402sim.sim import ScenarioError, load_scenario, run
from x402sim.sim.cli import parse_overrides
from x402sim.sim.metrics import AUTHORIZATION_USED, RunMetrics
from x402sim.sim.records import RowWriter
from x402sim.sim.report import crawl_figure, mandates_figure, markdown_report, reputation_figure
from x402sim.sim.run import run_world
from x402sim.sim.shards import run_shard
from x402sim.sim.summary import RunFacts, build_summary, stable, summary_from_shards
from x402sim.sim.world import World
from x402sim.trust.identity import parse_registration
from x402sim.trust.mandates import MandateVerifier, PaymentFacts, attached
from x402sim.trust.reputation import TAG_DELIVERED, read_feedback_uri

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
REPUTATION = SCENARIOS / "reputation-market.toml"
MANDATES = SCENARIOS / "mandated-agents.toml"
CRAWL = SCENARIOS / "pay-per-crawl.toml"

SMALL_REPUTATION = [
    "simulation.duration=300",
    "agents.careful.count=8",
    "agents.naive.count=8",
    "agents.careful.arrivals.rate=0.08",
    "agents.naive.arrivals.rate=0.08",
]
SMALL_MANDATES = ["simulation.duration=360"]
SMALL_CRAWL = ["simulation.duration=120"]


class Observed:
    """A ``World`` run to its end, with what its chain did captured as blocks were mined (the world
    forgets receipts once folded): every token transfer with its authorization nonce, every
    NewFeedback event; and every payment an agent sent."""

    def __init__(self, path: Path, overrides: list[str]) -> None:
        self.scenario = load_scenario(path, parse_overrides(overrides))
        self.world = world = World(self.scenario, writer=RowWriter(None, keep=True))
        self.transfers: list[dict] = []
        self.feedback: list[dict] = []
        self.payments: list[tuple] = []
        chain = world.chain
        fold, record = world.on_block, world.record_payment

        def on_block(block):
            for h in block.tx_hashes:
                receipt = chain.receipt(h)
                if receipt is not None:
                    self._read(receipt, block.timestamp)
            fold(block)

        def record_payment(row, payment):
            self.payments.append((row, payment))
            record(row, payment)

        world.on_block = on_block
        world.record_payment = record_payment
        self.metrics = run_world(world)
        self.summary = build_summary(self.metrics, RunFacts.of(world))
        self.rows = world.writer.kept
        self.agents = {a.client.address: a for a in world.agents}

    def _read(self, receipt, timestamp: int) -> None:
        chain = self.world.chain
        nonces = [
            "0x" + log.topics[2].hex()
            for log in receipt.logs
            if log.address == chain.usdc and log.topics[0] == AUTHORIZATION_USED
        ]
        for t, nonce in zip(receipt.transfers(), [*nonces, *[None] * 8], strict=False):
            if t.token == chain.usdc and int(t.from_, 16):
                tx = "0x" + receipt.tx_hash.hex()
                self.transfers.append(
                    {
                        "from": t.from_,
                        "to": t.to,
                        "value": t.value,
                        "nonce": nonce,
                        "tx": tx,
                        "time": timestamp,
                    }
                )
        for log in receipt.logs:
            if log.address == chain.reputation_registry and log.topics[0] == erc8004.NEW_FEEDBACK_TOPIC:
                types = ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"]
                _, value, _, tag1, _, _, uri, digest = decode(types, log.data)
                self.feedback.append(
                    {
                        "agent_id": int.from_bytes(log.topics[1], "big"),
                        "client": "0x" + log.topics[2][-20:].hex(),
                        "value": value,
                        "tag1": tag1,
                        "uri": uri,
                        "hash": digest,
                    }
                )

    def group_of(self, address: str) -> str | None:
        agent = self.agents.get(address)
        return agent.group.name if agent is not None else None


# -- reputation-market ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market():
    return Observed(REPUTATION, SMALL_REPUTATION)


def _garbage(scenario) -> set[str]:
    return {c.name for c in scenario.server_copies() if c.spec.deliver.kind == "garbage"}


def test_registered_servers_are_agents_paid_at_their_agent_wallet(market):
    world, chain = market.world, market.world.chain
    ids = world.trust.agent_ids
    assert len(ids) == 6
    for copy in market.scenario.server_copies():
        agent_id = ids[copy.name]
        assert erc8004.agent_wallet(chain, agent_id) == world.payees[copy.payee]
        assert erc8004.owner_of(chain, agent_id) not in (None, world.payees[copy.payee])
        uri = erc8004.agent_uri(chain, agent_id)
        registration = parse_registration(read_feedback_uri(uri))  # the same data: URI form
        entry = registration.registration_on(chain.chain_id, chain.identity_registry)
        assert registration.name == copy.name and entry is not None and entry.agent_id == agent_id


def test_reputation_steers_careful_agents_away_from_garbage_and_the_chain_agrees(market):
    s, world = market.summary, market.world
    assert all(s["invariants"].values()), s["invariants"]
    garbage = _garbage(market.scenario)
    payee_server = {world.payees[c.payee]: c.name for c in market.scenario.server_copies()}
    # spend on garbage servers by group and quarter, from the Transfer logs alone
    spent, wasted = Counter(), Counter()
    start, duration = world.start_time, market.scenario.simulation.duration
    for t in market.transfers:
        group = market.group_of(t["from"])
        quarter = min(3, int(4 * (t["time"] - start) / duration))
        spent[(group, quarter)] += t["value"]
        if payee_server[t["to"]] in garbage:
            wasted[(group, quarter)] += t["value"]
    share = {(g, q): wasted[(g, q)] / spent[(g, q)] for g, q in spent}
    careful = s["reputation"]["groups"]["careful"]
    assert careful["garbage_spend_share"]["first_quarter"] == pytest.approx(share[("careful", 0)], abs=0.02)
    assert careful["garbage_spend_share"]["last_quarter"] == pytest.approx(share[("careful", 3)], abs=0.02)
    # the outcome: the careful agents' share falls over the run and ends well below the naive ones'
    assert share[("careful", 3)] < share[("careful", 0)]
    assert share[("careful", 3)] < 0.5 * share[("naive", 3)]
    assert 0.2 < share[("naive", 3)] < 0.5 and careful["choice"] == "reputation"
    # the registry, read directly: every garbage server ends reputed below every good one
    reputations = {
        name: erc8004.get_summary(world.chain, agent_id, tag1=TAG_DELIVERED)
        for name, agent_id in world.trust.agent_ids.items()
    }
    worst_good = min(r.mean for name, r in reputations.items() if name not in garbage)
    best_garbage = max(r.mean for name, r in reputations.items() if name in garbage)
    assert best_garbage < 50 < worst_good == 100
    assert s["reputation"]["garbage_servers_max_reputation"] == best_garbage
    for name, r in reputations.items():
        server = s["reputation"]["servers"][name]
        assert (server["feedback"], server["reputation"]) == (r.count, r.mean)
        payee = world.payees[name]
        received = sum(t["value"] for t in market.transfers if t["to"] == payee)
        assert server["revenue_usdc"] * 10**6 == pytest.approx(received) == world.chain.balance_of(payee)
        assert server["payments"] == sum(t["to"] == payee for t in market.transfers)


def test_every_feedback_carries_a_proof_of_payment_found_on_chain(market):
    world = market.world
    paid = {(t["tx"].lower(), t["from"].lower(), t["to"].lower()) for t in market.transfers}
    wallets = {agent_id: world.payees[name] for name, agent_id in world.trust.agent_ids.items()}
    garbage = {world.trust.agent_ids[name] for name in _garbage(market.scenario)}
    values = defaultdict(Counter)
    for f in market.feedback:
        file = read_feedback_uri(f["uri"])
        assert keccak(json.dumps(file, sort_keys=True, separators=(",", ":")).encode()) == f["hash"]
        proof = file["proofOfPayment"]
        assert proof["fromAddress"].lower() == f["client"]
        assert proof["toAddress"] == wallets[f["agent_id"]]
        assert (proof["txHash"].lower(), f["client"], proof["toAddress"].lower()) in paid
        assert f["tag1"] == TAG_DELIVERED
        values[f["agent_id"] in garbage][f["value"]] += 1
    # one review per paid delivery; garbage is rated 0, good answers 100
    assert len(market.feedback) == len(market.transfers) == market.summary["reputation"]["feedback"]["mined"]
    assert set(values[False]) == {100} and values[True][0] > values[True][100] > 0


def test_the_report_shows_the_reputation_section_and_its_plot(market, tmp_path):
    s = market.summary
    text = markdown_report(s, market.scenario)
    assert "## Reputation (ERC-8004)" in text and "### Spend on garbage servers, by group" in text
    figure = reputation_figure(s, market.metrics.trust, market.metrics.timeline.bucket)
    assert len(figure.axes[0].lines) == 6
    assert sum(line.get_linestyle() == "--" for line in figure.axes[0].lines) == 2
    figure.savefig(tmp_path / "reputation.png")
    json.dumps(s)


def test_registered_servers_are_refused_across_shards(tmp_path):
    with pytest.raises(ScenarioError) as info:
        run(REPUTATION, shards=2, overrides=parse_overrides(["simulation.duration=10"]))
    assert info.value.where == f"{REPUTATION}: servers[0].identity"
    assert "cannot be split across 2 shards" in info.value.problem
    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["run", str(REPUTATION), "--shards", "2", "--out", str(out)])
    assert result.exit_code == 2 and "reputation section" in result.output and not out.exists()


# -- mandated-agents --------------------------------------------------------------------------------------


def _outside(scenario, world, transfers, group_of) -> tuple[Counter, Counter]:
    """What moved on chain outside the mandates, judged from the transfers alone (in chain order)."""
    mandates = {g.name: g.mandate for g in scenario.agents if g.mandate is not None}
    allowed = {
        name: {world.payees[label] for label in world.trust.payee_labels(m.allowed_payees)}
        for name, m in mandates.items()
    }
    spent, count, outside = Counter(), Counter(), Counter()
    for t in transfers:
        m = mandates.get(group_of(t["from"]))
        if m is None:
            continue
        spent[t["from"]] += t["value"]
        count[t["from"]] += 1
        reasons = []
        if not m.amount_range.min <= t["value"] <= m.amount_range.max:
            reasons.append("amount_out_of_range")
        if t["to"] not in allowed[group_of(t["from"])]:
            reasons.append("payee_not_allowed")
        if spent[t["from"]] > m.budget:
            reasons.append("over_budget")
        if m.recurrence.max_occurrences is not None and count[t["from"]] > m.recurrence.max_occurrences:
            reasons.append("recurrence_exceeded")
        for reason in reasons:
            outside[reason] += t["value"]
        if reasons:
            outside["usdc"] += t["value"]
            outside["payments"] += 1
    return outside, spent


def _unbound(observed) -> int:
    """Settled payments of mandated agents whose nonce is not keccak256 of a chain a fresh verifier
    accepts, and whose authorization the token does not mark used."""
    world = observed.world
    verifier = MandateVerifier(list(world.trust.users.values()))
    sent = {}
    for row, payment in observed.payments:
        auth = payment.payload["authorization"]
        sent[(auth["from"].lower(), auth["nonce"].lower())] = (row, payment)
    bad = 0
    for t in observed.transfers:
        if observed.group_of(t["from"]) not in world.trust.mandated:
            continue
        assert world.chain.authorization_state(t["from"], bytes.fromhex(t["nonce"][2:]))
        row, payment = sent[(t["from"].lower(), t["nonce"].lower())]
        chain = attached(payment.extensions)
        try:
            assert chain is not None and chain.nonce() == t["nonce"].lower()
            facts = PaymentFacts(
                t["from"], t["to"], world.chain.usdc, world.chain.network, t["value"], t["nonce"],
                payment.resource.url,
            )  # fmt: skip
            verifier.release(verifier.check(chain, facts, world.start_time + int(row.sent)))
        except Exception:
            bad += 1
    return bad


@pytest.fixture(scope="module")
def mandated():
    return Observed(MANDATES, SMALL_MANDATES)


def test_every_out_of_mandate_attempt_is_refused_and_nothing_outside_settles(mandated):
    s, world, scenario = mandated.summary, mandated.world, mandated.scenario
    m = s["mandates"]
    assert all(s["invariants"].values()), s["invariants"]
    # judged from the chain: nothing moved outside a mandate, every settled nonce binds a valid chain
    outside, spent = _outside(scenario, world, mandated.transfers, mandated.group_of)
    assert outside["payments"] == 0 and _unbound(mandated) == 0
    assert m["settled_outside_mandate"]["payments"] == 0 == m["settled_without_valid_mandate"]
    budgets = {g.name: g.mandate.budget for g in scenario.agents}
    for address, agent in mandated.agents.items():
        assert spent[address] <= budgets[agent.group.name]
        assert world.chain.balance_of(address) == agent.group.funding - spent[address]
    # attempts outside the range or the payee list: each refused by the server, none paid
    groups = {g.name: g for g in scenario.agents}
    codes = Counter()
    for row, _ in mandated.payments:
        mandate = groups[row.group].mandate
        allowed = {world.payees[x] for x in world.trust.payee_labels(mandate.allowed_payees)}
        in_range = mandate.amount_range.min <= row.amount <= mandate.amount_range.max
        if not in_range or row.pay_to not in allowed:
            assert row.outcome == "rejected" and row.reason.startswith("mandate refused: "), row
            codes[row.reason.split(": ")[1]] += 1
    assert codes["amount_out_of_range"] > 0 and codes["payee_not_allowed"] > 0
    assert m["refused_by_code"]["budget_exceeded"] > 0 and m["refused_by_code"]["recurrence_exceeded"] > 0
    # the redirect at t=300: assistants' payments to news after it are refused, those before settle
    news = [r for r, _ in mandated.payments if r.group == "assistants" and r.server == "news"]
    assert {r.outcome for r in news if r.sent > 301} == {"rejected"}
    assert {r.outcome for r in news if r.done < 300} == {"paid"}
    # honest payments settle: every assistant payment within its mandate was paid
    honest = [
        r for r, _ in mandated.payments if r.group == "assistants" and r.pay_to != world.payees["collector"]
    ]
    assert honest and all(r.outcome == "paid" for r in honest)
    capped = [a for a in mandated.agents.values() if a.group.name == "capped"]
    assert all(sum(t["from"] == a.client.address for t in mandated.transfers) <= 5 for a in capped)
    assert m["settled"] == sum(r.outcome == "paid" for r, _ in mandated.payments) == len(mandated.transfers)


def test_the_chain_checks_catch_a_server_that_does_not_verify_mandates():
    off = Observed(MANDATES, [*SMALL_MANDATES, "simulation.duration=150", "servers.casino.mandates=false"])
    m = off.summary["mandates"]
    outside, _ = _outside(off.scenario, off.world, off.transfers, off.group_of)
    casino = off.world.payees["casino"]
    paid = sum(t["value"] for t in off.transfers if t["to"] == casino)
    assert paid > 0 and outside["payee_not_allowed"] == paid
    assert m["settled_outside_mandate"]["by_reason_usdc"]["payee_not_allowed"] * 10**6 == pytest.approx(paid)
    assert m["settled_outside_mandate"]["payments"] == outside["payments"] > 0
    assert m["settled_without_valid_mandate"] == _unbound(off) > 0


def test_budgets_kept_by_each_server_alone_leak_and_the_chain_says_so():
    own = [
        "simulation.duration=150",
        'agents.bingers.targets=["shop/item", "news"]',
        'agents.bingers.mandate.allowed_payees=["shop", "news"]',
        "servers.shop.mandates=own",
        "servers.news.mandates=own",
    ]
    result = run(MANDATES, overrides=parse_overrides(own), plots=False)
    m = result.summary["mandates"]
    assert m["settled_outside_mandate"]["by_reason_usdc"]["over_budget"] > 0
    assert m["groups"]["bingers"]["max_agent_spend_usdc"] > m["groups"]["bingers"]["budget_usdc"]
    shared = run(
        MANDATES, overrides=parse_overrides([o for o in own if "=own" not in o]), plots=False
    ).summary["mandates"]
    assert shared["settled_outside_mandate"]["usdc"] == 0 and shared["refused_by_code"]["budget_exceeded"] > 0


def test_the_report_shows_the_mandates_section_and_its_plot(mandated):
    text = markdown_report(mandated.summary, mandated.scenario)
    assert "## Mandates (AP2)" in text and "### Refused, by code" in text
    figure = mandates_figure(mandated.summary, mandated.scenario, mandated.metrics.trust)
    assert len(figure.axes[0].patches) == sum(g.count for g in mandated.scenario.agents)


# -- pay-per-crawl ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crawl():
    return Observed(CRAWL, SMALL_CRAWL)


def test_only_verified_crawlers_pay_and_only_the_allowlisted_crawl_free(crawl):
    s, chain = crawl.summary, crawl.world.chain
    assert all(s["invariants"].values()), s["invariants"]
    paid_from = Counter(crawl.group_of(t["from"]) for t in crawl.transfers)
    for address, agent in crawl.agents.items():
        group = agent.group.name
        moved = sum(t["value"] for t in crawl.transfers if t["from"] == address)
        assert chain.balance_of(address) == agent.group.funding - moved
    # unsigned and badly signed crawlers never reach the content and pay nothing
    assert paid_from["scrapers"] == paid_from["forgers"] == paid_from["partner"] == 0
    rows = defaultdict(list)
    for row in crawl.rows:
        rows[row.group].append(row)
    for group in ("scrapers", "forgers"):
        assert rows[group] and all(r.status == 403 and not r.handled and not r.nonce for r in rows[group])
    # the allowlisted partner gets the content, free
    assert rows["partner"] and all(r.status == 200 and r.outcome == "free" for r in rows["partner"])
    # signed ones pay, each payment a transfer to the publisher
    publisher = crawl.world.payees["publisher"]
    for group in ("webbots", "shoppers"):
        assert paid_from[group] == sum(r.outcome == "paid" for r in rows[group]) > 0
        assert all(r.outcome == "paid" for r in rows[group])
    assert {t["to"] for t in crawl.transfers} == {publisher}
    c = s["crawl"]
    kinds = c["by_kind"]
    assert kinds["unsigned"]["blocked"] == kinds["unsigned"]["requests"] == len(rows["scrapers"])
    assert kinds["badly-signed"]["blocked"] == kinds["badly-signed"]["requests"] == len(rows["forgers"])
    assert kinds["allowlisted"]["free"] == len(rows["partner"]) and kinds["allowlisted"]["revenue_usdc"] == 0
    for kind, group in (("web-bot-auth", "webbots"), ("tap", "shoppers")):
        moved = sum(t["value"] for t in crawl.transfers if crawl.group_of(t["from"]) == group)
        assert moved > 0 and kinds[kind]["revenue_usdc"] * 10**6 == pytest.approx(moved)
        assert kinds[kind]["paid"] == kinds[kind]["payments_on_chain"] == paid_from[group]
    reasons = c["blocked_reasons"]
    assert reasons["unsigned"] == len(rows["scrapers"])
    assert {"unknown_key", "bad_signature", "expired"} <= set(reasons)
    assert sum(reasons.values()) == len(rows["scrapers"]) + len(rows["forgers"])
    assert s["security"]["handler_runs_unpaid"] == 0 and s["failures"]["crawl_blocked"] == sum(
        reasons.values()
    )


def test_the_report_shows_the_crawl_section_and_its_plot(crawl):
    text = markdown_report(crawl.summary, crawl.scenario)
    assert "## Crawl (RFC 9421 signatures)" in text and "### Blocked, by reason" in text
    assert len(crawl_figure(crawl.summary).axes[0].patches) == 4 * 5


def test_unsigned_crawlers_pay_when_the_policy_lets_them():
    s = run(
        CRAWL,
        overrides=parse_overrides([*SMALL_CRAWL, "servers.publisher.crawl.block_unsigned=false"]),
        plots=False,
    )
    kinds = s.summary["crawl"]["by_kind"]
    assert kinds["unsigned"]["blocked"] == 0 and kinds["unsigned"]["paid"] > 0
    assert kinds["unsigned"]["revenue_usdc"] > 0 and kinds["badly-signed"]["paid"] == 0


def test_crawl_shards_merge():
    scenario = load_scenario(CRAWL, parse_overrides(["simulation.duration=60"]))
    parts = [run_shard(scenario, None, k, 2) for k in range(2)]
    merged = summary_from_shards([p.metrics for p in parts], parts[0].facts)["crawl"]
    alone = [build_summary(p.metrics, p.facts)["crawl"]["by_kind"] for p in parts]
    for kind, totals in merged["by_kind"].items():
        for key in ("requests", "blocked", "paid", "free", "payments_on_chain"):
            assert totals[key] == alone[0][kind][key] + alone[1][kind][key]
    assert merged["by_kind"]["unsigned"]["payments_on_chain"] == 0
    assert RunMetrics.combine([p.metrics for p in parts]).trust.crawl == sum(
        (p.metrics.trust.crawl for p in parts), Counter()
    )


def _twice(path: Path, overrides: list[str]) -> tuple[dict, dict]:
    first = run(path, overrides=parse_overrides(overrides), plots=False, keep_rows=False).summary
    return stable(first), stable(
        run(path, overrides=parse_overrides(overrides), plots=False, keep_rows=False).summary
    )


def test_same_seed_same_crawl_summary():
    first, again = _twice(CRAWL, ["simulation.duration=60"])
    assert first == again


def test_same_seed_same_mandates_summary():
    # seeded mandates are signed with RFC 6979 ECDSA: same chains, same nonces, same calldata and gas
    first, again = _twice(MANDATES, ["simulation.duration=60"])
    assert first == again and first["mandates"]["groups"]


def test_same_seed_same_reputation_summary():
    short = ["simulation.duration=60", "agents.careful.count=4", "agents.naive.count=4"]
    first = run(REPUTATION, overrides=parse_overrides(short), plots=False, keep_rows=False).summary
    again = run(REPUTATION, overrides=parse_overrides(short), plots=False, keep_rows=False).summary
    assert stable(first) == stable(again) and first["reputation"]["feedback"]["mined"] > 0


def test_a_run_writes_the_trust_figures_with_the_others(tmp_path):
    out = tmp_path / "crawl"
    result = CliRunner().invoke(
        app, ["run", str(CRAWL), "--set", "simulation.duration=30", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert {"crawl.png", "latency_cdf.png", "report.md", "summary.json"} <= {p.name for p in out.iterdir()}
    assert "![Crawler requests by kind and verdict](crawl.png)" in (out / "report.md").read_text()
    assert "crawl badly-signed" in result.output
    assert json.loads((out / "summary.json").read_text())["crawl"]["by_kind"]["badly-signed"]["paid"] == 0


# -- schema ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "override", "where", "problem"),
    [
        (
            REPUTATION,
            'chain.backend="ledger"',
            "chain.backend",
            'servers[0].identity needs them): use backend = "evm"',
        ),
        (CRAWL, 'chain.backend="ledger"', "chain.backend", "servers[0].crawl needs them"),
        (
            REPUTATION,
            'servers.scam.deliver={kind="garbage", share=1.5}',
            "servers[1].deliver.share",
            "less than or equal to 1",
        ),
        (REPUTATION, 'servers.scam.deliver="rubbish"', "servers[1].deliver", "'rubbish'"),
        (
            REPUTATION,
            'agents.careful.choice={kind="reputation", explor=0.1}',
            "agents[0].choice.explor",
            "did you mean 'explore'?",
        ),
        (REPUTATION, "agents.careful.choice.refresh=0", "agents[0].choice.refresh", "greater than 0"),
        (REPUTATION, 'servers.scam.pay_to="scam"', "servers[1].pay_to", "shared by several servers"),
        (REPUTATION, 'agents.naive.behaviour="tamper"', "agents[1].feedback", "without the reference client"),
        (REPUTATION, "agents.naive.feedbak=true", "agents[1].feedbak", "did you mean 'feedback'?"),
        (
            MANDATES,
            "agents.assistants.feedback=true",
            "agents[0].feedback",
            "none of the group's targets is a registered server",
        ),
        (
            MANDATES,
            'agents.assistants.mandate.allowed_payees=["shopp"]',
            "agents[0].mandate.allowed_payees[0]",
            "no server named 'shopp' (did you mean 'shop'?)",
        ),
        (
            MANDATES,
            'agents.bingers.mandate.amount_range={min="0.1", max="0.05"}',
            "agents[2].mandate.amount_range",
            "is below min",
        ),
        (MANDATES, "agents.bingers.mandate.budget=0.5", "agents[2].mandate.budget", "decimal strings"),
        (
            MANDATES,
            'agents.capped.mandate.recurrence.frequency="HOURLY"',
            "agents[3].mandate.recurrence.frequency",
            "'ON_DEMAND'",
        ),
        (MANDATES, 'servers.shop.mandates="sometimes"', "servers[0].mandates", "'shared'"),
        (
            CRAWL,
            'servers.publisher.crawl.allow=["partners"]',
            "servers[0].crawl.allow[0]",
            "no agent group named 'partners' (did you mean 'partner'?)",
        ),
        (
            CRAWL,
            'servers.publisher.crawl.allow=["scrapers"]',
            "servers[0].crawl.allow[0]",
            "does not sign its requests properly",
        ),
        (CRAWL, 'agents.webbots.signature="http-sig"', "agents[0].signature", "'web-bot-auth' or 'tap'"),
        (
            CRAWL,
            'agents.forgers.signature={protocol="tap", flaw="typo"}',
            "agents[4].signature.flaw",
            "'mixed'",
        ),
    ],
)
def test_schema_errors_name_the_key_path(path, override, where, problem):
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, parse_overrides([override]))
    assert info.value.where == f"{path}: {where}"
    assert problem in info.value.problem
