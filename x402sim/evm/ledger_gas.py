"""Calibrate the ledger backend's gas on py-evm: ``python -m x402sim.evm.ledger_gas``.

The ledger charges storage gas by rule and everything else as a constant per function and exit
point (``ledger.EXECUTION_GAS``). ``calibrate`` measures those constants: it drives a ``LocalChain``
and a ``LedgerChain`` through the same transactions, one exit point each, with the ledger's
constants set to zero, and reads each constant off as the difference of the execution gas of the
two chains' simulations of the call (before refunds and the EIP-7623 calldata floor, which the
ledger applies by rule). Every signature used has v = 27; the rules add what a v of 28 costs.
Beside the EIP-3009 functions it measures the allowance half of the token (``approve``,
``transferFrom``, EIP-2612 ``permit``), Permit2's ``invalidateUnorderedNonces``, and each proxy's
``settle`` at every exit point and ``settleWithPermit`` at every permit outcome
(``permit2_rules.execution_gas`` composes the rest), checking as it goes that the ledger's rules
name the exit point measured.
The test suite checks that the table in ``ledger`` equals what this measures, and the differential
test (``tests/evm/test_ledger.py``) checks the result on random sequences.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import ledger as ledger_module
from .chain import ETHER, LocalChain, Receipt
from .contracts import EXACT_PERMIT2_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PERMIT2_PROXY_ADDRESS
from .eip712 import Authorization, Domain, address_of_key, authorization_digest, sign_digest
from .fiat_rules import CANCEL_AUTHORIZATION_TYPEHASH
from .hashing import keccak
from .ledger import LedgerChain
from .permit2 import (
    Eip2612Permit,
    PermitTransfer,
    eip2612_digest,
    exact_settle_call,
    exact_settle_with_permit_call,
    permit_witness_digest,
    upto_settle_call,
    upto_settle_with_permit_call,
)
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

    def send(
        self, key: bytes, data: bytes, gas: int = 150_000, to: str | None = None
    ) -> tuple[Receipt, Receipt]:
        """Send the same call to the token (or ``to``) on both chains, mine, and return both receipts."""
        hashes = [chain.transact(key, to or _token(chain), data, gas=gas) for chain in self.chains]
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

    def record(path: str, data: bytes, key: bytes = relayer, to: str | None = None) -> None:
        sender = address_of_key(key)
        target = to or _token(pair.evm)
        simulated = [chain.call(target, data, sender=sender) for chain in pair.chains]
        assert simulated[0].revert_reason == simulated[1].revert_reason, (path, simulated)
        exit_point = pair.ledger.exit_point(target, data, sender=sender, timestamp=pair.ledger.now)[1]
        assert exit_point == path, (path, exit_point)
        table[path] = simulated[0].gas_used - simulated[1].gas_used
        evm, ledger = pair.send(key, data, gas=300_000, to=to)
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
    _measure_allowances(pair, record, payer, other)
    _measure_proxies(pair, record, payer, relayer)
    return dict(sorted(table.items()))


def sign_permit(
    key: bytes, domain: Domain, spender: str, value: int, nonce: int, deadline: int
) -> tuple[int, bytes, bytes, int]:
    """An EIP-2612 permit signed with v = 27 (the deadline moved up until it is): (v, r, s, deadline)."""
    owner = address_of_key(key)
    while True:
        signature = sign_digest(
            key, eip2612_digest(domain, Eip2612Permit(owner, spender, value, nonce, deadline))
        )
        if signature[64] == 27:
            return 27, signature[:32], signature[32:64], deadline
        deadline += 1


def permit_call(owner: str, spender: str, value: int, deadline: int, v: int, r: bytes, s: bytes) -> bytes:
    return encode_call(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        owner,
        spender,
        value,
        deadline,
        v,
        r,
        s,
    )


def _measure_allowances(pair: Pair, record: Any, payer: bytes, other: bytes) -> None:
    """The tokens' approve, transferFrom and permit, and Permit2's invalidateUnorderedNonces."""
    payer_address, other_address = address_of_key(payer), address_of_key(other)
    zero = "0x" + "00" * 20
    now, domain = pair.evm.now, pair.domain
    approve = "approve(address,uint256)"
    transfer_from = "transferFrom(address,address,uint256)"
    record("approve", encode_call(approve, other_address, 50), key=payer)
    record("approve:to_zero", encode_call(approve, zero, 50), key=payer)
    record("transfer_from", encode_call(transfer_from, payer_address, other_address, 5), key=other)
    record(
        "transfer_from:exceeds_allowance",
        encode_call(transfer_from, payer_address, other_address, 99),
        key=other,
    )
    record("transfer_from:to_zero", encode_call(transfer_from, payer_address, zero, 5), key=other)
    record("approve", encode_call(approve, other_address, 10**13), key=payer)
    record(
        "transfer_from:exceeds_balance",
        encode_call(transfer_from, payer_address, other_address, 10**12),
        key=other,
    )
    record("transfer_from:from_zero", encode_call(transfer_from, zero, other_address, 0), key=other)
    v, r, s, deadline = sign_permit(payer, domain, other_address, 7, 0, now + 600)
    record("permit:expired", permit_call(payer_address, other_address, 7, now - 1, v, r, s))
    record("permit:invalid_s", permit_call(payer_address, other_address, 7, deadline, v, r, _high(s)))
    record("permit:invalid_v", permit_call(payer_address, other_address, 7, deadline, 29, r, s))
    record("permit:no_signer", permit_call(payer_address, other_address, 7, deadline, v, b"\x00" * 32, s))
    record("permit:wrong_signer", permit_call(payer_address, other_address, 8, deadline, v, r, s))
    record("permit", permit_call(payer_address, other_address, 7, deadline, v, r, s))
    v, r, s, deadline = sign_permit(payer, domain, zero, 7, 1, now + 600)
    record("permit:to_zero", permit_call(payer_address, zero, 7, deadline, v, r, s))
    record(
        "invalidate_unordered_nonces",
        encode_call("invalidateUnorderedNonces(uint256,uint256)", 3, 0b101),
        key=payer,
        to=PERMIT2_ADDRESS,
    )


def _measure_proxies(pair: Pair, record: Any, payer: bytes, relayer: bytes) -> None:
    """Each proxy's settle at every exit point, and settleWithPermit at every permit outcome."""
    nonces = iter(range(1000, 10**6))

    for upto in (False, True):
        _measure_proxy(pair, record, payer, relayer, upto, nonces)


