"""The student notebooks that the website's Colab buttons open (student/labs/) are committed: they
must be exactly what the masters generate, and carry no solution or hidden-test line."""
from __future__ import annotations

import nbformat

from notebooks import ROOT


def test_committed_student_notebooks_are_up_to_date():
    from tlutils.grading import stale_student_notebooks

    stale = stale_student_notebooks(ROOT)
    assert not stale, ("\n".join(stale) + "\nregenerate them: python -m tlutils.grading student-notebooks")


def test_staleness_is_detected(tmp_path):
    """A master edited after its student notebook was written makes the check fail (and only then)."""
    import shutil

    from tlutils.grading import assignment_masters, stale_student_notebooks, write_student_notebooks

    master = assignment_masters(ROOT / "labs")[0]
    (tmp_path / "labs").mkdir()
    shutil.copy(master, tmp_path / "labs" / master.name)
    write_student_notebooks(tmp_path)
    assert stale_student_notebooks(tmp_path) == []
    nb = nbformat.read(str(tmp_path / "labs" / master.name), as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("A new paragraph in the master."))
    nbformat.write(nb, str(tmp_path / "labs" / master.name))
    assert [p.split(":")[0] for p in stale_student_notebooks(tmp_path)] == [master.stem]
    (tmp_path / "student" / "labs" / "orphan.ipynb").write_text("{}")
    assert any("orphan" in p and "no master" in p for p in stale_student_notebooks(tmp_path))


def test_student_notebooks_have_no_solutions_or_hidden_tests():
    from tlutils.grading import assignment_masters, leak_snippets
    from tlutils.grading.leaks import _contains, _notebook_text, _tokens

    for master in assignment_masters(ROOT / "labs"):
        student = ROOT / "student" / "labs" / master.name
        text = _tokens(_notebook_text(nbformat.read(str(student), as_version=4)))
        for kind, snippets in leak_snippets(master).items():
            assert snippets, f"{master.stem}: no {kind} snippets to look for"
            leaked = [s for s in snippets if _contains(text, s)]
            assert not leaked, f"{student.relative_to(ROOT)} contains {kind} text: {leaked[:3]}"
