"""One tampering of a hash-chained log, drawn by Hypothesis: shared by the audit log's tests and the
``x402sim audit`` command's."""

import json

from hypothesis import strategies as st

KINDS = ("edit", "delete", "swap", "insert", "truncate")


def tamper(lines: list[str], data, kind: str) -> tuple[list[str], int]:
    """``lines`` with one ``kind`` of tampering at a drawn line, and the line (from 1) where a
    verifier must find it (for a deleted last line, the line before it, only against a known head)."""
    n = len(lines)
    k = data.draw(st.integers(1, n - 1 if kind == "swap" else n), label="line")
    out = list(lines)
    if kind == "edit":
        entry = json.loads(out[k - 1])
        field = data.draw(st.sampled_from(sorted(set(entry) - {"hash", "prev", "seq"})), label="field")
        entry[field] = "tampered" if entry[field] != "tampered" else "other"
        out[k - 1] = json.dumps(entry, separators=(",", ":"))
    elif kind == "delete":
        del out[k - 1]
    elif kind == "swap":
        out[k - 1], out[k] = out[k], out[k - 1]
    elif kind == "insert":  # a copy of line k after it: the copy, line k + 1, is the one out of place
        out.insert(k, out[k - 1])
        k += 1
    else:
        out[k - 1] = out[k - 1][: len(out[k - 1]) // 2]
    return out, k
