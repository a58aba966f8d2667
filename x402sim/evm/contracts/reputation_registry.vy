# pragma version 0.4.3
"""
@title ERC-8004 Reputation Registry (simulated)
@notice Feedback from clients to agents of one ERC-8004 identity registry.
        Follows the ERC-8004 Draft text of January 2026 (ethereum/ERCs,
        ERCS/erc-8004.md) for its interface, events and rules, and the
        erc-8004 team's reference contracts where the text is silent
        (revert strings, the |value| <= 1e38 bound, how getSummary picks its
        decimals, getResponseCount's filters).
        Rules:
        - feedback is refused for an unknown agent, from the agent's owner or
          from anyone the identity registry says may act for it, and for
          valueDecimals above 18;
        - feedback indexes count from 1 per (agent, client); revoking keeps the
          entry and marks it, so indexes never move;
        - getSummary needs a non-empty client list (the ERC's Sybil guard),
          skips revoked entries, filters on tag1/tag2 when they are not empty,
          averages in 18-decimal fixed point and reports the result in the
          most frequent valueDecimals among the entries counted (the smallest
          such on a tie), rounding toward zero; a result outside int128
          reverts ("summary overflows int128") where the reference wraps;
        - left out on purpose: upgradeability and the contract owner role of
          the reference deployment; the identity registry is fixed at
          deployment (an immutable) instead of by `initialize`.
@dev Bounds: tags 64 bytes, endpoint 2048, feedback and response URIs 8192
     (room for a `data:` URI holding the feedback file), client lists passed
     in 4096 addresses; `getClients` lists at most 4096 clients and
     `readAllFeedback` returns at most 512 entries (both revert beyond, with
     a message; filter by clients or tags). A client may give any number of
     feedback entries and an agent may have any number of clients.
     Deployed code is the runtime code followed by the identity registry's
     address as one 32-byte word (the immutable); no storage is set at
     deployment.
"""


interface IdentityRegistry:
    def isAuthorizedOrOwner(spender: address, agentId: uint256) -> bool: view


event NewFeedback:
    agentId: indexed(uint256)
    clientAddress: indexed(address)
    feedbackIndex: uint64
    value_: int128
    valueDecimals: uint8
    indexedTag1: indexed(String[64])
    tag1: String[64]
    tag2: String[64]
    endpoint: String[2048]
    feedbackURI: String[8192]
    feedbackHash: bytes32


event FeedbackRevoked:
    agentId: indexed(uint256)
    clientAddress: indexed(address)
    feedbackIndex: indexed(uint64)


event ResponseAppended:
    agentId: indexed(uint256)
    clientAddress: indexed(address)
    feedbackIndex: uint64
    responder: indexed(address)
    responseURI: String[8192]
    responseHash: bytes32


MAX_DECIMALS: constant(uint8) = 18
MAX_ABS_VALUE: constant(int128) = 10**38
WAD_DECIMALS: constant(uint256) = 18
MAX_CLIENTS_IN: constant(uint256) = 4096  # addresses a caller may pass as a client filter
MAX_CLIENTS_LISTED: constant(uint256) = 4096  # clients getClients (and an unfiltered read) may list
MAX_READ: constant(uint256) = 512  # entries readAllFeedback may return (~15k gas each)
# Loop bounds only (a loop that would run longer reverts; gas runs out long before either).
MAX_INDEX: constant(uint256) = 2**32
MAX_RESPONDERS: constant(uint256) = 2**32
LOW_128: constant(uint256) = 2**128 - 1
DECIMALS_SHIFT: constant(uint256) = 128
REVOKED_BIT: constant(uint256) = 2**136
EMPTY_HASH: constant(bytes32) = keccak256("")

IDENTITY_REGISTRY: immutable(address)

# An entry's value, decimals and revoked flag share one word (see _pack), so a summary that does
# not filter on tags reads one storage slot per entry; the tags live apart and are read only
# when a filter or a full read needs them.
_entries: HashMap[uint256, HashMap[address, HashMap[uint64, uint256]]]
_tag1s: HashMap[uint256, HashMap[address, HashMap[uint64, String[64]]]]
_tag2s: HashMap[uint256, HashMap[address, HashMap[uint64, String[64]]]]
_lastIndex: HashMap[uint256, HashMap[address, uint64]]
# Clients of an agent in order of their first feedback: an append-only list kept as a mapping
# and a count, so an agent's clients are never capped.
_clients: HashMap[uint256, HashMap[uint256, address]]
_clientCount: HashMap[uint256, uint256]
_isClient: HashMap[uint256, HashMap[address, bool]]
# Responses: who responded to an entry (in order of first response) and how many times each.
_responders: HashMap[uint256, HashMap[address, HashMap[uint64, HashMap[uint256, address]]]]
_responderCount: HashMap[uint256, HashMap[address, HashMap[uint64, uint256]]]
_responseCount: HashMap[uint256, HashMap[address, HashMap[uint64, HashMap[address, uint64]]]]


