"""The Bazaar controls: the reference facilitator whose ``/discovery/resources`` answer is altered
one way, each failing its ``facilitator.bazaar`` case (``tests/conformance/test_bazaar_cases.py``
calibrates them)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .bazaar_kit import COPY_PREFIX
from .controls import control
from .facilitator_controls import middleware
from .reference import InProcessService, reference_facilitator

DISCOVERY = ("/discovery/resources",)


def _target(name: str, change: Callable[[dict[str, Any]], None]) -> InProcessService:
    """The reference facilitator with every item of its ``/discovery/resources`` answer ``change``d."""

    def build(env: dict[str, str]):
        return middleware(reference_facilitator(env)[1], paths=DISCOVERY, answer=_items(change))

    return InProcessService("facilitator", build=build, name=f"control: {name}", kind="control")


def _items(change: Callable[[dict[str, Any]], None]):
    """An answer rewrite applying ``change`` to every listed item (a copy)."""

    def answer(path: str, body: Any, status: int, document: Any):
        if status != 200 or not isinstance(document, dict) or not isinstance(document.get("items"), list):
            return None
        document = copy.deepcopy(document)
        for item in document["items"]:
            if isinstance(item, dict):
                change(item)
        return 200, document

    return answer


def _bad_method(item: dict[str, Any]) -> None:
    listing = (item.get("extensions") or {}).get("bazaar")
    if isinstance(listing, dict) and isinstance(listing.get("info"), dict):
        listing["info"].setdefault("input", {})["method"] = "FETCH"


def _stale_price(item: dict[str, Any]) -> None:
    for accept in item.get("accepts") or ():
        if isinstance(accept, dict) and str(accept.get("amount", "")).isdigit():
            accept["amount"] = str(int(accept["amount"]) // 2)


def _unpaid_copy(item: dict[str, Any]) -> None:
    url = item.get("resource")
    if isinstance(url, str):
        parts = urlsplit(url)
        item["resource"] = urlunsplit(parts._replace(path=COPY_PREFIX + parts.path))


@control(
    "facilitator.bazaar-invalid-listing",
    "facilitator",
    "Listings are served with an info that breaks their own schema (an HTTP method FETCH)",
    kills=("facilitator.bazaar.listings-well-formed",),
)
def invalid_listing():
    return _target("bazaar-invalid-listing", _bad_method)


@control(
    "facilitator.bazaar-stale-price",
    "facilitator",
    "Listed accepts are served at half the amount the resource's 402 asks",
    kills=("facilitator.bazaar.price-matches-402",),
)
def stale_price():
    return _target("bazaar-stale-price", _stale_price)


@control(
    "facilitator.bazaar-lists-unpaid-copy",
    "facilitator",
    "Each listing points at the seller's unpaid copy of the resource (its path under /copy)",
    kills=("facilitator.bazaar.no-unpaid-copy",),
)
def lists_unpaid_copy():
    return _target("bazaar-lists-unpaid-copy", _unpaid_copy)
