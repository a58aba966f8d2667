"""ERC-8004 (Trustless Agents) from Python: calldata, signatures and reads for the two registries.

The embedded chain carries the identity and reputation registries from genesis (``LocalChain``
puts them at ``IDENTITY_REGISTRY_ADDRESS`` and ``REPUTATION_REGISTRY_ADDRESS``, the ERC-8004
team's mainnet addresses). This module speaks to them: ``*_calldata`` functions build calldata
and are pure; the others take a chain object with ``transact(key, to, data, gas=...)``,
``mine()``, ``call(to, data)`` and ``receipt(tx_hash)`` (``LocalChain``), plus ``chain_id`` and
``now`` where a signature needs them. The registries are found at the chain's
``identity_registry`` / ``reputation_registry`` attributes when it has them, else at the
constants above.

Rules:

* A write that is refused raises ``ChainError`` with the contract's revert text (a transaction
  mined but reverted, or a read that reverted). Arguments that could never be encoded, or that
  exceed the contracts' bounds (``MAX_*`` below), raise ``ValueError`` naming the argument, before
  anything is sent.
* Gas is declared from the size of what a call stores, so large URIs and metadata fit.
* Addresses come out checksummed; agent ids and feedback indexes are ints; values stay the
  contract's fixed-point integers (``Summary.mean`` gives the float).

ERC-8004 here is the Draft text of January 2026 (ethereum/ERCs ``ERCS/erc-8004.md`` as last
changed on 2026-01-25), with the erc-8004 team's reference contracts (erc-8004/erc-8004-contracts)
where the text is silent: agent ids count from 0, summaries take the most frequent decimals. The
Validation Registry is not implemented (its text has not settled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi import decode, encode

from ..errors import ChainError
from .chain import CallResult, Receipt
from .contracts import IDENTITY_REGISTRY_ADDRESS, REPUTATION_REGISTRY_ADDRESS
from .eip712 import address_of_key, canonical, checksum, domain_separator, sign_digest
from .hashing import keccak

# The contracts' bounds (calldata beyond them reverts; checked here first, with a clear message).
MAX_URI_BYTES = 8192
MAX_METADATA_KEY_BYTES = 128
MAX_METADATA_VALUE_BYTES = 4096
MAX_METADATA_ENTRIES = 16
MAX_TAG_BYTES = 64
MAX_ENDPOINT_BYTES = 2048
MAX_SIGNATURE_BYTES = 2048
MAX_CLIENTS = 4096
MAX_VALUE_DECIMALS = 18
MAX_ABS_VALUE = 10**38
MAX_DEADLINE_DELAY = 300  # seconds a wallet signature's deadline may lie ahead of the block

AGENT_WALLET_KEY = "agentWallet"
DOMAIN_NAME = "ERC8004IdentityRegistry"
DOMAIN_VERSION = "1"
AGENT_WALLET_SET_TYPEHASH = keccak(
    b"AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
)

REGISTERED_TOPIC = keccak(b"Registered(uint256,string,address)")
METADATA_SET_TOPIC = keccak(b"MetadataSet(uint256,string,string,bytes)")
URI_UPDATED_TOPIC = keccak(b"URIUpdated(uint256,string,address)")
NEW_FEEDBACK_TOPIC = keccak(
    b"NewFeedback(uint256,address,uint64,int128,uint8,string,string,string,string,string,bytes32)"
)
FEEDBACK_REVOKED_TOPIC = keccak(b"FeedbackRevoked(uint256,address,uint64)")
RESPONSE_APPENDED_TOPIC = keccak(b"ResponseAppended(uint256,address,uint64,address,string,bytes32)")

_SSTORE_WORD_GAS = 25_000  # a fresh storage word (22,100) plus its calldata, log and copies


class RegistryChain(Protocol):
    """What the functions here need of a chain (``LocalChain``, ``RpcChain``, the ledger)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def now(self) -> int: ...

    def transact(
        self, key: bytes, to: str | None, data: bytes, *, value: int = 0, gas: int = 500_000
    ) -> bytes: ...

    def mine(self) -> object: ...

    def call(self, to: str, data: bytes) -> CallResult: ...

    def receipt(self, tx_hash: bytes) -> Receipt | None: ...


