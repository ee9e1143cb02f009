"""Read a real CRISPR screen into the standard LazyNet AnnData.

``read_screen`` is the only door from a user's file (or AnnData) into the package. It finds the
perturbation column and control label (``detect_columns``), checks the counts, normalises with
scanpy (``normalize_total`` 1e4 + ``log1p``), parses labels into sorted target sets, resolves the
CRISPRi/CRISPRa modality, checks that each target moved the expected way, chooses the gene
universe and records everything in ``.uns["lazynet"]``. The input is never modified.

Decisions (method.md §2) recorded here:

- Sources: an ``.h5ad`` file, an AnnData, or a Cell Ranger output (``filtered_feature_bc_matrix.h5``
  or matrix directory, read by ``lazynet_core.readers`` with scanpy).
- Labels come from an ``.obs`` column, or from guide calls: a ``protospacer_calls_per_cell.csv`` /
  ``cell,guide`` CSV (``guide_calls=``), or a guide UMI matrix in ``obsm['guide_counts']`` with names
  in ``uns['guide_names']`` (a guide is present at ``>= min_guide_umis`` UMIs, default 5), used
  automatically when ``.obs`` has no perturbation column (a Cell Ranger output).
- Labels and guide names become sorted target sets by ``lazynet_core.guides.label_targets``
  (``KEAP1_sg1``, ``KEAP1-2``, ``KEAP1_+_123.23-P1P2``, ``A+ctrl``, scPerturb ``A_B``, a guide → gene
  table). Cells with no label or guide are dropped. Cells targeting several genes become that
  combination (``moi="combine"``, the default for labels) or are dropped (``moi="drop"``, the
  default for guide calls, where two genes in one cell of a low-MOI screen are mostly doublets).
- Control labels match case-insensitively, exactly or as a prefix followed by a separator
  (``non-targeting_00001``, ``NTC-3``) or a guide number (``NTg1``; not for ``wt``, since
  ``WT1`` is a gene).
- Ensembl IDs in ``var_names`` are replaced by the symbols in ``var['gene_name' | 'gene_symbols' |
  'feature_name' | ...]``; a symbol shared by several IDs is made unique (``-1``) and reported.
- A file is told by its content (``readers.check_source``): empty, gzip, ZIP, text, non-AnnData
  HDF5, truncated files and folders without a matrix each get their own answer.
- Input is treated as log-normalised when it holds non-integers whose maximum is below
  ``LOG_MAX``. When ``.X`` is log-normalised, scaled (negative) or otherwise not counts, the first
  integer matrix among the ``COUNT_LAYERS``, ``.raw.X`` (which may hold more genes) and the other
  layers is used, with a warning; log data without counts elsewhere is used as is. Values of
  ``ABSURD_VALUE`` (1e9) or more are refused: no cell has a billion counts of one gene.
- Several candidate columns that label the cells differently: the one with the most targets whose
  own expression moved the expected way wins (ties: ``PERT_KEY_CANDIDATES`` order), with a warning.
  Control labels differing only in case or spaces are merged, duplicate cell or gene names made
  unique, cells with no counts dropped: each reported, naming what (``text.display_name``).
- Modality: given, or an ``.obs`` column (``MODALITY_KEYS``), else inferred from the targets'
  own direction (most targets down -> CRISPRi, up -> CRISPRa), reported per target.
- The target check compares mean counts-per-10k of the target in its cells against control
  cells; it passes when ``|log2fc| >= TARGET_CHECK_MIN_LOG2FC`` in the expected direction.
- Knockouts (CRISPRko): the model encodes a perturbation by its target's level, so a knockout is
  visible only when its mRNA falls (nonsense-mediated decay). Cells of targets whose mRNA did not
  fall are dropped unless ``keep_invisible_knockouts=True``; a knockout screen where no target's
  mRNA fell is refused.
- Escapers (``escapers="drop"``, off by default): a cell of a single CRISPRi target is an escaper
  when its target level is not below the control cells' ``escaper_quantile`` quantile (mirrored
  for CRISPRa); a target whose control quantile is zero cannot be classified and is kept.
- Targets that are not measured genes are dropped with their cells, each named with its count.
- ``genes=[...]`` keeps those genes plus every target gene (the pairs need the targets); unknown
  ``extra_genes`` are reported, not fatal (curated module lists are larger than any screen).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from lazynet_core import readers
from lazynet_core.errors import ScreenError
from lazynet_core.guides import is_ensembl, label_targets, read_guide_genes, split_label
from lazynet_core.text import display_name

__all__ = ["Detection", "detect_columns", "read_screen", "screen_choices", "target_check_frame",
           "validate_screen"]

PERT_KEY_CANDIDATES = (
    "perturbation", "target_gene", "gene_target", "guide_target", "gene", "target", "condition",
    "perturbation_name", "Perturbation", "feature_call", "guide_identity", "guide_id", "sgID_AB",
    "gRNA", "sgRNA",
)  # fmt: skip
CONTROL_LABELS = (
    "control", "ctrl", "non-targeting", "nontargeting", "nt", "ntc", "negctrl", "neg_ctrl",
    "safe-targeting", "scramble", "scrambled", "unperturbed", "wt", "mock",
)  # fmt: skip
MODALITY_KEYS = ("modality", "perturbation_type", "crispr_type", "library")
MODALITIES = {
    "CRISPRi": ("i", "interference", "inhibition", "knockdown"), "CRISPRa": ("a", "activation"),
    "CRISPRko": ("ko", "knockout", "n", "nuclease", "cas9"),
}  # fmt: skip
SYMBOL_COLUMNS = ("gene_name", "gene_symbols", "feature_name", "gene_symbol", "symbol", "gene_names")
GUIDE_COLUMN = "lazynet_guides"
MOI_CHOICES = ("combine", "drop")
STANDARD_COLUMNS = ("lazynet_perturbation", "lazynet_modality", "lazynet_is_control")
LOG_MAX = 50.0
ABSURD_VALUE = 1e9  # no cell has a billion counts of one gene
COUNT_LAYERS = ("counts", "raw_counts", "raw", "umi", "umis", "umi_counts")  # searched first, in order
RAW_X = "raw.X"  # layer= value for the counts in .raw.X
_RAW_TOKENS = (RAW_X, ".raw.X", ".raw")
_NOT_TOTAL_COUNTS = ("spliced", "unspliced", "ambiguous")  # RNA-velocity layers: counts, but partial
MIN_CELLS = 4  # 2 control cells and cells of 2 perturbations: the least make_pairs can use
MIN_GENES = 2
TARGET_CHECK_MIN_LOG2FC = 0.25
BACKED_ABOVE_BYTES = 1 << 30
_CHUNK_ROWS = 10_000
_SEP = r"(?:[_\-.:\s].*)"
# how to fix a wrong guess, in the library, the CLI and the app alike
_PICK_COLUMN = ("choose the perturbation column (pert_key= / --pert-key / 'Perturbation column' on the Data "
                "page)")
_PICK_CONTROL = "set the control label (control= / --control / 'Control label' on the Data page)"
_PICK_COUNTS = "choose the counts (layer= / --layer / 'Counts' on the Data page)"
_NOT_MEASURED_HELP = (
    "LazyNet encodes a perturbation by its target's expression, so a target must be a measured gene. "
    "To keep them, read the full gene set (the unfiltered .h5ad or the Cell Ranger output, not a "
    "highly-variable-gene or panel subset); enhancers and other non-genes cannot be kept."
)


@dataclass(frozen=True)
class Detection:
    """How the perturbation column and control label were found.

    Attributes
    ----------
    pert_key
        The ``.obs`` column holding perturbation labels.
    control
        The control label exactly as it appears, or the prefix rule used (``"non-targeting*"``)
        when several labels match.
    control_labels
        Every distinct label of ``pert_key`` treated as control.
    candidates
        The columns considered, in priority order.
    method
        How it was found, in words.
    """

    pert_key: str
    control: str
    control_labels: tuple[str, ...]
    candidates: tuple[str, ...]
    method: str


# --------------------------------------------------------------------------- detection
def _control_regex(control: str | None) -> re.Pattern[str]:
    if control is not None:
        return re.compile(rf"^{re.escape(control.strip().lower())}(?:{_SEP}|g?\d+)?$")
    words = "|".join(re.escape(w) for w in sorted(CONTROL_LABELS, key=len, reverse=True) if w != "wt")
    return re.compile(rf"^(?:(?:{words})(?:{_SEP}|g?\d+)?|wt{_SEP}?)$")


def _is_control_token(token: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    return any(p.match(token.strip().lower()) for p in patterns)


def _is_control_label(label: str, patterns: Sequence[re.Pattern[str]],
                      table: dict[str, str] | None = None) -> bool:
    tokens = split_label(label)
    return bool(tokens) and all(_is_control_token((table or {}).get(t, t), patterns) for t in tokens)


def _distinct_labels(column: pd.Series) -> list[str]:
    return [str(v) for v in pd.unique(column.dropna().astype(str)) if str(v).strip()]


def _candidate_columns(obs: pd.DataFrame) -> tuple[str, ...]:
    found: dict[str, None] = {}  # ordered set: exact name first, then case-insensitive matches
    for name in PERT_KEY_CANDIDATES:
        found.update(dict.fromkeys(c for c in obs.columns if c == name))
        found.update(dict.fromkeys(c for c in obs.columns if str(c).lower() == name.lower()))
    return tuple(found)


def _control_summary(labels: list[str], control: str | None) -> str:
    if control is not None or len(labels) == 1:
        return control if control is not None else labels[0]
    if len({lab.strip().lower() for lab in labels}) == 1:  # 'NTC', 'ntc ', 'Ntc': one label
        return labels[0].strip()
    return f"{os.path.commonprefix(labels).rstrip('_-.: 0123456789') or labels[0]}*"


def detect_columns(adata: anndata.AnnData, *, pert_key: str | None = None,
                   control: str | None = None, guide_genes=None) -> Detection:
    """Find the perturbation column and control label of a screen.

    Parameters
    ----------
    adata
        The screen; only ``.obs`` is read.
    pert_key
        Use this ``.obs`` column instead of searching ``PERT_KEY_CANDIDATES``.
    control
        Use this control label (case-insensitive, also as a prefix such as ``NTC-3``) instead of
        the known vocabulary ``CONTROL_LABELS``.
    guide_genes
        Guide → gene table (mapping or CSV path, see ``guides.read_guide_genes``) applied to the
        labels first, so guides mapped to ``Non-Targeting`` count as controls.

    Returns
    -------
    Detection
        The chosen column, control label(s), candidates considered and how they were found.

    Raises
    ------
    ScreenError
        If ``pert_key`` is not a column, or no candidate column holds a control label.
    """
    table = read_guide_genes(guide_genes) if guide_genes is not None else {}
    detections = _detections(adata.obs, pert_key=pert_key, control=control, table=table)
    genes = pd.Index(adata.var_names.astype(str))  # a label that is a measured gene is no control word
    return _genes_are_not_controls(detections, genes, control=control, notes={})[0]


def _detect(obs: pd.DataFrame, *, pert_key: str | None, control: str | None,
            table: dict[str, str]) -> Detection:
    return _detections(obs, pert_key=pert_key, control=control, table=table)[0]


def _detections(obs: pd.DataFrame, *, pert_key: str | None, control: str | None,
                table: dict[str, str]) -> list[Detection]:
    """Every candidate column holding a control label; those that also hold other labels first."""
    if pert_key is not None and pert_key not in obs.columns:
        msg = (f"Obs {pert_key!r} does not exist in .obs; columns are {list(obs.columns)}. "
               "Pass pert_key= one of them.")
        raise ScreenError(msg)
    candidates = (pert_key,) if pert_key is not None else _candidate_columns(obs)
    if not candidates:
        msg = (f"No perturbation column found: .obs columns are {_quoted(obs.columns, 12)}, none of the "
               f"known names {list(PERT_KEY_CANDIDATES)}. {_PICK_COLUMN[0].upper()}{_PICK_COLUMN[1:]} that "
               "holds the guide targets, or (library and command line) give guide calls: guide_calls= / "
               "--guide-calls a cell,guide CSV.")
        raise ScreenError(msg)
    patterns = [_control_regex(control)]
    found, mixed = [], []
    for column in candidates:
        distinct = _distinct_labels(obs[column])
        labels = [lab for lab in distinct if _is_control_label(lab, patterns, table)]
        if labels:
            how = "pert_key given" if pert_key is not None else "first candidate column with controls"
            how += "; control given" if control is not None else "; control label from known vocabulary"
            found.append(Detection(column, _control_summary(labels, control), tuple(labels), candidates, how))
            mixed.append(len(labels) < len(distinct))
    if not found:
        raise ScreenError(_no_control_message(obs, candidates, control))
    return [d for d, m in zip(found, mixed, strict=True) if m] + [d for d, m in zip(found, mixed, strict=True)
                                                                  if not m]


def _quoted(names, limit: int = 6) -> str:
    """Names from a data file, quoted and shortened for a message: 'A', 'B' and 3 more."""
    names = [str(n) for n in names]
    shown = ", ".join(f"'{display_name(n)}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "none"


def _top_values(column: pd.Series, limit: int = 6) -> str:
    counts = column.dropna().astype(str).value_counts()
    shown = ", ".join(f"'{display_name(v)}' ({n} cells)" for v, n in counts.head(limit).items())
    if not len(counts):
        return "empty"
    return shown + (f" and {len(counts) - limit} more" if len(counts) > limit else "")


def _no_control_message(obs: pd.DataFrame, candidates: tuple[str, ...], control: str | None) -> str:
    wanted = "a known control label" if control is None else f"the control label '{display_name(control)}'"
    seen = "; ".join(f"'{display_name(c)}': {_top_values(obs[c])}" for c in candidates[:3])
    return (f"No cells with {wanted} in column(s) {_quoted(candidates)}. Most common values: {seen}. "
            f"Known control labels are {list(CONTROL_LABELS)}. If your control cells carry another label, "
            f"{_PICK_CONTROL}; if the perturbations are in another column, {_PICK_COLUMN}.")


# --------------------------------------------------------------------------- reading
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    if path.is_file():
        return _sha256(path)
    digest = hashlib.sha256()
    for part in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f"{part.name}:{_sha256(part)}".encode())
    return digest.hexdigest()


def _resolve_path(source: str | Path) -> tuple[Path, str]:
    """The file or matrix directory to read and its kind (``"h5ad"`` or ``"10x"``), told by content."""
    given = Path(source).expanduser()
    try:
        path = given.resolve(strict=True)
    except (FileNotFoundError, OSError) as err:
        msg = f"File '{given}' does not exist ({type(err).__name__}); check the path."
        raise ScreenError(msg) from err
    return readers.check_source(path)


def _to_csr(matrix) -> sp.csr_matrix:
    """Copy any matrix (dense, sparse, or a backed dataset read in row chunks) to CSR float32.

    A compressed sparse matrix's index arrays are checked first: a damaged file's (out-of-range or
    unordered pointers) would otherwise crash the process in compiled code instead of raising.
    """
    if sp.issparse(matrix):
        if hasattr(matrix, "check_format"):
            try:  # on a shallow copy: the check may prune or recast the caller's index arrays
                type(matrix)((matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape,
                             copy=False).check_format(full_check=True)
            except (ValueError, TypeError) as exc:
                msg = (f"The screen's sparse matrix is damaged ({exc}): its index arrays do not describe a "
                       f"valid {matrix.shape[0]} × {matrix.shape[1]} matrix, as in a truncated or corrupted "
                       "copy. Copy the file again, or save it again from its source.")
                raise ScreenError(msg) from exc
        out = sp.csr_matrix(matrix).astype(np.float32, copy=True)
    elif isinstance(matrix, np.ndarray):
        out = sp.csr_matrix(np.asarray(matrix, dtype=np.float32))
    else:
        blocks = [sp.csr_matrix(matrix[i:i + _CHUNK_ROWS], dtype=np.float32)
                  for i in range(0, matrix.shape[0], _CHUNK_ROWS)]
        out = sp.vstack(blocks, format="csr").astype(np.float32, copy=False)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def _read_h5ad(path: Path, *, backed: str | bool, layer: str | None) -> anndata.AnnData:
    use_backed = path.stat().st_size > BACKED_ABOVE_BYTES if backed == "auto" else bool(backed)
    try:
        if not use_backed:
            return anndata.read_h5ad(path)
        handle = anndata.read_h5ad(path, backed="r")
        try:
            return _read_backed(handle, layer)
        finally:
            handle.file.close()
    except MemoryError:
        raise
    except Exception as err:
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:160] if str(err).strip() else ''}"
        msg = (f"Could not read '{path}' as an .h5ad file ({reason}). Is it a complete AnnData file? It may "
               "be damaged or incomplete (was the copy/download interrupted?) or written by another tool: "
               "copy it again, or write it again with anndata's write_h5ad.")
        raise ScreenError(msg) from err


def _read_backed(handle: anndata.AnnData, layer: str | None) -> anndata.AnnData:
    """Copy a backed AnnData into memory: .X, plus the count layers (and .raw) only where they may be used."""
    X = None if handle.X is None else _to_csr(handle.X)
    search = X is None or _kind_of(X) != "counts"  # read_screen will look for counts elsewhere
    layers = {k: _to_csr(v) for k, v in handle.layers.items() if search or k in (layer, "counts")}
    obsm = {k: v for k, v in handle.obsm.items() if k == "guide_counts"}
    uns = {k: v for k, v in handle.uns.items() if k in ("guide_names", "guide_genes")}
    out = anndata.AnnData(X=X, obs=handle.obs.copy(), var=handle.var.copy(), layers=layers, obsm=obsm,
                          uns=uns)
    if handle.raw is not None and (search or layer in _RAW_TOKENS):
        out.raw = anndata.AnnData(X=_to_csr(handle.raw.X), obs=out.obs[[]], var=handle.raw.var.copy())
    return out


def _open_source(source, *, backed: str | bool, layer: str | None):
    if isinstance(source, anndata.AnnData):
        return source, "in-memory AnnData", None
    if not isinstance(source, (str, Path)):
        msg = (f"source must be a path to an .h5ad file or Cell Ranger output, or an AnnData, got "
               f"{type(source).__name__}.")
        raise ScreenError(msg)
    path, kind = _resolve_path(source)
    if kind == "h5ad":
        return _read_h5ad(path, backed=backed, layer=layer), str(path), _sha256(path)
    return readers.read_10x(path), str(path), _sha256_of(path)


def _check_size(adata: anndata.AnnData, name: str) -> None:
    """Refuse a screen too small to train on, saying how much is needed."""
    what = "The screen" if name == "in-memory AnnData" else f"'{name}'"
    if adata.n_obs < MIN_CELLS:
        msg = (f"{what} holds only {adata.n_obs} cell(s): too small to train. LazyNet needs at least 2 "
               f"control cells and cells of at least 2 perturbations ({MIN_CELLS} cells at the very least; "
               "in practice 5 or more cells per perturbation and dozens of control cells). Load the whole "
               "screen, not a subset or a summary.")
        raise ScreenError(msg)
    if adata.n_vars < MIN_GENES:
        msg = (f"{what} measures only {adata.n_vars} gene(s): too small to train. LazyNet learns how genes "
               f"act on each other, so it needs at least {MIN_GENES} genes (in practice the measured "
               "transcriptome, or a panel of hundreds). Load the full gene set, not a subset.")
        raise ScreenError(msg)


# --------------------------------------------------------------------------- gene names and guides
def _gene_names(var: pd.DataFrame, warnings: list[str]) -> tuple[pd.Index, dict[str, str]]:
    """Gene symbols for the columns, and Ensembl ID -> symbol aliases when var_names are IDs."""
    names = pd.Index(var.index.astype(str))
    column = next((c for c in SYMBOL_COLUMNS if c in var.columns), None)
    if column is None or not len(names) or np.mean([is_ensembl(n) for n in names]) < 0.5:
        return names, {}
    given = var[column].astype(object).to_numpy()
    valid = np.array([isinstance(v, str) and v.strip() not in ("", "nan") for v in given])
    symbols = pd.Index(np.where(valid, given, names).astype(str))
    note = (f"var_names are Ensembl IDs; using the gene symbols in var[{column!r}]"
            f"{f' ({int((~valid).sum())} without a symbol keep their ID)' if (~valid).any() else ''}.")
    shared = symbols[symbols.duplicated(keep=False)]
    if len(shared):
        first = shared[0]
        ids = names[symbols == first].tolist()
        note += (f" {shared.nunique()} symbol(s) name several IDs (e.g. {first}: {ids}); the first ID keeps "
                 "the symbol and the others get '-1', '-2', ...")
        symbols = pd.Index(anndata.utils.make_index_unique(symbols))
    warnings.append(note)
    return symbols, dict(zip((n.split(".")[0] for n in names), symbols, strict=True))


def _unique_names(names: pd.Index, what: str, warnings: list[str]) -> pd.Index:
    """Names made unique ('-1', '-2', ... on the repeats), with a warning naming the repeated ones."""
    names = pd.Index(names.astype(str))
    if names.is_unique:
        return names
    repeated = names[names.duplicated(keep=False)].value_counts()
    shown = ", ".join(f"'{display_name(n)}' x{k}" for n, k in repeated.head(5).items())
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    warnings.append(f"{len(repeated)} {what} name(s) appear more than once ({shown}{more}); they were made "
                    "unique by adding '-1', '-2', ... to the repeats.")
    return pd.Index(anndata.utils.make_index_unique(names))


def _guide_table(raw: anndata.AnnData, guide_genes) -> dict[str, str]:
    table = {str(k): str(v) for k, v in dict(raw.uns.get("guide_genes", {}) or {}).items()}
    return table | (read_guide_genes(guide_genes) if guide_genes is not None else {})


def _calls_from_obsm(raw: anndata.AnnData, key: str, min_umis: int) -> tuple[np.ndarray, dict]:
    matrix = raw.obsm[key]
    names = matrix.columns if isinstance(matrix, pd.DataFrame) else raw.uns.get("guide_names")
    if names is None:
        msg = (f"obsm[{key!r}] holds guide counts but uns['guide_names'] is missing; store the guide "
               f"names (one per column, {matrix.shape[1]}) in uns['guide_names'].")
        raise ScreenError(msg)
    calls = readers.calls_from_counts(matrix, list(names), min_umis=min_umis)
    return calls, {"source": f"obsm[{key!r}]", "min_umis": int(min_umis)}


def _calls_from_series(raw: anndata.AnnData, given, name: str) -> tuple[np.ndarray, dict]:
    series = readers.read_guide_calls(given) if not isinstance(given, pd.Series) else given.astype(str)
    cells = pd.Index(raw.obs_names.astype(str))
    matched = series.index.astype(str).isin(cells)
    if not matched.any():
        msg = (f"None of the {len(series)} cell barcodes in the guide calls ({name}; e.g. "
               f"{series.index[:3].tolist()}) is a cell of the screen (e.g. {cells[:3].tolist()}). "
               "Pass the guide calls of this sample (barcodes must match exactly, '-1' suffix included).")
        raise ScreenError(msg)
    calls = series.set_axis(series.index.astype(str)).reindex(cells).to_numpy(dtype=object)
    calls[pd.isna(calls)] = None
    return calls, {"source": name, "n_calls_not_in_screen": int((~matched).sum())}


def _guide_calls(raw: anndata.AnnData, guide_calls, pert_key: str | None,
                 min_umis: int) -> tuple[np.ndarray | None, dict | None]:
    """Per-cell guide calls (guides joined by '|'), or None when labels come from .obs."""
    if guide_calls is None:
        if pert_key is not None or _candidate_columns(raw.obs) or "guide_counts" not in raw.obsm:
            return None, None
        guide_calls = "guide_counts"
    if pert_key is not None:
        msg = (f"pert_key={pert_key!r} and guide_calls= are alternatives: labels come either from an .obs "
               "column or from guide calls. Pass only one.")
        raise ScreenError(msg)
    if isinstance(guide_calls, str) and guide_calls in raw.obsm:
        calls, info = _calls_from_obsm(raw, guide_calls, min_umis)
    elif isinstance(guide_calls, (str, Path, pd.Series)):
        name = "pandas Series" if isinstance(guide_calls, pd.Series) else str(Path(guide_calls).expanduser())
        calls, info = _calls_from_series(raw, guide_calls, name)
    else:
        msg = (f"guide_calls must be a CSV path, a pandas Series (cell -> guide) or an .obsm key "
               f"({list(raw.obsm)}), got {type(guide_calls).__name__}.")
        raise ScreenError(msg)
    info["n_cells_with_guides"] = int(sum(c is not None for c in calls))
    return calls, info


# --------------------------------------------------------------------------- counts
def _bad_cells(X: sp.csr_matrix, mask: np.ndarray, cells: pd.Index) -> str:
    rows = np.unique(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[mask])
    return f"{int(mask.sum())} value(s) in {len(rows)} cell(s), e.g. {_quoted(cells[rows[:5]], 5)}"


def _kind_of(X: sp.csr_matrix) -> str:
    """``"counts"`` or ``"log"`` (log-normalised), else what is wrong: ``"nonfinite"``, ``"absurd"``,
    ``"negative"`` (scaled data) or ``"fractional"`` (neither counts nor log)."""
    data = X.data
    if not np.isfinite(data).all():
        return "nonfinite"
    if data.size and data.max() >= ABSURD_VALUE:
        return "absurd"
    if (data < 0).any():
        return "negative"
    if (data == np.round(data)).all():
        return "counts"
    return "log" if data.max() < LOG_MAX else "fractional"


def _value_problem(X: sp.csr_matrix, kind: str, where: str, cells: pd.Index) -> str:
    data = X.data
    if kind == "nonfinite":
        bad = _bad_cells(X, ~np.isfinite(data), cells)
        return f"{where} holds NaN or infinite values: {bad}. Remove or fix those cells."
    if kind == "absurd":
        return (f"{where} holds absurd values of {ABSURD_VALUE:.0e} or more (largest {data.max():.3g}): "
                f"{_bad_cells(X, data >= ABSURD_VALUE, cells)}. No cell has a billion counts of one gene: "
                "the file is damaged or this matrix is not counts (e.g. IDs or coordinates stored as "
                f"expression). Fix or export the matrix again, or {_PICK_COUNTS}.")
    if kind == "negative":
        return (f"{where} holds negative values: {_bad_cells(X, data < 0, cells)}. It looks like scaled data "
                "(e.g. after sc.pp.scale), not counts; raw counts (or log-normalised counts) are required.")
    fractional = data != np.round(data)
    return (f"{where} holds non-integer values ({_bad_cells(X, fractional, cells)}; max {data.max():.3g}) "
            "that are neither counts nor log-normalised.")


def _where(name: str | None) -> str:
    return ".X" if name is None else ".raw.X" if name == RAW_X else f"layer '{display_name(name)}'"


def _matrix_of(adata: anndata.AnnData, name: str) -> tuple[sp.csr_matrix, pd.DataFrame]:
    if name == RAW_X:
        return _to_csr(adata.raw.X), adata.raw.var
    return _to_csr(adata.layers[name]), adata.var


def _counts_elsewhere(adata: anndata.AnnData):
    """The first raw-count matrix besides .X: a count-named layer, then .raw.X, then any integer layer."""
    names = [n for n in COUNT_LAYERS if n in adata.layers] + ([RAW_X] if adata.raw is not None else [])
    names += [n for n in adata.layers if n not in names and str(n).lower() not in _NOT_TOTAL_COUNTS]
    for name in names:
        X, var = _matrix_of(adata, name)
        if X.nnz and _kind_of(X) == "counts":
            return name, X, var
    return None


def _given_counts(adata: anndata.AnnData, layer: str) -> tuple[sp.csr_matrix, pd.DataFrame, str]:
    """The matrix asked for with ``layer=`` (a layer name, or ``'raw.X'`` for .raw.X)."""
    raw = " and 'raw.X' (the counts in .raw.X)" if adata.raw is not None else ""
    if layer in _RAW_TOKENS and layer not in adata.layers:
        if adata.raw is None:
            msg = (f"layer={layer!r} asks for .raw.X, but this screen has no .raw; layers are "
                   f"{_quoted(adata.layers)}. Choose one of them, or leave the counts on automatic.")
            raise ScreenError(msg)
        return *_matrix_of(adata, RAW_X), RAW_X
    if layer not in adata.layers:
        msg = (f"Layer {layer!r} does not exist; layers are {list(adata.layers)}{raw}. "
               "Pass layer= one of them, or None for .X.")
        raise ScreenError(msg)
    return *_matrix_of(adata, layer), layer


def _choose_counts(adata: anndata.AnnData, layer: str | None, warnings: list[str]):
    """Raw counts (or log data): ``(matrix, where they came from, is_log, var)``.

    ``.X`` is used when it holds counts; when it is log-normalised, scaled or otherwise not counts,
    the first count matrix in a layer or ``.raw.X`` is used instead, with a warning.
    """
    cells = pd.Index(adata.obs_names.astype(str))
    if layer is not None:
        X, var, name = _given_counts(adata, layer)
        kind = _kind_of(X)
        if kind not in ("counts", "log"):
            raise ScreenError(f"{_value_problem(X, kind, _where(name), cells)} Choose other counts.")
        if kind == "log":
            warnings.append(f"{_where(name)} looks log-normalised (non-integer, max {X.data.max():.3g}); "
                            "used as is without normalize_total/log1p.")
        return X, name, kind == "log", var
    X = None if adata.X is None else _to_csr(adata.X)
    kind = "missing" if X is None else _kind_of(X)
    if kind == "counts":
        return X, None, False, adata.var
    if kind == "absurd":
        raise ScreenError(_value_problem(X, kind, ".X", cells))
    found = _counts_elsewhere(adata)
    if found is not None:
        name, counts, var = found
        state = {"log": "looks log-normalised", "missing": "is empty", "negative": "holds scaled data "
                 "(negative values)"}.get(kind, "is not raw counts (NaN or non-integer values)")
        genes = f" ({var.shape[0]} genes; .X has {adata.n_vars})" if var.shape[0] != adata.n_vars else ""
        warnings.append(f".X {state}; used {_where(name)} as the raw counts{genes}. To use other counts, "
                        f"{_PICK_COUNTS}.")
        return counts, name, False, var
    if kind == "log":
        warnings.append(f".X looks log-normalised (non-integer, max {X.data.max():.3g}); used as is without "
                        "normalize_total/log1p (no raw counts were found in .raw.X or a layer).")
        return X, None, True, adata.var
    layers = f"the layers ({_quoted(adata.layers)})" if len(adata.layers) else "any layer"
    if kind == "missing":
        msg = (f"The screen has no main matrix (.X is empty) and no raw counts in .raw.X or {layers}. Write "
               "the counts to .X (or a 'counts' layer) and save the file again.")
        raise ScreenError(msg)
    msg = (f"{_value_problem(X, kind, '.X', cells)} No raw counts were found in .raw.X or {layers} either: "
           "save the raw counts in the file (.X or a 'counts' layer), or fix those values.")
    raise ScreenError(msg)


# --------------------------------------------------------------------------- labels and modality
def _parse_labels(column: pd.Series, detection: Detection, genes: pd.Index, *, control: str | None,
                  table: dict[str, str], aliases: dict[str, str], not_controls=()) -> pd.Series:
    """Each cell's sorted target tuple (``()`` for control), or None for a cell without a label.

    ``not_controls``: labels that look like control words but are read as genes
    (:func:`_genes_are_not_controls`), also as a part of a combination label.
    """
    patterns = [_control_regex(control)]
    raw = column.astype(object)
    missing = raw.isna() | (raw.astype(str).str.strip().isin(["", "nan", "None"]))
    genes_not_controls = {str(t).strip() for t in not_controls}

    def is_control(token: str) -> bool:
        return token.strip() not in genes_not_controls and _is_control_token(token, patterns)

    mapping = label_targets(_distinct_labels(column), genes, guide_genes=table, aliases=aliases,
                            is_control=is_control)
    mapping.update(dict.fromkeys(detection.control_labels, ()))
    out = raw.astype(str).map(mapping).astype(object)
    out[missing.to_numpy()] = None
    return out


def _joined(targets: pd.Series) -> pd.Series:
    return targets.map(lambda t: None if t is None else ("+".join(t) if t else "control")).astype(object)


def _lognorm(counts: sp.csr_matrix) -> sp.csr_matrix:
    """log1p(counts per 10k), as read_screen's normalisation, for the column choice."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    out = sp.csr_matrix(sp.diags(1e4 / np.maximum(totals, 1)) @ counts)
    out.data = np.log1p(out.data)
    return out


