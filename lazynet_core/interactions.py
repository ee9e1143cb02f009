"""Genetic interaction of a double perturbation, scored on cells that never reached training.

The combinations figure (:func:`lazynet_core.metrics.evaluate`, set ``combinations``) scores a
predicted double against its observed change; the additive model already gets most of it right,
since most genes move with one arm only. What the multiplicative model claims beyond that is the
**interaction**, the part of the double that the single arms do not explain (all in log space,
where the additive model is the null of no interaction)::

    I = Δ(A+B) − Δ(A) − Δ(B)

- **observed** ``I``: the held-out cells of ``A+B``, of ``A`` and of ``B`` (role ``"test"``: held-out
  cells of single arms that were trained on, or all cells of an arm held out as an unseen target)
  and the independent control reference. No cell on
  this side ever reached training, so nothing the model fitted can correlate with its noise.
- **predicted** ``I``: the model's own predictions at the three pre-states (training control mean
  with the targets set to their level in those held-out cells), so that the model's error on the
  singles cancels, as the additive model's does.

Metrics per double (target genes excluded):

``pearson_interaction``
    Pearson r of predicted vs observed ``I``. The additive model predicts ``I = 0``: NaN, like
    every constant prediction (:mod:`lazynet_core.metrics`); test it against 0 instead.
``interaction_explained``
    ``1 − ||I_obs − I_pred||² / ||I_obs||²``: the share of the observed interaction the prediction
    explains. Exactly 0 for the additive model, negative for an interaction that is not there.
Methods: the model; ``additive`` (``I = 0``); ``additive_counts``, the arms' training changes added
in expression (count) space instead of log space, ``log1p(Σ expm1(arm) − (n − 1)·expm1(control))``:
no model, but it does predict an interaction (an OR gate that each arm halves, the double shuts), so
it says whether a simple principle already gets the interaction that a model should;
``multiplicative_counts``, the arms' fold changes of expression multiplied (their log changes added
without log1p's pseudo-count), the same for a gene that needs both regulators (an AND gate).

``dose_only`` is the model's own no-interaction null on the same inputs: the double's predicted
change replaced by the sum of its arms' predicted changes, each arm taken alone at its level in the
double's cells, ``I_dose = F(A@AB) + F(B@AB) − F(A) − F(B)``. It is not 0 when the knock-downs are
stronger or weaker in the double's cells than in the arms', so a model's ``I`` counts as learned
only where it beats ``dose_only`` (paired), not just 0.

``dose_only_counts`` is the same null with the arms' predicted changes added in count space,
``log1p(Σ expm1 F(a@AB) − (n − 1)·expm1 F(0))`` in place of the double's prediction. A model whose
output adds its inputs' effects in expression (``ModelConfig(output="counts")``, near the control
state) matches it by construction; only what it predicts beyond it is learned beyond that form.
``dose_only_folds`` likewise multiplies the arms' predicted fold changes of expression
(:func:`lazynet_core.metrics.multiplicative_counts_post`), the form of ``ModelConfig(output="fold")``.

``split_half_r``, ``reliability``, ``ceiling`` (method ``observed``)
    The r of the observed ``I`` of two halves (every side halved), its Spearman–Brown reliability and
    that reliability's square root, the noise ceiling of ``pearson_interaction`` (NaN where the halves
    disagree). A set's ceiling is :func:`lazynet_core.metrics.set_ceiling` of the doubles' mean
    split-half r, never the mean of the defined per-double ceilings: an interaction is mostly noise,
    and on pure noise half the doubles get a ceiling, averaging 0.34 (``benchmarks/interaction_headroom.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lazynet_core.metrics import (
    _pearson,
    additive_counts_post,
    multiplicative_counts_post,
    reference_mean,
    root_reliability,
    set_ceiling,
    spearman_brown,
)

INTERACTION_METRICS = ("pearson_interaction", "interaction_explained")


def double_arms(pairs: Any, *, role: str = "test") -> list[tuple[int, tuple[int, ...]]]:
    """Doubles held out entirely (no training or validation cell: validation cells choose the
    early-stopping checkpoint) whose every single arm has ``role`` cells.

    Returns
    -------
    list of (double index, arm indices)
        Indices into ``pairs.perturbations``; an arm is the single perturbation whose label is one
        part of the double's label ``"A+B"``.
    """
    labels = [str(p) for p in pairs.perturbations]
    index = {label: i for i, label in enumerate(labels)}
    roles = np.asarray(pairs.cell_role)
    seen = set(np.asarray(pairs.cell_pert)[(roles == "train") | (roles == "val")].tolist())
    out = []
    for p, label in enumerate(labels):
        parts = label.split("+")
        if len(parts) < 2 or p in seen or len(pairs.cells(p, role)) < 2:
            continue
        arms = tuple(index.get(part, -1) for part in parts)
        if all(a >= 0 and len(pairs.cells(a, role)) >= 2 for a in arms):
            out.append((p, arms))
    return out


def _interaction(double: np.ndarray, arms: list[np.ndarray], base: np.ndarray) -> np.ndarray:
    """``Δ(double) − Σ Δ(arm)`` with every Δ taken from ``base``."""
    return (double - base) - sum(a - base for a in arms)


def interaction_frame(
    pairs: Any,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    name: str = "lazynet",
    role: str = "test",
    ceiling: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Score the predicted interaction of every held-out double against independent cells.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs` whose doubles were held out (``PairConfig.held_out``)
        while their single arms kept held-out cells (the perturbation split holds out
        ``test_fraction`` of every trained perturbation's cells).
    predict
        Maps pre states (n, G) float32 to predicted post states, e.g. ``Ensemble.predict``.
    name
        Method label of ``predict``. The additive model (``I = 0``) is added as ``"additive"``, the
        count-space additive model as ``"additive_counts"``, the arms' folds multiplied as
        ``"multiplicative_counts"`` and ``predict``'s own arms at the
        double's doses as ``"dose_only"`` (added in log space) and ``"dose_only_counts"`` (added in
        count space; module docstring).
    role
        Role of the evaluated cells of the double and of its arms.
    ceiling
        Add the split-half ceiling rows (method ``observed``).
    seed
        Seed of the split halves.

    Returns
    -------
    pandas.DataFrame
        Tidy like :func:`lazynet_core.metrics.evaluate`: ``set`` (``"combinations"``), ``role``,
        ``reference`` (``"independent"``), ``method``, ``perturbation``, ``metric``, ``value``.
        Empty when no double qualifies.
    """
    records = []
    for p, arms in double_arms(pairs, role=role):
        genes = double_interaction(pairs, predict, p, arms=arms, role=role)
        keep = ~genes["is_target"].to_numpy()
        predicted, observed = genes["predicted"].to_numpy()[keep], genes["observed"].to_numpy()[keep]
        label = str(pairs.perturbations[p])
        counts = additive_counts_interaction(pairs, arms)
        folds = multiplicative_counts_interaction(pairs, arms)
        methods = [(name, predicted), ("additive", np.zeros_like(observed)),
                   ("dose_only", genes["dose_only"].to_numpy()[keep]),
                   ("dose_only_counts", genes["dose_only_counts"].to_numpy()[keep]),
                   ("dose_only_folds", genes["dose_only_folds"].to_numpy()[keep])]
        if counts is not None:
            methods.append(("additive_counts", counts[keep]))
        if folds is not None:
            methods.append(("multiplicative_counts", folds[keep]))
        for method, pred in methods:
            for metric, value in interaction_scores(pred, observed).items():
                records.append((method, label, metric, value))
        if ceiling:
            r_half = interaction_split_half_r(pairs, (p, *arms), role, seed=seed)
            rel = spearman_brown(r_half)
            records.append(("observed", label, "split_half_r", r_half))
            records.append(("observed", label, "reliability", rel))
            records.append(("observed", label, "ceiling", root_reliability(rel)))
    frame = pd.DataFrame.from_records(records, columns=["method", "perturbation", "metric", "value"])
    frame.insert(0, "set", "combinations")
    frame.insert(1, "role", role)
    frame.insert(2, "reference", "independent")
    return frame


