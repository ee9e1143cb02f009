"""Networks page: seed subgraphs of the ferroptosis and lysosomal–mitochondrial–immune modules."""

import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.modules import module_genes
from lazynet_core.ui import loaders, services

ui.frame_guard("pages/5_Networks.py")
ui.page_header(
    "Networks", "Signed gene networks grown from seed genes by the strongest Jacobian edges (BFS)."
)
adata, ens = ui.need(screen=True, run=True)
pairs = None
with ui.user_errors("This run does not fit the loaded screen"):
    pairs = ui.current_pairs(ens)
if pairs is None:
    st.stop()

modules = services.module_choices()
wanted = (ui.query_get("gene_set") or "")[7:]
names = list(modules)
module = st.radio(
    "Module",
    names,
    format_func=modules.get,
    horizontal=True,
    key="net_module",
    index=names.index(wanted) if wanted in names else 0,
)
ui.query_set("gene_set", f"module:{module}")
present, missing = services.seeds_in_universe(module, ens.genes)
with st.form(f"net_form_{module}"):
    c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 1])
    seeds = c1.multiselect("Seeds", ens.genes.tolist(), default=present)
    breadth = c2.number_input("Breadth", 1, 64, 4, help="Partners kept per expanded gene (the paper: 32).")
    depth = c3.number_input("Depth", 1, 6, 2, help="BFS levels (the paper: 4).")
    min_abs = c4.number_input("Min |J|", 0.0, 10.0, 0.0, step=0.01, format="%.3f")
    direction = c5.selectbox("Direction", ["out", "in", "both"], help="out: regulator → targets.")
    st.form_submit_button("Update network", icon=":material/refresh:")
if missing:
    st.caption(f"Default seeds not in the model's genes (left out): {', '.join(missing)}.")

G = frame = None
with ui.user_errors("Could not build the network"):
    G = services.subgraph(
        loaders.run_provider(), seeds, breadth=breadth, depth=depth, min_abs=min_abs, direction=direction
    )
    frame = services.annotated_edges(G, pairs)
if G is None or frame is None:
    st.stop()

graph_col, eval_col = st.columns([3, 2], gap="large")
with graph_col:
    html = plotting.network_html(frame, seeds=seeds, curated=module_genes(module), height=600)
    st.iframe(html, height=640)
    st.caption(
        f"{G.number_of_nodes()} genes, {G.number_of_edges()} edges. Red: J > 0 (activation), blue: J < 0; "
        "width ∝ |J|; stars are seeds, light blue dots curated module genes. Drag, zoom, hover."
    )
with eval_col:
    with ui.user_errors("Could not evaluate the module"):
        rec = services.module_evaluation(G, module, ens.genes)
        m1, m2 = st.columns(2)
        m1.metric(
            "Recall (modelled)",
            f"{rec['modelled']['n_found']}/{rec['modelled']['n']}",
            help="Curated module genes that the model includes and the subgraph reaches.",
        )
        m2.metric("Recall (all curated)", f"{rec['all']['n_found']}/{rec['all']['n']}")
        st.markdown("**The screen's own evidence per edge** (regulator perturbed alone)")
        counts = frame["evidence"].value_counts()
        e1, e2, e3 = st.columns(3)
        e1.metric(
            "Agrees",
            int(counts.get("agrees", 0)),
            help="Edges whose regulator was perturbed and whose target moved the way J predicts.",
        )
        e2.metric("Contradicts", int(counts.get("disagrees", 0)))
        e3.metric("No evidence", int(counts.get("unsupported by the screen", 0)))
        st.caption(
            "For regulators the model was trained on, agreement largely restates its training fit "
            "(in-sample); it is not an independent validation."
        )
        co = services.coexpression(G, pairs)
        st.caption(
            f"Co-expressed edges (|r| ≥ 0.2 in control cells): {co['edge_fraction']:.0%} vs "
            f"{co['random_fraction']:.0%} of random gene pairs."
        )
    with ui.user_errors("Could not score the planted network"):
        planted = loaders.run_planted_recovery()
        if planted is not None:
            st.markdown("**Planted-network recovery** (demo ground truth; AUROC)")
            table = planted.pivot_table(index="method", columns="pair_set", values="auroc", sort=False)
            st.dataframe(services.format_table(table), width="stretch")
            st.caption(
                "Pair sets: *perturbed* = regulator perturbed in training cells (the only pairs fold change "
                "can score), *unperturbed* = never perturbed, *all* = every ordered pair. Where a baseline "
                "beats LazyNet, trust the baseline."
            )

st.subheader("Edges")
st.caption(
    "`screen_delta`: the target's observed Δ log expression in cells where the source alone was perturbed. "
    "`evidence`: whether that matches the sign J predicts; edges from never-perturbed regulators are "
    "unsupported by the screen."
)
st.dataframe(frame, hide_index=True, width="stretch", height=300)
d1, d2, _ = st.columns([1, 1, 3])
d1.download_button(
    "Download edges (CSV)",
    services.edges_csv(frame),
    f"lazynet_{module}_edges.csv",
    "text/csv",
    icon=":material/download:",
    key="dl_csv",
    type="primary",
)
d2.download_button(
    "Download GraphML (Cytoscape)",
    services.graphml_bytes(G, frame),
    f"lazynet_{module}.graphml",
    "application/xml",
    icon=":material/download:",
    key="dl_graphml",
)
