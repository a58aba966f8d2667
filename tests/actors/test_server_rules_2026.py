"""The reference resource server's 2026 HTTP rules, on the sans-IO role: malformed payment headers,
caching, pending settlements, facilitator failures, the upfront flow's announcement, resource
metadata, route spellings and redirects. Settlements that land are judged on the testbed's chain."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from x402sim.actors import BaseDriver, HttpRequest, HttpResponse, Send, Unreachable, run
from x402sim.actors.messages import AmbiguousPath, Handle, Settle, Verify, canonical_path
from x402sim.actors.server import DEFAULT_MAX_TIMEOUT_SECONDS, ResourceServer, Route
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    PaymentRequired,
    ResourceInfo,
    SettleResponse,
    VerifyResponse,
    decode_header,
    encode_header,
    parse_payment_required,
)

PRICE = 10_000
SECRET = {"secret": "the paid content"}


def paid_handler(request: HttpRequest) -> HttpResponse:
    return HttpResponse.of_json(200, SECRET)


class Scripted(BaseDriver):
    """A world whose facilitator answers from a script (a value, an exception to throw, or a callable
    given the effect) and whose application is ``handler``; it records every effect it answers."""

    world = "scripted"

    def __init__(self, verify=None, settles=(), handler: Callable = paid_handler) -> None:
        self.verdict = VerifyResponse(is_valid=True) if verify is None else verify
        self.settles = list(settles)
        self.handler = handler
        self.effects: list = []

    @staticmethod
    def _answer(script, effect):
        if isinstance(script, BaseException):
            raise script
        return script(effect) if callable(script) else script

    def verify(self, effect: Verify):
        self.effects.append(effect)
        return self._answer(self.verdict, effect)

    def settle(self, effect: Settle):
        self.effects.append(effect)
        return self._answer(self.settles.pop(0), effect)

    def handle(self, effect: Handle):
        self.effects.append(effect)
        return self.handler(effect.request)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.effects]


def _bare_server(**kwargs) -> ResourceServer:
    """A role alone (no chain): ``GET /paid`` priced, ``GET /free`` free."""
    settings = {
        "network": "eip155:31337",
        "asset": "0x" + "22" * 20,
        "asset_name": "USDC",
        "asset_version": "2",
        "pay_to": "0x" + "33" * 20,
        **kwargs,
    }
    return ResourceServer.with_prices({"GET /paid": PRICE, "GET /free": 0}, **settings)


def _shop(tb, **kwargs):
    return tb.server({"GET /paid": PRICE}, **kwargs)


def _payment_header(tb, shop, account) -> str:
    """A real payment for ``GET /paid`` of ``shop``, signed by ``account`` at the testbed's time."""
    challenge = tb.perform(shop, Send(HttpRequest("GET", "/paid")))
    required = parse_payment_required(challenge.headers, challenge.body)
    return encode_header(tb.client(account).create_payment(required))


def _paid_request(tb, shop, account, path: str = "/paid") -> HttpRequest:
    return HttpRequest("GET", path, ((PAYMENT_SIGNATURE, _payment_header(tb, shop, account)),))


def _failed(transaction: str = "", reason: str = "transaction_failed") -> SettleResponse:
    return SettleResponse(success=False, error_reason=reason, transaction=transaction, network="eip155:31337")


def _settled(transaction: str = "0x" + "ab" * 32) -> SettleResponse:
    return SettleResponse(
        success=True, transaction=transaction, network="eip155:31337", payer="0x" + "11" * 20
    )


# 1. malformed payment headers -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MALFORMED = [
    (PAYMENT_SIGNATURE, "not base64!", "base64"),
    (PAYMENT_SIGNATURE, _b64(b"\xff\xfe{}"), "UTF-8"),
    (PAYMENT_SIGNATURE, _b64(b"{not json"), "JSON"),
    (PAYMENT_SIGNATURE, _b64(b"[1, 2]"), "object"),
    (PAYMENT_SIGNATURE, _b64(b'{"x402Version": 2}'), "accepted"),
    (X_PAYMENT, _b64(b'{"x402Version": 1, "scheme": "exact"}'), "network"),
]


@pytest.mark.parametrize(("header", "value", "named"), MALFORMED)
def test_an_unreadable_payment_header_gets_400_naming_the_problem_and_nothing_else_happens(
    tb, header, value, named
):
    shop = _shop(tb)
    driver = Scripted()
    answer = run(shop.role.handle(HttpRequest("GET", "/paid", ((header, value),))), driver)
    assert answer.status == 400 and answer.header(PAYMENT_REQUIRED) is None
    error = answer.json()["error"]
    assert error.startswith("invalid payment header") and named in error
    assert driver.effects == []  # not verified, not served, not settled
    assert shop.stats["malformed"] == 1


