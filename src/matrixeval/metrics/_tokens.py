"""Boundary check for hidden states and the shared first step of every metric: centre, drop noise, normalise."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MatrixEvalError

# Per-sample status codes; `STATUSES[code]` is the name users see.
OK, TOO_FEW_TOKENS, DEGENERATE, NONFINITE = 0, 1, 2, 3
STATUSES = ("ok", "too_few_tokens", "degenerate", "nonfinite")

# A centred token whose norm is below this many ulps of (|x| + |mean|) is rounding noise, not signal.
_NOISE_ULPS = 16.0


@dataclass(frozen=True)
class NormalizedTokens:
    """Centred, row-normalised tokens of a batch: `z` (B, N, d) with zero rows for unused positions."""

    z: torch.Tensor
    used: torch.Tensor  # (B, N) bool: real, finite, not rounding noise
    n_used: torch.Tensor  # (B,) int64
    n_dropped: torch.Tensor  # (B,) int64: real tokens dropped as rounding noise
    status: torch.Tensor  # (B,) int64 codes, see STATUSES
    squeeze: bool  # the caller passed a single (N, d) sample


def check_hidden(hidden: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate shapes and dtypes once, at the boundary; return (B, N, d) hidden, (B, N) bool mask, squeeze flag."""
    if not isinstance(hidden, torch.Tensor):
        raise MatrixEvalError(f"hidden must be a torch.Tensor of shape (N, d) or (B, N, d), got {type(hidden).__name__}")
    if not hidden.is_floating_point():
        raise MatrixEvalError(f"hidden must be a floating-point tensor, got dtype {hidden.dtype}; cast it with .float()")
    squeeze = hidden.dim() == 2
    if squeeze:
        hidden = hidden.unsqueeze(0)
    if hidden.dim() != 3:
        raise MatrixEvalError(f"hidden must have shape (N, d) or (B, N, d), got {tuple(hidden.shape)}")
    b, n, _ = hidden.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=hidden.device)
    else:
        if squeeze and mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if tuple(mask.shape) != (b, n):
            raise MatrixEvalError(
                f"mask must have shape {(b, n)} to match hidden {tuple(hidden.shape)}, got {tuple(mask.shape)}"
            )
        mask = mask.to(device=hidden.device, dtype=torch.bool)
    return hidden, mask, squeeze


def normalize_tokens(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> NormalizedTokens:
    """Algorithm 1's first steps: subtract each sample's mean token and L2-normalise every centred token.

    Work is in float32 (float64 inputs stay float64): centring in bf16/fp16 alone would cost ~1e-2 in entropy.
    Tokens whose centred norm is only rounding noise are dropped and counted, never normalised into a
    spurious unit vector. Written to make few passes over the (B, N, d) input: this is the hot path.
    """
    hidden, mask, squeeze = check_hidden(hidden, mask)
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    x = hidden.to(dtype)
    owned = x is not hidden  # a fresh copy, which may be overwritten: one working copy of the input, not two
    # A row sum is finite exactly when the row is (barring overflow of values near the dtype's maximum).
    finite = torch.isfinite(x.sum(dim=-1))
    nonfinite = (mask & ~finite).any(dim=1)
    w = mask & finite
    if not bool(w.all()):
        x = x.masked_fill_(~w.unsqueeze(-1), 0.0) if owned else x.masked_fill(~w.unsqueeze(-1), 0.0)
        owned = True
    n_real = mask.sum(dim=1)
    mean = x.sum(dim=1, keepdim=True) / n_real.clamp(min=1).view(-1, 1, 1).to(dtype)
    c = x.sub_(mean) if owned else x - mean
    c_norm = torch.linalg.vector_norm(c, dim=-1)
    # Rounding noise of x - mean is a few ulps of |x| + |mean| <= |c| + 2|mean|.
    mean_norm = torch.linalg.vector_norm(mean, dim=-1)
    used = w & (c_norm > _NOISE_ULPS * torch.finfo(dtype).eps * (c_norm + 2 * mean_norm))
    n_used = used.sum(dim=1)
    status = torch.full_like(n_real, OK)
    status = torch.where(n_used < 2, torch.full_like(status, DEGENERATE), status)
    status = torch.where(n_real < 2, torch.full_like(status, TOO_FEW_TOKENS), status)
    status = torch.where(nonfinite, torch.full_like(status, NONFINITE), status)
    keep = used & (status == OK).unsqueeze(-1)
    inv = torch.where(keep, 1.0 / c_norm.clamp(min=torch.finfo(dtype).tiny), torch.zeros((), dtype=dtype, device=x.device))
    z = c.mul_(inv.unsqueeze(-1))
    n_dropped = torch.where(nonfinite, torch.zeros_like(n_real), n_real - n_used)
    return NormalizedTokens(z=z, used=keep, n_used=n_used, n_dropped=n_dropped, status=status, squeeze=squeeze)


def undefined_to_nan(values: torch.Tensor, status: torch.Tensor, squeeze: bool) -> torch.Tensor:
    """NaN where a sample has no defined value (status not ok); the scalar back for a single sample."""
    values = torch.where(status == OK, values, torch.full_like(values, float("nan")))
    return values[0] if squeeze else values
