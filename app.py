"""LazyNet app frame: page config, shared sidebar, navigation. Start with `streamlit run app.py`."""

from pathlib import Path

import streamlit as st

from lazynet_core import ui

ROOT = Path(__file__).resolve().parent


def home() -> None:
    """Landing page: what LazyNet is and where to start."""
    ui.page_header("LazyNet", "Interpretable neural-ODE models of single-cell CRISPRi/a screens.")
    st.markdown(
        "LazyNet learns how a cell's expression state changes after a CRISPRi or CRISPRa perturbation, "
        "using one Euler step of a log-linear-exp network whose hidden units are products and ratios "
        "of genes. "
        "Trained on your screen, it predicts the effects of held-out perturbations and of in-silico "
        "knock-downs or activations, always shown next to simple baselines, which it usually matches "
        "at best and often trails (for targets it never saw, and with the default recipe on held-out "
        "cells too): the Effects page says where, with the numbers. "
        "Its Jacobian, an elasticity between genes, gives signed gene networks around the modules you "
        "care about, with the screen's own fold-change evidence beside each edge."
    )
    if st.session_state.get("screen") is None:
        from lazynet_core.ui import loaders, services

        c1, c2, _ = st.columns([1, 1.4, 1.2])
        demo = c1.button(
            "Start with the demo screen", type="primary", icon=":material/play_arrow:", key="home_demo"
        )
        if demo:
            with ui.user_errors("Could not load the demo screen"):
                ui.load_screen_into_session(loaders.bundled_spec("demo"))
                st.session_state["_deep_query"] = st.query_params.to_dict()  # switch_page drops the URL
                st.switch_page("pages/1_Data.py")
        if c2.button(services.REAL_SCREEN["title"], icon=":material/biotech:", key="home_real"):
            with ui.user_errors("Could not load the real screen"):
                ui.load_screen_into_session(loaders.bundled_spec("real"))
                st.session_state["_deep_query"] = st.query_params.to_dict()  # switch_page drops the URL
                st.switch_page("pages/1_Data.py")
        st.caption(
            "Demo: synthetic, with a planted network to check against. Real screen: "
            f"{services.REAL_SCREEN['citation']} Licence: {services.REAL_SCREEN['licence']}."
        )
    steps = [
        ("1", "Data", "Load the demo or a real screen, a local .h5ad path or an upload.", "pages/1_Data.py"),
        (
            "2",
            "Train",
            "Train an ensemble in the background (well under a minute on the demo).",
            "pages/2_Train.py",
        ),
        (
            "3",
            "Effects",
            "Predicted vs observed effects, metrics beside baselines, in-silico perturbation.",
            "pages/3_Effects.py",
        ),
        (
            "4",
            "Jacobian",
            "Clustered heatmap of gene-to-gene elasticities with replica agreement.",
            "pages/4_Jacobian.py",
        ),
        (
            "5",
            "Networks",
            "Ferroptosis and lysosomal–mitochondrial–immune graphs; CSV / GraphML export.",
            "pages/5_Networks.py",
        ),
    ]
    cols = st.columns(len(steps))
    for col, (num, title, text, page) in zip(cols, steps, strict=True):
        with col.container(border=True):
            st.markdown(f"**{num} · {title}**")
            st.caption(text)
            st.page_link(page, label=f"Open {title}", icon=":material/arrow_forward:")
    st.caption("Everything runs on this machine: no data leaves it, and the app needs no internet.")


st.set_page_config(
    page_title="LazyNet",
    page_icon=str(ROOT / "assets" / "logo.svg"),
    layout="wide",
    initial_sidebar_state="expanded",
)
ui.init_state()
ui.restore_deep_query()
ui.restore_from_url()
pages = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Data.py", title="Data", icon=":material/dataset:"),
    st.Page("pages/2_Train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/3_Effects.py", title="Effects", icon=":material/scatter_plot:"),
    st.Page("pages/4_Jacobian.py", title="Jacobian", icon=":material/grid_on:"),
    st.Page("pages/5_Networks.py", title="Networks", icon=":material/hub:"),
]
page = st.navigation(pages)
ui.follow_deep_link()
ui.sidebar(poll_job=page.title != "Train")  # the Train page polls its job itself
page.run()
