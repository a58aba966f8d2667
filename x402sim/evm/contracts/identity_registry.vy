# pragma version 0.4.3
"""
@title ERC-8004 Identity Registry (simulated)
@notice An ERC-721 registry of agents: agentId is the tokenId (assigned
        sequentially from 0), agentURI is the tokenURI. Follows the ERC-8004
        Draft text of January 2026 (ethereum/ERCs, ERCS/erc-8004.md) for its
        interface, events and rules, and the erc-8004 team's reference
        contracts where the text is silent (ids from 0, revert strings,
        event order, isAuthorizedOrOwner).
        Rules:
        - the owner, an operator of the owner (setApprovalForAll) or the
          token's approved address may change the agent (URI, metadata, wallet);
        - `agentWallet` is a reserved metadata key: set to the owner at
          registration, changed only by `setAgentWallet` with an EIP-712
          (or ERC-1271) signature of the new wallet, cleared on transfer;
        - left out on purpose: upgradeability (UUPS proxy) and the contract
          owner role of the reference deployment.
@dev Bounds (calldata longer than these reverts): agentURI 8192 bytes (room
     for a `data:` URI holding the registration file), metadata keys 128
     bytes, metadata values 4096 bytes, 16 metadata entries per `register`,
     signatures 2048 bytes (ERC-1271 wallets may sign with more than 65),
     `safeTransferFrom` data 1024 bytes.
     No constructor and no storage set at deployment: the runtime code alone,
     placed in a genesis state, is a working registry.
"""

from ethereum.ercs import IERC165

implements: IERC165


interface IERC721Receiver:
    def onERC721Received(
        operator: address, from_: address, tokenId: uint256, data: Bytes[1024]
    ) -> bytes4: nonpayable


struct MetadataEntry:
    metadataKey: String[128]
    metadataValue: Bytes[4096]


event Transfer:
    from_: indexed(address)
    to: indexed(address)
    tokenId: indexed(uint256)


event Approval:
    owner: indexed(address)
    approved: indexed(address)
    tokenId: indexed(uint256)


event ApprovalForAll:
    owner: indexed(address)
    operator: indexed(address)
    approved: bool


# ERC-4906: tells NFT apps that the token's metadata (its URI) changed.
event MetadataUpdate:
    _tokenId: uint256


event Registered:
    agentId: indexed(uint256)
    agentURI: String[8192]
    owner: indexed(address)


event MetadataSet:
    agentId: indexed(uint256)
    indexedMetadataKey: indexed(String[128])
    metadataKey: String[128]
    metadataValue: Bytes[4096]


event URIUpdated:
    agentId: indexed(uint256)
    newURI: String[8192]
    updatedBy: indexed(address)


NAME: constant(String[32]) = "AgentIdentity"
SYMBOL: constant(String[8]) = "AGENT"
AGENT_WALLET_KEY: constant(String[11]) = "agentWallet"
MAX_DEADLINE_DELAY: constant(uint256) = 300  # seconds: a wallet signature expires within 5 minutes

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
DOMAIN_NAME: constant(String[32]) = "ERC8004IdentityRegistry"
DOMAIN_VERSION: constant(String[8]) = "1"
AGENT_WALLET_SET_TYPEHASH: constant(bytes32) = keccak256(
    "AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
)
# secp256k1 order / 2: a larger `s` is the malleable twin of a valid signature (EIP-2).
MAX_LOW_S: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
ERC1271_MAGIC: constant(bytes4) = 0x1626ba7e
ERC721_RECEIVED: constant(bytes4) = 0x150b7a02

SUPPORTED_INTERFACES: constant(bytes4[4]) = [
    0x01FFC9A7,  # ERC-165
    0x80AC58CD,  # ERC-721
    0x5B5E139F,  # ERC-721 metadata
    0x49064906,  # ERC-4906
]

_lastId: uint256
_owners: HashMap[uint256, address]
_balances: HashMap[address, uint256]
_tokenApprovals: HashMap[uint256, address]
_operators: HashMap[address, HashMap[address, bool]]
_tokenURIs: HashMap[uint256, String[8192]]
_metadata: HashMap[uint256, HashMap[String[128], Bytes[4096]]]
# The reserved `agentWallet` entry, kept as an address; getMetadata answers it as 20 bytes.
_agentWallets: HashMap[uint256, address]


# ---------------------------------------------------------------- ERC-165 and ERC-721 metadata


@view
@external
def supportsInterface(interfaceId: bytes4) -> bool:
    return interfaceId in SUPPORTED_INTERFACES


@view
@external
def name() -> String[32]:
    return NAME


@view
@external
def symbol() -> String[8]:
    return SYMBOL


@view
@external
def tokenURI(tokenId: uint256) -> String[8192]:
    self._require_owned(tokenId)
    return self._tokenURIs[tokenId]


# ---------------------------------------------------------------- ERC-721


