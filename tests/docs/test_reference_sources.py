"""The files the reference pages are made from stay valid, and every generated page renders."""

from __future__ import annotations

import tomllib

import pytest

import x402sim
from docsgen.api_page import check_groups
from docsgen.formats_page import POLICY_EXAMPLE, SCENARIO_EXAMPLE
from docsgen.pages import GENERATED
from x402sim.governance import load_policies
from x402sim.sim.scenario import load_scenario, scenario_schema

from .blocks import ROOT


def test_annotated_scenario_is_a_valid_scenario_with_every_table():
    scenario = load_scenario(ROOT / SCENARIO_EXAMPLE)
    assert scenario.simulation.name == "example"
    tables = set(tomllib.loads((ROOT / SCENARIO_EXAMPLE).read_text()))
    assert tables == set(scenario_schema()["properties"])


def test_example_policy_file_loads():
    policies = load_policies(ROOT / POLICY_EXAMPLE)
    assert policies.policy("default").rules


def test_api_page_groups_every_public_name_once():
    check_groups(list(x402sim.__all__))
    with pytest.raises(ValueError, match="public names in no group: NotListed"):
        check_groups([*x402sim.__all__, "NotListed"])


@pytest.mark.parametrize("page", sorted(GENERATED))
def test_generated_page_renders(page):
    text = GENERATED[page]()
    assert text.startswith("# ") and "Generated at build time" in text
