"""The x402 ``8004-reputation`` extension: ERC-8004 identities in the 402, checked before paying.

Follows the draft of x402-foundation/x402 issue #931 (the extension is not merged; its shapes may
still move). What it adds to an exchange:

* A server that is a registered agent declares it in its 402, in ``extensions["8004-reputation"]``:
  ``info.identity = {agentRegistry: "eip155:<chainId>:<identity registry>", agentId: "<id>"}``,
  ``info.reputationRegistry`` and ``info.endpoint``, with a JSON Schema beside it.
* A client that reads the registries refuses to pay an offer whose ``payTo`` is not the agent's
  on-chain ``agentWallet`` (a 402 naming a well-reputed agent and someone else's wallet is the
  attack the check stops), and one naming a registry it does not read (it cannot check it).
* A payer may declare its own identity the same way in the payment's ``extensions`` (x402sim's
  reading of the draft's "good payer" side), so a server can ask for a registered payer, a minimum
  reputation, or give reputed payers a lower price (an extra offer per tier, ``extra.reputation``).
* After delivery the client posts ``giveFeedback`` with a feedback file carrying
  ``proofOfPayment {fromAddress, toAddress, chainId, txHash}``: the settlement transaction. The
  file travels as a ``data:`` URI and its keccak256 is the on-chain ``feedbackHash``, so anyone can
  check the proof against the chain without a file host.

Rules: no I/O; reading the chain is the ``directory``'s job (``AgentDirectory`` or anything with
``wallet(agent_id)``, ``reputation(agent_id)`` and ``registry``); amounts stay atomic units.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import is_address, to_checksum_address

from ..evm.hashing import keccak

EXTENSION = "8004-reputation"
TAG_DELIVERED = "x402-resource-delivered"  # tag1 of a client's feedback on a server
TAG_GOOD_PAYER = "x402-good-payer"  # tag1 of a server's feedback on a payer
TAG_EXACT_EVM = "exact-evm"  # tag2: the scheme and chain family paid with
DATA_URI_PREFIX = "data:application/json;base64,"

_IDENTITY_SCHEMA = {
    "type": "object",
    "properties": {
        "agentRegistry": {"type": "string", "description": "CAIP-10: eip155:<chainId>:<address>"},
        "agentId": {"type": "string"},
    },
    "required": ["agentRegistry", "agentId"],
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "identity": _IDENTITY_SCHEMA,
        "reputationRegistry": {"type": "string"},
        "endpoint": {"type": "string"},
    },
    "required": ["identity", "reputationRegistry"],
}


@dataclass(frozen=True)
class AgentRef:
    """An ERC-8004 agent: its id in the identity registry ``registry`` on chain ``chain_id``."""

    agent_id: int
    chain_id: int
    registry: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", to_checksum_address(self.registry))

    @property
    def agent_registry(self) -> str:
        """The registry as CAIP-10, as registration files and the extension spell it."""
        return f"eip155:{self.chain_id}:{self.registry}"

    def identity(self) -> dict:
        return {"agentRegistry": self.agent_registry, "agentId": str(self.agent_id)}

    @classmethod
    def of_identity(cls, identity: Any) -> AgentRef:
        """Read ``{agentRegistry, agentId}``; ``ValueError`` names what is wrong."""
        if not isinstance(identity, Mapping):
            raise ValueError("identity must be an object with agentRegistry and agentId")
        registry, agent_id = identity.get("agentRegistry"), identity.get("agentId")
        parts = registry.split(":") if isinstance(registry, str) else []
        if len(parts) != 3 or parts[0] != "eip155" or not parts[1].isdigit() or not is_address(parts[2]):
            raise ValueError(f"agentRegistry {registry!r} is not eip155:<chainId>:<address>")
        if isinstance(agent_id, bool) or not isinstance(agent_id, str | int) or not str(agent_id).isdigit():
            raise ValueError(f"agentId {agent_id!r} is not a decimal token id")
        return cls(int(agent_id), int(parts[1]), parts[2])


@dataclass(frozen=True)
class ServerIdentity:
    """What a registered server declares in its 402."""

    agent: AgentRef
    reputation_registry: str
    endpoint: str = ""

    def declaration(self) -> dict:
        info = {
            "identity": self.agent.identity(),
            "reputationRegistry": to_checksum_address(self.reputation_registry),
        }
        if self.endpoint:
            info["endpoint"] = self.endpoint
        return {"info": info, "schema": SCHEMA}


def declared_server(extensions: Mapping | None) -> ServerIdentity | None:
    """The server identity a 402's ``extensions`` declare, None when they declare none;
    ``ValueError`` when the declaration is there but malformed."""
    info = _declared_info(extensions)
    if info is None:
        return None
    registry = info.get("reputationRegistry")
    if not (isinstance(registry, str) and is_address(registry)):
        raise ValueError(f"extension {EXTENSION}: reputationRegistry {registry!r} is not an address")
    endpoint = info.get("endpoint", "")
    return ServerIdentity(AgentRef.of_identity(info.get("identity")), registry, str(endpoint or ""))


def payer_declaration(agent: AgentRef) -> dict:
    """The entry a payer puts in its payment's ``extensions`` to say which agent is paying."""
    return {EXTENSION: {"info": {"identity": agent.identity()}}}


