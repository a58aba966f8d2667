"""The Bazaar cases: what a facilitator's discovery catalogue (x402 ``specs/extensions/bazaar.md``) lists.

Who is judged: the facilitator. It is the one answering ``GET /discovery/resources``, what a buyer
reads before paying, and it builds its catalogue from the listings servers declare and payers echo.
A server's own listing rides in its 402 beside the accepts it lists, so it cannot disagree with
them; the catalogue can (a price, a URL, a listing altered or kept stale), and it is what misleads
a buyer. The cases are ``facilitator.bazaar.*``; they run over HTTP, as every facilitator case.

Rules:

* Before judging, a case lists a resource the way the extension says a listing reaches a
  facilitator: the harness's shop (``BazaarShop``, on loopback) sells a fresh path whose 402 declares
  a listing (``extensions.bazaar``), and a payer pays it through the target, echoing the listing
  (``/verify`` then ``/settle``). Then the catalogue is read, every page of ``/discovery/resources``.
* A facilitator answering 404 to ``/discovery/resources`` keeps no catalogue: the cases are skipped.
  One that lists nothing after the settled listing is skipped too (cataloguing is the extension's
  choice); what it does list is judged.
* Only listed resources on the harness's loopback are fetched (nothing leaves this machine); a
  listing naming another host, or a route template with parameters (``/users/:id``), is noted and
  not fetched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..protocol import ProtocolError, decode_json_header
from ..protocol.bazaar import BAZAAR, http_listing, read_listing, valid_route_template
from .bazaar_kit import SHOP_APP, BazaarShop
from .catalog import case
from .evidence import Recorder
from .facilitator_cases import signed
from .kits import FacilitatorContext

SPEC = "Bazaar extension spec"
PAGE = 100
MAX_PAGES = 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LISTED_PRICE = 1_000


def shop_listing() -> dict[str, Any]:
    """The listing the shop's resources declare: a GET with one query parameter, answering JSON."""
    return http_listing(
        "GET",
        example={"q": "x402"},
        input_schema={"properties": {"q": {"type": "string"}}},
        output={"answer": "listed content"},
    ).to_wire()


@dataclass
class Listed:
    """What a case listed, and the catalogue it then read."""

    url: str
    requirements: dict[str, Any]
    items: list[Any]

    @property
    def ours(self) -> dict[str, Any] | None:
        return next((i for i in self.items if isinstance(i, dict) and i.get("resource") == self.url), None)


async def _catalogue(ctx: FacilitatorContext) -> list[Any]:
    """Every item of ``/discovery/resources`` (all pages); skip when there is no catalogue."""
    items: list[Any] = []
    for page in range(MAX_PAGES):
        response = await ctx.send(
            f"GET /discovery/resources (page {page + 1})",
            "GET",
            f"/discovery/resources?limit={PAGE}&offset={page * PAGE}",
        )
        ctx.check(response is not None, "/discovery/resources: no answer")
        assert response is not None  # checked just above
        if response.status_code in (404, 405) and page == 0:
            ctx.skip(
                f"the facilitator keeps no Bazaar catalogue (/discovery/resources: {response.status_code})"
            )
        ctx.check(response.status_code == 200, f"/discovery/resources answered {response.status_code}")
        answer = ctx.answer(response)
        ctx.check(isinstance(answer, dict), "/discovery/resources answered no JSON object")
        found = answer.get("items")
        ctx.check(isinstance(found, list), f"/discovery/resources: items is {found!r}, not a list")
        items.extend(found)
        total = (answer.get("pagination") or {}).get("total") if isinstance(answer, dict) else None
        if not found or not isinstance(total, int) or len(items) >= total:
            break
    return items


async def list_a_resource(ctx: FacilitatorContext) -> Listed:
    """A fresh shop path listed through the target (see the module's rules), and the catalogue."""
    shop: BazaarShop = ctx.harness.shop
    base = ctx.harness.extra_apps[SHOP_APP]
    path = f"/listed/{ctx.case.id.rsplit('.', 1)[-1]}-{ctx.rng.randrange(10**9)}"
    url = base + path
    requirements = ctx.requirements(amount=LISTED_PRICE)
    listing = shop_listing()
    resource = {
        "url": url,
        "description": "a resource the conformance harness lists",
        "mimeType": "application/json",
    }
    shop.offers[path] = {
        "x402Version": 2,
        "error": "payment required",
        "resource": resource,
        "accepts": [requirements],
        "extensions": {BAZAAR: listing},
    }
    s = signed(ctx, requirements)
    payment = {**s.payment, "resource": resource, "extensions": {BAZAAR: listing}}
    await ctx.call("verify", payment, requirements, label="verify of the payment echoing the listing")
    settled = await ctx.call(
        "settle", payment, requirements, label="settle of the payment echoing the listing"
    )
    answer = ctx.answer(settled)
    ctx.check(
        isinstance(answer, dict) and answer.get("success") is True,
        f"precondition: the listing's payment did not settle: {json.dumps(answer)[:200]}",
    )
    items = await _catalogue(ctx)
    ctx.fact("catalogue_size", len(items))
    listed = Listed(url, requirements, items)
    ctx.fact("our_item", listed.ours)
    if not items:
        ctx.skip("the facilitator's catalogue lists nothing, not even the settled listing")
    return listed


