"""Figures build from small literal inputs; the pyvis HTML is offline and escaped."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from lazynet_core import plotting

URL_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


@pytest.fixture
def edges() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["GPX4", "GPX4", "NFE2L2", "A<b>&c"],
            "target": ["ACSL4", "NFE2L2", "SLC7A11", "GPX4"],
            "weight": [0.4, -0.2, 0.8, 0.05],
            "agreement": [1.0, 0.67, 1.0, np.nan],
        }
    )


def test_network_html_is_offline(edges):
    page = plotting.network_html(edges, seeds=["GPX4"], curated=["ACSL4", "SLC7A11"])
    urls = URL_ATTR.findall(page)
    assert not [u for u in urls if u.startswith(("http:", "https:", "//")) or "node_modules" in u]
    assert "cdn.jsdelivr" not in page and "bootstrap.min" not in page
    assert "sourceMappingURL" not in page
    assert "new vis.Network" in page and "vis-network" in page  # the library is inlined
    assert page.count("</script>") >= 3  # stripping never ate a closing tag


def test_network_html_escapes_gene_names(edges):
    page = plotting.network_html(edges)
    assert "A<b>&c" not in page  # JSON-escaped in the script (no tag can break out of it)
    assert "A\\u0026lt;b\\u0026gt;\\u0026amp;c (gene)" in page  # tooltip (HTML) escaped as well


def test_network_html_styles_by_sign_and_role(edges):
    page = plotting.network_html(edges, seeds=["GPX4"], curated=["ACSL4"])
    assert plotting.PALETTE["pos"] in page and plotting.PALETTE["neg"] in page
    assert '"shape": "star"' in page
    assert 'id="lazynet-legend"' in page and "J &gt; 0 (activates)" in page and "J &lt; 0 (represses)" in page


def test_network_html_empty_graph_with_seed_only():
    page = plotting.network_html(pd.DataFrame(columns=["source", "target", "weight"]), seeds=["GPX4"])
    assert "GPX4" in page


def test_strip_external_urls_keeps_inline_scripts():
    page = (
        '<head><link href="https://cdn.x/y.css" rel="stylesheet"/>'
        '<script src="https://cdn.x/y.js"></script><script>var a = 1;\n//# sourceMappingURL=a.js.map</script>'
        '<!-- <script src="../node_modules/vis.js"></script> --></head>'
    )
    out = plotting.strip_external_urls(page)
    assert out == "<head><script>var a = 1;\n</script></head>"


def test_chart_config_exports_png_and_svg():
    assert plotting.chart_config("x")["toImageButtonOptions"]["format"] == "png"
    assert plotting.chart_config("x", fmt="svg")["toImageButtonOptions"] == {
        "format": "svg",
        "filename": "x",
        "scale": 2,
    }
    with pytest.raises(ValueError, match="fmt must be"):
        plotting.chart_config("x", fmt="gif")


def test_effects_scatter_labels_top_de_and_identity_line():
    frame = pd.DataFrame(
        {
            "gene": ["A", "B", "C", "T"],
            "observed": [0.1, -2.0, 0.5, -1.0],
            "predicted": [0.0, -1.5, 0.4, -1.0],
            "is_target": [False, False, False, True],
        }
    )
    fig = plotting.effects_scatter(frame, n_labels=2)
    assert isinstance(fig, go.Figure)
    assert [a.text for a in fig.layout.annotations] == ["B", "C"]
    names = [t.name for t in fig.data]
    assert names == ["genes", "target (input)", "y = x"]
    assert list(fig.data[0].text) == ["A", "B", "C"]
    line = fig.data[2]
    assert line.x[0] == line.y[0] and line.x[1] == line.y[1] > 2.0


def test_jacobian_heatmap_is_clustered_centred_and_hovers():
    J = np.array([[0.0, 1.0, -1.0], [0.5, 0.0, 0.2], [-2.0, 0.1, 0.0]])
    agree = np.full((3, 3), 1.0)
    fig = plotting.jacobian_heatmap(J, ["a", "b", "c"], agreement=agree)
    heat = fig.data[0]
    assert heat.zmid == 0 and 1.0 < heat.zmax <= 2.0 and heat.zmin == -heat.zmax
    assert heat.colorscale[0][1] != heat.colorscale[-1][1]
    assert np.isnan(np.asarray(heat.z, dtype=float)).sum() == 3  # diagonal blanked
    assert sorted(heat.x) == ["a", "b", "c"] and list(heat.x) == list(heat.y)
    assert "→" in heat.hovertemplate and "agreement" in heat.hovertemplate
    with pytest.raises(ValueError, match="square"):
        plotting.jacobian_heatmap(np.zeros((2, 3)), ["a", "b"])


def test_jacobian_heatmap_order_follows_clustering():
    block = np.array([[0, 1, -1, -1], [1, 0, -1, -1], [-1, -1, 0, 1], [-1, -1, 1, 0]], dtype=float)
    genes = ["a", "b", "c", "d"]
    perm = [0, 2, 1, 3]
    fig = plotting.jacobian_heatmap(block[np.ix_(perm, perm)], [genes[i] for i in perm])
    order = list(fig.data[0].x)
    assert abs(order.index("a") - order.index("b")) == 1 and abs(order.index("c") - order.index("d")) == 1


def test_loss_curves_from_history_and_live_curves():
    hist = pd.DataFrame(
        {
            "replica": [0, 0, 1, 1],
            "epoch": [0, 1, 0, 1],
            "train_loss": [1.0, 0.5, 1.1, 0.6],
            "val_loss": [1.2, 0.7, 1.3, 0.8],
        }
    )
    assert len(plotting.loss_curves(hist).data) == 4
    live = {0: [(0, 1.0, None), (1, 0.5, None)]}
    fig = plotting.loss_curves(live)
    assert len(fig.data) == 1 and list(fig.data[0].x) == [1, 2]


def test_data_page_figures():
    counts = pd.DataFrame(
        {
            "perturbation": ["A", "B", "C"],
            "modality": ["CRISPRi", "CRISPRi", "CRISPRa"],
            "cells": [30, 10, 20],
        }
    )
    assert len(plotting.cells_per_perturbation(counts).data) == 2
    check = {
        "A": {"log2fc": -1.5, "expected": "down", "ok": True},
        "C": {"log2fc": -0.1, "expected": "up", "ok": False},
    }
    fig = plotting.target_check_plot(check)
    assert "1 as expected, 1 not" in fig.layout.title.text


def test_other_figures_and_html_export():
    delta = pd.Series([0.5, -1.0, 0.1], index=["A", "B", "C"])
    fig = plotting.in_silico_bars(delta, top=2)
    assert list(fig.data[0].y) == ["A", "B"]
    summary = pd.DataFrame({"method": ["lazynet", "linear"], "mean": [0.4, 0.3], "sd": [0.1, np.nan]})
    assert len(plotting.method_bars(summary).data) == 1
    html = plotting.figure_html(fig).decode()
    assert "<html>" in html[:100] and "plotly" in html.lower()
    assert not re.search(r"<(?:script|link)\b[^>]*(?:src|href)\s*=\s*[\"']https?:", html)  # plotly.js inlined
