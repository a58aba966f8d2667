"""The x402 exact and upto Permit2 proxies on the embedded chain: settlement moves what the witness
says, every check reverts with the official contracts' custom error in their order, and
settleWithPermit runs the token's EIP-2612 permit first, logging (not reverting on) its failure."""

from __future__ import annotations

import pytest
from eth_abi import decode
from hypothesis import given, settings
from hypothesis import strategies as st

from x402sim.evm import permit2 as p2
from x402sim.evm import sign_digest
from x402sim.evm.eip712 import split_signature
from x402sim.evm.hashing import keccak
from x402sim.evm.token import encode_call

from .permit2_helpers import (
    APPROVAL,
    FAILED_WITH_REASON,
    SETTLED,
    SETTLED_WITH_PERMIT,
    ZERO,
    World,
    error,
    error_string,
)

EXACT, UPTO = p2.EXACT_PERMIT2_PROXY_ADDRESS, p2.UPTO_PERMIT2_PROXY_ADDRESS


@pytest.fixture(scope="module")
def base() -> World:
    return World.build()


@pytest.fixture
def world(base: World):
    snapshot = base.chain.snapshot()
    yield base
    base.chain.revert(snapshot)


def word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def sign_2612(
    world: World, value: int, deadline: int | None = None, nonce: int | None = None, key: bytes | None = None
):
    """(value, deadline, v, r, s) of the payer's EIP-2612 permit for Permit2."""
    chain = world.chain
    deadline = chain.now + 600 if deadline is None else deadline
    nonce = p2.eip2612_nonce(chain, world.token, world.payer) if nonce is None else nonce
    permit = p2.Eip2612Permit(world.payer, p2.PERMIT2_ADDRESS, value, nonce, deadline)
    v, r, s = split_signature(sign_digest(key or world.payer_key, p2.eip2612_digest(chain.domain, permit)))
    return (value, deadline, v, r, s)


def settle(
    world: World,
    permit: p2.PermitTransfer,
    amount: int | None = None,
    *,
    owner: str | None = None,
    signature=None,
):
    owner = owner or world.payer
    signature = world.sign(permit) if signature is None else signature
    if permit.upto:
        return p2.upto_settle_call(permit, permit.amount if amount is None else amount, owner, signature)
    return p2.exact_settle_call(permit, owner, signature)


def revoke_approval(world: World) -> None:
    assert world.send(world.payer_key, world.token, p2.approve_call(p2.PERMIT2_ADDRESS, 0)).success


# ---------------------------------------------------------------- the read-only interface


@pytest.mark.parametrize(
    ("proxy", "type_string", "witness_type"),
    [
        (EXACT, p2.EXACT_WITNESS_TYPE_STRING, "Witness(address to,uint256 validAfter)"),
        (UPTO, p2.UPTO_WITNESS_TYPE_STRING, "Witness(address to,address facilitator,uint256 validAfter)"),
    ],
)
def test_constants(world: World, proxy, type_string, witness_type):
    assert (
        decode(["address"], world.call(proxy, encode_call("PERMIT2()")).output)[0].lower()
        == p2.PERMIT2_ADDRESS.lower()
    )
    assert (
        decode(["string"], world.call(proxy, encode_call("WITNESS_TYPE_STRING()")).output)[0] == type_string
    )
    assert world.call(proxy, encode_call("WITNESS_TYPEHASH()")).output == keccak(witness_type.encode())


def test_proxy_for():
    exact = p2.PermitTransfer(ZERO, 1, EXACT, 0, 0, ZERO, 0)
    upto = p2.PermitTransfer(ZERO, 1, UPTO, 0, 0, ZERO, 0, facilitator=ZERO)
    assert (p2.proxy_for(exact), p2.proxy_for(upto)) == (EXACT, UPTO)
    with pytest.raises(ValueError, match="upto permit"):
        p2.exact_settle_call(upto, ZERO, b"")
    with pytest.raises(ValueError, match="exact permit"):
        p2.upto_settle_call(exact, 1, ZERO, b"")


# ---------------------------------------------------------------- exact


def test_exact_settle_moves_the_permitted_amount_to_the_witness(world: World):
    permit = world.permit(2_500, nonce=77)
    before = world.balance(world.payer)
    receipt = world.send(world.facilitator_key, EXACT, settle(world, permit))
    assert receipt.success
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(world.payer, world.payee, 2_500)]
    assert any(log.address == EXACT and log.topics == (SETTLED,) for log in receipt.logs)
    assert world.balance(world.payer) == before - 2_500
    assert world.balance(world.payee) == 2_500
    assert p2.nonce_used(world.chain, world.payer, 77)


