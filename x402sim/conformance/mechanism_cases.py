"""Cases of the Permit2 mechanisms: ``exact`` paid with Permit2 (``exact-permit2``) and ``upto``.

Each case names its mechanism, so ``--mechanism`` (or what a target's test.config.json says it speaks)
selects it. The harness pays as the SDK clients do (``forge.sign_permit2``: spender the scheme's
proxy, ``witness.validAfter`` 0, a random decimal nonce, upto's witness naming the facilitator), from
fresh payers that approved Permit2 (``Harness.permit2_payer``), or "cold" ones that hold the token and
no ether and gave no allowance.

Decisions these cases rest on:

* **What is paid.** A permit whose spender is not the scheme's proxy, whose ``witness.to`` is not
  ``payTo``, whose permitted amount is not the required one (exact) or whose signed maximum is not the
  requirement (upto, at ``/verify``), whose deadline has passed or whose ``validAfter`` is to come,
  or whose nonce Permit2 has spent, changes what is paid or when: a facilitator refuses it at
  ``/verify`` and at ``/settle``, and nothing moves (MUST, ``payment``).
* **upto.** Only the facilitator the witness names may settle (the upto scheme, and the proxy's
  ``UnauthorizedFacilitator``); a charge below the maximum settles exactly the charge and the answer
  says ``amount`` (x402#2437 reported a facilitator refusing it); a charge of 0 sends no transaction
  and answers ``transaction: ""`` with ``amount: "0"``; a charge above the maximum is refused without
  a transaction. A server refuses an overcharge itself, before asking its facilitator (x402#3334:
  the SDK servers forwarded it).
* **Allowance.** A payer that has not approved Permit2, with no gas-sponsoring extension, is refused
  with ``permit2_allowance_required`` by a facilitator, and answered 412 by a server (exact and upto
  schemes: "412 Precondition Failed"), never a 500, a 200 or a silent 402.
* **Gas sponsoring.** What a facilitator lists in ``/supported`` ``extensions`` it honours: a cold
  payer pays through each listed extension. A server's 402 that declares one gets a cold payer's
  payment through. A client attaches an extension's info only when the 402 declares it.
* **facilitatorAddress.** A facilitator that lists ``upto`` names in the kind's ``extra`` the address
  it settles from (one of its ``signers``); a server copies it into its upto offers.

The known weakness of the exact proxy (x402#2501: ``settle`` does not check ``msg.sender``, so whoever
sees a signed payment can settle it first) is no failure of an implementation: it is shown on chain
in the tests and described in the SDK findings, not judged here.
"""

from __future__ import annotations

import re
from typing import Any

from ..evm.eip712 import Domain, SignatureError, recover_digest
from ..evm.permit2 import (
    EXACT_PERMIT2_PROXY_ADDRESS,
    UPTO_PERMIT2_PROXY_ADDRESS,
    PermitTransfer,
    permit_witness_digest,
)
from ..mechanisms.sponsoring import SPONSORING_EXTENSIONS, client_info, declaration
from ..protocol import Reason, evm_chain_id
from .catalog import case
from .client_cases import CLOCK_SLACK, challenge, settle
from .forge import header_value, payment_v2, sign_permit2
from .harness import Account
from .hostile import Answer, Seen
from .kits import ClientContext, FacilitatorContext, ServerContext, same_address, transfer_json

