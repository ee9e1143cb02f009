"""Effects page: predicted vs observed effects per perturbation, metrics beside baselines, in-silico."""

import pandas as pd
import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.ui import loaders, services

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

table = services.perturbation_table(pairs)
c1, c2 = st.columns([1, 3])
modality = c1.radio(
    "Modality", ["all", *sorted(table["modality"].unique())], horizontal=True, key="eff_modality"
)
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

frame = services.effects_frame(ens, pairs, int(row["index"]), row["role"])
evaluation = None
with ui.user_errors("Could not evaluate this run"):
    evaluation = loaders.run_evaluation(row["role"])
left, right = st.columns([3, 2], gap="large")
with left:
    where = "held-out cells" if row["role"] == "test" else "training cells (fit, not prediction)"
    fig = plotting.effects_scatter(frame, title=f"{pert} ({row['modality']}): Δ vs control, {where}")
    ui.plot(fig, f"effects_{pert}", key="effects_fig")
    st.download_button(
        "Download figure (HTML)",
        plotting.figure_html(fig),
        f"effects_{pert}.html",
        "text/html",
        icon=":material/download:",
        key="dl_effects",
    )
with right:
    if evaluation is not None:
        per = services.method_table(evaluation, perturbation=pert)
        if not per.empty:
            lazy = per.iloc[:, 0].get("LazyNet")
            others = per.iloc[:, 0].drop(index="LazyNet", errors="ignore").dropna()
            m1, m2 = st.columns(2)
            m1.metric("LazyNet Δ-Pearson", "n/a" if lazy is None or pd.isna(lazy) else f"{lazy:.2f}")
            if len(others):
                gap = None if lazy is None or pd.isna(lazy) else f"{lazy - others.max():+.2f} LazyNet vs best"
                m2.metric("Best baseline", f"{others.max():.2f}", delta=gap, help=f"{others.idxmax()}")
            short = per.iloc[:, :2].set_axis(["Δ-r, all genes", "Δ-r, top-20 DE"], axis=1)
            st.dataframe(services.format_table(short), width="stretch")
    st.caption(
        "Δ = mean log expression − training control mean; the target gene(s) are excluded from every "
        "metric (their level is the model's input). The identity baseline predicts no change, so its "
        "Δ-Pearson is undefined (–)."
    )

st.subheader("Overall, next to the baselines")
SETS = [
    ("test", "perturbations", "Held-out perturbations (targets never trained on)"),
    ("test", "cells", "Held-out cells (perturbation seen in training)"),
    ("train", None, "Training fit"),
]
tabs = st.tabs([title for _, _, title in SETS])
for tab, (role, split, _) in zip(tabs, SETS, strict=True):
    with tab, ui.user_errors("Could not evaluate this run"):
        frame_all = loaders.run_evaluation(role)
        if split is not None:
            frame_all = frame_all[frame_all["split"] == split]
        if frame_all.empty:
            st.info("This run has no perturbations in this held-out set.", icon=":material/info:")
            continue
        n_perts = frame_all.loc[frame_all["perturbation"] != "ALL", "perturbation"].nunique()
        st.caption(f"Mean over {n_perts} perturbations.")
        st.dataframe(services.format_table(services.method_table(frame_all), 3), width="stretch")
        beating = services.baselines_beating(frame_all)
        if beating:
            st.warning(
                f"On this set these baselines beat LazyNet in mean Δ-Pearson: {', '.join(beating)}.",
                icon=":material/balance:",
            )
        else:
            st.success(
                "LazyNet has the highest mean Δ-Pearson of all methods on this set.",
                icon=":material/emoji_events:",
            )
st.caption(
    "The per-perturbation mean of training cells is the noise ceiling on held-out cells and undefined (–) "
    "for held-out perturbations. The training fit shows what the model learned, not what it predicts."
)

st.subheader("In-silico perturbation")
perturbed = services.perturbed_targets(pairs)
with st.form("insilico"):
    c1, c2 = st.columns([3, 2])
    genes = c1.multiselect(
        "Genes to perturb (any modelled gene, including never-perturbed ones)",
        ens.genes.tolist(),
        default=[pert.split("+")[0]] if pert.split("+")[0] in ens.genes else [],
    )
    fold = c2.select_slider(
        "Expression level (× control)",
        [0.1, 0.25, 0.5, 0.75, 1.5, 2.0, 4.0, 8.0],
        value=4.0 if row["modality"] == "CRISPRa" else 0.25,
        help="< 1 knocks down (CRISPRi-like), > 1 activates (CRISPRa-like).",
    )
    run_it = st.form_submit_button("Predict response", icon=":material/science:", key="insilico_go")
if run_it or genes:
    with ui.user_errors("Could not predict that perturbation"):
        delta = services.in_silico(ens, genes, fold)
        unseen = [g for g in genes if g not in perturbed]
        if unseen:
            st.info(
                f"Never perturbed in this screen: {', '.join(unseen)}: the prediction extrapolates from "
                "the learned model, with no direct evidence.",
                icon=":material/explore:",
            )
        fig = plotting.in_silico_bars(delta, title=f"{' + '.join(genes)} at {fold}× control: predicted Δ")
        ui.plot(fig, "in_silico", key="insilico_fig")
        st.download_button(
            "Download response (CSV)",
            pd.DataFrame({"gene": delta.index, "predicted_delta": delta.values}).to_csv(index=False),
            "in_silico.csv",
            "text/csv",
            key="dl_insilico",
        )
