"""The SimPy world: the unchanged roles, answered in virtual time, on the embedded chain.

Theory of operation. Every role runs as it does anywhere else: a client's ``fetch``, a server's
``handle`` are generators of effects (``actors.messages``). ``drive`` is this world's ``run``: a
SimPy process that answers each effect after the time it takes here. A ``World`` holds what the
scenario builds (chain, facilitators, servers, agents, governors, the trust world; ``build`` makes
the parts from their specs) and the state of the run; its parts do the rest:

* ``driver.SimDriver`` answers the effects of one exchange (client -> server -> facilitator, the
  application, approvals and feedback) in virtual time.
* ``producer.BlockProducer`` ticks every block time (or flashblock time): it mines every pending
  transaction into one block stamped with the virtual time, so validity windows, expiry and
  finality are all judged in virtual time.
* ``book.InFlight`` keeps the rows open and the transactions a reader still needs (``hold_tx``:
  the settle call, the row until it is written, a facilitator that may share the settlement until
  it expires), so nothing kept grows with the number of payments. Each mined block is folded into
  the run's metrics at once (``on_block``, ``metrics``).

* Governance. A group that names a ``[[policies]]`` entry pays through a ``Governor`` of that
  policy (one per policy in use, its projects the groups using it, payee labels in its lists
  turned into addresses): the reference client asks it before signing. An ``Approve`` effect is
  answered by the group's simulated approver after its delay, in virtual time (grant drawn from a
  seeded stream; an approver refuses an agent that was frozen while it waited). The governors share
  one hash-chained audit log (``audit=PATH`` writes it; without, its chain is still computed for
  the summary's head), watched for freezes, whose virtual time is kept per agent. A row is
  ``attack``-bound when a compromised behaviour sent it or when a price-bait endpoint (a change
  with ``attack = true``) quoted it, and ``after_freeze`` when its payment was signed while its
  agent was frozen; the ``PaymentBook`` turns both into on-chain figures.
  ``World(governance=False)`` builds the same world without governors (the counterfactual).

* Trust. With ERC-8004 identities, AP2 mandates or RFC 9421 signatures in the scenario,
  ``World.trust`` (a ``trust.TrustWorld``) registers the servers at the start and gives the roles
  their trust arguments; the client's ``GiveFeedback`` effect is answered by sending the
  transaction into the pending pool (``sim.trust``), ``Handle`` by the server's delivery (good or
  garbage), and a crawl policy's verdict is noted on the row the server is judging.

* Transports and tasks. ``timed_transports`` are the transports whose latency model adds time
  (``[transports]``), and ``sessions`` the agent-server sessions set up so far (``driver``); groups
  with a ``task`` discover their tools in a modelled Bazaar and pay them step by step
  (``toolchain``), counted in ``RunMetrics.toolchain``.

Rules: all randomness comes from streams derived from the scenario seed (``World.rng``); the
world never reads the wall clock; it holds no protocol rule of its own.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import simpy

from ..actors.messages import Approval
from ..errors import ChainError
from ..evm.backend import ChainConfig, make_chain
from ..evm.chain import LocalChain
from ..evm.eip712 import address_of_key
from ..evm.hashing import keccak
from ..evm.ledger import LedgerChain
from ..governance import Decision, Governor, GovernorStats
from . import build
from . import scenario as sc
from .book import InFlight
from .build import Agent, AuditTap, SimFacilitator, SimServer
from .metrics import ChainFolder, PaymentBook, RunMetrics, SupplyCheck
from .producer import BlockProducer
from .records import Row, RowWriter
from .trust import TrustBook, TrustWorld

if TYPE_CHECKING:
    from .distributions import Distribution

APPROVER = "simulated approver"


# Backend options of a simulated chain: on the ledger, a used authorization an hour past its
# validBefore can never settle, so it is forgotten (state does not grow with payments).
SIM_OPTIONS: dict[str, dict[str, Any]] = {"ledger": {"prune_authorizations_after": 3600}}


class World:
    """A scenario built and ready to run: chain, roles, agents and the SimPy environment."""

    # the scenario's faults that are not a facilitator's own (``build.apply_faults`` sorts them)
    rpc_faults: list[sc.RpcErrors]
    lost_answers: list[sc.SettleAnswerLost]
    stalls: list[sc.ChainStall]

    def __init__(
        self,
        scenario: sc.Scenario,
        seed: int | None = None,
        writer: RowWriter | None = None,
        shard: tuple[int, int] = (0, 1),
        *,
        governance: bool = True,
        audit: str | Path | None = None,
    ) -> None:
        self.scenario = s = scenario
        self.seed = s.simulation.seed if seed is None else seed
        # Shard k of n holds the agents whose index in their group is k modulo n; everything else
        # (servers, facilitators, chain) is built whole in every shard. See ``shards``.
        self.shard = shard
        self.env = simpy.Environment()
        self.start_time = s.simulation.start_time
        self.writer = writer or RowWriter(None, keep=True)
        # Everything counted goes into ``run_metrics``; nothing is kept per payment (see ``metrics``).
        self.run_metrics = RunMetrics.start(s)
        self.tally = self.run_metrics.tally
        self.timeline = self.run_metrics.timeline
        self.latency = self.run_metrics.latency
        self.book = PaymentBook(
            self.run_metrics.security,
            {g.name: g.retry.max for g in s.agents},
            self.run_metrics.governance,
            self.run_metrics.trust,
            self.run_metrics.toolchain,
        )
        self._folder: ChainFolder | None = None
        self.flight = InFlight(self.env, self.run_metrics, self.book, self.writer, s.simulation.warmup)
        self.rows_open = self.flight.rows_open
        self.minted = 0
        self.raw_txs: dict[bytes, bytes] = {}
        self.counters: dict[str, int] = {}
        self.submitting: SimFacilitator | None = None
        self._rngs: dict[tuple[str, bool], random.Random] = {}

        config = ChainConfig(
            start_time=self.start_time,
            seed=self.seed,
            token=s.chain.token,
            block_gas_limit=s.chain.block_gas_limit,
        )
        backend = s.chain.backend
        # The simulator also funds, transacts, hooks submissions and sets time: both embedded
        # backends do, which the scenario schema's BACKENDS guarantees.
        self.chain: LocalChain | LedgerChain = cast(
            "LocalChain | LedgerChain", make_chain(backend, config, **SIM_OPTIONS.get(backend, {}))
        )
        self.chain.submit_hook = self._on_submit
        self.flight.chain = self.chain
        self.payees = {
            label: address_of_key(self.key(f"payee:{label}")) for label in build.payee_labels(self)
        }
        self.sink = address_of_key(self.key("drain-sink"))
        self.facilitators = {f.name: build.facilitator(self, f) for f in s.facilitators}
        build.apply_faults(self)
        self.trust = TrustWorld(self) if s.trust_keys() else None
        self.trust_book = TrustBook(self, self.trust) if self.trust is not None else None
        self.attack_routes: set[tuple[str, str]] = set()  # (server, route key) quoting attack-bound prices
        self.attack_targets: dict[str, list[tuple[str, str]]] = {}  # compromised group -> its targets
        # (server, route key) -> the label of the mechanism paying it (``build.mechanism_label``)
        self.endpoint_mechanisms: dict[tuple[str, str], str] = {}
        # batch-settlement: (agent, server, route key) -> virtual time of its last paid request
        self.channel_use: dict[tuple[str, str, str], float] = {}
        self.servers = {c.name: build.server(self, c) for c in s.server_copies()}
        # transports whose latency model adds time (plain HTTP by default adds none: nothing drawn)
        self.timed_transports: dict[str, sc.TransportLatency] = {
            name: latency
            for name in sc.TRANSPORTS
            if (latency := s.transports.of(name)) != sc.TransportLatency()
        }
        self.sessions: dict[tuple[str, str], simpy.Event] = {}  # (agent, server) -> session ready
        self.governance = governance
        self.specs = {g.name: g for g in s.agents}
        self.audit: AuditTap | None = None
        self.governors: dict[str, Governor] = build.make_governors(self, audit) if governance else {}
        self.run_metrics.governance.governed = bool(self.governors)
        self.governed_by: dict[str, Governor] = {}  # agent name -> its governor
        self.agents: list[Agent] = []
        self.groups: dict[str, list[Agent]] = {}
        self.named: dict[str, Agent] = {}
        build.make_agents(self)
        if self.trust is not None:
            mandated = self.trust.mandated
            self.book.mandated = {a.client.address.lower() for a in self.agents if a.group.name in mandated}
        self.producer = BlockProducer(self)
        self.flight.producer = self.producer
        self.flight.trust, self.flight.trust_book = self.trust, self.trust_book

    # -- set-up -------------------------------------------------------------------------------

    def rng(self, label: str, shared: bool = False) -> random.Random:
        """The random stream named ``label``, derived from the seed (same label, same stream). Each
        shard of a sharded run draws its own streams, except ``shared`` ones: what builds the world
        (prices, assignments) must come out the same in every shard."""
        key = (label, shared)
        stream = self._rngs.get(key)
        if stream is None:
            k, n = self.shard
            salt = "" if shared or n == 1 else f":shard {k} of {n}"
            stream = self._rngs[key] = random.Random(f"x402sim-sim:{self.seed}:{label}{salt}")
        return stream

    def key(self, label: str) -> bytes:
        """The private key named ``label``, derived from the seed."""
        return keccak(f"x402sim sim key:{self.seed}:{label}".encode())

    # -- governance -------------------------------------------------------------------------------

    def on_freeze(self, agent: str, trigger: str) -> None:
        """A governor froze ``agent`` now (its first freeze is kept, in virtual time)."""
        group = agent.rpartition("-")[0]
        self.run_metrics.governance.frozen.setdefault(agent, (group, self.env.now, trigger))

    def decided(self, agent: Agent, row: Row, decision: Decision) -> None:
        """The governor's last word on ``row``'s payment (counted; a denial becomes the row's
        outcome, with the amount and payee it would have paid)."""
        behaviour = agent.group.behaviour
        compromised = sc.is_compromised(behaviour) and row.sent >= behaviour.at
        side = "attack" if row.attack else "collateral" if compromised else "honest"
        self.run_metrics.governance.decided(agent.policy or "", side, decision)
        if not decision.allowed:
            row.outcome, row.reason = "denied", decision.explain()
            row.amount, row.pay_to = decision.attempt.amount, decision.attempt.pay_to

    def _grants(self, group: sc.AgentGroup, attack: bool) -> bool:
        p = group.approver.attack_grant if attack else group.approver.grant
        return self.rng(f"approver:{group.name}").random() < p

    def approve_at_once(self, decision: Decision) -> bool:
        """The approver of a payment signed outside ``fetch`` (a race's): no delay."""
        agent = decision.attempt.agent
        return self._grants(self.specs[agent.rpartition("-")[0]], False)

    def frozen(self, agent: str) -> dict:
        """The agents ``agent``'s governor has frozen (empty: no governor)."""
        governor = self.governed_by.get(agent)
        return governor.frozen if governor is not None else {}

    def approve(self, row: Row) -> Generator[simpy.Event, Any, Approval]:
        """The group's simulated approver answers ``row``'s payment after its delay (an agent frozen
        meanwhile is denied by the governor whatever the answer)."""
        group = self.specs[row.group]
        yield self.env.timeout(group.approver.delay.sample(self.rng(f"approver-delay:{group.name}")))
        return Approval(self._grants(group, row.attack), by=APPROVER, now=self.now())

    # -- time and chain -------------------------------------------------------------------------

    def now(self) -> int:
        """Unix time of the current virtual instant (what the roles are told)."""
        return self.start_time + int(self.env.now)

    def sync_chain(self) -> None:
        t = self.now()
        if t > self.chain.now:
            self.chain.set_time(t)

    def _on_submit(self, raw: bytes) -> None:
        fac = self.submitting
        if fac is not None and self.fault_hits(self.rpc_faults, fac, "faults:rpc"):
            self.count("rpc_errors_injected")
            raise ChainError("injected RPC error: the node refused the submission")
        self.raw_txs[keccak(raw)] = raw

    def fault_hits(
        self, faults: Sequence[sc.RpcErrors | sc.SettleAnswerLost], fac: SimFacilitator, stream: str
    ) -> bool:
        """Whether one of ``faults`` (windows with a probability, for one facilitator or all) strikes
        ``fac`` now."""
        t = self.env.now
        return any(
            f.covers(t) and f.facilitator in (None, fac.name) and self.rng(stream).random() < f.probability
            for f in faults
        )

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def latency_of(self, dist: Distribution, label: str) -> float:
        return dist.sample(self.rng(f"latency:{label}"))

    # -- rows and transactions in flight (``book.InFlight``) ----------------------------------------

    def open_row(self, agent: Agent, kind: str, server: str, endpoint: str) -> Row:
        return self.flight.open_row(agent, kind, server, endpoint)

    def close_row(self, row: Row) -> None:
        self.flight.close_row(row)

    def record_payment(self, row: Row, payment) -> None:
        """Note a payment the agent sent (signed honestly or forged) for the invariants."""
        self.flight.record_payment(row, payment)

    def hold_tx(self, h: bytes, row: Row | None = None, until: int | None = None) -> None:
        self.flight.hold_tx(h, row, until)

    def release_tx(self, h: bytes) -> None:
        self.flight.release_tx(h)

    def is_held(self, h: bytes) -> bool:
        return self.flight.is_held(h)

    # -- what the chain did, folded as blocks are mined -------------------------------------------------

    def _chain_folder(self) -> ChainFolder:
        if self._folder is None:
            self._folder = ChainFolder(self, self.run_metrics, self.book)
        return self._folder

    def on_block(self, block) -> None:
        """Fold a block just mined into the metrics; its receipts no one will read are forgotten."""
        self.flight.folded(self._chain_folder().fold_block(block), block.timestamp)

    def metrics(self) -> RunMetrics:
        """The run's counters, at its end: folds what is left of the chain, resolves every
        authorization still open and checks the token's books on this world's chain."""
        folder = self._chain_folder()
        self.flight.forget_receipts([h for h in folder.catch_up() if not self.flight.is_held(h)])
        self.book.flush()
        if self.trust is not None:
            self.trust.final_reputations()
        m = self.run_metrics
        for name, f in self.facilitators.items():
            stats = m.facilitators[name]
            stats.verifies, stats.settles = f.verifies, f.settles
            stats.waits, stats.max_queue = f.waits, f.max_queue
        m.agents = Counter({name: len(members) for name, members in self.groups.items()})
        m.events = Counter(self.counters)
        m.blocks, m.height = self.producer.blocks, self.producer.height
        m.virtual_seconds = self.env.now
        chain = self.chain
        holders = folder.holders | {a.client.address for a in self.agents}
        supply, balances = chain.total_supply(), sum(chain.balance_of(a) for a in holders)
        conserved = supply == self.minted == m.mints and balances == supply
        m.supply = SupplyCheck(self.minted, supply, balances, conserved, shards=1)
        governor_stats = GovernorStats()
        for governor in self.governors.values():
            governor_stats.merge(governor.stats)
        m.governance.stats = governor_stats
        if self.audit is not None:
            m.governance.audit_entries, m.governance.audit_head = self.audit.count, self.audit.head
            self.audit.close()
        return m


class Chooser:
    """Draws an endpoint index by the group's choice model."""

    def __init__(self, choice, n: int, rng: random.Random) -> None:
        weights = sc.choice_weights(choice, n)
        total, self._cum = 0.0, []
        for w in weights:
            total += w
            self._cum.append(total)
        self._total = total
        self._rng = rng

    def pick(self) -> int:
        return min(len(self._cum) - 1, bisect.bisect_right(self._cum, self._rng.random() * self._total))


__all__ = ["Agent", "AuditTap", "Chooser", "SimFacilitator", "SimServer", "World"]
