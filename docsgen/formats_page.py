"""reference/scenario-format.md and reference/policy-format.md: the two TOML file formats.

Each page is an annotated example file (a committed file that tests/docs loads, so it stays valid)
followed by the tables of the format's JSON Schema (``schema_tables``): the scenario schema is
``x402sim.sim.scenario.scenario_schema``, the policy file's is that of its pydantic model.
"""

from __future__ import annotations

from pathlib import Path

from . import md
from .schema_tables import SchemaPage

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_EXAMPLE = "docs/snippets/scenario-annotated.toml"
POLICY_EXAMPLE = "examples/policy.toml"


def _read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def scenario() -> str:
    from x402sim.sim.scenario import scenario_schema

    return "\n".join(
        [
            "# Scenario files\n",
            md.GENERATED_NOTE.format(module="formats_page", source="the scenario JSON Schema"),
            "`x402sim run FILE` simulates the world a TOML scenario file describes. "
            "`x402sim schema` prints the format's JSON Schema, for editors that complete and check "
            "keys; `--set key.path=value` overrides any value of a file on the command line (a list "
            "item by index or by `name`; the value is TOML, a bare word is a string). A bad file is "
            "refused with exit code 2 and a message naming the file, the key path and the problem.\n",
            md.heading(2, "An annotated example", "annotated-example"),
            f"Every table, with what each key does (`{SCENARIO_EXAMPLE}` in the repository; it runs as "
            "it is). Trust keys (ERC-8004 identities and reputation, AP2 mandates, signed requests "
            "and pay-per-crawl) are in the tables below.\n",
            md.fenced(_read(SCENARIO_EXAMPLE), "toml"),
            "How distributions, drawn prices, server templates and growing traffic work, with "
            "recipes: [Write a scenario](../how-to/write-a-scenario.md).\n",
            md.heading(2, "Every key", "every-key"),
            "Generated from the JSON Schema. A distribution may also be written as a plain number "
            "(a constant), a price as a decimal USDC string.\n",
            SchemaPage(scenario_schema(), "a scenario file").render(level=3),
        ]
    )


def policy() -> str:
    from x402sim.governance.policy import PolicyFile

    return "\n".join(
        [
            "# Policy files\n",
            md.GENERATED_NOTE.format(module="formats_page", source="x402sim/governance/policy.py"),
            "A policy file holds the rules a governor enforces before an agent signs a payment: "
            "`x402sim pay --policy FILE`, `Governor(load_policies(FILE).policy(NAME))` in Python. A "
            "scenario holds the same `[[policies]]` tables, its projects being its agent groups.\n",
            md.heading(2, "An example", "example"),
            f"`{POLICY_EXAMPLE}` in the repository:\n",
            md.fenced(_read(POLICY_EXAMPLE), "toml"),
            md.heading(2, "Every key", "every-key"),
            "Generated from the policy file's model. Amounts are decimal USDC strings.\n",
            SchemaPage(PolicyFile.model_json_schema(mode="validation"), "a policy file").render(level=3),
        ]
    )
