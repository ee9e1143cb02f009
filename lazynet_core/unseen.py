"""What a screen supports for targets it never perturbed: control covariance, and two ways to add the
trained perturbations to it (issue 11).

Control covariance (``metrics.baseline_predictions``' ``control_covariance``) predicts an unseen
target u's effect from the control cells alone: Δᵢ = cov(i, u) / var(u) · Δᵤ. It is the bar LazyNet
has not reached. The estimators here ask whether *anything* linear built from the same training
cells beats it, so that a model's failure to beat it can be read against what the data allow:

``ccov_shared``
    control covariance plus the component every training perturbation shares (PM-ex), weighted by a
    least-squares fit on the training perturbations, each predicted without itself (cross-fitted).
``ccov_adjusted``
    the regression of every gene on u *adjusting for u's measured ancestors*: trained targets whose
    own knock-down moved u (|Welch z| > ``z_ancestor``). Conditioning on u alone credits u with
    what its upstream regulators do (ancestors co-vary with u but do not follow it under a
    do-intervention); the backdoor adjustment removes that, as IDA does (Maathuis et al. 2009).
``ccov_ancestors``
    control covariance plus what u's measured ancestors' knock-downs did *through* u: each ancestor's
    training delta rescaled to u's change (Δ_s · Δu / Δ_s[u]), averaged over ancestors, given control
    covariance's norm and added to it (two directions, no weight fitted); the ancestors themselves
    and u's level as in ``ccov_adjusted``. Without ancestors it is control covariance. An ancestor's
    response also holds its other children's effects (u's siblings), which this credits to u.
    The average weights an ancestor by 1 / |Δ_s[u]|, so an ancestor that barely moved u dominates.
``ccov_ancestors_ls``
    the same with the ancestors combined by least squares, the per-gene slope of the ancestors'
    deltas on their change of u (Δu · Σ_s Δ_s[u] Δ_s / Σ_s Δ_s[u]²): an ancestor counts by its
    Δ_s[u]², so those that moved u most dominate. With one ancestor it equals ``ccov_ancestors``.
All of them read only training cells (training controls and training perturbation means), never the
held-out perturbation's cells or the reference controls, so they are scored like every baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ScreenError
from .metrics import _control_covariance_deltas, _train_pert_means, pm_ex_delta

ESTIMATORS = ("ccov_shared", "ccov_adjusted", "ccov_ancestors", "ccov_ancestors_ls")


def _trained_singles(pairs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trained single-target perturbations, their target genes and training deltas (vs training controls)."""
    means, counts = _train_pert_means(pairs)
    trained = np.array([q for q in np.flatnonzero(counts > 0) if len(pairs.pert_targets[q]) == 1], dtype=int)
    targets = np.array([int(pairs.pert_targets[q][0]) for q in trained], dtype=int)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    deltas = means[trained] - base if trained.size else np.zeros((0, pairs.n_genes))
    return trained, targets, deltas


def _control_matrix(pairs: Any) -> np.ndarray:
    """Training control cells, dense and centred (cells × genes)."""
    x = np.asarray(pairs.X[pairs.cells(-1, "train")].todense(), dtype=np.float64)
    return x - x.mean(axis=0)


def _welch_z(pairs: Any, trained: np.ndarray, xc: np.ndarray) -> np.ndarray:
    """(trained perturbations × genes) Welch z of each training delta against the training controls."""
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    var_c = xc.var(axis=0, ddof=1) / max(len(xc), 2)
    z = np.zeros((len(trained), pairs.n_genes))
    for row, q in enumerate(trained):
        x = np.asarray(pairs.X[pairs.cells(int(q), "train")].todense(), dtype=np.float64)
        var_q = x.var(axis=0, ddof=1) / len(x) if len(x) > 1 else np.zeros(pairs.n_genes)
        z[row] = (x.mean(axis=0) - base) / np.sqrt(var_q + var_c + 1e-12)
    return z


def _pm_ex(deltas: np.ndarray, targets: np.ndarray, leave_out: int | None = None) -> np.ndarray:
    """PM-ex's change from the training deltas, optionally without row ``leave_out`` (cross-fitting)."""
    rows = np.arange(len(deltas)) if leave_out is None else np.delete(np.arange(len(deltas)), leave_out)
    own = np.zeros((len(rows), deltas.shape[1]), dtype=bool)
    own[np.arange(len(rows)), targets[rows]] = True
    return pm_ex_delta(deltas[rows], own)


def _fit_weights(
    columns: list[list[np.ndarray]], ys: list[np.ndarray], keeps: list[np.ndarray]
) -> np.ndarray:
    """Least-squares weights (plus an intercept) of the columns, pooled over training perturbations."""
    design = np.vstack([np.column_stack([*(c[k] for c in cols), np.ones(k.sum())])
                        for cols, k in zip(columns, keeps, strict=True)])
    target = np.concatenate([y[k] for y, k in zip(ys, keeps, strict=True)])
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    return weights[:-1]


