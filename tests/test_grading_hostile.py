"""Hostile submissions (issue 15): what a student who wants marks without answers, or wants to harm
the grading, would try. Each case is the toy lab's student notebook with one hostile answer cell;
all of them are graded in ONE sandboxed run (2 workers) next to two honest submissions, with small
limits so that every case is bounded: 64 processes, 4 GiB of memory per process, 20 MB files, a
120 s time limit. Each affected question scores 0 with a readable reason, nothing is left behind
(processes, files) and the honest rows score what they score alone.

A real lab, the quickest one (feature hierarchy: its master and question names only, its content
changes), checks that its solution scores full marks through the same machinery (exact partial
points: the toy lab, in test_grading.py; every lab's untouched student version: test_grading.py).
"""
from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

from tlutils import grading as g
from tlutils.grading import runner
from tlutils.grading import sandbox as sb

from test_grading import FIXTURE, ROOT, put, with_answers

pytestmark = pytest.mark.notebook

NO_SANDBOX = sb.sandbox_problem()
if NO_SANDBOX and not os.environ.get("CI"):
    pytest.skip(f"no sandbox on this machine ({NO_SANDBOX})", allow_module_level=True)

LIMITS = sb.Limits(memory_gb=4, processes=64, file_mb=20, tmp_mb=64)
TIMEOUT_S = 120.0
MARK = f"tlutils-hostile-{uuid.uuid4().hex[:8]}"   # names every file and process a case tries to leave
SLEEP_S = "3171.25"                                 # a leftover process is found by this argument
ANSWER_Q1 = "n_params = tlutils.freeze.count_parameters(model)"


def attempt(code: str) -> str:
    """``code`` run for its side effects; failures are swallowed so the cell still answers q1."""
    body = "\n".join("    " + line for line in code.strip().split("\n"))
    return f"try:\n{body}\nexcept BaseException as e:\n    print('refused:', type(e).__name__, e)\n"


def cases(targets: dict[str, str], port: int) -> dict[str, tuple[str, tuple, str]]:
    """student: (code of the q1 answer cell, expected (q1, q2, q3), a phrase of the notes)."""
    forge = f"""
import builtins, json, pickle, os
import otter.test_files.abstract_test as at
import otter.test_files.exception_test as et
import tlutils.grading.collect as collect, tlutils.grading.plaindata as plain
at.TestFile.score = property(lambda self: self.possible)
at.TestFile.passed_all = property(lambda self: True)
et.test_case.call_func = lambda self, env: None
pickle.dump = lambda obj, f, *a, **k: f.write(pickle.dumps({{"q1": 1, "q2": 2, "q3": 1}}))
builtins.AssertionError = type("NeverRaised", (Exception,), {{}})
def forged(env, request):
    out = json.loads(open(request).read())["out"]
    for name in ("result.json", "inkernel.json", "results.json"):
        open(os.path.join(out, name), "w").write(json.dumps({{q: {{"score": 9, "possible": 9}} for q in ("q1", "q2", "q3")}}))
    open(os.path.join(out, "values.json"), "w").write(json.dumps({{"values": {{}}, "problems": {{}}}}))
    plain.export_values({{}}, [], out)
collect.export = forged
"""
    write = "".join(attempt(f"open({p!r}, 'w').write('pwned')") for p in targets.values())
    leave = f"""
import os, subprocess, time
subprocess.Popen(["sleep", "{SLEEP_S}"], start_new_session=True, env={{}},
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve("/bin/sleep", ["sleep", "{SLEEP_S}"], {{}})
    os._exit(0)
time.sleep(1)
"""
    memory = "blob = bytearray(6 * 2**30)  # 6 GiB, touched (zeroed)\n" + ANSWER_Q1
    forks = """
import os, time
children = 0
while children < 2000:   # bounded here; the sandbox stops it at 64 processes
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    children += 1
""" + ANSWER_Q1
    network = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'{MARK}')\n" + ANSWER_Q1
    read = attempt(f"""
import glob, zipfile
found = []
for path in {[targets["master"], targets["zip_dir"], targets["submissions"]]!r}:
    for f in glob.glob(path + "/**/*", recursive=True) + [path]:
        try:
            found.append(open(f, "rb").read())
        except OSError:
            pass
leaked = any(b"hidden_marker_q2" in data or b"test_q2_right_layer" in data for data in found)
""") + "assert not leaked, 'the hidden tests were readable'\n" + ANSWER_Q1
    flood = "import os, sys\nfor _ in range(20):\n    os.write(1, b'y' * 1_000_000)\n    print('x' * 100_000)\n" + ANSWER_Q1
    files = attempt(f"""
import os
os.makedirs("many", exist_ok=True)
for i in range(5000):
    open(f"many/{{i}}.txt", "w").write("x")
for i in range(100):
    open(f"/tmp/{MARK}-{{i}}", "w").write("x")
open("big.bin", "wb").write(b"z" * 50_000_000)   # over the 20 MB file limit
""") + ANSWER_Q1
    link = f"import os, shutil\nshutil.rmtree('out')\nos.symlink({targets['submissions']!r}, 'out')\n" + ANSWER_Q1
    return {
        "forger": (forge, (0, 0, 0), "q1 0/1"),
        "linker": (link, (0, 0, 0), "exported no answers"),
        "writer": (write + ANSWER_Q1, (1, 0, 0), "q2 0/2"),
        "leaver": (leave + ANSWER_Q1, (1, 0, 0), "q2 0/2"),
        "hog": (memory, (0, 0, 0), "raised MemoryError"),
        "forker": (forks, (0, 0, 0), "raised BlockingIOError"),
        "caller": (network, (0, 0, 0), "raised ConnectionRefusedError"),
        "reader": (read, (1, 0, 0), "q2 0/2"),
        "flooder": (flood, (1, 0, 0), "console output capped"),
        "filer": (files, (1, 0, 0), "q2 0/2"),
    }


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_repo")
    (root / "labs").mkdir()
    (root / "labs" / "toy_lab.ipynb").write_bytes(FIXTURE.read_bytes())
    return root, g.assign(root=root)["toy_lab"]


