"""Training pairs streamed from a backed ``.h5ad``: one pass by row chunks, perturbed rows never held.

With ``PairConfig.delta_targets`` (the default) a training pair needs only two things from the
matrix: a control pseudobulk on the pre side (drawn from the control cells) and the mean of the
perturbation's cells on the post side (method §7b). So one streamed pass over the file, a chunk
of ``chunk_rows`` rows at a time, is enough to build everything an epoch samples from:

- the per-(perturbation, role) means, summed in float64 chunk by chunk;
- the control cells' rows (all roles), kept as CSR: the pool of pre-state pseudobulks, the gene
  scale, the control mean and the natural-variation pairs are drawn from them exactly as in
  memory. Controls are ~10% of a Perturb-seq screen.

The result is a :class:`StreamedPairs`, a :class:`~lazynet_core.pairs.Pairs` whose matrix has the
full shape but empty rows for perturbed cells (the row pointer costs 8 bytes a cell), with the
means in its cache. Its split (roles, held-out perturbations) is the one :func:`make_pairs` draws
from the same ``.obs`` and ``PairConfig``, and it trains with :func:`lazynet_core.train_ensemble`
on either backend; on Ray it is the object put in the store, so no worker ever holds the perturbed
cells' rows. It is for training: evaluation reads perturbed cells (``metrics.evaluate``), which a
streamed pairs object does not hold, so it refuses to average them.

The file must be a prepared screen: the output of :func:`lazynet_core.read_screen` written with
``write_h5ad`` (log-normalised ``X`` as CSR, the ``lazynet_*`` obs columns).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import scipy.sparse as sp

from .config import PairConfig
from .errors import ScreenError
from .pairs import ROLES, Pairs, make_pairs

__all__ = ["StreamedPairs", "iter_row_chunks", "stream_pairs"]


@dataclass(frozen=True, eq=False)
class StreamedPairs(Pairs):
    """Pairs built by :func:`stream_pairs`: control rows and per-perturbation means only."""

    def _mean(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) and (self.cell_pert[idx] >= 0).any():
            raise ScreenError(self._refusal("a mean of perturbed cells that was not streamed"))
        return super()._mean(idx)

    def _average(self, idx: np.ndarray) -> np.ndarray:
        if (self.cell_pert[idx.ravel()] >= 0).any():
            raise ScreenError(self._refusal("perturbed cells' rows"))
        return super()._average(idx)

    @staticmethod
    def _refusal(what: str) -> str:
        return (
            f"These pairs were streamed from disk and hold only control rows and perturbation means; "
            f"{what} were asked for. Evaluate on the screen read into memory (read_screen + make_pairs)."
        )


def iter_row_chunks(path: str | Path, chunk_rows: int = 10_000) -> Iterator[tuple[int, sp.csr_matrix]]:
    """Yield ``(start, rows)`` of a backed ``.h5ad``'s ``X``, ``chunk_rows`` rows at a time (CSR)."""
    backed = anndata.read_h5ad(Path(path), backed="r")
    try:
        n = backed.n_obs
        for start in range(0, n, chunk_rows):
            rows = backed.X[start : min(start + chunk_rows, n)]
            yield start, sp.csr_matrix(rows, dtype=np.float32)
    finally:
        backed.file.close()


def stream_pairs(
    path: str | Path, config: PairConfig = PairConfig(), *, chunk_rows: int = 10_000
) -> StreamedPairs:
    """Split a prepared screen on disk and build its pair sampler in one streamed pass.

    Parameters
    ----------
    path
        A prepared screen (``read_screen(...).write_h5ad(path)``); opened backed, read by rows.
    config
        As for :func:`lazynet_core.make_pairs` (same split for the same ``.obs`` and seed);
        ``delta_targets`` must be True (the post side is the perturbation's mean).
    chunk_rows
        Rows read (and densified into the group sums) at a time.

    Returns
    -------
    StreamedPairs
        With ``stream_info`` in its cache (``seconds``, ``chunks``, ``control_nnz``, ``peak_rss_gb``).
    """
    if not config.delta_targets:
        msg = (
            "stream_pairs needs PairConfig(delta_targets=True): with delta_targets=False the post side "
            "averages perturbed cells' rows, which a streamed screen does not hold."
        )
        raise ScreenError(msg)
    t0 = time.perf_counter()
    path = Path(path)
    backed = anndata.read_h5ad(path, backed="r")
    try:
        obs, var, shape = backed.obs.copy(), backed.var.copy(), backed.shape
    finally:
        backed.file.close()
    # the split: make_pairs on .obs alone (an all-zero matrix of the right shape costs one row pointer)
    stub = anndata.AnnData(X=sp.csr_matrix(shape, dtype=np.float32), obs=obs, var=var)
    split = make_pairs(stub, config)
    roles = np.array(ROLES)
    role_code = np.select([split.cell_role == r for r in roles], np.arange(len(roles)), -1)
    raw_group = (
        np.where(split.cell_pert >= 0, split.cell_pert, len(split.perturbations)) * len(roles) + role_code
    )
    group_ids, group = np.unique(raw_group, return_inverse=True)  # only the (perturbation, role) present
    sums = np.zeros((len(group_ids), shape[1]), dtype=np.float64)  # float64: exact enough over any chunking
    counts = np.bincount(group, minlength=len(group_ids))
    pieces, chunks = [], 0
    for start, rows in iter_row_chunks(path, chunk_rows):
        g = group[start : start + rows.shape[0]]
        present, local = np.unique(g, return_inverse=True)
        indicator = sp.csr_matrix(
            (np.ones(len(g)), (local, np.arange(len(g)))), shape=(len(present), len(g)), dtype=np.float64
        )
        sums[present] += (indicator @ rows.astype(np.float64)).toarray()  # the chunk's groups only
        pieces.append(rows[split.cell_pert[start : start + rows.shape[0]] < 0])
        chunks += 1
    controls = sp.vstack(pieces, format="csr") if pieces else sp.csr_matrix((0, shape[1]), dtype=np.float32)
    lengths = np.zeros(shape[0], dtype=np.int64)
    lengths[split.cell_pert < 0] = np.diff(controls.indptr)
    X = sp.csr_matrix(
        (controls.data, controls.indices, np.r_[0, np.cumsum(lengths)]), shape=shape, dtype=np.float32
    )
    pairs = StreamedPairs(
        X=X,
        genes=split.genes,
        perturbations=split.perturbations,
        pert_targets=split.pert_targets,
        pert_modality=split.pert_modality,
        cell_pert=split.cell_pert,
        cell_role=split.cell_role,
        test_perts=split.test_perts,
        config=config,
    )
    for gid, total, count in zip(group_ids, sums, counts, strict=True):
        p, role = divmod(int(gid), len(roles))
        if p < len(split.perturbations):  # control means come from the control rows themselves
            pairs._cache[("pert_mean", p, str(roles[role]))] = (total / count).astype(np.float32)
    pairs._cache["stream_info"] = {
        "path": str(path),
        "seconds": time.perf_counter() - t0,
        "chunks": chunks,
        "chunk_rows": chunk_rows,
        "n_cells": int(shape[0]),
        "n_genes": int(shape[1]),
        "control_cells": int((split.cell_pert < 0).sum()),
        "control_nnz": int(X.nnz),
        "control_bytes": int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    return pairs
