"""Effects page: the paired headline against the best baseline, per-perturbation effects, in-silico."""

import pandas as pd
import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.text import display_name
from lazynet_core.ui import loaders, recipe_results, services
from lazynet_core.ui.layout import md

ui.frame_guard("pages/3_Effects.py")
ui.page_header(
    "Effects", "How well does the model predict each perturbation's effect? Always next to baselines."
)
adata, ens = ui.need(screen=True, run=True)
pairs = None
with ui.user_errors("This run does not fit the loaded screen"):
    pairs = ui.current_pairs(ens)
if pairs is None:
    st.stop()

IR_HELP = (
    "Correlation between LazyNet's predicted change and its prediction with the target left at its "
    "control level. ≈ 1 means the prediction ignores the target: the model predicts the same "
    "change whatever was perturbed. 0 for the anchored recipe, whose prediction at the control "
    "state is no change at all: all of its prediction comes from the target."
)
CEILING_HELP = (
    "Split-half noise ceiling: the Δ-Pearson a perfect predictor would reach given how noisy the "
    "observed effect is (two disjoint halves of the cells, Spearman–Brown corrected). For a set, the "
    "halves' correlations of all its perturbations are averaged first and corrected once: averaging "
    "only the perturbations whose halves agree would show headroom that pure noise also has."
)
SLOPE_HELP = (
    "Least-squares slope of predicted on observed Δ: 1 = effects of the right size, 0.1 = ten times "
    "too small."
)


def fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


reference = services.reference_for(pairs)
if reference == "training":
    with ui.user_errors("This run has no independent control reference"):
        services.require_independent_reference(pairs)
    st.warning(
        "**Flattering reference.** The figures below score observed effects against the *training* "
        "control mean, whose sampling noise is shared with every prediction, so every method (even the "
        "null baseline) looks better than it is. Retrain this run to get the independent reference.",
        icon=":material/warning:",
    )

evaluation = oracle = None
with ui.user_errors("Could not evaluate this run"), st.spinner(
        "Scoring the held-out perturbations against every baseline (once per run)…"):
    evaluation = loaders.run_evaluation(reference)
if evaluation is not None:
    with ui.user_errors("Could not score the planted network's oracle"):
        oracle = loaders.run_planted_oracle(reference)

# ---- overall: the paired headline per held-out set ---------------------------------------------
st.subheader("Overall, next to the baselines")
st.caption(
    f"Observed Δ = mean of the evaluated cells − {services.REFERENCE_LABELS[reference]}; predicted Δ = "
    "prediction − training control mean. Target genes are left out of every metric (their level is "
    "the model's input). Each set is scored on its own; sets are never pooled."
)
if evaluation is not None:
    sets = services.sets_in(evaluation)
    if not sets:
        st.info("This run has no held-out perturbations or cells to score.", icon=":material/info:")
    counts = {s: services.set_summary(evaluation[evaluation["set"] == s])["n"] for s in sets}
    words = services.SET_SHORT_LABELS if st.session_state.get("presentation") else services.SET_LABELS
    tabs = st.tabs([f"{words.get(s, s)} · {counts[s]}" for s in sets])
    for tab, set_name in zip(tabs, sets, strict=True):
        with tab:
            sub = evaluation[evaluation["set"] == set_name]
            head = services.headline(sub, set_name)
            summary = services.set_summary(sub)
            if head is not None:
                if head["verdict"] == "ahead":
                    st.success(head["message"], icon=":material/trending_up:")
                elif head["verdict"] == "behind":
                    st.warning(head["message"], icon=":material/trending_down:")
                else:
                    st.info(head["message"], icon=":material/balance:")
            cols = st.columns(5)
            cols[0].metric("LazyNet Δ-Pearson", fmt(summary["pearson_delta"], 3),
                           help=f"Mean over {summary['n']} perturbations.")
            if head is not None and head.get("baseline"):
                cols[1].metric(
                    "Best baseline",
                    fmt(head["baseline_mean"], 3),
                    help=f"{head['baseline_label']}: its mean over the perturbations it can predict; the "
                    f"paired comparison above uses the {head.get('n', 0)} that both predict.",
                )
            else:
                cols[1].metric("Best baseline", "n/a")
            cols[2].metric("Noise ceiling", fmt(summary["ceiling"], 3), help=CEILING_HELP)
            cols[3].metric("Slope", fmt(summary["slope"], 3), help=SLOPE_HELP)
            cols[4].metric("Intervention response", fmt(summary["intervention_response"], 3), help=IR_HELP)
            response = summary["intervention_response"]
            if pd.notna(response) and response > 0.9:
                st.caption(
                    f"Intervention response {response:.2f} ≈ 1: on this set LazyNet's "
                    "prediction hardly depends on which gene was perturbed (its target-specific part is "
                    f"{fmt(summary['specific_fraction'], 2)} of the predicted change)."
                )
            if oracle and set_name in oracle:
                st.caption(services.oracle_sentence(oracle[set_name]))
            ui.small_table(services.format_table(services.method_table(sub), 3))
            beating = services.baselines_beating(sub)
            if beating:
                beaten_by = md("; ".join(beating), max_len=400)
                st.caption(f"Higher mean Δ-Pearson than LazyNet on this set: {beaten_by}.")
