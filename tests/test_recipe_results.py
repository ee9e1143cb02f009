"""The Train page's table of measured results is read from the stored benchmark JSON, never typed in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lazynet_core.ui import recipe_results
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
    pooled = services.never_perturbed_columns(
        ModelConfig(start="control_covariance", covariance_cells="pooled"))
    assert controls == (True, "the control cells' regression")
    assert pooled[0] and "training perturbed cells" in pooled[1]


def test_pooling_measured_reads_the_unseen_targets_file(tmp_path):
    from lazynet_core.ui.recipe_results import pooling_measured

    assert pooling_measured(tmp_path) is None  # no benchmarks next to an installed package
    row = {"model": "pooled_covariance", "baseline": "control_covariance",
           "mean_diff": 0.08, "p_wilcoxon": 4e-10}
    paired = [row, {**row, "model": "ccov_adjusted", "mean_diff": 9.0, "p_wilcoxon": 1.0}]
    (tmp_path / "unseen_targets.json").write_text(json.dumps({"screens": {
        "demo": {"slope_agreement": {"controls_vs_controls": 0.01}, "paired": paired},
        "real": {"paired": paired}}}))  # no agreement stored: left out
    assert pooling_measured(tmp_path) == {"demo": {"r": 0.01, "gain": 0.08, "p": 4e-10}}


@pytest.mark.parametrize(("r", "r_pert", "says"), [
    (0.94, 0.93, "largely reproducible"),
    (0.01, 0.02, "mostly noise"),
    (0.9, 0.3, "co-vary differently"),
    (0.45, float("nan"), "median r = 0.45."),
    (-0.4, float("nan"), "r = −0.40: the halves disagree systematically"),
    (float("nan"), float("nan"), "Too few training control cells"),
])
def test_slope_agreement_sentence_per_case(r, r_pert, says):
    from lazynet_core.observational import SlopeAgreement
    from lazynet_core.ui import services

    measured = {"real": {"r": 0.93, "gain": -0.015, "p": 0.41}, "hill": {"r": 0.05, "gain": 0.112, "p": 6e-5}}
    text = services.slope_agreement_sentence(SlopeAgreement(100, 500, 50, r, r_pert), measured)
    assert says in text
    if np.isfinite(r):
        assert "real TAP-seq (r 0.93) −0.015, p = 0.41; Hill (r 0.05) +0.112, p = 6e−05" in text
        assert "= -" not in text and "−0.015" in text  # typographic minus on every number
    assert "Benchmarks" not in services.slope_agreement_sentence(SlopeAgreement(100, 500, 50, r, r_pert))


def test_interaction_measured_reads_the_combinations_and_headroom_files(tmp_path):
    from lazynet_core.ui.recipe_results import INTERACTION_DESIGN, RESULTS_DIR, interaction_measured
    from lazynet_core.ui.services import interaction_measured_sentence

    assert interaction_measured(tmp_path) is None  # no benchmarks next to an installed package
    assert interaction_measured_sentence(None) is None

    def r(value):
        return {"pearson_interaction": {"mean": value}}

    (tmp_path / f"combinations_published{INTERACTION_DESIGN}.json").write_text(json.dumps(
        {"interaction": {"lazynet": r(0.03), "dose_only": r(0.028)}}))
    counts = {"lazynet": r(0.21), "dose_only": r(0.02), "dose_only_counts": r(0.22),
              "additive_counts": r(0.25)}
    (tmp_path / f"combinations_anchored_counts{INTERACTION_DESIGN}.json").write_text(
        json.dumps({"interaction": counts}))
    assert interaction_measured(tmp_path) is None  # the oracle's file is missing
    summary = {"planted_oracle": {**r(0.34), "ceiling": {"mean": 0.35, "n": 60}}, "dose_only_counts": r(0.32)}
    (tmp_path / "interaction_headroom.json").write_text(json.dumps({"results": [
        {"cells": 5000, "redundant": True, "summary": {**summary, "planted_oracle": r(0.9)}},
        {"cells": 10000, "redundant": True, "summary": summary}]}))
    measured = interaction_measured(tmp_path)
    assert measured == {"published": 0.03, "published_null": 0.028, "counts": 0.21, "counts_log_null": 0.02,
                        "counts_null": 0.22, "additive_counts": 0.25, "ceiling": 0.35, "oracle": 0.34,
                        "oracle_counts_null": 0.32}
    sentence = interaction_measured_sentence(measured)
    assert "AND gates" not in sentence  # not run: not claimed
    assert "noise ceiling 0.35" in sentence and "score 0.34" in sentence and "in counts 0.32" in sentence
    (tmp_path / "combinations_published_redundant_and_10000cells_tf0.5.json").write_text(json.dumps(
        {"interaction": {"lazynet": r(0.09), "dose_only": r(0.074)}}))
    (tmp_path / "interaction_headroom.json").write_text(json.dumps({"results": [
        {"cells": 10000, "redundant": True, "summary": summary},
        {"cells": 10000, "redundant": True, "gate": "and", "summary": {"planted_oracle": r(0.38),
                                                                       "dose_only": r(0.08),
                                                                       "multiplicative_counts": r(0.39)}}]}))
    measured = interaction_measured(tmp_path)
    keys = ("and_published", "and_published_null", "and_oracle", "and_oracle_null", "and_multiplicative")
    expected = {"and_published": 0.09, "and_published_null": 0.074, "and_oracle": 0.38,
                "and_oracle_null": 0.08,
                "and_multiplicative": 0.39}
    assert {k: measured[k] for k in keys} == expected
    assert "and_folds" not in measured and "anchored_folds" not in interaction_measured_sentence(measured)
    assert measured["oracle"] == 0.34  # the OR screens' oracle, not the AND one
    sentence = interaction_measured_sentence(measured)
    assert "AND gates" in sentence and "oracle 0.38" in sentence
    assert "(0.090 against its null 0.074)" in sentence and "no model, score 0.39" in sentence
    (tmp_path / "combinations_anchored_folds_redundant_and_10000cells_tf0.5.json").write_text(json.dumps(
        {"interaction": {"lazynet": r(0.31)}}))
    assert "and_folds" not in interaction_measured(tmp_path)  # a run without its folds null: not claimed
    (tmp_path / "combinations_anchored_folds_redundant_and_10000cells_tf0.5.json").write_text(json.dumps(
        {"interaction": {"lazynet": r(0.31), "dose_only_folds": r(0.305)}}))
    measured = interaction_measured(tmp_path)
    assert (measured["and_folds"], measured["and_folds_null"]) == (0.31, 0.305)
    assert ("anchored_folds, whose output multiplies folds, 0.31, all of it from that output form "
            "(its folds-multiplied null 0.30)") in interaction_measured_sentence(measured)
    assert "backup" not in interaction_measured_sentence(measured)  # not run: not claimed
    (tmp_path / "trained_doubles_backup_anchored_counts.json").write_text(json.dumps({"summary": {"per_arm": {
        "none_trained": {"lazynet": 0.114, "dose_only_counts": 0.12},
        "half_trained": {"lazynet": 0.16, "lazynet_minus_own_null": -0.002}}}}))
    assert "backup_oracle" not in interaction_measured(tmp_path)  # no headroom row for the backup hubs
    rows = json.loads((tmp_path / "interaction_headroom.json").read_text())["results"]
    rows.append({"cells": 10000, "redundant": True, "gate": "backup",
                 "summary": {"planted_oracle": r(0.43), "dose_only_counts": r(0.32),
                             "additive_counts": r(0.18)}})
    (tmp_path / "interaction_headroom.json").write_text(json.dumps({"results": rows}))
    measured = interaction_measured(tmp_path)
    assert measured["oracle"] == 0.34 and measured["and_oracle"] == 0.38  # each gate reads its own row
    assert {k: v for k, v in measured.items() if k.startswith("backup")} == {
        "backup_oracle": 0.43, "backup_oracle_counts_null": 0.32, "backup_additive_counts": 0.18,
        "backup_counts": 0.114, "backup_counts_null": 0.12, "backup_trained_excess": -0.002}
    sentence = interaction_measured_sentence(measured)
    assert "the oracle scores 0.43 (its own arms added in counts 0.32) against 0.18" in sentence
    assert "anchored_counts (on half of these doubles) 0.11, level with its count-space null 0.12" in sentence
    assert "trained -0.002 from it: LazyNet does not learn this interaction." in sentence
    assert interaction_measured(RESULTS_DIR) is not None  # the repository's own files are complete
    assert "backup_oracle" in interaction_measured(RESULTS_DIR)


def test_the_default_recipe_sentence_reads_the_stored_head_to_head(tmp_path):
    sentence = recipe_results.default_recipe_sentence()  # the repository's own file
    assert sentence and sentence.startswith("**published**") and "not significantly ahead" in sentence

    def write(rows, first="published"):
        (tmp_path / recipe_results.DEFAULT_COMPARISON).write_text(
            json.dumps({"first": first, "second": "anchored", "rows": rows}))
        return recipe_results.default_recipe_sentence(results_dir=tmp_path)

    rows = [{"screen": "real", "set": "held_out_cells", "diff": 0.03, "p_wilcoxon": 0.2, "wins": 9, "n": 13},
            {"screen": "real", "set": "combinations", "diff": 0.5, "p_wilcoxon": 0.001, "wins": 4, "n": 4},
            {"screen": "hill", "set": "held_out_perturbations", "diff": -0.02, "p_wilcoxon": 0.01, "wins": 5,
             "n": 48},
            {"screen": "demo", "set": "held_out_cells", "diff": 0.05, "p_wilcoxon": 1e-4, "wins": 40,
             "n": 64}]
    text = write(rows)
    assert "not significantly ahead of it on the real screen (held-out cells +0.030, p = 0.2" in text
    assert "combinations" not in text and "+0.500" not in text  # only single-perturbation sets
    assert "differs by −0.020 to +0.050" in text  # a minus sign, not a hyphen
    assert "significantly ahead on the demo screens" in text
    assert "significantly behind on the Hill screens" in text  # a significant loss is said too
    assert "scores what control covariance scores" not in text  # no stored anchored runs in tmp_path
    for screen, diff in (("real", 0.004), ("demo", 0.0)):  # anchored level with control covariance
        (tmp_path / f"accuracy_{screen}_anchored.json").write_text(json.dumps({"paired": [
            {"set": "held_out_perturbations", "reference": "independent", "baseline": "control_covariance",
             "mean_diff": diff}]}))
    assert "scores what control covariance scores" not in write(rows)  # the Hill screen not measured
    (tmp_path / "accuracy_hill_anchored.json").write_text(json.dumps({"paired": [
        {"set": "held_out_perturbations", "reference": "independent", "baseline": "control_covariance",
         "mean_diff": -0.002}]}))
    assert "scores what control covariance scores (within 0.004 on 3 screens)" in write(rows)
    (tmp_path / "accuracy_demo_anchored.json").write_text(json.dumps({"paired": [
        {"set": "held_out_perturbations", "reference": "independent", "baseline": "control_covariance",
         "mean_diff": 0.08}]}))
    assert "scores what control covariance scores" not in write(rows)  # ahead somewhere: not "equals"
    # a significant real-screen win changes what the sentence says: never "not significantly ahead"
    rows[0].update(diff=0.1, p_wilcoxon=0.001)
    text = write(rows)
    assert "not significantly" not in text and "should now be" in text
    text = write([rows[0]])
    assert "wins on the real screen only" in text and "should now be" not in text
    assert write(rows, first="anchored") is None  # the sentence explains the published default only
    assert write([r for r in rows if r["screen"] != "real"]) is None  # no real-screen figure: no claim
    assert recipe_results.default_recipe_sentence(results_dir=tmp_path / "nowhere") is None
