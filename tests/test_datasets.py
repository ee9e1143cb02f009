"""Tests for the synthetic screen generators (``lazynet_core.datasets``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from lazynet_core import datasets
from lazynet_core.datasets import CONTROL

GENERATORS = [datasets.toy_screen, datasets.demo_screen, datasets.hill_screen]


@pytest.fixture(scope="module")
def screens() -> dict[str, ad.AnnData]:
    return {f.__name__: f() for f in GENERATORS}


def _lognorm(adata: ad.AnnData) -> np.ndarray:
    x = adata.X.toarray()
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


def _single_target_shifts(adata: ad.AnnData) -> list[tuple[str, str, float]]:
    """(target, modality, mean log-normalised change of the target itself) for every single."""
    x, obs = _lognorm(adata), adata.obs
    pert = obs["perturbation"].astype(str).to_numpy()
    ctrl = x[pert == CONTROL].mean(0)
    genes = list(adata.var_names)
    out = []
    for target in np.unique(pert[(pert != CONTROL) & ~np.char.count(pert.astype(str), "+").astype(bool)]):
        cells = pert == target
        j = genes.index(target)
        out.append((target, obs["modality"][cells].iloc[0], x[cells, j].mean() - ctrl[j]))
    return out


@pytest.mark.parametrize("generator", GENERATORS)
def test_deterministic_given_seed(generator):
    a, b, c = generator(seed=3), generator(seed=3), generator(seed=4)
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs)
    assert a.shape != c.shape or (a.X != c.X).nnz > 0


@pytest.mark.parametrize("name", [f.__name__ for f in GENERATORS])
def test_contract_format(screens, name):
    adata = screens[name]
    assert sparse.issparse(adata.X) and adata.X.format == "csr" and adata.X.dtype == np.float32
    data = adata.X.data
    assert np.all(data >= 0) and np.array_equal(data, np.round(data))
    assert {"perturbation", "modality"} <= set(adata.obs)
    assert (adata.obs["perturbation"] == CONTROL).sum() > 0
    assert set(adata.obs["modality"]) <= {"CRISPRi", "CRISPRa"}
    net = adata.uns["planted_network"]
    assert len(net["source"]) == len(net["target"]) == len(net["weight"]) > 0
    assert set(net["source"]) | set(net["target"]) <= set(adata.var_names)
    syn = adata.uns["synthetic"]
    assert syn["generator"] == name and syn["n_cells"] == adata.n_obs and syn["n_genes"] == adata.n_vars


def test_demo_contents(screens):
    adata = screens["demo_screen"]
    obs = adata.obs
    assert 250 <= adata.n_vars <= 350 and 3500 <= adata.n_obs <= 4500
    assert {"MTOR", "TLR4", "ADCY10", "SIRT3", "PSAP", "GPX4", "NFE2L2"} <= set(adata.var_names)
    assert set(obs.loc[obs["perturbation"] == CONTROL, "modality"]) == {"CRISPRi", "CRISPRa"}
    perts = set(obs["perturbation"]) - {CONTROL}
    assert sum("+" in p for p in perts) >= 3
    assert 55 <= len(perts) <= 70
    edges = set(zip(adata.uns["planted_network"]["source"], adata.uns["planted_network"]["target"]))
    assert {
        ("NFE2L2", "SLC7A11"),
        ("KEAP1", "NFE2L2"),
        ("PSAP", "MTOR"),
        ("MFN2", "TLR4"),
        ("ADCY10", "SIRT3"),
    } <= edges
    regulators = set(adata.uns["planted_network"]["source"])
    assert regulators & perts and regulators - perts  # perturbed and unperturbed regulators


@pytest.mark.parametrize("name", [f.__name__ for f in GENERATORS])
def test_targets_move_in_the_modality_direction(screens, name):
    shifts = _single_target_shifts(screens[name])
    down = [d < 0 for _, m, d in shifts if m == "CRISPRi"]
    up = [d > 0 for _, m, d in shifts if m == "CRISPRa"]
    assert np.mean(down) > 0.8
    if up:
        assert np.mean(up) > 0.8


def test_toy_strong_edge_shows_downstream(screens):
    adata = screens["toy_screen"]
    x, pert = _lognorm(adata), adata.obs["perturbation"].to_numpy()
    g1 = list(adata.var_names).index("G1")
    assert x[pert == "G0", g1].mean() < x[pert == CONTROL, g1].mean() - 0.3


def test_round_trip_h5ad(screens, tmp_path):
    adata = screens["demo_screen"]
    path = tmp_path / "demo.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert (back.X != adata.X).nnz == 0
    for key in ("source", "target"):
        assert list(back.uns["planted_network"][key]) == list(adata.uns["planted_network"][key])
    np.testing.assert_allclose(back.uns["planted_network"]["weight"], adata.uns["planted_network"]["weight"])
    assert dict(back.uns["synthetic"]) == adata.uns["synthetic"]


def test_demo_asset_matches_generator(screens):
    path = datasets.demo_path()
    assert path.exists() and path.stat().st_size <= 5e6
    shipped = datasets.load_demo()
    assert (shipped.X != screens["demo_screen"].X).nnz == 0
    assert list(shipped.obs["perturbation"].astype(str)) == list(screens["demo_screen"].obs["perturbation"])


def test_planted_network_is_a_dag(screens):
    net = datasets.PlantedNetwork(np.array(["a", "b"]), np.array([0, 1]), np.array([1, 0]), np.ones(2))
    with pytest.raises(ValueError, match="cycle"):
        net.levels()
    for adata in screens.values():
        uns = adata.uns["planted_network"]
        index = {g: i for i, g in enumerate(adata.var_names)}
        src = np.array([index[g] for g in uns["source"]])
        tgt = np.array([index[g] for g in uns["target"]])
        datasets.PlantedNetwork(np.asarray(adata.var_names), src, tgt, uns["weight"]).levels()


def test_write_paper_screen_tiny(tmp_path):
    path = datasets.write_paper_screen(
        tmp_path / "paper.h5ad", n_cells=500, n_genes=300, n_perturbations=40, chunk_size=128
    )
    adata = ad.read_h5ad(path)
    assert adata.shape == (500, 300)
    assert sparse.issparse(adata.X) and adata.X.format == "csr"
    assert np.array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.uns["synthetic"]["n_single_targets"] == 40
    assert (adata.obs["perturbation"] == CONTROL).sum() == 50
    assert not list(tmp_path.glob(".*.tmp"))
    again = datasets.write_paper_screen(
        tmp_path / "again.h5ad", n_cells=500, n_genes=300, n_perturbations=40, chunk_size=128
    )
    assert (ad.read_h5ad(again).X != adata.X).nnz == 0


def test_paper_spec_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="n_perturbations"):
        datasets.paper_screen_spec(n_cells=100, n_genes=50, n_perturbations=40)


def _chain_screen(kind: str = "log-linear") -> ad.AnnData:
    """a → b (0.5), b → c (0.4), a → c (−0.1), d alone."""
    net = {"source": np.array(["a", "b", "a"]), "target": np.array(["b", "c", "c"]),
           "weight": np.array([0.5, 0.4, -0.1])}
    return ad.AnnData(np.zeros((1, 4), np.float32), var=pd.DataFrame(index=["a", "b", "c", "d"]),
                      uns={"planted_network": net, "synthetic": {"kind": kind}})


def test_planted_total_effects_sums_paths():
    total = datasets.planted_total_effects(_chain_screen())
    np.testing.assert_allclose(total[0], [1.0, 0.5, 0.5 * 0.4 - 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(total[:, 0], [1.0, 0.0, 0.0, 0.0], atol=1e-12)  # nothing acts on a
    reordered = datasets.planted_total_effects(_chain_screen(), genes=["c", "a", "x"])
    # b is not asked for, but a → b → c still counts: 0.5 · 0.4 − 0.1
    np.testing.assert_allclose(reordered, [[1, 0, 0], [0.1, 1, 0], [0, 0, 1]], atol=1e-12)


def test_planted_total_effects_match_the_simulator(screens):
    """Clamping one gene with no noise moves the others by exactly its row of T (the demo network)."""
    adata = screens["demo_screen"]
    total = datasets.planted_total_effects(adata)
    net = datasets.PlantedNetwork(np.asarray(adata.var_names), *(
        np.array([list(adata.var_names).index(g) for g in adata.uns["planted_network"][k]])
        for k in ("source", "target")), np.asarray(adata.uns["planted_network"]["weight"], float))
    source = int(np.argmax(np.abs(total).sum(axis=1)))  # the gene with most downstream effect
    eps = np.zeros((1, adata.n_vars))
    clamp = (np.array([0]), np.array([source]), np.array([-1.3]))
    d = datasets._propagate(eps, net.matrix(), net.levels(), clamp, base=eps)
    np.testing.assert_allclose(d[0], -1.3 * total[source], atol=1e-9)
    assert (np.abs(total[source]) > 1e-6).sum() > 3


def test_planted_total_effects_refuse_hill_and_unplanted():
    with pytest.raises(ValueError, match="log-linear"):
        datasets.planted_total_effects(_chain_screen(kind="hill"))
    with pytest.raises(ValueError, match="planted_network"):
        datasets.planted_total_effects(ad.AnnData(np.zeros((1, 2), np.float32)))


def test_demo_screen_control_count():
    obs = datasets.demo_screen(n_controls=100).obs
    assert (obs["perturbation"] == CONTROL).sum() == 100
    with pytest.raises(ValueError, match="n_controls >= 20"):
        datasets.demo_screen(n_controls=5)


def test_hill_screen_control_count_changes_only_the_controls():
    """``n_controls`` at the default share is the default screen bit for bit; more controls leave the
    planted network and the perturbed cells' design as they were."""
    default = datasets.hill_screen(n_genes=30, n_cells=500, seed=2)
    same = datasets.hill_screen(n_genes=30, n_cells=500, seed=2, n_controls=60)  # int(0.12 * 500)
    assert (default.X != same.X).nnz == 0
    assert default.obs.equals(same.obs)
    more = datasets.hill_screen(n_genes=30, n_cells=500, seed=2, n_controls=300)
    is_control = more.obs["perturbation"] == CONTROL
    assert is_control.sum() == 300 and more.uns["synthetic"]["n_controls"] == 300
    assert "n_controls" not in default.uns["synthetic"]
    perturbed = default.obs["perturbation"][default.obs["perturbation"] != CONTROL]
    assert more.obs["perturbation"][~is_control].value_counts().sort_index().equals(
        perturbed.value_counts().sort_index())
    for key in ("source", "target", "weight"):
        np.testing.assert_array_equal(np.asarray(more.uns["planted_network"][key]),
                                      np.asarray(default.uns["planted_network"][key]))
    with pytest.raises(ValueError, match="n_controls >= 20"):
        datasets.hill_screen(n_controls=5)


