"""Genome-wide-shaped screen (issue 14): generated and prepared in chunks, streamed, trained on Ray and threads.

Three subcommands, each writing its own JSON so that the long generation can run on its own:

``generate``
    A synthetic log-linear screen (the ``write_paper_screen`` model: random sparse DAG, 2/3 CRISPRi
    singles + combinations, 10 % controls) at ``--cells`` × ``--genes`` (default 500k × 8k, 1,000
    perturbations), simulated ``--chunk`` cells at a time and written **already prepared** (what
    ``read_screen`` writes: log1p(CP10k) CSR float32 ``X`` and the ``lazynet_*`` obs columns) with
    :func:`lazynet_core.streaming.write_h5ad_in_chunks`. Normalisation and log are per cell, so
    per-chunk preparation equals ``read_screen`` on the whole matrix (``check`` verifies it). The whole
    matrix is never in memory. ``--library`` (UMIs per cell, default 1,200) sets the sparsity: ≈ 7 %
    nonzero at 8k genes. Cached in ``benchmarks/cache/`` (git-ignored).
``check``
    The same generator at a small size, written twice: raw counts (then ``read_screen``, in memory) and
    prepared in chunks; ``X`` and the obs columns are compared (bit for bit).
``run``
    :func:`lazynet_core.streaming.stream_pairs` (one backed pass, control rows + per-(perturbation, role)
    means), then ``train_ensemble`` with the thread backend and with ``backend="ray"`` (local Ray,
    ``--workers``), short (``--replicas``, ``--epochs``, ``--resamples``). Peak RSS of every process:
    the driver (sampled per stage, and ``ru_maxrss``), each Ray worker (``ru_maxrss`` reported by the
    task) and every process of the local Ray (``VmHWM`` from ``/proc``, sampled every second).

Usage::

    PYTHONPATH=. python benchmarks/genome_scale.py check
    PYTHONPATH=. nohup python benchmarks/genome_scale.py generate > benchmarks/cache/genome_generate.log 2>&1 &
    PYTHONPATH=. nohup python benchmarks/genome_scale.py run > benchmarks/cache/genome_run.log 2>&1 &

Writes ``benchmarks/results/genome_scale_{generate,check,run}[_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import (  # noqa: E402
    CACHE,
    StageMeter,
    add_training_arguments,
    machine_info,
    maxrss_gb,
    plan_training,
    train_backends,
    write_json,
)


def screen_path(cells: int, genes: int, perts: int, library: float, seed: int, kind: str = "prepared") -> Path:
    return CACHE / f"genome_{cells}x{genes}_p{perts}_lib{int(library)}_s{seed}_{kind}.h5ad"


def _simulator(cells: int, genes: int, perts: int, library: float, seed: int):
    """Network, obs and count model exactly as ``datasets.write_paper_screen`` draws them (plus library)."""
    from lazynet_core import datasets as ds

    spec = ds.paper_screen_spec(n_cells=cells, n_genes=genes, n_perturbations=perts, library=library)
    rng = np.random.default_rng(seed)
    net = ds._paper_network(rng, ds._paper_genes(genes), spec)
    obs = ds._paper_obs(rng, net, spec)
    sim = ds._LogLinear(net, *ds._baseline(rng, genes, sd=spec["baseline_sd"]), library=spec["library"])
    params = {k: v for k, v in spec.items() if k not in ("n_cells", "n_genes", "n_perturbations")}
    synthetic = ds._synthetic(
        "genome_scale.py (write_paper_screen model, chunked)", seed, obs, genes, "log-linear", **params
    )
    return net, obs, sim, synthetic


def _prepared_obs(obs):
    """The ``lazynet_*`` columns ``read_screen`` adds for this synthetic design (checked by ``check``)."""
    import pandas as pd

    from lazynet_core.datasets import CONTROL

    out = obs.copy()
    is_control = (out["perturbation"] == CONTROL).to_numpy()
    out["lazynet_perturbation"] = np.where(is_control, "control", out["perturbation"].astype(str))
    out["lazynet_is_control"] = is_control
    out["lazynet_modality"] = out["modality"].astype(str)
    for col in ("perturbation", "modality", "lazynet_perturbation", "lazynet_modality"):
        out[col] = pd.Categorical(out[col].astype(str))
    return out


def _log_normalise(counts):
    """``sc.pp.normalize_total(target_sum=1e4)`` + ``sc.pp.log1p`` on one chunk (both are per cell)."""
    import anndata
    import scanpy as sc

    a = anndata.AnnData(X=counts)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a.X


def _chunks(obs, sim, seed: int, chunk: int, stats: dict, prepared: bool = True):
    t_sim = t_norm = 0.0
    for i, start in enumerate(range(0, len(obs), chunk)):
        t0 = time.perf_counter()
        counts = sim.counts(np.random.default_rng([seed, i]), obs.iloc[start : start + chunk])
        t1 = time.perf_counter()
        stats["zero_count_cells"] += int((np.diff(counts.indptr) == 0).sum())
        stats["umis"] += float(counts.sum())
        stats["cells_per_gene"] += np.bincount(counts.indices, minlength=counts.shape[1])
        out = _log_normalise(counts) if prepared else counts
        t_sim, t_norm = t_sim + t1 - t0, t_norm + time.perf_counter() - t1
        stats.update(simulate_s=t_sim, normalise_s=t_norm, peak_rss_gb=maxrss_gb(), chunks_done=i + 1)
        if i % 10 == 0:
            print(f"  chunk {i}: {start + counts.shape[0]:,} cells, sim {t_sim:.0f} s, norm {t_norm:.0f} s, "
                  f"RSS peak {maxrss_gb():.2f} GB, load {os.getloadavg()[0]:.1f}", flush=True)
        yield out


def write_screen(path: Path, cells: int, genes: int, perts: int, library: float, seed: int, chunk: int,
                 prepared: bool = True) -> dict[str, Any]:
    """Generate and write the screen in chunks; returns the writer's and the generator's figures."""
    from lazynet_core.streaming import write_h5ad_in_chunks

    net, obs, sim, synthetic = _simulator(cells, genes, perts, library, seed)
    synthetic["chunk_size"] = int(chunk)
    var = __import__("pandas").DataFrame(index=net.genes.astype(str))
    uns = {"planted_network": net.to_uns(), "synthetic": synthetic}
    if prepared:
        obs = _prepared_obs(obs)
        uns["lazynet"] = {
            "pert_key": "perturbation", "control": "non-targeting", "n_cells": int(cells), "n_genes": int(genes),
            "n_perturbations": int(obs.loc[~obs["lazynet_is_control"], "lazynet_perturbation"].nunique()),
            "source": "benchmarks/genome_scale.py (prepared in chunks)", "input_was_log": False,
            "warnings": [],
        }
    stats = {"zero_count_cells": 0, "umis": 0.0, "cells_per_gene": np.zeros(genes, dtype=np.int64)}
    info = write_h5ad_in_chunks(path, _chunks(obs, sim, seed, chunk, stats, prepared), obs=obs, var=var, uns=uns)
    detected = stats.pop("cells_per_gene")
    stats["genes_never_detected"] = int((detected == 0).sum())  # read_screen(genes="all") would drop them
    stats["cells_per_gene_min_median"] = [int(detected.min()), float(np.median(detected))]
    return {**info, **stats, "n_perturbations": len(np.unique(obs["perturbation"])) - 1,
            "density": info["nnz"] / (cells * genes), "nnz_per_cell": info["nnz"] / cells,
            "umis_per_cell": stats["umis"] / cells, "file_gb": info["bytes"] / 1e9}


# ---- subcommands ----------------------------------------------------------------------------------
def cmd_generate(args) -> dict:
    path = screen_path(args.cells, args.genes, args.perturbations, args.library, args.seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"generate: {args.cells:,} cells x {args.genes:,} genes, {args.perturbations} perturbations, "
          f"library {args.library:.0f}, chunks of {args.chunk} -> {path}", flush=True)
    if path.exists() and not args.force:
        print("  cached; --force to regenerate")
        return json.loads(path.with_suffix(".json").read_text())
    free = os.statvfs(CACHE)
    t0 = time.perf_counter()
    info = write_screen(path, args.cells, args.genes, args.perturbations, args.library, args.seed, args.chunk)
    result = {"benchmark": "genome_scale_generate", "path": str(path), "wall_s": time.perf_counter() - t0,
              "free_disk_gb_before": free.f_bavail * free.f_frsize / 1e9, **info,
              "driver_peak_rss_gb": maxrss_gb(), "args": vars(args), "machine": machine_info()}
    path.with_suffix(".json").write_text(json.dumps(result, default=str))
    write_json(_name("genome_scale_generate", args.tag), result)
    return result


def cmd_check(args) -> dict:
    """Chunked preparation == read_screen on the whole matrix, at a small size."""
    import anndata
    import pandas as pd

    from lazynet_core.data import read_screen

    cells, genes, perts = args.cells, args.genes, args.perturbations
    raw = screen_path(cells, genes, perts, args.library, args.seed, "raw")
    prep = screen_path(cells, genes, perts, args.library, args.seed, "prepared")
    CACHE.mkdir(parents=True, exist_ok=True)
    a = write_screen(raw, cells, genes, perts, args.library, args.seed, args.chunk, prepared=False)
    b = write_screen(prep, cells, genes, perts, args.library, args.seed, args.chunk, prepared=True)
    ref = read_screen(raw)
    got = anndata.read_h5ad(prep)
    cols = ["lazynet_perturbation", "lazynet_is_control", "lazynet_modality"]
    same_obs = all(
        np.array_equal(ref.obs[c].astype(str).to_numpy(), got.obs[c].astype(str).to_numpy()) for c in cols
    )
    got = got[:, ref.var_names].copy()  # read_screen(genes="all") drops genes detected in no cell
    diff = abs(ref.X - got.X)
    result = {
        "benchmark": "genome_scale_check", "size": [cells, genes, perts], "library": args.library,
        "chunk": args.chunk, "raw": a, "prepared": b,
        "read_screen_shape": list(ref.shape), "chunked_shape": [cells, genes],
        "genes_dropped_by_read_screen": int(genes - ref.n_vars),
        "same_var_names": bool(pd.Index(ref.var_names).equals(pd.Index(got.var_names))),
        "same_obs_columns": bool(same_obs),
        "x_max_abs_diff": float(diff.max()) if diff.nnz else 0.0,
        "x_identical": bool(diff.nnz == 0 and ref.X.nnz == got.X.nnz),
        "machine": machine_info(),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("raw", "prepared", "machine")}, indent=1))
    for path in (raw, prep):
        path.unlink(missing_ok=True)
    write_json(_name("genome_scale_check", args.tag), result)
    return result


def cmd_run(args) -> dict:
    from lazynet_core.config import PairConfig
    from lazynet_core.streaming import stream_pairs

    path = Path(args.path) if args.path else screen_path(
        args.cells, args.genes, args.perturbations, args.library, args.seed
    )
    meter = StageMeter(interval=0.1)
    result: dict[str, Any] = {"benchmark": "genome_scale_run", "path": str(path), "args": vars(args),
                              "file_gb": path.stat().st_size / 1e9, "load_avg_start": list(os.getloadavg())}
    gen_json = path.with_suffix(".json")
    if gen_json.exists():
        gen = json.loads(gen_json.read_text())
        result["screen"] = {k: gen.get(k) for k in ("rows", "nnz", "density", "nnz_per_cell", "umis_per_cell",
                                                    "n_perturbations", "file_gb", "wall_s")}
    pair_config = PairConfig(resamples=args.resamples)
    print(f"run: {path.name}; {args.replicas} replicas x {args.epochs} epochs, resamples {args.resamples}, "
          f"hidden {args.hidden}, {args.workers} Ray workers", flush=True)
    with meter.stage("stream") as rec:
        pairs = stream_pairs(path, pair_config, chunk_rows=args.chunk_rows)
        rec.update(pairs._cache["stream_info"])
    result["stream"] = dict(pairs._cache["stream_info"])
    model_config, train_config, plan = plan_training(pairs, hidden=args.hidden, replicas=args.replicas,
                                                     epochs=args.epochs, batch_size=args.batch_size, meter=meter)
    result.update(plan)
    result["pairs_object_gb"] = _pairs_bytes(pairs) / 1e9

    def show(replica, epoch, train_loss, val_loss, elapsed):
        print(f"    replica {replica + 1} epoch {epoch + 1}: train {train_loss:.5f} ({elapsed:.0f} s, "
              f"load {os.getloadavg()[0]:.1f})", flush=True)

    result["train"], _ = train_backends(pairs, model_config, train_config, args.backends, workers=args.workers,
                                        meter=meter, on_epoch=show, echo=True)
    meter.close()
    result["stages"] = meter.records
    result["driver_peak_rss_gb"] = max(r["peak_rss_gb"] for r in meter.records)
    result["driver_ru_maxrss_gb"] = maxrss_gb()
    result["machine"] = machine_info()
    tr = result["train"]
    print(json.dumps({k: v for k, v in tr.items() if k != "losses"}, indent=1, default=str))
    write_json(_name("genome_scale_run", args.tag), result)
    return result


def _pairs_bytes(pairs) -> int:
    total = sum(getattr(pairs.X, n).nbytes for n in ("data", "indices", "indptr"))
    return total + sum(v.nbytes for v in pairs._cache.values() if isinstance(v, np.ndarray))


def _name(base: str, tag: str | None) -> str:
    return f"{base}_{tag}" if tag else base


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("generate", "check", "run"))
    parser.add_argument("--cells", type=int, default=None, help="default 500,000 (check: 6,000)")
    parser.add_argument("--genes", type=int, default=None, help="default 8,000 (check: 2,000)")
    parser.add_argument("--perturbations", type=int, default=None, help="default 1,000 (check: 100)")
    parser.add_argument("--library", type=float, default=1200.0, help="mean UMIs per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=4000, help="cells simulated per chunk")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--path", default=None, help="run: a prepared .h5ad (default: the generated one)")
    parser.add_argument("--backends", nargs="+", default=["thread", "ray"], choices=("thread", "ray"))
    add_training_arguments(parser, resamples=16)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    small = args.command == "check"
    for key, big, little in (("cells", 500_000, 6_000), ("genes", 8_000, 2_000), ("perturbations", 1_000, 100)):
        if getattr(args, key) is None:
            setattr(args, key, little if small else big)
    if small and args.chunk == 4000:
        args.chunk = 1000
    return {"generate": cmd_generate, "check": cmd_check, "run": cmd_run}[args.command](args)


if __name__ == "__main__":
    main()
