"""Server cases: the harness plays the client (and controls the facilitator) against a resource server.

Every case pays with fresh funded payers and judges by what moved on chain around it: the payee's
balance, the ``Transfer`` logs from the payer or to the payee, and ``authorizationState`` of the
nonce signed. A refused payment must leave all three untouched and must not be answered 2xx.

Groups: ``handshake`` (the 402 and its requirements), ``payment`` (valid and invalid payments),
``replay`` (a payment used twice, in turn or at once), ``settle`` (what happens around
``/settle``: failures, lost answers, pending settlements, handler errors, paid redirects, the
``PAYMENT-RESPONSE``), ``headers`` (header hygiene: oversized and repeated payment headers),
``extensions`` (payment-identifier, judged only when the server declares it; the facilitator's
``EXTENSION-RESPONSES`` kept from buyers), ``routes`` (other spellings of the paid path: free
only if they serve something else, charged once when served), ``caching`` (``Cache-Control`` on
402s and paid answers), ``facilitator`` (a facilitator that hangs or answers outside the
protocol), ``flow`` (the advertised ``extra.paymentFlow`` against the order observed on chain).

v1 servers: the handshake cases read the v1 body, payments go in ``X-PAYMENT``; cases about the v2
``accepted`` echo or the ``PAYMENT-REQUIRED`` header skip for a v1 server, and v1-only cases skip
for a v2 one. A server that requires a payment identifier gets a fresh one on every payment the
harness sends (as a compliant client would), so a replay is judged as a replay, never as a retry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import TypeGuard
from urllib.parse import urlsplit

from ..evm.contracts import MULTICALL3_ADDRESS
from ..mechanisms import PAYMENT_FLOWS
from ..protocol import UINT256_LIMIT, V1_NETWORKS, caip2_problem, reason_class
from .catalog import case
from .forge import amount_of, domain_of, header_value, high_s
from .kits import ServerContext

ATOMIC = re.compile(r"0|[1-9][0-9]*")
STANDARD_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
CONCURRENT_COPIES = 5
SETTLES_FIRST = ("upfront", "escrow")  # the flows that settle before the handler runs
OVERSIZED_BYTES = 64 * 1024
# Text that only an unhandled exception puts in an answer (Python, Node, Go, pydantic, zod).
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "NoneType",
    "AttributeError",
    "TypeError",
    "KeyError",
    "object has no attribute",
    "is not subscriptable",
    "Cannot read properties",
    "undefined is not",
    "at Object.",
    "validation error for",
    "nil pointer",
    "goroutine ",
)


# -- reading answers ------------------------------------------------------------------------------


def status_of(response) -> int | None:
    return None if response is None else response.status_code


def served(response) -> bool:
    return response is not None and 200 <= response.status_code < 300


def base64_problem(value: str) -> str | None:
    """Why ``value`` is not standard padded base64 (RFC 4648 section 4), or None."""
    text = value.strip()
    if not text:
        return "empty value"
    if not STANDARD_BASE64.fullmatch(text):
        bad = sorted({c for c in text if not (c.isascii() and (c.isalnum() or c in "+/="))})
        return f"characters outside standard base64: {''.join(bad)[:20]!r} (URL-safe or not base64)"
    if len(text) % 4:
        return f"not padded (length {len(text)} is not a multiple of 4)"
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"not base64: {exc}"
    return None


def decode_document(value: str) -> tuple[object, str | None]:
    """The JSON in a header value, read strictly as UTF-8 (base64 itself leniently: that is judged
    elsewhere); ``(document, problem)``."""
    text = value.strip().translate(str.maketrans("-_", "+/"))
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None, "not base64 at all"
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"the decoded bytes are not UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        return json.loads(decoded), None
    except ValueError as exc:
        return None, f"the decoded text is not JSON: {exc}"


def strings_in(document) -> list[str]:
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [s for k, v in document.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(document, list):
        return [s for item in document for s in strings_in(item)]
    return []


def mojibake(text: str) -> bool:
    """Whether ``text`` is UTF-8 that was read as Latin-1 / cp1252 and encoded again ("CafÃ©")."""
    if text.isascii():
        return False
    for codec in ("cp1252", "latin-1"):
        try:
            repaired = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if repaired != text:
            return True
    return False


def is_int(value: object) -> TypeGuard[int]:
    return type(value) is int


def configured(ctx: ServerContext) -> bool:
    """Whether the harness configured the target (price and payee from its env), rather than its owner."""
    return ctx.target.info.kind not in ("url", "asgi")


def v2_offer(ctx: ServerContext, offer: dict) -> dict:
    """``offer`` when it is a v2 offer; skip the case otherwise (it is about the v2 ``accepted`` echo)."""
    if "amount" not in offer:
        ctx.skip("a v1 server: v1 payments carry no accepted requirements to tamper with")
    return offer


def without_identifier(payment: dict) -> dict:
    """``payment`` without a payment identifier, so that sending it again is judged as a replay (the
    harness adds a fresh identifier when the server requires one)."""
    extensions = dict(payment.get("extensions") or {})
    extensions.pop(ServerContext.PAYMENT_IDENTIFIER, None)
    document = {k: v for k, v in payment.items() if k != "extensions"}
    return {**document, "extensions": extensions} if extensions else document


def handler_body(response) -> bytes:
    return response.content if response is not None else b""


# -- verdicts on chain ------------------------------------------------------------------------------


def not_charged(
    ctx: ServerContext, response, before, payer=None, nonce=None, *, what: str, name: str = ""
) -> None:
    """``response`` is no 2xx, and nothing moved: the payee's balance, the Transfer logs from the payer
    or to the payee, and the authorization's nonce (facts named ``name.*`` when ``name`` is given)."""
    prefix = f"{name}." if name else ""
    parties = [payer.address] if payer is not None else []
    delta, transfers = ctx.moved_since(before, *parties)
    ctx.fact(f"{prefix}status", status_of(response))
    ctx.fact(f"{prefix}payee_delta", delta)
    moved = ctx.transfer_facts(f"{prefix}transfers", transfers)
    used = ctx.fact(f"{prefix}authorization_used", ctx.harness.used(payer.address, nonce)) if nonce else False
    ctx.check(
        not served(response), f"{what} was answered {status_of(response)}: served without a valid payment"
    )
    ctx.check(delta == 0 and not transfers, f"{what} moved funds: payee delta {delta}, transfers {moved}")
    ctx.check(not used, f"{what}: the authorization's nonce was used on chain")


def charged_if_served(ctx: ServerContext, response, before, payers, *, what: str, price: int) -> None:
    """Served means paid exactly once (one Transfer of the price to the payee); not served means nothing
    moved."""
    delta, transfers = ctx.moved_since(before, *(p.address for p in payers))
    ctx.fact(f"{what}.status", status_of(response))
    ctx.fact(f"{what}.payee_delta", delta)
    ctx.transfer_facts(f"{what}.transfers", transfers)
    if served(response):
        ctx.check(
            len(transfers) == 1 and delta == price,
            f"{what}: answered {status_of(response)} with {len(transfers)} transfers and payee delta "
            f"{delta}; served must mean paid exactly once ({price})",
        )
    else:
        ctx.check(
            not transfers and delta == 0,
            f"{what}: answered {status_of(response)} yet {len(transfers)} transfers moved {delta} to the "
            "payee: charged without being served",
        )


async def served_and_paid(ctx: ServerContext, offer=None, *, path=None, label="paid request"):
    """A valid payment that must be served and paid once: the precondition of many cases."""
    if offer is None:
        _, offer = await ctx.offer(path)
    paid = await ctx.paid(offer, path=path, label=label)
    ctx.check(served(paid.response), f"precondition: a valid payment got {status_of(paid.response)}, not 2xx")
    ctx.check(
        len(paid.transfers) == 1 and paid.payee_delta == amount_of(offer),
        f"precondition: a valid payment moved {paid.payee_delta} in {len(paid.transfers)} transfers",
    )
    return paid


# ================================================================================================
# handshake
# ================================================================================================


