"""Read Cell Ranger outputs and guide calls for ``read_screen``.

Decisions recorded here:

- A Cell Ranger output is a ``filtered_feature_bc_matrix.h5`` (any ``.h5``/``.hdf5`` file), a
  matrix directory (``matrix.mtx.gz``, ``features.tsv.gz``, ``barcodes.tsv.gz``), or a folder that
  holds either (``outs/``). It is read with scanpy's ``read_10x_h5`` / ``read_10x_mtx``.
- *Gene Expression* features become ``.X`` with Ensembl IDs as ``var_names`` and the symbols in
  ``var['gene_symbols']`` (``read_screen`` switches to symbols and reports collisions);
  *CRISPR Guide Capture* features become ``obsm['guide_counts']`` (cells × guides UMI counts)
  with the names in ``uns['guide_names']``. A ``target_gene_name`` feature column (Cell Ranger's
  feature reference) becomes the guide → gene table ``uns['guide_genes']``.
- A guide is present in a cell when it has at least ``DEFAULT_MIN_GUIDE_UMIS`` (5) UMIs, a fixed
  threshold as in most Perturb-seq papers (Schraivogel 2020 used 8). pertpy's mixture-model
  assignment is not used: pertpy requires jax, flax and numpyro, too heavy next to torch.
  Cell Ranger's own per-guide calls (``protospacer_calls_per_cell.csv``) can be given instead.
- Guide calls are written as one string per cell, guides joined by ``"|"`` as in Cell Ranger's
  ``feature_call`` column; cells without a guide get no label.
- ``check_source`` tells a screen file by its content, not its name: the HDF5 signature, then the
  groups inside (AnnData ``obs``/``var``, Cell Ranger ``matrix``). Anything else (an empty file, a
  gzip or ZIP archive, a CSV, loom, an R data file, a truncated copy, a folder without a matrix) gets
  its own answer naming what it is and what to do.
"""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from lazynet_core.errors import ScreenError
from lazynet_core.text import display_name

__all__ = ["DEFAULT_MIN_GUIDE_UMIS", "calls_from_counts", "check_source", "find_10x", "read_10x",
           "read_guide_calls", "read_table"]

DEFAULT_MIN_GUIDE_UMIS = 5
GUIDE_FEATURE_TYPE = "CRISPR Guide Capture"
GENE_FEATURE_TYPE = "Gene Expression"
_H5_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_GZIP_SIGNATURE = b"\x1f\x8b"
_R_SUFFIXES = (".rds", ".rda", ".rdata")
_MATRIX_FILES = ("matrix.mtx", "features.tsv", "genes.tsv", "barcodes.tsv")
_CELL_COLUMNS = ("cell_barcode", "cell", "barcode", "cell_id", "obs_names", "cell_name")
_CALL_COLUMNS = ("feature_call", "guide", "guide_id", "guide_identity", "sgrna", "grna", "feature",
                 "guide_call", "guides")  # fmt: skip


def _is_matrix_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("matrix.mtx.gz", "matrix.mtx"))


def find_10x(path: Path) -> Path | None:
    """The Cell Ranger ``.h5`` file or matrix directory at ``path`` (or inside it), else None."""
    if path.is_file():
        return path if path.suffix.lower() in _H5_SUFFIXES else None
    if not path.is_dir():
        return None
    if _is_matrix_dir(path):
        return path
    for inner in (path, path / "outs"):
        h5 = inner / "filtered_feature_bc_matrix.h5"
        if h5.is_file():
            return h5
        if _is_matrix_dir(inner / "filtered_feature_bc_matrix"):
            return inner / "filtered_feature_bc_matrix"
    return None


# --------------------------------------------------------------------------- what a file is
_EXPECTED = ("LazyNet reads an AnnData .h5ad file (counts in X, each cell's perturbation label in obs) "
             "or a Cell Ranger output (filtered_feature_bc_matrix.h5 or its matrix folder).")


def check_source(path: str | Path) -> tuple[Path, str]:
    """Tell what a screen source is from its content, or say exactly what is wrong with it.

    Parameters
    ----------
    path
        A file or folder: an ``.h5ad`` file, a Cell Ranger ``.h5`` file or matrix directory, or a
        folder (``outs/``) holding one.

    Returns
    -------
    tuple of (Path, str)
        The file or matrix directory to read, and its kind: ``"h5ad"`` (AnnData) or ``"10x"``
        (Cell Ranger).

    Raises
    ------
    ScreenError
        With a specific answer for a missing, empty, compressed, archived, text, non-AnnData HDF5,
        truncated or damaged file, or a folder that holds no Cell Ranger matrix.
    """
    given = Path(path).expanduser()
    if not given.exists():
        msg = f"File '{given}' does not exist; check the path."
        raise ScreenError(msg)
    if given.is_dir():
        found = find_10x(given)
        if found is None:
            raise ScreenError(_folder_message(given))
        if found.is_dir():
            return found, "10x"
        given = found
    return given, _file_kind(given)


