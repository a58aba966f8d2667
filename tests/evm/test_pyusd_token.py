"""The PYUSD-like token on LocalChain: USDC's behaviour, except that a used nonce is a logged no-op.

Every assertion is about the chain: receipts' status and logs, balances, ``authorizationState`` and
total supply. The differential property runs one payment on a USDC chain and a PYUSD chain built
from the same seed (same keys, same token address) and compares what each did.
"""

import pytest
from eth_hash.auto import keccak
from hypothesis import example, given, settings
from hypothesis import strategies as st

from x402sim.evm import LocalChain, Receipt, address_of_key, load_artifact
from x402sim.evm.chain import ETHER
from x402sim.evm.contracts import PYUSD, USDC
from x402sim.evm.eip712 import (
    SECP256K1_N,
    Authorization,
    authorization_digest,
    sign_digest,
    split_signature,
    typed_data_digest,
)
from x402sim.evm.token import (
    AUTHORIZATION_ALREADY_USED_TOPIC,
    AUTHORIZATION_USED_TOPIC,
    TRANSFER_TOPIC,
    encode_call,
    transfer_with_authorization_call,
)

FUNDS = 1_000_000
HOUR = 3600
AUTH_ARGS = "address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32"
RECEIVE_WITH_AUTHORIZATION = f"receiveWithAuthorization({AUTH_ARGS})"
CANCEL_AUTHORIZATION = "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"
RECEIVE_TYPEHASH = keccak(
    b"ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)
CANCEL_TYPEHASH = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")
AUTHORIZATION_CANCELED_TOPIC = keccak(b"AuthorizationCanceled(address,bytes32)")
GARBAGE_SIGNATURE = (29, b"\x00" * 32, b"\xff" * 32)  # fails every signature check there is

USED = "FiatTokenV2: authorization is used or canceled"
EXPIRED = "FiatTokenV2: authorization is expired"
NOT_YET_VALID = "FiatTokenV2: authorization is not yet valid"
INVALID_SIGNATURE = "FiatTokenV2: invalid signature"
INVALID_S = "ECRecover: invalid signature 's' value"
EXCEEDS_BALANCE = "ERC20: transfer amount exceeds balance"
NOT_PAYEE = "FiatTokenV2: caller must be the payee"


class Parties:
    """A chain with a funded payer (signs only), a relayer with ether, and an empty payee."""

    def __init__(self, token: str, seed: int = 3):
        self.chain = LocalChain(token=token, seed=seed)
        self.payer_key, self.relayer_key, self.payee_key = (self.chain.new_key() for _ in range(3))
        self.payer, self.relayer = address_of_key(self.payer_key), address_of_key(self.relayer_key)
        self.payee = address_of_key(self.payee_key)
        self.chain.fund_many([(self.payer, FUNDS, 0), (self.relayer, 0, ETHER), (self.payee, 0, ETHER)])

    def authorization(self, value: int, nonce: bytes, *, valid_after=None, valid_before=None, to=None):
        now = self.chain.now
        return Authorization(
            self.payer,
            to or self.payee,
            value,
            now - 600 if valid_after is None else valid_after,
            now + HOUR if valid_before is None else valid_before,
            nonce,
        )

    def sign(self, auth: Authorization, key: bytes | None = None) -> tuple[int, bytes, bytes]:
        return split_signature(
            sign_digest(key or self.payer_key, authorization_digest(self.chain.domain, auth))
        )

    def sign_receive(self, auth: Authorization) -> tuple[int, bytes, bytes]:
        # Same fields as a transfer authorization under ReceiveWithAuthorization's typehash.
        struct_hash = keccak(RECEIVE_TYPEHASH + _fields(auth))
        return split_signature(sign_digest(self.payer_key, typed_data_digest(self.chain.domain, struct_hash)))

    def sign_cancel(self, nonce: bytes, key: bytes | None = None) -> tuple[int, bytes, bytes]:
        struct_hash = keccak(CANCEL_TYPEHASH + _word(self.payer) + nonce)
        digest = typed_data_digest(self.chain.domain, struct_hash)
        return split_signature(sign_digest(key or self.payer_key, digest))

    def send(self, data: bytes, key: bytes | None = None) -> Receipt:
        """Send ``data`` to the token and mine it; the receipt of the mined transaction."""
        tx = self.chain.transact(key or self.relayer_key, self.chain.usdc, data, gas=200_000)
        self.chain.mine()
        return self.chain.receipt(tx)

    def transfer(self, auth: Authorization, vrs: tuple[int, bytes, bytes]) -> Receipt:
        return self.send(_transfer_call(auth, vrs))

    def receive(self, auth: Authorization, vrs, key: bytes | None = None) -> Receipt:
        call = encode_call(RECEIVE_WITH_AUTHORIZATION, *_auth_args(auth), *vrs)
        return self.send(call, key or self.payee_key)

    def cancel(self, nonce: bytes, vrs) -> Receipt:
        return self.send(encode_call(CANCEL_AUTHORIZATION, self.payer, nonce, *vrs))

    def state(self, nonce: bytes) -> tuple[int, int, int, bool]:
        """(payer balance, payee balance, total supply, authorizationState of the nonce)."""
        chain = self.chain
        return (
            chain.balance_of(self.payer),
            chain.balance_of(self.payee),
            chain.total_supply(),
            chain.authorization_state(self.payer, nonce),
        )


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _fields(auth: Authorization) -> bytes:
    return (
        _word(auth.from_)
        + _word(auth.to)
        + b"".join(n.to_bytes(32, "big") for n in (auth.value, auth.valid_after, auth.valid_before))
        + auth.nonce
    )


def _auth_args(auth: Authorization) -> tuple:
    return (auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce)


def _transfer_call(auth: Authorization, vrs) -> bytes:
    return transfer_with_authorization_call(*_auth_args(auth), *vrs)


def _events(receipt: Receipt) -> list[bytes]:
    return [log.topics[0] for log in receipt.logs]


def _already_used_log(receipt: Receipt, authorizer: str, nonce: bytes) -> None:
    [log] = receipt.logs
    assert log.address == receipt.to
    assert log.topics == (AUTHORIZATION_ALREADY_USED_TOPIC, _word(authorizer), nonce)
    assert log.data == b""


@pytest.fixture
def pyusd() -> Parties:
    return Parties(PYUSD)


# ---------------------------------------------------------------- deployment and variants


def test_pyusd_chain_defaults_to_paypal_usd_metadata():
    chain = LocalChain(token=PYUSD)
    assert (chain.token, chain.token_name, chain.token_symbol, chain.token_version) == (
        "pyusd",
        "PayPal USD",
        "PYUSD",
        "1",
    )
    assert chain.name_of() == "PayPal USD" and chain.version_of() == "1"
    assert chain.read(None, "symbol()", returns="string") == "PYUSD"
    assert chain.read(None, "decimals()", returns="uint8") == 6
    assert chain.read(None, "DOMAIN_SEPARATOR()", returns="bytes32") == chain.domain.separator
    assert chain.total_supply() == 0


def test_usdc_stays_the_default_and_overrides_still_apply():
    chain = LocalChain()
    assert (chain.token, chain.token_name, chain.token_symbol, chain.token_version) == (
        "usdc",
        "USD Coin",
        "USDC",
        "2",
    )
    custom = LocalChain(token=PYUSD, token_name="Bridged PYUSD", token_version="7")
    assert (custom.token_name, custom.token_symbol, custom.token_version) == ("Bridged PYUSD", "PYUSD", "7")
    assert custom.name_of() == "Bridged PYUSD" and custom.version_of() == "7"
    assert custom.token_variant(custom.usdc) == PYUSD
    renamed_usdc = LocalChain(token_name="USDC", token_symbol="USDC.e")
    assert renamed_usdc.read(None, "symbol()", returns="string") == "USDC.e"
    assert renamed_usdc.name_of() == "USDC" and renamed_usdc.version_of() == "2"


def test_unknown_token_is_an_error():
    with pytest.raises(ValueError, match=r"unknown token 'dai'; expected one of usdc, pyusd"):
        LocalChain(token="dai")


def test_token_variant_tells_the_deployed_contract():
    usdc, pyusd = LocalChain(seed=2), LocalChain(token=PYUSD, seed=2)
    assert usdc.usdc == pyusd.usdc  # same deployer, same nonce: the address alone says nothing
    assert usdc.token_variant(usdc.usdc) == USDC
    assert pyusd.token_variant(pyusd.usdc) == PYUSD
    assert pyusd.token_variant(pyusd.usdc.lower()) == PYUSD
    for chain in (usdc, pyusd):
        assert chain.token_variant(chain.multicall) is None
        assert chain.token_variant(chain.bank) is None  # an account with ether and no code
        assert chain.token_variant("0x" + "42" * 20) is None  # nothing there at all
    # The deployed code is the runtime code followed by the immutables (name and version hashes).
    runtime = load_artifact(PYUSD).runtime_bytecode
    assert len(pyusd.code(pyusd.usdc)) == len(runtime) + 64


# ---------------------------------------------------------------- transferWithAuthorization


@pytest.mark.parametrize("token", [USDC, PYUSD])
def test_first_transfer_with_authorization_moves_funds(token):
    p = Parties(token)
    nonce = b"\x01" * 32
    auth = p.authorization(250_000, nonce)
    receipt = p.transfer(auth, p.sign(auth))
    assert receipt.success
    assert _events(receipt) == [AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC]
    [transfer] = receipt.transfers()
    assert (transfer.from_, transfer.to, transfer.value) == (p.payer, p.payee, 250_000)
    assert p.state(nonce) == (FUNDS - 250_000, 250_000, FUNDS, True)


def test_reused_authorization_succeeds_and_moves_nothing(pyusd):
    nonce = b"\x02" * 32
    auth = pyusd.authorization(300_000, nonce)
    signature = pyusd.sign(auth)
    assert pyusd.transfer(auth, signature).success
    after_first = pyusd.state(nonce)

    replay = pyusd.transfer(auth, signature)
    assert replay.success and replay.revert_reason is None
    assert replay.transfers() == []
    _already_used_log(replay, pyusd.payer, nonce)
    assert pyusd.state(nonce) == after_first == (FUNDS - 300_000, 300_000, FUNDS, True)
    assert [t.value for t in pyusd.chain.transfers() if t.to == pyusd.payee] == [300_000]


def test_usdc_reverts_the_same_replay():
    p = Parties(USDC)
    nonce = b"\x02" * 32
    auth = p.authorization(300_000, nonce)
    signature = p.sign(auth)
    assert p.transfer(auth, signature).success
    replay = p.transfer(auth, signature)
    assert not replay.success and replay.revert_reason == USED and replay.logs == ()
    assert p.state(nonce) == (FUNDS - 300_000, 300_000, FUNDS, True)


def test_used_nonce_is_a_no_op_before_the_signature_and_balance_checks(pyusd):
    nonce = b"\x03" * 32
    auth = pyusd.authorization(10, nonce)
    assert pyusd.transfer(auth, pyusd.sign(auth)).success
    # Other terms under the same nonce, a signature that recovers nothing, more than the balance.
    altered = pyusd.authorization(FUNDS * 5, nonce, to=pyusd.relayer)
    replay = pyusd.transfer(altered, GARBAGE_SIGNATURE)
    assert replay.success
    _already_used_log(replay, pyusd.payer, nonce)
    assert pyusd.state(nonce) == (FUNDS - 10, 10, FUNDS, True)
    assert pyusd.chain.balance_of(pyusd.relayer) == 0


def test_time_window_is_checked_before_the_used_nonce(pyusd):
    nonce = b"\x04" * 32
    now = pyusd.chain.now
    auth = pyusd.authorization(10, nonce, valid_before=now + 60)
    signature = pyusd.sign(auth)
    assert pyusd.transfer(auth, signature).success
    early = pyusd.authorization(10, nonce, valid_after=now + HOUR)
    replay_early = pyusd.transfer(early, GARBAGE_SIGNATURE)
    assert not replay_early.success and replay_early.revert_reason == NOT_YET_VALID

    pyusd.chain.advance(60)
    late = pyusd.transfer(auth, signature)
    assert not late.success and late.revert_reason == EXPIRED and late.logs == ()
    assert pyusd.state(nonce) == (FUNDS - 10, 10, FUNDS, True)


# ---------------------------------------------------------------- cancelAuthorization


def test_canceled_nonce_makes_transfer_a_logged_no_op(pyusd):
    nonce = b"\x05" * 32
    auth = pyusd.authorization(500, nonce)
    cancel_signature = pyusd.sign_cancel(nonce)

    canceled = pyusd.cancel(nonce, cancel_signature)
    assert canceled.success
    [log] = canceled.logs
    assert log.topics == (AUTHORIZATION_CANCELED_TOPIC, _word(pyusd.payer), nonce)
    assert pyusd.state(nonce) == (FUNDS, 0, FUNDS, True)

    attempt = pyusd.transfer(auth, pyusd.sign(auth))
    assert attempt.success and attempt.transfers() == []
    _already_used_log(attempt, pyusd.payer, nonce)
    assert pyusd.state(nonce) == (FUNDS, 0, FUNDS, True)

    # Canceling again is a no-op too (as in PYUSD), before the signature is looked at.
    again = pyusd.cancel(nonce, GARBAGE_SIGNATURE)
    assert again.success
    _already_used_log(again, pyusd.payer, nonce)


def test_cancel_of_an_unused_nonce_still_checks_the_signature(pyusd):
    nonce = b"\x06" * 32
    forged = pyusd.cancel(nonce, pyusd.sign_cancel(nonce, key=pyusd.relayer_key))
    assert not forged.success and forged.revert_reason == INVALID_SIGNATURE
    assert pyusd.state(nonce) == (FUNDS, 0, FUNDS, False)


# ---------------------------------------------------------------- receiveWithAuthorization


def test_receive_with_authorization_replay_is_a_no_op_for_the_payee_only(pyusd):
    nonce = b"\x07" * 32
    auth = pyusd.authorization(1_234, nonce)
    signature = pyusd.sign_receive(auth)
    stranger = pyusd.receive(auth, signature, key=pyusd.relayer_key)
    assert not stranger.success and stranger.revert_reason == NOT_PAYEE

    first = pyusd.receive(auth, signature)
    assert first.success and _events(first) == [AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC]
    assert pyusd.state(nonce) == (FUNDS - 1_234, 1_234, FUNDS, True)

    replay = pyusd.receive(auth, signature)
    assert replay.success
    _already_used_log(replay, pyusd.payer, nonce)
    # The payee check comes first, so a stranger's replay still reverts.
    stranger_replay = pyusd.receive(auth, signature, key=pyusd.relayer_key)
    assert not stranger_replay.success and stranger_replay.revert_reason == NOT_PAYEE
    assert pyusd.state(nonce) == (FUNDS - 1_234, 1_234, FUNDS, True)


def test_a_transfer_signature_does_not_authorize_a_receive(pyusd):
    nonce = b"\x08" * 32
    auth = pyusd.authorization(1, nonce)
    wrong = pyusd.receive(auth, pyusd.sign(auth))
    assert not wrong.success and wrong.revert_reason == INVALID_SIGNATURE


# ---------------------------------------------------------------- both tokens, one property


@pytest.fixture(scope="module")
def twins() -> tuple[Parties, Parties]:
    return Parties(USDC, seed=7), Parties(PYUSD, seed=7)


OUTCOMES = ("ok", "replay", "expired", "not_yet_valid", "wrong_signer", "high_s", "insufficient_balance")


def _each_outcome(test):
    """Every outcome once as an explicit example, whatever Hypothesis goes on to draw."""
    for i, outcome in enumerate(OUTCOMES):
        test = example(outcome=outcome, fraction=500, offset=60, nonce=bytes([0xE0 + i]) * 32)(test)
    return test


@settings(max_examples=25, deadline=None)
@given(
    outcome=st.sampled_from(OUTCOMES),
    fraction=st.integers(min_value=0, max_value=1_000),
    offset=st.integers(min_value=0, max_value=10 * HOUR),
    nonce=st.binary(min_size=32, max_size=32),
)
@_each_outcome
def test_both_tokens_agree_except_on_a_used_nonce(twins, outcome, fraction, offset, nonce):
    usdc, pyusd = twins
    if usdc.chain.authorization_state(usdc.payer, nonce):
        return  # hypothesis may draw a nonce twice
    assert usdc.chain.now == pyusd.chain.now and usdc.payer == pyusd.payer
    results = {}
    for p in twins:
        now, balance = p.chain.now, p.chain.balance_of(p.payer)
        value = balance * fraction // 1_000
        auth = p.authorization(value, nonce)
        key = None
        if outcome == "expired":
            auth = p.authorization(value, nonce, valid_before=now - offset)
        elif outcome == "not_yet_valid":
            auth = p.authorization(value, nonce, valid_after=now + offset)
        elif outcome == "insufficient_balance":
            auth = p.authorization(balance + 1 + offset, nonce)
        elif outcome == "wrong_signer":
            key = p.relayer_key
        v, r, s = p.sign(auth, key)
        if outcome == "high_s":  # the malleable twin of a valid signature
            v, s = 55 - v, (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
        if outcome == "replay":
            assert p.transfer(auth, (v, r, s)).success
        before = p.state(nonce)
        receipt = p.transfer(auth, (v, r, s))
        results[p.chain.token] = (receipt, before, p.state(nonce), value)

    (u_receipt, u_before, u_after, value), (p_receipt, p_before, p_after, _) = (
        results[USDC],
        results[PYUSD],
    )
    assert u_before == p_before
    if outcome == "ok":
        for receipt in (u_receipt, p_receipt):
            assert receipt.success and _events(receipt) == [AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC]
        payer, payee, supply, _ = u_before
        assert u_after == p_after == (payer - value, payee + value, supply, True)
    elif outcome == "replay":
        assert not u_receipt.success and u_receipt.revert_reason == USED
        assert p_receipt.success and p_receipt.transfers() == []
        _already_used_log(p_receipt, pyusd.payer, nonce)
        assert u_after == u_before and p_after == p_before
    else:
        expected = {
            "expired": EXPIRED,
            "not_yet_valid": NOT_YET_VALID,
            "wrong_signer": INVALID_SIGNATURE,
            "high_s": INVALID_S,
            "insufficient_balance": EXCEEDS_BALANCE,
        }[outcome]
        for receipt in (u_receipt, p_receipt):
            assert not receipt.success and receipt.revert_reason == expected and receipt.logs == ()
        assert u_after == u_before and p_after == p_before
        assert u_after[3] is False