def double_interaction(
    pairs: Any,
    predict: Callable[[np.ndarray], np.ndarray],
    p_idx: int,
    *,
    arms: tuple[int, ...],
    role: str = "test",
) -> pd.DataFrame:
    """Predicted and observed interaction of one double, gene by gene.

    ``arms`` are the indices of its single arms (:func:`double_arms`).

    Returns
    -------
    pandas.DataFrame
        ``gene``, ``observed``, ``predicted`` (``I`` of the module docstring), ``dose_only`` and
        ``dose_only_counts`` and ``dose_only_folds`` (the same model's no-interaction nulls on the
        same inputs, its arms added in log and in count space, and their folds multiplied) and
        ``is_target`` (the double's targets: their levels are inputs, so they are left out of every score).
    """
    ref = np.asarray(reference_mean(pairs, "independent"), dtype=np.float64)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    sides = (int(p_idx), *(int(a) for a in arms))
    pre = np.stack([np.asarray(pairs.pre_state(s, role), dtype=np.float32) for s in sides])
    at_double = np.repeat(base[None, :].astype(np.float32), len(arms), axis=0)  # each arm alone,
    for row, a in enumerate(arms):  # at its level in the double's cells
        at_double[row, pairs.pert_targets[a]] = pre[0, pairs.pert_targets[a]]
    inputs = np.vstack([pre, base[None, :].astype(np.float32), at_double])
    out = np.asarray(predict(inputs), dtype=np.float64).reshape(len(inputs), -1)
    n_sides = len(sides)
    rows = [*sides, None, *arms]  # the perturbation whose targets each input row sets
    for row, s in enumerate(rows):  # the do-intervention: targets stay at their input level
        if s is not None:
            out[row, pairs.pert_targets[s]] = inputs[row, pairs.pert_targets[s]]
    means = [np.asarray(pairs.pert_mean(s, role), dtype=np.float64) for s in sides]
    control_out, alone, at_dose = out[n_sides], out[1:n_sides], out[n_sides + 1:]
    extra = len(arms) - 1
    counts_post = np.log1p(np.maximum(np.expm1(at_dose).sum(axis=0) - extra * np.expm1(control_out), 0.0))
    folds_post = multiplicative_counts_post(list(at_dose), control_out)
    is_target = np.zeros(pairs.n_genes, dtype=bool)
    is_target[pairs.pert_targets[sides[0]]] = True
    return pd.DataFrame({
        "gene": np.asarray(pairs.genes, dtype=str),
        "observed": _interaction(means[0], means[1:], ref),
        "predicted": _interaction(out[0], list(out[1:n_sides]), out[n_sides]),
        "dose_only": at_dose.sum(axis=0) - alone.sum(axis=0),
        "dose_only_counts": counts_post - alone.sum(axis=0) + extra * control_out,
        "dose_only_folds": folds_post - alone.sum(axis=0) + extra * control_out,
        "is_target": is_target,
    })


