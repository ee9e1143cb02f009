"""Known answers for a double's interaction read from the cells' co-variation
(``lazynet_core.cross_terms``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lazynet_core import datasets
from lazynet_core.config import PairConfig
from lazynet_core.cross_terms import arm_slope_interaction, control_cross_interaction
from lazynet_core.data import read_screen
from lazynet_core.interactions import double_arms
from lazynet_core.pairs import make_pairs
from tests.test_metrics import make_fake

GRID = np.array(list(itertools.product([-1.0, 0.0, 1.0], repeat=2)))  # a, b: centred, uncorrelated


def _screen(controls, arm_a, arm_b, double):
    """Genes a, b (the targets), g, h; perturbations A (a), B (b), A+B; the double's cells held out."""
    rows = np.vstack([controls, arm_a, arm_b, double])
    cell_pert = [-1] * len(controls) + [0] * len(arm_a) + [1] * len(arm_b) + [2] * len(double)
    roles = ["train"] * (len(rows) - len(double)) + ["test"] * len(double)
    return make_fake(rows, cell_pert, roles, ["A", "B", "A+B"], [[0], [1], [0, 1]])


def _cells(a, b, g, h):
    return np.column_stack([a, b, g, h]) + 5.0


def test_control_cross_term_by_hand():
    # Controls: g = 0.5a − 0.3b + 0.7ab, h = a (no cross term). The double's cells put a at −1.5 and
    # b at −0.5 from the control mean: I = 0.7 · (−1.5) · (−0.5) for g, 0 for h and the targets.
    a, b = GRID.T
    controls = _cells(a, b, 0.5 * a - 0.3 * b + 0.7 * a * b, a)
    arm = _cells([0.0], [0.0], [0.0], [0.0])
    double = _cells([-1.5, -1.5], [-0.5, -0.5], [9.0, -9.0], [3.0, 3.0])  # g, h of the double: unused
    pairs = _screen(controls, arm, arm, double)
    predicted = control_cross_interaction(pairs, 2, arms=(0, 1))
    assert_allclose(predicted, [0.0, 0.0, 0.7 * 0.75, 0.0], atol=1e-12)


def test_control_cross_term_is_recovered_from_noisy_cells():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 0.5, (2, 4000))
    noise = rng.normal(0.0, 0.2, (2, a.size))
    controls = _cells(a, b, 0.4 * a + 0.6 * a * b + noise[0], noise[1])
    arm = _cells([0.0], [0.0], [0.0], [0.0])
    pairs = _screen(controls, arm, arm, _cells([-2.0] * 2, [-1.0] * 2, [0.0] * 2, [0.0] * 2))
    centre = controls[:, :2].mean(axis=0) - 5.0
    doses = (-2.0 - centre[0]) * (-1.0 - centre[1])
    predicted = control_cross_interaction(pairs, 2, arms=(0, 1)) / doses
    assert predicted[2] == pytest.approx(0.6, abs=0.03)  # standard error ≈ 0.006
    assert abs(predicted[3]) < 0.03


def test_arm_slope_change_by_hand():
    # Controls: g = 0.5a + 1·b. A's cells knock a to −0.5, where g's slope on b is 1 + 2·(−0.5) = 0;
    # B's cells knock b to −1, where its slope on a is 0.5 + 2·(−1) = −1.5: both say c = 2 once divided
    # by the arm's own dose. The double's doses ΔA = −1.5, ΔB = −2 give I_g = 2 · 3 = 6; h's slopes
    # never change: 0.
    a, b = GRID.T
    controls = _cells(a, b, 0.5 * a + b, a - b)
    s = np.array([-1.0, 0.0, 1.0])
    arm_a = _cells(np.full(3, -0.5), s, 0.0 * s, -0.5 - s)
    arm_b = _cells(s, np.full(3, -1.0), -1.5 * s, s + 1.0)
    pairs = _screen(controls, arm_a, arm_b, _cells([-1.5], [-2.0], [0.0], [0.0]))
    predicted = arm_slope_interaction(pairs, 2, arms=(0, 1))
    assert_allclose(predicted[2:], [6.0, 0.0], atol=1e-12)


