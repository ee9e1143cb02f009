"""Pairs and splits: seeded, recorded, do-interventions on the pre side."""

import numpy as np
import pytest

from lazynet_core.config import PairConfig
from lazynet_core.errors import ScreenError
from lazynet_core.pairs import make_pairs


def test_split_is_seeded_and_recorded(toy_adata):
    a = make_pairs(toy_adata, PairConfig(seed=3))
    b = make_pairs(toy_adata, PairConfig(seed=3))
    c = make_pairs(toy_adata, PairConfig(seed=4))
    assert np.array_equal(a.cell_role, b.cell_role) and np.array_equal(a.test_perts, b.test_perts)
    assert not np.array_equal(a.cell_role, c.cell_role)
    record = a.split_record()
    assert record["pair_config"]["seed"] == 3
    assert set(record["test_perturbations"]) == set(a.perturbations[a.test_perts])


def test_held_out_perturbations_have_no_training_cells(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(split="perturbations", seed=0))
    assert pairs.test_perts.any()
    for p in np.flatnonzero(pairs.test_perts):
        assert set(pairs.cell_role[pairs.cell_pert == p]) == {"test"}
    for p in np.flatnonzero(~pairs.test_perts):  # trained on, or watched for early stopping
        assert len(pairs.cells(p, "train")) > 0 or len(pairs.cells(p, "val")) > 0


def test_cells_split_sees_every_perturbation(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(split="cells", seed=0))
    assert not pairs.test_perts.any()
    assert len(pairs.evaluation_perturbations("test")) == len(pairs.perturbations)


def test_pre_state_is_do_intervention(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(split="cells"))
    p = int(np.flatnonzero(pairs.perturbations == "G0")[0])
    pre = pairs.pre_state(p, "test")
    control = pairs.control_mean("train")
    target = pairs.pert_targets[p]
    assert np.allclose(np.delete(pre, target), np.delete(control, target))
    assert pre[target] == pytest.approx(pairs.pert_mean(p, "test")[target])
    assert pre[target][0] < control[target][0]  # CRISPRi knock-down


@pytest.mark.parametrize("pairing", ["pseudobulk", "random_cells"])
@pytest.mark.parametrize("delta", [True, False])
def test_batches_match_hand_computed_means(toy_adata, pairing, delta):
    pairs = make_pairs(toy_adata, PairConfig(pairing=pairing, k=3, resamples=5, delta_targets=delta))
    epoch = pairs.sample_epoch(np.random.default_rng(0))
    pre, post = pairs.batch(epoch, slice(0, 10))
    X = pairs.X.toarray()
    for row in range(10):
        p = epoch.pert[row]
        expected_pre = X[epoch.pre_idx[row]].mean(axis=0)
        if p >= 0:
            t = pairs.pert_targets[p]
            assert np.allclose(pre[row, t], post[row, t], atol=1e-6)  # target held at its level
            expected_pre[t] = pre[row, t]
        assert np.allclose(pre[row], expected_pre, atol=1e-5)
        if not delta:
            assert np.allclose(
                post[row], X[epoch.post_idx[row]].mean(axis=0) if p < 0 else post[row], atol=1e-5
            )
    assert epoch.pre_idx.shape[1] == (1 if pairing == "random_cells" else 3)
    assert set(pairs.cell_role[epoch.pre_idx.ravel()]) == {"train"}
    assert set(pairs.cell_role[epoch.post_idx.ravel()]) == {"train"}


def test_delta_targets_add_the_mean_effect(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(k=2, resamples=4, control_pairs=0))
    epoch = pairs.sample_epoch(np.random.default_rng(1))
    pre, post = pairs.batch(epoch, slice(0, 4))
    p = epoch.pert[0]
    effect = pairs.pert_mean(p, "train") - pairs.control_mean("train")
    keep = np.setdiff1d(np.arange(pairs.n_genes), pairs.pert_targets[p])
    assert np.allclose((post - pre)[0, keep], effect[keep], atol=1e-5)


def test_requires_read_screen_output(toy_adata):
    from lazynet_core.datasets import toy_screen

    with pytest.raises(ScreenError, match="read_screen"):
        make_pairs(toy_screen())


def test_does_not_modify_input(toy_adata):
    before = toy_adata.X.copy()
    make_pairs(toy_adata)
    assert (toy_adata.X != before).nnz == 0


@pytest.mark.parametrize("delta", [True, False])
def test_natural_pairs_intervene_on_the_selected_gene(toy_adata, delta):
    pairs = make_pairs(
        toy_adata,
        PairConfig(
            k=3, resamples=4, control_pairs=0, natural_pairs=1.0, natural_pool=12, delta_targets=delta
        ),
    )
    epoch = pairs.sample_epoch(np.random.default_rng(2))
    natural = np.flatnonzero(epoch.gene >= 0)
    assert len(natural) == (epoch.pert >= 0).sum()
    assert set(pairs.cell_role[epoch.post_idx[natural].ravel()]) == {"train"}
    pre, post = pairs.batch(epoch, slice(None))
    X = pairs.X.toarray()
    for row in natural[:5]:
        j = epoch.gene[row]
        level = X[epoch.post_idx[row], j].mean()
        assert pre[row, j] == pytest.approx(level, abs=1e-5) and post[row, j] == pytest.approx(
            level, abs=1e-5
        )
        if delta:
            effect = X[epoch.post_idx[row]].mean(axis=0) - pairs.control_mean("train")
            others = np.delete(np.arange(pairs.n_genes), j)
            assert np.allclose((post - pre)[row, others], effect[others], atol=1e-5)


def test_too_few_single_perturbations_for_perturbation_split(toy_adata):
    keep = toy_adata.obs["lazynet_perturbation"].isin(["control", "G0", "G1"]).to_numpy()
    small = toy_adata[keep].copy()
    with pytest.raises(ScreenError, match="at least 3 single-gene"):
        make_pairs(small, PairConfig(split="perturbations"))
    assert make_pairs(small, PairConfig(split="cells")).test_perts.sum() == 0
