"""Notebook 10 as a reader meets it: JupyterLab in a real browser, all cells run, a click, a slider.

The test starts its own JupyterLab server (a free port, a random token, settings in a
temporary folder) on a copy of notebook 10, opens it in headless Chromium (Debian's
``chromium`` driven by Playwright from PyPI), runs all cells from the Run menu, waits for
the offset viewer, clicks a pixel of the reference frame and drags the offset slider. It
checks that each interaction changed the pictures that depend on it and left the others
alone (screenshots of the panels, pixel for pixel) and that the browser console logged no
error. Screenshots of the run are saved in ``tests/output/browser/``.

Without Chromium the test is skipped with a message saying what to install (``make test``
installs it when run as root); under ``CI=true`` a missing browser is a failure.
"""

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_interactive_viewer.ipynb"
OUTPUT = ROOT / "tests" / "output" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# JupyterLab settings for the test's server: every cell in the page (no windowing, so that
# all prompts can be read) and no news or update checks (no network here).
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}
RUN_ALL_TIMEOUT_MS = 900_000  # the notebook trains its two models when no finished run is cached


def _require_browser():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("Debian's chromium (apt-get install chromium; `make test` installs it as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server of our own on a copy of notebook 10: (base URL, token, notebook name)."""
    _require_browser()
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    settings = tmp_path / "settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "DALIGN_PROFILE": "quick",
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "OMP_WAIT_POLICY": "PASSIVE",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError as err:
                if server.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp_path / "jupyterlab.log").read_text()
                    raise RuntimeError(f"JupyterLab did not start: {log_text}") from err
                time.sleep(0.5)
        yield base, token, NOTEBOOK.name
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _picture(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(np.int16)


def _panels(viewer) -> dict:
    names = ("reference", "neighbour", "offset", "flow", "distance", "diversity", "mask", "occlusion")
    return {name: viewer.locator(f"img.dalign-panel-{name}") for name in names}


def _changed(before: dict, panels: dict) -> set:
    """Panels whose picture differs from ``before`` (in more than a few pixels)."""
    out = set()
    for name, locator in panels.items():
        now = _picture(locator)
        if now.shape != before[name].shape or (np.abs(now - before[name]).max(-1) > 24).sum() > 8:
            out.add(name)
    return out


def _wait_for_new_readout(page, viewer, old: str) -> str:
    readout = viewer.locator(".dalign-readout")
    deadline = time.monotonic() + 60
    while readout.inner_text() == old:
        if time.monotonic() > deadline:
            raise AssertionError(f"the viewer did not answer (readout still {old!r})")
        page.wait_for_timeout(200)
    page.wait_for_timeout(1500)  # the panels' pictures arrive with the readout; let them paint
    return readout.inner_text()


def test_notebook_10_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token, name = lab
    OUTPUT.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data folder
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(f"{base}/lab/tree/{name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
            try:  # JupyterLab asks which kernel to start for a notebook opened the first time
                select.click(timeout=20_000)
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            # the stored notebook has numbered prompts too: wait for the queue ([*]) to empty
            prompts = "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)"
            page.wait_for_function(f"() => {prompts}.some(t => t.includes('*'))", timeout=30_000)
            page.wait_for_function(f"() => {prompts}.every(t => /\\[\\d+\\]/.test(t))",
                                   timeout=RUN_ALL_TIMEOUT_MS, polling=1000)
            errors_shown = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
            assert errors_shown.count() == 0, errors_shown.first.inner_text()

            reference = page.locator("img.dalign-panel-reference")
            viewer = page.locator(".dalign-viewer").filter(has=reference).first  # the first offset viewer
            panels = _panels(viewer)
            panels["reference"].scroll_into_view_if_needed()
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                                   arg=panels["reference"].element_handle(), timeout=60_000)
            page.wait_for_timeout(1000)
            viewer.screenshot(path=OUTPUT / "1-after-run-all.png")
            readout = viewer.locator(".dalign-readout").inner_text()
            assert "pixel (y, x) = (40, 24)" in readout, readout

            # a click on the reference frame selects the pixel under it
            before = {k: _picture(v) for k, v in panels.items()}
            box = panels["reference"].bounding_box()
            panels["reference"].click(position={"x": 0.30 * box["width"], "y": 0.70 * box["height"]})
            readout = _wait_for_new_readout(page, viewer, readout)
            viewer.screenshot(path=OUTPUT / "2-after-click.png")
            changed = _changed(before, panels)
            assert {"reference", "neighbour"} <= changed <= {"reference", "neighbour", "distance"}, changed
            y, x = (int(v) for v in readout.split("pixel (y, x) = (")[1].split(")")[0].split(","))
            # the 64x64 frame fills 85% of the panel's height from 12% below its top, centred
            # across: 70% down and 30% across the panel is pixel (43, 16)
            assert abs(y - 43) <= 1 and abs(x - 16) <= 1, (y, x)

            # dragging the offset slider selects another offset: its field, mask, arrow, bar
            before = {k: _picture(v) for k, v in panels.items()}
            slider = viewer.locator(".widget-slider").filter(has_text="by l1 distance to flow")
            handle = slider.locator(".noUi-handle")
            track = slider.locator(".noUi-target").bounding_box()
            start = handle.bounding_box()
            page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + 0.6 * track["width"], start["y"] + start["height"] / 2, steps=8)
            page.mouse.up()
            readout = _wait_for_new_readout(page, viewer, readout)
            viewer.screenshot(path=OUTPUT / "3-after-slider.png")
            changed = _changed(before, panels)
            assert {"offset", "neighbour", "distance"} <= changed, changed
            assert not changed & {"reference", "flow", "diversity", "occlusion"}, changed
            page.screenshot(path=OUTPUT / "4-page.png")
        except Exception:
            page.screenshot(path=OUTPUT / "failure.png")
            raise
        finally:
            context.close()
    print(f"screenshots in {OUTPUT.relative_to(ROOT)}")
    assert not errors, errors

