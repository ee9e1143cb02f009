"""The computations behind the app's pages, as plain functions of (AnnData, Pairs, Ensemble).

No Streamlit here (importable and testable without it); pages call these through cached wrappers.
Everything is a thin composition of the core: ``metrics``, ``jacobian``, ``network``,
``enrichment``, ``modules``, ``export``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from lazynet_core.errors import ScreenError

KEY_METRICS = {
    "pearson_delta": "Δ-Pearson (all genes)",
    "pearson_delta_top20": "Δ-Pearson (top-20 DE)",
    "direction_acc_top20": "direction accuracy (top-20 DE)",
    "auroc_de": "AUROC of DE genes",
    "mse_delta": "Δ MSE (lower is better)",
}
METHOD_LABELS = {
    "lazynet": "LazyNet",
    "identity": "identity (no change)",
    "perturbed_mean": "perturbed mean",
    "pert_mean": "per-perturbation mean (ceiling)",
    "linear": "linear (Ahlmann-Eltze)",
}
# Upper bound of genes for which a dense gene × gene Jacobian is computed in the app.
DENSE_MAX_GENES = 600


# ---- data page ----------------------------------------------------------------------------------
def screen_overview(adata: Any) -> dict[str, Any]:
    """Counts for the overview cards: cells, genes, controls, perturbations per modality."""
    obs = adata.obs
    pert = obs.loc[~obs["lazynet_is_control"], ["lazynet_perturbation", "lazynet_modality"]].drop_duplicates()
    by_mod = pert["lazynet_modality"].value_counts().to_dict()
    combos = int(pert["lazynet_perturbation"].str.contains(r"\+").sum())
    return {
        "cells": int(adata.n_obs),
        "genes": int(adata.n_vars),
        "controls": int(obs["lazynet_is_control"].sum()),
        "perturbations": int(pert["lazynet_perturbation"].nunique()),
        "by_modality": by_mod,
        "combinations": combos,
    }


def cells_per_perturbation(adata: Any) -> pd.DataFrame:
    """Columns ``perturbation, modality, cells`` (controls excluded), largest first."""
    obs = adata.obs.loc[~adata.obs["lazynet_is_control"]]
    counts = obs.groupby(["lazynet_perturbation", "lazynet_modality"], observed=True).size()
    frame = counts.rename("cells").reset_index()
    frame.columns = ["perturbation", "modality", "cells"]
    return frame.sort_values("cells", ascending=False, ignore_index=True)


def obs_columns(adata: Any) -> list[str]:
    """User columns of ``.obs`` (the ``lazynet_*`` standard columns left out)."""
    return [c for c in adata.obs.columns if not str(c).startswith("lazynet_")]


# ---- effects ------------------------------------------------------------------------------------
def perturbation_table(pairs: Any) -> pd.DataFrame:
    """One row per perturbation: ``perturbation, modality, held_out, role, n_cells, label``.

    ``role`` is the cell role its effects are evaluated on: ``"test"`` when it has test cells
    (held-out perturbations, or held-out cells of a seen one), else ``"train"`` (training fit).
    """
    test = set(np.asarray(pairs.evaluation_perturbations("test")).tolist())
    counts = np.bincount(pairs.cell_pert[pairs.cell_pert >= 0], minlength=len(pairs.perturbations))
    rows = []
    trained = set(np.unique(pairs.cell_pert[(pairs.cell_pert >= 0) & (pairs.cell_role == "train")]).tolist())
    for i, name in enumerate(pairs.perturbations):
        held = i not in trained  # held-out targets and validation perturbations: never trained on
        role = "test" if i in test else "train"
        note = (
            "held out (never trained on)"
            if held
            else ("seen; test cells held out" if role == "test" else "seen")
        )
        rows.append(
            {
                "index": i,
                "perturbation": str(name),
                "modality": str(pairs.pert_modality[i]),
                "held_out": held,
                "role": role,
                "n_cells": int(counts[i]),
                "label": f"{name} · {pairs.pert_modality[i]} · {note}",
            }
        )
    return pd.DataFrame(rows).sort_values(["modality", "perturbation"], ignore_index=True)


def effects_frame(ensemble: Any, pairs: Any, p_idx: int, role: str) -> pd.DataFrame:
    """Per gene: observed and predicted Δ (post − training control mean) for one perturbation."""
    control = np.asarray(pairs.control_mean("train"), dtype=float)
    pre = np.asarray(pairs.pre_state(p_idx, role), dtype=np.float32)
    pred = np.asarray(ensemble.predict(pre), dtype=float)
    targets = np.asarray(pairs.pert_targets[p_idx], dtype=int)
    pred[targets] = pre[targets]
    obs = np.asarray(pairs.pert_mean(p_idx, role), dtype=float)
    is_target = np.zeros(len(control), dtype=bool)
    is_target[targets] = True
    return pd.DataFrame(
        {
            "gene": np.asarray(pairs.genes, dtype=str),
            "observed": obs - control,
            "predicted": pred - control,
            "is_target": is_target,
        }
    )


def evaluation_frame(ensemble: Any, pairs: Any, role: str) -> pd.DataFrame:
    """``metrics.evaluate`` of the ensemble and every baseline on the perturbations of ``role``."""
    from lazynet_core.metrics import evaluate

    return evaluate(pairs, ensemble.predict, role=role)


def method_table(frame: pd.DataFrame, *, perturbation: str | None = None) -> pd.DataFrame:
    """Methods × key metrics (mean over perturbations, or one perturbation's values)."""
    data = frame[frame["metric"].isin(list(KEY_METRICS))]
    if perturbation is not None:
        data = data[data["perturbation"] == perturbation]
    data = data.assign(value=pd.to_numeric(data["value"], errors="coerce"))
    table = data.pivot_table(
        index="method", columns="metric", values="value", aggfunc="mean", sort=False, dropna=False
    )
    table = table.reindex(columns=[m for m in KEY_METRICS if m in table.columns])
    order = [m for m in METHOD_LABELS if m in table.index]
    table = table.reindex(order)
    table.index = [METHOD_LABELS.get(m, m) for m in table.index]
    table.columns = [KEY_METRICS[c] for c in table.columns]
    return table.astype(float)


def format_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Numbers as fixed-precision strings, undefined values as "–" (Streamlit shows NaN as "None")."""
    return table.map(lambda v: "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}")


def baselines_beating(frame: pd.DataFrame, *, metric: str = "pearson_delta") -> list[str]:
    """Baselines whose mean ``metric`` is higher than LazyNet's (honesty line under the table)."""
    means = frame[frame["metric"] == metric].groupby("method")["value"].mean()
    if "lazynet" not in means or not np.isfinite(means["lazynet"]):
        return []
    return [
        METHOD_LABELS.get(m, m)
        for m, v in means.items()
        if m != "lazynet" and np.isfinite(v) and v > means["lazynet"]
    ]


def method_summary(frame: pd.DataFrame, metric: str = "pearson_delta") -> pd.DataFrame:
    """Rows ``method, mean, sd, n`` of one metric over perturbations (for bar charts)."""
    data = frame[frame["metric"] == metric]
    out = data.groupby("method", sort=False)["value"].agg(mean="mean", sd="std", n="count").reset_index()
    return out


def perturbed_targets(pairs: Any) -> set[str]:
    """Genes targeted by at least one perturbation of the screen."""
    genes = np.asarray(pairs.genes, dtype=str)
    return {str(genes[t]) for targets in pairs.pert_targets for t in np.asarray(targets, dtype=int)}


def in_silico(ensemble: Any, genes: Sequence[str], fold: float) -> pd.Series:
    """Predicted Δ when ``genes`` are scaled by ``fold`` (linear scale): F(perturbed) − F(control).

    ``fold`` < 1 is a knock-down (0.25 = 75 % down, CRISPRi-like), > 1 an activation.
    """
    if not genes:
        msg = "Choose at least one gene to perturb."
        raise ScreenError(msg)
    if not fold > 0:
        msg = f"The expression level must be > 0 times control, got {fold}."
        raise ValueError(msg)
    settings = ensemble.knockdown_settings(list(genes), float(fold))
    post = ensemble.perturb(settings)
    # Net effect of the intervention: compare with the model's own prediction for the unperturbed
    # control state, so the model's small drift at the reference (F(x_ref) != x_ref) cancels.
    baseline = ensemble.predict(np.asarray(ensemble.reference, dtype=np.float32))
    delta = np.asarray(post, dtype=float) - np.asarray(baseline, dtype=float)
    series = pd.Series(delta, index=np.asarray(ensemble.genes, dtype=str), name="predicted_delta")
    return series.drop(index=list(genes))


# ---- Jacobian -----------------------------------------------------------------------------------
def parse_gene_list(text: str) -> list[str]:
    """Genes from free text (commas, spaces, semicolons or new lines), order kept, de-duplicated."""
    import re

    return list(dict.fromkeys(t for t in re.split(r"[\s,;]+", text or "") if t))


def check_genes_known(genes: Iterable[str], universe: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``genes`` into (known, unknown) with respect to ``universe``."""
    universe = set(map(str, universe))
    genes = list(genes)
    return [g for g in genes if g in universe], [g for g in genes if g not in universe]


def dense_jacobian(ensemble: Any, genes: Sequence[str] | None = None) -> Any:
    """``JacobianResult`` over ``genes`` (all genes when ``None``; refused above DENSE_MAX_GENES)."""
    from lazynet_core.jacobian import jacobian

    names = list(ensemble.genes) if genes is None else list(genes)
    if len(names) > DENSE_MAX_GENES:
        msg = (
            f"{len(names)} genes is too many for a dense Jacobian in the app (max {DENSE_MAX_GENES}); "
            "choose a module, fewer top genes or a shorter list."
        )
        raise ValueError(msg)
    if len(names) < 2:
        msg = "A Jacobian heatmap needs at least 2 genes."
        raise ValueError(msg)
    return jacobian(ensemble, sources=names, targets=names)


def top_genes_by_abs_j(full: Any, n: int) -> list[str]:
    """The ``n`` genes with the largest total |J| (in + out, diagonal excluded) of a full result."""
    mat = np.abs(np.asarray(full.mean, dtype=float))
    np.fill_diagonal(mat, 0.0)
    score = mat.sum(axis=0) + mat.sum(axis=1)
    order = np.argsort(-score, kind="stable")[: int(n)]
    return [str(full.sources[i]) for i in order]


# ---- networks -----------------------------------------------------------------------------------
def module_choices() -> dict[str, str]:
    """Module key -> display name."""
    return {"ferroptosis": "Ferroptosis", "lysosomal_mito_immune": "Lysosomal–mitochondrial–immune"}


def seeds_in_universe(module: str, genes: Iterable[str]) -> tuple[list[str], list[str]]:
    """Default seeds of ``module`` split into (present in the model, missing)."""
    from lazynet_core.modules import default_seeds

    return check_genes_known(default_seeds(module), genes)


def subgraph(
    provider: Any, seeds: Sequence[str], *, breadth: int, depth: int, min_abs: float, direction: str = "out"
) -> nx.DiGraph:
    """Seed subgraph (``network.expand_from_seeds``) from an on-demand Jacobian provider."""
    from lazynet_core.network import expand_from_seeds

    if not seeds:
        msg = "Choose at least one seed gene."
        raise ScreenError(msg)
    return expand_from_seeds(
        provider,
        list(seeds),
        breadth=int(breadth),
        depth=int(depth),
        min_abs=float(min_abs),
        direction=direction,
    )


def _all_cells_mean(pairs: Any, p_idx: int) -> np.ndarray:
    idx = np.flatnonzero(pairs.cell_pert == p_idx)
    return np.asarray(pairs.X[idx].mean(axis=0), dtype=float).ravel()


def single_target_means(pairs: Any, *, role: str | None = None) -> dict[str, np.ndarray]:
    """Regulator gene -> mean log expression of the cells where it alone was perturbed.

    ``role=None`` uses all cells of the perturbation (the screen's evidence); ``"train"`` only
    training cells (what a fair baseline may see).
    """
    genes = np.asarray(pairs.genes, dtype=str)
    out = {}
    for i, targets in enumerate(pairs.pert_targets):
        if len(targets) != 1:
            continue
        mean = (
            _all_cells_mean(pairs, i) if role is None else np.asarray(pairs.pert_mean(i, role), dtype=float)
        )
        if np.isfinite(mean).all():
            out[str(genes[int(targets[0])])] = mean
    return out


def annotated_edges(G: nx.DiGraph, pairs: Any) -> pd.DataFrame:
    """Edges of ``G`` with module annotations and the screen's own fold-change evidence.

    Added columns: ``source_module``, ``target_module`` (curated modules, ``""`` if none),
    ``screen_delta`` (observed Δ log expression of the target in cells where the source alone was
    perturbed, vs control; NaN when the source was never perturbed: the screen has no direct
    evidence for that edge), ``evidence`` ("agrees" / "disagrees" / "unsupported by the screen").
    """
    from lazynet_core.modules import gene_module_map
    from lazynet_core.network import edges_frame

    frame = edges_frame(G)
    modules = gene_module_map()
    frame["source_module"] = frame["source"].map(modules).fillna("")
    frame["target_module"] = frame["target"].map(modules).fillna("")
    control = np.asarray(pairs.control_mean("train"), dtype=float)
    means = single_target_means(pairs)
    index = {g: i for i, g in enumerate(np.asarray(pairs.genes, dtype=str))}
    # Regulators perturbed in a CRISPRa cell line flip the expected sign: the model's J is the
    # response to *raising* x_s, and CRISPRi lowers it; compare signs of J·Δx_s with the effect.
    src_shift = {g: m[index[g]] - control[index[g]] for g, m in means.items()}
    delta = [
        means[s][index[t]] - control[index[t]] if s in means and t in index else np.nan
        for s, t in zip(frame["source"], frame["target"], strict=True)
    ]
    frame["screen_delta"] = delta
    expected = [
        np.sign(w) * np.sign(src_shift.get(s, np.nan))
        for s, w in zip(frame["source"], frame["weight"], strict=True)
    ]
    frame["evidence"] = [
        "unsupported by the screen" if not np.isfinite(d) else ("agrees" if np.sign(d) == e else "disagrees")
        for d, e in zip(frame["screen_delta"], expected, strict=True)
    ]
    return frame


EXTRA_EDGE_COLUMNS = ["screen_delta", "evidence"]


def edges_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes: ``export.edges_csv_bytes`` columns plus the screen evidence columns."""
    from lazynet_core.export import CSV_COLUMNS, _edge_table

    table = _edge_table(frame, None)
    extra = frame.reindex(columns=EXTRA_EDGE_COLUMNS)
    return pd.concat([table[CSV_COLUMNS], extra], axis=1).to_csv(index=False).encode("utf-8")


def graphml_bytes(G: nx.DiGraph, frame: pd.DataFrame) -> bytes:
    """GraphML (Cytoscape-readable, ``export.write_graphml``) with the evidence on every edge."""
    import io

    from lazynet_core.export import write_graphml

    H = G.copy()
    for row in frame[["source", "target", *EXTRA_EDGE_COLUMNS]].itertuples(index=False):
        if H.has_edge(row.source, row.target):
            H.edges[row.source, row.target].update(
                screen_delta=float(row.screen_delta), evidence=row.evidence
            )
    buffer = io.BytesIO()
    write_graphml(H, buffer)
    return buffer.getvalue()


def module_evaluation(G: nx.DiGraph, module: str, genes: Iterable[str]) -> dict[str, Any]:
    """Recall of the module's curated genes in the subgraph, overall and among modelled genes."""
    from lazynet_core.enrichment import module_recall
    from lazynet_core.modules import module_genes

    members = module_genes(module)
    modelled = [g for g in members if g in set(map(str, genes))]
    return {"all": module_recall(G, members), "modelled": module_recall(G, modelled)}


def coexpression(G: nx.DiGraph, pairs: Any) -> dict[str, Any]:
    """Co-expression support of the subgraph's edges among training control cells."""
    from lazynet_core.enrichment import coexpression_support

    X = pairs.X[pairs.cells(-1, "train")]
    return coexpression_support(G, X, list(pairs.genes))


def read_planted_network(source: str) -> dict[str, np.ndarray] | None:
    """``uns["planted_network"]`` of an ``.h5ad`` file (synthetic screens), read without loading ``X``.

    ``read_screen`` returns a new AnnData without the input's ``uns``, so the truth is read from
    the file itself; ``None`` when the file has none (real screens) or cannot be read.
    """
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(source, "r") as handle:
            if "uns" not in handle or "planted_network" not in handle["uns"]:
                return None
            return dict(read_elem(handle["uns"]["planted_network"]))
    except OSError:
        return None


def planted_recovery_table(ensemble: Any, pairs: Any, truth: Any, full_jacobian: Any) -> pd.DataFrame | None:
    """AUROC / AUPRC against the planted network (synthetic screens only), next to baselines.

    Baselines see only training cells: fold change (regulator perturbed), |correlation| among
    training controls, and the regulator's mean control expression. ``None`` when the screen has
    no planted network.
    """
    from lazynet_core.enrichment import (
        correlation_scores,
        fold_change_scores,
        recovery_table,
        regulator_expression_scores,
    )

    if truth is None:
        return None
    genes = list(np.asarray(pairs.genes, dtype=str))
    control = np.asarray(pairs.control_mean("train"), dtype=float)
    train_means = single_target_means(pairs, role="train")
    frames = {
        "LazyNet |J|": full_jacobian.to_frame("mean").reindex(index=genes, columns=genes),
        "fold change": fold_change_scores(control, train_means, genes),
        "|correlation| (controls)": correlation_scores(pairs.X[pairs.cells(-1, "train")], genes),
        "regulator expression": regulator_expression_scores(control, genes),
    }
    truth_frame = pd.DataFrame({k: np.asarray(v) for k, v in dict(truth).items()})
    return recovery_table(frames, truth_frame, list(train_means))
