"""One patient-bootstrap rule for train and stats (xaikit._resampling), and the ci= spelling across the kit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xaikit import _resampling as R


def test_train_and_stats_share_one_implementation():
    from xaikit.stats import bootstrap as B
    from xaikit.train import metrics as M

    assert M.patient_bootstrap is R.patient_bootstrap and M.percentile_ci is R.percentile_ci
    assert B.cluster_bootstrap is R.cluster_bootstrap and B.percentile_ci is R.percentile_ci
    assert not hasattr(M, "bootstrap_ci")  # one bootstrap_ci in the kit: stats.bootstrap_ci (scipy)


def test_cluster_bootstrap_resamples_exactly_as_the_patient_weights_do():
    """Replicate b of cluster_bootstrap equals the statistic of the data weighted by patient_bootstrap's draw b
    (same seed): the two are one resampling rule, not two."""
    rng = np.random.default_rng(3)
    sizes = [3, 1, 2, 4, 1]
    clusters = [rng.normal(size=k) for k in sizes]
    values = np.concatenate(clusters)
    patients = np.repeat([f"p{i}" for i in range(len(sizes))], sizes)
    reps = R.cluster_bootstrap(np.mean, [clusters], n_boot=50, seed=11)
    weighted = [np.average(values, weights=w) for w in R.patient_bootstrap(patients, 50, seed=11)]
    np.testing.assert_allclose(reps, weighted, rtol=1e-12)


def test_patient_weights_count_draws_of_whole_patients():
    patients = ["a", "a", "b", "c", "c", "c"]
    for w in R.patient_bootstrap(patients, 30, seed=0):
        assert w[0] == w[1] and w[3] == w[4] == w[5]                  # a patient's images move together
        assert w[0] + w[2] + w[3] == 3                                # three patients drawn per resample


def test_percentile_ci_against_numpy_and_with_nan():
    x = np.random.default_rng(0).normal(size=1001)
    np.testing.assert_allclose(R.percentile_ci(x, 0.9), np.percentile(x, [5, 95]), rtol=1e-12)
    with_nan = np.concatenate([x, [np.nan] * 10])
    assert R.percentile_ci(with_nan, 0.9) == R.percentile_ci(x, 0.9)
    assert all(np.isnan(R.percentile_ci(np.full(4, np.nan))))
    assert all(np.isnan(R.percentile_ci(np.array([]))))


def test_level_is_no_keyword_any_more():
    from xaikit.train import assess_predictions, box_scores, segmentation_scores

    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    prob = np.stack([1 - np.linspace(0.1, 0.9, 8), np.linspace(0.1, 0.9, 8)], 1)
    assert assess_predictions(y, prob, classes=["a", "b"], n_boot=50, ci=0.8).params["ci"] == 0.8
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.7], [0.0, 0.3, 0.4, 0.9]])
    maps = np.random.default_rng(0).integers(0, 2, (4, 6, 6))
    for call in (lambda: assess_predictions(y, prob, classes=["a", "b"], n_boot=5, level=0.8),
                 lambda: box_scores(boxes, boxes + 0.05, n_boot=20, level=0.8),
                 lambda: segmentation_scores(maps, maps[::-1], ["bg", "fg"], n_boot=20, level=0.8)):
        with pytest.raises(TypeError, match="level"):
            call()
