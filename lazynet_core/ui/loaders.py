"""Cached loaders and the session's current screen, run and pairs.

Heavy objects (AnnData, Ensemble, Pairs, the job registry) live in ``st.cache_resource``, keyed by
plain strings (paths, JSON of configs), and are shared read-only by every session of the process.
A session only stores the *keys* (``st.session_state["screen"]``, ``["run_path"]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from lazynet_core.errors import RunError, ScreenError
from lazynet_core.jobs import JobRegistry
from lazynet_core.ui.state import query_set

SCREEN_FIELDS = ("source", "pert_key", "control", "modality", "genes", "n_top_genes", "layer")
ATTEMPT_KEY = "screen_attempt"  # session key: the spec of the last screen that could not be read


def runs_root() -> Path:
    """Directory of saved runs: ``$LAZYNET_RUNS_DIR`` or ``./runs`` (kept out of git)."""
    root = Path(os.environ.get("LAZYNET_RUNS_DIR", "runs")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# trained runs are local data, never committed\n*\n")
    return root


@st.cache_resource
def job_registry() -> JobRegistry:
    """The process-wide training job registry (one active job at a time)."""
    return JobRegistry()


# ---- screens ------------------------------------------------------------------------------------
def resolve_h5ad(path: str) -> str:
    """Resolve a typed path to an existing ``.h5ad`` file, else raise a readable error."""
    text = (path or "").strip().strip('"').strip("'")
    if not text:
        msg = "No path given: type the full path of an .h5ad file, e.g. ~/data/screen.h5ad."
        raise ScreenError(msg)
    try:
        resolved = Path(text).expanduser().resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        msg = f"File not found: '{text}'. Check the path (it is read on the machine running the app)."
        raise ScreenError(msg) from None
    from lazynet_core.readers import check_source

    check_source(resolved)  # the same specific answer as the library and the CLI for a bad file
    return str(resolved)


def save_upload(name: str, data: bytes) -> str:
    """Write uploaded bytes to a temp folder named by their hash, under the upload's own (sanitised)
    name so that messages about the file name it; return its path."""
    if not name.lower().endswith(".h5ad"):
        msg = f"'{name}' is not an .h5ad file; upload an AnnData .h5ad screen."
        raise ScreenError(msg)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[-100:].lstrip(".") or "upload.h5ad"
    folder = Path(tempfile.gettempdir()) / "lazynet_uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def demo_source() -> str:
    """Path of the shipped demo screen (written from code if the file is missing)."""
    from lazynet_core import datasets

    path = datasets.demo_path()
    if not path.exists():
        datasets.write_demo(path)
    return str(path)


REAL_SCREEN_LABEL = "schraivogel2020"
# Short URL value (``?screen=``) of each bundled screen label.
BUNDLED_SCREENS = {"demo": "demo", REAL_SCREEN_LABEL: "real"}


def real_screen_source() -> str:
    """Path of the shipped real screen (Schraivogel et al. 2020, K562 TAP-seq CRISPRi)."""
    from lazynet_core import datasets

    path = datasets.real_screen_path()
    if not path.exists():
        msg = (
            f"The bundled real screen is missing ('{path}'); restore assets/{path.name} from the "
            "repository (git checkout -- assets)."
        )
        raise ScreenError(msg)
    return str(path)


def bundled_spec(name: str) -> dict[str, Any]:
    """Screen spec of a bundled screen: ``"demo"`` or ``"real"`` (the URL values)."""
    if name == "demo":
        return screen_spec(demo_source(), label="demo")
    if name == "real":
        return screen_spec(real_screen_source(), label=REAL_SCREEN_LABEL)
    msg = f"Unknown bundled screen {name!r}; choose 'demo' or 'real'."
    raise ValueError(msg)


def screen_spec(
    source: str,
    *,
    label: str | None = None,
    pert_key: str | None = None,
    control: str | None = None,
    modality: str | None = None,
    genes: str = "all",
    n_top_genes: int = 2000,
    layer: str | None = None,
) -> dict[str, Any]:
    """The small dict that identifies a loaded screen (session state and cache key)."""
    return {
        "source": str(source),
        "label": label or Path(source).stem,
        "pert_key": pert_key or None,
        "control": control or None,
        "modality": modality or None,
        "genes": genes,
        "n_top_genes": int(n_top_genes),
        "layer": layer or None,
    }


@st.cache_resource(show_spinner="Reading and normalising the screen…", max_entries=4)
def _read_screen(
    source: str,
    pert_key: str | None,
    control: str | None,
    modality: str | None,
    genes: str,
    n_top_genes: int,
    layer: str | None = None,
) -> Any:
    from lazynet_core.data import read_screen

    try:
        return read_screen(
            source,
            pert_key=pert_key,
            control=control,
            modality=modality,
            genes=genes,
            n_top_genes=n_top_genes,
            layer=layer,
        )
    except OSError as exc:  # h5py raises bare OSError for corrupt / truncated files
        msg = f"Could not read '{source}' as an .h5ad file ({exc}). Is the file complete and an AnnData?"
        raise ScreenError(msg) from exc


def _screen_key(spec: dict[str, Any]) -> tuple:
    return tuple(spec.get(k) for k in SCREEN_FIELDS)


@st.cache_data(show_spinner=False, max_entries=16)
def _choices(source: str, stamp: float) -> dict[str, Any] | None:
    from lazynet_core.data import screen_choices

    try:
        return screen_choices(source)
    except (ScreenError, OSError):
        return None  # not a readable AnnData: there is nothing to choose


def screen_choices(source: str) -> dict[str, Any] | None:
    """Columns, their most common values and count layers of a screen file (``data.screen_choices``;
    cached per file version), or ``None`` when the file cannot be read at all."""
    path = Path(source)
    stamp = path.stat().st_mtime if path.exists() else 0.0
    return _choices(str(source), stamp)


def try_load_screen(spec: dict[str, Any]) -> Any:
    """``load_screen_into_session``, remembering ``spec`` as the failed attempt when reading fails,
    so the Data page can offer the column, control and counts choices for it."""
    st.session_state[ATTEMPT_KEY] = spec
    adata = load_screen_into_session(spec)
    st.session_state.pop(ATTEMPT_KEY, None)
    return adata


def forget_failed_attempt() -> None:
    """Drop the last failed attempt: a new load starts clean (its own failure, if any, replaces it)."""
    st.session_state.pop(ATTEMPT_KEY, None)


def failed_attempt() -> dict[str, Any] | None:
    """The spec of the last screen that could not be read (``None`` after a successful load)."""
    return st.session_state.get(ATTEMPT_KEY)


def read_spec(spec: dict[str, Any]) -> Any:
    """The AnnData of a screen spec (cached)."""
    return _read_screen(*_screen_key(spec))


def load_screen_into_session(spec: dict[str, Any]) -> Any:
    """Read ``spec``; on success make it the session's screen (a different screen unloads the run)."""
    adata = read_spec(spec)
    old = st.session_state.get("screen")
    st.session_state["screen"] = spec
    if old is not None and _screen_key(old) != _screen_key(spec) and st.session_state.get("run_path"):
        ens = current_ensemble()
        if ens is not None and list(ens.genes) != list(adata.var_names):
            st.session_state["run_path"] = None
            query_set("run", None)
    # bundled screens by name; any other by its path, so a copied URL reopens it on this machine
    query_set("screen", BUNDLED_SCREENS.get(str(spec.get("label"))) or str(spec["source"]))
    return adata


