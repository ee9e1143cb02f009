"""Export networks (edges CSV, GraphML for Cytoscape, Jacobians into AnnData ``varp`` / ``uns``) and
predictions in the layout Arc Institute's ``cell-eval`` scores.

cell-eval files (:func:`predictions_to_anndata`, :func:`write_cell_eval_files`)
--------------------------------------------------------------------------------
Two AnnData files over the same genes (``var_names``, in the run's order) and the same labels in
the perturbation column ``target`` (cell-eval's default ``--pert-col``):

- the **observed** ("real") file: the held-out perturbations' evaluated cells and, labelled
  ``non-targeting`` (cell-eval's default ``--control-pert``), the **independent reference** control
  cells (role ``"reference"``: never trained on, see :mod:`lazynet_core.metrics`);
- the **predicted** file: the same control cells, and per perturbation as many predicted cells as
  it has observed cells. A method predicts one pseudobulk post state per perturbation; cell-eval's
  DE metrics (pdex: a Wilcoxon / Mann-Whitney test per gene against the controls) need cells, and
  repeating one vector would make every gene a "significant" tie-breaker against the controls. So
  the predicted cells are training control cells (a seeded draw, with replacement only when there
  are too few) recentred on their own mean and moved onto the prediction: cell = prediction +
  (control cell − mean of the drawn control cells), with a per-gene shift that keeps every value
  ≥ 0 (log1p scale) while the cells' mean stays exactly the prediction. The spread is the control
  cells' own (the model predicts a mean, not a distribution); pseudobulk metrics (delta-Pearson,
  MAE, discrimination) therefore score exactly the method's predicted post state.

Both files hold ``.X`` on the screen's scale (log1p CP10k, ``read_screen``'s output), so cell-eval
skips its own normalisation. Score them with
``cell-eval run -ap pred.h5ad -ar pred_real.h5ad --num-threads 1`` (see :func:`cell_eval_command`).
"""

from __future__ import annotations

import io
import math
import shlex
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse

from lazynet_core import modules as _modules
from lazynet_core.errors import ScreenError
from lazynet_core.network import EVIDENCE_EDGE_COLUMNS, edges_frame

CSV_COLUMNS = [
    "source", "target", "weight", "sign", "agreement", "sd", "level", "source_module", "target_module",
]


def _edge_table(G_or_frame: nx.DiGraph | pd.DataFrame, modules: pd.DataFrame | bool | None) -> pd.DataFrame:
    frame = edges_frame(G_or_frame) if isinstance(G_or_frame, nx.Graph) else G_or_frame.copy()
    for col in ("agreement", "sd", "level"):
        if col not in frame.columns:
            frame[col] = np.nan
    if "sign" not in frame.columns:
        frame["sign"] = np.sign(frame["weight"]).astype("Int64")
    if modules is False:
        mapping: dict[str, str] = {}
    else:
        mapping = _modules.gene_module_map(None if modules is None or modules is True else modules)
    frame["source_module"] = frame["source"].astype(str).map(mapping).fillna("")
    frame["target_module"] = frame["target"].astype(str).map(mapping).fillna("")
    return frame[CSV_COLUMNS + [c for c in EVIDENCE_EDGE_COLUMNS if c in frame.columns]]


def write_edges_csv(G_or_frame: nx.DiGraph | pd.DataFrame, path_or_buffer: str | PathLike | io.IOBase, *,
                    modules: pd.DataFrame | bool | None = None) -> None:
    """Write the edge table as CSV.

    Columns: ``source, target, weight, sign, agreement, sd, level, source_module, target_module``
    (``sd``: the replicas' standard deviation of J, the noise the default threshold compares to), then
    the evidence columns when the graph carries them (``evidence`` is one of ``interventional``,
    ``held_out``, ``observational``, ``model_only``; see :mod:`lazynet_core.evidence`)
    (``weight = J[target, source]``; modules from :func:`lazynet_core.modules.module_table`, or a
    table with ``gene`` and ``module`` columns passed as ``modules``; ``modules=False`` leaves the
    module columns empty; several modules are ``";"``-joined).
    """
    _edge_table(G_or_frame, modules).to_csv(path_or_buffer, index=False)


def edges_csv_bytes(G_or_frame: nx.DiGraph | pd.DataFrame, *,
                    modules: pd.DataFrame | bool | None = None) -> bytes:
    """The CSV of :func:`write_edges_csv` as UTF-8 bytes (for download buttons)."""
    buffer = io.StringIO()
    write_edges_csv(G_or_frame, buffer, modules=modules)
    return buffer.getvalue().encode("utf-8")


