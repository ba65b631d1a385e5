"""Caveats that travel with the numbers: pure checks over a task's per-sample records and results entry.

Each check returns a :class:`Caveat` (a code, a message naming the figure that triggered it, and what to do) or
None. `Session.run` calls :func:`task_caveats` for every task of every command, so each caveat is printed once on
stderr, written into the results JSON (``results[task]["warnings"]``) and listed under the Markdown table.
The thresholds are a :class:`CaveatThresholds`, passed as ``matrixeval.evaluate(..., caveats=...)`` or
``Session(..., caveats=...)``, and on the command line as ``--caveat KEY=VALUE`` (:func:`parse_thresholds`).

Experiments add caveats of their own through the same :func:`report` (an operation that leaves samples
unchanged, comparison arms that hold different tokens, a timing spread, a curve point with few samples) and mark
the plots they concern.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import MatrixEvalError
from .results import exp_or_inf, finite_loss_records

__all__ = ["Caveat", "CaveatThresholds", "arms_differ", "curve_few_samples", "entropy_ceiling", "parse_thresholds",
           "report", "task_caveats", "timing_spread", "unchanged_by_operation"]


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
        max_unchanged_fraction: a larger share of documents an operation leaves as they were (e.g. single
            sentences under a sentence shuffle) → ``unchanged_by_operation`` [0.10].
        max_arm_mismatch_fraction: a larger share of documents whose measured tokens differ between the arms of
            one comparison (e.g. a prompt arm cut at max_length) → ``arms_differ`` [0: any document].
        max_timing_spread: (slowest − fastest) / fastest of one method's repeats above this → ``timing_spread``
            [0.20].
        A point of a curve with fewer than ``min_samples`` samples → ``few_samples_point``.
    """

    min_samples: int = 30
    max_truncated_fraction: float = 0.10
    min_entropy_ceiling: float = 0.9
    perplexity_top_fraction: float = 0.01
    perplexity_max_share: float = 0.5
    max_unchanged_fraction: float = 0.10
    max_arm_mismatch_fraction: float = 0.0
    max_timing_spread: float = 0.20


