"""Networks page: seed subgraphs that follow the screen's evidence, with the evidence on every edge."""

import streamlit as st

from lazynet_core import ui
from lazynet_core.evidence import EVIDENCE
from lazynet_core.modules import module_genes
from lazynet_core.text import display_name
from lazynet_core.ui import loaders, services
from lazynet_core.ui.layout import md

ui.frame_guard("pages/5_Networks.py")
ui.page_header(
    "Networks",
    "Signed gene networks grown from seed genes along the strongest Jacobian edges that the screen supports.",
)
adata, ens = ui.need(screen=True, run=True)
pairs = None
with ui.user_errors("This run does not fit the loaded screen"):
    pairs = ui.current_pairs(ens)
if pairs is None:
    st.stop()

modules = services.module_choices()
names = list(modules)
gene_set = ui.query_get("gene_set") or ""
wanted = ui.query_get("net_module") or (gene_set[7:] if gene_set.startswith("module:") else "")
module = st.radio(
    "Module", names, format_func=modules.get, horizontal=True, key="net_module",
    index=names.index(wanted) if wanted in names else 0,
)
ui.query_set("net_module", module)
if not gene_set or gene_set.startswith("module:"):  # a Jacobian typed list or top-N stays as it was
    ui.query_set("gene_set", f"module:{module}")
present, missing = services.seeds_in_universe(module, ens.genes)
fallback = [] if present else services.perturbed_genes(pairs)
if fallback:  # a panel with none of the module's seeds (a TAP-seq panel): start from what it perturbed
    st.info(
        f"None of the {modules[module].lower()} seed genes ({', '.join(md(g) for g in missing)}) is among "
        f"this model's {len(ens.genes)} genes, so the network starts from the screen's most-perturbed "
        f"targets: {', '.join(md(g) for g in fallback)}. Pick any modelled gene under Seeds.",
        icon=":material/info:",
    )
    present, missing = fallback, []
view = st.session_state.get("net_view")
if not view or view.get("module") != module:  # a fresh session reads the URL; a new module its seeds
    query = st.query_params.to_dict() if wanted == module or not view else {}
    view = services.network_view_from_query(query, present)
    view["seeds"] = services.check_genes_known(view["seeds"], ens.genes)[0] or present
view["module"] = module

D = services.NETWORK_DEFAULTS
with st.form(f"net_form_{module}"):
    seeds = st.multiselect("Seeds", ens.genes.tolist(), default=view["seeds"], key=f"net_seeds_{module}",
                           format_func=display_name)
    c2, c3, c4, c5, c6, c7 = st.columns(6)
    breadth = c2.number_input("Breadth", 1, 64, view["breadth"], help="Partners kept per expanded gene "
                              "(the paper: 32).", key="net_breadth")
    depth = c3.number_input("Depth", 1, 6, view["depth"], help="BFS levels (the paper: 4).", key="net_depth")
    max_nodes = c4.number_input("Max genes", 5, 400, view["max_nodes"], step=5, key="net_max",
                                help="The strongest new genes are kept once the graph would grow past this.")
    noise = c5.number_input(
        "Noise factor", 0.0, 10.0, view["noise"], step=0.5, key="net_noise",
        help="An edge is followed only if |J| exceeds this many replica standard deviations.",
    )
    min_abs = c6.number_input("Min |J| (extra)", 0.0, 10.0, view["min_abs"], step=0.01, format="%.3f",
                              key="net_min_abs", help="An absolute floor on top of the noise rule.")
    direction = c7.selectbox("Direction", list(services.DIRECTIONS), index=services.DIRECTIONS.index(
        view["direction"]), help="out: regulator → targets.", key="net_dir")
    c8, c9, c10 = st.columns([1.2, 1.6, 1.2], vertical_alignment="bottom")
    layout = c8.radio("Layout", ["force", "layered"], index=["force", "layered"].index(view["layout"]),
                      horizontal=True, key="net_layout", help="layered: BFS levels in columns, seeds left.")
    model_only = c9.toggle("Include model-only edges", view["model_only"], key="net_model_only",
                           help="Also follow edges nothing in the screen supports (drawn dashed and grey). "
                           "They compete with supported edges for each gene's Breadth slots, so some "
                           "supported edges can drop out: raise Breadth to keep them.")
    c10.form_submit_button("Update network", icon=":material/refresh:", type="primary")
