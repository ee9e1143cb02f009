"""Planted-network recovery: LazyNet's consensus Jacobian next to four baselines (issue 4).

For a trained ensemble and the :class:`~lazynet_core.pairs.Pairs` it was trained on, every scorer
ranks ordered gene pairs ``s -> t`` (frames: rows = targets, columns = sources) and
``enrichment.recovery_table`` gives AUROC / AUPRC against the planted network on three pair sets:

``perturbed``
    the regulator ``s`` was perturbed alone in the *training* perturbations (what the model and the
    fold-change baseline saw; held-out targets count as unperturbed),
``unperturbed``
    every other regulator,
``all``
    every ordered pair (diagonal excluded).

Scorers:

``lazynet_jacobian``
    ``|J|`` of the ensemble's consensus Jacobian ``jacobian.jacobian(ensemble)`` at the training
    control mean (dense; fine up to ~2k genes). Computed from the model only.
``fold_change``
    ``|mean(train cells of s) - mean(train controls)|`` (NaN off the perturbed regulators, so it is
    compared on the perturbed set only).
``fold_change_z``
    the same change over its Welch standard error, ``|Δ| / sqrt(var_s/n_s + var_c/n_c + 0.01²)``
    (the floor keeps a gene silent in controls, or a one-cell perturbation, from a near-infinite z):
    fold change with each gene's noise taken into account, a second bar for a model trained with
    ``TrainConfig.shrink``. Dense over the training cells: a benchmark for screens of ≤ a few
    thousand genes, not for paper scale.
``correlation``
    ``|Pearson r|`` across training control cells (0 for a gene constant across them).
``pooled_correlation``
    the same over the training controls *and* the trained perturbations' training cells, each group
    centred on its own mean (what ``ModelConfig(covariance_cells="pooled")`` starts from).
``regulator_expression``
    the regulator's mean control expression (a trivial score; it wins on "all" pairs when
    regulators are simply the highly expressed genes).
``ridge_linear``
    a ridge-regularised linear one-step model fitted on the same kind of training pairs
    (``Pairs.sample_epoch`` / ``Pairs.batch``): ``post - pre ≈ (pre - control_mean) B + c``,
    closed form ``B = (X'X + λ I)^-1 X'Y`` on centred ``X, Y``, ``λ = alpha · trace(X'X) / G``;
    its Jacobian is ``J = B'``.

Run on its own (trains a default ensemble per screen)::

    PYTHONPATH=. python benchmarks/network_recovery.py --screens demo hill --seeds 0
    PYTHONPATH=. python benchmarks/network_recovery.py --recipe anchored --shrink 2 --seeds 0 1 2

``accuracy.py`` calls :func:`recovery_for_ensemble` on the ensembles it trains.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import fmt_table, machine_info, write_json

RIDGE_ALPHA = 0.1
RIDGE_EPOCHS = 2
SE_FLOOR = 0.01  # log units: the smallest standard error fold_change_z divides by


def truth_frame(raw_uns: dict) -> pd.DataFrame:
    """The planted network as a ``source, target, weight`` frame."""
    net = raw_uns["planted_network"]
    return pd.DataFrame({"source": np.asarray(net["source"]).astype(str),
                         "target": np.asarray(net["target"]).astype(str),
                         "weight": np.asarray(net["weight"], dtype=float)})


def training_singles(pairs: Any) -> dict[str, int]:
    """Target gene -> perturbation index of single-target perturbations with training cells."""
    out = {}
    for p, _label in enumerate(pairs.perturbations):
        if len(pairs.pert_targets[p]) == 1 and len(pairs.cells(p, "train")):
            out[str(pairs.genes[pairs.pert_targets[p][0]])] = p
    return out


def fold_change_z(pairs: Any, singles: dict[str, int]) -> pd.DataFrame:
    """|Welch z| of each trained single's change against the training controls (targets × sources)."""
    from lazynet_core import enrichment

    genes = list(pairs.genes.astype(str))
    ctrl = np.asarray(pairs.X[pairs.cells(-1, "train")].todense(), dtype=np.float64)
    var_c = ctrl.var(axis=0, ddof=1) / len(ctrl)
    z = {}
    for gene, p in singles.items():
        own = np.asarray(pairs.X[pairs.cells(p, "train")].todense(), dtype=np.float64)
        var_p = own.var(axis=0, ddof=1) / len(own) if len(own) > 1 else np.zeros(len(genes))
        z[gene] = (own.mean(axis=0) - ctrl.mean(axis=0)) / np.sqrt(var_p + var_c + SE_FLOOR**2)
    return enrichment.fold_change_scores(np.zeros(len(genes)), z, genes)