def _movers(labels: pd.Series, X: sp.csr_matrix, genes: pd.Index, modality: str | None) -> tuple[int, int]:
    """(targets whose own expression moved the expected way, measured single targets) for one labelling."""
    is_ctrl = (labels == "control").to_numpy(dtype=bool)
    singles = [t for t in pd.unique(labels.dropna()) if t != "control" and "+" not in t and t in genes]
    if not singles or not is_ctrl.any():
        return 0, len(singles)
    codes = pd.Categorical(labels, categories=singles).codes
    fcs = np.asarray(_log2fc(X, genes, singles, codes, is_ctrl))
    down, up = int((fcs <= -TARGET_CHECK_MIN_LOG2FC).sum()), int((fcs >= TARGET_CHECK_MIN_LOG2FC).sum())
    whole = _parse_modality(modality) if modality is not None else None
    moved = up if whole == "CRISPRa" else down if whole in ("CRISPRi", "CRISPRko") else max(down, up)
    return moved, len(singles)


def _choose_column(detections: list[Detection], parse, counts: sp.csr_matrix, genes: pd.Index, *,
                   is_log: bool, modality: str | None, warnings: list[str]) -> tuple[Detection, pd.Series]:
    """Among candidate columns that label the cells differently, the one whose targets move as expected.

    Columns giving the same labels after parsing (``KEAP1_sg1`` and ``KEAP1``) are no ambiguity; among
    disagreeing ones the column with the most targets whose own expression moved in the expected
    direction wins (ties: the first, in ``PERT_KEY_CANDIDATES`` order), and a warning says so.
    """
    parsed = []
    for detection in detections:
        try:
            parsed.append((detection, parse(detection)))
        except ScreenError:
            continue
    if not parsed:
        return detections[0], parse(detections[0])  # raises the first column's error
    labels = [_joined(targets) for _, targets in parsed]
    if all(lab.equals(labels[0]) for lab in labels[1:]):
        return parsed[0]
    X = counts if is_log else _lognorm(counts)
    scores = [_movers(lab, X, genes, modality) for lab in labels]
    best = max(range(len(parsed)), key=lambda i: scores[i][0])  # the first of equal scores
    shown = ", ".join(f"'{display_name(d.pert_key)}' ({m} of {n} target(s) move as expected)"
                      for (d, _), (m, n) in zip(parsed, scores, strict=True))
    tie = sum(m == scores[best][0] for m, _ in scores) > 1
    why = ("it comes first and no other column's targets move more" if tie else
           "its targets' own expression moves as expected most often")
    chosen = display_name(parsed[best][0].pert_key)
    warnings.append(f"Several columns could hold the perturbations and they label the cells differently: "
                    f"{shown}. Used '{chosen}': {why}. If that is wrong, {_PICK_COLUMN}.")
    detection = parsed[best][0]
    method = f"{detection.method}; chosen among {len(parsed)} disagreeing columns"
    return Detection(detection.pert_key, detection.control, detection.control_labels, detection.candidates,
                     method), parsed[best][1]


