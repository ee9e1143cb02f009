"""Edges CSV, GraphML round trip and write_to_adata copy semantics."""

import io

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from lazynet_core.export import CSV_COLUMNS, edges_csv_bytes, write_edges_csv, write_graphml, write_to_adata
from lazynet_core.jacobian import JacobianResult
from lazynet_core.network import expand_from_seeds


def subgraph() -> nx.DiGraph:
    G = nx.DiGraph()
    for s, t, w in [("GPX4", "ACSL4", 0.9), ("GPX4", "PSAP", -0.5), ("ACSL4", "X1", 0.2)]:
        G.add_edge(s, t, weight=w)
    return expand_from_seeds(G, ["GPX4", "NOPE"], breadth=None, depth=None)


def test_csv_header_and_modules(tmp_path):
    path = tmp_path / "edges.csv"
    write_edges_csv(subgraph(), path)
    frame = pd.read_csv(path, keep_default_na=False)
    assert list(frame.columns) == CSV_COLUMNS
    assert frame.iloc[0][["source", "target", "source_module", "target_module"]].tolist() == [
        "GPX4", "ACSL4", "ferroptosis", "ferroptosis"]
    assert frame.set_index("target").loc["PSAP", "target_module"] == "lysosomal_mito_immune"
    assert frame.set_index("target").loc["X1", "target_module"] == ""
    assert frame["level"].tolist() == [1, 1, 2]
    data = edges_csv_bytes(subgraph(), modules=False)
    assert data.decode().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert pd.read_csv(io.BytesIO(data))["source_module"].isna().all()


def test_graphml_round_trip(tmp_path):
    G = subgraph()
    G.edges["GPX4", "ACSL4"]["agreement"] = 2 / 3
    G.nodes["X1"]["tags"] = ["a", "b"]
    G.nodes["X1"]["nothing"] = None
    before = {e: dict(d) for e, d in G.edges.items()}
    path = tmp_path / "net.graphml"
    write_graphml(G, path)
    assert {e: dict(d) for e, d in G.edges.items()} == before  # input untouched
    H = nx.read_graphml(path)
    assert set(H.edges) == set(G.edges)
    e = H.edges["GPX4", "ACSL4"]
    assert e["weight"] == pytest.approx(0.9) and e["sign"] == 1 and e["level"] == 1
    assert e["agreement"] == pytest.approx(2 / 3) and "agreement" not in H.edges["GPX4", "PSAP"]
    assert H.nodes["GPX4"]["is_seed"] is True and H.nodes["GPX4"]["level"] == 0
    assert H.nodes["X1"]["tags"] == "a;b" and "nothing" not in H.nodes["X1"]
    assert H.nodes["PSAP"]["module"] == "lysosomal_mito_immune" and H.nodes["PSAP"]["name"] == "PSAP"
    assert H.graph["missing_seeds"] == "NOPE"
    for u, v, d in H.edges(data=True):
        assert all(isinstance(x, str | int | float | bool) for x in d.values())


def jac_result(genes) -> JacobianResult:
    rng = np.random.default_rng(0)
    per = rng.normal(size=(3, len(genes), len(genes)))
    mean = per.mean(0)
    agree = (np.sign(per) == np.sign(mean)).mean(0)
    return JacobianResult(mean=mean, sd=per.std(0, ddof=1), sign_agreement=agree, per_replica=per,
                          sources=np.array(genes), targets=np.array(genes))


def make_adata():
    return ad.AnnData(np.zeros((2, 3), dtype=np.float32), var=pd.DataFrame(index=["A", "B", "C"]))


def test_write_to_adata_copy_semantics_and_reorder():
    adata = make_adata()
    res = jac_result(["C", "A", "B"])
    out = write_to_adata(adata, res, copy=True)
    assert "lazynet_jacobian" not in adata.varp and "lazynet" not in adata.uns
    J = out.varp["lazynet_jacobian"]
    assert J[0, 1] == pytest.approx(res.to_frame().loc["A", "B"])
    assert out.uns["lazynet"]["storage"] == "varp" and out.uns["lazynet"]["n_replicas"] == 3
    assert "lazynet_jacobian_agreement" in out.varp
    assert write_to_adata(adata, res, key_added="net") is None
    assert "net_jacobian_sd" in adata.varp


def test_write_to_adata_mismatch():
    adata = make_adata()
    res = jac_result(["A", "B"])
    with pytest.warns(UserWarning, match="uns"):
        write_to_adata(adata, res)
    assert adata.uns["lazynet"]["storage"] == "uns" and adata.uns["lazynet"]["jacobian"].shape == (2, 2)
    assert list(adata.uns["lazynet"]["sources"]) == ["A", "B"]
    with pytest.raises(ValueError, match="varp=True"):
        write_to_adata(make_adata(), res, varp=True)
    frame = pd.DataFrame(np.eye(3), index=list("ABC"), columns=list("ABC"))
    ad2 = make_adata()
    write_to_adata(ad2, frame, varp=False)
    assert ad2.uns["lazynet"]["storage"] == "uns" and not ad2.varp
