"""The numbers of a run: tallies of its rows, and what the chain says happened.

Rules:

* On-chain facts come from the chain's receipts, never from what a role answered: settlements,
  volume, gas, the x402scan figures and the invariants are computed from ``Transfer`` and
  ``AuthorizationUsed`` logs of transactions sent by the run's facilitators.
* ``Tally`` sees every row once, as it is written, and keeps counters (plus, for the security
  figures, a count per authorization).
* Amounts are reported in USDC and USD as floats rounded to 6 decimals, so a summary is the same
  on every machine; wall-clock and resource figures are kept apart (``wall_seconds``,
  ``resources``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from ..protocol import reason_class
from .fees import Biller, gas_cost
from .records import Row, percentiles
from .scenario import ATOMIC

AUTHORIZATION_USED = bytes.fromhex("98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5")


def usdc(atomic: int) -> float:
    return round(atomic / ATOMIC, 6)


def failure_class(row: Row) -> str:
    """A stable label for a failed row: the reason's class when it is a protocol reason code."""
    cls = reason_class(row.reason) if row.reason else None
    if cls is not None and cls.value != "unknown":
        return cls.value
    if row.outcome == "refused":
        return "policy"
    if row.outcome == "error":
        return (
            "facilitator_unreachable"
            if "unreachable" in row.reason or "answer" in row.reason
            else "server_error"
        )
    if row.reason == "payment already presented":
        return "replay_guard"
    if row.reason.lower().startswith("no matching"):
        return "no_matching_requirements"
    return row.outcome


@dataclass
class Tally:
    """Counters over the rows of a run."""

    warmup: float
    rows: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    servers: dict = field(default_factory=lambda: defaultdict(Counter))
    groups: dict = field(default_factory=lambda: defaultdict(Counter))
    served: Counter = field(default_factory=Counter)  # (payer, nonce) -> 200 answers
    attempts: dict = field(default_factory=lambda: defaultdict(set))  # origin row -> keys paid with

    def add(self, row: Row) -> None:
        self.rows += 1
        self.outcomes[row.outcome] += 1
        self.kinds[row.kind] += 1
        server, group = self.servers[row.server], self.groups[row.group]
        server["requests"] += 1
        group["requests"] += 1
        key = (row.payer.lower(), row.nonce.lower()) if row.nonce else None
        if row.outcome not in ("paid", "free"):
            self.failures[failure_class(row)] += 1
        if row.outcome == "paid":
            server["paid"] += 1
            server["revenue"] += row.amount
            group["paid"] += 1
        elif row.outcome in ("rejected", "settle_failed"):
            server["refused"] += 1
        elif row.outcome == "error":
            server["errors"] += 1
        if row.outcome != "free":
            group["needed_payment"] += 1
        if row.outcome == "refused":
            group["refused_by_policy"] += 1
        if row.handled:
            server["handler_runs"] += 1
            if row.outcome != "paid":
                self.outcomes["handler_ran_unpaid"] += 1
        if row.kind == "replay" and row.status == 200:
            self.kinds["replay_served"] += 1
        if key is not None and row.status == 200:
            self.served[key] += 1
        if key is not None:
            self.attempts[row.origin or row.id].add(key)


def chain_facts(world) -> dict:
    """Settlements, transfers and gas as the chain records them."""
    chain = world.chain
    facilitators = {f.role.address: name for name, f in world.facilitators.items()}
    agents = {a.client.address: a for a in world.agents}
    token = chain.usdc
    settlements, txs, drains, mints = [], [], [], 0
    for r in sorted(chain.receipts(), key=lambda r: (r.block_number, r.index)):
        transfers = [t for t in r.transfers() if t.token == token]
        if r.sender in facilitators:
            used = [
                (to_checksum_address(log.topics[1][-20:]), "0x" + log.topics[2].hex())
                for log in r.logs
                if log.address == token and log.topics and log.topics[0] == AUTHORIZATION_USED
            ]
            txs.append((facilitators[r.sender], r, transfers))
            for t, (_, nonce) in zip(transfers, used, strict=False):
                settlements.append((facilitators[r.sender], r, t, nonce))
        else:
            for t in transfers:
                if int(t.from_, 16) == 0:
                    mints += t.value
                else:
                    drains.append((t, r.sender))  # an agent moving its own funds, if the invariant holds
    return {"settlements": settlements, "txs": txs, "drains": drains, "mints": mints, "agents": agents}


