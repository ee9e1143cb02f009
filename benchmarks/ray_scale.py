"""Ray vs threads on a screen streamed from disk: wall time, peak RSS per process, identical losses.

Stages (issue 14):

1. ``generate`` a synthetic paper-style screen in chunks (``datasets.write_paper_screen``, cached)
   and ``prepare`` it (``read_screen`` + ``write_h5ad``) in a **separate process**, so this
   process never holds the whole matrix; that process's peak RSS is reported as the in-memory
   reference.
2. ``stream``: :func:`lazynet_core.streaming.stream_pairs` reads the prepared ``.h5ad`` backed, by
   row chunks, in one pass (control rows + per-perturbation means); peak RSS of this process.
   With ``--pairs memory`` the prepared file is read whole instead and ``make_pairs`` builds the
   pairs (what ``lazynet train`` does): the object Ray puts in its store is then the whole matrix.
3. ``train_thread``: ``train_ensemble(streamed, backend="thread")`` (replicas one after another).
4. ``train_ray``: the same with ``backend="ray"`` on a local Ray with ``--workers`` workers, Ray
   start and stop included in the wall time; peak RSS of every worker process (``ru_maxrss``
   reported by the task) and of every process of the local Ray (``VmHWM``, sampled every second).
5. Weights (bit for bit) and per-epoch losses of the two backends are compared.

Usage: ``python benchmarks/ray_scale.py [--quick] [--cells N --genes G --perturbations P]``.
Writes ``benchmarks/results/ray_scale[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import (  # noqa: E402
    CACHE,
    ROOT,
    StageMeter,
    add_training_arguments,
    ensure_paper_screen,
    fmt_table,
    machine_info,
    maxrss_gb,
    plan_training,
    train_backends,
    write_json,
)

QUICK = {"n_cells": 5_000, "n_genes": 2_000, "n_perturbations": 200}
DEFAULT = {"n_cells": 50_000, "n_genes": 2_000, "n_perturbations": 200}

_PREPARE = """
import json, resource, sys, time
t0 = time.perf_counter()
from lazynet_core.data import read_screen
adata = read_screen(sys.argv[1])
adata.write_h5ad(sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t0, "n_cells": int(adata.n_obs),
                  "n_genes": int(adata.n_vars), "nnz": int(adata.X.nnz),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def prepare(raw: Path) -> tuple[Path, dict[str, Any]]:
    """read_screen + write_h5ad in a child process (cached beside the raw file)."""
    out = raw.with_name(raw.stem + "_prepared.h5ad")
    info_path = out.with_suffix(".json")
    if out.exists() and info_path.exists():
        return out, {**json.loads(info_path.read_text()), "cached": True}
    tmp = out.with_name(out.name + ".tmp.h5ad")
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE, str(raw), str(tmp)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(done.stdout.strip().splitlines()[-1])
    tmp.replace(out)
    info_path.write_text(json.dumps(info))
    return out, {**info, "cached": False}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5k cells x 2k genes")
    parser.add_argument("--cells", type=int, default=None)
    parser.add_argument("--genes", type=int, default=None)
    parser.add_argument("--perturbations", type=int, default=None)
    add_training_arguments(parser, resamples=32)
    parser.add_argument("--pairs", choices=("stream", "memory"), default="stream",
                        help="stream_pairs from the backed file, or read it whole + make_pairs")
    parser.add_argument("--prepare-only", action="store_true", help="generate and prepare, then stop")
    parser.add_argument("--tag", default=None, help="results file suffix")
    args = parser.parse_args(argv)

    from lazynet_core.config import PairConfig
    from lazynet_core.streaming import stream_pairs

    size = dict(QUICK if args.quick else DEFAULT)
    for key, value in (("n_cells", args.cells), ("n_genes", args.genes), ("n_perturbations", args.perturbations)):
        if value is not None:
            size[key] = value
    name = "ray_scale_quick" if args.quick else "ray_scale"
    if args.pairs == "memory":
        name += "_memory"
    if args.tag:
        name = f"{name}_{args.tag}"
    print(f"ray_scale: {size['n_cells']} cells x {size['n_genes']} genes, {size['n_perturbations']} perturbations; "
          f"{args.replicas} replicas x {args.epochs} epochs, hidden {args.hidden}, {args.workers} Ray workers")
    meter = StageMeter()
    result: dict[str, Any] = {"benchmark": "ray_scale", "size": size, "args": vars(args)}
    raw, generated = ensure_paper_screen(**size, meter=meter)
    with meter.stage("prepare_in_child_process") as rec:
        prepared, prep = prepare(raw)
        rec.update(child=prep)
    result["prepare_child_process"] = prep
    result["file_mb"] = {"raw_gzip": raw.stat().st_size / 1e6, "prepared": prepared.stat().st_size / 1e6}
    if args.prepare_only:
        meter.close()
        print(f"prepared {prepared} ({prep})")
        return result
    pair_config = PairConfig(resamples=args.resamples)
    if args.pairs == "stream":
        with meter.stage("stream") as rec:
            pairs = stream_pairs(prepared, pair_config, chunk_rows=args.chunk_rows)
            rec.update(pairs._cache["stream_info"])
        result["stream"] = dict(pairs._cache["stream_info"])
    else:
        import anndata

        from lazynet_core.pairs import make_pairs

        with meter.stage("read_whole_and_make_pairs") as rec:
            pairs = make_pairs(anndata.read_h5ad(prepared), pair_config)
            rec.update(matrix_gb=sum(getattr(pairs.X, n).nbytes for n in ("data", "indices", "indptr")) / 1e9)
        result["memory_pairs"] = {"matrix_gb": rec["matrix_gb"], "nnz": int(pairs.X.nnz)}
    model_config, train_config, plan = plan_training(pairs, hidden=args.hidden, replicas=args.replicas,
                                                     epochs=args.epochs, batch_size=args.batch_size, meter=meter)
    result.update(plan)

    def show(replica, epoch, train_loss, val_loss, elapsed):
        print(f"    replica {replica + 1} epoch {epoch + 1}: train {train_loss:.5f} ({elapsed:.0f} s)", flush=True)

    result["train"], runs = train_backends(pairs, model_config, train_config, ("thread", "ray"),
                                           workers=args.workers, meter=meter, on_epoch=show)
    (_, t_wall), (ray_ens, r_wall) = runs["thread"], runs["ray"]
    workers = result["train"]["ray_worker_processes"]
    result["train"].update(ray_train_seconds_inside=ray_ens.info["train_seconds"],
                           ray_worker_seconds=[w["worker_seconds"] for w in workers])
    meter.close()
    result["stages"] = meter.records
    result["driver_peak_rss_gb"] = max(r["peak_rss_gb"] for r in meter.records if r["stage"] != "generate")
    result["driver_ru_maxrss_gb"] = maxrss_gb()
    result["generated_now"] = generated
    result["cache"] = str(CACHE)
    result["machine"] = machine_info()
    tr = result["train"]
    rss = [w["worker_peak_rss_gb"] for w in workers]
    print()
    print(fmt_table(meter.records, ["stage", "seconds", "rss_end_gb", "peak_rss_gb"]))
    print(f"\nprepare (child, whole matrix in memory): {prep['seconds']:.1f} s, peak RSS {prep['peak_rss_gb']:.2f} GB")
    if "stream" in result:
        s = result["stream"]
        print(f"stream: {s['chunks']} chunks of {s['chunk_rows']} rows in {s['seconds']:.1f} s; control rows "
              f"{s['control_bytes'] / 1e6:.0f} MB; driver peak RSS {result['driver_peak_rss_gb']:.2f} GB")
    else:
        print(f"in-memory pairs: matrix {result['memory_pairs']['matrix_gb']:.2f} GB; "
              f"driver peak RSS {result['driver_peak_rss_gb']:.2f} GB")
    print(f"train: thread {t_wall:.1f} s, ray {r_wall:.1f} s (ratio {tr['ray_over_thread_wall']:.2f}; "
          f"{tr['ray_workers']} workers, each {', '.join(f'{w:.1f}' for w in tr['ray_worker_seconds'])} s); "
          f"worker peak RSS {', '.join(f'{w:.2f}' for w in rss)} GB; "
          f"identical weights {tr['identical_weights']}, identical losses {tr['identical_losses']}")
    write_json(name, result)
    return result


if __name__ == "__main__":
    main()
