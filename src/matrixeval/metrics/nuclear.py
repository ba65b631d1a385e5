"""Matrix Nuclear-Norm (2024): a cheap proxy for matrix entropy, and the exact nuclear norm it approximates."""

from __future__ import annotations

import torch

from ._tokens import normalize_tokens, undefined_to_nan
from .spectrum import covariance_spectrum

__all__ = ["column_norm_nuclear", "nuclear_from_spectrum", "matrix_nuclear_norm"]


def column_norm_nuclear(z: torch.Tensor, n_used: torch.Tensor) -> torch.Tensor:
    """MNN as its reference code computes it: the L2 norm of each of the d columns of the normalised
    token matrix, the sum of the largest D = min(n, d) of them, divided by n. Zero rows change nothing."""
    col = (z * z).sum(dim=-2).to(torch.float64).sqrt()  # (B, d); faster than vector_norm over a strided dim
    d = col.shape[-1]
    k = torch.clamp(n_used, max=d)
    top = torch.topk(col, int(k.max()), dim=-1).values  # descending
    keep = torch.arange(top.shape[-1], device=col.device).view(1, -1) < k.view(-1, 1)
    return torch.where(keep, top, torch.zeros_like(top)).sum(dim=-1) / n_used.clamp(min=1).to(torch.float64)


def nuclear_from_spectrum(lam: torch.Tensor, n_used: torch.Tensor) -> torch.Tensor:
    """‖Z‖_* / n from Σ's spectrum: Z's singular values are sqrt(n λ), so ‖Z‖_*/n = Σ sqrt(λ / n)."""
    return torch.sqrt(lam / n_used.clamp(min=1).to(lam.dtype).view(-1, 1)).sum(dim=-1)


def matrix_nuclear_norm(hidden: torch.Tensor, mask: torch.Tensor | None = None, *, exact: bool = False) -> torch.Tensor:
    """Matrix Nuclear-Norm of hidden states (N, d) or (B, N, d), divided by the token count.

    `exact=False` (default) is the paper's column-norm approximation; `exact=True` the sum of singular
    values of the same normalised matrix. Higher means more diverse (less compressed) representations; the
    paper's evaluation ranks lower as better (more compression), and so does matrixeval.
    """
    t = normalize_tokens(hidden, mask)
    if exact:
        value = nuclear_from_spectrum(covariance_spectrum(t.z, t.used), t.n_used)
    else:
        value = column_norm_nuclear(t.z, t.n_used)
    return undefined_to_nan(value, t.status, t.squeeze)
