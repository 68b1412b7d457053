"""Every notebook in notebooks/ runs from top to bottom without an error, and is committed without outputs.

The notebooks run offline, against the committed sample in data/ or the simulator served in-process on
loopback, in a kernel from this interpreter's environment (ipykernel's ``python3``), with a non-interactive
matplotlib backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STUDY = ROOT / "notebooks" / "03_version_comparison.ipynb"


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {
        "01_quickstart.ipynb",
        "02_weekly_reliability.ipynb",
        "03_version_comparison.ipynb",
        "05_what_changed.ipynb",
    } <= names


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The kernel inherits the environment: no display, no user cache, and no Foundry credentials that
    # would send a notebook to a real stack. Its temporary directory is one of the test's own, so that what
    # the notebook leaves there can be seen.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(name, str(scratch))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for name in ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    began = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    print(f"{path.name}: {time.perf_counter() - began:.1f} s")
    for cell in nb.cells:
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                assert output.get("output_type") != "error", f"{path.name}: {output.get('ename')}"
    if path == STUDY:
        # The conclusion is computed from the verdicts: it cannot call a version clean while metrics are undecided.
        last = nb.cells[-1].outputs
        text = "".join(o.get("data", {}).get("text/markdown", "") for o in last)
        verdicts = text.rsplit("Verdicts of the adjusted comparison", 1)[-1]
        assert "Verdicts of the adjusted comparison" in text
        assert not ("did not regress" in text and ("inconclusive" in verdicts or "insufficient" in verdicts)), text
    left = sorted(p.name for p in scratch.iterdir())
    assert not left, f"{path.name} left temporary files behind: {left}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path: Path) -> None:
    """The committed file has no outputs and no execution counts: results come from running it."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    # The file as git holds it, not only the working copy.
    rel = path.relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True, check=False)
    if shown.returncode == 0:  # committed (else: a new notebook not committed yet, checked above)
        committed = nbformat.reads(shown.stdout, as_version=4)
        for i, cell in enumerate(committed.cells):
            if cell.cell_type == "code":
                assert cell.get("outputs") == [], f"committed {rel} cell {i} has outputs"
                assert cell.get("execution_count") is None, f"committed {rel} cell {i} has an execution count"


def test_study_text_states_no_number() -> None:
    """The study's conclusions are computed: its Markdown cells contain no digit at all.

    Every number, version, date and threshold the study reports is printed by a code cell (or written by a
    code cell as Markdown), so the text cannot drift from the data.
    """
    nb = nbformat.read(STUDY, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found = re.findall(r"\S*\d\S*", cell.source)
            assert not found, f"{STUDY.name} Markdown cell {i} states numbers: {found}"


def test_python3_kernel_is_available() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    assert "python3" in specs, f"no python3 kernel (found {sorted(specs)}); is ipykernel installed in {sys.prefix}?"
    assert os.path.isdir(specs["python3"])
