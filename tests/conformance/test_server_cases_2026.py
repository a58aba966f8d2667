"""The harness facilitator's modes that the 2026 server cases rest on, driven over HTTP as a server
target would drive them: a pending settlement answered again without a second broadcast, answers
outside the protocol that settle nothing, the EXTENSION-RESPONSES side channel, and a hung /verify
that its release (or the reset after a case) lets go."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading

import httpx
import pytest

from x402sim.conformance.forge import payment_v2, sign_exact
from x402sim.conformance.harness import EXTENSION_PROBE, MALFORMED_REPLY, Harness


@pytest.fixture(scope="module")
def harness():
    with Harness() as started:
        yield started


def settle_body(harness: Harness, rng: random.Random) -> tuple[dict, str, str]:
    """A /settle body paying a fresh payee from a fresh funded payer: (body, payer, payee)."""
    payer, payee = harness.funded_account(), harness.new_account("payee").address
    requirements = {
        "scheme": "exact",
        "network": harness.network,
        "amount": "1000",
        "asset": harness.asset,
        "payTo": payee,
        "maxTimeoutSeconds": 60,
        "extra": {"name": harness.asset_name, "version": harness.asset_version},
    }
    payload = sign_exact(payer.key, payer.address, requirements, harness.now(), rng)
    body = {
        "x402Version": 2,
        "paymentPayload": payment_v2(requirements, payload),
        "paymentRequirements": requirements,
    }
    return body, payer.address, payee


def post(harness: Harness, endpoint: str, body: dict, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{harness.facilitator_url}/{endpoint}", json=body, timeout=timeout)


def test_a_pending_settlement_is_answered_again_without_a_second_broadcast(harness):
    body, payer, payee = settle_body(harness, random.Random(1))
    harness.control.reset()
    harness.control.settle_mode = "pending"
    before = harness.block_number()
    first, again = post(harness, "settle", body).json(), post(harness, "settle", body).json()
    assert first["errorReason"] == "settlement_pending" and first["success"] is False
    assert again == first and harness.receipt(first["transaction"]).success
    assert [(t.from_, t.to, t.value) for t in harness.transfers_since(before)] == [(payer, payee, 1000)]
    assert harness.control.count("/settle") == 2 and harness.control.quiet()


def test_answers_outside_the_protocol_settle_nothing_and_the_side_channel_rides_along(harness):
    body, payer, _ = settle_body(harness, random.Random(2))
    harness.control.reset()
    harness.control.verify_mode = harness.control.settle_mode = "malformed"
    harness.control.extension_responses = True
    before = harness.block_number()
    verify, settle = post(harness, "verify", body), post(harness, "settle", body)
    assert verify.content == settle.content == MALFORMED_REPLY and verify.status_code == 200
    assert harness.transfers_since(before) == []
    nonce = body["paymentPayload"]["payload"]["authorization"]["nonce"]
    assert not harness.used(payer, nonce)
    for answer in (verify, settle):
        assert json.loads(base64.b64decode(answer.headers["extension-responses"])) == EXTENSION_PROBE


@pytest.mark.parametrize("let_go", ["release", "reset"])
def test_a_hung_verify_is_answered_normally_once_let_go(harness, let_go):
    body, _, _ = settle_body(harness, random.Random(3))
    harness.control.reset()
    harness.control.verify_mode = "hang"
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(post(harness, "verify", body, timeout=30)))
    caller.start()

    async def held() -> None:  # until the facilitator holds the call
        while not harness.control.calls or harness.control.quiet():
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(held(), 10))
    assert not answers and not harness.control.quiet()
    getattr(harness.control, let_go)()
    caller.join(10)
    assert answers and answers[0].json()["isValid"] is True
