"""A specific answer for every kind of bad file, in the library, the CLI and the app alike.

Each test builds its bad input in ``tmp_path``, checks that the message names the problem AND the fix,
and that nothing was written (the folder is byte for byte the same; the CLI creates no run).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from lazynet_core.data import read_screen, validate_screen
from lazynet_core.errors import ScreenError

ROOT = Path(__file__).resolve().parent.parent
GENES = [f"G{i}" for i in range(40)]


def make_screen(labels, *, key="perturbation", fold=0.15, seed=0, obs=None) -> anndata.AnnData:
    """Negative-binomial counts; each target gene's mean is multiplied by ``fold`` in its cells."""
    rng = np.random.default_rng(seed)
    means = np.tile(rng.uniform(5, 30, len(GENES)), (len(labels), 1))
    for i, label in enumerate(labels):
        if label.strip() in GENES:
            means[i, GENES.index(label.strip())] *= fold
    counts = rng.negative_binomial(5, 5 / (5 + means)).astype(np.float32)
    frame = pd.DataFrame({key: labels, **(obs or {})}, index=[f"cell{i}" for i in range(len(labels))])
    return anndata.AnnData(X=sp.csr_matrix(counts), obs=frame, var=pd.DataFrame(index=GENES))


def labels_for(control="control", targets=("G1", "G2", "G3"), n_control=60, n_each=30):
    return [control] * n_control + [t for t in targets for _ in range(n_each)]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refused(source, folder: Path, *needles: str, **options) -> str:
    """Read ``source``; it must fail with every needle in the message and leave ``folder`` untouched."""
    before = snapshot(folder)
    with pytest.raises(ScreenError) as info:
        read_screen(source, **options)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    assert snapshot(folder) == before, "reading a screen must never write"
    return message


def read_quietly(source, folder: Path | None = None, **options) -> anndata.AnnData:
    before = snapshot(folder) if folder is not None else None
    out = read_screen(source, **options)
    if folder is not None:
        assert snapshot(folder) == before
    return out


def warned(adata: anndata.AnnData, needle: str) -> str:
    found = [w for w in adata.uns["lazynet"]["warnings"] if needle in w]
    assert found, (needle, adata.uns["lazynet"]["warnings"])
    return found[0]


# --------------------------------------------------------------------------- files that are not screens
def test_empty_file(tmp_path):
    path = tmp_path / "screen.h5ad"
    path.write_bytes(b"")
    refused(path, tmp_path, "is empty (0 bytes)", "copy the file again")


