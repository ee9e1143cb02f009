"""Known answers for ``observational.slope_agreement``: how reproducible a screen's covariance
slopes are (issue 11: why pooling the perturbed cells helps on the synthetic screens, not the real one)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lazynet_core.observational import slope_agreement
from tests.test_metrics import make_fake


def _screen(n_controls: int, *, coupled: bool, n_genes: int = 12, seed: int = 0, perturbed: int = 0):
    """Controls (and ``perturbed`` cells of two trained perturbations, each shifted) whose genes are
    driven by one shared factor with per-gene loadings (``coupled``) or are independent noise."""
    rng = np.random.default_rng(seed)
    loading = rng.normal(0.0, 1.0, n_genes)

    def cells(n, shift):
        factor = rng.normal(0.0, 1.0, (n, 1)) if coupled else np.zeros((n, 1))
        return 10.0 + shift + factor * loading + rng.normal(0.0, 0.3 if coupled else 1.0, (n, n_genes))

    rows = [cells(n_controls, 0.0)] + [cells(perturbed, rng.normal(0.0, 3.0, n_genes)) for _ in range(2)]
    cell_pert = [-1] * n_controls + [0] * perturbed + [1] * perturbed
    return make_fake(np.vstack(rows), cell_pert, ["train"] * len(cell_pert), ["A", "B"], [[0], [1]])


def test_shared_co_variation_is_reproducible_and_noise_is_not():
    coupled = slope_agreement(_screen(400, coupled=True, perturbed=200))
    noise = slope_agreement(_screen(400, coupled=False, perturbed=200))
    assert coupled.n_half == 200 and coupled.n_perturbed == 400 and coupled.n_genes == 12
    assert coupled.controls_vs_controls > 0.95
    # the perturbed cells co-vary like the controls once each group is centred (their shifts never enter)
    assert coupled.controls_vs_perturbed > 0.95
    assert abs(noise.controls_vs_controls) < 0.3 and abs(noise.controls_vs_perturbed) < 0.3


def test_more_cells_make_the_same_co_variation_more_reproducible():
    few, many = (slope_agreement(_screen(n, coupled=True, n_genes=30, seed=1)) for n in (8, 2000))
    assert few.controls_vs_controls < many.controls_vs_controls
    assert np.isnan(many.controls_vs_perturbed)  # no perturbed cells to compare with


def test_gene_sample_and_degenerate_screens():
    pairs = _screen(300, coupled=True, n_genes=40)
    sampled = slope_agreement(pairs, max_genes=10)
    assert sampled.n_genes == 10 and sampled.controls_vs_controls > 0.9
    np.testing.assert_equal(dataclasses.astuple(slope_agreement(pairs, max_genes=10)),
                            dataclasses.astuple(sampled))  # seeded (NaN equal to NaN)
    tiny = slope_agreement(_screen(4, coupled=True))
    assert tiny.n_half == 2 and np.isnan(tiny.controls_vs_controls)
    with pytest.raises(ValueError, match="max_genes >= 2"):
        slope_agreement(pairs, max_genes=1)


def test_streamed_pairs_score_the_controls_only():
    pairs = _screen(300, coupled=True, perturbed=100)
    object.__setattr__(pairs, "streamed", True)  # as pairs streamed from disk say: no perturbed rows held
    result = slope_agreement(pairs)
    assert result.n_perturbed == 0 and np.isnan(result.controls_vs_perturbed)
    assert result.controls_vs_controls > 0.9


def test_perturbed_cells_are_centred_on_their_whole_group_by_hand():
    """The sparse form equals the dense one: picked cells centred on their whole group's mean (every
    gene), slopes from the picked rows only."""
    from scipy import sparse

    from lazynet_core.observational import _pooled_slope_columns

    rng = np.random.default_rng(0)
    X = sparse.csr_matrix(rng.poisson(2.0, (300, 15)).astype(np.float32))
    cells, genes = np.arange(40, 300), np.array([1, 4, 7])
    groups = rng.integers(1, 6, len(cells))
    pick = np.sort(rng.choice(len(cells), 60, replace=False))
    dense = X.toarray().astype(np.float64)[cells]
    means = np.stack([dense[groups == g].mean(axis=0) if (groups == g).any() else np.zeros(15)
                      for g in range(6)])
    centred = (dense - means[groups])[pick]
    by_hand = centred.T @ centred[:, genes] / (centred[:, genes] ** 2).sum(axis=0)
    np.testing.assert_allclose(_pooled_slope_columns(X, cells, groups, pick, genes), by_hand, atol=1e-12)


def test_a_constant_float32_gene_is_not_scored():
    pairs = _screen(200, coupled=True, n_genes=6)
    x = pairs.X.toarray().astype(np.float32)
    x[:, 2] = np.float32(10.3)  # E[x²] − E[x]² of a float32 constant is not exactly 0
    pairs = make_fake(x, list(pairs.cell_pert), list(pairs.cell_role), ["A", "B"], [[0], [1]])
    assert slope_agreement(pairs).n_genes == 5
