"""Combinations: held-out double perturbations whose single arms were trained on (issue 11, goal 2).

The paper's central claim about multiplicative components is that a model of products of gene
levels predicts combinations. This script writes Hill-kinetics screens with double CRISPRi
perturbations (``datasets.hill_screen(n_combinations=...)``; pairs that regulate a common gene
first, where Hill production is not additive in log space), holds out **every** double while its
single arms stay in training (``PairConfig(held_out=<the doubles>)``), trains a default ensemble per
screen seed and training seed, and scores the doubles against the independent control reference
beside the additive model (each arm's training delta summed), the perturbed means, control
covariance, the null and the split-half ceiling. Wins are paired Wilcoxon tests over doubles
(training seeds averaged first).

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/combinations.py --quick      # smoke: 1 screen, 1 seed, 3 epochs
    PYTHONPATH=. python benchmarks/combinations.py              # 3 screens x 3 seeds (about 20 min)

Writes ``benchmarks/results/combinations[_<start>].json``.
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
from benchmarks.accuracy import report
from benchmarks.common import RESULTS, machine_info, write_json
from lazynet_core.metrics import summarize

METHODS = ("perturbed_mean", "perturbed_mean_ex", "additive", "additive_shrunk", "additive_counts",
           "additive_counts_shrunk", "multiplicative_counts", "multiplicative_counts_shrunk", "control_covariance",
           "null", "linear")


def screen_with_doubles(seed: int, *, n_genes: int, n_cells: int, n_combinations: int, redundant: bool = False,
                        gate: str = "or"):
    """A Hill screen with doubles, read as a user would (``read_screen``)."""
    from lazynet_core import datasets
    from lazynet_core.data import read_screen

    return read_screen(datasets.hill_screen(n_genes=n_genes, n_cells=n_cells, seed=seed,
                                            n_combinations=n_combinations, redundant=redundant, gate=gate))


def score_screen(adata, *, screen_seed: int, seeds: tuple[int, ...], train, model,
                 k: int | None = None, pair=None, test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train with every double held out; score the ``combinations`` set and the doubles'
    interactions (``interactions.interaction_frame``) for each training seed."""
    from lazynet_core.config import PairConfig
    from lazynet_core.interactions import interaction_frame
    from lazynet_core.metrics import evaluate
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    frames, interactions = [], []
    for seed in seeds:
        base = pair if pair is not None else PairConfig()
        pairs = make_pairs(adata, base.replace(split="perturbations", held_out=doubles, seed=seed,
                                               test_fraction=test_fraction, **({"k": k} if k else {})))
        ensemble = train_ensemble(pairs, model_config=model, train_config=train.replace(seed=seed))
        frame = evaluate(pairs, ensemble.predict, methods=METHODS)
        frame = frame[frame["set"] == "combinations"].copy()
        inter = interaction_frame(pairs, ensemble.predict, seed=seed)
        for f in (frame, inter):
            f["seed"] = seed
            f["perturbation"] = f"s{screen_seed}:" + f["perturbation"].astype(str)
        frames.append(frame)
        interactions.append(inter)
        print(f"[screen {screen_seed}] seed {seed}: {len(doubles)} doubles scored", flush=True)
    return pd.concat(frames, ignore_index=True), pd.concat(interactions, ignore_index=True)


def print_interaction(frame: pd.DataFrame) -> dict[str, Any]:
    """Print and return the interaction figures (``interactions.interaction_summary``) of LazyNet,
    of its own dose-only null and of the count-space additive model, and LazyNet paired against
    both."""
    from lazynet_core.interactions import interaction_summary
    from lazynet_core.metrics import compare

    out: dict[str, Any] = {}
    n = frame[frame["method"] == "lazynet"]["perturbation"].nunique()
    print(f"\ninteraction I = Δ(A+B) − Δ(A) − Δ(B), independent cells, {n} doubles "
          "(the additive model predicts I = 0: r undefined, explained 0):")
    for model in ("lazynet", "dose_only", "dose_only_counts", "dose_only_folds", "additive_counts",
                  "multiplicative_counts"):
        if model not in set(frame["method"]):
            continue
        one = interaction_summary(frame, model=model)
        r, ex = one["pearson_interaction"], one["interaction_explained"]
        print(f"  {model:16s} r {r['mean']:.3f} ± {r['sd']:.3f} (> 0 on {r['above_zero']}/{r['n']}, "
              f"p vs 0 = {r['p_wilcoxon_vs_zero']:.2g}) · explained {ex['mean']:.3f} ± {ex['sd']:.3f} "
              f"(> 0 on {ex['above_zero']}/{ex['n']}, p vs 0 = {ex['p_wilcoxon_vs_zero']:.2g})")
        out[model] = one
    print(f"  noise ceiling of r: {out['lazynet']['ceiling']['mean']:.3f} "
          f"({out['lazynet']['ceiling']['n']} doubles with a split-half r)")
    paired = pd.concat([compare(frame, metric=m) for m in ("pearson_interaction", "interaction_explained")])
    shown = ["dose_only", "dose_only_counts", "dose_only_folds", "additive_counts", "multiplicative_counts"]
    for row in paired[paired["baseline"].isin(shown)].to_dict("records"):
        print(f"  lazynet − {row['baseline']} on {row['metric']}: {row['mean_diff']:+.3f} ± {row['sd_diff']:.3f}, "
              f"{row['wins']}/{row['n']}, p = {row['p_wilcoxon']:.2g}")
    out["paired"] = paired.to_dict("records")
    out["records"] = [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        for row in summarize(frame).to_dict("records")
    ]
    return out


