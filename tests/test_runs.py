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
    monitored = {r.get("best_loss_on") for r in ensemble.info["replicas"]}
    assert table.loc[0, "loss_on"] == " / ".join(sorted(monitored)) and monitored <= {"train", "validation"}
    losses = [r["best_loss"] for r in ensemble.info["replicas"]]
    assert table.loc[0, "best_loss"] == pytest.approx(sum(losses) / len(losses))


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
    with pytest.raises(ValueError, match="1 of the run's genes are not in the dataset") as err:
        check_genes(ensemble, ensemble.genes[:-1])
    assert f"({ensemble.genes[-1]};" in str(err.value) and "np.str_" not in str(err.value)
    assert "train a new run on this one" in str(err.value)
    with pytest.raises(ValueError, match="another order"):
        check_genes(ensemble, ensemble.genes[::-1])


def test_check_split_detects_another_split(toy_ensemble, toy_adata):
    from lazynet_core.config import PairConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.runs import check_split

    pairs, ensemble = toy_ensemble
    check_split(ensemble, pairs)  # the same split passes
    other = make_pairs(toy_adata, PairConfig(split="cells", resamples=32, k=16, seed=7))
    with pytest.raises(RunError, match="does not reproduce"):
        check_split(ensemble, other)


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_tampered_runs_are_refused(toy_ensemble, tmp_path):
    import shutil

    import torch

    _, ensemble = toy_ensemble
    a = save_run(ensemble, tmp_path / "a")
    import dataclasses

    swapped = dataclasses.replace(ensemble, replicas=ensemble.replicas[::-1])
    other = save_run(swapped, tmp_path / "b")
    shutil.copy(other / "replica_0.pt", a / "replica_0.pt")  # another run's replica
    with pytest.raises(RunError, match="replaced"):
        load_run(a)
    nan = save_run(ensemble, tmp_path / "nan")
    state = torch.load(nan / "replica_0.pt", weights_only=True)
    next(iter(state.values())).fill_(float("nan"))
    torch.save(state, nan / "replica_0.pt")
    manifest = json.loads((nan / "config.json").read_text())
    manifest.pop("sha256")  # even without checksums, NaN weights never load
    (nan / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="NaN"):
        load_run(nan)
    order = save_run(ensemble, tmp_path / "order")
    manifest = json.loads((order / "config.json").read_text())
    manifest["genes"] = manifest["genes"][::-1]
    (order / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="reordered"):
        load_run(order)


def test_overwrite_killed_half_way_loses_nothing(toy_ensemble, tmp_path):
    """A kill after the old run was moved aside: the next access restores or completes it."""
    import os

    _, ensemble = toy_ensemble
    run = save_run(ensemble, tmp_path / "run", provenance={"source": "first"})
    pid = _dead_pid()
    aside = tmp_path / f".run.old-{pid}-x"
    aside.mkdir()
    os.replace(run, aside / "run")  # the state a kill -9 between the two renames leaves
    partial = tmp_path / f".run.tmp-{pid}-y"
    partial.mkdir()
    (partial / "replica_0.pt").write_bytes(b"half")
    assert load_run(run).info["provenance"]["source"] == "first"  # restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # leftovers cleaned

    complete = tmp_path / f".run.tmp-{pid}-z"
    save_run(ensemble, tmp_path / "staging", provenance={"source": "second"})
    os.replace(tmp_path / "staging", complete)
    aside = tmp_path / f".run.old-{pid}-w"
    aside.mkdir()
    os.replace(run, aside / "run")  # killed after the new run was complete, before it was renamed
    assert load_run(run).info["provenance"]["source"] == "second"  # the overwrite is completed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_live_writer_directories_are_left_alone(toy_ensemble, tmp_path):
    import os

    from lazynet_core.runs import recover_interrupted

    live = tmp_path / f".run.tmp-{os.getpid()}-x"
    live.mkdir()
    assert recover_interrupted(tmp_path / "run") == [] and live.exists()