view.update(seeds=list(seeds), breadth=int(breadth), depth=int(depth), max_nodes=int(max_nodes),
            noise=float(noise), min_abs=float(min_abs), direction=direction, layout=layout,
            model_only=bool(model_only))
st.session_state["net_view"] = view
for name, value in services.network_view_to_query(view).items():
    ui.query_set(name, value)
rule = f"|J| > {noise:g} × replica sd" + (f" and |J| ≥ {min_abs:g}" if min_abs > 0 else "")
st.caption(
    f"Edges followed: above replica noise ({rule}) and "
    + ("any evidence, **model_only included** (dashed, grey)." if model_only else
       "supported by the screen (interventional, held_out or observational); model_only edges are hidden.")
    + (f" Default seeds not in the model's genes (left out): {', '.join(md(g) for g in missing)}."
       if missing else "")
)

G = None
with ui.user_errors("Could not build the network"):
    G = loaders.run_subgraph(view)
if G is None:
    st.stop()
never_seeds = [s for s in G.graph["seeds"] if G.nodes[s].get("perturbed") == "never"]
if never_seeds:
    st.warning(
        f"**Seeds the screen never perturbed: {', '.join(md(g) for g in never_seeds)}.** Their edges rest on "
        "control-cell "
        "co-expression at best; they are drawn with a dashed outline.", icon=":material/science:"
    )

frame = services.edge_table(G)
counts = services.evidence_counts(frame)
helps = {
    "interventional": "Regulator perturbed alone in training cells: the screen's own Δ of the target "
    "(in-sample).",
    "held_out": "Regulator perturbed only in held-out cells: agreement scored out of sample.",
    "observational": "Regulator never perturbed; control-cell co-expression supports the edge "
    "(permutation p).",
    "model_only": "Nothing in the screen supports the edge"
    + ("." if model_only else " (hidden; toggle to show)."),
}
for col, word in zip(st.columns(4), EVIDENCE, strict=True):
    col.metric(word, counts[word], help=helps[word])

big = bool(st.session_state.get("presentation"))
figs = None
with ui.user_errors("Could not draw the network"):
    figs = services.network_figures(
        G, curated=module_genes(module), layout=layout, font_size=24 if big else 18,
        title=f"{modules[module]}: {G.number_of_nodes()} genes, {G.number_of_edges()} edges",
    )
if figs is not None:
    st.iframe(figs["html"], height=720 if big else 700)
    truncated = " Capped at the max-genes limit (strongest genes kept)." if G.graph.get("truncated") else ""
    st.caption(
        f"{G.number_of_nodes()} genes, {G.number_of_edges()} edges.{truncated} Hover an edge for J, replica "
        "agreement and sd and the screen's evidence; drag to move, scroll to zoom."
    )
    d = st.columns(5)
    # named after what it grew from: the module, or (no module seed modelled) the seeds themselves
    stem = f"lazynet_{module}" if not fallback else "lazynet_" + services.safe_filename(
        "_".join(view["seeds"][:3]), max_len=40)
    d[0].download_button("PNG", figs["png"], f"{stem}.png", "image/png", icon=":material/image:",
                         key="dl_png")
    d[1].download_button("SVG", figs["svg"], f"{stem}.svg", "image/svg+xml", icon=":material/draw:",
                         key="dl_svg")
    d[2].download_button("HTML", figs["html"], f"{stem}.html", "text/html", icon=":material/html:",
                         key="dl_html")
    d[3].download_button("Edges (CSV)", services.edges_csv(G), f"{stem}_edges.csv", "text/csv",
                         icon=":material/download:", key="dl_csv", type="primary")
    d[4].download_button("GraphML", services.graphml_bytes(G), f"{stem}.graphml", "application/xml",
                         icon=":material/download:", key="dl_graphml", help="Opens in Cytoscape.")

