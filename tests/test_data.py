"""Tests for lazynet_core.data: reading real screens (detection, checks, labels, gene universe)."""

from __future__ import annotations

import hashlib
import inspect

import anndata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from lazynet_core import data
from lazynet_core.data import detect_columns, read_screen, target_check_frame, validate_screen
from lazynet_core.errors import ScreenError

GENES = [f"G{i}" for i in range(40)]


def make_screen(labels, *, key="perturbation", fold=0.15, unaffected=(), seed=0, obs=None):
    """Random NB counts; each target gene's mean is multiplied by ``fold`` in its cells."""
    rng = np.random.default_rng(seed)
    means = np.tile(rng.uniform(5, 30, len(GENES)), (len(labels), 1))
    for i, label in enumerate(labels):
        for token in str(label).split("+"):
            stem = token.rsplit("_", 1)[0]
            if stem in GENES and stem not in unaffected:
                means[i, GENES.index(stem)] *= fold
    counts = rng.negative_binomial(5, 5 / (5 + means)).astype(np.float32)
    frame = pd.DataFrame({key: labels, **(obs or {})}, index=[f"cell{i}" for i in range(len(labels))])
    return anndata.AnnData(X=sp.csr_matrix(counts), obs=frame, var=pd.DataFrame(index=GENES))


def labels_for(control, targets=("G1", "G2", "G3"), n_control=60, n_each=30):
    return [control] * n_control + [t for t in targets for _ in range(n_each)]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def screen():
    return make_screen(labels_for("control"))


# --------------------------------------------------------------------------- detection
def test_scperturb_style(screen):
    det = detect_columns(screen)
    assert (det.pert_key, det.control) == ("perturbation", "control")
    out = read_screen(screen)
    assert out.obs["lazynet_is_control"].sum() == 60
    assert sorted(set(out.obs["lazynet_perturbation"])) == ["G1", "G2", "G3", "control"]
    assert out.uns["lazynet"]["n_perturbations"] == 3


def test_a_measured_gene_named_like_a_control_word_is_a_perturbation_not_a_control():
    """'CTRL' is a human gene: beside real controls its cells are its knock-down, and the reader says so;
    as the only control-like label it stays the control, with a warning; a given control is taken as is."""
    genes = ["CTRL", *GENES[1:]]
    adata = make_screen(labels_for("non-targeting", targets=("G1", "G2", "G3")) + ["CTRL"] * 30)
    adata.var_names = genes
    out = read_screen(adata)
    assert out.obs["lazynet_is_control"].sum() == 60
    assert (out.obs["lazynet_perturbation"] == "CTRL").sum() == 30
    assert any("'CTRL'" in w and "measured gene" in w for w in out.uns["lazynet"]["warnings"])
    only = make_screen(labels_for("CTRL", targets=("G1", "G2", "G3")))
    only.var_names = genes
    out = read_screen(only)
    assert out.obs["lazynet_is_control"].sum() == 60
    assert any("also a measured gene" in w for w in out.uns["lazynet"]["warnings"])
    first = make_screen(["CTRL"] * 30 + labels_for("non-targeting", targets=("G1", "G2", "G3")))
    first.var_names = genes  # CTRL's cells come first: it would be the first control word seen
    assert detect_columns(first).control_labels == ("non-targeting",)  # the public detection agrees
    assert data.screen_choices(first)["control"] == "non-targeting"  # and the Data page's suggestion
    given = read_screen(adata, control="non-targeting")
    assert (given.obs["lazynet_perturbation"] == "CTRL").sum() == 30
    combos = make_screen(labels_for("CTRL", targets=("G1", "G2", "G3")) + ["CTRL+G1"] * 20)
    combos.var_names = genes
    out = read_screen(combos)  # CTRL is the control here, also inside a GEARS-style "CTRL+G1"
    assert (out.obs["lazynet_perturbation"] == "G1").sum() == 50
    two = make_screen(labels_for("non-targeting", targets=("G1", "G2", "G3")) + ["CTRL"] * 30,
                      obs={"target": ["x"] * 150 + ["CTRL"] * 30})
    two.var_names = genes
    out = read_screen(two)  # one warning, about the column used
    assert sum("measured gene" in w for w in out.uns["lazynet"]["warnings"]) == 1


