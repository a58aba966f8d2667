"""Permit2's signature transfers on the embedded chain: the domain and digests against eth-account,
the checks in Permit2's order with its exact revert data, the nonce bitmap, and EIP-2098 signatures.

Permit2 is called directly here, by an account that is itself the signed spender; the proxies are
tested in `test_permit2_proxies.py`.
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.evm import MULTICALL3_ADDRESS
from x402sim.evm import permit2 as p2
from x402sim.evm.contracts import (
    EXACT_PERMIT2_PROXY,
    PERMIT2,
    UPTO_PERMIT2_PROXY,
    load_artifact,
)
from x402sim.evm.eip712 import Domain
from x402sim.evm.hashing import keccak
from x402sim.evm.token import encode_call, revert_reason, selector

from .permit2_helpers import NONCE_INVALIDATION, ZERO, World, error, error_string

NONCE_EDGES = st.sampled_from([0, 1, 255, 256, 257, 2**255, 2**256 - 2, 2**256 - 1])
NONCES = st.one_of(NONCE_EDGES, st.integers(0, 2**256 - 1))
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@pytest.fixture(scope="module")
def base() -> World:
    return World.build()


@pytest.fixture
def world(base: World):
    snapshot = base.chain.snapshot()
    yield base
    base.chain.revert(snapshot)


def witness_transfer_call(
    permit: p2.PermitTransfer, owner: str, signature: bytes, amount: int | None = None
) -> bytes:
    """Permit2's permitWitnessTransferFrom, as the proxies call it."""
    types = [
        "((address,uint256),uint256,uint256)",
        "(address,uint256)",
        "address",
        "bytes32",
        "string",
        "bytes",
    ]
    type_string = p2.UPTO_WITNESS_TYPE_STRING if permit.upto else p2.EXACT_WITNESS_TYPE_STRING
    args = [
        ((permit.token, permit.amount), permit.nonce, permit.deadline),
        (permit.to, permit.amount if amount is None else amount),
        owner,
        p2.witness_hash(permit),
        type_string,
        signature,
    ]
    return selector(f"permitWitnessTransferFrom({','.join(types)})") + encode(types, args)


def plain_transfer_call(
    token: str, amount: int, nonce: int, deadline: int, to: str, owner: str, sig: bytes
) -> bytes:
    types = ["((address,uint256),uint256,uint256)", "(address,uint256)", "address", "bytes"]
    args = [((token, amount), nonce, deadline), (to, amount), owner, sig]
    return selector(f"permitTransferFrom({','.join(types)})") + encode(types, args)


def signable_digest(typed: dict) -> bytes:
    message = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + message.version + message.header + message.body)


# ---------------------------------------------------------------- genesis, domain, digests


def test_genesis_code_is_the_artifacts(world: World):
    chain = world.chain
    for name, address in (
        (PERMIT2, p2.PERMIT2_ADDRESS),
        (EXACT_PERMIT2_PROXY, p2.EXACT_PERMIT2_PROXY_ADDRESS),
        (UPTO_PERMIT2_PROXY, p2.UPTO_PERMIT2_PROXY_ADDRESS),
    ):
        assert chain.code(address) == load_artifact(name).runtime_bytecode


@pytest.mark.parametrize("chain_id", [1, 8453, 31337])
def test_domain_separator_matches_eth_account(chain_id):
    permit = p2.PermitTransfer(ZERO, 1, ZERO, 0, 0, ZERO, 0)
    assert encode_typed_data(full_message=p2.permit_witness_typed_data(chain_id, permit)).header == (
        p2.permit2_domain_separator(chain_id)
    )


def test_the_contract_domain_separator(world: World):
    result = world.call(p2.PERMIT2_ADDRESS, encode_call("DOMAIN_SEPARATOR()"))
    assert result.output == p2.permit2_domain_separator(world.chain.chain_id)


