"""Training on a busy laptop: wall time of the demo ensemble, quiet and under CPU competition.

A browser, the Streamlit server and other programs share the cores. This script trains the default
demo ensemble (3 replicas, 40 epochs; ``--epochs`` to shorten) with a given torch thread count,
first on a quiet machine, then while ``--burners`` busy-loop processes (one per core by default)
compete for the CPU, and reports the wall time of each repeat and the slowdown.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/busy_cpu.py --threads auto 2 --repeats 3

Writes ``benchmarks/results/busy_cpu.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import fmt_table, machine_info, write_json


def _burn(stop: mp.Event) -> None:  # pragma: no cover - a CPU hog in a child process
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def _train_once(threads: str, epochs: int) -> tuple[float, int]:
    from lazynet_core import datasets, read_screen
    from lazynet_core.config import ModelConfig, PairConfig, TrainConfig
    from lazynet_core.pairs import make_pairs
    from lazynet_core.train import train_ensemble

    adata = read_screen(datasets.load_demo())
    pairs = make_pairs(adata, PairConfig())
    config = TrainConfig(epochs=epochs, threads=None if threads == "auto" else int(threads))
    start = time.perf_counter()
    ensemble = train_ensemble(pairs, ModelConfig(), config)
    return time.perf_counter() - start, int(ensemble.info["threads"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["auto", "2"], help="'auto' or integers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    rows = []
    for threads in args.threads:
        for load in ("quiet", "busy"):
            stop, procs = mp.Event(), []
            if load == "busy":
                procs = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burners)]
                for p in procs:
                    p.start()
                time.sleep(1.0)
            try:
                walls = []
                for _ in range(args.repeats):
                    wall, used = _train_once(threads, args.epochs)
                    walls.append(wall)
                    print(f"threads={threads} ({used}) {load}: {wall:.1f} s", flush=True)
            finally:
                stop.set()
                for p in procs:
                    p.join(5)
            rows.append(dict(threads=threads, threads_used=used, load=load, median_s=statistics.median(walls),
                             worst_s=max(walls), walls_s=walls))
            write_json("busy_cpu", {"rows": rows, "epochs": args.epochs, "burners": args.burners,
                                    "partial": True, "machine": machine_info()})  # survives an interrupt
    for row in rows:
        quiet = next(r for r in rows if r["threads"] == row["threads"] and r["load"] == "quiet")
        row["slowdown_median"] = row["median_s"] / quiet["median_s"]
    print(fmt_table(rows, ["threads", "threads_used", "load", "median_s", "worst_s", "slowdown_median"]))
    write_json("busy_cpu", {"rows": rows, "epochs": args.epochs, "burners": args.burners, "partial": False,
                            "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
