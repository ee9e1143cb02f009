"""Training on a busy laptop: the demo ensemble quiet, under CPU competition and with the app watching.

A browser, the Streamlit server and other programs share the cores. This script trains the default
demo ensemble (3 replicas, 40 epochs; ``--epochs`` to shorten) under three conditions:

- ``quiet``: in this process, nothing else started;
- ``busy``: in this process while ``--burners`` busy-loop processes (one per core by default)
  compete for the CPU;
- ``poll``: through the app, as a user does it: a real ``streamlit run app.py`` server (runs in a
  temporary ``LAZYNET_RUNS_DIR``), headless Debian chromium driven by Playwright loads the demo on
  the Data page, sets replicas and epochs on the Train page and presses *Start training*; the tab
  stays on the Train page, whose progress fragment polls the job, until the run is saved.

Every time is the ensemble's own ``info["train_seconds"]`` (``train_ensemble``'s loop, the same
clock in all three; for ``poll`` read from the saved run's manifest), so loading the screen,
building pairs and saving are left out of every condition alike. Ratios are to ``quiet`` with the
same thread setting (goal: ≤ 1.5). The machine's load average is recorded before and after: on a
shared machine absolute times are noisy.

Usage (from the repo root)::

    PYTHONPATH=. python benchmarks/busy_cpu.py --threads auto --conditions quiet busy poll --repeats 2

Writes ``benchmarks/results/busy_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script too
from benchmarks.common import app_server, fmt_table, machine_info, write_json

CHROMIUM = Path("/usr/bin/chromium")
CONDITIONS = ("quiet", "busy", "poll")


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
    ensemble = train_ensemble(pairs, ModelConfig(), config)
    return float(ensemble.info["train_seconds"]), int(ensemble.info["threads"])


# ---- the app condition ----------------------------------------------------------------------------
def _idle(page, timeout: float = 120_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def _train_in_app(epochs: int, *, replicas: int = 3, timeout_s: float = 480) -> tuple[float, int, dict]:
    """Train the demo from the app's Train page in chromium; the tab stays there, polling, until saved."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lazynet_busy_") as tmp:
        runs = Path(tmp)
        with app_server(runs, timeout=90, output=False) as url:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                try:
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.goto(f"{url}/Data")
                    _idle(page)
                    page.get_by_role("button", name="Load demo screen").click()
                    page.get_by_text("Overview · demo").wait_for(timeout=120_000)
                    _idle(page)
                    page.locator('[data-testid="stSidebarNav"] a', has_text="Train").first.click()
                    _idle(page)
                    page.get_by_role("spinbutton", name="Replicas").fill(str(replicas))
                    page.get_by_role("spinbutton", name="Epochs").fill(str(epochs))
                    page.get_by_role("button", name="Start training").click()
                    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
                    polls = _count_polls(page, timeout_s)
                finally:
                    browser.close()
        manifests = [m for m in runs.glob("*/config.json")]
        if len(manifests) != 1:
            msg = f"expected one saved run in {runs}, found {len(manifests)}"
            raise RuntimeError(msg)
        info = json.loads(manifests[0].read_text()).get("info", {})
        return float(info["train_seconds"]), int(info.get("threads", 0)), polls


def _count_polls(page, timeout_s: float) -> dict:
    """Wait until the run is saved, counting the page's script runs (reruns of the polling fragment)."""
    start = time.time()
    runs = 0
    state = None
    while time.time() - start < timeout_s:
        now = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        if now == "running" and state != "running":
            runs += 1
        state = now
        if page.get_by_text("saved to").count():
            return {"script_runs_seen": runs, "watched_s": time.time() - start}
        page.wait_for_timeout(100)
    msg = f"training from the app did not finish in {timeout_s:.0f} s"
    raise TimeoutError(msg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["auto"], help="'auto' or integers")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    if "poll" in args.conditions and not CHROMIUM.exists():
        print("poll needs Debian chromium at /usr/bin/chromium; skipping it", flush=True)
        args.conditions = [c for c in args.conditions if c != "poll"]
    before = machine_info()
    rows = []
    for threads in args.threads:
        for load in args.conditions:
            if load == "poll" and threads != "auto":
                continue  # the app always trains with the automatic thread count
            stop, procs = mp.Event(), []
            if load == "busy":
                procs = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burners)]
                for p in procs:
                    p.start()
                time.sleep(1.0)
            try:
                walls, extra = [], {}
                for _ in range(args.repeats):
                    if load == "poll":
                        wall, used, extra = _train_in_app(args.epochs)
                    else:
                        wall, used = _train_once(threads, args.epochs)
                    walls.append(wall)
                    print(f"threads={threads} ({used}) {load}: {wall:.1f} s {extra or ''}", flush=True)
            finally:
                stop.set()
                for p in procs:
                    p.join(5)
            rows.append(dict(threads=threads, threads_used=used, load=load, median_s=statistics.median(walls),
                             worst_s=max(walls), walls_s=walls, load_avg=list(os.getloadavg()), **extra))
            write_json("busy_cpu", {"rows": rows, "epochs": args.epochs, "burners": args.burners,
                                    "partial": True, "machine": before})  # survives an interrupt
    ratios = {}
    for row in rows:
        quiet = next((r for r in rows if r["threads"] == row["threads"] and r["load"] == "quiet"), None)
        row["slowdown_median"] = row["median_s"] / quiet["median_s"] if quiet else None
        if row["threads"] == "auto" and quiet:
            ratios[row["load"]] = round(row["slowdown_median"], 3)
    print(fmt_table(rows, ["threads", "threads_used", "load", "median_s", "worst_s", "slowdown_median"]))
    summary = {
        "seconds": {r["load"]: round(r["median_s"], 2) for r in rows if r["threads"] == "auto"},
        "ratio_to_quiet": ratios,
        "goal": "poll and busy <= 1.5 x quiet",
        "note": "train_seconds of the demo ensemble (3 replicas); absolute times are noisy on a shared machine",
    }
    write_json("busy_cpu", {"summary": summary, "rows": rows, "epochs": args.epochs, "repeats": args.repeats,
                            "burners": args.burners, "partial": False, "machine": before,
                            "load_avg_after": list(os.getloadavg())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
