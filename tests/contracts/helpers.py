"""Helpers for the contract tests: a bare eth-tester chain with the token and Multicall3.

The chain is built here with eth-tester directly (not through `x402sim.evm`) so
that these tests check the contracts and artifacts on their own. Multicall3's
runtime code is placed in the genesis state at its canonical address, with no
constructor run, which is how the simulator's chain provides it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import (
    function_signature_to_4byte_selector,
    to_bytes,
    to_canonical_address,
    to_checksum_address,
)

from x402sim.evm.contracts import MULTICALL3, MULTICALL3_ADDRESS, USDC, load_artifact

FUNDED_ACCOUNTS = 4
TX_GAS = 1_000_000
CALL_GAS = 10_000_000
INITIAL_BALANCE = 1_000_000 * 10**6  # 1M USDC in base units

TRANSFER_TYPES = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
CANCEL_TYPES = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def abi_type(param: dict[str, Any]) -> str:
    """eth-abi type string of one ABI parameter, tuples spelled out."""
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


class Contract:
    """Encodes and decodes calls to one deployed contract through its artifact ABI."""

    def __init__(self, address: str, abi: tuple[dict[str, Any], ...]):
        self.address = to_checksum_address(address)
        self.functions = {e["name"]: e for e in abi if e["type"] == "function"}

    def selector(self, name: str) -> bytes:
        entry = self.functions[name]
        return function_signature_to_4byte_selector(
            f"{name}({','.join(abi_type(i) for i in entry['inputs'])})"
        )

    def encode(self, name: str, *args: Any) -> bytes:
        types = [abi_type(i) for i in self.functions[name]["inputs"]]
        return self.selector(name) + encode(types, list(args))

    def decode(self, name: str, data: bytes) -> tuple[Any, ...]:
        return decode([abi_type(o) for o in self.functions[name]["outputs"]], data)


@dataclass
class Chain:
    """A fresh tester chain with a deployed token; helpers for calls and transactions."""

    tester: EthereumTester
    accounts: list[str]
    token: Contract
    multicall: Contract
    chain_id: int

    def latest_timestamp(self) -> int:
        return self.tester.get_block_by_number("latest")["timestamp"]

    def time_travel(self, timestamp: int) -> None:
        self.tester.time_travel(timestamp)

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def call_raw(
        self, to: str, data: bytes, sender: str | None = None, value: int = 0, gas: int = CALL_GAS
    ) -> bytes:
        """eth_call on the pending block; a revert raises TransactionFailed with the reason string."""
        tx = {"from": sender or self.accounts[0], "to": to, "data": "0x" + data.hex(), "gas": gas}
        if value:
            tx["value"] = value
        return to_bytes(hexstr=self.tester.call(tx, "pending"))

    def call(self, contract: Contract, name: str, *args: Any, sender: str | None = None) -> Any:
        out = contract.decode(name, self.call_raw(contract.address, contract.encode(name, *args), sender))
        return out[0] if len(out) == 1 else out

    def send_raw(self, sender: str, to: str, data: bytes) -> dict[str, Any]:
        """Simulate (so a revert raises with its reason), then mine the transaction."""
        self.call_raw(to, data, sender, gas=TX_GAS)
        tx_hash = self.tester.send_transaction(
            {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": TX_GAS}
        )
        receipt = self.tester.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def transact(self, contract: Contract, name: str, *args: Any, sender: str | None = None) -> dict:
        return self.send_raw(sender or self.accounts[0], contract.address, contract.encode(name, *args))

    def balance(self, holder: str) -> int:
        return self.call(self.token, "balanceOf", holder)


def new_chain(name: str = "USD Coin", version: str = "2") -> Chain:
    # Accounts come from eth-tester's default keys; the extra genesis entry for
    # Multicall3 makes the backend derive one more (unfunded) key, unused here.
    genesis = PyEVMBackend.generate_genesis_state(num_accounts=FUNDED_ACCOUNTS)
    genesis[to_canonical_address(MULTICALL3_ADDRESS)] = {
        "balance": 0,
        "nonce": 0,
        "code": load_artifact(MULTICALL3).runtime_bytecode,
        "storage": {},
    }
    backend = PyEVMBackend(genesis_state=genesis)
    tester = EthereumTester(backend)
    accounts = list(tester.get_accounts()[:FUNDED_ACCOUNTS])

    usdc = load_artifact(USDC)
    args = encode(["string", "string", "string"], [name, "USDC", version])
    tx_hash = tester.send_transaction(
        {"from": accounts[0], "data": "0x" + (usdc.bytecode + args).hex(), "gas": 5_000_000}
    )
    address = tester.get_transaction_receipt(tx_hash)["contract_address"]
    multicall = Contract(MULTICALL3_ADDRESS, load_artifact(MULTICALL3).abi)
    return Chain(tester, accounts, Contract(address, usdc.abi), multicall, backend.chain.chain_id)


@dataclass(frozen=True)
class Payer:
    """An off-chain key that signs EIP-3009 authorizations (it never sends transactions)."""

    key: bytes
    address: str


def new_payer() -> Payer:
    account = Account.create()
    return Payer(bytes(account.key), account.address)


def typed_message(
    chain: Chain, primary: str, message: dict[str, Any], name: str = "USD Coin", version: str = "2"
) -> dict[str, Any]:
    fields = CANCEL_TYPES if primary == "CancelAuthorization" else TRANSFER_TYPES
    return {
        "types": {"EIP712Domain": DOMAIN_TYPES, primary: fields},
        "primaryType": primary,
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain.chain_id,
            "verifyingContract": chain.token.address,
        },
        "message": message,
    }


def domain_separator(chain: Chain, name: str = "USD Coin", version: str = "2") -> bytes:
    """The EIP-712 domain separator computed off-chain by eth-account."""
    # encode_typed_data puts hashStruct(domain) in the header of the signable message.
    sample = {"authorizer": "0x" + "00" * 20, "nonce": b"\x00" * 32}
    return encode_typed_data(
        full_message=typed_message(chain, "CancelAuthorization", sample, name, version)
    ).header


def sign(payer: Payer, chain: Chain, primary: str, message: dict[str, Any]) -> tuple[int, bytes, bytes]:
    signed = Account.sign_typed_data(payer.key, full_message=typed_message(chain, primary, message))
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def authorization(
    payer: Payer,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    return {
        "from": payer.address,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce if nonce is not None else os.urandom(32),
    }


def auth_args(auth: dict[str, Any], v: int, r: bytes, s: bytes) -> tuple[Any, ...]:
    """Positional arguments of transfer/receiveWithAuthorization."""
    return (
        auth["from"],
        auth["to"],
        auth["value"],
        auth["validAfter"],
        auth["validBefore"],
        auth["nonce"],
        v,
        r,
        s,
    )
