"""Session-state defaults and URL (``st.query_params``) helpers.

Session state holds small keys only (paths, names, flags), never arrays or models: heavy objects
live in ``st.cache_resource`` keyed by those strings (see :mod:`lazynet_core.ui.loaders`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

DEFAULTS: dict[str, Any] = {
    "screen": None,  # dict(source=, label=, pert_key=, control=, modality=, genes=) or None
    "run_path": None,  # str path of the loaded run
    "job_id": None,  # id of this session's training job
    "job_done_seen": None,  # job id whose completion this session has already handled
    "presentation": False,  # large fonts for lab meetings
    "perturbation": None,  # selected perturbation on the Effects page
    "gene_set": None,  # selected gene set on the Jacobian / Networks pages
}

# URL keys: short names so a shared link stays readable.
URL_KEYS = {"run": "run", "job": "job", "perturbation": "pert", "gene_set": "genes", "screen": "screen",
            "eff_modality": "modality", "eff_gene": "gene", "jac_gene": "jgene", "net_module": "net"}


def init_state() -> None:
    """Fill missing session keys with their defaults (idempotent, once per script run)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


#: view choices that outlive a page switch in the session (a page switch drops the URL's parameters and
#: Streamlit forgets the state of widgets not drawn): their last value is kept in session state too
VIEW_KEYS = ("gene_set", "eff_modality", "eff_gene", "jac_gene", "net_module")


def query_get(name: str) -> str | None:
    """Value of URL parameter ``URL_KEYS[name]`` (or ``name``), ``None`` if absent or empty.

    A :data:`VIEW_KEYS` name absent from the URL (as after a page switch) falls back to the value
    this session last set, so a view comes back as it was left.
    """
    value = st.query_params.get(URL_KEYS.get(name, name))
    if not value and name in VIEW_KEYS:
        value = st.session_state.get(f"_view_{name}")
    return value or None


def query_set(name: str, value: str | None) -> None:
    """Set (or with ``None`` remove) URL parameter ``URL_KEYS[name]``; no-op if unchanged."""
    if name in VIEW_KEYS:
        st.session_state[f"_view_{name}"] = None if value is None else str(value)
    key = URL_KEYS.get(name, name)
    if value is None:
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != str(value):
        st.query_params[key] = str(value)
