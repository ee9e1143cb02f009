"""Known-answer tests of lazynet_core.metrics on a hand-built Pairs stand-in."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import sparse

from lazynet_core import metrics
from lazynet_core.metrics import baseline_predictions, delta_metrics, evaluate, summarize, summary_table

DELTA_NAMES = {
    "pearson_delta",
    "pearson_delta_top20",
    "mse_delta",
    "direction_acc_top20",
    "auroc_de",
    "auprc_de",
}


@dataclass(frozen=True)
class FakePairs:
    """The members of ``lazynet_core.pairs.Pairs`` that metrics uses, with plain numpy means."""

    X: sparse.csr_matrix
    genes: np.ndarray
    perturbations: np.ndarray
    pert_targets: tuple
    cell_pert: np.ndarray
    cell_role: np.ndarray
    test_perts: np.ndarray
    config: SimpleNamespace

    def _mean(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[np.flatnonzero(rows)].mean(axis=0)).ravel()

    def control_mean(self, role: str = "train") -> np.ndarray:
        return self._mean((self.cell_pert < 0) & (self.cell_role == role))

    def pert_mean(self, p_idx: int, role: str) -> np.ndarray:
        return self._mean((self.cell_pert == p_idx) & (self.cell_role == role))

    def pre_state(self, p_idx: int, role: str = "test") -> np.ndarray:
        pre = self.control_mean("train")
        t = self.pert_targets[p_idx]
        pre[t] = self.pert_mean(p_idx, role)[t]
        return pre

    def evaluation_perturbations(self, role: str) -> np.ndarray:
        return np.unique(self.cell_pert[(self.cell_pert >= 0) & (self.cell_role == role)])


def make_fake(rows, cell_pert, cell_role, labels, targets, split="perturbations") -> FakePairs:
    rows = np.asarray(rows, dtype=np.float32)
    cell_pert, cell_role = np.asarray(cell_pert), np.asarray(cell_role)
    test = np.array([not np.any((cell_pert == p) & (cell_role == "train")) for p in range(len(labels))])
    return FakePairs(
        sparse.csr_matrix(rows),
        np.array([f"g{i}" for i in range(rows.shape[1])]),
        np.asarray(labels),
        tuple(np.asarray(t) for t in targets),
        cell_pert,
        cell_role,
        test,
        SimpleNamespace(split=split),
    )


@pytest.fixture
def low_rank():
    """Training deltas Y = G0 W0 G0[targets]^T exactly (rank 3, zero row means); one cell each."""
    rng = np.random.default_rng(0)
    n_genes, train_t, test_t = 40, np.arange(12), [20, 21, 22]
    g0, w0 = rng.normal(size=(n_genes, 3)), rng.normal(size=(3, 3))
    g0[train_t] -= g0[train_t].mean(axis=0)  # zero mean training delta: the intercept b is 0 here
    control = np.full(n_genes, 5.0)

    def truth(t):
        return g0 @ w0 @ g0[t].sum(axis=0)  # additive in targets by construction

    singles = [[t] for t in train_t] + [[t] for t in test_t]
    targets = singles + [[20, 21]]
    rows = [control, control] + [control + truth(t) for t in targets]
    cell_pert = [-1, -1] + list(range(len(targets)))
    cell_role = ["train", "train"] + ["train"] * len(train_t) + ["test"] * (len(test_t) + 1)
    labels = [f"g{t[0]}" for t in singles] + ["g20+g21"]
    return make_fake(rows, cell_pert, cell_role, labels, targets), truth, control


def test_perfect_prediction():
    obs = np.random.default_rng(1).normal(size=100)
    scores = delta_metrics(obs, obs)
    assert set(scores) == DELTA_NAMES
    assert scores["pearson_delta"] == pytest.approx(1.0)
    assert scores["pearson_delta_top20"] == pytest.approx(1.0)
    assert scores["mse_delta"] == 0.0
    assert scores["direction_acc_top20"] == 1.0
    assert scores["auroc_de"] == pytest.approx(1.0) and scores["auprc_de"] == pytest.approx(1.0)


def test_sign_flipped():
    obs = np.random.default_rng(2).normal(size=50)
    scores = delta_metrics(-obs, obs, top_k=5)
    assert scores["pearson_delta"] == pytest.approx(-1.0)
    assert scores["pearson_delta_top5"] == pytest.approx(-1.0)
    assert scores["direction_acc_top5"] == 0.0
    assert scores["auroc_de"] == 1.0  # |delta| ranking ignores the sign
    assert scores["mse_delta"] == pytest.approx(np.mean(4 * obs**2))


def test_targets_excluded():
    rng = np.random.default_rng(3)
    obs = rng.normal(size=30)
    pred = obs + 0.5 * rng.normal(size=30)
    base = delta_metrics(pred, obs, exclude=[0])
    obs2, pred2 = obs.copy(), pred.copy()
    obs2[0], pred2[0] = -50.0, -80.0
    assert delta_metrics(pred2, obs2, exclude=[0]) == pytest.approx(base)
    assert delta_metrics(pred2, obs2)["pearson_delta"] > 0.9  # without exclusion the target dominates


def test_constant_prediction_is_nan_not_zero():
    scores = delta_metrics(np.zeros(20), np.arange(20.0), top_k=5)
    assert np.isnan(scores["pearson_delta"]) and np.isnan(scores["pearson_delta_top5"])
    assert scores["auroc_de"] == 0.5
    nan_scores = delta_metrics(np.full(20, np.nan), np.arange(20.0))
    assert all(np.isnan(v) for v in nan_scores.values())


def test_delta_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same genes"):
        delta_metrics(np.zeros(3), np.zeros(4))


def test_small_hand_example():
    rows = [[1, 1, 1], [3, 1, 1], [1, 3, 1], [1, 1, 5], [2, 2, 2], [0, 0, 4]]
    fake = make_fake(
        rows,
        [-1, 0, 0, 1, 0, 1],
        ["train", "train", "train", "train", "test", "test"],
        ["g0", "g2"],
        [[0], [2]],
        split="cells",
    )
    preds = baseline_predictions(fake)
    pre = np.array([[2, 1, 1], [1, 1, 4]])
    assert_allclose(preds["identity"], pre)
    # perturbed training cells: rows 1, 2, 3 -> mean [5/3, 5/3, 7/3]; targets set to the pre state
    assert_allclose(preds["perturbed_mean"], [[2, 5 / 3, 7 / 3], [5 / 3, 5 / 3, 4]])
    assert_allclose(preds["pert_mean"], [[2, 2, 1], [1, 1, 4]])


def test_identity_baseline_gives_nan_pearson(low_rank):
    fake, _, _ = low_rank
    frame = evaluate(fake, methods=["identity"])
    assert frame.loc[frame.metric == "pearson_delta", "value"].isna().all()


def test_pert_mean_nan_for_held_out(low_rank):
    fake, _, _ = low_rank
    assert np.isnan(baseline_predictions(fake)["pert_mean"]).all()
    assert np.isfinite(baseline_predictions(fake, role="train")["pert_mean"]).all()


@pytest.mark.parametrize(("ridge", "atol"), [(1e-9, 1e-5), (0.1, 0.05)])
def test_linear_recovers_held_out_targets(low_rank, ridge, atol):
    fake, truth, control = low_rank
    linear = baseline_predictions(fake, ridge=ridge)["linear"]
    for row, p in enumerate(fake.evaluation_perturbations("test")):
        keep = np.setdiff1d(np.arange(fake.X.shape[1]), fake.pert_targets[p])
        expected = truth(fake.pert_targets[p])[keep]
        assert_allclose(linear[row, keep] - control[keep], expected, atol=atol * np.abs(expected).max())


def test_linear_combination_is_additive(low_rank):
    fake, _, control = low_rank
    evals = list(fake.evaluation_perturbations("test"))
    linear = baseline_predictions(fake, ridge=5.0)["linear"] - control  # ridge bias must not break additivity
    a, b, ab = (evals.index(i) for i in (12 + 0, 12 + 1, 15))
    keep = np.setdiff1d(np.arange(fake.X.shape[1]), [20, 21])
    assert_allclose(linear[ab, keep], linear[a, keep] + linear[b, keep], atol=1e-9)


def test_evaluate_layout(low_rank):
    fake, _, _ = low_rank
    frame = evaluate(fake, lambda x: x + 0.01 * np.arange(x.shape[1], dtype=np.float32), top_k=20)
    assert list(frame.columns) == ["split", "role", "method", "perturbation", "metric", "value"]
    methods = ["lazynet", *metrics.BASELINES]
    assert list(frame.method.unique()) == methods
    n_eval = len(fake.evaluation_perturbations("test"))
    per_pert = frame[frame.perturbation != "ALL"]
    assert len(per_pert) == len(methods) * n_eval * len(DELTA_NAMES)
    assert not per_pert.duplicated(["method", "perturbation", "metric"]).any()
    pooled = frame[frame.perturbation == "ALL"]
    assert list(pooled.metric.unique()) == ["pearson_post_pooled"] and len(pooled) == len(methods)
    assert (frame.split == "perturbations").all() and (frame.role == "test").all()
    lin = per_pert[(per_pert.method == "linear") & (per_pert.metric == "pearson_delta")]
    assert (lin.value > 0.999).all()


def test_evaluate_rejects_unknown_method(low_rank):
    with pytest.raises(ValueError, match="Unknown baseline"):
        evaluate(low_rank[0], methods=["gears"])


def test_summaries():
    frame = pd.DataFrame(
        {
            "split": ["cells"] * 4 + ["perturbations"] * 4,
            "role": "test",
            "method": ["a", "a", "b", "b"] * 2,
            "perturbation": ["p", "q"] * 4,
            "metric": "pearson_delta",
            "value": [0.4, 0.6, np.nan, np.nan, 0.1, 0.3, 0.2, 0.2],
        }
    )
    summary = summarize(frame)
    row = summary[(summary.split == "cells") & (summary.method == "a")].iloc[0]
    assert row["mean"] == pytest.approx(0.5) and row["sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert row["n"] == 2
    table = summary_table(frame)
    assert list(table.index) == ["a", "b"] and list(table.columns) == ["cells", "perturbations"]
    assert table.loc["a", "cells"] == "0.50 ± 0.14"
    assert table.loc["b", "cells"] == "NaN"
    assert table.loc["b", "perturbations"] == "0.20 ± 0.00"
    seeded = pd.concat([frame.assign(seed=0), frame.assign(seed=1)])
    assert summarize(seeded)["n_seeds"].eq(2).all()


@pytest.mark.parametrize("func", [delta_metrics, baseline_predictions, evaluate, summary_table])
def test_signatures_keyword_only(func):
    params = inspect.signature(func).parameters.values()
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 3
    assert all(p.default is p.empty for p in positional[:1])


@pytest.mark.parametrize("split", ["perturbations", "cells"])
def test_integration_with_make_pairs(split):
    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.datasets import toy_screen
    from lazynet_core.pairs import make_pairs

    pairs = make_pairs(read_screen(toy_screen()), PairConfig(split=split))
    frame = evaluate(pairs, lambda x: x, name="copy")
    # held-out perturbations are labelled "perturbations", held-out cells of trained ones "cells"
    expected = {"perturbations", "cells"} if split == "perturbations" else {"cells"}
    assert set(frame.split) == expected
    n_eval = len(pairs.evaluation_perturbations("test"))
    assert len(frame) == (1 + len(metrics.BASELINES)) * (n_eval * len(DELTA_NAMES) + len(expected))
    same = frame.pivot_table(
        index=["split", "perturbation", "metric"], columns="method", values="value", dropna=False
    )
    assert_allclose(same["copy"], same["identity"], atol=1e-6)  # predict = identity reproduces the baseline
    pert_mean = frame.loc[(frame.method == "pert_mean") & (frame.perturbation != "ALL")]
    assert pert_mean.loc[pert_mean.split == "perturbations", "value"].isna().all()
    assert pert_mean.loc[pert_mean.split == "cells", "value"].notna().any()
    assert summary_table(frame).shape == (1 + len(metrics.BASELINES), len(expected))
