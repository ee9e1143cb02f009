"""Streaming a prepared screen from disk (issue 14): chunked writing, one-pass pairs, evaluation."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
from lazynet_core.errors import ScreenError
from lazynet_core.metrics import evaluate
from lazynet_core.pairs import make_pairs
from lazynet_core.streaming import stream_pairs, write_h5ad_in_chunks
from lazynet_core.train import train_ensemble

CONFIG = PairConfig(resamples=16, k=4, natural_pairs=0.5)


@pytest.fixture(scope="module")
def toy_file(toy_adata, tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "toy.h5ad"
    toy_adata.write_h5ad(path)
    return path


def test_streamed_pairs_match_in_memory_pairs(toy_adata, toy_file):
    """One pass by row chunks: same split, same means, control rows; perturbed rows refused."""
    mem, st = make_pairs(toy_adata, CONFIG), stream_pairs(toy_file, CONFIG, chunk_rows=7)
    assert np.array_equal(mem.cell_role, st.cell_role) and np.array_equal(mem.test_perts, st.test_perts)
    for p in range(len(mem.perturbations)):
        for role in ("train", "test"):
            np.testing.assert_allclose(mem.pert_mean(p, role), st.pert_mean(p, role), atol=1e-5)
    assert np.array_equal(mem.control_mean("train"), st.control_mean("train"))
    assert np.array_equal(mem.gene_scale(), st.gene_scale())
    controls = np.flatnonzero(mem.cell_pert < 0)
    assert (st.X[controls] != mem.X[controls]).nnz == 0  # control rows exactly
    assert (np.diff(st.X.indptr)[mem.cell_pert >= 0] == 0).all()  # no perturbed row is held
    assert st._cache["stream_info"]["chunks"] == -(-toy_adata.n_obs // 7)
    tc = TrainConfig(replicas=1, epochs=3)
    a, b = train_ensemble(mem, ModelConfig(), tc), train_ensemble(st, ModelConfig(), tc)
    np.testing.assert_allclose(a.history.train_loss, b.history.train_loss, rtol=1e-5)
    with pytest.raises(ScreenError, match="streamed from disk"):
        st._average(np.flatnonzero(st.cell_pert >= 0)[:4, None])
    some = np.flatnonzero((st.cell_pert >= 0) & (st.cell_role == "train"))[:3]
    with pytest.raises(ScreenError, match="not streamed"):
        st._mean(some)
    with pytest.raises(ScreenError, match="delta_targets=True"):
        stream_pairs(toy_file, CONFIG.replace(delta_targets=False))


def test_evaluate_on_streamed_pairs_equals_in_memory(toy_adata, toy_file):
    """metrics.evaluate (held-out perturbations, independent reference, baselines, noise ceiling)."""
    config = PairConfig(resamples=16, k=4, seed=1)  # perturbation split, 30% reference controls
    mem, st = make_pairs(toy_adata, config), stream_pairs(toy_file, config, chunk_rows=11)
    ensemble = train_ensemble(mem, ModelConfig(), TrainConfig(replicas=1, epochs=2))
    keys = ["set", "role", "reference", "method", "perturbation", "metric"]
    for reference in ("independent", "training"):
        a = evaluate(mem, ensemble.predict, reference=reference)
        b = evaluate(st, ensemble.predict, reference=reference)
        # the soft-threshold and the pooled covariance need each training cell's row, which streamed
        # pairs do not keep
        shrunk = b["method"].isin(["own_training_mean_shrunk", "pooled_covariance"])
        assert shrunk.any() and b.loc[shrunk, "value"].isna().all()
        for method in ("own_training_mean_shrunk", "pooled_covariance"):
            assert a.loc[a["method"] == method, "value"].notna().any()
        a, b = a[~shrunk.to_numpy()].reset_index(drop=True), b[~shrunk].reset_index(drop=True)
        assert len(a) == len(b) and set(a["method"]) >= {"lazynet", "perturbed_mean", "linear", "observed"}
        pd.testing.assert_frame_equal(a[keys], b[keys])
        np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-5, equal_nan=True)
    training_only = stream_pairs(toy_file, config, chunk_rows=11, evaluate=False)
    with pytest.raises(ScreenError, match="not streamed"):
        evaluate(training_only)  # the noise ceiling's halves were not streamed


def test_write_h5ad_in_chunks_round_trip(tmp_path):
    X = sp.random(53, 12, density=0.3, format="csr", dtype=np.float32, random_state=0)
    obs = pd.DataFrame({"group": np.arange(53) % 3}, index=[f"c{i}" for i in range(53)])
    var = pd.DataFrame(index=[f"g{i}" for i in range(12)])
    path = tmp_path / "x.h5ad"
    chunks = (X[i : i + 10] for i in range(0, 53, 10))
    info = write_h5ad_in_chunks(path, chunks, obs=obs, var=var, uns={"a": 1})
    assert info["rows"] == 53 and info["chunks"] == 6 and info["nnz"] == X.nnz
    back = anndata.read_h5ad(path)
    assert (back.X != X).nnz == 0 and back.uns["a"] == 1 and list(back.obs_names) == list(obs.index)
    backed = anndata.read_h5ad(path, backed="r")
    assert (sp.csr_matrix(backed.X[20:30]) != X[20:30]).nnz == 0
    backed.file.close()
    with pytest.raises(ScreenError, match="obs has 53 cells"):
        write_h5ad_in_chunks(tmp_path / "y.h5ad", [X[:10]], obs=obs, var=var)
    assert not (tmp_path / "y.h5ad").exists() and len(list(tmp_path.iterdir())) == 1  # no partial file


def test_export_refuses_streamed_pairs(toy_file):
    from lazynet_core.export import observed_anndata

    st = stream_pairs(toy_file, CONFIG, chunk_rows=7)
    with pytest.raises(ScreenError, match="streamed from disk"):
        observed_anndata(st, [int(np.flatnonzero(st.test_perts)[0])])
