import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/notebooks.py, tests/lab_checks.py

from notebooks import Book  # noqa: E402

BOOK_GROUPS = {"student_book": "book", "instructor_book": "instructor-book"}


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


def pytest_collection_modifyitems(config, items):
    """Groups for `pytest -n 2 --dist loadgroup` (make test): each lab's runs stay on one worker
    (they share executions), and so do the tests of one built book and the grading tests (module
    fixtures)."""
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")  # nbval's cells have no module
        params = getattr(getattr(item, "callspec", None), "params", {})
        books = [BOOK_GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in BOOK_GROUPS]
        if "edition" in params:  # tests/test_browser.py asks for one edition's book by its name
            books = [BOOK_GROUPS[f"{params['edition']}_book"]]
        if books:
            item.add_marker(pytest.mark.xdist_group(books[0]))
        elif module == "test_labs" and "nb" in params:
            item.add_marker(pytest.mark.xdist_group(f"lab-{params['nb'].stem}"))
        elif module in ("test_grading", "test_grading_hostile"):
            item.add_marker(pytest.mark.xdist_group(module))