@deploy
def __init__(identityRegistry_: address):
    assert identityRegistry_ != empty(address), "bad identity"
    IDENTITY_REGISTRY = identityRegistry_


@view
@external
def getIdentityRegistry() -> address:
    return IDENTITY_REGISTRY


# ---------------------------------------------------------------- writes


@external
def giveFeedback(
    agentId: uint256,
    value_: int128,
    valueDecimals: uint8,
    tag1: String[64],
    tag2: String[64],
    endpoint: String[2048],
    feedbackURI: String[8192],
    feedbackHash: bytes32,
):
    assert valueDecimals <= MAX_DECIMALS, "too many decimals"
    assert value_ >= -MAX_ABS_VALUE and value_ <= MAX_ABS_VALUE, "value too large"
    # Reverts (with the identity registry's message) when the agent does not exist.
    assert not staticcall IdentityRegistry(IDENTITY_REGISTRY).isAuthorizedOrOwner(msg.sender, agentId), (
        "Self-feedback not allowed"
    )
    index: uint64 = self._lastIndex[agentId][msg.sender] + 1
    self._lastIndex[agentId][msg.sender] = index
    self._entries[agentId][msg.sender][index] = self._pack(value_, valueDecimals)
    if len(tag1) > 0:
        self._tag1s[agentId][msg.sender][index] = tag1
    if len(tag2) > 0:
        self._tag2s[agentId][msg.sender][index] = tag2
    if not self._isClient[agentId][msg.sender]:
        self._isClient[agentId][msg.sender] = True
        count: uint256 = self._clientCount[agentId]
        self._clients[agentId][count] = msg.sender
        self._clientCount[agentId] = count + 1
    log NewFeedback(
        agentId=agentId,
        clientAddress=msg.sender,
        feedbackIndex=index,
        value_=value_,
        valueDecimals=valueDecimals,
        indexedTag1=tag1,
        tag1=tag1,
        tag2=tag2,
        endpoint=endpoint,
        feedbackURI=feedbackURI,
        feedbackHash=feedbackHash,
    )


@external
def revokeFeedback(agentId: uint256, feedbackIndex: uint64):
    assert feedbackIndex > 0, "index must be > 0"
    assert feedbackIndex <= self._lastIndex[agentId][msg.sender], "index out of bounds"
    packed: uint256 = self._entries[agentId][msg.sender][feedbackIndex]
    assert packed & REVOKED_BIT == 0, "Already revoked"
    self._entries[agentId][msg.sender][feedbackIndex] = packed | REVOKED_BIT
    log FeedbackRevoked(agentId=agentId, clientAddress=msg.sender, feedbackIndex=feedbackIndex)


@external
def appendResponse(
    agentId: uint256,
    clientAddress: address,
    feedbackIndex: uint64,
    responseURI: String[8192],
    responseHash: bytes32,
):
    assert feedbackIndex > 0, "index must be > 0"
    assert len(responseURI) > 0, "Empty URI"
    assert feedbackIndex <= self._lastIndex[agentId][clientAddress], "index out of bounds"
    previous: uint64 = self._responseCount[agentId][clientAddress][feedbackIndex][msg.sender]
    if previous == 0:
        count: uint256 = self._responderCount[agentId][clientAddress][feedbackIndex]
        self._responders[agentId][clientAddress][feedbackIndex][count] = msg.sender
        self._responderCount[agentId][clientAddress][feedbackIndex] = count + 1
    self._responseCount[agentId][clientAddress][feedbackIndex][msg.sender] = previous + 1
    log ResponseAppended(
        agentId=agentId,
        clientAddress=clientAddress,
        feedbackIndex=feedbackIndex,
        responder=msg.sender,
        responseURI=responseURI,
        responseHash=responseHash,
    )


# ---------------------------------------------------------------- reads