@settings(max_examples=25, deadline=None)
@given(
    amount=st.integers(0, 2**256 - 1),
    nonce=NONCES,
    deadline=st.integers(0, 2**256 - 1),
    valid_after=st.integers(0, 2**256 - 1),
    addresses=st.tuples(ADDRESSES, ADDRESSES, ADDRESSES),
    facilitator=st.one_of(st.none(), ADDRESSES),
    chain_id=st.integers(1, 2**64),
)
def test_digest_equals_eth_accounts(amount, nonce, deadline, valid_after, addresses, facilitator, chain_id):
    token, spender, to = addresses
    permit = p2.PermitTransfer(token, amount, spender, nonce, deadline, to, valid_after, facilitator)
    typed = p2.permit_witness_typed_data(chain_id, permit)
    assert signable_digest(typed) == p2.permit_witness_digest(chain_id, permit)


@settings(max_examples=25, deadline=None)
@given(
    value=st.integers(0, 2**256 - 1),
    nonce=st.integers(0, 2**256 - 1),
    deadline=st.integers(0, 2**256 - 1),
    addresses=st.tuples(ADDRESSES, ADDRESSES, ADDRESSES),
)
def test_eip2612_digest_equals_eth_accounts(value, nonce, deadline, addresses):
    owner, spender, token = addresses
    domain = Domain("USD Coin", "2", 8453, token)
    permit = p2.Eip2612Permit(owner, spender, value, nonce, deadline)
    assert signable_digest(p2.eip2612_typed_data(domain, permit)) == p2.eip2612_digest(domain, permit)


def test_an_eth_account_signature_settles(world: World):
    """The payer signs with eth-account's typed-data path (a wallet's), not the fast digest."""
    permit = world.permit(777, spender=world.facilitator)
    typed = p2.permit_witness_typed_data(world.chain.chain_id, permit)
    signature = Account.sign_typed_data(world.payer_key, full_message=typed).signature
    receipt = world.send(
        world.facilitator_key, p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, signature)
    )
    assert receipt.success
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(world.payer, world.payee, 777)]


# ---------------------------------------------------------------- transfers and their checks


def test_witness_transfer_moves_the_requested_amount_and_spends_the_nonce(world: World):
    permit = world.permit(1_000, nonce=300, spender=world.facilitator)
    before = world.balance(world.payer)
    call = witness_transfer_call(permit, world.payer, world.sign(permit), amount=400)
    receipt = world.send(world.facilitator_key, p2.PERMIT2_ADDRESS, call)
    assert receipt.success
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(world.payer, world.payee, 400)]
    assert world.balance(world.payer) == before - 400
    assert p2.nonce_used(world.chain, world.payer, 300)
    assert not p2.nonce_used(world.chain, world.payer, 301)
    bitmap = world.call(p2.PERMIT2_ADDRESS, encode_call("nonceBitmap(address,uint256)", world.payer, 1))
    assert int.from_bytes(bitmap.output, "big") == 1 << (300 - 256)
    assert p2.allowance(world.chain, world.token, world.payer, p2.PERMIT2_ADDRESS) == p2.UINT256_MAX - 400


def test_plain_permit_transfer_from(world: World):
    chain = world.chain
    deadline = chain.now + 60
    struct_hash = keccak(
        keccak(
            b"PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)"
            b"TokenPermissions(address token,uint256 amount)"
        )
        + keccak(
            keccak(b"TokenPermissions(address token,uint256 amount)")
            + encode(["address", "uint256"], [world.token, 50])
        )
        + encode(["address", "uint256", "uint256"], [world.facilitator, 9, deadline])
    )
    digest = keccak(b"\x19\x01" + p2.permit2_domain_separator(chain.chain_id) + struct_hash)
    signature = Account.unsafe_sign_hash(digest, world.payer_key).signature
    call = plain_transfer_call(world.token, 50, 9, deadline, world.payee, world.payer, signature)
    receipt = world.send(world.facilitator_key, p2.PERMIT2_ADDRESS, call)
    assert receipt.success
    assert world.balance(world.payee) == 50
    assert p2.nonce_used(chain, world.payer, 9)


