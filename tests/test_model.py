"""Known-answer tests of the LazyNet module (method §1)."""

import numpy as np
import pytest
import torch

from lazynet_core.config import ModelConfig
from lazynet_core.model import LazyNet, LogLinExpBlock


def _block_with(W_E: torch.Tensor, b_E: torch.Tensor) -> LogLinExpBlock:
    n = W_E.shape[0]
    block = LogLinExpBlock(n, n, positive=False).double()
    with torch.no_grad():
        block.set_effective(torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
        block.W_E.copy_(W_E)
        block.b_E.copy_(b_E)
    return block


def test_block_is_generalised_monomial():
    W_E = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    b_E = torch.tensor([0.3, -0.2], dtype=torch.float64)
    block = _block_with(W_E, b_E)
    x = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    expected = torch.exp(b_E) * torch.tensor([2.0**1 * 3.0**2, 2.0**-1 * 3.0**0.5], dtype=torch.float64)
    torch.testing.assert_close(block(x)[0], expected)


def test_block_elasticity_equals_W_E():
    """With W_L = I and b_L = 0, d log h / d log x is exactly W_E."""
    gen = torch.Generator().manual_seed(0)
    W_E = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    block = _block_with(W_E, torch.randn(5, generator=gen, dtype=torch.float64) * 0.1)
    log_x = torch.rand(5, generator=gen, dtype=torch.float64)
    elasticity = torch.autograd.functional.jacobian(
        lambda lx: torch.log(block(torch.exp(lx)[None])[0]), log_x
    )
    torch.testing.assert_close(elasticity, W_E)


def test_block_jacobian_closed_form():
    """dh/dx = diag(h) W_E diag(1/u) W_L for the positive parametrisation."""
    torch.manual_seed(1)
    block = LogLinExpBlock(4, 3).double()
    with torch.no_grad():
        block.A.normal_()
        block.W_E.normal_(std=0.5)
    x = torch.rand(4, dtype=torch.float64) + 0.5
    u = block.W_L @ x + block.b_L
    h = block(x[None])[0]
    closed = torch.diag(h) @ block.W_E @ torch.diag(1 / u) @ block.W_L
    torch.testing.assert_close(torch.autograd.functional.jacobian(lambda v: block(v[None])[0], x), closed)


@pytest.mark.parametrize("positive", [True, False])
def test_gradcheck_float64(positive):
    torch.manual_seed(0)
    model = LazyNet(6, ModelConfig(hidden=5, depth=2, positive=positive)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = (torch.rand(3, 6, dtype=torch.float64) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(model, (x,))


@pytest.mark.parametrize("init", ["linear", "identity"])
def test_initial_model_is_identity_and_unclamped(init):
    model = LazyNet(30, ModelConfig(init=init))
    x = torch.rand(16, 30) * 3
    torch.testing.assert_close(model.step(x), x)
    assert model.clamped_fraction(x) == 0.0
    assert model.hidden == 30


def test_linear_start_makes_hidden_linear():
    model = LazyNet(10, ModelConfig(init="linear"), seed=3)
    block = model.blocks[0]
    with torch.no_grad():
        block.W_E.copy_(torch.eye(10))
    x = torch.rand(4, 10)
    torch.testing.assert_close(block(x), x @ block.W_L.T + block.b_L)


def test_positive_parametrisation_never_clamps():
    model = LazyNet(20, ModelConfig(hidden=8))
    with torch.no_grad():
        model.blocks[0].A.normal_(std=5)
        model.blocks[0].c.normal_(std=5)
    assert model.clamped_fraction(torch.rand(64, 20) * 5) == 0.0


def test_hidden_auto_width():
    assert ModelConfig().hidden_for(300) == 300
    assert ModelConfig().hidden_for(18_000) == 256
    assert ModelConfig(hidden=64).hidden_for(18_000) == 64
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(depth=0)


def test_parameter_count():
    model = LazyNet(50, ModelConfig(hidden=16))
    assert model.n_parameters() == 50 * 16 + 16 + 16 * 16 + 16 + 16 * 50 + 50
    assert np.isfinite(model(torch.rand(2, 50)).detach().numpy()).all()


def test_unconstrained_copy_is_the_same_function():
    torch.manual_seed(0)
    model = LazyNet(12, ModelConfig(hidden=5, depth=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(7, 12) * 3
    clone = model.unconstrained()
    assert not clone.config.positive and clone.hidden == model.hidden
    torch.testing.assert_close(clone(x), model(x), rtol=1e-6, atol=1e-7)


def test_bottleneck_linear_start_gives_every_gene_one_unit():
    model = LazyNet(50, ModelConfig(hidden=8), seed=1)
    W_L = model.blocks[0].W_L.detach()
    strong = W_L > 0.01
    assert (strong.sum(dim=0) == 1).all()  # every gene feeds exactly one unit
    assert (strong.sum(dim=1) >= 50 // 8).all()  # every unit reads a group of genes
    torch.testing.assert_close(W_L[strong], torch.ones(int(strong.sum())), rtol=1e-5, atol=1e-5)


def test_jacobian_start_has_the_requested_jacobian_and_no_change_at_the_reference():
    torch.manual_seed(0)
    n = 12
    model = LazyNet(n, ModelConfig(start="control_covariance"), seed=3).double()
    target = torch.randn(n, n, dtype=torch.float64) * 0.2
    target.fill_diagonal_(0.0)
    ref = torch.rand(n, dtype=torch.float64) * 3 + 0.5
    model.start_at_jacobian(target, ref)
    J = torch.autograd.functional.jacobian(model.forward, ref)
    torch.testing.assert_close(J, target, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(model.forward(ref), torch.zeros(n, dtype=torch.float64), atol=1e-10, rtol=0)
    fast = model.unconstrained()
    x = ref + 0.3 * torch.rand(n, dtype=torch.float64)
    torch.testing.assert_close(fast.forward(x), model.forward(x))


def test_jacobian_start_needs_one_unit_per_gene():
    model = LazyNet(10, ModelConfig(start="control_covariance", hidden=4))
    with pytest.raises(ValueError, match="one hidden unit per gene"):
        model.start_at_jacobian(torch.zeros(10, 10), torch.ones(10))


def test_covariance_start_trains_saves_and_reloads(toy_adata, tmp_path):
    import numpy as np

    from lazynet_core.config import PairConfig, TrainConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.runs import load_run, save_run
    from lazynet_core.train import control_regression, train_ensemble

    pairs = make_pairs(toy_adata, PairConfig())
    reg = control_regression(pairs)
    x = np.asarray(pairs.X[pairs.cells(-1, "train")].todense(), dtype=np.float64)
    i, j = 1, 2
    expected = np.cov(x[:, i], x[:, j])[0, 1] / np.var(x[:, j], ddof=1)
    assert reg[i, j] == pytest.approx(expected, rel=1e-4) and (np.diag(reg) == 0).all()
    config = ModelConfig(start="control_covariance")
    ensemble = train_ensemble(pairs, config, TrainConfig(replicas=1, epochs=2))
    loaded = load_run(save_run(ensemble, tmp_path / "run"))
    ref = ensemble.reference
    assert np.array_equal(loaded.predict(ref), ensemble.predict(ref))