def test_csv_is_named_and_conversion_shown(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("cell,G1,G2\nc1,3,4\nc2,0,1\n")
    refused(path, tmp_path, "is a text table (CSV/TSV), not an .h5ad file", "anndata.read_csv('counts.csv')",
            ".write_h5ad(", "perturbation label to .obs")
    disguised = tmp_path / "screen.h5ad"  # told by content, not by name
    disguised.write_text("cell\tG1\tG2\nc1\t3\t4\n")
    refused(disguised, tmp_path, "is a text table (CSV/TSV)")


def test_zip_and_gzip_say_unpack_first(tmp_path):
    real = tmp_path / "screen.h5ad"
    make_screen(labels_for()).write_h5ad(real)
    zipped = tmp_path / "screen.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(real, "screen.h5ad")
    refused(zipped, tmp_path, "is a ZIP archive", "unzip it first")
    packed = tmp_path / "screen.h5ad.gz"
    packed.write_bytes(gzip.compress(real.read_bytes()))
    message = refused(packed, tmp_path, "is gzip-compressed", "decompress it first (gunzip 'screen.h5ad.gz'",
                      "'screen.h5ad'")
    assert "not an .h5ad file or a Cell Ranger output" not in message
    renamed = tmp_path / "other.h5ad"  # a gzip whose name says .h5ad
    renamed.write_bytes(packed.read_bytes())
    refused(renamed, tmp_path, "is gzip-compressed", "decompress it first")


def test_hdf5_that_is_not_anndata(tmp_path):
    path = tmp_path / "screen.h5ad"
    with h5py.File(path, "w") as handle:
        handle["foo"] = np.arange(3)
    refused(path, tmp_path, "is an HDF5 file but not an AnnData .h5ad file", "no X, obs and var",
            "it holds foo", "write_h5ad")


def test_folder_that_is_not_a_cell_ranger_output(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    refused(folder, tmp_path, "is a folder, not an .h5ad file or a Cell Ranger output", "no matrix.mtx.gz",
            "it contains notes.txt", "load the .h5ad file, or Cell Ranger's outs/ folder")
    make_screen(labels_for()).write_h5ad(folder / "screen.h5ad")
    refused(folder, tmp_path, "load the .h5ad file itself", "screen.h5ad")


def test_truncated_h5ad(tmp_path):
    full = tmp_path / "full.h5ad"
    make_screen(labels_for()).write_h5ad(full)
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    refused(cut, tmp_path, "is truncated or incomplete (was the copy/download interrupted?)",
            "Copy or download it again")


# --------------------------------------------------------------------------- labels
def test_no_control_cells_lists_the_most_common_values(tmp_path):
    path = tmp_path / "screen.h5ad"
    make_screen(labels_for("Scr", n_control=70)).write_h5ad(path)
    refused(path, tmp_path, "No cells with a known control label in column(s) 'perturbation'",
            "Most common values: 'perturbation': 'Scr' (70 cells), 'G1' (30 cells)",
            "set the control label (control= / --control / 'Control label' on the Data page)")
    assert read_screen(path, control="Scr").obs["lazynet_is_control"].sum() == 70


def test_only_controls(tmp_path):
    path = tmp_path / "screen.h5ad"
    make_screen(["NTC"] * 50 + ["non-targeting"] * 10).write_h5ad(path)
    refused(path, tmp_path, "Every labelled cell in column 'perturbation' is a control",
            "'NTC' (50 cells)", "no perturbed cells",
            "choose the perturbation column (pert_key= / --pert-key")


@pytest.mark.parametrize(("n_cells", "n_genes", "needles"), [
    (1, 40, ("holds only 1 cell(s): too small to train", "at least 2 control cells",
             "4 cells at the very least", "Load the whole screen")),
    (150, 1, ("measures only 1 gene(s): too small to train", "at least 2 genes", "Load the full gene set")),
])
def test_one_cell_or_one_gene(tmp_path, n_cells, n_genes, needles):
    adata = make_screen(labels_for())[:n_cells, :n_genes].copy()
    path = tmp_path / "small.h5ad"
    adata.write_h5ad(path)
    refused(path, tmp_path, *needles)


def test_cells_without_counts_are_named_by_group(tmp_path):
    adata = make_screen(labels_for())
    X = adata.X.toarray()
    X[[0, 1, 60]] = 0  # two controls and one G1 cell
    adata.X = sp.csr_matrix(X)
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    out = read_quietly(path, tmp_path)
    assert warned(out, "no counts") == "3 cell(s) with no counts were dropped: control (2), G1 (1)."
    assert out.n_obs == 147


def test_disagreeing_label_columns(tmp_path):
    labels = labels_for()
    rng = np.random.default_rng(1)
    wrong = list(rng.permutation(labels))  # the same labels on the wrong cells: no target moves
    adata = make_screen(labels, key="gene", obs={"perturbation": wrong})
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    out = read_quietly(path, tmp_path)
    assert out.uns["lazynet"]["pert_key"] == "gene"  # its targets fell; 'perturbation' comes first otherwise
    text = warned(out, "Several columns")
    for needle in ("'perturbation' (", "'gene' (3 of 3 target(s) move as expected)", "Used 'gene'",
                   "--pert-key"):
        assert needle in text, (needle, text)
    forced = read_screen(path, pert_key="perturbation")
    assert not any("Several columns" in w for w in forced.uns["lazynet"]["warnings"])


def test_agreeing_label_columns_are_no_ambiguity():
    labels = labels_for()
    adata = make_screen(labels, obs={"gene": labels, "target": [f"{lab}_sg1" if lab != "control" else lab
                                                                for lab in labels]})
    out = read_screen(adata)
    assert out.uns["lazynet"]["pert_key"] == "perturbation"
    assert not any("Several columns" in w for w in out.uns["lazynet"]["warnings"])


def test_duplicate_cell_and_gene_names(tmp_path):
    adata = make_screen(labels_for())
    adata.var_names = ["G5", *GENES[1:5], "G5", *GENES[6:]]  # G0 renamed to a second G5
    adata.obs_names = ["cellA", "cellA", *adata.obs_names[2:]]
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    out = read_quietly(path, tmp_path)
    assert warned(out, "gene name(s)") == ("1 gene name(s) appear more than once ('G5' x2); they were made "
                                           "unique by adding '-1', '-2', ... to the repeats.")
    assert "'cellA' x2" in warned(out, "cell name(s)")
    assert out.var_names.is_unique and out.obs_names.is_unique and "G5-1" in out.var_names


def test_control_labels_differing_in_case_or_spaces_are_merged(tmp_path):
    labels = ["NTC"] * 40 + ["ntc "] * 10 + ["Ntc"] * 10 + [t for t in ("G1", "G2", "G3") for _ in range(30)]
    path = tmp_path / "screen.h5ad"
    make_screen(labels).write_h5ad(path)
    out = read_quietly(path, tmp_path)
    assert out.obs["lazynet_is_control"].sum() == 60
    text = warned(out, "merged into control")
    for needle in ("'NTC' (40 cells)", "'ntc ' (10 cells)", "'Ntc' (10 cells)"):
        assert needle in text, (needle, text)


# --------------------------------------------------------------------------- counts
def _logged(adata: anndata.AnnData) -> anndata.AnnData:
    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def test_counts_found_in_raw(tmp_path):
    counts = make_screen(labels_for())
    logged = _logged(counts)
    logged.raw = counts
    path = tmp_path / "screen.h5ad"
    logged.write_h5ad(path)
    out = read_quietly(path, tmp_path)
    assert out.uns["lazynet"]["layer"] == "raw.X" and not out.uns["lazynet"]["input_was_log"]
    assert warned(out, "used .raw.X").startswith(".X looks log-normalised; used .raw.X as the raw counts")
    np.testing.assert_allclose(out.X.toarray(), read_screen(counts).X.toarray(), atol=1e-5)
    assert read_screen(path, backed=True).uns["lazynet"]["layer"] == "raw.X"
    assert read_screen(path, layer="raw.X").uns["lazynet"]["layer"] == "raw.X"


def test_raw_with_more_genes_than_x(tmp_path):
    counts = make_screen(labels_for())
    subset = _logged(counts)[:, 10:].copy()  # an HVG subset without the targets G1..G3
    subset.raw = counts
    out = read_screen(subset)
    assert out.n_vars == 40 and "G1" in out.var_names
    assert "(40 genes; .X has 30)" in warned(out, "used .raw.X")


def test_scaled_x_with_counts_in_a_layer(tmp_path):
    counts = make_screen(labels_for())
    scaled = _logged(counts)
    sc.pp.scale(scaled)
    scaled.layers["my_umis"] = counts.X.copy()  # any layer of integer counts
    out = read_screen(scaled)
    assert out.uns["lazynet"]["layer"] == "my_umis"
    text = warned(out, "used layer")
    assert text.startswith(".X holds scaled data (negative values); used layer 'my_umis' as the raw counts")
    bare = _logged(counts)
    sc.pp.scale(bare)
    with pytest.raises(ScreenError, match=r"negative values.*scaled data.*No raw counts were found"):
        read_screen(bare)


def test_absurd_values_are_refused(tmp_path):
    adata = make_screen(labels_for())
    X = adata.X.toarray()
    X[[3, 7], 0] = 3e12
    adata.X = sp.csr_matrix(X)
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    refused(path, tmp_path, "absurd values of 1e+09 or more (largest 3e+12)",
            "2 value(s) in 2 cell(s), e.g. 'cell3', 'cell7'", "Fix or export the matrix again")


# --------------------------------------------------------------------------- small groups, odd names
def test_small_perturbations_are_warned():
    out = read_screen(make_screen(labels_for() + ["G4"] * 3))
    text = [w for w in validate_screen(out) if "fewer than 5 cells" in w]
    assert text == ["1 perturbation(s) have fewer than 5 cells: 'G4'. Their effects rest on very few cells; "
                    "treat their predictions with care."]


def test_long_and_invisible_names_are_shortened_in_messages(tmp_path):
    long = "X" * 100
    hidden = "G1\u200b\u202e"
    adata = make_screen([long] * 60 + [hidden] * 30)
    with pytest.raises(ScreenError) as info:
        read_screen(adata)
    message = str(info.value)
    assert long not in message and "…" in message
    assert "\u200b" not in message and "\u202e" not in message and "\\u200b" in message


# --------------------------------------------------------------------------- the command line
def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lazynet_core", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("bad.csv", b"cell,G1\nc1,3\n", "is a text table (CSV/TSV), not an .h5ad file"),
    ("empty.h5ad", b"", "is empty (0 bytes)"),
    ("screen.h5ad.gz", gzip.compress(b"x" * 100), "decompress it first (gunzip"),
])
def test_cli_bad_file_one_line_no_traceback_nothing_written(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    before = snapshot(tmp_path)
    result = run_cli("train", name, "--out", "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_cli_prints_every_warning(tmp_path):
    adata = make_screen(labels_for(n_control=40) + ["G4"] * 3)
    X = adata.X.toarray()
    X[0] = 0
    adata.X = sp.csr_matrix(X)
    adata.obs_names = ["dup", "dup", *adata.obs_names[2:]]
    adata.write_h5ad(tmp_path / "screen.h5ad")
    result = run_cli("train", "screen.h5ad", "--out", "run", "--replicas", "1", "--epochs", "1",
                     "--split", "cells", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    expected = validate_screen(read_screen(tmp_path / "screen.h5ad"))
    assert len(expected) >= 3 and [line.removeprefix("warning: ") for line in lines] == expected
    assert any("no counts were dropped: control (1)" in line for line in lines)
    assert any("fewer than 5 cells: 'G4'" in line for line in lines)


# --------------------------------------------------------------------------- the app
def test_data_page_offers_the_choices_after_a_failed_read(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from helpers_app import load_on_data_page

    path = tmp_path / "screen.h5ad"
    make_screen(labels_for("Scr", n_control=70) + ["G4"] * 3, key="my_guides").write_h5ad(path)
    at = load_on_data_page(path, tmp_path / "runs", monkeypatch)
    assert at.error and at.session_state["screen"] is None
    column = [s for s in at.selectbox if s.label == "Perturbation column"][0]
    control = [t for t in at.text_input if t.label == "Control label"][0]
    assert column.value == "my_guides" and control.value == "Scr"  # prefilled: most common value
    assert any("Scr (70)" in c.value for c in at.caption)
    at.button(key="FormSubmitter:retry-Re-read with these settings").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["screen"]["control"] == "Scr"
    assert any("fewer than 5 cells" in w.value for w in at.warning)  # validate_screen's warnings shown
