"""Runs: save -> load reproduces predictions bit for bit; refuses overwrites; half-written runs."""

import json

import numpy as np
import pytest

from lazynet_core.errors import RunError
from lazynet_core.runs import check_genes, list_runs, load_run, save_run


def test_save_load_reproduces_predictions_exactly(toy_ensemble, tmp_path):
    pairs, ensemble = toy_ensemble
    path = save_run(ensemble, tmp_path / "run", provenance={"source": "toy"})
    loaded = load_run(path)
    x = np.stack([pairs.pre_state(p, "test") for p in pairs.evaluation_perturbations("test")])
    assert np.array_equal(loaded.predict(x), ensemble.predict(x))
    assert np.array_equal(loaded.reference, ensemble.reference)
    assert loaded.model_config == ensemble.model_config and loaded.pair_config == ensemble.pair_config
    assert loaded.split == json.loads(json.dumps(ensemble.split))
    manifest = json.loads((path / "config.json").read_text())
    assert manifest["format_version"] == 1 and manifest["provenance"]["source"] == "toy"
    assert len(manifest["replicas"]) == 2 and manifest["genes"] == list(ensemble.genes)


def test_refuses_existing_directory(toy_ensemble, tmp_path):
    _, ensemble = toy_ensemble
    save_run(ensemble, tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(RunError, match="already exists"):
        save_run(ensemble, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    save_run(ensemble, tmp_path / "run", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary directory left


def test_half_written_and_missing_runs(toy_ensemble, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "replica_0.pt").write_bytes(b"partial")
    with pytest.raises(RunError, match="half-written"):
        load_run(tmp_path / "half")
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nothing")
    _, ensemble = toy_ensemble
    save_run(ensemble, tmp_path / "good")
    (tmp_path / "good" / "replica_1.pt").write_bytes(b"corrupt")
    with pytest.raises(RunError, match="damaged"):
        load_run(tmp_path / "good")
    table = list_runs(tmp_path)
    assert list(table.name) == ["good"]  # the half-written one is skipped


def test_failed_save_leaves_nothing(toy_ensemble, tmp_path, monkeypatch):
    import lazynet_core.runs as runs

    _, ensemble = toy_ensemble

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runs.np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_run(ensemble, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_gene_mismatch_raises(toy_ensemble):
    _, ensemble = toy_ensemble
    check_genes(ensemble, ensemble.genes)
    with pytest.raises(ValueError, match="missing from the dataset"):
        check_genes(ensemble, ensemble.genes[:-1])


def test_check_split_detects_another_split(toy_ensemble, toy_adata):
    from lazynet_core.config import PairConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.runs import check_split

    pairs, ensemble = toy_ensemble
    check_split(ensemble, pairs)  # the same split passes
    other = make_pairs(toy_adata, PairConfig(split="cells", resamples=32, k=16, seed=7))
    with pytest.raises(RunError, match="does not reproduce"):
        check_split(ensemble, other)
