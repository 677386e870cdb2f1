"""Running and scoring submissions: a sandbox per submission, checks in a fresh process, grades.csv.

Each submission is graded in two steps. *Collect*: in a sandbox (:mod:`.sandbox`), a Jupyter kernel
runs the student's notebook and then exports, as plain data, the variables the lab's tests take
(:mod:`.collect`, :mod:`.plaindata`). *Check*: a fresh grader process, sandboxed as well, rebuilds
those values with trusted classes only and runs the lab's public and hidden tests on them
(:mod:`.check`). The hidden tests never enter the submission's process, so patching anything there
(``pickle``, otter, builtins) changes nothing but the submission's own answers. Tests that must call
a function the student wrote run inside the submission instead; their rows say so.
"""
from __future__ import annotations

import csv
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
from typing import Any, Sequence

import nbformat

from .assign import _otter_assign
from .sandbox import HOW_TO_GET_ONE, Limits, inner, sandbox_problem, wrap
from .masters import _SKIP_DIRS, GradingError, _default_root, _source, assignment_masters, read_master

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_WORKERS = 2
DEFAULT_OUTPUT_CAP = 1_000_000          # bytes of a submission's console output kept in log.txt
MAX_SUBMISSION_BYTES = 50_000_000       # larger files are rejected before running anything
MAX_RESULT_BYTES = 5_000_000            # a results.json larger than this is treated as tampered
MAX_EXPORT_BYTES = 2_000_000_000        # exported answers (values.json + tensors.pt) larger than this score 0
CHECK_TIMEOUT_S = 300.0                 # the check step of one submission
INKERNEL_NOTE = "checked inside the submission (its test calls the student's {names}): a forged pass is possible"
TAG_VAR = "TLUTILS_GRADING_TAG"          # marks every process of one grading run, to kill leftovers


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
    mode: str = "sandbox"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    results: dict | None = None
    log: str = ""
    work: Path | None = None
    """The submission's work folder, where ``keep_work`` kept it (``collect/out/executed.ipynb``: the notebook as it ran)."""

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def max_total(self) -> float:
        return float(sum(self.possible.values()))


def discover_submissions(submissions_dir: Path | str, lab: str | None = None) -> tuple[list[Submission], list[str]]:
    """Submissions under ``submissions_dir`` and warnings about other files.

    Named ``<student>/<lab>.ipynb``; with ``lab`` given, also a flat folder of ``<student>.ipynb``
    (a learning-management system's export of one assignment), and only that lab is taken.
    """
    d = Path(submissions_dir)
    if not d.is_dir():
        raise GradingError(f"no such folder: {d}")
    subs, warnings = [], []
    naming = "<student>/<lab>.ipynb" + (f" or <student>.ipynb (with --lab {lab})" if lab else "")
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d)
        if not f.is_file() or _SKIP_DIRS.intersection(rel.parts) or f.name.startswith("."):
            continue
        if lab is not None and len(rel.parts) == 1 and f.suffix == ".ipynb":
            subs.append(Submission(f.stem, lab, f))
        elif len(rel.parts) == 2 and f.suffix == ".ipynb" and lab in (None, f.stem):
            subs.append(Submission(rel.parts[0], f.stem, f))
        else:
            warnings.append(f"ignored {rel}: submissions are named {naming}")
    return subs, warnings


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


@dataclass
class _Lab:
    name: str
    zip_bytes: bytes
    questions: list[str]
    points: dict[str, float]
    tests: dict[str, str] = field(default_factory=dict)        # question -> otter test file source
    names: list[str] = field(default_factory=list)             # the variables the tests take
    inkernel: dict[str, list[str]] = field(default_factory=dict)  # question -> student functions its tests call


def _notebook_functions(master: Path) -> set[str]:
    """Names the master binds with ``def``, ``class`` or a ``lambda``: the student's own code."""
    import ast

    names: set[str] = set()
    for cell in read_master(master).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


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
    tests: dict[str, str] = {}
    params: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="tlutils-tests-") as tmp:
        with zipfile.ZipFile(zips[-1]) as zf:
            names = [n for n in zf.namelist() if n.startswith("tests/") and n.endswith(".py")]
            for n in names:
                zf.extract(n, tmp)
        for n in names:
            tf = create_test_file(str(Path(tmp) / n), None)
            points[tf.name] = float(tf.possible)
            tests[tf.name] = (Path(tmp) / n).read_text()
            params[tf.name] = {p for tc in tf.test_cases for p in tc.body._get_func_params() if p != "env"}
    order = [q.name for q in read_master(master).questions if q.name in points]
    order += sorted(set(points) - set(order))
    functions = _notebook_functions(master)
    inkernel = {q: sorted(params[q] & functions) for q in order if params[q] & functions}
    names = sorted(set().union(*params.values()) - functions) if params else []
    return _Lab(master.stem, zip_bytes, order, points, tests, names, inkernel)


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
    return output.strip() or "a test failed"


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


