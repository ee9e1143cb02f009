"""Training: one replica at a time, shuffled mini-batches, validation early stopping (method §3, §7b).

Progress is reported through callbacks and cancellation through ``should_stop``, checked before
every mini-batch, so the same function serves the CLI, the app's background thread and tests.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from .config import ModelConfig, TrainConfig
from .ensemble import Ensemble
from .errors import ScreenError, TrainingCancelled, TrainingError
from .model import LazyNet
from .pairs import Pairs

ProgressFn = Callable[[int, int, int, float, float], None]
EpochFn = Callable[[int, int, float, float, float], None]
_MAX_VAL_PAIRS = 2048
_NAN_RETRIES = 2


def planned_steps(pairs: Pairs, train_config: TrainConfig) -> int:
    """Mini-batch steps of the whole ensemble without early stopping (for progress bars and ETA)."""
    n_perts = len(pairs.evaluation_perturbations("train"))
    per_epoch = n_perts * pairs.config.resamples
    per_epoch += int(round(pairs.config.control_pairs * per_epoch)) + int(
        round(pairs.config.natural_pairs * per_epoch)
    )
    return train_config.replicas * train_config.epochs * math.ceil(per_epoch / train_config.batch_size)


def control_regression(pairs: Pairs, *, cells: str = "controls") -> np.ndarray:
    """(G, G) float32: entry (i, j) = cov(x_i, x_j) / var(x_j) among training cells, diagonal 0.

    The slope of gene i on gene j when j alone varies: what conditioning on the cells' covariance
    predicts for a change of j (method §7d). ``cells="controls"``: the training control cells;
    ``"pooled"``: those and every trained perturbation's training cells, each group centred on its own
    mean (``ModelConfig.covariance_cells``; the ``pooled_covariance`` baseline). Genes constant among
    them get 0.
    """
    from .metrics import centred_training_cells

    try:
        x = centred_training_cells(pairs, cells=cells)
    except ScreenError as err:
        raise TrainingError(str(err)) from None
    cov = x.T @ x / max(len(x) - 1, 1)  # the slope cov / var: any common divisor would do
    var = np.diag(cov).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        reg = np.where(var[None, :] > 1e-12, cov / var[None, :], 0.0)
    np.fill_diagonal(reg, 0.0)
    return reg.astype(np.float32)


def perturbed_genes(pairs: Pairs) -> np.ndarray:
    """(G,) bool: genes targeted by a perturbation with training cells."""
    mask = np.zeros(pairs.n_genes, dtype=bool)
    trained = np.unique(pairs.cell_pert[(pairs.cell_pert >= 0) & (pairs.cell_role == "train")])
    for p in trained:
        mask[pairs.pert_targets[int(p)]] = True
    return mask


def _freeze_unperturbed_columns(model: LazyNet, pairs: Pairs) -> list:
    """Zero the gradients of the first block's columns of genes no training perturbation targets
    (``ModelConfig.freeze_unperturbed``): their ``W_L`` columns and, with one unit per gene, their
    ``W_E`` and ``W_out`` columns. Adam then never moves them (its moments stay 0). Call after the
    model is on its device. Returns the hook handles (removed once the replica is trained)."""
    frozen = torch.from_numpy(~perturbed_genes(pairs))
    block = model.blocks[0]
    params = [block.A]
    if model.hidden == pairs.n_genes and len(model.blocks) == 1:
        params += [block.W_E, model.out.weight]  # one unit per gene: their columns are genes too
    handles = []
    for param in params:
        keep = (~frozen).to(device=param.device, dtype=param.dtype)
        handles.append(param.register_hook(lambda grad, keep=keep: grad * keep))
    return handles


def _shrink_weights(pairs: Pairs, config: TrainConfig) -> np.ndarray | None:
    """Per-perturbation weight of the ``TrainConfig.shrink`` penalty, indexed by ``EpochPairs.pert``.

    ``2 * shrink / sqrt(n_p)`` with ``n_p`` the perturbation's training cells; the last entry (index
    -1: control and natural pairs) is 0. With the standardised loss, a change fitted freely per
    perturbation is then the mean change soft-thresholded at ``shrink`` standard errors."""
    if config.shrink == 0:
        return None
    train = (pairs.cell_pert >= 0) & (pairs.cell_role == "train")
    counts = np.bincount(pairs.cell_pert[train], minlength=len(pairs.perturbations)).astype(np.float64)
    weight = np.where(counts > 0, 2.0 * config.shrink / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    return np.r_[weight, 0.0].astype(np.float32)


def _shrink_penalty(
    pred: torch.Tensor, pre: torch.Tensor, weight: np.ndarray, scale: torch.Tensor
) -> torch.Tensor:
    """L1 penalty on each pair's predicted change, per gene in units of ``scale``."""
    w = torch.from_numpy(weight).to(pred.device)[:, None]
    return (w * ((pred - pre) / scale).abs()).mean()


