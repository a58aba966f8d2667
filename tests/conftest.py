"""Shared fixtures: a fresh testbed per test (a new embedded chain costs a few milliseconds)."""

import os

# Every header a role vouches for is also decoded in full and compared, here and in the processes
# the tests start (see the trusted hops of x402sim.protocol.codec).
os.environ["X402SIM_CHECK_TRUSTED_HOPS"] = "1"

import eth  # noqa: F401  py-evm raises the recursion limit on import: not inside a Hypothesis test
import pytest
from hypothesis import HealthCheck, settings

from x402sim import Testbed
from x402sim.protocol import codec

codec.CHECK_TRUSTED_HOPS = True

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def tb() -> Testbed:
    return Testbed(seed=11)


# The suite's longest tests (tens of seconds each: a wheel built and installed, notebooks, SDKs run
# as conformance targets, the tutorial's two catalog runs), started first: with `-n auto --dist
# worksteal` a long test that starts last keeps one core busy while the other has nothing left.
LONG_FIRST = (
    "tests/package/test_wheel.py",
    "tests/test_notebooks.py",
    "tests/conformance/test_sdk_targets.py",
    "tests/docs/test_conformance_tutorial.py",
    "tests/actors/test_differential.py",
    "examples/test_paid_api.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))  # stable: order kept otherwise
