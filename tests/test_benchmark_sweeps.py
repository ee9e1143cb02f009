"""The control sweeps of ``benchmarks/unseen_targets.py`` subsample what they say they do."""

from __future__ import annotations

import numpy as np

from benchmarks.unseen_targets import _fewer_training_controls
from lazynet_core import datasets
from lazynet_core.config import PairConfig
from lazynet_core.data import read_screen
from lazynet_core.pairs import make_pairs


def _train_controls(pairs) -> set[int]:
    return set(np.flatnonzero((pairs.cell_pert == -1) & (pairs.cell_role == "train")).tolist())


def test_fewer_training_controls_are_nested_and_leave_the_reference_whole():
    pairs = make_pairs(read_screen(datasets.toy_screen()), PairConfig(seed=0))
    before = pairs.control_mean("train")  # fills the cache, which must not leak into the copies
    available = len(_train_controls(pairs))
    small, large = (_fewer_training_controls(pairs, n, np.random.default_rng([0, 1])) for n in (5, 12))
    assert len(_train_controls(small)) == 5 and len(_train_controls(large)) == 12
    assert _train_controls(small) <= _train_controls(large) <= _train_controls(pairs)
    for sub in (small, large):
        assert np.array_equal(sub.cell_role == "reference", pairs.cell_role == "reference")
        assert np.array_equal(sub.cell_role[pairs.cell_pert >= 0], pairs.cell_role[pairs.cell_pert >= 0])
    kept = sorted(_train_controls(small))
    np.testing.assert_allclose(small.control_mean("train"), np.asarray(pairs.X[kept].mean(axis=0)).ravel(),
                               rtol=1e-6)
    everything = _fewer_training_controls(pairs, available + 50, np.random.default_rng(0))
    assert np.array_equal(everything.cell_role, pairs.cell_role)
    np.testing.assert_allclose(everything.control_mean("train"), before)


def test_interaction_headroom_scores_the_oracle_on_the_combinations_design():
    """``interaction_headroom.py`` scores the planted dynamics like a model: every double of the screen,
    its own nulls beside it; on OR-gate hubs the dynamics' interaction is their count-space addition
    (the oracle and its count-space null agree far better than with its log-space one)."""
    from benchmarks.interaction_headroom import ORACLE, score_design, summarise

    frame = score_design(cells=2400, test_fraction=0.5, redundant=True, screens=(0,), seeds=(0,))
    assert frame["perturbation"].str.startswith("s0:").all()
    summary = summarise(frame)
    r = {m: summary[m]["pearson_interaction"]["mean"] for m in (ORACLE, "dose_only", "dose_only_counts")}
    assert summary[ORACLE]["pearson_interaction"]["n"] == 20
    assert abs(r[ORACLE] - r["dose_only_counts"]) < abs(r[ORACLE] - r["dose_only"]), r
    combo = summary["combination_pearson_delta"]
    assert combo[ORACLE]["mean"] > combo["additive"]["mean"]  # noise-free arms beat the noisy sums
    for method in ("oracle_local_cross", "control_cross", "arm_slope_change"):  # every double read
        assert summary[method]["pearson_interaction"]["n"] == 20
        assert summary["cross_terms_vs_additive_counts"][method]["n"] == 20
    from benchmarks.interaction_headroom import ARM_SLOPE_WEIGHTS
    assert [float(w) for w in summary["arm_slope_added_to_additive_counts"]] == list(ARM_SLOPE_WEIGHTS)
    assert all(row["n"] == 20 for row in summary["arm_slope_added_to_additive_counts"].values())


