"""The built package, installed where its users install it.

``python -m build`` makes an sdist and a wheel from a copy of what the package is built from; the
wheel goes into a fresh virtualenv, first without extras, then with ``[sim]``, each time with
requirements.lock as constraints (the versions the suite runs with). Every command runs with a
temporary folder as its working directory, away from the source tree, so what it finds (the
scenarios, the contracts, the pytest plugin) is what the wheel carries:

* core: ``x402sim --version``; ``x402sim conformance server --builtin reference`` (its replay
  cases); ``x402sim scenarios``; ``x402sim run quickstart`` and ``x402sim sweep`` saying which extra
  they need (exit 2); a project of a user's own: the plugin example the wheel ships
  (``x402sim.examples``), run by pytest (its group and testbed tests; its whole-catalog test runs
  from the source tree, ``examples/test_paid_api.py``);
* with ``[sim]``: a short ``x402sim run quickstart`` (the shipped scenario, by name, with its plots).

The versions printed and recorded (``--version``, the conformance report's ``tool``, the run's
``summary.json`` ``tool``) are pyproject.toml's.

It needs the build tools of the development install (``build`` and setuptools, used without build
isolation: nothing is fetched to build) and a package index or pip's cache for the dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# What the package is built from: pyproject.toml's packages and package-dir, and its readme.
SOURCES = ("pyproject.toml", "README.md", "x402sim", "scenarios", "examples")
SCENARIOS = sorted(path.name for path in (ROOT / "scenarios").glob("*.toml"))
CONTRACTS = sorted(
    path.name for path in (ROOT / "x402sim/evm/contracts").iterdir() if path.suffix in (".vy", ".json")
)


class Steps:
    """Commands run in ``cwd`` with the virtualenv's scripts first on the PATH; what each took."""

    def __init__(self, venv: Path, cwd: Path) -> None:
        self.venv, self.cwd = venv, cwd
        self.bin = venv / "bin"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}  # the outer run's options
        self.env = {**env, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
        self.took: dict[str, float] = {}

    def run(self, label: str, *args: str | Path, code: int = 0) -> subprocess.CompletedProcess[str]:
        started = time.perf_counter()
        done = subprocess.run(
            [str(a) for a in args], cwd=self.cwd, env=self.env, capture_output=True, text=True
        )
        self.took[label] = time.perf_counter() - started
        assert done.returncode == code, f"{label}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def pip_install(self, label: str, *requirements: str | Path) -> None:
        # The pip of the running interpreter installs into the new virtualenv (no pip to bootstrap there).
        self.run(
            label,
            sys.executable,
            "-m",
            "pip",
            "--python",
            self.bin / "python",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-c",
            LOCK,
            *requirements,
        )

    def start(self, *args: str | Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(a) for a in args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def build(tmp_path: Path) -> tuple[Path, Path]:
    """The wheel and the sdist of a copy of the sources."""
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"python -m build: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    (wheel,) = dist.glob("x402sim-*.whl")
    (sdist,) = dist.glob("x402sim-*.tar.gz")
    return wheel, sdist


def check_members(wheel: Path, sdist: Path) -> None:
    """The wheel carries every module and data file the code loads; the sdist, the scenarios and contracts."""
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "x402sim").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    data = {f"x402sim/evm/contracts/{name}" for name in CONTRACTS}
    data |= {f"x402sim/scenarios/{name}" for name in SCENARIOS}
    data |= {"x402sim/examples/policy.toml", "x402sim/examples/test_paid_api.py", "x402sim/py.typed"}
    assert not (modules | data) - packed, f"missing from the wheel: {sorted((modules | data) - packed)}"
    assert {name.split("/")[0] for name in packed} == {"x402sim", f"x402sim-{VERSION}.dist-info"}
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {f"scenarios/{name}" for name in SCENARIOS} | {"examples/policy.toml", "pyproject.toml"}
    expected |= {f"x402sim/evm/contracts/{name}" for name in CONTRACTS}
    assert not expected - members, f"missing from the sdist: {sorted(expected - members)}"


def test_the_wheel_installs_and_runs_away_from_the_source(tmp_path):
    started = time.perf_counter()
    wheel, sdist = build(tmp_path)
    built = time.perf_counter() - started
    check_members(wheel, sdist)

    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    steps = Steps(venv, work)
    x402sim = steps.bin / "x402sim"

    # -- core: conformance, the plugin, the scenarios' list, and the extras it does not have -------
    steps.pip_install("install core", wheel, "pytest")
    assert steps.run("--version", x402sim, "--version").stdout == f"x402sim {VERSION}\n"
    # one group of cases: the whole catalog runs from the source tree (tests/conformance)
    conformance = steps.start(
        x402sim, "conformance", "server", "--builtin", "reference", "--cases", "server.replay",
        "--json", "conformance.json",
    )  # fmt: skip
    absent = steps.run(
        "find the simulator",
        steps.bin / "python",
        "-c",
        "import importlib.util as u; print(u.find_spec('simpy'))",
    )
    assert absent.stdout == "None\n"
    missing = steps.run("run without [sim]", x402sim, "run", "quickstart", code=2)
    assert missing.stderr == "error: x402sim run needs the simulator: pip install 'x402sim[sim]'\n"
    listing = steps.run("scenarios", x402sim, "scenarios")
    assert all(name.removesuffix(".toml") in listing.stdout for name in SCENARIOS)
    # a project of a user's own: the plugin example the wheel ships, copied out of the package
    shipped = "from importlib.resources import files; print(files('x402sim.examples') / 'test_paid_api.py')"
    example = Path(steps.run("find the example", steps.bin / "python", "-c", shipped).stdout.strip())
    shutil.copy(example, work / "test_my_app.py")
    plugin = steps.run(
        "pytest plugin",
        steps.bin / "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "not every_must_case",  # the whole catalog runs from the source tree (examples/test_paid_api.py)
        "test_my_app.py",
    )
    assert "2 passed, 1 deselected" in plugin.stdout  # a group of the server catalog, the testbed

    # -- with [sim]: a short run of a shipped scenario, by name; sweeps still need [dask] -------------
    steps.pip_install("install [sim]", f"{wheel}[sim]")
    steps.run("run quickstart", x402sim, "run", "quickstart", "--set", "simulation.duration=12", "--quiet")
    summary = json.loads((work / "runs/quickstart/summary.json").read_text())
    assert summary["scenario"] == "quickstart" and all(summary["invariants"].values())
    assert summary["tool"] == {"name": "x402sim", "version": VERSION}
    written = work / "runs/quickstart"
    assert {"report.md", "report.html", "summary.json"} <= {f.name for f in written.iterdir()}
    assert list(written.glob("*.png"))
    swept = steps.run("sweep without [dask]", x402sim, "sweep", "quickstart", code=2)
    assert swept.stderr == "error: x402sim sweep needs Dask: pip install 'x402sim[dask]'\n"

    out, err = conformance.communicate(timeout=300)
    assert conformance.returncode == 0, f"conformance: exit {conformance.returncode}\n{out}\n{err}"
    report = json.loads((work / "conformance.json").read_text())
    assert report["tool"] == {"name": "x402sim", "version": VERSION}
    assert report["target"]["role"] == "server" and report["results"]  # exit 0: no MUST case failed
    assert {r["id"].split(".")[1] for r in report["results"]} == {"replay"}

    took = ", ".join(f"{label} {seconds:.1f}s" for label, seconds in {"build": built, **steps.took}.items())
    print(f"wheel test: {time.perf_counter() - started:.1f}s ({took})")
