"""A double's interaction read from the screen's cells' co-variation, no model (issue 11, goal 2).

No training pair varies two genes of the pre-state at once, so a model's cross terms at a double are
left to its parameterisation (:mod:`lazynet_core.interactions`). The cells themselves do vary two
genes at once: each cell's targets and their children move with its own noise. To second order
around a state, a double's interaction is the cross term of the map from the two targets' levels to
each gene, ``I ≈ c · ΔA · ΔB``; these estimators read ``c`` from cells that reached training and
predict ``I`` for the double's doses (its targets' levels in its pre-state, as a model gets them):

``control_cross_interaction``
    Over the training control cells, each gene regressed by least squares on the two targets' log
    levels and their product (all centred); ``c`` is the product's coefficient.
``arm_slope_interaction``
    How the arms change the other target's slope: each gene's regression slope on B's level in A's
    training cells minus its slope in the training control cells is ``c`` times A's dose in those
    cells (A moved by the intervention instead of by noise); divided by that dose it is ``c``, times
    the double's ``ΔA · ΔB`` its interaction, averaged with the same read from B's cells. The slopes
    are marginal: clamping A also removes any path from B through A, which the difference mixes in.

Both keep the matrix sparse (no dense cells × genes copy). ``benchmarks/interaction_headroom.py``
scores them beside the planted dynamics' own cross term at the control state, which says how much of
the interaction is local curvature that enough cells would reveal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: fewest training cells a slope or regression is fitted on
MIN_CELLS = 3
#: smallest |dose| (log1p units) of an arm's own target that a slope change is divided by
MIN_DOSE = 1e-3


def _two_single_targets(pairs: Any, arms: tuple[int, ...]) -> tuple[int, int] | None:
    targets = [np.asarray(pairs.pert_targets[int(a)]) for a in arms]
    if len(targets) != 2 or any(t.size != 1 for t in targets):
        return None
    return int(targets[0][0]), int(targets[1][0])


def _doses(pairs: Any, p_idx: int, targets: tuple[int, ...], role: str) -> tuple[float, ...]:
    """The targets' changes from the training control mean in perturbation ``p_idx``'s ``role`` cells."""
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    pre = np.asarray(pairs.pre_state(int(p_idx), role), dtype=np.float64)
    return tuple(float(pre[t] - base[t]) for t in targets)


def _columns(x, idx: np.ndarray, cols: tuple[int, ...]) -> np.ndarray:
    sub = x[idx][:, list(cols)]
    return np.asarray(sub.toarray() if hasattr(sub, "toarray") else sub, dtype=np.float64)


def _design_times_genes(x, idx: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``designᵀ · X[idx]`` (k × genes) without densifying ``X``."""
    rows = x[idx]
    return np.asarray((rows.T @ design).T, dtype=np.float64)


def control_cross_interaction(pairs: Any, p_idx: int, *, arms: tuple[int, ...],
                              role: str = "test") -> np.ndarray | None:
    """Interaction of a double predicted from its targets' co-variation among training controls.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs` (or anything with its ``X``, ``cells``, ``pert_targets``,
        ``control_mean`` and ``pre_state``).
    p_idx
        Index of the double in ``pairs.perturbations``.
    arms
        Indices of its two single arms (:func:`lazynet_core.interactions.double_arms`).
    role
        Role of the double's cells whose target levels set its doses.

    Returns
    -------
    numpy.ndarray or None
        ``c · ΔA · ΔB`` per gene (module docstring), log space, all genes; None unless the double has
        two arms of one target each and at least five training controls with a non-degenerate
        design.
    """
    targets = _two_single_targets(pairs, arms)
    idx = pairs.cells(-1, "train")
    if targets is None or len(idx) < 5:  # four coefficients
        return None
    levels = _columns(pairs.X, idx, targets)
    levels -= levels.mean(axis=0)
    product = levels[:, 0] * levels[:, 1]
    design = np.column_stack([np.ones(len(idx)), levels, product - product.mean()])
    gram = design.T @ design
    if np.linalg.matrix_rank(gram) < gram.shape[0]:
        return None
    coef = np.linalg.solve(gram, _design_times_genes(pairs.X, idx, design))
    da, db = _doses(pairs, p_idx, targets, role)
    return coef[3] * da * db


def _slopes_on(pairs: Any, idx: np.ndarray, gene: int) -> np.ndarray | None:
    """Every gene's least-squares slope on ``gene``'s level over cells ``idx`` (None if it is constant)."""
    if len(idx) < MIN_CELLS:
        return None
    x = _columns(pairs.X, idx, (gene,))[:, 0]
    centre = x.mean()
    x -= centre
    ss = float(x @ x)
    if ss <= 1e-12 * len(x) * max(1.0, centre**2):  # constant up to rounding of the mean
        return None
    return _design_times_genes(pairs.X, idx, x[:, None])[0] / ss  # Σ x_c · y = Σ x_c · (y − ȳ)


def arm_slope_interaction(pairs: Any, p_idx: int, *, arms: tuple[int, ...],
                          role: str = "test") -> np.ndarray | None:
    """Interaction of a double predicted from how each arm changes the other target's slopes.

    Parameters
    ----------
    pairs
        A :class:`lazynet_core.pairs.Pairs` (see :func:`control_cross_interaction`).
    p_idx
        Index of the double in ``pairs.perturbations``.
    arms
        Indices of its two single arms; their training cells and the training controls are used.
    role
        Role of the double's cells whose target levels set its doses.

    Returns
    -------
    numpy.ndarray or None
        ``½ Σ_k (slope on the other target in arm k's training cells − slope in controls) / d_k ·
        ΔA · ΔB`` per gene (log space, all genes), ``d_k`` arm k's dose of its own target in those
        cells and ``ΔA · ΔB`` the double's doses; None unless both arms have one target, every slope
        is defined (at least :data:`MIN_CELLS` cells with the other target varying) and each arm
        moved its target by at least :data:`MIN_DOSE`.
    """
    targets = _two_single_targets(pairs, arms)
    if targets is None:
        return None
    double = _doses(pairs, p_idx, targets, role)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    controls = pairs.cells(-1, "train")
    out = np.zeros(pairs.n_genes, dtype=np.float64)
    for k in (0, 1):
        cells = pairs.cells(int(arms[k]), "train")
        own = float(np.asarray(pairs.pert_mean(int(arms[k]), "train"), dtype=np.float64)[targets[k]]
                    - base[targets[k]])  # NaN without cells: refused below
        in_arm = _slopes_on(pairs, cells, targets[1 - k])
        in_controls = _slopes_on(pairs, controls, targets[1 - k])
        if in_arm is None or in_controls is None or not abs(own) >= MIN_DOSE:
            return None
        out += 0.5 * (in_arm - in_controls) / own * double[0] * double[1]
    return out
