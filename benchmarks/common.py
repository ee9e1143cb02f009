"""Shared helpers of the benchmark scripts: machine info, stage timers with peak RSS, JSON output.

Also the Ray-vs-threads comparison of ``ray_scale.py`` and ``genome_scale.py`` and a ``streamlit run
app.py`` server for the scripts and the browser tests that drive the app.

Peak memory is measured two ways: a sampling thread reads ``VmRSS`` from ``/proc/self/status``
every ``interval`` seconds and keeps the peak of each stage, and ``resource.getrusage`` gives the
process-wide high-water mark (``ru_maxrss``, never reset, so it is the peak *so far*).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / "cache"

if str(ROOT) not in sys.path:  # allow `python benchmarks/x.py` as well as PYTHONPATH=.
    sys.path.insert(0, str(ROOT))


def rss_gb() -> float:
    """Current resident set size of this process in GB (from /proc/self/status VmRSS)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1e6  # kB -> GB
    except OSError:
        pass
    return float("nan")


def maxrss_gb() -> float:
    """Process-wide peak RSS so far in GB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


class StageMeter:
    """Wall time and peak RSS per named stage, sampled by a background thread.

    Use ``with meter.stage("name"):``; ``meter.records`` holds one dict per stage with
    ``stage, seconds, rss_start_gb, rss_end_gb, peak_rss_gb`` (sampled) and ``maxrss_gb``
    (process high-water mark at the end of the stage).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.records: list[dict[str, Any]] = []
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_gb()
            with self._lock:
                self._peak = max(self._peak, value)
            time.sleep(self.interval)

    @contextmanager
    def stage(self, name: str, **extra: Any):
        start_rss = rss_gb()
        with self._lock:
            self._peak = start_rss
        t0 = time.perf_counter()
        record: dict[str, Any] = {"stage": name, **extra}
        try:
            yield record
        finally:
            seconds = time.perf_counter() - t0
            end_rss = rss_gb()
            with self._lock:
                peak = max(self._peak, end_rss)
            record.update(seconds=seconds, rss_start_gb=start_rss, rss_end_gb=end_rss,
                          peak_rss_gb=peak, maxrss_gb=maxrss_gb())
            self.records.append(record)
            print(f"  [{name}] {seconds:8.2f} s   RSS {start_rss:6.2f} -> {end_rss:6.2f} GB   "
                  f"peak {peak:6.2f} GB", flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def machine_info() -> dict[str, Any]:
    """CPU count, affinity, torch version and threads, platform and date (UTC)."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            mem_total_gb = int(fh.readline().split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        mem_total_gb = None
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model,
        "mem_total_gb": mem_total_gb,
        "load_avg": list(os.getloadavg()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    """HEAD commit and whether lazynet_core/ has uncommitted changes (results depend on the code)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"head": git("rev-parse", "--short", "HEAD") or None,
            "lazynet_core_dirty": bool(git("status", "--porcelain", "--", "lazynet_core"))}


def _default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    return str(obj)


