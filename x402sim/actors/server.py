"""The reference resource server: priced routes, 402 challenges, verify -> serve -> settle.

Rules:

* The server builds payment requirements from its own routes. Its asset and payTo addresses are
  checked and kept in checksum form, whatever case they were given in. A payment's ``accepted`` copy
  is only used to *pick* one of the server's offers (scheme, network, amount, asset, payTo compared
  field by field, addresses in checksum form); the facilitator is always sent the server's own
  offer, never client-supplied values.
* Routes are matched on the request's ``canonical_path`` (percent-escapes decoded once per segment,
  dot segments resolved, ``//``, a trailing ``/`` and ``;params`` ignored), so every spelling of a
  priced path is priced; a priced route also matches whatever the letter case (a route differing
  only in case is never served free). A path spelled ambiguously (an encoded slash or backslash, a control
  character, a broken or double escape) is refused with 400 before anything else.
* Default order ("authorization" flow): verify, run the handler and hold its response, settle; a
  failed settlement turns the answer into a 402 carrying the settlement header and the handler's
  body is withheld. A handler status >= 400 is passed through and nothing is settled; any other
  status, a 3xx redirect included, is settled or withheld alike.
* ``upfront=True`` settles before the handler runs (the ``upfront`` payment flow) and says so in its
  offers (``extra.paymentFlow = "upfront"``; the default flow is not announced).
* A settlement answered ``settlement_pending`` with a transaction hash is asked for once more, the
  identical request (the facilitator reconciles it with the transaction it already sent); whatever
  the second answer is, it is final. A failed answer then names the transaction it names, else the
  pending one's.
* No payment header gets the 402 challenge. A payment header that cannot be read (not base64, not
  JSON, not a payment) gets 400 with ``{"error": ...}`` naming the problem: nothing is verified.
* A route with a ``discovery`` declaration lists itself for the Bazaar: its v2 402s carry
  ``extensions.bazaar`` (``protocol.bazaar``: ``info`` for the route's method and its JSON Schema).
* Every 402 says ``Cache-Control: no-store``; a paid answer (a successful settlement) is marked
  ``private`` in its ``Cache-Control`` (added to what the handler set).
* A facilitator that does not answer (or answers outside the protocol, or too late: the driver's
  bound) gives a 502 and nothing is served. When that was the settlement, the handler's body is
  withheld and the settlement's fate is unknown to the server: it may still land.
* ``handle`` is a generator of effects (see ``messages``); it performs no I/O.
* Optional, off by default: the ``payment-identifier`` extension (``payment_identifier`` is
  ``"optional"`` or ``"required"``). The 402 declares it; a v2 payment may carry an id (16-128
  characters ``[A-Za-z0-9_-]``) in its ``extensions``. The id is looked up before any verify and
  bound to the payment and the route: the same id with the same payment gets the stored answer of
  its settled first use (nothing is verified or settled again), with another payment or route 409,
  and while its first use is still in flight 409 too; a malformed id, or a missing one when
  required, gets 400. Only a settled answer is stored; an id whose payment was refused is free again.
* Optional, off by default as in the reference servers: a ``ReplayGuard`` (a store of the
  authorizations seen, kept ``ttl`` seconds) refuses a payment already presented here before any
  verify, so a copy sent concurrently never reaches the handler. ``serve_unsettled=True`` is a
  weakness to study: it delivers the handler's response although settlement failed.

* ``batch-settlement`` routes (``Route(scheme="batch-settlement")``, x402 v2 and the default flow
  only) are paid through the payer's channel, kept in ``channels`` (``server_channels.ChannelBook``:
  SQLite, in a file or in memory). Offers add ``receiverAuthorizer`` (the address of
  ``receiver_authorizer_key``, else the one the facilitator's ``/supported`` names), the route's
  ``withdrawDelay``, the token's ``name``/``version``, ``minDeposit`` (the route's, never below the
  price; by default 10 x price) and ``assetTransferMethod`` for Permit2. In order, before anything is
  verified: a payload that is not a client's ``deposit``, ``voucher`` or ``refund`` is refused; a
  deposit below ``minDeposit`` is refused; a voucher whose channel id is not its config's hash is
  refused; a request for a channel already in flight gets ``..._channel_busy``; a voucher that is
  not what was charged so far plus the price (a refund's: what was charged) gets the corrective 402
  ``..._cumulative_amount_mismatch``, whose offer carries ``channelState`` (with
  ``chargedCumulativeAmount``) and ``voucherState`` (the voucher held). A channel the book does not
  know takes its base from the voucher, as the SDK does.
* A voucher is then verified (by the facilitator, or locally when the mirrored channel state is
  younger than ``channel_state_ttl`` and an EOA signs the vouchers: its signature, the balance and
  the claims), served (the handler's answer held), and the new charge written durably; only then is
  it delivered, with ``PAYMENT-RESPONSE`` {transaction "", amount "", extra.chargedAmount,
  extra.channelState}. A deposit is verified, served (held), settled (the deposit must be confirmed,
  with its transaction), written, delivered. A refund is verified, then completed (refund nonce,
  the claim of what was charged, the receiver authorizer's signatures when this server holds its
  key), settled, and the channel updated (forgotten once drained): 200 with the settlement. Nothing
  is written for a refused verify, a handler status >= 400 or a failed settlement; a write that
  fails answers 500 and delivers nothing.
* ``channel_work(now)`` is the channels' cadence (``server_channels``): claims (batched per receiver
  authorizer, receiver and token; a refused batch is claimed channel by channel), settlements after
  claims, and optional refunds of idle channels, as ``Settle``
  effects whose payloads are built as the SDK's channel manager builds them. The channel side is
  written in ``server_channels.ChannelSelling``, which ``ResourceServer`` mixes in.

Hooks. A variant of the server (the conformance suite's broken controls, a study of a weakness)
subclasses ``ResourceServer`` and overrides one of these public methods, each named for the step it
is; nothing else of the role is meant to be replaced:

* ``match_offer(route, payment)``: offer matching, which of this server's offers a payment's
  ``accepted`` names (None: none);
* ``serve_identified(route, request, payment, now)``: the ``payment-identifier`` bookkeeping around
  a paid request;
* ``mandate_check(route, payment, requirements, now)``: the AP2 mandate check;
* ``verify_serve_settle(route, request, payment, requirements, version)``: the ``authorization``
  flow (verify, then serve, then settle);
* ``settle_then_serve(...)``: the ``upfront`` flow, same arguments;
* ``serve_channel(...)``: a batch-settlement route, same arguments and the time;
  ``verify_locally(record, body, requirements, now)``: a voucher judged without the facilitator;
* ``settle_payment(payment, requirements)``: the settlement both flows ask for (a pending one twice);
* ``deliver(route, version, response, settlement)``: the answer the buyer gets from a settlement
  (and the handler's response, when there is one).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, cast

from eth_utils import is_address

from ..evm.chain import ChainBasics
from ..evm.channels import (
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
)
from ..mechanisms import (
    EXACT_EIP3009,
    SPONSORING_EXTENSIONS,
    Mechanism,
    Mechanisms,
    Offer,
    Verdict,
    default_mechanisms,
    evm_address,
    transfer_method_of,
)
from ..mechanisms.permit2 import TRANSFER_METHOD as PERMIT2
from ..mechanisms.sponsoring import declaration as sponsoring_declaration
from ..protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    ProtocolError,
    Reason,
    ResourceInfo,
    SettleResponse,
    SupportedResponse,
    VerifyResponse,
    caip2_to_v1,
    codec,
    decode_header,
    encode_again,
    encode_header,
    read_payment,
    response_header_name,
)
from ..protocol.bazaar import BAZAAR, BazaarExtension, HttpDeclaration, listing_of
from ..protocol.recent import Recent
from ..trust.mandates import EXTENSION as MANDATE_EXTENSION
from ..trust.mandates import VCT_CLOSED, MandateRefused, PaymentFacts, VerifiedMandate
from ..trust.mandates import attached as attached_mandate
from ..trust.reputation import EXTENSION as REPUTATION_EXTENSION
from ..trust.reputation import PayerRules, ServerIdentity, reputation_tier
from .messages import (
    AmbiguousPath,
    Handle,
    Headers,
    HttpRequest,
    HttpResponse,
    Settle,
    Steps,
    Unreachable,
    Verify,
    canonical_path,
)
from .server_channels import (
    DEFAULT_CLAIM_INTERVAL,
    DEFAULT_MAX_CLAIMS,
    DEFAULT_SETTLE_INTERVAL,
    DEFAULT_WITHDRAW_DELAY,
    ChannelBook,
    ChannelSelling,
)
from .server_channels import SCHEME as CHANNEL_SCHEME

DEFAULT_MAX_TIMEOUT_SECONDS = 300
PAYMENT_FLOW_UPFRONT = "upfront"
NOT_STORED = "no-store"  # the Cache-Control of every 402
SETTLEMENT_OVERRIDES = "Settlement-Overrides"  # a handler's answer naming an upto charge (the SDKs' header)
_PERCENT = re.compile(r"(\d+(?:\.\d{0,2})?)%")
_DOLLARS = re.compile(r"\$(\d+(?:\.\d+)?)")
PAYMENT_IDENTIFIER = "payment-identifier"
PAYMENT_IDENTIFIER_MODES = ("off", "optional", "required")
PAYMENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
# The JSON Schema the extension's declaration carries (the ``info`` a client sends back must match it).
PAYMENT_IDENTIFIER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "required": {"type": "boolean"},
        "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"},
    },
    "required": ["required"],
}


def _address(value: str, what: str) -> str:
    try:
        return evm_address(value, what)
    except ProtocolError as exc:
        raise ValueError(f"{exc.where}: {exc.problem}: {value!r}") from None


@dataclass(frozen=True)
class Route:
    """A priced route: ``key`` is ``"METHOD /path"``; ``price`` in the asset's atomic units.
    ``service_name``, ``tags`` and ``icon_url`` are what its 402's ``resource`` tells of it."""

    key: str
    price: int
    pay_to: str | None = None
    description: str = ""
    mime_type: str = "application/json"
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    service_name: str | None = None
    tags: tuple[str, ...] = ()
    icon_url: str | None = None
    scheme: str | None = None  # the scheme its offer names (None: the server's mechanism's)
    transfer_method: str | None = None  # its extra.assetTransferMethod (None: the scheme's default)
    # upto: the charge for a served request, from the request and the handler's answer: atomic
    # units, or a string as the SDKs' override takes it ("1500", "50%" of the maximum, "$0.002").
    # None: the handler's Settlement-Overrides header says it, else the maximum is charged.
    usage: Callable[[HttpRequest, HttpResponse], int | str] | None = None
    # batch-settlement: the least deposit that opens or tops up a channel (None: 10 x price), the
    # withdraw delay its channels must name, and its claim and settle cadence in seconds (None: the
    # server's)
    min_deposit: int | None = None
    withdraw_delay: int = DEFAULT_WITHDRAW_DELAY
    claim_interval: int | None = None
    settle_interval: int | None = None
    # its Bazaar listing, declared in its 402s (``extensions.bazaar``): an ``HttpDeclaration`` (built
    # for the route's method) or a ready listing (``mcp_tool_listing``); None: not listed
    discovery: HttpDeclaration | BazaarExtension | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        method, _, path = self.key.partition(" ")
        if not method.isalpha() or not path.startswith("/"):
            raise ValueError(f"route {self.key!r}: expected 'METHOD /path'")
        if not isinstance(self.price, int) or isinstance(self.price, bool) or not 0 <= self.price < 2**256:
            raise ValueError(
                f"route {self.key!r}: price must be an integer number of atomic units, got {self.price!r}"
            )
        object.__setattr__(self, "key", f"{method.upper()} {path}")
        object.__setattr__(self, "tags", tuple(self.tags))
        if not all(isinstance(tag, str) for tag in self.tags):
            raise ValueError(f"route {self.key!r}: tags must be strings, got {self.tags!r}")
        if self.pay_to is not None:
            object.__setattr__(self, "pay_to", _address(self.pay_to, f"route {self.key!r}: pay_to"))
        if not MIN_WITHDRAW_DELAY <= self.withdraw_delay <= MAX_WITHDRAW_DELAY:
            raise ValueError(
                f"route {self.key!r}: withdraw_delay must be {MIN_WITHDRAW_DELAY}..{MAX_WITHDRAW_DELAY} s, "
                f"got {self.withdraw_delay}"
            )
        for name in ("min_deposit", "claim_interval", "settle_interval"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"route {self.key!r}: {name} must be a positive integer, got {value!r}")


