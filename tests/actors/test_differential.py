"""Differential test: the same operations through the in-process testbed and through the HTTP services.

Two worlds, each on its own embedded chain built from the same seed (same keys, same funding):

* **testbed**: ``Testbed``, its servers and clients called directly, settlement mined at once;
* **http**: the same roles behind the real ASGI apps (``resource_server_app`` for each shop, one
  ``facilitator_app``), reached with httpx over ``httpx.ASGITransport``: the paying clients are
  ``AsyncPayingClient``, the shops call the facilitator with ``FacilitatorClient``. No sockets, no
  sleeps; the served chain's clock (``ChainClock``) follows no wall clock and moves only when told.

A Hypothesis state machine draws operations (paid requests by several clients to several priced
routes of two shops, payments signed and sent later, replays of captured payment headers, the same
payment sent twice at once, time moves, mining, a route whose handler outlives the authorization)
and runs each in both worlds. Clients get the same seeds in both worlds, so every nonce and signature
is the same and payment headers are compared byte for byte.

Checked after every operation: both worlds' answers to it are the same (status, the challenge's
reason, settlement success, reason and transaction hash; for the race, the statuses: see ``_race``).
After every step, both chains agree exactly: block number, clock and head block hash (which commits to
the whole state); and, whenever the head or the set of signed nonces moved, the token balances of every
client, shop and the facilitator, the facilitator's ETH, ``authorizationState`` of every nonce signed
so far, the total supply and the ``Transfer`` logs in order. In each world on its own: the supply
never changes and the clients and shops hold all of it, no authorization is used twice, every used
nonce reads as used, and every 200 is backed by exactly one transfer of its price from its payer to
its shop, in the transaction its settlement header names.

``make soak SEED=7 STEPS=100000`` runs the same machine for many more steps with a given seed and
prints how often each rule ran and each outcome was seen.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import ClassVar

import httpx
import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from x402sim import Testbed
from x402sim.actors import HttpRequest, HttpResponse, Send
from x402sim.actors.server import DEFAULT_MAX_TIMEOUT_SECONDS
from x402sim.evm.fiat_rules import SUPPLY
from x402sim.evm.token import AUTHORIZATION_USED_TOPIC
from x402sim.http import AsyncPayingClient, FacilitatorClient, facilitator_app, resource_server_app
from x402sim.http.chain_clock import ChainClock
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_SIGNATURE,
    encode_header,
    parse_payment_required,
    read_settlement,
)

SEED = 402
START_USDC = 100_000
POOR_USDC = 1_200  # enough for one cheap item, never for the dear ones
# Two shops; GET /slow's handler outlives every authorization (see SLOW_SECONDS).
SHOPS = (
    {"GET /news": 1_000, "GET /report": 2_500, "GET /slow": 700},
    {"GET /news": 1_500, "GET /data": 4_000},
)
ROUTES = [(shop, key.split(" ", 1)[1]) for shop, routes in enumerate(SHOPS) for key in routes]
WINDOW = DEFAULT_MAX_TIMEOUT_SECONDS  # the routes' maxTimeoutSeconds: how long a payment stays valid
SLOW_SECONDS = WINDOW + 60  # verified, served, then expired at settle
FACILITATOR_URL = "http://facilitator.test"


def shop_url(shop: int) -> str:
    return f"http://shop{shop}.test"


VIEWS_EVERY = 50  # every so many state changes, storage reads are checked against the token's views


def token_reads(chain, addresses, nonces) -> tuple[list[int], int, list[bool]]:
    """The token's balance of each of ``addresses``, its total supply and the authorization state of
    each ``(payer, nonce)``, read from its storage in the head state with ``token_state`` (the reader
    the facilitator verifies with; its slots are checked against the compiler's elsewhere in the
    suite). Reading them through the token's view functions costs one py-evm ``eth_call`` (~9 ms)
    each, more than the operations checked: ``views_agree`` does that now and then."""
    view = chain.token_state(chain.usdc)
    balances = [view.balance_of(a) for a in addresses]
    return balances, view.get(SUPPLY), [view.authorization_state(p, n) for p, n in nonces]


def views_agree(chain, addresses, nonces) -> None:
    """``token_reads`` equals what the token's own view functions answer (the latest nonces only)."""
    balances, supply, states = token_reads(chain, addresses, nonces[-2:])
    assert balances == [chain.balance_of(a) for a in addresses]
    assert supply == chain.total_supply()
    assert states == [chain.authorization_state(p, n) for p, n in nonces[-2:]]


