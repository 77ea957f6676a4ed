"""Every notebook is a py:percent script paired with an executed .ipynb twin.

The pairing is checked twice: by reading the script's ``# %%`` cells here (code cells
only, independent of jupytext) and by jupytext's own conversion of the twin.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
JUPYTEXT = str(Path(sys.executable).with_name("jupytext"))


def script_code_cells(text: str) -> list[str]:
    """The code cells of a py:percent script: what follows each ``# %%`` marker that is not
    ``# %% [markdown]``, blank lines around it dropped (the YAML header precedes the first)."""
    cells, current = [], None
    for line in text.splitlines():
        if line.startswith("# %%"):
            if current is not None:
                cells.append(current)
            current = None if "[markdown]" in line else []
        elif current is not None:
            current.append(line)
    if current is not None:
        cells.append(current)
    return ["\n".join(lines).strip("\n") for lines in cells]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_cells_are_read_as_jupytext_reads_them(script):
    jupytext = pytest.importorskip("jupytext")
    text = script.read_text()
    cells = [c.source for c in jupytext.reads(text, fmt="py:percent").cells if c.cell_type == "code"]
    assert script_code_cells(text) == cells


def test_every_notebook_is_a_numbered_pair():
    """Scripts and twins come in pairs (no orphan on either side), and every script is numbered,
    so that none escapes the parametrised checks below."""
    scripts = {p.stem for p in NOTEBOOKS.glob("*.py")}
    twins = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert scripts, "no notebooks in notebooks/"
    assert scripts == twins, f"scripts without a twin: {sorted(scripts - twins)}, twins without a script: " \
                             f"{sorted(twins - scripts)}"
    assert {s.stem for s in SCRIPTS} == scripts, "notebook scripts are named NN_name.py"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_twin_code_cells_equal_the_script(script):
    nb = json.loads(script.with_suffix(".ipynb").read_text())
    twin = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    ours = script_code_cells(script.read_text())
    assert len(twin) == len(ours), f"{len(ours)} code cells in {script.name}, {len(twin)} in its twin"
    for i, (a, b) in enumerate(zip(ours, twin)):
        assert a == b, f"code cell {i + 1} of {script.name} differs from its twin; run `make notebooks`"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_pair_in_sync(script):
    twin = script.with_suffix(".ipynb")
    assert twin.exists(), f"{script.name} has no paired {twin.name}; run `make notebooks`"
    text = subprocess.run([JUPYTEXT, "--to", "py:percent", "-o", "-", str(twin)],
                          capture_output=True, text=True, check=True).stdout
    assert text == script.read_text(), (
        f"{twin.name} and {script.name} differ; run `make notebooks` (or "
        f"`jupytext --to ipynb --update {script.name}`)")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_twin_is_clean(script):
    raw = script.with_suffix(".ipynb").read_text()
    nb = json.loads(raw)
    assert "widgets" not in nb["metadata"], "widget state stored in the notebook"
    assert "application/vnd.jupyter.widget-view+json" not in raw, "widget views without their state"
    assert not re.search(r'"/(work|tmp|root|home)/', raw), "machine path in notebook outputs"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "notebook is not executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"executed notebook holds errors: {errors[:1]}"
