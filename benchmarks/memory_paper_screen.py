"""Peak memory and wall time of the paper-scale data path (issue 4: < 8 GB peak).

Stages: generate the synthetic screen (``datasets.write_paper_screen``, cached in
``benchmarks/cache/`` and reused), read it (``data.read_screen``), build pairs
(``pairs.make_pairs``), draw one training epoch (``Pairs.sample_epoch``) and densify a few
mini-batches (``Pairs.batch``), then the evaluation's observational baselines for the held-out single
targets: control covariance, pooled covariance (the ``anchored_pooled`` start, which reads every
training cell) and ``metrics.baseline_predictions`` whole (what an evaluation computes beside the
model), and ``observational.slope_agreement`` (the Train page's line on the screen's co-variation).
Each stage reports wall time and its peak RSS (sampled every 50 ms
from /proc/self/status) next to the process high-water mark (``ru_maxrss``).

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/memory_paper_screen.py            # 53k cells x 18k genes
    PYTHONPATH=. python benchmarks/memory_paper_screen.py --quick    # 5k x 2k smoke run

Writes ``benchmarks/results/memory_paper_screen[_quick].json``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import (
    StageMeter,
    ensure_paper_screen,
    fmt_table,
    machine_info,
    maxrss_gb,
    write_json,
)

FULL = {"n_cells": 53_000, "n_genes": 18_000, "n_perturbations": 1_000}
QUICK = {"n_cells": 5_000, "n_genes": 2_000, "n_perturbations": 200}
TARGET_GB = 8.0


def _baseline_stages(pairs, meter: StageMeter) -> None:
    """Time the covariance baselines and every baseline on the held-out single targets."""
    from lazynet_core.metrics import _control_covariance_deltas, baseline_predictions

    evals = np.array([p for p in pairs.evaluation_perturbations("test") if "+" not in pairs.perturbations[p]])
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    pre = np.stack([pairs.pre_state(int(p)) for p in evals]).astype(np.float64)
    targets = [np.asarray(pairs.pert_targets[p], dtype=int) for p in evals]
    for cells in ("controls", "pooled"):
        name = "control_covariance" if cells == "controls" else "pooled_covariance"
        with meter.stage(name, n_targets=len(evals)) as rec:
            out = _control_covariance_deltas(pairs, targets, pre - base, base, cells=cells)
            rec.update(finite_rows=int(np.isfinite(out).all(axis=1).sum()))
        del out
        gc.collect()
    with meter.stage("baseline_predictions", n_targets=len(evals)) as rec:
        preds = baseline_predictions(pairs, perturbations=evals)
        rec.update(methods=sorted(preds))
    del preds
    with meter.stage("slope_agreement") as rec:  # the Train page's co-variation line
        from lazynet_core.observational import slope_agreement

        agreement = slope_agreement(pairs)
        rec.update(n_half=agreement.n_half, n_genes=agreement.n_genes,
                   controls_vs_controls=agreement.controls_vs_controls)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5k cells x 2k genes")
    parser.add_argument("--batches", type=int, default=5, help="mini-batches to densify")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backed", default="auto", help="read_screen backed= ('auto', 'true', 'false')")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.pairs import make_pairs

    size = QUICK if args.quick else FULL
    backed = {"true": True, "false": False}.get(str(args.backed).lower(), args.backed)
    print(f"memory_paper_screen: {size['n_cells']} cells x {size['n_genes']} genes, "
          f"{size['n_perturbations']} single perturbations; target peak < {TARGET_GB} GB")
    meter = StageMeter()
    t_all = time.perf_counter()
    path, generated = ensure_paper_screen(**size, seed=args.seed, meter=meter)
    file_mb = path.stat().st_size / 1e6
    print(f"  screen file {path.name}: {file_mb:.0f} MB ({'generated' if generated else 'reused from cache'})")

    with meter.stage("read_screen") as rec:
        adata = read_screen(path, backed=backed)
        X = adata.X
        rec.update(n_cells=int(adata.n_obs), n_genes=int(adata.n_vars), nnz=int(X.nnz),
                   density=float(X.nnz / (X.shape[0] * X.shape[1])),
                   csr_gb=(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e9)
    gc.collect()
    with meter.stage("make_pairs") as rec:
        pairs = make_pairs(adata, PairConfig(seed=args.seed))
        rec.update(n_perturbations=int(len(pairs.perturbations)), n_test_perts=int(pairs.test_perts.sum()),
                   shares_matrix=bool(pairs.X is adata.X))
    with meter.stage("sample_epoch") as rec:
        epoch = pairs.sample_epoch(np.random.default_rng(args.seed))
        rec.update(n_pairs=len(epoch), k=int(epoch.pre_idx.shape[1]))
    with meter.stage("densify_batches", batches=args.batches, batch_size=args.batch_size) as rec:
        per = []
        for b in range(args.batches):
            t0 = time.perf_counter()
            pre, post = pairs.batch(epoch, slice(b * args.batch_size, (b + 1) * args.batch_size))
            per.append(time.perf_counter() - t0)
        rec.update(seconds_per_batch=float(np.median(per)), batch_shape=list(pre.shape),
                   first_batch_s=per[0])
    _baseline_stages(pairs, meter)
    meter.close()
    total = time.perf_counter() - t_all
    peak = max(r["peak_rss_gb"] for r in meter.records)
    result = {
        "benchmark": "memory_paper_screen",
        "mode": "quick" if args.quick else "full",
        "size": size,
        "screen_file": path.name,
        "screen_file_mb": file_mb,
        "generated_this_run": generated,
        "stages": meter.records,
        "peak_rss_gb": peak,
        "ru_maxrss_gb": maxrss_gb(),
        "total_seconds": total,
        "target_peak_gb": TARGET_GB,
        "meets_target": bool(max(peak, maxrss_gb()) < TARGET_GB),
        "machine": machine_info(),
    }
    print()
    print(fmt_table(meter.records, ["stage", "seconds", "rss_start_gb", "rss_end_gb", "peak_rss_gb", "maxrss_gb"]))
    print(f"\npeak RSS {peak:.2f} GB (sampled), ru_maxrss {maxrss_gb():.2f} GB; target < {TARGET_GB} GB: "
          f"{'met' if result['meets_target'] else 'NOT met'}; total {total:.1f} s")
    write_json("memory_paper_screen_quick" if args.quick else "memory_paper_screen", result)
    return result


if __name__ == "__main__":
    main()
