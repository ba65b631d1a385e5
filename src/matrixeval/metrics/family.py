r"""The wider spectral family (Rényi-α entropy, RankMe, α-ReQ, effective ranks), each source's convention named.

Every function here reads the trace-1 spectrum λ (..., k) that `covariance_spectrum` returns (ascending,
zero-padded), so the whole family of one sample costs the one eigendecomposition matrix entropy already pays
for. The one exception is Layer-by-Layer's clamp: clamping the Gram matrix elementwise changes its spectrum,
so `prompt_entropy(..., clamp=True)` solves the clamped matrix (that is the definition, not an inefficiency).
Curvature and the pooled document vectors read the normalised tokens instead (no eigendecomposition), and
`dataset_entropy` solves the one matrix of a whole data set's document vectors.

Conventions and the code they follow (commits in tests/metrics/test_family.py):

- Rényi-α with normalisations ``maxEntropy logN logD logNlogD raw length``: OFSkean/information_flow,
  ``experiments/utils/metrics/metric_functions.py`` (``entropy_normalization``, ``compute_entropy``).
- RankMe, ``garrido``: p = σ/‖σ‖₁ + ε on the singular values σ (Garrido et al. 2023); ``reptrix``: the same on
  the explained-variance ratio σ²/‖σ²‖₁ of the centred matrix (arnab39/reptrix ``rankme.get_rank``).
- α-ReQ: reptrix ``alpha.get_powerlaw``, a weighted least-squares fit of log λᵢ on −log i over a window.
- Curvature and dataset entropy: information_flow ``compute_curvature`` and ``compute_entropy`` on the
  mean-pooled prompt vectors of ``experiments/utils/misc/metric_utils.py`` (``compute_on_concatenated_passes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import MatrixEvalError
from ._tokens import NormalizedTokens, check_hidden, normalize_tokens, undefined_to_nan
from .entropy import entropy_from_spectrum
from .spectrum import covariance_spectrum

__all__ = [
    "LBL_NORMALIZATIONS",
    "RANKME_EPS",
    "LblNormalization",
    "RankMeConvention",
    "FamilyOptions",
    "alpha_req",
    "curvature",
    "curvature_from_tokens",
    "dataset_entropy",
    "pooled_from_tokens",
    "effective_rank_lambda",
    "effective_rank_sigma",
    "family_from_spectrum",
    "lbl_normalize",
    "prompt_entropy",
    "rankme",
    "representation_spectrum",
    "renyi_entropy",
]

LblNormalization = Literal["maxEntropy", "logN", "logD", "logNlogD", "raw", "length"]
LBL_NORMALIZATIONS = ("maxEntropy", "logN", "logD", "logNlogD", "raw", "length")
RankMeConvention = Literal["garrido", "reptrix"]
RANKME_EPS = 1e-7  # Garrido et al. 2023 and reptrix


def _check_alpha(alpha: float) -> None:
    if not alpha > 0 or not math.isfinite(alpha):
        raise MatrixEvalError(f"alpha must be a positive finite number (1 = von Neumann entropy), got {alpha!r}")


def lbl_normalize(h: torch.Tensor, n: torch.Tensor | int, d: int, how: LblNormalization = "maxEntropy") -> torch.Tensor:
    """Layer-by-Layer's `entropy_normalization`: ÷ min(log N, log D), log N, log D, log N·log D, nothing; or N.

    "length" replaces the value by N, the number of tokens, exactly as the source does.
    """
    if how not in LBL_NORMALIZATIONS:
        raise MatrixEvalError(f"normalization must be one of {', '.join(LBL_NORMALIZATIONS)}, got {how!r}")
    n = torch.as_tensor(n, dtype=h.dtype, device=h.device).expand_as(h)
    logn, logd = torch.log(n), torch.full_like(h, math.log(d))
    if how == "maxEntropy":
        return h / torch.minimum(logn, logd)
    if how == "logN":
        return h / logn
    if how == "logD":
        return h / logd
    if how == "logNlogD":
        return h / (logn * logd)
    if how == "length":
        return n.clone()
    return h


def renyi_entropy(
    lam: torch.Tensor, n: torch.Tensor | int, d: int, *, alpha: float = 1.0, normalization: LblNormalization = "raw"
) -> torch.Tensor:
    r"""Rényi-α entropy of trace-1 spectra (..., k), normalised as Layer by Layer does.

    .. math:: H_\alpha = \frac{1}{1-\alpha}\log\sum_i \lambda_i^\alpha, \qquad H_1 = -\sum_i \lambda_i\log\lambda_i

    `n` is the number of tokens and `d` the hidden size of each sample (for the normalisations).
    """
    _check_alpha(alpha)
    return lbl_normalize(entropy_from_spectrum(lam, alpha), n, d, normalization)


def _top(lam: torch.Tensor, k: torch.Tensor | None) -> torch.Tensor:
    """Which entries of ascending spectra (..., K) are real: the last `k` of each row (all when k is None)."""
    if k is None:
        return torch.ones_like(lam, dtype=torch.bool)
    idx = torch.arange(lam.shape[-1], device=lam.device)
    return idx >= (lam.shape[-1] - k.to(lam.device).unsqueeze(-1))


def rankme(
    lam: torch.Tensor,
    *,
    convention: RankMeConvention = "garrido",
    eps: float = RANKME_EPS,
    k: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""RankMe of trace-1 covariance spectra λ (..., K): exp(−Σ pᵢ log pᵢ), pᵢ = sᵢ/‖s‖₁ + ε.

    `garrido`: s = σ = √λ, the singular values of the representation matrix (Garrido et al. 2023).
    `reptrix`: s = λ ∝ σ², the explained-variance ratio (reptrix 0.1.0). ε enters once per singular value,
    so `k` (..., ) says how many of each row's values exist (min(N, d)); padding beyond it is left out.
    """
    if convention not in ("garrido", "reptrix"):
        raise MatrixEvalError(f"RankMe convention must be 'garrido' or 'reptrix', got {convention!r}")
    s = lam.clamp(min=0)
    if convention == "garrido":
        s = s.sqrt()
    real = _top(lam, k)
    s = torch.where(real, s, torch.zeros_like(s))
    p = s / s.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny) + eps
    return torch.exp(-torch.where(real, p * torch.log(p), torch.zeros_like(p)).sum(dim=-1))


