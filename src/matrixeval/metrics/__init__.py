"""Pure metric functions on tensors: no I/O, no model code, no globals."""

from ._tokens import STATUSES, normalize_tokens
from .aggregate import EntropyAggregate, Summary, aggregate, diff_erank, diff_erank_per_sample, summarize
from .family import (
    alpha_req,
    curvature,
    dataset_entropy,
    effective_rank_lambda,
    effective_rank_sigma,
    family_from_spectrum,
    prompt_entropy,
    rankme,
    representation_spectrum,
    renyi_entropy,
)
from .entropy import effective_rank, entropy_from_spectrum, matrix_entropy, normalize_entropy
from .nuclear import matrix_nuclear_norm
from .perplexity import bits_per_byte, byte_perplexity, count_bytes, count_words, word_perplexity
from .spectral import SpectralMetrics, spectral_metrics
from .spectrum import covariance_spectrum

__all__ = [
    "STATUSES",
    "EntropyAggregate",
    "SpectralMetrics",
    "Summary",
    "aggregate",
    "alpha_req",
    "bits_per_byte",
    "byte_perplexity",
    "count_bytes",
    "count_words",
    "covariance_spectrum",
    "curvature",
    "dataset_entropy",
    "diff_erank",
    "diff_erank_per_sample",
    "effective_rank",
    "effective_rank_lambda",
    "effective_rank_sigma",
    "entropy_from_spectrum",
    "family_from_spectrum",
    "matrix_entropy",
    "matrix_nuclear_norm",
    "normalize_entropy",
    "normalize_tokens",
    "prompt_entropy",
    "rankme",
    "renyi_entropy",
    "representation_spectrum",
    "spectral_metrics",
    "summarize",
    "word_perplexity",
]
