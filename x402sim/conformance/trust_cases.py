"""Trust cases: agent identity (ERC-8004), payment mandates (AP2) and signed agents (Web Bot Auth).

Each case runs only when the target advertises the feature it is about (``trust.py``: configuration,
or for AP2 also the ``ap2`` extension declared in the server's 402), and is skipped otherwise, so a
target that knows none of them is judged exactly as before. Like every other case they judge on
chain: a refused payment must leave the payee's balance, the ``Transfer`` logs and the
authorization's ``authorizationState`` untouched; and each refusal is paired with its positive
counterpart (a mandated, well-signed payment is served and paid once; a client pays a declared agent
at its ``agentWallet``), so a target that refuses everything does not pass.

Groups (all ``trust``):

* ``client.trust.*`` (``erc8004``): the harness registers an agent on its chain's identity registry,
  with an ``agentWallet`` other than its owner, and plays a server declaring that agent in its 402
  (``extensions["8004-reputation"]``, the draft of x402#931). The client must not pay a ``payTo``
  that is not the agent's ``agentWallet`` (the owner's address included), nor one for an agent that
  is not registered; it must pay the wallet.
* ``server.trust.mandate-*`` (``ap2``): the harness is the user (a conformance key the server trusts)
  and the agent; it issues an open Payment Mandate per payment (amount range, budget, recurrence,
  allowed payees and instruments), closes it for the payment and binds it as AP2's x402 sample does
  (EIP-3009 nonce = keccak256 of the chain, the chain in ``extensions["ap2"].info.mandate``). The
  server must refuse, before settling, a payment outside the mandate (amount, payee, budget), a chain
  whose parts do not belong together or whose signature is forged, a mandate from a user it does not
  trust or past its expiry, a nonce not bound to the chain, and a payment without a mandate.
* ``server.trust.signature-*`` (``web-bot-auth``): every request the harness sends is signed with the
  conformance agent key (RFC 9421, tag ``web-bot-auth``); these cases send unsigned, expired,
  foreign-tagged, unknown-key and tampered signatures instead, which the server must refuse with a
  4xx other than 402 (and never serve or charge), while a well-signed request gets its 402.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from ..evm.contracts import IDENTITY_REGISTRY_ADDRESS, REPUTATION_REGISTRY_ADDRESS
from ..money import UNIT
from ..trust.reputation import EXTENSION as REPUTATION_EXTENSION
from .catalog import case
from .client_cases import challenge, offer, payable, same_offer, settle, settled
from .evidence import decode_lenient
from .forge import amount_of, header_value
from .hostile import Answer, Seen
from .kits import ClientContext, ServerContext
from .server_cases import not_charged, served, status_of
from .trust import AP2, ERC8004, WEB_BOT_AUTH, register_agent, tampered_signature, wall_now

_SIGNATURE_VALUE = re.compile(r"^(?P<label>[^=]+)=:(?P<bytes>[A-Za-z0-9+/=]*):$")

_WBA_RESTS_ON = "Web Bot Auth draft (draft-meunier-webbotauth-httpsig-protocol) / RFC 9421"


# ================================================================================================
# client: ERC-8004 (8004-reputation)
# ================================================================================================


def _reads_erc8004(ctx: ClientContext) -> None:
    if ERC8004 not in ctx.trust:
        ctx.skip("the client does not say it reads ERC-8004 (advertise it with --trust erc8004)")


def _declaration(ctx: ClientContext, agent_id: int) -> dict:
    """The ``8004-reputation`` entry of a 402 declaring agent ``agent_id`` of the harness chain."""
    from ..trust.reputation import AgentRef, ServerIdentity

    agent = AgentRef(agent_id, ctx.harness.chain_id, IDENTITY_REGISTRY_ADDRESS)
    return {REPUTATION_EXTENSION: ServerIdentity(agent, REPUTATION_REGISTRY_ADDRESS).declaration()}


def declaring_shop(ctx: ClientContext, accepts: list[dict], extensions: dict):
    """A handler selling every path for ``accepts`` with a 402 that declares ``extensions``; a payment
    for one of the offers is settled through the harness's facilitator, as an honest server does."""

    async def handler(seen: Seen) -> Answer:
        payment = seen.payment
        if payment is None:
            return challenge(ctx, seen, accepts, extensions=extensions)
        accepted = payment.get("accepted") if isinstance(payment, dict) else None
        chosen = next((o for o in accepts if payable(ctx, o) and same_offer(accepted, o)), None)
        if chosen is None:
            return challenge(
                ctx, seen, accepts, error="no matching payment requirements", extensions=extensions
            )
        return settled(await settle(ctx, payment, chosen))

    return handler


