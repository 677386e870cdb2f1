"""Graded exercises with otter-grader: assignments, the book's two editions, grading, leak checks.

A *lab master* is a notebook under ``labs/`` whose first cell is otter-grader's raw
``# ASSIGNMENT CONFIG`` cell; its questions, solutions and public/hidden tests use otter-grader 7's
notebook format (the rules for lab authors are in ``chapters/instructor_guide.md``).

Command line (run from the repository root; the Makefile wraps the first three)::

    python -m tlutils.grading assign [LAB.ipynb ...]       # -> build/assign/<lab>/{student,autograder}/
    python -m tlutils.grading stage-book [--edition student|instructor] [--dest DIR]
    python -m tlutils.grading grade SUBMISSIONS [--out DIR] [--timeout S] [--workers N]
    python -m tlutils.grading check-leaks HTML_DIR         # solution or hidden-test text in a built site?
    python -m tlutils.grading lint [LAB.ipynb ...]         # does a master follow the course format?
    python -m tlutils.grading student-notebooks [--check]  # student/labs/<lab>.ipynb (Colab opens them)

Submissions are named ``SUBMISSIONS/<student>/<lab>.ipynb``. Each one is graded by otter-grader's
``otter run`` (its Python entry point, in a child process) in its own temporary directory with its
own copy of the autograder zip, a time limit and a cap on captured output. Student code is *not*
sandboxed: it runs with the grader's user rights (see the instructor guide).
"""
from __future__ import annotations

import argparse
import ast
import copy
import csv
import hashlib
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat
import yaml

__all__ = [
    "Question", "Master", "AssignedLab", "Leak", "Submission", "GradeRow",
    "is_assignment_master", "assignment_masters", "read_master", "lint_master",
    "assign", "student_notebook", "instructor_notebook", "stage_book",
    "student_notebook_bytes", "write_student_notebooks", "stale_student_notebooks",
    "leak_snippets", "find_leaks", "discover_submissions", "grade", "write_grades_csv", "main",
]

EDITIONS = ("student", "instructor")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_WORKERS = 2
DEFAULT_OUTPUT_CAP = 1_000_000          # bytes of a submission's console output kept in log.txt
MAX_SUBMISSION_BYTES = 50_000_000       # larger files are rejected before running anything
MAX_RESULT_BYTES = 5_000_000            # a results.json larger than this is treated as tampered
TAG_VAR = "TLUTILS_GRADING_TAG"          # marks every process of one grading run, to kill leftovers

# Book sources staged besides what _toc.yml and _config.yml name (missing ones are skipped).
BOOK_SOURCES = ("_config.yml", "_toc.yml", "intro.md", "references.bib", "chapters", "labs", "_ext",
                "_static", "images", "figures", "assets")
_SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".jupyter_cache", "_build", ".OTTER_LOG"}
_STAGE_SKIP_FILES = {".OTTER_LOG"}
_BUILD_DIRS = ("_build", "_build_ci", "build")


# --------------------------------------------------------------------------- reading masters

@dataclass
class Question:
    """One otter question of a master: its name, points and the indices of its cells."""

    name: str
    points: Any = None
    prompt_cells: list[int] = field(default_factory=list)
    solution_cells: list[int] = field(default_factory=list)
    public_tests: list[int] = field(default_factory=list)
    hidden_tests: list[int] = field(default_factory=list)


@dataclass
class Master:
    """A parsed lab master. ``cells`` are the notebook's cells after otter's fenced-cell extraction."""

    path: Path
    nb: nbformat.NotebookNode
    cells: list
    config: dict
    config_cell: int | None
    marker_cells: list[int]
    questions: list[Question]

    @property
    def name(self) -> str:
        return self.path.stem


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_assignment_master(path: Path) -> bool:
    """True if the notebook at ``path`` has otter's ``# ASSIGNMENT CONFIG`` cell."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:
        return False
    pattern = re.compile(r"(```otter\s*\n)?\s*#\s+assignment\s+config", re.IGNORECASE)
    return any(c.cell_type in ("raw", "markdown") and pattern.match(_source(c).lstrip()) for c in nb.cells)


def assignment_masters(labs_dir: Path | str = "labs") -> list[Path]:
    """Every lab master under ``labs_dir`` (notebooks without an assignment config are skipped)."""
    labs_dir = Path(labs_dir)
    if not labs_dir.is_dir():
        return []
    nbs = sorted(p for p in labs_dir.rglob("*.ipynb") if not _SKIP_DIRS.intersection(p.parts))
    return [p for p in nbs if is_assignment_master(p)]


def _hidden_test(source: str) -> bool:
    """Otter's rule: a first-line comment with the word *hidden*, or ``hidden:`` in a test config."""
    from otter.assign.tests_manager import BEGIN_TEST_CONFIG_REGEX, END_TEST_CONFIG_REGEX

    lines = source.split("\n")
    hidden = bool(lines and lines[0].lstrip().startswith("#")
                  and re.search(r"\bhidden\b", lines[0], flags=re.IGNORECASE))
    if lines and re.match(BEGIN_TEST_CONFIG_REGEX, lines[0], flags=re.IGNORECASE):
        end = next((i for i, line in enumerate(lines) if re.match(END_TEST_CONFIG_REGEX, line, flags=re.IGNORECASE)),
                   len(lines))
        config = yaml.safe_load("\n".join(lines[1:end])) or {}
        hidden = bool(config.get("hidden", hidden)) if isinstance(config, dict) else hidden
    return bool(hidden)


