"""The level rules over the whole catalog: every case names its kind, its level is the one
``LEVEL_OF_KIND`` gives that kind, and what it rests on fits the kind (a bug report for ``bug``, the
specification for ``spec`` and ``advice``, a known failure for ``hardening``, the HTTP transport's
error table for ``no-5xx``). Issue 22's two rules are stated as tests of their own: a 5xx answer to
client input fails a MUST case at every role that answers client input, and no case about what is
paid is merely STRICT."""

from __future__ import annotations

import re

import pytest

from x402sim.conformance import catalog

CASES = sorted(catalog.load().values(), key=lambda c: c.id)

# What names the specification: the x402 documents (core, HTTP transport, exact scheme, facilitator
# API, extensions, their field tables) and the standards and drafts they build on.
SPEC = re.compile(
    r"\bspec\b|\bEIP-\d+|\bRFC \d+|\bdraft\b|\bAP2\b|\bexact (?:EVM|scheme)\b|facilitator API"
    r"|\bx402 v[12]\b|\bextension\b|SettleResponse|PaymentRequire"
    r"|x402-reference 11"  # the reference notes' summary of the specification as of late 2026
)
BUG_REPORT = re.compile(r"\bx402#\d+\b")
# What makes hardening worth demanding: a public report, the reference notes' known weak spots
# (section 7), a red-team attack, or the reference SDKs' practice that a failure taught them.
KNOWN_FAILURE = re.compile(r"\bx402#\d+\b|reference notes section 7|x402-reference 7|red-team|\bSDKs?\b")
TRANSPORT_ERROR_TABLE = "HTTP transport spec v2 (malformed -> 400"
PROMISES_NO_5XX = re.compile(r"\b(?:never|no) (?:a )?5xx\b")
# Only servers and facilitators answer client input over HTTP; a client answers nothing.
ANSWERING_ROLES = {"server", "facilitator"}


def of_kind(kind: str) -> list[catalog.Case]:
    return [c for c in CASES if c.kind == kind]


def offenders(cases, pattern: re.Pattern[str]) -> list[str]:
    return [f"{c.id}: {c.rests_on!r}" for c in cases if not pattern.search(c.rests_on)]


def test_every_case_has_the_level_of_its_kind():
    wrong = [
        f"{c.id}: kind {c.kind!r}, level {c.level}, expected {catalog.LEVEL_OF_KIND.get(c.kind or '')}"
        for c in CASES
        if c.kind not in catalog.LEVEL_OF_KIND or c.level != catalog.LEVEL_OF_KIND[c.kind]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", [None, "taste"])
def test_a_case_without_a_known_kind_is_refused(kind):
    with pytest.raises(ValueError, match=r"case server\.levels\.probe: kind"):
        catalog.case("server.levels.probe", "MUST", "spec", "a probe", kind=kind)
    assert "server.levels.probe" not in catalog.CATALOG


def test_bug_cases_name_a_public_report():
    assert of_kind("bug")
    assert not offenders(of_kind("bug"), BUG_REPORT)


def test_spec_cases_name_the_specification():
    assert not offenders(of_kind("spec"), SPEC)


def test_advice_cases_name_the_text_that_recommends():
    """A recommendation is some specification's: a case resting only on a bug report or on SDK
    behaviour is not advice."""
    assert not offenders(of_kind("advice"), SPEC)


def test_hardening_cases_name_the_failure_that_makes_them_worth_demanding():
    assert not offenders(of_kind("hardening"), KNOWN_FAILURE)


def test_a_5xx_to_client_input_fails_a_must_case_at_every_answering_role():
    no_5xx = of_kind("no-5xx")
    assert {c.role for c in no_5xx} == ANSWERING_ROLES
    assert all(c.level == "MUST" for c in no_5xx)
    assert not [c.id for c in no_5xx if not PROMISES_NO_5XX.search(c.description)]
    assert not [c.id for c in no_5xx if TRANSPORT_ERROR_TABLE not in c.rests_on]


def test_a_lesser_case_promising_no_5xx_has_a_must_twin_in_its_group():
    """Where a SHOULD or STRICT case also refuses a 5xx, a no-5xx case of the same role and group
    judges the 5xx at MUST, so a server error never passes as a lesser finding."""
    guarded = {(c.role, c.group) for c in of_kind("no-5xx")}
    orphans = [
        c.id
        for c in CASES
        if c.level != "MUST" and PROMISES_NO_5XX.search(c.description) and (c.role, c.group) not in guarded
    ]
    assert not orphans, orphans


def test_no_case_about_what_is_paid_is_below_must():
    assert not [c.id for c in CASES if c.level == "STRICT" and c.kind == "payment"]
    assert not [c.id for c in CASES if c.kind in ("payment", "no-5xx") and c.level != "MUST"]
