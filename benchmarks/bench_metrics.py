"""Per-sample cost of matrixeval's exact entropy vs the reference formulation vs the nuclear-norm proxy.

Run: .venv/bin/python benchmarks/bench_metrics.py [--quick] [--device cpu|cuda]
Everything is measured side by side in this one run; ratios are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from matrixeval import matrix_entropy, matrix_nuclear_norm, spectral_metrics
from matrixeval.experiments.timing import reference_entropy  # the papers' formulation, as the timing experiment runs it


def reference_float64(h: torch.Tensor) -> float:
    z = h.double() - h.double().mean(dim=0)
    z = z / z.norm(dim=1, keepdim=True)
    lam = torch.linalg.eigvalsh(z.T @ z / z.shape[0]).clamp(min=0)
    return float(-torch.special.xlogy(lam, lam).sum() / math.log(h.shape[1]))


def timed(fn, repeats: int, device: str) -> float:
    """Best-of-`repeats` wall time of fn() in milliseconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller grid (N ∈ {128, 512}, d ∈ {768, 4096})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ns = [128, 512] if args.quick else [128, 512, 2048]
    ds = [768, 4096] if args.quick else [768, 2048, 4096]
    torch.manual_seed(0)
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    header = f"{'N':>5} {'d':>5} | {'reference ms':>12} {'ours ms':>9} {'MNN ms':>8} {'all-in-one ms':>13} | {'ref/ours':>9} {'all/ours':>8} | {'|ours-f64|':>10} {'|ref-f64|':>10}"
    print(header)
    print("-" * len(header))
    for n in ns:
        for d in ds:
            h = (torch.randn(n, d) * torch.rand(d) * 3 + torch.randn(d)).to(args.device)
            ref_ms = timed(lambda: reference_entropy(h), 1, args.device)
            ours_ms = timed(lambda: matrix_entropy(h), args.repeats, args.device)
            mnn_ms = timed(lambda: matrix_nuclear_norm(h), args.repeats, args.device)
            all_ms = timed(lambda: spectral_metrics(h), args.repeats, args.device)
            exact = reference_float64(h.cpu())
            err_ours = abs(matrix_entropy(h).item() - exact)
            err_ref = abs(reference_entropy(h) - exact)
            print(
                f"{n:>5} {d:>5} | {ref_ms:>12.1f} {ours_ms:>9.2f} {mnn_ms:>8.2f} {all_ms:>13.2f} | "
                f"{ref_ms / ours_ms:>8.0f}x {all_ms / ours_ms:>7.2f}x | {err_ours:>10.1e} {err_ref:>10.1e}"
            )
    # Batched call over variable-length samples vs a Python loop over the same samples.
    d, lengths = 768, [512, 480, 450, 400, 390, 350, 300, 256]
    batch = torch.randn(len(lengths), max(lengths), d, device=args.device)
    mask = torch.arange(max(lengths), device=args.device)[None, :] < torch.tensor(lengths, device=args.device)[:, None]
    loop_ms = timed(lambda: [spectral_metrics(batch[i, :n]) for i, n in enumerate(lengths)], args.repeats, args.device)
    batched_ms = timed(lambda: spectral_metrics(batch, mask), args.repeats, args.device)
    print(f"\nbatch of {len(lengths)} samples, N {min(lengths)}..{max(lengths)}, d={d}: "
          f"loop {loop_ms:.1f} ms, one batched call {batched_ms:.1f} ms, loop/batched {loop_ms / batched_ms:.2f}x")
    layers = torch.randn(13, 512, d, device=args.device)
    per_layer_ms = timed(lambda: [spectral_metrics(x) for x in layers], args.repeats, args.device)
    stacked_ms = timed(lambda: spectral_metrics(layers), args.repeats, args.device)
    print(f"13 layers of one sample (N=512, d={d}): loop {per_layer_ms:.1f} ms, batched {stacked_ms:.1f} ms, "
          f"loop/batched {per_layer_ms / stacked_ms:.2f}x")
    if args.device == "cpu" and torch.get_num_threads() > 1:
        eigh_threads(args.repeats)


def eigh_threads(repeats: int) -> None:
    """Why covariance_spectrum solves small eigenproblems on one CPU thread: each solve right after torch
    parallel work (as a forward pass leaves the thread pool), with all threads vs one, alternating."""
    threads = torch.get_num_threads()
    a, w = torch.randn(1024, 512), torch.randn(512, 2048)
    print(f"\neigvalsh of an N×N float64 Gram right after a parallel GEMM, {threads} threads vs 1 (best of {repeats + 2}):")
    for n in (128, 512, 1024):
        z = torch.randn(n, 2048, dtype=torch.float64)
        g = z @ z.T
        best = {threads: float("inf"), 1: float("inf")}
        for _ in range(repeats + 2):
            for t in (threads, 1):
                torch.nn.functional.gelu(a @ w)
                torch.set_num_threads(t)
                t0 = time.perf_counter()
                torch.linalg.eigvalsh(g)
                best[t] = min(best[t], time.perf_counter() - t0)
                torch.set_num_threads(threads)
        print(f"  N={n:>5}: {threads} threads {best[threads] * 1e3:8.1f} ms, 1 thread {best[1] * 1e3:8.1f} ms, "
              f"ratio {best[threads] / best[1]:.2f}x")


if __name__ == "__main__":
    main()
