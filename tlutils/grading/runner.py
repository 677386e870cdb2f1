"""Running and scoring submissions: one child process per submission, grades.csv."""
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
from .masters import _SKIP_DIRS, GradingError, _default_root, assignment_masters, read_master

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_WORKERS = 2
DEFAULT_OUTPUT_CAP = 1_000_000          # bytes of a submission's console output kept in log.txt
MAX_SUBMISSION_BYTES = 50_000_000       # larger files are rejected before running anything
MAX_RESULT_BYTES = 5_000_000            # a results.json larger than this is treated as tampered
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