async def _run_against(ctx: ClientContext, the_offer: dict, extensions: dict, name: str):
    """Run the client against a declaring server selling ``the_offer``; returns ``(paid requests the
    server saw, transfers from the payer)``, recorded as facts under ``name``."""
    ctx.hostile.handler = declaring_shop(ctx, [the_offer], extensions)
    first = len(ctx.hostile.paid)
    _run, payer, before = await ctx.run_client(label=f"client run ({name})")
    paid = ctx.hostile.paid[first:]
    ctx.fact(f"{name}.paid_requests", len(paid))
    transfers = ctx.payer_transfers(payer, before, name=f"{name}.transfers")
    return paid, transfers


@case(
    "client.trust.payto-is-agent-wallet",
    "MUST",
    "x402 8004-reputation draft (issue #931): payTo checked against agentWallet before paying",
    "Against a 402 declaring an ERC-8004 agent, the client pays its agentWallet and refuses any other payTo",
    kind="payment",
)
async def payto_is_agent_wallet(ctx: ClientContext) -> None:
    _reads_erc8004(ctx)
    agent = register_agent(ctx.harness, "declared-agent")
    ctx.fact("agent", {"agentId": agent.agent_id, "owner": agent.owner, "agentWallet": agent.wallet})
    declared = _declaration(ctx, agent.agent_id)

    # The owner's address: registered, plausible, and still not where the agent is paid.
    paid, transfers = await _run_against(ctx, offer(ctx, pay_to=agent.owner), declared, "other_payto")
    ctx.check(
        not paid and not transfers,
        f"the client paid {agent.owner} (the agent's owner, not its agentWallet {agent.wallet}): "
        f"{len(paid)} paid request(s), {len(transfers)} transfer(s)",
    )
    right = offer(ctx, pay_to=agent.wallet)
    paid, transfers = await _run_against(ctx, right, declared, "agent_wallet")
    ctx.check(
        len(transfers) == 1
        and transfers[0]["to"].lower() == agent.wallet.lower()
        and transfers[0]["value"] == amount_of(right),
        f"the client did not pay the agent's agentWallet {agent.wallet} once ({len(paid)} paid request(s), "
        f"transfers {transfers}): it refuses declared agents altogether",
    )


@case(
    "client.trust.unregistered-agent",
    "SHOULD",
    "x402 8004-reputation draft (issue #931): an agent without an agentWallet cannot be paid",
    "Against a 402 declaring an agent id the registry does not know, the client does not pay",
    kind="advice",
)
async def unregistered_agent(ctx: ClientContext) -> None:
    _reads_erc8004(ctx)
    agent_id = 10**12 + ctx.rng.randrange(10**6)
    ctx.fact("agent", {"agentId": agent_id, "registered": False})
    paid, transfers = await _run_against(ctx, offer(ctx), _declaration(ctx, agent_id), "unregistered")
    ctx.check(
        not paid and not transfers,
        f"the client paid a server declaring unregistered agent {agent_id}: {len(paid)} paid request(s), "
        f"{len(transfers)} transfer(s)",
    )


# ================================================================================================
# server: AP2 payment mandates
# ================================================================================================


