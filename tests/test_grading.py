"""Graded exercises (issue 4): otter assign, grading a class, the book's two editions, leak checks.

Built around ``tests/fixtures/toy_lab.ipynb`` (a lab-like master: 3 questions worth 1 + 2 + 1
points); one grading run serves tests (a)-(d). Real lab masters under ``labs/`` are linted, and
their untouched student notebooks are graded (they must run to the end and score 0).
"""
from __future__ import annotations

import copy
import csv
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tlutils import grading as g
from tlutils.grading import runner

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "toy_lab.ipynb"
POINTS = {"q1": 1.0, "q2": 2.0, "q3": 1.0}
REAL_LABS = g.assignment_masters(ROOT / "labs")
GRADING_TIMEOUT_S = 60.0  # the toy lab grades in ~10-20 s; the endless submission is stopped here
SANDBOX = g.sandbox_problem() is None  # grade in the sandbox wherever there is one (the hostile suite needs it)

TOY_CONFIG = """\
title: "Toy book"
author: "tests"
only_build_toc_files: true
exclude_patterns: [_build, build]
execute:
  execute_notebooks: cache
  timeout: 300
  raise_on_error: true
  allow_errors: false
  stderr_output: remove-warn
sphinx:
  config:
    nb_merge_streams: true
"""
TOY_TOC = "format: jb-book\nroot: intro\nchapters:\n  - file: labs/toy_lab\n"


# --------------------------------------------------------------------------- helpers

def by_question(nb: nbformat.NotebookNode, tag: str) -> dict[str, list[int]]:
    """Indices of the cells tagged ``tag``, grouped by the ``grader.check("q")`` cell that follows them."""
    groups: dict[str, list[int]] = {}
    pending: list[int] = []
    for i, cell in enumerate(nb.cells):
        if tag in cell.metadata.get("tags", []):
            pending.append(i)
        m = re.match(r'grader\.check\("([^"]+)"\)', cell.source.strip()) if cell.cell_type == "code" else None
        if m:
            groups[m.group(1)], pending = pending, []
    return groups


def with_answers(lab: g.AssignedLab, solved: set[str] = frozenset(), replace: dict[str, str] | None = None):
    """The student notebook with the solutions of ``solved`` questions filled in and the answer
    cells of ``replace`` questions set to the given code (first answer cell; others emptied)."""
    stu = nbformat.read(str(lab.student_notebook), as_version=4)
    sol = nbformat.read(str(lab.autograder_notebook), as_version=4)
    s_cells, a_cells = by_question(stu, "otter_answer_cell"), by_question(sol, "otter_assign_solution_cell")
    nb = copy.deepcopy(stu)
    for q in solved:
        for i, j in zip(s_cells[q], a_cells[q], strict=True):
            nb.cells[i].source = sol.cells[j].source
    for q, code in (replace or {}).items():
        for k, i in enumerate(s_cells[q]):
            nb.cells[i].source = code if k == 0 else ""
    return nb


def put(folder: Path, student: str, lab: str, nb=None, text: str | None = None) -> Path:
    path = folder / student / f"{lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        path.write_text(text)
    else:
        nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def toy_repo(tmp_path_factory) -> Path:
    """A miniature course repository: the toy lab master plus a one-page book around it."""
    root = tmp_path_factory.mktemp("toy_repo")
    (root / "labs").mkdir()
    shutil.copy(FIXTURE, root / "labs" / "toy_lab.ipynb")
    (root / "_config.yml").write_text(TOY_CONFIG)
    (root / "_toc.yml").write_text(TOY_TOC)
    (root / "intro.md").write_text("# Toy book\n\nOne lab with graded exercises.\n")
    return root


@pytest.fixture(scope="module")
def toy_lab(toy_repo) -> g.AssignedLab:
    labs = g.assign(root=toy_repo)
    assert set(labs) == {"toy_lab"}
    return labs["toy_lab"]


# --------------------------------------------------------------------------- format and assign (fast)

