"""The Networks page's default view: supported edges only, one evidence vocabulary everywhere."""

from __future__ import annotations

import io

import networkx as nx
import pandas as pd
import pytest

from lazynet_core.evidence import EVIDENCE, EdgeEvidence
from lazynet_core.jacobian import column_provider
from lazynet_core.ui import services


@pytest.fixture(scope="module")
def graphs(toy_ensemble):
    pairs, ens = toy_ensemble
    evidence = EdgeEvidence(pairs)
    provider = column_provider(ens)
    seeds = [str(g) for g in list(ens.genes)[:3]]
    view = dict(services.NETWORK_DEFAULTS)
    kwargs = dict(breadth=view["breadth"], depth=view["depth"], min_abs=view["min_abs"],
                  max_nodes=view["max_nodes"], evidence=evidence)
    default = services.subgraph(provider, seeds, **kwargs)
    everything = services.subgraph(provider, seeds, include_model_only=True, **kwargs)
    return default, everything


def test_default_view_has_no_model_only_edge_and_stays_small(graphs):
    default, everything = graphs
    frame = services.edge_table(default)
    assert len(frame) > 0
    assert set(frame["evidence"]) <= set(EVIDENCE) - {"model_only"}
    assert frame["above_noise"].all()  # the replica-noise rule is applied while growing
    assert default.number_of_nodes() <= services.NETWORK_DEFAULTS["max_nodes"]
    assert set(services.edge_table(everything)["evidence"]) <= set(EVIDENCE)
    counts = services.evidence_counts(frame)
    assert list(counts) == list(EVIDENCE) and counts["model_only"] == 0 and sum(counts.values()) == len(frame)


@pytest.mark.parametrize("which", [0, 1])
def test_csv_and_graphml_carry_the_four_words(graphs, which):
    G = graphs[which]
    csv = pd.read_csv(io.BytesIO(services.edges_csv(G)))
    assert "evidence" in csv.columns and set(csv["evidence"]) <= set(EVIDENCE)
    extra = {"source_delta", "screen_delta", "n_cells", "sign_agrees", "coexpr_r", "coexpr_p", "above_noise"}
    assert extra <= set(csv.columns)
    H = nx.read_graphml(io.BytesIO(services.graphml_bytes(G)))
    assert H.number_of_edges() == G.number_of_edges()
    for u, v, d in H.edges(data=True):
        assert d["evidence"] in EVIDENCE
        assert {"weight", "sign", "abs_weight", "level", "coexpr_r", "coexpr_p", "above_noise"} <= set(d)
        if d["evidence"] in ("interventional", "held_out"):
            assert {"source_delta", "screen_delta", "n_cells", "sign_agrees"} <= set(d)
    for _, d in H.nodes(data=True):
        assert {"name", "is_seed", "level", "perturbed"} <= set(d)


def test_network_figures_label_every_node(graphs):
    G = graphs[0]
    figs = services.network_figures(G, curated=[], layout="force", title="toy")
    for gene in G.nodes:
        assert f">{gene}</text>" in figs["svg"]
        assert f'"label": "{gene}"' in figs["html"]
    assert figs["png"][:4] == b"\x89PNG"


def test_network_view_round_trips_through_the_url():
    view = dict(services.NETWORK_DEFAULTS, seeds=["GPX4", "TFRC"], breadth=6, depth=3, noise=3.0,
                direction="both", model_only=True, layout="layered", min_abs=0.01, max_nodes=80)
    query = services.network_view_to_query(view)
    assert query["seeds"] == "GPX4,TFRC" and query["model_only"] == "1"
    assert services.network_view_from_query(query, ["X"]) == view
    fallback = services.network_view_from_query({"breadth": "lots", "dir": "sideways"}, ["X"])
    assert fallback == dict(services.NETWORK_DEFAULTS, seeds=["X"])


def test_gene_entry_is_case_insensitive():
    known, unknown = services.check_genes_known(["gpx4", "Tfrc", "GPX4", "nope"], ["GPX4", "TFRC"])
    assert known == ["GPX4", "TFRC"] and unknown == ["nope"]
