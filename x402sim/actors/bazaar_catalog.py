"""The facilitator's Bazaar catalog: what it learns of paid services, and the discovery queries (no I/O).

Rules:

* A listing is learned from a v2 payment whose ``extensions`` echo ``bazaar`` (``learn``), once the
  payment is settled, or registered from a server's 402 (``register``). It is validated first
  (``protocol.bazaar.read_listing``); a rejected listing is not cataloged, and the reason is what
  the facilitator's ``EXTENSION-RESPONSES`` says (``bazaar.status = "rejected"``).
* An entry is keyed by (URL, tool): the resource URL without query or fragment, its path replaced by
  the listing's ``routeTemplate`` when that is valid; the MCP tool's name ("" for HTTP), since one MCP
  endpoint serves many tools. Learning an entry again replaces its listing and resource facts and
  adds the payment's requirements to its ``accepts`` (one per scheme, network, asset, payee and
  transfer method; at most ``MAX_ACCEPTS``, the newest kept).
* ``accepts`` hold the requirements the facilitator was sent (the server's own offer), never the
  payer's copy; the resource facts (URL, description, service name, tags, icon) are the payment's.
  ``serviceName`` and tags are kept when printable ASCII of at most 32 characters (at most 5 tags,
  duplicates by case dropped), ``iconUrl`` when an absolute http(s) URL of at most 2048 characters
  without credentials; otherwise dropped, the listing kept.
* Memory is bounded: at most ``capacity`` entries; the least recently learned one makes room.
* Listing order is by URL then tool, so pages are stable. Search scores each entry against the
  query's words (lowercased runs of letters and digits): a word found in the service name or the
  tool's name counts 3, in a tag 2, in a description or the URL 1 (each word counted once per field);
  entries scoring 0 are left out; best first, ties by URL then tool. Deterministic, no stemming.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..protocol import (
    AnyPaymentPayload,
    AnyRequirements,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ProtocolError,
    ResourceInfo,
    parse_payment_required,
)
from ..protocol.bazaar import (
    BAZAAR,
    BazaarExtension,
    DiscoveryItem,
    DiscoveryList,
    DiscoverySearch,
    ListPagination,
    ListQuery,
    McpInput,
    SearchPagination,
    SearchQuery,
    bazaar_status,
    read_listing,
    valid_route_template,
)
from .server import ResourceServer

__all__ = ["DEFAULT_CAPACITY", "BazaarCatalog", "CatalogEntry", "listing_in"]

DEFAULT_CAPACITY = 1000
MAX_ACCEPTS = 8
_WORD = re.compile(r"[a-z0-9]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,32}")


@dataclass
class CatalogEntry:
    """One cataloged service: its catalog ``url`` and ``tool``, listing, resource facts and offers."""

    url: str
    tool: str
    listing: BazaarExtension
    resource: ResourceInfo
    accepts: dict[tuple[str, ...], PaymentRequirements] = field(default_factory=dict)
    updated: int = 0

    def item(self) -> DiscoveryItem:
        return DiscoveryItem(
            resource=self.url,
            type=self.listing.type,
            x402_version=2,
            accepts=[offer.to_wire() for offer in self.accepts.values()],
            last_updated=datetime.fromtimestamp(self.updated, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            description=self.resource.description,
            mime_type=self.resource.mime_type,
            service_name=self.resource.service_name,
            tags=self.resource.tags,
            icon_url=self.resource.icon_url,
            extensions={BAZAAR: self.listing.to_wire()},
        )

    def matches(self, query: ListQuery) -> bool:
        if query.type is not None and query.type != self.listing.type:
            return False
        if query.extensions is not None and query.extensions != BAZAAR:
            return False  # the only extension a catalog entry carries
        offers = self.accepts.values()
        return (
            (query.pay_to is None or any(o.pay_to.lower() == query.pay_to.lower() for o in offers))
            and (query.scheme is None or any(o.scheme == query.scheme for o in offers))
            and (query.network is None or any(o.network == query.network for o in offers))
        )

    def score(self, words: set[str]) -> int:
        listing_input = self.listing.info.input
        fields = [
            (3, self.resource.service_name or ""),
            (3, self.tool),
            (2, " ".join(self.resource.tags or ())),
            (1, self.resource.description or ""),
            (1, listing_input.description or "" if isinstance(listing_input, McpInput) else ""),
            (1, self.url),
        ]
        return sum(weight * len(words & set(_WORD.findall(text.lower()))) for weight, text in fields)


def listing_in(extensions: dict[str, Any] | None) -> Any:
    """The raw ``bazaar`` entry of ``extensions`` (None: none)."""
    return (extensions or {}).get(BAZAAR)


def _catalog_url(url: str, listing: BazaarExtension) -> str:
    parts = urlsplit(url)
    path = listing.route_template if valid_route_template(listing.route_template) else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path or "", "", ""))


def _sanitized(resource: ResourceInfo) -> ResourceInfo:
    name = (
        resource.service_name
        if resource.service_name and _PRINTABLE.fullmatch(resource.service_name)
        else None
    )
    tags: list[str] = []
    for tag in resource.tags or ():
        if _PRINTABLE.fullmatch(tag) and tag.lower() not in {t.lower() for t in tags} and len(tags) < 5:
            tags.append(tag)
    icon = resource.icon_url
    if icon is not None:
        parts = urlsplit(icon)
        ok = (
            len(icon) <= 2048
            and parts.scheme in ("http", "https")
            and parts.hostname
            and "@" not in parts.netloc
        )
        icon = icon if ok and icon.isprintable() else None
    return resource.model_copy(update={"service_name": name, "tags": tags or None, "icon_url": icon})


class BazaarCatalog:
    """The catalog (see the module's rules); ``capacity`` bounds its entries."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"catalog capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], CatalogEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CatalogEntry]:
        """Every entry, by URL then tool."""
        return [self._entries[key] for key in sorted(self._entries)]

    # -- learning -------------------------------------------------------------------------------

    def judge(self, payload: AnyPaymentPayload) -> dict[str, Any] | None:
        """What ``EXTENSION-RESPONSES`` says of ``payload``'s listing before anything is cataloged:
        None without one, ``rejected`` with the reason, else ``processing`` (cataloged once settled)."""
        if not isinstance(payload, PaymentPayload) or listing_in(payload.extensions) is None:
            return None
        try:
            self._read(payload)
        except ProtocolError as exc:
            return bazaar_status("rejected", str(exc))
        return bazaar_status("processing")

    def learn(
        self, payload: AnyPaymentPayload, requirements: AnyRequirements, now: int
    ) -> dict[str, Any] | None:
        """Catalog the listing a settled ``payload`` echoes; the ``EXTENSION-RESPONSES`` entry (None:
        the payment carries no listing)."""
        if not isinstance(payload, PaymentPayload) or listing_in(payload.extensions) is None:
            return None
        try:
            listing, resource = self._read(payload)
        except ProtocolError as exc:
            return bazaar_status("rejected", str(exc))
        if not isinstance(requirements, PaymentRequirements):
            return bazaar_status("rejected", "a v2 listing paid under v1 requirements")
        self._put(listing, resource, [requirements], now)
        return bazaar_status("success")

    def register(self, required: PaymentRequired, now: int) -> CatalogEntry:
        """Catalog the listing a server's 402 declares (a server registering directly);
        ``ProtocolError`` when it declares none or an invalid one."""
        raw = listing_in(required.extensions)
        if raw is None:
            raise ProtocolError("extensions.bazaar", "the 402 declares no listing")
        return self._put(read_listing(raw), required.resource, required.accepts, now)

    def register_server(self, server: ResourceServer, now: int) -> list[CatalogEntry]:
        """Catalog every listed route of ``server`` (a v2 server), from the 402 it answers."""
        entries = []
        for route in server.routes.values():
            if route.discovery is not None:
                answer = server.challenge(route, 2, "listing")
                required = parse_payment_required(answer.headers, answer.body)
                if isinstance(required, PaymentRequired):
                    entries.append(self.register(required, now))
        return entries

    def _read(self, payload: PaymentPayload) -> tuple[BazaarExtension, ResourceInfo]:
        if payload.resource is None or not payload.resource.url:
            raise ProtocolError("resource.url", "a listing needs the resource it describes")
        return read_listing(listing_in(payload.extensions)), payload.resource

    def _put(
        self, listing: BazaarExtension, resource: ResourceInfo, offers: list[PaymentRequirements], now: int
    ) -> CatalogEntry:
        url = _catalog_url(resource.url, listing)
        key = (url, listing.tool or "")
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = CatalogEntry(url, key[1], listing, _sanitized(resource))
        entry.listing, entry.resource, entry.updated = listing, _sanitized(resource), now
        for offer in offers:
            method = (offer.extra or {}).get("assetTransferMethod", "")
            offer_key = (offer.scheme, offer.network, offer.asset.lower(), offer.pay_to.lower(), str(method))
            entry.accepts.pop(offer_key, None)
            entry.accepts[offer_key] = offer
        while len(entry.accepts) > MAX_ACCEPTS:
            del entry.accepts[next(iter(entry.accepts))]
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry

    # -- queries --------------------------------------------------------------------------------

    def list(self, query: ListQuery | None = None) -> DiscoveryList:
        """A page of the entries ``query`` filters (None: all, first page), by URL then tool."""
        query = query or ListQuery()
        found = [e for e in self.entries() if e.matches(query)]
        page = found[query.offset : query.offset + query.limit]
        return DiscoveryList(
            x402_version=2,
            items=[e.item() for e in page],
            pagination=ListPagination(limit=query.limit, offset=query.offset, total=len(found)),
        )

    def search(self, query: SearchQuery) -> DiscoverySearch:
        """A page of the entries matching ``query``'s words, best first (the module's rules)."""
        words = set(_WORD.findall(query.query.lower()))
        scored = [(e.score(words), e) for e in self.entries() if e.matches(query.filters)]
        ranked = [e for score, e in sorted(scored, key=lambda pair: -pair[0]) if score > 0]
        start = int(query.cursor or 0)
        page = ranked[start : start + query.limit]
        more = start + query.limit < len(ranked)
        return DiscoverySearch(
            x402_version=2,
            resources=[e.item() for e in page],
            partial_results=False,
            pagination=SearchPagination(limit=query.limit, cursor=str(start + query.limit) if more else None),
        )
