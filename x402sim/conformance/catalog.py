"""The case catalog: every conformance case, its stable id, level, basis and one-line description.

Rules:

* A case is registered once, with ``@case(id, level, rests_on, description, kind=...)`` on an async
  function taking the role's context. Ids are hierarchical (``role.group.name``) and never reused for another
  meaning; the role is the first part.
* A level says what the case rests on: MUST (the spec or every reference SDK requires it), SHOULD,
  STRICT (stricter than the spec, where a known failure makes it worth demanding). ``rests_on``
  names the spec section or the public issue.
* A case function decides by raising: ``CaseFailed`` (via ``ctx.check``/``ctx.fail``) when the target
  broke the rule, ``CaseSkipped`` when the case does not apply; returning means passed. Any other
  exception means the case could not be judged (outcome ``error``).
* A case must name its ``kind``: why it has its level. The level rules are written once, in
  ``LEVEL_OF_KIND``: a 5xx answer to client input (``no-5xx``), input that changes what is paid
  (``payment``: amount, payee, asset, network, window), a MUST of the specification (``spec``) and a
  public bug report its maintainers accepted (``bug``) are MUST; strictness about spelling that cannot
  change what is paid (``spelling``) and hardening beyond the specification where a known failure makes
  it worth demanding (``hardening``) are STRICT; what the specification only recommends (``advice``) is
  SHOULD. What a target writes is held to the wire format (``spec``); reading a sloppy but unambiguous
  value (``" 1000"``) is a matter of ``spelling``. What every reference SDK does, where the
  specification is silent, is no rule by itself: such a case is ``hardening`` when a known failure
  makes it worth demanding. ``tests/conformance/test_levels.py`` holds every case to these rules.
* A case names the payment ``mechanism`` it pays or judges (``MECHANISMS``): ``exact-eip3009`` (the
  default), ``exact-permit2`` or ``upto``. ``select(..., mechanisms=...)`` keeps the cases of the
  mechanisms a target speaks (``x402sim conformance ... --mechanism``).
* A case runs over the transports (``TRANSPORTS``) it declares with ``transports=``, else over those
  its group's rule in ``carriers`` gives (every transport unless the rule is HTTP's alone).
* The catalog modules (``server_cases``, ``facilitator_cases``, ``client_cases``, ``trust_cases``,
  ``mechanism_cases``) are imported by ``load()``, so listing the catalog needs no target.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .results import LEVELS, Level, Role

# The carriers a case may run over (``x402sim conformance ... --transport``); ``carriers`` says which
# cases run over which.
TRANSPORTS = ("http", "mcp", "a2a")
DEFAULT_TRANSPORT = "http"

ROLES: tuple[Role, ...] = ("server", "facilitator", "client")
_ID = re.compile(r"(server|facilitator|client)(\.[a-z0-9][a-z0-9-]*){2,}")
_CASE_MODULES = (
    "server_cases",
    "facilitator_cases",
    "client_cases",
    "trust_cases",
    "mechanism_cases",
    "batch_server_cases",
    "batch_facilitator_cases",
    "batch_client_cases",
    "mcp_cases",
    "a2a_cases",
    "bazaar_cases",
)
# The payment mechanisms a case may be about: exact by EIP-3009, exact with Permit2, upto (Permit2),
# and batch-settlement (payment channels).
MECHANISMS = ("exact-eip3009", "exact-permit2", "upto", "batch-settlement")
DEFAULT_MECHANISM = "exact-eip3009"
LEVEL_OF_KIND: dict[str, Level] = {
    "no-5xx": "MUST",
    "payment": "MUST",
    "spec": "MUST",
    "bug": "MUST",
    "spelling": "STRICT",
    "hardening": "STRICT",
    "advice": "SHOULD",
}


class CaseFailed(Exception):
    """The target broke the case's rule; the message says how."""


class CaseSkipped(Exception):
    """The case does not apply to this target; the message says why."""


@dataclass(frozen=True)
class Case:
    id: str
    level: Level
    rests_on: str
    description: str
    run: Callable[..., Awaitable[None]]
    kind: str | None = None  # always set in CATALOG (``case`` requires it); None only for ad hoc cases
    mechanism: str = DEFAULT_MECHANISM  # the payment mechanism it pays or judges (``MECHANISMS``)
    # the transports it runs over (``TRANSPORTS``); None: as ``carriers.HTTP_ONLY`` decides
    transports: tuple[str, ...] | None = None

    @property
    def role(self) -> Role:
        return self.id.split(".", 1)[0]  # type: ignore[return-value]

    @property
    def group(self) -> str:
        return self.id.split(".")[1]


