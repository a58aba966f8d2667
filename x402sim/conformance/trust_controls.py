"""Trust controls: the trust-enabled reference server and client with one trust rule broken on purpose.

Each server control is ``reference.trust_server`` (AP2 mandates and Web Bot Auth enforced, trust
material read from the environment) with its ``MandateVerifier``, its ``CrawlPolicy`` or its role
replaced by a variant that leaves one check out; the client control is ``reference.trust_pay`` with
a ``Client`` that does not compare payTo with the agent's ``agentWallet``. They advertise the same
trust features as the reference, so the trust cases run against them.

``LooseVerifier`` replaces one of ``MandateVerifier.check``'s steps, so that each control differs from
the reference in exactly one rule (the ``chain`` control decodes with ``x402sim.trust.mandates``'s
private types on purpose: they are what a verified chain yields).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from ..actors.client import Client
from ..actors.server import ResourceServer
from ..protocol import PaymentPayload
from ..trust import mandates as m
from ..trust.mandates import MandateRefused, MandateVerifier, attached
from .controls import control
from .reference import (
    CLIENT_TRUST,
    SERVER_TRUST,
    InProcessClient,
    InProcessService,
    crawl_policy,
    mandate_verifier,
    trust_pay,
    trust_server,
)


def _server(name: str, build) -> InProcessService:
    """A trust control server: ``build(env)`` returns ``trust_server``'s pair."""
    return InProcessService(
        "server", lambda env: build(env)[1], name=f"control {name}", kind="control", trust=SERVER_TRUST
    )


# ================================================================================================
# AP2 mandates
# ================================================================================================


def _claims(token: str) -> tuple[dict, dict]:
    """``(header, payload)`` of an SD-JWT presentation with its disclosures put back, nothing verified:
    how a verifier that only decodes reads a mandate."""
    jwt, *disclosures = token.removesuffix("~").split("~")
    values = {m.sha256_b64(d): m.b64_json(d) for d in disclosures}

    def put(node):
        if isinstance(node, list):
            out = []
            for item in node:
                digest = item.get("...") if isinstance(item, dict) and set(item) == {"..."} else None
                if digest is None:
                    out.append(put(item))
                elif digest in values:
                    out.append(put(values[digest][-1]))
            return out
        if isinstance(node, dict):
            members = {k: put(v) for k, v in node.items() if k not in ("_sd", "_sd_alg")}
            for digest in node.get("_sd", []):
                if digest in values and len(values[digest]) == 3:
                    members[values[digest][1]] = put(values[digest][2])
            return members
        return node

    head, payload, _ = jwt.split(".")
    return m.b64_json(head), put(m.b64_json(payload))


class LooseVerifier(MandateVerifier):
    """``MandateVerifier`` with one check left out (``skip``), each by replacing one of its steps:

    * ``amount``: neither the amount range nor the closed amount is compared with the payment (AP2's
      x402 sample: the payment's amount is never checked against the mandate);
    * ``payee``: neither the allowed payees nor the closed payee is compared with the payTo;
    * ``chain``: the mandates are decoded, not verified (no signature, no sd_hash, no trusted issuer);
    * ``nonce``: the EIP-3009 nonce is not compared with keccak256 of the chain;
    * ``budget``: the budget is not kept.
    """

    SKIPS = ("amount", "payee", "chain", "nonce", "budget")

    def __init__(self, trusted_users, *, skip: str, **kwargs) -> None:
        if skip not in self.SKIPS:
            raise ValueError(f"skip {skip!r}: expected one of {', '.join(self.SKIPS)}")
        super().__init__(trusted_users, **kwargs)
        self.skip = skip

    def verify_chain(self, chain, now: int):
        if self.skip != "chain":
            return super().verify_chain(chain, now)
        header, opened_claims = _claims(chain.open)
        content = opened_claims["delegate_payload"][0]
        key = m.verifying_key(content["cnf"]["jwk"])
        opened = m.OpenMandateTerms(
            content, header.get("kid", ""), chain.open.split("~")[0], key, content["jti"]
        )
        _, closed_claims = _claims(chain.closed)
        return opened, m.closed_terms(closed_claims["delegate_payload"][0], closed_claims["nonce"])

    def check_constraints(self, constraints: list, closed):
        if self.skip == "amount":
            constraints = [
                {**c, "min": 0, "max": 2**255} if c["type"] == m.AMOUNT_RANGE else c for c in constraints
            ]
        if self.skip == "payee":
            everyone = [{"id": closed.payee}]
            constraints = [
                {**c, "allowed": everyone} if c["type"] == m.ALLOWED_PAYEES else c for c in constraints
            ]
        limits = super().check_constraints(constraints, closed)
        if self.skip == "budget":
            limits.budgets.clear()
        return limits

    def check_payment(self, chain, closed, facts):
        if self.skip == "amount":
            facts = replace(facts, amount=closed.amount)
        if self.skip == "payee":
            facts = replace(facts, pay_to=closed.payee)
        if self.skip == "nonce":
            facts = replace(facts, nonce=chain.nonce())
        return super().check_payment(chain, closed, facts)


