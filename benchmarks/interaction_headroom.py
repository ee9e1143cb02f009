"""Interaction headroom: how much of a double's observed interaction the planted dynamics explain.

Issue 11, goal 2 asks a model to predict held-out double perturbations beyond the additive model,
that is, to predict the interaction ``I = Δ(A+B) − Δ(A) − Δ(B)``. This script asks how much there is
to predict on the Hill screens of ``combinations.py`` (standard doubles; hubs that are OR gates of
the double's targets, ``--redundant``; hubs that are AND gates, ``--redundant --gate and``; backup
(noisy-OR) hubs, ``--redundant --gate backup``): it scores the **planted dynamics themselves**
(``datasets.planted_hill_predictor``: the network, its Hill constants and basal production, solved
noise-free; an oracle no method can be) exactly as ``combinations.py`` scores LazyNet, on the same
screens, splits and held-out cells, no training. Beside it: the oracle's own nulls (its arms at the
double's doses added in log space, ``dose_only``, and in expression, ``dose_only_counts``), the
count-space additive model (``additive_counts``, no model), the arms' fold changes multiplied
(``multiplicative_counts``, no model: log-space addition without log1p's pseudo-count), the split-half ceiling of the observed
interaction, and every stored LazyNet run of the same design (``results/combinations*.json``).

What it answers: if the oracle's interaction r is far below the ceiling, the reproducible part of the
observed interaction is not gene regulation and no model of the network can learn it; if the oracle
beats its count-space null by little, the dynamics' interaction is count-space addition of the arms,
which ``additive_counts`` already is.

Where the interaction could be learned from (``lazynet_core.cross_terms``): the oracle's own cross
term at the control state extrapolated to the double's doses (``oracle_local_cross``: how much of the
interaction is local curvature), and two no-model readings of that cross term from the cells that
reached training, the controls' co-variation of the two targets (``control_cross``) and how each arm
changes the genes' slopes on the other target (``arm_slope_change``), each paired with
``additive_counts``; and that slope reading added to ``additive_counts`` at fixed weights
(:data:`ARM_SLOPE_WEIGHTS`, ``additive_counts+<w>·arm_slope``): the best weight is picked on the scored
doubles themselves, so its gain is an upper bound on what shrinking the slope reading could add.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/interaction_headroom.py                  # both designs, about 2 min
    PYTHONPATH=. python benchmarks/interaction_headroom.py --quick          # one screen, one split
    PYTHONPATH=. python benchmarks/interaction_headroom.py --cells 100000   # ten times the cells

Writes ``benchmarks/results/interaction_headroom[_quick][_<cells>cells].json``.
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
from benchmarks.common import RESULTS, machine_info, write_json

ORACLE = "planted_oracle"
#: (cells, test fraction) of the two designs ``combinations.py`` was run at (README tables)
DESIGNS = ((5000, 0.2), (10000, 0.5))
#: (redundant, gate) of the screens: standard doubles, OR-gate hubs, AND-gate hubs, backup (noisy-OR) hubs
SCREENS = ((False, "or"), (True, "or"), (True, "and"), (True, "backup"))
COMBINATION_BASELINES = ("additive", "additive_shrunk", "additive_counts", "additive_counts_shrunk",
                         "multiplicative_counts", "multiplicative_counts_shrunk")
#: the cross-term readings (``lazynet_core.cross_terms``, and the oracle's own cross term at the control state)
CROSS_TERMS = ("oracle_local_cross", "control_cross", "arm_slope_change")
#: weights of the arm-slope reading added to ``additive_counts`` (an upper bound: the best is picked on test)
ARM_SLOPE_WEIGHTS = (0.05, 0.1, 0.2, 0.5, 1.0)
#: step (log1p units, down) of the oracle's second difference at the control state
LOCAL_STEP = 0.1  # a third of the cells' own noise (sd 0.3); float32 rounding / step² stays < 1e-4


def local_cross_interaction(oracle, pairs, p_idx: int, *, arms) -> np.ndarray:
    """The planted dynamics' cross term at the control state, extrapolated to the double's doses.

    The oracle's second difference ``F(a+b) − F(a) − F(b) + F(0)`` for both targets stepped down by
    :data:`LOCAL_STEP` from the training control mean, times ``ΔA · ΔB / step²``: the interaction a
    second-order expansion around the control state predicts, which enough cells' co-variation would
    estimate (``lazynet_core.cross_terms``).
    """
    ta, tb = (int(pairs.pert_targets[a][0]) for a in arms)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float32)
    pre = np.asarray(pairs.pre_state(p_idx, "test"), dtype=np.float64)
    inputs = np.repeat(base[None, :], 4, axis=0)
    inputs[[1, 3], ta] -= LOCAL_STEP
    inputs[[2, 3], tb] -= LOCAL_STEP
    out = np.asarray(oracle(inputs), dtype=np.float64)
    second = out[3] - out[1] - out[2] + out[0]
    return second * (pre[ta] - base[ta]) * (pre[tb] - base[tb]) / LOCAL_STEP**2


def arm_slope_blend_name(weight: float) -> str:
    """Method label of ``additive_counts`` plus ``weight`` times the arm-slope reading."""
    return f"additive_counts+{weight:g}·arm_slope"


def cross_term_frame(pairs, oracle) -> pd.DataFrame:
    """Interaction scores of :data:`CROSS_TERMS` on every held-out double, and of ``additive_counts`` plus
    each :data:`ARM_SLOPE_WEIGHTS` times ``arm_slope_change``; tidy like ``interaction_frame``."""
    from lazynet_core.cross_terms import arm_slope_interaction, control_cross_interaction
    from lazynet_core.interactions import (
        additive_counts_interaction,
        double_arms,
        double_interaction,
        interaction_scores,
    )

    records = []
    for p, arms in double_arms(pairs):
        genes = double_interaction(pairs, oracle, p, arms=arms)
        keep = ~genes["is_target"].to_numpy()
        observed = genes["observed"].to_numpy()[keep]
        predictions = {"oracle_local_cross": local_cross_interaction(oracle, pairs, p, arms=arms),
                       "control_cross": control_cross_interaction(pairs, p, arms=arms),
                       "arm_slope_change": arm_slope_interaction(pairs, p, arms=arms)}
        counts = additive_counts_interaction(pairs, arms)
        if counts is not None and predictions["arm_slope_change"] is not None:
            for w in ARM_SLOPE_WEIGHTS:
                predictions[arm_slope_blend_name(w)] = counts + w * predictions["arm_slope_change"]
        for method, predicted in predictions.items():
            if predicted is None:
                continue
            for metric, value in interaction_scores(predicted[keep], observed).items():
                records.append((method, str(pairs.perturbations[p]), metric, value))
    frame = pd.DataFrame.from_records(records, columns=["method", "perturbation", "metric", "value"])
    frame.insert(0, "set", "combinations")
    frame.insert(1, "role", "test")
    frame.insert(2, "reference", "independent")
    return frame


def score_design(*, cells: int, test_fraction: float, redundant: bool, screens, seeds,
                 gate: str = "or") -> pd.DataFrame:
    """The oracle's interaction and combination frames over ``screens`` × split ``seeds``, labelled
    like ``combinations.score_screen`` (``s<screen>:<double>``)."""
    from benchmarks.combinations import screen_with_doubles
    from lazynet_core import datasets
    from lazynet_core.config import PairConfig
    from lazynet_core.data import read_screen
    from lazynet_core.interactions import interaction_frame
    from lazynet_core.metrics import evaluate
    from lazynet_core.pairs import make_pairs

    frames = []
    for screen in screens:
        raw = datasets.hill_screen(n_genes=120, n_cells=cells, seed=screen, n_combinations=20,
                                   redundant=redundant, gate=gate)
        adata = read_screen(raw)
        assert adata.n_obs == screen_with_doubles(screen, n_genes=120, n_cells=cells, n_combinations=20,
                                                  redundant=redundant, gate=gate).n_obs
        doubles = tuple(sorted({p for p in adata.obs["lazynet_perturbation"].unique() if "+" in p}))
        for seed in seeds:
            pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=doubles, seed=seed,
                                                 test_fraction=test_fraction))
            oracle = datasets.planted_hill_predictor(raw, base=pairs.control_mean("train"), genes=pairs.genes)
            inter = pd.concat([interaction_frame(pairs, oracle, name=ORACLE, seed=seed),
                               cross_term_frame(pairs, oracle)], ignore_index=True)
            combo = evaluate(pairs, oracle, methods=COMBINATION_BASELINES, name=ORACLE)
            combo = combo[combo["set"] == "combinations"]
            inter["part"], combo["part"] = "interaction", "combination"  # both are set "combinations"
            for f in (inter, combo):
                f["seed"] = seed
                f["perturbation"] = f"s{screen}:" + f["perturbation"].astype(str)
                frames.append(f)
    return pd.concat(frames, ignore_index=True)


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    """Interaction summaries of the oracle, its nulls and ``additive_counts``; paired oracle − each;
    combination Δ-Pearson of the oracle and the additive baselines."""
    from lazynet_core.interactions import interaction_summary
    from lazynet_core.metrics import compare, records, summarize

    inter = frame[(frame["part"] == "interaction")
                  & frame["metric"].isin(["pearson_interaction", "interaction_explained", "split_half_r"])]
    out: dict[str, Any] = {m: interaction_summary(inter, model=m)
                           for m in (ORACLE, "dose_only", "dose_only_counts", "dose_only_folds",
                                     "additive_counts", "multiplicative_counts", *CROSS_TERMS)}
    paired = pd.concat([compare(inter, model=ORACLE, metric=m)
                        for m in ("pearson_interaction", "interaction_explained")])
    out["paired"] = paired[paired["baseline"] != "additive"].to_dict("records")
    out["cross_terms_vs_additive_counts"] = {}  # each cross-term reading − the no-model count sum
    for m in CROSS_TERMS:
        rows = compare(inter, model=m, metric="pearson_interaction")
        rows = rows[rows["baseline"] == "additive_counts"].to_dict("records")
        if rows:
            out["cross_terms_vs_additive_counts"][m] = rows[0]
    out["arm_slope_added_to_additive_counts"] = {}  # per weight: the blend − additive_counts, paired
    for w in ARM_SLOPE_WEIGHTS:
        rows = compare(inter, model=arm_slope_blend_name(w), metric="pearson_interaction")
        rows = rows[rows["baseline"] == "additive_counts"].to_dict("records")
        if rows:
            out["arm_slope_added_to_additive_counts"][f"{w:g}"] = rows[0]
    combo = frame[frame["part"] == "combination"]
    observed = combo[combo["method"] == "observed"]
    out["combination_observed"] = [r for r in records(observed) if r["method"] == "observed"]
    combo = combo[combo["metric"] == "pearson_delta"]
    out["combination_pearson_delta"] = {
        row["method"]: {"mean": row["mean"], "sd": row["sd"], "n": int(row["n"])}
        for row in summarize(combo).to_dict("records")}
    out["combination_paired"] = compare(combo, model=ORACLE).to_dict("records")
    return out


def stored_runs(*, cells: int, test_fraction: float, redundant: bool, gate: str = "or") -> dict[str, float]:
    """LazyNet's interaction r in every stored ``combinations*.json`` of this design, by file stem."""
    runs = {}
    for path in sorted(RESULTS.glob("combinations*.json")):
        data = json.loads(path.read_text())
        design = data.get("design", {})
        if (design.get("n_cells") != cells or design.get("test_fraction", 0.2) != test_fraction
                or bool(design.get("redundant")) != redundant or "interaction" not in data
                or design.get("gate", "or") != gate
                or design.get("screen_seeds") != [0, 1, 2]):
            continue
        runs[path.stem] = data["interaction"]["lazynet"]["pearson_interaction"]["mean"]
    return runs