@dataclass(frozen=True)
class Summary:
    """``getSummary``: ``count`` entries whose mean is ``value`` / 10**``decimals``."""

    count: int
    value: int
    decimals: int

    @property
    def mean(self) -> float:
        scale: int = 10**self.decimals
        return self.value / scale


@dataclass(frozen=True)
class Feedback:
    """One stored feedback entry (``index`` counts from 1 per agent and client)."""

    client: str
    index: int
    value: int
    decimals: int
    tag1: str
    tag2: str
    revoked: bool

    @property
    def number(self) -> float:
        """``value`` as a float (``value`` / 10**``decimals``)."""
        scale: int = 10**self.decimals
        return self.value / scale


# -- calldata ---------------------------------------------------------------------------------------


def _calldata(signature: str, types: list[str], args: Sequence[object]) -> bytes:
    return keccak(signature.encode())[:4] + (encode(types, args) if types else b"")


def register_calldata(agent_uri: str = "", metadata: dict[str, bytes] | None = None) -> bytes:
    """``register()``, ``register(string)`` or ``register(string,(string,bytes)[])``: the shortest
    form that carries what is given."""
    _check_text("agent_uri", agent_uri, MAX_URI_BYTES)
    entries = _metadata_entries(metadata)
    if entries:
        return _calldata(
            "register(string,(string,bytes)[])", ["string", "(string,bytes)[]"], [agent_uri, entries]
        )
    if agent_uri:
        return _calldata("register(string)", ["string"], [agent_uri])
    return _calldata("register()", [], [])


def set_agent_uri_calldata(agent_id: int, uri: str) -> bytes:
    _check_uint("agent_id", agent_id, 256)
    _check_text("uri", uri, MAX_URI_BYTES)
    return _calldata("setAgentURI(uint256,string)", ["uint256", "string"], [agent_id, uri])


def set_metadata_calldata(agent_id: int, key: str, value: bytes) -> bytes:
    _check_uint("agent_id", agent_id, 256)
    [(key, value)] = _metadata_entries({key: value})
    return _calldata(
        "setMetadata(uint256,string,bytes)", ["uint256", "string", "bytes"], [agent_id, key, value]
    )


def set_agent_wallet_calldata(agent_id: int, new_wallet: str, deadline: int, signature: bytes) -> bytes:
    _check_uint("agent_id", agent_id, 256)
    _check_uint("deadline", deadline, 256)
    if not isinstance(signature, bytes) or len(signature) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"signature must be at most {MAX_SIGNATURE_BYTES} bytes, got {signature!r:.80}")
    return _calldata(
        "setAgentWallet(uint256,address,uint256,bytes)",
        ["uint256", "address", "uint256", "bytes"],
        [agent_id, checksum(new_wallet), deadline, signature],
    )


def transfer_calldata(owner: str, to: str, agent_id: int) -> bytes:
    """ERC-721 ``transferFrom(owner, to, agentId)``."""
    _check_uint("agent_id", agent_id, 256)
    return _calldata(
        "transferFrom(address,address,uint256)",
        ["address", "address", "uint256"],
        [checksum(owner), checksum(to), agent_id],
    )


