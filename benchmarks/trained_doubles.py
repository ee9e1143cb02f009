"""Does training on some doubles teach LazyNet the interaction of the others? (issue 11, goal 2)

On the AND-hub screens of ``combinations.py --redundant --gate and`` (each double its own hub), the
same held-out doubles (every second one) are scored twice per screen and training seed: once with
every double held out (singles only in training, as ``combinations.py``) and once with the other half
of the doubles in training. LazyNet's interaction r is reported beside its own dose-only nulls and
the arms' folds multiplied with no model, and its excess over its log-space dose-only null is paired
between the two arms per double: a model that learns how arms combine from trained doubles would
gain there. The doubles share no hub, so nothing of a specific hub can transfer; only a general
rule (such as how low-count genes combine) could.

    PYTHONPATH=. python benchmarks/trained_doubles.py --recipe anchored --shrink 2
    PYTHONPATH=. python benchmarks/trained_doubles.py --quick
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from benchmarks.combinations import screen_with_doubles
from benchmarks.common import machine_info, write_json

ARMS = ("none_trained", "half_trained")
SHOWN = ("lazynet", "dose_only", "dose_only_counts", "dose_only_folds", "multiplicative_counts")
#: The recipe's own no-interaction null by where its output change is added (``ModelConfig.output``).
OWN_NULL = {"log": "dose_only", "counts": "dose_only_counts", "fold": "dose_only_folds"}


def score_arms(adata, *, screen_seed: int, seeds: tuple[int, ...], model, pair, train,
               test_fraction: float) -> pd.DataFrame:
    """Interaction frames of every second double, trained without and with the other doubles."""
    from lazynet_core.interactions import interaction_frame
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    scored = doubles[::2]
    frames = []
    for seed in seeds:
        for arm, held_out in zip(ARMS, (doubles, scored), strict=True):
            pairs = make_pairs(adata, pair.replace(split="perturbations", held_out=held_out, seed=seed,
                                                   test_fraction=test_fraction))
            ensemble = train_ensemble(pairs, model_config=model, train_config=train.replace(seed=seed))
            inter = interaction_frame(pairs, ensemble.predict, seed=seed)
            inter = inter[inter["perturbation"].isin(scored)].copy()
            inter["perturbation"] = f"s{screen_seed}:" + inter["perturbation"].astype(str)
            inter["seed"], inter["arm"] = seed, arm
            frames.append(inter)
            print(f"[screen {screen_seed}] seed {seed} {arm}: {len(scored)} doubles scored", flush=True)
    return pd.concat(frames, ignore_index=True)


def summarize_arms(frame: pd.DataFrame, *, null: str = "dose_only") -> dict[str, Any]:
    """Per arm: mean interaction r of LazyNet, its nulls and the no-model product; LazyNet's excess
    over its own no-interaction ``null`` paired between the arms (seeds averaged per double first)."""
    r = frame[(frame["metric"] == "pearson_interaction") & (frame["reference"] == "independent")]
    per = r.groupby(["arm", "method", "perturbation"])["value"].mean()
    out: dict[str, Any] = {"own_null": null, "per_arm": {}}
    excess = {}
    for arm in ARMS:
        out["per_arm"][arm] = {m: float(per[arm][m].mean()) for m in SHOWN if m in per[arm].index}
        excess[arm] = per[arm]["lazynet"] - per[arm][null]
        out["per_arm"][arm]["lazynet_minus_own_null"] = float(excess[arm].mean())
    for name, diff in (("excess_over_null", excess["half_trained"] - excess["none_trained"]),
                       ("lazynet_r", per["half_trained"]["lazynet"] - per["none_trained"]["lazynet"])):
        diff = diff.dropna()
        out[f"half_minus_none_{name}"] = {
            "mean": float(diff.mean()), "sd": float(diff.std(ddof=1)), "n": int(len(diff)),
            "wins": int((diff > 0).sum()),
            "p_wilcoxon": float(wilcoxon(diff).pvalue) if len(diff) > 1 and np.any(diff != 0) else None,
        }
    return out


def main() -> int:
    from lazynet_core import __version__
    from lazynet_core.config import RECIPES, TrainConfig, recipe_configs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 screen, 1 seed, 3 epochs")
    parser.add_argument("--recipe", default="anchored", choices=sorted(RECIPES))
    parser.add_argument("--shrink", type=float, default=0.0, help="TrainConfig.shrink (standard errors)")
    parser.add_argument("--cells", type=int, default=10000)
    parser.add_argument("--test-fraction", type=float, default=0.5)
    args = parser.parse_args()
    screens, seeds = ((0,), (0,)) if args.quick else ((0, 1, 2), (0, 1, 2))
    train = TrainConfig(shrink=args.shrink, **({"epochs": 3} if args.quick else {}))
    model, pair = recipe_configs(args.recipe)
    t0 = time.perf_counter()
    frame = pd.concat([
        score_arms(screen_with_doubles(s, n_genes=120, n_cells=args.cells, n_combinations=20, redundant=True,
                                       gate="and"),
                   screen_seed=s, seeds=seeds, model=model, pair=pair, train=train,
                   test_fraction=args.test_fraction)
        for s in screens], ignore_index=True)
    summary = summarize_arms(frame, null=OWN_NULL[model.output])
    print(f"\ninteraction r of the held-out doubles (independent cells; own null {summary['own_null']}):")
    for arm in ARMS:
        print(f"  {arm:13s} " + " · ".join(f"{k} {v:.3f}" for k, v in summary["per_arm"][arm].items()))
    for name in ("excess_over_null", "lazynet_r"):
        d = summary[f"half_minus_none_{name}"]
        p = "n/a" if d["p_wilcoxon"] is None else f"{d['p_wilcoxon']:.2g}"
        print(f"  half − none trained, {name}: {d['mean']:+.3f} ± {d['sd']:.3f}, {d['wins']}/{d['n']}, p = {p}")
    name = "trained_doubles" + ("_quick" if args.quick else "") + f"_{args.recipe}"
    name += f"_shrink{args.shrink:g}" if args.shrink else ""
    write_json(name, {
        "benchmark": "trained_doubles", "summary": summary,
        "design": {"screen_seeds": list(screens), "training_seeds": list(seeds), "n_cells": args.cells,
                   "test_fraction": args.test_fraction, "recipe": args.recipe,
                   "train_config": train.to_dict(), "gate": "and", "n_combinations": 20, "n_genes": 120},
        "wall_s": time.perf_counter() - t0, "lazynet_version": __version__, "machine": machine_info(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
