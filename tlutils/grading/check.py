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

    import importlib

    import torchvision  # noqa: F401  (the trusted classes the values are rebuilt with)

    import tlutils

    for name in tlutils._MODULES:
        if name not in ("grading", "explore"):  # explore: widgets, no classes a test takes
            importlib.import_module(f"tlutils.{name}")

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


def main(argv: list[str]) -> int:
    import resource

    tests_dir, values_dir, result = argv[:3]
    results = check(tests_dir, values_dir)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(result).write_text(json.dumps({**results, "_cpu_s": usage.ru_utime + usage.ru_stime}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
