"""Figures for the app and notebooks: plotly figures and offline pyvis HTML. No Streamlit.

Every function takes plain arrays / DataFrames and returns a new ``plotly.graph_objects.Figure``
(or an HTML string), so the same figures serve the app, the CLI and a notebook.
Gene names reach the browser through plotly (rendered as text) or vis-network tooltips (rendered as
HTML): the latter are escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "PALETTE",
    "cells_per_perturbation",
    "chart_config",
    "effects_scatter",
    "figure_html",
    "in_silico_bars",
    "jacobian_heatmap",
    "loss_curves",
    "method_bars",
    "network_html",
    "strip_external_urls",
    "target_check_plot",
]

PALETTE = {
    "primary": "#3559a8",
    "accent": "#e07a1f",
    "pos": "#c0392b",
    "neg": "#2e6fba",
    "muted": "#9aa3ad",
    "ok": "#2a9d8f",
    "bad": "#d1495b",
    "seed": "#f4a261",
    "curated": "#8ecae6",
    "other": "#d9dee5",
}
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "font": {"family": "Inter, Helvetica, Arial, sans-serif", "size": 13},
}


def chart_config(filename: str = "lazynet", *, fmt: str = "png", scale: int = 2) -> dict[str, Any]:
    """Plotly config for ``st.plotly_chart(config=...)``: the toolbar camera exports ``fmt``.

    Parameters
    ----------
    filename
        Download file name without extension.
    fmt
        ``"png"`` or ``"svg"`` (plotly's ``toImageButtonOptions.format``).
    """
    if fmt not in ("png", "svg", "jpeg", "webp"):
        msg = f"fmt must be 'png', 'svg', 'jpeg' or 'webp', got {fmt!r}."
        raise ValueError(msg)
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": scale},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def figure_html(fig: go.Figure) -> bytes:
    """A standalone HTML file of ``fig`` with plotly.js inlined (works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False}).encode()


# ---- data page ---------------------------------------------------------------------------------
def cells_per_perturbation(counts: pd.DataFrame, *, top: int = 60) -> go.Figure:
    """Bar chart of cells per perturbation coloured by modality.

    ``counts`` has columns ``perturbation``, ``modality``, ``cells``; the ``top`` largest are shown.
    """
    data = counts.sort_values("cells", ascending=False).head(top)
    fig = go.Figure()
    colours = {"CRISPRi": PALETTE["neg"], "CRISPRa": PALETTE["pos"]}
    for modality, part in data.groupby("modality", sort=False):
        fig.add_bar(
            x=part["perturbation"],
            y=part["cells"],
            name=str(modality),
            marker_color=colours.get(str(modality), PALETTE["muted"]),
            hovertemplate="%{x}<br>%{y} cells<extra>" + str(modality) + "</extra>",
        )
    fig.update_layout(
        **_LAYOUT,
        title="Cells per perturbation",
        barmode="overlay",
        height=340,
        xaxis={"categoryorder": "total descending", "title": None},
        yaxis_title="cells",
        legend_title="modality",
    )
    return fig


