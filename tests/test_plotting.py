"""Figures build from small literal inputs; the pyvis HTML is offline and escaped."""

from __future__ import annotations

import json
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
    # vis-network 9 shows string tooltips as text; the name is JSON-escaped like the label
    assert "A\\u003cb\\u003e\\u0026c (gene" in page


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


def test_effects_scatter_labels_top_de_identity_line_and_slope():
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
    texts = [a.text for a in fig.layout.annotations]
    assert texts[:2] == ["B", "C"]
    names = [t.name for t in fig.data]
    slope = np.polyfit([0.1, -2.0, 0.5], [0.0, -1.5, 0.4], 1)[0]  # the target is left out of the fit
    assert names == ["genes", "target (input)", "y = x", f"fit: slope {slope:.2f}"]
    assert texts[2].startswith(f"slope {slope:.2f}") and "too small" in texts[2]
    tiny = frame.assign(predicted=frame["observed"] * 0.0038)
    assert [t.name for t in plotting.effects_scatter(tiny).data][-1] == "fit: slope 0.0038"
    assert list(fig.data[0].text) == ["A", "B", "C"]
    line = fig.data[2]
    assert line.x[0] == line.y[0] and line.x[1] == line.y[1] > 2.0
    fit = fig.data[3]
    assert np.isclose((fit.y[1] - fit.y[0]) / (fit.x[1] - fit.x[0]), slope)


def test_effects_scatter_highlights_a_searched_gene():
    frame = pd.DataFrame({"gene": ["A", "B<i>"], "observed": [0.1, -2.0], "predicted": [0.0, -1.5]})
    fig = plotting.effects_scatter(frame, highlight="B<i>")
    ring = fig.data[-1]
    assert ring.name == "B&lt;i&gt; (searched)" and list(ring.x) == [-2.0]  # plotly decodes it once
    assert any(a.text == "<b>B&lt;i&gt;</b>" for a in fig.layout.annotations)
    fig = plotting.effects_scatter(frame, highlight="NOT_A_GENE")  # unknown names are ignored
    assert not any("searched" in (t.name or "") for t in fig.data)


def test_effects_scatter_constant_observed_has_no_fit():
    frame = pd.DataFrame({"gene": ["A", "B"], "observed": [0.0, 0.0], "predicted": [0.1, -0.1]})
    fig = plotting.effects_scatter(frame)
    assert [t.name for t in fig.data] == ["genes", "y = x"]
    assert "slope n/a" in fig.layout.annotations[-1].text


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


def test_jacobian_heatmap_outlines_a_highlighted_genes_row_and_column():
    J = np.arange(16, dtype=float).reshape(4, 4)
    fig = plotting.jacobian_heatmap(J, ["a", "b", "c", "d"], cluster=False, highlight="c")
    rects = [(s.x0, s.x1, s.y0, s.y1) for s in fig.layout.shapes]
    assert rects == [(-0.5, 3.5, 1.5, 2.5), (1.5, 2.5, -0.5, 3.5)]  # row c, column c (position 2)
    assert fig.layout.yaxis.ticktext[2] == "<b>c</b>" and fig.layout.yaxis.ticktext[0] == "a"
    assert not plotting.jacobian_heatmap(J, ["a", "b", "c", "d"], highlight="zz").layout.shapes


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
    fig = plotting.loss_curves(hist)
    assert len(fig.data) == 4 and "dashed: validation" in fig.layout.title.text
    live = {0: [(0, 1.0, None), (1, 0.5, None)]}
    fig = plotting.loss_curves(live)
    assert len(fig.data) == 1 and list(fig.data[0].x) == [1, 2]
    assert "validation" not in fig.layout.title.text.replace("no validation split", "")  # none drawn


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
    assert list(fig.layout.xaxis.ticktext) == ["A", "C"]  # few bars: every one named, by fold change
    many = pd.DataFrame({"perturbation": [f"P{i}" for i in range(64)], "modality": ["CRISPRi"] * 64,
                         "cells": range(64)})
    fig = plotting.cells_per_perturbation(many, top=64)
    assert fig.layout.xaxis.showticklabels is False and "64 perturbations" in fig.layout.xaxis.title.text
    assert set(fig.data[0].x) == set(many["perturbation"])  # each bar still carries its name (hover)


