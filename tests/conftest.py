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
        elif module in ("test_book", "test_grading"):
            item.add_marker(pytest.mark.xdist_group(module))


# --- Stand-in for the lead's book fixtures (issue 16), for tests/test_browser.py. -------------
# The real fixtures build the editions once per session; this one reuses a build named by
# TLUTILS_STUDENT_BOOK / TLUTILS_INSTRUCTOR_BOOK (a _build/html folder) or builds the ci profile.
import os
import subprocess

import pytest


def _standin_book(tmp_path_factory, edition: str) -> Path:
    given = os.environ.get(f"TLUTILS_{edition.upper()}_BOOK")
    if given:
        return Path(given)
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp(f"{edition}-book")
    src = out / "src"
    subprocess.run([sys.executable, "-m", "tlutils.grading", "stage-book", "--edition", edition, "--dest", str(src)],
                   check=True, cwd=root)
    jb = str(Path(sys.executable).with_name("jupyter-book"))
    subprocess.run([jb, "build", str(src), "-W", "-n", "--keep-going", "--all", "--path-output", str(out)],
                   check=True, env={**os.environ, "TLUTILS_PROFILE": "ci"})
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def student_book(tmp_path_factory) -> Path:
    return _standin_book(tmp_path_factory, "student")


@pytest.fixture(scope="session")
def instructor_book(tmp_path_factory) -> Path:
    return _standin_book(tmp_path_factory, "instructor")
