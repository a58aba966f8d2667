"""Trust: who is paying, and on whose behalf.

* ``identity``: ERC-8004 registration files and ``AgentDirectory`` (reads of the on-chain registries).
* ``reputation``: the x402 ``8004-reputation`` extension (declarations, payTo checks, payer rules,
  feedback files with proof of payment).
* ``mandates``: AP2 v0.2 payment mandates as SD-JWTs, bound to the EIP-3009 nonce.
* ``signatures``: RFC 9421 agent signatures (Web Bot Auth, Visa TAP); ``crawl``: pay-per-crawl.
"""

from .crawl import CrawlPolicy, CrawlVerdict
from .identity import (
    REGISTRATION_TYPE,
    AgentDirectory,
    Registration,
    RegistrationEntry,
    Service,
    agent_registry_id,
    parse_registration,
    registration_file,
)
from .mandates import (
    AgentMandate,
    MandateChain,
    MandateRefused,
    MandateVerifier,
    PaymentFacts,
    close_payment_mandate,
    open_payment_mandate,
)
from .reputation import AgentRef, PayerRules, ServerIdentity, choose_by_reputation
from .signatures import (
    AgentSigner,
    KeyDirectory,
    SignatureRefused,
    SignatureVerifier,
    VerifiedAgent,
    agent_key,
)

__all__ = [
    "REGISTRATION_TYPE",
    "AgentDirectory",
    "AgentMandate",
    "AgentRef",
    "AgentSigner",
    "CrawlPolicy",
    "CrawlVerdict",
    "KeyDirectory",
    "MandateChain",
    "MandateRefused",
    "MandateVerifier",
    "PayerRules",
    "PaymentFacts",
    "Registration",
    "RegistrationEntry",
    "ServerIdentity",
    "Service",
    "SignatureRefused",
    "SignatureVerifier",
    "VerifiedAgent",
    "agent_key",
    "agent_registry_id",
    "choose_by_reputation",
    "close_payment_mandate",
    "open_payment_mandate",
    "parse_registration",
    "registration_file",
]