def _child_env(box: Path, profile: str, threads: int, tag: str, sandbox: bool) -> dict[str, str]:
    """A small environment for a sandboxed step (nothing else of the grader's leaks in)."""
    env = {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TLUTILS_OFFLINE") if k in os.environ}
    home, tmp = inner(box, box / "home", sandbox), inner(box, box / "tmp", sandbox)
    # Both thread variables, always: torch takes MKL_NUM_THREADS over OMP_NUM_THREADS, and a kernel
    # with more threads than its share of cores spins against the other runs (10x slower, measured);
    # a lab's own worker processes (tlutils.parallel) get the same share.
    env.update(HOME=home, TMPDIR=tmp, MPLCONFIGDIR=f"{tmp}/matplotlib", JUPYTER_RUNTIME_DIR=f"{tmp}/jupyter",
               IPYTHONDIR=f"{tmp}/ipython", TLUTILS_PROFILE=profile, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TLUTILS_WORKERS=str(threads),
               **{TAG_VAR: tag})
    return env


def _new_box(folder: Path) -> Path:
    for sub in ("out", "tmp", "home"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def _run_step(cmd: list[str], box: Path, env: dict, timeout: float, log: Path, output_cap: int) -> tuple[bool, int | None, int]:
    """Run one sandboxed step with its console output capped into ``log``: (timed out, exit code, bytes printed)."""
    proc = subprocess.Popen(cmd, cwd=box, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    state = {"bytes": 0}
    reader = threading.Thread(target=_drain, args=(proc.stdout, log, output_cap, state), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_run(proc, env[TAG_VAR])  # also after a normal exit: nothing of this submission may linger
    reader.join(timeout=10)
    return timed_out, proc.returncode, state["bytes"]


def _plain_file(path: Path, limit: int) -> bool:
    """A regular file no larger than ``limit`` in a folder that is not a link (a submission may
    replace its ``out`` folder with a link to anywhere)."""
    return (not path.parent.is_symlink() and path.parent.is_dir() and path.is_file() and not path.is_symlink()
            and path.stat().st_size <= limit)


def _run_one(sub: Submission, lab: _Lab, timeout: float, profile: str, output_cap: int,
             threads: int, keep: bool, sandbox: bool = False, limits: Limits | None = None) -> GradeRow:
    row = GradeRow(sub.student, sub.lab, {q: 0.0 for q in lab.questions}, {q: lab.points[q] for q in lab.questions},
                   mode="sandbox" if sandbox else "no sandbox")
    limits = limits or Limits()
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
    tag = uuid.uuid4().hex
    try:
        # 2. Collect: the notebook and the export of the tests' variables, in the submission's sandbox.
        box = _new_box(work / "collect")
        sub_path = box / f"{_safe_name(sub.lab)}.ipynb"
        sub_path.write_text(nbformat.writes(nb, version=4), encoding="utf-8")
        request = box / "request.json"
        request.write_text(json.dumps({"notebook": inner(box, sub_path, sandbox), "out": inner(box, box / "out", sandbox),
                                       "names": lab.names, "inkernel": {q: lab.tests[q] for q in lab.inkernel}}))
        cmd = wrap([sys.executable, "-s", "-m", "tlutils.grading.collect", inner(box, request, sandbox)], box, limits, sandbox)
        timed_out, rc, printed = _run_step(cmd, box, _child_env(box, profile, threads, tag, sandbox), timeout,
                                           work / "log.txt", output_cap)
        row.log = (work / "log.txt").read_text(errors="replace") if (work / "log.txt").exists() else ""
        if printed > output_cap:
            row.notes.append(f"console output capped at {output_cap / 1e6:g} MB (it printed {printed / 1e6:.1f} MB)")
        out = box / "out"
        run = _read_capped_json(out / "run.json") if _plain_file(out / "run.json", MAX_RESULT_BYTES) else None
        run = run if isinstance(run, dict) else {}
        exported = all(_plain_file(out / f, MAX_EXPORT_BYTES) for f in ("values.json", "tensors.pt")) and \
            sum((out / f).stat().st_size for f in ("values.json", "tensors.pt")) <= MAX_EXPORT_BYTES
        if timed_out:
            row.status = "timeout"
            row.notes.append(f"stopped after the {timeout:g} s time limit (an endless loop?); every question scores 0")
            return row
        if not exported:
            row.status = "error"
            why = run.get("error") or (f"the grading process was killed by signal {-rc}" if rc is not None and rc < 0
                                       else f"the grading process exited with code {rc}") + " and exported no answers"
            row.notes.append(f"grading failed ({_short(str(why))}); every question scores 0")
            return row
        # 3. Check: a fresh process runs the tests on the exported data; the tests go to it alone.
        cbox = _new_box(work / "check")
        (cbox / "tests").mkdir()
        for q, source in lab.tests.items():
            if q not in lab.inkernel:
                (cbox / "tests" / f"{_safe_name(q)}.py").write_text(source)
        for f in ("values.json", "tensors.pt"):
            shutil.move(str(out / f), str(cbox / "out" / f))
        result = cbox / "out" / "result.json"
        cmd = wrap([sys.executable, "-s", "-m", "tlutils.grading.check", inner(cbox, cbox / "tests", sandbox),
                    inner(cbox, cbox / "out", sandbox), inner(cbox, result, sandbox)], cbox, limits, sandbox)
        c_timed_out, c_rc, _ = _run_step(cmd, cbox, _child_env(cbox, profile, threads, tag, sandbox), CHECK_TIMEOUT_S,
                                         work / "check_log.txt", output_cap)
        checked = _read_capped_json(result) if _plain_file(result, MAX_RESULT_BYTES) else None
        if not isinstance(checked, dict):
            tail = (work / "check_log.txt").read_text(errors="replace")[-300:] if (work / "check_log.txt").exists() else ""
            row.status = "error"
            row.notes.append(f"the checks did not run ({'time limit' if c_timed_out else f'exit code {c_rc}'}: "
                             f"{_short(tail, 200)}); every question scores 0")
            return row
        inkernel = _read_capped_json(out / "inkernel.json") if _plain_file(out / "inkernel.json", MAX_RESULT_BYTES) else None
        inkernel = inkernel if isinstance(inkernel, dict) else {}
        tests = []
        for q in lab.questions:
            res = inkernel.get(q) if q in lab.inkernel else checked.get(q)
            res = res if isinstance(res, dict) else {}
            try:
                score = float(res.get("score", 0.0))
            except (TypeError, ValueError):
                score = 0.0
            score = min(max(score, 0.0), row.possible[q]) if score == score else 0.0
            row.scores[q] = score
            failures = [str(f) for f in res.get("failures", []) if isinstance(f, str)] if isinstance(res.get("failures"), list) else []
            if not res:
                failures = ["no result from the checks"]
            if q in lab.inkernel:
                row.notes.append(f"{q}: " + INKERNEL_NOTE.format(names=", ".join(lab.inkernel[q])))
            if score < row.possible[q]:
                row.notes.append(f"{q} {score:g}/{row.possible[q]:g}: "
                                 f"{_short(_first_failure(failures[0]) if failures else 'a test failed', 120)}")
            tests.append({"name": q, "score": score, "max_score": row.possible[q], "output": "\n\n".join(failures)})
        row.results = {"score": row.total, "tests": tests, "mode": row.mode, "collect_cpu_s": run.get("cpu_s"),
                       "check_cpu_s": checked.get("_cpu_s")}
        errors = run.get("cell_errors")
        if run.get("error"):
            row.notes.append(_short(str(run["error"]), 160))
        if isinstance(errors, list) and errors:
            row.status = "graded with errors"
            for e in errors[:3]:
                if isinstance(e, dict):
                    row.notes.append(_short(f"cell `{e.get('cell', '')}` raised {e.get('ename')}: {e.get('evalue')}", 160))
            if len(errors) > 3:
                row.notes.append(f"{len(errors) - 3} more cells raised errors")
    finally:
        if keep:
            row.work = work
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
    """``student, lab, <question...>, total, possible, status, mode, seconds, notes`` (one row per student and lab)."""
    qcols, col = _question_columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "lab", *qcols, "total", "possible", "status", "mode", "seconds", "notes"])
        for r in rows:
            by_col = {col[(r.lab, q)]: f"{s:g}" for q, s in r.scores.items()}
            w.writerow([r.student, r.lab, *[by_col.get(c, "") for c in qcols], f"{r.total:g}",
                        f"{r.max_total:g}", r.status, r.mode, f"{r.seconds:.1f}", "; ".join(r.notes)])
    return path


def question_summary(rows: Sequence[GradeRow]) -> list[dict[str, Any]]:
    """Per lab and question: points, how many rows, mean score, how many got full marks."""
    out: list[dict[str, Any]] = []
    for lab in dict.fromkeys(r.lab for r in rows):
        graded = [r for r in rows if r.lab == lab and r.possible]
        for q in dict.fromkeys(q for r in graded for q in r.possible):
            got = [r.scores.get(q, 0.0) for r in graded if q in r.possible]
            points = max(r.possible[q] for r in graded if q in r.possible)
            out.append({"lab": lab, "question": q, "points": points, "submissions": len(got),
                        "mean": sum(got) / len(got), "full_marks": sum(s >= points for s in got)})
    return out


def write_summary(rows: Sequence[GradeRow], path: Path | str) -> str:
    """Write :func:`question_summary` as CSV to ``path`` and return it as a small text table."""
    summary = question_summary(rows)
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["lab", "question", "points", "submissions", "mean", "full_marks"])
        w.writeheader()
        for s in summary:
            w.writerow({**s, "points": f"{s['points']:g}", "mean": f"{s['mean']:.2f}"})
    lines = [f"{'lab':<20} {'question':<10} {'points':>6} {'mean':>6} {'full marks':>12}"]
    lines += [f"{s['lab']:<20} {s['question']:<10} {s['points']:>6g} {s['mean']:>6.2f} "
              f"{s['full_marks']:>5}/{s['submissions']:<6}" for s in summary]
    return "\n".join(lines)


def grade(submissions_dir: Path | str, out_dir: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
          workers: int = DEFAULT_WORKERS, profile: str = "ci", root: Path | str | None = None,
          assign_dir: Path | str | None = None, masters: Sequence[Path | str] | None = None,
          output_cap: int = DEFAULT_OUTPUT_CAP, keep_work: bool = False, verbose: bool = True,
          sandbox: bool = True, limits: Limits | None = None, lab: str | None = None) -> list[GradeRow]:
    """Grade every ``<student>/<lab>.ipynb`` under ``submissions_dir`` (with ``lab``: also ``<student>.ipynb``).

    Writes ``out_dir/grades.csv``, ``out_dir/summary.csv`` and ``out_dir/<student>/<lab>/{results.json,log.txt}``
    (default ``out_dir``: ``build/grades``) once every submission is done, and returns the rows. Labs are
    the masters under ``root/labs`` (or ``masters``); autograders come from ``assign_dir``
    (default ``build/assign``) and are rebuilt when missing or older than their master. Each
    submission runs in a sandbox under ``limits``; where none can be had this raises
    :class:`GradingError` unless ``sandbox=False``.
    """
    if sandbox and sandbox_problem() is not None:
        raise GradingError(f"no sandbox for student code: {sandbox_problem()}. To get one, {HOW_TO_GET_ONE}.")
    root = _default_root(root)
    out_dir = Path(out_dir) if out_dir is not None else root / "build" / "grades"
    assign_dir = Path(assign_dir) if assign_dir is not None else root / "build" / "assign"
    all_masters = [Path(m) for m in masters] if masters is not None else assignment_masters(root / "labs")
    by_name = {m.stem: m for m in all_masters}
    if lab is not None and lab not in by_name:
        raise GradingError(f"no lab named {lab!r} (labs: {', '.join(sorted(by_name)) or 'none'})")
    subs, warnings = discover_submissions(submissions_dir, lab)
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
    mode = "sandbox" if sandbox else "no sandbox"

    def job(sub: Submission) -> GradeRow:
        if sub.lab in broken:
            return GradeRow(sub.student, sub.lab, status="lab error", mode=mode,
                            notes=[f"the lab's autograder could not be built ({broken[sub.lab]}); not graded"])
        if sub.lab not in labs:
            known = ", ".join(sorted(by_name)) or "none"
            return GradeRow(sub.student, sub.lab, status="unknown lab", mode=mode,
                            notes=[f"no lab named {sub.lab!r} (labs: {known}); not graded"])
        row = _run_one(sub, labs[sub.lab], timeout, profile, output_cap, threads, keep_work, sandbox, limits)
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
    table = write_summary(rows, out_dir / "summary.csv")
    if verbose and rows:
        print(table, file=sys.stderr)
    return rows

