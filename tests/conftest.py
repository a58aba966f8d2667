"""Shared fixtures: a fresh testbed per test (a new embedded chain costs a few milliseconds)."""

import os

import pytest
from hypothesis import HealthCheck, settings

from x402sim import Testbed

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def tb() -> Testbed:
    return Testbed(seed=11)
