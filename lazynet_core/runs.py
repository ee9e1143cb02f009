"""Saving and loading runs: ``state_dict`` per replica + JSON manifest, atomic and versioned.

Layout of ``runs/<name>/``: ``replica_<k>.pt`` (state_dict only, loaded with ``weights_only=True``),
``reference.npy`` (control mean), ``history.csv``, ``split.json`` and ``config.json``, written last.
Everything is written into a hidden temporary sibling directory that is renamed into place at the
end, so a crash or a cancel never leaves a half-written run; a directory without ``config.json``
is reported as half-written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__
from .config import ModelConfig, PairConfig, TrainConfig
from .ensemble import Ensemble
from .errors import RunError
from .model import LazyNet

FORMAT_VERSION = 1
MANIFEST = "config.json"


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_run(
    ensemble: Ensemble, path: str | os.PathLike, *, overwrite: bool = False, provenance: dict | None = None
) -> Path:
    """Write ``ensemble`` to the run directory ``path`` atomically.

    Parameters
    ----------
    ensemble
        The trained ensemble.
    path
        Run directory to create. An existing non-empty directory is refused unless ``overwrite``.
    overwrite
        Replace an existing run.
    provenance
        Extra data provenance (e.g. ``adata.uns["lazynet"]`` source and sha256) for the manifest.

    Returns
    -------
    Path
        The run directory.
    """
    path = Path(path).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        msg = (
            f"Run directory '{path}' already exists and is not empty; choose another name or pass "
            "overwrite=True (CLI: --overwrite)."
        )
        raise RunError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    old = None
    try:
        _write_contents(ensemble, tmp, provenance or {})
        if path.exists():  # moved aside, not deleted: a kill from here on loses neither run
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
            os.replace(path, old / "run")
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists() and (old / "run").exists():
            os.replace(old / "run", path)  # put the previous run back
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(name: str) -> int | None:
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


def recover_interrupted(path: str | os.PathLike) -> list[str]:
    """Finish or undo a save of ``path`` that was killed half-way; return what was done.

    A save writes into ``.<name>.tmp-<pid>-*`` and moves an overwritten run aside into
    ``.<name>.old-<pid>-*`` before the final rename. When the writing process is gone: a complete
    new run (its ``config.json`` written) whose target is missing is moved into place; otherwise a
    previous run moved aside is put back; leftovers are removed. Directories of a live writer are
    never touched.
    """
    path = Path(path).expanduser()
    parent, done = path.parent, []
    if not parent.is_dir():
        return done
    stale = [
        d
        for d in parent.iterdir()
        if d.is_dir()
        and d.name.startswith(f".{path.name}.")
        and (pid := _writer_pid(d.name.removeprefix(f".{path.name}."))) is not None
        and not _pid_alive(pid)
    ]
    for d in sorted(stale, key=lambda d: ".tmp-" in d.name, reverse=True):  # complete new runs first
        if ".tmp-" in d.name and (d / MANIFEST).is_file() and not path.exists():
            os.replace(d, path)
            done.append(f"completed an interrupted save of '{path}'")
        elif ".old-" in d.name and (d / "run" / MANIFEST).is_file() and not path.exists():
            os.replace(d / "run", path)
            done.append(f"restored the previous run '{path}' after an interrupted overwrite")
        shutil.rmtree(d, ignore_errors=True)
    return done


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _genes_sha256(genes) -> str:
    return hashlib.sha256("\n".join(map(str, genes)).encode()).hexdigest()


def genes_checksum(genes) -> str:
    """SHA-256 of a gene list in order, as a run's manifest records it (``list_runs``' ``genes_sha256``).

    Parameters
    ----------
    genes
        Gene names, e.g. a screen's ``var_names``.

    Returns
    -------
    str
        Hex digest; equal for two lists only when they hold the same genes in the same order.
    """
    return _genes_sha256(genes)


def _write_contents(ensemble: Ensemble, tmp: Path, provenance: dict) -> None:
    for k, replica in enumerate(ensemble.replicas):
        torch.save(replica.state_dict(), tmp / f"replica_{k}.pt")
    np.save(tmp / "reference.npy", ensemble.reference)
    (tmp / "split.json").write_text(json.dumps(ensemble.split, indent=1, default=_json_default))
    # the split is checksummed too: without it the leakage check of evaluation would be skipped; the
    # loss history is not (a damaged one only loses the loss curves, see _read_history)
    checksums = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
    checksums["genes"] = _genes_sha256(ensemble.genes)
    ensemble.history.to_csv(tmp / "history.csv", index=False)
    manifest = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model_config": ensemble.model_config.to_dict(),
        "train_config": ensemble.train_config.to_dict(),
        "pair_config": ensemble.pair_config.to_dict(),
        "n_genes": ensemble.n_genes,
        "genes": ensemble.genes.tolist(),
        "replicas": ensemble.info.get("replicas", [{"replica": k} for k in range(len(ensemble.replicas))]),
        "info": {k: v for k, v in ensemble.info.items() if k != "replicas"},
        "provenance": provenance,
        "sha256": checksums,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))  # last


def _read_manifest(path: Path) -> dict:
    if path.is_file():
        msg = (f"'{path}' is a file, not a run folder: give the folder `python -m lazynet_core train --out` "
               "wrote (e.g. runs/demo); a screen (.h5ad) goes to --data.")
        raise RunError(msg)
    if not path.is_dir():
        msg = f"Run directory '{path}' does not exist; train one with `python -m lazynet_core train`."
        raise RunError(msg)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        msg = (
            f"'{path}' has no {MANIFEST}: it is not a LazyNet run or it was half-written "
            "(training cancelled or crashed). Delete it and train again."
        )
        raise RunError(msg)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"'{manifest_path}' is not valid JSON ({exc}); the run is damaged, train it again."
        raise RunError(msg) from exc
    if not isinstance(manifest, dict):
        kinds = {list: "list", str: "string", bool: "true/false", type(None): "null"}
        kind = kinds.get(type(manifest), "number")
        msg = (
            f"'{manifest_path}' holds a JSON {kind} ({json.dumps(manifest)[:40]}), not the run's settings "
            "(a JSON object): the run directory is damaged. Train it again (or restore "
            f"{MANIFEST} from a copy of the run)."
        )
        raise RunError(msg)
    missing = [k for k in ("model_config", "genes", "replicas") if k not in manifest]
    version = manifest.get("format_version")
    if missing and version == FORMAT_VERSION:
        msg = (
            f"'{manifest_path}' lacks {missing}: the run directory is damaged. Train it again (or restore "
            f"{MANIFEST} from a copy of the run)."
        )
        raise RunError(msg)
    if version != FORMAT_VERSION:
        msg = (
            f"Run '{path}' has format_version {version!r}; this LazyNet ({__version__}) reads "
            f"version {FORMAT_VERSION}. Retrain with this version."
        )
        raise RunError(msg)
    return manifest


def _verify_checksums(path: Path, manifest: dict, genes: np.ndarray) -> None:
    """Every file and the gene order must match the manifest's SHA-256 (runs written since 0.2)."""
    sums = manifest.get("sha256")
    if not sums:
        return  # an older run: nothing to verify against
    if sums.get("genes") and sums["genes"] != _genes_sha256(genes):
        msg = (
            f"The gene list in '{path / MANIFEST}' does not match its checksum: it was reordered or edited, "
            "so weights and genes no longer line up. Restore the original file or train again."
        )
        raise RunError(msg)
    for name, expected in sums.items():
        if name == "genes":
            continue
        file = path / name
        if not file.is_file():
            raise RunError(f"'{file}' is missing from the run; it is damaged, train it again.")
        if _sha256(file) != expected:
            msg = (
                f"'{file}' does not match the run's manifest (SHA-256 differs): it was replaced (e.g. by "
                "another run's file) or damaged. Restore it or train again."
            )
            raise RunError(msg)


