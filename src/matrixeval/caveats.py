"""Caveats that travel with the numbers: pure checks over a task's per-sample records and results entry.

Each check returns a :class:`Caveat` (a code, a message naming the figure that triggered it, and what to do) or
None. `Session.run` calls :func:`task_caveats` for every task of every command, so each caveat is printed once on
stderr, written into the results JSON (``results[task]["warnings"]``) and listed under the Markdown table.
The thresholds are a :class:`CaveatThresholds`, passed as ``matrixeval.evaluate(..., caveats=...)`` or
``Session(..., caveats=...)``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .results import exp_or_inf, finite_loss_records

__all__ = ["Caveat", "CaveatThresholds", "entropy_ceiling", "task_caveats"]


@dataclass(frozen=True)
class Caveat:
    """One warning about a task's numbers: ``code`` is stable (tests and scripts match on it)."""

    code: str
    message: str
    advice: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self, task: str) -> str:
        """The one stderr line: ``matrixeval: warning: task T: [code] message; advice``."""
        return f"matrixeval: warning: task {task}: [{self.code}] {self.message}; {self.advice}"


@dataclass(frozen=True)
class CaveatThresholds:
    """When each caveat fires (defaults in brackets).

    Attributes:
        min_samples: fewer valid samples than this → ``few_samples`` [30].
        max_truncated_fraction: a larger share of samples cut at max_length → ``truncated`` [0.10].
        min_entropy_ceiling: the normalised-entropy ceiling log(N)/log(d) at the median token count N, below
            this → ``entropy_ceiling`` [0.9: the ceiling then removes more than a tenth of the scale].
        perplexity_top_fraction: the share of samples, largest exp(loss) first (at least one), that ... [0.01]
        perplexity_max_share: ... may carry at most this share of the sum behind the mean perplexity, else
            ``perplexity_dominated`` [0.5].
    """

    min_samples: int = 30
    max_truncated_fraction: float = 0.10
    min_entropy_ceiling: float = 0.9
    perplexity_top_fraction: float = 0.01
    perplexity_max_share: float = 0.5


def entropy_ceiling(n_tokens: float, hidden_size: int) -> float:
    """The largest normalised matrix entropy N tokens can reach at width d: log(min(N, d)) / log(d)."""
    if n_tokens < 1 or hidden_size < 2:
        return math.nan
    return math.log(min(n_tokens, hidden_size)) / math.log(hidden_size)


def few_samples(n_valid: int, t: CaveatThresholds) -> Caveat | None:
    if n_valid >= t.min_samples:
        return None
    return Caveat("few_samples", f"only {n_valid} valid samples (threshold {t.min_samples})",
                  "standard errors and intervals are unreliable: measure more documents (--limit, --sample_size)")


def truncated(n_truncated: int, n_records: int, t: CaveatThresholds) -> Caveat | None:
    if not n_records or n_truncated / n_records <= t.max_truncated_fraction:
        return None
    return Caveat("truncated", f"{n_truncated} of {n_records} samples ({n_truncated / n_records:.0%}) were cut at "
                  f"max_length (threshold {t.max_truncated_fraction:.0%})",
                  "the values describe the first max_length tokens only: raise --max_length or use shorter texts")


def low_entropy_ceiling(median_tokens: float, hidden_size: int, t: CaveatThresholds) -> Caveat | None:
    ceiling = entropy_ceiling(median_tokens, hidden_size)
    if not ceiling < t.min_entropy_ceiling:
        return None
    return Caveat("entropy_ceiling", f"median {median_tokens:g} tokens per sample at d = {hidden_size}: normalised "
                  f"entropy cannot exceed log(N)/log(d) = {ceiling:.3f} (threshold {t.min_entropy_ceiling})",
                  "the mean partly measures text length: compare models on texts of equal token counts, "
                  "or use longer texts")


def perplexity_dominated(losses: Sequence[float], t: CaveatThresholds) -> Caveat | None:
    values = sorted((exp_or_inf(x) for x in losses), reverse=True)
    total = sum(values)
    if len(values) < 2 or not math.isfinite(total) or total <= 0:
        return None
    k = max(1, math.ceil(t.perplexity_top_fraction * len(values)))
    share = sum(values[:k]) / total
    if share <= t.perplexity_max_share:
        return None
    return Caveat("perplexity_dominated", f"the top {k} of {len(values)} samples carry {share:.0%} of the mean "
                  f"perplexity (threshold {t.perplexity_max_share:.0%})",
                  "the mean of exp(loss) is ruled by a few (often very short) samples: rank by loss or "
                  "perplexity_token_weighted instead")


def nuclear_full_rank(median_tokens: float, hidden_size: int) -> Caveat | None:
    if median_tokens < hidden_size:
        return None
    return Caveat("nuclear_norm_full", f"median {median_tokens:g} tokens per sample ≥ d = {hidden_size}: the "
                  "top-min(N, d) rule of nuclear_norm sums every column, so it no longer approximates the "
                  "nuclear norm", "use nuclear_norm_exact, or texts shorter than d tokens")


def task_caveats(
    records: Sequence[Mapping[str, Any]],
    entry: Mapping[str, Any],
    *,
    metrics: Sequence[str],
    hidden_size: int,
    thresholds: CaveatThresholds | None = None,
) -> list[Caveat]:
    """Every caveat that applies to one task: its per-sample `records` and its results `entry`."""
    t = thresholds or CaveatThresholds()
    layer = str(entry["primary_layer"])
    ok_tokens = [r["layers"][layer]["n_tokens"] for r in records if r["layers"][layer]["status"] == "ok"]
    median = statistics.median(ok_tokens) if ok_tokens else math.nan
    found = [few_samples(entry["n_samples"], t), truncated(entry["n_truncated"], len(records), t)]
    if ok_tokens and ("matrix_entropy" in metrics or "diff_erank" in metrics):
        found.append(low_entropy_ceiling(median, hidden_size, t))
    if ok_tokens and "nuclear_norm" in metrics:
        found.append(nuclear_full_rank(median, hidden_size))
    if "perplexity" in metrics:
        losses = [r["loss"] for r in finite_loss_records(records)]
        found.append(perplexity_dominated(losses, t))
    return [c for c in found if c is not None]
