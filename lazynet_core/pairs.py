"""Training pairs and splits (method §2, §7b).

``pre`` is a control state whose target gene(s) are set to the level observed in the perturbation's
cells (a do-intervention); ``post`` is the perturbed state. Pairs are never materialised for a
whole epoch: an epoch is a table of cell indices, and each mini-batch is densified from the CSR
matrix on its own (``A @ X`` with a sparse averaging matrix ``A``), so paper-scale screens stay
sparse in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .config import PairConfig
from .errors import ScreenError

ROLES = ("train", "val", "test", "reference")
_REQUIRED_OBS = ("lazynet_perturbation", "lazynet_modality", "lazynet_is_control")


@dataclass(frozen=True)
class EpochPairs:
    """One epoch's pairs as cell indices.

    ``pre_idx`` and ``post_idx`` are (n, k) indices into ``Pairs.X``; ``pert`` is (n,) the
    perturbation index of each pair (-1 for a control→control or natural pair); ``gene`` is (n,)
    the gene of a natural-variation pair (-1 otherwise). The pre sides are drawn from a pool of
    at most ``POOL_SIZE`` control pseudobulks (``pool_cells``, rows ``pre_row``) that is
    densified once per epoch, so a mini-batch's pre-states are a row lookup, not a sparse product.
    """

    pre_idx: np.ndarray
    post_idx: np.ndarray
    pert: np.ndarray
    gene: np.ndarray | None = None
    pre_row: np.ndarray | None = None
    pool_cells: np.ndarray | None = None
    _pool: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.gene is None:
            object.__setattr__(self, "gene", np.full(len(self.pert), -1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.pert)

    def subset(self, sl: slice) -> EpochPairs:
        """The pairs ``sl`` of this epoch (sharing the densified pool)."""
        pre_row = None if self.pre_row is None else self.pre_row[sl]
        return EpochPairs(
            self.pre_idx[sl],
            self.post_idx[sl],
            self.pert[sl],
            self.gene[sl],
            pre_row,
            self.pool_cells,
            self._pool,
        )


POOL_SIZE = 2048  # control pseudobulks densified per epoch (2048 × 18k genes × 4 B = 147 MB)


@dataclass(frozen=True, eq=False)
class Pairs:
    """A screen prepared for training and evaluation: the matrix, the split and the sampler.

    Build it with :func:`make_pairs`. Attributes are described in the module contract; the
    matrix ``X`` is shared with the AnnData it came from, never copied.
    """

    X: sp.csr_matrix
    genes: np.ndarray
    perturbations: np.ndarray
    pert_targets: tuple[np.ndarray, ...]
    pert_modality: np.ndarray
    cell_pert: np.ndarray
    cell_role: np.ndarray
    test_perts: np.ndarray
    config: PairConfig
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- cell sets and means -------------------------------------------------------------
    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return len(self.genes)

    def cells(self, p_idx: int, role: str) -> np.ndarray:
        """Indices of the cells of perturbation ``p_idx`` (-1 = control) in ``role``."""
        return np.flatnonzero((self.cell_pert == p_idx) & (self.cell_role == role))

    def _mean(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.full(self.n_genes, np.nan, dtype=np.float32)
        return np.asarray(self.X[idx].mean(axis=0), dtype=np.float32).ravel()

    def control_mean(self, role: str = "train") -> np.ndarray:
        """Mean log expression of the control cells in ``role``."""
        key = ("control_mean", role)
        if key not in self._cache:
            self._cache[key] = self._mean(self.cells(-1, role))
        return self._cache[key]

    def pert_mean(self, p_idx: int, role: str) -> np.ndarray:
        """Mean log expression of perturbation ``p_idx``'s cells in ``role`` (NaN if none)."""
        key = ("pert_mean", p_idx, role)
        if key not in self._cache:
            self._cache[key] = self._mean(self.cells(p_idx, role))
        return self._cache[key]

    def pre_state(self, p_idx: int, role: str = "test") -> np.ndarray:
        """Training control mean with the targets set to their level in ``p_idx``'s ``role`` cells."""
        pre = self.control_mean("train").copy()
        targets = self.pert_targets[p_idx]
        pre[targets] = self.pert_mean(p_idx, role)[targets]
        return pre

    def evaluation_perturbations(self, role: str) -> np.ndarray:
        """Perturbations with at least one cell in ``role``."""
        mask = (self.cell_pert >= 0) & (self.cell_role == role)
        return np.unique(self.cell_pert[mask])

    def gene_scale(self) -> np.ndarray:
        """Per-gene scale for the standardised loss: sd over training control cells, floored."""
        if "gene_scale" not in self._cache:
            idx = self.cells(-1, "train")
            sub = self.X[idx]
            mean = np.asarray(sub.mean(axis=0)).ravel()
            sq = np.asarray(sub.multiply(sub).mean(axis=0)).ravel()
            sd = np.sqrt(np.clip(sq - mean**2, 0, None))
            floor = max(float(np.quantile(sd, 0.1)), 0.05)
            self._cache["gene_scale"] = np.maximum(sd, floor).astype(np.float32)
        return self._cache["gene_scale"]

    def split_record(self) -> dict:
        """JSON-serialisable record of the split, stored with a run."""
        return {
            "pair_config": self.config.to_dict(),
            "test_perturbations": self.perturbations[self.test_perts].tolist(),
            "train_perturbations": self.perturbations[~self.test_perts].tolist(),
            "n_cells_by_role": {
                r: int((self.cell_role == r).sum())
                for r in ROLES
                if r != "reference" or (self.cell_role == r).any()
            },
            "cell_roles_sha1": hashlib.sha1("".join(r[0] for r in self.cell_role).encode()).hexdigest(),
        }

    # ---- sampling --------------------------------------------------------------------------
    def sample_epoch(self, rng: np.random.Generator, role: str = "train") -> EpochPairs:
        """Draw one epoch of pairs from the cells of ``role``.

        Each perturbation with cells in ``role`` gets ``config.resamples`` pairs, plus
        ``config.control_pairs`` × that many control→control pairs.
        """
        k = self.config.cells_per_side
        controls = self.cells(-1, role)
        if len(controls) == 0:
            controls = self.cells(-1, "train")
        perts = self.evaluation_perturbations(role)
        n_pert = len(perts) * self.config.resamples
        n_ctrl = int(round(self.config.control_pairs * n_pert))
        pool_cells = rng.choice(controls, size=(max(1, min(POOL_SIZE, n_pert + n_ctrl)), k))
        pre, post, pert = [], [], []
        for p in perts:
            own = self.cells(p, role)
            n = self.config.resamples
            pre.append(rng.integers(len(pool_cells), size=n))
            post.append(rng.choice(own, size=(n, k)))
            pert.append(np.full(n, p))
        gene = [np.full(n_pert, -1)]
        if n_ctrl:
            pre.append(rng.integers(len(pool_cells), size=n_ctrl))
            post.append(rng.choice(controls, size=(n_ctrl, k)))
            pert.append(np.full(n_ctrl, -1))
            gene.append(np.full(n_ctrl, -1))
        n_nat = int(round(self.config.natural_pairs * n_pert))
        if n_nat and len(controls) > k:
            nat_post, nat_gene = self._natural_pairs(controls, n_nat, k, rng)
            pre.append(rng.integers(len(pool_cells), size=n_nat))
            post.append(nat_post)
            pert.append(np.full(n_nat, -1))
            gene.append(nat_gene)
        if not pert:
            return EpochPairs(np.zeros((0, k), int), np.zeros((0, k), int), np.zeros(0, int))
        order = rng.permutation(sum(len(x) for x in pert))
        pre_row = np.concatenate(pre)[order]
        return EpochPairs(
            pool_cells[pre_row],
            np.concatenate(post)[order],
            np.concatenate(pert)[order],
            np.concatenate(gene)[order],
            pre_row,
            pool_cells,
        )

    def _natural_pairs(self, controls: np.ndarray, n: int, k: int, rng: np.random.Generator):
        """Pairs whose post side is the k pool cells with the highest or lowest x_j (see PairConfig)."""
        key = ("control_csc", controls.tobytes())
        if key not in self._cache:
            self._cache[key] = (controls, self.X[controls].tocsc())
        controls, csc = self._cache[key]
        pool_size = min(self.config.natural_pool, len(controls))
        genes = rng.choice(self.n_genes, size=n)
        high = rng.random(n) < 0.5
        post = np.empty((n, k), dtype=np.int64)
        for i, j in enumerate(genes):
            pool = rng.choice(len(controls), size=pool_size, replace=False)
            values = csc[:, j].toarray().ravel()[pool] + rng.random(pool_size) * 1e-6  # random tie-break
            order = np.argsort(values)
            post[i] = pool[order[-k:] if high[i] else order[:k]]
        return controls[post], genes

    def _average(self, idx: np.ndarray) -> np.ndarray:
        n, k = idx.shape
        rows = np.repeat(np.arange(n), k)
        A = sp.csr_matrix(
            (np.full(n * k, 1.0 / k, dtype=np.float32), (rows, idx.ravel())), shape=(n, self.X.shape[0])
        )
        return (A @ self.X).toarray().astype(np.float32, copy=False)

    def batch(self, epoch: EpochPairs, sl: slice, role: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Densify the pairs ``epoch[sl]`` into ``(pre, post)`` float32 arrays of shape (B, G)."""
        pre = self._pre_states(epoch, sl)
        pert = epoch.pert[sl]
        natural = np.flatnonzero(epoch.gene[sl] >= 0)
        cm = self.control_mean(role) if len(self.cells(-1, role)) else self.control_mean("train")
        if len(natural):
            sub = epoch.subset(sl)
            nat_post = self._average(sub.post_idx[natural])
            nat_gene = sub.gene[natural]
        if self.config.delta_targets:
            post = pre.copy()
            for p in np.unique(pert[pert >= 0]):
                rows = np.flatnonzero(pert == p)
                mean = self.pert_mean(p, role)
                post[rows] += mean - cm
                targets = self.pert_targets[p]
                pre[np.ix_(rows, targets)] = mean[targets]
                post[np.ix_(rows, targets)] = mean[targets]
        else:
            post = self._average(epoch.post_idx[sl])
            for p in np.unique(pert[pert >= 0]):
                rows = np.flatnonzero(pert == p)
                targets = self.pert_targets[p]
                pre[np.ix_(rows, targets)] = post[np.ix_(rows, targets)]
        if len(natural):
            if self.config.delta_targets:
                post[natural] = pre[natural] + nat_post - cm
            else:
                post[natural] = nat_post
            rows = np.arange(len(natural))
            pre[natural, nat_gene] = nat_post[rows, nat_gene]
            post[natural, nat_gene] = nat_post[rows, nat_gene]
        return pre, post

    def _pre_states(self, epoch: EpochPairs, sl: slice) -> np.ndarray:
        if self.config.pairing == "control_mean":  # PairConfig: no control noise on the pre side
            n = len(epoch.pert[sl])
            return np.tile(self.control_mean("train"), (n, 1))
        if epoch.pre_row is None:
            return self._average(epoch.pre_idx[sl])
        if "pool" not in epoch._pool:  # densified once per epoch, one sparse product
            epoch._pool["pool"] = self._average(epoch.pool_cells)
        return epoch._pool["pool"][epoch.pre_row[sl]]

    def iter_batches(
        self, epoch: EpochPairs, batch_size: int, role: str = "train"
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the dense mini-batches of ``epoch`` in order."""
        for start in range(0, len(epoch), batch_size):
            yield self.batch(epoch, slice(start, start + batch_size), role)


# ---- construction ----------------------------------------------------------------------------
def _check_screen(adata: AnnData) -> None:
    missing = [c for c in _REQUIRED_OBS if c not in adata.obs.columns]
    if missing:
        msg = (
            f"Obs columns {missing} do not exist in .obs; make_pairs needs a screen prepared by "
            "`lazynet_core.read_screen` (run it first)."
        )
        raise ScreenError(msg)


def _parse_targets(labels: np.ndarray, genes: pd.Index) -> tuple[np.ndarray, ...]:
    out = []
    for label in labels:
        names = label.split("+")
        idx = genes.get_indexer(names)
        if (idx < 0).any():
            unknown = [n for n, i in zip(names, idx, strict=False) if i < 0]
            msg = (
                f"Perturbation {label!r} targets {unknown}, which are not in the gene universe; "
                "read the screen with `read_screen` (it drops such cells) or add the genes."
            )
            raise ScreenError(msg)
        out.append(idx.astype(np.int64))
    return tuple(out)


def _validation_perturbations(test_perts: np.ndarray, config: PairConfig, rng: np.random.Generator) -> set:
    """On the perturbation split, early stopping watches whole held-out training perturbations.

    Their deltas average all their cells (a few cells per perturbation would be mostly noise) and
    they measure what the split asks: prediction for targets not trained on.
    """
    if config.split != "perturbations" or config.val_fraction == 0:
        return set()
    candidates = np.flatnonzero(~test_perts)
    n_val = int(round(config.val_fraction * len(candidates)))
    n_val = max(0, min(n_val, len(candidates) - 2))  # keep at least two perturbations to train on
    return set(rng.choice(candidates, size=n_val, replace=False).tolist())


def _assign_roles(
    cell_pert: np.ndarray, test_perts: np.ndarray, config: PairConfig, rng: np.random.Generator
) -> np.ndarray:
    """Per-cell role: held-out perturbations -> test; other groups split by fractions."""
    role = np.full(len(cell_pert), "train", dtype=object)
    val_perts = _validation_perturbations(test_perts, config, rng)
    for p in np.unique(cell_pert):
        idx = np.flatnonzero(cell_pert == p)
        if p >= 0 and test_perts[p]:
            role[idx] = "test"
            continue
        idx = rng.permutation(idx)
        if p < 0 and config.reference_fraction > 0:  # the independent control reference, drawn first
            n_ref = min(int(round(config.reference_fraction * len(idx))), len(idx) - 2)
            role[idx[:n_ref]] = "reference"
            idx = idx[n_ref:]
        n_test = int(round(config.test_fraction * len(idx)))
        n_val = int(round(config.val_fraction * len(idx))) if p < 0 or config.split == "cells" else 0
        if p in val_perts:
            n_val = len(idx) - n_test
        elif len(idx) - n_test - n_val < 1:  # keep at least one training cell
            n_val = max(0, len(idx) - n_test - 1)
        role[idx[:n_test]] = "test"
        role[idx[n_test : n_test + n_val]] = "val"
    return role.astype(str)


def _choose_test_perturbations(
    perturbations: np.ndarray, config: PairConfig, rng: np.random.Generator
) -> np.ndarray:
    test = np.zeros(len(perturbations), dtype=bool)
    if config.split != "perturbations":
        return test
    if config.held_out is not None:
        return _explicit_test_perturbations(perturbations, config.held_out)
    singles = np.flatnonzero(["+" not in p for p in perturbations])
    if len(singles) < 3:
        msg = (
            f"The perturbation split needs at least 3 single-gene perturbations (found {len(singles)}); "
            "train with split='cells' (CLI: train --split cells) to hold out cells instead."
        )
        raise ScreenError(msg)
    n_test = min(max(1, int(round(config.test_fraction * len(singles)))), len(singles) - 2)
    held = set(perturbations[rng.choice(singles, size=n_test, replace=False)])
    for i, label in enumerate(perturbations):
        test[i] = any(t in held for t in label.split("+"))  # a combination with a held-out target
    return test


def _explicit_test_perturbations(perturbations: np.ndarray, held_out: tuple[str, ...]) -> np.ndarray:
    """Held-out mask from explicit labels: a label, or a target gene of a single perturbation."""
    known = set(perturbations.tolist())
    singles = {p for p in known if "+" not in p}
    unknown = sorted(h for h in held_out if h not in known)
    if unknown:
        msg = (
            f"held_out names {unknown[:10]} ({len(unknown)} in all), which are not perturbations of this "
            f"screen; choose among {sorted(known)[:10]}{' ...' if len(known) > 10 else ''}."
        )
        raise ScreenError(msg)
    held_targets = {h for h in held_out if "+" not in h}  # a held-out combination leaves its arms in training
    test = np.array([p in held_out or any(t in held_targets for t in p.split("+")) for p in perturbations],
                    dtype=bool)
    trained_singles = singles - {p for p in singles if p in held_targets}
    if len(trained_singles) < 2:
        msg = (
            f"held_out {list(held_out)[:10]} leaves {len(trained_singles)} single-gene perturbation(s) to "
            "train on; at least 2 are needed. Hold out fewer perturbations."
        )
        raise ScreenError(msg)
    return test


def make_pairs(adata: AnnData, config: PairConfig = PairConfig()) -> Pairs:
    """Split a screen and prepare its pair sampler.

    Parameters
    ----------
    adata
        A screen returned by :func:`lazynet_core.read_screen` (log-normalised CSR ``.X`` and the
        ``lazynet_*`` obs columns). It is not modified.
    config
        Pairing, split and sampling options; the split is seeded by ``config.seed``.

    Returns
    -------
    Pairs
        The sampler; ``Pairs.split_record()`` is what a run stores.
    """
    _check_screen(adata)
    X = adata.X
    if not sp.issparse(X):
        X = sp.csr_matrix(np.asarray(X, dtype=np.float32))
    X = X.tocsr() if X.format != "csr" else X
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    obs = adata.obs
    is_control = obs["lazynet_is_control"].to_numpy(dtype=bool)
    labels = obs["lazynet_perturbation"].astype(str).to_numpy()
    perturbations = np.array(sorted(set(labels[~is_control])), dtype=str)
    if len(perturbations) < 2:
        msg = (
            f"The screen has {len(perturbations)} perturbation(s) besides control; at least 2 are "
            "needed to train and evaluate."
        )
        raise ScreenError(msg)
    if is_control.sum() < 2:
        msg = "The screen has fewer than 2 control cells; pairs need control cells on the pre side."
        raise ScreenError(msg)
    lookup = {p: i for i, p in enumerate(perturbations)}
    cell_pert = np.array(
        [-1 if c else lookup[lab] for lab, c in zip(labels, is_control, strict=False)], dtype=np.int64
    )
    modality = obs["lazynet_modality"].astype(str).to_numpy()
    pert_modality = np.array([modality[np.flatnonzero(cell_pert == i)[0]] for i in range(len(perturbations))])
    rng = np.random.default_rng(config.seed)
    test_perts = _choose_test_perturbations(perturbations, config, rng)
    cell_role = _assign_roles(cell_pert, test_perts, config, rng)
    return Pairs(
        X=X,
        genes=np.asarray(adata.var_names, dtype=str),
        perturbations=perturbations,
        pert_targets=_parse_targets(perturbations, pd.Index(adata.var_names)),
        pert_modality=pert_modality,
        cell_pert=cell_pert,
        cell_role=cell_role,
        test_perts=test_perts,
        config=config,
    )
