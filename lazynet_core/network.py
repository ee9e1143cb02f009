"""Gene networks from Jacobians: consensus graph and seed subgraphs (method §5, the "32×4 BFS").

Pure networkx / pandas / numpy: no torch here. Conventions used throughout:

- a Jacobian frame ``J`` has rows = targets and columns = sources; ``J.loc[t, s]`` is the effect
  of gene ``s`` on the change of gene ``t`` (an elasticity, since expression is log-scale);
- a graph edge ``s -> t`` carries ``weight = J[t, s]``, ``sign`` (+1 / -1), ``abs_weight`` and,
  when replica information exists, ``agreement`` (fraction of replicas agreeing with the consensus
  sign) and ``sd`` (replica standard deviation);
- nothing here mutates its input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from lazynet_core.errors import ScreenError

EDGE_COLUMNS = ["source", "target", "weight", "sign", "abs_weight", "agreement", "sd", "level"]
EVIDENCE_EDGE_COLUMNS = [
    "evidence", "source_delta", "screen_delta", "n_cells", "sign_agrees", "coexpr_r", "coexpr_p",
    "above_noise",
]
_DIRECTIONS = ("out", "in", "both")


# ----------------------------------------------------------------------------------------------
# neighbour providers
# ----------------------------------------------------------------------------------------------
def _as_partner_frame(result: pd.Series | pd.DataFrame, gene: str) -> pd.DataFrame:
    """Normalise a provider answer to a frame with a ``weight`` column, self excluded."""
    if isinstance(result, pd.Series):
        frame = result.rename("weight").to_frame()
    elif isinstance(result, pd.DataFrame) and "weight" in result.columns:
        frame = result
    else:
        msg = (f"A neighbours provider must return a pandas Series (partner -> weight) or a DataFrame "
               f"with a 'weight' column; for gene {gene!r} it returned {type(result).__name__}.")
        raise TypeError(msg)
    frame = frame[frame.index != gene]
    return frame[np.isfinite(frame["weight"].to_numpy(dtype=float))]


class _FrameProvider:
    """Neighbours from a dense Jacobian frame (rows target, columns source)."""

    def __init__(self, J: pd.DataFrame) -> None:
        self.J = J
        self.genes = list(dict.fromkeys([*map(str, J.columns), *map(str, J.index)]))

    def __call__(self, gene: str, direction: str) -> pd.Series:
        if direction == "out":
            return self.J[gene] if gene in self.J.columns else pd.Series(dtype=float)
        return self.J.loc[gene] if gene in self.J.index else pd.Series(dtype=float)


class _GraphProvider:
    """Neighbours from a weighted DiGraph (edge ``s -> t`` with ``weight``)."""

    def __init__(self, G: nx.DiGraph) -> None:
        self.G = G
        self.genes = list(G.nodes)

    def __call__(self, gene: str, direction: str) -> pd.DataFrame:
        adj = self.G.succ[gene] if direction == "out" else self.G.pred[gene]
        rows = {p: {"weight": float(d.get("weight", 1.0)), "agreement": d.get("agreement", np.nan),
                    "sd": d.get("sd", np.nan)} for p, d in adj.items()}
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["weight", "agreement", "sd"])
        return frame.astype(float)


def _provider(neighbors: Any) -> Callable[[str, str], pd.Series | pd.DataFrame]:
    if isinstance(neighbors, nx.DiGraph):
        return _GraphProvider(neighbors)
    if isinstance(neighbors, pd.DataFrame):
        return _FrameProvider(neighbors)
    if callable(neighbors):
        return neighbors
    msg = (f"neighbors must be a callable neighbors(gene, direction), an nx.DiGraph with 'weight' "
           f"edge attributes or a Jacobian DataFrame (rows target, columns source); got "
           f"{type(neighbors).__name__}.")
    raise TypeError(msg)


def _resolve_seeds(seeds: Iterable[str], universe: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Split seeds into (found, missing); case-insensitive fallback when the universe is known."""
    seeds = list(dict.fromkeys(str(s) for s in ([seeds] if isinstance(seeds, str) else seeds)))
    if universe is None:
        return seeds, []
    exact = set(map(str, universe))
    upper = {g.upper(): g for g in exact}
    found, missing = [], []
    for s in seeds:
        hit = s if s in exact else upper.get(s.upper())
        (found if hit is not None else missing).append(hit if hit is not None else s)
    return list(dict.fromkeys(found)), missing


def _probe_seeds(provider: Any, seeds: list[str], direction: str) -> tuple[list[str], list[str]]:
    found, missing = [], []
    for s in seeds:
        try:
            provider(s, direction)
        except (KeyError, ValueError, IndexError):
            missing.append(s)
        else:
            found.append(s)
    return found, missing


