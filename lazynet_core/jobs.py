"""Background training jobs: plain Python, no Streamlit.

A :class:`TrainingJob` runs :func:`lazynet_core.train.train_ensemble` in a ``threading.Thread`` and
then :func:`lazynet_core.runs.save_run` into a hidden temporary directory next to the final one,
renamed into place only when everything was written. A cancelled or crashed job therefore never
leaves a half-written run behind. Progress lives in a lock-protected record that any thread (a
Streamlit script run, a test) reads as an immutable :class:`JobProgress` snapshot.

Why threads and not processes: the app has one user on a laptop or a 2-core server, the model is
torch (which releases the GIL inside its kernels), and a thread shares the already-built ``Pairs``
without copying them. Only one job runs at a time (:class:`JobRegistry`) so the server keeps a core.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazynet_core.errors import RunError, TrainingCancelled

__all__ = ["JobProgress", "JobRefused", "JobRegistry", "TrainingJob", "budget_cut", "safe_run_name"]

STATUSES = ("queued", "running", "saving", "done", "cancelled", "failed")
ACTIVE = ("queued", "running", "saving")


class JobRefused(RuntimeError):
    """A second training job was requested while one is still running."""


@dataclass(frozen=True)
class JobProgress:
    """Immutable snapshot of a job's progress.

    ``curves`` maps replica index to a list of ``(epoch, train_loss, val_loss)`` tuples.
    ``fraction`` is in [0, 1]; ``eta_s`` is ``None`` until the first step was timed.
    ``budget_cut`` is ``"after 7 of 40 epochs"`` when the time budget stopped a finished job early.
    """

    job_id: str
    name: str
    status: str
    replica: int = 0
    n_replicas: int = 1
    epoch: int = 0
    n_epochs: int = 1
    step: int = 0
    steps_done: int = 0
    total_steps: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    fraction: float = 0.0
    curves: dict[int, list[tuple[int, float, float | None]]] = field(default_factory=dict)
    error: str | None = None
    run_path: str | None = None
    budget_cut: str | None = None

    @property
    def active(self) -> bool:
        """True while the job is queued, training or saving."""
        return self.status in ACTIVE

    def describe(self) -> str:
        """One line for a status bar, e.g. ``'training: 410/1200 steps of 3 replica(s) · replica 2 at
        epoch 5/20 · loss 0.412'`` (replicas may train at once, on Ray)."""
        if self.status == "queued":
            return "queued"
        if self.status in ("running", "saving"):
            loss = "" if self.loss is None else f" · loss {self.loss:.4g}"
            head = "saving" if self.status == "saving" else "training"
            return (
                f"{head}: {self.steps_done}/{self.total_steps} steps of {self.n_replicas} replica(s) · "
                f"replica {self.replica + 1} at epoch {self.epoch + 1}/{self.n_epochs}{loss}"
            )
        if self.status == "failed":
            return f"failed: {self.error}"
        if self.status == "done" and self.budget_cut:
            return f"stopped by the time budget {self.budget_cut}"
        return self.status


def safe_run_name(name: str) -> str:
    """Return ``name`` if it is a usable run directory name, else raise ``ValueError``.

    Allowed: letters, digits, ``-``, ``_``, ``.``; not starting with ``.``; at most 80 characters.
    """
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}", name):
        msg = (
            f"Run name {name!r} is not allowed: use 1-80 letters, digits, '-', '_' or '.', "
            "not starting with '.' (e.g. 'demo-3rep')."
        )
        raise ValueError(msg)
    return name


def _default_train_fn() -> Callable[..., Any]:
    from lazynet_core.train import train_ensemble

    return train_ensemble


def _default_save_fn() -> Callable[..., Any]:
    from lazynet_core.runs import save_run

    return save_run


def _default_planned_steps(pairs: Any, train_config: Any) -> int:
    try:
        from lazynet_core.train import planned_steps
    except ImportError:
        return 0
    return int(planned_steps(pairs, train_config))


