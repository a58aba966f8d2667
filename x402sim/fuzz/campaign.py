"""``x402sim fuzz``: a long, seeded fuzz campaign against served x402sim processes, on loopback only.

It starts the services as a user would, in their own processes: ``x402sim serve`` (chain, facilitator,
resource server) and ``x402sim serve server --origin`` (a paywall proxy whose origin is the
facilitator's ``/supported``). Then it sends ``inputs`` probes (``probes.draw``), ``concurrency`` at a
time, spread evenly over the endpoints, and judges every answer (``probes.judge``). At the end it
checks that both processes still run and answer, and reconciles on chain: the payee's balance grew
by exactly the price of every 200 of a paid route and of every successful direct ``/settle``, and
the token's supply did not change.

Exit status: 0 when nothing was wrong; 1 on any 5xx, unnamed refusal, crash or mismatch; 2 when the
services could not be started.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import UnavailableError
from ..protocol import PAYMENT_REQUIRED, PaymentRequired, decode_header
from .probes import ENDPOINTS, Target, draw, judge

SERVER_PRICE = 1_000  # x402sim serve's demo route, GET /weather
PROXY_PRICE = 2_000
START_TIMEOUT = 120.0


class CampaignError(UnavailableError):
    """The services could not be started or reached; the message says which and why."""


@dataclass
class Tally:
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    paid_200: Counter = field(default_factory=Counter)  # served paid routes, and direct settlements
    transport_errors: Counter = field(default_factory=Counter)
    # Time answering, per endpoint: a Counter (an endpoint not seen reads 0) of float seconds, which
    # typeshed's Counter (int counts only) cannot say.
    seconds: dict[str, float] = field(default_factory=lambda: cast("dict[str, float]", Counter()))

    @property
    def inputs(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 20:
            self.problems.append(text)


@dataclass
class Outcome:
    tally: Tally
    seconds: float
    alive: dict[str, bool]
    payee_delta: int
    expected_delta: int
    supply_before: int
    supply_after: int

    @property
    def ok(self) -> bool:
        return (
            self.tally.problem_count == 0
            and not self.tally.transport_errors
            and all(self.alive.values())
            and self.payee_delta == self.expected_delta
            and self.supply_before == self.supply_after
        )


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen, dict]:
    """Start ``x402sim ARGS`` (stderr to ``log``) and read the JSON line it prints when ready."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "x402sim", *args], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise CampaignError(
            f"x402sim {' '.join(args)} exited with {proc.returncode}: {log.read_text()[-500:]}"
        )
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rpc(url: str, method: str, *params):
    answer = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30
    )
    return answer.json()["result"]


def _token_read(rpc_url: str, token: str, data: str) -> int:
    return int(_rpc(rpc_url, "eth_call", {"to": token, "data": data}, "latest"), 16)


def _balance(rpc_url: str, token: str, who: str) -> int:
    return _token_read(rpc_url, token, "0x70a08231" + "00" * 12 + who[2:].lower())


def _challenge(url: str) -> PaymentRequired:
    answer = httpx.get(url, timeout=30)
    if answer.status_code != 402:
        raise CampaignError(f"{url} answered {answer.status_code}, expected a 402 challenge")
    return decode_header(answer.headers[PAYMENT_REQUIRED], PaymentRequired)


def run_campaign(
    inputs: int, *, seed: int = 1, concurrency: int = 8, console: Console | None = None
) -> Outcome:
    """Start the services, fuzz them, check them; see the module docstring."""
    err = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="x402sim-fuzz-") as work:
        started: list[subprocess.Popen] = []
        try:
            serve_args = ["serve", "--port", "0", "--accounts", "2", "--seed", str(seed)]
            proc, info = _start(serve_args, Path(work) / "serve.log")
            started.append(proc)
            routes = Path(work) / "proxy-routes.toml"
            routes.write_text(
                f'pay_to = "{info["payee"]}"\n[[routes]]\nmethod = "GET"\npath = "/supported"\n'
                f"price = {PROXY_PRICE}\n"
            )
            proxy_args = [
                "serve",
                "server",
                "--port",
                "0",
                "--routes",
                str(routes),
                "--rpc-url",
                info["rpc_url"],
            ]
            proxy_args += ["--facilitator-url", info["facilitator_url"], "--origin", info["facilitator_url"]]
            proxy, proxy_info = _start(proxy_args, Path(work) / "proxy.log")
            started.append(proxy)
            return _fuzz(info, proxy_info, inputs, seed, concurrency, err, {"serve": proc, "proxy": proxy})
        except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
            raise CampaignError(f"cannot reach the services: {exc}") from exc
        finally:
            for p in started:
                _stop(p)


