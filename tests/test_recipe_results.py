"""The Train page's table of measured results is read from the stored benchmark JSON, never typed in."""

from __future__ import annotations

import json

from lazynet_core.ui.recipe_results import COLUMNS, RESULTS_DIR, recipe_scores


def _run(unseen: float, cells: float, diff: float, p: float) -> dict:
    record = {"set": "held_out_perturbations", "reference": "independent", "method": "lazynet",
              "metric": "pearson_delta", "mean": unseen}
    return {
        "records": [record, {**record, "set": "held_out_cells", "mean": cells},
                    {**record, "reference": "training", "mean": 0.9}],  # flattering: never shown
        "paired": [{"set": "held_out_perturbations", "reference": "independent",
                    "baseline": "control_covariance", "mean_diff": diff, "sd_diff": 0.01, "wins": 40,
                    "n": 48, "p_wilcoxon": p}],
    }


def test_the_table_reads_the_stored_runs_and_judges_by_the_margin_rule(tmp_path):
    (tmp_path / "accuracy_real_anchored.json").write_text(json.dumps(_run(0.25, 0.3, 0.004, 1e-4)))
    (tmp_path / "accuracy_hill_anchored.json").write_text(json.dumps(_run(0.2, 0.16, 0.11, 1e-4)))
    (tmp_path / "accuracy_demo_anchored.json").write_text("{not json")
    (tmp_path / "unseen_targets.json").write_text(json.dumps({"screens": {"hill": {"records": [
        {"method": "pooled_covariance", "metric": "pearson_delta", "mean": 0.212}]}}}))
    table = recipe_scores(tmp_path)
    assert list(table.index) == ["anchored", "baseline: pooled covariance"]
    row = table.loc["anchored"]
    assert row[COLUMNS[1]] == "0.250 · – · 0.200" and row[COLUMNS[4]] == "0.300 · – · 0.160"
    # +0.004 with p = 1e-4 is under the 0.01 margin: a tie, not a win; no pooled comparison stored
    assert row[COLUMNS[2]] == "+0.004 tie · – · +0.110 ahead" and row[COLUMNS[3]] == "–"
    assert table.loc["baseline: pooled covariance", COLUMNS[1]] == "– · – · 0.212"
    assert recipe_scores(tmp_path / "missing") is None


def test_the_repository_has_every_recipe_measured():
    table = recipe_scores(RESULTS_DIR)
    assert {"published", "anchored", "anchored_pooled"} <= set(table.index)
    assert "–" not in table.loc["anchored_pooled", COLUMNS[3]]  # measured beside pooled covariance


def test_never_perturbed_columns_say_which_cells_the_start_read():
    """The Jacobian page's wording of a never-perturbed regulator's column, per recipe."""
    from lazynet_core.config import ModelConfig
    from lazynet_core.ui import services

    assert services.never_perturbed_columns(ModelConfig()) == (False, "")
    controls = services.never_perturbed_columns(ModelConfig(start="control_covariance"))
    pooled = services.never_perturbed_columns(ModelConfig(start="control_covariance", covariance_cells="pooled"))
    assert controls == (True, "the control cells' regression")
    assert pooled[0] and "training perturbed cells" in pooled[1]