def target_check_plot(check: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Target knock-down / activation check: log2 fold change of each target in its own cells.

    ``check`` maps target -> ``{"log2fc": float, "expected": "down"|"up", "ok": bool}``
    (``read_screen``'s ``uns["lazynet"]["target_check"]``).
    """
    rows = [
        (t, float(v.get("log2fc", np.nan)), v.get("expected", "?"), bool(v.get("ok", False)))
        for t, v in check.items()
    ]
    frame = pd.DataFrame(rows, columns=["target", "log2fc", "expected", "ok"]).sort_values("log2fc")
    colours = np.where(frame["ok"], PALETTE["ok"], PALETTE["bad"])
    fig = go.Figure(
        go.Bar(
            x=frame["target"],
            y=frame["log2fc"],
            marker_color=colours,
            customdata=np.c_[frame["expected"], np.where(frame["ok"], "as expected", "NOT as expected")],
            hovertemplate="%{x}: log2FC %{y:.2f}<br>expected %{customdata[0]} · %{customdata[1]}"
            "<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_color=PALETTE["muted"])
    n_bad = int((~frame["ok"]).sum())
    fig.update_layout(
        **_LAYOUT,
        height=340,
        xaxis_title=None,
        yaxis_title="log2 FC of target vs control",
        title=f"Target check: {len(frame) - n_bad} as expected, {n_bad} not (red)",
    )
    return fig


# ---- training --------------------------------------------------------------------------------
def loss_curves(history: pd.DataFrame | Mapping[int, Sequence[tuple]], *, log_y: bool = True) -> go.Figure:
    """Per-replica training (solid) and validation (dashed) loss by epoch.

    ``history`` is a DataFrame with ``replica, epoch, train_loss, val_loss`` (``Ensemble.history``)
    or a mapping replica -> ``[(epoch, train_loss, val_loss), ...]`` (a job's live curves).
    """
    if not isinstance(history, pd.DataFrame):
        rows = [(r, *point) for r, points in history.items() for point in points]
        history = pd.DataFrame(rows, columns=["replica", "epoch", "train_loss", "val_loss"])
    fig = go.Figure()
    colours = ["#3559a8", "#e07a1f", "#2a9d8f", "#8e5ea2", "#c0392b", "#6c757d"]
    for i, (rep, part) in enumerate(history.groupby("replica", sort=True)):
        colour = colours[i % len(colours)]
        fig.add_scatter(
            x=part["epoch"] + 1,
            y=part["train_loss"],
            mode="lines+markers",
            name=f"replica {rep + 1} train",
            line={"color": colour},
            marker={"size": 4},
        )
        if "val_loss" in part and part["val_loss"].notna().any():
            fig.add_scatter(
                x=part["epoch"] + 1,
                y=part["val_loss"],
                mode="lines",
                name=f"replica {rep + 1} val",
                line={"color": colour, "dash": "dash"},
            )
    fig.update_layout(
        **_LAYOUT,
        height=320,
        title="Loss per replica (solid: train, dashed: validation)",
        xaxis={"title": "epoch", "tickformat": "d"},
        yaxis_title="loss",
        yaxis_type="log" if log_y else "linear",
    )
    return fig


# ---- effects ---------------------------------------------------------------------------------
def effects_scatter(frame: pd.DataFrame, *, title: str = "", n_labels: int = 10) -> go.Figure:
    """Predicted vs observed Δ (post − control, log scale) per gene, identity line, top DE labelled.

    ``frame`` has columns ``gene``, ``observed``, ``predicted`` and optionally ``is_target``
    (targets are drawn as hollow diamonds: their level is the model's input, not a prediction).
    """
    data = frame.copy()
    if "is_target" not in data:
        data["is_target"] = False
    rest, targets = data[~data["is_target"]], data[data["is_target"]]
    fig = go.Figure()
    fig.add_scatter(
        x=rest["observed"],
        y=rest["predicted"],
        mode="markers",
        name="genes",
        text=rest["gene"],
        marker={"size": 6, "color": PALETTE["primary"], "opacity": 0.6},
        hovertemplate="<b>%{text}</b><br>observed Δ %{x:.3f}<br>predicted Δ %{y:.3f}<extra></extra>",
    )
    if len(targets):
        fig.add_scatter(
            x=targets["observed"],
            y=targets["predicted"],
            mode="markers",
            name="target (input)",
            text=targets["gene"],
            marker={"size": 11, "symbol": "diamond-open", "color": PALETTE["accent"]},
            hovertemplate="<b>%{text}</b> (target)<br>observed Δ %{x:.3f}<extra></extra>",
        )
    finite = data[["observed", "predicted"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite).all(axis=1)]
    lim = float(np.abs(finite).max()) * 1.08 if finite.size else 1.0
    fig.add_scatter(
        x=[-lim, lim],
        y=[-lim, lim],
        mode="lines",
        name="y = x",
        line={"color": PALETTE["muted"], "dash": "dot"},
        hoverinfo="skip",
    )
    top = rest.reindex(rest["observed"].abs().sort_values(ascending=False).index).head(n_labels)
    for _, row in top.iterrows():
        fig.add_annotation(
            x=row["observed"],
            y=row["predicted"],
            text=str(row["gene"]),
            showarrow=True,
            arrowhead=0,
            arrowcolor=PALETTE["muted"],
            ax=18,
            ay=-18,
            font={"size": 11},
        )
    fig.update_layout(
        **_LAYOUT,
        height=480,
        title=title or "Predicted vs observed effect",
        xaxis_title="observed Δ log expression (vs control)",
        yaxis_title="predicted Δ log expression",
        legend={"orientation": "h", "y": -0.18},
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def method_bars(summary: pd.DataFrame, *, metric_label: str = "delta-Pearson") -> go.Figure:
    """Mean ± sd of one metric per method (rows ``method, mean, sd``), LazyNet highlighted."""
    data = summary.dropna(subset=["mean"])
    colours = [PALETTE["accent"] if m == "lazynet" else PALETTE["muted"] for m in data["method"]]
    fig = go.Figure(
        go.Bar(
            x=data["method"],
            y=data["mean"],
            marker_color=colours,
            error_y={"type": "data", "array": data.get("sd", pd.Series(0, index=data.index)).fillna(0)},
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(**_LAYOUT, height=300, title=f"{metric_label} by method", yaxis_title=metric_label)
    return fig


def in_silico_bars(delta: pd.Series, *, top: int = 25, title: str = "") -> go.Figure:
    """Horizontal bars of the ``top`` largest predicted |Δ| genes (``delta`` indexed by gene)."""
    data = delta.reindex(delta.abs().sort_values(ascending=False).index).head(top)[::-1]
    colours = np.where(data.to_numpy() >= 0, PALETTE["pos"], PALETTE["neg"])
    fig = go.Figure(
        go.Bar(
            x=data.to_numpy(),
            y=data.index.astype(str),
            orientation="h",
            marker_color=colours,
            hovertemplate="%{y}: Δ %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **_LAYOUT,
        height=max(320, 18 * len(data) + 100),
        title=title or "Predicted response",
        xaxis_title="predicted Δ log expression",
    )
    return fig


# ---- Jacobian --------------------------------------------------------------------------------
def _cluster_order(matrix: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import leaves_list, linkage

    if matrix.shape[0] < 3:
        return np.arange(matrix.shape[0])
    clean = np.nan_to_num(matrix)
    if np.allclose(clean, clean[0]):
        return np.arange(matrix.shape[0])
    return leaves_list(linkage(clean, method="average", metric="euclidean"))


def jacobian_heatmap(
    jac: np.ndarray,
    genes: Sequence[str],
    *,
    agreement: np.ndarray | None = None,
    cluster: bool = True,
    title: str = "",
    value_label: str = "J",
) -> go.Figure:
    """Heatmap of a square gene × gene Jacobian, rows = target i, columns = source j.

    ``jac[i, j] = ∂f_i/∂x_j`` (effect of gene j on gene i's change). Diverging RdBu centred at 0;
    the diagonal is blanked (self-effects are not edges). ``agreement`` (same shape, e.g. replica
    sign consistency in [0, 1]) is shown in the hover. Rows and columns are ordered by average-linkage
    clustering of rows + columns when ``cluster``.
    """
    mat = np.array(jac, dtype=float, copy=True)
    n = mat.shape[0]
    if mat.shape != (n, n) or len(genes) != n:
        msg = (
            f"jacobian_heatmap needs a square matrix matching genes; got {mat.shape} and {len(genes)} genes."
        )
        raise ValueError(msg)
    np.fill_diagonal(mat, np.nan)
    order = _cluster_order(np.c_[np.nan_to_num(mat), np.nan_to_num(mat).T]) if cluster else np.arange(n)
    names = np.asarray(genes, dtype=str)[order]
    mat = mat[np.ix_(order, order)]
    agree = None if agreement is None else np.asarray(agreement, dtype=float)[np.ix_(order, order)]
    src = np.broadcast_to(names[None, :], (n, n))
    tgt = np.broadcast_to(names[:, None], (n, n))
    custom = np.dstack([src, tgt, np.full((n, n), "") if agree is None else np.round(agree, 2).astype(str)])
    # Colour range at the 99th percentile of |value| so a few strong edges do not wash out the rest;
    # the hover always shows the exact value.
    finite = np.abs(mat[np.isfinite(mat)])
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    hover = "%{customdata[0]} → %{customdata[1]}<br>" + value_label + " = %{z:.4f}"
    hover += "" if agree is None else "<br>agreement %{customdata[2]}"
    fig = go.Figure(
        go.Heatmap(
            z=mat,
            x=names,
            y=names,
            customdata=custom,
            colorscale="RdBu",
            reversescale=True,
            zmid=0,
            zmin=-vmax,
            zmax=vmax,
            hovertemplate=hover + "<extra></extra>",
            colorbar={"title": value_label},
        )
    )
    size = int(min(900, max(420, 14 * n + 160)))
    fig.update_layout(
        **_LAYOUT,
        height=size,
        title=title or "Consensus Jacobian (row: target, column: source)",
        xaxis={"title": "source gene j", "tickfont": {"size": 9 if n > 40 else 11}},
        yaxis={"title": "target gene i", "autorange": "reversed", "tickfont": {"size": 9 if n > 40 else 11}},
    )
    return fig


# ---- networks --------------------------------------------------------------------------------
_EXTERNAL_TAG = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*[\"'](?:https?:)?//[^\"']*[\"'][^>]*>"
    r"|<script\b[^>]*\bsrc\s*=\s*[\"'](?:https?:)?//[^\"']*[\"'][^>]*>\s*</script>",
    re.IGNORECASE | re.DOTALL,
)
# Short HTML comments holding a src/href (pyvis keeps a commented-out ../node_modules link).
_URL_COMMENT = re.compile(r"<!--(?:(?!-->).){0,1000}?(?:src|href)\s*=(?:(?!-->).){0,1000}?-->", re.DOTALL)
_SOURCE_MAP = re.compile(r"//# sourceMappingURL=[^\s<'\"]+")


def strip_external_urls(page: str) -> str:
    """Remove every ``<link href=http...>`` / ``<script src=http...>`` tag, short HTML comments
    holding a link (pyvis keeps a commented ``../node_modules`` one) and source-map hints."""
    return _SOURCE_MAP.sub("", _EXTERNAL_TAG.sub("", _URL_COMMENT.sub("", page)))


def _legend_html() -> str:
    """A small fixed legend drawn over the canvas (plain HTML, no external resources)."""
    items = [
        f'<span style="color:{PALETTE["seed"]};font-size:16px">&#9733;</span> seed',
        f'<span style="color:{PALETTE["curated"]};font-size:16px">&#9679;</span> curated module gene',
        '<span style="color:#b8c0cc;font-size:16px">&#9679;</span> other gene',
        f'<span style="color:{PALETTE["pos"]};font-weight:700">&#8594;</span> J &gt; 0 (activates)',
        f'<span style="color:{PALETTE["neg"]};font-weight:700">&#8594;</span> J &lt; 0 (represses)',
        "edge width &#8733; |J|",
    ]
    style = (
        "position:absolute;top:8px;left:8px;z-index:10;background:rgba(255,255,255,.9);"
        "border:1px solid #e3e8ef;border-radius:6px;padding:6px 10px;font:12px Helvetica,Arial,sans-serif;"
        "line-height:1.6;color:#1f2937"
    )
    return f'<div id="lazynet-legend" style="{style}">' + "<br>".join(items) + "</div>"


def network_html(
    edges: pd.DataFrame,
    *,
    seeds: Iterable[str] = (),
    curated: Iterable[str] = (),
    height: int = 620,
    legend: bool = True,
    max_width: float = 8.0,
) -> str:
    """Interactive, fully offline vis-network HTML of a signed gene graph.

    Parameters
    ----------
    edges
        Columns ``source``, ``target``, ``weight`` (signed J); optional ``agreement`` and ``level``.
    seeds, curated
        Genes drawn as orange stars (seeds) and light-blue dots (curated module genes).
    height
        Canvas height in pixels.

    Returns
    -------
    str
        HTML with vis-network inlined (``cdn_resources="in_line"``) and every external URL removed;
        gene names escaped in labels and tooltips.
    """
    from pyvis.network import Network

    seeds, curated = set(map(str, seeds)), set(map(str, curated))
    net = Network(
        height=f"{height}px", width="100%", directed=True, cdn_resources="in_line", bgcolor="#ffffff"
    )
    net.barnes_hut(gravity=-4000, spring_length=120)
    genes = pd.unique(pd.concat([edges["source"], edges["target"]]).astype(str)) if len(edges) else []
    degree = (
        pd.concat([edges["source"], edges["target"]]).astype(str).value_counts()
        if len(edges)
        else pd.Series()
    )
    for gene in list(genes) + [g for g in sorted(seeds) if g not in set(genes)]:
        role = "seed" if gene in seeds else "curated module gene" if gene in curated else "gene"
        colour = (
            PALETTE["seed"] if gene in seeds else PALETTE["curated"] if gene in curated else PALETTE["other"]
        )
        # ids and labels are JSON-escaped by pyvis (tojson) and drawn as canvas text; tooltips are
        # rendered as HTML by vis-network, so they get html.escape.
        net.add_node(
            gene,
            label=gene,
            color=colour,
            shape="star" if gene in seeds else "dot",
            size=14 + 2 * min(int(degree.get(gene, 0)), 10),
            title=f"{html.escape(gene)} ({role})",
            font={"size": 16 if gene in seeds or gene in curated else 12},
        )
    wmax = float(edges["weight"].abs().max()) if len(edges) else 1.0
    for row in edges.itertuples(index=False):
        w = float(row.weight)
        src, tgt = str(row.source), str(row.target)
        agree = getattr(row, "agreement", None)
        tip = f"{html.escape(src)} → {html.escape(tgt)}: J = {w:.4f}" + (
            "" if agree is None or pd.isna(agree) else f", agreement {agree:.2f}"
        )
        net.add_edge(
            src,
            tgt,
            color=PALETTE["pos"] if w >= 0 else PALETTE["neg"],
            title=tip,
            width=1 + (max_width - 1) * abs(w) / (wmax or 1.0),
            arrows="to",
        )
    page = strip_external_urls(net.generate_html())
    if legend:
        page = page.replace('<div id="mynetwork"', _legend_html() + '\n<div id="mynetwork"', 1)
    return page
