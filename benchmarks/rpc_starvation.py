"""Does a heavy JSON-RPC batch starve the other services of ``x402sim serve``?

Run: ``.venv/bin/python benchmarks/rpc_starvation.py --blocks 300 --paid 50 --batch 1000``
(another checkout: ``PYTHONPATH=<checkout> .venv/bin/python benchmarks/rpc_starvation.py``).

``x402sim serve --port 0`` runs the chain's JSON-RPC, the facilitator and the resource server on one
event loop, started here in a subprocess as a user would. After giving the chain some history
(``--paid`` paid requests, so there are logs, and ``--blocks`` empty blocks by ``evm_mine``):
1. baseline: latency of the unpaid ``GET /weather`` (a quick 402) with the services idle;
2. under load: the same 402, requested over and over from this thread while another thread's
   JSON-RPC batch of ``--batch`` ``eth_getLogs`` (block 0 to latest), then one of ``--batch``
   ``eth_feeHistory`` (1024 blocks), is in flight. A batch may be refused (a limit error counts).
It prints each batch's wall time and answers, the 402 latency during it (p50, p99, max: a batch that
holds the loop shows as ONE slow 402, which p99 can hide, so max and the stalls count too) and
ratios against the idle p99 measured in the same run: machines are noisy, so only ratios mean much.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

import x402sim
from x402sim.http import PayingClient

PROBE_TIMEOUT = 120.0
BATCHES = {
    "eth_getLogs": [{"fromBlock": "0x0", "toBlock": "latest"}],
    "eth_feeHistory": ["0x400", "latest", [25, 75]],
}


def _start(cwd: Path) -> tuple[subprocess.Popen, dict]:
    """``x402sim serve --port 0`` in a subprocess, and the JSON line it prints; exit 2 if it fails."""
    cmd = [sys.executable, "-m", "x402sim", "serve", "--port", "0", "--accounts", "2"]
    with tempfile.TemporaryFile() as log:  # its stderr, shown if it fails
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True)
        if select.select([proc.stdout], [], [], 60)[0]:
            line = proc.stdout.readline()
            if line.startswith("{"):
                return proc, json.loads(line)
        _stop(proc)
        log.seek(0)
        print(f"error: x402sim serve did not start:\n{log.read().decode(errors='replace')}", file=sys.stderr)
        sys.exit(2)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _rpc(url: str, payload):
    answer = httpx.post(url, json=payload, timeout=60).raise_for_status().json()
    errors = [a["error"] for a in (answer if isinstance(answer, list) else [answer]) if "error" in a]
    assert not errors, f"JSON-RPC refused: {errors[0]}"
    return answer


def _history(info: dict, blocks: int, paid: int) -> int:
    """Pay ``paid`` times (logs), mine ``blocks`` empty blocks; the head's number."""
    key, url = info["accounts"][0]["private_key"], info["server_url"] + "/weather"
    with PayingClient(key, networks=(info["network"],)) as client:
        for _ in range(paid):
            assert client.get(url).status == 200, "a paid request failed"
    mine = [{"jsonrpc": "2.0", "id": i, "method": "evm_mine", "params": []} for i in range(blocks)]
    for i in range(0, blocks, 100):
        _rpc(info["rpc_url"], mine[i : i + 100])
    return int(_rpc(info["rpc_url"], {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})["result"], 16)


