"""Ensemble: trained replicas, their genes and configs; prediction and in-silico perturbation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .config import ModelConfig, PairConfig, TrainConfig
from .errors import ScreenError
from .model import LazyNet

_PREDICT_CHUNK = 512


@dataclass(eq=False)
class Ensemble:
    """A LazyNet ensemble (replicas with different seeds) and what is needed to use it.

    Attributes
    ----------
    replicas
        Trained :class:`LazyNet` modules in eval mode.
    genes
        Gene symbols, the order of every input and output vector.
    reference
        Training control mean (log scale): the default base state and Jacobian reference.
    history
        Per-epoch losses: replica, epoch, train_loss, val_loss, elapsed_s.
    split
        The split record of the pairs it was trained on (``Pairs.split_record()``).
    """

    replicas: list[LazyNet]
    genes: np.ndarray
    reference: np.ndarray
    model_config: ModelConfig
    train_config: TrainConfig
    pair_config: PairConfig
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    split: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.genes = np.asarray(self.genes, dtype=str)
        self.reference = np.asarray(self.reference, dtype=np.float32)
        self._index = pd.Index(self.genes)
        for replica in self.replicas:
            replica.eval()

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return len(self.genes)

    def gene_index(self, names: Iterable[str] | str) -> np.ndarray:
        """Indices of ``names``; unknown genes raise ``ScreenError`` naming them."""
        names = [names] if isinstance(names, str) else list(names)
        idx = self._index.get_indexer(names)
        if (idx < 0).any():
            unknown = [n for n, i in zip(names, idx, strict=False) if i < 0]
            msg = (
                f"Gene(s) {unknown[:10]} are not in this model's {self.n_genes} genes; "
                "check the spelling (symbols are case-sensitive) or retrain with them included."
            )
            raise ScreenError(msg)
        return idx

    @torch.no_grad()
    def predict_replicas(self, x: np.ndarray) -> np.ndarray:
        """Post-states ``F(x)`` of every replica: array (R, n, G) (or (R, G) for one state)."""
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.shape[1] != self.n_genes:
            msg = f"States have {x2.shape[1]} genes; this model expects {self.n_genes}."
            raise ValueError(msg)
        out = np.empty((len(self.replicas), *x2.shape), dtype=np.float32)
        for start in range(0, len(x2), _PREDICT_CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(x2[start : start + _PREDICT_CHUNK]))
            for r, replica in enumerate(self.replicas):
                out[r, start : start + len(chunk)] = replica.step(chunk).numpy()
        return out[:, 0] if single else out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Replica-mean post-state ``F(x) = x + f(x)`` for states ``x`` of shape (n, G) or (G,)."""
        return self.predict_replicas(x).mean(axis=0)

    def perturb(self, settings: Mapping[str, float], *, base: np.ndarray | None = None) -> np.ndarray:
        """Predicted post-state after setting genes to given log levels (a do-intervention).

        Parameters
        ----------
        settings
            Gene symbol → log1p-CP10k level of that gene in the pre-state (e.g. the control level
            plus ``log(0.25)`` for a 75 % knock-down in log space is handled by the caller).
        base
            Pre-state before the intervention; defaults to :attr:`reference` (control mean).
        """
        pre = (self.reference if base is None else np.asarray(base, dtype=np.float32)).copy()
        idx = self.gene_index(list(settings))
        pre[idx] = np.asarray(list(settings.values()), dtype=np.float32)
        post = self.predict(pre)
        post[idx] = pre[idx]  # the intervened genes are held at their set level
        return post

    def intervention_effect(self, settings: Mapping[str, float]) -> np.ndarray:
        """Net predicted change of every gene when ``settings`` are applied to the control state.

        ``F(reference with settings) − F(reference)``: the model's own drift at the control state
        (``F(x_ref) ≠ x_ref``) cancels, so levels equal to the reference give exactly zero. The set
        genes' entries are their own change of input, not a prediction.

        Parameters
        ----------
        settings
            Gene symbol → log1p level (:meth:`knockdown_settings`).

        Returns
        -------
        numpy.ndarray
            (G,) float64 change in log1p units.

        Raises
        ------
        ValueError
            When the prediction is not finite (a level far outside anything the model saw).
        """
        post = np.asarray(self.perturb(settings), dtype=np.float64)
        baseline = np.asarray(self.predict(np.asarray(self.reference, dtype=np.float32)), dtype=np.float64)
        delta = post - baseline
        if not np.all(np.isfinite(delta)):
            levels = ", ".join(f"{g}={v:.3g}" for g, v in settings.items())
            msg = (f"The model's prediction is not finite at these input levels (log1p: {levels}): they are "
                   "far outside the screen's range. Use a fold between 0 and about 100 times control.")
            raise ValueError(msg)
        return delta

    def knockdown_settings(self, genes: Iterable[str], fold: float) -> dict[str, float]:
        """Settings that scale the reference's (linear-scale) expression of ``genes`` by ``fold``."""
        genes = list(genes)
        if not np.isfinite(fold) or fold < 0:
            msg = f"fold must be a finite number >= 0 (0.25 = 75 % knock-down, 4 = 4-fold up), got {fold}."
            raise ValueError(msg)
        idx = self.gene_index(genes)
        with np.errstate(over="ignore"):
            linear = np.expm1(self.reference[idx].astype(np.float64)) * float(fold)
        if not np.all(np.isfinite(linear)):
            msg = f"fold {fold:g} overflows the expression scale; use a fold between 0 and about 100."
            raise ValueError(msg)
        return dict(zip(genes, np.log1p(linear).astype(float), strict=False))

    def n_parameters(self) -> int:
        """Total parameters over all replicas."""
        return sum(r.n_parameters() for r in self.replicas)
