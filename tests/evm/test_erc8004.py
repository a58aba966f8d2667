"""ERC-8004 on LocalChain: the registries at genesis, the Python wrapper round-trips, the wallet
signature against eth-account's typed-data path, the registration file, and AgentDirectory."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402sim.errors import ChainError
from x402sim.evm import (
    IDENTITY_REGISTRY_ADDRESS,
    REPUTATION_REGISTRY_ADDRESS,
    LocalChain,
    Summary,
    address_of_key,
    load_artifact,
)
from x402sim.evm import erc8004 as e8
from x402sim.trust import (
    REGISTRATION_TYPE,
    AgentDirectory,
    parse_registration,
    registration_file,
)

KEYS = 5


@pytest.fixture(scope="module")
def base_chain():
    chain = LocalChain(seed=8004)
    keys = [chain.new_key() for _ in range(KEYS)]
    chain.fund_many([(address_of_key(k), 0, 10**18) for k in keys])
    return chain, keys


@pytest.fixture
def world(base_chain):
    """The shared chain, returned to its state after each test."""
    chain, keys = base_chain
    snapshot = chain.snapshot()
    yield chain, keys
    chain.revert(snapshot)


# ---------------------------------------------------------------- genesis


@pytest.mark.parametrize("make", [LocalChain, lambda: LocalChain.from_preset("base")], ids=["local", "base"])
def test_registries_are_in_the_genesis_state(make):
    chain = make()
    assert (
        chain.identity_registry == IDENTITY_REGISTRY_ADDRESS == "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
    )
    assert (
        chain.reputation_registry
        == REPUTATION_REGISTRY_ADDRESS
        == "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63"
    )
    assert chain.code(chain.identity_registry) == load_artifact("identity_registry").runtime_bytecode
    assert chain.code(chain.reputation_registry) == load_artifact(
        "reputation_registry"
    ).runtime_bytecode + encode(["address"], [IDENTITY_REGISTRY_ADDRESS])
    # Present in block 0 already: no transaction put them there.
    genesis = chain.call(
        chain.reputation_registry, e8._calldata("getIdentityRegistry()", [], []), after_block=0
    )
    assert to_checksum_address("0x" + genesis.output[-20:].hex()) == IDENTITY_REGISTRY_ADDRESS
    assert not any(r.to in (chain.identity_registry, chain.reputation_registry) for r in chain.receipts())
    assert chain.block_number == (2 if chain.token_address else 1)  # the token's deployment (and move)
    assert e8.owner_of(chain, 0) is None and e8.get_summary(chain, 0) == Summary(0, 0, 0)


# ---------------------------------------------------------------- identity


def test_register_forms_and_reads(world):
    chain, (owner, *_) = world
    me = address_of_key(owner)
    assert e8.register(chain, owner) == 0
    assert e8.register(chain, owner, "ipfs://agent-1") == 1
    metadata = {"mcp": b"https://agent.example/mcp", "price": (10**6).to_bytes(32, "big")}
    big_uri = "data:application/json;base64," + "A" * 6000
    assert e8.register(chain, owner, big_uri, metadata) == 2
    assert [e8.owner_of(chain, i) for i in range(3)] == [me] * 3
    assert [e8.agent_wallet(chain, i) for i in range(3)] == [me] * 3
    assert [e8.agent_uri(chain, i) for i in range(3)] == ["", "ipfs://agent-1", big_uri]
    assert e8.get_metadata(chain, 2, "mcp") == metadata["mcp"]
    assert e8.get_metadata(chain, 2, "price") == metadata["price"]
    assert e8.get_metadata(chain, 2, "agentWallet") == bytes.fromhex(me[2:])
    assert e8.get_metadata(chain, 0, "mcp") == b""
    assert e8.owner_of(chain, 3) is None and e8.agent_wallet(chain, 3) is None
    with pytest.raises(ChainError, match="nonexistent token"):
        e8.agent_uri(chain, 3)


def test_uri_and_metadata_updates_and_client_side_checks(world):
    chain, (owner, stranger, *_) = world
    agent = e8.register(chain, owner)
    e8.set_agent_uri(chain, owner, agent, "https://agent.example/.well-known/agent.json")
    assert e8.agent_uri(chain, agent) == "https://agent.example/.well-known/agent.json"
    e8.set_metadata(chain, owner, agent, "skills", b"\x00\x01" * 1000)
    assert e8.get_metadata(chain, agent, "skills") == b"\x00\x01" * 1000
    with pytest.raises(ChainError, match="Not authorized"):
        e8.set_metadata(chain, stranger, agent, "skills", b"")
    with pytest.raises(ValueError, match="reserved"):
        e8.set_metadata(chain, owner, agent, "agentWallet", b"\x01" * 20)
    with pytest.raises(ValueError, match="agent_uri is 8193 bytes"):
        e8.register(chain, owner, "x" * 8193)
    with pytest.raises(ValueError, match="at most 16"):
        e8.register(chain, owner, "", {str(i): b"" for i in range(17)})
    with pytest.raises(ValueError, match="metadata value of 'k' must be bytes"):
        e8.register(chain, owner, "", {"k": "not bytes"})


def test_set_agent_wallet_deadline_window(world):
    chain, (owner, wallet_key, *_) = world
    agent = e8.register(chain, owner)
    wallet = address_of_key(wallet_key)
    e8.set_agent_wallet(chain, owner, agent, wallet_key)  # default deadline: now + 60
    assert e8.agent_wallet(chain, agent) == wallet
    e8.unset_agent_wallet(chain, owner, agent)
    assert e8.agent_wallet(chain, agent) is None
    now = chain.now  # the next block is stamped `now`
    with pytest.raises(ChainError, match=r"^deadline too far$"):
        e8.set_agent_wallet(chain, owner, agent, wallet_key, deadline=now + 301)
    with pytest.raises(ChainError, match=r"^expired$"):
        e8.set_agent_wallet(chain, owner, agent, wallet_key, deadline=now - 1)
    e8.set_agent_wallet(chain, owner, agent, wallet_key, deadline=now + 300)
    e8.set_agent_wallet(chain, owner, agent, owner, deadline=now)
    assert e8.agent_wallet(chain, agent) == address_of_key(owner)


def test_transfer_clears_the_wallet(world):
    chain, (alice, bob, wallet_key, operator, _) = world
    agent = e8.register(chain, alice)
    e8.set_agent_wallet(chain, alice, agent, wallet_key)
    e8.set_operator(chain, alice, address_of_key(operator))
    e8.transfer_agent(chain, operator, agent, address_of_key(bob))  # an operator moves the owner's agent
    assert e8.owner_of(chain, agent) == address_of_key(bob)
    assert e8.agent_wallet(chain, agent) is None
    assert e8.get_metadata(chain, agent, "agentWallet") == b""
    e8.set_agent_wallet(chain, bob, agent, wallet_key)
    assert e8.agent_wallet(chain, agent) == address_of_key(wallet_key)


@given(
    agent_id=st.integers(min_value=0, max_value=2**256 - 1),
    deadline=st.integers(min_value=0, max_value=2**256 - 1),
    chain_id=st.integers(min_value=1, max_value=2**64),
    seed=st.binary(min_size=32, max_size=32),
)
@settings(max_examples=20, deadline=None)
def test_wallet_signature_matches_eth_accounts_typed_data(agent_id, deadline, chain_id, seed):
    wallet = Account.from_key(bytes([1]) + seed[1:])
    owner = Account.from_key(bytes([2]) + seed[1:]).address
    ours = e8.sign_agent_wallet(
        bytes(wallet.key),
        agent_id,
        wallet.address,
        owner,
        deadline,
        chain_id=chain_id,
        registry=IDENTITY_REGISTRY_ADDRESS,
    )
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "AgentWalletSet": [
                {"name": "agentId", "type": "uint256"},
                {"name": "newWallet", "type": "address"},
                {"name": "owner", "type": "address"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "AgentWalletSet",
        "domain": {
            "name": "ERC8004IdentityRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": IDENTITY_REGISTRY_ADDRESS,
        },
        "message": {"agentId": agent_id, "newWallet": wallet.address, "owner": owner, "deadline": deadline},
    }
    assert ours == bytes(Account.sign_typed_data(wallet.key, full_message=typed).signature)


# ---------------------------------------------------------------- reputation


def test_feedback_round_trip(world):
    chain, (owner, alice, bob, *_) = world
    agent = e8.register(chain, owner)
    a, b = address_of_key(alice), address_of_key(bob)
    e8.give_feedback(chain, alice, agent, 87, 0, "starred", "", "https://agent/api", "ipfs://f", b"\x01" * 32)
    e8.give_feedback(chain, alice, agent, 9977, 2, "uptime")
    tx = e8.give_feedback(chain, bob, agent, -32, 1, "tradingYield", "day", mine=False)
    assert chain.receipt(tx) is None
    chain.mine()
    assert chain.receipt(tx).success
    assert e8.get_clients(chain, agent) == [a, b]
    assert e8.last_index(chain, agent, a) == 2
    assert e8.read_feedback(chain, agent, a, 2) == e8.Feedback(a, 2, 9977, 2, "uptime", "", False)
    summary = e8.get_summary(chain, agent)
    assert summary == Summary(3, 61, 0) and summary.mean == 61.0
    assert e8.get_summary(chain, agent, [a], tag1="uptime").mean == pytest.approx(99.77)
    assert e8.get_summary(chain, agent, []) == Summary(0, 0, 0)

    e8.revoke_feedback(chain, alice, agent, 1)
    assert e8.get_summary(chain, agent) == Summary(2, 482, 1)
    assert [f.index for f in e8.read_all_feedback(chain, agent)] == [2, 1]
    everything = e8.read_all_feedback(chain, agent, include_revoked=True)
    assert [(f.client, f.index, f.revoked) for f in everything] == [
        (a, 1, True),
        (a, 2, False),
        (b, 1, False),
    ]
    assert e8.read_all_feedback(chain, agent, [b], tag2="day")[0].number == pytest.approx(-3.2)

    e8.append_response(chain, owner, agent, a, 1, "ipfs://refund")
    e8.append_response(chain, bob, agent, a, 2, "ipfs://thanks")
    assert e8.response_count(chain, agent) == 2
    assert e8.response_count(chain, agent, a, 1) == 1
    assert e8.response_count(chain, agent, responders=[address_of_key(owner)]) == 1

    with pytest.raises(ChainError, match="Self-feedback not allowed"):
        e8.give_feedback(chain, owner, agent, 1)
    with pytest.raises(ChainError, match="too many decimals"):
        e8.give_feedback(chain, alice, agent, 1, 19)
    with pytest.raises(ChainError, match="nonexistent token"):
        e8.give_feedback(chain, alice, agent + 1, 1)
    with pytest.raises(ChainError, match="Already revoked"):
        e8.revoke_feedback(chain, alice, agent, 1)
    with pytest.raises(ValueError, match="tag1 is 65 bytes"):
        e8.give_feedback_calldata(agent, 1, tag1="x" * 65)
    with pytest.raises(ValueError, match="value must be an int128"):
        e8.give_feedback_calldata(agent, 2**127)


def test_snapshot_and_revert_cover_the_registries(world):
    chain, (owner, client, *_) = world
    before = chain.snapshot()
    agent = e8.register(chain, owner)
    e8.give_feedback(chain, client, agent, 5)
    chain.revert(before)
    assert e8.owner_of(chain, agent) is None
    assert e8.get_clients(chain, agent) == []
    assert e8.register(chain, owner) == agent  # the id is free again


# ---------------------------------------------------------------- AgentDirectory


class CountingChain:
    """A chain whose reads are counted (to watch the directory's cache)."""

    def __init__(self, chain):
        self._chain = chain
        self.calls = 0

    def call(self, to, data, **kwargs):
        self.calls += 1
        return self._chain.call(to, data, **kwargs)

    def __getattr__(self, name):
        return getattr(self._chain, name)


def test_directory_reads_and_caches_until_the_next_block(world):
    chain, (owner, wallet_key, client, *_) = world
    agent = e8.register(chain, owner)
    counting = CountingChain(chain)
    directory = AgentDirectory(counting)
    assert (directory.registry, directory.chain_id) == (IDENTITY_REGISTRY_ADDRESS, chain.chain_id)
    assert directory.agent_registry == f"eip155:{chain.chain_id}:{IDENTITY_REGISTRY_ADDRESS}"
    assert directory.wallet(agent) == address_of_key(owner)
    assert directory.owner(agent) == address_of_key(owner)
    assert directory.reputation(agent) == Summary(0, 0, 0)
    reads = counting.calls
    assert directory.wallet(agent) == address_of_key(owner) and directory.reputation(agent).count == 0
    assert counting.calls == reads  # served from the cache

    e8.set_agent_wallet(chain, owner, agent, wallet_key)
    e8.give_feedback(chain, client, agent, 90, tag1="starred")
    assert directory.wallet(agent) == address_of_key(wallet_key)
    assert directory.reputation(agent) == Summary(1, 90, 0)
    assert directory.reputation(agent, tag1="other") == Summary(0, 0, 0)
    assert directory.wallet(agent + 1) is None and directory.owner(agent + 1) is None


# ---------------------------------------------------------------- registration file

names = st.text(min_size=1, max_size=20)
services = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["web", "A2A", "MCP", "OASF", "ENS", "DID", "email"]),
            "endpoint": st.text(max_size=30),
        },
        optional={"version": st.text(max_size=10), "skills": st.lists(st.text(max_size=5), max_size=3)},
    ),
    max_size=4,
)