st.caption(
    "The noise ceiling is what a perfect predictor could reach given the noise in the observed effects. "
    "The own training-cell mean is a baseline (held-out cells only), not a ceiling. The identity "
    "baseline predicts no change, so its Δ-Pearson is undefined (–). Control covariance predicts each "
    "gene's change from its covariance with the target among training control cells; pooled covariance "
    "does the same over the control and training perturbed cells, each group centred on its own mean."
)

# ---- one perturbation ---------------------------------------------------------------------------
st.subheader("One perturbation, gene by gene")
table = services.perturbation_table(pairs)
c1, c2, c3 = st.columns([1.4, 2.4, 1.6])
modalities = ["all", *sorted(table["modality"].unique())]
wanted_modality = ui.query_get("eff_modality")
if len(modalities) > 2:
    modality = c1.radio(
        "Modality", modalities, horizontal=True, key="eff_modality",
        index=modalities.index(wanted_modality) if wanted_modality in modalities else 0,
        format_func=md,  # radio options render Markdown
    )
    ui.query_set("eff_modality", None if modality == "all" else modality)
else:  # one modality: nothing to filter
    modality = "all"
    c1.markdown(f"**Modality**  \n{md(modalities[-1]) if len(modalities) == 2 else '–'}")
shown = table if modality == "all" else table[table["modality"] == modality]
options = shown["perturbation"].tolist()
wanted = st.session_state.get("perturbation") or ui.query_get("perturbation")
default = options.index(wanted) if wanted in options else 0
labels = dict(zip(shown["perturbation"], shown["label"], strict=True))
pert = c2.selectbox(
    "Perturbation (type to search)", options, index=default, format_func=labels.get, key="eff_pert"
)
st.session_state["perturbation"] = pert
ui.query_set("perturbation", pert)
row = table[table["perturbation"] == pert].iloc[0]
gene_names = [str(g) for g in pairs.genes]
wanted_gene = ui.query_get("eff_gene")
gene = c3.selectbox(
    "Find a gene (ringed in the scatter)",
    gene_names,
    index=gene_names.index(wanted_gene) if wanted_gene in gene_names else None,
    placeholder="type a gene name…",
    format_func=display_name,
    key="eff_gene",
)
ui.query_set("eff_gene", gene)  # a shared link rings the same gene

frame = None
with ui.user_errors("Could not compute this perturbation's effects"):
    frame = loaders.run_effects(int(row["index"]), row["role"], reference)
if frame is None:
    st.stop()

per = services.method_table(evaluation, perturbation=pert) if evaluation is not None else pd.DataFrame()
if per.empty:
    st.info(
        "This perturbation has no held-out cells, so it has no scores: the scatter shows the training "
        "fit, not a prediction.",
        icon=":material/info:",
    )
