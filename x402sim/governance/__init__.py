"""Spend governance for paying agents: policies, the governor, and the audit log (no I/O but the log).

See ``governor`` for how decisions are made and ``audit`` for the log's hash chain.
"""

from .audit import AuditError, AuditLog, Verification, summarize, verify
from .governor import (
    ALLOW,
    DENY,
    NEEDS_APPROVAL,
    Attempt,
    Decision,
    Freeze,
    Governor,
    GovernorStats,
    period_key,
)
from .policy import Policy, PolicyError, PolicyFile, check_policies, load_policies, parse_policies

__all__ = [
    "ALLOW",
    "DENY",
    "NEEDS_APPROVAL",
    "Attempt",
    "AuditError",
    "AuditLog",
    "Decision",
    "Freeze",
    "Governor",
    "GovernorStats",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "Verification",
    "check_policies",
    "load_policies",
    "parse_policies",
    "period_key",
    "summarize",
    "verify",
]
