"""reference/reason-codes.md: the reason codes and their classes, from ``x402sim.protocol.reasons``.

One row per class (``ReasonClass``): x402sim's own code for it (``Reason``) and every other spelling
known to mean the same condition (``SYNONYMS``).
"""

from __future__ import annotations

from . import md


def render() -> str:
    from x402sim.protocol.reasons import SYNONYMS, Reason, ReasonClass

    ours = {reason.cls: reason.value for reason in Reason}
    rows = []
    for cls in ReasonClass:
        if cls is ReasonClass.unknown:
            continue
        others = [spelling for spelling, c in SYNONYMS.items() if c is cls and spelling != ours.get(cls)]
        rows.append(
            [
                md.code(cls.value),
                md.code(ours[cls]) if cls in ours else "",
                ", ".join(md.code(s) for s in others),
            ]
        )
    return "\n".join(
        [
            "# Reason codes\n",
            md.GENERATED_NOTE.format(module="reasons_page", source="x402sim/protocol/reasons.py"),
            "Implementations spell the same failure differently: `network_mismatch` in the Python SDK, "
            "`invalid_exact_evm_network_mismatch` in TypeScript and Go, `invalid_network` in the spec "
            "registry. `x402sim.protocol.reasons` maps every known spelling to the condition behind it, "
            "a `ReasonClass`:\n",
            "- `reason_class(code)` gives the class of a code in any known spelling (case and surrounding "
            "whitespace ignored); `ReasonClass.unknown` for anything not in the table;\n"
            "- `same_class(a, b)` is true when both codes are known and name the same condition "
            "(`unknown` never matches anything, not even itself);\n"
            "- `Reason` is x402sim's own set of codes, the spellings it answers with (the Python SDK's, "
            "plus `duplicate_settlement`); `Reason.x.cls` is its class.\n",
            "Judge another implementation by class, never by one SDK's spelling: the conformance "
            "suite does, and reports the observed spelling next to its verdict. In a run's "
            "summary.json, `failures` counts failed requests by these classes (and a few of the "
            "simulator's own labels: see [summary.json](summary-json.md#failures)).\n",
            md.table(["Class", "x402sim's code", "Other known spellings"], rows),
        ]
    )