def test_other_figures_and_html_export():
    delta = pd.Series([0.5, -1.0, 0.1], index=["A", "B", "C"])
    fig = plotting.in_silico_bars(delta, top=2)
    assert list(fig.data[0].y) == ["A", "B"]
    assert fig.layout.xaxis.range is None  # no measured scale: plotly fits the bars
    tiny = plotting.in_silico_bars(delta * 1e-3, top=2, span=0.4)  # a negligible response draws short
    np.testing.assert_allclose(tiny.layout.xaxis.range, [-0.42, 0.42])
    assert plotting.in_silico_bars(delta, top=2, span=0.4).layout.xaxis.range is None  # bars exceed it
    html = plotting.figure_html(fig).decode()
    assert "<html>" in html[:100] and "plotly" in html.lower()
    assert not re.search(r"<(?:script|link)\b[^>]*(?:src|href)\s*=\s*[\"']https?:", html)  # plotly.js inlined


def _evidence_edges() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["GPX4", "GPX4", "NFE2L2", "TFRC"],
            "target": ["ACSL4", "NFE2L2", "SLC7A11", "GPX4"],
            "weight": [0.4, -0.2, 0.8, 0.05],
            "agreement": [1.0, 0.67, 1.0, 1.0],
            "sd": [0.01, 0.02, 0.05, 0.01],
            "level": [1, 1, 2, 1],
            "evidence": ["interventional", "held_out", "observational", "model_only"],
            "screen_delta": [0.3, -0.1, np.nan, np.nan],
            "n_cells": [40, 12, 0, 0],
            "sign_agrees": [True, False, None, None],
            "coexpr_r": [0.1, 0.0, 0.4, 0.01],
            "coexpr_p": [0.2, 0.9, 0.001, 0.8],
        }
    )


def test_network_html_labels_every_node_at_readable_size_and_fits():
    edges = _evidence_edges()
    page = plotting.network_html(edges, seeds=["GPX4", "TFRC"], never_perturbed=["TFRC"])
    nodes = json.loads(re.search(r"new vis\.DataSet\((\[.*?\])\);", page).group(1))
    assert {n["label"] for n in nodes} == {"GPX4", "ACSL4", "NFE2L2", "SLC7A11", "TFRC"}
    assert all(n["font"]["size"] >= 18 for n in nodes)  # readable at zoom 1
    assert all("x" in n and "y" in n for n in nodes)  # fixed layout, same as the static export
    assert '"physics": {"enabled": false}' in page and "lazynetFit" in page
    never = next(n for n in nodes if n["id"] == "TFRC")
    assert never["shapeProperties"]["borderDashes"]  # seed never perturbed: dashed outline
    legend = page.index('id="lazynet-legend"')
    assert legend < page.index('<div id="mynetwork"')  # a row above the canvas, not over the graph
    assert "seed never perturbed by the screen" in page and "model_only" in page


def test_network_html_model_only_dashed_grey_and_hover_carries_evidence():
    page = plotting.network_html(_evidence_edges(), seeds=["GPX4"])
    edges = json.loads(re.search(r"edges = new vis\.DataSet\((\[.*?\])\);", page).group(1))
    by_target = {(e["from"], e["to"]): e for e in edges}
    model_only = by_target[("TFRC", "GPX4")]
    assert model_only["dashes"] is True and model_only["color"] == plotting._MODEL_ONLY_COLOUR
    assert all(e["dashes"] is False for k, e in by_target.items() if k != ("TFRC", "GPX4"))
    tip = by_target[("GPX4", "ACSL4")]["title"]
    assert "J = +0.4000" in tip and "agreement 1.00" in tip and "sd 0.0100" in tip
    assert "evidence: interventional" in tip and "screen Δ +0.300 in 40 cells, sign agrees: yes" in tip
    assert "r = +0.400, permutation p = 0.001" in by_target[("NFE2L2", "SLC7A11")]["title"]


