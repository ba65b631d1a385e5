"""A loaded model in a (possibly distributed) world, with its store: what `run` and every experiment share.

`Session.run(name, documents)` measures any list of documents through the engine — durable per-sample
store, resume, data parallelism, batch-size back-off — and returns the task's results entry on rank 0.
Experiments build their document variants (truncated, shuffled, prompted, ...) and call it; they never
re-implement batching or metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._version import __version__
from .caveats import CaveatThresholds, task_caveats
from .data import Document
from .engine.batching import encode
from .engine.dist import barrier, broadcast_from_main, init_world, rank_gpus
from .engine.files import write_text_atomic
from .engine.measure import SPECTRAL_FIELDS, MeasureConfig
from .engine.runner import BatchSizer, run_task
from .engine.keys import model_identity
from .engine.store import NullStore, ShardStore, config_key
from .errors import MatrixEvalError
from .metric_info import parse_metrics
from .models import load_model, model_name, parse_model_args, random_init_like, resolve_layers
from .models.loading import inspect_model
from .results import higher_is_better as metric_directions
from .results import json_safe, task_results, zero_valid_hint

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048
# With no model given, the packaged MiniLM (an encoder: no loss) shows what the spectra say, Diff-eRank included.
EMBEDDED_DEFAULT_METRICS = "matrix_entropy,effective_rank,nuclear_norm,diff_erank"


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


def check_writable(path: Path, what: str) -> None:
    """Fail now, before any model loads, when `path` cannot be (or become) a folder we write into.

    Nothing is created: the nearest existing ancestor must be a folder in which a file can be made (a
    temporary one, removed at once), so a later mkdir and write will work.
    """
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {str(existing)!r} is a file"
        raise MatrixEvalError(f"{what} {str(path)!r} {where}; give a folder (it is created if missing)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise MatrixEvalError(
            f"cannot write into folder {str(existing)!r} for {what} {str(path)!r} ({err.strerror}); "
            "choose a folder you can write to"
        ) from None


def _docs_digest(documents: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for doc in documents:
        context = "\0" if doc.context is None else f"\1{doc.context}\0"  # plain vs continuation after a context
        h.update(f"{doc.doc_id}\0{context}{doc.text}\0".encode())
    return h.hexdigest()


def versions() -> dict[str, str]:
    # From the installed metadata: importing datasets just for its version costs ~2 s in a run that never uses it.
    from importlib.metadata import version

    import torch
    import transformers

    return {
        "matrixeval": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": version("datasets"),
        "python": platform.python_version(),
    }


class Session:
    """One model, loaded once, measuring as many document sets as a command needs."""

    def __init__(
        self,
        model_args: str | Mapping[str, Any] | None = None,
        *,
        metrics: str | Sequence[str] | None = None,
        layers: str | Sequence[int] | None = "last",
        batch_size: int | str = 8,
        max_length: int = DEFAULT_MAX_LENGTH,
        seed: int = 1234,
        device: str | None = None,
        output_path: str | os.PathLike | None = "results",
        store: str | os.PathLike | None = None,
        exclude_bos: bool = False,
        caveats: CaveatThresholds | None = None,
    ):
        """Check everything that needs no weights, then load the model.

        `caveats` sets when each task's warnings fire (default :class:`CaveatThresholds`).

        The model_args keys, metrics, layers (against the config's layer count) and the output and store
        folders are checked from the config alone, so a mistake is reported in a second, not after a large
        model has loaded.
        """
        self.started = time.time()
        self.batch_size = _check_batch_size(batch_size)
        if max_length < 2:
            raise MatrixEvalError(f"max_length must be at least 2 tokens, got {max_length}")
        self.world = init_world(device)
        if self.world.size > 1 and device is None:
            import torch

            device = f"cuda:{self.world.local_rank}" if torch.cuda.is_available() else "cpu"
        self.model_args_text = model_args if isinstance(model_args, str) else None
        self.args = parse_model_args(model_args)
        facts = inspect_model(self.args)
        if metrics is None and model_args is None:
            metrics = EMBEDDED_DEFAULT_METRICS
        self.metrics = parse_metrics(metrics, facts.has_lm_head)
        self.layers = resolve_layers(layers, facts.num_hidden_layers)
        self.output_path = Path(output_path) if output_path is not None else None
        self.run_dir = (self.output_path or Path(".")) / model_name(self.args)
        self.store_root = Path(store) if store else (self.run_dir / "store" if output_path is not None else None)
        if self.output_path is not None:
            check_writable(self.output_path, "output_path")
        if store:
            check_writable(self.store_root, "store")
        gpus = None
        if self.world.size > 1 and self.args.device_map is not None:
            import torch

            gpus = rank_gpus(self.world, torch.cuda.device_count())
        self.lm = load_model(self.args, device, gpus=gpus, facts=facts)
        self.seed = seed
        self.caveats = caveats or CaveatThresholds()
        self.reference = random_init_like(self.lm, seed) if "diff_erank" in self.metrics else None
        # What the stored Diff-eRank values are relative to (part of the store's key): the seeded init, or what a
        # caller that replaces `reference` (experiment checkpoints --baseline) sets here.
        self.reference_key: Any = seed
        self.max_length = min(max_length, self.lm.max_positions) if self.lm.max_positions else max_length
        self.cfg = MeasureConfig(
            layers=tuple(self.layers),
            need_loss=any(m in self.metrics for m in ("loss", "perplexity")),
            exclude_bos=exclude_bos,
            special_ids=frozenset(self.lm.tokenizer.all_special_ids),
        )
        self.sizer = BatchSizer.parse(self.batch_size)

    def run(
        self,
        name: str,
        documents: Sequence[Document],
        *,
        load_skipped: Mapping[str, int] | None = None,
        source: str = "",
        require_spectral: bool = True,
        label: str | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | tuple[None, None]:
        """Measure `documents` as task `name`: (results entry, per-sample records) on rank 0, (None, None) elsewhere.

        `label` is how the progress bar and the resume and warning lines name the work (default `name`), e.g.
        ``"wikitext @ checkpoint-500"``; the store's key uses `name` only.

        Raises MatrixEvalError when no sample has a defined spectral value, so no results file claims numbers,
        unless `require_spectral` is False (a caller that only reads log-likelihoods, e.g. one-token choices).
        """
        encoded = encode(self.lm.tokenizer, documents, self.max_length)
        key_config = {
            "matrixeval": __version__,
            # The fields a stored record holds: a store written before a metric was added is never reused for it.
            "record_fields": list(SPECTRAL_FIELDS),
            **model_identity(self.args),
            "task": name,
            "documents": _docs_digest(documents),
            "max_length": self.max_length,
            "exclude_bos": self.cfg.exclude_bos,
            "layers": list(self.cfg.layers),
            "need_loss": self.cfg.need_loss,
            "diff_erank_seed": self.reference_key if self.reference is not None else None,
            "batch_size": self.batch_size,
            "device_type": self.lm.device.type,
        }
        if self.store_root is not None:
            safe = name.replace("/", "__")
            store = ShardStore(self.store_root / f"{safe}-{config_key(key_config)}", key_config)
        else:
            store = NullStore()
        run = run_task(self.lm, encoded, self.cfg, store, self.world, self.sizer, reference=self.reference,
                       desc=label or name)
        entry, error = None, None
        if run is not None:
            entry = task_results(
                run.records,
                layers=self.cfg.layers,
                metrics=self.metrics,
                hidden_size=self.lm.hidden_size,
                seed=self.seed,
                load_skipped=load_skipped or {},
                n_resumed=run.n_resumed,
            )
            if entry["n_samples"] == 0 and require_spectral:
                error = (f"task {name!r} has zero valid samples (skipped: {entry['skipped_by_status']}); "
                         + zero_valid_hint(entry["skipped_by_status"], str(self.lm.dtype).replace("torch.", "")))
        # Every rank stops on the same error, so none is left waiting at the next collective.
        error = broadcast_from_main(error, self.world)
        if error:
            raise MatrixEvalError(error)
        if run is None:
            return None, None
        label = label or name
        nonfinite = entry["skipped_by_status"].get("nonfinite")
        if nonfinite:
            dtype = str(self.lm.dtype).replace("torch.", "")
            advice = ("fp16 overflows easily, load the model with dtype=bfloat16 or float32" if dtype == "float16"
                      else f"in a {dtype} model this points to NaN/Inf weights or activations, not overflow of "
                      "the dtype: check the checkpoint")
            logger.warning("task %s: %d samples had NaN/Inf hidden states and were excluded; %s",
                           label, nonfinite, advice)
        if entry.get("loss_n_nonfinite"):
            logger.warning("task %s: %d samples had a NaN/Inf loss and were left out of every loss and perplexity "
                           "value (loss_n_nonfinite)", label, entry["loss_n_nonfinite"])
        if run.n_resumed or run.n_torn:
            print(f"task {label}: resumed {run.n_resumed} of {len(documents)} from the store "
                  f"({run.n_torn} torn lines recomputed)", file=sys.stderr)
        entry["source"] = source
        entry["n_torn_store_lines"] = run.n_torn
        found = task_caveats(run.records, entry, metrics=self.metrics, hidden_size=self.lm.hidden_size,
                             thresholds=self.caveats)
        for caveat in found:
            print(caveat.line(label), file=sys.stderr)
        entry["warnings"] = [c.as_dict() for c in found]
        return entry, run.records

    def config(self) -> dict[str, Any]:
        """The results JSON's "config" section."""
        lm = self.lm
        return {
            "model_args": self.model_args_text or f"pretrained={self.args.pretrained}",
            "model_name": lm.name,
            "n_params": lm.n_params,
            "n_params_non_embedding": lm.n_params_non_embedding,
            "hidden_size": lm.hidden_size,
            "num_layers": lm.num_hidden_layers,
            "dtype": str(lm.dtype).replace("torch.", ""),
            "device": str(lm.device),
            "layers": self.layers,
            "metrics": self.metrics,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "batch_sizes_used": sorted(set(self.sizer.history), reverse=True),
            "seed": self.seed,
            "exclude_bos": self.cfg.exclude_bos,
            "world_size": self.world.size,
        }

    def finish(
        self,
        results: Mapping[str, Any],
        *,
        per_sample: Mapping[str, list[dict[str, Any]]] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        prefix: str = "results",
        higher_is_better: Mapping[str, bool] | None = None,
        **sections: Any,
    ) -> dict[str, Any] | None:
        """Assemble the results dict on rank 0 and write `<prefix>_<timestamp>.json` (+ samples) when persisting.

        `higher_is_better` declares columns beyond the run's metrics (e.g. an experiment's accuracy).
        """
        barrier(self.world)
        if not self.world.is_main:
            return None
        out = {
            "results": dict(results),
            **sections,
            "config": {**self.config(), **(extra_config or {})},
            "higher_is_better": {**metric_directions(self.metrics), **(higher_is_better or {})},
            "versions": versions(),
            "date": datetime.now().isoformat(timespec="seconds"),
            "total_evaluation_time_seconds": round(time.time() - self.started, 3),
        }
        if self.output_path is not None:
            stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
            path = self.run_dir / f"{prefix}_{stamp}.json"
            files = {self.run_dir / f"samples_{task.replace('/', '__')}_{stamp}.jsonl":
                     "".join(json.dumps(json_safe(r)) + "\n" for r in records)
                     for task, records in (per_sample or {}).items()}
            files[path] = json.dumps(json_safe(out), indent=2, allow_nan=False)  # last: it claims the run is done
            for target, text in files.items():
                write_text_atomic(target, text)
            out["results_path"] = str(path)
        return out
