"""The command line: ``python -m tlutils.grading {assign,stage-book,execute-book,grade,check-leaks,lint,student-notebooks}``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .assign import assign
from .book import EDITIONS, execute_labs, stage_book, stale_student_notebooks, write_student_notebooks
from .leaks import find_leaks
from .masters import GradingError, _default_root, assignment_masters, lint_master
from .runner import DEFAULT_TIMEOUT_S, DEFAULT_WORKERS, grade
from .sandbox import Limits

_DESCRIPTION = "Graded exercises with otter-grader: assignments, the book's two editions, grading, leak checks."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlutils.grading {assign,stage-book,execute-book,grade,check-leaks,lint,student-notebooks}``."""
    ap = argparse.ArgumentParser(prog="python -m tlutils.grading", description=_DESCRIPTION)
    ap.add_argument("--root", type=Path, default=None, help="the repository root (default: the current folder)")
    sp = ap.add_subparsers(dest="cmd", required=True)
    a = sp.add_parser("assign", help="student notebooks and autograder zips into build/assign/<lab>/")
    a.add_argument("labs", nargs="*", type=Path, help="lab masters (default: every one under labs/)")
    a.add_argument("--out", type=Path, default=None, help="output folder (default build/assign)")
    s = sp.add_parser("stage-book", help="copy the book sources with student (or instructor) labs")
    s.add_argument("--edition", choices=EDITIONS, default="student")
    s.add_argument("--dest", type=Path, default=None, help="default _build/src/<edition>")
    s.add_argument("--executed", type=Path, nargs="*", default=(),
                   help="instructor edition: executed copies of lab masters (<lab>[.x].ipynb), built without re-running")
    x = sp.add_parser("execute-book", help="execute a staged book's labs two at a time into its jupyter cache")
    x.add_argument("src", type=Path, help="the staged sources (e.g. _build/src/student)")
    x.add_argument("--cache", type=Path, required=True, help="the book's jupyter cache (e.g. _build/.jupyter_cache)")
    x.add_argument("--workers", type=int, default=2)
    g = sp.add_parser("grade", help="grade SUBMISSIONS/<student>/<lab>.ipynb (or, with --lab, SUBMISSIONS/<student>.ipynb) "
                                    "into grades.csv, each in a sandbox")
    g.add_argument("submissions", type=Path)
    g.add_argument("--out", type=Path, default=None, help="default build/grades")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per submission (default 600)")
    g.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="parallel submissions (default 2)")
    g.add_argument("--profile", choices=("ci", "full"), default="ci", help="TLUTILS_PROFILE for the runs")
    g.add_argument("--keep-work", action="store_true",
                   help="keep each submission's work folder (the notebook as it ran: collect/out/executed.ipynb)")
    g.add_argument("--lab", default=None, help="grade this lab only; SUBMISSIONS may then be a flat folder of <student>.ipynb")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run student code without a sandbox, with your rights (only where none can be had)")
    g.add_argument("--memory-gb", type=float, default=Limits.memory_gb, help="memory of each sandboxed process (default 4)")
    g.add_argument("--processes", type=int, default=Limits.processes,
                   help="processes and threads of one submission (default 256)")
    c = sp.add_parser("check-leaks", help="fail if a built site shows solution or hidden-test text")
    c.add_argument("html_dir", type=Path)
    li = sp.add_parser("lint", help="check that lab masters follow the course's exercise format")
    li.add_argument("labs", nargs="*", type=Path)
    sn = sp.add_parser("student-notebooks", help="write student/labs/<lab>.ipynb from the masters (launch buttons open them)")
    sn.add_argument("--check", action="store_true", help="only report notebooks out of date with their masters")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "assign":
            done = assign(args.labs or None, args.out, root=args.root)
            for lab in done.values():
                print(f"{lab.name}: {lab.student_notebook}  {lab.autograder_zip}")
            if not done:
                print("no lab masters with an assignment config under labs/")
        elif args.cmd == "stage-book":
            print(stage_book(args.edition, root=args.root, dest=args.dest, executed=args.executed))
        elif args.cmd == "execute-book":
            for lab, seconds in execute_labs(args.src, args.cache, workers=args.workers).items():
                print(f"{lab}: executed in {seconds:.0f} s")
        elif args.cmd == "grade":
            out = args.out if args.out is not None else _default_root(args.root) / "build" / "grades"
            limits = Limits(memory_gb=args.memory_gb, processes=args.processes, cpu_s=max(args.timeout * 2, 60))
            rows = grade(args.submissions, out, timeout=args.timeout, workers=args.workers, profile=args.profile,
                         root=args.root, keep_work=args.keep_work, sandbox=not args.no_sandbox, limits=limits,
                         lab=args.lab)
            print(f"{len(rows)} submissions graded ({'no sandbox' if args.no_sandbox else 'each in a sandbox'}): "
                  f"{out / 'grades.csv'}, per question: {out / 'summary.csv'}")
        elif args.cmd == "check-leaks":
            leaks = find_leaks(args.html_dir, root=args.root)
            for lk in leaks:
                print(f"LEAK {lk.lab} {lk.kind}: {lk.snippet!r} in {lk.file}")
            if leaks:
                return 1
            print(f"no solution or hidden-test text in {args.html_dir}")
        elif args.cmd == "lint":
            bad = 0
            for m in args.labs or assignment_masters(_default_root(args.root) / "labs"):
                problems = lint_master(m)
                bad += bool(problems)
                print(f"{m}: " + ("ok" if not problems else "\n  " + "\n  ".join(problems)))
            return 1 if bad else 0
        elif args.cmd == "student-notebooks":
            if args.check:
                stale = stale_student_notebooks(args.root)
                print("\n".join(stale) or "student notebooks are up to date")
                return 1 if stale else 0
            for p in write_student_notebooks(args.root):
                print(p)
    except GradingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