def additive_counts_interaction(pairs: Any, arms: tuple[int, ...]) -> np.ndarray | None:
    """Interaction predicted by adding the arms' training changes in count space (all genes).

    ``log1p(Σ expm1(m_a) − (n − 1)·expm1(c)) − Σ m_a + (n − 1)·c`` with ``m_a`` the arms' training
    means and ``c`` the training control mean (log space), clipped at no expression. None when an
    arm has no training cells.
    """
    return _training_arms_interaction(pairs, arms, additive_counts_post)


def multiplicative_counts_interaction(pairs: Any, arms: tuple[int, ...]) -> np.ndarray | None:
    """Interaction predicted by multiplying the arms' training fold changes of expression (all genes).

    :func:`lazynet_core.metrics.multiplicative_counts_post` of the arms' training means, less their
    log1p changes: the part of log1p's pseudo-count alone, large only where a gene has few counts.
    None when an arm has no training cells.
    """
    return _training_arms_interaction(pairs, arms, multiplicative_counts_post)


def _training_arms_interaction(pairs: Any, arms: tuple[int, ...], combine) -> np.ndarray | None:
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    means = [np.asarray(pairs.pert_mean(int(a), "train"), dtype=np.float64) for a in arms]
    if not all(np.isfinite(m).all() for m in means):
        return None
    return _interaction(combine(means, base), means, base)