def read_master(path: Path | str) -> Master:
    """Parse a lab master's otter blocks (config, questions, prompts, solutions, tests)."""
    from otter.assign.blocks import (BlockType, extract_all_fenced_otter_cells, get_cell_config,
                                     is_assignment_config_cell, is_block_boundary_cell)

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    cells = extract_all_fenced_otter_cells(nb.cells)
    config: dict = {}
    config_cell = None
    markers: list[int] = []
    questions: list[Question] = []
    stack: list = []
    for i, cell in enumerate(cells):
        if is_assignment_config_cell(cell):
            loaded = get_cell_config(cell)
            config = loaded if isinstance(loaded, dict) else {}
            config_cell = i
            continue
        if stack and is_block_boundary_cell(cell, stack[-1], end=True):
            stack.pop()
            markers.append(i)
            continue
        begin = next((b for b in BlockType if is_block_boundary_cell(cell, b)), None)
        if begin is not None:
            if begin is BlockType.QUESTION:
                if stack:
                    raise ValueError(f"{path.name}: cell {i}: a question begins inside another block")
                qconf = get_cell_config(cell)
                if not isinstance(qconf, dict) or "name" not in qconf:
                    raise ValueError(f"{path.name}: cell {i}: a question needs a `name:` in its BEGIN QUESTION cell")
                questions.append(Question(str(qconf["name"]), qconf.get("points")))
            elif not stack:
                raise ValueError(f"{path.name}: cell {i}: BEGIN {begin.value.upper()} outside a question")
            stack.append(begin)
            markers.append(i)
            continue
        if any(is_block_boundary_cell(cell, b, end=True) for b in BlockType):
            raise ValueError(f"{path.name}: cell {i}: an END cell without its BEGIN")
        if not stack:
            continue
        q, block = questions[-1], stack[-1]
        if block is BlockType.TESTS:
            (q.hidden_tests if _hidden_test(_source(cell)) else q.public_tests).append(i)
        elif block is BlockType.SOLUTION:
            q.solution_cells.append(i)
        elif block is BlockType.PROMPT:
            q.prompt_cells.append(i)
    if stack:
        raise ValueError(f"{path.name}: a {stack[-1].value} block is never ended")
    return Master(path, nb, cells, config, config_cell, markers, questions)


def _config_problems(config: dict) -> list[str]:
    """Settings the course relies on (the book executes the student notebook; tests live in metadata)."""
    problems = []
    tests = config.get("tests") if isinstance(config.get("tests"), dict) else {}
    if tests.get("ok_format", True) is not False:
        problems.append("assignment config: set `tests: {ok_format: false}` (exception-based tests: masters "
                        "are stored without outputs, which OK-format tests would need)")
    if tests.get("files", False):
        problems.append("assignment config: keep `tests: {files: false}` (public tests travel in the "
                        "student notebook's metadata, so the book needs no extra files)")
    if config.get("export_cell", True) is not False:
        problems.append("assignment config: set `export_cell: false` (students hand in the .ipynb itself; "
                        "an export cell would run in the book build)")
    if config.get("init_cell", True) is False:
        problems.append("assignment config: keep `init_cell: true` (grader.check needs it)")
    return problems


def lint_master(path: Path | str) -> list[str]:
    """Problems that keep a master from following the course's exercise format (empty: none)."""
    try:
        m = read_master(path)
    except Exception as e:  # malformed blocks
        return [f"cannot parse the otter blocks: {e}"]
    problems = _config_problems(m.config) if m.config_cell is not None else ["no `# ASSIGNMENT CONFIG` raw cell"]
    if m.config_cell not in (None, 0):
        problems.append("the `# ASSIGNMENT CONFIG` raw cell should be the first cell")
    code = [(i, c) for i, c in enumerate(m.cells) if c.cell_type == "code"]
    if code and "google.colab" in _source(code[0][1]):
        code = code[1:]  # the Colab install cell may come first: it does nothing outside Colab
    if not code or "parameters" not in code[0][1].get("metadata", {}).get("tags", []):
        problems.append("the first code cell (after the Colab install cell) must be the "
                        "`parameters`-tagged cell (profile, seed)")
    elif "TLUTILS_PROFILE" not in _source(code[0][1]):
        problems.append("the parameters cell should read `profile = os.environ.get(\"TLUTILS_PROFILE\", \"full\")`")
    if not m.questions:
        problems.append("no graded questions (# BEGIN QUESTION ... # END QUESTION)")
    names = [q.name for q in m.questions]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"question name {dup!r} is used twice")
    for q in m.questions:
        if q.points is None:
            problems.append(f"{q.name}: give the question `points:`")
        if not q.solution_cells:
            problems.append(f"{q.name}: no solution block")
        if not q.public_tests:
            problems.append(f"{q.name}: no public test (students get no feedback from grader.check)")
        if not q.hidden_tests:
            problems.append(f"{q.name}: no hidden test (# HIDDEN on a test cell's first line)")
        for i in q.public_tests + q.hidden_tests:
            if m.cells[i].cell_type != "code":
                problems.append(f"{q.name}: cell {i} in a tests block is not a code cell")
            else:
                problems.extend(f"{q.name}: {p}" for p in _test_cell_problems(_source(m.cells[i])))
    return problems


