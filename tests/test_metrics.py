"""Known-answer tests of lazynet_core.metrics: hand-built pairs, simulated noise, real make_pairs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import sparse

from lazynet_core import metrics
from lazynet_core.errors import ScreenError
from lazynet_core.metrics import (
    baseline_predictions,
    compare,
    delta_metrics,
    evaluate,
    headline,
    noise_ceiling,
    set_ceiling,
    spearman_brown,
    summarize,
    summary_table,
)

DELTA_NAMES = {
    "pearson_delta",
    "pearson_delta_top20",
    "mse_delta",
    "direction_acc_top20",
    "auroc_de",
    "auprc_de",
    "slope",
    "norm_ratio",
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
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(seed=0))

    @property
    def n_genes(self) -> int:
        return self.X.shape[1]

    def cells(self, p_idx: int, role: str) -> np.ndarray:
        return np.flatnonzero((self.cell_pert == p_idx) & (self.cell_role == role))

    def _mean(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.full(self.n_genes, np.nan)
        return np.asarray(self.X[idx].mean(axis=0)).ravel()

    def control_mean(self, role: str = "train") -> np.ndarray:
        return self._mean(self.cells(-1, role))

    def pert_mean(self, p_idx: int, role: str) -> np.ndarray:
        return self._mean(self.cells(p_idx, role))

    def pre_state(self, p_idx: int, role: str = "test") -> np.ndarray:
        pre = self.control_mean("train").copy()
        t = self.pert_targets[p_idx]
        pre[t] = self.pert_mean(p_idx, role)[t]
        return pre

    def evaluation_perturbations(self, role: str) -> np.ndarray:
        return np.unique(self.cell_pert[(self.cell_pert >= 0) & (self.cell_role == role)])


def make_fake(rows, cell_pert, cell_role, labels, targets) -> FakePairs:
    return FakePairs(
        sparse.csr_matrix(np.asarray(rows, dtype=np.float64)),
        np.array([f"g{i}" for i in range(np.asarray(rows).shape[1])]),
        np.asarray(labels),
        tuple(np.asarray(t) for t in targets),
        np.asarray(cell_pert),
        np.asarray(cell_role),
    )


def noisy_screen(
    *,
    n_genes=200,
    n_perts=60,
    cells=40,
    n_train_ctrl=200,
    n_ref=200,
    n_other=200,
    effect_sd=0.3,
    noise_sd=1.0,
    seed=0,
):
    """Cells = control mean + the perturbation's true delta + Gaussian noise (known noise, no model)."""
    rng = np.random.default_rng(seed)
    control = rng.uniform(2, 4, size=n_genes)
    truth = rng.normal(scale=effect_sd, size=(n_perts, n_genes))
    rows, cell_pert, cell_role = [], [], []
    for role, n in (("train", n_train_ctrl), ("reference", n_ref), ("test", n_other)):
        rows.append(control + rng.normal(scale=noise_sd, size=(n, n_genes)))
        cell_pert += [-1] * n
        cell_role += [role] * n
    for p in range(n_perts):
        rows.append(control + truth[p] + rng.normal(scale=noise_sd, size=(cells, n_genes)))
        cell_pert += [p] * cells
        cell_role += ["test"] * cells
    targets = [[p] for p in range(n_perts)]
    truth[np.arange(n_perts), np.arange(n_perts)] = 0.0  # targets are excluded from every metric anyway
    fake = make_fake(np.vstack(rows), cell_pert, cell_role, [f"g{p}" for p in range(n_perts)], targets)
    return fake, control, truth


def test_perfect_prediction():
    obs = np.random.default_rng(1).normal(size=100)
    scores = delta_metrics(obs, obs)
    assert set(scores) == DELTA_NAMES
    assert scores["slope"] == pytest.approx(1.0) and scores["norm_ratio"] == pytest.approx(1.0)
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


