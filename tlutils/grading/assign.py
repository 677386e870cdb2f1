"""Assigning: ``otter assign`` into student notebooks and autograder zips; the instructor notebook."""
from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nbformat

from .masters import GradingError, _config_problems, _default_root, _source, assignment_masters, read_master


@dataclass
class AssignedLab:
    """What ``otter assign`` produced for one lab."""

    name: str
    student_notebook: Path
    autograder_notebook: Path
    autograder_zip: Path



_COLAB_SPEC = re.compile(r'"(git\+https://[^"@]+@[^"]+)"')


def _colab_installs_grading(nb: nbformat.NotebookNode) -> None:
    """A student notebook runs ``import otter``: its Colab cell installs ``tlutils[grading]``
    (otter-grader) from the repository instead of plain ``tlutils``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "google.colab" in _source(cell):
            cell["source"] = _COLAB_SPEC.sub(r'"tlutils[grading] @ \1"', _source(cell), count=1)
            return


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


def instructor_notebook(master: Path | str, keep_outputs: bool = False) -> nbformat.NotebookNode:
    """``master`` with solutions but without otter's marker cells, hidden tests and student prompts.

    Public test cells stay (they run as plain functions); cell tags and metadata are kept.
    ``keep_outputs=True`` keeps the outputs of an executed master (e.g. papermill's copy).
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
            if not keep_outputs:
                cell["outputs"], cell["execution_count"] = [], None
        cells.append(nbformat.from_dict(cell))
    nb.cells = cells
    for i, cell in enumerate(nb.cells):  # fenced-cell extraction can create cells without ids
        if nb.nbformat_minor >= 5 and "id" not in cell:
            cell["id"] = f"tl-{i}"
    return nb

