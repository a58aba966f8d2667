"""Calibration checks shared by the role test files: a control fails every case it claims to kill,
and every MUST case of a role is killed by some control."""

from __future__ import annotations

from x402sim.conformance import catalog, controls, runner


def role_controls(
    role: str, *, trust: bool | None = None, mechanism: bool | None = None
) -> list[controls.Control]:
    """The controls of ``role``; with ``trust`` True or False, only those that kill trust cases (the
    trust calibration runs them, ``test_trust_cases``) or only the others; with ``mechanism`` True or
    False, only those that kill Permit2 mechanism cases (``test_mechanism_cases`` runs them in one
    harness per role) or only the others."""
    found = [c for c in controls.load().values() if c.role == role]
    if trust is not None:
        found = [c for c in found if is_trust_control(c) == trust]
    if mechanism is not None:
        found = [c for c in found if is_mechanism_control(c) == mechanism]
    return sorted(found, key=lambda c: c.name)


def is_mechanism_control(control: controls.Control) -> bool:
    cases = catalog.load()
    return all(cases[case_id].mechanism != catalog.DEFAULT_MECHANISM for case_id in control.kills)


def is_trust_control(control: controls.Control) -> bool:
    return all(case_id.split(".")[1] == "trust" for case_id in control.kills)


def control_survivors(
    control: controls.Control, options: runner.RunOptions | None = None, harness=None
) -> list[str]:
    """The cases ``control`` claims to kill but did not fail, each with its outcome and message (in
    ``harness``, a started one, when given)."""
    assert control.kills, f"{control.name} kills nothing"
    cases = catalog.select(include=control.kills)
    assert {c.id for c in cases} == set(control.kills), f"{control.name} names unknown cases"
    assert all(c.role == control.role for c in cases), f"{control.name} names cases of another role"
    report = runner.run(control.role, control.build(), cases, options, harness)
    assert {r.id for r in report.results} == set(control.kills)
    return [f"{r.id}: {r.outcome} {r.message}" for r in report.results if r.outcome != "failed"]


def unkilled_must_cases(role: str) -> list[str]:
    killed = {case_id for c in role_controls(role) for case_id in c.kills}
    return [c.id for c in catalog.select(role, levels=["MUST"]) if c.id not in killed]
