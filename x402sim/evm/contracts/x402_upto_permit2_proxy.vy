# pragma version 0.4.3
"""
@title Simulated x402UptoPermit2Proxy
@notice The x402 `upto` scheme's Permit2 spender: the payer signs a
        PermitWitnessTransferFrom for a ceiling, with the witness {to,
        facilitator, validAfter}; only that facilitator may settle, and it picks
        the amount, at most the ceiling. External interface, events, custom
        errors (raised as selector + arguments with `raw_revert`), check order
        and reentrancy guard follow coinbase/x402's x402UptoPermit2Proxy. An
        amount of 0 reverts InvalidAmount() (a facilitator charging nothing sends
        no transaction).
@dev Shares its settlement and EIP-2612 code with x402_exact_permit2_proxy.vy
     (kept textually alike; Vyper has no abstract base contracts). PERMIT2 is a
     constant, the canonical address, rather than a constructor immutable, so
     the contract can sit in genesis.
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


struct EIP2612Permit:
    value: uint256
    deadline: uint256
    r: bytes32
    s: bytes32
    v: uint8


struct Witness:
    to: address
    facilitator: address
    validAfter: uint256


interface ISignatureTransfer:
    def permitWitnessTransferFrom(
        permit: PermitTransferFrom,
        transferDetails: SignatureTransferDetails,
        owner: address,
        witness: bytes32,
        witnessTypeString: String[MAX_WITNESS_TYPE_STRING],
        signature: Bytes[MAX_SIGNATURE_BYTES],
    ): nonpayable


event Settled:
    pass


event SettledWithPermit:
    pass


event EIP2612PermitFailedWithReason:
    token: indexed(address)
    owner: indexed(address)
    reason: String[MAX_REVERT_BYTES]


event EIP2612PermitFailedWithPanic:
    token: indexed(address)
    owner: indexed(address)
    errorCode: uint256


event EIP2612PermitFailedWithData:
    token: indexed(address)
    owner: indexed(address)
    data: Bytes[MAX_REVERT_BYTES]


MAX_SIGNATURE_BYTES: constant(uint256) = 1024
MAX_WITNESS_TYPE_STRING: constant(uint256) = 256
# Revert data of a failed token permit kept for the event (longer data is cut here).
MAX_REVERT_BYTES: constant(uint256) = 512

PERMIT2: public(constant(address)) = 0x000000000022D473030F116dDEE9F6B43aC78BA3
WITNESS_TYPE_STRING: public(constant(String[MAX_WITNESS_TYPE_STRING])) = (
    "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
)
WITNESS_TYPEHASH: public(constant(bytes32)) = keccak256("Witness(address to,address facilitator,uint256 validAfter)")

ERROR_STRING_SELECTOR: constant(bytes4) = 0x08c379a0
PANIC_SELECTOR: constant(bytes4) = 0x4e487b71

_entered: transient(bool)


@external
def settle(
    permit: PermitTransferFrom,
    amount: uint256,
    owner: address,
    witness: Witness,
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    self._enter()
    self._check_caller(permit, amount, witness)
    self._settle(permit, amount, owner, witness.to, witness.validAfter, self._witness_hash(witness), signature)
    log Settled()
    self._entered = False


@external
def settleWithPermit(
    permit2612: EIP2612Permit,
    permit: PermitTransferFrom,
    amount: uint256,
    owner: address,
    witness: Witness,
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    self._enter()
    self._check_caller(permit, amount, witness)
    self._execute_permit(permit.permitted.token, owner, permit2612, permit.permitted.amount)
    self._settle(permit, amount, owner, witness.to, witness.validAfter, self._witness_hash(witness), signature)
    log SettledWithPermit()
    self._entered = False


@view
@internal
def _check_caller(permit: PermitTransferFrom, amount: uint256, witness: Witness):
    if amount > permit.permitted.amount:
        raw_revert(method_id("AmountExceedsPermitted()"))
    if msg.sender != witness.facilitator:
        raw_revert(method_id("UnauthorizedFacilitator()"))


@pure
@internal
def _witness_hash(witness: Witness) -> bytes32:
    return keccak256(abi_encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter))


@internal
def _enter():
    # OpenZeppelin ReentrancyGuard's revert data, on transient storage.
    if self._entered:
        raw_revert(method_id("ReentrancyGuardReentrantCall()"))
    self._entered = True


@internal
def _settle(
    permit: PermitTransferFrom,
    amount: uint256,
    owner: address,
    to: address,
    valid_after: uint256,
    witness_hash: bytes32,
    signature: Bytes[MAX_SIGNATURE_BYTES],
):
    if amount == 0:
        raw_revert(method_id("InvalidAmount()"))
    if owner == empty(address):
        raw_revert(method_id("InvalidOwner()"))
    if to == empty(address):
        raw_revert(method_id("InvalidDestination()"))
    if block.timestamp < valid_after:
        raw_revert(method_id("PaymentTooEarly()"))
    details: SignatureTransferDetails = SignatureTransferDetails(to=to, requestedAmount=amount)
    extcall ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
        permit, details, owner, witness_hash, WITNESS_TYPE_STRING, signature
    )


@internal
def _execute_permit(token: address, owner: address, permit2612: EIP2612Permit, permitted_amount: uint256):
    if permit2612.value != permitted_amount:
        raw_revert(method_id("Permit2612AmountMismatch()"))
    # Solidity's try/catch: a call to an address without code reverts, uncaught.
    assert token.is_contract
    ok: bool = False
    data: Bytes[MAX_REVERT_BYTES] = b""
    ok, data = raw_call(
        token,
        abi_encode(
            owner,
            PERMIT2,
            permit2612.value,
            permit2612.deadline,
            permit2612.v,
            permit2612.r,
            permit2612.s,
            method_id=method_id("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
        ),
        max_outsize=MAX_REVERT_BYTES,
        revert_on_failure=False,
    )
    if ok:
        return
    # catch Error(string) / catch Panic(uint256) / catch (bytes): a well-formed Error or Panic
    # payload is decoded, anything else is logged raw.
    if len(data) >= 68 and convert(slice(data, 0, 4), bytes4) == ERROR_STRING_SELECTOR:
        offset: uint256 = convert(slice(data, 4, 32), uint256)
        size: uint256 = convert(slice(data, 36, 32), uint256)
        if offset == 32 and size <= len(data) - 68:
            reason: String[MAX_REVERT_BYTES] = convert(slice(data, 68, size), String[MAX_REVERT_BYTES])
            log EIP2612PermitFailedWithReason(token=token, owner=owner, reason=reason)
            return
    if len(data) >= 36 and convert(slice(data, 0, 4), bytes4) == PANIC_SELECTOR:
        log EIP2612PermitFailedWithPanic(token=token, owner=owner, errorCode=convert(slice(data, 4, 32), uint256))
        return
    log EIP2612PermitFailedWithData(token=token, owner=owner, data=data)