def declared_payer(extensions: Mapping | None) -> AgentRef | None:
    """The payer identity in a payment's ``extensions``; ``ValueError`` when malformed."""
    info = _declared_info(extensions)
    return None if info is None else AgentRef.of_identity(info.get("identity"))


def _declared_info(extensions: Mapping | None) -> Mapping | None:
    """The ``info`` of the extension's entry in ``extensions`` (None: no entry); ``ValueError`` when
    the entry is there but its ``info`` is not an object."""
    entry = (extensions or {}).get(EXTENSION)
    if entry is None:
        return None
    info = entry.get("info") if isinstance(entry, Mapping) else None
    if not isinstance(info, Mapping):
        raise ValueError(f"extension {EXTENSION}: info must be an object")
    return info


def registry_problem(agent: AgentRef, directory) -> str | None:
    """Why ``directory`` cannot vouch for ``agent`` (another chain or registry), or None."""
    registry = to_checksum_address(directory.registry)
    if (agent.chain_id, agent.registry) != (directory.chain_id, registry):
        return (
            f"agent registry {agent.agent_registry} is not the one this client reads "
            f"(eip155:{directory.chain_id}:{registry})"
        )
    return None


def pay_to_problem(server: ServerIdentity, pay_to: str, directory) -> str | None:
    """Why paying ``pay_to`` for the agent ``server`` declares is refused, or None: the payee must
    be the agent's on-chain ``agentWallet``."""
    problem = registry_problem(server.agent, directory)
    if problem is not None:
        return problem
    wallet = directory.wallet(server.agent.agent_id)
    if wallet is None:
        return f"agent {server.agent.agent_id} has no registered agentWallet"
    if to_checksum_address(wallet) != to_checksum_address(pay_to):
        return f"payTo {pay_to} is not agent {server.agent.agent_id}'s registered wallet {wallet}"
    return None


def reputation_of(directory, agent_id: int, tag1: str = "") -> float | None:
    """The agent's mean feedback value, of feedback tagged ``tag1`` ("" for all); None when it has
    none yet."""
    summary = directory.reputation(agent_id, tag1=tag1)
    return summary.mean if summary.count else None


def choose_by_reputation(
    directory,
    agent_ids: Sequence[int | None],
    rng: random.Random,
    *,
    explore: float = 0.1,
    prior: float = 50.0,
    exponent: float = 2.0,
) -> int:
    """How a client chooses among servers by reputation: the index of one of ``agent_ids`` (the
    servers' ERC-8004 agents; None for a server that declares none). With probability ``explore``
    any at random; otherwise one drawn with weight max(reputation, 0) ** ``exponent``, where the
    reputation is the mean of the feedback tagged ``x402-resource-delivered`` and ``prior`` stands
    for a server with no feedback yet (or no agent)."""
    n = len(agent_ids)
    if n == 0:
        raise ValueError("no servers to choose from")
    if n == 1:
        return 0
    if explore >= 1 or rng.random() < explore:
        return rng.randrange(n)
    scores = [
        prior if agent_id is None else reputation_of(directory, agent_id, TAG_DELIVERED)
        for agent_id in agent_ids
    ]
    weights = [max(prior if score is None else score, 0.0) ** exponent for score in scores]
    if not sum(weights) > 0:
        return rng.randrange(n)
    return rng.choices(range(n), weights=weights)[0]


