"""reference/api.md: the public Python API (``x402sim.__all__``), grouped, from the docstrings.

Each name is rendered by mkdocstrings (``::: path``). The groups are chosen by hand; rendering fails
when ``x402sim.__all__`` has a name no group lists, or a group lists a name it does not have, so the
page always covers exactly the public surface.
"""

from __future__ import annotations

from . import md

# (heading, anchor, what the group is for, names from x402sim.__all__)
GROUPS: list[tuple[str, str, str, list[str]]] = [
    (
        "Testbed",
        "testbed",
        "The roles wired together in one process over an embedded chain.",
        ["Testbed", "TestAccount", "TestClient", "TestServer", "TestFacilitator"],
    ),
    (
        "Roles",
        "roles",
        "The sans-IO roles: a paying client, a resource server, a facilitator.",
        ["Client", "SpendPolicy", "FetchResult", "PaymentRefused", "ResourceServer", "Route", "Facilitator"],
    ),
    (
        "Drivers and effects",
        "drivers",
        "What answers the roles' effects: a world of your own implements a driver.",
        ["Driver", "BaseDriver", "HttpRequest", "HttpResponse", "Unreachable", "UnsupportedEffect"],
    ),
    (
        "Mechanisms",
        "mechanisms",
        "The payment mechanisms the roles speak (exact, upto, batch-settlement channels), and the "
        "gas-sponsoring extensions of Permit2.",
        [
            "Mechanism",
            "Mechanisms",
            "default_mechanisms",
            "EXACT_EIP3009",
            "EXACT_PERMIT2",
            "UPTO_PERMIT2",
            "BATCH_EIP3009",
            "BATCH_PERMIT2",
            "SPONSORING_EXTENSIONS",
            "EIP2612_GAS_SPONSORING",
            "ERC20_APPROVAL_GAS_SPONSORING",
        ],
    ),
    (
        "Chains",
        "chains",
        "The chain the roles reach, and its backends.",
        [
            "Chain",
            "ChainConfig",
            "BACKENDS",
            "make_chain",
            "LocalChain",
            "LedgerChain",
            "Receipt",
            "Transfer",
        ],
    ),
    (
        "Protocol messages and codec",
        "protocol",
        "The x402 messages (v2, and v1 where it differs) and the header codec.",
        [
            "PaymentRequired",
            "PaymentRequirements",
            "PaymentPayload",
            "PaymentRequiredV1",
            "PaymentRequirementsV1",
            "PaymentPayloadV1",
            "VerifyResponse",
            "SettleResponse",
            "SupportedResponse",
            "encode_header",
            "decode_header",
            "ProtocolError",
        ],
    ),
    (
        "Reason codes",
        "reasons",
        "Reason codes and the classes that compare their spellings ([Reason codes](reason-codes.md)).",
        ["Reason", "ReasonClass", "reason_class", "same_class"],
    ),
    (
        "Governance",
        "governance",
        "Spend policies, the governor that enforces them, and its audit log "
        "([Policy files](policy-format.md)). `verify_audit` is `x402sim.governance.verify`.",
        [
            "Governor",
            "Policy",
            "PolicyError",
            "load_policies",
            "parse_policies",
            "Attempt",
            "Decision",
            "AuditLog",
            "verify_audit",
        ],
    ),
    (
        "Trust",
        "trust",
        "ERC-8004 agent identities, AP2 mandates and signed agent requests.",
        [
            "AgentDirectory",
            "AgentRef",
            "ServerIdentity",
            "AgentMandate",
            "MandateVerifier",
            "AgentSigner",
            "SignatureVerifier",
            "KeyDirectory",
            "CrawlPolicy",
            "PayerRules",
        ],
    ),
    (
        "MCP and A2A",
        "transports",
        "x402 over MCP tool calls and A2A tasks: paid tools and agents, and the clients that pay them "
        "([Sell and pay for MCP tools](../how-to/pay-for-mcp-tools.md), "
        "[Pay an agent over A2A](../how-to/pay-an-agent-over-a2a.md)). Imported on first use; "
        "`PaidToolServer`, `McpPayingClient`, `PaidAgent` and `A2aPayingClient` need `x402sim[agents]`.",
        [
            "PaidTool",
            "ToolSellingServer",
            "PaidToolServer",
            "McpPayingClient",
            "PaidAgent",
            "A2aPayingClient",
        ],
    ),
    (
        "Discovery",
        "discovery",
        "Bazaar listings, the facilitator's catalogue, and choosing among the services found "
        "([Discover services in a Bazaar](../how-to/discover-services.md)). `discover` is imported "
        "on first use.",
        [
            "discover",
            "DiscoveryError",
            "choose",
            "Candidate",
            "BazaarCatalog",
            "http_listing",
            "mcp_tool_listing",
            "read_listing",
        ],
    ),
    (
        "Simulator",
        "simulator",
        "Scenarios in virtual time ([Scenario files](scenario-format.md), "
        "[summary.json](summary-json.md)). Imported on first use: `import x402sim` does not load "
        "the simulator. `run_scenario` is `run`.",
        [
            "load_scenario",
            "run",
            "run_scenario",
            "sweep",
            "Scenario",
            "ScenarioError",
            "SimResult",
            "SweepResult",
        ],
    ),
    (
        "Errors",
        "errors",
        "Every error x402sim raises on purpose is an `X402simError`.",
        [
            "X402simError",
            "InputError",
            "OutputError",
            "ChainError",
            "WireError",
            "Refused",
            "UnavailableError",
        ],
    ),
]

_ALIASES = {"run_scenario"}  # the same object as another name of the group


def check_groups(public: list[str]) -> None:
    """ValueError unless the groups list every public name exactly once."""
    listed = [name for *_, names in GROUPS for name in names]
    problems = []
    if missing := sorted(set(public) - set(listed)):
        problems.append(f"public names in no group: {', '.join(missing)}")
    if extra := sorted(set(listed) - set(public)):
        problems.append(f"names listed but not public: {', '.join(extra)}")
    if twice := sorted({n for n in listed if listed.count(n) > 1}):
        problems.append(f"listed twice: {', '.join(twice)}")
    if problems:
        raise ValueError("docsgen/api_page.py GROUPS: " + "; ".join(problems))


def _home(obj: object, name: str) -> str:
    """Where mkdocstrings finds an object: the module that defines it (``x402sim.sim.run`` is a
    module, the function is ``x402sim.sim.run.run``); a constant by its public name."""
    if hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"x402sim.{name}"


def render() -> str:
    import x402sim

    check_groups(list(x402sim.__all__))
    parts = [
        "# Python API\n",
        md.GENERATED_NOTE.format(module="api_page", source="x402sim.__all__ and the docstrings"),
        "Everything below is importable from `x402sim` (`from x402sim import Testbed`). Amounts are "
        "atomic units of the 6-decimal token (`10_000` is $0.01).\n",
    ]
    for title, anchor, about, names in GROUPS:
        parts += [md.heading(2, title, anchor), about + "\n"]
        for name in names:
            if name in _ALIASES:
                continue
            parts.append(f"::: {_home(getattr(x402sim, name), name)}\n")
    return "\n".join(parts)