class ReplayGuard:
    """Authorizations (payer, nonce) this server has seen, each remembered for ``ttl`` seconds."""

    def __init__(self, ttl: int) -> None:
        if ttl <= 0:
            raise ValueError(f"replay guard ttl must be positive, got {ttl}")
        self.ttl = ttl
        self._seen: dict[tuple[str, str], int] = {}
        self._prune_at = 1024

    def admit(self, key: tuple[str, str], now: int) -> bool:
        """Whether ``key`` is new (it is remembered from now on); False for a replay."""
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            return False
        self._seen[key] = now + self.ttl
        if len(self._seen) >= self._prune_at:
            self._seen = {k: e for k, e in self._seen.items() if e > now}
            self._prune_at = max(1024, 2 * len(self._seen))
        return True

    def release(self, key: tuple[str, str]) -> None:
        """Forget ``key``: the payment was refused before it could be used."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


class PaymentIdentifiers:
    """Payment ids seen by a server: each bound to one payment on one route (a fingerprint) and, once
    that payment settled, its answer. At most ``capacity`` ids are kept; the oldest go first."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"payment identifier capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, HttpResponse | None]] = OrderedDict()

    def lookup(self, payment_id: str) -> tuple[str, HttpResponse | None] | None:
        """``(fingerprint, stored answer or None while in flight)``, or None for a new id."""
        return self._entries.get(payment_id)

    def begin(self, payment_id: str, fingerprint: str) -> None:
        self._entries[payment_id] = (fingerprint, None)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def finish(self, payment_id: str, fingerprint: str, answer: HttpResponse | None) -> None:
        """Store the answer of a settled payment, or (``answer`` None) free the id again."""
        if answer is None:
            self._entries.pop(payment_id, None)
        else:
            self._entries[payment_id] = (fingerprint, answer)

    def __len__(self) -> int:
        return len(self._entries)


