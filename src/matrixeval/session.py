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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ._version import __version__
from .caveats import CaveatThresholds, task_caveats
from .caveats import report as report_caveats
from .data import Document, sample_fields
from .engine.batching import encode
from .engine.dist import DEFAULT_TIMEOUT, barrier, broadcast_from_main, init_world, rank_gpus
from .engine.files import write_text_atomic
from .engine.measure import METRIC_THREADS, SPECTRAL_FIELDS, MeasureConfig
from .engine.rolling import prefix_token_id, rolling_token_ids, rolling_windows, window_inputs
from .engine.runner import BatchSizer, run_task
from .engine.keys import model_identity
from .engine.store import NullStore, ShardStore, config_key
from .errors import MatrixEvalError
from .data.augment import AUGMENTATION as AUGMENTATION_METHOD
from .data.augment import augment_text, check_augmenter, view_seed
from .engine.keys import inputs_digest
from .metric_info import (AUGMENTATION, ROLLING, augment_options, conventions, extra_fields, family_options,
                          needs_rolling, parse_metrics, rolling_directions)
from .models import load_model, model_name, parse_model_args, random_init_like, resolve_layers
from .models.loading import inspect_model
from .results import higher_is_better as metric_directions
from .results import canonical_order, json_safe, task_results, zero_valid_hint

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