def sandbox_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "uids"]):
        try:
            # only this worker's sandboxes: another pytest worker may be grading at the same time
            if SLEEP_S in " ".join(p.info["cmdline"] or []) or (os.geteuid() == 0 and p.info["uids"].real in sb.issued_uids()):
                found.append(p)
        except (psutil.Error, TypeError):
            continue
    return found


@pytest.fixture(scope="module")
def hostile(toy, tmp_path_factory):
    root, lab = toy
    subs = tmp_path_factory.mktemp("hostile_submissions")
    out = root / "build" / "grades"
    home = Path.home()
    targets = {"package": str(Path(g.__file__).resolve().parents[1] / f"{MARK}.py"),
               "submissions": str(subs), "grades": str(out / "grades.csv"), "home": str(home / f"{MARK}.txt"),
               "tmp": f"/tmp/{MARK}.txt", "repo": str(root / f"{MARK}.txt"),
               "master": str(root / "labs"), "zip_dir": str(root / "build" / "assign")}
    targets["other_submission"] = str(subs / "alice" / "toy_lab.ipynb")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0)
    port = listener.getsockname()[1]
    sol = nbformat.read(str(lab.autograder_notebook), as_version=4)
    put(subs, "alice", "toy_lab", sol)                              # the solution
    put(subs, "bob", "toy_lab", with_answers(lab, {"q1", "q3"}))    # partial: 2 of 4
    expected = {"alice": ((1, 2, 1), "graded", ""), "bob": ((1, 0, 1), "graded", "q2 0/2")}
    for student, (code, pts, phrase) in cases(targets, port).items():
        put(subs, student, "toy_lab", with_answers(lab, replace={"q1": code}))
        expected[student] = (pts, None, phrase)
    scratch = tmp_path_factory.mktemp("grader_tmp")
    before = set(os.listdir(tempfile.gettempdir()))
    old_tempdir, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        rows = g.grade(subs, out, timeout=TIMEOUT_S, workers=2, root=root, limits=LIMITS, sandbox=True)
    finally:
        tempfile.tempdir = old_tempdir
    try:
        conn, _ = listener.accept()
        connected = conn.recv(100)
    except BlockingIOError:
        connected = None
    listener.close()
    new_tmp = {f for f in set(os.listdir(tempfile.gettempdir())) - before if MARK in f}
    return {"rows": {r.student: r for r in rows}, "expected": expected, "targets": targets, "out": out,
            "connected": connected, "scratch": scratch, "new_tmp": new_tmp}


