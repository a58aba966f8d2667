# pragma version 0.4.3
"""
@title Simulated x402BatchSettlement
@notice The escrow of x402's `batch-settlement` scheme: unidirectional payment
        channels named by the EIP-712 hash of their immutable configuration.
        A payer deposits through a deposit collector; the receiver side claims
        cumulative payer-signed vouchers (accounting only) and settles the
        claimed total to the receiver in one transfer; the receiver side may
        refund unclaimed escrow (a signed refund carries the channel's refund
        nonce); the payer may withdraw unclaimed escrow after the channel's
        withdraw delay. External interface, events, custom errors, EIP-712
        domain ("x402 Batch Settlement", "1") and check order follow the
        x402 Foundation's x402BatchSettlement, so that the same call fails with
        the same revert data.
@dev Custom errors are raised as selector (+ ABI arguments) with `raw_revert`.
     Payer-authorizer signatures are checked as OpenZeppelin's ECDSA does
     (65 bytes, low s, its three ECDSA* errors); payer and receiver-authorizer
     signatures as its SignatureChecker does (ECDSA for an address without
     code, EIP-1271 `isValidSignature` otherwise). The reentrancy guard is
     OpenZeppelin's ReentrancyGuardTransient, written out on transient storage
     so that a reentrant call fails with its `ReentrancyGuardReentrantCall()`.
     The domain separator is computed on every call, so the contract can sit
     in genesis with no constructor run. Dynamic arguments have fixed bounds
     (Vyper needs them): see the MAX_* constants.
"""


struct ChannelConfig:
    payer: address
    payerAuthorizer: address
    receiver: address
    receiverAuthorizer: address
    token: address
    withdrawDelay: uint40
    salt: bytes32


struct ChannelState:
    balance: uint128
    totalClaimed: uint128


struct WithdrawalState:
    amount: uint128
    initiatedAt: uint40


struct ReceiverState:
    totalClaimed: uint128
    totalSettled: uint128


struct Voucher:
    channel: ChannelConfig
    maxClaimableAmount: uint128


struct VoucherClaim:
    voucher: Voucher
    signature: Bytes[MAX_VOUCHER_SIGNATURE_BYTES]
    totalClaimed: uint128


interface IDepositCollector:
    def collect(
        payer: address,
        token: address,
        amount: uint256,
        channelId: bytes32,
        collectorData: Bytes[MAX_COLLECTOR_DATA],
    ): nonpayable


interface IERC20:
    def balanceOf(account: address) -> uint256: view


event ChannelCreated:
    channelId: indexed(bytes32)
    config: ChannelConfig


event ChannelClosed:
    channelId: indexed(bytes32)
    config: ChannelConfig


event Deposited:
    channelId: indexed(bytes32)
    sender: indexed(address)
    amount: uint128
    newBalance: uint128


event Claimed:
    channelId: indexed(bytes32)
    sender: indexed(address)
    claimAmount: uint128
    newTotalClaimed: uint128


event Settled:
    receiver: indexed(address)
    token: indexed(address)
    sender: indexed(address)
    amount: uint128


event Refunded:
    channelId: indexed(bytes32)
    sender: indexed(address)
    amount: uint128


event WithdrawInitiated:
    channelId: indexed(bytes32)
    amount: uint128
    finalizeAfter: uint40


event WithdrawFinalized:
    channelId: indexed(bytes32)
    sender: indexed(address)
    amount: uint128


# Bounds of the dynamic arguments (the Solidity takes any length; longer input fails ABI
# decoding here). Vyper copies an array argument into memory at its full bound, and memory costs
# gas quadratically, so the bounds are what x402 needs rather than generous: claim rows up to the
# SDKs' default batch of 100, a payer's signature in a row up to 256 bytes (EOA signatures and
# compact EIP-1271 ones), an authorizer's signature up to 1024 bytes, and a multicall of up to 8
# calls of 4 KiB each (the SDKs' refund is a claim and a refund).
MAX_SIGNATURE_BYTES: constant(uint256) = 1024
MAX_VOUCHER_SIGNATURE_BYTES: constant(uint256) = 256
MAX_CLAIMS: constant(uint256) = 100
MAX_COLLECTOR_DATA: constant(uint256) = 2048
MAX_CALLS: constant(uint256) = 8
MAX_CALL_BYTES: constant(uint256) = 4096
MAX_RESULT_BYTES: constant(uint256) = 512