@dataclass
class PayerRules:
    """What a server asks of the agents paying it: a registered identity whose agentWallet (or
    owner) is the paying address, a minimum reputation as a payer (feedback tagged
    ``x402-good-payer``; an agent with none has no reputation and meets no minimum), and lower
    prices for reputed payers: ``tiers`` maps a reputation floor to the price offered from it."""

    directory: Any
    require_registered: bool = False
    min_reputation: float | None = None
    tiers: Mapping[float, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.require_registered or self.min_reputation is not None or bool(self.tiers)

    def problem(self, payer: str, extensions: Mapping | None, tier: float | None = None) -> str | None:
        """Why the agent paying from ``payer`` with these payment ``extensions`` is refused (for an
        offer reserved for reputation ``tier``), or None."""
        if not self.active and tier is None:
            return None
        try:
            agent = declared_payer(extensions)
        except ValueError as exc:
            return str(exc)
        if agent is None:
            return f"this resource is sold to registered agents only (declare one in {EXTENSION})"
        problem = registry_problem(agent, self.directory)
        if problem is not None:
            return problem
        payer = to_checksum_address(payer)
        controllers = {self.directory.wallet(agent.agent_id), self.directory.owner(agent.agent_id)}
        if payer not in {to_checksum_address(a) for a in controllers if a}:
            return f"payer {payer} is neither the agentWallet nor the owner of agent {agent.agent_id}"
        floors = [f for f in (self.min_reputation, tier) if f is not None]
        if floors:
            reputation = reputation_of(self.directory, agent.agent_id, TAG_GOOD_PAYER)
            if reputation is None or reputation < max(floors):
                shown = "none" if reputation is None else f"{reputation:g}"
                return f"agent {agent.agent_id}'s payer reputation ({shown}) is below {max(floors):g}"
        return None


def reputation_tier(offer_extra: Mapping | None) -> float | None:
    """The minimum payer reputation an offer is reserved for (``extra.reputation.min``), or None."""
    tier = (offer_extra or {}).get("reputation")
    if isinstance(tier, Mapping) and isinstance(tier.get("min"), int | float):
        return float(tier["min"])
    return None


# -- feedback -----------------------------------------------------------------------------------


def feedback_file(
    *,
    agent: AgentRef,
    client: str,
    value: int,
    value_decimals: int = 0,
    tag1: str = TAG_DELIVERED,
    tag2: str = TAG_EXACT_EVM,
    endpoint: str = "",
    pay_to: str,
    tx_hash: str,
    network: str,
    created_at: int,
) -> dict:
    """The off-chain feedback file, with the payment that earned the right to give it."""
    chain_id = network.split(":", 1)[1]
    return {
        "agentRegistry": agent.agent_registry,
        "agentId": str(agent.agent_id),
        "clientAddress": f"eip155:{chain_id}:{to_checksum_address(client)}",
        "createdAt": created_at,
        "value": value,
        "valueDecimals": value_decimals,
        "tag1": tag1,
        "tag2": tag2,
        "endpoint": endpoint,
        "proofOfPayment": {
            "fromAddress": to_checksum_address(client),
            "toAddress": to_checksum_address(pay_to),
            "chainId": chain_id,
            "txHash": tx_hash,
        },
    }


def _canonical(data: Mapping) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def feedback_uri(file: Mapping) -> str:
    """The file as a ``data:`` URI (the on-chain ``feedbackURI``)."""
    return DATA_URI_PREFIX + base64.b64encode(_canonical(file)).decode()


def feedback_hash(file: Mapping) -> bytes:
    """keccak256 of the file's canonical JSON (the on-chain ``feedbackHash``)."""
    return keccak(_canonical(file))


def read_feedback_uri(uri: str) -> dict:
    """The feedback file a ``data:`` URI carries; ``ValueError`` otherwise."""
    if not uri.startswith(DATA_URI_PREFIX):
        raise ValueError("feedbackURI is not a data:application/json;base64 URI")
    try:
        return json.loads(base64.b64decode(uri[len(DATA_URI_PREFIX) :], validate=True))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"feedbackURI does not hold JSON: {exc}") from None


__all__ = [
    "EXTENSION",
    "SCHEMA",
    "TAG_DELIVERED",
    "TAG_EXACT_EVM",
    "TAG_GOOD_PAYER",
    "AgentRef",
    "PayerRules",
    "ServerIdentity",
    "choose_by_reputation",
    "declared_payer",
    "declared_server",
    "feedback_file",
    "feedback_hash",
    "feedback_uri",
    "pay_to_problem",
    "payer_declaration",
    "read_feedback_uri",
    "registry_problem",
    "reputation_of",
    "reputation_tier",
]
