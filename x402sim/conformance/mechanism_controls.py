"""Controls of the Permit2 mechanism cases: the reference roles with one Permit2 rule broken on purpose.

Facilitators: a ``LoosePermit2`` mechanism drops rows of the verify table and, seeing the chain
through ``BlindChain``, believes every proxy simulation succeeds, every Permit2 nonce is fresh and
every allowance is unlimited (what a facilitator that checks nothing on chain believes); others
settle the maximum whatever the charge, send a transaction for a charge of 0, list no
``facilitatorAddress``, or list the gas-sponsoring extensions without honouring them. Servers answer
402 where 412 is due, strip the payment's extensions, lose ``assetTransferMethod`` from the offer they
settle, copy no ``facilitatorAddress``, charge the maximum whatever the usage, or forward an overcharge.
Clients sign another spender or another facilitator, or attach sponsoring info nobody declared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

from ..actors.client import Client, SpendPolicy
from ..actors.facilitator import Facilitator
from ..actors.server import ResourceServer
from ..evm.chain import CallResult
from ..evm.permit2 import EXACT_PERMIT2_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS
from ..evm.rpc_chain import RpcChain
from ..evm.token import selector
from ..http.client import PayingClient
from ..http.serve import client_env, client_verdict
from ..mechanisms import EXACT_EIP3009, Judging, Mechanism, Mechanisms, Step, Verdict
from ..mechanisms.permit2 import SETTLE_GAS, Permit2Mechanism
from ..mechanisms.sponsoring import SPONSORING_EXTENSIONS, declaration
from ..protocol import PaymentRequired, SettleResponse, SupportedResponse
from .controls import control
from .reference import InProcessClient, InProcessService, reference_facilitator, reference_server

NONCE_BITMAP = selector("nonceBitmap(address,uint256)")
ALLOWANCE = selector("allowance(address,address)")
AMOUNT_ROWS = ("permitted amount is the amount", "the charge is within the permit (at /settle)")


class BlindChain:
    """``chain`` as a facilitator that checks nothing on chain sees it: the proxy's simulations
    succeed, Permit2 nonces are fresh and allowances unlimited. Everything else is the chain's."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    def call(self, to: str, data: bytes, **kwargs: Any) -> CallResult:
        if to.lower() in (EXACT_PERMIT2_PROXY_ADDRESS.lower(), UPTO_PERMIT2_PROXY_ADDRESS.lower()):
            return CallResult(True, b"", None, 0)
        if to.lower() == PERMIT2_ADDRESS.lower() and data[:4] == NONCE_BITMAP:
            return CallResult(True, bytes(32), None, 0)
        if data[:4] == ALLOWANCE:
            return CallResult(True, b"\xff" * 32, None, 0)
        return self._chain.call(to, data, **kwargs)


class LoosePermit2(Permit2Mechanism):
    """A Permit2 mechanism with rules relaxed: ``skip`` rows of its table dropped, the chain seen
    ``blind`` (``BlindChain``), the maximum settled whatever the charge (``charge_maximum``), a
    transaction sent for a charge of 0 (``send_zero``), no ``facilitatorAddress`` listed
    (``no_address``)."""

    def __init__(
        self,
        base: Permit2Mechanism,
        *,
        skip: tuple[str, ...] = (),
        blind: bool = False,
        charge_maximum: bool = False,
        send_zero: bool = False,
        no_address: bool = False,
    ) -> None:
        super().__init__(base.scheme, base.proxy)
        self.checks = tuple(row for row in base.checks if row[0] not in skip)
        self.blind, self.charge_maximum, self.send_zero, self.no_address = (
            blind,
            charge_maximum,
            send_zero,
            no_address,
        )

    def supported_kinds(self, network: str, facilitator: str = ""):
        return super().supported_kinds(network, "" if self.no_address else facilitator)

    def check_on_chain(self, verdict: Verdict, chain, judging: Judging, mode: str) -> Verdict:
        return super().check_on_chain(verdict, BlindChain(chain) if self.blind else chain, judging, mode)

    def settlement(self, verdict: Verdict, chain, judging: Judging):
        if self.charge_maximum:
            verdict = replace(verdict, charge=verdict.payload.permit.amount)
        if self.send_zero and self.upto and verdict.amount == 0:
            return (Step(self.proxy, self._settle_call(verdict, 0), gas=SETTLE_GAS),)
        return super().settlement(verdict, chain, judging)


