"""cell-eval (Arc Institute) on held-out perturbations, next to our own delta-Pearson for the same predictions.

For each screen one K-fold split over perturbations (``validation.fold_plan``, fold 0 by default) is
held out; a default LazyNet ensemble (``ModelConfig()``, ``TrainConfig()``: 3 replicas, 40 epochs) is
trained on the rest. LazyNet and the baselines perturbed mean, PM-ex and linear (and the ``null``
baseline as a diagnostic of shared-control flattery) are exported with
``export.predictions_to_anndata`` (predicted cells = training control cells moved onto the predicted
post state, mean-preserving; controls = the independent reference cells in both files) and scored
by ``cell_eval.MetricsEvaluator`` (profile ``full``, one thread). The real file's DE is computed once
per screen and reused; cell-eval's data ceiling (``compute_ceiling``) is computed once per screen.

Our figures for the very same post states (``metrics.delta_metrics``):

- ``pearson_delta``: ours: predicted − training control mean vs observed − independent reference,
  target gene(s) excluded;
- ``pearson_delta_shared_ref``: cell-eval's definition recomputed: predicted − reference vs
  observed − reference over all genes (the control mean on both sides, the target kept);
- ``pearson_delta_shared_ref_ex``: the same without the target gene(s), to split the difference
  into its two causes.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/cell_eval_bench.py --quick          # smoke: 3 epochs
    PYTHONPATH=. python benchmarks/cell_eval_bench.py                  # demo, hill, real (one fold each)

Writes ``benchmarks/results/cell_eval.json`` (``cell_eval_quick.json`` with ``--quick``). Needs
``pip install -r requirements-eval.txt``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import fmt_table, machine_info, write_json

FOLDS = {"demo": 5, "hill": 5, "real": 3}
METHODS = ("lazynet", "perturbed_mean", "perturbed_mean_ex", "linear", "null")
# cell-eval metrics shown in the printed table and the README (all are kept in the JSON)
SHOWN = ("pearson_delta", "mae", "mse_delta", "discrimination_score_l1", "overlap_at_N", "de_direction_match",
         "de_spearman_lfc_sig", "pr_auc")
OURS = ("pearson_delta", "pearson_delta_shared_ref", "pearson_delta_shared_ref_ex", "mse_delta")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    from lazynet_core.metrics import _pearson as pearson

    return pearson(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def our_scores(pairs, posts: np.ndarray, evals: np.ndarray) -> list[dict[str, float]]:
    """Our figures for the exported post states, one dict per perturbation."""
    from lazynet_core.metrics import delta_metrics, noise_ceiling

    base = pairs.control_mean("train").astype(np.float64)
    ref = pairs.control_mean("reference").astype(np.float64)
    out = []
    for row, p in enumerate(evals):
        post = np.clip(posts[row], 0, None)  # what the exported cells average to
        obs = pairs.pert_mean(int(p), "test").astype(np.float64)
        targets = np.asarray(pairs.pert_targets[int(p)], dtype=int)
        keep = np.ones(pairs.n_genes, dtype=bool)
        keep[targets] = False
        scores = delta_metrics(post - base, obs - ref, exclude=targets)
        ceiling = noise_ceiling(pairs, int(p), "test")
        out.append(
            {
                "perturbation": str(pairs.perturbations[p]),
                "pearson_delta": scores["pearson_delta"],
                "mse_delta": scores["mse_delta"],
                "pearson_delta_shared_ref": _pearson(post - ref, obs - ref),
                "pearson_delta_shared_ref_ex": _pearson((post - ref)[keep], (obs - ref)[keep]),
                **{m: ceiling[m] for m in ("ceiling", "split_half_r")},
            }
        )
    return out


def run_cell_eval(pred, real, outdir: Path, *, de_real: str | None, ceiling: bool) -> dict[str, Any]:
    """cell-eval's per-perturbation results (and aggregate ceiling) as plain dicts."""
    from cell_eval import MetricsEvaluator

    from lazynet_core.export import CELL_EVAL_CONTROL, CELL_EVAL_PERT_COL

    evaluator = MetricsEvaluator(
        adata_pred=pred,
        adata_real=real,
        de_real=de_real,
        control_pert=CELL_EVAL_CONTROL,
        pert_col=CELL_EVAL_PERT_COL,
        num_threads=1,
        outdir=str(outdir),
    )
    results, _ = evaluator.compute(profile="full", write_csv=True)
    out: dict[str, Any] = {"per_perturbation": results.to_dicts()}
    if ceiling:
        _, agg = evaluator.compute_ceiling(profile="full", write_csv=False)
        row = agg.to_dicts()[0]
        out["ceiling"] = {k: v for k, v in row.items() if isinstance(v, float) and np.isfinite(v)}
    return out


