"""Jacobian page: clustered heatmap of the consensus Jacobian over a chosen gene set."""

import numpy as np
import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.modules import module_genes
from lazynet_core.text import display_name
from lazynet_core.ui import loaders, services
from lazynet_core.ui.layout import md

ui.frame_guard("pages/4_Jacobian.py")
ui.page_header("Jacobian", "Gene-to-gene elasticities of the trained model at the control state.")
adata, ens = ui.need(screen=True, run=True)
observational, cells = services.never_perturbed_columns(ens.model_config)
never_note = f"its column is {cells}: observational" if observational else "its column is model extrapolation"
st.caption(
    "J[i, j] = ∂f_i/∂x_j is the effect of source gene j on target gene i's change. Expression is on a log "
    "scale, so J is an **elasticity**: J = 0.5 means a 10 % rise of j moves i by about 5 %. Columns of "
    "regulators that were never perturbed in the screen are **not supported by an intervention**"
    + (f": with this run's recipe they are {cells} (co-variation, not causation)."
       if observational else ".")
)

modules = services.module_choices()
kinds = ["module", "top genes by |J|", "typed list"]
wanted = ui.query_get("gene_set") or ""
in_model = services.module_gene_counts(ens.genes)
modules_fit = any(n >= 2 for n in in_model.values())  # a small panel may hold none of the modules
c1, c2 = st.columns([1, 2])
kind = c1.radio(
    "Gene set",
    kinds,
    index=2 if wanted.startswith("list:") else 1 if wanted.startswith("top:") or not modules_fit else 0,
    key="jac_kind",
)
genes: list[str] = []
with c2:
    if kind == "module":
        names = list(modules)
        module = st.selectbox(
            "Module",
            names,
            format_func=modules.get,
            key="jac_module",
            index=names.index(wanted[7:]) if wanted[7:] in names else 0,
        )
        genes, missing = services.check_genes_known(module_genes(module), ens.genes)
        if len(genes) < 2:
            st.info(
                f"Only {len(genes)} of the {modules[module].lower()} module's {len(genes) + len(missing)} "
                f"genes {'is' if len(genes) == 1 else 'are'} among this model's {len(ens.genes)}: choose "
                "**top genes by |J|** or a **typed list** instead.", icon=":material/info:",
            )
        st.caption(
            f"{len(genes)} of the module's genes are modelled"
            + (
                f"; not modelled: {', '.join(map(md, missing[:12]))}" + ("…" if len(missing) > 12 else "")
                if missing
                else "."
            )
        )
        tag = f"module:{module}"
    elif kind == "top genes by |J|":
        last = int(wanted[4:]) if wanted.startswith("top:") and wanted[4:].isdigit() else 30
        n = st.slider("Number of genes", 5, 80, min(max(last, 5), 80), key="jac_top")
        with ui.user_errors("Could not compute the Jacobian"):
            genes = services.top_genes_by_abs_j(loaders.run_jacobian(None), n)
        tag = f"top:{n}"
    else:
        example = services.check_genes_known(("GPX4", "SLC7A11", "NFE2L2", "FTH1", "TFRC", "NCOA4"),
                                             ens.genes)[0]
        modelled = set(ens.genes)  # a list kept from another run keeps only this model's genes
        typed = [g for g in wanted[5:].split(",") if g in modelled] if wanted.startswith("list:") else []
        text = st.text_area(
            "Genes (comma, space or new line separated)",
            value=" ".join(typed or (example if len(example) >= 2 else ens.genes[:6].tolist())),
            key="jac_list",
        )
        genes, unknown = services.check_genes_known(services.parse_gene_list(text), ens.genes)
        if not genes and not unknown:
            st.info("Type at least two gene symbols of the model (e.g. "
                    f"{', '.join(md(g) for g in ens.genes[:3])}).", icon=":material/info:")
        if unknown:
            st.error(
                f"Not in the model's genes: {', '.join(md(g) for g in unknown[:20])}. Check the spelling "
                "(case does not "
                "matter).",
                icon=":material/error:",
            )
        tag = "list:" + ",".join(genes[:30])
