"""One batch through the model(s) and the metric core; only per-sample scalars leave the device."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..metrics import STATUSES, family_from_spectrum, normalize_tokens, spectral_metrics
from ..metrics.family import FamilyOptions, curvature_from_tokens, pooled_from_tokens, renyi_entropy
from ..metrics.spectrum import covariance_spectrum
from ..metrics._tokens import OK, undefined_to_nan
from ..models import LoadedModel, forward
from ..models.forward import score_windows
from .batching import Encoded, collate

# Intra-op threads of the metric core on the CPU, the same on every rank and in a single process (recorded in the
# results config): the eigensolves of the sizes measured are fastest on one thread anyway (metrics.spectrum).
METRIC_THREADS = 1

# The last three come from the same eigenvalues (metrics.family_from_spectrum): no second eigendecomposition.
SPECTRAL_FIELDS = (
    "matrix_entropy", "entropy", "effective_rank", "nuclear_norm", "nuclear_norm_exact",
    "rankme", "rankme_reptrix", "effective_rank_sigma",
)
# Fields a record holds only when a requested metric reads them (MeasureConfig.extras). alpha_req and an
# unclamped prompt_entropy read the same eigenvalues; a clamped prompt_entropy solves its clamped Gram matrix;
# curvature and the pooled document vectors read the normalised token states; pooled_views are the mean-pooled
# vectors of the document's augmented views (Encoded.views), one forward pass each.
EXTRA_FIELDS = ("alpha_req", "prompt_entropy", "curvature", "pooled_mean", "pooled_last", "pooled_views")


@dataclass(frozen=True)
class MeasureConfig:
    """What to measure for every sample; part of the configuration that keys stored results."""

    layers: tuple[int, ...]
    need_loss: bool
    exclude_bos: bool
    special_ids: frozenset[int]
    # Loss from lm-eval's rolling windows over every token (each item's `windows`), not from the truncated input.
    rolling: bool = False
    extras: tuple[str, ...] = ()
    family: FamilyOptions = field(default_factory=FamilyOptions)


def metric_mask(ids: torch.Tensor, span: torch.Tensor, cfg: MeasureConfig) -> torch.Tensor:
    """Positions that enter the matrix: the span's tokens, minus a leading BOS/CLS when asked."""
    mask = span
    if cfg.exclude_bos and cfg.special_ids:
        special = torch.tensor(sorted(cfg.special_ids), device=ids.device)
        first = torch.isin(ids[:, 0], special)
        mask = mask.clone()
        mask[:, 0] &= ~first
    return mask


