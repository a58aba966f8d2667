"""x402sim: a laboratory for the x402 payment protocol.

The public surface: ``Testbed`` (roles wired over an embedded EIP-3009 chain), the sans-IO roles,
the chain, the protocol messages and codec, spend governance (``Governor``, policy files, the audit
log), and the simulator (``x402sim.sim``: ``load_scenario``,
``run``, here also as ``run_scenario``, and ``sweep``). See the README for a tour.
"""

from importlib import metadata

from .actors import (
    Client,
    Facilitator,
    FetchResult,
    HttpRequest,
    HttpResponse,
    PaymentRefused,
    ResourceServer,
    Route,
    SpendPolicy,
    Unreachable,
)
from .evm import ChainError, LedgerChain, LocalChain, Receipt, Transfer
from .governance import (
    Attempt,
    AuditLog,
    Decision,
    Governor,
    Policy,
    PolicyError,
    load_policies,
    parse_policies,
)
from .governance import verify as verify_audit
from .protocol import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    ProtocolError,
    Reason,
    ReasonClass,
    SettleResponse,
    SupportedResponse,
    VerifyResponse,
    decode_header,
    encode_header,
    reason_class,
    same_class,
)
from .sim import Scenario, ScenarioError, SimResult, SweepResult, load_scenario, sweep
from .sim import run as run_scenario
from .testbed import TestAccount, Testbed, TestClient, TestFacilitator, TestServer
from .trust import (
    AgentDirectory,
    AgentMandate,
    AgentRef,
    AgentSigner,
    CrawlPolicy,
    KeyDirectory,
    MandateVerifier,
    PayerRules,
    ServerIdentity,
    SignatureVerifier,
)

__version__ = metadata.version("x402sim")

__all__ = [
    "AgentDirectory",
    "AgentMandate",
    "AgentRef",
    "AgentSigner",
    "Attempt",
    "AuditLog",
    "ChainError",
    "Client",
    "CrawlPolicy",
    "Decision",
    "Facilitator",
    "FetchResult",
    "Governor",
    "HttpRequest",
    "HttpResponse",
    "KeyDirectory",
    "LedgerChain",
    "LocalChain",
    "MandateVerifier",
    "PayerRules",
    "PaymentPayload",
    "PaymentPayloadV1",
    "PaymentRefused",
    "PaymentRequired",
    "PaymentRequiredV1",
    "PaymentRequirements",
    "PaymentRequirementsV1",
    "Policy",
    "PolicyError",
    "ProtocolError",
    "Reason",
    "ReasonClass",
    "Receipt",
    "ResourceServer",
    "Route",
    "Scenario",
    "ScenarioError",
    "ServerIdentity",
    "SettleResponse",
    "SignatureVerifier",
    "SimResult",
    "SpendPolicy",
    "SupportedResponse",
    "SweepResult",
    "TestAccount",
    "TestClient",
    "TestFacilitator",
    "TestServer",
    "Testbed",
    "Transfer",
    "Unreachable",
    "VerifyResponse",
    "decode_header",
    "encode_header",
    "load_policies",
    "load_scenario",
    "parse_policies",
    "reason_class",
    "run_scenario",
    "same_class",
    "sweep",
    "verify_audit",
]
