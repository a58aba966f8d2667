"""Permit2, upto and gas sponsoring over real loopback HTTP: ``serve_server`` learning its facilitator's
``/supported``, routes-file mechanisms and charges, the paying client reading the chain over JSON-RPC,
``pay --approve-permit2``, and the CLI's errors. Every payment is judged on chain: balances, the
Permit2 nonce bitmap, the ``Transfer`` logs, the payer's allowance and ether.

One lab per module: a chain served over JSON-RPC, three facilitators on it (offering both sponsoring
extensions, only the ERC-20 approval one, none), and a resource server per facilitator started by
``serve_server`` from one routes file. Each test pays with fresh accounts, so tests do not interact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from typer.testing import CliRunner

from tests.http.conftest import closed_port_url
from x402sim.actors import Facilitator
from x402sim.actors.messages import HttpResponse
from x402sim.cli import app
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, allowance, nonce_used
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http import PayingClient, Services, facilitator_app
from x402sim.http.chain_clock import ChainClock
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.http.routes_file import load_routes
from x402sim.http.serve import EnvError, serve_server, serve_server_env, server_env
from x402sim.protocol import decode_json_header

BOTH = ("eip2612GasSponsoring", "erc20ApprovalGasSponsoring")
ROUTES = """
transfer_method = "permit2"     # a default for the routes below

[[routes]]
method = "GET"
path = "/p2"
price = 1000

[[routes]]
method = "GET"
path = "/upto"
price = 5000
scheme = "upto"
charge = "40%"

[[routes]]
method = "GET"
path = "/zero"
price = 5000
scheme = "upto"
charge = 0

[[routes]]
method = "GET"
path = "/metered"
price = 5000
scheme = "upto"                 # charged what the handler's Settlement-Overrides says