def print_summary(label: str, summary: dict[str, Any], runs: dict[str, float]) -> None:
    """One block of figures per design and screen."""
    r = {m: summary[m]["pearson_interaction"]
         for m in (ORACLE, "dose_only", "dose_only_counts", "dose_only_folds", "additive_counts",
                   "multiplicative_counts")}
    print(f"\n{label}: interaction r over {r[ORACLE]['n']} doubles (independent cells; ceiling "
          f"{summary[ORACLE]['ceiling']['mean']:.3f} on {summary[ORACLE]['ceiling']['n']})")
    names = {ORACLE: "planted dynamics (oracle)", "dose_only": "  its arms added in log space",
             "dose_only_counts": "  its arms added in expression", "dose_only_folds": "  its arms' folds multiplied",
             "additive_counts": "additive_counts (no model)",
             "multiplicative_counts": "multiplicative_counts (no model)"}
    for m, name in names.items():
        print(f"  {name:32s} r {r[m]['mean']:.3f} ± {r[m]['sd']:.3f} (> 0 on {r[m]['above_zero']}/{r[m]['n']})")
    names = {"oracle_local_cross": "  its cross term at control", "control_cross": "control_cross (no model)",
             "arm_slope_change": "arm_slope_change (no model)"}
    for m, name in names.items():
        v = summary[m]["pearson_interaction"]
        vs = summary["cross_terms_vs_additive_counts"].get(m, {})
        print(f"  {name:32s} r {v['mean']:.3f} ± {v['sd']:.3f} (> 0 on {v['above_zero']}/{v['n']}); "
              f"− additive_counts {vs.get('mean_diff', np.nan):+.3f}, p = {vs.get('p_wilcoxon', np.nan):.2g}")
    blends = summary["arm_slope_added_to_additive_counts"]
    if blends:
        print("  additive_counts + w·arm_slope − additive_counts: " + " · ".join(
            f"w {w} {row['mean_diff']:+.3f} (p = {row['p_wilcoxon']:.2g})" for w, row in blends.items()))
    for row in summary["paired"]:
        if row["metric"] == "pearson_interaction" and row["baseline"] in (
                "dose_only", "dose_only_counts", "dose_only_folds", "additive_counts", "multiplicative_counts"):
            print(f"  oracle − {row['baseline']:16s} {row['mean_diff']:+.3f} ± {row['sd_diff']:.3f}, "
                  f"{row['wins']}/{row['n']}, p = {row['p_wilcoxon']:.2g}")
    for stem, value in runs.items():
        print(f"  stored LazyNet run {stem}: r {value:.3f}")
    combo = summary["combination_pearson_delta"]
    print("  combination Δ-Pearson: " + " · ".join(f"{m} {v['mean']:.3f}" for m, v in combo.items()))