def give_feedback_calldata(
    agent_id: int,
    value: int,
    value_decimals: int = 0,
    tag1: str = "",
    tag2: str = "",
    endpoint: str = "",
    feedback_uri: str = "",
    feedback_hash: bytes = b"\0" * 32,
) -> bytes:
    """``giveFeedback``. Values outside what the contract accepts (decimals above 18, |value| above
    1e38) are encoded all the same, so a test can watch the contract refuse them; values that do
    not fit the ABI types raise ``ValueError``."""
    _check_uint("agent_id", agent_id, 256)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**127) <= value < 2**127:
        raise ValueError(f"value must be an int128, got {value!r}")
    _check_uint("value_decimals", value_decimals, 8)
    _check_text("tag1", tag1, MAX_TAG_BYTES)
    _check_text("tag2", tag2, MAX_TAG_BYTES)
    _check_text("endpoint", endpoint, MAX_ENDPOINT_BYTES)
    _check_text("feedback_uri", feedback_uri, MAX_URI_BYTES)
    _check_word("feedback_hash", feedback_hash)
    return _calldata(
        "giveFeedback(uint256,int128,uint8,string,string,string,string,bytes32)",
        ["uint256", "int128", "uint8", "string", "string", "string", "string", "bytes32"],
        [agent_id, value, value_decimals, tag1, tag2, endpoint, feedback_uri, feedback_hash],
    )


def revoke_feedback_calldata(agent_id: int, feedback_index: int) -> bytes:
    _check_uint("agent_id", agent_id, 256)
    _check_uint("feedback_index", feedback_index, 64)
    return _calldata("revokeFeedback(uint256,uint64)", ["uint256", "uint64"], [agent_id, feedback_index])


def append_response_calldata(
    agent_id: int, client: str, feedback_index: int, response_uri: str, response_hash: bytes = b"\0" * 32
) -> bytes:
    _check_uint("agent_id", agent_id, 256)
    _check_uint("feedback_index", feedback_index, 64)
    _check_text("response_uri", response_uri, MAX_URI_BYTES)
    _check_word("response_hash", response_hash)
    return _calldata(
        "appendResponse(uint256,address,uint64,string,bytes32)",
        ["uint256", "address", "uint64", "string", "bytes32"],
        [agent_id, checksum(client), feedback_index, response_uri, response_hash],
    )


# -- identity: writes ---------------------------------------------------------------------------------


def register(
    chain: RegistryChain, owner_key: bytes, agent_uri: str = "", metadata: dict[str, bytes] | None = None
) -> int:
    """Register a new agent owned by ``owner_key``'s address; mines, and returns its agentId (read
    from the ``Registered`` event). Its ``agentWallet`` starts as the owner."""
    data = register_calldata(agent_uri, metadata)
    stored = _words(agent_uri) + sum(_words(k) + _words(v) + 2 for k, v in (metadata or {}).items())
    receipt = _send(chain, owner_key, identity_registry_of(chain), data, 300_000 + _SSTORE_WORD_GAS * stored)
    for log in receipt.logs:
        if (
            log.topics
            and log.topics[0] == REGISTERED_TOPIC
            and checksum(log.address) == identity_registry_of(chain)
        ):
            return int.from_bytes(log.topics[1], "big")
    raise ChainError("register mined without a Registered event")


def set_agent_uri(chain: RegistryChain, owner_key: bytes, agent_id: int, uri: str) -> None:
    data = set_agent_uri_calldata(agent_id, uri)
    _send(chain, owner_key, identity_registry_of(chain), data, 150_000 + _SSTORE_WORD_GAS * _words(uri))


def set_metadata(chain: RegistryChain, owner_key: bytes, agent_id: int, key: str, value: bytes) -> None:
    data = set_metadata_calldata(agent_id, key, value)
    gas = 150_000 + _SSTORE_WORD_GAS * (_words(value) + 1)
    _send(chain, owner_key, identity_registry_of(chain), data, gas)


def sign_agent_wallet(
    wallet_key: bytes,
    agent_id: int,
    new_wallet: str,
    owner: str,
    deadline: int,
    *,
    chain_id: int,
    registry: str,
) -> bytes:
    """The new wallet's 65-byte EIP-712 signature (r || s || v) of ``AgentWalletSet(agentId,
    newWallet, owner, deadline)`` in the identity registry's domain (``ERC8004IdentityRegistry``,
    version ``1``, ``chain_id``, ``registry``)."""
    _check_uint("agent_id", agent_id, 256)
    _check_uint("deadline", deadline, 256)
    struct_hash = keccak(
        AGENT_WALLET_SET_TYPEHASH
        + agent_id.to_bytes(32, "big")
        + canonical(new_wallet).rjust(32, b"\0")
        + canonical(owner).rjust(32, b"\0")
        + deadline.to_bytes(32, "big")
    )
    separator = domain_separator(DOMAIN_NAME, DOMAIN_VERSION, chain_id, checksum(registry))
    return sign_digest(wallet_key, keccak(b"\x19\x01" + separator + struct_hash))


