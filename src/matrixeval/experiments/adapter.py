"""A base model against the same model with a PEFT (e.g. LoRA) adapter, on the same data (Wei et al. 2024
Table 2: matrix entropy and loss before and after supervised fine-tuning).

Either bring a saved PEFT adapter (--adapter PATH), or let --train fine-tune one with LoRA on the task's
texts first: get_peft_model on the base model, a plain seeded AdamW loop (constant learning rate, no warm-up,
no weight decay) minimising the causal-LM loss of each text, tokenised exactly as it is measured (a context,
where a recipe has one, conditions but is not trained on). Defaults (alpaca-lora's): r 8, alpha 16, dropout
0.05, learning rate 3e-4, 3 epochs, batches of 8, target modules = PEFT's choice for the architecture (e.g.
q_proj,v_proj for Llama; all linear layers where PEFT has none). The adapter is keyed (matrixeval.engine.keys) by
the base model's identity, the training texts in order and every training setting (LoRA r/alpha/dropout/target
modules, learning rate, epochs, max_steps, batch size, seed, max_length, device type) and saved whole to
<output_path>/<model>/lora-<key hash>/ with training.json (settings and the loss of every step) and
matrixeval_base.json (the base it was trained on); its path is printed and recorded in the results config
("adapter", "training"). The same command run again reuses that adapter (and says so) instead of training
another. After every epoch the whole training state (adapter weights, AdamW state, RNG states, epoch and step
counters, losses; the learning rate is constant, so there is no scheduler state) is written whole to
lora-<key hash>.state.pt, so a re-run after Ctrl-C or a kill resumes at the last finished epoch and ends with the
same adapter an uninterrupted run gives. An --adapter that matrixeval trained on another base than --model_args
(same shape, so PEFT loads it) gets a one-line warning. The paper measures on its training data, so the same
texts are then measured.

The base model (--model_args) measures every task, is released, then the same model with the adapter (loaded
as model_args + ",adapter=PATH") measures the same documents. Variants "<task>/base" and "<task>/adapter" are
stored, resumable and data-parallel like `run` (training itself runs in one process and refuses torchrun:
train without it, then the same command under torchrun reuses the adapter and shards the measuring). The JSON
is written under the adapted model's name (<output_path>/<model>__adapter<PATH>/adapter_<timestamp>.json); its
config holds the base model's config under "base".

Output columns (table .md/.csv next to the JSON, and the "table" key of the JSON):
  task               the task
  n_samples          samples with a defined value under both models (the smaller count)
  <metric>_base      the metric's data-set value with the base model (e.g. matrix_entropy_base, loss_base)
  <metric>_adapter   the same with the adapter
  <metric>_delta     adapter − base (negative matrix entropy / loss: the adapter compresses / predicts better)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.files import write_bytes_atomic, write_folder_atomic
from ..engine.keys import inputs_digest, key_path, make_key, model_identity, say_reused
from ..engine.runner import fault_pause
from ..errors import Interrupted, MatrixEvalError
from ..models import default_model_path, model_name, parse_model_args
from ..session import check_writable
from . import _common as common

logger = logging.getLogger(__name__)

DESCRIPTION = "base model vs the same model with a PEFT/LoRA adapter: metrics and loss side by side (entropy paper Table 2)"


@dataclass(frozen=True)
class LoraTraining:
    """How --train fine-tunes: LoRA rank/alpha/dropout, AdamW learning rate, epochs over the texts (or at most
    max_steps optimiser steps), texts per step, and the modules to adapt (None: PEFT's default for the
    architecture, "all-linear" where PEFT has none; or a list of module names)."""

    r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    learning_rate: float = 3e-4
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 8
    target_modules: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        for name in ("r", "lora_alpha", "epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise MatrixEvalError(f"LoRA {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise MatrixEvalError(f"max_steps must be a positive integer (or unset), got {self.max_steps!r}")
        if not 0 <= self.lora_dropout < 1:
            raise MatrixEvalError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise MatrixEvalError(f"learning_rate must be positive, got {self.learning_rate!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()  # neither: one line from adapter_experiment, not argparse's usage
    source.add_argument("--adapter", help="directory of a saved PEFT adapter (e.g. LoRA) for --model_args")
    source.add_argument("--train", action="store_true",
                        help="fine-tune a LoRA adapter on the tasks' texts first, save it under the output path, then "
                             "measure base vs tuned")
    d = LoraTraining()
    train = parser.add_argument_group("LoRA training (with --train)")
    train.add_argument("--lora_r", type=int, default=d.r, help=f"LoRA rank (default: {d.r})")
    train.add_argument("--lora_alpha", type=int, default=d.lora_alpha, help=f"LoRA alpha (default: {d.lora_alpha})")
    train.add_argument("--lora_dropout", type=float, default=d.lora_dropout,
                       help=f"LoRA dropout (default: {d.lora_dropout})")
    train.add_argument("--learning_rate", type=float, default=d.learning_rate,
                       help=f"AdamW learning rate, constant (default: {d.learning_rate})")
    train.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the texts (default: {d.epochs})")
    train.add_argument("--max_steps", type=int, default=d.max_steps,
                       help="stop after this many optimiser steps (default: none, every epoch runs)")
    train.add_argument("--train_batch_size", type=int, default=d.batch_size,
                       help=f"texts per optimiser step (default: {d.batch_size})")
    train.add_argument("--target_modules", default=None,
                       help="comma-separated module names to adapt, or all-linear (default: PEFT's choice for the "
                            "architecture, e.g. q_proj,v_proj for Llama; all-linear where PEFT has none)")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    training = None
    if args.train:
        modules = args.target_modules
        if modules and modules != "all-linear":
            modules = tuple(common.parse_list(modules, str, "--target_modules"))
        training = LoraTraining(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                learning_rate=args.learning_rate, epochs=args.epochs, max_steps=args.max_steps,
                                batch_size=args.train_batch_size, target_modules=modules or None)
    out = adapter_experiment(args.model_args, args.tasks, adapter=args.adapter, train=training, metrics=args.metrics,
                             **common.options_from_args(args))
    return common.print_report(out)


def with_adapter(model_args: str | Mapping[str, Any] | None, adapter: str) -> str | dict[str, Any]:
    """`model_args` with ``adapter=PATH`` added; an adapter already in `model_args` is an error."""
    _check_no_adapter(model_args)
    if model_args is None or (isinstance(model_args, str) and not model_args.strip()):
        return f"pretrained={default_model_path()},adapter={adapter}"
    if isinstance(model_args, str):
        return f"{model_args},adapter={adapter}"
    return {**model_args, "adapter": adapter}


def _check_no_adapter(model_args: str | Mapping[str, Any] | None) -> None:
    if parse_model_args(model_args).adapter:
        raise MatrixEvalError("model_args already name an adapter; pass the base model in --model_args and the "
                              "adapter in --adapter (or --train)")


def adapter_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    adapter: str | os.PathLike | None = None,
    train: LoraTraining | bool | None = None,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task with the base model and with the adapter; see the module docstring.

    Give either `adapter` (a saved PEFT adapter) or `train` (True for the defaults, or a LoraTraining) to
    fine-tune one on the tasks' texts first. Returns the results dict (``results["<task>/base"]``,
    ``results["<task>/adapter"]``, ``table``) on rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    if (adapter is None) == (not train):
        raise MatrixEvalError("give either --adapter PEFT_DIR (a saved adapter) or --train (fine-tune one with LoRA)")
    training_record: dict[str, Any] | None = None
    loaded = None
    if train:
        settings = train if isinstance(train, LoraTraining) else LoraTraining()
        _check_no_adapter(model_args)  # before any training
        root = Path(opts.output_path) if opts.output_path is not None else Path(".")
        _check_before_training(model_args, metrics, opts, root)
        loaded = common.load_tasks(tasks, opts)
        documents = [d for t in loaded for d in t.documents]
        key = training_key(model_args, documents, settings, opts)
        adapter = key_path(root / model_name(parse_model_args(model_args)), "lora", key)
        if _is_adapter(adapter):
            if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: said once
                say_reused("LoRA adapter", adapter)
            training_record = json.loads((adapter / "training.json").read_text(encoding="utf-8"))
        else:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise MatrixEvalError("--train trains in one process; run the same command without torchrun first "
                                      "(then this command under torchrun reuses the adapter), or pass --adapter")
            training_record = train_lora(model_args, documents, settings, opts, adapter, key)
            print(f"LoRA adapter saved to {adapter}", file=sys.stderr)
        common.release_memory()
    else:
        check_base(model_args, adapter)
    adapted_args = with_adapter(model_args, str(adapter))
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
            common.release_memory()
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
                         extra_config={"adapter": str(adapter), "tasks": tasks, "base": base_config,
                                       "training": _without_losses(training_record)})


def _without_losses(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The training record for the results config: the per-step losses stay in training.json."""
    return None if record is None else {k: v for k, v in record.items() if k != "losses"}


