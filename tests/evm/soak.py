"""The differential machines' soak: many more examples of the same operations than ``make test`` runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def soak(check: Callable[[Any], None], operations: st.SearchStrategy) -> None:
    """``check(ops)`` on ``X402SIM_SOAK_STEPS`` examples (default 2,000) of ``operations``."""
    examples = int(os.environ.get("X402SIM_SOAK_STEPS", "2000"))

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops=operations)
    def run(ops):
        check(ops)

    run()
