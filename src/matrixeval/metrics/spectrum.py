"""The spectrum of Σ = (1/n) Σ z̄ᵢ z̄ᵢᵀ from the smaller of its two Gram matrices."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import MatrixEvalError

# The lower triangle is built from blocks of about this many rows (at most 8 per side): fewer flops than a
# full product, blocks still large enough for the BLAS to run at full speed (benchmarks/bench_metrics.py).
_BLOCK_ROWS = 256


def _gram(z: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The lower triangle of the smaller Gram matrix of z (..., n, d), formed in `dtype`, returned in float64:
    ZZᵀ (n×n) when n ≤ d, else ZᵀZ.

    float64 by default: in float32 its rounding moves the small eigenvalues of low-rank inputs enough to
    cost ~1e-6 in normalised entropy. The eigensolver reads only the lower triangle, so for large sizes the
    blocks above the diagonal are never computed (up to ~45% fewer multiply-adds than a full product).
    A float32 Gram gets its diagonal (the largest entries) exactly, from float64 squared norms.
    """
    zc = z.to(dtype)
    if z.shape[-2] > z.shape[-1]:
        zc = zc.transpose(-1, -2)
    k = zc.shape[-2]
    parts = min(8, k // _BLOCK_ROWS)
    if parts < 2:
        gram = zc @ zc.transpose(-1, -2)
    else:
        size = -(-k // parts)
        blocks = [(i, zc[..., i : i + size, :]) for i in range(0, k, size)]
        gram = torch.zeros(*zc.shape[:-2], k, k, dtype=dtype, device=z.device)
        for a, (i, zi) in enumerate(blocks):
            for j, zj in blocks[: a + 1]:
                gram[..., i : i + zi.shape[-2], j : j + zj.shape[-2]] = zi @ zj.transpose(-1, -2)
    if dtype == torch.float64:
        return gram
    gram = gram.to(torch.float64)
    norms = torch.linalg.vector_norm(z, dim=-1 if z.shape[-2] <= z.shape[-1] else -2, dtype=torch.float64)
    gram.diagonal(dim1=-2, dim2=-1).copy_(norms.square())
    return gram


# On the CPU a symmetric eigensolve of at most this size runs on one thread: MKL's threaded tridiagonal
# reduction syncs its threads once per column, and right after a forward pass (torch's own threads still
# spinning) or on a shared machine that made a 128×128 solve 100× slower (benchmarks/bench_metrics.py).
_ONE_THREAD_EIGH = 1024


@contextmanager
def _one_thread(enabled: bool) -> Iterator[None]:
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _clean(lam: torch.Tensor, size: int) -> torch.Tensor:
    # Eigensolver noise on the zero eigenvalues (±1e-17 each) is harmless to entropy but adds up in Σ sqrt(λ).
    cut = size * torch.finfo(torch.float64).eps * lam[..., -1:].abs()
    lam = torch.where(lam > cut, lam, torch.zeros_like(lam))
    # Σ has trace 1 exactly; float32 row normalisation leaves it 1 ± 1e-7, which Rényi entropies near α=1 amplify.
    return lam / lam.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)


def covariance_spectrum(
    z: torch.Tensor,
    used: torch.Tensor,
    *,
    batched: bool | None = None,
    gram_dtype: torch.dtype = torch.float64,
    clamp_gram: bool = False,
) -> torch.Tensor:
    """Eigenvalues (B, k) of each sample's trace-1 covariance, float64, eigensolver noise set to 0.

    `z` (B, N, d) holds unit rows where `used` (B, N) is true and zeros elsewhere. Σ = ZᵀZ/n and ZZᵀ/n
    share their non-zero eigenvalues, so the smaller is decomposed with a symmetric eigensolver: for
    N=512, d=4096 a 512×512 problem instead of 4096×4096. Eigenvalues are ascending and padded with zeros
    to k = min(N, d). `batched=None` picks the faster way measured by benchmarks/bench_metrics.py: one
    batched call on accelerators, a loop over samples trimmed to their own tokens on the CPU.
    `gram_dtype=torch.float32` forms the Gram product in float32 (exact diagonal, float64 eigensolve):
    faster where float64 is slow (consumer GPUs), within ~1e-8 on full-rank inputs but up to ~2e-6 in
    normalised entropy on low-rank ones (tests/metrics/test_gram_precision.py), so it is never the default.
    `clamp_gram=True` clamps the Gram matrix to ≥ 0 elementwise first (Layer by Layer's prompt entropy).
    """
    if gram_dtype not in (torch.float64, torch.float32):
        raise MatrixEvalError(f"gram_dtype must be torch.float64 or torch.float32, got {gram_dtype}")
    if batched is None:
        batched = z.device.type != "cpu"
    b, n, d = z.shape
    n_used = used.sum(dim=1).clamp(min=1).to(torch.float64)
    with _full_float32_matmuls(gram_dtype == torch.float32 and z.device.type == "cuda"):
        if batched:
            gram = _gram(z, gram_dtype) / n_used.view(-1, 1, 1)
            lam = torch.linalg.eigvalsh(gram.clamp(min=0) if clamp_gram else gram)
            return _clean(lam, max(n, d))
        out = torch.zeros(b, min(n, d), dtype=torch.float64, device=z.device)
        for i in range(b):
            rows = z[i] if bool(used[i].all()) else z[i][used[i]]
            if rows.shape[0] == 0:
                continue
            gram = _gram(rows, gram_dtype) / n_used[i]
            if clamp_gram:
                gram = gram.clamp(min=0)
            with _one_thread(gram.shape[-1] <= _ONE_THREAD_EIGH):
                lam = torch.linalg.eigvalsh(gram)
            lam = _clean(lam, max(rows.shape))
            out[i, out.shape[1] - lam.shape[0] :] = lam[max(0, lam.shape[0] - out.shape[1]) :]
        return out


@contextmanager
def _full_float32_matmuls(enabled: bool) -> Iterator[None]:
    """float32 products in true float32, not TF32 (10-bit mantissa), even where the user allowed TF32."""
    if not enabled or torch.get_float32_matmul_precision() == "highest":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