def _measure_proxy(
    pair: Pair, record: Any, payer: bytes, relayer: bytes, upto: bool, nonces: Iterator[int]
) -> None:
    payer_address, relayer_address = address_of_key(payer), address_of_key(relayer)
    payee = address_of_key(keccak(b"calibration:payee"))
    zero = "0x" + "00" * 20
    chain_id, domain, token = pair.evm.chain_id, pair.domain, _token(pair.evm)
    approve = "approve(address,uint256)"
    now = pair.evm.now
    proxy = UPTO_PERMIT2_PROXY_ADDRESS if upto else EXACT_PERMIT2_PROXY_ADDRESS
    name = "upto" if upto else "exact"

    def permit(amount: int = 100, **changes: Any) -> PermitTransfer:
        fields: dict[str, Any] = {
            "token": token,
            "amount": amount,
            "spender": proxy,
            "nonce": next(nonces),
            "deadline": now + 600,
            "to": payee,
            "valid_after": 0,
            "facilitator": relayer_address if upto else None,
        }
        fields.update(changes)
        return PermitTransfer(**fields)

    def signed(p: PermitTransfer, key: bytes = payer) -> bytes:
        return sign_digest(key, permit_witness_digest(chain_id, p))

    def settle(
        p: PermitTransfer,
        signature: bytes,
        owner: str = payer_address,
        amount: int | None = None,
        with_permit: tuple[int, int, int, bytes, bytes] | None = None,
    ) -> bytes:
        if upto:
            charged = p.amount if amount is None else amount
            if with_permit is not None:
                return upto_settle_with_permit_call(with_permit, p, charged, owner, signature)
            return upto_settle_call(p, charged, owner, signature)
        if with_permit is not None:
            return exact_settle_with_permit_call(with_permit, p, owner, signature)
        return exact_settle_call(p, owner, signature)

    def run(path: str, data: bytes) -> None:
        record(path, data, to=proxy)

    # settle, with Permit2 approved
    record("approve", encode_call(approve, PERMIT2_ADDRESS, 10**13), key=payer)
    plain = f"{name}.settle"
    p = permit()
    run(f"{plain}|ok", settle(p, signed(p)))
    run(f"{plain}|InvalidNonce", settle(p, signed(p)))
    p = permit(amount=0)
    run(f"{plain}|InvalidAmount", settle(p, signed(p)))
    p = permit()
    run(f"{plain}|InvalidOwner", settle(p, signed(p), owner=zero))
    p = permit(to=zero)
    run(f"{plain}|InvalidDestination", settle(p, signed(p)))
    p = permit(valid_after=now + 500)
    run(f"{plain}|PaymentTooEarly", settle(p, signed(p)))
    p = permit(deadline=now - 1)
    run(f"{plain}|SignatureExpired", settle(p, signed(p)))
    p = permit()
    run(f"{plain}|InvalidSignature", settle(p, signed(p)[:64] + b"\x1d"))
    p = permit()
    run(f"{plain}|InvalidSigner", settle(p, signed(p, relayer)))
    p = permit(amount=10**7)
    run(f"{plain}|transfer_from:exceeds_balance", settle(p, signed(p)))
    if upto:
        p = permit()
        run(f"{plain}|AmountExceedsPermitted", settle(p, signed(p), amount=101))
        p = permit(facilitator=payer_address)
        run(f"{plain}|UnauthorizedFacilitator", settle(p, signed(p)))
    record("approve", encode_call(approve, PERMIT2_ADDRESS, 0), key=payer)
    p = permit()
    run(f"{plain}|transfer_from:exceeds_allowance", settle(p, signed(p)))

    # settleWithPermit: a good permit, then failing ones over an approval already given
    full = f"{name}.settleWithPermit"
    p = permit()
    nonce = int.from_bytes(pair.evm.call(token, encode_call("nonces(address)", payer_address)).output, "big")
    v, r, s, deadline = sign_permit(payer, domain, PERMIT2_ADDRESS, p.amount, nonce, now + 600)
    run(f"{full}|permit|ok", settle(p, signed(p), with_permit=(p.amount, deadline, v, r, s)))
    p = permit()
    run(
        f"{full}|Permit2612AmountMismatch",
        settle(p, signed(p), with_permit=(p.amount + 1, deadline, v, r, s)),
    )
    if upto:
        run(
            f"{full}|AmountExceedsPermitted",
            settle(p, signed(p), amount=101, with_permit=(p.amount, deadline, v, r, s)),
        )
        q = permit(facilitator=payer_address)
        run(
            f"{full}|UnauthorizedFacilitator",
            settle(q, signed(q), with_permit=(q.amount, deadline, v, r, s)),
        )
    record("approve", encode_call(approve, PERMIT2_ADDRESS, 10**13), key=payer)
    nonce += 1
    v, r, s, deadline = sign_permit(payer, domain, PERMIT2_ADDRESS, 100, nonce, now + 600)
    for outcome, permit2612 in (
        ("expired", (100, now - 1, v, r, s)),
        ("invalid_s", (100, deadline, v, r, _high(s))),
        ("invalid_v", (100, deadline, 29, r, s)),
        ("no_signer", (100, deadline, v, b"\x00" * 32, s)),
        ("wrong_signer", (100, deadline + 1, v, r, s)),
    ):
        p = permit()
        run(f"{full}|permit:{outcome}|ok", settle(p, signed(p), with_permit=permit2612))


def main() -> None:
    for token in ("usdc", "pyusd"):
        print(f"{token!r}: {{")
        for path, gas in calibrate(token).items():
            print(f"    {path!r}: {gas},")
        print("},")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
