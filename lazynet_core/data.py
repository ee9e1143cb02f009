"""Read a real CRISPR screen into the standard LazyNet AnnData.

``read_screen`` is the only door from a user's file (or AnnData) into the package. It finds the
perturbation column and control label (``detect_columns``), checks the counts, normalises with
scanpy (``normalize_total`` 1e4 + ``log1p``), parses labels into sorted target sets, resolves the
CRISPRi/CRISPRa modality, checks that each target moved the expected way, chooses the gene
universe and records everything in ``.uns["lazynet"]``. The input is never modified.

Decisions (method.md §2) recorded here:

- A label is split on ``"+"`` only; control tokens are removed (``"A+ctrl"`` means A alone) and
  the remaining targets are sorted (``"B+A"`` -> ``"A+B"``). A trailing ``_<digits>`` or
  ``-<digits>`` guide suffix is stripped when the stem, but not the label, is a gene.
- Control labels match case-insensitively, exactly or as a prefix followed by a separator
  (``non-targeting_00001``, ``NTC-3``) or a guide number (``NTg1``; not for ``wt``, since
  ``WT1`` is a gene).
- Input is treated as log-normalised when it holds non-integers whose maximum is below
  ``LOG_MAX``; then a ``counts`` layer, if present, is preferred, otherwise the data is used as is.
- The target check compares mean counts-per-10k of the target in its cells against control
  cells; it passes when ``|log2fc| >= TARGET_CHECK_MIN_LOG2FC`` in the expected direction.
- ``genes=[...]`` keeps those genes plus every target gene (the pairs need the targets); unknown
  ``extra_genes`` are reported, not fatal (curated module lists are larger than any screen).
"""

from __future__ import annotations

import hashlib
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

from lazynet_core.errors import ScreenError

__all__ = ["Detection", "detect_columns", "read_screen", "target_check_frame", "validate_screen"]

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
MODALITIES = {"CRISPRi": ("i", "interference", "inhibition", "knockdown"), "CRISPRa": ("a", "activation")}
STANDARD_COLUMNS = ("lazynet_perturbation", "lazynet_modality", "lazynet_is_control")
LOG_MAX = 50.0
TARGET_CHECK_MIN_LOG2FC = 0.25
BACKED_ABOVE_BYTES = 1 << 30
_CHUNK_ROWS = 10_000
_SEP = r"(?:[_\-.:\s].*)"


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


