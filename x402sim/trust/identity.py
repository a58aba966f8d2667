"""ERC-8004 agent identity off chain and on: the registration file, and a directory of agents.

* ``registration_file`` writes an agent registration file in the shape the ERC-8004 Draft
  (January 2026 text) publishes: ``type`` (``REGISTRATION_TYPE``), ``name``, ``description``,
  ``image``, ``services`` (each ``{name, endpoint, version?, ...}``), ``x402Support``, ``active``,
  ``registrations`` (each ``{agentId, agentRegistry: "eip155:<chainId>:<address>"}``) and, when
  given, ``supportedTrust``. ``parse_registration`` reads one back into a ``Registration``.
* ``AgentDirectory`` answers who an agent's owner and payment wallet are, and its reputation, from
  the registries on a chain, keeping answers only until the chain's block number changes.

Rules: no I/O but the chain reads of ``AgentDirectory``; a malformed file raises ``ValueError``
naming the field (``services[1].endpoint``, say). Required when parsing: ``type``, ``name``,
``services``, ``x402Support``, ``active`` and ``registrations`` (every field of a registration
entry is mandatory, as the ERC says); ``description`` and ``image`` (ERC-721 compatibility,
a SHOULD) default to "", ``supportedTrust`` (OPTIONAL) to none. Fields a parser does not know
are kept in ``extra`` and written back by ``Registration.as_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils import is_address, to_checksum_address

from ..evm import erc8004
from ..evm.erc8004 import Summary

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
_KNOWN_FIELDS = (
    "type",
    "name",
    "description",
    "image",
    "services",
    "x402Support",
    "active",
    "registrations",
    "supportedTrust",
)


@dataclass(frozen=True)
class Service:
    """One entry of ``services``: a name (``web``, ``A2A``, ``MCP``, ``OASF``, ``ENS``, ``DID``,
    ``email``, or any other), where to reach it, an optional version, and any further fields
    (OASF's ``skills`` and ``domains``, say) in ``extra``."""

    name: str
    endpoint: str
    version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "endpoint": self.endpoint}
        if self.version is not None:
            out["version"] = self.version
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class RegistrationEntry:
    """One entry of ``registrations``: the agent's id in the identity registry ``agent_registry``."""

    agent_id: int
    agent_registry: str  # "eip155:<chainId>:<address>"

    @property
    def chain_id(self) -> int:
        return int(self.agent_registry.split(":")[1])

    @property
    def registry(self) -> str:
        """The identity registry's address, checksummed."""
        return to_checksum_address(self.agent_registry.split(":")[2])

    def as_dict(self) -> dict:
        return {"agentId": self.agent_id, "agentRegistry": self.agent_registry}


@dataclass(frozen=True)
class Registration:
    """A parsed agent registration file."""

    name: str
    description: str
    image: str
    services: tuple[Service, ...]
    x402_support: bool
    active: bool
    registrations: tuple[RegistrationEntry, ...]
    supported_trust: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def service(self, name: str) -> Service | None:
        """The first service called ``name`` (case-insensitive), or None."""
        return next((s for s in self.services if s.name.lower() == name.lower()), None)

    def registration_on(self, chain_id: int, registry: str) -> RegistrationEntry | None:
        """The entry naming the identity registry ``registry`` on ``chain_id``, or None."""
        registry = to_checksum_address(registry)
        return next((r for r in self.registrations if (r.chain_id, r.registry) == (chain_id, registry)), None)

    def as_dict(self) -> dict:
        """The file again, in the ERC's field order (unknown fields last)."""
        out: dict[str, Any] = {
            "type": REGISTRATION_TYPE,
            "name": self.name,
            "description": self.description,
            "image": self.image,
            "services": [s.as_dict() for s in self.services],
            "x402Support": self.x402_support,
            "active": self.active,
            "registrations": [r.as_dict() for r in self.registrations],
        }
        if self.supported_trust is not None:
            out["supportedTrust"] = list(self.supported_trust)
        out.update(self.extra)
        return out


def agent_registry_id(chain_id: int, registry: str) -> str:
    """``eip155:<chainId>:<address>``, the ERC's global name of an identity registry."""
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise ValueError(f"chain_id must be a positive int, got {chain_id!r}")
    if not (isinstance(registry, str) and is_address(registry)):
        raise ValueError(f"registry {registry!r} is not an address")
    return f"eip155:{chain_id}:{to_checksum_address(registry)}"


def registration_file(
    name: str,
    *,
    description: str = "",
    image: str = "",
    services: list[dict],
    agent_id: int,
    chain_id: int,
    registry: str,
    x402_support: bool = True,
    active: bool = True,
    supported_trust: list[str] | None = None,
) -> dict:
    """The registration file of agent ``agent_id`` of the identity registry ``registry`` on
    ``chain_id``, as a JSON-ready dict. ``services`` are dicts with ``name`` and ``endpoint`` (and
    ``version`` or other fields as the service needs). ``ValueError`` names a bad argument."""
    data: dict[str, Any] = {
        "type": REGISTRATION_TYPE,
        "name": name,
        "description": description,
        "image": image,
        "services": [dict(s) if isinstance(s, Mapping) else s for s in services],
        "x402Support": x402_support,
        "active": active,
        "registrations": [{"agentId": agent_id, "agentRegistry": agent_registry_id(chain_id, registry)}],
    }
    if supported_trust is not None:
        data["supportedTrust"] = list(supported_trust)
    return parse_registration(data).as_dict()  # one set of checks for writing and reading


