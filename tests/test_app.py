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
    assert labels == ["Replicas", "Hidden width (0 = auto)", "Epochs", "Time budget (s)", "Seed"]
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
    assert at.dataframe and "shared" in at.dataframe[0].value["name"].tolist()
    at.selectbox(key=None) if False else None
    run_box = [s for s in at.selectbox if s.label == "Run"][0]
    run_box.set_value("shared")
    at.button(key="load_run").click().run()
    _ok(at)
    assert at.session_state["run_path"] == trained_run
    assert not at.error


# ---- exploration pages --------------------------------------------------------------------------
def test_url_reopens_run_and_screen(trained_run):
    at = _app(run=trained_run)
    _ok(at)
    assert at.session_state["run_path"] == trained_run
    assert at.session_state["screen"]["label"] == "demo"


def test_effects_page(trained_run):
    at = _goto(_app(run=trained_run), "3_Effects")
    assert at.selectbox(key="eff_pert").value
    assert [m.label for m in at.metric][:2] == ["LazyNet Δ-Pearson", "Best baseline"]
    assert [t.label for t in at.tabs][2] == "Training fit" and len(at.get("plotly_chart")) >= 2
    last = at.selectbox(key="eff_pert").options[-1].split(" · ")[0]
    at.selectbox(key="eff_pert").set_value(last).run()
    _ok(at)
    assert at.session_state["perturbation"] == last == at.selectbox(key="eff_pert").value
    assert at.query_params["pert"] == at.session_state["perturbation"]
    at.radio(key="eff_modality").set_value("CRISPRa").run()
    _ok(at)
    assert "CRISPRa" in at.selectbox(key="eff_pert").options[0]
    assert not at.error


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


def test_jacobian_page_gene_sets_and_bad_gene(trained_run):
    at = _goto(_app(run=trained_run), "4_Jacobian")
    assert "elasticity" in " ".join(c.value for c in at.caption)
    assert at.metric and at.metric[0].label == "Genes"
    at.radio(key="jac_kind").set_value("top genes by |J|").run()
    _ok(at)
    assert at.metric[0].value == "30" and at.query_params["genes"] == "top:30"
    at.radio(key="jac_kind").set_value("typed list").run()
    at.text_area(key="jac_list").set_value("GPX4, NOT_A_GENE, TFRC").run()
    _ok(at)
    assert at.error and "NOT_A_GENE" in at.error[0].value
    assert at.metric[0].value == "2"


def test_networks_page(trained_run):
    at = _goto(_app(run=trained_run), "5_Networks")
    labels = [m.label for m in at.metric]
    assert "Recall (modelled)" in labels and "Agrees" in labels
    assert at.multiselect[0].value  # default seeds present in the demo
    assert any(b.label.startswith("Download edges") for b in at.get("download_button"))
    assert len(at.get("iframe")) == 1
    assert len(at.dataframe) == 2  # planted-network recovery (demo truth) + edges
    planted = at.dataframe[0].value
    assert {"LazyNet |J|", "fold change", "|correlation| (controls)", "regulator expression"} <= set(
        planted.index
    )
    assert {"source", "target", "weight", "evidence"} <= set(at.dataframe[-1].value.columns)
    at.radio(key="net_module").set_value("lysosomal_mito_immune").run()
    _ok(at)
    assert at.query_params["genes"] == "module:lysosomal_mito_immune"
    at.multiselect[0].set_value([])
    at.button(key="FormSubmitter:net_form_lysosomal_mito_immune-Update network").click().run()
    _ok(at)
    assert at.error and "seed" in at.error[0].value.lower()
