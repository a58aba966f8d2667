"""x402sim against the official x402 Python SDK, on real loopback sockets and one embedded chain.

Four directions, each judged on chain (payer -price, payee +price, ``authorizationState`` true for the
payment's nonce, exactly one ``Transfer``), not only by status codes:

(a) the SDK's httpx client pays our resource server, which settles through our facilitator;
(b) our paying client pays an SDK FastAPI server (its payment middleware) that uses our facilitator;
(c) an SDK facilitator (``x402Facilitator`` + the exact EVM scheme + ``FacilitatorWeb3Signer`` over our
    chain's JSON-RPC) verifies and settles for our resource server;
(d) the SDK's verify and ours judge one table of good and bad payments on the same chain at the same
    time, compared by reason class. Where the SDK 2.25 really decides differently, the row says what the
    SDK answers and why.

How the SDK is configured for a local chain is written out in ``sdk_apps``. Services that touch the
chain share one event loop (``Services``); the SDK's blocking web3 calls run in other threads and reach
the chain only through JSON-RPC. The chain is read directly only while no request is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

try:
    import x402  # noqa: F401
except ImportError as exc:  # a pinned dev dependency: this happens only outside `make test`
    _why = f"the official x402 Python SDK is not importable ({exc})"
    print(f"skipping {__name__}: {_why}")
    pytest.skip(_why, allow_module_level=True)

import httpx
from x402 import x402Facilitator
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402HttpxClient
from x402.schemas import PaymentPayload as SdkPaymentPayload
from x402.schemas import PaymentRequirements as SdkPaymentRequirements
from x402.schemas import SchemeNotFoundError

from tests.helpers import craft_payment
from tests.http.conftest import PRICE, World
from tests.interop.sdk_apps import (
    sdk_client,
    sdk_facilitator_app,
    sdk_facilitator_scheme,
    sdk_resource_server_app,
)
from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import FacilitatorClient, PayingClient, Services, resource_server_app
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.mechanisms.exact_eip3009 import Offer
from x402sim.protocol import (
    PaymentPayload,
    PaymentRequirements,
    ReasonClass,
    SupportedResponse,
    reason_class,
)

C = ReasonClass
OTHER = "0x" + "ab" * 20  # an address with no code and no role
HTTP_TIMEOUT = 10.0


# -- on-chain evidence ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Before:
    """Balances and head block before a payment."""

    payer: int
    payee: int
    block: int


def before(chain: LocalChain, payer: str, payee: str) -> Before:
    return Before(chain.balance_of(payer), chain.balance_of(payee), chain.block_number)


def assert_paid_on_chain(
    chain: LocalChain, was: Before, *, payer: str, payee: str, nonce: str, tx_hash: str, amount: int = PRICE
) -> None:
    """The payment moved exactly ``amount`` from payer to payee, in one Transfer of transaction
    ``tx_hash``, and consumed the authorization's nonce."""
    assert chain.balance_of(payer) == was.payer - amount
    assert chain.balance_of(payee) == was.payee + amount
    assert chain.authorization_state(payer, bytes.fromhex(nonce.removeprefix("0x")))
    transfers = chain.transfers(since_block=was.block + 1)
    assert len(transfers) == 1, transfers
    (t,) = transfers
    assert (t.from_.lower(), t.to.lower(), t.value) == (payer.lower(), payee.lower(), amount)
    assert "0x" + t.tx_hash.hex() == tx_hash.lower()


def nonce_of(payment) -> str:
    return payment.payload["authorization"]["nonce"]


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.stop()


@contextmanager
def serving(services: Services) -> Iterator[dict[str, str]]:
    """Start ``services`` for the body of a ``with`` and always stop them."""
    try:
        yield services.start()
    finally:
        services.stop()


# -- (a) the SDK's client pays our server ---------------------------------------------------------


