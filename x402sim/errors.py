"""The root of x402sim's exceptions and the few kinds under it.

Job: let a caller catch every error x402sim raises on purpose with ``except X402simError``, or one kind
of them (a bad input, a malformed message, a failed backend...), and let the command line map each kind
to one exit code (``x402sim.cli_errors``).

Rules:
- This is a leaf module: it imports nothing of x402sim, so any module may import it.
- Every exception class of x402sim derives from exactly one kind below, keeping its other bases
  (``ValueError`` etc.), so ``except ValueError`` callers still catch what they caught.
- Control flow is not an error and stays outside the tree: ``Unreachable`` (a driver telling a role the
  other side did not answer) and the conformance cases' ``CaseFailed`` / ``CaseSkipped`` (a case's
  verdict, not a failure of the harness).

The tree (where each class lives in parentheses)::

    X402simError
    ├── InputError          a bad file, option or environment variable given to x402sim
    │   ├── TableError (tables) ── PolicyError (governance.policy), ScenarioError (sim.scenario)
    │   ├── RoutesFileError (http.routes_file, ValueError), EnvError (http.serve, ValueError)
    │   ├── AuditError (governance.audit), SweepError (sim.sweep), ShardFolderError (sim.shard_store)
    │   └── ConfigError, ReportError (conformance.config, conformance.reports)
    ├── WireError           a malformed message from the other side
    │   ├── ProtocolError (protocol.errors, ValueError), SignatureError (evm.eip712, ValueError)
    │   └── BodyError (http.bodies), RpcError and its params' errors (http.chain_rpc)
    ├── ChainError          a chain backend failed or refused a call (here; every backend raises it)
    ├── UnavailableError    a service, conformance target or fuzzed process could not be run or reached
    │   └── ServiceError (http.runner), TargetError (conformance.targets), CampaignError (fuzz.campaign)
    ├── OutputError         an output folder exists, or a result cannot be written
    │   └── OutputExists (sim.run)
    └── Refused             a payment or request refused by a rule
        └── PaymentRefused (actors.client), MandateRefused (trust.mandates),
            SignatureRefused (trust.signatures)

``ProtocolError`` is a kind of its own in spirit but lives in its package; it is listed here under
the kind it derives from.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "InputError",
    "OutputError",
    "Refused",
    "UnavailableError",
    "WireError",
    "X402simError",
]


class X402simError(Exception):
    """Any error x402sim raises on purpose; ``str()`` is one line naming what and why."""


class InputError(X402simError):
    """A file, option or environment variable that cannot be used; the message names it."""


class WireError(X402simError):
    """A malformed message from the other side (an x402 header, an HTTP body, a JSON-RPC request)."""


class ChainError(X402simError):
    """A transaction the chain refuses to take, a lookup of something that is not there, or a node
    that cannot be reached; the message names what and where. Every chain backend signals its own
    failures with it; a reverted call is a value, not this error."""


class UnavailableError(X402simError):
    """A service, target or process x402sim needs could not be started, reached or run."""


class OutputError(X402simError):
    """A result cannot be written where asked (the folder exists, the file cannot be written)."""


class Refused(X402simError):
    """A payment or request refused by a rule (a spend policy, a mandate, a signature check)."""