[[routes]]
method = "GET"
path = "/plain"
price = 1000
transfer_method = "eip3009"
"""


def metered(request) -> HttpResponse:
    amount = request.header("X-Test-Charge") or "1234"
    return HttpResponse.of_json(
        200, {"metered": True}, (("Settlement-Overrides", json.dumps({"amount": amount})),)
    )


@dataclass
class Lab:
    chain: LocalChain
    rpc_url: str
    payee: str
    facilitators: dict[str, Facilitator]
    servers: dict[str, str]  # facilitator name -> server URL
    infos: dict[str, dict]  # facilitator name -> the server's printed facts
    facilitator_urls: dict[str, str]

    def account(self, *, usdc: int = 100_000, eth: int = 0) -> tuple[bytes, str]:
        key = self.chain.new_key()
        self.chain.fund(address_of_key(key), usdc=usdc, eth=eth)
        return key, address_of_key(key)

    def approved(self) -> tuple[bytes, str]:
        key, address = self.account(eth=ETHER)
        _approve(self.rpc_url, key)
        assert allowance(self.chain, self.chain.usdc, address, PERMIT2_ADDRESS) == UINT256_MAX
        return key, address

    def pay(self, key: bytes, url: str, **kwargs):
        reads = RpcChain(self.rpc_url)
        try:
            with PayingClient(key, networks=(self.chain.network,), chain=reads, timeout=10) as client:
                return client.get(url, **kwargs)
        finally:
            reads.close()


def _approve(rpc_url: str, key: bytes) -> None:
    from x402sim.http.cli import _approve_permit2

    chain = RpcChain(rpc_url)
    try:
        _approve_permit2(chain, key)
    finally:
        chain.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    chain = LocalChain(seed=21, start_time=int(time.time()))
    payee = address_of_key(chain.new_key())
    offers = {"both": BOTH, "erc20": ("erc20ApprovalGasSponsoring",), "none": ()}
    facilitators = {}
    for name, sponsoring in offers.items():
        key = chain.new_key()
        chain.fund(address_of_key(key), eth=10 * ETHER)
        facilitators[name] = Facilitator(chain, key, sponsoring=frozenset(sponsoring))
    clock = ChainClock(chain, time.time)
    services = Services()
    rpc_url = services.add("chain", chain_rpc_app(chain, chain_clock=clock))
    urls = {
        name: services.add(name, facilitator_app(f, chain_clock=clock)) for name, f in facilitators.items()
    }
    services.start()
    path = tmp_path_factory.mktemp("routes") / "routes.toml"
    path.write_text(
        f'network = "{chain.network}"\nasset = "{chain.usdc}"\nasset_name = "{chain.token_name}"\n'
        f'asset_version = "{chain.token_version}"\npay_to = "{payee}"\n' + ROUTES
    )
    running = []
    try:
        for url in urls.values():
            running.append(serve_server(load_routes(path), url, port=0, handlers={"GET /metered": metered}))
        yield Lab(
            chain,
            rpc_url,
            payee,
            facilitators,
            {name: r.info["server_url"] for name, r in zip(urls, running, strict=True)},
            {name: r.info for name, r in zip(urls, running, strict=True)},
            urls,
        )
    finally:
        for r in running:
            r.stop()
        services.stop()


def _paid_once(lab: Lab, block: int, payer: str, amount: int, tx: str) -> None:
    """Exactly one Transfer since ``block``: ``amount`` from ``payer`` to the payee, in ``tx``."""
    (t,) = lab.chain.transfers(since_block=block + 1)
    assert (t.from_.lower(), t.to.lower(), t.value) == (payer.lower(), lab.payee.lower(), amount)
    assert "0x" + t.tx_hash.hex() == tx.lower()


def _permit2_nonce(result) -> int:
    return int(result.payment.payload["permit2Authorization"]["nonce"])


def test_the_server_learns_its_facilitators_supported_at_startup(lab):
    assert lab.infos["both"]["sponsoring"] == list(BOTH)
    assert lab.infos["none"]["sponsoring"] == []
    key, _ = lab.account()
    with PayingClient(key, networks=(lab.chain.network,)) as client:
        p2 = client.get(lab.servers["both"] + "/p2", headers=[("X-Probe", "1")])
        upto = client.get(lab.servers["erc20"] + "/upto")
        plain = client.get(lab.servers["none"] + "/p2")
    # a client without a chain attaches nothing, so without allowance every Permit2 payment is refused
    assert {p2.first_status, upto.first_status, plain.first_status} == {402}
    (offer,) = p2.challenge.accepts
    assert offer.extra["assetTransferMethod"] == "permit2"
    assert set(p2.challenge.extensions) >= set(BOTH)
    (upto_offer,) = upto.challenge.accepts
    assert upto_offer.scheme == "upto" and upto_offer.amount == 5000
    assert upto_offer.extra["facilitatorAddress"] == lab.facilitators["erc20"].address
    assert "erc20ApprovalGasSponsoring" in upto.challenge.extensions
    assert "eip2612GasSponsoring" not in upto.challenge.extensions
    assert not set(BOTH) & set(plain.challenge.extensions or {})


def test_exact_permit2_with_an_approved_payer(lab):
    key, payer = lab.approved()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers["none"] + "/p2")
    assert result.status == 200, result.body
    assert result.settlement.success and result.payment.payload["permit2Authorization"]
    assert lab.chain.balance_of(payer) == was - 1000
    assert nonce_used(lab.chain, payer, _permit2_nonce(result))
    _paid_once(lab, block, payer, 1000, result.settlement.transaction)


def test_upto_charges_the_routes_file_charge_below_the_maximum(lab):
    key, payer = lab.approved()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers["none"] + "/upto")
    assert result.status == 200, result.body
    assert result.payment.accepted.amount == 5000  # signed for the maximum
    assert result.settlement.amount == "2000"  # charged 40 %
    assert lab.chain.balance_of(payer) == was - 2000
    assert nonce_used(lab.chain, payer, _permit2_nonce(result))
    _paid_once(lab, block, payer, 2000, result.settlement.transaction)


def test_upto_charge_of_zero_sends_nothing(lab):
    key, payer = lab.approved()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers["none"] + "/zero")
    assert result.status == 200, result.body
    header = decode_json_header(result.response.header("PAYMENT-RESPONSE"), where="test")
    assert header["success"] is True and header["transaction"] == "" and header["amount"] == "0"
    assert lab.chain.balance_of(payer) == was
    assert not nonce_used(lab.chain, payer, _permit2_nonce(result))
    assert lab.chain.transfers(since_block=block + 1) == []


def test_upto_charge_from_the_handlers_header_and_above_the_maximum(lab):
    key, payer = lab.approved()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers["none"] + "/metered", headers=[("X-Test-Charge", "1234")])
    assert result.status == 200 and result.settlement.amount == "1234"
    assert result.response.header("Settlement-Overrides") is None  # stripped from the buyer's answer
    _paid_once(lab, block, payer, 1234, result.settlement.transaction)
    block = lab.chain.block_number
    over = lab.pay(key, lab.servers["none"] + "/metered", headers=[("X-Test-Charge", "5001")])
    assert over.status == 402 and not over.settlement.success
    assert over.settlement.error_reason == "invalid_upto_evm_payload_settlement_exceeds_amount"
    assert lab.chain.transfers(since_block=block + 1) == []
    assert lab.chain.balance_of(payer) == was - 1234


@pytest.mark.parametrize(
    ("server", "path", "amount"), [("both", "/p2", 1000), ("erc20", "/p2", 1000), ("both", "/upto", 2000)]
)
def test_a_cold_start_payer_is_sponsored(lab, server, path, amount):
    """No ether, no allowance: the 402 declares the facilitator's extensions, the client signs the
    first it can (EIP-2612 first), the facilitator pays every gas."""
    key, payer = lab.account()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers[server] + path)
    assert result.status == 200, result.body
    used = set(result.payment.extensions or {}) & set(BOTH)
    assert used == ({"eip2612GasSponsoring"} if server == "both" else {"erc20ApprovalGasSponsoring"})
    assert lab.chain.balance_of(payer) == was - amount
    assert nonce_used(lab.chain, payer, _permit2_nonce(result))
    _paid_once(lab, block, payer, amount, result.settlement.transaction)
    left = allowance(lab.chain, lab.chain.usdc, payer, PERMIT2_ADDRESS)  # the token spends even MaxUint
    if server == "erc20":  # the payer's own approve (MaxUint) was relayed (its nonce 0), its gas funded
        assert left == UINT256_MAX - amount and lab.chain.pending_nonce(payer) == 1
    else:  # the permit was for the signed maximum, and Permit2 spent the charge of it
        assert left == result.payment.accepted.amount - amount and lab.chain.pending_nonce(payer) == 0


def test_no_allowance_and_no_sponsoring_is_412(lab):
    key, payer = lab.account()
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    result = lab.pay(key, lab.servers["none"] + "/p2")
    assert result.first_status == 402 and result.status == 412
    required = decode_json_header(result.response.header("PAYMENT-REQUIRED"), where="test")
    assert required["error"] == "permit2_allowance_required"
    assert lab.chain.balance_of(payer) == was and lab.chain.transfers(since_block=block + 1) == []


def test_eip3009_route_beside_permit2_ones(lab):
    key, payer = lab.account()
    block = lab.chain.block_number
    result = lab.pay(key, lab.servers["both"] + "/plain")
    assert result.status == 200 and "authorization" in result.payment.payload
    assert lab.chain.authorization_state(
        payer, bytes.fromhex(result.payment.payload["authorization"]["nonce"][2:])
    )
    _paid_once(lab, block, payer, 1000, result.settlement.transaction)


# -- the command line (in process: CliRunner) --------------------------------------------------------


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_pay_approves_permit2_and_prints_the_upto_charge(lab):
    key, payer = lab.account(eth=ETHER)
    block, was = lab.chain.block_number, lab.chain.balance_of(payer)
    done = cli(
        "pay",
        lab.servers["none"] + "/upto",
        "--rpc-url",
        lab.rpc_url,
        "--key",
        "0x" + key.hex(),
        "--approve-permit2",
    )
    assert done.exit_code == 0, done.output
    assert "approved Permit2" in done.stderr and "charged 2000 of at most 5000 (upto)" in done.stderr
    assert allowance(lab.chain, lab.chain.usdc, payer, PERMIT2_ADDRESS) == UINT256_MAX - 2000
    assert lab.chain.balance_of(payer) == was - 2000 and lab.chain.pending_nonce(payer) == 1
    transfers = lab.chain.transfers(since_block=block + 1)
    assert [(t.from_.lower(), t.value) for t in transfers] == [(payer.lower(), 2000)]
    again = cli(
        "pay",
        lab.servers["none"] + "/p2",
        "--rpc-url",
        lab.rpc_url,
        "--key",
        "0x" + key.hex(),
        "--approve-permit2",
    )
    assert again.exit_code == 0 and "already approved" in again.stderr
    assert "charged" not in again.stderr  # an exact payment has no separate charge
    assert lab.chain.pending_nonce(payer) == 1  # no second approval was sent


def test_pay_cold_start_is_sponsored_through_the_rpc_url(lab):
    key, payer = lab.account()
    done = cli("pay", lab.servers["erc20"] + "/p2", "--rpc-url", lab.rpc_url, "--key", "0x" + key.hex())
    assert done.exit_code == 0, done.output
    assert allowance(lab.chain, lab.chain.usdc, payer, PERMIT2_ADDRESS) == UINT256_MAX - 1000
    assert lab.chain.balance_of(payer) == 100_000 - 1000


def test_pay_without_allowance_or_sponsoring_fails_with_412(lab):
    key, payer = lab.account()
    done = cli("pay", lab.servers["none"] + "/p2", "--rpc-url", lab.rpc_url, "--key", "0x" + key.hex())
    assert done.exit_code == 1 and lab.chain.balance_of(payer) == 100_000
    broke = cli(
        "pay",
        lab.servers["none"] + "/p2",
        "--rpc-url",
        lab.rpc_url,
        "--key",
        "0x" + key.hex(),
        "--approve-permit2",
    )
    assert broke.exit_code == 2 and "--approve-permit2" in broke.stderr  # no ether for its gas
    assert "Traceback" not in broke.output


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ('scheme = "later"', ["routes[0]", "scheme", "later"]),
        ('transfer_method = "wire"', ["routes[0]", "transfer_method", "wire"]),
        ('scheme = "upto"\ntransfer_method = "eip3009"', ["routes[0]", "transfer_method", "permit2"]),
        ('scheme = "upto"\ncharge = "lots"', ["routes[0]", "charge", "lots"]),
        ('scheme = "upto"\ncharge = 1001', ["routes[0]", "charge", "above"]),
        ("charge = 10", ["routes[0]", "charge", "upto"]),
        (
            'scheme = "upto"\n[[routes]]\nmethod = "GET"\npath = "/b"\nprice = 1\n'
            'scheme = "upto"\ncharge = -1',
            ["routes[1]", "charge", "negative"],
        ),
    ],
)
def test_bad_mechanism_keys_are_one_clear_error(tmp_path, route, words):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'pay_to = "0x{"11" * 20}"\n[[routes]]\nmethod = "GET"\npath = "/a"\nprice = 1000\n{route}\n'
    )
    done = cli("serve", "server", "--facilitator-url", "http://127.0.0.1:1", "--routes", routes)
    assert done.exit_code == 2, done.output
    assert str(routes) in done.stderr and all(w in done.stderr for w in words), done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_unreachable_facilitator_at_startup_and_unknown_sponsoring(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'network = "eip155:31337"\nasset = "0x{"22" * 20}"\nasset_name = "USD Coin"\nasset_version = "2"\n'
        f'pay_to = "0x{"11" * 20}"\n[[routes]]\nmethod = "GET"\npath = "/a"\nprice = 1000\n'
    )
    dead = closed_port_url()
    done = cli(
        "serve",
        "server",
        "--facilitator-url",
        dead,
        "--routes",
        routes,
        "--port",
        "0",
        "--facilitator-timeout",
        "0.5",
    )
    assert done.exit_code == 2 and dead in done.stderr and "unreachable" in done.stderr, done.output
    done = cli("serve", "facilitator", "--sponsor", "eip2612GasSponsoring,freeGas", "--port", "0")
    assert done.exit_code == 2 and "freeGas" in done.stderr and "erc20ApprovalGasSponsoring" in done.stderr


def test_serve_offers_sponsoring_from_the_command_line():
    """The facilitator's /supported lists what --sponsor names (repeated or comma-separated)."""
    from x402sim.http.serve import serve_facilitator

    chain = LocalChain(seed=22, start_time=int(time.time()))
    services = Services()
    rpc_url = services.add("chain", chain_rpc_app(chain, clock=time.time))
    services.start()
    try:
        running = serve_facilitator(
            rpc_url, port=0, sponsoring=["erc20ApprovalGasSponsoring", "eip2612GasSponsoring"]
        )
        try:
            supported = httpx.get(running.info["facilitator_url"] + "/supported").json()
        finally:
            running.stop()
    finally:
        services.stop()
    assert supported["extensions"] == list(BOTH) and running.info["sponsoring"] == list(BOTH)
    assert {k["scheme"] for k in supported["kinds"]} == {"exact", "upto", "batch-settlement"}


