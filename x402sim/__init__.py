"""x402sim: a laboratory for the x402 payment protocol.

The public surface: ``Testbed`` (roles wired over an embedded EIP-3009 chain), the sans-IO roles and
the seams they plug into (``Driver`` for a world answering their effects, ``Mechanisms`` for the
schemes they speak, ``Chain`` with its ``BACKENDS`` for the chain they reach), the protocol messages
and codec, spend governance (``Governor``, policy files, the audit log), and the simulator
(``x402sim.sim``: ``load_scenario``, ``run``, here also as ``run_scenario``, and ``sweep``), the
transports beyond HTTP (paid MCP tools and A2A agents, and the clients that pay them) and Bazaar
discovery (listings, the facilitator's catalogue, ``discover`` and ``choose``). The docs
site (docs/, built by ``make docs``) gives a tour. Every error x402sim raises on purpose is an
``X402simError`` (the tree is in ``x402sim.errors``).

Importing ``x402sim`` loads neither the command line (typer) nor the simulator (SimPy, Dask,
matplotlib) nor the web server (uvicorn): the simulator's names here are imported on first use
(PEP 562 ``__getattr__``), and so are the transports' and ``discover``. Nothing here needs an extra:
on a core install (no ``x402sim[sim]``, no ``x402sim[agents]``) the names that run a simulation or
speak MCP or A2A raise a ``ModuleNotFoundError`` naming the extra (``x402sim.extras``).
"""

import os
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
from .actors.bazaar_catalog import BazaarCatalog
from .actors.discovery import Candidate, choose
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
from .protocol.bazaar import http_listing, mcp_tool_listing, read_listing
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

# Names imported on first use, with their module: the simulator (it loads SimPy and, for sweeps,
# Dask), the transports (the MCP and A2A SDKs) and discovery (httpx and the HTTP services).
_LAZY = {
    "Scenario": (".sim", "Scenario"),
    "ScenarioError": (".sim", "ScenarioError"),
    "SimResult": (".sim", "SimResult"),
    "SweepResult": (".sim", "SweepResult"),
    "load_scenario": (".sim", "load_scenario"),
    "run": (".sim", "run"),
    "run_scenario": (".sim", "run"),
    "sweep": (".sim", "sweep"),
    "PaidTool": (".transports.mcp_tools", "PaidTool"),
    "ToolSellingServer": (".transports.mcp_tools", "ToolSellingServer"),
    "PaidToolServer": (".transports.mcp", "PaidToolServer"),
    "McpPayingClient": (".transports.mcp", "McpPayingClient"),
    "PaidAgent": (".transports.a2a", "PaidAgent"),
    "A2aPayingClient": (".transports.a2a", "A2aPayingClient"),
    "discover": (".http.discovery", "discover"),
    "DiscoveryError": (".http.discovery", "DiscoveryError"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(module, __name__), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "A2aPayingClient",
    "AgentDirectory",
    "AgentMandate",
    "AgentRef",
    "AgentSigner",
    "Attempt",
    "AuditLog",
    "BaseDriver",
    "BazaarCatalog",
    "Candidate",
    "Chain",
    "ChainConfig",
    "ChainError",
    "Client",
    "CrawlPolicy",
    "Decision",
    "DiscoveryError",
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
    "McpPayingClient",
    "Mechanism",
    "Mechanisms",
    "OutputError",
    "PaidAgent",
    "PaidTool",
    "PaidToolServer",
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
    "ToolSellingServer",
    "Transfer",
    "UnavailableError",
    "Unreachable",
    "UnsupportedEffect",
    "VerifyResponse",
    "WireError",
    "X402simError",
    "choose",
    "decode_header",
    "default_mechanisms",
    "discover",
    "encode_header",
    "http_listing",
    "load_policies",
    "load_scenario",
    "make_chain",
    "mcp_tool_listing",
    "parse_policies",
    "read_listing",
    "reason_class",
    "run",
    "run_scenario",
    "same_class",
    "sweep",
    "verify_audit",
]

# The test suite's check of the trusted hops (x402sim.protocol.codec) reaches the processes it starts.
if os.environ.get("X402SIM_CHECK_TRUSTED_HOPS") == "1":
    from .protocol import codec as _codec

    _codec.CHECK_TRUSTED_HOPS = True
