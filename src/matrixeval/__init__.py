"""matrixeval: intrinsic evaluation of language models by the spectra of their hidden states."""

from .errors import MatrixEvalError
from .metrics import (
    SpectralMetrics,
    aggregate,
    diff_erank,
    effective_rank,
    matrix_entropy,
    matrix_nuclear_norm,
    spectral_metrics,
    summarize,
)

__version__ = "0.1.0"

__all__ = [
    "MatrixEvalError",
    "SpectralMetrics",
    "aggregate",
    "diff_erank",
    "effective_rank",
    "matrix_entropy",
    "matrix_nuclear_norm",
    "spectral_metrics",
    "summarize",
]