BASE_FILE = "matrixeval_base.json"  # in a trained adapter's folder: the base model it was trained on
_TRAINER = "adamw-constant-lr-1"  # the training loop's own version: a change to it is a new key


def training_key(model_args: str | Mapping[str, Any] | None, documents: Sequence[Any], settings: LoraTraining,
                 opts: common.Options) -> dict[str, Any]:
    """The key of a trained adapter (``engine.keys``): the base model's identity, the training texts in order and
    every setting that changes a weight, so the same command finds the adapter (or its unfinished training)."""
    import torch

    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    texts = [[d.context, d.text] for d in documents]
    return make_key("adapter", model_identity(parse_model_args(model_args)), inputs_digest(texts),
                    {**asdict(settings), "seed": opts.seed, "max_length": opts.max_length,
                     "device_type": device.split(":")[0], "trainer": _TRAINER})


def _check_before_training(model_args: str | Mapping[str, Any] | None, metrics: str | Sequence[str] | None,
                           opts: common.Options, root: Path) -> None:
    """What the measuring after training would refuse, checked from the config alone before any training: the
    output folder (the adapter goes there) and the store writable, the metrics and layers valid for the model."""
    from ..metric_info import parse_metrics
    from ..models import resolve_layers
    from ..models.loading import inspect_model

    check_writable(root, "output_path")
    if opts.store:
        check_writable(Path(opts.store), "store")
    facts = inspect_model(parse_model_args(model_args))
    parse_metrics(metrics, facts.has_lm_head)
    resolve_layers(opts.layers, facts.num_hidden_layers)