def ridge_one_step(pairs: Any, *, alpha: float = RIDGE_ALPHA, epochs: int = RIDGE_EPOCHS, seed: int = 0,
                   batch_size: int = 1024) -> pd.DataFrame:
    """Ridge linear one-step model on training pairs; returns its Jacobian frame (targets x sources).

    ``Y = post - pre`` is regressed on ``X = pre - control_mean`` with an intercept (both centred)
    over ``epochs`` epochs of pairs drawn like the model's (``Pairs.sample_epoch(rng)``, densified
    with ``Pairs.batch``), accumulating ``X'X`` and ``X'Y`` batch by batch (no pair matrix held).
    """
    rng = np.random.default_rng([seed, 7919])
    G = pairs.n_genes
    cm = pairs.control_mean("train").astype(np.float64)
    xtx = np.zeros((G, G))
    xty = np.zeros((G, G))
    sx = np.zeros(G)
    sy = np.zeros(G)
    n = 0
    for _ in range(epochs):
        epoch = pairs.sample_epoch(rng)
        for start in range(0, len(epoch), batch_size):
            pre, post = pairs.batch(epoch, slice(start, start + batch_size))
            x = pre.astype(np.float64) - cm
            y = post.astype(np.float64) - pre
            xtx += x.T @ x
            xty += x.T @ y
            sx += x.sum(0)
            sy += y.sum(0)
            n += len(x)
    mx, my = sx / n, sy / n
    xtx_c = xtx - n * np.outer(mx, mx)
    xty_c = xty - n * np.outer(mx, my)
    lam = alpha * np.trace(xtx_c) / G
    B = np.linalg.solve(xtx_c + lam * np.eye(G), xty_c)  # (sources x targets)
    names = pd.Index(pairs.genes.astype(str))
    frame = pd.DataFrame(B.T, index=names.rename("target"), columns=names.rename("source"))
    np.fill_diagonal(frame.values, np.nan)
    return frame