def _is_control_label(label: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    return all(_is_control_token(t, patterns) for t in str(label).split("+"))


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
    return f"{os.path.commonprefix(labels).rstrip('_-.: 0123456789') or labels[0]}*"


def detect_columns(adata: anndata.AnnData, *, pert_key: str | None = None,
                   control: str | None = None) -> Detection:
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

    Returns
    -------
    Detection
        The chosen column, control label(s), candidates considered and how they were found.

    Raises
    ------
    ScreenError
        If ``pert_key`` is not a column, or no candidate column holds a control label.
    """
    obs = adata.obs
    if pert_key is not None and pert_key not in obs.columns:
        msg = (f"Obs {pert_key!r} does not exist in .obs; columns are {list(obs.columns)}. "
               "Pass pert_key= one of them.")
        raise ScreenError(msg)
    candidates = (pert_key,) if pert_key is not None else _candidate_columns(obs)
    if not candidates:
        msg = (f"No perturbation column found: .obs columns are {list(obs.columns)}, none of the known "
               f"names {list(PERT_KEY_CANDIDATES)}. Pass pert_key= the column holding guide targets.")
        raise ScreenError(msg)
    patterns = [_control_regex(control)]
    for column in candidates:
        labels = [lab for lab in _distinct_labels(obs[column]) if _is_control_label(lab, patterns)]
        if labels:
            how = "pert_key given" if pert_key is not None else "first candidate column with controls"
            how += "; control given" if control is not None else "; control label from known vocabulary"
            return Detection(column, _control_summary(labels, control), tuple(labels), candidates, how)
    raise ScreenError(_no_control_message(obs, candidates, control))


def _no_control_message(obs: pd.DataFrame, candidates: tuple[str, ...], control: str | None) -> str:
    wanted = f"the control label {control!r}" if control is not None else "a known control label"
    seen = "; ".join(f"{c!r}: {_distinct_labels(obs[c])[:6]}" for c in candidates[:4])
    return (f"No cells with {wanted} in column(s) {list(candidates)} (first values {seen}). "
            f"Known control labels are {list(CONTROL_LABELS)}. Pass control= the label of your "
            "control cells (and pert_key= the column).")


# --------------------------------------------------------------------------- reading
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolve_path(source: str | Path) -> Path:
    given = Path(source).expanduser()
    try:
        path = given.resolve(strict=True)
    except (FileNotFoundError, OSError) as err:
        msg = f"File '{given}' does not exist ({type(err).__name__}); check the path."
        raise ScreenError(msg) from err
    if not path.is_file() or path.suffix.lower() != ".h5ad":
        msg = f"'{path}' is not an .h5ad file; read_screen needs an AnnData .h5ad file (e.g. screen.h5ad)."
        raise ScreenError(msg)
    return path


def _to_csr(matrix) -> sp.csr_matrix:
    """Copy any matrix (dense, sparse, or a backed dataset read in row chunks) to CSR float32."""
    if sp.issparse(matrix):
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
            layers = {k: _to_csr(v) for k, v in handle.layers.items() if k in (layer, "counts")}
            return anndata.AnnData(X=_to_csr(handle.X), obs=handle.obs.copy(), var=handle.var.copy(),
                                   layers=layers)
        finally:
            handle.file.close()
    except MemoryError:
        raise
    except Exception as err:
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:160] if str(err).strip() else ''}"
        msg = f"Could not read '{path}' as an .h5ad file ({reason}). Is it a complete AnnData file?"
        raise ScreenError(msg) from err


def _open_source(source, *, backed: str | bool, layer: str | None):
    if isinstance(source, anndata.AnnData):
        return source, "in-memory AnnData", None
    if not isinstance(source, (str, Path)):
        msg = f"source must be a path to an .h5ad file or an AnnData, got {type(source).__name__}."
        raise ScreenError(msg)
    path = _resolve_path(source)
    return _read_h5ad(path, backed=backed, layer=layer), str(path), _sha256(path)


# --------------------------------------------------------------------------- counts
def _bad_cells(X: sp.csr_matrix, mask: np.ndarray) -> str:
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[mask]
    cells = np.unique(rows)
    return f"{int(mask.sum())} value(s) in {len(cells)} cell(s), first cell rows {cells[:5].tolist()}"


def _looks_log(X: sp.csr_matrix, where: str) -> bool:
    """Check values; return True for log-normalised data, raise for anything that is not counts."""
    data = X.data
    finite = np.isfinite(data)
    if not finite.all():
        msg = f"{where} holds NaN or infinite values: {_bad_cells(X, ~finite)}. Remove or fix those cells."
        raise ScreenError(msg)
    if (data < 0).any():
        msg = (f"{where} holds negative values: {_bad_cells(X, data < 0)}. Raw counts (or log-normalised "
               "counts) are required, not scaled data; pass layer= the raw counts.")
        raise ScreenError(msg)
    fractional = data != np.round(data)
    if not fractional.any():
        return False
    if data.max() < LOG_MAX:
        return True
    msg = (f"{where} holds non-integer values ({_bad_cells(X, fractional)}; max {data.max():.3g}) that "
           "are neither counts nor log-normalised. Pass layer= the raw counts.")
    raise ScreenError(msg)


def _choose_counts(adata: anndata.AnnData, layer: str | None, warnings: list[str]):
    if layer is not None and layer not in adata.layers:
        msg = (f"Layer {layer!r} does not exist; layers are {list(adata.layers)}. "
               "Pass layer= one of them, or None for .X.")
        raise ScreenError(msg)
    X = _to_csr(adata.layers[layer] if layer else adata.X)
    is_log = _looks_log(X, f"layer {layer!r}" if layer else ".X")
    if is_log and layer is None and "counts" in adata.layers:
        warnings.append(".X looks log-normalised; using layer 'counts' as the raw counts.")
        return _choose_counts(adata, "counts", warnings)
    if is_log:
        warnings.append(f"{'layer ' + repr(layer) if layer else '.X'} looks log-normalised (non-integer, "
                        f"max {X.data.max():.3g}); used as is without normalize_total/log1p.")
    return X, layer, is_log


# --------------------------------------------------------------------------- labels and modality
def _normalize_label(label: str, patterns: Sequence[re.Pattern[str]], genes: pd.Index) -> str:
    targets = set()
    for token in (t.strip() for t in str(label).split("+")):
        if not token or _is_control_token(token, patterns):
            continue
        stem = re.sub(r"[_-]\d+$", "", token)
        targets.add(stem if token not in genes and stem in genes else token)
    return "+".join(sorted(targets)) if targets else "control"


def _parse_labels(column: pd.Series, detection: Detection, genes: pd.Index, control: str | None) -> pd.Series:
    patterns = [_control_regex(control)]
    raw = column.astype(object)
    missing = raw.isna() | (raw.astype(str).str.strip().isin(["", "nan", "None"]))
    mapping = {lab: _normalize_label(lab, patterns, genes) for lab in _distinct_labels(column)}
    mapping.update(dict.fromkeys(detection.control_labels, "control"))
    out = raw.astype(str).map(mapping)
    out[missing] = None
    return out


def _parse_modality(value) -> str | None:
    text = re.sub(r"[^a-z]", "", str(value).lower())
    text = text[6:] if text.startswith("crispr") and len(text) > 6 else text
    return next((name for name, words in MODALITIES.items() if text in words or text == name.lower()), None)


def _modality_column(obs: pd.DataFrame, column: str, is_control: pd.Series, *,
                     strict: bool) -> pd.Series | None:
    parsed = obs[column].map(_parse_modality).astype(object)
    bad = parsed.isna() & ~is_control
    if bad.any():
        if not strict:
            return None
        values = pd.unique(obs.loc[bad, column].astype(str))[:5].tolist()
        msg = (f"Modality column {column!r} has values {values} that are not CRISPRi/CRISPRa. "
               "Pass modality='CRISPRi' or 'CRISPRa' for the whole screen.")
        raise ScreenError(msg)
    fill = parsed[~is_control].mode()
    return parsed.fillna(fill.iloc[0] if len(fill) else "CRISPRi")


def _cell_modality(obs: pd.DataFrame, is_control: pd.Series, modality: str | None,
                   warnings: list[str]) -> tuple[pd.Series, str]:
    if modality is not None:
        whole = _parse_modality(modality)
        if whole is not None:
            return pd.Series(whole, index=obs.index, dtype=object), f"given: {whole}"
        if modality not in obs.columns:
            msg = (f"modality={modality!r} is neither CRISPRi/CRISPRa (also 'i', 'a', 'interference', "
                   f"'activation') nor an .obs column; columns are {list(obs.columns)}.")
            raise ScreenError(msg)
        return _modality_column(obs, modality, is_control, strict=True), f"column {modality!r}"
    for column in (c for c in obs.columns if str(c).lower() in MODALITY_KEYS):
        parsed = _modality_column(obs, column, is_control, strict=False)
        if parsed is not None:
            return parsed, f"column {column!r}"
    warnings.append("No modality given or found in .obs; assuming CRISPRi for every cell. Pass modality=.")
    return pd.Series("CRISPRi", index=obs.index, dtype=object), "default: CRISPRi"


def _missing_targets(labels: pd.Series, genes: pd.Index) -> list[str]:
    targets = {t for lab in pd.unique(labels.dropna()) if lab != "control" for t in lab.split("+")}
    return sorted(t for t in targets if t not in genes)


# --------------------------------------------------------------------------- checks
def _target_check(X: sp.csr_matrix, obs: pd.DataFrame, genes: pd.Index) -> dict[str, dict]:
    is_ctrl = obs["lazynet_is_control"].to_numpy(dtype=bool)
    groups = pd.MultiIndex.from_arrays([obs["lazynet_perturbation"], obs["lazynet_modality"]])
    singles = [(t, m) for t, m in groups[~is_ctrl].unique() if "+" not in t]
    screened_twice = pd.Series([t for t, _ in singles]).value_counts().loc[lambda n: n > 1].index
    codes = pd.Categorical(list(groups), categories=singles).codes
    cols = sp.csc_matrix(X[:, genes.get_indexer([t for t, _ in singles])])
    cols.data = np.expm1(cols.data)  # mean counts per 10k, not mean log
    result = {}
    for j, (target, mod) in enumerate(singles):
        column, in_group = cols[:, j].toarray().ravel(), codes == j
        log2fc = float(np.log2((column[in_group].mean() + 0.1) / (column[is_ctrl].mean() + 0.1)))
        expected = "down" if mod == "CRISPRi" else "up"
        ok = log2fc <= -TARGET_CHECK_MIN_LOG2FC if expected == "down" else log2fc >= TARGET_CHECK_MIN_LOG2FC
        key = f"{target} ({mod})" if target in screened_twice else target
        result[key] = {"target": target, "modality": mod, "n_cells": int(in_group.sum()),
                       "log2fc": log2fc, "expected": expected, "ok": bool(ok)}
    return result


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
                backed: str | bool = "auto") -> anndata.AnnData:
    """Read a CRISPR screen into the standard LazyNet AnnData.

    Parameters
    ----------
    source
        Path to an ``.h5ad`` file (``~`` expanded) or an in-memory AnnData (never modified).
    pert_key, control
        Override the auto-detected perturbation column and control label (see ``detect_columns``).
    modality
        ``"CRISPRi"``/``"CRISPRa"`` (also ``"i"``, ``"a"``, ``"interference"``, ``"activation"``)
        for the whole screen, or an ``.obs`` column; by default a column named like
        ``MODALITY_KEYS``, else CRISPRi with a warning.
    layer
        Layer holding raw counts; default ``.X`` (or a ``counts`` layer when ``.X`` looks log).
    genes
        ``"all"`` (genes detected in at least one cell), ``"hvg"`` (``n_top_genes`` highly
        variable genes), or a list of names; targets and known ``extra_genes`` are always kept.
    n_top_genes
        Number of highly variable genes for ``genes="hvg"``.
    extra_genes
        Genes to keep in addition (e.g. module genes); unknown names are reported.
    backed
        ``"auto"`` opens files larger than 1 GB backed and reads the counts in row chunks.

    Returns
    -------
    AnnData
        New object: CSR float32 log1p(CP10k) ``.X``, the ``lazynet_*`` obs columns and
        ``.uns["lazynet"]`` as in the API contract.

    Raises
    ------
    ScreenError
        For a missing, unreadable or non-``.h5ad`` file, bad counts, no controls, no perturbed
        cells, or all targets absent from the genes.
    """
    raw, source_name, sha = _open_source(source, backed=backed, layer=layer)
    warnings: list[str] = []
    detection = detect_columns(raw, pert_key=pert_key, control=control)
    counts, layer_used, is_log = _choose_counts(raw, layer, warnings)
    var_names = pd.Index(raw.var_names.astype(str))
    labels = _parse_labels(raw.obs[detection.pert_key], detection, var_names, control)
    missing = _missing_targets(labels, var_names)
    keep = _keep_cells(labels, missing, counts, var_names, warnings)
    adata = _build(raw, counts, labels, keep, modality, is_log, warnings)
    targets = sorted({t for lab in adata.obs["lazynet_perturbation"].unique() if lab != "control"
                      for t in lab.split("+")})
    check = _target_check(adata.X, adata.obs, adata.var_names)
    failed = [k for k, v in check.items() if not v["ok"]]
    if failed:
        warnings.append(f"{len(failed)} target(s) did not move as expected for their modality "
                        f"(|log2fc| < {TARGET_CHECK_MIN_LOG2FC} or wrong sign): {failed[:10]}.")
    mask = _gene_universe(adata, genes, n_top_genes=n_top_genes, extra_genes=extra_genes,
                          targets=targets, warnings=warnings)
    adata = adata[:, mask].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.uns["lazynet"] = {
        "pert_key": detection.pert_key, "control": detection.control,
        "modality_source": adata.uns.pop("_modality_source"), "input_was_log": bool(is_log),
        "layer": layer_used, "source": source_name, "sha256": sha, "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_perturbations": len(set(adata.obs["lazynet_perturbation"]) - {"control"}),
        "warnings": warnings, "targets_missing": missing, "target_check": check,
    }
    return adata


def _keep_cells(labels: pd.Series, missing: list[str], counts: sp.csr_matrix, genes: pd.Index,
                warnings: list[str]) -> np.ndarray:
    has_missing = labels.map(lambda lab: isinstance(lab, str) and any(t in missing for t in lab.split("+")))
    perturbed = labels.notna() & (labels != "control")
    if missing and not (perturbed & ~has_missing).any():
        msg = (f"None of the perturbation targets is in var_names (e.g. {missing[:5]}; var_names start "
               f"{genes[:3].tolist()}). Gene symbols are required: set var_names to symbols.")
        raise ScreenError(msg)
    if missing:
        warnings.append(f"{len(missing)} target(s) absent from the genes; their {int(has_missing.sum())} "
                        f"cell(s) were dropped: {missing[:10]}.")
    if labels.isna().any():
        warnings.append(f"{int(labels.isna().sum())} cell(s) without a perturbation label were dropped.")
    empty = np.asarray(counts.sum(axis=1)).ravel() <= 0
    if empty.any():
        warnings.append(f"{int(empty.sum())} cell(s) with no counts were dropped.")
    keep = labels.notna().to_numpy() & ~has_missing.to_numpy(dtype=bool) & ~empty
    if not (labels[keep] == "control").any():
        msg = "No control cells left after dropping empty cells; pass control= the control label."
        raise ScreenError(msg)
    if not (labels[keep] != "control").any():
        msg = "No perturbed cells: every labelled cell is a control. Check pert_key= and control=."
        raise ScreenError(msg)
    return keep


def _build(raw: anndata.AnnData, counts: sp.csr_matrix, labels: pd.Series, keep: np.ndarray,
           modality: str | None, is_log: bool, warnings: list[str]) -> anndata.AnnData:
    obs = raw.obs.loc[keep].copy()
    obs["lazynet_perturbation"] = labels[keep].astype(str).to_numpy()
    obs["lazynet_is_control"] = (obs["lazynet_perturbation"] == "control").to_numpy(dtype=bool)
    cell_modality, source = _cell_modality(obs, obs["lazynet_is_control"], modality, warnings)
    obs["lazynet_modality"] = cell_modality.astype(str).to_numpy()
    var = pd.DataFrame(index=pd.Index(raw.var_names.astype(str)))
    adata = anndata.AnnData(X=counts[keep], obs=obs, var=var)
    if not adata.var_names.is_unique:
        warnings.append("var_names are not unique; made unique with suffixes '-1', '-2', ...")
        adata.var_names_make_unique()
    adata.obs_names_make_unique()
    if not is_log:
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    adata.uns["_modality_source"] = source
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
        warnings.append(f"{len(small)} perturbation(s) have fewer than 5 cells: {small[:10]}.")
    return warnings


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