def test_from_env_serves_the_e2e_permit2_endpoints(lab):
    """``EVM_PERMIT2_ASSET`` adds the x402 e2e servers' Permit2 and upto endpoints (upto: at most 2000,
    charging 1000); another asset than the one sold is one clear error."""
    environ = {
        "PORT": "0",
        "FACILITATOR_URL": lab.facilitator_urls["both"],
        "EVM_NETWORK": lab.chain.network,
        "EVM_PAYEE_ADDRESS": lab.payee,
        "EVM_ASSET": lab.chain.usdc,
        "EVM_ASSET_NAME": lab.chain.token_name,
        "EVM_ASSET_VERSION": lab.chain.token_version,
        "EVM_PERMIT2_ASSET": lab.chain.usdc.lower(),
    }
    with pytest.raises(EnvError, match="EVM_PERMIT2_ASSET"):
        server_env({**environ, "EVM_PERMIT2_ASSET": "0x" + "33" * 20})
    env = server_env(environ)
    routes, _ = env.routes()
    assert {k for k in routes if "permit2" in k} == {
        f"GET /{scheme}/evm/permit2{suffix}"
        for scheme in ("exact", "upto")
        for suffix in ("", "-eip2612GasSponsoring", "-erc20ApprovalGasSponsoring")
    }
    running = serve_server_env(env)
    try:
        url = running.info["server_url"]
        key, payer = lab.account()  # cold start: sponsored by the facilitator
        block, was = lab.chain.block_number, lab.chain.balance_of(payer)
        result = lab.pay(key, url + "/upto/evm/permit2-eip2612GasSponsoring")
        assert result.status == 200 and result.settlement.amount == "1000", result.settlement
        assert result.payment.accepted.amount == 2000
        assert lab.chain.balance_of(payer) == was - 1000
        _paid_once(lab, block, payer, 1000, result.settlement.transaction)
    finally:
        running.stop()


