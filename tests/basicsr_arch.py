"""BasicSR's own EDVR (``basicsr.archs.edvr_arch``), the reference of the interoperability tests.

BasicSR 1.4.2 is installed by ``make`` (``pip install --no-build-isolation --no-deps
basicsr==1.4.2 addict yapf lmdb pyyaml future``). Without it those tests skip, and under
``CI=true`` they fail with what to install.
"""

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from pathlib import Path

import pytest

INSTALL = ("pip install --no-build-isolation --no-deps basicsr==1.4.2 addict yapf lmdb pyyaml future "
           "(as the Makefile does)")


def load_basicsr_edvr_arch():
    """BasicSR's ``archs/edvr_arch.py`` without running ``basicsr/__init__.py``.

    The package's ``__init__`` imports its data pipeline, which fails on current
    torchvision; the arch modules need only ``basicsr.ops.dcn``, a logger and a registry,
    so the parent packages are stubbed. Returns (module, None) or (None, reason).
    """
    if "basicsr.archs.edvr_arch" in sys.modules:
        return sys.modules["basicsr.archs.edvr_arch"], None
    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        return None, "basicsr is not installed"
    root = Path(list(spec.submodule_search_locations)[0])

    def package(name, path):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__spec__.submodule_search_locations = [str(path)]  # find_spec still finds the files
        sys.modules[name] = module
        return module

    package("basicsr", root)
    package("basicsr.archs", root / "archs")
    package("basicsr.utils", root / "utils").get_root_logger = lambda *a, **k: logging.getLogger("basicsr")
    registry = types.ModuleType("basicsr.utils.registry")
    registry.ARCH_REGISTRY = types.SimpleNamespace(register=lambda *a, **k: (lambda obj: obj))
    sys.modules["basicsr.utils.registry"] = registry
    try:
        return importlib.import_module("basicsr.archs.edvr_arch"), None
    except Exception as error:  # report why, the test skips
        for name in [n for n in sys.modules if n == "basicsr" or n.startswith("basicsr.")]:
            del sys.modules[name]
        return None, f"basicsr's edvr_arch cannot be imported: {error!r}"


def require_basicsr_edvr():
    """BasicSR's ``edvr_arch`` module; skips without it, fails under ``CI=true``, saying what to install."""
    module, reason = load_basicsr_edvr_arch()
    if module is None:
        message = f"{reason}; install it with {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return module


def require_basicsr_root() -> Path:
    """The folder of the installed ``basicsr`` package; skips without it, fails under ``CI=true``."""
    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        message = f"basicsr is not installed; install it with {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Path(list(spec.submodule_search_locations)[0])
