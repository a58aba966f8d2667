"""Calibrate the ledger backend's gas on py-evm: ``python -m x402sim.evm.ledger_gas``.

The ledger charges storage gas by rule and everything else as a constant per function and exit
point (``ledger.EXECUTION_GAS``). ``calibrate`` measures those constants: it drives a ``LocalChain``
and a ``LedgerChain`` through the same transactions, one exit point each, with the ledger's
constants set to zero, and reads each constant off as the difference of the execution gas of the
two chains' simulations of the call (before refunds and the EIP-7623 calldata floor, which the
ledger applies by rule). Every signature used has v = 27; the rules add what a v of 28 costs.
The test suite checks that the table in ``ledger`` equals what this measures, and the differential
test (``tests/evm/test_ledger.py``) checks the result on random sequences.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import ledger as ledger_module
from .chain import ETHER, LocalChain, Receipt
from .eip712 import Authorization, Domain, address_of_key, authorization_digest, sign_digest
from .fiat_rules import CANCEL_AUTHORIZATION_TYPEHASH
from .hashing import keccak
from .ledger import LedgerChain
from .token import encode_call, transfer_with_authorization_call

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def sign_transfer(key: bytes, domain: Domain, auth: Authorization) -> tuple[int, bytes, bytes]:
    signature = sign_digest(key, authorization_digest(domain, auth))
    return signature[64], signature[:32], signature[32:64]


def sign_cancel(key: bytes, domain: Domain, nonce: bytes) -> tuple[int, bytes, bytes]:
    authorizer = bytes.fromhex(address_of_key(key)[2:]).rjust(32, b"\x00")
    struct_hash = keccak(CANCEL_AUTHORIZATION_TYPEHASH + authorizer + nonce)
    signature = sign_digest(key, keccak(b"\x19\x01" + domain.separator + struct_hash))
    return signature[64], signature[:32], signature[32:64]


def twa_call(auth: Authorization, v: int, r: bytes, s: bytes) -> bytes:
    return transfer_with_authorization_call(
        auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s
    )


def cancel_call(authorizer: str, nonce: bytes, v: int, r: bytes, s: bytes) -> bytes:
    return encode_call(
        "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)", authorizer, nonce, v, r, s
    )


@dataclass
class Pair:
    """A ``LocalChain`` and a ``LedgerChain`` built alike, sent the same transactions."""

    evm: LocalChain
    ledger: LedgerChain

    @classmethod
    def build(cls, token: str = "usdc", seed: int = 0, **kwargs: Any) -> Pair:
        return cls(
            LocalChain(token=token, seed=seed, **kwargs), LedgerChain(token=token, seed=seed, **kwargs)
        )

    @property
    def chains(self) -> tuple[LocalChain, LedgerChain]:
        return self.evm, self.ledger

    @property
    def domain(self) -> Domain:
        return self.evm.domain

    def fund(self, address: str, usdc: int = 0, eth: int = 0) -> None:
        for chain in self.chains:
            chain.fund(address, usdc=usdc, eth=eth)

    def set_time(self, t: int) -> None:
        for chain in self.chains:
            chain.set_time(t)

    def send(self, key: bytes, data: bytes, gas: int = 150_000) -> tuple[Receipt, Receipt]:
        """Send the same call to the token on both chains, mine, and return both receipts."""
        hashes = [chain.transact(key, chain.usdc, data, gas=gas) for chain in self.chains]
        for chain in self.chains:
            chain.mine()
        evm, ledger = self.evm.receipt(hashes[0]), self.ledger.receipt(hashes[1])
        assert evm is not None and ledger is not None, "a mined transaction has a receipt"
        return evm, ledger


def calibrate(token: str = "usdc") -> dict[str, int]:
    """Measure ``EXECUTION_GAS`` for ``token`` (see the module docstring)."""
    saved = dict(ledger_module.EXECUTION_GAS.get(token, {}))
    ledger_module.EXECUTION_GAS[token] = _Zero()
    try:
        return _measure(token)
    finally:
        ledger_module.EXECUTION_GAS[token] = saved


def _token(chain: LocalChain | LedgerChain) -> str:
    assert chain.usdc is not None, "both chains of a pair have their token"
    return chain.usdc


def _high(s: bytes) -> bytes:
    """The malleable twin of ``s`` (above half the order)."""
    return (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")


class _Zero(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


def _measure(token: str) -> dict[str, int]:
    pair = Pair.build(token=token, seed=7)
    keys = [keccak(f"calibration:{i}".encode()) for i in range(4)]
    payer, other, relayer, _ = keys
    payer_address, other_address = address_of_key(payer), address_of_key(other)
    for key in keys:
        pair.fund(address_of_key(key), usdc=1_000_000 if key != relayer else 0, eth=ETHER)
    pair.set_time(pair.evm.now + 10)
    now = pair.evm.now
    fresh = address_of_key(keccak(b"calibration:fresh"))
    table: dict[str, int] = {}

    def record(path: str, data: bytes, key: bytes = relayer) -> None:
        sender = address_of_key(key)
        simulated = [chain.call(_token(chain), data, sender=sender) for chain in pair.chains]
        assert simulated[0].revert_reason == simulated[1].revert_reason, (path, simulated)
        table[path] = simulated[0].gas_used - simulated[1].gas_used
        evm, ledger = pair.send(key, data)
        assert evm.success == ledger.success, (path, evm.revert_reason, ledger.revert_reason)

    domain = pair.domain

    def signed(
        nonce: int,
        *signers: bytes,
        to: str = fresh,
        value: int = 1_000,
        after: int = 0,
        before: int | None = None,
    ) -> tuple[Authorization, list[tuple[int, bytes, bytes]]]:
        """An authorization and each signer's signature, with a nonce on which every v is 27."""
        while True:
            a = Authorization(payer_address, to, value, after, before or now + 600, nonce.to_bytes(32, "big"))
            signatures = [sign_transfer(key, domain, a) for key in signers or (payer,)]
            if all(v == 27 for v, _, _ in signatures):
                return a, signatures
            nonce += 1000

    a, [sig] = signed(1)
    record("transfer_with_authorization", twa_call(a, *sig))
    record("already_used" if token == "pyusd" else "used", twa_call(a, *sig))
    a, [sig] = signed(2, after=now + 500)
    record("not_yet_valid", twa_call(a, *sig))
    a, [sig] = signed(3, before=now - 1)
    record("expired", twa_call(a, *sig))
    a, [(v, r, s), wrong] = signed(4, payer, other)
    record("invalid_s", twa_call(a, v, r, _high(s)))
    record("invalid_v", twa_call(a, 29, r, s))
    record("no_signer", twa_call(a, v, b"\x00" * 32, s))
    record("wrong_signer", twa_call(a, *wrong))
    a, [sig] = signed(5, to="0x" + "00" * 20)
    record("transfer_with_authorization:to_zero", twa_call(a, *sig))
    a, [sig] = signed(6, value=10**12)
    record("transfer_with_authorization:exceeds_balance", twa_call(a, *sig))

    n = 7
    while True:
        nonce = n.to_bytes(32, "big")
        (v, r, s), wrong = sign_cancel(payer, domain, nonce), sign_cancel(other, domain, nonce)
        if v == wrong[0] == 27:
            break
        n += 1000
    record("cancel_invalid_s", cancel_call(payer_address, nonce, v, r, _high(s)))
    record("cancel_invalid_v", cancel_call(payer_address, nonce, 29, r, s))
    record("cancel_no_signer", cancel_call(payer_address, nonce, v, b"\x00" * 32, s))
    record("cancel_wrong_signer", cancel_call(payer_address, nonce, *wrong))
    record("cancel", cancel_call(payer_address, nonce, v, r, s))
    record(
        "cancel_already_used" if token == "pyusd" else "cancel_used",
        cancel_call(payer_address, nonce, v, r, s),
    )

    record("transfer", encode_call("transfer(address,uint256)", other_address, 5), key=payer)
    record("transfer:to_zero", encode_call("transfer(address,uint256)", "0x" + "00" * 20, 5), key=payer)
    record(
        "transfer:exceeds_balance", encode_call("transfer(address,uint256)", other_address, 10**12), key=payer
    )
    record("mint_not_minter", encode_call("mint(address,uint256)", other_address, 5), key=payer)
    minter = pair.evm.minter_key
    record("mint", encode_call("mint(address,uint256)", other_address, 5), key=minter)
    record("mint_to_zero", encode_call("mint(address,uint256)", "0x" + "00" * 20, 5), key=minter)
    record("mint_zero", encode_call("mint(address,uint256)", other_address, 0), key=minter)
    return dict(sorted(table.items()))


def main() -> None:
    for token in ("usdc", "pyusd"):
        print(f"{token!r}: {{")
        for path, gas in calibrate(token).items():
            print(f"    {path!r}: {gas},")
        print("},")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
