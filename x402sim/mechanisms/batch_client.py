"""The paying side of ``batch-settlement``, as pure functions: what a client signs and checks.

A client pays a ``batch-settlement`` offer through a channel of its own (``evm.channels``): the
offer names the receiver (``payTo``), the token (``asset``), ``extra.receiverAuthorizer`` and
``extra.withdrawDelay``; the client adds itself as payer and as payer authorizer (its key is an
EOA, so servers can check its vouchers without a chain read) and a ``salt``. Here:

* ``client_refusal``: why an offer cannot be paid by channel (no token domain, no receiver
  authorizer, a withdraw delay out of the contract's range, an unknown transfer method);
* ``channel_config``: the config a client opens for an offer;
* ``deposit_size`` and ``needs_deposit``: how much to deposit, and when (the sizing rules below);
* ``deposit_payload``, ``voucher_payload``, ``refund_payload``: the three client payloads, signed;
* ``voucher_state_problem``: whether a corrective 402's ``voucherState`` carries a voucher this
  client signed (the only proof under which it adopts the server's cumulative amount).

Sizing rules. The next voucher's ceiling is ``charged + price``; it must be backed by the channel's
balance, so a deposit is needed when ``balance - charged < price``, or earlier when a
``top_up_below`` threshold is set and ``balance - charged - price`` would fall under it. A deposit is
at least what the voucher needs, at least the price, at least the server's ``extra.minDeposit``
(when it is a positive decimal string), and otherwise the configured size (default: five prices, as
the SDKs do). Deposits are signed with ``validAfter`` 0 and expire ``maxTimeoutSeconds`` after
``now``; the EIP-3009 nonce binds the channel (``erc3009_deposit_nonce``), the Permit2 witness too.

No I/O and no clock: time and entropy are arguments.
"""

from __future__ import annotations

from ..evm.channels import (
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ChannelConfig,
    channel_id,
    deposit_witness_digest,
    erc3009_deposit_nonce,
    receive_authorization_digest,
    sign_voucher,
    voucher_digest,
)
from ..evm.eip712 import SignatureError, checksum, recover_digest, sign_digest
from .batch_wire import DepositPayload, Erc3009Deposit, Permit2Deposit, RefundPayload, Voucher, VoucherPayload
from .offer import Offer

SCHEME = "batch-settlement"
EIP3009, PERMIT2 = "eip3009", "permit2"
TRANSFER_METHODS = (EIP3009, PERMIT2)
DEFAULT_DEPOSIT_MULTIPLIER = 5  # deposits are five prices unless told otherwise (as the SDKs)
ZERO_SALT = b"\x00" * 32
# The corrective 402s: the server's cumulative amount is not the one the voucher was built on.
CUMULATIVE_MISMATCH = "invalid_batch_settlement_evm_cumulative_amount_mismatch"
CUMULATIVE_BELOW_CLAIMED = "invalid_batch_settlement_evm_cumulative_below_claimed"
CORRECTIVE_ERRORS = (CUMULATIVE_MISMATCH, CUMULATIVE_BELOW_CLAIMED)


