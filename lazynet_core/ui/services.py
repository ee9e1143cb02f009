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
from lazynet_core.metrics import set_ceiling
from lazynet_core.text import display_name

KEY_METRICS = {
    "pearson_delta": "Δ-Pearson",
    "pearson_delta_top20": "Δ-Pearson, top-20 DE",
    "slope": "slope (1 = right size)",
    "direction_acc_top20": "direction, top-20 DE",
    "auroc_de": "AUROC of DE",
    "mse_delta": "Δ MSE (↓ better)",
}
METHOD_LABELS = {
    "lazynet": "LazyNet",
    "identity": "identity (no change)",
    "perturbed_mean": "perturbed mean",
    "perturbed_mean_ex": "perturbed mean, own target left out",
    "linear": "linear (Ahlmann-Eltze)",
    "control_covariance": "control covariance",
    "pooled_covariance": "pooled covariance (+ perturbed cells)",
    "additive": "additive (sum of single arms)",
    "additive_shrunk": "additive, arms soft-thresholded at 2 SE",
    "additive_counts": "additive in counts (not log)",
    "additive_counts_shrunk": "additive in counts, arms soft-thresholded at 2 SE",
    "multiplicative_counts": "arms' fold changes multiplied (log without the pseudo-count)",
    "multiplicative_counts_shrunk": "arms' fold changes multiplied, arms soft-thresholded at 2 SE",
    "own_training_mean": "own training-cell mean",
    "own_training_mean_shrunk": "own training-cell mean, soft-thresholded at 2 SE",
    "null": "null (random control cells)",
}
SET_LABELS = {
    "held_out_perturbations": "Held-out perturbations (targets never trained on)",
    "validation_perturbations": "Validation perturbations (never trained on)",
    "combinations": "Combinations (never trained on)",
    "held_out_cells": "Held-out cells (perturbation seen in training)",
}
#: The same sets in few words, for tabs at presentation font sizes (the long labels would overflow).
SET_SHORT_LABELS = {
    "held_out_perturbations": "Held-out perturbations",
    "validation_perturbations": "Validation perturbations",
    "combinations": "Combinations",
    "held_out_cells": "Held-out cells",
}
REFERENCE_LABELS = {
    "independent": "independent control reference (held-out control cells)",
    "training": "training control mean (flattering: its noise sits on both sides)",
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


REAL_SCREEN = {
    "title": "Real screen: Schraivogel et al. 2020, K562 TAP-seq",
    "summary": "A real CRISPRi screen: K562 cells, dCas9-KRAB, 13 targets plus non-targeting controls, "
    "a targeted 72-gene readout (18,959 cells in the file; reading drops the HS2 enhancer's 946, as it is "
    "not a gene, and keeps 18,013).",
    "citation": "Schraivogel D et al. Targeted Perturb-seq enables genome-scale genetic screens in single "
    "cells. Nat Methods 17, 629–635 (2020), GEO GSE135497.",
    "licence": "MIT (source files: crispat example data, © 2024 Jana M. Braunger)",
}


def real_screen_licence() -> str:
    """The MIT licence text shipped with the real screen (from ``assets/schraivogel2020_README.md``)."""
    from lazynet_core.datasets import real_screen_path

    readme = real_screen_path().with_name("schraivogel2020_README.md")
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if "MIT License" not in text:
        return REAL_SCREEN["licence"]
    block = text[text.index("MIT License"):]
    return block.split("```")[0].strip()


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
def _set_name(pairs: Any, p_idx: int, role: str, trained: set[int]) -> str:
    """The evaluation set of one perturbation (``metrics.evaluation_set``; ``"training"`` for fit)."""
    from lazynet_core.metrics import evaluation_set

    return "training" if role == "train" else evaluation_set(pairs, p_idx, role, trained=trained)


def perturbation_table(pairs: Any) -> pd.DataFrame:
    """One row per perturbation: ``index, perturbation, modality, held_out, role, set, n_cells, label``.

    ``role`` is the cell role its effects are evaluated on: ``"test"`` when it has test cells
    (held-out perturbations, or held-out cells of a seen one), ``"val"`` for a validation
    perturbation (never trained on), else ``"train"`` (training fit). ``set`` is the evaluation set
    of ``metrics.evaluate`` (``"training"`` for a training fit).
    """
    test = set(np.asarray(pairs.evaluation_perturbations("test")).tolist())
    val = set(np.asarray(pairs.evaluation_perturbations("val")).tolist())
    counts = np.bincount(pairs.cell_pert[pairs.cell_pert >= 0], minlength=len(pairs.perturbations))
    rows = []
    trained = set(np.unique(pairs.cell_pert[(pairs.cell_pert >= 0) & (pairs.cell_role == "train")]).tolist())
    for i, name in enumerate(pairs.perturbations):
        held = i not in trained  # held-out targets and validation perturbations: never trained on
        role = "test" if i in test else ("val" if i in val and held else "train")
        note = (
            "held out (never trained on)"
            if held
            else ("seen; test cells held out" if role == "test" else "seen (training fit only)")
        )
        rows.append(
            {
                "index": i,
                "perturbation": str(name),
                "modality": str(pairs.pert_modality[i]),
                "held_out": held,
                "role": role,
                "set": _set_name(pairs, i, role, trained),
                "n_cells": int(counts[i]),
                # a selectbox shows plain text: invisible characters made visible, long names shortened
                "label": f"{display_name(name, max_len=60)} · {pairs.pert_modality[i]} · {note}",
            }
        )
    return pd.DataFrame(rows).sort_values(["modality", "perturbation"], ignore_index=True)


def runs_fitting(runs: pd.DataFrame, *, genes: Sequence[str]) -> pd.DataFrame:
    """``runs`` (:func:`lazynet_core.runs.list_runs`) with a ``fits_screen`` column after ``name``.

    Parameters
    ----------
    runs
        The saved runs' table.
    genes
        The loaded screen's genes, in order.

    Returns
    -------
    pandas.DataFrame
        A copy; ``fits_screen`` is True where the run was trained on exactly these genes in this
        order (its manifest's gene checksum), or, for a run saved before checksums, on as many genes.
        A run of another screen cannot be loaded against this one.
    """
    from lazynet_core.runs import genes_checksum

    out = runs.copy()
    genes = [str(g) for g in genes]
    digest = genes_checksum(genes)
    by_count = pd.to_numeric(out["n_genes"], errors="coerce") == len(genes)
    recorded = out.get("genes_sha256", pd.Series([None] * len(out), index=out.index))
    fits = [d == digest if isinstance(d, str) else bool(c)
            for d, c in zip(recorded, by_count, strict=True)]
    out.insert(1, "fits_screen", np.asarray(fits, dtype=bool))
    return out


def safe_filename(name: str, *, max_len: int = 80) -> str:
    """A download file name from a label: anything but letters, digits, ``.``, ``+``, ``-``, ``_`` -> ``_``.

    Parameters
    ----------
    name
        Stem that may quote a perturbation label or gene name.
    max_len
        Longest stem kept.

    Returns
    -------
    str
        A stem safe on every file system (``"file"`` when nothing usable is left).
    """
    import re

    stem = re.sub(r"[^A-Za-z0-9.+_-]+", "_", str(name)).strip("._")[:max_len]
    return stem or "file"


def reference_for(pairs: Any) -> str:
    """``"independent"`` when the pairs keep independent reference control cells, else ``"training"``.

    Runs trained before the independent reference existed have none; their figures fall back to the
    (flattering) training control mean, and the page says so (:func:`require_independent_reference`).
    """
    return "independent" if len(pairs.cells(-1, "reference")) else "training"


def require_independent_reference(pairs: Any) -> None:
    """Raise the core's ``ScreenError`` explaining why there is no independent reference (if none)."""
    from lazynet_core.metrics import reference_mean

    reference_mean(pairs, "independent")


def _reference_cells(pairs: Any, reference: str) -> np.ndarray:
    return pairs.cells(-1, "reference" if reference == "independent" else "train")


def de_test(pairs: Any, p_idx: int, role: str, *, reference: str = "independent") -> pd.DataFrame:
    """Per gene: Welch t-test of the perturbation's ``role`` cells vs the reference control cells.

    Returns columns ``p_value`` and ``q_value`` (Benjamini–Hochberg over the genes with a defined
    test; a gene constant in both groups gets p = 1), indexed like ``pairs.genes``.
    """
    from scipy import stats

    own = pairs.cells(p_idx, role)
    ref = _reference_cells(pairs, reference)
    n = pairs.n_genes
    p = np.ones(n)
    if len(own) >= 2 and len(ref) >= 2:
        a = np.asarray(pairs.X[own].toarray() if hasattr(pairs.X, "toarray") else pairs.X[own], dtype=float)
        b = np.asarray(pairs.X[ref].toarray() if hasattr(pairs.X, "toarray") else pairs.X[ref], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = stats.ttest_ind(a, b, equal_var=False, axis=0)
        p = np.where(np.isfinite(res.pvalue), res.pvalue, 1.0)
    else:
        p = np.full(n, np.nan)
    q = np.full(n, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return pd.DataFrame({"p_value": p, "q_value": q})


def interaction_view(ensemble: Any, pairs: Any, p_idx: int) -> dict[str, Any] | None:
    """The genetic-interaction panel of a held-out double, or None when ``p_idx`` is not one whose
    single arms all have held-out cells (:mod:`lazynet_core.interactions`).

    Returns
    -------
    dict
        ``frame`` (per gene: ``gene``, ``observed``, ``predicted``, ``is_target``), ``arms`` (the
        single arms' labels), ``pearson_interaction``, ``interaction_explained``, ``ceiling`` and
        ``verdict`` (a sentence comparing the model's r with its dose-only null),
        ``counts_pearson`` (the count-space additive model's r: a baseline that does predict an
        interaction; NaN when it cannot be computed) and ``dose_only_pearson`` (the r of the model's
        own no-interaction null on the same inputs, ``interactions.double_interaction``).
    """
    from lazynet_core.interactions import (
        additive_counts_interaction,
        double_arms,
        double_interaction,
        interaction_ceiling,
        interaction_scores,
    )

    arms = dict(double_arms(pairs)).get(int(p_idx))
    if arms is None:
        return None
    frame = double_interaction(pairs, ensemble.predict, int(p_idx), arms=arms)
    keep = ~frame["is_target"].to_numpy()
    rest = frame[keep]
    counts = additive_counts_interaction(pairs, arms)
    counts_r = np.nan if counts is None else interaction_scores(counts[keep], rest["observed"].to_numpy())[
        "pearson_interaction"]
    scores = interaction_scores(rest["predicted"].to_numpy(), rest["observed"].to_numpy())
    observed = rest["observed"].to_numpy()
    null_r = interaction_scores(rest["dose_only"].to_numpy(), observed)["pearson_interaction"]
    return {
        "frame": frame,
        "arms": [str(pairs.perturbations[a]) for a in arms],
        "verdict": _interaction_verdict(scores["pearson_interaction"], null_r),
        **scores,
        "ceiling": interaction_ceiling(pairs, (int(p_idx), *arms), "test"),
        "counts_pearson": counts_r,
        "dose_only_pearson": null_r,
    }


VERDICT_MARGIN = 0.05  # r must clear the null by this much on one double before it reads as "beyond"


def _interaction_verdict(r: float, null_r: float) -> str:
    """One honest sentence on a double's predicted interaction against the model's dose-only null.

    "Beyond" needs r > 0 and r ≥ null + ``VERDICT_MARGIN``: one combination has no uncertainty to
    test, so a near-tie is reported as a tie. An undefined null (the arms' knock-down levels are
    the same in the double's cells as alone, so the null predicts no interaction) gets its own
    sentence rather than being read as a dose effect.
    """
    if not np.isfinite(r):
        return "LazyNet predicts no interaction for this combination (its r is undefined)."
    if not np.isfinite(null_r):
        if r > 0:
            return (f"The dose-only null predicts no interaction here (the arms' knock-down levels match), "
                    f"so LazyNet's r {r:.3f} is its own; one combination: judge a recipe by the benchmark "
                    "over many (below).")
        return f"LazyNet's predicted interaction does not follow the observed one here (r {r:.3f})."
    if r > 0 and r >= null_r + VERDICT_MARGIN:
        return (f"Beyond the dose-only null here (r {r:.3f} vs {null_r:.3f}): one combination; judge a "
                "recipe by the benchmark over many (below).")
    return (f"No better than the dose-only null here (r {r:.3f} vs {null_r:.3f}, which scores the arms' "
            "knock-down levels alone): no sign of a learned interaction in this combination.")


def effects_frame(
    ensemble: Any, pairs: Any, p_idx: int, role: str, *, reference: str = "independent",
    baselines: bool = True,
) -> pd.DataFrame:
    """Per gene: observed, predicted and baseline Δ for one perturbation, with DE significance.

    Observed Δ = mean of the perturbation's ``role`` cells − the reference (``metrics.reference_mean``:
    held-out control cells when ``reference="independent"``); predicted Δ (LazyNet and every
    baseline of ``metrics.baseline_predictions``) = prediction − the training control mean, which is
    what every method starts from. Target genes are set to their input level (``is_target``).

    Columns: ``gene, observed, predicted, <baseline>…, p_value, q_value, is_target`` (baseline
    columns named by method; NaN where a baseline does not apply).
    """
    from lazynet_core.metrics import baseline_predictions, reference_mean

    control = np.asarray(pairs.control_mean("train"), dtype=float)
    ref = reference_mean(pairs, reference)
    pre = np.asarray(pairs.pre_state(p_idx, role), dtype=np.float32)
    pred = np.asarray(ensemble.predict(pre), dtype=float).reshape(-1)
    targets = np.asarray(pairs.pert_targets[p_idx], dtype=int)
    pred[targets] = pre[targets]
    obs = np.asarray(pairs.pert_mean(p_idx, role), dtype=float)
    is_target = np.zeros(len(control), dtype=bool)
    is_target[targets] = True
    frame = pd.DataFrame(
        {
            "gene": np.asarray(pairs.genes, dtype=str),
            "observed": obs - ref,
            "predicted": pred - control,
        }
    )
    if baselines:
        preds = baseline_predictions(pairs, role=role, perturbations=[int(p_idx)])
        for method, post in preds.items():
            if method.startswith("own_training_mean") and role != "test":
                continue  # the training fit's own mean, or undefined for a never-trained perturbation
            delta = np.asarray(post[0], dtype=float) - control
            if np.isfinite(delta).all():
                frame[method] = delta
    frame = pd.concat([frame, de_test(pairs, p_idx, role, reference=reference)], axis=1)
    frame["is_target"] = is_target
    return frame


def gene_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-gene table shown (and downloaded) on the Effects page, largest observed |Δ| first.

    Columns: ``gene``, ``observed Δ``, ``LazyNet Δ``, one ``<baseline> Δ`` per baseline, ``DE p``,
    ``DE q (BH)``, ``target``.
    """
    names = {"observed": "observed Δ", "predicted": "LazyNet Δ"}
    # identity (the input: zero off target) and null (random controls) say nothing gene by gene
    skip = ("lazynet", "identity", "null")
    baseline_cols = [c for c in frame.columns if c in METHOD_LABELS and c not in skip]
    names.update({c: f"{METHOD_LABELS[c]} Δ" for c in baseline_cols})
    names.update({"p_value": "DE p (Welch)", "q_value": "DE q (BH)", "is_target": "target"})
    cols = ["gene", "observed", "predicted", *baseline_cols, "p_value", "q_value", "is_target"]
    table = frame.reindex(columns=[c for c in cols if c in frame.columns]).rename(columns=names)
    order = frame["observed"].abs().sort_values(ascending=False, na_position="last").index
    return table.loc[order].reset_index(drop=True)


def evaluation_frame(ensemble: Any, pairs: Any, reference: str = "independent") -> pd.DataFrame:
    """``metrics.evaluate`` of the ensemble and every baseline on every held-out set."""
    from lazynet_core.metrics import evaluate

    return evaluate(pairs, ensemble.predict, reference=reference)


def sets_in(frame: pd.DataFrame) -> list[str]:
    """Evaluation sets present in ``frame``, in ``metrics.SETS`` order."""
    from lazynet_core.metrics import SETS

    present = set(frame["set"].unique())
    return [s for s in SETS if s in present] + sorted(present - set(SETS))


def method_table(frame: pd.DataFrame, *, perturbation: str | None = None) -> pd.DataFrame:
    """Methods × key metrics (mean over perturbations, or one perturbation's values).

    The ``observed`` noise-ceiling rows are not a method and are left out (see :func:`set_summary`).
    """
    data = frame[frame["metric"].isin(list(KEY_METRICS)) & (frame["method"] != "observed")]
    data = data[data["perturbation"] != "ALL"]
    if perturbation is not None:
        data = data[data["perturbation"] == perturbation]
    data = data.assign(value=pd.to_numeric(data["value"], errors="coerce"))
    table = data.pivot_table(
        index="method", columns="metric", values="value", aggfunc="mean", sort=False, dropna=False
    )
    table = table.reindex(columns=[m for m in KEY_METRICS if m in table.columns])
    order = [m for m in METHOD_LABELS if m in table.index]
    order += [m for m in table.index if m not in METHOD_LABELS]
    table = table.reindex(order)
    # a baseline that does not apply to this set (e.g. additive on single perturbations) is all NaN
    table = table.dropna(how="all")
    table.index = [METHOD_LABELS.get(m, m) for m in table.index]
    table.columns = [KEY_METRICS[c] for c in table.columns]
    return table.astype(float)


def _mean_of(frame: pd.DataFrame, method: str, metric: str, perturbation: str | None = None) -> float:
    sel = (frame["method"] == method) & (frame["metric"] == metric) & (frame["perturbation"] != "ALL")
    if perturbation is not None:
        sel &= frame["perturbation"] == perturbation
    values = pd.to_numeric(frame.loc[sel, "value"], errors="coerce").dropna()
    return float(values.mean()) if len(values) else float("nan")


def set_summary(frame: pd.DataFrame, *, perturbation: str | None = None) -> dict[str, float]:
    """LazyNet's key figures on one set (or one perturbation) with the noise ceiling beside them.

    Keys: ``pearson_delta``, ``ceiling`` (split-half noise ceiling of Δ-Pearson: a perturbation's own,
    or for a set :func:`lazynet_core.metrics.set_ceiling` of the mean split-half r), ``slope``,
    ``norm_ratio``, ``intervention_response``, ``pearson_delta_specific``, ``specific_fraction``
    and ``n`` (perturbations). NaN where undefined.
    """
    out = {
        m: _mean_of(frame, "lazynet", m, perturbation)
        for m in ("pearson_delta", "slope", "norm_ratio", "intervention_response", "pearson_delta_specific",
                  "specific_fraction")
    }
    out["ceiling"] = _mean_of(frame, "observed", "ceiling", perturbation)
    if perturbation is None:  # a set: the split-half r pooled, never the defined ceilings' mean
        halves = frame[(frame["method"] == "observed") & (frame["metric"] == "split_half_r")
                       & (frame["perturbation"] != "ALL")]
        per = pd.to_numeric(halves["value"], errors="coerce").groupby(halves["perturbation"]).mean().dropna()
        if len(per):
            out["ceiling"] = set_ceiling(per.mean())
    rows = frame[(frame["method"] == "lazynet") & (frame["perturbation"] != "ALL")]
    if perturbation is not None:
        rows = rows[rows["perturbation"] == perturbation]
    out["n"] = int(rows["perturbation"].nunique())
    return out


def headline(frame: pd.DataFrame, set_name: str) -> dict[str, Any] | None:
    """``metrics.headline`` of LazyNet vs the best baseline on ``set_name`` (Δ-Pearson, paired).

    Adds ``baseline_label`` (display name) and ``message``: one sentence for the page.
    """
    from lazynet_core.metrics import headline as _headline

    result = _headline(frame, set_name=set_name, metric="pearson_delta")
    if result is None:
        return None
    result = dict(result)
    best = result.get("baseline")
    result["baseline_label"] = METHOD_LABELS.get(best, best) if best else None
    if best is None:
        result["message"] = f"LazyNet: {result['text']}."
        return result
    verdict = {"ahead": "LazyNet is ahead", "behind": "LazyNet is behind", "tie": "A tie",
               "undecided": "Undecided"}[result["verdict"]]
    p = result.get("p_wilcoxon")
    significant = p is not None and np.isfinite(p) and p < 0.05
    why = {  # the verdict in words, never a direction the test does not support
        "ahead": "significant and at least the 0.01 margin that counts as a win",
        "behind": "significant: the baseline predicts better",
        "tie": "significant, but below the 0.01 margin that counts as a win" if significant
        else "not significant",
        "undecided": f"too few perturbations ({result.get('n')}) for a paired test to reach p < 0.05",
    }[result["verdict"]]
    sd = result.get("sd_diff")
    spread = f" ± {sd:.3f}" if sd is not None and np.isfinite(sd) else ""
    p_text = f"{p:.2g}" if p is not None and np.isfinite(p) else "n/a"
    result["message"] = (
        f"**{verdict}** against the best baseline on Δ-Pearson (paired, per perturbation): LazyNet "
        f"{result['model_mean']:.3f}, {result['baseline_label']} {result['baseline_mean']:.3f} (each its own "
        f"mean); the paired difference {result['mean_diff']:+.3f}{spread} over the {result['n']} "
        f"perturbations both predict (LazyNet better on {result['wins']}, p = {p_text}) is "
        f"{why}.".replace("-0.", "−0.")
    )
    return result


def format_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Numbers as fixed-precision strings with a true minus sign (as in the text around them), undefined
    values as "–" (Streamlit shows NaN as "None")."""
    def text(v: Any) -> str:
        return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}".replace("-", "−")

    return table.map(text)


def baselines_beating(frame: pd.DataFrame, *, metric: str = "pearson_delta") -> list[str]:
    """Baselines whose mean ``metric`` is higher than LazyNet's on ``frame`` (pass ONE set's rows).

    The ``observed`` noise-ceiling rows are not a method and never count.
    """
    data = frame[frame["metric"] == metric]
    data = data[(data["perturbation"] != "ALL") & (data["method"] != "observed")]
    means = data.groupby("method")["value"].mean()
    if "lazynet" not in means or not np.isfinite(means["lazynet"]):
        return []
    return [
        METHOD_LABELS.get(m, m)
        for m, v in means.items()
        if m != "lazynet" and np.isfinite(v) and v > means["lazynet"]
    ]


def perturbed_targets(pairs: Any) -> set[str]:
    """Genes targeted by at least one perturbation of the screen."""
    genes = np.asarray(pairs.genes, dtype=str)
    return {str(genes[t]) for targets in pairs.pert_targets for t in np.asarray(targets, dtype=int)}


def measured_scale(effects: pd.DataFrame) -> float | None:
    """95th percentile of a perturbation's observed |Δ| over its non-target genes.

    Parameters
    ----------
    effects
        :func:`effects_frame`'s per-gene frame (columns ``observed`` and ``is_target``).

    Returns
    -------
    float or None
        The scale an in-silico response is drawn and judged against; None without any finite value.
    """
    observed = effects.loc[~effects["is_target"].astype(bool), "observed"].abs().dropna()
    return float(observed.quantile(0.95)) if not observed.empty else None


def in_silico_scale_sentence(delta: pd.Series, genes: Sequence[str], effects: pd.DataFrame, *,
                             label: str) -> str | None:
    """How big an in-silico response is beside a measured one, in one sentence (None without data).

    ``delta`` is :func:`in_silico`'s response, ``genes`` the perturbed inputs (left out), ``effects``
    the per-gene frame of perturbation ``label`` (:func:`effects_frame`, columns ``observed`` and
    ``is_target``). Compares the largest predicted |Δ| with the 95th percentile of that perturbation's
    observed |Δ| over its non-target genes, and calls a response under 5 % of it negligible. The
    sentence is Markdown: ``label`` must come escaped (``ui.md``), it is a name from the user's file.

    Parameters
    ----------
    delta
        Predicted Δ per gene.
    genes
        The perturbed input genes.
    effects
        The selected perturbation's per-gene frame.
    label
        The perturbation's name, Markdown-escaped.

    Returns
    -------
    str or None
        One or two sentences; None where either side has no finite value.
    """
    response = delta.drop(index=[g for g in genes if g in delta.index]).abs()
    scale = measured_scale(effects)
    if response.empty or scale is None or not np.isfinite(response.max()):
        return None
    top = float(response.max())
    text = (f"Largest predicted change (perturbed genes left out): {top:.3g} log units; for scale, 95 % of "
            f"{label}'s measured gene changes are within {scale:.3g}.")
    if scale > 0 and top < 0.05 * scale:
        text += " This response is negligible beside a measured one: the model hardly responds to this input."
    return text


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
    delta = ensemble.intervention_effect(settings)  # the model's drift at the control state cancels
    series = pd.Series(delta, index=np.asarray(ensemble.genes, dtype=str), name="predicted_delta")
    return series.drop(index=list(genes))


# ---- Jacobian -----------------------------------------------------------------------------------
def parse_gene_list(text: str) -> list[str]:
    """Genes from free text (commas, spaces, semicolons or new lines), order kept, de-duplicated."""
    import re

    return list(dict.fromkeys(t for t in re.split(r"[\s,;]+", text or "") if t))


def check_genes_known(genes: Iterable[str], universe: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``genes`` into (known, unknown) with respect to ``universe``, ignoring case.

    Known genes come back spelled as in ``universe`` (``gpx4`` -> ``GPX4``), de-duplicated.
    """
    names = list(map(str, universe))
    exact = set(names)
    upper = {g.upper(): g for g in names}
    known, unknown = [], []
    for g in map(str, genes):
        hit = g if g in exact else upper.get(g.upper())
        (known if hit is not None else unknown).append(hit if hit is not None else g)
    return list(dict.fromkeys(known)), unknown


def never_perturbed_columns(model_config: Any) -> tuple[bool, str]:
    """What a never-perturbed regulator's Jacobian column is under a run's recipe.

    Parameters
    ----------
    model_config
        The run's :class:`lazynet_core.config.ModelConfig`.

    Returns
    -------
    tuple
        ``(observational, cells)``: whether the column is the training cells' regression (the
        covariance and anchored recipes start from it; otherwise it is model extrapolation), and
        which cells that regression reads, in words (empty when not observational).
    """
    if model_config.start != "control_covariance":
        return False, ""
    if model_config.covariance_cells == "pooled":
        return True, ("the control and training perturbed cells' regression "
                      "(each group centred on its own mean)")
    return True, "the control cells' regression"


def slope_agreement_sentence(agreement: Any, measured: dict[str, dict[str, float]] | None = None) -> str:
    """One sentence for the Train page: does this screen's co-variation still gain from more cells?

    Parameters
    ----------
    agreement
        An :class:`lazynet_core.observational.SlopeAgreement` of the screen.
    measured
        ``recipe_results.pooling_measured()``: the benchmark screens' agreement and what pooling
        gained there, quoted beside this screen's figure (left out when None).

    Returns
    -------
    str
        The split-half agreement, how the perturbed cells compare, and the measured screens.
    """
    r, r_pert = agreement.controls_vs_controls, agreement.controls_vs_perturbed
    if not np.isfinite(r):
        return ("Too few training control cells (or genes that vary among them) to tell how reproducible "
                "their co-variation is, which is what every covariance recipe reads for unseen targets.")
    text = (f"**Co-variation on this screen:** regression slopes from two halves of the training controls "
            f"({agreement.n_half:,} cells each) agree with median r = {_signed(r, '.2f')}")
    if np.isfinite(r_pert):
        text += f" (half the controls against as many perturbed cells: {_signed(r_pert, '.2f')})"
    if r < -0.2:
        text += ": the halves disagree systematically, which noise alone does not do; check the controls."
    elif np.isfinite(r_pert) and r - r_pert > 0.3:
        text += (": the perturbed cells co-vary differently from the controls, so adding them "
                 "(anchored_pooled) would change the slopes; whether for the better was not measured on "
                 "such a screen.")
    elif r >= 0.7:
        text += (": largely reproducible already, so adding the perturbed cells (anchored_pooled) should "
                 "change little.")
    elif r <= 0.2:
        text += (": mostly noise at this many cells, where adding the perturbed cells (anchored_pooled) "
                 "helped most.")
    else:
        text += "."
    if measured:
        names = {"real": "real TAP-seq", "demo": "demo", "hill": "Hill"}
        quoted = "; ".join(
            f"{names[k]} (r {v['r']:.2f}) {_signed(v['gain'], '+.3f')}, p = {_signed(v['p'], '.2g')}"
            for k, v in measured.items())
        text += f" Benchmarks, pooled minus control covariance on unseen targets: {quoted}."
    return text


def _signed(value: float, spec: str) -> str:
    """``value`` formatted with a typographic minus."""
    return format(value, spec).replace("-", "−")


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


def heatmap_csv(values: Any, genes: Sequence[str], order: Sequence[int], label: str = "J") -> bytes:
    """CSV of a gene × gene matrix in the heatmap's order: rows = target, columns = source.

    The first cell names the orientation (``"<label>: target \\ source"``).
    """
    idx = np.asarray(order, dtype=int)
    names = np.asarray(genes, dtype=str)[idx]
    mat = np.asarray(values, dtype=float)[np.ix_(idx, idx)]
    frame = pd.DataFrame(mat, index=pd.Index(names, name=f"{label}: target \\ source"), columns=names)
    return frame.to_csv().encode("utf-8")


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


def perturbed_genes(pairs: Any, *, limit: int = 6) -> list[str]:
    """The screen's perturbed target genes, most cells first (at most ``limit``; ties by name).

    The fallback seeds of a panel that holds none of a module's genes (e.g. a 72-gene TAP-seq panel).

    Parameters
    ----------
    pairs
        The screen's :class:`lazynet_core.pairs.Pairs`.
    limit
        Most genes returned.

    Returns
    -------
    list of str
        Target genes, by their perturbations' total cells (every role), descending.
    """
    cells = np.bincount(np.asarray(pairs.cell_pert)[np.asarray(pairs.cell_pert) >= 0],
                        minlength=len(pairs.perturbations))
    count: dict[str, int] = {}
    for p, targets in enumerate(pairs.pert_targets):
        for t in np.asarray(targets).tolist():
            gene = str(pairs.genes[t])
            count[gene] = count.get(gene, 0) + int(cells[p])
    return sorted(count, key=lambda g: (-count[g], g))[:limit]


def module_gene_counts(genes: Iterable[str]) -> dict[str, int]:
    """How many of each module's genes are among ``genes`` (the model's), by module name.

    Parameters
    ----------
    genes
        The model's genes (matched ignoring case, as :func:`check_genes_known`).

    Returns
    -------
    dict
        Module key of :func:`module_choices` -> number of its curated genes that are modelled.
    """
    from lazynet_core.modules import module_genes

    universe = list(map(str, genes))
    return {m: len(check_genes_known(module_genes(m), universe)[0]) for m in module_choices()}


NETWORK_DEFAULTS: dict[str, Any] = {
    "breadth": 4,
    "depth": 2,
    "min_abs": 0.0,
    "noise": 2.0,
    "direction": "out",
    "model_only": False,
    "layout": "force",
    "max_nodes": 60,
}
# URL parameter of each network setting (the module lives in ``genes=module:<name>``).
NETWORK_URL = {
    "seeds": "seeds",
    "breadth": "breadth",
    "depth": "depth",
    "min_abs": "min_j",
    "noise": "noise",
    "direction": "dir",
    "model_only": "model_only",
    "layout": "layout",
    "max_nodes": "max_genes",
}
DIRECTIONS = ("out", "in", "both")


def network_view_from_query(query: Any, default_seeds: Sequence[str]) -> dict[str, Any]:
    """Network settings from URL parameters (``NETWORK_URL`` names); bad or missing values -> defaults."""
    view = dict(NETWORK_DEFAULTS, seeds=list(default_seeds))
    casts = {"breadth": int, "depth": int, "max_nodes": int, "min_abs": float, "noise": float}
    for key, name in NETWORK_URL.items():
        raw = query.get(name)
        if raw in (None, ""):
            continue
        try:
            if key == "seeds":
                view[key] = [g for g in str(raw).split(",") if g]
            elif key == "model_only":
                view[key] = str(raw).lower() in ("1", "true", "yes")
            elif key in casts:
                view[key] = casts[key](raw)
            elif key == "direction" and raw in DIRECTIONS or key == "layout" and raw in ("force", "layered"):
                view[key] = str(raw)
        except ValueError:
            continue
    return view


def network_view_to_query(view: dict[str, Any]) -> dict[str, str]:
    """URL parameters of network settings (inverse of :func:`network_view_from_query`)."""
    out = {}
    for key, name in NETWORK_URL.items():
        value = view.get(key)
        if key == "seeds":
            out[name] = ",".join(value or [])
        elif key == "model_only":
            out[name] = "1" if value else "0"
        else:
            out[name] = str(value)
    return out


def subgraph(
    provider: Any,
    seeds: Sequence[str],
    *,
    breadth: int,
    depth: int,
    min_abs: float,
    direction: str = "out",
    evidence: Any = None,
    include_model_only: bool = False,
    max_nodes: int | None = None,
) -> nx.DiGraph:
    """Seed subgraph (``network.expand_from_seeds``) from an on-demand Jacobian provider.

    With ``evidence`` (an :class:`lazynet_core.evidence.EdgeEvidence`), expansion follows only edges
    above replica noise and, unless ``include_model_only``, supported by the screen
    (:class:`~lazynet_core.evidence.SupportedProvider`); the returned graph is annotated
    (``evidence`` on every edge, ``perturbed`` on every node).
    """
    from lazynet_core.network import expand_from_seeds

    if not seeds:
        msg = "Choose at least one seed gene."
        raise ScreenError(msg)
    if evidence is not None:
        from lazynet_core.evidence import SupportedProvider

        provider = SupportedProvider(provider, evidence, include_model_only=include_model_only)
    G = expand_from_seeds(
        provider,
        list(seeds),
        breadth=int(breadth),
        depth=int(depth),
        min_abs=float(min_abs),
        direction=direction,
        max_nodes=None if max_nodes is None else int(max_nodes),
    )
    return G if evidence is None else evidence.annotate(G)


def edge_table(G: nx.DiGraph) -> pd.DataFrame:
    """Edges of ``G`` (``network.edges_frame``: J, replica agreement and sd, the screen's evidence)
    with the curated modules of source and target (``source_module``, ``target_module``)."""
    from lazynet_core.modules import gene_module_map
    from lazynet_core.network import edges_frame

    frame = edges_frame(G)
    modules = gene_module_map()
    frame["source_module"] = frame["source"].map(modules).fillna("")
    frame["target_module"] = frame["target"].map(modules).fillna("")
    return frame


def evidence_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Edges per evidence word, in ``evidence.EVIDENCE`` order (all four words, zeros included)."""
    from lazynet_core.evidence import EVIDENCE

    counts = frame["evidence"].value_counts() if "evidence" in frame else pd.Series(dtype=int)
    return {word: int(counts.get(word, 0)) for word in EVIDENCE}


def never_perturbed_nodes(G: nx.DiGraph) -> list[str]:
    """Nodes of an annotated graph that the screen never perturbed alone (``perturbed == "never"``)."""
    return [str(g) for g, kind in G.nodes(data="perturbed") if kind == "never"]


def edges_csv(G: nx.DiGraph) -> bytes:
    """CSV bytes (``export.edges_csv_bytes``): J, agreement, level, modules and the evidence columns."""
    from lazynet_core.export import edges_csv_bytes

    return edges_csv_bytes(G)


def graphml_bytes(G: nx.DiGraph) -> bytes:
    """GraphML (Cytoscape-readable, ``export.write_graphml``) with every edge and node attribute."""
    import io

    from lazynet_core.export import write_graphml

    buffer = io.BytesIO()
    write_graphml(G, buffer)
    return buffer.getvalue()


def network_figures(
    G: nx.DiGraph, *, curated: Iterable[str], layout: str = "force", font_size: int = 18, title: str = ""
) -> dict[str, Any]:
    """The network's interactive HTML and static SVG / PNG, all from one layout.

    Returns ``{"html": str, "svg": str, "png": bytes, "nodes": DataFrame, "positions": DataFrame}``.
    """
    from lazynet_core import plotting

    edges = edge_table(G)
    seeds = list(G.graph.get("seeds", [g for g, s in G.nodes(data="is_seed") if s]))
    never = never_perturbed_nodes(G)
    levels = {str(g): int(lvl) for g, lvl in G.nodes(data="level") if lvl is not None}
    nodes = plotting.network_nodes(edges, seeds=seeds, curated=curated, never_perturbed=never, levels=levels)
    positions = plotting.network_layout(edges, nodes, kind=layout)
    common = {"title": title, "font_size": font_size}
    return {
        "html": plotting.network_html(edges, seeds=seeds, curated=curated, never_perturbed=never,
                                      positions=positions, font_size=font_size),
        "svg": plotting.network_svg(edges, nodes, positions, **common),
        "png": plotting.network_png(edges, nodes, positions, **common),
        "nodes": nodes,
        "positions": positions,
    }


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


def _read_uns_entry(source: str, key: str) -> dict[str, Any] | None:
    """``uns[key]`` of an ``.h5ad`` file as a dict, read without loading ``X``; ``None`` when the file
    has none, cannot be read or the entry is not a mapping."""
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(source, "r") as handle:
            if "uns" not in handle or key not in handle["uns"]:
                return None
            return dict(read_elem(handle["uns"][key]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_planted_network(source: str) -> dict[str, np.ndarray] | None:
    """``uns["planted_network"]`` of an ``.h5ad`` file (synthetic screens), read without loading ``X``.

    ``read_screen`` returns a new AnnData without the input's ``uns``, so the truth is read from
    the file itself; ``None`` when the file has none (real screens) or cannot be read.
    """
    return _read_uns_entry(source, "planted_network")


def read_synthetic_kind(source: str) -> str | None:
    """``uns["synthetic"]["kind"]`` of an ``.h5ad`` file (``"log-linear"``, ``"hill"``), else ``None``."""
    kind = (_read_uns_entry(source, "synthetic") or {}).get("kind")
    return None if kind is None else str(kind)


ORACLE_SETS = ("held_out_perturbations", "validation_perturbations")


def planted_oracle(
    evaluation: pd.DataFrame, pairs: Any, network: dict[str, Any], *, reference: str = "independent"
) -> dict[str, dict[str, float]]:
    """The planted network's effect of each never-trained target, scored like LazyNet.

    An oracle, not a method: it knows the network (``datasets.network_total_effects``: each target's
    row of (I − W)⁻¹ times its measured knock-down, log-mean space), which no predictor is given. Scored
    with ``metrics.delta_metrics`` against the same ``reference`` as ``evaluation``; leaf targets
    (no downstream gene, so no predicted change) are counted, not scored.

    Parameters
    ----------
    evaluation
        ``evaluation_frame`` of the run (LazyNet and control covariance are read from it).
    pairs
        The run's pairs.
    network
        ``uns["planted_network"]`` of a log-linear synthetic screen.
    reference
        Control reference of the observed deltas, as in ``evaluation``.

    Returns
    -------
    dict
        Per set of ``ORACLE_SETS`` present: ``oracle``, ``lazynet``, ``control_covariance``,
        ``pooled_covariance`` (mean Δ-Pearson over the same scored targets; NaN where the evaluation
        lacks the method), ``n`` (scored) and ``leaves``.
    """
    from lazynet_core.datasets import network_total_effects
    from lazynet_core.metrics import delta_metrics, reference_mean

    total = network_total_effects(network, genes=[str(g) for g in pairs.genes])
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    ref = reference_mean(pairs, reference)
    index = {str(label): p for p, label in enumerate(pairs.perturbations)}
    rows = evaluation[(evaluation["metric"] == "pearson_delta") & evaluation["set"].isin(ORACLE_SETS)
                      & evaluation["method"].isin(["lazynet", "control_covariance", "pooled_covariance"])]
    out: dict[str, dict[str, float]] = {}
    for (set_name, role), sub in rows.groupby(["set", "role"], sort=False):
        scored: dict[str, float] = {}
        leaves = 0
        for label in sub["perturbation"].unique():
            p = index.get(str(label))
            if p is None or len(pairs.pert_targets[p]) != 1:
                continue
            u = int(pairs.pert_targets[p][0])
            pre = np.asarray(pairs.pre_state(p, str(role)), dtype=np.float64)
            predicted = (pre[u] - base[u]) * total[u]
            if np.abs(np.delete(predicted, u)).max() <= 1e-12 * max(abs(pre[u] - base[u]), 1e-12):
                leaves += 1  # no measured gene downstream of u
                continue
            observed = np.asarray(pairs.pert_mean(p, str(role)), dtype=np.float64) - ref
            score = delta_metrics(predicted, observed, exclude=np.array([u]))["pearson_delta"]
            if np.isfinite(score):
                scored[str(label)] = score
        if not scored:
            continue
        values = sub[sub["perturbation"].isin(list(scored))].assign(
            value=lambda f: pd.to_numeric(f["value"], errors="coerce"))
        means = values.groupby("method")["value"].mean()
        out[str(set_name)] = {
            "oracle": float(np.mean(list(scored.values()))),
            "lazynet": float(means.get("lazynet", np.nan)),
            "control_covariance": float(means.get("control_covariance", np.nan)),
            "pooled_covariance": float(means.get("pooled_covariance", np.nan)),
            "n": len(scored),
            "leaves": leaves,
        }
    return out


def oracle_sentence(scores: dict[str, float]) -> str:
    """One caption for the Effects page: the oracle's headroom next to LazyNet and control covariance."""
    leaves = int(scores["leaves"])
    plural = "s" if leaves != 1 else ""
    leaf_note = f" ({leaves} leaf target{plural}, no measured downstream gene, left out)" if leaves else ""
    pooled_score = scores.get("pooled_covariance", np.nan)
    pooled = (f" and pooled covariance (controls + training perturbed cells) {pooled_score:.3f}"
              if np.isfinite(pooled_score) else "")
    return (
        f"**Planted-network oracle** (synthetic screen only): the true network's effect of each target, "
        f"times its measured knock-down, reaches Δ-Pearson {scores['oracle']:.3f} on the "
        f"{int(scores['n'])} targets with measured downstream genes{leaf_note}; on the same targets "
        f"LazyNet scores {scores['lazynet']:.3f}, control covariance {scores['control_covariance']:.3f}"
        f"{pooled}. It is given the true network, which no predictor is: a reference for the headroom, not "
        "an upper bound. More cells close only part of the gap for the covariance predictors "
        "(`benchmarks/unseen_targets.py --demo-controls`)."
    )


def planted_recovery_table(ensemble: Any, pairs: Any, truth: Any, full_jacobian: Any) -> pd.DataFrame | None:
    """AUROC / AUPRC against the planted network (synthetic screens only), next to baselines.

    Baselines see only training cells: fold change (regulator perturbed), |correlation| among
    training controls, the same over controls and trained perturbations' cells each centred on its
    group's mean (pooled; what the ``anchored_pooled`` start reads; left out on pairs streamed from
    disk), and the regulator's mean control expression. ``None`` when the screen has no planted
    network.
    """
    from lazynet_core.enrichment import (
        correlation_scores,
        fold_change_scores,
        recovery_table,
        regulator_expression_scores,
    )
    from lazynet_core.errors import ScreenError
    from lazynet_core.metrics import centred_training_cells

    if truth is None:
        return None
    genes = list(np.asarray(pairs.genes, dtype=str))
    control = np.asarray(pairs.control_mean("train"), dtype=float)
    train_means = single_target_means(pairs, role="train")
    frames = {
        "LazyNet |J|": full_jacobian.to_frame("mean").reindex(index=genes, columns=genes),
        "fold change": fold_change_scores(control, train_means, genes),
        "|correlation| (controls)": correlation_scores(pairs.X[pairs.cells(-1, "train")], genes),
    }
    try:
        pooled = centred_training_cells(pairs, cells="pooled")
        frames["|correlation| (pooled)"] = correlation_scores(pooled, genes)
    except ScreenError:
        pass  # streamed pairs hold no perturbed rows
    frames["regulator expression"] = regulator_expression_scores(control, genes)
    truth_frame = pd.DataFrame({k: np.asarray(v) for k, v in dict(truth).items()})
    return recovery_table(frames, truth_frame, list(train_means))


def time_budget_cut(ensemble: Any) -> str | None:
    """``"after 7 of 40 epochs"`` when the time budget stopped training early, else None.

    The same words as a finished job's status (:func:`lazynet_core.jobs.budget_cut`).
    """
    from lazynet_core.jobs import budget_cut

    return budget_cut(ensemble)


def interaction_measured_sentence(measured: dict[str, float] | None) -> str | None:
    """The Effects page's caption on what the benchmarks measured for interactions
    (``recipe_results.interaction_measured``), or None when they are not at hand."""
    if measured is None:
        return None
    m = {k: f"{v:.2f}" for k, v in measured.items()}
    return (
        "Measured on Hill screens with planted redundant regulators (benchmarks/combinations.py "
        f"--redundant, 60 doubles, noise ceiling {m['ceiling']}): the published recipe's predicted "
        f"interaction correlates {m['published']} with the observed one, its dose-only null "
        f"{m['published_null']}; anchored_counts {m['counts']} (its log-space null {m['counts_log_null']}), "
        f"all of it because its output adds the arms in counts (its count-space null {m['counts_null']}); "
        f"the count-space sum of the arms, no model, {m['additive_counts']}. The simulator's own "
        f"dynamics, solved without noise (an oracle: it knows the network), score {m['oracle']}, and "
        f"its own arms added in counts {m['oracle_counts_null']}: in these doubles' dynamics the "
        "interaction is count-space addition. LazyNet predicts combinations as additive in log space "
        "unless its output adds in counts."
        + (f"\n\nWhere the hubs need both arms (AND gates, --gate and), the double is the product of its "
           f"arms' fold changes, which log expression with its pseudo-count of 1 reads as an interaction at "
           f"genes of few counts: the arms' folds multiplied, no model, score {m['and_multiplicative']}, the "
           f"oracle {m['and_oracle']} (its log-space null {m['and_oracle_null']}); the published recipe "
           f"learns a little of it ({measured['and_published']:.3f} against its null "
           f"{measured['and_published_null']:.3f})"
           + (f", anchored_folds, whose output multiplies folds, {m['and_folds']}, all of it from that "
              f"output form (its folds-multiplied null {m['and_folds_null']}); no recipe beats the arms' "
              "folds multiplied" if "and_folds" in m else "")
           + "." if "and_oracle" in m else "")
        + (f"\n\nWhere either arm keeps the hub on (backup hubs, --gate backup) the double's interaction is "
           f"neither the sum nor the product of its arms: the oracle scores {m['backup_oracle']} (its own "
           f"arms added in counts {m['backup_oracle_counts_null']}) against "
           f"{m['backup_additive_counts']} for the observed arms' count sum, no model; anchored_counts "
           f"(on half of these doubles) "
           f"{m['backup_counts']}, level with its count-space null {m['backup_counts_null']}, and with the "
           f"other doubles trained {measured['backup_trained_excess']:+.3f} from it: LazyNet does not "
           "learn this interaction." if "backup_oracle" in m else "")
    )
