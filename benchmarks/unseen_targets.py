"""What the screen supports for unseen targets: control covariance against everything linear that adds
the trained perturbations to it (issue 11).

LazyNet has not beaten control covariance on targets it never trained on (``accuracy.py``). This
script asks whether the *data* allow it: it scores control covariance, PM-ex, the linear model and
the estimators of :mod:`lazynet_core.unseen` — control covariance plus the shared perturbation
component (cross-fitted weights), control covariance adjusted for the target's measured
ancestors (backdoor adjustment) and control covariance plus what those ancestors' knock-downs did
through the target — and control covariance plus PM-ex with unit weights (no fit: a
model fed only the target's level cannot respond to "being perturbed" at all; this asks whether such
a response would help), by the same cross-validation as ``accuracy.py`` (LOPO × 3 seeds on
the real screen; 5-fold × 5 seeds on the demo and Hill screens), against the independent control
reference, with paired Wilcoxon tests over perturbations. No model is trained (under 20 s a screen
on a quiet 2-core VM), so LazyNet's figures are read from ``results/accuracy_*.json`` and shown
beside them. On the demo (log-linear, planted network known) it also scores the oracle
``planted_total_effect``, the network's noise-free total effect of each target (an oracle reference,
in log-mean space; leaves have none). It also lists, per real target, how far the knock-down moved the target itself (log
units), which bounds what any predictor of the form "effect ∝ the target's change" can show.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/unseen_targets.py                 # real, demo, hill
    PYTHONPATH=. python benchmarks/unseen_targets.py --screens real --seeds 0
    PYTHONPATH=. python benchmarks/unseen_targets.py --demo-controls 150 600 2400 9600   # ~2 min
    PYTHONPATH=. python benchmarks/unseen_targets.py --hill-controls 150 600 2400 9600   # ~2 min
    PYTHONPATH=. python benchmarks/unseen_targets.py --real-controls 150 600 2400 7733   # ~4 min

Writes ``benchmarks/results/unseen_targets.json`` (``unseen_targets_controls.json`` with
``--demo-controls``: one demo-design screen with the most controls asked for, its controls
subsampled to N, to show how the ceiling of every control-cell estimator moves with the number of
controls; ``unseen_targets_controls_hill.json`` and ``unseen_targets_controls_real.json`` the same on
the Hill design and on the real screen's own 7,733 controls; with ``--keep-reference``,
``*_train.json``: only each fold's training controls subsampled, the independent reference whole).
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
from benchmarks.accuracy import DESIGNS, load_screen
from benchmarks.common import RESULTS, fmt_table, machine_info, write_json

# planted_total_effect (an oracle: the planted network's noise-free total effect) is added on the demo
METHODS = ("control_covariance", "pooled_covariance", "ccov_adjusted", "ccov_ancestors", "ccov_ancestors_ls", "ccov_shared",
           "ccov_plus_pm_ex", "perturbed_mean_ex", "linear", "null")
LAZYNET_RUNS = {"published": "_published", "covariance start (k = 16)": "_control_covariance",
                "covariance recipe (k = 256)": "_control_covariance_k256", "anchored": "_anchored",
                "anchored, shrink 2": "_anchored_shrink2", "anchored_counts": "_anchored_counts",
                "anchored_counts, shrink 2": "_anchored_counts_shrink2", "anchored_pooled": "_anchored_pooled"}


def _oracle_effects(raw, genes) -> np.ndarray | None:
    """The planted network's total effects over ``genes`` on a log-linear synthetic screen, else None."""
    from lazynet_core import datasets

    if raw is None or raw.uns.get("synthetic", {}).get("kind") != "log-linear":
        return None  # Hill dynamics have no constant total effect; the real screen has no truth
    return datasets.planted_total_effects(raw, genes=genes)


