"""Policy files: what validates, and errors that name the file, the key path and the problem."""

import pytest

from x402sim.governance import PolicyError, load_policies, parse_policies
from x402sim.governance.policy import SpendLimit


def _one(rule: dict) -> dict:
    return {"policies": [{"name": "p", "rules": [rule]}]}


def test_a_file_loads_with_amounts_in_atomic_units(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(
        '[projects]\nresearch = ["alice", "bob"]\n\n'
        '[[policies]]\nname = "team"\n'
        'rules = [{ kind = "spend-limit", max = "100", period = "month", applies_to = "project:research", '
        "shared = true }]\n"
        'triggers = [{ kind = "velocity", max = "5", window = 60 }]\n'
    )
    policies = load_policies(path)
    rule = policies.policy().rules[0]
    assert isinstance(rule, SpendLimit) and rule.max == 100_000_000 and rule.shared
    assert policies.projects == {"research": ["alice", "bob"]}
    assert policies.policy("team").labels()[id(rule)] == "spend-limit#0"


@pytest.mark.parametrize(
    "data, where, problem",
    [
        (_one({"kind": "spend-limt", "max": "1"}), "policies[0].rules[0]", "'spend-limt' is not one of"),
        (
            _one({"kind": "spend-limit", "max": "1", "perod": "day"}),
            "policies[0].rules[0].perod",
            "unknown key",
        ),
        (_one({"kind": "spend-limit", "max": "1", "period": "hour"}), "policies[0].rules[0].period", "'run'"),
        (_one({"kind": "spend-limit"}), "policies[0].rules[0].max", "required key is missing"),
        (
            _one({"kind": "request-cap", "max": "0.0000001"}),
            "policies[0].rules[0].max",
            "more than 6 decimals",
        ),
        (_one({"kind": "allow"}), "policies[0].rules[0]", "name at least one of"),
        (
            _one({"kind": "rate-limit", "max_payments": 3, "window": 0}),
            "policies[0].rules[0].window",
            "greater",
        ),
        (
            _one({"kind": "request-cap", "max": "1", "applies_to": "project:ghost"}),
            "policies[0].rules[0].applies_to",
            "no project named 'ghost'",
        ),
        (_one({"kind": "request-cap", "max": "1", "applies_to": "team"}), "applies_to", "pattern"),
        ({"policies": []}, "policies", "at least 1"),
        ({"policies": [{"name": "p"}, {"name": "p"}]}, "policies[1].name", "used twice"),
        (
            {"policies": [{"name": "p", "triggers": [{"kind": "panic"}]}]},
            "policies[0].triggers[0]",
            "'panic'",
        ),
    ],
)
def test_errors_name_the_key_path(data, where, problem):
    with pytest.raises(PolicyError) as caught:
        parse_policies(data, "team.toml")
    assert caught.value.where.startswith("team.toml")
    assert where in caught.value.where
    assert problem in caught.value.problem


def test_file_problems_name_the_file(tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        load_policies(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[policies]\n")
    with pytest.raises(PolicyError, match=r"broken\.toml: TOML syntax"):
        load_policies(broken)


def test_policy_by_name():
    policies = parse_policies({"policies": [{"name": "a"}, {"name": "b"}]})
    assert policies.policy("b").name == "b"
    with pytest.raises(KeyError, match="name one of"):
        policies.policy()
    with pytest.raises(KeyError, match="no policy named 'c'"):
        policies.policy("c")
