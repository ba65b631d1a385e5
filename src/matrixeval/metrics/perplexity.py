"""lm-evaluation-harness's document perplexities: log-likelihoods summed over a task, per word and per byte.

The definitions of lm-eval 0.4.13 (``api/metrics.py``: ``weighted_perplexity``, ``bits_per_byte``;
``api/task.py``: ``count_words``, ``count_bytes``). Each document contributes its total log-likelihood (every
token, from rolling windows) and its word and byte counts; the task's value is a ratio of sums, not a mean of
per-document values:

.. math::
    \\text{word\\_perplexity} = \\exp(-\\textstyle\\sum \\ell / \\sum w), \\quad
    \\text{byte\\_perplexity} = \\exp(-\\textstyle\\sum \\ell / \\sum b), \\quad
    \\text{bits\\_per\\_byte} = -\\textstyle\\sum \\ell / (\\sum b \\cdot \\ln 2)

Example:
    >>> round(bits_per_byte([-2 * math.log(2)], [2]), 12)
    1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["bits_per_byte", "byte_perplexity", "count_bytes", "count_words", "word_perplexity"]

_WHITESPACE = re.compile(r"\s+")


def count_words(text: str) -> int:
    """lm-eval's word count: ``len(re.split(r"\\s+", text))`` (leading or trailing whitespace counts a word)."""
    return len(_WHITESPACE.split(text))


def count_bytes(text: str) -> int:
    """lm-eval's byte count: the length of the UTF-8 encoding."""
    return len(text.encode("utf-8"))


def _weighted(logliks: Sequence[float], weights: Sequence[int]) -> float:
    """lm-eval's ``weighted_mean``: Σ loglik / Σ weight (NaN when nothing is counted)."""
    if len(logliks) != len(weights):
        raise ValueError(f"{len(logliks)} log-likelihoods but {len(weights)} counts")
    total = sum(weights)
    return math.fsum(logliks) / total if total else math.nan


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else (math.inf if x == x else math.nan)


def word_perplexity(logliks: Sequence[float], words: Sequence[int]) -> float:
    """exp(−Σ loglik / Σ words): perplexity per word of the original documents."""
    return _exp(-_weighted(logliks, words))


def byte_perplexity(logliks: Sequence[float], n_bytes: Sequence[int]) -> float:
    """exp(−Σ loglik / Σ bytes): perplexity per UTF-8 byte."""
    return _exp(-_weighted(logliks, n_bytes))


def bits_per_byte(logliks: Sequence[float], n_bytes: Sequence[int]) -> float:
    """−Σ loglik / (Σ bytes · ln 2): the bits a model needs per UTF-8 byte (log₂ of byte_perplexity)."""
    return -_weighted(logliks, n_bytes) / math.log(2)
