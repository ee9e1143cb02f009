"""Tests for lazynet_core.guides: labels and guide names to target genes."""

from __future__ import annotations

import anndata
import pandas as pd
import pytest

from lazynet_core import data
from lazynet_core.data import read_screen
from lazynet_core.datasets import real_screen_path
from lazynet_core.errors import ScreenError
from lazynet_core.guides import label_targets, read_guide_genes, split_label

GENES = pd.Index(["KEAP1", "NFE2L2", "A", "B", "GATA1", "CD86", "HLA-A", "NKX2-1", "WT1", "MYC"])


def is_control(token):
    return data._is_control_token(token, [data._control_regex(None)])


def targets(labels, genes=GENES, **kwargs):
    return label_targets(labels, genes, is_control=is_control, **kwargs)


@pytest.mark.parametrize(("label", "expected"), [
    ("KEAP1", ("KEAP1",)),
    ("KEAP1_sg1", ("KEAP1",)),
    ("KEAP1-sgRNA2", ("KEAP1",)),
    ("KEAP1_guide3", ("KEAP1",)),
    ("KEAP1-2", ("KEAP1",)),
    ("KEAP1_2", ("KEAP1",)),
    ("KEAP1_+_123456.23-P1P2", ("KEAP1",)),
    ("KEAP1_-_123456.23-P1", ("KEAP1",)),
    ("KEAP1_+_123456", ("KEAP1",)),
    ("GATA1-A", ("GATA1",)),
    ("CD86g1", ("CD86",)),
    ("sgKEAP1", ("KEAP1",)),
    ("A+ctrl", ("A",)),
    ("ctrl+A", ("A",)),
    ("B+A", ("A", "B")),
    ("A_B", ("A", "B")),
    ("A_ctrl", ("A",)),
    ("KEAP1_+_1.23-P1P2+NFE2L2_-_2.23-P1P2", ("KEAP1", "NFE2L2")),
    ("KEAP1_sg1|non-targeting_00003", ("KEAP1",)),
    ("KEAP1_sg1|KEAP1_sg2", ("KEAP1",)),
    ("non-targeting_00001", ()),
    ("ctrl+ctrl", ()),
    ("HLA-A", ("HLA-A",)),
    ("NKX2-1", ("NKX2-1",)),
    ("WT1", ("WT1",)),
])  # fmt: skip
def test_label_styles(label, expected):
    assert targets([label])[label] == expected


def test_unmeasured_targets_keep_a_readable_name():
    labels = ["HS2-A", "HS2-B", "HS2_+_5301.23-P1P2", "LONE-A", "PCSK9_sg1", "TP53"]
    got = targets(labels)
    assert got == {"HS2-A": ("HS2",), "HS2-B": ("HS2",), "HS2_+_5301.23-P1P2": ("HS2",),
                   "LONE-A": ("LONE-A",), "PCSK9_sg1": ("PCSK9",), "TP53": ("TP53",)}
    # a gene-like name with one letter suffix is kept whole unless a sibling guide shares its stem
    assert targets(["HLA-B"], genes=pd.Index(["KEAP1"]))["HLA-B"] == ("HLA-B",)


def test_guide_table_and_aliases():
    table = {"g1": "KEAP1", "g2": "KEAP1", "g7": "Non-Targeting", "g9": "NFE2L2"}
    got = targets(["g1", "g7", "g1|g9", "g2|g7"], guide_genes=table)
    assert got == {"g1": ("KEAP1",), "g7": (), "g1|g9": ("KEAP1", "NFE2L2"), "g2|g7": ("KEAP1",)}
    aliases = {"ENSG00000079999": "KEAP1"}
    assert targets(["ENSG00000079999.14"], aliases=aliases) == {"ENSG00000079999.14": ("KEAP1",)}


def test_split_label():
    assert split_label("A+B") == ["A", "B"]
    assert split_label("g1|g2") == ["g1", "g2"]
    assert split_label("KEAP1_+_12.23-P1P2") == ["KEAP1_+_12.23-P1P2"]
    assert split_label(" A + ctrl ") == ["A", "ctrl"]


def test_read_guide_genes(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("g1,KEAP1\ng2,NFE2L2\n")
    assert read_guide_genes(plain) == {"g1": "KEAP1", "g2": "NFE2L2"}
    header = tmp_path / "header.tsv"
    header.write_text("guide\tgene\ng1\tKEAP1\n")
    assert read_guide_genes(header) == {"g1": "KEAP1"}
    ref = tmp_path / "feature_reference.csv"
    ref.write_text("id,name,read,pattern,sequence,feature_type,target_gene_id,target_gene_name\n"
                   "KEAP1-1,KEAP1_sg1,R2,^(BC),ACGT,CRISPR Guide Capture,ENSG00000079999,KEAP1\n"
                   "NT-1,NT_1,R2,^(BC),TTTT,CRISPR Guide Capture,Non-Targeting,Non-Targeting\n")
    assert read_guide_genes(ref) == {"KEAP1-1": "KEAP1", "KEAP1_sg1": "KEAP1", "NT-1": "Non-Targeting",
                                     "NT_1": "Non-Targeting"}
    with pytest.raises(ScreenError, match=r"does not exist; pass a CSV with columns guide,gene"):
        read_guide_genes(tmp_path / "nope.csv")
    one = tmp_path / "one.csv"
    one.write_text("guide\ng1\n")
    with pytest.raises(ScreenError, match=r"has 1 column\(s\).*it needs two: guide,gene"):
        read_guide_genes(one)


def test_real_guide_names_agree_with_labels():
    """TAP-seq guide IDs (hCRISPRi-v2 GENE_+_pos-P1P2, GENE-A, non-targeting_000NN) give its labels."""
    path = real_screen_path()
    if not path.exists():
        pytest.skip("the shipped real screen is missing")
    adata = anndata.read_h5ad(path)
    by_label = read_screen(adata)
    by_guide = read_screen(adata, pert_key="guide_id")
    assert by_guide.n_obs == by_label.n_obs == 18_013
    pd.testing.assert_series_equal(by_guide.obs["lazynet_perturbation"], by_label.obs["lazynet_perturbation"])
    assert by_guide.uns["lazynet"]["targets_missing_cells"] == {"HS2": 946}
