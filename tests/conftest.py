import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/notebooks.py, tests/lab_checks.py

from notebooks import Book  # noqa: E402

BOOK_FIXTURES = ("student_book", "instructor_book")


@pytest.fixture(scope="session")
def student_book() -> Book:
    """`make book`: the website's student edition in the `full` profile, the numbers readers see.

    Built once per test session, into `_build/` like `make book` (its jupyter cache is reused
    when neither the labs' cells nor tlutils changed)."""
    return Book("student", "full").build()


@pytest.fixture(scope="session")
def instructor_book() -> Book:
    """The instructor edition (solutions shown), in the quick `ci` profile."""
    return Book("instructor", "ci").build()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the `book` mark
def pytest_collection_modifyitems(config, items):
    """Every test of a built book is marked `book` (make test runs them in a process of their own,
    beside the others). Groups for `pytest -n 2 --dist loadgroup`: each lab's runs, and the grading
    tests (module fixtures), stay on one worker where xdist keeps its groups together (it does not
    always: tests/notebooks.py shares executions between workers as well)."""
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")  # nbval's cells have no module
        params = getattr(getattr(item, "callspec", None), "params", {})
        # tests/test_browser.py asks for an edition's book by name (`edition`)
        books = "edition" in params or any(f in BOOK_FIXTURES for f in getattr(item, "fixturenames", ()))
        if books:
            item.add_marker(pytest.mark.book)
        elif module == "test_labs" and "nb" in params:
            item.add_marker(pytest.mark.xdist_group(f"lab-{params['nb'].stem}"))
        elif module in ("test_grading", "test_grading_hostile"):
            # one group: sandboxes of one worker share its uid counter, and the hostile suite
            # looks for any leftover sandbox process
            item.add_marker(pytest.mark.xdist_group("grading"))