def _genes_are_not_controls(detections: list[Detection], genes: pd.Index, *, control: str | None,
                            notes: dict[str, tuple[tuple[str, ...], str]]) -> list[Detection]:
    """Drop auto-detected control labels that are measured genes (``CTRL`` is a gene, not a control word)
    where the column keeps other controls. ``notes`` gets, per column, the labels dropped and the
    warning to give if that column is used. A given ``control`` is taken as given."""
    if control is not None:
        return detections
    gene_set = set(genes)
    out = []
    for d in detections:
        genes_named = tuple(lab for lab in d.control_labels if lab.strip() in gene_set)
        kept = tuple(lab for lab in d.control_labels if lab.strip() not in gene_set)
        if not genes_named:
            out.append(d)
            continue
        shown = _quoted(genes_named)
        if kept:
            notes[d.pert_key] = (genes_named, (
                f"{shown} in column '{display_name(d.pert_key)}' looks like a control label but is a "
                "measured gene, so its cells are read as that gene's perturbation. If they are controls, "
                f"{_PICK_CONTROL}."))
            summary = _control_summary(list(kept), None)
            out.append(Detection(d.pert_key, summary, kept, d.candidates, d.method))
        else:
            notes[d.pert_key] = ((), (
                f"{shown} in column '{display_name(d.pert_key)}' is read as the control label, though it is "
                "also a measured gene (no other control label was found). If these cells target that gene, "
                f"{_PICK_CONTROL}."))
            out.append(d)
    return out


