"""`matrixeval.evaluate`: the one function the CLI, tests and notebooks call."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._version import __version__
from .data import Task, TaskSpec, load_task, parse_task_specs
from .data.recipes import DEFAULT_TASK
from .engine.batching import encode
from .engine.dist import World, barrier, init_world
from .engine.measure import MeasureConfig
from .engine.runner import BatchSizer, run_task
from .engine.store import NullStore, ShardStore, config_key
from .errors import MatrixEvalError
from .metric_info import parse_metrics
from .models import LoadedModel, load_model, parse_model_args, random_init_like, resolve_layers
from .results import higher_is_better, json_safe, task_results

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048
# With no model given, the packaged MiniLM (an encoder: no loss) shows what the spectra say, Diff-eRank included.
EMBEDDED_DEFAULT_METRICS = "matrix_entropy,effective_rank,nuclear_norm,diff_erank"


def _versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers

    return {
        "matrixeval": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
    }


def _model_fingerprint(pretrained: str) -> list[Any]:
    """Size and mtime of a local checkpoint's files: a retrained model in the same folder gets a new key."""
    path = Path(pretrained)
    if not path.is_dir():
        return []
    return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in path.iterdir() if f.is_file())


def _docs_digest(task: Task) -> str:
    h = hashlib.sha256()
    for doc in task.documents:
        h.update(f"{doc.doc_id}\0{doc.text}\0".encode())
    return h.hexdigest()


def _check_batch_size(batch_size: int | str) -> int | str:
    if batch_size == "auto":
        return batch_size
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise MatrixEvalError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    return value


