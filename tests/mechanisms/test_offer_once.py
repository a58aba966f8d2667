"""The offer of one requirements object is read once (``Offer.of``): it is what a fresh read of a
copy gives, a malformed one is refused each time, and the one mutable part is shared."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.mechanisms import Offer
from x402sim.mechanisms import offer as offer_module
from x402sim.protocol import PaymentRequirements, ProtocolError

ASSET = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"


def _requirements(pay_to: str, amount: int = 1_000) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network="eip155:8453",
        amount=amount,
        asset=ASSET,
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra={"name": "USD Coin", "version": "2"},
    )


@settings(max_examples=50)
@given(st.binary(min_size=20, max_size=20), st.integers(0, 10**12))
def test_the_offer_read_again_is_the_offer_of_a_fresh_copy(address: bytes, amount: int) -> None:
    req = _requirements("0x" + address.hex(), amount)
    first = Offer.of(req)
    assert Offer.of(req) is first  # read once
    fresh = Offer.of(req.model_copy(deep=True))
    assert fresh == first and fresh is not first and first.pay_to == fresh.pay_to
    assert first.pay_to.lower() == "0x" + address.hex()


def test_a_malformed_address_is_refused_every_time() -> None:
    req = _requirements("0x1234")
    for _ in range(2):
        with pytest.raises(ProtocolError, match="payTo"):
            Offer.of(req)
    assert all(kept is not req for kept, _ in offer_module._offers.values())


def test_an_extra_changed_in_place_is_in_the_offer_read_again() -> None:
    req = _requirements("0x" + "11" * 20)
    Offer.of(req)
    cast(dict, req.extra)["version"] = "3"  # frozen model, mutable dict inside
    assert Offer.of(req).domain.version == "3" == Offer.of(req.model_copy(deep=True)).domain.version
