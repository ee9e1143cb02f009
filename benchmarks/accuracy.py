"""Accuracy of LazyNet next to the baselines, on both held-out sets and both pairings (issue 6.1).

For every screen (demo, Hill-type, optional medium synthetic), split seed and pairing
(``pseudobulk``, ``random_cells``) a default LazyNet ensemble (``ModelConfig()``,
``TrainConfig(seed=seed)``, 3 replicas) is trained on ``make_pairs(adata, PairConfig(pairing, seed))``
and evaluated with ``metrics.evaluate`` on the test cells: its ``split`` column separates held-out
perturbations (``perturbations``) from held-out cells of seen perturbations (``cells``). The baselines
(identity, perturbed_mean, pert_mean, linear) depend only on the split, not on the pairing, so they
are evaluated once per seed. Figures are the mean over perturbations for one seed, then
mean ± sd **across seeds**. Planted-network recovery (``network_recovery.py``) is computed on each
ensemble next to its baselines.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/accuracy.py --quick                  # smoke: demo, 1 seed, 3 epochs
    PYTHONPATH=. python benchmarks/accuracy.py                          # demo + hill, seeds 0 1 2
    PYTHONPATH=. python benchmarks/accuracy.py --medium                 # + 20k x 2k synthetic (slow)
    PYTHONPATH=. python benchmarks/accuracy.py --screens medium --seeds 0 --name accuracy_medium_s0
    PYTHONPATH=. python benchmarks/accuracy.py --merge a.json b.json --name accuracy_medium

Writes ``benchmarks/results/<name>.json`` (default ``accuracy`` / ``accuracy_quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import ensure_paper_screen, fmt_table, machine_info, write_json
from benchmarks.network_recovery import aggregate, print_recovery, recovery_for_ensemble, truth_frame

MEDIUM = {"n_cells": 20_000, "n_genes": 2_000, "n_perturbations": 250}
PAIRINGS = ("pseudobulk", "random_cells")
METRICS = ("pearson_delta", "pearson_delta_top20", "mse_delta", "direction_acc_top20", "auroc_de",
           "auprc_de", "pearson_post_pooled")


def load_screen(name: str) -> tuple[Any, dict]:
    """Return (read_screen AnnData, raw uns with the planted network) of a benchmark screen."""
    import anndata as ad

    from lazynet_core import datasets
    from lazynet_core.data import read_screen

    if name == "demo":
        raw = datasets.load_demo()
    elif name == "hill":
        raw = datasets.hill_screen()
    elif name == "medium":
        path, _ = ensure_paper_screen(**MEDIUM)
        raw = ad.read_h5ad(path)
    else:
        msg = f"Unknown screen {name!r}; choose demo, hill or medium."
        raise ValueError(msg)
    uns = {"planted_network": dict(raw.uns["planted_network"]), "synthetic": dict(raw.uns.get("synthetic", {}))}
    return read_screen(raw), uns


def per_seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean over perturbations of each metric per screen × seed × split × method (NaN skipped)."""
    keys = ["screen", "seed", "split", "method", "metric"]
    g = frame.groupby(keys, sort=False)["value"]
    return g.agg(value="mean", n_perts="count").reset_index()