def interaction_scores(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float]:
    """``pearson_interaction`` and ``interaction_explained`` of one double (see the module)."""
    ss = float(observed @ observed)
    resid = observed - predicted
    return {
        "pearson_interaction": _pearson(predicted, observed),
        "interaction_explained": 1.0 - float(resid @ resid) / ss if ss > 0 else np.nan,
    }


def interaction_ceiling(pairs: Any, sides: tuple[int, ...], role: str, *, seed: int = 0) -> float:
    """√ of the split-half reliability of the observed interaction of ``sides = (double, *arms)``
    (:func:`interaction_split_half_r`, Spearman–Brown corrected); NaN when the halves do not agree."""
    return root_reliability(spearman_brown(interaction_split_half_r(pairs, sides, role, seed=seed)))


def interaction_split_half_r(pairs: Any, sides: tuple[int, ...], role: str, *, seed: int = 0) -> float:
    """The r of two halves' observed interaction of ``sides = (double, *arms)``.

    The cells of each side and the independent control reference are each split into two random
    disjoint halves; the Pearson r of the halves' interactions over non-target genes (not
    corrected). Negative when the halves disagree; NaN on pairs streamed from disk.
    """
    if getattr(pairs, "streamed", False):
        return float("nan")  # streamed pairs keep perturbation means, not the rows to halve
    rng = np.random.default_rng([seed, *sides])
    keep = np.ones(pairs.n_genes, dtype=bool)
    keep[pairs.pert_targets[sides[0]]] = False
    cells = [rng.permutation(pairs.cells(s, role)) for s in sides]
    ref = rng.permutation(pairs.cells(-1, "reference"))
    halves = []
    for h in (0, 1):
        means = [np.asarray(pairs._mean(c[h::2]), dtype=np.float64) for c in cells]
        ref_half = np.asarray(pairs._mean(ref[h::2]), dtype=np.float64)
        halves.append(_interaction(means[0], means[1:], ref_half)[keep])
    return _pearson(*halves)


def interaction_summary(frame: pd.DataFrame, *, model: str = "lazynet") -> dict[str, Any]:
    """The interaction figures of ``model`` in words that cannot overclaim.

    Per double (seeds averaged first): mean ± sd of both metrics; ``interaction_explained`` paired
    against the additive model (which explains exactly 0), and ``pearson_interaction`` tested
    against 0 (the additive model's r is undefined); two-sided Wilcoxon signed-rank tests. The
    ceiling is :func:`lazynet_core.metrics.set_ceiling` of the doubles' mean split-half r (``n``: the
    doubles with one).
    """
    from scipy import stats

    from lazynet_core.metrics import _per_perturbation

    per = _per_perturbation(frame)
    out: dict[str, Any] = {"model": model}
    for metric in INTERACTION_METRICS:
        values = per[(per["method"] == model) & (per["metric"] == metric)]["value"].dropna().to_numpy()
        p = float(stats.wilcoxon(values).pvalue) if values.size >= 2 and np.any(values != 0) else np.nan
        out[metric] = {
            "mean": float(values.mean()) if values.size else np.nan,
            "sd": float(values.std(ddof=1)) if values.size > 1 else np.nan,
            "n": int(values.size),
            "above_zero": int((values > 0).sum()),
            "p_wilcoxon_vs_zero": p,
        }
    halves = per[(per["method"] == "observed") & (per["metric"] == "split_half_r")]["value"].dropna()
    out["ceiling"] = {"mean": set_ceiling(halves.mean()) if len(halves) else np.nan, "n": int(len(halves))}
    return out