def _loose(skip: str):
    return lambda env: trust_server(env, mandates=mandate_verifier(env, LooseVerifier, skip=skip))


@control(
    "server.mandate-amount-unchecked",
    "server",
    "Verifies the mandate chain but never compares the payment's amount with it (AP2's x402 sample)",
    kills=("server.trust.mandate-amount",),
)
def mandate_amount_unchecked():
    return _server("server.mandate-amount-unchecked", _loose("amount"))


@control(
    "server.mandate-payee-unchecked",
    "server",
    "Verifies the mandate chain but never compares the payTo with its allowed or closed payee",
    kills=("server.trust.mandate-payee",),
)
def mandate_payee_unchecked():
    return _server("server.mandate-payee-unchecked", _loose("payee"))


@control(
    "server.mandate-chain-unverified",
    "server",
    "Decodes the mandates without verifying them: no signatures, no sd_hash link, any issuer",
    kills=("server.trust.mandate-chain", "server.trust.mandate-issuer"),
)
def mandate_chain_unverified():
    return _server("server.mandate-chain-unverified", _loose("chain"))


@control(
    "server.mandate-nonce-unbound",
    "server",
    "Verifies the mandate chain but accepts any EIP-3009 nonce with it",
    kills=("server.trust.mandate-nonce",),
)
def mandate_nonce_unbound():
    return _server("server.mandate-nonce-unbound", _loose("nonce"))


@control(
    "server.mandate-budget-ignored",
    "server",
    "Verifies each mandated payment but keeps no budget across them",
    kills=("server.trust.mandate-budget",),
)
def mandate_budget_ignored():
    return _server("server.mandate-budget-ignored", _loose("budget"))


@control(
    "server.mandate-expiry-ignored",
    "server",
    "Verifies mandates with unbounded leeway on iat and exp: an expired mandate still pays",
    kills=("server.trust.mandate-expired",),
)
def mandate_expiry_ignored():
    return _server(
        "server.mandate-expiry-ignored",
        lambda env: trust_server(env, mandates=mandate_verifier(env, leeway=10**9)),
    )


class _MandateOptional(ResourceServer):
    """Verifies a mandate when a payment carries one, and lets a payment without one through."""

    def mandate_check(self, route, payment, requirements, now):
        carried: object
        try:
            carried = attached(payment.extensions) if isinstance(payment, PaymentPayload) else None
        except MandateRefused:
            carried = True
        if carried is None:
            return None, None
        return super().mandate_check(route, payment, requirements, now)


@control(
    "server.mandate-optional",
    "server",
    "Verifies the mandates payments carry, but serves a payment that carries none",
    kills=("server.trust.mandate-missing",),
)
def mandate_optional():
    return _server("server.mandate-optional", lambda env: trust_server(env, role_class=_MandateOptional))


