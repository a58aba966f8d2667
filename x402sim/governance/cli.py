"""``x402sim audit``: check, summarise and act on the audit logs of governed payments.

Job: the ``audit`` commands (``verify``, ``summary``, ``unfreeze``) over ``x402sim.governance``'s audit
log, and ``audit_lock``, the lock every command writing an audit file holds (``pay --audit`` too).

Rules: a broken or unreadable log is the commands' verdict (exit 1, naming the file and line); bad
usage is exit 2 (``x402sim.cli_errors``). The governance library is imported inside the commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..cli_errors import EXIT_FAILED, fail
from ..money import format_usdc_exact

if TYPE_CHECKING:
    from .audit import Verification

try:
    import fcntl  # audit files are locked while `pay` uses them (POSIX; elsewhere they are not)
except ImportError:  # pragma: no cover
    HAVE_FCNTL = False
else:
    HAVE_FCNTL = True

console = Console()


@contextlib.contextmanager
def audit_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on the audit file ``path`` (created if missing) while the body runs."""
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise fail(f"--audit {path}: {exc.strerror or exc}") from None
    try:
        if HAVE_FCNTL:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- audit ------------------------------------------------------------------------------------------

audit_app = typer.Typer(
    name="audit",
    help="Check, summarise and act on the audit logs of governed payments (pay --policy --audit).",
    no_args_is_help=True,
)
AuditFileArg = Annotated[
    Path, typer.Argument(help="The audit log (JSON Lines, written by pay --audit).", show_default=False)
]


def _broken(path: Path, report: Verification) -> str:
    """``FILE: line N: problem`` for a chain that does not verify (``FILE: problem`` when no line is
    to blame, e.g. a missing file)."""
    problem = report.problem
    if report.line is not None and not problem.startswith(f"line {report.line}:"):
        problem = f"line {report.line}: {problem}"
    return f"{path}: {problem}"


def _verified(path: Path) -> Verification:
    """The entries of the audit file at ``path``; exit 1 naming the first broken line."""
    from . import verify

    report = verify(path)
    if not report.ok:
        raise fail(_broken(path, report), EXIT_FAILED)
    return report


@audit_app.command("verify")
def audit_verify(
    file: AuditFileArg,
    head: Annotated[
        str | None,
        typer.Option(
            help="The hash the last entry must have (a head printed earlier): catches entries deleted at "
            "the end, which leave a shorter valid chain."
        ),
    ] = None,
) -> None:
    """Check the audit log's hash chain; exit 1 at the first broken link, naming its line.

    Prints 'FILE: ok, N entries, head HASH', or 'FILE: line N: PROBLEM' (an edited entry, a
    deleted, added or moved one, a truncated line). Keep the head somewhere else to catch entries
    deleted at the end.

    Exit code 0 when the chain holds, 1 when it is broken or the file cannot be read, 2 for bad usage.

    Examples:

      x402sim audit verify audit.jsonl

      x402sim audit verify audit.jsonl --head 3f5a...e1
    """
    from . import verify

    if head is not None:
        head = head.strip().lower().removeprefix("0x")
        if len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
            raise fail("--head: expected a 64-hex-digit hash, as audit verify prints it")
    report = verify(file, head=head)
    if not report.ok:
        print(_broken(file, report), flush=True)
        raise typer.Exit(EXIT_FAILED)
    print(f"{file}: ok, {len(report.entries)} entries, head {report.head}", flush=True)


@audit_app.command("summary")
def audit_summary(
    file: AuditFileArg,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (amounts in atomic units).")
    ] = False,
) -> None:
    """Spend per agent, project and payee (settled payments), denials by rule, approvals and freezes.

    The chain is verified first: a broken log is refused (exit 1), naming the line.

    Examples:

      x402sim audit summary audit.jsonl

      x402sim audit summary audit.jsonl --json | jq .spend.agents
    """
    from . import summarize

    report = _verified(file)
    try:
        summary = summarize(report.entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"{file}: not a log of governance events ({exc!r})", EXIT_FAILED) from None
    if json_out:
        print(json.dumps(summary, indent=2), flush=True)
        return
    _render_summary(file, report, summary)