def test_no_payment_header_still_gets_the_402_challenge_never_stored(tb):
    answer = tb.perform(_shop(tb), Send(HttpRequest("GET", "/paid")))
    assert answer.status == 402 and answer.header("Cache-Control") == "no-store"
    assert parse_payment_required(answer.headers, answer.body).error == "payment required"


# 2. caching -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "private"),
        ("max-age=60", "max-age=60, private"),
        ("no-cache, max-age=0", "no-cache, max-age=0, private"),
        ("private, max-age=5", "private, max-age=5"),
        ("Private", "Private"),
        ('private="Set-Cookie"', 'private="Set-Cookie"'),
    ],
)
def test_a_paid_answer_is_marked_private(tb, given, expected):
    alice = tb.account(usdc=1_000_000)
    headers = () if given is None else (("Cache-Control", given),)
    shop = _shop(tb, handlers={"GET /paid": lambda r: HttpResponse.of_json(200, SECRET, headers)})
    answer = tb.perform(shop, Send(_paid_request(tb, shop, alice)))
    assert answer.status == 200 and answer.json() == SECRET
    assert [v for k, v in answer.headers if k.lower() == "cache-control"] == [expected]
    assert decode_header(answer.header(PAYMENT_RESPONSE), SettleResponse).success
    assert tb.chain.balance_of(shop.pay_to) == PRICE


def test_every_402_says_no_store_a_failed_settlement_included(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    request = _paid_request(tb, shop, alice)
    driver = Scripted(settles=[_failed()])
    answer = run(shop.role.handle(request), driver)
    assert answer.status == 402 and answer.header("Cache-Control") == "no-store"
    assert b"paid content" not in answer.body
    refused = run(
        shop.role.handle(request), Scripted(verify=VerifyResponse(is_valid=False, invalid_reason="x"))
    )
    assert refused.status == 402 and refused.header("Cache-Control") == "no-store"
    v1 = _bare_server(network="eip155:84532", x402_version=1)
    challenge = run(v1.handle(HttpRequest("GET", "/paid")), Scripted())
    assert challenge.json()["x402Version"] == 1 and challenge.header("Cache-Control") == "no-store"


# 3. pending settlements --------------------------------------------------------------------------------


TX = "0x" + "cd" * 32


@pytest.mark.parametrize("upfront", [False, True])
def test_a_pending_settlement_is_asked_for_once_more_and_lands_once(tb, upfront):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb, upfront=upfront)
    request = _paid_request(tb, shop, alice)
    block = tb.chain.block_number
    # The first /settle answer is "pending"; the second is the real facilitator settling on chain.
    real = lambda effect: tb.facilitator.settle(effect.payload, effect.requirements)  # noqa: E731
    driver = Scripted(settles=[_failed(TX, "settlement_pending"), real])
    answer = run(shop.role.handle(request), driver)
    settles = [e for e in driver.effects if isinstance(e, Settle)]
    assert len(settles) == 2 and settles[0] == settles[1]  # the identical request, twice
    expected = ["Settle", "Settle", "Handle"] if upfront else ["Verify", "Handle", "Settle", "Settle"]
    assert driver.kinds() == expected
    assert answer.status == 200 and answer.json() == SECRET
    transfers = tb.chain.transfers(since_block=block + 1)
    assert [(t.from_, t.to, t.value) for t in transfers] == [(alice.address, shop.pay_to, PRICE)]
    assert shop.stats["settle_pending"] == 1 and shop.stats["paid"] == 1


@pytest.mark.parametrize("upfront", [False, True])
def test_still_pending_after_the_second_ask_is_a_402_with_the_transaction_and_no_body(tb, upfront):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb, upfront=upfront)
    pending = _failed(TX, "settlement_pending")
    driver = Scripted(settles=[pending, pending])
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    assert driver.kinds().count("Settle") == 2  # once more, and no further
    assert answer.status == 402 and b"paid content" not in answer.body
    settlement = decode_header(answer.header(PAYMENT_RESPONSE), SettleResponse)
    assert not settlement.success and settlement.transaction == TX
    assert "Handle" not in driver.kinds() if upfront else driver.kinds()[1] == "Handle"


