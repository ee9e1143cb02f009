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
full shape, the control cells' rows, and empty rows for every perturbed cell (the row pointer costs
8 bytes a cell), with the means in its cache. Its split (roles, held-out perturbations) is the one
:func:`make_pairs` draws from the same ``.obs`` and ``PairConfig``, and it trains with
:func:`lazynet_core.train_ensemble` on either backend; on Ray it is the object put in the store, so
no worker ever holds the perturbed cells' rows.

Evaluation (``evaluate=True``, the default). :func:`lazynet_core.metrics.evaluate` reads perturbed
cells in three ways, and the same pass streams each:

- ``pairs.pert_mean(p, role)`` (observed post states, pre-state target levels): the cached means;
- the training mean of every perturbation (the perturbed-mean, linear and additive baselines):
  ``pairs.pert_mean(p, "train")``, cached like the others. ``_mean`` / ``_average`` refuse any
  other subset of perturbed rows, which a streamed screen does not hold;
- the split-half noise ceiling (``metrics.noise_ceiling`` with its default seed 0, as ``evaluate``
  calls it): for every perturbation with test or validation cells, the two random halves it draws
  are drawn here with the same generator, and their means cached under the cells they average.

So ``evaluate`` on streamed pairs equals ``evaluate`` on ``make_pairs`` pairs of the same screen and
config (to float32 rounding; tested). Other readers of individual perturbed rows (e.g.
``export.predictions_to_anndata``) need the screen in memory. ``evaluate=False`` streams for
training only: smaller, but then nothing that reads perturbed rows may be used.

The file must be a prepared screen: the output of :func:`lazynet_core.read_screen` written with
``write_h5ad`` (log-normalised ``X`` as CSR, the ``lazynet_*`` obs columns), or a screen written
prepared in chunks with :func:`write_h5ad_in_chunks` (``benchmarks/genome_scale.py``).
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import sparse_dataset, write_elem

from .config import PairConfig
from .errors import ScreenError
from .pairs import ROLES, Pairs, make_pairs

__all__ = ["StreamedPairs", "iter_row_chunks", "stream_pairs", "write_h5ad_in_chunks"]


@dataclass(frozen=True, eq=False)
class StreamedPairs(Pairs):
    """Pairs built by :func:`stream_pairs`: control rows and per-perturbation means only."""

    streamed = True  # readers of individual perturbed rows (e.g. export) check this and refuse

    def _mean(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (self.cell_pert[idx] >= 0).any():
            key = _cells_key(idx)
            if key in self._cache:
                return self._cache[key]
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
            f"{what} were asked for. Use the screen read into memory (read_screen + make_pairs)."
        )


def _cells_key(idx: np.ndarray) -> tuple[str, str]:
    """Cache key of the mean of a set of cells (order does not matter)."""
    return ("cells_mean", hashlib.sha1(np.sort(np.asarray(idx, dtype=np.int64)).tobytes()).hexdigest())


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


def write_h5ad_in_chunks(
    path: str | Path,
    chunks: Iterable[sp.spmatrix],
    *,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    uns: dict | None = None,
    compression: str | None = None,
) -> dict:
    """Write a CSR ``.h5ad`` whose ``X`` arrives as row chunks; never holds more than one chunk.

    The file is an ordinary AnnData file (``anndata.read_h5ad``, backed or not): ``obs``, ``var``
    and ``uns`` are written first, then ``X`` is appended chunk by chunk (``anndata.io.sparse_dataset``
    on the open ``h5py`` file). It is written to a temporary name beside ``path`` and moved into
    place when complete, so an interrupted write leaves no partial file under ``path``.

    Parameters
    ----------
    path
        Output ``.h5ad`` path (its folder must exist).
    chunks
        CSR row blocks (any scipy sparse matrix; converted to CSR float32), in row order, each with
        ``len(var)`` columns; together exactly ``len(obs)`` rows.
    obs, var
        Cell and gene tables of the whole matrix.
    uns
        Unstructured metadata (h5ad-serialisable).
    compression
        ``None`` (default: fastest backed reads) or an h5py filter such as ``"gzip"`` or ``"lzf"``.

    Returns
    -------
    dict
        ``rows``, ``nnz``, ``chunks``, ``seconds`` and ``bytes`` (file size).
    """
    path = Path(path)
    t0 = time.perf_counter()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    rows = nnz = n_chunks = 0
    kwargs = {} if compression is None else {"compression": compression}
    try:
        anndata.AnnData(obs=obs, var=var, uns=dict(uns or {})).write_h5ad(tmp)
        with h5py.File(tmp, "a") as f:
            if "X" in f:
                del f["X"]
            for chunk in chunks:
                chunk = sp.csr_matrix(chunk, dtype=np.float32)
                if chunk.shape[1] != len(var):
                    msg = f"A chunk has {chunk.shape[1]} columns; var has {len(var)} genes."
                    raise ScreenError(msg)
                if n_chunks == 0:
                    write_elem(f, "X", chunk, dataset_kwargs=kwargs)
                else:
                    sparse_dataset(f["X"]).append(chunk)
                rows, nnz, n_chunks = rows + chunk.shape[0], nnz + chunk.nnz, n_chunks + 1
        if rows != len(obs):
            msg = f"The chunks hold {rows} rows; obs has {len(obs)} cells."
            raise ScreenError(msg)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "rows": rows,
        "nnz": nnz,
        "chunks": n_chunks,
        "seconds": time.perf_counter() - t0,
        "bytes": path.stat().st_size,
    }