async def _mandate_offer(ctx: ServerContext) -> tuple[dict, dict]:
    """The target's exact offer and the 402's ``resource``; skips unless the server verifies AP2
    mandates (configured, or ``ap2`` declared in its 402)."""
    challenge_, the_offer = await ctx.offer()
    ctx.fact("ap2.declared", ctx.declares_mandates())
    if AP2 not in ctx.trust and not ctx.declares_mandates():
        ctx.skip(
            "the server neither declares the ap2 extension in its 402 nor is said to verify AP2 mandates"
        )
    if "amount" not in the_offer:
        ctx.skip("a v1 server: an AP2 mandate travels only in a v2 payment's extensions")
    assert challenge_.required is not None  # its offer was read from it
    resource = challenge_.required.get("resource")
    ctx.check(
        isinstance(resource, dict) and isinstance(resource.get("url"), str),
        "the 402 has no resource.url, which a mandate's transaction_id names",
    )
    assert isinstance(resource, dict)  # checked just above
    return the_offer, resource


async def _mandated_market(ctx: ServerContext) -> tuple[dict, dict]:
    """``_mandate_offer``, after the positive control: a payment under a fresh, fitting mandate is
    served and paid exactly once (so a server refusing everything fails the case)."""
    the_offer, resource = await _mandate_offer(ctx)
    payer = ctx.harness.funded_account()
    response, delta, transfers = await _pay_under(
        ctx,
        the_offer,
        resource,
        payer,
        ctx.mandate_for(the_offer, payer),
        "valid",
        "payment under a valid mandate",
    )
    message = (ctx.settlement_header(response)[1] or {}) if response is not None else {}
    ctx.check(
        served(response),
        f"precondition: a payment under a valid mandate by the conformance user got {status_of(response)} "
        f"({_error_of(response) or message}); is the server configured to trust AP2_TRUSTED_USER_JWK?",
    )
    ctx.check(
        len(transfers) == 1 and delta == amount_of(the_offer),
        f"precondition: a payment under a valid mandate moved {delta} in {len(transfers)} transfers",
    )
    return the_offer, resource


async def _pay_under(
    ctx: ServerContext, the_offer: dict, resource: dict, payer, chain, name: str, label: str
):
    """Pay ``the_offer`` from ``payer`` under ``chain``; the response, what reached the payee, and
    the transfers since (all recorded as facts under ``name``)."""
    _, payload = ctx.sign(the_offer, payer, chain=chain)
    before = ctx.snapshot()
    response = await ctx.pay(the_offer, ctx.payment(the_offer, payload, resource=resource), label=label)
    delta, transfers = ctx.moved_since(before, payer.address)
    ctx.fact(f"{name}.status", status_of(response))
    ctx.fact(f"{name}.payee_delta", delta)
    ctx.transfer_facts(f"{name}.transfers", transfers)
    return response, delta, transfers


def _error_of(response) -> str | None:
    """The ``error`` a 402 names (PAYMENT-REQUIRED, or a JSON body), for messages."""
    if response is None:
        return None
    header = response.headers.get("payment-required")
    document = decode_lenient(header) if header else None
    if not isinstance(document, dict):
        try:
            document = response.json()
        except ValueError:
            document = None
    error = document.get("error") if isinstance(document, dict) else None
    return str(error) if error else None


async def _refused(
    ctx: ServerContext,
    the_offer: dict,
    resource: dict,
    *,
    what: str,
    name: str,
    opened: str | None = None,
    issue: dict | None = None,
    close: dict | None = None,
    chain=None,
    payer=None,
    nonce: str | None = None,
) -> None:
    """``payer`` (default: a fresh one) pays ``the_offer`` under ``chain``, else under ``opened``
    (default: an open mandate issued with the terms ``issue``) closed with the terms ``close``, its
    nonce bound to the chain unless ``nonce`` is given: the payment must be refused, nothing moved."""
    payer = payer or ctx.harness.funded_account()
    if chain is None:
        opened = opened if opened is not None else ctx.open_mandate_for(the_offer, **(issue or {}))
        chain = ctx.mandate_for(the_offer, payer, opened, **(close or {}))
    unbound: dict[str, Any] = {"nonce": bytes.fromhex(nonce.removeprefix("0x"))} if nonce else {}
    _, payload = ctx.sign(the_offer, payer, chain=chain, **unbound)
    before = ctx.snapshot()
    response = await ctx.pay(the_offer, ctx.payment(the_offer, payload, resource=resource), label=what)
    ctx.fact(f"{name}.error", _error_of(response))
    not_charged(ctx, response, before, payer, payload["authorization"]["nonce"], what=what, name=name)


