"""The ERC-8004 identity registry: ERC-721 agents, the register forms, metadata and the agent wallet.

The registries are deployed here by transactions on a bare eth-tester chain (as the token is in
`helpers.py`), and signatures come from eth-account's typed-data path, so these tests check the
contract and its artifact on their own, not through `x402sim.evm.erc8004`. The reputation tests
import the deployment helpers from here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from eth_utils import event_signature_to_log_topic, keccak, to_checksum_address

from x402sim.evm.contracts import (
    COMPILER,
    EVM_VERSION,
    IDENTITY_REGISTRY,
    REPUTATION_REGISTRY,
    load_artifact,
    source_sha256,
)

from .helpers import Chain, Contract, abi_type, new_chain

ZERO = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

TRANSFER = event_signature_to_log_topic("Transfer(address,address,uint256)")
APPROVAL = event_signature_to_log_topic("Approval(address,address,uint256)")
APPROVAL_FOR_ALL = event_signature_to_log_topic("ApprovalForAll(address,address,bool)")
REGISTERED = event_signature_to_log_topic("Registered(uint256,string,address)")
METADATA_SET = event_signature_to_log_topic("MetadataSet(uint256,string,string,bytes)")
URI_UPDATED = event_signature_to_log_topic("URIUpdated(uint256,string,address)")
METADATA_UPDATE = event_signature_to_log_topic("MetadataUpdate(uint256)")

REGISTER_0 = "register()"
REGISTER_1 = "register(string)"
REGISTER_2 = "register(string,(string,bytes)[])"
WALLET_TYPES = [
    {"name": "agentId", "type": "uint256"},
    {"name": "newWallet", "type": "address"},
    {"name": "owner", "type": "address"},
    {"name": "deadline", "type": "uint256"},
]
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

# A contract wallet for the ERC-1271 path and the ERC-721 receiver check: it vouches for digests its
# `signer` signed, and accepts a minted agent only when told to.
WALLET_SOURCE = """
# pragma version 0.4.3
interface Registry:
    def register() -> uint256: nonpayable

signer: public(address)
accept: public(bool)

@deploy
def __init__(signer: address, accept: bool):
    self.signer = signer
    self.accept = accept

@view
@external
def isValidSignature(digest: bytes32, signature: Bytes[65]) -> bytes4:
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if ecrecover(digest, v, extract32(signature, 0), extract32(signature, 32)) == self.signer:
        return 0x1626ba7e
    return 0xffffffff

@external
def registerAt(registry: address) -> uint256:
    return extcall Registry(registry).register()

@external
def onERC721Received(operator: address, from_: address, tokenId: uint256, data: Bytes[1024]) -> bytes4:
    assert self.accept, "not accepting"
    return 0x150b7a02
