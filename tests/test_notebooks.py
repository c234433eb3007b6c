"""Run every notebook in ``notebooks/`` top to bottom, as a user would.

The notebooks read ``PHYVAE_DASH_QUICK``: set to 1 (what these tests do unless it is
already set) they use smaller images and fewer epochs, so that the whole set runs in a
few minutes on two CPU cores; what they show does not change. Run them at full size with
``PHYVAE_DASH_QUICK=0 pytest tests/test_notebooks.py``.

The notebooks are executed in memory: the stored outputs (figures included) in the
``.ipynb`` files are never overwritten. The same check runs with nbmake:
``PHYVAE_DASH_QUICK=1 pytest --nbmake notebooks``.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest

# The notebooks import matplotlib and run on ipykernel: a missing one fails here, at
# collection, instead of skipping the whole suite (all are in the `test` extra).
import ipykernel  # noqa: F401
import matplotlib  # noqa: F401

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SHARED_DATA = NOTEBOOKS.parent.parent / "shared" / "data"
#: Notebooks that open real files from the dataset registry.
REAL_DATA = {"04_nio_lsmo_two_phase.ipynb", "06_real_pfm_and_spectral.ipynb"}
CELL_TIMEOUT_S = 300

PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _marks(path: Path):
    marks = [pytest.mark.slow]
    if path.name in REAL_DATA:
        marks.append(pytest.mark.realdata)
    return marks


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=_marks(p)) for p in PATHS])
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    if path.name in REAL_DATA and not (SHARED_DATA.is_dir() or os.environ.get("PHYVAE_DASH_DATA")):
        pytest.skip(f"{path.name} needs the real data files: no {SHARED_DATA} and "
                    "PHYVAE_DASH_DATA is not set")
    # The kernel inherits this process's environment.
    monkeypatch.setenv("PHYVAE_DASH_QUICK", os.environ.get("PHYVAE_DASH_QUICK", "1"))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in PATHS])
def test_stored_notebook_keeps_its_figures(path):
    """The committed notebooks must show their figures without being run."""
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    assert all(c.get("execution_count") for c in code), \
        f"{path.name} has cells that were not executed; run it and save the outputs"
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert figures >= 2, f"{path.name} stores {figures} figures; run it and save the outputs"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} stores an error output: {errors[0].get('ename')}"


def test_there_are_notebooks():
    assert len(PATHS) >= 6, f"expected the six notebooks in {NOTEBOOKS}, found {len(PATHS)}"