def test_exact_anyone_may_settle(world: World):
    """x402#2501: the exact proxy does not check its caller; the money still goes to witness.to."""
    permit = world.permit(100)
    receipt = world.send(world.stranger_key, EXACT, settle(world, permit))
    assert receipt.success
    assert world.balance(world.payee) == 100
    assert world.balance(world.stranger) == 0


@pytest.mark.parametrize("upto", [False, True])
def test_checks_in_order(world: World, upto):
    now = world.chain.now
    proxy = UPTO if upto else EXACT
    zero_amount = world.permit(0, upto=upto)
    assert world.call(proxy, settle(world, zero_amount, owner=ZERO)).output == error("InvalidAmount()")
    permit = world.permit(1_000, upto=upto, to=ZERO, valid_after=now + 10)
    assert world.call(proxy, settle(world, permit, owner=ZERO)).output == error("InvalidOwner()")
    assert world.call(proxy, settle(world, permit)).output == error("InvalidDestination()")
    early = world.permit(1_000, upto=upto, valid_after=now + 10, deadline=now - 1)
    result = world.call(proxy, settle(world, early))
    assert result.output == error("PaymentTooEarly()")
    assert result.revert_reason == "PaymentTooEarly()"
    expired = world.permit(1_000, upto=upto, deadline=now - 1)
    assert world.call(proxy, settle(world, expired)).output == error("SignatureExpired(uint256)", now - 1)


@pytest.mark.parametrize("upto", [False, True])
def test_valid_after_is_inclusive(world: World, upto):
    permit = world.permit(upto=upto, valid_after=world.chain.now)
    assert world.call(UPTO if upto else EXACT, settle(world, permit)).success


@pytest.mark.parametrize("upto", [False, True])
def test_replay_is_invalid_nonce(world: World, upto):
    proxy = UPTO if upto else EXACT
    call = settle(world, world.permit(upto=upto))
    assert world.send(world.facilitator_key, proxy, call).success
    receipt = world.send(world.facilitator_key, proxy, call)
    assert (receipt.success, receipt.revert_reason) == (False, "InvalidNonce()")


@pytest.mark.parametrize("upto", [False, True])
def test_a_redirected_witness_fails_the_signature(world: World, upto):
    permit = world.permit(upto=upto)
    signature = world.sign(permit)
    redirected = world.permit(upto=upto, to=world.stranger)
    assert world.call(UPTO if upto else EXACT, settle(world, redirected, signature=signature)).output == (
        error("InvalidSigner()")
    )


def test_a_permit_for_the_other_proxy_fails_the_signature(world: World):
    """The proxy is the spender Permit2 hashes: an exact-scheme signature naming the upto proxy."""
    permit = world.permit(spender=UPTO)
    assert world.call(EXACT, settle(world, permit)).output == error("InvalidSigner()")


def test_without_allowance_the_token_transfer_fails(world: World):
    revoke_approval(world)
    result = world.call(EXACT, settle(world, world.permit()))
    assert result.output == error_string("TRANSFER_FROM_FAILED")


# ---------------------------------------------------------------- upto


def test_upto_settles_the_chosen_amount_once(world: World):
    permit = world.permit(5_000, upto=True, nonce=2**256 - 1)
    receipt = world.send(world.facilitator_key, UPTO, settle(world, permit, 1_234))
    assert receipt.success
    assert [(t.from_, t.to, t.value) for t in receipt.transfers()] == [(world.payer, world.payee, 1_234)]
    assert any(log.address == UPTO and log.topics == (SETTLED,) for log in receipt.logs)
    assert p2.nonce_used(world.chain, world.payer, 2**256 - 1)
    again = world.send(world.facilitator_key, UPTO, settle(world, permit, 1))
    assert again.revert_reason == "InvalidNonce()"


def test_upto_amount_above_permitted_is_checked_before_the_caller(world: World):
    permit = world.permit(5_000, upto=True)
    result = world.call(UPTO, settle(world, permit, 5_001), sender=world.stranger)
    assert result.output == error("AmountExceedsPermitted()")
    assert result.revert_reason == "AmountExceedsPermitted()"


