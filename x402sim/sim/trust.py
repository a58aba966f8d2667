"""Who is paying, and on whose behalf, in the simulator: ERC-8004 identities and reputation, AP2
payment mandates and RFC 9421 agent signatures, built into the world and judged from the chain.

Theory of operation. ``TrustWorld`` is the part of a ``World`` that sets these up and answers what
they ask of it; the roles (``ResourceServer``, ``Client``) and the ``x402sim.trust`` and
``x402sim.evm.erc8004`` modules do the judging, unchanged:

* ERC-8004. Each server with ``identity = true`` is registered on the chain's identity registry at
  the start (by an owner key of its own; its agent URI a ``data:`` URI of its registration file), and
  its ``agentWallet`` is set to its payTo (signed by the payee's key); its 402s declare the agent
  (``ServerIdentity``). Clients that give feedback or choose by reputation read the registries
  through one ``AgentDirectory`` for the world, behind ``CachedDirectory``: wallets are read again
  when a block is mined, reputations at most every ``refresh`` seconds (as an agent would poll, and
  what keeps ``getSummary``, a loop over every entry on py-evm, affordable). A client's
  ``GiveFeedback`` effect is answered by sending ``giveFeedback`` from its wallet into the pending
  pool (mined by the block producer like any transaction); such agents get ether for gas. A server
  with ``deliver = garbage`` answers a ``share`` of its paid requests with a useless body, and a
  client rates a delivery 100 when its body holds the resource, 0 otherwise.
* AP2. Each agent of a group with a ``mandate`` holds an open Payment Mandate signed by its group's
  user key; its client closes one per payment (``AgentMandate``). Servers with ``mandates`` verify
  them with a ``MandateVerifier`` trusting every group's user: one shared by all such servers
  (``"shared"``, so a budget holds across them) or one each (``"own"``).
* RFC 9421. Each agent of a group with a ``signature`` signs every request with its own Ed25519 key
  (Web Bot Auth, naming the group's key directory ``https://<group>.agents.sim``; or TAP's
  ``agent-browser-auth``). The world's ``KeyDirectory`` holds the keys of every group that signs,
  published by its directory; a ``flaw`` signs with an unknown key, over another authority, or
  already expired. Servers with ``crawl`` run a ``CrawlPolicy`` whose ``allow`` list holds the
  allowed groups' directories (their keyids for TAP); its verdict on each request is noted on the
  request's row (``Row.crawl``).

What is counted (``metrics.TrustMetrics``, mergeable across shards, and ``TrustBook``, the live state that
feeds it) comes from the chain wherever the chain can say it: USDC received per registered server
and per timeline bucket, spend per group and quarter of the run on garbage servers, feedback
transactions mined, every mandated agent's transfers against its mandate (amount range, allowed
payees, budget and occurrences, in chain order), and, through the ``PaymentBook``, each settled
authorization of a mandated payer whose EIP-3009 nonce is not keccak256 of a mandate chain that a
fresh verifier accepts for that payment. Final reputations are read from the registry at the end.

Rules: every key, salt and nonce comes from the scenario seed; times are virtual; nothing here
re-implements a rule of the roles or of the trust modules.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

from ..actors.messages import GiveFeedback, HttpRequest, HttpResponse
from ..evm import erc8004
from ..evm.chain import ETHER
from ..evm.eip712 import address_of_key
from ..trust.identity import AgentDirectory, registration_file
from ..trust.reputation import TAG_DELIVERED, AgentRef, ServerIdentity, choose_by_reputation
from . import scenario as sc
from .metrics import TrustMetrics

if TYPE_CHECKING:
    from .metrics import RunMetrics
    from .records import Row

OWNER_ETH = ETHER  # gas for registering an agent and setting its wallet
FEEDBACK_ETH = ETHER  # gas for an agent's giveFeedback transactions (about 0.0005 ETH each at most)
GOOD, GARBAGE = 100, 0  # what a client rates a useful and a useless delivery
DIRECTORY_HOST = "agents.sim"
FLAWS = ("unknown-key", "bad-signature", "expired")
DEFAULT_REPUTATION = sc.Reputation.model_validate({"kind": "reputation"})  # a reputation choice's defaults


def crawler_kind(s: sc.Scenario, group: sc.AgentGroup) -> str:
    """How the crawl section labels a group: ``allowlisted`` (named in a crawl policy's allow list),
    ``unsigned``, ``badly-signed`` (a signature flaw), or its protocol (``web-bot-auth``, ``tap``)."""
    if any(v.crawl is not None and group.name in v.crawl.allow for v in s.servers):
        return "allowlisted"
    if group.signature is None:
        return "unsigned"
    return "badly-signed" if group.signature.flaw != "none" else group.signature.protocol


class TrustHost(Protocol):
    """What the trust features read of the world they are built in (a ``world.World``): its
    scenario, chain, seed and start, payee addresses, servers (once built), metrics and clock, its
    keys and random streams, and a way to bring the chain to the current virtual time."""

    scenario: sc.Scenario
    chain: Any
    seed: int
    start_time: int
    payees: dict[str, str]
    servers: dict[str, Any]
    run_metrics: RunMetrics
    env: Any  # the SimPy environment: ``env.now`` is the virtual time

    def key(self, label: str) -> bytes: ...

    def rng(self, label: str, shared: bool = False) -> random.Random: ...

    def sync_chain(self) -> None: ...


# -- reading the registries ------------------------------------------------------------------------------


class CachedDirectory:
    """An ``AgentDirectory`` whose reputations are kept ``refresh`` virtual seconds (``clock`` gives
    the virtual time) instead of one block; everything else is the directory's own (which keeps
    wallets and owners until the next block)."""

    def __init__(self, inner, clock, refresh: float) -> None:
        self._inner = inner
        self._clock = clock
        self.refresh = refresh
        self._reputations: dict[tuple, tuple[float, Any]] = {}

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def reputation(self, agent_id: int, clients=None, tag1: str = "", tag2: str = ""):
        key = (agent_id, tuple(clients) if clients is not None else None, tag1, tag2)
        now = self._clock()
        held = self._reputations.get(key)
        if held is None or now - held[0] >= self.refresh:
            held = (now, self._inner.reputation(agent_id, clients=clients, tag1=tag1, tag2=tag2))
            self._reputations[key] = held
        return held[1]


class ReputationChooser:
    """Picks a target index by the on-chain reputation of the targets' servers
    (``trust.reputation.choose_by_reputation``, reading through the world's cached directory)."""

    def __init__(self, trust: TrustWorld, choice: sc.Reputation, targets, rng: random.Random) -> None:
        self.trust = trust
        self.choice = choice
        self.agent_ids = [trust.agent_ids.get(server) for server, _ in targets]
        self._rng = rng

    def pick(self) -> int:
        c = self.choice
        directory = self.trust.directory_for(c.refresh)
        return choose_by_reputation(
            directory, self.agent_ids, self._rng, explore=c.explore, prior=c.prior, exponent=c.exponent
        )


def rate_delivery(response: HttpResponse) -> int:
    """A client's rating of a paid delivery: 100 when the body holds the resource, 0 when not."""
    try:
        body = response.json()
    except ValueError:
        return GARBAGE
    return GOOD if isinstance(body, dict) and body.get("resource") else GARBAGE


# -- signatures -------------------------------------------------------------------------------------------


class FlawedSigner:
    """Signs as ``signer`` does, but so that verification fails: with a key no directory holds
    (``unknown-key``), over another authority (``bad-signature``), or already expired (``expired``);
    ``mixed`` draws one of the three per request from ``rng``."""

    def __init__(self, signer, stranger, flaw: str, rng: random.Random) -> None:
        self.signer, self.stranger, self.flaw, self.rng = signer, stranger, flaw, rng

    def sign(self, method: str, authority: str, path: str, headers, now: int, **kwargs):
        flaw = self.flaw if self.flaw != "mixed" else FLAWS[self.rng.randrange(len(FLAWS))]
        if flaw == "unknown-key":
            return self.stranger.sign(method, authority, path, headers, now, **kwargs)
        if flaw == "bad-signature":
            return self.signer.sign(method, "forged." + authority, path, headers, now, **kwargs)
        return self.signer.sign(method, authority, path, headers, now - self.signer.expires_in - 1, **kwargs)


class CrawlTap:
    """A server's ``CrawlPolicy``, whose verdicts the world notes on the row being served."""

    def __init__(self, policy, trust: TrustWorld) -> None:
        self.policy = policy
        self.trust = trust

    def admit(self, method: str, authority: str, path: str, headers, now: int):
        verdict = self.policy.admit(method, authority, path, headers, now)
        row = self.trust.serving
        if row is not None and row.crawl != "block":  # a refusal sticks to its row
            row.crawl = verdict.action
            if verdict.action == "block":
                row.reason = verdict.code or "blocked"
        return verdict


# -- the world's part --------------------------------------------------------------------------------------


class TrustWorld:
    """What a ``World`` builds and answers for the trust features of its scenario (module docstring)."""

    def __init__(self, world: TrustHost) -> None:
        self.world = world
        s = self.scenario = world.scenario
        self.chain = world.chain
        self.metrics: TrustMetrics = world.run_metrics.trust
        self.serving: Row | None = None  # the row whose request a server is judging right now
        self.agent_ids: dict[str, int] = {}
        self.identities: dict[str, ServerIdentity] = {}
        self.garbage: dict[str, float] = {}  # server -> share of its deliveries that are garbage
        self._directory: AgentDirectory | None = None
        self._directories: dict[float, CachedDirectory] = {}
        copies = s.server_copies()
        for copy in copies:
            if copy.spec.deliver.kind == "garbage":
                self.garbage[copy.name] = copy.spec.deliver.share
        labels = Counter(c.payee for c in copies)
        # servers paid to an address of their own: whose revenue the chain can tell apart
        self.server_of_payee = {world.payees[c.payee]: c.name for c in copies if labels[c.payee] == 1}
        self.registered = [c for c in copies if c.spec.identity]
        if self.registered:
            self._register()
        self._mandates()
        self._signatures()

    # -- ERC-8004 --------------------------------------------------------------------------------------

    def _register(self) -> None:
        """Register every server with ``identity``: agent URI, then agentWallet = its payTo."""
        world, chain = self.world, self.chain
        owners = {c.name: world.key(f"owner:{c.name}") for c in self.registered}
        chain.fund_many([(address_of_key(key), 0, OWNER_ETH) for key in owners.values()])
        for copy in self.registered:
            key = owners[copy.name]
            agent_id = erc8004.register(chain, key)
            agent = AgentRef(agent_id, chain.chain_id, chain.identity_registry)
            erc8004.set_agent_uri(chain, key, agent_id, self._registration_uri(copy, agent))
            erc8004.set_agent_wallet(chain, key, agent_id, world.key(f"payee:{copy.payee}"))
            self.agent_ids[copy.name] = agent_id
            self.identities[copy.name] = ServerIdentity(agent, chain.reputation_registry)
        self.metrics.agents.update(self.agent_ids)

    def _registration_uri(self, copy: sc.ServerCopy, agent: AgentRef) -> str:
        """The agent URI: its registration file as a ``data:`` URI (no file host in the laboratory)."""
        file = registration_file(
            copy.name,
            description=f"x402sim server {copy.name}",
            services=[{"name": "web", "endpoint": f"http://{copy.name}.sim/"}],
            agent_id=agent.agent_id,
            chain_id=agent.chain_id,
            registry=agent.registry,
        )
        text = json.dumps(file, sort_keys=True, separators=(",", ":"))
        return "data:application/json;base64," + base64.b64encode(text.encode()).decode()

    def directory_for(self, refresh: float) -> CachedDirectory:
        """The world's ``AgentDirectory``, its reputations kept ``refresh`` seconds."""
        if self._directory is None:
            self._directory = AgentDirectory(self.chain)
        cached = self._directories.get(refresh)
        if cached is None:
            cached = CachedDirectory(self._directory, lambda: self.world.env.now, refresh)
            self._directories[refresh] = cached
        return cached

    def deliver(self, server, request: HttpRequest) -> HttpResponse:
        """The application's answer for a paid (or free) request: the resource, or garbage."""
        share = self.garbage.get(server.name)
        garbage = share is not None and self.world.rng(f"garbage:{server.name}").random() < share
        self.metrics.deliveries[(server.name, "garbage" if garbage else "good")] += 1
        if garbage:
            junk = self.world.rng(f"junk:{server.name}").randbytes(16).hex()
            return HttpResponse.of_json(200, {"junk": junk})
        return HttpResponse.of_json(200, {"resource": request.path, "paid": True})

    def give_feedback(self, agent, effect: GiveFeedback) -> bytes | None:
        """Send the feedback ``effect`` asks for from ``agent``'s wallet; its hash, or None when the
        pool refuses it (the review is lost, the payment stands)."""
        world = self.world
        world.sync_chain()
        try:
            tx = erc8004.give_feedback(self.chain, agent.key, *effect.arguments(), mine=False)
        except Exception:  # ChainError (no gas money, say) or ValueError: nothing was sent
            self.metrics.feedback["not_sent"] += 1
            return None
        self.metrics.feedback["sent"] += 1
        return tx

    def final_reputations(self) -> None:
        """Read every registered server's reputation from the registry (at the end of the run)."""
        for name, agent_id in self.agent_ids.items():
            summary = erc8004.get_summary(self.chain, agent_id, tag1=TAG_DELIVERED)
            self.metrics.reputation[name] = (summary.count, summary.mean if summary.count else None)

    # -- AP2 ----------------------------------------------------------------------------------------------

    def _mandates(self) -> None:
        s, world = self.scenario, self.world
        self.users = {}
        self.mandated = {g.name: g.mandate for g in s.agents if g.mandate is not None}
        self.verifiers: dict[str, Any] = {}
        self.auditor = None
        self.allowed: dict[
            str, set[str] | None
        ] = {}  # group -> payTo addresses (lower case) its mandate allows
        if not self.mandated and all(v.mandates == "off" for v in s.servers):
            return
        from ..trust.mandates import MandateVerifier, new_key

        self.users = {name: new_key(f"x402sim sim user:{world.seed}:{name}") for name in self.mandated}
        trusted = list(self.users.values())
        shared = MandateVerifier(trusted)
        for copy in s.server_copies():
            if copy.spec.mandates == "shared":
                self.verifiers[copy.name] = shared
            elif copy.spec.mandates == "own":
                self.verifiers[copy.name] = MandateVerifier(trusted)
        # judges each presented chain on its own (budgets and uses are released at once)
        self.auditor = MandateVerifier(trusted)
        for name, mandate in self.mandated.items():
            payees = mandate.allowed_payees
            labels = self.payee_labels(payees) if payees is not None else None
            self.allowed[name] = None if labels is None else {world.payees[x].lower() for x in labels}

    def payee_labels(self, servers: list[str]) -> list[str]:
        """The payee labels of the named servers (a template's name: all its copies)."""
        out = []
        for copy in self.scenario.server_copies():
            named = copy.name in servers or (copy.index is not None and copy.spec.name in servers)
            if named and copy.payee not in out:
                out.append(copy.payee)
        return out

    def _agent_mandate(self, group: sc.AgentGroup, m: sc.Mandate, name: str):
        from ..trust.mandates import (
            AGENT_RECURRENCE,
            ALLOWED_PAYEES,
            AMOUNT_RANGE,
            BUDGET,
            AgentMandate,
            new_key,
            open_payment_mandate,
            public_jwk,
        )

        world = self.world
        agent_key = new_key(f"x402sim sim mandate agent:{world.seed}:{name}")
        recurrence: dict[str, Any] = {"frequency": m.recurrence.frequency}
        if m.recurrence.max_occurrences is not None:
            recurrence["max_occurrences"] = m.recurrence.max_occurrences
        constraints: dict[str, Any] = {
            AMOUNT_RANGE: {"min": m.amount_range.min, "max": m.amount_range.max},
            BUDGET: {"max": m.budget},
            AGENT_RECURRENCE: recurrence,
        }
        if m.allowed_payees is not None:
            labels = self.payee_labels(m.allowed_payees)
            constraints[ALLOWED_PAYEES] = [world.payees[label] for label in labels]
        sim = self.scenario.simulation
        valid_for = m.valid_for if m.valid_for is not None else sim.duration + sim.drain + 1
        opened = open_payment_mandate(
            self.users[group.name],
            agent_key=public_jwk(agent_key),
            constraints=constraints,
            issued_at=world.start_time,
            expires_at=world.start_time + max(1, int(valid_for)),
            rng=world.rng(f"mandate-issue:{name}"),
        )
        return AgentMandate(opened, agent_key, world.rng(f"mandate-close:{name}"))

    def mandate_bound(self, row: Row, payment) -> bool | None:
        """Whether ``payment`` (sent by ``row``'s mandated agent) carries a mandate chain that a fresh
        verifier accepts for it and whose keccak256 is its EIP-3009 nonce (None: not a mandated
        group's payment)."""
        if row.group not in self.mandated or self.auditor is None:
            return None
        from ..trust.mandates import MandateRefused, PaymentFacts, attached

        role = self.world.servers[row.server].role
        try:
            chain = attached(getattr(payment, "extensions", None))
            if chain is None:
                return False
            auth = payment.payload.get("authorization", {})
            facts = PaymentFacts(
                payer=auth.get("from", ""),
                pay_to=auth.get("to", ""),
                asset=payment.accepted.asset,
                network=payment.accepted.network,
                amount=int(auth.get("value", 0)),
                nonce=auth.get("nonce", ""),
                resource=role.resource_url(role.routes[row.endpoint]),  # as the server names it
            )
            verified = self.auditor.check(chain, facts, self.world.start_time + int(row.sent))
        except (MandateRefused, ValueError, TypeError, AttributeError):
            return False
        self.auditor.release(verified)
        return True

    # -- RFC 9421 -----------------------------------------------------------------------------------------

    def _signatures(self) -> None:
        s = self.scenario
        self.signing = {g.name: g.signature for g in s.agents if g.signature is not None}
        self.policies: dict[str, Any] = {}
        if not self.signing and all(v.crawl is None for v in s.servers):
            return
        from ..trust.crawl import CrawlPolicy
        from ..trust.signatures import (
            AGENT_BROWSER_AUTH,
            WEB_BOT_AUTH,
            KeyDirectory,
            SignatureVerifier,
            agent_key,
            keyid_of,
        )

        self._agent_key = agent_key
        keys = KeyDirectory()
        allowed_by_group: dict[str, list[str]] = {}
        for group in s.agents:
            sig = group.signature
            if sig is None:
                continue
            ids = []
            for i in range(group.count):
                key = self._signing_key(group.name, i)
                source = self.directory_url(group.name) if sig.protocol == "web-bot-auth" else None
                keys.add(key.public_key(), source=source)
                ids.append(keyid_of(key))
            allowed_by_group[group.name] = (
                [self.directory_url(group.name)] if sig.protocol == "web-bot-auth" else ids
            )
        self.keys = keys
        for copy in s.server_copies():
            crawl = copy.spec.crawl
            if crawl is None:
                continue
            verifier = SignatureVerifier(keys, tags=(WEB_BOT_AUTH, AGENT_BROWSER_AUTH))
            allow = [entry for name in crawl.allow for entry in allowed_by_group.get(name, [])]
            policy = CrawlPolicy(verifier, allow=allow, block_unsigned=crawl.block_unsigned)
            self.policies[copy.name] = CrawlTap(policy, self)

    def directory_url(self, group: str) -> str:
        return f"https://{group.lower()}.{DIRECTORY_HOST}"

    def _signing_key(self, group: str, index: int):
        return self._agent_key(f"x402sim sim signer:{self.world.seed}:{group}:{index}")

    def _signer(self, group: sc.AgentGroup, sig: sc.Signature, index: int, name: str):
        from ..trust.signatures import AGENT_BROWSER_AUTH, WEB_BOT_AUTH, AgentSigner

        world = self.world
        web = sig.protocol == "web-bot-auth"

        def signer(key):
            return AgentSigner(
                key,
                protocol=WEB_BOT_AUTH if web else AGENT_BROWSER_AUTH,
                signature_agent=self.directory_url(group.name) if web else None,
                rng=world.rng(f"signature-nonces:{name}"),
            )

        own = signer(self._signing_key(group.name, index))
        if sig.flaw == "none":
            return own
        stranger = signer(self._agent_key(f"x402sim sim stranger:{world.seed}:{name}"))
        return FlawedSigner(own, stranger, sig.flaw, world.rng(f"signature-flaws:{name}"))

    # -- the roles' arguments ----------------------------------------------------------------------------

    def server_kwargs(self, copy: sc.ServerCopy) -> dict:
        out: dict[str, Any] = {}
        if copy.name in self.identities:
            out["identity"] = self.identities[copy.name]
        if copy.name in self.verifiers:
            out["mandates"] = self.verifiers[copy.name]
        if copy.name in self.policies:
            out["crawl"] = self.policies[copy.name]
        return out

    def client_kwargs(self, group: sc.AgentGroup, index: int, name: str) -> tuple[dict, int]:
        """The ``Client`` arguments of agent ``index`` of ``group`` (named ``name``), and the ether it
        needs for gas."""
        out: dict[str, Any] = {}
        eth = 0
        choice = group.choice
        if group.feedback or isinstance(choice, sc.Reputation):
            # without a reputation choice, the refresh such a choice has by default
            refresh = (choice if isinstance(choice, sc.Reputation) else DEFAULT_REPUTATION).refresh
            out["directory"] = self.directory_for(refresh)
        if group.feedback:
            out["rate"] = rate_delivery
            eth = FEEDBACK_ETH
        if group.mandate is not None:
            out["mandate"] = self._agent_mandate(group, group.mandate, name)
        if group.signature is not None:
            out["signer"] = self._signer(group, group.signature, index, name)
        return out, eth


class TrustBook:
    """Folds the trust facts of a run into its ``TrustMetrics``: transfers and feedback receipts as
    blocks are mined, rows as they are written. Keeps per agent only (mandated agents' spend)."""

    def __init__(self, world: TrustHost, trust: TrustWorld) -> None:
        s = world.scenario
        self.metrics: TrustMetrics = world.run_metrics.trust
        self.start = world.start_time
        self.duration = s.simulation.duration
        self.timeline = world.run_metrics.timeline
        self.registry = world.chain.reputation_registry
        self.server_of_payee = trust.server_of_payee
        self.garbage = set(trust.garbage)
        self.registered = set(trust.agent_ids)
        self.groups = {g.name: g for g in s.agents}
        self.crawled = any(v.crawl is not None for v in s.servers) or any(g.signature for g in s.agents)
        self.mandated = trust.mandated
        self.allowed = trust.allowed

    def transfer(
        self, buyer: str, seller: str, value: int, block_time: int, group: str | None, agent: str | None
    ) -> None:
        """A settlement the chain made (``group`` and ``agent``: the buyer's, None when unknown)."""
        m = self.metrics
        if group is not None:
            m.group_payments[group] += 1
        server = self.server_of_payee.get(seller)
        if server in self.registered:
            buckets = m.received.setdefault(server, [0] * self.timeline.buckets)
            buckets[self.timeline.index(block_time - self.start)] += value
            m.settled[server] += 1
        if group is not None and self.registered:
            quarter = min(3, max(0, int(4 * (block_time - self.start) / self.duration)))
            m.quarters[(group, quarter, "all")] += value
            if server in self.garbage:
                m.quarters[(group, quarter, "garbage")] += value
        mandate = self.mandated.get(group) if group is not None else None
        if group is not None and mandate is not None and agent is not None:
            spent = m.agent_spend[agent] + value
            m.agent_spend[agent] = spent
            m.agent_payments[agent] += 1
            reasons = []
            if not mandate.amount_range.min <= value <= mandate.amount_range.max:
                reasons.append("amount_out_of_range")
            allowed = self.allowed.get(group)
            if allowed is not None and seller.lower() not in allowed:
                reasons.append("payee_not_allowed")
            if spent > mandate.budget:
                reasons.append("over_budget")
            most = mandate.recurrence.max_occurrences
            if most is not None and m.agent_payments[agent] > most:
                reasons.append("recurrence_exceeded")
            for reason in reasons:
                m.outside[reason] += value
            if reasons:
                m.outside["usdc"] += value
                m.outside["payments"] += 1

    def receipt(self, r) -> None:
        """A mined transaction that no facilitator sent: counted if it is feedback."""
        if r.to == self.registry:
            self.metrics.feedback["mined" if r.success else "reverted"] += 1

    def written(self, row: Row) -> None:
        m = self.metrics
        if row.group in self.mandated:
            if row.nonce:
                m.mandate[(row.group, "payments")] += 1
            if row.outcome == "paid":
                m.mandate[(row.group, "settled")] += 1
            if row.reason.startswith("mandate refused: "):
                code = row.reason.removeprefix("mandate refused: ").split(":", 1)[0]
                m.mandate[(row.group, "refused")] += 1
                m.refusals[code] += 1
        if self.crawled and (row.crawl or self.groups[row.group].signature is not None):
            m.crawl[(row.group, "requests")] += 1
            verdict = {"block": "blocked", "free": "free", "charge": "charged"}.get(row.crawl)
            if verdict is not None:
                m.crawl[(row.group, verdict)] += 1
            if row.crawl == "block":
                m.blocked[row.reason or "blocked"] += 1
            if row.outcome == "paid":
                m.crawl[(row.group, "paid")] += 1


__all__ = [
    "FLAWS",
    "CachedDirectory",
    "CrawlTap",
    "FlawedSigner",
    "ReputationChooser",
    "TrustBook",
    "TrustHost",
    "TrustMetrics",
    "TrustWorld",
    "crawler_kind",
    "rate_delivery",
]
