"""Jacobians of a LazyNet ensemble: dense for small gene sets, columns / rows on demand at scale.

``J = ∂f/∂x`` where ``f(x)`` is the change predicted by one replica (``F(x) = x + f(x)``).
``J[t, s]`` is the effect of gene ``s`` on the change of gene ``t``; since ``x`` is log-expression,
it is an elasticity. It is evaluated at a reference state (method §5, a decision): the ensemble's
control mean by default, or averaged over a 2-D sample of control states ``x_ref`` (n × G).

The consensus is the replica mean; per entry we keep the replica standard deviation (``ddof=1``;
0 for a single replica) and the sign agreement, the fraction of replicas whose sign equals the
consensus sign.

Columns ``J[:, s]`` come from forward-mode JVPs with one-hot tangents and rows ``J[t, :]`` from
reverse-mode VJPs, both batched over genes with ``torch.func.vmap``: the column path never builds
a dense G × G matrix. The model must act row-wise on a batch (no batch statistics), as LazyNet does.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

from lazynet_core.errors import ScreenError

_KINDS = ("mean", "sd", "agreement", "abs")


@dataclass(frozen=True)
class JacobianResult:
    """Replica Jacobians over chosen targets (rows) and sources (columns).

    Attributes
    ----------
    mean
        Consensus (replica mean), shape (T, S).
    sd
        Replica standard deviation, (T, S).
    sign_agreement
        Fraction of replicas whose sign agrees with the consensus sign, (T, S).
    per_replica
        Every replica's Jacobian, (R, T, S).
    sources, targets
        Gene names of the columns and rows.
    n_reference
        Number of reference states the Jacobian was averaged over.
    """

    mean: np.ndarray
    sd: np.ndarray
    sign_agreement: np.ndarray
    per_replica: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    n_reference: int = 1

    @property
    def n_replicas(self) -> int:
        """Number of replicas."""
        return int(self.per_replica.shape[0])

    def to_frame(self, kind: str = "mean") -> pd.DataFrame:
        """DataFrame with rows = targets and columns = sources.

        Parameters
        ----------
        kind
            ``"mean"`` (consensus), ``"sd"``, ``"agreement"`` (sign agreement) or ``"abs"`` (|mean|).
        """
        values = {"mean": self.mean, "sd": self.sd, "agreement": self.sign_agreement,
                  "abs": None if kind != "abs" else np.abs(self.mean)}
        if kind not in _KINDS:
            msg = f"kind must be one of {_KINDS}, got {kind!r}."
            raise ValueError(msg)
        return pd.DataFrame(values[kind], index=pd.Index(self.targets, name="target"),
                            columns=pd.Index(self.sources, name="source"))


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _replicas(model: Any) -> list[nn.Module]:
    if hasattr(model, "replicas"):
        return list(model.replicas)
    if isinstance(model, nn.Module):
        return [model]
    if isinstance(model, Sequence) and model and all(isinstance(m, nn.Module) for m in model):
        return list(model)
    msg = (f"Expected an Ensemble (with .replicas), an nn.Module or a list of nn.Modules; "
           f"got {type(model).__name__}.")
    raise TypeError(msg)


def _n_genes(replica: nn.Module, genes: Sequence[str] | None) -> int:
    if genes is not None:
        return len(genes)
    for attr in ("n_genes", "in_features"):
        if hasattr(replica, attr):
            return int(getattr(replica, attr))
    msg = "Cannot infer the number of genes: pass genes= or x_ref=."
    raise ValueError(msg)


def _genes(model: Any, genes: Sequence[str] | None, x_ref: Any) -> np.ndarray:
    if genes is None:
        genes = getattr(model, "genes", None)
    if genes is None:
        n = np.asarray(x_ref).shape[-1] if x_ref is not None else _n_genes(_replicas(model)[0], None)
        genes = [f"g{i}" for i in range(n)]
    return np.asarray([str(g) for g in genes])


def _reference(model: Any, x_ref: Any, n_genes: int) -> np.ndarray:
    """Reference states as a float array (n, G)."""
    if x_ref is None:
        x_ref = getattr(model, "reference", None)
    if x_ref is None:
        msg = "No reference state: pass x_ref= (a (G,) state or an (n, G) sample of control states)."
        raise ValueError(msg)
    if hasattr(x_ref, "toarray"):
        x_ref = x_ref.toarray()
    ref = np.atleast_2d(np.asarray(x_ref, dtype=np.float64))
    if ref.ndim != 2 or ref.shape[1] != n_genes:
        msg = f"x_ref must have shape (G,) or (n, G) with G = {n_genes}; got {np.shape(x_ref)}."
        raise ValueError(msg)
    return ref


def _index(names_or_idx: Any, genes: np.ndarray, what: str) -> np.ndarray:
    if names_or_idx is None:
        return np.arange(len(genes))
    items = [names_or_idx] if isinstance(names_or_idx, str | int | np.integer) else list(names_or_idx)
    if all(isinstance(i, int | np.integer) for i in items):
        idx = np.asarray(items, dtype=int)
        bad = idx[(idx < 0) | (idx >= len(genes))]
        if bad.size:
            msg = f"{what} indices {bad[:5].tolist()} are outside 0..{len(genes) - 1}."
            raise ScreenError(msg)
        return idx
    lookup = {g: i for i, g in enumerate(genes)}
    missing = [str(g) for g in items if str(g) not in lookup]
    if missing:
        msg = (f"{what} gene(s) {missing[:10]} are not among the model's {len(genes)} genes "
               f"(e.g. {genes[:5].tolist()}).")
        raise ScreenError(msg)
    return np.asarray([lookup[str(g)] for g in items], dtype=int)


_UNCONSTRAINED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fast_equivalent(replica: nn.Module) -> nn.Module:
    """LazyNet replicas: an equivalent copy with softplus(W_L) precomputed, cached per replica
    until its parameters change (their version counters move on every in-place update)."""
    if not hasattr(replica, "unconstrained"):
        return replica
    version = tuple(p._version for p in replica.parameters())
    cached = _UNCONSTRAINED.get(replica)
    if cached is None or cached[0] != version:
        cached = (version, replica.unconstrained())
        _UNCONSTRAINED[replica] = cached
    return cached[1]


def _functional(replica: nn.Module):
    replica = _fast_equivalent(replica)
    params = {k: v.detach() for k, v in replica.named_parameters()}
    buffers = {k: v.detach() for k, v in replica.named_buffers()}
    state = {**params, **buffers}

    def f(x: torch.Tensor) -> torch.Tensor:
        return functional_call(replica, state, (x,))

    first = next(iter(state.values()), torch.zeros(()))
    return f, first.dtype, first.device


def _replica_columns(replica: nn.Module, ref: np.ndarray, idx: np.ndarray, batch_size: int) -> np.ndarray:
    """J[:, idx] of one replica averaged over reference rows: (G, k)."""
    f, dtype, device = _functional(replica)
    X = torch.as_tensor(ref, dtype=dtype, device=device)
    n, G = X.shape

    def column(tangent: torch.Tensor) -> torch.Tensor:
        return jvp(f, (X,), (tangent,))[1].mean(0)

    out = []
    for start in range(0, len(idx), batch_size):
        chunk = torch.as_tensor(idx[start:start + batch_size], device=device)
        tangents = torch.zeros(len(chunk), n, G, dtype=dtype, device=device)
        tangents[torch.arange(len(chunk), device=device), :, chunk] = 1.0
        out.append(vmap(column)(tangents).T)
    return torch.cat(out, dim=1).cpu().numpy() if out else np.zeros((G, 0))


def _replica_rows(replica: nn.Module, ref: np.ndarray, idx: np.ndarray, batch_size: int) -> np.ndarray:
    """J[idx, :] of one replica averaged over reference rows: (k, G)."""
    f, dtype, device = _functional(replica)
    X = torch.as_tensor(ref, dtype=dtype, device=device)
    n, G = X.shape
    _, pullback = vjp(f, X)

    def row(cotangent: torch.Tensor) -> torch.Tensor:
        return pullback(cotangent)[0].mean(0)

    out = []
    for start in range(0, len(idx), batch_size):
        chunk = torch.as_tensor(idx[start:start + batch_size], device=device)
        cot = torch.zeros(len(chunk), n, G, dtype=dtype, device=device)
        cot[torch.arange(len(chunk), device=device), :, chunk] = 1.0
        out.append(vmap(row)(cot))
    return torch.cat(out, dim=0).cpu().numpy() if out else np.zeros((0, G))


def _consensus(per_replica: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replica mean, sd (ddof=1; 0 for one replica) and sign agreement along ``axis``."""
    mean = per_replica.mean(axis=axis)
    R = per_replica.shape[axis]
    sd = per_replica.std(axis=axis, ddof=1) if R > 1 else np.zeros_like(mean)
    agree = (np.sign(per_replica) == np.expand_dims(np.sign(mean), axis)).mean(axis=axis)
    return mean, sd, agree


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def jacobian_columns(model: Any, gene_indices: Any, *, x_ref: Any = None, batch_size: int = 64) -> np.ndarray:
    """Columns ``J[:, j]`` of every replica, batched JVPs: array (R, G, k).

    Parameters
    ----------
    model
        An ``Ensemble``, an ``nn.Module`` mapping (B, G) -> (B, G), or a list of them.
    gene_indices
        Source gene indices (or names when the ensemble has ``genes``).
    x_ref
        Reference state (G,) or sample (n, G); default the ensemble's ``reference``.
    batch_size
        Columns per vmapped JVP call.
    """
    reps = _replicas(model)
    genes = _genes(model, None, x_ref if x_ref is not None else getattr(model, "reference", None))
    ref = _reference(model, x_ref, len(genes))
    idx = _index(gene_indices, genes, "Source")
    return np.stack([_replica_columns(r, ref, idx, batch_size) for r in reps])