def _top_partners(frame: pd.DataFrame, breadth: int | None, min_abs: float) -> pd.DataFrame:
    absw = frame["weight"].abs()
    frame = frame.assign(abs_weight=absw)[(absw >= min_abs) & (absw > 0)]
    if breadth is not None and len(frame) > breadth:
        frame = frame.nlargest(breadth, "abs_weight", keep="first")
    return frame


def _fetch(provider: Any, genes: list[str], direction: str, top: int | None) -> dict[str, pd.DataFrame]:
    """Ask the provider for the partners of many genes (batched when it offers ``batch``)."""
    if hasattr(provider, "batch"):
        answers = provider.batch(genes, direction, top=top)
    else:
        answers = {g: provider(g, direction) for g in genes}
    return {g: _as_partner_frame(answers[g], g) for g in genes}


def _candidates(provider: Any, frontier: list[str], direction: str, breadth: int | None,
                min_abs: float) -> list[tuple[str, str, dict[str, Any], str]]:
    """Top-``breadth`` candidate edges of each frontier gene: (source, target, attrs, partner)."""
    dirs = ("out", "in") if direction == "both" else (direction,)
    per_gene: dict[str, list[pd.DataFrame]] = {g: [] for g in frontier}
    for d in dirs:
        for g, frame in _fetch(provider, frontier, d, breadth).items():
            per_gene[g].append(frame.assign(_dir=d))
    out = []
    for g, frames in per_gene.items():
        frames = [f for f in frames if len(f)]
        if not frames:
            continue
        top = _top_partners(pd.concat(frames) if len(frames) > 1 else frames[0], breadth, min_abs)
        weights = top["weight"].to_numpy(dtype=float)
        extra = {k: top[k].to_numpy(dtype=float) for k in ("agreement", "sd") if k in top.columns}
        for i, (partner, d) in enumerate(zip(map(str, top.index), top["_dir"].to_numpy(), strict=True)):
            attrs = {"weight": float(weights[i])}
            attrs.update({k: float(v[i]) for k, v in extra.items() if np.isfinite(v[i])})
            src, tgt = (g, partner) if d == "out" else (partner, g)
            out.append((src, tgt, attrs, partner))
    return out


def _cap_new(cands: list, known: set[str], cap: int | None) -> set[str]:
    """New genes admitted at this level: all, or the ``cap`` best by their strongest edge."""
    best: dict[str, float] = {}
    for _, _, attrs, partner in cands:
        if partner not in known:
            best[partner] = max(best.get(partner, 0.0), abs(attrs["weight"]))
    if cap is None or len(best) <= cap:
        return set(best)
    return set(sorted(best, key=lambda g: (-best[g], g))[:cap])


def _check_expand_args(breadth: int | None, depth: int | None, direction: str, min_abs: float) -> None:
    if direction not in _DIRECTIONS:
        msg = f"direction must be one of {_DIRECTIONS}, got {direction!r}."
        raise ValueError(msg)
    if breadth is not None and breadth < 1:
        msg = f"breadth must be >= 1 (or None for unlimited), got {breadth}."
        raise ValueError(msg)
    if depth is not None and depth < 1:
        msg = f"depth must be >= 1 (or None for unlimited), got {depth}."
        raise ValueError(msg)
    if not min_abs >= 0:  # NaN too: it would keep no edge
        msg = f"min_abs must be a number >= 0, got {min_abs}."
        raise ValueError(msg)


