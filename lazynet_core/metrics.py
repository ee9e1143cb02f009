"""Evaluation of predicted perturbation effects that cannot flatter the model (method §4, §7c).

Every figure is computed per evaluated perturbation on *pseudobulk* states:

- **input** (``pre``)  = the training control mean with the target gene(s) set to their level in the
  perturbation's evaluated cells (the do-intervention), ``pairs.pre_state(p, role)``;
- **predicted delta** = a method's predicted post state − the training control mean (the base every
  method starts from);
- **observed delta**  = the mean of the perturbation's evaluated cells − the **reference**:
  ``reference="independent"`` (default) is the mean of control cells that never reached training,
  the gene scale, the pre-state pool or validation (``PairConfig.reference_fraction``), so sampling
  noise of the training control mean no longer sits on both sides of the comparison;
  ``reference="training"`` is the old, flattering choice (the training control mean on both sides),
  kept for comparison and labelled as such.

Delta metrics exclude the perturbation's target gene(s): their level is an input of every method.

Sets (never mixed into one number): ``held_out_perturbations`` (targets never trained on),
``validation_perturbations`` (held out for early stopping), ``combinations`` (combinations never
trained on) and ``held_out_cells`` (held-out cells of perturbations that were trained on).

Metrics (``top_k = 20``; the suffix follows ``top_k``):

``pearson_delta``, ``pearson_delta_top20``
    Pearson r of predicted vs observed delta over all non-target genes / the 20 genes with the
    largest observed |delta|.
``mse_delta``, ``direction_acc_top20``, ``auroc_de``, ``auprc_de``
    Squared error; sign agreement on the top-20 DE genes; predicted |delta| ranking the top-20 DE
    genes among all non-target genes.
``slope``, ``norm_ratio``
    Least-squares slope of predicted on observed delta (1 = right magnitude, 0.1 = ten times too
    small) and ||predicted|| / ||observed||.
``intervention_response`` (model only)
    Pearson r between the model's delta for the perturbation and its delta with the target(s) left
    at control. ≈ 1 means the target did not matter: the prediction is a constant. 0 when the
    model predicts no change at all at control (an anchored model, ``ModelConfig.anchor``): then
    the whole prediction comes from the target.
``pearson_delta_specific``, ``specific_fraction`` (model only)
    The target-specific part (prediction minus the prediction with the target at control) scored
    on its own, and its share of the prediction's norm.
``ceiling``, ``reliability``, ``split_half_r`` (method ``observed``)
    Split-half reliability of the observed delta (disjoint halves of the perturbation's cells and
    of the reference controls: the Pearson r of the halves' deltas, ``split_half_r``, Spearman–Brown
    corrected) and its square root, the expected r of the noise-free delta with the observed one:
    the noise ceiling of ``pearson_delta``. A perturbation whose halves do not agree (reliability
    ≤ 0) has no ceiling (NaN). A **set's** ceiling (:func:`summarize`) is :func:`set_ceiling` of its
    perturbations' mean ``split_half_r``: the halves' r pooled first, corrected once. Never the mean
    of the defined per-perturbation ceilings (on pure noise about half the perturbations get one,
    averaging 0.34 over 118 genes, a headroom that is not there), nor the mean reliability
    (Spearman–Brown is concave and unbounded below, so one perturbation at r = −0.9 pulls a set to 0).
``pearson_post_pooled``
    Paper-style r of predicted vs observed post states pooled over genes and perturbations (one
    row per method and set, perturbation ``"ALL"``). Inflated by gene-to-gene mean differences.

A constant prediction has no correlation: Pearson is NaN, never 0 (identity predicts a zero delta).
Baselines (:func:`baseline_predictions`) are listed in ``BASELINES``; the per-perturbation training
mean (``own_training_mean``, held-out cells only) is a baseline, **not** a ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse as sp
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from lazynet_core.config import COVARIANCE_CELLS
from lazynet_core.errors import ScreenError

BASELINES = (
    "identity",
    "perturbed_mean",
    "perturbed_mean_ex",
    "linear",
    "control_covariance",
    "pooled_covariance",
    "additive",
    "additive_shrunk",
    "additive_counts",
    "additive_counts_shrunk",
    "multiplicative_counts",
    "multiplicative_counts_shrunk",
    "null",
    "own_training_mean",
    "own_training_mean_shrunk",
)
REFERENCES = ("independent", "training")
SETS = ("held_out_perturbations", "validation_perturbations", "combinations", "held_out_cells")
# Standard deviation under which a vector counts as constant (log units: far below any real effect).
_CONSTANT_TOL = 1e-6
# Fewest pairs for which a two-sided Wilcoxon signed-rank test can reach p < 0.05 (n = 6: p = 0.031).
_MIN_TESTABLE = 6


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
        Predicted and observed change, 1-D over genes.
    exclude
        Gene indices (the perturbation's targets) removed before every metric.
    top_k
        Number of DE genes (largest observed |delta|) for the top-k metrics and the ranking
        positives; capped at the number of remaining genes minus one.

    Returns
    -------
    dict
        ``pearson_delta``, ``pearson_delta_top{top_k}``, ``mse_delta``, ``direction_acc_top{top_k}``,
        ``auroc_de``, ``auprc_de``, ``slope``, ``norm_ratio``. All NaN if ``pred_delta`` holds a
        non-finite value (a baseline that cannot predict this perturbation).
    """
    pred = np.asarray(pred_delta, dtype=np.float64).ravel()
    obs = np.asarray(obs_delta, dtype=np.float64).ravel()
    if pred.shape != obs.shape:
        msg = (
            f"pred_delta has {pred.size} genes but obs_delta has {obs.size}; "
            "pass vectors over the same genes."
        )
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
        "slope",
        "norm_ratio",
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
    obs_c = obs - obs.mean()
    obs_ss = float(obs_c @ obs_c)
    obs_norm = float(np.linalg.norm(obs))
    values = (
        _pearson(pred, obs),
        _pearson(pred[top], obs[top]),
        float(np.mean((pred - obs) ** 2)),
        float(np.mean(np.sign(pred[top]) == np.sign(obs[top]))),
        float(roc_auc_score(is_de, np.abs(pred))),
        float(average_precision_score(is_de, np.abs(pred))),
        float((pred - pred.mean()) @ obs_c / obs_ss) if obs_ss > 0 else np.nan,
        float(np.linalg.norm(pred) / obs_norm) if obs_norm > 0 else np.nan,
    )
    return dict(zip(names, values, strict=True))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either vector is (numerically) constant or not finite."""
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    if a.std() < _CONSTANT_TOL or b.std() < _CONSTANT_TOL:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def root_reliability(reliability: float) -> float:
    """The noise ceiling of one perturbation: √ of its split-half reliability, NaN where it is ≤ 0
    or undefined (the halves do not reproduce)."""
    return float(np.sqrt(reliability)) if np.isfinite(reliability) and reliability > 0 else float("nan")


def set_ceiling(mean_split_half_r: float) -> float:
    """The noise ceiling of a set of perturbations from their mean split-half r.

    √ of the Spearman–Brown reliability of the mean (the halves' r of every perturbation, negative
    ones kept, averaged before the one correction), 0 when that reliability is ≤ 0 (the halves
    reproduce nothing), NaN when no split-half r is defined.
    """
    rel = spearman_brown(float(mean_split_half_r))
    if not np.isfinite(rel):
        return float("nan")
    return float(np.sqrt(rel)) if rel > 0 else 0.0


def spearman_brown(r_half: float) -> float:
    """Reliability of the full data from the correlation of two halves: 2r / (1 + r)."""
    if not np.isfinite(r_half) or r_half <= -1:
        return float("nan")
    return float(2 * r_half / (1 + r_half))


# ---- references and inputs ----------------------------------------------------------------------
def reference_mean(pairs: Any, reference: str = "independent") -> np.ndarray:
    """Control mean that observed deltas are scored against (see the module docstring).

    Raises
    ------
    ScreenError
        ``reference="independent"`` on pairs without reference cells (a run trained before the
        independent reference existed, or ``reference_fraction=0``).
    """
    if reference not in REFERENCES:
        msg = f"reference must be one of {list(REFERENCES)}, got {reference!r}."
        raise ValueError(msg)
    if reference == "training":
        return np.asarray(pairs.control_mean("train"), dtype=np.float64)
    if len(pairs.cells(-1, "reference")) == 0:
        msg = (
            "These pairs keep no independent control reference (PairConfig.reference_fraction is 0, "
            "e.g. a run trained before it existed); retrain with reference_fraction > 0 (default 0.3) "
            "or evaluate with reference='training' (CLI: evaluate --reference training), which is "
            "flattered by shared control noise."
        )
        raise ScreenError(msg)
    return np.asarray(pairs.control_mean("reference"), dtype=np.float64)


def _train_pert_means(pairs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-perturbation means of training cells, (P, G) with NaN rows, and cell counts (P,).

    Through ``pairs.pert_mean`` (cached), so pairs streamed from disk, which hold the means but not
    the perturbed rows, give the same baselines."""
    train = (pairs.cell_pert >= 0) & (pairs.cell_role == "train")
    counts = np.bincount(pairs.cell_pert[train], minlength=len(pairs.perturbations)).astype(float)
    means = np.full((len(pairs.perturbations), pairs.n_genes), np.nan)
    for p in np.flatnonzero(counts):
        means[p] = pairs.pert_mean(int(p), "train")
    return means, counts


