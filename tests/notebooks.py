"""Execute lab notebooks with papermill and read back what they recorded with ``glue``.

Used by the harness (``test_labs.py``) and the grading tests. Executed copies go to
``tests/_artifacts/`` (not committed), with each run's wall time in ``timings.csv``.
"""
from __future__ import annotations

import ast
import csv
import os
import time
from pathlib import Path

import nbformat
import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
ARTIFACTS = ROOT / "tests" / "_artifacts"
CI_BUDGET_S = 90.0


def lab_notebooks() -> list[Path]:
    """Every lab notebook under ``labs/`` (found by itself: adding a lab needs no change here)."""
    return sorted(p for p in LABS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(nb: Path, profile: str = "ci", seed: int = 0, out_dir: Path = ARTIFACTS) -> tuple[Path, float]:
    """Run ``nb`` with papermill; return the executed copy and its wall time in seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{nb.stem}.{profile}.seed{seed}.ipynb"
    env_before = os.environ.get("TLUTILS_PROFILE")
    os.environ.pop("TLUTILS_PROFILE", None)  # the parameter, not the environment, decides
    t = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters={"profile": profile, "seed": seed},
                            cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
    finally:
        if env_before is not None:
            os.environ["TLUTILS_PROFILE"] = env_before
    elapsed = time.perf_counter() - t
    _log_time(nb.stem, profile, seed, elapsed)
    return out, elapsed


def _log_time(name: str, profile: str, seed: int, seconds: float) -> None:
    path = ARTIFACTS / "timings.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["notebook", "profile", "seed", "seconds", "budget_s"])
        w.writerow([name, profile, seed, f"{seconds:.1f}", CI_BUDGET_S if profile == "ci" else ""])


def glued(nb_path: Path) -> dict:
    """The values a notebook recorded with ``glue``, parsed back into Python objects.

    Numbers, strings, lists and dicts come back as such (from their ``text/plain``
    form); figures and other rich outputs come back as their mime type name.
    """
    nb = nbformat.read(str(nb_path), as_version=4)
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