def score_frames(ensemble: Any, pairs: Any, *, seed: int = 0, jacobian_result: Any = None
                 ) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """All scorers' frames for one ensemble and its pairs, plus the seconds each took."""
    from lazynet_core import enrichment, jacobian, metrics

    genes = list(pairs.genes.astype(str))
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    jres = jacobian_result if jacobian_result is not None else jacobian.jacobian(ensemble)
    secs["lazynet_jacobian"] = time.perf_counter() - t0
    jframe = jres.to_frame("mean")
    cm = pairs.control_mean("train")
    singles = training_singles(pairs)
    t0 = time.perf_counter()
    fc = enrichment.fold_change_scores(cm, {g: pairs.pert_mean(p, "train") for g, p in singles.items()}, genes)
    secs["fold_change"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fcz = fold_change_z(pairs, singles)
    secs["fold_change_z"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    corr = enrichment.correlation_scores(pairs.X[pairs.cells(-1, "train")], genes)
    # A gene constant across control cells (never detected) has no correlation: r = 0, not NaN
    # (NaN would make the whole pair set unscorable under recovery_table's missing="nan").
    corr = corr.fillna(0.0)
    np.fill_diagonal(corr.values, np.nan)
    secs["correlation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pooled = enrichment.correlation_scores(metrics.centred_training_cells(pairs, cells="pooled"), genes)
    np.fill_diagonal(pooled.values, np.nan)
    secs["pooled_correlation"] = time.perf_counter() - t0
    reg = enrichment.regulator_expression_scores(cm, genes)
    t0 = time.perf_counter()
    ridge = ridge_one_step(pairs, seed=seed)
    secs["ridge_linear"] = time.perf_counter() - t0
    frames = {"lazynet_jacobian": jframe, "fold_change": fc, "fold_change_z": fcz, "correlation": corr,
              "pooled_correlation": pooled, "regulator_expression": reg, "ridge_linear": ridge}
    return frames, secs


def recovery_for_ensemble(ensemble: Any, pairs: Any, truth: pd.DataFrame, *, seed: int = 0
                          ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``recovery_table`` of every scorer on the three pair sets, plus extra facts (sign accuracy)."""
    from lazynet_core import enrichment

    frames, secs = score_frames(ensemble, pairs, seed=seed)
    perturbed = list(training_singles(pairs))
    table = enrichment.recovery_table(frames, truth, perturbed)
    extra = {"seconds": secs, "n_perturbed_regulators": len(perturbed),
             "sign_accuracy": {m: _sign_accuracy(frames[m], truth, perturbed)
                               for m in ("lazynet_jacobian", "ridge_linear")}}
    return table, extra


def _sign_accuracy(frame: pd.DataFrame, truth: pd.DataFrame, perturbed: list[str]) -> dict[str, float]:
    """Fraction of planted edges whose score has the planted sign (perturbed / unperturbed regulators)."""
    ti = frame.index.get_indexer(truth["target"])
    si = frame.columns.get_indexer(truth["source"])
    ok = (ti >= 0) & (si >= 0) & (ti != si)
    vals = frame.to_numpy()[ti[ok], si[ok]]
    sign = np.sign(truth["weight"].to_numpy()[ok])
    pert = truth["source"].to_numpy()[ok]
    is_p = np.isin(pert, perturbed)
    out = {}
    for name, mask in (("perturbed", is_p), ("unperturbed", ~is_p), ("all", np.ones_like(is_p))):
        out[name] = float(np.mean(np.sign(vals[mask]) == sign[mask])) if mask.any() else float("nan")
    return out


def aggregate(tables: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd across seeds of AUROC / AUPRC per screen × pairing × method × pair set."""
    keys = [k for k in ("screen", "pairing", "method", "pair_set") if k in tables.columns]
    g = tables.groupby(keys, sort=False)
    out = g.agg(auroc_mean=("auroc", "mean"), auroc_sd=("auroc", "std"), auprc_mean=("auprc", "mean"),
                auprc_sd=("auprc", "std"), prevalence=("prevalence", "mean"), n_pos=("n_pos", "mean"),
                n_seeds=("auroc", "count")).reset_index()
    return out


def print_recovery(agg: pd.DataFrame) -> None:
    """One block per screen × pairing: methods as rows, pair sets as columns (AUROC / AUPRC)."""
    for (screen, pairing), block in agg.groupby(["screen", "pairing"], sort=False):
        print(f"\nplanted-network recovery: {screen}, pairing {pairing} (mean ± sd over seeds; "
              f"AUROC / AUPRC; NaN = scorer cannot score that set)")
        rows = []
        for method, sub in block.groupby("method", sort=False):
            row = {"method": method}
            for _, r in sub.iterrows():
                def pm(m, s):
                    if not np.isfinite(m):
                        return "NaN"
                    return f"{m:.3f}" + (f"±{s:.3f}" if np.isfinite(s) else "")
                row[r["pair_set"]] = f"{pm(r['auroc_mean'], r['auroc_sd'])} / {pm(r['auprc_mean'], r['auprc_sd'])}"
            rows.append(row)
        prev = {r["pair_set"]: r["prevalence"] for _, r in block.drop_duplicates("pair_set").iterrows()}
        print(fmt_table(rows, ["method", "perturbed", "unperturbed", "all"]))
        print("  prevalence (AUPRC of a random score): "
              + ", ".join(f"{k} {v:.4f}" for k, v in prev.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", nargs="+", default=["demo", "hill"], choices=["demo", "hill"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--start", default="zero", choices=["zero", "control_covariance"],
                        help="ModelConfig.start of the trained ensembles")
    parser.add_argument("--k", type=int, default=None, help="PairConfig.k (control cells per pre-state)")
    parser.add_argument("--recipe", default=None, help="a named recipe (config.RECIPES); overrides --start")
    parser.add_argument("--shrink", type=float, default=0.0, help="TrainConfig.shrink (standard errors)")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.accuracy import load_screen
    from lazynet_core import datasets
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig, recipe_configs
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble
    torch.set_num_threads(args.threads)
    model, pair = ModelConfig(start=args.start), PairConfig()
    if args.recipe:
        model, pair = recipe_configs(args.recipe)
    tables = []
    for screen in args.screens:
        adata = load_screen(screen)
        raw = datasets.load_demo() if screen == "demo" else datasets.hill_screen()
        truth = truth_frame({"planted_network": dict(raw.uns["planted_network"])})
        for seed in args.seeds:
            pairs = make_pairs(adata, pair.replace(seed=seed, **({"k": args.k} if args.k else {})))
            tc = TrainConfig(seed=seed, threads=args.threads, shrink=args.shrink)
            if args.epochs:
                tc = tc.replace(epochs=args.epochs)
            ens = train_ensemble(pairs, model, tc)
            table, _ = recovery_for_ensemble(ens, pairs, truth, seed=seed)
            tables.append(table.assign(screen=screen, pairing="pseudobulk", seed=seed))
    all_tables = pd.concat(tables, ignore_index=True)
    agg = aggregate(all_tables)
    print_recovery(agg)
    suffix = ("" if args.start == "zero" else f"_{args.start}") + (f"_k{args.k}" if args.k else "")
    if args.recipe:
        suffix = f"_{args.recipe}"
    suffix += f"_shrink{args.shrink:g}" if args.shrink else ""
    # start / k are the command line's; with --recipe the recipe's configs below are what trained
    write_json("network_recovery" + suffix, {"start": args.start, "k": args.k, "recipe": args.recipe,
                                            "shrink": args.shrink, "model_config": model.to_dict(),
                                            "pair_config": pair.to_dict(),
                                            "benchmark": "network_recovery",
                                            "per_seed": all_tables.to_dict("records"),
                                            "summary": agg.to_dict("records"), "machine": machine_info()})


if __name__ == "__main__":
    main()