def test_sdk_client_pays_our_server_through_our_facilitator(world):
    chain = world.chain
    client = sdk_client(world.payer_key, network=chain.network, asset=chain.usdc, max_amount=PRICE)
    created = []
    client.on_after_payment_creation(lambda ctx: created.append(ctx.payment_payload))
    was = before(chain, world.payer, world.payee)

    async def fetch() -> httpx.Response:
        async with x402HttpxClient(client, timeout=HTTP_TIMEOUT) as http:
            return await http.get(world.server_url + "/weather")

    response = asyncio.run(fetch())

    assert response.status_code == 200, response.text
    assert response.json() == {"resource": "/weather", "paid": True}
    settlement = x402HTTPClient(client).get_payment_settle_response(response.headers.get)
    assert settlement.success and settlement.network == chain.network
    assert settlement.payer.lower() == world.payer.lower()
    (payment,) = created
    assert payment.accepted.amount == str(PRICE) and payment.accepted.pay_to.lower() == world.payee.lower()
    assert_paid_on_chain(
        chain,
        was,
        payer=world.payer,
        payee=world.payee,
        nonce=nonce_of(payment),
        tx_hash=settlement.transaction,
    )
    (record,) = world.facilitator.settlements  # settled by our facilitator
    assert "0x" + record.tx_hash.hex() == settlement.transaction.lower()


# -- (b) our client pays an SDK server ------------------------------------------------------------


@pytest.fixture
def sdk_server_url(world) -> Iterator[str]:
    """An SDK FastAPI resource server selling GET /weather at PRICE, using our facilitator over HTTP.

    It runs on its own loop: the SDK's server fetches ``/supported`` with a blocking call."""
    chain = world.chain
    app = sdk_resource_server_app(
        world.facilitator_url,
        network=chain.network,
        asset=chain.usdc,
        asset_name=chain.token_name,
        asset_version=chain.token_version,
        pay_to=world.payee,
        amount=PRICE,
    )
    services = Services()
    services.add("sdk-server", app)
    with serving(services) as urls:
        yield urls["sdk-server"]


def test_our_client_pays_sdk_server_through_our_facilitator(world, sdk_server_url):
    chain = world.chain
    was = before(chain, world.payer, world.payee)

    with PayingClient(world.payer_key, networks=(world.chain.network,), timeout=HTTP_TIMEOUT) as client:
        result = client.get(sdk_server_url + "/weather")

    assert result.first_status == 402
    (offer,) = result.challenge.accepts  # the SDK's 402, as configured for the local chain
    assert (offer.network, offer.amount, offer.asset) == (chain.network, PRICE, chain.usdc)
    assert offer.extra["name"] == chain.token_name and offer.extra["version"] == chain.token_version
    assert result.status == 200, result.body
    assert result.json() == {"resource": "/weather", "paid": True}
    assert result.settlement.success and result.settlement.payer.lower() == world.payer.lower()
    assert_paid_on_chain(
        chain,
        was,
        payer=world.payer,
        payee=world.payee,
        nonce=nonce_of(result.payment),
        tx_hash=result.settlement.transaction,
    )
    (record,) = world.facilitator.settlements  # and it was our facilitator that settled
    assert "0x" + record.tx_hash.hex() == result.settlement.transaction.lower()


# -- (c) an SDK facilitator settles for our server ------------------------------------------------


@dataclass
class SdkFacilitatorWorld:
    """World's pieces, with the SDK's facilitator in place of ours and the chain behind JSON-RPC.

    Built here rather than with ``World(facilitator_url=...)`` because the JSON-RPC service must
    share the loop of everything else that touches this chain, and World starts its services at
    once."""

    chain: LocalChain
    payer_key: bytes
    payer: str
    payee: str
    facilitator_address: str
    facilitator_url: str
    server_url: str


@pytest.fixture
def sdk_facilitator_world() -> Iterator[SdkFacilitatorWorld]:
    chain = LocalChain(seed=9, start_time=int(time.time()))
    payer_key, facilitator_key, payee_key = (chain.new_key() for _ in range(3))
    payer, payee = address_of_key(payer_key), address_of_key(payee_key)
    facilitator_address = address_of_key(facilitator_key)
    chain.fund_many([(payer, 1_000_000, 0), (facilitator_address, 0, 10 * ETHER)])

    services = Services()
    rpc_url = services.add("chain-rpc", chain_rpc_app(chain, clock=time.time))
    facilitator_url = services.add(
        "sdk-facilitator", sdk_facilitator_app(facilitator_key, rpc_url, chain.network)
    )
    server = ResourceServer.with_prices(
        {"GET /weather": PRICE},
        chain=chain,
        pay_to=payee,
    )
    app = resource_server_app(server, FacilitatorClient(facilitator_url, timeout=HTTP_TIMEOUT))
    server.base_url = server_url = services.add("server", app)
    with serving(services):
        yield SdkFacilitatorWorld(
            chain, payer_key, payer, payee, facilitator_address, facilitator_url, server_url
        )


