"""The spectrum of Σ = (1/n) Σ z̄ᵢ z̄ᵢᵀ from the smaller of its two Gram matrices."""

from __future__ import annotations

import torch


def _gram(z: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of z (..., n, d) in float64: ZZᵀ (n×n) when n ≤ d, else ZᵀZ (d×d).

    Formed in float64: in float32 its rounding moves the small eigenvalues of low-rank inputs enough to
    cost ~1e-6 in normalised entropy.
    """
    z64 = z.to(torch.float64)
    return z64 @ z64.transpose(-1, -2) if z.shape[-2] <= z.shape[-1] else z64.transpose(-1, -2) @ z64


def _clean(lam: torch.Tensor, size: int) -> torch.Tensor:
    # Eigensolver noise on the zero eigenvalues (±1e-17 each) is harmless to entropy but adds up in Σ sqrt(λ).
    cut = size * torch.finfo(torch.float64).eps * lam[..., -1:].abs()
    lam = torch.where(lam > cut, lam, torch.zeros_like(lam))
    # Σ has trace 1 exactly; float32 row normalisation leaves it 1 ± 1e-7, which Rényi entropies near α=1 amplify.
    return lam / lam.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)


# From this size up, SciPy's LAPACK (OpenBLAS, MRRR driver) beats torch's CPU eigvalsh (MKL) by 1.3-2x
# (benchmarks/bench_metrics.py prints both); below it they tie and torch avoids the round trip.
_SCIPY_MIN_SIZE = 384


def _eigvalsh(gram: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of one symmetric float64 matrix, ascending, by the faster solver for its device and size."""
    if gram.device.type == "cpu" and gram.shape[-1] >= _SCIPY_MIN_SIZE:
        import scipy.linalg

        lam = scipy.linalg.eigh(gram.numpy(), eigvals_only=True, driver="evr", check_finite=False)
        return torch.from_numpy(lam)
    return torch.linalg.eigvalsh(gram)


def covariance_spectrum(z: torch.Tensor, used: torch.Tensor, *, batched: bool | None = None) -> torch.Tensor:
    """Eigenvalues (B, k) of each sample's trace-1 covariance, float64, eigensolver noise set to 0.

    `z` (B, N, d) holds unit rows where `used` (B, N) is true and zeros elsewhere. Σ = ZᵀZ/n and ZZᵀ/n
    share their non-zero eigenvalues, so the smaller is decomposed with a symmetric eigensolver: for
    N=512, d=4096 a 512×512 problem instead of 4096×4096. Eigenvalues are ascending and padded with zeros
    to k = min(N, d). `batched=None` picks the faster way measured by benchmarks/bench_metrics.py: one
    batched call on accelerators, a loop over samples trimmed to their own tokens on the CPU.
    """
    if batched is None:
        batched = z.device.type != "cpu"
    b, n, d = z.shape
    n_used = used.sum(dim=1).clamp(min=1).to(torch.float64)
    if batched:
        lam = torch.linalg.eigvalsh(_gram(z) / n_used.view(-1, 1, 1))
        return _clean(lam, max(n, d))
    out = torch.zeros(b, min(n, d), dtype=torch.float64, device=z.device)
    for i in range(b):
        rows = z[i][used[i]]
        if rows.shape[0] == 0:
            continue
        lam = _clean(_eigvalsh(_gram(rows) / n_used[i]), max(rows.shape))
        out[i, out.shape[1] - lam.shape[0] :] = lam[max(0, lam.shape[0] - out.shape[1]) :]
    return out
