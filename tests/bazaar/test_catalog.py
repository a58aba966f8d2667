"""The facilitator's Bazaar catalog through the reference roles on the testbed chain: a route's
listing rides in its 402, the client echoes it, the settled payment catalogs it (a rejected listing
is not cataloged, the payment still settles), and the catalog's filters, pages and search."""

from __future__ import annotations

import re

import pytest

from x402sim.actors.bazaar_catalog import BazaarCatalog
from x402sim.actors.server import Route
from x402sim.protocol import PaymentRequired, PaymentRequirements, ResourceInfo, parse_payment_required
from x402sim.protocol.bazaar import (
    HttpDeclaration,
    ListQuery,
    SearchQuery,
    http_listing,
    mcp_tool_listing,
)

PRICE = 1_000
CITY = {"properties": {"city": {"type": "string"}}, "required": ["city"]}


def weather_route(price=PRICE, path="/weather", **kwargs) -> Route:
    declaration = HttpDeclaration(example={"city": "Paris"}, input_schema=CITY, output={"celsius": 12})
    return Route(f"GET {path}", price, description="Weather now", discovery=declaration, **kwargs)


def test_a_paid_request_carries_the_listing_and_gets_cataloged(tb):
    route = weather_route(service_name="Weather Co", tags=("weather", "forecast"))
    server = tb.server({route.key: route})
    payer = tb.account(usdc=10 * PRICE)
    result = tb.client(payer).get(server, "/weather")
    assert result.status == 200 and result.settlement.success
    declared = result.challenge.extensions["bazaar"]
    assert declared == route.discovery.listing("GET").to_wire()
    assert result.payment.extensions["bazaar"] == declared  # echoed by the client
    assert tb.chain.balance_of(payer.address) == 9 * PRICE
    assert tb.chain.balance_of(server.pay_to) == PRICE
    (item,) = tb.facilitator.role.catalog.list().items
    assert (item.resource, item.type, item.service_name, item.tags) == (
        "http://localhost/weather",
        "http",
        "Weather Co",
        ["weather", "forecast"],
    )
    assert item.accepts == [result.payment.accepted.to_wire()]  # the server's offer
    assert item.extensions == {"bazaar": declared}
    assert item.last_updated == "2026-01-01T00:00:00Z"  # the settlement's time (the testbed's clock)


def test_a_route_without_a_listing_is_not_cataloged(tb):
    server = tb.server({"GET /plain": PRICE})
    result = tb.client(tb.account(usdc=PRICE)).get(server, "/plain")
    assert result.status == 200 and "bazaar" not in (result.challenge.extensions or {})
    assert len(tb.facilitator.role.catalog) == 0


def test_a_rejected_listing_is_not_cataloged_and_the_payment_still_settles(tb):
    route = weather_route()
    server = tb.server({route.key: route})
    payer = tb.account(usdc=PRICE)
    client = tb.client(payer)
    answer = server.role.challenge(route, 2, "pay")
    challenge = parse_payment_required(answer.headers, answer.body)
    listing = dict(challenge.extensions["bazaar"])
    listing["info"] = {
        "input": {"type": "http", "method": "GET", "queryParams": {"city": 7}}
    }  # not its schema
    payment = client.create_payment(challenge)
    payment = payment.model_copy(update={"extensions": {**payment.extensions, "bazaar": listing}})
    verified = tb.facilitator.verify(payment, payment.accepted)
    assert verified.is_valid
    status = verified.extension_responses["bazaar"]
    assert status["status"] == "rejected" and "queryParams.city" in status["rejectedReason"]
    settled = tb.facilitator.settle(payment, payment.accepted)
    assert settled.success and settled.extension_responses["bazaar"]["status"] == "rejected"
    assert tb.chain.balance_of(server.pay_to) == PRICE  # paid on chain, listing refused
    assert len(tb.facilitator.role.catalog) == 0


