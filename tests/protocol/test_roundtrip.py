"""Every wire message survives encode -> decode unchanged, unknown fields included."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol import strategies as s
from x402sim.protocol import (
    FacilitatorRequest,
    PaymentPayload,
    PaymentRequired,
    WireModel,
    decode_header,
    decode_json_header,
    encode_header,
)

models = st.sampled_from(s.MESSAGE_STRATEGIES).flatmap(lambda pair: pair[1])


@settings(max_examples=150)
@given(models)
def test_header_round_trip(model: WireModel) -> None:
    header = encode_header(model)

    decoded = decode_header(header, type(model))

    assert decoded == model
    assert decoded.to_wire() == model.to_wire()
    assert decoded.model_extra == model.model_extra


@settings(max_examples=100)
@given(models)
def test_encoding_is_standard_padded_base64_of_compact_json(model: WireModel) -> None:
    header = encode_header(model)

    assert len(header) % 4 == 0
    assert "-" not in header and "_" not in header
    text = base64.b64decode(header, validate=True).decode("utf-8")
    assert json.loads(text) == model.to_wire()
    assert text == model.to_json() == json.dumps(model.to_wire(), separators=(",", ":"))
    assert decode_json_header(header) == model.to_wire()


@settings(max_examples=100)
@given(models)
def test_from_wire_accepts_dicts_and_json_text(model: WireModel) -> None:
    model_type = type(model)
    assert model_type.from_wire(model.to_wire()) == model
    assert model_type.from_wire(model.to_json()) == model
    assert model_type.from_wire(model.to_json().encode()) == model


@settings(max_examples=50)
@given(s.payment_requirements, s.unknown_fields, s.unknown_fields)
def test_echoed_requirements_round_trip_verbatim(requirements, top_unknown, resource_unknown) -> None:
    # A server matches ``accepted`` against its own offer, so the echo must come back byte-for-byte equal,
    # unknown fields and hex case included.
    wire = {
        "x402Version": 2,
        "resource": {"url": "http://127.0.0.1/x", **resource_unknown},
        "accepted": requirements.to_wire(),
        "payload": {"anything": [1, None, {"deep": "x"}]},
        **top_unknown,
    }

    payload = decode_header(base64.b64encode(json.dumps(wire).encode()).decode(), PaymentPayload)

    assert payload.to_wire() == wire
    assert payload.accepted == requirements


def test_unknown_fields_with_null_and_snake_case_names_are_kept() -> None:
    wire = {
        "x402Version": 2,
        "resource": {"url": "u", "futureField": None},
        "accepts": [
            {
                "scheme": "exact",
                "network": "eip155:84532",
                "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01",
                "maxTimeoutSeconds": 60,
                "extra": {"name": "USDC", "version": "2", "assetTransferMethod": None},
                "pay_to": "not the field: snake_case is not a wire name",
            }
        ],
    }

    model = PaymentRequired.from_wire(wire)

    assert model.to_wire() == wire
    assert model.accepts[0].pay_to == "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    assert model.accepts[0].model_extra == {"pay_to": "not the field: snake_case is not a wire name"}


def test_none_optional_fields_are_omitted_on_the_wire() -> None:
    model = PaymentRequired(
        x402_version=2,
        resource={"url": "http://x"},
        accepts=[
            {
                "scheme": "exact",
                "network": "eip155:1",
                "amount": 5,
                "asset": "0x" + "a" * 40,
                "pay_to": "0x" + "b" * 40,
                "max_timeout_seconds": 3,
            }
        ],
    )

    wire = model.to_wire()

    assert wire == {
        "x402Version": 2,
        "resource": {"url": "http://x"},
        "accepts": [
            {
                "scheme": "exact",
                "network": "eip155:1",
                "amount": "5",
                "asset": "0x" + "a" * 40,
                "payTo": "0x" + "b" * 40,
                "maxTimeoutSeconds": 3,
            }
        ],
    }
    assert model.to_json() == json.dumps(wire, separators=(",", ":"))
    # Python-side dumps are untouched: amounts stay ints there.
    assert model.model_dump()["accepts"][0]["amount"] == 5


@settings(max_examples=50)
@given(s.facilitator_requests)
def test_facilitator_request_version_picks_the_shapes(request: FacilitatorRequest) -> None:
    parsed = FacilitatorRequest.from_wire(request.to_json())

    assert parsed == request
    assert type(parsed.payment_payload) is type(request.payment_payload)
    assert type(parsed.payment_requirements) is type(request.payment_requirements)