def score_fold(pairs, total: np.ndarray | None = None) -> list[tuple]:
    """Tidy rows (method, perturbation, metric, value) of one fold's held-out single targets.

    With ``total`` (the planted network's total effects, genes x genes) the oracle
    ``planted_total_effect`` (each target's row of ``total`` times its measured change) is scored too:
    an oracle reference (the true network effect in log-mean space; undefined for leaf targets).
    """
    from lazynet_core.metrics import baseline_predictions, delta_metrics, reference_mean
    from lazynet_core.unseen import unseen_target_estimates

    evals = np.array([p for p in pairs.evaluation_perturbations("test")
                      if pairs.test_perts[p] and "+" not in pairs.perturbations[p]], dtype=int)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    ref = reference_mean(pairs, "independent")
    preds = {**baseline_predictions(pairs, perturbations=evals), **unseen_target_estimates(pairs, perturbations=evals)}
    # unit weights, no fit: would a response to "being perturbed" at all add to control covariance?
    preds["ccov_plus_pm_ex"] = preds["control_covariance"] + preds["perturbed_mean_ex"] - base
    if total is not None:
        preds["planted_total_effect"] = np.array(
            [base + _target_change(pairs, p, base) * total[pairs.pert_targets[p][0]] for p in evals])
    rows = []
    for row, p in enumerate(evals):
        targets = np.asarray(pairs.pert_targets[p], dtype=int)
        obs = np.asarray(pairs.pert_mean(int(p), "test"), dtype=np.float64) - ref
        label = str(pairs.perturbations[p])
        rows.append(("target_change", label, "log_units", _target_change(pairs, p, base)))
        for method in [m for m in (*METHODS, "planted_total_effect") if m in preds]:
            scores = delta_metrics(preds[method][row] - base, obs, exclude=targets)
            rows += [(method, label, m, scores[m]) for m in ("pearson_delta", "norm_ratio", "slope")]
    return rows


def _target_change(pairs, p: int, base: np.ndarray) -> float:
    """How far perturbation ``p``'s knock-down moved its (first) target, log units."""
    target = int(pairs.pert_targets[p][0])
    return float(pairs.pre_state(int(p))[target] - base[target])


def _fewer_training_controls(pairs, n: int, rng: np.random.Generator):
    """``pairs`` with only ``n`` of its training controls (a seeded subset), the independent
    reference untouched. The rest become validation cells, which no covariance estimator reads; the
    ``null`` baseline, which averages validation and test controls, gains them (it is not quoted)."""
    import dataclasses

    train = np.flatnonzero((pairs.cell_pert == -1) & (pairs.cell_role == "train"))
    role = pairs.cell_role.copy()
    role[rng.permutation(train)[n:]] = "val"
    return dataclasses.replace(pairs, cell_role=role, _cache={})


def _read(name: str, raw=None):
    """``raw`` (or the benchmark's screen ``name``) and the screen as ``read_screen`` gives it."""
    from lazynet_core import datasets
    from lazynet_core.data import read_screen

    if raw is None and name == "demo":
        raw = datasets.load_demo()
    return raw, (load_screen(name) if raw is None else read_screen(raw))


def _fold_pairs(name: str, adata, seed: int):
    """(fold, pairs) of every fold of ``seed`` under screen ``name``'s design (perturbation split)."""
    from lazynet_core.config import PairConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.validation import fold_plan

    labels = adata.obs["lazynet_perturbation"][~adata.obs["lazynet_is_control"].to_numpy(bool)].astype(str)
    for fold, held in enumerate(fold_plan(labels.unique(), folds=DESIGNS[name]["folds"], seed=seed)):
        yield fold, make_pairs(adata, PairConfig(split="perturbations", held_out=held, seed=seed))


