"""Data-set level values from per-sample values: means, standard errors, bootstrap intervals, Diff-eRank.

Per-sample values are the only state a run keeps, so partial results from batches, ranks or a resumed
run merge by concatenation and these functions give the same answer whatever the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Summary", "EntropyAggregate", "summarize", "aggregate", "diff_erank", "diff_erank_per_sample"]


@dataclass(frozen=True)
class Summary:
    """Mean of the finite values, its standard error and a seeded bootstrap 95% interval.

    NaN values are samples without a defined value: excluded and counted in `n_skipped`.
    """

    mean: float
    stderr: float
    ci95: tuple[float, float]
    n: int
    n_skipped: int


@dataclass(frozen=True)
class EntropyAggregate:
    """The entropy paper's three data-set values (§4.3, §7.1) for per-sample entropies H (nats).

    a = mean(H / log d)  (the headline number), b = exp(mean H) / d, c = mean(exp H) / d.
    """

    a: Summary
    b: float
    b_ci95: tuple[float, float]
    c: float
    c_ci95: tuple[float, float]
    n: int
    n_skipped: int


def _as_float64(values: torch.Tensor | list[float]) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).flatten().cpu()


def _bootstrap(x: torch.Tensor, stat, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of `stat` over `n_boot` resamples of the rows of x (dim 0), with a private generator."""
    n = x.shape[0]
    if n < 2:
        return (float("nan"), float("nan"))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    stats = stat(x[idx])
    lo, hi = torch.quantile(stats, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return (lo, hi)


def summarize(values: torch.Tensor | list[float], *, seed: int = 1234, n_boot: int = 1000) -> Summary:
    """Mean, standard error (ddof=1) and bootstrap 95% interval of the finite entries of `values`."""
    x = _as_float64(values)
    ok = torch.isfinite(x)
    x = x[ok]
    n, skipped = x.numel(), int((~ok).sum())
    if n == 0:
        return Summary(float("nan"), float("nan"), (float("nan"), float("nan")), 0, skipped)
    stderr = float(x.std(correction=1) / math.sqrt(n)) if n > 1 else float("nan")
    ci = _bootstrap(x, lambda s: s.mean(dim=-1), n_boot, seed)
    return Summary(float(x.mean()), stderr, ci, n, skipped)


def aggregate(
    per_sample_entropy: torch.Tensor | list[float], d: int, *, seed: int = 1234, n_boot: int = 1000
) -> EntropyAggregate:
    """Data-set matrix entropy from per-sample entropies in nats (`SpectralMetrics.entropy`) and hidden size d."""
    h = _as_float64(per_sample_entropy)
    ok = torch.isfinite(h)
    h = h[ok]
    a = summarize(h / math.log(d), seed=seed, n_boot=n_boot)
    a = Summary(a.mean, a.stderr, a.ci95, a.n, int((~ok).sum()))
    if h.numel() == 0:
        nan2 = (float("nan"), float("nan"))
        return EntropyAggregate(a, float("nan"), nan2, float("nan"), nan2, 0, a.n_skipped)

    def stat_b(s: torch.Tensor) -> torch.Tensor:
        return torch.exp(s.mean(dim=-1)) / d

    def stat_c(s: torch.Tensor) -> torch.Tensor:
        return torch.exp(s).mean(dim=-1) / d

    return EntropyAggregate(
        a=a,
        b=float(stat_b(h)),
        b_ci95=_bootstrap(h, stat_b, n_boot, seed),
        c=float(stat_c(h)),
        c_ci95=_bootstrap(h, stat_c, n_boot, seed),
        n=a.n,
        n_skipped=a.n_skipped,
    )


def diff_erank(
    untrained_entropy: torch.Tensor | list[float],
    trained_entropy: torch.Tensor | list[float],
    *,
    seed: int = 1234,
    n_boot: int = 1000,
) -> Summary:
    """Diff-eRank of a data set as its authors' code computes it: exp(mean H_untrained) − exp(mean H_trained).

    .. math:: \\exp\\big(\\tfrac1n\\textstyle\\sum_i H^{0}_i\\big) - \\exp\\big(\\tfrac1n\\sum_i H^{1}_i\\big)

    H in nats; both means run over the samples valid in both (a pair where either side is NaN is skipped).
    The standard error is the delta method's, sqrt(var(e0·H0 − e1·H1) / n) with e = exp(mean H); the interval
    bootstraps the pairs. Higher means training removed more redundancy.
    """
    h0, h1 = _paired(untrained_entropy, trained_entropy)
    ok = torch.isfinite(h0) & torch.isfinite(h1)
    pairs = torch.stack([h0[ok], h1[ok]], dim=1)
    n, skipped = pairs.shape[0], int((~ok).sum())
    if n == 0:
        return Summary(float("nan"), float("nan"), (float("nan"), float("nan")), 0, skipped)

    def stat(s: torch.Tensor) -> torch.Tensor:
        mean = s.mean(dim=-2)
        return torch.exp(mean[..., 0]) - torch.exp(mean[..., 1])

    e0, e1 = torch.exp(pairs.mean(dim=0)).tolist()
    influence = e0 * pairs[:, 0] - e1 * pairs[:, 1]
    stderr = float(influence.std(correction=1) / math.sqrt(n)) if n > 1 else float("nan")
    return Summary(float(stat(pairs)), stderr, _bootstrap(pairs, stat, n_boot, seed), n, skipped)


def diff_erank_per_sample(
    untrained_entropy: torch.Tensor | list[float],
    trained_entropy: torch.Tensor | list[float],
    *,
    seed: int = 1234,
    n_boot: int = 1000,
) -> Summary:
    """Mean over samples of exp(H_untrained,i) − exp(H_trained,i) (H in nats), a pair with a NaN side skipped.

    By Jensen's inequality this differs from :func:`diff_erank` (which exponentiates the mean entropies).
    """
    h0, h1 = _paired(untrained_entropy, trained_entropy)
    return summarize(torch.exp(h0) - torch.exp(h1), seed=seed, n_boot=n_boot)


def _paired(untrained, trained) -> tuple[torch.Tensor, torch.Tensor]:
    h0, h1 = _as_float64(untrained), _as_float64(trained)
    if h0.shape != h1.shape:
        raise ValueError(f"diff_erank needs paired samples, got {h0.numel()} untrained and {h1.numel()} trained")
    return h0, h1
