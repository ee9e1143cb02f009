"""Speed at paper scale (issue 6.2): loading, pairs, epochs, ensemble, GFLOP/s vs roofline, Jacobian, BFS.

On the synthetic paper-scale screen (53k cells x 18k genes, ``datasets.write_paper_screen``, cached
in ``benchmarks/cache/``; ``--quick``: 5k x 2k) this measures, in one process with
``torch.set_num_threads(--threads)`` (default 2):

1. generation (only when the cache is empty; otherwise the cached file is reused and its
   generation time is taken from ``results/memory_paper_screen.json`` if present, labelled so),
   ``read_screen``, ``make_pairs``: wall time and peak RSS;
2. a matmul roofline: ``torch.mm`` of exactly the training step's shapes (3 forward, 3 grad-input,
   3 grad-weight products for depth 1), same threads, GFLOP/s = 2·m·n·k per product / time;
3. the isolated model step (forward + backward + Adam on one pre-densified mini-batch) and the
   full training loop of ``train.train_ensemble`` (3 replicas, hidden ``--hidden``, time budget
   ``--time-budget``): FLOPs per step counted as ``6 · B · (G·H + H·H + H·G)``; seconds per epoch;
   achieved GFLOP/s and its ratio to the roofline;
4. one Jacobian column (``jacobian.column_provider``; median of several genes, cold and warm) and
   ``jacobian.jacobian_columns`` for one gene;
5. the 32×4 expansion from the 7 ferroptosis seeds (``modules.DEFAULT_SEEDS``) with
   ``network.expand_from_seeds`` and per-level caps (``--level-caps``), sizes reported.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/scale.py --quick
    PYTHONPATH=. python benchmarks/scale.py                       # full: 15 min budget, 40 epochs max
    PYTHONPATH=. python benchmarks/scale.py --epochs 1            # reduced: per-epoch time, extrapolated

When training stops on ``--epochs`` before converging, the time to a converged ensemble is
*extrapolated* (seconds per epoch × epochs) and labelled as such in the output and JSON.
Writes ``benchmarks/results/scale[_quick|_<tag>].json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import (
    RESULTS,
    StageMeter,
    ensure_paper_screen,
    fmt_table,
    machine_info,
    maxrss_gb,
    write_json,
)

FULL = {"n_cells": 53_000, "n_genes": 18_000, "n_perturbations": 1_000}
QUICK = {"n_cells": 5_000, "n_genes": 2_000, "n_perturbations": 200}


def step_flops(batch: int, genes: int, hidden: int) -> float:
    """Forward + backward FLOPs of one depth-1 step: 6 · B · (G·H + H·H + H·G)."""
    return 6.0 * batch * (genes * hidden + hidden * hidden + hidden * genes)


def matmul_roofline(batch: int, genes: int, hidden: int, *, seconds: float = 3.0) -> dict[str, Any]:
    """GFLOP/s of torch.mm over the 9 products of a depth-1 training step (same shapes, same threads)."""
    import torch

    B, G, H = batch, genes, hidden
    shapes = [  # (m, k, n): forward, grad-input (x @ W^T), grad-weight (a^T @ b)
        (B, G, H), (B, H, H), (B, H, G),
        (B, H, G), (B, H, H), (B, G, H),
        (H, B, G), (H, B, H), (G, B, H),
    ]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2.0 * m * k * n for m, k, n in shapes)
    for a, b in mats:  # warm up
        torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a, b in mats:
            torch.mm(a, b)
        reps += 1
    dt = (time.perf_counter() - t0) / reps
    # the biggest single product alone (the best case)
    a, b = mats[0]
    r2, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds / 2:
        torch.mm(a, b)
        r2 += 1
    big = 2.0 * B * G * H * r2 / (time.perf_counter() - t1) / 1e9
    return {"gflops": flops / dt / 1e9, "seconds_per_step_set": dt, "flops_per_set": flops,
            "largest_product_gflops": big, "threads": torch.get_num_threads()}


def model_step_rate(pairs: Any, hidden: int, batch: int, *, seconds: float = 5.0) -> dict[str, Any]:
    """Forward + backward + Adam on one pre-densified batch (no data path): steps/s and GFLOP/s."""
    import torch

    from lazynet_core.config import ModelConfig
    from lazynet_core.model import LazyNet

    torch.set_flush_denormal(True)
    epoch = pairs.sample_epoch(np.random.default_rng(123))
    pre, post = (torch.from_numpy(a) for a in pairs.batch(epoch, slice(0, batch)))
    scale = torch.from_numpy(pairs.gene_scale())
    model = LazyNet(pairs.n_genes, ModelConfig(hidden=hidden))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def one():
        loss = (((model.step(pre) - post) / scale) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        one()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one()
        n += 1
    dt = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds / 2:
        pairs.batch(epoch, slice((k % 20) * batch, (k % 20 + 1) * batch))
        k += 1
    densify = (time.perf_counter() - t0) / k
    return {"seconds_per_step": dt, "gflops": step_flops(batch, pairs.n_genes, hidden) / dt / 1e9,
            "densify_seconds_per_batch": densify, "steps_timed": n}


def jacobian_timings(ensemble: Any, genes: list[str]) -> dict[str, Any]:
    """One Jacobian column: provider cold (first call) and per-gene, plus jacobian_columns for one gene."""
    from lazynet_core import jacobian

    prov = jacobian.column_provider(ensemble)
    times = []
    for g in genes:
        t0 = time.perf_counter()
        prov(g, "out")
        times.append(time.perf_counter() - t0)
    idx = int(ensemble.gene_index([genes[-1]])[0])
    jc = []
    for _ in range(5):
        t0 = time.perf_counter()
        jacobian.jacobian_columns(ensemble, [idx])
        jc.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    jacobian.jacobian_columns(ensemble, list(range(64)))
    batch64 = time.perf_counter() - t0
    return {"provider_first_call_s": times[0], "provider_median_s": float(np.median(times[1:])),
            "provider_times_s": times, "jacobian_columns_one_median_s": float(np.median(jc)),
            "jacobian_columns_64_s": batch64, "per_column_in_batch_of_64_s": batch64 / 64,
            "replicas": len(ensemble.replicas)}


def expansion(ensemble: Any, level_caps: list[int] | None, breadth: int, depth: int) -> dict[str, Any]:
    from lazynet_core import jacobian, network
    from lazynet_core.modules import DEFAULT_SEEDS

    seeds = list(DEFAULT_SEEDS["ferroptosis"])
    prov = jacobian.column_provider(ensemble)
    t0 = time.perf_counter()
    G = network.expand_from_seeds(prov, seeds, breadth=breadth, depth=depth, level_caps=level_caps,
                                  genes=list(ensemble.genes))
    seconds = time.perf_counter() - t0
    summary = network.subgraph_summary(G)
    return {"seconds": seconds, "seeds": seeds, "breadth": breadth, "depth": depth, "level_caps": level_caps,
            **summary, "columns_computed": len(prov._full) if hasattr(prov, "_full") else None}


PAIR_RESAMPLES_DEFAULT = 64


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5k cells x 2k genes")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40, help="max epochs per replica (TrainConfig.epochs)")
    parser.add_argument("--time-budget", type=float, default=900.0, help="seconds for the whole ensemble")
    parser.add_argument("--extrapolate-epochs", type=int, default=40,
                        help="epochs per replica assumed when extrapolating a run that did not converge")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=PAIR_RESAMPLES_DEFAULT,
                        help="pairs per perturbation per epoch (PairConfig.resamples); with 1,000 "
                             "perturbations the default 64 makes a 58,880-pair epoch")
    parser.add_argument("--level-caps", default="224,1000,2000,2000",
                        help="comma-separated new genes per BFS level, or 'none'")
    parser.add_argument("--breadth", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--skip-train", action="store_true", help="stop after roofline and model step")
    parser.add_argument("--tag", default=None, help="results file suffix")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.data import read_screen
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import planned_steps, train_ensemble

    size = QUICK if args.quick else FULL
    name = "scale_quick" if args.quick else "scale"
    if args.tag:
        name = f"{name}_{args.tag}"
    B, H = args.batch_size, args.hidden
    print(f"scale: {size['n_cells']} cells x {size['n_genes']} genes, hidden {H}, batch {B}, "
          f"{args.replicas} replicas, threads {torch.get_num_threads()}")
    meter = StageMeter()
    result: dict[str, Any] = {"benchmark": "scale", "mode": "quick" if args.quick else "full", "size": size,
                              "args": vars(args), "model_config": ModelConfig(hidden=H).to_dict()}
    path, generated = ensure_paper_screen(**size, meter=meter)
    if not generated:
        mem = RESULTS / ("memory_paper_screen_quick.json" if args.quick else "memory_paper_screen.json")
        gen = None
        if mem.exists():
            recs = [r for r in json.loads(mem.read_text())["stages"] if r["stage"] == "generate"]
            gen = recs[0] if recs else None
        result["generation"] = {"cached": True, "from": mem.name if gen else None,
                                "seconds": gen["seconds"] if gen else None,
                                "peak_rss_gb": gen["peak_rss_gb"] if gen else None}
    with meter.stage("read_screen") as rec:
        adata = read_screen(path)
        rec.update(n_cells=int(adata.n_obs), n_genes=int(adata.n_vars), nnz=int(adata.X.nnz))
    with meter.stage("make_pairs"):
        pairs = make_pairs(adata, PairConfig(resamples=args.resamples))
    G = pairs.n_genes
    with meter.stage("gene_scale_and_means"):
        pairs.gene_scale()
        pairs.control_mean("train")
    flops = step_flops(B, G, H)
    with meter.stage("roofline") as rec:
        roof = matmul_roofline(B, G, H, seconds=2.0 if args.quick else 4.0)
        rec.update(gflops=roof["gflops"])
    with meter.stage("model_step") as rec:
        step = model_step_rate(pairs, H, B, seconds=2.0 if args.quick else 6.0)
        rec.update(gflops=step["gflops"])
    result.update(roofline=roof, model_step=step, flops_per_step=flops)
    print(f"  roofline {roof['gflops']:.1f} GFLOP/s (largest product alone {roof['largest_product_gflops']:.1f}); "
          f"model step {step['seconds_per_step'] * 1e3:.1f} ms = {step['gflops']:.1f} GFLOP/s "
          f"({step['gflops'] / roof['gflops']:.0%} of roofline); densify {step['densify_seconds_per_batch'] * 1e3:.1f} "
          f"ms/batch", flush=True)

    if not args.skip_train:
        tc = TrainConfig(replicas=args.replicas, epochs=args.epochs, batch_size=B, threads=args.threads,
                         time_budget_s=args.time_budget)
        steps_per_epoch = planned_steps(pairs, tc.replace(replicas=1, epochs=1))
        step_times: list[float] = []
        epochs: list[dict] = []
        last = {"t": None}

        def on_progress(replica, epoch, step_i, loss, elapsed):
            if last["t"] is not None and step_i > 1:
                step_times.append(elapsed - last["t"])
            last["t"] = elapsed

        def on_epoch(replica, epoch, train_loss, val_loss, elapsed):
            epochs.append(dict(replica=replica, epoch=epoch, train_loss=train_loss, val_loss=val_loss,
                               elapsed_s=elapsed))
            print(f"    replica {replica + 1} epoch {epoch + 1}: train {train_loss:.4f} val {val_loss:.4f} "
                  f"({elapsed:.0f} s)", flush=True)
            last["t"] = None

        with meter.stage("train_ensemble") as rec:
            ens = train_ensemble(pairs, ModelConfig(hidden=H), tc, on_progress=on_progress, on_epoch=on_epoch)
            rec.update(train_seconds=ens.info["train_seconds"])
        with meter.stage("roofline_after") as rec:  # the machine may be shared: measure again
            roof_after = matmul_roofline(B, G, H, seconds=2.0 if args.quick else 4.0)
            rec.update(gflops=roof_after["gflops"])
        result["roofline_after_training"] = roof_after
        infos = ens.info["replicas"]
        ep = np.array([e["elapsed_s"] for e in epochs])
        per_epoch = np.diff(np.r_[0.0, ep])  # includes validation and replica setup
        med_step = float(np.median(step_times)) if step_times else float("nan")
        loop_gflops = flops / med_step / 1e9
        converged = all(i["stopped"] == "early_stopping" for i in infos)
        train = {
            "steps_per_epoch": steps_per_epoch, "pairs_per_epoch": steps_per_epoch * B,
            "seconds_per_epoch_median": float(np.median(per_epoch)),
            "seconds_per_step_median": med_step, "loop_gflops": loop_gflops,
            "loop_fraction_of_roofline": loop_gflops / roof["gflops"],
            "loop_fraction_of_roofline_after": loop_gflops / roof_after["gflops"],
            "train_seconds": ens.info["train_seconds"], "replicas": infos, "epochs": epochs,
            "parameters_per_replica": ens.info["parameters_per_replica"], "hidden": ens.info["hidden"],
            "stopped": [i["stopped"] for i in infos], "all_early_stopped": converged,
        }
        if not converged:
            # Extrapolation: epochs to early stopping are unknown; use the configured maximum.
            train["extrapolated_full_ensemble_seconds"] = {
                "value": train["seconds_per_epoch_median"] * args.extrapolate_epochs * args.replicas,
                "epochs_assumed": args.extrapolate_epochs,
                "how": f"seconds_per_epoch_median x epochs ({args.extrapolate_epochs}) x replicas ({args.replicas}); "
                       "EXTRAPOLATED, training stopped on epochs/time budget, not on early stopping"}
        result["train"] = train
        print(f"  training: {train['seconds_per_epoch_median']:.1f} s/epoch ({steps_per_epoch} steps), "
              f"{med_step * 1e3:.1f} ms/step = {loop_gflops:.1f} GFLOP/s ({train['loop_fraction_of_roofline']:.0%} of "
              f"roofline before, {train['loop_fraction_of_roofline_after']:.0%} of {roof_after['gflops']:.1f} after); ensemble {ens.info['train_seconds']:.0f} s, stopped {train['stopped']}", flush=True)
        seeds_probe = [g for g in ("GPX4", "SLC7A11", "ACSL4", "AIFM2", "NCOA4", "TFRC", "LPCAT3", "PSAP",
                                   "MTOR") if g in set(ens.genes)]
        with meter.stage("jacobian_column") as rec:
            result["jacobian"] = jacobian_timings(ens, seeds_probe)
            rec.update(median_s=result["jacobian"]["provider_median_s"])
        jt = result["jacobian"]
        print(f"  Jacobian column: provider median {jt['provider_median_s'] * 1e3:.1f} ms "
              f"(first call {jt['provider_first_call_s'] * 1e3:.1f} ms), jacobian_columns one "
              f"{jt['jacobian_columns_one_median_s'] * 1e3:.1f} ms, batch of 64 {jt['per_column_in_batch_of_64_s'] * 1e3:.2f} "
              f"ms/column ({jt['replicas']} replicas)", flush=True)
        caps = None if args.level_caps.lower() == "none" else [int(c) for c in args.level_caps.split(",")]
        with meter.stage("expand_32x4") as rec:
            result["expansion"] = expansion(ens, caps, args.breadth, args.depth)
            rec.update(n_nodes=result["expansion"]["n_nodes"])
        ex = result["expansion"]
        print(f"  expansion {args.breadth}x{args.depth} from {len(ex['seeds'])} seeds (caps {caps}): "
              f"{ex['n_nodes']} genes, {ex['n_edges']} edges, levels {ex['levels']}, {ex['seconds']:.1f} s; "
              f"missing seeds {ex['missing_seeds']}", flush=True)
    meter.close()
    result["stages"] = meter.records
    result["peak_rss_gb"] = max(r["peak_rss_gb"] for r in meter.records)
    result["ru_maxrss_gb"] = maxrss_gb()
    result["machine"] = machine_info()
    print()
    print(fmt_table(meter.records, ["stage", "seconds", "rss_end_gb", "peak_rss_gb"]))
    print(f"\npeak RSS {result['peak_rss_gb']:.2f} GB (ru_maxrss {result['ru_maxrss_gb']:.2f} GB)")
    write_json(name, result)
    return result


if __name__ == "__main__":
    main()