def parse_thresholds(spec: CaveatThresholds | Mapping[str, Any] | Sequence[str] | None) -> CaveatThresholds:
    """Thresholds from ``["KEY=VALUE", ...]`` (the repeatable ``--caveat`` flag), a mapping, or as given; an
    unknown key or a value of the wrong kind is a one-line error naming the valid keys."""
    if spec is None or isinstance(spec, CaveatThresholds):
        return spec or CaveatThresholds()
    kinds = {f.name: f.type for f in fields(CaveatThresholds)}
    pairs: dict[str, Any] = {}
    items = spec.items() if isinstance(spec, Mapping) else [_split_pair(text) for text in spec]
    for key, value in items:
        if key not in kinds:
            raise MatrixEvalError(f"unknown caveat threshold {key!r}; the keys are: {', '.join(kinds)}")
        kind = int if kinds[key] in (int, "int") else float
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise MatrixEvalError(f"caveat threshold {key} must be {'an integer' if kind is int else 'a number'}, "
                                  f"got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise MatrixEvalError(f"caveat threshold {key} must be a finite number ≥ 0, got {value!r}")
        pairs[key] = number
    return replace(CaveatThresholds(), **pairs)


def _split_pair(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise MatrixEvalError(f"--caveat takes KEY=VALUE (e.g. min_samples=50), got {text!r}")
    return key.strip(), value.strip()


def report(entry: dict[str, Any], scope: str, found: Sequence[Caveat | None]) -> list[Caveat]:
    """Print each caveat once on stderr (naming `scope`, e.g. a task or variant) and append it to
    ``entry["warnings"]``, so it reaches the results JSON and the Markdown under the table. Returns those added."""
    added = [c for c in found if c is not None]
    warnings = entry.setdefault("warnings", [])
    for caveat in added:
        if caveat.as_dict() in warnings:
            continue
        print(caveat.line(scope), file=sys.stderr)
        warnings.append(caveat.as_dict())
    return added


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


def truncated(n_truncated: int, n_records: int, t: CaveatThresholds, what: str = "samples") -> Caveat | None:
    """``truncated`` (``views_truncated`` for the augmentation metrics' views, `what` = "views")."""
    if not n_records or n_truncated / n_records <= t.max_truncated_fraction:
        return None
    return Caveat("truncated" if what == "samples" else f"{what}_truncated",
                  f"{n_truncated} of {n_records} {what} ({n_truncated / n_records:.0%}) were cut at "
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


def unchanged_by_operation(op: str, n_unchanged: int, n_docs: int, t: CaveatThresholds,
                           why: str = "") -> Caveat | None:
    """Documents an operation leaves exactly as they were measure nothing about the operation."""
    if not n_docs or n_unchanged / n_docs <= t.max_unchanged_fraction:
        return None
    return Caveat("unchanged_by_operation", f"{op} leaves {n_unchanged} of {n_docs} documents "
                  f"({n_unchanged / n_docs:.0%}) unchanged{f' ({why})' if why else ''} "
                  f"(threshold {t.max_unchanged_fraction:.0%})",
                  "the Δ is diluted toward 0 by documents the operation cannot change: use texts with several "
                  "sentences (e.g. --hard_breaks, or a task with longer documents)")


def arms_differ(arm: str, base: str, n_differ: int, n_docs: int, t: CaveatThresholds) -> Caveat | None:
    """Arms of one comparison must measure the same tokens of each document; a cut arm does not."""
    if not n_docs or n_differ / n_docs <= t.max_arm_mismatch_fraction:
        return None
    return Caveat("arms_differ", f"arm {arm!r} measures other tokens than arm {base!r} in {n_differ} of {n_docs} "
                  f"documents ({n_differ / n_docs:.0%}; cut at max_length) (threshold "
                  f"{t.max_arm_mismatch_fraction:.0%})",
                  "the arms no longer compare the same tokens: raise --max_length, or use shorter prompts or texts")


def timing_spread(method: str, seconds: Sequence[float], t: CaveatThresholds) -> Caveat | None:
    """The repeats of one timed method disagree by more than the threshold: the machine was busy."""
    finite = [s for s in seconds if math.isfinite(s)]
    if len(finite) < 2 or min(finite) <= 0:
        return None
    spread = (max(finite) - min(finite)) / min(finite)
    if spread <= t.max_timing_spread:
        return None
    return Caveat("timing_spread", f"{method}: repeats range {min(finite):.3g}–{max(finite):.3g} s, spread "
                  f"{spread:.0%} of the fastest (threshold {t.max_timing_spread:.0%})",
                  "the machine was busy or warming up: the minimum is reported, but ratios may be off; rerun on an "
                  "idle machine or with more --repeats")


def curve_few_samples(curve: str, points: Mapping[Any, int], t: CaveatThresholds) -> Caveat | None:
    """Points of a curve (x → its number of samples) with fewer than ``min_samples`` samples."""
    few = {x: n for x, n in points.items() if n < t.min_samples}
    if not few:
        return None
    shown = ", ".join(f"{x}: n = {n}" for x, n in few.items())
    return Caveat("few_samples_point", f"{curve}: {len(few)} of {len(points)} points have fewer than "
                  f"{t.min_samples} samples ({shown})",
                  "those points can move a lot with other documents (marked on the plot): measure more documents "
                  "(--limit, a longer task, a lower --min_tokens)")


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
    found = [few_samples(entry["n_samples"], t)]
    if not entry.get("fixed_tokens"):  # --fixed_tokens cuts every document on purpose
        found.append(truncated(entry["n_truncated"], len(records), t))
        if entry.get("n_views_measured"):  # augmented views tokenise longer than their documents
            found.append(truncated(entry["n_views_truncated"], entry["n_views_measured"], t, what="views"))
    if ok_tokens and ("matrix_entropy" in metrics or "diff_erank" in metrics):
        found.append(low_entropy_ceiling(median, hidden_size, t))
    if ok_tokens and "nuclear_norm" in metrics:
        found.append(nuclear_full_rank(median, hidden_size))
    if "perplexity" in metrics:
        losses = [r["loss"] for r in finite_loss_records(records)]
        found.append(perplexity_dominated(losses, t))
    return [c for c in found if c is not None]