def effective_rank_lambda(lam: torch.Tensor) -> torch.Tensor:
    """exp(H(λ)) on the eigenvalues λ = σ²/n (Roy & Vetterli 2007 on Σ): matrixeval's `effective_rank`."""
    return torch.exp(entropy_from_spectrum(lam))


def effective_rank_sigma(lam: torch.Tensor) -> torch.Tensor:
    """exp(H(σ/‖σ‖₁)) on the singular values σ ∝ √λ of the token matrix (the convention of RankMe without ε)."""
    s = lam.clamp(min=0).sqrt()
    p = s / s.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
    return torch.exp(entropy_from_spectrum(p))


def alpha_req(lam: torch.Tensor, window: tuple[int, int] = (10, 100)) -> torch.Tensor:
    r"""α-ReQ (Agrawal et al. 2022): the decay α of λᵢ ∝ i^{−α}, fitted as reptrix's `get_powerlaw` does.

    Eigenvalues sorted descending; over 0-based indices `window` = [start, stop) (reptrix: 10–99) a weighted
    least-squares fit of log λᵢ on (−log(i+1), 1) with weights 1/(i+1). NaN where the window holds an
    eigenvalue ≤ 0 or runs past the spectrum.
    """
    start, stop = window
    if not 0 <= start < stop - 1:
        raise MatrixEvalError(f"alpha_req window must be (start, stop) with 0 <= start < stop - 1, got {window!r}")
    desc = lam.flip(-1)
    if stop > desc.shape[-1]:
        return torch.full(desc.shape[:-1], float("nan"), dtype=torch.float64, device=lam.device)
    y = torch.log(desc[..., start:stop].to(torch.float64).clamp(min=0))
    i = torch.arange(start + 1, stop + 1, dtype=torch.float64, device=lam.device)
    x = torch.stack([-torch.log(i), torch.ones_like(i)], dim=-1)  # (m, 2)
    w = 1.0 / i
    xtwx = (x * w.unsqueeze(-1)).T @ x
    xtwy = ((x * w.unsqueeze(-1)).T @ y.unsqueeze(-1)).squeeze(-1)  # (..., 2)
    b = torch.linalg.solve(xtwx, xtwy.unsqueeze(-1)).squeeze(-1)
    return torch.where(torch.isfinite(y).all(dim=-1), b[..., 0], torch.full_like(b[..., 0], float("nan")))


