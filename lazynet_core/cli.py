"""Command line: ``python -m lazynet_core demo|train|evaluate|predict|network ...``.

Bad input exits with code 2 and one line on stderr; a progress bar is drawn on a terminal and plain
lines are printed otherwise (logs, CI).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from .config import RECIPES, ModelConfig, PairConfig, TrainConfig, recipe_configs
from .errors import RunError, ScreenError, TrainingCancelled, TrainingError

USER_ERRORS = (
    ScreenError,
    RunError,
    TrainingError,
    TrainingCancelled,
    OSError,  # unreadable or unwritable paths (FileNotFoundError is one)
    KeyError,
    ValueError,
)


class _Progress:
    """A one-line progress bar on a terminal; one line per epoch otherwise."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total, self.stream, self.tty = max(total, 1), stream, stream.isatty()
        self.done, self.last = 0, 0.0

    def step(self, replica, epoch, step, loss, elapsed) -> None:
        self.done += 1
        if self.tty and time.perf_counter() - self.last > 0.1:
            self.last = time.perf_counter()
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * frac)
            self.stream.write(
                f"\r[{bar:<30}] {frac:5.1%} replica {replica + 1} epoch {epoch + 1} "
                f"loss {loss:.4f} {elapsed:5.1f}s"
            )
            self.stream.flush()

    def epoch(self, replica, epoch, train_loss, val_loss, elapsed) -> None:
        if not self.tty:
            finite = val_loss is not None and math.isfinite(val_loss)  # no validation split: no val figure
            val = f" val {val_loss:.4f}" if finite else ""
            self.stream.write(
                f"replica {replica + 1} epoch {epoch + 1}: train {train_loss:.4f}{val} ({elapsed:.1f}s)\n"
            )

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _print_warnings(adata) -> None:
    """Every warning of reading the screen (``validate_screen``: the stored ones and the checks made now)."""
    from .data import validate_screen

    for warning in validate_screen(adata):
        print(f"warning: {warning}", file=sys.stderr)


def _load_screen(args) -> object:
    """Read the screen given on the command line and print every warning about it."""
    adata = _read_screen(args)
    _print_warnings(adata)
    return adata


def _read_screen(args) -> object:
    from .data import read_screen
    from .datasets import load_demo

    if getattr(args, "demo", False) or not getattr(args, "data", None):
        if not getattr(args, "demo", False):
            raise ScreenError("Give a screen with --data FILE.h5ad, or --demo for the bundled demo.")
        return read_screen(load_demo())
    passed_as_is = (
        "pert_key",
        "control",
        "modality",
        "layer",
        "guide_calls",
        "guide_genes",
        "min_guide_umis",
        "moi",
        "escaper_quantile",
    )  # flags of add_data; None: not given
    options = {k: getattr(args, k) for k in passed_as_is if getattr(args, k, None) is not None}
    if getattr(args, "drop_escapers", False):
        options["escapers"] = "drop"
    if getattr(args, "keep_invisible_knockouts", False):
        options["keep_invisible_knockouts"] = True
    return read_screen(args.data, **options)


def _screen_for_run(run_dir: Path, data: str | None):
    """The run and the screen it was trained on (``--data`` or the source recorded in the run)."""
    from .data import read_screen
    from .datasets import load_demo
    from .runs import check_genes, load_run

    ensemble = load_run(run_dir)
    provenance = ensemble.info.get("provenance", {})
    source = data or provenance.get("source")
    # read exactly as the run was trained (pert key, control, modality, guide options, ...)
    options = dict(provenance.get("read_options") or {})
    adata = read_screen(load_demo() if source in (None, "demo") else source, **options)
    _print_warnings(adata)
    recorded, now = provenance.get("sha256"), adata.uns.get("lazynet", {}).get("sha256")
    if recorded and now and recorded != now:
        print(f"warning: the screen '{source}' is not the file this run was trained on (its SHA-256 differs "
              "from the one the run recorded): it was changed or replaced since. The scores below describe "
              "the file as it is now; give --data the original file to reproduce them.", file=sys.stderr)
    if list(adata.var_names) != list(ensemble.genes):
        known = set(adata.var_names)
        adata = adata[:, [g for g in ensemble.genes if g in known]].copy()
    check_genes(ensemble, adata.var_names)
    return ensemble, adata


