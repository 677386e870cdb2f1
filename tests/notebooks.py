"""Execute lab notebooks with papermill, build the book, and read back what they recorded with ``glue``.

Used by the harness (``test_labs.py``), the book tests and the grading tests. Papermill's
executed copies go to ``tests/_artifacts/`` (not committed), with each run's wall time in
``timings.csv``; the book is built where ``make book`` builds it, so the numbers the tests
check in the ``full`` profile are the numbers the website shows.
"""
from __future__ import annotations

import ast
import csv
import fcntl
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
ARTIFACTS = ROOT / "tests" / "_artifacts"
CI_BUDGET_S = 150.0
"""The course's target for a `ci` run is 75 s on an idle 2-core CPU; the harness holds each run to
150 CPU seconds (75 on each core) of its kernel and worker processes, a figure that depends far
less than wall time on what else the machine runs (`make test` runs several processes on two
cores), on a machine as fast as the one the budget was set on: on a slower one the budget grows by
:func:`slowdown` (the same work takes more CPU seconds there). A lab that fits the CPU figure can
still miss the wall-time target: the README states the measured wall times."""
REFERENCE_STEPS_PER_CPU_S = 25.0
"""Training steps per CPU second of :func:`speed`'s workload on this project's machine on a day when
the labs run at the speed of the README's timing table. Measured on 2026-12-02: 12.4 to 13.9 on an
idle machine on which the feature-hierarchy and BatchNorm `ci` runs, alone, took 1.96 times the
table's CPU seconds (49 and 130 against 25 and 66), so about 25 on the table's day."""


def speed(seconds: float = 3.0) -> float:
    """Training steps per CPU second of a fixed workload, one thread: the course's ResNet, SGD, a batch
    of 32 random 32x32 images, as in the labs' training loops."""
    import torch
    from tlutils import models

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = models.resnet_small(10)
            x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(3):  # warm-up
            step()
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            step()
            n += 1
        return n / (time.process_time() - t0)
    finally:
        torch.set_num_threads(threads)


def speed_measured() -> float:
    """:func:`speed`, measured once per test run (`make test` measures it before anything else runs)."""
    path = ARTIFACTS / "speed.txt"
    run = test_run_id()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and path.read_text().split()[0] == run:
            return float(path.read_text().split()[1])
        measured = speed()
        path.write_text(f"{run} {measured:.2f}")
        return measured


def slowdown() -> float:
    """How many times slower than the reference machine this one runs :func:`speed`'s workload (at least 1)."""
    return max(1.0, REFERENCE_STEPS_PER_CPU_S / speed_measured())


def ci_budget_s() -> float:
    """:data:`CI_BUDGET_S` on this machine: grown by :func:`slowdown`."""
    return CI_BUDGET_S * slowdown()


