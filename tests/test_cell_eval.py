"""Predictions in the layout Arc Institute's cell-eval scores (export.predictions_to_anndata, CLI
``predict --heldout``), and a cell-eval run on a tiny example when cell-eval is installed."""

import anndata as ad
import numpy as np
import pytest
from scipy import stats

from lazynet_core import cli
from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
from lazynet_core.errors import ScreenError
from lazynet_core.export import (
    CELL_EVAL_CONTROL,
    CELL_EVAL_PERT_COL,
    _mean_preserving_cells,
    heldout_perturbations,
    observed_path,
    predictions_to_anndata,
    write_cell_eval_files,
)
from lazynet_core.metrics import baseline_predictions
from lazynet_core.pairs import make_pairs

HELD = ("G0", "G1", "G2")


@pytest.fixture(scope="module")
def pairs(toy_adata):
    return make_pairs(toy_adata, PairConfig(held_out=HELD, seed=0))


def _means(adata, labels):
    col = adata.obs[CELL_EVAL_PERT_COL].astype(str).to_numpy()
    return np.stack([np.asarray(adata.X[col == lab].mean(axis=0)).ravel() for lab in labels])


def test_files_share_genes_labels_and_scale(pairs, tmp_path):
    evals = heldout_perturbations(pairs)
    assert list(pairs.perturbations[evals]) == list(HELD)
    posts = baseline_predictions(pairs, perturbations=evals)["linear"]
    pred, real = predictions_to_anndata(pairs, posts, perturbations=evals, method="linear")
    pred_path, real_path = write_cell_eval_files(pred, real, tmp_path / "pred.h5ad")
    assert real_path == observed_path(pred_path) == tmp_path / "pred_real.h5ad"
    pred, real = ad.read_h5ad(pred_path), ad.read_h5ad(real_path)

    assert list(pred.var_names) == list(real.var_names) == list(pairs.genes)
    labels = {CELL_EVAL_CONTROL, *HELD}
    assert set(pred.obs[CELL_EVAL_PERT_COL]) == set(real.obs[CELL_EVAL_PERT_COL]) == labels
    # as many predicted cells as observed cells, per perturbation
    assert (pred.obs[CELL_EVAL_PERT_COL].value_counts() == real.obs[CELL_EVAL_PERT_COL].value_counts()).all()
    # controls: the same independent reference cells in both files
    ref = pairs.cells(-1, "reference")
    is_ctrl = (real.obs[CELL_EVAL_PERT_COL] == CELL_EVAL_CONTROL).to_numpy()
    assert is_ctrl.sum() == len(ref) and set(real.obs.loc[is_ctrl, "lazynet_role"]) == {"reference"}
    np.testing.assert_array_equal(pred.X[: len(ref)].toarray(), real.X[: len(ref)].toarray())
    # observed cells are the screen's own held-out cells (log1p CP10k, read_screen's .X)
    idx = real.obs["screen_index"].to_numpy()
    np.testing.assert_array_equal(real.X.toarray(), pairs.X[idx].toarray())
    assert set(real.obs.loc[~is_ctrl, "lazynet_role"]) == {"test"}
    # same scale: log1p values (non-negative, fractional, below cell-eval's log1p bound of 15)
    for a in (pred, real):
        x = a.X.toarray()
        assert x.min() >= 0 and x.max() < 15 and np.any(np.modf(x)[0] > 1e-3)
    assert abs(pred.X.toarray().mean() - real.X.toarray().mean()) < 1.0
    # pseudobulk of the predicted cells = the prediction; cells have a spread (not repeated rows)
    np.testing.assert_allclose(_means(pred, HELD), np.clip(posts, 0, None), atol=1e-5)
    assert (pred.X[~is_ctrl].toarray().std(axis=0) > 0).any()


def test_predictor_path_matches_evaluate_inputs(pairs):
    evals = heldout_perturbations(pairs)

    def shift(pre):  # a toy predictor: post = pre + 0.1
        return pre + 0.1

    pred, _ = predictions_to_anndata(pairs, shift, perturbations=list(HELD))
    expected = np.stack([pairs.pre_state(int(p), "test") + 0.1 for p in evals])
    for row, p in enumerate(evals):  # the do-intervention: targets held at their observed level
        expected[row, pairs.pert_targets[p]] = pairs.pre_state(int(p), "test")[pairs.pert_targets[p]]
    np.testing.assert_allclose(_means(pred, HELD), expected, atol=1e-5)


def test_mean_preserving_cells():
    rng = np.random.default_rng(0)
    cells = rng.gamma(0.3, 1.0, size=(40, 6)) * (rng.random((40, 6)) > 0.5)
    residuals = cells - cells.mean(axis=0)
    post = np.array([0.0, 0.01, 0.2, 1.0, 3.0, -0.5])
    out = _mean_preserving_cells(post, residuals)
    assert out.min() >= 0
    np.testing.assert_allclose(out.mean(axis=0), np.clip(post, 0, None), atol=1e-9)