def test_sdk_facilitator_settles_for_our_server(sdk_facilitator_world):
    w = sdk_facilitator_world
    supported = SupportedResponse.from_wire(
        httpx.get(w.facilitator_url + "/supported", timeout=HTTP_TIMEOUT).content
    )
    assert [(k.x402_version, k.scheme, k.network) for k in supported.kinds] == [(2, "exact", w.chain.network)]
    assert supported.signers == {"eip155:*": [w.facilitator_address]}
    was = before(w.chain, w.payer, w.payee)
    gas_money = w.chain.eth_balance(w.facilitator_address)

    with PayingClient(w.payer_key, networks=(w.chain.network,), timeout=HTTP_TIMEOUT) as client:
        result = client.get(w.server_url + "/weather")

    assert result.status == 200, result.body
    assert result.json() == {"resource": "/weather", "paid": True}
    assert result.settlement.success and result.settlement.payer.lower() == w.payer.lower()
    tx_hash = result.settlement.transaction
    assert_paid_on_chain(
        w.chain, was, payer=w.payer, payee=w.payee, nonce=nonce_of(result.payment), tx_hash=tx_hash
    )
    receipt = w.chain.receipt(bytes.fromhex(tx_hash[2:]))
    assert receipt.success and receipt.sender.lower() == w.facilitator_address.lower()  # the SDK's key
    assert w.chain.eth_balance(w.facilitator_address) == gas_money - receipt.fee


# -- (d) the SDK's verify and ours on one table ---------------------------------------------------


@dataclass
class VerifyRig:
    """One chain behind JSON-RPC, judged by the SDK's facilitator (through the RPC) and ours (directly)."""

    chain: LocalChain
    payer_key: bytes
    payer: str
    poor_key: bytes  # holds less than PRICE
    poor: str
    payee: str
    requirements: PaymentRequirements
    sdk: x402Facilitator
    ours: Facilitator

    def pay(self, requirements: PaymentRequirements, now: int, *, key=None, payer=None, **overrides):
        """A payment with a fresh random nonce (see ``craft_payment`` for ``overrides``)."""
        return craft_payment(
            key or self.payer_key, payer or self.payer, requirements, now, nonce=os.urandom(32), **overrides
        )

    def sdk_verify(self, payment: PaymentPayload, requirements: PaymentRequirements):
        return asyncio.run(self.sdk.verify(*_sdk_models(payment, requirements)))

    def sdk_settle(self, payment: PaymentPayload, requirements: PaymentRequirements):
        return asyncio.run(self.sdk.settle(*_sdk_models(payment, requirements)))


def _sdk_models(payment: PaymentPayload, requirements: PaymentRequirements):
    """The SDK's models, built from our wire dicts."""
    return (
        SdkPaymentPayload.model_validate(payment.to_wire()),
        SdkPaymentRequirements.model_validate(requirements.to_wire()),
    )


@pytest.fixture(scope="module")
def rig() -> Iterator[VerifyRig]:
    chain = LocalChain(seed=10, start_time=int(time.time()))
    payer_key, poor_key, payee_key, sdk_key, our_key = (chain.new_key() for _ in range(5))
    payer, poor, payee = (address_of_key(k) for k in (payer_key, poor_key, payee_key))
    chain.fund_many(
        [
            (payer, 1_000_000, 0),
            (poor, PRICE - 1, 0),
            (address_of_key(sdk_key), 0, 10 * ETHER),
            (address_of_key(our_key), 0, 10 * ETHER),
        ]
    )
    server = ResourceServer.with_prices(
        {"GET /weather": PRICE},
        chain=chain,
        pay_to=payee,
    )
    requirements = server.requirements(server.routes["GET /weather"])
    services = Services()
    rpc_url = services.add("chain-rpc", chain_rpc_app(chain, clock=time.time))
    sdk = x402Facilitator()
    sdk.register([chain.network], sdk_facilitator_scheme(sdk_key, rpc_url))
    with serving(services):
        yield VerifyRig(
            chain, payer_key, payer, poor_key, poor, payee, requirements, sdk, Facilitator(chain, our_key)
        )


