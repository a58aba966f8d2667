"""Client cases: the harness plays the resource server, often a hostile one, and runs the client once.

How a case judges: by what moved on chain (``Transfer`` logs from the case's fresh payer, the
payer's and payees' balances, ``authorizationState`` of the nonces the client signed) and by what
the harness's server saw (every request, its payment header decoded). The client's JSON verdict and
exit code are secondary evidence: a client command may print none.

Decisions these cases rest on (see each case's ``rests_on``):

* **One paid retry per request.** Every reference SDK (TS fetch/axios wrappers, Python httpx and
  requests transports) sends a request at most once more, with a payment, after a 402, and returns
  whatever the paid request got. So a second 402 after a payment is never paid within the same
  request, whatever it asks: a new payee (recipient redirect), a higher price (price bait), or the
  same offer after a settlement whose answer was lost (x402#452, #808). The redirect forms tested
  are the two a server can mount against a client that knows no payee list of its own: a 402 naming
  another ``payTo`` after the first payment settled, and one naming another ``payTo`` in answer to
  the paid retry (the payment refused as "wrong recipient").
* **Spend cap.** The SDK clients cap a payment at $1 of a known 6-decimal stablecoin by default
  (Python ``DEFAULT_MAX_AMOUNT_PER_PAYMENT``); the env contract names no cap, so a price above
  1 000 000 atomic units is refused (STRICT: the spec names no cap). Unit confusion is the same rule
  met by an amount written for 18 decimals ("$0.001" as 10**15).
* **Networks.** A client is told ``EVM_NETWORK``; a signature for another chain is valid there and a
  hostile server could collect it. The TS SDK registers ``eip155:*`` by default, so this is STRICT.
  The EIP-712 domain's chain id is derived from ``network``; a server has no other field to set it,
  so the wrong-chain form is an offer on another chain (a real one: Base mainnet, or Base Sepolia
  when the harness is Base).
* **accepts ordering.** The client pays exactly one offer it supports (right scheme, its network,
  readable fields), skipping those it does not, whatever their position (MUST); among payable
  offers of one asset it pays the cheapest at STRICT (the SDKs' default selector takes the first; x402sim
  picks the cheapest).
* **v1.** A v1 402 can only name a chain with a v1 name (``base``, ``base-sepolia``, ...); the v1
  case runs when the harness network has one (the ``base`` and ``base-sepolia`` presets) and is
  skipped on the local chain.
* **Lost answers** come in every form a network produces: a 500, a fresh 402, a closed connection,
  silence. The env contract names no client timeout, so the silent server hangs up after ``SILENCE``
  seconds; a client that gives up sooner is judged on its own timeout, one that waits on the hang-up.
* **Payment flows** (x402 2026, reserved ``extra.paymentFlow``): an unknown flow is never paid
  (MUST: an unknown flow changes when and how the payer is charged); among payable offers the
  ``authorization`` flow is preferred (SHOULD).
* **Concurrency** (x402#398): the env contract runs one request per process, so K requests at once
  are K runs of the client at once, all with the same payer, as an agent's one wallet makes
  concurrent calls; this also catches nonces derived from the payer or from per-process state.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from ..evm.eip712 import Authorization, SignatureError, authorization_digest, recover_digest
from ..evm.presets import PRESETS
from ..money import UNIT
from ..protocol import Reason, caip2_to_v1
from .catalog import case
from .forge import domain_of, header_value
from .hostile import HANG_UP, PAYMENT_HEADERS, Answer, Seen
from .kits import ClientContext

PRICE = 1_000
DEFAULT_CAP = UNIT  # $1 of a 6-decimals asset: the SDK clients' default cap per payment
SILENCE = 1.5  # seconds a silent server holds a settled payment's answer before hanging up
CLOCK_SLACK = 5  # seconds of clock difference tolerated between the client and the harness
STANDING_LIMIT = 24 * 3600  # a window longer than a day is a standing authorization
UNSUPPORTED_SCHEME = "x402sim-unsupported"
SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# -- the harness's server: offers, challenges, settlement ---------------------------------------------


def offer(ctx: ClientContext, amount: int = PRICE, pay_to: str | None = None, **fields) -> dict:
    """An exact offer on the harness's chain and asset, paying a fresh payee (or ``pay_to``)."""
    document = {
        "scheme": "exact",
        "network": ctx.harness.network,
        "amount": str(amount),
        "asset": ctx.harness.asset,
        "payTo": pay_to or ctx.harness.new_account("payee").address,
        "maxTimeoutSeconds": 60,
        "extra": {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version},
    }
    document.update(fields)
    return document


def payment_required(
    ctx: ClientContext, seen: Seen, accepts: list[dict], *, resource_url: str | None = None, **fields
) -> dict:
    document = {
        "x402Version": 2,
        "error": "payment required",
        "resource": {"url": resource_url or ctx.hostile.url + seen.path, "mimeType": "application/json"},
        "accepts": accepts,
    }
    document.update(fields)
    return document


def challenge(ctx: ClientContext, seen: Seen, accepts: list[dict], **fields) -> Answer:
    """A v2 402: the requirements in PAYMENT-REQUIRED, an empty JSON body."""
    return Answer(
        402, [("PAYMENT-REQUIRED", header_value(payment_required(ctx, seen, accepts, **fields)))], {}
    )


