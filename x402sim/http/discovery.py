"""The Bazaar's client: find paid services through a facilitator's discovery endpoints and rank them.

``discover(facilitator_url, query)`` reads ``/discovery/search`` (with a query) or
``/discovery/resources`` (without), every page up to ``max_items``, turns each listing into a
``Candidate`` and ranks them with ``actors.discovery.choose`` (one ranking for every world).

Rules:

* A listing's price is the lowest amount among its offers on the networks the buyer pays on
  (``networks``; None: any); a listing with no such offer is left out. Its mechanisms are the
  offers' ``scheme/assetTransferMethod`` (the scheme's default method when none is named).
* Reputation is read only when a chain is given (``chain``, an ERC-8004 deployment's, read through
  ``trust.AgentDirectory``) and only for HTTP listings: the service's unpaid request gets its 402,
  whose ``8004-reputation`` declaration names the agent; the reputation is the mean feedback tagged
  ``x402-resource-delivered`` scaled from 0..100 to 0..1. A server declaring an agent whose
  registered wallet is not its payee, or a registry the chain does not hold, is left out; one
  declaring none, or whose 402 cannot be had, has no reputation (None).
* A facilitator that cannot be reached or answers outside the discovery API raises
  ``DiscoveryError`` naming the URL and the problem.
* Only loopback URLs unless the caller has checked otherwise (the CLI's ``--allow-remote``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import httpx

from ..actors.discovery import Candidate, choose
from ..mechanisms import transfer_method_of
from ..protocol import PaymentRequirements, ProtocolError, parse_payment_required
from ..protocol.bazaar import MAX_LIMIT, DiscoveryItem, DiscoveryList, DiscoverySearch
from ..trust.reputation import TAG_DELIVERED, declared_server, pay_to_problem, reputation_of

__all__ = ["DiscoveryError", "candidates_of", "discover", "fetch_listings"]

DEFAULT_MAX_ITEMS = 500
REPUTATION_SCALE = 100.0  # ERC-8004 feedback values are 0..100


class DiscoveryError(Exception):
    """The discovery endpoints could not be read: ``str()`` names the URL and the problem."""


def _get(http: httpx.Client, url: str, params: dict[str, str], model):
    try:
        response = http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"{url}: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        raise DiscoveryError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return model.from_wire(response.content, where=f"{url} answer")
    except ProtocolError as exc:
        raise DiscoveryError(f"{url} answered outside the discovery API: {exc}") from exc


def fetch_listings(
    facilitator_url: str,
    query: str | None = None,
    *,
    type: str | None = None,  # the API's name
    max_items: int = DEFAULT_MAX_ITEMS,
    http: httpx.Client | None = None,
) -> list[DiscoveryItem]:
    """The listings the facilitator has (matching ``query`` when given, of ``type`` http/mcp when
    given), following the pages up to ``max_items``."""
    base = facilitator_url.rstrip("/")
    client = http or httpx.Client(timeout=10.0)
    params: dict[str, str] = {"limit": str(MAX_LIMIT), **({"type": type} if type else {})}
    items: list[DiscoveryItem] = []
    try:
        while len(items) < max_items:
            if query:
                search = _get(client, f"{base}/discovery/search", {**params, "query": query}, DiscoverySearch)
                items += search.resources
                cursor = search.pagination.cursor if search.pagination else None
                if cursor is None or not search.resources:
                    break
                params["cursor"] = cursor
            else:
                listed = _get(
                    client,
                    f"{base}/discovery/resources",
                    {**params, "offset": str(len(items))},
                    DiscoveryList,
                )
                items += listed.items
                if not listed.items or len(items) >= listed.pagination.total:
                    break
    finally:
        if http is None:
            client.close()
    return items[:max_items]


def _offers(item: DiscoveryItem, networks: frozenset[str] | None) -> list[PaymentRequirements]:
    offers = []
    for raw in item.accepts:
        try:
            offer = PaymentRequirements.from_wire(raw)
        except ProtocolError:
            continue  # an offer this client cannot read is not one it can pay
        if networks is None or offer.network in networks:
            offers.append(offer)
    return offers


def candidates_of(items: Iterable[DiscoveryItem], networks: Iterable[str] | None = None) -> list[Candidate]:
    """The ``Candidate`` of each listing payable on ``networks`` (see the module's rules)."""
    allowed = None if networks is None else frozenset(networks)
    found = []
    for item in items:
        offers = _offers(item, allowed)
        listing = item.listing
        if not offers or listing is None:
            continue
        mechanisms = sorted({f"{o.scheme}/{transfer_method_of(o.extra, o.scheme)}" for o in offers})
        found.append(
            Candidate(
                resource=item.resource,
                price=min(o.amount for o in offers),
                mechanisms=tuple(mechanisms),
                tool=listing.tool,
                tags=tuple(item.tags or ()),
                description=item.description or "",
                method=listing.method,
                example=getattr(listing.info.input, "example", None),
            )
        )
    return found


def _reputation(candidate: Candidate, directory: Any, http: httpx.Client) -> tuple[bool, float | None]:
    """(keep it, its reputation) for an HTTP candidate, from the agent its 402 declares."""
    try:
        response = http.request(candidate.method or "GET", candidate.resource)
        if response.status_code != 402:
            return True, None
        required = parse_payment_required(tuple(response.headers.items()), response.content)
        server = declared_server(getattr(required, "extensions", None))
    except (httpx.HTTPError, ProtocolError, ValueError):
        return True, None
    if server is None:
        return True, None
    for offer in required.accepts:
        if pay_to_problem(server, offer.pay_to, directory) is not None:
            return False, None
    mean = reputation_of(directory, server.agent.agent_id, TAG_DELIVERED)
    return True, None if mean is None else max(0.0, min(1.0, mean / REPUTATION_SCALE))


def discover(
    facilitator_url: str,
    query: str | None = None,
    *,
    type: str | None = None,  # the API's name
    rule: str = "cheapest",
    mechanisms: Iterable[str] | None = None,
    max_price: int | None = None,
    min_reputation: float | None = None,
    allowed: Callable[[Candidate], bool] | None = None,
    networks: Iterable[str] | None = None,
    chain: Any = None,
    max_items: int = DEFAULT_MAX_ITEMS,
    http: httpx.Client | None = None,
) -> list[Candidate]:
    """The services the facilitator at ``facilitator_url`` lists (matching ``query``; of ``type``
    http or mcp), that a buyer may take, best first by ``rule`` (``actors.discovery.choose``:
    ``mechanisms``, ``max_price``, ``min_reputation`` and the policy predicate ``allowed`` filter).
    ``chain`` (a chain with the ERC-8004 registries) turns on reputation (the module's rules)."""
    client = http or httpx.Client(timeout=10.0)
    try:
        items = fetch_listings(facilitator_url, query, type=type, max_items=max_items, http=client)
        found = candidates_of(items, networks)
        if chain is not None:
            from ..trust.identity import AgentDirectory

            directory = AgentDirectory(chain)
            reputed = []
            for candidate in found:
                keep, reputation = (
                    (True, None) if candidate.tool else _reputation(candidate, directory, client)
                )
                if keep:
                    reputed.append(replace(candidate, reputation=reputation))
            found = reputed
    finally:
        if http is None:
            client.close()
    return choose(
        found,
        rule,
        mechanisms=mechanisms,
        max_price=max_price,
        min_reputation=min_reputation,
        allowed=allowed,
    )
