"""CLI: train / evaluate / predict on the demo; bad input exits 2 with one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lazynet_core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = run_cli("train", "--demo", "--out", str(out), "--replicas", "2", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    return out


def test_train_evaluate_predict(demo_run):
    assert (demo_run / "config.json").is_file()
    result = run_cli("evaluate", str(demo_run))
    assert result.returncode == 0, result.stderr
    for name in (
        "lazynet",
        "perturbed_mean_ex",
        "control_covariance",
        "linear",
        "null",
        "identity",
        "held_out_perturbations",
        "held_out_cells",
        "p_wilcoxon",
        "ceiling",
    ):
        assert name in result.stdout
    result = run_cli("predict", str(demo_run), "--set", "GPX4=0.25", "--top", "5")
    assert result.returncode == 0 and "predicted_delta" in result.stdout


def test_evaluate_json_contract(demo_run):
    import json

    result = run_cli("evaluate", str(demo_run), "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert all({"method", "set", "reference", "metric", "mean", "sd", "n"} <= set(r) for r in records)
    methods = {r["method"] for r in records}
    assert {
        "lazynet",
        "identity",
        "perturbed_mean",
        "perturbed_mean_ex",
        "linear",
        "control_covariance",
        "additive",
        "null",
    } <= methods
    assert {"pearson_delta", "pearson_delta_top20", "slope", "intervention_response", "ceiling"} <= {
        r["metric"] for r in records
    }
    null = [
        r
        for r in records
        if r["method"] == "null"
        and r["metric"] == "pearson_delta"
        and r["reference"] == "independent"
        and r["set"] == "held_out_perturbations"
    ]
    assert len(null) == 1 and abs(null[0]["mean"]) < 0.05  # the metric gives nothing for nothing


def test_network_command(demo_run, tmp_path):
    out = tmp_path / "edges.csv"
    result = run_cli(
        "network",
        str(demo_run),
        "--module",
        "ferroptosis",
        "--breadth",
        "4",
        "--depth",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines()[0].startswith("source,target,weight,sign")


def test_predict_prints_the_net_effect_not_the_models_drift(demo_run):
    """An unchanged level predicts no change (the model's own drift at the control state cancels),
    and a knock-down's printed Δ is F(knocked down) − F(control), as the app's in-silico view."""
    import numpy as np
    import pandas as pd

    from lazynet_core.runs import load_run

    same = run_cli("predict", str(demo_run), "--set", "gpx4=1", "--top", "3")  # case does not matter
    assert same.returncode == 0, same.stderr
    table = same.stdout.strip().splitlines()[1:4]
    assert all(float(line.split()[1]) == 0.0 for line in table), same.stdout
    down = run_cli("predict", str(demo_run), "--set", "GPX4=0.25", "--top", "3")
    ensemble = load_run(demo_run)
    settings = ensemble.knockdown_settings(["GPX4"], 0.25)
    expected = pd.Series(ensemble.predict(np.where(ensemble.genes == "GPX4", settings["GPX4"],
                                                   ensemble.reference).astype(np.float32))
                         - ensemble.predict(ensemble.reference), index=ensemble.genes).drop("GPX4")
    gene, value = down.stdout.strip().splitlines()[1].split()
    assert gene == expected.abs().idxmax() and abs(float(value) - expected[gene]) < 5e-4


def test_outputs_never_replace_their_inputs(demo_run, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in demo_run.iterdir()}
    screen = tmp_path / "screen.h5ad"
    screen.write_bytes(b"the user's screen")
    for args in (("network", str(demo_run), "--out", str(demo_run / "config.json")),
                 ("evaluate", str(demo_run), "--out", str(demo_run / "metrics.csv")),
                 ("evaluate", str(demo_run), "--data", str(screen), "--out", str(screen)),
                 ("predict", str(demo_run), "--heldout", "--out", str(demo_run / "pred.h5ad")),
                 ("crossval", "--data", str(screen), "--out", str(screen))):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "never replaces its own input" in result.stderr, (args, result.stderr)
    assert {p.name: p.stat().st_mtime_ns for p in demo_run.iterdir()} == before
    assert screen.read_bytes() == b"the user's screen"
    result = run_cli("train", "--data", str(screen), "--out", str(tmp_path), "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and "never replaces its input" in result.stderr, result.stderr
    assert screen.read_bytes() == b"the user's screen"


@pytest.mark.parametrize(
    "args,flag",
    [
        (("predict", "RUN", "--set", "GPX4=0.5", "--top", "0"), "--top"),
        (("crossval", "--demo", "--seeds", "a,b"), "--seeds"),
        (("train", "--demo", "--out", "x", "--seed", "-1"), "--seed"),
        (("network", "RUN", "--out", "e.csv", "--min-abs", "nan"), "--min-abs"),
    ],
)
def test_bad_numbers_name_their_flag(args, flag, demo_run, tmp_path):
    args = tuple(str(demo_run) if a == "RUN" else a for a in args)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and f"argument {flag}:" in result.stderr, result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "e.csv").exists()


def test_a_fold_that_overflows_is_refused(demo_run):
    result = run_cli("predict", str(demo_run), "--set", "GPX4=1e308")
    assert result.returncode == 2 and "overflows" in result.stderr and "nan" not in result.stdout.lower()


@pytest.mark.parametrize(
    "args,needle",
    [
        (("train", "--data", "/no/such/file.h5ad", "--out", "x"), "does not exist"),
        (("evaluate", "/no/such/run"), "does not exist"),
        (("predict", "RUN", "--set", "NOTAGENE=0.5"), "NOTAGENE"),
    ],
)
def test_bad_input_exit_2_one_line(args, needle, demo_run, tmp_path):
    args = tuple(str(demo_run) if a == "RUN" else a for a in args)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr
    assert not (tmp_path / "x").exists()


def test_existing_run_directory_refused(demo_run):
    before = sorted(p.name for p in demo_run.iterdir())
    result = run_cli("train", "--demo", "--out", str(demo_run), "--epochs", "1")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert sorted(p.name for p in demo_run.iterdir()) == before


@pytest.mark.parametrize(
    "args,needle",
    [
        (("predict", "RUN", "--set", "GPX4=abc"), "FOLD a number"),
        (("predict", "RUN", "--set", "GPX4=-1"), "FOLD a number"),
        (("evaluate", "RUN", "--out", "/no/such/dir/m.csv"), "does not exist"),
        (("train", "--demo", "--out", "README.md"), "existing file"),
        (("train", "--demo", "--out", "x", "--threads", "-1"), "threads"),
        (("predict", "README.md", "--set", "GPX4=0.5"), "is a file, not a run folder"),
        (("train", "--demo", "--out", "x", "--split", "cells", "--held-out", "GPX4"),
         "only the perturbation split"),
    ],
)
def test_more_bad_input_exit_2(args, needle, demo_run, tmp_path):
    (tmp_path / "README.md").write_text("not a run")
    args = tuple(str(demo_run) if a == "RUN" else a for a in args)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr
    assert not (tmp_path / "x").exists()


def test_evaluate_reads_the_screen_as_it_was_trained(tmp_path):
    """A run trained with --pert-key is evaluated on the same screen, read the same way."""
    from lazynet_core.datasets import load_demo

    demo = load_demo()
    demo.obs = demo.obs.rename(columns={"perturbation": "my_label"})
    path = tmp_path / "renamed.h5ad"
    demo.write_h5ad(path)
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--data",
        str(path),
        "--pert-key",
        "my_label",
        "--out",
        str(out),
        "--replicas",
        "1",
        "--epochs",
        "1",
    )
    assert result.returncode == 0, result.stderr
    result = run_cli("evaluate", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert "not the file this run was trained on" not in result.stderr
    demo.obs["extra"] = 1  # the same cells and counts, another file: evaluation says it is not the same
    demo.write_h5ad(path)
    result = run_cli("evaluate", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert "not the file this run was trained on" in result.stderr


def test_train_takes_the_screen_as_a_positional_argument(tmp_path):
    from lazynet_core.datasets import demo_path

    out = tmp_path / "run"
    result = run_cli("train", str(demo_path()), "--out", str(out), "--replicas", "1", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file()
    both = run_cli("train", str(demo_path()), "--data", "other.h5ad", "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "Two screens given" in both.stderr


def test_train_records_the_covariance_recipe(tmp_path):
    """--start control_covariance --pseudobulk-cells 64 reach the run's manifest."""
    import json

    from lazynet_core.datasets import demo_path

    out = tmp_path / "run"
    result = run_cli("train", str(demo_path()), "--out", str(out), "--replicas", "1", "--epochs", "1",
                     "--start", "control_covariance", "--pseudobulk-cells", "64")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "config.json").read_text())
    assert manifest["pair_config"]["k"] == 64 and manifest["model_config"]["start"] == "control_covariance"
    result = run_cli("train", str(demo_path()), "--out", str(tmp_path / "pooled"), "--replicas", "1",
                     "--epochs", "1", "--recipe", "anchored_pooled")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "pooled" / "config.json").read_text())
    assert manifest["model_config"]["anchor"] and manifest["pair_config"]["pairing"] == "control_mean"
    assert manifest["model_config"]["covariance_cells"] == "pooled"


