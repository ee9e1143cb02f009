"""Page furniture shared by every page: style, header, sidebar status, job polling, errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from lazynet_core.errors import RunError, ScreenError, TrainingCancelled, TrainingError
from lazynet_core.jobs import JobRefused
from lazynet_core.text import display_name, escape_markdown, for_app
from lazynet_core.ui.loaders import current_ensemble, current_screen, job_registry
from lazynet_core.ui.state import init_state, query_get, query_set

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Seconds between two polls of a running training job (a fragment rerun in the server, whose Python
# shares the GIL with the training thread, and a repaint in the browser); benchmarks/busy_cpu.py.
JOB_POLL_S = 2.0
# Errors the core raises for bad input; anything else is a bug and should surface in tests.
USER_ERRORS = (
    ScreenError,
    RunError,
    TrainingError,
    TrainingCancelled,
    JobRefused,
    FileNotFoundError,
    KeyError,
    ValueError,
    OSError,
)

_PRESENTATION_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px !important; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li,
[data-testid="stCaptionContainer"] { font-size: 1.15rem !important; }
h1 { font-size: 2.8rem !important; } h2 { font-size: 2.1rem !important; } h3 { font-size: 1.7rem !important; }
/* labels wrap between words only, never inside one, and are never cut off with an ellipsis */
label, label p, [data-testid="stWidgetLabel"] p, [data-testid="stMetricLabel"] p {
  font-size: 1.05rem !important; word-break: normal !important; overflow-wrap: normal !important;
  hyphens: none !important; white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important;
}
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
}
[data-testid="stMetricValue"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMetricValue"] div { font-size: 2.1rem !important; white-space: nowrap; }
[data-testid="stSidebar"] { min-width: 0 !important; }
/* a long button label wraps instead of being cut with an ellipsis */
button p { white-space: normal !important; overflow: visible !important; text-overflow: clip !important; }
</style>
"""


@contextmanager
def user_errors(what: str, *, rename: dict[str, str] | None = None) -> Iterator[None]:
    """Show the core's user-facing errors as ``st.error`` (never a traceback) and carry on.

    ``what`` and the message are both shown literally (escaped): either may quote a label, a path
    or a URL parameter. ``rename`` maps text of the message to what the user knows it as (an upload's
    server-side path to its file name); it is read when an error is shown, so the block may fill it.
    """
    try:
        yield
    except USER_ERRORS as exc:
        text = str(exc)
        for old, new in (rename or {}).items():
            text = text.replace(old, new)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":  # a KeyError's repr quotes
            text = text[1:-1]
        text = for_app(text) or type(exc).__name__
        # the message may quote labels or paths from the user's file: shown literally, never as Markdown
        st.error(f"**{escape_markdown(what)}.** {escape_markdown(text)}", icon=":material/error:")


def md(text: Any, *, max_len: int = 80) -> str:
    """A name from a file, a URL or the user, ready to put inside Markdown: shown literally.

    Invisible characters are made visible, a long name is shortened in the middle
    (:func:`~lazynet_core.text.display_name`) and every Markdown character is escaped
    (:func:`~lazynet_core.text.escape_markdown`).

    Parameters
    ----------
    text
        A label, gene name, path, run name or error message (``None`` shows as ``None``).
    max_len
        Longest shown length before shortening.

    Returns
    -------
    str
        Markdown that renders as exactly the (shortened) text.
    """
    return escape_markdown(display_name(str(text), max_len=max_len))


def apply_style() -> None:
    """Inject the app CSS, plus large fonts in presentation mode."""
    css = ASSETS / "style.css"
    if css.exists():
        st.html(f"<style>{css.read_text()}</style>")
    if st.session_state.get("presentation"):
        st.html(_PRESENTATION_CSS)


def page_header(title: str, caption: str) -> None:
    """Title plus a one-line caption saying what the page is for."""
    st.title(title)
    st.caption(caption)


def need(*, screen: bool = True, run: bool = False) -> tuple[Any, Any]:
    """Return ``(adata, ensemble)``; if a required one is missing, say where to get it and stop."""
    adata = ens = None
    with user_errors("Could not open the loaded screen"):
        adata = current_screen()
    if screen and adata is None:
        st.info(
            "No screen loaded yet. Start on the **Data** page: one click loads the demo or the real screen.",
            icon=":material/dataset:",
        )
        st.page_link("pages/1_Data.py", label="Go to Data", icon=":material/arrow_forward:")
        st.stop()
    with user_errors("Could not open the loaded run"):
        ens = current_ensemble()
    if run and ens is None:
        st.info(
            "No trained run loaded. Train one (or load a saved run) on the **Train** page.",
            icon=":material/model_training:",
        )
        st.page_link("pages/2_Train.py", label="Go to Train", icon=":material/arrow_forward:")
        st.stop()
    return adata, ens


