"""Streamlit helpers of the LazyNet app: the ONLY part of ``lazynet_core`` that imports Streamlit.

Why it lives inside the package and not in ``pages/``: Streamlit 1.67 turns every ``pages/*.py``
into a page until ``st.navigation`` runs, so shared helpers there would show up as pages.

- :mod:`~lazynet_core.ui.state`: session-state defaults and ``st.query_params`` helpers;
- :mod:`~lazynet_core.ui.loaders`: ``st.cache_resource`` loaders keyed by path strings, the job
  registry, the current screen / run / pairs of a session;
- :mod:`~lazynet_core.ui.layout`: page header, sidebar status, CSS and presentation mode, error
  display;
- :mod:`~lazynet_core.ui.services`: the computations behind the pages (no Streamlit; testable).
"""

from lazynet_core.ui.layout import (
    USER_ERRORS,
    apply_style,
    chart_config,
    follow_deep_link,
    frame_guard,
    need,
    page_header,
    plot,
    restore_deep_query,
    restore_from_url,
    session_job,
    sidebar,
    small_table,
    toast_after_rerun,
    user_errors,
)
from lazynet_core.ui.loaders import (
    current_ensemble,
    current_pairs,
    current_screen,
    job_registry,
    load_run_into_session,
    load_screen_into_session,
    runs_root,
)
from lazynet_core.ui.state import init_state, query_get, query_set

__all__ = [
    "USER_ERRORS",
    "apply_style",
    "chart_config",
    "follow_deep_link",
    "frame_guard",
    "restore_deep_query",
    "current_ensemble",
    "current_pairs",
    "current_screen",
    "init_state",
    "job_registry",
    "load_run_into_session",
    "load_screen_into_session",
    "need",
    "page_header",
    "plot",
    "query_get",
    "query_set",
    "restore_from_url",
    "runs_root",
    "session_job",
    "small_table",
    "sidebar",
    "toast_after_rerun",
    "user_errors",
]
