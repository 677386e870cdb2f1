"""Each lab's claims hold for other seeds in the `ci` profile (``lab_checks.EXTRA_SEEDS``): the
numbers of one seed are not a lucky draw. Seed 0 and the `full` profile: test_labs.py."""
from __future__ import annotations

import pytest

import lab_checks
from notebooks import execute_once, glued, lab_notebooks

pytestmark = pytest.mark.notebook
RUNS = [(nb, seed) for nb in lab_notebooks() for seed in lab_checks.EXTRA_SEEDS.get(nb.stem, [])]


@pytest.mark.parametrize(("nb", "seed"), RUNS, ids=[f"{nb.stem}-seed{seed}" for nb, seed in RUNS])
def test_lab_claims_hold_for_other_seeds(nb, seed):
    out, _ = execute_once(nb, "ci", seed)
    lab_checks.__dict__[f"check_{nb.stem}"](glued(out), "ci")