MIN_WITHDRAW_DELAY: public(constant(uint40)) = 15 * 60
MAX_WITHDRAW_DELAY: public(constant(uint40)) = 30 * 24 * 3600

CHANNEL_CONFIG_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
)
VOUCHER_TYPEHASH: public(constant(bytes32)) = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)")
REFUND_TYPEHASH: public(constant(bytes32)) = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)")
CLAIM_ENTRY_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
)
CLAIM_BATCH_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
)

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
DOMAIN_NAME: constant(String[21]) = "x402 Batch Settlement"
DOMAIN_VERSION: constant(String[1]) = "1"
ERC1271_MAGIC_WORD: constant(bytes32) = 0x1626ba7e00000000000000000000000000000000000000000000000000000000
LOW_128: constant(uint256) = 2**128 - 1  # the low half of a packed storage word
# secp256k1 order / 2: OpenZeppelin's ECDSA refuses a larger s (EIP-2).
MAX_LOW_S: constant(bytes32) = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

# Each state sits in one storage word, packed as the Solidity's structs are (first member in the
# low bits), because Vyper gives every struct member a slot of its own: the same slots are cold or
# warm, zero or not, and so cost the same gas. Read and written through the _load/_store helpers.
_channels: HashMap[bytes32, uint256]  # ChannelState: balance | totalClaimed << 128
_refund_nonces: HashMap[bytes32, uint256]
_pending_withdrawals: HashMap[bytes32, uint256]  # WithdrawalState: amount | initiatedAt << 128
_receivers: HashMap[address, HashMap[address, uint256]]  # ReceiverState: totalClaimed | totalSettled << 128

_entered: transient(bool)


# -- views ---------------------------------------------------------------------------------------


@view
@external
def channels(channelId: bytes32) -> (uint128, uint128):
    ch: ChannelState = self._load_channel(channelId)
    return ch.balance, ch.totalClaimed


@view
@external
def refundNonce(channelId: bytes32) -> uint256:
    return self._refund_nonces[channelId]


@view
@external
def pendingWithdrawals(channelId: bytes32) -> (uint128, uint40):
    ws: WithdrawalState = self._load_withdrawal(channelId)
    return ws.amount, ws.initiatedAt


@view
@external
def receivers(receiver: address, token: address) -> (uint128, uint128):
    rs: ReceiverState = self._load_receiver(receiver, token)
    return rs.totalClaimed, rs.totalSettled


@view
@external
def eip712Domain() -> (bytes1, String[21], String[1], uint256, address, bytes32, DynArray[uint256, 1]):
    # ERC-5267, as OpenZeppelin's EIP712 answers it: name, version, chain id, verifying contract.
    return 0x0f, DOMAIN_NAME, DOMAIN_VERSION, chain.id, self, empty(bytes32), []


@view
@external
def getChannelId(config: ChannelConfig) -> bytes32:
    return self._channel_id(config)


@view
@external
def getVoucherDigest(channelId: bytes32, maxClaimableAmount: uint128) -> bytes32:
    return self._voucher_digest(channelId, maxClaimableAmount)


@view
@external
def getRefundDigest(channelId: bytes32, nonce: uint256, amount: uint128) -> bytes32:
    return self._refund_digest(channelId, nonce, amount)


@view
@external
def getClaimBatchDigest(voucherClaims: DynArray[VoucherClaim, MAX_CLAIMS]) -> bytes32:
    entries: DynArray[bytes32, MAX_CLAIMS] = []
    for vc: VoucherClaim in voucherClaims:
        entries.append(self._claim_entry_hash(vc.voucher.channel, vc.voucher.maxClaimableAmount, vc.totalClaimed))
    return self._claim_batch_digest(entries)


# -- deposits ------------------------------------------------------------------------------------