def test_perfect_predictor_scores_one_against_noise_free_reference():
    rng = np.random.default_rng(4)
    n_genes, control = 30, np.full(30, 3.0)
    effects = rng.normal(size=(4, n_genes))
    rows = [control] * 3 + [control] * 2 + [control + e for e in effects for _ in range(2)]
    cell_pert = [-1] * 5 + [p for p in range(4) for _ in range(2)]
    cell_role = ["train"] * 3 + ["reference"] * 2 + ["train"] * 4 + ["test"] * 4
    fake = make_fake(rows, cell_pert, cell_role, ["g0", "g1", "g2", "g3"], [[0], [1], [2], [3]])

    def perfect(x):  # knows the true effect of whichever target the input sets
        shift = np.abs(x - control)
        return np.stack([control + effects[np.argmax(s)] if s.max() > 1e-6 else control for s in shift])

    frame = evaluate(fake, perfect, ceiling=False)
    lazy = frame[(frame.method == "lazynet") & (frame.perturbation != "ALL")].set_index("metric")["value"]
    assert_allclose(lazy["pearson_delta"], [1.0, 1.0])
    assert_allclose(lazy["slope"], [1.0, 1.0])
    assert (frame.set == "held_out_perturbations").all()


def test_null_is_zero_against_independent_reference_and_flattered_by_training_reference():
    def mean_r(frame):
        return frame[(frame.metric == "pearson_delta") & (frame.perturbation != "ALL")]["value"].mean()

    indep, train = [], []
    for seed in range(12):  # "in expectation": screens share one control draw, so average over screens
        fake, _, _ = noisy_screen(
            n_perts=20, n_train_ctrl=60, effect_sd=0.0, seed=seed
        )  # every delta is noise
        indep.append(mean_r(evaluate(fake, methods=["null"], ceiling=False)))
        train.append(mean_r(evaluate(fake, methods=["null"], reference="training", ceiling=False)))
    assert abs(np.mean(indep)) < 0.03
    assert np.mean(train) > 0.2  # the training control noise sits on both sides of the comparison


def test_split_half_ceiling_agrees_with_spearman_brown():
    fake, _, truth = noisy_screen(effect_sd=0.3, noise_sd=1.0, cells=40, n_ref=200)
    # observed delta = truth + noise of a 40-cell mean − noise of a 200-cell mean
    noise_var = 1.0 / 40 + 1.0 / 200
    rel = [noise_ceiling(fake, p, "test")["reliability"] for p in range(len(truth))]
    expected = [np.var(np.delete(t, p)) / (np.var(np.delete(t, p)) + noise_var) for p, t in enumerate(truth)]
    assert np.mean(rel) == pytest.approx(np.mean(expected), abs=0.03)
    ceiling = noise_ceiling(fake, 0, "test")
    assert ceiling["ceiling"] == pytest.approx(np.sqrt(ceiling["reliability"]))
    assert spearman_brown(0.5) == pytest.approx(2 / 3)


def _observed_summary(frame):
    summary = summarize(frame)
    summary = summary[(summary["set"] == "held_out_perturbations") & (summary["method"] == "observed")]
    return summary.set_index("metric")


def test_a_sets_ceiling_pools_the_split_half_r_not_the_halves_that_agree():
    # no effect at all: the halves agree on about half the perturbations by chance, whose ceilings
    # average far above 0; the set's ceiling, from the mean split-half r (negatives kept), is near 0
    fake, _, _ = noisy_screen(effect_sd=0.0, noise_sd=1.0, cells=40, n_ref=200)
    frame = evaluate(fake, methods=["null"])
    observed = frame[(frame["method"] == "observed") & (frame["set"] == "held_out_perturbations")]
    per = observed.pivot(index="perturbation", columns="metric", values="value")
    assert 10 < per["ceiling"].notna().sum() < 50 and per["ceiling"].mean() > 0.2
    row = _observed_summary(frame)
    assert row.loc["ceiling", "mean"] == pytest.approx(set_ceiling(per["split_half_r"].mean()))
    assert_allclose(per["reliability"], 2 * per["split_half_r"] / (1 + per["split_half_r"]))
    # (√ is steep near 0: a mean r of 0.014, one standard error here, already reads 0.17)
    assert row.loc["ceiling", "mean"] < 0.2 and row.loc["ceiling", "n"] == 60
    # a real effect: the set's ceiling is where the per-perturbation ones are
    fake, _, _ = noisy_screen(effect_sd=0.3, noise_sd=1.0, cells=40, n_ref=200)
    frame = evaluate(fake, methods=["null"])
    per = frame[(frame["method"] == "observed") & (frame["set"] == "held_out_perturbations")].pivot(
        index="perturbation", columns="metric", values="value")
    row = _observed_summary(frame)
    assert row.loc["ceiling", "mean"] == pytest.approx(per["ceiling"].mean(), abs=0.02)
    assert set_ceiling(-0.2) == 0.0 and np.isnan(set_ceiling(np.nan))
    assert set_ceiling(1 / 3) == pytest.approx(0.5 ** 0.5)  # r = 1/3 -> reliability 0.5
    # one perturbation whose halves disagree badly does not wipe out a set that reproduces: the mean
    # of the reliabilities (Spearman–Brown is unbounded below, SB(−0.9) = −18) would read 0
    halves = np.array([0.5, 0.5, 0.5, -0.9])
    assert np.mean(2 * halves / (1 + halves)) < 0
    assert set_ceiling(halves.mean()) == pytest.approx(np.sqrt(2 * 0.15 / 1.15))  # mean r 0.15


