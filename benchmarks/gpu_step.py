"""Training-step throughput of LazyNet at paper-scale shapes on a GPU (optional; CPU is the product).

Times forward + backward + Adam steps of one replica (18k genes, hidden 256, batch 128 by default)
on random inputs, and a matmul roofline of the same shapes on the same device, so the ratio can be
compared with ``scale.py``'s CPU figures. Prints a table and writes ``benchmarks/results/gpu_step.json``
(or ``--out``). Skips with a message when no CUDA device is present.

Usage: ``PYTHONPATH=. python benchmarks/gpu_step.py [--genes 18000 --hidden 256 --batch 128]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lazynet_core.config import ModelConfig
from lazynet_core.model import LazyNet


def _timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict:
    """Run the measurement; return the result dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=18_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/gpu_step.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA device: nothing to measure (LazyNet itself never needs one).")
        return {}
    dev = torch.device("cuda")
    G, H, B = args.genes, args.hidden, args.batch
    model = LazyNet(G, ModelConfig(hidden=H)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(B, G, device=dev) * 3
    y = x + 0.01 * torch.randn(B, G, device=dev)

    def step() -> None:
        loss = ((model.step(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = 6.0 * B * (G * H + H * H + H * G)
    step_s = _timed(step, args.repeats)
    a, w1, w2 = torch.rand(B, G, device=dev), torch.rand(G, H, device=dev), torch.rand(H, G, device=dev)
    mm_s = _timed(lambda: (a @ w1) @ w2, args.repeats)
    mm_flops = 2.0 * B * G * H * 2
    result = {
        "benchmark": "gpu_step", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "genes": G, "hidden": H, "batch": B, "seconds_per_step": step_s,
        "pairs_per_second": B / step_s, "step_gflops": flops / step_s / 1e9,
        "matmul_gflops_fp32": mm_flops / mm_s / 1e9,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"{result['device']}: {step_s * 1e3:.2f} ms/step, {result['pairs_per_second']:.0f} pairs/s, "
          f"{result['step_gflops']:.0f} GFLOP/s "
          f"(fp32 matmul of the same shapes: {result['matmul_gflops_fp32']:.0f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