def expand_from_seeds(
    neighbors: Any,
    seeds: Iterable[str],
    *,
    breadth: int | None = 32,
    depth: int | None = 4,
    direction: str = "out",
    min_abs: float = 0.0,
    level_caps: Sequence[int | None] | None = None,
    genes: Sequence[str] | None = None,
    max_nodes: int | None = None,
) -> nx.DiGraph:
    """Seed subgraph by breadth-limited BFS over the strongest Jacobian edges (the "32×4 BFS").

    Every frontier gene is expanded to its top-``breadth`` partners by |weight| (self excluded,
    |weight| >= ``min_abs``, zero weights never followed), for ``depth`` levels. The BFS starts from
    all seeds at once, which (without ``level_caps``) gives exactly the union of the per-seed BFS
    trees, de-duplicated; a gene's ``level`` is its distance to the nearest seed.

    Parameters
    ----------
    neighbors
        One of: a callable ``neighbors(gene, direction) -> Series | DataFrame`` returning partner
        gene -> signed weight (a DataFrame may add ``agreement`` and ``sd`` columns), where
        ``"out"`` gives the targets of ``gene`` (``J[:, gene]``) and ``"in"`` its regulators
        (``J[gene, :]``), e.g. :func:`lazynet_core.jacobian.column_provider`; if it has a
        ``batch(genes, direction, top=k) -> dict`` method, frontiers are fetched in batches;
        an ``nx.DiGraph`` with ``weight`` edge attributes; or a dense DataFrame ``J``
        (rows target, columns source).
    seeds
        Seed genes. Seeds absent from the gene universe are listed in
        ``G.graph["missing_seeds"]``; if all are absent a :class:`ScreenError` is raised.
    breadth
        Partners kept per expanded gene (``None`` = all).
    depth
        BFS levels (``None`` = until no new gene appears).
    direction
        ``"out"`` (regulator -> targets), ``"in"`` (target <- regulators) or ``"both"`` (the
        top-``breadth`` among the union of out- and in-partners).
    min_abs
        Edges with |weight| below this are never followed.
    level_caps
        Optional per-level maximum of *new* genes (entry ``k`` caps level ``k + 1``; ``None``
        entries or levels past the end are uncapped). Kept genes are those with the strongest
        edge into them; edges to dropped genes are dropped.
    genes
        Gene universe for a callable provider without a ``genes`` attribute.
    max_nodes
        Optional cap on the total number of genes (seeds included): once reached, expansion stops;
        the level that would overshoot admits only its strongest new genes (as ``level_caps``).

    Returns
    -------
    networkx.DiGraph
        Nodes carry ``is_seed`` and ``level`` (0 for seeds); edges ``weight``, ``sign``,
        ``abs_weight``, ``level`` (the BFS level at which the edge was reached, 1-based) and,
        when available, ``agreement`` and ``sd``. ``G.graph`` holds ``seeds``,
        ``missing_seeds``, ``breadth``, ``depth``, ``direction``, ``min_abs``, ``level_caps``,
        ``max_nodes`` and ``truncated`` (True when ``max_nodes`` left genes out).
    """
    _check_expand_args(breadth, depth, direction, min_abs)
    if max_nodes is not None and max_nodes < 1:
        msg = f"max_nodes must be >= 1 (or None for no cap), got {max_nodes}."
        raise ValueError(msg)
    provider = _provider(neighbors)
    universe = genes if genes is not None else getattr(provider, "genes", None)
    found, missing = _resolve_seeds(seeds, universe)
    if universe is None:  # no gene list: a seed the provider rejects counts as missing
        found, missing = _probe_seeds(provider, found, "in" if direction == "in" else "out")
    if not found:
        sample = list(universe)[:8] if universe is not None else []
        msg = (f"None of the seed genes {missing} is in the model's gene universe "
               f"({len(universe) if universe is not None else '?'} genes, e.g. {sample}). "
               "Choose seeds among the modelled genes or rebuild the gene universe with them.")
        raise ScreenError(msg)
    G = nx.DiGraph(seeds=found, missing_seeds=missing, breadth=breadth, depth=depth, direction=direction,
                   min_abs=float(min_abs), level_caps=None if level_caps is None else list(level_caps),
                   max_nodes=max_nodes, truncated=False)
    for s in found:
        G.add_node(s, is_seed=True, level=0)
    frontier, level = list(found), 0
    while frontier and (depth is None or level < depth):
        level += 1
        cands = _candidates(provider, frontier, direction, breadth, min_abs)
        cap = level_caps[level - 1] if level_caps is not None and level - 1 < len(level_caps) else None
        if max_nodes is not None:
            room = max(max_nodes - G.number_of_nodes(), 0)
            if len(_cap_new(cands, set(G.nodes), None)) > room:
                G.graph["truncated"] = True
            cap = room if cap is None else min(cap, room)
        admitted = _cap_new(cands, set(G.nodes), cap)
        for g in sorted(admitted):
            G.add_node(g, is_seed=False, level=level)
        for src, tgt, attrs, _ in cands:
            if src in G and tgt in G and not G.has_edge(src, tgt):
                w = attrs["weight"]
                G.add_edge(src, tgt, **attrs, sign=1 if w > 0 else -1, abs_weight=abs(w), level=level)
        frontier = sorted(admitted)
    return G


