"""Known answers for the pooled covariance (issue 11): control cells and trained perturbations'
training cells, each group centred on its own mean, as a baseline and as the anchored model's start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lazynet_core.config import ModelConfig, PairConfig, TrainConfig, recipe_configs, recipe_name
from lazynet_core.data import read_screen
from lazynet_core.errors import TrainingError
from lazynet_core.metrics import baseline_predictions
from lazynet_core.pairs import make_pairs
from lazynet_core.train import control_regression, train_ensemble
from tests.test_metrics import make_fake
from tests.test_unseen_target import _screen


def _hand_screen():
    """Controls: g1 = 2·g0 (slope 2). Trained perturbation A (target g2), shifted on every gene: within
    it g1 falls as g0 rises (slope −1). U (target g0) is held out."""
    ctrl = np.column_stack([[5.0, 6.0, 7.0, 8.0], [5.0, 7.0, 9.0, 11.0], [5.0, 5.0, 5.0, 5.0]])
    group_a = np.array([[10.0, 8.0, 1.0], [12.0, 6.0, 1.0]])  # centred: g0 ∓1, g1 ±1, g2 constant
    far = [[30.0, -40.0, 1.0], [-20.0, 50.0, 9.0]]  # held-out cells far off: they must not count
    rows = np.vstack([ctrl, group_a, far[:1], [[5.0, 9.0, 5.0]], far[1:], [[6.0, 8.0, 5.0]]])
    return make_fake(
        rows,
        [-1] * 4 + [0, 0, 0, 1, 1, -1],
        ["train"] * 6 + ["test", "test", "test", "reference"],  # A's test cell; U (held out): two cells
        ["A", "U"],
        [[2], [0]],
    )


def test_pooled_covariance_by_hand():
    fake = _hand_screen()
    preds = baseline_predictions(fake, perturbations=[1])
    base = fake.X[:4].toarray().mean(axis=0)
    delta_u = (5.0 - 20.0) / 2 - base[0]  # U's level: the mean of its two held-out cells
    # Σ centred g0·g1 over both groups / Σ centred g0²: (10 − 2) / (5 + 2); the groups' shifts never enter
    assert_allclose(preds["pooled_covariance"][0] - base, [delta_u, 8 / 7 * delta_u, 0.0], atol=1e-9)
    assert_allclose(preds["control_covariance"][0] - base, [delta_u, 2 * delta_u, 0.0], atol=1e-9)


def test_group_shifts_do_not_bias_the_pooled_slope():
    """i = 0.6·u + noise within every group; the groups' means move u and i in opposite directions
    (pooling them uncentred would give a negative slope). Few controls, many perturbed cells."""
    rng = np.random.default_rng(3)
    rows, cell_pert = [], []
    for group, n in [(-1, 20)] + [(g, 60) for g in range(10)]:
        shift = 0.0 if group < 0 else rng.normal(0.0, 3.0)
        u = rng.normal(0.0, 1.0, n) + shift
        i = 0.6 * (u - shift) - shift + rng.normal(0.0, 0.5, n)
        rows.append(np.column_stack([u, i, rng.normal(0.0, 1.0, n)]) + 10.0)
        cell_pert += [group] * n
    rows.append([[8.0, 10.0, 10.0]])
    cell_pert.append(10)
    labels = [f"P{g}" for g in range(10)] + ["U"]
    fake = make_fake(np.vstack(rows), cell_pert, ["train"] * (len(cell_pert) - 1) + ["test"], labels,
                     [[2]] * 10 + [[0]])
    reg = control_regression(fake, cells="pooled")
    assert reg[1, 0] == pytest.approx(0.6, abs=0.06)  # standard error ≈ 0.02
    x = np.vstack(rows[1:-1])
    assert np.polyfit(x[:, 0], x[:, 1], 1)[0] < 0  # what uncentred pooling would have said


def test_the_pooled_start_and_the_pooled_baseline_are_one_regression():
    pairs = make_pairs(read_screen(_screen()), PairConfig(held_out=("U",)))
    p = int(np.flatnonzero(pairs.perturbations == "U")[0])
    base = pairs.control_mean("train").astype(np.float64)
    pre = pairs.pre_state(p, "test")
    baseline = baseline_predictions(pairs, perturbations=[p])["pooled_covariance"][0] - base
    column = control_regression(pairs, cells="pooled")[:, 0].astype(np.float64) * (pre[0] - base[0])
    keep = np.arange(pairs.n_genes) != 0
    assert_allclose(baseline[keep], column[keep], rtol=1e-4, atol=1e-6)
    controls_only = control_regression(pairs)
    assert not np.allclose(controls_only, control_regression(pairs, cells="pooled"), atol=1e-3)


def test_anchored_pooled_predicts_an_unseen_target_by_the_pooled_regression():
    model_config, pair_config = recipe_configs("anchored_pooled", pair_config=PairConfig(held_out=("U",)))
    assert model_config.covariance_cells == "pooled"
    assert recipe_name(model_config, pair_config) == "anchored_pooled"
    custom = recipe_name(model_config.replace(anchor=False), pair_config)
    assert custom.startswith("custom") and "pooled cells" in custom
    pairs = make_pairs(read_screen(_screen()), pair_config)
    ens = train_ensemble(pairs, model_config, TrainConfig(replicas=1, epochs=40, threads=1))
    p = int(np.flatnonzero(pairs.perturbations == "U")[0])
    base = pairs.control_mean("train").astype(np.float64)
    pred = ens.predict(pairs.pre_state(p, "test")[None, :].astype(np.float32))[0] - base
    preds = baseline_predictions(pairs, perturbations=[p])
    keep = np.arange(pairs.n_genes) != 0
    pooled = preds["pooled_covariance"][0] - base
    controls = preds["control_covariance"][0] - base
    # the frozen column keeps the start's direction (its scale trains): the pooled regression's, not
    # the controls' (the two correlate 0.998 here, so the test asks for 100× closer to the pooled one)
    r_pooled, r_controls = (np.corrcoef(pred[keep], ref[keep])[0, 1] for ref in (pooled, controls))
    assert r_pooled > 0.9999 and 1 - r_pooled < 0.01 * (1 - r_controls)
    assert pred[2] > 0.25  # D rises when U (which co-varies with its repressor P) is knocked down


def test_pooled_needs_the_perturbed_rows_and_a_covariance_start():
    streamed = dataclasses.replace(_hand_screen())
    object.__setattr__(streamed, "streamed", True)  # as StreamedPairs: only control rows are held
    preds = baseline_predictions(streamed, perturbations=[1])
    assert np.isnan(preds["pooled_covariance"]).all() and np.isfinite(preds["control_covariance"]).all()
    with pytest.raises(TrainingError, match="streamed"):
        control_regression(streamed, cells="pooled")
    with pytest.raises(ValueError, match="covariance_cells='pooled' needs start"):
        ModelConfig(covariance_cells="pooled")
    with pytest.raises(ValueError, match="covariance_cells must be"):
        ModelConfig(start="control_covariance", covariance_cells="perturbed")
    assert ModelConfig.from_dict({"start": "control_covariance"}).covariance_cells == "controls"  # old runs
