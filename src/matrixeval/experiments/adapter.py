"""A base model against the same model with a PEFT (e.g. LoRA) adapter, on the same data (Wei et al. 2024
Table 2: matrix entropy and loss before and after supervised fine-tuning).

The base model (--model_args) measures every task, is released, then the same model with --adapter PATH
(a saved PEFT adapter directory, loaded as model_args + ",adapter=PATH") measures the same documents.
Variants "<task>/base" and "<task>/adapter" are stored, resumable and data-parallel like `run`. Training
adapters is out of scope: bring a saved one. The JSON is written under the adapted model's name
(<output_path>/<model>__adapter<PATH>/adapter_<timestamp>.json); its config holds the base model's
config under "base".

Output columns (table .md/.csv next to the JSON, and the "table" key of the JSON):
  task               the task
  n_samples          samples with a defined value under both models (the smaller count)
  <metric>_base      the metric's data-set value with the base model (e.g. matrix_entropy_base, loss_base)
  <metric>_adapter   the same with the adapter
  <metric>_delta     adapter − base (negative matrix entropy / loss: the adapter compresses / predicts better)
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MatrixEvalError
from ..models import default_model_path, parse_model_args
from . import _common as common

DESCRIPTION = "base model vs the same model with a PEFT/LoRA adapter: metrics and loss side by side (seed 000 Table 2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True,
                        help="directory of a saved PEFT adapter (e.g. LoRA) for --model_args")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = adapter_experiment(args.model_args, args.tasks, adapter=args.adapter, metrics=args.metrics,
                             **common.options_from_args(args))
    return common.print_report(out)


def with_adapter(model_args: str | Mapping[str, Any] | None, adapter: str) -> str | dict[str, Any]:
    """`model_args` with ``adapter=PATH`` added; an adapter already in `model_args` is an error."""
    if parse_model_args(model_args).adapter:
        raise MatrixEvalError("model_args already name an adapter; pass the base model in --model_args and the "
                              "adapter in --adapter")
    if model_args is None or (isinstance(model_args, str) and not model_args.strip()):
        return f"pretrained={default_model_path()},adapter={adapter}"
    if isinstance(model_args, str):
        return f"{model_args},adapter={adapter}"
    return {**model_args, "adapter": adapter}


def adapter_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    adapter: str,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task with the base model and with the adapter; see the module docstring.

    Returns the results dict (``results["<task>/base"]``, ``results["<task>/adapter"]``, ``table``) on rank 0
    and None elsewhere.
    """
    opts = common.options(common_options)
    adapted_args = with_adapter(model_args, str(adapter))
    loaded = None
    entries: dict[str, dict[str, Any]] = {}
    per_sample: dict[str, list] = {}
    base_config = None
    for role, args in (("base", model_args), ("adapter", adapted_args)):
        session = common.open_session(args, metrics, opts)
        if loaded is None:
            loaded = common.load_tasks(tasks, opts)
        for task in loaded:
            entry, records = session.run(f"{task.name}/{role}", task.documents, load_skipped=task.skipped,
                                         source=task.source)
            if entry is not None:
                entries[f"{task.name}/{role}"], per_sample[f"{task.name}/{role}"] = entry, records
        if role == "base":
            base_config = session.config()
            del session  # one model in memory at a time
            _release_memory()
    rows = []
    for task in loaded:
        base, tuned = entries.get(f"{task.name}/base"), entries.get(f"{task.name}/adapter")
        if base is None or tuned is None:
            continue
        row: dict[str, Any] = {"task": task.name, "n_samples": min(base["n_samples"], tuned["n_samples"])}
        for m in session.metrics:
            if base.get(m) is not None and tuned.get(m) is not None:
                row.update({f"{m}_base": base[m], f"{m}_adapter": tuned[m], f"{m}_delta": tuned[m] - base[m]})
        rows.append(row)
    return common.finish(session, "adapter", entries, rows, opts=opts, per_sample=per_sample,
                         extra_config={"adapter": str(adapter), "tasks": tasks, "base": base_config})


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