@external
def deposit(config: ChannelConfig, amount: uint128, collector: address, collectorData: Bytes[MAX_COLLECTOR_DATA]):
    self._enter()
    if config.payer == empty(address):
        raw_revert(method_id("InvalidChannel()"))
    if config.receiver == empty(address):
        raw_revert(method_id("InvalidChannel()"))
    if config.receiverAuthorizer == empty(address):
        raw_revert(method_id("InvalidChannel()"))
    if config.token == empty(address):
        raw_revert(method_id("InvalidChannel()"))
    if config.withdrawDelay < MIN_WITHDRAW_DELAY or config.withdrawDelay > MAX_WITHDRAW_DELAY:
        raw_revert(method_id("WithdrawDelayOutOfRange()"))
    if amount == 0:
        raw_revert(method_id("ZeroDeposit()"))
    if collector == empty(address):
        raw_revert(method_id("InvalidCollector()"))

    channel_id: bytes32 = self._channel_id(config)
    ch: ChannelState = self._load_channel(channel_id)
    if amount > max_value(uint128) - ch.balance:
        raw_revert(method_id("DepositOverflow()"))
    ch.balance += amount
    # Credited before the collector runs, as in the Solidity (the guard stops any reentry).
    self._store_channel(channel_id, ch)

    before: uint256 = staticcall IERC20(config.token).balanceOf(self)
    extcall IDepositCollector(collector).collect(
        config.payer, config.token, convert(amount, uint256), channel_id, collectorData
    )
    after: uint256 = staticcall IERC20(config.token).balanceOf(self)
    if after != before + convert(amount, uint256):
        raw_revert(method_id("DepositCollectionFailed()"))

    if ch.balance == amount and ch.totalClaimed == 0:
        log ChannelCreated(channelId=channel_id, config=config)
    log Deposited(channelId=channel_id, sender=msg.sender, amount=amount, newBalance=ch.balance)
    self._entered = False


# -- claims and settlement -----------------------------------------------------------------------


@external
def claim(voucherClaims: DynArray[VoucherClaim, MAX_CLAIMS]):
    self._enter()
    if len(voucherClaims) == 0:
        raw_revert(method_id("EmptyBatch()"))
    for vc: VoucherClaim in voucherClaims:
        if not self._is_receiver_side(msg.sender, vc.voucher.channel):
            raw_revert(method_id("NotAuthorizedToClaim()"))
        self._process_voucher_claim(vc.voucher.channel, vc.voucher.maxClaimableAmount, vc.signature, vc.totalClaimed)
    self._entered = False


@external
def claimWithSignature(
    voucherClaims: DynArray[VoucherClaim, MAX_CLAIMS], authorizerSignature: Bytes[MAX_SIGNATURE_BYTES]
):
    self._enter()
    if len(voucherClaims) == 0:
        raw_revert(method_id("EmptyBatch()"))
    authorizer: address = voucherClaims[0].voucher.channel.receiverAuthorizer
    # The batch digest is built here rather than in a helper taking the whole array: Vyper copies
    # an array argument into the callee's memory at its full bound, which costs gas.
    entries: DynArray[bytes32, MAX_CLAIMS] = []
    for vc: VoucherClaim in voucherClaims:
        entries.append(self._claim_entry_hash(vc.voucher.channel, vc.voucher.maxClaimableAmount, vc.totalClaimed))
    digest: bytes32 = self._claim_batch_digest(entries)
    if not self._is_valid_signature_now(authorizer, digest, authorizerSignature):
        raw_revert(method_id("InvalidSignature()"))
    for vc: VoucherClaim in voucherClaims:
        if vc.voucher.channel.receiverAuthorizer != authorizer:
            raw_revert(method_id("NotReceiverAuthorizer()"))
        self._process_voucher_claim(vc.voucher.channel, vc.voucher.maxClaimableAmount, vc.signature, vc.totalClaimed)
    self._entered = False


@external
def settle(receiver: address, token: address):
    self._enter()
    rs: ReceiverState = self._load_receiver(receiver, token)
    amount: uint128 = rs.totalClaimed - rs.totalSettled
    if amount != 0:
        rs.totalSettled = rs.totalClaimed
        self._store_receiver(receiver, token, rs)
        self._safe_transfer(token, receiver, amount)
        log Settled(receiver=receiver, token=token, sender=msg.sender, amount=amount)
    self._entered = False


# -- the payer's timed withdrawal ----------------------------------------------------------------


