"""pytest configuration shared by tests/ and the nbval-executed notebooks/."""

# nbval waits at most 5 s for each message of a cell's output once the cell has finished.
# On 2 cores the second training cell of notebook 04 (tqdm widget progress bars) failed
# that wait twice in a row although it had run to the end; with a longer wait it passes.
NBVAL_OUTPUT_TIMEOUT_S = 120


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
    # The browser test re-runs notebook 10 in JupyterLab; after nbval it finds the notebook's
    # models trained (their finished runs are loaded, not trained again).
    items.sort(key=lambda item: item.path.name == "test_browser.py")