def set_agent_wallet(
    chain: RegistryChain, owner_key: bytes, agent_id: int, wallet_key: bytes, deadline: int | None = None
) -> None:
    """Make ``wallet_key``'s address the agent's ``agentWallet``: the wallet signs, ``owner_key`` (the
    owner or someone allowed to act for it) sends. ``deadline`` defaults to ``chain.now + 60``."""
    owner = owner_of(chain, agent_id)
    if owner is None:
        raise ChainError(f"agent {agent_id} does not exist")
    wallet = address_of_key(wallet_key)
    deadline = chain.now + 60 if deadline is None else deadline
    registry = identity_registry_of(chain)
    signature = sign_agent_wallet(
        wallet_key, agent_id, wallet, owner, deadline, chain_id=chain.chain_id, registry=registry
    )
    _send(
        chain, owner_key, registry, set_agent_wallet_calldata(agent_id, wallet, deadline, signature), 200_000
    )


def unset_agent_wallet(chain: RegistryChain, owner_key: bytes, agent_id: int) -> None:
    _check_uint("agent_id", agent_id, 256)
    data = _calldata("unsetAgentWallet(uint256)", ["uint256"], [agent_id])
    _send(chain, owner_key, identity_registry_of(chain), data, 100_000)


def transfer_agent(chain: RegistryChain, owner_key: bytes, agent_id: int, to: str) -> None:
    """Transfer the agent (its ERC-721 token) to ``to``; this clears its ``agentWallet``."""
    owner = owner_of(chain, agent_id)
    if owner is None:
        raise ChainError(f"agent {agent_id} does not exist")
    # `from` is the owner even when an operator or approved address sends.
    _send(chain, owner_key, identity_registry_of(chain), transfer_calldata(owner, to, agent_id), 150_000)


def set_operator(chain: RegistryChain, owner_key: bytes, operator: str, approved: bool = True) -> None:
    """ERC-721 ``setApprovalForAll``: ``operator`` may then act for all of the owner's agents."""
    data = _calldata("setApprovalForAll(address,bool)", ["address", "bool"], [checksum(operator), approved])
    _send(chain, owner_key, identity_registry_of(chain), data, 100_000)


# -- identity: reads ----------------------------------------------------------------------------------


def owner_of(chain: RegistryChain, agent_id: int) -> str | None:
    """The agent's owner; None when no such agent exists."""
    _check_uint("agent_id", agent_id, 256)
    result = chain.call(identity_registry_of(chain), _calldata("ownerOf(uint256)", ["uint256"], [agent_id]))
    if not result.success:
        return None
    return checksum(decode(["address"], result.output)[0])


def agent_wallet(chain: RegistryChain, agent_id: int) -> str | None:
    """The agent's ``agentWallet``; None when it is unset (cleared by a transfer, say) or the agent
    does not exist."""
    _check_uint("agent_id", agent_id, 256)
    [wallet] = _read(chain, identity_registry_of(chain), "getAgentWallet(uint256)", [agent_id], ["address"])
    wallet = checksum(wallet)
    return None if int(wallet, 16) == 0 else wallet


def agent_uri(chain: RegistryChain, agent_id: int) -> str:
    """The agent's URI (its ERC-721 ``tokenURI``; "" until one is set). ``ChainError`` when the agent
    does not exist."""
    _check_uint("agent_id", agent_id, 256)
    uri: str
    [uri] = _read(chain, identity_registry_of(chain), "tokenURI(uint256)", [agent_id], ["string"])
    return uri