def _loss(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    if config.loss == "huber":
        return F.huber_loss(pred, target, delta=config.huber_delta)
    return (((pred - target) / scale) ** 2).mean()


def _validation_set(pairs: Pairs, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    epoch = pairs.sample_epoch(np.random.default_rng(seed), role="val")
    if len(epoch) == 0:
        return None
    keep = slice(0, _MAX_VAL_PAIRS)
    sub = epoch.subset(keep)
    pre, post = pairs.batch(sub, slice(None), role="val")
    return torch.from_numpy(pre), torch.from_numpy(post)


@torch.no_grad()
def _evaluate(model: LazyNet, val, scale, config: TrainConfig) -> float:
    if val is None:
        return float("nan")
    pre, post = val
    losses = [
        _loss(model.step(pre[i : i + 512]), post[i : i + 512], scale, config).item() * len(pre[i : i + 512])
        for i in range(0, len(pre), 512)
    ]
    return float(sum(losses) / len(pre))


class _Trainer:
    """State of one ensemble run: clock, callbacks, stop flag."""

    def __init__(
        self,
        pairs: Pairs,
        model_config: ModelConfig,
        config: TrainConfig,
        on_progress: ProgressFn | None,
        on_epoch: EpochFn | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.pairs, self.model_config, self.config = pairs, model_config, config
        self.on_progress, self.on_epoch = on_progress, on_epoch
        self.should_stop = should_stop or (lambda: False)
        self.start = time.perf_counter()
        self.scale = torch.from_numpy(pairs.gene_scale())
        self.val = _validation_set(pairs, seed=config.seed + 10_007)
        if config.patience and self.val is None:
            msg = (
                f"TrainConfig.patience={config.patience} needs a validation set, but these pairs hold none "
                "(PairConfig.val_fraction is 0, the default). Set val_fraction > 0 (e.g. 0.1) or patience=0."
            )
            raise TrainingError(msg)
        if model_config.freeze_unperturbed and config.weight_decay > 0:
            msg = ("ModelConfig.freeze_unperturbed keeps the weights of never-perturbed genes at their "
                   f"start, but weight decay ({config.weight_decay}) would still shrink them; set "
                   "TrainConfig.weight_decay=0 or freeze_unperturbed=False.")
            raise TrainingError(msg)
        self.records: list[dict] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def deadline(self, replica: int) -> float:
        """Each replica gets an equal share of the time budget, so all of them train."""
        if self.config.time_budget_s is None:
            return math.inf
        return self.config.time_budget_s * (replica + 1) / self.config.replicas

    def train_replica(self, replica: int) -> tuple[LazyNet, dict]:
        cfg = self.config
        seed = cfg.seed * 1000 + replica
        torch.manual_seed(seed)
        rng = np.random.default_rng([self.pairs.config.seed, cfg.seed, replica])
        model = LazyNet(self.pairs.n_genes, self.model_config, seed=seed)
        if self.model_config.start == "control_covariance":
            model.start_at_jacobian(
                torch.from_numpy(control_regression(self.pairs, cells=self.model_config.covariance_cells)),
                torch.from_numpy(self.pairs.control_mean("train")),
            )
        model = model.to(cfg.device)
        hooks = _freeze_unperturbed_columns(model, self.pairs) if self.model_config.freeze_unperturbed else []
        shrink_weight = _shrink_weights(self.pairs, cfg)
        lr = cfg.lr_for(model.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, planned_steps(self.pairs, cfg.replace(replicas=1, epochs=1)))
        total = cfg.epochs * steps_per_epoch
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr * 0.05)
            if cfg.cosine
            else None
        )
        best = (math.inf, copy.deepcopy(model.state_dict()))
        bad_epochs, step, retries, stopped = 0, 0, 0, "epochs"
        for epoch in range(cfg.epochs):
            model.train()
            batch_losses = []
            epoch_pairs = self.pairs.sample_epoch(rng)
            for first in range(0, len(epoch_pairs), cfg.batch_size):
                rows = slice(first, first + cfg.batch_size)
                pre, post = self.pairs.batch(epoch_pairs, rows)
                if self.should_stop():
                    raise TrainingCancelled("Training was cancelled; nothing was saved.")
                pre_t, post_t = torch.from_numpy(pre).to(cfg.device), torch.from_numpy(post).to(cfg.device)
                pred = model.step(pre_t)
                loss = _loss(pred, post_t, self.scale.to(cfg.device), cfg)
                if shrink_weight is not None:
                    loss = loss + _shrink_penalty(pred, pre_t, shrink_weight[epoch_pairs.pert[rows]],
                                                  self.scale.to(cfg.device))
                if not torch.isfinite(loss):
                    retries = self._nan_guard(model, opt, best[1], replica, epoch, retries)
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                batch_losses.append(loss.item())
                if self.on_progress is not None:
                    self.on_progress(replica, epoch, step, batch_losses[-1], self.elapsed())
            train_loss = float(np.mean(batch_losses)) if batch_losses else float("nan")
            model.eval()
            val_loss = _evaluate(model, self.val, self.scale, cfg)
            self.records.append(
                dict(
                    replica=replica,
                    epoch=epoch,
                    train_loss=train_loss,
                    val_loss=val_loss,
                    elapsed_s=self.elapsed(),
                )
            )
            if self.on_epoch is not None:
                self.on_epoch(replica, epoch, train_loss, val_loss, self.elapsed())
            monitored = val_loss if math.isfinite(val_loss) else train_loss
            if monitored < best[0] - 1e-6:
                best, bad_epochs = (monitored, copy.deepcopy(model.state_dict())), 0
            else:
                bad_epochs += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped = "early_stopping"
                break
            if self.elapsed() >= self.deadline(replica):
                stopped = "time_budget"
                break
        if cfg.patience:  # early stopping: keep the best validation epoch; otherwise the last one
            model.load_state_dict(best[1])
        for hook in hooks:
            hook.remove()
        model.eval()
        return model, dict(
            replica=replica,
            seed=seed,
            lr=lr,
            epochs_run=epoch + 1,
            best_loss=best[0],
            best_loss_on="validation" if math.isfinite(val_loss) else "train",  # what was monitored
            stopped=stopped,
            clamped_fraction=model.clamped_fraction(
                torch.from_numpy(self.pairs.control_mean("train")[None, :]).to(cfg.device)
            ),
        )

    def _nan_guard(self, model, opt, good_state, replica, epoch, retries) -> int:
        """Restore the last good weights and halve the learning rate; give up after a few tries."""
        if retries >= _NAN_RETRIES:
            msg = (
                f"The loss became NaN/inf in replica {replica}, epoch {epoch}, even after restoring "
                f"the last good weights and halving the learning rate {_NAN_RETRIES} times. "
                "Lower the learning rate (TrainConfig.lr) or check the input for extreme values."
            )
            raise TrainingError(msg)
        model.load_state_dict(good_state)
        for group in opt.param_groups:
            group["lr"] *= 0.5
        return retries + 1


def train_ensemble(
    pairs: Pairs,
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    *,
    on_progress: ProgressFn | None = None,
    on_epoch: EpochFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    backend: str = "thread",
    address: str | None = None,
    workers: int | None = None,
) -> Ensemble:
    """Train ``train_config.replicas`` independently seeded LazyNet replicas.

    Parameters
    ----------
    pairs
        The prepared screen (:func:`lazynet_core.make_pairs`).
    model_config, train_config
        Architecture and optimisation settings.
    on_progress
        ``on_progress(replica, epoch, step, loss, elapsed)`` after every mini-batch.
    on_epoch
        ``on_epoch(replica, epoch, train_loss, val_loss, elapsed)`` after every epoch.
    should_stop
        Checked before every mini-batch; when it returns True, ``TrainingCancelled`` is raised.
    backend
        ``"thread"`` (default): replicas one after another in this process. ``"ray"``: each
        replica is a Ray task (:mod:`lazynet_core.distributed`); same seeds give the same weights,
        bit for bit, on CPU. Ray is imported only on this path.
    address
        With ``backend="ray"``: the address of a running Ray cluster; ``None`` starts a local Ray
        (and stops it afterwards) unless this process is already connected to one.
    workers
        With ``backend="ray"`` and a local Ray: replicas trained at once (default: as many as the
        CPUs allow at ``train_config.threads_for`` threads each).

    Returns
    -------
    Ensemble
        The replicas (each at its best validation epoch), with history and split record.
    """
    if backend not in ("thread", "ray"):
        raise ValueError(f"backend must be 'thread' or 'ray', got {backend!r}.")
    if backend == "ray":
        from .distributed import train_ensemble_ray  # imports ray: only on this path

        return train_ensemble_ray(
            pairs,
            model_config,
            train_config,
            on_progress=on_progress,
            on_epoch=on_epoch,
            should_stop=should_stop,
            address=address,
            workers=workers,
        )
    torch.set_flush_denormal(True)  # fresh models at scale otherwise run ~6x slower (architecture note)
    threads = train_config.threads_for(pairs.n_genes, model_config.hidden_for(pairs.n_genes))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        trainer = _Trainer(pairs, model_config, train_config, on_progress, on_epoch, should_stop)
        replicas, infos = [], []
        for r in range(train_config.replicas):
            model, info = trainer.train_replica(r)
            replicas.append(model.cpu())
            infos.append(info)
    finally:
        torch.set_num_threads(previous_threads)
    return _assemble_ensemble(
        pairs, model_config, train_config, replicas, infos, trainer.records, trainer.elapsed(), threads
    )


def _assemble_ensemble(
    pairs: Pairs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    replicas: list[LazyNet],
    infos: list[dict],
    records: list[dict],
    seconds: float,
    threads: int,
    **extra_info,
) -> Ensemble:
    """The :class:`Ensemble` of trained replicas (shared by the thread and Ray backends)."""
    return Ensemble(
        replicas=replicas,
        genes=pairs.genes,
        reference=pairs.control_mean("train"),
        model_config=model_config,
        train_config=train_config,
        pair_config=pairs.config,
        history=pd.DataFrame.from_records(records),
        split=pairs.split_record(),
        info={
            "replicas": infos,
            "train_seconds": seconds,
            "threads": threads,
            "stopped_by_time_budget": any(i["stopped"] == "time_budget" for i in infos),
            "hidden": replicas[0].hidden,
            "parameters_per_replica": replicas[0].n_parameters(),
            **extra_info,
        },
    )
