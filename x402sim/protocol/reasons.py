"""Reason codes for rejected payments, and the classes that make different spellings comparable.

Job: name every reason a verify or settle can fail, in our canonical spelling, and map every spelling used in
the wild to one :class:`ReasonClass`.

Theory of operation. The SDKs agree on *conditions* but not on *spellings*: the Python SDK answers
``network_mismatch`` where TypeScript and Go answer ``invalid_exact_evm_network_mismatch`` and the spec
registry lists ``invalid_network``. x402sim emits :class:`Reason` codes (the Python SDK's spellings). A
conformance harness that checks a third-party facilitator must not demand one SDK's spelling: it computes
``reason_class(observed)`` and compares it with the class of the expected reason (:func:`same_class`), and it
reports the observed spelling next to the verdict. A code that is not in :data:`SYNONYMS` has class
``unknown``, and ``unknown`` never matches anything, not even itself: an unrecognised code is reported as
such, never silently accepted.

Rules:
- One row per condition: each spelling belongs to exactly one class.
- Lookups ignore case and surrounding whitespace; the table itself is read-only.
- Adding a spelling means adding it to :data:`_SPELLINGS`, under the class of its condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum, auto
from types import MappingProxyType

__all__ = ["SYNONYMS", "Reason", "ReasonClass", "reason_class", "same_class"]


class ReasonClass(StrEnum):
    """The condition behind a reason code, whatever its spelling."""

    scheme = "scheme"
    network = "network"
    network_config = "network_config"
    eip712_domain = "eip712_domain"
    recipient = "recipient"
    amount = "amount"
    expired = "expired"
    not_yet_valid = "not_yet_valid"
    signature = "signature"
    nonce_used = "nonce_used"
    balance = "balance"
    token_name = "token_name"
    token_version = "token_version"
    eip3009_unsupported = "eip3009_unsupported"
    asset_not_contract = "asset_not_contract"
    simulation = "simulation"
    transaction_failed = "transaction_failed"
    duplicate = "duplicate"
    malformed_payload = "malformed_payload"
    malformed_requirements = "malformed_requirements"
    version = "version"
    no_matching_requirements = "no_matching_requirements"
    settlement_pending = "settlement_pending"
    transfer_event_mismatch = "transfer_event_mismatch"
    spender = "spender"
    token = "token"
    allowance = "allowance"
    facilitator = "facilitator"
    exceeds_maximum = "exceeds_maximum"
    sponsoring = "sponsoring"
    # batch-settlement (payment channels)
    channel_not_found = "channel_not_found"
    channel_id = "channel_id"
    chain_read = "chain_read"
    receiver_authorizer = "receiver_authorizer"
    authorizer = "authorizer"
    withdraw_delay = "withdraw_delay"
    withdraw_delay_range = "withdraw_delay_range"
    exceeds_balance = "exceeds_balance"
    below_claimed = "below_claimed"
    cumulative_mismatch = "cumulative_mismatch"
    below_min_deposit = "below_min_deposit"
    nothing_to_settle = "nothing_to_settle"
    nothing_to_refund = "nothing_to_refund"
    channel_busy = "channel_busy"
    unknown = "unknown"


class Reason(StrEnum):
    """Our canonical reason codes: the official Python SDK's spellings (member name == value)."""

    unsupported_scheme = auto()
    network_mismatch = auto()
    invalid_exact_evm_failed_to_get_network_config = auto()
    missing_eip712_domain = auto()
    invalid_exact_evm_payload_recipient_mismatch = auto()
    invalid_exact_evm_payload_authorization_value_mismatch = auto()
    invalid_exact_evm_payload_authorization_valid_before = auto()
    invalid_exact_evm_payload_authorization_valid_after = auto()
    invalid_exact_evm_payload_signature = auto()
    invalid_exact_evm_nonce_already_used = auto()
    invalid_exact_evm_insufficient_balance = auto()
    invalid_exact_evm_token_name_mismatch = auto()
    invalid_exact_evm_token_version_mismatch = auto()
    invalid_exact_evm_eip3009_not_supported = auto()
    asset_not_deployed_contract = auto()
    invalid_exact_evm_transaction_simulation_failed = auto()
    transaction_failed = auto()
    duplicate_settlement = auto()
    invalid_payload = auto()
    invalid_payment_requirements = auto()
    invalid_x402_version = auto()
    no_matching_payment_requirements = auto()
    settlement_pending = auto()
    invalid_exact_evm_transfer_event_mismatch = auto()
    # Permit2 (exact with assetTransferMethod "permit2", and upto)
    invalid_permit2_spender = auto()
    invalid_permit2_recipient_mismatch = auto()
    permit2_deadline_expired = auto()
    permit2_not_yet_valid = auto()
    permit2_amount_mismatch = auto()
    permit2_token_mismatch = auto()
    invalid_permit2_signature = auto()
    permit2_allowance_required = auto()
    permit2_insufficient_balance = auto()
    # upto
    invalid_upto_evm_scheme = auto()
    invalid_upto_evm_network_mismatch = auto()
    invalid_upto_evm_failed_to_get_network_config = auto()
    upto_facilitator_mismatch = auto()
    invalid_upto_evm_payload_settlement_exceeds_amount = auto()
    invalid_upto_evm_transaction_failed = auto()
    # the gas-sponsoring extensions
    invalid_eip2612_extension_format = auto()
    eip2612_from_mismatch = auto()
    eip2612_asset_mismatch = auto()
    eip2612_spender_not_permit2 = auto()
    eip2612_deadline_expired = auto()
    permit2_2612_amount_mismatch = auto()
    invalid_erc20_approval_extension_format = auto()
    erc20_approval_from_mismatch = auto()
    erc20_approval_asset_mismatch = auto()
    erc20_approval_spender_not_permit2 = auto()
    erc20_approval_tx_invalid_signature = auto()
    erc20_approval_tx_signer_mismatch = auto()
    erc20_approval_tx_wrong_target = auto()
    erc20_approval_tx_wrong_selector = auto()
    erc20_approval_tx_wrong_spender = auto()
    erc20_approval_tx_invalid_calldata = auto()
    erc20_approval_tx_parse_failed = auto()
    # a relayer's checks the specification asks for and the SDKs skip
    erc20_approval_tx_wrong_nonce = auto()
    erc20_approval_tx_too_costly = auto()
    # batch-settlement (the SDKs' errors.py, every one: facilitator, server and client reasons)
    invalid_batch_settlement_evm_scheme = auto()
    invalid_batch_settlement_evm_network_mismatch = auto()
    invalid_batch_settlement_evm_missing_eip712_domain = auto()
    invalid_batch_settlement_evm_payload_type = auto()
    invalid_batch_settlement_evm_channel_not_found = auto()
    invalid_batch_settlement_evm_channel_id_mismatch = auto()
    invalid_batch_settlement_evm_channel_state_read_failed = auto()
    invalid_batch_settlement_evm_receiver_mismatch = auto()
    invalid_batch_settlement_evm_receiver_authorizer_mismatch = auto()
    invalid_batch_settlement_evm_authorizer_address_mismatch = auto()
    invalid_batch_settlement_evm_authorizer_not_configured = auto()
    invalid_batch_settlement_evm_token_mismatch = auto()
    invalid_batch_settlement_evm_withdraw_delay_mismatch = auto()
    invalid_batch_settlement_evm_withdraw_delay_out_of_range = auto()
    invalid_batch_settlement_evm_voucher_signature = auto()
    invalid_batch_settlement_evm_cumulative_exceeds_balance = auto()
    invalid_batch_settlement_evm_cumulative_below_claimed = auto()
    invalid_batch_settlement_evm_cumulative_amount_mismatch = auto()
    invalid_batch_settlement_evm_insufficient_balance = auto()
    invalid_batch_settlement_evm_deposit_payload = auto()
    invalid_batch_settlement_evm_deposit_simulation_failed = auto()
    invalid_batch_settlement_evm_deposit_below_min_deposit = auto()
    invalid_batch_settlement_evm_deposit_transaction_failed = auto()
    invalid_batch_settlement_evm_eip6492_factory_not_allowed = auto()
    invalid_batch_settlement_evm_smart_wallet_deployment_failed = auto()
    invalid_batch_settlement_evm_voucher_payload = auto()
    invalid_batch_settlement_evm_claim_payload = auto()
    invalid_batch_settlement_evm_claim_simulation_failed = auto()
    invalid_batch_settlement_evm_claim_transaction_failed = auto()
    invalid_batch_settlement_evm_settle_payload = auto()
    invalid_batch_settlement_evm_settle_simulation_failed = auto()
    invalid_batch_settlement_evm_settle_transaction_failed = auto()
    invalid_batch_settlement_evm_nothing_to_settle = auto()
    invalid_batch_settlement_evm_unknown_settle_action = auto()
    invalid_batch_settlement_evm_refund_payload = auto()
    invalid_batch_settlement_evm_refund_simulation_failed = auto()
    invalid_batch_settlement_evm_refund_transaction_failed = auto()
    invalid_batch_settlement_evm_refund_amount_invalid = auto()
    invalid_batch_settlement_evm_refund_no_balance = auto()
    invalid_batch_settlement_evm_payload_authorization_valid_after = auto()
    invalid_batch_settlement_evm_payload_authorization_valid_before = auto()
    invalid_batch_settlement_evm_receive_authorization_signature = auto()
    invalid_batch_settlement_evm_erc3009_authorization_required = auto()
    invalid_batch_settlement_evm_permit2_authorization_required = auto()
    invalid_batch_settlement_evm_permit2_invalid_spender = auto()
    invalid_batch_settlement_evm_permit2_amount_mismatch = auto()
    invalid_batch_settlement_evm_permit2_deadline_expired = auto()
    invalid_batch_settlement_evm_permit2_invalid_signature = auto()
    invalid_batch_settlement_evm_permit2_allowance_required = auto()
    invalid_batch_settlement_evm_eip2612_amount_mismatch = auto()
    invalid_batch_settlement_evm_eip2612_owner_mismatch = auto()
    invalid_batch_settlement_evm_eip2612_asset_mismatch = auto()
    invalid_batch_settlement_evm_eip2612_spender_mismatch = auto()
    invalid_batch_settlement_evm_eip2612_deadline_expired = auto()
    invalid_batch_settlement_evm_eip2612_invalid_format = auto()
    invalid_batch_settlement_evm_eip2612_invalid_signature = auto()
    invalid_batch_settlement_evm_erc20_approval_unavailable = auto()
    invalid_batch_settlement_evm_erc20_approval_invalid_format = auto()
    invalid_batch_settlement_evm_erc20_approval_from_mismatch = auto()
    invalid_batch_settlement_evm_erc20_approval_asset_mismatch = auto()
    invalid_batch_settlement_evm_erc20_approval_wrong_spender = auto()
    invalid_batch_settlement_evm_erc20_approval_broadcast_failed = auto()
    invalid_batch_settlement_evm_rpc_read_failed = auto()
    invalid_batch_settlement_evm_wait_for_receipt_failed = auto()
    invalid_batch_settlement_evm_transaction_reverted = auto()
    invalid_batch_settlement_evm_channel_busy = auto()
    invalid_batch_settlement_evm_channel_id_invalid = auto()
    invalid_batch_settlement_evm_verification_state_unavailable = auto()
    invalid_batch_settlement_evm_charge_exceeds_signed_cumulative = auto()
    invalid_batch_settlement_evm_missing_channel = auto()

    @property
    def cls(self) -> ReasonClass:
        """The class of this reason."""
        return SYNONYMS[self.value]