def test_fixture_follows_the_course_format():
    assert g.lint_master(FIXTURE) == []
    m = g.read_master(FIXTURE)
    assert [(q.name, q.points) for q in m.questions] == [("q1", 1), ("q2", 2), ("q3", 1)]
    assert all(q.public_tests and q.hidden_tests and q.solution_cells for q in m.questions)


def test_lint_explains_what_is_missing(tmp_path):
    nb = nbformat.read(str(FIXTURE), as_version=4)
    nb.cells[0].source = "# ASSIGNMENT CONFIG\ninit_cell: true"           # otter's defaults
    nb.cells = [c for c in nb.cells if not c.source.startswith("# HIDDEN")]  # no hidden tests
    nb.cells[1].metadata["tags"] = []                                      # no parameters cell
    bad = tmp_path / "bad_lab.ipynb"
    nbformat.write(nb, str(bad))
    problems = "\n".join(g.lint_master(bad))
    assert "ok_format: false" in problems and "export_cell: false" in problems
    assert "parameters" in problems
    assert "q1: no hidden test" in problems and "q3: no hidden test" in problems
    with pytest.raises(g.GradingError, match="ok_format"):
        g.assign([bad], tmp_path / "out")


@pytest.mark.parametrize("master", REAL_LABS or [None], ids=[p.stem for p in REAL_LABS] or ["no-real-labs"])
def test_real_lab_masters_follow_the_course_format(master):
    if master is None:
        pytest.skip("no lab master with an assignment config under labs/ yet")
    assert g.lint_master(master) == [], f"{master.name} does not follow chapters/instructor_guide.md"