PERMIT2 = "exact-permit2"
UPTO = "upto"
PRICE = 1_000
ALLOWANCE_REQUIRED = Reason.permit2_allowance_required.value
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
EXACT_SPEC = "exact EVM scheme section 2 (Permit2: PermitWitnessTransferFrom through x402ExactPermit2Proxy)"
UPTO_SPEC = (
    "upto EVM scheme spec (Permit2 witness {to, facilitator, validAfter} through x402UptoPermit2Proxy)"
)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _permit_of(authorization: dict) -> PermitTransfer | None:
    """The permit a wire ``permit2Authorization`` signs, None when it cannot be read."""
    try:
        permitted, witness = authorization["permitted"], authorization["witness"]
        facilitator = witness.get("facilitator")
        return PermitTransfer(
            token=permitted["token"],
            amount=int(permitted["amount"]),
            spender=authorization["spender"],
            nonce=int(authorization["nonce"]),
            deadline=int(authorization["deadline"]),
            to=witness["to"],
            valid_after=int(witness["validAfter"]),
            facilitator=facilitator,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _recovers_to(authorization: dict, signature: Any, chain_id: int, payer: str) -> bool:
    permit = _permit_of(authorization)
    if permit is None or not isinstance(signature, str):
        return False
    try:
        signer = recover_digest(permit_witness_digest(chain_id, permit), bytes.fromhex(signature[2:]))
    except (SignatureError, ValueError):
        return False
    return same_address(signer, payer)


def _sponsoring_entry(
    name: str, key: bytes, payer: str, offer: dict, deadline: int, chain, declared: Any = None
) -> dict:
    """The payment's ``extensions`` carrying ``name``'s info for a Permit2 payment of ``offer``."""
    extra = offer.get("extra") or {}
    domain = Domain(
        str(extra.get("name", "")),
        str(extra.get("version", "")),
        evm_chain_id(offer["network"]),
        offer["asset"],
    )
    return client_info(
        key,
        payer,
        {name: declared if isinstance(declared, dict) else declaration(name)},
        token=offer["asset"],
        domain=domain,
        amount=int(offer["amount"]),
        deadline=deadline,
        chain=chain,
    )


# -- facilitator: the harness is the resource server ---------------------------------------------------


async def _kinds(ctx: FacilitatorContext) -> dict:
    document = ctx.answer(await ctx.supported())
    return document if isinstance(document, dict) else {}


def _upto_address(ctx: FacilitatorContext, supported: dict) -> str | None:
    for kind in supported.get("kinds") or []:
        if (
            isinstance(kind, dict)
            and kind.get("scheme") == UPTO
            and kind.get("network") == ctx.harness.network
        ):
            address = (kind.get("extra") or {}).get("facilitatorAddress")
            if isinstance(address, str) and _ADDRESS.fullmatch(address):
                return address
    return None


async def permit2_requirements(ctx: FacilitatorContext, mechanism: str, amount: int = PRICE) -> dict:
    """Requirements for a fresh payee paid by ``mechanism``; upto names the facilitator's address
    (its ``/supported`` kind's, else the key it was given)."""
    extra = {
        "name": ctx.harness.asset_name,
        "version": ctx.harness.asset_version,
        "assetTransferMethod": "permit2",
    }
    if mechanism == UPTO:
        address = _upto_address(ctx, await _kinds(ctx)) or ctx.facilitator_address
        return ctx.requirements(amount, scheme=UPTO, extra={**extra, "facilitatorAddress": address})
    return ctx.requirements(amount, extra=extra)


def _signed(ctx, payer: Account, requirements: dict, **overrides) -> dict:
    return sign_permit2(payer.key, payer.address, requirements, ctx.harness.now(), ctx.rng, **overrides)


async def _refused(
    ctx: FacilitatorContext, payment: dict, requirements: dict, payer: Account, what: str, settle: bool = True
) -> dict:
    """/verify says no, /settle does not succeed (unless ``settle`` is False: then it moves at most
    the requirements' amount), and nothing else leaves the payer; the verify answer."""
    before = ctx.harness.block_number()
    verify = await ctx.call("verify", payment, requirements, label=f"POST /verify ({what})")
    ctx.check(
        verify is not None and verify.status_code < 500, f"/verify answered a payment whose {what} with a 5xx"
    )
    verdict = ctx.answer(verify)
    ctx.check(
        isinstance(verdict, dict) and verdict.get("isValid") is False,
        f"/verify did not refuse a payment whose {what}: {verdict}",
    )
    settled = await ctx.call("settle", payment, requirements, label=f"POST /settle ({what})")
    answer = ctx.answer(settled)
    ctx.check(
        settled is not None and settled.status_code < 500,
        f"/settle answered a payment whose {what} with a 5xx",
    )
    moved = ctx.fact(
        "transfers_from_payer", [transfer_json(t) for t in ctx.transfers_from(payer.address, before)]
    )
    if settle:
        ctx.check(
            not (isinstance(answer, dict) and answer.get("success") is True),
            f"/settle reported success for a payment whose {what}",
        )
        ctx.check(not moved, f"tokens left the payer for a payment whose {what}: {moved}")
    else:
        paid = sum(int(t["value"]) for t in moved)
        ctx.check(paid <= int(requirements["amount"]), f"{paid} left the payer, above the amount asked")
    return verdict


def _refusal_case(case_id: str, mechanism: str, what: str, overrides, rests_on: str, kind: str = "payment"):
    """Register a facilitator case: payments signed with each of ``overrides(ctx, requirements,
    payer)`` (a list of ``sign_permit2`` overrides) are refused everywhere and move nothing."""

    @case(
        case_id,
        "MUST",
        rests_on,
        f"A {mechanism} payment whose {what} is refused at /verify and /settle, and nothing moves"
        + (" beyond the charge" if case_id == "facilitator.upto.max-not-required" else ""),
        kind=kind,
        mechanism=mechanism,
    )
    async def run(ctx: FacilitatorContext) -> None:
        requirements = await permit2_requirements(ctx, mechanism)
        for i, change in enumerate(overrides(ctx, requirements)):
            settle = not change.pop("verify_only", False)
            payer = ctx.harness.permit2_payer()
            payment = payment_v2(requirements, _signed(ctx, payer, requirements, **change))
            await _refused(ctx, payment, requirements, payer, f"{what} ({i + 1})", settle)

    return run


_refusal_case(
    "facilitator.permit2.spender-not-proxy",
    PERMIT2,
    "permit names a spender other than the exact proxy",
    lambda ctx, req: [{"spender": ctx.facilitator_address or ctx.harness.new_account().address}],
    f"{EXACT_SPEC}: spender MUST be x402ExactPermit2Proxy",
)
_refusal_case(
    "facilitator.permit2.witness-not-payto",
    PERMIT2,
    "witness.to is not payTo",
    lambda ctx, req: [{"to": ctx.harness.new_account("thief").address}],
    f"{EXACT_SPEC}: witness.to MUST be payTo",
)
_refusal_case(
    "facilitator.permit2.amount-not-required",
    PERMIT2,
    "permitted amount is not the required amount",
    lambda ctx, req: [{"amount": PRICE - 1}, {"amount": PRICE + 1}],
    f"{EXACT_SPEC}: permitted.amount MUST equal the requirements' amount",
)
_refusal_case(
    "facilitator.permit2.deadline-passed",
    PERMIT2,
    "deadline has passed",
    lambda ctx, req: [{"deadline": ctx.harness.now() - 10}],
    f"{EXACT_SPEC}: the deadline MUST be in the future",
)
_refusal_case(
    "facilitator.permit2.not-yet-valid",
    PERMIT2,
    "witness.validAfter is in the future",
    lambda ctx, req: [{"valid_after": ctx.harness.now() + 3600}],
    f"{EXACT_SPEC}: validAfter MUST have passed",
)
_refusal_case(
    "facilitator.upto.max-not-required",
    UPTO,
    "signed maximum is not the requirement",
    # at /settle the requirements' amount is the charge: a larger permit may settle it (no more)
    lambda ctx, req: [{"amount": PRICE - 1}, {"amount": PRICE + 1, "verify_only": True}],
    f"{UPTO_SPEC}: at verify, permitted.amount MUST equal the requirements' amount (the maximum)",
)
_refusal_case(
    "facilitator.upto.other-facilitator",
    UPTO,
    "witness names another facilitator",
    lambda ctx, req: [{"facilitator": ctx.harness.new_account("other-facilitator").address}],
    f"{UPTO_SPEC}: witness.facilitator MUST be the settling facilitator",
    kind="spec",
)
_refusal_case(
    "facilitator.upto.spender-not-proxy",
    UPTO,
    "permit names a spender other than the upto proxy",
    lambda ctx, req: [{"spender": EXACT_PERMIT2_PROXY_ADDRESS}],
    f"{UPTO_SPEC}: spender MUST be x402UptoPermit2Proxy",
)


@case(
    "facilitator.permit2.nonce-reused",
    "MUST",
    f"{EXACT_SPEC}: verification simulates the settlement, which a spent Permit2 nonce reverts",
    "A Permit2 nonce already spent on chain is refused at /verify and /settle for another payment",
    kind="spec",
    mechanism=PERMIT2,
)
async def permit2_nonce_reused(ctx: FacilitatorContext) -> None:
    first = await permit2_requirements(ctx, PERMIT2)
    payer = ctx.harness.permit2_payer()
    payload = _signed(ctx, payer, first)
    settled = ctx.answer(
        await ctx.call("settle", payment_v2(first, payload), first, label="first settlement")
    )
    ctx.check(
        isinstance(settled, dict) and settled.get("success") is True,
        f"a valid payment did not settle: {settled}",
    )
    nonce = int(payload["permit2Authorization"]["nonce"])
    ctx.check(
        ctx.fact("nonce_used", ctx.harness.permit2_nonce_used(payer.address, nonce)), "the nonce is not spent"
    )
    second = await permit2_requirements(ctx, PERMIT2)  # another payee: a new payment, the same nonce
    payment = payment_v2(second, _signed(ctx, payer, second, nonce=nonce))
    await _refused(ctx, payment, second, payer, "Permit2 nonce is already spent")


@case(
    "facilitator.permit2.allowance-required",
    "MUST",
    f"{EXACT_SPEC}: no allowance for Permit2 is PERMIT2_ALLOWANCE_REQUIRED",
    "A payer without Permit2 allowance (no sponsoring) gets permit2_allowance_required, not a 5xx or a yes",
    kind="spec",
    mechanism=PERMIT2,
)
async def permit2_allowance_required(ctx: FacilitatorContext) -> None:
    requirements = await permit2_requirements(ctx, PERMIT2)
    payer = ctx.harness.funded_account()
    payment = payment_v2(requirements, _signed(ctx, payer, requirements))
    verdict = await _refused(ctx, payment, requirements, payer, "payer has not approved Permit2")
    ctx.check(
        verdict.get("invalidReason") == ALLOWANCE_REQUIRED,
        f"/verify refused with {verdict.get('invalidReason')!r}, not {ALLOWANCE_REQUIRED!r}",
    )


async def _upto_settle(ctx: FacilitatorContext, charge: int) -> tuple[dict, Account, dict, int, Any]:
    """A valid upto payment verified at the maximum and settled for ``charge``: (requirements,
    payer, the settle answer, the block before, the settle response)."""
    requirements = await permit2_requirements(ctx, UPTO)
    payer = ctx.harness.permit2_payer()
    payment = payment_v2(requirements, _signed(ctx, payer, requirements))
    verdict = ctx.answer(await ctx.call("verify", payment, requirements, label="POST /verify (the maximum)"))
    ctx.check(
        isinstance(verdict, dict) and verdict.get("isValid") is True,
        f"a valid upto payment was refused: {verdict}",
    )
    before = ctx.harness.block_number()
    charged = {**requirements, "amount": str(charge)}
    response = await ctx.call("settle", payment, charged, label=f"POST /settle (charge {charge})")
    answer = ctx.answer(response)
    return requirements, payer, answer if isinstance(answer, dict) else {}, before, response


@case(
    "facilitator.upto.charge-below-max",
    "MUST",
    f"{UPTO_SPEC}: settle moves the requirements' amount, at most the permitted; x402#2437",
    "An upto charge below the signed maximum settles exactly the charge and the answer says amount",
    kind="spec",
    mechanism=UPTO,
)
async def upto_charge_below_max(ctx: FacilitatorContext) -> None:
    charge = PRICE // 4
    requirements, payer, answer, before, _ = await _upto_settle(ctx, charge)
    ctx.check(answer.get("success") is True, f"an upto charge below the maximum was refused: {answer}")
    moved = ctx.transfers_from(payer.address, before)
    ctx.fact("transfers_from_payer", [transfer_json(t) for t in moved])
    ctx.check(
        len(moved) == 1 and moved[0].value == charge and same_address(moved[0].to, requirements["payTo"]),
        f"expected one transfer of {charge} to payTo, got {[(t.to, t.value) for t in moved]}",
    )
    ctx.check(
        str(answer.get("amount")) == str(charge),
        f"the answer's amount is {answer.get('amount')!r}, not {charge}",
    )


@case(
    "facilitator.upto.zero-charge",
    "MUST",
    f'{UPTO_SPEC}: a zero settlement sends no transaction (transaction "", amount "0")',
    'An upto charge of 0 succeeds with transaction "" and amount "0", sends nothing and moves nothing',
    kind="spec",
    mechanism=UPTO,
)
async def upto_zero_charge(ctx: FacilitatorContext) -> None:
    _, payer, answer, before, _ = await _upto_settle(ctx, 0)
    ctx.check(answer.get("success") is True, f"an upto charge of 0 was refused: {answer}")
    sent = ctx.fact("transactions", ctx.transactions_since(before))
    ctx.check(not sent, f"a charge of 0 sent {len(sent)} transaction(s)")
    ctx.check(not ctx.transfers_from(payer.address, before), "tokens left the payer for a charge of 0")
    ctx.check(
        answer.get("transaction") == "" and str(answer.get("amount")) == "0",
        f"expected transaction '' and amount '0', got {answer.get('transaction')!r} "
        f"and {answer.get('amount')!r}",
    )


@case(
    "facilitator.upto.charge-above-max",
    "MUST",
    f"{UPTO_SPEC}: a settle amount above the permitted is invalid_upto_evm_payload_settlement_exceeds_amount",
    "An upto charge above the signed maximum is refused without sending a transaction",
    kind="payment",
    mechanism=UPTO,
)
async def upto_charge_above_max(ctx: FacilitatorContext) -> None:
    _, payer, answer, before, response = await _upto_settle(ctx, PRICE + 1)
    ctx.check(
        response is not None and response.status_code < 500, "/settle answered an overcharge with a 5xx"
    )
    ctx.check(answer.get("success") is not True, "/settle reported success for a charge above the maximum")
    sent = ctx.fact("transactions", ctx.transactions_since(before))
    ctx.check(not sent, f"the facilitator sent {len(sent)} transaction(s) for a charge above the maximum")
    ctx.check(not ctx.transfers_from(payer.address, before), "tokens left the payer for an overcharge")


@case(
    "facilitator.supported.upto-facilitator-address",
    "MUST",
    f"{UPTO_SPEC}: /supported's upto kind carries extra.facilitatorAddress",
    "An upto kind in /supported names in extra.facilitatorAddress an address among its signers",
    kind="spec",
    mechanism=UPTO,
)
async def supported_upto_address(ctx: FacilitatorContext) -> None:
    supported = await _kinds(ctx)
    kinds = [k for k in supported.get("kinds") or [] if isinstance(k, dict) and k.get("scheme") == UPTO]
    ctx.check(kinds, "/supported lists no upto kind")
    address = _upto_address(ctx, supported)
    ctx.check(address is not None, f"the upto kind has no address in extra.facilitatorAddress: {kinds}")
    signers = [a for values in (supported.get("signers") or {}).values() for a in (values or [])]
    ctx.check(any(same_address(address, s) for s in signers), f"{address} is not among the signers {signers}")


def _sponsoring_case(name: str):
    @case(
        f"facilitator.sponsoring.{'eip2612' if name == SPONSORING_EXTENSIONS[0] else 'erc20-approval'}",
        "MUST",
        f"{name} extension spec; {EXACT_SPEC}",
        f"When /supported lists {name}, a payer with no ether and no allowance pays through it",
        kind="spec",
        mechanism=PERMIT2,
    )
    async def run(ctx: FacilitatorContext) -> None:
        supported = await _kinds(ctx)
        if name not in (supported.get("extensions") or []):
            ctx.skip(f"/supported does not list {name}")
        requirements = await permit2_requirements(ctx, PERMIT2)
        payer = ctx.harness.funded_account(label="cold-payer")  # tokens, no ether, no allowance
        payload = _signed(ctx, payer, requirements)
        deadline = int(payload["permit2Authorization"]["deadline"])
        extensions = _sponsoring_entry(
            name, payer.key, payer.address, requirements, deadline, ctx.harness.chain
        )
        ctx.check(extensions, f"the harness could not build {name} info")
        payment = payment_v2(requirements, payload, extensions=extensions)
        verdict = ctx.answer(await ctx.call("verify", payment, requirements))
        ctx.check(
            isinstance(verdict, dict) and verdict.get("isValid") is True, f"/verify refused it: {verdict}"
        )
        before = ctx.harness.block_number()
        answer = ctx.answer(await ctx.call("settle", payment, requirements))
        ctx.check(isinstance(answer, dict) and answer.get("success") is True, f"/settle failed: {answer}")
        moved = ctx.transfers_from(payer.address, before)
        ctx.fact("transfers_from_payer", [transfer_json(t) for t in moved])
        ctx.check(
            len(moved) == 1 and moved[0].value == PRICE and same_address(moved[0].to, requirements["payTo"]),
            f"expected one transfer of {PRICE} to payTo, got {[(t.to, t.value) for t in moved]}",
        )

    return run


for _name in SPONSORING_EXTENSIONS:
    _sponsoring_case(_name)


# -- server: the harness is the client and the facilitator ---------------------------------------------


async def server_offer(ctx: ServerContext, mechanism: str) -> tuple[str, dict, Any]:
    """The route the target sells by ``mechanism`` (path, offer, challenge); skips when it sells none
    where the run says (a declared route that offers none fails the case)."""
    route = ctx.options.mechanism_route(mechanism)
    if route is None:
        ctx.skip(f"the target's test.config.json declares no {mechanism} route")
    declared = mechanism in ctx.options.mechanism_routes
    challenge = await ctx.challenge(route.path, label=f"unpaid request ({mechanism} route)")
    scheme = UPTO if mechanism == UPTO else "exact"
    for entry in challenge.accepts:
        if not isinstance(entry, dict):
            continue
        extra = entry.get("extra") or {}
        if (
            entry.get("scheme") == scheme
            and entry.get("network") == ctx.harness.network
            and same_address(entry.get("asset"), ctx.harness.asset)
            and (scheme == UPTO or extra.get("assetTransferMethod") == "permit2")
        ):
            return route.path, entry, challenge
    message = f"{route.path} answered {challenge.status} with no {mechanism} offer on the harness's chain"
    if declared:
        ctx.fail(message)
    ctx.skip(message)


async def pay_permit2(
    ctx: ServerContext,
    offer: dict,
    path: str,
    payer: Account,
    *,
    query: str = "",
    extensions=None,
    **overrides,
):
    """Pay ``offer`` at ``path`` (+ ``query``) with a Permit2 permit from ``payer``: (response, payee
    delta, transfers touching the payee or the payer)."""
    payload = sign_permit2(payer.key, payer.address, offer, ctx.harness.now(), ctx.rng, **overrides)
    extra = {"extensions": extensions} if extensions else {}
    payment = payment_v2(offer, payload, **extra)
    snapshot = ctx.snapshot()
    response = await ctx.pay(offer, payment, path=path + query)
    delta, transfers = ctx.moved_since(snapshot, payer.address)
    ctx.fact("payee_delta", delta)
    ctx.transfer_facts("transfers", transfers)
    return response, delta, transfers


def _paid_ok(ctx: ServerContext, response, delta: int, transfers: list, amount: int, what: str) -> dict:
    ctx.check(
        response is not None and response.status_code == 200,
        f"{what}: answered {getattr(response, 'status_code', None)}, not 200",
    )
    ctx.check(delta == amount, f"{what}: the payee received {delta}, not {amount}")
    ctx.check(len(transfers) == (1 if amount else 0), f"{what}: {len(transfers)} transfers on chain")
    _, settlement = ctx.settlement_header(response)
    ctx.check(
        isinstance(settlement, dict) and settlement.get("success") is True,
        f"{what}: PAYMENT-RESPONSE says {settlement}",
    )
    return settlement


@case(
    "server.permit2.pays",
    "MUST",
    f"{EXACT_SPEC}; core spec 5 (payment flow)",
    "A Permit2 payment of the server's Permit2 offer is served with 200 and moves exactly the price",
    kind="spec",
    mechanism=PERMIT2,
)
async def server_permit2_pays(ctx: ServerContext) -> None:
    path, offer, _ = await server_offer(ctx, PERMIT2)
    response, delta, transfers = await pay_permit2(ctx, offer, path, ctx.harness.permit2_payer())
    _paid_ok(ctx, response, delta, transfers, int(offer["amount"]), "a valid Permit2 payment")


@case(
    "server.permit2.allowance-412",
    "MUST",
    f"{EXACT_SPEC}: missing allowance is answered 412 Precondition Failed (PERMIT2_ALLOWANCE_REQUIRED)",
    "A Permit2 payment from a payer without allowance is answered 412 (not 5xx, 200, 402), moves nothing",
    kind="spec",
    mechanism=PERMIT2,
)
async def server_permit2_412(ctx: ServerContext) -> None:
    path, offer, _ = await server_offer(ctx, PERMIT2)
    response, delta, transfers = await pay_permit2(ctx, offer, path, ctx.harness.funded_account())
    ctx.check(response is not None, "no answer")
    ctx.check(not transfers and delta == 0, f"tokens moved for a payer without allowance: {transfers}")
    ctx.check(
        response.status_code == 412, f"a payer without allowance was answered {response.status_code}, not 412"
    )


@case(
    "server.permit2.sponsored-cold-start",
    "MUST",
    f"eip2612GasSponsoring and erc20ApprovalGasSponsoring extension spec; {EXACT_SPEC}",
    "A payer with no ether and no allowance pays through each gas-sponsoring extension the 402 declares",
    kind="spec",
    mechanism=PERMIT2,
)
async def server_sponsored(ctx: ServerContext) -> None:
    path, offer, challenge = await server_offer(ctx, PERMIT2)
    declared = (challenge.required or {}).get("extensions") or {}
    names = [n for n in SPONSORING_EXTENSIONS if n in declared]
    if not names:
        ctx.skip("the Permit2 route's 402 declares no gas-sponsoring extension")
    for name in names:
        payer = ctx.harness.funded_account(label="cold-payer")
        deadline = ctx.harness.now() + int(offer.get("maxTimeoutSeconds", 60))
        extensions = _sponsoring_entry(
            name, payer.key, payer.address, offer, deadline, ctx.harness.chain, declared[name]
        )
        response, delta, transfers = await pay_permit2(
            ctx, offer, path, payer, extensions=extensions, deadline=deadline
        )
        _paid_ok(ctx, response, delta, transfers, int(offer["amount"]), f"a cold payer through {name}")


@case(
    "server.upto.facilitator-address",
    "MUST",
    f"{UPTO_SPEC}: accepts[].extra.facilitatorAddress is the facilitator's, from /supported",
    "The upto offer's extra.facilitatorAddress is the address the facilitator's /supported names",
    kind="spec",
    mechanism=UPTO,
)
async def server_upto_address(ctx: ServerContext) -> None:
    _, offer, _ = await server_offer(ctx, UPTO)
    named = (offer.get("extra") or {}).get("facilitatorAddress")
    ctx.fact("facilitatorAddress", named)
    ctx.check(
        same_address(named, ctx.harness.facilitator.address),
        f"extra.facilitatorAddress is {named!r}, not the facilitator's {ctx.harness.facilitator.address}",
    )


async def _upto_paid(ctx: ServerContext, charge_of):
    """Pay the upto route, asking for the charge ``charge_of(maximum)``: (maximum, charge, paid)."""
    path, offer, _ = await server_offer(ctx, UPTO)
    maximum = int(offer["amount"])
    charge = charge_of(maximum)
    payer = ctx.harness.permit2_payer()
    return maximum, charge, await pay_permit2(ctx, offer, path, payer, query=f"?charge={charge}")


@case(
    "server.upto.charge-below-max",
    "MUST",
    f"{UPTO_SPEC}: the server settles the actual usage, at most the maximum; PAYMENT-RESPONSE amount",
    "An upto request charged below the maximum is served, moves exactly the charge, and says amount",
    kind="spec",
    mechanism=UPTO,
)
async def server_upto_below(ctx: ServerContext) -> None:
    _, charge, (response, delta, transfers) = await _upto_paid(ctx, lambda maximum: maximum // 4)
    settlement = _paid_ok(ctx, response, delta, transfers, charge, "a charge below the maximum")
    ctx.check(
        str(settlement.get("amount")) == str(charge),
        f"PAYMENT-RESPONSE amount is {settlement.get('amount')!r}",
    )


@case(
    "server.upto.zero-charge",
    "MUST",
    f'{UPTO_SPEC}: a zero charge is no transaction (transaction "", amount "0")',
    'An upto request charged 0 is served, moves nothing, and its PAYMENT-RESPONSE says transaction ""',
    kind="spec",
    mechanism=UPTO,
)
async def server_upto_zero(ctx: ServerContext) -> None:
    _, _, (response, delta, transfers) = await _upto_paid(ctx, lambda maximum: 0)
    settlement = _paid_ok(ctx, response, delta, transfers, 0, "a charge of 0")
    ctx.check(
        settlement.get("transaction") == "" and str(settlement.get("amount")) == "0",
        f"PAYMENT-RESPONSE says transaction {settlement.get('transaction')!r}, "
        f"amount {settlement.get('amount')!r}",
    )


@case(
    "server.upto.overcharge-refused",
    "MUST",
    "x402#3334 (the server must not settle a charge above the authorized maximum); upto EVM scheme spec",
    "An upto charge above the maximum is refused by the server itself: no such /settle, no move, no 200",
    kind="bug",
    mechanism=UPTO,
)
async def server_upto_overcharge(ctx: ServerContext) -> None:
    maximum, _, (response, delta, transfers) = await _upto_paid(ctx, lambda maximum: maximum + 1)
    await ctx.facilitator_quiet(ctx.facilitator_timeout)
    asked = [
        c.body.get("paymentRequirements", {}).get("amount")
        for c in ctx.harness.control.calls
        if c.path == "/settle" and isinstance(c.body, dict)
    ]
    ctx.fact("settle_amounts_asked", asked)
    ctx.check(not transfers and delta == 0, f"tokens moved for an overcharge: {transfers}")
    ctx.check(response is not None and response.status_code != 200, "an overcharge was answered 200")
    over = [a for a in asked if (_int(a) or 0) > maximum]
    ctx.check(not over, f"the server asked its facilitator to settle {over} above the maximum {maximum}")


# -- client: the harness is the resource server --------------------------------------------------------


def client_offer(ctx: ClientContext, mechanism: str, amount: int = PRICE) -> dict:
    extra = {
        "name": ctx.harness.asset_name,
        "version": ctx.harness.asset_version,
        "assetTransferMethod": "permit2",
    }
    if mechanism == UPTO:
        extra["facilitatorAddress"] = ctx.harness.facilitator.address
    return {
        "scheme": UPTO if mechanism == UPTO else "exact",
        "network": ctx.harness.network,
        "amount": str(amount),
        "asset": ctx.harness.asset,
        "payTo": ctx.harness.new_account("payee").address,
        "maxTimeoutSeconds": 60,
        "extra": extra,
    }


def permit2_shop(ctx: ClientContext, the_offer: dict, charge: int | None = None, **fields):
    """A handler selling every path for ``the_offer``: 402, then settle through the harness's
    facilitator (for ``charge`` when given: upto) and answer 200, 412 for a missing allowance, or 402."""

    async def handler(seen: Seen) -> Answer:
        payment = seen.payment
        if payment is None:
            return challenge(ctx, seen, [the_offer], **fields)
        requirements = the_offer if charge is None else {**the_offer, "amount": str(charge)}
        answer = await settle(ctx, payment, requirements)
        ok = bool(answer.get("success"))
        status = 200 if ok else 412 if answer.get("errorReason") == ALLOWANCE_REQUIRED else 402
        return Answer(status, [("PAYMENT-RESPONSE", header_value(answer))], {"paid": ok})

    return handler


def _permit2_payments(ctx: ClientContext) -> list[dict]:
    found = []
    for seen in ctx.hostile.paid:
        payment = seen.payment
        payload = payment.get("payload") if isinstance(payment, dict) else None
        found.append(payload if isinstance(payload, dict) else {})
    ctx.fact("payloads", found)
    return found


def _check_permit(ctx: ClientContext, payload: dict, the_offer: dict, payer: Account, started: int) -> dict:
    authorization = payload.get("permit2Authorization")
    if not isinstance(authorization, dict):
        ctx.fail(f"the payment carries no permit2Authorization: {payload}")
    upto = the_offer["scheme"] == UPTO
    proxy = UPTO_PERMIT2_PROXY_ADDRESS if upto else EXACT_PERMIT2_PROXY_ADDRESS
    permitted = authorization.get("permitted") or {}
    witness = authorization.get("witness") or {}
    ctx.check(
        same_address(authorization.get("spender"), proxy),
        f"spender is {authorization.get('spender')}, not the proxy {proxy}",
    )
    ctx.check(
        same_address(witness.get("to"), the_offer["payTo"]), f"witness.to is {witness.get('to')}, not payTo"
    )
    ctx.check(
        same_address(permitted.get("token"), the_offer["asset"]),
        f"permitted.token is {permitted.get('token')}",
    )
    ctx.check(
        str(permitted.get("amount")) == the_offer["amount"],
        f"permitted.amount is {permitted.get('amount')!r}",
    )
    if upto:
        named = the_offer["extra"]["facilitatorAddress"]
        ctx.check(
            same_address(witness.get("facilitator"), named),
            f"witness.facilitator is {witness.get('facilitator')}, not {named}",
        )
    deadline, valid_after = _int(authorization.get("deadline")), _int(witness.get("validAfter"))
    now = ctx.harness.now()
    ctx.check(
        deadline is not None and started < deadline <= now + the_offer["maxTimeoutSeconds"] + CLOCK_SLACK,
        f"deadline {authorization.get('deadline')!r} is not within maxTimeoutSeconds of now ({now})",
    )
    ctx.check(
        valid_after is not None and valid_after <= now + CLOCK_SLACK,
        f"validAfter {witness.get('validAfter')!r}",
    )
    ctx.check(
        _recovers_to(authorization, payload.get("signature"), ctx.harness.chain_id, payer.address),
        "the signature does not recover to the payer over the permit it names",
    )
    return authorization


def _signs_case(mechanism: str):
    @case(
        f"client.{'upto' if mechanism == UPTO else 'permit2'}.signs-permit",
        "MUST",
        UPTO_SPEC if mechanism == UPTO else EXACT_SPEC,
        f"Against a {mechanism} offer the client signs the proxy as spender, payTo as witness.to, the "
        "amount, the deadline" + (" and the named facilitator" if mechanism == UPTO else "") + ", and pays",
        kind="payment",
        mechanism=mechanism,
    )
    async def run(ctx: ClientContext) -> None:
        the_offer = client_offer(ctx, mechanism)
        charge = PRICE // 2 if mechanism == UPTO else None
        ctx.hostile.handler = permit2_shop(ctx, the_offer, charge)
        started = ctx.harness.now() - CLOCK_SLACK
        payer = ctx.harness.permit2_payer(label="client-payer")
        _run, payer, before = await ctx.run_client(payer=payer)
        payloads = _permit2_payments(ctx)
        ctx.check(len(payloads) == 1, f"the client sent {len(payloads)} paid requests, expected 1")
        _check_permit(ctx, payloads[0], the_offer, payer, started)
        transfers = ctx.payer_transfers(payer, before)
        expected = charge if charge is not None else PRICE
        ctx.check(
            len(transfers) == 1 and transfers[0]["value"] == expected,
            f"expected one transfer of {expected} from the payer, got {transfers}",
        )

    return run


_signs_case(PERMIT2)
_signs_case(UPTO)


@case(
    "client.permit2.sponsoring-only-declared",
    "MUST",
    "eip2612GasSponsoring and erc20ApprovalGasSponsoring extension spec (a client adds a declared one)",
    "A client without Permit2 allowance attaches no gas-sponsoring info the 402 did not declare",
    kind="spec",
    mechanism=PERMIT2,
)
async def client_sponsoring_undeclared(ctx: ClientContext) -> None:
    the_offer = client_offer(ctx, PERMIT2)
    ctx.hostile.handler = permit2_shop(ctx, the_offer)
    await ctx.run_client()  # a funded payer that gave Permit2 no allowance
    attached = [
        sorted(set((s.payment or {}).get("extensions") or {}) & set(SPONSORING_EXTENSIONS))
        for s in ctx.hostile.paid
        if isinstance(s.payment, dict)
    ]
    ctx.fact("sponsoring_attached", attached)
    ctx.check(not any(attached), f"the client attached undeclared gas-sponsoring info: {attached}")