@given(
    name=names,
    description=st.text(max_size=40),
    image=st.text(max_size=20),
    services=services,
    agent_id=st.integers(min_value=0, max_value=2**256 - 1),
    chain_id=st.integers(min_value=1, max_value=2**64),
    registry=st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b)),
    x402_support=st.booleans(),
    active=st.booleans(),
    trust=st.none()
    | st.lists(st.sampled_from(["reputation", "crypto-economic", "tee-attestation"]), max_size=3),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_registration_file_round_trips(
    name, description, image, services, agent_id, chain_id, registry, x402_support, active, trust
):
    data = registration_file(
        name,
        description=description,
        image=image,
        services=services,
        agent_id=agent_id,
        chain_id=chain_id,
        registry=registry,
        x402_support=x402_support,
        active=active,
        supported_trust=trust,
    )
    assert data["type"] == REGISTRATION_TYPE
    assert list(data)[:8] == [
        "type",
        "name",
        "description",
        "image",
        "services",
        "x402Support",
        "active",
        "registrations",
    ]
    assert data["registrations"] == [{"agentId": agent_id, "agentRegistry": f"eip155:{chain_id}:{registry}"}]
    assert data["services"] == services
    assert ("supportedTrust" in data) == (trust is not None)
    parsed = parse_registration(data)
    assert (parsed.name, parsed.description, parsed.image) == (name, description, image)
    assert (parsed.x402_support, parsed.active) == (x402_support, active)
    [entry] = parsed.registrations
    assert (entry.agent_id, entry.chain_id, entry.registry) == (agent_id, chain_id, registry)
    assert parsed.registration_on(chain_id, registry.lower()) == entry
    assert parsed.as_dict() == data
    assert parse_registration(parsed.as_dict()) == parsed