def current_screen() -> Any | None:
    """The session's AnnData, or ``None`` when no screen is loaded."""
    spec = st.session_state.get("screen")
    return None if spec is None else read_spec(spec)


# ---- runs ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the run…", max_entries=8)
def _load_run(path: str, stamp: float) -> Any:
    from lazynet_core.runs import load_run

    return load_run(path)


def load_ensemble(path: str) -> Any:
    """The Ensemble saved at ``path`` (cached; reloaded when its manifest changes)."""
    manifest = Path(path) / "config.json"
    stamp = manifest.stat().st_mtime if manifest.exists() else 0.0
    return _load_run(str(path), stamp)


def load_run_into_session(path: str) -> Any:
    """Load the run at ``path`` and make it the session's run; load its screen too if none is.

    The run's manifest records how its screen was read (``provenance["screen"]``), so a shared
    URL with only ``?run=...`` reopens the same view.
    """
    path = str(Path(path).expanduser())
    ens = load_ensemble(path)
    prov = ens.info.get("provenance", {}) if isinstance(ens.info, dict) else {}
    spec = prov.get("screen")
    if st.session_state.get("screen") is None and spec and Path(spec.get("source", "")).exists():
        load_screen_into_session(spec)
    if st.session_state.get("screen") is not None:
        from lazynet_core.runs import check_genes

        check_genes(ens, read_spec(st.session_state["screen"]).var_names)
    st.session_state["run_path"] = path
    query_set("run", path)
    return ens