INTERACTION_RUNS = (("published", ""), ("anchored", ""), ("anchored", "_shrink2"), ("anchored_counts", ""),
                    ("anchored_counts", "_shrink2"), ("anchored_folds", ""), ("anchored_folds", "_shrink2"))


def interaction_table(tag: str = "_10000cells_tf0.5") -> str:
    """Markdown table of the interaction and combination figures of every recipe from the JSON of
    ``--cells 10000 --test-fraction 0.5`` runs (``--redundant`` and standard screens)."""

    def p(x):
        return f"{x:.0e}" if x < 1e-3 else f"{x:.2g}"

    lines = ["| screen | recipe | interaction r (> 0, p vs 0) | − own dose-only null (wins, p) "
             "| − own count-space null (wins, p) | − own folds-multiplied null (wins, p) | `additive_counts` r "
             "| `multiplicative_counts` r (LazyNet − it, p) | ceiling | combination Δ-Pearson | − additive (p) "
             "| − `additive_counts_shrunk` (wins, p) |", "|" + "---|" * 12]
    for screen, redundant in (("redundant hubs", "_redundant"), ("AND hubs", "_redundant_and"), ("standard", "")):
        for recipe, shrink in INTERACTION_RUNS:
            path = RESULTS / f"combinations_{recipe}{shrink}{redundant}{tag}.json"
            if not path.exists():
                continue
            data = json.loads(path.read_text())
            inter = data["interaction"]
            r = inter["lazynet"]["pearson_interaction"]
            ipaired = {(row["baseline"], row["metric"]): row for row in inter["paired"]}
            null = ipaired.get(("dose_only", "pearson_interaction"))
            cnull = ipaired.get(("dose_only_counts", "pearson_interaction"))
            fnull = ipaired.get(("dose_only_folds", "pearson_interaction"))
            mult = (inter.get("multiplicative_counts") or {}).get("pearson_interaction")
            mpair = ipaired.get(("multiplicative_counts", "pearson_interaction"))
            paired = {row["baseline"]: row for row in data["paired"] if row["reference"] == "independent"}
            rec = {(row["method"], row["metric"]): row for row in data["records"]
                   if row["reference"] == "independent"}
            add, acs = paired["additive"], paired.get("additive_counts_shrunk")
            label = recipe + (", shrink 2" if shrink else "")
            lines.append(
                f"| {screen} | {label} | {r['mean']:.3f} ({r['above_zero']}/{r['n']}, p = {p(r['p_wilcoxon_vs_zero'])}) "
                + (f"| {null['mean_diff']:+.3f} ({null['wins']}/{null['n']}, p = {p(null['p_wilcoxon'])}) "
                   if null else "| – ")
                + (f"| {cnull['mean_diff']:+.3f} ({cnull['wins']}/{cnull['n']}, p = {p(cnull['p_wilcoxon'])}) "
                   if cnull else "| not run ")
                + (f"| {fnull['mean_diff']:+.3f} ({fnull['wins']}/{fnull['n']}, p = {p(fnull['p_wilcoxon'])}) "
                   if fnull else "| not run ")
                + f"| {inter['additive_counts']['pearson_interaction']['mean']:.3f} "
                + (f"| {mult['mean']:.3f} (LazyNet − it {mpair['mean_diff']:+.3f}, p = {p(mpair['p_wilcoxon'])}) "
                   if mult and mpair else "| not run ")
                +                 f"| {inter['lazynet']['ceiling']['mean']:.3f} "
                f"| {rec[('lazynet', 'pearson_delta')]['mean']:.3f} "
                f"| {add['mean_diff']:+.3f} (p = {p(add['p_wilcoxon'])}) "
                + (f"| {acs['mean_diff']:+.3f} ({acs['wins']}/{acs['n']}, p = {p(acs['p_wilcoxon'])}) |"
                   if acs else "| – |")
            )
    return "\n".join(lines).replace(" -0", " −0")