def _outcome(response: HttpResponse) -> tuple:
    """What must be the same in both worlds for one answer: the status, the settlement (success,
    reason, transaction) and, for a 402, the reason its challenge gives."""
    settlement = read_settlement(response.headers)
    why = None
    if response.status == 402:
        why = parse_payment_required(response.headers, response.body).error
    if settlement is None:
        return (response.status, why, None, None, None)
    return (response.status, why, settlement.success, settlement.error_reason, settlement.transaction)


def _label(outcome: tuple) -> str:
    status, why, success, reason, _ = outcome
    if success is None:
        return f"{status} {why}" if why else str(status)
    return f"{status} settled" if success else f"{status} {reason}"


class InProcessWorld:
    """World A: the testbed driver."""

    def __init__(self) -> None:
        self.tb = Testbed(seed=SEED)
        self.chain = self.tb.chain
        self.accounts = self.tb.accounts(3, usdc=START_USDC)
        self.accounts.append(self.tb.account(usdc=POOR_USDC))
        self.shops = [
            self.tb.server(routes, base_url=shop_url(i), handlers={"GET /slow": self._slow})
            for i, routes in enumerate(SHOPS)
        ]
        self.pay_to = [s.pay_to for s in self.shops]
        self.clients = [self.tb.client(a) for a in self.accounts]
        self.facilitator = self.tb.facilitator.address

    def _slow(self, request: HttpRequest) -> HttpResponse:
        self.tb.advance(SLOW_SECONDS)
        return HttpResponse.of_json(200, {"slow": True})

    def pay(self, client: int, shop: int, path: str):
        result = self.clients[client].get(self.shops[shop], path)
        return result.response, result.payment

    def challenge(self, shop: int, path: str) -> str:
        answer = self.tb.perform(self.shops[shop], Send(HttpRequest("GET", path)))
        return answer.header(PAYMENT_REQUIRED)

    def sign(self, client: int, challenge: str):
        return self.clients[client].create_payment(
            parse_payment_required(((PAYMENT_REQUIRED, challenge),), None)
        )

    def send(self, shop: int, path: str, header: str) -> HttpResponse:
        request = HttpRequest("GET", path, ((PAYMENT_SIGNATURE, header),))
        return self.tb.perform(self.shops[shop], Send(request))

    def race(self, shop: int, path: str, header: str) -> list[HttpResponse]:
        # The testbed has no concurrency: the two copies go one after the other.
        return [self.send(shop, path, header), self.send(shop, path, header)]

    def advance(self, seconds: int) -> None:
        self.tb.advance(seconds)

    def mine(self, blocks: int) -> None:
        for _ in range(blocks):
            self.tb.mine()

    def close(self) -> None:
        pass


class _InProcess(httpx.AsyncBaseTransport):
    """Reaches the ASGI app of each host in process (``httpx.ASGITransport``). With ``interleave``,
    other tasks run before each request (``asyncio.sleep(0)``: a yield to the event loop, not a
    wait), so two payments sent at once really interleave at the facilitator: both are verified
    before either is settled."""

    def __init__(self, apps: dict[str, object], *, interleave: bool = False) -> None:
        self._hosts = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self._interleave = interleave

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._interleave:
            await asyncio.sleep(0)
        return await self._hosts[request.url.host].handle_async_request(request)