# ----------------------------------------------------------------------------------------------
# whole-matrix graphs and tables
# ----------------------------------------------------------------------------------------------
def consensus_graph(
    J_frame: Any,
    *,
    min_abs: float = 0.0,
    top: int | None = None,
    agreement: pd.DataFrame | None = None,
    sd: pd.DataFrame | None = None,
) -> nx.DiGraph:
    """Directed graph of every off-diagonal Jacobian entry with |J| >= ``min_abs``.

    Parameters
    ----------
    J_frame
        Consensus Jacobian frame (rows target, columns source) or a ``JacobianResult`` (its
        ``sign_agreement`` and ``sd`` are then attached to the edges).
    min_abs
        Minimum |J| of a kept edge (zeros are never edges).
    top
        Keep only the ``top`` strongest edges.
    agreement, sd
        Optional frames aligned with ``J_frame`` to attach per edge.
    """
    if hasattr(J_frame, "to_frame") and not isinstance(J_frame, pd.DataFrame | pd.Series):
        agreement = J_frame.to_frame("agreement") if agreement is None else agreement
        sd = J_frame.to_frame("sd") if sd is None else sd
        J_frame = J_frame.to_frame("mean")
    long = J_frame.rename_axis(index="target", columns="source").stack().rename("weight").reset_index()
    for name, extra in (("agreement", agreement), ("sd", sd)):
        if extra is not None:
            extra = extra.reindex(index=J_frame.index, columns=J_frame.columns)
            long[name] = extra.stack(future_stack=True).to_numpy()
    long = long[(long["source"] != long["target"]) & np.isfinite(long["weight"])]
    long = long[(long["weight"].abs() >= min_abs) & (long["weight"] != 0)]
    long = long.assign(abs_weight=long["weight"].abs()).sort_values("abs_weight", ascending=False)
    if top is not None:
        long = long.head(int(top))
    G = nx.DiGraph(min_abs=float(min_abs), top=top)
    G.add_nodes_from(map(str, J_frame.columns))
    G.add_nodes_from(map(str, J_frame.index))
    for row in long.itertuples(index=False):
        attrs = {"weight": float(row.weight), "sign": 1 if row.weight > 0 else -1,
                 "abs_weight": float(row.abs_weight)}
        for name in ("agreement", "sd"):
            if hasattr(row, name) and pd.notna(getattr(row, name)):
                attrs[name] = float(getattr(row, name))
        G.add_edge(str(row.source), str(row.target), **attrs)
    return G


def edges_frame(G: nx.DiGraph) -> pd.DataFrame:
    """Edge table ``source, target, weight, sign, abs_weight, agreement, sd, level``, strongest first.

    Missing ``agreement`` / ``sd`` / ``level`` are NaN / <NA>. When the edges carry the screen's
    evidence (:meth:`lazynet_core.evidence.EdgeEvidence.annotate`), its columns follow:
    ``evidence, source_delta, screen_delta, n_cells, sign_agrees, coexpr_r, coexpr_p, above_noise``.
    """
    evidence = any("evidence" in d for *_, d in G.edges(data=True))
    columns = EDGE_COLUMNS + (EVIDENCE_EDGE_COLUMNS if evidence else [])
    rows = []
    for u, v, d in G.edges(data=True):
        row = {"source": u, "target": v, "weight": d.get("weight", np.nan), "sign": d.get("sign"),
               "abs_weight": abs(d.get("weight", np.nan)), "agreement": d.get("agreement", np.nan),
               "sd": d.get("sd", np.nan), "level": d.get("level")}
        if evidence:
            row.update({k: d.get(k) for k in EVIDENCE_EDGE_COLUMNS})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    if evidence:
        for col in ("source_delta", "screen_delta", "coexpr_r", "coexpr_p"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        frame["n_cells"] = pd.array(frame["n_cells"].tolist(), dtype="Int64")
        for col in ("sign_agrees", "above_noise"):
            frame[col] = pd.array([None if x is None else bool(x) for x in frame[col]], dtype="boolean")
    frame["weight"] = frame["weight"].astype(float)
    frame["abs_weight"] = frame["abs_weight"].astype(float)
    frame["agreement"] = frame["agreement"].astype(float)
    frame["sd"] = frame["sd"].astype(float)
    frame["sign"] = np.sign(frame["weight"]).astype("Int64")
    frame["level"] = pd.array(frame["level"].tolist(), dtype="Int64")
    order = np.lexsort((frame["target"].to_numpy(str), frame["source"].to_numpy(str), -frame["abs_weight"]))
    return frame.iloc[order].reset_index(drop=True)


def subgraph_summary(G: nx.DiGraph) -> dict[str, Any]:
    """Sizes of a seed subgraph: nodes, edges, seeds found / missing, new genes per level."""
    levels: dict[int, int] = {}
    for _, lvl in G.nodes(data="level"):
        if lvl is not None:
            levels[int(lvl)] = levels.get(int(lvl), 0) + 1
    return {
        "n_nodes": G.number_of_nodes(),
        "n_edges": G.number_of_edges(),
        "n_seeds_found": sum(bool(s) for _, s in G.nodes(data="is_seed")),
        "missing_seeds": list(G.graph.get("missing_seeds", [])),
        "levels": dict(sorted(levels.items())),
    }