def test_perturbed_means_and_additive_by_hand():
    # genes g0..g3; training singles A (g0), B (g1), C (g2); held out: the combination A+B and D (g3)
    control = np.array([1.0, 1.0, 1.0, 1.0])
    d_a, d_b, d_c = (
        np.array([-0.9, 0.2, 0.4, 0.1]),
        np.array([0.3, -0.8, 0.0, 0.5]),
        np.array([0.6, 0.1, -0.7, 0.2]),
    )
    d_ab, d_d = np.array([-0.5, -0.5, 0.3, 0.6]), np.array([0.1, 0.1, 0.1, -0.9])
    rows = [control, control, control + d_a, control + d_b, control + d_c, control + d_ab, control + d_d]
    fake = make_fake(
        rows,
        [-1, -1, 0, 1, 2, 3, 4],
        ["train", "reference", "train", "train", "train", "test", "test"],
        ["A", "B", "C", "A+B", "D"],
        [[0], [1], [2], [0, 1], [3]],
    )
    preds = baseline_predictions(fake)  # rows: A+B, D
    pre = np.stack([fake.pre_state(3), fake.pre_state(4)])
    pm = control + (d_a + d_b + d_c) / 3
    # PM-ex: for each gene, the perturbations targeting it are left out of the average
    pm_ex = control + np.array(
        [(d_b[0] + d_c[0]) / 2, (d_a[1] + d_c[1]) / 2, (d_a[2] + d_b[2]) / 2, (d_a[3] + d_b[3] + d_c[3]) / 3]
    )
    for row, targets in enumerate(([0, 1], [3])):
        keep = np.setdiff1d(np.arange(4), targets)
        assert_allclose(preds["perturbed_mean"][row, keep], pm[keep])
        assert_allclose(preds["perturbed_mean_ex"][row, keep], pm_ex[keep])
        assert_allclose(preds["identity"][row], pre[row])
        assert_allclose(preds["perturbed_mean"][row, targets], pre[row, targets])  # targets are the input
    assert_allclose(preds["additive"][0, [2, 3]], (control + d_a + d_b)[[2, 3]])
    assert np.isnan(preds["additive"][1]).all()  # a single perturbation has no additive prediction
    assert np.isnan(preds["own_training_mean"]).all()  # nothing held out was trained on


def test_control_covariance_by_hand():
    # control cells: g1 = 2 * g0 exactly, g2 independent of g0; the target g0 falls by 0.5
    g0 = np.array([0.0, 1.0, 2.0, 3.0])
    g2 = np.array([1.0, -1.0, -1.0, 1.0])
    ctrl = np.column_stack([g0 + 5, 2 * g0 + 5, g2 + 5])
    target_cells = np.array([[4.0, 5.0, 5.0]])
    fake = make_fake(
        np.vstack([ctrl, ctrl[:2], target_cells, [[5, 5, 5]], [[5, 5, 5]]]),
        [-1] * 6 + [0, 1, 2],
        ["train"] * 4 + ["reference"] * 2 + ["test", "train", "train"],
        ["g0", "g1", "g2"],
        [[0], [1], [2]],
    )
    pred = baseline_predictions(fake, perturbations=[0])["control_covariance"][0]
    delta_u = 4.0 - ctrl[:, 0].mean()
    assert_allclose(pred - ctrl.mean(axis=0), [delta_u, 2 * delta_u, 0.0], atol=1e-9)