@pytest.mark.parametrize("kind", ["force", "layered"])
def test_static_network_svg_and_png_label_every_node(kind):
    edges = _evidence_edges()
    nodes = plotting.network_nodes(edges, seeds=["GPX4"], curated=["ACSL4"], never_perturbed=["TFRC"])
    assert nodes.set_index("gene").loc["GPX4", "role"] == "seed"
    assert nodes.set_index("gene").loc["ACSL4", "role"] == "module"
    pos = plotting.network_layout(edges, nodes, kind=kind)
    assert set(pos["gene"]) == set(nodes["gene"])
    assert pos["x"].between(0, 1100).all() and pos["y"].between(0, 640).all()
    svg = plotting.network_svg(edges, nodes, pos, title="Ferroptosis")
    texts = re.findall(r"<text[^>]*font-size=\"(\d+)\"[^>]*>([^<]+)</text>", svg)
    labels = {t for _, t in texts}
    assert set(nodes["gene"]) <= labels and "Ferroptosis" in labels
    assert min(int(size) for size, t in texts if t in set(nodes["gene"])) >= 18
    assert 'stroke-dasharray="8 6"' in svg  # the model_only edge
    png = plotting.network_png(edges, nodes, pos)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_layered_layout_puts_levels_in_columns():
    edges = _evidence_edges()
    nodes = plotting.network_nodes(edges, seeds=["GPX4"])
    pos = plotting.network_layout(edges, nodes, kind="layered").set_index("gene")
    assert pos.loc["GPX4", "x"] < pos.loc["ACSL4", "x"] < pos.loc["SLC7A11", "x"]
    with pytest.raises(ValueError, match="kind"):
        plotting.network_layout(edges, nodes, kind="circle")


HOSTILE = [
    "![t](http://evil.example/x.png)",
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "a\u200bb\u202ec",
    "L" * 300,
]


def _plotly_strings(fig) -> list[str]:
    """Every string in a figure that plotly renders as (HTML-ish) text."""
    out = []

    def walk(value):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple, np.ndarray)):
            for v in value:
                walk(v)

    walk(fig.to_plotly_json())
    return out


def test_plotly_figures_show_hostile_names_as_text():
    """No raw tag or invisible character from a name reaches plotly; each is escaped exactly once."""
    frame = pd.DataFrame({"gene": HOSTILE, "observed": np.linspace(-1, 1, 5),
                          "predicted": np.linspace(1, -1, 5), "is_target": [True] + [False] * 4})
    counts = pd.DataFrame({"perturbation": HOSTILE, "modality": ["CRISPRi"] * 5, "cells": [9, 8, 7, 6, 5]})
    check = {g: {"log2fc": -1.0, "expected": "down", "ok": True} for g in HOSTILE}
    figs = [
        plotting.effects_scatter(frame, title=HOSTILE[1], highlight=HOSTILE[2]),
        plotting.in_silico_bars(pd.Series(np.arange(5.0), index=HOSTILE), title=HOSTILE[2]),
        plotting.jacobian_heatmap(np.arange(25.0).reshape(5, 5), HOSTILE, never_perturbed=HOSTILE[:2],
                                  title=HOSTILE[1]),
        plotting.cells_per_perturbation(counts),
        plotting.target_check_plot(check),
    ]
    for fig in figs:
        text = "\n".join(_plotly_strings(fig))
        assert "<script" not in text and "<img" not in text, text[:300]
        assert "\u200b" not in text and "\u202e" not in text
        assert "&amp;lt;" not in text  # escaped once, not twice
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text or "&lt;img src=x" in text
    heat = figs[2]
    assert max(len(t) for t in heat.layout.xaxis.ticktext) < 80  # the 300-character name is shortened
    assert plotting.plot_text("a<b>") == "a&lt;b&gt;" and plotting.plot_text("a\u202eb") == "a\\u202eb"


