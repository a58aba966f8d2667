"""x402sim: a laboratory for the x402 payment protocol.

The public surface: ``Testbed`` (roles wired over an embedded EIP-3009 chain), the sans-IO roles and
the seams they plug into (``Driver`` for a world answering their effects, ``Mechanisms`` for the
schemes they speak, ``Chain`` with its ``BACKENDS`` for the chain they reach), the protocol messages
and codec, spend governance (``Governor``, policy files, the audit log), and the simulator
(``x402sim.sim``: ``load_scenario``, ``run``, here also as ``run_scenario``, and ``sweep``). The docs
site (docs/, built by ``make docs``) gives a tour. Every error x402sim raises on purpose is an
``X402simError`` (the tree is in ``x402sim.errors``).

Importing ``x402sim`` loads neither the command line (typer) nor the simulator (SimPy, Dask,
matplotlib) nor the web server (uvicorn): the simulator's names here are imported on first use
(PEP 562 ``__getattr__``). Nothing here needs an extra: on a core install (no ``x402sim[sim]``) the
names that run a simulation raise a ``ModuleNotFoundError`` naming the extra (``x402sim.extras``).
"""

from importlib import import_module

from .actors import (
    BaseDriver,
    Client,
    Driver,
    Facilitator,
    FetchResult,
    HttpRequest,
    HttpResponse,
    PaymentRefused,
    ResourceServer,
    Route,
    SpendPolicy,
    Unreachable,
    UnsupportedEffect,
)
from .errors import ChainError, InputError, OutputError, Refused, UnavailableError, WireError, X402simError
from .evm import LedgerChain, LocalChain, Receipt, Transfer
from .evm.backend import BACKENDS, Chain, ChainConfig, make_chain
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
from .mechanisms import (
    BATCH_EIP3009,
    BATCH_PERMIT2,
    EIP2612_GAS_SPONSORING,
    ERC20_APPROVAL_GAS_SPONSORING,
    EXACT_EIP3009,
    EXACT_PERMIT2,
    SPONSORING_EXTENSIONS,
    UPTO_PERMIT2,
    Mechanism,
    Mechanisms,
    default_mechanisms,
)
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
from .version import VERSION

__version__ = VERSION

# The simulator's names, imported from x402sim.sim on first use (it loads SimPy and, for sweeps, Dask).
_SIMULATOR = {
    "Scenario": "Scenario",
    "ScenarioError": "ScenarioError",
    "SimResult": "SimResult",
    "SweepResult": "SweepResult",
    "load_scenario": "load_scenario",
    "run": "run",
    "run_scenario": "run",
    "sweep": "sweep",
}


def __getattr__(name: str):
    if name not in _SIMULATOR:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(".sim", __name__), _SIMULATOR[name])
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SIMULATOR))


__all__ = [
    "BACKENDS",
    "BATCH_EIP3009",
    "BATCH_PERMIT2",
    "EIP2612_GAS_SPONSORING",
    "ERC20_APPROVAL_GAS_SPONSORING",
    "EXACT_EIP3009",
    "EXACT_PERMIT2",
    "SPONSORING_EXTENSIONS",
    "UPTO_PERMIT2",
    "AgentDirectory",
    "AgentMandate",
    "AgentRef",
    "AgentSigner",
    "Attempt",
    "AuditLog",
    "BaseDriver",
    "Chain",
    "ChainConfig",
    "ChainError",
    "Client",
    "CrawlPolicy",
    "Decision",
    "Driver",
    "Facilitator",
    "FetchResult",
    "Governor",
    "HttpRequest",
    "HttpResponse",
    "InputError",
    "KeyDirectory",
    "LedgerChain",
    "LocalChain",
    "MandateVerifier",
    "Mechanism",
    "Mechanisms",
    "OutputError",
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
    "Refused",
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
    "UnavailableError",
    "Unreachable",
    "UnsupportedEffect",
    "VerifyResponse",
    "WireError",
    "X402simError",
    "decode_header",
    "default_mechanisms",
    "encode_header",
    "load_policies",
    "load_scenario",
    "make_chain",
    "parse_policies",
    "reason_class",
    "run",
    "run_scenario",
    "same_class",
    "sweep",
    "verify_audit",
]