@case(
    "server.handshake.header-present",
    "MUST",
    "HTTP transport spec v2, PAYMENT-REQUIRED",
    "Unpaid requests to paid routes get 402 with a PAYMENT-REQUIRED header (v2) or a v1 body",
    kind="spec",
)
async def header_present(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    ctx.check(challenge.status == 402, f"an unpaid request got {challenge.status}, not 402")
    ctx.check(challenge.version is not None, "the 402 has neither a PAYMENT-REQUIRED header nor a v1 body")
    for which in ("second", "failing"):  # every other paid route the server may sell
        path = ctx.path(which)
        other = await ctx.challenge(path, label=f"unpaid request to the {which} paid path")
        ctx.fact(f"{which}.status", other.status)
        if other.status == 402:
            ctx.check(
                other.version is not None, f"the 402 of {path} has no PAYMENT-REQUIRED header nor v1 body"
            )


@case(
    "server.handshake.base64-standard",
    "MUST",
    "HTTP transport spec v2 (headers: RFC 4648 base64)",
    "PAYMENT-REQUIRED is standard padded base64 (not URL-safe, not unpadded)",
    kind="spec",
)
async def base64_standard(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    value = challenge.headers.get("payment-required") if challenge.headers is not None else None
    if value is None:
        ctx.skip("no PAYMENT-REQUIRED header (a v1 server answers in the body)")
    problem = ctx.fact("payment_required.base64_problem", base64_problem(value))
    ctx.check(problem is None, f"PAYMENT-REQUIRED is not standard padded base64: {problem}")


@case(
    "server.handshake.utf8-json",
    "MUST",
    "HTTP transport spec v2 (base64 of UTF-8 JSON); x402#865",
    "The requirements decode as UTF-8 JSON, and any non-ASCII text survives the encoding unmangled",
    kind="spec",
)
async def utf8_json(ctx: ServerContext) -> None:
    response = await ctx.send("unpaid request", ctx.endpoint.method, ctx.endpoint.path)
    ctx.check(response is not None, "no answer from the server")
    assert response is not None  # checked just above
    value = response.headers.get("payment-required")
    if value is not None:
        where = "PAYMENT-REQUIRED"
        document, problem = decode_document(value)
    else:
        where = "the v1 body"
        try:
            document, problem = json.loads(response.content.decode("utf-8")), None
        except UnicodeDecodeError as exc:
            document, problem = None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
        except ValueError:
            ctx.skip(f"no PAYMENT-REQUIRED header and no JSON body (answered {response.status_code})")
    ctx.check(problem is None, f"{where}: {problem}")
    ctx.check(isinstance(document, dict), f"{where} is JSON but not an object")
    non_ascii = ctx.fact("non_ascii_text", [s for s in strings_in(document) if not s.isascii()])
    if not non_ascii:
        ctx.note("the requirements hold ASCII text only: checked that they are valid UTF-8 JSON")
    mangled = [s for s in non_ascii if mojibake(s)]
    ctx.check(not mangled, f"{where} holds text encoded twice (UTF-8 read as Latin-1): {mangled[:3]}")


@case(
    "server.handshake.v2-required-fields",
    "MUST",
    "x402 v2 spec, PaymentRequired",
    "The v2 PaymentRequired has x402Version 2, a non-empty accepts list and resource.url",
    kind="spec",
)
async def v2_required_fields(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    if challenge.version != 2:
        ctx.skip("not a v2 server")
    required = challenge.required
    ctx.check(isinstance(required, dict), f"PAYMENT-REQUIRED does not decode to an object: {required}")
    assert isinstance(required, dict)  # checked just above
    ctx.check(
        is_int(required.get("x402Version")) and required["x402Version"] == 2,
        f"x402Version is {required.get('x402Version')!r}, not the JSON number 2",
    )
    accepts = required.get("accepts")
    ctx.check(isinstance(accepts, list) and accepts, f"accepts is {accepts!r}, not a non-empty list")
    resource = required.get("resource")
    ctx.check(isinstance(resource, dict), f"resource is {resource!r}, not an object")
    assert isinstance(resource, dict)  # checked just above
    url = resource.get("url")
    ctx.check(isinstance(url, str) and url, f"resource.url is {url!r}, not a URL string")


@case(
    "server.handshake.v2-accepts-fields",
    "MUST",
    "x402 v2 spec, PaymentRequirements",
    "Each v2 accepts entry has scheme, network, amount, asset, payTo (strings), maxTimeoutSeconds, extra",
    kind="spec",
)
async def v2_accepts_fields(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    if challenge.version != 2:
        ctx.skip("not a v2 server")
    ctx.check(challenge.accepts, "the 402 has no accepts entries")
    for index, entry in enumerate(challenge.accepts):
        ctx.check(isinstance(entry, dict), f"accepts[{index}] is not an object")
        for name in ("scheme", "network", "amount", "asset", "payTo"):
            value = entry.get(name)
            ctx.check(isinstance(value, str) and value, f"accepts[{index}].{name} is {value!r}, not a string")
        timeout = entry.get("maxTimeoutSeconds")
        ctx.check(is_int(timeout), f"accepts[{index}].maxTimeoutSeconds is {timeout!r}, not a JSON integer")
        ctx.check(
            isinstance(entry.get("extra"), dict),
            f"accepts[{index}].extra is {entry.get('extra')!r}, not an object",
        )


@case(
    "server.handshake.caip2-network",
    "MUST",
    "x402 v2 spec (networks are CAIP-2)",
    "Every v2 accepts entry names its network in CAIP-2; the exact offer names the harness's chain",
    kind="spec",
)
async def caip2_network(ctx: ServerContext) -> None:
    challenge, offer = await ctx.offer()
    if challenge.version != 2:
        ctx.skip("not a v2 server (v1 names networks by name)")
    networks = ctx.fact("networks", [e.get("network") for e in challenge.accepts if isinstance(e, dict)])
    for network in networks:
        problem = caip2_problem(network)
        ctx.check(problem is None, f"network {network!r}: {problem}")
    ctx.check(
        offer["network"] == ctx.harness.network,
        f"the exact offer names {offer['network']!r}, not {ctx.harness.network}",
    )


@case(
    "server.handshake.atomic-amount",
    "MUST",
    "x402 v2 spec (amounts in atomic units as decimal strings)",
    "Amounts are decimal integer strings in atomic units: the configured price, not a decimal figure",
    kind="payment",
)
async def atomic_amount(ctx: ServerContext) -> None:
    challenge, offer = await ctx.offer()
    field = "amount" if challenge.version == 2 else "maxAmountRequired"
    for index, entry in enumerate(challenge.accepts):
        value = entry.get(field) if isinstance(entry, dict) else None
        ctx.check(
            isinstance(value, str) and ATOMIC.fullmatch(value) and int(value) < UINT256_LIMIT,
            f"accepts[{index}].{field} is {value!r}, not a decimal integer string",
        )
    amount = ctx.fact("offer.amount", offer.get(field))
    if configured(ctx):
        ctx.check(
            int(amount) == ctx.price,
            f"the offer asks {amount} atomic units; the server was told PRICE_ATOMIC={ctx.price}",
        )


@case(
    "server.handshake.max-timeout-positive",
    "MUST",
    "x402 v2 spec, PaymentRequirements.maxTimeoutSeconds",
    "maxTimeoutSeconds is a positive integer in every accepts entry",
    kind="spec",
)
async def max_timeout_positive(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    ctx.check(challenge.accepts, f"the 402 ({challenge.status}) has no accepts entries")
    for index, entry in enumerate(challenge.accepts):
        value = entry.get("maxTimeoutSeconds") if isinstance(entry, dict) else None
        ctx.check(is_int(value) and value > 0, f"accepts[{index}].maxTimeoutSeconds is {value!r}")


@case(
    "server.handshake.eip712-extra",
    "MUST",
    "exact scheme on EVM (extra.name / extra.version are the token's EIP-712 domain)",
    "The exact offer's extra.name and extra.version are those of the token on chain",
    kind="spec",
)
async def eip712_extra(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    extra = offer.get("extra")
    extra = extra if isinstance(extra, dict) else {}
    name = ctx.fact("chain.name", ctx.harness.chain.name_of(ctx.harness.asset))
    version = ctx.fact("chain.version", ctx.harness.chain.version_of(ctx.harness.asset))
    ctx.fact("offer.extra", extra)
    ctx.check(extra.get("name") == name, f"extra.name is {extra.get('name')!r}; the token says {name!r}")
    ctx.check(
        extra.get("version") == version,
        f"extra.version is {extra.get('version')!r}; the token says {version!r}",
    )


@case(
    "server.handshake.addresses",
    "MUST",
    "exact scheme on EVM (asset and payTo are addresses)",
    "The exact offer's asset and payTo are 20-byte hex addresses; payTo is the configured payee",
    kind="payment",
)
async def addresses(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    for name in ("asset", "payTo"):
        value = offer.get(name)
        ctx.check(isinstance(value, str) and ADDRESS.fullmatch(value), f"{name} is {value!r}, not an address")
    if configured(ctx):
        ctx.check(
            offer["payTo"].lower() == ctx.payee.lower(),
            f"payTo is {offer['payTo']}; the server was told to pay {ctx.payee}",
        )


@case(
    "server.handshake.stable-requirements",
    "STRICT",
    "core spec 5 (the client pays the requirements it was given); the TS SDK server matches accepted deeply",
    "Two unpaid requests get the same accepts: requirements do not change between 402s",
    kind="hardening",
)
async def stable_requirements(ctx: ServerContext) -> None:
    first = await ctx.challenge(label="first unpaid request")
    second = await ctx.challenge(label="second unpaid request")
    ctx.fact("first.accepts", first.accepts)
    ctx.fact("second.accepts", second.accepts)
    ctx.check(first.accepts, f"the 402 ({first.status}) has no accepts entries")
    ctx.check(first.accepts == second.accepts, "the accepts of two 402s for the same route differ")


@case(
    "server.handshake.resource-url",
    "SHOULD",
    "x402 v2 spec, PaymentRequired.resource.url",
    "The 402 names the requested resource: resource.url (v1: the entry's resource) has the requested path",
    kind="advice",
)
async def resource_url(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    if challenge.version == 2:
        resource = challenge.required.get("resource") if isinstance(challenge.required, dict) else None
        url = resource.get("url") if isinstance(resource, dict) else None
    else:
        entry = challenge.accepts[0] if challenge.accepts else {}
        url = entry.get("resource") if isinstance(entry, dict) else None
    ctx.fact("resource.url", url)
    ctx.check(isinstance(url, str), f"the 402 names no resource URL ({url!r})")
    assert isinstance(url, str)  # checked just above
    path = urlsplit(url).path
    ctx.check(path == ctx.endpoint.path, f"resource URL {url!r} names {path!r}, not {ctx.endpoint.path!r}")


@case(
    "server.handshake.v1-body",
    "MUST",
    "x402 v1 spec, PaymentRequirementsResponse",
    "A v1 402 body has x402Version 1 and entries with scheme, network, maxAmountRequired, resource, ...",
    kind="spec",
)
async def v1_body(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    if challenge.version != 1:
        ctx.skip("not a v1 server")
    body = challenge.required
    assert body is not None  # a v1 challenge is read from a JSON object body (read_challenge)
    ctx.check(is_int(body.get("x402Version")) and body["x402Version"] == 1, "x402Version is not the number 1")
    ctx.check(challenge.accepts, "the v1 body has no accepts entries")
    for index, entry in enumerate(challenge.accepts):
        ctx.check(isinstance(entry, dict), f"accepts[{index}] is not an object")
        for name in ("scheme", "network", "asset", "payTo", "resource", "description", "mimeType"):
            ctx.check(isinstance(entry.get(name), str), f"accepts[{index}].{name} is {entry.get(name)!r}")
        amount = entry.get("maxAmountRequired")
        ctx.check(
            isinstance(amount, str) and ATOMIC.fullmatch(amount),
            f"accepts[{index}].maxAmountRequired is {amount!r}, not a decimal integer string",
        )
        ctx.check(
            ":" not in entry["network"], f"accepts[{index}].network {entry['network']!r} is not a v1 name"
        )
        ctx.check(is_int(entry.get("maxTimeoutSeconds")), f"accepts[{index}].maxTimeoutSeconds is no integer")


@case(
    "server.handshake.unpriced-path-free",
    "SHOULD",
    "core spec 5 (only priced resources answer 402)",
    "An unpaid request to a path the server does not sell is not answered 402",
    kind="advice",
)
async def unpriced_path_free(ctx: ServerContext) -> None:
    path = ctx.endpoint.path.rstrip("/") + "-unpriced-probe"
    response = await ctx.send("unpaid request to an unpriced path", ctx.endpoint.method, path)
    ctx.check(response is not None, "no answer")
    assert response is not None  # checked just above
    ctx.fact("status", response.status_code)
    ctx.check(response.status_code != 402, f"{path}, which is not sold, answered 402")


# ================================================================================================
# payment: the valid payment, and every class of invalid one
# ================================================================================================


@case(
    "server.payment.valid-pays-once",
    "MUST",
    "core spec 5 (payment flow)",
    "A valid payment gets 200 and moves exactly the price from payer to payee, in one Transfer",
    kind="payment",
)
async def valid_pays_once(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await ctx.paid(offer)
    ctx.chain_facts(paid)
    ctx.check(
        paid.response is not None and paid.response.status_code == 200,
        f"a valid payment got {paid.response.status_code if paid.response else 'no answer'}, not 200",
    )
    amount = amount_of(offer)
    ctx.check(
        paid.payee_delta == amount and paid.payer_delta == -amount,
        f"payee moved {paid.payee_delta}, payer {paid.payer_delta}; the price is {amount}",
    )
    ctx.check(len(paid.transfers) == 1, f"{len(paid.transfers)} Transfer logs, expected exactly 1")


async def _refused_raw(ctx: ServerContext, value: str, what: str):
    """Send a raw PAYMENT-SIGNATURE value and judge that nothing was served or charged."""
    await ctx.offer()
    before = ctx.snapshot()
    response = await ctx.send_headers(what, [("PAYMENT-SIGNATURE", value)])
    not_charged(ctx, response, before, what=what)
    return response


UNDECODABLE = "%%% this is not base64 {at all} %%%"


@case(
    "server.payment.undecodable-not-served",
    "MUST",
    "HTTP transport spec v2 (malformed payment); x402#2397",
    "An undecodable PAYMENT-SIGNATURE is neither served nor charged",
    kind="payment",
)
async def undecodable_not_served(ctx: ServerContext) -> None:
    await _refused_raw(ctx, UNDECODABLE, "an undecodable payment header")


@case(
    "server.payment.undecodable-status",
    "SHOULD",
    "HTTP transport spec v2 error table (Invalid Payment: malformed payment payload -> 400); x402#2397 "
    "(open; the SDKs answer 402, as for no payment)",
    "An undecodable PAYMENT-SIGNATURE is answered 400, never served or charged",
    kind="advice",
)
async def undecodable_status(ctx: ServerContext) -> None:
    response = await _refused_raw(ctx, UNDECODABLE, "an undecodable payment header")
    ctx.check(response is not None, "no answer to an undecodable payment header")
    ctx.check(response.status_code == 400, f"answered {response.status_code}, not 400")


@case(
    "server.payment.bad-json",
    "MUST",
    "HTTP transport spec v2 (malformed payment); x402#3015",
    "A PAYMENT-SIGNATURE that is base64 of broken JSON is neither served nor charged",
    kind="payment",
)
async def bad_json(ctx: ServerContext) -> None:
    value = base64.b64encode(b'{"x402Version":2,"accepted":{').decode()
    await _refused_raw(ctx, value, "base64 of broken JSON")


MALFORMED = {
    "broken JSON": b'{"x402Version":2,',
    "a JSON array": b"[1,2,3]",
    "JSON null": b"null",
    "an object without payload": b'{"x402Version":2,"accepted":{}}',
    "x402Version as a string": b'{"x402Version":"2","accepted":{},"payload":{}}',
}

MALFORMED_VALUES = {what: base64.b64encode(raw).decode() for what, raw in MALFORMED.items()}


async def _send_unreadable(ctx: ServerContext, values: dict[str, str]) -> dict[str, int | None]:
    """Send each PAYMENT-SIGNATURE value, check that none was served or charged; their statuses."""
    await ctx.offer()
    statuses = {}
    for what, value in values.items():
        before = ctx.snapshot()
        response = await ctx.send_headers(what, [("PAYMENT-SIGNATURE", value)])
        statuses[what] = status_of(response)
        not_charged(ctx, response, before, what=what, name=what)
    ctx.fact("statuses", statuses)
    return statuses


@case(
    "server.payment.malformed-status",
    "SHOULD",
    "HTTP transport spec v2 error table (Invalid Payment: malformed payment payload -> 400); x402#2397, "
    "x402#3015",
    "Malformed payment documents are answered 400, never served, never charged",
    kind="advice",
)
async def malformed_status(ctx: ServerContext) -> None:
    statuses = await _send_unreadable(ctx, MALFORMED_VALUES)
    bad = {what: status for what, status in statuses.items() if status != 400}
    ctx.check(not bad, f"malformed payments answered other than 400: {bad}")


@case(
    "server.payment.malformed-no-5xx",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400; 500 is for internal errors); x402#3015, x402#2397",
    "Undecodable and malformed PAYMENT-SIGNATURE values get a 4xx, never a 5xx, never served or charged",
    kind="no-5xx",
)
async def malformed_no_5xx(ctx: ServerContext) -> None:
    statuses = await _send_unreadable(ctx, {"an undecodable value": UNDECODABLE, **MALFORMED_VALUES})
    bad = {what: status for what, status in statuses.items() if status is None or not 400 <= status < 500}
    ctx.check(not bad, f"unreadable payment headers answered outside 4xx: {bad}")


def _bad_signature(ctx, offer):
    payer, payload = ctx.sign(offer)
    raw = bytearray(bytes.fromhex(payload["signature"][2:]))
    raw[10] ^= 0xFF  # r changes: the signature recovers to someone else, or to nothing
    payload["signature"] = "0x" + raw.hex()
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _high_s(ctx, offer):
    payer, payload = ctx.sign(offer)
    payload["signature"] = high_s(payload["signature"])
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _signer_not_from(ctx, offer):
    other = ctx.harness.funded_account(label="signer")
    payer, payload = ctx.sign(offer, sign_key=other.key)
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _value(delta):
    def build(ctx, offer):
        payer, payload = ctx.sign(offer, value=amount_of(offer) + delta)
        return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]

    return build


def _wrong_recipient(ctx, offer):
    thief = ctx.harness.new_account("thief").address
    payer, payload = ctx.sign(offer, to=thief)
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _accepted(**changes):
    """A payment signed for, and echoing, ``offer`` with ``changes`` (a v1 payment can only lie about
    its scheme and network: it echoes nothing else)."""

    def build(ctx, offer):
        if "amount" not in offer and set(changes) - {"scheme", "network"}:
            v2_offer(ctx, offer)
        accepted = {**offer, **{k: v(ctx, offer) if callable(v) else v for k, v in changes.items()}}
        overrides = {"to": accepted["payTo"]} if "payTo" in changes else {}
        payer, payload = ctx.sign(accepted, **overrides)
        return payer, ctx.payment(accepted, payload), payload["authorization"]["nonce"]

    return build


def _other_network(ctx, offer):
    if "amount" in offer:
        return f"eip155:{ctx.harness.chain_id + 1}"
    return next(
        name
        for name, network in sorted(V1_NETWORKS.items())
        if network.startswith("eip155:") and network != ctx.harness.network
    )


def _wrong_chain_id(ctx, offer):
    payer, payload = ctx.sign(offer, domain=domain_of(offer, chain_id=ctx.harness.chain_id + 1))
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _window(after, before):
    def build(ctx, offer):
        now = ctx.harness.now()
        payer, payload = ctx.sign(offer, valid_after=now + after, valid_before=now + before)
        return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]

    return build


def _unfunded(ctx, offer):
    payer, payload = ctx.sign(offer, ctx.harness.new_account("unfunded"))
    return payer, ctx.payment(offer, payload), payload["authorization"]["nonce"]


def _lower_price(ctx, offer):
    amount = amount_of(offer)
    if amount < 2:
        ctx.skip(f"the price ({amount}) leaves no lower amount to claim")
    return str(amount // 2)


def _thief(ctx, offer):
    return ctx.harness.new_account("thief").address


INVALID_PAYMENTS = (
    (
        "server.payment.bad-signature",
        "exact scheme on EVM (the signature must recover to authorization.from)",
        "A payment whose signature is corrupted is neither served nor charged",
        _bad_signature,
    ),
    (
        "server.payment.signer-not-from",
        "exact scheme on EVM (the signer is authorization.from)",
        "A payment signed by another key than authorization.from is neither served nor charged",
        _signer_not_from,
    ),
    (
        "server.payment.amount-under",
        "exact scheme (value equals the amount)",
        "A payment authorising less than the price is neither served nor charged",
        _value(-1),
    ),
    (
        "server.payment.amount-over",
        "exact scheme (value equals the amount; overpayment is refused too)",
        "A payment authorising more than the price is neither served nor charged",
        _value(+1),
    ),
    (
        "server.payment.wrong-recipient",
        "exact scheme on EVM (authorization.to equals payTo)",
        "A payment whose authorization pays someone else is neither served nor charged",
        _wrong_recipient,
    ),
    (
        "server.payment.wrong-asset",
        "core spec (the server matches accepted against its own offers)",
        "A payment for another contract than the offered token is neither served nor charged",
        _accepted(asset=MULTICALL3_ADDRESS),
    ),
    (
        "server.payment.eoa-asset",
        "x402#2554 (an EOA as asset passes simulation)",
        "A payment naming an address without code as its asset is neither served nor charged",
        _accepted(asset=lambda ctx, offer: ctx.harness.new_account("not-a-token").address),
    ),
    (
        "server.payment.wrong-network",
        "core spec (the server matches accepted against its own offers)",
        "A payment for another network than the offer's is neither served nor charged",
        _accepted(network=_other_network),
    ),
    (
        "server.payment.wrong-chain-id",
        "exact scheme on EVM (the EIP-712 domain's chainId is the network's)",
        "A payment signed over another chain id than the network's is neither served nor charged",
        _wrong_chain_id,
    ),
    (
        "server.payment.wrong-scheme",
        "core spec (the server matches accepted against its own offers)",
        "A payment claiming a scheme the server did not offer is neither served nor charged",
        _accepted(scheme="upto"),
    ),
    (
        "server.payment.expired",
        "EIP-3009 (validBefore)",
        "A payment whose authorization has expired is neither served nor charged",
        _window(-3600, -60),
    ),
    (
        "server.payment.not-yet-valid",
        "EIP-3009 (validAfter)",
        "A payment whose authorization is not valid yet is neither served nor charged",
        _window(3600, 7200),
    ),
    (
        "server.payment.unfunded-payer",
        "exact scheme on EVM (balance check before serving)",
        "A payment from an account without funds is neither served nor charged",
        _unfunded,
    ),
    (
        "server.payment.tampered-accepted",
        "x402 v2 (the facilitator checks the server's requirements, never accepted)",
        "A payment whose accepted claims (and pays) a lower price than offered is neither served nor charged",
        _accepted(amount=_lower_price),
    ),
    (
        "server.payment.tampered-payto",
        "x402 v2 (the facilitator checks the server's requirements, never accepted)",
        "A payment whose accepted names the payer's own payTo (and pays it) is neither served nor charged",
        _accepted(payTo=_thief),
    ),
)


def _refusal_case(build, description):
    async def run(ctx: ServerContext) -> None:
        _, offer = await ctx.offer()
        payer, payment, nonce = build(ctx, offer)
        before = ctx.snapshot()
        response = await ctx.pay(offer, payment, label="invalid payment")
        not_charged(ctx, response, before, payer, nonce, what="the invalid payment")

    run.__doc__ = description
    return run


for _id, _rests, _description, _build in INVALID_PAYMENTS:
    case(_id, "MUST", _rests, _description, kind="payment")(_refusal_case(_build, _description))
del _id, _rests, _description, _build

# The high-s twin pays exactly what the payer signed, so refusing it is hardening, not payment.
_HIGH_S = "A payment carrying the high-s twin of a valid signature is neither served nor charged"
case(
    "server.payment.high-s-signature",
    "STRICT",
    "EIP-2 (low-s signatures); x402#2386, x402#2728 (open: the SDKs leave it to the token)",
    _HIGH_S,
    kind="hardening",
)(_refusal_case(_high_s, _HIGH_S))


def _null_accepted_payment(ctx, offer):
    payer, payload = ctx.sign(offer)
    return payer, {"x402Version": 2, "accepted": None, "payload": payload}, payload["authorization"]["nonce"]


@case(
    "server.payment.null-accepted",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3171 (a null accepted throws)",
    "A v2 payment with accepted: null is neither served nor charged, and does not crash the server (no 5xx)",
    kind="no-5xx",
)
async def null_accepted(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    payer, payment, nonce = _null_accepted_payment(ctx, offer)
    before = ctx.snapshot()
    response = await ctx.pay(offer, payment, label="accepted: null")
    not_charged(ctx, response, before, payer, nonce, what="a payment with accepted: null")
    ctx.check(response is not None and response.status_code < 500, f"answered {status_of(response)}")


@case(
    "server.payment.null-accepted-no-leak",
    "STRICT",
    "x402#3171 (the thrown error's text leaks to the client)",
    "The answer to accepted: null carries no exception text (stack traces, runtime type errors)",
    kind="hardening",
)
async def null_accepted_no_leak(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    _payer, payment, _nonce = _null_accepted_payment(ctx, offer)
    response = await ctx.pay(offer, payment, label="accepted: null")
    ctx.check(response is not None, "no answer")
    texts = [response.content.decode("utf-8", "replace")]
    for name, value in response.headers.items():
        texts.append(value)
        if name.lower() in ("payment-required", "payment-response"):
            texts.append(json.dumps(decode_document(value)[0]))
    found = ctx.fact("leaks", sorted({m for m in LEAK_MARKERS for t in texts if m in t}))
    ctx.check(not found, f"the answer shows exception text: {found}")


@case(
    "server.payment.server-requirements",
    "MUST",
    "x402 v2 (the facilitator checks what the server sends; a server forwarding accepted is exploitable)",
    "/verify and /settle get the server's own requirements (amount, payTo, asset), even when accepted lies",
    kind="payment",
)
async def server_requirements(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    await served_and_paid(ctx, offer, label="valid payment")
    calls = list(ctx.harness.control.calls)
    if not calls:
        ctx.skip("the target called no /verify or /settle at the harness's facilitator")
    ctx.harness.control.calls.clear()
    if "amount" in offer and amount_of(offer) >= 2:
        _payer, payment, _nonce = _accepted(amount=_lower_price)(ctx, offer)
        await ctx.pay(offer, payment, label="payment whose accepted claims half the price")
        calls += ctx.harness.control.calls
    seen = ctx.fact(
        "requirements_sent",
        [
            {"path": c.path, **{k: (c.body.get("paymentRequirements") or {}).get(k) for k in _COMPARED}}
            for c in calls
            if isinstance(c.body, dict)
        ],
    )
    for sent in seen:
        for key in _COMPARED:
            mine, theirs = str(offer.get(key, "")), str(sent.get(key) or "")
            ctx.check(
                mine.lower() == theirs.lower() or (key == "maxAmountRequired" and key not in offer),
                f"{sent['path']} got {key} {theirs!r}; the 402 says {mine!r}",
            )


_COMPARED = ("amount", "maxAmountRequired", "payTo", "asset", "network", "scheme")


@case(
    "server.payment.query-not-free",
    "MUST",
    "core spec 5 (a priced resource is served only when paid)",
    "A query string on the paid path does not bypass the paywall",
    kind="payment",
)
async def query_not_free(ctx: ServerContext) -> None:
    before = ctx.snapshot()
    response = await ctx.send(
        "unpaid request with a query string", ctx.endpoint.method, ctx.endpoint.path + "?x402=probe"
    )
    ctx.fact("status", status_of(response))
    ctx.check(
        not served(response), f"{ctx.endpoint.path}?x402=probe was served unpaid ({status_of(response)})"
    )
    delta, _ = ctx.moved_since(before)
    ctx.check(delta == 0, "the payee's balance changed")


@case(
    "server.payment.path-variants-not-free",
    "STRICT",
    "core spec 5; x402#3036 (paywall bypass through route matching, reference notes section 11)",
    "Variants of the paid path (trailing slash, case, percent-encoding, double slash) are not served unpaid",
    kind="hardening",
)
async def path_variants_not_free(ctx: ServerContext) -> None:
    path = ctx.endpoint.path
    variants = [
        path.rstrip("/") + "/",
        path.upper(),
        "/%" + format(ord(path[1]), "02X") + path[2:],
        "/" + path,
    ]
    statuses = {}
    for variant in dict.fromkeys(v for v in variants if v != path):
        response = await ctx.send(f"unpaid request to {variant}", ctx.endpoint.method, variant)
        statuses[variant] = status_of(response)
    ctx.fact("statuses", statuses)
    free = [v for v, status in statuses.items() if status is not None and 200 <= status < 300]
    ctx.check(not free, f"served unpaid: {free}")


# ================================================================================================
# replay
# ================================================================================================


@case(
    "server.replay.after-settlement",
    "MUST",
    "EIP-3009 (single-use nonce); x402#803",
    "A settled payment sent again is neither served nor charged again",
    kind="payment",
)
async def replay_after_settlement(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await served_and_paid(ctx, offer, label="original payment")
    before = ctx.snapshot()
    response = await ctx.pay(offer, without_identifier(paid.payment), label="replay")
    delta, transfers = ctx.moved_since(before, paid.payer.address)
    ctx.fact("replay.status", status_of(response))
    ctx.transfer_facts("replay.transfers", transfers)
    ctx.check(not served(response), f"the replay was served ({status_of(response)})")
    ctx.check(not transfers and delta == 0, f"the replay moved funds again: {len(transfers)} transfers")


@case(
    "server.replay.concurrent",
    "MUST",
    "EIP-3009 (single-use nonce); x402#803, x402#1805",
    "The same payment sent 5 times at once is served at most once and charged exactly once",
    kind="payment",
)
async def replay_concurrent(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    payer, payload = ctx.sign(offer)
    payment = ctx.payment(offer, payload)
    before = ctx.snapshot()
    ctx.harness.control.verify_barrier = CONCURRENT_COPIES  # every copy verified before any settles
    responses = await asyncio.gather(
        *(ctx.pay(offer, payment, label=f"copy {i + 1}") for i in range(CONCURRENT_COPIES))
    )
    delta, transfers = ctx.moved_since(before, payer.address)
    ctx.fact("statuses", [status_of(r) for r in responses])
    ctx.transfer_facts("transfers", transfers)
    winners = [r for r in responses if served(r)]
    receipts = [ctx.settlement_header(r)[1] for r in winners]
    txs = [d.get("transaction") for d in receipts if isinstance(d, dict)]
    ctx.fact("served_transactions", txs)
    ctx.check(len(txs) == len(set(txs)), f"several answers name the same transaction: {txs}")
    ctx.check(len(winners) <= 1, f"{len(winners)} of {CONCURRENT_COPIES} copies of one payment were served")
    ctx.check(
        len(transfers) == 1 and delta == amount_of(offer),
        f"{len(transfers)} transfers moved {delta}; expected exactly one of {amount_of(offer)}",
    )


@case(
    "server.replay.concurrent-distinct",
    "MUST",
    "core spec 5; x402#398 (one of several concurrent paid requests pays)",
    "Three different payments at once are each served and charged once, each naming its own transaction",
    kind="payment",
)
async def concurrent_distinct(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    signed = [ctx.sign(offer) for _ in range(3)]
    before = ctx.snapshot()
    ctx.harness.control.verify_barrier = len(signed)
    responses = await asyncio.gather(
        *(
            ctx.pay(offer, ctx.payment(offer, payload), label=f"payer {i + 1}")
            for i, (_, payload) in enumerate(signed)
        )
    )
    delta, transfers = ctx.moved_since(before, *(p.address for p, _ in signed))
    ctx.fact("statuses", [status_of(r) for r in responses])
    ctx.transfer_facts("transfers", transfers)
    ctx.check(
        all(served(r) for r in responses), f"not every payment was served: {ctx.evidence.chain['statuses']}"
    )
    ctx.check(
        len(transfers) == 3 and delta == 3 * amount_of(offer),
        f"{len(transfers)} transfers moved {delta}; expected 3 of {amount_of(offer)}",
    )
    payers = {t.from_.lower() for t in transfers}
    ctx.check(
        payers == {p.address.lower() for p, _ in signed}, "the transfers do not come from the three payers"
    )
    txs = [(ctx.settlement_header(r)[1] or {}).get("transaction") for r in responses]
    ctx.fact("transactions", txs)
    named = [t for t in txs if t]
    ctx.check(len(named) == len(set(named)), f"two answers name the same transaction: {txs}")


@case(
    "server.replay.cross-endpoint",
    "MUST",
    "EIP-3009 (single-use nonce); x402#803",
    "A payment settled for one route and replayed on another paid route is neither served nor charged",
    kind="payment",
)
async def cross_endpoint(ctx: ServerContext) -> None:
    second = await ctx.optional_path("second")
    _, offer = await ctx.offer()
    paid = await served_and_paid(ctx, offer, label="payment for the main route")
    before = ctx.snapshot()
    response = await ctx.pay(
        offer, without_identifier(paid.payment), path=second, label="replay on the second route"
    )
    delta, transfers = ctx.moved_since(before, paid.payer.address)
    ctx.fact("replay.status", status_of(response))
    ctx.transfer_facts("replay.transfers", transfers)
    ctx.check(not served(response), f"the replay on {second} was served ({status_of(response)})")
    ctx.check(not transfers and delta == 0, "the replay moved funds again")


# ================================================================================================
# settle
# ================================================================================================


async def _under_settle_mode(ctx: ServerContext, mode: str):
    """A valid payment served normally (its body is the handler's), then another under ``mode``."""
    _, offer = await ctx.offer()
    reference = await served_and_paid(ctx, offer, label="payment settled normally")
    body = ctx.fact("handler_body", handler_body(reference.response).decode("utf-8", "replace")[:500])
    ctx.harness.control.calls.clear()
    ctx.harness.control.settle_mode = mode
    paid = await ctx.paid(offer, label=f"payment whose settlement is {mode}")
    ctx.chain_facts(paid, "payment")
    ctx.fact("status", status_of(paid.response))
    return offer, handler_body(reference.response), paid, body


def _withheld(ctx: ServerContext, paid, body: bytes, why: str) -> None:
    content = handler_body(paid.response)
    ctx.check(not (body and body in content), f"{why}, yet the answer carries the handler's body")
    ctx.check(status_of(paid.response) != 200, f"{why}, yet the answer is 200")


@case(
    "server.settle.body-withheld-on-failure",
    "MUST",
    "core spec 5 (settle failed -> 402, the buffered body dropped); x402#3060",
    "When settlement fails, the handler's body is withheld and nothing is charged",
    kind="payment",
)
async def body_withheld(ctx: ServerContext) -> None:
    _, body, paid, _ = await _under_settle_mode(ctx, "refuse")
    _withheld(ctx, paid, body, "settlement failed")
    ctx.check(not paid.transfers and paid.payee_delta == 0, "funds moved although settlement was refused")


@case(
    "server.settle.failure-response",
    "MUST",
    "HTTP transport spec v2 (PAYMENT-RESPONSE on success and on failure); x402#3223",
    "A failed settlement is answered 402 with a PAYMENT-RESPONSE saying success: false and its errorReason",
    kind="spec",
)
async def failure_response(ctx: ServerContext) -> None:
    _, _, paid, _ = await _under_settle_mode(ctx, "refuse")
    ctx.check(
        status_of(paid.response) == 402,
        f"a failed settlement was answered {status_of(paid.response)}, not 402",
    )
    raw, document = ctx.settlement_header(paid.response)
    ctx.fact("payment_response", document)
    ctx.check(raw is not None, "the 402 after a failed settlement carries no PAYMENT-RESPONSE")
    ctx.check(
        isinstance(document, dict) and document.get("success") is False, f"PAYMENT-RESPONSE is {document}"
    )
    reason = document.get("errorReason")
    ctx.check(isinstance(reason, str) and reason, f"PAYMENT-RESPONSE has no errorReason: {document}")


@case(
    "server.settle.failure-reason-class",
    "SHOULD",
    "HTTP transport spec v2 (the failure example forwards errorReason); x402#3223; reason classes",
    "The errorReason of a failed settlement is the facilitator's (same class), not a generic one",
    kind="advice",
)
async def failure_reason_class(ctx: ServerContext) -> None:
    _, _, paid, _ = await _under_settle_mode(ctx, "refuse")
    answers = [
        c.answer for c in ctx.harness.control.calls if c.path == "/settle" and isinstance(c.answer, dict)
    ]
    if not answers:
        ctx.skip("the target called no /settle at the harness's facilitator")
    given = ctx.fact("facilitator.errorReason", answers[-1].get("errorReason"))
    _, document = ctx.settlement_header(paid.response)
    said = ctx.fact("server.errorReason", document.get("errorReason") if isinstance(document, dict) else None)
    ctx.fact("server.reason_class", reason_class(said).value)
    ctx.check(
        reason_class(said) is reason_class(given),
        f"the server says {said!r} (class {reason_class(said).value}); the facilitator said {given!r}",
    )


@case(
    "server.settle.handler-error-not-settled",
    "MUST",
    "core spec 5 (a handler status >= 400 means no settlement); x402#664, x402#721",
    "When the handler fails (500), the payment is not settled: no /settle call, no transfer "
    "(unless the offer declares a flow that settles first)",
    kind="payment",
)
async def handler_error_not_settled(ctx: ServerContext) -> None:
    failing = await ctx.optional_path("failing")
    _, offer = await ctx.offer(failing)
    flow = (offer.get("extra") or {}).get("paymentFlow")
    if flow in SETTLES_FIRST:
        ctx.skip(f"the offer declares paymentFlow {flow}: it settles before the handler runs")
    ctx.harness.control.calls.clear()
    paid = await ctx.paid(offer, path=failing, label="payment for a failing handler")
    ctx.chain_facts(paid)
    settles = ctx.fact("settle_calls", ctx.harness.control.count("/settle"))
    ctx.fact("status", status_of(paid.response))
    ctx.check(not served(paid.response), f"the failing handler's route answered {status_of(paid.response)}")
    ctx.check(settles == 0, f"/settle was called {settles} times for a request whose handler failed")
    ctx.check(not paid.transfers and paid.payee_delta == 0, "the payer was charged for a failed request")
    ctx.check(not ctx.harness.used(paid.payer.address, paid.nonce), "the authorization was used on chain")


@case(
    "server.settle.response-decodes",
    "MUST",
    "HTTP transport spec v2, PAYMENT-RESPONSE",
    "A served payment carries PAYMENT-RESPONSE: standard base64 of UTF-8 JSON saying success: true",
    kind="spec",
)
async def response_decodes(ctx: ServerContext) -> None:
    paid = await served_and_paid(ctx)
    raw, _ = ctx.settlement_header(paid.response)
    ctx.check(raw is not None, "the 200 carries no PAYMENT-RESPONSE")
    assert raw is not None  # checked just above
    problem = ctx.fact("base64_problem", base64_problem(raw))
    ctx.check(problem is None, f"PAYMENT-RESPONSE is not standard padded base64: {problem}")
    document, problem = decode_document(raw)
    ctx.fact("payment_response", document)
    ctx.check(problem is None, f"PAYMENT-RESPONSE: {problem}")
    ctx.check(
        isinstance(document, dict) and document.get("success") is True, f"PAYMENT-RESPONSE says {document}"
    )


@case(
    "server.settle.response-transaction",
    "MUST",
    "HTTP transport spec v2, SettleResponse.transaction",
    "PAYMENT-RESPONSE names a mined, successful transaction carrying the payer's Transfer of the price",
    kind="spec",
)
async def response_transaction(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await served_and_paid(ctx, offer)
    _, document = ctx.settlement_header(paid.response)
    tx = document.get("transaction") if isinstance(document, dict) else None
    ctx.fact("transaction", tx)
    ctx.check(
        isinstance(tx, str) and TX_HASH.fullmatch(tx), f"PAYMENT-RESPONSE names no transaction hash: {tx!r}"
    )
    assert isinstance(tx, str)  # checked just above
    receipt = ctx.harness.receipt(tx)
    ctx.fact("receipt.success", receipt.success if receipt else None)
    ctx.check(receipt is not None, f"transaction {tx} is not on chain")
    ctx.check(receipt.success, f"transaction {tx} reverted")
    moved = ctx.fact(
        "receipt.transfers",
        [{"from": t.from_, "to": t.to, "value": t.value, "token": t.token} for t in receipt.transfers()],
    )
    ctx.check(
        any(
            t["from"].lower() == paid.payer.address.lower()
            and t["to"].lower() == ctx.payee.lower()
            and t["value"] == amount_of(offer)
            and t["token"].lower() == offer["asset"].lower()
            for t in moved
        ),
        f"transaction {tx} carries no Transfer of {amount_of(offer)} from the payer to the payee: {moved}",
    )


@case(
    "server.settle.response-payer",
    "SHOULD",
    "HTTP transport spec v2, SettleResponse.payer (required in v1)",
    "PAYMENT-RESPONSE of a served payment names the payer",
    kind="advice",
)
async def response_payer(ctx: ServerContext) -> None:
    paid = await served_and_paid(ctx)
    _, document = ctx.settlement_header(paid.response)
    payer = ctx.fact("payer", document.get("payer") if isinstance(document, dict) else None)
    ctx.check(
        isinstance(payer, str) and payer.lower() == paid.payer.address.lower(),
        f"PAYMENT-RESPONSE names payer {payer!r}, not {paid.payer.address}",
    )


@case(
    "server.settle.response-network",
    "MUST",
    "HTTP transport spec v2, SettleResponse.network",
    "PAYMENT-RESPONSE of a served payment names the offer's network",
    kind="spec",
)
async def response_network(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await served_and_paid(ctx, offer)
    _, document = ctx.settlement_header(paid.response)
    network = ctx.fact("network", document.get("network") if isinstance(document, dict) else None)
    ctx.check(
        network == offer["network"], f"PAYMENT-RESPONSE names network {network!r}, not {offer['network']}"
    )


@case(
    "server.settle.pending-not-served",
    "MUST",
    "core spec 5 (serve only after settlement succeeded); x402#1062",
    "On settlement_pending (tx sent, not confirmed) the body is withheld and the payment settles once",
    kind="payment",
)
async def pending_not_served(ctx: ServerContext) -> None:
    await _withheld_and_settled_once(ctx, "pending", "settlement was still pending")


@case(
    "server.settle.pending-names-transaction",
    "STRICT",
    "x402#2294 (settlement_pending with the transaction hash); x402#1062",
    "The answer to a pending settlement carries PAYMENT-RESPONSE naming the transaction the facilitator sent",
    kind="hardening",
)
async def pending_names_transaction(ctx: ServerContext) -> None:
    _, _, paid, _ = await _under_settle_mode(ctx, "pending")
    sent = [
        c.answer.get("transaction")
        for c in ctx.harness.control.calls
        if c.path == "/settle" and isinstance(c.answer, dict)
    ]
    if not sent:
        ctx.skip("the target called no /settle at the harness's facilitator")
    ctx.fact("facilitator.transaction", sent[0])
    raw, document = ctx.settlement_header(paid.response)
    ctx.fact("payment_response", document)
    ctx.check(raw is not None, "the answer to a pending settlement carries no PAYMENT-RESPONSE")
    named = document.get("transaction") if isinstance(document, dict) else None
    ctx.check(
        isinstance(named, str) and named.lower() == str(sent[0]).lower(),
        f"PAYMENT-RESPONSE names {named!r}; the facilitator sent {sent[0]}",
    )
    assert isinstance(named, str)  # checked just above
    receipt = ctx.harness.receipt(named)
    ctx.check(receipt is not None and receipt.success, f"{named} is not a successful transaction on chain")


@case(
    "server.settle.lost-answer-not-served",
    "MUST",
    "core spec 5; x402#452, x402#808 (settled, but the answer was lost)",
    "When /settle settles but its answer is lost (500), the body is withheld and the payer is charged once",
    kind="payment",
)
async def lost_answer_not_served(ctx: ServerContext) -> None:
    await _withheld_and_settled_once(ctx, "lose", "the settlement's answer was lost")


async def _withheld_and_settled_once(ctx: ServerContext, mode: str, why: str) -> None:
    """Under a facilitator that settles but answers ``mode``, the body is withheld and exactly one
    transfer of the price reaches the payee."""
    offer, body, paid, _ = await _under_settle_mode(ctx, mode)
    _withheld(ctx, paid, body, why)
    ctx.check(
        len(paid.transfers) == 1 and paid.payee_delta == amount_of(offer),
        f"{len(paid.transfers)} transfers moved {paid.payee_delta}; expected exactly one settlement",
    )


@case(
    "server.settle.lost-answer-not-resent",
    "STRICT",
    "x402#452 (a resent /settle surfaces the used authorization as a failure)",
    "When /settle's answer is lost, the server does not send the same settlement again",
    kind="hardening",
)
async def lost_answer_not_resent(ctx: ServerContext) -> None:
    await _under_settle_mode(ctx, "lose")
    settles = ctx.fact("settle_calls", ctx.harness.control.count("/settle"))
    if settles == 0:
        ctx.skip("the target called no /settle at the harness's facilitator")
    ctx.check(settles == 1, f"/settle was sent {settles} times for one payment")


# ================================================================================================
# headers
# ================================================================================================


@case(
    "server.headers.no-response-on-402",
    "SHOULD",
    "HTTP transport spec v2 (PAYMENT-RESPONSE reports a settlement)",
    "A plain 402 to an unpaid request carries no PAYMENT-RESPONSE (nothing was settled)",
    kind="advice",
)
async def no_response_on_402(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    ctx.check(challenge.status == 402, f"an unpaid request got {challenge.status}, not 402")
    present = [h for h in ("payment-response", "x-payment-response") if h in challenge.headers]
    ctx.check(not present, f"the plain 402 carries {present}")


def _oversized_payment(ctx, offer):
    payer, payload = ctx.sign(offer)
    payment = ctx.complete(ctx.payment(offer, payload))
    padded = {**payment, "padding": "x" * (OVERSIZED_BYTES * 3 // 4)}
    return payer, padded, payload["authorization"]["nonce"]


@case(
    "server.headers.oversized",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); reference notes section 7 (oversized headers)",
    "A 64 KiB PAYMENT-SIGNATURE gets no 5xx, is served only if paid once, and the server keeps answering",
    kind="no-5xx",
)
async def oversized(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    payer, payment, _nonce = _oversized_payment(ctx, offer)
    before = ctx.snapshot()
    response = await ctx.pay(offer, payment, label="64 KiB payment header", complete=False)
    ctx.check(response is None or response.status_code < 500, f"a 64 KiB header got {status_of(response)}")
    charged_if_served(ctx, response, before, [payer], what="oversized", price=amount_of(offer))
    after = await ctx.challenge(label="unpaid request after the oversized one")
    ctx.check(after.status == 402, f"after the oversized header the server answers {after.status}, not 402")


@case(
    "server.headers.oversized-refused",
    "STRICT",
    "reference notes section 7 (oversized headers); the SDK codecs bound header sizes",
    "A 64 KiB PAYMENT-SIGNATURE is refused: neither served nor charged",
    kind="hardening",
)
async def oversized_refused(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    payer, payment, nonce = _oversized_payment(ctx, offer)
    before = ctx.snapshot()
    response = await ctx.pay(offer, payment, label="64 KiB payment header", complete=False)
    not_charged(ctx, response, before, payer, nonce, what="a 64 KiB payment header")


@case(
    "server.headers.duplicate-valid-invalid",
    "MUST",
    "RFC 9110 (repeated fields); core spec 5",
    "Two PAYMENT-SIGNATURE headers, one valid and one not (either order): served only if paid, never twice",
    kind="payment",
)
async def duplicate_valid_invalid(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    for order in ("valid first", "invalid first"):
        payer, payload = ctx.sign(offer)
        forger, bad, _ = _bad_signature(ctx, offer)
        good = ctx.header_for(ctx.payment(offer, payload))
        values = [
            ctx.complete(ctx.payment(offer, payload)),
            ctx.complete(bad),
        ]
        if order == "invalid first":
            values.reverse()
        before = ctx.snapshot()
        response = await ctx.send_headers(order, [(good, header_value(v)) for v in values])
        charged_if_served(ctx, response, before, [payer, forger], what=order, price=amount_of(offer))


@case(
    "server.headers.duplicate-two-valid",
    "MUST",
    "RFC 9110 (repeated fields); core spec 5",
    "Two different valid PAYMENT-SIGNATURE headers in one request: at most one charged, and only if served",
    kind="payment",
)
async def duplicate_two_valid(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    signed = [ctx.sign(offer) for _ in range(2)]
    documents = [ctx.complete(ctx.payment(offer, payload)) for _, payload in signed]
    before = ctx.snapshot()
    response = await ctx.send_headers(
        "two valid payments", [(ctx.header_for(d), header_value(d)) for d in documents]
    )
    charged_if_served(ctx, response, before, [p for p, _ in signed], what="two valid", price=amount_of(offer))


# ================================================================================================
# extensions: payment-identifier
# ================================================================================================


def _declared(ctx: ServerContext) -> dict:
    declared = ctx.identifier_declaration
    if declared is None:
        ctx.skip("the server does not declare the payment-identifier extension")
    return declared


@case(
    "server.extensions.payment-id-declaration",
    "MUST",
    "payment-identifier extension (declaration: info.required boolean, schema)",
    "A declared payment-identifier extension has info.required (boolean) and a schema object",
    kind="spec",
)
async def payment_id_declaration(ctx: ServerContext) -> None:
    await ctx.offer()
    declared = ctx.fact("declaration", _declared(ctx))
    info = declared.get("info")
    ctx.check(isinstance(info, dict), f"info is {info!r}, not an object")
    ctx.check(
        isinstance(info.get("required"), bool), f"info.required is {info.get('required')!r}, not a boolean"
    )
    ctx.check(isinstance(declared.get("schema"), dict), "the declaration has no schema object")


@case(
    "server.extensions.payment-id-cached",
    "SHOULD",
    "payment-identifier extension (same id, same payload: the cached response)",
    "A payment resent with the same id and payload gets the first answer again, and is not charged again",
    kind="advice",
)
async def payment_id_cached(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    _declared(ctx)
    payer, payload = ctx.sign(offer)
    payment = ctx.with_payment_id(ctx.payment(offer, payload))
    before = ctx.snapshot()
    first = await ctx.pay(offer, payment, label="payment with an id", complete=False)
    charged_if_served(ctx, first, before, [payer], what="first", price=amount_of(offer))
    ctx.check(served(first), f"precondition: the payment with an id got {status_of(first)}")
    middle = ctx.snapshot()
    again = await ctx.pay(offer, payment, label="same id, same payload", complete=False)
    delta, transfers = ctx.moved_since(middle, payer.address)
    ctx.fact("again.status", status_of(again))
    ctx.transfer_facts("again.transfers", transfers)
    ctx.check(not transfers and delta == 0, "the resend was charged again")
    ctx.check(status_of(again) in (200, 304), f"the resend got {status_of(again)}, not the cached answer")
    if status_of(again) == 200:
        ctx.check(again.content == first.content, "the resend's body differs from the first answer's")
        first_tx = (ctx.settlement_header(first)[1] or {}).get("transaction")
        again_tx = (ctx.settlement_header(again)[1] or {}).get("transaction")
        ctx.check(first_tx == again_tx, f"the resend names transaction {again_tx}, the first {first_tx}")


@case(
    "server.extensions.payment-id-conflict",
    "SHOULD",
    "payment-identifier extension (same id, different payload: 409)",
    "Another payment under an id already used is answered 409 and not charged",
    kind="advice",
)
async def payment_id_conflict(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    _declared(ctx)
    payment_id = ctx.new_payment_id()
    payer, payload = ctx.sign(offer)
    first = await ctx.pay(
        offer,
        ctx.with_payment_id(ctx.payment(offer, payload), payment_id),
        label="first payment",
        complete=False,
    )
    ctx.check(served(first), f"precondition: the payment with an id got {status_of(first)}")
    _, other = ctx.sign(offer, payer)
    before = ctx.snapshot()
    response = await ctx.pay(
        offer,
        ctx.with_payment_id(ctx.payment(offer, other), payment_id),
        label="same id, new payload",
        complete=False,
    )
    not_charged_nonce = other["authorization"]["nonce"]
    ctx.fact("status", status_of(response))
    delta, transfers = ctx.moved_since(before, payer.address)
    ctx.transfer_facts("transfers", transfers)
    ctx.check(not transfers and delta == 0, "the second payment under the same id was charged")
    ctx.check(not ctx.harness.used(payer.address, not_charged_nonce), "the second authorization was used")
    ctx.check(status_of(response) == 409, f"same id with another payload got {status_of(response)}, not 409")


@case(
    "server.extensions.payment-id-required",
    "SHOULD",
    "payment-identifier extension (required: true, no id: 400)",
    "When the server requires an id, a payment without one is answered 400 and not charged",
    kind="advice",
)
async def payment_id_required(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    _declared(ctx)
    if not ctx.identifier_required:
        ctx.skip("the server declares payment-identifier as optional")
    payer, payload = ctx.sign(offer)
    before = ctx.snapshot()
    response = await ctx.pay(
        offer, ctx.payment(offer, payload), label="payment without an id", complete=False
    )
    not_charged(
        ctx, response, before, payer, payload["authorization"]["nonce"], what="a payment without an id"
    )
    ctx.check(
        status_of(response) == 400, f"a payment without the required id got {status_of(response)}, not 400"
    )


@case(
    "server.extensions.payment-id-malformed",
    "SHOULD",
    "payment-identifier extension (id: 16-128 characters of A-Z a-z 0-9 _ -)",
    "A payment carrying a malformed id is answered 400 and not charged",
    kind="advice",
)
async def payment_id_malformed(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    _declared(ctx)
    payer, payload = ctx.sign(offer)
    payment = ctx.with_payment_id(ctx.payment(offer, payload), "short id!")
    before = ctx.snapshot()
    response = await ctx.pay(offer, payment, label="payment with a malformed id", complete=False)
    not_charged(
        ctx, response, before, payer, payload["authorization"]["nonce"], what="a payment with a malformed id"
    )
    ctx.check(status_of(response) == 400, f"a malformed id got {status_of(response)}, not 400")


# ================================================================================================
# routes: other spellings of the paid path
# ================================================================================================


def _letter(path: str) -> int:
    """The index of the first letter of ``path`` (the case skips when it has none)."""
    return next((i for i, c in enumerate(path) if c.isalpha()), -1)


def _escaped(path: str, i: int, twice: bool = False) -> str:
    """``path`` with its ``i``-th character percent-encoded (twice: ``%25`` then the hex)."""
    return path[:i] + ("%25" if twice else "%") + format(ord(path[i]), "02X") + path[i + 1 :]


def _encoded(path: str, i: int) -> list[str]:
    rest = path[1:]
    return [
        _escaped(path, i),
        _escaped(path, i, twice=True),
        "/%2F" + rest,
        "/%5C" + rest,
        "/%252F" + rest,
        path.rstrip("/") + "%2F",
    ]


def _dot_segments(path: str, i: int) -> list[str]:
    return [
        "/." + path,
        "/x402-probe/.." + path,
        path.rstrip("/") + "/.",
        path.rstrip("/") + "/x402-probe/..",
    ]


def _slashes(path: str, i: int) -> list[str]:
    return [path.rstrip("/") + "/", "/" + path, path.rstrip("/") + "//", path.replace("/", "//")]


def _case(path: str, i: int) -> list[str]:
    return [path.upper(), path[:i] + path[i].swapcase() + path[i + 1 :]]


def _params(path: str, i: int) -> list[str]:
    return [path + ";", path + ";x402=probe"]


def _control_chars(path: str, i: int) -> list[str]:
    return [path + "%0A", path + "%0D", path + "%0D%0A", path + "%00"]


def _spellings(ctx: ServerContext, family) -> list[str]:
    path = ctx.endpoint.path
    i = _letter(path)
    if i < 0:
        ctx.skip(f"the paid path {path!r} has no letter to spell otherwise")
    return [s for s in dict.fromkeys(family(path, i)) if s != path]


def _settled_by_status(ctx: ServerContext, response, before, payer, nonce, price: int, what: str) -> None:
    """A 2xx is charged exactly once (one Transfer of the price, the nonce used); a 3xx at most once
    (a redirect may be settled like a 2xx); anything else is charged nothing."""
    status = status_of(response)
    delta, transfers = ctx.moved_since(before, payer.address)
    used = ctx.harness.used(payer.address, nonce)
    ctx.fact(
        f"{what}.paid", {"status": status, "payee_delta": delta, "transfers": len(transfers), "used": used}
    )
    once = len(transfers) == 1 and delta == price and used
    nothing = not transfers and delta == 0 and not used
    if served(response):
        ctx.check(
            once,
            f"{what}, paid, was answered {status} with {len(transfers)} transfers moving {delta}: "
            f"served must mean charged exactly once ({price})",
        )
    elif status is not None and 300 <= status < 400:
        ctx.check(
            once or nothing,
            f"{what}, paid, was redirected ({status}) and charged {delta} in {len(transfers)} transfers",
        )
    else:
        ctx.check(
            nothing,
            f"{what}, paid, was answered {status} yet charged {delta} in {len(transfers)} transfers "
            f"(nonce used: {used})",
        )


async def _spellings_not_free(ctx: ServerContext, family) -> None:
    """Each spelling of the paid path: unpaid, never answered 2xx with the paid body; paid with a fresh
    valid payment, a 2xx is charged exactly once and a refusal nothing."""
    spellings = _spellings(ctx, family)
    _, offer = await ctx.offer()
    paid_body = handler_body(
        (await served_and_paid(ctx, offer, label="paid request to the paid path")).response
    )
    statuses: dict[str, int | None] = ctx.fact("unpaid_statuses", {})  # filled in as they come
    for spelling in spellings:
        before = ctx.snapshot()
        response = await ctx.send_target("unpaid request", spelling)
        statuses[spelling] = status_of(response)
        delta, _ = ctx.moved_since(before)
        ctx.check(
            not (served(response) and response.content == paid_body),
            f"{spelling!r} was answered {status_of(response)} with the paid content, unpaid",
        )
        ctx.check(delta == 0, f"an unpaid request to {spelling!r} moved {delta} to the payee")
        payer, payload = ctx.sign(offer)
        payment = ctx.complete(ctx.payment(offer, payload))
        before = ctx.snapshot()
        answer = await ctx.send_target(
            "paid request", spelling, headers={ctx.header_for(payment): header_value(payment)}
        )
        nonce = payload["authorization"]["nonce"]
        _settled_by_status(ctx, answer, before, payer, nonce, amount_of(offer), spelling)


ROUTE_FAMILIES = (
    (
        "encoded",
        "bug",
        "core spec 5; x402#2372, x402#3044, x402#3073, x402#3502 (encoded separators)",
        "Percent-encoded spellings (%70, %2570, %2F, %5C, %252F) of the paid path are not free",
        _encoded,
    ),
    (
        "dot-segments",
        "payment",
        "core spec 5 (served only when paid); RFC 3986 5.2.4 (dot segments)",
        "Spellings with . and .. segments that come back to the paid path are not free",
        _dot_segments,
    ),
    (
        "slashes",
        "bug",
        "core spec 5; x402#3044 (trailing slash); the SDKs' matchers collapse // and strip a final /",
        "Spellings of the paid path with a trailing slash or doubled slashes are not free",
        _slashes,
    ),
    (
        "case",
        "payment",
        "core spec 5; the SDKs' route matchers ignore letter case",
        "Spellings of the paid path in other letter case are not free",
        _case,
    ),
    (
        "params",
        "payment",
        "core spec 5; RFC 3986 3.3 (; parameters in a path segment)",
        "Spellings of the paid path with ; parameters are not free",
        _params,
    ),
    (
        "control-chars",
        "bug",
        "core spec 5; x402#3036, x402#3055, x402#3100, x402#3116 (route-matching bypasses)",
        "Spellings of the paid path ending in an encoded line feed, carriage return or NUL are not free",
        _control_chars,
    ),
)


def _route_case(name: str, kind: str, rests_on: str, description: str, family) -> None:
    async def run(ctx: ServerContext) -> None:
        await _spellings_not_free(ctx, family)

    run.__name__ = f"routes_{name.replace('-', '_')}"
    case(f"server.routes.{name}-not-free", "MUST", rests_on, description, kind=kind)(run)


for _family in ROUTE_FAMILIES:
    _route_case(*_family)


# ================================================================================================
# caching
# ================================================================================================


@case(
    "server.caching.no-store-402",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026); "
    "x402#2990 (402 answers are not stored); the 2026 SDKs send Cache-Control: no-store",
    "A 402 carries Cache-Control with no-store",
    kind="advice",
)
async def no_store_402(ctx: ServerContext) -> None:
    challenge = await ctx.challenge()
    ctx.check(challenge.status == 402, f"an unpaid request got {challenge.status}, not 402")
    value = ctx.fact("cache_control", challenge.headers.get("cache-control"))
    ctx.check("no-store" in _directives_of(value), f"the 402's Cache-Control is {value!r}, without no-store")


@case(
    "server.caching.private-paid",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026); "
    "x402#2990 (a paid answer is for its buyer only); the 2026 SDKs add private",
    "A served payment's answer carries Cache-Control with private (or no-store)",
    kind="advice",
)
async def private_paid(ctx: ServerContext) -> None:
    paid = await served_and_paid(ctx)
    value = ctx.fact("cache_control", paid.response.headers.get("cache-control"))
    ctx.check(
        _directives_of(value) & {"private", "no-store"},
        f"the paid answer's Cache-Control is {value!r}: a shared cache may serve it to others",
    )


def _directives_of(value: str | None) -> set[str]:
    return {d.strip().split("=", 1)[0].lower() for d in (value or "").split(",") if d.strip()}


# ================================================================================================
# facilitator: a facilitator that hangs or answers outside the protocol
# ================================================================================================

HUNG_SLACK = 3.0  # seconds past FACILITATOR_TIMEOUT_SECONDS a server may take to answer
AFTER_RELEASE = 10.0  # seconds a server gets to finish once a hung /verify is let go


async def _while_verify_hangs(ctx: ServerContext):
    """A valid payment sent while the harness's facilitator holds every ``/verify``; the hold is
    released after the bound plus ``HUNG_SLACK`` (or as soon as the server answered), and the case
    waits until the server's facilitator calls are over. Returns ``(offer, paid body, response,
    seconds to the answer or None, payer, nonce, before)``; the answer counts only if it came
    while the hold was in place."""
    _, offer = await ctx.offer()
    paid_body = handler_body((await served_and_paid(ctx, offer, label="payment verified normally")).response)
    payer, payload = ctx.sign(offer)
    payment = ctx.complete(ctx.payment(offer, payload))
    bound = ctx.facilitator_timeout + HUNG_SLACK
    ctx.fact("bound_seconds", bound)
    ctx.harness.control.calls.clear()
    ctx.harness.control.verify_mode = "hang"
    before = ctx.snapshot()
    loop = asyncio.get_running_loop()
    started = loop.time()
    request = asyncio.ensure_future(
        ctx.send(
            "payment while /verify hangs",
            ctx.endpoint.method,
            ctx.endpoint.path,
            headers={ctx.header_for(payment): header_value(payment)},
            timeout=bound + AFTER_RELEASE,
        )
    )
    done, _ = await asyncio.wait({request}, timeout=bound)
    elapsed = round(loop.time() - started, 3) if done else None
    ctx.harness.control.verify_mode = "normal"  # a /verify sent again is answered at once
    ctx.harness.control.release()
    response = await request
    quiet = ctx.fact("facilitator_quiet", await ctx.facilitator_quiet(AFTER_RELEASE))
    ctx.fact("answered_after_seconds", elapsed)
    ctx.fact("verify_calls", ctx.harness.control.count("/verify"))
    if ctx.harness.control.count("/verify") == 0:
        ctx.skip(
            "the target called no /verify at the harness's facilitator (an upfront server settles first)"
        )
    ctx.check(quiet, f"the server's facilitator calls were still open {AFTER_RELEASE:g} s after the release")
    return offer, paid_body, response, elapsed, payer, payload["authorization"]["nonce"], before


@case(
    "server.facilitator.hung-not-served",
    "MUST",
    "core spec 5 (the resource is served only after verification and settlement)",
    "While /verify hangs, the server neither serves nor charges, not even after the facilitator answers",
    kind="spec",
)
async def hung_not_served(ctx: ServerContext) -> None:
    offer, paid_body, response, elapsed, payer, nonce, before = await _while_verify_hangs(ctx)
    ctx.fact("status", status_of(response))
    if elapsed is None:
        ctx.note("no answer while /verify hung: judged as served only if charged once")
        _settled_by_status(ctx, response, before, payer, nonce, amount_of(offer), "the payment")
        return
    ctx.check(not (paid_body and paid_body in handler_body(response)), "the answer carries the paid content")
    not_charged(ctx, response, before, payer, nonce, what="a payment whose /verify hung")


@case(
    "server.facilitator.hung-answered",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026); "
    "x402#2961, x402#2974 (a bounded facilitator client, 30 s by default)",
    "While /verify hangs, the server answers a non-2xx within FACILITATOR_TIMEOUT_SECONDS (plus slack)",
    kind="advice",
)
async def hung_answered(ctx: ServerContext) -> None:
    _, _, response, elapsed, *_ = await _while_verify_hangs(ctx)
    ctx.fact("status", status_of(response))
    bound = ctx.facilitator_timeout + HUNG_SLACK
    ctx.check(elapsed is not None, f"no answer within {bound:g} s while /verify hung")
    ctx.check(not served(response), f"answered {status_of(response)} while /verify hung")


async def _malformed_replies(ctx: ServerContext):
    """A valid payment under a facilitator answering /verify, then one answering /settle, outside the
    protocol (and settling nothing); yields ``(endpoint, what, response, before, payer, nonce)``."""
    _, offer = await ctx.offer()
    for endpoint in ("verify", "settle"):
        setattr(ctx.harness.control, f"{endpoint}_mode", "malformed")
        payer, payload = ctx.sign(offer)
        before = ctx.snapshot()
        what = f"a payment whose /{endpoint} answer is malformed"
        response = await ctx.pay(offer, ctx.payment(offer, payload), label=what)
        setattr(ctx.harness.control, f"{endpoint}_mode", "normal")
        yield endpoint, what, response, before, payer, payload["authorization"]["nonce"]


@case(
    "server.facilitator.malformed-reply-not-served",
    "MUST",
    "core spec 5 (serve only on a valid verification and a successful settlement)",
    "A /verify or /settle answer outside the protocol is neither served nor charged",
    kind="spec",
)
async def malformed_reply_not_served(ctx: ServerContext) -> None:
    paid_body = handler_body((await served_and_paid(ctx, label="payment answered normally")).response)
    async for endpoint, what, response, before, payer, nonce in _malformed_replies(ctx):
        ctx.check(
            not (paid_body and paid_body in handler_body(response)), f"{what}: the answer has the content"
        )
        not_charged(ctx, response, before, payer, nonce, what=what, name=endpoint)


@case(
    "server.facilitator.malformed-reply-502",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026: a malformed facilitator reply is answered 502)",
    "A /verify or /settle answer outside the protocol is answered 502 Bad Gateway",
    kind="advice",
)
async def malformed_reply_502(ctx: ServerContext) -> None:
    statuses = {}
    async for _, what, response, *_ in _malformed_replies(ctx):
        statuses[what] = status_of(response)
    ctx.fact("statuses", statuses)
    wrong = {what: status for what, status in statuses.items() if status != 502}
    ctx.check(not wrong, f"answered other than 502: {wrong}")


# ================================================================================================
# settle: pending settlements, redirects
# ================================================================================================


@case(
    "server.settle.pending-has-transaction",
    "MUST",
    "x402#3083 (settlement_pending carries the transaction hash); x402#2294",
    "A PAYMENT-RESPONSE reporting settlement_pending names a transaction that is on chain or pending",
    kind="bug",
)
async def pending_has_transaction(ctx: ServerContext) -> None:
    _, _, paid, _ = await _under_settle_mode(ctx, "pending")
    _, document = ctx.settlement_header(paid.response)
    ctx.fact("payment_response", document)
    reason = document.get("errorReason") if isinstance(document, dict) else None
    if reason != "settlement_pending":
        ctx.skip(f"the answer reports no pending settlement (PAYMENT-RESPONSE errorReason {reason!r})")
    tx = document.get("transaction")
    ctx.check(isinstance(tx, str) and TX_HASH.fullmatch(tx), f"the pending report names {tx!r}, no hash")
    assert isinstance(tx, str)  # checked just above
    known = ctx.harness.receipt(tx) is not None or ctx.harness.chain.rpc("eth_getTransactionByHash", tx)
    ctx.fact("transaction_known", bool(known))
    ctx.check(known, f"the pending report names {tx}, which is neither mined nor pending")


@case(
    "server.settle.pending-retried-once",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026); "
    "x402#3214 (a settlement_pending with a transaction is settled again once)",
    "On settlement_pending with a transaction hash the server resends /settle exactly once, same body",
    kind="advice",
)
async def pending_retried_once(ctx: ServerContext) -> None:
    offer, _, paid, _ = await _under_settle_mode(ctx, "pending-once")
    bodies = [c.body for c in ctx.harness.control.calls if c.path == "/settle"]
    ctx.fact("settle_calls", len(bodies))
    if not bodies:
        ctx.skip("the target called no /settle at the harness's facilitator")
    ctx.check(len(bodies) == 2, f"/settle was sent {len(bodies)} times; a pending one is resent exactly once")
    ctx.check(bodies[0] == bodies[1], "the resent /settle differs from the first")
    ctx.check(
        len(paid.transfers) == 1 and paid.payee_delta == amount_of(offer),
        f"{len(paid.transfers)} transfers moved {paid.payee_delta}; the resend must not charge again",
    )


@case(
    "server.settle.redirect-settled",
    "MUST",
    "core spec 5; x402#2826 (settlement skipped on 3xx answers)",
    "A paid request answered with a redirect (3xx) is settled like a 2xx: charged once, PAYMENT-RESPONSE",
    kind="bug",
)
async def redirect_settled(ctx: ServerContext) -> None:
    path = ctx.path("redirect")
    challenge = await ctx.challenge(path, label="probe of the redirecting paid path")
    offer = challenge.offer(ctx.harness)
    if challenge.status != 402 or offer is None:
        ctx.skip(f"the target declares no redirecting paid route at {path} (answered {challenge.status})")
    paid = await ctx.paid(offer, path=path, label="payment for a redirecting handler")
    ctx.chain_facts(paid)
    status = ctx.fact("status", status_of(paid.response))
    if status is None or not 300 <= status < 400:
        ctx.skip(f"{path} answered {status} to a valid payment, not a redirect")
    ctx.check(
        len(paid.transfers) == 1 and paid.payee_delta == amount_of(offer),
        f"the redirect ({status}) was given with {len(paid.transfers)} transfers moving {paid.payee_delta}: "
        "a 3xx is settled like a 2xx",
    )
    _, document = ctx.settlement_header(paid.response)
    ctx.fact("payment_response", document)
    ctx.check(
        isinstance(document, dict) and document.get("success") is True,
        f"the paid redirect's PAYMENT-RESPONSE is {document}",
    )


# ================================================================================================
# flow: extra.paymentFlow
# ================================================================================================


def _flow(offer: dict) -> object:
    extra = offer.get("extra")
    return extra.get("paymentFlow", "authorization") if isinstance(extra, dict) else "authorization"


@case(
    "server.flow.advertised",
    "MUST",
    "x402-reference 11 (payment flows: a server MUST advertise a flow other than authorization)",
    "extra.paymentFlow is a known flow, and a server that settles before its handler advertises so",
    kind="spec",
)
async def flow_advertised(ctx: ServerContext) -> None:
    challenge, _ = await ctx.offer()
    flows = ctx.fact("flows", [_flow(e) for e in challenge.accepts if isinstance(e, dict)])
    unknown = [f for f in flows if f not in PAYMENT_FLOWS]
    ctx.check(not unknown, f"offers advertise unknown payment flows {unknown}: clients drop them")
    failing = ctx.path("failing")
    probe = await ctx.challenge(failing, label="probe of the failing paid path")
    offer = probe.offer(ctx.harness)
    if probe.status != 402 or offer is None:
        ctx.note(f"no failing paid route at {failing}: only the advertised values were judged")
        return
    flow = ctx.fact("failing.flow", _flow(offer))
    paid = await ctx.paid(offer, path=failing, label="payment for a failing handler")
    ctx.chain_facts(paid, "failing")
    charged = bool(paid.transfers)
    ctx.check(
        not charged or flow in SETTLES_FIRST,
        f"settled although the handler failed ({status_of(paid.response)}): it settles before the "
        f"handler, yet advertises {flow!r}",
    )
    ctx.check(
        charged or flow != "upfront", "advertises upfront, yet its failing handler's payment was not settled"
    )


# ================================================================================================
# extensions: the facilitator's side channel
# ================================================================================================


@case(
    "server.extensions.extension-responses-not-forwarded",
    "SHOULD",
    "x402-reference 11 (HTTP rules of 2026); "
    "x402#1835 (EXTENSION-RESPONSES is the facilitator's answer to the server)",
    "The facilitator's EXTENSION-RESPONSES header never reaches the buyer",
    kind="advice",
)
async def extension_responses_not_forwarded(ctx: ServerContext) -> None:
    ctx.harness.control.extension_responses = True
    paid = await served_and_paid(ctx, label="payment whose /verify and /settle answers carry the header")
    leaked = ctx.fact("leaked", paid.response.headers.get("extension-responses"))
    ctx.check(leaked is None, f"the buyer's answer carries EXTENSION-RESPONSES: {str(leaked)[:200]}")