def _loose_facilitator(name: str, role_class=Facilitator, **loose):
    from ..mechanisms import EXACT_PERMIT2, UPTO_PERMIT2

    def build(env):
        loose_ones: list[Mechanism[Verdict]] = [
            LoosePermit2(EXACT_PERMIT2, **loose),
            LoosePermit2(UPTO_PERMIT2, **loose),
        ]
        mechanisms: Mechanisms[Verdict] = Mechanisms([EXACT_EIP3009, *loose_ones])
        return reference_facilitator(env, mechanisms=mechanisms, role_class=role_class)[1]

    return InProcessService("facilitator", build, name=name, kind="control")


_SKIPS: dict[str, tuple[str | tuple[str, ...], tuple[str, ...]]] = {
    "facilitator-permit2-any-spender": (
        "spender is the proxy",
        ("facilitator.permit2.spender-not-proxy", "facilitator.upto.spender-not-proxy"),
    ),
    "facilitator-permit2-any-recipient": ("witness.to is payTo", ("facilitator.permit2.witness-not-payto",)),
    "facilitator-permit2-any-amount": (
        AMOUNT_ROWS,
        (
            "facilitator.permit2.amount-not-required",
            "facilitator.upto.max-not-required",
            "facilitator.upto.charge-above-max",
        ),
    ),
    "facilitator-permit2-expired": (
        "deadline leaves a block's time",
        ("facilitator.permit2.deadline-passed",),
    ),
    "facilitator-permit2-early": ("witness.validAfter has passed", ("facilitator.permit2.not-yet-valid",)),
    "facilitator-upto-any-facilitator": (
        "witness.facilitator is this facilitator",
        ("facilitator.upto.other-facilitator",),
    ),
}


def _register_skip(name: str, rows: str | tuple[str, ...], kills: tuple[str, ...]) -> None:
    skipped = rows if isinstance(rows, tuple) else (rows,)

    @control(
        name,
        "facilitator",
        f"Permit2 verify without the rows {', '.join(map(repr, skipped))}, blind on chain",
        kills,
    )
    def build():
        return _loose_facilitator(name, skip=skipped, blind=True)


for _name, (_row, _kills) in _SKIPS.items():
    _register_skip(_name, _row, _kills)


@control(
    "facilitator-permit2-blind",
    "facilitator",
    "Believes every Permit2 nonce fresh, every allowance unlimited and every proxy simulation good",
    ("facilitator.permit2.nonce-reused", "facilitator.permit2.allowance-required"),
)
def permit2_blind():
    return _loose_facilitator("facilitator-permit2-blind", blind=True)


@control(
    "facilitator-upto-charges-maximum",
    "facilitator",
    "Settles the signed maximum of an upto payment whatever the charge",
    ("facilitator.upto.charge-below-max",),
)
def upto_charges_maximum():
    return _loose_facilitator("facilitator-upto-charges-maximum", charge_maximum=True)


@control(
    "facilitator-upto-sends-zero",
    "facilitator",
    "Sends a settlement transaction for an upto charge of 0",
    ("facilitator.upto.zero-charge",),
)
def upto_sends_zero():
    return _loose_facilitator("facilitator-upto-sends-zero", send_zero=True)


@control(
    "facilitator-upto-no-address",
    "facilitator",
    "Lists the upto kind without extra.facilitatorAddress",
    ("facilitator.supported.upto-facilitator-address",),
)
def upto_no_address():
    return _loose_facilitator("facilitator-upto-no-address", no_address=True)


