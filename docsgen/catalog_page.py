"""reference/conformance-catalog.md: every conformance case, from the catalog itself.

One table per role (server, facilitator, client), in id order: id, level, the transports it runs over,
what the case rests on and its one-line description, as ``x402sim conformance list`` prints them.
"""

from __future__ import annotations

from . import md

_ROLES = {
    "server": "the harness plays the client (and controls the facilitator) against a resource server",
    "facilitator": "the harness plays the resource server and posts `/verify` and `/settle`",
    "client": "the harness plays the resource server, often a hostile one, and runs the client",
}


def render() -> str:
    from x402sim.conformance.carriers import transports_of
    from x402sim.conformance.catalog import ROLES, select
    from x402sim.conformance.results import LEVELS

    cases = select(transport=None)
    parts = [
        "# Conformance catalog\n",
        md.GENERATED_NOTE.format(module="catalog_page", source="x402sim/conformance/catalog.py"),
        f"{len(cases)} cases. Every case has a stable id (`role.group.name`, never reused for another "
        "meaning), a level and what it rests on (a spec section or a public issue). Levels: "
        "**MUST** (the spec or every reference SDK requires it), **SHOULD**, **STRICT** (stricter "
        "than the spec, where a known failure makes it worth demanding). Select cases with "
        "`--cases` / `--exclude` globs and `--level` ([command line](cli.md#x402sim-conformance-server)); "
        "`x402sim conformance list` prints this catalog. A case runs over the transports it names "
        "(`--transport`); over another it is reported skipped, with the reason.\n",
        md.table(
            ["Role", *LEVELS, "Total"],
            [
                [
                    f"[{role}](#{role})",
                    *(str(sum(c.role == role and c.level == level for c in cases)) for level in LEVELS),
                    str(sum(c.role == role for c in cases)),
                ]
                for role in ROLES
            ],
        ),
    ]
    for role in ROLES:
        parts.append(md.heading(2, role.capitalize(), role))
        parts.append(md.text(_ROLES[role].capitalize()) + ".\n")
        parts.append(
            md.table(
                ["Id", "Level", "Transports", "Rests on", "Description"],
                [
                    [
                        md.code(c.id),
                        c.level,
                        ", ".join(transports_of(c)),
                        md.text(c.rests_on),
                        md.text(c.description),
                    ]
                    for c in cases
                    if c.role == role
                ],
            )
        )
    return "\n".join(parts)
