"""The fast EIP-712 path is byte-identical to eth-account's reference path, and matches the chain."""

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from x402sim.evm import LocalChain
from x402sim.evm.eip712 import (
    TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    Authorization,
    Domain,
    SignatureError,
    address_of_key,
    authorization_digest,
    is_low_s,
    recover_digest,
    sign_digest,
    typed_data,
)
from x402sim.evm.token import decode_single, encode_call

keys = st.binary(min_size=32, max_size=32).filter(
    lambda k: (
        0 < int.from_bytes(k, "big") < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    )
)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
domains = st.builds(
    Domain,
    name=st.text(max_size=40),
    version=st.text(max_size=8),
    chain_id=st.integers(min_value=1, max_value=2**64),
    verifying_contract=addresses,
)
authorizations = st.builds(
    Authorization,
    from_=addresses,
    to=addresses,
    value=uint256,
    valid_after=uint256,
    valid_before=uint256,
    nonce=st.binary(min_size=32, max_size=32),
)


def test_typehash_is_the_eip3009_constant():
    assert TRANSFER_WITH_AUTHORIZATION_TYPEHASH.hex() == (
        "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
    )


@given(key=keys, domain=domains, auth=authorizations)
def test_fast_signature_is_byte_identical_to_eth_account(key, domain, auth):
    reference = Account.sign_typed_data(key, full_message=typed_data(domain, auth))
    fast = sign_digest(key, authorization_digest(domain, auth))
    assert fast == bytes(reference.signature)
    assert authorization_digest(domain, auth) == bytes(reference.message_hash)
    assert is_low_s(fast) and fast[64] in (27, 28)


@given(key=keys, domain=domains, auth=authorizations)
def test_fast_recovery_agrees_with_eth_account(key, domain, auth):
    signature = sign_digest(key, authorization_digest(domain, auth))
    message = encode_typed_data(full_message=typed_data(domain, auth))
    expected = Account.recover_message(message, signature=signature)
    assert recover_digest(authorization_digest(domain, auth), signature) == expected == address_of_key(key)


@given(domain=domains, auth=authorizations, junk=st.binary(min_size=65, max_size=65))
def test_recovery_of_arbitrary_bytes_gives_an_address_or_a_signature_error(domain, auth, junk):
    digest = authorization_digest(domain, auth)
    try:
        recovered = recover_digest(digest, junk)
    except SignatureError:
        return
    message = encode_typed_data(full_message=typed_data(domain, auth))
    assert recovered == Account.recover_message(message, signature=junk)


def test_recovery_rejects_wrong_lengths_and_v():
    digest = b"\x01" * 32
    sig = sign_digest(b"\x07" * 32, digest)
    for bad in (sig[:64], sig + b"\x00", sig[:64] + bytes([29])):
        try:
            recover_digest(digest, bad)
        except SignatureError:
            continue
        raise AssertionError(f"accepted {bad.hex()}")


def test_domain_separator_matches_the_deployed_token():
    chain = LocalChain(chain_id=84532, seed=3)
    on_chain = decode_single("bytes32", chain.call(chain.usdc, encode_call("DOMAIN_SEPARATOR()")).output)
    assert on_chain == chain.domain.separator
