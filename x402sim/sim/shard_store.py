"""Finished shards kept in a folder, so a long sharded run that stops goes on where it stopped.

A run of December 2025 in full is hours of work split into shards; without this, a crash, a
closed laptop or Ctrl-C in its last hour loses every shard already done. With a folder
(``run(..., shard_dir=...)``, ``x402sim run --shards N --shard-dir DIR``) each shard's result is
written there the moment it comes back, and a later run of the same scenario, seed and shard count
takes those shards from the folder and simulates only the others. A shard's result depends on
nothing else (``shards``), so the merged summary is the one an uninterrupted run gives.

Rules:

* The folder holds ``run.json`` (what run it belongs to, with a fingerprint of the scenario as
  loaded, the seed, the shard count and x402sim's code: its version and the bytes of its source
  files and contracts, so a shard made by other code is never merged) and one file per finished shard:
  ``shard-K-of-N.pkl``, or ``ungoverned-shard-K-of-N.pkl`` for a governance counterfactual's.
* A folder of another run, a folder that is not a shard folder and a shard file that is not one of
  this run's are refused with ``ShardFolderError``, naming the folder or file; nothing is written
  then. Start another run in an empty (or new) folder.
* Each file is written to a temporary name beside it and renamed into place, so a run stopped while
  writing leaves the shard missing, never half-written.
* The files are pickles: take shards only from a folder this tool wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, OutputError
from ..version import VERSION
from .scenario import Scenario
from .shards import ShardResult

FORMAT = 1
MANIFEST = "run.json"


class ShardFolderError(InputError):
    """A shard folder that belongs to another run, or a file in it that is not a shard of this run."""


class ShardStore:
    """The shard folder of one run: the shards already finished, and where to keep the next."""

    def __init__(self, folder: str | Path, scenario: Scenario, seed: int | None, count: int) -> None:
        self.folder = Path(folder)
        self.count = count
        run_seed = scenario.simulation.seed if seed is None else seed
        self.manifest = {
            "format": FORMAT,
            "scenario": scenario.simulation.name,
            "seed": run_seed,
            "shards": count,
            "x402sim": VERSION,
        }
        dumped = json.dumps(
            {**self.manifest, "loaded": scenario.model_dump(mode="json", by_alias=True), "code": _code()},
            sort_keys=True,
        )
        self.fingerprint = hashlib.sha256(dumped.encode()).hexdigest()
        self.manifest["fingerprint"] = self.fingerprint
        self._check_folder()

    def _check_folder(self) -> None:
        where = self.folder / MANIFEST
        if self.folder.exists() and not self.folder.is_dir():
            raise ShardFolderError(f"{self.folder}: not a folder")
        if not where.exists():
            if self.folder.exists() and any(self.folder.iterdir()):
                raise ShardFolderError(
                    f"{self.folder}: not a shard folder (no {MANIFEST}); give an empty folder"
                )
            return
        try:
            found = json.loads(where.read_text(encoding="utf-8"))
            theirs = found["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ShardFolderError(f"{where}: not a shard folder's {MANIFEST} ({exc})") from None
        if theirs != self.fingerprint:
            what = ", ".join(f"{k} {found.get(k)}" for k in ("scenario", "seed", "shards", "x402sim"))
            raise ShardFolderError(
                f"{self.folder}: holds the shards of another run ({what}, or the same with other "
                "settings or other x402sim code); give the same scenario, overrides, seed and --shards, "
                "or another folder"
            )

    def path(self, index: int, governance: bool = True) -> Path:
        prefix = "" if governance else "ungoverned-"
        return self.folder / f"{prefix}shard-{index}-of-{self.count}.pkl"

    def load(self, index: int, governance: bool = True) -> ShardResult | None:
        """Shard ``index`` as it was kept (``resumed``), or None if it is not there yet."""
        where = self.path(index, governance)
        if not where.exists():
            return None
        try:
            fingerprint, result = pickle.loads(where.read_bytes())
        except Exception as exc:  # a truncated or foreign file: unpickling raises anything
            raise ShardFolderError(f"{where}: not a shard file ({type(exc).__name__}: {exc})") from None
        if fingerprint != self.fingerprint or not isinstance(result, ShardResult) or result.index != index:
            raise ShardFolderError(
                f"{where}: not shard {index} of this run; remove it, or give another folder"
            )
        return replace(result, resumed=True)

    def kept(self, governance: bool = True) -> list[ShardResult]:
        """Every shard the folder holds (``resumed``)."""
        return [r for k in range(self.count) if (r := self.load(k, governance)) is not None]

    def save(self, result: ShardResult, governance: bool = True) -> None:
        """Keep ``result`` (written whole, then renamed into place)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest = self.folder / MANIFEST
            if not manifest.exists():
                _write_whole(manifest, (json.dumps(self.manifest, indent=2) + "\n").encode())
            _write_whole(self.path(result.index, governance), pickle.dumps((self.fingerprint, result)))
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot keep shard {result.index} ({exc})") from None


@lru_cache(maxsize=1)
def _code() -> str:
    """A digest of the package's source files and contracts: what decides a shard's result besides
    its inputs (and the pinned libraries)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".vy", ".json")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _write_whole(path: Path, data: bytes) -> None:
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


__all__ = ["ShardFolderError", "ShardStore"]