def _recipe_flags(args) -> None:
    """Fill ``--start``, ``--pairing`` and ``--pseudobulk-cells`` with their defaults, refusing those a
    ``--recipe`` sets (a recipe is all of its settings or it is not that recipe)."""
    if args.recipe:
        flags = (("--start", args.start), ("--pseudobulk-cells", args.pseudobulk_cells))
        given = [flag for flag, value in flags if value is not None]
        if args.pairing is not None and "pairing" in RECIPES[args.recipe]["pair"]:
            given.append("--pairing")
        if given:
            msg = (f"--recipe {args.recipe} sets {', '.join(given)} itself; give either --recipe or "
                   f"{' / '.join(given)}, not both.")
            raise ValueError(msg)
    args.start = args.start or ModelConfig().start
    args.pairing = args.pairing or PairConfig().pairing
    args.pseudobulk_cells = args.pseudobulk_cells or PairConfig().k


def cmd_train(args) -> int:
    """``train``: read a screen, train an ensemble, save the run."""
    _recipe_flags(args)
    screen = getattr(args, "screen", None)
    if screen and args.data and screen != args.data:
        raise ScreenError(f"Two screens given ('{screen}' and --data '{args.data}'); give one.")
    args.data = args.data or screen
    from .pairs import make_pairs
    from .runs import save_run
    from .train import planned_steps, train_ensemble

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out '{out}' is an existing file; give a directory name for the run.")
    if args.data:  # --overwrite replaces the folder: never the screen it trains on, or a folder holding it
        screen_path, run_path = Path(args.data).expanduser().resolve(), out.expanduser().resolve()
        if screen_path == run_path or run_path in screen_path.parents:
            raise RunError(f"--out '{out}' holds the screen it trains on ('{args.data}'); training never "
                           "replaces its input. Choose another folder for the run.")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise RunError(
            f"Run directory '{out}' already exists and is not empty; choose another --out or "
            "pass --overwrite."
        )
    held = tuple(h.strip() for h in args.held_out.split(",") if h.strip()) if args.held_out else None
    if held and args.split != "perturbations":
        raise ValueError(f"--held-out {args.held_out} names perturbations to hold out whole, which only the "
                         f"perturbation split does; with --split {args.split} every perturbation trains. "
                         "Use --split perturbations, or leave out --held-out.")
    pair_config = PairConfig(
        pairing=args.pairing,
        split=args.split,
        seed=args.seed,
        held_out=held,
        reference_fraction=args.reference_fraction,
        k=args.pseudobulk_cells,
    )
    model_config = ModelConfig(hidden=args.hidden, start=args.start)
    if args.recipe:
        model_config, pair_config = recipe_configs(
            args.recipe, model_config=model_config, pair_config=pair_config
        )
    train_config = TrainConfig(
        replicas=args.replicas,
        epochs=args.epochs,
        seed=args.seed,
        time_budget_s=args.time_budget,
        threads=args.threads,
        shrink=args.shrink,
    )  # flags checked before a large screen is read
    adata = _load_screen(args)
    pairs = make_pairs(adata, pair_config)
    progress = _Progress(planned_steps(pairs, train_config))
    print(
        f"Training {train_config.replicas} replica(s) on {adata.n_obs} cells x {adata.n_vars} genes, "
        f"{len(pairs.perturbations)} perturbations ({int(pairs.test_perts.sum())} held out)..."
    )
    try:
        ensemble = train_ensemble(
            pairs, model_config, train_config, on_progress=progress.step, on_epoch=progress.epoch,
            backend=args.backend, address=args.address,
        )
    finally:
        progress.close()
    meta = adata.uns.get("lazynet", {})
    source = "demo" if args.demo else str(Path(args.data).resolve())
    save_run(
        ensemble,
        out,
        overwrite=args.overwrite,
        provenance={
            "source": source,
            "sha256": meta.get("sha256"),
            "read_options": meta.get("read_options", {}),
        },
    )
    info = ensemble.info
    print(
        f"Saved {out} ({info['parameters_per_replica']:,} parameters per replica, hidden {info['hidden']}, "
        f"{info['train_seconds']:.1f} s, {info['threads']} thread(s))."
    )
    if info.get("stopped_by_time_budget"):
        cut = [
            f"replica {r['replica']}: {r['epochs_run']} of {ensemble.train_config.epochs} epochs"
            for r in info["replicas"]
            if r["stopped"] == "time_budget"
        ]
        print(
            f"Warning: the time budget ({ensemble.train_config.time_budget_s:g} s) cut training short "
            f"({'; '.join(cut)}). The model may be under-trained; raise --time-budget or lower --epochs.",
            file=sys.stderr,
        )
    return 0


