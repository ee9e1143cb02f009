"""Ray backend: ensemble replicas and cross-validation folds as Ray tasks (issue 14).

Replicas, folds and seeds are independent, so each one is a Ray task and Ray does the scheduling
(architecture note: an existing engine, never a scheduler of our own). Nothing here is imported
unless ``backend="ray"`` is asked for, and ``ray`` itself is imported inside the functions, so
the app and the thread backend never start or even import Ray.

Same results as the thread backend. A task runs exactly the thread backend's code
(:class:`lazynet_core.train._Trainer`) on its replica, with the same per-replica seeds
(``TrainConfig.seed * 1000 + replica`` for torch, ``[PairConfig.seed, TrainConfig.seed, replica]``
for the pair sampler) and the same torch thread count (``TrainConfig.threads_for``), so on CPU the
weights are identical bit for bit (tested on the toy screen).

Progress and cancel. A worker buffers its ``on_progress``/``on_epoch`` events and pushes them to
a small reporter actor every ``_FLUSH_S`` seconds (and at every epoch end); the driver drains the
actor every ``_POLL_S`` seconds and replays the events, in order, on the caller's callbacks in the
caller's thread, with ``elapsed`` measured on the driver's clock. Replicas run at once, so the
events of different replicas interleave. ``should_stop`` is polled by the driver; when it returns
True the reporter's stop flag is set (a worker sees it at its next flush, ≤ ``_FLUSH_S``, and
raises ``TrainingCancelled`` before its next mini-batch); tasks still running or queued after
``_GRACE_S`` seconds are force-cancelled (``ray.cancel(force=True)`` kills the worker process), and
the driver waits until every task has ended before raising ``TrainingCancelled``. A task that
fails stops the others the same way, and its error is raised in the driver as ``TrainingError``
naming the replica (or fold), the original exception type and its message.

Time budget. ``TrainConfig.time_budget_s`` is the wall budget of the whole ensemble, as on the
thread backend: with ``W`` replicas at once, each task gets ``budget / ceil(replicas / W)``
seconds from its own start.

Data movement. ``Pairs`` (CSR matrix + labels) is put in the object store once and every task
reads it from there: on one machine the numpy buffers are shared memory, mapped without a copy;
on a cluster each node fetches one copy. Each task returns its trained module (parameters only).
With a streamed screen (:mod:`lazynet_core.streaming`) the object holds the control cells' rows, the
per-perturbation means (and, for evaluation, one summed row per perturbation and the noise
ceiling's half means), never the perturbed cells' rows; the means stay mapped from the store in
every worker (read-only), only the gene scale and control means get private copies.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .errors import TrainingCancelled, TrainingError

__all__ = ["cross_validate_ray", "ray_session", "train_ensemble_ray"]

_POLL_S = 0.1  # driver: drain progress and check should_stop this often
_FLUSH_S = 0.25  # worker: push buffered events (and read the stop flag) this often
_GRACE_S = 2.0  # after a stop, wait this long for workers to stop by themselves, then force-cancel
# Never a plain ray.cancel: it raises KeyboardInterrupt inside a running task, and a worker
# interrupted inside torch was seen to fail its next task with a corrupt SystemError.
_MIN_STORE = 256 * 1024**2
_MAX_STORE_FRACTION = 0.3


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is in requirements.txt
        msg = "backend='ray' needs the ray package (pip install -r requirements.txt); use backend='thread'."
        raise TrainingError(msg) from exc
    return ray


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _mem_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 1024**3


def _nbytes(obj: Any) -> int:
    """Bytes of the matrix of a Pairs (or AnnData) and of a Pairs' cached arrays (a streamed
    screen's means): what the object store must hold."""
    X = getattr(obj, "X", None)
    total = 0
    for name in ("data", "indices", "indptr"):
        arr = getattr(X, name, None)
        total += getattr(arr, "nbytes", 0)
    total = total or getattr(X, "nbytes", 0)
    cache = getattr(obj, "_cache", None)
    if isinstance(cache, dict):
        total += sum(v.nbytes for v in cache.values() if isinstance(v, np.ndarray))
    return total


