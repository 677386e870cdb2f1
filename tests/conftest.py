import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/notebooks.py, tests/lab_checks.py


def pytest_collection_modifyitems(config, items):
    """Groups for `pytest -n 2 --dist loadgroup` (make test): each lab's runs stay on one worker
    (they share executions), and so do the book's and the grading tests (module fixtures)."""
    import pytest

    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")  # nbval's cells have no module
        params = getattr(getattr(item, "callspec", None), "params", {})
        if module == "test_labs" and "nb" in params:
            item.add_marker(pytest.mark.xdist_group(f"lab-{params['nb'].stem}"))
        elif module in ("test_book", "test_grading", "test_grading_hostile"):
            item.add_marker(pytest.mark.xdist_group(module))
