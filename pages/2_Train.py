"""Train page: settings form, background training with live progress, saved runs."""

import datetime as dt
import re
import time
from pathlib import Path

import streamlit as st

from lazynet_core import plotting, ui
from lazynet_core.config import RECIPES, ModelConfig, PairConfig, TrainConfig, recipe_configs, recipe_name
from lazynet_core.errors import TrainingError
from lazynet_core.jobs import TrainingJob
from lazynet_core.text import escape_markdown
from lazynet_core.ui import loaders, recipe_results, services
from lazynet_core.ui.layout import md

#: Shown under the table of measured results (``recipe_results.recipe_scores``, read from
#: benchmarks/results): what the table does not say, so no one picks a recipe for a win it does not have.
RECIPE_NOTE = (
    "Δ-Pearson against held-out control cells, cross-validated over perturbations; a win needs p < 0.05 "
    "and a gain ≥ 0.01. anchored_pooled beats control covariance on the synthetic screens only because "
    "it starts from the pooled covariance (controls + training perturbed cells), which it equals: the "
    "gain is those cells', not the model's. On held-out doubles no recipe beats the additive model "
    "(anchored 0.582 vs 0.587); anchored with Shrink 2 does (0.722), but by denoising: the additive model "
    "with its arms shrunk the same way scores 0.715. Where doubles truly interact (redundant "
    "regulators), only anchored_counts predicts part of the interaction (r 0.21, all from adding the "
    "arms in counts: its count-space null scores 0.22), and the arms summed in counts with no model "
    "predict it better (0.25). Where a gene needs both regulators (an AND gate), the double is the product "
    "of its arms' fold changes; anchored_folds multiplies them by its output form, and the arms' folds "
    "multiplied with no model still predict it better (README, Combinations)."
)

ui.frame_guard("pages/2_Train.py")
ui.page_header(
    "Train", "Train a LazyNet ensemble on the loaded screen, in the background on this machine's CPU."
)
adata, _ = ui.need(screen=True)
spec = st.session_state["screen"]


# Each poll is a fragment rerun in the server, whose Python shares the GIL with the training thread,
# and a repaint in the browser, which shares the cores with it: a poll every JOB_POLL_S (2 s), a
# loss chart rebuilt only when an epoch ended, and no second poller in the sidebar (app.py) keep
# watching this page from slowing training (benchmarks/busy_cpu.py).
POLL_S = ui.layout.JOB_POLL_S


LIVE_LOSS_EVERY_S = 10.0  # a Plotly redraw costs the browser CPU that training needs on a small laptop


def _live_loss(job_id: str, curves: dict) -> object:
    """The live loss figure, rebuilt when an epoch was added but at most every ``LIVE_LOSS_EVERY_S``
    seconds (short epochs would otherwise redraw it at every poll); the same figure is not redrawn."""
    n_points = sum(len(points) for points in curves.values())
    cached = st.session_state.get("_live_loss")
    stale = cached is None or cached[0] != job_id or (
        cached[1] != n_points and time.monotonic() - cached[2] >= LIVE_LOSS_EVERY_S)
    if stale:
        cached = (job_id, n_points, time.monotonic(), plotting.loss_curves(curves))
        st.session_state["_live_loss"] = cached
    return cached[3]


def live_job() -> None:
    """Progress, loss curves and Cancel for this session's job; reruns itself every ``POLL_S`` s."""
    job = ui.session_job()
    if job is None:
        st.caption("No training job yet: set the options below and press **Start training**.")
        return
    snap = job.progress()
    cols = st.columns(4)
    cols[0].metric("Status", snap.status)
    cols[1].metric("Replica", f"{min(snap.replica + 1, snap.n_replicas)}/{snap.n_replicas}")
    cols[2].metric("Elapsed", f"{snap.elapsed_s:.0f} s")
    cols[3].metric("ETA", "–" if snap.eta_s is None else f"{snap.eta_s:.0f} s")
    if snap.active:
        st.progress(min(max(snap.fraction, 0.0), 1.0), text=escape_markdown(snap.describe()))
        if st.button("Cancel training", icon=":material/stop:", key="cancel_job"):
            job.cancel()
            st.toast("Cancelling: training stops before its next mini-batch.")
    elif snap.status == "failed":
        st.error(f"**Training failed.** {escape_markdown(str(snap.error))}", icon=":material/error:")
    elif snap.status == "cancelled":
        st.warning("Training was cancelled; nothing was saved.", icon=":material/cancel:")
    elif snap.budget_cut:
        st.warning(
            f"Run **{md(snap.name)}** saved to {md(snap.run_path, max_len=120)} and loaded, but "
            f"**stopped by the time budget {snap.budget_cut}**.",
            icon=":material/timer_off:",
        )
    else:
        st.success(
            f"Run **{md(snap.name)}** saved to {md(snap.run_path, max_len=120)} and loaded.",
            icon=":material/check_circle:",
        )
    if snap.curves and snap.status != "done":  # a finished run's curves are shown below, from its history
        if not snap.active:  # cancelled or failed: every epoch it ran, not the last throttled redraw
            st.session_state.pop("_live_loss", None)
        ui.plot(_live_loss(job.job_id, snap.curves), "loss_curves", key="live_loss")
    elif not snap.active:
        st.session_state.pop("_live_loss", None)
    if ui.layout.handle_job_end(job):
        st.rerun()