@view
@external
def getLastIndex(agentId: uint256, clientAddress: address) -> uint64:
    return self._lastIndex[agentId][clientAddress]


@view
@external
def getClients(agentId: uint256) -> DynArray[address, MAX_CLIENTS_LISTED]:
    return self._client_list(agentId)


@view
@external
def readFeedback(
    agentId: uint256, clientAddress: address, feedbackIndex: uint64
) -> (int128, uint8, String[64], String[64], bool):
    assert feedbackIndex > 0, "index must be > 0"
    assert feedbackIndex <= self._lastIndex[agentId][clientAddress], "index out of bounds"
    packed: uint256 = self._entries[agentId][clientAddress][feedbackIndex]
    return (
        self._value_of(packed),
        self._decimals_of(packed),
        self._tag1s[agentId][clientAddress][feedbackIndex],
        self._tag2s[agentId][clientAddress][feedbackIndex],
        packed & REVOKED_BIT != 0,
    )


@view
@external
def getSummary(
    agentId: uint256, clientAddresses: DynArray[address, MAX_CLIENTS_IN], tag1: String[64], tag2: String[64]
) -> (uint64, int128, uint8):
    """
    @notice (count, summaryValue, summaryValueDecimals) of the unrevoked
            feedback of `clientAddresses` matching the non-empty tags.
    """
    assert len(clientAddresses) > 0, "clientAddresses required"
    tag1_hash: bytes32 = keccak256(tag1)
    tag2_hash: bytes32 = keccak256(tag2)
    total: int256 = 0
    count: uint64 = 0
    per_decimals: uint64[19] = empty(uint64[19])
    for client: address in clientAddresses:
        last: uint256 = convert(self._lastIndex[agentId][client], uint256)
        for i: uint256 in range(1, last + 1, bound=MAX_INDEX):
            index: uint64 = convert(i, uint64)
            packed: uint256 = self._entries[agentId][client][index]
            if not self._matches(agentId, client, index, packed, tag1_hash, tag2_hash, False):
                continue
            decimals: uint256 = convert(self._decimals_of(packed), uint256)
            value_: int256 = convert(self._value_of(packed), int256)
            total += value_ * 10 ** convert(WAD_DECIMALS - decimals, int256)
            per_decimals[decimals] += 1
            count += 1
    if count == 0:
        return 0, 0, 0
    mode: uint256 = 0
    for d: uint256 in range(19):
        if per_decimals[d] > per_decimals[mode]:
            mode = d
    # Vyper's signed `//` rounds toward zero, as Solidity's `/` does.
    mean_wad: int256 = total // convert(count, int256)
    mean: int256 = mean_wad // 10 ** convert(WAD_DECIMALS - mode, int256)
    assert mean >= convert(min_value(int128), int256) and mean <= convert(max_value(int128), int256), (
        "summary overflows int128"
    )
    return count, convert(mean, int128), convert(mode, uint8)


@view
@external
def readAllFeedback(
    agentId: uint256,
    clientAddresses: DynArray[address, MAX_CLIENTS_IN],
    tag1: String[64],
    tag2: String[64],
    includeRevoked: bool,
) -> (
    DynArray[address, MAX_READ],
    DynArray[uint64, MAX_READ],
    DynArray[int128, MAX_READ],
    DynArray[uint8, MAX_READ],
    DynArray[String[64], MAX_READ],
    DynArray[String[64], MAX_READ],
    DynArray[bool, MAX_READ],
):
    """
    @notice Every entry of `clientAddresses` (all clients when empty) matching
            the non-empty tags, revoked ones only with `includeRevoked`, as
            parallel arrays (client, index, value, decimals, tag1, tag2, revoked).
    """
    clients: DynArray[address, MAX_CLIENTS_IN] = clientAddresses
    if len(clients) == 0:
        clients = self._client_list(agentId)
    tag1_hash: bytes32 = keccak256(tag1)
    tag2_hash: bytes32 = keccak256(tag2)
    out_clients: DynArray[address, MAX_READ] = []
    out_indexes: DynArray[uint64, MAX_READ] = []
    out_values: DynArray[int128, MAX_READ] = []
    out_decimals: DynArray[uint8, MAX_READ] = []
    out_tag1s: DynArray[String[64], MAX_READ] = []
    out_tag2s: DynArray[String[64], MAX_READ] = []
    out_revoked: DynArray[bool, MAX_READ] = []
    for client: address in clients:
        last: uint256 = convert(self._lastIndex[agentId][client], uint256)
        for i: uint256 in range(1, last + 1, bound=MAX_INDEX):
            index: uint64 = convert(i, uint64)
            packed: uint256 = self._entries[agentId][client][index]
            if not self._matches(agentId, client, index, packed, tag1_hash, tag2_hash, includeRevoked):
                continue
            assert len(out_clients) < MAX_READ, "too many entries: filter by clients or tags"
            out_clients.append(client)
            out_indexes.append(index)
            out_values.append(self._value_of(packed))
            out_decimals.append(self._decimals_of(packed))
            out_tag1s.append(self._tag1s[agentId][client][index])
            out_tag2s.append(self._tag2s[agentId][client][index])
            out_revoked.append(packed & REVOKED_BIT != 0)
    return out_clients, out_indexes, out_values, out_decimals, out_tag1s, out_tag2s, out_revoked