def _test_cell_problems(source: str) -> list[str]:
    """A test cell must be one function (then, optionally, its call) that uses no notebook globals:
    the autograder keeps only the function and passes it the globals named by its parameters."""
    import builtins
    import symtable

    try:
        body = ast.parse(source).body
    except SyntaxError as e:
        return [f"a test cell does not parse: {e}"]
    if not body or not isinstance(body[0], ast.FunctionDef) or len(body) > 2:
        return ["a test cell must hold one test function followed by its call"]
    fn = body[0]
    table = symtable.symtable(ast.unparse(fn), "<test>", "exec")
    used: set[str] = set()
    todo = list(table.get_children())
    while todo:
        t = todo.pop()
        used.update(sym.get_name() for sym in t.get_symbols() if sym.is_referenced() and sym.is_global())
        todo.extend(t.get_children())
    free = sorted(used - set(dir(builtins)))
    if free:
        return [f"test `{fn.name}` uses {', '.join(free)} from the notebook: take them as parameters "
                "or import them inside the function"]
    return []


# --------------------------------------------------------------------------- assign

@dataclass
class AssignedLab:
    """What ``otter assign`` produced for one lab."""

    name: str
    student_notebook: Path
    autograder_notebook: Path
    autograder_zip: Path


class GradingError(RuntimeError):
    """A lab master or a folder cannot be processed (the message says why)."""


def _default_root(root: Path | str | None) -> Path:
    return Path(root).resolve() if root is not None else Path.cwd().resolve()