def _check_token_controls(min_tokens: int | None, fixed_tokens: int | None) -> tuple[int | None, int | None]:
    for flag, value in (("min_tokens", min_tokens), ("fixed_tokens", fixed_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise MatrixEvalError(f"{flag} must be a positive number of tokens, got {value!r}")
    if fixed_tokens is not None and fixed_tokens < 2:
        raise MatrixEvalError(f"fixed_tokens must be at least 2 tokens, got {fixed_tokens}")
    if min_tokens is not None and fixed_tokens is not None:
        raise MatrixEvalError("give --min_tokens or --fixed_tokens, not both (--fixed_tokens L already drops "
                              "documents of fewer than L tokens)")
    return min_tokens, fixed_tokens


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


def _counts(text: str) -> dict[str, int]:
    """A rolling record's word and byte counts, as lm-eval counts them."""
    from .metrics import count_bytes, count_words

    return {"words": count_words(text), "bytes": count_bytes(text)}


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
        rolling: bool = False,
        dist_timeout: float = DEFAULT_TIMEOUT,
        min_tokens: int | None = None,
        fixed_tokens: int | None = None,
        convention: str = "wei2024",
        lbl_normalization: str | None = None,
        renyi_alpha: float | None = None,
        alpha_req_window: str | Sequence[int] | None = None,
        n_views: int | None = None,
        infonce_temperature: float | None = None,
        dime_iters: int | None = None,
    ):
        """Check everything that needs no weights, then load the model.

        `rolling` scores loss and perplexity over every token of each document with lm-eval's rolling windows
        (and adds word_perplexity, byte_perplexity, bits_per_byte); spectral metrics still read the first
        `max_length` tokens. A task can ask for it itself (``Session.run(..., rolling=True)``).

        `caveats` sets when each task's warnings fire (default :class:`CaveatThresholds`). Under torchrun,
        `dist_timeout` is how many seconds a rank may go silent before the others stop (`engine.dist`).
        `min_tokens` drops documents of fewer tokens; `fixed_tokens` L cuts every document to exactly L tokens
        and drops shorter ones (it sets max_length to L); both count the tokens the model reads, special tokens
        included, after tokenisation, and count what they drop as ``too_short`` (see :meth:`run`).
        `convention` (wei2024 | layer_by_layer), `lbl_normalization`, `renyi_alpha` and `alpha_req_window`
        set the family metrics' definitions (`metric_info.family_options`); the config records each value's.
        `n_views`, `infonce_temperature`, `dime_iters` (with `lbl_normalization` and `renyi_alpha`) set the
        augmentation metrics' (`metric_info.augment_options`): each document's --n_views seeded views are
        measured by one forward pass each, beside the document itself.

        The model_args keys, metrics, layers (against the config's layer count) and the output and store
        folders are checked from the config alone, so a mistake is reported in a second, not after a large
        model has loaded.
        """
        self.started = time.time()
        self.batch_size = _check_batch_size(batch_size)
        self.min_tokens, self.fixed_tokens = _check_token_controls(min_tokens, fixed_tokens)
        if max_length < 2:
            raise MatrixEvalError(f"max_length must be at least 2 tokens, got {max_length}")
        self.convention = convention
        self.family = family_options(convention, lbl_normalization=lbl_normalization, renyi_alpha=renyi_alpha,
                                     alpha_req_window=alpha_req_window)
        self.augment = augment_options(n_views=n_views, lbl_normalization=lbl_normalization,
                                       renyi_alpha=renyi_alpha, infonce_temperature=infonce_temperature,
                                       dime_iters=dime_iters)
        self.world = init_world(device, dist_timeout)
        if self.world.size > 1 and device is None:
            import torch

            device = f"cuda:{self.world.local_rank}" if torch.cuda.is_available() else "cpu"
        self.model_args_text = model_args if isinstance(model_args, str) else None
        self.args = parse_model_args(model_args)
        facts = inspect_model(self.args)
        if metrics is None and model_args is None:
            metrics = EMBEDDED_DEFAULT_METRICS
        self.metrics = parse_metrics(metrics, facts.has_lm_head)
        self.rolling = bool(rolling)
        self.rolled: set[str] = set()  # the tasks measured in rolling mode
        if any(m in AUGMENTATION for m in self.metrics):
            check_augmenter()
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
        files = model_identity(self.args)["model_files"]
        self.fingerprint = config_key({"model_files": files}) if files else None
        self.seed = seed
        self.caveats = caveats or CaveatThresholds()
        self.reference = random_init_like(self.lm, seed) if "diff_erank" in self.metrics else None
        # What the stored Diff-eRank values are relative to (part of the store's key): the seeded init, or what a
        # caller that replaces `reference` (experiment checkpoints --baseline) sets here.
        self.reference_key: Any = seed
        limit = self.lm.max_positions or max(max_length, self.fixed_tokens or 0)
        if self.fixed_tokens is not None and self.fixed_tokens > limit:
            raise MatrixEvalError(f"fixed_tokens {self.fixed_tokens} exceeds the {limit} positions of "
                                  f"{self.lm.name}; use at most {limit}")
        # what --max_length allows (runs without token controls); --fixed_tokens L makes every other run's L
        self.free_max_length = min(max_length, limit)
        self.max_length = self.fixed_tokens or self.free_max_length
        self.cfg = MeasureConfig(
            layers=tuple(self.layers),
            need_loss=any(m in self.metrics for m in ("loss", "perplexity", *ROLLING)),
            exclude_bos=exclude_bos,
            special_ids=frozenset(self.lm.tokenizer.all_special_ids),
            extras=extra_fields(self.metrics),
            family=self.family,
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
        rolling: bool | None = None,
        count_text: Callable[[Document], str] | None = None,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        token_controls: bool = True,
        label: str | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | tuple[None, None]:
        """Measure `documents` as task `name`: (results entry, per-sample records) on rank 0, (None, None) elsewhere.

        `rolling` (default: the session's) scores loss/perplexity over every token with lm-eval's rolling windows;
        `count_text` gives the text whose words and bytes the rolling perplexities count (default: the document's
        text; lm-eval's wikitext counts the page before detokenisation).

        `min_tokens` and `max_tokens` are the task's own token controls (a recipe's or task file's); the
        session's --min_tokens / --fixed_tokens replace them when given, and max_tokens only lowers max_length.
        Documents the controls drop are counted in ``skipped_by_status["too_short"]``; the entry records the
        controls in force (``min_tokens``, ``fixed_tokens``, ``max_length``). `token_controls` False measures
        every document at the session's max_length whatever the controls (e.g. answer choices scored together).

        `label` is how the progress bar and the resume and warning lines name the work (default `name`), e.g.
        ``"wikitext @ checkpoint-500"``; the store's key uses `name` only.

        Raises MatrixEvalError when no sample has a defined spectral value, so no results file claims numbers,
        unless `require_spectral` is False (a caller that only reads log-likelihoods, e.g. one-token choices).
        """
        rolling = self.rolling if rolling is None else bool(rolling)
        needs_rolling(self.metrics, rolling, name)
        max_length = self.max_length
        if self.fixed_tokens is None and max_tokens is not None:
            max_length = min(max_length, max_tokens)
        floor = self.fixed_tokens or (self.min_tokens if self.min_tokens is not None else min_tokens)
        fixed = self.fixed_tokens
        if not token_controls:
            max_length, floor, fixed = self.free_max_length, None, None
        if floor is not None and floor > max_length:
            raise MatrixEvalError(f"task {name!r}: min_tokens {floor} exceeds max_length {max_length}; every "
                                  "document would be dropped: lower min_tokens or raise --max_length")
        encoded = encode(self.lm.tokenizer, documents, max_length)
        n_short = 0
        if floor is not None:
            kept = [e for e in encoded if len(e.input_ids) >= floor]
            n_short = len(encoded) - len(kept)
            if not kept:
                longest = max((len(e.input_ids) for e in encoded), default=0)
                raise MatrixEvalError(
                    f"task {name!r}: all {len(encoded)} documents have fewer than {floor} tokens "
                    f"({'--fixed_tokens' if self.fixed_tokens else 'min_tokens'}; longest: {longest}); "
                    "lower it or use longer texts")
            encoded = kept
        if n_short:
            load_skipped = {**(load_skipped or {}), "too_short": (load_skipped or {}).get("too_short", 0) + n_short}
        cfg = self.cfg
        if rolling and cfg.need_loss:
            encoded = self._with_windows(name, documents, encoded, max_length)
            cfg = replace(cfg, rolling=True)
        views_digest = None
        if "pooled_views" in cfg.extras:
            encoded, views_digest = self._with_views(name, documents, encoded, max_length)
        key_config = {
            "matrixeval": __version__,
            # The fields a stored record holds: a store written before a metric was added is never reused for it.
            "record_fields": list(SPECTRAL_FIELDS),
            **model_identity(self.args),
            "task": name,
            "documents": _docs_digest(documents),
            "max_length": max_length,
            # only when set: a run without token controls keeps the key (and the store) it always had
            **({"min_tokens": floor} if floor is not None else {}),
            **({"fixed_tokens": fixed} if fixed is not None else {}),
            "exclude_bos": self.cfg.exclude_bos,
            "layers": list(self.cfg.layers),
            "need_loss": self.cfg.need_loss,
            "diff_erank_seed": self.reference_key if self.reference is not None else None,
            "batch_size": self.batch_size,
            "device_type": self.lm.device.type,
        }
        if cfg.rolling:  # only then: keys of stores written without rolling stay as they were
            key_config["rolling"] = {"prefix_token": prefix_token_id(self.lm.tokenizer), "context_len": 1}
        if self.cfg.extras:
            # Only then, so a store written without the family's extra fields keeps its key. The settings key
            # only what the stored fields depend on: dataset entropy's α, normalisation and clamp are applied
            # to the stored vectors when results are made, so they do not change the stored numbers.
            key_config["record_fields"] = [*SPECTRAL_FIELDS, *self.cfg.extras]
            fam = self.cfg.family
            if "prompt_entropy" in self.cfg.extras:
                key_config["prompt_entropy"] = {"alpha": fam.alpha, "normalization": fam.normalization,
                                                "clamp": fam.clamp}
            if "alpha_req" in self.cfg.extras:
                key_config["alpha_req_window"] = list(fam.alpha_req_window)
            if views_digest is not None:
                # the exact view texts (they depend on --seed, --n_views and the augmenter's version); the
                # metrics' own settings (α, normalisation, temperature, permutations) apply at results time
                key_config["views"] = {"n_views": self.augment.n_views, "augmentation": AUGMENTATION_METHOD,
                                       "texts": views_digest}
        if self.store_root is not None:
            safe = name.replace("/", "__")
            store = ShardStore(self.store_root / f"{safe}-{config_key(key_config)}", key_config)
        else:
            store = NullStore()
        run = run_task(self.lm, encoded, cfg, store, self.world, self.sizer, reference=self.reference,
                       desc=label or name)
        entry, error = None, None
        if run is not None and cfg.rolling:
            self.rolled.add(name)
            counted = {d.doc_id: (count_text(d) if count_text else d.text) for d in documents}
            run.records = [{**r, **_counts(counted[r["doc_id"]])} for r in run.records]
        if run is not None:
            entry = task_results(
                run.records,
                layers=self.cfg.layers,
                metrics=self.metrics,
                hidden_size=self.lm.hidden_size,
                seed=self.seed,
                load_skipped=load_skipped or {},
                n_resumed=run.n_resumed,
                options=self.family,
                augment=self.augment,
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
        entry["rolling"] = cfg.rolling
        entry["n_torn_store_lines"] = run.n_torn
        entry.update(min_tokens=floor, fixed_tokens=fixed, max_length=max_length)
        entry["warnings"] = []
        report_caveats(entry, label, task_caveats(run.records, entry, metrics=self.metrics,
                                                  hidden_size=self.lm.hidden_size, thresholds=self.caveats))
        # Each record says which document it measured (text head, hash, source, id), so every command's
        # --log_samples rows can be inspected without a join by position (lm-eval's samples carry their doc).
        by_id = {d.doc_id: d for d in documents}
        return entry, [{**r, **sample_fields(by_id[r["doc_id"]])} for r in run.records]

    def _with_windows(self, name: str, documents: Sequence[Document], encoded: list, max_length: int) -> list:
        """`encoded` with each document's rolling windows (every token, lm-eval's tokenisation and prefix token)."""
        if any(d.context is not None for d in documents):
            raise MatrixEvalError(f"task {name!r}: rolling mode scores whole documents, and these have a context "
                                  "(prompt or instruction) before the measured text; drop --rolling")
        tokenizer, prefix = self.lm.tokenizer, prefix_token_id(self.lm.tokenizer)
        by_id = {d.doc_id: d for d in documents}
        out = []
        for item in encoded:  # the documents the token controls kept
            tokens = rolling_token_ids(tokenizer, by_id[item.doc_id].text)
            windows = window_inputs(rolling_windows(tokens, prefix, max_length), max_length)
            out.append(replace(item, windows=tuple(windows)))
        return out

    def _with_views(self, name: str, documents: Sequence[Document], encoded: list,
                    max_length: int) -> tuple[list, str]:
        """`encoded` with each document's --n_views augmented views (seeded by --seed, the document and the view:
        data.augment), each encoded as a plain document at `max_length`; and a digest of every view's text."""
        from tqdm.auto import tqdm

        if any(d.context is not None for d in documents):
            raise MatrixEvalError(f"task {name!r}: the augmentation metrics augment whole documents, and these have "
                                  "a context (prompt or instruction) before the measured text; measure them without "
                                  "lidar, dime and infonce")
        by_id = {d.doc_id: d for d in documents}
        k = self.augment.n_views
        quiet = not self.world.is_main or os.environ.get("TQDM_DISABLE") == "1"
        texts = {item.doc_id: [augment_text(by_id[item.doc_id].text, view_seed(self.seed, item.doc_id, j))
                               for j in range(k)]
                 for item in tqdm(encoded, desc=f"{name}: augmenting", unit="doc", disable=quiet, leave=False)}
        out = []
        for item in encoded:
            views = encode(self.lm.tokenizer, [Document(j, t, {}) for j, t in enumerate(texts[item.doc_id])],
                           max_length)
            out.append(replace(item, views=tuple(views)))
        digest = inputs_digest([(doc_id, views) for doc_id, views in sorted(texts.items())])
        return out, digest

    def config(self) -> dict[str, Any]:
        """The results JSON's "config" section."""
        import torch

        lm = self.lm
        return {
            "model_args": self.model_args_text or f"pretrained={self.args.pretrained}",
            "model_name": lm.name,
            # the local checkpoint files' sizes and mtimes, hashed: `compare` tells a model retrained in place
            # under the same arguments from the one before (None for a Hub ID: its revision is in model_args)
            "model_fingerprint": self.fingerprint,
            "n_params": lm.n_params,
            "n_params_non_embedding": lm.n_params_non_embedding,
            "hidden_size": lm.hidden_size,
            "num_layers": lm.num_hidden_layers,
            "dtype": str(lm.dtype).replace("torch.", ""),
            "device": str(lm.device),
            "layers": self.layers,
            "metrics": self.metrics,
            "convention": self.convention,
            "conventions": conventions(self.metrics, self.family, self.convention, self.augment),
            "max_length": self.max_length,
            "min_tokens": self.min_tokens,
            "fixed_tokens": self.fixed_tokens,
            "caveat_thresholds": asdict(self.caveats),
            "batch_size": self.batch_size,
            "batch_sizes_used": sorted(set(self.sizer.history), reverse=True),
            "seed": self.seed,
            "exclude_bos": self.cfg.exclude_bos,
            "world_size": self.world.size,
            "rolling": self.rolling,
            "rolling_tasks": sorted(self.rolled),
            # What each kind of metric reads, so no one takes a truncated number for a whole-document one.
            "tokens_read": {
                "spectral": f"the first max_length ({self.max_length}) tokens of each document, as the papers",
                "loss": ("every token of each document, in lm-eval's rolling windows of max_length tokens"
                         if self.rolled else f"the first max_length ({self.max_length}) tokens of each document"),
            },
            # the forward pass's intra-op threads (this rank's), and the metric core's, the same everywhere
            "threads": torch.get_num_threads(),
            "metric_threads": METRIC_THREADS,
        }

    def finish(
        self,
        results: Mapping[str, Any],
        *,
        per_sample: Mapping[str, list[dict[str, Any]]] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        prefix: str = "results",
        higher_is_better: Mapping[str, bool] | None = None,
        companions: Callable[[Path, dict[str, Any]], list[Path]] | None = None,
        **sections: Any,
    ) -> dict[str, Any] | None:
        """Assemble the results dict on rank 0 and write `<prefix>_<timestamp>.json` (+ samples) when persisting.

        `higher_is_better` declares columns beyond the run's metrics (e.g. an experiment's accuracy).
        `companions(json_path, out)` writes the files that go with the JSON (tables, plots) and returns them. The
        output set is all or nothing: the JSON is written last, and when any file of the set cannot be written
        the ones already written are removed, so no results file stands without its tables or the reverse.
        """
        barrier(self.world)
        if not self.world.is_main:
            return None
        out = {
            "results": dict(results),
            **sections,
            "config": {**self.config(), **(extra_config or {})},
            "higher_is_better": {**metric_directions(self.metrics),
                                 **(rolling_directions(self.metrics) if self.rolled else {}),
                                 **(higher_is_better or {})},
            "versions": versions(),
            "date": datetime.now().isoformat(timespec="seconds"),
            "total_evaluation_time_seconds": round(time.time() - self.started, 3),
        }
        if self.output_path is not None:
            stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
            path = self.run_dir / f"{prefix}_{stamp}.json"
            files = {self.run_dir / f"samples_{task.replace('/', '__')}_{stamp}.jsonl":
                     "".join(json.dumps(canonical_order(json_safe(r))) + "\n" for r in records)
                     for task, records in (per_sample or {}).items()}
            files[path] = json.dumps(json_safe(out), indent=2, allow_nan=False)  # last: it claims the run is done
            written: list[Path] = []
            try:
                for target, text in files.items():
                    if target == path and companions is not None:
                        written.extend(companions(path, out))
                    write_text_atomic(target, text)
                    written.append(target)
            except BaseException:
                for done in written:
                    done.unlink(missing_ok=True)
                raise
            out["results_path"] = str(path)
        return out