def main(argv: list[str] | None = None) -> int:
    from lazynet_core import __version__

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one screen, one split, the first design")
    parser.add_argument("--cells", type=int, default=None,
                        help="one design of this many cells (test fraction 0.5) instead of the two stored ones")
    args = parser.parse_args(argv)
    if args.cells is not None and args.cells < 1000:
        parser.error(f"--cells {args.cells}: a screen needs at least 1000 cells to hold 20 doubles and their arms")
    screens, seeds = ((0,), (0,)) if args.quick else ((0, 1, 2), (0, 1, 2))
    designs = DESIGNS[:1] if args.quick else DESIGNS
    if args.cells is not None:
        designs = ((args.cells, 0.5),)
    t0 = time.perf_counter()
    results = []
    for cells, test_fraction in designs:
        for redundant, gate in SCREENS:
            frame = score_design(cells=cells, test_fraction=test_fraction, redundant=redundant,
                                 screens=screens, seeds=seeds, gate=gate)
            summary = summarise(frame)
            runs = stored_runs(cells=cells, test_fraction=test_fraction, redundant=redundant, gate=gate)
            kind = f"redundant hubs, {gate.upper()} gates" if redundant else "standard doubles"
            print_summary(f"{kind}, {cells} cells, test fraction {test_fraction:g}", summary, runs)
            results.append({"cells": cells, "test_fraction": test_fraction, "redundant": redundant,
                            "gate": gate, "summary": summary, "lazynet_runs_pearson_interaction": runs})
    payload = {"benchmark": "interaction_headroom", "results": results,
               "design": {"screen_seeds": list(screens), "split_seeds": list(seeds), "n_genes": 120,
                          "n_combinations": 20},
               "wall_s": time.perf_counter() - t0, "lazynet_version": __version__, "machine": machine_info()}
    print(f"\nwall {payload['wall_s']:.0f} s")
    suffix = ("_quick" if args.quick else "") + (f"_{args.cells}cells" if args.cells is not None else "")
    write_json("interaction_headroom" + suffix, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