def _file_kind(path: Path) -> str:
    size = path.stat().st_size
    if size == 0:
        msg = (f"'{path}' is empty (0 bytes): it holds no data. The copy or download probably failed; copy "
               "the file again from its origin, or choose the right file.")
        raise ScreenError(msg)
    with path.open("rb") as handle:
        head = handle.read(4096)
        hdf5 = head.startswith(HDF5_SIGNATURE) or any(_signature_at(handle, at) for at in _user_blocks(size))
    if not hdf5:
        raise ScreenError(_not_hdf5_message(path, head))
    return _hdf5_kind(path)


def _user_blocks(size: int) -> list[int]:
    """Offsets where HDF5 may put its signature after a user block: 512, 1024, 2048, ..."""
    offsets, at = [], 512
    while at + 8 <= size and at <= 1 << 24:
        offsets.append(at)
        at *= 2
    return offsets


def _signature_at(handle, offset: int) -> bool:
    handle.seek(offset)
    return handle.read(8) == HDF5_SIGNATURE


def _not_hdf5_message(path: Path, head: bytes) -> str:
    name, lower = path.name, path.name.lower()
    if lower.endswith(_R_SUFFIXES):
        return (f"'{path}' is an R data file, not an .h5ad file. Convert the Seurat or SingleCellExperiment "
                "object to .h5ad first (e.g. with zellkonverter or sceasy in R), then load that file.")
    if lower.startswith(_MATRIX_FILES):
        return (f"'{path}' is one file of a Cell Ranger matrix folder; load the folder that holds "
                "matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz instead.")
    if head.startswith(_GZIP_SIGNATURE):
        inner = name[:-3] if lower.endswith(".gz") else f"{name} (without .gz)"
        return (f"'{path}' is gzip-compressed, not an .h5ad file as it is: decompress it first (gunzip "
                f"'{name}' gives '{inner}'), then load the decompressed file.")
    if head.startswith(_ZIP_SIGNATURES):
        return (f"'{path}' is a ZIP archive, not an .h5ad file: unzip it first, then load the .h5ad file "
                "(or the Cell Ranger folder) it contains.")
    if head.startswith(b"%%MatrixMarket"):
        return (f"'{path}' is a Matrix Market file (one file of a Cell Ranger matrix folder); load the "
                "folder that holds it with features.tsv.gz and barcodes.tsv.gz instead.")
    text = _as_text(head)
    if text is None:
        return (f"'{path}' is not an HDF5 file (it starts with the bytes {head[:8]!r}), so it is neither an "
                f".h5ad file nor a Cell Ranger .h5 file. {_EXPECTED}")
    first = text.splitlines()[0] if text.strip() else ""
    table = any(sep in first for sep in (",", "\t", ";"))
    what = "a text table (CSV/TSV)" if table else "a text file"
    convert = (" To convert a counts table, in Python: "
               f"anndata.read_csv('{name}').write_h5ad('screen.h5ad') (cells as rows; add .T if genes are "
               "rows), and add each cell's perturbation label to .obs before writing.") if table else ""
    return (f"'{path}' is {what}, not an .h5ad file (it starts '{display_name(first, max_len=40)}'). "
            f"{_EXPECTED}{convert}")


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if err.start >= len(head) - 4:  # a multi-byte character cut at the end of the sample
            return head[: err.start].decode("utf-8-sig")
        return None


