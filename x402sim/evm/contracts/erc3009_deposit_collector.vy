# pragma version 0.4.3
"""
@title Simulated ERC3009DepositCollector
@notice The batch-settlement contract's EIP-3009 deposit collector: it pulls a
        deposit from the payer with the token's `receiveWithAuthorization`
        (EIP-3009 makes the payee the caller, so the tokens land here) and
        forwards them to the batch-settlement contract. The authorization's
        nonce is keccak256(abi.encode(channelId, salt)), which binds the
        signature to the channel. Only the batch-settlement contract may call
        `collect` (`OnlyX402BatchSettlement()`), as in the x402 Foundation's
        ERC3009DepositCollector.
@dev `collectorData` is abi.encode(validAfter, validBefore, salt, signature).
     The Solidity calls the token's `bytes signature` overload; the
     simulator's tokens (FiatToken v2's (v, r, s) interface, no EIP-1271)
     have only the (v, r, s) form, so a 65-byte signature is split here and
     any other length reverts with FiatToken v2.2's ECRecover message, as the
     `bytes` overload would for a payer without code. The batch-settlement
     address is a constant, not a constructor immutable, so the contract can
     sit in genesis.
"""


interface IERC3009:
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
    ): nonpayable


MAX_SIGNATURE_BYTES: constant(uint256) = 1024
MAX_COLLECTOR_DATA: constant(uint256) = 2048
MAX_RESULT_BYTES: constant(uint256) = 512

x402BatchSettlement: public(constant(address)) = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003


@external
def collect(payer: address, token: address, amount: uint256, channelId: bytes32, collectorData: Bytes[MAX_COLLECTOR_DATA]):
    if msg.sender != x402BatchSettlement:
        raw_revert(method_id("OnlyX402BatchSettlement()"))
    valid_after: uint256 = 0
    valid_before: uint256 = 0
    salt: uint256 = 0
    signature: Bytes[MAX_SIGNATURE_BYTES] = b""
    valid_after, valid_before, salt, signature = abi_decode(
        collectorData, (uint256, uint256, uint256, Bytes[MAX_SIGNATURE_BYTES])
    )
    nonce: bytes32 = keccak256(abi_encode(channelId, salt))
    if len(signature) != 65:
        raise "ECRecover: invalid signature length"
    extcall IERC3009(token).receiveWithAuthorization(
        payer,
        self,
        amount,
        valid_after,
        valid_before,
        nonce,
        convert(slice(signature, 64, 1), uint8),
        convert(slice(signature, 0, 32), bytes32),
        convert(slice(signature, 32, 32), bytes32),
    )
    self._safe_transfer(token, x402BatchSettlement, amount)


@internal
def _safe_transfer(token: address, to: address, amount: uint256):
    # OpenZeppelin's SafeERC20.safeTransfer (as in batch_settlement.vy).
    ok: bool = False
    out: Bytes[MAX_RESULT_BYTES] = b""
    ok, out = raw_call(
        token,
        abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=MAX_RESULT_BYTES,
        revert_on_failure=False,
    )
    if not ok:
        raw_revert(out)
    good: bool = False
    if len(out) == 0:
        good = token.is_contract
    elif len(out) >= 32:
        good = convert(slice(out, 0, 32), uint256) == 1
    if not good:
        raw_revert(concat(method_id("SafeERC20FailedOperation(address)"), convert(token, bytes32)))
