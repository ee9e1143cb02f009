"""Export networks: edges CSV, GraphML for Cytoscape, and Jacobians into AnnData (``varp`` / ``uns``)."""

from __future__ import annotations

import io
import math
import warnings
from os import PathLike
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from lazynet_core import modules as _modules
from lazynet_core.network import EVIDENCE_EDGE_COLUMNS, edges_frame

CSV_COLUMNS = ["source", "target", "weight", "sign", "agreement", "level", "source_module", "target_module"]


def _edge_table(G_or_frame: nx.DiGraph | pd.DataFrame, modules: pd.DataFrame | bool | None) -> pd.DataFrame:
    frame = edges_frame(G_or_frame) if isinstance(G_or_frame, nx.Graph) else G_or_frame.copy()
    for col in ("agreement", "level"):
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

    Columns: ``source, target, weight, sign, agreement, level, source_module, target_module``, then
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