def _print_summary(frame: pd.DataFrame, *, stream=None) -> None:
    from .metrics import BASELINES, compare, summary_table

    stream = stream or sys.stdout
    for metric in ("pearson_delta", "pearson_delta_top20", "slope", "intervention_response", "ceiling"):
        if metric not in set(frame["metric"]):
            continue
        table = summary_table(frame, metric=metric)
        print(
            f"\n{metric} (mean ± sd over perturbations, n perturbations; columns = held-out set)", file=stream
        )
        print(table.to_string(), file=stream)
    models = [m for m in frame["method"].unique() if m not in (*BASELINES, "observed")]
    for model in models:
        paired = compare(frame, model=model, metric="pearson_delta")
        if paired.empty:
            continue
        print(
            f"\nPaired over perturbations: {model} minus each baseline, pearson_delta "
            "(a win needs p < 0.05 and a gain of at least 0.01)",
            file=stream,
        )
        print(
            paired.drop(columns="metric").to_string(index=False, float_format=lambda v: f"{v:.3g}"),
            file=stream,
        )
    refs = set(frame["reference"])
    note = (
        "Observed deltas are scored against control cells that never reached training (independent "
        "reference)."
        if refs == {"independent"}
        else "reference 'training' shares the training control mean with every prediction and flatters "
        "all of them."
    )
    print(
        f"\n{note} 'observed' rows: split-half noise ceiling. identity's delta-Pearson is undefined (NaN); "
        "own_training_mean is a baseline, not a ceiling.",
        file=stream,
    )




def _inputs(run: str | None, data: str | None) -> list[Path]:
    """The files and folders a command reads: the run folder, ``--data`` and the run's recorded screen."""
    from .runs import MANIFEST

    inputs = [Path(p).expanduser().resolve() for p in (run, data) if p]
    if run:
        try:
            manifest = json.loads((Path(run).expanduser() / MANIFEST).read_text())
            source = manifest.get("provenance", {}).get("source")
        except (OSError, ValueError, AttributeError):
            source = None  # an unreadable run is refused with its own message when it is loaded
        if source and source != "demo":
            inputs.append(Path(source).expanduser().resolve())
    return inputs


def _check_output_file(path: str | None, *, inputs: list[Path] = ()) -> None:
    """Refuse an ``--out`` whose folder is missing, or that would overwrite one of the command's
    ``inputs`` (the screen it reads, the run, or a file inside the run)."""
    if not path:
        return
    target = Path(path).expanduser().resolve()
    if not target.parent.is_dir():
        msg = f"The folder of --out '{path}' does not exist; create it or choose another path."
        raise FileNotFoundError(msg)
    for source in inputs:
        if target == source or source in target.parents:
            inside = source in target.parents
            what = "write inside a folder it reads" if inside else "overwrite the file it reads"
            msg = (f"--out '{path}' would {what} ('{source}'); this command never replaces its own input. "
                   "Choose another output path.")
            raise ValueError(msg)


def cmd_evaluate(args) -> int:
    """``evaluate``: LazyNet next to every baseline on each held-out set, paired tests."""
    _check_output_file(args.out, inputs=_inputs(args.run, args.data))
    from .metrics import evaluate
    from .pairs import make_pairs
    from .runs import check_split

    ensemble, adata = _screen_for_run(Path(args.run), args.data)
    pairs = make_pairs(adata, ensemble.pair_config)
    check_split(ensemble, pairs)
    references = ["independent", "training"] if args.reference == "both" else [args.reference]
    frame = pd.concat([evaluate(pairs, ensemble.predict, reference=r) for r in references], ignore_index=True)
    return _report(frame, args)