def test_cross_term_frame_scores_each_reading_under_its_own_name():
    """Each row of ``cross_term_frame`` is its estimator scored against the double's observed interaction;
    a blend row is ``additive_counts`` plus its weight times the arm-slope reading."""
    from benchmarks.interaction_headroom import (
        ARM_SLOPE_WEIGHTS,
        arm_slope_blend_name,
        cross_term_frame,
        local_cross_interaction,
    )
    from lazynet_core.cross_terms import arm_slope_interaction, control_cross_interaction
    from lazynet_core.interactions import (
        additive_counts_interaction,
        double_arms,
        double_interaction,
        interaction_scores,
    )

    raw = datasets.hill_screen(n_genes=40, n_cells=2400, seed=3, n_combinations=3, redundant=True,
                               gate="backup")
    adata = read_screen(raw)
    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, test_fraction=0.5,
                                         seed=0))
    oracle = datasets.planted_hill_predictor(raw, base=pairs.control_mean("train"), genes=pairs.genes)
    frame = cross_term_frame(pairs, oracle)
    p, arms = double_arms(pairs)[0]
    genes = double_interaction(pairs, oracle, p, arms=arms)
    keep = ~genes["is_target"].to_numpy()
    observed = genes["observed"].to_numpy()[keep]
    readings = {"control_cross": control_cross_interaction(pairs, p, arms=arms),
                "arm_slope_change": arm_slope_interaction(pairs, p, arms=arms),
                "oracle_local_cross": local_cross_interaction(oracle, pairs, p, arms=arms)}
    counts = additive_counts_interaction(pairs, arms)
    for w in ARM_SLOPE_WEIGHTS:
        readings[arm_slope_blend_name(w)] = counts + w * readings["arm_slope_change"]
    assert set(frame["method"]) == set(readings)
    label = str(pairs.perturbations[p])
    for method, predicted in readings.items():
        row = frame[(frame["method"] == method) & (frame["perturbation"] == label)]
        scores = interaction_scores(predicted[keep], observed)
        got = dict(zip(row["metric"], row["value"], strict=True))
        np.testing.assert_allclose([got["pearson_interaction"], got["interaction_explained"]],
                                   [scores["pearson_interaction"], scores["interaction_explained"]])


def test_the_oracles_local_cross_term_of_a_known_quadratic_is_its_coefficient_times_the_doses():
    """A dynamics whose gene 2 moves by 0.8·(a − a₀)(b − b₀) + 0.3·a and gene 3 by a only: the second
    difference at the control state, extrapolated, is exactly 0.8·ΔA·ΔB on gene 2 and 0 elsewhere."""
    from benchmarks.interaction_headroom import local_cross_interaction
    from tests.test_metrics import make_fake

    base = np.array([2.0, 3.0, 1.0, 1.0])
    rows = np.vstack([base + 0.1, base - 0.1, [1.0, 3.0, 1.0, 1.0], [1.0, 1.5, 1.0, 1.0]])
    pairs = make_fake(rows, [-1, -1, 2, 2], ["train"] * 2 + ["test"] * 2, ["A", "B", "A+B"],
                      [[0], [1], [0, 1]])
    pre = pairs.pre_state(2, "test")
    da, db = pre[0] - base[0], pre[1] - base[1]
    assert (da, db) == (-1.0, -0.75)

    def dynamics(x):
        x = np.asarray(x, dtype=np.float64)
        out = x.copy()
        out[:, 2] += 0.8 * (x[:, 0] - base[0]) * (x[:, 1] - base[1]) + 0.3 * x[:, 0]
        out[:, 3] += x[:, 0]
        return out

    np.testing.assert_allclose(local_cross_interaction(dynamics, pairs, 2, arms=(0, 1)),
                               [0.0, 0.0, 0.8 * da * db, 0.0], atol=1e-5)  # float32 steps


def test_rehead_swaps_the_observed_records_only_where_the_data_reproduce_them():
    import pytest

    from benchmarks.accuracy import replace_observed

    def rec(method, metric, mean):
        return {"set": "held_out_cells", "reference": "independent", "method": method, "metric": metric,
                "mean": mean, "sd": 0.1, "n": 4}

    stored = [rec("lazynet", "pearson_delta", 0.3), rec("observed", "reliability", 0.2),
              rec("observed", "ceiling", 0.6)]
    fresh = [rec("observed", "split_half_r", 0.15), rec("observed", "reliability", 0.2 + 1e-9),
             rec("observed", "ceiling", 0.51)]
    lines = replace_observed(stored, fresh)
    assert lines == ["held_out_cells · independent: ceiling 0.600 -> 0.510"]
    assert stored[0]["metric"] == "pearson_delta" and stored[1:] == fresh  # the model's rows untouched
    with pytest.raises(ValueError, match="do not reproduce"):
        replace_observed(stored, [rec("observed", "reliability", 0.25)])


