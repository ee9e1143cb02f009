"""Jacobians: oracle tests against torch.autograd and between the dense and on-demand paths."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from lazynet_core.errors import ScreenError
from lazynet_core.jacobian import JacobianResult, column_provider, jacobian, jacobian_columns, jacobian_rows
from lazynet_core.network import expand_from_seeds

G = 7


def mlp(seed: int, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(G, 5), nn.Tanh(), nn.Linear(5, G)).to(dtype).eval()


def ensemble(seeds=(0, 1, 2), dtype=torch.float64):
    genes = np.array([f"G{i}" for i in range(G)])
    ref = np.linspace(0.2, 1.4, G)
    return SimpleNamespace(replicas=[mlp(s, dtype) for s in seeds], genes=genes, reference=ref)


def oracle(model: nn.Module, x: np.ndarray) -> np.ndarray:
    xt = torch.as_tensor(x, dtype=torch.float64)
    return torch.autograd.functional.jacobian(lambda v: model(v[None])[0], xt).numpy()


def test_dense_equals_autograd_jacobian():
    ens = ensemble()
    res = jacobian(ens)
    assert isinstance(res, JacobianResult) and res.per_replica.shape == (3, G, G)
    for r, model in enumerate(ens.replicas):
        np.testing.assert_allclose(res.per_replica[r], oracle(model, ens.reference), atol=1e-10)
    np.testing.assert_allclose(res.mean, res.per_replica.mean(0), atol=1e-12)
    frame = res.to_frame()
    assert list(frame.index) == list(ens.genes) and list(frame.columns) == list(ens.genes)
    assert frame.loc["G2", "G5"] == res.mean[2, 5]


def test_rows_path_equals_columns_path():
    ens = ensemble()
    by_cols = jacobian(ens, sources=["G1", "G3"], targets=None)  # 2 sources <= 7 targets: JVP
    by_rows = jacobian(ens, sources=None, targets=["G0", "G4"])  # VJP
    full = jacobian(ens).to_frame()
    np.testing.assert_allclose(by_cols.to_frame().to_numpy(), full[["G1", "G3"]].to_numpy(), atol=1e-10)
    np.testing.assert_allclose(by_rows.to_frame().to_numpy(), full.loc[["G0", "G4"]].to_numpy(), atol=1e-10)


def test_on_demand_column_equals_dense_column():
    ens = ensemble()
    dense = jacobian(ens)
    cols = jacobian_columns(ens, [4, 1], batch_size=1)
    assert cols.shape == (3, G, 2)
    np.testing.assert_allclose(cols[:, :, 0], dense.per_replica[:, :, 4], atol=1e-10)
    rows = jacobian_rows(ens, ["G2"])
    np.testing.assert_allclose(rows[:, 0, :], dense.per_replica[:, 2, :], atol=1e-10)
    prov = column_provider(ens, batch_size=2)
    out = prov("G4", "out")
    assert "G4" not in out.index and list(out.columns) == ["weight", "agreement", "sd"]
    expected = dense.to_frame()["G4"].drop("G4")
    np.testing.assert_allclose(out["weight"].reindex(expected.index), expected, atol=1e-10)
    np.testing.assert_allclose(out["agreement"].reindex(expected.index),
                               dense.to_frame("agreement")["G4"].drop("G4"), atol=1e-12)
    inn = prov("G4", "in")
    np.testing.assert_allclose(inn["weight"].reindex(expected.index),
                               dense.to_frame().loc["G4"].drop("G4"), atol=1e-10)
    top = prov.batch(["G4", "G0", "G1"], "out", top=2)
    assert len(top["G0"]) == 2
    assert top["G4"].index.tolist() == out["weight"].abs().sort_values(ascending=False).index[:2].tolist()


def test_identical_replicas_have_that_jacobian():
    ens = ensemble(seeds=(3, 3, 3))
    res = jacobian(ens)
    np.testing.assert_allclose(res.mean, oracle(ens.replicas[0], ens.reference), atol=1e-10)
    np.testing.assert_allclose(res.sd, 0, atol=1e-12)
    assert np.all(res.sign_agreement == 1)


def test_sample_reference_averages():
    ens = ensemble()
    X = np.random.default_rng(0).uniform(0, 2, size=(4, G))
    res = jacobian(ens, x_ref=X)
    expected = np.mean([oracle(ens.replicas[1], x) for x in X], axis=0)
    np.testing.assert_allclose(res.per_replica[1], expected, atol=1e-10)
    assert res.n_reference == 4
    cols = jacobian_columns(ens, [0], x_ref=X)
    np.testing.assert_allclose(cols[1, :, 0], expected[:, 0], atol=1e-10)


def test_float32_single_module_and_generated_names():
    model = mlp(0, torch.float32)
    x = np.full(G, 0.5)
    res = jacobian(model, x_ref=x)
    assert res.n_replicas == 1 and np.all(res.sd == 0)
    assert res.sources[0] == "g0"
    np.testing.assert_allclose(res.mean, oracle(model.double(), x), atol=1e-5)


def test_errors():
    ens = ensemble()
    with pytest.raises(ScreenError, match="NOPE"):
        jacobian(ens, sources=["NOPE"])
    with pytest.raises(ValueError, match="x_ref"):
        jacobian(ens, x_ref=np.zeros(3))
    with pytest.raises(ValueError, match="kind"):
        jacobian(ens).to_frame("median")


def test_provider_drives_bfs_like_the_dense_frame():
    ens = ensemble()
    dense = jacobian(ens).to_frame()
    prov = column_provider(ens)
    for direction in ("out", "in", "both"):
        a = expand_from_seeds(prov, ["G0", "NOPE"], breadth=2, depth=2, direction=direction)
        b = expand_from_seeds(dense, ["G0", "NOPE"], breadth=2, depth=2, direction=direction)
        assert set(a.edges) == set(b.edges)
        assert a.graph["missing_seeds"] == ["NOPE"]
        for u, v in a.edges:
            assert a.edges[u, v]["weight"] == pytest.approx(b.edges[u, v]["weight"], abs=1e-10)
            assert "agreement" in a.edges[u, v] and "sd" in a.edges[u, v]


def lazynet_ensemble(seeds=(0, 1)):
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.ensemble import Ensemble
    from lazynet_core.model import LazyNet

    reps = []
    for s in seeds:
        m = LazyNet(G, ModelConfig(hidden=5), seed=s).double()
        with torch.no_grad():
            torch.manual_seed(s)
            m.out.weight.normal_(0, 0.3)
        reps.append(m)
    genes = np.array([f"G{i}" for i in range(G)])
    return Ensemble(replicas=reps, genes=genes, reference=np.linspace(0.5, 2.0, G),
                    model_config=ModelConfig(), train_config=TrainConfig(), pair_config=PairConfig())


def test_real_lazynet_ensemble_oracles():
    ens = lazynet_ensemble()
    res = jacobian(ens)
    ref = ens.reference.astype(np.float64)
    for r, model in enumerate(ens.replicas):
        np.testing.assert_allclose(res.per_replica[r], oracle(model, ref), rtol=1e-6, atol=1e-8)
    col = column_provider(ens)("G2", "out")["weight"]
    np.testing.assert_allclose(col.to_numpy(), res.to_frame()["G2"].drop("G2").reindex(col.index), atol=1e-8)


def test_package_jacobian_works_on_every_call(toy_ensemble):
    """``import lazynet_core.jacobian`` must not turn ``lazynet_core.jacobian`` into a non-callable."""
    import importlib

    import lazynet_core

    _, ensemble = toy_ensemble
    first = lazynet_core.jacobian(ensemble)
    importlib.import_module("lazynet_core.jacobian")
    second = lazynet_core.jacobian(ensemble)
    assert np.array_equal(first.mean, second.mean)
