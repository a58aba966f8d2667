"""EIP-2612 `permit` on the token contracts, with FiatToken v2's checks and revert strings: the
signature is made by eth-account's typed-data path and by `permit2.eip2612_digest`, and the
approval, the nonce and the Approval log are read back from the chain."""

from __future__ import annotations

import re

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from eth_utils import event_signature_to_log_topic, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from x402sim.evm import permit2 as p2
from x402sim.evm import sign_digest
from x402sim.evm.eip712 import Domain, split_signature
from x402sim.evm.token import encode_call

from .helpers import Chain, new_payer
from .permit2_helpers import World

APPROVAL_TOPIC = event_signature_to_log_topic("Approval(address,address,uint256)")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HOUR = 3600


def reverts(reason: str):
    return pytest.raises(TransactionFailed, match=f"^{re.escape(reason)}$")


def domain(chain: Chain) -> Domain:
    return Domain("USD Coin", "2", chain.chain_id, chain.token.address)


def signed(chain: Chain, key: bytes, permit: p2.Eip2612Permit) -> tuple[int, bytes, bytes]:
    typed = p2.eip2612_typed_data(domain(chain), permit)
    sig = Account.sign_typed_data(key, full_message=typed)
    return sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big")


def permit_args(permit: p2.Eip2612Permit, v: int, r: bytes, s: bytes) -> tuple:
    return (permit.owner, permit.spender, permit.value, permit.deadline, v, r, s)


def submit(chain: Chain, permit: p2.Eip2612Permit, signature) -> dict:
    return chain.transact(chain.token, "permit", *permit_args(permit, *signature), sender=chain.accounts[3])


def test_domain_separator_is_the_tokens(chain):
    assert chain.call(chain.token, "DOMAIN_SEPARATOR") == domain(chain).separator


def test_permit_sets_the_allowance_and_spends_the_nonce(chain):
    owner, spender = new_payer(), chain.accounts[2]
    assert chain.call(chain.token, "nonces", owner.address) == 0
    permit = p2.Eip2612Permit(owner.address, spender, 12_345, 0, chain.latest_timestamp() + HOUR)
    receipt = submit(chain, permit, signed(chain, owner.key, permit))
    assert chain.call(chain.token, "allowance", owner.address, spender) == 12_345
    assert chain.call(chain.token, "nonces", owner.address) == 1
    (log,) = receipt["logs"]
    assert bytes.fromhex(log["topics"][0][2:]) == APPROVAL_TOPIC
    assert to_checksum_address("0x" + log["topics"][1][-40:]) == owner.address
    assert to_checksum_address("0x" + log["topics"][2][-40:]) == to_checksum_address(spender)
    # The next permit must sign nonce 1, and replaces the allowance.
    second = p2.Eip2612Permit(owner.address, spender, 7, 1, chain.latest_timestamp() + HOUR)
    submit(chain, second, signed(chain, owner.key, second))
    assert chain.call(chain.token, "allowance", owner.address, spender) == 7


def test_fast_digest_signature_is_accepted(chain):
    owner = new_payer()
    permit = p2.Eip2612Permit(owner.address, chain.accounts[1], 1, 0, chain.latest_timestamp() + HOUR)
    signature = split_signature(sign_digest(owner.key, p2.eip2612_digest(domain(chain), permit)))
    submit(chain, permit, signature)
    assert chain.call(chain.token, "allowance", owner.address, chain.accounts[1]) == 1


def test_expired(chain):
    owner = new_payer()
    permit = p2.Eip2612Permit(owner.address, chain.accounts[1], 1, 0, chain.latest_timestamp() - 1)
    with reverts("FiatTokenV2: permit is expired"):
        submit(chain, permit, signed(chain, owner.key, permit))


def test_replay_and_wrong_nonce_are_invalid_signatures(chain):
    owner = new_payer()
    permit = p2.Eip2612Permit(owner.address, chain.accounts[1], 5, 0, chain.latest_timestamp() + HOUR)
    signature = signed(chain, owner.key, permit)
    submit(chain, permit, signature)
    with reverts("EIP2612: invalid signature"):
        submit(chain, permit, signature)
    ahead = p2.Eip2612Permit(owner.address, chain.accounts[1], 5, 7, chain.latest_timestamp() + HOUR)
    with reverts("EIP2612: invalid signature"):
        submit(chain, ahead, signed(chain, owner.key, ahead))
    assert chain.call(chain.token, "nonces", owner.address) == 1


def test_wrong_signer_and_tampered_value(chain):
    owner, other = new_payer(), new_payer()
    permit = p2.Eip2612Permit(owner.address, chain.accounts[1], 5, 0, chain.latest_timestamp() + HOUR)
    with reverts("EIP2612: invalid signature"):
        submit(chain, permit, signed(chain, other.key, permit))
    tampered = p2.Eip2612Permit(owner.address, chain.accounts[1], 6, 0, permit.deadline)
    with reverts("EIP2612: invalid signature"):
        submit(chain, tampered, signed(chain, owner.key, permit))


def test_malleable_and_malformed_signatures(chain):
    owner = new_payer()
    permit = p2.Eip2612Permit(owner.address, chain.accounts[1], 5, 0, chain.latest_timestamp() + HOUR)
    v, r, s = signed(chain, owner.key, permit)
    high_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
    with reverts("ECRecover: invalid signature 's' value"):
        submit(chain, permit, (55 - v, r, high_s))
    with reverts("ECRecover: invalid signature 'v' value"):
        submit(chain, permit, (29, r, s))


def test_zero_spender(chain):
    owner = new_payer()
    permit = p2.Eip2612Permit(owner.address, "0x" + "00" * 20, 5, 0, chain.latest_timestamp() + HOUR)
    with reverts("ERC20: approve to the zero address"):
        submit(chain, permit, signed(chain, owner.key, permit))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.integers(0, 2**256 - 1), extra=st.integers(0, 2**64))
def test_any_value_and_future_deadline(chain, value, extra):
    owner = new_payer()
    permit = p2.Eip2612Permit(
        owner.address, chain.accounts[1], value, 0, chain.latest_timestamp() + 1 + extra
    )
    submit(chain, permit, signed(chain, owner.key, permit))
    assert chain.call(chain.token, "allowance", owner.address, chain.accounts[1]) == value


def test_pyusd_has_permit_too():
    world = World.build("pyusd")
    chain = world.chain
    assert chain.token_name == "PayPal USD"
    nonce = p2.eip2612_nonce(chain, world.token, world.payer)
    permit = p2.Eip2612Permit(world.payer, world.stranger, 99, nonce, chain.now + 60)
    typed = p2.eip2612_typed_data(chain.domain, permit)
    sig = Account.sign_typed_data(world.payer_key, full_message=typed)
    call = encode_call(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        world.payer,
        world.stranger,
        99,
        permit.deadline,
        sig.v,
        sig.r.to_bytes(32, "big"),
        sig.s.to_bytes(32, "big"),
    )
    assert world.send(world.facilitator_key, world.token, call).success
    assert p2.allowance(chain, world.token, world.payer, world.stranger) == 99
    assert p2.eip2612_nonce(chain, world.token, world.payer) == nonce + 1
