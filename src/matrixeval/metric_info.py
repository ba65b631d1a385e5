"""The metrics a run can ask for: what each reads, per sample or per data set, which direction is better (None:
neither, so `compare --rank` refuses it without --higher_is_better), and the convention each value follows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MatrixEvalError

if TYPE_CHECKING:  # the family module imports torch; this registry stays light for `ls` and `compare`
    from .metrics.augment import AugmentOptions
    from .metrics.family import FamilyOptions


@dataclass(frozen=True)
class MetricInfo:
    name: str
    reads: str
    higher_is_better: bool | None  # None: neither (no better or worse)
    description: str
    scope: str = "per sample"  # or "per data set": one value per task and layer from mergeable per-document state
    aggregate: str = "mean over samples"


_VIEWS = "one value from every document's stored view vectors"

METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("matrix_entropy", "the sample's spectrum (one eigensolve)", False, "von Neumann entropy of the token covariance / log d (Wei et al. 2024)"),
        MetricInfo("effective_rank", "the sample's spectrum (one eigensolve)", False, "exp of the un-normalised matrix entropy (Roy & Vetterli)"),
        # Lower is better, as the Matrix Nuclear-Norm paper evaluates (§6.2), though its theory motivates maximising.
        MetricInfo("nuclear_norm", "the sample's token states (column norms)", False, "Matrix Nuclear-Norm: top-min(N,d) column norms / N, as its reference code"),
        MetricInfo("nuclear_norm_exact", "the sample's spectrum (one eigensolve)", False, "sum of singular values of the normalised tokens / N"),
        # The spectral family (metrics.family), from the same eigenvalues; RankMe's direction as Garrido et al.
        MetricInfo("rankme", "the sample's spectrum (one eigensolve)", True, "RankMe: exp H(σ/‖σ‖₁ + 1e-7), σ of the normalised tokens (Garrido et al. 2023)"),
        MetricInfo("rankme_reptrix", "the sample's spectrum (one eigensolve)", True, "RankMe as reptrix: the same on σ² (explained variance)"),
        MetricInfo("effective_rank_sigma", "the sample's spectrum (one eigensolve)", False, "exp H(σ/‖σ‖₁): effective rank on singular values"),
        MetricInfo("alpha_req", "the sample's spectrum (one eigensolve)", None,
                   "α-ReQ: power-law decay of the eigenspectrum over --alpha_req_window (Agrawal et al. 2022, reptrix)"),
        MetricInfo("prompt_entropy", "the sample's spectrum (layer_by_layer: clamped Gram)", None,
                   "Rényi-α matrix entropy of one prompt under --convention (layer_by_layer: Gram clamped to >= 0, "
                   "its own eigendecomposition; wei2024: = matrix_entropy)"),
        MetricInfo("curvature", "token states", None,
                   "mean angle (rad) between successive token-difference vectors (Layer by Layer)"),
        MetricInfo("dataset_entropy", "a mean-pooled vector per document", None,
                   "Rényi-α entropy of the documents' mean-pooled vectors under --convention (Layer by Layer)",
                   scope="per data set", aggregate="one value from every document's stored vector"),
        MetricInfo("dataset_entropy_last", "a last-token vector per document", None,
                   "dataset_entropy on each document's last (centred, unit) token instead of its mean",
                   scope="per data set", aggregate="one value from every document's stored vector"),
        # Augmentation metrics (metrics.augment): --n_views seeded nlpaug views of every document, one forward each.
        MetricInfo("lidar", "mean-pooled vectors of --n_views views per document", True,
                   "LiDAR: Rényi-α entropy of the LDA matrix, documents as classes (Thilak et al.; Layer by Layer)",
                   scope="per data set", aggregate=_VIEWS),
        MetricInfo("dime", "mean-pooled vectors of views 0 and 1 of each document", True,
                   "DiME between two views: permuted minus joint matrix entropy (Skean et al.; Layer by Layer)",
                   scope="per data set", aggregate=_VIEWS),
        MetricInfo("infonce", "mean-pooled vectors of views 0 and 1 of each document", False,
                   "InfoNCE between two views at --infonce_temperature (Layer by Layer)",
                   scope="per data set", aggregate=_VIEWS),
        MetricInfo("infonce_mi_lower_bound", "mean-pooled vectors of views 0 and 1 of each document", True,
                   "1 - infonce / log N, the mutual-information reading Layer by Layer reports",
                   scope="per data set", aggregate=_VIEWS),
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


def has_no_direction(column: str) -> bool:
    """A metric matrixeval writes that is neither better high nor low (α-ReQ, prompt entropy, curvature, ...)."""
    return column in METRICS and METRICS[column].higher_is_better is None


def direction(column: str) -> bool | None:
    """Whether higher is better for a metric or derived column matrixeval writes; None for anything else
    (and for a metric with no direction: see `has_no_direction`)."""
    if column in METRICS:
        return METRICS[column].higher_is_better
    if column in DERIVED:
        return DERIVED[column][1]
    return None


def directions(metrics: list[str] | tuple[str, ...]) -> dict[str, bool | None]:
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


# --- conventions ----------------------------------------------------------------------------------------

CONVENTIONS = ("wei2024", "layer_by_layer")
# What each preset sets for prompt_entropy and dataset_entropy(_last); the other metrics have one definition each.
_PRESETS = {"wei2024": {"clamp": False, "normalization": "logD"},
            "layer_by_layer": {"clamp": True, "normalization": "maxEntropy"}}
# Extra per-record fields (engine.measure.EXTRA_FIELDS) each metric reads.
READS_FIELD = {"alpha_req": "alpha_req", "prompt_entropy": "prompt_entropy", "curvature": "curvature",
               "dataset_entropy": "pooled_mean", "dataset_entropy_last": "pooled_last",
               **{m: "pooled_views" for m in ("lidar", "dime", "infonce", "infonce_mi_lower_bound")}}
AUGMENTATION = ("lidar", "dime", "infonce", "infonce_mi_lower_bound")


def parse_window(spec: str | Sequence[int] | None) -> tuple[int, int]:
    """``"10:100"`` (or a pair) → (10, 100): α-ReQ's 0-based eigenvalue index window [START, STOP)."""
    if spec is None:
        return (10, 100)
    if isinstance(spec, str):
        parts = spec.split(":")
        try:
            start, stop = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            start = stop = None
        if start is None:
            raise MatrixEvalError(f"alpha_req window must be START:STOP (e.g. 10:100), got {spec!r}")
        return (start, stop)
    start, stop = spec
    return (int(start), int(stop))