@dataclass
class UnhonouredSponsoring(Facilitator):
    """Lists the gas-sponsoring extensions in /supported, but judges as if it offered none."""

    def judging(self, now: int, *, settling: bool = False) -> Judging:
        return replace(super().judging(now, settling=settling), sponsoring=frozenset())


@control(
    "facilitator-sponsoring-unhonoured",
    "facilitator",
    "Lists both gas-sponsoring extensions in /supported without honouring them",
    ("facilitator.sponsoring.eip2612", "facilitator.sponsoring.erc20-approval"),
)
def sponsoring_unhonoured():
    return _loose_facilitator("facilitator-sponsoring-unhonoured", role_class=UnhonouredSponsoring)


# -- servers ---------------------------------------------------------------------------------------


def _server(name: str, role_class: type[ResourceServer] = ResourceServer, **switches) -> InProcessService:
    return InProcessService(
        "server",
        lambda env: reference_server(env, role_class=role_class, **switches)[1],
        name=name,
        kind="control",
    )


@dataclass
class No412(ResourceServer):
    def challenge(self, route, version, error, headers=(), status=402, extra=None):
        return super().challenge(route, version, error, headers, 402, extra)


@control(
    "server-permit2-402-not-412",
    "server",
    "Answers a missing Permit2 allowance with 402, not 412",
    ("server.permit2.allowance-412",),
)
def server_no_412():
    return _server("server-permit2-402-not-412", No412)


@dataclass
class StripsExtensions(ResourceServer):
    def verify_serve_settle(self, route, request, payment, requirements, version):
        stripped = (
            payment.model_copy(update={"extensions": None}) if hasattr(payment, "extensions") else payment
        )
        return super().verify_serve_settle(route, request, stripped, requirements, version)


@control(
    "server-permit2-strips-extensions",
    "server",
    "Drops the payment's extensions (the gas-sponsoring info) before verifying",
    ("server.permit2.sponsored-cold-start",),
)
def server_strips_extensions():
    return _server("server-permit2-strips-extensions", StripsExtensions)


@dataclass
class LosesMethod(ResourceServer):
    def match_offer(self, route, payment):
        offer = super().match_offer(route, payment)
        if (
            offer is None
            or not offer.extra
            or "assetTransferMethod" not in offer.extra
            or offer.scheme != "exact"
        ):
            return offer
        extra = {k: v for k, v in offer.extra.items() if k != "assetTransferMethod"}
        return offer.model_copy(update={"extra": extra})


@control(
    "server-permit2-loses-method",
    "server",
    "Settles a Permit2 payment against its offer without assetTransferMethod (as EIP-3009)",
    ("server.permit2.pays",),
)
def server_loses_method():
    return _server("server-permit2-loses-method", LosesMethod)


@control(
    "server-upto-no-facilitator-address",
    "server",
    "Never reads /supported, so its upto offers lack extra.facilitatorAddress",
    ("server.upto.facilitator-address",),
)
def server_no_address():
    empty = SupportedResponse(kinds=[], extensions=[], signers={})
    return _server("server-upto-no-facilitator-address", supported=empty)


@dataclass
class ChargesMaximum(ResourceServer):
    def charge(self, route, request, response, requirements):
        answer, _ = super().charge(route, request, response, requirements)
        return answer, requirements


@control(
    "server-upto-charges-maximum",
    "server",
    "Settles the upto maximum whatever the usage",
    ("server.upto.charge-below-max", "server.upto.zero-charge"),
)
def server_charges_maximum():
    return _server("server-upto-charges-maximum", ChargesMaximum)


@dataclass
class NoCeiling(ResourceServer):
    def charge(self, route, request, response, requirements):
        roomy = requirements.model_copy(update={"amount": 2**255})
        answer, charged = super().charge(route, request, response, roomy)
        if isinstance(charged, SettleResponse):
            return answer, charged
        return answer, requirements.model_copy(update={"amount": getattr(charged, "amount", 0)})