def _warn_control_variants(column: pd.Series, detection: Detection, warnings: list[str]) -> None:
    """Control labels differing only in case or spaces ('NTC', 'ntc ', 'Ntc') are merged: say so."""
    groups: dict[str, list[str]] = {}
    for label in detection.control_labels:
        groups.setdefault(label.strip().lower(), []).append(label)
    merged = [variants for variants in groups.values() if len(variants) > 1]
    if not merged:
        return
    counts = column.astype(str).value_counts()
    shown = "; ".join(", ".join(f"'{display_name(v)}' ({counts.get(v, 0)} cells)" for v in variants)
                      for variants in merged[:3])
    warnings.append(f"Control labels written in different ways (case or spaces) were merged into control: "
                    f"{shown}.")


def _only_controls_message(column: pd.Series, detection: Detection) -> str:
    counts = column.astype(str).value_counts()
    shown = ", ".join(f"'{display_name(v)}' ({counts.get(v, 0)} cells)" for v in detection.control_labels[:5])
    return (f"Every labelled cell in column '{display_name(detection.pert_key)}' is a control ({shown}): "
            "there are no perturbed cells to learn from. LazyNet needs control cells and the cells of at "
            f"least 2 perturbations. If the perturbations are in another column, {_PICK_COLUMN}; if some of "
            f"these labels are not controls, {_PICK_CONTROL}.")


