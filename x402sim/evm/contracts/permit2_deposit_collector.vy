# pragma version 0.4.3
"""
@title Simulated Permit2DepositCollector
@notice The batch-settlement contract's Permit2 deposit collector: a Permit2
        `permitWitnessTransferFrom` whose witness is the channel id
        (`DepositWitness(bytes32 channelId)`), straight from the payer to the
        batch-settlement contract, optionally preceded by a best-effort EIP-2612
        `permit` of Permit2 (a failure is logged with one of three events and
        the deposit goes on; a permit value other than the amount reverts with
        `Permit2612AmountMismatch()`). Only the batch-settlement contract may
        call `collect` (`OnlyX402BatchSettlement()`). Interface, events and
        errors follow the x402 Foundation's Permit2DepositCollector.
@dev `collectorData` is abi.encode(nonce, deadline, permit2Signature,
     eip2612PermitData), the last empty or abi.encode(value, deadline, v, r, s).
     The batch-settlement and Permit2 addresses are constants rather than
     constructor immutables, so the contract can sit in genesis.
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


interface ISignatureTransfer:
    def permitWitnessTransferFrom(
        permit: PermitTransferFrom,
        transferDetails: SignatureTransferDetails,
        owner: address,
        witness: bytes32,
        witnessTypeString: String[MAX_WITNESS_TYPE_STRING],
        signature: Bytes[MAX_SIGNATURE_BYTES],
    ): nonpayable


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
MAX_COLLECTOR_DATA: constant(uint256) = 2048
MAX_WITNESS_TYPE_STRING: constant(uint256) = 256
# Revert data of a failed token permit kept for the event (longer data is cut here).
MAX_REVERT_BYTES: constant(uint256) = 512

x402BatchSettlement: public(constant(address)) = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003
PERMIT2: public(constant(address)) = 0x000000000022D473030F116dDEE9F6B43aC78BA3
DEPOSIT_WITNESS_TYPE_STRING: public(constant(String[MAX_WITNESS_TYPE_STRING])) = (
    "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)"
)
DEPOSIT_WITNESS_TYPEHASH: public(constant(bytes32)) = keccak256("DepositWitness(bytes32 channelId)")

ERROR_STRING_SELECTOR: constant(bytes4) = 0x08c379a0
PANIC_SELECTOR: constant(bytes4) = 0x4e487b71


@external
def collect(payer: address, token: address, amount: uint256, channelId: bytes32, collectorData: Bytes[MAX_COLLECTOR_DATA]):
    if msg.sender != x402BatchSettlement:
        raw_revert(method_id("OnlyX402BatchSettlement()"))
    nonce: uint256 = 0
    deadline: uint256 = 0
    signature: Bytes[MAX_SIGNATURE_BYTES] = b""
    eip2612: Bytes[160] = b""
    nonce, deadline, signature, eip2612 = abi_decode(
        collectorData, (uint256, uint256, Bytes[MAX_SIGNATURE_BYTES], Bytes[160])
    )
    if len(eip2612) > 0:
        self._try_eip2612_permit(payer, token, amount, eip2612)
    extcall ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
        PermitTransferFrom(permitted=TokenPermissions(token=token, amount=amount), nonce=nonce, deadline=deadline),
        SignatureTransferDetails(to=x402BatchSettlement, requestedAmount=amount),
        payer,
        keccak256(abi_encode(DEPOSIT_WITNESS_TYPEHASH, channelId)),
        DEPOSIT_WITNESS_TYPE_STRING,
        signature,
    )


@internal
def _try_eip2612_permit(payer: address, token: address, amount: uint256, eip2612: Bytes[160]):
    value: uint256 = 0
    deadline: uint256 = 0
    v: uint8 = 0
    r: bytes32 = empty(bytes32)
    s: bytes32 = empty(bytes32)
    value, deadline, v, r, s = abi_decode(eip2612, (uint256, uint256, uint8, bytes32, bytes32))
    if value != amount:
        raw_revert(method_id("Permit2612AmountMismatch()"))
    # Solidity's try/catch: a call to an address without code reverts, uncaught.
    assert token.is_contract
    ok: bool = False
    data: Bytes[MAX_REVERT_BYTES] = b""
    ok, data = raw_call(
        token,
        abi_encode(
            payer,
            PERMIT2,
            value,
            deadline,
            v,
            r,
            s,
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
            log EIP2612PermitFailedWithReason(token=token, owner=payer, reason=reason)
            return
    if len(data) >= 36 and convert(slice(data, 0, 4), bytes4) == PANIC_SELECTOR:
        log EIP2612PermitFailedWithPanic(token=token, owner=payer, errorCode=convert(slice(data, 4, 32), uint256))
        return
    log EIP2612PermitFailedWithData(token=token, owner=payer, data=data)