def _payment_id(payment: PaymentPayload) -> tuple[str | None, str | None]:
    """``(id, problem)`` from a v2 payment's ``payment-identifier`` extension: ``(None, None)`` when it
    carries none, a problem when what it carries is not an id."""
    extensions = payment.extensions or {}
    if PAYMENT_IDENTIFIER not in extensions:
        return None, None
    extension = extensions[PAYMENT_IDENTIFIER]
    info = extension.get("info") if isinstance(extension, dict) else None
    if not isinstance(info, dict):
        return None, f"extension {PAYMENT_IDENTIFIER} has no info object"
    value = info.get("id")
    if value is None:
        return None, None
    if not isinstance(value, str) or not PAYMENT_ID_PATTERN.fullmatch(value):
        return None, "payment identifier must be 16-128 characters of A-Z a-z 0-9 _ -"
    return value, None


def _fingerprint(payment: AnyPaymentPayload, request: HttpRequest) -> str:
    # By the path the request names (any spelling), so a spelling is not another resource.
    text = json.dumps([request.canonical_key, payment.to_wire()], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _authorization_key(payment: AnyPaymentPayload) -> tuple[str, str] | None:
    """The (payer, nonce) a payment spends, as the facilitator claims it: an EIP-3009
    authorization, or a Permit2 permit (nonce ``permit2:<n>``); None when it names neither."""
    payload = payment.payload if isinstance(payment.payload, dict) else {}
    auth, permit = payload.get("authorization"), payload.get("permit2Authorization")
    if isinstance(auth, dict):
        payer, nonce = auth.get("from"), auth.get("nonce")
    elif isinstance(permit, dict):
        payer, nonce = permit.get("from"), f"permit2:{permit.get('nonce')}"
    else:
        return None
    if not isinstance(payer, str) or not isinstance(nonce, str):
        return None
    return payer.lower(), nonce.lower()


def resolve_charge(value: int | str, maximum: int, decimals: int) -> int:
    """An upto charge in atomic units from ``value``: atomic units (an int, or decimal digits), a
    percentage of ``maximum`` with at most two decimals ("50%", floored), or dollars ("$0.002", in an
    asset of ``decimals`` decimals, floored), as the SDKs read their override. ``ValueError`` names
    a value of none of these forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"charge {value} is negative")
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    if match := _PERCENT.fullmatch(text):
        hundredths = int((Decimal(match.group(1)) * 100).to_integral_value())
        return maximum * hundredths // 10_000
    if match := _DOLLARS.fullmatch(text):
        try:
            atomic = Decimal(match.group(1)) * (10**decimals)
        except InvalidOperation:
            raise ValueError(f"charge {value!r} is not a dollar amount") from None
        return int(atomic.to_integral_value(rounding=ROUND_FLOOR))
    raise ValueError(f"charge {value!r} is not atomic units, a percentage or a dollar amount")


def default_handler(request: HttpRequest) -> HttpResponse:
    return HttpResponse.of_json(200, {"resource": request.path, "paid": True})


@dataclass(frozen=True)
class _Quote:
    """A route's offers, and its 402 by error text (the model and its header value), for the server
    fields they were made from (``ResourceServer._quote``)."""

    route: Route
    state: tuple[Any, ...]
    offers: tuple[PaymentRequirements, ...]
    challenges: Recent[str, tuple[PaymentRequired, str]]


@dataclass
class ResourceServer(ChannelSelling):
    """Sells its routes for ``asset`` on ``network`` through whatever facilitator the driver reaches."""

    network: str
    asset: str
    asset_name: str
    asset_version: str
    pay_to: str
    routes: Mapping[str, Route]
    base_url: str = "http://localhost"
    upfront: bool = False
    x402_version: int = 2
    replay_guard: ReplayGuard | None = None
    serve_unsettled: bool = False
    payment_identifier: str = "off"
    identifiers: PaymentIdentifiers = field(default_factory=PaymentIdentifiers)
    stats: Counter[str] = field(default_factory=Counter)
    crawl: Any = None  # who may fetch at all, and whether they pay (see ``x402sim.trust.CrawlPolicy``)
    identity: ServerIdentity | None = None  # the ERC-8004 agent this server is, declared in its 402s
    payers: PayerRules | None = None  # what it asks of the agents paying it (identity, reputation)
    mandates: Any = None  # a ``MandateVerifier``: every payment must carry an AP2 mandate it accepts
    mechanism: Mechanism[Verdict] = EXACT_EIP3009  # how a route that names no scheme is paid
    mechanisms: Mechanisms[Verdict] = field(default_factory=default_mechanisms)  # what routes may name
    # what its facilitator answered to /supported: the kinds' extra (upto's facilitatorAddress) goes
    # into the offers, the gas-sponsoring extensions it lists are declared for Permit2 routes
    supported: SupportedResponse | None = None
    asset_decimals: int = 6  # for an upto charge given in dollars
    # batch-settlement: the channel book (in memory unless given one on a file); the receiver
    # authorizer's key when this server signs its claims and refunds itself (None: the facilitator's
    # receiverAuthorizer from /supported does); the cadence defaults; how long a mirrored channel
    # state lets a voucher be verified locally (None: the SDK's, a third of the withdraw delay within
    # 30..300 s; 0: never); channels idle this long are refunded (None: never)
    channels: ChannelBook = field(default_factory=ChannelBook)
    receiver_authorizer_key: bytes | None = None
    claim_interval: int = DEFAULT_CLAIM_INTERVAL
    settle_interval: int = DEFAULT_SETTLE_INTERVAL
    max_claims: int = DEFAULT_MAX_CLAIMS
    channel_state_ttl: int | None = None
    refund_idle: int | None = None
    # routes by canonical key, and priced routes by case-folded canonical key, for the ``routes``
    # mapping they were built from (a changed route comes in a new mapping: see ``route_for``)
    _index: tuple[Mapping[str, Route], dict[str, Route], dict[str, Route]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _quotes: Recent[int, _Quote] = field(
        default_factory=lambda: Recent(256), init=False, repr=False, compare=False
    )

    @classmethod
    def with_prices(
        cls, prices: Mapping[str, int | Route], *, chain: ChainBasics | None = None, **kwargs: Any
    ) -> ResourceServer:
        """Build from ``{"GET /path": price}`` (or Route values). ``chain`` (a ``LocalChain``) fills in
        network, asset and the asset's EIP-712 name and version: its token is what is sold."""
        routes: dict[str, Route] = {}
        for key, value in prices.items():
            route = value if isinstance(value, Route) else Route(key, value)
            routes[route.key] = route
        if chain is not None:
            kwargs = {
                "network": chain.network,
                "asset": chain.usdc,
                "asset_name": chain.token_name,
                "asset_version": chain.token_version,
                **kwargs,
            }
        return cls(routes=routes, **kwargs)

    def __post_init__(self) -> None:
        if self.x402_version not in (1, 2):
            raise ValueError(f"x402_version must be 1 or 2, got {self.x402_version}")
        if self.payment_identifier not in PAYMENT_IDENTIFIER_MODES:
            raise ValueError(
                f"payment_identifier must be one of {', '.join(PAYMENT_IDENTIFIER_MODES)}, "
                f"got {self.payment_identifier!r}"
            )
        if self.x402_version == 1 and caip2_to_v1(self.network) is None:
            raise ValueError(f"network {self.network} has no x402 v1 name; v1 cannot describe it")
        # One canonical spelling, so offers, comparisons and transactions agree whatever case was given.
        self.asset = _address(self.asset, "asset")
        self.pay_to = _address(self.pay_to, "pay_to")
        for route in self.routes.values():
            mechanism = self.mechanism_of(route)
            if mechanism.scheme == "upto" and (self.upfront or self.x402_version == 1):
                raise ValueError(f"route {route.key!r}: upto is settled after the work, in x402 v2 only")
            if mechanism.scheme == CHANNEL_SCHEME and (self.upfront or self.x402_version == 1):
                raise ValueError(f"route {route.key!r}: batch-settlement is paid in x402 v2, work first")

    def mechanism_of(self, route: Route) -> Mechanism[Verdict]:
        """The mechanism ``route``'s offers are paid by (``ValueError`` naming the route when no
        mechanism of the server's speaks its scheme and transfer method)."""
        if route.scheme is None and route.transfer_method is None:
            return self.mechanism
        scheme = route.scheme or self.mechanism.scheme
        method = route.transfer_method or transfer_method_of(None, scheme)
        found = self.mechanisms.find(scheme, self.network, {"assetTransferMethod": method})
        if found is None:
            raise ValueError(
                f"route {route.key!r}: no mechanism pays {scheme!r} by {method!r} on {self.network}"
            )
        return found

    def _kind_extra(self, mechanism: Mechanism[Verdict]) -> dict[str, Any]:
        """What the facilitator's ``/supported`` kind for ``mechanism`` adds to an offer's extra."""
        for kind in self.supported.kinds if self.supported else ():
            if (kind.x402_version, kind.scheme, kind.network) == (2, mechanism.scheme, self.network):
                return dict(kind.extra or {})
        return {}

    # -- offers -------------------------------------------------------------------------------

    def requirements(
        self, route: Route, price: int | None = None, extra: dict[str, Any] | None = None
    ) -> PaymentRequirements:
        flow = {"paymentFlow": PAYMENT_FLOW_UPFRONT} if self.upfront else {}
        mechanism = self.mechanism_of(route)
        own = mechanism.extra(self.asset_name, self.asset_version)
        if mechanism.scheme == CHANNEL_SCHEME:
            own = {**own, **self._channel_extra(route, mechanism, route.price if price is None else price)}
        return PaymentRequirements(
            scheme=mechanism.scheme,
            network=self.network,
            amount=route.price if price is None else price,
            asset=self.asset,
            pay_to=route.pay_to or self.pay_to,
            max_timeout_seconds=route.max_timeout_seconds,
            extra={**self._kind_extra(mechanism), **own, **flow, **(extra or {})},
        )

    def offers(self, route: Route, extra: dict[str, Any] | None = None) -> list[PaymentRequirements]:
        """The route's v2 offers: its price, then one per reputation tier cheaper than it (an offer
        reserved for payers reputed at least ``extra.reputation.min``). ``extra`` is added to the
        first (a corrective 402's channel state)."""
        quote = self._quote(route) if extra is None else None
        if quote is not None:
            return list(quote.offers)
        return self._offers(route, extra)

    def _offers(self, route: Route, extra: dict[str, Any] | None = None) -> list[PaymentRequirements]:
        offers = [self.requirements(route, extra=extra)]
        for floor, price in sorted((self.payers.tiers if self.payers else {}).items()):
            if price < route.price:
                offers.append(self.requirements(route, price, {"reputation": {"min": floor}}))
        return offers

    def requirements_v1(self, route: Route) -> PaymentRequirementsV1 | None:
        name = caip2_to_v1(self.network)
        if name is None:
            return None
        mechanism = self.mechanism_of(route)
        return PaymentRequirementsV1(
            scheme=mechanism.scheme,
            network=name,
            max_amount_required=route.price,
            asset=self.asset,
            pay_to=route.pay_to or self.pay_to,
            resource=self.resource_url(route),
            description=route.description,
            mime_type=route.mime_type,
            max_timeout_seconds=route.max_timeout_seconds,
            extra=mechanism.extra(self.asset_name, self.asset_version),
        )

    def resource_url(self, route: Route) -> str:
        """The URL this server names ``route`` by in its 402s."""
        return self.base_url + route.key.split(" ", 1)[1]

    def challenge(
        self,
        route: Route,
        version: int,
        error: str,
        headers: Headers = (),
        status: int = 402,
        extra: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The 402 for ``route`` in x402 ``version``, with ``error`` explaining why (``status`` 412
        when the payer must first approve Permit2; ``extra`` added to the v2 offer's extra)."""
        headers = (("Cache-Control", NOT_STORED), *headers)
        if version == 1 and (v1 := self.requirements_v1(route)) is not None:
            body = PaymentRequiredV1(x402_version=1, error=error, accepts=[v1])
            return HttpResponse.of_json(status, body.to_wire(), headers)
        quote = self._quote(route) if extra is None else None
        if quote is None:
            required = self._required(route, error, self._offers(route, extra))
            value = encode_header(required, vouch=True)
        elif (kept := quote.challenges.get(error)) is not None:
            value = encode_again(*kept)
        else:
            required = self._required(route, error, list(quote.offers))
            value = encode_header(required, vouch=True)
            quote.challenges.keep(error, (required, value))
        return HttpResponse.of_json(status, {}, ((PAYMENT_REQUIRED, value), *headers))

    def _required(self, route: Route, error: str, accepts: list[PaymentRequirements]) -> PaymentRequired:
        return PaymentRequired(
            x402_version=2,
            error=error,
            resource=ResourceInfo(
                url=self.resource_url(route),
                description=route.description or None,
                mime_type=route.mime_type,
                service_name=route.service_name,
                tags=list(route.tags) or None,
                icon_url=route.icon_url,
            ),
            accepts=accepts,
            extensions=self.extensions(route),
        )

    def _quote(self, route: Route) -> _Quote | None:
        """What ``route``'s offers and 402s are while nothing they are made of changes; None for a
        server whose offers depend on more than its fields and the route (channel state, payer
        tiers, an identity, mandates). Under ``CHECK_TRUSTED_HOPS`` they are made again and must be
        equal."""
        if self.payers is not None or self.identity is not None or self.mandates is not None:
            return None
        state = (
            self.network,
            self.asset,
            self.asset_name,
            self.asset_version,
            self.pay_to,
            self.upfront,
            self.base_url,
            self.payment_identifier,
            self.supported,
            self.mechanism,
            self.mechanisms,
        )
        quote = self._quotes.get(id(route))
        if quote is None or quote.route is not route or quote.state != state:
            if self.mechanism_of(route).scheme == CHANNEL_SCHEME:
                return None
            quote = _Quote(route, state, tuple(self._offers(route)), Recent(16))
            self._quotes.keep(id(route), quote)
        elif codec.CHECK_TRUSTED_HOPS:
            offers = self._offers(route)
            if list(quote.offers) != offers:
                raise AssertionError(f"route {route.key!r}: the offers changed with no field of the server")
            for error, (required, _) in quote.challenges.items():
                if self._required(route, error, offers) != required:
                    raise AssertionError(f"route {route.key!r}: the 402 changed with no field of the server")
        return quote

    def extensions(self, route: Route | None = None) -> dict[str, Any] | None:
        """The extensions the 402 for ``route`` declares (v2), None when none: a Permit2 route
        declares the gas-sponsoring extensions its facilitator lists."""
        declared: dict[str, Any] = {}
        if route is not None and self.mechanism_of(route).transfer_method == PERMIT2:
            offered = self.supported.extensions if self.supported else []
            for name in SPONSORING_EXTENSIONS:
                if name in offered:
                    declared[name] = sponsoring_declaration(name)
        if self.payment_identifier != "off":
            declaration = {"required": self.payment_identifier == "required"}
            declared[PAYMENT_IDENTIFIER] = {"info": declaration, "schema": PAYMENT_IDENTIFIER_SCHEMA}
        if self.identity is not None:
            declared[REPUTATION_EXTENSION] = self.identity.declaration()
        if self.mandates is not None:  # payments here must carry an AP2 payment mandate
            declared[MANDATE_EXTENSION] = {"info": {"required": True, "mandate": VCT_CLOSED}}
        if route is not None and route.discovery is not None:
            declared[BAZAAR] = listing_of(route.discovery, route.key.split(" ", 1)[0]).to_wire()
        return declared or None

    def match_offer(self, route: Route, payment: PaymentPayload | PaymentPayloadV1) -> AnyRequirements | None:
        """Hook, offer matching: the server's own offer for ``route`` that ``payment`` names, or None."""
        offer: AnyRequirements | None
        if isinstance(payment, PaymentPayloadV1):
            offer = self.requirements_v1(route)
            ok = offer is not None and (payment.scheme, payment.network) == (offer.scheme, offer.network)
            return offer if ok else None
        try:
            accepted = Offer.of(payment.accepted)
        except ProtocolError:
            return None  # an address that is no address matches nothing
        for offer in self.offers(route):
            same = (
                accepted.scheme == offer.scheme
                and accepted.network == offer.network
                and accepted.amount == offer.amount
                and accepted.asset == offer.asset
                and accepted.pay_to == offer.pay_to
            )
            if same:
                return offer
        return None

    # -- the exchange -------------------------------------------------------------------------

    def route_for(self, request: HttpRequest) -> Route | None:
        """The route ``request`` names, by its canonical path (raises ``AmbiguousPath``): the route
        whose path is the same, else a priced route whose path differs only in letter case."""
        key = request.canonical_key
        route = self.routes.get(key)
        if route is not None:
            return route
        if self._index is None or self._index[0] is not self.routes:
            canonical: dict[str, Route] = {}
            priced: dict[str, Route] = {}
            for known in self.routes.values():
                method, path = known.key.split(" ", 1)
                try:
                    name = f"{method} {canonical_path(path)}"
                except AmbiguousPath:
                    continue  # a route spelled ambiguously is only reached by its exact key
                canonical.setdefault(name, known)
                if known.price > 0:
                    priced.setdefault(name.casefold(), known)
            self._index = (self.routes, canonical, priced)
        _, canonical, priced = self._index
        return canonical.get(key) or priced.get(key.casefold())

    def carries_payment(self, request: HttpRequest) -> bool:
        """Whether ``request`` asks for paid work (a priced route and a payment header): what a
        world bounds when it bounds the work in flight."""
        try:
            route = self.route_for(request)
        except AmbiguousPath:
            return False  # refused at once, no work
        if route is None or route.price == 0:
            return False
        return request.header(PAYMENT_SIGNATURE) is not None or request.header(X_PAYMENT) is not None

    def overloaded(self, retry_after: int) -> HttpResponse:
        """The answer to a paid request refused before any verify or settle: nothing was charged."""
        self.stats["overloaded"] += 1
        return HttpResponse.of_json(
            503,
            {"error": f"server busy: payment not used, retry after {retry_after} s"},
            (("Retry-After", str(retry_after)),),
        )

    def handle(self, request: HttpRequest, now: int | None = None) -> Steps[HttpResponse]:
        """Answer one request at time ``now`` (needed only by a replay guard); yields
        ``Verify``/``Handle``/``Settle`` effects."""
        try:
            route = self.route_for(request)
        except AmbiguousPath as exc:
            self.stats["path_refused"] += 1
            return HttpResponse.of_json(400, {"error": f"request path refused: {exc}"})
        if self.crawl is not None:
            if now is None:
                raise ValueError("a server with a crawl policy needs the time: handle(request, now)")
            verdict = self.crawl.admit(
                request.method, request.header("Host") or "", request.path, request.headers, now
            )
            if verdict.action == "block":
                self.stats["crawl_blocked"] += 1
                return HttpResponse.of_json(verdict.status, {"error": verdict.reason})
            if verdict.action == "free":
                self.stats["crawl_free"] += 1
                free: HttpResponse = yield Handle(request)
                return free
        if route is None or route.price == 0:
            self.stats["free"] += 1
            answer: HttpResponse = yield Handle(request)
            return answer
        try:
            payment = read_payment(request.headers)
        except ProtocolError as exc:
            self.stats["malformed"] += 1
            return HttpResponse.of_json(400, {"error": f"invalid payment header: {exc}"})
        if payment is None:
            self.stats["unpaid"] += 1
            return self.challenge(route, self.x402_version, "payment required")
        if self.payment_identifier != "off" and isinstance(payment, PaymentPayload):
            return (yield from self.serve_identified(route, request, payment, now))
        return (yield from self._paid(route, request, payment, now))

    def serve_identified(
        self, route: Route, request: HttpRequest, payment: PaymentPayload, now: int | None
    ) -> Steps[HttpResponse]:
        """Hook: the payment-identifier extension around verifying, serving and settling."""
        payment_id, problem = _payment_id(payment)
        if problem is None and payment_id is None and self.payment_identifier == "required":
            problem = f"this resource requires a payment identifier (extension {PAYMENT_IDENTIFIER})"
        if problem is not None:
            self.stats["identifier_invalid"] += 1
            return HttpResponse.of_json(400, {"error": problem})
        if payment_id is None:
            return (yield from self._paid(route, request, payment, now))
        fingerprint = _fingerprint(payment, request)
        known = self.identifiers.lookup(payment_id)
        if known is not None:
            seen, answer = known
            if seen != fingerprint:
                self.stats["identifier_conflict"] += 1
                return HttpResponse.of_json(
                    409, {"error": "payment identifier already used for another payment or resource"}
                )
            if answer is None:
                self.stats["identifier_in_flight"] += 1
                return HttpResponse.of_json(
                    409,
                    {"error": "a payment with this identifier is being processed; retry later"},
                    (("Retry-After", "1"),),
                )
            self.stats["identifier_cached"] += 1
            return answer
        self.identifiers.begin(payment_id, fingerprint)
        response = None
        try:
            response = yield from self._paid(route, request, payment, now)
        finally:
            settled = response is not None and response.status < 400 and self._settled(response)
            self.identifiers.finish(payment_id, fingerprint, response if settled else None)
        return response

    @staticmethod
    def _settled(response: HttpResponse) -> bool:
        header = response.header(PAYMENT_RESPONSE)
        if header is None:
            return False
        try:
            return decode_header(header, SettleResponse).success
        except ProtocolError:
            return False

    def _paid(
        self, route: Route, request: HttpRequest, payment: AnyPaymentPayload, now: int | None
    ) -> Steps[HttpResponse]:
        """Verify, serve and settle ``payment`` for ``route``."""
        version = payment.x402_version
        requirements = self.match_offer(route, payment)
        if requirements is None:
            self.stats["unmatched"] += 1
            return self.challenge(route, version, "No matching payment requirements")
        refusal = self._payer_refusal(payment, requirements)
        if refusal is not None:
            self.stats["payer_refused"] += 1
            return self.challenge(route, version, f"payer refused: {refusal}")
        mandate = None
        if self.mandates is not None:
            mandate, refusal = self.mandate_check(route, payment, requirements, now)
            if refusal is not None:
                self.stats["mandate_refused"] += 1
                return self.challenge(route, version, f"mandate refused: {refusal}")
        guard_key = _authorization_key(payment) if self.replay_guard is not None else None
        if guard_key is not None:
            if now is None:
                raise ValueError("a server with a replay guard needs the time: handle(request, now)")
            if not cast(ReplayGuard, self.replay_guard).admit(guard_key, now):  # a key means a guard
                self.stats["replay_refused"] += 1
                if mandate is not None:
                    self.mandates.release(mandate)
                return self.challenge(route, version, "payment already presented")
        response = None
        try:
            if self.mechanism_of(route).scheme == CHANNEL_SCHEME:
                response = yield from self.serve_channel(route, request, payment, requirements, version, now)
            elif self.upfront:
                response = yield from self.settle_then_serve(route, request, payment, requirements, version)
            else:
                response = yield from self.verify_serve_settle(route, request, payment, requirements, version)
        except Unreachable as exc:
            self.stats["facilitator_unreachable"] += 1
            response = HttpResponse.of_json(502, {"error": str(exc)})
        finally:
            if mandate is not None:  # a mandate's budget counts what settled, and only that
                if response is not None and self._settled(response):
                    self.mandates.settled(mandate)
                else:
                    self.mandates.release(mandate)
        if guard_key is not None and self._unused(response):
            cast(ReplayGuard, self.replay_guard).release(guard_key)
        return response

    def _payer_refusal(self, payment: AnyPaymentPayload, requirements: AnyRequirements) -> str | None:
        """Why ``payers`` refuses the agent behind ``payment`` for this offer, or None."""
        tier = reputation_tier(requirements.extra)
        if self.payers is None and tier is None:
            return None
        if self.payers is None:
            return "this offer is reserved for reputed payers, and this server reads no registry"
        payload = payment.payload if isinstance(payment.payload, dict) else {}
        signed = payload.get("authorization") or payload.get("permit2Authorization")
        payer = signed.get("from") if isinstance(signed, dict) else None
        if not isinstance(payer, str) or not is_address(payer):
            return "the payment names no payer"
        extensions = payment.extensions if isinstance(payment, PaymentPayload) else None
        return self.payers.problem(payer, extensions, tier)

    def mandate_check(
        self, route: Route, payment: AnyPaymentPayload, requirements: AnyRequirements, now: int | None
    ) -> tuple[VerifiedMandate | None, str | None]:
        """Hook: check the AP2 mandate ``payment`` carries against the offer it pays and this server's URL
        of ``route`` (never the resource the payment claims): (the verified, reserved mandate, None)
        or (None, why it is refused)."""
        if now is None:
            raise ValueError("a server verifying mandates needs the time: handle(request, now)")
        if not isinstance(payment, PaymentPayload):
            return None, "missing: an AP2 mandate travels only with an x402 v2 payment"
        try:
            chain = attached_mandate(payment.extensions)
            if chain is None:
                raise MandateRefused("missing", "this resource is sold only under an AP2 payment mandate")
            authorization = payment.payload.get("authorization", {})
            offer = cast(PaymentRequirements, requirements)  # matched to a v2 payment: a v2 offer
            facts = PaymentFacts(
                payer=authorization.get("from", ""),
                pay_to=offer.pay_to,
                asset=offer.asset,
                network=offer.network,
                amount=int(offer.amount),
                nonce=authorization.get("nonce", ""),
                resource=self.resource_url(route),
            )
            return self.mandates.check(chain, facts, now), None
        except MandateRefused as exc:
            return None, f"{exc.code}: {exc}"

    @staticmethod
    def _unused(response: HttpResponse) -> bool:
        """Whether the payment was refused before any settlement was tried (verify said no, or no
        facilitator answered it): then it may be presented again."""
        settled = response.header(PAYMENT_RESPONSE) or response.header(X_PAYMENT_RESPONSE)
        return response.status in (402, 502) and settled is None

    def verify_serve_settle(
        self,
        route: Route,
        request: HttpRequest,
        payment: AnyPaymentPayload,
        requirements: AnyRequirements,
        version: int,
    ) -> Steps[HttpResponse]:
        """Hook, the ``authorization`` flow: verify, run the handler and hold its answer, settle."""
        verdict: VerifyResponse = yield Verify(payment, requirements)
        if not verdict.is_valid:
            self.stats["invalid"] += 1
            allowance = verdict.invalid_reason == Reason.permit2_allowance_required
            status = 412 if allowance else 402
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment", status=status)
        response: HttpResponse = yield Handle(request)
        if response.status >= 400:
            self.stats["handler_error"] += 1
            return response
        if self.mechanism_of(route).scheme == "upto":
            response, charged = self.charge(route, request, response, requirements)
            if isinstance(charged, SettleResponse):
                return self.deliver(route, version, response, charged)
            requirements = charged
        settlement = yield from self.settle_payment(payment, requirements)
        return self.deliver(route, version, response, settlement)

    def charge(
        self, route: Route, request: HttpRequest, response: HttpResponse, requirements: AnyRequirements
    ) -> tuple[HttpResponse, AnyRequirements | SettleResponse]:
        """upto: the handler's answer (without its ``Settlement-Overrides`` header) and the
        requirements to settle, whose amount is the charge; or, for a charge above the signed
        maximum, the refused settlement (nothing is sent: x402#3334, which the SDKs' servers leave to
        the facilitator)."""
        maximum = int(requirements.amount if isinstance(requirements, PaymentRequirements) else 0)
        override = response.header(SETTLEMENT_OVERRIDES)
        kept = tuple((k, v) for k, v in response.headers if k.lower() != SETTLEMENT_OVERRIDES.lower())
        response = HttpResponse(response.status, kept, response.body)
        value: int | str = maximum
        if route.usage is not None:
            value = route.usage(request, response)
        elif override is not None:
            try:
                value = str(json.loads(override)["amount"])
            except (ValueError, TypeError, KeyError):
                value = override
        amount = resolve_charge(value, maximum, self.asset_decimals)
        if amount > maximum:
            self.stats["overcharge_refused"] += 1
            return response, SettleResponse(
                success=False,
                error_reason=Reason.invalid_upto_evm_payload_settlement_exceeds_amount.value,
                error_message=f"charge {amount} is above the signed maximum {maximum}",
                transaction="",
                network=requirements.network,
            )
        return response, requirements.model_copy(update={"amount": amount})

    def settle_then_serve(
        self,
        route: Route,
        request: HttpRequest,
        payment: AnyPaymentPayload,
        requirements: AnyRequirements,
        version: int,
    ) -> Steps[HttpResponse]:
        """Hook, the ``upfront`` flow: settle, then run the handler."""
        settlement = yield from self.settle_payment(payment, requirements)
        if not settlement.success and not self.serve_unsettled:
            return self.deliver(route, version, None, settlement)
        response: HttpResponse = yield Handle(request)
        return self.deliver(route, version, response, settlement)

    def settle_payment(
        self, payment: AnyPaymentPayload, requirements: AnyRequirements
    ) -> Steps[SettleResponse]:
        """Hook, settling: settle ``payment``; a settlement pending on a known transaction is asked
        for once more."""
        settlement: SettleResponse = yield Settle(payment, requirements)
        pending = settlement.error_reason == Reason.settlement_pending and bool(settlement.transaction)
        if not settlement.success and pending:
            self.stats["settle_pending"] += 1
            again: SettleResponse = yield Settle(payment, requirements)
            if not again.success and not again.transaction:  # the hash already known is still the one
                again = again.model_copy(update={"transaction": settlement.transaction})
            settlement = again
        return settlement

    def deliver(
        self, route: Route, version: int, response: HttpResponse | None, settlement: SettleResponse
    ) -> HttpResponse:
        """Hook, delivery: the buyer's answer from ``settlement`` and the held ``response``."""
        header = (response_header_name(version), encode_header(settlement, vouch=True))
        if not settlement.success:
            self.stats["settle_failed"] += 1
            if not (self.serve_unsettled and response is not None):
                why = settlement.error_reason or "settlement failed"
                return self.challenge(route, version, why, (header,))
            self.stats["served_unsettled"] += 1
            return HttpResponse(response.status, (*response.headers, header), response.body)
        self.stats["paid"] += 1
        held = cast(HttpResponse, response)  # held by every flow whose settlement succeeded
        return HttpResponse(held.status, (*_private(held.headers), header), held.body)


def _private(headers: Headers) -> Headers:
    """``headers`` with ``private`` in their ``Cache-Control`` (a paid answer is the payer's alone)."""
    kept = tuple((k, v) for k, v in headers if k.lower() != "cache-control")
    given = [v for k, v in headers if k.lower() == "cache-control"]
    directives = [d.strip() for v in given for d in v.split(",") if d.strip()]
    if any(d.split("=", 1)[0].strip().lower() == "private" for d in directives):
        return headers
    return (*kept, ("Cache-Control", ", ".join([*directives, "private"])))