async def settle(ctx: ClientContext, payment: Any, requirements: dict, version: int = 2) -> dict:
    """Settle ``payment`` against ``requirements`` through the harness's facilitator; its answer."""
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(
            ctx.harness.facilitator_url + "/settle",
            json={"x402Version": version, "paymentPayload": payment, "paymentRequirements": requirements},
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"success": False, "errorReason": f"facilitator answered HTTP {response.status_code}"}
    return answer


def settled(answer: dict, header: str = "PAYMENT-RESPONSE") -> Answer:
    """What an honest server answers after settling: 200 with the result, or 402 when it failed."""
    ok = bool(answer.get("success"))
    return Answer(200 if ok else 402, [(header, header_value(answer))], {"paid": ok})


def same_offer(a: Any, b: dict) -> bool:
    """Whether ``a`` (a client's ``accepted``) names the offer ``b`` (the fields servers compare)."""
    if not isinstance(a, dict):
        return False
    return (
        a.get("scheme") == b["scheme"]
        and a.get("network") == b["network"]
        and str(a.get("amount")) == b["amount"]
        and str(a.get("asset", "")).lower() == b["asset"].lower()
        and str(a.get("payTo", "")).lower() == b["payTo"].lower()
    )


def payable(ctx: ClientContext, entry: dict) -> bool:
    return (
        entry.get("scheme") == "exact"
        and entry.get("network") == ctx.harness.network
        and str(entry.get("asset", "")).lower() == ctx.harness.asset.lower()
    )


def shop(ctx: ClientContext, accepts: list[dict], *, after=None):
    """A handler selling every path for ``accepts``: 402 without payment; a payment whose ``accepted``
    names a payable offer is settled against that offer (the server's copy, as servers do). ``after``
    (seen, offer, settlement) -> Answer replaces the honest answer after a settlement."""

    async def handler(seen: Seen) -> Answer:
        payment = seen.payment
        if payment is None:
            return challenge(ctx, seen, accepts)
        accepted = payment.get("accepted") if isinstance(payment, dict) else None
        chosen = next((o for o in accepts if payable(ctx, o) and same_offer(accepted, o)), None)
        if chosen is None:
            return challenge(ctx, seen, accepts, error="no matching payment requirements")
        answer = await settle(ctx, payment, chosen)
        if after is not None:
            return await after(seen, chosen, answer)
        return settled(answer)

    return handler


def honest(ctx: ClientContext, amount: int = PRICE, **fields):
    """A handler selling every path honestly: 402 with one exact offer, then settle through the
    harness's facilitator and answer 200 with PAYMENT-RESPONSE (or 402 when settlement fails)."""
    the_offer = offer(ctx, amount, **fields)
    return the_offer, shop(ctx, [the_offer])


# -- what the client signed ---------------------------------------------------------------------------


def authorization_of(payment: Any) -> dict | None:
    """The ``payload.authorization`` object of a decoded payment, None when it has none."""
    payload = payment.get("payload") if isinstance(payment, dict) else None
    auth = payload.get("authorization") if isinstance(payload, dict) else None
    return auth if isinstance(auth, dict) else None


def signed(ctx: ClientContext, name: str = "signed") -> list[tuple[Seen, Any, dict]]:
    """Every paid request the harness's server saw, as ``(seen, payment, authorization)`` (an empty
    dict when the payment has none), recorded as the fact ``name``."""
    found = [(s, s.payment, authorization_of(s.payment) or {}) for s in ctx.hostile.paid]
    ctx.fact(
        name,
        [
            {
                "path": s.path,
                "header": s.payment_header,
                "to": auth.get("to"),
                "value": auth.get("value"),
                "nonce": auth.get("nonce"),
                "validAfter": auth.get("validAfter"),
                "validBefore": auth.get("validBefore"),
                "accepted_payTo": (p.get("accepted") or {}).get("payTo") if isinstance(p, dict) else None,
                "answered": s.answer.status if s.answer else None,
            }
            for s, p, auth in found
        ],
    )
    return found


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def nothing_signed(ctx: ClientContext, what: str) -> None:
    payments = signed(ctx)
    ctx.check(
        not payments,
        f"the client signed {len(payments)} payment(s) for {what}: "
        + "; ".join(f"to {a.get('to')} value {a.get('value')}" for _, _, a in payments),
    )


def nothing_moved(ctx: ClientContext, payer, before: int) -> None:
    transfers = ctx.payer_transfers(payer, before)
    ctx.check(not transfers, f"{len(transfers)} transfer(s) left the payer: {transfers}")


def one_transfer_to(ctx: ClientContext, payer, before: int, the_offer: dict) -> dict:
    transfers = ctx.payer_transfers(payer, before)
    ctx.check(len(transfers) == 1, f"{len(transfers)} transfers from the payer, expected exactly 1")
    t = transfers[0]
    ctx.check(
        t["to"].lower() == the_offer["payTo"].lower() and t["value"] == int(the_offer["amount"]),
        f"the transfer {t} is not {the_offer['amount']} to {the_offer['payTo']}",
    )
    return t


def _nonce_used(ctx: ClientContext, payer, auth: dict) -> bool | None:
    nonce = auth.get("nonce")
    if not (isinstance(nonce, str) and _NONCE.fullmatch(nonce)):
        return None
    return ctx.harness.used(payer.address, nonce)