def test_a_second_answer_without_a_transaction_still_names_the_pending_one(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(settles=[_failed(TX, "settlement_pending"), _failed("", "duplicate_settlement")])
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    settlement = decode_header(answer.header(PAYMENT_RESPONSE), SettleResponse)
    assert answer.status == 402 and settlement.transaction == TX
    assert settlement.error_reason == "duplicate_settlement"


def test_a_pending_answer_without_a_transaction_is_not_asked_again(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(settles=[_failed("", "settlement_pending")])
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    assert driver.kinds() == ["Verify", "Handle", "Settle"]
    assert answer.status == 402 and shop.stats["settle_pending"] == 0


def test_another_failure_with_a_transaction_is_not_asked_again(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(settles=[_failed(TX, "transaction_failed")])
    assert run(shop.role.handle(_paid_request(tb, shop, alice)), driver).status == 402
    assert driver.kinds().count("Settle") == 1


# 4-5. a facilitator that does not answer ---------------------------------------------------------------


def test_no_verify_answer_is_a_502_and_nothing_is_served_or_settled(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(verify=Unreachable("facilitator", "/verify: no answer within 0.5 s"))
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    assert answer.status == 502 and "no answer within" in answer.json()["error"]
    assert driver.kinds() == ["Verify"]


def test_no_settle_answer_is_a_502_and_the_body_is_withheld(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(settles=[Unreachable("facilitator", "/settle answered outside the protocol")])
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    assert driver.kinds() == ["Verify", "Handle", "Settle"]
    assert answer.status == 502 and b"paid content" not in answer.body
    assert answer.header(PAYMENT_RESPONSE) is None


# 6. extension responses stay with the server --------------------------------------------------------------


def test_extension_responses_are_never_in_the_buyers_settlement_header(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    said = {"bazaar": {"status": "indexed", "token": "facilitator-only"}}
    real = lambda e: tb.facilitator.settle(e.payload, e.requirements).with_extension_responses(said)  # noqa: E731
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), Scripted(settles=[real]))
    assert answer.status == 200
    header = answer.header(PAYMENT_RESPONSE)
    assert "facilitator-only" not in base64.b64decode(header).decode()
    assert decode_header(header, SettleResponse).extension_responses is None
    assert all("facilitator-only" not in v and k.upper() != "EXTENSION-RESPONSES" for k, v in answer.headers)


# 7-9. offers: defaults, resource metadata, the upfront flow --------------------------------------------


def test_offers_default_to_300_seconds_and_announce_only_the_upfront_flow(tb):
    for upfront, flow in ((False, None), (True, "upfront")):
        challenge = tb.perform(_shop(tb, upfront=upfront), Send(HttpRequest("GET", "/paid")))
        (offer,) = parse_payment_required(challenge.headers, challenge.body).accepts
        assert offer.max_timeout_seconds == DEFAULT_MAX_TIMEOUT_SECONDS == 300
        assert (offer.extra or {}).get("paymentFlow") == flow


def test_an_upfront_payment_is_matched_settled_before_the_handler_and_lands_once(tb):
    alice = tb.account(usdc=1_000_000)
    order: list[str] = []

    def handler(request):
        order.append("handler")
        # Settled before the handler runs: the payee already holds the price.
        order.append(f"payee holds {tb.chain.balance_of(shop.pay_to)}")
        return HttpResponse.of_json(200, SECRET)

    shop = _shop(tb, upfront=True, handlers={"GET /paid": handler})
    result = tb.client(alice).get(shop, "/paid")
    assert result.status == 200 and result.settlement.success
    assert result.payment.accepted.extra["paymentFlow"] == "upfront"  # the echo names the flow
    assert order == ["handler", f"payee holds {PRICE}"]
    assert tb.chain.balance_of(alice.address) == 1_000_000 - PRICE


def test_the_resource_carries_service_name_tags_and_icon(tb):
    route = Route(
        "GET /paid", PRICE, service_name="Weather Co", tags=["weather", "eu"], icon_url="https://i/x.png"
    )
    challenge = tb.perform(tb.server({"GET /paid": route}), Send(HttpRequest("GET", "/paid")))
    resource = parse_payment_required(challenge.headers, challenge.body).resource
    assert resource.to_wire() == {
        "url": "http://localhost/paid",
        "mimeType": "application/json",
        "serviceName": "Weather Co",
        "tags": ["weather", "eu"],
        "iconUrl": "https://i/x.png",
    }
    plain = tb.perform(tb.server({"GET /paid": PRICE}), Send(HttpRequest("GET", "/paid")))
    wire = decode_header(plain.header(PAYMENT_REQUIRED), PaymentRequired).to_wire()["resource"]
    assert set(wire) == {"url", "mimeType"}
    with pytest.raises(ValueError, match="tags must be strings"):
        Route("GET /paid", PRICE, tags=[1])


@given(
    service_name=st.none() | st.text(max_size=20),
    tags=st.none() | st.lists(st.text(max_size=8), max_size=3),
    icon_url=st.none() | st.text(max_size=20),
)
@settings(max_examples=25)
def test_resource_metadata_round_trips_unchanged(service_name, tags, icon_url):
    wire = {"url": "https://s/p", "serviceName": service_name, "tags": tags, "iconUrl": icon_url}
    wire = {k: v for k, v in wire.items() if v is not None}
    assert ResourceInfo.from_wire(wire).to_wire() == wire


# 10. route spellings -----------------------------------------------------------------------------------

# Each is refused wherever it lands: a broken escape here never ends in a hex digit, so the letter
# after it cannot complete it into an escape of another character.
SEPARATORS = [
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "\\",
    "%0A",
    "%0D",
    "%00",
    "%09",
    "%1F",
    "%7F",
    "%252F",
    "%255C",
    "%Z",
    "%G1",
]


@st.composite
def spellings(draw, path: str = "/paid") -> str:
    """A spelling of ``path``: escaped or upper-cased letters, dot and empty segments before it, a
    trailing slash or ``;params``, and (sometimes) a separator, control or double escape inside."""
    letters = []
    for c in path.strip("/"):
        how = draw(st.sampled_from(["same", "same", "upper", "escape", "escape-upper"]))
        letters.append(
            {"same": c, "upper": c.upper(), "escape": f"%{ord(c):02x}", "escape-upper": f"%{ord(c):02X}"}[how]
        )
    if draw(st.booleans()):
        at = draw(st.integers(0, len(letters)))
        letters.insert(at, draw(st.sampled_from(SEPARATORS)))
    prefix = draw(
        st.sampled_from(["", "/", "/.", "/./", "/x/..", "/x/y/../..", "/%2e", "/x/%2E%2E", "/..", "//."])
    )
    suffix = draw(st.sampled_from(["", "/", "//", "/.", ";x=1", ";", "/;a", "?q=1", "/?q=1"]))
    return prefix + "/" + "".join(letters) + suffix


@given(spelling=spellings())
@example(spelling="/%0Apaid")
@example(spelling="/x/..//P%61ID;v=1/")
@settings(max_examples=100)
def test_every_spelling_of_a_priced_path_is_priced_or_refused(spelling):
    server = _bare_server()
    driver = Scripted()
    answer = run(server.handle(HttpRequest("GET", spelling)), driver)
    assert driver.effects == []  # never served unpaid
    try:
        canonical_path(spelling)
    except AmbiguousPath:
        assert answer.status == 400 and "request path refused" in answer.json()["error"]
    else:
        assert answer.status == 402 and answer.header(PAYMENT_REQUIRED) is not None


def test_canonical_paths():
    assert [canonical_path(p) for p in ["/p%61id", "/a/./b/../paid/", "//paid;v=1?x", "/../paid", "/"]] == [
        "/paid",
        "/a/paid",
        "/paid",
        "/paid",
        "/",
    ]
    for bad in ["/a%2Fb", "/a%5Cb", "/a\\b", "/a%0Ab", "/a%00", "/a%252Fb", "/a%2", "/a%ff"]:
        with pytest.raises(AmbiguousPath):
            canonical_path(bad)


def test_routes_match_their_own_case_but_a_priced_route_every_case(tb):
    shop = tb.server({"GET /paid": PRICE, "GET /Free": 0, "GET /free": 0})
    role = shop.role
    assert role.route_for(HttpRequest("GET", "/PAID")).key == "GET /paid"
    assert role.route_for(HttpRequest("GET", "/Free")).key == "GET /Free"
    assert role.route_for(HttpRequest("GET", "/FREE")) is None  # free routes are case-sensitive
    assert tb.perform(shop, Send(HttpRequest("GET", "/pAiD/"))).status == 402


def test_a_paid_spelling_reaches_the_routes_handler_and_is_charged_once(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb, handlers={"GET /paid": paid_handler})
    block = tb.chain.block_number
    answer = tb.perform(shop, Send(_paid_request(tb, shop, alice, "/./P%61ID;v=2/")))
    assert answer.status == 200 and answer.json() == SECRET
    assert len(tb.chain.transfers(since_block=block + 1)) == 1


# 11. redirects are paid like any answer -----------------------------------------------------------------


def _redirect(request):
    return HttpResponse(302, (("Location", "/elsewhere/paid-copy"),), b"")


def test_a_paid_redirect_is_settled_once_on_chain(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb, handlers={"GET /paid": _redirect})
    block = tb.chain.block_number
    answer = tb.perform(shop, Send(_paid_request(tb, shop, alice)))
    assert answer.status == 302 and answer.header("Location") == "/elsewhere/paid-copy"
    assert decode_header(answer.header(PAYMENT_RESPONSE), SettleResponse).success
    transfers = tb.chain.transfers(since_block=block + 1)
    assert [(t.from_, t.to, t.value) for t in transfers] == [(alice.address, shop.pay_to, PRICE)]


def test_a_redirect_whose_settlement_fails_is_a_402_without_the_location(tb):
    alice = tb.account(usdc=1_000_000)
    shop = _shop(tb)
    driver = Scripted(settles=[_failed()], handler=_redirect)
    answer = run(shop.role.handle(_paid_request(tb, shop, alice)), driver)
    assert answer.status == 402 and answer.header("Location") is None
    assert tb.chain.balance_of(shop.pay_to) == 0