@contextlib.contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, object_store_bytes: int | None = None
) -> Iterator[Any]:
    """Connect to Ray for the duration of a ``with`` block; yields the ``ray`` module.

    If this process is already connected (``ray.is_initialized()``), that session is used and left
    running. Otherwise ``address`` connects to a running cluster, and ``None`` starts a local Ray
    with ``num_cpus`` CPUs (default: the CPUs this process may use), no dashboard, an object
    store of ``object_store_bytes`` (default 1 GB) and its files under the temp directory; the
    session this function started is shut down at the end of the block.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None:
        store = int(object_store_bytes or 1024**3)
        store = max(_MIN_STORE, min(store, int(_MAX_STORE_FRACTION * _mem_total())))
        kwargs.update(
            num_cpus=int(num_cpus or _cpus()),
            include_dashboard=False,
            object_store_memory=store,
            _temp_dir=os.path.join(tempfile.gettempdir(), "lazynet_ray"),
        )
    else:  # a cluster: ship this package to its workers
        import lazynet_core

        kwargs["runtime_env"] = {"py_modules": [lazynet_core]}
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# ---- worker side ------------------------------------------------------------------------------
class _Reporter:
    """Actor between workers and the driver: buffered events in, a stop flag out."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.stop = False

    def push(self, events: list[tuple]) -> bool:
        self.events.extend(events)
        return self.stop

    def drain(self) -> list[tuple]:
        out, self.events = self.events, []
        return out

    def request_stop(self) -> None:
        self.stop = True


class _Link:
    """A worker's side of the reporter: buffers events, pushes them every ``_FLUSH_S``.

    Pushes never block: Ray releases a task's CPU while it waits in ``ray.get``, which would let
    more replicas run at once than the CPUs allow (seen: 3 tasks on 2 CPUs). The stop flag is read
    from an earlier push once it is ready; only :meth:`close` waits, when the work is done.
    """

    def __init__(self, reporter: Any) -> None:
        self.reporter = reporter
        self.buffer: list[tuple] = []
        self.last = 0.0
        self.stopped = False
        self.answer = None  # an earlier push, whose reply is the stop flag
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < _FLUSH_S:
            return
        import ray

        if self.answer is not None:
            ready, _ = ray.wait([self.answer], timeout=0)
            if ready:
                self.stopped = bool(ray.get(self.answer)) or self.stopped
                self.answer = None
        events, self.buffer = self.buffer, []
        ref = self.reporter.push.remote(events)
        if self.answer is None:
            self.answer = ref
        self.last = now

    def close(self) -> None:
        """Deliver what is buffered and wait for it (the actor keeps the order of pushes)."""
        import ray

        events, self.buffer = self.buffer, []
        ray.get(self.reporter.push.remote(events))

    def emit(self, kind: str, *payload: Any, force: bool = False) -> None:
        self.buffer.append((kind, time.time(), *payload))
        self.flush(force=force)

    def should_stop(self) -> bool:
        self.flush()
        return self.stopped


_READ_ONLY_FAMILIES = ("pert_mean", "cells_mean")  # read by numpy only: no private copy needed


def _writable_cache(pairs: Any) -> Any:
    """Arrays from the object store are read-only; give the pairs' caches private copies.

    ``torch.from_numpy`` (gene scale, control mean) wants writable arrays. The per-perturbation
    means of a streamed screen (thousands of arrays genome-wide) are only read by numpy, so they
    stay mapped from the object store, shared by the workers of a node.
    """
    cache = getattr(pairs, "_cache", None)
    if isinstance(cache, dict):
        for key, value in list(cache.items()):
            family = key[0] if isinstance(key, tuple) and key else key
            if family in _READ_ONLY_FAMILIES:
                continue
            if isinstance(value, np.ndarray) and not value.flags.writeable:
                cache[key] = value.copy()
    return pairs


