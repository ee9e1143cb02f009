"""Turn perturbation labels and guide names into target genes.

Screens name their perturbations in many ways. ``label_targets`` maps every distinct label to the
sorted tuple of genes it targets (an empty tuple is a control). Decisions, in the order applied to
each token of a label:

- A label is split into tokens on ``"|"`` (Cell Ranger's ``feature_call``) and on ``"+"`` unless
  the ``"+"`` sits between underscores (the strand in hCRISPRi-v2 ``GENE_+_pos-P1P2``), so GEARS
  ``"A+ctrl"`` is A alone and ``"B+A"`` is the combination ``A+B``.
- A guide → gene table (``guide_genes``), when given, is applied to each token first.
- Control tokens (the vocabulary of ``lazynet_core.data``) contribute no target.
- A token that is a measured gene (or an Ensembl ID with a known symbol) is that gene.
- Unambiguous guide names give their gene whether or not it is measured: hCRISPRi-v2
  ``KEAP1_+_123456.23-P1P2`` and guide words ``KEAP1_sg1``, ``KEAP1-sgRNA2``, ``KEAP1_guide3``.
- scPerturb ``"A_B"`` is the combination when every part is a measured gene or a control.
- Ambiguous suffixes (``KEAP1-2``, ``KEAP1_2``, ``GATA1-A``, Mixscape ``CD86g1``, prefix
  ``sgKEAP1``) are stripped when the stem is a measured gene, or when at least two distinct tokens
  share that stem (``HS2-A``, ``HS2-B`` name one unmeasured target ``HS2``); otherwise the token is
  kept whole, because ``HLA-A`` or ``NKX2-1`` are genes.
- Anything else is kept as the target name; ``read_screen`` then reports it as not measured.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from lazynet_core.errors import ScreenError
from lazynet_core.readers import read_table

__all__ = ["label_targets", "read_guide_genes", "split_label"]

_SPLIT = re.compile(r"\||(?<!_)\+(?!_)")
_HCRISPR = re.compile(r"^(?P<stem>.+?)_[+-]_\d+(?:\.\d+)?(?:-P\d+(?:P\d+)?)?$")
_GUIDE_WORD = re.compile(r"^(?P<stem>.+?)[_\-.](?:sg|sgrna|grna|guide|crrna|sgid)[_\-.]?\d*$", re.I)
_AMBIGUOUS = (
    re.compile(r"^(?P<stem>.+?)[_\-.]\d+$"),  # KEAP1-2, KEAP1_2
    re.compile(r"^(?P<stem>.+?)[_\-][A-Za-z]$"),  # GATA1-A
    re.compile(r"^(?P<stem>.+?[A-Za-z0-9])[_\-.]?g\d+$"),  # Mixscape CD86g1, KEAP1_g1
    re.compile(r"^sg(?P<stem>[A-Z0-9][A-Za-z0-9.\-]*?)(?:[_\-.]\d+)?$"),  # sgKEAP1, sgKEAP1_2
)  # fmt: skip
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(?:\.\d+)?$")
_GUIDE_COLUMNS = ("guide", "guide_id", "sgrna", "grna", "feature", "feature_call", "id", "name")
_GENE_COLUMNS = ("target_gene_name", "gene", "target_gene", "gene_symbol", "target", "gene_name")


def split_label(label: str) -> list[str]:
    """Split a perturbation label into its guide or gene tokens (see the module docstring)."""
    return [t.strip() for t in _SPLIT.split(str(label)) if t.strip()]


def is_ensembl(name: str) -> bool:
    """True for an Ensembl gene ID such as ``ENSG00000079999`` (with or without a version)."""
    return bool(_ENSEMBL.match(str(name)))


def _ambiguous_stem(token: str) -> str | None:
    for pattern in _AMBIGUOUS:
        match = pattern.match(token)
        if match:
            return match["stem"]
    return None


def _token_targets(token: str, genes, aliases: Mapping[str, str], family: Counter,
                   is_control: Callable[[str], bool]) -> tuple[str, ...]:
    if is_control(token):
        return ()
    if token in genes:
        return (token,)
    if token.split(".")[0] in aliases:
        return (aliases[token.split(".")[0]],)
    for pattern in (_HCRISPR, _GUIDE_WORD):
        match = pattern.match(token)
        if match:
            return (aliases.get(match["stem"], match["stem"]),)
    parts = token.split("_")
    if len(parts) > 1 and all(p in genes or is_control(p) for p in parts):
        return tuple(p for p in parts if not is_control(p))
    stem = _ambiguous_stem(token)
    if stem is not None and (stem in genes or family[stem] >= 2):
        return (stem,)
    return (token,)


def label_targets(labels: Iterable[str], genes, *, is_control: Callable[[str], bool],
                  guide_genes: Mapping[str, str] | None = None,
                  aliases: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Map each distinct label to the sorted tuple of its target genes (``()`` for a control).

    Parameters
    ----------
    labels
        Perturbation labels or guide calls (``"KEAP1_sg1"``, ``"A+ctrl"``, ``"g1|g7"``).
    genes
        The measured gene names (a set or ``pandas.Index``), used to resolve ambiguous names.
    is_control
        Tells whether one token is a control (non-targeting, safe-targeting, ...).
    guide_genes
        Guide name → gene table, applied to each token first (see ``read_guide_genes``).
    aliases
        Extra names of measured genes (Ensembl ID → symbol).

    Returns
    -------
    dict
        ``{label: ("A", "B")}``; the tuple holds distinct targets in sorted order.
    """
    table, aliases = dict(guide_genes or {}), dict(aliases or {})
    distinct = list(dict.fromkeys(str(lab) for lab in labels))
    tokens = {lab: [table.get(t, t) for t in split_label(lab)] for lab in distinct}
    unique_tokens = {t for toks in tokens.values() for t in toks}
    family = Counter(s for t in unique_tokens if t not in genes and (s := _ambiguous_stem(t)) is not None)
    per_token = {t: _token_targets(t, genes, aliases, family, is_control) for t in unique_tokens}
    return {lab: tuple(sorted({g for t in toks for g in per_token[t]})) for lab, toks in tokens.items()}


