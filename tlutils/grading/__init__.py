"""Graded exercises with otter-grader: assignments, the book's two editions, grading, leak checks.

A *lab master* is a notebook under ``labs/`` whose first cell is otter-grader's raw
``# ASSIGNMENT CONFIG`` cell; its questions, solutions and public/hidden tests use otter-grader 7's
notebook format (the rules for lab authors are in ``chapters/instructor_guide.md``).

Command line (run from the repository root; the Makefile wraps the first three)::

    python -m tlutils.grading assign [LAB.ipynb ...]       # -> build/assign/<lab>/{student,autograder}/
    python -m tlutils.grading stage-book [--edition student|instructor] [--dest DIR]
    python -m tlutils.grading grade SUBMISSIONS [--out DIR] [--timeout S] [--workers N] [--lab NAME] [--no-sandbox]
    python -m tlutils.grading check-leaks HTML_DIR         # solution or hidden-test text in a built site?
    python -m tlutils.grading lint [LAB.ipynb ...]         # does a master follow the course format?

Submissions are named ``SUBMISSIONS/<student>/<lab>.ipynb`` (or ``SUBMISSIONS/<student>.ipynb`` with
``--lab NAME``). Each one runs in a bubblewrap sandbox of its own (:mod:`.sandbox`): its notebook
executes and its answers are exported as plain data (:mod:`.collect`, :mod:`.plaindata`); a fresh
process runs the lab's tests on that data (:mod:`.check`), so hidden tests never enter the
submission's process (see the instructor guide for what this protects and what it does not).

Modules, one job each: :mod:`.masters` (reading and linting masters), :mod:`.assign` (otter assign,
student and instructor notebooks), :mod:`.book` (the book's editions), :mod:`.leaks` (leak checks),
:mod:`.runner` (running and scoring submissions, with :mod:`.sandbox`, :mod:`.collect`,
:mod:`.plaindata` and :mod:`.check`) and :mod:`.cli` (the command line).
"""
from .assign import AssignedLab, assign, instructor_notebook, student_notebook
from .book import EDITIONS, STUDENT_LABS, execute_labs, stage_book, stale_student_notebooks, student_notebook_bytes, write_student_notebooks
from .cli import main
from .leaks import Leak, _file_text, find_leaks, leak_snippets
from .masters import GradingError, Master, Question, assignment_masters, is_assignment_master, lint_master, read_master
from .runner import (DEFAULT_OUTPUT_CAP, DEFAULT_TIMEOUT_S, DEFAULT_WORKERS, GradeRow, Submission, _Lab, _load_lab,
                     _run_one, _threads_per_run, discover_submissions, grade, question_summary,
                     write_grades_csv)
from .sandbox import Limits, sandbox_problem

__all__ = [
    "Question", "Master", "AssignedLab", "Leak", "Submission", "GradeRow", "GradingError",
    "is_assignment_master", "assignment_masters", "read_master", "lint_master",
    "assign", "student_notebook", "instructor_notebook", "stage_book", "execute_labs", "student_notebook_bytes", "write_student_notebooks", "stale_student_notebooks",
    "leak_snippets", "find_leaks", "discover_submissions", "grade", "write_grades_csv", "main",
    "question_summary", "Limits", "sandbox_problem",
]