# ---- background job ---------------------------------------------------------------------------
def session_job() -> Any:
    """This session's job (reattached from ``?job=`` after a refresh), else the active one."""
    reg = job_registry()
    job = reg.get(st.session_state.get("job_id"))
    if job is None:
        job = reg.get(query_get("job"))
        if job is not None:
            st.session_state["job_id"] = job.job_id
    return job or reg.active()


def handle_job_end(job: Any) -> bool:
    """Once per job: adopt the finished run into the session. True if something changed."""
    if job is None or job.progress().active or st.session_state.get("job_done_seen") == job.job_id:
        return False
    if job.job_id != st.session_state.get("job_id"):
        return False
    st.session_state["job_done_seen"] = job.job_id
    snap = job.progress()
    if snap.status == "done" and snap.run_path:
        st.session_state["run_path"] = snap.run_path
        query_set("run", snap.run_path)
    query_set("job", None)
    return True


def _job_status() -> None:
    job = session_job()
    if job is None:
        st.caption("No training job running.")
        return
    snap = job.progress()
    if snap.active:
        eta = "" if snap.eta_s is None else f" · ETA {snap.eta_s:.0f}s"
        text = f"{md(snap.name, max_len=40)}: {escape_markdown(snap.describe())}"
        st.progress(min(max(snap.fraction, 0.0), 1.0), text=text)
        st.caption(f"elapsed {snap.elapsed_s:.0f}s{eta}")
    elif snap.status == "failed":
        st.error(f"Job {md(snap.name)} failed: {escape_markdown(str(snap.error))}", icon=":material/error:")
    else:
        what = escape_markdown(snap.describe())
        st.caption(f"Last job **{md(snap.name)}**: {what} in {snap.elapsed_s:.0f}s.")
    if handle_job_end(job):
        st.rerun()


def job_status_fragment(*, poll: bool = True) -> None:
    """Job progress that refreshes itself every ``JOB_POLL_S`` seconds while a job is active.

    With ``poll=False`` (the Train page, which polls the job itself) an active job is only named:
    two pollers would double the reruns that share the server's GIL with the training thread.
    """
    job = session_job()
    active = job is not None and job.progress().active
    if active and not poll:
        st.caption(f"**{md(job.progress().name, max_len=40)}** is training: progress on this page.")
        return
    st.fragment(_job_status, run_every=JOB_POLL_S if active else None)()


def sync_url() -> None:
    """Put the session's screen and run in the URL on every page (page switches drop parameters)."""
    from lazynet_core.ui.loaders import BUNDLED_SCREENS

    spec = st.session_state.get("screen")
    if spec is not None:
        query_set("screen", BUNDLED_SCREENS.get(str(spec.get("label"))) or str(spec["source"]))
    if st.session_state.get("run_path"):
        query_set("run", str(st.session_state["run_path"]))
    if st.session_state.get("presentation"):
        query_set("present", "1")
    else:
        query_set("present", None)


def sidebar(*, poll_job: bool = True) -> None:
    """Logo, presentation toggle, loaded screen, run and job progress (on every page).

    ``poll_job=False`` on the Train page, whose own fragment polls the job (see
    :func:`job_status_fragment`).
    """
    init_state()
    sync_url()
    if st.session_state.get("presentation"):  # the room needs the width; the toggle stays one click away
        st.set_page_config(initial_sidebar_state="collapsed")
    toast = st.session_state.pop("_toast", None)
    if toast:
        st.toast(toast, icon=":material/check:")
    logo = ASSETS / "logo.svg"
    if logo.exists():
        st.logo(str(logo), size="large")
    with st.sidebar:
        st.toggle(
            "Presentation mode", key="presentation", help="Large fonts for lab meetings and projectors."
        )
        st.segmented_control(
            "Figure download format",
            ["png", "svg"],
            key="export_fmt",
            help="Format of the camera button in every chart's toolbar.",
        )
        st.markdown("##### Screen")
        spec = st.session_state.get("screen")
        adata = None
        if spec is not None:
            with user_errors("Screen"):
                adata = current_screen()
        if adata is not None:
            st.markdown(f"**{md(spec['label'])}** · {adata.n_obs:,} cells × {adata.n_vars:,} genes")
        else:
            st.caption("none loaded")
        st.markdown("##### Run")
        ens = None
        if st.session_state.get("run_path"):
            with user_errors("Run"):
                ens = current_ensemble()
        if ens is not None:
            name = Path(st.session_state["run_path"]).name
            st.markdown(f"**{md(name)}** · {len(ens.replicas)} replicas · {ens.n_genes} genes")
        else:
            st.caption("none loaded")
        st.markdown("##### Training")
        job_status_fragment(poll=poll_job)
    apply_style()


