"""Cell Ranger outputs and guide calls into read_screen.

The 10x files are written here in Cell Ranger's own layouts (a ``filtered_feature_bc_matrix.h5``
and a matrix directory, both with *CRISPR Guide Capture* features, plus
``protospacer_calls_per_cell.csv``) from the real TAP-seq screen shipped in ``assets/``, and read
back to the same cells and labels as its ``.h5ad``.
"""

from __future__ import annotations

import gzip

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from lazynet_core import cli
from lazynet_core.data import read_screen
from lazynet_core.datasets import real_screen_path
from lazynet_core.errors import ScreenError
from lazynet_core.readers import DEFAULT_MIN_GUIDE_UMIS, calls_from_counts, read_10x, read_guide_calls

GEX, GUIDE = "Gene Expression", "CRISPR Guide Capture"
THRESHOLD = 8  # the authors' rule for this screen (assets/schraivogel2020_README.md)


# --------------------------------------------------------------------------- writing 10x files
def write_h5(path, matrix, barcodes, ids, names, types, extra=None):
    """A Cell Ranger v3 feature-barcode matrix: features x cells CSC under /matrix."""
    csc = sp.csc_matrix(sp.csr_matrix(matrix).T)  # features x cells; columns (cells) are indptr
    extra = extra or {}
    with h5py.File(path, "w") as f:
        group = f.create_group("matrix")
        group.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
        group.create_dataset("data", data=csc.data.astype(np.int32))
        group.create_dataset("indices", data=csc.indices.astype(np.int64))
        group.create_dataset("indptr", data=csc.indptr.astype(np.int64))
        group.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        feats = group.create_group("features")
        columns = {"id": ids, "name": names, "feature_type": types, "genome": ["GRCh38"] * len(ids)} | extra
        for key, values in columns.items():
            feats.create_dataset(key, data=np.array(values, dtype="S"))
        feats.create_dataset("_all_tag_keys", data=np.array(["genome", *extra], dtype="S"))
    return path


def write_matrix_dir(folder, matrix, barcodes, ids, names, types):
    """A Cell Ranger v3 matrix directory: matrix.mtx.gz (features x cells), features/barcodes .tsv.gz."""
    folder.mkdir(parents=True)
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(sp.csr_matrix(matrix).T.astype(np.int64)), field="integer")
    with gzip.open(folder / "features.tsv.gz", "wt") as handle:
        handle.writelines(f"{i}\t{n}\t{t}\n" for i, n, t in zip(ids, names, types, strict=True))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as handle:
        handle.writelines(f"{b}\n" for b in barcodes)
    return folder


@pytest.fixture(scope="module")
def tapseq():
    path = real_screen_path()
    if not path.exists():
        pytest.skip("the shipped real screen is missing")
    return anndata.read_h5ad(path)


@pytest.fixture(scope="module")
def reference(tapseq):
    return read_screen(tapseq)


def features(adata, *, guide_ids=None):
    genes = list(adata.var_names)
    guides = list(adata.uns["guide_names"])
    ids = [f"ENSG{i:011d}" for i in range(len(genes))] + (guide_ids or guides)
    names = genes + guides
    types = [GEX] * len(genes) + [GUIDE] * len(guides)
    return ids, names, types


def full_matrix(adata):
    return sp.hstack([sp.csr_matrix(adata.X), sp.csr_matrix(adata.obsm["guide_counts"])], format="csr")


def assert_same_screen(out, reference):
    assert list(out.obs_names) == list(reference.obs_names)
    assert list(out.obs["lazynet_perturbation"]) == list(reference.obs["lazynet_perturbation"])
    assert list(out.var_names) == list(reference.var_names)
    np.testing.assert_allclose(out.X.toarray(), reference.X.toarray(), atol=1e-6)


