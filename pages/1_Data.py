"""Data page: load a screen (demo, local path, upload), check what was detected, override it.

The overrides (perturbation column, control label, counts) are offered for a loaded screen and also
for a file whose automatic reading failed, prefilled with the file's likely columns and values.
"""

import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.data import RAW_X, validate_screen
from lazynet_core.text import display_name, escape_markdown, for_app
from lazynet_core.ui import loaders, services


def _values_caption(choices: dict) -> str:
    parts = [
        f"'{display_name(column)}': "
        + ", ".join(f"{display_name(v, max_len=30)} ({n})" for v, n in values[:6])
        for column, values in choices.get("values", {}).items()
    ]
    return escape_markdown("Most common values · " + " · ".join(parts)) if parts else ""


def read_form(spec: dict, choices: dict, *, key: str, detected: dict | None = None) -> None:
    """Perturbation column, control label, modality, counts and genes; re-reads the screen on submit."""
    columns = choices.get("columns") or []
    current = (detected or {}).get("pert_key") or spec.get("pert_key")
    control_now = (detected or {}).get("control") or spec.get("control") or choices.get("control") or ""
    layers = [None, *choices.get("layers", [])]
    modalities = ["auto", "CRISPRi", "CRISPRa", "CRISPRko"]
    with st.form(key):
        c1, c2, c3, c4, c5 = st.columns(5)
        pert_key = c1.selectbox(
            "Perturbation column",
            columns,
            index=columns.index(current) if current in columns else 0,
            format_func=display_name,
        )
        control = c2.text_input("Control label", value=str(control_now).rstrip("*"))
        modality = c3.selectbox(
            "Modality", modalities, index=modalities.index(spec.get("modality") or "auto")
        )
        layer = c4.selectbox(
            "Counts",
            layers,
            index=layers.index(spec.get("layer")) if spec.get("layer") in layers else 0,
            format_func=lambda v: "automatic" if v is None else ".raw.X" if v == RAW_X else display_name(v),
            help="Where the raw counts are: automatic uses .X, or .raw.X / a counts layer when .X is "
            "log-normalised or scaled.",
        )
        genes = c5.selectbox(
            "Gene universe",
            ["all", "hvg"],
            index=0 if spec.get("genes", "all") == "all" else 1,
            help="'hvg': highly variable genes plus every target (for large screens).",
        )
        if caption := _values_caption(choices):
            st.caption(caption)
        if st.form_submit_button("Re-read with these settings"):
            with ui.user_errors("Could not re-read the screen with these settings"):
                new = loaders.screen_spec(
                    spec["source"],
                    label=spec["label"],
                    pert_key=pert_key,
                    control=control.strip() or None,
                    modality=None if modality == "auto" else modality,
                    genes=genes,
                    layer=layer,
                )
                loaders.try_load_screen(new)
                st.rerun()


ui.frame_guard("pages/1_Data.py")
ui.page_header("Data", "Load a CRISPRi/a screen (.h5ad). Raw counts are normalised (log1p CP10k) on load.")

spec = st.session_state.get("screen")
col_demo, col_path = st.columns([1, 2], gap="large")
with col_demo:
    st.markdown("**Bundled screens**")
    st.caption("A synthetic neuronal-like CRISPRi/a screen with a planted gene network (ground truth).")
    if st.button("Load demo screen", type="primary", icon=":material/play_arrow:", key="load_demo",
                 width="stretch"):
        loaders.forget_failed_attempt()
        with ui.user_errors("Could not load the demo screen"):
            loaders.try_load_screen(loaders.bundled_spec("demo"))
            ui.toast_after_rerun("Demo screen loaded.")
            st.rerun()
    st.caption(services.REAL_SCREEN["summary"])
    if st.button("Load real screen (K562 TAP-seq)", icon=":material/biotech:", key="load_real",
                 width="stretch", help=services.REAL_SCREEN["title"]):  # short: fits the one-third column
        loaders.forget_failed_attempt()
        with ui.user_errors("Could not load the real screen"):
            loaders.try_load_screen(loaders.bundled_spec("real"))
            ui.toast_after_rerun("Real screen (Schraivogel et al. 2020) loaded.")
            st.rerun()