def unseen_target_estimates(
    pairs: Any,
    *,
    role: str = "test",
    perturbations: Sequence[int] | None = None,
    z_ancestor: float = 3.0,
) -> dict[str, np.ndarray]:
    """Predicted post states of the estimators of this module for single-target perturbations.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs` with at least two trained single-target perturbations.
    role
        Cell role whose target levels define the do-intervention (``pairs.pre_state(p, role)``).
    perturbations
        Perturbation indices to predict (default: every perturbation with cells of ``role``).
        Combinations get NaN rows.
    z_ancestor
        |Welch z| above which a trained target's knock-down is taken to move u (an ancestor of u).

    Returns
    -------
    dict
        ``ccov_shared``, ``ccov_adjusted``, ``ccov_ancestors``, ``ccov_ancestors_ls`` -> (n, G) float64
        post states, the targets set to their pre-state level (as every baseline of
        ``metrics.baseline_predictions``).
    """
    from .streaming import StreamedPairs

    if isinstance(pairs, StreamedPairs):
        msg = ("unseen_target_estimates needs the perturbed cells' rows (for their variances), which pairs "
               "streamed from disk do not hold; build the pairs with make_pairs on a screen in memory.")
        raise ScreenError(msg)
    evals = (np.asarray(pairs.evaluation_perturbations(role), dtype=int) if perturbations is None
             else np.asarray(perturbations, dtype=int))
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    trained, targets, deltas = _trained_singles(pairs)
    out = {name: np.full((len(evals), pairs.n_genes), np.nan) for name in ESTIMATORS}
    if len(trained) < 2:
        return out
    xc = _control_matrix(pairs)
    z = _welch_z(pairs, trained, xc)

    # cross-fitted weights: every training perturbation predicted from the others
    own_change = deltas[np.arange(len(trained)), targets]
    own_rows = np.zeros((len(trained), pairs.n_genes))
    own_rows[np.arange(len(trained)), targets] = own_change
    cc_train = _control_covariance_deltas(
        pairs, [np.array([t]) for t in targets], own_rows, np.zeros(pairs.n_genes)
    )
    keeps = [np.arange(pairs.n_genes) != t for t in targets]
    usable = [r for r in range(len(trained)) if np.isfinite(cc_train[r]).all()]
    if len(usable) < 2:  # every trained target constant among controls: nothing to fit weights on
        return out
    w_shared = _fit_weights([[cc_train[r], _pm_ex(deltas, targets, leave_out=r)] for r in usable],
                            [deltas[r] for r in usable], [keeps[r] for r in usable])
    pm_ex = _pm_ex(deltas, targets)

    for row, p in enumerate(evals):
        t = np.asarray(pairs.pert_targets[p], dtype=int)
        if len(t) != 1:
            continue
        u = int(t[0])
        pre = np.asarray(pairs.pre_state(int(p), role), dtype=np.float64)
        du = float(pre[u] - base[u])
        change = np.zeros((1, pairs.n_genes))
        change[0, u] = du
        cc = _control_covariance_deltas(pairs, [t], change, np.zeros(pairs.n_genes))[0]
        if not np.isfinite(cc).all():
            continue
        out["ccov_shared"][row] = base + w_shared[0] * cc + w_shared[1] * pm_ex
        moved_u = (np.abs(z[:, u]) > z_ancestor) & (targets != u)
        ancestors = targets[moved_u]
        out["ccov_adjusted"][row] = base + _adjusted(xc, u, ancestors, du)
        for name, weighting in (("ccov_ancestors", "ratio"), ("ccov_ancestors_ls", "least_squares")):
            through = _through_ancestors(cc, deltas[moved_u], ancestors, u, du, weighting=weighting)
            out[name][row] = base + through
        for pred in out.values():
            pred[row, u] = pre[u]
    return out


def _adjusted(xc: np.ndarray, u: int, ancestors: np.ndarray, du: float) -> np.ndarray:
    """Δ = (coefficient of x_u in the regression of each gene on x_u and x_ancestors) · Δu; ancestors 0."""
    design = xc[:, np.r_[u, ancestors].astype(int)]
    gram = design.T @ design
    if gram[0, 0] <= 1e-12:
        return np.zeros(xc.shape[1])
    coef = np.linalg.solve(gram + 1e-9 * np.trace(gram) * np.eye(len(gram)), design.T @ xc)
    delta = coef[0] * du
    delta[ancestors] = 0.0  # a do-intervention on u leaves its upstream regulators where they were
    return delta


def _through_ancestors(
    cc: np.ndarray, anc_deltas: np.ndarray, ancestors: np.ndarray, u: int, du: float, *,
    weighting: str = "ratio",
) -> np.ndarray:
    """Control covariance's Δ plus the ancestors' deltas carried to u's change, at control covariance's
    norm (both without u's entry); the ancestors' entries 0 (a do-intervention on u leaves them).

    ``weighting="ratio"`` averages each ancestor's delta rescaled by Δu / Δ_s[u]; ``"least_squares"``
    takes the per-gene least-squares slope on Δ_s[u], Δu · Σ_s Δ_s[u] Δ_s / Σ_s Δ_s[u]².
    """
    delta = cc.copy()
    if len(ancestors):
        through = anc_deltas.copy()
        through[np.arange(len(ancestors)), ancestors] = 0.0  # each ancestor's own knock-down
        moved = anc_deltas[:, u]
        if weighting == "ratio":
            through = (through * (du / moved)[:, None]).mean(axis=0)
        elif weighting == "least_squares":
            through = du * (moved @ through) / float(moved @ moved)
        else:
            msg = f"weighting must be 'ratio' or 'least_squares', got {weighting!r}."
            raise ValueError(msg)
        through[u] = 0.0
        others = np.arange(len(cc)) != u
        norm = np.linalg.norm(through[others])
        if norm > 0:
            delta[others] += through[others] * np.linalg.norm(cc[others]) / norm
        delta[ancestors] = 0.0
    return delta