perturbations = set(services.perturbation_table(pairs)["perturbation"])
openable = [g for g in figs["nodes"]["gene"] if g in perturbations] if figs is not None else []
if openable:
    o1, o2 = st.columns([2, 1], vertical_alignment="bottom")
    gene = o1.selectbox("Open a perturbed gene on the Effects page", openable, key="net_open_gene",
                        format_func=display_name)
    if o2.button("Open on Effects", icon=":material/open_in_new:", key="net_open"):
        st.session_state["perturbation"] = gene
        keep = {k: st.query_params.get(k) for k in ("run", "screen", "present")}
        query = {**{k: v for k, v in keep.items() if v}, "pert": gene}
        st.switch_page("pages/3_Effects.py", query_params=query)

st.subheader("Module panel")
m_col, p_col = st.columns([2, 3], gap="large")
with m_col, ui.user_errors("Could not evaluate the module"):
    rec = services.module_evaluation(G, module, ens.genes)
    both = (rec["modelled"]["n_found"], rec["modelled"]["n"]) != (rec["all"]["n_found"], rec["all"]["n"])
    none_modelled = rec["modelled"]["n"] == 0
    r1, r2 = st.columns(2) if both and not none_modelled else (st.container(), None)
    if none_modelled:  # a recall of 0/0 says nothing
        st.caption(f"No curated {modules[module].lower()} gene is among this model's genes "
                   f"(0 of {rec['all']['n']}), so the subgraph cannot be scored against the module.")
    else:
        r1.metric("Recall (modelled genes)", f"{rec['modelled']['n_found']}/{rec['modelled']['n']}",
                  help="Curated module genes that the model includes and the subgraph reaches.")
    if both and not none_modelled:
        r2.metric("Recall (all curated)", f"{rec['all']['n_found']}/{rec['all']['n']}",
                  help="Out of every curated gene, modelled or not.")
    co = services.coexpression(G, pairs)
    if co["edge_fraction"] > 0 or co["random_fraction"] > 0:
        st.caption(
            f"Co-expressed edges (|r| ≥ {co['threshold']:g} among control cells): "
            f"{co['edge_fraction']:.0%} of this subgraph's edges vs {co['random_fraction']:.0%} of random "
            "gene pairs."
        )
    else:
        st.caption(
            f"No edge of this subgraph, and no random gene pair, reaches |r| ≥ {co['threshold']:g} among "
            "control cells: the controls carry too little co-expression at that threshold to compare."
        )
with p_col, ui.user_errors("Could not score the planted network"):
    planted = loaders.run_planted_recovery()
    if planted is not None:
        st.markdown("**Run-wide: planted-network recovery** (demo ground truth, AUROC over all gene pairs)")
        table = planted.pivot_table(index="method", columns="pair_set", values="auroc", sort=False)
        ui.small_table(services.format_table(table))
        st.caption(
            "Run-wide, not this subgraph. Pair sets: *perturbed* = regulator perturbed in training cells "
            "(the only pairs fold change can score), *unperturbed* = never perturbed, *all* = every ordered "
            "pair. |correlation| (pooled) reads the controls and the trained perturbations' cells, each "
            "centred on its group's mean: the anchored_pooled recipe's never-perturbed columns are the "
            "pooled regression (its slopes; the table ranks by |correlation|). Where a baseline beats "
            "LazyNet, trust the baseline."
        )

st.subheader("Edges")
st.caption(
    "`evidence`: interventional / held_out (`screen_delta` = the target's observed Δ in `n_cells` cells "
    "where the source alone was perturbed, `source_delta` the source's own Δ there, negative for a "
    "knock-down; `sign_agrees`: whether the sign of J × source_delta predicts the target's: a repressing "
    "edge, J < 0, predicts the target up when its source is knocked down), observational "
    "(`coexpr_r`, permutation `coexpr_p` among control cells; for an anchored_pooled run the control and "
    "training perturbed cells, each centred on its group's mean) or model_only. `sd`: replica spread of J."
)
st.dataframe(frame, hide_index=True, width="stretch", height=320)
