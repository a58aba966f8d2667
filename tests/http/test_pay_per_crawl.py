"""Pay per crawl at the edge, on loopback: the paywall proxy admits requests by their RFC 9421 signature
(Web Bot Auth, Visa TAP) before any x402 step. Unsigned and badly signed crawlers get 403 and nothing
moves; a verified agent gets the 402 with a price, pays, and receives the origin's content; an
allowlisted agent is served free. Judged on chain: balances and ``Transfer`` logs."""

from __future__ import annotations

import asyncio
import json
import time

import http_sf
import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.http.conftest import run_cli, three_processes, token_balance
from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.http import FacilitatorClient, PayingClient, Services, facilitator_app, resource_server_app
from x402sim.http.guard import service_app
from x402sim.http.serve import (
    ChainSetup,
    account_agent_key,
    agents_directory,
    crawl_policy,
    serve_all,
    with_agents_directory,
)
from x402sim.http.server_app import DirectoryFetcher
from x402sim.protocol import PAYMENT_REQUIRED
from x402sim.trust.signatures import (
    AGENT_PAYER_AUTH,
    DIRECTORY_MEDIA_TYPE,
    DIRECTORY_PATH,
    WEB_BOT_AUTH,
    AgentSigner,
    KeyDirectory,
    ResponseSigner,
    SignatureRefused,
    agent_key,
    keyid_of,
    verify_response,
)

PRICE = 1_000
ARTICLE = "/articles/1"


async def article(request):
    return JSONResponse({"origin": "the article", "path": request.url.path})


class Edge:
    """Chain, facilitator, the agents' key directory, an origin, and the paywall proxy in front of it
    with pay per crawl on (keys fetched from the directories requests name)."""

    def __init__(self):
        self.chain = LocalChain(seed=21, start_time=int(time.time()))
        self.crawler, self.friend, self.stranger, fkey, payee_key = (self.chain.new_key() for _ in range(5))
        self.payee = address_of_key(payee_key)
        payers = [self.crawler, self.friend, self.stranger]
        self.chain.fund_many(
            [(address_of_key(k), 1_000_000, 0) for k in payers] + [(address_of_key(fkey), 0, 10 * ETHER)]
        )
        self.services = Services()
        published = [{"private_key": k} for k in (self.crawler, self.friend)]  # not the stranger
        self.agents_url = self.services.add(
            "agents", with_agents_directory(None, agents_directory(published))
        )
        self.origin_url = self.services.add(
            "origin", service_app("origin", [Route("/articles/{n}", article)])
        )
        facilitator_url = self.services.add("facilitator", facilitator_app(Facilitator(self.chain, fkey)))
        friend_keyid = keyid_of(account_agent_key(self.friend))
        self.server = ResourceServer.with_prices(
            {f"GET {ARTICLE}": PRICE},
            chain=self.chain,
            pay_to=self.payee,
            crawl=crawl_policy(KeyDirectory(), [friend_keyid]),
        )
        fetcher = DirectoryFetcher(self.server.crawl.verifier.directory)
        self.response_signer = ResponseSigner(agent_key("the edge"))
        app = resource_server_app(
            self.server,
            FacilitatorClient(facilitator_url),
            origin=self.origin_url,
            directories=fetcher,
            response_signer=self.response_signer,
        )
        self.server_url = self.services.add("server", app)
        self.server.base_url = self.server_url
        self.services.start()

    def signer(self, account: bytes, protocol: str = WEB_BOT_AUTH) -> AgentSigner:
        return AgentSigner(account_agent_key(account), protocol=protocol, signature_agent=self.agents_url)

    def client(self, account: bytes, protocol: str | None = WEB_BOT_AUTH) -> PayingClient:
        signer = self.signer(account, protocol) if protocol else None
        return PayingClient(account, networks=(self.chain.network,), signer=signer)

    def ledger(self) -> tuple:
        """What a test compares before and after: token transfers and balances."""
        balances = tuple(
            self.chain.balance_of(address_of_key(k)) for k in (self.crawler, self.friend, self.stranger)
        )
        return len(self.chain.transfers(self.chain.usdc)), balances, self.chain.balance_of(self.payee)


@pytest.fixture(scope="module")
def edge():
    e = Edge()
    yield e
    e.services.stop()


def test_the_directory_serves_the_agents_jwks(edge):
    answer = httpx.get(edge.agents_url + DIRECTORY_PATH)
    assert answer.status_code == 200 and answer.headers["content-type"] == DIRECTORY_MEDIA_TYPE
    document = answer.json()
    assert {k["kid"] for k in document["keys"]} == {
        keyid_of(account_agent_key(k)) for k in (edge.crawler, edge.friend)
    }
    assert all(set(k) == {"kty", "crv", "x", "kid", "use"} for k in document["keys"])
    for account in (edge.crawler, edge.friend):
        secret = account_agent_key(account).private_bytes_raw()
        assert secret.hex() not in answer.text and account.hex() not in answer.text