def main(argv: list[str] | None = None) -> int:
    from lazynet_core import __version__
    from lazynet_core.config import RECIPES, ModelConfig, PairConfig, TrainConfig, recipe_configs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 screen, 1 seed, 3 epochs")
    parser.add_argument("--screens", type=int, nargs="+", default=[0, 1, 2], help="screen seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--genes", type=int, default=120)
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--combinations", type=int, default=20)
    parser.add_argument("--start", default="zero", choices=["zero", "control_covariance"])
    parser.add_argument("--k", type=int, default=None, help="PairConfig.k (control cells per pre-state)")
    parser.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                        help="a named recipe (config.RECIPES); overrides --start")
    parser.add_argument("--redundant", action="store_true",
                        help="hill_screen(redundant=True): each double's targets are redundant activators of a hub")
    parser.add_argument("--gate", default="or", choices=["or", "and", "backup"],
                        help="with --redundant: hubs sum their arms (or, default), need both (and) or "
                             "either (backup, a noisy-OR)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of each single arm's cells held out (the interaction's independent side)")
    parser.add_argument("--shrink", type=float, default=0.0,
                        help="TrainConfig.shrink: L1 pull of each fitted change toward no change, in SEs")
    parser.add_argument("--table", action="store_true",
                        help="print the README interaction table from existing JSON and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(interaction_table())
        return 0
    if args.gate != "or" and not args.redundant:
        parser.error(f"--gate {args.gate} rewires the redundant hubs; add --redundant")
    screens, seeds = ([0], (0,)) if args.quick else (args.screens, tuple(args.seeds))
    train = TrainConfig(shrink=args.shrink, **({"epochs": 3} if args.quick else {}))
    model, pair = ModelConfig(start=args.start), PairConfig()
    if args.recipe:
        model, pair = recipe_configs(args.recipe)
    t0 = time.perf_counter()
    frames, interactions = [], []
    for screen_seed in screens:
        adata = screen_with_doubles(screen_seed, n_genes=args.genes, n_cells=args.cells,
                                    n_combinations=args.combinations, redundant=args.redundant, gate=args.gate)
        frame, inter = score_screen(adata, screen_seed=screen_seed, seeds=seeds, train=train, model=model,
                                    k=args.k, pair=pair, test_fraction=args.test_fraction)
        frames.append(frame)
        interactions.append(inter)
    frame, inter = pd.concat(frames, ignore_index=True), pd.concat(interactions, ignore_index=True)
    hubs = f" (redundant hubs, {args.gate.upper()} gates)" if args.redundant else ""
    payload: dict[str, Any] = report("hill doubles" + hubs, frame)
    payload["interaction"] = print_interaction(inter)
    payload.update(
        benchmark="combinations",
        design={"screen_seeds": list(screens), "training_seeds": list(seeds), "n_genes": args.genes,
                "n_cells": args.cells, "n_combinations": args.combinations, "redundant": args.redundant,
                "gate": args.gate,
                "test_fraction": args.test_fraction,
                "train_config": train.to_dict(), "model_config": model.to_dict(), "k": args.k,
                "recipe": args.recipe, "pair_config": pair.to_dict()},
        wall_s=time.perf_counter() - t0, lazynet_version=__version__, machine=machine_info(),
    )
    suffix = (("_quick" if args.quick else "") + ("" if args.start == "zero" else f"_{args.start}")
              + (f"_k{args.k}" if args.k else ""))
    if args.recipe:
        suffix = ("_quick" if args.quick else "") + f"_{args.recipe}"
    if args.shrink:
        suffix += f"_shrink{args.shrink:g}"
    if args.redundant:
        suffix += "_redundant" + ("" if args.gate == "or" else f"_{args.gate}")
    if args.cells != 5000 or args.test_fraction != 0.2:
        suffix += f"_{args.cells}cells_tf{args.test_fraction:g}"
    write_json(f"combinations{suffix}", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