with col_path:
    tab_path, tab_upload = st.tabs(["Local path (large files)", "Upload (small files)"])
    with tab_path, st.form("path_form", border=False):
        path = st.text_input("Path to an .h5ad file on this machine", placeholder="~/data/screen.h5ad")
        if st.form_submit_button("Load file", icon=":material/folder_open:"):
            loaders.forget_failed_attempt()
            with ui.user_errors("Could not load that file"):
                loaders.try_load_screen(loaders.screen_spec(loaders.resolve_h5ad(path)))
                ui.toast_after_rerun("Screen loaded.")
                st.rerun()
    with tab_upload:
        upload = st.file_uploader(
            "Upload an .h5ad file (up to 200 MB; use the path box for bigger files)",
            type=["h5ad"],
            key="upload",
        )
        if upload is not None and st.button("Load upload", key="load_upload"):
            loaders.forget_failed_attempt()
            shown: dict[str, str] = {}  # the message names the upload as the user knows it
            with ui.user_errors("Could not load the upload", rename=shown):
                source = loaders.save_upload(upload.name, upload.getvalue())
                shown[str(source)] = f"{upload.name} (upload)"
                loaders.try_load_screen(loaders.screen_spec(source, label=upload.name.removesuffix(".h5ad")))
                ui.toast_after_rerun("Upload loaded.")
                st.rerun()

attempt = loaders.failed_attempt()
attempt_choices = loaders.screen_choices(attempt["source"]) if attempt else None
if attempt and attempt_choices and attempt_choices["columns"]:
    with st.expander(
        f"Choose how to read {escape_markdown(display_name(attempt['label']))}",
        expanded=True,
        icon=":material/tune:",
    ):
        st.caption(
            "The file was not accepted with the automatic settings (the message above says why). If the "
            "perturbations, the control cells or the raw counts are elsewhere in the file, pick them here "
            "and re-read it; if the values themselves are bad, fix the file and load it again."
        )
        read_form(attempt, attempt_choices, key="retry")

adata = None
if st.session_state.get("screen") is not None:
    with ui.user_errors("Could not read the loaded screen"):
        adata = ui.current_screen()
if adata is None:
    st.info(
        "No screen loaded yet: click **Load demo screen** (synthetic, with a known network) or load the "
        "real Schraivogel et al. 2020 screen to try LazyNet in one click.",
        icon=":material/info:",
    )
    st.stop()

spec = st.session_state["screen"]
meta = adata.uns["lazynet"]
info = services.screen_overview(adata)
st.subheader(f"Overview · {escape_markdown(display_name(spec['label']))}")
cards = st.columns(5)
cards[0].metric("Cells", f"{info['cells']:,}")
cards[1].metric("Genes", f"{info['genes']:,}")
cards[2].metric("Control cells", f"{info['controls']:,}")
cards[3].metric("CRISPRi perturbations", info["by_modality"].get("CRISPRi", 0))
cards[4].metric("CRISPRa perturbations", info["by_modality"].get("CRISPRa", 0))
st.caption(
    f"{info['perturbations']} perturbations ({info['combinations']} combinations) · source "
    f"{escape_markdown(display_name(meta['source'], max_len=120))}"
    + (" · input was already log-normalised" if meta.get("input_was_log") else "")
)
if spec.get("label") == loaders.REAL_SCREEN_LABEL:
    st.markdown(f"**{services.REAL_SCREEN['title']}.** {services.REAL_SCREEN['summary']}")
    st.caption(f"Source: {services.REAL_SCREEN['citation']} Licence: {services.REAL_SCREEN['licence']}.")
    with st.expander("Licence of the source files", icon=":material/gavel:"):
        st.code(services.real_screen_licence(), language=None)
warnings = meta.get("warnings", [])
with ui.user_errors("The loaded screen did not pass its checks"):
    warnings = validate_screen(adata)  # the stored warnings plus checks made now (tiny perturbations)
for warning in warnings:  # quotes labels from the file: never rendered as Markdown
    st.warning(escape_markdown(for_app(warning)), icon=":material/warning:")

left, right = st.columns(2, gap="large")
with left:
    fig = plotting.cells_per_perturbation(services.cells_per_perturbation(adata))
    ui.plot(fig, "cells_per_perturbation", key="cells_fig", share=0.5)
with right:
    fig = plotting.target_check_plot(meta.get("target_check", {}))
    ui.plot(fig, "target_check", key="check_fig", share=0.5)
    st.caption(
        "Each target's own expression in its cells vs control: CRISPRi should lower it, CRISPRa raise it."
    )

with st.expander("Detected columns and overrides", expanded=False, icon=":material/tune:"):
    st.markdown(
        f"Perturbation column **{escape_markdown(meta['pert_key'])}** · control label "
        f"**{escape_markdown(meta['control'])}** · modality from "
        f"**{escape_markdown(meta['modality_source'])}**"
    )
    choices = loaders.screen_choices(spec["source"]) or {}
    choices = {**choices, "columns": choices.get("columns") or services.obs_columns(adata)}
    read_form(spec, choices, key="overrides", detected=meta)
