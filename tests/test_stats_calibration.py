"""Under the null the family-wise false-positive rate of Holm's correction stays at or below alpha."""
from __future__ import annotations

import pytest
from scipy import stats

from xaikit.stats import null_fwer

REPS, ALPHA = 80, 0.05


@pytest.mark.parametrize("mode", ["random_maps", "permuted_labels"])
def test_holm_keeps_the_family_wise_error(mode):
    runs = null_fwer(REPS, mode=mode, n_images=24, size=12, grid_shape=(2, 2), n_methods=2, alpha=ALPHA, seed=3)
    assert (runs["n_tests"] == 8).all()
    # a binomial upper bound: with a true FWER of alpha this count is exceeded with probability < 0.001
    assert runs["any_adj"].sum() <= stats.binom.ppf(0.999, REPS, ALPHA)
    # the uncorrected family rejects far more often: the check has teeth
    assert runs["any_raw"].sum() > runs["any_adj"].sum()
    assert runs["any_raw"].mean() > 2 * ALPHA
