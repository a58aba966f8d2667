"""The ``8004-reputation`` extension's wire shapes: declarations, payer identities, feedback files."""

from __future__ import annotations

import base64
import json

import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from x402sim.trust.reputation import (
    EXTENSION,
    AgentRef,
    ServerIdentity,
    declared_payer,
    declared_server,
    feedback_file,
    feedback_hash,
    feedback_uri,
    payer_declaration,
    read_feedback_uri,
    reputation_tier,
)

addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
agents = st.builds(AgentRef, st.integers(0, 2**64), st.integers(1, 2**32), addresses)


@given(agents, addresses, st.text(max_size=40))
def test_a_server_declaration_reads_back_as_it_was_made(agent, reputation_registry, endpoint):
    identity = ServerIdentity(agent, reputation_registry, endpoint)
    declaration = identity.declaration()
    assert declaration["info"]["identity"]["agentRegistry"] == f"eip155:{agent.chain_id}:{agent.registry}"
    assert declaration["info"]["identity"]["agentId"] == str(agent.agent_id)
    assert declared_server({EXTENSION: json.loads(json.dumps(declaration))}) == identity


@given(agents)
def test_a_payer_declaration_reads_back(agent):
    assert declared_payer(json.loads(json.dumps(payer_declaration(agent)))) == agent


def test_absent_declarations_are_none():
    assert declared_server(None) is None
    assert declared_server({"other": {}}) is None
    assert declared_payer({}) is None


@pytest.mark.parametrize(
    ("info", "named"),
    [
        (None, "info must be an object"),
        (
            {
                "identity": {"agentRegistry": "eip155:1:0x12", "agentId": "1"},
                "reputationRegistry": "0x" + "1" * 40,
            },
            "agentRegistry",
        ),
        (
            {
                "identity": {"agentRegistry": "solana:x:y", "agentId": "1"},
                "reputationRegistry": "0x" + "1" * 40,
            },
            "agentRegistry",
        ),
        (
            {
                "identity": {"agentRegistry": "eip155:1:0x" + "1" * 40, "agentId": "-3"},
                "reputationRegistry": "0x" + "1" * 40,
            },
            "agentId",
        ),
        (
            {
                "identity": {"agentRegistry": "eip155:1:0x" + "1" * 40, "agentId": True},
                "reputationRegistry": "0x" + "1" * 40,
            },
            "agentId",
        ),
        ({"identity": "nope", "reputationRegistry": "0x" + "1" * 40}, "identity must be an object"),
        (
            {
                "identity": {"agentRegistry": "eip155:1:0x" + "1" * 40, "agentId": "1"},
                "reputationRegistry": "x",
            },
            "reputationRegistry",
        ),
    ],
)
def test_a_malformed_declaration_names_the_field(info, named):
    with pytest.raises(ValueError, match=named):
        declared_server({EXTENSION: {"info": info}})


@given(agents, addresses, addresses, st.integers(-(2**100), 2**100), st.binary(min_size=32, max_size=32))
def test_the_feedback_file_travels_in_its_uri_and_its_hash_is_keccak_of_canonical_json(
    agent, client, pay_to, value, tx
):
    file = feedback_file(
        agent=agent,
        client=client,
        value=value,
        pay_to=pay_to,
        tx_hash="0x" + tx.hex(),
        network=f"eip155:{agent.chain_id}",
        created_at=1_700_000_000,
    )
    assert file["proofOfPayment"] == {
        "fromAddress": client,
        "toAddress": pay_to,
        "chainId": str(agent.chain_id),
        "txHash": "0x" + tx.hex(),
    }
    uri = feedback_uri(file)
    assert read_feedback_uri(uri) == file
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert feedback_hash(file) == keccak(raw)
    assert json.loads(raw) == file


def test_a_feedback_uri_that_is_not_a_json_data_uri_is_refused():
    with pytest.raises(ValueError, match="data:"):
        read_feedback_uri("ipfs://x")
    with pytest.raises(ValueError, match="JSON"):
        read_feedback_uri("data:application/json;base64,bm90IGpzb24=")


@given(st.one_of(st.integers(0, 100), st.floats(0, 100, allow_nan=False)))
def test_an_offer_tier_is_its_reputation_floor(floor):
    assert reputation_tier({"reputation": {"min": floor}}) == float(floor)
    assert reputation_tier({"name": "USDC"}) is None
    assert reputation_tier(None) is None
