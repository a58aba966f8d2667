"""``Testbed``: the roles wired together in one process over an embedded chain, for direct use.

A testbed owns a ``LocalChain`` (token, Multicall3), one reference ``Facilitator`` with a funded
gas account, and drives servers and clients by calling them directly: it is the simplest world
the sans-IO roles run in. Settlement is confirmed at once: each settle mines one block at the
testbed's clock; mining never moves the clock, only ``advance`` does.

Everything derives from ``seed``: keys, nonces, block randomness. Same seed, same run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from .actors.client import Client, DrivesClient, FetchResult, SpendPolicy, answer_with_approver
from .actors.client_channels import ChannelEvent, ChannelRecord, ChannelStore, DepositPolicy
from .actors.driver import BaseDriver, dispatch, run
from .actors.facilitator import Facilitator
from .actors.messages import (
    Approval,
    Approve,
    Effect,
    GiveFeedback,
    Handle,
    HttpRequest,
    HttpResponse,
    Send,
    Settle,
    Verify,
)
from .actors.server import ResourceServer, Route, default_handler
from .actors.server_channels import ChannelWork
from .evm.chain import DEFAULT_CHAIN_ID, DEFAULT_START_TIME, ETHER, Block, LocalChain, Receipt
from .evm.channels import ChannelConfig, ChannelState, read_channel
from .evm.eip712 import address_of_key
from .evm.erc8004 import give_feedback
from .evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, approve_call
from .evm.txsign import GWEI, sign_eip1559
from .governance import Governor
from .mechanisms.sponsoring import APPROVAL_GAS
from .protocol import AnyPaymentPayload, AnyPaymentRequired, AnyRequirements, SettleResponse, VerifyResponse

Handler = Callable[[HttpRequest], HttpResponse]


@dataclass(frozen=True)
class TestAccount:
    """A funded test account. The key is a test key derived from the testbed's seed."""

    address: str
    key: bytes = field(repr=False)


@dataclass
class TestServer:
    """A resource server hosted by the testbed, with its application handlers."""

    role: ResourceServer
    handlers: dict[str, Handler]

    @property
    def pay_to(self) -> str:
        return self.role.pay_to

    @property
    def stats(self):
        return self.role.stats

    def handler_for(self, request: HttpRequest) -> Handler:
        """The handler of the route ``request`` names (by the role's matching, as served)."""
        route = self.role.route_for(request)
        key = route.key if route is not None else request.canonical_key
        return self.handlers.get(key, default_handler)


class TestFacilitator:
    """The testbed's facilitator, with the clock filled in and settlement mined at once."""

    def __init__(self, testbed: Testbed, role: Facilitator) -> None:
        self._tb = testbed
        self.role = role

    @property
    def address(self) -> str:
        return self.role.address

    @property
    def settlements(self):
        return self.role.settlements

    def supported(self):
        return self.role.supported()

    def verify(self, payload: AnyPaymentPayload, requirements: AnyRequirements) -> VerifyResponse:
        return self.role.verify(payload, requirements, self._tb.now)

    def settle(self, payload: AnyPaymentPayload, requirements: AnyRequirements) -> SettleResponse:
        return self.role.settle_now(payload, requirements, self._tb.now)