@view
@external
def balanceOf(owner: address) -> uint256:
    assert owner != empty(address), "ERC721: invalid owner"
    return self._balances[owner]


@view
@external
def ownerOf(tokenId: uint256) -> address:
    return self._require_owned(tokenId)


@view
@external
def getApproved(tokenId: uint256) -> address:
    self._require_owned(tokenId)
    return self._tokenApprovals[tokenId]


@view
@external
def isApprovedForAll(owner: address, operator: address) -> bool:
    return self._operators[owner][operator]


@external
def approve(to: address, tokenId: uint256):
    owner: address = self._require_owned(tokenId)
    assert msg.sender == owner or self._operators[owner][msg.sender], "ERC721: invalid approver"
    self._tokenApprovals[tokenId] = to
    log Approval(owner=owner, approved=to, tokenId=tokenId)


@external
def setApprovalForAll(operator: address, approved: bool):
    assert operator != empty(address), "ERC721: invalid operator"
    self._operators[msg.sender][operator] = approved
    log ApprovalForAll(owner=msg.sender, operator=operator, approved=approved)


@external
def transferFrom(from_: address, to: address, tokenId: uint256):
    self._transfer(from_, to, tokenId)


@external
def safeTransferFrom(from_: address, to: address, tokenId: uint256, data: Bytes[1024] = b""):
    self._transfer(from_, to, tokenId)
    self._check_receiver(from_, to, tokenId, data)


@view
@internal
def _require_owned(tokenId: uint256) -> address:
    owner: address = self._owners[tokenId]
    assert owner != empty(address), "ERC721: nonexistent token"
    return owner


@view
@internal
def _is_authorized(owner: address, spender: address, tokenId: uint256) -> bool:
    return spender != empty(address) and (
        spender == owner
        or self._operators[owner][spender]
        or self._tokenApprovals[tokenId] == spender
    )


@view
@internal
def _require_authorized(tokenId: uint256) -> address:
    owner: address = self._require_owned(tokenId)
    assert self._is_authorized(owner, msg.sender, tokenId), "Not authorized"
    return owner


@internal
def _transfer(from_: address, to: address, tokenId: uint256):
    assert to != empty(address), "ERC721: invalid receiver"
    owner: address = self._require_owned(tokenId)
    assert self._is_authorized(owner, msg.sender, tokenId), "ERC721: insufficient approval"
    assert from_ == owner, "ERC721: incorrect owner"
    # The verified wallet belongs to the old owner: the new one must verify one again.
    self._agentWallets[tokenId] = empty(address)
    log MetadataSet(
        agentId=tokenId, indexedMetadataKey=AGENT_WALLET_KEY, metadataKey=AGENT_WALLET_KEY, metadataValue=b""
    )
    self._tokenApprovals[tokenId] = empty(address)
    self._balances[from_] -= 1
    self._balances[to] += 1
    self._owners[tokenId] = to
    log Transfer(from_=from_, to=to, tokenId=tokenId)


@internal
def _check_receiver(from_: address, to: address, tokenId: uint256, data: Bytes[1024]):
    if to.is_contract:
        answer: bytes4 = extcall IERC721Receiver(to).onERC721Received(msg.sender, from_, tokenId, data)
        assert answer == ERC721_RECEIVED, "ERC721: invalid receiver"


# ---------------------------------------------------------------- ERC-8004 registration


@external
def register(agentURI: String[8192] = "", metadata: DynArray[MetadataEntry, 16] = []) -> uint256:
    """
    @notice Mint the next agentId to the caller. The three ERC-8004 forms
            register(), register(string) and register(string,(string,bytes)[])
            are this one function with default arguments.
    """
    agentId: uint256 = self._lastId
    self._lastId = agentId + 1
    self._owners[agentId] = msg.sender
    self._balances[msg.sender] += 1
    log Transfer(from_=empty(address), to=msg.sender, tokenId=agentId)
    if len(agentURI) > 0:
        self._tokenURIs[agentId] = agentURI
        log MetadataUpdate(_tokenId=agentId)
    log Registered(agentId=agentId, agentURI=agentURI, owner=msg.sender)
    self._agentWallets[agentId] = msg.sender
    log MetadataSet(
        agentId=agentId,
        indexedMetadataKey=AGENT_WALLET_KEY,
        metadataKey=AGENT_WALLET_KEY,
        metadataValue=self._address_bytes(msg.sender),
    )
    for entry: MetadataEntry in metadata:
        self._set_metadata(agentId, entry.metadataKey, entry.metadataValue)
    # ERC-721 safe mint: a contract registering must accept the token. Checked last, once the
    # registration is complete, so a receiver that looks at the registry sees all of it.
    self._check_receiver(empty(address), msg.sender, agentId, b"")
    return agentId