def _apply_moi(targets: pd.Series, moi: str) -> tuple[pd.Series, int]:
    """Labels ``"A+B"``/``"control"`` from target tuples; with ``moi="drop"`` multi-target cells get None."""
    if moi not in MOI_CHOICES:
        msg = f"moi={moi!r} is not supported; pass 'combine' (keep A+B) or 'drop' (drop such cells)."
        raise ScreenError(msg)
    multi = targets.map(lambda t: t is not None and len(t) > 1).to_numpy(dtype=bool)
    labels = _joined(targets)
    if moi == "drop":
        labels[multi] = None
    return labels, int(multi.sum()) if moi == "drop" else 0


def _parse_modality(value) -> str | None:
    text = re.sub(r"[^a-z]", "", str(value).lower())
    text = text[6:] if text.startswith("crispr") and len(text) > 6 else text
    return next((name for name, words in MODALITIES.items() if text in words or text == name.lower()), None)


def _modality_column(obs: pd.DataFrame, column: str, is_control: pd.Series, *, strict: bool,
                     warnings: list[str]) -> pd.Series | None:
    parsed = obs[column].map(_parse_modality).astype(object)
    bad = parsed.isna() & ~is_control
    if bad.any():
        values = pd.unique(obs.loc[bad, column].astype(str))[:5].tolist()
        if not strict:
            warnings.append(f"Column {column!r} looks like a modality column but holds {values}, not "
                            f"{list(MODALITIES)}; ignored.")
            return None
        msg = (f"Modality column {column!r} has values {values} that are not {list(MODALITIES)}. "
               "Pass modality='CRISPRi', 'CRISPRa' or 'CRISPRko' for the whole screen.")
        raise ScreenError(msg)
    fill = parsed[~is_control].mode()
    return parsed.fillna(fill.iloc[0] if len(fill) else "CRISPRi")


def _cell_modality(adata: anndata.AnnData, modality: str | None,
                   warnings: list[str]) -> tuple[pd.Series, str, dict]:
    obs, is_control = adata.obs, adata.obs["lazynet_is_control"]
    if modality is not None:
        whole = _parse_modality(modality)
        if whole is not None:
            return pd.Series(whole, index=obs.index, dtype=object), f"given: {whole}", {}
        if modality not in obs.columns:
            msg = (f"modality={modality!r} is neither CRISPRi/CRISPRa/CRISPRko (also 'i', 'a', 'ko', "
                   f"'interference', 'activation', 'knockout') nor an .obs column; the file's columns are "
                   f"{_quoted([c for c in obs.columns if c not in STANDARD_COLUMNS], 12)}.")
            raise ScreenError(msg)
        column = _modality_column(obs, modality, is_control, strict=True, warnings=warnings)
        return column, f"column {modality!r}", {}
    for column in (c for c in obs.columns if str(c).lower() in MODALITY_KEYS):
        parsed = _modality_column(obs, column, is_control, strict=False, warnings=warnings)
        if parsed is not None:
            return parsed, f"column {column!r}", {}
    return _infer_modality(adata, warnings)


def _infer_modality(adata: anndata.AnnData, warnings: list[str]) -> tuple[pd.Series, str, dict]:
    """Screen-wide modality from the targets' own direction (most down: CRISPRi, most up: CRISPRa)."""
    obs = adata.obs
    labels, is_ctrl = obs["lazynet_perturbation"], obs["lazynet_is_control"].to_numpy(dtype=bool)
    singles = [t for t in pd.unique(labels[~is_ctrl]) if "+" not in t]
    codes = pd.Categorical(labels, categories=singles).codes
    fcs = _log2fc(adata.X, adata.var_names, singles, codes, is_ctrl)
    direction = {t: "down" if fc <= -TARGET_CHECK_MIN_LOG2FC else "up" if fc >= TARGET_CHECK_MIN_LOG2FC
                 else "unchanged" for t, fc in zip(singles, fcs, strict=True)}
    n_down, n_up = sum(d == "down" for d in direction.values()), sum(d == "up" for d in direction.values())
    whole = "CRISPRa" if n_up > n_down else "CRISPRi"
    counts = f"{n_down} down, {n_up} up, {len(singles) - n_down - n_up} unchanged of {len(singles)} target(s)"
    warnings.append(f"No modality given or found in .obs; inferred {whole} from the targets' own expression "
                    f"({counts}). Pass modality= to override.")
    report = {t: {"log2fc": float(fc), "direction": direction[t]} for t, fc in zip(singles, fcs, strict=True)}
    return pd.Series(whole, index=obs.index, dtype=object), f"inferred: {whole} ({counts})", report


def _missing_targets(labels: pd.Series, genes: pd.Index) -> dict[str, int]:
    """Targets that are not measured genes, each with its number of cells."""
    counts = labels.dropna().loc[lambda lab: lab != "control"].value_counts()
    missing: dict[str, int] = {}
    for label, n in counts.items():
        for target in (t for t in label.split("+") if t not in genes):
            missing[target] = missing.get(target, 0) + int(n)
    return dict(sorted(missing.items()))


# --------------------------------------------------------------------------- checks
_NOTES = {
    ("CRISPRi", True): "target fell: the model sees a knockdown to the observed level",
    ("CRISPRa", True): "target rose: the model sees an activation to the observed level",
    ("CRISPRi", False): "target did not fall: the model sees little or no perturbation",
    ("CRISPRa", False): "target did not rise: the model sees little or no perturbation",
    ("CRISPRko", True): ("mRNA fell (likely nonsense-mediated decay): the model sees a knockdown to this "
                         "level, not the loss of the protein"),
    ("CRISPRko", False): ("mRNA did not fall: the knockout is invisible to the model, which encodes a "
                          "perturbation by its target's expression level"),
}  # fmt: skip