def lab_notebooks() -> list[Path]:
    """Every lab notebook under ``labs/`` (found by itself: adding a lab needs no change here)."""
    return sorted(p for p in LABS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_run_id() -> str:
    """One id per test run: `make test` sets TLUTILS_TEST_RUN for both of its pytest processes (so the
    book's process reuses the ci runs of the other one), pytest-xdist gives its workers one."""
    return (os.environ.get("TLUTILS_TEST_RUN") or os.environ.get("PYTEST_XDIST_TESTRUNUID")
            or f"pid{os.getpid()}")


def execute_once(nb: Path, profile: str = "ci", seed: int = 0) -> tuple[Path, float]:
    """:func:`execute`, once per test run across pytest-xdist workers: a worker that needs a run
    another one started waits for it and reads its executed copy (test_labs.py and test_lab_seeds.py
    run on different workers; the book's process reads the seed-0 runs for the instructor edition)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{nb.stem}.{profile}.seed{seed}.ipynb"
    run = test_run_id()
    done = out.with_suffix(".done")
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text().split()[0] == run:
            return out, float(done.read_text().split()[1])
        out, seconds = execute(nb, profile, seed)
        done.write_text(f"{run} {seconds}")
        return out, seconds


def execute(nb: Path, profile: str = "ci", seed: int = 0, out_dir: Path = ARTIFACTS) -> tuple[Path, float]:
    """Run ``nb`` with papermill; return the executed copy and the CPU seconds it took (kernel and
    its workers; its wall time goes to ``timings.csv`` beside them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{nb.stem}.{profile}.seed{seed}.ipynb"
    env_before = os.environ.get("TLUTILS_PROFILE")
    os.environ.pop("TLUTILS_PROFILE", None)  # the parameter, not the environment, decides
    t, cpu = time.perf_counter(), _children_cpu()
    try:
        pm.execute_notebook(str(nb), str(out), parameters={"profile": profile, "seed": seed},
                            cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
    finally:
        if env_before is not None:
            os.environ["TLUTILS_PROFILE"] = env_before
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - cpu
    _log_time(nb.stem, profile, seed, elapsed, cpu)
    return out, cpu


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: a notebook's kernel and
    the workers it started, once the kernel has exited."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _log_time(name: str, profile: str, seed: int, seconds: float, cpu: float | None = None) -> None:
    path = ARTIFACTS / "timings.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["notebook", "profile", "seed", "wall_s", "cpu_s", "cpu_budget_s"])
        w.writerow([name, profile, seed, f"{seconds:.1f}", "" if cpu is None else f"{cpu:.1f}",
                    f"{ci_budget_s():.0f}" if profile == "ci" else ""])


def glued(nb: Path | nbformat.NotebookNode) -> dict:
    """The values a notebook recorded with ``glue``, parsed back into Python objects.

    Numbers, strings, lists and dicts come back as such (from their ``text/plain``
    form); figures and other rich outputs come back as their mime type name.
    """
    if not isinstance(nb, nbformat.NotebookNode):
        nb = nbformat.read(str(nb), as_version=4)
    values: dict = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = out.get("data", {})
            prefix = meta.get("mime_prefix", "")
            text = data.get(prefix + "text/plain")
            if any(k.startswith(prefix + "image/") for k in data):
                values[meta["name"]] = "figure"
            elif text is not None:
                text = "".join(text) if isinstance(text, list) else text
                try:
                    values[meta["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[meta["name"]] = text
    return values


class Book:
    """A built edition of the website: where its HTML is, and what its labs recorded."""

    def __init__(self, edition: str, profile: str, executed: dict[str, Path] | None = None):
        """``executed``: papermill copies of the labs (instructor edition only), shown as they are
        instead of being executed again by the build."""
        self.edition, self.profile, self.executed_copies = edition, profile, executed or {}
        # the same folders as `make book`, `make book-instructor` and `make book-ci`
        base = ROOT / ("_build" if profile == "full" else "_build_ci")
        self.src = base / "src" / edition
        self.out = ROOT if (profile, edition) == ("full", "student") else (
            base / "instructor" if edition == "instructor" else base)
        self.html = self.out / "_build" / "html"
        self.cache = self.out / "_build" / ".jupyter_cache"

    def build(self) -> "Book":
        """Stage the edition's sources and build it (`-W -n --keep-going`, the book's own settings).

        Executed labs come from the jupyter cache when neither their cells nor tlutils changed.
        One build per test run: a second process (or worker) that asks for the same edition waits
        here for the first one's build and then uses it.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        run = test_run_id()
        built = self.out / f".book-{self.edition}.built"
        with open(self.out / f".book-{self.edition}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if built.exists() and built.read_text() == run:
                return self
            built.unlink(missing_ok=True)
            self._build()
            built.write_text(run)
            return self

    def _build(self) -> "Book":
        py = sys.executable
        executed = ["--executed", *map(str, self.executed_copies.values())] if self.executed_copies else []
        subprocess.run([py, "-m", "tlutils.grading", "stage-book", "--edition", self.edition, "--dest", str(self.src),
                        *executed], check=True, cwd=ROOT)
        env = {k: v for k, v in os.environ.items() if k != "TLUTILS_PROFILE"}
        if self.profile == "ci":
            env["TLUTILS_PROFILE"] = "ci"
        # as `make book` does: the labs two at a time into the cache (emptied first if another
        # tlutils filled it), which the build then reads
        r = subprocess.run([py, "-m", "tlutils.grading", "execute-book", str(self.src), "--cache", str(self.cache)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"the {self.edition} book's labs ({self.profile}) failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        r = subprocess.run([str(Path(py).with_name("jupyter-book")), "build", str(self.src), "-W", "-n", "--keep-going",
                            "--all", "--path-output", str(self.out)], capture_output=True, text=True, env=env)
        (ARTIFACTS).mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"book-{self.edition}-{self.profile}.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"the {self.edition} book ({self.profile}) did not build:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        for lab in lab_notebooks():
            if lab.stem not in self.executed_copies:
                _log_time(f"{lab.stem} (book)", self.profile, 0, self.execution_seconds(lab.stem))
        return self

    def _record(self, lab: str):
        from jupyter_cache import get_cache

        return get_cache(str(self.cache)).match_cache_file(str(self.src / "labs" / f"{lab}.ipynb"))

    def executed(self, lab: str) -> nbformat.NotebookNode:
        """The lab as this build executed it (or showed its executed copy), with every output (glue included)."""
        from jupyter_cache import get_cache

        if lab in self.executed_copies:
            return nbformat.read(str(self.src / "labs" / f"{lab}.ipynb"), as_version=4)
        return get_cache(str(self.cache)).get_cache_bundle(self._record(lab).pk).nb

    def glued(self, lab: str) -> dict:
        """What the lab recorded in this build: the numbers its pages show."""
        return glued(self.executed(lab))

    def execution_seconds(self, lab: str) -> float:
        return float(self._record(lab).data.get("execution_seconds") or "nan")