def parse_registration(data: Any) -> Registration:
    """Read and check a registration file (a dict, as decoded from JSON)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"registration file must be a JSON object, got {type(data).__name__}")
    for required in ("type", "name", "services", "x402Support", "active", "registrations"):
        if required not in data:
            raise ValueError(f"registration file has no {required!r}")
    if data["type"] != REGISTRATION_TYPE:
        raise ValueError(f"type must be {REGISTRATION_TYPE!r}, got {data['type']!r}")
    name = _string(data["name"], "name")
    if not name:
        raise ValueError("name must not be empty")
    services = _list(data["services"], "services")
    registrations = _list(data["registrations"], "registrations")
    trust = data.get("supportedTrust")
    if trust is not None:
        trust = tuple(
            _string(t, f"supportedTrust[{i}]") for i, t in enumerate(_list(trust, "supportedTrust"))
        )
    return Registration(
        name=name,
        description=_string(data.get("description", ""), "description"),
        image=_string(data.get("image", ""), "image"),
        services=tuple(_service(s, f"services[{i}]") for i, s in enumerate(services)),
        x402_support=_bool(data["x402Support"], "x402Support"),
        active=_bool(data["active"], "active"),
        registrations=tuple(_registration(r, f"registrations[{i}]") for i, r in enumerate(registrations)),
        supported_trust=trust,
        extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
    )


def _service(entry: Any, where: str) -> Service:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object with name and endpoint")
    for required in ("name", "endpoint"):
        if required not in entry:
            raise ValueError(f"{where} has no {required!r}")
    name = _string(entry["name"], f"{where}.name")
    if not name:
        raise ValueError(f"{where}.name must not be empty")
    version = entry.get("version")
    if version is not None:
        version = _string(version, f"{where}.version")
    return Service(
        name=name,
        endpoint=_string(entry["endpoint"], f"{where}.endpoint"),
        version=version,
        extra={k: v for k, v in entry.items() if k not in ("name", "endpoint", "version")},
    )


def _registration(entry: Any, where: str) -> RegistrationEntry:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object with agentId and agentRegistry")
    for required in ("agentId", "agentRegistry"):
        if required not in entry:
            raise ValueError(f"{where} has no {required!r}")
    agent_id = entry["agentId"]
    # The ERC's example writes a JSON number; a decimal string (as x402 extensions write ids) is
    # read too, and written back as a number.
    if isinstance(agent_id, str) and agent_id.isdigit():
        agent_id = int(agent_id)
    if isinstance(agent_id, bool) or not isinstance(agent_id, int) or not 0 <= agent_id < 2**256:
        raise ValueError(f"{where}.agentId must be a token id (a non-negative integer), got {agent_id!r}")
    registry = _string(entry["agentRegistry"], f"{where}.agentRegistry")
    parts = registry.split(":")
    if len(parts) != 3 or parts[0] != "eip155" or not parts[1].isdigit() or not is_address(parts[2]):
        raise ValueError(f"{where}.agentRegistry {registry!r} is not eip155:<chainId>:<address>")
    return RegistrationEntry(agent_id, registry)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r:.80}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r:.80}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a list, got {value!r:.80}")
    return list(value)


class AgentDirectory:
    """Who an agent is on ``chain``: its owner, its payment wallet and its reputation.

    Answers are cached until the chain's block number changes (a revert to a snapshot and as many
    new blocks would go unnoticed: call ``clear()`` then). ``registry`` is the identity registry,
    ``chain_id`` its chain, as ``x402sim.trust.reputation`` expects of a directory."""

    MAX_CACHED = 4096

    def __init__(self, chain) -> None:
        self.chain = chain
        self.chain_id: int = chain.chain_id
        self.registry = erc8004.identity_registry_of(chain)
        self.reputation_registry = erc8004.reputation_registry_of(chain)
        self._cache: dict[tuple, Any] = {}
        self._block: int | None = None

    @property
    def agent_registry(self) -> str:
        """The identity registry as ``eip155:<chainId>:<address>``."""
        return agent_registry_id(self.chain_id, self.registry)

    def wallet(self, agent_id: int) -> str | None:
        """The agent's ``agentWallet`` (None: unset, or no such agent)."""
        return self._cached(("wallet", agent_id), lambda: erc8004.agent_wallet(self.chain, agent_id))

    def owner(self, agent_id: int) -> str | None:
        """The agent's owner (None: no such agent)."""
        return self._cached(("owner", agent_id), lambda: erc8004.owner_of(self.chain, agent_id))

    def reputation(
        self, agent_id: int, clients: list[str] | None = None, tag1: str = "", tag2: str = ""
    ) -> Summary:
        """``getSummary`` of the agent over ``clients`` (None: every client that gave feedback)."""
        key = ("reputation", agent_id, None if clients is None else tuple(clients), tag1, tag2)
        return self._cached(
            key, lambda: erc8004.get_summary(self.chain, agent_id, clients=clients, tag1=tag1, tag2=tag2)
        )

    def clear(self) -> None:
        self._cache.clear()
        self._block = None

    def _cached(self, key: tuple, read):
        block = self.chain.block_number
        if block != self._block or len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()
            self._block = block
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]


__all__ = [
    "REGISTRATION_TYPE",
    "AgentDirectory",
    "Registration",
    "RegistrationEntry",
    "Service",
    "agent_registry_id",
    "parse_registration",
    "registration_file",
]