def run_screen(name: str, seeds: tuple[int, ...], *, raw=None, train_controls: int | None = None) -> pd.DataFrame:
    """Score every fold of screen ``name`` (or of ``raw``, an unread synthetic screen, with name's design).

    ``train_controls`` keeps only that many of each fold's training controls (the same seeded subset
    order at every count, so smaller sets lie inside larger ones) and the reference as it was.
    """
    raw, adata = _read(name, raw)
    total = _oracle_effects(raw, adata.var_names)
    frames = []
    for seed in seeds:
        for fold, pairs in _fold_pairs(name, adata, seed):
            if train_controls is not None:
                pairs = _fewer_training_controls(pairs, train_controls, np.random.default_rng([seed, fold]))
            rows = score_fold(pairs, total)
            frames.append(pd.DataFrame(rows, columns=["method", "perturbation", "metric", "value"])
                          .assign(seed=seed, fold=fold))
        print(f"[{name}] seed {seed} done", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(set="held_out_perturbations", reference="independent", role="test")


def slope_agreement(name: str, *, raw=None, seed: int = 0) -> dict[str, Any]:
    """How noisy the observational signal is (``observational.slope_agreement``) on the first fold of
    ``seed``: the covariance slopes of two halves of the training controls against each other, and of
    one half against as many perturbed training cells (each group centred on its own mean)."""
    import dataclasses

    from lazynet_core.observational import slope_agreement as agreement_of

    _, pairs = next(_fold_pairs(name, _read(name, raw)[1], seed))
    return dataclasses.asdict(agreement_of(pairs, seed=seed))


def lazynet_rows(name: str) -> list[dict[str, Any]]:
    """LazyNet's unseen-target Δ-Pearson per recipe, from ``results/accuracy_<screen>*.json``."""
    out = []
    for recipe, suffix in LAZYNET_RUNS.items():
        path = RESULTS / f"accuracy_{name}{suffix}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for r in data["records"]:
            if (r["set"], r["reference"], r["method"], r["metric"]) == (
                    "held_out_perturbations", "independent", "lazynet", "pearson_delta"):
                paired = {p["baseline"]: p for p in data["paired"]
                          if p["set"] == "held_out_perturbations" and p["reference"] == "independent"}
                cc, pc = paired.get("control_covariance", {}), paired.get("pooled_covariance", {})
                out.append({"recipe": recipe, "mean": r["mean"], "sd": r["sd"], "n": r["n"],
                            "minus_control_covariance": cc.get("mean_diff"), "p": cc.get("p_wilcoxon"),
                            "minus_pooled_covariance": pc.get("mean_diff"), "p_pooled": pc.get("p_wilcoxon")})
    return out


def report(name: str, frame: pd.DataFrame, *, label: str | None = None) -> dict[str, Any]:
    from lazynet_core.metrics import compare, records, summarize

    scored = frame[frame.method != "target_change"]
    summary = summarize(scored)
    methods = [m for m in (*METHODS, "planted_total_effect") if m in set(scored.method)]
    paired = pd.concat([compare(scored, model=m, metric="pearson_delta").assign(model=m)
                        for m in ("pooled_covariance", "ccov_adjusted", "ccov_ancestors", "ccov_ancestors_ls",
                                  "ccov_shared", "ccov_plus_pm_ex", "control_covariance", "planted_total_effect")
                       if m in methods],
                       ignore_index=True)
    rows = []
    for method in methods:
        sub = summary[(summary.method == method)].set_index("metric")
        row = {"method": method, "pearson_delta": f"{sub.at['pearson_delta', 'mean']:.3f} ± "
                                                  f"{sub.at['pearson_delta', 'sd']:.3f}",
               "norm_ratio": sub.at["norm_ratio", "mean"], "n": int(sub.at["pearson_delta", "n"])}
        for versus in ("control_covariance", "perturbed_mean_ex"):
            hit = paired[(paired.model == method) & (paired.baseline == versus)]
            if not hit.empty:
                h = hit.iloc[0]
                row[f"− {versus}"] = f"{h.mean_diff:+.3f} ({h.wins}/{h.n}, p = {h.p_wilcoxon:.2g})"
        rows.append(row)
    print(f"\n{label or name}: unseen targets, Δ-Pearson against the independent reference (mean ± sd over perturbations)")
    print(fmt_table(rows, ["method", "pearson_delta", "norm_ratio", "n", "− control_covariance",
                           "− perturbed_mean_ex"]))
    lazynet = lazynet_rows(name)
    if lazynet:
        print("LazyNet, same cross-validation (results/accuracy_*.json):")
        print(fmt_table(lazynet, ["recipe", "mean", "sd", "n", "minus_control_covariance", "p",
                                  "minus_pooled_covariance", "p_pooled"]))
    per_target = (frame[frame.metric.isin(["pearson_delta", "log_units"])]
                  .groupby(["perturbation", "method"])["value"].mean().unstack("method"))
    if name == "real":
        print("\nper target (seeds averaged): the target's own change and each predictor's Δ-Pearson")
        print(per_target[["target_change", *METHODS]].round(3).sort_values("target_change").to_string())
    return {"records": records(scored), "paired": paired.to_dict("records"), "lazynet": lazynet,
            "per_target": per_target.reset_index().to_dict("records")}


SWEEP_FILES = {"demo": "unseen_targets_controls", "hill": "unseen_targets_controls_hill",
               "real": "unseen_targets_controls_real"}


def _sweep_screen(screen: str, counts: list[int], *, default: bool = False):
    """The raw screen of a control sweep and each control's rank (a control is kept at count N when
    its rank < N, so every smaller set of controls lies inside every larger one). ``default``: the
    benchmark's own screen, whatever ``counts``."""
    import anndata as ad

    from lazynet_core import datasets

    if screen == "demo":
        full = datasets.load_demo() if default else datasets.demo_screen(n_controls=max(counts))
    elif screen == "hill":
        full = datasets.hill_screen() if default else datasets.hill_screen(n_controls=max(counts))
    else:
        full = ad.read_h5ad(Path(__file__).resolve().parent.parent / "assets" / "schraivogel2020_tapseq_k562_crispri.h5ad")
    is_control = (full.obs["perturbation"] == ("non-targeting" if screen == "real" else datasets.CONTROL)).to_numpy()
    if screen == "real" and not default and max(counts) > is_control.sum():
        raise SystemExit(f"the real screen has {is_control.sum()} control cells; asked for {max(counts)}")
    rank = np.full(len(full), -1)
    # synthetic controls are in random order already (the demo's stored sweep reads them in file order);
    # the real file's are in acquisition order, so they are ranked by a fixed permutation
    order = np.flatnonzero(is_control)
    rank[order if screen != "real" else np.random.default_rng(0).permutation(order)] = np.arange(len(order))
    return full, is_control, rank


def _training_controls(screen: str, raw, seed: int) -> int:
    """Training controls of the first fold of ``seed`` (what ``--keep-reference`` subsamples)."""
    _, pairs = next(_fold_pairs(screen, _read(screen, raw)[1], seed))
    return len(pairs.cells(-1, "train"))


def control_sweep(counts: list[int], seeds: tuple[int, ...], *, screen: str = "demo",
                  keep_reference: bool = False) -> int:
    """Unseen targets with more (or fewer) control cells: does the ceiling move?

    On the demo and Hill designs one screen with ``max(counts)`` controls is generated (its perturbed
    cells and network do not depend on the count) and its controls subsampled, so network, gene
    means and perturbed cells are the same at every count; on the real screen its 7,733 controls are
    subsampled (training and reference controls alike, as on the synthetic ones). With
    ``keep_reference`` the screen is the benchmark's own and N is the number of *training* controls
    per fold (all of them where it has fewer), the independent reference kept whole: only the
    estimators' cells change, not the yardstick.
    """
    full, is_control, rank = _sweep_screen(screen, counts, default=keep_reference)
    payload: dict[str, Any] = {"machine": machine_info(), "screen": screen, "seeds": list(seeds),
                               "folds": DESIGNS[screen]["folds"], "keep_reference": keep_reference,
                               "n_controls": {}}
    if keep_reference:  # N above what a fold has keeps them all: record what there is
        payload["training_controls_first_fold"] = _training_controls(screen, full, seeds[0])
    for n in counts:
        t0 = time.perf_counter()
        if keep_reference:
            frame = run_screen(screen, seeds, raw=full.copy(), train_controls=n)
        else:
            frame = run_screen(screen, seeds, raw=full[~is_control | (rank < n)].copy())
        label = f"{screen}, {n} {'training ' if keep_reference else ''}controls"
        payload["n_controls"][str(n)] = {**report(f"{screen}_controls{n}", frame, label=label),
                                         "wall_s": time.perf_counter() - t0}
    write_json(SWEEP_FILES[screen] + ("_train" if keep_reference else ""), payload)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=["real", "demo", "hill"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: accuracy.py's design")
    parser.add_argument("--demo-controls", type=int, nargs="+", default=None, metavar="N",
                        help="instead: the demo screen regenerated with N control cells each "
                             "(writes unseen_targets_controls.json)")
    for screen in ("hill", "real"):
        parser.add_argument(f"--{screen}-controls", type=int, nargs="+", default=None, metavar="N",
                            help=f"instead: the {screen} screen with N control cells each "
                                 f"(writes {SWEEP_FILES[screen]}.json)")
    parser.add_argument("--keep-reference", action="store_true",
                        help="with a control sweep: N is the number of training controls per fold and the "
                             "independent reference stays whole (writes *_train.json)")
    args = parser.parse_args(argv)
    sweeps = [screen for screen in ("demo", "hill", "real") if getattr(args, f"{screen}_controls")]
    if len(sweeps) > 1 or (args.keep_reference and not sweeps):
        parser.error("give one of --demo-controls, --hill-controls, --real-controls (--keep-reference only with one)")
    for screen in ("demo", "hill", "real"):
        counts = getattr(args, f"{screen}_controls")
        if counts:
            return control_sweep(counts, tuple(args.seeds) if args.seeds else DESIGNS[screen]["seeds"],
                                 screen=screen, keep_reference=args.keep_reference)
    payload: dict[str, Any] = {"machine": machine_info(), "screens": {}}
    for name in args.screens:
        seeds = tuple(args.seeds) if args.seeds else DESIGNS[name]["seeds"]
        t0 = time.perf_counter()
        frame = run_screen(name, seeds)
        agreement = slope_agreement(name, seed=seeds[0])
        print(f"[{name}] covariance slopes, median r over genes (first fold, {agreement['n_half']} cells each): "
              f"control half vs control half {agreement['controls_vs_controls']:.3f}, "
              f"control half vs perturbed cells {agreement['controls_vs_perturbed']:.3f}")
        payload["screens"][name] = {**report(name, frame), "seeds": list(seeds), "folds": DESIGNS[name]["folds"],
                                    "slope_agreement": agreement, "wall_s": time.perf_counter() - t0}
    write_json("unseen_targets" if args.seeds is None else "unseen_targets_partial", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
