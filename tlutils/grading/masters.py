"""Reading lab masters: otter's blocks (config, questions, solutions, public and hidden tests), lint."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

_SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".jupyter_cache", "_build", ".OTTER_LOG"}


class GradingError(RuntimeError):
    """A lab master or a folder cannot be processed (the message says why)."""


def _default_root(root: Path | str | None) -> Path:
    return Path(root).resolve() if root is not None else Path.cwd().resolve()



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