def current_ensemble() -> Any | None:
    """The session's Ensemble, or ``None``."""
    path = st.session_state.get("run_path")
    return None if not path else load_ensemble(path)


@st.cache_resource(show_spinner="Building pairs and split…", max_entries=8)
def _pairs(screen_key: tuple, pair_config_json: str) -> Any:
    from lazynet_core.config import PairConfig
    from lazynet_core.pairs import make_pairs

    spec = dict(zip(SCREEN_FIELDS, screen_key, strict=True))
    return make_pairs(read_spec(spec), PairConfig.from_dict(json.loads(pair_config_json)))


def pairs_for(spec: dict[str, Any], pair_config: Any) -> Any:
    """Pairs of a screen spec under ``pair_config`` (cached)."""
    return _pairs(_screen_key(spec), json.dumps(pair_config.to_dict(), sort_keys=True))


def current_pairs(ensemble: Any) -> Any:
    """Pairs of the session's screen with the run's own split; genes must match the run."""
    from lazynet_core.runs import check_genes, check_split

    spec = st.session_state.get("screen")
    if spec is None:
        msg = "No screen is loaded: load the screen this run was trained on (Data page)."
        raise RunError(msg)
    check_genes(ensemble, read_spec(spec).var_names)
    pairs = pairs_for(spec, ensemble.pair_config)
    check_split(ensemble, pairs)
    return pairs


# ---- derived results of the current run (cached per run path and screen) ---------------------------
def _run_key() -> tuple[str, tuple]:
    path = st.session_state.get("run_path")
    spec = st.session_state.get("screen")
    if not path or spec is None:
        msg = "Load a screen and a run first (Data and Train pages)."
        raise RunError(msg)
    return str(path), _screen_key(spec)


@st.cache_resource(show_spinner="Evaluating LazyNet and the baselines…", max_entries=16)
def _evaluation(path: str, screen_key: tuple, reference: str) -> Any:
    from lazynet_core.ui import services

    ens = load_ensemble(path)
    pairs = current_pairs_for(ens, screen_key)
    return services.evaluation_frame(ens, pairs, reference)


def current_pairs_for(ensemble: Any, screen_key: tuple) -> Any:
    """Pairs of an explicit screen key with the run's split."""
    return _pairs(screen_key, json.dumps(ensemble.pair_config.to_dict(), sort_keys=True))


def run_evaluation(reference: str = "independent") -> Any:
    """Tidy ``metrics.evaluate`` frame of the current run on every held-out set (cached).

    ``reference`` is the control reference of observed deltas (``"independent"`` or the flattering
    ``"training"``); see ``services.reference_for``.
    """
    path, key = _run_key()
    return _evaluation(path, key, reference)


@st.cache_resource(show_spinner="Computing per-gene effects and DE tests…", max_entries=64)
def _effects(path: str, screen_key: tuple, p_idx: int, role: str, reference: str) -> Any:
    from lazynet_core.ui import services

    ens = load_ensemble(path)
    pairs = current_pairs_for(ens, screen_key)
    return services.effects_frame(ens, pairs, p_idx, role, reference=reference)


def run_effects(p_idx: int, role: str, reference: str = "independent") -> Any:
    """Per-gene effects frame (``services.effects_frame``) of one perturbation of the current run (cached)."""
    path, key = _run_key()
    return _effects(path, key, int(p_idx), role, reference)


@st.cache_resource(show_spinner="Computing the Jacobian…", max_entries=16)
def _jacobian(path: str, genes: tuple[str, ...] | None) -> Any:
    from lazynet_core.ui import services

    return services.dense_jacobian(load_ensemble(path), None if genes is None else list(genes))


def run_jacobian(genes: tuple[str, ...] | None = None) -> Any:
    """Dense ``JacobianResult`` of the current run over ``genes`` (all genes if ``None``; cached)."""
    path = st.session_state.get("run_path")
    if not path:
        msg = "No run loaded: train or load one on the Train page."
        raise RunError(msg)
    return _jacobian(str(path), genes)


@st.cache_resource(max_entries=8)
def _provider(path: str) -> Any:
    from lazynet_core.jacobian import column_provider

    return column_provider(load_ensemble(path))


