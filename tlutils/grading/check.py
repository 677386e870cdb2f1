"""The *check* part, in a fresh grader process: run the lab's tests on a submission's exported data.

``python -m tlutils.grading.check TESTS_DIR VALUES_DIR RESULT.json`` loads the values that
:mod:`tlutils.grading.collect` exported (JSON, and tensors with ``weights_only=True``), runs every
otter test file of ``TESTS_DIR`` on them and writes ``{question: {score, possible, failures}}``. No
code of the submission runs here, so nothing it patched in its own process reaches the checks.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def check(tests_dir: Path | str, values_dir: Path | str) -> dict[str, Any]:
    """Scores of each test file of ``tests_dir`` on the values exported into ``values_dir``."""
    from otter.test_files.exception_test import ExceptionTestFile

    _import_named_modules(Path(values_dir) / "values.json")

    from .plaindata import load_values

    try:
        env, problems = load_values(values_dir)
    except Exception as e:  # no or malformed export: every test fails with this reason
        env, problems = {}, {"*": f"no answers could be read from the submission ({type(e).__name__}: {str(e)[:200]})"}
    results: dict[str, Any] = {}
    for path in sorted(Path(tests_dir).glob("*.py")):
        tf = ExceptionTestFile.from_file(str(path))
        missing: list[str] = []
        for tc in tf.test_cases:
            for p in tc.body._get_func_params():
                why = problems.get(p) or problems.get("*") or (None if p in env else f"`{p}` is not defined")
                if why and why not in missing:
                    missing.append(why)
        try:
            tf.run(env)
            failures = [str(r.message)[:600] for r in tf.test_case_results if not r.passed]
            score = tf.score
        except Exception as e:
            failures, score = [f"{type(e).__name__}: {e}"[:400]], 0
        results[tf.name] = {"score": score, "possible": tf.possible, "failures": missing + failures if score < tf.possible else []}
    return results


def _import_named_modules(values_json: Path) -> None:
    """Import the trusted packages whose classes the export names (only those: imports cost
    seconds per submission): torchvision, numpy, and modules of tlutils."""
    import importlib
    import re

    import tlutils

    try:
        text = values_json.read_text()
    except OSError:
        return
    for module in set(re.findall(r'"__(?:object|global)__": "([\w.]+):', text)):
        parts = module.split(".")
        if parts[0] in ("torchvision", "numpy"):
            importlib.import_module(parts[0])
        elif parts[0] == "tlutils" and len(parts) > 1 and parts[1] in tlutils._MODULES and parts[1] != "grading":
            importlib.import_module(f"tlutils.{parts[1]}")


def main(argv: list[str]) -> int:
    import resource

    tests_dir, values_dir, result = argv[:3]
    results = check(tests_dir, values_dir)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(result).write_text(json.dumps({**results, "_cpu_s": usage.ru_utime + usage.ru_stime}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
