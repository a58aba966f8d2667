"""Routes files for ``x402sim serve server``: which routes cost what, in TOML or JSON.

TOML example (JSON has the same shape)::

    # what is sold, and for which token; the CLI can fill network/asset from a chain RPC
    network = "eip155:31337"
    asset = "0x..."            # token address
    asset_name = "USD Coin"    # its EIP-712 domain name and version
    asset_version = "2"
    pay_to = "0x..."           # default recipient

    [[routes]]
    method = "GET"
    path = "/weather"
    price = 1000               # atomic units (1000 = 0.001 USDC)
    description = "Weather now"
    # pay_to = "0x..."         # optional, per route
    # max_timeout_seconds = 300  # how long a payment for it may stay valid (default 300)
    # service_name = "Weather Co"; tags = ["weather"]; icon_url = "https://..."  # told in the 402

    [[routes]]                 # paid through Permit2 (the payer approves Permit2 once, or is
    method = "GET"             # sponsored by the facilitator's gas-sponsoring extensions)
    path = "/report"
    price = 1000
    transfer_method = "permit2"    # "eip3009" (the default for exact) or "permit2"

    [[routes]]                 # upto: the payer signs for at most `price`, is charged after the work
    method = "GET"
    path = "/llm"
    price = 5000               # the maximum
    scheme = "upto"            # "exact" (the default) or "upto" (always paid through Permit2)
    charge = "40%"             # what is charged: atomic units (1500), a percentage of the maximum
                               # ("40%"), dollars ("$0.002"), or "header" (the default): the handler's
                               # or origin's Settlement-Overrides header, else the maximum

    [[routes]]                 # batch-settlement: paid through a payment channel (deposit once,
    method = "GET"             # one signed cumulative voucher per request, claimed in batches)
    path = "/feed"
    price = 100
    scheme = "batch-settlement"
    # transfer_method = "permit2"  # how deposits are paid (default eip3009)
    # min_deposit = 1000         # the least deposit (default 10 x price)
    # withdraw_delay = 900       # seconds a payer's withdrawal waits (900..2592000, default 900)
    # claim_interval = 60        # seconds between claims of its channels (default 60)
    # settle_interval = 120      # seconds between settlements of its receiver (default 120)

    [routes.discovery]         # optional: the route's Bazaar listing, declared in its 402 and
    example = { city = "Paris" }   # cataloged by the facilitator once paid: example query
    input_schema = { properties = { city = { type = "string" } }, required = ["city"] }  # (or body)
    output = { celsius = 12 }      # an example answer; also output_schema, output_type ("json"),
                                   # body_type ("json", "form-data", "text": POST/PUT/PATCH), headers

``scheme``, ``transfer_method`` and ``charge`` may also be given at the top level, as defaults for
the routes that do not name them. The batch-settlement keys are a route's own.

Every problem is one ``RoutesFileError`` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..actors.messages import HttpRequest, HttpResponse
from ..actors.server import DEFAULT_MAX_TIMEOUT_SECONDS, Route, resolve_charge
from ..errors import InputError
from ..protocol import ProtocolError
from ..protocol.bazaar import HttpDeclaration

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
SCHEMES = ("exact", "upto", "batch-settlement")
_CHANNEL_KEYS = ("min_deposit", "withdraw_delay", "claim_interval", "settle_interval")
TRANSFER_METHODS = ("eip3009", "permit2")
FROM_HEADER = "header"  # charge: what the handler's Settlement-Overrides header says
CHARGE_DECIMALS = 6  # a dollar charge is checked against the maximum as a 6-decimals asset (USDC)
_MECHANISM_KEYS = ("scheme", "transfer_method", "charge")
_TOP_KEYS = {"network", "asset", "asset_name", "asset_version", "pay_to", "routes", *_MECHANISM_KEYS}
_ROUTE_KEYS = {
    "method",
    "path",
    "price",
    "description",
    "pay_to",
    "mime_type",
    "max_timeout_seconds",
    "service_name",
    "tags",
    "icon_url",
    "discovery",
    *_MECHANISM_KEYS,
    *_CHANNEL_KEYS,
}


class RoutesFileError(InputError, ValueError):
    """A routes file that cannot be used; the message names file, key and problem."""


@dataclass
class RoutesConfig:
    routes: dict[str, Route]
    network: str | None = None
    asset: str | None = None
    asset_name: str | None = None
    asset_version: str | None = None
    pay_to: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


def read_data_file(path: str | Path, error: type[ValueError]) -> tuple[Any, str]:
    """The data of a TOML or JSON file (JSON by its ``.json`` suffix) and the name it is reported by;
    ``error`` naming the file for one that cannot be read or parsed."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{where}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text") from exc
    is_json = path.suffix.lower() == ".json"
    try:
        return (json.loads(text) if is_json else tomllib.loads(text)), where
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{where}: not valid {'JSON' if is_json else 'TOML'}: {exc}") from None