def test_serve_server_flags_give_routes_their_mechanism(tmp_path):
    """--scheme/--transfer-method/--charge fill what the routes file leaves unsaid; a bad combination
    names the option and the route."""
    from x402sim.http.routes_file import RoutesFileError, parse_routes, with_defaults

    config = parse_routes(
        {
            "routes": [
                {"method": "GET", "path": "/a", "price": 1000},
                {"method": "GET", "path": "/b", "price": 1000, "scheme": "exact"},
            ]
        }
    )
    made = with_defaults(config, scheme="upto", charge="25%")
    a, b = made.routes["GET /a"], made.routes["GET /b"]
    assert (a.scheme, a.usage(None, None)) == ("upto", "25%")
    assert (b.scheme, b.transfer_method, b.usage) == ("exact", None, None)
    permit2 = with_defaults(config, transfer_method="permit2")
    assert {r.transfer_method for r in permit2.routes.values()} == {"permit2"}
    with pytest.raises(RoutesFileError, match=r"--scheme.*GET /a.*permit2 only"):
        with_defaults(config, scheme="upto", transfer_method="eip3009")
    routes = tmp_path / "routes.toml"
    routes.write_text(f'pay_to = "0x{"11" * 20}"\n[[routes]]\nmethod = "GET"\npath = "/a"\nprice = 1000\n')
    done = cli(
        "serve", "server", "--facilitator-url", "http://127.0.0.1:1", "--routes", routes, "--charge", "lots"
    )
    assert done.exit_code == 2 and "--charge" in done.stderr, done.output