def _log2fc(X: sp.csr_matrix, genes: pd.Index, targets: list[str], codes: np.ndarray,
            is_ctrl: np.ndarray) -> list[float]:
    """log2 of mean counts-per-10k of each target in its cells (``codes == j``) over control cells."""
    cols = sp.csc_matrix(X[:, genes.get_indexer(targets)])
    cols.data = np.expm1(cols.data)  # mean counts per 10k, not mean log
    out = []
    for j in range(len(targets)):
        column = cols[:, j].toarray().ravel()
        out.append(float(np.log2((column[codes == j].mean() + 0.1) / (column[is_ctrl].mean() + 0.1))))
    return out


def _target_check(X: sp.csr_matrix, obs: pd.DataFrame, genes: pd.Index) -> dict[str, dict]:
    is_ctrl = obs["lazynet_is_control"].to_numpy(dtype=bool)
    groups = pd.MultiIndex.from_arrays([obs["lazynet_perturbation"], obs["lazynet_modality"]])
    singles = [(t, m) for t, m in groups[~is_ctrl].unique() if "+" not in t]
    screened_twice = pd.Series([t for t, _ in singles]).value_counts().loc[lambda n: n > 1].index
    codes = pd.Categorical(list(groups), categories=singles).codes
    fcs = _log2fc(X, genes, [t for t, _ in singles], codes, is_ctrl)
    result = {}
    for j, ((target, mod), log2fc) in enumerate(zip(singles, fcs, strict=True)):
        expected = "up" if mod == "CRISPRa" else "down"
        ok = log2fc <= -TARGET_CHECK_MIN_LOG2FC if expected == "down" else log2fc >= TARGET_CHECK_MIN_LOG2FC
        key = f"{target} ({mod})" if target in screened_twice else target
        result[key] = {"target": target, "modality": mod, "n_cells": int((codes == j).sum()),
                       "log2fc": log2fc, "expected": expected, "ok": bool(ok), "note": _NOTES[mod, bool(ok)]}
    return result


def _knockouts(adata: anndata.AnnData, check: dict[str, dict], *, keep_invisible: bool,
               warnings: list[str]) -> np.ndarray:
    """Cells to keep in a knockout screen: drop targets whose mRNA did not fall (invisible to the model)."""
    ko = {v["target"]: v["ok"] for v in check.values() if v["modality"] == "CRISPRko"}
    keep = np.ones(adata.n_obs, dtype=bool)
    if not ko:
        return keep
    visible, hidden = sorted(t for t, ok in ko.items() if ok), sorted(t for t, ok in ko.items() if not ok)
    text = (f"Knockout (CRISPRko) cells: LazyNet encodes a perturbation by its target's expression level. "
            f"For {len(visible)} target(s) the mRNA fell ({visible}): the model sees them as a knockdown to "
            "that level, not as the loss of the protein.")
    if hidden:
        is_ko = (adata.obs["lazynet_modality"] == "CRISPRko").to_numpy()
        hit = adata.obs["lazynet_perturbation"].map(lambda lab: any(t in hidden for t in lab.split("+")))
        hit = hit.to_numpy(dtype=bool) & is_ko
        text += (f" For {len(hidden)} target(s) the mRNA did not fall ({hidden}; "
                 f"{int(hit.sum())} cell(s)): the model cannot see them")
        if not visible and not keep_invisible:
            msg = (f"{text}, and no knockout target is left. LazyNet cannot learn from this knockout screen "
                   "with a level encoding. Pass keep_invisible_knockouts=True (--keep-invisible-knockouts) "
                   "to train on it anyway, knowing the model sees unperturbed targets.")
            raise ScreenError(msg)
        text += (" and they are kept as asked." if keep_invisible else
                 ", so their cells were dropped; pass keep_invisible_knockouts=True to keep them.")
        keep = ~hit if not keep_invisible else keep
    warnings.append(text)
    return keep


def _escapers(adata: anndata.AnnData, quantile: float, warnings: list[str]) -> tuple[np.ndarray, dict]:
    """Target-level responder filter: drop cells whose target did not leave the control range."""
    if not 0 < quantile < 1:
        msg = f"escaper_quantile must be between 0 and 1 (exclusive), got {quantile}."
        raise ScreenError(msg)
    obs, X = adata.obs, adata.X
    is_ctrl = obs["lazynet_is_control"].to_numpy(dtype=bool)
    keep, report = np.ones(adata.n_obs, dtype=bool), {}
    groups = obs.loc[~is_ctrl, ["lazynet_perturbation", "lazynet_modality"]].drop_duplicates()
    for label, mod in groups.to_numpy():
        cells = np.flatnonzero((obs["lazynet_perturbation"] == label).to_numpy())
        entry = {"modality": mod, "n_cells": len(cells), "n_escapers": 0, "threshold": float("nan")}
        if "+" in label or mod == "CRISPRko":
            why = "combination" if "+" in label else "knockout: its mRNA level does not show if it worked"
            report[label] = entry | {"status": f"not classified ({why})"}
            continue
        column = X[:, adata.var_names.get_loc(label)]
        control, values = column[is_ctrl].toarray().ravel(), column[cells].toarray().ravel()
        threshold = float(np.quantile(control, quantile if mod == "CRISPRi" else 1 - quantile))
        if mod == "CRISPRi" and threshold == 0:
            why = f"control {quantile:g} quantile of {label} is 0"
            report[label] = entry | {"status": f"not classified ({why})"}
            continue
        escaper = values >= threshold if mod == "CRISPRi" else values <= threshold
        keep[cells[escaper]] = False
        report[label] = entry | {"n_escapers": int(escaper.sum()), "threshold": threshold,
                                 "status": "classified"}
    classified = {k: v for k, v in report.items() if v["status"] == "classified"}
    shown = ", ".join(f"{k} {v['n_escapers']}/{v['n_cells']}" for k, v in classified.items())
    skipped = [k for k, v in report.items() if v["status"] != "classified"]
    warnings.append(f"Escaper filter (quantile {quantile:g}): dropped {int((~keep).sum())} cell(s) whose "
                    f"target stayed in the control range: {shown or 'none'}"
                    f"{f'; not classified: {skipped}' if skipped else ''}.")
    return keep, report


def _gene_universe(adata: anndata.AnnData, genes, *, n_top_genes: int, extra_genes: Iterable[str],
                   targets: list[str], warnings: list[str]) -> np.ndarray:
    names = adata.var_names
    if not isinstance(genes, str):
        wanted = list(genes)
        unknown = [g for g in wanted if g not in names]
        if unknown:
            msg = (f"{len(unknown)} gene(s) in genes= are not in the screen, e.g. {unknown[:5]}. "
                   "Pass names present in var_names.")
            raise ScreenError(msg)
        added = [t for t in targets if t not in set(wanted)]
        if added:
            warnings.append(f"Added {len(added)} target gene(s) not in genes=: {added[:10]}.")
        return names.isin(wanted + added)
    if genes not in ("all", "hvg"):
        msg = f"genes={genes!r} is not supported; pass 'all', 'hvg' or a list of gene names."
        raise ScreenError(msg)
    keep = np.asarray(adata.X.getnnz(axis=0) > 0)
    if genes == "hvg" and keep.sum() > n_top_genes:
        hvg = sc.pp.highly_variable_genes(adata[:, keep], flavor="seurat", n_top_genes=n_top_genes,
                                          inplace=False)
        keep[np.flatnonzero(keep)[~hvg["highly_variable"].to_numpy()]] = False
    extra = list(extra_genes)
    unknown = [g for g in extra if g not in names]
    if unknown:
        warnings.append(f"{len(unknown)} extra gene(s) not in the screen were skipped: {unknown[:10]}.")
    return keep | names.isin(targets + extra)