job = ui.session_job()
active = job is not None and job.progress().active
st.fragment(live_job, run_every=POLL_S if active else None)()

# While a job trains the settings fold away, so its progress and Cancel are what the page shows (the
# browser keeps its scroll position: a long form would leave them off screen after Start).
if active:
    settings_box = st.expander("Settings (one job trains at a time; open to prepare the next)",
                               expanded=False, icon=":material/tune:")
else:
    st.subheader("Settings")
    settings_box = st.container()
with settings_box, st.form("train_form"):
    c1, c2, c3, c4 = st.columns(4)
    replicas = c1.number_input("Replicas", 1, 10, 3, help="Independently seeded models; the paper uses 3.")
    hidden = c2.number_input(
        "Hidden width (0 = auto)",
        0,
        4096,
        0,
        help="Auto: one unit per gene up to 1024 genes, else a 256-unit bottleneck.",
    )
    epochs = c3.number_input(
        "Epochs", 1, 500, 40, help="Passes over the training pairs (cosine learning-rate decay)."
    )
    budget = c4.number_input(
        "Time budget (s)", 5, 24 * 3600, 600, help="Training stops cleanly when it is spent."
    )
    c5, c6, c7, c8 = st.columns(4)
    pairing = c5.selectbox(
        "Pairing",
        ["pseudobulk", "random_cells"],
        help="pseudobulk: means of 16 cells a side (less noise); random_cells: single cells.",
    )
    split = c6.selectbox(
        "Held-out split",
        ["perturbations", "cells"],
        help="perturbations: 20 % of targets never seen in training, plus 20 % of the other "
        "perturbations' cells; cells: only 20 % of each perturbation's cells held out.",
    )
    seed = c7.number_input("Seed", 0, 10**6, 0)
    # a stable key: a default that changed on every rerun would reset what the user typed
    # from the screen's label, kept to what a run directory name allows (jobs.safe_run_name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(spec["label"])).strip("-.")[:60] or "run"
    st.session_state.setdefault("run_name", f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}")
    name = c8.text_input("Run name", key="run_name")
    recipe = st.radio(
        "Recipe",
        list(RECIPES),
        horizontal=True,
        help="Published: the method as in the paper (delta pairs, zero output start). Covariance: the "
        "output layer starts at the control cells' regression and each pre-state averages 256 control "
        "cells. Anchored: the same start, kept where the screen has nothing to say: an unseen "
        "target is predicted by the control cells' regression, a trained one fitted to its measured "
        "change (its pre-state is the control mean, so it ignores the Pairing choice). Anchored_counts: "
        "anchored, with the output change added in expression instead of log space, so that redundant "
        "regulators' effects add as they do in the cell. Anchored_folds: anchored, with the output a fold "
        "change of expression (log without the pseudo-count of 1), so that the effects of regulators a gene "
        "needs both of multiply, also at genes of few counts. Anchored_pooled: anchored, its start read from "
        "the control cells and the training perturbed cells, each group centred on its own mean (more "
        "cells, a less noisy regression). Covariance and the anchored recipes need one "
        "hidden unit per gene (hidden width 0 and at most 1024 genes). "
        "How each compares with its baselines: README, Results.",
    )
    if sentence := recipe_results.default_recipe_sentence():  # why the default is the default
        st.caption(sentence)
    shrink = st.columns(4)[0].number_input(
        "Shrink (standard errors)", 0.0, 10.0, 0.0, step=0.5,
        help="L1 prior on each perturbation's predicted change: changes smaller than this many standard "
        "errors of the perturbation's mean are set to 0 (most genes of a knock-down do not move). 0 is "
        "the method as published. 2 with the anchored recipe beat the additive model on simulated doubles "
        "(by denoising), but lowered the fit of held-out cells on the real screen (0.285 to 0.261).",
    )
    scores = recipe_results.recipe_scores()
    agreement = loaders.screen_slope_agreement(spec)
    # the evidence behind the line above, one click away (it is long; the line says what it concludes)
    with st.expander("Measured per recipe, next to control and pooled covariance", icon=":material/table:"):
        if scores is not None:
            st.markdown("benchmarks/results; each cell: real · demo · Hill screen; – not measured: runs "
                        "stored before pooled covariance existed")
            st.table(scores)
        st.caption(RECIPE_NOTE)
        if agreement is not None:
            st.caption(services.slope_agreement_sentence(agreement, recipe_results.pooling_measured()))
    submitted = st.form_submit_button(
        "Start training", type="primary", icon=":material/play_arrow:", key="start_training"
    )