def test_an_unsigned_crawler_gets_403_and_nothing_moves(edge):
    before = edge.ledger()
    answer = httpx.get(edge.server_url + ARTICLE)
    assert answer.status_code == 403 and "signed request is required" in answer.json()["error"]
    assert PAYMENT_REQUIRED.lower() not in answer.headers
    with edge.client(edge.crawler, protocol=None) as unsigned:
        result = unsigned.get(edge.server_url + ARTICLE)
    assert result.status == 403 and result.payment is None and not unsigned.payments
    assert edge.ledger() == before


def test_a_signed_agent_gets_a_402_with_a_price_pays_and_gets_the_origins_content(edge):
    host = edge.server_url.removeprefix("http://")
    headers = edge.signer(edge.crawler).sign("GET", host, ARTICLE, [("Host", host)], int(time.time()))
    challenge = httpx.get(edge.server_url + ARTICLE, headers=list(headers))
    assert challenge.status_code == 402 and PAYMENT_REQUIRED.lower() in challenge.headers
    assert challenge.headers["crawler-price"] == "USD 0.001"

    before_transfers, _, before_payee = edge.ledger()
    payer = address_of_key(edge.crawler)
    before_payer = edge.chain.balance_of(payer)
    with edge.client(edge.crawler) as client:
        result = client.get(edge.server_url + ARTICLE)
    assert result.status == 200 and result.paid and result.first_status == 402
    assert result.json() == {"origin": "the article", "path": ARTICLE}
    assert result.response.header("crawler-charged") == "USD 0.001"
    assert edge.chain.balance_of(payer) == before_payer - PRICE
    assert edge.chain.balance_of(edge.payee) == before_payee + PRICE
    (transfer,) = edge.chain.transfers(edge.chain.usdc)[before_transfers:]
    assert (transfer.from_.lower(), transfer.to.lower(), transfer.value) == (
        payer.lower(),
        edge.payee.lower(),
        PRICE,
    )


def test_the_edge_signs_its_x402_answers(edge):
    """The x402 http-message-signatures extension: the 402 and the receipt verify against the key the
    edge publishes, and bind the request's authority and path."""
    served = httpx.get(edge.server_url + DIRECTORY_PATH)
    assert served.headers["content-type"] == DIRECTORY_MEDIA_TYPE
    keys = KeyDirectory.from_jwks(served.json())
    host = edge.server_url.removeprefix("http://")
    now = int(time.time())
    headers = edge.signer(edge.crawler).sign("GET", host, ARTICLE, [("Host", host)], now)
    challenge = httpx.get(edge.server_url + ARTICLE, headers=list(headers))
    answer = tuple(challenge.headers.multi_items())
    later = int(time.time()) + 5  # the edge signed with its own clock, a moment after ``now``
    assert verify_response(keys, 402, answer, "GET", host, ARTICLE, later) == edge.response_signer.keyid
    with pytest.raises(SignatureRefused, match="bad_signature"):
        verify_response(keys, 402, answer, "GET", host, "/articles/2", later)
    with edge.client(edge.crawler) as client:
        result = client.get(edge.server_url + ARTICLE)
    assert result.paid
    later = int(time.time()) + 5
    assert (
        verify_response(keys, 200, result.response.headers, "GET", host, ARTICLE, later) == keys.keyids()[0]
    )


def test_a_tap_payer_pays_too(edge):
    before_transfers, _, before_payee = edge.ledger()
    with edge.client(edge.crawler, AGENT_PAYER_AUTH) as client:
        result = client.get(edge.server_url + ARTICLE)
    assert result.status == 200 and result.paid
    assert edge.chain.balance_of(edge.payee) == before_payee + PRICE
    assert len(edge.chain.transfers(edge.chain.usdc)) == before_transfers + 1


def test_an_allowlisted_agent_gets_the_origins_content_free(edge):
    before = edge.ledger()
    with edge.client(edge.friend) as client:
        result = client.get(edge.server_url + ARTICLE)
    assert result.status == 200 and result.json() == {"origin": "the article", "path": ARTICLE}
    assert result.payment is None and result.first_status is None and not client.payments
    assert edge.ledger() == before


