"""Calibration checks shared by the role test files: a control fails every case it claims to kill,
and every MUST case of a role is killed by some control."""

from __future__ import annotations

from x402sim.conformance import catalog, controls, runner
from x402sim.conformance.carriers import transports_of

DEFAULT_MECHANISMS = (catalog.DEFAULT_MECHANISM,)
PERMIT2_MECHANISMS = ("exact-permit2", "upto")
BATCH_MECHANISMS = ("batch-settlement",)


def role_controls(
    role: str,
    *,
    trust: bool | None = None,
    mechanisms: tuple[str, ...] | None = None,
    transport: str | None = catalog.DEFAULT_TRANSPORT,
) -> list[controls.Control]:
    """The controls of ``role``; with ``trust`` True or False, only those that kill trust cases (the
    trust calibration runs them, ``test_trust_cases``) or only the others; with ``mechanisms``, only
    those whose cases are all of these mechanisms (each role's test file runs the default
    mechanism's; ``test_mechanism_cases`` and ``test_batch_cases`` the others, in one harness per
    role); with ``transport`` (default http; None: any), only those whose cases all run over it
    (``test_mcp_cases`` runs the MCP ones)."""
    found = [c for c in controls.load().values() if c.role == role]
    if transport is not None:
        found = [c for c in found if all(transport in transports_of(catalog.load()[k]) for k in c.kills)]
    if trust is not None:
        found = [c for c in found if is_trust_control(c) == trust]
    if mechanisms is not None:
        found = [c for c in found if set(mechanisms_killed(c)) <= set(mechanisms)]
    return sorted(found, key=lambda c: c.name)


def mechanisms_killed(control: controls.Control) -> tuple[str, ...]:
    """The mechanisms of the cases ``control`` kills."""
    cases = catalog.load()
    return tuple(sorted({cases[case_id].mechanism for case_id in control.kills}))


def is_trust_control(control: controls.Control) -> bool:
    return all(case_id.split(".")[1] == "trust" for case_id in control.kills)


def control_survivors(
    control: controls.Control, options: runner.RunOptions | None = None, harness=None
) -> list[str]:
    """The cases ``control`` claims to kill but did not fail, each with its outcome and message (in
    ``harness``, a started one, when given)."""
    assert control.kills, f"{control.name} kills nothing"
    selected = catalog.select(include=control.kills)
    assert {c.id for c in selected} == set(control.kills), f"{control.name} names unknown cases"
    assert all(c.role == control.role for c in selected), f"{control.name} names cases of another role"
    report = runner.run(control.role, control.build(), selected, options, harness)
    assert {r.id for r in report.results} == set(control.kills)
    return not_failed(report)


def unkilled_must_cases(role: str) -> list[str]:
    killed = {case_id for c in role_controls(role, transport=None) for case_id in c.kills}
    return [c.id for c in catalog.select(role, levels=["MUST"]) if c.id not in killed]


# -- calibration over a transport other than HTTP (MCP, A2A) -------------------------------------

# Server controls written for HTTP whose cases are transport-independent (replay, the payee, a lost
# settlement answer): carried over another transport, each must still fail its cases.
CARRIED_HTTP_CONTROLS = (
    "server.serves-replays",
    "server.trusts-authorization-to",
    "server.serves-on-lost-answer",
)


def carried_options(transport: str) -> runner.RunOptions:
    from x402sim.conformance.harness import HarnessOptions

    return runner.RunOptions(transport=transport, harness=HarnessOptions(facilitator_timeout=2.0))


def started_harness(role: str, options: runner.RunOptions):
    """A started harness for ``role``'s cases (a pytest fixture yields it, then stops it)."""
    from x402sim.conformance.harness import Harness
    from x402sim.conformance.kits import harness_apps

    harness = Harness(options.harness)
    harness.start(extra_apps=harness_apps(role, harness))
    return harness


def outcomes(report) -> dict[str, set[str]]:
    """The case ids of ``report`` by outcome."""
    by_outcome: dict[str, set[str]] = {}
    for result in report.results:
        by_outcome.setdefault(result.outcome, set()).add(result.id)
    return by_outcome


def not_failed(report) -> list[str]:
    """The results of ``report`` that did not fail, each with its outcome and message."""
    return [f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome != "failed"]


def carried_control_survivors(name: str, transport: str, target_of, harness) -> list[str]:
    """The cases the HTTP control ``name`` kills that run over ``transport`` and did not fail when the
    control was served through ``target_of(build, name)``."""
    control = controls.load()[name]
    over = [c for c in catalog.select(include=control.kills) if transport in transports_of(c)]
    assert over, f"{name} kills no case that runs over {transport}"
    report = runner.run(
        "server", target_of(control.build().build, name), over, carried_options(transport), harness
    )
    return not_failed(report)