def _graphml_value(value: Any) -> Any:
    """A GraphML-safe scalar (str/int/float/bool) or None to drop the attribute."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | set | np.ndarray):
        return ";".join(map(str, value))
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _clean(records: dict[str, dict[str, Any]]) -> None:
    """Sanitise attribute dicts in place; a key that mixes int and float becomes float throughout."""
    kinds: dict[str, set[type]] = {}
    for attrs in records.values():
        for key in list(attrs):
            value = _graphml_value(attrs[key])
            if value is None:
                del attrs[key]
            else:
                attrs[key] = value
                kinds.setdefault(key, set()).add(type(value))
    for key, types in kinds.items():
        if types == {int, float}:
            for attrs in records.values():
                if key in attrs:
                    attrs[key] = float(attrs[key])
        elif len(types) > 1:
            for attrs in records.values():
                if key in attrs:
                    attrs[key] = str(attrs[key])


def graphml_ready(G: nx.Graph, *, modules: pd.DataFrame | bool | None = None) -> nx.Graph:
    """A copy of ``G`` whose attributes GraphML / Cytoscape accept (str, int, float, bool only).

    None and NaN attributes are dropped, lists are ``";"``-joined, nodes get ``name`` (the gene,
    Cytoscape's label column) and ``module`` annotations unless ``modules=False``.
    """
    H = G.copy()
    mapping = {} if modules is False else _modules.gene_module_map(
        None if modules is None or modules is True else modules)
    for node, attrs in H.nodes(data=True):
        attrs.setdefault("name", str(node))
        if mapping:
            attrs.setdefault("module", mapping.get(str(node), ""))
    _clean(dict(H.nodes(data=True)))
    _clean({(u, v): d for u, v, d in H.edges(data=True)})
    H.graph.update({k: _graphml_value(v) for k, v in H.graph.items()})
    H.graph = {k: v for k, v in H.graph.items() if v is not None}
    return H


def write_graphml(G: nx.Graph, path: str | PathLike | io.IOBase, *,
                  modules: pd.DataFrame | bool | None = None) -> None:
    """Write a GraphML file Cytoscape opens with node and edge attributes intact.

    See :func:`graphml_ready` for the attribute conversions; the input graph is not modified.
    """
    nx.write_graphml(graphml_ready(G, modules=modules), path, named_key_ids=True)


# ----------------------------------------------------------------------------------------------
# AnnData
# ----------------------------------------------------------------------------------------------
def _jacobian_parts(result: Any) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, dict]:
    if isinstance(result, pd.DataFrame):
        return result, None, None, {}
    meta = {"n_replicas": int(getattr(result, "n_replicas", 1)),
            "n_reference": int(getattr(result, "n_reference", 1))}
    return result.to_frame("mean"), result.to_frame("sd"), result.to_frame("agreement"), meta


def write_to_adata(adata: Any, jacobian_result: Any, *, key_added: str = "lazynet", copy: bool = False,
                   varp: bool | None = None) -> Any:
    """Store a consensus Jacobian in an AnnData (scanpy ``copy=`` semantics).

    When the Jacobian is square over exactly the genes of ``adata.var_names`` (any order; it is
    reordered), the consensus goes to ``adata.varp[f"{key_added}_jacobian"]`` and, for a
    ``JacobianResult``, the replica sd and sign agreement to ``..._jacobian_sd`` and
    ``..._jacobian_agreement``. ``varp[i, j]`` is ``J[gene_i, gene_j]``: the effect of gene ``j``
    on gene ``i``'s change (row target, column source). Otherwise the matrices are stored in
    ``adata.uns[key_added]`` with their ``targets`` / ``sources`` gene lists and a warning says so.
    Metadata always goes to ``adata.uns[key_added]``.

    Parameters
    ----------
    adata
        The AnnData to write into.
    jacobian_result
        A ``JacobianResult`` or a consensus frame (rows target, columns source).
    key_added
        Prefix of the ``varp`` keys and the ``uns`` key.
    copy
        Return a modified copy instead of writing in place (then ``None`` is returned).
    varp
        ``True`` requires ``varp`` storage (``ValueError`` if the genes do not match), ``False``
        forces ``uns``, ``None`` (default) chooses.
    """
    adata = adata.copy() if copy else adata
    mean, sd, agree, meta = _jacobian_parts(jacobian_result)
    var = pd.Index(adata.var_names.astype(str))
    tgt, src = pd.Index(mean.index.astype(str)), pd.Index(mean.columns.astype(str))
    fits = (len(tgt) == len(var) and len(src) == len(var) and tgt.is_unique and src.is_unique
            and set(tgt) == set(var) and set(src) == set(var))
    if varp and not fits:
        msg = (f"varp=True needs a square Jacobian over exactly adata.var_names ({len(var)} genes); got "
               f"{len(tgt)} targets x {len(src)} sources. Compute it over all genes or use varp=None "
               "to store it in .uns.")
        raise ValueError(msg)
    info = {**meta, "orientation": "J[target, source]: effect of source on the target's change (elasticity)"}
    parts = {"": mean, "_sd": sd, "_agreement": agree}
    if fits and varp is not False:
        for suffix, frame in parts.items():
            if frame is not None:
                adata.varp[f"{key_added}_jacobian{suffix}"] = frame.reindex(index=var, columns=var).to_numpy()
        info["storage"] = "varp"
        info["varp_keys"] = [f"{key_added}_jacobian{s}" for s, f in parts.items() if f is not None]
    else:
        if varp is None:
            warnings.warn(f"The Jacobian's genes ({len(tgt)} targets x {len(src)} sources) do not match "
                          f"adata.var_names ({len(var)} genes); stored in adata.uns[{key_added!r}] instead "
                          "of .varp.", UserWarning, stacklevel=2)
        info.update(storage="uns", targets=np.asarray(tgt), sources=np.asarray(src))
        for suffix, frame in parts.items():
            if frame is not None:
                info[f"jacobian{suffix}"] = frame.to_numpy()
    adata.uns[key_added] = info
    return adata if copy else None


# ----------------------------------------------------------------------------------------------
# Predictions for cell-eval
# ----------------------------------------------------------------------------------------------
CELL_EVAL_PERT_COL = "target"  # cell-eval's default --pert-col
CELL_EVAL_CONTROL = "non-targeting"  # cell-eval's default --control-pert
CELL_EVAL_BASELINES = ("perturbed_mean", "perturbed_mean_ex", "linear")
SCALE = "log1p CP10k (read_screen .X)"


def heldout_perturbations(pairs: Any, role: str = "test") -> np.ndarray:
    """Indices of the perturbations with ``role`` cells that were never trained on (held-out
    perturbations and held-out combinations; perturbations with held-out *cells* are left out).

    Raises
    ------
    ScreenError
        When there is none (a run trained on the cells split, or without held-out perturbations).
    """
    role_of = np.asarray(pairs.cell_role)
    trained = set(np.asarray(pairs.cell_pert)[role_of == "train"].tolist())
    evals = [int(p) for p in np.asarray(pairs.evaluation_perturbations(role), dtype=int) if p not in trained]
    if not evals:
        msg = (
            f"No perturbation is held out entirely (role {role!r}, never trained on); cell-eval scores "
            "held-out perturbations. Train on the perturbation split (--split perturbations, optionally "
            "--held-out A,B)."
        )
        raise ScreenError(msg)
    return np.asarray(evals, dtype=int)


def _reference_cells(pairs: Any) -> np.ndarray:
    cells = np.asarray(pairs.cells(-1, "reference"))
    if len(cells) < 2:
        msg = (
            "These pairs keep fewer than 2 independent reference control cells (PairConfig."
            "reference_fraction is 0, e.g. a run trained before it existed); cell-eval needs control "
            "cells that never reached training. Retrain with reference_fraction > 0 (default 0.3)."
        )
        raise ScreenError(msg)
    return cells


def _resolve_perturbations(
    pairs: Any, perturbations: Sequence[int] | Sequence[str] | None, role: str
) -> np.ndarray:
    if perturbations is None:
        return heldout_perturbations(pairs, role)
    labels = list(map(str, np.asarray(pairs.perturbations)))
    out = []
    for p in perturbations:
        if isinstance(p, str):
            if p not in labels:
                raise ScreenError(f"Perturbation {p!r} is not in these pairs; choose among {labels[:10]}.")
            out.append(labels.index(p))
        else:
            out.append(int(p))
    evals = np.asarray(out, dtype=int)
    empty = [labels[p] for p in evals if len(pairs.cells(int(p), role)) == 0]
    if empty:
        raise ScreenError(f"Perturbation(s) {empty[:10]} have no cells of role {role!r} to compare with.")
    return evals


def predicted_posts(
    pairs: Any,
    predict: Callable[[np.ndarray], np.ndarray],
    perturbations: Sequence[int],
    *,
    role: str = "test",
) -> np.ndarray:
    """Post states (n, G) that ``predict`` gives for the perturbations' do-intervention inputs.

    The input is ``pairs.pre_state(p, role)`` and the target genes of the output are set to it,
    exactly as :func:`lazynet_core.metrics.evaluate` scores the model.
    """
    evals = np.asarray(perturbations, dtype=int)
    pre = np.stack([np.asarray(pairs.pre_state(int(p), role), dtype=np.float32) for p in evals])
    post = np.asarray(predict(pre), dtype=np.float64).reshape(pre.shape)
    for row, p in enumerate(evals):
        t = np.asarray(pairs.pert_targets[int(p)], dtype=int)
        post[row, t] = pre[row, t]
    return post


def _mean_preserving_cells(post: np.ndarray, residuals: np.ndarray, *, iterations: int = 60) -> np.ndarray:
    """Cells = post + residuals + s (per gene), clipped at 0, with s chosen so the mean is ``post``.

    ``residuals`` (n, G) have mean 0 per gene; ``post`` (G,) is clipped at 0 first. mean(max(0,
    post + r + s)) is continuous and nondecreasing in s, ≥ post at s = 0 and 0 at s = −post − max r,
    so a bisection finds the shift.
    """
    post = np.clip(np.asarray(post, dtype=np.float64), 0.0, None)
    lo = -post - residuals.max(axis=0) - 1e-12
    hi = np.zeros_like(post)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        too_high = np.clip(post + residuals + mid, 0.0, None).mean(axis=0) > post
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return np.clip(post + residuals + 0.5 * (lo + hi), 0.0, None)


def observed_anndata(
    pairs: Any,
    perturbations: Sequence[int] | Sequence[str] | None = None,
    *,
    role: str = "test",
    pert_col: str = CELL_EVAL_PERT_COL,
    control: str = CELL_EVAL_CONTROL,
) -> Any:
    """The observed ("real") cell-eval file: reference controls + the perturbations' ``role`` cells.

    ``.X`` is the screen's own log1p-CP10k matrix (CSR, float32); ``obs`` holds ``pert_col``,
    ``lazynet_role`` and ``screen_index`` (the cell's row in the screen the pairs were built from).
    """
    from anndata import AnnData

    evals = _resolve_perturbations(pairs, perturbations, role)
    ref = _reference_cells(pairs)
    labels = np.asarray(pairs.perturbations).astype(str)
    groups = [ref] + [np.asarray(pairs.cells(int(p), role)) for p in evals]
    idx = np.concatenate(groups)
    names = np.concatenate(
        [np.full(len(ref), control, dtype=object)]
        + [np.full(len(g), labels[p], dtype=object) for g, p in zip(groups[1:], evals, strict=True)]
    )
    obs = pd.DataFrame(
        {
            pert_col: pd.Categorical(names.astype(str)),
            "lazynet_role": np.asarray(pairs.cell_role)[idx].astype(str),
            "screen_index": idx.astype(np.int64),
        },
        index=[f"real_{i}" for i in range(len(idx))],
    )
    if getattr(pairs, "streamed", False):
        msg = ("These pairs were streamed from disk (stream_pairs): they hold no perturbed cells' rows, so "
               "their observed cells cannot be exported. Read the screen into memory (read_screen, "
               "make_pairs) to export cells for cell-eval.")
        raise ScreenError(msg)
    X = sparse.csr_matrix(pairs.X[idx], dtype=np.float32)
    real = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(np.asarray(pairs.genes).astype(str))))
    real.uns["lazynet_cell_eval"] = {
        "kind": "observed", "pert_col": pert_col, "control": control, "role": role, "scale": SCALE,
        "controls": "independent reference control cells (never trained on)",
    }
    return real


def predictions_to_anndata(
    pairs: Any,
    prediction: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    *,
    perturbations: Sequence[int] | Sequence[str] | None = None,
    role: str = "test",
    method: str = "lazynet",
    pert_col: str = CELL_EVAL_PERT_COL,
    control: str = CELL_EVAL_CONTROL,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Predicted and observed cell-eval files for held-out perturbations (see the module docstring).

    Parameters
    ----------
    pairs
        The :class:`lazynet_core.pairs.Pairs` of the run (``make_pairs(adata, run.pair_config)``).
    prediction
        A predictor ``pre (n, G) -> post (n, G)`` (e.g. ``Ensemble.predict``; its inputs are the
        do-intervention pre states and its targets are clamped, as in ``metrics.evaluate``) or an
        array (n, G) of predicted post states in the order of ``perturbations`` (e.g. a baseline
        from ``metrics.baseline_predictions(pairs, perturbations=...)``).
    perturbations
        Indices or labels to export (default: :func:`heldout_perturbations`).
    role
        Cell role of the observed cells (``"test"``).
    method
        Name stored in ``uns`` and ``obs["method"]``.
    pert_col, control
        Perturbation column and control label of both files (cell-eval's defaults).
    seed
        Seed of the draw of training control cells that give the predicted cells their spread.

    Returns
    -------
    (pred, real)
        Two AnnData objects with the same ``var_names`` and the same labels in ``pert_col``; per
        perturbation, ``pred`` holds as many cells as ``real``. Their controls are the same
        independent reference cells.
    """
    from anndata import AnnData

    evals = _resolve_perturbations(pairs, perturbations, role)
    if callable(prediction):
        posts = predicted_posts(pairs, prediction, evals, role=role)
    else:
        posts = np.asarray(prediction, dtype=np.float64)
        if posts.ndim == 1:
            posts = posts[None, :]
        if posts.shape != (len(evals), pairs.n_genes):
            msg = (
                f"prediction has shape {posts.shape}; expected ({len(evals)}, {pairs.n_genes}): one post "
                "state per exported perturbation, over the pairs' genes."
            )
            raise ValueError(msg)
    bad = [
        str(pairs.perturbations[p]) for p, row in zip(evals, posts, strict=True) if not np.isfinite(row).all()
    ]
    if bad:
        msg = f"Method {method!r} has no finite prediction for {bad[:10]}; drop them from perturbations."
        raise ValueError(msg)
    real = observed_anndata(pairs, evals, role=role, pert_col=pert_col, control=control)
    train_ctrl = np.asarray(pairs.cells(-1, "train"))
    if len(train_ctrl) < 2:
        msg = "The pairs have fewer than 2 training control cells to give the predicted cells a spread."
        raise ScreenError(msg)
    rng = np.random.default_rng([int(seed), 15])
    n_ref = int((real.obs[pert_col] == control).sum())
    blocks = [sparse.csr_matrix(real.X[:n_ref])]
    names = [np.full(n_ref, control, dtype=object)]
    for p, post in zip(evals, posts, strict=True):
        n = len(pairs.cells(int(p), role))
        draw = rng.choice(train_ctrl, size=n, replace=n > len(train_ctrl))
        cells = np.asarray(pairs.X[np.sort(draw)].todense(), dtype=np.float64)
        residuals = cells - cells.mean(axis=0, keepdims=True)
        blocks.append(sparse.csr_matrix(_mean_preserving_cells(post, residuals).astype(np.float32)))
        names.append(np.full(n, str(pairs.perturbations[p]), dtype=object))
    labels = np.concatenate(names).astype(str)
    obs = pd.DataFrame(
        {pert_col: pd.Categorical(labels), "method": np.where(labels == control, "reference", method)},
        index=[f"pred_{i}" for i in range(len(labels))],
    )
    pred = AnnData(X=sparse.vstack(blocks, format="csr", dtype=np.float32), obs=obs, var=real.var.copy())
    pred.uns["lazynet_cell_eval"] = {
        "kind": "predicted", "method": method, "pert_col": pert_col, "control": control, "role": role,
        "scale": SCALE, "seed": int(seed),
        "cells": "training control cells recentred on their mean + the predicted post state, per-gene "
                 "shift keeping values >= 0 and the mean exactly the prediction",
    }
    return pred, real


def observed_path(path: str | PathLike) -> Path:
    """Where the observed file goes beside a predicted file: ``pred.h5ad`` -> ``pred_real.h5ad``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_real.h5ad")


def write_cell_eval_files(pred: Any, real: Any, path: str | PathLike) -> tuple[Path, Path]:
    """Write ``pred`` to ``path`` and ``real`` beside it (:func:`observed_path`); returns both paths."""
    path = Path(path)
    if path.suffix != ".h5ad":
        raise ValueError(f"--out must end in .h5ad (got '{path}'); cell-eval reads AnnData files.")
    if not path.expanduser().resolve().parent.is_dir():
        raise FileNotFoundError(f"The folder of '{path}' does not exist; create it or choose another path.")
    real_path = observed_path(path)
    pred.write_h5ad(path)
    real.write_h5ad(real_path)
    return path, real_path


def cell_eval_command(
    pred_path: str | PathLike,
    real_path: str | PathLike,
    *,
    pert_col: str = CELL_EVAL_PERT_COL,
    control: str = CELL_EVAL_CONTROL,
    outdir: str | PathLike = "cell-eval-outdir",
    threads: int = 1,
) -> str:
    """The ``cell-eval run`` command line that scores a pair of files."""
    parts = ["cell-eval", "run", "-ap", str(pred_path), "-ar", str(real_path), "--pert-col", pert_col,
             "--control-pert", control, "--num-threads", str(threads), "-o", str(outdir)]
    return " ".join(shlex.quote(p) for p in parts)