def jacobian_rows(model: Any, gene_indices: Any, *, x_ref: Any = None, batch_size: int = 64) -> np.ndarray:
    """Rows ``J[i, :]`` of every replica, batched VJPs: array (R, k, G). See :func:`jacobian_columns`."""
    reps = _replicas(model)
    genes = _genes(model, None, x_ref if x_ref is not None else getattr(model, "reference", None))
    ref = _reference(model, x_ref, len(genes))
    idx = _index(gene_indices, genes, "Target")
    return np.stack([_replica_rows(r, ref, idx, batch_size) for r in reps])


def jacobian(
    model: Any,
    *,
    x_ref: Any = None,
    genes: Sequence[str] | None = None,
    sources: Any = None,
    targets: Any = None,
    batch_size: int = 64,
) -> JacobianResult:
    """Dense replica Jacobians over chosen sources and targets (a few hundred genes at most).

    Parameters
    ----------
    model
        An ``Ensemble`` (``.replicas``, ``.genes``, ``.reference``), an ``nn.Module`` or a list.
    x_ref
        Reference state (G,) or a sample of control states (n, G) to average J over;
        default ``model.reference``.
    genes
        Gene names when ``model`` carries none.
    sources, targets
        Names or indices of the columns / rows (default all genes). Columns are computed by JVPs
        when there are no more sources than targets, else rows by VJPs.
    batch_size
        Genes per vmapped call.
    """
    reps = _replicas(model)
    names = _genes(model, genes, x_ref if x_ref is not None else getattr(model, "reference", None))
    ref = _reference(model, x_ref, len(names))
    src, tgt = _index(sources, names, "Source"), _index(targets, names, "Target")
    if len(src) <= len(tgt):
        per = np.stack([_replica_columns(r, ref, src, batch_size)[tgt, :] for r in reps])
    else:
        per = np.stack([_replica_rows(r, ref, tgt, batch_size)[:, src] for r in reps])
    mean, sd, agree = _consensus(per)
    return JacobianResult(mean=mean, sd=sd, sign_agreement=agree, per_replica=per,
                          sources=names[src], targets=names[tgt], n_reference=ref.shape[0])


