"""The committed artifacts: reproducible from source, with the selectors USDC, PYUSD and Multicall3 use."""

import json
from importlib import resources

import pytest
from eth_utils import function_signature_to_4byte_selector, keccak

import x402sim.evm.contracts as contracts
from x402sim.evm.contracts import (
    COMPILER,
    MULTICALL3,
    MULTICALL3_ADDRESS,
    NAMES,
    PYUSD,
    TOKENS,
    USDC,
    compile_artifact,
    load_artifact,
    source_sha256,
)

from .helpers import Contract, new_chain

EIP170_MAX_CODE_SIZE = 24_576


def committed_json(name: str) -> dict:
    return json.loads(resources.files(contracts).joinpath(f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_recompiling_gives_the_committed_artifact(name):
    fresh = compile_artifact(name)
    committed = load_artifact(name)
    assert fresh.bytecode == committed.bytecode
    assert fresh.runtime_bytecode == committed.runtime_bytecode
    assert fresh.abi == committed.abi
    document = committed_json(name)
    assert document == contracts.artifact_json(name)
    assert document["compiler"] == COMPILER
    assert document["source_sha256"] == source_sha256(name)
    assert list(document) == ["compiler", "abi", "bytecode", "runtime_bytecode", "source_sha256"]


def test_load_artifact_is_cached_and_rejects_unknown_names():
    assert load_artifact(USDC) is load_artifact(USDC)
    with pytest.raises(ValueError, match="unknown contract"):
        load_artifact("dai")


@pytest.mark.parametrize("name", NAMES)
def test_runtime_code_fits_eip170(name):
    assert 0 < len(load_artifact(name).runtime_bytecode) <= EIP170_MAX_CODE_SIZE


@pytest.mark.parametrize("name", TOKENS)
def test_abi_uses_usdc_parameter_names(name):
    abi = load_artifact(name).abi
    by_name = {entry.get("name"): entry for entry in abi}
    names = [i["name"] for i in by_name["transferWithAuthorization"]["inputs"]]
    assert names == ["from", "to", "value", "validAfter", "validBefore", "nonce", "v", "r", "s"]
    assert [i["name"] for i in by_name["Transfer"]["inputs"]] == ["from", "to", "value"]
    assert [i["name"] for i in by_name["transferFrom"]["inputs"]] == ["from", "to", "value"]
    assert not any(
        param["name"].endswith("_") for entry in abi for param in entry.get("inputs", []) if param["name"]
    )


def test_pyusd_has_the_usdc_interface_and_storage_layout():
    # One model of storage and checks serves both tokens (state_verify), so they must not drift.
    def entries(name):
        return {json.dumps(entry, sort_keys=True) for entry in load_artifact(name).abi}

    extra = {json.loads(entry)["name"] for entry in entries(PYUSD) - entries(USDC)}
    assert extra == {"AuthorizationAlreadyUsed"}
    assert entries(USDC) <= entries(PYUSD)
    [event] = [e for e in load_artifact(PYUSD).abi if e.get("name") == "AuthorizationAlreadyUsed"]
    assert [(i["name"], i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("authorizer", "address", True),
        ("nonce", "bytes32", True),
    ]

    import vyper
    from vyper.compiler.settings import Settings

    def layout(name):
        source = resources.files(contracts).joinpath(f"{name}.vy").read_text(encoding="utf-8")
        settings = Settings(evm_version=contracts.EVM_VERSION)
        return vyper.compile_code(source, output_formats=["layout"], settings=settings)["layout"]

    assert layout(PYUSD) == layout(USDC)


def selector_of(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def test_usdc_selectors_match_fiattoken():
    token = Contract("0x" + "00" * 20, load_artifact(USDC).abi)
    auth = "address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32"
    expected = {
        "transferWithAuthorization": "0xe3ee160e",
        "authorizationState": "0xe94a0102",
        "receiveWithAuthorization": selector_of(f"receiveWithAuthorization({auth})"),
        "cancelAuthorization": selector_of("cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"),
        "balanceOf": selector_of("balanceOf(address)"),
        "transfer": selector_of("transfer(address,uint256)"),
        "transferFrom": selector_of("transferFrom(address,address,uint256)"),
        "approve": selector_of("approve(address,uint256)"),
        "allowance": selector_of("allowance(address,address)"),
        "version": selector_of("version()"),
        "DOMAIN_SEPARATOR": selector_of("DOMAIN_SEPARATOR()"),
        "mint": selector_of("mint(address,uint256)"),
    }
    assert selector_of(f"transferWithAuthorization({auth})") == "0xe3ee160e"
    assert selector_of("authorizationState(address,bytes32)") == "0xe94a0102"
    for name, selector in expected.items():
        assert "0x" + token.selector(name).hex() == selector, name


def test_usdc_typehashes_are_the_eip3009_ones():
    fields = "address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce"
    assert (
        keccak(text=f"TransferWithAuthorization({fields})").hex()
        == "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
    )
    source = resources.files(contracts).joinpath("usdc.vy").read_text(encoding="utf-8")
    for type_string in (
        f"TransferWithAuthorization({fields})",
        f"ReceiveWithAuthorization({fields})",
        "CancelAuthorization(address authorizer,bytes32 nonce)",
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
    ):
        assert f'"{type_string}"' in source


def test_multicall3_selectors_match_solidity_multicall3():
    multicall = Contract(MULTICALL3_ADDRESS, load_artifact(MULTICALL3).abi)
    expected = {
        "aggregate3": "0x82ad56cb",
        "tryAggregate": "0xbce38bd7",
        "aggregate": "0x252dba42",
        "aggregate3Value": selector_of("aggregate3Value((address,bool,uint256,bytes)[])"),
        "blockAndAggregate": selector_of("blockAndAggregate((address,bytes)[])"),
        "tryBlockAndAggregate": selector_of("tryBlockAndAggregate(bool,(address,bytes)[])"),
        "getBlockNumber": selector_of("getBlockNumber()"),
        "getCurrentBlockTimestamp": selector_of("getCurrentBlockTimestamp()"),
        "getEthBalance": selector_of("getEthBalance(address)"),
        "getChainId": selector_of("getChainId()"),
        "getBasefee": selector_of("getBasefee()"),
        "getBlockHash": selector_of("getBlockHash(uint256)"),
        "getLastBlockHash": selector_of("getLastBlockHash()"),
        "getCurrentBlockCoinbase": selector_of("getCurrentBlockCoinbase()"),
        "getCurrentBlockDifficulty": selector_of("getCurrentBlockDifficulty()"),
        "getCurrentBlockGasLimit": selector_of("getCurrentBlockGasLimit()"),
    }
    assert set(multicall.functions) == set(expected)
    for name, selector in expected.items():
        assert "0x" + multicall.selector(name).hex() == selector, name
    assert function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])").hex() == "82ad56cb"


def test_deployed_code_is_the_runtime_code():
    chain = new_chain()
    tester = chain.tester
    # USDC's deployed code is the runtime code followed by its two immutables.
    usdc_code = bytes.fromhex(tester.get_code(chain.token.address)[2:])
    runtime = load_artifact(USDC).runtime_bytecode
    assert usdc_code[: len(runtime)] == runtime
    assert len(usdc_code) == len(runtime) + 64

    # Multicall3 deployed through its constructor leaves exactly the runtime code,
    # so injecting that code at genesis is equivalent to deploying it.
    multicall = load_artifact(MULTICALL3)
    tx_hash = tester.send_transaction(
        {"from": chain.accounts[0], "data": "0x" + multicall.bytecode.hex(), "gas": 3_000_000}
    )
    deployed = tester.get_transaction_receipt(tx_hash)["contract_address"]
    assert bytes.fromhex(tester.get_code(deployed)[2:]) == multicall.runtime_bytecode
    assert bytes.fromhex(tester.get_code(MULTICALL3_ADDRESS)[2:]) == multicall.runtime_bytecode