else:
    one = services.set_summary(evaluation, perturbation=pert)
    others = per.iloc[:, 0].drop(index="LazyNet", errors="ignore").dropna()
    m = st.columns(5)
    m[0].metric("LazyNet Δ-Pearson", fmt(one["pearson_delta"], 3), help="Non-target genes.")
    m[1].metric("Noise ceiling", fmt(one["ceiling"], 3), help=CEILING_HELP)
    best = str(others.idxmax()) if len(others) else None
    m[2].metric("Best baseline", fmt(others.max(), 3) if best else "n/a", help=best)
    m[3].metric("Slope", fmt(one["slope"], 3), help=SLOPE_HELP)
    m[4].metric("Intervention response", fmt(one["intervention_response"], 3), help=IR_HELP)
    notes = []
    if best:
        notes.append(f"Best baseline on this perturbation: {best}.")
    notes.append("Intervention response ≈ 1 means the prediction ignores the target.")
    if pd.isna(one["ceiling"]):
        notes.append(
            "Noise ceiling n/a: two halves of this perturbation's cells do not reproduce its effect "
            "(split-half reliability ≤ 0), so its observed Δ is mostly noise and no method can be judged "
            "on it."
        )
    else:
        notes.append("The noise ceiling bounds Δ-Pearson for this perturbation's cell numbers.")
    st.caption(" ".join(notes))
if st.session_state.get("presentation"):  # large fonts need the full width: scatter, then its table
    left, right = st.container(), st.container()
else:
    left, right = st.columns([1.1, 1], gap="medium")
with left:
    where = {
        "held_out_perturbations": "held-out perturbation",
        "validation_perturbations": "validation perturbation",
        "combinations": "held-out combination",
        "held_out_cells": "held-out cells",
    }.get(row["set"], "training cells (fit, not prediction)")
    fig = plotting.effects_scatter(frame, title=f"{pert} ({row['modality']}), {where}", highlight=gene)
    stem = services.safe_filename(f"effects_{pert}")
    ui.plot(fig, stem, key="effects_fig", square=True)
    st.download_button(
        "Download figure (HTML)",
        plotting.figure_html(fig),
        f"{stem}.html",
        "text/html",
        icon=":material/download:",
        key="dl_effects",
    )
with right:
    if not per.empty:
        st.markdown("**This perturbation, every method**")
        short = per[[c for c in per.columns if c.startswith(("Δ-Pearson", "slope"))]]
        short = short.rename(columns={"Δ-Pearson, top-20 DE": "top-20 DE", "slope (1 = right size)": "slope"})
        ui.small_table(
            services.format_table(short, 3),
            column_config={c: st.column_config.TextColumn(c, width="small") for c in short.columns},
        )

if row["set"] == "combinations":
    view = None
    with ui.user_errors("Could not compute this combination's interaction"):
        view = services.interaction_view(ens, pairs, int(row["index"]))
    st.markdown("**Genetic interaction: what the single arms do not explain**")
    if view is None:
        st.caption(
            "Not scored: an interaction needs held-out cells of every single arm of this combination, "
            "and at least one arm has none (or was never trained on)."
        )
    else:
        arms = " + ".join(md(a) for a in view["arms"])
        st.caption(
            f"Interaction = Δ({md(pert)}) − Σ Δ(single arm), arms {arms}. Observed: held-out cells of the "
            "combination and of each arm, against the independent control reference (none reached "
            "training). Predicted: LazyNet's own predictions for the combination and its arms. The additive "
            "model predicts no interaction (0 everywhere); the stricter reference is LazyNet's own "
            "dose-only null, which scores the knock-down levels alone."
        )
        m = st.columns(5)
        m[0].metric("Interaction Pearson", fmt(view["pearson_interaction"], 3),
                    help="Pearson r of predicted vs observed interaction over non-target genes.")
        m[1].metric("Interaction explained", fmt(view["interaction_explained"], 3),
                    help="1 − ‖observed − predicted‖² / ‖observed‖²: 0 for the additive model, below 0 for "
                    "an interaction that is not there.")
        m[2].metric("Noise ceiling", fmt(view["ceiling"], 3),
                    help="Split-half ceiling of the interaction Pearson; n/a when two halves of the cells "
                    "do not reproduce the observed interaction (it is then mostly noise).")
        m[3].metric("Count-space additive", fmt(view["counts_pearson"], 3),
                    help="Baseline: the arms' changes added in counts rather than in log space, which "
                    "predicts an interaction for redundant regulators. Its interaction Pearson; n/a "
                    "when an arm has no training cells (it was held out as an unseen target).")
        m[4].metric("Dose-only null", fmt(view["dose_only_pearson"], 3),
                    help="LazyNet's own arms, each alone at its knock-down level in the combination's "
                    "cells, added: no interaction by construction, yet not 0 when the knock-downs differ. "
                    "LazyNet's interaction counts as learned only where it beats this.")
        st.caption(view["verdict"])
        fig = plotting.effects_scatter(view["frame"], title=f"{pert}: predicted vs observed interaction",
                                       highlight=gene, quantity="interaction")
        ui.plot(fig, services.safe_filename(f"interaction_{pert}"), key="interaction_fig", square=True)
        measured = services.interaction_measured_sentence(recipe_results.interaction_measured())
        if measured:
            st.caption(measured)

