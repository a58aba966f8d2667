"""The reference client (a paying agent): read a 402, choose, check its policy, sign, retry once.

Rules:

* The wallet is a test key. Nonces come from the client's own seeded RNG, so a run is repeatable.
* ``fetch`` is a generator of ``Send`` effects; it never opens a socket. It retries a request at
  most once with a payment, whatever the second answer is (no 402 loops, no paying twice).
* It never pays an offer whose ``extra.paymentFlow`` it does not recognise (one of ``authorization``,
  ``upfront``, ``escrow``; absent means ``authorization``) or whose ``extra.assetTransferMethod`` no
  mechanism of its speaks (absent means ``eip3009``): the refusal names the flow or the method.
* Of the offers it can and may pay, it keeps those of the ``authorization`` flow when there are any
  (it is charged only after the server verified and served), then pays the one of lowest cost to
  it in the network and asset of the first one; it never compares prices in different assets. The
  cost of an offer is the most it can take from the wallet (its amount; for ``upto``, the signed
  maximum), then whether paying it needs a transaction of the client's own first (a Permit2 offer
  when its allowance for Permit2 is short and the 402 declares no gas-sponsoring extension it can
  use: the approval's gas is the client's); the server's order breaks the remaining ties.
* A Permit2 payment carries the info of a declared gas-sponsoring extension (EIP-2612 first) when
  its allowance for Permit2 is short, of those it may use (``sponsoring``); the client reads its
  allowance and nonces from ``chain``. Without a chain it attaches none.
* A v2 payment echoes the 402's ``bazaar`` listing (``extensions.bazaar``, as declared), as the
  extension asks of clients, so the facilitator can catalog the service.
* The spend policy can refuse an offer; refusing is a value in the result, not an exception.
  ``create_payment`` (the direct API) raises ``PaymentRefused`` instead, naming why.
* With a ``governor`` (``x402sim.governance``), the chosen offer is put to it before signing: a
  denial is a refusal naming the rule; a payment that needs approval yields ``Approve`` and waits
  for the driver's ``Approval``. What became of each allowed payment is recorded with the governor
  (``settled``, ``failed``, or ``unknown`` when no settlement answer came back). ``create_payment``
  asks the governor's own approver and records the payment as ``unknown`` (it cannot know more).
* It pays only on the ``networks`` it is given (CAIP-2, at least one): a signature for another chain
  is valid there, and a hostile server would collect it. An offer whose validity window is longer
  than ``MAX_TIMEOUT_SECONDS`` is refused too (a long-lived authorization is a standing cheque).
* Every payment the client signs is recorded with what the server said about its settlement. When
  the paid request gets no answer (the driver throws ``Unreachable`` into ``fetch``), the payment is
  still recorded, with ``status`` None and outcome ``"unknown"`` (it may have settled), and the
  ``Unreachable`` goes on to the driver.
* It pays only offers of the mechanisms it is given (``mechanisms``, by default those x402sim
  ships): a mechanism signs the payload; the choice and the checks above are the client's.
* A ``batch-settlement`` offer (x402 v2 only) is paid through the client's channel with the offer's
  receiver (``channels``, a ``ClientChannels``: a deposit first when its balance is short, else the
  next cumulative voucher; see ``client_channels``). The answer's ``chargedAmount`` and
  ``channelState`` are checked before anything more is signed for that channel: a failed check
  stops the channel and ``FetchResult.channel_problem`` says why. A corrective 402
  (``..._cumulative_amount_mismatch``) is adopted only under a voucher the client signed (or the
  chain's ``totalClaimed``), and then the request is paid once more: the one exception to paying
  once. ``refund`` asks for the channel's unclaimed escrow back.

Hooks. A variant of the client (the conformance suite's broken clients) subclasses ``Client`` and
overrides one of these public methods, each named for the step it is:

* ``acceptable_offers(required, reasons, server)``: offer matching, the offers of a 402 this client
  can and may pay, in order (and why the others are not, appended to ``reasons``);
* ``trust_refusal(server, offer)``: why ERC-8004 forbids paying an offer (None: it does not);
* ``sign_payment(required, requirements, offer, now)``: signing, the payment payload for the offer.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import urlsplit

from ..errors import Refused
from ..evm.eip712 import address_of_key
from ..evm.permit2 import PERMIT2_ADDRESS, allowance
from ..governance import NEEDS_APPROVAL, Attempt, Decision, Governor, Policy
from ..mechanisms import (
    SPONSORING_EXTENSIONS,
    Mechanism,
    Mechanisms,
    Offer,
    Verdict,
    default_mechanisms,
    payment_flow_problem,
    prefers_authorization,
    transfer_method_of,
)
from ..mechanisms.batch_client import CORRECTIVE_ERRORS
from ..mechanisms.batch_client import SCHEME as BATCH_SETTLEMENT
from ..mechanisms.batch_client import client_refusal as batch_refusal
from ..mechanisms.permit2 import TRANSFER_METHOD as PERMIT2
from ..mechanisms.sponsoring import client_info
from ..money import format_usdc
from ..protocol import (
    AnyPaymentPayload,
    AnyPaymentRequired,
    AnyRequirements,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequirements,
    ProtocolError,
    SettleResponse,
    caip2_problem,
    encode_header,
    parse_payment_required,
    payment_header_name,
    read_settlement,
)
from ..protocol.bazaar import BAZAAR
from ..trust.mandates import EXTENSION as MANDATE_EXTENSION
from ..trust.mandates import attach as attach_mandate
from ..trust.reputation import EXTENSION as REPUTATION_EXTENSION
from ..trust.reputation import (
    TAG_DELIVERED,
    TAG_EXACT_EVM,
    TAG_GOOD_PAYER,
    AgentRef,
    ServerIdentity,
    declared_server,
    feedback_file,
    feedback_hash,
    feedback_uri,
    pay_to_problem,
    payer_declaration,
    registry_problem,
    reputation_of,
    reputation_tier,
)
from .client_channels import ChannelRefused, ChannelStore, ClientChannels, DepositPolicy
from .messages import Approval, Approve, GiveFeedback, HttpRequest, HttpResponse, Send, Steps, Unreachable

MAX_TIMEOUT_SECONDS = 24 * 3600


class PaymentRefused(Refused):
    """No offer of a 402 is acceptable to this client (policy, scheme, network or domain)."""


@dataclass
class SpendPolicy:
    """Limits an agent puts on what it pays. ``None`` means no limit of that kind."""

    max_price: int | None = None
    budget: int | None = None
    allowed_pay_to: Iterable[str] | None = None
    allowed_assets: Iterable[str] | None = None

    def refusal(self, offer: Offer, spent: int) -> str | None:
        """Why ``offer`` is refused after ``spent`` atomic units, or None if it may be paid."""
        if self.max_price is not None and offer.amount > self.max_price:
            return f"price {offer.amount} exceeds max price {self.max_price}"
        if self.budget is not None and spent + offer.amount > self.budget:
            return f"price {offer.amount} exceeds the remaining budget {self.budget - spent}"
        if self.allowed_pay_to is not None and offer.pay_to.lower() not in {
            a.lower() for a in self.allowed_pay_to
        }:
            return f"payTo {offer.pay_to} is not allowed"
        if self.allowed_assets is not None and offer.asset.lower() not in {
            a.lower() for a in self.allowed_assets
        }:
            return f"asset {offer.asset} is not allowed"
        return None

    def to_policy(self, name: str = "spend-policy") -> Policy:
        """The same limits as a governance ``Policy`` (for a ``Governor``): a request cap, a spend
        limit over the run, and allow lists. A ``SpendPolicy`` picks among a 402's offers; a
        governor judges the one chosen, and adds periods, triggers, approvals and an audit log."""
        rules: list[dict[str, Any]] = []
        if self.max_price is not None:
            rules.append({"kind": "request-cap", "max": format_usdc(self.max_price)})
        if self.budget is not None:
            rules.append({"kind": "spend-limit", "max": format_usdc(self.budget)})
        lists = {"payees": self.allowed_pay_to, "assets": self.allowed_assets}
        named = {key: list(value) for key, value in lists.items() if value is not None}
        if named:
            rules.append({"kind": "allow", **named})
        return Policy.model_validate({"name": name, "rules": rules})


@dataclass(frozen=True)
class PaymentRecord:
    """One payment the client signed, and what the server said became of it."""

    resource: str
    pay_to: str
    asset: str
    amount: int
    nonce: str
    status: int | None  # None: no answer came back
    settlement: SettleResponse | None

    @property
    def settled(self) -> bool:
        return self.settlement is not None and self.settlement.success

    @property
    def charged(self) -> int:
        """What the settlement took: a channel's ``extra.chargedAmount`` (batch-settlement), the
        amount it names (upto), else the amount signed; 0 unsettled."""
        if self.settlement is None or not self.settlement.success:
            return 0
        extra = self.settlement.to_wire().get("extra")
        named_charge = extra.get("chargedAmount") if isinstance(extra, dict) else None
        if isinstance(named_charge, str) and named_charge.isdigit():
            return int(named_charge)
        named = self.settlement.amount
        return int(named) if named is not None and named.isdigit() else self.amount

    @property
    def outcome(self) -> str:
        """``settled``, ``failed`` (the server said so) or ``unknown`` (no settlement answer: it may
        have settled, so check ``authorizationState`` of ``nonce`` on chain before paying again)."""
        if self.settlement is None:
            return "unknown"
        return "settled" if self.settlement.success else "failed"


@dataclass(frozen=True)
class FetchResult:
    """The final answer to a request, with the payment story behind it."""

    response: HttpResponse
    challenge: AnyPaymentRequired | None = None
    payment: AnyPaymentPayload | None = None
    settlement: SettleResponse | None = None
    refused: str | None = None
    first_status: int | None = None
    decision: Decision | None = None  # the governor's last word on the payment, if one was asked
    feedback_tx: bytes | None = None  # the ERC-8004 feedback posted on the delivery, if any
    channel_problem: str | None = None  # batch-settlement: why the client stopped or did not correct

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def body(self) -> bytes:
        return self.response.body

    def json(self) -> Any:
        return self.response.json()

    @property
    def paid(self) -> bool:
        return self.settlement is not None and self.settlement.success


class DrivesClient:
    """What every driver of a ``Client`` role (``self.role``) shows of it: wallet and payments."""

    role: Client

    @property
    def address(self) -> str:
        return self.role.address

    @property
    def payments(self) -> deque[PaymentRecord]:
        return self.role.payments

    @property
    def spent(self) -> int:
        return self.role.spent


@dataclass
class Client:
    """A paying agent with a wallet ``key``, paying only on the given ``networks`` (CAIP-2)."""

    key: bytes
    networks: tuple[str, ...]
    policy: SpendPolicy = field(default_factory=SpendPolicy)
    seed: int = 0
    history: int | None = None  # payment records kept, newest last (None: all; 0: none)
    governor: Governor | None = None
    agent: str | None = None  # this agent's name for the governor (default: its address)
    signer: Any = None  # signs every request it sends (RFC 9421; see ``x402sim.trust.AgentSigner``)
    # ERC-8004 (``x402sim.trust``): the registries it reads, what it asks of servers, who it is.
    directory: Any = None  # an ``AgentDirectory``: check payTo against agentWallet, read reputations
    require_identity: bool = False  # pay only servers that declare a registered agent identity
    min_reputation: float | None = None  # refuse declared servers reputed below this (mean value)
    identity: AgentRef | None = None  # this payer's own agent, declared in its payments
    rate: Callable[[HttpResponse], int | None] | None = None  # feedback value on a delivery (None: none)
    mandate: Any = None  # an ``AgentMandate`` (AP2): every payment carries a closed mandate
    mechanisms: Mechanisms[Verdict] = field(default_factory=default_mechanisms)  # what it can pay
    chain: Any = None  # a ``ChainReads``: its Permit2 allowance and nonces (gas-sponsoring extensions)
    sponsoring: tuple[str, ...] = SPONSORING_EXTENSIONS  # the gas-sponsoring extensions it may use
    # batch-settlement: where its channels are kept (default: in memory) and how deposits are sized
    channel_store: ChannelStore | None = None
    deposit_policy: DepositPolicy | None = None

    def __post_init__(self) -> None:
        self.networks = check_networks(self.networks)
        self.address = address_of_key(self.key)
        self.agent = self.agent or self.address
        self._rng = random.Random(f"x402sim-client:{self.seed}:{self.address}")
        self._committed = 0  # signed and not known to have failed
        self.payments: deque[PaymentRecord] = deque(maxlen=self.history)
        self.spent = 0  # atomic units the servers said were settled
        self.channels = ClientChannels(
            self.key,
            self.channel_store or ChannelStore(),
            self.deposit_policy or DepositPolicy(),
            chain=self.chain,
        )

    def choose(self, required: AnyPaymentRequired) -> tuple[AnyRequirements, Offer]:
        """The offer this client pays: of those it can and may pay, those of the ``authorization``
        flow if any (see the module's rules), then the cheapest in the network and asset of the
        first one (the server's order breaks ties; prices in different assets are not compared);
        ``PaymentRefused`` names why none fits."""
        reasons: list[str] = []
        acceptable = list(self.acceptable_offers(required, reasons, self._server_of(required)))
        if not acceptable:
            raise PaymentRefused("; ".join(reasons) or "the 402 offered nothing")
        authorization = [pair for pair in acceptable if prefers_authorization(pair[1].extra)]
        acceptable = authorization or acceptable
        first = acceptable[0][1]
        same = [(req, o) for req, o in acceptable if (o.network, o.asset) == (first.network, first.asset)]
        declared = getattr(required, "extensions", None) or {}
        return min(same, key=lambda pair: (pair[1].amount, self._needs_own_approval(pair[1], declared)))

    def _needs_own_approval(self, offer: Offer, declared: dict[str, Any]) -> bool:
        """Whether paying ``offer`` needs the client's own approval transaction first (see the rules)."""
        if transfer_method_of(offer.extra, offer.scheme) != PERMIT2:
            return False
        if any(name in declared for name in self.sponsoring):
            return False
        if self.chain is None:
            return True
        return bool(allowance(self.chain, offer.asset, self.address, PERMIT2_ADDRESS) < offer.amount)

    def _server_of(self, required: AnyPaymentRequired) -> ServerIdentity | None:
        """The agent identity ``required`` declares (None: none); ``PaymentRefused`` when this client
        may pay none of its offers because of it (unreadable, missing but required, not the agent the
        registry knows, or reputed too low)."""
        try:
            server = declared_server(getattr(required, "extensions", None))
        except ValueError as exc:
            raise PaymentRefused(f"unreadable {REPUTATION_EXTENSION} declaration: {exc}") from None
        if server is None:
            if self.require_identity:
                raise PaymentRefused(f"the server declares no agent identity ({REPUTATION_EXTENSION})")
            return None
        if self.directory is None:
            return server
        problem = registry_problem(server.agent, self.directory)
        if problem is None and self.min_reputation is not None:
            reputation = reputation_of(self.directory, server.agent.agent_id, TAG_DELIVERED)
            if reputation is not None and reputation < self.min_reputation:
                agent_id = server.agent.agent_id
                problem = f"agent {agent_id}'s reputation {reputation:g} is below {self.min_reputation:g}"
        if problem is not None:
            raise PaymentRefused(problem)
        return server

    def _own_reputation(self) -> float | None:
        if self.identity is None or self.directory is None:
            return None
        return reputation_of(self.directory, self.identity.agent_id, TAG_GOOD_PAYER)

    def acceptable_offers(
        self, required: AnyPaymentRequired, reasons: list[str], server: ServerIdentity | None = None
    ) -> Iterator[tuple[AnyRequirements, Offer]]:
        """Hook, offer matching. The offers of ``required`` this client can and may pay, in order; why
        others are not, in ``reasons``. ``server`` is the agent the 402 declares (``_server_of``)."""
        for req in required.accepts:
            try:
                offer = Offer.of(req)
            except ProtocolError as exc:
                reasons.append(str(exc))
                continue
            mechanism = self.mechanisms.find(offer.scheme, offer.network, offer.extra)
            if offer.scheme not in self.mechanisms.schemes:
                reasons.append(f"scheme {offer.scheme!r} is not supported")
            elif offer.chain_id is None:
                reasons.append(f"network {offer.network} is not an EVM (eip155) network")
            elif offer.network not in self.networks:
                reasons.append(f"network {offer.network} is not one of {', '.join(self.networks)}")
            elif offer.max_timeout_seconds > MAX_TIMEOUT_SECONDS:
                reasons.append(
                    f"maxTimeoutSeconds {offer.max_timeout_seconds} is longer than {MAX_TIMEOUT_SECONDS}"
                )
            elif why := payment_flow_problem(offer.extra) or self.mechanisms.method_refusal(
                offer.scheme, offer.network, offer.extra
            ):
                reasons.append(why)
            elif mechanism is None:
                reasons.append(f"no mechanism pays {offer.scheme!r} offers of this kind on {offer.network}")
            elif (why := self._mechanism_refusal(mechanism, offer, required)) or (
                why := self.policy.refusal(offer, self._committed)
            ):
                reasons.append(why)
            elif self.mandate is not None and not isinstance(required, PaymentRequired):
                reasons.append("an AP2 mandate can only travel with an x402 v2 payment")
            elif self.mandate is None and MANDATE_EXTENSION in (getattr(required, "extensions", None) or {}):
                reasons.append(
                    "the server sells only under an AP2 payment mandate, and this client holds none"
                )
            elif why := self.trust_refusal(server, offer):
                reasons.append(why)
            else:
                yield req, offer

    def _mechanism_refusal(
        self, mechanism: Mechanism[Any], offer: Offer, required: AnyPaymentRequired
    ) -> str | None:
        """Why ``mechanism`` cannot pay ``offer``. A batch-settlement offer is the channels' to judge
        (the mechanism's client part is stateless; the client keeps the channels)."""
        if offer.scheme != BATCH_SETTLEMENT:
            return mechanism.client_refusal(offer)
        if not isinstance(required, PaymentRequired):
            return "batch-settlement is paid with x402 v2 only"
        return self.channels.refusal(offer)

    def trust_refusal(self, server: ServerIdentity | None, offer: Offer) -> str | None:
        """Hook: why ERC-8004 forbids paying ``offer``: a payTo other than the declared agent's
        wallet, or a price reserved for payers reputed higher than this one."""
        if server is not None and self.directory is not None:
            problem = pay_to_problem(server, offer.pay_to, self.directory)
            if problem is not None:
                return problem
        tier = reputation_tier(offer.extra)
        if tier is not None:
            own = self._own_reputation()
            if own is None or own < tier:
                return f"price {offer.amount} is for payers reputed at least {tier:g}"
        return None

    def create_payment(self, required: AnyPaymentRequired, now: int) -> AnyPaymentPayload:
        """Sign a payment for the chosen offer of ``required`` (see ``choose``) at time ``now``."""
        req, offer = self.choose(required)
        if self.governor is not None:
            decision = self.governor.decide(self.attempt(None, required, offer), now)
            if decision.verdict == NEEDS_APPROVAL:
                decision = self.governor.ask_approver(decision, now)
            if not decision.allowed:
                raise PaymentRefused(f"governance: {decision.explain()}")
            self.governor.record(decision, "unknown", now)
        return self.sign_payment(required, req, offer, now)

    def attempt(self, request: HttpRequest | None, required: AnyPaymentRequired, offer: Offer) -> Attempt:
        """What the governor is asked about paying ``offer`` for ``request``."""
        agent = cast(str, self.agent)  # __post_init__ defaults it to the address
        return Attempt(
            agent, _resource(request, required), offer.pay_to, offer.asset, offer.network, offer.amount
        )

    def sign_payment(
        self, required: AnyPaymentRequired, req: AnyRequirements, offer: Offer, now: int
    ) -> AnyPaymentPayload:
        """Hook, signing: the payment for ``offer`` (one of ``required``'s, ``req`` as sent) at ``now``."""
        extensions: dict[str, Any] = {}
        if self.mandate is not None:
            v2 = cast(PaymentRequired, required)  # a mandate goes with v2 offers only (acceptable_offers)
            chain = self.mandate.close(offer, self.address, v2.resource.url or "", now)
            nonce = bytes.fromhex(chain.nonce()[2:])  # AP2's x402 binding: keccak256 of the chain
            extensions = attach_mandate(extensions, chain)
        else:
            nonce = self._rng.randbytes(32)
        if self.identity is not None:
            extensions.update(payer_declaration(self.identity))
        mechanism = self.mechanisms.find(offer.scheme, offer.network, offer.extra)
        if mechanism is None:  # choose() only picks offers a mechanism pays
            raise PaymentRefused(f"no mechanism pays {offer.scheme!r} offers on {offer.network}")
        if offer.scheme == BATCH_SETTLEMENT:  # signed against the channel's state, not by the mechanism
            exact = self.channels.pay(offer, now, nonce)
        else:
            exact = mechanism.sign(self.key, self.address, offer, now, nonce)
            if mechanism.transfer_method == PERMIT2 and isinstance(required, PaymentRequired):
                extensions.update(self._sponsoring(required, offer, now))
        self._committed += offer.amount
        payment: AnyPaymentPayload
        if isinstance(required, PaymentRequired):
            if (listing := (required.extensions or {}).get(BAZAAR)) is not None:
                extensions[BAZAAR] = listing  # echoed, so the facilitator can catalog the service
            payment = PaymentPayload(
                x402_version=2,
                resource=required.resource,
                accepted=cast(PaymentRequirements, req),  # one of a v2 402's offers
                payload=exact,
                extensions=extensions or None,
            )
        else:
            payment = PaymentPayloadV1(x402_version=1, scheme=req.scheme, network=req.network, payload=exact)
        return payment

    def _sponsoring(self, required: PaymentRequired, offer: Offer, now: int) -> dict[str, Any]:
        """The gas-sponsoring extension info a Permit2 payment of ``offer`` carries (see the rules)."""
        try:
            domain = offer.domain if "name" in offer.extra and "version" in offer.extra else None
        except (TypeError, ValueError):
            domain = None
        declared = {
            name: entry
            for name, entry in (required.extensions or {}).items()
            if name not in SPONSORING_EXTENSIONS or name in self.sponsoring
        }
        return client_info(
            self.key,
            self.address,
            declared,
            token=offer.asset,
            domain=domain,
            amount=offer.amount,
            deadline=now + offer.max_timeout_seconds,
            chain=self.chain,
        )

    def fetch(self, request: HttpRequest, now: int) -> Steps[FetchResult]:
        """Send ``request``; on a 402, pay once and send it again."""
        first: HttpResponse = yield Send(self._signed(request, now))
        if first.status != 402:
            return FetchResult(first)
        try:
            challenge = parse_payment_required(first.headers, first.body)
        except ProtocolError as exc:
            return FetchResult(first, refused=f"unreadable 402: {exc}", first_status=402)
        try:
            req, offer = self.choose(challenge)
        except PaymentRefused as exc:
            return FetchResult(first, challenge, refused=str(exc), first_status=402)
        decision = None
        if self.governor is not None:
            decision = self.governor.decide(self.attempt(request, challenge, offer), now)
            if decision.verdict == NEEDS_APPROVAL:
                answer: Approval = yield Approve(decision)
                now = answer.now if answer.now is not None else now
                decision = self.governor.approve(decision, answer.granted, now, by=answer.by)
            if not decision.allowed:
                refused = f"governance: {decision.explain()}"
                return FetchResult(first, challenge, refused=refused, first_status=402, decision=decision)
        payment = self.sign_payment(challenge, req, offer, now)
        final: HttpResponse = yield from self._send_paid(request, offer, payment, decision, now)
        channel_problem = None
        if offer.scheme == BATCH_SETTLEMENT and final.status == 402:
            adopted, channel_problem = self._correct(final, offer, now)
            if adopted:  # the server's channel state is proven: pay once more, on top of it
                self._committed -= offer.amount
                payment = self.sign_payment(challenge, req, offer, now)
                final = yield from self._send_paid(request, offer, payment, decision, now)
            if final.status == 402:
                self.channels.doubt(offer)  # refused: its balance may be stale (a withdrawal, a refund)
        try:
            settlement = read_settlement(final.headers)
        except ProtocolError:
            settlement = None
        if settlement is not None and not settlement.success:
            self._committed -= offer.amount  # refused for sure; an unknown outcome stays committed
        if offer.scheme == BATCH_SETTLEMENT and settlement is not None and settlement.success:
            channel_problem = self.channels.settled(offer, payment.payload, settlement, now)
        self._record(request, offer, payment, final.status, settlement)
        if decision is not None:
            outcome = "unknown" if settlement is None else "settled" if settlement.success else "failed"
            tx = settlement.transaction if settlement is not None and settlement.success else None
            cast(Governor, self.governor).record(decision, outcome, now, tx or None)
        feedback_tx = None
        if settlement is not None and settlement.success and self.rate is not None:
            feedback = self._feedback(challenge, request, offer, settlement, final, now)
            if feedback is not None:
                try:
                    feedback_tx = yield feedback
                except Unreachable:
                    feedback_tx = None  # the payment stands; only the review is lost
        return FetchResult(
            final,
            challenge,
            payment,
            settlement,
            first_status=402,
            decision=decision,
            feedback_tx=feedback_tx,
            channel_problem=channel_problem,
        )

    def _send_paid(
        self,
        request: HttpRequest,
        offer: Offer,
        payment: AnyPaymentPayload,
        decision: Decision | None,
        now: int,
    ) -> Steps[HttpResponse]:
        """Send ``request`` with ``payment``; when no answer comes, record the payment as unknown
        (and its channel as uncertain) before the ``Unreachable`` goes on."""
        paid_request = request.with_header(
            payment_header_name(payment.x402_version), encode_header(payment, vouch=True)
        )
        try:
            answer: HttpResponse = yield Send(self._signed(paid_request, now))
        except Unreachable:
            self._record(request, offer, payment, None, None)
            if offer.scheme == BATCH_SETTLEMENT:
                self.channels.doubt(offer)
            if decision is not None:  # asked of the governor
                cast(Governor, self.governor).record(decision, "unknown", now)
            raise
        return answer

    def _correct(self, answer: HttpResponse, offer: Offer, now: int) -> tuple[bool, str | None]:
        """Whether a 402 ``answer`` to a channel payment for ``offer`` is a corrective 402 whose
        state the channel adopted; if not adopted, why (None: not a corrective 402)."""
        try:
            again = parse_payment_required(answer.headers, answer.body)
        except ProtocolError:
            return False, None
        if again.error not in CORRECTIVE_ERRORS:
            return False, None
        for req in again.accepts:
            try:
                corrective = Offer.of(req)
            except ProtocolError:
                continue
            same = (corrective.scheme, corrective.network, corrective.pay_to, corrective.asset)
            if same == (offer.scheme, offer.network, offer.pay_to, offer.asset):
                problem = self.channels.correct(corrective, now)
                if problem is None:
                    return True, None
                return False, f"corrective 402 not adopted: {problem}"
        return False, "corrective 402 names no offer of this channel"

    def refund(self, request: HttpRequest, now: int, amount: int | None = None) -> Steps[FetchResult]:
        """Ask the server of ``request``'s resource for this client's channel escrow back (``amount``
        atomic units; None: all of it not yet charged): the request is sent unpaid, its 402 names
        the channel, and a refund payload (a zero-charge voucher) is sent once; a corrective 402 is
        adopted as for payments, and the refund sent once more. Refusals are values, as in ``fetch``."""
        first: HttpResponse = yield Send(self._signed(request, now))
        if first.status != 402:
            return FetchResult(first, refused=f"the resource answered {first.status}: no 402 names a channel")
        try:
            challenge = parse_payment_required(first.headers, first.body)
        except ProtocolError as exc:
            return FetchResult(first, refused=f"unreadable 402: {exc}", first_status=402)
        chosen = self._refund_offer(challenge)
        if isinstance(chosen, str):
            return FetchResult(first, challenge, refused=chosen, first_status=402)
        req, offer = chosen
        final, payment, settlement, problem = first, None, None, None
        for attempt in range(2):
            try:
                wire = self.channels.refund(offer, now, amount)
            except ChannelRefused as exc:
                return FetchResult(first, challenge, refused=str(exc), first_status=402)
            payment = PaymentPayload(
                x402_version=2, resource=cast(PaymentRequired, challenge).resource, accepted=req, payload=wire
            )
            paid = request.with_header(payment_header_name(2), encode_header(payment, vouch=True))
            try:
                final = yield Send(self._signed(paid, now))
            except Unreachable:
                self.channels.doubt(offer)
                raise
            try:
                settlement = read_settlement(final.headers)
            except ProtocolError:
                settlement = None
            if final.status == 402 and settlement is None and attempt == 0:
                adopted, problem = self._correct(final, offer, now)
                if adopted:
                    continue
            break
        if settlement is not None and settlement.success and payment is not None:
            problem = self.channels.refunded(offer, payment.payload, settlement, now)
        return FetchResult(final, challenge, payment, settlement, first_status=402, channel_problem=problem)

    def _refund_offer(self, challenge: AnyPaymentRequired) -> tuple[PaymentRequirements, Offer] | str:
        """The batch-settlement offer of ``challenge`` whose channel a refund is asked of (one the
        client has a channel for first), or why there is none."""
        if not isinstance(challenge, PaymentRequired):
            return "batch-settlement refunds are x402 v2 only"
        found: list[tuple[PaymentRequirements, Offer]] = []
        for req in challenge.accepts:
            try:
                offer = Offer.of(req)
            except ProtocolError:
                continue
            if (
                offer.scheme == BATCH_SETTLEMENT
                and offer.network in self.networks
                and not batch_refusal(offer)
            ):
                found.append((req, offer))
        if not found:
            return "the 402 offers no batch-settlement channel this client can use"
        known = [pair for pair in found if self.channels.find(pair[1]) is not None]
        return (known or found)[0]

    def _feedback(
        self,
        challenge: AnyPaymentRequired,
        request: HttpRequest,
        offer: Offer,
        settlement: SettleResponse,
        response: HttpResponse,
        now: int,
    ) -> GiveFeedback | None:
        """The review of a paid delivery by a declared agent: ``rate``'s value, with the settlement
        as proof of payment; None when the server declares no agent or ``rate`` abstains."""
        try:
            server = declared_server(getattr(challenge, "extensions", None))
        except ValueError:
            return None
        if server is None:
            return None
        rate = cast("Callable[[HttpResponse], int | None]", self.rate)  # fetch asks only when there is one
        value = rate(response)
        if value is None:
            return None
        endpoint = server.endpoint or _resource(request, challenge)
        file = feedback_file(
            agent=server.agent,
            client=self.address,
            value=value,
            endpoint=endpoint,
            pay_to=offer.pay_to,
            tx_hash=settlement.transaction,
            network=offer.network,
            created_at=now,
        )
        return GiveFeedback(
            server.agent.agent_id,
            value,
            0,
            TAG_DELIVERED,
            TAG_EXACT_EVM,
            endpoint,
            feedback_uri(file),
            feedback_hash(file),
        )

    def _signed(self, request: HttpRequest, now: int) -> HttpRequest:
        """``request`` with this agent's HTTP message signature, when it has a signer (the paid retry
        is signed afresh: its headers changed)."""
        if self.signer is None:
            return request
        headers = self.signer.sign(
            request.method, request.header("Host") or "", request.path, request.headers, now
        )
        return replace(request, headers=tuple(headers))

    def _record(
        self,
        request: HttpRequest,
        offer: Offer,
        payment: AnyPaymentPayload,
        status: int | None,
        settlement: SettleResponse | None,
    ) -> None:
        record = PaymentRecord(
            resource=request.path,
            pay_to=offer.pay_to,
            asset=offer.asset,
            amount=offer.amount,
            nonce=_nonce_of(payment.payload),
            status=status,
            settlement=settlement,
        )
        self.spent += record.charged
        self.payments.append(record)


def _nonce_of(payload: dict[str, Any]) -> str:
    """The nonce a payment spends: an EIP-3009 authorization's (hex), or a Permit2 permit's (decimal)."""
    signed = payload.get("authorization") or payload.get("permit2Authorization") or {}
    return str(signed.get("nonce", ""))


def answer_with_approver(client: Client, effect: Approve, now: int | None = None) -> Approval:
    """The answer of ``client``'s governor's own approver to ``effect`` (for drivers without a human
    to ask), given at unix time ``now`` if the driver can tell (an approver may take a while: the
    payment is then signed at that time); refused when the governor has no approver."""
    governor = client.governor
    if governor is None or governor.approver is None:
        return Approval(False, by="no approver", now=now)
    granted = bool(governor.approver(effect.decision))
    return Approval(granted, now=now)


def _resource(request: HttpRequest | None, required: AnyPaymentRequired) -> str:
    """Host and path of the paid resource: the request's Host header and path, else the 402's
    resource URL."""
    host = request.header("Host") if request is not None else None
    if host and request is not None:
        return host.lower() + request.path.split("?", 1)[0]
    url = required.resource.url if isinstance(required, PaymentRequired) else required.accepts[0].resource
    parts = urlsplit(url or "")
    return parts.netloc.lower() + (parts.path or "/")


def check_networks(networks: Iterable[str] | None) -> tuple[str, ...]:
    """``networks`` as a tuple of valid CAIP-2 ids; ``ValueError`` when none are named or one is bad:
    a payer must say on which chains it signs."""
    if networks is None or isinstance(networks, str):
        raise ValueError("networks: name the CAIP-2 networks to pay on, e.g. ('eip155:31337',)")
    named = tuple(networks)
    if not named:
        raise ValueError("networks: name at least one CAIP-2 network to pay on")
    for network in named:
        problem = caip2_problem(network)
        if problem is not None:
            raise ValueError(f"network {network!r}: {problem}")
    return named