def _is_address(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 42:
        return False
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        return False
    return True


def transfer_method(offer: Offer) -> str:
    """The offer's deposit method: ``extra.assetTransferMethod``, ``eip3009`` when absent or null."""
    method = offer.extra.get("assetTransferMethod")
    return EIP3009 if method is None else str(method)


def client_refusal(offer: Offer) -> str | None:
    """Why this client cannot pay ``offer`` through a channel, or None."""
    extra = offer.extra
    if not (isinstance(extra.get("name"), str) and isinstance(extra.get("version"), str)):
        return "offer lacks the token's EIP-712 name and version"
    authorizer = extra.get("receiverAuthorizer")
    if not isinstance(authorizer, str) or not _is_address(authorizer) or int(authorizer, 16) == 0:
        return "offer lacks a non-zero extra.receiverAuthorizer"
    delay = extra.get("withdrawDelay")
    if isinstance(delay, bool) or not isinstance(delay, int):
        return "offer lacks an integer extra.withdrawDelay"
    if not MIN_WITHDRAW_DELAY <= delay <= MAX_WITHDRAW_DELAY:
        return f"extra.withdrawDelay {delay} is outside {MIN_WITHDRAW_DELAY}..{MAX_WITHDRAW_DELAY} seconds"
    if transfer_method(offer) not in TRANSFER_METHODS:
        return f"no deposit by assetTransferMethod {extra.get('assetTransferMethod')!r}"
    if offer.chain_id is None:
        return f"network {offer.network} is not an EVM (eip155) network"
    return None


def channel_config(offer: Offer, payer: str, salt: bytes = ZERO_SALT) -> ChannelConfig:
    """The channel ``payer`` (also its voucher signer) opens with the receiver of ``offer``."""
    return ChannelConfig(
        payer=payer,
        payer_authorizer=payer,
        receiver=offer.pay_to,
        receiver_authorizer=str(offer.extra["receiverAuthorizer"]),
        token=offer.asset,
        withdraw_delay=int(offer.extra["withdrawDelay"]),
        salt=salt,
    )


def announced_min_deposit(offer: Offer) -> int | None:
    """The server's ``extra.minDeposit`` when it is a positive decimal string, else None."""
    value = offer.extra.get("minDeposit")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or int(value) <= 0:
        return None
    return int(value)


def needs_deposit(price: int, charged: int, balance: int, top_up_below: int = 0) -> bool:
    """Whether the next voucher (``charged + price``) needs a deposit first: the balance does not
    back it, or what would remain after it is under ``top_up_below``."""
    remaining = balance - charged - price
    return remaining < 0 or remaining < top_up_below


def deposit_size(
    price: int,
    charged: int,
    balance: int,
    *,
    min_deposit: int | None = None,
    size: int | None = None,
    multiplier: int = DEFAULT_DEPOSIT_MULTIPLIER,
) -> int:
    """How much to deposit before the voucher ``charged + price``: the most of what the voucher needs
    beyond ``balance``, the price, the server's ``min_deposit``, and ``size`` (default ``multiplier``
    prices). Always positive."""
    needed = charged + price - balance
    target = size if size is not None else multiplier * price
    return max(needed, price, min_deposit or 0, target, 1)


def signed_voucher(key: bytes, chain_id: int, channel: bytes, max_claimable: int) -> Voucher:
    """The voucher ``max_claimable`` on ``channel``, signed by ``key``."""
    return Voucher(channel, max_claimable, sign_voucher(key, chain_id, channel, max_claimable))


def voucher_payload(key: bytes, config: ChannelConfig, chain_id: int, max_claimable: int) -> VoucherPayload:
    """Pay a request with the voucher ``max_claimable`` (the charged amount plus the price)."""
    return VoucherPayload(config, signed_voucher(key, chain_id, channel_id(config, chain_id), max_claimable))


def refund_payload(
    key: bytes, config: ChannelConfig, chain_id: int, charged: int, amount: int | None = None
) -> RefundPayload:
    """Ask for unclaimed escrow back: a zero-charge voucher (``charged``, nothing added) and the
    amount wanted (None: all of it)."""
    if amount is not None and amount <= 0:
        raise ValueError(f"a refund amount must be positive, got {amount}")
    voucher = signed_voucher(key, chain_id, channel_id(config, chain_id), charged)
    return RefundPayload(config, voucher, amount)


def deposit_payload(
    key: bytes,
    config: ChannelConfig,
    offer: Offer,
    amount: int,
    max_claimable: int,
    now: int,
    entropy: bytes,
) -> DepositPayload:
    """Deposit ``amount`` into the channel (opening it if needed) and pay this request with the
    voucher ``max_claimable``, by the offer's transfer method: an EIP-3009
    ``receiveWithAuthorization`` to the EIP-3009 collector, or a Permit2 witness transfer whose
    spender is the Permit2 collector. ``entropy`` (32 bytes) makes the authorization's salt or
    Permit2 nonce; it must not repeat."""
    if len(entropy) != 32:
        raise ValueError("entropy must be 32 bytes")
    chain_id = offer.chain_id
    if chain_id is None:
        raise ValueError(f"network {offer.network} is not an EVM network")
    channel = channel_id(config, chain_id)
    deadline = now + offer.max_timeout_seconds
    authorization: Erc3009Deposit | Permit2Deposit
    if transfer_method(offer) == PERMIT2:
        nonce = int.from_bytes(entropy, "big")
        digest = deposit_witness_digest(chain_id, config.token, amount, nonce, deadline, channel)
        authorization = Permit2Deposit(
            config.payer,
            config.token,
            amount,
            checksum(PERMIT2_DEPOSIT_COLLECTOR_ADDRESS),
            nonce,
            deadline,
            channel,
            sign_digest(key, digest),
        )
    else:
        salt = int.from_bytes(entropy, "big")
        nonce_bytes = erc3009_deposit_nonce(channel, salt)
        digest = receive_authorization_digest(offer.domain, config.payer, amount, 0, deadline, nonce_bytes)
        authorization = Erc3009Deposit(0, deadline, salt, sign_digest(key, digest))
    voucher = signed_voucher(key, chain_id, channel, max_claimable)
    return DepositPayload(config, voucher, amount, authorization)


def voucher_state_problem(
    signer: str, chain_id: int, channel: bytes, signed_max: int, signature: bytes, charged: int
) -> str | None:
    """Why a corrective 402's ``voucherState`` does not prove ``charged``: its signature is not
    ``signer``'s voucher of ``signed_max`` on ``channel``, or ``charged`` exceeds what it signed."""
    if charged > signed_max:
        return f"chargedCumulativeAmount {charged} exceeds the signed voucher {signed_max}"
    try:
        recovered = recover_digest(voucher_digest(chain_id, channel, signed_max), signature)
    except (SignatureError, ValueError) as exc:
        return f"voucherState.signature does not recover: {exc}"
    if checksum(recovered) != checksum(signer):
        return f"voucherState.signature is {recovered}'s, not this payer's ({checksum(signer)})"
    return None
