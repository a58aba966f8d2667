"""The audit log: an append-only JSON Lines file, one entry per governance event, hash-chained.

Each entry is a JSON object with ``seq`` (1, 2, ...), ``prev`` (the ``hash`` of the entry before,
64 zeros for the first) and ``hash``: SHA-256 of the entry's canonical JSON (sorted keys, no
spaces) without its ``hash`` key. Editing an entry breaks its hash; deleting, inserting or
reordering entries breaks the next entry's ``prev`` or ``seq``. Deleting entries at the end leaves
a shorter valid chain: that is caught only against a head recorded elsewhere (``verify(head=)``;
the governor's ``head`` and ``audit verify`` print it).

Each entry is written with one ``write`` of its whole line and flushed, so a crash leaves at most a
truncated last line, which ``verify`` reports.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import InputError

GENESIS = "0" * 64
EVENTS = ("decision", "approval", "outcome", "freeze", "unfreeze")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``entry``'s canonical JSON without its ``hash`` key."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class AuditLog:
    """Appends hash-chained entries to ``path`` (with ``path`` None, only the chain's ``head`` and
    ``count`` are kept, and the entries too with ``keep``).

    An existing file is verified and continued (``entries`` holds what it had, for a governor to
    resume from); a broken one raises ``AuditError``."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self.entries: list[dict[str, Any]] = []
        self.head = GENESIS
        self.count = 0
        self._file: IO[str] | None = None
        if self.path is not None and self.path.exists():
            report = verify(self.path)
            if not report.ok:
                raise AuditError(f"{self.path}: {report.problem}")
            self.entries = report.entries
            self.head, self.count = report.head, len(report.entries)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Chain ``entry`` (adds ``seq``, ``prev`` and ``hash``), write it, and return it."""
        chained = {"seq": self.count + 1, **entry, "prev": self.head}
        chained["hash"] = entry_hash(chained)
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(chained, separators=(",", ":")) + "\n")
            self._file.flush()
        if self.keep:
            self.entries.append(chained)
        self.head, self.count = chained["hash"], self.count + 1
        return chained

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class AuditError(InputError):
    """An audit file whose chain is broken (or unreadable)."""


@dataclass
class Verification:
    """What ``verify`` found: ``ok``, or the first broken ``line`` (1-based) and the ``problem``."""

    ok: bool
    entries: list[dict[str, Any]] = field(default_factory=list)
    head: str = GENESIS
    line: int | None = None
    problem: str = ""


def verify(path: str | Path, head: str | None = None) -> Verification:
    """Check the chain of the audit file at ``path`` line by line, stopping at the first broken link;
    with ``head``, the last entry's hash must also be ``head`` (entries deleted at the end)."""
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return Verification(False, problem="no such file")
    except (OSError, UnicodeDecodeError) as exc:
        return Verification(False, problem=f"cannot read: {exc}")

    def broken(n: int, problem: str) -> Verification:
        return Verification(False, entries, prev, n, f"line {n}: {problem}")

    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            return broken(n, "not a JSON object (edited or truncated)")
        if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
            return broken(n, "not an audit entry (no hash)")
        if entry.get("seq") != n:
            return broken(
                n, f"seq is {entry.get('seq')!r}, expected {n} (an entry was deleted, added or moved)"
            )
        if entry.get("prev") != prev:
            return broken(n, "prev is not the hash of the entry before (an entry was deleted or moved)")
        if entry_hash(entry) != entry["hash"]:
            return broken(n, "hash does not match the entry's content (the entry was edited)")
        entries.append(entry)
        prev = entry["hash"]
    if head is not None and prev != head:
        at = next((i for i, e in enumerate(entries, 1) if e["hash"] == head), None)
        n = len(entries)
        why = (
            f"the expected head is line {at}: lines were added after it"
            if at
            else "entries were deleted after it"
        )
        return Verification(
            False, entries, prev, n, f"line {n}: the last entry is not the expected head ({why})"
        )
    return Verification(True, entries, prev)


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Spend (settled) per agent, project and payee; denials by rule; approvals; freezes. Amounts are
    atomic units."""
    spend: dict[str, Counter[str]] = {"agents": Counter(), "projects": Counter(), "payees": Counter()}
    tickets: dict[tuple[str, int], dict[str, Any]] = {}
    denials: Counter[str] = Counter()
    denied_amount: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    approvals = {"requested": 0, "granted": 0, "refused": 0}
    freezes: list[dict[str, Any]] = []
    unfreezes = 0
    for e in entries:
        event = e.get("event")
        if event == "decision":
            decisions[e["decision"]] += 1
            tickets[(e["agent"], e["ticket"])] = e
            if e["decision"] == "deny":
                denials[e["rule"]] += 1
                denied_amount[e["rule"]] += int(e["amount"])
            elif e["decision"] == "needs-approval":
                approvals["requested"] += 1
        elif event == "approval":
            approvals["granted" if e["decision"] == "allow" else "refused"] += 1
        elif event == "outcome":
            outcomes[e["outcome"]] += 1
            paid = tickets.get((e["agent"], e["ticket"]))
            if e["outcome"] == "settled" and paid is not None:
                amount = int(paid["amount"])
                spend["agents"][e["agent"]] += amount
                spend["payees"][paid["payee"]] += amount
                for project in paid.get("projects") or []:
                    spend["projects"][project] += amount
        elif event == "freeze":
            freezes.append(
                {"agent": e["agent"], "time": e["time"], "trigger": e["rule"], "reason": e["reason"]}
            )
        elif event == "unfreeze":
            unfreezes += 1
    by_rule: dict[str, dict[str, int]] = defaultdict(dict)
    for rule, n in denials.items():
        by_rule[rule] = {"denied": n, "amount": denied_amount[rule]}
    return {
        "entries": len(entries),
        "decisions": dict(decisions),
        "outcomes": dict(outcomes),
        "spend": {k: dict(v.most_common()) for k, v in spend.items()},
        "denials": dict(sorted(by_rule.items())),
        "approvals": approvals,
        "freezes": freezes,
        "unfreezes": unfreezes,
    }


__all__ = ["GENESIS", "AuditError", "AuditLog", "Verification", "entry_hash", "summarize", "verify"]