def cmd_crossval(args) -> int:
    """``crossval``: leave-one-perturbation-out or K-fold cross-validation with paired tests."""
    _check_output_file(args.out, inputs=_inputs(None, args.data))
    from .validation import cross_validate

    _recipe_flags(args)
    adata = _load_screen(args)
    folds = args.folds if args.folds == "lopo" else _positive_int(args.folds, "--folds")
    seeds = list(args.seeds)  # parsed by _seed_list (argparse applies it to the default too)

    _print_covariation(adata)

    def on_fold(seed, k, n, held):
        print(f"seed {seed}: fold {k + 1}/{n}, held out {', '.join(held)}", file=sys.stderr, flush=True)

    model_config = ModelConfig(hidden=args.hidden, start=args.start)
    pair_config = PairConfig(pairing=args.pairing, k=args.pseudobulk_cells)
    if args.recipe:
        model_config, pair_config = recipe_configs(
            args.recipe, model_config=model_config, pair_config=pair_config
        )
    frame = cross_validate(
        adata,
        folds=folds,
        seeds=seeds,
        max_perturbations=args.max_perturbations,
        model_config=model_config,
        train_config=TrainConfig(replicas=args.replicas, epochs=args.epochs, threads=args.threads),
        pair_config=pair_config,
        on_fold=on_fold,
    )
    return _report(frame, args)


def _print_covariation(adata) -> None:
    """One stderr line: how reproducible the screen's covariance slopes are (``observational``), the
    figure that says whether more control-like cells (``anchored_pooled``) can still help."""
    from .errors import ScreenError
    from .observational import slope_agreement
    from .pairs import make_pairs

    try:
        agreement = slope_agreement(make_pairs(adata, PairConfig()))
    except ScreenError:
        return  # cross_validate says what is wrong with the screen
    versus = (f", against as many perturbed cells {agreement.controls_vs_perturbed:.2f}"
              if agreement.controls_vs_perturbed == agreement.controls_vs_perturbed else "")  # not NaN
    print(f"co-variation: two halves of the training controls ({agreement.n_half} cells each) agree on the "
          f"covariance slopes with median r = {agreement.controls_vs_controls:.2f}{versus} (near 1: more "
          "control-like cells add little, as on the real TAP-seq screen; near 0: pooling the perturbed cells "
          "helped, as on the synthetic screens; README, 'Why the real screen ties')",
          file=sys.stderr, flush=True)