def reported_success(run) -> bool:
    """Whether the run said it succeeded: exit 0 and no verdict saying ``success: false``."""
    return run.exit_code == 0 and not (isinstance(run.verdict, dict) and run.verdict.get("success") is False)


# -- pays ---------------------------------------------------------------------------------------------


@case(
    "client.pays.right-amount",
    "MUST",
    "core spec 5 (payment flow); exact scheme",
    "Against an honest 402 the client pays exactly the price to the payee, once, and gets 200",
    kind="payment",
)
async def pays_right_amount(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx)
    run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    one_transfer_to(ctx, payer, before, the_offer)
    ctx.check(len(payments) == 1, f"the client sent {len(payments)} paid requests, expected exactly 1")
    ctx.fact("payer.authorization_used", _nonce_used(ctx, payer, payments[0][2]))
    if run.verdict is not None and run.verdict.get("success") is not True:
        ctx.note("the client paid but its verdict does not say success")


@case(
    "client.pays.v2-header",
    "MUST",
    "HTTP transport spec v2 (PAYMENT-SIGNATURE)",
    "Against a v2 402 the payment is sent in PAYMENT-SIGNATURE as a v2 PaymentPayload, not X-PAYMENT",
    kind="spec",
)
async def pays_v2_header(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest v2 402")
    for seen, payment, _ in payments:
        ctx.check(
            "payment-signature" in seen.headers and "x-payment" not in seen.headers,
            f"the payment came in {', '.join(h for h in PAYMENT_HEADERS if h in seen.headers)}, "
            "not PAYMENT-SIGNATURE alone",
        )
        version = payment.get("x402Version") if isinstance(payment, dict) else None
        ctx.check(version == 2, f"the payment says x402Version {version!r}, not 2")
    one_transfer_to(ctx, payer, before, the_offer)


@case(
    "client.pays.v1-header",
    "MUST",
    "x402 v1 spec (402 JSON body, X-PAYMENT); run only when the harness network has a v1 name",
    "Against a v1 402 (JSON body, v1 network name) the payment is a v1 payload sent in X-PAYMENT",
    kind="spec",
)
async def pays_v1_header(ctx: ClientContext) -> None:
    v1_name = caip2_to_v1(ctx.harness.network)
    if v1_name is None:
        ctx.skip(f"{ctx.harness.network} has no v1 network name; run on the base or base-sepolia preset")
    pay_to = ctx.harness.new_account("payee").address

    def requirements(seen: Seen) -> dict:
        return {
            "scheme": "exact",
            "network": v1_name,
            "maxAmountRequired": str(PRICE),
            "resource": ctx.hostile.url + seen.path,
            "description": "a v1 resource",
            "mimeType": "application/json",
            "payTo": pay_to,
            "maxTimeoutSeconds": 60,
            "asset": ctx.harness.asset,
            "extra": {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version},
        }

    async def handler(seen: Seen) -> Answer:
        body = {"x402Version": 1, "error": "X-PAYMENT header is required", "accepts": [requirements(seen)]}
        payment = seen.payment
        if payment is None:
            return Answer(402, [], body)
        answer = await settle(ctx, payment, requirements(seen), version=1)
        return settled(answer, "X-PAYMENT-RESPONSE") if answer.get("success") else Answer(402, [], body)

    ctx.hostile.handler = handler
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to a v1 402")
    for seen, payment, _ in payments:
        ctx.check(
            seen.payment_header == "x-payment" and "payment-signature" not in seen.headers,
            f"a v1 payment came in {seen.payment_header}, not X-PAYMENT",
        )
        ctx.check(
            isinstance(payment, dict)
            and payment.get("x402Version") == 1
            and payment.get("network") == v1_name,
            f"the X-PAYMENT is not a v1 payload on {v1_name}: "
            f"x402Version {payment.get('x402Version') if isinstance(payment, dict) else None!r}",
        )
    one_transfer_to(ctx, payer, before, {"payTo": pay_to, "amount": str(PRICE)})


@case(
    "client.pays.accepts-order",
    "MUST",
    "core spec 5 (the client picks an entry of accepts it supports)",
    "With an unsupported scheme first and a wrong-network offer second, the client pays the third",
    kind="spec",
)
async def pays_accepts_order(ctx: ClientContext) -> None:
    other = _other_chain(ctx)
    accepts = [
        offer(ctx, scheme=UNSUPPORTED_SCHEME),
        offer(ctx, PRICE // 2, network=f"eip155:{other.chain_id}"),
        offer(ctx),
    ]
    ctx.hostile.handler = shop(ctx, accepts)
    _run, payer, before = await ctx.run_client()
    for _, payment, auth in signed(ctx):
        accepted = payment.get("accepted") if isinstance(payment, dict) else None
        ctx.check(
            same_offer(accepted, accepts[2])
            and str(auth.get("to", "")).lower() == accepts[2]["payTo"].lower(),
            f"the client signed for an offer it cannot pay: accepted {accepted}",
        )
    one_transfer_to(ctx, payer, before, accepts[2])


@case(
    "client.pays.cheaper-offer",
    "STRICT",
    "core spec 5 (client chooses among accepts); red-team accepts ordering",
    "Of two payable offers in one asset, the pricier listed first, the client pays only the cheaper",
    kind="hardening",
)
async def pays_cheaper_offer(ctx: ClientContext) -> None:
    accepts = [offer(ctx, 3 * PRICE), offer(ctx, PRICE)]
    ctx.hostile.handler = shop(ctx, accepts)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(len(payments) == 1, f"the client signed {len(payments)} payments, expected exactly 1")
    one_transfer_to(ctx, payer, before, accepts[1])


@case(
    "client.pays.nothing-for-free",
    "MUST",
    "HTTP transport spec v2 (payment is asked by status 402); red-team ghost paywall",
    "A 200 answer that carries a PAYMENT-REQUIRED header anyway is not paid",
    kind="payment",
)
async def pays_nothing_for_free(ctx: ClientContext) -> None:
    the_offer = offer(ctx)
    inner = shop(ctx, [the_offer])

    async def handler(seen: Seen) -> Answer:
        if seen.payment is not None:
            return await inner(seen)
        header = header_value(payment_required(ctx, seen, [the_offer]))
        return Answer(200, [("PAYMENT-REQUIRED", header)], {"data": "free content"})

    ctx.hostile.handler = handler
    _run, payer, before = await ctx.run_client()
    nothing_signed(ctx, "content answered 200")
    nothing_moved(ctx, payer, before)


@case(
    "client.pays.same-origin",
    "MUST",
    "core spec 5 (the client retries its own request with the payment); red-team resource spoof",
    "A 402 whose resource.url names another URL does not make the client send its payment there",
    kind="payment",
)
async def pays_same_origin(ctx: ClientContext) -> None:
    the_offer = offer(ctx)
    elsewhere = "/collect"
    inner = shop(ctx, [the_offer])

    async def handler(seen: Seen) -> Answer:
        if seen.payment is None:
            return challenge(ctx, seen, [the_offer], resource_url=ctx.hostile.url + elsewhere)
        return await inner(seen)

    ctx.hostile.handler = handler
    path = "/resource"
    await ctx.run_client(path)
    for seen, _, auth in signed(ctx):
        ctx.check(
            seen.path == path,
            f"the client sent its payment (nonce {auth.get('nonce')}) to {seen.path}, not to {path}",
        )


# -- signs --------------------------------------------------------------------------------------------


def _auth(auth: dict) -> Authorization:
    return Authorization(
        from_=auth["from"],
        to=auth["to"],
        value=int(auth["value"]),
        valid_after=int(auth["validAfter"]),
        valid_before=int(auth["validBefore"]),
        nonce=bytes.fromhex(auth["nonce"][2:]),
    )


@case(
    "client.signs.recovers-to-payer",
    "MUST",
    "exact EVM scheme (EIP-3009 TransferWithAuthorization, EIP-712 domain of the offer)",
    "The signature is 65 bytes and recovers, over the offer's EIP-712 domain, to from = the payer",
    kind="spec",
)
async def signs_recovers(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest 402")
    for _, payment, auth in payments:
        ctx.check(
            str(auth.get("from", "")).lower() == payer.address.lower(),
            f"authorization.from is {auth.get('from')}, not the payer {payer.address}",
        )
        signature = payment.get("payload", {}).get("signature") if isinstance(payment, dict) else None
        ctx.check(
            isinstance(signature, str) and _SIGNATURE.fullmatch(signature),
            f"the signature {str(signature)[:40]!r} is not 0x and 65 bytes of hex",
        )
        assert isinstance(signature, str)  # checked just above
        try:
            signer = recover_digest(
                authorization_digest(domain_of(the_offer), _auth(auth)), bytes.fromhex(signature[2:])
            )
        except (KeyError, ValueError, TypeError, SignatureError) as exc:
            ctx.fail(f"the authorization cannot be read or recovered: {type(exc).__name__}: {exc}")
        ctx.fact("recovered_signer", signer)
        ctx.check(
            signer.lower() == payer.address.lower(), f"the signature recovers to {signer}, not the payer"
        )
    one_transfer_to(ctx, payer, before, the_offer)


@case(
    "client.signs.accepted-echo",
    "MUST",
    "core spec (PaymentPayload.accepted is the chosen entry, echoed); TS servers compare it deeply",
    "The v2 payment's accepted is the chosen offer verbatim, extra and maxTimeoutSeconds included",
    kind="spec",
)
async def signs_accepted_echo(ctx: ClientContext) -> None:
    extra = {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version, "note": "echo me"}
    the_offer, ctx.hostile.handler = honest(ctx, maxTimeoutSeconds=75, extra=extra)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest 402")
    for _, payment, _auth in payments:
        accepted = payment.get("accepted") if isinstance(payment, dict) else None
        ctx.check(accepted == the_offer, f"accepted {accepted} is not the offer {the_offer} verbatim")
    one_transfer_to(ctx, payer, before, the_offer)


@case(
    "client.signs.value-string",
    "MUST",
    "core spec (amounts and timestamps are decimal strings); exact scheme (value = amount, to = payTo)",
    "value, validAfter and validBefore are decimal strings; value equals the amount, to the payTo",
    kind="payment",
)
async def signs_value_string(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx, amount=1_234)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest 402")
    for _, _payment, auth in payments:
        for name in ("value", "validAfter", "validBefore"):
            value = auth.get(name)
            ctx.check(
                isinstance(value, str) and _DECIMAL.fullmatch(value),
                f"authorization.{name} is {value!r}, not a decimal string",
            )
        ctx.check(auth["value"] == the_offer["amount"], f"value {auth['value']} is not {the_offer['amount']}")
        ctx.check(
            str(auth.get("to", "")).lower() == the_offer["payTo"].lower(),
            f"authorization.to {auth.get('to')} is not payTo {the_offer['payTo']}",
        )
    one_transfer_to(ctx, payer, before, the_offer)


@case(
    "client.signs.nonce-format",
    "MUST",
    "exact EVM scheme (nonce: 0x and 32 bytes of hex)",
    "The authorization nonce is 0x followed by 64 hex digits (32 bytes)",
    kind="spec",
)
async def signs_nonce_format(ctx: ClientContext) -> None:
    _offer, ctx.hostile.handler = honest(ctx)
    await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest 402")
    for _, _, auth in payments:
        nonce = auth.get("nonce")
        ctx.check(
            isinstance(nonce, str) and _NONCE.fullmatch(nonce), f"the nonce {nonce!r} is not 0x + 32 bytes"
        )


@case(
    "client.signs.fresh-nonce",
    "MUST",
    "exact EVM scheme (nonce = 32 random bytes); EIP-3009 (a nonce is single use per authorizer)",
    "Two runs with the same payer sign different nonces, and both payments settle on chain",
    kind="spec",
)
async def signs_fresh_nonce(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx)
    payer = ctx.harness.funded_account(label="client-payer")
    _run, _, before = await ctx.run_client(payer=payer, label="first run")
    await ctx.run_client(payer=payer, label="second run")
    payments = signed(ctx)
    nonces = [auth.get("nonce") for _, _, auth in payments]
    ctx.check(len(payments) == 2, f"the two runs sent {len(payments)} payments, expected 2")
    ctx.check(len(set(nonces)) == 2, f"the two runs signed the same nonce {nonces[0]}")
    ctx.fact("nonces_used", [_nonce_used(ctx, payer, auth) for _, _, auth in payments])
    transfers = ctx.payer_transfers(payer, before)
    ctx.check(
        len(transfers) == 2 and all(t["to"].lower() == the_offer["payTo"].lower() for t in transfers),
        f"{len(transfers)} transfers to the payee after two runs, expected 2",
    )


@case(
    "client.signs.validity-window",
    "STRICT",
    "exact EVM scheme (validBefore = now + maxTimeoutSeconds); x402-reference 7 (long-lived windows)",
    "validBefore is at most maxTimeoutSeconds after the request, and validAfter is not in the future",
    kind="hardening",
)
async def signs_validity_window(ctx: ClientContext) -> None:
    timeout = 45
    _offer, ctx.hostile.handler = honest(ctx, maxTimeoutSeconds=timeout)
    await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client sent no payment to an honest 402")
    for seen, _, auth in payments:
        valid_before, valid_after = _int(auth.get("validBefore")), _int(auth.get("validAfter"))
        ctx.check(valid_before is not None and valid_after is not None, f"unreadable window in {auth}")
        assert valid_before is not None and valid_after is not None  # checked just above
        window = valid_before - int(seen.at)
        ctx.fact("window_seconds", window)
        ctx.check(
            window <= timeout + CLOCK_SLACK,
            f"validBefore is {window} s after the request; maxTimeoutSeconds is {timeout}",
        )
        ctx.check(
            valid_after <= seen.at + CLOCK_SLACK,
            f"validAfter {valid_after} is {valid_after - int(seen.at)} s in the future",
        )


# -- refuses ------------------------------------------------------------------------------------------


@case(
    "client.refuses.redirect-after-settlement",
    "MUST",
    "every reference SDK retries a request at most once; red-team recipient redirect",
    "After its payment to A settled, a second 402 naming payee B is not paid",
    kind="payment",
)
async def refuses_redirect_after_settlement(ctx: ClientContext) -> None:
    first, second = offer(ctx), offer(ctx)

    async def after(seen: Seen, chosen: dict, answer: dict) -> Answer:
        if chosen is first and answer.get("success"):
            return challenge(ctx, seen, [second], error="the resource moved; pay the new payee")
        return settled(answer)

    ctx.hostile.handler = shop(ctx, [first, second], after=after)
    _run, payer, before = await ctx.run_client()
    for _, _, auth in signed(ctx):
        ctx.check(
            str(auth.get("to", "")).lower() != second["payTo"].lower(),
            f"the client signed {auth.get('value')} to the redirected payee {second['payTo']}",
        )
    one_transfer_to(ctx, payer, before, first)


@case(
    "client.refuses.redirect-on-retry",
    "MUST",
    "every reference SDK retries a request at most once; red-team recipient redirect",
    "A paid retry answered by a 402 naming another payee ('wrong recipient') is not paid again",
    kind="payment",
)
async def refuses_redirect_on_retry(ctx: ClientContext) -> None:
    first, second = offer(ctx), offer(ctx)
    inner = shop(ctx, [second])

    async def handler(seen: Seen) -> Answer:
        payment = seen.payment
        if payment is None:
            return challenge(ctx, seen, [first])
        if same_offer(payment.get("accepted") if isinstance(payment, dict) else None, first):
            return challenge(
                ctx, seen, [second], error=Reason.invalid_exact_evm_payload_recipient_mismatch.value
            )
        return await inner(seen)

    ctx.hostile.handler = handler
    _run, payer, before = await ctx.run_client()
    for _, _, auth in signed(ctx):
        ctx.check(
            str(auth.get("to", "")).lower() != second["payTo"].lower(),
            f"the client signed {auth.get('value')} to the redirected payee {second['payTo']}",
        )
    nothing_moved(ctx, payer, before)


@case(
    "client.refuses.price-bait",
    "MUST",
    "every reference SDK retries a request at most once; red-team price bait",
    "After a cheap payment settled, a second 402 asking far more (under the cap) is not paid",
    kind="payment",
)
async def refuses_price_bait(ctx: ClientContext) -> None:
    cheap = offer(ctx, PRICE)
    dear = offer(ctx, 900 * PRICE, pay_to=cheap["payTo"])

    async def after(seen: Seen, chosen: dict, answer: dict) -> Answer:
        if chosen is cheap and answer.get("success"):
            return challenge(ctx, seen, [dear], error="the price has changed")
        return settled(answer)

    ctx.hostile.handler = shop(ctx, [cheap, dear], after=after)
    _run, payer, before = await ctx.run_client()
    for _, _, auth in signed(ctx):
        ctx.check(auth.get("value") != dear["amount"], f"the client signed the bait price {dear['amount']}")
    one_transfer_to(ctx, payer, before, cheap)


@case(
    "client.refuses.price-above-cap",
    "STRICT",
    "SDK client spend controls (default cap $1 per payment); x402-reference 7 (price bait, unit confusion)",
    "A 402 asking $5 (5 000 000 atomic units of a 6-decimal asset) is refused: nothing signed",
    kind="hardening",
)
async def refuses_price_above_cap(ctx: ClientContext) -> None:
    _offer, ctx.hostile.handler = honest(ctx, amount=5 * DEFAULT_CAP)
    _run, payer, before = await ctx.run_client(usdc=10 * DEFAULT_CAP)
    nothing_signed(ctx, "a price above the default $1 cap")
    nothing_moved(ctx, payer, before)


@case(
    "client.refuses.unit-confusion",
    "STRICT",
    "SDK client spend controls ($1 default cap); x402-reference 7 (unit confusion, 18 vs 6 decimals)",
    "A '$0.001' price written for 18 decimals (10**15 atomic units of a 6-decimal asset) is refused",
    kind="hardening",
)
async def refuses_unit_confusion(ctx: ClientContext) -> None:
    amount = 10**15
    the_offer = offer(ctx, amount)
    inner = shop(ctx, [the_offer])

    async def handler(seen: Seen) -> Answer:
        if seen.payment is None:
            return challenge(ctx, seen, [the_offer], error="payment required: $0.001")
        return await inner(seen)

    ctx.hostile.handler = handler
    _run, payer, before = await ctx.run_client(usdc=2 * amount)  # enough to lose it for real
    nothing_signed(ctx, "an amount of 10**15 atomic units")
    nothing_moved(ctx, payer, before)
    ctx.fact("payer.balance", ctx.harness.balance(payer.address))


def _other_chain(ctx: ClientContext):
    """A real network other than the harness's: Base mainnet, or Base Sepolia when the harness is Base."""
    return PRESETS["base" if ctx.harness.chain_id != PRESETS["base"].chain_id else "base-sepolia"]


@case(
    "client.refuses.wrong-chain",
    "STRICT",
    "the client pays only on EVM_NETWORK (a signature is valid on the chain it names); red-team rail switch",
    "A 402 offering only USDC on another chain (its canonical token and domain) gets nothing signed",
    kind="hardening",
)
async def refuses_wrong_chain(ctx: ClientContext) -> None:
    other = _other_chain(ctx)
    the_offer = offer(
        ctx,
        network=other.network,
        asset=other.token_address,
        extra={"name": other.token_name, "version": other.token_version},
    )
    ctx.hostile.handler = shop(ctx, [the_offer])
    _run, payer, before = await ctx.run_client()
    nothing_signed(ctx, f"{other.network} while EVM_NETWORK is {ctx.harness.network}")
    nothing_moved(ctx, payer, before)


@case(
    "client.refuses.standing-authorization",
    "STRICT",
    "x402-reference 7 (authorizations far longer than needed are standing cheques)",
    "A 402 with maxTimeoutSeconds of ten years gets no authorization valid for more than a day",
    kind="hardening",
)
async def refuses_standing_authorization(ctx: ClientContext) -> None:
    _offer, ctx.hostile.handler = honest(ctx, maxTimeoutSeconds=10 * 365 * 24 * 3600)
    await ctx.run_client()
    for seen, _, auth in signed(ctx):
        valid_before = _int(auth.get("validBefore"))
        ctx.check(valid_before is not None, f"unreadable validBefore in {auth}")
        assert valid_before is not None  # checked just above
        window = valid_before - int(seen.at)
        ctx.fact("window_seconds", window)
        ctx.check(
            window <= STANDING_LIMIT + CLOCK_SLACK,
            f"the client signed an authorization valid for {window} s (more than a day)",
        )


@case(
    "client.refuses.no-acceptable-offer",
    "MUST",
    "core spec 5 (the client pays only an entry it supports)",
    "A 402 offering only an unknown scheme and a non-EVM network: nothing signed, the run fails cleanly",
    kind="spec",
)
async def refuses_no_acceptable_offer(ctx: ClientContext) -> None:
    accepts = [
        offer(ctx, scheme=UNSUPPORTED_SCHEME),
        {
            "scheme": "exact",
            "network": SOLANA_MAINNET,
            "amount": str(PRICE),
            "asset": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            "payTo": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
            "maxTimeoutSeconds": 60,
            "extra": {"feePayer": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"},
        },
    ]
    ctx.hostile.handler = shop(ctx, accepts)
    started = time.monotonic()
    run, payer, before = await ctx.run_client()
    nothing_signed(ctx, "offers it cannot pay")
    nothing_moved(ctx, payer, before)
    ctx.check(
        run.exit_code is not None, f"the client did not end (killed after {time.monotonic() - started:.0f} s)"
    )
    ctx.check(not reported_success(run), "the client reported success although nothing could be paid")


@case(
    "client.refuses.malformed-402",
    "MUST",
    "HTTP transport spec v2 (PAYMENT-REQUIRED is base64 JSON; the SDKs fail on an undecodable one)",
    "A 402 whose PAYMENT-REQUIRED is not base64 JSON (offers only in the body) gets nothing signed",
    kind="spec",
)
async def refuses_malformed_402(ctx: ClientContext) -> None:
    the_offer = offer(ctx)
    inner = shop(ctx, [the_offer])

    async def handler(seen: Seen) -> Answer:
        if seen.payment is not None:
            return await inner(seen)
        return Answer(402, [("PAYMENT-REQUIRED", "%%not*base64%%")], payment_required(ctx, seen, [the_offer]))

    ctx.hostile.handler = handler
    run, payer, before = await ctx.run_client()
    nothing_signed(ctx, "a 402 with an undecodable PAYMENT-REQUIRED")
    nothing_moved(ctx, payer, before)
    ctx.check(run.exit_code is not None, "the client did not end")


# -- payment flows ------------------------------------------------------------------------------------

UNKNOWN_FLOW = "streaming"


def flow_offer(ctx: ClientContext, flow: str, **fields) -> dict:
    """An exact offer (see ``offer``) whose ``extra.paymentFlow`` is ``flow``."""
    extra = {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version, "paymentFlow": flow}
    return offer(ctx, extra=extra, **fields)


@case(
    "client.flow.unrecognised-not-paid",
    "MUST",
    "x402 2026 payment flows (x402-reference 11: a client MUST NOT pay an extra.paymentFlow it does not "
    "recognise; recognised: authorization, upfront, escrow, absent); the Python SDK 2.25 client drops them",
    f"A 402 offering only an exact entry with extra.paymentFlow {UNKNOWN_FLOW!r} gets nothing signed",
    kind="spec",
)
async def flow_unrecognised_not_paid(ctx: ClientContext) -> None:
    ctx.hostile.handler = shop(ctx, [flow_offer(ctx, UNKNOWN_FLOW)])
    _run, payer, before = await ctx.run_client()
    nothing_signed(ctx, f"an offer of the unknown paymentFlow {UNKNOWN_FLOW!r}")
    nothing_moved(ctx, payer, before)


@case(
    "client.flow.prefers-authorization",
    "SHOULD",
    "x402-reference 11 (a client SHOULD prefer the authorization flow: it is charged only after the "
    "server verified and served); the Python SDK 2.25 client keeps those offers when there are any",
    "Of an upfront offer listed first and an authorization offer at the same price, the latter is paid",
    kind="advice",
)
async def flow_prefers_authorization(ctx: ClientContext) -> None:
    upfront, authorization = flow_offer(ctx, "upfront"), flow_offer(ctx, "authorization")
    ctx.hostile.handler = shop(ctx, [upfront, authorization])
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(len(payments) == 1, f"the client signed {len(payments)} payments, expected exactly 1")
    accepted = payments[0][1].get("accepted") if isinstance(payments[0][1], dict) else None
    ctx.check(
        same_offer(accepted, authorization),
        f"the client paid {json.dumps(accepted)[:300]}, not the authorization offer",
    )
    one_transfer_to(ctx, payer, before, authorization)


# -- retries ------------------------------------------------------------------------------------------


@case(
    "client.retries.storm-bounded",
    "MUST",
    "every reference SDK retries a request at most once; x402-reference 7 (402-forever loops)",
    "Against a server answering 402 to everything, at most 2 paid requests are sent and the run ends",
    kind="payment",
)
async def retries_storm_bounded(ctx: ClientContext) -> None:
    the_offer = offer(ctx)

    async def handler(seen: Seen) -> Answer:
        error = "payment required" if seen.payment is None else "payment rejected, try again"
        return challenge(ctx, seen, [the_offer], error=error)

    ctx.hostile.handler = handler
    run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.fact("requests_seen", len(ctx.hostile.seen))
    ctx.check(run.exit_code is not None, "the client did not end: killed at its timeout")
    ctx.check(len(payments) <= 2, f"the client sent {len(payments)} paid requests to a 402-forever server")
    ctx.check(
        len(ctx.hostile.seen) <= 6, f"the client sent {len(ctx.hostile.seen)} requests for one resource"
    )
    nothing_moved(ctx, payer, before)


async def _settles_then(ctx: ClientContext, answer_after_settlement, *, silence: float = 0.0) -> None:
    """Sell honestly, but answer every settled payment with ``answer_after_settlement(seen, offer,
    settlement)``, after ``silence`` seconds without a word; run the client and demand exactly one
    transfer of the price to the payee and one nonce signed (a resend of the same payment is no
    second payment)."""
    the_offer = offer(ctx)

    async def after(seen: Seen, chosen: dict, answer: dict) -> Answer:
        if silence:
            await ctx.hostile.hold(silence)
        return answer_after_settlement(seen, chosen, answer)

    ctx.hostile.handler = shop(ctx, [the_offer], after=after)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.fact("nonces_used", [_nonce_used(ctx, payer, auth) for _, _, auth in payments])
    nonces = {auth.get("nonce") for _, _, auth in payments}
    ctx.check(len(nonces) <= 1, f"the client signed {len(nonces)} payments (nonces) for one request")
    one_transfer_to(ctx, payer, before, the_offer)


@case(
    "client.retries.lost-answer-500",
    "MUST",
    "x402#452, x402#808 (a settled payment whose answer is lost must not be paid again)",
    "When the server settles and then answers 500 without PAYMENT-RESPONSE, the client pays once",
    kind="payment",
)
async def retries_lost_answer_500(ctx: ClientContext) -> None:
    await _settles_then(ctx, lambda seen, chosen, answer: Answer(500, [], {"error": "internal error"}))


@case(
    "client.retries.lost-answer-402",
    "MUST",
    "x402#808; every reference SDK retries a request at most once",
    "When the server settles and then answers a fresh 402 without PAYMENT-RESPONSE, the client pays once",
    kind="payment",
)
async def retries_lost_answer_402(ctx: ClientContext) -> None:
    await _settles_then(ctx, lambda seen, chosen, answer: challenge(ctx, seen, [chosen]))


@case(
    "client.retries.lost-answer-closed",
    "MUST",
    "x402#452, x402#808 (a settled payment whose answer is lost must not be paid again)",
    "When the server settles and then closes the connection without answering, the client pays once",
    kind="payment",
)
async def retries_lost_answer_closed(ctx: ClientContext) -> None:
    await _settles_then(ctx, lambda seen, chosen, answer: HANG_UP)


@case(
    "client.retries.lost-answer-silent",
    "MUST",
    "x402#452, x402#808; the env contract names no client timeout, so the server hangs up after "
    f"{SILENCE:g} s of silence (a client that gives up sooner is judged on its own timeout)",
    "When the server settles and then says nothing until the client gives up, the client pays once",
    kind="payment",
)
async def retries_lost_answer_silent(ctx: ClientContext) -> None:
    await _settles_then(ctx, lambda seen, chosen, answer: HANG_UP, silence=SILENCE)


@case(
    "client.retries.settlement-pending",
    "MUST",
    "x402#2294, x402#1062 (settlement_pending: the transfer may still land)",
    "A 402 saying settlement_pending with the transaction hash does not make the client pay again",
    kind="payment",
)
async def retries_settlement_pending(ctx: ClientContext) -> None:
    def pending(seen: Seen, chosen: dict, answer: dict) -> Answer:
        if not answer.get("success"):
            return settled(answer)
        report = {**answer, "success": False, "errorReason": Reason.settlement_pending.value}
        required = payment_required(ctx, seen, [chosen], error=Reason.settlement_pending.value)
        return Answer(
            402,
            [("PAYMENT-RESPONSE", header_value(report)), ("PAYMENT-REQUIRED", header_value(required))],
            {},
        )

    await _settles_then(ctx, pending)


# -- concurrency --------------------------------------------------------------------------------------

CONCURRENT_RUNS = 4


@case(
    "client.concurrency.each-pays-once",
    "MUST",
    "x402#398 (only one of several concurrent paid requests paid); exact scheme (fresh nonce each)",
    f"{CONCURRENT_RUNS} runs at once with one payer: {CONCURRENT_RUNS} distinct nonces, each settled once",
    kind="payment",
)
async def concurrency_each_pays_once(ctx: ClientContext) -> None:
    the_offer, ctx.hostile.handler = honest(ctx)
    payer = ctx.harness.funded_account(label="client-payer")
    runs, before = await ctx.run_clients(CONCURRENT_RUNS, payer=payer)
    payments = signed(ctx)
    nonces = [auth.get("nonce") for _, _, auth in payments]
    ctx.fact("nonces_used", [_nonce_used(ctx, payer, auth) for _, _, auth in payments])
    ctx.check(
        len(set(nonces)) == CONCURRENT_RUNS,
        f"{CONCURRENT_RUNS} runs signed {len(set(nonces))} distinct nonces over {len(payments)} payments",
    )
    transfers = ctx.payer_transfers(payer, before)
    ctx.check(
        len(transfers) == CONCURRENT_RUNS
        and all(t["to"].lower() == the_offer["payTo"].lower() and t["value"] == PRICE for t in transfers),
        f"{len(transfers)} transfers of the price to the payee after {CONCURRENT_RUNS} runs, expected "
        f"{CONCURRENT_RUNS}",
    )
    failed = [
        i + 1 for i, run in enumerate(runs) if run.verdict is not None and not run.verdict.get("success")
    ]
    if failed:
        ctx.note(f"runs {failed} did not report success")