def budget_cut(ensemble: Any) -> str | None:
    """``"after 7 of 40 epochs"`` when the time budget stopped training early, else ``None``.

    Parameters
    ----------
    ensemble
        A trained ensemble; ``info["replicas"]`` records how each replica stopped.

    Returns
    -------
    str or None
        The fewest epochs a cut replica ran, out of the planned ones (``"replica 2 of 3"`` added
        when only some replicas were cut).
    """
    info = getattr(ensemble, "info", None) or {}
    replicas = info.get("replicas", []) if isinstance(info, dict) else []
    cut = [r for r in replicas if r.get("stopped") == "time_budget"]
    if not cut:
        return None
    epochs = getattr(getattr(ensemble, "train_config", None), "epochs", None)
    first = min(cut, key=lambda r: int(r.get("epochs_run") or 0))
    text = f"after {first.get('epochs_run')} of {epochs} epochs"
    if len(cut) < len(replicas):
        text += f" (replica {int(first.get('replica', 0)) + 1} of {len(replicas)})"
    return text


class TrainingJob:
    """Train an ensemble in a background thread and save it atomically under ``runs_root/name``.

    Parameters
    ----------
    pairs
        Training pairs (``lazynet_core.pairs.Pairs``); the worker never touches an AnnData.
    model_config, train_config
        Passed to ``train_fn`` unchanged.
    runs_root
        Directory holding runs; created if missing.
    name
        Run directory name (see :func:`safe_run_name`); must not exist yet.
    train_fn, save_fn
        Injected for tests; default to ``train_ensemble`` and ``save_run``.
    total_steps
        Planned mini-batch steps for the ETA; default ``planned_steps(pairs, train_config)``.
    provenance
        Data provenance stored in the run manifest (e.g. source path and sha256 of the screen).
    """

    def __init__(
        self,
        pairs: Any,
        model_config: Any,
        train_config: Any,
        *,
        runs_root: str | Path,
        name: str,
        train_fn: Callable[..., Any] | None = None,
        save_fn: Callable[..., Any] | None = None,
        total_steps: int | None = None,
        provenance: dict | None = None,
    ) -> None:
        self.job_id = uuid.uuid4().hex[:12]
        self.name = safe_run_name(name)
        self.runs_root = Path(runs_root)
        self.final_path = self.runs_root / self.name
        if self.final_path.exists():
            msg = (
                f"A run named {self.name!r} already exists in {self.runs_root}; "
                "choose another run name or delete that directory."
            )
            raise RunError(msg)
        self._pairs = pairs
        self._model_config = model_config
        self._train_config = train_config
        self._train_fn = train_fn
        self._save_fn = save_fn
        self._provenance = dict(provenance or {})
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"lazynet-train-{self.job_id}", daemon=True)
        self.ensemble: Any = None
        self.exception: BaseException | None = None
        n_rep = int(getattr(train_config, "replicas", 1))
        n_ep = int(getattr(train_config, "epochs", 1))
        if total_steps is None:
            total_steps = _default_planned_steps(pairs, train_config)
        self._budget = getattr(train_config, "time_budget_s", None)
        self._steps: dict[int, int] = {}  # latest step of each replica (they may run in parallel, e.g. Ray)
        self._t0 = 0.0
        self._rec: dict[str, Any] = {
            "job_id": self.job_id,
            "name": self.name,
            "status": "queued",
            "n_replicas": n_rep,
            "n_epochs": n_ep,
            "total_steps": int(total_steps or 0),
            "curves": {},
        }

    # -- public API --------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        """Start the worker thread; returns ``self``."""
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the worker to stop; it does so before its next mini-batch."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> JobProgress:
        """Block until the worker ends (or ``timeout`` seconds); return the latest snapshot."""
        self._thread.join(timeout)
        return self.progress()

    @property
    def is_alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    def progress(self) -> JobProgress:
        """Thread-safe snapshot of the progress record."""
        with self._lock:
            rec = dict(self._rec)
            rec["curves"] = {k: list(v) for k, v in self._rec["curves"].items()}
        if rec["status"] in ACTIVE and self._t0:
            rec["elapsed_s"] = time.perf_counter() - self._t0
        return JobProgress(**rec)

    # -- worker --------------------------------------------------------------------------------
    def _update(self, **values: Any) -> None:
        with self._lock:
            self._rec.update(values)

    def _on_progress(self, replica: int, epoch: int, step: int, loss: float, elapsed: float) -> None:
        self._steps[int(replica)] = int(step)  # step counts from 1 within a replica
        done = sum(self._steps.values())  # right whether replicas run one after another or at once
        total = self._rec["total_steps"]
        fraction = min(done / total, 1.0) if total else 0.0
        eta = elapsed / done * max(total - done, 0) if done and total else None
        if self._budget is not None:
            left = max(float(self._budget) - elapsed, 0.0)
            eta = left if eta is None else min(eta, left)
            fraction = max(fraction, min(elapsed / float(self._budget), 1.0))
        self._update(
            status="running",
            replica=int(replica),
            epoch=int(epoch),
            step=int(step),
            loss=float(loss),
            elapsed_s=float(elapsed),
            steps_done=done,
            fraction=fraction,
            eta_s=eta,
        )

    def _on_epoch(
        self, replica: int, epoch: int, train_loss: float, val_loss: float | None, elapsed: float
    ) -> None:
        val = None if val_loss is None else float(val_loss)
        with self._lock:
            self._rec["curves"].setdefault(int(replica), []).append((int(epoch), float(train_loss), val))

    def _run(self) -> None:
        tmp = self.runs_root / f".{self.name}.partial-{self.job_id}"
        try:
            self._update(status="running")
            train = self._train_fn or _default_train_fn()
            ensemble = train(
                self._pairs,
                self._model_config,
                self._train_config,
                on_progress=self._on_progress,
                on_epoch=self._on_epoch,
                should_stop=self._cancel.is_set,
            )
            if self._cancel.is_set():
                raise TrainingCancelled("Training was cancelled before the run was saved.")
            self._update(status="saving", fraction=1.0, eta_s=0.0)
            self.runs_root.mkdir(parents=True, exist_ok=True)
            save = self._save_fn or _default_save_fn()
            save(ensemble, tmp, provenance=self._provenance)
            if self._cancel.is_set():  # a Cancel clicked while saving still wins
                raise TrainingCancelled("Training was cancelled while the run was being saved.")
            if self.final_path.exists():
                msg = (
                    f"A run named {self.name!r} appeared in {self.runs_root} while training; not overwritten."
                )
                raise RunError(msg)
            tmp.rename(self.final_path)
            self.ensemble = ensemble
            self._update(
                budget_cut=budget_cut(ensemble),
                status="done",
                run_path=str(self.final_path),
                fraction=1.0,
                eta_s=0.0,
                elapsed_s=time.perf_counter() - self._t0,
            )
        except TrainingCancelled:
            self._update(status="cancelled", elapsed_s=time.perf_counter() - self._t0, eta_s=None)
        except Exception as exc:  # noqa: BLE001 - any crash becomes a readable failed status
            self.exception = exc
            text = str(exc) or type(exc).__name__
            self._update(
                status="failed",
                error=f"{type(exc).__name__}: {text}",
                elapsed_s=time.perf_counter() - self._t0,
                eta_s=None,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class JobRegistry:
    """Holds training jobs by id and allows one active job at a time.

    Shared by every session of an app process (the UI keeps one in ``st.cache_resource``).
    """

    def __init__(self) -> None:
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    def submit(self, job: TrainingJob) -> TrainingJob:
        """Start ``job``; raise :class:`JobRefused` if another job is still active."""
        with self._lock:
            running = self.active()
            if running is not None:
                snap = running.progress()
                msg = (
                    f"Training job {snap.name!r} is still {snap.status} ({snap.describe()}). "
                    "Only one job runs at a time: wait for it or cancel it, then start again."
                )
                raise JobRefused(msg)
            self._jobs[job.job_id] = job
            job.start()
        return job

    def get(self, job_id: str | None) -> TrainingJob | None:
        """The job with ``job_id``, or ``None``."""
        return self._jobs.get(job_id) if job_id else None

    def active(self) -> TrainingJob | None:
        """The job that is queued, running or saving, if any."""
        for job in self._jobs.values():
            if job.progress().active:
                return job
        return None

    def latest(self) -> TrainingJob | None:
        """The most recently submitted job, if any."""
        return next(reversed(self._jobs.values()), None) if self._jobs else None