class HttpWorld:
    """World B: the same roles behind the ASGI apps, driven with httpx in process.

    The testbed here only builds the chain, keys, funding and roles in the same order as world A;
    nothing is driven through it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client_seeds: list[int]) -> None:
        self.loop = loop
        built = Testbed(seed=SEED)
        self.chain = built.chain
        self.accounts = built.accounts(3, usdc=START_USDC)
        self.accounts.append(built.account(usdc=POOR_USDC))
        roles = [
            built.server(routes, base_url=shop_url(i)).role for i, routes in enumerate(SHOPS)
        ]  # same calls as world A: the shops' payees get the same keys
        self.pay_to = [role.pay_to for role in roles]
        self.facilitator = built.facilitator.address
        self.clock = ChainClock(self.chain, wall=None)  # the served chain's clock, moved only when told
        now = lambda: self.chain.now  # noqa: E731
        fac_app = facilitator_app(built.facilitator.role, clock=now, chain_clock=self.clock)
        self._closing = []
        shops = {}
        for i, role in enumerate(roles):
            to_facilitator = FacilitatorClient(
                FACILITATOR_URL, transport=_InProcess({"facilitator.test": fac_app}, interleave=True)
            )
            self._closing.append(to_facilitator)
            app = resource_server_app(role, to_facilitator, handlers={"GET /slow": self._slow}, clock=now)
            shops[f"shop{i}.test"] = app
        self.http = httpx.AsyncClient(transport=_InProcess(shops))
        self.clients = []
        for account, client_seed in zip(self.accounts, client_seeds, strict=True):
            client = AsyncPayingClient(
                account.key,
                networks=(self.chain.network,),
                seed=client_seed,
                clock=now,
                transport=_InProcess(shops),
            )
            self.clients.append(client)

    def _slow(self, request: HttpRequest) -> HttpResponse:
        self.clock.increase(SLOW_SECONDS)
        return HttpResponse.of_json(200, {"slow": True})

    def _run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def pay(self, client: int, shop: int, path: str):
        result = self._run(self.clients[client].get(shop_url(shop) + path))
        return result.response, result.payment

    def challenge(self, shop: int, path: str) -> str:
        answer = self._run(self.http.get(shop_url(shop) + path))
        assert answer.status_code == 402
        return answer.headers[PAYMENT_REQUIRED]

    def sign(self, client: int, challenge: str):
        required = parse_payment_required(((PAYMENT_REQUIRED, challenge),), None)
        return self.clients[client].role.create_payment(required, self.clock.sync())

    async def _send(self, shop: int, path: str, header: str) -> HttpResponse:
        answer = await self.http.get(shop_url(shop) + path, headers={PAYMENT_SIGNATURE: header})
        return HttpResponse(answer.status_code, tuple(answer.headers.multi_items()), answer.content)

    def send(self, shop: int, path: str, header: str) -> HttpResponse:
        return self._run(self._send(shop, path, header))

    def race(self, shop: int, path: str, header: str) -> list[HttpResponse]:
        async def both():
            return await asyncio.gather(self._send(shop, path, header), self._send(shop, path, header))

        return list(self._run(both()))

    def advance(self, seconds: int) -> None:
        self.clock.increase(seconds)  # what evm_increaseTime does on a served chain

    def mine(self, blocks: int) -> None:
        for _ in range(blocks):
            self.clock.sync()
            self.chain.mine()

    def close(self) -> None:
        async def close_all():
            for client in self.clients:
                await client.aclose()
            for closing in self._closing:
                await closing.aclose()
            await self.http.aclose()

        self._run(close_all())


class Signed:
    """A payment signed in both worlds (the same header), for ``shop`` and ``path``."""

    def __init__(self, client: int, shop: int, path: str, header: str) -> None:
        self.client, self.shop, self.path, self.header = client, shop, path, header

    def __repr__(self) -> str:
        return f"Signed(client={self.client}, shop={self.shop}, path={self.path!r})"


class DifferentialMachine(RuleBasedStateMachine):
    """One sequence of operations, run in both worlds; their chains must stay identical."""

    rules_run: ClassVar[Counter] = Counter()  # class-wide tallies, printed by the soak
    outcomes: ClassVar[Counter] = Counter()

    unsent = Bundle("unsent")  # signed, never sent: each is used once (sent, or raced)
    paid = Bundle("paid")  # headers captured from exchanges: replayed as often as drawn

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.a = InProcessWorld()
        self.b = HttpWorld(self.loop, [c.role.seed for c in self.a.clients])
        self.worlds = (self.a, self.b)
        assert [a.address for a in self.a.accounts] == [a.address for a in self.b.accounts]
        assert (self.a.pay_to, self.a.facilitator) == (self.b.pay_to, self.b.facilitator)
        self.first_block = self.a.chain.block_number + 1
        self.supply = self.a.chain.total_supply()
        self.nonces: list[tuple[str, bytes]] = []  # (payer, nonce) of every payment signed
        self.served = [[], []]  # per world: (payer, payee, price, settlement transaction) of every 200
        self.watched = [a.address for a in self.a.accounts]
        self.watched += [*self.a.pay_to, self.a.facilitator]
        self._compared = None  # (head hash, nonces) when the worlds' token states were last compared
        self._changes = 0  # state changes compared so far
        self._booked = [None, None]  # per world: (block, 200s, nonces) when its books were last checked
        self._reads = [(None, None), (None, None)]  # per world: (head, nonces) and its token_reads

    def teardown(self) -> None:
        self.b.close()
        self.loop.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _count(self, rule_name: str, outcome: str) -> None:
        self.rules_run[rule_name] += 1
        self.outcomes[f"{rule_name}: {outcome}"] += 1

    def _signed(self, payments) -> str | None:
        """The header of a payment both worlds signed, checked equal, its nonce recorded."""
        pa, pb = payments
        if pa is None or pb is None:
            assert pa is None and pb is None
            return None
        header = encode_header(pa)
        assert encode_header(pb) == header, "the two worlds signed different payments"
        authorization = pa.payload["authorization"]
        self.nonces.append(
            (to_checksum_address(authorization["from"]), bytes.fromhex(authorization["nonce"][2:]))
        )
        return header

    def _judge(self, responses, shop: int, path: str, payer: str | None) -> tuple:
        """Both worlds' answers to one operation: the same; each 200 recorded; the shared outcome."""
        outcomes = [_outcome(r) for r in responses]
        # The transaction hash is compared too: the same facilitator key, nonce, fees and calldata.
        assert outcomes[0] == outcomes[1], f"the worlds answered differently: {outcomes}"
        for world, outcome in enumerate(outcomes):
            if outcome[0] == 200:
                price = SHOPS[shop][f"GET {path}"]
                self.served[world].append((payer, self.worlds[world].pay_to[shop], price, outcome[-1]))
        return outcomes[0]

    # -- operations ------------------------------------------------------------------------------

    @rule(target=paid, client=st.integers(0, 3), route=st.sampled_from(ROUTES))
    def pay(self, client, route):
        shop, path = route
        exchanges = [w.pay(client, shop, path) for w in self.worlds]
        header = self._signed([payment for _, payment in exchanges])
        outcome = self._judge([r for r, _ in exchanges], shop, path, self.a.accounts[client].address)
        self._count("pay", _label(outcome))
        return Signed(client, shop, path, header) if header else None

    @rule(target=unsent, client=st.integers(0, 3), route=st.sampled_from(ROUTES))
    def sign_without_sending(self, client, route):
        self._count("sign", "signed")
        return self._sign(client, *route)

    def _sign(self, client: int, shop: int, path: str) -> Signed:
        challenges = [w.challenge(shop, path) for w in self.worlds]
        assert challenges[0] == challenges[1], "the worlds' shops asked for different payments"
        header = self._signed([w.sign(client, challenges[0]) for w in self.worlds])
        return Signed(client, shop, path, header)

    @rule(payment=consumes(unsent))
    def send_signed(self, payment):
        self._send("send", payment, payment.shop, payment.path)

    @rule(payment=paid)
    def replay(self, payment):
        if payment is None:
            self._count("replay", "nothing was paid")
            return
        self._send("replay", payment, payment.shop, payment.path)

    @rule(payment=paid, route=st.sampled_from(ROUTES))
    def replay_elsewhere(self, payment, route):
        if payment is None:
            self._count("replay_elsewhere", "nothing was paid")
            return
        self._send("replay_elsewhere", payment, *route)

    def _send(self, name: str, payment: Signed, shop: int, path: str) -> None:
        responses = [w.send(shop, path, payment.header) for w in self.worlds]
        outcome = self._judge(responses, shop, path, self.a.accounts[payment.client].address)
        self._count(name, _label(outcome))

    @rule(client=st.integers(0, 3), route=st.sampled_from(ROUTES))
    def race_a_fresh_payment(self, client, route):
        self._race("race_fresh", self._sign(client, *route))

    @rule(payment=consumes(unsent))
    def race(self, payment):
        self._race("race", payment)

    def _race(self, name: str, payment: Signed) -> None:
        """The same payment twice at once: at most one settles, in each world. The answers may
        legitimately differ in detail: in the testbed the second copy comes after the first settled
        and is refused at verify (nonce used, no settlement header); over HTTP both are verified
        first and the second is refused at settle (duplicate settlement, with a failed settlement
        header). So what is compared is the statuses, and the chains (by the invariants)."""
        payer = self.a.accounts[payment.client].address
        answers = [w.race(payment.shop, payment.path, payment.header) for w in self.worlds]
        statuses = [sorted(r.status for r in pair) for pair in answers]
        assert statuses[0] == statuses[1], f"the race ended differently: {statuses}"
        assert statuses[0].count(200) <= 1
        for world, pair in enumerate(answers):
            for response in pair:
                if response.status == 200:
                    price = SHOPS[payment.shop][f"GET {payment.path}"]
                    pay_to = self.worlds[world].pay_to[payment.shop]
                    self.served[world].append((payer, pay_to, price, _outcome(response)[-1]))
        labels = " + ".join(" | ".join(_label(_outcome(r)) for r in pair) for pair in answers)
        self._count(name, labels)

    @rule(seconds=st.sampled_from([1, 10, WINDOW - 1, WINDOW + 1, 2 * WINDOW]))
    def advance_time(self, seconds):
        for w in self.worlds:
            w.advance(seconds)
        self._count("advance_time", f"{seconds} s")

    @rule(blocks=st.integers(1, 4))
    def mine(self, blocks):
        for w in self.worlds:
            w.mine(blocks)
        self._count("mine", f"{blocks} blocks")

    def _token_reads(self, world: int):
        """``token_reads`` of one world's chain, kept until its head or the nonces change."""
        chain = self.worlds[world].chain
        key = (chain.block_number, chain.snapshot().head_hash, len(self.nonces))
        if self._reads[world][0] != key:
            self._reads[world] = (key, token_reads(chain, self.watched, self.nonces))
        return self._reads[world][1]

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def the_chains_agree(self):
        ca, cb = self.a.chain, self.b.chain
        clocks = [(c.block_number, c.now) for c in (ca, cb)]
        assert clocks[0] == clocks[1], f"the chains' heads or clocks differ: {clocks}"
        head = ca.snapshot().head_hash
        assert cb.snapshot().head_hash == head  # same transactions in the same blocks at the same times
        # Everything below is a function of the head state: read again only when it (or the list of
        # nonces) changed since the last step.
        if (head, len(self.nonces)) == self._compared:
            return
        self._compared = (head, len(self.nonces))
        self._changes += 1
        if self._changes % VIEWS_EVERY == 0:
            for c in (ca, cb):
                views_agree(c, self.watched, self.nonces)
        reads = [self._token_reads(world) for world in (0, 1)]
        assert reads[0] == reads[1], "the worlds' token states differ"
        assert ca.eth_balance(self.a.facilitator) == cb.eth_balance(self.b.facilitator)
        transfers = [
            [(t.from_, t.to, t.value, t.tx_hash) for t in c.transfers(since_block=self.first_block)]
            for c in (ca, cb)
        ]
        assert transfers[0] == transfers[1]

    @invariant()
    def each_world_keeps_the_books(self):
        for world, w in enumerate(self.worlds):
            chain = w.chain
            if (chain.block_number, len(self.served[world]), len(self.nonces)) == self._booked[world]:
                continue
            self._booked[world] = (chain.block_number, len(self.served[world]), len(self.nonces))
            balances, supply, states = self._token_reads(world)
            assert supply == self.supply
            assert sum(balances) == supply  # the clients and the shops hold all the money there is
            used = []
            for receipt in chain.receipts():
                if receipt.block_number >= self.first_block:
                    logs = receipt.logs
                    used += [
                        (g.topics[1], g.topics[2]) for g in logs if g.topics[0] == AUTHORIZATION_USED_TOPIC
                    ]
            assert len(used) == len(set(used)), "an authorization was used twice"
            assert sum(states) == len(used)
            transfers = chain.transfers(since_block=self.first_block)
            assert len(transfers) == len(used) == len(self.served[world])
            by_tx = {"0x" + t.tx_hash.hex(): (t.from_, t.to, t.value) for t in transfers}
            for payer, pay_to, price, tx in self.served[world]:
                assert by_tx[tx] == (payer, pay_to, price)


