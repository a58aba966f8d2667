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

import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eth_abi import encode

from . import ledger as ledger_module
from .chain import ETHER, ZERO_ADDRESS, LocalChain, Receipt
from .channels import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ChannelConfig,
    VoucherClaim,
    channel_id,
    claim_call,
    claim_with_signature_call,
    deposit_call,
    deposit_witness_digest,
    erc3009_collector_data,
    erc3009_deposit_nonce,
    finalize_withdraw_call,
    initiate_withdraw_call,
    multicall_call,
    permit2_collector_data,
    receive_authorization_digest,
    refund_call,
    refund_with_signature_call,
    settle_call,
    sign_claim_batch,
    sign_refund,
    sign_voucher,
)
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
    _Batch(pair, ledger_module.EXECUTION_GAS[token], table).run()
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


# -- the batch-settlement contract and its collectors -------------------------------------------------


class _Batch:
    """Calibration of ``batch_rules``: each measurement leaves exactly one constant unknown (the
    others are learnt before it), so the residual gas between the chains is that constant."""

    def __init__(self, pair: Pair, live: dict[str, int], table: dict[str, int]) -> None:
        self.pair, self.live, self.table = pair, live, table
        names = ("payer", "authorizer", "receiver", "receiver_authorizer", "relayer", "other", "poor")
        self.keys = {name: keccak(f"calibration:batch:{name}".encode()) for name in names}
        self.a = {name: address_of_key(key) for name, key in self.keys.items()}
        for name, address in self.a.items():
            pair.fund(address, usdc=0 if name in ("relayer", "poor") else 10**9, eth=ETHER)
        pair.fund(self.a["poor"], usdc=10)
        self.token = _token(pair.evm)
        self.chain_id = pair.evm.chain_id
        self.salts = iter(range(1, 10**6))
        self.nonces = iter(range(5000, 10**6))

    def residual(self, data: bytes, key: str, to: str) -> tuple[int, str]:
        sender = address_of_key(self.keys[key])
        simulated = [chain.call(to, data, sender=sender) for chain in self.pair.chains]
        assert simulated[0].revert_reason == simulated[1].revert_reason, simulated
        path = self.pair.ledger.exit_point(to, data, sender=sender, timestamp=self.pair.ledger.now)[1]
        return simulated[0].gas_used - simulated[1].gas_used, path

    def send(self, data: bytes, key: str = "relayer", to: str = BATCH_SETTLEMENT_ADDRESS) -> None:
        evm, ledger = self.pair.send(self.keys[key], data, gas=3_000_000, to=to)
        assert (evm.success, evm.revert_reason) == (ledger.success, ledger.revert_reason), (evm, ledger)

    def learn(
        self, name: str, data: bytes, key: str = "relayer", to: str = BATCH_SETTLEMENT_ADDRESS, path: str = ""
    ) -> int:
        """Measure the constant ``name`` (the one unknown of this call's exit point ``path``, by
        default ``name`` itself), then send the call on both chains."""
        gas, measured = self.residual(data, key, to)
        expected = path or name
        # a claim's failing row tells how many rows it left unrun: none, unless said
        assert measured in (expected, expected + "~0"), (name, path, measured)
        self.live[name] = self.table[name] = self.live.get(name, 0) + gas
        self.send(data, key, to)
        return gas

    def fix(self, name: str, delta: int) -> None:
        self.live[name] = self.table[name] = self.table[name] + delta

    # configs, deposits, vouchers --------------------------------------------------------------------

    def config(self, payer_signs: bool = False, **changes: Any) -> ChannelConfig:
        fields: dict[str, Any] = {
            "payer": self.a["payer"],
            "payer_authorizer": ZERO_ADDRESS if payer_signs else self.a["authorizer"],
            "receiver": self.a["receiver"],
            "receiver_authorizer": self.a["receiver_authorizer"],
            "token": self.token,
            "withdraw_delay": 900,
            "salt": next(self.salts).to_bytes(32, "big"),
        }
        fields.update(changes)
        return ChannelConfig(**fields)

    def erc3009(
        self, config: ChannelConfig, amount: int, signer: str = "payer", after: int = 0, before: int = 0,
        salt: int | None = None,
    ) -> bytes:  # fmt: skip
        """A deposit through the EIP-3009 collector, its signature with v = 27."""
        after, before, s, signature = self.erc3009_parts(config, amount, signer, after, before, salt)
        data = erc3009_collector_data(after, before, s, signature)
        return deposit_call(config, amount, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, data)

    def erc3009_parts(
        self, config: ChannelConfig, amount: int, signer: str = "payer", after: int = 0, before: int = 0,
        salt: int | None = None,
    ) -> tuple[int, int, int, bytes]:  # fmt: skip
        cid = channel_id(config, self.chain_id)
        before = before or self.pair.evm.now + 3600
        while True:
            s = next(self.salts) if salt is None else salt
            nonce = erc3009_deposit_nonce(cid, s)
            digest = receive_authorization_digest(
                self.pair.domain, config.payer, amount, after, before, nonce
            )
            signature = sign_digest(self.keys[signer], digest)
            if signature[64] == 27 or salt is not None:
                return after, before, s, signature

    def permit2(
        self, config: ChannelConfig, amount: int, signer: str = "payer", deadline: int = 0,
        nonce: int | None = None, eip2612: bytes = b"",
    ) -> bytes:  # fmt: skip
        cid = channel_id(config, self.chain_id)
        deadline = deadline or self.pair.evm.now + 3600
        nonce = next(self.nonces) if nonce is None else nonce
        digest = deposit_witness_digest(self.chain_id, self.token, amount, nonce, deadline, cid)
        signature = sign_digest(self.keys[signer], digest)
        data = permit2_collector_data(nonce, deadline, signature, eip2612)
        return deposit_call(config, amount, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data)

    def voucher(
        self, config: ChannelConfig, ceiling: int, claimed: int, signer: str = "authorizer"
    ) -> VoucherClaim:
        cid = channel_id(config, self.chain_id)
        return VoucherClaim(
            config, ceiling, sign_voucher(self.keys[signer], self.chain_id, cid, ceiling), claimed
        )

    def signed(self, rows: list[VoucherClaim], signer: str = "receiver_authorizer") -> bytes:
        return claim_with_signature_call(rows, sign_claim_batch(self.keys[signer], self.chain_id, rows))

    def refund_signed(
        self, config: ChannelConfig, amount: int, nonce: int, signer: str = "receiver_authorizer"
    ) -> bytes:
        cid = channel_id(config, self.chain_id)
        signature = sign_refund(self.keys[signer], self.chain_id, cid, nonce, amount)
        return refund_with_signature_call(config, amount, nonce, signature)

    def funded(self, payer_signs: bool = False, amount: int = 10**6, **changes: Any) -> ChannelConfig:
        config = self.config(payer_signs, **changes)
        self.send(self.erc3009(config, amount))
        return config

    # the measurements -------------------------------------------------------------------------------

    def run(self) -> None:
        self.deposits()
        self.claims()
        self.signed_claims()
        self.settlements()
        self.withdrawals()
        self.refunds()
        self.multicalls()

    def deposits(self) -> None:
        zero, d = ZERO_ADDRESS, "batch.deposit"
        learn, base = self.learn, self.config()
        # the exits before the collector runs cost one constant more per word of collectorData
        learn(f"{d}|InvalidCollector", deposit_call(base, 10, zero, b""), path=f"{d}|InvalidCollector~0")
        two = learn(f"{d}.word", deposit_call(base, 10, zero, b"\x01" * 64), path=f"{d}|InvalidCollector~2")
        self.fix(f"{d}.word", two // 2 - two)
        words = "~" + str(_words(erc3009_collector_data(0, 0, 0, bytes(65))))
        for field, name in (
            ("payer", "payer"),
            ("receiver", "receiver"),
            ("receiver_authorizer", "receiverAuthorizer"),
            ("token", "token"),
        ):
            bad = ChannelConfig(**{**dataclasses.asdict(base), field: zero})
            learn(
                f"{d}|InvalidChannel:{name}",
                self.erc3009(bad, 10, salt=1),
                path=f"{d}|InvalidChannel:{name}{words}",
            )
        for name, config in (
            ("low", self.config(withdraw_delay=899)),
            ("high", self.config(withdraw_delay=2592001)),
        ):
            key = f"{d}|WithdrawDelayOutOfRange:{name}"
            learn(key, self.erc3009(config, 10), path=key + words)
        learn(f"{d}|ZeroDeposit", self.erc3009(base, 0, salt=1), path=f"{d}|ZeroDeposit{words}")
        e = "batch.deposit.erc3009|"
        learn(e + "receive|transfer|ok:created", self.erc3009(base, 1000))
        learn(e + "receive|transfer|ok", self.erc3009(base, 1000))
        learn(
            f"{d}|DepositOverflow", self.erc3009(base, 2**128 - 1, salt=1), path=f"{d}|DepositOverflow{words}"
        )
        data = self.erc3009(base, 1000)
        self.send(data)
        if self.pair.ledger.token == "pyusd":
            learn(e + "receive:already_used|transfer:exceeds_balance", data)
            # PYUSD returns quietly on a used authorization: the collector then forwards tokens
            # that someone sent it, and the deposit counts them
            self.pair.fund(ERC3009_DEPOSIT_COLLECTOR_ADDRESS, usdc=10_000)
            learn(e + "receive:already_used|transfer|ok", data)
            emptied = self.config()
            data = self.erc3009(emptied, 1000)
            self.send(data)
            self.send(refund_call(emptied, 1000), key="receiver_authorizer")
            learn(e + "receive:already_used|transfer|ok:created", data)
        else:
            learn(e + "receive:used", data)
        now = self.pair.evm.now
        learn(e + "receive:not_yet_valid", self.erc3009(base, 10, after=now + 600))
        learn(e + "receive:expired", self.erc3009(base, 10, before=now - 1))
        learn(e + "receive:wrong_signer", self.erc3009(base, 10, signer="other"))
        learn(
            e + "receive:exceeds_balance",
            self.erc3009(self.config(payer=self.a["poor"]), 1000, signer="poor"),
        )
        after, before, salt, signature = self.erc3009_parts(base, 10)
        config, amount, collector = base, 10, ERC3009_DEPOSIT_COLLECTOR_ADDRESS
        for name, spoilt in (
            ("invalid_s", _high_signature(signature)),
            ("invalid_v", signature[:64] + b"\x1d"),
            ("no_signer", b"\x00" * 32 + signature[32:]),
        ):
            data = erc3009_collector_data(after, before, salt, spoilt)
            learn(e + "receive:" + name, deposit_call(config, amount, collector, data))
        # Permit2
        p = "batch.deposit.permit2|"
        payer = "payer"
        self.send(encode_call("approve(address,uint256)", PERMIT2_ADDRESS, 10**15), key=payer, to=self.token)
        fresh = self.config()
        learn(p + "ok|ok:created", self.permit2(fresh, 1000))
        learn(p + "ok|ok", self.permit2(fresh, 1000))
        data = self.permit2(fresh, 1000)
        self.send(data)
        learn(p + "InvalidNonce", data)
        learn(p + "SignatureExpired", self.permit2(fresh, 1000, deadline=self.pair.evm.now - 1))
        learn(p + "InvalidSigner", self.permit2(fresh, 1000, signer="other"))
        nonce, deadline = next(self.nonces), self.pair.evm.now + 3600
        digest = deposit_witness_digest(
            self.chain_id, self.token, 1000, nonce, deadline, channel_id(fresh, self.chain_id)
        )
        signature = sign_digest(self.keys[payer], digest)
        data = permit2_collector_data(nonce, deadline, signature[:64] + b"\x1d")
        learn(p + "InvalidSignature", deposit_call(fresh, 1000, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data))
        learn(p + "transfer_from:exceeds_balance", self.permit2(fresh, 10**10))
        self.send(encode_call("approve(address,uint256)", PERMIT2_ADDRESS, 0), key=payer, to=self.token)
        learn(p + "transfer_from:exceeds_allowance", self.permit2(fresh, 1000))
        # the EIP-2612 permit segment: a good permit, then failing ones over an approval given
        domain, owner = self.pair.domain, self.a["payer"]
        count = int.from_bytes(
            self.pair.evm.call(self.token, encode_call("nonces(address)", owner)).output, "big"
        )
        v, r, s, deadline = sign_permit(
            self.keys["payer"], domain, PERMIT2_ADDRESS, 1000, count, self.pair.evm.now + 600
        )

        def segment(value: int, deadline: int, v: int, r: bytes, s: bytes) -> bytes:
            return encode(["uint256", "uint256", "uint8", "bytes32", "bytes32"], [value, deadline, v, r, s])

        learn(
            p + "Permit2612AmountMismatch", self.permit2(fresh, 1000, eip2612=segment(999, deadline, v, r, s))
        )
        learn(
            "batch.deposit.permit2.permit|permit",
            self.permit2(fresh, 1000, eip2612=segment(1000, deadline, v, r, s)),
            path=p + "permit|ok|ok",
        )
        self.send(encode_call("approve(address,uint256)", PERMIT2_ADDRESS, 10**15), key=payer, to=self.token)
        count += 1
        v, r, s, deadline = sign_permit(
            self.keys["payer"], domain, PERMIT2_ADDRESS, 1000, count, self.pair.evm.now + 600
        )
        for outcome, args in (
            ("expired", (self.pair.evm.now - 1, v, r, s)),
            ("invalid_s", (deadline, v, r, _high(s))),
            ("invalid_v", (deadline, 29, r, s)),
            ("no_signer", (deadline, v, b"\x00" * 32, s)),
            ("wrong_signer", (deadline + 1, v, r, s)),
        ):
            learn(
                f"batch.deposit.permit2.permit|permit:{outcome}",
                self.permit2(fresh, 1000, eip2612=segment(1000, *args)),
                path=f"{p}permit:{outcome}|ok|ok",
            )
        for size in (0, 64):
            collect = encode_call(
                "collect(address,address,uint256,bytes32,bytes)",
                owner,
                self.token,
                1,
                b"\x00" * 32,
                b"\x01" * size,
            )
            for kind, address in (
                ("erc3009", ERC3009_DEPOSIT_COLLECTOR_ADDRESS),
                ("permit2", PERMIT2_DEPOSIT_COLLECTOR_ADDRESS),
            ):
                path = f"collect.{kind}|OnlyX402BatchSettlement~{size // 32}"
                if size == 0:
                    learn(path.partition("~")[0], collect, to=address, path=path)
                elif kind == "erc3009":
                    two = learn("collect.word", collect, to=address, path=path)
                    self.fix("collect.word", two // 2 - two)
                else:
                    assert self.residual(collect, "relayer", address)[0] == 0

    def claims(self) -> None:
        learn, ra = self.learn, "receiver_authorizer"
        c, cp = self.funded(), self.funded(payer_signs=True)
        learn("batch.claim|EmptyBatch", claim_call([]), key=ra)
        ceiling = self.voucher(c, 10**5, 10**5 + 1)
        learn("batch.claim|ClaimExceedsCeiling", claim_call([ceiling]), key=ra)
        learn(
            "batch.claim.second",
            claim_call([ceiling]),
            key="receiver",
            path="batch.claim|r.ClaimExceedsCeiling~0",
        )
        learn(
            "batch.claim|NotAuthorizedToClaim",
            claim_call([ceiling]),
            path="batch.claim|r.NotAuthorizedToClaim~0",
        )
        learn("batch.claim|ClaimExceedsBalance", claim_call([self.voucher(c, 10**7, 10**7)]), key=ra)
        v = self.voucher(c, 100, 50)
        high = dataclasses.replace(v, signature=_high_signature(v.signature))
        learn("batch.claim|ECDSAInvalidSignatureS", claim_call([high]), key=ra)
        learn(
            "batch.claim|ECDSAInvalidSignature",
            claim_call([dataclasses.replace(v, signature=v.signature[:64] + b"\x1d")]),
            key=ra,
        )
        learn("batch.claim|InvalidSignature", claim_call([self.voucher(c, 100, 50, signer="other")]), key=ra)
        vp = self.voucher(cp, 100, 50, signer="payer")
        for failure, signature in (
            ("high_s", _high_signature(vp.signature)),
            ("no_signer", vp.signature[:64] + b"\x1d"),
            ("wrong", self.voucher(cp, 100, 50, signer="other").signature),
        ):
            bad = dataclasses.replace(vp, signature=signature)
            learn(f"batch.claim|InvalidSignature:payer:{failure}", claim_call([bad]), key=ra)
        learn(
            "batch.claim.row|claim",
            claim_call([v, ceiling]),
            key=ra,
            path="batch.claim|claim|ClaimExceedsCeiling~0",
        )
        self.send(claim_call([v]), key=ra)
        learn(
            "batch.claim.row|skip",
            claim_call([v, ceiling]),
            key=ra,
            path="batch.claim|skip|ClaimExceedsCeiling~0",
        )
        learn(
            "batch.claim.row|claim:payer",
            claim_call([vp, ceiling]),
            key=ra,
            path="batch.claim|claim:payer|ClaimExceedsCeiling~0",
        )
        learn("batch.claim.unrun", claim_call([ceiling, v]), key=ra, path="batch.claim|ClaimExceedsCeiling~1")
        learn("batch.claim|ok", claim_call([self.voucher(c, 100, 60)]), key=ra, path="batch.claim|claim|ok")

    def signed_claims(self) -> None:
        learn, name = self.learn, "batch.claimWithSignature"
        c, cp = self.funded(), self.funded(payer_signs=True)
        learn(f"{name}|EmptyBatch", claim_with_signature_call([], b"\x00" * 65))
        v = self.voucher(c, 100, 50)
        learn(
            f"{name}|InvalidSignature:wrong",
            self.signed([v], signer="other"),
            path=f"{name}|hash*1|InvalidSignature:wrong",
        )
        hashed = learn(
            f"{name}.hash", self.signed([v, v], signer="other"), path=f"{name}|hash*2|InvalidSignature:wrong"
        )
        self.fix(f"{name}|InvalidSignature:wrong", -hashed)
        rows = [v]
        sig = sign_claim_batch(self.keys["receiver_authorizer"], self.chain_id, rows)
        learn(
            f"{name}|InvalidSignature:high_s",
            claim_with_signature_call(rows, _high_signature(sig)),
            path=f"{name}|hash*1|InvalidSignature:high_s",
        )
        learn(
            f"{name}|InvalidSignature:no_signer",
            claim_with_signature_call(rows, sig[:64] + b"\x1d"),
            path=f"{name}|hash*1|InvalidSignature:no_signer",
        )
        ceiling = self.voucher(c, 10**5, 10**5 + 1)
        learn(
            f"{name}|ClaimExceedsCeiling", self.signed([ceiling]), path=f"{name}|hash*1|ClaimExceedsCeiling"
        )
        learn(
            f"{name}|ClaimExceedsBalance",
            self.signed([self.voucher(c, 10**7, 10**7)]),
            path=f"{name}|hash*1|ClaimExceedsBalance~0",
        )
        high = dataclasses.replace(v, signature=_high_signature(v.signature))
        learn(
            f"{name}|ECDSAInvalidSignatureS",
            self.signed([high]),
            path=f"{name}|hash*1|ECDSAInvalidSignatureS~0",
        )
        learn(
            f"{name}|ECDSAInvalidSignature",
            self.signed([dataclasses.replace(v, signature=v.signature[:64] + b"\x1d")]),
            path=f"{name}|hash*1|ECDSAInvalidSignature~0",
        )
        learn(
            f"{name}|InvalidSignature",
            self.signed([self.voucher(c, 100, 50, signer="other")]),
            path=f"{name}|hash*1|InvalidSignature~0",
        )
        vp = self.voucher(cp, 100, 50, signer="payer")
        for failure, signature in (
            ("high_s", _high_signature(vp.signature)),
            ("no_signer", vp.signature[:64] + b"\x1d"),
            ("wrong", self.voucher(cp, 100, 50, signer="other").signature),
        ):
            bad = dataclasses.replace(vp, signature=signature)
            learn(
                f"{name}|InvalidSignature:payer:{failure}",
                self.signed([bad]),
                path=f"{name}|hash*1|InvalidSignature:payer:{failure}~0",
            )
        learn(
            f"{name}.row|claim", self.signed([v, ceiling]), path=f"{name}|hash*2|claim|ClaimExceedsCeiling~0"
        )
        self.send(self.signed([v]))
        learn(f"{name}.row|skip", self.signed([v, ceiling]), path=f"{name}|hash*2|skip|ClaimExceedsCeiling~0")
        learn(
            f"{name}.row|claim:payer",
            self.signed([vp, ceiling]),
            path=f"{name}|hash*2|claim:payer|ClaimExceedsCeiling~0",
        )
        other = self.funded(receiver_authorizer=self.a["other"])
        learn(
            f"{name}|NotReceiverAuthorizer",
            self.signed([v, self.voucher(other, 10, 5)]),
            path=f"{name}|hash*2|skip|NotReceiverAuthorizer~0",
        )
        learn(f"{name}.unrun", self.signed([ceiling, v]), path=f"{name}|hash*2|ClaimExceedsCeiling~1")
        learn(f"{name}|ok", self.signed([self.voucher(c, 100, 60)]), path=f"{name}|hash*1|claim|ok")

    def settlements(self) -> None:
        self.learn("batch.settle|ok", settle_call(self.a["receiver"], self.token))
        self.learn("batch.settle|nothing", settle_call(self.a["receiver"], self.token))

    def withdrawals(self) -> None:
        learn, payer = self.learn, "payer"
        for function, call in (
            ("initiateWithdraw", lambda c: initiate_withdraw_call(c, 0)),
            ("finalizeWithdraw", finalize_withdraw_call),
        ):
            c = self.funded()
            first = "NothingToWithdraw" if function == "initiateWithdraw" else "WithdrawalNotPending"
            denied = "InvalidChannel" if function == "initiateWithdraw" else "NotAuthorizedToFinalizeWithdraw"
            learn(f"batch.{function}|{first}", call(c), key=payer)
            learn(f"batch.{function}.second", call(c), key="authorizer", path=f"batch.{function}|a.{first}")
            learn(f"batch.{function}|{denied}", call(c), path=f"batch.{function}|a.{denied}")
        c = self.funded()
        learn(
            "batch.initiateWithdraw|WithdrawAmountExceedsAvailable",
            initiate_withdraw_call(c, 10**6 + 1),
            key=payer,
        )
        learn("batch.initiateWithdraw|ok", initiate_withdraw_call(c, 1000), key=payer)
        learn("batch.initiateWithdraw|WithdrawalAlreadyPending", initiate_withdraw_call(c, 1000), key=payer)
        learn("batch.finalizeWithdraw|WithdrawDelayNotElapsed", finalize_withdraw_call(c), key=payer)
        self.pair.set_time(self.pair.evm.now + 901)
        learn("batch.finalizeWithdraw|ok", finalize_withdraw_call(c), key=payer)
        c = self.funded()
        self.send(initiate_withdraw_call(c, 10**6), key=payer)
        self.pair.set_time(self.pair.evm.now + 901)
        learn("batch.finalizeWithdraw|ok:closed", finalize_withdraw_call(c), key=payer)
        c = self.funded(amount=1000)
        self.send(initiate_withdraw_call(c, 1000), key=payer)
        self.send(claim_call([self.voucher(c, 1000, 1000)]), key="receiver_authorizer")
        self.pair.set_time(self.pair.evm.now + 901)
        learn("batch.finalizeWithdraw|empty", finalize_withdraw_call(c), key=payer)

    def refunds(self) -> None:
        learn, ra = self.learn, "receiver_authorizer"
        r, rs = "batch.refund", "batch.refundWithSignature"
        c = self.funded()
        learn(f"{r}|ZeroRefund", refund_call(c, 0), key=ra)
        learn(f"{r}.second", refund_call(c, 0), key="receiver", path=f"{r}|r.ZeroRefund")
        learn(f"{r}|NotAuthorizedToRefund", refund_call(c, 0), path=f"{r}|r.NotAuthorizedToRefund")
        learn(f"{rs}|InvalidRefundNonce", self.refund_signed(c, 10, 5))
        learn(f"{rs}|ZeroRefund", self.refund_signed(c, 0, 0))
        sig = sign_refund(self.keys[ra], self.chain_id, channel_id(c, self.chain_id), 0, 10)
        for failure, bad in (
            ("high_s", _high_signature(sig)),
            ("no_signer", sig[:64] + b"\x1d"),
            ("wrong", sign_refund(self.keys["other"], self.chain_id, channel_id(c, self.chain_id), 0, 10)),
        ):
            learn(f"{rs}|InvalidSignature:{failure}", refund_with_signature_call(c, 10, 0, bad))
        for name, call in ((r, lambda c, a, n: refund_call(c, a)), (rs, self.refund_signed)):
            key = ra if name == r else "relayer"
            c = self.funded(amount=1000)
            learn(f"{name}|ok", call(c, 10, 0), key=key)
            self.send(initiate_withdraw_call(c, 100), key="payer")
            learn(f"{name}|ok:reduced", call(c, 10, 1), key=key)
            learn(f"{name}|ok:cleared", call(c, 90, 2), key=key)
            c = self.funded(amount=1000)
            learn(f"{name}|ok:closed", call(c, 10**6, 0), key=key)
            learn(f"{name}|nothing", call(c, 10, 1), key=key)
            c = self.funded(amount=1000)
            self.send(initiate_withdraw_call(c, 100), key="payer")
            learn(f"{name}|ok:cleared:closed", call(c, 10**6, 0), key=key)

    def multicalls(self) -> None:
        m, learn, ra = "batch.multicall", self.learn, "receiver_authorizer"
        c = self.funded()
        learn(f"{m}|ok", multicall_call([]), path=f"{m}[]ok")
        settle = settle_call(self.a["receiver"], self.token)  # 68 bytes: 3 words
        self.send(settle)
        one = f"batch.settle|nothing~{_words(settle)}"
        learn(f"{m}.first", multicall_call([settle]), path=f"{m}[{one}]ok")
        per_call = learn(f"{m}.call", multicall_call([settle, settle]), path=f"{m}[{one};{one}]ok")
        self.fix(f"{m}.first", -per_call)
        claim = claim_call([self.voucher(c, 100, 10)])
        extra = _words(claim) - _words(settle)
        words = learn(
            f"{m}.word", multicall_call([claim]), key=ra, path=f"{m}[batch.claim|claim|ok~{_words(claim)}]ok"
        )
        assert words % extra == 0, (words, extra)
        self.fix(f"{m}.word", words // extra - words)
        self.fix(f"{m}.call", -_words(settle) * (words // extra))
        zero = refund_call(c, 0)  # ZeroRefund(): 4 bytes of revert data, one word
        learn(
            f"{m}|fail",
            multicall_call([zero]),
            key=ra,
            path=f"{m}[batch.refund|ZeroRefund~{_words(zero)}]fail~1~",
        )
        v = self.voucher(c, 100, 50)
        high = claim_call([dataclasses.replace(v, signature=_high_signature(v.signature))])
        extra = learn(
            f"{m}.revert_word",
            multicall_call([high]),
            key=ra,
            path=f"{m}[batch.claim|ECDSAInvalidSignatureS~0~{_words(high)}]fail~2~",
        )
        self.fix(f"{m}|fail", -extra)
        # calls after a failing one: read in, never run
        fail = f"{m}[batch.refund|ZeroRefund~{_words(zero)}]fail~1"
        learn(f"{m}.unrun", multicall_call([zero, settle]), key=ra, path=f"{fail}~{_words(settle)}")
        longer = learn(
            f"{m}.unrun_word", multicall_call([zero, claim]), key=ra, path=f"{fail}~{_words(claim)}"
        )
        word = longer // (_words(claim) - _words(settle))
        assert word * (_words(claim) - _words(settle)) == longer, longer
        self.fix(f"{m}.unrun_word", word - longer)
        self.fix(f"{m}.unrun", -_words(settle) * word)
        # a call before a failing one: its result is never returned (the constant learnt with the
        # results returned is split into the call and the result)
        self.send(settle)
        result = -learn(
            f"{m}.result",
            multicall_call([settle, zero]),
            key=ra,
            path=f"{m}[{one};batch.refund|ZeroRefund~9]fail~1~",
        )
        self.fix(f"{m}.result", 2 * result)
        self.fix(f"{m}.call", -result)
        for calls in (
            [settle, claim_call([self.voucher(c, 100, 20)])],
            [settle, settle, zero],
            [settle, high],
        ):
            assert self.residual(multicall_call(calls), ra, BATCH_SETTLEMENT_ADDRESS)[0] == 0, calls


def _words(data: bytes) -> int:
    return -(-len(data) // 32)


def _high_signature(signature: bytes) -> bytes:
    """The malleable twin of a 65-byte signature: high s, the other v."""
    return signature[:32] + _high(signature[32:64]) + bytes([55 - signature[64]])


def main() -> None:
    """Print the table as ``ledger`` holds it: the rows both tokens share, then each token's own."""
    measured = {token: calibrate(token) for token in ("usdc", "pyusd")}
    usdc, pyusd = measured["usdc"], measured["pyusd"]
    shared = {path: gas for path, gas in usdc.items() if pyusd.get(path) == gas}
    print("_SHARED_GAS = {")
    for path, gas in sorted(shared.items()):
        print(f"    {path!r}: {gas},")
    print("}\n_TOKEN_GAS = {")
    for token, table in measured.items():
        print(f"    {token!r}: {{")
        for path, gas in sorted(table.items()):
            if path not in shared:
                print(f"        {path!r}: {gas},")
        print("    },")
    print("}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
