"""The Ray backend (issue 14): same weights as threads, progress, cancel, task errors, folds."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
from lazynet_core.errors import TrainingCancelled, TrainingError
from lazynet_core.pairs import make_pairs
from lazynet_core.train import train_ensemble

ray = pytest.importorskip("ray")

TOY_PAIRS = PairConfig(split="cells", resamples=32, k=16, seed=0, reference_fraction=0.0)
TOY_TRAIN = TrainConfig(replicas=2, epochs=8, lr=1e-2, batch_size=32, seed=3)


def _same_weights(a, b) -> None:
    assert len(a.replicas) == len(b.replicas)
    for ra, rb in zip(a.replicas, b.replicas, strict=True):
        sa, sb = ra.state_dict(), rb.state_dict()
        assert list(sa) == list(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key  # bit for bit


def test_lazynet_core_does_not_import_ray():
    code = (
        "import sys, lazynet_core, lazynet_core.train, lazynet_core.validation, lazynet_core.cli, "
        "lazynet_core.jobs, lazynet_core.streaming; assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ray_weights_match_threads_bit_for_bit(toy_adata):
    """Local Ray started and stopped by LazyNet, 2 workers: same seeds, same weights and losses."""
    assert not ray.is_initialized()
    pairs = make_pairs(toy_adata, TOY_PAIRS)
    threads = train_ensemble(pairs, ModelConfig(), TOY_TRAIN)
    epochs, steps = [], []
    remote = train_ensemble(
        pairs,
        ModelConfig(),
        TOY_TRAIN,
        backend="ray",
        workers=2,
        on_epoch=lambda *a: epochs.append(a),
        on_progress=lambda *a: steps.append(a),
    )
    assert not ray.is_initialized()  # the session LazyNet started is stopped again
    _same_weights(threads, remote)
    cols = ["replica", "epoch", "train_loss", "val_loss"]
    pd.testing.assert_frame_equal(
        threads.history[cols].sort_values(cols[:2]).reset_index(drop=True),
        remote.history[cols].sort_values(cols[:2]).reset_index(drop=True),
    )
    assert remote.info["backend"] == "ray" and remote.info["workers"] == 2
    assert [i["seed"] for i in remote.info["replicas"]] == [i["seed"] for i in threads.info["replicas"]]
    # every epoch and every step reached the driver's callbacks, per replica in order
    assert sorted((r, e) for r, e, *_ in epochs) == [(r, e) for r in range(2) for e in range(8)]
    for r in range(2):
        own = [s for rep, _, s, _, _ in steps if rep == r]
        assert own == list(range(1, len(own) + 1)) and len(own) > 8
    assert all(np.isfinite(loss) and elapsed >= 0 for *_, loss, elapsed in steps)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the tests below (train_ensemble reuses a session it did not start)."""
    from lazynet_core.distributed import ray_session

    with ray_session(num_cpus=2, object_store_bytes=256 * 1024**2) as r:
        yield r
    assert not ray.is_initialized()


def _all_cpus_free(r, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if r.available_resources().get("CPU", 0) == r.cluster_resources().get("CPU"):
            return True
        time.sleep(0.1)
    return False


def test_cancel_stops_every_ray_task(toy_adata, ray_local):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    steps = []
    t0 = time.perf_counter()
    with pytest.raises(TrainingCancelled):
        train_ensemble(
            pairs,
            ModelConfig(),
            TrainConfig(replicas=3, epochs=100_000),  # hours if the stop were ignored
            backend="ray",
            on_progress=lambda *a: steps.append(a),
            should_stop=lambda: len(steps) >= 5,
        )
    assert time.perf_counter() - t0 < 60
    assert len(steps) >= 5
    assert ray_local.is_initialized()  # a session it did not start is left running ...
    assert _all_cpus_free(ray_local)  # ... with no task of ours holding a CPU


def test_failed_task_reports_its_error(toy_adata, ray_local):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    # the driver's checks pass; every worker fails building the model (hidden 4 != 8 genes): the first
    # failure to arrive (either replica) is reported
    with pytest.raises(
        TrainingError, match=r"Replica \d failed in a Ray worker: ValueError: A Jacobian start"
    ):
        train_ensemble(
            pairs,
            ModelConfig(hidden=4, start="control_covariance"),
            TrainConfig(replicas=2, epochs=2),
            backend="ray",
        )
    assert _all_cpus_free(ray_local)


def test_cross_validate_folds_on_ray_match_threads(toy_adata, ray_local):
    from lazynet_core.validation import cross_validate

    kwargs = dict(
        folds="lopo", max_perturbations=1, seeds=(0, 1), train_config=TrainConfig(replicas=1, epochs=2)
    )
    seen = []
    local = cross_validate(toy_adata, **kwargs)
    remote = cross_validate(
        toy_adata, backend="ray", on_fold=lambda seed, k, n, held: seen.append((seed, k)), **kwargs
    )
    assert sorted(seen) == [(0, 0), (1, 0)]
    pd.testing.assert_frame_equal(local, remote)


def test_unknown_backend_is_a_clear_error(toy_adata):
    pairs = make_pairs(toy_adata, PairConfig(resamples=8, k=2))
    with pytest.raises(ValueError, match="backend must be 'thread' or 'ray'"):
        train_ensemble(pairs, ModelConfig(), TrainConfig(replicas=1, epochs=1), backend="dask")
