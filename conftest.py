"""pytest configuration shared by tests/ and the nbval-executed notebooks/."""

# nbval waits at most 5 s between two messages of a running cell's output stream. A
# notebook that trains (04) can go quiet for longer on a loaded 2-core machine while the
# kernel flushes progress-bar updates, and nbval then fails the cell although it ran.
NBVAL_OUTPUT_TIMEOUT_S = 120


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