@contextmanager
def metric_threads(device: torch.device) -> Iterator[None]:
    """On the CPU the metric core runs with METRIC_THREADS intra-op threads, whatever the process's own count
    (which differs between 1 process and each of N torchrun ranks): its reductions, Gram products and
    eigensolves then do the same arithmetic in every world size, so per-sample values are bit-identical."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == METRIC_THREADS:
        yield
        return
    torch.set_num_threads(METRIC_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _spectral(
    hidden: dict[int, torch.Tensor],
    mask: torch.Tensor,
    layers: Sequence[int],
    extras: Sequence[str] = (),
    options: FamilyOptions = FamilyOptions(),
) -> dict[int, dict[str, list]]:
    """Each layer's spectra in turn, moved to the CPU as Python lists; a layer's hidden states leave `hidden`
    (and the device) as soon as they are read, so the metric core's float32 and float64 working copies
    exist for one layer at a time, never for all requested layers at once. `extras` (EXTRA_FIELDS) are
    computed from the same normalised tokens and eigenvalues."""
    out = {}
    wanted = ("rankme", "rankme_reptrix", "effective_rank_sigma", *(e for e in extras if e in ("alpha_req", "prompt_entropy")))
    for layer in layers:
        h = hidden.pop(layer)
        with metric_threads(h.device):  # the same arithmetic in every world size (see metric_threads)
            r = spectral_metrics(h, mask, keep_tokens=bool(extras))
            del h
            family = family_from_spectrum(r.spectrum, r.n_tokens, r.hidden_size, r.status_code, wanted=wanted,
                                          options=options)
            cols = {name: (family[name] if name in family else getattr(r, name)).cpu().tolist() for name in SPECTRAL_FIELDS}
            t = r.tokens
            if "prompt_entropy" in extras and "prompt_entropy" not in family:  # the clamp: another matrix, its own eigh
                lam = covariance_spectrum(t.z, t.used, clamp_gram=True)
                h = renyi_entropy(lam, t.n_used, r.hidden_size, alpha=options.alpha, normalization=options.normalization)
                family["prompt_entropy"] = undefined_to_nan(h, t.status, False)
            if "curvature" in extras:
                family["curvature"] = curvature_from_tokens(t)
            if "pooled_mean" in extras or "pooled_last" in extras:
                pooled = pooled_from_tokens(t)
                for kind in ("mean", "last"):
                    if f"pooled_{kind}" in extras:
                        family[f"pooled_{kind}"] = pooled[kind]
            for name in extras:
                if name != "pooled_views":  # measured from the views' own forward passes (_view_vectors)
                    cols[name] = family[name].cpu().tolist()
            cols["n_tokens"] = r.n_tokens.cpu().tolist()
            cols["n_dropped"] = r.n_dropped.cpu().tolist()
            cols["status"] = [STATUSES[c] for c in r.status_code.cpu().tolist()]
            out[layer] = cols
            del r, family, t
    return out


def measure_batch(
    lm: LoadedModel, items: Sequence[Encoded], cfg: MeasureConfig, reference: LoadedModel | None = None,
    *, window_batch: int | None = None,
) -> list[dict[str, Any]]:
    """Per-sample records for a batch: spectral metrics per layer, loss, and the untrained model's entropy.

    In rolling mode the items' windows go through the model `window_batch` at a time (default: len(items)); each
    is at most max_length tokens, so that many windows take no more memory than a batch of that many samples."""
    ids, attention, span = collate(items, lm.tokenizer.pad_token_id, lm.device)
    mask = metric_mask(ids, span, cfg)
    out = forward(lm, ids, attention, cfg.layers, need_loss=cfg.need_loss and not cfg.rolling)
    per_layer = _spectral(out.hidden, mask, cfg.layers, cfg.extras, cfg.family)
    # _spectral has taken every captured layer out of out.hidden: nothing of the trained model's forward
    # is left on the device when the reference model runs
    untrained = None
    if reference is not None:
        ref_out = forward(reference, ids, attention, cfg.layers, need_loss=False)
        untrained = _spectral(ref_out.hidden, mask, cfg.layers)
    views = _view_vectors(lm, items, cfg) if "pooled_views" in cfg.extras else None
    nll_sum = n_targets = None
    if out.token_nll is not None:
        targets = out.target_mask & span  # a span token is a target when something precedes it
        nll_sum = torch.where(targets, out.token_nll.double(), 0.0).sum(dim=1).cpu().tolist()
        n_targets = targets.sum(dim=1).cpu().tolist()
    if cfg.need_loss and cfg.rolling:
        nll_sum, n_targets = _rolling_nll(lm, items, window_batch or len(items))
    records = []
    for i, item in enumerate(items):
        layers = {}
        for layer in cfg.layers:
            names = (*SPECTRAL_FIELDS, *(e for e in cfg.extras if e != "pooled_views"), "n_tokens", "n_dropped",
                     "status")
            values = {name: per_layer[layer][name][i] for name in names}
            if views is not None:
                values["pooled_views"] = views[i][layer]
            if untrained is not None:
                values["entropy_untrained"] = untrained[layer]["entropy"][i]
            layers[str(layer)] = values
        record: dict[str, Any] = {
            "doc_id": item.doc_id,
            "n_input_tokens": len(item.input_ids),
            "truncated": item.truncated,
            "layers": layers,
        }
        if nll_sum is not None:
            record["nll_sum"] = nll_sum[i]
            record["n_targets"] = n_targets[i]
            record["loss"] = nll_sum[i] / n_targets[i] if n_targets[i] else math.nan
        if views is not None:
            record["n_view_tokens"] = [len(v.input_ids) for v in item.views]
            record["views_truncated"] = sum(v.truncated for v in item.views)
        if cfg.need_loss and cfg.rolling:
            record["loglikelihood"] = -nll_sum[i]
            record["n_windows"] = len(item.windows)
        records.append(record)
    return records


def _view_vectors(lm: LoadedModel, items: Sequence[Encoded], cfg: MeasureConfig) -> list[dict[int, list | None]]:
    """Per item and layer, the mean of each augmented view's centred, unit tokens (K vectors), or None when any
    view has no defined vector there. The views go through the model len(items) at a time, so they take no more
    memory than the batch itself (and halve with it on out-of-memory)."""
    flat = [view for item in items for view in item.views]
    vectors: dict[int, list] = {layer: [] for layer in cfg.layers}
    for start in range(0, len(flat), len(items)):
        part = flat[start : start + len(items)]
        ids, attention, span = collate(part, lm.tokenizer.pad_token_id, lm.device)
        mask = metric_mask(ids, span, cfg)
        out = forward(lm, ids, attention, cfg.layers, need_loss=False)
        for layer in cfg.layers:
            h = out.hidden.pop(layer)
            with metric_threads(h.device):
                t = normalize_tokens(h, mask)
                del h
                pooled = pooled_from_tokens(t)["mean"].cpu().tolist()
                valid = ((t.status == OK) & (t.n_used > 0)).cpu().tolist()
            vectors[layer].extend(v if ok else None for v, ok in zip(pooled, valid))
    per_item = []
    for i, item in enumerate(items):
        k = len(item.views)
        start = sum(len(it.views) for it in items[:i])
        row = {}
        for layer in cfg.layers:
            vs = vectors[layer][start : start + k]
            row[layer] = None if any(v is None for v in vs) else vs
        per_item.append(row)
    return per_item


def _rolling_nll(lm: LoadedModel, items: Sequence[Encoded], step: int) -> tuple[list[float], list[int]]:
    """(NLL summed over every token, tokens scored) per item, from its rolling windows, `step` per forward pass."""
    flat = [(i, w) for i, item in enumerate(items) for w in item.windows]
    nll = [0.0] * len(items)
    count = [0] * len(items)
    step = max(1, step)
    for start in range(0, len(flat), step):
        part = flat[start : start + step]
        scores = score_windows(lm, [w.input_ids for _, w in part], [w.targets for _, w in part])
        for (i, w), logprob in zip(part, scores):
            nll[i] -= logprob
            count[i] += len(w.targets)
    return nll, count