def build_summary(world, tally: Tally, wall_seconds: float, peak_rss_mb: float) -> dict:
    s = world.scenario
    facts = chain_facts(world)
    chain = world.chain
    eth_usd = s.chain.eth_usd

    # -- gas and facilitator economics --------------------------------------------------------------
    per_fac: dict[str, dict] = {
        name: {
            "settlements": 0,
            "failed_transactions": 0,
            "verify_requests": f.verifies,
            "settle_requests": f.settles,
            "gas_used": 0,
            "gas_wei": 0,
            "fees_earned_usdc": 0,
            "mean_wait_ms": round(1000 * sum(f.waits) / len(f.waits), 3) if f.waits else 0.0,
            "max_queue": f.max_queue,
        }
        for name, f in world.facilitators.items()
    }
    billers = {name: Biller(f.spec.fee) for name, f in world.facilitators.items()}
    by_gas: Counter = Counter()
    total_gas = total_wei = l1_wei = 0
    for name, r, transfers in facts["txs"]:
        cost = gas_cost(s.chain.fee, r.gas_used, world.raw_txs.get(r.tx_hash, b""))
        row = per_fac[name]
        row["gas_used"] += r.gas_used
        row["gas_wei"] += cost.total
        total_gas += r.gas_used
        total_wei += cost.total
        l1_wei += cost.l1_data
        ok = r.success and bool(transfers)
        by_gas[(r.gas_used, ok)] += 1
        if ok:
            row["settlements"] += 1
            row["fees_earned_usdc"] += billers[name].bill(sum(t.value for t in transfers), r.block_timestamp)
        else:
            row["failed_transactions"] += 1
    for row in per_fac.values():
        gas_usd = row["gas_wei"] / 1e18 * eth_usd
        row["gas_eth"] = round(row.pop("gas_wei") / 1e18, 12)
        row["gas_usd"] = round(gas_usd, 6)
        fees = row["fees_earned_usdc"]
        row["fees_earned_usdc"] = usdc(fees)
        row["margin_usd"] = round(fees / ATOMIC - gas_usd, 6)

    settled = facts["settlements"]
    n_settled = len(settled)
    ok_gas = [g * n for (g, ok), n in by_gas.items() if ok]
    gas = {
        "total_gas": total_gas,
        "eth": round(total_wei / 1e18, 12),
        "usd": round(total_wei / 1e18 * eth_usd, 6),
        "l1_data_usd": round(l1_wei / 1e18 * eth_usd, 6),
        "per_settlement": round(sum(ok_gas) / n_settled, 1) if n_settled else None,
        "usd_per_settlement": round(total_wei / 1e18 * eth_usd / n_settled, 9) if n_settled else None,
        "by_gas_used": [
            {"gas_used": g, "settled": ok, "transactions": n} for (g, ok), n in sorted(by_gas.items())
        ],
    }

    # -- x402scan --------------------------------------------------------------------------------
    def scan(items) -> dict:
        return {
            "transactions": len(items),
            "volume_usdc": usdc(sum(t.value for _, _, t, _ in items)),
            "buyers": len({t.from_ for _, _, t, _ in items}),
            "sellers": len({t.to for _, _, t, _ in items}),
        }

    x402scan = scan(settled)
    x402scan["per_facilitator"] = {
        name: scan([x for x in settled if x[0] == name]) for name in world.facilitators
    }

    # -- security ----------------------------------------------------------------------------------
    settled_keys = Counter((t.from_.lower(), nonce.lower()) for _, _, t, nonce in settled)
    served_without = sum(max(0, n - settled_keys.get(key, 0)) for key, n in tally.served.items())
    undelivered = sum(1 for key in settled_keys if tally.served.get(key, 0) == 0)
    double_paid = sum(1 for keys in tally.attempts.values() if sum(1 for k in keys if k in settled_keys) > 1)
    security = {
        "replays_attempted": tally.kinds["replay"],
        "replays_served": tally.kinds["replay_served"],
        "race_copies": tally.kinds["race"],
        "double_settlements": sum(1 for n in settled_keys.values() if n > 1),
        "served_without_settlement": served_without,
        "settled_without_delivery": undelivered,
        "requests_paid_twice": double_paid,
        "handler_runs_unpaid": tally.outcomes["handler_ran_unpaid"],
    }

    # -- invariants -------------------------------------------------------------------------------
    supply = chain.total_supply()
    holders = (
        {t.to for _, _, t, _ in settled}
        | {t.from_ for _, _, t, _ in settled}
        | {t.to for t, _ in facts["drains"]}
        | set(facts["agents"])
    )
    balances = sum(chain.balance_of(a) for a in holders)
    matched: Counter = Counter()
    unmatched = 0
    for _, _, t, nonce in settled:
        key = (t.from_.lower(), nonce.lower())
        signed = world.signed.get(key)
        if signed is None or signed[0] != t.value or signed[1].lower() != t.to.lower():
            unmatched += 1
        matched[key] += 1
    stray = [t for t, sender in facts["drains"] if sender != t.from_ or t.from_ not in facts["agents"]]
    invariants = {
        "supply_conserved": supply == world.minted == facts["mints"] and balances == supply,
        "transfers_match_payments": unmatched == 0 and not stray and all(n == 1 for n in matched.values()),
        "no_authorization_settled_twice": all(n == 1 for n in settled_keys.values()),
    }

    # -- servers and agents --------------------------------------------------------------------------
    servers = {
        name: {
            "requests": tally.servers[name]["requests"],
            "paid": tally.servers[name]["paid"],
            "refused": tally.servers[name]["refused"],
            "errors": tally.servers[name]["errors"],
            "handler_runs": tally.servers[name]["handler_runs"],
            "revenue_usdc": usdc(tally.servers[name]["revenue"]),
        }
        for name in world.servers
    }
    spend = Counter()
    for _, _, t, _ in settled:
        agent = facts["agents"].get(t.from_)
        if agent is not None:
            spend[agent.group.name] += t.value
    received = Counter()
    for _, _, t, _ in settled:
        received[t.to] += t.value
    payees = {label: usdc(received[address]) for label, address in world.payees.items()}
    agents = {}
    for group in s.agents:
        g = tally.groups[group.name]
        agents[group.name] = {
            "agents": group.count,
            "behaviour": group.behaviour.kind,
            "requests": g["requests"],
            "paid": g["paid"],
            "refused_by_policy": g["refused_by_policy"],
            "spend_usdc": usdc(spend[group.name]),
            "success_rate": round(g["paid"] / g["needed_payment"], 6) if g["needed_payment"] else None,
        }

    lat = world.latency
    summary = {
        "scenario": s.simulation.name,
        "seed": world.seed,
        "virtual_seconds": round(world.env.now, 6),
        "wall_seconds": round(wall_seconds, 3),
        "requests": tally.rows,
        "paid_requests": tally.outcomes["paid"],
        "settled_payments": n_settled,
        "outcomes": dict(sorted((k, v) for k, v in tally.outcomes.items() if k != "handler_ran_unpaid")),
        "failures": dict(sorted(tally.failures.items())),
        "latency_ms": {
            "end_to_end": percentiles(lat["end_to_end"]),
            "verify": percentiles(lat["verify"]),
            "settle": percentiles(lat["settle"]),
            "finality": percentiles(lat["finality"]),
        },
        "volume_usdc": x402scan["volume_usdc"],
        "gas": gas,
        "facilitators": per_fac,
        "servers": servers,
        "payees": payees,
        "agents": agents,
        "security": security,
        "invariants": invariants,
        "x402scan": x402scan,
        "chain": {"blocks": world.producer.blocks, "height": world.producer.height},
        "events": dict(sorted(world.counters.items())),
        "resources": {
            "peak_rss_mb": round(peak_rss_mb, 1),
            "wall_seconds": round(wall_seconds, 3),
            "payments_per_wall_second": round(n_settled / wall_seconds, 1) if wall_seconds > 0 else None,
        },
    }
    return summary


VOLATILE = ("wall_seconds", "resources")


def stable(summary: dict) -> dict:
    """The summary without its wall-clock and resource fields: what the seed determines."""
    return {k: v for k, v in summary.items() if k not in VOLATILE}
