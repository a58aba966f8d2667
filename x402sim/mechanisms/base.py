"""What a mechanism is, and the registry through which the roles find one.

A mechanism is one (scheme, network family, asset transfer method) triple, as the official SDKs
register them: today ``exact`` / ``eip155`` / ``eip3009``. The roles hold a ``Mechanisms`` registry
and look a mechanism up by the scheme and network of an offer; they never import a scheme's module.

What a new mechanism provides (write it as one module beside ``exact_eip3009.py``, register it in
``DEFAULT_MECHANISMS`` or hand it to the roles):

* its identity: ``scheme``, ``family`` (the CAIP-2 namespace, ``eip155``) and ``transfer_method``
  (``extra.assetTransferMethod``; ``eip3009`` is what an offer without it means);
* the client part: ``client_refusal(offer)`` (why this client cannot pay an offer of this scheme,
  e.g. ``extra`` lacks the token's EIP-712 domain) and ``sign(key, payer, offer, now, nonce)``, the
  payload's wire object;
* the server part: ``extra(asset_name, asset_version)``, what the mechanism puts in an offer's
  ``extra``;
* the facilitator part: ``supported_kinds(network, facilitator)`` for ``/supported`` (upto puts
  the facilitator's address in the kind's ``extra``); verify as ``checks``, one ordered table of
  (check, reason), run by ``check`` (the offline rows) and ``check_on_chain`` (the on-chain step,
  written out beside the table), both given a ``Judging`` (time, chain id, the facilitator's
  address, whether it is a settlement, the gas-sponsoring extensions offered, how it signs a
  digest); a verdict that passed may carry the ``extra`` the verify answer gives (batch-settlement:
  the channel's state); settle as ``claim`` (the authorization a settlement spends, for the
  facilitator's dedupe, or None when there is nothing to dedupe: the chain makes the settlement
  idempotent or a nonce protects it) and ``side_claims`` (other one-time things it spends: an
  EIP-2612 permit's nonce), ``settlement`` (its transactions, ``Step`` s in order: none when the
  charge is 0, several when gas is sponsored), ``transfer_matches`` (the log the last step's
  successful receipt must hold: the ``Transfer``, or the scheme's event), ``receipt_failure`` (the
  reason of a receipt that reverted or lacks that log), ``reason_for_revert`` and
  ``already_settled`` (what a failed receipt means), ``settle_answer`` (the answer's ``amount`` and
  ``extra``, read from the receipt and the chain; ``reports_amount`` says whether the exact
  mechanisms name the amount charged);
* the ledger part: ``ledger_rules``, the module of Python rules the ledger backend runs for its
  contracts, or None: a scenario on the ledger backend that uses it is refused, naming it.

The reserved ``extra`` keys are read here once for every role: ``transfer_method_of`` and
``Mechanisms.method_refusal`` (an ``assetTransferMethod`` is spoken when a registered mechanism of
the offer's scheme and family has it as its ``transfer_method``), ``payment_flow_problem`` and
``prefers_authorization`` (``paymentFlow``: one of ``PAYMENT_FLOWS``; the exact mechanisms verify
and settle alike under each). A null reserved key reads as an absent one, as the SDKs read it.

What stays shared in the facilitator and is not a mechanism's business: the dedupe claims, the
facilitator's own transaction nonce and gas, receipts, the weakness switches, and whether the
``Transfer`` log is looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ..evm.backend import ChainReads
from ..evm.chain import Receipt
from ..protocol import AnyPaymentPayload, AnyRequirements, Reason, SupportedKind
from .offer import Offer
from .verdict import Judging, Step

DEFAULT_TRANSFER_METHOD = "eip3009"  # what an EVM offer without extra.assetTransferMethod means
# ... except for the schemes that have one method only (upto is Permit2 alone)
SCHEME_TRANSFER_METHODS = {"upto": "permit2"}
# extra.paymentFlow, reserved by x402: verify, serve, settle (the default); settle first; escrow.
PAYMENT_FLOWS = ("authorization", "upfront", "escrow")
DEFAULT_PAYMENT_FLOW = "authorization"


class VerdictLike(Protocol):
    """What the roles read of any mechanism's verdict: whether the payment passed, why not, and who
    paid. The rest of a verdict (``exact_eip3009.Verdict`` keeps the payload and the offer) is for
    the mechanism that made it."""

    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> Reason | None: ...
    @property
    def message(self) -> str: ...
    @property
    def payer(self) -> str | None: ...


VerdictT = TypeVar("VerdictT", bound=VerdictLike)


class Mechanism(Protocol[VerdictT]):
    """The four parts of one (scheme, network family, transfer method); see the module docstring.

    ``VerdictT`` is the mechanism's own verdict type: ``check`` makes one, and the facilitator hands it
    back, unchanged, to the other methods of the same mechanism (x402sim's mechanisms all make
    ``verdict.Verdict``)."""

    scheme: str
    family: str
    transfer_method: str
    ledger_rules: str | None
    reports_amount: bool  # whether a settlement's answer carries ``amount`` (upto: always)

    @property
    def checks(self) -> Sequence[tuple[str, Reason, Callable[..., bool]]]: ...

    def client_refusal(self, offer: Offer) -> str | None: ...
    def sign(self, key: bytes, payer: str, offer: Offer, now: int, nonce: bytes) -> dict[str, Any]: ...
    def extra(self, asset_name: str, asset_version: str) -> dict[str, Any]: ...
    def supported_kinds(self, network: str, facilitator: str) -> list[SupportedKind]: ...
    def check(
        self, payment: AnyPaymentPayload, requirements: AnyRequirements, judging: Judging
    ) -> VerdictT: ...
    def check_on_chain(
        self, verdict: VerdictT, chain: ChainReads, judging: Judging, mode: str
    ) -> VerdictT: ...
    def claim(self, verdict: VerdictT) -> tuple[tuple[str, str], int] | None: ...
    def side_claims(self, verdict: VerdictT) -> tuple[tuple[str, str], ...]: ...
    def settlement(self, verdict: VerdictT, chain: ChainReads, judging: Judging) -> Sequence[Step]: ...
    def transfer_matches(self, receipt: Receipt, verdict: VerdictT) -> bool: ...
    def receipt_failure(self, receipt: Receipt, verdict: VerdictT) -> Reason: ...
    def reason_for_revert(self, text: str | None) -> Reason: ...
    def already_settled(self, chain: ChainReads, verdict: VerdictT) -> bool: ...
    def settle_answer(
        self, receipt: Receipt, verdict: VerdictT, chain: ChainReads
    ) -> tuple[str | None, dict[str, Any] | None]: ...


def family_of(network: str) -> str:
    """The CAIP-2 namespace of ``network`` (``eip155`` for ``eip155:8453``), or of a v1 name (EVM)."""
    namespace, colon, _ = network.partition(":")
    return namespace if colon else "eip155"


def transfer_method_of(extra: dict[str, Any] | None, scheme: str = "exact") -> str | None:
    """``extra.assetTransferMethod`` of an offer of ``scheme``: when absent (or JSON null), the
    scheme's only method (``SCHEME_TRANSFER_METHODS``) or ``DEFAULT_TRANSFER_METHOD``; None when it
    is not a string (a method no mechanism speaks)."""
    default = SCHEME_TRANSFER_METHODS.get(scheme, DEFAULT_TRANSFER_METHOD)
    method = _reserved(extra, "assetTransferMethod", default)
    return method if isinstance(method, str) else None


def _reserved(extra: dict[str, Any] | None, key: str, default: str) -> object:
    """A reserved key of ``extra``; ``default`` when it is absent or null (the SDKs read null so)."""
    value = (extra or {}).get(key)
    return default if value is None else value


def payment_flow_problem(extra: dict[str, Any] | None) -> str | None:
    """Why ``extra.paymentFlow`` is not a flow x402 reserves (``PAYMENT_FLOWS``; absent or null means
    ``authorization``), or None. The flow is the server's business (when it settles); the exact
    mechanisms verify and settle alike under each, so only an unrecognised one is refused."""
    flow = _reserved(extra, "paymentFlow", DEFAULT_PAYMENT_FLOW)
    if isinstance(flow, str) and flow in PAYMENT_FLOWS:
        return None
    return f"paymentFlow {flow!r} is not one of {', '.join(PAYMENT_FLOWS)}"


def prefers_authorization(extra: dict[str, Any] | None) -> bool:
    """Whether an offer's flow is ``authorization`` (or absent): the flow a payer prefers, since it
    is charged only after the server has verified its payment and done the work."""
    return _reserved(extra, "paymentFlow", DEFAULT_PAYMENT_FLOW) == DEFAULT_PAYMENT_FLOW


def ledger_refusal(mechanisms: Iterable[Mechanism[Any]]) -> str | None:
    """Why the ledger backend cannot run ``mechanisms`` (the first one it has no rules for), or None."""
    for m in mechanisms:
        if m.ledger_rules is None:
            return (
                f"the ledger backend has no rules for mechanism {m.scheme}/{m.family}/{m.transfer_method}: "
                'use backend = "evm"'
            )
    return None


class Mechanisms(Generic[VerdictT]):
    """The mechanisms a role speaks, found by scheme, network and transfer method; all of them make
    verdicts of one type, ``VerdictT`` (x402sim's mechanisms: ``exact_eip3009.Verdict``).

    ``find`` gives the mechanism registered for an offer, or None. ``judge_with`` is the facilitator's
    look-up: an offer no mechanism claims is judged by the first mechanism of its network family,
    whose table's first row refuses the scheme; so a facilitator answers ``unsupported_scheme``
    with the same checks before it whatever the scheme."""

    def __init__(self, mechanisms: Iterable[Mechanism[VerdictT]] = ()) -> None:
        self._all: list[Mechanism[VerdictT]] = []
        self._methods: dict[tuple[str, str], tuple[str, ...]] = {}  # transfer_methods, as asked
        for mechanism in mechanisms:
            self.register(mechanism)

    def register(self, mechanism: Mechanism[VerdictT]) -> None:
        key = (mechanism.scheme, mechanism.family, mechanism.transfer_method)
        if any((m.scheme, m.family, m.transfer_method) == key for m in self._all):
            raise ValueError(f"a mechanism for {'/'.join(key)} is registered already")
        self._all.append(mechanism)
        self._methods.clear()

    def __iter__(self) -> Iterator[Mechanism[VerdictT]]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(m.scheme for m in self._all)

    def find(
        self, scheme: str, network: str, extra: dict[str, Any] | None = None
    ) -> Mechanism[VerdictT] | None:
        family, method = family_of(network), transfer_method_of(extra, scheme)
        for m in self._all:
            if (m.scheme, m.family, m.transfer_method) == (scheme, family, method):
                return m
        return None

    def transfer_methods(self, scheme: str, network: str) -> tuple[str, ...]:
        """The ``assetTransferMethod`` values this registry speaks for ``scheme`` on ``network``."""
        methods = self._methods.get((scheme, network))
        if methods is None:
            family = family_of(network)
            methods = tuple(m.transfer_method for m in self._all if (m.scheme, m.family) == (scheme, family))
            self._methods[(scheme, network)] = methods
        return methods

    def method_refusal(self, scheme: str, network: str, extra: dict[str, Any] | None) -> str | None:
        """Why no mechanism here speaks the ``assetTransferMethod`` of ``extra`` for ``scheme`` on
        ``network`` (naming the method and those spoken), or None."""
        spoken = self.transfer_methods(scheme, network)
        method = transfer_method_of(extra, scheme)
        if not spoken or method in spoken:
            return None
        named = (extra or {}).get("assetTransferMethod")
        return f"no mechanism pays assetTransferMethod {named!r} (spoken: {', '.join(spoken)})"

    def judge_with(
        self, scheme: str, network: str, extra: dict[str, Any] | None = None
    ) -> Mechanism[VerdictT]:
        found = self.find(scheme, network, extra)
        if found is not None:
            return found
        family = family_of(network)
        for m in self._all:
            if m.family == family:
                return m
        return self._all[0]