def _evaluation_rows(pairs: Any, roles: Sequence[str]) -> list[tuple[int, str]]:
    """(perturbation, role) pairs to evaluate: test cells of every perturbation, and the validation
    perturbations (never trained on) of role ``val``; never the same perturbation twice."""
    trained = set(np.asarray(pairs.cell_pert)[np.asarray(pairs.cell_role) == "train"].tolist())
    rows: list[tuple[int, str]] = []
    seen: set[int] = set()
    for role in roles:
        for p in np.asarray(pairs.evaluation_perturbations(role), dtype=int):
            if p in seen or (role == "val" and p in trained):
                continue
            seen.add(int(p))
            rows.append((int(p), role))
    return rows


def evaluation_set(pairs: Any, p: int, role: str, *, trained: set[int]) -> str:
    """The set (``SETS``) a perturbation's evaluated cells of ``role`` belong to; ``trained`` holds
    the perturbations with training cells."""
    if p in trained:
        return "held_out_cells"
    if "+" in str(pairs.perturbations[p]):
        return "combinations"
    return "validation_perturbations" if role == "val" else "held_out_perturbations"


# ---- baselines ----------------------------------------------------------------------------------
def _linear_deltas(
    train_means: np.ndarray,
    control: np.ndarray,
    train_targets: Sequence[np.ndarray],
    query_targets: Sequence[np.ndarray],
    *,
    n_pcs: int,
    ridge: float,
) -> np.ndarray:
    """Ahlmann-Eltze et al. (Nat Methods 2025) linear model in the authors' form.

    The training pseudobulk matrix X (genes × conditions) includes the control column. Gene
    embedding G = top ``n_pcs`` PC scores of the genes (columns of X centred, as ``prcomp``);
    perturbation embedding of a condition = G's row(s) at its target(s) (summed for a
    combination), 0 for control. With Y = X − control (the changes) and c its row centre,
    K = (GᵀG + λI)⁻¹ Gᵀ (Y − c) Pᵀ (PPᵀ + λI)⁻¹ (both ridge solves); a query's predicted change is
    G K p + c. Returns (n_query, genes) predicted changes vs ``control``.
    """
    x = np.column_stack([*train_means, control])  # genes × (P + 1)
    xc = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    k = min(n_pcs, int((s > 1e-12 * max(s[0], 1e-300)).sum()) if s.size else 0)
    if k == 0:
        return np.zeros((len(query_targets), len(control)))
    g = u[:, :k] * s[:k]

    def embed(targets: np.ndarray) -> np.ndarray:
        return g[np.asarray(targets, dtype=int)].sum(axis=0)

    p = np.column_stack([*(embed(t) for t in train_targets), np.zeros(k)])  # k × (P + 1)
    y = x - control[:, None]
    centre = y.mean(axis=1, keepdims=True)
    left = np.linalg.solve(g.T @ g + ridge * np.eye(k), g.T @ (y - centre))
    coef = np.linalg.solve((p @ p.T + ridge * np.eye(k)).T, (left @ p.T).T).T
    return np.stack([g @ coef @ embed(t) + centre[:, 0] for t in query_targets])