def get_metadata(chain: RegistryChain, agent_id: int, key: str) -> bytes:
    """The agent's on-chain metadata value under ``key`` (b"" when unset). ``agentWallet`` reads as the
    wallet's 20 bytes."""
    _check_uint("agent_id", agent_id, 256)
    _check_text("key", key, MAX_METADATA_KEY_BYTES)
    value: bytes
    [value] = _read(
        chain, identity_registry_of(chain), "getMetadata(uint256,string)", [agent_id, key], ["bytes"]
    )
    return value


# -- reputation: writes -------------------------------------------------------------------------------


def give_feedback(
    chain: RegistryChain,
    client_key: bytes,
    agent_id: int,
    value: int,
    value_decimals: int = 0,
    tag1: str = "",
    tag2: str = "",
    endpoint: str = "",
    feedback_uri: str = "",
    feedback_hash: bytes = b"\0" * 32,
    *,
    mine: bool = True,
) -> bytes:
    """Send ``giveFeedback`` from ``client_key``; returns the transaction hash. With ``mine`` (the
    default) the block is mined and a refusal raises ``ChainError``; without, the transaction waits
    in the pool and its receipt is the caller's to read."""
    data = give_feedback_calldata(
        agent_id, value, value_decimals, tag1, tag2, endpoint, feedback_uri, feedback_hash
    )
    gas = (
        400_000
        + _SSTORE_WORD_GAS * (_words(tag1) + _words(tag2))
        + 2_000 * (_words(endpoint) + _words(feedback_uri))
    )
    return _submit(chain, client_key, reputation_registry_of(chain), data, gas, mine)


def revoke_feedback(
    chain: RegistryChain, client_key: bytes, agent_id: int, feedback_index: int, *, mine: bool = True
) -> bytes:
    """Revoke the caller's feedback entry ``feedback_index`` (from 1); returns the transaction hash."""
    data = revoke_feedback_calldata(agent_id, feedback_index)
    return _submit(chain, client_key, reputation_registry_of(chain), data, 100_000, mine)


def append_response(
    chain: RegistryChain,
    responder_key: bytes,
    agent_id: int,
    client: str,
    feedback_index: int,
    response_uri: str,
    response_hash: bytes = b"\0" * 32,
    *,
    mine: bool = True,
) -> bytes:
    """Append a response (anyone may) to ``client``'s entry ``feedback_index``; returns the hash."""
    data = append_response_calldata(agent_id, client, feedback_index, response_uri, response_hash)
    gas = 250_000 + 2_000 * _words(response_uri)
    return _submit(chain, responder_key, reputation_registry_of(chain), data, gas, mine)


# -- reputation: reads --------------------------------------------------------------------------------


def get_clients(chain: RegistryChain, agent_id: int) -> list[str]:
    """Every address that gave the agent feedback, in order of its first feedback."""
    _check_uint("agent_id", agent_id, 256)
    [clients] = _read(chain, reputation_registry_of(chain), "getClients(uint256)", [agent_id], ["address[]"])
    return [checksum(c) for c in clients]


def last_index(chain: RegistryChain, agent_id: int, client: str) -> int:
    """How many feedback entries ``client`` has given the agent (the last index; 0 for none)."""
    _check_uint("agent_id", agent_id, 256)
    index: int
    [index] = _read(
        chain,
        reputation_registry_of(chain),
        "getLastIndex(uint256,address)",
        [agent_id, checksum(client)],
        ["uint64"],
    )
    return index


def read_feedback(chain: RegistryChain, agent_id: int, client: str, feedback_index: int) -> Feedback:
    """One entry; ``ChainError`` when it does not exist."""
    _check_uint("agent_id", agent_id, 256)
    _check_uint("feedback_index", feedback_index, 64)
    value, decimals, tag1, tag2, revoked = _read(
        chain,
        reputation_registry_of(chain),
        "readFeedback(uint256,address,uint64)",
        [agent_id, checksum(client), feedback_index],
        ["int128", "uint8", "string", "string", "bool"],
    )
    return Feedback(checksum(client), feedback_index, value, decimals, tag1, tag2, revoked)