# --------------------------------------------------------------------------- Cell Ranger files
def test_h5_with_guide_capture_reads_like_the_h5ad(tmp_path, tapseq, reference):
    ids, names, types = features(tapseq)
    h5 = write_h5(tmp_path / "filtered_feature_bc_matrix.h5", full_matrix(tapseq), tapseq.obs_names,
                  ids, names, types)
    out = read_screen(h5, min_guide_umis=THRESHOLD, modality="CRISPRi")
    assert_same_screen(out, reference)
    meta = out.uns["lazynet"]
    assert meta["pert_key"] == "lazynet_guides" and meta["control"] == "non-targeting*"
    assert meta["guides"] == {"source": "obsm['guide_counts']", "min_umis": 8, "n_cells_with_guides": 18_959,
                              "moi": "drop", "n_cells_several_targets": 0}
    assert meta["targets_missing_cells"] == {"HS2": 946} and len(meta["sha256"]) == 64
    assert out.obs["lazynet_guides"].iloc[0] == tapseq.obs["guide_id"].iloc[0]


def test_outs_folder_and_default_threshold(tmp_path, tapseq):
    ids, names, types = features(tapseq)
    (tmp_path / "outs").mkdir()
    write_h5(tmp_path / "outs" / "filtered_feature_bc_matrix.h5", full_matrix(tapseq), tapseq.obs_names,
             ids, names, types)
    out = read_screen(tmp_path)  # the Cell Ranger run folder
    meta = out.uns["lazynet"]
    assert meta["source"].endswith("outs/filtered_feature_bc_matrix.h5")
    assert meta["guides"]["min_umis"] == DEFAULT_MIN_GUIDE_UMIS == 5
    # at 5 UMIs some cells carry a second guide: 50 target two genes and are dropped, counted
    assert meta["cells_dropped"] == {"several targets (moi='drop')": 50, "target not measured": 945}
    assert any("50 cell(s) with guides for several genes were dropped" in w for w in meta["warnings"])
    combined = read_screen(tmp_path, moi="combine")
    pairs = combined.obs["lazynet_perturbation"].loc[lambda s: s.str.contains(r"\+")]
    with_hs2 = combined.uns["lazynet"]["targets_missing_cells"]["HS2"] - 945  # combinations with HS2
    assert len(pairs) + with_hs2 == 50 and with_hs2 > 0


def test_target_gene_name_from_the_feature_reference(tmp_path, tapseq, reference):
    """Opaque guide IDs are resolved through the h5's target_gene_name column (feature reference)."""
    guides = list(tapseq.uns["guide_names"])
    opaque = [f"guide{i:03d}" for i in range(len(guides))]
    gene_of = [g.split("_")[0].split("-A")[0].split("-B")[0].split("-C")[0].split("-D")[0] for g in guides]
    gene_of = ["Non-Targeting" if g.startswith("non") else g for g in gene_of]
    ids, _, types = features(tapseq, guide_ids=opaque)
    names = list(tapseq.var_names) + opaque
    blank = [""] * tapseq.n_vars
    extra = {"target_gene_name": blank + gene_of, "target_gene_id": blank + gene_of}
    h5 = write_h5(tmp_path / "m.h5", full_matrix(tapseq), tapseq.obs_names, ids, names, types, extra)
    assert read_10x(h5).uns["guide_genes"]["guide000"] == "CCNE2"
    assert_same_screen(read_screen(h5, min_guide_umis=THRESHOLD, modality="CRISPRi"), reference)


def test_matrix_directory_with_guide_genes_table(tmp_path, tapseq, reference):
    keep = np.r_[0:1500, 9000:10500]
    sub = tapseq[keep].copy()
    guides = list(sub.uns["guide_names"])
    opaque = [f"g{i}" for i in range(len(guides))]
    ids, _, types = features(sub, guide_ids=opaque)
    folder = write_matrix_dir(tmp_path / "filtered_feature_bc_matrix", full_matrix(sub), sub.obs_names,
                              ids, list(sub.var_names) + opaque, types)
    table = tmp_path / "guides.csv"
    table.write_text("guide,gene\n" + "".join(f"{o},{g}\n" for o, g in zip(opaque, guides, strict=True)))
    out = read_screen(folder, guide_genes=table, min_guide_umis=THRESHOLD, modality="CRISPRi")
    expected = reference.obs.loc[reference.obs_names.isin(sub.obs_names), "lazynet_perturbation"]
    assert list(out.obs_names) == list(expected.index)
    assert list(out.obs["lazynet_perturbation"]) == list(expected)
    with pytest.raises(ScreenError, match="No cells with a known control label"):
        read_screen(folder, min_guide_umis=THRESHOLD)  # opaque names and no table: no controls found


