"""Header lookup, version detection and reading payments and settlements from headers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from tests.protocol import strategies as s
from tests.protocol.examples import VALID_WIRE, b64
from x402sim.protocol import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    ProtocolError,
    SettleResponse,
    detect_version,
    encode_header,
    get_header,
    parse_payment_required,
    payment_header_name,
    read_payment,
    read_settlement,
    response_header_name,
)

V2_HEADER = b64(VALID_WIRE[PaymentRequired])
V1_BODY = VALID_WIRE[PaymentRequiredV1]


def test_header_names() -> None:
    assert (PAYMENT_REQUIRED, PAYMENT_SIGNATURE, PAYMENT_RESPONSE) == (
        "PAYMENT-REQUIRED",
        "PAYMENT-SIGNATURE",
        "PAYMENT-RESPONSE",
    )
    assert (X_PAYMENT, X_PAYMENT_RESPONSE) == ("X-PAYMENT", "X-PAYMENT-RESPONSE")
    assert [payment_header_name(v) for v in (1, 2)] == [X_PAYMENT, PAYMENT_SIGNATURE]
    assert [response_header_name(v) for v in (1, 2)] == [X_PAYMENT_RESPONSE, PAYMENT_RESPONSE]
    for bad in (0, 3, True):
        with pytest.raises(ProtocolError):
            payment_header_name(bad)


@pytest.mark.parametrize(
    "headers",
    [
        {"payment-signature": "v"},
        {"Payment-Signature": "v", "other": "x"},
        [("X-Other", "x"), ("PAYMENT-signature", "v"), ("payment-signature", "second")],
        [(b"payment-signature", b"v")],
        ((b"PAYMENT-SIGNATURE", b"v"),),
    ],
)
def test_get_header_is_case_insensitive(headers) -> None:
    assert get_header(headers, "PAYMENT-SIGNATURE") == "v"
    assert get_header(headers, "payment-signature") == "v"
    assert get_header(headers, "X-PAYMENT") is None


def test_get_header_without_headers() -> None:
    assert get_header(None, X_PAYMENT) is None
    assert get_header([], X_PAYMENT) is None


def test_detect_version() -> None:
    assert detect_version({"payment-required": V2_HEADER}, b"{}") == 2
    assert detect_version([("Payment-Required", V2_HEADER)], None) == 2
    # The header wins over whatever the body says.
    assert detect_version({PAYMENT_REQUIRED: V2_HEADER}, json.dumps(V1_BODY)) == 2
    for body in (V1_BODY, json.dumps(V1_BODY), json.dumps(V1_BODY).encode()):
        assert detect_version({}, body) == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (None, "response"),
        (b"", "response"),
        ({}, "response"),
        (b"{}", "response"),
        (b"<html>", "body"),
        (b"[1]", "body"),
        (b'{"x402Version": "1"}', "body.x402Version"),
        (b'{"x402Version": true}', "body.x402Version"),
        (b'{"x402Version": 3}', "body.x402Version"),
    ],
)
def test_detect_version_failures(body, where: str) -> None:
    with pytest.raises(ProtocolError) as info:
        detect_version({"content-type": "application/json"}, body)
    assert info.value.where == where


def test_parse_payment_required_v1_body() -> None:
    parsed = parse_payment_required({"Content-Type": "application/json"}, json.dumps(V1_BODY).encode())

    assert isinstance(parsed, PaymentRequiredV1)
    assert parsed.accepts[0].max_amount_required == 10000
    assert parsed.to_wire() == V1_BODY


def test_parse_payment_required_v2_header() -> None:
    parsed = parse_payment_required([("payment-required", V2_HEADER)], b"{}")

    assert isinstance(parsed, PaymentRequired)
    assert parsed.accepts[0].amount == 10000
    assert parsed.to_wire() == VALID_WIRE[PaymentRequired]


def test_parse_payment_required_errors_name_their_source() -> None:
    bad_v1 = json.loads(json.dumps(V1_BODY))
    bad_v1["accepts"][0]["payTo"] = ""
    with pytest.raises(ProtocolError) as info:
        parse_payment_required({}, json.dumps(bad_v1))
    assert info.value.where == "body.accepts.0.payTo"

    with pytest.raises(ProtocolError) as info:
        parse_payment_required({PAYMENT_REQUIRED: "%%%%"}, b"{}")
    assert info.value.where == "header PAYMENT-REQUIRED"


@settings(max_examples=30)
@given(s.payment_payloads, s.payment_payloads_v1)
def test_read_payment_from_either_header(v2: PaymentPayload, v1: PaymentPayloadV1) -> None:
    assert read_payment({"payment-signature": encode_header(v2)}) == v2
    assert read_payment([(b"x-payment", encode_header(v1).encode())]) == v1
    assert read_payment({X_PAYMENT: encode_header(v1), PAYMENT_SIGNATURE: encode_header(v2)}) == v2


def test_read_payment_absent_or_malformed() -> None:
    assert read_payment({}) is None
    assert read_payment({"authorization": "Bearer x"}) is None
    for name in (PAYMENT_SIGNATURE, X_PAYMENT):
        with pytest.raises(ProtocolError) as info:
            read_payment({name: "not base64!"})
        assert info.value.where == f"header {name}"


def test_read_payment_checks_the_version_of_each_header() -> None:
    v2_in_v1_header = {
        X_PAYMENT: b64({"x402Version": 2, "scheme": "exact", "network": "base", "payload": {}})
    }
    with pytest.raises(ProtocolError) as info:
        read_payment(v2_in_v1_header)
    assert info.value.where == "header X-PAYMENT x402Version"


@settings(max_examples=30)
@given(s.settle_responses)
def test_read_settlement_from_either_header(settlement: SettleResponse) -> None:
    header = encode_header(settlement)

    assert read_settlement({"Payment-Response": header}) == settlement
    assert read_settlement([("x-payment-response", header)]) == settlement
    assert read_settlement({"content-type": "text/plain"}) is None
