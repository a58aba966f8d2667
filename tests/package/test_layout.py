"""What the build packs: every package under x402sim/ is listed in pyproject.toml, and the two data
packages that live outside it (the shipped scenarios and the examples) map to their folders."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_for_the_build():
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "x402sim").rglob("__init__.py")
    }
    listed = set(SETUPTOOLS["packages"])
    mapped = set(SETUPTOOLS["package-dir"])
    assert listed - mapped == found, (
        f"[tool.setuptools] packages in pyproject.toml: add {sorted(found - listed)}, "
        f"remove {sorted(listed - mapped - found)}"
    )


def test_the_data_packages_map_to_their_folders():
    assert SETUPTOOLS["package-dir"] == {"x402sim.scenarios": "scenarios", "x402sim.examples": "examples"}
    for folder in SETUPTOOLS["package-dir"].values():
        assert (ROOT / folder / "__init__.py").is_file()  # an editable install finds a package by it
    data = SETUPTOOLS["package-data"]
    assert data["x402sim.scenarios"] == ["*.toml"] and data["x402sim.examples"] == ["*.toml"]
    assert data["x402sim.evm.contracts"] == ["*.vy", "*.json"]