class ColumnProvider:
    """Callable ``neighbors(gene, direction)`` for :func:`lazynet_core.network.expand_from_seeds`.

    ``"out"`` returns ``J[:, gene]`` (targets of ``gene``, by JVP), ``"in"`` returns ``J[gene, :]``
    (regulators, by VJP), as a DataFrame indexed by partner gene with columns ``weight``
    (consensus), ``agreement`` and ``sd``; the gene itself is excluded. Results are cached per
    (gene, direction) in a bounded LRU of full vectors and an unbounded cache of top-k answers.
    """

    def __init__(self, model: Any, *, x_ref: Any = None, batch_size: int = 64,
                 genes: Sequence[str] | None = None, cache_size: int = 256) -> None:
        self.replicas = _replicas(model)
        self.genes = _genes(model, genes, x_ref if x_ref is not None else getattr(model, "reference", None))
        self.reference = _reference(model, x_ref, len(self.genes))
        self.batch_size = int(batch_size)
        self.cache_size = int(cache_size)
        self._index = {g: i for i, g in enumerate(self.genes)}
        self._full: OrderedDict[tuple[str, str], tuple[np.ndarray, ...]] = OrderedDict()
        self._top: dict[tuple[str, str, int], pd.DataFrame] = {}

    def _compute(self, genes: list[str], direction: str) -> None:
        todo = [g for g in genes if (g, direction) not in self._full]
        if not todo:
            return
        idx = _index(todo, self.genes, "Seed")
        if direction == "out":
            per = np.stack([_replica_columns(r, self.reference, idx, self.batch_size).T
                            for r in self.replicas])
        elif direction == "in":
            per = np.stack([_replica_rows(r, self.reference, idx, self.batch_size) for r in self.replicas])
        else:
            msg = f"direction must be 'out' or 'in', got {direction!r}."
            raise ValueError(msg)
        mean, sd, agree = _consensus(per)  # (k, G) each
        for i, g in enumerate(todo):
            self._full[(g, direction)] = (mean[i], agree[i], sd[i])
            self._full.move_to_end((g, direction))
        while len(self._full) > max(self.cache_size, len(genes)):
            self._full.popitem(last=False)

    def _frame(self, gene: str, direction: str, top: int | None) -> pd.DataFrame:
        mean, agree, sd = self._full[(gene, direction)]
        keep = np.ones(len(self.genes), dtype=bool)
        keep[self._index[gene]] = False
        sel = np.flatnonzero(keep)
        if top is not None and top < sel.size:
            part = np.argpartition(-np.abs(mean[sel]), top - 1)[:top]
            sel = sel[part[np.argsort(-np.abs(mean[sel][part]), kind="stable")]]
        return pd.DataFrame({"weight": mean[sel], "agreement": agree[sel], "sd": sd[sel]},
                            index=pd.Index(self.genes[sel], name="gene"))

    def batch(self, genes: Sequence[str], direction: str, *,
              top: int | None = None) -> dict[str, pd.DataFrame]:
        """Partners of many genes at once (vmapped), optionally only the ``top`` by |weight|."""
        genes = [str(g) for g in genes]
        out: dict[str, pd.DataFrame] = {}
        need = [g for g in genes if top is None or (g, direction, top) not in self._top]
        for start in range(0, len(need), max(self.batch_size, 1)):
            chunk = need[start:start + self.batch_size]
            self._compute(chunk, direction)
            for g in chunk:
                out[g] = self._frame(g, direction, top)
                if top is not None:
                    self._top[(g, direction, top)] = out[g]
        for g in genes:
            if g not in out:
                out[g] = self._top[(g, direction, top)]
        return out

    def __call__(self, gene: str, direction: str = "out") -> pd.DataFrame:
        return self.batch([gene], direction)[str(gene)]


def column_provider(model: Any, *, x_ref: Any = None, batch_size: int = 64,
                    genes: Sequence[str] | None = None, cache_size: int = 256) -> ColumnProvider:
    """On-demand ``neighbors(gene, direction)`` provider of an ensemble (see :class:`ColumnProvider`)."""
    return ColumnProvider(model, x_ref=x_ref, batch_size=batch_size, genes=genes, cache_size=cache_size)


class _CallableModule(types.ModuleType):
    """Importing ``lazynet_core.jacobian`` rebinds the package attribute ``jacobian`` from the
    function to this module; calling the module still computes the Jacobian, so
    ``lazynet_core.jacobian(ensemble)`` works on every call."""

    def __call__(self, *args: Any, **kwargs: Any) -> JacobianResult:
        return jacobian(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