def _probe(http: httpx.Client, url: str) -> tuple[float, bool]:
    """Seconds for one unpaid GET, and whether it answered 402."""
    start = time.perf_counter()
    try:
        ok = http.get(url).status_code == 402
    except httpx.HTTPError:
        ok = False
    return time.perf_counter() - start, ok


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _answers(body: bytes) -> str:
    """What a batch answered: '1000 results' or '0 results, 1 error -32600' and its size."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"not JSON, {len(body)} bytes"
    calls = [c for c in (data if isinstance(data, list) else [data]) if isinstance(c, dict)]
    codes = Counter(c["error"].get("code") for c in calls if "error" in c)
    parts = [f"{sum('result' in c for c in calls)} results"]
    parts += [f"{n} error{'s' * (n > 1)} {code}" for code, n in sorted(codes.items())]
    return ", ".join(parts) + f", {len(body) / 1e6:.1f} MB"


def _under_load(http: httpx.Client, info: dict, method: str, params: list, size: int) -> dict:
    """Probe the 402 from this thread while another thread's batch of ``size`` calls is in flight."""
    calls = [{"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i in range(size)]
    body, out = json.dumps(calls).encode(), {}

    def send() -> None:
        start = time.perf_counter()
        try:
            headers = {"content-type": "application/json"}
            r = httpx.post(info["rpc_url"], content=body, headers=headers, timeout=None)
            out["status"], out["answers"] = r.status_code, r.content  # parsed later: not while probing
        except httpx.HTTPError as exc:
            out["status"], out["answers"] = f"failed ({exc!r})", b""
        out["wall"] = time.perf_counter() - start

    sender = threading.Thread(target=send)
    sender.start()
    probes = [_probe(http, info["server_url"] + "/weather")]  # at least one, even if refused at once
    while sender.is_alive():
        probes.append(_probe(http, info["server_url"] + "/weather"))
    sender.join()
    return {**out, "answers": _answers(out["answers"]) if out["answers"] else "none", "probes": probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=300, help="empty blocks mined first (default 300)")
    parser.add_argument("--paid", type=int, default=50, help="paid requests first, for logs (default 50)")
    parser.add_argument("--batch", type=int, default=1000, help="calls in each heavy batch (default 1000)")
    parser.add_argument("--idle", type=int, default=200, help="402 requests for the baseline (default 200)")
    parser.add_argument("--stall", type=float, default=1.0, help="a 402 slower than this (s) is a stall")
    args = parser.parse_args()

    # The subprocess runs from the root of the x402sim this process imported, so `-m x402sim` finds
    # the same package (the current directory comes first on sys.path, before PYTHONPATH).
    root = Path(x402sim.__file__).resolve().parent.parent
    check = [sys.executable, "-c", "import x402sim; print(x402sim.__file__)"]
    served = subprocess.run(check, cwd=root, capture_output=True, text=True).stdout.strip()
    print(f"x402sim served from {served} (PYTHONPATH={os.environ.get('PYTHONPATH', '')!r})")
    proc, info = _start(root)
    try:
        t0 = time.perf_counter()
        head = _history(info, args.blocks, args.paid)
        print(f"history: {args.paid} paid requests, head at block {head} ({time.perf_counter() - t0:.1f} s)")
        with httpx.Client(timeout=PROBE_TIMEOUT) as http:
            idle = [_probe(http, info["server_url"] + "/weather") for _ in range(args.idle)]
            runs = {m: _under_load(http, info, m, p, args.batch) for m, p in BATCHES.items()}
    finally:
        _stop(proc)

    base = _pct([t for t, _ in idle], 0.99)
    print(f"\nunpaid GET /weather (402) latency in ms; ratios against the idle p99 ({base * 1e3:.2f} ms)")
    print(
        f"  {'while':<22} {'n':>5} {'p50':>8} {'p99':>9} {'max':>9} {'p99/idle':>9} {'max/idle':>9}  stalls"
    )
    for label, probes in [("idle", idle)] + [(f"{args.batch} x {m}", r["probes"]) for m, r in runs.items()]:
        t = [s for s, _ in probes]
        p50, p99, top = _pct(t, 0.5), _pct(t, 0.99), max(t)
        stalls, not_402 = sum(s > args.stall for s in t), sum(not ok for _, ok in probes)
        print(
            f"  {label:<22} {len(t):>5} {p50 * 1e3:8.2f} {p99 * 1e3:9.2f} {top * 1e3:9.2f} "
            f"{p99 / base:8.1f}x {top / base:8.0f}x  {stalls} over {args.stall:g} s, {not_402} not 402"
        )
    print("the batches:")
    for method, r in runs.items():
        print(f"  {args.batch} x {method:<16} {r['wall']:6.1f} s  HTTP {r['status']}  {r['answers']}")
    worst = max(s for r in runs.values() for s, _ in r["probes"])
    if worst > args.stall:
        print(f"verdict: STARVED - a batch held the loop: worst 402 {worst:.1f} s ({worst / base:.0f}x)")
    else:
        print(
            f"verdict: responsive - the worst 402 under load took {worst * 1e3:.1f} ms ({worst / base:.0f}x)"
        )


if __name__ == "__main__":
    main()
