"""What a simulated payment costs, and what it is made of: shared by ``scale.py`` and ``sim_throughput.py``.

``signature_floor`` measures, in this process, the signatures a payment honestly needs: the client
signs its authorization, the facilitator recovers it, the facilitator signs its transaction and the
chain recovers the sender (2 signs and 2 recoveries with coincurve, libsecp256k1), each on a digest of
its own. ``parts`` splits the time of a piece of code by where the code lives, from a sampling
profile (py-spy, 250 samples a second, of the code run in a process of its own: the samples inside
``within`` are counted, each under the part of the function it was in). Sampling leaves the code's
speed alone, so the shares apply to a wall time measured without the profiler. Where py-spy cannot
attach (it needs ptrace), cProfile's ``tottime`` is used instead, which slows small Python functions
more than C calls: its shares lean towards Python.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from coincurve import PrivateKey, PublicKey

from x402sim.evm.hashing import keccak
from x402sim.sim.engine import long_lived_frozen

# (part, path fragments of the code it covers); the first that matches a function's file wins
PARTS = (
    ("signatures", ("coincurve", "cffi", "x402sim/evm/hashing.py", "eth_hash", "Crypto/", "_pysha3")),
    ("SimPy", ("simpy/",)),
    ("messages", ("pydantic", "json/", "base64", "binascii", "x402sim/protocol/")),
    ("chain", ("x402sim/evm/", "rlp", "eth_", "eth/", "trie/", "hexbytes", "toolz")),
    ("roles", ("x402sim/actors/", "x402sim/mechanisms/", "x402sim/governance/", "x402sim/trust/")),
    ("simulator", ("x402sim/sim/", "ddsketch", "random.py")),
)


def signature_floor(payments: int = 5_000) -> float:
    """Microseconds of the 2 signs and 2 recoveries one payment needs, on one core."""
    keys = [PrivateKey(keccak(b"x402sim floor" + bytes([i]))) for i in range(2)]
    digests = [keccak(i.to_bytes(8, "big")) for i in range(2 * payments)]
    with long_lived_frozen():  # the garbage collector set as a simulation runs
        started = time.perf_counter()
        for i, digest in enumerate(digests):
            signature = keys[i % 2].sign_recoverable(digest, hasher=None)
            PublicKey.from_signature_and_message(signature, digest, hasher=None)
        return 1e6 * (time.perf_counter() - started) / payments


def _part(filename: str) -> str:
    for part, fragments in PARTS:
        if any(fragment in filename for fragment in fragments):
            return part
    return "other"


def parts(code: str, within: str) -> tuple[dict[str, float], str]:
    """Each part's share of the time ``code`` (Python source) spends in function ``within``, and
    the profiler that measured it."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is not None:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "profile.txt"
            done = subprocess.run(
                [
                    spy,
                    "record",
                    "-r",
                    "250",
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "--",
                    sys.executable,
                    "-c",
                    code,
                ],
                capture_output=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            if done.returncode == 0 and raw.exists():
                return _shares_of_samples(raw.read_text(), within), "py-spy"
    return _shares_of_cprofile(code), "cProfile"


def _shares_of_samples(raw: str, within: str) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(frame.startswith(f"{within} ") for frame in frames):
            counts[_part(frames[-1])] += int(n)
    return _normalised(counts)


def _shares_of_cprofile(code: str) -> dict[str, float]:
    profiler = cProfile.Profile()
    profiler.enable()
    exec(code, {})
    profiler.disable()
    counts: Counter[str] = Counter()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, tottime, _, _) in stats.items():
        counts["signatures" if "secp256k1" in function else _part(filename)] += tottime
    return _normalised(counts)


def _normalised(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    shares = {part: counts[part] / total for part, _ in PARTS}
    shares["other"] = counts["other"] / total
    return shares


def print_parts(
    us_per_payment: float, measured: tuple[dict[str, float], str], floor: float | None = None
) -> None:
    """One line per part: microseconds per payment and share."""
    shares, profiler = measured
    print(
        f"  cost per payment, {us_per_payment:,.0f} us, by part ({profiler} shares of the unprofiled time):"
    )
    for part, share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"    {part:>10}: {share * us_per_payment:7.1f} us  {share:6.1%}")
    if floor is not None:
        print(f"    {'(floor)':>10}: {floor:7.1f} us  the 2 signs + 2 recoveries alone")
