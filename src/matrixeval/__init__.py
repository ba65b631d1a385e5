"""matrixeval: intrinsic evaluation of language models by the spectra of their hidden states."""

from .errors import MatrixEvalError
from .metrics import (
    SpectralMetrics,
    aggregate,
    diff_erank,
    diff_erank_per_sample,
    effective_rank,
    matrix_entropy,
    matrix_nuclear_norm,
    spectral_metrics,
    summarize,
)

from ._version import __version__ as __version__

__all__ = [
    "MatrixEvalError",
    "evaluate",
    "SpectralMetrics",
    "aggregate",
    "diff_erank",
    "diff_erank_per_sample",
    "effective_rank",
    "matrix_entropy",
    "matrix_nuclear_norm",
    "spectral_metrics",
    "summarize",
]


def __getattr__(name: str):
    # `evaluate` pulls in transformers; import it only when used so `import matrixeval` stays cheap.
    if name == "evaluate":
        from .evaluator import evaluate

        return evaluate
    raise AttributeError(f"module 'matrixeval' has no attribute {name!r}")
