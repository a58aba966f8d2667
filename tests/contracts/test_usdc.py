"""The USDC-like token: ERC-20 basics, the EIP-712 domain, and EIP-3009 with FiatToken's reverts."""

import os
import re

import pytest
from eth_abi import decode
from eth_tester.exceptions import TransactionFailed
from eth_utils import event_signature_to_log_topic, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import (
    INITIAL_BALANCE,
    Chain,
    auth_args,
    authorization,
    domain_separator,
    new_chain,
    new_payer,
    sign,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x" + "00" * 20
HOUR = 3600

TRANSFER_TOPIC = event_signature_to_log_topic("Transfer(address,address,uint256)")
USED_TOPIC = event_signature_to_log_topic("AuthorizationUsed(address,bytes32)")
CANCELED_TOPIC = event_signature_to_log_topic("AuthorizationCanceled(address,bytes32)")


def reverts(reason: str):
    return pytest.raises(TransactionFailed, match=f"^{re.escape(reason)}$")


def topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


def signed_transfer(chain, payer, to, value, valid_after=0, valid_before=None, nonce=None):
    valid_before = valid_before if valid_before is not None else chain.latest_timestamp() + HOUR
    auth = authorization(payer, to, value, valid_after, valid_before, nonce)
    return auth, sign(payer, chain, "TransferWithAuthorization", auth)


def submit(chain: Chain, auth, signature, function="transferWithAuthorization", sender=None):
    return chain.transact(
        chain.token, function, *auth_args(auth, *signature), sender=sender or chain.accounts[3]
    )


# ---------------------------------------------------------------- metadata and ERC-20


def test_metadata(chain):
    token = chain.token
    assert chain.call(token, "name") == "USD Coin"
    assert chain.call(token, "symbol") == "USDC"
    assert chain.call(token, "decimals") == 6
    assert chain.call(token, "version") == "2"
    assert chain.call(token, "totalSupply") == 0
    assert to_checksum_address(chain.call(token, "minter")) == chain.accounts[0]


def test_domain_separator_matches_eip712(chain):
    assert chain.call(chain.token, "DOMAIN_SEPARATOR") == domain_separator(chain)


def test_domain_separator_follows_name_and_version():
    other = new_chain(name="Bridged USDC", version="1")
    assert other.call(other.token, "version") == "1"
    separator = other.call(other.token, "DOMAIN_SEPARATOR")
    assert separator == domain_separator(other, "Bridged USDC", "1")
    assert separator != domain_separator(other)


def test_mint_only_by_minter(chain):
    holder = chain.accounts[1]
    receipt = chain.transact(chain.token, "mint", holder, 500)
    [log] = receipt["logs"]
    assert log["topics"][0] == "0x" + TRANSFER_TOPIC.hex()
    assert topic_address(log["topics"][1]) == to_checksum_address(ZERO_ADDRESS)
    assert chain.balance(holder) == 500
    assert chain.call(chain.token, "totalSupply") == 500
    with reverts("FiatToken: caller is not a minter"):
        chain.transact(chain.token, "mint", holder, 1, sender=holder)
    with reverts("FiatToken: mint to the zero address"):
        chain.transact(chain.token, "mint", ZERO_ADDRESS, 1)


def test_erc20_transfer_approve_transfer_from(chain):
    alice, bob, carol = chain.accounts[1:4]
    chain.transact(chain.token, "mint", alice, 1_000)
    chain.transact(chain.token, "transfer", bob, 300, sender=alice)
    assert (chain.balance(alice), chain.balance(bob)) == (700, 300)
    with reverts("ERC20: transfer amount exceeds balance"):
        chain.transact(chain.token, "transfer", bob, 701, sender=alice)
    with reverts("ERC20: transfer to the zero address"):
        chain.transact(chain.token, "transfer", ZERO_ADDRESS, 1, sender=alice)

    chain.transact(chain.token, "approve", carol, 200, sender=alice)
    assert chain.call(chain.token, "allowance", alice, carol) == 200
    with reverts("ERC20: transfer amount exceeds allowance"):
        chain.transact(chain.token, "transferFrom", alice, carol, 201, sender=carol)
    chain.transact(chain.token, "transferFrom", alice, carol, 150, sender=carol)
    assert chain.call(chain.token, "allowance", alice, carol) == 50
    assert (chain.balance(alice), chain.balance(carol)) == (550, 150)


# ---------------------------------------------------------------- EIP-3009 success


def test_transfer_with_authorization_moves_funds(chain, payer):
    payee = new_payer().address
    auth, signature = signed_transfer(chain, payer, payee, 1_250_000)
    assert chain.call(chain.token, "authorizationState", payer.address, auth["nonce"]) is False

    receipt = submit(chain, auth, signature)

    assert chain.balance(payer.address) == INITIAL_BALANCE - 1_250_000
    assert chain.balance(payee) == 1_250_000
    assert chain.call(chain.token, "authorizationState", payer.address, auth["nonce"]) is True
    used, transfer = receipt["logs"]
    assert used["topics"] == [
        "0x" + USED_TOPIC.hex(),
        "0x" + "00" * 12 + payer.address[2:].lower(),
        "0x" + auth["nonce"].hex(),
    ]
    assert transfer["topics"][0] == "0x" + TRANSFER_TOPIC.hex()
    assert topic_address(transfer["topics"][1]) == payer.address
    assert topic_address(transfer["topics"][2]) == payee
    assert decode(["uint256"], bytes.fromhex(transfer["data"][2:])) == (1_250_000,)


def test_gas_of_transfer_with_authorization(chain, payer):
    payee = new_payer().address
    first = submit(chain, *signed_transfer(chain, payer, payee, 10))["gas_used"]
    second = submit(chain, *signed_transfer(chain, payer, payee, 10))["gas_used"]
    print(f"\ntransferWithAuthorization gas: first to a fresh payee {first}, second {second}")
    # The first one pays for creating the payee's balance slot (EIP-2200 zero -> non-zero).
    assert 60_000 < second < first < 100_000


def test_receive_with_authorization_only_by_payee(chain, payer):
    payee = chain.accounts[2]
    auth = authorization(payer, payee, 77, 0, chain.latest_timestamp() + HOUR)
    signature = sign(payer, chain, "ReceiveWithAuthorization", auth)
    with reverts("FiatTokenV2: caller must be the payee"):
        submit(chain, auth, signature, "receiveWithAuthorization", sender=chain.accounts[1])
    submit(chain, auth, signature, "receiveWithAuthorization", sender=payee)
    assert chain.balance(payee) == 77
    # A receive authorization is not a transfer authorization (different typehash).
    other = authorization(payer, payee, 1, 0, chain.latest_timestamp() + HOUR)
    with reverts("FiatTokenV2: invalid signature"):
        submit(chain, other, sign(payer, chain, "ReceiveWithAuthorization", other))


def test_cancel_then_use(chain, payer):
    auth, signature = signed_transfer(chain, payer, chain.accounts[1], 5)
    cancel = {"authorizer": payer.address, "nonce": auth["nonce"]}
    cancel_sig = sign(payer, chain, "CancelAuthorization", cancel)

    receipt = chain.transact(chain.token, "cancelAuthorization", payer.address, auth["nonce"], *cancel_sig)
    [log] = receipt["logs"]
    assert log["topics"][0] == "0x" + CANCELED_TOPIC.hex()
    assert chain.call(chain.token, "authorizationState", payer.address, auth["nonce"]) is True
    with reverts("FiatTokenV2: authorization is used or canceled"):
        submit(chain, auth, signature)
    with reverts("FiatTokenV2: authorization is used or canceled"):
        chain.transact(chain.token, "cancelAuthorization", payer.address, auth["nonce"], *cancel_sig)
    assert chain.balance(chain.accounts[1]) == 0


def test_cancel_needs_the_authorizers_signature(chain, payer):
    nonce = os.urandom(32)
    stranger = new_payer()
    forged = sign(stranger, chain, "CancelAuthorization", {"authorizer": payer.address, "nonce": nonce})
    with reverts("FiatTokenV2: invalid signature"):
        chain.transact(chain.token, "cancelAuthorization", payer.address, nonce, *forged)


# ---------------------------------------------------------------- EIP-3009 reverts


def test_replay_is_rejected(chain, payer):
    auth, signature = signed_transfer(chain, payer, chain.accounts[1], 5)
    submit(chain, auth, signature)
    with reverts("FiatTokenV2: authorization is used or canceled"):
        submit(chain, auth, signature)


def test_not_yet_valid(chain, payer):
    now = chain.latest_timestamp()
    auth, signature = signed_transfer(chain, payer, chain.accounts[1], 5, now + HOUR, now + 2 * HOUR)
    with reverts("FiatTokenV2: authorization is not yet valid"):
        submit(chain, auth, signature)
    chain.time_travel(now + HOUR + 60)
    submit(chain, auth, signature)
    assert chain.balance(chain.accounts[1]) == 5


def test_expired(chain, payer):
    now = chain.latest_timestamp()
    auth, signature = signed_transfer(chain, payer, chain.accounts[1], 5, 0, now + 60)
    chain.time_travel(now + 120)
    with reverts("FiatTokenV2: authorization is expired"):
        submit(chain, auth, signature)


def test_high_s_is_rejected(chain, payer):
    auth, (v, r, s) = signed_transfer(chain, payer, chain.accounts[1], 5)
    # (n - s, flipped v) is the malleable twin: it recovers the same signer.
    high_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
    with reverts("ECRecover: invalid signature 's' value"):
        submit(chain, auth, (55 - v, r, high_s))
    submit(chain, auth, (v, r, s))


def test_bad_v_is_rejected(chain, payer):
    auth, (_, r, s) = signed_transfer(chain, payer, chain.accounts[1], 5)
    with reverts("ECRecover: invalid signature 'v' value"):
        submit(chain, auth, (29, r, s))


def test_unrecoverable_signature_is_rejected(chain, payer):
    auth, (v, _, s) = signed_transfer(chain, payer, chain.accounts[1], 5)
    with reverts("ECRecover: invalid signature"):
        submit(chain, auth, (v, b"\x00" * 32, s))


def test_wrong_signer_or_altered_terms_are_rejected(chain, payer):
    stranger = new_payer()
    auth = authorization(payer, chain.accounts[1], 5, 0, chain.latest_timestamp() + HOUR)
    with reverts("FiatTokenV2: invalid signature"):
        submit(chain, auth, sign(stranger, chain, "TransferWithAuthorization", auth))
    signature = sign(payer, chain, "TransferWithAuthorization", auth)
    with reverts("FiatTokenV2: invalid signature"):
        submit(chain, {**auth, "value": 6}, signature)


def test_insufficient_balance(chain, payer):
    auth, signature = signed_transfer(chain, payer, chain.accounts[1], INITIAL_BALANCE + 1)
    with reverts("ERC20: transfer amount exceeds balance"):
        submit(chain, auth, signature)
    # The revert undoes the nonce too, so the authorization stays usable in principle.
    assert chain.call(chain.token, "authorizationState", payer.address, auth["nonce"]) is False


def test_transfer_to_zero_address(chain, payer):
    auth, signature = signed_transfer(chain, payer, ZERO_ADDRESS, 1)
    with reverts("ERC20: transfer to the zero address"):
        submit(chain, auth, signature)


def test_checks_run_in_fiattoken_order(chain, payer):
    now = chain.latest_timestamp()
    stranger = new_payer()
    # Time window before nonce before signature before balance.
    early = authorization(payer, chain.accounts[1], INITIAL_BALANCE + 1, now + HOUR, now - HOUR)
    with reverts("FiatTokenV2: authorization is not yet valid"):
        submit(chain, early, (29, b"\x00" * 32, b"\xff" * 32))
    late = authorization(payer, chain.accounts[1], INITIAL_BALANCE + 1, 0, now - HOUR)
    with reverts("FiatTokenV2: authorization is expired"):
        submit(chain, late, (29, b"\x00" * 32, b"\xff" * 32))

    auth, signature = signed_transfer(chain, payer, chain.accounts[1], 1)
    submit(chain, auth, signature)
    reused = {**auth, "value": INITIAL_BALANCE + 1}
    with reverts("FiatTokenV2: authorization is used or canceled"):
        submit(chain, reused, (29, b"\x00" * 32, b"\xff" * 32))

    fresh = authorization(payer, chain.accounts[1], INITIAL_BALANCE + 1, 0, now + HOUR)
    with reverts("ECRecover: invalid signature 's' value"):
        submit(chain, fresh, (29, b"\x00" * 32, b"\xff" * 32))
    with reverts("FiatTokenV2: invalid signature"):
        submit(chain, fresh, sign(stranger, chain, "TransferWithAuthorization", fresh))


# ---------------------------------------------------------------- property


@pytest.fixture(scope="module")
def shared_chain():
    chain = new_chain()
    holder = new_payer()
    chain.transact(chain.token, "mint", holder.address, INITIAL_BALANCE)
    return chain, holder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value_fraction=st.integers(min_value=0, max_value=10**6),
    after_offset=st.integers(min_value=1, max_value=10**9),
    before_offset=st.integers(min_value=60, max_value=10**9),
    nonce=st.binary(min_size=32, max_size=32),
    payee_index=st.integers(min_value=0, max_value=2),
)
def test_valid_authorizations_move_exactly_value(
    shared_chain, value_fraction, after_offset, before_offset, nonce, payee_index
):
    chain, holder = shared_chain
    if chain.call(chain.token, "authorizationState", holder.address, nonce):
        return  # hypothesis may repeat a nonce across examples
    payee = chain.accounts[payee_index]
    balance = chain.balance(holder.address)
    value = balance * value_fraction // 10**6
    now = chain.latest_timestamp()
    supply = chain.call(chain.token, "totalSupply")
    payee_before = chain.balance(payee)

    auth, signature = signed_transfer(
        chain, holder, payee, value, max(0, now - after_offset), now + before_offset, nonce
    )
    submit(chain, auth, signature)

    assert chain.balance(holder.address) == balance - value
    assert chain.balance(payee) == payee_before + value
    assert chain.call(chain.token, "totalSupply") == supply
    assert chain.call(chain.token, "authorizationState", holder.address, nonce) is True