def test_planted_oracle_scores_the_network_effect_beside_the_run(screens):
    """The Effects page's oracle: each never-trained target's row of T times its knock-down, scored
    against the same reference as the run; leaves counted; LazyNet's figure read on the same targets."""
    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.metrics import delta_metrics, evaluate, reference_mean
    from lazynet_core.pairs import make_pairs
    from lazynet_core.ui import services

    raw = screens["demo_screen"]
    pairs = make_pairs(read_screen(raw), PairConfig())
    base = pairs.control_mean("train").astype(float)
    shift = np.random.default_rng(0).normal(0.0, 0.1, pairs.n_genes)  # a predictor with a defined score

    def predict(pre):
        return pre + shift

    evaluation = evaluate(pairs, predict, methods=["control_covariance", "pooled_covariance"], ceiling=False)
    oracle = services.planted_oracle(evaluation, pairs, raw.uns["planted_network"])
    scores = oracle["held_out_perturbations"]

    held = evaluation[(evaluation.set == "held_out_perturbations") & (evaluation.metric == "pearson_delta")
                      & (evaluation.method == "control_covariance")]
    singles = [str(p) for p in held.perturbation.unique() if "+" not in p]
    sources = set(np.asarray(raw.uns["planted_network"]["source"]).astype(str))
    assert scores["leaves"] == sum(p not in sources for p in singles) > 0
    assert scores["n"] == sum(p in sources for p in singles) >= 5
    # by hand for one target, through the raw screen's own route to T (planted_total_effects)
    total = datasets.planted_total_effects(raw, genes=pairs.genes)
    by_hand = []
    for label in [p for p in singles if p in sources]:
        p = list(pairs.perturbations).index(label)
        u = int(pairs.pert_targets[p][0])
        observed = pairs.pert_mean(p, "test").astype(float) - reference_mean(pairs, "independent")
        by_hand.append(delta_metrics((pairs.pre_state(p, "test")[u] - base[u]) * total[u], observed,
                                     exclude=np.array([u]))["pearson_delta"])
    assert scores["oracle"] == pytest.approx(np.mean(by_hand), abs=1e-12)
    assert scores["oracle"] > scores["control_covariance"] + 0.2  # the headroom the demo plants
    same = [p for p in singles if p in sources]
    cc = pd.to_numeric(held[held.perturbation.isin(same)].value)
    assert scores["control_covariance"] == pytest.approx(cc.mean(), abs=1e-12)
    pooled = evaluation[(evaluation.set == "held_out_perturbations") & (evaluation.metric == "pearson_delta")
                        & (evaluation.method == "pooled_covariance") & evaluation.perturbation.isin(same)]
    assert scores["pooled_covariance"] == pytest.approx(pd.to_numeric(pooled.value).mean(), abs=1e-12)
    lazynet = evaluation[(evaluation.set == "held_out_perturbations") & (evaluation.metric == "pearson_delta")
                         & (evaluation.method == "lazynet") & evaluation.perturbation.isin(same)]
    assert np.isfinite(scores["lazynet"])
    assert scores["lazynet"] == pytest.approx(pd.to_numeric(lazynet.value).mean(), abs=1e-12)
    # the training reference is the training control mean: the oracle is scored against it there
    training = evaluate(pairs, predict, methods=["control_covariance"], ceiling=False, reference="training")
    flattering = services.planted_oracle(training, pairs, raw.uns["planted_network"], reference="training")
    assert flattering["held_out_perturbations"]["oracle"] != pytest.approx(scores["oracle"], abs=1e-6)
    assert "Planted-network oracle" in services.oracle_sentence(scores)
    assert f"{scores['oracle']:.3f}" in services.oracle_sentence(scores)
    assert f"pooled covariance (controls + training perturbed cells) {scores['pooled_covariance']:.3f}" in (
        services.oracle_sentence(scores))
    assert "pooled" not in services.oracle_sentence({**scores, "pooled_covariance": float("nan")})
