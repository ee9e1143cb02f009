"""Two ways the trained perturbations might improve on control covariance for unseen targets (issue 11,
goal 1), scored without a model, on the folds of ``accuracy.py``.

- ``cc_plus_pm_ex``: control covariance plus PM-ex, the shared response of the training
  perturbations (a model fed only the target's level cannot express a response to "being
  perturbed" at all; this asks whether such a response would help).
- ``cc_upstream_adjusted``: the regression of every gene on the target *and* on the target's
  upstream regulators among control cells. Upstream regulators are the trained perturbations whose
  knock-down moved the target (|z| > 3 on their training cells): conditioning on them removes the
  covariance the target shares with its own regulators (a back-door path), which the observational
  slope mistakes for an effect.

Both are compared with ``control_covariance`` per perturbation (paired Wilcoxon, seeds averaged
first), against the independent control reference, target genes left out.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/unseen_variants.py                 # real, hill, demo
    PYTHONPATH=. python benchmarks/unseen_variants.py --screens real  # one screen

Writes ``benchmarks/results/unseen_variants.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.accuracy import DESIGNS, load_screen
from benchmarks.common import machine_info, write_json

VARIANTS = ("control_covariance", "perturbed_mean_ex", "cc_plus_pm_ex", "cc_upstream_adjusted")
UPSTREAM_Z = 3.0


def training_z(pairs: Any, base: np.ndarray) -> dict[int, np.ndarray]:
    """Per trained single perturbation: its training delta over its SE, gene by gene."""
    ctrl = np.asarray(pairs.X[pairs.cells(-1, "train")].todense(), dtype=np.float64)
    ctrl_se2 = ctrl.var(0, ddof=1) / len(ctrl)
    out = {}
    for q in range(len(pairs.perturbations)):
        cells = pairs.cells(q, "train")
        if len(cells) < 2 or len(pairs.pert_targets[q]) != 1:
            continue
        own = np.asarray(pairs.X[cells].todense(), dtype=np.float64)
        se = np.sqrt(own.var(0, ddof=1) / len(own) + ctrl_se2)
        out[q] = (own.mean(0) - base) / np.maximum(se, 1e-12)
    return out


def upstream_adjusted(centred: np.ndarray, target: int, upstream: list[int], change: float) -> np.ndarray:
    """Δ of every gene: the target's coefficient in the regression on (target, upstream) × its change."""
    cols = [target, *upstream]
    coef = np.linalg.lstsq(centred[:, cols], centred, rcond=None)[0]
    delta = coef[0] * change
    delta[target] = change
    return delta


def score_fold(pairs: Any) -> list[dict[str, Any]]:
    """Δ-Pearson of every variant on the fold's unseen single targets."""
    from lazynet_core.metrics import _pearson, baseline_predictions, reference_mean

    unseen = [int(p) for p in pairs.evaluation_perturbations("test")
              if len(pairs.cells(int(p), "train")) == 0 and len(pairs.pert_targets[int(p)]) == 1]
    if not unseen:
        return []
    preds = baseline_predictions(pairs, perturbations=unseen)
    base = np.asarray(pairs.control_mean("train"), dtype=np.float64)
    ref = np.asarray(reference_mean(pairs, "independent"), dtype=np.float64)
    ctrl = np.asarray(pairs.X[pairs.cells(-1, "train")].todense(), dtype=np.float64)
    centred = ctrl - ctrl.mean(0)
    z = training_z(pairs, base)
    rows = []
    for row, p in enumerate(unseen):
        t = int(pairs.pert_targets[p][0])
        change = float(np.asarray(pairs.pre_state(p, "test"), dtype=np.float64)[t] - base[t])
        upstream = sorted({int(pairs.pert_targets[q][0]) for q, zq in z.items() if abs(zq[t]) > UPSTREAM_Z} - {t})
        deltas = {
            "control_covariance": preds["control_covariance"][row] - base,
            "perturbed_mean_ex": preds["perturbed_mean_ex"][row] - base,
        }
        deltas["cc_plus_pm_ex"] = deltas["control_covariance"] + deltas["perturbed_mean_ex"]
        deltas["cc_upstream_adjusted"] = upstream_adjusted(centred, t, upstream, change)
        keep = np.setdiff1d(np.arange(pairs.n_genes), pairs.pert_targets[p])
        observed = np.asarray(pairs.pert_mean(p, "test"), dtype=np.float64) - ref
        for method, delta in deltas.items():
            rows.append({"perturbation": str(pairs.perturbations[p]), "method": method,
                         "value": _pearson(delta[keep], observed[keep]), "n_upstream": len(upstream)})
    return rows


def run_screen(name: str) -> dict[str, Any]:
    import pandas as pd
    from scipy import stats

    from lazynet_core.config import PairConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.validation import fold_plan

    adata = load_screen(name)
    design = DESIGNS[name]
    labels = adata.obs["lazynet_perturbation"][~adata.obs["lazynet_is_control"].to_numpy(bool)].astype(str)
    rows = []
    for seed in design["seeds"]:
        for held in fold_plan(labels.unique(), folds=design["folds"], seed=int(seed)):
            pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=held, seed=int(seed)))
            rows += [dict(r, seed=int(seed)) for r in score_fold(pairs)]
    frame = pd.DataFrame(rows)
    per = frame.groupby(["perturbation", "method"])["value"].mean().unstack()
    out: dict[str, Any] = {"screen": name, "n": int(len(per)),
                           "mean_upstream": float(frame["n_upstream"].mean()), "methods": {}, "paired": {}}
    print(f"\n{name}: {len(per)} unseen targets, {out['mean_upstream']:.2f} upstream regulators per target "
          f"(|z| > {UPSTREAM_Z:g})")
    for method in VARIANTS:
        out["methods"][method] = {"mean": float(per[method].mean()), "sd": float(per[method].std(ddof=1))}
        print(f"  {method:22s} {per[method].mean():.3f} ± {per[method].std(ddof=1):.3f}")
    for method in ("cc_plus_pm_ex", "cc_upstream_adjusted"):
        d = (per[method] - per["control_covariance"]).dropna().to_numpy()
        p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else float("nan")
        out["paired"][method] = {"mean_diff": float(d.mean()), "wins": int((d > 0).sum()), "n": int(d.size),
                                 "p_wilcoxon": p}
        print(f"  {method} − control_covariance: {d.mean():+.3f}, {int((d > 0).sum())}/{d.size}, p = {p:.2g}")
    return out


def main(argv: list[str] | None = None) -> int:
    from lazynet_core import __version__

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=["real", "hill", "demo"], choices=sorted(DESIGNS))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    payload = {"benchmark": "unseen_variants", "upstream_z": UPSTREAM_Z,
               "screens": [run_screen(name) for name in args.screens],
               "wall_s": time.perf_counter() - t0, "lazynet_version": __version__, "machine": machine_info()}
    write_json("unseen_variants", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