genes_table = services.gene_table(frame)
delta_cols = [c for c in genes_table.columns if c.endswith(" Δ")]
number_format = {
    **{c: st.column_config.NumberColumn(c, format="%.3f") for c in delta_cols},
    "DE p (Welch)": st.column_config.NumberColumn("DE p (Welch)", format="%.2e"),
    "DE q (BH)": st.column_config.NumberColumn("DE q (BH)", format="%.2e"),
    "gene": st.column_config.TextColumn("gene", pinned=True),  # stays in view while scrolling sideways
}
if gene:
    hit = genes_table[genes_table["gene"] == gene]
    st.dataframe(hit, hide_index=True, width="stretch", column_config=number_format, key="eff_gene_row")
st.dataframe(
    genes_table, hide_index=True, width="stretch", height=360, column_config=number_format, key="eff_genes"
)
st.download_button(
    "Download per-gene table (CSV)",
    genes_table.to_csv(index=False),
    f"{services.safe_filename(f'effects_{pert}')}_genes.csv",
    "text/csv",
    icon=":material/download:",
    key="dl_genes",
)
st.caption(
    "Click a column header to sort. DE: Welch t-test of this perturbation's evaluated cells vs the "
    "reference control cells per gene, Benjamini–Hochberg adjusted over genes."
)

st.subheader("In-silico perturbation")
perturbed = services.perturbed_targets(pairs)
with st.form("insilico"):
    c1, c2 = st.columns([3, 2])
    genes = c1.multiselect(
        "Genes to perturb (any modelled gene, including never-perturbed ones)",
        ens.genes.tolist(),
        default=[pert.split("+")[0]] if pert.split("+")[0] in ens.genes else [],
        format_func=display_name,
    )
    fold = c2.select_slider(
        "Expression level (× control)",
        [0.1, 0.25, 0.5, 0.75, 1.5, 2.0, 4.0, 8.0],
        value=4.0 if row["modality"] == "CRISPRa" else 0.25,
        help="< 1 knocks down (CRISPRi-like), > 1 activates (CRISPRa-like).",
    )
    run_it = st.form_submit_button("Update prediction", icon=":material/science:", key="insilico_go",
                                   help="The genes and level above apply when you press this.")
if run_it or genes:
    with ui.user_errors("Could not predict that perturbation"):
        delta = services.in_silico(ens, genes, fold)
        unseen = [g for g in genes if g not in perturbed]
        if unseen:
            st.info(
                f"Never perturbed in this screen: {', '.join(md(g) for g in unseen)}: the prediction "
                "extrapolates from "
                "the learned model, with no direct evidence.",
                icon=":material/explore:",
            )
        fig = plotting.in_silico_bars(delta, title=f"{' + '.join(genes)} at {fold}× control: predicted Δ",
                                      span=services.measured_scale(frame))  # tiny responses draw tiny
        ui.plot(fig, "in_silico", key="insilico_fig")
        if scale := services.in_silico_scale_sentence(delta, genes, frame, label=md(pert)):  # Markdown-safe
            st.caption(scale)
        st.download_button(
            "Download response (CSV)",
            pd.DataFrame({"gene": delta.index, "predicted_delta": delta.values}).to_csv(index=False),
            "in_silico.csv",
            "text/csv",
            key="dl_insilico",
        )