def _hdf5_kind(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = set(handle.keys())
            tenx_v2 = any(isinstance(handle[k], h5py.Group) and "barcodes" in handle[k] for k in keys)
    except OSError as err:
        if "truncated" in str(err).lower():
            msg = (f"'{path}' is truncated or incomplete (was the copy/download interrupted?): the file is "
                   f"shorter than its own header says. Copy or download it again.")
        else:
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            msg = (f"'{path}' is an HDF5 file but it is damaged or incomplete ({first}); was the copy or "
                   "download interrupted? Copy or download it again.")
        raise ScreenError(msg) from err
    if {"obs", "var"} <= keys:
        return "h5ad"
    if "matrix" in keys or tenx_v2:
        return "10x"
    if {"row_attrs", "col_attrs"} <= keys:
        msg = (f"'{path}' is a loom file, not an .h5ad file. Convert it first, in Python: "
               f"anndata.read_loom('{path.name}').write_h5ad('screen.h5ad'), then load that file.")
        raise ScreenError(msg)
    shown = ", ".join(display_name(k, max_len=30) for k in sorted(keys)[:8]) or "nothing"
    msg = (f"'{path}' is an HDF5 file but not an AnnData .h5ad file: it has no X, obs and var (it holds "
           f"{shown}). {_EXPECTED} Write the screen with anndata's write_h5ad.")
    raise ScreenError(msg)


def _folder_message(path: Path) -> str:
    entries = sorted(p.name for p in path.iterdir())
    if any((path / ".zattrs").is_file() or (path / n).is_file() for n in (".zgroup", "zarr.json")):
        return (f"'{path}' is a zarr store, not an .h5ad file. Convert it first, in Python: "
                f"anndata.read_zarr('{path.name}').write_h5ad('screen.h5ad'), then load that file.")
    h5ads = [n for n in entries if n.lower().endswith(".h5ad")]
    shown = ", ".join(display_name(n, max_len=40) for n in entries[:6]) + (" ..." if len(entries) > 6 else "")
    fix = (f"load the .h5ad file itself, e.g. '{path / display_name(h5ads[0])}'" if h5ads else
           "load the .h5ad file, or Cell Ranger's outs/ folder")
    return (f"'{path}' is a folder, not an .h5ad file or a Cell Ranger output: it has no matrix.mtx.gz (with "
            "features.tsv.gz and barcodes.tsv.gz), no filtered_feature_bc_matrix.h5 and no outs/ folder "
            f"holding either ({f'it contains {shown}' if entries else 'it is empty'}). Instead, {fix}.")


def _read_raw(path: Path) -> anndata.AnnData:
    try:
        if path.is_dir():
            adata = sc.read_10x_mtx(path, var_names="gene_ids", gex_only=False, make_unique=False)
            return adata
        adata = sc.read_10x_h5(path, gex_only=False)
        adata.var["gene_symbols"] = adata.var_names.astype(str)
        adata.var_names = adata.var["gene_ids"].astype(str).to_numpy()
        return adata
    except MemoryError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        kind = "matrix directory" if path.is_dir() else ".h5 file"
        msg = (f"Could not read '{path}' as a Cell Ranger {kind} ({type(err).__name__}: {first}). A Cell "
               "Ranger output is filtered_feature_bc_matrix.h5 or a folder with matrix.mtx.gz, "
               "features.tsv.gz and barcodes.tsv.gz; pass one of those, or an .h5ad file.")
        raise ScreenError(msg) from err


def read_10x(path: str | Path) -> anndata.AnnData:
    """Read a Cell Ranger output: gene expression in ``.X``, guide UMI counts in ``.obsm``.

    Parameters
    ----------
    path
        ``filtered_feature_bc_matrix.h5``, a matrix directory, or a folder holding one.

    Returns
    -------
    AnnData
        Integer counts of the *Gene Expression* features (``var_names`` gene IDs,
        ``var['gene_symbols']``); ``obsm['guide_counts']`` and ``uns['guide_names']`` when the file
        has *CRISPR Guide Capture* features, and ``uns['guide_genes']`` when it names their targets.

    Raises
    ------
    ScreenError
        If the path is not a readable Cell Ranger output or has no gene expression features.
    """
    found, kind = check_source(path)
    if kind != "10x":
        msg = (f"'{found}' is an AnnData .h5ad file, not a Cell Ranger output (filtered_feature_bc_matrix.h5 "
               "or a folder with matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz); read it with "
               "read_screen.")
        raise ScreenError(msg)
    raw = _read_raw(found)
    types = raw.var["feature_types"].astype(str) if "feature_types" in raw.var else pd.Series(
        GENE_FEATURE_TYPE, index=raw.var_names)
    gex, guides = (types == GENE_FEATURE_TYPE).to_numpy(), (types == GUIDE_FEATURE_TYPE).to_numpy()
    if not gex.any():
        msg = (f"'{found}' has no '{GENE_FEATURE_TYPE}' features (feature types: "
               f"{sorted(set(types))}); LazyNet needs the expression matrix.")
        raise ScreenError(msg)
    keep_var = [c for c in ("gene_symbols", "feature_types", "genome") if c in raw.var]
    adata = anndata.AnnData(X=sp.csr_matrix(raw.X[:, gex]), obs=pd.DataFrame(index=raw.obs_names),
                            var=raw.var.loc[gex, keep_var].copy())
    adata.uns["source_format"] = f"Cell Ranger {'matrix directory' if found.is_dir() else '.h5'}"
    if guides.any():
        guide_var = raw.var.loc[guides]
        names = guide_var["gene_symbols"].astype(str).to_numpy()
        adata.obsm["guide_counts"] = sp.csr_matrix(raw.X[:, guides]).astype(np.int32)
        adata.uns["guide_names"] = names
        if "target_gene_name" in guide_var:
            targets = guide_var["target_gene_name"].astype(str).to_numpy()
            adata.uns["guide_genes"] = dict(zip(names, targets, strict=True)) | dict(
                zip(guide_var.index.astype(str), targets, strict=True))
    return adata


def calls_from_counts(counts, names, *, min_umis: int = DEFAULT_MIN_GUIDE_UMIS) -> np.ndarray:
    """Guide calls from a cells × guides UMI matrix: guides with ``>= min_umis`` UMIs.

    Parameters
    ----------
    counts
        Cells × guides UMI counts (dense or sparse).
    names
        Guide names, one per column.
    min_umis
        Smallest UMI count at which a guide counts as present.

    Returns
    -------
    numpy.ndarray
        Object array, one entry per cell: the present guides joined by ``"|"``, or None.
    """
    names = np.asarray(names, dtype=str)
    matrix = sp.csr_matrix(counts)
    if matrix.shape[1] != len(names):
        msg = (f"The guide count matrix has {matrix.shape[1]} columns but {len(names)} guide names were "
               "given; they must match one to one.")
        raise ScreenError(msg)
    if min_umis < 1:
        msg = f"min_guide_umis must be at least 1, got {min_umis}."
        raise ScreenError(msg)
    present = sp.csr_matrix(matrix >= min_umis)
    calls = np.full(matrix.shape[0], None, dtype=object)
    for row in np.flatnonzero(np.diff(present.indptr)):
        calls[row] = "|".join(names[present.indices[present.indptr[row]:present.indptr[row + 1]]])
    return calls


def _pick(columns, wanted) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


def read_table(path: Path, *, header: int | None = 0) -> pd.DataFrame:
    """Read a small CSV/TSV as strings; the delimiter is the first of tab, comma, semicolon in line 1."""
    with Path(path).open(encoding="utf-8-sig") as handle:
        first = handle.readline()
    sep = next((d for d in ("\t", ",", ";") if d in first), ",")
    try:
        return pd.read_csv(path, sep=sep, dtype=str, header=header, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        msg = f"Could not read '{path}' as a table ({type(err).__name__}: {err}). Pass a CSV or TSV file."
        raise ScreenError(msg) from err


def read_guide_calls(path: str | Path) -> pd.Series:
    """Read per-cell guide calls from a CSV.

    Parameters
    ----------
    path
        Cell Ranger ``protospacer_calls_per_cell.csv`` (``cell_barcode,num_features,feature_call,
        num_umis``) or a two-column ``cell,guide`` table, one row per cell and guide (header optional).

    Returns
    -------
    pandas.Series
        Indexed by cell barcode; each cell's guides joined by ``"|"``.

    Raises
    ------
    ScreenError
        If the file is missing, has fewer than two columns or no rows.
    """
    given = Path(path).expanduser()
    if not given.is_file():
        msg = (f"Guide calls file '{given}' does not exist; pass Cell Ranger's "
               "protospacer_calls_per_cell.csv or a CSV with columns cell,guide.")
        raise ScreenError(msg)
    frame = read_table(given)
    cell_col, call_col = _pick(frame.columns, _CELL_COLUMNS), _pick(frame.columns, _CALL_COLUMNS)
    if cell_col is None or call_col is None:
        frame = read_table(given, header=None)
        cell_col, call_col = (frame.columns[:2].tolist() + [None, None])[:2]
    if call_col is None or frame.empty:
        msg = (f"Guide calls file '{given}' has {frame.shape[1]} column(s) and {len(frame)} row(s); it needs "
               "rows of cell,guide (or Cell Ranger's protospacer_calls_per_cell.csv).")
        raise ScreenError(msg)
    rows = pd.DataFrame({"cell": frame[cell_col].str.strip(), "call": frame[call_col].str.strip()}).dropna()
    rows = rows[(rows["cell"] != "") & (rows["call"] != "")]
    calls = rows.groupby("cell", sort=False)["call"]
    return calls.agg(lambda guides: "|".join(dict.fromkeys(g for c in guides for g in c.split("|"))))
