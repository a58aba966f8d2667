"""Trusted hops: a header value a role vouches for decodes to the model it was encoded from, and
to nothing else; every other value is decoded in full (``x402sim.protocol.codec``)."""

from __future__ import annotations

import copy
import pickle
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol import strategies as s
from x402sim.protocol import (
    PaymentPayload,
    ProtocolError,
    SettleResponse,
    VerifyResponse,
    WireModel,
    codec,
    decode_header,
    encode_again,
    encode_header,
)
from x402sim.protocol.recent import Recent

models = st.sampled_from(s.MESSAGE_STRATEGIES).flatmap(lambda pair: pair[1])


@pytest.fixture
def fast(monkeypatch):
    """The path users run: vouched values are not decoded again (the suite checks them otherwise)."""
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", False)


@settings(max_examples=150)
@given(models)
def test_a_vouched_value_is_the_bytes_of_the_model_and_decodes_to_an_equal_one(model: WireModel) -> None:
    vouched = encode_header(model, vouch=True)
    assert vouched == encode_header(model)  # the same bytes on the wire, vouched or not
    codec.CHECK_TRUSTED_HOPS = False
    try:
        known = decode_header(vouched, type(model))
    finally:
        codec.CHECK_TRUSTED_HOPS = True
    # the model handed over (or an equal one vouched for the same bytes before) is what the bytes
    # decode to when parsed and validated in full
    assert model_equal(known, model) and model_equal(type(model).from_wire(model.to_json()), model)


def model_equal(a: WireModel, b: WireModel) -> bool:
    return a == b and a.to_wire() == b.to_wire()


@settings(max_examples=50)
@given(s.payment_payloads)
def test_an_altered_copy_of_a_vouched_value_is_decoded_in_full(payment: PaymentPayload) -> None:
    encode_header(payment, vouch=True)
    altered = payment.model_copy(update={"x402_version": 2, "payload": {"tampered": True}})
    value = encode_header(altered)  # not vouched: what a forger would send
    codec.CHECK_TRUSTED_HOPS = False
    try:
        decoded = decode_header(value, PaymentPayload)
    finally:
        codec.CHECK_TRUSTED_HOPS = True
    assert decoded is not altered and decoded == PaymentPayload.from_wire(altered.to_json())
    assert decoded.payload == {"tampered": True}


def test_the_size_limit_and_the_model_type_still_apply(fast) -> None:
    settlement = SettleResponse(success=True, transaction="0x" + "ab" * 32, network="eip155:8453", payer=None)
    value = encode_header(settlement, vouch=True)
    assert decode_header(value, SettleResponse) is settlement
    with pytest.raises(ProtocolError, match="too large"):
        decode_header(value, SettleResponse, max_bytes=len(value) - 1)
    with pytest.raises(ProtocolError):
        decode_header(value, PaymentPayload)  # vouched as a settlement: read as a payment, parsed in full


def test_a_model_carrying_what_the_wire_does_not_is_never_vouched_for(fast) -> None:
    plain = SettleResponse(success=True, transaction="0x" + "cd" * 32, network="eip155:8453")
    carrying = plain.with_extension_responses({"bazaar": {"status": "success"}})
    value = encode_header(carrying, vouch=True)
    decoded = decode_header(value, SettleResponse)
    assert decoded is not carrying and decoded.extension_responses is None and decoded == plain


def test_an_answer_is_copied_only_when_its_extension_responses_change() -> None:
    plain = VerifyResponse(is_valid=True, payer="0x" + "ab" * 20)
    assert plain.with_extension_responses(None) is plain  # a verify without a catalog: no copy
    said = {"bazaar": {"status": "success"}}
    carrying = plain.with_extension_responses(said)
    assert (
        carrying is not plain and carrying.extension_responses == said and plain.extension_responses is None
    )
    cleared = carrying.with_extension_responses(None)
    assert cleared is not carrying and cleared.extension_responses is None
    assert carrying.extension_responses == said and cleared == plain


def test_under_the_check_a_vouched_value_that_decodes_otherwise_is_caught(monkeypatch) -> None:
    settlement = SettleResponse(success=True, transaction="0x" + "ef" * 32, network="eip155:8453")
    value = encode_header(settlement, vouch=True)
    monkeypatch.setitem(codec._vouched, value, settlement.model_copy(update={"success": False}))
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", True)
    with pytest.raises(AssertionError, match="decodes to another SettleResponse"):
        decode_header(value, SettleResponse)


def test_the_memory_of_vouched_values_is_bounded(fast, monkeypatch) -> None:
    monkeypatch.setattr(codec, "_vouched", Recent(3))
    answers = [
        SettleResponse(success=True, transaction="0x" + f"{i:064x}", network="eip155:8453") for i in range(5)
    ]
    values = [encode_header(a, vouch=True) for a in answers]
    assert len(codec._vouched) == 3 and values[0] not in codec._vouched
    assert decode_header(values[0], SettleResponse) == answers[0]  # forgotten: decoded in full
    assert decode_header(values[4], SettleResponse) is answers[4]


def test_a_kept_model_sent_again_is_vouched_for_without_being_written_again(fast, monkeypatch) -> None:
    settlement = SettleResponse(success=True, transaction="0x" + "12" * 32, network="eip155:8453")
    value = encode_header(settlement, vouch=True)
    monkeypatch.setattr(codec, "_vouched", Recent(4))  # forgotten: vouched for again below
    monkeypatch.setattr(codec, "_encode", lambda model: pytest.fail("written again"))
    assert encode_again(settlement, value) == value
    assert decode_header(value, SettleResponse) is settlement


def test_under_the_check_a_kept_model_changed_in_place_is_caught(monkeypatch) -> None:
    settlement = SettleResponse(
        success=True, transaction="0x" + "34" * 32, network="eip155:8453", extensions={"k": {"v": 1}}
    )
    value = encode_header(settlement, vouch=True)
    cast(dict, settlement.extensions)["k"]["v"] = 2  # frozen model, mutable dict inside
    monkeypatch.setattr(codec, "CHECK_TRUSTED_HOPS", True)
    with pytest.raises(AssertionError, match="changed after it was encoded"):
        encode_again(settlement, value)


def test_a_bounded_memory_is_copied_and_pickled_with_its_limit() -> None:
    memory: Recent[str, int] = Recent(2)
    memory.keep("a", 1)
    for copied in (copy.copy(memory), copy.deepcopy(memory), pickle.loads(pickle.dumps(memory))):
        copied.keep("b", 2)
        copied.keep("c", 3)
        assert list(copied.items()) == [("b", 2), ("c", 3)] and copied.limit == 2
    assert list(memory.items()) == [("a", 1)]