def test_protospacer_calls_and_cell_guide_csv(tmp_path, tapseq, reference):
    ids, names, types = features(tapseq)
    n_genes = tapseq.n_vars
    h5 = write_h5(tmp_path / "gex.h5", tapseq.X, tapseq.obs_names, ids[:n_genes], names[:n_genes],
                  types[:n_genes])
    calls = calls_from_counts(tapseq.obsm["guide_counts"], tapseq.uns["guide_names"], min_umis=THRESHOLD)
    umis = sp.csr_matrix(tapseq.obsm["guide_counts"]).max(axis=1).toarray().ravel()
    crispr = pd.DataFrame({"cell_barcode": tapseq.obs_names, "num_features": 1, "feature_call": calls,
                           "num_umis": umis})
    crispr.to_csv(tmp_path / "protospacer_calls_per_cell.csv", index=False)
    out = read_screen(h5, guide_calls=tmp_path / "protospacer_calls_per_cell.csv", modality="CRISPRi")
    assert_same_screen(out, reference)
    assert out.uns["lazynet"]["guides"]["source"].endswith("protospacer_calls_per_cell.csv")
    two = tmp_path / "calls.csv"  # headerless cell,guide; one row per guide, a stray barcode added
    pd.DataFrame({"c": [*tapseq.obs_names, "ZZZ-1"], "g": [*calls, "KEAP1_sg1"]}).to_csv(
        two, index=False, header=False)
    out = read_screen(h5, guide_calls=two, modality="CRISPRi")
    assert_same_screen(out, reference)
    assert out.uns["lazynet"]["guides"]["n_calls_not_in_screen"] == 1


# --------------------------------------------------------------------------- guide assignment, MOI
def test_calls_from_counts_threshold():
    counts = np.array([[0, 5, 0], [4, 0, 0], [9, 7, 0], [0, 0, 0]])
    assert list(calls_from_counts(counts, ["a", "b", "c"])) == ["b", None, "a|b", None]
    assert list(calls_from_counts(counts, ["a", "b", "c"], min_umis=8)) == [None, None, "a", None]
    with pytest.raises(ScreenError, match="3 columns but 2 guide names"):
        calls_from_counts(counts, ["a", "b"])


def moi_screen(seed=0):
    """Guides for G1, G2 and non-targeting; known cells with two genes, gene + NT, or no guide."""
    rng = np.random.default_rng(seed)
    names = ["G1_sg1", "G1_sg2", "G2_sg1", "non-targeting_001"]
    kinds = [[3]] * 60 + [[0]] * 30 + [[1]] * 10 + [[2]] * 30 + [[0, 2]] * 7 + [[1, 3]] * 5 + [[0, 1]] * 4
    kinds += [[]] * 6
    guide = np.zeros((len(kinds), 4), dtype=np.int32)
    for i, hit in enumerate(kinds):
        guide[i, hit] = 20
    means = np.tile(rng.uniform(5, 30, 20), (len(kinds), 1))
    counts = rng.negative_binomial(5, 5 / (5 + means)).astype(np.float32)
    adata = anndata.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=[f"G{i}" for i in range(20)]),
                            obs=pd.DataFrame(index=[f"c{i}" for i in range(len(kinds))]))
    adata.obsm["guide_counts"] = sp.csr_matrix(guide)
    adata.uns["guide_names"] = np.array(names)
    return adata