def evaluate(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    text_field: str | None = None,
    metrics: str | Sequence[str] | None = None,
    layers: str | Sequence[int] | None = "last",
    batch_size: int | str = 8,
    max_length: int = DEFAULT_MAX_LENGTH,
    limit: int | None = None,
    seed: int = 1234,
    device: str | None = None,
    output_path: str | os.PathLike | None = "results",
    log_samples: bool = False,
    exclude_bos: bool = False,
    on_error: str = "fail",
    store: str | os.PathLike | None = None,
) -> dict[str, Any] | None:
    """Evaluate one model on tasks and return the results dict (also written as JSON when output_path is set).

    `model_args` is lm-eval style ("pretrained=ID,dtype=bfloat16,..."); None = the packaged MiniLM, and
    then `metrics` None means EMBEDDED_DEFAULT_METRICS.
    `tasks` names recipes, NAME=LOCAL_FILE pairs or files; None = the built-in offline task. Under
    torchrun / accelerate launch every rank takes part and rank 0 returns the results; other ranks return None.
    Finished samples are stored durably as they complete (under `store`, default OUTPUT/<model>/store), so
    re-running the same call resumes; with output_path=None and no store nothing touches the disk.
    """
    started = time.time()
    batch_size = _check_batch_size(batch_size)
    if max_length < 2:
        raise MatrixEvalError(f"max_length must be at least 2 tokens, got {max_length}")
    if on_error not in ("skip", "fail"):
        raise MatrixEvalError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    specs = parse_task_specs(tasks if tasks else DEFAULT_TASK)
    world = init_world(device)
    if world.size > 1 and device is None:
        import torch

        device = f"cuda:{world.local_rank}" if torch.cuda.is_available() else "cpu"
    args = parse_model_args(model_args)
    lm = load_model(args, device)
    if metrics is None and model_args is None:
        metrics = EMBEDDED_DEFAULT_METRICS
    metric_names = parse_metrics(metrics, lm.has_lm_head)
    layer_ids = resolve_layers(layers, lm.num_hidden_layers)
    reference = random_init_like(lm, seed) if "diff_erank" in metric_names else None
    max_len = min(max_length, lm.max_positions) if lm.max_positions else max_length
    cfg = MeasureConfig(
        layers=tuple(layer_ids),
        need_loss=any(m in metric_names for m in ("loss", "perplexity")),
        exclude_bos=exclude_bos,
        special_ids=frozenset(lm.tokenizer.all_special_ids),
    )
    run_dir = Path(output_path or ".") / lm.name
    store_root = Path(store) if store else (run_dir / "store" if output_path is not None else None)
    results: dict[str, Any] = {}
    per_sample: dict[str, list[dict[str, Any]]] = {}
    sizer = BatchSizer.parse(batch_size)
    for spec in specs:
        task = load_task(spec, text_field=text_field, limit=limit, seed=seed, on_error=on_error)
        entry, records = _run_one(lm, reference, task, spec, cfg, sizer, store_root, world, args, metric_names,
                                  batch_size, max_len, seed)
        if entry is not None:
            results[task.name] = entry
            per_sample[task.name] = records
    barrier(world)
    if not world.is_main:
        return None
    out = {
        "results": results,
        "config": {
            "model_args": model_args if isinstance(model_args, str) else f"pretrained={args.pretrained}",
            "model_name": lm.name,
            "n_params": lm.n_params,
            "hidden_size": lm.hidden_size,
            "num_layers": lm.num_hidden_layers,
            "dtype": str(lm.dtype).replace("torch.", ""),
            "device": str(lm.device),
            "layers": layer_ids,
            "metrics": metric_names,
            "max_length": max_len,
            "batch_size": batch_size,
            "batch_sizes_used": sizer.history and sorted(set(sizer.history), reverse=True),
            "limit": limit,
            "seed": seed,
            "exclude_bos": exclude_bos,
            "world_size": world.size,
            "tasks": [s.name for s in specs],
        },
        "higher_is_better": higher_is_better(metric_names),
        "versions": _versions(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "total_evaluation_time_seconds": round(time.time() - started, 3),
    }
    if output_path is not None:
        _write(out, per_sample, run_dir, log_samples)
    return out


def _run_one(lm, reference, task, spec: TaskSpec, cfg, sizer, store_root, world: World, args, metric_names,
             batch_size, max_len, seed):
    encoded = encode(lm.tokenizer, task.documents, max_len)
    key_config = {
        "matrixeval": __version__,
        "model": [args.pretrained, args.revision, args.dtype, args.adapter, sorted(args.extra.items())],
        "model_files": _model_fingerprint(args.pretrained),
        "task": task.name,
        "documents": _docs_digest(task),
        "max_length": max_len,
        "exclude_bos": cfg.exclude_bos,
        "layers": list(cfg.layers),
        "need_loss": cfg.need_loss,
        "diff_erank_seed": seed if reference is not None else None,
        "batch_size": batch_size,
        "device_type": lm.device.type,
    }
    key = config_key(key_config)
    store = ShardStore(Path(store_root) / f"{task.name}-{key}", key_config) if store_root else NullStore()
    run = run_task(lm, encoded, cfg, store, world, sizer, reference=reference, desc=task.name)
    if run is None:
        return None, None
    entry = task_results(
        run.records,
        layers=cfg.layers,
        metrics=metric_names,
        hidden_size=lm.hidden_size,
        seed=seed,
        load_skipped=task.skipped,
        n_resumed=run.n_resumed,
    )
    if entry["n_samples"] == 0:
        raise MatrixEvalError(
            f"task {task.name!r} has zero valid samples (skipped: {entry['skipped_by_status']}); "
            "check the text field and max_length, or use longer texts"
        )
    if entry["skipped_by_status"].get("nonfinite"):
        logger.warning(
            "task %s: %d samples had NaN/Inf hidden states and were excluded; fp16 overflows easily, "
            "load the model with dtype=bfloat16 or float32",
            task.name, entry["skipped_by_status"]["nonfinite"],
        )
    entry["source"] = task.source
    entry["n_torn_store_lines"] = run.n_torn
    return entry, run.records


def _write(out: dict[str, Any], per_sample: Mapping[str, list[dict]], run_dir: Path, log_samples: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
    path = run_dir / f"results_{stamp}.json"
    path.write_text(json.dumps(out, indent=2, allow_nan=False))
    out["results_path"] = str(path)
    if log_samples:
        for task, records in per_sample.items():
            with open(run_dir / f"samples_{task}_{stamp}.jsonl", "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(json_safe(r)) + "\n")


