"""Seed subgraphs, consensus graphs and edge tables on hand-built graphs with known answers."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from lazynet_core.errors import ScreenError
from lazynet_core.network import (
    EDGE_COLUMNS,
    consensus_graph,
    edges_frame,
    expand_from_seeds,
    subgraph_summary,
)


def six_node_graph() -> nx.DiGraph:
    """A -> B (0.9), A -> C (-0.5), A -> D (0.1), B -> E (0.8), C -> F (-0.7), E -> A (0.3)."""
    G = nx.DiGraph()
    G.add_nodes_from("ABCDEF")
    for s, t, w in [("A", "B", 0.9), ("A", "C", -0.5), ("A", "D", 0.1), ("B", "E", 0.8),
                    ("C", "F", -0.7), ("E", "A", 0.3)]:
        G.add_edge(s, t, weight=w)
    return G


def as_frame(G: nx.DiGraph) -> pd.DataFrame:
    nodes = sorted(G.nodes)
    J = pd.DataFrame(0.0, index=nodes, columns=nodes)
    for s, t, w in G.edges(data="weight"):
        J.loc[t, s] = w
    return J


def edge_set(G):
    return set(G.edges)


@pytest.mark.parametrize("kind", ["graph", "frame", "callable"])
def test_breadth_one_depth_one(kind):
    G6 = six_node_graph()
    provider = {"graph": G6, "frame": as_frame(G6),
                "callable": lambda g, d: as_frame(G6)[g] if d == "out" else as_frame(G6).loc[g]}[kind]
    H = expand_from_seeds(provider, ["A"], breadth=1, depth=1, genes=list("ABCDEF"))
    assert edge_set(H) == {("A", "B")}
    assert H.nodes["A"] == {"is_seed": True, "level": 0}
    assert H.nodes["B"]["level"] == 1
    e = H.edges["A", "B"]
    assert e["weight"] == pytest.approx(0.9) and e["sign"] == 1 and e["level"] == 1


def test_known_subgraphs():
    G6 = six_node_graph()
    assert edge_set(expand_from_seeds(G6, ["A"], breadth=2, depth=2)) == {
        ("A", "B"), ("A", "C"), ("B", "E"), ("C", "F")}
    # unlimited: the cycle edge E -> A is reached at level 3, A -> D included
    full = expand_from_seeds(G6, ["A"], breadth=None, depth=None)
    assert edge_set(full) == set(G6.edges)
    assert full.edges["E", "A"]["level"] == 3
    assert full.edges["C", "F"]["sign"] == -1


def test_min_abs():
    H = expand_from_seeds(six_node_graph(), ["A"], breadth=None, depth=None, min_abs=0.6)
    assert edge_set(H) == {("A", "B"), ("B", "E")}


def test_in_direction():
    H = expand_from_seeds(six_node_graph(), ["F"], breadth=None, depth=2, direction="in")
    assert edge_set(H) == {("C", "F"), ("A", "C")}
    assert H.nodes["A"]["level"] == 2


def test_both_direction_breadth_counts_union():
    H = expand_from_seeds(six_node_graph(), ["B"], breadth=1, depth=1, direction="both")
    assert edge_set(H) == {("A", "B")}  # in-edge 0.9 beats out-edge 0.8
    H2 = expand_from_seeds(six_node_graph(), ["B"], breadth=2, depth=1, direction="both")
    assert edge_set(H2) == {("A", "B"), ("B", "E")}


def test_level_caps_keep_strongest_new_genes():
    H = expand_from_seeds(six_node_graph(), ["A"], breadth=None, depth=2, level_caps=[1])
    assert set(H.nodes) == {"A", "B", "E"}
    assert edge_set(H) == {("A", "B"), ("B", "E")}
    assert subgraph_summary(H)["levels"] == {0: 1, 1: 1, 2: 1}


def test_missing_seeds_reported_and_all_missing_raises():
    H = expand_from_seeds(six_node_graph(), ["A", "NOPE"], breadth=1, depth=1)
    assert H.graph["missing_seeds"] == ["NOPE"]
    assert subgraph_summary(H)["missing_seeds"] == ["NOPE"]
    with pytest.raises(ScreenError, match=r"NOPE.*e\.g\."):
        expand_from_seeds(six_node_graph(), ["NOPE", "ZZZ"])


def test_case_insensitive_seed_and_duplicates():
    H = expand_from_seeds(six_node_graph(), ["a", "A"], breadth=1, depth=1)
    assert H.graph["seeds"] == ["A"] and H.graph["missing_seeds"] == []


def test_input_not_mutated():
    G6 = six_node_graph()
    before = nx.to_dict_of_dicts(G6)
    J = as_frame(G6)
    J0 = J.copy()
    expand_from_seeds(G6, ["A"], breadth=None, depth=None)
    expand_from_seeds(J, ["A"], breadth=None, depth=None)
    assert nx.to_dict_of_dicts(G6) == before
    pd.testing.assert_frame_equal(J, J0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unlimited_bfs_equals_descendants(seed):
    R = nx.gnp_random_graph(60, 0.04, seed=seed, directed=True)
    rng = np.random.default_rng(seed)
    R = nx.relabel_nodes(R, {i: f"g{i}" for i in R.nodes})
    for u, v in R.edges:
        R.edges[u, v]["weight"] = float(rng.choice([-1, 1]) * rng.uniform(0.1, 1))
    seeds = ["g0", "g5"]
    H = expand_from_seeds(R, seeds, breadth=None, depth=None)
    expected = set(seeds).union(*(nx.descendants(R, s) for s in seeds))
    assert set(H.nodes) == expected
    assert edge_set(H) == set(R.subgraph(expected).edges)
    Hin = expand_from_seeds(R, seeds, breadth=None, depth=None, direction="in")
    assert set(Hin.nodes) == set(seeds).union(*(nx.ancestors(R, s) for s in seeds))
    # uncapped multi-source BFS == union of per-seed BFS trees at finite breadth/depth
    union = nx.compose_all([expand_from_seeds(R, [s], breadth=2, depth=3) for s in seeds])
    assert edge_set(expand_from_seeds(R, seeds, breadth=2, depth=3)) == edge_set(union)


def test_provider_dataframe_agreement_attached():
    def provider(gene, direction):
        data = {"weight": [0.5, -0.2, 9.0], "agreement": [1.0, 2 / 3, 1.0], "sd": [0.1, 0.3, 0.0]}
        return pd.DataFrame(data, index=["X", "Y", gene])
    H = expand_from_seeds(provider, ["S"], breadth=5, depth=1, genes=["S", "X", "Y"])
    assert edge_set(H) == {("S", "X"), ("S", "Y")}  # self excluded
    assert H.edges["S", "Y"]["agreement"] == pytest.approx(2 / 3)
    assert H.edges["S", "Y"]["sd"] == pytest.approx(0.3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="direction"):
        expand_from_seeds(six_node_graph(), ["A"], direction="sideways")
    with pytest.raises(TypeError, match="neighbors"):
        expand_from_seeds(42, ["A"])


def test_consensus_graph_and_edges_frame():
    J = as_frame(six_node_graph())
    J.loc["A", "A"] = 5.0  # diagonal never an edge
    G = consensus_graph(J, min_abs=0.2)
    assert edge_set(G) == set(six_node_graph().edges) - {("A", "D")}
    top2 = consensus_graph(J, top=2)
    assert edge_set(top2) == {("A", "B"), ("B", "E")}
    agree = J * 0 + 1.0
    G2 = consensus_graph(J, agreement=agree)
    assert G2.edges["A", "B"]["agreement"] == 1.0
    frame = edges_frame(G)
    assert list(frame.columns) == EDGE_COLUMNS
    assert frame["abs_weight"].is_monotonic_decreasing
    assert frame.iloc[0][["source", "target"]].tolist() == ["A", "B"]
    assert frame["sign"].tolist() == [1, 1, -1, -1, 1]
    assert frame["level"].isna().all() and frame["agreement"].isna().all()


def test_summary_of_expansion():
    H = expand_from_seeds(six_node_graph(), ["A", "Q"], breadth=2, depth=2)
    s = subgraph_summary(H)
    assert s == {"n_nodes": 5, "n_edges": 4, "n_seeds_found": 1, "missing_seeds": ["Q"],
                 "levels": {0: 1, 1: 2, 2: 2}}
    assert edges_frame(H)["level"].tolist() == [1, 2, 2, 1]


def test_callable_without_universe_probes_seeds():
    J = as_frame(six_node_graph())
    H = expand_from_seeds(lambda g, d: J[g], ["A", "NOPE"], breadth=1, depth=1)
    assert H.graph["missing_seeds"] == ["NOPE"] and set(H.edges) == {("A", "B")}


def test_max_nodes_caps_total_and_keeps_strongest():
    H = expand_from_seeds(six_node_graph(), ["A"], breadth=None, depth=3, max_nodes=3)
    assert set(H.nodes) == {"A", "B", "C"}  # level 1 has B (0.9), C (-0.5), D (0.1): the two strongest
    assert edge_set(H) == {("A", "B"), ("A", "C")}
    assert H.graph["truncated"] is True and H.graph["max_nodes"] == 3
    full = expand_from_seeds(six_node_graph(), ["A"], breadth=None, depth=3, max_nodes=60)
    assert full.graph["truncated"] is False
    assert set(full.nodes) == set(expand_from_seeds(six_node_graph(), ["A"], breadth=None, depth=3).nodes)
    with pytest.raises(ValueError, match="max_nodes"):
        expand_from_seeds(six_node_graph(), ["A"], max_nodes=0)