def pm_ex_delta(deltas: np.ndarray, targeted: np.ndarray) -> np.ndarray:
    """PM-ex's change: per gene, the mean of the ``deltas`` rows (perturbations) that do not target it.

    ``targeted`` is a bool array of the same shape; a gene every perturbation targets gets 0.
    """
    kept = (~targeted).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept > 0, np.where(targeted, 0.0, deltas).sum(axis=0) / kept, 0.0)


def _control_covariance_deltas(
    pairs: Any, targets: Sequence[np.ndarray], target_change: np.ndarray, base: np.ndarray, *,
    cells: str = "controls",
) -> np.ndarray:
    """Δ = Σ_{·u} Σ_{uu}⁻¹ Δ_u from the training cells' within-group covariance (method §7d).

    ``cells="controls"``: the training control cells (``control_covariance``); ``"pooled"``: those and
    every trained perturbation's training cells, each group centred on its own mean
    (``pooled_covariance``; all NaN on pairs streamed from disk, which hold no perturbed rows).
    """
    out = np.full((len(targets), pairs.n_genes), np.nan)
    try:
        idx, group = _training_groups(pairs, cells=cells)
    except ScreenError:  # pooled on streamed pairs: no perturbed rows to read
        return out
    dof = max(len(idx) - (group.max() + 1 if len(group) else 0), 1)
    if cells == "controls":
        batches = [(range(len(targets)), _control_moments(pairs.X[idx]))]
    else:  # at most POOLED_BATCH rows at a time: bounded memory on a genome-wide screen
        batches = []
        for first in range(0, len(targets), POOLED_BATCH):
            rows = range(first, min(first + POOLED_BATCH, len(targets)))
            genes = np.unique(np.concatenate([np.asarray(targets[r], dtype=int) for r in rows]))
            batches.append((rows, _pooled_moments(pairs, idx, group, genes)))
    for rows, moments in batches:
        for row in rows:
            t = np.asarray(targets[row], dtype=int)
            cov_all, cov_uu = (m / dof for m in moments(t))  # genes × |t|, |t| × |t|
            if np.any(np.diag(cov_uu) <= 1e-12):
                continue  # a constant target among these cells: no covariance to condition on
            coef = np.linalg.solve(cov_uu + 1e-9 * np.eye(len(t)), target_change[row, t])
            out[row] = cov_all @ coef
            out[row, t] = target_change[row, t]
    return out + base


#: Perturbations per batch of ``pooled_covariance`` (each batch holds cells × its target genes).
POOLED_BATCH = 128