def get_summary(
    chain: RegistryChain, agent_id: int, clients: list[str] | None = None, tag1: str = "", tag2: str = ""
) -> Summary:
    """``getSummary`` over ``clients`` (the ERC requires a non-empty list: None means every client
    the registry lists, read first with ``getClients``; no clients at all is an empty summary)."""
    _check_uint("agent_id", agent_id, 256)
    _check_text("tag1", tag1, MAX_TAG_BYTES)
    _check_text("tag2", tag2, MAX_TAG_BYTES)
    addresses = get_clients(chain, agent_id) if clients is None else _addresses(clients)
    if not addresses:
        return Summary(0, 0, 0)
    count, value, decimals = _read(
        chain,
        reputation_registry_of(chain),
        "getSummary(uint256,address[],string,string)",
        [agent_id, addresses, tag1, tag2],
        ["uint64", "int128", "uint8"],
    )
    return Summary(count, value, decimals)


def read_all_feedback(
    chain: RegistryChain,
    agent_id: int,
    clients: list[str] | None = None,
    tag1: str = "",
    tag2: str = "",
    include_revoked: bool = False,
) -> list[Feedback]:
    """``readAllFeedback``: the entries of ``clients`` (None or empty: every client) that match the
    non-empty tags, revoked ones only with ``include_revoked``; by client, then index."""
    _check_uint("agent_id", agent_id, 256)
    _check_text("tag1", tag1, MAX_TAG_BYTES)
    _check_text("tag2", tag2, MAX_TAG_BYTES)
    rows = _read(
        chain,
        reputation_registry_of(chain),
        "readAllFeedback(uint256,address[],string,string,bool)",
        [agent_id, _addresses(clients or []), tag1, tag2, bool(include_revoked)],
        ["address[]", "uint64[]", "int128[]", "uint8[]", "string[]", "string[]", "bool[]"],
    )
    return [
        Feedback(checksum(c), index, value, decimals, t1, t2, revoked)
        for c, index, value, decimals, t1, t2, revoked in zip(*rows, strict=True)
    ]


def response_count(
    chain: RegistryChain,
    agent_id: int,
    client: str | None = None,
    feedback_index: int = 0,
    responders: list[str] | None = None,
) -> int:
    """``getResponseCount``: responses to the agent's feedback, narrowed to ``client`` (None: all),
    its entry ``feedback_index`` (0: all) and ``responders`` (None or empty: anyone)."""
    _check_uint("agent_id", agent_id, 256)
    _check_uint("feedback_index", feedback_index, 64)
    count: int
    [count] = _read(
        chain,
        reputation_registry_of(chain),
        "getResponseCount(uint256,address,uint64,address[])",
        [agent_id, checksum(client or "0x" + "00" * 20), feedback_index, _addresses(responders or [])],
        ["uint64"],
    )
    return count


# -- plumbing -----------------------------------------------------------------------------------------


def identity_registry_of(chain: RegistryChain) -> str:
    """Where ``chain`` keeps the identity registry (its ``identity_registry``, else the constant)."""
    return checksum(getattr(chain, "identity_registry", None) or IDENTITY_REGISTRY_ADDRESS)


def reputation_registry_of(chain: RegistryChain) -> str:
    return checksum(getattr(chain, "reputation_registry", None) or REPUTATION_REGISTRY_ADDRESS)


def _send(chain: RegistryChain, key: bytes, to: str, data: bytes, gas: int) -> Receipt:
    """Send, mine, and return the receipt; ``ChainError`` with the revert text when it failed."""
    tx_hash = chain.transact(key, to, data, gas=gas)
    chain.mine()
    return _mined_receipt(chain, tx_hash)


def _submit(chain: RegistryChain, key: bytes, to: str, data: bytes, gas: int, mine: bool) -> bytes:
    tx_hash = chain.transact(key, to, data, gas=gas)
    if mine:
        chain.mine()
        _mined_receipt(chain, tx_hash)
    return tx_hash


