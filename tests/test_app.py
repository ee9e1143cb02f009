"""AppTest for every page: widgets present, no exception, session state, background job, bad input.

AppTest runs no JavaScript and does not fire ``run_every`` fragments by itself: a running job is
polled by calling ``run()`` again, as the architecture note says.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90


@pytest.fixture(scope="module", autouse=True)
def runs_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAZYNET_RUNS_DIR", str(path))
        mp.chdir(ROOT)
        yield path


@pytest.fixture(autouse=True)
def no_job_left_running():
    yield
    from lazynet_core.ui.loaders import job_registry

    job = job_registry().active()
    if job is not None:
        job.cancel()
        job.wait(10)


def _app(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    at.run()
    _ok(at)
    return at


def _with_demo() -> AppTest:
    at = _goto(_app(), "1_Data")
    at.button(key="load_demo").click().run()
    _ok(at)
    return at


def _train(at: AppTest, *, replicas=1, epochs=3, name=None) -> AppTest:
    _goto(at, "2_Train")
    at.number_input[0].set_value(replicas)
    at.number_input[2].set_value(epochs)
    if name:
        at.text_input[0].set_value(name)
    at.button(key="start_training").click().run()
    _ok(at)
    return at


def _poll(at: AppTest, until, timeout: float = 60) -> AppTest:
    end = time.time() + timeout
    while time.time() < end:
        time.sleep(0.3)
        at.run()
        _ok(at)
        if until(at):
            return at
    raise AssertionError("condition not reached while polling the app")


@pytest.fixture(scope="module")
def trained_run(runs_dir) -> str:
    """One tiny run on the demo screen shared by the exploration-page tests."""
    at = _train(_with_demo(), replicas=2, epochs=3, name="shared")
    _poll(at, lambda a: a.session_state["run_path"])
    return at.session_state["run_path"]


# ---- frame ---------------------------------------------------------------------------------------
def test_home_frame_and_sidebar():
    at = _app()
    _ok(at)
    text = " ".join(m.value for m in at.markdown)
    assert "LazyNet learns" in text and "baselines" in text
    assert at.toggle(key="presentation").value is False
    assert "none loaded" in " ".join(c.value for c in at.sidebar.caption)
    at.toggle(key="presentation").set_value(True).run()
    _ok(at)
    assert at.session_state["presentation"] is True


def test_home_real_screen_loads_with_source_and_licence():
    at = _app()
    assert at.button(key="home_real").label == "Real screen: Schraivogel et al. 2020, K562 TAP-seq"
    at.button(key="home_real").click().run()
    _ok(at)
    assert at.session_state["screen"]["label"] == "schraivogel2020"
    assert at.query_params["screen"] == "real"
    at = _goto(at, "1_Data")
    assert int(at.metric[0].value.replace(",", "")) == 18013  # HS2's 946 cells dropped (an enhancer)
    assert int(at.metric[1].value) == 72 and int(at.metric[3].value) == 13
    assert any("HS2" in w.value for w in at.warning)
    text = " ".join(c.value for c in at.caption)
    assert "Schraivogel" in text and "MIT" in text
    assert any("Permission is hereby granted" in c.value for c in at.code)
    assert not at.error


def test_data_page_real_screen_button_and_url():
    at = _goto(_app(), "1_Data")
    at.button(key="load_real").click().run()
    _ok(at)
    assert at.session_state["screen"]["label"] == "schraivogel2020"
    fresh = _app(screen="real")  # a shared link reopens it
    _ok(fresh)
    assert fresh.session_state["screen"]["label"] == "schraivogel2020"


def test_train_and_effects_on_the_real_screen(runs_dir):
    at = _goto(_app(), "1_Data")
    at.button(key="load_real").click().run()
    _train(at, replicas=1, epochs=2, name="real-small")
    _poll(at, lambda a: a.session_state["run_path"], timeout=120)
    _goto(at, "3_Effects")
    assert not at.error
    assert [m.label for m in at.metric][0] == "LazyNet Δ-Pearson"
    assert any("against the best baseline" in b.value for b in [*at.info, *at.warning, *at.success])
    assert not [r for r in at.radio if r.key == "eff_modality"]  # CRISPRi only: nothing to filter
    # A 72-gene TAP-seq panel holds none of the modules' seeds: the Networks page starts from the screen's
    # most-perturbed targets and says so; the Jacobian page opens on the top genes by |J|, with a heatmap.
    _goto(at, "5_Networks")
    assert not at.error, [e.value for e in at.error]
    told = " ".join(i.value for i in at.info)
    assert "most-perturbed targets" in told and "GPX4" in told
    from lazynet_core import datasets
    from lazynet_core.data import read_screen
    from lazynet_core.pairs import make_pairs
    from lazynet_core.ui import services

    targets = services.perturbed_genes(make_pairs(read_screen(str(datasets.real_screen_path()))), limit=6)
    assert at.multiselect(key="net_seeds_ferroptosis").value == targets
    _goto(at, "4_Jacobian")
    assert not at.error, [e.value for e in at.error]
    assert at.radio(key="jac_kind").value == "top genes by |J|"
    assert len(at.get("plotly_chart")) == 1


def test_train_page_says_how_reproducible_the_screens_co_variation_is():
    """The real screen's controls pin the covariance slopes down; the demo's are mostly noise."""
    at = _goto(_app(), "1_Data")
    at.button(key="load_real").click().run()
    _goto(at, "2_Train")
    real = " ".join(c.value for c in at.caption)
    assert "median r = 0.9" in real and "largely reproducible" in real and "real TAP-seq (r 0.93)" in real
    demo = _goto(_with_demo(), "2_Train")
    captions = " ".join(c.value for c in demo.caption)
    assert "mostly noise" in captions and "median r = 0." in captions


def test_home_start_with_demo_loads_the_screen():
    at = _app()
    at.button(key="home_demo").click().run()
    _ok(at)
    assert at.session_state["screen"]["label"] == "demo"


@pytest.mark.parametrize("page", ["2_Train", "3_Effects", "4_Jacobian", "5_Networks"])
def test_pages_without_data_point_to_data_page(page):
    at = _goto(_app(), page)
    assert at.info and "Data" in at.info[0].value
    assert not at.error


# ---- data page -------------------------------------------------------------------------------------
def test_data_page_loads_demo():
    at = _with_demo()
    labels = [m.label for m in at.metric]
    assert labels == ["Cells", "Genes", "Control cells", "CRISPRi perturbations", "CRISPRa perturbations"]
    assert int(at.metric[0].value.replace(",", "")) > 1000
    assert at.session_state["screen"]["label"] == "demo"
    assert at.query_params["screen"] == "demo"
    assert len(at.get("plotly_chart")) == 2
    assert not at.error


def test_data_page_bad_inputs_show_errors(tmp_path):
    at = _goto(_app(), "1_Data")
    at.text_input[0].set_value(str(tmp_path / "missing.h5ad"))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert "File not found" in at.error[0].value
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    at.text_input[0].set_value(str(text_file))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert "not an .h5ad file" in at.error[0].value
    corrupt = tmp_path / "corrupt.h5ad"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    at.text_input[0].set_value(str(corrupt))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert at.error and at.session_state["screen"] is None


def test_data_page_non_screen_file_shows_error(tmp_path):
    import anndata as ad
    import numpy as np
    import pandas as pd

    path = tmp_path / "cells.h5ad"
    obs = pd.DataFrame({"batch": ["a", "b"] * 10}, index=[f"c{i}" for i in range(20)])
    ad.AnnData(np.ones((20, 3), dtype=np.float32), obs=obs).write_h5ad(path)
    at = _goto(_app(), "1_Data")
    at.text_input[0].set_value(str(path))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert at.error and at.session_state["screen"] is None
    retry = [e for e in at.expander if e.label.startswith("Choose how to read")]
    assert retry and "message above says why" in " ".join(c.value for c in at.caption)
    # a new load starts clean: its own error, not the old file's form
    at.text_input[0].set_value(str(tmp_path / "missing.h5ad"))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert "File not found" in at.error[0].value
    assert not [e for e in at.expander if e.label.startswith("Choose how to read")]


def test_an_error_names_an_upload_as_the_user_knows_it():
    def script():
        from lazynet_core import ui
        from lazynet_core.errors import ScreenError

        shown = {}
        with ui.user_errors("Could not load the upload", rename=shown):
            shown["/tmp/lazynet_uploads/0123abcd/fake.h5ad"] = "fake.h5ad (upload)"
            raise ScreenError("'/tmp/lazynet_uploads/0123abcd/fake.h5ad' is a text table, not an .h5ad file.")

    at = AppTest.from_function(script).run()
    _ok(at)
    assert len(at.error) == 1
    message = at.error[0].value
    assert "'fake.h5ad (upload)' is a text table" in message and "lazynet_uploads" not in message


def test_override_with_wrong_control_label_shows_error():
    at = _with_demo()
    at.text_input(key=None) if False else None
    control = [t for t in at.text_input if t.label == "Control label"][0]
    control.set_value("no-such-control")
    at.button(key="FormSubmitter:overrides-Re-read with these settings").click().run()
    _ok(at)
    assert at.error, "a control label that matches no cell must give a readable error"
    assert at.session_state["screen"]["control"] is None  # the previous, working screen stays loaded


# ---- training ----------------------------------------------------------------------------------
def test_train_page_widgets_and_job_to_completion(runs_dir):
    at = _with_demo()
    _goto(at, "2_Train")
    labels = [n.label for n in at.number_input]
    assert labels == ["Replicas", "Hidden width (0 = auto)", "Epochs", "Time budget (s)", "Seed",
                      "Shrink (standard errors)"]
    assert [s.label for s in at.selectbox][:2] == ["Pairing", "Held-out split"]
    _train(at, replicas=1, epochs=2, name="poll-me")
    job_id = at.session_state["job_id"]
    assert at.query_params["job"] == job_id
    _poll(at, lambda a: a.session_state["run_path"])
    assert Path(at.session_state["run_path"]) == runs_dir / "poll-me"
    assert (runs_dir / "poll-me" / "config.json").exists()
    assert at.success and "poll-me" in at.success[0].value
    assert "job" not in at.query_params and at.query_params["run"] == str(runs_dir / "poll-me")
    from lazynet_core.ui.loaders import job_registry

    assert job_registry().get(job_id).progress().status == "done"


def test_train_page_shrink_reaches_the_run(runs_dir):
    import json

    at = _with_demo()
    _goto(at, "2_Train")
    at.radio[0].set_value("anchored")
    at.number_input[0].set_value(1)
    at.number_input[2].set_value(1)
    shrink = next(n for n in at.number_input if n.label == "Shrink (standard errors)")
    assert shrink.value == 0.0  # off by default: the method as published
    shrink.set_value(2.0)
    at.text_input[0].set_value("shrunk")
    at.button(key="start_training").click().run()
    _ok(at)
    _poll(at, lambda a: a.session_state["run_path"])
    manifest = json.loads((runs_dir / "shrunk" / "config.json").read_text())
    assert manifest["train_config"]["shrink"] == 2.0 and manifest["model_config"]["anchor"] is True
    assert any("recipe: anchored · shrink 2 SE" in m.value for m in at.markdown)


def _train_recipe(at: AppTest, recipe: str, run: Path) -> dict:
    """Train ``recipe`` from the Train page (1 replica, 1 epoch) into ``run``; its saved configs."""
    import json

    at.radio[0].set_value(recipe)
    at.number_input[0].set_value(1)
    at.number_input[2].set_value(1)
    at.text_input[0].set_value(run.name)
    at.button(key="start_training").click().run()
    _ok(at)
    _poll(at, lambda a: a.session_state["run_path"])
    return json.loads((run / "config.json").read_text())


def test_train_page_pooled_recipe_reaches_the_run_and_the_jacobian_page_says_what_it_read(runs_dir):
    at = _with_demo()
    _goto(at, "2_Train")
    measured = [t.value for t in at.table if "vs pooled cov." in t.value.columns]
    assert measured and {"anchored_pooled", "baseline: pooled covariance"} <= set(measured[0].index)
    manifest = _train_recipe(at, "anchored_pooled", runs_dir / "pooled")
    assert manifest["model_config"]["covariance_cells"] == "pooled" and manifest["model_config"]["anchor"]
    assert any("recipe: anchored_pooled" in m.value for m in at.markdown)
    _goto(at, "4_Jacobian")
    captions = " ".join(c.value for c in at.caption)
    assert "the control and training perturbed cells' regression" in captions
    _goto(at, "5_Networks")  # edge evidence from the pooled cells, as the run's start read them
    edges = at.dataframe[-1].value
    assert {"evidence", "coexpr_r"} <= set(edges.columns)


def test_train_page_covariance_recipe_reaches_the_run(runs_dir):
    at = _with_demo()
    _goto(at, "2_Train")
    assert at.radio[0].label == "Recipe" and at.radio[0].value == "published"
    manifest = _train_recipe(at, "covariance", runs_dir / "cov")
    assert manifest["model_config"]["start"] == "control_covariance" and manifest["pair_config"]["k"] == 256
    assert any("recipe: covariance" in m.value for m in at.markdown)
    # a hidden width that is not one unit per gene is refused before anything starts
    at.radio[0].set_value("covariance")
    at.number_input[1].set_value(16)
    at.text_input[0].set_value("cov-bad")
    at.button(key="start_training").click().run()
    assert at.error and "one hidden unit per gene" in at.error[0].value
    assert not (runs_dir / "cov-bad").exists()


def test_cancel_is_honoured_and_leaves_no_run(runs_dir):
    at = _train(_with_demo(), replicas=3, epochs=400, name="to-cancel")
    at.run()
    assert at.button(key="cancel_job")
    from lazynet_core.ui.loaders import job_registry

    job = job_registry().get(at.session_state["job_id"])
    at.button(key="cancel_job").click().run()
    t0 = time.time()
    assert job.wait(5).status == "cancelled"
    assert time.time() - t0 < 2.5
    _poll(at, lambda a: a.warning)
    assert "cancelled" in at.warning[0].value
    assert not (runs_dir / "to-cancel").exists()
    assert not any(p.name.startswith(".to-cancel") for p in runs_dir.iterdir())
    assert at.session_state["run_path"] is None


def test_second_job_is_refused_with_message():
    first = _train(_with_demo(), replicas=3, epochs=400, name="long-one")
    second = _train(_with_demo(), name="second")
    assert second.error and "Only one job runs at a time" in second.error[0].value
    from lazynet_core.ui.loaders import job_registry

    job_registry().get(first.session_state["job_id"]).cancel()


def test_failing_training_shows_error(monkeypatch, runs_dir):
    from lazynet_core import train
    from lazynet_core.errors import TrainingError

    def broken(*args, **kwargs):
        msg = "Loss became NaN in replica 1, epoch 1; lower the learning rate."
        raise TrainingError(msg)

    monkeypatch.setattr(train, "train_ensemble", broken)
    at = _train(_with_demo(), name="broken")
    _poll(at, lambda a: a.error)
    assert "Training failed" in at.error[0].value and "NaN" in at.error[0].value
    assert not (runs_dir / "broken").exists()


def test_refresh_reattaches_to_running_job():
    at = _train(_with_demo(), replicas=3, epochs=400, name="reattach")
    job_id = at.session_state["job_id"]
    fresh = _goto(_app(job=job_id, screen="demo"), "2_Train")  # a new session, as after a browser refresh
    assert fresh.session_state["job_id"] == job_id
    assert fresh.button(key="cancel_job")
    fresh.button(key="cancel_job").click().run()
    from lazynet_core.ui.loaders import job_registry

    assert job_registry().get(job_id).wait(5).status == "cancelled"


def test_saved_runs_listed_and_loadable(trained_run):
    at = _goto(_with_demo(), "2_Train")
    listed = at.dataframe[0].value
    assert "shared" in listed["name"].tolist()
    assert listed.set_index("name").loc["shared", "fits_screen"]  # a demo run on the demo screen
    run_box = [s for s in at.selectbox if s.label == "Run"][0]
    run_box.set_value("shared")
    at.button(key="load_run").click().run()
    _ok(at)
    assert at.session_state["run_path"] == trained_run
    assert not at.error


def test_a_run_of_another_screen_is_marked_and_refused_in_plain_words(trained_run):
    at = _goto(_app(screen="real"), "2_Train")
    listed = at.dataframe[0].value.set_index("name")
    assert not listed.loc["shared", "fits_screen"]  # 300 demo genes, 72 on the real screen
    run_box = [s for s in at.selectbox if s.label == "Run"][0]
    assert run_box.format_func("shared") == "shared (other screen)"
    run_box.set_value("shared")
    at.button(key="load_run").click().run()
    _ok(at)
    message = " ".join(e.value for e in at.error)
    assert "This run was trained on 300 genes and the dataset has 72" in message
    assert "np.str_" not in message and "train a new run on this one" in message
    assert not at.session_state["run_path"]


# ---- exploration pages --------------------------------------------------------------------------
def test_url_reopens_run_and_screen(trained_run):
    at = _app(run=trained_run)
    _ok(at)
    assert at.session_state["run_path"] == trained_run
    assert at.session_state["screen"]["label"] == "demo"


def test_effects_page(trained_run):
    at = _goto(_app(run=trained_run), "3_Effects")
    assert at.selectbox(key="eff_pert").value
    labels = [m.label for m in at.metric]
    headline = ["LazyNet Δ-Pearson", "Best baseline", "Noise ceiling", "Slope", "Intervention response"]
    assert labels[:5] == headline
    tabs = [t.label for t in at.tabs]
    assert tabs[0].startswith("Held-out perturbations") and not any("Training fit" in t for t in tabs)
    assert len(at.get("plotly_chart")) >= 1
    text = " ".join(c.value for c in at.caption)
    assert "independent control reference" in text and "ignores the target" in text
    assert "Planted-network oracle" in text  # the demo's planted network: the headroom, beside LazyNet
    last = at.selectbox(key="eff_pert").options[-1].split(" · ")[0]
    at.selectbox(key="eff_pert").set_value(last).run()
    _ok(at)
    assert at.session_state["perturbation"] == last == at.selectbox(key="eff_pert").value
    assert at.query_params["pert"] == at.session_state["perturbation"]
    at.radio(key="eff_modality").set_value("CRISPRa").run()
    _ok(at)
    assert "CRISPRa" in at.selectbox(key="eff_pert").options[0]
    assert not at.error
    gene = at.selectbox(key="eff_gene").options[3]
    at.selectbox(key="eff_gene").set_value(gene).run()
    _ok(at)
    assert at.query_params["modality"] == "CRISPRa" and at.query_params["gene"] == gene
    fresh = _goto(_app(**{k: at.query_params[k] for k in ("run", "pert", "modality", "gene")}), "3_Effects")
    assert fresh.radio(key="eff_modality").value == "CRISPRa"  # a copied link reopens the same view
    assert fresh.selectbox(key="eff_gene").value == gene
    assert fresh.selectbox(key="eff_pert").value == at.selectbox(key="eff_pert").value


def test_effects_combination_shows_its_interaction(trained_run):
    at = _goto(_app(run=trained_run), "3_Effects")
    options = [o.split(" · ")[0] for o in at.selectbox(key="eff_pert").options]
    assert {"ADCY10+MFN2", "ATF4+TP53"} <= set(options)  # demo doubles: held out / trained on
    at.selectbox(key="eff_pert").set_value("ADCY10+MFN2").run()
    _ok(at)
    labels = [m.label for m in at.metric]
    assert {"Interaction Pearson", "Interaction explained", "Dose-only null"} <= set(labels)
    value = next(m.value for m in at.metric if m.label == "Interaction explained")
    assert value == "n/a" or -10 < float(value) <= 1
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("predicted vs observed interaction" in s and "observed interaction" in s for s in specs)
    captions = " ".join(c.value for c in at.caption)
    assert "additive model predicts no interaction" in captions
    assert "dose-only null" in captions or "predicts no interaction for this combination" in captions
    # the benchmark figures are read from benchmarks/results, the planted dynamics' beside the recipes'
    from lazynet_core.ui import recipe_results

    measured = recipe_results.interaction_measured()
    assert f"noise ceiling {measured['ceiling']:.2f}" in captions
    assert f"score {measured['oracle']:.2f}" in captions and "solved without noise" in captions
    at.selectbox(key="eff_pert").set_value("ATF4+TP53").run()  # trained on: held-out cells, no panel
    _ok(at)
    assert "Interaction Pearson" not in [m.label for m in at.metric]
    assert not any("Genetic interaction" in m.value for m in at.markdown)


def _gene_tables(at: AppTest) -> list:
    """The Effects page's per-gene tables (the searched gene's row, if any, then the full table)."""
    return [d.value for d in at.dataframe if "observed Δ" in getattr(d.value, "columns", [])]


def test_effects_per_gene_table_search_and_csv(trained_run):
    at = _goto(_app(run=trained_run), "3_Effects")
    genes = _gene_tables(at)[-1]
    wanted = {"gene", "observed Δ", "LazyNet Δ", "perturbed mean Δ", "DE p (Welch)", "DE q (BH)"}
    assert wanted <= set(genes.columns)
    assert genes["observed Δ"].abs().is_monotonic_decreasing  # largest observed effect first
    assert ((genes["DE q (BH)"] >= genes["DE p (Welch)"] - 1e-12) | genes["DE q (BH)"].isna()).all()
    assert at.get("download_button") and any(b.label == "Download per-gene table (CSV)"
                                             for b in at.get("download_button"))
    gene = str(genes["gene"].iloc[1])
    at.selectbox(key="eff_gene").set_value(gene).run()
    _ok(at)
    row, full = _gene_tables(at)
    assert row["gene"].tolist() == [gene] and len(full) > 1
    fig = at.get("plotly_chart")[0].proto.spec
    assert f"{gene} (searched)" in fig and "slope" in fig


def test_effects_headline_is_paired_and_a_tie_has_no_winner_banner(trained_run, monkeypatch):
    at = _goto(_app(run=trained_run), "3_Effects")
    boxes = [b.value for b in [*at.info, *at.warning, *at.success]]
    paired = [b for b in boxes if "against the best baseline" in b]
    assert paired and all("better on" in b and "perturbations both predict" in b for b in paired)
    assert not any("A tie" in b and "LazyNet is behind" in b for b in paired)  # one verdict, one wording
    for box in at.success:  # a winner banner only for a significant lead
        assert "is ahead" in box.value and "not significant" not in box.value

    from lazynet_core import metrics

    def tie(frame, *, set_name, metric="pearson_delta", **kwargs):
        return dict(set=set_name, metric=metric, model_mean=0.31, baseline="perturbed_mean_ex",
                    baseline_mean=0.30, n=12, mean_diff=0.012, sd_diff=0.03, wins=7, losses=5,
                    p_wilcoxon=0.31, verdict="tie",
                    text="ahead of perturbed_mean_ex by 0.012 ± 0.030, better on 7 of 12 perturbations, "
                    "p = 0.31 (not significant: a tie)")

    monkeypatch.setattr(metrics, "headline", tie)
    at = _goto(_app(run=trained_run), "3_Effects")
    assert not at.success, "no winner banner when the lead is not significant"
    infos = " ".join(i.value for i in at.info)
    assert "A tie" in infos
    assert "12 perturbations both predict (LazyNet better on 7, p = 0.31) is not significant" in infos
    assert "LazyNet 0.310, perturbed mean, own target left out 0.300 (each its own mean); the paired " \
        "difference +0.012 ± 0.030" in infos
    assert "perturbed mean, own target left out" in infos  # display name of the baseline

    def ahead(frame, **kwargs):
        out = tie(frame, **kwargs)
        out.update(verdict="ahead", p_wilcoxon=0.01,
                   text="ahead of perturbed_mean_ex by 0.012 ± 0.030, better on 11 of 12 perturbations, "
                   "p = 0.01")
        return out

    monkeypatch.setattr(metrics, "headline", ahead)
    at = _goto(_app(run=trained_run), "3_Effects")
    assert at.success and "LazyNet is ahead" in at.success[0].value


def test_effects_old_run_falls_back_to_training_reference(trained_run, monkeypatch):
    from lazynet_core.ui import services

    monkeypatch.setattr(services, "reference_for", lambda pairs: "training")
    from lazynet_core.errors import ScreenError

    def no_reference(pairs):
        msg = "These pairs keep no independent control reference (a run trained before it existed)."
        raise ScreenError(msg)

    monkeypatch.setattr(services, "require_independent_reference", no_reference)
    at = _goto(_app(run=trained_run), "3_Effects")
    assert at.error and "no independent control reference" in at.error[0].value
    assert any("Flattering reference" in w.value for w in at.warning)
    assert "training control mean (flattering" in " ".join(c.value for c in at.caption)
    assert at.metric  # the figures are still shown, labelled


def test_in_silico_allows_never_perturbed_gene(trained_run):
    from lazynet_core.ui import loaders, services

    at = _goto(_app(run=trained_run), "3_Effects")
    pairs = loaders.pairs_for(at.session_state["screen"], loaders.load_ensemble(trained_run).pair_config)
    never = sorted(set(pairs.genes) - services.perturbed_targets(pairs))[0]
    at.multiselect[0].set_value([never])
    at.select_slider[0].set_value(4.0)
    at.button(key="insilico_go").click().run()
    _ok(at)
    assert any("Never perturbed" in i.value and never in i.value for i in at.info)
    assert not at.error
    assert at.get("download_button")
    assert any("Largest predicted change" in c.value and "for scale" in c.value for c in at.caption)


def test_in_silico_scale_sentence_by_hand():
    import pandas as pd

    from lazynet_core.ui import services

    delta = pd.Series([2.0, 0.004, -0.003], index=["APP", "GPX4", "TFRC"])  # APP: the input itself
    effects = pd.DataFrame({"observed": [5.0] + [0.1 * i for i in range(1, 21)],
                            "is_target": [True] + [False] * 20})
    text = services.in_silico_scale_sentence(delta, ["APP"], effects, label="APP")
    assert "0.004 log units" in text and "within 1.9" in text and "negligible" in text
    big = services.in_silico_scale_sentence(delta * 100, ["APP"], effects, label="APP")
    assert "0.4 log units" in big and "negligible" not in big
    assert services.in_silico_scale_sentence(delta[:1], ["APP"], effects, label="APP") is None


def test_jacobian_page_gene_sets_and_bad_gene(trained_run):
    at = _goto(_app(run=trained_run), "4_Jacobian")
    assert "elasticity" in " ".join(c.value for c in at.caption)
    assert at.metric and at.metric[0].label == "Genes"
    at.radio(key="jac_kind").set_value("top genes by |J|").run()
    _ok(at)
    assert at.metric[0].value == "30" and at.query_params["genes"] == "top:30"
    gene = at.selectbox(key="jac_gene").options[2]
    at.selectbox(key="jac_gene").set_value(gene).run()
    _ok(at)
    assert at.query_params["jgene"] == gene
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [s["type"] for s in spec["layout"]["shapes"]] == ["rect", "rect"]  # its row and its column
    assert f"<b>{gene}</b>" in spec["layout"]["yaxis"]["ticktext"]
    at.radio(key="jac_kind").set_value("typed list").run()
    at.text_area(key="jac_list").set_value("GPX4, NOT_A_GENE, TFRC").run()
    _ok(at)
    assert at.error and "NOT_A_GENE" in at.error[0].value
    assert at.metric[0].value == "2"
    at.text_area(key="jac_list").set_value("gpx4 tfrc Slc7a11").run()  # case does not matter
    _ok(at)
    assert not at.error and at.metric[0].value == "3"
    assert [b.label for b in at.get("download_button")] == ["Matrix (CSV)", "Heatmap (HTML)"]
    order = at.get("plotly_chart")[0].proto.spec
    at.segmented_control(key="jac_view").set_value("replica SD").run()
    _ok(at)
    import json

    x_of = lambda spec: json.loads(spec)["data"][0]["x"]  # noqa: E731
    assert x_of(at.get("plotly_chart")[0].proto.spec) == x_of(order)  # one order across views


def test_networks_page(trained_run):
    at = _goto(_app(run=trained_run), "5_Networks")
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["interventional", "held_out", "observational", "model_only"]
    assert at.metric[3].value == "0"  # the default view follows supported edges only
    assert "Recall (modelled genes)" in labels and "Recall (all curated)" not in labels  # equal on the demo
    assert at.multiselect[0].value  # default seeds present in the demo
    assert "2 × replica sd" in " ".join(c.value for c in at.caption)
    buttons = [b.label for b in at.get("download_button")]
    assert buttons == ["PNG", "SVG", "HTML", "Edges (CSV)", "GraphML"]
    assert len(at.get("iframe")) == 1
    assert at.selectbox(key="net_open_gene").options  # perturbed genes of the graph, openable on Effects
    assert len(at.dataframe) == 2  # planted-network recovery (demo truth, run-wide) + edges
    planted = at.dataframe[0].value
    assert {"LazyNet |J|", "fold change", "|correlation| (controls)", "|correlation| (pooled)",
            "regulator expression"} <= set(planted.index)
    edges = at.dataframe[-1].value
    assert {"source", "target", "weight", "agreement", "sd", "evidence"} <= set(edges.columns)
    assert set(edges["evidence"]) <= {"interventional", "held_out", "observational"}
    seeds = at.multiselect[0].value
    assert at.query_params["seeds"] == ",".join(seeds) and at.query_params["noise"] == "2.0"
    at.radio(key="net_module").set_value("lysosomal_mito_immune").run()
    _ok(at)
    assert at.query_params["genes"] == "module:lysosomal_mito_immune"
    at.multiselect[0].set_value([])
    at.button(key="FormSubmitter:net_form_lysosomal_mito_immune-Update network").click().run()
    _ok(at)
    assert at.error and "seed" in at.error[0].value.lower()


def test_networks_url_restores_the_view_and_model_only_toggle(trained_run):
    at = _app(run=trained_run, screen="demo", genes="module:ferroptosis", seeds="GPX4,TFRC", breadth="3",
              depth="1", dir="out", model_only="1", layout="layered", noise="2.0")
    at = _goto(at, "5_Networks")
    assert at.multiselect[0].value == ["GPX4", "TFRC"]
    assert at.number_input(key="net_breadth").value == 3 and at.number_input(key="net_depth").value == 1
    assert at.toggle(key="net_model_only").value is True and at.radio(key="net_layout").value == "layered"
    assert "model_only included" in " ".join(c.value for c in at.caption)


def test_networks_open_gene_on_effects(trained_run):
    at = _goto(_app(run=trained_run), "5_Networks")
    gene = at.selectbox(key="net_open_gene").options[0]
    at.selectbox(key="net_open_gene").set_value(gene)
    at.button(key="net_open").click().run()
    _ok(at)
    assert at.session_state["perturbation"] == gene
    assert at.selectbox(key="eff_pert").value == gene


def test_every_page_survives_a_run_that_does_not_fit_the_screen(trained_run, tmp_path):
    """The demo run with a screen of the same genes but other cells: each page says so, none raises."""
    from lazynet_core.datasets import load_demo

    demo = load_demo()
    path = tmp_path / "demo_subset.h5ad"
    demo[::2].copy().write_h5ad(path)  # same genes, half the cells: the run's split cannot be rebuilt
    at = _goto(_app(run=trained_run), "1_Data")
    at.text_input[0].set_value(str(path))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    _ok(at)
    assert at.session_state["run_path"] == trained_run  # same genes: the run stays loaded
    for page in ("3_Effects", "4_Jacobian", "5_Networks"):
        _goto(at, page)
        assert at.error, f"{page}: a run/screen mismatch must be reported"


def test_time_budget_cut_is_reported_not_called_done():
    from types import SimpleNamespace

    from lazynet_core.ui.services import time_budget_cut

    ens = SimpleNamespace(
        info={"replicas": [{"replica": 0, "stopped": "time_budget", "epochs_run": 7},
                           {"replica": 1, "stopped": "epochs", "epochs_run": 40}]},
        train_config=SimpleNamespace(epochs=40),
    )
    assert time_budget_cut(ens) == "after 7 of 40 epochs (replica 1 of 2)"
    ens.info["replicas"][1].update(stopped="time_budget", epochs_run=0)
    assert time_budget_cut(ens) == "after 0 of 40 epochs"  # every replica cut: the fewest epochs
    for rec in ens.info["replicas"]:
        rec["stopped"] = "epochs"
    assert time_budget_cut(ens) is None


def test_train_page_says_when_the_time_budget_stopped_training(runs_dir):
    """A budget that cuts training short is reported as such on the Train page, never a plain "done"."""
    at = _with_demo()
    _goto(at, "2_Train")
    at.number_input[0].set_value(1)
    at.number_input[2].set_value(500)
    at.number_input[3].set_value(5)  # Time budget (s): the minimum, far too short for 500 epochs
    at.text_input[0].set_value("budget-cut")
    at.button(key="start_training").click().run()
    _ok(at)
    _poll(at, lambda a: a.session_state["run_path"], timeout=120)
    warnings = " ".join(w.value for w in at.warning)
    assert "Stopped by the time budget after" in warnings and "of 500 epochs" in warnings, warnings
    assert not any("budget-cut" in s.value and "saved" in s.value for s in at.success)
    from lazynet_core.ui.loaders import job_registry

    snap = job_registry().get(at.session_state["job_id"]).progress()  # what the sidebar shows
    assert snap.status == "done" and snap.describe().startswith("stopped by the time budget after")


def test_views_come_back_after_a_page_switch(trained_run):
    """A page switch drops the URL's parameters and Streamlit forgets widgets not drawn: the typed gene
    list, the Effects modality and the searched gene still come back as they were left."""
    at = _goto(_app(run=trained_run), "4_Jacobian")
    at.radio(key="jac_kind").set_value("typed list").run()
    at.text_area(key="jac_list").set_value("GPX4 TFRC SLC7A11").run()
    _ok(at)
    _goto(at, "3_Effects")
    modality = at.radio(key="eff_modality").options[-1]
    at.radio(key="eff_modality").set_value(modality).run()
    gene = at.selectbox(key="eff_gene").options[1]
    at.selectbox(key="eff_gene").set_value(gene).run()
    _ok(at)
    for key in list(at.query_params):  # as a browser's page switch does
        if key not in ("run", "screen"):
            del at.query_params[key]
    _goto(at, "4_Jacobian")
    assert at.radio(key="jac_kind").value == "typed list"
    assert at.text_area(key="jac_list").value == "GPX4 TFRC SLC7A11" and at.metric[0].value == "3"
    for key in list(at.query_params):
        if key not in ("run", "screen"):
            del at.query_params[key]
    _goto(at, "3_Effects")
    assert at.radio(key="eff_modality").value == modality
    assert at.selectbox(key="eff_gene").value == gene
    from lazynet_core.ui import services

    other = list(services.module_choices())[-1]
    _goto(at, "5_Networks")  # the Networks page keeps its module apart from the Jacobian's gene set
    at.radio(key="net_module").set_value(other).run()
    _goto(at, "4_Jacobian")
    assert at.radio(key="jac_kind").value == "typed list"
    _goto(at, "5_Networks")
    assert at.radio(key="net_module").value == other


def test_presentation_mode_shows_short_score_tables_at_its_font_size(trained_run):
    """The data grid draws at a fixed size; in presentation mode the short tables are HTML tables."""
    normal = _goto(_app(run=trained_run), "3_Effects")
    assert not normal.table and normal.dataframe
    big = normal
    big.session_state["presentation"] = True  # as the sidebar toggle sets it
    big.run()
    _ok(big)
    assert big.table and "LazyNet" in big.table[0].value.index.tolist()
    assert big.dataframe  # the long per-gene table stays a sortable grid
