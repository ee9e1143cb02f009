"""Does training on some doubles teach LazyNet the interaction of the others? (issue 11, goal 2)

Two designs of AND-hub screens. ``--design own`` (default): the screens of ``combinations.py
--redundant --gate and``, each double its own hub, every second double scored. ``--design shared``
(``hill_screen(shared_hubs=True)``): the doubles come in triads of targets (A, B, C) whose three
doubles share one hub that needs all three, and one double per triad is scored (B+C, A+C or A+B in
turn). Each scored double is scored twice per screen and training seed: once with every double held
out (singles only in training, as ``combinations.py``) and once with the other doubles in training
(in the shared design, the scored double's two siblings: the hub at the other two corners of the
plane it reaches). LazyNet's interaction r is reported beside its own no-interaction nulls, the arms'
folds multiplied with no model and, in the shared design, the planted dynamics as an oracle; its
excess over its own null (by output form) is paired between the two arms per double. A model that
learns how arms combine from trained doubles would gain there. With its own hub per double nothing
specific can transfer, only a general rule; with shared hubs the trained siblings carry the hub.
``--gate backup`` makes the hubs noisy-ORs (either activator suffices), whose doubles are neither the
sum nor the product of their arms (``interaction_headroom.py``); ``--gate and`` (default) the AND hubs.

    PYTHONPATH=. python benchmarks/trained_doubles.py --recipe anchored --shrink 2
    PYTHONPATH=. python benchmarks/trained_doubles.py --design shared --recipe anchored_folds
    PYTHONPATH=. python benchmarks/trained_doubles.py --design shared --gate backup --recipe anchored_counts
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
SHOWN = ("lazynet", "dose_only", "dose_only_counts", "dose_only_folds", "additive_counts", "multiplicative_counts",
         "planted_oracle")
#: doubles per screen of each design (the shared design: 9 triads, all that 120 genes give hubs for)
N_DOUBLES = {"own": 20, "shared": 27}
#: The recipe's own no-interaction null by where its output change is added (``ModelConfig.output``).
OWN_NULL = {"log": "dose_only", "counts": "dose_only_counts", "fold": "dose_only_folds"}


def scored_doubles(doubles, *, triads: str = "") -> tuple[str, ...]:
    """The doubles scored: every second one, or with ``triads`` (``uns["synthetic"]["shared_hub_triads"]``,
    ``"A+B+C,..."``) one per triad, B+C, A+C and A+B in turn."""
    if not triads:
        return tuple(doubles[::2])
    chosen = []
    for i, triad in enumerate(triads.split(",")):
        a, b, c = triad.split("+")
        chosen.append((f"{b}+{c}", f"{a}+{c}", f"{a}+{b}")[i % 3])
    missing = sorted(set(chosen) - set(doubles))
    if missing:
        msg = f"the triads name doubles the screen does not have: {missing}; pass the screen's own triads."
        raise ValueError(msg)
    return tuple(chosen)


def score_arms(adata, *, screen_seed: int, seeds: tuple[int, ...], model, pair, train,
               test_fraction: float, raw=None) -> pd.DataFrame:
    """Interaction frames of the scored doubles, trained without and with the other doubles; with
    ``raw`` (the :func:`~lazynet_core.datasets.hill_screen` itself) the planted dynamics are scored too."""
    from lazynet_core import datasets
    from lazynet_core.interactions import interaction_frame
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
    triads = str(raw.uns["synthetic"].get("shared_hub_triads", "")) if raw is not None else ""
    scored = scored_doubles(doubles, triads=triads)
    frames = []
    for seed in seeds:
        for arm, held_out in zip(ARMS, (doubles, scored), strict=True):
            pairs = make_pairs(adata, pair.replace(split="perturbations", held_out=held_out, seed=seed,
                                                   test_fraction=test_fraction))
            ensemble = train_ensemble(pairs, model_config=model, train_config=train.replace(seed=seed))
            inters = [interaction_frame(pairs, ensemble.predict, seed=seed)]
            if raw is not None:
                oracle = datasets.planted_hill_predictor(raw, base=pairs.control_mean("train"), genes=pairs.genes)
                inters.append(interaction_frame(pairs, oracle, name="planted_oracle", ceiling=False, seed=seed))
                inters[-1] = inters[-1][inters[-1]["method"] == "planted_oracle"]
            inter = pd.concat(inters, ignore_index=True)
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
    from lazynet_core import __version__, datasets
    from lazynet_core.config import RECIPES, TrainConfig, recipe_configs
    from lazynet_core.data import read_screen

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 screen, 1 seed, 3 epochs")
    parser.add_argument("--recipe", default="anchored", choices=sorted(RECIPES))
    parser.add_argument("--shrink", type=float, default=0.0, help="TrainConfig.shrink (standard errors)")
    parser.add_argument("--design", default="own", choices=sorted(N_DOUBLES),
                        help="own: each double its own hub (every second scored); shared: triads share a hub")
    parser.add_argument("--gate", default="and", choices=["and", "backup"],
                        help="the hubs' gate: both arms needed (and, default) or either suffices (backup)")
    parser.add_argument("--cells", type=int, default=10000)
    parser.add_argument("--test-fraction", type=float, default=0.5)
    args = parser.parse_args()
    screens, seeds = ((0,), (0,)) if args.quick else ((0, 1, 2), (0, 1, 2))
    train = TrainConfig(shrink=args.shrink, **({"epochs": 3} if args.quick else {}))
    model, pair = recipe_configs(args.recipe)
    shared = args.design == "shared"
    t0 = time.perf_counter()
    frames = []
    for s in screens:
        if shared:
            raw = datasets.hill_screen(n_genes=120, n_cells=args.cells, seed=s, n_combinations=N_DOUBLES["shared"],
                                       redundant=True, gate=args.gate, shared_hubs=True)
            adata = read_screen(raw)
        else:
            raw, adata = None, screen_with_doubles(s, n_genes=120, n_cells=args.cells, n_combinations=20,
                                                   redundant=True, gate=args.gate)
        frames.append(score_arms(adata, screen_seed=s, seeds=seeds, model=model, pair=pair, train=train,
                                 test_fraction=args.test_fraction, raw=raw))
    frame = pd.concat(frames, ignore_index=True)
    summary = summarize_arms(frame, null=OWN_NULL[model.output])
    print(f"\ninteraction r of the held-out doubles (independent cells; own null {summary['own_null']}):")
    for arm in ARMS:
        print(f"  {arm:13s} " + " · ".join(f"{k} {v:.3f}" for k, v in summary["per_arm"][arm].items()))
    for name in ("excess_over_null", "lazynet_r"):
        d = summary[f"half_minus_none_{name}"]
        p = "n/a" if d["p_wilcoxon"] is None else f"{d['p_wilcoxon']:.2g}"
        print(f"  half − none trained, {name}: {d['mean']:+.3f} ± {d['sd']:.3f}, {d['wins']}/{d['n']}, p = {p}")
    name = ("trained_doubles" + ("_shared" if shared else "") + ("" if args.gate == "and" else f"_{args.gate}")
            + ("_quick" if args.quick else "") + f"_{args.recipe}")
    name += f"_shrink{args.shrink:g}" if args.shrink else ""
    write_json(name, {
        "benchmark": "trained_doubles", "summary": summary,
        "design": {"screen_seeds": list(screens), "training_seeds": list(seeds), "n_cells": args.cells,
                   "test_fraction": args.test_fraction, "recipe": args.recipe, "design": args.design,
                   "train_config": train.to_dict(), "gate": args.gate, "shared_hubs": shared,
                   "n_combinations": N_DOUBLES[args.design], "n_genes": 120},
        "wall_s": time.perf_counter() - t0, "lazynet_version": __version__, "machine": machine_info(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
