"""Known answers for the fold-change output (``ModelConfig(output="fold")``, issue 11, goal 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lazynet_core import datasets
from lazynet_core.config import ModelConfig, PairConfig, TrainConfig, recipe_configs, recipe_name
from lazynet_core.data import read_screen
from lazynet_core.metrics import multiplicative_counts_post
from lazynet_core.model import LazyNet


def test_fold_step_multiplies_expression_by_the_exp_of_the_output_change():
    torch.manual_seed(0)
    log_model = LazyNet(9, ModelConfig(hidden=6)).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in log_model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    fold_model = LazyNet(9, ModelConfig(hidden=6, output="fold")).double()
    fold_model.load_state_dict(log_model.state_dict())  # unstarted: a scale of 1
    x = torch.rand(5, 9, dtype=torch.float64) * 3
    x[0, 0] = 0.0  # a gene not expressed stays so, whatever g says
    g = log_model.forward(x)
    expected = torch.log1p(torch.expm1(x) * torch.exp(g))
    torch.testing.assert_close(fold_model.step(x), expected, rtol=1e-10, atol=1e-12)
    assert float(fold_model.step(x)[0, 0].detach()) == 0.0


@pytest.mark.parametrize("anchored", [False, True])
def test_fold_jacobian_start_has_the_requested_jacobian(anchored):
    torch.manual_seed(0)
    n = 10
    config = ModelConfig(start="control_covariance", output="fold", centre_log=anchored, anchor=anchored)
    model = LazyNet(n, config, seed=2).double()
    target = torch.randn(n, n, dtype=torch.float64) * 0.2
    target.fill_diagonal_(0.0)
    ref = torch.rand(n, dtype=torch.float64) * 3 + 0.1
    model.start_at_jacobian(target, ref)
    J = torch.autograd.functional.jacobian(model.forward, ref)
    torch.testing.assert_close(J, target, atol=1e-8, rtol=1e-6)
    assert float(model.forward(ref).detach().abs().max()) == 0.0  # g(ref) = 0 is exactly no change


def test_fold_model_multiplies_its_arms_folds_on_a_gene_of_few_counts():
    # One unit per regulator and a linear output layer: g is additive over the two arms, so the
    # fold output predicts the double as the product of the model's own single folds
    # (multiplicative_counts_post: an AND gate's hub), and the log output adds their log1p changes,
    # which on a gene of few counts shuts it further than the product
    n, hub, a, b = 4, 3, 0, 1
    ref = torch.tensor([1.0, 1.2, 0.8, 0.4], dtype=torch.float64)  # the hub: about 0.5 counts
    preds = {}
    for output in ("log", "fold"):
        model = LazyNet(n, ModelConfig(start="control_covariance", anchor=True, init_noise=0.0,
                                       output=output)).double()
        target = torch.zeros(n, n, dtype=torch.float64)
        target[hub, a] = target[hub, b] = 0.6
        model.start_at_jacobian(target, ref)
        states = ref.repeat(4, 1)
        states[1, a] = states[3, a] = 0.3
        states[2, b] = states[3, b] = 0.3
        with torch.no_grad():
            preds[output] = model.step(states).numpy()
    base, single_a, single_b, double = preds["fold"]
    product = multiplicative_counts_post([single_a, single_b], base)
    np.testing.assert_allclose(double[hub], product[hub], rtol=1e-10)
    log_base, log_a, log_b, log_double = preds["log"]
    np.testing.assert_allclose(log_double[hub], log_a[hub] + log_b[hub] - log_base[hub], rtol=1e-10)
    assert double[hub] - (single_a[hub] + single_b[hub] - base[hub]) > 0.02  # the pseudo-count's part


def test_anchored_folds_recipe_is_named_trains_and_reloads(tmp_path):
    from lazynet_core.pairs import make_pairs
    from lazynet_core.runs import load_run, save_run
    from lazynet_core.train import train_ensemble

    model, pair = recipe_configs("anchored_folds")
    assert model.output == "fold" and model.anchor and pair.pairing == "control_mean"
    assert recipe_name(model, pair) == "anchored_folds"
    assert recipe_name(model.replace(anchor=False), pair).endswith("output fold)")
    adata = read_screen(datasets.hill_screen(n_genes=30, n_cells=600, seed=1, n_combinations=2,
                                             redundant=True, gate="and"))
    pairs = make_pairs(adata, pair.replace(held_out=("HG001",)))
    ens = train_ensemble(pairs, model, TrainConfig(replicas=1, epochs=3, threads=1))
    save_run(ens, tmp_path / "run")
    perts = pairs.evaluation_perturbations("test")
    x = np.stack([pairs.pre_state(p, "test") for p in perts]).astype(np.float32)
    np.testing.assert_array_equal(load_run(tmp_path / "run").predict(x), ens.predict(x))
    assert np.isfinite(ens.predict(x)).all()
    with pytest.raises(ValueError, match="output must be one of"):
        ModelConfig(output="linear")
    assert PairConfig().pairing != "control_mean"