@case(
    "server.trust.mandate-amount",
    "MUST",
    "AP2 v0.2 payment.amount_range and closed payment_amount; AP2 x402 sample (amount unchecked there)",
    "A payment above the mandate's amount range, or above the closed mandate's amount, is not settled",
    kind="payment",
)
async def mandate_amount(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    price = amount_of(the_offer)
    await _refused(
        ctx,
        the_offer,
        resource,
        issue={"amount_range": (0, price - 1)},
        what=f"a payment of {price} above the range [0, {price - 1}]",
        name="over_range",
    )
    await _refused(
        ctx,
        the_offer,
        resource,
        close={"amount": price // 2},
        what=f"a payment of {price} under a closed mandate for {price // 2}",
        name="over_closed_amount",
    )


@case(
    "server.trust.mandate-payee",
    "MUST",
    "AP2 v0.2 payment.allowed_payees and closed payee",
    "A payment to a payee the mandate does not allow, or other than its closed payee, is not settled",
    kind="payment",
)
async def mandate_payee(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    elsewhere = ctx.harness.new_account("other-merchant").address
    await _refused(
        ctx,
        the_offer,
        resource,
        issue={"pay_to": [elsewhere]},
        what="a payment to a payee the mandate does not allow",
        name="not_allowed",
    )
    await _refused(
        ctx,
        the_offer,
        resource,
        issue={"pay_to": [the_offer["payTo"], elsewhere]},
        close={"pay_to": elsewhere},
        what="a payment to the server under a closed mandate paying another merchant",
        name="other_closed_payee",
    )


@case(
    "server.trust.mandate-chain",
    "MUST",
    "AP2 v0.2 mandate chain (closed mandate's sd_hash; user's signature on the open mandate)",
    "A closed mandate chained to another open mandate, or an open one with a forged signature, is refused",
    kind="spec",
)
async def mandate_chain(ctx: ServerContext) -> None:
    from ..trust.mandates import MandateChain

    the_offer, resource = await _mandated_market(ctx)
    payer = ctx.harness.funded_account()
    shown, other = ctx.mandate_for(the_offer, payer), ctx.mandate_for(the_offer, payer)
    await _refused(
        ctx,
        the_offer,
        resource,
        chain=MandateChain(shown.open, other.closed),
        payer=payer,
        what="a closed mandate chained to another open mandate",
        name="spliced",
    )
    await _refused(
        ctx,
        the_offer,
        resource,
        opened=tampered_signature(ctx.open_mandate_for(the_offer)),
        what="an open mandate whose signature was tampered with",
        name="forged",
    )


@case(
    "server.trust.mandate-issuer",
    "MUST",
    "AP2 v0.2 open mandate verified against the user's key",
    "An open mandate signed by a user key the server does not trust is refused",
    kind="spec",
)
async def mandate_issuer(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    await _refused(
        ctx,
        the_offer,
        resource,
        issue={"user_key": ctx.setup.trust_kit.stranger_user_key},
        what="a mandate issued by an untrusted user key",
        name="untrusted",
    )


@case(
    "server.trust.mandate-nonce",
    "MUST",
    "AP2 x402 sample: EIP-3009 nonce = keccak256(mandate chain)",
    "A payment whose EIP-3009 nonce is not keccak256 of the mandate chain it carries is refused",
    kind="payment",
)
async def mandate_nonce(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    payer = ctx.harness.funded_account()
    carried, unrelated = ctx.mandate_for(the_offer, payer), ctx.mandate_for(the_offer, payer)
    ctx.fact("nonce.carried_chain", carried.nonce())
    ctx.fact("nonce.signed", unrelated.nonce())
    await _refused(
        ctx,
        the_offer,
        resource,
        chain=carried,
        payer=payer,
        nonce=unrelated.nonce(),
        what="a payment whose nonce binds another mandate chain",
        name="unbound",
    )


@case(
    "server.trust.mandate-missing",
    "MUST",
    "AP2 v0.2 (a server selling under mandate accepts only mandated payments)",
    "A payment that carries no mandate is refused by a server that verifies AP2 mandates",
    kind="spec",
)
async def mandate_missing(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    payer, payload = ctx.sign(the_offer, mandate=False)
    before = ctx.snapshot()
    payment = ctx.payment(the_offer, payload, resource=resource)
    response = await ctx.pay(the_offer, payment, label="payment without a mandate")
    ctx.fact("missing.error", _error_of(response))
    nonce = payload["authorization"]["nonce"]
    not_charged(ctx, response, before, payer, nonce, what="a payment without a mandate", name="missing")


@case(
    "server.trust.mandate-expired",
    "MUST",
    "AP2 v0.2 open mandate exp",
    "A payment under an open mandate past its expiry is refused",
    kind="spec",
)
async def mandate_expired(ctx: ServerContext) -> None:
    the_offer, resource = await _mandated_market(ctx)
    await _refused(
        ctx,
        the_offer,
        resource,
        issue={"issued_at": wall_now() - 7200, "lifetime": 3600},
        what="a payment under a mandate that expired an hour ago",
        name="expired",
    )


@case(
    "server.trust.mandate-budget",
    "MUST",
    "AP2 v0.2 payment.budget (settled payments count against it)",
    "A second payment that would take a mandate past its budget is refused, the first being settled",
    kind="payment",
)
async def mandate_budget(ctx: ServerContext) -> None:
    the_offer, resource = await _mandate_offer(ctx)
    price = amount_of(the_offer)
    budget = price + price // 2
    opened = ctx.open_mandate_for(the_offer, budget=budget)
    payer = ctx.harness.funded_account(usdc=10 * price + UNIT)
    label = f"first payment under a budget of {budget}"
    response, delta, _ = await _pay_under(
        ctx, the_offer, resource, payer, ctx.mandate_for(the_offer, payer, opened), "first", label
    )
    ctx.check(
        served(response) and delta == price,
        f"precondition: the first payment under the mandate got {status_of(response)} and moved {delta}",
    )
    await _refused(
        ctx,
        the_offer,
        resource,
        opened=opened,
        what=f"a second payment of {price} past the mandate's budget of {budget}",
        name="over_budget",
    )


# ================================================================================================
# server: Web Bot Auth (RFC 9421 signed agents)
# ================================================================================================


def _enforces_signatures(ctx: ServerContext) -> None:
    if WEB_BOT_AUTH not in ctx.trust:
        ctx.skip(
            "the server is not said to enforce Web Bot Auth signatures (advertise it: --trust web-bot-auth)"
        )


def refused_agent(response) -> bool:
    """An agent refused at the door: a 4xx other than 402 (402 means admitted to the paid route)."""
    return response is not None and 400 <= response.status_code < 500 and response.status_code != 402


async def _admitted(ctx: ServerContext) -> dict:
    """The positive control: a request signed by the conformance agent gets the route's 402."""
    challenge_ = await ctx.challenge(label="request signed by the conformance agent")
    ctx.fact("signed.status", challenge_.status)
    ctx.check(
        challenge_.status == 402 and challenge_.offer(ctx.harness) is not None,
        f"precondition: a request signed by the conformance agent got {challenge_.status}, not the 402 "
        "with an exact offer; is the server configured with WEB_BOT_AUTH_JWKS?",
    )
    offer = challenge_.offer(ctx.harness)
    assert offer is not None  # checked just above
    return offer


async def _send_signed(ctx: ServerContext, label: str, signature: list[tuple[str, str]], extra=()):
    headers = [*signature, *extra]
    return await ctx.send(label, ctx.endpoint.method, ctx.endpoint.path, headers=headers, sign=False)


def _signature_for(ctx: ServerContext, **kwargs) -> list[tuple[str, str]]:
    """The signature lines for the main paid path (``kwargs``: ``signer``, ``now``)."""
    return ctx.setup.trust_kit.signature_headers(ctx.endpoint.method, ctx.url(ctx.endpoint.path), **kwargs)


def _check_refused(ctx: ServerContext, response, what: str, name: str) -> None:
    ctx.fact(f"{name}.status", status_of(response))
    ctx.fact(f"{name}.error", _error_of(response))
    ctx.check(
        refused_agent(response),
        f"{what} got {status_of(response)}: admitted (a refused agent gets 401 or 403, before any 402)",
    )


def _flip_signature(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The signature lines with one bit of the signature value flipped."""
    out = []
    for name, value in lines:
        match = _SIGNATURE_VALUE.match(value) if name.lower() == "signature" else None
        if match:
            raw = bytearray(base64.b64decode(match["bytes"]))
            raw[0] ^= 0x01
            value = f"{match['label']}=:{base64.b64encode(bytes(raw)).decode()}:"
        out.append((name, value))
    return out


@case(
    "server.trust.signature-required",
    "MUST",
    _WBA_RESTS_ON,
    "An unsigned request is refused (4xx, not 402) and an unsigned payment is neither served nor charged",
    kind="spec",
)
async def signature_required(ctx: ServerContext) -> None:
    _enforces_signatures(ctx)
    the_offer = await _admitted(ctx)
    response = await _send_signed(ctx, "unsigned request", [])
    _check_refused(ctx, response, "an unsigned request", "unsigned")

    payer, payload = ctx.sign(the_offer)  # otherwise valid: under a mandate when the server asks for one
    payment = ctx.complete(ctx.payment(the_offer, payload))
    before = ctx.snapshot()
    response = await _send_signed(
        ctx, "unsigned paid request", [], [(ctx.header_for(payment), header_value(payment))]
    )
    not_charged(
        ctx,
        response,
        before,
        payer,
        payload["authorization"]["nonce"],
        what="an unsigned paid request",
        name="unsigned_paid",
    )


@case(
    "server.trust.signature-valid",
    "MUST",
    _WBA_RESTS_ON,
    "A request signed with an unknown key, for another authority, or with a tampered signature is refused",
    kind="spec",
)
async def signature_valid(ctx: ServerContext) -> None:
    _enforces_signatures(ctx)
    await _admitted(ctx)
    kit = ctx.setup.trust_kit
    stranger = kit.signer(key=kit.stranger_bot_key)
    response = await _send_signed(ctx, "signed with an unknown key", _signature_for(ctx, signer=stranger))
    _check_refused(ctx, response, "a request signed with a key the server does not know", "unknown_key")

    response = await _send_signed(ctx, "tampered signature", _flip_signature(_signature_for(ctx)))
    _check_refused(ctx, response, "a request whose signature was tampered with", "tampered")

    elsewhere = kit.signature_headers(ctx.endpoint.method, "https://elsewhere.example" + ctx.endpoint.path)
    response = await _send_signed(ctx, "signed for another authority", elsewhere)
    _check_refused(ctx, response, "a request signed for another @authority", "other_authority")


@case(
    "server.trust.signature-expired",
    "MUST",
    _WBA_RESTS_ON + " (expires)",
    "A request whose signature expired is refused",
    kind="spec",
)
async def signature_expired(ctx: ServerContext) -> None:
    _enforces_signatures(ctx)
    await _admitted(ctx)
    kit = ctx.setup.trust_kit
    old = _signature_for(ctx, signer=kit.signer(expires_in=60), now=wall_now() - 3600)
    response = await _send_signed(ctx, "signature expired an hour ago", old)
    _check_refused(ctx, response, "a request whose signature expired an hour ago", "expired")


@case(
    "server.trust.signature-tag",
    "SHOULD",
    _WBA_RESTS_ON + ' (tag="web-bot-auth")',
    "A request signed by a known key under another profile's tag (Visa TAP) is refused as Web Bot Auth",
    kind="advice",
)
async def signature_tag(ctx: ServerContext) -> None:
    from ..trust.signatures import AGENT_BROWSER_AUTH

    _enforces_signatures(ctx)
    await _admitted(ctx)
    tap = ctx.setup.trust_kit.signer(protocol=AGENT_BROWSER_AUTH)
    response = await _send_signed(
        ctx, f"signed with tag {AGENT_BROWSER_AUTH}", _signature_for(ctx, signer=tap)
    )
    _check_refused(ctx, response, f"a request signed under the tag {AGENT_BROWSER_AUTH!r}", "wrong_tag")