def _with(requirements: PaymentRequirements, **changes) -> PaymentRequirements:
    return requirements.model_copy(update=changes)


def _altered_after_signing(rig: VerifyRig, now: int):
    payment = rig.pay(rig.requirements, now)
    authorization = dict(payment.payload["authorization"])
    authorization["validBefore"] = str(int(authorization["validBefore"]) + 1)
    return payment.model_copy(update={"payload": {**payment.payload, "authorization": authorization}})


def _settled_by_the_sdk(rig: VerifyRig, now: int):
    payment = rig.pay(rig.requirements, now)
    was = before(rig.chain, rig.payer, rig.payee)
    settlement = rig.sdk_settle(payment, rig.requirements)
    assert settlement.success, settlement
    assert_paid_on_chain(
        rig.chain,
        was,
        payer=rig.payer,
        payee=rig.payee,
        nonce=nonce_of(payment),
        tx_hash=settlement.transaction,
    )
    return payment


Build = Callable[[VerifyRig, int], tuple[PaymentPayload, PaymentRequirements]]
SAME = "same as ours"


@dataclass(frozen=True)
class Case:
    """``ours``: our class (None = valid). ``sdk``: ``SAME``, or what the SDK really answers: a class,
    an exact code (for a code ``reason_class`` does not know), None (valid) or the exception it raises."""

    ours: ReasonClass | None
    build: Build
    sdk: ReasonClass | str | type[Exception] | None = SAME


def _row(ours, build: Callable[[VerifyRig, int], PaymentPayload], adjust=None, sdk=SAME) -> Case:
    """A case paying ``adjust(rig.requirements)`` (default unchanged) with ``build``."""

    def both(rig: VerifyRig, now: int):
        requirements = adjust(rig.requirements) if adjust else rig.requirements
        return build(rig, requirements, now), requirements

    return Case(ours, both, sdk)