def _render_summary(path: Path, report: Verification, s: dict[str, Any]) -> None:
    def counts(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    console.print(
        f"{path}: {s.get('entries', len(report.entries))} entries, head {report.head}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(f"decisions: {counts(s.get('decisions', {}))}", highlight=False, markup=False)
    console.print(f"outcomes: {counts(s.get('outcomes', {}))}", highlight=False, markup=False)
    spend = s.get("spend", {})
    for key, who in (("agents", "agent"), ("projects", "project"), ("payees", "payee")):
        rows = spend.get(key) or {}
        if not rows:
            console.print(f"spend per {who}: none", highlight=False)
            continue
        table = Table(title=f"Spend per {who}", title_justify="left")
        table.add_column(who, overflow="fold")
        table.add_column("settled USDC", justify="right", no_wrap=True)
        for name, amount in rows.items():
            table.add_row(Text(str(name)), format_usdc_exact(amount))
        table.add_section()
        table.add_row("total", format_usdc_exact(sum(rows.values())), style="bold")
        console.print(table)
    denials = s.get("denials") or {}
    if denials:
        table = Table(title="Denials by rule", title_justify="left")
        table.add_column("rule", overflow="fold")
        table.add_column("denied", justify="right")
        table.add_column("USDC", justify="right", no_wrap=True)
        for rule, row in denials.items():
            table.add_row(Text(str(rule)), str(row["denied"]), format_usdc_exact(row["amount"]))
        console.print(table)
    else:
        console.print("denials: none", highlight=False)
    console.print(f"approvals: {counts(s.get('approvals', {}))}", highlight=False, markup=False)
    freezes = s.get("freezes") or []
    if freezes:
        table = Table(title="Freezes", title_justify="left")
        for col in ("agent", "time (UTC)", "trigger", "reason", "now"):
            table.add_column(col, no_wrap=col == "time (UTC)", overflow="fold")
        for f, lifted in zip(freezes, _lifted(report.entries), strict=False):
            table.add_row(
                Text(str(f["agent"])),
                _utc(f["time"]),
                Text(str(f["trigger"])),
                Text(str(f["reason"])),
                "lifted" if lifted else "frozen",
            )
        console.print(table)
    else:
        console.print("freezes: none", highlight=False)
    console.print(f"unfreezes: {s.get('unfreezes', 0)}", highlight=False)


def _lifted(entries: list[dict[str, Any]]) -> list[bool]:
    """For each freeze entry in order, whether a later unfreeze of its agent lifted it (the fold the
    governor makes: an unfreeze lifts the agent's current freeze)."""
    lifted: list[bool] = []
    current: dict[str, int] = {}  # agent -> index in lifted of its freeze not yet lifted
    for e in entries:
        if e.get("event") == "freeze":
            current[e["agent"]] = len(lifted)
            lifted.append(False)
        elif e.get("event") == "unfreeze" and e.get("agent") in current:
            lifted[current.pop(e["agent"])] = True
    return lifted


def _utc(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@audit_app.command("unfreeze")
def audit_unfreeze(
    file: AuditFileArg,
    agent: Annotated[str, typer.Option("--agent", help="The frozen agent.", show_default=False)],
    by: Annotated[str, typer.Option("--by", help="Who lifts the freeze (recorded).", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Let a frozen agent pay again: append an 'unfreeze' entry to its audit log.

    The agent's last freeze must not be lifted yet; its trigger history starts afresh (its spend
    does not). The log is verified first and locked while the entry is appended.

    Exit code 0 when the entry was appended, 1 when the log is missing or broken or the agent is not
    frozen, 2 for bad usage.

    Example: x402sim audit unfreeze audit.jsonl --agent researcher --by alice --reason "checked the burst"
    """
    from . import AuditError, AuditLog, Governor, Policy

    if not file.is_file():
        raise fail(f"{file}: no such file", EXIT_FAILED)
    with audit_lock(file):
        try:
            log = AuditLog(file)
        except AuditError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        try:
            # No rules: the fold only replays what the log says (freezes are entries, not re-judged).
            governor = Governor(Policy(name="audit"), audit=log)
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(f"{file}: not a log of governance events ({exc!r})", EXIT_FAILED) from None
        try:
            if agent not in governor.frozen:
                others = ", ".join(sorted(governor.frozen)) or "none"
                raise fail(f"agent {agent!r} is not frozen in {file} (frozen agents: {others})", EXIT_FAILED)
            governor.unfreeze(agent, time.time(), by, reason)
        finally:
            governor.close()
    print(f"{file}: {agent} unfrozen by {by}; {log.count} entries, head {log.head}", flush=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app)