def test_badly_signed_requests_are_blocked(edge):
    before = edge.ledger()
    # a key no directory publishes
    with edge.client(edge.stranger) as client:
        result = client.get(edge.server_url + ARTICLE)
    assert result.status == 403 and "unknown_key" in result.json()["error"] and not client.payments
    # a signature that does not match
    host = edge.server_url.removeprefix("http://")
    headers = edge.signer(edge.crawler).sign("GET", host, ARTICLE, [("Host", host)], int(time.time()))
    value = http_sf.parse(dict(headers)["Signature"].encode(), tltype="dictionary")["sig1"][0]
    forged = {**dict(headers), "Signature": http_sf.ser({"sig1": (bytes([value[0] ^ 1]) + value[1:], {})})}
    answer = httpx.get(edge.server_url + ARTICLE, headers=forged)
    assert answer.status_code == 403 and "bad_signature" in answer.json()["error"]
    # the same TAP signature twice
    replayed = edge.signer(edge.crawler, AGENT_PAYER_AUTH).sign(
        "GET", host, ARTICLE, [("Host", host)], int(time.time())
    )
    assert httpx.get(edge.server_url + ARTICLE, headers=list(replayed)).status_code == 402
    again = httpx.get(edge.server_url + ARTICLE, headers=list(replayed))
    assert again.status_code == 403 and "nonce_reused" in again.json()["error"]
    assert edge.ledger() == before
    assert edge.server.crawl.stats["refused:bad_signature"] >= 1


def test_directories_off_this_machine_are_not_fetched():
    fetcher = DirectoryFetcher(KeyDirectory())
    headers = [("Signature-Agent", 'sig1="https://agents.example"')]
    asyncio.run(fetcher.prepare(headers))
    assert "loopback" in fetcher.failures["https://agents.example"]
    asyncio.run(fetcher.aclose())


def test_serve_all_publishes_the_accounts_directory_and_verifies_in_process():
    running = serve_all(
        ChainSetup(accounts=2), ports=dict.fromkeys(("chain", "facilitator", "server"), 0), crawl=True
    )
    try:
        info = running.info
        answer = httpx.get(info["agent_directory"])
        assert answer.status_code == 200 and answer.headers["content-type"] == DIRECTORY_MEDIA_TYPE
        assert [k["kid"] for k in answer.json()["keys"]] == [a["agent_keyid"] for a in info["accounts"]]
        assert "private_key" not in answer.text and info["accounts"][0]["private_key"][2:] not in answer.text
        assert httpx.get(info["server_url"] + "/weather").status_code == 403
        account = info["accounts"][0]
        signer = AgentSigner(
            account_agent_key(account["private_key"]), signature_agent=info["signature_agent"]
        )
        with PayingClient(account["private_key"], networks=(info["network"],), signer=signer) as client:
            result = client.get(info["server_url"] + "/weather")
        assert result.status == 200 and result.paid
        assert token_balance(info, info["payee"]) == 1_000
    finally:
        running.stop()


def test_pay_sign_web_bot_auth_against_serve_server_crawl_policy(tmp_path):
    def crawl(chain_info):
        return ["--crawl-policy", "--crawl-allow", chain_info["accounts"][1]["agent_keyid"]]

    with three_processes(tmp_path, accounts=2, server_args=crawl) as (info, _, s_info):
        friend = info["accounts"][1]
        assert s_info["crawl_policy"]["allow"] == [friend["agent_keyid"]]
        url = s_info["server_url"] + "/weather"
        payer = info["accounts"][0]

        unsigned = run_cli("pay", url, "--rpc-url", info["rpc_url"])
        assert unsigned.returncode == 1 and "signed request is required" in unsigned.stdout
        assert token_balance(info, payer["address"]) == 1_000_000_000

        paid = run_cli("pay", url, "--rpc-url", info["rpc_url"], "--sign", "web-bot-auth", "-v")
        assert paid.returncode == 0, paid.stderr
        assert "402 payment required" in paid.stderr and '"success": true' in paid.stderr
        assert token_balance(info, payer["address"]) == 1_000_000_000 - 2500
        assert token_balance(info, s_info["payee"]) == 2500

        free = run_cli(
            "pay", url, "--key", friend["private_key"], "--rpc-url", info["rpc_url"], "--sign", "web-bot-auth"
        )
        assert free.returncode == 0, free.stderr
        assert json.loads(free.stdout)["resource"] == "/weather"
        assert token_balance(info, friend["address"]) == 1_000_000_000
        assert token_balance(info, s_info["payee"]) == 2500


def test_pay_sign_needs_a_directory_for_web_bot_auth():
    done = run_cli(
        "pay",
        "http://127.0.0.1:9/x",
        "--key",
        "0x" + "11" * 32,
        "--network",
        "eip155:31337",
        "--sign",
        "web-bot-auth",
    )
    assert done.returncode == 2 and "--signature-agent" in done.stderr
