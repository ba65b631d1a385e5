"""The metrics a run can ask for: what each reads and which direction is better (shown by `matrixeval ls`)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MatrixEvalError


@dataclass(frozen=True)
class MetricInfo:
    name: str
    reads: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("matrix_entropy", "hidden states", False, "von Neumann entropy of the token covariance / log d (Wei et al. 2024)"),
        MetricInfo("effective_rank", "hidden states", False, "exp of the un-normalised matrix entropy (Roy & Vetterli)"),
        # Lower is better, as the Matrix Nuclear-Norm paper evaluates (§6.2), though its theory motivates maximising.
        MetricInfo("nuclear_norm", "hidden states", False, "Matrix Nuclear-Norm: top-min(N,d) column norms / N, as its reference code"),
        MetricInfo("nuclear_norm_exact", "hidden states", False, "sum of singular values of the normalised tokens / N"),
        # The spectral family (metrics.family), from the same eigenvalues; RankMe's direction as Garrido et al.
        MetricInfo("rankme", "hidden states", True, "RankMe: exp H(σ/‖σ‖₁ + 1e-7), σ of the normalised tokens (Garrido et al. 2023)"),
        MetricInfo("rankme_reptrix", "hidden states", True, "RankMe as reptrix: the same on σ² (explained variance)"),
        MetricInfo("effective_rank_sigma", "hidden states", False, "exp H(σ/‖σ‖₁): effective rank on singular values"),
        MetricInfo("loss", "logits (causal LM head)", False, "mean next-token NLL per sample, averaged over samples"),
        MetricInfo("perplexity", "logits (causal LM head)", False, "exp of each sample's loss, averaged over samples"),
        # lm-eval's loglikelihood_rolling perplexities (metrics.perplexity): whole documents, rolling mode only.
        MetricInfo("word_perplexity", "logits (causal LM head), rolling mode", False,
                   "exp(-sum loglik / sum words), every token scored, words of the original documents (lm-eval)"),
        MetricInfo("byte_perplexity", "logits (causal LM head), rolling mode", False,
                   "exp(-sum loglik / sum UTF-8 bytes), every token scored (lm-eval)"),
        MetricInfo("bits_per_byte", "logits (causal LM head), rolling mode", False,
                   "-sum loglik / (sum UTF-8 bytes * ln 2), every token scored (lm-eval)"),
        MetricInfo("diff_erank", "hidden states of the model and of a seeded random init", True,
                   "Diff-eRank: exp(mean H untrained) - exp(mean H trained), the authors' formula; "
                   "both models in eval mode (their code leaves dropout on)"),
    )
}

# Further columns a metric writes into the results, with their direction (declared in the results' higher_is_better).
DERIVED: dict[str, tuple[str, bool]] = {
    "matrix_entropy_b": ("matrix_entropy", False),
    "matrix_entropy_c": ("matrix_entropy", False),
    "loss_token_weighted": ("loss", False),
    "perplexity_token_weighted": ("perplexity", False),
    "perplexity_of_mean_loss": ("perplexity", False),
    "diff_erank_per_sample": ("diff_erank", True),
}


def direction(column: str) -> bool | None:
    """Whether higher is better for a metric or derived column matrixeval writes; None for anything else."""
    if column in METRICS:
        return METRICS[column].higher_is_better
    if column in DERIVED:
        return DERIVED[column][1]
    return None


def directions(metrics: list[str] | tuple[str, ...]) -> dict[str, bool]:
    """``higher_is_better`` of the requested metrics and of every column they write."""
    out = {m: METRICS[m].higher_is_better for m in metrics}
    out.update({col: hib for col, (base, hib) in DERIVED.items() if base in metrics})
    return out


class NoLMHead(MatrixEvalError):
    """Loss or perplexity was asked of a model without a causal LM head."""


LM_HEAD = ("loss", "perplexity")
# Written for tasks measured in rolling mode: when asked for by name, or with perplexity (the default).
ROLLING = ("word_perplexity", "byte_perplexity", "bits_per_byte")


def rolling_columns(metrics: list[str] | tuple[str, ...]) -> list[str]:
    """The rolling perplexity columns a rolling task writes for the requested `metrics`."""
    return [m for m in ROLLING if m in metrics or "perplexity" in metrics]


def rolling_directions(metrics: list[str] | tuple[str, ...]) -> dict[str, bool]:
    """``higher_is_better`` of the rolling columns written for `metrics` (all lower is better)."""
    return {m: METRICS[m].higher_is_better for m in rolling_columns(metrics)}


def needs_rolling(metrics: list[str] | tuple[str, ...], rolling: bool, task: str) -> None:
    """Refuse a rolling-only metric for a task that is not measured in rolling mode."""
    asked = [m for m in ROLLING if m in metrics]
    if asked and not rolling:
        raise MatrixEvalError(f"{asked[0]} scores every token of each document and task {task!r} is not run in "
                              "rolling mode; pass --rolling (or use a task with rolling: true)")


def parse_metrics(spec: str | list[str] | None, has_lm_head: bool) -> list[str]:
    """Requested metric names, validated; None = matrix_entropy plus loss/perplexity when there is an LM head."""
    if spec is None or spec == "" or spec == []:
        return ["matrix_entropy", *(LM_HEAD if has_lm_head else ())]
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MatrixEvalError(f"unknown metric {unknown[0]!r}; valid metrics: {', '.join(METRICS)}")
    if not has_lm_head and any(n in (*LM_HEAD, *ROLLING) for n in names):
        raise NoLMHead("loss/perplexity need a causal LM head and this model has none; drop them from --metrics")
    return list(dict.fromkeys(names))
