"""Field rules and the exact error a user sees: where (the wire path) and what."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.protocol import strategies as s
from tests.protocol.examples import EXACT_PAYLOAD, VALID_WIRE, b64
from x402sim.protocol import (
    ExactEvmAuthorization,
    FacilitatorRequest,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    ProtocolError,
    decode_header,
    parse_exact_evm_payload,
    parse_facilitator_request,
)


def error_of(call: Any, *args: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        call(*args, **kwargs)
    assert type(info.value) is ProtocolError
    return info.value


def v2_with(**entry: Any) -> dict[str, Any]:
    wire = copy.deepcopy(VALID_WIRE[PaymentRequired])
    wire["accepts"][0].update(entry)
    return wire


def test_protocol_error_shape() -> None:
    err = ProtocolError("payload.authorization.nonce", "expected 32 bytes")

    assert isinstance(err, ValueError)
    assert (err.where, err.problem) == ("payload.authorization.nonce", "expected 32 bytes")
    assert str(err) == "payload.authorization.nonce: expected 32 bytes"
    copied = pickle.loads(pickle.dumps(err))
    assert (copied.where, copied.problem) == (err.where, err.problem)


@pytest.mark.parametrize("pay_to", ["", 42, None, ["0x" + "b2" * 20]])
def test_bad_pay_to(pay_to: Any) -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(payTo=pay_to))

    assert err.where == "accepts.0.payTo"


def test_bad_pay_to_in_a_header_names_header_and_field() -> None:
    err = error_of(decode_header, b64(v2_with(payTo="")), PaymentRequired, where="header PAYMENT-REQUIRED")

    assert err.where == "header PAYMENT-REQUIRED accepts.0.payTo"
    assert str(err).startswith("header PAYMENT-REQUIRED accepts.0.payTo: ")


def test_amount_with_a_decimal_point() -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(amount="1.5"))

    assert str(err) == "accepts.0.amount: expected a string of decimal digits (no sign, point or exponent)"


def test_amount_as_a_json_number() -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(amount=10000))

    assert str(err) == 'accepts.0.amount: expected a decimal string such as "10000"'


def test_amount_as_a_json_number_in_json_text_and_in_a_dict_alike() -> None:
    wire = v2_with(amount=10000)

    from_dict = error_of(PaymentRequired.from_wire, wire)
    from_text = error_of(PaymentRequired.from_wire, json.dumps(wire))

    assert (from_dict.where, from_dict.problem) == (from_text.where, from_text.problem)


def test_nonce_of_31_bytes() -> None:
    payload = copy.deepcopy(EXACT_PAYLOAD)
    payload["authorization"]["nonce"] = "0x" + "ab" * 31

    err = error_of(parse_exact_evm_payload, payload)

    assert str(err) == "payload.authorization.nonce: expected 32 bytes (64 hex digits), found 31 bytes"


@pytest.mark.parametrize(
    ("nonce", "problem"),
    [
        ("0x" + "a" * 63, "expected 32 bytes (64 hex digits), found 63 hex digits"),
        ("0x" + "ab" * 33, "expected 32 bytes (64 hex digits), found 33 bytes"),
        ("ab" * 32, "not a 0x-prefixed hex string"),
        ("0x" + "zz" * 32, "not a 0x-prefixed hex string"),
        (123, "not a 0x-prefixed hex string"),
    ],
)
def test_nonce_problems(nonce: Any, problem: str) -> None:
    payload = copy.deepcopy(EXACT_PAYLOAD)
    payload["authorization"]["nonce"] = nonce

    err = error_of(parse_exact_evm_payload, payload, where="paymentPayload.payload")

    assert (err.where, err.problem) == ("paymentPayload.payload.authorization.nonce", problem)


@pytest.mark.parametrize(
    ("key", "value"),
    [("from", "0x1234"), ("to", "0x" + "g" * 40), ("to", "0x" + "a" * 41), ("from", "0X" + "a" * 40)],
)
def test_bad_authorization_addresses(key: str, value: str) -> None:
    payload = copy.deepcopy(EXACT_PAYLOAD)
    payload["authorization"][key] = value

    err = error_of(parse_exact_evm_payload, payload)

    assert str(err) == f"payload.authorization.{key}: not a 20-byte hex address"


@pytest.mark.parametrize(
    ("signature", "ok"),
    [
        ("0x1b", True),
        ("0x" + "ab" * 4096, True),
        ("0x", False),
        ("0x" + "ab" * 4097, False),
        ("0xabc", False),
    ],
)
def test_signature_length_rules(signature: str, ok: bool) -> None:
    payload = dict(EXACT_PAYLOAD, signature=signature)
    if ok:
        assert parse_exact_evm_payload(payload).signature == signature
    else:
        assert error_of(parse_exact_evm_payload, payload).where == "payload.signature"


def test_addresses_keep_their_case() -> None:
    checksummed = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    payload = copy.deepcopy(EXACT_PAYLOAD)
    payload["authorization"]["to"] = checksummed

    parsed = parse_exact_evm_payload(payload)

    assert parsed.authorization.to == checksummed
    assert parsed.to_wire()["authorization"]["to"] == checksummed
    assert parsed.authorization.from_ == EXACT_PAYLOAD["authorization"]["from"]


@pytest.mark.parametrize(
    "network", ["eip155:abc", "eip155:0", "eip155:01", "eip155:", "base", "EIP155:1", "e:1"]
)
def test_bad_v2_network(network: str) -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(network=network))

    assert err.where == "accepts.0.network"


def test_network_eip155_abc_message() -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(network="eip155:abc"))

    assert str(err) == "accepts.0.network: eip155 reference must be a decimal chain id without leading zeros"


@pytest.mark.parametrize(
    "network", ["eip155:1", "eip155:31337", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "abc:x_-Y"]
)
def test_good_v2_networks(network: str) -> None:
    assert PaymentRequired.from_wire(v2_with(network=network)).accepts[0].network == network


@settings(max_examples=50)
@given(s.caip2_networks)
def test_generated_networks_are_valid(network: str) -> None:
    assert PaymentRequired.from_wire(v2_with(network=network)).accepts[0].network == network


@pytest.mark.parametrize("network", ["base-mainnet", "eip155:8453", "Base", "", 8453])
def test_v1_unknown_network_name(network: Any) -> None:
    wire = copy.deepcopy(VALID_WIRE[PaymentRequiredV1])
    wire["accepts"][0]["network"] = network

    err = error_of(PaymentRequiredV1.from_wire, wire)

    assert err.where == "accepts.0.network"
    assert err.problem.startswith("unknown v1 network")
    payload = {"x402Version": 1, "scheme": "exact", "network": network, "payload": {}}
    assert error_of(PaymentPayloadV1.from_wire, payload).where == "network"


@pytest.mark.parametrize("timeout", ["60", 60.0, True, -1, None])
def test_max_timeout_seconds_is_a_non_negative_json_integer(timeout: Any) -> None:
    err = error_of(PaymentRequired.from_wire, v2_with(maxTimeoutSeconds=timeout))

    assert err.where == "accepts.0.maxTimeoutSeconds"


@pytest.mark.parametrize("version", [True, 2.0, "2", 1, 3, None])
def test_x402_version_must_be_the_json_number(version: Any) -> None:
    wire = dict(VALID_WIRE[PaymentRequired], x402Version=version)

    err = error_of(PaymentRequired.from_wire, wire)

    assert (err.where, err.problem) == ("x402Version", "expected the JSON number 2")


def test_empty_accepts_is_rejected_in_v2() -> None:
    wire = dict(VALID_WIRE[PaymentRequired], accepts=[])

    assert error_of(PaymentRequired.from_wire, wire).where == "accepts"


@pytest.mark.parametrize("data", [[1], "[1]", b"null", "not json", 5, None])
def test_non_objects_name_the_model(data: Any) -> None:
    err = error_of(PaymentRequired.from_wire, data)

    assert err.where == "PaymentRequired"


def test_non_json_dicts_are_protocol_errors() -> None:
    assert error_of(PaymentRequired.from_wire, {"x": object()}).where == "PaymentRequired"
    assert error_of(PaymentRequired.from_wire, {"x": float("nan")}, where="body").where == "body"


def test_python_values_are_accepted_by_constructors() -> None:
    entry = dict(
        scheme="exact",
        network="eip155:1",
        asset="0x" + "a" * 40,
        pay_to="0x" + "b" * 40,
        max_timeout_seconds=5,
    )

    assert PaymentRequirements(amount=7, **entry).amount == 7
    assert PaymentRequirements(amount="7", **entry).amount == 7
    for bad in (True, -1, 2**256, "7.0"):
        with pytest.raises(ValidationError):
            PaymentRequirements(amount=bad, **entry)


def test_unix_times_are_uint256() -> None:
    auth = ExactEvmAuthorization(
        from_="0x" + "a" * 40,
        to="0x" + "b" * 40,
        value=1,
        valid_after=0,
        valid_before=2**256 - 1,
        nonce="0x" + "0" * 64,
    )

    assert auth.to_wire()["validBefore"] == str(2**256 - 1)
    assert auth.to_wire()["from"] == "0x" + "a" * 40


def test_facilitator_request_versions_must_agree() -> None:
    requirements_v2 = VALID_WIRE[PaymentRequired]["accepts"][0]
    payload_v2 = {"x402Version": 2, "accepted": requirements_v2, "payload": EXACT_PAYLOAD}
    wire = {"x402Version": 2, "paymentPayload": payload_v2, "paymentRequirements": requirements_v2}
    assert isinstance(parse_facilitator_request(wire), FacilitatorRequest)

    assert (
        error_of(parse_facilitator_request, dict(wire, x402Version=1)).where == "paymentPayload.x402Version"
    )
    assert error_of(parse_facilitator_request, dict(wire, x402Version="2")).where == "x402Version"
    v1_requirements = VALID_WIRE[PaymentRequiredV1]["accepts"][0]
    err = error_of(parse_facilitator_request, dict(wire, paymentRequirements=v1_requirements))
    assert err.where == "paymentRequirements.network"  # "base-sepolia" is not CAIP-2
    missing = {k: v for k, v in wire.items() if k != "paymentRequirements"}
    assert str(error_of(parse_facilitator_request, missing, where="body")) == (
        "body.paymentRequirements: required field is missing"
    )
    with pytest.raises(ValidationError):
        FacilitatorRequest(
            x402_version=1,
            payment_payload=payload_v2,
            payment_requirements=requirements_v2,
        )


@settings(max_examples=100)
@given(st.sampled_from([PaymentRequired, PaymentRequiredV1, FacilitatorRequest]), s.json_values)
def test_from_wire_never_raises_anything_else(model_type: Any, value: Any) -> None:
    for data in (value, json.dumps(value)):
        try:
            model_type.from_wire(data)
        except ProtocolError as err:
            assert err.where and err.problem
