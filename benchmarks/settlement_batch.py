"""Settlement throughput on the embedded chain, and signing speed, as ratios against baselines.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/settlement_batch.py --n 200 --repeat 3``).

1. Settlement: ``n`` signed transferWithAuthorization transactions mined in ONE block (``mine_all``
   in one pass) against the baseline of the same ``n`` mined one transaction per block.
2. Signing: the fast EIP-712 path (precomputed domain, direct struct hash, coincurve) against
   eth-account's ``sign_typed_data``; recovery likewise against ``recover_message``.

Both sides of each ratio run in the same process, interleaved, best of ``--repeat``: the machines
are noisy, so only ratios are meaningful.
"""

from __future__ import annotations

import argparse
import random
import time

from eth_account import Account
from eth_account.messages import encode_typed_data

from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.eip712 import (
    Authorization,
    authorization_digest,
    recover_digest,
    sign_digest,
    split_signature,
    typed_data,
)
from x402sim.evm.token import transfer_with_authorization_call


def _prepare(n: int, seed: int):
    chain = LocalChain(seed=seed)
    payers = [chain.new_key() for _ in range(10)]
    payee = address_of_key(chain.new_key())
    relayer = chain.new_key()
    chain.fund_many(
        [(address_of_key(k), 10**12, 0) for k in payers] + [(address_of_key(relayer), 0, 100 * ETHER)]
    )
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        key = payers[i % len(payers)]
        auth = Authorization(
            address_of_key(key), payee, 1_000, chain.now - 600, chain.now + 3600, rng.randbytes(32)
        )
        v, r, s = split_signature(sign_digest(key, authorization_digest(chain.domain, auth)))
        calls.append(
            transfer_with_authorization_call(
                auth.from_, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce, v, r, s
            )
        )
    return chain, relayer, calls


def _settle(n: int, seed: int, one_block: bool) -> float:
    chain, relayer, calls = _prepare(n, seed)
    start = time.perf_counter()
    hashes = []
    for data in calls:
        hashes.append(chain.transact(relayer, chain.usdc, data, gas=150_000))
        if not one_block:
            chain.mine()
    if one_block:
        chain.mine()
    elapsed = time.perf_counter() - start
    assert all(chain.receipt(h).success for h in hashes), "a settlement failed"
    return elapsed


def _signing(n: int) -> tuple[float, float, float, float]:
    chain = LocalChain()
    key = chain.new_key()
    rng = random.Random(1)
    auths = [
        Authorization(
            address_of_key(key), address_of_key(chain.new_key()), i + 1, 0, 2**40, rng.randbytes(32)
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    fast = [sign_digest(key, authorization_digest(chain.domain, a)) for a in auths]
    t1 = time.perf_counter()
    slow = [Account.sign_typed_data(key, full_message=typed_data(chain.domain, a)).signature for a in auths]
    t2 = time.perf_counter()
    for a, sig in zip(auths, fast, strict=True):
        recover_digest(authorization_digest(chain.domain, a), sig)
    t3 = time.perf_counter()
    for a, sig in zip(auths, slow, strict=True):
        Account.recover_message(encode_typed_data(full_message=typed_data(chain.domain, a)), signature=sig)
    t4 = time.perf_counter()
    assert [bytes(s) for s in slow] == fast, "fast and reference signatures differ"
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="settlements per run (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best is kept (default 3)")
    args = parser.parse_args()

    batch, single = [], []
    for i in range(args.repeat):
        single.append(_settle(args.n, seed=i, one_block=False))
        batch.append(_settle(args.n, seed=i, one_block=True))
    b, s = min(batch), min(single)
    print(f"settlement of {args.n} transferWithAuthorization (best of {args.repeat}):")
    print(f"  baseline, one tx per block : {s:7.3f} s  ({args.n / s:7.1f} tx/s)")
    print(f"  one block, one pass        : {b:7.3f} s  ({args.n / b:7.1f} tx/s)")
    print(f"  ratio (baseline / batch)   : {s / b:7.2f}x")

    runs = [_signing(args.n) for _ in range(args.repeat)]
    fs, rs, fr, rr = (min(r[i] for r in runs) for i in range(4))
    print(f"EIP-712 signing of {args.n} authorizations (best of {args.repeat}):")
    print(
        f"  eth-account sign_typed_data: {rs * 1e3:7.1f} ms   "
        f"fast path: {fs * 1e3:7.1f} ms   ratio {rs / fs:6.1f}x"
    )
    print(
        f"  eth-account recover_message: {rr * 1e3:7.1f} ms   "
        f"fast path: {fr * 1e3:7.1f} ms   ratio {rr / fr:6.1f}x"
    )


if __name__ == "__main__":
    main()