def test_linear_is_the_authors_bilinear_form():
    """Same numbers as an independent transcription of the authors' R code (prcomp + two ridge solves)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(5)
    n_genes, n_train, k, ridge = 30, 10, 5, 0.1
    control = rng.uniform(2, 5, size=n_genes)
    deltas = rng.normal(scale=0.5, size=(n_train + 2, n_genes))
    rows = [control, control] + [control + deltas[g] for g in range(n_train + 2)]
    roles = ["train", "reference"] + ["train"] * n_train + ["test", "test"]
    fake = make_fake(
        rows,
        [-1, -1, *range(n_train + 2)],
        roles,
        [f"g{g}" for g in range(n_train + 2)],
        [[g] for g in range(n_train + 2)],
    )
    ours = baseline_predictions(fake, n_pcs=k, ridge=ridge)["linear"]  # the two held-out targets

    x = np.column_stack([control + deltas[g] for g in range(n_train)] + [control])  # ctrl column included
    gene_emb = PCA(n_components=k, svd_solver="full").fit_transform(x)  # prcomp(x)$x: genes x k
    pert_emb = np.column_stack([gene_emb[g] for g in range(n_train)] + [np.zeros(k)])
    y = x - control[:, None]
    centre = y.mean(axis=1)
    coef = (
        np.linalg.inv(gene_emb.T @ gene_emb + ridge * np.eye(k))
        @ gene_emb.T
        @ (y - centre[:, None])
        @ pert_emb.T
        @ np.linalg.inv(pert_emb @ pert_emb.T + ridge * np.eye(k))
    )
    for row, g in enumerate((n_train, n_train + 1)):
        expected = gene_emb @ coef @ gene_emb[g] + centre + control
        keep = np.setdiff1d(np.arange(n_genes), [g])
        assert_allclose(ours[row, keep], expected[keep], atol=1e-9)


def test_intervention_response_flags_a_prediction_that_ignores_the_target(toy_pairs):
    const = evaluate(
        toy_pairs, lambda x: x + 0.1 * np.sin(np.arange(x.shape[1], dtype=np.float32)), methods=()
    )
    lazy = const[(const.method == "lazynet") & (const.metric == "intervention_response")]["value"]
    assert np.allclose(lazy, 1.0)  # the same delta whatever the target

    mixing = np.random.default_rng(7).normal(size=(toy_pairs.n_genes, toy_pairs.n_genes)).astype(np.float32)

    def responsive(x):  # each target moves the other genes along its own row of a random matrix
        shift = x - toy_pairs.control_mean("train")
        return x + 0.01 * np.sin(np.arange(x.shape[1], dtype=np.float32)) + 5 * shift @ mixing

    resp = evaluate(toy_pairs, responsive, methods=())
    values = resp[(resp.method == "lazynet") & (resp.metric == "intervention_response")]["value"]
    assert (values.abs() < 0.99).all()


@pytest.fixture(scope="module")
def toy_pairs():
    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.datasets import toy_screen
    from lazynet_core.pairs import make_pairs

    return make_pairs(read_screen(toy_screen()), PairConfig())


def test_evaluate_layout_and_sets(toy_pairs):
    frame = evaluate(toy_pairs, lambda x: x, name="copy")
    assert list(frame.columns) == ["set", "role", "reference", "method", "perturbation", "metric", "value"]
    assert (frame.reference == "independent").all()
    assert set(frame.set) <= set(metrics.SETS) and {"held_out_perturbations", "held_out_cells"} <= set(
        frame.set
    )
    assert {"copy", *metrics.BASELINES, "observed"} == set(frame.method)
    per = frame[frame.perturbation != "ALL"]
    assert not per.duplicated(["set", "method", "perturbation", "metric"]).any()
    same = per.pivot_table(
        index=["set", "perturbation", "metric"], columns="method", values="value", dropna=False
    )
    common = same.index.get_level_values("metric").isin(sorted(DELTA_NAMES))
    assert_allclose(same.loc[common, "copy"], same.loc[common, "identity"], atol=1e-6)
    own = per[(per.method == "own_training_mean") & (per.metric == "pearson_delta")]
    assert own.loc[own.set == "held_out_perturbations", "value"].isna().all()
    assert own.loc[own.set == "held_out_cells", "value"].notna().any()


def test_evaluate_refuses_independent_reference_without_reference_cells():
    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.datasets import toy_screen
    from lazynet_core.pairs import make_pairs

    pairs = make_pairs(read_screen(toy_screen()), PairConfig(reference_fraction=0.0))
    with pytest.raises(ScreenError, match="reference_fraction"):
        evaluate(pairs)
    assert (evaluate(pairs, reference="training", methods=())["reference"] == "training").all()


def test_evaluate_rejects_unknown_method(toy_pairs):
    with pytest.raises(ValueError, match="Unknown baseline"):
        evaluate(toy_pairs, methods=["gears"])


def test_summaries_average_seeds_before_counting():
    frame = pd.DataFrame(
        {
            "set": ["held_out_cells"] * 4 + ["held_out_perturbations"] * 4,
            "reference": "independent",
            "method": ["a", "a", "b", "b"] * 2,
            "perturbation": ["p", "q"] * 4,
            "metric": "pearson_delta",
            "value": [0.4, 0.6, np.nan, np.nan, 0.1, 0.3, 0.2, 0.2],
        }
    )
    summary = summarize(frame)
    row = summary[(summary.set == "held_out_cells") & (summary.method == "a")].iloc[0]
    assert row["mean"] == pytest.approx(0.5) and row["sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert row["n"] == 2
    table = summary_table(frame)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "held_out_cells"] == "0.500 ± 0.141 (n=2)"
    assert table.loc["b", "held_out_cells"] == "NaN"
    seeded = pd.concat([frame.assign(seed=0), frame.assign(seed=1, value=frame["value"] + 0.1)])
    again = summarize(seeded)
    assert again["n_seeds"].eq(2).all()
    assert again[(again.set == "held_out_cells") & (again.method == "a")]["n"].iloc[0] == 2  # perturbations


def test_paired_comparison_and_headline_do_not_overclaim():
    rng = np.random.default_rng(6)
    perts = [f"p{i}" for i in range(30)]
    base = rng.normal(0.2, 0.1, size=30)

    def frame_for(model_values):
        return pd.DataFrame(
            {
                "set": "held_out_perturbations",
                "reference": "independent",
                "method": ["lazynet"] * 30 + ["perturbed_mean_ex"] * 30 + ["null"] * 30,
                "perturbation": perts * 3,
                "metric": "pearson_delta",
                "value": np.concatenate([model_values, base, np.zeros(30)]),
            }
        )

    tie = frame_for(base + rng.normal(0, 0.05, size=30))
    paired = compare(tie).set_index("baseline")
    assert paired.loc["perturbed_mean_ex", "n"] == 30
    assert paired.loc["perturbed_mean_ex", "wins"] + paired.loc["perturbed_mean_ex", "losses"] == 30
    words = headline(tie, set_name="held_out_perturbations")
    if words["p_wilcoxon"] >= 0.05:
        assert words["verdict"] == "tie" and "not significant" in words["text"]
    ahead = headline(frame_for(base + 0.1), set_name="held_out_perturbations")
    assert ahead["verdict"] == "ahead" and ahead["baseline"] == "perturbed_mean_ex"
    assert ahead["wins"] == 30 and ahead["p_wilcoxon"] < 1e-4
    behind = headline(frame_for(base - 0.1), set_name="held_out_perturbations")
    assert behind["verdict"] == "behind" and behind["text"].startswith("behind perturbed_mean_ex by 0.100")
    tiny = headline(frame_for(base + 0.002 + rng.normal(0, 1e-4, size=30)), set_name="held_out_perturbations")
    assert tiny["p_wilcoxon"] < 1e-4 and tiny["wins"] == 30  # significant, yet far below a useful margin
    assert tiny["verdict"] == "tie" and "below the 0.01 margin" in tiny["text"]
    assert headline(
        frame_for(base + 0.002), set_name="held_out_perturbations", min_margin=0.001
    )["verdict"] == "ahead"
    tiny_loss = headline(frame_for(base - 0.002), set_name="held_out_perturbations")
    assert tiny_loss["verdict"] == "behind"  # a significant deficit is never softened into a tie


def test_records_carry_the_cli_contract(toy_pairs):
    frame = evaluate(toy_pairs, lambda x: x * 1.01)
    recs = metrics.records(frame)
    assert all({"method", "set", "reference", "metric", "mean", "sd", "n"} <= set(r) for r in recs)
    methods = {r["method"] for r in recs}
    assert {"lazynet", "perturbed_mean_ex", "control_covariance", "null", "observed"} <= methods
    metric_names = {r["metric"] for r in recs}
    assert {
        "pearson_delta",
        "pearson_delta_top20",
        "slope",
        "intervention_response",
        "ceiling",
    } <= metric_names
    assert any(r["method"] == "lazynet-minus-perturbed_mean_ex" for r in recs)


@pytest.mark.parametrize("func", [delta_metrics, baseline_predictions, evaluate, summary_table, compare])
def test_signatures_keyword_only(func):
    params = inspect.signature(func).parameters.values()
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 3
    assert all(p.default is p.empty for p in positional[:1])