def test_trained_doubles_holds_out_only_the_scored_doubles_in_the_half_arm():
    """``trained_doubles.py``'s half arm trains on the unscored doubles; its none arm on no double."""
    from benchmarks.combinations import screen_with_doubles

    adata = screen_with_doubles(0, n_genes=30, n_cells=1500, n_combinations=6, redundant=True, gate="and")
    doubles = tuple(sorted(p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p))
    scored, other = set(doubles[::2]), set(doubles[1::2])
    assert len(scored) == 3 and len(other) == 3
    trained = {}
    for arm, held_out in (("none", doubles), ("half", tuple(sorted(scored)))):
        pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=held_out, seed=0))
        trained[arm] = {str(pairs.perturbations[p]) for p in np.unique(pairs.cell_pert[
            (pairs.cell_pert >= 0) & (pairs.cell_role == "train")])}
    assert not trained["none"] & set(doubles)
    assert trained["half"] & set(doubles) == other
    assert trained["half"] - other == trained["none"]  # the singles train in both arms


def test_trained_doubles_summary_pairs_the_excess_over_the_own_null_between_arms():
    """Known answer: LazyNet 0.3/0.5 over a null of 0.2/0.2 gains 0.2 in the half arm, on every double."""
    import pandas as pd

    from benchmarks.trained_doubles import summarize_arms

    rows = []
    for arm, lazy in (("none_trained", 0.3), ("half_trained", 0.5)):
        for pert, bump in (("a+b", 0.0), ("c+d", 0.1), ("e+f", -0.1)):
            for seed in (0, 1):  # seeds average per double before pairing
                jitter = 0.01 if seed else -0.01
                for method, value in (("lazynet", lazy + bump + jitter), ("dose_only_folds", 0.2 + bump),
                                      ("dose_only", 0.9), ("multiplicative_counts", 0.4)):
                    rows.append({"arm": arm, "method": method, "perturbation": pert, "seed": seed,
                                 "metric": "pearson_interaction", "reference": "independent", "value": value})
    frame = pd.DataFrame(rows)
    noise = frame.assign(reference="training", value=-5.0)  # other references must not leak in
    summary = summarize_arms(pd.concat([frame, noise]), null="dose_only_folds")
    assert summary["own_null"] == "dose_only_folds"
    assert np.isclose(summary["per_arm"]["none_trained"]["lazynet_minus_own_null"], 0.1)
    assert np.isclose(summary["per_arm"]["half_trained"]["lazynet_minus_own_null"], 0.3)
    assert np.isclose(summary["per_arm"]["half_trained"]["multiplicative_counts"], 0.4)
    gain = summary["half_minus_none_excess_over_null"]
    assert np.isclose(gain["mean"], 0.2) and np.isclose(gain["sd"], 0.0, atol=1e-12)
    assert gain["n"] == 3 and gain["wins"] == 3
    assert np.isclose(summary["half_minus_none_lazynet_r"]["mean"], 0.2)


def test_trained_doubles_scores_one_double_per_shared_hub_triad_in_turn():
    import pytest

    from benchmarks.trained_doubles import scored_doubles

    doubles = ("A+B", "A+C", "B+C", "D+E", "D+F", "E+F", "G+H", "G+I", "H+I", "J+K", "J+L", "K+L")
    assert scored_doubles(doubles) == ("A+B", "B+C", "D+F", "G+H", "H+I", "J+L")
    assert scored_doubles(doubles, triads="A+B+C,D+E+F,G+H+I,J+K+L") == ("B+C", "D+F", "G+H", "K+L")
    with pytest.raises(ValueError, match="W\\+Y"):
        scored_doubles(doubles, triads="A+B+C,W+X+Y")