def _read_history(file: Path) -> pd.DataFrame:
    """The loss history, or an empty table where it is missing or unreadable (it only draws the curves)."""
    if not file.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(file)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return pd.DataFrame()


def _read_split(file: Path) -> dict:
    """The run's split (which perturbations and cells were held out); refused where it is damaged."""
    if not file.is_file():
        return {}  # a run saved before splits were kept (newer runs checksum it: a missing one is refused)
    try:
        split = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = (f"'{file}' is not valid JSON ({exc}): the run's record of what was held out is damaged, so "
               "its held-out sets cannot be trusted. Restore it from a copy of the run or train again.")
        raise RunError(msg) from exc
    if not isinstance(split, dict):
        msg = (f"'{file}' holds a JSON {type(split).__name__}, not the run's split (a JSON object): the run "
               "is damaged. Restore it from a copy of the run or train again.")
        raise RunError(msg)
    return split


def load_run(path: str | os.PathLike) -> Ensemble:
    """Load a run written by :func:`save_run`; predictions are reproduced bit for bit.

    Raises
    ------
    RunError
        If the directory is missing, half-written, damaged or of another format version.
    """
    path = Path(path).expanduser()
    recover_interrupted(path)
    manifest = _read_manifest(path)
    model_config = ModelConfig.from_dict(manifest["model_config"])
    genes = np.asarray(manifest["genes"], dtype=str)
    if len(set(genes.tolist())) != len(genes):
        repeated = sorted({g for g in genes.tolist() if (genes == g).sum() > 1})[:5]
        msg = (f"The gene list in '{path / MANIFEST}' repeats {', '.join(repeated)}: it was edited, so "
               "weights and genes no longer line up. Restore the original file or train again.")
        raise RunError(msg)
    _verify_checksums(path, manifest, genes)
    replicas = []
    for k, _rec in enumerate(manifest["replicas"]):
        file = path / f"replica_{k}.pt"
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
            model = LazyNet(len(genes), model_config)
            model.load_state_dict(state)
        except Exception as exc:  # torch raises many types for a damaged file (pickle, zip, size)
            msg = f"Could not load '{file}' ({type(exc).__name__}: {exc}); the run is damaged, train again."
            raise RunError(msg) from exc
        bad = [name for name, value in state.items() if not torch.isfinite(value).all()]
        if bad:
            msg = (
                f"'{file}' holds NaN or infinite weights ({', '.join(bad[:4])}); the run is damaged or was "
                "edited. Train it again."
            )
            raise RunError(msg)
        replicas.append(model)
    history = _read_history(path / "history.csv")
    split = _read_split(path / "split.json")
    info = dict(
        manifest.get("info", {}),
        replicas=manifest["replicas"],
        path=str(path),
        provenance=manifest.get("provenance", {}),
        created=manifest.get("created"),
    )
    return Ensemble(
        replicas=replicas,
        genes=genes,
        reference=np.load(path / "reference.npy"),
        model_config=model_config,
        train_config=TrainConfig.from_dict(manifest["train_config"]),
        pair_config=PairConfig.from_dict(
            {"reference_fraction": 0.0, **manifest["pair_config"]}
        ),  # pre-reference runs
        history=history,
        split=split,
        info=info,
    )