def across_seeds(means: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd across seeds of the per-seed means."""
    keys = ["screen", "split", "method", "metric"]
    g = means.groupby(keys, sort=False)["value"]
    return g.agg(mean="mean", sd="std", n_seeds="count").reset_index()


def _cell(m: float, s: float, digits: int = 3) -> str:
    if not np.isfinite(m):
        return "NaN"
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if np.isfinite(s) else "")


def print_accuracy(summary: pd.DataFrame) -> None:
    """One table per screen × split: methods as rows, metrics as columns."""
    for (screen, split), block in summary.groupby(["screen", "split"], sort=False):
        label = "held-out PERTURBATIONS" if split == "perturbations" else "held-out CELLS (all perturbations seen)"
        print(f"\n{screen}: {label}; mean ± sd across seeds (n_seeds = {int(block['n_seeds'].max())})")
        rows = []
        for method, sub in block.groupby("method", sort=False):
            row = {"method": method}
            for _, r in sub.iterrows():
                row[r["metric"]] = _cell(r["mean"], r["sd"])
            rows.append(row)
        cols = ["method", *[m for m in METRICS if m in set(block["metric"])]]
        print(fmt_table(rows, cols))


def verdicts(means: pd.DataFrame) -> list[dict[str, Any]]:
    """Per screen × pairing: LazyNet minus perturbed_mean / linear delta-Pearson on held-out perturbations."""
    out = []
    sub = means[(means["metric"] == "pearson_delta") & (means["split"] == "perturbations")]
    fit = means[(means["metric"] == "pearson_delta") & (means["split"] == "cells")]
    for screen in sub["screen"].unique():
        s = sub[sub["screen"] == screen].pivot_table(index="seed", columns="method", values="value")
        f = fit[fit["screen"] == screen].pivot_table(index="seed", columns="method", values="value")
        for method in [m for m in s.columns if m.startswith("lazynet")]:
            rec = {"screen": screen, "method": method, "n_seeds": int(s[method].notna().sum())}
            for base in ("perturbed_mean", "linear"):
                if base in s.columns:
                    diff = s[method] - s[base]
                    rec[f"minus_{base}_mean"] = float(diff.mean())
                    rec[f"wins_vs_{base}"] = f"{int((diff > 0).sum())}/{int(diff.notna().sum())}"
            if "pert_mean" in f.columns and method in f.columns:
                rec["cells_split_fraction_of_pert_mean"] = float((f[method] / f["pert_mean"]).mean())
            out.append(rec)
    return out


def run(screens: list[str], seeds: list[int], pairings: list[str], *, epochs: int | None, threads: int,
        replicas: int, network: bool, time_budget: float | None = None,
        patience: int | None = None) -> dict[str, Any]:
    import torch

    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.metrics import evaluate
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    torch.set_num_threads(threads)
    frames, recov, runs = [], [], []
    for screen in screens:
        t0 = time.perf_counter()
        adata, uns = load_screen(screen)
        truth = truth_frame(uns)
        print(f"\n== {screen}: {adata.n_obs} cells x {adata.n_vars} genes "
              f"({time.perf_counter() - t0:.1f} s to load)", flush=True)
        for seed in seeds:
            for i, pairing in enumerate(pairings):
                pairs = make_pairs(adata, PairConfig(pairing=pairing, seed=seed))
                tc = TrainConfig(seed=seed, replicas=replicas, threads=threads, time_budget_s=time_budget)
                if epochs is not None:
                    tc = tc.replace(epochs=epochs)
                if patience is not None:
                    tc = tc.replace(patience=patience)
                t0 = time.perf_counter()
                ens = train_ensemble(pairs, ModelConfig(), tc)
                train_s = time.perf_counter() - t0
                name = f"lazynet[{pairing}]"
                frame = evaluate(pairs, ens.predict, name=name, methods=None if i == 0 else ())
                frames.append(frame.assign(screen=screen, seed=seed))
                info = ens.info
                run_rec = {"screen": screen, "seed": seed, "pairing": pairing, "train_seconds": train_s,
                           "hidden": info["hidden"], "parameters_per_replica": info["parameters_per_replica"],
                           "epochs_run": [r["epochs_run"] for r in info["replicas"]],
                           "stopped": [r["stopped"] for r in info["replicas"]],
                           "best_val_loss": [r["best_loss"] for r in info["replicas"]],
                           "n_test_perturbations": int(pairs.test_perts.sum()),
                           "n_perturbations": int(len(pairs.perturbations)),
                           "train_config": tc.to_dict(), "model_config": ModelConfig().to_dict()}
                pdp = frame[(frame["method"] == name) & (frame["metric"] == "pearson_delta")]
                msg = (f"  seed {seed} {pairing:12s}: trained in {train_s:6.1f} s "
                       f"(epochs {run_rec['epochs_run']}); delta-Pearson "
                       + ", ".join(f"{sp} {v:.3f}" for sp, v in pdp.groupby("split")["value"].mean().items()))
                if network:
                    t1 = time.perf_counter()
                    table, extra = recovery_for_ensemble(ens, pairs, truth, seed=seed)
                    recov.append(table.assign(screen=screen, pairing=pairing, seed=seed))
                    run_rec["network"] = {**extra, "seconds_total": time.perf_counter() - t1}
                    jac = table[table["method"] == "lazynet_jacobian"].set_index("pair_set")["auroc"]
                    msg += "; J AUROC " + ", ".join(f"{k} {v:.3f}" for k, v in jac.items())
                print(msg, flush=True)
                runs.append(run_rec)
    frame = pd.concat(frames, ignore_index=True)
    return {"frame": frame, "recovery": pd.concat(recov, ignore_index=True) if recov else None, "runs": runs}


def report(means: pd.DataFrame, recovery: pd.DataFrame | None, runs: list, config: dict, name: str,
           pooled: pd.DataFrame | None = None) -> dict[str, Any]:
    summary = across_seeds(means)
    print_accuracy(summary)
    ver = verdicts(means)
    print("\nHeld-out perturbations, delta-Pearson (all genes but the target): LazyNet minus baselines "
          "(mean over seeds; wins = seeds where LazyNet is higher); cells-split fit as a fraction of pert_mean")
    print(fmt_table(ver, ["screen", "method", "n_seeds", "minus_perturbed_mean_mean", "wins_vs_perturbed_mean",
                          "minus_linear_mean", "wins_vs_linear", "cells_split_fraction_of_pert_mean"]))
    payload: dict[str, Any] = {
        "benchmark": "accuracy", "config": config,
        "notes": ["Values: mean over evaluated perturbations per seed; summary = mean ± sd across seeds.",
                  "Baselines depend only on the split seed, not on the pairing: evaluated once per seed.",
                  "identity's delta metrics are NaN by definition (zero predicted delta); pert_mean is NaN "
                  "on held-out perturbations (no training cells) and is the noise ceiling on held-out cells.",
                  "Network recovery: perturbed = single targets with training cells; the LazyNet score is "
                  "|consensus Jacobian| of the trained ensemble, never a data statistic."],
        "summary": summary.to_dict("records"), "per_seed": means.to_dict("records"), "verdicts": ver,
        "runs": runs, "machine": machine_info(),
    }
    if pooled is not None:
        payload["pooled_over_perturbations_and_seeds"] = pooled.to_dict("records")
    if recovery is not None and len(recovery):
        agg = aggregate(recovery)
        print_recovery(agg)
        payload["network_recovery"] = {"per_seed": recovery.to_dict("records"), "summary": agg.to_dict("records")}
    write_json(name, payload)
    return payload


def merge(paths: list[str], name: str) -> None:
    """Combine per-seed results of several runs (e.g. one process per seed) into one report."""
    means, recov, runs, configs = [], [], [], []
    for p in paths:
        data = json.loads(Path(p).read_text())
        means.append(pd.DataFrame(data["per_seed"]))
        if "network_recovery" in data:
            recov.append(pd.DataFrame(data["network_recovery"]["per_seed"]))
        runs += data["runs"]
        configs.append(data["config"])
    m = pd.concat(means, ignore_index=True).drop_duplicates(["screen", "seed", "split", "method", "metric"])
    m["value"] = m["value"].astype(float)
    r = pd.concat(recov, ignore_index=True) if recov else None
    if r is not None:
        r[["auroc", "auprc"]] = r[["auroc", "auprc"]].astype(float)
    report(m, r, runs, {"merged_from": [Path(p).name for p in paths], "configs": configs}, name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: demo, seed 0, 3 epochs")
    parser.add_argument("--medium", action="store_true", help="add the 20k x 2k synthetic screen")
    parser.add_argument("--screens", nargs="+", choices=["demo", "hill", "medium"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pairings", nargs="+", default=list(PAIRINGS), choices=list(PAIRINGS))
    parser.add_argument("--epochs", type=int, default=None, help="override TrainConfig.epochs (default 40)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--patience", type=int, default=None,
                        help="override TrainConfig.patience (0 disables early stopping)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="TrainConfig.time_budget_s per ensemble (default none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-network", action="store_true", help="skip planted-network recovery")
    parser.add_argument("--name", default=None, help="results file name (without .json)")
    parser.add_argument("--merge", nargs="+", help="merge result JSON files instead of running")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.name or "accuracy_merged")
        return
    if args.quick:
        screens, seeds, epochs = args.screens or ["demo"], [args.seeds[0]], args.epochs or 3
    else:
        screens = args.screens or (["demo", "hill", "medium"] if args.medium else ["demo", "hill"])
        seeds, epochs = args.seeds, args.epochs
    name = args.name or ("accuracy_quick" if args.quick else "accuracy")
    config = {"screens": screens, "seeds": seeds, "pairings": args.pairings, "epochs": epochs,
              "replicas": args.replicas, "threads": args.threads, "quick": args.quick,
              "time_budget_s": args.time_budget, "patience": args.patience,
              "medium_size": MEDIUM if "medium" in screens else None,
              "model_config": "ModelConfig() defaults", "train_config": "TrainConfig(seed=seed) defaults"}
    t0 = time.perf_counter()
    out = run(screens, seeds, args.pairings, epochs=epochs, threads=args.threads, replicas=args.replicas,
              network=not args.no_network, time_budget=args.time_budget,
              patience=args.patience)
    config["wall_seconds"] = time.perf_counter() - t0
    frame = out["frame"]
    means = per_seed_means(frame)
    from lazynet_core.metrics import summarize
    pooled_parts = []
    for screen, sub in frame.groupby("screen", sort=False):
        pooled_parts.append(summarize(sub).assign(screen=screen))
    pooled = pd.concat(pooled_parts, ignore_index=True)
    report(means, out["recovery"], out["runs"], config, name, pooled=pooled)
    print(f"\ntotal {config['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
