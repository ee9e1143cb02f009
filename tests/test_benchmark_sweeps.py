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