ui.query_set("gene_set", tag)
st.session_state["gene_set"] = tag

view = (
    st.segmented_control(
        "Show", ["consensus J", "replica sign agreement", "replica SD"], default="consensus J", key="jac_view"
    )
    or "consensus J"
)
result = None
if len(genes) >= 2:
    with ui.user_errors("Could not compute the Jacobian"):
        result = loaders.run_jacobian(tuple(genes))
elif kind == "top genes by |J|" or (kind == "typed list" and genes):  # the others said why already
    st.info("Choose at least two modelled genes.", icon=":material/info:")
perturbed = None
if result is not None:
    with ui.user_errors("This run does not fit the loaded screen"):  # e.g. a run of another screen
        perturbed = services.perturbed_targets(ui.current_pairs(ens))
if result is not None and perturbed is not None:
    unsupported = [g for g in result.sources if g not in perturbed]
    values, label, scale = {
        "consensus J": (result.mean, "J", "diverging"),
        "replica sign agreement": (result.sign_agreement, "agreement", "sequential"),
        "replica SD": (result.sd, "SD", "sequential"),
    }[view]
    order = plotting.heatmap_order(result.mean)  # one row order for every view
    shown_genes = list(result.sources)
    wanted_gene = ui.query_get("jac_gene")
    highlight = st.selectbox(
        "Highlight a gene (outlines its row and column)", shown_genes, format_func=display_name,
        index=shown_genes.index(wanted_gene) if wanted_gene in shown_genes else None,
        placeholder="type a gene name…", key="jac_gene",
    )
    ui.query_set("jac_gene", highlight)
    fig = plotting.jacobian_heatmap(
        values,
        list(result.sources),
        agreement=result.sign_agreement,
        order=order,
        dendrogram_of=result.mean,
        value_label=label,
        scale=scale,
        never_perturbed=unsupported,
        never_perturbed_note=never_note,
        big=bool(st.session_state.get("presentation")),
        title=f"{view} over {len(genes)} genes ({result.n_replicas} "
              f"replica{'' if result.n_replicas == 1 else 's'})",
        highlight=highlight,
    )
    ui.plot(fig, "jacobian", key="jac_fig")
    st.caption(
        "Rows and columns are in one order for all three views: average-linkage clustering of the consensus "
        "J (dendrogram on top). "
        + ("The colour scale is clipped at the 99th percentile of the shown values (stated on the colour "
           "bar) so a few strong entries do not wash out the rest; hover shows exact values. "
           if view == "consensus J" else
           f"Sign agreement is the share of the {len(ens.replicas)} replicas whose J has the consensus sign "
           "(1 = all agree). " if view == "replica sign agreement" else
           "The SD is the replicas' spread of J: large where they disagree. ")
        + "Grey column labels with ° are regulators the screen never perturbed."
    )
    m1, m2, m3 = st.columns(3)
    off = ~np.eye(len(genes), dtype=bool)
    m1.metric("Genes", len(genes))
    m2.metric("Mean sign agreement", f"{np.nanmean(result.sign_agreement[off]):.2f}")
    m3.metric("Sources perturbed in the screen", f"{len(genes) - len(unsupported)}/{len(genes)}")
    if unsupported:
        st.caption(
            f"Regulators never perturbed ({never_note.replace('its column is', 'columns:')}): "
            f"{', '.join(md(g) for g in unsupported[:30])}" + ("…" if len(unsupported) > 30 else "")
        )
    d1, d2, _ = st.columns([1, 1, 1])
    d1.download_button(
        "Matrix (CSV)",
        services.heatmap_csv(values, list(result.sources), order, label),
        f"jacobian_{label}.csv",
        "text/csv",
        icon=":material/download:",
        key="dl_jac_csv",
        type="primary",
    )
    d2.download_button(
        "Heatmap (HTML)",
        plotting.figure_html(fig),
        "jacobian.html",
        "text/html",
        icon=":material/download:",
        key="dl_jac",
    )
