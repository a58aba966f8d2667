"""The ERC-8004 reputation registry: who may give feedback, revocation, responses, and getSummary's
arithmetic checked against a Python model of it (Hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import event_signature_to_log_topic, keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402sim.evm.contracts import REPUTATION_REGISTRY, load_artifact

from .helpers import abi_type
from .test_identity_registry import (
    Registries,
    agent_id_of,
    data_of,
    deploy,
    logs,
    new_registries,
    register,
    reverts,
    topic_address,
)

NEW_FEEDBACK = event_signature_to_log_topic(
    "NewFeedback(uint256,address,uint64,int128,uint8,string,string,string,string,string,bytes32)"
)
FEEDBACK_REVOKED = event_signature_to_log_topic("FeedbackRevoked(uint256,address,uint64)")
RESPONSE_APPENDED = event_signature_to_log_topic(
    "ResponseAppended(uint256,address,uint64,address,string,bytes32)"
)
NO_HASH = b"\0" * 32
MAX_ABS_VALUE = 10**38
INT128 = (-(2**127), 2**127 - 1)


@dataclass
class World:
    """Registries with one agent owned by accounts[0]; accounts[1:] are clients."""

    reg: Registries
    agent: int

    @property
    def owner(self) -> str:
        return self.reg.accounts[0]

    @property
    def clients(self) -> list[str]:
        return self.reg.accounts[1:]

    def give(
        self, client, value, decimals=0, tag1="", tag2="", endpoint="", uri="", digest=NO_HASH, agent=None
    ):
        return self.reg.chain.transact(
            self.reg.reputation,
            "giveFeedback",
            self.agent if agent is None else agent,
            value,
            decimals,
            tag1,
            tag2,
            endpoint,
            uri,
            digest,
            sender=client,
        )

    def summary(self, clients, tag1="", tag2="", agent=None):
        return self.reg.chain.call(
            self.reg.reputation, "getSummary", self.agent if agent is None else agent, clients, tag1, tag2
        )

    def read_all(self, clients=(), tag1="", tag2="", include_revoked=False):
        return self.reg.chain.call(
            self.reg.reputation, "readAllFeedback", self.agent, list(clients), tag1, tag2, include_revoked
        )


def new_world() -> World:
    reg = new_registries()
    return World(reg, agent_id_of(register(reg, reg.accounts[0], "ipfs://agent")))


@pytest.fixture
def world() -> World:
    return new_world()


def call(world: World, name: str, *args):
    return world.reg.chain.call(world.reg.reputation, name, *args)


# ---------------------------------------------------------------- artifact and interface


def test_deployed_code_is_runtime_code_then_the_identity_address(world):
    reg = world.reg
    deployed = bytes.fromhex(reg.chain.tester.get_code(reg.reputation.address)[2:])
    runtime = load_artifact(REPUTATION_REGISTRY).runtime_bytecode
    # What LocalChain puts in its genesis state: the runtime code and the immutable's ABI word.
    assert deployed == runtime + encode(["address"], [reg.identity.address])
    assert to_checksum_address(call(world, "getIdentityRegistry")) == reg.identity.address
    artifact = load_artifact(REPUTATION_REGISTRY)
    with pytest.raises(AssertionError):  # the constructor refuses the zero address
        deploy(reg.chain, artifact.bytecode + encode(["address"], ["0x" + "00" * 20]), artifact.abi)


def test_interface_has_the_erc_functions_and_events():
    abi = load_artifact(REPUTATION_REGISTRY).abi
    functions = {
        f"{e['name']}({','.join(abi_type(i) for i in e['inputs'])})": [abi_type(o) for o in e["outputs"]]
        for e in abi
        if e["type"] == "function"
    }
    assert functions == {
        "getIdentityRegistry()": ["address"],
        "giveFeedback(uint256,int128,uint8,string,string,string,string,bytes32)": [],
        "revokeFeedback(uint256,uint64)": [],
        "appendResponse(uint256,address,uint64,string,bytes32)": [],
        "getSummary(uint256,address[],string,string)": ["uint64", "int128", "uint8"],
        "readFeedback(uint256,address,uint64)": ["int128", "uint8", "string", "string", "bool"],
        "readAllFeedback(uint256,address[],string,string,bool)": [
            "address[]",
            "uint64[]",
            "int128[]",
            "uint8[]",
            "string[]",
            "string[]",
            "bool[]",
        ],
        "getResponseCount(uint256,address,uint64,address[])": ["uint64"],
        "getClients(uint256)": ["address[]"],
        "getLastIndex(uint256,address)": ["uint64"],
    }
    [give] = [e for e in abi if e.get("name") == "giveFeedback"]
    assert [i["name"] for i in give["inputs"]] == [
        "agentId",
        "value",
        "valueDecimals",
        "tag1",
        "tag2",
        "endpoint",
        "feedbackURI",
        "feedbackHash",
    ]
    events = {
        e["name"]: [(i["name"], i["type"], i["indexed"]) for i in e["inputs"]]
        for e in abi
        if e["type"] == "event"
    }
    assert events["NewFeedback"] == [
        ("agentId", "uint256", True),
        ("clientAddress", "address", True),
        ("feedbackIndex", "uint64", False),
        ("value", "int128", False),
        ("valueDecimals", "uint8", False),
        ("indexedTag1", "string", True),
        ("tag1", "string", False),
        ("tag2", "string", False),
        ("endpoint", "string", False),
        ("feedbackURI", "string", False),
        ("feedbackHash", "bytes32", False),
    ]
    assert events["FeedbackRevoked"] == [
        ("agentId", "uint256", True),
        ("clientAddress", "address", True),
        ("feedbackIndex", "uint64", True),
    ]
    assert events["ResponseAppended"] == [
        ("agentId", "uint256", True),
        ("clientAddress", "address", True),
        ("feedbackIndex", "uint64", False),
        ("responder", "address", True),
        ("responseURI", "string", False),
        ("responseHash", "bytes32", False),
    ]


# ---------------------------------------------------------------- giving feedback


def test_give_feedback_stores_and_logs(world):
    alice, bob = world.clients[:2]
    digest = keccak(text="feedback file")
    receipt = world.give(alice, 9977, 2, "uptime", "day", "https://agent/api", "ipfs://fb", digest)
    [log] = logs(receipt, NEW_FEEDBACK)
    assert log["topics"][1] == "0x" + world.agent.to_bytes(32, "big").hex()
    assert topic_address(log["topics"][2]) == alice
    assert log["topics"][3] == "0x" + keccak(text="uptime").hex()
    fields = ["uint64", "int128", "uint8", "string", "string", "string", "string", "bytes32"]
    assert data_of(log, fields) == (1, 9977, 2, "uptime", "day", "https://agent/api", "ipfs://fb", digest)

    second = world.give(alice, -32, 1, "tradingYield")
    assert data_of(logs(second, NEW_FEEDBACK)[0], fields)[:3] == (2, -32, 1)
    world.give(bob, 87)
    assert call(world, "getLastIndex", world.agent, alice) == 2
    assert call(world, "getLastIndex", world.agent, bob) == 1
    assert call(world, "getLastIndex", world.agent, world.owner) == 0
    assert [to_checksum_address(c) for c in call(world, "getClients", world.agent)] == [alice, bob]
    assert call(world, "readFeedback", world.agent, alice, 1) == (9977, 2, "uptime", "day", False)
    assert call(world, "readFeedback", world.agent, alice, 2) == (-32, 1, "tradingYield", "", False)
    with reverts("index must be > 0"):
        call(world, "readFeedback", world.agent, alice, 0)
    with reverts("index out of bounds"):
        call(world, "readFeedback", world.agent, bob, 2)


def test_feedback_refused_from_the_owner_and_those_acting_for_it(world):
    reg = world.reg
    operator, approved, client = world.clients
    with reverts("Self-feedback not allowed"):
        world.give(world.owner, 100)
    reg.chain.transact(reg.identity, "setApprovalForAll", operator, True, sender=world.owner)
    reg.chain.transact(reg.identity, "approve", approved, world.agent, sender=world.owner)
    with reverts("Self-feedback not allowed"):
        world.give(operator, 100)
    with reverts("Self-feedback not allowed"):
        world.give(approved, 100)
    world.give(client, 100)
    # Operators lose the right with the approval; then their feedback counts as a client's.
    reg.chain.transact(reg.identity, "setApprovalForAll", operator, False, sender=world.owner)
    world.give(operator, 50)


def test_feedback_refused_for_unknown_agents_and_out_of_range_values(world):
    client = world.clients[0]
    with reverts("ERC721: nonexistent token"):
        world.give(client, 1, agent=world.agent + 1)
    with reverts("too many decimals"):
        world.give(client, 1, 19)
    with reverts("value too large"):
        world.give(client, MAX_ABS_VALUE + 1)
    with reverts("value too large"):
        world.give(client, -MAX_ABS_VALUE - 1)
    world.give(client, MAX_ABS_VALUE, 18)
    world.give(client, -MAX_ABS_VALUE, 0)
    assert call(world, "getLastIndex", world.agent, client) == 2


# ---------------------------------------------------------------- revoking and responding


def test_revoke_marks_the_entry_and_summaries_skip_it(world):
    alice, bob = world.clients[:2]
    world.give(alice, 80)
    world.give(alice, 20)
    world.give(bob, 50)
    assert world.summary([alice, bob]) == (3, 50, 0)
    receipt = world.reg.chain.transact(world.reg.reputation, "revokeFeedback", world.agent, 2, sender=alice)
    [log] = logs(receipt, FEEDBACK_REVOKED)
    assert log["topics"][1:] == [
        "0x" + world.agent.to_bytes(32, "big").hex(),
        "0x" + "00" * 12 + alice[2:].lower(),
        "0x" + (2).to_bytes(32, "big").hex(),
    ]
    assert call(world, "readFeedback", world.agent, alice, 2) == (20, 0, "", "", True)
    assert world.summary([alice, bob]) == (2, 65, 0)
    assert world.read_all()[1] == (1, 1)
    assert world.read_all(include_revoked=True)[6] == (False, True, False)
    with reverts("Already revoked"):
        world.reg.chain.transact(world.reg.reputation, "revokeFeedback", world.agent, 2, sender=alice)
    with reverts("index out of bounds"):  # only the client's own entries
        world.reg.chain.transact(world.reg.reputation, "revokeFeedback", world.agent, 2, sender=bob)
    with reverts("index must be > 0"):
        world.reg.chain.transact(world.reg.reputation, "revokeFeedback", world.agent, 0, sender=alice)


def test_append_response_and_count_responses(world):
    alice, bob, carol = world.clients
    world.give(alice, 1)
    world.give(alice, 2)
    world.give(bob, 3)
    reputation = world.reg.reputation
    digest = keccak(text="refund")
    receipt = world.reg.chain.transact(
        reputation, "appendResponse", world.agent, alice, 1, "ipfs://refund", digest, sender=world.owner
    )
    [log] = logs(receipt, RESPONSE_APPENDED)
    assert topic_address(log["topics"][2]) == alice and topic_address(log["topics"][3]) == world.owner
    assert data_of(log, ["uint64", "string", "bytes32"]) == (1, "ipfs://refund", digest)
    world.reg.chain.transact(
        reputation, "appendResponse", world.agent, alice, 1, "ipfs://again", NO_HASH, sender=world.owner
    )
    world.reg.chain.transact(
        reputation, "appendResponse", world.agent, alice, 2, "ipfs://spam", NO_HASH, sender=carol
    )
    world.reg.chain.transact(
        reputation, "appendResponse", world.agent, bob, 1, "ipfs://spam", NO_HASH, sender=carol
    )
    zero = "0x" + "00" * 20
    assert call(world, "getResponseCount", world.agent, alice, 1, []) == 2
    assert call(world, "getResponseCount", world.agent, alice, 0, []) == 3
    assert call(world, "getResponseCount", world.agent, zero, 0, []) == 4
    assert call(world, "getResponseCount", world.agent, zero, 0, [carol]) == 2
    assert call(world, "getResponseCount", world.agent, alice, 0, [world.owner]) == 2
    assert call(world, "getResponseCount", world.agent, bob, 1, [world.owner]) == 0
    with reverts("Empty URI"):
        world.reg.chain.transact(
            reputation, "appendResponse", world.agent, alice, 1, "", NO_HASH, sender=carol
        )
    with reverts("index out of bounds"):
        world.reg.chain.transact(
            reputation, "appendResponse", world.agent, bob, 2, "x", NO_HASH, sender=carol
        )
    with reverts("index must be > 0"):
        world.reg.chain.transact(
            reputation, "appendResponse", world.agent, bob, 0, "x", NO_HASH, sender=carol
        )


# ---------------------------------------------------------------- summaries and filters


def test_summary_needs_clients_and_filters_by_clients_and_tags(world):
    alice, bob, carol = world.clients
    world.give(alice, 90, 0, "starred", "mcp")
    world.give(alice, 9950, 2, "uptime", "day")
    world.give(bob, 70, 0, "starred", "a2a")
    world.give(carol, 9900, 2, "uptime", "week")
    with reverts("clientAddresses required"):
        world.summary([])
    assert world.summary([alice, bob, carol], "starred") == (2, 80, 0)
    assert world.summary([alice, bob, carol], "starred", "a2a") == (1, 70, 0)
    assert world.summary([alice, bob, carol], "", "day") == (1, 9950, 2)
    assert world.summary([alice, carol], "uptime") == (2, 9925, 2)
    assert world.summary([bob], "uptime") == (0, 0, 0)
    assert world.summary([world.owner]) == (0, 0, 0)
    # Mixed decimals: the mean of 90, 99.50, 70 and 99.00 (89.625) in the most common decimals,
    # the smallest on a tie (two entries each with 0 and 2), rounded toward zero.
    assert world.summary([alice, bob, carol]) == (4, 89, 0)
    assert world.summary([alice, carol]) == (3, 9616, 2)

    clients, indexes, values, decimals, tag1s, tag2s, revoked = world.read_all(tag1="starred")
    assert [to_checksum_address(c) for c in clients] == [alice, bob]
    assert (indexes, values, decimals, tag1s, tag2s, revoked) == (
        (1, 1),
        (90, 70),
        (0, 0),
        ("starred", "starred"),
        ("mcp", "a2a"),
        (False, False),
    )
    assert len(world.read_all()[0]) == 4
    assert world.read_all([carol, alice])[1] == (1, 1, 2)


def trunc_div(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b > 0) else -quotient


def model_summary(entries, clients, tag1, tag2):
    """getSummary in Python: (count, value, decimals), or None where the contract reverts."""
    chosen = [
        e
        for client in clients
        for e in entries
        if e[0] == client and not e[5] and (not tag1 or e[3] == tag1) and (not tag2 or e[4] == tag2)
    ]
    if not chosen:
        return (0, 0, 0)
    total = sum(value * 10 ** (18 - decimals) for _, value, decimals, *_ in chosen)
    per_decimals = [sum(1 for e in chosen if e[2] == d) for d in range(19)]
    mode = per_decimals.index(max(per_decimals))  # the first (smallest) of the most frequent
    mean = trunc_div(trunc_div(total, len(chosen)), 10 ** (18 - mode))
    if not INT128[0] <= mean <= INT128[1]:
        return None
    return (len(chosen), mean, mode)


_WORLD: list[World] = []


def shared_world() -> World:
    # One chain for every example, returned to its snapshot after each: a new chain per example
    # would cost most of the test's time.
    if not _WORLD:
        _WORLD.append(new_world())
    return _WORLD[0]


feedback_entries = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),  # which client
        st.one_of(
            st.integers(min_value=-1000, max_value=1000),
            st.integers(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE),
        ),
        st.integers(min_value=0, max_value=18),
        st.sampled_from(["", "starred", "uptime"]),
        st.sampled_from(["", "day"]),
        st.booleans(),  # revoke it afterwards
    ),
    min_size=0,
    max_size=7,
)


@given(
    entries=feedback_entries,
    filter_clients=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=4),
    tag1=st.sampled_from(["", "starred", "uptime"]),
    tag2=st.sampled_from(["", "day"]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_summary_matches_the_python_model(entries, filter_clients, tag1, tag2):
    world = shared_world()
    tester = world.reg.chain.tester
    snapshot = tester.take_snapshot()
    try:
        model = []
        last = {}
        for who, value, decimals, t1, t2, revoke in entries:
            client = world.clients[who]
            world.give(client, value, decimals, t1, t2)
            last[client] = last.get(client, 0) + 1
            model.append([client, value, decimals, t1, t2, False])
            if revoke:
                world.reg.chain.transact(
                    world.reg.reputation, "revokeFeedback", world.agent, last[client], sender=client
                )
                model[-1][5] = True
        clients = [world.clients[i] for i in filter_clients]
        expected = model_summary(model, clients, tag1, tag2)
        if expected is None:
            with pytest.raises(TransactionFailed, match="summary overflows int128"):
                world.summary(clients, tag1, tag2)
        else:
            assert world.summary(clients, tag1, tag2) == expected

        rows = world.read_all(clients=[], tag1=tag1, tag2=tag2, include_revoked=True)
        listed = [
            (to_checksum_address(c), v, d, t1, t2, r) for c, _, v, d, t1, t2, r in zip(*rows, strict=True)
        ]
        by_client = [
            tuple(e)
            for c in dict.fromkeys(e[0] for e in model)
            for e in model
            if e[0] == c and (not tag1 or e[3] == tag1) and (not tag2 or e[4] == tag2)
        ]
        assert listed == by_client
    finally:
        tester.revert_to_snapshot(snapshot)


def test_a_summary_that_does_not_fit_int128_reverts(world):
    # 1e38 with 0 decimals averaged in 18 decimals (the mode) is ~3.3e55: the reference contract
    # would wrap it silently; this one refuses.
    alice, bob, carol = world.clients
    world.give(alice, MAX_ABS_VALUE, 0)
    world.give(bob, 1, 18)
    world.give(carol, 1, 18)
    with reverts("summary overflows int128"):
        world.summary([alice, bob, carol])
    assert world.summary([bob, carol]) == (2, 1, 18)