def _replica_task(pairs, model_config, train_config, replica: int, threads: int, budget_s, reporter):
    """One replica, exactly as the thread backend trains it (see the module docstring)."""
    import torch

    from .train import _Trainer

    class _TaskTrainer(_Trainer):
        def deadline(self, replica: int) -> float:  # this task's share of the ensemble's budget
            return math.inf if budget_s is None else budget_s

    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    link = _Link(reporter)
    started = time.time()
    trainer = _TaskTrainer(
        _writable_cache(pairs),
        model_config,
        train_config,
        on_progress=lambda *a: link.emit("progress", *a),
        on_epoch=lambda *a: link.emit("epoch", *a, force=True),
        should_stop=link.should_stop,
    )
    model, info = trainer.train_replica(replica)
    link.close()
    info["worker_pid"] = os.getpid()
    info["worker_peak_rss_gb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    )  # this worker process
    return {"model": model.cpu(), "info": info, "records": trainer.records, "started": started}


def _fold_task(
    adata,
    seed: int,
    k: int,
    n_folds: int,
    held,
    model_config,
    train_config,
    pair_config,
    references,
    threads: int,
    reporter,
):
    """One cross-validation fold (all its replicas, in this worker, on the thread backend)."""
    import torch

    from .metrics import evaluate
    from .pairs import make_pairs
    from .train import train_ensemble

    torch.set_num_threads(threads)
    link = _Link(reporter)
    link.emit("fold", seed, k, n_folds, tuple(held), force=True)
    pairs = make_pairs(adata, pair_config.replace(split="perturbations", held_out=tuple(held), seed=seed))
    ensemble = train_ensemble(
        pairs, model_config, train_config.replace(seed=seed), should_stop=link.should_stop
    )
    frames = [
        evaluate(pairs, ensemble.predict, reference=reference, roles=("test",)).assign(seed=seed, fold=k)
        for reference in references
    ]
    link.close()
    return frames


# ---- driver side --------------------------------------------------------------------------------
def _cause(exc: BaseException) -> BaseException:
    return getattr(exc, "cause", None) or exc


def _run_tasks(
    ray: Any,
    refs: list,
    labels: list[str],
    reporter: Any,
    on_event: Callable[[tuple], None],
    should_stop: Callable[[], bool] | None,
) -> list:
    """Wait for ``refs`` while replaying events and honouring ``should_stop``; results in order."""
    results: dict[int, Any] = {}
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)

    def drain() -> None:
        for event in ray.get(reporter.drain.remote()):
            on_event(event)

    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=_POLL_S)
            drain()
            for ref in ready:
                try:
                    results[index[ref]] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - any task error stops the rest and is reported
                    _stop_all(ray, reporter, pending)
                    pending = []
                    cause = _cause(exc)
                    if isinstance(cause, TrainingCancelled):
                        raise TrainingCancelled("Training was cancelled; nothing was saved.") from exc
                    text = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
                    msg = f"{labels[index[ref]]} failed in a Ray worker: {type(cause).__name__}: {text}"
                    raise TrainingError(msg) from exc
            if pending and should_stop is not None and should_stop():
                _stop_all(ray, reporter, pending)
                pending = []
                raise TrainingCancelled("Training was cancelled; nothing was saved.")
        drain()
    except BaseException:
        if pending:  # e.g. KeyboardInterrupt in the driver: leave no task running
            _stop_all(ray, reporter, pending)
        raise
    return [results[i] for i in range(len(refs))]


def _stop_all(ray: Any, reporter: Any, pending: list) -> None:
    """Ask running tasks to stop, force-cancel the rest after a grace period, wait until all ended."""
    if not pending:
        return
    with contextlib.suppress(Exception):
        ray.get(reporter.request_stop.remote())
    _, rest = ray.wait(pending, num_returns=len(pending), timeout=_GRACE_S)
    for ref in rest:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    for ref in pending:
        with contextlib.suppress(Exception):
            ray.get(ref)