def family_options(
    convention: str = "wei2024",
    *,
    lbl_normalization: str | None = None,
    renyi_alpha: float | None = None,
    alpha_req_window: str | Sequence[int] | None = None,
) -> FamilyOptions:
    """The settings of the family metrics: a convention preset, then any explicit option over it.

    RankMe's two conventions are two metric names (rankme: Garrido; rankme_reptrix: reptrix), so both can be
    reported side by side; asking for them as a --convention says so.
    """
    from .metrics.family import LBL_NORMALIZATIONS, FamilyOptions

    if convention in ("garrido", "reptrix"):
        raise MatrixEvalError(f"RankMe's conventions are two metrics: --metrics rankme (garrido) and rankme_reptrix "
                              f"(reptrix); --convention is one of {', '.join(CONVENTIONS)}")
    if convention not in _PRESETS:
        raise MatrixEvalError(f"unknown convention {convention!r}; valid conventions: {', '.join(CONVENTIONS)}")
    preset = _PRESETS[convention]
    if lbl_normalization is not None and lbl_normalization not in LBL_NORMALIZATIONS:
        raise MatrixEvalError(f"lbl_normalization must be one of {', '.join(LBL_NORMALIZATIONS)}, "
                              f"got {lbl_normalization!r}")
    return FamilyOptions(alpha=1.0 if renyi_alpha is None else float(renyi_alpha),
                         normalization=lbl_normalization or preset["normalization"], clamp=preset["clamp"],
                         alpha_req_window=parse_window(alpha_req_window))


