# pragma version 0.4.3
"""
@title Simulated Permit2 (signature transfers)
@notice The signature-transfer half of Uniswap's Permit2, the contract the x402
        Permit2 proxies call: single-permit `permitTransferFrom` and
        `permitWitnessTransferFrom`, the unordered nonce bitmap and its
        invalidation, and the "Permit2" EIP-712 domain (no version field).
        Check order and revert data follow Permit2 byte for byte: its custom
        errors are raised as their selector plus ABI arguments with
        `raw_revert`, and a failed token transfer reverts with solmate's
        "TRANSFER_FROM_FAILED" string.
        Left out: the allowance-transfer half (`approve`, `permit`,
        `transferFrom` by allowance, lockdown) and the batch overloads.
@dev Signatures are checked as Permit2 does: for an owner without code, a
     65-byte (r, s, v) or 64-byte EIP-2098 (r, vs) signature whose recovered
     signer must be the owner (no low-s rule); for an owner with code,
     EIP-1271 `isValidSignature`. The domain separator is computed on every
     call (Permit2 caches it and recomputes after a fork), so the contract
     can sit in genesis with no constructor run.
"""


struct TokenPermissions:
    token: address
    amount: uint256


struct PermitTransferFrom:
    permitted: TokenPermissions
    nonce: uint256
    deadline: uint256


struct SignatureTransferDetails:
    to: address
    requestedAmount: uint256


interface IERC1271:
    def isValidSignature(hash: bytes32, signature: Bytes[MAX_SIGNATURE_BYTES]) -> bytes4: view


event UnorderedNonceInvalidation:
    owner: indexed(address)
    word: uint256
    mask: uint256


# Longest signature and witness type string accepted (Permit2 takes any length; longer
# input fails ABI decoding here). Enough for EOA signatures, EIP-1271 smart-wallet
# signatures of moderate size, and the x402 witness type strings.
MAX_SIGNATURE_BYTES: constant(uint256) = 1024
MAX_WITNESS_TYPE_STRING: constant(uint256) = 256

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("Permit2")
TOKEN_PERMISSIONS_TYPEHASH: constant(bytes32) = keccak256("TokenPermissions(address token,uint256 amount)")
PERMIT_TRANSFER_FROM_TYPEHASH: constant(bytes32) = keccak256(
    "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
)
WITNESS_TYPEHASH_STUB: constant(String[100]) = (
    "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,"
)
UPPER_BIT_MASK: constant(uint256) = max_value(uint256) >> 1
ERC1271_MAGIC: constant(bytes4) = 0x1626ba7e

# owner -> word position -> 256 nonce bits (nonce = word << 8 | bit)
nonceBitmap: public(HashMap[address, HashMap[uint256, uint256]])


@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    return self._domain_separator()


@external
def permitTransferFrom(
    permit: PermitTransferFrom,
    transferDetails: SignatureTransferDetails,
    owner: address,
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    data_hash: bytes32 = keccak256(
        abi_encode(
            PERMIT_TRANSFER_FROM_TYPEHASH,
            self._token_permissions_hash(permit.permitted),
            msg.sender,
            permit.nonce,
            permit.deadline,
        )
    )
    self._permit_transfer_from(permit, transferDetails, owner, data_hash, signature)


@external
def permitWitnessTransferFrom(
    permit: PermitTransferFrom,
    transferDetails: SignatureTransferDetails,
    owner: address,
    witness: bytes32,
    witnessTypeString: String[MAX_WITNESS_TYPE_STRING],
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    type_hash: bytes32 = keccak256(concat(WITNESS_TYPEHASH_STUB, witnessTypeString))
    data_hash: bytes32 = keccak256(
        abi_encode(
            type_hash,
            self._token_permissions_hash(permit.permitted),
            msg.sender,
            permit.nonce,
            permit.deadline,
            witness,
        )
    )
    self._permit_transfer_from(permit, transferDetails, owner, data_hash, signature)


@external
def invalidateUnorderedNonces(wordPos: uint256, mask: uint256):
    self.nonceBitmap[msg.sender][wordPos] |= mask
    log UnorderedNonceInvalidation(owner=msg.sender, word=wordPos, mask=mask)


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, chain.id, self))


@pure
@internal
def _token_permissions_hash(permitted: TokenPermissions) -> bytes32:
    return keccak256(abi_encode(TOKEN_PERMISSIONS_TYPEHASH, permitted.token, permitted.amount))


@internal
def _permit_transfer_from(
    permit: PermitTransferFrom,
    details: SignatureTransferDetails,
    owner: address,
    data_hash: bytes32,
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    if block.timestamp > permit.deadline:
        raw_revert(concat(method_id("SignatureExpired(uint256)"), convert(permit.deadline, bytes32)))
    if details.requestedAmount > permit.permitted.amount:
        raw_revert(
            concat(method_id("InvalidAmount(uint256)"), convert(permit.permitted.amount, bytes32))
        )
    self._use_unordered_nonce(owner, permit.nonce)
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domain_separator(), data_hash))
    self._verify(signature, digest, owner)
    self._safe_transfer_from(permit.permitted.token, owner, details.to, details.requestedAmount)


@internal
def _use_unordered_nonce(owner: address, nonce: uint256):
    word: uint256 = nonce >> 8
    bit: uint256 = 1 << (nonce & 255)
    flipped: uint256 = self.nonceBitmap[owner][word] ^ bit
    self.nonceBitmap[owner][word] = flipped
    if flipped & bit == 0:
        raw_revert(method_id("InvalidNonce()"))


@view
@internal
def _verify(signature: Bytes[MAX_SIGNATURE_BYTES], digest: bytes32, claimed: address):
    if claimed.is_contract:
        magic: bytes4 = staticcall IERC1271(claimed).isValidSignature(digest, signature)
        if magic != ERC1271_MAGIC:
            raw_revert(method_id("InvalidContractSignature()"))
        return
    r: bytes32 = empty(bytes32)
    s: bytes32 = empty(bytes32)
    v: uint256 = 0
    if len(signature) == 65:
        r = convert(slice(signature, 0, 32), bytes32)
        s = convert(slice(signature, 32, 32), bytes32)
        v = convert(slice(signature, 64, 1), uint256)
    elif len(signature) == 64:
        # EIP-2098 compact form: the top bit of the second word is v - 27.
        r = convert(slice(signature, 0, 32), bytes32)
        vs: uint256 = convert(slice(signature, 32, 32), uint256)
        s = convert(vs & UPPER_BIT_MASK, bytes32)
        v = (vs >> 255) + 27
    else:
        raw_revert(method_id("InvalidSignatureLength()"))
    signer: address = ecrecover(digest, v, r, s)
    if signer == empty(address):
        raw_revert(method_id("InvalidSignature()"))
    if signer != claimed:
        raw_revert(method_id("InvalidSigner()"))


@internal
def _safe_transfer_from(token: address, owner: address, to: address, amount: uint256):
    # solmate's SafeTransferLib: the call must succeed and return nothing or a word equal to 1;
    # a token without code passes, as there.
    ok: bool = False
    out: Bytes[32] = b""
    ok, out = raw_call(
        token,
        abi_encode(owner, to, amount, method_id=method_id("transferFrom(address,address,uint256)")),
        max_outsize=32,
        revert_on_failure=False,
    )
    if ok and len(out) == 32:
        ok = convert(out, uint256) == 1
    elif ok:
        ok = len(out) == 0
    if not ok:
        raise "TRANSFER_FROM_FAILED"
