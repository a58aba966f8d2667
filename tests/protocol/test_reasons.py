"""Reason codes: our spellings, every known synonym, and comparison by class."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from x402sim.protocol import SYNONYMS, Reason, ReasonClass, reason_class, same_class

C = ReasonClass

# Written out here rather than derived from the module, so that a change there must be made twice.
OWN_CLASS = {
    Reason.unsupported_scheme: C.scheme,
    Reason.network_mismatch: C.network,
    Reason.invalid_exact_evm_failed_to_get_network_config: C.network_config,
    Reason.missing_eip712_domain: C.eip712_domain,
    Reason.invalid_exact_evm_payload_recipient_mismatch: C.recipient,
    Reason.invalid_exact_evm_payload_authorization_value_mismatch: C.amount,
    Reason.invalid_exact_evm_payload_authorization_valid_before: C.expired,
    Reason.invalid_exact_evm_payload_authorization_valid_after: C.not_yet_valid,
    Reason.invalid_exact_evm_payload_signature: C.signature,
    Reason.invalid_exact_evm_nonce_already_used: C.nonce_used,
    Reason.invalid_exact_evm_insufficient_balance: C.balance,
    Reason.invalid_exact_evm_token_name_mismatch: C.token_name,
    Reason.invalid_exact_evm_token_version_mismatch: C.token_version,
    Reason.invalid_exact_evm_eip3009_not_supported: C.eip3009_unsupported,
    Reason.asset_not_deployed_contract: C.asset_not_contract,
    Reason.invalid_exact_evm_transaction_simulation_failed: C.simulation,
    Reason.transaction_failed: C.transaction_failed,
    Reason.duplicate_settlement: C.duplicate,
    Reason.invalid_payload: C.malformed_payload,
    Reason.invalid_payment_requirements: C.malformed_requirements,
    Reason.invalid_x402_version: C.version,
    Reason.no_matching_payment_requirements: C.no_matching_requirements,
    Reason.settlement_pending: C.settlement_pending,
    Reason.invalid_exact_evm_transfer_event_mismatch: C.transfer_event_mismatch,
    Reason.invalid_permit2_spender: C.spender,
    Reason.permit2_token_mismatch: C.token,
    Reason.permit2_allowance_required: C.allowance,
    Reason.upto_facilitator_mismatch: C.facilitator,
    Reason.invalid_upto_evm_payload_settlement_exceeds_amount: C.exceeds_maximum,
    Reason.invalid_eip2612_extension_format: C.sponsoring,
    Reason.invalid_batch_settlement_evm_channel_not_found: C.channel_not_found,
    Reason.invalid_batch_settlement_evm_channel_id_mismatch: C.channel_id,
    Reason.invalid_batch_settlement_evm_rpc_read_failed: C.chain_read,
    Reason.invalid_batch_settlement_evm_receiver_authorizer_mismatch: C.receiver_authorizer,
    Reason.invalid_batch_settlement_evm_authorizer_address_mismatch: C.authorizer,
    Reason.invalid_batch_settlement_evm_withdraw_delay_mismatch: C.withdraw_delay,
    Reason.invalid_batch_settlement_evm_withdraw_delay_out_of_range: C.withdraw_delay_range,
    Reason.invalid_batch_settlement_evm_cumulative_exceeds_balance: C.exceeds_balance,
    Reason.invalid_batch_settlement_evm_cumulative_below_claimed: C.below_claimed,
    Reason.invalid_batch_settlement_evm_cumulative_amount_mismatch: C.cumulative_mismatch,
    Reason.invalid_batch_settlement_evm_deposit_below_min_deposit: C.below_min_deposit,
    Reason.invalid_batch_settlement_evm_nothing_to_settle: C.nothing_to_settle,
    Reason.invalid_batch_settlement_evm_refund_no_balance: C.nothing_to_refund,
    Reason.invalid_batch_settlement_evm_channel_busy: C.channel_busy,
}
# The Permit2 and upto mechanisms' own spellings of conditions that already have a reason above
# (x402sim emits what the Python SDK emits for each mechanism), and the extensions' finer reasons.
MECHANISM_SPELLINGS = {
    Reason.invalid_permit2_recipient_mismatch: C.recipient,
    Reason.permit2_deadline_expired: C.expired,
    Reason.permit2_not_yet_valid: C.not_yet_valid,
    Reason.permit2_amount_mismatch: C.amount,
    Reason.invalid_permit2_signature: C.signature,
    Reason.permit2_insufficient_balance: C.balance,
    Reason.invalid_upto_evm_scheme: C.scheme,
    Reason.invalid_upto_evm_network_mismatch: C.network,
    Reason.invalid_upto_evm_failed_to_get_network_config: C.network_config,
    Reason.invalid_upto_evm_transaction_failed: C.transaction_failed,
    Reason.permit2_2612_amount_mismatch: C.sponsoring,
    **{
        r: C.sponsoring
        for r in Reason
        if r.value.startswith(("eip2612_", "erc20_approval_", "invalid_erc20_approval_"))
        or (
            r.value.startswith(
                ("invalid_batch_settlement_evm_eip2612_", "invalid_batch_settlement_evm_erc20_approval_")
            )
            and r is not Reason.invalid_batch_settlement_evm_erc20_approval_broadcast_failed
        )
    },
    # batch-settlement: the SDKs' spellings of conditions that have a reason above
    Reason.invalid_batch_settlement_evm_scheme: C.scheme,
    Reason.invalid_batch_settlement_evm_network_mismatch: C.network,
    Reason.invalid_batch_settlement_evm_missing_eip712_domain: C.eip712_domain,
    Reason.invalid_batch_settlement_evm_payload_type: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_channel_state_read_failed: C.chain_read,
    Reason.invalid_batch_settlement_evm_receiver_mismatch: C.recipient,
    Reason.invalid_batch_settlement_evm_authorizer_not_configured: C.authorizer,
    Reason.invalid_batch_settlement_evm_token_mismatch: C.token,
    Reason.invalid_batch_settlement_evm_voucher_signature: C.signature,
    Reason.invalid_batch_settlement_evm_insufficient_balance: C.balance,
    Reason.invalid_batch_settlement_evm_deposit_payload: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_deposit_simulation_failed: C.simulation,
    Reason.invalid_batch_settlement_evm_deposit_transaction_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_eip6492_factory_not_allowed: C.signature,
    Reason.invalid_batch_settlement_evm_smart_wallet_deployment_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_voucher_payload: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_claim_payload: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_claim_simulation_failed: C.simulation,
    Reason.invalid_batch_settlement_evm_claim_transaction_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_settle_payload: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_settle_simulation_failed: C.simulation,
    Reason.invalid_batch_settlement_evm_settle_transaction_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_unknown_settle_action: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_refund_payload: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_refund_simulation_failed: C.simulation,
    Reason.invalid_batch_settlement_evm_refund_transaction_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_refund_amount_invalid: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_payload_authorization_valid_after: C.not_yet_valid,
    Reason.invalid_batch_settlement_evm_payload_authorization_valid_before: C.expired,
    Reason.invalid_batch_settlement_evm_receive_authorization_signature: C.signature,
    Reason.invalid_batch_settlement_evm_erc3009_authorization_required: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_permit2_authorization_required: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_permit2_invalid_spender: C.spender,
    Reason.invalid_batch_settlement_evm_permit2_amount_mismatch: C.amount,
    Reason.invalid_batch_settlement_evm_permit2_deadline_expired: C.expired,
    Reason.invalid_batch_settlement_evm_permit2_invalid_signature: C.signature,
    Reason.invalid_batch_settlement_evm_permit2_allowance_required: C.allowance,
    Reason.invalid_batch_settlement_evm_erc20_approval_broadcast_failed: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_wait_for_receipt_failed: C.settlement_pending,
    Reason.invalid_batch_settlement_evm_transaction_reverted: C.transaction_failed,
    Reason.invalid_batch_settlement_evm_channel_id_invalid: C.malformed_payload,
    Reason.invalid_batch_settlement_evm_verification_state_unavailable: C.chain_read,
    Reason.invalid_batch_settlement_evm_charge_exceeds_signed_cumulative: C.exceeds_maximum,
    Reason.invalid_batch_settlement_evm_missing_channel: C.channel_not_found,
}

# Section 5 of the reference notes, row by row (Python SDK, TS / Go SDK, spec registry / v1).
SECTION_5 = [
    (C.scheme, ["unsupported_scheme", "invalid_exact_evm_scheme", "invalid_scheme"]),
    (C.network, ["network_mismatch", "invalid_exact_evm_network_mismatch", "invalid_network"]),
    (C.eip712_domain, ["missing_eip712_domain", "invalid_exact_evm_missing_eip712_domain"]),
    (C.recipient, ["invalid_exact_evm_payload_recipient_mismatch", "invalid_exact_evm_recipient_mismatch"]),
    (
        C.amount,
        [
            "invalid_exact_evm_payload_authorization_value_mismatch",
            "invalid_exact_evm_authorization_value",
            "invalid_exact_evm_payload_authorization_value",
        ],
    ),
    (C.expired, ["invalid_exact_evm_payload_authorization_valid_before"]),
    (C.not_yet_valid, ["invalid_exact_evm_payload_authorization_valid_after"]),
    (C.signature, ["invalid_exact_evm_payload_signature", "invalid_exact_evm_signature"]),
    (C.nonce_used, ["invalid_exact_evm_nonce_already_used"]),
    (C.balance, ["invalid_exact_evm_insufficient_balance", "insufficient_funds"]),
    (
        C.transaction_failed,
        ["transaction_failed", "invalid_exact_evm_transaction_failed", "invalid_transaction_state"],
    ),
    (C.duplicate, ["duplicate_settlement"]),
]
# The "malformed" row lists three conditions that x402sim keeps apart.
MALFORMED_ROW = {
    "invalid_payload": C.malformed_payload,
    "invalid_payment_requirements": C.malformed_requirements,
    "invalid_x402_version": C.version,
}


def test_every_reason_has_its_own_class() -> None:
    assert set(OWN_CLASS) | set(MECHANISM_SPELLINGS) == set(Reason)
    assert not set(OWN_CLASS) & set(MECHANISM_SPELLINGS)
    for reason, cls in {**OWN_CLASS, **MECHANISM_SPELLINGS}.items():
        assert reason.cls is cls
        assert reason_class(reason) is cls
        assert reason.name == reason.value
    assert len(set(OWN_CLASS.values())) == len(OWN_CLASS)
    assert C.unknown not in OWN_CLASS.values()


@pytest.mark.parametrize(("cls", "spellings"), SECTION_5, ids=[row[0].value for row in SECTION_5])
def test_section_5_rows_share_their_class(cls: ReasonClass, spellings: list[str]) -> None:
    for spelling in spellings:
        assert SYNONYMS[spelling] is cls
        assert reason_class(spelling) is cls
    for a in spellings:
        for b in spellings:
            assert same_class(a, b)


def test_malformed_row() -> None:
    for spelling, cls in MALFORMED_ROW.items():
        assert reason_class(spelling) is cls
    assert not same_class("invalid_payload", "invalid_payment_requirements")


def test_rows_are_distinct() -> None:
    assert not same_class("network_mismatch", "unsupported_scheme")
    assert not same_class("invalid_exact_evm_signature", "invalid_exact_evm_payload_recipient_mismatch")
    assert not same_class("transaction_failed", "invalid_exact_evm_transaction_simulation_failed")


def test_python_and_ts_spellings_compare_equal() -> None:
    assert same_class("network_mismatch", "invalid_exact_evm_network_mismatch")
    assert same_class(Reason.invalid_exact_evm_payload_signature, "invalid_exact_evm_signature")


@pytest.mark.parametrize(
    "code", [" network_mismatch", "NETWORK_MISMATCH", "Network_Mismatch\n", "\tinvalid_network "]
)
def test_lookup_ignores_case_and_whitespace(code: str) -> None:
    assert reason_class(code) is C.network


def test_table_is_read_only_and_all_lower_case() -> None:
    with pytest.raises(TypeError):
        SYNONYMS["made_up"] = C.network  # type: ignore[index]
    assert all(key == key.strip().lower() for key in SYNONYMS)
    assert set(SYNONYMS.values()) == set(C) - {C.unknown}


@given(st.text(max_size=30).filter(lambda code: code.strip().lower() not in SYNONYMS))
def test_unknown_codes_never_compare_equal(code: str) -> None:
    assert reason_class(code) is C.unknown
    assert not same_class(code, code)
    assert not same_class(code, "network_mismatch")
    assert not same_class("network_mismatch", code)


def test_none_and_empty_are_unknown() -> None:
    assert reason_class(None) is C.unknown
    assert reason_class("") is C.unknown
    assert not same_class(None, None)
    assert not same_class("unknown", "unknown")