def test_estimators_refuse_what_they_cannot_fit():
    a, b = GRID.T
    controls = _cells(a, b, a * b, a)
    flat = _cells(np.full(3, -1.0), np.zeros(3), np.zeros(3), np.zeros(3))  # b never varies in A's cells
    pairs = _screen(controls, flat, flat, _cells([-1.0], [-1.0], [0.0], [0.0]))
    assert arm_slope_interaction(pairs, 2, arms=(0, 1)) is None
    assert control_cross_interaction(pairs, 2, arms=(0,)) is None  # one arm
    rng = np.random.default_rng(1)
    four = _cells(*rng.normal(0.0, 1.0, (4, 4)))  # a full-rank design, but no residual left
    few = _screen(four, flat, flat, _cells([-1.0], [-1.0], [0.0], [0.0]))
    assert control_cross_interaction(few, 2, arms=(0, 1)) is None
    many = _cells(a, a, a * a, a)  # b moves with a: the design is collinear however many cells
    collinear = _screen(np.vstack([many, many]), flat, flat, _cells([-1.0], [-1.0], [0.0], [0.0]))
    assert control_cross_interaction(collinear, 2, arms=(0, 1)) is None
    weak = _cells(np.full(3, 0.0), np.array([-1.0, 0.0, 1.0]), np.zeros(3), np.zeros(3))  # a not moved
    no_dose = _screen(controls, weak, weak, _cells([-1.0], [-1.0], [0.0], [0.0]))
    assert arm_slope_interaction(no_dose, 2, arms=(0, 1)) is None  # a slope change per nothing
    triple = make_fake(np.vstack([controls, flat, flat, flat[:1]]), [-1] * 9 + [0] * 3 + [1] * 3 + [2],
                       ["train"] * 15 + ["test"], ["A", "B", "A+B"], [[0, 2], [1], [0, 1, 2]])
    assert control_cross_interaction(triple, 2, arms=(0, 1)) is None  # an arm with two targets
    assert arm_slope_interaction(triple, 2, arms=(0, 1)) is None


def test_sparse_estimates_match_dense_least_squares_on_a_hill_screen():
    raw = datasets.hill_screen(n_genes=40, n_cells=2400, seed=3, n_combinations=3, redundant=True,
                               gate="backup")
    adata = read_screen(raw)
    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, test_fraction=0.5, seed=0))
    p, arms = double_arms(pairs)[0]
    ta, tb = (int(pairs.pert_targets[a][0]) for a in arms)
    dense = pairs.X[pairs.cells(-1, "train")].toarray().astype(np.float64)
    x = dense[:, [ta, tb]] - dense[:, [ta, tb]].mean(axis=0)
    design = np.column_stack([np.ones(len(x)), x, x[:, 0] * x[:, 1]])
    coef = np.linalg.lstsq(design, dense, rcond=None)[0]
    pre, base = pairs.pre_state(p, "test"), pairs.control_mean("train")
    expected = coef[3] * (pre[ta] - base[ta]) * (pre[tb] - base[tb])
    assert_allclose(control_cross_interaction(pairs, p, arms=arms), expected, rtol=1e-6, atol=1e-9)
    arm_a = pairs.X[pairs.cells(arms[0], "train")].toarray().astype(np.float64)
    arm_b = pairs.X[pairs.cells(arms[1], "train")].toarray().astype(np.float64)
    c_a = (np.polyfit(arm_a[:, tb], arm_a, 1)[0] - np.polyfit(dense[:, tb], dense, 1)[0]) / (
        arm_a[:, ta].mean() - base[ta])
    c_b = (np.polyfit(arm_b[:, ta], arm_b, 1)[0] - np.polyfit(dense[:, ta], dense, 1)[0]) / (
        arm_b[:, tb].mean() - base[tb])
    expected = 0.5 * (c_a + c_b) * (pre[ta] - base[ta]) * (pre[tb] - base[tb])
    assert_allclose(arm_slope_interaction(pairs, p, arms=arms), expected, rtol=1e-4, atol=1e-8)  # float32