@view
@external
def getResponseCount(
    agentId: uint256, clientAddress: address, feedbackIndex: uint64, responders: DynArray[address, MAX_CLIENTS_IN]
) -> uint64:
    """
    @notice Responses appended to the agent's feedback: all clients when
            `clientAddress` is zero, all of that client's entries when
            `feedbackIndex` is 0, from every responder when `responders` is empty.
    """
    count: uint64 = 0
    if clientAddress == empty(address):
        for c: uint256 in range(self._clientCount[agentId], bound=MAX_INDEX):
            client: address = self._clients[agentId][c]
            last: uint256 = convert(self._lastIndex[agentId][client], uint256)
            for i: uint256 in range(1, last + 1, bound=MAX_INDEX):
                count += self._responses(agentId, client, convert(i, uint64), responders)
    elif feedbackIndex == 0:
        last: uint256 = convert(self._lastIndex[agentId][clientAddress], uint256)
        for i: uint256 in range(1, last + 1, bound=MAX_INDEX):
            count += self._responses(agentId, clientAddress, convert(i, uint64), responders)
    else:
        count = self._responses(agentId, clientAddress, feedbackIndex, responders)
    return count


@view
@internal
def _responses(
    agentId: uint256, client: address, index: uint64, responders: DynArray[address, MAX_CLIENTS_IN]
) -> uint64:
    count: uint64 = 0
    if len(responders) == 0:
        for r: uint256 in range(self._responderCount[agentId][client][index], bound=MAX_RESPONDERS):
            responder: address = self._responders[agentId][client][index][r]
            count += self._responseCount[agentId][client][index][responder]
    else:
        for responder: address in responders:
            count += self._responseCount[agentId][client][index][responder]
    return count


@view
@internal
def _matches(
    agentId: uint256,
    client: address,
    index: uint64,
    packed: uint256,
    tag1_hash: bytes32,
    tag2_hash: bytes32,
    includeRevoked: bool,
) -> bool:
    if packed & REVOKED_BIT != 0 and not includeRevoked:
        return False
    if tag1_hash != EMPTY_HASH and tag1_hash != keccak256(self._tag1s[agentId][client][index]):
        return False
    return tag2_hash == EMPTY_HASH or tag2_hash == keccak256(self._tag2s[agentId][client][index])


@pure
@internal
def _pack(value_: int128, valueDecimals: uint8) -> uint256:
    # Bits 0-127: the value in two's complement; 128-135: its decimals; 136: revoked.
    low: uint256 = convert(convert(value_, bytes32), uint256) & LOW_128
    return low | (convert(valueDecimals, uint256) << DECIMALS_SHIFT)


@pure
@internal
def _value_of(packed: uint256) -> int128:
    low: uint256 = packed & LOW_128
    if low >= 2**127:
        return convert(convert(low, int256) - 2**128, int128)
    return convert(low, int128)


@pure
@internal
def _decimals_of(packed: uint256) -> uint8:
    return convert((packed >> DECIMALS_SHIFT) & 255, uint8)


@view
@internal
def _client_list(agentId: uint256) -> DynArray[address, MAX_CLIENTS_LISTED]:
    count: uint256 = self._clientCount[agentId]
    assert count <= MAX_CLIENTS_LISTED, "too many clients to list: pass a client filter"
    clients: DynArray[address, MAX_CLIENTS_LISTED] = []
    for c: uint256 in range(count, bound=MAX_CLIENTS_LISTED):
        clients.append(self._clients[agentId][c])
    return clients
