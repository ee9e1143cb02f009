"""Module-level evaluation of networks (method §5): recall, reference edges, co-expression, planted truth.

Score frames follow the Jacobian convention: rows = targets, columns = sources (regulators);
``scores.loc[t, s]`` scores the edge ``s -> t``. Truth edges are a DataFrame with ``source``,
``target`` and optionally ``weight`` (e.g. ``adata.uns["planted_network"]``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.metrics import average_precision_score, roc_auc_score

from lazynet_core import modules as _modules

PAIR_SETS = ("perturbed", "unperturbed", "all")


# ----------------------------------------------------------------------------------------------
# module recall
# ----------------------------------------------------------------------------------------------
def module_recall(G_or_genes: nx.Graph | Iterable[str], module_genes: str | Iterable[str]) -> dict[str, Any]:
    """Fraction of a module's genes present in a subgraph (the paper: 15 of 27 regulators).

    Parameters
    ----------
    G_or_genes
        A graph (its nodes are used) or an iterable of gene names.
    module_genes
        Gene names, or a module name understood by :func:`lazynet_core.modules.module_genes`.

    Returns
    -------
    dict
        ``recall`` (NaN for an empty module), ``found`` and ``missing`` (lists, module order),
        ``n`` (module size) and ``n_found``.
    """
    nodes = set(map(str, G_or_genes.nodes if isinstance(G_or_genes, nx.Graph) else G_or_genes))
    if isinstance(module_genes, str):
        module_genes = _modules.module_genes(module_genes)
    genes = list(dict.fromkeys(map(str, module_genes)))
    found = [g for g in genes if g in nodes]
    missing = [g for g in genes if g not in nodes]
    recall = len(found) / len(genes) if genes else float("nan")
    return {"recall": recall, "found": found, "missing": missing, "n": len(genes), "n_found": len(found)}


# ----------------------------------------------------------------------------------------------
# reference edge lists (STRING-style)
# ----------------------------------------------------------------------------------------------
def read_reference_edges(source: str | PathLike | io.IOBase | pd.DataFrame, *,
                         min_score: float | None = None) -> pd.DataFrame:
    """Read a reference edge list into a ``source, target[, combined_score]`` frame.

    Format: a tab-separated text file with a header row naming either ``source`` and ``target``
    or STRING's ``#node1`` and ``node2`` (``node1`` also accepted), plus optionally
    ``combined_score`` (STRING's 0–1 or 0–1000 confidence). Other columns are ignored. Gene
    names must be the symbols used by the screen. Rows below ``min_score`` are dropped.
    """
    frame = source.copy() if isinstance(source, pd.DataFrame) else pd.read_csv(source, sep="\t", dtype=str)
    frame = frame.rename(columns={"#node1": "source", "node1": "source", "node2": "target"})
    if not {"source", "target"} <= set(frame.columns):
        msg = (f"Reference edge list needs columns 'source'/'target' or STRING's '#node1'/'node2' "
               f"(tab-separated with a header); found {list(frame.columns)[:10]}.")
        raise ValueError(msg)
    frame["source"] = frame["source"].astype(str)
    frame["target"] = frame["target"].astype(str)
    if "combined_score" in frame.columns:
        frame["combined_score"] = pd.to_numeric(frame["combined_score"], errors="coerce")
        if min_score is not None:
            frame = frame[frame["combined_score"] >= min_score]
    elif min_score is not None:
        msg = "min_score was given but the reference edge list has no 'combined_score' column."
        raise ValueError(msg)
    cols = ["source", "target"] + (["combined_score"] if "combined_score" in frame.columns else [])
    return frame[cols].reset_index(drop=True)


def _pair_keys(sources: Iterable[str], targets: Iterable[str], directed: bool) -> set[tuple[str, str]]:
    keys = set()
    for s, t in zip(sources, targets, strict=True):
        if s != t:
            keys.add((s, t) if directed or s < t else (t, s))
    return keys


def reference_edges_enrichment(
    G: nx.Graph | pd.DataFrame,
    reference: str | PathLike | io.IOBase | pd.DataFrame,
    *,
    universe_genes: Sequence[str],
    directed: bool = False,
    min_score: float | None = None,
) -> dict[str, Any]:
    """Hypergeometric test of subgraph edges against a reference edge list (e.g. a STRING export).

    The population is every pair of distinct genes of ``universe_genes`` (unordered when
    ``directed=False``, the default, since STRING is undirected; ordered otherwise); the successes
    are the reference edges inside the universe; the draws are the subgraph's edges (within the
    universe, de-duplicated); the p-value is ``P(overlap >= observed)``.

    Parameters
    ----------
    G
        Subgraph (edges ``s -> t``) or an edge frame with ``source``/``target`` columns.
    reference
        Path or buffer of a tab-separated file with a header row: columns ``source``/``target`` or
        STRING's ``#node1``/``node2``, optional ``combined_score``; or such a DataFrame.
    universe_genes
        The modelled genes (the set the subgraph could have drawn from).
    directed
        Match ordered pairs instead of unordered ones.
    min_score
        Keep reference rows with ``combined_score >= min_score``.

    Returns
    -------
    dict
        ``p_value``, ``overlap``, ``expected``, ``fold_enrichment``, ``n_edges``,
        ``n_reference`` (reference edges inside the universe), ``n_possible``, ``directed``.
    """
    ref = read_reference_edges(reference, min_score=min_score)
    universe = set(map(str, universe_genes))
    if isinstance(G, nx.Graph):
        src, tgt = zip(*G.edges, strict=True) if G.number_of_edges() else ((), ())
    else:
        src, tgt = G["source"], G["target"]
    sub = {k for k in _pair_keys(map(str, src), map(str, tgt), directed)
           if k[0] in universe and k[1] in universe}
    inside = ref["source"].isin(universe) & ref["target"].isin(universe)
    refk = _pair_keys(ref.loc[inside, "source"], ref.loc[inside, "target"], directed)
    n = len(universe)
    M = n * (n - 1) if directed else n * (n - 1) // 2
    K, N, k = len(refk), len(sub), len(sub & refk)
    expected = N * K / M if M else float("nan")
    p = float(stats.hypergeom.sf(k - 1, M, K, N)) if M else float("nan")
    return {"p_value": p, "overlap": k, "expected": expected,
            "fold_enrichment": k / expected if expected else float("nan"),
            "n_edges": N, "n_reference": K, "n_possible": M, "directed": directed}


# ----------------------------------------------------------------------------------------------
# co-expression support
# ----------------------------------------------------------------------------------------------
def _pair_correlations(X: Any, a: np.ndarray, b: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Pearson r over cells for gene pairs (a[i], b[i]) of a cells × genes matrix (sparse-friendly)."""
    needed = np.unique(np.concatenate([a, b]))
    pos = np.searchsorted(needed, a), np.searchsorted(needed, b)
    if sparse.issparse(X):
        Xs = sparse.csc_matrix(X[:, needed], dtype=np.float64)
        mean = np.asarray(Xs.mean(axis=0)).ravel()
        sq = np.asarray(Xs.multiply(Xs).mean(axis=0)).ravel()
    else:
        Xs = np.asarray(X, dtype=np.float64)[:, needed]
        mean, sq = Xs.mean(axis=0), (Xs**2).mean(axis=0)
    sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
    r = np.empty(len(a))
    for start in range(0, len(a), chunk):
        ia, ib = pos[0][start:start + chunk], pos[1][start:start + chunk]
        if sparse.issparse(Xs):
            prod = np.asarray(Xs[:, ia].multiply(Xs[:, ib]).mean(axis=0)).ravel()
        else:
            prod = (Xs[:, ia] * Xs[:, ib]).mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[start:start + chunk] = (prod - mean[ia] * mean[ib]) / (sd[ia] * sd[ib])
    return r