def test_upto_only_the_witness_facilitator_settles(world: World):
    permit = world.permit(5_000, upto=True)
    result = world.call(UPTO, settle(world, permit, 5_000), sender=world.stranger)
    assert result.output == error("UnauthorizedFacilitator()")
    assert result.revert_reason == "UnauthorizedFacilitator()"
    assert world.call(UPTO, settle(world, permit, 5_000)).success


def test_upto_zero_amount_reverts(world: World):
    permit = world.permit(5_000, upto=True)
    assert world.call(UPTO, settle(world, permit, 0)).output == error("InvalidAmount()")


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_upto_any_amount_up_to_the_ceiling(base: World, data):
    world = base
    snapshot = world.chain.snapshot()
    try:
        ceiling = data.draw(st.integers(1, 10**9), label="ceiling")
        amount = data.draw(st.integers(1, ceiling), label="amount")
        nonce = data.draw(st.one_of(st.sampled_from([0, 255, 256, 2**256 - 1]), st.integers(0, 2**256 - 1)))
        delay = data.draw(st.integers(0, 10**6), label="deadline after now")
        permit = world.permit(ceiling, upto=True, nonce=nonce, deadline=world.chain.now + delay)
        before = world.balance(world.payer)
        receipt = world.send(world.facilitator_key, UPTO, settle(world, permit, amount))
        assert receipt.success
        assert world.balance(world.payer) == before - amount
        assert world.balance(world.payee) == amount
        assert p2.nonce_used(world.chain, world.payer, nonce)
    finally:
        world.chain.revert(snapshot)


# ---------------------------------------------------------------- settleWithPermit


@pytest.mark.parametrize("upto", [False, True])
def test_settle_with_permit_approves_permit2_then_settles(world: World, upto):
    revoke_approval(world)
    permit = world.permit(3_000, upto=upto)
    permit2612 = sign_2612(world, 3_000)
    if upto:
        call = p2.upto_settle_with_permit_call(permit2612, permit, 2_000, world.payer, world.sign(permit))
    else:
        call = p2.exact_settle_with_permit_call(permit2612, permit, world.payer, world.sign(permit))
    receipt = world.send(world.facilitator_key, UPTO if upto else EXACT, call)
    assert receipt.success
    moved = 2_000 if upto else 3_000
    assert world.balance(world.payee) == moved
    assert p2.eip2612_nonce(world.chain, world.token, world.payer) == 1
    assert p2.allowance(world.chain, world.token, world.payer, p2.PERMIT2_ADDRESS) == 3_000 - moved
    approvals = [log for log in receipt.logs if log.topics[0] == APPROVAL]
    assert approvals and approvals[0].topics[1:] == (word(world.payer), word(p2.PERMIT2_ADDRESS))
    assert any(log.topics == (SETTLED_WITH_PERMIT,) for log in receipt.logs)


@pytest.mark.parametrize("upto", [False, True])
def test_permit_value_must_equal_the_permitted_amount(world: World, upto):
    permit = world.permit(3_000, upto=upto)
    permit2612 = sign_2612(world, 2_999)
    if upto:
        call = p2.upto_settle_with_permit_call(permit2612, permit, 1, world.payer, world.sign(permit))
    else:
        call = p2.exact_settle_with_permit_call(permit2612, permit, world.payer, world.sign(permit))
    assert world.call(UPTO if upto else EXACT, call).output == error("Permit2612AmountMismatch()")


def test_a_failing_permit_is_logged_and_settlement_uses_the_existing_allowance(world: World):
    permit = world.permit(3_000)
    stale = sign_2612(world, 3_000, nonce=5)  # a nonce the token does not expect
    call = p2.exact_settle_with_permit_call(stale, permit, world.payer, world.sign(permit))
    receipt = world.send(world.facilitator_key, EXACT, call)
    assert receipt.success
    (failed,) = [log for log in receipt.logs if log.topics[0] == FAILED_WITH_REASON]
    assert failed.address == EXACT
    assert failed.topics[1:] == (word(world.token), word(world.payer))
    assert decode(["string"], failed.data) == ("EIP2612: invalid signature",)
    assert world.balance(world.payee) == 3_000
    assert p2.eip2612_nonce(world.chain, world.token, world.payer) == 0


def test_a_failing_permit_without_allowance_fails_the_transfer(world: World):
    revoke_approval(world)
    permit = world.permit(3_000)
    expired = sign_2612(world, 3_000, deadline=world.chain.now - 1)
    call = p2.exact_settle_with_permit_call(expired, permit, world.payer, world.sign(permit))
    result = world.call(EXACT, call)
    assert result.output == error_string("TRANSFER_FROM_FAILED")
