"""Evidence per edge: the four words, computed from a hand-built screen with known structure."""

from __future__ import annotations

import io

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from lazynet_core.config import PairConfig
from lazynet_core.evidence import EVIDENCE, EdgeEvidence, EvidenceConfig, SupportedProvider
from lazynet_core.export import edges_csv_bytes, write_graphml
from lazynet_core.network import edges_frame, expand_from_seeds
from lazynet_core.pairs import make_pairs

GENES = ["A", "B", "C", "D", "E", "F"]


@pytest.fixture(scope="module")
def pairs():
    """Controls: D follows C (r ≈ 0.9), F is independent. A knocked down lowers B; E held out."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for _ in range(300):
        c = rng.normal(3, 0.5)
        rows.append(
            [
                3 + rng.normal(0, 0.2),
                3 + rng.normal(0, 0.2),
                c,
                c + rng.normal(0, 0.2),
                3,
                3 + rng.normal(0, 0.3),
            ]
        )
        labels.append("control")
    for label, change in (("A", {0: -1.5, 1: -0.8}), ("B", {1: -1.5}), ("E", {4: -1.5, 1: 0.6})):
        for _ in range(60):
            row = [3 + rng.normal(0, 0.2), 3 + rng.normal(0, 0.2), 3, 3, 3, 3 + rng.normal(0, 0.3)]
            row[2] = rng.normal(3, 0.5)
            row[3] = row[2] + rng.normal(0, 0.2)
            for g, d in change.items():
                row[g] += d
            rows.append(row)
            labels.append(label)
    obs = pd.DataFrame(
        {
            "lazynet_perturbation": labels,
            "lazynet_is_control": [x == "control" for x in labels],
            "lazynet_modality": "CRISPRi",
        },
        index=[f"c{i}" for i in range(len(rows))],
    )
    adata = ad.AnnData(
        sparse.csr_matrix(np.clip(np.array(rows), 0, None).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=GENES),
    )
    return make_pairs(adata, PairConfig(held_out=("E",)))


def test_the_four_words(pairs):
    ev = EdgeEvidence(pairs, EvidenceConfig(n_permutations=199))
    inter = ev.classify("A", ["B"], np.array([0.5])).loc["B"]
    assert inter["evidence"] == "interventional" and inter["sign_agrees"]
    assert inter["screen_delta"] == pytest.approx(-0.8, abs=0.1) and inter["n_cells"] > 0
    assert inter["source_delta"] < 0  # A itself knocked down; J > 0 then predicts B down, as observed
    wrong = ev.classify("A", ["B"], np.array([-0.5])).loc["B"]
    assert wrong["evidence"] == "interventional" and not wrong["sign_agrees"]
    held = ev.classify("E", ["B"], np.array([-0.3])).loc["B"]  # E lowered, B rose: J < 0 agrees
    assert held["evidence"] == "held_out" and held["sign_agrees"] and held["n_cells"] == 60
    assert held["source_delta"] < 0 and held["screen_delta"] > 0
    obs = ev.classify("C", ["D", "F"], np.array([0.4, 0.4]))
    assert obs.loc["D", "evidence"] == "observational" and obs.loc["D", "coexpr_p"] < 0.01
    assert obs.loc["F", "evidence"] == "model_only"  # never perturbed, not co-expressed
    assert ev.classify("C", ["D"], np.array([-0.4])).loc["D", "evidence"] == "model_only"  # wrong sign
    assert ev.never_perturbed(["A", "C", "E"]) == ["C"]


def _jacobian():
    weights = {("A", "B"): 0.5, ("C", "D"): 0.4, ("C", "F"): 0.6, ("E", "B"): -0.3, ("A", "F"): 0.01}
    J = pd.DataFrame(0.0, index=GENES, columns=GENES)
    for (s, t), w in weights.items():
        J.loc[t, s] = w
    return J


def test_default_expansion_holds_no_model_only_edge(pairs):
    ev = EdgeEvidence(pairs, EvidenceConfig(n_permutations=199))
    J = _jacobian()
    every = ev.annotate(expand_from_seeds(J, ["A", "C", "E"], breadth=4, depth=2))
    assert "model_only" in {d["evidence"] for *_, d in every.edges(data=True)}
    supported = ev.annotate(expand_from_seeds(SupportedProvider(J, ev), ["A", "C", "E"], breadth=4, depth=2))
    words = {d["evidence"] for *_, d in supported.edges(data=True)}
    assert words and "model_only" not in words
    assert supported.has_edge("A", "B") and supported.has_edge("C", "D") and not supported.has_edge("C", "F")
    with_all = expand_from_seeds(SupportedProvider(J, ev, include_model_only=True), ["C"], breadth=4, depth=1)
    assert with_all.has_edge("C", "F")


def test_replica_noise_threshold(pairs):
    ev = EdgeEvidence(pairs, EvidenceConfig(noise_factor=2.0))
    assert ev.above_noise(0.5, 0.2) and not ev.above_noise(0.3, 0.2) and ev.above_noise(0.1, float("nan"))
    frame = pd.DataFrame({"weight": [0.5, 0.3], "sd": [0.2, 0.2], "agreement": [1.0, 1.0]}, index=["B", "F"])
    kept = SupportedProvider(lambda g, d: frame, ev, include_model_only=True)("A", "out")
    assert list(kept.index) == ["B"]


def test_csv_and_graphml_carry_the_evidence(pairs):
    ev = EdgeEvidence(pairs, EvidenceConfig(n_permutations=199))
    G = ev.annotate(expand_from_seeds(_jacobian(), ["A", "C", "E"], breadth=4, depth=2))
    frame = edges_frame(G)
    assert set(frame["evidence"]) <= set(EVIDENCE) and len(set(frame["evidence"])) >= 3
    csv = pd.read_csv(io.BytesIO(edges_csv_bytes(G)))
    assert "evidence" in csv.columns and set(csv["evidence"]) <= set(EVIDENCE)
    assert {"screen_delta", "n_cells", "sign_agrees", "coexpr_r", "coexpr_p"} <= set(csv.columns)
    buffer = io.BytesIO()
    write_graphml(G, buffer)
    back = nx.read_graphml(io.BytesIO(buffer.getvalue()))
    for u, v, d in G.edges(data=True):
        got = back.edges[u, v]
        assert got["evidence"] == d["evidence"]
        for key, value in d.items():
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                assert key in got, key


def test_pooled_coexpression_reads_the_perturbed_cells_around_their_group_means():
    """X and Y co-vary only inside perturbed groups; Z follows X's group means but not X within a
    group. Controls alone support no X -> Y edge; pooled cells, each group centred, support X -> Y and
    still not X -> Z (the groups' shifts never count as co-expression)."""
    rng = np.random.default_rng(1)
    genes = ["X", "Y", "Z", "G1", "G2", "G3", "G4"]
    rows, labels = [], []
    for _ in range(30):
        rows.append([3 + rng.normal(0, 0.3), 3 + rng.normal(0, 0.3), 3 + rng.normal(0, 0.3), 3, 3, 3, 3])
        labels.append("control")
    for k, label in enumerate(("G1", "G2", "G3", "G4")):
        shift = (k - 1.5) * 0.8
        for _ in range(80):
            x = 3 + shift + rng.normal(0, 0.3)
            row = [x, x - shift + rng.normal(0, 0.1), 3 + shift + rng.normal(0, 0.3), 3, 3, 3, 3]
            row[3 + k] -= 1.0  # the knock-down of the perturbation's own gene
            rows.append(row)
            labels.append(label)
    obs = pd.DataFrame({"lazynet_perturbation": labels, "lazynet_modality": "CRISPRi",
                        "lazynet_is_control": [x == "control" for x in labels]},
                       index=[f"c{i}" for i in range(len(rows))])
    adata = ad.AnnData(sparse.csr_matrix(np.array(rows, dtype=np.float32)), obs=obs,
                       var=pd.DataFrame(index=genes))
    pairs = make_pairs(adata, PairConfig(held_out=("G4",)))
    controls = EdgeEvidence(pairs, EvidenceConfig(n_permutations=199)).classify("X", ["Y", "Z"], np.ones(2))
    pooled = EdgeEvidence(pairs, EvidenceConfig(n_permutations=199, cells="pooled")).classify(
        "X", ["Y", "Z"], np.ones(2))
    assert controls.loc["Y", "evidence"] == "model_only"
    assert pooled.loc["Y", "evidence"] == "observational" and pooled.loc["Y", "coexpr_p"] < 0.01
    assert pooled.loc["Z", "evidence"] == "model_only"
    # r by hand over the training cells only (G4 is held out), each group centred on its own mean
    x, groups = np.array(rows, dtype=np.float32).astype(np.float64)[:, :3], np.array(labels)
    train = np.zeros(len(rows), dtype=bool)
    train[pairs.cells(-1, "train")] = True
    for p in range(len(pairs.perturbations)):
        train[pairs.cells(p, "train")] = True
    assert not train[groups == "G4"].any()
    centred = x.copy()
    for g in ("control", "G1", "G2", "G3"):
        block = train & (groups == g)
        centred[block] -= x[block].mean(axis=0)
    r = np.corrcoef(centred[train, 0], centred[train, 1])[0, 1]
    assert pooled.loc["Y", "coexpr_r"] == pytest.approx(r, abs=1e-6)
    with pytest.raises(ValueError, match="cells must be"):
        EvidenceConfig(cells="perturbed")