def test_deadline_is_inclusive_then_signature_expired(world: World):
    permit = world.permit(spender=world.facilitator, deadline=world.chain.now)
    call = witness_transfer_call(permit, world.payer, world.sign(permit))
    assert world.call(p2.PERMIT2_ADDRESS, call).success
    world.chain.advance(1)
    result = world.call(p2.PERMIT2_ADDRESS, call)
    assert result.output == error("SignatureExpired(uint256)", permit.deadline)
    assert result.revert_reason == f"SignatureExpired({permit.deadline})"


def test_requested_amount_above_permitted(world: World):
    permit = world.permit(1_000, spender=world.facilitator)
    result = world.call(
        p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, world.sign(permit), amount=1_001)
    )
    assert result.output == error("InvalidAmount(uint256)", 1_000)
    assert result.revert_reason == "InvalidAmount(1000)"


def test_a_nonce_is_spent_once(world: World):
    permit = world.permit(spender=world.facilitator)
    call = witness_transfer_call(permit, world.payer, world.sign(permit))
    assert world.send(world.facilitator_key, p2.PERMIT2_ADDRESS, call).success
    receipt = world.send(world.facilitator_key, p2.PERMIT2_ADDRESS, call)
    assert not receipt.success
    assert receipt.revert_reason == "InvalidNonce()"
    assert world.balance(world.payee) == permit.amount


def test_signature_of_another_key_is_invalid_signer(world: World):
    permit = world.permit(spender=world.facilitator)
    result = world.call(
        p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, world.sign(permit, world.stranger_key))
    )
    assert result.output == error("InvalidSigner()")


def test_a_caller_who_is_not_the_signed_spender_recovers_another_signer(world: World):
    permit = world.permit(spender=world.facilitator)
    call = witness_transfer_call(permit, world.payer, world.sign(permit))
    assert world.call(p2.PERMIT2_ADDRESS, call, sender=world.stranger).output == error("InvalidSigner()")


@pytest.mark.parametrize("length", [0, 63, 66, 130])
def test_signature_length(world: World, length):
    permit = world.permit(spender=world.facilitator)
    signature = (world.sign(permit) * 3)[:length]
    result = world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, signature))
    assert result.output == error("InvalidSignatureLength()")


@pytest.mark.parametrize("v", [0, 1, 26, 29])
def test_an_unrecoverable_signature_is_invalid_signature(world: World, v):
    permit = world.permit(spender=world.facilitator)
    signature = world.sign(permit)[:64] + bytes([v])
    result = world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, signature))
    assert result.output == error("InvalidSignature()")


def test_high_s_twin_is_accepted_as_by_permit2(world: World):
    """Permit2 has no low-s rule: the malleable twin (n - s, flipped v) recovers the same signer."""
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    permit = world.permit(spender=world.facilitator)
    signature = world.sign(permit)
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    assert world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, twin)).success


def test_eip2098_compact_signature(world: World):
    permit = world.permit(spender=world.facilitator)
    signature = world.sign(permit)
    vs = int.from_bytes(signature[32:64], "big") | ((signature[64] - 27) << 255)
    compact = signature[:32] + vs.to_bytes(32, "big")
    receipt = world.send(
        world.facilitator_key, p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, compact)
    )
    assert receipt.success
    assert world.balance(world.payee) == permit.amount


def test_without_token_allowance_the_transfer_fails(world: World):
    world.send(world.payer_key, world.token, p2.approve_call(p2.PERMIT2_ADDRESS, 0))
    permit = world.permit(spender=world.facilitator)
    result = world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, world.sign(permit)))
    assert result.output == error_string("TRANSFER_FROM_FAILED")
    assert revert_reason(result.output) == "TRANSFER_FROM_FAILED"