def test_pseudobulk_cells_must_be_a_positive_count(tmp_path):
    result = run_cli("train", "--demo", "--out", str(tmp_path / "run"), "--pseudobulk-cells", "0")
    assert result.returncode == 2 and "--pseudobulk-cells" in result.stderr and ">= 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_recipe_refuses_the_flags_it_sets(tmp_path):
    result = run_cli("train", "--demo", "--out", str(tmp_path / "run"), "--recipe", "published",
                     "--pseudobulk-cells", "64")
    assert result.returncode == 2 and "--recipe published sets --pseudobulk-cells" in result.stderr
    result = run_cli("crossval", "--demo", "--recipe", "anchored", "--pairing", "random_cells")
    assert result.returncode == 2 and "--pairing" in result.stderr
    assert not (tmp_path / "run").exists()


def test_crossval_says_how_reproducible_the_screens_co_variation_is(tmp_path):
    from lazynet_core import datasets

    path = tmp_path / "toy.h5ad"
    datasets.toy_screen().write_h5ad(path)
    result = run_cli("crossval", "--data", str(path), "--folds", "2", "--seeds", "0", "--replicas", "1",
                     "--epochs", "1")
    assert result.returncode == 0, result.stderr
    line = next(t for t in result.stderr.splitlines() if t.startswith("co-variation:"))
    assert "(8 cells each)" in line and "median r = " in line and "against as many perturbed cells" in line
    assert "held_out_perturbations" in result.stdout
