"""Curated gene modules shipped with the package (method §5).

The table lives in ``lazynet_core/resources/gene_modules.csv`` (package data) with columns

- ``gene``: HGNC symbol; ``alias``: a common alternative name (FSP1, NRF2, ...), may be empty;
- ``module``: ``"ferroptosis"`` or ``"lysosomal_mito_immune"``;
- ``role``: suppressor / driver / marker for ferroptosis (roles from the ferroptosis literature,
  in the driver / suppressor / marker vocabulary of FerrDb V2, are marked "(literature)"),
  ``member`` for the curated lysosomal–mitochondrial–immune module;
- ``arm``: the pathway arm (ferroptosis) or submodule (lysosome / mitochondria / immune);
- ``source``: KEGG hsa04216, WikiPathways WP4313, literature, Tian et al. 2021 (Nat Neurosci
  24:1020) or curated (no single database defines the lysosomal module).

A gene may belong to both modules (DHODH); the table has one row per (gene, module).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

MODULE_CSV = Path(__file__).with_name("resources") / "gene_modules.csv"

DEFAULT_SEEDS: dict[str, tuple[str, ...]] = {
    "ferroptosis": ("GPX4", "SLC7A11", "ACSL4", "AIFM2", "NCOA4", "TFRC", "LPCAT3"),
    "lysosomal_mito_immune": ("PSAP", "MTOR", "MFN2", "TLR4", "ADCY10", "SIRT3"),
}

_ALIASES = {
    "ferroptosis": "ferroptosis",
    "lysosomal_mito_immune": "lysosomal_mito_immune",
    "lysosomal": "lysosomal_mito_immune",
    "lysosomal-mitochondrial-immune": "lysosomal_mito_immune",
    "lysosomal_mitochondrial_immune": "lysosomal_mito_immune",
}


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    return pd.read_csv(MODULE_CSV, dtype=str, keep_default_na=False)


def module_table() -> pd.DataFrame:
    """Return the curated module table (a fresh copy; one row per gene and module).

    Returns
    -------
    pandas.DataFrame
        Columns ``gene, module, role, arm, source, alias``.
    """
    return _table().copy()


def known_modules() -> list[str]:
    """Canonical module names."""
    return sorted(_table()["module"].unique())


def resolve_module(name: str) -> str:
    """Map a module name or alias (``"lysosomal"``) to its canonical name.

    Raises
    ------
    ValueError
        If the name is not a known module or alias.
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        msg = (f"Unknown gene module {name!r}. Known modules: {known_modules()} "
               f"(aliases: {sorted(set(_ALIASES) - set(known_modules()))}).")
        raise ValueError(msg)
    return _ALIASES[key]


def module_genes(name: str) -> list[str]:
    """Genes of one module, in table order.

    Parameters
    ----------
    name
        ``"ferroptosis"``, ``"lysosomal_mito_immune"`` or the alias ``"lysosomal"``.
    """
    table = _table()
    return table.loc[table["module"] == resolve_module(name), "gene"].tolist()


def default_seeds(name: str) -> tuple[str, ...]:
    """Default BFS seeds of a module (method §5)."""
    return DEFAULT_SEEDS[resolve_module(name)]


def gene_module_map(table: pd.DataFrame | None = None) -> dict[str, str]:
    """Map gene -> module name(s), ``";"``-joined when a gene is in several modules."""
    table = module_table() if table is None else table
    return table.groupby("gene", sort=False)["module"].agg(lambda m: ";".join(sorted(set(m)))).to_dict()
