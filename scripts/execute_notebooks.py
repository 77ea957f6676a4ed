"""Execute notebooks from their py:percent sources and refresh the paired .ipynb files.

Usage: python scripts/execute_notebooks.py notebooks/01_dcn_equation.py [...]

Outputs are kept; widget state and widget views are not stored (a progress bar keeps its final
text); absolute paths of this checkout and of
the environment are replaced by placeholders so that the committed notebooks carry no
machine paths; execution timestamps are dropped so that re-running does not churn.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
_PATHS = sorted({str(ROOT), str(Path(sys.prefix)), str(Path.home()), "/tmp"}, key=len, reverse=True)


def _scrub_text(text: str) -> str:
    for path in _PATHS:
        text = text.replace(path + "/", "").replace(path, ".")
    # Object reprs carry memory addresses that change on every run.
    return re.sub(r" at 0x[0-9a-f]+>", ">", text)


def _widget_text(state: dict, model_id: str) -> str | None:
    """The final text of a tqdm bar widget (a box of label, progress bar, label), or None."""
    children = state.get(model_id, {}).get("state", {}).get("children")
    if not children:
        return None
    parts = []
    for ref in children:
        child = state.get(ref.removeprefix("IPY_MODEL_"), {}).get("state", {})
        if "max" in child:  # the bar itself
            filled = round(10 * child.get("value", 0) / child["max"]) if child["max"] else 0
            parts.append("|" + "#" * filled + " " * (10 - filled) + "|")
        else:
            parts.append(html.unescape(child.get("value", "")).replace("\u2007", " "))
    return "".join(parts)


def _scrub(nb) -> None:
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = state.get("state", {})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            # Widget views (tqdm bars) cannot render without the widget state, which is not
            # stored; their text/plain form becomes the bar's final text, not its first.
            view = out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
            text = view and _widget_text(state, view.get("model_id", ""))
            if text:
                out["data"]["text/plain"] = text
            if "text" in out:
                out["text"] = _scrub_text(out["text"])
            for key, value in out.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    out["data"][key] = _scrub_text(value)
    nb.metadata.pop("widgets", None)


def execute(py_path: Path) -> None:
    nb = jupytext.read(py_path)
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("kernelspec", kernelspec)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(py_path.parent)}}).execute()
    _scrub(nb)
    out = py_path.with_suffix(".ipynb")
    nbformat.write(nb, out)
    # Re-pair with the jupytext CLI (it reads jupytext.toml) so that the .py is exactly
    # what jupytext produces from the .ipynb.
    subprocess.run([str(Path(sys.executable).with_name("jupytext")), "--quiet", "--to",
                    "py:percent", "-o", str(py_path), str(out)], check=True)
    print(f"{out.relative_to(ROOT)}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        execute(Path(arg).resolve())
