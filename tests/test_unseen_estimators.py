"""Known answers for the estimators of targets the screen never perturbed (``lazynet_core.unseen``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from lazynet_core.config import PairConfig
from lazynet_core.data import read_screen
from lazynet_core.metrics import baseline_predictions
from lazynet_core.pairs import make_pairs
from lazynet_core.unseen import ESTIMATORS, unseen_target_estimates

FILLERS = [f"F{i}" for i in range(30)]


def _screen(structure, perturbed, *, seed: int = 0, n_control: int = 1200, n_per: int = 250) -> ad.AnnData:
    """A log-linear SEM over genes A, U, T, D and 30 fillers, CRISPRi knock-down of 1.5 log units.

    ``structure(log_mean, labels, idx)`` adds the causal effects in place (parents before children);
    every gene has its own noise, so the control cells' covariance is the SEM's.
    """
    rng = np.random.default_rng(seed)
    genes = ["A", "U", "T", "D", *FILLERS]
    idx = {g: i for i, g in enumerate(genes)}
    labels = np.array(["control"] * n_control + [g for g in perturbed for _ in range(n_per)])
    log_mean = np.full((len(labels), len(genes)), 3.0) + rng.normal(0.0, 0.35, (len(labels), len(genes)))
    structure(log_mean, labels, idx)
    counts = rng.poisson(np.exp(log_mean)).astype(np.float32)
    cells = [f"c{i}" for i in range(len(labels))]
    obs = pd.DataFrame({"perturbation": labels, "modality": "CRISPRi"}, index=cells)
    return read_screen(ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes)))


def _knock(log_mean, labels, idx, gene):
    log_mean[labels == gene, idx[gene]] -= 1.5


def _chain_a_u_d(log_mean, labels, idx):
    """A -> U -> D: A's knock-down moves U and D; U's moves D but not A."""
    _knock(log_mean, labels, idx, "A")
    log_mean[:, idx["U"]] += 0.9 * (log_mean[:, idx["A"]] - 3.0)
    _knock(log_mean, labels, idx, "U")
    log_mean[:, idx["D"]] += 0.8 * (log_mean[:, idx["U"]] - 3.0)
    for f in ("F0", "F1", "F2"):
        _knock(log_mean, labels, idx, f)


def _predict_u(adata):
    pairs = make_pairs(adata, PairConfig(held_out=("U",)))
    p = int(np.flatnonzero(pairs.perturbations == "U")[0])
    base = pairs.control_mean("train").astype(float)
    est = unseen_target_estimates(pairs, perturbations=[p])
    ccov = baseline_predictions(pairs, perturbations=[p])["control_covariance"][0] - base
    du = float(pairs.pre_state(p)[1] - base[1])
    return pairs, {m: v[0] - base for m, v in est.items()}, ccov, du


def test_adjusted_regression_leaves_the_upstream_regulator_alone():
    adata = _screen(_chain_a_u_d, ["A", "U", "F0", "F1", "F2"])
    _, est, ccov, du = _predict_u(adata)
    assert du < -0.8
    # conditioning on U alone drags its regulator A down with it; under do(U) A does not move
    assert ccov[0] < -0.25 * abs(du), ccov[:4]
    assert est["ccov_adjusted"][0] == 0.0
    # D follows U (elasticity 0.8, attenuated by the counting noise of U among controls)
    assert 0.35 * abs(du) < -est["ccov_adjusted"][3] < 1.05 * abs(du), est["ccov_adjusted"][:4]
    for name in ESTIMATORS:
        assert est[name][1] == du  # the target is the do-intervention's input, set to its pre level


def test_shared_component_is_carried_to_the_unseen_target():
    shared = np.zeros(34)
    shared[4:14] = np.linspace(-0.6, 0.6, 10)  # every knock-down moves F0..F9 the same way

    def structure(log_mean, labels, idx):
        for g in ("A", "U", "T", "F20", "F21", "F22"):
            _knock(log_mean, labels, idx, g)
        log_mean[labels != "control"] += shared

    adata = _screen(structure, ["A", "U", "T", "F20", "F21", "F22"])
    pairs, est, ccov, _ = _predict_u(adata)
    keep = np.ones(pairs.n_genes, dtype=bool)
    keep[1] = False
    # genes are independent among controls: control covariance has nothing to say, the shared part does
    assert abs(np.corrcoef(ccov[keep], shared[keep])[0, 1]) < 0.5
    assert np.corrcoef(est["ccov_shared"][keep], shared[keep])[0, 1] > 0.9


def _chain_hidden_among_controls(log_mean, labels, idx):
    """A -> U among all cells, U -> D only in perturbed cells: the control cells cannot show U -> D."""
    _knock(log_mean, labels, idx, "A")
    log_mean[:, idx["U"]] += 0.9 * (log_mean[:, idx["A"]] - 3.0)
    _knock(log_mean, labels, idx, "U")
    perturbed = labels != "control"
    log_mean[perturbed, idx["D"]] += 0.8 * (log_mean[perturbed, idx["U"]] - 3.0)
    for f in ("F0", "F1", "F2"):
        _knock(log_mean, labels, idx, f)


def test_ancestor_response_carries_the_unseen_target_effect_that_controls_hide():
    adata = _screen(_chain_hidden_among_controls, ["A", "U", "F0", "F1", "F2"])
    _, est, ccov, du = _predict_u(adata)
    assert du < -0.8
    assert abs(ccov[3]) < 0.15 * abs(du), ccov[:4]  # D is independent of U among controls
    delta = est["ccov_ancestors"]
    assert delta[0] == 0.0  # the ancestor A stays where it was under do(U)
    assert delta[1] == du
    others = np.abs(np.delete(delta, [0, 1]))
    assert np.argmax(others) == 1 and delta[3] < 0, delta[:6]  # D, down with U, is the largest change


def test_without_a_measured_ancestor_it_is_control_covariance():
    adata = _screen(_chain_a_u_d, ["U", "F0", "F1", "F2"])  # no trained target moves U
    _, est, ccov, _ = _predict_u(adata)
    np.testing.assert_allclose(est["ccov_ancestors"], ccov, rtol=0, atol=1e-12)


def test_trained_singles_are_predicted_and_combinations_get_nan_rows():
    adata = _screen(_chain_a_u_d, ["A", "U", "F0", "F1", "F2", "F0+F1"])
    pairs = make_pairs(adata, PairConfig(held_out=("U",)))
    est = unseen_target_estimates(pairs, role="train")
    single = np.array(["+" not in pairs.perturbations[p] for p in pairs.evaluation_perturbations("train")])
    for values in est.values():
        assert np.isfinite(values[single]).all()
        assert np.isnan(values[~single]).all()


def test_least_squares_ancestors_weight_by_how_far_each_moved_the_target():
    from lazynet_core.unseen import _through_ancestors

    u, du = 1, -1.0
    cc = np.array([0.0, du, 0.3, 0.0, 0.1])
    strong = np.array([-1.5, -1.0, 0.0, -0.8, 0.0])  # the ancestor's own knock-down, u and D follow
    weak = np.array([0.0, -0.05, -0.5, 0.4, -1.5])  # barely moved u: mostly its other children
    both = np.vstack([strong, weak])
    ancestors = np.array([0, 4])

    # closed form: Δu · Σ Δ_s[u] Δ_s / Σ Δ_s[u]², ancestors' own entries zeroed, at control covariance's norm
    through = both.copy()
    through[[0, 1], ancestors] = 0.0
    slope = du * (both[:, u] @ through) / (both[:, u] @ both[:, u])
    slope[u] = 0.0
    expected = cc.copy()
    keep = np.arange(5) != u
    expected[keep] += slope[keep] / np.linalg.norm(slope[keep]) * np.linalg.norm(cc[keep])
    expected[ancestors] = 0.0
    got = _through_ancestors(cc, both, ancestors, u, du, weighting="least_squares")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # D follows u down in the least-squares combination; the ratio average scales the weak ancestor's
    # +0.4 on D by 20 (1 / 0.05) and flips it
    ratio = _through_ancestors(cc, both, ancestors, u, du, weighting="ratio")
    assert got[3] < -abs(got[2]), got
    assert ratio[3] > 0, ratio
    # one ancestor: the two weightings agree
    one = [_through_ancestors(cc, strong[None], ancestors[:1], u, du, weighting=w)
           for w in ("ratio", "least_squares")]
    np.testing.assert_allclose(one[0], one[1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="least_squares"):
        _through_ancestors(cc, both, ancestors, u, du, weighting="median")


def test_least_squares_ancestors_recover_the_hidden_child_and_fall_back_to_control_covariance():
    adata = _screen(_chain_hidden_among_controls, ["A", "U", "F0", "F1", "F2"])
    _, est, _, du = _predict_u(adata)
    delta = est["ccov_ancestors_ls"]
    assert delta[0] == 0.0 and delta[1] == du
    assert np.argmax(np.abs(np.delete(delta, [0, 1]))) == 1 and delta[3] < 0, delta[:6]
    np.testing.assert_allclose(delta, est["ccov_ancestors"], rtol=0, atol=1e-12)  # one ancestor: identical
    adata = _screen(_chain_a_u_d, ["U", "F0", "F1", "F2"])
    _, est, ccov, _ = _predict_u(adata)
    np.testing.assert_allclose(est["ccov_ancestors_ls"], ccov, rtol=0, atol=1e-12)