@external
def initiateWithdraw(config: ChannelConfig, amount: uint128):
    self._enter()
    if msg.sender != config.payer and msg.sender != config.payerAuthorizer:
        raw_revert(method_id("InvalidChannel()"))
    if amount == 0:
        raw_revert(method_id("NothingToWithdraw()"))
    channel_id: bytes32 = self._channel_id(config)
    if self._load_withdrawal(channel_id).initiatedAt != 0:
        raw_revert(method_id("WithdrawalAlreadyPending()"))
    ch: ChannelState = self._load_channel(channel_id)
    if amount > ch.balance - ch.totalClaimed:
        raw_revert(method_id("WithdrawAmountExceedsAvailable()"))
    now: uint40 = convert(block.timestamp, uint40)
    self._store_withdrawal(channel_id, WithdrawalState(amount=amount, initiatedAt=now))
    log WithdrawInitiated(channelId=channel_id, amount=amount, finalizeAfter=now + config.withdrawDelay)
    self._entered = False


@external
def finalizeWithdraw(config: ChannelConfig):
    self._enter()
    if msg.sender != config.payer and msg.sender != config.payerAuthorizer:
        raw_revert(method_id("NotAuthorizedToFinalizeWithdraw()"))
    channel_id: bytes32 = self._channel_id(config)
    ws: WithdrawalState = self._load_withdrawal(channel_id)
    if ws.initiatedAt == 0:
        raw_revert(method_id("WithdrawalNotPending()"))
    if block.timestamp < convert(ws.initiatedAt, uint256) + convert(config.withdrawDelay, uint256):
        raw_revert(method_id("WithdrawDelayNotElapsed()"))
    ch: ChannelState = self._load_channel(channel_id)
    amount: uint128 = min(ws.amount, ch.balance - ch.totalClaimed)
    self._pending_withdrawals[channel_id] = 0
    ch.balance -= amount
    self._store_channel(channel_id, ch)
    log WithdrawFinalized(channelId=channel_id, sender=msg.sender, amount=amount)
    if ch.balance == 0 and ch.totalClaimed == 0:
        log ChannelClosed(channelId=channel_id, config=config)
    if amount > 0:
        self._safe_transfer(config.token, config.payer, amount)
    self._entered = False


# -- refunds -------------------------------------------------------------------------------------


@external
def refund(config: ChannelConfig, amount: uint128):
    self._enter()
    if not self._is_receiver_side(msg.sender, config):
        raw_revert(method_id("NotAuthorizedToRefund()"))
    self._execute_refund(config, amount)
    self._entered = False


@external
def refundWithSignature(
    config: ChannelConfig, amount: uint128, nonce: uint256, receiverAuthorizerSignature: Bytes[MAX_SIGNATURE_BYTES]
):
    self._enter()
    channel_id: bytes32 = self._channel_id(config)
    if nonce != self._refund_nonces[channel_id]:
        raw_revert(method_id("InvalidRefundNonce()"))
    digest: bytes32 = self._refund_digest(channel_id, nonce, amount)
    if not self._is_valid_signature_now(config.receiverAuthorizer, digest, receiverAuthorizerSignature):
        raw_revert(method_id("InvalidSignature()"))
    self._execute_refund(config, amount)
    self._entered = False


# -- multicall -----------------------------------------------------------------------------------


@external
def multicall(data: DynArray[Bytes[MAX_CALL_BYTES], MAX_CALLS]) -> DynArray[Bytes[MAX_RESULT_BYTES], MAX_CALLS]:
    # OpenZeppelin's Multicall: each call delegated to this contract in order; the first failure
    # reverts the whole with its revert data (FailedCall() when it has none).
    results: DynArray[Bytes[MAX_RESULT_BYTES], MAX_CALLS] = []
    for call_data: Bytes[MAX_CALL_BYTES] in data:
        ok: bool = False
        out: Bytes[MAX_RESULT_BYTES] = b""
        ok, out = raw_call(
            self, call_data, max_outsize=MAX_RESULT_BYTES, is_delegate_call=True, revert_on_failure=False
        )
        if not ok:
            if len(out) == 0:
                raw_revert(method_id("FailedCall()"))
            raw_revert(out)
        results.append(out)
    return results


# -- internals -----------------------------------------------------------------------------------


@view
@internal
def _load_channel(channel_id: bytes32) -> ChannelState:
    packed: uint256 = self._channels[channel_id]
    return ChannelState(balance=convert(packed & LOW_128, uint128), totalClaimed=convert(packed >> 128, uint128))


@internal
def _store_channel(channel_id: bytes32, ch: ChannelState):
    self._channels[channel_id] = convert(ch.balance, uint256) | (convert(ch.totalClaimed, uint256) << 128)