_C = ReasonClass
# class -> every known spelling: Python SDK first, then TypeScript / Go, then the spec registry and v1.
_SPELLINGS: dict[ReasonClass, tuple[str, ...]] = {
    _C.scheme: (
        "unsupported_scheme",
        "invalid_exact_evm_scheme",
        "invalid_scheme",
        "invalid_upto_evm_scheme",
        "invalid_batch_settlement_evm_scheme",
    ),
    _C.network: (
        "network_mismatch",
        "invalid_exact_evm_network_mismatch",
        "invalid_network",
        "invalid_upto_evm_network_mismatch",
        "invalid_batch_settlement_evm_network_mismatch",
    ),
    _C.network_config: (
        "invalid_exact_evm_failed_to_get_network_config",
        "invalid_exact_evm_failed_to_get_asset_info",
        "invalid_upto_evm_failed_to_get_network_config",
    ),
    _C.eip712_domain: (
        "missing_eip712_domain",
        "invalid_exact_evm_missing_eip712_domain",
        "invalid_batch_settlement_evm_missing_eip712_domain",
    ),
    _C.recipient: (
        "invalid_exact_evm_payload_recipient_mismatch",
        "invalid_exact_evm_recipient_mismatch",
        "invalid_permit2_recipient_mismatch",
        "permit2_invalid_destination",
        "invalid_batch_settlement_evm_receiver_mismatch",
    ),
    _C.amount: (
        "invalid_exact_evm_payload_authorization_value_mismatch",
        "invalid_exact_evm_authorization_value",
        "invalid_exact_evm_authorization_value_mismatch",
        "invalid_exact_evm_payload_authorization_value",
        "permit2_amount_mismatch",
        "permit2_invalid_amount",
        "invalid_batch_settlement_evm_permit2_amount_mismatch",
    ),
    _C.expired: (
        "invalid_exact_evm_payload_authorization_valid_before",
        "permit2_deadline_expired",
        "invalid_batch_settlement_evm_payload_authorization_valid_before",
        "invalid_batch_settlement_evm_permit2_deadline_expired",
    ),
    _C.not_yet_valid: (
        "invalid_exact_evm_payload_authorization_valid_after",
        "permit2_not_yet_valid",
        "invalid_batch_settlement_evm_payload_authorization_valid_after",
    ),
    _C.signature: (
        "invalid_exact_evm_payload_signature",
        "invalid_exact_evm_signature",
        # Python SDK 2.25: recovery raised (e.g. bytes that are no signature at all)
        "invalid_exact_evm_failed_to_verify_signature",
        # smart-wallet (ERC-6492) signatures that cannot be checked
        "invalid_exact_evm_payload_undeployed_smart_wallet",
        "eip6492_factory_not_allowed",
        "invalid_permit2_signature",
        "invalid_batch_settlement_evm_voucher_signature",
        "invalid_batch_settlement_evm_eip6492_factory_not_allowed",
        "invalid_batch_settlement_evm_receive_authorization_signature",
        "invalid_batch_settlement_evm_permit2_invalid_signature",
    ),
    _C.nonce_used: ("invalid_exact_evm_nonce_already_used",),
    _C.balance: (
        "invalid_exact_evm_insufficient_balance",
        "insufficient_funds",
        "permit2_insufficient_balance",
        "invalid_batch_settlement_evm_insufficient_balance",
    ),
    _C.token_name: ("invalid_exact_evm_token_name_mismatch",),
    _C.token_version: ("invalid_exact_evm_token_version_mismatch",),
    _C.eip3009_unsupported: ("invalid_exact_evm_eip3009_not_supported",),
    _C.asset_not_contract: ("asset_not_deployed_contract",),
    _C.simulation: (
        "invalid_exact_evm_transaction_simulation_failed",
        "invalid_batch_settlement_evm_deposit_simulation_failed",
        "invalid_batch_settlement_evm_claim_simulation_failed",
        "invalid_batch_settlement_evm_settle_simulation_failed",
        "invalid_batch_settlement_evm_refund_simulation_failed",
    ),
    _C.transaction_failed: (
        "transaction_failed",
        "invalid_exact_evm_transaction_failed",
        "invalid_transaction_state",
        "smart_wallet_deployment_failed",
        "erc20_approval_tx_failed",
        "erc20_approval_broadcast_failed",
        "invalid_upto_evm_transaction_failed",
        "invalid_batch_settlement_evm_deposit_transaction_failed",
        "invalid_batch_settlement_evm_smart_wallet_deployment_failed",
        "invalid_batch_settlement_evm_claim_transaction_failed",
        "invalid_batch_settlement_evm_settle_transaction_failed",
        "invalid_batch_settlement_evm_refund_transaction_failed",
        "invalid_batch_settlement_evm_erc20_approval_broadcast_failed",
        "invalid_batch_settlement_evm_transaction_reverted",
    ),
    _C.duplicate: ("duplicate_settlement",),
    _C.malformed_payload: (
        "invalid_payload",
        "invalid_batch_settlement_evm_payload_type",
        "invalid_batch_settlement_evm_deposit_payload",
        "invalid_batch_settlement_evm_voucher_payload",
        "invalid_batch_settlement_evm_claim_payload",
        "invalid_batch_settlement_evm_settle_payload",
        "invalid_batch_settlement_evm_unknown_settle_action",
        "invalid_batch_settlement_evm_refund_payload",
        "invalid_batch_settlement_evm_refund_amount_invalid",
        "invalid_batch_settlement_evm_erc3009_authorization_required",
        "invalid_batch_settlement_evm_permit2_authorization_required",
        "invalid_batch_settlement_evm_channel_id_invalid",
    ),
    _C.malformed_requirements: ("invalid_payment_requirements",),
    _C.version: ("invalid_x402_version",),
    _C.no_matching_requirements: ("no_matching_payment_requirements",),
    _C.settlement_pending: (
        "settlement_pending",
        "invalid_batch_settlement_evm_wait_for_receipt_failed",
    ),
    _C.transfer_event_mismatch: ("invalid_exact_evm_transfer_event_mismatch",),
    _C.spender: (
        "invalid_permit2_spender",
        "invalid_batch_settlement_evm_permit2_invalid_spender",
    ),
    _C.token: (
        "permit2_token_mismatch",
        "invalid_batch_settlement_evm_token_mismatch",
    ),
    _C.allowance: (
        "permit2_allowance_required",
        "invalid_batch_settlement_evm_permit2_allowance_required",
    ),
    _C.facilitator: ("upto_facilitator_mismatch", "upto_unauthorized_facilitator"),
    _C.exceeds_maximum: (
        "invalid_upto_evm_payload_settlement_exceeds_amount",
        "upto_amount_exceeds_permitted",
        "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative",
    ),
    _C.sponsoring: (
        "invalid_eip2612_extension_format",
        "eip2612_from_mismatch",
        "eip2612_asset_mismatch",
        "eip2612_spender_not_permit2",
        "eip2612_deadline_expired",
        "permit2_2612_amount_mismatch",
        "invalid_erc20_approval_extension_format",
        "erc20_approval_from_mismatch",
        "erc20_approval_asset_mismatch",
        "erc20_approval_spender_not_permit2",
        "erc20_approval_tx_invalid_signature",
        "erc20_approval_tx_signer_mismatch",
        "erc20_approval_tx_wrong_target",
        "erc20_approval_tx_wrong_selector",
        "erc20_approval_tx_invalid_calldata",
        "erc20_approval_tx_wrong_spender",
        "erc20_approval_tx_parse_failed",
        "erc20_approval_tx_wrong_nonce",
        "erc20_approval_tx_too_costly",
        "invalid_batch_settlement_evm_eip2612_amount_mismatch",
        "invalid_batch_settlement_evm_eip2612_owner_mismatch",
        "invalid_batch_settlement_evm_eip2612_asset_mismatch",
        "invalid_batch_settlement_evm_eip2612_spender_mismatch",
        "invalid_batch_settlement_evm_eip2612_deadline_expired",
        "invalid_batch_settlement_evm_eip2612_invalid_format",
        "invalid_batch_settlement_evm_eip2612_invalid_signature",
        "invalid_batch_settlement_evm_erc20_approval_unavailable",
        "invalid_batch_settlement_evm_erc20_approval_invalid_format",
        "invalid_batch_settlement_evm_erc20_approval_from_mismatch",
        "invalid_batch_settlement_evm_erc20_approval_asset_mismatch",
        "invalid_batch_settlement_evm_erc20_approval_wrong_spender",
    ),
    _C.channel_not_found: (
        "invalid_batch_settlement_evm_channel_not_found",
        "invalid_batch_settlement_evm_missing_channel",
    ),
    _C.channel_id: ("invalid_batch_settlement_evm_channel_id_mismatch",),
    _C.chain_read: (
        "invalid_batch_settlement_evm_channel_state_read_failed",
        "invalid_batch_settlement_evm_rpc_read_failed",
        "invalid_batch_settlement_evm_verification_state_unavailable",
    ),
    _C.receiver_authorizer: ("invalid_batch_settlement_evm_receiver_authorizer_mismatch",),
    _C.authorizer: (
        "invalid_batch_settlement_evm_authorizer_address_mismatch",
        "invalid_batch_settlement_evm_authorizer_not_configured",
    ),
    _C.withdraw_delay: ("invalid_batch_settlement_evm_withdraw_delay_mismatch",),
    _C.withdraw_delay_range: ("invalid_batch_settlement_evm_withdraw_delay_out_of_range",),
    _C.exceeds_balance: ("invalid_batch_settlement_evm_cumulative_exceeds_balance",),
    _C.below_claimed: ("invalid_batch_settlement_evm_cumulative_below_claimed",),
    _C.cumulative_mismatch: ("invalid_batch_settlement_evm_cumulative_amount_mismatch",),
    _C.below_min_deposit: ("invalid_batch_settlement_evm_deposit_below_min_deposit",),
    _C.nothing_to_settle: ("invalid_batch_settlement_evm_nothing_to_settle",),
    _C.nothing_to_refund: ("invalid_batch_settlement_evm_refund_no_balance",),
    _C.channel_busy: ("invalid_batch_settlement_evm_channel_busy",),
}


def _build() -> Mapping[str, ReasonClass]:
    table: dict[str, ReasonClass] = {}
    for cls, spellings in _SPELLINGS.items():
        for spelling in spellings:
            if spelling in table:
                raise AssertionError(f"reason spelling {spelling!r} listed twice")
            table[spelling] = cls
    return MappingProxyType(table)


#: Every known spelling (lower case) -> its class. Read-only.
SYNONYMS: Mapping[str, ReasonClass] = _build()


def reason_class(code: str | None) -> ReasonClass:
    """The class of a reason code in any known spelling; ``unknown`` for None or an unknown code."""
    if not isinstance(code, str):
        return ReasonClass.unknown
    return SYNONYMS.get(code.strip().lower(), ReasonClass.unknown)


def same_class(a: str | None, b: str | None) -> bool:
    """True when both codes are known and name the same condition."""
    cls = reason_class(a)
    return cls is not ReasonClass.unknown and cls is reason_class(b)