CASES: dict[str, Case] = {
    "valid": _row(None, lambda rig, req, now: rig.pay(req, now)),
    "wrong recipient": _row(C.recipient, lambda rig, req, now: rig.pay(req, now, to=OTHER)),
    "amount under": _row(C.amount, lambda rig, req, now: rig.pay(req, now, value=PRICE - 1)),
    "amount over": _row(C.amount, lambda rig, req, now: rig.pay(req, now, value=PRICE + 1)),
    "expired": _row(C.expired, lambda rig, req, now: rig.pay(req, now, valid_before=now + 5)),
    "not yet valid": _row(C.not_yet_valid, lambda rig, req, now: rig.pay(req, now, valid_after=now + 30)),
    "bad signature (authorization altered after signing)": _row(
        C.signature, lambda rig, req, now: _altered_after_signing(rig, now)
    ),
    # 65 bytes that are no signature (v = 0x11): the SDK's recovery raises, and it reports the
    # exception as `invalid_exact_evm_failed_to_verify_signature`, another spelling of the class.
    "bad signature (garbage bytes)": _row(
        C.signature, lambda rig, req, now: rig.pay(req, now, signature="0x" + "11" * 65)
    ),
    "signer is not from": _row(C.signature, lambda rig, req, now: rig.pay(req, now, sign_key=rig.poor_key)),
    "reused nonce after one settlement": _row(
        C.nonce_used, lambda rig, req, now: _settled_by_the_sdk(rig, now)
    ),
    "insufficient balance": _row(
        C.balance, lambda rig, req, now: rig.pay(req, now, key=rig.poor_key, payer=rig.poor)
    ),
    # The client signed over the (wrong) domain of the requirements, so the signature recovers
    # offline and the on-chain simulation reverts "FiatTokenV2: invalid signature". The SDK 2.25 maps
    # a recognised revert text first and runs its Multicall3 diagnosis (which would find the name or
    # version mismatch) only for an unrecognised one; we diagnose first.
    "wrong token name": _row(
        C.token_name,
        lambda rig, req, now: rig.pay(req, now),
        lambda req: _with(req, extra={**req.extra, "name": "USDC"}),
        sdk=C.signature,
    ),
    "wrong token version": _row(
        C.token_version,
        lambda rig, req, now: rig.pay(req, now),
        lambda req: _with(req, extra={**req.extra, "version": "1"}),
        sdk=C.signature,
    ),
    "network mismatch (accepted names another chain)": _row(
        C.network, lambda rig, req, now: rig.pay(req, now, accepted=_with(req, network="eip155:1"))
    ),
    "network mismatch (requirements name another chain)": _row(
        C.network,
        lambda rig, req, now: rig.pay(rig.requirements, now),
        lambda req: _with(req, network="eip155:1"),
    ),
    # Both name chain 1 while the facilitator's chain is 31337. The SDK routes eip155:1 to its scheme
    # (registered for one eip155 network, it serves the eip155:* family) and never compares the
    # network with its RPC's chain: chain id 1 goes into the EIP-712 domain, and the simulation on
    # this chain reverts "invalid signature".
    "network is not the facilitator's chain": _row(
        C.network_config,
        lambda rig, req, now: rig.pay(req, now),
        lambda req: _with(req, network="eip155:1"),
        sdk=C.signature,
    ),
    # The SDK routes by the payload's `accepted.scheme`; with no scheme registered under that name
    # it raises instead of answering a reason.
    "wrong scheme (accepted)": _row(
        C.scheme,
        lambda rig, req, now: rig.pay(req, now, accepted=_with(req, scheme="upto")),
        sdk=SchemeNotFoundError,
    ),
    # The SDK's exact scheme checks `accepted.scheme` only, never the requirements' scheme: a payment
    # for requirements of another scheme passes its verify.
    "wrong scheme (requirements)": _row(
        C.scheme,
        lambda rig, req, now: rig.pay(rig.requirements, now),
        lambda req: _with(req, scheme="upto"),
        sdk=None,
    ),
    "signed over another chain id": _row(
        C.signature,
        lambda rig, req, now: rig.pay(req, now, sign_offer=_offer_on(req, "eip155:1")),
    ),
    "missing EIP-712 domain": _row(
        C.eip712_domain,
        lambda rig, req, now: rig.pay(req, now, sign_offer=_offer_on(rig.requirements)),
        lambda req: _with(req, extra={}),
    ),
    "asset is not a contract": _row(
        C.asset_not_contract, lambda rig, req, now: rig.pay(req, now), lambda req: _with(req, asset=OTHER)
    ),
}


def _offer_on(requirements: PaymentRequirements, network: str | None = None) -> Offer:
    """What the client signs over for ``requirements`` (with ``network``'s chain id if given)."""
    offer = Offer.of(requirements)
    return offer if network is None else dataclasses.replace(offer, network=network)


@pytest.mark.parametrize("name", list(CASES))
def test_sdk_verify_and_ours_agree_on_the_table(rig, name):
    case = CASES[name]
    payment, requirements = case.build(rig, int(time.time()))

    ours = rig.ours.verify(payment, requirements, int(time.time()))
    if case.ours is None:
        assert ours.is_valid and ours.payer.lower() == rig.payer.lower(), ours
    else:
        assert not ours.is_valid and reason_class(ours.invalid_reason) is case.ours, ours

    expected = case.ours if case.sdk == SAME else case.sdk
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            rig.sdk_verify(payment, requirements)
        return
    sdk = rig.sdk_verify(payment, requirements)
    if expected is None:
        assert sdk.is_valid and sdk.payer.lower() == payment.payload["authorization"]["from"].lower(), sdk
    elif isinstance(expected, ReasonClass):
        assert not sdk.is_valid and reason_class(sdk.invalid_reason) is expected, sdk
    else:
        assert not sdk.is_valid and sdk.invalid_reason == expected, sdk
