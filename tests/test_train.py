"""Training: fits, recovers a planted edge, honours cancel, budget and NaN guard."""

import numpy as np
import pytest
import torch

from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
from lazynet_core.errors import TrainingCancelled
from lazynet_core.jacobian import jacobian
from lazynet_core.pairs import make_pairs
from lazynet_core.train import planned_steps, train_ensemble


def test_planted_edge_learned_with_direction_and_sign(toy_ensemble):
    """The toy screen plants G0 -> G1 (+0.8); the consensus Jacobian must say so."""
    _, ensemble = toy_ensemble
    J = jacobian(ensemble).to_frame()  # rows = target, columns = source
    forward, backward = J.loc["G1", "G0"], J.loc["G0", "G1"]
    assert forward > 0.15
    assert abs(forward) > 2 * abs(backward)
    # G0 knock-down also raises other genes through CP10k normalisation (negative J), but the only
    # positive effect of G0 is the planted one
    assert J["G0"].drop("G0").idxmax() == "G1"


def test_fits_training_perturbations(toy_ensemble):
    pairs, ensemble = toy_ensemble
    control = pairs.control_mean("train")
    p = int(np.flatnonzero(pairs.perturbations == "G0")[0])
    predicted = ensemble.predict(pairs.pre_state(p, "train")) - control
    observed = pairs.pert_mean(p, "train") - control
    assert predicted[1] == pytest.approx(observed[1], abs=0.15)


def test_history_and_info(toy_ensemble):
    _, ensemble = toy_ensemble
    assert set(ensemble.history.columns) >= {"replica", "epoch", "train_loss", "val_loss", "elapsed_s"}
    assert ensemble.history.replica.nunique() == 2
    assert all(r["clamped_fraction"] == 0.0 for r in ensemble.info["replicas"])
    assert ensemble.info["replicas"][0]["seed"] != ensemble.info["replicas"][1]["seed"]


def test_progress_callback_and_cancel(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    calls = []

    def stop():
        return len(calls) >= 3

    with pytest.raises(TrainingCancelled):
        train_ensemble(
            pairs,
            ModelConfig(),
            TrainConfig(replicas=2, epochs=50),
            on_progress=lambda *a: calls.append(a),
            should_stop=stop,
        )
    assert len(calls) == 3
    replica, epoch, step, loss, elapsed = calls[-1]
    assert (replica, step) == (0, 3) and np.isfinite(loss) and elapsed >= 0


def test_time_budget_stops_every_replica(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    ensemble = train_ensemble(
        pairs, ModelConfig(), TrainConfig(replicas=3, epochs=10_000, patience=0, time_budget_s=1.5)
    )
    assert len(ensemble.replicas) == 3
    assert {r["stopped"] for r in ensemble.info["replicas"]} == {"time_budget"}
    assert ensemble.info["stopped_by_time_budget"]


def test_seeds_make_training_reproducible(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    config = TrainConfig(replicas=1, epochs=3, patience=0)
    a = train_ensemble(pairs, ModelConfig(), config)
    b = train_ensemble(pairs, ModelConfig(), config)
    x = pairs.control_mean("train")
    assert np.array_equal(a.predict(x), b.predict(x))


def test_nan_guard_raises_clear_error(toy_adata, monkeypatch):
    from lazynet_core.errors import TrainingError
    from lazynet_core.model import LazyNet

    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    monkeypatch.setattr(LazyNet, "forward", lambda self, x: x * float("nan"))
    with pytest.raises(TrainingError, match="NaN.*replica 0"):
        train_ensemble(pairs, ModelConfig(), TrainConfig(replicas=1, epochs=5))


def test_planned_steps(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(resamples=10, control_pairs=0.5))
    n = len(pairs.evaluation_perturbations("train"))
    per_epoch = n * 10 + round(0.5 * n * 10)
    assert planned_steps(pairs, TrainConfig(replicas=2, epochs=3, batch_size=16)) == 2 * 3 * -(
        -per_epoch // 16
    )
    torch.manual_seed(0)


def test_threads_auto_is_one_for_small_models_and_restored(toy_adata):
    import torch

    assert TrainConfig().threads_for(300, 300) == 1
    assert TrainConfig(threads=3).threads_for(300, 300) == 3
    assert 1 <= TrainConfig().threads_for(18_000, 256) <= 4
    before = torch.get_num_threads()
    pairs = make_pairs(toy_adata, PairConfig())
    ensemble = train_ensemble(pairs, ModelConfig(), TrainConfig(replicas=1, epochs=1))
    assert ensemble.info["threads"] == 1 and torch.get_num_threads() == before