def test_replogle_style():
    labels = labels_for("non-targeting")
    sg = [f"{lab}_0000{i % 3}" if lab == "non-targeting" else f"{lab}_+_1.23-P1"
          for i, lab in enumerate(labels)]
    adata = make_screen(labels, key="gene", obs={"gene_id": [f"ENSG{i}" for i in range(len(labels))],
                                                 "sgID_AB": sg})
    det = detect_columns(adata)
    assert (det.pert_key, det.control) == ("gene", "non-targeting")
    assert det.candidates == ("gene", "sgID_AB")
    sg_det = detect_columns(adata, pert_key="sgID_AB")
    assert sg_det.control == "non-targeting*" and len(sg_det.control_labels) == 3


def test_gears_style():
    labels = ["ctrl"] * 60 + ["G1+ctrl"] * 30 + ["ctrl+G2"] * 30 + ["G2+G1"] * 30
    adata = make_screen(labels, key="condition")
    assert detect_columns(adata).control == "ctrl"
    out = read_screen(adata)
    assert sorted(set(out.obs["lazynet_perturbation"])) == ["G1", "G1+G2", "G2", "control"]
    assert "G1+G2" not in out.uns["lazynet"]["target_check"]


def test_mixscape_style():
    labels = labels_for("NT")
    guides = [f"{lab}g{i % 2 + 1}" for i, lab in enumerate(labels)]
    adata = make_screen(labels, key="gene", obs={"guide_ID": guides})
    det = detect_columns(adata)
    assert (det.pert_key, det.control) == ("gene", "NT")
    assert detect_columns(adata, pert_key="guide_ID").control_labels == ("NTg1", "NTg2")


@pytest.mark.parametrize(("label", "is_control"), [
    ("non-targeting_00001", True), ("NTC-3", True), ("Non-Targeting", True), ("scrambled", True),
    ("ctrl+ctrl", True), ("WT1", False), ("NT5E", False), ("A+ctrl", False), ("GPX4", False),
])  # fmt: skip
def test_control_vocabulary(label, is_control):
    assert data._is_control_label(label, [data._control_regex(None)]) is is_control


def test_explicit_override():
    labels = labels_for("Scr")
    adata = make_screen(labels, key="my_guides", obs={"perturbation": ["x"] * len(labels)})
    with pytest.raises(ScreenError, match=r"set the control label \(control="):
        detect_columns(adata)
    det = detect_columns(adata, pert_key="my_guides", control="scr")
    assert (det.pert_key, det.control_labels, det.method.startswith("pert_key given")) == (
        "my_guides", ("Scr",), True)
    assert read_screen(adata, pert_key="my_guides", control="Scr").obs["lazynet_is_control"].sum() == 60


def test_missing_pert_key(screen):
    expected = r"Obs 'guide' does not exist in \.obs; columns are \['perturbation'\]\. Pass pert_key="
    with pytest.raises(ScreenError, match=expected):
        read_screen(screen, pert_key="guide")


def test_no_control_cells():
    adata = make_screen(["G1", "G2"] * 20)
    with pytest.raises(ScreenError, match=r"No cells with a known control label.*'perturbation'.*G1"):
        read_screen(adata)


def test_no_perturbation_column():
    adata = make_screen(labels_for("control"), key="foo")
    with pytest.raises(ScreenError, match="(?i)choose the perturbation column \\(pert_key="):
        detect_columns(adata)


# --------------------------------------------------------------------------- counts
def test_nan_counts(screen):
    screen.X = screen.X.toarray()
    screen.X[[3, 7], 0] = np.nan
    with pytest.raises(ScreenError, match=r"NaN or infinite values: 2 value\(s\) in 2 cell"):
        read_screen(screen)


