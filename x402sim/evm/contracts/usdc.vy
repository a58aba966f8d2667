# pragma version 0.4.3
"""
@title Simulated USD Coin
@notice A compact USDC-like ERC-20 token with EIP-3009 transfer authorizations.
        Its external interface, EIP-712 domain, check order and revert strings
        follow Circle's FiatToken v2 for everything the x402 `exact` EVM scheme
        touches, because x402 clients classify failures by matching revert text.
        EIP-2612 `permit` too, with FiatToken v2's checks and strings, for the
        Permit2 paths' gasless approval. Left out on purpose: blacklisting,
        pausing, minter allowances and EIP-1271 contract signatures.
@dev Vyper rejects `from` and `value` as names, so the source says `from_` and
     `value_`; the committed ABI artifact restores USDC's `from` and `value`.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed


event Transfer:
    from_: indexed(address)
    to: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
CANCEL_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)
PERMIT_TYPEHASH: constant(bytes32) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
# secp256k1 order / 2: signatures with a larger `s` are malleable twins (EIP-2).
MAX_LOW_S: constant(bytes32) = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

DECIMALS: constant(uint8) = 6

name: public(String[64])
symbol: public(String[32])
totalSupply: public(uint256)
minter: public(address)

_version: String[16]
_balances: HashMap[address, uint256]
_allowances: HashMap[address, HashMap[address, uint256]]
_authorization_states: HashMap[address, HashMap[bytes32, bool]]
_permit_nonces: HashMap[address, uint256]  # EIP-2612; last, so the older slots stay put

# Name and version are fixed at deployment, so their hashes are too; the chain
# id is read on every call, as FiatToken v2.2 does, so the domain always names
# the chain the code runs on.
_NAME_HASH: immutable(bytes32)
_VERSION_HASH: immutable(bytes32)


@deploy
def __init__(name: String[64], symbol: String[32], version: String[16]):
    self.name = name
    self.symbol = symbol
    self._version = version
    self.minter = msg.sender
    _NAME_HASH = keccak256(name)
    _VERSION_HASH = keccak256(version)


# ---------------------------------------------------------------- ERC-20


@view
@external
def decimals() -> uint8:
    return DECIMALS


@view
@external
def balanceOf(account: address) -> uint256:
    return self._balances[account]


@view
@external
def allowance(owner: address, spender: address) -> uint256:
    return self._allowances[owner][spender]


@external
def transfer(to: address, value_: uint256) -> bool:
    self._transfer(msg.sender, to, value_)
    return True


@external
def transferFrom(from_: address, to: address, value_: uint256) -> bool:
    allowed: uint256 = self._allowances[from_][msg.sender]
    assert value_ <= allowed, "ERC20: transfer amount exceeds allowance"
    self._transfer(from_, to, value_)
    self._allowances[from_][msg.sender] = allowed - value_
    return True


@external
def approve(spender: address, value_: uint256) -> bool:
    self._approve(msg.sender, spender, value_)
    return True


@external
def mint(to: address, amount: uint256) -> bool:
    assert msg.sender == self.minter, "FiatToken: caller is not a minter"
    assert to != empty(address), "FiatToken: mint to the zero address"
    assert amount > 0, "FiatToken: mint amount not greater than 0"
    self.totalSupply += amount
    self._balances[to] += amount
    log Transfer(from_=empty(address), to=to, value=amount)
    return True


@internal
def _approve(owner: address, spender: address, value_: uint256):
    assert spender != empty(address), "ERC20: approve to the zero address"
    self._allowances[owner][spender] = value_
    log Approval(owner=owner, spender=spender, value=value_)


@internal
def _transfer(from_: address, to: address, value_: uint256):
    assert from_ != empty(address), "ERC20: transfer from the zero address"
    assert to != empty(address), "ERC20: transfer to the zero address"
    balance: uint256 = self._balances[from_]
    assert value_ <= balance, "ERC20: transfer amount exceeds balance"
    self._balances[from_] = balance - value_
    self._balances[to] += value_
    log Transfer(from_=from_, to=to, value=value_)


# ---------------------------------------------------------------- EIP-712


@view
@external
def version() -> String[16]:
    return self._version


@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    return self._domain_separator()


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(
        abi_encode(EIP712_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, chain.id, self)
    )


@view
@internal
def _recover(struct_hash: bytes32, v: uint8, r: bytes32, s: bytes32) -> address:
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))
    assert convert(s, uint256) <= convert(MAX_LOW_S, uint256), "ECRecover: invalid signature 's' value"
    assert v == 27 or v == 28, "ECRecover: invalid signature 'v' value"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "ECRecover: invalid signature"
    return signer


# ---------------------------------------------------------------- EIP-3009


@view
@external
def authorizationState(authorizer: address, nonce: bytes32) -> bool:
    return self._authorization_states[authorizer][nonce]


@external
def transferWithAuthorization(
    from_: address,
    to: address,
    value_: uint256,
    validAfter: uint256,
    validBefore: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    self._require_valid_authorization(from_, nonce, validAfter, validBefore)
    struct_hash: bytes32 = keccak256(
        abi_encode(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from_, to, value_, validAfter, validBefore, nonce
        )
    )
    assert self._recover(struct_hash, v, r, s) == from_, "FiatTokenV2: invalid signature"
    self._mark_used(from_, nonce)
    self._transfer(from_, to, value_)


@external
def receiveWithAuthorization(
    from_: address,
    to: address,
    value_: uint256,
    validAfter: uint256,
    validBefore: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    # Stops a front-runner from submitting the payee's authorization elsewhere.
    assert to == msg.sender, "FiatTokenV2: caller must be the payee"
    self._require_valid_authorization(from_, nonce, validAfter, validBefore)
    struct_hash: bytes32 = keccak256(
        abi_encode(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from_, to, value_, validAfter, validBefore, nonce
        )
    )
    assert self._recover(struct_hash, v, r, s) == from_, "FiatTokenV2: invalid signature"
    self._mark_used(from_, nonce)
    self._transfer(from_, to, value_)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    self._require_unused_authorization(authorizer, nonce)
    struct_hash: bytes32 = keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    assert self._recover(struct_hash, v, r, s) == authorizer, "FiatTokenV2: invalid signature"
    self._authorization_states[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@view
@internal
def _require_unused_authorization(authorizer: address, nonce: bytes32):
    assert not self._authorization_states[authorizer][nonce], (
        "FiatTokenV2: authorization is used or canceled"
    )


@view
@internal
def _require_valid_authorization(
    authorizer: address, nonce: bytes32, validAfter: uint256, validBefore: uint256
):
    assert block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid"
    assert block.timestamp < validBefore, "FiatTokenV2: authorization is expired"
    self._require_unused_authorization(authorizer, nonce)


@internal
def _mark_used(authorizer: address, nonce: bytes32):
    self._authorization_states[authorizer][nonce] = True
    log AuthorizationUsed(authorizer=authorizer, nonce=nonce)


# ---------------------------------------------------------------- EIP-2612


@view
@external
def nonces(owner: address) -> uint256:
    return self._permit_nonces[owner]


@external
def permit(
    owner: address,
    spender: address,
    value_: uint256,
    deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    # FiatToken v2's order and strings; the signature goes through the same recovery (and its
    # ECRecover checks) as the EIP-3009 functions.
    assert deadline >= block.timestamp, "FiatTokenV2: permit is expired"
    nonce: uint256 = self._permit_nonces[owner]
    struct_hash: bytes32 = keccak256(abi_encode(PERMIT_TYPEHASH, owner, spender, value_, nonce, deadline))
    assert self._recover(struct_hash, v, r, s) == owner, "EIP2612: invalid signature"
    self._permit_nonces[owner] = nonce + 1
    self._approve(owner, spender, value_)
