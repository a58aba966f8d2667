"""The hot-path encoders and hash give the same bytes as the general libraries they stand in for."""

from __future__ import annotations

import pytest
import rlp
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from x402sim.evm import hashing, rlpcodec
from x402sim.evm.token import TRANSFER_WITH_AUTHORIZATION, selector, transfer_with_authorization_call

items = st.recursive(
    st.integers(0, 2**256 - 1) | st.binary(max_size=80),
    lambda children: st.lists(children, max_size=6),
    max_leaves=20,
)


@given(items)
def test_encode_is_pyrlps(item):
    assert rlpcodec.encode(item) == rlp.encode(item)


@given(st.lists(items, max_size=12))
def test_split_finds_every_item_and_its_payload(fields):
    data = rlp.encode(fields)
    parts = rlpcodec.split(data)
    assert [data[a:b] for a, b, _ in parts] == [rlp.encode(f) for f in fields]
    for (a, b, is_list), field in zip(parts, fields, strict=True):
        assert is_list == isinstance(field, list)
        if not is_list:
            expected = (
                field
                if isinstance(field, bytes)
                else rlp.encode(field)[1:]
                if field > 127
                else (rlp.encode(field) if field else b"")
            )
            assert rlpcodec.payload(data, a, b) == expected


@pytest.mark.parametrize("bad", [b"", b"\x80", b"\xc3\x01\x02", b"\xc1\x01\x02"])
def test_split_refuses_what_is_not_one_list(bad):
    with pytest.raises(ValueError):
        rlpcodec.split(bad)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint = st.integers(0, 2**256 - 1)
word = st.binary(max_size=32)


@given(addresses, addresses, uint, uint, uint, word, st.integers(0, 255), word, word)
def test_transfer_with_authorization_call_is_eth_abis(from_, to, value, after, before, nonce, v, r, s):
    types = TRANSFER_WITH_AUTHORIZATION[TRANSFER_WITH_AUTHORIZATION.index("(") + 1 : -1].split(",")
    expected = selector(TRANSFER_WITH_AUTHORIZATION) + encode(
        types, [from_, to, value, after, before, nonce, v, r, s]
    )
    assert transfer_with_authorization_call(from_, to, value, after, before, nonce, v, r, s) == expected


@pytest.mark.parametrize(
    "change", [{"value": -1}, {"value": 2**256}, {"v": 256}, {"nonce": b"\x00" * 33}, {"value": True}]
)
def test_transfer_with_authorization_call_refuses_what_abi_cannot_hold(change):
    args = dict(
        from_="0x" + "11" * 20,
        to="0x" + "22" * 20,
        value=1,
        valid_after=0,
        valid_before=1,
        nonce=b"\x01" * 32,
        v=27,
        r=b"\x02" * 32,
        s=b"\x03" * 32,
    )
    with pytest.raises(ValueError):
        transfer_with_authorization_call(**{**args, **change})


@given(st.binary(max_size=600))
def test_keccak_is_eth_hashs(data):
    assert hashing.keccak(data) == keccak(data)