def coexpression_support(
    G: nx.Graph | pd.DataFrame,
    X_control: Any,
    genes: Sequence[str],
    *,
    threshold: float = 0.2,
    n_random: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fraction of edges whose genes are co-expressed among control cells, versus random pairs.

    The paper reports 26.6 % of subgraph edges with |r| >= 0.2 versus 5 % of random gene pairs.
    Correlations are computed only for the pairs needed, chunked, without densifying the matrix.

    Parameters
    ----------
    G
        Subgraph or edge frame (``source``, ``target``).
    X_control
        Control cells × genes (scipy sparse or dense), log-normalised.
    genes
        Gene names of the columns of ``X_control``.
    threshold
        |Pearson r| at or above which a pair counts as co-expressed.
    n_random
        Random pairs of distinct genes drawn as the background.
    seed
        Seed of the random pairs.

    Returns
    -------
    dict
        ``edge_fraction``, ``random_fraction``, ``fold``, ``p_value`` (Fisher's exact test, one
        sided, edges > random), ``n_edges`` (scored), ``n_skipped`` (edges with a gene outside
        ``genes``), ``n_random``, ``threshold``, ``edge_r`` (array of the edges' r).
    """
    genes = [str(g) for g in genes]
    if X_control.shape[1] != len(genes):
        msg = f"X_control has {X_control.shape[1]} columns but {len(genes)} gene names were given."
        raise ValueError(msg)
    lookup = {g: i for i, g in enumerate(genes)}
    edges = list(G.edges) if isinstance(G, nx.Graph) else list(zip(G["source"], G["target"], strict=True))
    kept = [(lookup[str(s)], lookup[str(t)]) for s, t in edges if str(s) in lookup and str(t) in lookup]
    rng = np.random.default_rng(seed)
    ra = rng.integers(0, len(genes), size=n_random)
    rb = (ra + rng.integers(1, len(genes), size=n_random)) % len(genes)
    ea = np.asarray([k[0] for k in kept], dtype=int)
    eb = np.asarray([k[1] for k in kept], dtype=int)
    r = _pair_correlations(X_control, np.concatenate([ea, ra]), np.concatenate([eb, rb]))
    edge_r, rand_r = r[: len(ea)], r[len(ea):]
    hits_e = int(np.sum(np.abs(np.nan_to_num(edge_r)) >= threshold))
    hits_r = int(np.sum(np.abs(np.nan_to_num(rand_r)) >= threshold))
    fe = hits_e / len(ea) if len(ea) else float("nan")
    fr = hits_r / n_random if n_random else float("nan")
    table = [[hits_e, len(ea) - hits_e], [hits_r, n_random - hits_r]]
    p = float(stats.fisher_exact(table, alternative="greater")[1]) if len(ea) and n_random else float("nan")
    return {"edge_fraction": fe, "random_fraction": fr, "fold": fe / fr if fr else float("nan"),
            "p_value": p, "n_edges": len(ea), "n_skipped": len(edges) - len(ea), "n_random": n_random,
            "threshold": threshold, "edge_r": edge_r}


# ----------------------------------------------------------------------------------------------
# planted-network recovery and baseline scorers
# ----------------------------------------------------------------------------------------------
def _score_frame(scores: Any, genes: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(scores, pd.DataFrame):
        return scores
    if hasattr(scores, "to_frame"):
        return scores.to_frame("mean")
    if genes is None:
        msg = "scores given as an array need genes= (names of its rows and columns)."
        raise ValueError(msg)
    return pd.DataFrame(np.asarray(scores), index=list(genes), columns=list(genes))


def _truth_frame(truth: Any) -> pd.DataFrame:
    if isinstance(truth, Mapping):
        truth = pd.DataFrame({k: np.asarray(v) for k, v in truth.items()})
    frame = truth
    if not {"source", "target"} <= set(frame.columns):
        msg = f"truth edges need 'source' and 'target' columns; got {list(frame.columns)}."
        raise ValueError(msg)
    if "weight" in frame.columns:
        frame = frame[np.asarray(frame["weight"], dtype=float) != 0]
    return frame


def planted_recovery(
    scores: Any,
    truth_edges: Any,
    *,
    genes: Sequence[str] | None = None,
    pair_set: str = "all",
    perturbed_regulators: Iterable[str] = (),
    absolute: bool = True,
    missing: str = "nan",
) -> dict[str, Any]:
    """AUROC / AUPRC of edge scores against a planted network, over ordered gene pairs.

    Parameters
    ----------
    scores
        Frame (rows target, columns source), a ``JacobianResult`` or a square array with ``genes``.
    truth_edges
        DataFrame (or dict of arrays, e.g. ``adata.uns["planted_network"]``) with ``source``,
        ``target`` and optional ``weight`` (zero-weight rows ignored).
    genes
        Row / column names when ``scores`` is an array.
    pair_set
        ``"all"`` ordered pairs (diagonal excluded), ``"perturbed"`` (regulator = source in
        ``perturbed_regulators``) or ``"unperturbed"`` (source not perturbed).
    perturbed_regulators
        Genes perturbed (alone) in the screen.
    absolute
        Rank by |score| (the default; Jacobians are signed).
    missing
        What to do with NaN scores in the pair set: ``"nan"`` (the metric is NaN, reported with
        its coverage: a method that cannot score every pair is not compared on that set),
        ``"drop"`` (score only the covered pairs) or ``"min"`` (rank them last).

    Returns
    -------
    dict
        ``auroc``, ``auprc``, ``n_pos``, ``n_pairs``, ``prevalence``, ``coverage``, ``pair_set``.
    """
    if pair_set not in PAIR_SETS:
        msg = f"pair_set must be one of {PAIR_SETS}, got {pair_set!r}."
        raise ValueError(msg)
    if missing not in ("nan", "drop", "min"):
        msg = f"missing must be 'nan', 'drop' or 'min', got {missing!r}."
        raise ValueError(msg)
    frame = _score_frame(scores, genes)
    tgt, src = np.asarray(frame.index, dtype=str), np.asarray(frame.columns, dtype=str)
    S = frame.to_numpy(dtype=float)
    S = np.abs(S) if absolute else S
    truth = _truth_frame(truth_edges)
    ti, si = pd.Index(tgt).get_indexer(truth["target"].astype(str)), pd.Index(src).get_indexer(
        truth["source"].astype(str))
    Y = np.zeros(S.shape, dtype=bool)
    ok = (ti >= 0) & (si >= 0)
    Y[ti[ok], si[ok]] = True
    mask = tgt[:, None] != src[None, :]
    pert = np.isin(src, np.asarray(list(map(str, perturbed_regulators)), dtype=str))
    if pair_set == "perturbed":
        mask &= pert[None, :]
    elif pair_set == "unperturbed":
        mask &= ~pert[None, :]
    y, s = Y[mask], S[mask]
    n_total = int(mask.sum())
    finite = np.isfinite(s)
    coverage = float(finite.mean()) if n_total else float("nan")
    if missing == "drop":
        y, s = y[finite], s[finite]
    elif missing == "min" and (~finite).any():
        s = np.where(finite, s, (np.nanmin(s) if finite.any() else 0.0) - 1.0)
    out = {"pair_set": pair_set, "n_pos": int(y.sum()), "n_pairs": int(len(y)), "coverage": coverage,
           "prevalence": float(y.mean()) if len(y) else float("nan"),
           "auroc": float("nan"), "auprc": float("nan")}
    if len(y) and 0 < y.sum() < len(y) and np.isfinite(s).all():
        out["auroc"] = float(roc_auc_score(y, s))
        out["auprc"] = float(average_precision_score(y, s))
    return out


def _square(values: np.ndarray, genes: Sequence[str]) -> pd.DataFrame:
    names = pd.Index([str(g) for g in genes])
    frame = pd.DataFrame(values, index=names.rename("target"), columns=names.rename("source"))
    np.fill_diagonal(frame.values, np.nan)
    return frame


def fold_change_scores(control_mean: np.ndarray, pert_means: Mapping[str, np.ndarray],
                       genes: Sequence[str]) -> pd.DataFrame:
    """Fold-change baseline: ``|mean(perturbed by s) - mean(control)|`` for edge ``s -> t``.

    Parameters
    ----------
    control_mean
        (G,) mean log expression of control cells.
    pert_means
        Source gene -> (G,) mean log expression of the cells where that gene alone was perturbed.
        Keys that are not genes (combinations such as ``"A+B"``) are ignored.
    genes
        Gene names of the vectors.

    Returns
    -------
    pandas.DataFrame
        Targets × sources; columns of unperturbed sources (and the diagonal) are NaN.
    """
    control = np.asarray(control_mean, dtype=float)
    values = np.full((len(genes), len(genes)), np.nan)
    lookup = {str(g): i for i, g in enumerate(genes)}
    for source, mean in pert_means.items():
        if str(source) in lookup:
            values[:, lookup[str(source)]] = np.abs(np.asarray(mean, dtype=float) - control)
    return _square(values, genes)


def correlation_scores(X_control: Any, genes: Sequence[str]) -> pd.DataFrame:
    """|Pearson r| between genes across control cells (symmetric; dense, for <= a few thousand genes).

    A gene that is constant across the control cells has no correlation; it scores 0 (not NaN,
    which would make every AUROC over a pair set containing it undefined).
    """
    if X_control.shape[1] != len(genes):
        msg = f"X_control has {X_control.shape[1]} columns but {len(genes)} gene names were given."
        raise ValueError(msg)
    n = X_control.shape[0]
    if sparse.issparse(X_control):
        X = sparse.csr_matrix(X_control, dtype=np.float64)
        mean = np.asarray(X.mean(axis=0)).ravel()
        gram = (X.T @ X).toarray()
    else:
        X = np.asarray(X_control, dtype=np.float64)
        mean, gram = X.mean(axis=0), X.T @ X
    cov = gram / n - np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    return _square(np.nan_to_num(np.abs(r), nan=0.0, posinf=0.0), genes)


def regulator_expression_scores(control_mean: np.ndarray, genes: Sequence[str]) -> pd.DataFrame:
    """Trivial baseline: every edge ``s -> t`` scored by the regulator's mean control expression."""
    mean = np.asarray(control_mean, dtype=float)
    return _square(np.tile(mean, (len(genes), 1)), genes)


def recovery_table(
    score_frames: Mapping[str, Any],
    truth: Any,
    perturbed_regulators: Iterable[str],
    *,
    pair_sets: Sequence[str] = PAIR_SETS,
    missing: str = "nan",
) -> pd.DataFrame:
    """AUROC / AUPRC of several scorers on several pair sets, one row per (method, pair set).

    Columns: ``method, pair_set, auroc, auprc, n_pos, n_pairs, prevalence, coverage``. A method
    that leaves pairs of a set unscored (the fold-change baseline off the perturbed regulators)
    gets NaN there under the default ``missing="nan"`` (see :func:`planted_recovery`).
    """
    perturbed = set(map(str, perturbed_regulators))
    rows = []
    for name, scores in score_frames.items():
        for ps in pair_sets:
            res = planted_recovery(scores, truth, pair_set=ps, perturbed_regulators=perturbed,
                                   missing=missing)
            rows.append({"method": name, **res})
    cols = ["method", "pair_set", "auroc", "auprc", "n_pos", "n_pairs", "prevalence", "coverage"]
    return pd.DataFrame(rows, columns=cols)