@control(
    "server-upto-no-ceiling",
    "server",
    "Asks its facilitator to settle an upto charge above the maximum (x402#3334)",
    ("server.upto.overcharge-refused",),
)
def server_no_ceiling():
    return _server("server-upto-no-ceiling", NoCeiling)


# -- clients ---------------------------------------------------------------------------------------


class SkewedPermit2(Permit2Mechanism):
    """Signs a permit with one field replaced: ``spender`` or ``facilitator`` becomes payTo."""

    def __init__(self, base: Permit2Mechanism, field: str) -> None:
        super().__init__(base.scheme, base.proxy)
        self.field = field

    def permit_for(self, payer, offer, now, nonce):
        permit = super().permit_for(payer, offer, now, nonce)
        if self.field == "facilitator" and not self.upto:
            return permit
        return replace(permit, **{self.field: offer.pay_to})


@dataclass
class SponsorsAlways(Client):
    """Attaches gas-sponsoring info as if the 402 declared both extensions."""

    def _sponsoring(self, required, offer, now):
        declared = {name: declaration(name) for name in SPONSORING_EXTENSIONS}
        widened = cast(PaymentRequired, required).model_copy(update={"extensions": declared})
        return super()._sponsoring(widened, offer, now)


def _client_pay(env: dict[str, str], *, field: str | None = None, sponsors: bool = False) -> dict:
    from ..mechanisms import EXACT_PERMIT2, UPTO_PERMIT2

    parsed = client_env(env)
    policy = SpendPolicy(max_price=parsed.max_amount)
    chain = RpcChain(env["EVM_RPC_URL"]) if sponsors else None
    try:
        with PayingClient(parsed.key, networks=(parsed.network,), policy=policy) as client:
            role = client.role
            permit2: list[Mechanism[Verdict]] = [
                SkewedPermit2(m, field) if field else m for m in (EXACT_PERMIT2, UPTO_PERMIT2)
            ]
            mechanisms: Mechanisms[Verdict] = Mechanisms([EXACT_EIP3009, *permit2])
            role_class = SponsorsAlways if sponsors else Client
            client.role = role_class(
                role.key,
                networks=role.networks,
                policy=policy,
                seed=role.seed,
                mechanisms=mechanisms,
                chain=chain,
            )
            result = client.get(parsed.url)
    except Exception as exc:  # the verdict says what went wrong, as a client command would
        return {
            "success": False,
            "data": f"{type(exc).__name__}: {exc}",
            "status_code": None,
            "payment_response": None,
        }
    finally:
        if chain is not None:
            chain.close()
    return client_verdict(result)


@control(
    "client-permit2-wrong-spender",
    "client",
    "Signs Permit2 permits whose spender is payTo, not the scheme's proxy",
    ("client.permit2.signs-permit", "client.upto.signs-permit"),
)
def client_wrong_spender():
    return InProcessClient(
        lambda env: _client_pay(env, field="spender"), name="client-permit2-wrong-spender", kind="control"
    )


@control(
    "client-upto-wrong-facilitator",
    "client",
    "Signs upto permits naming payTo as the facilitator",
    ("client.upto.signs-permit",),
)
def client_wrong_facilitator():
    return InProcessClient(
        lambda env: _client_pay(env, field="facilitator"),
        name="client-upto-wrong-facilitator",
        kind="control",
    )


@control(
    "client-permit2-sponsors-undeclared",
    "client",
    "Attaches gas-sponsoring info whether or not the 402 declares it",
    ("client.permit2.sponsoring-only-declared",),
)
def client_sponsors_undeclared():
    return InProcessClient(
        lambda env: _client_pay(env, sponsors=True), name="client-permit2-sponsors-undeclared", kind="control"
    )