def stream_pairs(
    path: str | Path,
    config: PairConfig = PairConfig(),
    *,
    chunk_rows: int = 10_000,
    evaluate: bool = True,
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
    evaluate
        Also stream what :func:`lazynet_core.metrics.evaluate` reads of perturbed cells (see the
        module docstring): the noise ceiling's half means. ``False`` streams for training only.

    Returns
    -------
    StreamedPairs
        With ``stream_info`` in its cache (``seconds``, ``chunks``, ``control_nnz``, ``peak_rss_gb``, ...).
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
    n_pert, roles = len(split.perturbations), np.array(ROLES)
    role_code = np.select([split.cell_role == r for r in roles], np.arange(len(roles)), -1)
    raw_group = np.where(split.cell_pert >= 0, split.cell_pert, n_pert) * len(roles) + role_code
    group_ids, group = np.unique(raw_group, return_inverse=True)  # only the (perturbation, role) present
    counts = np.bincount(group, minlength=len(group_ids))
    members = np.split(np.argsort(group, kind="stable"), np.cumsum(counts)[:-1])  # ascending cell indices
    half, halves = _ceiling_halves(group_ids, members, n_pert, shape[0]) if evaluate else (None, [])
    sums = np.zeros((len(group_ids), shape[1]), dtype=np.float64)  # float64: exact enough over any chunking
    half_sums = np.zeros((len(halves), shape[1]), dtype=np.float64)
    pieces, chunks = [], 0
    for start, rows in iter_row_chunks(path, chunk_rows):
        stop = start + rows.shape[0]
        _add_groups(sums, group[start:stop], rows)
        if half is not None:
            h = half[start:stop]
            _add_groups(half_sums, h[h >= 0], rows[h >= 0])
        pieces.append(rows[split.cell_pert[start:stop] < 0])
        chunks += 1
    controls = sp.vstack(pieces, format="csr") if pieces else sp.csr_matrix((0, shape[1]), dtype=np.float32)
    del pieces
    control_rows = np.flatnonzero(split.cell_pert < 0)
    X = _place_rows(shape, [(control_rows, controls)])
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
        if p < n_pert:  # control means come from the control rows themselves
            pairs._cache[("pert_mean", p, str(roles[role]))] = (total / count).astype(np.float32)
    for cells, total in zip(halves, half_sums, strict=True):
        pairs._cache[_cells_key(cells)] = (total / len(cells)).astype(np.float32)
    pairs._cache["stream_info"] = {
        "path": str(path),
        "seconds": time.perf_counter() - t0,
        "chunks": chunks,
        "chunk_rows": chunk_rows,
        "n_cells": int(shape[0]),
        "n_genes": int(shape[1]),
        "control_cells": len(control_rows),
        "control_nnz": int(controls.nnz),
        "control_bytes": int(controls.data.nbytes + controls.indices.nbytes + controls.indptr.nbytes),
        "evaluate": bool(evaluate),
        "ceiling_halves": len(halves),
        "matrix_bytes": int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    return pairs


def _add_groups(sums: np.ndarray, g: np.ndarray, rows: sp.csr_matrix) -> None:
    """``sums[g_i] += rows_i`` for every row (float64), touching only the groups present."""
    if len(g) == 0:
        return
    present, local = np.unique(g, return_inverse=True)
    indicator = sp.csr_matrix(
        (np.ones(len(g)), (local, np.arange(len(g)))), shape=(len(present), len(g)), dtype=np.float64
    )
    sums[present] += (indicator @ rows.astype(np.float64)).toarray()


def _ceiling_halves(
    group_ids: np.ndarray, members: list[np.ndarray], n_pert: int, n_cells: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The halves ``metrics.noise_ceiling`` (seed 0) draws for every (perturbation, test/val role):
    a per-cell half index (-1: none) and the cells of each half."""
    half = np.full(n_cells, -1, dtype=np.int64)
    halves: list[np.ndarray] = []
    for gid, cells in zip(group_ids, members, strict=True):
        p, role = divmod(int(gid), len(ROLES))
        if p >= n_pert or ROLES[role] not in ("test", "val") or len(cells) < 2:
            continue
        own = np.random.default_rng([0, p]).permutation(cells)  # as noise_ceiling(seed=0) draws them
        for i in (0, 1):
            half[own[i::2]] = len(halves)
            halves.append(own[i::2])
    return half, halves


def _place_rows(
    shape: tuple[int, int], blocks: list[tuple[np.ndarray, sp.csr_matrix | None]]
) -> sp.csr_matrix:
    """A CSR matrix of ``shape`` whose rows ``rows_k`` are the rows of ``block_k``, all others empty."""
    lengths = np.zeros(shape[0], dtype=np.int64)
    used = [(rows, block) for rows, block in blocks if block is not None and len(rows)]
    for rows, block in used:
        lengths[rows] = np.diff(block.indptr)
    indptr = np.r_[0, np.cumsum(lengths)]
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=np.int32)
    for rows, block in used:
        offsets = np.repeat(indptr[rows] - block.indptr[:-1], np.diff(block.indptr))
        at = offsets + np.arange(block.nnz)
        data[at], indices[at] = block.data, block.indices
    return sp.csr_matrix((data, indices, indptr), shape=shape)