def extra_fields(metrics: Sequence[str]) -> tuple[str, ...]:
    """The extra per-record fields the requested metrics read, in a fixed order (part of the store key)."""
    wanted = {READS_FIELD[m] for m in metrics if m in READS_FIELD}
    return tuple(f for f in ("alpha_req", "prompt_entropy", "curvature", "pooled_mean", "pooled_last", "pooled_views")
                 if f in wanted)


def augment_options(
    *,
    n_views: int | None = None,
    lbl_normalization: str | None = None,
    renyi_alpha: float | None = None,
    infonce_temperature: float | None = None,
    dime_iters: int | None = None,
) -> AugmentOptions:
    """The settings of the augmentation metrics (LiDAR, DiME, InfoNCE). They have Layer by Layer's definition
    under every --convention (Wei et al. define none), so their normalisation is --lbl_normalization when given,
    else the reference's maxEntropy; --renyi_alpha sets their α as it does prompt and dataset entropy's."""
    from .metrics.augment import AugmentOptions

    return AugmentOptions(n_views=8 if n_views is None else n_views,
                          alpha=1.0 if renyi_alpha is None else float(renyi_alpha),
                          normalization=lbl_normalization or "maxEntropy",
                          temperature=0.1 if infonce_temperature is None else float(infonce_temperature),
                          dime_iters=10 if dime_iters is None else dime_iters)


def conventions(metrics: Sequence[str], options: FamilyOptions, convention: str = "wei2024",
                augment: AugmentOptions | None = None) -> dict[str, dict[str, Any]]:
    """The results config's ``conventions``: for every requested metric, the definition its values follow."""
    from .data.augment import AUGMENTATION as METHOD
    from .metrics.augment import LIDAR_DELTA, AugmentOptions
    from .metrics.family import RANKME_EPS

    a = augment or AugmentOptions()
    views = {"convention": "layer_by_layer", "n_views": a.n_views, "augmentation": METHOD,
             "extra_forwards_per_document": a.n_views, "pooling": "mean of the centred, L2-normalised tokens"}

    lbl = {"convention": convention, "alpha": options.alpha, "normalization": options.normalization,
           "clamp": options.clamp}
    table: dict[str, dict[str, Any]] = {
        "matrix_entropy": {"convention": "wei2024", "alpha": 1.0, "normalization": "logD", "clamp": False},
        "effective_rank": {"convention": "roy_vetterli", "on": "eigenvalues of the token covariance"},
        "nuclear_norm": {"convention": "mnn_reference_code", "on": "column norms of the normalised tokens"},
        "nuclear_norm_exact": {"convention": "exact", "on": "singular values of the normalised tokens"},
        "rankme": {"convention": "garrido", "on": "singular values", "eps": RANKME_EPS},
        "rankme_reptrix": {"convention": "reptrix", "on": "squared singular values", "eps": RANKME_EPS},
        "effective_rank_sigma": {"convention": "sigma", "on": "singular values"},
        "alpha_req": {"convention": "reptrix", "window": list(options.alpha_req_window)},
        "prompt_entropy": lbl,
        "curvature": {"convention": "layer_by_layer", "k": 1, "on": "centred, L2-normalised tokens",
                      "cosine": "absolute"},
        "dataset_entropy": {**lbl, "pooling": "mean"},
        "dataset_entropy_last": {**lbl, "pooling": "last"},
        "lidar": {**views, "alpha": a.alpha, "normalization": a.normalization, "delta": LIDAR_DELTA},
        "dime": {**views, "alpha": a.alpha, "normalization": a.normalization, "views": [0, 1],
                 "permutations": a.dime_iters, "permutation_seed": "--seed"},
        "infonce": {**views, "temperature": a.temperature, "views": [0, 1]},
        "infonce_mi_lower_bound": {**views, "temperature": a.temperature, "views": [0, 1]},
        "loss": {"convention": "mean per-sample next-token NLL"},
        "perplexity": {"convention": "mean of per-sample exp(loss)"},
        "diff_erank": {"convention": "wei2024_diff_erank", "reference": "seeded random init, eval mode"},
    }
    return {m: table[m] for m in metrics if m in table}