def test_negative_counts(screen):
    screen.X = screen.X.toarray() - 1
    with pytest.raises(ScreenError, match="negative values"):
        read_screen(screen)


def test_non_integer_counts(screen):
    screen.X = screen.X.toarray() * 1.5 + 60.25
    with pytest.raises(ScreenError, match="non-integer values"):
        read_screen(screen)


def test_log_input_detected(screen):
    logged = screen.copy()
    sc.pp.normalize_total(logged, target_sum=1e4)
    sc.pp.log1p(logged)
    out = read_screen(logged)
    assert out.uns["lazynet"]["input_was_log"]
    assert any("log-normalised" in w for w in out.uns["lazynet"]["warnings"])
    np.testing.assert_allclose(out.X.toarray(), logged.X.toarray(), atol=1e-6)
    logged.layers["counts"] = screen.X.copy()
    with_counts = read_screen(logged)
    assert with_counts.uns["lazynet"]["layer"] == "counts" and not with_counts.uns["lazynet"]["input_was_log"]
    np.testing.assert_allclose(with_counts.X.toarray(), out.X.toarray(), atol=1e-5)


def test_output_format(screen):
    out = read_screen(screen)
    assert sp.isspmatrix_csr(out.X) or isinstance(out.X, sp.csr_array)
    assert out.X.dtype == np.float32
    expected = np.log1p(screen.X.toarray() / screen.X.toarray().sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(out.X.toarray(), expected, rtol=1e-5, atol=1e-5)
    meta = out.uns["lazynet"]
    assert set(meta) == {"pert_key", "control", "modality_source", "input_was_log", "layer", "source",
                         "sha256", "n_cells", "n_genes", "n_perturbations", "warnings", "targets_missing",
                         "target_check", "targets_missing_cells", "modality_inferred", "guides",
                         "cells_dropped", "escapers", "read_options"}
    assert meta["sha256"] is None and meta["layer"] is None and meta["targets_missing"] == []
    assert "perturbation" in out.obs.columns and out.obs["lazynet_is_control"].dtype == bool


# --------------------------------------------------------------------------- files
def test_missing_file(tmp_path):
    with pytest.raises(ScreenError, match="does not exist.*check the path"):
        read_screen(tmp_path / "nope.h5ad")


def test_not_h5ad(tmp_path):
    path = tmp_path / "screen.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ScreenError, match=r"not an \.h5ad file"):
        read_screen(str(path))


def test_corrupt_and_truncated_files(tmp_path, screen):
    garbage = tmp_path / "x.h5ad"
    garbage.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(ScreenError, match=r"x\.h5ad' is a text file, not an \.h5ad file"):
        read_screen(garbage)
    full = tmp_path / "full.h5ad"
    screen.write_h5ad(full)
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ScreenError, match=r"truncated or incomplete \(was the copy/download interrupted\?\)"):
        read_screen(cut)


@pytest.mark.parametrize(("array", "index", "value", "needle"), [
    ("indices", 10, -40, "indices must be >= 0"),
    ("indices", 10, 400, "indices must be < 40"),
    ("indptr", 50, 10**6, "indptr"),
])
def test_a_damaged_sparse_matrix_is_refused_not_a_crash(tmp_path, screen, array, index, value, needle):
    """Index arrays out of range in a file that is otherwise valid HDF5 (bit rot, a bad writer) would
    crash the process in compiled code; the reader names the damage and how to fix it."""
    import h5py

    path = tmp_path / "damaged.h5ad"
    screen.write_h5ad(path)
    with h5py.File(path, "a") as handle:
        handle["X"][array][index] = value
    with pytest.raises(ScreenError, match="sparse matrix is damaged") as err:
        read_screen(path)
    assert needle in str(err.value) and "Copy the file again" in str(err.value)


