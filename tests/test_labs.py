"""The notebook harness: every lab under labs/ runs in both profiles within budget, reproduces
its numbers, and shows what its text claims (checks in lab_checks.py): in `full`, on the numbers
the website shows (the book build's executed labs), and in `ci` for seed 0 (other seeds:
test_lab_seeds.py, a file of its own so that the two pytest workers share the runs). That the same
seed gives the same numbers is checked against a second, independent run: the grader's run of
each lab's student version (test_grading.py)."""
from __future__ import annotations

import papermill as pm
import pytest

import lab_checks
from notebooks import ci_budget_s, execute, execute_once, glued, lab_notebooks

pytestmark = pytest.mark.notebook
LABS = lab_notebooks()
IDS = [p.stem for p in LABS]
_runs: dict = {}


def run(nb, seed=0):
    """Execute each (notebook, seed) once per test run."""
    key = (nb, seed)
    if key not in _runs:
        _runs[key] = execute_once(nb, "ci", seed)
    return _runs[key]


def test_labs_exist():
    assert LABS, "no notebooks found under labs/"


@pytest.mark.parametrize("nb", LABS, ids=IDS)
def test_lab_runs_within_ci_budget(nb):
    _, cpu = run(nb)
    budget = ci_budget_s()
    assert cpu < budget, f"{nb.stem} took {cpu:.0f} CPU s in the ci profile (budget {budget:.0f} CPU s on this machine)"


def test_the_ci_budget_grows_on_a_slower_machine_only(monkeypatch):
    import notebooks

    assert notebooks.speed(0.2) > 0
    monkeypatch.setattr(notebooks, "speed_measured", lambda: notebooks.REFERENCE_STEPS_PER_CPU_S / 2)
    assert notebooks.ci_budget_s() == pytest.approx(2 * notebooks.CI_BUDGET_S)
    monkeypatch.setattr(notebooks, "speed_measured", lambda: notebooks.REFERENCE_STEPS_PER_CPU_S * 2)
    assert notebooks.ci_budget_s() == notebooks.CI_BUDGET_S, "a faster machine keeps the budget"


@pytest.mark.parametrize("nb", LABS, ids=IDS)
def test_lab_shows_what_its_text_claims(nb):
    check = getattr(lab_checks, f"check_{nb.stem}", None)
    assert check is not None, f"add check_{nb.stem}(g, profile) to tests/lab_checks.py"
    out, _ = run(nb)
    check(glued(out), "ci")


@pytest.mark.parametrize("nb", LABS, ids=IDS)
def test_book_numbers_show_what_the_text_claims(nb, student_book):
    """The same claims on the `full` profile's numbers, as the book build recorded them."""
    lab_checks.__dict__[f"check_{nb.stem}"](student_book.glued(nb.stem), "full")


@pytest.mark.parametrize("nb", LABS, ids=IDS)
def test_lab_rejects_unknown_profile(nb, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown profile 'fast'"):
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"profile": "fast"},
                            cwd=str(nb.parent), kernel_name="python3", progress_bar=False)


def test_broken_notebook_fails_the_harness(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'ci'\nseed = 0", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(pm.PapermillExecutionError, match="deliberately broken"):
        execute(path, out_dir=tmp_path)


@pytest.mark.parametrize("nb", LABS, ids=IDS)
def test_lab_opens_with_goals_and_a_colab_install_cell(nb):
    """A learner sees goals, prerequisites and run time first; in Colab the first code cell installs tlutils."""
    import nbformat
    import yaml

    cells = nbformat.read(nb, as_version=4).cells
    shown = [c for c in cells if c.cell_type != "raw"]  # the assignment config is not shown
    assert shown[0].cell_type == "markdown" and shown[0].source.startswith("# "), (
        f"{nb.name}: the page should open with the lab's title and goals, before any code")
    intro = shown[0].source
    for heading in ("Learning goals", "Prerequisites", "Run time"):
        assert heading in intro, f"{nb.name}: the first markdown cell should state '{heading}'"
    first_code = next(c.source for c in cells if c.cell_type == "code")
    repo = yaml.safe_load((nb.parents[1] / "_config.yml").read_text())["repository"]["url"]
    assert '"google.colab" in sys.modules' in first_code and f"git+{repo}@main" in first_code, (
        f"{nb.name}: the first code cell should install tlutils from {repo} when running in Colab")
    assert "parameters" in next(c for c in cells if c.cell_type == "code" and c is not cells[0]
                                and "google.colab" not in c.source).metadata.get("tags", []), (
        f"{nb.name}: the parameters cell should follow the Colab cell")


def test_a_claim_broken_in_the_book_only_fails_the_checks(student_book):
    """Making the fix end below the probe in the `full` numbers alone is caught."""
    g = dict(student_book.glued("forgetting"))
    g["fixed_val_acc"] = g["probe_val_acc"] - 0.01
    with pytest.raises(AssertionError):
        lab_checks.check_forgetting(g, "full")