# ================================================================================================
# Web Bot Auth
# ================================================================================================


def _expires_of(headers) -> int | None:
    """The latest ``expires`` among the request's signatures, read without verifying anything."""
    import http_sf

    value = ", ".join(v for k, v in headers if k.lower() == "signature-input")
    try:
        # http_sf.parse is typed for every top-level type; a dictionary is name -> (value, params)
        parsed = cast(
            "dict[str, tuple[Any, dict[str, Any]]]", http_sf.parse(value.encode(), tltype="dictionary")
        )
    except (ValueError, UnicodeError):
        return None
    found = [params.get("expires") for _, (_, params) in parsed.items()]
    return max((e for e in found if type(e) is int), default=None)


def _verifier(kind: str):
    from ..trust.signatures import SignatureRefused, SignatureVerifier

    class NoExpiry(SignatureVerifier):
        """Judges an expired signature as of its expiry: expiry is never checked."""

        def verify(self, method, authority, path, headers, now, *, scheme="https"):
            headers = tuple(headers)
            try:
                return super().verify(method, authority, path, headers, now, scheme=scheme)
            except SignatureRefused as exc:
                expires = _expires_of(headers)
                if exc.code != "expired" or expires is None:
                    raise
                return super().verify(method, authority, path, headers, expires, scheme=scheme)

    class NoSignatureCheck(SignatureVerifier):
        """Checks everything about a signature but the signature itself."""

        def check_signature(self, *args, **kwargs) -> None:
            return None

    return {"no-expiry": NoExpiry, "no-signature": NoSignatureCheck}[kind]


@control(
    "server.crawl-admits-unsigned",
    "server",
    "Verifies signatures when there are some, but lets unsigned requests through to the 402 (and pay)",
    kills=("server.trust.signature-required",),
)
def crawl_admits_unsigned():
    return _server(
        "server.crawl-admits-unsigned",
        lambda env: trust_server(env, crawl=crawl_policy(env, block_unsigned=False)),
    )


@control(
    "server.crawl-signature-unverified",
    "server",
    "Checks a signature's parameters and key id but never verifies the signature itself",
    kills=("server.trust.signature-valid",),
)
def crawl_signature_unverified():
    return _server(
        "server.crawl-signature-unverified",
        lambda env: trust_server(env, crawl=crawl_policy(env, _verifier("no-signature"))),
    )


@control(
    "server.crawl-expiry-ignored",
    "server",
    "Verifies signatures but never checks their expiry",
    kills=("server.trust.signature-expired",),
)
def crawl_expiry_ignored():
    return _server(
        "server.crawl-expiry-ignored",
        lambda env: trust_server(env, crawl=crawl_policy(env, _verifier("no-expiry"))),
    )


@control(
    "server.crawl-any-tag",
    "server",
    "Accepts a signature under any profile's tag (Visa TAP's too) as Web Bot Auth",
    kills=("server.trust.signature-tag",),
)
def crawl_any_tag():
    from ..trust.signatures import PROTOCOLS

    return _server(
        "server.crawl-any-tag", lambda env: trust_server(env, crawl=crawl_policy(env, tags=PROTOCOLS))
    )


# ================================================================================================
# ERC-8004 (client)
# ================================================================================================


class _WalletBlindClient(Client):
    """Reads the declared agent's registry, but never compares payTo with its agentWallet."""

    def trust_refusal(self, server, offer):
        return None


@control(
    "client.trust-ignores-agent-wallet",
    "client",
    "Reads the 8004-reputation declaration but pays whatever payTo the 402 names",
    kills=("client.trust.payto-is-agent-wallet", "client.trust.unregistered-agent"),
)
def client_ignores_agent_wallet():
    return InProcessClient(
        lambda env: trust_pay(env, client_class=_WalletBlindClient),
        name="control client.trust-ignores-agent-wallet",
        kind="control",
        trust=CLIENT_TRUST,
    )
