"""A route's offers and 402 are made once while nothing they are made of changes
(``ResourceServer._quote``), and made again when a field of the server does."""

from __future__ import annotations

from typing import cast

import pytest

from x402sim.actors import HttpRequest, ResourceServer, Send
from x402sim.protocol import PAYMENT_REQUIRED, PaymentRequired, codec, decode_header

PRICE = 10_000


def _challenge(tb, shop) -> tuple[str, PaymentRequired]:
    answer = tb.perform(shop, Send(HttpRequest("GET", "/weather")))
    assert answer.status == 402
    value = answer.header(PAYMENT_REQUIRED)
    return value, decode_header(value, PaymentRequired)


def test_a_route_s_402_is_made_once_while_the_server_is_unchanged(tb, monkeypatch):
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", False)  # the path users run
    shop = tb.server({"GET /weather": PRICE})
    first, required = _challenge(tb, shop)
    monkeypatch.setattr(ResourceServer, "_required", lambda *a: pytest.fail("402 made again"))
    monkeypatch.setattr(ResourceServer, "_offers", lambda *a: pytest.fail("offers made again"))
    monkeypatch.setattr(codec, "_encode", lambda model: pytest.fail("402 written again"))
    again, same = _challenge(tb, shop)
    assert again == first and same is required


def test_a_changed_field_is_in_the_next_402_and_the_payment_follows_it(tb):
    shop = tb.server({"GET /weather": PRICE})
    _, before = _challenge(tb, shop)
    carol = tb.account()
    shop.role.pay_to = carol.address
    _, after = _challenge(tb, shop)
    assert before.accepts[0].pay_to != carol.address == after.accepts[0].pay_to
    alice = tb.account(usdc=PRICE)
    resp = tb.client(alice).get(shop, "/weather")
    assert resp.status == 200 and resp.settlement.success
    assert tb.chain.balance_of(carol.address) == PRICE and tb.chain.balance_of(alice.address) == 0


def test_under_the_check_an_offer_changed_in_place_is_caught(tb, monkeypatch):
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", True)
    shop = tb.server({"GET /weather": PRICE})
    _, required = _challenge(tb, shop)
    cast(dict, required.accepts[0].extra)["name"] = "Not USDC"  # frozen model, mutable dict inside
    with pytest.raises(AssertionError, match="changed with no field of the server"):
        _challenge(tb, shop)