class TestClient(DrivesClient):
    """A paying client bound to the testbed: ``get`` and ``request`` reach its servers directly."""

    def __init__(self, testbed: Testbed, role: Client) -> None:
        self._tb = testbed
        self.role = role

    def create_payment(self, payment_required: AnyPaymentRequired) -> AnyPaymentPayload:
        return self.role.create_payment(payment_required, self._tb.now)

    def get(self, server: TestServer, path: str, headers: Iterable[tuple[str, str]] = ()) -> FetchResult:
        return self.request(server, "GET", path, headers)

    def request(
        self,
        server: TestServer,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> FetchResult:
        request = HttpRequest(method.upper(), path, tuple(headers), body)
        return run(self.role.fetch(request, self._tb.now), self._tb.driver(server, self.role))

    def refund(self, server: TestServer, path: str, amount: int | None = None) -> FetchResult:
        """Ask ``server`` for this client's batch-settlement escrow back on the channel that pays
        ``path`` (``amount``; None: all not yet charged)."""
        request = HttpRequest("GET", path)
        return run(self.role.refund(request, self._tb.now, amount), self._tb.driver(server, self.role))

    def call_tool(self, mcp_server, name: str, arguments: Mapping | None = None) -> FetchResult:
        """Call tool ``name`` of ``mcp_server`` (from ``Testbed.mcp_server``) over an in-memory MCP
        session, paying a payment-required result once (needs ``x402sim[agents]``)."""
        from .transports.mcp_testbed import call_tool_in_process

        return call_tool_in_process(self._tb, self.role, mcp_server, name, dict(arguments or {}))

    def send_message(self, agent, text: str, *, skill: str | None = None) -> FetchResult:
        """Send ``text`` to the in-process A2A ``agent`` (``Testbed.a2a_agent``) for ``skill``
        (default: its first), paying once when its task asks for payment; the body is the final task."""
        from .transports.a2a import agent_http, send_paid_message

        async def exchange() -> FetchResult:
            async with agent_http(transport=agent.transport()) as http:
                return await send_paid_message(
                    self.role, http, agent.url, text, skill=skill, clock=lambda: self._tb.now
                )

        return cast(FetchResult, agent.run(exchange()))


@dataclass(frozen=True)
class ChannelView:
    """One of a payer's batch-settlement channels as the testbed shows it: the client's record
    (config with its salt, charged, balance it knows, refunds, stopped), the channel on chain, and
    its life (``ChannelEvent`` s, oldest first)."""

    record: ChannelRecord
    onchain: ChannelState
    life: tuple[ChannelEvent, ...]

    @property
    def config(self) -> ChannelConfig:
        return self.record.config

    @property
    def channel_id(self) -> bytes:
        return self.record.channel_id


class TestbedDriver(BaseDriver):
    """The testbed's answers to the roles' effects, in process and at once: a request reaches
    ``server`` directly, its facilitator calls reach the testbed's facilitator (settlement mined at
    once), its application runs ``server``'s handler; a ``client``'s approvals go to its governor's
    approver and its feedback is posted and mined from its wallet."""

    world = "testbed"

    def __init__(self, testbed: Testbed, server: TestServer, client: Client | None = None) -> None:
        self.testbed, self.server, self.client = testbed, server, client

    def send(self, effect: Send) -> HttpResponse:
        return run(self.server.role.handle(effect.request, self.testbed.chain.now), self)

    def verify(self, effect: Verify) -> VerifyResponse:
        return self.testbed.facilitator.verify(effect.payload, effect.requirements)

    def settle(self, effect: Settle) -> SettleResponse:
        return self.testbed.facilitator.settle(effect.payload, effect.requirements)

    def handle(self, effect: Handle) -> HttpResponse:
        return self.server.handler_for(effect.request)(effect.request)

    def approve(self, effect: Approve) -> Approval:
        if self.client is None:
            return self._unsupported(effect)
        return answer_with_approver(self.client, effect)

    def give_feedback(self, effect: GiveFeedback) -> bytes:
        if self.client is None:
            return self._unsupported(effect)
        return self.testbed.give_feedback(self.client.key, effect)


class Testbed:
    """An embedded chain, its USDC-like token, Multicall3 and one reference facilitator."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        seed: int = 0,
        *,
        chain_id: int = DEFAULT_CHAIN_ID,
        start_time: int = DEFAULT_START_TIME,
        facilitator_eth: int = 100 * ETHER,
        dedupe: bool | str = True,
        token: str = "usdc",
        sponsoring: Iterable[str] = (),
    ) -> None:
        self.seed = seed
        self.chain = LocalChain(chain_id=chain_id, start_time=start_time, seed=seed, token=token)
        key = self.chain.new_key()
        self.chain.fund(address_of_key(key), eth=facilitator_eth)
        role = Facilitator(self.chain, key, dedupe=dedupe, sponsoring=frozenset(sponsoring))
        self.facilitator = TestFacilitator(self, role)
        self._clients = 0

    # -- time and blocks --------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.chain.now

    def advance(self, seconds: int) -> int:
        return self.chain.advance(seconds)

    def mine(self) -> Block:
        return self.chain.mine()

    # -- participants ----------------------------------------------------------------------------

    def account(self, usdc: int = 0, eth: int = 0) -> TestAccount:
        """A new test account holding ``usdc`` atomic units and ``eth`` wei (one block)."""
        return self.accounts(1, usdc=usdc, eth=eth)[0]

    def accounts(self, count: int, usdc: int = 0, eth: int = 0) -> list[TestAccount]:
        """``count`` new accounts funded in a single block."""
        made = [TestAccount(address_of_key(k), k) for k in (self.chain.new_key() for _ in range(count))]
        if usdc or eth:
            self.chain.fund_many([(a.address, usdc, eth) for a in made])
        return made

    def approve_permit2(self, account: TestAccount, amount: int = UINT256_MAX) -> Receipt:
        """``account`` approves Permit2 to spend its tokens, paying the gas itself (mined at once)."""
        signed = sign_eip1559(
            account.key,
            chain_id=self.chain.chain_id,
            nonce=self.chain.pending_nonce(account.address),
            gas=APPROVAL_GAS,
            max_fee_per_gas=2 * self.chain.base_fee + GWEI,
            max_priority_fee_per_gas=0,
            to=self.chain.usdc,
            data=approve_call(PERMIT2_ADDRESS, amount),
        )
        tx_hash = self.chain.send_raw_transaction(signed.raw)
        self.chain.mine()
        return cast(Receipt, self.chain.receipt(tx_hash))

    def server(
        self,
        routes: Mapping[str, int | Route],
        *,
        pay_to: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        upfront: bool = False,
        x402_version: int = 2,
        base_url: str = "http://localhost",
        **trust,
    ) -> TestServer:
        """A resource server selling ``routes`` (``{"GET /path": atomic_price}``) for the token;
        ``trust`` passes ``identity``, ``payers``, ``mandates`` or ``crawl`` to the role."""
        role = ResourceServer.with_prices(
            routes,
            chain=self.chain,
            pay_to=pay_to or self.account().address,
            upfront=upfront,
            x402_version=x402_version,
            base_url=base_url,
            supported=self.facilitator.role.supported(),
            **trust,
        )
        named = {Route(key, 0).key: h for key, h in (handlers or {}).items()}
        return TestServer(role, named)

    def client(
        self,
        account: TestAccount,
        policy: SpendPolicy | None = None,
        *,
        governor: Governor | None = None,
        agent: str | None = None,
        channel_store: ChannelStore | None = None,
        deposit_policy: DepositPolicy | None = None,
        **trust,
    ) -> TestClient:
        """A paying client for ``account``, with an optional spend policy and ``governor`` (which
        knows it as ``agent``, by default its address; its approver answers approvals); ``trust``
        passes ``signer``, ``directory``, ``identity``, ``rate``, ``mandate`` and the like to the
        role. Its feedback is posted from ``account`` and mined at once. Its batch-settlement
        channels live in ``channel_store`` (default: in memory; give one on a file to restart a
        client on it), sized by ``deposit_policy``; it reads the testbed's chain on a cold start."""
        self._clients += 1
        role = Client(
            account.key,
            networks=(self.chain.network,),
            policy=policy or SpendPolicy(),
            seed=self.seed * 1_000_003 + self._clients,
            governor=governor,
            agent=agent,
            chain=self.chain,
            channel_store=channel_store,
            deposit_policy=deposit_policy,
            **trust,
        )
        return TestClient(self, role)

    def channel_work(self, server: TestServer) -> ChannelWork:
        """One round of ``server``'s batch-settlement work due now (claims, settlements, refunds of
        idle channels), settled and mined at once."""
        return run(server.role.channel_work(self.now), self.driver(server))

    def channels(self, payer: TestClient) -> list[ChannelView]:
        """Every batch-settlement channel ``payer`` knows, with its state on chain and its life."""
        return [
            ChannelView(r, read_channel(self.chain, r.channel_id), tuple(payer.role.channels.life(r)))
            for r in payer.role.channels.records()
        ]

    def channel(self, payer: TestClient, server: TestServer | None = None) -> ChannelView:
        """``payer``'s one channel (with ``server``'s receiver, when given); ``LookupError`` when it
        has none or, without ``server``, several."""
        views = self.channels(payer)
        if server is not None:
            views = [v for v in views if v.config.receiver.lower() == server.pay_to.lower()]
        if len(views) != 1:
            raise LookupError(f"{payer.address} has {len(views)} such channels, not one")
        return views[0]

    def give_feedback(self, key: bytes, effect: GiveFeedback) -> bytes:
        """Post ``effect``'s feedback on the reputation registry from ``key``'s account, mined (a
        refused one too: its receipt says so)."""
        tx = give_feedback(self.chain, key, *effect.arguments(), mine=False)
        self.chain.mine()
        return tx

    # -- the driver ------------------------------------------------------------------------------

    def driver(self, server: TestServer, client: Client | None = None) -> TestbedDriver:
        """The driver that answers the effects of an exchange with ``server`` (and ``client``)."""
        return TestbedDriver(self, server, client)

    def perform(self, server: TestServer, effect: Effect):
        """Answer one effect of an exchange with ``server``, in process."""
        return dispatch(self.driver(server), effect)

    # -- MCP tools, in process ---------------------------------------------------------------------

    def mcp_server(
        self,
        tools: Iterable,
        *,
        pay_to: str | None = None,
        name: str = "x402sim-tools",
        **fields,
    ):
        """A paid MCP tool server (``x402sim.transports.mcp.PaidToolServer``) selling ``tools``
        (``PaidTool`` s) for the token, settled by the testbed's facilitator at its clock; its
        ``role``, MCP ``server`` and ``pay_to`` are what a test reads. ``fields`` go to the role
        (``upfront``, ``payment_identifier``, ``identity``...). Needs ``x402sim[agents]``."""
        from .transports.mcp import PaidToolServer
        from .transports.mcp_tools import ToolSellingServer, tool_routes

        tools = list(tools)
        role = ToolSellingServer.with_prices(
            tool_routes(tools),
            chain=self.chain,
            pay_to=pay_to or self.account().address,
            supported=self.facilitator.role.supported(),
            **fields,
        )
        return PaidToolServer(role, tools, self.facilitator, name=name, clock=lambda: self.now)

    # -- A2A ---------------------------------------------------------------------------------------

    def a2a_agent(
        self,
        skills: Mapping[str, int | Route],
        *,
        handlers: Mapping[str, Callable] | None = None,
        pay_to: str | None = None,
        url: str = "http://agent.test",
        require_activation: bool = True,
        **trust,
    ):
        """An A2A paid agent (``x402sim.transports.a2a.PaidAgent``) in process, selling ``skills``
        (``{"weather": atomic_price}`` or Routes keyed ``POST /<skill>``) through the testbed's
        facilitator at the testbed's clock; ``handlers`` answer skills by id (``skill_answer``).
        ``TestClient.send_message`` talks to it; ``agent.app`` is its ASGI app. Needs x402sim[agents]."""
        import dataclasses

        from .transports.a2a import PaidAgent
        from .transports.a2a_carry import skill_route_key

        routes: dict[str, int | Route] = {}
        for name, price in skills.items():
            key = name if name.startswith("POST /") else skill_route_key(name)
            routes[key] = dataclasses.replace(price, key=key) if isinstance(price, Route) else price
        server = self.server(routes, pay_to=pay_to, base_url=url, **trust)
        return PaidAgent(
            server.role,
            self.facilitator,
            url=url,
            handlers=handlers,
            clock=lambda: self.now,
            require_activation=require_activation,
        )