def _report(frame: pd.DataFrame, args) -> int:
    """Print an evaluation frame (tables, or JSON records with ``--json``); write it with ``--out``."""
    from .metrics import records

    if args.json:
        json.dump(records(frame), sys.stdout, indent=1)
        print()
    else:
        _print_summary(frame)
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"\nWrote per-perturbation metrics to {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _cells_count(text: str) -> int:
    """``--pseudobulk-cells``: a whole number of cells, at least 1 (argparse reports the error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"give a whole number of control cells >= 1 (e.g. 16 or 256), not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _whole(minimum: int):
    """An argparse ``type`` for a whole number ``>= minimum`` (argparse names the flag in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def _seed_list(text: str) -> list[int]:
    """An argparse ``type`` for comma-separated whole-number seeds."""
    parts = [s.strip() for s in str(text).split(",") if s.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers like 0,1,2, got {text!r}")
    return [int(p) for p in parts]


def _finite(text: str) -> float:
    """An argparse ``type`` for a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise ValueError(f"{flag} must be 'lopo' or an integer >= 2, got {text!r}.")
    return value


def cmd_predict(args) -> int:
    """``predict``: in-silico perturbation (``--set``), or the held-out perturbations as cell-eval files
    (``--heldout --out pred.h5ad``)."""
    if args.heldout and args.set:
        raise ValueError(
            "--set and --heldout are alternatives: --set GENE=FOLD prints an in-silico perturbation, "
            "--heldout --out pred.h5ad writes the held-out perturbations for cell-eval. Give one."
        )
    if args.heldout:
        return _predict_heldout(args)
    if not args.set:
        raise ValueError(
            "Give --set GENE=FOLD (in-silico perturbation, e.g. --set GPX4=0.25) or --heldout --out "
            "pred.h5ad (held-out perturbations as cell-eval files)."
        )
    if args.out or args.data or args.baselines:
        raise ValueError("--out, --data and --baselines go with --heldout; --set prints to the terminal.")
    from .runs import load_run

    ensemble = load_run(args.run)
    settings = {}
    modelled = set(ensemble.genes.tolist())
    by_case = {g.lower(): g for g in modelled}  # names match ignoring case, as in the app and `network`
    for item in args.set:
        gene, _, fold = item.partition("=")
        try:
            value = float(fold)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"--set {item!r}: use GENE=FOLD with FOLD a number >= 0, e.g. GPX4=0.25 for a 75 % "
                "knock-down or GPX4=4 for a 4-fold activation."
            )
        gene = gene if gene in modelled else by_case.get(gene.lower(), gene)
        settings.update(ensemble.knockdown_settings([gene], value))
    delta = pd.Series(ensemble.intervention_effect(settings), index=ensemble.genes, name="predicted_delta")
    delta = delta.drop(list(settings))  # their change is the input, not a prediction
    top = delta.abs().sort_values(ascending=False).index[: args.top]
    print(delta[top].to_frame().to_string(float_format=lambda v: f"{v:+.3f}"))
    print(f"(predicted change from the model's own control-state prediction; largest |Δ| "
          f"{float(delta.abs().max()):.3g} log1p units)")
    return 0


def _baseline_path(out: Path, method: str) -> Path:
    """Where ``predict --heldout --baselines`` writes ``method``'s predictions: beside ``out``."""
    return out.with_name(f"{out.stem}_{method}.h5ad")


def _predict_heldout(args) -> int:
    """``predict --heldout``: predicted and observed cells of the held-out perturbations for cell-eval."""
    if not args.out:
        raise ValueError("--heldout needs --out pred.h5ad (the observed file is written beside it).")
    out = Path(args.out)
    if out.suffix != ".h5ad":
        raise ValueError(f"--out must end in .h5ad (got '{out}'); cell-eval reads AnnData files.")
    from .export import (
        CELL_EVAL_BASELINES,
        cell_eval_command,
        heldout_perturbations,
        observed_path,
        predictions_to_anndata,
        write_cell_eval_files,
    )

    written = [out, observed_path(out)]  # the observed file is written beside the predicted one
    if args.baselines:  # and each baseline's predictions beside them
        written += [_baseline_path(out, method) for method in CELL_EVAL_BASELINES]
    inputs = _inputs(args.run, args.data)
    for path in written:
        _check_output_file(str(path), inputs=inputs)
    from .pairs import make_pairs
    from .runs import check_split

    ensemble, adata = _screen_for_run(Path(args.run), args.data)
    pairs = make_pairs(adata, ensemble.pair_config)
    check_split(ensemble, pairs)
    evals = heldout_perturbations(pairs)
    pred, real = predictions_to_anndata(pairs, ensemble.predict, perturbations=evals, seed=args.seed)
    pred_path, real_path = write_cell_eval_files(pred, real, out)
    labels = ", ".join(map(str, pairs.perturbations[evals][:8])) + (" ..." if len(evals) > 8 else "")
    n_pred = int((pred.obs["target"] != "non-targeting").sum())
    print(
        f"{len(evals)} held-out perturbation(s) ({labels}), {n_pred} predicted cells, "
        f"{len(pairs.cells(-1, 'reference'))} reference controls, {pairs.n_genes} genes."
    )
    print(f"Wrote {pred_path} (predicted) and {real_path} (observed).")
    if args.baselines:
        from .metrics import baseline_predictions

        posts = baseline_predictions(pairs, role="test", perturbations=evals)
        for method in CELL_EVAL_BASELINES:
            try:
                base_pred, _ = predictions_to_anndata(
                    pairs, posts[method], perturbations=evals, method=method, seed=args.seed
                )
            except ValueError as exc:  # a baseline without a prediction for some perturbation
                print(f"{method}: skipped ({exc})", file=sys.stderr)
                continue
            path = _baseline_path(out, method)
            base_pred.write_h5ad(path)
            print(f"Wrote {path} ({method}; score it against {real_path.name}).")
    print(f"Score with:  {cell_eval_command(pred_path, real_path)}")
    return 0


def cmd_demo(args) -> int:
    """``demo``: train on the bundled demo screen, then evaluate."""
    args.demo, args.out, args.overwrite = True, args.out or "runs/demo", True
    cmd_train(args)
    args.run, args.data = args.out, None
    args.reference, args.json = getattr(args, "reference", "independent"), False
    return cmd_evaluate(args)


def cmd_network(args) -> int:
    """``network``: seed subgraph of the consensus Jacobian, written as an edges CSV."""
    _check_output_file(args.out, inputs=_inputs(args.run, None))
    from .export import write_edges_csv
    from .jacobian import column_provider
    from .modules import DEFAULT_SEEDS
    from .network import expand_from_seeds, subgraph_summary

    ensemble, adata = _screen_for_run(Path(args.run), args.data)
    module = "lysosomal_mito_immune" if args.module.startswith("lyso") else args.module
    seeds = args.seeds.split(",") if args.seeds else list(DEFAULT_SEEDS[module])
    graph = expand_from_seeds(
        column_provider(ensemble),
        seeds,
        breadth=args.breadth,
        depth=args.depth,
        min_abs=args.min_abs,
        genes=list(ensemble.genes),
    )
    write_edges_csv(graph, args.out)
    summary = subgraph_summary(graph)
    print(
        f"{summary['n_nodes']} genes, {summary['n_edges']} edges; missing seeds: "
        f"{summary['missing_seeds'] or 'none'}. Wrote {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lazynet_core``."""
    parser = argparse.ArgumentParser(prog="python -m lazynet_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_data(p):
        from .readers import DEFAULT_MIN_GUIDE_UMIS

        p.add_argument(
            "--data",
            help="screen: .h5ad file, or Cell Ranger filtered_feature_bc_matrix.h5 "
            "or matrix directory (raw counts)",
        )
        p.add_argument("--pert-key", help="obs column with perturbations (auto-detected)")
        p.add_argument("--control", help="control label (auto-detected)")
        p.add_argument("--modality", help="CRISPRi, CRISPRa or CRISPRko, or an obs column (auto)")
        p.add_argument(
            "--layer",
            help="raw counts: a layer name, or raw.X (default: .X, or the counts found in .raw.X or a layer "
            "when .X is log-normalised or scaled)",
        )
        p.add_argument("--guide-calls", help="protospacer_calls_per_cell.csv or a cell,guide CSV")
        p.add_argument("--guide-genes", help="guide,gene CSV (or feature_reference.csv) for guide names")
        p.add_argument(
            "--min-guide-umis",
            type=int,
            default=DEFAULT_MIN_GUIDE_UMIS,
            help="UMIs for a guide to count as present (guide capture counts; default 5)",
        )
        p.add_argument(
            "--moi",
            choices=["combine", "drop"],
            default=None,
            help="cells with guides for several genes (default: drop for guide calls)",
        )
        p.add_argument(
            "--drop-escapers", action="store_true", help="drop cells whose target stayed in the control range"
        )
        p.add_argument(
            "--escaper-quantile",
            type=float,
            default=0.5,
            help="control quantile of the escaper filter (default 0.5)",
        )
        p.add_argument(
            "--keep-invisible-knockouts",
            action="store_true",
            help="keep knockout targets whose mRNA did not fall",
        )

    def add_pseudobulk_cells(p):
        p.add_argument("--pseudobulk-cells", type=_cells_count, default=None, metavar="K",
                       help=f"control cells averaged into each pre-state (default {PairConfig().k}; "
                            "--recipe sets it)")

    def add_recipe(p):
        p.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                       help="a named recipe (sets --start, --pseudobulk-cells and the rest it needs): "
                            "published (the paper's method, the default), covariance, anchored (README)")

    def add_train(p):
        p.add_argument("--replicas", type=int, default=3)
        p.add_argument("--epochs", type=int, default=TrainConfig().epochs)
        p.add_argument("--hidden", type=int, default=None, help="hidden width (default: auto)")
        p.add_argument("--start", default=None, choices=["zero", "control_covariance"],
                       help="output-layer start; control_covariance responds to unseen targets (README)")
        p.add_argument("--pairing", default=None, choices=["pseudobulk", "random_cells"])
        add_pseudobulk_cells(p)
        add_recipe(p)
        p.add_argument("--shrink", type=float, default=0.0,
                       help="L1 prior on predicted changes, in standard errors (TrainConfig.shrink; "
                            "0 = the published method)")
        p.add_argument("--split", default="perturbations", choices=["perturbations", "cells"])
        p.add_argument(
            "--held-out",
            default=None,
            help="comma-separated perturbations to hold out (default: a random test_fraction)",
        )
        p.add_argument(
            "--reference-fraction",
            type=float,
            default=PairConfig().reference_fraction,
            help="share of control cells kept as the independent reference (default 0.3)",
        )
        p.add_argument("--seed", type=_whole(0), default=0)
        p.add_argument("--time-budget", type=float, default=None, help="seconds for the whole ensemble")
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--backend", default="thread", choices=["thread", "ray"],
                       help="train replicas one after another (thread) or as Ray tasks (ray)")
        p.add_argument("--address", default=None,
                       help="with --backend ray: address of a running Ray cluster (default: a local Ray)")
        p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("train", help="train an ensemble and save the run")
    p.add_argument("screen", nargs="?", help="screen file or Cell Ranger output (the same as --data)")
    add_data(p)
    add_train(p)
    p.add_argument("--demo", action="store_true", help="use the bundled demo screen")
    p.add_argument("--out", required=True, help="run directory to create")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run next to the baselines on every held-out set")
    p.add_argument("run")
    p.add_argument("--data", help="screen the run was trained on (default: recorded in the run)")
    p.add_argument("--out", help="write per-perturbation metrics CSV")
    p.add_argument(
        "--reference",
        default="independent",
        choices=["independent", "training", "both"],
        help="control reference of observed deltas (default: held-out control cells)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print records (method, set, reference, metric, mean, sd, n) as JSON",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("crossval", help="cross-validation over perturbations (LOPO or K-fold), paired tests")
    add_data(p)
    p.add_argument("--demo", action="store_true", help="use the bundled demo screen")
    p.add_argument("--folds", default="lopo", help="'lopo' (default) or K")
    p.add_argument("--seeds", default="0", type=_seed_list, help="comma-separated seeds (default 0)")
    p.add_argument("--max-perturbations", type=_whole(1), default=20,
                   help="LOPO: at most this many (default 20)")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--start", default=None, choices=["zero", "control_covariance"])
    p.add_argument("--pairing", default=None, choices=["pseudobulk", "random_cells"])
    add_pseudobulk_cells(p)
    add_recipe(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="write per-perturbation metrics CSV")
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser(
        "predict",
        help="in-silico perturbation (--set), or held-out perturbations as cell-eval files (--heldout)",
    )
    p.add_argument("run")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="GENE=FOLD",
        help="scale GENE's expression by FOLD (0.25 = knock-down, 4 = activation); repeatable",
    )
    p.add_argument("--top", type=_whole(1), default=20, help="genes to print (default 20)")
    p.add_argument(
        "--heldout",
        action="store_true",
        help="instead of --set: predict the run's held-out perturbations and write cell-eval files",
    )
    p.add_argument("--out", help="with --heldout: predicted file (.h5ad); the observed one goes beside it")
    p.add_argument(
        "--data", help="with --heldout: screen the run was trained on (default: recorded in the run)"
    )
    p.add_argument(
        "--baselines",
        action="store_true",
        help="with --heldout: also write perturbed_mean, perturbed_mean_ex and linear predictions",
    )
    p.add_argument("--seed", type=_whole(0), default=0,
                   help="with --heldout: seed of the predicted cells' spread")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="train on the bundled demo and evaluate (one command)")
    add_data(p)
    add_train(p)
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("network", help="seed subgraph of the consensus Jacobian as an edges CSV")
    p.add_argument("run")
    p.add_argument("--data")
    p.add_argument(
        "--module", default="ferroptosis", choices=["ferroptosis", "lysosomal", "lysosomal_mito_immune"]
    )
    p.add_argument("--seeds", help="comma-separated seeds (default: the module's)")
    p.add_argument("--breadth", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--min-abs", type=_finite, default=0.0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_network)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was saved.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