def test_check_order_expiry_before_amount_before_nonce(world: World):
    permit = world.permit(1_000, spender=world.facilitator, deadline=world.chain.now - 1)
    bad = witness_transfer_call(permit, world.payer, b"", amount=2_000)
    assert world.call(p2.PERMIT2_ADDRESS, bad).output == error("SignatureExpired(uint256)", permit.deadline)
    fresh = world.permit(1_000, spender=world.facilitator)
    assert world.call(
        p2.PERMIT2_ADDRESS, witness_transfer_call(fresh, world.payer, b"", amount=2_000)
    ).output == (error("InvalidAmount(uint256)", 1_000))
    assert world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(fresh, world.payer, b"")).output == (
        error("InvalidSignatureLength()")
    )


# ---------------------------------------------------------------- the nonce bitmap


def test_invalidate_unordered_nonces(world: World):
    mask = (1 << 0) | (1 << 7) | (1 << 255)
    receipt = world.send(world.payer_key, p2.PERMIT2_ADDRESS, p2.invalidate_nonces_call(2, mask))
    assert receipt.success
    (log,) = receipt.logs
    assert log.topics == (NONCE_INVALIDATION, bytes(12) + bytes.fromhex(world.payer[2:]))
    assert log.data == encode(["uint256", "uint256"], [2, mask])
    for bit in range(256):
        assert p2.nonce_used(world.chain, world.payer, 512 + bit) == bool(mask >> bit & 1)
    permit = world.permit(spender=world.facilitator, nonce=512 + 7)
    result = world.call(p2.PERMIT2_ADDRESS, witness_transfer_call(permit, world.payer, world.sign(permit)))
    assert result.output == error("InvalidNonce()")


@settings(max_examples=25, deadline=None)
@given(nonce=NONCES, amount=st.integers(1, 10**9), upto=st.booleans())
def test_any_nonce_sets_exactly_its_bit(base: World, nonce, amount, upto):
    world = base
    snapshot = world.chain.snapshot()
    try:
        permit = world.permit(amount, nonce=nonce, spender=world.facilitator, upto=upto)
        call = witness_transfer_call(permit, world.payer, world.sign(permit))
        assert world.send(world.facilitator_key, p2.PERMIT2_ADDRESS, call).success
        word = world.call(
            p2.PERMIT2_ADDRESS, encode_call("nonceBitmap(address,uint256)", world.payer, nonce >> 8)
        )
        assert int.from_bytes(word.output, "big") == 1 << (nonce & 0xFF)
        assert p2.nonce_used(world.chain, world.payer, nonce)
        assert world.balance(world.payee) == amount
        assert world.call(p2.PERMIT2_ADDRESS, call).output == error("InvalidNonce()")
    finally:
        world.chain.revert(snapshot)


def test_revert_reason_names_only_well_formed_custom_errors():
    assert revert_reason(error("SignatureExpired(uint256)", 1_700_000_000)) == "SignatureExpired(1700000000)"
    assert revert_reason(error("InvalidAmount()")) == "InvalidAmount()"
    assert revert_reason(error("InvalidAmount(uint256)", 5)) == "InvalidAmount(5)"
    assert revert_reason(error("SignatureExpired(uint256)")) is None  # argument missing
    assert revert_reason(error("InvalidNonce()", 1)) is None  # trailing bytes
    assert revert_reason(error("SomethingElse()")) is None
    assert revert_reason(b"") is None


def test_an_owner_with_code_is_asked_by_eip1271(world: World):
    """An owner with code is not ecrecovered: Permit2 asks its isValidSignature, and an owner that
    has none (Multicall3 here) makes the call, and the transfer, revert without data."""
    permit = world.permit(spender=world.facilitator)
    result = world.call(
        p2.PERMIT2_ADDRESS, witness_transfer_call(permit, MULTICALL3_ADDRESS, world.sign(permit))
    )
    assert result.reverted
    assert result.output == b""