def test_errors(toy_adata, pairs):
    cells_split = make_pairs(toy_adata, PairConfig(split="cells", seed=0))
    with pytest.raises(ScreenError, match="held out entirely"):
        heldout_perturbations(cells_split)
    no_ref = make_pairs(toy_adata, PairConfig(held_out=HELD, reference_fraction=0.0))
    with pytest.raises(ScreenError, match="reference"):
        predictions_to_anndata(no_ref, np.zeros((3, no_ref.n_genes)))
    with pytest.raises(ValueError, match="expected"):
        predictions_to_anndata(pairs, np.zeros((2, pairs.n_genes)))
    with pytest.raises(ValueError, match="no finite prediction"):
        predictions_to_anndata(pairs, np.full((3, pairs.n_genes), np.nan))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from lazynet_core.datasets import toy_screen
    from lazynet_core.runs import save_run
    from lazynet_core.train import train_ensemble

    root = tmp_path_factory.mktemp("cell_eval")
    data = root / "toy.h5ad"
    toy_screen().write_h5ad(data)
    from lazynet_core.data import read_screen

    pairs = make_pairs(read_screen(str(data)), PairConfig(held_out=("G0", "G1"), seed=0))
    ensemble = train_ensemble(pairs, ModelConfig(), TrainConfig(replicas=1, epochs=1, threads=1))
    save_run(ensemble, root / "run", provenance={"source": str(data)})
    return root


def test_cli_predict_heldout(toy_run, capsys):
    out = toy_run / "pred.h5ad"
    assert cli.main(["predict", str(toy_run / "run"), "--heldout", "--out", str(out), "--baselines"]) == 0
    printed = capsys.readouterr().out
    assert "cell-eval run" in printed and "pred_real.h5ad" in printed
    pred, real = ad.read_h5ad(out), ad.read_h5ad(toy_run / "pred_real.h5ad")
    assert list(pred.var_names) == list(real.var_names)
    labels = {"G0", "G1", CELL_EVAL_CONTROL}
    assert set(pred.obs[CELL_EVAL_PERT_COL]) == set(real.obs[CELL_EVAL_PERT_COL]) == labels
    for method in ("perturbed_mean", "perturbed_mean_ex", "linear"):
        base = ad.read_h5ad(toy_run / f"pred_{method}.h5ad")
        assert set(base.obs[CELL_EVAL_PERT_COL]) == set(real.obs[CELL_EVAL_PERT_COL])
    # --set keeps working; --set with --heldout, or neither, is a clear error (exit 2)
    assert cli.main(["predict", str(toy_run / "run"), "--set", "G0=0.5", "--top", "3"]) == 0
    assert "predicted_delta" in capsys.readouterr().out
    assert cli.main(["predict", str(toy_run / "run"), "--set", "G0=0.5", "--heldout", "--out", str(out)]) == 2
    assert "alternatives" in capsys.readouterr().err
    assert cli.main(["predict", str(toy_run / "run")]) == 2
    assert cli.main(["predict", str(toy_run / "run"), "--heldout"]) == 2
    assert "--out" in capsys.readouterr().err


def test_cell_eval_run_completes(pairs, tmp_path):
    cell_eval = pytest.importorskip(
        "cell_eval", reason="cell-eval is optional: pip install -r requirements-eval.txt"
    )
    evals = heldout_perturbations(pairs)
    posts = baseline_predictions(pairs, perturbations=evals)["perturbed_mean_ex"]
    pred, real = predictions_to_anndata(pairs, posts, perturbations=evals)
    evaluator = cell_eval.MetricsEvaluator(
        adata_pred=pred,
        adata_real=real,
        control_pert=CELL_EVAL_CONTROL,
        pert_col=CELL_EVAL_PERT_COL,
        num_threads=1,
        outdir=str(tmp_path / "cell-eval"),
    )
    # clustering_agreement (Leiden on 3 centroids) only costs numba compile time here
    results, _ = evaluator.compute(profile="full", write_csv=False, skip_metrics=["clustering_agreement"])
    frame = results.to_pandas().set_index("perturbation").loc[list(HELD)]
    assert {"pearson_delta", "mae", "discrimination_score_l1", "overlap_at_N"} <= set(frame.columns)
    # cell-eval's delta-Pearson: file pseudobulks minus the files' controls (the reference), all genes
    ref = pairs.control_mean("reference").astype(np.float64)
    for row, p in enumerate(evals):
        obs = pairs.pert_mean(int(p), "test").astype(np.float64)
        expected = stats.pearsonr(np.clip(posts[row], 0, None) - ref, obs - ref)[0]
        assert frame.loc[pairs.perturbations[p], "pearson_delta"] == pytest.approx(expected, abs=1e-4)
