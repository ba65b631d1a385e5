"""LiDAR, DiME and InfoNCE per layer from seeded augmented views of every document (Layer by Layer, Skean et al.
2025; OFSkean/information_flow).

Every document gets --n_views augmented views (nlpaug's SplitAug, RandomCharAug and KeyboardAug in sequence, as
the reference's ``text_augmentation``; each view seeded by --seed, the document and the view index, see
matrixeval.data.augment). Each view is one forward pass; at every requested layer its tokens are centred and
L2-normalised (Algorithm 1's first steps) and averaged into one vector, as the reference's
``compute_on_concatenated_passes`` does. So this experiment costs --n_views forward passes per document, and
the metrics are data-set values over those vectors:
  lidar                   Rényi-α entropy of the LDA matrix (documents are the classes, views their samples),
                          normalised by --normalization with N documents and D (default maxEntropy)
  dime                    DiME between views 0 and 1: mean over --dime_iters seeded permutations of the joint
                          entropy with one view's Gram permuted, minus the joint entropy, normalised likewise
  infonce                 InfoNCE between views 0 and 1 at --temperature (lower: views of one document are
                          closer to each other than to other documents)
  infonce_mi_lower_bound  1 − infonce / log N, the reference's mutual-information reading
The pooled vectors of every view are stored (keyed by the model, the exact view texts and every setting that
changes a number), so a killed run resumes. Default --layers: all (a layer profile). Default --tasks:
pydoc_topics.

Output columns (table .md/.csv next to augment_<timestamp>.json, and the "table" key of the JSON):
  task, layer, n_docs (documents whose every view has a defined vector), n_views, lidar, dime, infonce,
  infonce_mi_lower_bound
Plot: <stem>.png, each metric against the layer, one line per task, with the number of documents in the legend.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..caveats import few_samples, truncated
from ..caveats import report as report_caveats
from ..data import Document
from ..data.augment import AUGMENTATION, augment_text, check_augmenter, view_seed
from ..engine.keys import inputs_digest, key_path, make_key, model_identity
from ..engine.runner import fault_pause
from ..engine.store import NullStore, ShardStore
from ..errors import MatrixEvalError
from ..metrics._tokens import OK
from ..metrics.family import LBL_NORMALIZATIONS
from . import _common as common

DESCRIPTION = "LiDAR, DiME and InfoNCE per layer from seeded augmented views (Layer by Layer)"
METRICS = ("lidar", "dime", "infonce", "infonce_mi_lower_bound")
HIGHER = {"lidar": True, "dime": True, "infonce": False, "infonce_mi_lower_bound": True}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n_views", type=int, default=8, help="augmented views per document (default: 8, as the "
                        "reference; DiME and InfoNCE use views 0 and 1)")
    parser.add_argument("--alpha", type=float, default=1.0, help="Rényi order of LiDAR's and DiME's entropies "
                        "(default: 1, von Neumann)")
    parser.add_argument("--normalization", choices=LBL_NORMALIZATIONS, default="maxEntropy",
                        help="LiDAR's and DiME's normalisation with N documents and D (default: maxEntropy)")
    parser.add_argument("--temperature", type=float, default=0.1, help="InfoNCE temperature (default: 0.1)")
    parser.add_argument("--dime_iters", type=int, default=10, help="DiME's permutations (default: 10)")
    parser.set_defaults(layers="all")
    common.set_help(parser, "--layers", "last | all | comma-separated HF hidden-state indices (default here: all)")


def run(args: argparse.Namespace) -> int:
    out = augment_experiment(args.model_args, args.tasks, n_views=args.n_views, alpha=args.alpha,
                             normalization=args.normalization, temperature=args.temperature,
                             dime_iters=args.dime_iters, **common.options_from_args(args))
    return common.print_report(out)


def _check(n_views: int, alpha: float, temperature: float, dime_iters: int, normalization: str) -> None:
    if n_views < 2:
        raise MatrixEvalError(f"--n_views must be at least 2 (DiME and InfoNCE compare two views), got {n_views}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise MatrixEvalError(f"--alpha must be a positive number, got {alpha}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise MatrixEvalError(f"--temperature must be a positive number, got {temperature}")
    if dime_iters < 1:
        raise MatrixEvalError(f"--dime_iters must be at least 1, got {dime_iters}")
    if normalization not in LBL_NORMALIZATIONS:
        raise MatrixEvalError(f"--normalization must be one of {', '.join(LBL_NORMALIZATIONS)}, got {normalization!r}")
    check_augmenter()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MatrixEvalError("experiment augment runs in one process; start it without torchrun")


def augment_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    n_views: int = 8,
    alpha: float = 1.0,
    normalization: str = "maxEntropy",
    temperature: float = 0.1,
    dime_iters: int = 10,
    **common_options: Any,
) -> dict[str, Any] | None:
    """LiDAR, DiME and InfoNCE of every task at every requested layer; see the module docstring.

    Returns the results dict (``results[task]["layers"][layer]``, ``table`` rows) on rank 0, None elsewhere.
    """
    common_options.setdefault("layers", "all")
    opts = common.options(common_options)
    _check(n_views, alpha, temperature, dime_iters, normalization)
    tasks_loaded = common.load_tasks(tasks, opts)
    session = common.open_session(model_args, "matrix_entropy", opts)
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    settings = {"n_views": n_views, "seed": opts.seed, "augmentation": AUGMENTATION, "layers": list(session.layers),
                "max_length": session.max_length, "exclude_bos": opts.exclude_bos,
                "device_type": session.lm.device.type}
    for task in tasks_loaded:
        views = [Document(i * n_views + j, augment_text(d.text, view_seed(opts.seed, d.doc_id, j)), d.record)
                 for i, d in enumerate(task.documents) for j in range(n_views)]
        key = make_key("augment_views", model_identity(session.args),
                       inputs_digest([task.source, *((v.doc_id, v.text) for v in views)]), settings)
        store = (ShardStore(key_path(session.store_root, f"augment-{task.name}", key), key)
                 if session.store_root is not None else NullStore())
        pooled = _pooled_views(session, views, store, opts)
        entry = _task_entry(pooled, len(task.documents), n_views, session, alpha=alpha, normalization=normalization,
                            temperature=temperature, dime_iters=dime_iters, seed=opts.seed)
        entry["source"] = task.source
        n_truncated = sum(bool(r.get("truncated")) for r in pooled.values())
        report_caveats(entry, task.name, [few_samples(entry["n_samples"], opts.thresholds),
                                          truncated(n_truncated, len(pooled), opts.thresholds)])
        results[task.name] = entry
        for layer, values in entry["layers"].items():
            rows.append({"task": task.name, "layer": int(layer), "n_docs": values["n_docs"], "n_views": n_views,
                         **{m: values[m] for m in METRICS}})
    model = common.short_name(session.lm.name)
    return common.finish(session, "augment", results, rows, opts=opts,
                         extra_config={"tasks": tasks, "n_views": n_views, "alpha": alpha,
                                       "normalization": normalization, "temperature": temperature,
                                       "dime_iters": dime_iters, "augmentation": AUGMENTATION},
                         plots={"": _plotter(rows, f"{model}: augmentation metrics by layer", results, HIGHER)},
                         higher_is_better=HIGHER)


def _pooled_views(session, views: list[Document], store, opts) -> dict[int, dict[str, Any]]:
    """Each view's token-normalised mean vector at every layer, by view id: from the store, or measured and
    stored batch by batch."""
    from tqdm.auto import tqdm

    from ..engine.batching import collate, encode
    from ..engine.measure import metric_mask
    from ..metrics import normalize_tokens
    from ..metrics.family import pooled_from_tokens
    from ..models.forward import forward

    done = store.load()
    todo = [v for v in views if v.doc_id not in done]
    if len(done):
        print(f"augment: resumed {len(views) - len(todo)} of {len(views)} views from the store", flush=True,
              file=sys.stderr)
    lm, layers = session.lm, list(session.layers)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    size = opts.batch_size if isinstance(opts.batch_size, int) else 8
    encoded = encode(lm.tokenizer, todo, session.max_length)
    try:
        with tqdm(total=len(todo), desc="augmented views", unit="view", leave=False) as bar:
            for start in range(0, len(encoded), size):
                chunk = encoded[start:start + size]
                ids, attention, span = collate(chunk, pad, lm.device)
                out = forward(lm, ids, attention, layers, need_loss=False)
                keep = metric_mask(ids, span, session.cfg).cpu()  # a leading BOS/CLS left out as --exclude_bos says
                vectors, valid = {}, {}
                for layer in layers:
                    t = normalize_tokens(out.hidden.pop(layer).float().cpu(), keep)
                    vectors[layer] = pooled_from_tokens(t)["mean"]
                    valid[layer] = ((t.status == OK) & (t.n_used > 0)).tolist()
                new = [{"doc_id": e.doc_id, "n_tokens": len(e.input_ids), "truncated": e.truncated,
                        "layers": {str(layer): vectors[layer][b].tolist() if valid[layer][b] else None
                                   for layer in layers}}
                       for b, e in enumerate(chunk)]
                store.append(new)
                done.update({r["doc_id"]: r for r in new})
                fault_pause()
                bar.update(len(chunk))
    finally:
        store.close()
    return done


def _task_entry(pooled: Mapping[int, Mapping[str, Any]], n_docs: int, n_views: int, session, *, alpha: float,
                normalization: str, temperature: float, dime_iters: int, seed: int) -> dict[str, Any]:
    """Per layer: the documents whose every view has a vector, and the three metrics over them."""
    import torch

    from ..metrics.augment import dime, infonce, lidar

    layers: dict[str, Any] = {}
    for layer in session.layers:
        name = str(layer)
        kept = [i for i in range(n_docs)
                if all(pooled.get(i * n_views + j, {}).get("layers", {}).get(name) is not None
                       for j in range(n_views))]
        values: dict[str, Any] = {"n_docs": len(kept), **{m: None for m in METRICS}}
        if len(kept) >= 2:
            x = torch.tensor([[pooled[i * n_views + j]["layers"][name] for j in range(n_views)] for i in kept],
                             dtype=torch.float64)
            values["lidar"] = lidar(x, alpha=alpha, normalization=normalization)
            values["dime"] = dime(x[:, 0], x[:, 1], alpha=alpha, n_iters=dime_iters, normalization=normalization,
                                  generator=torch.Generator().manual_seed(seed))
            values["infonce"], values["infonce_mi_lower_bound"] = infonce(x[:, 0], x[:, 1], temperature=temperature)
        layers[name] = values
    valid = min((v["n_docs"] for v in layers.values()), default=0)
    n_truncated = sum(bool(r.get("truncated")) for r in pooled.values())
    return {"n_samples": valid, "n_docs": n_docs, "n_views": n_views, "n_truncated_views": n_truncated,
            "layers": layers}


def _plotter(rows: Sequence[Mapping[str, Any]], title: str, results: Mapping[str, Any], higher: Mapping[str, bool]):
    """Each metric against the layer, one line per task with its documents in the legend; the tasks' caveats
    are written under the title."""
    def draw(path) -> None:
        from ..report.plots import caveat_notes, plot_metric_panels

        panels: dict[str, dict[str, list]] = {}
        for task in dict.fromkeys(r["task"] for r in rows):
            ns = sorted({r["n_docs"] for r in rows if r["task"] == task})
            label = f"{task} (n = {ns[0] if len(ns) == 1 else f'{ns[0]}-{ns[-1]}'} docs)"
            for m in METRICS:
                panels.setdefault(m, {})[label] = [(r["layer"], r[m], None, None) for r in rows
                                                   if r["task"] == task and r[m] is not None]
        plot_metric_panels(panels, path, xlabel="layer (HF hidden-state index)", title=title,
                           higher_is_better=higher, notes=caveat_notes(results))

    return draw