def _fuzz(info, proxy_info, inputs, seed, concurrency, err, procs) -> Outcome:
    rpc_url, token, payee = info["rpc_url"], info["asset"], info["payee"]
    urls = {
        "server": info["server_url"],
        "proxy": proxy_info["server_url"],
        "facilitator": info["facilitator_url"],
        "chain": rpc_url,
    }
    target = Target(
        server_path="/weather",
        server_challenge=_challenge(urls["server"] + "/weather"),
        proxy_path="/supported",
        proxy_challenge=_challenge(urls["proxy"] + "/supported"),
        payer_key=bytes.fromhex(info["accounts"][0]["private_key"][2:]),
        network=info["network"],
        token=token,
        now=lambda: int(time.time()),
        seed=seed,
    )
    payee_before = _balance(rpc_url, token, payee)
    supply_before = _token_read(rpc_url, token, "0x18160ddd")
    tally = Tally()
    start = time.perf_counter()
    asyncio.run(_send_all(target, urls, inputs, seed, concurrency, tally, err))
    seconds = time.perf_counter() - start
    alive = {name: p.poll() is None for name, p in procs.items()}
    alive["answers"] = _still_answers(urls)
    expected = (
        SERVER_PRICE * (tally.paid_200["server"] + tally.paid_200["settle"])
        + PROXY_PRICE * tally.paid_200["proxy"]
    )
    return Outcome(
        tally=tally,
        seconds=seconds,
        alive=alive,
        payee_delta=_balance(rpc_url, token, payee) - payee_before,
        expected_delta=expected,
        supply_before=supply_before,
        supply_after=_token_read(rpc_url, token, "0x18160ddd"),
    )


def _still_answers(urls: dict[str, str]) -> bool:
    try:
        return (
            httpx.get(urls["server"] + "/weather", timeout=30).status_code == 402
            and httpx.get(urls["facilitator"] + "/health", timeout=30).status_code == 200
            and "result"
            in httpx.post(urls["chain"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).json()
        )
    except httpx.HTTPError:
        return False


async def _send_all(target, urls, inputs, seed, concurrency, tally, err) -> None:
    rng = random.Random(f"x402sim-fuzz:{seed}")
    # Probes are drawn in order from one seeded Random, so a seed names the same inputs every time.
    probes = (draw(rng, target, ENDPOINTS[i % len(ENDPOINTS)]) for i in range(inputs))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    columns = (
        TextColumn("fuzzing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("fuzz", total=inputs, rate="")
            started = time.perf_counter()

            async def worker() -> None:
                for probe in probes:
                    await _send_one(http, urls, probe, tally)
                    done = tally.inputs + sum(tally.transport_errors.values())
                    rate = f"{done / max(time.perf_counter() - started, 1e-9):,.0f}/s"
                    progress.update(task, completed=done, rate=rate)

            await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _send_one(http: httpx.AsyncClient, urls, probe, tally: Tally) -> None:
    began = time.perf_counter()
    try:
        answer = await http.request(
            probe.method, urls[probe.service] + probe.path, headers=list(probe.headers), content=probe.body
        )
    except httpx.HTTPError as exc:
        tally.transport_errors[f"{probe.endpoint}: {type(exc).__name__}"] += 1
        tally.problem(f"{probe.endpoint} [{probe.mutation}]: no answer ({type(exc).__name__}: {exc})")
        return
    tally.statuses[probe.endpoint][answer.status_code] += 1
    tally.seconds[probe.endpoint] += time.perf_counter() - began
    problem = judge(probe, answer.status_code, list(answer.headers.multi_items()), answer.content)
    if problem is not None:
        tally.problem(f"{probe.endpoint} [{probe.mutation}]: {problem}")
    if probe.service in ("server", "proxy") and answer.status_code == 200:
        tally.paid_200[probe.service] += 1
    if probe.endpoint == "settle" and answer.status_code == 200 and answer.json().get("success") is True:
        tally.paid_200["settle"] += 1


def report(outcome: Outcome, console: Console) -> None:
    tally = outcome.tally
    table = Table(
        title=f"{tally.inputs:,} inputs in {outcome.seconds:,.0f} s ({tally.inputs / outcome.seconds:,.0f}/s)"
    )
    table.add_column("endpoint")
    table.add_column("inputs", justify="right")
    table.add_column("ms each", justify="right")
    table.add_column("statuses")
    for endpoint in ENDPOINTS:
        counts = tally.statuses.get(endpoint, Counter())
        shown = ", ".join(f"{status}: {n:,}" for status, n in sorted(counts.items()))
        mean = 1000 * tally.seconds[endpoint] / max(1, sum(counts.values()))
        table.add_row(endpoint, f"{sum(counts.values()):,}", f"{mean:.1f}", shown)
    console.print(table)
    five = sum(n for c in tally.statuses.values() for s, n in c.items() if s >= 500 and s != 503)
    silent = sum(tally.transport_errors.values())
    console.print(f"5xx answers: {five}   problems: {tally.problem_count}   no answer: {silent}")
    for line in tally.problems:
        console.print(f"  [red]{escape(line)}[/red]", highlight=False)
    console.print(
        "processes alive and answering: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in outcome.alive.items())
    )
    served = tally.paid_200
    console.print(
        f"reconciliation: payee +{outcome.payee_delta:,} on chain, expected +{outcome.expected_delta:,} "
        f"({served['server']} x {SERVER_PRICE} served + {served['settle']} x {SERVER_PRICE} settled directly "
        f"+ {served['proxy']} x {PROXY_PRICE} through the proxy); supply "
        f"{'unchanged' if outcome.supply_before == outcome.supply_after else 'CHANGED'}"
    )
    verdict = "[green]PASS[/green]" if outcome.ok else "[red]FAIL[/red]"
    console.print(f"verdict: {verdict}")
