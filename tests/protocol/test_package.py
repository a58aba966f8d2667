"""The package's own rules: a public surface that resolves, no imports from the rest of x402sim but its
leaf modules (``x402sim.errors``, ``x402sim.money``), no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import x402sim.protocol as protocol

PACKAGE_DIR = Path(protocol.__file__).parent
MODULES = sorted(PACKAGE_DIR.glob("*.py"))
LEAVES = {"errors", "money"}  # x402sim's leaf modules, which import nothing of x402sim


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
    return found


def test_every_public_name_resolves() -> None:
    assert len(protocol.__all__) == len(set(protocol.__all__))
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None, name


def test_imports_stay_inside_the_package_and_do_no_io() -> None:
    forbidden = {"x402sim", "socket", "http", "urllib", "asyncio", "time", "os", "random", "httpx"}
    assert len(MODULES) >= 7
    for path in MODULES:
        for level, module in _imports(path):
            if level == 2 and module in LEAVES:
                continue
            assert level <= 1, f"{path.name} imports from outside x402sim.protocol"
            assert module.split(".")[0] not in forbidden, f"{path.name} imports {module}"


def test_every_module_opens_with_a_docstring() -> None:
    for path in MODULES:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 80, path.name