def test_moi_drop_and_combine():
    adata = moi_screen()
    out = read_screen(adata, modality="CRISPRi")
    sizes = out.obs["lazynet_perturbation"].value_counts().to_dict()
    assert sizes == {"control": 60, "G1": 30 + 10 + 5 + 4, "G2": 30}
    assert out.uns["lazynet"]["cells_dropped"] == {"several targets (moi='drop')": 7, "no guide call": 6}
    warnings = out.uns["lazynet"]["warnings"]
    assert any("7 cell(s) with guides for several genes were dropped" in w for w in warnings)
    assert "6 cell(s) without a guide call were dropped." in warnings
    combined = read_screen(adata, moi="combine", modality="CRISPRi")
    assert combined.obs["lazynet_perturbation"].value_counts()["G1+G2"] == 7
    assert combined.uns["lazynet"]["guides"]["moi"] == "combine"
    with pytest.raises(ScreenError, match="moi='both' is not supported; pass 'combine'"):
        read_screen(adata, moi="both")


# --------------------------------------------------------------------------- bad input
def test_bad_sources(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ScreenError, match=r"not an \.h5ad file or a Cell Ranger output.*matrix\.mtx\.gz"):
        read_screen(folder)
    garbage = tmp_path / "x.h5"
    garbage.write_bytes(b"not hdf5" * 50)
    with pytest.raises(ScreenError, match=r"x\.h5' is a text file, not an \.h5ad file"):
        read_screen(garbage)
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as handle:
        handle.create_group("matrix")
    with pytest.raises(ScreenError, match=r"Could not read '.*broken\.h5' as a Cell Ranger \.h5 file"):
        read_screen(broken)
    only_guides = write_h5(tmp_path / "g.h5", np.ones((3, 2)), ["a", "b", "c"], ["g1", "g2"], ["g1", "g2"],
                           [GUIDE, GUIDE])
    with pytest.raises(ScreenError, match="has no 'Gene Expression' features"):
        read_screen(only_guides)


def test_bad_guide_calls(tmp_path):
    adata = moi_screen()
    with pytest.raises(ScreenError, match="Guide calls file '.*nope.csv' does not exist"):
        read_screen(adata, guide_calls=tmp_path / "nope.csv")
    other = tmp_path / "other.csv"
    other.write_text("cell,guide\nAAAC-1,G1_sg1\n")
    with pytest.raises(ScreenError, match=r"None of the 1 cell barcodes.*'AAAC-1'.*'c0'"):
        read_screen(adata, guide_calls=other)
    with pytest.raises(ScreenError, match="pert_key='x' and guide_calls= are alternatives"):
        read_screen(adata, guide_calls=other, pert_key="x")
    del adata.uns["guide_names"]
    with pytest.raises(ScreenError, match=r"uns\['guide_names'\] is missing"):
        read_screen(adata)
    assert read_guide_calls(other).to_dict() == {"AAAC-1": "G1_sg1"}


def test_cli_passes_guide_options(tmp_path):
    adata = moi_screen()
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    args = cli.build_parser().parse_args(
        ["train", "--data", str(path), "--moi", "combine", "--min-guide-umis", "10", "--modality", "i",
         "--out", str(tmp_path / "run")])
    out = cli._load_screen(args)
    assert out.uns["lazynet"]["guides"]["min_umis"] == 10
    assert out.obs["lazynet_perturbation"].value_counts()["G1+G2"] == 7


def test_backed_h5ad_keeps_guide_counts(tmp_path):
    path = tmp_path / "screen.h5ad"
    moi_screen().write_h5ad(path)
    backed, memory = read_screen(path, backed=True), read_screen(path, backed=False)
    assert list(backed.obs["lazynet_perturbation"]) == list(memory.obs["lazynet_perturbation"])
    assert backed.uns["lazynet"]["guides"]["source"] == "obsm['guide_counts']"


def test_read_options_recorded_to_read_again(tmp_path):
    adata = moi_screen()
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    out = read_screen(path, min_guide_umis=10, moi="combine", modality="i", extra_genes=("G5",))
    options = out.uns["lazynet"]["read_options"]
    assert options == {"min_guide_umis": 10, "moi": "combine", "modality": "i", "extra_genes": ["G5"]}
    again = read_screen(path, **options)
    assert list(again.obs["lazynet_perturbation"]) == list(out.obs["lazynet_perturbation"])
    assert read_screen(path).uns["lazynet"]["read_options"] == {}
    out.write_h5ad(tmp_path / "out.h5ad")  # every recorded value is storable
