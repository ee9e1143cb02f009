"""TrainingJob / JobRegistry without Streamlit: completion, cancel, crash, one job at a time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lazynet_core.errors import RunError, TrainingCancelled, TrainingError
from lazynet_core.jobs import JobRefused, JobRegistry, TrainingJob, safe_run_name


class _Cfg:
    def __init__(self, replicas: int = 2, epochs: int = 3, time_budget_s: float | None = None) -> None:
        self.replicas, self.epochs, self.time_budget_s = replicas, epochs, time_budget_s


def _fake_train(steps: int = 5, sleep: float = 0.002, fail_at: int | None = None):
    def train(pairs, model_config, train_config, *, on_progress, on_epoch, should_stop):
        t0 = time.perf_counter()
        n = 0
        for r in range(train_config.replicas):
            for e in range(train_config.epochs):
                for s in range(steps):
                    if should_stop():
                        raise TrainingCancelled("stopped")
                    if fail_at is not None and n == fail_at:
                        msg = f"Loss became NaN at replica {r}, epoch {e}; lower the learning rate."
                        raise TrainingError(msg)
                    time.sleep(sleep)
                    on_progress(r, e, e * steps + s, 1.0 / (n + 1), time.perf_counter() - t0)
                    n += 1
                on_epoch(r, e, 1.0 / (e + 1), 1.2 / (e + 1), time.perf_counter() - t0)
        return {"trained": n}

    return train


def _fake_save(ensemble, path, *, provenance=None, fail: bool = False):
    path = Path(path)
    path.mkdir(parents=True)
    (path / "replica_0.pt").write_bytes(b"weights")
    if fail:
        raise OSError("disk full")
    (path / "config.json").write_text("{}")
    return path


def _job(tmp_path, name="run1", *, steps=5, sleep=0.002, fail_at=None, cfg=None, save=_fake_save):
    cfg = cfg or _Cfg()
    total = cfg.replicas * cfg.epochs * steps
    return TrainingJob(
        object(),
        object(),
        cfg,
        runs_root=tmp_path / "runs",
        name=name,
        train_fn=_fake_train(steps, sleep, fail_at),
        save_fn=save,
        total_steps=total,
    )


def test_job_completes_and_saves(tmp_path):
    job = _job(tmp_path).start()
    snap = job.wait(10)
    assert snap.status == "done", snap
    assert snap.fraction == pytest.approx(1.0)
    assert Path(snap.run_path) == tmp_path / "runs" / "run1"
    assert (tmp_path / "runs" / "run1" / "config.json").exists()
    assert sorted(snap.curves) == [0, 1] and len(snap.curves[0]) == 3
    assert snap.curves[1][-1][0] == 2
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["run1"]
    assert job.ensemble == {"trained": 30}


def test_progress_snapshots_move_and_have_eta(tmp_path):
    job = _job(tmp_path, steps=20, sleep=0.01).start()
    time.sleep(0.3)
    snap = job.progress()
    assert snap.status == "running" and snap.active
    assert 0 < snap.fraction < 1 and snap.eta_s is not None and snap.eta_s > 0
    assert "replica" in snap.describe()
    job.cancel()
    job.wait(5)


def test_cancel_is_honoured_quickly_and_leaves_no_run(tmp_path):
    job = _job(tmp_path, steps=1000, sleep=0.01).start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    job.cancel()
    snap = job.wait(5)
    assert time.perf_counter() - t0 < 2.0
    assert snap.status == "cancelled" and not job.is_alive
    runs = tmp_path / "runs"
    assert not (runs / "run1").exists()
    assert not runs.exists() or list(runs.iterdir()) == []


def test_training_crash_becomes_failed_status(tmp_path):
    job = _job(tmp_path, fail_at=7).start()
    snap = job.wait(5)
    assert snap.status == "failed"
    assert "TrainingError" in snap.error and "NaN" in snap.error and "learning rate" in snap.error
    assert not (tmp_path / "runs" / "run1").exists()


def test_save_crash_leaves_no_half_written_run(tmp_path):
    def bad_save(ensemble, path, *, provenance=None):
        return _fake_save(ensemble, path, provenance=provenance, fail=True)

    job = _job(tmp_path, save=bad_save).start()
    snap = job.wait(5)
    assert snap.status == "failed" and "disk full" in snap.error
    assert list((tmp_path / "runs").iterdir()) == []


def test_second_job_refused_while_first_runs(tmp_path):
    reg = JobRegistry()
    first = reg.submit(_job(tmp_path, "a", steps=1000, sleep=0.01))
    with pytest.raises(JobRefused, match="Only one job runs at a time"):
        reg.submit(_job(tmp_path, "b"))
    assert reg.active() is first and reg.get(first.job_id) is first
    first.cancel()
    first.wait(5)
    second = reg.submit(_job(tmp_path, "b"))
    assert second.wait(10).status == "done"
    assert reg.latest() is second and reg.active() is None and reg.get("nope") is None


def test_existing_run_name_and_bad_names_refused(tmp_path):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    with pytest.raises(RunError, match="already exists"):
        _job(tmp_path, "taken")
    for bad in ["", "../x", ".hidden", "a/b", "x" * 81]:
        with pytest.raises(ValueError, match="not allowed"):
            safe_run_name(bad)
    assert safe_run_name(" demo-3rep ") == "demo-3rep"


def test_time_budget_bounds_eta(tmp_path):
    job = _job(tmp_path, steps=1000, sleep=0.01, cfg=_Cfg(1, 1, time_budget_s=1.0)).start()
    time.sleep(0.3)
    snap = job.progress()
    assert snap.eta_s is not None and snap.eta_s <= 1.0
    job.cancel()
    job.wait(5)


def test_jobs_module_imports_no_streamlit():
    import subprocess

    code = "import sys, lazynet_core.jobs; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_training_on_toy_screen(tmp_path):
    datasets = pytest.importorskip("lazynet_core.datasets")
    pytest.importorskip("lazynet_core.train")
    pytest.importorskip("lazynet_core.runs")
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.data import read_screen
    from lazynet_core.pairs import make_pairs
    from lazynet_core.runs import load_run

    pairs = make_pairs(read_screen(datasets.toy_screen()), PairConfig(resamples=4))
    job = TrainingJob(
        pairs,
        ModelConfig(hidden=8),
        TrainConfig(replicas=2, epochs=2),
        runs_root=tmp_path / "runs",
        name="toy",
    ).start()
    snap = job.wait(60)
    assert snap.status == "done", snap.error
    assert len(snap.curves) == 2
    ens = load_run(snap.run_path)
    assert len(ens.replicas) == 2


def test_a_budget_cut_job_is_reported_as_such_not_done(tmp_path):
    """A finished job whose time budget stopped training says so (the app shows it, not "done")."""
    from types import SimpleNamespace

    from lazynet_core.jobs import budget_cut

    cut = SimpleNamespace(
        info={"replicas": [{"replica": 0, "stopped": "epochs", "epochs_run": 3},
                           {"replica": 1, "stopped": "time_budget", "epochs_run": 1}]},
        train_config=SimpleNamespace(epochs=3),
    )
    assert budget_cut(cut) == "after 1 of 3 epochs (replica 2 of 2)"
    assert budget_cut({"trained": 1}) is None

    def train(pairs, model_config, train_config, *, on_progress, on_epoch, should_stop):
        return cut

    job = TrainingJob(object(), object(), _Cfg(), runs_root=tmp_path / "runs", name="cut", train_fn=train,
                      save_fn=_fake_save, total_steps=1).start()
    snap = job.wait(10)
    assert snap.status == "done" and snap.budget_cut == "after 1 of 3 epochs (replica 2 of 2)"
    assert snap.describe() == "stopped by the time budget after 1 of 3 epochs (replica 2 of 2)"


def test_progress_counts_replicas_running_at_once(tmp_path):
    """On Ray the replicas' progress events interleave: the fraction must only grow and end at 1."""
    cfg = _Cfg()
    per_replica = cfg.epochs * 5
    job = _job(tmp_path, cfg=cfg)  # not started: its progress callback is driven by hand
    fractions = []
    for step in range(1, per_replica + 1):
        for replica in range(cfg.replicas):  # all replicas advance together
            job._on_progress(replica, (step - 1) // 5, step, 0.5, 0.01 * step)
            fractions.append(job.progress().fraction)
    assert fractions == sorted(fractions)
    assert fractions[cfg.replicas - 1] == pytest.approx(cfg.replicas / (cfg.replicas * per_replica))
    assert fractions[-1] == pytest.approx(1.0)
    assert job.progress().steps_done == cfg.replicas * per_replica
