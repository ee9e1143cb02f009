"""Figures for the app and notebooks: plotly figures and offline pyvis HTML. No Streamlit.

Every function takes plain arrays / DataFrames and returns a new ``plotly.graph_objects.Figure``
(or an HTML string), so the same figures serve the app, the CLI and a notebook.
Names from data files (genes, perturbation labels) reach the browser in three ways, each made safe
exactly once: plotly text, hovers, tick labels and titles interpret a few HTML tags (``<b>``, ``<a>``,
``<span style>``) and decode entities, so names pass through :func:`plot_text` (``html.escape``);
vis-network 9 shows string tooltips with ``innerText`` and draws labels on a canvas, so names go there
as plain text (never escaped: the user would see ``&lt;``), and pyvis JSON-escapes them in the
script; the static SVG escapes them as XML and the PNG draws them with mathtext off. Invisible
characters (zero-width, bidi overrides) are shown as ``\\uXXXX`` codes and very long names are
shortened in the middle (:mod:`lazynet_core.text`).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lazynet_core.text import display_name, visible

__all__ = [
    "PALETTE",
    "cells_per_perturbation",
    "chart_config",
    "effects_scatter",
    "figure_html",
    "in_silico_bars",
    "heatmap_font_size",
    "heatmap_order",
    "jacobian_heatmap",
    "loss_curves",
    "edge_tooltip",
    "network_html",
    "network_layout",
    "network_nodes",
    "network_png",
    "network_svg",
    "plot_text",
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


#: presentation mode's font sizes (px) and how many characters a title / axis title line holds there
#: on a chart of the page's full width (a chart in one of two columns holds about half)
PRESENTATION_FONT, PRESENTATION_TITLE_FONT = 20, 24
PRESENTATION_TITLE_CHARS, PRESENTATION_AXIS_CHARS = 70, 90


def _wrapped(text: str | None, width: int) -> tuple[str | None, int]:
    """Plotly text broken into lines of at most ``width`` characters at spaces: (text, lines)."""
    if not text:
        return text, 0
    import textwrap

    lines = [part for chunk in str(text).split("<br>") for part in (textwrap.wrap(chunk, width) or [""])]
    return "<br>".join(lines), len(lines)


#: height (px) of a square chart (``for_presentation(square=True)``) at presentation sizes
PRESENTATION_SQUARE_HEIGHT = 820


def for_presentation(fig: go.Figure, *, share: float = 1.0, square: bool = False) -> go.Figure:
    """``fig`` at presentation font sizes, its titles wrapped and its margins grown to hold them.

    Long titles and axis titles are broken into lines (a projector-size title would run off a half-width
    chart), a horizontal legend above the plot gets its own band under the title, and axis titles move
    clear of their tick labels. In-plot labels grow with the fonts.

    Parameters
    ----------
    fig
        The figure; changed in place (pass a copy of one drawn again, ``go.Figure(fig)``).
    share
        The chart's share of the page width (0.5 in one of two columns): how long a title line may be.
    square
        Give a predicted-vs-observed scatter equal axes (y = x at 45°) on a tall canvas; a full-width
        chart would otherwise flatten it.

    Returns
    -------
    plotly.graph_objects.Figure
        ``fig``.
    """
    fig.update_layout(font={"size": PRESENTATION_FONT}, title_font={"size": PRESENTATION_TITLE_FONT})
    for note in fig.layout.annotations or ():
        if note.font is not None and note.font.size:
            note.font.size = round(note.font.size * 1.4)
    if square:
        fig.update_layout(height=max(int(fig.layout.height or 0), PRESENTATION_SQUARE_HEIGHT))
        fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
        fig.update_xaxes(constrain="domain")  # the plot area narrows; both ranges stay the data's
    title, lines = _wrapped(fig.layout.title.text, max(20, int(PRESENTATION_TITLE_CHARS * share)))
    if title:
        fig.update_layout(title_text=title)
    legend = fig.layout.legend
    legend_on_top = legend.orientation == "h" and legend.y is not None and legend.y >= 1
    top = max(fig.layout.margin.t or 0, 30 + 32 * lines + (40 if legend_on_top else 0))
    fig.update_layout(margin={"t": top})
    if fig.layout.height and not square:  # the same plot area as at normal sizes, under the larger text
        fig.update_layout(height=int(fig.layout.height * PRESENTATION_FONT / 13 * 0.7 + top - 50))
    text, _ = _wrapped(fig.layout.xaxis.title.text, max(24, int(PRESENTATION_AXIS_CHARS * share)))
    if text:
        fig.layout.xaxis.title.text = text
    room = (fig.layout.height or 450) - top - (fig.layout.margin.b or 80) - 40  # the y axis's length, px
    text, _ = _wrapped(fig.layout.yaxis.title.text, max(12, int(room // 11)))
    if text:
        fig.layout.yaxis.title.text = text
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True, title_standoff=12)
    return fig


def plot_text(text: Any, *, max_len: int | None = None) -> str:
    """A name from a data file as plotly text: invisible characters shown, HTML escaped once.

    Parameters
    ----------
    text
        A gene name, perturbation label or title that quotes one.
    max_len
        Shorten to this many characters (in the middle, with ``…``) for labels drawn on the figure;
        ``None`` keeps the whole name (hovers).

    Returns
    -------
    str
        Text that plotly shows literally (``<b>`` stays ``<b>``, not bold).
    """
    shown = visible(str(text)) if max_len is None else display_name(str(text), max_len=max_len)
    return html.escape(shown, quote=False)


def _plot_texts(values: Iterable[Any], *, max_len: int | None = None) -> list[str]:
    return [plot_text(v, max_len=max_len) for v in values]


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
#: More bars than this and their names would overlap on a half-width chart: names move to the hover.
MAX_BAR_LABELS = 30


def _bar_names_axis(names: list[str], shown: list[str], *, what: str) -> dict[str, Any]:
    """A categorical x axis that labels every bar, or none (hover names them) past MAX_BAR_LABELS."""
    if len(names) <= MAX_BAR_LABELS:
        return {"title": None, "tickmode": "array", "tickvals": names, "ticktext": shown}
    return {"title": f"{len(names)} {what}, sorted (hover a bar for its name)", "showticklabels": False}


def cells_per_perturbation(counts: pd.DataFrame, *, top: int = 60) -> go.Figure:
    """Bar chart of cells per perturbation coloured by modality.

    ``counts`` has columns ``perturbation``, ``modality``, ``cells``; the ``top`` largest are shown.
    """
    data = counts.sort_values("cells", ascending=False).head(top)
    title = "Cells per perturbation"
    if len(data) < len(counts):
        title += f" (the {len(data)} largest of {len(counts)})"
    fig = go.Figure()
    colours = {"CRISPRi": PALETTE["neg"], "CRISPRa": PALETTE["pos"]}
    ticks: dict[str, str] = {}
    for modality, part in data.groupby("modality", sort=False):
        names = _plot_texts(part["perturbation"])
        ticks.update(zip(names, _plot_texts(part["perturbation"], max_len=24), strict=True))
        fig.add_bar(
            x=names,
            y=part["cells"],
            name=plot_text(modality),
            marker_color=colours.get(str(modality), PALETTE["muted"]),
            hovertemplate="%{x}<br>%{y} cells<extra>" + plot_text(modality) + "</extra>",
        )
    fig.update_layout(
        **_LAYOUT,
        title=title,
        barmode="overlay",
        height=340,
        xaxis={"categoryorder": "total descending",
               **_bar_names_axis(list(ticks), list(ticks.values()), what="perturbations")},
        yaxis_title="cells",
        legend={"title": "modality", "orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1,
                "xanchor": "right"},
    )
    fig.update_layout(margin_t=80)  # the legend's own band between the title and the bars
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
    names = _plot_texts(frame["target"])
    fig = go.Figure(
        go.Bar(
            x=names,
            y=frame["log2fc"],
            marker_color=colours,
            customdata=np.c_[
                _plot_texts(frame["expected"]), np.where(frame["ok"], "as expected", "NOT as expected")
            ],
            hovertemplate="%{x}: log2FC %{y:.2f}<br>expected %{customdata[0]} · %{customdata[1]}"
            "<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_color=PALETTE["muted"])
    n_bad = int((~frame["ok"]).sum())
    fig.update_layout(
        **_LAYOUT,
        height=340,
        xaxis=_bar_names_axis(list(names), list(_plot_texts(frame["target"], max_len=24)), what="targets"),
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
        title="Loss per replica" + (" (solid: train, dashed: validation)"
                                    if "val_loss" in history and history["val_loss"].notna().any()
                                    else " (training cells; no validation split)"),
        # whole epochs only: plotly would otherwise label 1, 1.5, 2… as "1 2 2"
        xaxis={"title": "epoch", "tickformat": "d",
               "dtick": max(1, int(np.ceil((history["epoch"].max() + 1 if len(history) else 1) / 10)))},
        yaxis_title="loss",
        yaxis_type="log" if log_y else "linear",
    )
    return fig


# ---- effects ---------------------------------------------------------------------------------
def _fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of ``y`` on ``x`` (NaN when ``x`` is constant)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return float("nan"), float("nan")
    xc = x - x.mean()
    ss = float(xc @ xc)
    if ss <= 0:
        return float("nan"), float("nan")
    slope = float((y - y.mean()) @ xc / ss)
    return slope, float(y.mean() - slope * x.mean())


def _num(value: float) -> str:
    """Two decimals, or two significant digits for small numbers (0.0038, not 0.00)."""
    return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}"


def _slope_words(slope: float) -> str:
    """``"0.02: predicted effects ≈50× too small"`` and the like (1 = effects of the right size)."""
    if not np.isfinite(slope):
        return "n/a (no spread in the observed Δ)"
    if slope <= 0:
        return f"{_num(slope)}: wrong direction (1 = right size)"
    if slope < 0.8:
        factor = 1 / slope
        size = f"{factor:.0f}" if factor >= 10 else f"{factor:.1f}"
        return f"{_num(slope)}: predicted effects ≈{size}× too small (1 = right size)"
    if slope > 1.25:
        return f"{_num(slope)}: predicted effects ≈{slope:.1f}× too large (1 = right size)"
    return f"{_num(slope)}: effects of about the right size"


def _spaced_labels(ranked: pd.DataFrame, n_labels: int, *, min_distance: float) -> pd.DataFrame:
    """The first ``n_labels`` rows of ``ranked`` whose point lies at least ``min_distance`` (data units)
    from every point already labelled: one label per cluster of points, the most extreme one."""
    keep: list[int] = []
    points = ranked[["observed", "predicted"]].to_numpy(dtype=float)
    for i, point in enumerate(points):
        if len(keep) == n_labels:
            break
        if not np.isfinite(point).all():
            continue
        if all(np.hypot(*(point - points[j])) >= min_distance for j in keep):
            keep.append(i)
    return ranked.iloc[keep]


def effects_scatter(
    frame: pd.DataFrame,
    *,
    title: str = "",
    n_labels: int = 10,
    highlight: str | None = None,
    quantity: str = "Δ",
) -> go.Figure:
    """Predicted vs observed Δ (log scale) per gene: identity line, least-squares fit and its slope.

    ``frame`` has columns ``gene``, ``observed``, ``predicted`` and optionally ``is_target``
    (targets are drawn as hollow diamonds: their level is the model's input, not a prediction, and
    they are left out of the fit). The slope (1 = effects of the right size, 0.1 = ten times too
    small) is in the fit line's legend entry and in a corner annotation. ``highlight`` names a gene
    to ring and label (e.g. from a search box); unknown names are ignored. ``quantity`` names what
    is plotted in hovers and axis titles (``"interaction"`` for a double's genetic interaction).
    """
    data = frame.copy()
    hover = (f"<b>%{{text}}</b><br>observed {quantity} %{{x:.3f}}<br>"
             f"predicted {quantity} %{{y:.3f}}<extra></extra>")
    if "is_target" not in data:
        data["is_target"] = False
    data["is_target"] = data["is_target"].astype(bool)
    rest, targets = data[~data["is_target"]], data[data["is_target"]]
    fig = go.Figure()
    fig.add_scatter(
        x=rest["observed"],
        y=rest["predicted"],
        mode="markers",
        name="genes",
        text=_plot_texts(rest["gene"]),
        marker={"size": 6, "color": PALETTE["primary"], "opacity": 0.6},
        hovertemplate=hover,
    )
    if len(targets):
        fig.add_scatter(
            x=targets["observed"],
            y=targets["predicted"],
            mode="markers",
            name="target (input)",
            text=_plot_texts(targets["gene"]),
            marker={"size": 11, "symbol": "diamond-open", "color": PALETTE["accent"]},
            hovertemplate=f"<b>%{{text}}</b> (target)<br>observed {quantity} %{{x:.3f}}<extra></extra>",
        )
    finite = data[["observed", "predicted"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite).all(axis=1)]
    lim = float(np.abs(finite).max()) * 1.08 if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    fig.add_scatter(
        x=[-lim, lim],
        y=[-lim, lim],
        mode="lines",
        name="y = x",
        line={"color": PALETTE["muted"], "dash": "dot"},
        hoverinfo="skip",
    )
    slope, intercept = _fit_slope(
        rest["observed"].to_numpy(dtype=float), rest["predicted"].to_numpy(dtype=float)
    )
    if np.isfinite(slope):
        fig.add_scatter(
            x=[-lim, lim],
            y=[intercept - slope * lim, intercept + slope * lim],
            mode="lines",
            name=f"fit: slope {_num(slope)}",
            line={"color": PALETTE["accent"], "width": 2},
            hovertemplate=f"least-squares fit, slope {slope:.3f}<extra></extra>",
        )
    ranked = rest.reindex(rest["observed"].abs().sort_values(ascending=False).index)
    ranked = ranked[ranked["gene"].astype(str) != str(highlight)]  # the searched gene gets its own label
    top = _spaced_labels(ranked, n_labels, min_distance=0.1 * lim)
    for i, (_, row) in enumerate(top.iterrows()):
        # alternate above / below and step outwards, so labels of nearby points do not pile up
        offset = 18 + 12 * (i // 2)
        fig.add_annotation(
            x=row["observed"],
            y=row["predicted"],
            text=plot_text(row["gene"], max_len=30),
            showarrow=True,
            arrowhead=0,
            arrowcolor=PALETTE["muted"],
            ax=18,
            ay=-offset if i % 2 == 0 else offset,
            font={"size": 11},
            bgcolor="rgba(255,255,255,0.8)",  # a halo: legible over the points
        )
    if highlight:
        hit = data[data["gene"].astype(str) == str(highlight)]
        if len(hit):
            row = hit.iloc[0]
            fig.add_scatter(
                x=[row["observed"]],
                y=[row["predicted"]],
                mode="markers",
                name=f"{plot_text(highlight, max_len=30)} (searched)",
                text=[plot_text(highlight)],
                marker={"size": 18, "symbol": "circle-open", "color": PALETTE["bad"], "line": {"width": 3}},
                hovertemplate=hover,
            )
            fig.add_annotation(
                x=row["observed"],
                y=row["predicted"],
                text=f"<b>{plot_text(highlight, max_len=30)}</b>",
                showarrow=True,
                arrowhead=2,
                arrowcolor=PALETTE["bad"],
                ax=-40,
                ay=-40,
                font={"size": 14, "color": PALETTE["bad"]},
                bgcolor="rgba(255,255,255,0.85)",
            )
    slope_text = f"slope {_slope_words(slope)}"
    fig.add_annotation(
        xref="x domain",  # the plot area's corner, also where equal axes narrow it
        yref="y domain",
        x=0.01,
        y=0.99,
        xanchor="left",
        yanchor="top",
        showarrow=False,
        text=slope_text,
        font={"size": 12, "color": PALETTE["accent"]},
        bgcolor="rgba(255,255,255,0.85)",
    )
    fig.update_layout(
        **_LAYOUT,
        height=500,
        title=plot_text(title, max_len=120) if title else "Predicted vs observed effect",
        xaxis_title="observed Δ (vs reference controls)" if quantity == "Δ"
        else f"observed {quantity} (held-out cells)",
        yaxis_title="predicted Δ (vs training controls)" if quantity == "Δ"
        else f"predicted {quantity}",
        legend={"orientation": "h", "y": -0.2, "yanchor": "top"},
    )
    # one range on both axes, the data's: y = x is the diagonal, and no axis is padded with empty range
    # (an equal aspect ratio would pad x on a wide plot, or shrink the plot in presentation mode)
    fig.update_xaxes(range=[-lim, lim], automargin=True)
    fig.update_yaxes(range=[-lim, lim], automargin=True)
    return fig


def in_silico_bars(delta: pd.Series, *, top: int = 25, title: str = "",
                   span: float | None = None) -> go.Figure:
    """Horizontal bars of the ``top`` largest predicted |Δ| genes (``delta`` indexed by gene).

    ``span`` (log units, e.g. the 95th percentile of a measured perturbation's |Δ|) is the least
    half-width of the x axis, so a negligible response draws as short bars instead of filling it.
    """
    data = delta.reindex(delta.abs().sort_values(ascending=False).index).head(top)[::-1]
    colours = np.where(data.to_numpy() >= 0, PALETTE["pos"], PALETTE["neg"])
    fig = go.Figure(
        go.Bar(
            x=data.to_numpy(),
            y=_plot_texts(data.index.astype(str)),
            orientation="h",
            marker_color=colours,
            hovertemplate="%{y}: Δ %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **_LAYOUT,
        height=max(320, 26 * len(data) + 100),  # room for every label, also at presentation font sizes
        title=plot_text(title, max_len=120) if title else "Predicted response",
        xaxis_title="predicted Δ log expression",
    )
    fig.update_yaxes(tickmode="linear", dtick=1, automargin=True)  # plotly would drop every other gene
    largest = float(np.nanmax(np.abs(data.to_numpy()))) if len(data) else 0.0
    if span is not None and np.isfinite(span) and span > largest:
        fig.update_xaxes(range=[-1.05 * span, 1.05 * span])
    return fig


# ---- Jacobian --------------------------------------------------------------------------------
def _linkage(matrix: np.ndarray) -> np.ndarray | None:
    from scipy.cluster.hierarchy import linkage

    clean = np.nan_to_num(np.asarray(matrix, dtype=float))
    if clean.shape[0] < 3 or np.allclose(clean, clean[0]):
        return None
    return linkage(clean, method="average", metric="euclidean")


def _cluster_order(matrix: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import leaves_list

    link = _linkage(matrix)
    return np.arange(matrix.shape[0]) if link is None else leaves_list(link)


def heatmap_order(jac: np.ndarray) -> np.ndarray:
    """Average-linkage order of a square Jacobian's genes (rows and columns clustered together).

    Compute it once from the consensus J and pass it as ``order`` to every view (agreement, sd), so
    the same gene sits in the same row in all of them.
    """
    mat = np.array(jac, dtype=float, copy=True)
    np.fill_diagonal(mat, 0.0)
    mat = np.nan_to_num(mat)
    return _cluster_order(np.c_[mat, mat.T])


def _dendrogram_traces(jac: np.ndarray, order: np.ndarray) -> list[go.Scatter]:
    """Dendrogram lines (x in leaf positions 0..n-1) of the clustering behind ``order``."""
    from scipy.cluster.hierarchy import dendrogram

    mat = np.array(jac, dtype=float, copy=True)
    np.fill_diagonal(mat, 0.0)
    mat = np.nan_to_num(mat)
    link = _linkage(np.c_[mat, mat.T])
    if link is None:
        return []
    tree = dendrogram(link, no_plot=True)
    if list(tree["leaves"]) != list(order):
        return []  # a custom order: the tree would not sit over its leaves
    xs, ys = [], []
    for icoord, dcoord in zip(tree["icoord"], tree["dcoord"], strict=True):
        xs += [(x - 5) / 10 for x in icoord] + [None]
        ys += list(dcoord) + [None]
    return [go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#5b6472", "width": 1}, hoverinfo="skip",
                       showlegend=False, xaxis="x2", yaxis="y2")]


def heatmap_font_size(n: int, *, big: bool = False) -> int:
    """Tick label size for ``n`` genes: 14 px for a few genes down to 8 px for many (+40 % if ``big``)."""
    size = int(np.clip(560 / max(n, 1), 8, 14))
    return int(min(size * 1.4, 20)) if big else size


def jacobian_heatmap(
    jac: np.ndarray,
    genes: Sequence[str],
    *,
    agreement: np.ndarray | None = None,
    cluster: bool = True,
    order: Sequence[int] | None = None,
    title: str = "",
    value_label: str = "J",
    scale: str = "diverging",
    never_perturbed: Iterable[str] = (),
    never_perturbed_note: str = "its column is model extrapolation",
    dendrogram_of: np.ndarray | None = None,
    big: bool = False,
    highlight: str | None = None,
) -> go.Figure:
    """Heatmap of a square gene × gene Jacobian, rows = target i, columns = source j.

    ``jac[i, j] = ∂f_i/∂x_j`` (effect of gene j on gene i's change). ``scale="diverging"``: RdBu
    centred at 0; ``"sequential"`` (agreement, sd): from the minimum up. The colour range is clipped
    at the 99th percentile of |value| (stated on the colour bar; the hover shows exact values). The
    diagonal is blanked. Rows and columns follow ``order`` (e.g. :func:`heatmap_order` of the
    consensus, shared by every view) or, when ``cluster``, average-linkage clustering of ``jac``;
    ``dendrogram_of`` (the matrix the order came from, default ``jac``) is drawn as a dendrogram over
    the columns. Columns of ``never_perturbed`` regulators get a grey label with "°", explained by
    ``never_perturbed_note`` (what such a column is for this run's recipe). ``highlight`` (a gene of
    ``genes``) outlines its row (what regulates it) and its column (what it regulates), label in bold.
    """
    mat = np.array(jac, dtype=float, copy=True)
    n = mat.shape[0]
    if mat.shape != (n, n) or len(genes) != n:
        msg = (
            f"jacobian_heatmap needs a square matrix matching genes; got {mat.shape} and {len(genes)} genes."
        )
        raise ValueError(msg)
    if scale not in ("diverging", "sequential"):
        msg = f"scale must be 'diverging' or 'sequential', got {scale!r}."
        raise ValueError(msg)
    np.fill_diagonal(mat, np.nan)
    if order is None:
        order = heatmap_order(mat) if cluster else np.arange(n)
    order = np.asarray(order, dtype=int)
    dendro = _dendrogram_traces(mat if dendrogram_of is None else dendrogram_of, order) if n >= 3 else []
    raw = np.asarray(genes, dtype=str)[order]
    names = np.asarray(_plot_texts(raw), dtype=object)  # category values, hover: the escaped full name
    mat = mat[np.ix_(order, order)]
    agree = None if agreement is None else np.asarray(agreement, dtype=float)[np.ix_(order, order)]
    src = np.broadcast_to(names[None, :], (n, n))
    tgt = np.broadcast_to(names[:, None], (n, n))
    custom = np.dstack([src, tgt, np.full((n, n), "") if agree is None else np.round(agree, 2).astype(str)])
    finite = mat[np.isfinite(mat)]
    if scale == "diverging":
        vmax = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        vmax = vmax if vmax > 0 else (float(np.abs(finite).max()) if finite.size and finite.any() else 1.0)
        zrange = {"zmid": 0, "zmin": -vmax, "zmax": vmax, "colorscale": "RdBu", "reversescale": True}
        clip = f"clipped at ±{vmax:.3g}"
    else:
        lo = float(np.nanmin(finite)) if finite.size else 0.0
        hi = float(np.percentile(finite, 99)) if finite.size else 1.0
        hi = hi if hi > lo else lo + 1.0
        zrange = {"zmin": lo, "zmax": hi, "colorscale": "Viridis"}
        clip = f"range {lo:.3g}–{hi:.3g}"
    hover = "%{customdata[0]} → %{customdata[1]}<br>" + value_label + " = %{z:.4f}"
    hover += "" if agree is None else "<br>agreement %{customdata[2]}"
    never = set(map(str, never_perturbed))
    short = _plot_texts(raw, max_len=28)
    ticktext = [f'<span style="color:{PALETTE["muted"]}">{s}°</span>' if g in never else s
                for g, s in zip(raw, short, strict=True)]
    font = heatmap_font_size(n, big=big)
    fig = go.Figure(
        go.Heatmap(
            z=mat,
            x=names,
            y=names,
            customdata=custom,
            hovertemplate=hover + "<extra></extra>",
            colorbar={"title": {"text": f"{value_label}<br><sub>{clip}</sub>"}, "len": 0.8, "y": 0.4},
            **zrange,
        )
    )
    for trace in dendro:
        fig.add_trace(trace)
    top = 0.84 if dendro else 1.0
    per = font + 7
    size = int(min(1600, max(460, per * n + 300)))
    fig.update_layout(
        **{**_LAYOUT, "font": {**_LAYOUT["font"], "size": 18 if big else 13}},
        height=size,
        title=plot_text(title, max_len=120) if title else "Consensus Jacobian (row: target, column: source)",
        xaxis={"title": "source gene j (regulator)", "tickfont": {"size": font}, "tickmode": "array",
               "tickvals": list(names),
               "ticktext": ticktext, "tickangle": -90 if n > 12 else -45, "domain": [0, 1]},
        yaxis={"title": "target gene i", "autorange": "reversed", "tickfont": {"size": font},
               "tickmode": "array", "tickvals": list(names), "ticktext": short,
               "domain": [0, top - 0.02] if dendro else [0, 1]},
        plot_bgcolor="#ffffff",
    )
    if dendro:
        fig.update_layout(
            xaxis2={"domain": [0, 1], "range": [-0.5, n - 0.5], "visible": False, "anchor": "y2"},
            yaxis2={"domain": [top, 1.0], "visible": False, "anchor": "x2"},
        )
    if never & set(raw):
        fig.add_annotation(
            xref="paper", yref="paper", x=1.0, y=1.0, xanchor="right", yanchor="bottom", showarrow=False,
            text=f"grey ° : regulator never perturbed in the screen ({never_perturbed_note})",
            font={"size": max(font, 12), "color": "#5b6472"},
        )
    if highlight is not None and str(highlight) in set(raw):
        k = int(np.flatnonzero(raw == str(highlight))[0])
        line = {"color": PALETTE["bad"], "width": 3}
        fig.add_shape(type="rect", xref="x", yref="y", x0=-0.5, x1=n - 0.5, y0=k - 0.5, y1=k + 0.5, line=line)
        fig.add_shape(type="rect", xref="x", yref="y", x0=k - 0.5, x1=k + 0.5, y0=-0.5, y1=n - 0.5, line=line)
        fig.layout.xaxis.ticktext = tuple(f"<b>{t}</b>" if i == k else t for i, t in enumerate(ticktext))
        fig.layout.yaxis.ticktext = tuple(f"<b>{t}</b>" if i == k else t for i, t in enumerate(short))
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


# ---- network layout and static export ----------------------------------------------------------
_NODE_FILL = {"seed": PALETTE["seed"], "module": PALETTE["curated"], "other": PALETTE["other"]}
_MODEL_ONLY_COLOUR = "#a0a7b1"
LAYOUTS = ("force", "layered")


def network_nodes(
    edges: pd.DataFrame,
    *,
    seeds: Iterable[str] = (),
    curated: Iterable[str] = (),
    never_perturbed: Iterable[str] = (),
    levels: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Node table ``gene, role, level, never_perturbed, degree`` of an edge table (seeds first).

    ``role`` is ``"seed"``, ``"module"`` (a curated module gene) or ``"other"``; ``level`` the BFS
    level (from ``levels`` or the edges' ``level`` column; seeds 0); ``never_perturbed`` flags genes
    the screen never perturbed.
    """
    seeds, curated, never = list(map(str, seeds)), set(map(str, curated)), set(map(str, never_perturbed))
    genes = list(dict.fromkeys(seeds + (pd.concat([edges["source"], edges["target"]]).astype(str).tolist()
                                        if len(edges) else [])))
    degree = (pd.concat([edges["source"], edges["target"]]).astype(str).value_counts()
              if len(edges) else pd.Series(dtype=int))
    level = dict(levels or {})
    if not levels and len(edges) and "level" in edges:
        for row in edges.itertuples(index=False):
            lvl = getattr(row, "level", None)
            lvl = 1 if lvl is None or pd.isna(lvl) else int(lvl)
            for g in (str(row.source), str(row.target)):
                level[g] = min(level.get(g, lvl), lvl)
    seed_set = set(seeds)
    rows = [
        {
            "gene": g,
            "role": "seed" if g in seed_set else "module" if g in curated else "other",
            "level": 0 if g in seed_set else int(level.get(g, 1)),
            "never_perturbed": g in never,
            "degree": int(degree.get(g, 0)),
        }
        for g in genes
    ]
    return pd.DataFrame(rows, columns=["gene", "role", "level", "never_perturbed", "degree"])


def _scale(pos: dict[str, tuple[float, float]], width: float, height: float, margin: float) -> dict:
    xy = np.array(list(pos.values()), dtype=float)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    out = {}
    for g, (x, y) in pos.items():
        fx = (x - lo[0]) / span[0] if hi[0] > lo[0] else 0.5
        fy = (y - lo[1]) / span[1] if hi[1] > lo[1] else 0.5
        out[g] = (margin + fx * (width - 2 * margin), margin + fy * (height - 2 * margin))
    return out


#: Width of one label character in layout pixels (labels of 18–24 px, Helvetica, bold for seeds)
LABEL_CHAR_PX = 12.0


def _declutter(pos: dict, width: float, height: float, margin: float, *, dx: float = 90.0, dy: float = 54.0,
               rounds: int = 1500) -> dict:
    """Push apart nodes closer than their label boxes (at least ``dx`` × ``dy`` px) so labels do not
    overlap: two genes need their labels' mean width apart side by side, ``dy`` one above the other."""
    genes = list(pos)
    xy = np.array([pos[g] for g in genes], dtype=float)
    widths = np.array([len(display_name(g, max_len=40)) * LABEL_CHAR_PX + 24.0 for g in genes])
    pair_dx = np.maximum(dx, (widths[:, None] + widths[None, :]) / 2)
    scale = np.stack([pair_dx, np.full_like(pair_dx, dy)], axis=2)
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        diff = (xy[:, None, :] - xy[None, :, :]) / scale
        dist = np.sqrt((diff**2).sum(axis=2))
        np.fill_diagonal(dist, np.inf)
        close = dist < 1.0
        if not close.any():
            break
        dist = np.where(dist == 0, 1e-3, dist)
        direction = np.where(np.isfinite(dist)[..., None], diff / dist[..., None], 0.0)
        direction[(diff == 0).all(axis=2)] = rng.normal(size=2)
        push = np.where(close, (1.0 - dist) / 2, 0.0)[..., None] * direction * scale
        xy += push.sum(axis=1) * 0.5
        xy[:, 0] = np.clip(xy[:, 0], margin, width - margin)
        xy[:, 1] = np.clip(xy[:, 1], margin, height - margin)
    return {g: (float(x), float(y)) for g, (x, y) in zip(genes, xy, strict=True)}


def _layered(nodes: pd.DataFrame, edges: pd.DataFrame, height: float, margin: float) -> dict:
    """BFS levels left to right; a crowded level is split into staggered sub-columns."""
    rows_max = max(6, int((height - 2 * margin) // 42))
    parents: dict[str, list[str]] = {}
    for s, t in zip(edges["source"].astype(str), edges["target"].astype(str), strict=True):
        parents.setdefault(t, []).append(s)
        parents.setdefault(s, []).append(t)
    y_of: dict[str, float] = {}
    pos: dict[str, tuple[float, float]] = {}
    column = 0.0
    for lvl in sorted(nodes["level"].unique()):
        genes = nodes.loc[nodes["level"] == lvl, "gene"].tolist()
        bary = {g: np.mean([y_of[p] for p in parents.get(g, []) if p in y_of] or [np.inf]) for g in genes}
        genes.sort(key=lambda g: (bary[g], g))
        n_cols = int(np.ceil(len(genes) / rows_max))
        per_col = int(np.ceil(len(genes) / n_cols))
        for i, g in enumerate(genes):
            sub, k = divmod(i, per_col)
            size = min(per_col, len(genes) - sub * per_col)
            y = (k + 0.5) / size
            pos[g] = (column + sub * 0.55, y)
            y_of[g] = y
        column += 0.55 * (n_cols - 1) + 1.0
    return pos


def network_layout(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    *,
    kind: str = "force",
    width: float = 1100,
    height: float = 640,
    seed: int = 0,
) -> pd.DataFrame:
    """Node positions ``gene, x, y`` in pixels (y down) for the interactive and static figures.

    ``kind="force"`` is a seeded spring layout (reproducible); ``"layered"`` puts BFS levels in
    columns from left (seeds) to right. Both fill ``width`` × ``height`` so that, drawn at that size,
    labels of 16–20 px stay readable.
    """
    if kind not in LAYOUTS:
        msg = f"kind must be one of {LAYOUTS}, got {kind!r}."
        raise ValueError(msg)
    genes = nodes["gene"].astype(str).tolist()
    if not genes:
        return pd.DataFrame(columns=["gene", "x", "y"])
    margin = 60.0
    if kind == "layered":
        pos = _layered(nodes, edges, height, margin)
    else:
        import networkx as nx

        U = nx.Graph()
        U.add_nodes_from(genes)
        U.add_edges_from(zip(edges["source"].astype(str), edges["target"].astype(str), strict=True))
        start = nx.kamada_kawai_layout(U) if nx.is_connected(U) and len(genes) > 2 else None
        k = 2.0 / np.sqrt(max(len(genes), 1))
        raw = nx.spring_layout(U, pos=start, k=k, iterations=200 if start is None else 40, seed=seed)
        pos = {g: tuple(p) for g, p in raw.items()}
    pos = _scale(pos, width, height, margin)
    if kind == "force":
        pos = _declutter(pos, width, height, margin)
    return pd.DataFrame([(g, *pos[g]) for g in genes], columns=["gene", "x", "y"])


def _edge_style(row: Any, wmax: float, max_width: float) -> dict[str, Any]:
    w = float(row.weight)
    model_only = str(getattr(row, "evidence", "")) == "model_only"
    colour = _MODEL_ONLY_COLOUR if model_only else (PALETTE["pos"] if w >= 0 else PALETTE["neg"])
    return {"colour": colour, "dashed": model_only, "width": 1 + (max_width - 1) * abs(w) / (wmax or 1.0)}


def _fmt_opt(value: Any, spec: str) -> str:
    return "–" if value is None or pd.isna(value) else format(float(value), spec)


def edge_tooltip(row: Any) -> str:
    """Plain-text hover of one edge: J, replica agreement and sd, the evidence and its numbers.

    Plain text, not HTML: vis-network 9 shows it with ``innerText`` (so it is never escaped here);
    invisible characters of the gene names are shown as ``\\uXXXX`` codes.
    """
    src, tgt, w = visible(str(row.source)), visible(str(row.target)), float(row.weight)
    lines = [f"{src} → {tgt}", f"J = {w:+.4f}"]
    agree, sd = getattr(row, "agreement", None), getattr(row, "sd", None)
    lines.append(f"replica sign agreement {_fmt_opt(agree, '.2f')}, replica sd {_fmt_opt(sd, '.4f')}")
    evidence = getattr(row, "evidence", None)
    if evidence is not None and not pd.isna(evidence):
        lines.append(f"evidence: {evidence}")
        if evidence in ("interventional", "held_out"):
            agrees = getattr(row, "sign_agrees", None)
            word = "–" if agrees is None or pd.isna(agrees) else ("yes" if bool(agrees) else "no")
            lines.append(
                f"screen Δ {_fmt_opt(getattr(row, 'screen_delta', None), '+.3f')} in "
                f"{getattr(row, 'n_cells', '–')} cells, sign agrees: {word}"
            )
        else:
            lines.append(
                f"control co-expression r = {_fmt_opt(getattr(row, 'coexpr_r', None), '+.3f')}, "
                f"permutation p = {_fmt_opt(getattr(row, 'coexpr_p', None), '.3g')}"
            )
    return "\n".join(lines)


def _node_style(row: Any, font_size: int) -> dict[str, Any]:
    seed = row.role == "seed"
    return {
        "fill": _NODE_FILL[row.role],
        "size": (13 if seed else 9) + 1.2 * min(int(row.degree), 8),
        "font": font_size + (4 if seed else 2 if row.role == "module" else 0),
        "bold": seed or row.role == "module",
        "dashed": bool(row.never_perturbed) and seed,
    }


def _legend_items(edges: pd.DataFrame, nodes: pd.DataFrame) -> list[tuple[str, str]]:
    """(symbol HTML, text) pairs of the legend, only for what the graph shows."""
    items = [(f'<span style="color:{PALETTE["seed"]};font-size:18px">&#9733;</span>', "seed")]
    if (nodes["role"] == "module").any():
        items.append((f'<span style="color:{PALETTE["curated"]};font-size:18px">&#9679;</span>',
                      "curated module gene"))
    items.append(('<span style="color:#b8c0cc;font-size:18px">&#9679;</span>', "other gene"))
    if ((nodes["role"] == "seed") & nodes["never_perturbed"]).any():
        items.append(('<span style="border:2px dashed #1f2937;border-radius:50%;padding:0 5px">&nbsp;</span>',
                      "seed never perturbed by the screen"))
    items += [
        (f'<span style="color:{PALETTE["pos"]};font-weight:700">&#8594;</span>', "J &gt; 0 (activates)"),
        (f'<span style="color:{PALETTE["neg"]};font-weight:700">&#8594;</span>', "J &lt; 0 (represses)"),
    ]
    if "evidence" in edges and (edges["evidence"] == "model_only").any():
        items.append((f'<span style="color:{_MODEL_ONLY_COLOUR};font-weight:700">- - &#8594;</span>',
                      "model_only (no support in the screen)"))
    items.append(("", "width &#8733; |J| · node size: number of edges"))
    return items


def _legend_html(edges: pd.DataFrame, nodes: pd.DataFrame, font_size: int) -> str:
    """The legend as a row above the canvas (never over the graph)."""
    style = (
        "display:flex;flex-wrap:wrap;gap:4px 18px;align-items:center;padding:4px 8px;"
        f"font:{max(font_size - 3, 12)}px Helvetica,Arial,sans-serif;color:#1f2937;"
        "border-bottom:1px solid #e3e8ef"
    )
    cells = "".join(f"<span>{sym} {text}</span>" for sym, text in _legend_items(edges, nodes))
    return f'<div id="lazynet-legend" style="{style}">{cells}</div>'


_VIS_EXTRA = """
<style>
div.vis-tooltip { white-space: pre-line !important; font: 14px Helvetica, Arial, sans-serif !important;
  max-width: 420px; }
body { margin: 0; }
#mynetwork { border: none !important; }
</style>
<script>
// Show the whole layout (LAYOUT_W x LAYOUT_H px) at the largest zoom the frame allows, so labels
// keep their pixel size at the default zoom; refit when the frame is resized.
function lazynetFit() {
  var box = document.getElementById("mynetwork");
  var scale = Math.min(box.clientWidth / LAYOUT_W, box.clientHeight / LAYOUT_H, 1.4);
  network.moveTo({position: {x: LAYOUT_W / 2, y: LAYOUT_H / 2}, scale: scale, animation: false});
}
network.once("afterDrawing", lazynetFit);
window.addEventListener("resize", lazynetFit);
</script>
"""


def network_html(
    edges: pd.DataFrame,
    *,
    seeds: Iterable[str] = (),
    curated: Iterable[str] = (),
    never_perturbed: Iterable[str] = (),
    positions: pd.DataFrame | None = None,
    layout: str = "force",
    height: int = 640,
    legend: bool = True,
    max_width: float = 8.0,
    font_size: int = 18,
) -> str:
    """Interactive, fully offline vis-network HTML of a signed gene graph.

    Parameters
    ----------
    edges
        Columns ``source``, ``target``, ``weight`` (signed J); optional ``agreement``, ``sd``,
        ``level`` and the evidence columns (``evidence`` ``model_only`` edges are dashed and grey).
    seeds, curated, never_perturbed
        Seeds (orange stars; a dashed outline when the screen never perturbed them) and curated
        module genes (light-blue dots).
    positions
        ``gene, x, y`` from :func:`network_layout` (computed with ``layout`` when ``None``): the
        nodes are placed there, so the interactive view and the static PNG / SVG are the same
        figure; the view is fitted once drawn, so every label is readable at the default zoom.
    height
        Canvas height in pixels (the legend is a row above it).
    font_size
        Label size of ordinary genes in pixels at zoom 1 (seeds +4, module genes +2).

    Returns
    -------
    str
        HTML with vis-network inlined (``cdn_resources="in_line"``) and every external URL removed.
        Gene names are JSON-escaped in the script; tooltips are plain text (vis-network 9 renders
        string titles with ``innerText``, so no HTML is interpreted and nothing is HTML-escaped: a
        user never sees ``&lt;``); labels are drawn on the canvas, shortened to 40 characters.
    """
    from pyvis.network import Network

    nodes = network_nodes(edges, seeds=seeds, curated=curated, never_perturbed=never_perturbed)
    if positions is None:
        positions = network_layout(edges, nodes, kind=layout, height=height)
    xy = {g: (x, y) for g, x, y in positions[["gene", "x", "y"]].itertuples(index=False)}
    net = Network(
        height=f"{height}px", width="100%", directed=True, cdn_resources="in_line", bgcolor="#ffffff"
    )
    net.toggle_physics(False)
    for row in nodes.itertuples(index=False):
        style = _node_style(row, font_size)
        x, y = xy.get(row.gene, (0.0, 0.0))
        role = {"seed": "seed", "module": "curated module gene", "other": "gene"}[row.role]
        note = ", never perturbed by the screen" if row.never_perturbed else ""
        net.add_node(
            row.gene,
            label=display_name(row.gene, max_len=40),  # drawn on the canvas: plain text, never HTML
            x=float(x),
            y=float(y),
            color={"background": style["fill"], "border": "#1f2937" if style["dashed"] else "#5b6472"},
            borderWidth=3 if style["dashed"] else 1,
            shapeProperties={"borderDashes": [5, 4]} if style["dashed"] else {},
            shape="star" if row.role == "seed" else "dot",
            size=style["size"],
            title=f"{visible(row.gene)} ({role}{note}); BFS level {row.level}",  # innerText: not escaped
            font={"size": style["font"], "face": "Helvetica", "strokeWidth": 4, "strokeColor": "#ffffff",
                  "bold": {"mod": "bold"}} if style["bold"] else
                 {"size": style["font"], "face": "Helvetica", "strokeWidth": 4, "strokeColor": "#ffffff"},
            physics=False,
        )
    wmax = float(edges["weight"].abs().max()) if len(edges) else 1.0
    for row in edges.itertuples(index=False):
        style = _edge_style(row, wmax, max_width)
        net.add_edge(
            str(row.source),
            str(row.target),
            color=style["colour"],
            dashes=style["dashed"],
            title=edge_tooltip(row),
            width=style["width"],
            arrows="to",
            smooth={"type": "curvedCW", "roundness": 0.12},
        )
    net.set_options(json_options())
    page = strip_external_urls(net.generate_html())
    width = float(positions["x"].max() + 60) if len(positions) else 400.0
    extra = _VIS_EXTRA.replace("LAYOUT_W", f"{max(width, 400.0):.0f}").replace(
        "LAYOUT_H", f"{float(positions['y'].max() + 60) if len(positions) else 300.0:.0f}")
    page = page.replace("</body>", extra + "</body>", 1)
    if legend:
        legend_html = _legend_html(edges, nodes, font_size)
        page = page.replace('<div id="mynetwork"', legend_html + '\n<div id="mynetwork"', 1)
    return page


def json_options() -> str:
    """vis-network options: fixed positions (no physics), hover tooltips, labels never hidden."""
    import json

    options = {
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False},
        "nodes": {"scaling": {"label": {"enabled": False}}},
        "edges": {"arrowStrikethrough": False, "selectionWidth": 2},
    }
    return json.dumps(options)


def _star_points(x: float, y: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        a = -np.pi / 2 + i * np.pi / 5
        rr = r if i % 2 == 0 else r * 0.45
        pts.append((x + rr * np.cos(a), y + rr * np.sin(a)))
    return pts


def _shorten(x0: float, y0: float, x1: float, y1: float, gap: float) -> tuple[float, float]:
    """End point of an edge pulled back by ``gap`` (so the arrowhead stops at the node)."""
    d = float(np.hypot(x1 - x0, y1 - y0))
    if d <= gap or d == 0:
        return x1, y1
    return x1 - (x1 - x0) * gap / d, y1 - (y1 - y0) * gap / d


def _static_parts(edges: pd.DataFrame, nodes: pd.DataFrame, positions: pd.DataFrame, font_size: int,
                  max_width: float) -> tuple[list[dict], list[dict]]:
    xy = {g: (float(x), float(y)) for g, x, y in positions[["gene", "x", "y"]].itertuples(index=False)}
    size = {}
    node_parts = []
    for row in nodes.itertuples(index=False):
        style = _node_style(row, font_size)
        size[row.gene] = style["size"]
        node_parts.append({"gene": row.gene, "xy": xy[row.gene], "seed": row.role == "seed", **style})
    wmax = float(edges["weight"].abs().max()) if len(edges) else 1.0
    edge_parts = []
    for row in edges.itertuples(index=False):
        s, t = str(row.source), str(row.target)
        if s not in xy or t not in xy or s == t:
            continue
        (x0, y0), (x1, y1) = xy[s], xy[t]
        x1, y1 = _shorten(x0, y0, x1, y1, size.get(t, 10) + 2)
        edge_parts.append({"p0": (x0, y0), "p1": (x1, y1), **_edge_style(row, wmax, max_width)})
    return node_parts, edge_parts


def _canvas_size(positions: pd.DataFrame) -> tuple[float, float]:
    """Width and height (px) of a static network drawing: the layout plus an 80 px margin."""
    if not len(positions):
        return 400.0, 300.0
    return float(positions["x"].max() + 80), float(positions["y"].max() + 80)


def network_svg(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    positions: pd.DataFrame,
    *,
    title: str = "",
    font_size: int = 18,
    max_width: float = 8.0,
) -> str:
    """A standalone SVG of the network at ``positions`` (pure Python; labels stay editable text)."""
    node_parts, edge_parts = _static_parts(edges, nodes, positions, font_size, max_width)
    width, height = _canvas_size(positions)
    top = 40.0 if title else 0.0
    colours = sorted({e["colour"] for e in edge_parts})
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height + top:.0f}" '
        f'viewBox="0 {-top:.0f} {width:.0f} {height + top:.0f}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect x="0" y="{-top:.0f}" width="100%" height="100%" fill="#ffffff"/>',
        "<defs>",
    ]
    for i, c in enumerate(colours):
        out.append(
            f'<marker id="arrow{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="5" markerHeight="5" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        )
    out.append("</defs>")
    if title:
        out.append(
            f'<text x="20" y="-12" font-size="{font_size + 4}" font-weight="bold">{html.escape(title)}</text>'
        )
    for e in edge_parts:
        dash = ' stroke-dasharray="8 6"' if e["dashed"] else ""
        out.append(
            f'<line x1="{e["p0"][0]:.1f}" y1="{e["p0"][1]:.1f}" x2="{e["p1"][0]:.1f}" y2="{e["p1"][1]:.1f}" '
            f'stroke="{e["colour"]}" stroke-width="{e["width"]:.2f}" stroke-opacity="0.8"{dash} '
            f'marker-end="url(#arrow{colours.index(e["colour"])})"/>'
        )
    for n in node_parts:
        x, y = n["xy"]
        stroke = ' stroke="#1f2937" stroke-width="3" stroke-dasharray="5 4"' if n["dashed"] else \
            ' stroke="#5b6472" stroke-width="1"'
        if n["seed"]:
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in _star_points(x, y, n["size"] * 1.3))
            out.append(f'<polygon points="{pts}" fill="{n["fill"]}"{stroke}/>')
        else:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{n["size"]:.1f}" fill="{n["fill"]}"{stroke}/>')
        weight = ' font-weight="bold"' if n["bold"] else ""
        out.append(
            f'<text x="{x:.1f}" y="{y + n["size"] + n["font"]:.1f}" font-size="{n["font"]}" '
            f'text-anchor="middle"{weight} fill="#1f2937" stroke="#ffffff" stroke-width="4" '
            'paint-order="stroke">'
            f"{html.escape(display_name(n['gene'], max_len=40))}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def network_png(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    positions: pd.DataFrame,
    *,
    title: str = "",
    font_size: int = 18,
    max_width: float = 8.0,
    dpi: int = 200,
) -> bytes:
    """PNG bytes of the same drawing as :func:`network_svg`, rendered with matplotlib (Agg)."""
    import matplotlib.patheffects as pe
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    node_parts, edge_parts = _static_parts(edges, nodes, positions, font_size, max_width)
    width, height = _canvas_size(positions)
    px = 1 / 100  # 100 px per inch at dpi=100, so sizes match the SVG
    fig = Figure(figsize=(width * px, height * px), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    pt = 72 / 100  # points per pixel
    for e in edge_parts:
        ax.add_patch(FancyArrowPatch(
            e["p0"], e["p1"], arrowstyle="-|>", mutation_scale=10 + e["width"] * 2,
            color=e["colour"], lw=e["width"] * pt, alpha=0.8, linestyle="--" if e["dashed"] else "-",
            shrinkA=0, shrinkB=0,
        ))
    halo = [pe.withStroke(linewidth=3, foreground="white")]
    for n in node_parts:
        x, y = n["xy"]
        marker = "*" if n["seed"] else "o"
        ms = (n["size"] * (2.6 if n["seed"] else 2.0)) * pt
        ax.plot([x], [y], marker=marker, ms=ms, mfc=n["fill"], mec="#1f2937" if n["dashed"] else "#5b6472",
                mew=2.5 if n["dashed"] else 0.8, ls="none", zorder=3)
        ax.text(x, y + n["size"] + n["font"] * 0.7, display_name(n["gene"], max_len=40), ha="center",
                va="center", parse_math=False,
                fontsize=n["font"] * pt, fontweight="bold" if n["bold"] else "normal", color="#1f2937",
                path_effects=halo, zorder=4)
    if title:
        ax.text(20, 24, title, fontsize=(font_size + 4) * pt, fontweight="bold", va="center",
                parse_math=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()
