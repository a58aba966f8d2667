"""Hostile input to the header codec: only ProtocolError ever comes out, and it says where and what."""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol import strategies as s
from tests.protocol.examples import EXACT_PAYLOAD, VALID_WIRE, b64
from x402sim.protocol import (
    DEFAULT_MAX_HEADER_BYTES,
    PaymentRequired,
    PaymentRequiredV1,
    ProtocolError,
    WireModel,
    codec,
    decode_header,
    encode_header,
    parse_exact_evm_payload,
)

WHERE = "header TEST"
header_models = st.sampled_from(s.HEADER_MODELS)
header_messages = st.sampled_from([pair for pair in s.MESSAGE_STRATEGIES if pair[0] in s.HEADER_MODELS])


def decode_or_error(
    value: str | bytes, model_type: type[WireModel], **kwargs: Any
) -> WireModel | ProtocolError:
    """Decode, turning ProtocolError into a value; any other exception fails the test."""
    try:
        model = decode_header(value, model_type, where=WHERE, **kwargs)
    except ProtocolError as err:
        assert type(err) is ProtocolError
        assert err.where.startswith(WHERE) and err.problem
        assert str(err) == f"{err.where}: {err.problem}"
        return err
    assert isinstance(model, model_type)
    return model


def rejects(value: str | bytes, model_type: type[WireModel], **kwargs: Any) -> ProtocolError:
    result = decode_or_error(value, model_type, **kwargs)
    assert isinstance(result, ProtocolError), f"accepted {value!r}"
    return result


@settings(max_examples=150)
@given(st.text(max_size=300), header_models)
def test_arbitrary_text(value: str, model_type: type[WireModel]) -> None:
    decode_or_error(value, model_type)


@settings(max_examples=150)
@given(st.binary(max_size=300), header_models)
def test_arbitrary_bytes(value: bytes, model_type: type[WireModel]) -> None:
    decode_or_error(value, model_type)


@settings(max_examples=100)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=200),
    header_models,
)
def test_arbitrary_base64_alphabet(value: str, model_type: type[WireModel]) -> None:
    decode_or_error(value, model_type)


@settings(max_examples=100)
@given(header_messages.flatmap(lambda pair: pair[1]), st.data())
def test_truncated_headers_are_rejected(model: WireModel, data: st.DataObject) -> None:
    header = encode_header(model)
    cut = data.draw(st.integers(0, len(header) - 1), label="cut")

    rejects(header[:cut], type(model))


@settings(max_examples=100)
@given(header_messages.flatmap(lambda pair: pair[1]))
def test_url_safe_or_unpadded_encodings_are_rejected(model: WireModel) -> None:
    raw = model.to_json().encode()
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode()

    if url_safe != standard:
        rejects(url_safe, type(model))
    if standard.endswith("="):
        rejects(standard.rstrip("="), type(model))
        rejects(url_safe.rstrip("="), type(model))
    assert decode_header(standard, type(model)) == model


@settings(max_examples=150)
@given(s.json_values, header_models)
def test_base64_of_arbitrary_json(value: Any, model_type: type[WireModel]) -> None:
    result = decode_or_error(b64(value), model_type)
    if not isinstance(value, dict):
        assert isinstance(result, ProtocolError)
        assert result.where == WHERE and "JSON object" in result.problem


WRONG_VALUES = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, 2**256, 10**100, "1e3"]


@settings(max_examples=150)
@given(header_messages.flatmap(lambda pair: pair[1]), st.data())
def test_one_field_replaced_by_any_json_value(model: WireModel, data: st.DataObject) -> None:
    wire = model.to_wire()
    key = data.draw(st.sampled_from(sorted(wire)), label="key")
    wire[key] = data.draw(st.sampled_from(WRONG_VALUES) | s.json_values, label="value")

    decode_or_error(b64(wire), type(model))


def _declared_keys(model: WireModel) -> list[str]:
    fields = type(model).model_fields.values()
    return [field.alias for field in fields if field.alias in model.to_wire()]


@settings(max_examples=100)
@given(header_messages.flatmap(lambda pair: pair[1]), st.data())
def test_a_wrong_type_names_its_field(model: WireModel, data: st.DataObject) -> None:
    wire = model.to_wire()
    key = data.draw(st.sampled_from(_declared_keys(model)), label="key")
    # true is wrong for every declared field except booleans, where the string "true" is wrong.
    wire[key] = "true" if wire[key] is True or wire[key] is False else True

    err = rejects(b64(wire), type(model))

    assert err.where == f"{WHERE} {key}"


@settings(max_examples=60)
@given(header_messages.flatmap(lambda pair: pair[1]), st.data())
def test_a_missing_required_field_is_named(model: WireModel, data: st.DataObject) -> None:
    wire = model.to_wire()
    required = [f.alias for f in type(model).model_fields.values() if f.is_required() and f.alias in wire]
    key = data.draw(st.sampled_from(required), label="key")
    del wire[key]

    err = rejects(b64(wire), type(model))

    assert (err.where, err.problem) == (f"{WHERE} {key}", "required field is missing")