@pytest.mark.parametrize("text", ["[]", '"x"', "3", "null"])
def test_manifest_that_is_not_an_object_is_refused(toy_ensemble, tmp_path, text):
    _, ensemble = toy_ensemble
    save_run(ensemble, tmp_path / "run")
    manifest = tmp_path / "run" / "config.json"
    manifest.write_text(text)
    expected = r"config\.json' holds a JSON (list|string|number|null) .*not the run's settings.*is damaged"
    with pytest.raises(RunError, match=expected):
        load_run(tmp_path / "run")
    assert manifest.read_text() == text  # nothing rewritten


def test_manifest_without_its_fields_is_refused(toy_ensemble, tmp_path):
    _, ensemble = toy_ensemble
    save_run(ensemble, tmp_path / "run")
    manifest = tmp_path / "run" / "config.json"
    data = json.loads(manifest.read_text())
    del data["genes"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(RunError, match=r"lacks \['genes'\]: the run directory is damaged"):
        load_run(tmp_path / "run")


def _without_checksums(path):
    """A run as an older LazyNet wrote it (no checksums), so a damaged side file reaches its reader."""
    manifest = json.loads((path / "config.json").read_text())
    manifest.pop("sha256")
    (path / "config.json").write_text(json.dumps(manifest))


def test_the_split_is_checksummed_so_the_leakage_check_cannot_be_lost(toy_ensemble, tmp_path):
    _, ensemble = toy_ensemble
    path = save_run(ensemble, tmp_path / "run")
    assert "split.json" in json.loads((path / "config.json").read_text())["sha256"]
    (path / "split.json").unlink()
    with pytest.raises(RunError, match="split.json' is missing"):
        load_run(path)
    path = save_run(ensemble, tmp_path / "edited")
    (path / "split.json").write_text("{}")  # an emptied split would silently skip the leakage check
    with pytest.raises(RunError, match="SHA-256 differs"):
        load_run(path)


@pytest.mark.parametrize(("content", "needle"), [("{\n", "is not valid JSON"), ("[]", "JSON list")])
def test_a_damaged_split_of_an_unchecksummed_run_is_refused_by_name(toy_ensemble, tmp_path, content, needle):
    _, ensemble = toy_ensemble
    path = save_run(ensemble, tmp_path / "run")
    _without_checksums(path)
    (path / "split.json").write_text(content)
    with pytest.raises(RunError, match=needle) as err:
        load_run(path)
    assert "split.json" in str(err.value)


@pytest.mark.parametrize("older", [False, True])
def test_a_damaged_history_only_loses_the_loss_curves(toy_ensemble, tmp_path, older):
    pairs, ensemble = toy_ensemble
    path = save_run(ensemble, tmp_path / "run")
    assert "history.csv" not in json.loads((path / "config.json").read_text())["sha256"]
    if older:
        _without_checksums(path)
    (path / "history.csv").write_bytes(b"\xff\xfe garbage")
    loaded = load_run(path)
    assert loaded.history.empty
    x = pairs.control_mean("train")
    assert np.array_equal(loaded.predict(x), ensemble.predict(x))
    (path / "history.csv").unlink()
    assert load_run(path).history.empty


def test_a_repeated_gene_in_the_manifest_is_refused(toy_ensemble, tmp_path):
    _, ensemble = toy_ensemble
    path = save_run(ensemble, tmp_path / "run")
    _without_checksums(path)
    manifest = json.loads((path / "config.json").read_text())
    manifest["genes"][1] = manifest["genes"][0]
    (path / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match=f"repeats {manifest['genes'][0]}"):
        load_run(path)


def test_a_run_fits_a_screen_of_the_same_genes_in_the_same_order(toy_ensemble, tmp_path):
    from lazynet_core.ui import services

    _, ensemble = toy_ensemble
    save_run(ensemble, tmp_path / "run")
    runs = list_runs(tmp_path)
    genes = list(ensemble.genes)
    assert services.runs_fitting(runs, genes=genes)["fits_screen"].tolist() == [True]
    renamed = [*genes[:-1], "OTHER"]  # as many genes, not the same ones
    assert services.runs_fitting(runs, genes=renamed)["fits_screen"].tolist() == [False]
    older = runs.assign(genes_sha256=None)  # saved before checksums: only the count is known
    assert services.runs_fitting(older, genes=renamed)["fits_screen"].tolist() == [True]