def check_genes(ensemble: Ensemble, genes) -> None:
    """Raise ``RunError`` when ``genes`` (a dataset's var_names) differ from the run's genes."""
    genes = np.asarray(list(genes), dtype=str)
    if len(genes) == ensemble.n_genes and np.array_equal(genes, ensemble.genes):
        return
    present = set(genes.tolist())
    missing = [str(g) for g in ensemble.genes if g not in present]
    source = ensemble.info.get("provenance", {}).get("source") if isinstance(ensemble.info, dict) else None
    if missing:
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        what = (f"{len(missing)} of the run's genes are not in the dataset ({shown}; reading leaves out "
                "genes never detected in its cells)")
    else:
        what = "the dataset holds the run's genes in another order or with others besides"
    msg = (
        f"This run was trained on {ensemble.n_genes} genes and the dataset has {len(genes)}: {what}. "
        "A run predicts only the genes it was trained on: load the screen it was trained on"
        + (f" ({Path(str(source)).name})" if source else "")
        + " or train a new run on this one."
    )
    raise RunError(msg)


def check_split(ensemble: Ensemble, pairs) -> None:
    """Raise ``RunError`` when ``pairs`` do not reproduce the split the run was trained on.

    Rebuilding pairs from another file, or from the same file read with other options, would
    otherwise score training cells as held out without a word.
    """
    stored = ensemble.split or {}
    if not stored:
        return
    rebuilt = pairs.split_record()
    for key in ("test_perturbations", "n_cells_by_role", "cell_roles_sha1"):
        if key in stored and stored[key] != rebuilt[key]:
            msg = (
                f"This screen does not reproduce the run's train/test split ({key} differ): it is "
                "not the screen the run was trained on, or it was read with other options "
                "(perturbation column, control, gene universe). Load the original screen."
            )
            raise RunError(msg)


def list_runs(root: str | os.PathLike = "runs") -> pd.DataFrame:
    """Table of the complete runs under ``root`` (half-written directories are skipped).

    ``best_loss`` is the replicas' mean best monitored loss and ``loss_on`` what it was measured on:
    ``"validation"`` cells when the run had a validation split, else ``"train"`` (early stopping and
    the kept checkpoint follow the same loss). ``genes_sha256`` is the checksum of the run's gene list
    (None for runs saved before checksums), comparable with :func:`genes_checksum` of a screen's genes.
    """
    rows = []
    root = Path(root).expanduser()
    leftovers = [c.name for c in root.iterdir() if c.name.startswith(".")] if root.is_dir() else []
    names = {n[1:].split(".tmp-")[0].split(".old-")[0] for n in leftovers if ".tmp-" in n or ".old-" in n}
    for name in sorted(n for n in names if n):
        recover_interrupted(root / name)  # interrupted saves are finished or undone before listing
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.name.startswith(".") or not (child / MANIFEST).is_file():
            continue
        try:
            m = _read_manifest(child)
        except RunError:
            continue
        losses = [r.get("best_loss") for r in m.get("replicas", []) if r.get("best_loss") is not None]
        sets = {r.get("best_loss_on") for r in m.get("replicas", []) if r.get("best_loss_on")}
        rows.append(
            dict(
                name=child.name,
                path=str(child),
                created=m.get("created"),
                n_genes=m.get("n_genes"),
                replicas=len(m.get("replicas", [])),
                best_loss=float(np.mean(losses)) if losses else None,
                loss_on=" / ".join(sorted(sets)) if sets else None,  # None: a run saved before it was kept
                source=m.get("provenance", {}).get("source"),
                genes_sha256=(m.get("sha256") or {}).get("genes"),
            )
        )
    columns = ["name", "path", "created", "n_genes", "replicas", "best_loss", "loss_on", "source",
               "genes_sha256"]
    return pd.DataFrame(rows, columns=columns)