def test_network_figures_carry_hostile_names_as_plain_text():
    """vis-network tooltips are plain text (innerText): no HTML escaping, so no ``&lt;`` is shown."""
    import json
    import re

    edges = pd.DataFrame({"source": [HOSTILE[1], HOSTILE[3]], "target": [HOSTILE[2], HOSTILE[4]],
                          "weight": [0.5, -0.4]})
    page = plotting.network_html(edges, seeds=[HOSTILE[1]])
    assert "<script>window" not in page and "<img src=x" not in page  # JSON-escaped in the script
    nodes = json.loads(re.search(r"nodes = new vis\.DataSet\((\[.*?\])\);", page).group(1))
    titles = {n["id"]: n["title"] for n in nodes}
    assert titles[HOSTILE[1]].startswith("<script>window.__pwned=1</script> (seed")  # literal, once
    assert "&lt;" not in "".join(titles.values())
    assert "\\u202e" in titles[HOSTILE[3]] and "\u202e" not in titles[HOSTILE[3]]
    assert max(len(n["label"]) for n in nodes) <= 40
    edge_titles = json.loads(re.search(r"edges = new vis\.DataSet\((\[.*?\])\);", page).group(1))
    assert edge_titles[0]["title"].startswith("<script>window.__pwned=1</script> → <img src=x")
    nodes_frame = plotting.network_nodes(edges, seeds=[HOSTILE[1]])
    pos = plotting.network_layout(edges, nodes_frame)
    svg = plotting.network_svg(edges, nodes_frame, pos, title="$x$ <b>")
    assert "<script>" not in svg and "<img" not in svg and "&lt;b&gt;" in svg
    png = plotting.network_png(edges, nodes_frame, pos, title="$\\frac{$")  # mathtext would raise
    assert png[:4] == b"\x89PNG"


def test_declutter_keeps_long_labels_side_by_side_apart():
    """Two 10-letter labels 100 px apart overlap (each ~144 px wide); short ones need only ``dx``."""
    from lazynet_core.plotting import LABEL_CHAR_PX, _declutter

    long = _declutter({"AAAAAAAAAA": (500.0, 300.0), "BBBBBBBBBB": (600.0, 300.0)}, 1100, 640, 60)
    gap = abs(long["AAAAAAAAAA"][0] - long["BBBBBBBBBB"][0])
    assert gap >= 0.98 * (10 * LABEL_CHAR_PX + 24.0), long
    short = _declutter({"A": (500.0, 300.0), "B": (600.0, 300.0)}, 1100, 640, 60)
    assert short == {"A": (500.0, 300.0), "B": (600.0, 300.0)}  # already a label box apart: untouched


def test_presentation_wraps_titles_to_the_charts_share_and_keeps_a_scatter_square():
    counts = pd.DataFrame({"perturbation": [f"P{i}" for i in range(30)], "cells": np.arange(30) + 5,
                           "modality": ["CRISPRi", "CRISPRa"] * 15})
    half = plotting.for_presentation(plotting.cells_per_perturbation(counts, top=20), share=0.5)
    lines = half.layout.title.text.split("<br>")
    assert len(lines) >= 2 and all(len(line) <= 35 for line in lines)  # a half-width chart's title wraps
    assert half.layout.font.size == plotting.PRESENTATION_FONT
    assert half.layout.margin.t >= 30 + 32 * len(lines) + 40  # room for the title lines and the legend band
    whole = plotting.for_presentation(plotting.cells_per_perturbation(counts, top=20))
    assert "<br>" not in whole.layout.title.text  # the same title fits a full-width chart
    frame = pd.DataFrame({"gene": list("ABCD"), "observed": [0.5, -0.2, 0.1, 0.0],
                          "predicted": [0.4, -0.1, 0.0, 0.1], "is_target": [True, False, False, False]})
    normal = plotting.effects_scatter(frame)
    sizes = [a.font.size for a in normal.layout.annotations]
    square = plotting.for_presentation(plotting.effects_scatter(frame), square=True)
    assert square.layout.yaxis.scaleanchor == "x" and square.layout.xaxis.constrain == "domain"
    assert square.layout.height == plotting.PRESENTATION_SQUARE_HEIGHT
    assert [a.font.size for a in square.layout.annotations] == [round(s * 1.4) for s in sizes]
    assert list(square.layout.xaxis.range) == list(normal.layout.xaxis.range)  # the data's range kept


def test_scatter_labels_one_gene_per_cluster_of_points():
    """Labels go to the most extreme point of each cluster, never to two points on top of each other."""
    frame = pd.DataFrame({"gene": ["A", "B", "C", "D", "T"],
                          "observed": [1.00, 0.99, 0.98, -0.6, 0.2],
                          "predicted": [0.50, 0.50, 0.49, -0.3, 0.1],
                          "is_target": [False, False, False, False, True]})
    fig = plotting.effects_scatter(frame, n_labels=3)
    labelled = [a.text for a in fig.layout.annotations if a.showarrow]
    assert labelled == ["A", "D"]  # B and C sit on A; the target is not a label
