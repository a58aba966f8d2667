"""The A2A carry, sans-IO: a message and the request the roles read, a task status and their answer.

Round trips both ways, through the JSON a task travels as (including a2a-sdk 1.x's habit of turning
every metadata number into a double), and no answer of the server role makes the carry raise.
"""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from x402sim.actors.messages import HttpResponse
from x402sim.protocol import PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, decode_json_header
from x402sim.transports.a2a_carry import (
    PAYMENT_ERROR,
    PAYMENT_PAYLOAD,
    PAYMENT_RECEIPTS,
    PAYMENT_REQUIRED_KEY,
    PAYMENT_STATUS,
    AgentMessage,
    as_ints,
    message_of_request,
    response_of_task,
    skill_request,
    state_of,
    update_of_response,
)

skills = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
small_ints = st.integers(min_value=-(2**53), max_value=2**53)
json_values = st.recursive(
    st.none() | st.booleans() | small_ints | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
required_objects = st.fixed_dictionaries(
    {
        "x402Version": st.just(2),
        "error": st.text(max_size=10),
        "resource": st.fixed_dictionaries({"url": st.just("http://agent.test/weather")}),
        "accepts": st.lists(
            st.fixed_dictionaries(
                {
                    "scheme": st.sampled_from(["exact", "upto"]),
                    "network": st.just("eip155:31337"),
                    "amount": st.integers(0, 10**12).map(str),
                    "maxTimeoutSeconds": st.integers(1, 3600),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    }
)
settlements = st.fixed_dictionaries(
    {
        "success": st.booleans(),
        "transaction": st.text("0123456789abcdef", max_size=8).map(lambda h: "0x" + h),
        "network": st.just("eip155:31337"),
    },
    optional={"errorReason": st.text(max_size=10), "payer": st.just("0x" + "ab" * 20)},
)


def _b64(value) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _as_doubles(value):
    """What a protobuf Struct makes of JSON: every number a double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    return value


def _over_the_wire(task: dict, *, doubles: bool) -> dict:
    sent = json.loads(json.dumps(task))
    return _as_doubles(sent) if doubles else sent


@given(json_values)
def test_integral_doubles_come_back_as_integers(value) -> None:
    assert as_ints(_as_doubles(value)) == value


@given(skills, st.text(max_size=40), st.one_of(st.none(), json_values))
def test_a_message_reads_back_to_the_same_request(skill, text, payment) -> None:
    request = skill_request(skill, text, payment, host="agent.test")
    assert request.route_key == f"POST /{skill}"
    assert (request.header(PAYMENT_SIGNATURE) is None) == (payment is None)
    message = message_of_request(request, task_id="t-1")
    assert message.text == text and message.task_id == "t-1" and message.skill == skill
    assert message.payment == payment
    if payment is not None:
        assert message.payment_status == "payment-submitted"
    again = skill_request(message.skill or "", message.text, message.payment)
    assert again.body == request.body and again.header(PAYMENT_SIGNATURE) == request.header(PAYMENT_SIGNATURE)


@given(required_objects, st.booleans())
def test_a_challenge_reads_back_as_the_same_402(required, doubles) -> None:
    response = HttpResponse.of_json(402, {}, ((PAYMENT_REQUIRED, _b64(required)),))
    update = update_of_response(response, paid=False)
    assert update.state == "input-required"
    assert update.metadata[PAYMENT_STATUS] == "payment-required"
    task = _over_the_wire(update.to_json("t-1", "c-1"), doubles=doubles)
    back = response_of_task(task)
    assert back.status == 402
    assert decode_json_header(back.header(PAYMENT_REQUIRED)) == required
    assert back.header(PAYMENT_RESPONSE) is None


@given(settlements.filter(lambda s: s["success"]), st.text(max_size=20), st.booleans())
def test_a_paid_answer_reads_back_with_its_receipt(settlement, text, doubles) -> None:
    response = HttpResponse.of_json(
        200, {"text": text, "artifacts": []}, ((PAYMENT_RESPONSE, _b64(settlement)),)
    )
    update = update_of_response(response, paid=True)
    assert (update.state, update.text, update.metadata[PAYMENT_STATUS]) == (
        "completed",
        text,
        "payment-completed",
    )
    assert update.metadata[PAYMENT_RECEIPTS] == [settlement]
    back = response_of_task(_over_the_wire(update.to_json("t-1", "c-1"), doubles=doubles))
    assert back.status == 200
    assert decode_json_header(back.header(PAYMENT_RESPONSE)) == settlement


@given(settlements.filter(lambda s: not s["success"]), st.one_of(st.none(), required_objects))
def test_a_failed_settlement_is_a_failed_task_with_its_receipt(settlement, required) -> None:
    headers = ((PAYMENT_RESPONSE, _b64(settlement)),)
    if required is not None:
        headers += ((PAYMENT_REQUIRED, _b64(required)),)
    update = update_of_response(HttpResponse.of_json(402, {}, headers), paid=True)
    assert (update.state, update.metadata[PAYMENT_STATUS]) == ("failed", "payment-failed")
    assert update.metadata[PAYMENT_RECEIPTS] == [settlement]
    assert update.metadata[PAYMENT_ERROR]
    back = response_of_task(_over_the_wire(update.to_json("t", "c"), doubles=True))
    assert back.status == 402
    assert decode_json_header(back.header(PAYMENT_RESPONSE)) == settlement


@given(required_objects)
def test_a_refused_payment_gets_a_receipt_saying_nothing_settled(required) -> None:
    response = HttpResponse.of_json(402, {}, ((PAYMENT_REQUIRED, _b64(required)),))
    update = update_of_response(response, paid=True)
    (receipt,) = update.metadata[PAYMENT_RECEIPTS]
    assert receipt["success"] is False and receipt["transaction"] == ""
    assert receipt["network"] == required["accepts"][0]["network"]
    assert update.metadata[PAYMENT_REQUIRED_KEY] == required


@given(
    st.integers(100, 599),
    st.binary(max_size=30),
    st.booleans(),
    st.lists(
        st.tuples(st.sampled_from([PAYMENT_REQUIRED, PAYMENT_RESPONSE, "X"]), st.text(max_size=12)),
        max_size=2,
    ),
)
def test_no_answer_of_the_role_makes_the_carry_raise(status, body, paid, headers) -> None:
    update = update_of_response(HttpResponse(status, tuple(headers), body), paid=paid)
    back = response_of_task(update.to_json("t", "c"))
    if paid and not 200 <= status < 300:
        assert update.state == "failed" and update.metadata[PAYMENT_STATUS] == "payment-failed"
        if status >= 500:  # nobody can say it was not settled: no receipt
            assert PAYMENT_RECEIPTS not in update.metadata
    assert 200 <= back.status < 600


def test_both_spellings_of_a_state_are_read() -> None:
    assert state_of("TASK_STATE_INPUT_REQUIRED") == state_of("input-required") == "input-required"
    assert state_of("TASK_STATE_COMPLETED") == "completed"
    task = {"status": {"state": "TASK_STATE_WORKING"}}
    assert response_of_task(task).status == 202


def test_a_message_in_the_specifications_spelling() -> None:
    message = AgentMessage("pay", "task-1", {PAYMENT_STATUS: "payment-submitted", PAYMENT_PAYLOAD: {"x": 1}})
    wire = message.to_json("m-1")
    assert wire["kind"] == "message" and wire["taskId"] == "task-1" and wire["role"] == "user"
    assert wire["parts"] == [{"kind": "text", "text": "pay"}]