def test_assign_writes_student_and_autograder_versions(toy_lab):
    stu = nbformat.read(str(toy_lab.student_notebook), as_version=4)
    text = nbformat.writes(stu)
    assert "count_parameters(model)  # SOLUTION" not in text and "freeze_first_layer_solution" not in text
    assert "n_params = ..." in text and "acc = ..." in text
    assert "hidden_marker_q2" not in text and "test_q2_right_layer" not in text  # hidden tests stay out
    assert "test_q2_something_frozen" in text  # public tests travel in the metadata for grader.check
    assert not any(c.cell_type == "raw" for c in stu.cells)
    code = [c for c in stu.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the parameters cell must stay the first code cell"
    assert code[1].source.startswith("# Initialize Otter")
    assert by_question(stu, "otter_answer_cell").keys() == POINTS.keys()
    import zipfile
    with zipfile.ZipFile(toy_lab.autograder_zip) as zf:
        q2 = zf.read("tests/q2.py").decode()
    assert "hidden=True" in q2 and "test_q2_right_layer" in q2


def test_instructor_notebook_keeps_solutions_but_not_hidden_tests():
    nb = g.instructor_notebook(FIXTURE)
    text = "\n".join(c.source for c in nb.cells)
    assert "tlutils.freeze.count_parameters(model)" in text and "freeze_first_layer_solution" in text
    assert "# SOLUTION" not in text and "BEGIN SOLUTION" not in text
    assert "hidden_marker_q2" not in text and "test_q2_right_layer" not in text
    assert "test_q1_is_int" in text  # public tests remain, as plain functions
    assert not any(c.cell_type == "raw" for c in nb.cells)
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    nbformat.validate(nb)


def test_leak_scanner_sees_through_highlighted_html(tmp_path):
    """Positive control for hidden tests: an HTML rendering of the *master* must be flagged."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(FIXTURE), as_version=4))
    (tmp_path / "toy_lab.html").write_text(body)
    kinds = {lk.kind for lk in g.find_leaks(tmp_path, [FIXTURE])}
    assert kinds == {"solution", "hidden test"}
    snippets = g.leak_snippets(FIXTURE)
    assert any("freeze_first_layer_solution" in s for s in snippets["solution"])
    assert any("hidden_marker_q2" in s for s in snippets["hidden test"])
    assert not any("n_params" == s for s in snippets["solution"])  # the prompt `n_params = ...` is not a leak


def test_submission_naming(tmp_path):
    put(tmp_path, "alice", "toy_lab", text="{}")
    put(tmp_path, "bob", "other_lab", text="{}")
    (tmp_path / "stray.ipynb").write_text("{}")
    (tmp_path / "carol" / "deep").mkdir(parents=True)
    (tmp_path / "carol" / "deep" / "toy_lab.ipynb").write_text("{}")
    subs, warnings = g.discover_submissions(tmp_path)
    assert [(s.student, s.lab) for s in subs] == [("alice", "toy_lab"), ("bob", "other_lab")]
    assert len(warnings) == 2 and all("<student>/<lab>.ipynb" in w for w in warnings)


def test_flat_folder_of_one_lab(tmp_path):
    put(tmp_path, "alice", "toy_lab", text="{}")        # <student>/<lab>.ipynb still works
    (tmp_path / "bob.ipynb").write_text("{}")             # a learning-management system's export
    (tmp_path / "carol.ipynb").write_text("{}")
    put(tmp_path, "dave", "other_lab", text="{}")         # another lab: not this run's
    subs, warnings = g.discover_submissions(tmp_path, lab="toy_lab")
    assert [(s.student, s.lab) for s in subs] == [("alice", "toy_lab"), ("bob", "toy_lab"), ("carol", "toy_lab")]
    assert len(warnings) == 1 and "dave" in warnings[0] and "--lab toy_lab" in warnings[0]
    with pytest.raises(g.GradingError, match="no lab named 'nope'"):
        g.grade(tmp_path, tmp_path / "out", root=tmp_path, lab="nope", sandbox=False)


def test_summary_counts_full_marks_per_question():
    rows = [g.GradeRow("a", "lab", {"q1": 1.0, "q2": 0.5}, {"q1": 1.0, "q2": 2.0}),
            g.GradeRow("b", "lab", {"q1": 0.0, "q2": 2.0}, {"q1": 1.0, "q2": 2.0}),
            g.GradeRow("c", "lab", status="unknown lab")]
    assert g.question_summary(rows) == [
        {"lab": "lab", "question": "q1", "points": 1.0, "submissions": 2, "mean": 0.5, "full_marks": 1},
        {"lab": "lab", "question": "q2", "points": 2.0, "submissions": 2, "mean": 1.25, "full_marks": 1}]


def test_answers_cross_the_sandbox_as_plain_data_only(tmp_path):
    import math

    import torch
    from torch import nn

    from tlutils.grading import plaindata

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    env = {"model": model, "groups": [{"params": list(model[2].parameters()), "lr": 0.05}],
           "acc": {10: {"full": 0.5}}, "pair": (1, "a"), "blank": ..., "nan": math.nan, "x": torch.arange(3),
           "fn": lambda v: v, "dev": torch.device("cpu"), "dt": torch.float32}

    class Mine(nn.Module):
        pass
    env["mine"] = Mine()
    problems = plaindata.export_values(env, [*env, "missing"], tmp_path)
    assert set(problems) == {"fn", "mine", "missing"}
    assert "defined in the notebook" in problems["fn"] and "Mine" in problems["mine"]
    assert "not defined" in problems["missing"]
    got, problems = plaindata.load_values(tmp_path)
    m = got["model"]
    assert type(m) is nn.Sequential and not any(p.requires_grad for p in m[0].parameters())
    assert all(p.requires_grad for p in m[2].parameters())
    assert torch.equal(m(torch.ones(1, 4)), model(torch.ones(1, 4)))
    assert got["groups"][0]["params"][0] is m[2].weight  # shared tensors stay shared
    assert got["acc"] == {10: {"full": 0.5}} and got["pair"] == (1, "a") and got["blank"] is Ellipsis
    assert math.isnan(got["nan"]) and torch.equal(got["x"], torch.arange(3)) and got["dt"] is torch.float32
    # data that names anything but torch's, numpy's or tlutils' own classes is refused
    for ref in ("os:system", "builtins:eval", "tlutils.grading.runner:grade", "subprocess:Popen"):
        (tmp_path / "values.json").write_text(json.dumps({"values": {"v": {"__global__": ref},
                                                                     "o": {"__object__": ref, "key": "o0", "attrs": []}}}))
        got, problems = plaindata.load_values(tmp_path)
        assert got == {} and set(problems) == {"v", "o"}, ref


def test_tests_that_call_student_functions_are_marked(tmp_path):
    lab = g._load_lab(FIXTURE, tmp_path / "assign")
    assert lab.inkernel == {} and "freeze_first_layer" not in lab.names
    assert set(lab.names) == {"n_params", "frozen", "acc", "preds", "labels"}


@pytest.mark.parametrize("content", [b"", b"\x80\xff not text", b"[]", b"{}", b'{"cells": "nope"}',
                                     b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "nope"}',
                                     b"{" * 64])
def test_non_notebooks_score_zero_before_anything_runs(tmp_path, content):
    lab = g._Lab("toy_lab", b"", ["q1", "q2"], {"q1": 1.0, "q2": 2.0})
    path = tmp_path / "s" / "toy_lab.ipynb"
    path.parent.mkdir()
    path.write_bytes(content)
    row = g._run_one(g.Submission("s", "toy_lab", path), lab, 5, "ci", 1000, 1, False)
    assert (row.status, row.scores, row.max_total) == ("invalid", {"q1": 0.0, "q2": 0.0}, 3.0)
    assert "not a valid notebook" in row.notes[0]


def test_oversized_submissions_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "MAX_SUBMISSION_BYTES", 100)
    path = tmp_path / "s" / "toy_lab.ipynb"
    path.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n" * 50)]), str(path))
    row = g._run_one(g.Submission("s", "toy_lab", path), g._Lab("toy_lab", b"", ["q1"], {"q1": 1.0}),
                     5, "ci", 1000, 1, False)
    assert row.status == "invalid" and "limit" in row.notes[0]


def test_each_grading_run_gets_one_thread_count(tmp_path, monkeypatch):
    # torch reads MKL_NUM_THREADS before OMP_NUM_THREADS: a run with the second alone still used
    # every core and, beside another run, spun ten times slower
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert g._threads_per_run(2) == 4
    for value, threads in (("1", 1), ("16", 4), ("many", 4)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert g._threads_per_run(2) == threads, value
    seen = {}

    class Stop(Exception):
        pass

    def popen(cmd, env, **kw):
        seen.update(env)
        raise Stop

    monkeypatch.setattr(runner.subprocess, "Popen", popen)
    monkeypatch.setenv("MKL_NUM_THREADS", "8")
    path = tmp_path / "s" / "toy_lab.ipynb"
    path.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(path))
    with pytest.raises(Stop):
        g._run_one(g.Submission("s", "toy_lab", path), g._Lab("toy_lab", b"", ["q1"], {"q1": 1.0}),
                   5, "ci", 1000, 3, False)
    assert seen["OMP_NUM_THREADS"] == seen["MKL_NUM_THREADS"] == "3"


# --------------------------------------------------------------------------- grading a class (slow)

@pytest.fixture(scope="module")
def graded(toy_repo, toy_lab, tmp_path_factory):
    """ONE grading run over a class with good, partial and misbehaving submissions."""
    subs = tmp_path_factory.mktemp("submissions")
    out = toy_repo / "build" / "grades"
    lab = "toy_lab"
    put(subs, "alice", lab, nbformat.read(str(toy_lab.autograder_notebook), as_version=4))   # the solutions
    put(subs, "bob", lab, with_answers(toy_lab, {"q1", "q3"}))                              # partial
    put(subs, "carol", lab, with_answers(toy_lab, {"q1", "q3"}, {"q2": "raise RuntimeError('boom')"}))
    put(subs, "dave", lab, with_answers(toy_lab, {"q1"}, {"q2": "import time\nwhile True:\n    time.sleep(1)"}))  # endless (idle: the wall-time limit stops it)
    put(subs, "erin", lab, text='{"cells": [ not json')                                      # corrupt
    put(subs, "frank", lab, nbformat.read(str(toy_lab.student_notebook), as_version=4))    # untouched
    flood = "n_params = tlutils.freeze.count_parameters(model)\nimport os\nprint('x' * 3_000_000)\n" \
            "os.write(1, b'y' * 3_000_000)"
    put(subs, "grace", lab, with_answers(toy_lab, replace={"q1": flood}))                    # prints megabytes
    vandal = ("import glob, os\n"
              "try:\n"
              f"    for z in glob.glob({str(toy_repo / 'build' / 'assign')!r} + '/**/*.zip', recursive=True):\n"
              "        open(z, 'wb').write(b'junk')\n"
              f"    os.makedirs({str(out)!r}, exist_ok=True)\n"
              f"    open({str(out / 'grades.csv')!r}, 'w').write('pwned')\n"
              "except OSError as e:\n"
              "    print('refused', e)\n"
              "n_params = tlutils.freeze.count_parameters(model)")
    put(subs, "heidi", lab, with_answers(toy_lab, replace={"q1": vandal}))                   # attacks the grader
    rows = g.grade(subs, out, timeout=GRADING_TIMEOUT_S, workers=2, root=toy_repo, sandbox=SANDBOX)
    with (out / "grades.csv").open() as f:
        table = {r["student"]: r for r in csv.DictReader(f)}
    return {"rows": {r.student: r for r in rows}, "table": table, "out": out}


def scores(row: dict) -> tuple:
    return tuple(float(row[q]) for q in POINTS) + (float(row["total"]),)


@pytest.mark.notebook
def test_solutions_score_full_marks(graded):
    row = graded["table"]["alice"]
    assert scores(row) == (1, 2, 1, 4) and row["possible"] == "4"
    assert row["status"] == "graded" and row["notes"] == ""


@pytest.mark.notebook
def test_untouched_student_notebook_runs_to_the_end_and_scores_zero(graded):
    row = graded["table"]["frank"]
    assert scores(row) == (0, 0, 0, 0)
    assert row["status"] == "graded", row["notes"]  # not "graded with errors": no cell raised
    assert "raised" not in row["notes"] and "n_params should be an int" in row["notes"]


@pytest.mark.notebook
def test_partial_answers_score_exactly_their_points(graded):
    row = graded["table"]["bob"]
    assert scores(row) == (1, 0, 1, 2)
    assert "q2 0/2" in row["notes"]


@pytest.mark.notebook
def test_one_grading_run_survives_bad_submissions(graded, toy_repo):
    table, out = graded["table"], graded["out"]
    header = next(csv.reader((out / "grades.csv").open()))
    assert header == ["student", "lab", "q1", "q2", "q3", "total", "possible", "status", "mode", "seconds", "notes"]
    assert {r["mode"] for r in table.values()} == {"sandbox" if SANDBOX else "no sandbox"}
    assert sorted(table) == ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    expected = {  # student: (q1, q2, q3, total), status, a phrase of the notes
        "alice": ((1, 2, 1, 4), "graded", ""),
        "bob": ((1, 0, 1, 2), "graded", "q2 0/2"),
        "carol": ((1, 0, 1, 2), "graded with errors", "raised RuntimeError: boom"),
        "dave": ((0, 0, 0, 0), "timeout", f"{GRADING_TIMEOUT_S:g} s time limit"),
        "erin": ((0, 0, 0, 0), "invalid", "not a valid notebook"),
        "frank": ((0, 0, 0, 0), "graded", "q1 0/1"),
        "grace": ((1, 0, 0, 1), "graded", "console output capped"),
        "heidi": ((1, 0, 0, 1), "graded", "q2 0/2"),
    }
    for student, (pts, status, phrase) in expected.items():
        row = table[student]
        assert (scores(row), row["status"]) == (pts, status), (student, row)
        assert phrase in row["notes"], (student, row["notes"])
        result = json.loads((out / student / "toy_lab" / "results.json").read_text())
        assert "tests" in result
    assert "pwned" not in (out / "grades.csv").read_text()
    assert float(table["dave"]["seconds"]) < GRADING_TIMEOUT_S + 30
    assert (out / "grace" / "toy_lab" / "log.txt").stat().st_size <= g.DEFAULT_OUTPUT_CAP
    # Without a sandbox the vandal spoils the zip on disk; the next run notices and rebuilds it.
    lab = g._load_lab(toy_repo / "labs" / "toy_lab.ipynb", toy_repo / "build" / "assign")
    assert lab.points == POINTS
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [(s["question"], s["points"], s["submissions"]) for s in summary] == [("q1", "1", "8"), ("q2", "2", "8"),
                                                                                  ("q3", "1", "8")]
    full = {s["question"]: int(s["full_marks"]) for s in summary}
    assert full == {q: sum(float(r[q]) == POINTS[q] for r in table.values()) for q in POINTS}


@pytest.fixture(scope="module")
def real_labs_graded(tmp_path_factory) -> dict:
    """ONE grading run over the untouched student notebook of every real lab, work folders kept.

    Their solutions are not graded here, to keep this file fast: the harness (test_labs.py) runs
    every master with its test cells, so each solution passes its own public and hidden tests, and
    ``lint_master`` checks that each test function only uses its parameters, as the autograder needs
    (the feature-hierarchy lab's solution is graded in the sandbox by test_grading_hostile.py).
    """
    tmp = tmp_path_factory.mktemp("real_labs")
    labs = g.assign(REAL_LABS, tmp / "assign")
    subs = tmp / "submissions"
    for name, lab in labs.items():
        put(subs, "untouched", name, nbformat.read(str(lab.student_notebook), as_version=4))
    rows = g.grade(subs, tmp / "grades", masters=REAL_LABS, assign_dir=tmp / "assign", root=ROOT,
                   workers=2, sandbox=SANDBOX, keep_work=True)
    yield {r.lab: r for r in rows}
    for r in rows:
        if r.work is not None:
            shutil.rmtree(r.work, ignore_errors=True)


@pytest.mark.notebook
@pytest.mark.parametrize("master", REAL_LABS or [None], ids=[p.stem for p in REAL_LABS] or ["no-real-labs"])
def test_real_lab_student_version_runs_to_the_end_and_scores_zero(master, request):
    if master is None:
        pytest.skip("no lab master with an assignment config under labs/ yet")
    zero = request.getfixturevalue("real_labs_graded")[master.stem]
    assert zero.max_total > 0
    assert zero.status == "graded", f"the student notebook must run to the end without errors: {zero.notes}"
    assert zero.total == 0, (f"the untouched student notebook scores {zero.scores}: a test passes on the "
                             f"`...` scaffold, see chapters/instructor_guide.md ({zero.notes})")


def summary_output(nb: nbformat.NotebookNode) -> str:
    """What a lab's summary cell (``# NBVAL_CHECK_OUTPUT``: every number it recorded) printed."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


@pytest.mark.notebook
@pytest.mark.parametrize("master", REAL_LABS or [None], ids=[p.stem for p in REAL_LABS] or ["no-real-labs"])
def test_same_seed_same_numbers_in_two_independent_runs(master, request):
    """The harness's papermill run of the lab (seed 0, `ci`) and the grader's run of its student
    version in the sandbox (another process, another folder, the same seed and thread count)
    record the same numbers: the summary cells print the same text. (The summary cell is marked
    for nbval, so `pytest --nbval-lax tests/_artifacts/<lab>.ci.seed0.ipynb` checks a re-run by hand.)"""
    if master is None:
        pytest.skip("no lab master with an assignment config under labs/ yet")
    if os.environ.get("OMP_NUM_THREADS") != "1":
        pytest.skip("the grader runs each submission with one thread here; so must the harness (OMP_NUM_THREADS=1)")
    from notebooks import execute_once

    row = request.getfixturevalue("real_labs_graded")[master.stem]
    assert row.work is not None and (row.work / "collect" / "out" / "executed.ipynb").exists(), row.notes
    graded = nbformat.read(str(row.work / "collect" / "out" / "executed.ipynb"), as_version=4)
    harness = nbformat.read(str(execute_once(master, "ci", 0)[0]), as_version=4)
    first, second = summary_output(harness), summary_output(graded)
    assert first.count("\n") >= 5, f"{master.stem}'s summary cell printed almost nothing:\n{first}"
    if second != first:
        diff = difflib.unified_diff(first.splitlines(), second.splitlines(), "papermill", "grader", lineterm="", n=0)
        pytest.fail(f"{master.stem}: the same seed recorded other numbers in the second run:\n" + "\n".join(diff)[:3000])


# --------------------------------------------------------------------------- the book's editions (slow)

def build_book(src: Path, out: Path) -> Path:
    env = dict(os.environ, TLUTILS_PROFILE="ci")
    jb = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(jb), "build", str(src), "-W", "-n", "--keep-going", "--path-output", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / "_build" / "html"


@pytest.mark.book
def test_default_book_has_no_solutions_and_instructor_edition_does(toy_repo):
    student_src = g.stage_book("student", root=toy_repo)
    assert student_src == toy_repo / "_build" / "src" / "student"
    assert {p.name for p in student_src.iterdir()} == {"_config.yml", "_toc.yml", "intro.md", "labs"}
    html = build_book(student_src, toy_repo)  # `make book`: --path-output . -> _build/html
    assert html == toy_repo / "_build" / "html"
    page = g._file_text(html / "labs" / "toy_lab.html")  # the page's text, without highlighting markup
    assert 'grader.check("q2")' in page and "n_params = ..." in page and "Test case failed" in page
    assert g.find_leaks(html, root=toy_repo) == []

    instructor_src = g.stage_book("instructor", root=toy_repo)
    html_i = build_book(instructor_src, toy_repo / "_build" / "instructor")
    kinds = {lk.kind for lk in g.find_leaks(html_i, root=toy_repo)}
    assert kinds == {"solution"}, "the instructor edition shows solutions but never hidden tests"


@pytest.mark.book
def test_labs_executed_ahead_are_what_the_build_shows(toy_repo, tmp_path):
    """`execute-book` fills the cache the way the build would: the build then executes nothing."""
    src = g.stage_book("student", root=toy_repo, dest=toy_repo / "_build" / "src" / "ahead")
    cache = tmp_path / "_build" / ".jupyter_cache"
    assert set(g.execute_labs(src, cache)) == {"toy_lab"}
    assert g.execute_labs(src, cache) == {}, "a cached lab is not executed again"
    env = dict(os.environ, TLUTILS_PROFILE="ci")
    r = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "-W", "-n",
                        "--path-output", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Using cached notebook" in r.stdout and "Executing notebook" not in r.stdout, r.stdout[-3000:]


def test_instructor_edition_can_show_an_executed_copy(toy_repo, tmp_path):
    """The tests' instructor edition shows the harness's papermill run instead of executing the lab again."""
    executed = copy.deepcopy(nbformat.read(str(FIXTURE), as_version=4))
    code = [c for c in executed.cells if c.cell_type == "code"]
    code[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran once\n")]
    copy_path = tmp_path / "toy_lab.ci.seed0.ipynb"
    nbformat.write(executed, str(copy_path))
    src = g.stage_book("instructor", root=toy_repo, dest=toy_repo / "_build" / "src" / "shown", executed=[copy_path])
    staged = nbformat.read(str(src / "labs" / "toy_lab.ipynb"), as_version=4)
    assert staged.metadata["mystnb"] == {"execution_mode": "off"}
    assert any("ran once" in o.get("text", "") for c in staged.cells for o in c.get("outputs", []))
    assert not any("# HIDDEN" in c.source for c in staged.cells), "hidden tests never reach the instructor edition"
    with pytest.raises(g.GradingError, match="instructor edition"):
        g.stage_book("student", root=toy_repo, dest=toy_repo / "_build" / "src" / "nope", executed=[copy_path])
    with pytest.raises(g.GradingError, match="without a lab master: other"):
        g.stage_book("instructor", root=toy_repo, dest=toy_repo / "_build" / "src" / "nope",
                     executed=[copy_path, tmp_path / "other.ci.seed0.ipynb"])


# --------------------------------------------------------------------------- parallel = alone (slow)

@pytest.mark.notebook
def test_a_class_of_honest_submissions_with_two_workers_scores_as_alone(toy_lab, toy_repo, tmp_path):
    import itertools

    subsets = [set(c) for k in range(4) for c in itertools.combinations(POINTS, k)]  # 8 ways to answer
    subs = tmp_path / "class"
    expected = {}
    for i, solved in enumerate(subsets):   # every way to answer, once: each worker grades several
        put(subs, f"s{i:02d}", "toy_lab", with_answers(toy_lab, solved))
        expected[f"s{i:02d}"] = {q: (POINTS[q] if q in solved else 0.0) for q in POINTS}
    together = g.grade(subs, tmp_path / "together", workers=2, root=toy_repo, sandbox=SANDBOX, verbose=False)
    assert {r.student: r.scores for r in together} == expected
    assert all(r.status == "graded" for r in together), [r.notes for r in together if r.status != "graded"]
    alone_dir = tmp_path / "alone"
    for student in ("s03", "s07"):  # a few, one by one (s07 answered everything)
        shutil.copytree(subs / student, alone_dir / student)
        (row,) = g.grade(alone_dir, tmp_path / f"alone-{student}", workers=1, root=toy_repo, sandbox=SANDBOX,
                         verbose=False)
        assert row.scores == expected[student]
        shutil.rmtree(alone_dir / student)


@pytest.mark.notebook
def test_a_test_that_calls_the_students_function_runs_inside_and_says_so(tmp_path):
    nb = nbformat.read(str(FIXTURE), as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "def test_q2_right_layer" in c.source)
    nb.cells[i].source = ("# HIDDEN\ndef test_q2_calls(freeze_first_layer, model):\n    import copy\n"
                          "    m = freeze_first_layer(copy.deepcopy(model))\n"
                          "    assert not any(p.requires_grad for p in m[0].parameters()), 'the first layer still learns'\n"
                          "test_q2_calls(freeze_first_layer, model)")
    root = tmp_path / "repo"
    (root / "labs").mkdir(parents=True)
    nbformat.write(nb, str(root / "labs" / "toy_lab.ipynb"))
    lab = g.assign(root=root)["toy_lab"]
    assert g._load_lab(root / "labs" / "toy_lab.ipynb", root / "build" / "assign").inkernel == {"q2": ["freeze_first_layer"]}
    put(tmp_path / "subs", "alice", "toy_lab", nbformat.read(str(lab.autograder_notebook), as_version=4))
    put(tmp_path / "subs", "bob", "toy_lab", with_answers(lab, {"q1", "q3"}))
    rows = {r.student: r for r in g.grade(tmp_path / "subs", tmp_path / "out", root=root, sandbox=SANDBOX,
                                          timeout=GRADING_TIMEOUT_S, verbose=False)}
    assert rows["alice"].scores == POINTS and rows["bob"].scores == {"q1": 1.0, "q2": 0.0, "q3": 1.0}
    for row in rows.values():
        assert "q2: checked inside the submission (its test calls the student's freeze_first_layer)" in "; ".join(row.notes)