def _is_adapter(folder: Path) -> bool:
    """A finished adapter folder (written whole: it exists only once training ended)."""
    return all((folder / name).is_file() for name in ("adapter_config.json", "training.json", BASE_FILE))


def check_base(model_args: str | Mapping[str, Any] | None, adapter: str | os.PathLike) -> None:
    """One warning line when `adapter` was trained by matrixeval on another base model than `model_args` (a
    model of the same shape loads it without complaint, and the numbers then describe a pairing never trained)."""
    path = Path(adapter) / BASE_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        trained_on = _weights_identity(recorded["identity"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return  # not trained by matrixeval (or unreadable): PEFT's own checks apply when it loads
    base = parse_model_args(model_args)
    if _weights_identity(json.loads(json.dumps(model_identity(base), default=str))) != trained_on:
        print(f"matrixeval: warning: adapter {str(adapter)!r} was trained on base {recorded.get('model_args')!r} "
              f"(as recorded in {BASE_FILE}), not on {base.pretrained!r} as it is now (another model, or its files "
              "changed); its numbers describe a pairing that was never trained", file=sys.stderr)


def _weights_identity(identity: Mapping[str, Any]) -> list[Any]:
    """Which weights an identity names: the model (path or hub id), its revision and its files' fingerprint; not
    the dtype, tokenizer or library versions, which load the same base differently but do not change it."""
    return [identity["model"][0], identity["model"][1], identity["model_files"]]


def train_lora(
    model_args: str | Mapping[str, Any] | None, documents: Sequence[Any], settings: LoraTraining,
    opts: common.Options, out_dir: Path, key: Mapping[str, Any],
) -> dict[str, Any]:
    """Fine-tune a LoRA adapter on `documents` (as the engine tokenises them) and save it whole to `out_dir`; see
    the module docstring. After every epoch the whole training state (adapter weights, optimiser, RNG states,
    counters, losses) is written to ``<out_dir>.state.pt``, and a re-run with the same `key` resumes from it with
    the same arithmetic as an uninterrupted run. Returns what training.json in the folder records."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    from ..engine.batching import collate, encode
    from ..models import load_model
    from ..models.loading import unwrap

    if not documents:
        raise MatrixEvalError("no texts to train the adapter on; check --tasks and --limit")
    started = time.time()
    base_args = parse_model_args(model_args)
    lm = load_model(base_args, opts.device)
    if not lm.has_lm_head:
        raise MatrixEvalError(f"--train fine-tunes with the causal-LM loss, and {lm.name} has no LM head; "
                              "pass a causal LM in --model_args")
    max_length = min(opts.max_length, lm.max_positions) if lm.max_positions else opts.max_length
    # a text needs one token with a token (of context or text) before it to have a next-token loss
    items = [it for it in encode(lm.tokenizer, documents, max_length) if len(it.input_ids) > max(it.span_start, 1)]
    if not items:
        raise MatrixEvalError("no text has a token with one before it for the next-token loss; use longer texts")
    model_type = getattr(unwrap(lm.model).config, "model_type", None)
    target = settings.target_modules
    if target is None and model_type not in PEFT_DEFAULTS:
        target = "all-linear"
    config = LoraConfig(task_type="CAUSAL_LM", r=settings.r, lora_alpha=settings.lora_alpha,
                        lora_dropout=settings.lora_dropout,
                        target_modules=list(target) if isinstance(target, tuple) else target)
    devices = list(range(torch.cuda.device_count())) if lm.device.type == "cuda" else []
    state_path = out_dir.with_name(out_dir.name + ".state.pt")
    losses: list[float] = []
    resumed_at = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(opts.seed)  # the LoRA A init, dropout and the order of texts
        try:
            with warnings.catch_warnings():  # peft asks transformers a deprecated question; the user can do nothing
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                model = get_peft_model(lm.model, config)
        except ValueError as err:
            raise MatrixEvalError(f"LoRA cannot adapt {lm.name} with target_modules={target!r} ({err}); "
                                  "name the modules with --target_modules") from None
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        # A constant learning rate: no scheduler, so no scheduler state to keep.
        optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
        state = _load_state(state_path, key)
        if state is not None:
            set_peft_model_state_dict(model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng_cpu"])
            if devices:
                torch.cuda.set_rng_state_all(state["rng_cuda"])
            losses = list(state["losses"])
            resumed_at = len(losses)
            print(f"LoRA training: resuming at epoch {state['epoch'] + 1} (step {resumed_at + 1}) from "
                  f"{str(state_path)!r}", file=sys.stderr)
        epoch = state["epoch"] if state is not None else 0
        steps_per_epoch = math.ceil(len(items) / settings.batch_size)
        total = settings.epochs * steps_per_epoch
        total = min(total, settings.max_steps) if settings.max_steps else total
        pad = lm.tokenizer.pad_token_id
        try:
            while len(losses) < total:  # epoch after epoch, each in a fresh seeded order
                order = torch.randperm(len(items)).tolist()
                for start in range(0, len(order), settings.batch_size):
                    if len(losses) >= total:
                        break
                    batch = [items[i] for i in order[start:start + settings.batch_size]]
                    ids, mask, span = collate(batch, pad, lm.device)
                    labels = ids.masked_fill(~span, -100)  # context and padding are not trained on
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                    if not torch.isfinite(loss):
                        raise MatrixEvalError(f"LoRA training loss became {loss.item()} at step {len(losses) + 1}; "
                                              "lower --learning_rate, or load the model in bfloat16/float32")
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(loss.item())
                    fault_pause()
                epoch += 1
                if len(losses) < total:  # the last epoch's state is the adapter folder itself
                    _save_state(state_path, {
                        "key": json.dumps(key, sort_keys=True, default=str), "epoch": epoch, "losses": losses,
                        "adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
                        "rng_cpu": torch.get_rng_state(), "rng_cuda": torch.cuda.get_rng_state_all() if devices else [],
                    })
        except KeyboardInterrupt:
            done = (f"the state of its last finished epoch is in {str(state_path)!r}" if state_path.is_file()
                    else "no epoch had finished, so nothing is saved")
            raise Interrupted(f"LoRA training stopped at step {len(losses)} of {total}; {done}; re-run the same "
                              "command to resume") from None
    record = {
        "settings": {**asdict(settings), "target_modules": sorted(model.peft_config["default"].target_modules)},
        "seed": opts.seed, "n_texts": len(items), "max_length": max_length, "n_steps": len(losses),
        "n_trainable_params": sum(p.numel() for p in params), "loss_first_step": losses[0],
        "loss_last_step": losses[-1], "losses": losses, "resumed_at_step": resumed_at,
        "seconds": round(time.time() - started, 3), "adapter": str(out_dir),
    }
    base = {"model_name": lm.name, "model_args": model_args if isinstance(model_args, str) else base_args.pretrained,
            "identity": model_identity(base_args)}

    def fill(folder: Path) -> None:  # the folder is renamed into place whole: its files need no writer of their own
        _save_pretrained(model, folder)
        (folder / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        (folder / BASE_FILE).write_text(json.dumps(base, indent=2, default=str), encoding="utf-8")

    write_folder_atomic(out_dir, fill)
    state_path.unlink(missing_ok=True)  # the adapter is whole: its unfinished state is no longer needed
    logger.info("LoRA: %d steps on %d texts, loss %.4f -> %.4f", len(losses), len(items), losses[0], losses[-1])
    return record



def _save_pretrained(model: Any, folder: Path) -> None:
    """PEFT's save_pretrained; safetensors reports a failed write (a full disk) as its own error type, which
    becomes the OSError it wraps, so the writer names the folder in one line."""
    import re

    from safetensors import SafetensorError

    try:
        model.save_pretrained(folder)
    except SafetensorError as err:
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1]))) from None


def _save_state(path: Path, state: Mapping[str, Any]) -> None:
    """The whole training state as one file, written whole (a kill during the write leaves the previous one)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _load_state(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The saved state of this key's unfinished training, or None; loaded with ``weights_only`` (tensors and
    plain containers only: a state file runs no code)."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable state means: start over, and say so
        print(f"matrixeval: warning: cannot read the LoRA training state {str(path)!r} ({type(err).__name__}); "
              "training starts over", file=sys.stderr)
        return None
    if state.get("key") != json.dumps(key, sort_keys=True, default=str):
        return None
    return state
