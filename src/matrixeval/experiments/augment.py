"""LiDAR, DiME and InfoNCE per layer from seeded augmented views of every document (Layer by Layer, Skean et al.
2025; OFSkean/information_flow): `matrixeval run --metrics lidar,dime,infonce,infonce_mi_lower_bound --layers all`
with a table and a layer-profile plot of its own.

Every document gets --n_views augmented views (nlpaug's SplitAug, RandomCharAug and KeyboardAug in sequence, as
the reference's ``text_augmentation``; each view seeded by --seed, the document and the view index, see
matrixeval.data.augment). Each view is one forward pass, beside the document's own; at every requested layer its
tokens are centred and L2-normalised (Algorithm 1's first steps) and averaged into one vector, as the reference's
``compute_on_concatenated_passes`` does. So this experiment costs --n_views + 1 forward passes per document, and
the metrics are data-set values over those vectors:
  lidar                   Rényi-α (--renyi_alpha) entropy of the LDA matrix (documents are the classes, views
                          their samples), normalised by --lbl_normalization with N documents and D (default
                          maxEntropy)
  dime                    DiME between views 0 and 1: mean over --dime_iters seeded permutations of the joint
                          entropy with one view's Gram permuted, minus the joint entropy, normalised likewise
  infonce                 InfoNCE between views 0 and 1 at --infonce_temperature (lower: views of one document
                          are closer to each other than to other documents)
  infonce_mi_lower_bound  1 − infonce / log N, the reference's mutual-information reading
The views' vectors are stored per document by the engine (keyed by the model, the exact view texts and every
setting that changes a number), so a killed run resumes, also under torchrun. Default --layers: all (a layer
profile). Default --tasks: pydoc_topics. --alpha, --normalization and --temperature are the older names of
--renyi_alpha, --lbl_normalization and --infonce_temperature.

Output columns (table .md/.csv next to augment_<timestamp>.json, and the "table" key of the JSON):
  task, layer, n_docs (documents whose every view has a defined vector), n_views, lidar, dime, infonce,
  infonce_mi_lower_bound
Plot: <stem>.png, each metric against the layer, one line per task, with the number of documents in the legend.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics.augment import AUGMENTATION_METRICS as METRICS
from ..metrics.family import LBL_NORMALIZATIONS
from . import _common as common

DESCRIPTION = "LiDAR, DiME and InfoNCE per layer from seeded augmented views (Layer by Layer)"
HIGHER = {"lidar": True, "dime": True, "infonce": False, "infonce_mi_lower_bound": True}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the experiment's first names for three shared definition flags (cli.add_definition_args)
    parser.add_argument("--alpha", dest="renyi_alpha", type=float, default=argparse.SUPPRESS,
                        help="same as --renyi_alpha: the Rényi order of LiDAR's and DiME's entropies (default: 1)")
    parser.add_argument("--normalization", dest="lbl_normalization", choices=LBL_NORMALIZATIONS,
                        default=argparse.SUPPRESS, help="same as --lbl_normalization (default here: maxEntropy)")
    parser.add_argument("--temperature", dest="infonce_temperature", type=float, default=argparse.SUPPRESS,
                        help="same as --infonce_temperature (default: 0.1)")
    common.add_log_samples_arg(parser)
    parser.set_defaults(layers="all")
    common.set_help(parser, "--layers", "last | all | comma-separated HF hidden-state indices (default here: all)")


def run(args: argparse.Namespace) -> int:
    return common.print_report(augment_experiment(args.model_args, args.tasks, **common.options_from_args(args)))


def augment_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    alpha: float | None = None,
    normalization: str | None = None,
    temperature: float | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """LiDAR, DiME and InfoNCE of every task at every requested layer; see the module docstring. `alpha`,
    `normalization` and `temperature` are the shared options renyi_alpha, lbl_normalization and
    infonce_temperature by their older names; n_views and dime_iters are shared options too.

    Returns the results dict (``results[task]["by_layer"][layer]``, ``table`` rows) on rank 0, None elsewhere.
    """
    common_options.setdefault("layers", "all")
    for name, value in (("renyi_alpha", alpha), ("lbl_normalization", normalization),
                        ("infonce_temperature", temperature)):
        if value is not None:
            common_options[name] = value
    opts = common.options(common_options)
    tasks_loaded = common.load_tasks(tasks, opts)
    session = common.open_session(model_args, list(METRICS), opts)
    n_views = session.augment.n_views
    results: dict[str, Any] = {}
    per_sample: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    for task in tasks_loaded:
        entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source)
        if entry is None:
            continue
        results[task.name], per_sample[task.name] = entry, records
        for layer, values in entry["by_layer"].items():
            rows.append({"task": task.name, "layer": int(layer), "n_docs": values["lidar_n_documents"],
                         "n_views": n_views, **{m: values[m] for m in METRICS}})
    model = common.short_name(session.lm.name) if session.world.is_main else ""
    return common.finish(session, "augment", results, rows, opts=opts,
                         per_sample=per_sample if opts.log_samples else None,
                         extra_config={"tasks": tasks},
                         plots={"": _plotter(rows, f"{model}: augmentation metrics by layer", results, HIGHER)},
                         higher_is_better=HIGHER)


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
