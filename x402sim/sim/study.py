"""Studies made of several runs of one scenario: what governance buys and costs as one of its
settings varies (``governance_tradeoff``), and its figure (``write_governance_tradeoff``).

Rules: every run goes through ``run.run`` (nothing written, no plots, no rows kept) with its
overrides as values; the run without governors does not depend on the setting and is made once.
Drawing is ``report``'s (``report.tradeoff_figure``): this module runs, the report draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .run import run
from .scenario import Scenario
from .shipped import scenario_file

VELOCITY = "policies.fleet.triggers.velocity.max"
VELOCITY_MAXIMA = ("0.2", "0.3", "0.5", "0.6", "0.8", "1")


def governance_tradeoff(
    scenario: Scenario | str | Path | dict,
    key: str,
    values: list,
    *,
    seed: int | None = None,
    overrides: Mapping[str, Any] = MappingProxyType({}),
) -> list[dict]:
    """What governance buys and costs as one setting varies: for each of ``values`` of ``key`` (a
    ``--set`` key path, e.g. ``policies.fleet.triggers.velocity.max``), one run of ``scenario``
    with it, compared with one run of the same seed without governors (made once: it does not
    depend on the policy). Returns one dict per value:
    ``value``, ``loss_prevented_usdc``, ``attack_spend_usdc`` (with governance),
    ``honest_blocked`` (count), ``honest_blocked_share`` (of honest payments put to a governor),
    ``honest_blocked_usdc``, ``honest_agents_frozen``, ``time_to_cutoff_mean_s`` and
    ``attacked_agents_not_cut_off``; and, in each, ``without_governance_usdc``."""
    base = {**overrides, "governance.counterfactual": False}
    without = run(scenario, seed=seed, overrides=base, keep_rows=False, plots=False, governance=False)
    lost = without.summary["governance"]["attack_spend_usdc"]["without_governance"]
    points = []
    for value in values:
        s = run(
            scenario,
            seed=seed,
            overrides={**base, key: value},
            keep_rows=False,
            plots=False,
        )
        g = s.summary["governance"]
        spent, honest = g["attack_spend_usdc"]["with_governance"], g["honest_payments_blocked"]
        points.append(
            {
                "value": value,
                "loss_prevented_usdc": round(lost - spent, 6),
                "attack_spend_usdc": spent,
                "without_governance_usdc": lost,
                "honest_blocked": honest["count"],
                "honest_blocked_share": honest["share"],
                "honest_blocked_usdc": honest["usdc"],
                "honest_agents_frozen": g["honest_agents_frozen"],
                "time_to_cutoff_mean_s": g["time_to_cutoff_s"]["mean"],
                "attacked_agents_not_cut_off": g["attacked_agents_not_cut_off"],
            }
        )
    return points


def write_governance_tradeoff(
    path: str | Path = "docs/img/governance-tradeoff.png",
    scenario: str | Path = "compromised-agent",
    key: str = VELOCITY,
    values=VELOCITY_MAXIMA,
) -> list[dict]:
    """Run the trade-off of ``scenario`` over ``values`` of ``key`` and save its figure at ``path``
    (as docs/img/governance-tradeoff.png, shown in the governance how-to); returns the points.
    ``scenario`` is a file or the name of a shipped scenario (``shipped.scenario_file``)."""
    from .report import DPI, tradeoff_figure  # matplotlib: loaded only to draw

    points = governance_tradeoff(scenario_file(scenario), key, list(values))
    tradeoff_figure(points).savefig(path, dpi=DPI)
    return points