def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.floating):
        return _clean(float(obj))
    return obj


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` (NaN -> null) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=1, default=_default) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return path


def paper_screen_path(n_cells: int, n_genes: int, n_perturbations: int, seed: int = 0) -> Path:
    """Cache path of a synthetic screen written by ``datasets.write_paper_screen``."""
    return CACHE / f"paper_{n_cells}x{n_genes}_p{n_perturbations}_s{seed}.h5ad"


def ensure_paper_screen(n_cells: int, n_genes: int, n_perturbations: int, *, seed: int = 0,
                        meter: StageMeter | None = None, chunk_size: int = 2000) -> tuple[Path, bool]:
    """Generate (or reuse) a cached ``write_paper_screen`` file; returns (path, generated)."""
    from lazynet_core import datasets

    path = paper_screen_path(n_cells, n_genes, n_perturbations, seed)
    if path.exists():
        return path, False
    CACHE.mkdir(parents=True, exist_ok=True)
    if meter is None:
        datasets.write_paper_screen(path, n_cells=n_cells, n_genes=n_genes,
                                    n_perturbations=n_perturbations, chunk_size=chunk_size, seed=seed)
    else:
        with meter.stage("generate", n_cells=n_cells, n_genes=n_genes) as rec:
            datasets.write_paper_screen(path, n_cells=n_cells, n_genes=n_genes,
                                        n_perturbations=n_perturbations, chunk_size=chunk_size, seed=seed)
            rec["file_mb"] = path.stat().st_size / 1e6
    return path, True


def fmt_table(rows: list[dict[str, Any]], columns: list[str], floatfmt: str = "{:.3g}") -> str:
    """Plain-text table of dicts (missing keys blank)."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "nan" if not np.isfinite(v) else floatfmt.format(v)
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) and the parent pid of a process, from /proc/<pid>/status ({} if gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "VmHWM", "PPid", "RssShmem"):
                    out[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return cmd[:120]


class ProcessTreePeaks:
    """Peak RSS of this process and every descendant (e.g. a local Ray's workers, raylet, GCS).

    A thread lists the descendants every ``interval`` seconds and keeps, per pid, the kernel's
    high-water mark ``VmHWM`` (so a peak between two samples is not missed while the process
    lives) and the largest ``RssShmem`` seen (shared memory, e.g. the object store's pages mapped
    by a worker, counts in each process that maps it). A process that starts and ends between
    two samples is missed. ``close()`` stops the thread and returns one dict per process, the
    largest first: ``pid, name, peak_rss_gb, peak_shmem_gb``.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.root = os.getpid()
        self.peaks: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _descendants(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                ppid = _proc_status(int(entry)).get("PPid")
                if ppid is not None:
                    parents[int(entry)] = ppid
        tree, frontier = {self.root}, [self.root]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in tree:
                    tree.add(pid)
                    frontier.append(pid)
        return sorted(tree)

    def sample(self) -> None:
        for pid in self._descendants():
            st = _proc_status(pid)
            if not st:
                continue
            rec = self.peaks.setdefault(pid, {"pid": pid, "name": _proc_name(pid), "peak_rss_gb": 0.0,
                                              "peak_shmem_gb": 0.0})
            rec["peak_rss_gb"] = max(rec["peak_rss_gb"], st.get("VmHWM", 0) / 1e6)
            rec["peak_shmem_gb"] = max(rec["peak_shmem_gb"], st.get("RssShmem", 0) / 1e6)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def close(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.sample()
        return sorted(self.peaks.values(), key=lambda r: -r["peak_rss_gb"])


# ---- Ray vs threads ----------------------------------------------------------------------------------
def same_weights(a: Any, b: Any) -> bool:
    """Whether two ensembles hold the same replicas' weights, bit for bit (same keys in the same order)."""
    import torch

    return all(
        list(ra.state_dict()) == list(rb.state_dict())
        and all(torch.equal(x, rb.state_dict()[k]) for k, x in ra.state_dict().items())
        for ra, rb in zip(a.replicas, b.replicas, strict=True)
    )


def add_training_arguments(parser: Any, *, resamples: int) -> None:
    """The options :func:`plan_training` and :func:`train_backends` take: ``--replicas``, ``--epochs``,
    ``--hidden``, ``--batch-size``, ``--resamples`` (default ``resamples``), ``--workers`` (Ray) and
    ``--chunk-rows`` (rows per chunk when the pairs are streamed)."""
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resamples", type=int, default=resamples)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=10_000)


def plan_training(pairs: Any, *, hidden: int, replicas: int, epochs: int, batch_size: int,
                  meter: StageMeter) -> tuple[Any, Any, dict[str, Any]]:
    """The pairs' gene scale and training control mean (meter stage ``gene_scale_and_means``, computed
    once for every backend), then ``(model_config, train_config, plan)``; ``plan`` holds
    ``steps_per_epoch`` and ``threads_per_replica``."""
    from lazynet_core.config import ModelConfig, TrainConfig
    from lazynet_core.train import planned_steps

    with meter.stage("gene_scale_and_means"):
        pairs.gene_scale()
        pairs.control_mean("train")
    model_config = ModelConfig(hidden=hidden)
    train_config = TrainConfig(replicas=replicas, epochs=epochs, batch_size=batch_size)
    plan = {
        "steps_per_epoch": planned_steps(pairs, train_config.replace(replicas=1, epochs=1)),
        "threads_per_replica": train_config.threads_for(pairs.n_genes, model_config.hidden_for(pairs.n_genes)),
    }
    return model_config, train_config, plan


def train_backends(pairs: Any, model_config: Any, train_config: Any, backends: Any, *, workers: int,
                   meter: StageMeter, on_epoch: Any = None, echo: bool = False
                   ) -> tuple[dict[str, Any], dict[str, tuple[Any, float]]]:
    """Train the same ensemble with each backend (``"ray"`` on ``workers`` workers) and compare the runs.

    Each ``train_ensemble`` is the meter stage ``train_<backend>`` with its wall time and the load
    average before and after, while :class:`ProcessTreePeaks` samples every process every second.
    ``echo``: print each backend's wall time. Returns ``(comparison, runs)``: :func:`compare_backends`
    of the runs, and the runs (backend -> ``(ensemble, wall seconds)``).
    """
    from lazynet_core.train import train_ensemble

    runs, trees = {}, {}
    for backend in backends:
        extra = {"workers": workers} if backend == "ray" else {}
        tree = ProcessTreePeaks(interval=1.0)
        with meter.stage(f"train_{backend}") as rec:
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            ens = train_ensemble(pairs, model_config, train_config, on_epoch=on_epoch, backend=backend, **extra)
            rec.update(wall_s=time.perf_counter() - t0, load_avg_before=list(load0), load_avg_after=list(os.getloadavg()))
        trees[backend] = tree.close()
        runs[backend] = (ens, rec["wall_s"])
        if echo:
            print(f"  {backend}: {rec['wall_s']:.1f} s", flush=True)
    return compare_backends(runs, trees), runs


def compare_backends(runs: dict[str, tuple[Any, float]], trees: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Wall times, process peaks, Ray workers and (with both backends) weights and losses compared.

    ``runs`` maps a backend (``"thread"``, ``"ray"``) to ``(ensemble, wall seconds)``, ``trees`` to its
    :meth:`ProcessTreePeaks.close` list. With both backends: the ratio of wall times, whether the weights
    (:func:`same_weights`) and the per-epoch training losses are identical, and the thread run's losses.
    """
    out: dict[str, Any] = {}
    for backend, (_, wall) in runs.items():
        out[f"{backend}_wall_s"] = wall
        out[f"{backend}_process_peaks"] = trees[backend]
    if "ray" in runs:
        ray_ens = runs["ray"][0]
        workers = [
            {k: i.get(k) for k in ("replica", "worker_pid", "worker_peak_rss_gb", "worker_seconds")}
            for i in ray_ens.info["replicas"]
        ]
        out.update(ray_workers=ray_ens.info["workers"], ray_worker_processes=workers,
                   ray_worker_peak_rss_gb_max=max(w["worker_peak_rss_gb"] for w in workers))
    if "ray" in runs and "thread" in runs:
        (thread, t_wall), (ray_ens, r_wall) = runs["thread"], runs["ray"]
        cols = ["replica", "epoch", "train_loss"]
        h_t = thread.history[cols].sort_values(cols[:2]).reset_index(drop=True)
        h_r = ray_ens.history[cols].sort_values(cols[:2]).reset_index(drop=True)
        out.update(
            ray_over_thread_wall=r_wall / t_wall,
            identical_weights=same_weights(thread, ray_ens),
            identical_losses=bool(np.array_equal(h_t["train_loss"].to_numpy(), h_r["train_loss"].to_numpy())),
            losses=h_t.to_dict("records"),
        )
    return out


# ---- the app as a server -------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc``; kill it if it has not exited 10 s later."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_app(runs: Path, *, timeout: float = 60, output: bool = True) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app.py`` (headless, on a free 127.0.0.1 port, ``LAZYNET_RUNS_DIR=runs``).

    Returns ``(process, url)`` once ``/_stcore/health`` answers 200. ``output``: keep the server's
    stdout and stderr in a pipe (quoted if it exits early) instead of discarding them. The process is
    stopped before a :class:`RuntimeError` (it exited early) or :class:`TimeoutError` is raised.
    """
    port = free_port()
    env = {**os.environ, "LAZYNET_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    if output:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    stop_process(proc)
    raise TimeoutError(f"{url}/_stcore/health did not answer in {timeout:g} s")


@contextmanager
def app_server(runs: Path, *, timeout: float = 60, output: bool = True) -> Iterator[str]:
    """:func:`start_app` as a context: yields the URL, stops the server on the way out."""
    proc, url = start_app(runs, timeout=timeout, output=output)
    try:
        yield url
    finally:
        stop_process(proc)