"""


def reverts(reason: str):
    return pytest.raises(TransactionFailed, match=f"^{re.escape(reason)}$")


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@dataclass
class Registries:
    chain: Chain
    identity: Contract
    reputation: Contract

    @property
    def accounts(self) -> list[str]:
        return self.chain.accounts


def deploy(chain: Chain, init_code: bytes, abi) -> Contract:
    tx_hash = chain.tester.send_transaction(
        {"from": chain.accounts[0], "data": "0x" + init_code.hex(), "gas": 10_000_000}
    )
    receipt = chain.tester.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return Contract(receipt["contract_address"], abi)


def new_registries() -> Registries:
    chain = new_chain()
    identity = deploy(chain, load_artifact(IDENTITY_REGISTRY).bytecode, load_artifact(IDENTITY_REGISTRY).abi)
    reputation_artifact = load_artifact(REPUTATION_REGISTRY)
    reputation = deploy(
        chain, reputation_artifact.bytecode + encode(["address"], [identity.address]), reputation_artifact.abi
    )
    return Registries(chain, identity, reputation)


def register(reg: Registries, sender: str, uri: str | None = None, metadata=None) -> dict:
    """Send one of the three register forms: () when uri is None, (string) without metadata."""
    if metadata is not None:
        data = selector(REGISTER_2) + encode(["string", "(string,bytes)[]"], [uri or "", metadata])
    elif uri is not None:
        data = selector(REGISTER_1) + encode(["string"], [uri])
    else:
        data = selector(REGISTER_0)
    return reg.chain.send_raw(sender, reg.identity.address, data)


def agent_id_of(receipt: dict) -> int:
    [log] = logs(receipt, REGISTERED)
    return int(log["topics"][1], 16)


def logs(receipt: dict, topic: bytes) -> list[dict]:
    return [log for log in receipt["logs"] if log["topics"][0] == "0x" + topic.hex()]


def data_of(log: dict, types: list[str]) -> tuple:
    return decode(types, bytes.fromhex(log["data"][2:]))


def topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


def owner_of(reg: Registries, agent_id: int) -> str:
    return to_checksum_address(reg.chain.call(reg.identity, "ownerOf", agent_id))


def pending_time(chain: Chain) -> int:
    return chain.tester.get_block_by_number("pending")["timestamp"]


def sign_wallet(key: bytes, reg: Registries, agent_id: int, wallet: str, owner: str, deadline: int) -> bytes:
    message = {
        "types": {"EIP712Domain": DOMAIN_TYPES, "AgentWalletSet": WALLET_TYPES},
        "primaryType": "AgentWalletSet",
        "domain": {
            "name": "ERC8004IdentityRegistry",
            "version": "1",
            "chainId": reg.chain.chain_id,
            "verifyingContract": reg.identity.address,
        },
        "message": {"agentId": agent_id, "newWallet": wallet, "owner": owner, "deadline": deadline},
    }
    return bytes(Account.sign_typed_data(key, full_message=message).signature)


def set_wallet(reg: Registries, sender: str, agent_id: int, wallet: str, deadline: int, signature: bytes):
    return reg.chain.transact(
        reg.identity, "setAgentWallet", agent_id, wallet, deadline, signature, sender=sender
    )


@functools.cache
def wallet_artifact() -> tuple[bytes, tuple]:
    import vyper
    from vyper.compiler.settings import Settings

    out = vyper.compile_code(
        WALLET_SOURCE, output_formats=["bytecode", "abi"], settings=Settings(evm_version=EVM_VERSION)
    )
    return bytes.fromhex(out["bytecode"][2:]), tuple(out["abi"])


def deploy_wallet(reg: Registries, signer: str, accept: bool) -> Contract:
    code, abi = wallet_artifact()
    return deploy(reg.chain, code + encode(["address", "bool"], [signer, accept]), abi)


@pytest.fixture
def reg() -> Registries:
    return new_registries()


# ---------------------------------------------------------------- artifact and interface


def test_artifact_is_built_from_this_source_and_genesis_code_equals_deployed_code(reg):
    artifact = load_artifact(IDENTITY_REGISTRY)
    assert COMPILER == "vyper 0.4.3"
    assert len(source_sha256(IDENTITY_REGISTRY)) == 64
    # No constructor, no immutables: the deployed code is exactly the runtime code, so placing
    # that code in a genesis state is equivalent to deploying it.
    deployed = bytes.fromhex(reg.chain.tester.get_code(reg.identity.address)[2:])
    assert deployed == artifact.runtime_bytecode


def test_the_three_register_forms_have_the_ercs_selectors():
    abi = load_artifact(IDENTITY_REGISTRY).abi
    forms = sorted(
        "register(" + ",".join(abi_type(i) for i in e["inputs"]) + ")"
        for e in abi
        if e.get("name") == "register"
    )
    assert forms == sorted([REGISTER_0, REGISTER_1, REGISTER_2])
    assert selector(REGISTER_0).hex() == "1aa3a008"
    assert selector(REGISTER_1).hex() == "f2c298be"
    [full] = [e for e in abi if e.get("name") == "register" and len(e["inputs"]) == 2]
    assert [c["name"] for c in full["inputs"][1]["components"]] == ["metadataKey", "metadataValue"]
    assert all(e["outputs"] == [{"name": "", "type": "uint256"}] for e in abi if e.get("name") == "register")


def test_interface_has_the_erc_functions_and_events():
    abi = load_artifact(IDENTITY_REGISTRY).abi
    functions = {
        f"{e['name']}({','.join(abi_type(i) for i in e['inputs'])})" for e in abi if e["type"] == "function"
    }
    erc8004 = {
        "setAgentURI(uint256,string)",
        "getMetadata(uint256,string)",
        "setMetadata(uint256,string,bytes)",
        "setAgentWallet(uint256,address,uint256,bytes)",
        "getAgentWallet(uint256)",
        "unsetAgentWallet(uint256)",
    }
    erc721 = {
        "balanceOf(address)",
        "ownerOf(uint256)",
        "safeTransferFrom(address,address,uint256)",
        "safeTransferFrom(address,address,uint256,bytes)",
        "transferFrom(address,address,uint256)",
        "approve(address,uint256)",
        "setApprovalForAll(address,bool)",
        "getApproved(uint256)",
        "isApprovedForAll(address,address)",
        "name()",
        "symbol()",
        "tokenURI(uint256)",
        "supportsInterface(bytes4)",
    }
    assert erc8004 | erc721 <= functions
    events = {
        e["name"]: [(i["name"], i["type"], i["indexed"]) for i in e["inputs"]]
        for e in abi
        if e["type"] == "event"
    }
    assert events["Registered"] == [
        ("agentId", "uint256", True),
        ("agentURI", "string", False),
        ("owner", "address", True),
    ]
    assert events["MetadataSet"] == [
        ("agentId", "uint256", True),
        ("indexedMetadataKey", "string", True),
        ("metadataKey", "string", False),
        ("metadataValue", "bytes", False),
    ]
    assert events["URIUpdated"] == [
        ("agentId", "uint256", True),
        ("newURI", "string", False),
        ("updatedBy", "address", True),
    ]
    assert events["Transfer"] == [
        ("from", "address", True),
        ("to", "address", True),
        ("tokenId", "uint256", True),
    ]


def test_erc721_metadata_and_interfaces(reg):
    assert reg.chain.call(reg.identity, "name") == "AgentIdentity"
    assert reg.chain.call(reg.identity, "symbol") == "AGENT"
    for interface in ("01ffc9a7", "80ac58cd", "5b5e139f", "49064906"):
        assert reg.chain.call(reg.identity, "supportsInterface", bytes.fromhex(interface)) is True
    assert reg.chain.call(reg.identity, "supportsInterface", b"\xff\xff\xff\xff") is False
    fields, name, version, chain_id, contract, _, extensions = reg.chain.call(reg.identity, "eip712Domain")
    assert (fields, name, version, chain_id) == (b"\x0f", "ERC8004IdentityRegistry", "1", reg.chain.chain_id)
    assert to_checksum_address(contract) == reg.identity.address and extensions == ()


# ---------------------------------------------------------------- registration


def test_register_mints_sequential_ids_with_the_ercs_events(reg):
    alice, bob = reg.accounts[1:3]
    receipt = register(reg, alice)
    transfer, registered, wallet_set = receipt["logs"]
    assert transfer["topics"] == [
        "0x" + TRANSFER.hex(),
        "0x" + "00" * 32,
        "0x" + "00" * 12 + alice[2:].lower(),
        "0x" + "00" * 32,
    ]
    assert registered["topics"][:2] == ["0x" + REGISTERED.hex(), "0x" + "00" * 32]
    assert topic_address(registered["topics"][2]) == alice
    assert data_of(registered, ["string"]) == ("",)
    assert wallet_set["topics"] == [
        "0x" + METADATA_SET.hex(),
        "0x" + "00" * 32,
        "0x" + keccak(text="agentWallet").hex(),
    ]
    assert data_of(wallet_set, ["string", "bytes"]) == ("agentWallet", bytes.fromhex(alice[2:]))

    second = register(reg, bob, "ipfs://bafy-agent")
    assert agent_id_of(second) == 1
    assert logs(second, METADATA_UPDATE)  # ERC-4906: the token's URI is set
    assert data_of(logs(second, REGISTERED)[0], ["string"]) == ("ipfs://bafy-agent",)
    assert agent_id_of(register(reg, alice, "https://a.example/agent.json", [])) == 2

    call = reg.chain.call
    assert [owner_of(reg, i) for i in range(3)] == [alice, bob, alice]
    assert call(reg.identity, "balanceOf", alice) == 2
    assert [call(reg.identity, "tokenURI", i) for i in range(3)] == [
        "",
        "ipfs://bafy-agent",
        "https://a.example/agent.json",
    ]
    # The wallet starts as the owner.
    assert [to_checksum_address(call(reg.identity, "getAgentWallet", i)) for i in range(3)] == [
        alice,
        bob,
        alice,
    ]
    assert call(reg.identity, "getMetadata", 1, "agentWallet") == bytes.fromhex(bob[2:])
    with reverts("ERC721: nonexistent token"):
        call(reg.identity, "ownerOf", 3)
    with reverts("ERC721: nonexistent token"):
        call(reg.identity, "tokenURI", 3)


def test_register_with_metadata_stores_and_logs_each_entry(reg):
    alice = reg.accounts[1]
    entries = [("endpoint", b"https://agent.example/mcp"), ("price", (1234).to_bytes(32, "big")), ("", b"")]
    receipt = register(reg, alice, "ipfs://x", entries)
    agent = agent_id_of(receipt)
    sets = logs(receipt, METADATA_SET)
    assert [data_of(log, ["string", "bytes"]) for log in sets] == [
        ("agentWallet", bytes.fromhex(alice[2:])),
        *entries,
    ]
    assert [log["topics"][2] for log in sets[1:]] == ["0x" + keccak(text=k).hex() for k, _ in entries]
    for key, value in entries:
        assert reg.chain.call(reg.identity, "getMetadata", agent, key) == value
    assert reg.chain.call(reg.identity, "getMetadata", agent, "unset") == b""


def test_register_refuses_the_reserved_wallet_key(reg):
    with reverts("reserved key"):
        register(reg, reg.accounts[1], "", [("name", b"x"), ("agentWallet", bytes(20))])


def test_a_contract_registering_must_accept_the_token(reg):
    refusing = deploy_wallet(reg, reg.accounts[1], accept=False)
    with reverts("not accepting"):
        reg.chain.transact(refusing, "registerAt", reg.identity.address)
    accepting = deploy_wallet(reg, reg.accounts[1], accept=True)
    receipt = reg.chain.transact(accepting, "registerAt", reg.identity.address)
    assert owner_of(reg, agent_id_of(receipt)) == accepting.address


# ---------------------------------------------------------------- URI and metadata


def test_set_agent_uri_by_owner_operator_or_approved(reg):
    owner, operator, approved, stranger = reg.accounts
    agent = agent_id_of(register(reg, owner))
    receipt = reg.chain.transact(reg.identity, "setAgentURI", agent, "ipfs://v2", sender=owner)
    [updated] = logs(receipt, URI_UPDATED)
    assert updated["topics"][1] == "0x" + agent.to_bytes(32, "big").hex()
    assert topic_address(updated["topics"][2]) == owner
    assert data_of(updated, ["string"]) == ("ipfs://v2",)

    with reverts("Not authorized"):
        reg.chain.transact(reg.identity, "setAgentURI", agent, "ipfs://evil", sender=stranger)
    reg.chain.transact(reg.identity, "setApprovalForAll", operator, True, sender=owner)
    reg.chain.transact(reg.identity, "approve", approved, agent, sender=owner)
    reg.chain.transact(reg.identity, "setAgentURI", agent, "ipfs://v3", sender=operator)
    receipt = reg.chain.transact(reg.identity, "setAgentURI", agent, "ipfs://v4", sender=approved)
    assert topic_address(logs(receipt, URI_UPDATED)[0]["topics"][2]) == approved
    assert reg.chain.call(reg.identity, "tokenURI", agent) == "ipfs://v4"
    with reverts("ERC721: nonexistent token"):
        reg.chain.transact(reg.identity, "setAgentURI", agent + 1, "x", sender=owner)


def test_set_metadata_rules(reg):
    owner, operator, _, stranger = reg.accounts
    agent = agent_id_of(register(reg, owner))
    receipt = reg.chain.transact(reg.identity, "setMetadata", agent, "skills", b"\x01\x02", sender=owner)
    [log] = logs(receipt, METADATA_SET)
    assert log["topics"][2] == "0x" + keccak(text="skills").hex()
    assert reg.chain.call(reg.identity, "getMetadata", agent, "skills") == b"\x01\x02"
    with reverts("reserved key"):
        reg.chain.transact(
            reg.identity, "setMetadata", agent, "agentWallet", bytes.fromhex(stranger[2:]), sender=owner
        )
    with reverts("Not authorized"):
        reg.chain.transact(reg.identity, "setMetadata", agent, "skills", b"", sender=stranger)
    reg.chain.transact(reg.identity, "setApprovalForAll", operator, True, sender=owner)
    reg.chain.transact(reg.identity, "setMetadata", agent, "skills", b"", sender=operator)
    assert reg.chain.call(reg.identity, "getMetadata", agent, "skills") == b""
    with reverts("ERC721: nonexistent token"):
        reg.chain.transact(reg.identity, "setMetadata", agent + 1, "skills", b"x", sender=owner)


# ---------------------------------------------------------------- agent wallet


def test_set_agent_wallet_with_the_new_wallets_signature(reg):
    owner = reg.accounts[1]
    agent = agent_id_of(register(reg, owner))
    wallet = Account.create()
    deadline = pending_time(reg.chain) + 200
    signature = sign_wallet(bytes(wallet.key), reg, agent, wallet.address, owner, deadline)
    receipt = set_wallet(reg, owner, agent, wallet.address, deadline, signature)
    [log] = logs(receipt, METADATA_SET)
    assert data_of(log, ["string", "bytes"]) == ("agentWallet", bytes.fromhex(wallet.address[2:]))
    assert to_checksum_address(reg.chain.call(reg.identity, "getAgentWallet", agent)) == wallet.address
    assert reg.chain.call(reg.identity, "getMetadata", agent, "agentWallet") == bytes.fromhex(
        wallet.address[2:]
    )

    receipt = reg.chain.transact(reg.identity, "unsetAgentWallet", agent, sender=owner)
    assert data_of(logs(receipt, METADATA_SET)[0], ["string", "bytes"]) == ("agentWallet", b"")
    assert reg.chain.call(reg.identity, "getAgentWallet", agent) == ZERO
    assert reg.chain.call(reg.identity, "getMetadata", agent, "agentWallet") == b""


def test_set_agent_wallet_refusals(reg):
    owner, operator, other_owner, stranger = reg.accounts
    agent = agent_id_of(register(reg, owner))
    other_agent = agent_id_of(register(reg, other_owner))
    wallet, impostor = Account.create(), Account.create()
    key = bytes(wallet.key)
    now = pending_time(reg.chain)
    good = now + 200

    # each signature differs from the one the registry checks in one field
    wrong = {
        "signed by someone else than the new wallet": (bytes(impostor.key), agent, owner, good),
        "signed for another agent": (key, other_agent, owner, good),
        "signed for another owner": (key, agent, other_owner, good),
        "signed with another deadline": (key, agent, owner, good + 1),
    }
    for why, (signer, signed_agent, signed_owner, deadline) in wrong.items():
        signature = sign_wallet(signer, reg, signed_agent, wallet.address, signed_owner, deadline)
        with reverts("invalid wallet sig"):
            set_wallet(reg, owner, agent, wallet.address, good, signature)
        assert to_checksum_address(reg.chain.call(reg.identity, "getAgentWallet", agent)) == owner, why
    expired = now - 5
    with reverts("expired"):
        set_wallet(
            reg,
            owner,
            agent,
            wallet.address,
            expired,
            sign_wallet(key, reg, agent, wallet.address, owner, expired),
        )
    far = now + 400
    with reverts("deadline too far"):
        set_wallet(
            reg, owner, agent, wallet.address, far, sign_wallet(key, reg, agent, wallet.address, owner, far)
        )
    with reverts("bad wallet"):
        set_wallet(reg, owner, agent, ZERO, good, sign_wallet(key, reg, agent, ZERO, owner, good))
    signature = sign_wallet(key, reg, agent, wallet.address, owner, good)
    with reverts("Not authorized"):
        set_wallet(reg, stranger, agent, wallet.address, good, signature)
    # The malleable twin (s -> n - s, v flipped) of a valid signature is refused (EIP-2).
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with reverts("invalid wallet sig"):
        set_wallet(reg, owner, agent, wallet.address, good, twin)
    with reverts("invalid wallet sig"):
        set_wallet(reg, owner, agent, wallet.address, good, signature[:64])
    # An operator of the owner may send the owner's signed change.
    reg.chain.transact(reg.identity, "setApprovalForAll", operator, True, sender=owner)
    set_wallet(reg, operator, agent, wallet.address, good, signature)
    assert to_checksum_address(reg.chain.call(reg.identity, "getAgentWallet", agent)) == wallet.address


def test_a_contract_wallet_signs_through_erc1271(reg):
    owner, signer = reg.accounts[1], Account.create()
    agent = agent_id_of(register(reg, owner))
    wallet = deploy_wallet(reg, signer.address, accept=True)
    good = pending_time(reg.chain) + 200
    signature = sign_wallet(bytes(signer.key), reg, agent, wallet.address, owner, good)
    set_wallet(reg, owner, agent, wallet.address, good, signature)
    assert to_checksum_address(reg.chain.call(reg.identity, "getAgentWallet", agent)) == wallet.address
    forged = sign_wallet(bytes(Account.create().key), reg, agent, wallet.address, owner, good)
    with reverts("invalid wallet sig"):
        set_wallet(reg, owner, agent, wallet.address, good, forged)


def test_transfer_clears_the_wallet_and_the_old_signature_no_longer_works(reg):
    alice, bob, approved, _ = reg.accounts
    agent = agent_id_of(register(reg, alice))
    wallet = Account.create()
    good = pending_time(reg.chain) + 200
    signature = sign_wallet(bytes(wallet.key), reg, agent, wallet.address, alice, good)
    set_wallet(reg, alice, agent, wallet.address, good, signature)
    reg.chain.transact(reg.identity, "approve", approved, agent, sender=alice)

    receipt = reg.chain.transact(reg.identity, "transferFrom", alice, bob, agent, sender=approved)
    cleared, transfer = receipt["logs"]
    assert cleared["topics"][0] == "0x" + METADATA_SET.hex()
    assert data_of(cleared, ["string", "bytes"]) == ("agentWallet", b"")
    assert transfer["topics"][0] == "0x" + TRANSFER.hex() and len(transfer["topics"]) == 4
    assert reg.chain.call(reg.identity, "getAgentWallet", agent) == ZERO
    assert owner_of(reg, agent) == bob
    assert reg.chain.call(reg.identity, "getApproved", agent) == ZERO  # approval goes with the transfer
    assert (
        reg.chain.call(reg.identity, "balanceOf", alice),
        reg.chain.call(reg.identity, "balanceOf", bob),
    ) == (0, 1)

    # Replaying the wallet's signature fails: it names the old owner.
    with reverts("invalid wallet sig"):
        set_wallet(reg, bob, agent, wallet.address, good, signature)
    with reverts("Not authorized"):
        set_wallet(reg, alice, agent, wallet.address, good, signature)
    fresh = sign_wallet(bytes(wallet.key), reg, agent, wallet.address, bob, good)
    set_wallet(reg, bob, agent, wallet.address, good, fresh)
    assert to_checksum_address(reg.chain.call(reg.identity, "getAgentWallet", agent)) == wallet.address


# ---------------------------------------------------------------- ERC-721 rules


def test_erc721_transfer_and_approval_rules(reg):
    alice, bob, carol, _ = reg.accounts
    agent = agent_id_of(register(reg, alice))
    with reverts("ERC721: insufficient approval"):
        reg.chain.transact(reg.identity, "transferFrom", alice, bob, agent, sender=bob)
    with reverts("ERC721: invalid receiver"):
        reg.chain.transact(reg.identity, "transferFrom", alice, ZERO, agent, sender=alice)
    with reverts("ERC721: incorrect owner"):
        reg.chain.transact(reg.identity, "transferFrom", bob, carol, agent, sender=alice)
    with reverts("ERC721: invalid approver"):
        reg.chain.transact(reg.identity, "approve", carol, agent, sender=bob)
    with reverts("ERC721: invalid operator"):
        reg.chain.transact(reg.identity, "setApprovalForAll", ZERO, True, sender=alice)
    with reverts("ERC721: invalid owner"):
        reg.chain.call(reg.identity, "balanceOf", ZERO)

    receipt = reg.chain.transact(reg.identity, "setApprovalForAll", bob, True, sender=alice)
    [log] = logs(receipt, APPROVAL_FOR_ALL)
    assert data_of(log, ["bool"]) == (True,)
    assert reg.chain.call(reg.identity, "isApprovedForAll", alice, bob) is True
    receipt = reg.chain.transact(reg.identity, "approve", carol, agent, sender=bob)  # an operator approves
    [log] = logs(receipt, APPROVAL)
    assert topic_address(log["topics"][1]) == alice and topic_address(log["topics"][2]) == carol
    safe = selector("safeTransferFrom(address,address,uint256)") + encode(
        ["address", "address", "uint256"], [alice, carol, agent]
    )
    reg.chain.send_raw(carol, reg.identity.address, safe)
    assert owner_of(reg, agent) == carol

    # safeTransferFrom to a contract asks it; one that refuses stops the transfer.
    refusing = deploy_wallet(reg, carol, accept=False)
    safe_data = selector("safeTransferFrom(address,address,uint256,bytes)") + encode(
        ["address", "address", "uint256", "bytes"], [carol, refusing.address, agent, b"hi"]
    )
    with reverts("not accepting"):
        reg.chain.send_raw(carol, reg.identity.address, safe_data)
