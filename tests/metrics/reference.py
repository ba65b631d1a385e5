"""Independent float64 transcriptions of the papers' formulas, written plainly for the tests to compare with."""

import math

import torch
import torch.nn.functional as F


def normalized(h: torch.Tensor) -> torch.Tensor:
    h = h.double()
    c = h - h.mean(dim=0)
    return c / c.norm(dim=1, keepdim=True)


def covariance(h: torch.Tensor) -> torch.Tensor:
    """Σ = (1/N) Σ z zᵀ, d×d, as in the entropy paper's Algorithm 1."""
    z = normalized(h)
    return z.T @ z / z.shape[0]


def entropy_nats(h: torch.Tensor, alpha: float = 1.0) -> float:
    lam = torch.linalg.eigvalsh(covariance(h)).clamp(min=0)
    if alpha == 1.0:
        return float(-sum(x * math.log(x) for x in lam.tolist() if x > 0))
    return math.log(sum(x**alpha for x in lam.tolist() if x > 0)) / (1 - alpha)


def matrix_entropy(h: torch.Tensor) -> float:
    return entropy_nats(h) / math.log(h.shape[1])


def mnn_reference_code(h: torch.Tensor) -> float:
    """The Matrix Nuclear-Norm reference code, transcribed: normalise rows, column L2 norms, top-D sum / N."""
    h = h.double()
    h = h - h.mean(dim=0)
    h = F.normalize(h, p=2, dim=1)
    norms = torch.norm(h, p=2, dim=0)
    top = torch.topk(norms, min(h.shape)).values
    return float(top.sum() / h.shape[0])


def nuclear_exact(h: torch.Tensor) -> float:
    z = normalized(h)
    return float(torch.linalg.svdvals(z).sum() / z.shape[0])
