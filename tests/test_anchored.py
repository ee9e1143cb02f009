"""Known answers for the anchored recipe's mechanisms (issue 11): centred logs, an anchored control
state, frozen columns of never-perturbed genes, control-mean pre-states, and what they add up to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lazynet_core.config import RECIPES, ModelConfig, PairConfig, TrainConfig, recipe_configs, recipe_name
from lazynet_core.data import read_screen
from lazynet_core.errors import TrainingError
from lazynet_core.metrics import baseline_predictions, evaluate
from lazynet_core.model import LazyNet
from lazynet_core.pairs import make_pairs
from lazynet_core.train import control_regression, perturbed_genes, train_ensemble
from tests.test_unseen_target import _screen

ANCHORED = ModelConfig(**RECIPES["anchored"]["model"])


def _scrambled(model: LazyNet, seed: int = 1) -> None:
    """Move every weight away from its start, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))


def test_centring_the_log_leaves_the_function_unchanged():
    model = LazyNet(6, ModelConfig(start="control_covariance", centre_log=True), seed=0)
    _scrambled(model)
    x = torch.rand(5, 6) * 3
    before = model(x)
    for block in model.blocks:
        block.set_log_reference(torch.full((6,), 1.5))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


def test_the_anchored_control_state_is_a_fixed_point_for_any_weights():
    model = LazyNet(7, ANCHORED, seed=0)
    ref = torch.rand(7) + 0.5
    model.start_at_jacobian(torch.randn(7, 7) * 0.1, ref)
    _scrambled(model)
    assert torch.equal(model.step(ref[None, :])[0], ref)
    assert torch.equal(model.unconstrained().step(ref[None, :])[0], ref)
    assert model(torch.rand(3, 7)).shape == (3, 7) and model(torch.rand(7)).shape == (7,)


def test_the_jacobian_start_holds_with_centred_logs_and_an_anchor():
    reg = (torch.rand(5, 5) - 0.5) * 0.4
    reg.fill_diagonal_(0.0)
    ref = torch.rand(5) + 1.0
    model = LazyNet(5, ANCHORED, seed=0).double()
    model.start_at_jacobian(reg.double(), ref.double())
    jac = torch.func.jacrev(model)(ref.double())
    torch.testing.assert_close(jac, reg.double(), rtol=1e-6, atol=1e-8)


def test_control_mean_pairing_gives_the_control_mean_with_targets_set():
    pairs = make_pairs(read_screen(_screen()), PairConfig(pairing="control_mean", held_out=("U",)))
    epoch = pairs.sample_epoch(np.random.default_rng(0))
    pre, post = pairs.batch(epoch, slice(0, 64))
    ctrl = pairs.control_mean("train")
    for row, p in enumerate(epoch.pert[:64]):
        expected = ctrl.copy()
        if p >= 0:
            expected[pairs.pert_targets[p]] = pairs.pert_mean(p, "train")[pairs.pert_targets[p]]
            np.testing.assert_allclose(post[row] - pre[row],
                                       np.where(np.isin(np.arange(pairs.n_genes), pairs.pert_targets[p]), 0.0,
                                                pairs.pert_mean(p, "train") - ctrl), atol=1e-5)
        np.testing.assert_array_equal(pre[row], expected)
    with pytest.raises(ValueError, match="delta_targets"):
        PairConfig(pairing="control_mean", delta_targets=False)


@pytest.fixture(scope="module")
def anchored_run():
    adata = read_screen(_screen())
    model_config, pair_config = recipe_configs("anchored", pair_config=PairConfig(held_out=("U",)))
    pairs = make_pairs(adata, pair_config)
    ens = train_ensemble(pairs, model_config, TrainConfig(replicas=1, epochs=150, threads=1))
    return pairs, ens


