"""CAIP-2 helpers and the v1 network names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from x402sim.protocol import (
    V1_NETWORKS,
    ProtocolError,
    caip2_for_chain,
    caip2_to_v1,
    evm_chain_id,
    parse_caip2,
    v1_to_caip2,
)

V1_CHAIN_IDS = {
    "base": 8453,
    "base-sepolia": 84532,
    "avalanche": 43114,
    "avalanche-fuji": 43113,
    "polygon": 137,
    "polygon-amoy": 80002,
    "sei": 1329,
    "sei-testnet": 1328,
    "iotex": 4689,
    "peaq": 3338,
    "abstract": 2741,
    "abstract-testnet": 11124,
}


@pytest.mark.parametrize(("name", "chain_id"), V1_CHAIN_IDS.items())
def test_v1_evm_names(name: str, chain_id: int) -> None:
    assert v1_to_caip2(name) == f"eip155:{chain_id}"
    assert evm_chain_id(v1_to_caip2(name)) == chain_id
    assert caip2_to_v1(f"eip155:{chain_id}") == name


def test_v1_solana_names_are_not_evm() -> None:
    assert set(V1_NETWORKS) == set(V1_CHAIN_IDS) | {"solana", "solana-devnet"}
    for name in ("solana", "solana-devnet"):
        network = v1_to_caip2(name)
        assert parse_caip2(network)[0] == "solana"
        assert caip2_to_v1(network) == name
        with pytest.raises(ProtocolError, match="not an EVM network"):
            evm_chain_id(network)


def test_unknown_names() -> None:
    with pytest.raises(ProtocolError) as info:
        v1_to_caip2("base-mainnet")
    assert info.value.where == "network"
    assert caip2_to_v1("eip155:31337") is None
    assert caip2_to_v1("base") is None


@given(st.integers(1, 10**30))
def test_chain_id_round_trip(chain_id: int) -> None:
    assert evm_chain_id(caip2_for_chain(chain_id)) == chain_id
    assert parse_caip2(caip2_for_chain(chain_id)) == ("eip155", str(chain_id))


@pytest.mark.parametrize(
    "network", ["eip155:abc", "eip155:0", "eip155:007", "eip155", ":1", "ab:1", "eip155:1 ", 5]
)
def test_evm_chain_id_rejects(network: object) -> None:
    with pytest.raises(ProtocolError) as info:
        evm_chain_id(network, where="accepted.network")  # type: ignore[arg-type]
    assert info.value.where == "accepted.network"


@pytest.mark.parametrize("chain_id", [0, -1, True, "1", 10**40])
def test_caip2_for_chain_rejects(chain_id: object) -> None:
    with pytest.raises(ProtocolError):
        caip2_for_chain(chain_id)  # type: ignore[arg-type]