def _mean_sd(values: list[float]) -> dict[str, float | int | None]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else None, "n": int(arr.size)}


def run_screen(name: str, *, quick: bool, threads: int, folds_run: int, workdir: Path) -> dict[str, Any]:
    from benchmarks.accuracy import load_screen
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.export import heldout_perturbations, predicted_posts, predictions_to_anndata
    from lazynet_core.metrics import baseline_predictions, set_ceiling
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble
    from lazynet_core.validation import fold_plan

    adata = load_screen(name)
    labels = adata.obs["lazynet_perturbation"][~adata.obs["lazynet_is_control"].to_numpy(bool)].astype(str)
    plan = fold_plan(labels.unique(), folds=FOLDS.get(name, 3), seed=0)
    train = TrainConfig(threads=threads, **({"epochs": 3} if quick else {}))
    rows: list[dict[str, Any]] = []
    ceilings: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for k, held in enumerate(plan[:folds_run]):
        print(f"[{name}] fold {k + 1}/{len(plan)} (running {folds_run}): held out {', '.join(held)}", flush=True)
        pairs = make_pairs(adata, PairConfig(split="perturbations", held_out=held, seed=0))
        ensemble = train_ensemble(pairs, ModelConfig(), train)
        evals = heldout_perturbations(pairs)
        posts = {"lazynet": predicted_posts(pairs, ensemble.predict, evals)}
        base = baseline_predictions(pairs, role="test", perturbations=evals)
        posts.update({m: base[m] for m in METHODS if m != "lazynet"})
        de_real = None
        for method in METHODS:
            pred, real = predictions_to_anndata(pairs, posts[method], perturbations=evals, method=method)
            outdir = workdir / name / f"fold{k}" / method
            t1 = time.perf_counter()
            ce = run_cell_eval(pred, real, outdir, de_real=de_real, ceiling=method == "lazynet")
            print(f"  {method}: cell-eval {time.perf_counter() - t1:.1f} s", flush=True)
            if de_real is None:
                de_real = str(outdir / "real_de.csv")  # the observed file's DE, reused by every method
            if "ceiling" in ce:
                ceilings.append(ce["ceiling"])
            ours = {r["perturbation"]: r for r in our_scores(pairs, posts[method], evals)}
            for r in ce["per_perturbation"]:
                p = r.pop("perturbation")
                rows.append({"fold": k, "method": method, "perturbation": p,
                             **{f"ours_{m}": v for m, v in ours[p].items() if m != "perturbation"},
                             **{f"cell_eval_{m}": v for m, v in r.items()}})
    wall = time.perf_counter() - t0
    summary: dict[str, Any] = {}
    metrics = sorted({c for r in rows for c in r if c.startswith(("ours_", "cell_eval_"))})
    for method in METHODS:
        sub = [r for r in rows if r["method"] == method]
        summary[method] = {m: _mean_sd([r.get(m) for r in sub]) for m in metrics}
        halves = _mean_sd([r.get("ours_split_half_r") for r in sub])  # the set's ceiling: halves pooled
        if halves.get("mean") is not None:
            summary[method]["ours_set_ceiling"] = {"mean": set_ceiling(halves["mean"]), "n": halves.get("n")}
    ceiling = {m: float(np.mean([c[m] for c in ceilings if m in c])) for m in sorted({m for c in ceilings for m in c})}
    return {
        "screen": name,
        "shape": list(adata.shape),
        "design": {"folds": FOLDS.get(name, 3), "folds_run": folds_run, "held_out": [list(h) for h in plan[:folds_run]],
                   "train_config": train.to_dict(), "model_config": ModelConfig().to_dict()},
        "summary": summary,
        "cell_eval_ceiling": ceiling,
        "per_perturbation": rows,
        "wall_s": wall,
    }


