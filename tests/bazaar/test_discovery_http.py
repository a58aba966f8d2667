"""The Bazaar over HTTP, in process: the facilitator's ``/discovery/resources`` and
``/discovery/search`` read by the official Python SDK's ``BazaarExtension`` client, their 400s, the
``EXTENSION-RESPONSES`` header of a settlement, and ``discover`` ranking what it finds by price,
mechanism and ERC-8004 reputation read on chain.

Every app runs in this process (Starlette's test client); one sync httpx transport routes each
request to the app of its host, so the SDK's client, ``discover`` and its 402 probes all speak HTTP.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from starlette.testclient import TestClient
from x402.extensions.bazaar import (
    ListDiscoveryResourcesParams,
    SearchDiscoveryResourcesParams,
    with_bazaar,
)
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync

from x402sim.actors.server import Route
from x402sim.evm import erc8004
from x402sim.http import FacilitatorClient, facilitator_app, resource_server_app
from x402sim.http.discovery import DiscoveryError, discover
from x402sim.protocol import parse_payment_required
from x402sim.protocol.bazaar import HttpDeclaration, mcp_tool_listing
from x402sim.trust.reputation import TAG_DELIVERED, AgentRef, ServerIdentity

FACILITATOR = "http://facilitator.test"
CITY = {"properties": {"city": {"type": "string"}}, "required": ["city"]}


class Router(httpx.BaseTransport):
    """Each request to the in-process app of its host."""

    def __init__(self) -> None:
        self.apps: dict[str, TestClient] = {}

    def add(self, url: str, app) -> None:
        self.apps[httpx.URL(url).host] = TestClient(app, base_url=url, raise_server_exceptions=True)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self.apps.get(request.url.host)
        if client is None:
            raise httpx.ConnectError(f"nothing listens at {request.url.host}", request=request)
        answer = client.request(
            request.method, str(request.url), headers=request.headers, content=request.read()
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def listed(price: int, **kwargs) -> Route:
    declaration = HttpDeclaration(example={"city": "Oslo"}, input_schema=CITY, output={"celsius": 3})
    return Route(
        "GET /weather",
        price,
        description="Weather by city",
        tags=("weather",),
        discovery=declaration,
        **kwargs,
    )


def shop(tb, router, name: str, route: Route, **kwargs):
    base = f"http://{name}.test"
    server = tb.server({route.key: route}, base_url=base, **kwargs)
    router.add(base, resource_server_app(server.role, FacilitatorClient(FACILITATOR)))
    tb.facilitator.role.catalog.register_server(server.role, tb.now)
    return server


def registered(tb, feedback: int | None):
    """An ERC-8004 agent (its wallet is its payee) reviewed ``feedback`` once (None: never)."""
    owner, wallet = tb.account(eth=10**18), tb.account()
    agent_id = erc8004.register(tb.chain, owner.key, "https://agent.test/registration.json")
    erc8004.set_agent_wallet(tb.chain, owner.key, agent_id, wallet.key)
    if feedback is not None:
        erc8004.give_feedback(tb.chain, tb.account(eth=10**18).key, agent_id, feedback, 0, TAG_DELIVERED)
    agent = AgentRef(agent_id, tb.chain.chain_id, tb.chain.identity_registry)
    return ServerIdentity(agent, tb.chain.reputation_registry), wallet


@pytest.fixture
def bazaar(tb):
    router = Router()
    router.add(FACILITATOR, facilitator_app(tb.facilitator.role, clock=lambda: tb.now))
    http = httpx.Client(transport=router)
    yield tb, router, http
    http.close()


def test_the_official_sdk_client_reads_our_list_and_search(bazaar):
    tb, router, http = bazaar
    cheap = shop(tb, router, "cheap", listed(1_000))
    shop(tb, router, "dear", listed(5_000))
    tool = Route("POST /forecast", 2_000, discovery=mcp_tool_listing("forecast", {"type": "object"}))
    tools_server = tb.server({tool.key: tool}, base_url="http://tools.test/mcp")
    tb.facilitator.role.catalog.register_server(tools_server.role, tb.now)
    sdk = with_bazaar(HTTPFacilitatorClientSync(FacilitatorConfig(url=FACILITATOR, http_client=http)))
    page = sdk.extensions.bazaar.list_resources(ListDiscoveryResourcesParams(type="http", limit=1, offset=1))
    assert (page.x402_version, page.pagination.limit, page.pagination.offset, page.pagination.total) == (
        2,
        1,
        1,
        2,
    )
    (item,) = page.items
    assert (item.resource, item.type, item.description, item.tags) == (
        "http://dear.test/weather",
        "http",
        "Weather by city",
        ["weather"],
    )
    assert item.accepts[0]["amount"] == "5000" and item.last_updated.endswith("Z")
    assert item.extensions["bazaar"]["info"]["input"]["queryParams"] == {"city": "Oslo"}
    by_payee = sdk.extensions.bazaar.list_resources(ListDiscoveryResourcesParams(pay_to=cheap.pay_to))
    assert [i.resource for i in by_payee.items] == ["http://cheap.test/weather"]
    tools = sdk.extensions.bazaar.list_resources(ListDiscoveryResourcesParams(type="mcp"))
    assert [(i.type, i.extensions["bazaar"]["info"]["input"]["toolName"]) for i in tools.items] == [
        ("mcp", "forecast")
    ]
    first = sdk.extensions.bazaar.search(SearchDiscoveryResourcesParams(query="weather", limit=1))
    assert len(first.resources) == 1 and first.pagination.cursor == "1" and first.partial_results is False
    rest = sdk.extensions.bazaar.search(SearchDiscoveryResourcesParams(query="weather", limit=1, cursor="1"))
    assert rest.pagination.cursor is None
    assert {first.resources[0].resource, rest.resources[0].resource} == {
        "http://cheap.test/weather",
        "http://dear.test/weather",
    }


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/discovery/resources?limit=0", "query parameter limit: expected an integer 1..100"),
        ("/discovery/resources?offset=-3", "query parameter offset"),
        ("/discovery/resources?type=soap", "query parameter type: expected http or mcp"),
        ("/discovery/search", "query parameter query: required"),
        ("/discovery/search?query=x&cursor=abc", "query parameter cursor"),
    ],
)
def test_bad_parameters_get_400_naming_the_parameter(bazaar, path, problem):
    _, _, http = bazaar
    answer = http.get(FACILITATOR + path)
    assert answer.status_code == 400 and answer.json()["error"].startswith(problem)


def test_a_settlement_answers_the_bazaar_status_in_extension_responses(bazaar):
    tb, router, http = bazaar
    server = shop(tb, router, "paid", listed(1_000))
    tb.facilitator.role.catalog = type(tb.facilitator.role.catalog)()  # forget the registration
    payer = tb.account(usdc=1_000)
    answer = server.role.challenge(server.role.routes["GET /weather"], 2, "pay")
    payment = tb.client(payer).create_payment(parse_payment_required(answer.headers, answer.body))
    body = {
        "x402Version": 2,
        "paymentPayload": payment.to_wire(),
        "paymentRequirements": payment.accepted.to_wire(),
    }
    verified = http.post(FACILITATOR + "/verify", json=body)
    assert json.loads(base64.b64decode(verified.headers["EXTENSION-RESPONSES"])) == {
        "bazaar": {"status": "processing"}
    }
    settled = http.post(FACILITATOR + "/settle", json=body)
    assert settled.json()["success"] is True
    assert json.loads(base64.b64decode(settled.headers["EXTENSION-RESPONSES"])) == {
        "bazaar": {"status": "success"}
    }
    assert tb.chain.balance_of(server.pay_to) == 1_000 and tb.chain.balance_of(payer.address) == 0
    listing = http.get(FACILITATOR + "/discovery/resources").json()
    assert [i["resource"] for i in listing["items"]] == ["http://paid.test/weather"]


def test_discover_ranks_by_price_and_filters_by_mechanism_and_cap(bazaar):
    tb, router, http = bazaar
    shop(tb, router, "cheap", listed(1_000))
    shop(tb, router, "dear", listed(5_000))
    shop(tb, router, "permit", listed(500, transfer_method="permit2"))
    found = discover(FACILITATOR, "weather", http=http)
    assert [(c.resource, c.price) for c in found] == [
        ("http://permit.test/weather", 500),
        ("http://cheap.test/weather", 1_000),
        ("http://dear.test/weather", 5_000),
    ]
    assert found[0].mechanisms == ("exact/permit2",) and found[1].mechanisms == ("exact/eip3009",)
    assert found[1].method == "GET" and found[1].tags == ("weather",)
    eip3009 = discover(FACILITATOR, "weather", mechanisms=["exact/eip3009"], max_price=4_000, http=http)
    assert [c.resource for c in eip3009] == ["http://cheap.test/weather"]
    assert discover(FACILITATOR, "weather", networks=["eip155:1"], http=http) == []
    assert len(discover(FACILITATOR, http=http)) == 3  # no query: the whole list
    with pytest.raises(DiscoveryError, match="nothing listens"):
        discover("http://nowhere.test", "weather", http=http)


def test_discover_reads_reputation_on_chain_and_leaves_out_a_borrowed_identity(bazaar):
    tb, router, http = bazaar
    good, good_wallet = registered(tb, 90)
    poor, poor_wallet = registered(tb, 20)
    borrowed, _ = registered(tb, 100)
    shop(tb, router, "good", listed(3_000), identity=good, pay_to=good_wallet.address)
    shop(tb, router, "poor", listed(1_000), identity=poor, pay_to=poor_wallet.address)
    shop(tb, router, "anon", listed(2_000))
    shop(tb, router, "thief", listed(100), identity=borrowed, pay_to=tb.account().address)  # not its wallet
    by_reputation = discover(FACILITATOR, "weather", rule="reputation", chain=tb.chain, http=http)
    assert [(c.resource, c.reputation) for c in by_reputation] == [
        ("http://good.test/weather", 0.9),
        ("http://poor.test/weather", 0.2),
        ("http://anon.test/weather", None),
    ]
    floor = discover(FACILITATOR, "weather", min_reputation=0.5, chain=tb.chain, http=http)
    assert [c.resource for c in floor] == ["http://good.test/weather"]
    # without a chain nothing is read: the cheapest, the borrowed identity included
    assert discover(FACILITATOR, "weather", http=http)[0].resource == "http://thief.test/weather"
