"""The package's layers: a module imports only from lower layers (or its own package), so that
``data`` never pulls in ``training``, nor the measures a widget library."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dalign_nb"

# Lower numbers first; a module may import from a strictly lower layer or from its own package.
LAYERS = {
    "io": 0, "ops": 0, "flow": 0, "paper": 0,
    "alignment": 1, "losses": 1, "data": 1,
    "metrics": 2, "models": 2, "offset_fit": 2,
    "config": 3, "analysis": 3, "diagnostics": 3, "viz": 3, "training": 3,
    "report": 3,  # its overview reads the paper's numbers (paper) and computes Pearson's r (metrics)
    "train": 4, "widgets": 4,
    "experiments": 5, "bench_train": 5,  # it times the trainer's own iteration
    "bench": 6, "__main__": 6,
}


def _component(path: Path) -> str:
    """The top-level name of a module of the package: ``data`` for ``data/video.py``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported(path: Path) -> set[str]:
    """Top-level names of the package that a module imports, at its top or inside a function."""
    own = path.relative_to(PACKAGE).parts[:-1]  # the module's package, for relative imports
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(own[: len(own) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names |= {parts[0]} if parts else {a.name for a in node.names}
            elif node.module and node.module.split(".")[0] == "dalign_nb":
                parts = node.module.split(".")[1:]
                names |= {parts[0]} if parts else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dalign_nb.")}
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    assert {_component(p) for p in MODULES} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_go_down_the_layers_only(path):
    me = _component(path)
    upward = {name for name in _imported(path) - {me} if LAYERS[name] >= LAYERS[me]}
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {LAYERS[me]}) imports {sorted(upward)}"


def test_data_does_not_import_training():
    assert all("training" not in _imported(p) for p in (PACKAGE / "data").glob("*.py"))
