"""Per-sample records → the task's entry in the results JSON (lm-evaluation-harness layout).

Math comes from `matrixeval.metrics.aggregate`; this module only selects values and names them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .metric_info import LM_HEAD, ROLLING, directions, rolling_columns
from .metrics import (aggregate, bits_per_byte, byte_perplexity, diff_erank, diff_erank_per_sample, summarize,
                      word_perplexity)
from .metrics.augment import AUGMENTATION_METRICS, AugmentOptions, augmentation_metrics
from .metrics.family import FamilyOptions, dataset_entropy


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/Inf become null (strict JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    return x


def _key_order(k: str) -> tuple:
    digits = k.lstrip("-").isdigit()
    return (k != "doc_id", not digits, int(k) if digits else 0, k)


def canonical_order(x: Any) -> Any:
    """The same record with its keys in one order at every depth (doc_id first, layer numbers as numbers, then
    by name), so a samples file written from the store after a resume is byte-identical to a fresh one."""
    if isinstance(x, dict):
        return {k: canonical_order(x[k]) for k in sorted(x, key=_key_order)}
    if isinstance(x, (list, tuple)):
        return [canonical_order(v) for v in x]
    return x


def _put(out: dict[str, Any], name: str, s) -> None:
    out[name] = s.mean
    out[f"{name}_stderr"] = s.stderr
    out[f"{name}_ci95"] = list(s.ci95)


# Spectral metrics whose data-set value is the plain mean of a per-sample column of the same name (matrix
# entropy has its own three aggregates, Diff-eRank pairs two models).
PER_SAMPLE_SPECTRAL = ("effective_rank", "nuclear_norm", "nuclear_norm_exact", "rankme", "rankme_reptrix",
                       "effective_rank_sigma", "alpha_req", "prompt_entropy", "curvature")
# Per-data-set metrics: one value from the stored vector of every ok document (any order, any world size).
PER_DATASET = {"dataset_entropy": "pooled_mean", "dataset_entropy_last": "pooled_last"}


def layer_results(
    records: Sequence[Mapping[str, Any]], layer: str, metrics: Sequence[str], hidden_size: int, seed: int,
    options: FamilyOptions | None = None,
    augment: AugmentOptions | None = None,
) -> dict[str, Any]:
    """Data-set values of one layer's spectral metrics (and Diff-eRank) over the samples that are ok;
    `options` are the family's settings and `augment` the augmentation metrics' (dataset entropy and the
    augmentation metrics are computed here, from the stored vectors)."""
    vals = [r["layers"][layer] for r in records]
    ok = [v["status"] == "ok" for v in vals]

    def column(name: str) -> list[float]:
        return [v[name] if good else math.nan for v, good in zip(vals, ok)]

    out: dict[str, Any] = {}
    if "matrix_entropy" in metrics:
        agg = aggregate(column("entropy"), hidden_size, seed=seed)
        _put(out, "matrix_entropy", agg.a)
        out["matrix_entropy_b"], out["matrix_entropy_b_ci95"] = agg.b, list(agg.b_ci95)
        out["matrix_entropy_c"], out["matrix_entropy_c_ci95"] = agg.c, list(agg.c_ci95)
    for name in PER_SAMPLE_SPECTRAL:
        if name in metrics:
            _put(out, name, summarize(column(name), seed=seed))
    for name, field in PER_DATASET.items():
        if name in metrics:
            o = options or FamilyOptions()
            vectors = [v[field] for v, good in zip(vals, ok) if good]
            value = math.nan
            if len(vectors) >= 2:
                value = dataset_entropy(torch.tensor(vectors, dtype=torch.float64), alpha=o.alpha,
                                        normalization=o.normalization, clamp=o.clamp)
            out[name], out[f"{name}_n_documents"] = value, len(vectors)
            # one value of the whole data set: no per-sample spread, so no standard error or interval (null)
            out[f"{name}_stderr"], out[f"{name}_ci95"] = math.nan, [math.nan, math.nan]
    asked = [m for m in AUGMENTATION_METRICS if m in metrics]
    if asked:
        # documents whose original is ok and whose every view has a vector at this layer
        kept = [v["pooled_views"] for v, good in zip(vals, ok) if good and v.get("pooled_views") is not None]
        values = dict.fromkeys(AUGMENTATION_METRICS, math.nan)
        if len(kept) >= 2:
            values = augmentation_metrics(torch.tensor(kept, dtype=torch.float64), augment or AugmentOptions(),
                                          seed=seed)
        for name in asked:
            out[name], out[f"{name}_n_documents"] = values[name], len(kept)
            out[f"{name}_stderr"], out[f"{name}_ci95"] = math.nan, [math.nan, math.nan]
    if "diff_erank" in metrics:
        untrained = [v["entropy_untrained"] if v.get("entropy_untrained") is not None else math.nan for v in vals]
        _put(out, "diff_erank", diff_erank(untrained, column("entropy"), seed=seed))
        _put(out, "diff_erank_per_sample", diff_erank_per_sample(untrained, column("entropy"), seed=seed))
    out["n_samples"] = sum(ok)
    out["skipped_by_status"] = dict(Counter(v["status"] for v in vals if v["status"] != "ok"))
    return out


def task_results(
    records: Sequence[Mapping[str, Any]],
    *,
    layers: Sequence[int],
    metrics: Sequence[str],
    hidden_size: int,
    seed: int,
    load_skipped: Mapping[str, int],
    n_resumed: int,
    options: FamilyOptions | None = None,
    augment: AugmentOptions | None = None,
) -> dict[str, Any]:
    """The task's results entry: the deepest requested layer's values at the top, every layer in by_layer."""
    by_layer = {str(layer): layer_results(records, str(layer), metrics, hidden_size, seed, options, augment)
                for layer in layers}
    primary = by_layer[str(max(layers))]
    out: dict[str, Any] = {k: v for k, v in primary.items() if k not in ("n_samples", "skipped_by_status")}
    if any(m in metrics for m in (*LM_HEAD, *ROLLING)):
        out.update(loss_results(records, metrics, seed))
    skipped = Counter(primary["skipped_by_status"])
    skipped.update(load_skipped)
    out.update(
        n_samples=primary["n_samples"],
        n_skipped=sum(skipped.values()),
        skipped_by_status=dict(skipped),
        n_resumed=n_resumed,
        n_truncated=sum(1 for r in records if r["truncated"]),
        n_tokens=sum(r["n_input_tokens"] for r in records),
        **_view_counts(records),
        primary_layer=max(layers),
        by_layer=by_layer,
    )
    return json_safe(out)


def _view_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """With augmentation metrics: the views measured (each one more forward pass) and how many were truncated."""
    if not records or "n_view_tokens" not in records[0]:
        return {}
    return {"n_views_measured": sum(len(r["n_view_tokens"]) for r in records),
            "n_views_truncated": sum(r["views_truncated"] for r in records),
            "n_view_tokens": sum(sum(r["n_view_tokens"]) for r in records)}


def loss_results(records: Sequence[Mapping[str, Any]], metrics: Sequence[str], seed: int) -> dict[str, Any]:
    """Loss and perplexity over the samples with a finite loss; a NaN/Inf one (e.g. fp16 overflow) is left out of
    every value, token-weighted ones included, and counted in ``loss_n_nonfinite``.

    loss = mean of per-sample losses; perplexity = mean of per-sample exp(loss); perplexity_of_mean_loss =
    exp(loss); *_token_weighted = total NLL / total predicted tokens (and its exp).
    """
    scored = [r for r in records if r.get("n_targets")]
    valid = finite_loss_records(scored)
    losses = [r["loss"] for r in valid]
    targets = sum(r["n_targets"] for r in valid)
    token_weighted = sum(r["nll_sum"] for r in valid) / targets if targets else math.nan
    out: dict[str, Any] = {}
    mean_loss = summarize(losses, seed=seed)
    if "loss" in metrics:
        _put(out, "loss", mean_loss)
        out["loss_token_weighted"] = token_weighted
    if "perplexity" in metrics:
        _put(out, "perplexity", summarize([exp_or_inf(x) for x in losses], seed=seed))
        out["perplexity_of_mean_loss"] = exp_or_inf(mean_loss.mean)
        out["perplexity_token_weighted"] = exp_or_inf(token_weighted)
    out["loss_n_samples"] = len(valid)
    out["loss_n_nonfinite"] = len(scored) - len(valid)
    if records and all("words" in r for r in records):  # rolling mode: every token of every document was scored
        out.update(rolling_results(valid, metrics))
    return out


_ROLLING_FNS = {"word_perplexity": (word_perplexity, "words"), "byte_perplexity": (byte_perplexity, "bytes"),
                "bits_per_byte": (bits_per_byte, "bytes")}


def rolling_results(records: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """lm-eval's word_perplexity, byte_perplexity and bits_per_byte over the task (ratios of sums over documents
    of their log-likelihood and their words or bytes), with the totals they divide."""
    logliks = [-r["nll_sum"] for r in records]
    out: dict[str, Any] = {}
    for name in rolling_columns(list(metrics)):
        fn, unit = _ROLLING_FNS[name]
        out[name] = fn(logliks, [r[unit] for r in records])
    out.update(loglikelihood_sum=math.fsum(logliks), n_words=sum(r["words"] for r in records),
               n_bytes=sum(r["bytes"] for r in records), n_rolling_tokens=sum(r["n_targets"] for r in records))
    return out


def finite_loss_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records whose loss every loss and perplexity value averages: scored (some predicted token) and finite."""
    return [r for r in records if r.get("n_targets") and math.isfinite(r["nll_sum"])]


def exp_or_inf(x: float) -> float:
    """exp that overflows to inf (written as null) instead of raising."""
    return math.exp(x) if x < 709.0 else (math.inf if x == x else math.nan)


def zero_valid_hint(skipped_by_status: Mapping[str, int], dtype: str) -> str:
    """How to fix a task with no valid sample, from why its samples were skipped."""
    if skipped_by_status and max(skipped_by_status, key=skipped_by_status.get) == "nonfinite":
        if dtype == "float16":
            return ("the hidden states overflowed to NaN/Inf (float16 overflows easily): "
                    "load the model with dtype=bfloat16 or dtype=float32")
        return (f"the hidden states overflowed to NaN/Inf in {dtype}: check the weights, "
                "or load the model with dtype=float32")
    return "check the text field and max_length, or use longer texts"


def higher_is_better(metrics: Sequence[str]) -> dict[str, bool]:
    """The results' ``higher_is_better``: each requested metric and the derived columns it writes."""
    return directions(list(metrics))
