"""Known answers for the L1 prior on predicted changes (``TrainConfig.shrink``) and for the
``additive_shrunk`` baseline (issue 11, goal 2)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from lazynet_core import datasets
from lazynet_core.config import PairConfig, TrainConfig, recipe_configs
from lazynet_core.data import read_screen
from lazynet_core.metrics import SHRINK_SE, baseline_predictions, soft_threshold_delta
from lazynet_core.pairs import make_pairs
from lazynet_core.train import _loss, _shrink_penalty, _shrink_weights, train_ensemble


def test_soft_threshold_by_hand():
    delta = np.array([-3.0, -0.5, 0.0, 0.8, 2.5])
    se = np.array([1.0, 1.0, 1.0, 0.5, 0.5])
    assert_allclose(soft_threshold_delta(delta, se, 2.0), [-1.0, 0.0, 0.0, 0.0, 1.5])


def test_shrink_weights_per_perturbation():
    pairs = SimpleNamespace(
        cell_pert=np.array([-1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]),
        cell_role=np.array(["train"] * 15 + ["test"]),
        perturbations=np.array(["A", "B", "C"]),
    )
    weight = _shrink_weights(pairs, TrainConfig(shrink=3.0))
    assert_allclose(weight, [2 * 3 / 2, 2 * 3 / 3, 0.0, 0.0])  # C has no training cell; -1 -> last, 0
    assert _shrink_weights(pairs, TrainConfig()) is None


def test_penalised_optimum_is_the_soft_thresholded_mean():
    # A free change z per gene fitted to one perturbation's pairs (delta targets: every pair the same)
    # under the standardised loss plus the penalty: the optimum is the mean change soft-thresholded at
    # `shrink` standard errors of an n-cell mean with the gene scale as the cell sd. The objective is
    # convex and separable over genes, so a point is its minimum iff no single gene's step, either
    # way, lowers it: checked exactly in float64 rather than by running an optimiser on the L1 kink.
    n_cells, shrink = 25, 2.0
    scale = torch.tensor([0.5, 1.0, 2.0, 1.0, 0.8], dtype=torch.float64)
    delta = torch.tensor([0.1, 0.9, -1.5, 0.3, -0.05], dtype=torch.float64)
    pre = torch.ones(8, 5, dtype=torch.float64)
    post = pre + delta
    weight = np.full(8, 2 * shrink / np.sqrt(n_cells))

    def objective(z):
        pred = pre + torch.as_tensor(z, dtype=torch.float64)
        return float(_loss(pred, post, scale, TrainConfig()) + _shrink_penalty(pred, pre, weight, scale))

    expected = soft_threshold_delta(delta.numpy(), scale.numpy() / np.sqrt(n_cells), shrink)
    assert expected[0] == 0 and expected[3] == 0 and expected[1] != 0  # some genes cut, some kept
    best = objective(expected)
    for gene in range(5):
        for step in (-1e-4, 1e-4):
            moved = expected.copy()
            moved[gene] += step
            assert objective(moved) > best, (gene, step)
    # the unshrunk mean and a threshold at half the SEs are both worse
    assert objective(delta.numpy()) > best
    half = soft_threshold_delta(delta.numpy(), scale.numpy() / np.sqrt(n_cells), shrink / 2)
    assert objective(half) > best


@pytest.fixture(scope="module")
def doubles_pairs():
    adata = read_screen(datasets.hill_screen(n_genes=40, n_cells=1500, seed=3, n_combinations=3))
    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    return make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, seed=0))


def _shrunk_by_hand(pairs, p, base):
    """Perturbation ``p``'s training delta soft-thresholded at SHRINK_SE, dense; None untrained."""
    X = pairs.X.toarray().astype(np.float64)
    own, ctrl = X[pairs.cells(p, "train")], X[pairs.cells(-1, "train")]
    if len(own) == 0:
        return None
    se = np.sqrt(own.var(0, ddof=1) / len(own) + ctrl.var(0, ddof=1) / len(ctrl))
    return soft_threshold_delta(own.mean(0) - base, se, SHRINK_SE)