BAD_UINTS = [
    str(2**256),
    str(10**100),
    "9" * 5000,
    2**256,
    10**100,
    10000,
    0,
    -1,
    "-1",
    "+1",
    "1.5",
    "1.0",
    "1e3",
    " 1",
    "1 ",
    "",
    "0x10",
    "\uff11",  # fullwidth digit one
    1.5,
    1e3,
    None,
    True,
]


@pytest.mark.parametrize("bad", BAD_UINTS, ids=repr)
@pytest.mark.parametrize(
    ("model_type", "path"),
    [(PaymentRequired, "accepts.0.amount"), (PaymentRequiredV1, "accepts.0.maxAmountRequired")],
)
def test_bad_amounts_name_the_amount(bad: Any, model_type: type[WireModel], path: str) -> None:
    wire = VALID_WIRE[model_type]
    entry = dict(wire["accepts"][0], **{path.rsplit(".", 1)[1]: bad})
    header = b64({**wire, "accepts": [entry]})

    err = rejects(header, model_type)

    assert err.where == f"{WHERE} {path}"


@pytest.mark.parametrize("bad", BAD_UINTS, ids=repr)
@pytest.mark.parametrize("key", ["value", "validAfter", "validBefore"])
def test_bad_authorization_integers_name_the_field(bad: Any, key: str) -> None:
    payload = json.loads(json.dumps(EXACT_PAYLOAD))
    payload["authorization"][key] = bad

    with pytest.raises(ProtocolError) as info:
        parse_exact_evm_payload(payload)

    assert info.value.where == f"payload.authorization.{key}"


@pytest.mark.parametrize("value", [2**256 - 1, 0, 10**77])
def test_uint256_bounds_are_inclusive_below_2_256(value: int) -> None:
    payload = json.loads(json.dumps(EXACT_PAYLOAD))
    payload["authorization"]["value"] = str(value)

    assert parse_exact_evm_payload(payload).authorization.value == value


@settings(max_examples=30)
@given(header_models, st.integers(1, 3 * DEFAULT_MAX_HEADER_BYTES))
def test_size_limit_is_checked_before_decoding(model_type: type[WireModel], extra: int) -> None:
    decoder = mock.Mock(side_effect=AssertionError("base64 decoded an oversized header"))

    with mock.patch.object(codec.base64, "b64decode", decoder):
        for value in ("A" * (DEFAULT_MAX_HEADER_BYTES + extra), b"A" * (DEFAULT_MAX_HEADER_BYTES + extra)):
            err = rejects(value, model_type)
            assert "too large" in err.problem
    decoder.assert_not_called()


@settings(max_examples=30)
@given(header_messages.flatmap(lambda pair: pair[1]))
def test_size_limit_is_exact(model: WireModel) -> None:
    header = encode_header(model)

    assert decode_header(header, type(model), max_bytes=len(header)) == model
    assert "too large" in rejects(header, type(model), max_bytes=len(header) - 1).problem


def test_deeply_nested_json_is_a_protocol_error() -> None:
    nested = "[" * 5000 + "]" * 5000
    header = b64(f'{{"x402Version":2,"deep":{nested}}}'.encode())

    err = rejects(header, PaymentRequired, max_bytes=len(header))

    assert "JSON" in err.problem


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_not_json(text: str) -> None:
    err = rejects(b64(f'{{"x402Version":2,"x":{text}}}'.encode()), PaymentRequired)

    assert err.where == WHERE and "not valid JSON" in err.problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty value"),
        ("é", "not ASCII"),
        (b"\xff\xfe", "not ASCII"),
        ("eyJ", "not padded base64 (length is not a multiple of 4)"),
        ("eyJ-fQ==", "not standard base64 (only A-Z a-z 0-9 + / and = padding)"),
        ("eyJ9 fQ==", "not padded base64 (length is not a multiple of 4)"),
        (base64.b64encode(b"\xff\xff").decode(), "base64 content is not UTF-8"),
        (b64(b"{"), "not valid JSON: Expecting property name enclosed in double quotes"),
        (b64([1]), "expected a JSON object, found an array"),
        (b64("s"), "expected a JSON object, found a string"),
        (b64(None), "expected a JSON object, found null"),
    ],
)
def test_each_decoding_step_has_its_own_problem(value: str | bytes, problem: str) -> None:
    err = rejects(value, PaymentRequired)

    assert (err.where, err.problem) == (WHERE, problem)


@pytest.mark.parametrize("value", [None, 12, ["eyJ9"], object()])
def test_a_non_string_header_value_is_a_protocol_error(value: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_header(value, PaymentRequired)


@pytest.mark.parametrize("model_type", list(VALID_WIRE))
def test_the_valid_fixtures_are_valid(model_type: type[WireModel]) -> None:
    assert decode_header(b64(VALID_WIRE[model_type]), model_type).to_wire() == VALID_WIRE[model_type]