def _tidy_otter_output(nb_path: Path, master_ids: set[str]) -> None:
    """Keep the course contract (the first code cell is the ``parameters`` cell) in otter's output,
    where otter puts its ``grader = otter.Notebook(...)`` cell first: move that cell right after
    ``parameters``. Also give otter's new cells stable ids, so re-staging the book changes nothing."""
    nb = nbformat.read(str(nb_path), as_version=4)
    init = next((i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and _source(c).startswith("# Initialize Otter")), None)
    params = next((i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if init is not None and params is not None and init < params:
        cell = nb.cells.pop(init)
        nb.cells.insert(params, cell)  # params shifted left by one: this lands just after it
    _colab_installs_grading(nb)
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        if "id" in cell and (cell["id"] not in master_ids or cell["id"] in seen):
            cell["id"] = "otter-" + hashlib.sha1(f"{i}:{_source(cell)}".encode()).hexdigest()[:8]
        seen.add(cell.get("id", ""))
    nbformat.write(nb, str(nb_path))


def _otter_assign(master: Path, dest: Path) -> AssignedLab:
    problems = _config_problems(read_master(master).config)
    if problems:
        raise GradingError(f"{master}: " + "; ".join(problems))
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # --no-run-tests: otter would execute the whole lab; the test harness already executes masters
    # (their test cells included), so the solutions are checked there.
    cmd = [sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs", str(master), str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise GradingError(f"otter assign failed for {master}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    student, auto = dest / "student" / master.name, dest / "autograder" / master.name
    master_ids = {c.get("id", "") for c in nbformat.read(str(master), as_version=4).cells}
    for nb_path in (student, auto):
        _tidy_otter_output(nb_path, master_ids)
    zips = sorted((dest / "autograder").glob("*-autograder_*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise GradingError(f"otter assign wrote no autograder zip for {master}")
    return AssignedLab(master.stem, student, auto, zips[-1])


def assign(masters: Sequence[Path | str] | None = None, out_dir: Path | str | None = None,
           root: Path | str | None = None) -> dict[str, AssignedLab]:
    """Run ``otter assign`` on every lab master into ``out_dir/<lab>/`` (default ``build/assign``).

    Each lab gets ``student/<lab>.ipynb`` (no solutions, public tests only) and
    ``autograder/`` with the solutions notebook and ``<lab>-autograder_<time>.zip``.
    """
    root = _default_root(root)
    masters = [Path(m) for m in masters] if masters else assignment_masters(root / "labs")
    out_dir = Path(out_dir) if out_dir is not None else root / "build" / "assign"
    return {m.stem: _otter_assign(m.resolve(), out_dir / m.stem) for m in masters}


def student_notebook(master: Path | str) -> nbformat.NotebookNode:
    """The otter *student* version of ``master`` (solutions replaced by ``...``, no hidden tests)."""
    with tempfile.TemporaryDirectory(prefix="tlutils-assign-") as tmp:
        lab = _otter_assign(Path(master).resolve(), Path(tmp) / "out")
        return nbformat.read(str(lab.student_notebook), as_version=4)


_BEGIN_SOLUTION = re.compile(r"\s*#\s*BEGIN SOLUTION( NO PROMPT)?\s*$")
_SOLUTION_SUFFIX = re.compile(r"\s*# ?SOLUTION( NO PROMPT)?\s*$")


def _instructor_lines(source: str) -> list[str]:
    """Solution code as the instructor sees it: otter's line markers and student prompts removed."""
    from otter.assign.solutions import remove_ignored_lines

    out, in_prompt = [], False
    for line in remove_ignored_lines(source.split("\n")):
        s = line.rstrip()
        if s.endswith("# BEGIN PROMPT"):
            in_prompt = True
            continue
        if s.endswith("# END PROMPT"):
            in_prompt = False
            continue
        if in_prompt or _BEGIN_SOLUTION.match(line) or s.endswith("# END SOLUTION"):
            continue
        line = _SOLUTION_SUFFIX.sub("", line)
        line = re.sub(r"\s*# SEED\s*$", "", line)
        out.append(line)
    return out


def instructor_notebook(master: Path | str) -> nbformat.NotebookNode:
    """``master`` with solutions but without otter's marker cells, hidden tests and student prompts.

    Public test cells stay (they run as plain functions); cell tags and metadata are kept.
    """
    m = read_master(master)
    drop = set(m.marker_cells)
    if m.config_cell is not None:
        drop.add(m.config_cell)
    for q in m.questions:
        drop.update(q.hidden_tests)
        drop.update(q.prompt_cells)
    nb = copy.deepcopy(m.nb)
    cells = []
    for i, cell in enumerate(copy.deepcopy(m.cells)):
        if i in drop:
            continue
        if cell.cell_type == "code":
            cell["source"] = "\n".join(_instructor_lines(_source(cell)))
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(nbformat.from_dict(cell))
    nb.cells = cells
    for i, cell in enumerate(nb.cells):  # fenced-cell extraction can create cells without ids
        if nb.nbformat_minor >= 5 and "id" not in cell:
            cell["id"] = f"tl-{i}"
    return nb


# --------------------------------------------------------------------------- staging the book

def _toc_files(toc: Any) -> list[str]:
    """Every ``file``/``root`` entry of a Jupyter Book ``_toc.yml`` (extension-less), recursively."""
    found: list[str] = []
    if isinstance(toc, dict):
        for key in ("root", "file"):
            if isinstance(toc.get(key), str):
                found.append(toc[key])
        for value in toc.values():
            if isinstance(value, (dict, list)):
                found.extend(_toc_files(value))
    elif isinstance(toc, list):
        for item in toc:
            found.extend(_toc_files(item))
    return found


def _book_inputs(root: Path) -> list[Path]:
    """Paths (relative to ``root``) the book needs: fixed sources, toc entries, config-named files."""
    rel: set[Path] = {Path(p) for p in BOOK_SOURCES if (root / p).exists()}
    toc_path = root / "_toc.yml"
    if toc_path.exists():
        for entry in _toc_files(yaml.safe_load(toc_path.read_text()) or {}):
            cands = [root / entry] + [root / f"{entry}{ext}" for ext in (".md", ".ipynb", ".rst")]
            rel.update(c.relative_to(root) for c in cands if c.is_file())
    cfg_path = root / "_config.yml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        named = list(cfg.get("bibtex_bibfiles") or []) + [cfg.get("logo"), (cfg.get("html") or {}).get("favicon")]
        rel.update(Path(p) for p in named if isinstance(p, str) and p and (root / p).exists())
    return sorted(rel)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write only when the content differs, so Sphinx's incremental build sees unchanged mtimes."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def stage_book(edition: str = "student", root: Path | str | None = None,
               dest: Path | str | None = None) -> Path:
    """Copy the book sources into ``dest`` (default ``_build/src/<edition>``) with every lab master
    replaced by its otter student notebook (``student``) or its instructor version (``instructor``).

    Returns ``dest``; build it with ``jupyter-book build DEST --path-output OUT`` (site in ``OUT/_build/html``).
    """
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    root = _default_root(root)
    dest = Path(dest) if dest is not None else root / "_build" / "src" / edition
    dest = dest.resolve()
    inside = root in dest.parents
    if dest == root or dest in root.parents or (inside and dest.relative_to(root).parts[0] not in _BUILD_DIRS):
        raise GradingError(f"refusing to stage into {dest}: use a folder under _build/ (it is overwritten)")
    masters = {p.resolve() for p in assignment_masters(root / "labs")}
    wanted: dict[Path, bytes] = {}
    for rel in _book_inputs(root):
        src = root / rel
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            r = f.relative_to(root)
            if _SKIP_DIRS.intersection(r.parts) or f.name in _STAGE_SKIP_FILES:
                continue
            if f.resolve() in masters:
                nb = student_notebook(f) if edition == "student" else instructor_notebook(f)
                wanted[r] = nbformat.writes(nb).encode() + b"\n"
            else:
                wanted[r] = f.read_bytes()
    dest.mkdir(parents=True, exist_ok=True)
    for r, data in wanted.items():
        _write_if_changed(dest / r, data)
    for f in sorted(dest.rglob("*"), reverse=True):  # drop what is no longer a source
        r = f.relative_to(dest)
        if f.is_file() and r not in wanted:
            f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()
    return dest


# --------------------------------------------------------------------------- committed student notebooks

STUDENT_LABS = Path("student") / "labs"
"""Where the generated student notebooks are committed: the website's launch buttons open them
(``_config.yml``'s ``repository.path_to_book`` is ``student``, so ``labs/x`` becomes ``student/labs/x.ipynb``)."""


_COLAB_SPEC = re.compile(r'"(git\+https://[^"@]+@[^"]+)"')


def _colab_installs_grading(nb: nbformat.NotebookNode) -> None:
    """A student notebook runs ``import otter``: its Colab cell installs ``tlutils[grading]``
    (otter-grader) from the repository instead of plain ``tlutils``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "google.colab" in _source(cell):
            cell["source"] = _COLAB_SPEC.sub(r'"tlutils[grading] @ \1"', _source(cell), count=1)
            return


def student_notebook_bytes(master: Path | str) -> bytes:
    """The student notebook of ``master`` exactly as it is committed (and staged for the book)."""
    return nbformat.writes(student_notebook(master)).encode() + b"\n"


def write_student_notebooks(root: Path | str | None = None) -> list[Path]:
    """(Re)write ``student/labs/<lab>.ipynb`` for every lab master and delete the ones without a master."""
    root = _default_root(root)
    dest = root / STUDENT_LABS
    dest.mkdir(parents=True, exist_ok=True)
    masters = assignment_masters(root / "labs")
    written = []
    for m in masters:
        _write_if_changed(dest / m.name, student_notebook_bytes(m))
        written.append(dest / m.name)
    for old in sorted(set(dest.glob("*.ipynb")) - set(written)):
        old.unlink()
    return written


def stale_student_notebooks(root: Path | str | None = None) -> list[str]:
    """Why the committed student notebooks differ from their masters (empty: they are up to date)."""
    root = _default_root(root)
    dest = root / STUDENT_LABS
    masters = assignment_masters(root / "labs")
    problems = [f"{m.stem}: {STUDENT_LABS / m.name} is missing" if not (dest / m.name).is_file() else
                f"{m.stem}: {STUDENT_LABS / m.name} is out of date with labs/{m.name}"
                for m in masters if not (dest / m.name).is_file()
                or (dest / m.name).read_bytes() != student_notebook_bytes(m)]
    problems += [f"{p.stem}: {STUDENT_LABS / p.name} has no master in labs/"
                 for p in sorted(dest.glob("*.ipynb")) if p.stem not in {m.stem for m in masters}]
    return problems


# --------------------------------------------------------------------------- leak checks

def _tokens(text: str) -> str:
    """Words only, single-spaced: robust to syntax highlighting, Markdown rendering and quoting."""
    return " ".join(re.findall(r"\w+", text))


def _contains(haystack: str, snippet: str) -> bool:
    """Whole-word containment of token strings (``a b`` is not in ``a b_c``)."""
    return f" {snippet} " in f" {haystack} "


def _notebook_text(nb: dict) -> str:
    parts: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
    walk(nb)
    return "\n".join(parts)


def leak_snippets(master: Path | str, min_words: int = 3, min_chars: int = 12) -> dict[str, list[str]]:
    """Lines of ``master`` that must not reach the student edition: ``{"solution": [...], "hidden test": [...]}``.

    Lines that also occur in the student notebook (prompts, public tests, shared code) or that are
    too short to be distinctive are left out. Snippets are word sequences (see :func:`find_leaks`).
    """
    from otter.assign.solutions import replace_solutions

    m = read_master(master)
    student_text = _tokens(_notebook_text(student_notebook(m.path)))
    out: dict[str, list[str]] = {"solution": [], "hidden test": []}

    def keep(kind: str, line: str) -> None:
        t = _tokens(line)
        if len(t.split()) >= min_words and len(t) >= min_chars and not _contains(student_text, t) and t not in out[kind]:
            out[kind].append(t)

    for q in m.questions:
        for i in q.solution_cells:
            cell = m.cells[i]
            if cell.cell_type == "code":
                prompt = {_tokens(s) for s in replace_solutions(_source(cell).split("\n"), "python")}
                for line in _instructor_lines(_source(cell)):
                    if _tokens(line) not in prompt:
                        keep("solution", line)
            elif cell.cell_type == "markdown":
                for line in _source(cell).split("\n"):
                    keep("solution", line)
        for i in q.hidden_tests:
            lines = _source(m.cells[i]).split("\n")
            if lines and lines[0].lstrip().startswith("#"):
                lines = lines[1:]
            for line in lines:
                keep("hidden test", line)
    return out


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in ("span", "a", "em", "strong", "code", "b", "i"):
            self.parts.append(" ")  # block tags separate words (<td>a</td><td>b</td>)

    def handle_endtag(self, tag: str) -> None:
        self.handle_starttag(tag, [])


def _file_text(path: Path) -> str:
    raw = path.read_text(errors="replace")
    if path.suffix in (".html", ".htm"):
        p = _TextExtractor()
        p.feed(raw)
        return "".join(p.parts)
    if path.suffix == ".ipynb":
        try:
            return _notebook_text(json.loads(raw))
        except json.JSONDecodeError:
            return raw
    return raw


@dataclass
class Leak:
    """A solution or hidden-test snippet of ``lab`` found in ``file``."""

    lab: str
    kind: str
    snippet: str
    file: Path


def find_leaks(html_dir: Path | str, masters: Iterable[Path | str] | None = None,
               root: Path | str | None = None) -> list[Leak]:
    """Scan a built site for the solution and hidden-test text of each lab master.

    For each lab, every text file under ``html_dir`` named after the lab (its page, the ``_sources``
    copy, downloads) is reduced to words (HTML tags, highlighting and quoting
    removed) and searched for each snippet of :func:`leak_snippets`.
    """
    html_dir = Path(html_dir)
    masters = [Path(m) for m in masters] if masters is not None else assignment_masters(_default_root(root) / "labs")
    leaks: list[Leak] = []
    for master in masters:
        snippets = leak_snippets(master)
        files = [f for f in sorted(html_dir.rglob("*")) if f.is_file() and f.name.split(".")[0] == master.stem
                 and f.suffix in (".html", ".htm", ".ipynb", ".txt", ".md", ".py", ".json")]
        for f in files:
            text = _tokens(_file_text(f))
            for kind, items in snippets.items():
                leaks.extend(Leak(master.stem, kind, s, f) for s in items if _contains(text, s))
    return leaks


# --------------------------------------------------------------------------- grading

@dataclass
class Submission:
    """``SUBMISSIONS/<student>/<lab>.ipynb``."""

    student: str
    lab: str
    path: Path


@dataclass
class GradeRow:
    """The grade of one student on one lab; ``scores``/``possible`` are per question."""

    student: str
    lab: str
    scores: dict[str, float] = field(default_factory=dict)
    possible: dict[str, float] = field(default_factory=dict)
    status: str = "graded"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    results: dict | None = None
    log: str = ""

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def max_total(self) -> float:
        return float(sum(self.possible.values()))


def discover_submissions(submissions_dir: Path | str) -> tuple[list[Submission], list[str]]:
    """Submissions under ``submissions_dir`` (``<student>/<lab>.ipynb``) and warnings about other files."""
    d = Path(submissions_dir)
    if not d.is_dir():
        raise GradingError(f"no such folder: {d}")
    subs, warnings = [], []
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d)
        if not f.is_file() or _SKIP_DIRS.intersection(rel.parts) or f.name.startswith("."):
            continue
        if len(rel.parts) == 2 and f.suffix == ".ipynb":
            subs.append(Submission(rel.parts[0], f.stem, f))
        else:
            warnings.append(f"ignored {rel}: submissions are named <student>/<lab>.ipynb")
    return subs, warnings


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


@dataclass
class _Lab:
    name: str
    zip_bytes: bytes
    questions: list[str]
    points: dict[str, float]


def _usable_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None and any(n.startswith("tests/") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_lab(master: Path, assign_dir: Path) -> _Lab:
    """The lab's autograder zip (re-assigned when missing or older than the master) and its points."""
    from otter.test_files import create_test_file

    lab_dir = assign_dir / master.stem
    zips = sorted((lab_dir / "autograder").glob("*-autograder_*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips or zips[-1].stat().st_mtime < master.stat().st_mtime or not _usable_zip(zips[-1]):
        zips = [_otter_assign(master.resolve(), lab_dir).autograder_zip]
    zip_bytes = zips[-1].read_bytes()
    points: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tlutils-tests-") as tmp:
        with zipfile.ZipFile(zips[-1]) as zf:
            names = [n for n in zf.namelist() if n.startswith("tests/") and n.endswith(".py")]
            for n in names:
                zf.extract(n, tmp)
        for n in names:
            tf = create_test_file(str(Path(tmp) / n), None)
            points[tf.name] = float(tf.possible)
    order = [q.name for q in read_master(master).questions if q.name in points]
    order += sorted(set(points) - set(order))
    return _Lab(master.stem, zip_bytes, order, points)


_WORKER = r"""
import json, os, sys, traceback
submission, autograder, out = sys.argv[1:4]
info = {"cell_errors": [], "error": None}
try:
    from otter.run import main
    results = main(submission, autograder=autograder, output_dir=out, no_logo=True)
    nb = getattr(results, "notebook", None)
    for cell in (nb.cells if nb is not None else []):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                src = next((l for l in str(cell.get("source", "")).splitlines() if l.strip()), "")
                info["cell_errors"].append({"ename": str(o.get("ename")), "evalue": str(o.get("evalue"))[:300],
                                            "cell": src.strip()[:60]})
except BaseException as e:
    info["error"] = (type(e).__name__ + ": " + str(e))[:2000]
    traceback.print_exc()
with open(os.path.join(out, "worker.json"), "w") as f:
    json.dump(info, f)
"""


def _kill_run(proc: subprocess.Popen, tag: str) -> None:
    """Kill the worker, its process group, its descendants and anything else carrying ``tag``
    (the Jupyter kernel runs in a session of its own, so a process group is not enough)."""
    victims = []
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with ipython
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(proc.pid)
            victims = [root] + root.children(recursive=True)
        except psutil.Error:
            pass
        for p in psutil.process_iter():
            if p.pid == os.getpid() or p in victims:
                continue
            try:
                if p.environ().get(TAG_VAR) == tag:
                    victims.append(p)
            except (psutil.Error, OSError):
                continue
    if hasattr(os, "killpg"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in victims:
        try:
            p.kill()
        except Exception:
            pass
    if psutil is not None and victims:
        psutil.wait_procs(victims, timeout=5)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _drain(stream: Any, sink: Path, cap: int, state: dict) -> None:
    """Copy up to ``cap`` bytes of ``stream`` into ``sink`` and count (but drop) the rest."""
    with sink.open("wb") as f:
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            state["bytes"] += len(chunk)
            room = cap - f.tell()
            if room > 0:
                f.write(chunk[:room])
    stream.close()


def _read_capped_json(path: Path) -> Any:
    if not path.is_file() or path.stat().st_size > MAX_RESULT_BYTES:
        return None
    try:
        return json.loads(path.read_text(errors="replace"))
    except (json.JSONDecodeError, ValueError):
        return None


def _first_failure(output: str) -> str:
    """The first ``Error: message`` line of an otter test-file summary."""
    lines = output.split("\n")
    for i, line in enumerate(lines):
        if re.search(r"Error at line \d+ in test", line) and i + 2 < len(lines):
            return lines[i + 2].strip()
    return "a test failed"


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _threads_per_run(workers: int) -> int:
    """CPU threads for each grading run: a share of the cores, or the caller's OMP_NUM_THREADS if lower."""
    share = max(1, (os.cpu_count() or 1) // max(1, workers))
    try:
        return max(1, min(share, int(os.environ["OMP_NUM_THREADS"])))
    except (KeyError, ValueError):
        return share


def _run_one(sub: Submission, lab: _Lab, timeout: float, profile: str, output_cap: int,
             threads: int, keep: bool) -> GradeRow:
    row = GradeRow(sub.student, sub.lab, {q: 0.0 for q in lab.questions}, {q: lab.points[q] for q in lab.questions})
    t0 = time.perf_counter()
    # 1. Is it a notebook at all? (Checked here, cheaply, before anything runs.)
    try:
        size = sub.path.stat().st_size
        if size > MAX_SUBMISSION_BYTES:
            raise ValueError(f"{size / 1e6:.0f} MB is larger than the {MAX_SUBMISSION_BYTES / 1e6:.0f} MB limit")
        nb = nbformat.reads(sub.path.read_text(encoding="utf-8", errors="strict"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no cells")
    except Exception as e:
        row.status = "invalid"
        row.notes.append(f"not a valid notebook ({_short(f'{type(e).__name__}: {e}', 120)}); every question scores 0")
        row.seconds = time.perf_counter() - t0
        return row
    # Grade with the course kernel whatever the student's kernelspec says; outputs are not needed.
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    work = Path(tempfile.mkdtemp(prefix=f"tlutils-grade-{_safe_name(sub.student)}-{_safe_name(sub.lab)}-"))
    try:
        (work / "submission").mkdir()
        (work / "out").mkdir()
        (work / "tmp").mkdir()
        sub_path = work / "submission" / f"{_safe_name(sub.lab)}.ipynb"
        sub_path.write_text(nbformat.writes(nb, version=4), encoding="utf-8")
        zip_path = work / "autograder.zip"
        zip_path.write_bytes(lab.zip_bytes)  # its own copy, from memory: a submission cannot spoil the next
        tag = uuid.uuid4().hex
        env = dict(os.environ, TLUTILS_PROFILE=profile, TMPDIR=str(work / "tmp"), MPLBACKEND="Agg",
                   PYTHONDONTWRITEBYTECODE="1", **{TAG_VAR: tag})
        # Both variables, always: torch takes MKL_NUM_THREADS over OMP_NUM_THREADS, and a kernel with
        # more threads than its share of cores spins against the other runs (10x slower, measured).
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-I", "-c", _WORKER, str(sub_path), str(zip_path), str(work / "out")]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        state = {"bytes": 0}
        reader = threading.Thread(target=_drain, args=(proc.stdout, work / "log.txt", output_cap, state), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_run(proc, tag)  # also after a normal exit: nothing of this submission may linger
        reader.join(timeout=10)
        row.log = (work / "log.txt").read_text(errors="replace") if (work / "log.txt").exists() else ""
        if state["bytes"] > output_cap:
            row.notes.append(f"console output capped at {output_cap / 1e6:g} MB (it printed {state['bytes'] / 1e6:.1f} MB)")
        results = None if timed_out else _read_capped_json(work / "out" / "results.json")
        worker = _read_capped_json(work / "out" / "worker.json") or {}
        if timed_out:
            row.status = "timeout"
            row.notes.append(f"stopped after the {timeout:g} s time limit (an endless loop?); every question scores 0")
        elif not isinstance(results, dict) or not isinstance(results.get("tests"), list):
            row.status = "error"
            why = worker.get("error") if isinstance(worker, dict) else None
            rc = proc.returncode
            why = why or (f"the grading process was killed by signal {-rc}" if rc is not None and rc < 0
                          else f"the grading process exited with code {rc}") + " and wrote no results"
            row.notes.append(f"grading failed ({_short(why)}); every question scores 0")
            results = None
        if results is not None:
            row.results = results
            seen = set()
            for t in results["tests"]:
                name = t.get("name") if isinstance(t, dict) else None
                if name not in row.possible or name in seen:
                    continue  # "Public Tests" summary, or anything a submission made up
                seen.add(name)
                try:
                    score = float(t.get("score", 0.0))
                except (TypeError, ValueError):
                    score = 0.0
                score = min(max(score, 0.0), row.possible[name]) if score == score else 0.0
                row.scores[name] = score
                if score < row.possible[name]:
                    row.notes.append(f"{name} {score:g}/{row.possible[name]:g}: {_short(_first_failure(str(t.get('output', ''))), 120)}")
            for q in lab.questions:
                if q not in seen:
                    row.notes.append(f"{q}: no result from the autograder; scores 0")
        errors = worker.get("cell_errors") if isinstance(worker, dict) else None
        if isinstance(errors, list) and errors:
            if row.status == "graded":
                row.status = "graded with errors"
            for e in errors[:3]:
                if isinstance(e, dict):
                    row.notes.append(_short(f"cell `{e.get('cell', '')}` raised {e.get('ename')}: {e.get('evalue')}", 160))
            if len(errors) > 3:
                row.notes.append(f"{len(errors) - 3} more cells raised errors")
    finally:
        if keep:
            row.notes.append(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    row.seconds = time.perf_counter() - t0
    return row


def _question_columns(rows: Sequence[GradeRow]) -> tuple[list[str], dict[tuple[str, str], str]]:
    """One column per question; names used by two labs become ``lab:question``."""
    owners: dict[str, set[str]] = {}
    ordered: list[tuple[str, str]] = []
    for r in rows:
        for q in r.possible:
            owners.setdefault(q, set()).add(r.lab)
            if (r.lab, q) not in ordered:
                ordered.append((r.lab, q))
    col = {(lab, q): (q if len(owners[q]) == 1 else f"{lab}:{q}") for lab, q in ordered}
    return list(dict.fromkeys(col[k] for k in ordered)), col


def write_grades_csv(rows: Sequence[GradeRow], path: Path | str) -> Path:
    """``student, lab, <question...>, total, possible, status, seconds, notes`` (one row per student and lab)."""
    qcols, col = _question_columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "lab", *qcols, "total", "possible", "status", "seconds", "notes"])
        for r in rows:
            by_col = {col[(r.lab, q)]: f"{s:g}" for q, s in r.scores.items()}
            w.writerow([r.student, r.lab, *[by_col.get(c, "") for c in qcols], f"{r.total:g}",
                        f"{r.max_total:g}", r.status, f"{r.seconds:.1f}", "; ".join(r.notes)])
    return path


def grade(submissions_dir: Path | str, out_dir: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
          workers: int = DEFAULT_WORKERS, profile: str = "ci", root: Path | str | None = None,
          assign_dir: Path | str | None = None, masters: Sequence[Path | str] | None = None,
          output_cap: int = DEFAULT_OUTPUT_CAP, keep_work: bool = False, verbose: bool = True) -> list[GradeRow]:
    """Grade every ``<student>/<lab>.ipynb`` under ``submissions_dir``.

    Writes ``out_dir/grades.csv`` and ``out_dir/<student>/<lab>/{results.json,log.txt}`` (default
    ``out_dir``: ``build/grades``) once every submission is done, and returns the rows. Labs are
    the masters under ``root/labs`` (or ``masters``); autograders come from ``assign_dir``
    (default ``build/assign``) and are rebuilt when missing or older than their master.
    """
    root = _default_root(root)
    out_dir = Path(out_dir) if out_dir is not None else root / "build" / "grades"
    assign_dir = Path(assign_dir) if assign_dir is not None else root / "build" / "assign"
    all_masters = [Path(m) for m in masters] if masters is not None else assignment_masters(root / "labs")
    by_name = {m.stem: m for m in all_masters}
    subs, warnings = discover_submissions(submissions_dir)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    labs: dict[str, _Lab] = {}
    broken: dict[str, str] = {}
    for name in sorted({s.lab for s in subs} & set(by_name)):
        try:
            labs[name] = _load_lab(by_name[name], assign_dir)
        except Exception as e:  # one broken lab must not stop the others
            broken[name] = _short(f"{type(e).__name__}: {e}", 300)
    threads = _threads_per_run(workers)

    def job(sub: Submission) -> GradeRow:
        if sub.lab in broken:
            return GradeRow(sub.student, sub.lab, status="lab error",
                            notes=[f"the lab's autograder could not be built ({broken[sub.lab]}); not graded"])
        if sub.lab not in labs:
            known = ", ".join(sorted(by_name)) or "none"
            return GradeRow(sub.student, sub.lab, status="unknown lab",
                            notes=[f"no lab named {sub.lab!r} (labs: {known}); not graded"])
        row = _run_one(sub, labs[sub.lab], timeout, profile, output_cap, threads, keep_work)
        if verbose:
            print(f"{row.student}/{row.lab}: {row.total:g}/{row.max_total:g} ({row.status}, {row.seconds:.0f} s)",
                  file=sys.stderr, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(job, subs))
    # Everything is written only now, from memory: a submission cannot overwrite the grader's output.
    for r in rows:
        d = out_dir / _safe_name(r.student) / _safe_name(r.lab)
        d.mkdir(parents=True, exist_ok=True)
        results = r.results if r.results is not None else {  # Gradescope-style, like otter's own
            "score": 0, "tests": [{"name": "Autograder Error", "output": "; ".join(r.notes)}]}
        (d / "results.json").write_text(json.dumps(results, indent=2))
        (d / "log.txt").write_text(r.log)
    write_grades_csv(rows, out_dir / "grades.csv")
    return rows


# --------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlutils.grading {assign,stage-book,grade,check-leaks,lint}``."""
    ap = argparse.ArgumentParser(prog="python -m tlutils.grading", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="the repository root (default: the current folder)")
    sp = ap.add_subparsers(dest="cmd", required=True)
    a = sp.add_parser("assign", help="student notebooks and autograder zips into build/assign/<lab>/")
    a.add_argument("labs", nargs="*", type=Path, help="lab masters (default: every one under labs/)")
    a.add_argument("--out", type=Path, default=None, help="output folder (default build/assign)")
    s = sp.add_parser("stage-book", help="copy the book sources with student (or instructor) labs")
    s.add_argument("--edition", choices=EDITIONS, default="student")
    s.add_argument("--dest", type=Path, default=None, help="default _build/src/<edition>")
    g = sp.add_parser("grade", help="grade SUBMISSIONS/<student>/<lab>.ipynb into grades.csv")
    g.add_argument("submissions", type=Path)
    g.add_argument("--out", type=Path, default=None, help="default build/grades")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per submission (default 600)")
    g.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="parallel submissions (default 2)")
    g.add_argument("--profile", choices=("ci", "full"), default="ci", help="TLUTILS_PROFILE for the runs")
    g.add_argument("--keep-work", action="store_true", help="keep each submission's work folder")
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
            print(stage_book(args.edition, root=args.root, dest=args.dest))
        elif args.cmd == "grade":
            out = args.out if args.out is not None else _default_root(args.root) / "build" / "grades"
            rows = grade(args.submissions, out, timeout=args.timeout, workers=args.workers,
                         profile=args.profile, root=args.root, keep_work=args.keep_work)
            print(f"{len(rows)} submissions graded: {out / 'grades.csv'}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
