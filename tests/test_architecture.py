"""No module of x402sim uses another module's private names.

The rule, read off every module under ``x402sim/`` with ``ast`` (nothing is imported):

* A name with one leading underscore (``_hex``, ``_Params``; dunders such as ``__version__`` are
  public) is private to the module that defines it. No other module imports it (``from m import
  _name``, absolute or relative, under ``if TYPE_CHECKING:`` too) or reaches it through an imported
  module (``import x402sim.m as m`` / ``from . import m``, then ``m._name``). A name several modules
  of a package share is public, without the underscore; the package's ``__init__`` still decides
  what the package exports.
* A module whose own name has one leading underscore (``protocol/_json.py``) is private to its
  package: modules of that package (and of its subpackages) import it and use its public names;
  modules elsewhere do not import it at all.

Only x402sim's own modules are checked; private names of third-party libraries are not this test's
business. Each violation is reported as ``file:line: what``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import x402sim

ROOT = Path(x402sim.__file__).parent
PACKAGE = "x402sim"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name ``from <level dots><module> import ...`` refers to, inside ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _private_module_refused(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import the module ``target`` (None when it may): the first private
    component of ``target`` must sit in a package that contains ``importer``."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            owner = ".".join(parts[:i])
            if importer != owner and not importer.startswith(owner + "."):
                return f"imports {target}, a module private to {owner}"
            return None
    return None


def violations_in(name: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = _is_package(path)
    where = path.relative_to(ROOT.parent).as_posix() if path.is_relative_to(ROOT) else path.name
    found: list[str] = []
    aliases: dict[str, str] = {}  # a local name bound to one of our modules -> that module

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node.module, node.level)
            if not _ours(source):
                continue
            if why := _private_module_refused(name, source):
                found.append(f"{where}:{node.lineno}: {why}")
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    aliases[alias.asname or alias.name] = submodule
                    if why := _private_module_refused(name, submodule):
                        found.append(f"{where}:{node.lineno}: {why}")
                elif _private(alias.name):
                    found.append(f"{where}:{node.lineno}: imports {alias.name}, private to {source}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _ours(alias.name):
                    continue
                if why := _private_module_refused(name, alias.name):
                    found.append(f"{where}:{node.lineno}: {why}")
                if alias.asname:
                    aliases[alias.asname] = alias.name

    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain = [node.attr]
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if not isinstance(value, ast.Name):
            continue
        if value.id in aliases:
            dotted = [aliases[value.id], *reversed(chain[1:])]
        elif value.id == PACKAGE:  # import x402sim.a.b, then x402sim.a.b._name
            dotted = [PACKAGE, *reversed(chain[1:])]
        else:
            continue
        owner = ".".join(dotted)
        if owner == name or owner not in MODULES:
            continue
        target = f"{owner}.{node.attr}"
        if target in MODULES:
            if why := _private_module_refused(name, target):
                found.append(f"{where}:{node.lineno}: {why}")
        else:
            found.append(f"{where}:{node.lineno}: uses {node.attr}, private to {owner}")
    return sorted(set(found), key=lambda v: (int(v.split(":")[1]), v))


def all_violations() -> list[str]:
    return [v for name, path in MODULES.items() for v in violations_in(name, path)]


def test_no_module_uses_another_modules_private_names():
    violations = all_violations()
    assert not violations, f"{len(violations)} uses of private names:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("x402sim.protocol.codec", "from . import _json", []),
        ("x402sim.protocol.codec", "from ._json import dumps", []),
        ("x402sim.protocol.codec", "from .models import _helper", ["imports _helper"]),
        ("x402sim.http.serve", "from x402sim.protocol import _json", ["private to x402sim.protocol"]),
        ("x402sim.http.serve", "from x402sim.protocol._json import dumps", ["private to x402sim.protocol"]),
        ("x402sim.http.serve", "import x402sim.protocol._json", ["private to x402sim.protocol"]),
        ("x402sim.http.serve", "from ..protocol import codec\ncodec._x", ["uses _x"]),
        ("x402sim.http.serve", "import x402sim.protocol.codec\nx402sim.protocol.codec._x", ["uses _x"]),
        ("x402sim.http.serve", "from x402sim import __version__\nimport json\njson._x", []),
    ],
)
def test_the_rule(tmp_path, importer, source, expected):
    path = tmp_path / "module.py"
    path.write_text(source + "\n", encoding="utf-8")
    found = violations_in(importer, path)
    assert len(found) == len(expected)
    for line, fragment in zip(found, expected, strict=True):
        assert fragment in line
