"""The *collect* part, inside the sandbox: run a submission's notebook, then export plain data.

``python -m tlutils.grading.collect REQUEST.json`` executes the notebook named in the request with a
Jupyter kernel (errors do not stop it), then runs one more cell in the same kernel that exports the
variables the lab's tests take (:func:`tlutils.grading.plaindata.export_values`) and, for questions
whose tests must call the student's own functions, runs those tests there (their results are
marked as checked inside the submission). Everything written goes to the request's ``out`` folder,
the executed notebook too (``executed.ipynb``, unless it is longer than ``EXECUTED_MAX_CHARS``).
Nothing here is trusted by the grader: it reads the files back as data.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

EXECUTED_MAX_CHARS = 50_000_000   # a notebook that printed more than this is not saved as it ran
_EXPORT_CELL = "import tlutils.grading.collect as _tlutils_collect\n_tlutils_collect.export(globals(), {request!r})\n"


def export(env: dict, request_path: str) -> None:
    """Called in the student's kernel after their cells: write values and in-kernel test results."""
    from otter.test_files.exception_test import ExceptionTestFile

    from .plaindata import export_values

    req = json.loads(Path(request_path).read_text())
    out = Path(req["out"])
    export_values(env, list(req.get("names", [])), out)
    results: dict[str, Any] = {}
    for q, source in dict(req.get("inkernel", {})).items():
        try:
            tf = ExceptionTestFile.from_string(source, path=f"{q}.py")
            tf.run(env)
            results[q] = {"score": tf.score, "possible": tf.possible,
                          "failures": [str(r.message)[:600] for r in tf.test_case_results if not r.passed]}
        except Exception as e:
            results[q] = {"score": 0, "failures": [f"{type(e).__name__}: {e}"[:400]]}
    (out / "inkernel.json").write_text(json.dumps(results))


def main(argv: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient

    request = Path(argv[0])
    req = json.loads(request.read_text())
    out = Path(req["out"])
    info: dict[str, Any] = {"cell_errors": [], "error": None}
    try:
        nb = nbformat.read(req["notebook"], as_version=4)
        n_student = len(nb.cells)
        nb.cells.append(nbformat.v4.new_code_cell(_EXPORT_CELL.format(request=str(request))))
        client = NotebookClient(nb, timeout=None, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(Path(req["notebook"]).parent)}})
        client.execute()
        for i, cell in enumerate(nb.cells):
            for o in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
                if o.get("output_type") != "error":
                    continue
                if i >= n_student:
                    info["error"] = f"exporting the answers failed: {o.get('ename')}: {str(o.get('evalue'))[:300]}"
                    continue
                src = next((line for line in str(cell.get("source", "")).splitlines() if line.strip()), "")
                info["cell_errors"].append({"ename": str(o.get("ename")), "evalue": str(o.get("evalue"))[:300],
                                            "cell": src.strip()[:60]})
                print(f"cell {i} raised {o.get('ename')}: {str(o.get('evalue'))[:300]}", flush=True)
        # the submission as it ran, for an instructor who keeps the work folder (`--keep-work`)
        # and for the course's own tests; the grader never reads it, and it may be left out
        nb.cells = nb.cells[:n_student]
        text = nbformat.writes(nb)
        if len(text) <= EXECUTED_MAX_CHARS:
            try:
                (out / "executed.ipynb").write_text(text)
            except OSError as e:
                print(f"the executed notebook was not saved: {e}", flush=True)
    except BaseException as e:  # a dead kernel, a notebook nbclient cannot run
        info["error"] = (type(e).__name__ + ": " + str(e))[:2000]
        traceback.print_exc()
    import resource
    info["cpu_s"] = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                        for f in ("ru_utime", "ru_stime"))  # the notebook's CPU seconds, for the timing figures
    (out / "run.json").write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