# --------------------------------------------------------------------------- public
def read_screen(source, *, pert_key: str | None = None, control: str | None = None,
                modality: str | None = None, layer: str | None = None, genes="all",
                n_top_genes: int = 2000, extra_genes: Iterable[str] = (),
                backed: str | bool = "auto", guide_calls=None, guide_genes=None,
                min_guide_umis: int = readers.DEFAULT_MIN_GUIDE_UMIS, moi: str | None = None,
                escapers: str = "keep", escaper_quantile: float = 0.5,
                keep_invisible_knockouts: bool = False) -> anndata.AnnData:
    """Read a CRISPR screen into the standard LazyNet AnnData.

    Parameters
    ----------
    source
        Path to an ``.h5ad`` file, a Cell Ranger ``filtered_feature_bc_matrix.h5`` or matrix
        directory (or the ``outs/`` folder holding one; ``~`` expanded), or an in-memory AnnData
        (never modified).
    pert_key, control
        Override the auto-detected perturbation column and control label (see ``detect_columns``).
    modality
        ``"CRISPRi"``/``"CRISPRa"``/``"CRISPRko"`` (also ``"i"``, ``"a"``, ``"ko"``,
        ``"interference"``, ``"activation"``, ``"knockout"``) for the whole screen, or an ``.obs``
        column; by default a column named like ``MODALITY_KEYS``, else inferred from the direction
        of the targets' own expression, with a warning.
    layer
        Layer holding raw counts, or ``"raw.X"`` for ``.raw.X``; default ``.X``, or the counts found
        in a layer or ``.raw.X`` when ``.X`` is log-normalised or scaled.
    genes
        ``"all"`` (genes detected in at least one cell), ``"hvg"`` (``n_top_genes`` highly
        variable genes), or a list of names; targets and known ``extra_genes`` are always kept.
    n_top_genes
        Number of highly variable genes for ``genes="hvg"``.
    extra_genes
        Genes to keep in addition (e.g. module genes); unknown names are reported.
    backed
        ``"auto"`` opens ``.h5ad`` files larger than 1 GB backed and reads the counts in row chunks.
    guide_calls
        Labels from guide calls instead of an ``.obs`` column: a Cell Ranger
        ``protospacer_calls_per_cell.csv`` or ``cell,guide`` CSV path, a pandas Series (cell ->
        guide), or an ``.obsm`` key of a guide UMI matrix (names in ``uns['guide_names']``). By
        default ``obsm['guide_counts']`` is used when ``.obs`` has no perturbation column.
    guide_genes
        Guide → gene table (``guide,gene`` CSV, Cell Ranger ``feature_reference.csv`` or a mapping)
        for guide names that do not carry their gene.
    min_guide_umis
        UMIs at which a guide counts as present in a cell, for guide UMI matrices (default 5).
    moi
        Cells whose guides or label target several genes: ``"combine"`` keeps them as the
        combination ``A+B``, ``"drop"`` drops them. Default: combine for ``.obs`` labels, drop for
        guide calls.
    escapers
        ``"drop"`` removes cells whose target stayed in the control range (see the module notes);
        default ``"keep"``.
    escaper_quantile
        Control quantile for the escaper filter (CRISPRi: escaper when not below it).
    keep_invisible_knockouts
        Keep CRISPRko targets whose mRNA did not fall (the model cannot see them).

    Returns
    -------
    AnnData
        New object: CSR float32 log1p(CP10k) ``.X``, the ``lazynet_*`` obs columns and
        ``.uns["lazynet"]`` as in the API contract.

    Raises
    ------
    ScreenError
        For a missing or unreadable file, bad counts or guide calls, no controls, no perturbed
        cells, all targets absent from the genes, or a knockout screen the model cannot see.
    """
    options = _read_options({k: v for k, v in locals().items() if k != "source"})
    raw, source_name, sha = _open_source(source, backed=backed, layer=layer)
    _check_size(raw, source_name)
    warnings: list[str] = []
    counts, layer_used, is_log, var = _choose_counts(raw, layer, warnings)
    names, aliases = _gene_names(var, warnings)
    names = _unique_names(names, "gene", warnings)
    table = _guide_table(raw, guide_genes)
    calls, guide_info = _guide_calls(raw, guide_calls, pert_key, min_guide_umis)
    obs = raw.obs.copy()
    obs.index = _unique_names(obs.index, "cell", warnings)
    if calls is not None:
        obs[GUIDE_COLUMN], pert_key = calls, GUIDE_COLUMN
    notes: dict[str, tuple[tuple[str, ...], str]] = {}  # column -> (gene labels not controls, warning)
    detections = _genes_are_not_controls(_detections(obs, pert_key=pert_key, control=control, table=table),
                                         names, control=control, notes=notes)
    detection, targets = _choose_column(
        detections,
        lambda d: _parse_labels(obs[d.pert_key], d, names, control=control, table=table, aliases=aliases,
                                not_controls=notes.get(d.pert_key, ((), ""))[0]),
        counts, names, is_log=is_log, modality=modality, warnings=warnings)
    if notes.get(detection.pert_key, ((), ""))[1]:  # only the column used is worth a word
        warnings.append(notes[detection.pert_key][1])
    _warn_control_variants(obs[detection.pert_key], detection, warnings)
    moi = moi or ("drop" if calls is not None else "combine")
    labels, n_multi = _apply_moi(targets, moi)
    if not n_multi and not (labels.notna() & (labels != "control")).any():
        raise ScreenError(_only_controls_message(obs[detection.pert_key], detection))
    missing = _missing_targets(labels, names)
    dropped = {"several targets (moi='drop')": n_multi}
    keep = _keep_cells(labels, missing, counts, names, warnings, dropped, guides=calls is not None)
    adata = _build(obs, counts, labels, keep, names, is_log, warnings)
    mods, modality_source, inferred = _cell_modality(adata, modality, warnings)
    adata.obs["lazynet_modality"] = mods.astype(str).to_numpy()
    check = _target_check(adata.X, adata.obs, adata.var_names)
    _warn_failed(check, warnings)
    adata, escaper_report = _filter_cells(adata, check, escapers, escaper_quantile,
                                          keep_invisible_knockouts, warnings, dropped)
    mask = _gene_universe(adata, genes, n_top_genes=n_top_genes, extra_genes=extra_genes,
                          targets=_targets_of(adata), warnings=warnings)
    if mask.sum() < MIN_GENES:
        msg = (f"Only {int(mask.sum())} gene(s) are left after choosing the genes (genes={genes!r}; genes "
               f"never detected are left out): too small to train. LazyNet needs at least {MIN_GENES} "
               "genes; read the full gene set.")
        raise ScreenError(msg)
    adata = adata[:, mask].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    if guide_info is not None:
        guide_info |= {"moi": moi, "n_cells_several_targets": n_multi}
    adata.uns["lazynet"] = {
        "pert_key": detection.pert_key, "control": detection.control,
        "modality_source": modality_source, "input_was_log": bool(is_log),
        "layer": layer_used, "source": source_name, "sha256": sha, "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_perturbations": len(set(adata.obs["lazynet_perturbation"]) - {"control"}),
        "warnings": warnings, "targets_missing": list(missing), "targets_missing_cells": missing,
        "target_check": check, "modality_inferred": inferred, "guides": guide_info or {},
        "cells_dropped": {k: v for k, v in dropped.items() if v}, "escapers": escaper_report,
        "read_options": options,
    }
    return adata


def _read_options(given: dict) -> dict:
    """The options that differ from read_screen's defaults, as plain values: ``read_screen(source, **them)``
    reads the same screen again (a pandas Series of guide calls cannot be recorded and is left out)."""
    defaults = {k: p.default for k, p in inspect.signature(read_screen).parameters.items() if k != "source"}
    out = {}
    for name, value in given.items():
        if value is None or isinstance(value, pd.Series) or (value == defaults[name]) is True:
            continue
        if isinstance(value, Path) or (name in ("guide_calls", "guide_genes") and isinstance(value, str)
                                       and Path(value).expanduser().exists()):
            value = str(Path(value).expanduser().resolve())
        elif isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        elif isinstance(value, dict):
            value = {str(k): str(v) for k, v in value.items()}
        out[name] = value
    return out


def _targets_of(adata: anndata.AnnData) -> list[str]:
    return sorted({t for lab in adata.obs["lazynet_perturbation"].unique() if lab != "control"
                   for t in lab.split("+")})


def _warn_failed(check: dict[str, dict], warnings: list[str]) -> None:
    failed = [k for k, v in check.items() if not v["ok"] and v["modality"] != "CRISPRko"]
    if failed:
        warnings.append(f"{len(failed)} target(s) did not move as expected for their modality "
                        f"(|log2fc| < {TARGET_CHECK_MIN_LOG2FC} or wrong sign): {failed}.")


def _filter_cells(adata: anndata.AnnData, check: dict[str, dict], escapers: str, quantile: float,
                  keep_invisible: bool, warnings: list[str],
                  dropped: dict[str, int]) -> tuple[anndata.AnnData, dict]:
    """Drop invisible knockouts and (when asked) escapers; refuse if no perturbed cell is left."""
    if escapers not in ("keep", "drop"):
        msg = f"escapers={escapers!r} is not supported; pass 'keep' (default) or 'drop'."
        raise ScreenError(msg)
    keep = _knockouts(adata, check, keep_invisible=keep_invisible, warnings=warnings)
    dropped["knockout target not visible"] = int((~keep).sum())
    report: dict = {}
    if escapers == "drop":
        responders, report = _escapers(adata, quantile, warnings)
        dropped["escaper"] = int((keep & ~responders).sum())
        keep &= responders
    if keep.all():
        return adata, report
    if not (~adata.obs["lazynet_is_control"].to_numpy(dtype=bool) & keep).any():
        msg = "No perturbed cells left after the knockout and escaper filters; pass escapers='keep'."
        raise ScreenError(msg)
    return adata[keep].copy(), report