def test_file_unchanged_and_backed_equal(tmp_path, screen):
    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    before = sha256(path)
    out = read_screen(path)
    backed = read_screen(path, backed=True)
    assert sha256(path) == before == out.uns["lazynet"]["sha256"]
    assert out.uns["lazynet"]["source"] == str(path.resolve())
    np.testing.assert_array_equal(out.X.toarray(), backed.X.toarray())


def test_input_anndata_unchanged(screen):
    x_before, obs_before = screen.X.copy(), screen.obs.copy()
    read_screen(screen, genes="hvg", n_top_genes=10)
    np.testing.assert_array_equal(screen.X.toarray(), x_before.toarray())
    pd.testing.assert_frame_equal(screen.obs, obs_before)
    assert screen.n_vars == len(GENES) and not screen.uns


def test_output_writes_and_validates(tmp_path, screen):
    out = read_screen(screen)
    out.write_h5ad(tmp_path / "out.h5ad")
    assert validate_screen(anndata.read_h5ad(tmp_path / "out.h5ad")) == out.uns["lazynet"]["warnings"]
    broken = out.copy()
    del broken.obs["lazynet_is_control"]
    with pytest.raises(ScreenError, match="Run read_screen first"):
        validate_screen(broken)


# --------------------------------------------------------------------------- perturbations
def test_target_absent_from_genes():
    adata = make_screen(labels_for("control", targets=("G1", "NOTAGENE", "G2+NOTAGENE")))
    out = read_screen(adata)
    assert out.uns["lazynet"]["targets_missing"] == ["NOTAGENE"]
    assert sorted(set(out.obs["lazynet_perturbation"])) == ["G1", "control"]
    assert any("NOTAGENE" in w and "60 cell(s) were dropped" in w for w in out.uns["lazynet"]["warnings"])
    expected = r"None of the perturbation targets is a measured gene: NOTAGENE \(30 cells\), OTHER"
    with pytest.raises(ScreenError, match=expected):
        read_screen(make_screen(labels_for("control", targets=("NOTAGENE", "OTHER"))))


def test_label_normalisation():
    labels = ["ctrl"] * 40 + ["B_x+ctrl"] * 5 + ["G2+G1"] * 20 + ["G1+ctrl"] * 20 + ["G3_2"] * 20
    out = read_screen(make_screen(labels[:40] + labels[45:], key="condition"))
    assert list(pd.unique(out.obs["lazynet_perturbation"])) == ["control", "G1+G2", "G1", "G3"]


def test_crispri_check_flags_target_that_did_not_fall():
    adata = make_screen(labels_for("control", n_control=200, n_each=100), unaffected=("G2",))
    out = read_screen(adata)
    check = out.uns["lazynet"]["target_check"]
    assert check["G1"]["ok"] and check["G1"]["log2fc"] < -1 and check["G1"]["expected"] == "down"
    assert not check["G2"]["ok"]
    flagged = [w for w in out.uns["lazynet"]["warnings"] if "did not move" in w]
    assert len(flagged) == 1 and "'G2'" in flagged[0] and "'G1'" not in flagged[0]
    frame = target_check_frame(out)
    assert list(frame.columns) == ["target", "modality", "n_cells", "log2fc", "expected", "ok"]
    assert frame.set_index("target").loc["G2", "n_cells"] == 100


def test_modality_options():
    raised = make_screen(labels_for("control"), fold=5.0)
    out = read_screen(raised, modality="a")
    assert set(out.obs["lazynet_modality"]) == {"CRISPRa"}
    assert all(v["ok"] and v["expected"] == "up" for v in out.uns["lazynet"]["target_check"].values())
    labels = labels_for("control")
    kinds = ["CRISPRi"] * 60 + ["CRISPR-a"] * 30 + ["crispri"] * 60
    by_column = read_screen(make_screen(labels, obs={"perturbation_type": kinds}))
    assert by_column.uns["lazynet"]["modality_source"] == "column 'perturbation_type'"
    assert list(by_column.obs["lazynet_modality"].iloc[[0, 60, 90]]) == ["CRISPRi", "CRISPRa", "CRISPRi"]
    default = read_screen(make_screen(labels))
    assert default.uns["lazynet"]["modality_source"].startswith("inferred: CRISPRi (3 down, 0 up")
    with pytest.raises(ScreenError, match="neither CRISPRi/CRISPRa"):
        read_screen(raised, modality="knockout-ish")