def _mined_receipt(chain: RegistryChain, tx_hash: bytes) -> Receipt:
    receipt = chain.receipt(tx_hash)
    if receipt is None:
        raise ChainError(f"transaction 0x{tx_hash.hex()} was not mined")
    if not receipt.success:
        raise ChainError(receipt.revert_reason or "reverted")
    return receipt


def _read(
    chain: RegistryChain, to: str, signature: str, args: Sequence[object], output_types: list[str]
) -> tuple[Any, ...]:
    types = signature[signature.index("(") + 1 : -1]
    result = chain.call(to, _calldata(signature, _split_types(types), args))
    if not result.success:
        raise ChainError(f"{signature.split('(')[0]} reverted: {result.revert_reason}")
    return decode(output_types, result.output)


def _split_types(types: str) -> list[str]:
    return [t for t in types.split(",") if t]  # the read signatures here hold no tuples


def _addresses(addresses: Iterable[str]) -> list[str]:
    if isinstance(addresses, str):
        raise ValueError("clients must be a list of addresses, not one string")
    out = [checksum(a) for a in addresses]
    if len(out) > MAX_CLIENTS:
        raise ValueError(f"at most {MAX_CLIENTS} client addresses may be passed, got {len(out)}")
    return out


def _metadata_entries(metadata: dict[str, bytes] | None) -> list[tuple[str, bytes]]:
    entries = list((metadata or {}).items())
    if len(entries) > MAX_METADATA_ENTRIES:
        raise ValueError(f"metadata holds {len(entries)} entries; at most {MAX_METADATA_ENTRIES} fit")
    for key, value in entries:
        _check_text("metadata key", key, MAX_METADATA_KEY_BYTES)
        if key == AGENT_WALLET_KEY:
            raise ValueError("metadata key 'agentWallet' is reserved: use set_agent_wallet")
        if not isinstance(value, bytes) or len(value) > MAX_METADATA_VALUE_BYTES:
            raise ValueError(
                f"metadata value of {key!r} must be bytes of at most {MAX_METADATA_VALUE_BYTES}, "
                f"got {value!r:.80}"
            )
    return entries


def _check_text(name: str, text: str, limit: int) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {text!r:.80}")
    if len(text.encode()) > limit:
        raise ValueError(f"{name} is {len(text.encode())} bytes in UTF-8; the registry takes at most {limit}")


def _check_uint(name: str, number: int, bits: int) -> None:
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 1 << bits:
        raise ValueError(f"{name} must be a uint{bits}, got {number!r}")


def _check_word(name: str, word: bytes) -> None:
    if not isinstance(word, bytes) or len(word) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {word!r:.80}")


def _words(data: str | bytes) -> int:
    size = len(data.encode() if isinstance(data, str) else data)
    return (size + 31) // 32


__all__ = [
    "AGENT_WALLET_KEY",
    "IDENTITY_REGISTRY_ADDRESS",
    "MAX_ABS_VALUE",
    "MAX_VALUE_DECIMALS",
    "REPUTATION_REGISTRY_ADDRESS",
    "Feedback",
    "Summary",
    "agent_uri",
    "agent_wallet",
    "append_response",
    "append_response_calldata",
    "get_clients",
    "get_metadata",
    "get_summary",
    "give_feedback",
    "give_feedback_calldata",
    "identity_registry_of",
    "last_index",
    "owner_of",
    "read_all_feedback",
    "read_feedback",
    "register",
    "register_calldata",
    "reputation_registry_of",
    "response_count",
    "revoke_feedback",
    "revoke_feedback_calldata",
    "set_agent_uri",
    "set_agent_uri_calldata",
    "set_agent_wallet",
    "set_agent_wallet_calldata",
    "set_metadata",
    "set_metadata_calldata",
    "set_operator",
    "sign_agent_wallet",
    "transfer_agent",
    "transfer_calldata",
    "unset_agent_wallet",
]