def table(payloads: list[dict[str, Any]]) -> str:
    """Markdown table: per screen and method, cell-eval's figures next to ours (mean over perturbations)."""
    head = ["screen (n)", "method", "ours Δ-Pearson", "cell-eval def. recomputed", "… without target",
            "cell-eval pearson_delta", "mae", "discrimination L1", "overlap_at_N", "DE direction match"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(s: dict, key: str) -> str:
        v = s.get(key, {})
        if not v or v.get("mean") is None:
            return "–"
        return f"{v['mean']:.3f}" + (f" ± {v['sd']:.3f}" if v.get("sd") is not None else "")

    for data in payloads:
        n = data["summary"]["lazynet"]["ours_pearson_delta"]["n"]
        for method in METHODS:
            s = data["summary"][method]
            lines.append(
                f"| {data['screen']} ({n}) | {method} | {cell(s, 'ours_pearson_delta')} | "
                f"{cell(s, 'ours_pearson_delta_shared_ref')} | {cell(s, 'ours_pearson_delta_shared_ref_ex')} | "
                f"{cell(s, 'cell_eval_pearson_delta')} | {cell(s, 'cell_eval_mae')} | "
                f"{cell(s, 'cell_eval_discrimination_score_l1')} | {cell(s, 'cell_eval_overlap_at_N')} | "
                f"{cell(s, 'cell_eval_de_direction_match')} |"
            )
        c = data["cell_eval_ceiling"]
        if c:
            ours = data["summary"]["lazynet"]  # the set rule where the run stored it (since 2026-12-04)
            ours_c = (ours.get("ours_set_ceiling") or ours.get("ours_ceiling") or {}).get("mean")
            lines.append(
                f"| {data['screen']} | ceiling | {'–' if ours_c is None else f'{ours_c:.3f}'} | | | "
                f"{c.get('pearson_delta', float('nan')):.3f} | | {c.get('discrimination_score_l1', float('nan')):.3f} | "
                f"{c.get('overlap_at_N', float('nan')):.3f} | {c.get('de_direction_match', float('nan')):.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=["demo", "hill", "real"])
    parser.add_argument("--quick", action="store_true", help="3 training epochs (smoke test)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folds-run", type=int, default=1, help="folds of each screen's plan to run (default 1)")
    parser.add_argument("--keep", default=None, help="keep cell-eval's output folders here (default: temporary)")
    args = parser.parse_args(argv)
    logging.getLogger("cell_eval").setLevel(logging.WARNING)
    try:
        import cell_eval  # noqa: F401
    except ImportError:
        print("cell-eval is not installed: pip install -r requirements-eval.txt", file=sys.stderr)
        return 2
    from importlib.metadata import version

    from lazynet_core import __version__

    payloads = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        for name in args.screens:
            payloads.append(run_screen(name, quick=args.quick, threads=args.threads, folds_run=args.folds_run,
                                       workdir=workdir))
            rows = []
            for method in METHODS:
                s = payloads[-1]["summary"][method]
                rows.append({"method": method, **{f"ours {m}": s[f"ours_{m}"]["mean"] for m in OURS},
                             **{m: s[f"cell_eval_{m}"]["mean"] for m in SHOWN if f"cell_eval_{m}" in s}})
            print(fmt_table(rows, ["method", *(f"ours {m}" for m in OURS), *SHOWN]))
    md = table(payloads)
    print("\n" + md)
    write_json(
        "cell_eval" + ("_quick" if args.quick else ""),
        {
            "screens": payloads,
            "readme_table": md,
            "versions": {"cell-eval": version("cell-eval"), "pdex": version("pdex"), "lazynet": __version__},
            "export": "predicted cells = training control cells recentred + predicted post state (mean-preserving, "
                      ">= 0); controls = independent reference cells in both files; log1p CP10k",
            "machine": machine_info(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