def restore_from_url() -> None:
    """Once per session: reopen the screen / run / job named in the URL (a shared or refreshed view)."""
    from lazynet_core.ui.loaders import (
        bundled_spec,
        load_run_into_session,
        load_screen_into_session,
        resolve_h5ad,
        screen_spec,
    )

    if st.session_state.get("_url_restored"):
        return
    st.session_state["_url_restored"] = True
    if query_get("present") == "1":
        st.session_state["presentation"] = True
    screen = query_get("screen")
    if st.session_state.get("screen") is None and screen:
        with user_errors(f"Could not reopen the screen '{screen}' from the link"):
            if screen in ("demo", "real"):
                load_screen_into_session(bundled_spec(screen))
            else:
                load_screen_into_session(screen_spec(resolve_h5ad(screen)))
    run = query_get("run")
    if run and not st.session_state.get("run_path"):
        with user_errors("Could not reopen the run from the link"):
            load_run_into_session(run)
    session_job()


def frame_guard(page_file: str) -> None:
    """Send a page that was opened directly (a deep link in a fresh session) through ``app.py``.

    With a ``pages/`` folder, Streamlit 1.67 runs ``pages/X.py`` on its own for a URL such as
    ``/Networks`` until ``st.navigation`` has run once in the session, so the frame (sidebar, page
    config, URL state) would be skipped. The page stashes where the user wanted to go and the URL
    parameters, and ``app.py`` comes back to it after setting up navigation.
    """
    if st.session_state.get("_framed"):
        return
    st.session_state["_deep_link"] = page_file
    st.session_state["_deep_query"] = {k: st.query_params.get(k) for k in st.query_params}
    st.switch_page("app.py")


def follow_deep_link() -> None:
    """In ``app.py`` after ``st.navigation``: mark the session framed and resume a deep link."""
    st.session_state["_framed"] = True
    target = st.session_state.pop("_deep_link", None)
    if target:
        st.session_state["_deep_query"] = {k: st.query_params.get(k) for k in st.query_params}
        st.switch_page(target)


def restore_deep_query() -> None:
    """Put back the URL parameters a deep link carried (``st.switch_page`` drops them)."""
    stashed = st.session_state.pop("_deep_query", None) or {}
    for key, value in stashed.items():
        if value is not None and key not in st.query_params:
            st.query_params[key] = value


def chart_config(name: str) -> dict[str, Any]:
    """Plotly toolbar config whose camera button downloads ``name`` in the session's format."""
    from lazynet_core.plotting import chart_config as _config

    return _config(name, fmt=st.session_state.get("export_fmt") or "png")


def toast_after_rerun(message: str) -> None:
    """Show ``message`` as a toast on the next run (a toast right before ``st.rerun`` is lost)."""
    st.session_state["_toast"] = message


def small_table(frame: Any, **dataframe_options: Any) -> None:
    """A short table of formatted figures: ``st.dataframe``, or in presentation mode ``st.table``.

    The data grid draws on a canvas at a fixed font size; an HTML table takes presentation mode's
    large fonts. Use it for tables of a few rows (every method's scores), not for long sortable ones.
    """
    if st.session_state.get("presentation"):
        st.table(frame)
    else:
        st.dataframe(frame, width="stretch", **dataframe_options)


def plot(fig: Any, name: str, *, key: str, share: float = 1.0, square: bool = False) -> None:
    """``st.plotly_chart`` with the session's toolbar export format; larger fonts in presentation mode.

    ``share`` is the chart's share of the page width (0.5 in one of two columns): how long a title
    line may be at presentation sizes; ``square`` keeps a scatter's axes equal there
    (:func:`lazynet_core.plotting.for_presentation`).
    """
    big = bool(st.session_state.get("presentation"))
    if big:  # Streamlit's chart theme fixes font sizes, so presentation mode uses the figure's own template
        import plotly.graph_objects as go

        from lazynet_core.plotting import for_presentation

        # on a copy: a figure kept across reruns (the live loss chart) must not grow at every draw
        fig = for_presentation(go.Figure(fig), share=share, square=square)
    st.plotly_chart(fig, config=chart_config(name), key=key, theme=None if big else "streamlit")