# --------------------------------------------------------------------------- guide → gene table
def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def read_guide_genes(source) -> dict[str, str]:
    """Read a guide → gene table.

    Parameters
    ----------
    source
        A mapping, or a CSV/TSV path: a two-column ``guide,gene`` file (header optional), or a
        Cell Ranger ``feature_reference.csv`` (columns ``id``, ``name``, ``target_gene_name``;
        both ``id`` and ``name`` are mapped).

    Returns
    -------
    dict
        Guide name → gene (control guides map to their control word, e.g. ``Non-Targeting``).

    Raises
    ------
    ScreenError
        If the file is missing or has fewer than two columns.
    """
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    path = Path(source).expanduser()
    if not path.is_file():
        msg = f"Guide → gene table '{path}' does not exist; pass a CSV with columns guide,gene."
        raise ScreenError(msg)
    frame = read_table(path)
    if frame.shape[1] < 2:
        msg = (f"Guide → gene table '{path}' has {frame.shape[1]} column(s) ({list(frame.columns)}); "
               "it needs two: guide,gene (or a Cell Ranger feature_reference.csv).")
        raise ScreenError(msg)
    gene_col = _pick(list(frame.columns), _GENE_COLUMNS)
    guide_cols = [c for c in ("id", "name") if c in frame.columns] if gene_col == "target_gene_name" else []
    if gene_col is None or not guide_cols:
        guide_col = _pick(list(frame.columns), _GUIDE_COLUMNS)
        if gene_col is None or guide_col is None or guide_col == gene_col:
            frame = read_table(path, header=None)
            guide_col, gene_col = frame.columns[:2]
        guide_cols = [guide_col]
    table: dict[str, str] = {}
    for column in guide_cols:
        rows = frame[[column, gene_col]].dropna()
        table.update(zip(rows[column].str.strip(), rows[gene_col].str.strip(), strict=True))
    return table
