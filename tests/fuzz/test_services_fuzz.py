"""Hypothesis drives every service with one hostile change at a time, judged on chain.

Each example draws an endpoint's probe from the shared mutation library (``x402sim.fuzz``) with a
Hypothesis-controlled ``Random`` and sends it through httpx's ASGI transport. Asserted for every
answer: no 5xx, and a refusal names its problem. After each test: a correct paid request still
works, no resource was served without its transfer (payee balance = price x (200s of the paid
routes + successful direct settlements)), and the token's supply is unchanged.
"""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.world import PRICE, PROXY_PRICE, AsgiWorld
from x402sim.fuzz import draw, judge
from x402sim.protocol import PAYMENT_SIGNATURE

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world():
    w = AsgiWorld()
    w.supply = w.chain.total_supply()
    w.served = {"server": 0, "proxy": 0, "settle": 0}  # answers that moved the price on chain
    yield w
    w.close()


def _probe_and_judge(world: AsgiWorld, endpoint: str, rng: random.Random) -> None:
    probe = draw(rng, world.target, endpoint)
    answer = world.send(probe)
    problem = judge(probe, answer.status_code, list(answer.headers.multi_items()), answer.content)
    assert problem is None, f"{probe.endpoint} [{probe.mutation}]: {problem}: {answer.content[:300]!r}"
    if probe.service in ("server", "proxy") and answer.status_code == 200:
        world.served[probe.service] += 1
    if probe.endpoint == "settle" and answer.status_code == 200 and answer.json()["success"]:
        world.served["settle"] += 1  # a direct /settle moves the price with no resource involved


@pytest.mark.parametrize("endpoint", ["server", "proxy", "verify", "settle", "rpc", "rpc-batch"])
def test_no_input_breaks_a_service(world, endpoint):
    @FUZZ
    @given(rng=st.randoms(use_true_random=False))
    def run(rng):
        _probe_and_judge(world, endpoint, rng)

    run()
    _still_serves_and_reconciles(world)


def _still_serves_and_reconciles(world: AsgiWorld) -> None:
    payment = world.target.payment(world.target.server_challenge)
    header = base64.b64encode(json.dumps(payment).encode()).decode()
    assert (
        world.run(world.clients["server"].get("/weather", headers={PAYMENT_SIGNATURE: header})).status_code
        == 200
    )
    world.served["server"] += 1
    paid = PRICE * (world.served["server"] + world.served["settle"]) + PROXY_PRICE * world.served["proxy"]
    assert world.chain.balance_of(world.payee) == paid
    assert world.chain.total_supply() == world.supply