# Hypothesis ends a run after STEPS_PER_EXAMPLE steps or earlier (at 80% of it on average or better,
# as measured: 16 runs made 2,200 to 2,800 steps); 8 runs keep the suite's share to about 17 s of
# CPU, and the soak runs the same machine for as long as it is asked. Long runs rather than many:
# building the two worlds costs about as much as 40 steps.
STEPS_PER_EXAMPLE = 200
TestDifferential = DifferentialMachine.TestCase
TestDifferential.settings = settings(
    max_examples=8,
    stateful_step_count=STEPS_PER_EXAMPLE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.soak
def test_soak():
    """At least ``X402SIM_SOAK_STEPS`` steps (default 100,000) of the same machine, seeded by
    ``X402SIM_SOAK_SEED`` (default 1); prints how often each rule ran and each outcome was seen.
    Hypothesis ends some runs before ``STEPS_PER_EXAMPLE``, so it is called again (with a seed derived
    from the given one) until enough steps have run."""
    steps = int(os.environ.get("X402SIM_SOAK_STEPS", "100000"))
    soak_seed = int(os.environ.get("X402SIM_SOAK_SEED", "1"))
    DifferentialMachine.rules_run.clear()
    DifferentialMachine.outcomes.clear()
    started, examples, batch = time.monotonic(), 0, 0
    try:
        while (ran := sum(DifferentialMachine.rules_run.values())) < steps:
            more = -(-(steps - ran) // STEPS_PER_EXAMPLE)
            machine = type("SoakMachine", (DifferentialMachine,), {})
            hypothesis_seed(soak_seed * 1_000_003 + batch)(machine)
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=more,
                    stateful_step_count=STEPS_PER_EXAMPLE,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                ),
            )
            examples, batch = examples + more, batch + 1
    finally:
        elapsed = time.monotonic() - started
        ran = sum(DifferentialMachine.rules_run.values())
        print(f"\nsoak: seed {soak_seed}, {ran} steps in about {examples} runs, {elapsed:.0f} s")
        for name, count in DifferentialMachine.rules_run.most_common():
            print(f"  {count:8d}  {name}")
        print("outcomes:")
        for outcome, count in sorted(DifferentialMachine.outcomes.items()):
            print(f"  {count:8d}  {outcome}")