def _fetchable(ctx: FacilitatorContext, item: Any) -> str | None:
    """The URL of ``item`` when it may be fetched (on loopback, no template parameters), else None
    (noted)."""
    url = item.get("resource") if isinstance(item, dict) else None
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        ctx.note(f"{url}: not on loopback, not fetched")
        return None
    if ":" in parts.path:
        ctx.note(f"{url}: a route template with parameters, not fetched")
        return None
    return url


async def _fetch_unpaid(ctx: FacilitatorContext, url: str) -> httpx.Response | None:
    async with httpx.AsyncClient(timeout=10.0) as http:
        return await Recorder(http, ctx.evidence).send(f"unpaid GET of the listed {url}", "GET", url)


def _same_offer(listed: dict, offer: dict) -> bool:
    def low(d: dict, key: str) -> str:
        return str(d.get(key, "")).lower()

    return all(low(listed, k) == low(offer, k) for k in ("scheme", "network", "asset", "payTo")) and str(
        listed.get("amount")
    ) == str(offer.get("amount"))


@case(
    "facilitator.bazaar.listings-well-formed",
    "MUST",
    f"{SPEC} (discovery info, routeTemplate; /discovery/resources)",
    "Every item /discovery/resources lists has a resource URL, accepts, and a bazaar listing whose info "
    "validates against its own schema, of the item's type, with a valid routeTemplate if any",
    kind="spec",
)
async def listings_well_formed(ctx: FacilitatorContext) -> None:
    listed = await list_a_resource(ctx)
    problems = []
    for item in listed.items:
        name = item.get("resource") if isinstance(item, dict) else repr(item)[:80]
        if not isinstance(item, dict) or not isinstance(item.get("resource"), str) or not item["resource"]:
            problems.append(f"{name}: no resource URL")
            continue
        accepts = item.get("accepts")
        if not isinstance(accepts, list) or not accepts:
            problems.append(f"{name}: accepts is {accepts!r}, not a non-empty list")
        raw = (item.get("extensions") or {}).get(BAZAAR) if isinstance(item.get("extensions"), dict) else None
        if raw is None:
            problems.append(f"{name}: no extensions.bazaar listing")
            continue
        try:
            listing = read_listing(raw)
        except ProtocolError as exc:
            problems.append(f"{name}: the listing is invalid: {exc}")
            continue
        if item.get("type") != listing.type:
            problems.append(f"{name}: type {item.get('type')!r}, but its listing is of type {listing.type!r}")
        template = raw.get("routeTemplate") if isinstance(raw, dict) else None
        if template is not None and not valid_route_template(template):
            problems.append(f"{name}: routeTemplate {template!r} is not a valid template")
    ctx.fact("problems", problems)
    ctx.check(not problems, "; ".join(problems)[:600])


@case(
    "facilitator.bazaar.price-matches-402",
    "MUST",
    f"{SPEC} (accepts); core spec 5 (what is paid is what the 402 asks)",
    "Each listed accept of a listed resource is an offer its unpaid 402 makes: same scheme, network, "
    "asset, payee and amount",
    kind="payment",
)
async def price_matches_402(ctx: FacilitatorContext) -> None:
    listed = await list_a_resource(ctx)
    mismatches, judged = [], 0
    for item in listed.items:
        url = _fetchable(ctx, item)
        if url is None:
            continue
        response = await _fetch_unpaid(ctx, url)
        if response is None or response.status_code != 402:
            mismatches.append(
                f"{url}: the unpaid fetch answered {getattr(response, 'status_code', None)}, no 402"
            )
            continue
        try:
            required = decode_json_header(
                response.headers.get("payment-required", ""), where="PAYMENT-REQUIRED"
            )
        except ProtocolError:
            required = ctx.answer(response)
        offers = required.get("accepts") if isinstance(required, dict) else None
        offers = [o for o in offers or () if isinstance(o, dict)]
        judged += 1
        for accept in item.get("accepts") or ():
            if isinstance(accept, dict) and not any(_same_offer(accept, o) for o in offers):
                mismatches.append(
                    f"{url}: lists {accept.get('amount')} {accept.get('asset')} to {accept.get('payTo')} "
                    f"({accept.get('scheme')}, {accept.get('network')}), which its 402 does not offer"
                )
    ctx.fact("resources_judged", judged)
    ctx.fact("mismatches", mismatches)
    ctx.check(not mismatches, "; ".join(mismatches)[:600])
    ctx.check(judged, "no listed resource could be fetched on loopback")


@case(
    "facilitator.bazaar.no-unpaid-copy",
    "MUST",
    f"{SPEC}; core spec 5 (a paid resource is not served unpaid)",
    "No listed resource is served without payment: an unpaid fetch of each listed URL is not a 2xx",
    kind="payment",
)
async def no_unpaid_copy(ctx: FacilitatorContext) -> None:
    listed = await list_a_resource(ctx)
    free, judged = [], 0
    for item in listed.items:
        url = _fetchable(ctx, item)
        if url is None:
            continue
        response = await _fetch_unpaid(ctx, url)
        judged += 1
        if response is not None and 200 <= response.status_code < 300:
            free.append(url)
    ctx.fact("served_unpaid", free)
    ctx.check(not free, f"listed resources served without payment: {', '.join(free)}")
    ctx.check(judged, "no listed resource could be fetched on loopback")
