"""Curated module table shipped as package data."""

import pytest

from lazynet_core import modules


def test_table_columns_and_sizes():
    table = modules.module_table()
    assert list(table.columns) == ["gene", "module", "role", "arm", "source", "alias"]
    assert not table.duplicated(["gene", "module"]).any()
    assert (table["module"] == "ferroptosis").sum() >= 44
    assert set(table["module"]) == {"ferroptosis", "lysosomal_mito_immune"}
    assert modules.MODULE_CSV.is_file()


def test_sources_spelled_out_and_literature_phrasing():
    table = modules.module_table()
    codes = {s for src in table["source"] for s in src.split("; ")}
    assert not codes & {"K", "W", "L", "T"}
    assert not table["role"].str.contains("FerrDb").any()
    lit = table[table["source"] == "literature"]
    assert len(lit) and lit["role"].str.contains("literature").all()
    lyso = table[table["module"] == "lysosomal_mito_immune"]
    assert lyso["source"].str.contains("curated").all()


@pytest.mark.parametrize("name", ["ferroptosis", "lysosomal_mito_immune"])
def test_default_seeds_are_members(name):
    genes = modules.module_genes(name)
    assert set(modules.DEFAULT_SEEDS[name]) <= set(genes)


def test_lysosomal_alias_and_paper_genes():
    genes = modules.module_genes("lysosomal")
    assert genes == modules.module_genes("lysosomal_mito_immune")
    assert {"PSAP", "MTOR", "MFN2", "TLR4", "ADCY10", "SIRT3"} <= set(genes)
    assert modules.default_seeds("Lysosomal") == modules.DEFAULT_SEEDS["lysosomal_mito_immune"]


def test_unknown_module_lists_known():
    with pytest.raises(ValueError, match="ferroptosis"):
        modules.module_genes("apoptosis")


def test_table_is_a_copy():
    t = modules.module_table()
    t.loc[0, "gene"] = "XXX"
    assert modules.module_table().loc[0, "gene"] != "XXX"


def test_gene_module_map_joins_shared_genes():
    mapping = modules.gene_module_map()
    assert mapping["DHODH"] == "ferroptosis;lysosomal_mito_immune"
    assert mapping["GPX4"] == "ferroptosis"