@view
@internal
def _load_withdrawal(channel_id: bytes32) -> WithdrawalState:
    packed: uint256 = self._pending_withdrawals[channel_id]
    return WithdrawalState(amount=convert(packed & LOW_128, uint128), initiatedAt=convert(packed >> 128, uint40))


@internal
def _store_withdrawal(channel_id: bytes32, ws: WithdrawalState):
    self._pending_withdrawals[channel_id] = convert(ws.amount, uint256) | (convert(ws.initiatedAt, uint256) << 128)


@view
@internal
def _load_receiver(receiver: address, token: address) -> ReceiverState:
    packed: uint256 = self._receivers[receiver][token]
    return ReceiverState(totalClaimed=convert(packed & LOW_128, uint128), totalSettled=convert(packed >> 128, uint128))


@internal
def _store_receiver(receiver: address, token: address, rs: ReceiverState):
    self._receivers[receiver][token] = convert(rs.totalClaimed, uint256) | (convert(rs.totalSettled, uint256) << 128)


@internal
def _enter():
    if self._entered:
        raw_revert(method_id("ReentrancyGuardReentrantCall()"))
    self._entered = True


@pure
@internal
def _is_receiver_side(sender: address, config: ChannelConfig) -> bool:
    return sender == config.receiverAuthorizer or sender == config.receiver


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(
        abi_encode(DOMAIN_TYPEHASH, keccak256(DOMAIN_NAME), keccak256(DOMAIN_VERSION), chain.id, self)
    )