if submitted:
    with ui.user_errors("Could not start training"):
        model_config, pair_config = recipe_configs(
            recipe,
            model_config=ModelConfig(hidden=int(hidden) or None),
            pair_config=PairConfig(pairing=pairing, split=split, seed=int(seed)),
        )
        train_config = TrainConfig(
            replicas=int(replicas),
            epochs=int(epochs),
            time_budget_s=float(budget),
            seed=int(seed),
            threads=None,  # auto: 1 for app-sized models; never every core (TrainConfig.threads)
            shrink=float(shrink),
        )
        if model_config.start != "zero" and model_config.hidden_for(adata.n_vars) != adata.n_vars:
            msg = (f"The {recipe} recipe needs one hidden unit per gene; this screen has {adata.n_vars} "
                   f"genes and the hidden width would be {model_config.hidden_for(adata.n_vars)}. Set the "
                   "hidden width to 0 (auto) on a screen of at most 1024 genes, or use the published recipe.")
            raise TrainingError(msg)
        pairs = loaders.pairs_for(spec, pair_config)
        provenance = {
            "source": adata.uns["lazynet"].get("source"),
            "sha256": adata.uns["lazynet"].get("sha256"),
            "screen": spec,
        }
        new_job = TrainingJob(
            pairs, model_config, train_config, runs_root=ui.runs_root(), name=name, provenance=provenance
        )
        ui.job_registry().submit(new_job)
        st.session_state["job_id"] = new_job.job_id
        st.session_state.pop("run_name", None)  # the next run gets a fresh default name
        ui.query_set("job", new_job.job_id)
        st.rerun()

st.subheader("Saved runs")
from lazynet_core.runs import list_runs  # noqa: E402  (after the form: keeps the page responsive)

runs = list_runs(ui.runs_root())
if runs.empty:
    st.caption(
        f"No saved runs in {md(ui.runs_root().resolve(), max_len=120)} yet. "
        "Runs trained with the CLI there appear here too."
    )
else:
    runs = services.runs_fitting(runs, genes=adata.var_names)
    st.dataframe(runs.drop(columns=["path", "genes_sha256"]), hide_index=True, width="stretch",
                 column_config={"fits_screen": st.column_config.CheckboxColumn(
                     "fits this screen", help="Trained on as many genes as the loaded screen has."),
                     "n_genes": "genes", "loss_on": "loss on",
                     "best_loss": st.column_config.NumberColumn("best loss", format="%.4f")})
    current = Path(st.session_state["run_path"]).name if st.session_state.get("run_path") else None
    names = runs["name"].tolist()
    fitting = runs.loc[runs["fits_screen"], "name"].tolist()
    default = current if current in names else (fitting[-1] if fitting else names[-1])
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    choice = c1.selectbox("Run", names, index=names.index(default),
                          format_func=lambda n: n if n in fitting else f"{n} (other screen)")
    if c2.button("Load run", icon=":material/upload:", key="load_run"):
        with ui.user_errors("Could not load that run"):
            ui.load_run_into_session(runs.loc[runs["name"] == choice, "path"].iloc[0])
            st.rerun()

ens = None
if st.session_state.get("run_path"):
    with ui.user_errors("Could not open the loaded run"):
        ens = ui.current_ensemble()
if ens is not None and not ens.history.empty:
    st.markdown(
        f"**Loaded run** {md(Path(st.session_state['run_path']).name)} · {len(ens.replicas)} replicas · "
        f"{ens.n_genes} genes · split: held-out {ens.pair_config.split} · recipe: "
        f"{recipe_name(ens.model_config, ens.pair_config)}"
        + (f" · shrink {ens.train_config.shrink:g} SE" if ens.train_config.shrink else "")
    )
    cut = services.time_budget_cut(ens)
    if cut:
        st.warning(f"**Stopped by the time budget {cut}.** The model may be under-trained: raise the "
                   "budget or lower the epochs and train again.", icon=":material/timer_off:")
    ui.plot(plotting.loss_curves(ens.history), "run_loss", key="run_loss")
