"""Chosen splits, the independent reference and cross-validation over perturbations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
from lazynet_core.errors import ScreenError, TrainingError
from lazynet_core.pairs import make_pairs
from lazynet_core.train import train_ensemble
from lazynet_core.validation import cross_validate, fold_plan

FAST = TrainConfig(replicas=1, epochs=3, batch_size=32)


def test_reference_controls_are_held_out_of_everything(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(reference_fraction=0.3))
    controls = np.flatnonzero(pairs.cell_pert == -1)
    reference = pairs.cells(-1, "reference")
    assert len(reference) == round(0.3 * len(controls))
    assert not np.isin(reference, pairs.cells(-1, "train")).any()
    epoch = pairs.sample_epoch(np.random.default_rng(0))
    assert not np.isin(epoch.pool_cells, reference).any()  # never a pre-state
    assert not np.isin(epoch.post_idx, reference).any()  # never a post-state
    off = make_pairs(toy_adata, PairConfig(reference_fraction=0.0))
    assert len(off.cells(-1, "reference")) == 0


def test_explicit_held_out_list_is_honoured(toy_adata):
    labels = sorted(set(toy_adata.obs["lazynet_perturbation"][~toy_adata.obs["lazynet_is_control"]]))
    held = (labels[0], labels[2])
    pairs = make_pairs(toy_adata, PairConfig(held_out=held))
    assert sorted(pairs.split_record()["test_perturbations"]) == sorted(held)
    for label in held:
        p = list(pairs.perturbations).index(label)
        assert len(pairs.cells(p, "train")) == 0 and len(pairs.cells(p, "test")) > 0
    with pytest.raises(ScreenError, match="not perturbations of this screen"):
        make_pairs(toy_adata, PairConfig(held_out=("NOT_A_GENE",)))
    with pytest.raises(ScreenError, match="at least 2 are needed"):
        make_pairs(toy_adata, PairConfig(held_out=tuple(labels)))


def test_held_out_cells_never_reach_training(toy_adata):
    """Weights are bit-identical when every held-out and reference cell is replaced by garbage."""
    config = PairConfig(held_out=("G1",))
    pairs = make_pairs(toy_adata, config)
    garbage = toy_adata.copy()
    x = garbage.X.toarray()
    hidden = np.isin(pairs.cell_role, ("test", "reference", "val"))
    assert hidden.any() and (pairs.cell_role == "reference").any() and pairs.test_perts.any()
    x[hidden] = np.random.default_rng(1).uniform(0, 50, size=(hidden.sum(), x.shape[1]))
    garbage.X = sparse.csr_matrix(x.astype(np.float32))
    pairs_g = make_pairs(garbage, config)
    assert (pairs_g.cell_role == pairs.cell_role).all()
    a = train_ensemble(pairs, ModelConfig(), FAST)
    b = train_ensemble(pairs_g, ModelConfig(), FAST)
    for key, value in a.replicas[0].state_dict().items():
        assert (value == b.replicas[0].state_dict()[key]).all(), key
    assert np.array_equal(a.predict(a.reference), b.predict(b.reference))


def test_patience_without_validation_set_is_a_clear_error(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig())
    with pytest.raises(TrainingError, match="val_fraction"):
        train_ensemble(pairs, ModelConfig(), FAST.replace(patience=3))
    with_val = make_pairs(toy_adata, PairConfig(val_fraction=0.2))
    assert train_ensemble(with_val, ModelConfig(), FAST.replace(patience=3)).history["val_loss"].notna().all()


def test_fold_plans():
    perts = ["A", "B", "C", "D", "E", "A+B"]
    assert fold_plan(perts) == [("A",), ("B",), ("C",), ("D",), ("E",)]
    assert len(fold_plan(perts, max_perturbations=3)) == 3
    kfold = fold_plan(perts, folds=2, seed=1)
    assert sorted(sum(kfold, ())) == ["A", "B", "C", "D", "E"] and len(kfold) == 2
    with pytest.raises(ValueError, match="folds must be"):
        fold_plan(perts, folds=1)
    with pytest.raises(ScreenError, match="at least 3"):
        fold_plan(["A", "B"])


def test_cross_validate_returns_one_tidy_frame(toy_adata):
    seen = []
    frame = cross_validate(
        toy_adata,
        folds="lopo",
        max_perturbations=2,
        seeds=(0, 1),
        train_config=FAST,
        on_fold=lambda seed, k, n, held: seen.append((seed, held)),
    )
    assert len(seen) == 4 and {s for s, _ in seen} == {0, 1}
    assert {"seed", "fold", "set", "reference", "method", "perturbation", "metric", "value"} <= set(
        frame.columns
    )
    held = frame[
        (frame.set == "held_out_perturbations") & (frame.method == "lazynet") & (frame.perturbation != "ALL")
    ]
    assert sorted(held.groupby("seed")["perturbation"].nunique()) == [2, 2]
    assert {"perturbed_mean_ex", "control_covariance", "linear", "null"} <= set(frame.method)
