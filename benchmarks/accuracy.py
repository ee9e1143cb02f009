"""Accuracy that cannot flatter the model: cross-validation over perturbations on three screens.

For each screen a default LazyNet ensemble (``ModelConfig()``, ``TrainConfig()``: 3 replicas, 40
epochs) is trained per fold and seed by :func:`lazynet_core.cross_validate` and scored by
``metrics.evaluate`` against the **independent control reference** (30 % of control cells that never
reached training) and, for comparison only, the flattering training reference. Every LazyNet figure
stands beside identity, perturbed mean, PM-ex, the authors' linear model, control covariance, the
null and the split-half noise ceiling; wins are decided by paired Wilcoxon tests over perturbations
(a perturbation's values over seeds averaged first).

Screens and designs (the issue's defaults):

- ``real``: Schraivogel et al. 2020 TAP-seq CRISPRi (K562, 72 genes), leave-one-perturbation-out,
  3 seeds;
- ``demo``: the bundled synthetic screen, 5-fold over perturbations, 5 seeds;
- ``hill``: ``datasets.hill_screen()`` (Hill kinetics, not the model's form), 5-fold, 5 seeds.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/accuracy.py --quick                 # smoke: toy-sized, 1 seed, 3 epochs
    PYTHONPATH=. python benchmarks/accuracy.py --screens real          # one screen
    PYTHONPATH=. python benchmarks/accuracy.py                         # all three (about 40 min, 2 cores)
    PYTHONPATH=. python benchmarks/accuracy.py --rehead                # re-judge stored JSON, no training
                                                                       # (and re-derive the set ceilings)

Writes ``benchmarks/results/accuracy_<screen>.json`` (summary records, paired comparisons, machine).
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
from benchmarks.common import RESULTS, fmt_table, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = {
    "real": {"folds": "lopo", "seeds": (0, 1, 2)},
    "demo": {"folds": 5, "seeds": (0, 1, 2, 3, 4)},
    "hill": {"folds": 5, "seeds": (0, 1, 2, 3, 4)},
}
SHOWN = ("lazynet", "perturbed_mean", "perturbed_mean_ex", "linear", "control_covariance", "additive",
         "additive_shrunk", "additive_counts", "null")
METRICS = ("pearson_delta", "pearson_delta_top20", "slope", "norm_ratio", "intervention_response",
           "pearson_delta_specific")


def load_screen(name: str):
    """A benchmark screen through ``read_screen`` (what a user would load)."""
    from lazynet_core import datasets
    from lazynet_core.data import read_screen

    if name == "real":
        return read_screen(str(ROOT / "assets" / "schraivogel2020_tapseq_k562_crispri.h5ad"))
    if name == "demo":
        return read_screen(datasets.load_demo())
    if name == "hill":
        return read_screen(datasets.hill_screen())
    if name == "toy":
        return read_screen(datasets.toy_screen())
    if name.startswith("demo_controls") and name.removeprefix("demo_controls").isdigit():
        return read_screen(datasets.demo_screen(n_controls=int(name.removeprefix("demo_controls"))))
    raise ValueError(f"Unknown screen {name!r}; choose real, demo, hill, toy or demo_controls<N> "
                     "(the demo regenerated with N control cells).")


def design_of(name: str) -> dict[str, Any]:
    """Folds and seeds of screen ``name`` (``demo_controls<N>`` follows the demo's)."""
    return DESIGNS["demo" if name.startswith("demo_controls") else name]


def _cell(mean: float, sd: float, n: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None and np.isfinite(sd) else f"{mean:.3f}"


def report(screen: str, frame: pd.DataFrame) -> dict[str, Any]:
    """Print the tables of one screen and return its JSON payload."""
    from lazynet_core.metrics import _per_perturbation, compare, headline, records, summarize

    summary = summarize(frame)
    per = _per_perturbation(frame[frame.metric.isin(["pearson_delta", "intervention_response"])])
    out: dict[str, Any] = {"records": records(frame), "headlines": [], "paired": [],
                           "per_perturbation": per.to_dict("records")}
    for (set_name, ref), block in summary.groupby(["set", "reference"], sort=False):
        n = int(block[(block.method == "lazynet") & (block.metric == "pearson_delta")]["n"].max())
        print(f"\n{screen} · {set_name} · reference {ref} · {n} perturbations (mean ± sd over perturbations)")
        rows = []
        for method in [*SHOWN, "own_training_mean", "own_training_mean_shrunk", "observed"]:
            sub = block[block.method == method].set_index("metric")
            if sub.empty or (method != "observed" and not np.isfinite(sub["mean"].get("pearson_delta", np.nan))):
                continue
            row = {"method": method}
            for metric in (*METRICS, "ceiling"):
                if metric in sub.index:
                    row[metric] = _cell(sub.at[metric, "mean"], sub.at[metric, "sd"], sub.at[metric, "n"])
            rows.append(row)
        print(fmt_table(rows, ["method", *METRICS, "ceiling"]))
        sub = frame[(frame.set == set_name) & (frame.reference == ref)]
        paired = compare(sub, metric="pearson_delta")
        out["paired"] += paired.to_dict("records")
        words = headline(sub, set_name=set_name)
        if words is not None:
            words["reference"] = ref
            out["headlines"].append(words)
            print(f"LazyNet {words['model_mean']:.3f} vs best baseline: {words['text']}")
    return out


def run_screen(name: str, *, quick: bool, threads: int | None, start: str = "zero",
               k: int | None = None, recipe: str | None = None, shrink: float = 0.0,
               seeds: tuple[int, ...] | None = None) -> dict[str, Any]:
    from lazynet_core import __version__
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig, recipe_configs
    from lazynet_core.validation import cross_validate

    model_config, pair_config = ModelConfig(start=start), PairConfig(**({"k": k} if k else {}))
    if recipe:
        model_config, pair_config = recipe_configs(recipe, pair_config=pair_config)

    adata = load_screen(name)
    design = {"folds": 3, "seeds": (0,)} if quick else dict(design_of(name))
    if seeds:
        design["seeds"] = tuple(seeds)
    train = TrainConfig(threads=threads, shrink=shrink, **({"epochs": 3} if quick else {}))
    t0 = time.perf_counter()
    frame = cross_validate(
        adata,
        folds=design["folds"],
        seeds=design["seeds"],
        train_config=train,
        model_config=model_config,
        pair_config=pair_config,
        references=("independent", "training"),
        on_fold=lambda s, k, n, held: print(f"[{name}] seed {s} fold {k + 1}/{n}: {', '.join(held)}", flush=True),
    )
    wall = time.perf_counter() - t0
    payload = report(name, frame)
    payload.update(
        screen=name,
        shape=list(adata.shape),
        design={"folds": design["folds"], "seeds": list(design["seeds"]), "train_config": train.to_dict(),
                "model_config": model_config.to_dict(), "pair_config": pair_config.to_dict(),
                "recipe": recipe},
        wall_s=wall,
        lazynet_version=__version__,
        machine=machine_info(),
    )
    return payload


TABLE_METHODS = ("lazynet", "perturbed_mean_ex", "perturbed_mean", "linear", "control_covariance",
                 "pooled_covariance", "null")
SCREEN_LABELS = {"demo": "demo (synthetic, log-linear)", "hill": "Hill (synthetic, not the model's form)",
                 "real": "real: Schraivogel 2020 TAP-seq"}


def readme_table(screens: list[str], suffix: str = "") -> str:
    """Markdown table of Δ-Pearson (independent reference) from ``results/accuracy_<screen>.json``."""
    head = ("| screen | set (n) | LazyNet | PM-ex | perturbed mean | linear | control cov. | pooled cov. | null "
            "| ceiling | LazyNet − PM-ex (wins, p) | LazyNet − best baseline (p) | LazyNet slope · intervention resp. |")
    lines = [head, "|" + "---|" * 13]
    for screen in screens:
        data = json.loads((RESULTS / f"accuracy_{screen}{suffix}.json").read_text())
        rec = {(r["set"], r["reference"], r["method"], r["metric"]): r for r in data["records"]}
        paired = {(r["set"], r["reference"], r["baseline"]): r for r in data["paired"]}
        for set_name in ("held_out_perturbations", "combinations", "held_out_cells"):
            key = (set_name, "independent", "lazynet", "pearson_delta")
            if key not in rec:
                continue

            def cell(method, metric="pearson_delta", s=set_name, rec=rec):
                r = rec.get((s, "independent", method, metric))
                if r is None or r["mean"] is None:
                    return "–"
                return f"{r['mean']:.3f} ± {r['sd']:.3f}" if r["sd"] is not None else f"{r['mean']:.3f}"

            ex = paired.get((set_name, "independent", "perturbed_mean_ex"))
            best = max(
                (r for (s2, ref, b), r in paired.items() if s2 == set_name and ref == "independent"
                 and b not in ("null", "identity", "additive") and r["n"] == rec[key]["n"]),
                key=lambda r: -r["mean_diff"], default=None)
            diff_ex = "–" if ex is None else (
                f"{ex['mean_diff']:+.3f} ({ex['wins']}/{ex['n']}, p = {ex['p_wilcoxon']:.2g})")
            diff_best = "–" if best is None else (
                f"{best['mean_diff']:+.3f} vs {best['baseline']} (p = {best['p_wilcoxon']:.2g})")
            slope = rec.get((set_name, "independent", "lazynet", "slope"))
            resp = rec.get((set_name, "independent", "lazynet", "intervention_response"))
            mag = f"{slope['mean']:.3f} · {resp['mean']:.3f}" if slope and resp and resp["mean"] is not None else "–"
            lines.append(
                f"| {SCREEN_LABELS.get(screen, screen)} | {set_name.replace('_', ' ')} ({rec[key]['n']}) | "
                + " | ".join(cell(m) for m in TABLE_METHODS) + f" | {cell('observed', 'ceiling')} | "
                f"{diff_ex} | {diff_best} | {mag} |")
    return "\n".join(lines)


def _suffix(start: str, k: int | None, recipe: str | None = None) -> str:
    if recipe:
        return f"_{recipe}"
    return ("" if start == "zero" else f"_{start}") + (f"_k{k}" if k else "")


def compare_recipes(screens: list[str], first: str, second: str) -> dict[str, Any]:
    """Paired Wilcoxon of recipe ``second`` against ``first`` per screen and set (independent reference),
    from the per-perturbation values (seeds averaged) in ``results/accuracy_<screen>_<recipe>.json``."""
    from scipy import stats

    out: dict[str, Any] = {"first": first, "second": second, "screens": {}}
    rows = []
    for screen in screens:
        per = {}
        for recipe in (first, second):
            data = json.loads((RESULTS / f"accuracy_{screen}_{recipe}.json").read_text())
            frame = pd.DataFrame(data["per_perturbation"])
            frame = frame[(frame.reference == "independent") & (frame.metric == "pearson_delta")
                          & (frame.method == "lazynet")]
            per[recipe] = frame.set_index(["set", "perturbation"])["value"]
        both = pd.concat(per, axis=1).dropna()
        for set_name, block in both.groupby(level="set"):
            d = (block[second] - block[first]).to_numpy()
            p = float(stats.wilcoxon(d).pvalue) if d.size >= 2 and np.any(d != 0) else float("nan")
            row = {"screen": screen, "set": set_name, "n": int(d.size), first: float(block[first].mean()),
                   second: float(block[second].mean()), "diff": float(d.mean()), "wins": int((d > 0).sum()),
                   "p_wilcoxon": p}
            rows.append(row)
    print(fmt_table(rows, ["screen", "set", "n", first, second, "diff", "wins", "p_wilcoxon"]))
    out["rows"] = rows
    return out


def rehead(paths: list[Path]) -> list[tuple[str, str, str, str, str]]:
    """Recompute the stored ``headlines`` of accuracy JSON files from their per-perturbation records.

    A verdict rule changed after a run (``metrics.headline``'s ``min_margin``) is applied to the
    figures already measured, without retraining. Returns ``(file, set, reference, old, new)`` for
    every verdict that changed; files are rewritten in place.
    """
    from lazynet_core.metrics import headline, judge_paired

    changed = []
    for path in paths:
        data = json.loads(path.read_text())
        per = pd.DataFrame(data.get("per_perturbation", []))
        for i, old in enumerate(data.get("headlines", [])):
            if per.empty:  # runs before per-perturbation records were stored: re-judge the paired row
                new = {**old, **judge_paired(old, baseline=old["baseline"])} if old.get("baseline") else old
            else:
                sub = per[(per["set"] == old["set"]) & (per["reference"] == old["reference"])]
                new = {**headline(sub, set_name=old["set"]), "reference": old["reference"]}
            data["headlines"][i] = new
            if new["verdict"] != old["verdict"]:
                changed.append((path.name, old["set"], old["reference"], old["verdict"], new["verdict"]))
        write_json(path.stem, data)
    return changed


def rehead_ceilings() -> None:
    """Recompute the ceiling records of every stored accuracy JSON from its screen's data
    (:func:`observed_records`) and apply :func:`reset_interaction_ceilings` to the combinations JSON;
    print what changed."""
    headroom_path = RESULTS / "interaction_headroom.json"
    headroom = json.loads(headroom_path.read_text()) if headroom_path.exists() else None
    cache: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(RESULTS.glob("accuracy_*.json")):
        data = json.loads(path.read_text())
        design = data.get("design", {})
        key = json.dumps([data.get("screen"), design.get("folds"), design.get("seeds"),
                          design.get("pair_config")], sort_keys=True)
        if key not in cache:
            cache[key] = observed_records(data["screen"], folds=design["folds"], seeds=design["seeds"],
                                          pair_config=design.get("pair_config"))
        for line in replace_observed(data["records"], cache[key]):
            print(f"{path.name} · {line}")
        write_json(path.stem, data)
    for path in sorted(RESULTS.glob("combinations*.json")):
        data = json.loads(path.read_text())
        interaction = reset_interaction_ceilings(data, headroom)
        if interaction is not None:
            print(f"{path.name} · ceilings -> interaction {interaction[0]:.3f}, combinations {interaction[1]:.3f}")
        write_json(path.stem, data)


def observed_records(screen: str, *, folds: Any, seeds: Any, pair_config: dict[str, Any] | None) -> list[dict]:
    """The ``observed`` summary records (split-half r, reliability, set ceiling) of a cross-validation
    design, from the data alone: the same folds, pairs and references as ``cross_validate``, no training."""
    from lazynet_core.config import PairConfig
    from lazynet_core.metrics import evaluate, records
    from lazynet_core.pairs import make_pairs
    from lazynet_core.validation import fold_plan

    adata = load_screen(screen)
    pair = PairConfig.from_dict(pair_config) if pair_config else PairConfig()
    labels = adata.obs["lazynet_perturbation"][~adata.obs["lazynet_is_control"].to_numpy(bool)].astype(str)
    frames = []
    for seed in seeds:
        for k, held in enumerate(fold_plan(labels.unique(), folds=folds, seed=int(seed))):
            pairs = make_pairs(adata, pair.replace(split="perturbations", held_out=held, seed=int(seed)))
            for reference in ("independent", "training"):
                frame = evaluate(pairs, None, reference=reference, roles=("test",), methods=())
                frames.append(frame.assign(seed=int(seed), fold=k))
    frame = pd.concat(frames, ignore_index=True)
    return [r for r in records(frame[frame["method"] == "observed"]) if r["method"] == "observed"]


def replace_observed(stored: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[str]:
    """Swap the ``observed`` records of ``stored`` for ``fresh`` ones, in place, after checking that the
    data reproduce the stored reliability (same cells in every half); returns one line per set."""
    old = {(r["set"], r["reference"], r["metric"]): r for r in stored if r.get("method") == "observed"}
    lines = []
    for r in fresh:
        was = old.get((r["set"], r["reference"], "reliability"))
        if r["metric"] == "reliability" and was is not None and was["mean"] is not None:
            if abs(was["mean"] - r["mean"]) > 1e-6:  # float32 sums: older runs differ by ~4e-9
                msg = f"the data do not reproduce the stored reliability of {r['set']}: {was['mean']} vs {r['mean']}"
                raise ValueError(msg)
        if r["metric"] == "ceiling":
            before = old.get((r["set"], r["reference"], "ceiling"), {}).get("mean")
            lines.append(f"{r['set']} · {r['reference']}: ceiling "
                         f"{'–' if before is None else f'{before:.3f}'} -> {r['mean']:.3f}")
    stored[:] = [r for r in stored if r.get("method") != "observed"] + fresh
    return lines


def reset_interaction_ceilings(data: dict[str, Any], headroom: dict[str, Any] | None) -> tuple[float, float] | None:
    """Replace a ``combinations*.json``'s ceilings (the interaction's and the combination set's) by those
    ``interaction_headroom.json`` computed on the same design (same screens, splits and held-out cells,
    ``metrics.set_ceiling`` of the mean split-half r), in place, after checking that the stored
    combination reliability is reproduced.

    Returns ``(interaction ceiling, combination ceiling)``, or None (the block's ceilings marked stale)
    when no design matches.
    """
    design = data.get("design", {})
    match = None
    for row in (headroom or {}).get("results", []):
        if (row["cells"] == design.get("n_cells") and row["test_fraction"] == design.get("test_fraction", 0.2)
                and row["redundant"] == bool(design.get("redundant")) and design.get("screen_seeds") == [0, 1, 2]
                and row.get("gate", "or") == design.get("gate", "or")
                and design.get("training_seeds") == [0, 1, 2] and design.get("n_genes", 120) == 120
                and design.get("n_combinations", 20) == 20):
            match = row["summary"]
    inter = data.get("interaction") or {}
    if match is None:
        for block in inter.values():
            if isinstance(block, dict) and "ceiling" in block:
                block["ceiling"] = {**block["ceiling"], "stale": "mean of the defined per-double ceilings"}
        return None
    ceiling = match["planted_oracle"]["ceiling"]
    for block in inter.values():
        if isinstance(block, dict) and "ceiling" in block:
            block["ceiling"] = {**ceiling, "source": "interaction_headroom.json (same splits)"}
    for r in inter.get("records") or []:
        if r.get("method") == "observed" and r.get("metric") == "ceiling":
            r.update(mean=ceiling["mean"], sd=None, n=ceiling["n"])
    fresh = [r for r in match["combination_observed"] if r["set"] == "combinations"]
    replace_observed(data["records"], fresh)
    combo = next(r["mean"] for r in fresh if r["metric"] == "ceiling")
    return ceiling["mean"], combo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=["real", "demo", "hill"])
    parser.add_argument("--quick", action="store_true", help="toy screen, 3 folds, 1 seed, 3 epochs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--table", action="store_true", help="print the README table from existing JSON")
    parser.add_argument("--start", default="zero", choices=["zero", "control_covariance"],
                        help="ModelConfig.start (the output layer's start)")
    parser.add_argument("--k", type=int, default=None, help="PairConfig.k (control cells per pre-state)")
    parser.add_argument("--recipe", default=None, help="a named recipe (config.RECIPES); overrides --start")
    parser.add_argument("--compare", nargs=2, metavar=("FIRST", "SECOND"), default=None,
                        help="paired test of recipe SECOND against FIRST from existing JSON (--recipe runs)")
    parser.add_argument("--shrink", type=float, default=0.0, help="TrainConfig.shrink (standard errors)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the screen's seeds (the JSON name then ends in _seeds<...>)")
    parser.add_argument("--rehead", action="store_true",
                        help="re-judge the headlines of every stored accuracy JSON (no training)")
    args = parser.parse_args(argv)
    if args.rehead:
        for change in rehead(sorted(RESULTS.glob("accuracy_*.json"))):
            print("{} · {} · reference {}: {} -> {}".format(*change))
        rehead_ceilings()
        return 0
    if args.compare:
        write_json(f"recipes_{args.compare[1]}_vs_{args.compare[0]}",
                   compare_recipes(args.screens, *args.compare))
        return 0
    if args.table:
        print(readme_table(args.screens, _suffix(args.start, args.k, args.recipe)))
        return 0
    screens = ["toy"] if args.quick else args.screens
    for name in screens:
        payload = run_screen(name, quick=args.quick, threads=args.threads, start=args.start, k=args.k,
                             recipe=args.recipe, shrink=args.shrink, seeds=args.seeds)
        suffix = ("_quick" if args.quick else "") + _suffix(args.start, args.k, args.recipe)
        suffix += f"_shrink{args.shrink:g}" if args.shrink else ""
        suffix += f"_seeds{''.join(map(str, args.seeds))}" if args.seeds else ""
        write_json(f"accuracy_{name}{suffix}", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