def valid_file() -> dict:
    return registration_file(
        "weather-bot",
        description="Paid weather forecasts",
        services=[{"name": "web", "endpoint": "https://weather.example/"}],
        agent_id=7,
        chain_id=8453,
        registry=IDENTITY_REGISTRY_ADDRESS,
    )


def test_parse_accepts_unknown_fields_and_string_ids():
    data = valid_file() | {"x-extra": {"a": 1}}
    data["registrations"] = [{"agentId": "7", "agentRegistry": data["registrations"][0]["agentRegistry"]}]
    parsed = parse_registration(data)
    assert parsed.registrations[0].agent_id == 7 and parsed.extra == {"x-extra": {"a": 1}}
    assert parsed.service("WEB").endpoint == "https://weather.example/"
    assert parse_registration(valid_file()).supported_trust is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("type"), "no 'type'"),
        (lambda d: d.update(type="https://example.com/v2"), "type must be"),
        (lambda d: d.update(name=""), "name must not be empty"),
        (lambda d: d.update(name=3), "name must be a string"),
        (lambda d: d.update(x402Support="yes"), "x402Support must be true or false"),
        (lambda d: d.pop("active"), "no 'active'"),
        (lambda d: d.update(services={}), "services must be a list"),
        (lambda d: d["services"].append({"name": "MCP"}), r"services\[1\] has no 'endpoint'"),
        (lambda d: d["services"].append({"name": "MCP", "endpoint": 5}), r"services\[1\]\.endpoint must be"),
        (
            lambda d: d["services"].append({"name": "A2A", "endpoint": "x", "version": 3}),
            r"services\[1\]\.version",
        ),
        (lambda d: d["registrations"][0].pop("agentId"), r"registrations\[0\] has no 'agentId'"),
        (lambda d: d["registrations"][0].update(agentId=-1), r"registrations\[0\]\.agentId must be"),
        (lambda d: d["registrations"][0].update(agentId=True), r"registrations\[0\]\.agentId must be"),
        (
            lambda d: d["registrations"][0].update(agentRegistry="eip155:8453"),
            r"registrations\[0\]\.agentRegistry",
        ),
        (
            lambda d: d["registrations"][0].update(agentRegistry="solana:1:0xab"),
            r"registrations\[0\]\.agentRegistry",
        ),
        (lambda d: d.update(supportedTrust=[1]), r"supportedTrust\[0\] must be a string"),
        (lambda d: d.update(description=None), "description must be a string"),
    ],
)
def test_parse_names_the_bad_field(change, message):
    data = valid_file()
    change(data)
    with pytest.raises(ValueError, match=message):
        parse_registration(data)


def test_parse_refuses_what_is_not_an_object():
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_registration([1, 2])
    with pytest.raises(ValueError, match="registry 'nope' is not an address"):
        registration_file("a", services=[], agent_id=1, chain_id=1, registry="nope")