@st.cache_resource(show_spinner="Scoring planted-network recovery…", max_entries=8)
def _planted(path: str, screen_key: tuple) -> Any:
    from lazynet_core.ui import services

    ens = load_ensemble(path)
    pairs = current_pairs_for(ens, screen_key)
    adata = read_spec(dict(zip(SCREEN_FIELDS, screen_key, strict=True)))
    truth = adata.uns.get("planted_network") or services.read_planted_network(screen_key[0])
    if truth is None or ens.n_genes > services.DENSE_MAX_GENES:
        return None
    return services.planted_recovery_table(ens, pairs, truth, _jacobian(path, None))


def run_planted_recovery() -> Any:
    """Planted-network recovery table of the current run (``None`` for real screens)."""
    path, key = _run_key()
    return _planted(path, key)


@st.cache_resource(show_spinner="Checking how reproducible the screen's co-variation is…", max_entries=8)
def _slope_agreement(screen_key: tuple) -> Any:
    from lazynet_core.config import PairConfig
    from lazynet_core.observational import slope_agreement

    spec = dict(zip(SCREEN_FIELDS, screen_key, strict=True))
    return slope_agreement(pairs_for(spec, PairConfig()))


def screen_slope_agreement(spec: dict[str, Any]) -> Any:
    """``observational.slope_agreement`` of a screen under the default split (cached), or ``None``
    where the screen cannot be split (too few controls or perturbations: the Train form says why
    when training starts); the line is optional, so no error of its own is shown."""
    try:
        return _slope_agreement(_screen_key(spec))
    except ValueError:  # ScreenError and the configuration's own checks
        return None


@st.cache_resource(show_spinner="Scoring the planted network's oracle…", max_entries=8)
def _oracle(path: str, screen_key: tuple, reference: str) -> Any:
    from lazynet_core.datasets import MAX_TOTAL_EFFECT_GENES
    from lazynet_core.ui import services

    if services.read_synthetic_kind(screen_key[0]) != "log-linear":
        return None  # real screens have no truth; Hill dynamics have no constant total effect
    truth = services.read_planted_network(screen_key[0])
    if truth is None:
        return None
    pairs = current_pairs_for(load_ensemble(path), screen_key)
    genes = {str(g) for key in ("source", "target") for g in truth[key]} | {str(g) for g in pairs.genes}
    if len(genes) > MAX_TOTAL_EFFECT_GENES:  # a dense inverse at paper scale: skip
        return None
    evaluation = _evaluation(path, screen_key, reference)
    return services.planted_oracle(evaluation, pairs, truth, reference=reference)


def run_planted_oracle(reference: str = "independent") -> Any:
    """``services.planted_oracle`` of the current run per never-trained set (``None`` unless the
    screen is a log-linear synthetic one with a planted network, such as the demo)."""
    path, key = _run_key()
    return _oracle(path, key, reference)


@st.cache_resource(show_spinner="Reading the screen's evidence per edge…", max_entries=8)
def _evidence(path: str, screen_key: tuple, noise_factor: float) -> Any:
    from lazynet_core.evidence import EdgeEvidence, EvidenceConfig

    ens = load_ensemble(path)
    pairs = current_pairs_for(ens, screen_key)
    # co-expression from the cells the run's covariance start read (ModelConfig.covariance_cells)
    config = EvidenceConfig(noise_factor=float(noise_factor), cells=ens.model_config.covariance_cells)
    return EdgeEvidence(pairs, config)


@st.cache_resource(show_spinner="Growing the network from the seeds…", max_entries=32)
def _subgraph(
    path: str,
    screen_key: tuple,
    seeds: tuple[str, ...],
    breadth: int,
    depth: int,
    min_abs: float,
    direction: str,
    model_only: bool,
    max_nodes: int,
    noise: float,
) -> Any:
    from lazynet_core.ui import services

    return services.subgraph(
        _provider(path),
        list(seeds),
        breadth=breadth,
        depth=depth,
        min_abs=min_abs,
        direction=direction,
        evidence=_evidence(path, screen_key, noise),
        include_model_only=model_only,
        max_nodes=max_nodes,
    )


def run_subgraph(view: dict[str, Any]) -> Any:
    """Annotated seed subgraph of the current run for network settings ``view`` (cached; do not mutate)."""
    path, key = _run_key()
    return _subgraph(
        path,
        key,
        tuple(view["seeds"]),
        int(view["breadth"]),
        int(view["depth"]),
        float(view["min_abs"]),
        str(view["direction"]),
        bool(view["model_only"]),
        int(view["max_nodes"]),
        float(view["noise"]),
    )
