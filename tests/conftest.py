import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/notebooks.py, tests/lab_checks.py

from notebooks import Book, execute_once, lab_notebooks  # noqa: E402

BOOK_FIXTURES = ("student_book", "instructor_book")


@pytest.fixture(scope="session")
def student_book() -> Book:
    """`make book`: the website's student edition in the `full` profile, the numbers readers see.

    Built once per test session, into `_build/` like `make book` (its jupyter cache is reused
    when neither the labs' cells nor tlutils changed)."""
    return Book("student", "full").build()


@pytest.fixture(scope="session")
def instructor_book() -> Book:
    """The instructor edition (solutions shown), in the quick `ci` profile: the labs are the harness's
    papermill runs (seed 0, shared with test_labs.py), shown without executing them a third time."""
    runs = {nb.stem: execute_once(nb, "ci", 0)[0] for nb in lab_notebooks()}
    return Book("instructor", "ci", executed=runs).build()


# The longest test files first: `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`,
# which keeps each file on one worker (so a module fixture, e.g. one grading run, is computed once)
# and hands the files out in this order.
LONGEST_FIRST = ("test_grading", "test_labs", "test_lab_seeds", "test_grading_hostile")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the `book` mark
def pytest_collection_modifyitems(config, items):
    """Every test of a built book is marked `book` (make test runs them in a process of their own,
    beside the others); the longest files come first."""
    def module(item):
        return getattr(getattr(item, "module", None), "__name__", "")  # nbval's cells have no module

    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        # tests/test_browser.py asks for an edition's book by name (`edition`)
        if "edition" in params or any(f in BOOK_FIXTURES for f in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.book)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: the order within a file stays
