"""Module recall, reference-edge enrichment, co-expression support and planted-network recovery."""

import io

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from lazynet_core.enrichment import (
    coexpression_support,
    correlation_scores,
    fold_change_scores,
    module_recall,
    planted_recovery,
    read_reference_edges,
    recovery_table,
    reference_edges_enrichment,
    regulator_expression_scores,
)
from lazynet_core.modules import module_genes

GENES = [f"g{i}" for i in range(6)]
TRUTH = pd.DataFrame({"source": ["g0", "g0", "g1", "g3"], "target": ["g1", "g2", "g4", "g5"],
                      "weight": [0.5, -0.4, 0.3, 0.7]})


def test_module_recall():
    res = module_recall(["GPX4", "ACSL4", "XYZ"], ["GPX4", "ACSL4", "TFRC", "GPX4"])
    assert res == {"recall": 2 / 3, "found": ["GPX4", "ACSL4"], "missing": ["TFRC"], "n": 3, "n_found": 2}
    G = nx.DiGraph([("GPX4", "TFRC")])
    by_name = module_recall(G, "ferroptosis")
    assert by_name["n"] == len(module_genes("ferroptosis")) and by_name["n_found"] == 2


def test_reference_format_string_and_plain():
    string_tsv = "#node1\tnode2\tnode1_string_id\tcombined_score\nA\tB\tx\t0.9\nB\tC\ty\t0.3\n"
    ref = read_reference_edges(io.StringIO(string_tsv), min_score=0.5)
    assert ref.to_dict("list") == {"source": ["A"], "target": ["B"], "combined_score": [0.9]}
    plain = read_reference_edges(io.StringIO("source\ttarget\nA\tB\n"))
    assert list(plain.columns) == ["source", "target"]
    with pytest.raises(ValueError, match="node1"):
        read_reference_edges(io.StringIO("a\tb\nA\tB\n"))


def test_hypergeometric_enriched_vs_random():
    universe = [f"G{i}" for i in range(100)]
    ref = pd.DataFrame({"source": universe[:20], "target": universe[1:21]})  # 20 chain edges
    hit = nx.DiGraph([(universe[i + 1], universe[i]) for i in range(10)])  # reversed: undirected matches
    res = reference_edges_enrichment(hit, ref, universe_genes=universe)
    assert res["overlap"] == 10 and res["n_reference"] == 20 and res["n_possible"] == 4950
    assert res["p_value"] < 1e-20 and res["fold_enrichment"] > 100
    directed = reference_edges_enrichment(hit, ref, universe_genes=universe, directed=True)
    assert directed["overlap"] == 0 and directed["p_value"] == pytest.approx(1.0)
    far = nx.DiGraph([(universe[50 + i], universe[70 + i]) for i in range(10)])
    assert reference_edges_enrichment(far, ref, universe_genes=universe)["p_value"] == pytest.approx(1.0)


def test_coexpression_support_sparse_equals_dense_and_known_r():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 1))
    X = np.abs(np.hstack([base, base + 0.1 * rng.normal(size=(400, 1)), rng.normal(size=(400, 4))]))
    X[X < 0.3] = 0
    G = nx.DiGraph([("g0", "g1"), ("g2", "g3"), ("g0", "missing")])
    dense = coexpression_support(G, X, GENES, n_random=200, seed=1)
    sp = coexpression_support(G, sparse.csr_matrix(X), GENES, n_random=200, seed=1)
    np.testing.assert_allclose(dense["edge_r"], sp["edge_r"], atol=1e-10)
    np.testing.assert_allclose(dense["edge_r"][0], np.corrcoef(X[:, 0], X[:, 1])[0, 1], atol=1e-10)
    assert dense["n_edges"] == 2 and dense["n_skipped"] == 1 and dense["edge_fraction"] == 0.5
    assert 0 <= dense["random_fraction"] <= 1 and dense["random_fraction"] == sp["random_fraction"]


def perfect_scores() -> pd.DataFrame:
    S = pd.DataFrame(0.0, index=GENES, columns=GENES)
    for s, t, w in TRUTH.itertuples(index=False):
        S.loc[t, s] = w  # signed: |.| ranks them first
    return S


def test_planted_recovery_perfect_and_pair_sets():
    S = perfect_scores()
    res = planted_recovery(S, TRUTH)
    assert res["auroc"] == 1.0 and res["auprc"] == 1.0 and res["n_pos"] == 4 and res["n_pairs"] == 30
    pert = planted_recovery(S, TRUTH, pair_set="perturbed", perturbed_regulators={"g0"})
    assert pert["n_pairs"] == 5 and pert["n_pos"] == 2 and pert["auroc"] == 1.0
    unp = planted_recovery(S.to_numpy(), TRUTH, genes=GENES, pair_set="unperturbed",
                           perturbed_regulators={"g0"})
    assert unp["n_pairs"] == 25 and unp["n_pos"] == 2
    inverted = planted_recovery(-S.abs(), TRUTH, absolute=False)
    assert inverted["auroc"] < 0.5
    truth_dict = {k: TRUTH[k].to_numpy() for k in TRUTH}  # the adata.uns["planted_network"] form
    assert planted_recovery(S, truth_dict)["auroc"] == 1.0


def test_baseline_scorers_and_table():
    control = np.array([1.0, 2, 3, 4, 5, 6])
    post = control.copy()
    post[[1, 2]] += [0.8, -0.6]
    fc = fold_change_scores(control, {"g0": post, "g0+g1": post}, GENES)
    assert fc["g0"].drop("g0").tolist() == pytest.approx([0.8, 0.6, 0, 0, 0])
    assert fc.drop(columns="g0").isna().all().all()
    reg = regulator_expression_scores(control, GENES)
    assert reg.loc["g3", "g5"] == 6.0 and np.isnan(reg.loc["g2", "g2"])
    X = np.random.default_rng(0).normal(size=(50, 6))
    corr = correlation_scores(sparse.csr_matrix(X), GENES)
    np.testing.assert_allclose(corr.loc["g1", "g4"], abs(np.corrcoef(X[:, 1], X[:, 4])[0, 1]), atol=1e-10)
    np.testing.assert_allclose(corr.to_numpy(), correlation_scores(X, GENES).to_numpy(), atol=1e-10)
    table = recovery_table({"truth": perfect_scores(), "fold_change": fc}, TRUTH, {"g0"})
    assert list(table.columns) == ["method", "pair_set", "auroc", "auprc", "n_pos", "n_pairs", "prevalence",
                                   "coverage"]
    fcrow = table.set_index(["method", "pair_set"]).loc["fold_change"]
    assert fcrow.loc["perturbed", "auroc"] == 1.0
    assert np.isnan(fcrow.loc["all", "auroc"]) and fcrow.loc["all", "coverage"] == pytest.approx(5 / 30)


def test_correlation_scores_constant_gene_scores_zero():
    import numpy as np

    from lazynet_core.enrichment import correlation_scores

    X = np.array([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 7.0, 5.0]])
    scores = correlation_scores(X, ["a", "b", "c"])
    off_diagonal = ~np.eye(3, dtype=bool)  # the diagonal (self pairs) is excluded as NaN
    assert np.isfinite(scores.to_numpy()[off_diagonal]).all()
    assert scores.loc["a", "c"] == 0.0 and scores.loc["a", "b"] > 0.9
