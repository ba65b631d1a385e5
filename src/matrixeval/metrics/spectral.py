"""Every spectral metric of a batch from one eigendecomposition per sample, with a status per sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._tokens import STATUSES, NormalizedTokens, normalize_tokens, undefined_to_nan
from .entropy import Normalization, check_entropy_args, entropy_from_spectrum, normalize_entropy
from .nuclear import column_norm_nuclear, nuclear_from_spectrum
from .spectrum import covariance_spectrum

__all__ = ["SpectralMetrics", "spectral_metrics"]


@dataclass(frozen=True)
class SpectralMetrics:
    """Per-sample results, float64 tensors of shape () or (B,); NaN where `status` is not "ok".

    `entropy` is in nats (un-normalised, Shannon); `matrix_entropy` carries the requested normalisation
    and α. `n_tokens` counts the tokens that entered Σ; `n_dropped` the real tokens left out because
    their centred vector was only rounding noise. `spectrum` (B, k) is each sample's trace-1 covariance
    spectrum, ascending and zero-padded, from which `metrics.family` computes the rest of the family.
    """

    matrix_entropy: torch.Tensor
    entropy: torch.Tensor
    effective_rank: torch.Tensor
    nuclear_norm: torch.Tensor
    nuclear_norm_exact: torch.Tensor
    n_tokens: torch.Tensor
    n_dropped: torch.Tensor
    status_code: torch.Tensor
    hidden_size: int
    spectrum: torch.Tensor | None = None
    tokens: NormalizedTokens | None = None  # the centred, normalised tokens, when asked (keep_tokens=True)

    @property
    def status(self) -> str | list[str]:
        """"ok", "too_few_tokens" (N < 2), "degenerate" (no centred token survives) or "nonfinite"."""
        if self.status_code.dim() == 0:
            return STATUSES[int(self.status_code)]
        return [STATUSES[c] for c in self.status_code.tolist()]


def spectral_metrics(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    normalize: Normalization = "logd",
    alpha: float = 1.0,
    gram_dtype: torch.dtype = torch.float64,
    keep_tokens: bool = False,
) -> SpectralMetrics:
    """Matrix entropy, effective rank and both nuclear norms of (N, d) or (B, N, d) hidden states.

    One centring, one Gram product and one batched eigensolve serve every metric, so asking for all of
    them costs about as much as matrix entropy alone. A sample's many layers can be passed as the batch.
    Undefined samples get NaN values and a status instead of an exception from linear algebra.
    `gram_dtype=torch.float32` trades accuracy on low-rank inputs for speed (see `covariance_spectrum`).
    `keep_tokens=True` returns the normalised tokens too, for the metrics that read token states (curvature,
    pooled document vectors, the clamped Gram matrix) without a second normalisation pass.
    """
    check_entropy_args(normalize, alpha)
    t = normalize_tokens(hidden, mask)
    d = t.z.shape[-1]
    lam = covariance_spectrum(t.z, t.used, gram_dtype=gram_dtype)
    shannon = entropy_from_spectrum(lam)
    chosen = shannon if alpha == 1.0 else entropy_from_spectrum(lam, alpha)

    def out(values: torch.Tensor) -> torch.Tensor:
        return undefined_to_nan(values, t.status, t.squeeze)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values[0] if t.squeeze else values

    return SpectralMetrics(
        matrix_entropy=out(normalize_entropy(chosen, t.n_used, d, normalize)),
        entropy=out(shannon),
        effective_rank=out(torch.exp(shannon)),
        nuclear_norm=out(column_norm_nuclear(t.z, t.n_used)),
        nuclear_norm_exact=out(nuclear_from_spectrum(lam, t.n_used)),
        n_tokens=pick(t.n_used),
        n_dropped=pick(t.n_dropped),
        status_code=pick(t.status),
        hidden_size=d,
        spectrum=pick(lam),
        tokens=t if keep_tokens else None,
    )