def _keep_cells(labels: pd.Series, missing: dict[str, int], counts: sp.csr_matrix, genes: pd.Index,
                warnings: list[str], dropped: dict[str, int], *, guides: bool) -> np.ndarray:
    has_missing = labels.map(lambda lab: isinstance(lab, str) and any(t in missing for t in lab.split("+")))
    perturbed = labels.notna() & (labels != "control")
    if missing and not (perturbed & ~has_missing).any():
        hint = (" var_names look like Ensembl IDs: add a symbol column var['gene_name']."
                if np.mean([is_ensembl(g) for g in genes[:200]]) > 0.5 else "")
        msg = (f"None of the perturbation targets is a measured gene: {_named_counts(missing)} (var_names "
               f"start {genes[:3].tolist()}). Targets must be gene symbols present in var_names.{hint} "
               f"{_NOT_MEASURED_HELP}")
        raise ScreenError(msg)
    if missing:
        warnings.append(f"{len(missing)} target(s) are not among the measured genes, so their "
                        f"{int(has_missing.sum())} cell(s) were dropped: {_named_counts(missing)}. "
                        f"{_NOT_MEASURED_HELP}")
    n_multi = dropped["several targets (moi='drop')"]
    if n_multi:
        warnings.append(f"{n_multi} cell(s) with guides for several genes were dropped (moi='drop'); pass "
                        "moi='combine' to keep them as combinations.")
    no_label = int(labels.isna().sum()) - n_multi
    if no_label:
        what = "a guide call" if guides else "a perturbation label"
        warnings.append(f"{no_label} cell(s) without {what} were dropped.")
    empty = np.asarray(counts.sum(axis=1)).ravel() <= 0
    if empty.any():
        groups = labels[empty].fillna("no label").astype(str).value_counts()
        shown = ", ".join(f"{display_name(g)} ({n})" for g, n in groups.head(8).items())
        more = f" and {len(groups) - 8} more" if len(groups) > 8 else ""
        warnings.append(f"{int(empty.sum())} cell(s) with no counts were dropped: {shown}{more}.")
    dropped["no guide call" if guides else "no label"] = no_label
    dropped["target not measured"] = int(has_missing.sum())
    dropped["no counts"] = int((empty & labels.notna()).sum())
    keep = labels.notna().to_numpy() & ~has_missing.to_numpy(dtype=bool) & ~empty
    if not (labels[keep] == "control").any():
        msg = ("No control cells left after dropping cells with no counts or no label: every control cell "
               f"was empty. Check the file; if your controls carry another label, {_PICK_CONTROL}.")
        raise ScreenError(msg)
    if not (labels[keep] != "control").any():
        msg = ("No perturbed cells left after dropping cells with no counts or an unmeasured target. "
               f"Check the file; if the perturbations are in another column, {_PICK_COLUMN}.")
        raise ScreenError(msg)
    return keep


def _named_counts(cells: dict[str, int]) -> str:
    return ", ".join(f"{display_name(t)} ({n} cells)" for t, n in cells.items())


def _build(obs: pd.DataFrame, counts: sp.csr_matrix, labels: pd.Series, keep: np.ndarray, names: pd.Index,
           is_log: bool, warnings: list[str]) -> anndata.AnnData:
    obs = obs.loc[keep].copy()
    obs["lazynet_perturbation"] = labels[keep].astype(str).to_numpy()
    obs["lazynet_is_control"] = (obs["lazynet_perturbation"] == "control").to_numpy(dtype=bool)
    adata = anndata.AnnData(X=counts[keep], obs=obs, var=pd.DataFrame(index=names))  # names made unique
    if not is_log:
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    return adata


def validate_screen(adata: anndata.AnnData) -> list[str]:
    """Re-check a ``read_screen`` output and return its warnings.

    Parameters
    ----------
    adata
        An AnnData returned by ``read_screen``.

    Returns
    -------
    list of str
        The stored warnings plus any found now (e.g. perturbations with very few cells).

    Raises
    ------
    ScreenError
        If a standard column or ``.uns["lazynet"]`` is missing, ``.X`` is not finite CSR, or
        controls or perturbed cells are absent.
    """
    missing = [c for c in STANDARD_COLUMNS if c not in adata.obs.columns]
    if missing or "lazynet" not in adata.uns:
        msg = (f"Not a read_screen output: missing obs columns {missing} or uns['lazynet']. "
               "Run read_screen first.")
        raise ScreenError(msg)
    if not sp.issparse(adata.X) or adata.X.format != "csr" or not np.isfinite(adata.X.data).all():
        msg = ".X must be a finite CSR matrix (as read_screen writes it). Run read_screen again."
        raise ScreenError(msg)
    is_ctrl = adata.obs["lazynet_is_control"].to_numpy(dtype=bool)
    if not is_ctrl.any() or is_ctrl.all():
        msg = "The screen needs both control and perturbed cells. Run read_screen again."
        raise ScreenError(msg)
    bad = sorted(set(adata.obs["lazynet_modality"]) - set(MODALITIES))
    if bad:
        msg = f"lazynet_modality holds {bad}; only {list(MODALITIES)} are allowed. Run read_screen again."
        raise ScreenError(msg)
    warnings = list(adata.uns["lazynet"].get("warnings", []))
    sizes = adata.obs.loc[~is_ctrl, "lazynet_perturbation"].astype(str).value_counts()
    if (sizes < 5).any():
        small = sizes[sizes < 5].index.tolist()
        warnings.append(f"{len(small)} perturbation(s) have fewer than 5 cells: {_quoted(small, 10)}. Their "
                        "effects rest on very few cells; treat their predictions with care.")
    return warnings


def screen_choices(source, *, limit: int = 8) -> dict:
    """What a user can choose when the automatic reading of a screen fails or guesses wrong.

    Parameters
    ----------
    source
        A path (as for ``read_screen``) or an AnnData. Only ``.obs`` and the names of the layers
        are read (a file is opened backed).
    limit
        Number of most common values listed per candidate column.

    Returns
    -------
    dict
        ``columns`` (every ``.obs`` column, likely perturbation columns first), ``values``
        (``{column: [(value, n_cells), ...]}`` for the first three columns), ``control`` (a known
        control label of the first column, else its most common value, else None) and ``layers``
        (layer names, plus ``RAW_X`` when the file has ``.raw``).

    Raises
    ------
    ScreenError
        If the source itself cannot be read (see ``read_screen``).
    """
    if isinstance(source, anndata.AnnData):
        obs, layers, has_raw = source.obs, list(source.layers), source.raw is not None
        genes = set(source.var_names.astype(str))
    else:
        path, kind = _resolve_path(source)
        if kind != "h5ad":
            return {"columns": [], "values": {}, "control": None, "layers": []}
        try:
            handle = anndata.read_h5ad(path, backed="r")
        except Exception as err:  # anndata raises many types for files it cannot read
            msg = f"Could not read the columns of '{path}' ({type(err).__name__}); is it a complete .h5ad?"
            raise ScreenError(msg) from err
        try:
            obs, layers, has_raw = handle.obs.copy(), list(handle.layers), handle.raw is not None
            genes = set(handle.var_names.astype(str))
        finally:
            handle.file.close()
    likely = list(_candidate_columns(obs))
    columns = likely + [str(c) for c in obs.columns if c not in likely]
    values = {c: [(str(v), int(n)) for v, n in obs[c].dropna().astype(str).value_counts().head(limit).items()]
              for c in columns[:3]}
    first = columns[0] if columns else None
    patterns = [_control_regex(None)]
    known = [lab for lab in _distinct_labels(obs[first]) if _is_control_label(lab, patterns)] if first else []
    known = [lab for lab in known if lab.strip() not in genes] or known  # CTRL the gene is no control word
    control = known[0] if known else (values[first][0][0] if first and values[first] else None)
    return {"columns": columns, "values": values, "control": control,
            "layers": layers + ([RAW_X] if has_raw else [])}


def target_check_frame(adata: anndata.AnnData) -> pd.DataFrame:
    """Return the target check of a ``read_screen`` output as a table.

    Parameters
    ----------
    adata
        An AnnData returned by ``read_screen``.

    Returns
    -------
    pandas.DataFrame
        Columns ``target, modality, n_cells, log2fc, expected, ok``, sorted by ``log2fc``.
    """
    check = adata.uns.get("lazynet", {}).get("target_check", {})
    columns = ["target", "modality", "n_cells", "log2fc", "expected", "ok"]
    rows = [{c: entry.get(c, key if c == "target" else None) for c in columns}
            for key, entry in check.items()]
    return pd.DataFrame(rows, columns=columns).sort_values("log2fc", ignore_index=True)