def test_a_valid_listing_is_processing_at_verify_and_success_once_settled(tb):
    route = weather_route()
    server = tb.server({route.key: route})
    client = tb.client(tb.account(usdc=PRICE))
    answer = server.role.challenge(route, 2, "pay")
    payment = client.create_payment(parse_payment_required(answer.headers, answer.body))
    verified = tb.facilitator.verify(payment, payment.accepted)
    assert verified.extension_responses == {"bazaar": {"status": "processing"}}
    assert len(tb.facilitator.role.catalog) == 0  # verify commits nothing
    settled = tb.facilitator.settle(payment, payment.accepted)
    assert settled.success and settled.extension_responses == {"bazaar": {"status": "success"}}
    assert len(tb.facilitator.role.catalog) == 1


# -- keys, filters, pages, search (registered directly: no payment needed) -----------------------------------


def offer(
    pay_to="0x" + "11" * 20, scheme="exact", network="eip155:31337", amount=PRICE
) -> PaymentRequirements:
    return PaymentRequirements(
        scheme=scheme,
        network=network,
        amount=amount,
        asset="0x" + "22" * 20,
        pay_to=pay_to,
        max_timeout_seconds=60,
    )


def required(url, listing, *, accepts=None, **resource) -> PaymentRequired:
    return PaymentRequired(
        x402_version=2,
        resource=ResourceInfo(url=url, **resource),
        accepts=accepts or [offer()],
        extensions={"bazaar": listing.to_wire()},
    )


def test_mcp_tools_of_one_endpoint_are_keyed_by_url_and_tool():
    catalog = BazaarCatalog()
    for tool in ("weather", "stocks", "weather"):
        catalog.register(required("https://tools.test/mcp", mcp_tool_listing(tool, {"type": "object"})), 100)
    assert [(e.url, e.tool) for e in catalog.entries()] == [
        ("https://tools.test/mcp", "stocks"),
        ("https://tools.test/mcp", "weather"),
    ]
    assert catalog.list(ListQuery(type="mcp")).pagination.total == 2
    assert catalog.list(ListQuery(type="http")).pagination.total == 0


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("/users/:id", "https://api.test/users/:id"),
        ("/users/%2e%2e/admin", "https://api.test/users/42"),
        ("https://evil.test/x", "https://api.test/users/42"),
        (None, "https://api.test/users/42"),
    ],
)
def test_a_valid_route_template_keys_the_entry_else_the_concrete_path(template, key):
    catalog = BazaarCatalog()
    listing = http_listing("GET").model_copy(update={"route_template": template})
    entry = catalog.register(required("https://api.test/users/42?x=1#top", listing), 100)
    assert entry.url == key


def shop_catalog(capacity=100) -> BazaarCatalog:
    catalog = BazaarCatalog(capacity)
    rows = [
        ("https://a.test/weather", "Weather Co", ["weather"], "Forecasts by city", "0x" + "aa" * 20, "exact"),
        ("https://b.test/forecast", "Sky", ["weather", "rain"], "Rain radar", "0x" + "bb" * 20, "upto"),
        ("https://c.test/stocks", "Tickers", ["finance"], "Stock quotes", "0x" + "aa" * 20, "exact"),
        ("https://d.test/news", "Wire", ["news"], "Headlines about the weather", "0x" + "cc" * 20, "exact"),
    ]
    for i, (url, name, tags, description, pay_to, scheme) in enumerate(rows):
        catalog.register(
            required(
                url,
                http_listing("GET"),
                accepts=[offer(pay_to, scheme)],
                service_name=name,
                tags=tags,
                description=description,
            ),
            100 + i,
        )
    return catalog


def test_filters_and_pages():
    catalog = shop_catalog()
    first, second = catalog.list(ListQuery(limit=3)), catalog.list(ListQuery(limit=3, offset=3))
    assert [i.resource for i in first.items + second.items] == [e.url for e in catalog.entries()]
    assert (first.pagination.total, len(first.items), len(second.items)) == (4, 3, 1)
    by_payee = catalog.list(ListQuery(pay_to="0x" + "AA" * 20))
    assert [i.resource for i in by_payee.items] == ["https://a.test/weather", "https://c.test/stocks"]
    assert [i.resource for i in catalog.list(ListQuery(scheme="upto")).items] == ["https://b.test/forecast"]
    assert catalog.list(ListQuery(network="eip155:1")).pagination.total == 0
    assert catalog.list(ListQuery(extensions="bazaar")).pagination.total == 4
    assert catalog.list(ListQuery(extensions="payment-identifier")).pagination.total == 0


