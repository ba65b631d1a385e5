"""Cost of the whole spectral family at one layer next to today's metrics, side by side in one run.

Run: .venv/bin/python benchmarks/bench_family.py [--quick] [--device cpu|cuda]

Times the engine's per-layer step (`engine.measure._spectral`: normalise, Gram, eigensolve, every column) on a
batch of hidden states, and counts the eigensolver calls (torch.linalg.eigvalsh, wrapped) to show what shares
the one eigendecomposition: today's columns (matrix entropy, effective rank, both nuclear norms, both RankMes,
effective rank on σ); + the spectral family under wei2024 (alpha_req, prompt_entropy: same eigenvalues); + the
same under layer_by_layer, whose clamped Gram matrix is another matrix and so costs exactly one more
eigendecomposition per sample; + everything under wei2024, i.e. also the token-state reads (curvature, the
mean- and last-token document vectors of dataset_entropy). Ratios are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch

from matrixeval.engine.measure import EXTRA_FIELDS, _spectral
from matrixeval.metric_info import family_options

SPECTRAL = ("alpha_req", "prompt_entropy")  # read the eigenvalues
TOKEN_STATE = ("curvature", "pooled_mean", "pooled_last")  # read the normalised tokens, not the spectrum
VARIANTS = {
    "today": ((), "wei2024"),
    "+spectral wei2024": (SPECTRAL, "wei2024"),
    "+spectral layer_by_layer": (SPECTRAL, "layer_by_layer"),
    "+all wei2024": (EXTRA_FIELDS, "wei2024"),
}


class EighCounter:
    """Counts torch.linalg.eigvalsh / eigh calls while active (the metric core looks them up at call time)."""

    def __init__(self) -> None:
        self.calls = 0
        self._saved = {}

    def __enter__(self) -> "EighCounter":
        for name in ("eigvalsh", "eigh"):
            real = getattr(torch.linalg, name)
            self._saved[name] = real

            def counted(*a, _real=real, **k):
                self.calls += 1
                return _real(*a, **k)

            setattr(torch.linalg, name, counted)
        return self

    def __exit__(self, *exc) -> None:
        for name, real in self._saved.items():
            setattr(torch.linalg, name, real)


def interleaved(fns: dict, repeats: int, device: str) -> dict[str, float]:
    """Best-of-`repeats` wall time (ms) of each fn, the variants taking turns within every round (after one warm-up
    each), so a busy, shared machine slows them alike rather than whichever ran during the noise."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[name] = min(best[name], (time.perf_counter() - t0) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N ∈ {128, 512}, d = 768 only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier ratios on a shared machine; 0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # on accelerators the eigensolve is one batched call per layer: per sample that reads 1/batch
    grid = [(128, 768), (512, 768)] if args.quick else [(128, 768), (512, 768), (512, 2048), (1024, 2048)]
    torch.manual_seed(0)
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} batch={args.batch}")
    print("| N | d | metrics | ms per batch | eigendecompositions per sample | × today |")
    print("| --: | --: | :-- | --: | --: | --: |")
    for n, d in grid:
        h = (torch.randn(args.batch, n, d) * torch.rand(d) * 3 + torch.randn(d)).to(args.device)
        mask = torch.ones(args.batch, n, dtype=torch.bool, device=args.device)
        steps, per_sample = {}, {}
        for name, (extras, convention) in VARIANTS.items():
            options = family_options(convention, alpha_req_window="10:100")
            steps[name] = lambda extras=extras, options=options: _spectral({-1: h}, mask, [-1], extras, options)
            with EighCounter() as count:
                steps[name]()
            per_sample[name] = count.calls / args.batch
        ms = interleaved(steps, args.repeats, args.device)
        for name in VARIANTS:
            print(f"| {n} | {d} | {name} | {ms[name]:.1f} | {per_sample[name]:.2f} | {ms[name] / ms['today']:.2f} |")


if __name__ == "__main__":
    main()
