"""Facilitator cases: the harness plays the resource server and posts /verify and /settle bodies.

Rules of this catalog:

* Every payment is signed by a fresh funded payer for a fresh payee, so a case judges by deltas and
  by its own authorization (``Transfer`` logs from the payer, ``authorizationState`` of its nonce,
  the transactions carrying its nonce), never by the chain as a whole.
* Reasons are judged by class (``reason_class``, the synonym table of the reference notes, section
  5), never by one SDK's spelling. Where the SDKs legitimately report a condition under different
  classes (a used nonce at settle: ``nonce_used``, ``transaction_failed``, ``duplicate``), the case
  accepts each of them and says so.
* An invalid payment may be answered HTTP 200 with ``isValid: false`` / ``success: false`` or with a
  4xx; never with a 5xx, never as valid or settled. A case that refuses a payment at ``/verify``
  also posts it to ``/settle`` and checks on chain that nothing moved and the nonce is unused.
* A settlement counts as a success only when the answered transaction has a successful receipt
  holding the ``Transfer`` of the amount from the payer to the payee.
* ``settlement_pending`` cannot be provoked from outside: the harness's chain mines every
  transaction as it arrives and a target's receipt wait is its own. The pending case therefore
  judges whatever the target answers: a pending answer must name a transaction the chain holds,
  and its resend must broadcast nothing new.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..mechanisms import PAYMENT_FLOWS
from ..protocol import V1_EVM_CHAIN_IDS, ReasonClass, reason_class
from .catalog import case
from .forge import domain_of, high_s, payment_v2
from .harness import Account
from .kits import FacilitatorContext

C = ReasonClass
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")

# A settle refused because the authorization was already used: the SDKs say it in several classes
# (x402#452: the official facilitators surface AuthorizationUsed as a transaction failure).
NONCE_GONE = (C.nonce_used, C.duplicate, C.transaction_failed, C.simulation)

# Test contracts deployed as "assets" (runtime code; each answers any call with one zero word):
# GAS_HUNGRY succeeds only when more than 1,000,000 gas is left (so a simulation passes and a
# transaction with a fixed gas limit reverts); NO_OP succeeds and transfers nothing.
GAS_HUNGRY = bytes.fromhex("620f42405a11600e5760006000fd5b60206000f3")
NO_OP = bytes.fromhex("60206000f3")

# Text that betrays an internal error (x402#3171): a stack trace or a runtime's exception names.
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "TypeError",
    "AttributeError",
    "KeyError",
    "NoneType",
    "ValueError",
    "Cannot read propert",
    "undefined is not",
    "is not a function",
    "panic:",
    "nil pointer",
    "stack trace",
)


@dataclass
class Signed:
    """A payment the harness signed: who signed it, the wire payload and the requirements."""

    payer: Account
    payload: dict
    payment: dict
    requirements: dict

    @property
    def nonce(self) -> str:
        return self.payload["authorization"]["nonce"]

    @property
    def pay_to(self) -> str:
        return self.requirements["payTo"]

    @property
    def amount(self) -> int:
        return int(self.requirements["amount"])


def signed(
    ctx: FacilitatorContext, requirements: dict | None = None, payer: Account | None = None, **overrides
) -> Signed:
    requirements = requirements or ctx.requirements()
    payer, payload = ctx.sign(requirements, payer, **overrides)
    return Signed(payer, payload, payment_v2(requirements, payload), requirements)


def _copy(document):
    return json.loads(json.dumps(document))


def _transfer_json(t) -> dict:
    return {"from": t.from_, "to": t.to, "value": t.value, "tx": "0x" + t.tx_hash.hex()}


def _classes(classes) -> str:
    return " or ".join(c.value for c in classes)


# -- judging ---------------------------------------------------------------------------------------


def judge_refusal(ctx: FacilitatorContext, response, what: str, classes=None, name: str | None = None):
    """The answer of ``/verify`` or ``/settle`` to a payment it must refuse: a 4xx, or a 2xx with
    ``isValid``/``success`` false; with ``classes``, a reason of one of them. Returns the reason."""
    name = name or what
    flag = "isValid" if what == "verify" else "success"
    ctx.require_answer(response, name)
    status = response.status_code
    ctx.check(status < 500, f"{name} answered HTTP {status} (a server error) to a payment it must refuse")
    answer = ctx.answer(response)
    if 200 <= status < 300:
        ctx.check(isinstance(answer, dict), f"{name} answered {status} without a JSON object")
        ctx.check(
            answer.get(flag) is False,
            f"{name} answered {flag}={answer.get(flag)!r} to a payment it must refuse",
        )
    else:
        ctx.check(400 <= status < 500, f"{name} answered HTTP {status}")
        ctx.check(
            not (isinstance(answer, dict) and answer.get(flag) is True),
            f"{name} answered {status} with {flag}=true",
        )
    reason = None
    if isinstance(answer, dict):
        reason = answer.get("invalidReason") if what == "verify" else answer.get("errorReason")
        reason = reason if reason is not None else answer.get("errorReason", answer.get("invalidReason"))
    if classes is not None:
        cls = reason_class(reason)
        ctx.fact(f"{name}.reason", reason)
        ctx.fact(f"{name}.reason_class", cls.value)
        if reason is None and not 200 <= status < 300:
            ctx.note(f"{name} refused with HTTP {status} and no reason code; the class is not judged")
            return None
        ctx.check(
            cls in classes,
            f"{name} refused with reason {reason!r} (class {cls.value}); expected class {_classes(classes)}",
        )
    return reason


def judge_valid(ctx: FacilitatorContext, response, s: Signed, name: str = "verify") -> dict:
    """``/verify`` of a valid payment: 200, ``isValid: true``, the payer named."""
    ctx.require_answer(response, name)
    ctx.check(response.status_code == 200, f"{name} of a valid payment answered HTTP {response.status_code}")
    answer = ctx.answer(response)
    ctx.check(isinstance(answer, dict), f"{name} answered without a JSON object")
    ctx.check(
        answer.get("isValid") is True,
        f"{name} refused a valid payment: isValid={answer.get('isValid')!r}, "
        f"reason {answer.get('invalidReason')!r}",
    )
    return answer


def judge_landed(ctx: FacilitatorContext, response, s: Signed, name: str = "settle") -> dict:
    """``/settle`` of a valid payment: 200, ``success: true``, and the answered transaction has a
    successful receipt holding the Transfer of the amount from the payer to the payee."""
    ctx.require_answer(response, name)
    ctx.check(response.status_code == 200, f"{name} of a valid payment answered HTTP {response.status_code}")
    answer = ctx.answer(response)
    ctx.check(isinstance(answer, dict), f"{name} answered without a JSON object")
    ctx.check(
        answer.get("success") is True,
        f"{name} of a valid payment did not succeed: success={answer.get('success')!r}, "
        f"reason {answer.get('errorReason')!r}",
    )
    tx = answer.get("transaction")
    receipt, ok = ctx.landed(tx, s.payer.address, s.pay_to, s.amount)
    ctx.fact(f"{name}.transaction", tx)
    ctx.fact(f"{name}.receipt_success", receipt.success if receipt else None)
    ctx.fact(f"{name}.receipt_transfers", [_transfer_json(t) for t in receipt.transfers()] if receipt else [])
    ctx.check(receipt is not None, f"{name} answered transaction {tx!r}, which has no receipt on chain")
    ctx.check(
        ok,
        f"the receipt of {tx} does not hold a successful Transfer of {s.amount} from {s.payer.address} "
        f"to {s.pay_to}",
    )
    return answer


def nothing_moved(ctx: FacilitatorContext, s: Signed, since_block: int, *, nonce_unused: bool = True) -> None:
    """On chain: no Transfer from the payer since ``since_block``, and (by default) its nonce unused."""
    transfers = ctx.transfers_from(s.payer.address, since_block)
    ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
    ctx.fact("payee_balance", ctx.harness.balance(s.pay_to))
    ctx.check(
        not transfers, f"{len(transfers)} Transfer(s) left the payer for a payment that must be refused"
    )
    if nonce_unused:
        used = ctx.fact("authorization_used", ctx.harness.used(s.payer.address, s.nonce))
        ctx.check(not used, "the refused authorization's nonce is used on chain")


async def refused(
    ctx: FacilitatorContext,
    s: Signed,
    classes,
    *,
    payment: dict | None = None,
    requirements: dict | None = None,
) -> None:
    """The common body of a verify-reason case: ``/verify`` refuses with a reason of ``classes``,
    ``/settle`` of the same body does not succeed, and nothing moves on chain."""
    payment = payment if payment is not None else s.payment
    requirements = requirements if requirements is not None else s.requirements
    before = ctx.harness.block_number()
    response = await ctx.call("verify", payment, requirements)
    judge_refusal(ctx, response, "verify", classes)
    response = await ctx.call("settle", payment, requirements)
    judge_refusal(ctx, response, "settle")
    nothing_moved(ctx, s, before)


# -- /supported ------------------------------------------------------------------------------------


async def _supported(ctx: FacilitatorContext) -> dict:
    response = await ctx.supported()
    ctx.require_answer(response, "GET /supported")
    ctx.check(response.status_code == 200, f"GET /supported answered HTTP {response.status_code}")
    answer = ctx.answer(response)
    ctx.check(isinstance(answer, dict), "GET /supported did not answer a JSON object")
    return answer


@case(
    "facilitator.supported.shape",
    "MUST",
    "facilitator API (GET /supported); reference notes section 4",
    "GET /supported answers kinds, each with an integer x402Version, a scheme and a network",
    kind="spec",
)
async def supported_shape(ctx: FacilitatorContext) -> None:
    answer = await _supported(ctx)
    kinds = answer.get("kinds")
    ctx.check(isinstance(kinds, list) and kinds, f"kinds is not a non-empty list: {kinds!r}")
    assert isinstance(kinds, list)  # checked just above
    for i, kind in enumerate(kinds):
        ctx.check(isinstance(kind, dict), f"kinds[{i}] is not an object")
        version = kind.get("x402Version")
        ctx.check(
            type(version) is int and version in (1, 2), f"kinds[{i}].x402Version is {version!r}, not 1 or 2"
        )
        for key in ("scheme", "network"):
            ctx.check(isinstance(kind.get(key), str) and kind[key], f"kinds[{i}].{key} is {kind.get(key)!r}")
    extensions = answer.get("extensions")
    ctx.check(extensions is None or isinstance(extensions, list), f"extensions is {extensions!r}, not a list")


@case(
    "facilitator.supported.harness-network",
    "MUST",
    "facilitator API (GET /supported)",
    "GET /supported lists the exact scheme for x402 v2 on the network the facilitator was configured for",
    kind="spec",
)
async def supported_network(ctx: FacilitatorContext) -> None:
    answer = await _supported(ctx)
    kinds = answer.get("kinds")
    kinds = kinds if isinstance(kinds, list) else []
    listed = [(k.get("x402Version"), k.get("scheme"), k.get("network")) for k in kinds if isinstance(k, dict)]
    ctx.fact("supported.kinds", listed)
    ctx.check(
        (2, "exact", ctx.harness.network) in listed,
        f"no kind {{x402Version: 2, scheme: exact, network: {ctx.harness.network}}} in {listed}",
    )


@case(
    "facilitator.supported.signers-are-addresses",
    "MUST",
    "facilitator API (GET /supported signers); reference notes section 4",
    "The signers of GET /supported, when present, map network patterns to lists of EVM addresses",
    kind="spec",
)
async def supported_signers(ctx: FacilitatorContext) -> None:
    answer = await _supported(ctx)
    signers = answer.get("signers")
    if signers is None:
        ctx.skip("the facilitator lists no signers")
    ctx.check(isinstance(signers, dict), f"signers is {signers!r}, not an object")
    for pattern, addresses in signers.items():
        ctx.check(isinstance(addresses, list), f"signers[{pattern!r}] is not a list")
        if pattern.startswith("eip155"):
            bad = [a for a in addresses if not (isinstance(a, str) and _ADDRESS.fullmatch(a))]
            ctx.check(not bad, f"signers[{pattern!r}] holds values that are no EVM address: {bad}")


# -- /verify ---------------------------------------------------------------------------------------


@case(
    "facilitator.verify.valid-payment",
    "MUST",
    "facilitator API (POST /verify); exact EVM scheme",
    "A valid payment is answered isValid true, naming the payer as the authorization's from",
    kind="spec",
)
async def verify_valid(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    answer = judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements), s)
    payer = ctx.fact("verify.payer", answer.get("payer"))
    ctx.check(
        isinstance(payer, str) and payer.lower() == s.payer.address.lower(),
        f"verify named payer {payer!r}, not {s.payer.address}",
    )


@case(
    "facilitator.verify.does-not-move-funds",
    "MUST",
    "core spec (verify checks, settle executes); reference notes section 1",
    "Verify moves nothing and leaves the nonce unused, even twice; the payment still settles afterwards",
    kind="spec",
)
async def verify_moves_nothing(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    before = ctx.harness.block_number()
    balance = ctx.harness.balance(s.payer.address)
    for label in ("verify", "verify again"):
        judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements, label=label), s, label)
        transfers = ctx.transfers_from(s.payer.address, before)
        ctx.fact(f"after {label}.payer_transfers", [_transfer_json(t) for t in transfers])
        used = ctx.fact(f"after {label}.authorization_used", ctx.harness.used(s.payer.address, s.nonce))
        delta = ctx.fact(f"after {label}.payer_delta", ctx.harness.balance(s.payer.address) - balance)
        ctx.check(
            not transfers and delta == 0, f"{label} moved funds: {len(transfers)} Transfer(s), delta {delta}"
        )
        ctx.check(not used, f"{label} used the authorization's nonce on chain")
    judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)


@case(
    "facilitator.verify.unsupported-scheme",
    "MUST",
    "exact EVM verify step 1; core spec 9 (unsupported_scheme); reference notes section 3",
    "A payment and requirements of a scheme other than exact are refused with a scheme reason",
    kind="spec",
)
async def verify_scheme(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    requirements = {**s.requirements, "scheme": "bogus-scheme"}
    await refused(ctx, s, (C.scheme,), payment=payment_v2(requirements, s.payload), requirements=requirements)


@case(
    "facilitator.verify.network-mismatch",
    "MUST",
    "exact EVM verify step 2; reference notes section 3",
    "A payment whose accepted network differs from the requirements' is refused with a network reason",
    kind="spec",
)
async def verify_network_mismatch(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    other = "eip155:1" if ctx.harness.network != "eip155:1" else "eip155:8453"
    payment = payment_v2({**s.requirements, "network": other}, s.payload)
    await refused(ctx, s, (C.network,), payment=payment)


def _foreign_network(ctx: FacilitatorContext) -> str:
    return "eip155:1" if ctx.harness.network != "eip155:1" else "eip155:8453"


@case(
    "facilitator.verify.foreign-network",
    "SHOULD",
    "exact EVM verify step 3; facilitator API (GET /supported) (Python SDK 2.25 judges it on its own chain)",
    "A payment on a chain the facilitator does not serve is refused (network, network config or scheme)",
    kind="advice",
)
async def verify_foreign_network(ctx: FacilitatorContext) -> None:
    s = signed(ctx, ctx.requirements(network=_foreign_network(ctx)))
    await refused(ctx, s, (C.network, C.network_config, C.scheme))


@case(
    "facilitator.verify.missing-eip712-domain",
    "STRICT",
    "exact EVM verify step 4 (every SDK); reference notes section 7 (a wrong EIP-712 domain)",
    "Requirements whose extra lacks the EIP-712 name and version are refused with an eip712-domain or "
    "malformed-requirements reason",
    kind="hardening",
)
async def verify_missing_domain(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    requirements = {**s.requirements, "extra": {}}
    await refused(
        ctx,
        s,
        (C.eip712_domain, C.malformed_requirements),
        payment=payment_v2(requirements, s.payload),
        requirements=requirements,
    )


@case(
    "facilitator.verify.recipient-mismatch",
    "MUST",
    "exact EVM verify step 5; reference notes section 3",
    "An authorization paying another address than payTo is refused with a recipient reason",
    kind="payment",
)
async def verify_recipient(ctx: FacilitatorContext) -> None:
    s = signed(ctx, to=ctx.harness.new_account("elsewhere").address)
    await refused(ctx, s, (C.recipient,))


@case(
    "facilitator.verify.value-under",
    "MUST",
    "exact EVM verify step 6; reference notes section 3",
    "An authorization for less than the amount is refused with an amount reason",
    kind="payment",
)
async def verify_value_under(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements()
    s = signed(ctx, requirements, value=int(requirements["amount"]) - 1)
    await refused(ctx, s, (C.amount,))


@case(
    "facilitator.verify.value-over",
    "MUST",
    "exact EVM verify step 6 (exact amount, overpayment refused too); reference notes section 3",
    "An authorization for more than the amount is refused with an amount reason",
    kind="payment",
)
async def verify_value_over(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements()
    s = signed(ctx, requirements, value=int(requirements["amount"]) + 1)
    await refused(ctx, s, (C.amount,))


@case(
    "facilitator.verify.expired",
    "MUST",
    "exact EVM verify step 7; EIP-3009 validBefore",
    "An authorization whose validBefore has passed is refused with an expired reason",
    kind="payment",
)
async def verify_expired(ctx: FacilitatorContext) -> None:
    now = ctx.harness.now()
    s = signed(ctx, valid_after=now - 600, valid_before=now - 1)
    await refused(ctx, s, (C.expired,))


@case(
    "facilitator.verify.expires-too-soon",
    "STRICT",
    "exact EVM verify step 7 (validBefore >= now + 6, every SDK: it would expire before its block lands)",
    "An authorization expiring within 6 s (less than a block's time) is refused with an expired reason",
    kind="hardening",
)
async def verify_expires_soon(ctx: FacilitatorContext) -> None:
    now = ctx.harness.now()
    s = signed(ctx, valid_after=now - 600, valid_before=now + 3)
    await refused(ctx, s, (C.expired,))


@case(
    "facilitator.verify.not-yet-valid",
    "MUST",
    "exact EVM verify step 8; EIP-3009 validAfter",
    "An authorization whose validAfter is in the future is refused with a not-yet-valid reason",
    kind="payment",
)
async def verify_not_yet_valid(ctx: FacilitatorContext) -> None:
    now = ctx.harness.now()
    s = signed(ctx, valid_after=now + 3600, valid_before=now + 7200)
    await refused(ctx, s, (C.not_yet_valid,))


@case(
    "facilitator.verify.bad-signature",
    "MUST",
    "exact EVM verify step 9; reference notes section 3",
    "A signature that does not cover the authorization sent is refused with a signature reason",
    kind="spec",
)
async def verify_bad_signature(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    payload = _copy(s.payload)
    payload["authorization"]["nonce"] = "0x" + ctx.rng.randbytes(32).hex()  # signed over another nonce
    s = Signed(s.payer, payload, payment_v2(s.requirements, payload), s.requirements)
    await refused(ctx, s, (C.signature,))


@case(
    "facilitator.verify.signer-not-from",
    "MUST",
    "exact EVM verify step 9 (the signature recovers to from)",
    "An authorization signed by another key than its from address is refused with a signature reason",
    kind="spec",
)
async def verify_signer_not_from(ctx: FacilitatorContext) -> None:
    s = signed(ctx, sign_key=ctx.harness.new_account("impostor").key)
    await refused(ctx, s, (C.signature,))


@case(
    "facilitator.verify.signed-chain-id-mismatch",
    "MUST",
    "exact EVM scheme, EIP-712 domain (chainId from the network); reference notes section 7",
    "A signature over a domain of another chain id is refused with a signature reason",
    kind="spec",
)
async def verify_chain_id(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements()
    other = 1 if ctx.harness.chain_id != 1 else 8453
    s = signed(ctx, requirements, domain=domain_of(requirements, chain_id=other))
    await refused(ctx, s, (C.signature,))


@case(
    "facilitator.verify.token-name-mismatch",
    "MUST",
    "exact EVM verify step 10 (simulation); reference notes sections 3 and 7",
    "Requirements with a wrong EIP-712 token name (signed accordingly) are refused: token name or signature",
    kind="spec",
)
async def verify_token_name(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements(extra={"name": "Not The Token", "version": ctx.harness.asset_version})
    s = signed(ctx, requirements)
    await refused(ctx, s, (C.token_name, C.signature))


@case(
    "facilitator.verify.token-version-mismatch",
    "MUST",
    "exact EVM verify step 10 (simulation); reference notes sections 3 and 7",
    "Requirements with a wrong EIP-712 version (signed accordingly) are refused: token version or signature",
    kind="spec",
)
async def verify_token_version(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements(extra={"name": ctx.harness.asset_name, "version": "99"})
    s = signed(ctx, requirements)
    await refused(ctx, s, (C.token_version, C.signature))


@case(
    "facilitator.verify.nonce-used",
    "MUST",
    "exact EVM verify step 10; EIP-3009 authorizationState",
    "After a payment settled, verifying it again is refused with a nonce-used reason",
    kind="spec",
)
async def verify_nonce_used(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements, label="settle first"), s)
    before = ctx.harness.block_number()
    response = await ctx.call("verify", s.payment, s.requirements, label="verify after settlement")
    judge_refusal(ctx, response, "verify", (C.nonce_used, C.duplicate))
    response = await ctx.call("settle", s.payment, s.requirements, label="settle again")
    judge_refusal(ctx, response, "settle")
    nothing_moved(ctx, s, before, nonce_unused=False)


@case(
    "facilitator.verify.insufficient-balance",
    "MUST",
    "exact EVM verify step 10; core spec 6.1.2 (balance)",
    "A payer holding less than the amount is refused with a balance reason",
    kind="spec",
)
async def verify_balance(ctx: FacilitatorContext) -> None:
    requirements = ctx.requirements(amount=5_000)
    payer = ctx.harness.funded_account(usdc=4_999)
    s = signed(ctx, requirements, payer)
    await refused(ctx, s, (C.balance,))


@case(
    "facilitator.verify.eoa-asset",
    "MUST",
    "x402#2554 (fixed in the TypeScript SDK; Python SDK 2.25 lacks the check)",
    "Requirements whose asset is an address without code (an EOA) are refused",
    kind="bug",
)
async def verify_eoa_asset(ctx: FacilitatorContext) -> None:
    s = signed(ctx, ctx.requirements(asset=ctx.harness.new_account("eoa").address))
    await refused(
        ctx, s, (C.asset_not_contract, C.simulation, C.eip3009_unsupported, C.malformed_requirements)
    )


@case(
    "facilitator.verify.high-s-signature",
    "STRICT",
    "x402#2386, x402#2728, EIP-2 (the SDKs leave it to the token's own check)",
    "The malleable high-s twin of a valid signature is refused with a signature reason",
    kind="hardening",
)
async def verify_high_s(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    payload = _copy(s.payload)
    payload["signature"] = high_s(s.payload["signature"])
    s = Signed(s.payer, payload, payment_v2(s.requirements, payload), s.requirements)
    await refused(ctx, s, (C.signature,))


@case(
    "facilitator.verify.judges-requirements",
    "SHOULD",
    "x402 v2 spec (/verify judges the payment against paymentRequirements); reference notes section 2; both "
    "SDKs. A facilitator refusing the mismatch is stricter, and pays nothing wrong",
    "A payment signed for the requirements is valid and settles though accepted names other payTo and amount",
    kind="advice",
)
async def verify_judges_requirements(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    decoy = {**s.requirements, "payTo": ctx.harness.new_account("decoy").address, "amount": "2000"}
    payment = payment_v2(decoy, s.payload)
    judge_valid(ctx, await ctx.call("verify", payment, s.requirements), s)
    judge_landed(ctx, await ctx.call("settle", payment, s.requirements), s)


@case(
    "facilitator.verify.ignores-accepted",
    "MUST",
    "reference notes section 2 (the facilitator checks paymentRequirements, not accepted)",
    "A payment matching its accepted copy but not the requirements sent is refused with a recipient reason",
    kind="payment",
)
async def verify_ignores_accepted(ctx: FacilitatorContext) -> None:
    accepted = ctx.requirements()
    s = signed(ctx, accepted)
    requirements = {**accepted, "payTo": ctx.harness.new_account("server-payee").address}
    await refused(ctx, s, (C.recipient,), requirements=requirements)


# -- /settle ---------------------------------------------------------------------------------------


@case(
    "facilitator.settle.valid-lands",
    "MUST",
    "facilitator API (POST /settle)",
    "Settling a valid payment answers success with a transaction that moved the amount on chain",
    kind="spec",
)
async def settle_lands(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    before = ctx.harness.block_number()
    payer_before = ctx.harness.balance(s.payer.address)
    answer = judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)
    ctx.check(
        _TX_HASH.fullmatch(str(answer.get("transaction"))), "transaction is not a 0x-prefixed 32-byte hash"
    )
    payee = ctx.fact("payee_balance", ctx.harness.balance(s.pay_to))
    delta = ctx.fact("payer_delta", ctx.harness.balance(s.payer.address) - payer_before)
    transfers = ctx.transfers_from(s.payer.address, before)
    ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
    used = ctx.fact("authorization_used", ctx.harness.used(s.payer.address, s.nonce))
    ctx.check(payee == s.amount and delta == -s.amount, f"payee holds {payee}, payer moved {delta}")
    ctx.check(len(transfers) == 1, f"{len(transfers)} Transfers left the payer, expected 1")
    ctx.check(used, "the authorization's nonce is not used on chain")
    payer = answer.get("payer")
    ctx.check(
        payer is None or (isinstance(payer, str) and payer.lower() == s.payer.address.lower()),
        f"settle named payer {payer!r}, not {s.payer.address}",
    )


@case(
    "facilitator.settle.names-payer",
    "SHOULD",
    "SettleResponse.payer (optional in v2, required in v1); both SDKs answer it",
    "A successful settlement names the payer as the authorization's from",
    kind="advice",
)
async def settle_payer(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    answer = judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)
    payer = ctx.fact("settle.payer", answer.get("payer"))
    ctx.check(
        isinstance(payer, str) and payer.lower() == s.payer.address.lower(),
        f"settle named payer {payer!r}, not {s.payer.address}",
    )


@case(
    "facilitator.settle.echoes-network",
    "MUST",
    "SettleResponse.network (required)",
    "A successful settlement answers the network of the requirements",
    kind="spec",
)
async def settle_network(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    answer = judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)
    network = ctx.fact("settle.network", answer.get("network"))
    ctx.check(network == s.requirements["network"], f"settle answered network {network!r}")


@case(
    "facilitator.settle.sender-is-signer",
    "SHOULD",
    "facilitator API (GET /supported signers); x402scan counts transfers by known facilitator addresses",
    "The settlement transaction is sent from an address GET /supported lists as a signer",
    kind="advice",
)
async def settle_sender(ctx: FacilitatorContext) -> None:
    answer = ctx.answer(await ctx.supported())
    signers = answer.get("signers") if isinstance(answer, dict) else None
    if not isinstance(signers, dict) or not signers:
        ctx.skip("the facilitator lists no signers")
    listed = {
        a.lower()
        for k, v in signers.items()
        if k.startswith("eip155") and isinstance(v, list)
        for a in v
        if isinstance(a, str)
    }
    s = signed(ctx)
    settled = judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)
    receipt = ctx.harness.receipt(settled["transaction"])
    sender = ctx.fact("settle.sender", receipt.sender)
    ctx.fact("supported.signers", sorted(listed))
    ctx.check(sender.lower() in listed, f"the settlement was sent by {sender}, not a listed signer")


@case(
    "facilitator.settle.double-settle",
    "MUST",
    "EIP-3009 (single-use nonce); x402#452 (the reason is judged by class, leniently)",
    "Settling the same payment twice: the second answers success false and moves nothing",
    kind="payment",
)
async def settle_twice(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    before = ctx.harness.block_number()
    judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements, label="settle"), s)
    second = await ctx.call("settle", s.payment, s.requirements, label="settle again")
    judge_refusal(ctx, second, "settle", NONCE_GONE, name="second settle")
    transfers = ctx.transfers_from(s.payer.address, before)
    ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
    ctx.check(len(transfers) == 1, f"{len(transfers)} Transfers left the payer, expected 1")


@case(
    "facilitator.settle.concurrent-distinct",
    "MUST",
    "facilitator API (POST /settle executes a payment); reference notes section 7 (tx nonce collisions)",
    "Five distinct payments settled at once all succeed, each with its own transaction and Transfer",
    kind="spec",
)
async def settle_concurrent_distinct(ctx: FacilitatorContext) -> None:
    payments = [signed(ctx) for _ in range(5)]
    responses = await asyncio.gather(
        *(
            ctx.call("settle", s.payment, s.requirements, label=f"settle #{i + 1}")
            for i, s in enumerate(payments)
        )
    )
    hashes = []
    for i, (s, response) in enumerate(zip(payments, responses, strict=True)):
        answer = judge_landed(ctx, response, s, name=f"settle #{i + 1}")
        hashes.append(answer["transaction"].lower())
    ctx.fact("transactions", hashes)
    ctx.check(len(set(hashes)) == len(hashes), "two settlements answered the same transaction")


@case(
    "facilitator.settle.concurrent-same",
    "MUST",
    "x402#2801 (success for every concurrent /settle of the same payment); EIP-3009 single-use nonce",
    "Five concurrent settles of one payment: exactly one succeeds and exactly one Transfer lands",
    kind="payment",
)
async def settle_concurrent_same(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    before = ctx.harness.block_number()
    responses = await asyncio.gather(
        *(ctx.call("settle", s.payment, s.requirements, label=f"settle copy #{i + 1}") for i in range(5))
    )
    winners = []
    for i, response in enumerate(responses):
        name = f"settle copy #{i + 1}"
        ctx.require_answer(response, name)
        ctx.check(response.status_code < 500, f"{name} answered HTTP {response.status_code}")
        answer = ctx.answer(response)
        if isinstance(answer, dict) and answer.get("success") is True:
            winners.append((name, answer))
    transfers = ctx.transfers_from(s.payer.address, before)
    ctx.fact("successes", len(winners))
    ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
    ctx.check(len(transfers) == 1, f"{len(transfers)} Transfers left the payer, expected exactly 1")
    ctx.check(len(winners) == 1, f"{len(winners)} of 5 concurrent settles of one payment answered success")
    name, answer = winners[0]
    _, ok = ctx.landed(answer.get("transaction"), s.payer.address, s.pay_to, s.amount)
    ctx.check(ok, f"{name} answered success with a transaction that does not hold the Transfer")


@case(
    "facilitator.settle.same-nonce-distinct-payments",
    "MUST",
    "x402#1805 (one transaction answered for several requests); EIP-3009 single-use nonce",
    "Two different payments sharing one nonce, settled at once: each success is backed by its own Transfer",
    kind="payment",
)
async def settle_same_nonce(ctx: FacilitatorContext) -> None:
    payer = ctx.harness.funded_account()
    nonce = ctx.rng.randbytes(32)
    first = signed(ctx, ctx.requirements(), payer, nonce=nonce)
    second = signed(ctx, ctx.requirements(amount=2_000), payer, nonce=nonce)
    before = ctx.harness.block_number()
    responses = await asyncio.gather(
        ctx.call("settle", first.payment, first.requirements, label="settle payment A"),
        ctx.call("settle", second.payment, second.requirements, label="settle payment B"),
    )
    for name, s, response in (("settle A", first, responses[0]), ("settle B", second, responses[1])):
        ctx.require_answer(response, name)
        ctx.check(response.status_code < 500, f"{name} answered HTTP {response.status_code}")
        answer = ctx.answer(response)
        if isinstance(answer, dict) and answer.get("success") is True:
            _, ok = ctx.landed(answer.get("transaction"), payer.address, s.pay_to, s.amount)
            ctx.fact(f"{name}.backed", ok)
            ctx.check(
                ok,
                f"{name} answered success with transaction {answer.get('transaction')!r}, which holds no "
                f"Transfer of {s.amount} to its payee {s.pay_to}",
            )
    transfers = ctx.transfers_from(payer.address, before)
    ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
    ctx.check(len(transfers) <= 1, f"{len(transfers)} Transfers left the payer under one nonce")


@case(
    "facilitator.settle.drained-after-verify",
    "MUST",
    "x402#1169 (the payer drains between verify and settle); settle re-verifies",
    "A payer that moves its balance away after verify: settle answers success false and nothing moves",
    kind="payment",
)
async def settle_drained(ctx: FacilitatorContext) -> None:
    payer = ctx.harness.funded_account(eth=10**17)
    s = signed(ctx, payer=payer)
    judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements), s)
    ctx.send_token(payer, ctx.harness.new_account("sink").address, ctx.harness.balance(payer.address))
    ctx.fact("payer_balance_after_drain", ctx.harness.balance(payer.address))
    before = ctx.harness.block_number()
    response = await ctx.call("settle", s.payment, s.requirements)
    judge_refusal(ctx, response, "settle", (C.balance, C.simulation, C.transaction_failed))
    nothing_moved(ctx, s, before)


@case(
    "facilitator.settle.nonce-used-elsewhere",
    "MUST",
    "x402#1169 (the authorization is used between verify and settle); settle re-verifies",
    "An authorization settled through another facilitator after verify: settle answers success false",
    kind="payment",
)
async def settle_used_elsewhere(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements), s)
    body = {"x402Version": 2, "paymentPayload": s.payment, "paymentRequirements": s.requirements}
    response = await ctx.send(
        "settle through the harness facilitator",
        "POST",
        ctx.harness.facilitator_url + "/settle",
        json_body=body,
    )
    elsewhere = ctx.answer(response)
    if not (isinstance(elsewhere, dict) and elsewhere.get("success") is True):
        raise RuntimeError(f"the harness facilitator did not settle the payment: {elsewhere}")
    before = ctx.harness.block_number()
    response = await ctx.call("settle", s.payment, s.requirements)
    judge_refusal(ctx, response, "settle", NONCE_GONE)
    nothing_moved(ctx, s, before, nonce_unused=False)


@case(
    "facilitator.settle.cancelled-after-verify",
    "MUST",
    "x402#1169 (the payer cancels between verify and settle); EIP-3009 cancelAuthorization",
    "An authorization the payer cancels on chain after verify: settle answers success false, nothing moves",
    kind="payment",
)
async def settle_cancelled(ctx: FacilitatorContext) -> None:
    payer = ctx.harness.funded_account(eth=10**17)
    s = signed(ctx, payer=payer)
    judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements), s)
    ctx.cancel_authorization(payer, s.nonce, s.requirements)
    ctx.fact("cancelled", ctx.harness.used(payer.address, s.nonce))
    before = ctx.harness.block_number()
    response = await ctx.call("settle", s.payment, s.requirements)
    judge_refusal(ctx, response, "settle", NONCE_GONE)
    nothing_moved(ctx, s, before, nonce_unused=False)


@case(
    "facilitator.settle.reverifies-before-sending",
    "SHOULD",
    "exact EVM settle (re-verify, then send); reference notes section 3",
    "Settling an expired authorization sends no transaction for it (it is refused before the chain)",
    kind="advice",
)
async def settle_reverifies(ctx: FacilitatorContext) -> None:
    now = ctx.harness.now()
    s = signed(ctx, valid_after=now - 600, valid_before=now - 1)
    before = ctx.harness.block_number()
    judge_refusal(ctx, await ctx.call("settle", s.payment, s.requirements), "settle")
    sent = ctx.fact("transactions_carrying_nonce", ctx.authorization_txs(s.nonce, before))
    nothing_moved(ctx, s, before)
    ctx.check(
        not sent, f"the facilitator sent {len(sent)} doomed transaction(s) for an expired authorization"
    )


async def _settle_on_fake_asset(ctx: FacilitatorContext, runtime: bytes) -> None:
    asset = ctx.deploy(runtime)
    ctx.fact("asset", asset)
    s = signed(ctx, ctx.requirements(asset=asset))
    before = ctx.harness.block_number()
    response = await ctx.call("settle", s.payment, s.requirements)
    ctx.require_answer(response, "settle")
    ctx.check(response.status_code < 500, f"settle answered HTTP {response.status_code}")
    answer = ctx.answer(response)
    sent = ctx.authorization_txs(s.nonce, before)
    statuses = {}
    for tx in sent:
        receipt = ctx.harness.receipt(tx)
        statuses[tx] = {
            "success": receipt.success if receipt else None,
            "transfers": len(receipt.transfers()) if receipt else 0,
        }
    ctx.fact("settlement_transactions", statuses)
    if not sent:
        ctx.note("the facilitator sent no transaction (it refused before the chain)")
    success = isinstance(answer, dict) and answer.get("success") is True
    ctx.fact("settle.success", success)
    if success:
        receipt = ctx.harness.receipt(str(answer.get("transaction", "")))
        backed = receipt is not None and receipt.success and bool(receipt.transfers())
        ctx.fact("settle.backed_by_transfer", backed)
        state = "is missing" if receipt is None else "failed" if not receipt.success else "holds no Transfer"
        ctx.check(
            backed,
            f"settle answered success for transaction {answer.get('transaction')!r}, whose receipt {state}",
        )


@case(
    "facilitator.settle.reverted-not-success",
    "MUST",
    "exact EVM settle (receipt status); reference notes section 3",
    "A settlement transaction that reverts on chain (though its simulation passed) is never answered success",
    kind="payment",
)
async def settle_reverted(ctx: FacilitatorContext) -> None:
    await _settle_on_fake_asset(ctx, GAS_HUNGRY)


@case(
    "facilitator.settle.no-transfer-not-success",
    "MUST",
    "exact EVM settle (check the Transfer log); reference notes section 7 (PYUSD, x402#2554)",
    "A settlement whose successful receipt holds no Transfer (a token that does not pay) is never success",
    kind="payment",
)
async def settle_no_transfer(ctx: FacilitatorContext) -> None:
    await _settle_on_fake_asset(ctx, NO_OP)


# -- malformed input -------------------------------------------------------------------------------


async def malformed(
    ctx: FacilitatorContext, bodies: Sequence[tuple[str, bytes | str]], payer: Account | None = None
):
    """Post each body to /verify and /settle: 4xx or a 2xx refusal, never a 5xx or a success; and
    nothing leaves ``payer`` on chain."""
    before = ctx.harness.block_number()
    for endpoint in ("verify", "settle"):
        for label, content in bodies:
            response = await ctx.post_raw(endpoint, content, label=f"{endpoint}: {label}")
            judge_refusal(ctx, response, endpoint, name=f"{endpoint} of {label}")
    if payer is not None:
        transfers = ctx.transfers_from(payer.address, before)
        ctx.fact("payer_transfers", [_transfer_json(t) for t in transfers])
        ctx.check(not transfers, f"{len(transfers)} Transfer(s) left the payer for a malformed body")


def _body(payment, requirements, version=2) -> str:
    return json.dumps(
        {"x402Version": version, "paymentPayload": payment, "paymentRequirements": requirements}
    )


def _with(s: Signed, **authorization) -> str:
    payload = _copy(s.payload)
    payload["authorization"].update(authorization)
    return _body(payment_v2(s.requirements, payload), s.requirements)


@case(
    "facilitator.input.non-json",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "Bodies that are not JSON get a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_non_json(ctx: FacilitatorContext) -> None:
    await malformed(
        ctx,
        [
            ("text", b"not json at all"),
            ("truncated JSON", b'{"x402Version": 2, "paymentPayload": {'),
            ("invalid UTF-8", b"\xff\xfe\x00{"),
        ],
    )


@case(
    "facilitator.input.empty-body",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "An empty body gets a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_empty(ctx: FacilitatorContext) -> None:
    await malformed(ctx, [("an empty body", b"")])


@case(
    "facilitator.input.json-null",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "A JSON null body gets a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_null(ctx: FacilitatorContext) -> None:
    await malformed(ctx, [("JSON null", b"null")])


@case(
    "facilitator.input.non-object-json",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "JSON bodies that are no object (array, string, number, boolean) get a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_non_object(ctx: FacilitatorContext) -> None:
    await malformed(
        ctx, [("an array", b"[]"), ("a string", b'"verify"'), ("a number", b"42"), ("true", b"true")]
    )


@case(
    "facilitator.input.empty-object",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "An empty JSON object gets a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_empty_object(ctx: FacilitatorContext) -> None:
    await malformed(ctx, [("{}", b"{}")])


@case(
    "facilitator.input.unknown-version",
    "SHOULD",
    "spec error registry (invalid_x402_version); x402Version is 1 or 2 (Python SDK 2.25 ignores it)",
    'A body of an unknown x402Version (3, "2", none) gets a 4xx or a refusal, never a 5xx',
    kind="advice",
)
async def input_unknown_version(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    await malformed(ctx, _version_bodies(s), s.payer)


def _version_bodies(s: Signed) -> list[tuple[str, str]]:
    """The payment ``s`` under an unknown x402Version (3, "2") and under none."""
    body = json.loads(_body(s.payment, s.requirements))
    bodies = []
    for label, version in (("x402Version 3", 3), ('x402Version "2"', "2")):
        bodies.append(
            (
                label,
                json.dumps(
                    {**body, "x402Version": version, "paymentPayload": {**s.payment, "x402Version": version}}
                ),
            )
        )
    bodies.append(("no x402Version", json.dumps({k: v for k, v in body.items() if k != "x402Version"})))
    return bodies


@case(
    "facilitator.input.v1-shaped",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015 (500 on a v1-shaped body)",
    "A v1 body for another chain (v1 payload and v1 requirements) gets a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_v1(ctx: FacilitatorContext) -> None:
    name, chain_id = next((n, c) for n, c in sorted(V1_EVM_CHAIN_IDS.items()) if c != ctx.harness.chain_id)
    payee = ctx.harness.new_account("payee").address
    v1 = {
        "scheme": "exact",
        "network": name,
        "maxAmountRequired": "1000",
        "asset": ctx.harness.asset,
        "payTo": payee,
        "resource": "http://127.0.0.1/protected",
        "description": "a v1 requirement",
        "mimeType": "application/json",
        "maxTimeoutSeconds": 60,
        "extra": {"name": ctx.harness.asset_name, "version": ctx.harness.asset_version},
    }
    v2_view = {**v1, "network": f"eip155:{chain_id}", "amount": "1000"}
    payer, payload = ctx.sign(v2_view)
    payment = {"x402Version": 1, "scheme": "exact", "network": name, "payload": payload}
    await malformed(ctx, [("a v1 body", _body(payment, v1, version=1))], payer)


@case(
    "facilitator.input.payload-null",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "paymentPayload null gets a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_payload_null(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    await malformed(ctx, [("paymentPayload null", _body(None, s.requirements))], s.payer)


@case(
    "facilitator.input.requirements-null",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); x402#3015",
    "paymentRequirements null gets a 4xx or a refusal, never a 5xx or a settlement",
    kind="no-5xx",
)
async def input_requirements_null(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    await malformed(ctx, [("paymentRequirements null", _body(s.payment, None))], s.payer)


@case(
    "facilitator.input.accepted-null",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); core spec 5.2 (accepted is required); x402#3171",
    "A payment whose accepted is null (otherwise valid) gets a 4xx or a refusal, never a 5xx or a settlement",
    kind="no-5xx",
)
async def input_accepted_null(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    bodies = [
        ("accepted null", _body({**s.payment, "accepted": None}, s.requirements)),
        ("accepted missing", _body({k: v for k, v in s.payment.items() if k != "accepted"}, s.requirements)),
    ]
    await malformed(ctx, bodies, s.payer)


@case(
    "facilitator.input.huge-value",
    "MUST",
    "reference notes section 7 (amounts near 2^256); EIP-3009 uint256",
    "Values and amounts of 2^256 and beyond (strings and JSON numbers) get a 4xx or a refusal, never a 5xx",
    kind="payment",
)
async def input_huge(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    big = 2**256
    bodies = [
        ("value 2^256", _with(s, value=str(big))),
        ("value 10^80", _with(s, value=str(10**80))),
        ("value 2^256 as a JSON number", _with(s, value=big)),
        ("validBefore 2^256", _with(s, validBefore=str(big))),
        ("amount 2^256", _body(s.payment, {**s.requirements, "amount": str(big)})),
        (
            "amount 2^256 + 1000 in both",
            _body(
                payment_v2({**s.requirements, "amount": str(big + 1000)}, s.payload),
                {**s.requirements, "amount": str(big + 1000)},
            ),
        ),
    ]
    await malformed(ctx, bodies, s.payer)


@case(
    "facilitator.input.non-hex-signature",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); exact EVM payload (signature is 0x-prefixed hex)",
    "Signatures that are not 65 bytes of hex get a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_signature(ctx: FacilitatorContext) -> None:
    s = signed(ctx)

    def body(signature):
        payload = {**_copy(s.payload), "signature": signature}
        return _body(payment_v2(s.requirements, payload), s.requirements)

    bodies = [
        ("signature with non-hex digits", body("0x" + "zz" * 65)),
        ("empty signature", body("")),
        ("signature of 64 bytes", body(s.payload["signature"][:130])),
        ("signature of 200 bytes", body("0x" + "ab" * 200)),
        ("signature as a number", body(12345)),
        ("signature null", body(None)),
    ]
    await malformed(ctx, bodies, s.payer)


@case(
    "facilitator.input.non-integer-value",
    "MUST",
    "core spec 5 (amounts in atomic units; EIP-3009 value is a uint256); reference notes section 7",
    "Negative, decimal, exponent or word values and amounts get a 4xx or a refusal, no 5xx, no settlement",
    kind="payment",
)
async def input_non_integer(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    bodies = [(f"value {v!r}", _with(s, value=v)) for v in ("-1000", "1000.5", "1e3", "", "ten")]
    bodies += [(f"amount {a!r}", _with_amount(s, a)) for a in ("-1000", "1000.5", "1e3")]
    await malformed(ctx, bodies, s.payer)


def _with_amount(s: Signed, amount: str) -> str:
    """The payment ``s`` with ``amount`` in both its accepted copy and the requirements."""
    changed = {**s.requirements, "amount": amount}
    return _body(payment_v2(changed, s.payload), changed)


def _loose_bodies(s: Signed) -> list[tuple[str, str]]:
    """The payment ``s`` with its value or amount spelt loosely: padded with whitespace or with a zero
    fraction. Every reader that takes such a spelling reads the signed number."""
    value = s.payload["authorization"]["value"]
    values = (f" {value}", f"{value} ", f"\t{value}", f"{value}.0")
    amounts = (f" {s.amount}", f"{s.amount}\n", f"{s.amount}.0")
    bodies = [(f"value {v!r}", _with(s, value=v)) for v in values]
    return bodies + [(f"amount {a!r}", _with_amount(s, a)) for a in amounts]


@case(
    "facilitator.input.loose-number",
    "STRICT",
    "reference notes section 2 (amounts are decimal strings); read as the number, it pays exactly",
    "Values and amounts spelling the signed number loosely (' 1000', '1000.0') are refused, not read as it",
    kind="spelling",
)
async def input_loose_number(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    await malformed(ctx, _loose_bodies(s), s.payer)


@case(
    "facilitator.input.tolerated-no-5xx",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400; 500 is for internal errors); x402#3015",
    "An unknown x402Version, a foreign network or a loosely spelt value gets no 5xx, refused or accepted",
    kind="no-5xx",
)
async def input_tolerated_no_5xx(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    foreign = signed(ctx, ctx.requirements(network=_foreign_network(ctx)))
    bodies = [
        *_version_bodies(s),
        ("a payment on a foreign network", _body(foreign.payment, foreign.requirements)),
        *_loose_bodies(s),
    ]
    statuses = {}
    for endpoint in ("verify", "settle"):
        for label, content in bodies:
            response = await ctx.post_raw(endpoint, content, label=f"{endpoint}: {label}")
            statuses[f"{endpoint} of {label}"] = response.status_code if response is not None else None
    ctx.fact("statuses", statuses)
    bad = {name: status for name, status in statuses.items() if status is None or status >= 500}
    ctx.check(not bad, f"answered with a server error or not at all: {bad}")


@case(
    "facilitator.input.short-nonce",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); exact EVM payload (nonce is 32 bytes of hex)",
    "Nonces that are not 32 bytes of hex get a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_nonce(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    bodies = [
        (f"nonce {n!r}", _with(s, nonce=n))
        for n in ("0x1234", "0x" + "00" * 31, "0x" + "00" * 33, "0x" + "g" * 64, "", None)
    ]
    await malformed(ctx, bodies, s.payer)


@case(
    "facilitator.input.bad-address",
    "MUST",
    "HTTP transport spec v2 (malformed -> 400); exact EVM payload (addresses are 20 bytes of hex)",
    "Addresses that are not 20 bytes of hex (payTo, asset, from, to) get a 4xx or a refusal, never a 5xx",
    kind="no-5xx",
)
async def input_address(ctx: FacilitatorContext) -> None:
    s = signed(ctx)

    def requirements(**fields):
        changed = {**s.requirements, **fields}
        return _body(payment_v2(changed, s.payload), changed)

    bodies = [
        ("payTo 0x123", requirements(payTo="0x123")),
        ("payTo null", requirements(payTo=None)),
        ("asset 'usdc'", requirements(asset="usdc")),
        ("asset of 21 bytes", requirements(asset="0x" + "11" * 21)),
        ("authorization.from 0xnot", _with(s, **{"from": "0xnot"})),
        ("authorization.to a number", _with(s, to=42)),
    ]
    await malformed(ctx, bodies, s.payer)


@case(
    "facilitator.input.no-error-leak",
    "STRICT",
    "x402#3171 (a null accepted throws and leaks the error text)",
    "Answers to malformed bodies carry no internal error text (stack traces, runtime exception names)",
    kind="hardening",
)
async def input_no_leak(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    bodies = [
        ("accepted null", _body({**s.payment, "accepted": None}, s.requirements)),
        ("payload null", _body({**s.payment, "payload": None}, s.requirements)),
        (
            "authorization null",
            _body({**s.payment, "payload": {**s.payload, "authorization": None}}, s.requirements),
        ),
        ("paymentPayload null", _body(None, s.requirements)),
        ("paymentRequirements null", _body(s.payment, None)),
        ("extra null", _body(s.payment, {**s.requirements, "extra": None})),
        ("not JSON", "{"),
    ]
    leaks = []
    for endpoint in ("verify", "settle"):
        for label, content in bodies:
            response = await ctx.post_raw(endpoint, content, label=f"{endpoint}: {label}")
            text = response.text if response is not None else ""
            found = [m for m in LEAK_MARKERS if m in text]
            if found:
                leaks.append(f"{endpoint} of {label}: {', '.join(found)}")
    ctx.fact("leaks", leaks)
    ctx.check(not leaks, "internal error text in answers: " + "; ".join(leaks))


# -- 2026: /verify is read-only --------------------------------------------------------------------


@case(
    "facilitator.verify.read-only",
    "MUST",
    "x402-reference 11 (/verify MUST NOT write on chain or commit payment state); core spec (verify "
    "checks, settle executes)",
    "Verifying valid and invalid copies of a payment sends no transaction and commits nothing: it "
    "verifies again and settles once",
    kind="spec",
)
async def verify_read_only(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    tampered = _copy(s.payment)
    tampered["payload"]["authorization"]["value"] = str(2 * s.amount)
    elsewhere = {**s.requirements, "payTo": ctx.harness.new_account("payee").address}
    facilitator = ctx.facilitator_address
    before = ctx.harness.block_number()
    sent_before = ctx.transaction_count(facilitator) if facilitator else 0
    payer_before = ctx.harness.balance(s.payer.address)
    # Refused copies carry the same nonce: a verify that remembered them would refuse the payment.
    calls = (
        ("verify a tampered copy", tampered, s.requirements, False),
        ("verify", s.payment, s.requirements, True),
        ("verify against another payee", s.payment, elsewhere, False),
        ("verify again", s.payment, s.requirements, True),
    )
    for label, payment, requirements, valid in calls:
        response = await ctx.call("verify", payment, requirements, label=label)
        if valid:
            judge_valid(ctx, response, s, label)
        else:
            judge_refusal(ctx, response, "verify", name=label)
    mined = ctx.fact("transactions_after_verify", ctx.transactions_since(before))
    ctx.check(not mined, f"{len(mined)} transaction(s) were mined while only /verify was called: {mined}")
    if facilitator is None:
        ctx.note("the target was given no settlement key: its pending transactions are not counted")
    else:
        sent = ctx.fact("facilitator_transactions_sent", ctx.transaction_count(facilitator) - sent_before)
        ctx.check(
            sent == 0, f"the facilitator's key sent {sent} transaction(s) while only /verify was called"
        )
    delta = ctx.fact("payer_delta", ctx.harness.balance(s.payer.address) - payer_before)
    used = ctx.fact("authorization_used", ctx.harness.used(s.payer.address, s.nonce))
    ctx.check(delta == 0 and not used, f"/verify moved {-delta} or used the nonce (used: {used})")
    judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements), s)
    attempts = ctx.fact("nonce_transactions", ctx.authorization_txs(s.nonce, before))
    ctx.check(len(attempts) == 1, f"{len(attempts)} transactions carry the authorization, expected 1")


# -- 2026: settlement_pending --------------------------------------------------------------------------


def _pending(answer: Any) -> bool:
    """Whether a settle answer says ``settlement_pending`` (by class, whatever the spelling)."""
    return (
        isinstance(answer, dict)
        and answer.get("success") is not True
        and reason_class(answer.get("errorReason")) is C.settlement_pending
    )


def judge_pending(ctx: FacilitatorContext, answer: dict, name: str) -> str:
    """A ``settlement_pending`` answer names a 0x 32-byte transaction hash the chain holds (mined or
    pending); returns it."""
    tx = ctx.fact(f"{name}.transaction", answer.get("transaction"))
    ctx.check(
        isinstance(tx, str) and _TX_HASH.fullmatch(tx),
        f"{name} answered settlement_pending with transaction {tx!r}, not a transaction hash",
    )
    ctx.check(
        ctx.chain_knows(tx),
        f"{name} answered settlement_pending with {tx}, a transaction the chain never saw",
    )
    return tx


@case(
    "facilitator.settle.pending-has-transaction",
    "MUST",
    "x402-reference 11; x402#3083 (settlement_pending MUST carry the transaction hash; "
    "the server resends the identical "
    "settle once, x402#3214, and the facilitator reconciles it with what it broadcast)",
    "A settlement_pending answer names a transaction on chain; the resent settle broadcasts nothing new",
    kind="spec",
)
async def settle_pending_has_transaction(ctx: FacilitatorContext) -> None:
    s = signed(ctx)
    before = ctx.harness.block_number()
    response = await ctx.call("settle", s.payment, s.requirements)
    first = ctx.answer(response)
    if not _pending(first):
        ctx.note(
            "the settlement was not answered settlement_pending (the harness's chain mines at once): the "
            "answer is judged as a settlement that landed"
        )
        judge_landed(ctx, response, s)
        return
    tx = judge_pending(ctx, first, "settle")
    resent = await ctx.call("settle", s.payment, s.requirements, label="settle resent")
    again = ctx.answer(resent)
    attempts = ctx.fact("nonce_transactions", ctx.authorization_txs(s.nonce, before))
    ctx.check(len(attempts) <= 1, f"the authorization was broadcast {len(attempts)} times: {attempts}")
    if _pending(again):
        same = judge_pending(ctx, again, "settle resent")
        ctx.check(same.lower() == tx.lower(), f"the resent settle is pending on {same}, not on {tx}")
        return
    receipt = ctx.harness.receipt(tx)
    if receipt is not None and not receipt.success:
        judge_refusal(ctx, resent, "settle", name="settle resent")  # it reverted: a failure is the truth
        return
    answer = judge_landed(ctx, resent, s, "settle resent")
    ctx.check(
        str(answer.get("transaction")).lower() == tx.lower(),
        f"the resent settle answered {answer.get('transaction')}, not the pending transaction {tx}",
    )


# -- 2026: reserved extra keys ----------------------------------------------------------------------

UNKNOWN_METHOD = "carrier-pigeon"
UNKNOWN_FLOW = "streaming"


def with_extra(ctx: FacilitatorContext, **keys: str) -> dict:
    """Requirements (see ``FacilitatorContext.requirements``) with ``keys`` added to ``extra``."""
    requirements = ctx.requirements()
    return {**requirements, "extra": {**requirements["extra"], **keys}}


async def refused_by_name(ctx: FacilitatorContext, s: Signed) -> None:
    """``/verify`` and ``/settle`` of ``s`` both refuse it naming a reason, and nothing moves."""
    before = ctx.harness.block_number()
    for what in ("verify", "settle"):
        reason = judge_refusal(ctx, await ctx.call(what, s.payment, s.requirements), what)
        ctx.fact(f"{what}.reason", reason)
        ctx.check(isinstance(reason, str) and reason.strip(), f"{what} refused without naming a reason")
    nothing_moved(ctx, s, before)


async def honoured(ctx: FacilitatorContext, s: Signed, name: str) -> None:
    """``/verify`` and ``/settle`` of ``s`` take it: valid, then landed on chain."""
    judge_valid(ctx, await ctx.call("verify", s.payment, s.requirements, label=f"verify {name}"), s, name)
    judge_landed(ctx, await ctx.call("settle", s.payment, s.requirements, label=f"settle {name}"), s, name)


@case(
    "facilitator.extra.asset-transfer-method",
    "SHOULD",
    "exact EVM scheme (extra.assetTransferMethod: eip3009, permit2, erc7710; no rule for an unknown one); "
    "x402-reference 11 (reserved key). Amount and payee stay as signed, so ignoring it is not a MUST failure",
    f"Requirements with extra.assetTransferMethod {UNKNOWN_METHOD!r} are refused by verify and settle, "
    "naming a reason",
    kind="advice",
)
async def extra_unknown_method(ctx: FacilitatorContext) -> None:
    await refused_by_name(ctx, signed(ctx, with_extra(ctx, assetTransferMethod=UNKNOWN_METHOD)))


@case(
    "facilitator.extra.payment-flow",
    "SHOULD",
    "x402-reference 11 (extra.paymentFlow is reserved: authorization, upfront, escrow; the MUST to refuse an "
    "unsupported pair is the server's). Amount and payee stay as signed at the facilitator",
    f"Requirements with extra.paymentFlow {UNKNOWN_FLOW!r} are refused by verify and settle, naming a reason",
    kind="advice",
)
async def extra_unknown_flow(ctx: FacilitatorContext) -> None:
    await refused_by_name(ctx, signed(ctx, with_extra(ctx, paymentFlow=UNKNOWN_FLOW)))


@case(
    "facilitator.extra.known-transfer-method",
    "MUST",
    "exact EVM scheme (assetTransferMethod eip3009, the default when absent)",
    "Requirements naming extra.assetTransferMethod eip3009 verify and settle a valid payment",
    kind="spec",
)
async def extra_known_method(ctx: FacilitatorContext) -> None:
    await honoured(ctx, signed(ctx, with_extra(ctx, assetTransferMethod="eip3009")), "eip3009")


@case(
    "facilitator.extra.known-payment-flows",
    "MUST",
    "x402-reference 11 (paymentFlow authorization, upfront, escrow: when the server settles is its "
    "business; verify and settle are the same calls)",
    "Requirements naming each reserved extra.paymentFlow verify and settle a valid payment",
    kind="spec",
)
async def extra_known_flows(ctx: FacilitatorContext) -> None:
    for flow in PAYMENT_FLOWS:
        await honoured(ctx, signed(ctx, with_extra(ctx, paymentFlow=flow)), flow)