@external
def setAgentURI(agentId: uint256, newURI: String[8192]):
    self._require_authorized(agentId)
    self._tokenURIs[agentId] = newURI
    log MetadataUpdate(_tokenId=agentId)
    log URIUpdated(agentId=agentId, newURI=newURI, updatedBy=msg.sender)


@view
@external
def isAuthorizedOrOwner(spender: address, agentId: uint256) -> bool:
    """
    @notice True when `spender` is the agent's owner, an operator of the owner
            or the token's approved address; reverts for an unknown agent.
    """
    owner: address = self._require_owned(agentId)
    return self._is_authorized(owner, spender, agentId)


# ---------------------------------------------------------------- on-chain metadata


@view
@external
def getMetadata(agentId: uint256, metadataKey: String[128]) -> Bytes[4096]:
    if keccak256(metadataKey) == keccak256(AGENT_WALLET_KEY):
        wallet: address = self._agentWallets[agentId]
        if wallet == empty(address):
            return b""
        return self._address_bytes(wallet)
    return self._metadata[agentId][metadataKey]


@external
def setMetadata(agentId: uint256, metadataKey: String[128], metadataValue: Bytes[4096]):
    self._require_authorized(agentId)
    self._set_metadata(agentId, metadataKey, metadataValue)


@internal
def _set_metadata(agentId: uint256, metadataKey: String[128], metadataValue: Bytes[4096]):
    assert keccak256(metadataKey) != keccak256(AGENT_WALLET_KEY), "reserved key"
    self._metadata[agentId][metadataKey] = metadataValue
    log MetadataSet(
        agentId=agentId, indexedMetadataKey=metadataKey, metadataKey=metadataKey, metadataValue=metadataValue
    )


@pure
@internal
def _address_bytes(account: address) -> Bytes[20]:
    # abi.encodePacked(address): the 20 address bytes, no padding.
    return slice(convert(account, bytes32), 12, 20)


# ---------------------------------------------------------------- agent wallet


@view
@external
def getAgentWallet(agentId: uint256) -> address:
    return self._agentWallets[agentId]


@external
def setAgentWallet(agentId: uint256, newWallet: address, deadline: uint256, signature: Bytes[2048]):
    """
    @notice Make `newWallet` the agent's payment wallet. `signature` is the new
            wallet's EIP-712 signature of AgentWalletSet(agentId, newWallet,
            owner, deadline), or an ERC-1271 signature when it is a contract.
    """
    owner: address = self._require_authorized(agentId)
    assert newWallet != empty(address), "bad wallet"
    assert block.timestamp <= deadline, "expired"
    assert deadline <= block.timestamp + MAX_DEADLINE_DELAY, "deadline too far"
    struct_hash: bytes32 = keccak256(abi_encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline))
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))
    assert self._signed_by(newWallet, digest, signature), "invalid wallet sig"
    self._agentWallets[agentId] = newWallet
    log MetadataSet(
        agentId=agentId,
        indexedMetadataKey=AGENT_WALLET_KEY,
        metadataKey=AGENT_WALLET_KEY,
        metadataValue=self._address_bytes(newWallet),
    )


@external
def unsetAgentWallet(agentId: uint256):
    self._require_authorized(agentId)
    self._agentWallets[agentId] = empty(address)
    log MetadataSet(
        agentId=agentId, indexedMetadataKey=AGENT_WALLET_KEY, metadataKey=AGENT_WALLET_KEY, metadataValue=b""
    )


@view
@internal
def _signed_by(signer: address, digest: bytes32, signature: Bytes[2048]) -> bool:
    if len(signature) == 65:
        r: bytes32 = extract32(signature, 0)
        s: bytes32 = extract32(signature, 32)
        v: uint256 = convert(slice(signature, 64, 1), uint256)
        if convert(s, uint256) <= MAX_LOW_S and ecrecover(digest, v, r, s) == signer:
            return True
    if not signer.is_contract:
        return False
    ok: bool = False
    answer: Bytes[32] = b""
    ok, answer = raw_call(
        signer,
        abi_encode(digest, signature, method_id=method_id("isValidSignature(bytes32,bytes)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    return ok and len(answer) == 32 and convert(slice(answer, 0, 4), bytes4) == ERC1271_MAGIC


# ---------------------------------------------------------------- EIP-712


@view
@internal
def _domain_separator() -> bytes32:
    # The chain id is read on every call, so the domain always names the chain the code runs on.
    return keccak256(
        abi_encode(
            EIP712_DOMAIN_TYPEHASH, keccak256(DOMAIN_NAME), keccak256(DOMAIN_VERSION), chain.id, self
        )
    )


@view
@external
def eip712Domain() -> (bytes1, String[32], String[8], uint256, address, bytes32, DynArray[uint256, 1]):
    """
    @notice ERC-5267: the fields of the EIP-712 domain setAgentWallet signatures use.
    """
    return (0x0F, DOMAIN_NAME, DOMAIN_VERSION, chain.id, self, empty(bytes32), [])
