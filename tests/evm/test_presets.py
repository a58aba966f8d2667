"""Network presets: the embedded chain with a real network's chain id, token address and EIP-712 domain.

Signatures here are made with eth-account's own EIP-712 encoder (not the project's), so a domain the
chain computed differently from the standard would fail them."""

from pathlib import Path

import pytest
import vyper
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import craft_payment
from x402sim.actors import Facilitator
from x402sim.actors.server import ResourceServer
from x402sim.errors import ChainError
from x402sim.evm import PRESETS, LocalChain, address_of_key, contracts, preset, preset_for_network
from x402sim.evm.chain import ETHER, TOKEN_CONSTRUCTOR_SLOTS
from x402sim.evm.token import TRANSFER_WITH_AUTHORIZATION, encode_call
from x402sim.mechanisms.exact_eip3009 import Offer
from x402sim.protocol import PaymentPayload

# Read from the official SDKs' default asset tables (Python x402 2.25 default_assets.py, TypeScript
# @x402/evm 2.27 defaultAssets.ts), which agree.
SDK_DEFAULTS = {
    "base": (8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2"),
    "base-sepolia": (84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2"),
}
NAMES = sorted(PRESETS)


@pytest.fixture(scope="module", params=NAMES)
def preset_chain(request):
    """One chain per preset, with a funded payer; tests that pay revert to the snapshot taken here."""
    chain = LocalChain.from_preset(request.param, seed=5)
    payer_key = chain.new_key()
    chain.fund(address_of_key(payer_key), usdc=10_000_000)
    return request.param, chain, payer_key, chain.snapshot()


def _sign(key: bytes, chain: LocalChain, name: str, version: str, address: str, message: dict) -> bytes:
    domain = {"name": name, "version": version, "chainId": chain.chain_id, "verifyingContract": address}
    types = {
        "TransferWithAuthorization": [
            {"name": "from", "type": "address"},
            {"name": "to", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "validAfter", "type": "uint256"},
            {"name": "validBefore", "type": "uint256"},
            {"name": "nonce", "type": "bytes32"},
        ]
    }
    return bytes(Account.sign_typed_data(key, domain, types, message).signature)


def test_presets_are_the_sdk_defaults():
    for name, (chain_id, address, token_name, version) in SDK_DEFAULTS.items():
        p = preset(name)
        assert (p.chain_id, p.token_address, p.token_name, p.token_version) == (
            chain_id,
            address,
            token_name,
            version,
        )
        assert p.network == f"eip155:{chain_id}" and preset_for_network(p.network) is p
    local, default = preset("local"), LocalChain()
    assert local.token_address is None
    assert (local.chain_id, local.token_name, local.token_version) == (
        default.chain_id,
        default.token_name,
        default.token_version,
    )
    assert preset_for_network("eip155:1") is None


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="base-sepolia") as info:
        preset("sepolia")
    assert all(name in str(info.value) for name in PRESETS)
    with pytest.raises(ValueError, match="local"):
        LocalChain.from_preset("mainnet")


@pytest.mark.parametrize("variant", contracts.TOKENS)
def test_moved_slots_are_every_variable_before_the_mappings(variant):
    source = (Path(contracts.__file__).parent / f"{variant}.vy").read_text()
    layout = vyper.compile_code(source, output_formats=["layout"])["layout"]["storage_layout"]
    plain = {n: v for n, v in layout.items() if not v["type"].startswith("HashMap")}
    assert max(v["slot"] + v["n_slots"] for v in plain.values()) == TOKEN_CONSTRUCTOR_SLOTS
    assert all(v["slot"] >= TOKEN_CONSTRUCTOR_SLOTS for n, v in layout.items() if n not in plain)


def test_token_sits_at_the_canonical_address_with_the_domain(preset_chain):
    name, chain, _, _ = preset_chain
    p = preset(name)
    assert chain.chain_id == p.chain_id and chain.network == p.network
    if p.token_address is not None:
        assert chain.usdc == p.token_address
    assert chain.token_variant(chain.usdc) == "usdc"
    assert chain.name_of() == p.token_name and chain.version_of() == p.token_version
    assert chain.read(chain.usdc, "symbol()", returns="string") == "USDC"
    assert chain.read(chain.usdc, "decimals()", returns="uint8") == 6
    assert to_checksum_address(chain.read(chain.usdc, "minter()", returns="address")) == chain.minter
    expected = hash_domain(
        {
            "name": p.token_name,
            "version": p.token_version,
            "chainId": p.chain_id,
            "verifyingContract": chain.usdc,
        }
    )
    assert chain.read(chain.usdc, "DOMAIN_SEPARATOR()", returns="bytes32") == expected
    assert chain.domain.separator == expected
    # The storage model of state_verify recognises the moved token (code = runtime + immutables).
    state = chain.token_state(chain.usdc)
    assert state is not None and (state.name, state.version) == (p.token_name, p.token_version)


def test_funding_goes_to_the_canonical_address_and_the_deployment_is_emptied(preset_chain):
    name, chain, payer_key, snap = preset_chain
    chain.revert(snap)
    payer = address_of_key(payer_key)
    deployed = chain.receipts()[0].contract_address
    assert chain.balance_of(payer) == 10_000_000 == chain.total_supply()
    assert [(t.token, t.to, t.value) for t in chain.transfers()] == [(chain.usdc, payer, 10_000_000)]
    if preset(name).token_address is None:
        assert deployed == chain.usdc
    else:
        assert deployed != chain.usdc
        assert chain.code(deployed) == b"" and chain.token_variant(deployed) is None
        assert chain.eth_balance(deployed) == 0


@settings(max_examples=15, deadline=None)
@given(
    value=st.integers(min_value=1, max_value=10_000_000),
    nonce=st.binary(min_size=32, max_size=32),
    window=st.integers(min_value=1, max_value=86_400),
)
def test_a_transfer_with_authorization_settles_at_the_canonical_address(preset_chain, value, nonce, window):
    name, chain, payer_key, snap = preset_chain
    chain.revert(snap)
    p = preset(name)
    payer, payee = address_of_key(payer_key), address_of_key(b"\x11" * 32)
    relayer_key = chain.new_key()
    chain.fund(address_of_key(relayer_key), eth=ETHER)
    message = {
        "from": payer,
        "to": payee,
        "value": value,
        "validAfter": 0,
        "validBefore": chain.now + window,
        "nonce": nonce,
    }
    sig = _sign(payer_key, chain, p.token_name, p.token_version, chain.usdc, message)
    r, s, v = sig[:32], sig[32:64], sig[64]
    call = encode_call(TRANSFER_WITH_AUTHORIZATION, *message.values(), v, r, s)
    tx = chain.transact(relayer_key, chain.usdc, call, gas=200_000)
    chain.mine()
    receipt = chain.receipt(tx)
    assert receipt.success, receipt.revert_reason
    assert [(t.token, t.from_, t.to, t.value) for t in receipt.transfers()] == [
        (chain.usdc, payer, payee, value)
    ]
    assert all(log.address == chain.usdc for log in receipt.logs)
    if p.token_address is not None:
        assert chain.usdc == p.token_address
    assert chain.balance_of(payer) == 10_000_000 - value and chain.balance_of(payee) == value
    assert chain.authorization_state(payer, nonce) is True


@settings(max_examples=10, deadline=None)
@given(token_name=st.sampled_from(["USD Coin", "USDC", "USD Coin "]), version=st.sampled_from(["1", "2"]))
def test_only_the_presets_domain_signs(preset_chain, token_name, version):
    """A signature over any other (name, version) does not pay: the domain is exactly the preset's."""
    name, chain, payer_key, snap = preset_chain
    chain.revert(snap)
    p = preset(name)
    payer = address_of_key(payer_key)
    message = {
        "from": payer,
        "to": address_of_key(b"\x12" * 32),
        "value": 1,
        "validAfter": 0,
        "validBefore": chain.now + 60,
        "nonce": b"\x01" * 32,
    }
    sig = _sign(payer_key, chain, token_name, version, chain.usdc, message)
    call = encode_call(TRANSFER_WITH_AUTHORIZATION, *message.values(), sig[64], sig[:32], sig[32:64])
    result = chain.call(chain.usdc, call)
    matches = (token_name, version) == (p.token_name, p.token_version)
    assert result.success is matches
    if not matches:
        assert result.revert_reason == "FiatTokenV2: invalid signature"


def test_the_reference_facilitator_settles_a_payment_at_the_canonical_address(preset_chain):
    name, chain, payer_key, snap = preset_chain
    chain.revert(snap)
    payer = address_of_key(payer_key)
    fkey, payee = chain.new_key(), address_of_key(chain.new_key())
    chain.fund(address_of_key(fkey), eth=ETHER)
    server = ResourceServer.with_prices({"GET /x": 2_500}, chain=chain, pay_to=payee)
    requirements = server.requirements(server.routes["GET /x"])
    assert Offer.of(requirements).asset == chain.usdc == (preset(name).token_address or chain.usdc)
    payment = craft_payment(payer_key, payer, requirements, chain.now)
    assert isinstance(payment, PaymentPayload)
    facilitator = Facilitator(chain, fkey)
    assert facilitator.verify(payment, requirements, chain.now).is_valid
    settled = facilitator.settle_now(payment, requirements, chain.now)
    assert settled.success, settled.error_reason
    assert chain.balance_of(payee) == 2_500 and chain.authorization_state(payer, b"\x42" * 32)


def test_a_used_address_is_refused():
    with pytest.raises(ChainError, match="in use"):
        LocalChain(token_address="0xcA11bde05977b3631167028862bE2a173976CA11")  # Multicall3
    with pytest.raises(ChainError, match="precompile"):
        LocalChain(token_address="0x" + "00" * 19 + "01")


def test_the_pyusd_variant_moves_too():
    chain = LocalChain(token="pyusd", token_address="0x" + "ab" * 20, chain_id=8453)
    payer = address_of_key(chain.new_key())
    chain.fund(payer, usdc=7)
    assert chain.usdc == to_checksum_address("0x" + "ab" * 20)
    assert chain.token_variant(chain.usdc) == "pyusd" and chain.token_state(chain.usdc) is not None
    assert chain.balance_of(payer) == 7 and (chain.name_of(), chain.version_of()) == ("PayPal USD", "1")