@view
@internal
def _typed_hash(struct_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@view
@internal
def _channel_id(config: ChannelConfig) -> bytes32:
    return self._typed_hash(
        keccak256(
            abi_encode(
                CHANNEL_CONFIG_TYPEHASH,
                config.payer,
                config.payerAuthorizer,
                config.receiver,
                config.receiverAuthorizer,
                config.token,
                config.withdrawDelay,
                config.salt,
            )
        )
    )


@view
@internal
def _voucher_digest(channel_id: bytes32, max_claimable: uint128) -> bytes32:
    return self._typed_hash(keccak256(abi_encode(VOUCHER_TYPEHASH, channel_id, max_claimable)))


@view
@internal
def _refund_digest(channel_id: bytes32, nonce: uint256, amount: uint128) -> bytes32:
    return self._typed_hash(keccak256(abi_encode(REFUND_TYPEHASH, channel_id, nonce, amount)))


@view
@internal
def _claim_entry_hash(config: ChannelConfig, max_claimable: uint128, total_claimed: uint128) -> bytes32:
    return keccak256(abi_encode(CLAIM_ENTRY_TYPEHASH, self._channel_id(config), max_claimable, total_claimed))


@view
@internal
def _claim_batch_digest(entries: DynArray[bytes32, MAX_CLAIMS]) -> bytes32:
    # The entries' hashes packed: abi_encode of the array less its offset and length words
    # (keccak256("") for an empty batch).
    packed: Bytes[32 * MAX_CLAIMS + 64] = abi_encode(entries)
    root: bytes32 = keccak256(slice(packed, 64, 32 * len(entries)))
    return self._typed_hash(keccak256(abi_encode(CLAIM_BATCH_TYPEHASH, root)))


@internal
def _process_voucher_claim(
    config: ChannelConfig,
    max_claimable: uint128,
    signature: Bytes[MAX_VOUCHER_SIGNATURE_BYTES],
    total_claimed: uint128,
):
    channel_id: bytes32 = self._channel_id(config)
    ch: ChannelState = self._load_channel(channel_id)
    if total_claimed <= ch.totalClaimed:
        return  # a replayed or older voucher changes nothing
    if total_claimed > max_claimable:
        raw_revert(method_id("ClaimExceedsCeiling()"))
    if total_claimed > ch.balance:
        raw_revert(method_id("ClaimExceedsBalance()"))

    digest: bytes32 = self._voucher_digest(channel_id, max_claimable)
    payer_authorizer: address = config.payerAuthorizer
    if payer_authorizer != empty(address):
        if self._recover(digest, signature) != payer_authorizer:
            raw_revert(method_id("InvalidSignature()"))
    elif not self._is_valid_signature_now(config.payer, digest, signature):
        raw_revert(method_id("InvalidSignature()"))

    delta: uint128 = total_claimed - ch.totalClaimed
    ch.totalClaimed = total_claimed
    self._store_channel(channel_id, ch)
    rs: ReceiverState = self._load_receiver(config.receiver, config.token)
    rs.totalClaimed += delta
    self._store_receiver(config.receiver, config.token, rs)
    log Claimed(channelId=channel_id, sender=msg.sender, claimAmount=delta, newTotalClaimed=total_claimed)


@internal
def _execute_refund(config: ChannelConfig, amount: uint128):
    if amount == 0:
        raw_revert(method_id("ZeroRefund()"))
    channel_id: bytes32 = self._channel_id(config)
    # The nonce moves first, even when nothing is left to refund (unchecked, as there).
    self._refund_nonces[channel_id] = unsafe_add(self._refund_nonces[channel_id], 1)

    ch: ChannelState = self._load_channel(channel_id)
    refunded: uint128 = min(amount, ch.balance - ch.totalClaimed)
    if refunded == 0:
        return
    ch.balance -= refunded
    self._store_channel(channel_id, ch)

    ws: WithdrawalState = self._load_withdrawal(channel_id)
    if ws.initiatedAt != 0:
        if refunded >= ws.amount:
            self._pending_withdrawals[channel_id] = 0
        else:
            ws.amount -= refunded
            self._store_withdrawal(channel_id, ws)

    log Refunded(channelId=channel_id, sender=msg.sender, amount=refunded)
    if ch.balance == 0 and ch.totalClaimed == 0:
        log ChannelClosed(channelId=channel_id, config=config)
    self._safe_transfer(config.token, config.payer, refunded)


@pure
@internal
def _try_recover(digest: bytes32, signature: Bytes[MAX_SIGNATURE_BYTES]) -> (address, uint256, bytes32):
    # OpenZeppelin's ECDSA.tryRecover: (signer, error, error argument) with error 0 none,
    # 1 InvalidSignature, 2 InvalidSignatureLength, 3 InvalidSignatureS.
    if len(signature) != 65:
        return empty(address), 2, convert(len(signature), bytes32)
    r: bytes32 = convert(slice(signature, 0, 32), bytes32)
    s: bytes32 = convert(slice(signature, 32, 32), bytes32)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if convert(s, uint256) > convert(MAX_LOW_S, uint256):
        return empty(address), 3, s
    signer: address = ecrecover(digest, v, r, s)
    if signer == empty(address):
        return empty(address), 1, empty(bytes32)
    return signer, 0, empty(bytes32)


@pure
@internal
def _recover(digest: bytes32, signature: Bytes[MAX_SIGNATURE_BYTES]) -> address:
    # ECDSA.recover: the failures revert with OpenZeppelin's errors.
    signer: address = empty(address)
    err: uint256 = 0
    arg: bytes32 = empty(bytes32)
    signer, err, arg = self._try_recover(digest, signature)
    if err == 1:
        raw_revert(method_id("ECDSAInvalidSignature()"))
    if err == 2:
        raw_revert(concat(method_id("ECDSAInvalidSignatureLength(uint256)"), arg))
    if err == 3:
        raw_revert(concat(method_id("ECDSAInvalidSignatureS(bytes32)"), arg))
    return signer


@view
@internal
def _is_valid_signature_now(signer: address, digest: bytes32, signature: Bytes[MAX_SIGNATURE_BYTES]) -> bool:
    # SignatureChecker.isValidSignatureNow: ECDSA for an address without code, else EIP-1271
    # (a successful call whose first return word is the magic value, padded).
    if not signer.is_contract:
        recovered: address = empty(address)
        err: uint256 = 0
        arg: bytes32 = empty(bytes32)
        recovered, err, arg = self._try_recover(digest, signature)
        return err == 0 and recovered == signer
    ok: bool = False
    out: Bytes[32] = b""
    ok, out = raw_call(
        signer,
        abi_encode(digest, signature, method_id=method_id("isValidSignature(bytes32,bytes)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    return ok and len(out) == 32 and convert(out, bytes32) == ERC1271_MAGIC_WORD


@internal
def _safe_transfer(token: address, to: address, amount: uint128):
    # SafeERC20.safeTransfer: a failed call's revert data bubbles up; a call that returns nothing
    # must have reached code, one that returns must answer true.
    ok: bool = False
    out: Bytes[MAX_RESULT_BYTES] = b""
    ok, out = raw_call(
        token,
        abi_encode(to, convert(amount, uint256), method_id=method_id("transfer(address,uint256)")),
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
