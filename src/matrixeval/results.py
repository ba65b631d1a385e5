"""Per-sample records → the task's entry in the results JSON (lm-evaluation-harness layout).

Math comes from `matrixeval.metrics.aggregate`; this module only selects values and names them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .metric_info import METRICS
from .metrics import aggregate, diff_erank, summarize


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/Inf become null (strict JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    return x


def _put(out: dict[str, Any], name: str, s) -> None:
    out[name] = s.mean
    out[f"{name}_stderr"] = s.stderr
    out[f"{name}_ci95"] = list(s.ci95)


def layer_results(
    records: Sequence[Mapping[str, Any]], layer: str, metrics: Sequence[str], hidden_size: int, seed: int
) -> dict[str, Any]:
    """Data-set values of one layer's spectral metrics (and Diff-eRank) over the samples that are ok."""
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
    for name in ("effective_rank", "nuclear_norm", "nuclear_norm_exact"):
        if name in metrics:
            _put(out, name, summarize(column(name), seed=seed))
    if "diff_erank" in metrics:
        untrained = [v["entropy_untrained"] if v.get("entropy_untrained") is not None else math.nan for v in vals]
        _put(out, "diff_erank", diff_erank(untrained, column("entropy"), seed=seed))
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
) -> dict[str, Any]:
    """The task's results entry: the deepest requested layer's values at the top, every layer in by_layer."""
    by_layer = {str(layer): layer_results(records, str(layer), metrics, hidden_size, seed) for layer in layers}
    primary = by_layer[str(max(layers))]
    out: dict[str, Any] = {k: v for k, v in primary.items() if k not in ("n_samples", "skipped_by_status")}
    if "loss" in metrics or "perplexity" in metrics:
        losses = [r.get("loss", math.nan) for r in records]
        nll = sum(r["nll_sum"] for r in records if r.get("n_targets"))
        targets = sum(r["n_targets"] for r in records if r.get("n_targets"))
        token_weighted = nll / targets if targets else math.nan
        if "loss" in metrics:
            _put(out, "loss", summarize(losses, seed=seed))
            out["loss_token_weighted"] = token_weighted
        if "perplexity" in metrics:
            _put(out, "perplexity", summarize([math.exp(x) for x in losses], seed=seed))
            out["perplexity_token_weighted"] = math.exp(token_weighted)
    skipped = Counter(primary["skipped_by_status"])
    skipped.update(load_skipped)
    out.update(
        n_samples=primary["n_samples"],
        n_skipped=sum(skipped.values()),
        skipped_by_status=dict(skipped),
        n_resumed=n_resumed,
        n_truncated=sum(1 for r in records if r["truncated"]),
        n_tokens=sum(r["n_input_tokens"] for r in records),
        primary_layer=max(layers),
        by_layer=by_layer,
    )
    return json_safe(out)


def higher_is_better(metrics: Sequence[str]) -> dict[str, bool]:
    return {m: METRICS[m].higher_is_better for m in metrics}