def representation_spectrum(
    x: torch.Tensor, mask: torch.Tensor | None = None, *, center: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace-1 spectrum (B, k) of a raw representation matrix (N, d) or (B, N, d), not row-normalised.

    `center=True`: of the centred matrix (reptrix's PCA); False: of the matrix as given (Garrido's σ).
    Returns (λ ascending, number of singular values min(n, d) per sample). For matrixeval's own
    centred-and-normalised tokens use `covariance_spectrum` on `normalize_tokens(...).z`.
    """
    h, m, squeeze = check_hidden(x, mask)
    h = torch.where(m.unsqueeze(-1), h.to(torch.float64), torch.zeros((), dtype=torch.float64, device=h.device))
    n = m.sum(dim=1)
    if center:
        mean = h.sum(dim=1, keepdim=True) / n.clamp(min=1).view(-1, 1, 1)
        h = torch.where(m.unsqueeze(-1), h - mean, torch.zeros_like(h))
    lam = covariance_spectrum(h, m)
    k = torch.minimum(n, torch.tensor(h.shape[-1], device=n.device))
    return (lam[0], k[0]) if squeeze else (lam, k)


def prompt_entropy(
    hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    normalization: LblNormalization = "maxEntropy",
    clamp: bool = True,
) -> torch.Tensor:
    """Layer-by-Layer's prompt entropy of hidden states (N, d) or (B, N, d): float64 () or (B,), NaN if undefined.

    Tokens are centred and L2-normalised as for `matrix_entropy`; with `clamp=True` (the source's default) the
    smaller Gram matrix is clamped to ≥ 0 elementwise before trace-normalising, which raises the entropy.
    `clamp=False` with α = 1 and "logD" is `matrix_entropy`.
    """
    _check_alpha(alpha)
    t = normalize_tokens(hidden, mask)
    d = t.z.shape[-1]
    lam = covariance_spectrum(t.z, t.used, clamp_gram=clamp)
    h = renyi_entropy(lam, t.n_used, d, alpha=alpha, normalization=normalization)
    return undefined_to_nan(h, t.status, t.squeeze)


@dataclass(frozen=True)
class FamilyOptions:
    """The settings that change a family value: Rényi α, the Layer-by-Layer normalisation and clamp (prompt and
    dataset entropy), and α-ReQ's fit window. The default is Wei et al.'s convention: no clamp, ÷ log D, α = 1,
    under which `prompt_entropy` is `matrix_entropy` exactly."""

    alpha: float = 1.0
    normalization: LblNormalization = "logD"
    clamp: bool = False
    alpha_req_window: tuple[int, int] = (10, 100)

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.normalization not in LBL_NORMALIZATIONS:
            raise MatrixEvalError(
                f"normalization must be one of {', '.join(LBL_NORMALIZATIONS)}, got {self.normalization!r}"
            )
        start, stop = self.alpha_req_window
        if not 0 <= start < stop - 1:
            raise MatrixEvalError(f"alpha_req window must be START:STOP with 0 <= START < STOP - 1, got {start}:{stop}")


def family_from_spectrum(
    lam: torch.Tensor,
    n_tokens: torch.Tensor,
    hidden_size: int,
    status: torch.Tensor,
    *,
    wanted: tuple[str, ...] = ("rankme", "rankme_reptrix", "effective_rank_sigma"),
    options: FamilyOptions = FamilyOptions(),
) -> dict[str, torch.Tensor]:
    """The engine's per-sample family columns from `spectral_metrics(...)`'s `spectrum`, `n_tokens`, `status_code`
    (batched); NaN where the status is not ok, like every other spectral value.

    `rankme` (Garrido: σ of the centred, normalised token matrix), `rankme_reptrix` (its λ ∝ σ²),
    `effective_rank_sigma`, and, when in `wanted`, `alpha_req` (over `options.alpha_req_window`) and
    `prompt_entropy` without the clamp (with it the clamped matrix has another spectrum: the caller solves it).
    """
    k = torch.minimum(n_tokens.to(lam.device), torch.tensor(hidden_size, device=lam.device))
    values = {}
    for name in wanted:
        if name == "rankme":
            values[name] = rankme(lam, k=k)
        elif name == "rankme_reptrix":
            values[name] = rankme(lam, convention="reptrix", k=k)
        elif name == "effective_rank_sigma":
            values[name] = effective_rank_sigma(lam)
        elif name == "alpha_req":
            values[name] = alpha_req(lam, options.alpha_req_window)
        elif name == "prompt_entropy" and not options.clamp:
            values[name] = renyi_entropy(lam, n_tokens.to(lam.device), hidden_size, alpha=options.alpha,
                                         normalization=options.normalization)
    return {name: undefined_to_nan(v, status.to(v.device), False) for name, v in values.items()}


def curvature_from_tokens(t: NormalizedTokens) -> torch.Tensor:
    """Per-sample curvature (B,) float64 of already normalised tokens; NaN where the status is not ok.

    information_flow's `calculate_layer_average_k_curvature` (k = 1), batched: each sample's used tokens are
    moved to the front in order, and only the pairs of difference vectors inside its own tokens are averaged.
    """
    b, n, _ = t.z.shape
    z = t.z.to(torch.float64)
    if not bool(t.used.all()):  # a stable sort puts each sample's used tokens first, in their order
        order = torch.sort((~t.used).to(torch.int8), dim=1, stable=True).indices
        z = torch.gather(z, 1, order.unsqueeze(-1).expand_as(z))
    n_used = t.used.sum(dim=1)
    v = z[:, 1:] - z[:, :-1]  # v[:, k-1] = x_k − x_{k−1}
    norms = torch.linalg.vector_norm(v, dim=-1)
    na, nc = norms[:, 1:], norms[:, :-1]  # pairs (v_{k+1}, v_k), k = 1 … N−2
    cos = (torch.linalg.vecdot(v[:, 1:], v[:, :-1]).abs() / (na * nc)).clamp(-1, 1)
    angle = torch.where((na == 0) | (nc == 0), torch.zeros_like(cos), torch.arccos(cos))
    pairs = (n_used - 2).clamp(min=0)  # a sample of N tokens has N − 2 pairs
    inside = torch.arange(max(n - 2, 0), device=z.device) < pairs.unsqueeze(-1)
    total = torch.where(inside, angle, torch.zeros_like(angle)).sum(dim=-1)
    out = torch.where(pairs > 0, total / pairs.clamp(min=1), torch.zeros_like(total))  # the source's counter == 0
    return undefined_to_nan(out, t.status, False)


def curvature(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Layer-by-Layer's curvature of hidden states (N, d) or (B, N, d): float64 () or (B,) radians.

    Tokens are centred and L2-normalised (the source's `normalize`, as for prompt entropy); with
    vₖ = xₖ − xₖ₋₁ the mean over k = 1 … N−2 of arccos(|vₖ₊₁·vₖ| / (‖vₖ₊₁‖‖vₖ‖)), a pair with a zero
    vector counting as 0 and fewer than three tokens giving 0, exactly as `compute_curvature`. The absolute
    value is the source's: angles lie in [0, π/2].
    """
    t = normalize_tokens(hidden, mask)
    c = curvature_from_tokens(t)
    return c[0] if t.squeeze else c


def pooled_from_tokens(t: NormalizedTokens) -> dict[str, torch.Tensor]:
    """Each sample's document vectors (B, d) float64 from its normalised tokens: ``mean`` (the mean of its
    centred, unit tokens, as `compute_on_concatenated_passes`) and ``last`` (its last such token)."""
    # z is zero outside the used tokens, so a plain sum (accumulated in float64, without a float64 copy) is theirs
    mean = t.z.sum(dim=1, dtype=torch.float64) / t.used.sum(dim=1).clamp(min=1).to(torch.float64).unsqueeze(-1)
    idx = torch.arange(t.used.shape[1], device=t.used.device)
    last_pos = torch.where(t.used, idx, torch.full_like(idx, -1)).max(dim=1).values.clamp(min=0)
    last = t.z[torch.arange(t.z.shape[0], device=t.z.device), last_pos].to(torch.float64)
    return {"mean": mean, "last": last}


def dataset_entropy(
    vectors: torch.Tensor,
    *,
    alpha: float = 1.0,
    normalization: LblNormalization = "maxEntropy",
    clamp: bool = True,
) -> float:
    """Layer-by-Layer's dataset entropy of document vectors (N, d): the matrix entropy of their Gram matrix.

    The vectors enter as given (no further centring or normalising, as the source's `compute_entropy` on the
    pooled prompts): the smaller Gram matrix, clamped to ≥ 0 when `clamp`, divided by its trace, Rényi-α
    entropy, normalised with N = number of documents. NaN for fewer than two documents or a zero matrix.
    """
    _check_alpha(alpha)
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2:
        raise MatrixEvalError("dataset_entropy needs document vectors of shape (N, d)")
    v = vectors.to(torch.float64)
    n, d = v.shape
    if n < 2 or not bool(torch.isfinite(v).all()) or not bool((v != 0).any()):
        return math.nan
    lam = covariance_spectrum(v.unsqueeze(0), torch.ones(1, n, dtype=torch.bool, device=v.device), clamp_gram=clamp)
    return float(renyi_entropy(lam, n, d, alpha=alpha, normalization=normalization)[0])