CATALOG: dict[str, Case] = {}


def case(
    id: str,
    level: Level,
    rests_on: str,
    description: str,
    *,
    kind: str | None = None,
    mechanism: str = DEFAULT_MECHANISM,
    transports: tuple[str, ...] | None = None,
):
    """Register the decorated async function as the case ``id``; ``kind`` (required, a key of
    ``LEVEL_OF_KIND``) says why it has ``level``; ``mechanism`` (one of ``MECHANISMS``) what it pays;
    ``transports`` (of ``TRANSPORTS``) what it runs over, when not as its group's."""
    if not _ID.fullmatch(id):
        raise ValueError(f"case id {id!r} is not role.group.name in lower-case words")
    if level not in LEVELS:
        raise ValueError(f"case {id}: level {level!r} is not one of {', '.join(LEVELS)}")
    if id in CATALOG:
        raise ValueError(f"case id {id} is registered twice")
    if kind not in LEVEL_OF_KIND:
        raise ValueError(f"case {id}: kind {kind!r} is not one of {', '.join(LEVEL_OF_KIND)}")
    if mechanism not in MECHANISMS:
        raise ValueError(f"case {id}: mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    if not description or "\n" in description:
        raise ValueError(f"case {id}: the description must be one line")
    if transports is not None and (not transports or set(transports) - set(TRANSPORTS)):
        raise ValueError(f"case {id}: transports {transports!r}: expected some of {', '.join(TRANSPORTS)}")

    def register(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        if id in CATALOG:
            raise ValueError(f"case id {id} is registered twice")
        CATALOG[id] = Case(id, level, rests_on, description, fn, kind, mechanism, transports)
        return fn

    return register


def load() -> dict[str, Case]:
    """The whole catalog, with every case module imported."""
    for name in _CASE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    return CATALOG


def select(
    role: Role | None = None,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    levels: Iterable[str] = (),
    mechanisms: Iterable[str] = (),
    transport: str | None = DEFAULT_TRANSPORT,
) -> list[Case]:
    """Cases of ``role`` (all roles when None) whose id matches one of the ``include`` globs (all when
    empty) and none of ``exclude``, at one of ``levels`` (all when empty), about one of
    ``mechanisms`` (all when empty), in id order. A glob without a wildcard also matches the ids under
    it (``server.replay`` selects ``server.replay.*``). ``transport``: a run over HTTP (the default)
    leaves out the cases declared for other transports only (the MCP cases); a run over another
    transport keeps every case, the runner reporting those that do not run over it skipped with
    their reason (``carriers``); None: every case (the listing)."""
    include, exclude, levels = list(include), list(exclude), {lv.upper() for lv in levels}
    unknown = levels - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown level {sorted(unknown)[0]!r}; expected one of {', '.join(LEVELS)}")
    spoken = parse_mechanisms(mechanisms)

    def matches(case_id: str, pattern: str) -> bool:
        return fnmatch.fnmatchcase(case_id, pattern) or case_id.startswith(pattern.rstrip(".") + ".")

    chosen = [
        c
        for c in load().values()
        if (role is None or c.role == role)
        and (not include or any(matches(c.id, p) for p in include))
        and not any(matches(c.id, p) for p in exclude)
        and (not levels or c.level in levels)
        and (not spoken or c.mechanism in spoken)
        and (transport != DEFAULT_TRANSPORT or c.transports is None or transport in c.transports)
    ]
    return sorted(chosen, key=lambda c: c.id)


def parse_mechanisms(values: Iterable[str]) -> tuple[str, ...]:
    """Mechanism names from ``values`` (each one name or a comma list), in ``MECHANISMS`` order;
    ``ValueError`` naming an unknown one."""
    names = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(names - set(MECHANISMS))
    if unknown:
        raise ValueError(f"unknown mechanism {unknown[0]!r}; expected one of {', '.join(MECHANISMS)}")
    return tuple(m for m in MECHANISMS if m in names)
