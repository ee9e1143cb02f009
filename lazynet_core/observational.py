"""How much a screen's observational signal can still gain from more cells.

Every predictor of an unseen target's effect that reads cell-to-cell co-variation (control
covariance, pooled covariance, the covariance and anchored recipes' starts) regresses each gene on
the target: slope cov(i, u) / var(u). :func:`slope_agreement` asks how reproducible those slopes
are: the slope columns of two disjoint halves of the training controls against each other, and one
half against as many training perturbed cells (each perturbation centred on its own mean, as
``pooled_covariance`` reads them). Near 1, the controls already estimate the slopes well and more
cells of the same kind add little (measured: the real TAP-seq screen, r = 0.93, much of it one axis
that many genes share, where pooling the perturbed cells tied control covariance); near 0, the
slopes are mostly noise and more cells are the lever (the synthetic screens, r = 0.01 and 0.05,
where pooling gained +0.08 and +0.11 Δ-Pearson; benchmarks/README.md).
It reads only training cells, sparse rows in place, and at most ``max_genes`` target columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ScreenError
from .metrics import _group_means, _training_groups

#: Target genes (columns) scored at most; a sample of them on larger screens.
MAX_GENES = 200


@dataclass(frozen=True)
class SlopeAgreement:
    """Reproducibility of the covariance slopes of one split (:func:`slope_agreement`).

    Attributes
    ----------
    n_half
        Cells in each half of the training controls (and perturbed cells in the comparison).
    n_perturbed
        Training perturbed cells available (0 on pairs streamed from disk).
    n_genes
        Target genes scored.
    controls_vs_controls
        Median over target genes u of the Pearson r, across genes i != u, between the slopes of i on
        u in the two halves of the controls (NaN when it cannot be computed).
    controls_vs_perturbed
        The same between one half of the controls and as many perturbed cells (NaN without them).
    """

    n_half: int
    n_perturbed: int
    n_genes: int
    controls_vs_controls: float
    controls_vs_perturbed: float


def slope_agreement(pairs: Any, *, max_genes: int = MAX_GENES, seed: int = 0) -> SlopeAgreement:
    """Split-half reproducibility of the covariance slopes cov(i, u) / var(u) of a screen.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs` (its training cells are read).
    max_genes
        Target genes u scored at most (a seeded sample of those that vary among the controls).
    seed
        Seed of the halves, the perturbed sample and the gene sample.

    Returns
    -------
    SlopeAgreement
        Both medians; a perturbed-cell figure of NaN on pairs streamed from disk.
    """
    if max_genes < 2:
        msg = f"slope_agreement needs max_genes >= 2; got {max_genes}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    controls = pairs.cells(-1, "train")
    half = len(controls) // 2
    order = rng.permutation(controls)
    first, second = order[:half], order[half : 2 * half]
    try:
        idx, group = _training_groups(pairs, cells="pooled")
        perturbed, groups = idx[group > 0], group[group > 0]
    except ScreenError:  # pairs streamed from disk hold no perturbed rows
        perturbed, groups = np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    genes = _scored_genes(pairs.X[first], max_genes, rng)
    nan = float("nan")
    if half < 3 or len(genes) < 2:
        return SlopeAgreement(half, len(perturbed), len(genes), nan, nan)
    a, b = (_slope_columns(pairs.X, rows, genes) for rows in (first, second))
    vs_perturbed = nan
    if len(perturbed) >= half:
        pick = np.sort(rng.choice(len(perturbed), half, replace=False))
        pooled = _pooled_slope_columns(pairs.X, perturbed, groups, pick, genes)
        vs_perturbed = _median_column_r(a, pooled, genes)
    return SlopeAgreement(half, len(perturbed), len(genes), _median_column_r(a, b, genes), vs_perturbed)


def _dense_columns(x: Any, genes: np.ndarray) -> np.ndarray:
    cols = x[:, genes]
    return np.asarray(cols.todense() if hasattr(cols, "todense") else cols, dtype=np.float64)


def _scored_genes(x_half: Any, max_genes: int, rng: np.random.Generator) -> np.ndarray:
    """Genes that vary among the first half's cells (float64 variance, relative to the gene's level),
    a seeded sample of ``max_genes`` where more."""
    x = x_half.astype(np.float64)
    sq = np.asarray(x.multiply(x).mean(axis=0) if hasattr(x, "multiply") else (x**2).mean(axis=0)).ravel()
    mean = np.asarray(x.mean(axis=0)).ravel()
    varying = np.flatnonzero(sq - mean**2 > 1e-9 * np.maximum(mean**2, 1.0))
    if len(varying) > max_genes:
        varying = np.sort(rng.choice(varying, max_genes, replace=False))
    return varying


def _slopes(cross: np.ndarray, var: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 1e-12, cross / var, np.nan)


def _slope_columns(X: Any, rows: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """(all genes × ``genes``) slopes of every gene on each of ``genes`` over ``rows`` of ``X``
    (centring the ``genes`` columns is enough: a centred column sums to 0). NaN where u is constant."""
    x = X[rows]
    xu = _dense_columns(x, genes)
    xu -= xu.mean(axis=0)
    return _slopes(np.asarray(x.T @ xu, dtype=np.float64), (xu**2).sum(axis=0))


def _pooled_slope_columns(
    X: Any, cells: np.ndarray, groups: np.ndarray, pick: np.ndarray, genes: np.ndarray
) -> np.ndarray:
    """The same over the rows ``cells[pick]``, each centred on its whole group's mean among ``cells``
    (as ``pooled_covariance`` reads them), not on the few picked cells of the group: the cross
    product of the picked centred ``genes`` columns with the uncentred rows, minus what the groups'
    means of every gene contribute (``X[cells].T @ W``, W a row's group sum of picked columns over the
    group's size), so no dense (cells × all genes) matrix is formed."""
    xu = _dense_columns(X[cells], genes)
    centred = xu - _group_means(xu, groups)[groups]
    picked = centred[pick]
    n_groups = int(groups.max()) + 1
    sums = np.zeros((n_groups, len(genes)))
    np.add.at(sums, groups[pick], picked)
    size = np.bincount(groups, minlength=n_groups).astype(np.float64)
    weights = sums[groups] / size[groups, None]
    cross = np.asarray(X[cells[pick]].T @ picked, dtype=np.float64) - np.asarray(X[cells].T @ weights)
    return _slopes(cross, (picked**2).sum(axis=0))


def _median_column_r(a: np.ndarray, b: np.ndarray, genes: np.ndarray) -> float:
    """Median over columns k of the Pearson r of ``a[:, k]`` and ``b[:, k]`` across rows i != genes[k]."""
    rs = []
    for k, u in enumerate(genes):
        x, y = np.delete(a[:, k], u), np.delete(b[:, k], u)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() > 3 and x[ok].std() > 0 and y[ok].std() > 0:
            rs.append(float(np.corrcoef(x[ok], y[ok])[0, 1]))
    return float(np.median(rs)) if rs else float("nan")
