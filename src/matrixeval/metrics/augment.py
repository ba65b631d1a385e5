r"""Metrics of augmented views: LiDAR, DiME and InfoNCE, as Layer by Layer (Skean et al. 2025) computes them.

Each reads pooled document vectors of several augmented views of every document — ``views`` of shape
(N documents, K views, D) — not one document's tokens. The definitions follow OFSkean/information_flow
``experiments/utils/metrics/metric_functions.py`` at commit 703d566f (``compute_LDA_matrix``, ``compute_lidar``,
``compute_dime``, ``compute_infonce``) and the entropies it calls from uk-cliplab/representation-itl at commit
fd0da54 (``matrix_itl.matrixAlphaEntropy``: von Neumann at α = 1, Rényi otherwise, over the positive eigenvalues
renormalised to sum 1; ``difference_of_entropies.doe``). Where the reference draws random permutations from the
global generator, these take a seeded ``torch.Generator``, so a value is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import MatrixEvalError
from .family import LBL_NORMALIZATIONS, LblNormalization, lbl_normalize

__all__ = ["AUGMENTATION_METRICS", "AugmentOptions", "LIDAR_DELTA", "augmentation_metrics", "dime", "infonce",
           "lda_matrix", "lidar", "positive_spectrum_entropy"]

LIDAR_DELTA = 1e-4  # the within-class scatter's ridge, as in the LiDAR paper's code
AUGMENTATION_METRICS = ("lidar", "dime", "infonce", "infonce_mi_lower_bound")


@dataclass(frozen=True)
class AugmentOptions:
    """The settings that change an augmentation value: views per document, the Rényi α and normalisation of
    LiDAR's and DiME's entropies, InfoNCE's temperature and DiME's permutations (the reference's defaults)."""

    n_views: int = 8
    alpha: float = 1.0
    normalization: LblNormalization = "maxEntropy"
    temperature: float = 0.1
    dime_iters: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.n_views, bool) or not isinstance(self.n_views, int) or self.n_views < 2:
            raise MatrixEvalError(f"n_views must be at least 2 (DiME and InfoNCE compare two views), got {self.n_views}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise MatrixEvalError(f"alpha must be a positive number, got {self.alpha}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise MatrixEvalError(f"temperature must be a positive number, got {self.temperature}")
        if isinstance(self.dime_iters, bool) or not isinstance(self.dime_iters, int) or self.dime_iters < 1:
            raise MatrixEvalError(f"dime_iters must be at least 1, got {self.dime_iters}")
        if self.normalization not in LBL_NORMALIZATIONS:
            raise MatrixEvalError(f"normalization must be one of {', '.join(LBL_NORMALIZATIONS)}, "
                                  f"got {self.normalization!r}")


def positive_spectrum_entropy(matrix: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    r"""Matrix-based Rényi-α entropy of a symmetric matrix (repitl's ``matrixAlphaEntropy``): the eigenvalues
    greater than 0, divided by their sum, then :math:`-\sum p\log p` (α = 1) or :math:`\log\sum p^\alpha/(1-α)`."""
    eig = torch.linalg.eigvalsh(matrix.double())
    p = eig[eig > 0]
    p = p / p.sum()
    if alpha == 1.0:
        return -(p * torch.log(p)).sum()
    return torch.log(torch.exp(alpha * torch.log(p)).sum()) / (1.0 - alpha)


def lda_matrix(views: torch.Tensor, delta: float = LIDAR_DELTA) -> torch.Tensor:
    r"""LiDAR's LDA matrix (Thilak et al. 2023, eqs. 1-3) of views (N, K, D), each document a class:
    :math:`\Sigma_w^{-1/2}\,\Sigma_b\,\Sigma_w^{-1/2}` with between-class scatter :math:`\Sigma_b` (class means
    about the overall mean, / N) and within-class scatter :math:`\Sigma_w` (views about their class mean,
    / NK, plus δI)."""
    x = views.double()
    n, k, d = x.shape
    class_means = x.mean(dim=1)
    between = class_means - x.mean(dim=(0, 1))
    sb = between.T @ between / n
    within = (x - class_means.unsqueeze(1)).reshape(n * k, d)
    sw = within.T @ within / (n * k) + delta * torch.eye(d, dtype=x.dtype, device=x.device)
    eigs, vecs = torch.linalg.eigh(sw)
    inv_sqrt = vecs @ torch.diag(eigs.pow(-0.5)) @ vecs.T
    return inv_sqrt @ sb @ inv_sqrt


def lidar(views: torch.Tensor, *, alpha: float = 1.0, normalization: LblNormalization = "maxEntropy",
          delta: float = LIDAR_DELTA) -> float:
    """LiDAR: the Rényi-α entropy of the LDA matrix of `views` (N, K, D), normalised with N documents and D."""
    n, _, d = views.shape
    h = positive_spectrum_entropy(lda_matrix(views, delta), alpha)
    return float(lbl_normalize(h, n, d, normalization))


def _view_gram(view: torch.Tensor) -> torch.Tensor:
    """The reference's per-view matrix: XᵀX (D×D) when there are more documents than dimensions, else XXᵀ."""
    x = view.double()
    return x.T @ x if x.shape[0] > x.shape[1] else x @ x.T


def dime(view_a: torch.Tensor, view_b: torch.Tensor, *, alpha: float = 1.0, n_iters: int = 10,
         normalization: LblNormalization = "maxEntropy", generator: torch.Generator | None = None) -> float:
    r"""DiME (Skean et al. 2023) between two views (N, D) of the same documents: the mean over `n_iters` random
    permutations P of :math:`H_\alpha(K_a \circ P K_b P^\top) - H_\alpha(K_a \circ K_b)` (the joint entropy of
    the Hadamard product), normalised with N documents and D."""
    ka, kb = _view_gram(view_a), _view_gram(view_b)
    joint = positive_spectrum_entropy(ka * kb, alpha)
    permuted = 0.0
    for _ in range(n_iters):
        idx = torch.randperm(kb.shape[0], generator=generator)
        permuted = permuted + positive_spectrum_entropy(ka * kb[idx][:, idx], alpha) / n_iters
    n, d = view_a.shape
    return float(lbl_normalize(torch.as_tensor(permuted - joint), n, d, normalization))


def infonce(view_a: torch.Tensor, view_b: torch.Tensor, *, temperature: float = 0.1) -> tuple[float, float]:
    """InfoNCE between two views (N, D): the cross-entropy of a·bᵀ/τ with each document's other view as its
    class, and the mutual-information lower bound 1 − InfoNCE/log N the reference reports beside it."""
    logits = view_a.double() @ view_b.double().T / temperature
    labels = torch.arange(view_a.shape[0], device=view_a.device)
    loss = float(torch.nn.functional.cross_entropy(logits, labels, reduction="mean"))
    return loss, 1.0 - loss / math.log(view_a.shape[0])


def augmentation_metrics(views: torch.Tensor, options: AugmentOptions = AugmentOptions(), *,
                         seed: int = 0) -> dict[str, float]:
    """LiDAR over all views, DiME (its permutations drawn from a generator seeded by `seed`) and InfoNCE between
    views 0 and 1, of pooled views (N documents, K views, D); NaN for fewer than two documents."""
    if views.dim() != 3 or views.shape[1] < 2:
        raise MatrixEvalError("augmentation metrics need pooled views of shape (N documents, K >= 2 views, D)")
    if views.shape[0] < 2:
        return dict.fromkeys(AUGMENTATION_METRICS, math.nan)
    x = views.double()
    o = options
    out = {"lidar": lidar(x, alpha=o.alpha, normalization=o.normalization),
           "dime": dime(x[:, 0], x[:, 1], alpha=o.alpha, n_iters=o.dime_iters, normalization=o.normalization,
                        generator=torch.Generator().manual_seed(seed))}
    out["infonce"], out["infonce_mi_lower_bound"] = infonce(x[:, 0], x[:, 1], temperature=o.temperature)
    return out
