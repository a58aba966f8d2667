"""Concurrent paying clients against ``x402sim serve``: does every payer charged on chain get its resource?

Run: ``.venv/bin/python benchmarks/load.py`` (defaults: ``--clients 1,50,200,400,800 --requests 2``).

Each level of N concurrent clients gets a fresh ``x402sim serve --port 0 --accounts N+1`` process (the
services in their own process, not sharing the load generator's GIL; fresh so that no backlog of the
previous level remains and each ledger is reconciled from a known start; its start-up is printed).
The extra account makes one paid warm-up request before anything is measured. N asyncio tasks, each
with its own funded account and ``AsyncPayingClient``, start together and each makes ``--requests``
paid GETs of ``/weather`` (0.001 USDC). A 503 with ``Retry-After`` is retried as a fresh request
after that many seconds plus a seeded jitter, up to ``--attempts`` times; a level is cut off after
``--deadline`` seconds, so the script always stops by itself. A request ended by an exception is
not retried; the exception is counted by class and by whether the payment had been sent.

Once no block has been mined for 3 s (late settlements land), the level is reconciled on chain, the
ground truth: per payer, the USDC balance drop (``balanceOf``) and the Transfer logs payer -> payee
(``eth_getLogs``) must agree, the payee must gain 1000 per transfer, the total supply must not move.
``charged w/o resource`` = sum over payers of max(0, charged - 200s the payer received).

Printed per level: throughput (paid 200s per second of level wall time), latency of successful
requests (first attempt to final 200), both as ratios to the first level (1 client by default)
measured in the same run. PASS if no level charged a payer without serving it (and every ledger
check holds), else FAIL and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import x402sim
from x402sim.http import AsyncPayingClient, PayingClient

PRICE = 1_000
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
BALANCE_OF, TOTAL_SUPPLY = "0x70a08231", "0x18160ddd"
# `python -m x402sim` looks in its working directory first: run it where our own x402sim lives.
PACKAGE_ROOT = Path(x402sim.__file__).resolve().parent.parent
HEAD = "clients reqs 200 503-retried timeout/err other paid/s x p50-ms p99-ms x charged charged-w/o-resource"
ROW = "{:>7} {:>5} {:>5} {:>11} {:>11} {:>5} {:>7} {:>5} {:>7} {:>7} {:>5} {:>7} {:>20}"


def _word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


class Node:
    """One ``x402sim serve`` process, and JSON-RPC reads of its chain."""

    def __init__(self, accounts: int) -> None:
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "x402sim", "serve", "--port", "0", "--accounts", str(accounts)],
            cwd=PACKAGE_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"serve exited ({self.proc.wait()}) before printing its JSON line")
        self.info = json.loads(line)
        self.startup = time.perf_counter() - start
        self.http = httpx.Client(timeout=60)

    def rpc(self, calls: list[tuple[str, list]]) -> list:
        """One JSON-RPC batch; the results in order, or RuntimeError naming the first error."""
        batch = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        answers = sorted(self.http.post(self.info["rpc_url"], json=batch).json(), key=lambda a: a["id"])
        if errors := [a["error"] for a in answers if "error" in a]:
            raise RuntimeError(f"{calls[0][0]}: {errors[0]}")
        return [a["result"] for a in answers]

    def block(self) -> int:
        return int(self.rpc([("eth_blockNumber", [])])[0], 16)

    def snapshot(self, payers: list[str]) -> tuple[int, int, list[int]]:
        """(total supply, payee balance, payer balances), by ``eth_call`` in batches of 250."""
        datas = [TOTAL_SUPPLY] + [BALANCE_OF + _word(a) for a in [self.info["payee"], *payers]]
        calls = [("eth_call", [{"to": self.info["asset"], "data": d}, "latest"]) for d in datas]
        values = [int(v, 16) for i in range(0, len(calls), 250) for v in self.rpc(calls[i : i + 250])]
        return values[0], values[1], values[2:]

    def transfers_to_payee(self, first: int, last: int) -> Counter:
        """Transfer logs payer -> payee in blocks first..last, counted by payer; a refused range is split."""
        topics = [TRANSFER, None, "0x" + _word(self.info["payee"])]
        if first > last:
            return Counter()  # no block mined
        query = {"fromBlock": hex(first), "toBlock": hex(last), "address": self.info["asset"]}
        try:
            logs = self.rpc([("eth_getLogs", [{**query, "topics": topics}])])[0]
        except RuntimeError:
            if first >= last:
                raise
            mid = (first + last) // 2
            return self.transfers_to_payee(first, mid) + self.transfers_to_payee(mid + 1, last)
        return Counter("0x" + log["topics"][1][-40:] for log in logs)

    def quiesce(self, still: float = 3.0, limit: float = 60.0) -> float:
        """Wait until no block has been mined for ``still`` seconds; the seconds waited."""
        start = since = time.perf_counter()
        last = self.block()
        while time.perf_counter() - since < still and time.perf_counter() - start < limit:
            time.sleep(0.5)
            if (number := self.block()) != last:
                last, since = number, time.perf_counter()
        return time.perf_counter() - start

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Level:
    """What the clients of one level saw, and what the chain says."""

    attempts: int = 0  # paid GETs (each a 402 and a paid send), 503 retries included
    refusals: int = 0  # 503 + Retry-After answers that were retried
    statuses: Counter = field(default_factory=Counter)  # final status of each paid request
    errors: Counter = field(default_factory=Counter)  # requests ended by an exception, by class name
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    got: Counter = field(default_factory=Counter)  # 200s per payer (lower-case address)
    setup: float = 0.0  # seconds to create the clients
    wall: float = 0.0  # seconds from the start signal to the last task's end
    # on chain, after the level
    startup: float = 0.0  # seconds until serve printed its JSON line
    quiet: float = 0.0  # seconds after the load until no block was mined for 3 s
    charged: int = 0  # paid transfers, all payers
    lost: int = 0  # charged without resource, all payers
    lost_payers: int = 0  # payers charged more often than served
    broken: list[str] = field(default_factory=list)  # ledger checks that failed
    unfunded: int = 0  # accounts serve gave too little USDC for the level
    warm_status: int = 0  # of the one paid warm-up request
    blocks: int = 0  # mined during the level (one per settlement, a failed one included)


class Load:
    def __init__(self, info: dict, n: int, args, rng: random.Random) -> None:
        self.accounts, self.network = info["accounts"][:n], info["network"]
        self.url, self.args, self.rng, self.level = info["server_url"] + "/weather", args, rng, Level()

    async def run(self) -> Level:
        t0 = time.perf_counter()
        clients = [
            AsyncPayingClient(
                a["private_key"], networks=(self.network,), timeout=self.args.timeout, seed=self.args.seed
            )
            for a in self.accounts
        ]
        self.level.setup = time.perf_counter() - t0
        go = asyncio.Event()
        self.deadline = time.perf_counter() + self.args.deadline
        tasks = [
            asyncio.create_task(self.payer(a["address"].lower(), c, go))
            for a, c in zip(self.accounts, clients, strict=True)
        ]
        start = time.perf_counter()
        go.set()
        _, late = await asyncio.wait(tasks, timeout=self.args.deadline)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        self.level.wall = time.perf_counter() - start
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
        return self.level

    async def payer(self, address: str, client: AsyncPayingClient, go: asyncio.Event) -> None:
        await go.wait()
        done = 0
        try:
            while done < self.args.requests:
                await self.request(address, client)
                done += 1
        except asyncio.CancelledError:
            self.level.errors["Deadline"] += self.args.requests - done
            raise

    async def request(self, address: str, client: AsyncPayingClient) -> None:
        """One paid request, retried on 503 + Retry-After; its outcome goes into ``self.level``."""
        lv, first = self.level, time.perf_counter()
        for attempt in range(1, self.args.attempts + 1):
            lv.attempts += 1
            signed = len(client.payments)
            try:
                result = await client.get(self.url)
            except Exception as exc:  # a timeout, a reset connection: this request ends here
                # A payment sent without an answer is recorded with outcome "unknown".
                leg = "after paying" if len(client.payments) > signed else "before paying"
                lv.errors[f"{type(exc).__name__} {leg}"] += 1
                return
            retry_after = {k.lower(): v for k, v in result.response.headers}.get("retry-after")
            if result.status == 503 and retry_after is not None and attempt < self.args.attempts:
                wait = _seconds(retry_after) + self.rng.uniform(0.0, 0.5)
                if time.perf_counter() + wait < self.deadline:
                    lv.refusals += 1
                    await asyncio.sleep(wait)
                    continue
            lv.statuses[result.status] += 1
            if result.status == 200:
                lv.got[address] += 1
                lv.latencies.append(time.perf_counter() - first)
            return


def _ratio(value: float, base: float, digits: int) -> str:
    return f"{value / base:.{digits}f}" if base and not math.isnan(base) else "-"


def _seconds(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0  # an HTTP date: not expected here


def _pct_ms(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in ms (nan without values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1e3 if ordered else math.nan


def run_level(n: int, args, rng: random.Random) -> Level:
    node = Node(n + 1)  # the last account warms the services up, before the ledger is read
    try:
        warm = node.info["accounts"][n]
        with PayingClient(warm["private_key"], networks=(node.info["network"],)) as client:
            warm_status = client.get(node.info["server_url"] + "/weather").status
        payers = [a["address"].lower() for a in node.info["accounts"][:n]]
        supply0, payee0, before = node.snapshot(payers)
        block0 = node.block()
        level = asyncio.run(Load(node.info, n, args, rng).run())
        quiet = node.quiesce()
        supply1, payee1, after = node.snapshot(payers)
        blocks = node.block() - block0
        logs = node.transfers_to_payee(block0 + 1, block0 + blocks)
    finally:
        node.stop()
    charged = {a: (b0 - b1) // PRICE for a, b0, b1 in zip(payers, before, after, strict=True)}
    lost = {a: c - level.got[a] for a, c in charged.items() if c > level.got[a]}
    level.charged, level.lost, level.lost_payers = sum(charged.values()), sum(lost.values()), len(lost)
    checks = {
        "logs = balance drops": all(logs[a] == c for a, c in charged.items())
        and logs.total() == level.charged,
        "payee +1000 per transfer": payee1 - payee0 == PRICE * level.charged,
        "supply unchanged": supply1 == supply0,
    }
    level.broken = [k for k, ok in checks.items() if not ok]
    level.unfunded = sum(b < PRICE * args.requests for b in before)
    level.startup, level.quiet, level.warm_status, level.blocks = node.startup, quiet, warm_status, blocks
    return level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,50,200,400,800", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="paid requests per client per level")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout, seconds")
    parser.add_argument("--attempts", type=int, default=20, help="attempts per request when refused")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per level at most")
    parser.add_argument("--seed", type=int, default=1, help="seed of the retry jitter and client nonces")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2 * max(levels) + 256:  # a socket per client, and spares
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rng = random.Random(args.seed)
    print(f"x402sim imported from {Path(x402sim.__file__).parent}; serve runs in {PACKAGE_ROOT}")
    print(
        f"{args.requests} paid GET /weather per client, client timeout {args.timeout:g} s, "
        f"{args.deadline:g} s per level at most, a fresh serve process per level"
    )
    print(ROW.format(*HEAD.split()))
    base, failed, notes, warnings = None, False, [], []
    for n in levels:
        lv = run_level(n, args, rng)
        ok = lv.statuses[200]
        tput, p50, p99 = ok / lv.wall, _pct_ms(lv.latencies, 0.5), _pct_ms(lv.latencies, 0.99)
        base = base or (tput, p99)
        errors, other = lv.errors.total(), lv.statuses.total() - ok
        ratios = _ratio(tput, base[0], 2), _ratio(p99, base[1], 1)
        cells = (f"{tput:.1f}", ratios[0], f"{p50:.0f}", f"{p99:.0f}", ratios[1], lv.charged, lv.lost)
        print(ROW.format(n, n * args.requests, ok, lv.refusals, errors, other, *cells), flush=True)
        failed |= lv.lost > 0 or bool(lv.broken)
        why = ["nothing served"] * (ok == 0) + [f"{lv.unfunded} payers not funded"] * bool(lv.unfunded)
        warnings += [f"{n} clients ({', '.join(why)})"] if why else []  # e.g. serve's funding limit
        notes.append(
            f"  {n} clients: serve start-up {lv.startup:.1f} s, warm-up {lv.warm_status}, "
            f"client set-up {lv.setup:.1f} s, load {lv.wall:.1f} s, chain quiet {lv.quiet:.1f} s later; "
            f"{lv.blocks} blocks mined; {lv.attempts} attempts; final statuses {dict(lv.statuses)}; "
            f"errors {dict(lv.errors) or '-'}; payers charged w/o resource {lv.lost_payers}; "
            f"ledger {'BROKEN: ' + ', '.join(lv.broken) if lv.broken else 'ok'}"
        )
    print("\n".join(notes))
    if warnings:
        print(f"warning: the verdict proves little for {'; '.join(warnings)}")
    print(
        "FAIL: payers charged on chain without their resource (or a broken ledger)"
        if failed
        else "PASS: every payer charged on chain got its resource"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