def test_never_perturbed_genes_keep_their_columns(anchored_run):
    pairs, ens = anchored_run
    model = ens.replicas[0]
    start = LazyNet(pairs.n_genes, model.config, seed=model_seed(ens))
    start.start_at_jacobian(torch.from_numpy(control_regression(pairs)),
                            torch.from_numpy(pairs.control_mean("train")))
    frozen = ~perturbed_genes(pairs)
    assert frozen.sum() == 4 and not frozen[[1, 3, 4, 5]].any()  # U, D, F4, F5 never perturbed in training
    trained, initial = model.state_dict(), start.state_dict()
    for name in ("blocks.0.A", "blocks.0.W_E", "out.weight"):
        assert torch.equal(trained[name][:, frozen], initial[name][:, frozen]), name
        assert not torch.equal(trained[name][:, ~frozen], initial[name][:, ~frozen]), name
    # so their Jacobian columns at the control state keep the start's direction, the control cells'
    # regression (their units' biases still train, which rescales each column)
    ref = torch.from_numpy(pairs.control_mean("train"))
    jac_trained = torch.func.jacrev(model)(ref)[:, frozen].detach().numpy()
    regression = control_regression(pairs)[:, frozen]
    for col in range(frozen.sum()):
        assert np.corrcoef(jac_trained[:, col], regression[:, col])[0, 1] > 0.999


def test_freezing_refuses_weight_decay():
    pairs = make_pairs(read_screen(_screen()), PairConfig(held_out=("U",)))
    with pytest.raises(TrainingError, match="weight_decay"):
        train_ensemble(pairs, ANCHORED, TrainConfig(replicas=1, epochs=1, weight_decay=1e-4))


def model_seed(ens) -> int:
    return int(ens.info["replicas"][0]["seed"])


def test_anchored_recipe_predicts_an_unseen_target_by_the_control_regression(anchored_run):
    pairs, ens = anchored_run
    p = int(np.flatnonzero(pairs.perturbations == "U")[0])
    base = pairs.control_mean("train").astype(np.float64)
    pre = pairs.pre_state(p, "test")[None, :].astype(np.float32)
    pred = ens.predict(pre)[0] - base
    ccov = baseline_predictions(pairs, perturbations=[p])["control_covariance"][0] - base
    keep = np.arange(pairs.n_genes) != 0
    assert np.corrcoef(pred[keep], ccov[keep])[0, 1] > 0.999
    assert pred[2] > 0.25  # D rises when U (which co-varies with its repressor P) is knocked down


def test_anchored_recipe_fits_the_trained_perturbations_and_responds_to_the_target(anchored_run):
    pairs, ens = anchored_run
    frame = evaluate(pairs, ens.predict, reference="independent", ceiling=False)
    cells = frame[(frame.set == "held_out_cells") & (frame.metric == "pearson_delta")]
    wide = cells.pivot_table(index="perturbation", columns="method", values="value")
    assert (wide["lazynet"] - wide["own_training_mean"]).abs().max() < 0.05
    response = frame[(frame.method == "lazynet") & (frame.metric == "intervention_response")]["value"]
    assert (response == 0.0).all()  # the control state is a fixed point: the whole prediction is the target's


def test_recipes_round_trip_through_their_names():
    for name in RECIPES:
        model_config, pair_config = recipe_configs(name, pair_config=PairConfig(pairing="random_cells"))
        assert recipe_name(model_config, pair_config) == name
    model_config, pair_config = recipe_configs("published", pair_config=PairConfig(pairing="control_mean"))
    assert pair_config.pairing == "pseudobulk"  # a recipe never keeps another recipe's pairing
    assert recipe_name(ModelConfig(), PairConfig(k=64)).startswith("custom")
    with pytest.raises(ValueError, match="Unknown recipe"):
        recipe_configs("fastest")
    with pytest.raises(ValueError, match="start='control_covariance'"):
        ModelConfig(anchor=True)


def test_an_anchored_run_saves_and_loads_with_the_same_predictions(anchored_run, tmp_path):
    from lazynet_core.runs import load_run, save_run

    pairs, ens = anchored_run
    save_run(ens, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    perts = pairs.evaluation_perturbations("test")
    x = np.stack([pairs.pre_state(p, "test") for p in perts]).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), ens.predict(x))
    assert recipe_name(loaded.model_config, loaded.pair_config) == "anchored"
