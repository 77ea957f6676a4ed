"""Every notebook is a py:percent script paired with an executed .ipynb twin."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
JUPYTEXT = str(Path(sys.executable).with_name("jupytext"))


def test_notebooks_exist():
    assert len(SCRIPTS) >= 2, "expected the numbered notebooks in notebooks/"


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