def load_routes(path: str | Path) -> RoutesConfig:
    return parse_routes(*read_data_file(path, RoutesFileError))


def parse_routes(data: object, where: str = "routes") -> RoutesConfig:
    if not isinstance(data, dict):
        raise RoutesFileError(f"{where}: expected a table of settings with a 'routes' list")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise RoutesFileError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    config = RoutesConfig(routes={}, source=where)
    for key in ("network", "asset", "asset_name", "asset_version", "pay_to"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise RoutesFileError(f"{where}: {key}: expected a string, got {type(value).__name__}")
        setattr(config, key, value)
    for key in ("asset", "pay_to"):
        value = getattr(config, key)
        if value is not None and not _ADDRESS.match(value):
            raise RoutesFileError(f"{where}: {key}: not a 20-byte hex address: {value!r}")
    routes = data.get("routes")
    if not isinstance(routes, list) or not routes:
        raise RoutesFileError(f"{where}: routes: expected a non-empty list of routes")
    for i, entry in enumerate(routes):
        here = f"{where}: routes[{i}]"
        if not isinstance(entry, dict):
            raise RoutesFileError(f"{here}: expected a table with method, path and price")
        unknown = sorted(set(entry) - _ROUTE_KEYS)
        if unknown:
            raise RoutesFileError(f"{here}: unknown key {unknown[0]!r}")
        for key in ("method", "path", "price"):
            if key not in entry:
                raise RoutesFileError(f"{here}: missing {key!r}")
        price = entry["price"]
        if isinstance(price, str) and price.isdigit():
            price = int(price)
        if not isinstance(price, int) or isinstance(price, bool) or price < 0:
            raise RoutesFileError(
                f"{here}: price: expected a whole number of atomic units, got {entry['price']!r}"
            )
        pay_to = entry.get("pay_to")
        if pay_to is not None and (not isinstance(pay_to, str) or not _ADDRESS.match(pay_to)):
            raise RoutesFileError(f"{here}: pay_to: not a 20-byte hex address: {pay_to!r}")
        timeout = entry.get("max_timeout_seconds", DEFAULT_MAX_TIMEOUT_SECONDS)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
            raise RoutesFileError(f"{here}: max_timeout_seconds: expected a positive whole number")
        for key in ("service_name", "icon_url"):
            if not isinstance(entry.get(key, ""), str):
                raise RoutesFileError(f"{here}: {key}: expected a string")
        # the top-level settings are defaults (its charge for upto routes only)
        mechanism = {key: entry.get(key, data.get(key)) for key in _MECHANISM_KEYS}
        if "charge" not in entry and mechanism["scheme"] != "upto":
            mechanism["charge"] = None
        scheme, method, usage = route_mechanism(here, price, **mechanism)
        channel = {key: entry[key] for key in _CHANNEL_KEYS if key in entry}
        for key, value in channel.items():
            if scheme != "batch-settlement":
                raise RoutesFileError(f"{here}: {key}: only a batch-settlement route takes it")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise RoutesFileError(f"{here}: {key}: expected a positive whole number, got {value!r}")
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RoutesFileError(f"{here}: tags: expected a list of strings")
        discovery = _discovery(here, entry.get("discovery"), str(entry["method"]))
        try:
            route = Route(
                f"{entry['method']} {entry['path']}",
                price,
                pay_to=pay_to,
                description=str(entry.get("description", "")),
                mime_type=str(entry.get("mime_type", "application/json")),
                max_timeout_seconds=timeout,
                service_name=entry.get("service_name"),
                tags=tuple(tags),
                icon_url=entry.get("icon_url"),
                scheme=scheme,
                transfer_method=method,
                usage=usage,
                discovery=discovery,
                **channel,
            )
        except (ValueError, TypeError) as exc:
            raise RoutesFileError(f"{here}: {exc}") from exc
        if route.key in config.routes:
            raise RoutesFileError(f"{here}: {route.key} is listed twice")
        config.routes[route.key] = route
    return config


_DISCOVERY_KEYS = (
    "example",
    "input_schema",
    "body_type",
    "headers",
    "output",
    "output_schema",
    "output_type",
)


def _discovery(here: str, table: object, method: str) -> HttpDeclaration | None:
    """A route's ``discovery`` table as its Bazaar declaration, checked by building its listing."""
    if table is None:
        return None
    here = f"{here}: discovery"
    if not isinstance(table, dict):
        raise RoutesFileError(f"{here}: expected a table ({', '.join(_DISCOVERY_KEYS)})")
    unknown = sorted(set(table) - set(_DISCOVERY_KEYS))
    if unknown:
        raise RoutesFileError(f"{here}: unknown key {unknown[0]!r} (known: {', '.join(_DISCOVERY_KEYS)})")
    for key in ("input_schema", "headers", "output_schema"):
        if not isinstance(table.get(key, {}), dict):
            raise RoutesFileError(f"{here}: {key}: expected a table")
    for key in ("body_type", "output_type"):
        if not isinstance(table.get(key, ""), str):
            raise RoutesFileError(f"{here}: {key}: expected a string")
    declaration = HttpDeclaration(**table)
    try:
        declaration.listing(method)
    except ProtocolError as exc:
        raise RoutesFileError(f"{here}: {exc}") from None
    return declaration


def route_mechanism(
    here: str, price: int, *, scheme: object = None, transfer_method: object = None, charge: object = None
) -> tuple[str | None, str | None, Callable[[HttpRequest, HttpResponse], int | str] | None]:
    """A route's scheme, transfer method and upto charge (``usage``) from its settings, checked:
    ``RoutesFileError`` starting with ``here`` names the key and the problem."""
    if scheme is not None and scheme not in SCHEMES:
        raise RoutesFileError(f"{here}: scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
    if transfer_method is not None and transfer_method not in TRANSFER_METHODS:
        raise RoutesFileError(
            f"{here}: transfer_method: expected one of {', '.join(TRANSFER_METHODS)}, got {transfer_method!r}"
        )
    if scheme == "upto" and transfer_method == "eip3009":
        raise RoutesFileError(f"{here}: transfer_method: upto is paid through permit2 only, not eip3009")
    named_scheme = None if scheme is None else str(scheme)
    method = None if transfer_method is None else str(transfer_method)
    if charge is None or charge == FROM_HEADER:
        return named_scheme, method, None
    if scheme != "upto":
        raise RoutesFileError(
            f"{here}: charge: only an upto route is charged after the work (scheme = 'upto')"
        )
    if isinstance(charge, bool) or not isinstance(charge, int | str):
        raise RoutesFileError(
            f"{here}: charge: expected atomic units, 'N%', '$D' or 'header', got {charge!r}"
        )
    try:
        amount = resolve_charge(charge, price, CHARGE_DECIMALS)
    except ValueError as exc:
        raise RoutesFileError(
            f"{here}: charge: {exc} (expected atomic units, 'N%', '$D' or 'header')"
        ) from None
    if amount > price:
        raise RoutesFileError(
            f"{here}: charge: {charge!r} is {amount}, above the route's maximum price {price}"
        )
    fixed: int | str = charge

    def usage(request: HttpRequest, response: HttpResponse) -> int | str:
        return fixed

    return "upto", method, usage


def with_defaults(
    config: RoutesConfig,
    *,
    scheme: str | None = None,
    transfer_method: str | None = None,
    charge: int | str | None = None,
) -> RoutesConfig:
    """``config`` with ``scheme``, ``transfer_method`` and (for upto routes) ``charge`` given to the
    routes that do not say theirs (``serve server --scheme/--transfer-method/--charge``);
    ``RoutesFileError`` naming the option and the route when a combination is wrong."""
    if scheme is None and transfer_method is None and charge is None:
        return config
    routes = {}
    for key, route in config.routes.items():
        chosen = route.scheme or scheme
        named, method, usage = route_mechanism(
            f"--scheme/--transfer-method/--charge for {key}",
            route.price,
            scheme=chosen,
            transfer_method=route.transfer_method or transfer_method,
            charge=charge if route.usage is None and chosen == "upto" else None,
        )
        routes[key] = replace(route, scheme=named, transfer_method=method, usage=route.usage or usage)
    if charge is not None and all(r.scheme != "upto" for r in routes.values()):
        raise RoutesFileError(
            "--charge: no route is upto (give --scheme upto, or scheme = 'upto' in the file)"
        )
    return replace(config, routes=routes)
