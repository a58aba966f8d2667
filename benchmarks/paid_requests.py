"""Cost of one paid request, in process and over loopback HTTP.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/paid_requests.py --n 100 --repeat 3``).

The same roles, ``n`` requests per run, best of ``--repeat``:
1. baseline: a paid request in the in-process testbed: 402, sign, verify (simulation on chain),
   handler, settle (a mined block);
2. the same through ``x402sim serve``'s services on 127.0.0.1 (client, server and facilitator
   talking HTTP), and a free route there, which is what the HTTP stack alone costs.
It prints milliseconds per request, ratios against the baseline measured in the same run, and
splits the facilitator's share into verify and settle.
"""

from __future__ import annotations

import argparse
import time

from x402sim import Testbed
from x402sim.actors import HttpRequest, Send
from x402sim.http import PayingClient
from x402sim.http.serve import ChainSetup, serve_all
from x402sim.protocol import parse_payment_required


def _in_process(n: int, path: str) -> float:
    tb = Testbed(seed=1)
    payer = tb.account(usdc=10**12)
    shop = tb.server({"GET /paid": 1_000})
    client = tb.client(payer)
    start = time.perf_counter()
    for _ in range(n):
        result = client.get(shop, path)
        assert result.status == 200
    return (time.perf_counter() - start) / n


def _split(n: int) -> tuple[float, float]:
    """Mean verify and settle time of the facilitator role, in process."""
    tb = Testbed(seed=2)
    payer = tb.account(usdc=10**12)
    shop = tb.server({"GET /paid": 1_000})
    client = tb.client(payer)
    answer = tb.perform(shop, Send(HttpRequest("GET", "/paid")))
    challenge = parse_payment_required(answer.headers, answer.body)
    verify = settle = 0.0
    for _ in range(n):
        payment = client.create_payment(challenge)
        t0 = time.perf_counter()
        assert tb.facilitator.verify(payment, challenge.accepts[0]).is_valid
        t1 = time.perf_counter()
        assert tb.facilitator.settle(payment, challenge.accepts[0]).success
        t2 = time.perf_counter()
        verify += t1 - t0
        settle += t2 - t1
    return verify / n, settle / n


def _over_http(n: int) -> tuple[float, float]:
    """Mean seconds per paid request and per free request, over loopback HTTP."""
    running = serve_all(ChainSetup(accounts=1), ports={"chain": 0, "facilitator": 0, "server": 0})
    try:
        url = running.info["server_url"]
        with PayingClient(running.info["accounts"][0]["private_key"]) as client:
            times = []
            for path in ("/weather", "/free"):
                start = time.perf_counter()
                for _ in range(n):
                    client.get(url + path)
                times.append((time.perf_counter() - start) / n)
            return times[0], times[1]
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="requests per run (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per way; the best is kept (default 3)")
    args = parser.parse_args()

    local, paid, free = [], [], []
    for _ in range(args.repeat):
        local.append(_in_process(args.n, "/paid"))
        p, f = _over_http(args.n)
        paid.append(p)
        free.append(f)
    b, h, f = min(local), min(paid), min(free)
    verify, settle = _split(args.n)
    print(f"paid requests, {args.n} per run, best of {args.repeat}:")
    print(f"  baseline, in process            : {b * 1e3:7.2f} ms/request")
    print(
        f"    facilitator's share: verify {verify * 1e3:.2f} ms, "
        f"settle incl. one mined block {settle * 1e3:.2f} ms"
    )
    print(f"  over loopback HTTP              : {h * 1e3:7.2f} ms/request   ratio {h / b:5.2f}x")
    print(f"  a free route over loopback HTTP : {f * 1e3:7.2f} ms/request   ratio {f / b:5.2f}x")


if __name__ == "__main__":
    main()
