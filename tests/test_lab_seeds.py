"""Each lab's claims hold for other seeds in the `ci` profile (``lab_checks.EXTRA_SEEDS``): the
numbers of one seed are not a lucky draw. Seed 0 and the `full` profile: test_labs.py."""
from __future__ import annotations

import pytest

import lab_checks
from notebooks import execute_once, glued, lab_notebooks

pytestmark = pytest.mark.notebook
LABS = lab_notebooks()


@pytest.mark.parametrize("nb", LABS, ids=[p.stem for p in LABS])
def test_lab_claims_hold_for_other_seeds(nb):
    for seed in lab_checks.EXTRA_SEEDS.get(nb.stem, []):
        out, _ = execute_once(nb, "ci", seed)
        lab_checks.__dict__[f"check_{nb.stem}"](glued(out), "ci")
