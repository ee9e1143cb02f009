"""Evaluation of predicted perturbation effects, always next to baselines (method §4).

Every metric is computed per evaluated perturbation on *pseudobulk* states:

- observed post  = mean of that perturbation's cells of ``role`` (``pairs.pert_mean(p, role)``),
- predicted post = a method's prediction from the do-intervention input ``pairs.pre_state(p, role)``,
- delta          = post - control mean of the training controls (``pairs.control_mean("train")``).

Delta metrics exclude the perturbation's target gene(s): their level is an *input* of every method
(the do-intervention), so their own large change would dominate the correlation.

Metric names (``top_k = 20`` by default, the suffix follows ``top_k``):

``pearson_delta``
    Pearson r of predicted vs observed delta over all genes but the targets.
``pearson_delta_top20``
    The same over the 20 genes with the largest observed |delta|.
``mse_delta``
    Mean squared error of the deltas over all genes but the targets.
``direction_acc_top20``
    Fraction of the top-20 DE genes whose predicted delta has the observed sign.
``auroc_de``, ``auprc_de``
    Predicted |delta| as the score for recovering the top-20 DE genes (by observed |delta|)
    among all non-target genes (threshold-free ranking).
``pearson_post_pooled``
    Paper-style Pearson r of predicted vs observed *post states*, pooled over all genes and
    perturbations (one row per method, perturbation ``"ALL"``). Inflated by gene-to-gene mean
    differences: never report it without the delta metrics.

A constant prediction has no correlation: Pearson is NaN, never 0. The identity baseline
(post = pre) predicts a zero delta on every non-target gene, so its delta-Pearson is NaN; report
it as NaN. Baselines (:func:`baseline_predictions`): ``identity``, ``perturbed_mean``, ``pert_mean``
and ``linear``. ``pert_mean`` on the held-out-*cells* split is the noise ceiling (the best a method
can do from training cells of the same perturbation); on the held-out-*perturbations* split it is
undefined (NaN) because those perturbations have no training cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import average_precision_score, roc_auc_score

from lazynet_core.errors import ScreenError

BASELINES = ("identity", "perturbed_mean", "pert_mean", "linear")
# Standard deviation under which a vector counts as constant (log units: far below any real effect).
_CONSTANT_TOL = 1e-6


def delta_metrics(
    pred_delta: np.ndarray,
    obs_delta: np.ndarray,
    *,
    exclude: Sequence[int] | np.ndarray = (),
    top_k: int = 20,
) -> dict[str, float]:
    """Delta metrics of ONE perturbation (see the module docstring for definitions).

    Parameters
    ----------
    pred_delta, obs_delta
        Predicted and observed change vs the control mean, 1-D over genes.
    exclude
        Gene indices (the perturbation's targets) removed before every metric.
    top_k
        Number of DE genes (largest observed |delta|) for the top-k metrics and the ranking
        positives; capped at the number of remaining genes minus one.

    Returns
    -------
    dict
        ``pearson_delta``, ``pearson_delta_top{top_k}``, ``mse_delta``, ``direction_acc_top{top_k}``,
        ``auroc_de``, ``auprc_de``. All NaN if ``pred_delta`` holds a non-finite value (a baseline
        that cannot predict this perturbation). Pearson is NaN for a constant vector.
    """
    pred = np.asarray(pred_delta, dtype=np.float64).ravel()
    obs = np.asarray(obs_delta, dtype=np.float64).ravel()
    if pred.shape != obs.shape:
        msg = (f"pred_delta has {pred.size} genes but obs_delta has {obs.size}; "
               "pass vectors over the same genes.")
        raise ValueError(msg)
    if top_k < 1:
        msg = f"top_k must be >= 1, got {top_k}."
        raise ValueError(msg)
    names = (
        "pearson_delta",
        f"pearson_delta_top{top_k}",
        "mse_delta",
        f"direction_acc_top{top_k}",
        "auroc_de",
        "auprc_de",
    )
    keep = np.ones(pred.size, dtype=bool)
    keep[np.asarray(exclude, dtype=int)] = False
    pred, obs = pred[keep], obs[keep]
    if obs.size < 2 or not (np.isfinite(pred).all() and np.isfinite(obs).all()):
        return dict.fromkeys(names, np.nan)
    k = min(top_k, obs.size - 1)
    top = np.argsort(-np.abs(obs), kind="stable")[:k]
    is_de = np.zeros(obs.size, dtype=bool)
    is_de[top] = True
    values = (
        _pearson(pred, obs),
        _pearson(pred[top], obs[top]),
        float(np.mean((pred - obs) ** 2)),
        float(np.mean(np.sign(pred[top]) == np.sign(obs[top]))),
        float(roc_auc_score(is_de, np.abs(pred))),
        float(average_precision_score(is_de, np.abs(pred))),
    )
    return dict(zip(names, values, strict=True))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either vector is (numerically) constant."""
    if a.size < 2 or a.std() < _CONSTANT_TOL or b.std() < _CONSTANT_TOL:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _train_pert_means(pairs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-perturbation means of training cells, (P, G) with NaN rows, and cell counts (P,)."""
    cells = np.flatnonzero((pairs.cell_pert >= 0) & (pairs.cell_role == "train"))
    n_pert = len(pairs.perturbations)
    indicator = sparse.csr_matrix(
        (np.ones(cells.size), (pairs.cell_pert[cells], np.arange(cells.size))), shape=(n_pert, cells.size)
    )
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    sums = np.asarray((indicator @ pairs.X[cells]).todense(), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def _linear_deltas(
    deltas: np.ndarray,
    train_targets: np.ndarray,
    query_targets: Sequence[np.ndarray],
    *,
    n_pcs: int,
    ridge: float,
) -> np.ndarray:
    """Ahlmann-Eltze et al. (2025) linear model fitted on single-target training deltas.

    ``deltas`` is Y^T (train perturbations × genes). As in the authors' model, the row means
    ``b`` of Y (the mean training delta) are an intercept and the rest is low rank: G = the top
    ``n_pcs`` PC scores of the centred Y (genes × k, U_k S_k), perturbation embedding = G's row at
    the target, W = argmin ||Y - b - G W P^T||^2 + ridge ||W||^2, solved exactly through
    vec(W) = (P^T P ⊗ G^T G + ridge I)^-1 vec(G^T (Y - b) P). A combination is additive: the sum of
    its single predictions. Returns (n_query, genes) deltas.
    """
    y = deltas.T
    b = y.mean(axis=1, keepdims=True)
    yc = y - b
    u, s, _ = np.linalg.svd(yc, full_matrices=False)
    k = min(n_pcs, s.size)
    g = u[:, :k] * s[:k]
    p = g[train_targets]
    # Kronecker identity vec(A W B) = (B^T ⊗ A) vec(W) with column-major vec.
    lhs = np.kron(p.T @ p, g.T @ g) + ridge * np.eye(k * k)
    w = np.linalg.solve(lhs, (g.T @ yc @ p).ravel(order="F")).reshape((k, k), order="F")
    singles = g @ w  # (genes × k): column space of the low-rank part
    out = [len(t) * b[:, 0] + singles @ g[np.asarray(t, dtype=int)].sum(axis=0) for t in query_targets]
    return np.stack(out)


def baseline_predictions(
    pairs: Any, *, role: str = "test", n_pcs: int = 10, ridge: float = 0.1
) -> dict[str, np.ndarray]:
    """Predicted post states of the baselines for ``pairs.evaluation_perturbations(role)``.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs`.
    role
        Cell role whose perturbations are evaluated (``"test"`` or ``"val"``; ``"train"`` gives fit).
    n_pcs, ridge
        Dimension and ridge penalty of the linear baseline (Ahlmann-Eltze et al.: 10 and 0.1).

    Returns
    -------
    dict
        Method -> (n_eval, G) float64 post states, rows in ``evaluation_perturbations(role)`` order:

        ``identity``
            post = pre (the do-intervention input).
        ``perturbed_mean``
            mean of all perturbed training cells (cell-weighted).
        ``pert_mean``
            that perturbation's training-cell mean; NaN rows when it has no training cells (every
            row on the held-out-perturbations split). On the cells split: the noise ceiling.
        ``linear``
            control mean + b + G W P_p^T fitted on the single-target training perturbations' deltas
            vs the control mean (b = mean training delta, the authors' intercept). Held-out targets use
            their gene's row of G; combinations add the single predictions. NaN rows when there is
            no single-target training perturbation.

        Every prediction has its target gene(s) set to the pre-state value, so methods agree there.
    """
    evals = np.asarray(pairs.evaluation_perturbations(role), dtype=int)
    if evals.size == 0:
        msg = (f"No perturbation has cells of role {role!r}; "
               "choose a role among 'train', 'val', 'test' with cells.")
        raise ScreenError(msg)
    control = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    pre = np.stack([np.asarray(pairs.pre_state(p, role), dtype=np.float64) for p in evals])
    means, counts = _train_pert_means(pairs)
    perturbed = np.nan if counts.sum() == 0 else counts @ np.nan_to_num(means) / counts.sum()
    singles = np.flatnonzero((counts > 0) & np.array([len(t) == 1 for t in pairs.pert_targets]))
    if singles.size:
        train_targets = np.array([pairs.pert_targets[p][0] for p in singles], dtype=int)
        linear = control + _linear_deltas(
            means[singles] - control,
            train_targets,
            [pairs.pert_targets[p] for p in evals],
            n_pcs=n_pcs,
            ridge=ridge,
        )
    else:
        linear = np.full_like(pre, np.nan)
    preds = {
        "identity": pre.copy(),
        "perturbed_mean": np.broadcast_to(perturbed, pre.shape).copy(),
        "pert_mean": means[evals].copy(),
        "linear": linear,
    }
    for pred in preds.values():
        _clamp_targets(pred, pre, [pairs.pert_targets[p] for p in evals])
    return preds


def _clamp_targets(pred: np.ndarray, pre: np.ndarray, targets: Sequence[np.ndarray]) -> None:
    """Set each row's target genes to the pre-state value, in place (skipping NaN rows)."""
    for row, t in enumerate(targets):
        if np.isfinite(pred[row]).all():
            pred[row, t] = pre[row, t]


def evaluate(
    pairs: Any,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    role: str = "test",
    top_k: int = 20,
    methods: Sequence[str] | None = None,
    name: str = "lazynet",
) -> pd.DataFrame:
    """Evaluate a predictor and the baselines on the perturbations with cells of ``role``.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs`.
    predict
        Maps pre states (n, G) float32 to predicted post states (n, G), e.g. ``Ensemble.predict``.
        ``None`` evaluates the baselines only.
    role
        Cell role evaluated; observed post = ``pairs.pert_mean(p, role)``.
    top_k
        DE genes for the top-k metrics (see :func:`delta_metrics`).
    methods
        Baselines to include (default all of ``BASELINES``; ``()`` for none).
    name
        Method label of ``predict``.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``split, role, method, perturbation, metric, value``; one row per method ×
        perturbation × delta metric, plus one ``pearson_post_pooled`` row (perturbation ``"ALL"``)
        per method. Warning: ``pearson_post_pooled`` (the paper-style genome-wide r) is inflated by
        gene-to-gene differences in mean expression; a method that predicts the control mean already
        scores high. Read the delta metrics. Targets of the predictor's output are set to the pre
        state (the do-intervention), as for the baselines.
    """
    methods = BASELINES if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(BASELINES))
    if unknown:
        msg = f"Unknown baseline(s) {unknown}; choose among {list(BASELINES)}."
        raise ValueError(msg)
    evals = np.asarray(pairs.evaluation_perturbations(role), dtype=int)
    preds = {m: v for m, v in baseline_predictions(pairs, role=role).items() if m in methods}
    targets = [np.asarray(pairs.pert_targets[p], dtype=int) for p in evals]
    if predict is not None:
        pre = np.stack([np.asarray(pairs.pre_state(p, role), dtype=np.float32) for p in evals])
        out = np.asarray(predict(pre), dtype=np.float64).reshape(pre.shape)
        _clamp_targets(out, pre.astype(np.float64), targets)
        preds = {name: out, **preds}
    control = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    obs = np.stack([np.asarray(pairs.pert_mean(p, role), dtype=np.float64) for p in evals])
    labels = np.asarray(pairs.perturbations)[evals]
    # "cells": the perturbation was trained on (its held-out cells are scored); "perturbations": it
    # never had a training cell (held-out targets, and the validation perturbations of that split)
    trained = np.isin(evals, np.asarray(pairs.cell_pert)[np.asarray(pairs.cell_role) == "train"])
    split = np.where(trained, "cells", "perturbations")
    records = []
    for method, pred in preds.items():
        for row, label in enumerate(labels):
            scores = delta_metrics(pred[row] - control, obs[row] - control, exclude=targets[row], top_k=top_k)
            records += [(split[row], method, label, metric, value) for metric, value in scores.items()]
        for name_split in np.unique(split):
            rows = (split == name_split) & np.isfinite(pred).all(axis=1)
            records.append(
                (
                    name_split,
                    method,
                    "ALL",
                    "pearson_post_pooled",
                    _pearson(pred[rows].ravel(), obs[rows].ravel()),
                )
            )
    frame = pd.DataFrame.from_records(records, columns=["split", "method", "perturbation", "metric", "value"])
    frame.insert(1, "role", role)
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of each metric per split × role × method.

    Pools the rows of each group: perturbations, and seeds when ``frame`` has a ``seed`` column
    (concatenated :func:`evaluate` frames). NaN values (undefined metrics) are left out of the
    statistics; ``n`` counts the finite values, so an undefined metric shows ``mean`` NaN and
    ``n`` 0, never 0.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``split, role, method, metric, mean, sd, n`` (plus ``n_seeds`` with a ``seed``
        column), methods in order of first appearance.
    """
    keys = [c for c in ("split", "role", "method", "metric") if c in frame.columns]
    grouped = frame.groupby(keys, sort=False, dropna=False)
    out = grouped["value"].agg(mean="mean", sd="std", n="count").reset_index()
    if "seed" in frame.columns:
        out["n_seeds"] = grouped["seed"].nunique().to_numpy()
    return out


def summary_table(frame: pd.DataFrame, metric: str = "pearson_delta", *, digits: int = 2) -> pd.DataFrame:
    """README table of one metric: methods as rows, splits as columns, ``"0.41 ± 0.05"`` strings.

    ``frame`` is an :func:`evaluate` frame (or several concatenated). Undefined values read ``"NaN"``.
    """
    summary = summarize(frame)
    summary = summary[summary["metric"] == metric]
    if summary.empty:
        msg = f"Metric {metric!r} is not in the frame; available: {sorted(frame['metric'].unique())}."
        raise ValueError(msg)

    def cell(row: pd.Series) -> str:
        if not np.isfinite(row["mean"]):
            return "NaN"
        if not np.isfinite(row["sd"]):
            return f"{row['mean']:.{digits}f}"
        return f"{row['mean']:.{digits}f} ± {row['sd']:.{digits}f}"

    summary = summary.assign(cell=summary.apply(cell, axis=1))
    table = summary.pivot_table(index="method", columns="split", values="cell", aggfunc="first", sort=False)
    table.columns.name = None
    return table