def _control_moments(xc: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Target genes -> (Σ_cells x · x_t, Σ_cells x_t x_t') over the control rows ``xc``, x_t centred."""
    def moments(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xu = np.asarray(xc[:, t].todense(), dtype=np.float64)
        xu -= xu.mean(axis=0, keepdims=True)
        return np.asarray(xc.T @ xu, dtype=np.float64), xu.T @ xu

    return moments


def _pooled_moments(
    pairs: Any, idx: np.ndarray, group: np.ndarray, genes: np.ndarray
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The same over the rows ``idx`` of every group, each target column centred on its group's mean:
    the columns of ``genes`` read in one pass and multiplied against the screen's rows in place (the
    other rows weigh 0), so a batch costs one pass over the matrix, not one per target. A centred
    column sums to 0 in every group, so its products with the uncentred columns of ``genes`` are
    already the centred ones: one product gives both moments."""
    weights = np.zeros((pairs.X.shape[0], len(genes)))
    cols = np.asarray(pairs.X[:, genes][idx].todense(), dtype=np.float64)
    weights[idx] = cols - _group_means(cols, group)[group]
    del cols
    cross = np.asarray(pairs.X.T @ weights, dtype=np.float64)  # genes × len(genes)
    where = {int(g): k for k, g in enumerate(genes)}

    def moments(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = [where[int(g)] for g in t]
        return cross[:, k], cross[np.ix_(t, k)]

    return moments


def _training_groups(pairs: Any, *, cells: str = "controls") -> tuple[np.ndarray, np.ndarray]:
    """Training cell indices and their group (0 = controls; one per trained perturbation with ≥ 2
    training cells) for ``cells`` (``config.COVARIANCE_CELLS``).

    Raises
    ------
    ScreenError
        ``cells="pooled"`` on pairs streamed from disk, which hold no perturbed rows.
    """
    if cells not in COVARIANCE_CELLS:
        msg = f"cells must be one of {list(COVARIANCE_CELLS)}, got {cells!r}."
        raise ValueError(msg)
    controls = pairs.cells(-1, "train")
    if cells == "controls":
        return controls, np.zeros(len(controls), dtype=int)
    if getattr(pairs, "streamed", False):
        msg = ("The pooled covariance needs the perturbed cells' rows, which pairs streamed from disk do not "
               "hold; use ModelConfig(covariance_cells='controls') (the anchored recipe instead of "
               "anchored_pooled), or build the pairs with make_pairs on a screen read into memory.")
        raise ScreenError(msg)
    train = np.flatnonzero((pairs.cell_pert >= 0) & (pairs.cell_role == "train"))
    labels, counts = np.unique(pairs.cell_pert[train], return_counts=True)
    train = train[np.isin(pairs.cell_pert[train], labels[counts >= 2])]
    _, group = np.unique(pairs.cell_pert[train], return_inverse=True)
    return np.r_[controls, train], np.r_[np.zeros(len(controls), dtype=int), group + 1]


def centred_training_cells(pairs: Any, *, cells: str = "controls") -> np.ndarray:
    """Dense (cells × genes) training cells of ``cells`` (``config.COVARIANCE_CELLS``), each group centred on
    its own mean: the matrix whose covariance the covariance predictors and starts read. Dense, for
    screens of up to a few thousand genes.

    Raises
    ------
    ScreenError
        ``cells="pooled"`` on pairs streamed from disk, which hold no perturbed rows.
    """
    idx, group = _training_groups(pairs, cells=cells)
    x = np.asarray(pairs.X[idx].todense(), dtype=np.float64)
    return x - _group_means(x, group)[group]


def _group_means(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(groups × columns) mean of the rows of dense ``x`` per group label 0..max; one group gives
    exactly ``x.mean(axis=0)``."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    if n_groups <= 1:
        return x.mean(axis=0, keepdims=True) if len(group) else np.zeros((0, x.shape[1]))
    rows = np.arange(len(group))
    indicator = sp.csr_matrix((np.ones(len(group)), (group, rows)), shape=(n_groups, len(group)))
    counts = np.asarray(indicator.sum(axis=1), dtype=np.float64)
    return np.asarray(indicator @ x, dtype=np.float64) / np.maximum(counts, 1.0)


def _null_posts(pairs: Any, evals: np.ndarray) -> np.ndarray:
    """Per perturbation, the mean of a seeded random half of the control cells that are neither
    training nor reference cells: a post state that knows nothing about the perturbation."""
    others = np.flatnonzero((pairs.cell_pert == -1) & np.isin(pairs.cell_role, ("test", "val")))
    if others.size < 2:
        return np.full((len(evals), pairs.n_genes), np.nan)
    seed = int(getattr(pairs.config, "seed", 0))
    return np.stack(
        [
            pairs._mean(
                np.random.default_rng([seed, int(p)]).choice(others, size=others.size // 2, replace=False)
            )
            for p in evals
        ]
    ).astype(np.float64)


def baseline_predictions(
    pairs: Any,
    *,
    role: str = "test",
    perturbations: Sequence[int] | None = None,
    n_pcs: int = 10,
    ridge: float = 0.1,
) -> dict[str, np.ndarray]:
    """Predicted post states of every baseline.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs`.
    role
        Cell role whose levels define the do-intervention (``pairs.pre_state(p, role)``).
    perturbations
        Perturbation indices to predict (default ``pairs.evaluation_perturbations(role)``).
    n_pcs, ridge
        Dimension and ridge penalty of the linear baseline (Ahlmann-Eltze et al.: 10 and 0.1).

    Returns
    -------
    dict
        Method -> (n, G) float64 post states (NaN rows where a baseline does not apply):

        ``identity``
            post = pre (the do-intervention input): a zero delta.
        ``perturbed_mean``
            base + the mean training delta, each training perturbation weighted equally.
        ``perturbed_mean_ex``
            the same, but for each gene the perturbations that target it are left out of the
            average (a perturbation's own knock-down is not carried into the others).
        ``linear``
            Ahlmann-Eltze et al. in the authors' form (:func:`_linear_deltas`).
        ``control_covariance``
            base + cov(i, u) / var(u) · Δ_u over training control cells (multivariate for a
            combination), Δ_u = the target's observed change: an observational predictor.
        ``pooled_covariance``
            the same over the training control cells *and* every trained perturbation's training
            cells, each group centred on its own mean (so no perturbation's shift enters, only the
            cells' variation around it): several times the cells where perturbed cells outnumber
            controls (NaN on pairs streamed from disk).
        ``additive``
            combinations only: base + the sum of the single arms' training deltas, when every arm
            has training cells.
        ``additive_shrunk``
            the additive model with each arm's training delta soft-thresholded at
            ``SHRINK_SE`` standard errors per gene (:func:`soft_threshold_delta`): the denoising
            that ``TrainConfig.shrink`` gives a model, without a model.
        ``additive_counts``
            combinations only: the arms' training changes added in expression (count) space,
            ``log1p(Σ expm1(arm mean) − (n − 1)·expm1(base))`` (:func:`additive_counts_post`): right
            for redundant regulators (an OR gate), where log-space addition is not.
        ``additive_counts_shrunk``
            ``additive_counts`` on the arms soft-thresholded as in ``additive_shrunk``: both
            principles together, still no model (NaN on pairs streamed from disk).
        ``multiplicative_counts``
            combinations only: the arms' fold changes of expression multiplied,
            ``log1p(expm1(base) · Π expm1(arm mean) / expm1(base))`` (:func:`multiplicative_counts_post`),
            which is addition of the arms' log changes *without* log1p's pseudo-count: right for a gene
            that needs both regulators (an AND gate, the product of their Hill terms), wrong for an OR
            gate. On a gene of a few counts it differs from ``additive`` by the pseudo-count alone.
        ``multiplicative_counts_shrunk``
            ``multiplicative_counts`` on the arms soft-thresholded as in ``additive_shrunk``: the fair
            comparison for a model whose output multiplies folds (``ModelConfig(output="fold")``)
            trained with ``TrainConfig.shrink`` (NaN on pairs streamed from disk).
        ``null``
            the mean of a random half (redrawn per perturbation) of the control cells outside
            training and the reference: knows nothing about the perturbation, so its score is
            what the metric gives for nothing (≈ 0 against the independent reference; high against
            the training reference, whose noise it shares with every prediction).
        ``own_training_mean``
            the perturbation's own training-cell mean (held-out cells only). A baseline, not a
            ceiling: a noisy mean of few cells can be beaten.
        ``own_training_mean_shrunk``
            that mean's delta soft-thresholded at ``SHRINK_SE`` standard errors, like an arm of
            ``additive_shrunk``: the fair comparison for a model trained with ``TrainConfig.shrink``,
            whose edge over the raw mean may be denoising alone. NaN on pairs streamed from disk,
            which keep the means but not the rows the standard errors need (as ``additive_shrunk``).

        Every prediction has its target gene(s) set to the pre-state value.
    """
    evals = (
        np.asarray(pairs.evaluation_perturbations(role), dtype=int)
        if perturbations is None
        else np.asarray(perturbations, dtype=int)
    )
    if evals.size == 0:
        msg = (
            f"No perturbation has cells of role {role!r}; "
            "choose a role among 'train', 'val', 'test' with cells."
        )
        raise ScreenError(msg)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    pre = np.stack([np.asarray(pairs.pre_state(p, role), dtype=np.float64) for p in evals])
    targets = [np.asarray(pairs.pert_targets[p], dtype=int) for p in evals]
    means, counts = _train_pert_means(pairs)
    trained = np.flatnonzero(counts > 0)
    deltas = means[trained] - base
    nan = np.full_like(pre, np.nan)
    if trained.size:
        pm = base + deltas.mean(axis=0)
        targeted = np.zeros((trained.size, pairs.n_genes), dtype=bool)
        for row, q in enumerate(trained):
            targeted[row, pairs.pert_targets[q]] = True
        pm_ex = base + pm_ex_delta(deltas, targeted)
    else:
        pm = pm_ex = np.full(pairs.n_genes, np.nan)
    singles = np.array([q for q in trained if len(pairs.pert_targets[q]) == 1], dtype=int)
    if singles.size >= 2:
        linear = base + _linear_deltas(
            means[singles], base, [pairs.pert_targets[q] for q in singles], targets, n_pcs=n_pcs, ridge=ridge
        )
    else:
        linear = nan.copy()
    single_of = {int(pairs.pert_targets[q][0]): q for q in singles}
    additive, additive_shrunk, additive_counts = nan.copy(), nan.copy(), nan.copy()
    additive_counts_shrunk, multiplicative_counts, multiplicative_shrunk = nan.copy(), nan.copy(), nan.copy()
    for row, t in enumerate(targets):
        if len(t) > 1 and all(int(g) in single_of for g in t):
            arms = [single_of[int(g)] for g in t]
            additive[row] = base + sum(means[q] - base for q in arms)
            additive_counts[row] = additive_counts_post([means[q] for q in arms], base)
            multiplicative_counts[row] = multiplicative_counts_post([means[q] for q in arms], base)
            shrunk = [_shrunk_training_delta(pairs, q, base) for q in arms]
            if all(d is not None for d in shrunk):
                additive_shrunk[row] = base + sum(shrunk)
                additive_counts_shrunk[row] = additive_counts_post([base + d for d in shrunk], base)
                multiplicative_shrunk[row] = multiplicative_counts_post([base + d for d in shrunk], base)
    null = _null_posts(pairs, evals)
    preds = {
        "identity": pre.copy(),
        "perturbed_mean": np.broadcast_to(pm, pre.shape).copy(),
        "perturbed_mean_ex": np.broadcast_to(pm_ex, pre.shape).copy(),
        "linear": linear,
        "control_covariance": _control_covariance_deltas(pairs, targets, pre - base, base),
        "pooled_covariance": _control_covariance_deltas(pairs, targets, pre - base, base, cells="pooled"),
        "additive": additive,
        "additive_shrunk": additive_shrunk,
        "additive_counts": additive_counts,
        "additive_counts_shrunk": additive_counts_shrunk,
        "multiplicative_counts": multiplicative_counts,
        "multiplicative_counts_shrunk": multiplicative_shrunk,
        "null": null,
        "own_training_mean": means[evals].copy(),
        "own_training_mean_shrunk": _own_shrunk(pairs, evals, base, counts),
    }
    for pred in preds.values():
        _clamp_targets(pred, pre, targets)
    return preds


def _own_shrunk(pairs: Any, evals: np.ndarray, base: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``own_training_mean_shrunk`` rows: NaN where a perturbation has no training cells."""
    out = np.full((len(evals), pairs.n_genes), np.nan)
    for row, p in enumerate(evals):
        shrunk = _shrunk_training_delta(pairs, int(p), base) if counts[p] > 0 else None
        if shrunk is not None:
            out[row] = base + shrunk
    return out


def additive_counts_post(arm_means: Sequence[np.ndarray], base: np.ndarray) -> np.ndarray:
    """Arms' changes added in count space: ``log1p(Σ expm1(m_a) − (n − 1)·expm1(base))``.

    ``arm_means`` and ``base`` are mean log1p expression; the sum is clipped at no expression.
    """
    n = len(arm_means)
    summed = sum(np.expm1(np.asarray(m, dtype=np.float64)) for m in arm_means) - (n - 1) * np.expm1(base)
    return np.log1p(np.clip(summed, 0.0, None))


def multiplicative_counts_post(arm_means: Sequence[np.ndarray], base: np.ndarray) -> np.ndarray:
    """Arms' fold changes of expression multiplied: ``log1p(e_0 · Π expm1(m_a) / e_0)``, e_0 = expm1(base).

    ``arm_means`` and ``base`` are mean log1p expression. In log expression without log1p's
    pseudo-count this is the arms' changes added; a gene not expressed in ``base`` stays at 0.
    """
    e0 = np.expm1(np.asarray(base, dtype=np.float64))
    fold = np.ones_like(e0)
    expressed = e0 > 0
    for m in arm_means:
        arm = np.clip(np.expm1(np.asarray(m, dtype=np.float64)), 0.0, None)
        fold[expressed] *= arm[expressed] / e0[expressed]
    return np.log1p(e0 * fold)


#: Threshold of the ``additive_shrunk`` baseline, in standard errors (the shrunk recipe's ``shrink``).
SHRINK_SE = 2.0


def soft_threshold_delta(delta: np.ndarray, se: np.ndarray, n_se: float = SHRINK_SE) -> np.ndarray:
    """Soft-threshold a mean change per gene: ``sign(d) * max(|d| - n_se * se, 0)``."""
    return np.sign(delta) * np.clip(np.abs(delta) - n_se * se, 0.0, None)


def _shrunk_training_delta(pairs: Any, p_idx: int, base: np.ndarray) -> np.ndarray | None:
    """Perturbation ``p_idx``'s training delta soft-thresholded at ``SHRINK_SE`` standard errors of
    its own training cells (per gene; the SE of the training control mean added in quadrature).
    None for pairs that hold no perturbed rows (streamed from disk: their ``X`` keeps only control rows)."""
    if not hasattr(pairs, "X") or getattr(pairs, "streamed", False):
        return None
    cache, key = getattr(pairs, "_cache", {}), ("shrunk_delta", int(p_idx))
    if key not in cache:
        own, ctrl = pairs.cells(p_idx, "train"), pairs.cells(-1, "train")
        if len(own) < 2 or len(ctrl) < 2:
            return None
        se2 = _mean_variance(pairs.X[own]) + _mean_variance(pairs.X[ctrl])
        mean = np.asarray(pairs.X[own].mean(axis=0), dtype=np.float64).ravel()
        cache[key] = soft_threshold_delta(mean - base, np.sqrt(se2))
    return cache[key]


def _mean_variance(rows) -> np.ndarray:
    """Squared standard error of the column means of a sparse block of cells."""
    mean = np.asarray(rows.mean(axis=0), dtype=np.float64).ravel()
    sq = np.asarray(rows.multiply(rows).mean(axis=0), dtype=np.float64).ravel()
    return np.clip(sq - mean**2, 0.0, None) / (rows.shape[0] - 1)  # sample variance / n


def _clamp_targets(pred: np.ndarray, pre: np.ndarray, targets: Sequence[np.ndarray]) -> None:
    """Set each row's target genes to the pre-state value, in place (skipping NaN rows)."""
    for row, t in enumerate(targets):
        if np.isfinite(pred[row]).all():
            pred[row, t] = pre[row, t]


# ---- evaluation -----------------------------------------------------------------------------------
def noise_ceiling(
    pairs: Any, p_idx: int, role: str, *, reference: str = "independent", seed: int = 0
) -> dict[str, float]:
    """Split-half reliability of one perturbation's observed delta (Spearman–Brown corrected).

    The perturbation's ``role`` cells and the reference controls are each split into two random
    disjoint halves; ``split_half_r`` = Pearson(Δ₁, Δ₂) over non-target genes; ``reliability`` =
    2r / (1 + r), ``ceiling`` = √reliability (the expected r of the noise-free delta with the
    observed one). NaN with fewer than 2 cells on either side.
    """
    rng = np.random.default_rng([seed, int(p_idx)])
    own = rng.permutation(pairs.cells(p_idx, role))
    ref_role = "reference" if reference == "independent" else "train"
    ref = rng.permutation(pairs.cells(-1, ref_role))
    if len(own) < 2 or len(ref) < 2:
        return {"split_half_r": np.nan, "reliability": np.nan, "ceiling": np.nan}
    keep = np.ones(pairs.n_genes, dtype=bool)
    keep[pairs.pert_targets[p_idx]] = False
    halves = [(pairs._mean(own[i::2]) - pairs._mean(ref[i::2])).astype(np.float64)[keep] for i in (0, 1)]
    r = _pearson(*halves)
    rel = spearman_brown(r)
    return {"split_half_r": r, "reliability": rel, "ceiling": root_reliability(rel)}


def evaluate(
    pairs: Any,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    reference: str = "independent",
    roles: Sequence[str] = ("test", "val"),
    top_k: int = 20,
    methods: Sequence[str] | None = None,
    name: str = "lazynet",
    ceiling: bool = True,
) -> pd.DataFrame:
    """Evaluate a predictor and the baselines on every held-out set.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs`.
    predict
        Maps pre states (n, G) float32 to predicted post states (n, G), e.g. ``Ensemble.predict``.
        ``None`` evaluates the baselines only.
    reference
        ``"independent"`` (default; held-out control cells) or ``"training"`` (flattering; labelled).
    roles
        Cell roles evaluated: ``"test"`` (held-out perturbations and held-out cells) and ``"val"``
        (validation perturbations, which have no training cells).
    top_k
        DE genes for the top-k metrics (see :func:`delta_metrics`).
    methods
        Baselines to include (default all of ``BASELINES``; ``()`` for none).
    name
        Method label of ``predict``.
    ceiling
        Add the split-half noise ceiling rows (method ``observed``).

    Returns
    -------
    pandas.DataFrame
        Tidy: ``set, role, reference, method, perturbation, metric, value``; one row per method ×
        perturbation × metric, plus ``pearson_post_pooled`` rows (perturbation ``"ALL"``). Targets
        of the predictor's output are set to the pre state (the do-intervention).
    """
    methods = BASELINES if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(BASELINES))
    if unknown:
        msg = f"Unknown baseline(s) {unknown}; choose among {list(BASELINES)}."
        raise ValueError(msg)
    ref = reference_mean(pairs, reference)
    rows = _evaluation_rows(pairs, roles)
    if not rows:
        msg = (
            f"No perturbation has held-out cells of roles {list(roles)}; "
            "train with a split that holds some out (PairConfig.split, test_fraction or held_out)."
        )
        raise ScreenError(msg)
    trained = set(np.asarray(pairs.cell_pert)[np.asarray(pairs.cell_role) == "train"].tolist())
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    labels = np.asarray(pairs.perturbations)
    records: list[tuple] = []
    for role in dict.fromkeys(r for _, r in rows):
        evals = np.array([p for p, r in rows if r == role], dtype=int)
        targets = [np.asarray(pairs.pert_targets[p], dtype=int) for p in evals]
        sets = np.array([evaluation_set(pairs, int(p), role, trained=trained) for p in evals])
        preds = {
            m: v
            for m, v in baseline_predictions(pairs, role=role, perturbations=evals).items()
            if m in methods
        }
        extra: dict[int, dict[str, float]] = {}
        if predict is not None:
            pre = np.stack([np.asarray(pairs.pre_state(p, role), dtype=np.float32) for p in evals])
            out = np.asarray(predict(pre), dtype=np.float64).reshape(pre.shape)
            _clamp_targets(out, pre.astype(np.float64), targets)
            at_base = np.asarray(predict(base[None, :].astype(np.float32)), dtype=np.float64).reshape(-1)
            preds = {name: out, **preds}
        obs = np.stack([np.asarray(pairs.pert_mean(p, role), dtype=np.float64) for p in evals])
        for method, pred in preds.items():
            for row, p in enumerate(evals):
                scores = delta_metrics(pred[row] - base, obs[row] - ref, exclude=targets[row], top_k=top_k)
                if method == name and predict is not None:
                    scores.update(
                        _intervention_scores(pred[row], at_base, base, obs[row] - ref, targets[row])
                    )
                    extra[row] = scores
                records += [(sets[row], role, method, labels[p], m, v) for m, v in scores.items()]
            for set_name in np.unique(sets):
                sel = (sets == set_name) & np.isfinite(pred).all(axis=1)
                records.append(
                    (
                        set_name,
                        role,
                        method,
                        "ALL",
                        "pearson_post_pooled",
                        _pearson(pred[sel].ravel(), obs[sel].ravel()),
                    )
                )
        if ceiling:
            for row, p in enumerate(evals):
                for m, v in noise_ceiling(pairs, int(p), role, reference=reference).items():
                    records.append((sets[row], role, "observed", labels[p], m, v))
    frame = pd.DataFrame.from_records(
        records, columns=["set", "role", "method", "perturbation", "metric", "value"]
    )
    frame.insert(2, "reference", reference)
    return frame


def _intervention_scores(
    pred: np.ndarray, at_base: np.ndarray, base: np.ndarray, obs_delta: np.ndarray, targets: np.ndarray
) -> dict[str, float]:
    keep = np.ones(pred.size, dtype=bool)
    keep[targets] = False
    delta, delta0 = (pred - base)[keep], (at_base - base)[keep]
    specific = (pred - at_base)[keep]
    norm = float(np.linalg.norm(delta))
    return {
        "intervention_response": 0.0 if np.abs(delta0).max(initial=0.0) < _CONSTANT_TOL and norm > 0
        else _pearson(delta, delta0),
        "pearson_delta_specific": _pearson(specific, obs_delta[keep]),
        "specific_fraction": float(np.linalg.norm(specific) / norm) if norm > 0 else np.nan,
    }


# ---- summaries and paired statistics ---------------------------------------------------------------
def _keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("set", "reference", "method", "metric") if c in frame.columns]


def _per_perturbation(frame: pd.DataFrame) -> pd.DataFrame:
    """One value per perturbation: seeds and folds of a cross-validation averaged first."""
    frame = frame[frame["perturbation"] != "ALL"]
    keys = [*_keys(frame), "perturbation"]
    return frame.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of each metric per set × reference × method.

    Values of one perturbation over seeds or folds (a ``seed`` column) are averaged first, so
    ``n`` counts perturbations; NaN values are left out and an undefined metric shows ``mean`` NaN
    and ``n`` 0. ``pearson_post_pooled`` rows (perturbation ``"ALL"``) are averaged over seeds.
    The ``observed`` ``ceiling`` row of a set that has ``split_half_r`` rows is :func:`set_ceiling`
    of their mean (``sd`` NaN, ``n`` the perturbations with one), not the mean of the
    per-perturbation ceilings (module docstring); frames from before those rows keep that mean.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``set, reference, method, metric, mean, sd, n`` (plus ``n_seeds`` with a ``seed``
        column), methods in order of first appearance.
    """
    per = pd.concat([_per_perturbation(frame), frame[frame["perturbation"] == "ALL"]], ignore_index=True)
    grouped = per.groupby(_keys(frame), sort=False, dropna=False)
    out = grouped["value"].agg(mean="mean", sd="std", n="count").reset_index()
    if "seed" in frame.columns:
        seeds = frame.groupby(_keys(frame), sort=False, dropna=False)["seed"].nunique()
        out = out.merge(seeds.rename("n_seeds").reset_index(), on=_keys(frame), how="left")
    return _set_ceilings(out)


def _set_ceilings(summary: pd.DataFrame) -> pd.DataFrame:
    """Each set's ceiling row: :func:`set_ceiling` of its mean split-half r, not the mean of its ceilings."""
    if not {"method", "metric"} <= set(summary.columns):
        return summary
    summary = summary.copy()
    observed = summary["method"] == "observed"
    groups = [c for c in ("set", "reference") if c in summary.columns]
    halves = summary[observed & (summary["metric"] == "split_half_r")]
    for _, row in halves.iterrows():
        at = observed & (summary["metric"] == "ceiling")
        for column in groups:
            at &= summary[column] == row[column]
        summary.loc[at, ["mean", "sd", "n"]] = [set_ceiling(row["mean"]), np.nan, row["n"]]
    return summary


def compare(frame: pd.DataFrame, *, model: str = "lazynet", metric: str = "pearson_delta") -> pd.DataFrame:
    """Paired comparison of ``model`` with every other method, per set and reference.

    Per perturbation (seeds averaged first), d = model − baseline on ``metric``, over the
    perturbations where both are defined.

    Returns
    -------
    pandas.DataFrame
        ``set, reference, baseline, metric, n, mean_diff, sd_diff, wins, losses, p_wilcoxon``
        (two-sided Wilcoxon signed-rank; NaN with fewer than 2 perturbations or all d = 0).
    """
    per = _per_perturbation(frame[frame["metric"] == metric])
    records = []
    for (set_name, ref), block in per.groupby(["set", "reference"], sort=False):
        wide = block.pivot_table(index="perturbation", columns="method", values="value", dropna=False)
        if model not in wide.columns:
            continue
        for baseline in wide.columns:
            if baseline in (model, "observed"):
                continue
            both = wide[[model, baseline]].dropna()
            d = (both[model] - both[baseline]).to_numpy()
            if d.size == 0:
                continue  # the baseline does not apply to this set (e.g. additive on singles)
            p = np.nan
            if d.size >= 2 and np.any(d != 0):
                p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
            records.append(
                dict(
                    set=set_name,
                    reference=ref,
                    baseline=baseline,
                    metric=metric,
                    n=int(d.size),
                    mean_diff=float(d.mean()) if d.size else np.nan,
                    sd_diff=float(d.std(ddof=1)) if d.size > 1 else np.nan,
                    wins=int((d > 0).sum()),
                    losses=int((d < 0).sum()),
                    p_wilcoxon=p,
                )
            )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "set",
            "reference",
            "baseline",
            "metric",
            "n",
            "mean_diff",
            "sd_diff",
            "wins",
            "losses",
            "p_wilcoxon",
        ],
    )


def best_baseline(
    frame: pd.DataFrame, *, set_name: str, metric: str = "pearson_delta", model: str = "lazynet"
) -> str | None:
    """The baseline with the highest mean ``metric`` on ``set_name`` (never ``null`` or ``observed``).

    Only baselines defined on every perturbation the model is scored on compete (``additive``
    covers only combinations and would otherwise win on two of fifty perturbations).
    """
    summary = summarize(frame[(frame["set"] == set_name) & (frame["metric"] == metric)])
    n_model = summary.loc[summary["method"] == model, "n"]
    summary = summary[~summary["method"].isin([model, "null", "observed", "identity"])]
    summary = summary[np.isfinite(summary["mean"])]
    if len(n_model):
        summary = summary[summary["n"] >= int(n_model.max())]
    return None if summary.empty else str(summary.sort_values("mean", ascending=False)["method"].iloc[0])


def judge_paired(
    row: dict[str, Any], *, baseline: str, alpha: float = 0.05, min_margin: float = 0.01
) -> dict[str, str]:
    """The ``verdict`` and ``text`` of one paired comparison (a row of :func:`compare`).

    The rule of :func:`headline`, usable on stored rows: ``"ahead"`` needs p < ``alpha`` and a mean
    difference of at least ``min_margin``; any significant deficit is ``"behind"``; fewer than 6
    perturbations are ``"undecided"``; everything else is a ``"tie"``.
    """
    p, n, diff, sd = row["p_wilcoxon"], row["n"], row["mean_diff"], row["sd_diff"]
    p = np.nan if p is None else p
    sd = np.nan if sd is None else sd
    significant = bool(np.isfinite(p) and p < alpha)
    if not significant and n < _MIN_TESTABLE:
        verdict, caveat = "undecided", (
            f" (only {n} perturbations: too few for a paired test to reach p < {alpha:g}; "
            "undecided, not a win)"
        )
    elif not significant:
        verdict, caveat = "tie", " (not significant: a tie)"
    elif diff < 0:
        verdict, caveat = "behind", ""
    elif diff < min_margin:
        verdict = "tie"
        caveat = f" (significant, but below the {min_margin:g} margin that counts as a win: a practical tie)"
    else:
        verdict, caveat = "ahead", ""
    p_text = "n/a" if not np.isfinite(p) else f"{p:.2g}"
    text = (
        f"{'ahead of' if diff > 0 else 'behind'} {baseline} by {abs(diff):.3f}"
        f"{'' if not np.isfinite(sd) else f' ± {sd:.3f}'}, better on {row['wins']} of {n} "
        f"perturbations, p = {p_text}" + caveat
    )
    return dict(verdict=verdict, text=text)


def headline(
    frame: pd.DataFrame,
    *,
    set_name: str,
    metric: str = "pearson_delta",
    model: str = "lazynet",
    alpha: float = 0.05,
    min_margin: float = 0.01,
) -> dict[str, Any] | None:
    """The model against the best baseline on one set, in words that do not overclaim.

    Parameters
    ----------
    frame
        Per-perturbation scores (``set, reference, method, metric, perturbation, value``).
    set_name, metric, model
        Which set, score and method to judge.
    alpha
        Significance level of the paired Wilcoxon test.
    min_margin
        Smallest mean paired difference (in units of ``metric``) that counts as a win. A model
        significantly ahead by less is a tie in practice: with sixty perturbations and five seeds
        a +0.0003 Δ-Pearson can reach p < 0.05 without meaning anything to a biologist. The rule
        is deliberately asymmetric: a significant deficit of any size is reported as ``"behind"``.

    Returns
    -------
    dict or None
        ``None`` when the set has no model rows. Otherwise ``model_mean``, ``baseline``,
        ``baseline_mean``, the paired fields of :func:`compare`, ``verdict`` (``"ahead"`` only when
        p < ``alpha`` and the mean difference is at least ``min_margin``; ``"behind"`` when p <
        ``alpha`` and the difference is negative; ``"undecided"`` when there are fewer than 6
        perturbations, too few for the test ever to reach p < 0.05; ``"tie"`` otherwise) and
        ``text``.
    """
    sub = frame[frame["set"] == set_name]
    if sub.empty or model not in set(sub["method"]):
        return None
    best = best_baseline(sub, set_name=set_name, metric=metric, model=model)
    summary = summarize(sub[sub["metric"] == metric]).set_index("method")["mean"]
    out: dict[str, Any] = dict(
        set=set_name,
        metric=metric,
        model_mean=float(summary.get(model, np.nan)),
        baseline=best,
        baseline_mean=float(summary.get(best, np.nan)) if best else np.nan,
    )
    if best is None:
        out.update(verdict="tie", text="no baseline could be scored on this set")
        return out
    row = compare(sub, model=model, metric=metric)
    row = row[row["baseline"] == best].iloc[0].to_dict()
    out.update({k: row[k] for k in ("n", "mean_diff", "sd_diff", "wins", "losses", "p_wilcoxon")})
    out.update(judge_paired(row, baseline=best, alpha=alpha, min_margin=min_margin))
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records: every summary row (``method, set, reference, metric, mean, sd, n``) and,
    for each paired comparison of the model, a record with method ``"<model>-minus-<baseline>"``."""
    out = []
    for row in summarize(frame).to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()})
    models = [m for m in frame["method"].unique() if m not in BASELINES and m != "observed"]
    for model in models:
        for metric in ("pearson_delta", "pearson_delta_top20"):
            for row in compare(frame, model=model, metric=metric).to_dict("records"):
                out.append(
                    dict(
                        method=f"{model}-minus-{row['baseline']}",
                        set=row["set"],
                        reference=row["reference"],
                        metric=f"{metric}_paired_diff",
                        mean=row["mean_diff"],
                        sd=row["sd_diff"],
                        n=row["n"],
                        wins=row["wins"],
                        losses=row["losses"],
                        p_wilcoxon=row["p_wilcoxon"],
                    )
                )
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in out
    ]


def summary_table(frame: pd.DataFrame, metric: str = "pearson_delta", *, digits: int = 3) -> pd.DataFrame:
    """README table of one metric: methods as rows, set (and reference) as columns, ``"0.41 ± 0.05"``.

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
            return f"{row['mean']:.{digits}f} (n={row['n']})"
        return f"{row['mean']:.{digits}f} ± {row['sd']:.{digits}f} (n={row['n']})"

    summary = summary.assign(cell=summary.apply(cell, axis=1))
    column = (
        summary["set"]
        if summary["reference"].nunique() == 1
        else summary["set"] + " / " + summary["reference"]
    )
    summary = summary.assign(column=column)
    table = summary.pivot_table(index="method", columns="column", values="cell", aggfunc="first", sort=False)
    table.columns.name = None
    return table