def test_search_scores_names_tags_and_descriptions_and_pages_by_cursor():
    catalog = shop_catalog()
    found = catalog.search(SearchQuery("weather"))
    # "weather": a.test in name, tag, description and URL; b.test a tag; d.test its description
    assert [i.resource for i in found.resources] == [
        "https://a.test/weather",
        "https://b.test/forecast",
        "https://d.test/news",
    ]
    first = catalog.search(SearchQuery("weather", limit=2))
    assert first.pagination.cursor == "2" and first.to_wire()["pagination"] == {"limit": 2, "cursor": "2"}
    rest = catalog.search(SearchQuery("weather", limit=2, cursor="2"))
    assert [i.resource for i in rest.resources] == ["https://d.test/news"]
    assert rest.to_wire()["pagination"] == {"limit": 2, "cursor": None}
    assert catalog.search(SearchQuery("zebra")).resources == []
    assert [
        i.resource for i in catalog.search(SearchQuery("weather", ListQuery(scheme="upto"))).resources
    ] == ["https://b.test/forecast"]


def test_memory_is_bounded_and_the_least_recently_learned_goes_first():
    catalog = shop_catalog(capacity=3)
    assert len(catalog) == 3 and "https://a.test/weather" not in {e.url for e in catalog.entries()}


def test_service_metadata_is_sanitized_not_trusted():
    catalog = BazaarCatalog()
    entry = catalog.register(
        required(
            "https://x.test/a",
            http_listing("GET"),
            service_name="x" * 33,
            tags=["ok", "OK", "caf\u00e9", "", "b", "c", "d", "e"],
            icon_url="javascript:alert(1)",
        ),
        1,
    )
    assert entry.resource.service_name is None and entry.resource.icon_url is None
    assert entry.resource.tags == ["ok", "b", "c", "d", "e"]


def test_a_paid_mcp_tool_is_cataloged_as_a_tool(tb):
    from x402sim.transports import TOOL_BASE_URL, tool_route_key

    key = tool_route_key("weather")
    listing = mcp_tool_listing("weather", {"type": "object", **CITY}, description="Weather by city")
    server = tb.server({key: Route(key, PRICE, discovery=listing)}, base_url=TOOL_BASE_URL)
    payer = tb.account(usdc=PRICE)
    paid = tb.client(payer).request(server, "POST", "/weather", body=b'{"city": "Oslo"}')
    assert paid.status == 200 and tb.chain.balance_of(server.pay_to) == PRICE
    (item,) = tb.facilitator.role.catalog.list(ListQuery(type="mcp")).items
    assert (item.resource, item.listing.tool, item.listing.info.input.description) == (
        "mcp://tool/weather",
        "weather",
        "Weather by city",
    )


def test_a_routes_file_listing_is_checked_when_loaded():
    from x402sim.http.routes_file import RoutesFileError, parse_routes

    route = {"method": "POST", "path": "/q", "price": 1}
    body = {"example": {"q": "rain"}, "input_schema": {"type": "object"}}
    loaded = parse_routes({"routes": [{**route, "discovery": body}]})
    assert loaded.routes["POST /q"].discovery.listing("POST").to_wire()["info"]["input"]["body"] == {
        "q": "rain"
    }
    for discovery, words in [
        ({"exmple": {}}, "discovery: unknown key 'exmple'"),
        ({"body_type": "xml"}, "discovery: extensions.bazaar.info.input.bodyType: fails its schema"),
        (
            {"example": {"q": 1}, "input_schema": {"properties": {"q": {"type": "string"}}}},
            "discovery: extensions.bazaar.info.input.body.q: fails its schema: 1 is not of type",
        ),
    ]:
        with pytest.raises(RoutesFileError, match=re.escape(f"routes: routes[0]: {words}")):
            parse_routes({"routes": [{**route, "discovery": discovery}]})
