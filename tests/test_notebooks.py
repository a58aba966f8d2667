"""The notebooks under notebooks/: each one runs from top to bottom, and none is committed with outputs.

Every ``notebooks/*.ipynb`` is picked up by the glob, one test each. The kernel is ipykernel's
"python3" kernelspec, which jupyter_client starts with this interpreter (``sys.executable``), so the
notebook sees the same virtualenv and the same ``x402sim`` as the tests (the repository root is put
on the kernel's ``PYTHONPATH`` too, for a checkout that is not installed). A notebook runs in its
own folder, as Jupyter runs it. The long ones tag one cell ``parameters`` (papermill's convention) and
run here with ``SUITE_PARAMETERS`` assigned after it: the same code, fewer repetitions.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell
KERNEL = "python3"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of IPython tracebacks

# Smaller sizes for the suite, as papermill injects them: a cell with these assignments runs right
# after the notebook's cell tagged "parameters"; everything else runs as written.
SUITE_PARAMETERS = {
    "scale.ipynb": "SWEEP_RUNS = 2",
    "governance.ipynb": 'VELOCITY_MAXIMA = ["0.2", "0.5", "1"]',
    "agents.ipynb": "N_TOOLS = [2, 4]; SEEDS = [1]; AGENTS = 2; DURATION = 30",
}

# With no notebook at all the glob would make no test; one failing parameter says so instead.
PARAMS = [pytest.param(path, id=path.name) for path in NOTEBOOKS] or [pytest.param(None, id="no-notebooks")]


def _require(path: Path | None) -> Path:
    if path is None:
        pytest.fail(f"no notebooks found in {NOTEBOOK_DIR}")
    return path


def _kernel_env() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute(env=_kernel_env())


def _stream_text(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "stream"
    )


def _with_suite_parameters(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    injected = SUITE_PARAMETERS.get(name)
    if injected is None:
        return nb
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    nb.cells.insert(tagged[0] + 1, new_code_cell(injected))
    return nb


@pytest.mark.parametrize("path", PARAMS)
def test_notebook_runs(path: Path | None) -> None:
    path = _require(path)
    nb = _with_suite_parameters(nbformat.read(path, as_version=4), path.name)
    try:
        _execute(nb, path.parent)
    except CellExecutionError as exc:
        pytest.fail(f"{path.relative_to(ROOT)} failed:\n{ANSI.sub('', str(exc))}", pytrace=False)


def test_kernel_is_this_interpreter() -> None:
    """The kernel runs in this virtualenv and imports the same x402sim as the tests."""
    import x402sim

    probe = new_notebook(
        cells=[new_code_cell("import sys, x402sim\nprint(sys.prefix)\nprint(x402sim.__file__)")],
        metadata={"kernelspec": {"name": KERNEL, "display_name": "Python 3", "language": "python"}},
    )
    prefix, module = _stream_text(_execute(probe, NOTEBOOK_DIR if NOTEBOOK_DIR.is_dir() else ROOT)).split()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert Path(module).resolve() == Path(x402sim.__file__).resolve()


@pytest.mark.parametrize("path", PARAMS)
def test_notebook_is_stored_without_outputs(path: Path | None) -> None:
    path = _require(path)
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    offending = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs, count = cell.get("outputs", []), cell.get("execution_count")
        if outputs or count is not None:
            offending.append(
                f"  cell {index} (id {cell.get('id', '?')}): {len(outputs)} outputs, execution_count {count}"
            )
    if offending:
        pytest.fail(
            f"{path.relative_to(ROOT)} is stored with outputs; clear them before committing "
            "(Jupyter: Edit > Clear Outputs of All Cells):\n" + "\n".join(offending),
            pytrace=False,
        )