def test_each_hostile_case_scores_what_its_answers_earn(hostile):
    for student, (pts, status, phrase) in hostile["expected"].items():
        row = hostile["rows"][student]
        got = tuple(row.scores[q] for q in ("q1", "q2", "q3"))
        assert got == pts, (student, got, row.status, row.notes)
        assert row.mode == "sandbox"
        assert status is None or row.status == status, (student, row.status, row.notes)
        assert phrase in "; ".join(row.notes), (student, row.notes)


def test_forged_results_count_for_nothing(hostile):
    row = hostile["rows"]["forger"]
    assert row.total == 0 and row.status in ("graded", "graded with errors"), row.notes
    assert all(t["score"] == 0 for t in row.results["tests"])


def test_nothing_written_outside_the_submissions_folder(hostile):
    for name, path in hostile["targets"].items():
        p = Path(path)
        if name in ("submissions", "master", "zip_dir"):
            assert not any(MARK in f.name for f in p.rglob("*")), name
        elif name == "other_submission":
            assert "pwned" not in p.read_text()
        else:
            assert not p.exists() or "pwned" not in p.read_text(), f"the sandbox let a submission write {path}"
    assert "pwned" not in (hostile["out"] / "grades.csv").read_text()
    assert not hostile["new_tmp"], hostile["new_tmp"]


def test_nothing_left_behind(hostile):
    assert sandbox_processes() == [], "a submission's process outlived its run"
    assert list(hostile["scratch"].iterdir()) == [], "a work folder was left behind"


def test_no_network(hostile):
    assert hostile["connected"] is None, "a submission reached a listener on the grader's 127.0.0.1"
    assert "Connection refused" in "; ".join(hostile["rows"]["caller"].notes) or \
        "ConnectionRefusedError" in "; ".join(hostile["rows"]["caller"].notes)


def test_output_is_capped(hostile):
    assert len(hostile["rows"]["flooder"].log.encode()) <= g.DEFAULT_OUTPUT_CAP


def test_refuses_without_a_sandbox_unless_asked(toy, tmp_path, monkeypatch):
    root, lab = toy
    monkeypatch.setattr(runner, "sandbox_problem", lambda: "`bwrap` is not installed")
    put(tmp_path, "s", "toy_lab", text="{}")
    with pytest.raises(g.GradingError, match="bubblewrap.*--no-sandbox"):
        g.grade(tmp_path, tmp_path / "out", root=root)
    rows = g.grade(tmp_path, tmp_path / "out", root=root, sandbox=False)
    assert rows[0].mode == "no sandbox" and rows[0].status == "invalid"
    assert "no sandbox" in (tmp_path / "out" / "grades.csv").read_text()


# --------------------------------------------------------------------------- a real lab

REAL_LAB = ROOT / "labs" / "feature_hierarchy.ipynb"


@pytest.fixture(scope="module")
def real_lab(tmp_path_factory):
    if not REAL_LAB.exists():
        pytest.skip(f"no {REAL_LAB.stem} lab")
    tmp = tmp_path_factory.mktemp(REAL_LAB.stem)
    lab = g.assign([REAL_LAB], tmp / "assign")[REAL_LAB.stem]
    subs = tmp / "submissions"
    put(subs, "solution", REAL_LAB.stem, nbformat.read(str(lab.autograder_notebook), as_version=4))
    rows = g.grade(subs, tmp / "grades", masters=[REAL_LAB], assign_dir=tmp / "assign", root=ROOT,
                   workers=1, sandbox=True)
    return {r.student: r for r in rows}


def test_real_lab_solution_scores_full_marks_in_the_sandbox(real_lab):
    row = real_lab["solution"]
    assert row.mode == "sandbox" and row.status == "graded", row.notes
    assert row.total == row.max_total > 0, row.notes
    assert set(row.scores) == {q.name for q in g.read_master(REAL_LAB).questions}, row.scores
