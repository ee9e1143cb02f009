"""Cross-validation over perturbations: leave-one-perturbation-out or K-fold, several seeds.

Each fold holds an explicit list of perturbations out (``PairConfig.held_out``), trains an ensemble
on the rest and scores it with :func:`lazynet_core.metrics.evaluate` next to every baseline. The
result is one tidy frame (the ``evaluate`` columns plus ``seed`` and ``fold``) that
``metrics.summarize`` and ``metrics.compare`` read directly: a perturbation's values over seeds are
averaged before the paired test, so seeds never inflate ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .config import ModelConfig, PairConfig, TrainConfig
from .errors import ScreenError
from .metrics import evaluate
from .pairs import make_pairs
from .train import train_ensemble

FoldFn = Callable[[int, int, int, tuple[str, ...]], None]


def fold_plan(
    perturbations: Sequence[str], *, folds: str | int = "lopo", max_perturbations: int = 20, seed: int = 0
) -> list[tuple[str, ...]]:
    """Held-out perturbation lists of a cross-validation.

    Parameters
    ----------
    perturbations
        Labels of the screen's perturbations; only single-gene ones are held out (a combination
        containing a held-out target is held out with it).
    folds
        ``"lopo"`` (one perturbation per fold) or an integer K >= 2 (K disjoint groups).
    max_perturbations
        LOPO evaluates at most this many perturbations, a seeded random choice when there are more.
    seed
        Seed of the choice and of the grouping.

    Returns
    -------
    list of tuple of str
        One tuple of held-out labels per fold.
    """
    singles = sorted({p for p in map(str, perturbations) if "+" not in p})
    if len(singles) < 3:
        msg = (
            f"Cross-validation over perturbations needs at least 3 single-gene perturbations; this screen "
            f"has {len(singles)}. Use the held-out-cells split instead (PairConfig(split='cells'))."
        )
        raise ScreenError(msg)
    rng = np.random.default_rng(seed)
    if folds == "lopo":
        if max_perturbations < 1:
            raise ValueError(f"max_perturbations must be >= 1, got {max_perturbations}.")
        chosen = (
            singles
            if len(singles) <= max_perturbations
            else sorted(rng.choice(singles, size=max_perturbations, replace=False).tolist())
        )
        return [(p,) for p in chosen]
    if (
        not isinstance(folds, int | np.integer)
        or isinstance(folds, bool)
        or not 2 <= folds <= len(singles) // 2 + 1
    ):
        msg = (
            f"folds must be 'lopo' or an integer between 2 and {len(singles) // 2 + 1} (each fold must leave "
            f"at least 2 perturbations to train on), got {folds!r}."
        )
        raise ValueError(msg)
    order = rng.permutation(singles)
    return [tuple(sorted(order[k::folds].tolist())) for k in range(int(folds))]


def cross_validate(
    adata: AnnData,
    *,
    folds: str | int = "lopo",
    seeds: Sequence[int] = (0,),
    max_perturbations: int = 20,
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    pair_config: PairConfig = PairConfig(),
    references: Sequence[str] = ("independent",),
    on_fold: FoldFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    backend: str = "thread",
    address: str | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Leave-one-perturbation-out or K-fold cross-validation, seeds per fold, in one tidy frame.

    Parameters
    ----------
    adata
        A screen returned by :func:`lazynet_core.read_screen`.
    folds, max_perturbations
        See :func:`fold_plan`.
    seeds
        Each seed re-draws the reference controls, the fold grouping (K-fold), the pairs and the
        replica initialisation (``PairConfig.seed`` and ``TrainConfig.seed``).
    model_config, train_config, pair_config
        Settings of every fold; ``pair_config.split`` is forced to ``"perturbations"`` and its
        ``held_out`` to the fold's list.
    references
        Control references scored (``"independent"`` and/or ``"training"``).
    on_fold
        ``on_fold(seed, fold_index, n_folds, held_out)`` before each fold is trained.
    should_stop
        Passed to :func:`lazynet_core.train_ensemble` (cancels the whole cross-validation).
    backend, address, workers
        ``"thread"`` (default): folds one after another in this process. ``"ray"``: every
        (seed, fold) is a Ray task (:func:`lazynet_core.distributed.cross_validate_ray`), local
        unless ``address`` names a cluster; same frame as the thread backend, and ``on_fold`` is
        called as each fold's task starts.

    Returns
    -------
    pandas.DataFrame
        :func:`lazynet_core.metrics.evaluate` columns plus ``seed`` and ``fold``.
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. seeds=(0, 1, 2).")
    if backend not in ("thread", "ray"):
        raise ValueError(f"backend must be 'thread' or 'ray', got {backend!r}.")
    labels = adata.obs["lazynet_perturbation"][~adata.obs["lazynet_is_control"].to_numpy(bool)].astype(str)
    if backend == "ray":
        from .distributed import cross_validate_ray  # imports ray: only on this path

        plan_of = {"folds": folds, "max_perturbations": max_perturbations}
        plans = [(int(s), fold_plan(labels.unique(), **plan_of, seed=int(s))) for s in seeds]
        frames = cross_validate_ray(
            adata,
            plans,
            model_config=model_config,
            train_config=train_config,
            pair_config=pair_config,
            references=references,
            on_fold=on_fold,
            should_stop=should_stop,
            address=address,
            workers=workers,
        )
        return pd.concat(frames, ignore_index=True)
    frames = []
    for seed in seeds:
        plan = fold_plan(labels.unique(), folds=folds, max_perturbations=max_perturbations, seed=int(seed))
        for k, held in enumerate(plan):
            if on_fold is not None:
                on_fold(int(seed), k, len(plan), held)
            pairs = make_pairs(
                adata, pair_config.replace(split="perturbations", held_out=held, seed=int(seed))
            )
            ensemble = train_ensemble(
                pairs, model_config, train_config.replace(seed=int(seed)), should_stop=should_stop
            )
            for reference in references:
                frame = evaluate(pairs, ensemble.predict, reference=reference, roles=("test",))
                frames.append(frame.assign(seed=int(seed), fold=k))
    return pd.concat(frames, ignore_index=True)
