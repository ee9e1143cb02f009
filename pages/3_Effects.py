"""Effects page: predicted vs observed effects per perturbation, metrics beside baselines, in-silico."""

import pandas as pd
import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.ui import loaders, services

ui.page_header("Effects", "How well does the model predict each perturbation's effect? Always next to baselines.")
adata, ens = ui.need(screen=True, run=True)
pairs = None
with ui.user_errors("This run does not fit the loaded screen"):
    pairs = ui.current_pairs(ens)
if pairs is None:
    st.stop()

table = services.perturbation_table(pairs)
c1, c2 = st.columns([1, 3])
modality = c1.radio("Modality", ["all", *sorted(table["modality"].unique())], horizontal=True, key="eff_modality")
shown = table if modality == "all" else table[table["modality"] == modality]
options = shown["perturbation"].tolist()
wanted = st.session_state.get("perturbation") or ui.query_get("perturbation")
default = options.index(wanted) if wanted in options else 0
labels = dict(zip(shown["perturbation"], shown["label"], strict=True))
pert = c2.selectbox("Perturbation (type to search)", options, index=default, format_func=labels.get, key="eff_pert")
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
    st.plotly_chart(fig, config=plotting.chart_config(f"effects_{pert}"), key="effects_fig")
    st.download_button("Download figure (HTML)", plotting.figure_html(fig), f"effects_{pert}.html", "text/html",
                       icon=":material/download:", key="dl_effects")
with right:
    if evaluation is not None:
        per = services.method_table(evaluation, perturbation=pert)
        if not per.empty:
            lazy = per.loc["LazyNet"] if "LazyNet" in per.index else None
            best = per.drop(index="LazyNet", errors="ignore").iloc[:, 0].max()
            m1, m2 = st.columns(2)
            m1.metric("LazyNet Δ-Pearson", "n/a" if lazy is None else f"{lazy.iloc[0]:.2f}")
            m2.metric("Best baseline", f"{best:.2f}",
                      delta=None if lazy is None else f"{lazy.iloc[0] - best:+.2f} LazyNet vs best")
            st.dataframe(per.style.format("{:.2f}", na_rep="–"), width="stretch")
    st.caption("Δ = mean log expression − training control mean; the target gene(s) are excluded from every "
               "metric (their level is the model's input). The identity baseline predicts no change, so its "
               "Δ-Pearson is undefined (–).")

st.subheader("Overall")
split = ens.pair_config.split
tabs = st.tabs([f"Held-out test set (split: {split})", "Training fit"])
for tab, role in zip(tabs, ["test", "train"], strict=True):
    with tab, ui.user_errors("Could not evaluate this run"):
        frame_all = loaders.run_evaluation(role)
        overall = services.method_table(frame_all)
        st.dataframe(overall.style.format("{:.3f}", na_rep="–"), width="stretch")
        beating = services.baselines_beating(frame_all)
        if beating:
            st.warning(f"On this set these baselines beat LazyNet in mean Δ-Pearson: {', '.join(beating)}.",
                       icon=":material/balance:")
        else:
            st.success("LazyNet has the highest mean Δ-Pearson of all methods on this set.",
                       icon=":material/emoji_events:")
st.caption("Both splits exist: train one run with split *perturbations* (targets never seen) and one with *cells* "
           "(every target seen, cells held out) on the Train page; the per-perturbation mean is the noise "
           "ceiling on the cells split and undefined on the perturbations split.")

st.subheader("In-silico perturbation")
perturbed = services.perturbed_targets(pairs)
with st.form("insilico"):
    c1, c2 = st.columns([3, 2])
    genes = c1.multiselect("Genes to perturb (any modelled gene, including never-perturbed ones)",
                           list(ens.genes), default=[pert.split("+")[0]] if pert.split("+")[0] in ens.genes else [])
    fold = c2.select_slider("Expression level (× control)", [0.1, 0.25, 0.5, 0.75, 1.5, 2.0, 4.0, 8.0], value=0.25,
                            help="< 1 knocks down (CRISPRi-like), > 1 activates (CRISPRa-like).")
    run_it = st.form_submit_button("Predict response", icon=":material/science:")
if run_it or genes:
    with ui.user_errors("Could not predict that perturbation"):
        delta = services.in_silico(ens, genes, fold)
        unseen = [g for g in genes if g not in perturbed]
        if unseen:
            st.info(f"Never perturbed in this screen: {', '.join(unseen)}: the prediction extrapolates from "
                    "the learned model, with no direct evidence.", icon=":material/explore:")
        fig = plotting.in_silico_bars(delta, title=f"{' + '.join(genes)} at {fold}× control: predicted Δ")
        st.plotly_chart(fig, config=plotting.chart_config("in_silico"), key="insilico_fig")
        st.download_button("Download response (CSV)", pd.DataFrame({"gene": delta.index, "predicted_delta": delta.values})
                           .to_csv(index=False), "in_silico.csv", "text/csv", key="dl_insilico")
