"""Our side of the Permit2 interop tests: one chain served over JSON-RPC, three of our facilitators on
it (offering both gas-sponsoring extensions, only the ERC-20 approval one, none) and one of our
resource servers per facilitator, plus the on-chain checks the tests judge by.

Each server sells ``GET /p2`` (exact through Permit2, ``EXACT_PRICE``) and ``GET /upto`` (at most
``UPTO_MAX``, charged the ``charge`` query parameter, else 40 %). ``build`` returns the side with its
``Services`` not yet started, so a test module can add its own apps to the same loop first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer, Route
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, allowance, approve_call, nonce_used
from x402sim.evm.txsign import GWEI, sign_eip1559
from x402sim.http import FacilitatorClient, Services, facilitator_app, resource_server_app
from x402sim.http.chain_clock import ChainClock
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.mechanisms.sponsoring import APPROVAL_GAS

HTTP_TIMEOUT = 10.0
UPTO_MAX = 5000  # an upto route's maximum (atomic units)
EXACT_PRICE = 1000
BOTH = ("eip2612GasSponsoring", "erc20ApprovalGasSponsoring")
OFFERS = {"both": BOTH, "erc20": ("erc20ApprovalGasSponsoring",), "none": ()}
EXACT_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"


def _charge_from_query(request, response) -> str:
    """Our upto route's charge: the ``charge`` query parameter, else 40 % of the maximum."""
    _, _, query = request.path.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return params.get("charge", "40%")


OUR_ROUTES = {
    "GET /p2": Route("GET /p2", EXACT_PRICE, transfer_method="permit2"),
    "GET /upto": Route("GET /upto", UPTO_MAX, scheme="upto", usage=_charge_from_query),
}


@dataclass(frozen=True)
class Facts:
    """Head block and balances before a payment."""

    block: int
    payer: int
    payee: int


@dataclass
class OurSide:
    chain: LocalChain
    rpc_url: str
    payee: str
    ours: dict[str, str]  # our servers' URLs by what their facilitator offers (OFFERS)
    our_facilitators: dict[str, Facilitator]

    def account(self, *, usdc: int = 100_000, eth: int = 0) -> tuple[bytes, str]:
        key = self.chain.new_key()
        self.chain.fund(address_of_key(key), usdc=usdc, eth=eth)
        return key, address_of_key(key)

    def approved(self) -> tuple[bytes, str]:
        """A payer that approved Permit2 for MaxUint (its own transaction and gas)."""
        key, payer = self.account(eth=ETHER)
        approve_permit2(self.chain, key)
        return key, payer

    def facts(self, payer: str) -> Facts:
        return Facts(self.chain.block_number, self.chain.balance_of(payer), self.chain.balance_of(self.payee))

    def assert_moved(self, was: Facts, payer: str, amount: int, tx: str, nonce: int) -> None:
        """``amount`` moved from payer to payee in one Transfer of ``tx``; the Permit2 nonce is spent."""
        assert self.chain.balance_of(payer) == was.payer - amount
        assert self.chain.balance_of(self.payee) == was.payee + amount
        (t,) = self.chain.transfers(since_block=was.block + 1)
        assert (t.from_.lower(), t.to.lower(), t.value) == (payer.lower(), self.payee.lower(), amount)
        assert "0x" + t.tx_hash.hex() == tx.lower()
        assert nonce_used(self.chain, payer, nonce)

    def assert_nothing_moved(self, was: Facts, payer: str) -> None:
        assert self.chain.balance_of(payer) == was.payer
        assert self.chain.transfers(since_block=was.block + 1) == []

    def allowance(self, owner: str) -> int:
        return allowance(self.chain, self.chain.usdc, owner, PERMIT2_ADDRESS)


def approve_permit2(chain: LocalChain, key: bytes) -> None:
    owner = address_of_key(key)
    signed = sign_eip1559(
        key,
        chain_id=chain.chain_id,
        nonce=chain.pending_nonce(owner),
        gas=APPROVAL_GAS,
        max_fee_per_gas=2 * chain.base_fee + GWEI,
        max_priority_fee_per_gas=0,
        to=chain.usdc,
        data=approve_call(PERMIT2_ADDRESS, UINT256_MAX),
    )
    tx_hash = chain.send_raw_transaction(signed.raw)
    chain.mine()
    assert chain.receipt(tx_hash).success
    assert allowance(chain, chain.usdc, owner, PERMIT2_ADDRESS) == UINT256_MAX


def p2nonce(payload) -> int:
    return int(payload["permit2Authorization"]["nonce"])


def build(seed: int) -> tuple[OurSide, Services]:
    """Our side on a fresh chain, its services added but not started."""
    chain = LocalChain(seed=seed, start_time=int(time.time()))
    payee = address_of_key(chain.new_key())
    facilitators = {}
    for name, sponsoring in OFFERS.items():
        key = chain.new_key()
        chain.fund(address_of_key(key), eth=10 * ETHER)
        facilitators[name] = Facilitator(chain, key, sponsoring=frozenset(sponsoring))
    clock = ChainClock(chain, time.time)
    services = Services()
    rpc_url = services.add("chain-rpc", chain_rpc_app(chain, chain_clock=clock))
    ours = {}
    for name, facilitator in facilitators.items():
        url = services.add(f"facilitator-{name}", facilitator_app(facilitator, chain_clock=clock))
        server = ResourceServer.with_prices(
            OUR_ROUTES, chain=chain, pay_to=payee, supported=facilitator.supported()
        )
        app = resource_server_app(server, FacilitatorClient(url, timeout=HTTP_TIMEOUT))
        server.base_url = ours[name] = services.add(f"server-{name}", app)
    return OurSide(chain, rpc_url, payee, ours, facilitators), services
