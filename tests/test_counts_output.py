"""Known answers for the count-space output (``ModelConfig(output="counts")``, issue 11, goal 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lazynet_core.config import RECIPES, ModelConfig, recipe_configs, recipe_name
from lazynet_core.metrics import additive_counts_post
from lazynet_core.model import LazyNet


def _perturbed(model: LazyNet, seed: int = 0) -> LazyNet:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def test_counts_step_is_log1p_of_expression_plus_the_output_change():
    torch.manual_seed(0)
    log_model = _perturbed(LazyNet(9, ModelConfig(hidden=6)).double())
    counts_model = LazyNet(9, ModelConfig(hidden=6, output="counts")).double()
    counts_model.load_state_dict(log_model.state_dict())
    x = torch.rand(5, 9, dtype=torch.float64) * 3
    g = log_model.forward(x)  # the same weights: the output layer's change
    expected = torch.log1p((torch.expm1(x) + g).clamp_min(0.0))
    torch.testing.assert_close(counts_model.step(x), expected, rtol=1e-10, atol=1e-12)
    assert (counts_model.step(x) >= -1e-12).all()  # 0 up to rounding of x + log(e^-x)
    assert ((torch.expm1(x) + g) < 0).any()  # the clamp is exercised: no expression, never below


def test_counts_jacobian_closed_form():
    # F_i = log1p(expm1(x_i) + g_i)  =>  dF_i/dx_j = (delta_ij e^x_i + dg_i/dx_j) / (e^x_i + g_i)
    torch.manual_seed(1)
    log_model = _perturbed(LazyNet(7, ModelConfig()).double(), seed=1)
    counts_model = LazyNet(7, ModelConfig(output="counts")).double()
    counts_model.load_state_dict(log_model.state_dict())
    x = torch.rand(7, dtype=torch.float64) * 2 + 1.5
    g = log_model.forward(x)
    dg = torch.autograd.functional.jacobian(log_model.forward, x)
    assert (torch.expm1(x) + g > 0).all()
    closed = (torch.diag(torch.exp(x)) + dg) / (torch.exp(x) + g)[:, None] - torch.eye(7, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(counts_model.forward, x)
    torch.testing.assert_close(J, closed, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("anchored", [False, True])
def test_counts_jacobian_start_has_the_requested_jacobian(anchored):
    torch.manual_seed(0)
    n = 10
    config = ModelConfig(start="control_covariance", output="counts", centre_log=anchored, anchor=anchored)
    model = LazyNet(n, config, seed=2).double()
    target = torch.randn(n, n, dtype=torch.float64) * 0.2
    target.fill_diagonal_(0.0)
    ref = torch.rand(n, dtype=torch.float64) * 3 + 0.5
    ref[0] = 0.0  # a gene silent in the controls: the clamp's tie must not halve its row
    model.start_at_jacobian(target, ref)
    J = torch.autograd.functional.jacobian(model.forward, ref)
    torch.testing.assert_close(J, target, atol=1e-8, rtol=1e-6)
    assert float(model.forward(ref).detach().abs().max()) == 0.0  # g(ref) = 0 is exactly no change


def test_counts_model_adds_redundant_arms_in_counts():
    # A linear output layer on linear units: g is additive over inputs, so with a count-space output
    # the double's prediction is the count-space sum of the model's own single predictions — an OR
    # gate's synergy in log space — while the log-space output adds them in log space (no interaction).
    n, hub, a, b = 4, 3, 0, 1
    ref = torch.tensor([1.0, 1.2, 0.8, 2.0], dtype=torch.float64)
    preds = {}
    for output in ("log", "counts"):
        model = LazyNet(n, ModelConfig(start="control_covariance", anchor=True, init_noise=0.0,
                                       output=output)).double()
        target = torch.zeros(n, n, dtype=torch.float64)
        target[hub, a] = target[hub, b] = 0.5  # the hub follows both regulators
        model.start_at_jacobian(target, ref)
        states = ref.repeat(4, 1)
        states[1, a] = states[3, a] = 0.6  # A knocked down (rows 1 and 3)
        states[2, b] = states[3, b] = 0.6  # B knocked down (rows 2 and 3)
        with torch.no_grad():
            preds[output] = model.step(states).numpy()
    base, single_a, single_b, double = preds["counts"]
    expected = additive_counts_post([single_a, single_b], base)
    np.testing.assert_allclose(double[hub], expected[hub], rtol=1e-10)
    log_base, log_a, log_b, log_double = preds["log"]
    np.testing.assert_allclose(log_double[hub], log_a[hub] + log_b[hub] - log_base[hub], rtol=1e-10)
    synergy = double[hub] - single_a[hub] - single_b[hub] + base[hub]
    assert synergy < -0.05  # further down than the two arms' log changes summed


def test_anchored_counts_recipe_is_named_and_reproducible():
    model, pair = recipe_configs("anchored_counts")
    assert model.output == "counts" and model.anchor and pair.pairing == "control_mean"
    assert recipe_name(model, pair) == "anchored_counts"
    assert recipe_name(*recipe_configs("anchored")) == "anchored"
    assert recipe_name(model.replace(anchor=False), pair).endswith("output counts)")  # a custom run says so
    assert recipe_configs("published")[0].output == "log"
    assert set(RECIPES) >= {"published", "anchored", "anchored_counts"}
    with pytest.raises(ValueError, match="output must be"):
        ModelConfig(output="linear")


def _started(output: str, ref: torch.Tensor, target: torch.Tensor) -> LazyNet:
    config = ModelConfig(start="control_covariance", anchor=True, centre_log=True, output=output)
    model = LazyNet(len(ref), config, seed=3).double()
    model.start_at_jacobian(target, ref)
    return model


def test_counts_output_scale_moves_every_gene_as_the_log_output_does():
    # Near the control state a step of W_out must move f_i alike whatever gene i's expression, as
    # with the log output; without the per-gene scale it moved f_i e^-x_i times as much (Adam then
    # fitted a gene at x = 5 150x slower than one at x = 0).
    n = 6
    ref = torch.tensor([0.2, 0.8, 1.5, 2.5, 4.0, 5.0], dtype=torch.float64)
    target = torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    target.fill_diagonal_(0.0)
    x = ref + 1e-4 * torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    grads = {}
    for output in ("log", "counts"):
        model = _started(output, ref, target)
        rows = []
        for i in range(n):
            model.zero_grad()
            model.forward(x)[i].backward()
            rows.append(model.out.weight.grad[i].norm())
        grads[output] = torch.stack(rows)
    assert (grads["log"] > 0).all()
    torch.testing.assert_close(grads["counts"], grads["log"], rtol=1e-3, atol=0.0)
    torch.testing.assert_close(_started("counts", ref, target).out_scale, torch.exp(ref))


def test_counts_run_saved_before_the_scale_loads_with_scale_one():
    ref = torch.tensor([0.5, 1.0, 3.0, 2.0], dtype=torch.float64)
    target = torch.full((4, 4), 0.1, dtype=torch.float64)
    model = _started("counts", ref, target)
    state = {k: v for k, v in model.state_dict().items() if k != "out_scale"}
    old = LazyNet(4, model.config, seed=0).double()
    old.load_state_dict(state)  # strict: the missing scale is filled, not an error
    torch.testing.assert_close(old.out_scale, torch.ones(4, dtype=torch.float64))
    x = ref.repeat(2, 1) * torch.tensor([[1.0], [0.7]], dtype=torch.float64)
    with torch.no_grad():
        g_old = old._output_change(x)
        expected = torch.log1p((torch.expm1(x) + g_old).clamp_min(0.0)) - x
        torch.testing.assert_close(old.forward(x), expected, rtol=1e-10, atol=1e-12)
