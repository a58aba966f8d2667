"""Gas of the Permit2 settlement paths on the embedded chain, against EIP-3009 measured alike.

Run: ``.venv/bin/python benchmarks/permit2_gas.py`` (``--markdown`` prints the table as Markdown).

Every figure is the ``gasUsed`` of one mined transaction on a fresh ``LocalChain`` (py-evm, Prague;
the contracts are the project's Vyper versions, not the deployed Solidity ones, so read the
differences between rows rather than the absolute numbers). The payer holds tokens already, the
payee holds none, and the Permit2 nonce word and EIP-2612 nonce are untouched, so each row pays for
the storage it first writes, as a payer's first payment to a new payee does:

1. ``approve(Permit2, max)``: the payer's one-time approval (the Permit2 paths below assume it,
   except ``settleWithPermit``, which approves through EIP-2612 inside the settlement);
2. exact ``settle`` and ``settleWithPermit``, upto ``settle`` and ``settleWithPermit`` (upto
   settles half its ceiling);
3. the baseline: EIP-3009 ``transferWithAuthorization`` of the same amount.
Gas is deterministic here, so one run is the answer.
"""

from __future__ import annotations

import argparse

from x402sim.evm import LocalChain, address_of_key, sign_digest
from x402sim.evm import permit2 as p2
from x402sim.evm.eip712 import Authorization, authorization_digest, split_signature
from x402sim.evm.token import transfer_with_authorization_call

AMOUNT = 10_000  # 0.01 USDC
GAS = 1_000_000


class Bench:
    def __init__(self) -> None:
        self.chain = LocalChain()
        self.keys = [self.chain.new_key() for _ in range(3)]
        self.payer, self.facilitator, self.payee = (address_of_key(k) for k in self.keys)
        self.chain.fund_many([(self.payer, 10**9, 10**18), (self.facilitator, 0, 10**18)])

    def send(self, key: bytes, to: str, data: bytes) -> int:
        tx_hash = self.chain.transact(key, to, data, gas=GAS)
        self.chain.mine()
        receipt = self.chain.receipt(tx_hash)
        assert receipt is not None and receipt.success, receipt
        return receipt.gas_used

    def approve(self) -> int:
        return self.send(self.keys[0], self.chain.usdc, p2.approve_call(p2.PERMIT2_ADDRESS, p2.UINT256_MAX))

    def permit(self, *, upto: bool) -> tuple[p2.PermitTransfer, bytes]:
        now = self.chain.now
        permit = p2.PermitTransfer(
            token=self.chain.usdc,
            amount=AMOUNT,
            spender=p2.UPTO_PERMIT2_PROXY_ADDRESS if upto else p2.EXACT_PERMIT2_PROXY_ADDRESS,
            nonce=12345,
            deadline=now + 600,
            to=self.payee,
            valid_after=now - 60,
            facilitator=self.facilitator if upto else None,
        )
        return permit, sign_digest(self.keys[0], p2.permit_witness_digest(self.chain.chain_id, permit))

    def permit2612(self) -> tuple[int, int, int, bytes, bytes]:
        chain = self.chain
        nonce = p2.eip2612_nonce(chain, chain.usdc, self.payer)
        permit = p2.Eip2612Permit(self.payer, p2.PERMIT2_ADDRESS, AMOUNT, nonce, chain.now + 600)
        v, r, s = split_signature(sign_digest(self.keys[0], p2.eip2612_digest(chain.domain, permit)))
        return (AMOUNT, permit.deadline, v, r, s)

    def settle(self, *, upto: bool, with_permit: bool) -> int:
        permit, signature = self.permit(upto=upto)
        proxy = p2.proxy_for(permit)
        if with_permit and upto:
            data = p2.upto_settle_with_permit_call(
                self.permit2612(), permit, AMOUNT // 2, self.payer, signature
            )
        elif with_permit:
            data = p2.exact_settle_with_permit_call(self.permit2612(), permit, self.payer, signature)
        elif upto:
            data = p2.upto_settle_call(permit, AMOUNT // 2, self.payer, signature)
        else:
            data = p2.exact_settle_call(permit, self.payer, signature)
        return self.send(self.keys[1], proxy, data)

    def eip3009(self) -> int:
        now = self.chain.now
        auth = Authorization(self.payer, self.payee, AMOUNT, now - 60, now + 600, b"\x07" * 32)
        v, r, s = split_signature(sign_digest(self.keys[0], authorization_digest(self.chain.domain, auth)))
        data = transfer_with_authorization_call(
            auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s
        )
        return self.send(self.keys[1], self.chain.usdc, data)


def measure() -> list[tuple[str, int]]:
    """(path, gasUsed) rows, each on a fresh chain."""
    rows = [("ERC-20 approve(Permit2, max), once per payer", Bench().approve())]
    for label, upto, with_permit in (
        ("exact settle", False, False),
        ("exact settleWithPermit (EIP-2612 approval inside)", False, True),
        ("upto settle", True, False),
        ("upto settleWithPermit (EIP-2612 approval inside)", True, True),
    ):
        bench = Bench()
        if not with_permit:
            bench.approve()
        rows.append((label, bench.settle(upto=upto, with_permit=with_permit)))
    rows.append(("EIP-3009 transferWithAuthorization (baseline)", Bench().eip3009()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    rows = measure()
    baseline = rows[-1][1]
    if args.markdown:
        print("| Transaction | gasUsed | vs EIP-3009 |")
        print("|---|---:|---:|")
        for label, gas in rows:
            print(f"| {label} | {gas:,} | {gas / baseline:.2f}x |")
        return
    width = max(len(label) for label, _ in rows)
    for label, gas in rows:
        print(f"{label:<{width}}  {gas:>9,}  {gas / baseline:5.2f}x")


if __name__ == "__main__":
    main()
