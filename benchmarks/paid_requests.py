"""Cost of one paid request, in process and over loopback HTTP.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/paid_requests.py --n 100 --repeat 3``).

``n`` requests per run, best of ``--repeat``:
1. baseline: a paid request through x402sim's roles in process (the testbed): 402, sign, verify
   (simulation on chain), handler, settle (a mined block);
2. the same through ``x402sim serve``'s services on 127.0.0.1 (client, server and facilitator talking
   HTTP; the facilitator on the embedded chain), and a free route there (the HTTP stack alone);
3. the same with x402sim's facilitator reaching the chain over JSON-RPC (``RpcChain``);
4. the official x402 Python SDK end to end over loopback HTTP (its httpx client, its FastAPI
   middleware, its facilitator with the web3 signer over x402sim's JSON-RPC chain), configured as in
   the interop tests (``tests/interop/sdk_apps.py``).
It prints milliseconds per request, ratios against the baseline measured in the same run, and
splits the in-process facilitator's share into verify and settle.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from x402sim import Testbed
from x402sim.actors import Facilitator, HttpRequest, ResourceServer, Send
from x402sim.evm import LocalChain, address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http import FacilitatorClient, PayingClient, Services, facilitator_app, resource_server_app
from x402sim.http.chain_rpc import chain_rpc_app
from x402sim.http.serve import ChainSetup, serve_all
from x402sim.protocol import parse_payment_required

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.interop.sdk_apps


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
        with PayingClient(
            running.info["accounts"][0]["private_key"], networks=(running.info["network"],)
        ) as client:
            times = []
            for path in ("/weather", "/free"):
                start = time.perf_counter()
                for _ in range(n):
                    client.get(url + path)
                times.append((time.perf_counter() - start) / n)
            return times[0], times[1]
    finally:
        running.stop()


def _chain_and_keys(seed: int):
    chain = LocalChain(seed=seed, start_time=int(time.time()))
    payer, facilitator, payee = (chain.new_key() for _ in range(3))
    chain.fund_many([(address_of_key(payer), 10**12, 0), (address_of_key(facilitator), 0, 100 * ETHER)])
    return chain, payer, facilitator, address_of_key(payee)


def _ours_over_rpc(n: int) -> float:
    chain, payer, fkey, payee = _chain_and_keys(4)
    node, edge = Services(), Services()
    try:
        rpc_url = node.add("chain", chain_rpc_app(chain, clock=time.time))
        node.start()
        facilitator_url = edge.add(
            "facilitator", facilitator_app(Facilitator(RpcChain(rpc_url), fkey), automine=False)
        )
        server = ResourceServer.with_prices({"GET /weather": 1_000}, chain=chain, pay_to=payee)
        url = edge.add("server", resource_server_app(server, FacilitatorClient(facilitator_url))) + "/weather"
        edge.start()
        with PayingClient(payer, networks=(chain.network,)) as client:
            start = time.perf_counter()
            for _ in range(n):
                assert client.get(url).status == 200
            return (time.perf_counter() - start) / n
    finally:
        edge.stop()
        node.stop()


def _sdk_over_http(n: int) -> float:
    from x402.http.clients.httpx import x402HttpxClient

    from tests.interop.sdk_apps import sdk_client, sdk_facilitator_app, sdk_resource_server_app

    chain, payer, fkey, payee = _chain_and_keys(5)
    node, edge = Services(), Services()
    try:
        rpc_url = node.add("chain", chain_rpc_app(chain, clock=time.time))
        facilitator_url = node.add("sdk-facilitator", sdk_facilitator_app(fkey, rpc_url, chain.network))
        node.start()
        server = sdk_resource_server_app(
            facilitator_url,
            network=chain.network,
            asset=chain.usdc,
            asset_name=chain.token_name,
            asset_version=chain.token_version,
            pay_to=payee,
            amount=1_000,
        )
        url = edge.add("sdk-server", server) + "/weather"
        edge.start()
        client = sdk_client(payer, network=chain.network, asset=chain.usdc, max_amount=1_000)

        async def run() -> float:
            async with x402HttpxClient(client, timeout=30) as http:
                start = time.perf_counter()
                for _ in range(n):
                    assert (await http.get(url)).status_code == 200
                return (time.perf_counter() - start) / n

        return asyncio.run(run())
    finally:
        edge.stop()
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="requests per run (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per way; the best is kept (default 3)")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"local": [], "http": [], "free": [], "rpc": [], "sdk": []}
    for _ in range(args.repeat):
        runs["local"].append(_in_process(args.n, "/paid"))
        paid, free = _over_http(args.n)
        runs["http"].append(paid)
        runs["free"].append(free)
        runs["rpc"].append(_ours_over_rpc(args.n))
        runs["sdk"].append(_sdk_over_http(args.n))
    best = {k: min(v) for k, v in runs.items()}
    b = best["local"]
    verify, settle = _split(args.n)
    print(f"paid requests, {args.n} per run, best of {args.repeat} (ms per request, ratio to the baseline):")
    rows = {
        "local": "baseline, x402sim in process",
        "http": "x402sim over loopback HTTP",
        "rpc": "  the same, facilitator over JSON-RPC",
        "sdk": "official Python SDK over loopback HTTP",
        "free": "a free route over loopback HTTP",
    }
    for key, label in rows.items():
        print(f"  {label:<40} {best[key] * 1e3:7.2f}   {best[key] / b:5.2f}x")
        if key == "local":
            print(
                f"    facilitator's share: verify {verify * 1e3:.2f}, "
                f"settle incl. one mined block {settle * 1e3:.2f}"
            )


if __name__ == "__main__":
    main()
