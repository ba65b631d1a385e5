"""Matrix (von Neumann / Rényi) entropy and effective rank of hidden states (Wei et al. 2024, Algorithm 1)."""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import MatrixEvalError
from ._tokens import normalize_tokens, undefined_to_nan
from .spectrum import covariance_spectrum

__all__ = ["Normalization", "entropy_from_spectrum", "normalize_entropy", "matrix_entropy", "effective_rank"]

Normalization = Literal["logd", "logn", "max", "none"]
NORMALIZATIONS = ("logd", "logn", "max", "none")


def entropy_from_spectrum(lam: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    r"""Entropy in nats of trace-1 spectra `lam` (..., k).

    .. math:: H_1 = -\sum_i \lambda_i \log \lambda_i, \qquad H_\alpha = \frac{\log \sum_i \lambda_i^\alpha}{1-\alpha}

    with 0·log 0 = 0 (xlogy), so zero eigenvalues from padding never matter.
    """
    if alpha == 1.0:
        return -torch.special.xlogy(lam, lam).sum(dim=-1)
    pos = torch.where(lam > 0, lam, torch.zeros_like(lam))
    powered = torch.where(lam > 0, pos.pow(alpha), torch.zeros_like(lam))
    return torch.log(powered.sum(dim=-1)) / (1.0 - alpha)


def normalize_entropy(h: torch.Tensor, n: torch.Tensor, d: int, how: Normalization = "logd") -> torch.Tensor:
    """Divide entropies by log d (the paper), log n, min(log n, log d), or nothing."""
    if how == "none":
        return h
    logd = torch.full_like(h, math.log(d))
    if how == "logd":
        return h / logd
    logn = torch.log(n.to(h.dtype))
    if how == "logn":
        return h / logn
    return h / torch.minimum(logn, logd)


def check_entropy_args(normalize: str, alpha: float) -> None:
    if normalize not in NORMALIZATIONS:
        raise MatrixEvalError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if not alpha > 0 or not math.isfinite(alpha):
        raise MatrixEvalError(f"alpha must be a positive finite number (1 = von Neumann entropy), got {alpha!r}")


def matrix_entropy(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    normalize: Normalization = "logd",
    alpha: float = 1.0,
) -> torch.Tensor:
    """Matrix entropy of hidden states (N, d) or (B, N, d): lower means more redundancy squeezed out.

    Centre, L2-normalise each token, take the trace-1 covariance's spectrum and its entropy, divided by
    log d by default. Returns float64 of shape () or (B,); NaN for samples that have no defined value
    (see `spectral_metrics` for the reason).

    Example:
        >>> matrix_entropy(torch.eye(4, 8)).item()  # doctest: +ELLIPSIS
        0.52...
    """
    check_entropy_args(normalize, alpha)
    t = normalize_tokens(hidden, mask)
    h = entropy_from_spectrum(covariance_spectrum(t.z, t.used), alpha)
    return undefined_to_nan(normalize_entropy(h, t.n_used, t.z.shape[-1], normalize), t.status, t.squeeze)


def effective_rank(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """erank(Σ) = exp(−Σ λ log λ) (Roy & Vetterli 2007): the number of directions the tokens really use."""
    t = normalize_tokens(hidden, mask)
    h = entropy_from_spectrum(covariance_spectrum(t.z, t.used))
    return undefined_to_nan(torch.exp(h), t.status, t.squeeze)