# --------------------------------------------------------------------------- gene universe
def test_hvg_keeps_targets_and_extra_genes(screen):
    out = read_screen(screen, genes="hvg", n_top_genes=5, extra_genes=["G30", "NOT_MEASURED"])
    assert {"G1", "G2", "G3", "G30"} <= set(out.var_names)
    assert out.n_vars < len(GENES) - 10 and out.uns["lazynet"]["n_genes"] == out.n_vars
    assert any("NOT_MEASURED" in w for w in out.uns["lazynet"]["warnings"])


def test_gene_list_and_all(screen):
    screen.X = screen.X.toarray()
    screen.X[:, 39] = 0
    assert "G39" not in read_screen(screen).var_names
    out = read_screen(screen, genes=["G10", "G1"])
    assert list(out.var_names) == ["G1", "G2", "G3", "G10"]
    with pytest.raises(ScreenError, match=r"1 gene\(s\) in genes= are not in the screen.*XYZ"):
        read_screen(screen, genes=["G1", "XYZ"])


def test_public_signatures_keyword_only():
    for func in (detect_columns, read_screen, validate_screen, target_check_frame):
        positional = [p for p in inspect.signature(func).parameters.values()
                      if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert len(positional) == 1, func.__name__


def test_toy_screen_reads():
    datasets = pytest.importorskip("lazynet_core.datasets")
    out = read_screen(datasets.toy_screen())
    assert out.uns["lazynet"]["control"] == "non-targeting"
    assert validate_screen(out) is not None


# --------------------------------------------------------------------------- knockouts, escapers
@pytest.mark.parametrize("word", ["CRISPRko", "KO", "knockout", "CRISPR-KO"])
def test_knockout_recognised_and_stated_per_target(word):
    labels = labels_for("control", n_control=200, n_each=100)
    adata = make_screen(labels, unaffected=("G2", "G3"), obs={"perturbation_type": [word] * len(labels)})
    out = read_screen(adata)
    assert set(out.obs["lazynet_modality"]) == {"CRISPRko"}
    check = out.uns["lazynet"]["target_check"]
    assert check["G1"]["ok"] and "sees a knockdown to this level" in check["G1"]["note"]
    assert not check["G2"]["ok"] and "invisible to the model" in check["G2"]["note"]
    assert sorted(set(out.obs["lazynet_perturbation"])) == ["G1", "control"]
    assert out.uns["lazynet"]["cells_dropped"] == {"knockout target not visible": 200}
    statement = next(w for w in out.uns["lazynet"]["warnings"] if w.startswith("Knockout"))
    assert "['G1']" in statement and "['G2', 'G3']; 200 cell(s)): the model cannot see them" in statement
    assert "keep_invisible_knockouts=True" in statement
    kept = read_screen(adata, keep_invisible_knockouts=True)
    assert kept.obs["lazynet_perturbation"].value_counts()["G3"] == 100
    assert validate_screen(kept) is not None


def test_knockout_screen_without_visible_target_is_refused():
    labels = labels_for("control", n_control=200, n_each=100)
    adata = make_screen(labels, unaffected=("G1", "G2", "G3"))
    expected = (r"mRNA did not fall \(\['G1', 'G2', 'G3'\]; 300 cell\(s\)\): the model cannot see them, "
                r"and no knockout target is left.*keep_invisible_knockouts=True")
    with pytest.raises(ScreenError, match=expected):
        read_screen(adata, modality="ko")


def test_escaper_filter():
    """G1's cells: 60 responders (target x0.05) and 40 escapers (target unchanged)."""
    labels = labels_for("control", n_control=300, n_each=100)
    adata = make_screen(labels, fold=0.05, seed=3)
    escaper_rows = np.flatnonzero(np.array(labels) == "G1")[60:]
    fresh = make_screen(labels, fold=1.0, seed=3)  # same seed: the unperturbed counts of those cells
    counts = adata.X.toarray()
    counts[escaper_rows] = fresh.X.toarray()[escaper_rows]
    adata.X = sp.csr_matrix(counts)
    default = read_screen(adata)
    assert default.uns["lazynet"]["escapers"] == {} and default.n_obs == 600  # off by default
    out = read_screen(adata, escapers="drop", modality="CRISPRi")
    report = out.uns["lazynet"]["escapers"]["G1"]
    assert report["status"] == "classified" and report["n_cells"] == 100
    assert 15 <= report["n_escapers"] <= 45  # ~half the 40 escapers lie above the control median
    kept = out.obs_names[out.obs["lazynet_perturbation"] == "G1"]
    assert np.isin(adata.obs_names[np.flatnonzero(np.array(labels) == "G1")[:60]], kept).mean() > 0.95
    assert any(w.startswith("Escaper filter (quantile 0.5): dropped") for w in out.uns["lazynet"]["warnings"])
    with pytest.raises(ScreenError, match="escapers='some' is not supported"):
        read_screen(adata, escapers="some")


# --------------------------------------------------------------------------- targets, modality, IDs
def test_every_dropped_target_named_with_its_cells():
    missing = [f"HS{i}" for i in range(16)]
    labels = labels_for("control", targets=("G1", *missing), n_each=3)
    out = read_screen(make_screen(labels))
    meta = out.uns["lazynet"]
    assert meta["targets_missing_cells"] == dict.fromkeys(sorted(missing), 3)
    warning = next(w for w in meta["warnings"] if "not among the measured genes" in w)
    assert all(f"{t} (3 cells)" in warning for t in missing) and "read the full gene set" in warning


def test_crispra_inferred_without_modality_column():
    out = read_screen(make_screen(labels_for("control"), fold=5.0))
    meta = out.uns["lazynet"]
    assert set(out.obs["lazynet_modality"]) == {"CRISPRa"}
    assert meta["modality_source"] == "inferred: CRISPRa (0 down, 3 up, 0 unchanged of 3 target(s))"
    assert {t: v["direction"] for t, v in meta["modality_inferred"].items()} == dict.fromkeys(
        ["G1", "G2", "G3"], "up")
    assert all(v["ok"] for v in meta["target_check"].values())
    assert read_screen(make_screen(labels_for("control"), fold=5.0), modality="i").uns["lazynet"][
        "modality_source"] == "given: CRISPRi"


def test_ensembl_ids_use_symbol_column():
    adata = make_screen(labels_for("control"))
    ids = [f"ENSG{i:011d}.3" for i in range(len(GENES))]
    symbols = list(GENES)
    symbols[30], symbols[31] = "G29", None  # G29 names two IDs; one ID has no symbol
    adata.var = pd.DataFrame({"gene_name": symbols}, index=ids)
    out = read_screen(adata)
    assert {"G1", "G2", "G3", "G29", "G29-1", "ENSG00000000031.3"} <= set(out.var_names)
    assert sorted(set(out.obs["lazynet_perturbation"])) == ["G1", "G2", "G3", "control"]
    note = next(w for w in out.uns["lazynet"]["warnings"] if "Ensembl" in w)
    assert "var['gene_name']" in note and "1 without a symbol" in note and "G29" in note
    by_id = make_screen(["control"] * 60 + ["ENSG00000000001"] * 30)
    by_id.var = adata.var
    assert set(read_screen(by_id).obs["lazynet_perturbation"]) == {"G1", "control"}
    adata.var = pd.DataFrame(index=ids)
    with pytest.raises(ScreenError, match=r"look like Ensembl IDs: add a symbol column var\['gene_name'\]"):
        read_screen(adata)