def test_additive_shrunk_by_hand(doubles_pairs):
    pairs = doubles_pairs
    preds = baseline_predictions(pairs)
    evals = pairs.evaluation_perturbations("test")
    base = pairs.control_mean("train").astype(np.float64)

    def shrunk_arm(gene):
        q = next(i for i, t in enumerate(pairs.pert_targets) if list(t) == [gene])
        return _shrunk_by_hand(pairs, q, base)

    checked = 0
    for row, p in enumerate(evals):
        targets = list(pairs.pert_targets[p])
        if len(targets) < 2:
            continue
        keep = np.setdiff1d(np.arange(pairs.n_genes), targets)
        expected = base + sum(shrunk_arm(g) for g in targets)
        assert_allclose(preds["additive_shrunk"][row, keep], expected[keep], rtol=1e-4, atol=1e-5)
        # the same shrunk arms added in counts: log1p(Σ expm1(base + d_a) − (n − 1)·expm1(base))
        summed = sum(np.expm1(base + shrunk_arm(g)) for g in targets) - (len(targets) - 1) * np.expm1(base)
        counts = np.log1p(np.clip(summed, 0.0, None))
        assert_allclose(preds["additive_counts_shrunk"][row, keep], counts[keep], rtol=1e-4, atol=1e-5)
        # and their fold changes multiplied: log1p(expm1(base) · Π expm1(base + d_a) / expm1(base))
        on = keep[np.expm1(base[keep]) > 0]
        e0 = np.expm1(base[on])
        folds = [np.clip(np.expm1(base[on] + shrunk_arm(g)[on]), 0.0, None) / e0 for g in targets]
        product = preds["multiplicative_counts_shrunk"][row, on]
        assert_allclose(product, np.log1p(e0 * np.prod(folds, axis=0)), rtol=1e-4, atol=1e-5)
        assert not np.allclose(product, counts[on], atol=1e-3)  # not the count-space sum
        moved = preds["additive"][row, keep] - base[keep]
        assert np.abs(expected[keep] - base[keep]).sum() < np.abs(moved).sum()  # shrunk toward no change
        checked += 1
    assert checked == 3


def test_own_training_mean_shrunk_by_hand(doubles_pairs):
    pairs = doubles_pairs
    preds = baseline_predictions(pairs)
    evals = pairs.evaluation_perturbations("test")
    base = pairs.control_mean("train").astype(np.float64)
    checked = 0
    for row, p in enumerate(evals):
        shrunk = _shrunk_by_hand(pairs, p, base)
        if shrunk is None:
            assert np.isnan(preds["own_training_mean_shrunk"][row]).all()  # never trained on
            continue
        keep = np.setdiff1d(np.arange(pairs.n_genes), pairs.pert_targets[p])
        expected = base + shrunk
        assert_allclose(preds["own_training_mean_shrunk"][row, keep], expected[keep], rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked >= 5


def test_shrink_sets_small_changes_of_trained_perturbations_to_zero(doubles_pairs):
    pairs = doubles_pairs
    model_config, _ = recipe_configs("anchored")
    changes = {}
    for shrink in (0.0, 2.0):
        ens = train_ensemble(pairs, model_config=model_config,
                             train_config=TrainConfig(replicas=1, epochs=15, shrink=shrink))
        trained = [p for p in range(len(pairs.perturbations))
                   if len(pairs.cells(p, "train")) and len(pairs.pert_targets[p]) == 1]
        pre = np.stack([pairs.pre_state(p, "train") for p in trained])
        changes[shrink] = (ens.predict(pre) - pre) / pairs.gene_scale()
    small = {s: float(np.mean(np.abs(c) < 0.05)) for s, c in changes.items()}
    assert small[2.0] > small[0.0] + 0.2  # most genes of a knock-down do not move: their noise is cut
    assert np.abs(changes[2.0]).mean() < 0.7 * np.abs(changes[0.0]).mean()