def _slots(ray: Any, threads: int, tasks: int, workers: int | None) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1))
    slots = max(1, cpus // max(threads, 1))
    if workers is not None:
        slots = min(slots, workers)
    return max(1, min(slots, tasks))


def train_ensemble_ray(
    pairs: Any,
    model_config: Any,
    train_config: Any,
    *,
    on_progress: Callable | None = None,
    on_epoch: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
    address: str | None = None,
    workers: int | None = None,
):
    """``train_ensemble(..., backend="ray")``: every replica a Ray task (see the module docstring).

    ``workers`` caps the replicas trained at once (on a local Ray it also sets the CPUs Ray
    gets: ``workers × threads``). Returns the same :class:`~lazynet_core.ensemble.Ensemble` as the
    thread backend; ``info`` adds ``backend``, ``workers`` and per-replica ``worker_seconds``.
    """
    from .train import _assemble_ensemble, _Trainer

    threads = train_config.threads_for(pairs.n_genes, model_config.hidden_for(pairs.n_genes))
    n_rep = train_config.replicas
    _Trainer(pairs, model_config, train_config.replace(replicas=1, epochs=1), None, None, None)  # fail early
    num_cpus = None if workers is None else int(workers) * threads
    store = 2 * _nbytes(pairs) + 512 * 1024**2
    t0, wall0 = time.perf_counter(), time.time()
    with ray_session(address, num_cpus=num_cpus, object_store_bytes=store) as ray:
        slots = _slots(ray, threads, n_rep, workers)
        budget = train_config.time_budget_s
        share = None if budget is None else budget / math.ceil(n_rep / slots)
        task = ray.remote(_replica_task).options(num_cpus=threads, max_retries=0)
        reporter = ray.remote(_Reporter).options(num_cpus=0).remote()
        pairs_ref = ray.put(pairs)
        refs = [
            task.remote(pairs_ref, model_config, train_config, r, threads, share, reporter)
            for r in range(n_rep)
        ]

        def on_event(event: tuple) -> None:
            kind, stamp, *payload = event
            elapsed = stamp - wall0
            if kind == "progress" and on_progress is not None:
                replica, epoch, step, loss, _ = payload
                on_progress(replica, epoch, step, loss, elapsed)
            elif kind == "epoch" and on_epoch is not None:
                replica, epoch, train_loss, val_loss, _ = payload
                on_epoch(replica, epoch, train_loss, val_loss, elapsed)

        labels = [f"Replica {r}" for r in range(n_rep)]
        try:
            outs = _run_tasks(ray, refs, labels, reporter, on_event, should_stop)
        finally:
            with contextlib.suppress(Exception):
                ray.kill(reporter)
    records = []
    for out in outs:
        offset = out["started"] - wall0
        records += [dict(rec, elapsed_s=rec["elapsed_s"] + offset) for rec in out["records"]]
    infos = [out["info"] for out in outs]
    for out, info in zip(outs, infos, strict=True):
        info["worker_seconds"] = out["records"][-1]["elapsed_s"] if out["records"] else 0.0
    return _assemble_ensemble(
        pairs,
        model_config,
        train_config,
        [out["model"] for out in outs],
        infos,
        records,
        time.perf_counter() - t0,
        threads,
        backend="ray",
        workers=slots,
    )


def cross_validate_ray(
    adata: Any,
    plans: Sequence[tuple[int, list[tuple[str, ...]]]],
    *,
    model_config: Any,
    train_config: Any,
    pair_config: Any,
    references: Sequence[str],
    on_fold: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
    address: str | None = None,
    workers: int | None = None,
) -> list:
    """Every (seed, fold) of a cross-validation as one Ray task; the frames in (seed, fold) order.

    ``plans`` is ``[(seed, fold_plan), ...]``. ``on_fold(seed, k, n_folds, held_out)`` is called
    when a fold's task starts (so folds report in the order Ray runs them).
    """
    genes = adata.n_vars
    threads = train_config.threads_for(genes, model_config.hidden_for(genes))
    jobs = [(seed, k, len(plan), held) for seed, plan in plans for k, held in enumerate(plan)]
    num_cpus = None if workers is None else int(workers) * threads
    store = 2 * _nbytes(adata) + 512 * 1024**2
    with ray_session(address, num_cpus=num_cpus, object_store_bytes=store) as ray:
        task = ray.remote(_fold_task).options(num_cpus=threads, max_retries=0)
        reporter = ray.remote(_Reporter).options(num_cpus=0).remote()
        adata_ref = ray.put(adata)
        refs = [
            task.remote(
                adata_ref,
                int(seed),
                k,
                n,
                held,
                model_config,
                train_config,
                pair_config,
                tuple(references),
                threads,
                reporter,
            )
            for seed, k, n, held in jobs
        ]

        def on_event(event: tuple) -> None:
            kind, _, *payload = event
            if kind == "fold" and on_fold is not None:
                on_fold(*payload)

        labels = [f"Fold {k} of seed {seed} (held out {list(held)})" for seed, k, _, held in jobs]
        try:
            outs = _run_tasks(ray, refs, labels, reporter, on_event, should_stop)
        finally:
            with contextlib.suppress(Exception):
                ray.kill(reporter)
    return [frame for frames in outs for frame in frames]
