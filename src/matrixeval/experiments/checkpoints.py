"""Metrics across training checkpoints: watch a model learn to compress (Diff-eRank's and matrix entropy's
training-dynamics view, on any checkpoints).

Checkpoints are hub revisions (``--model_args pretrained=ID,revisions=step1000,step2000,...``, Pythia style; a
local folder has no revisions and is refused) or local folders (``--checkpoints 'out/checkpoint-*'``, HF Trainer
style; every folder must have the same architecture). Each has a step: ``global_step`` of its
``trainer_state.json`` when there is one (it must be a non-negative integer), else the last number in its name
(``step1000``, ``checkpoint-500``); they are measured in order of step. ``--include_init`` adds the random
initialisation: the same architecture randomly initialised under --seed, saved once as a model folder keyed by
architecture + config + tokenizer + dtype + seed (``random_init_seed<S>-<key>`` under --store, else next to the
results), so it is stored, resumed and reused like any checkpoint, and another architecture gets its own.

The init is plotted and tabled at step 0 with checkpoint name ``init`` and results key ``<task>/init``; a real
step-0 checkpoint (``checkpoint-0``) stays ``<task>/step0``, so both are kept, side by side, never merged.

Every checkpoint runs through the same Session as `matrixeval run`: its samples are stored (under its own
``<output_path>/<checkpoint>/store``, the store a plain `run` of that checkpoint also uses), so a killed sweep
resumes at the checkpoint and the sample where it stopped, and torchrun shards the samples. Progress bars and
resume lines name the checkpoint (``heldout @ checkpoint-500``). One checkpoint is in memory at a time (with its
Diff-eRank reference).

Diff-eRank is relative to a baseline: by default the same seeded random init of the architecture (the one
--include_init measures, whose Diff-eRank is therefore 0); ``--baseline CHECKPOINT`` (a name, a step of the
sweep or a model folder) makes it relative to that checkpoint instead.

A checkpoint whose hidden states are NaN/Inf (e.g. NaN weights) does not stop the sweep: its rows keep no value
and count the samples in ``n_nonfinite``, and one line names the checkpoint and the cause (NaN/Inf weights, or
activations that overflowed although the weights are finite).

Output columns (table .md/.csv next to <output_path>/<model>/checkpoints_<timestamp>.json, "table" in the JSON):
  step            the training step (0 also for the random initialisation)
  checkpoint      the revision or folder name (``init`` for the random initialisation)
  task            the task
  layer           the hidden-state layer (HF numbering, 0 = embeddings)
  n_samples       samples with a defined value
  n_nonfinite     samples left out because their hidden states were NaN/Inf
  <metric>        every metric's data-set value at this layer (default matrix_entropy, effective_rank,
                  nuclear_norm, diff_erank and, with an LM head, loss and perplexity, which have no layer and
                  repeat on every layer's row), with <metric>_stderr
The JSON's config names the swept model (``model_name``, ``model_args``), not the random init, so `compare`
labels the file with it. Plot: <stem>.png, one panel per metric against step (symmetric-log x when the steps span
two decades or more, so step 0 still shows), one line per task (per layer with several --layers), the init as a
separate hollow diamond, n documents per point, shaded bands labelled as 95 % bootstrap intervals.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MatrixEvalError
from ..metric_info import LM_HEAD, NoLMHead
from ..models import model_name, parse_model_args
from . import _common as common

DESCRIPTION = "metrics across training checkpoints (hub revisions or checkpoint folders), step 0 = random init"
SPECTRAL_DEFAULT = ("matrix_entropy", "effective_rank", "nuclear_norm", "diff_erank")
# config.json fields that fix the shapes (top level, or in text_config): checkpoints of one sweep must agree on them.
ARCHITECTURE_FIELDS = ("model_type", "architectures", "hidden_size", "n_embd", "d_model", "num_hidden_layers",
                       "n_layer", "num_layers", "num_attention_heads", "n_head", "num_key_value_heads",
                       "intermediate_size", "n_inner", "vocab_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", default=None, metavar="DIR_GLOB",
                        help="checkpoint folders, e.g. 'out/checkpoint-*' (quote it); alternatively hub revisions "
                             "in --model_args pretrained=HUB_ID,revisions=step1000,step2000,... (a Hub ID: a local "
                             "folder has no revisions)")
    parser.add_argument("--include_init", action="store_true",
                        help="also measure the random initialisation (seeded by --seed) at step 0, named 'init' "
                             "(beside a real step-0 checkpoint, if any)")
    parser.add_argument("--baseline", default=None, metavar="CHECKPOINT",
                        help="Diff-eRank's reference: 'init' (default: the seeded random init of the architecture), "
                             "a checkpoint of the sweep by name or step, or a model folder")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated, any of run's (`matrixeval ls`): e.g. matrix_entropy,effective_rank,"
                             "nuclear_norm,rankme,alpha_req,prompt_entropy,curvature,dataset_entropy,lidar,dime,"
                             f"infonce,loss,perplexity,diff_erank (default: {','.join(SPECTRAL_DEFAULT)}, plus "
                             "loss,perplexity when the model has an LM head); --convention and the other definition "
                             "flags apply to every checkpoint")
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = checkpoints_experiment(args.model_args, args.tasks, checkpoints=args.checkpoints,
                                 include_init=args.include_init, metrics=args.metrics, baseline=args.baseline,
                                 **common.options_from_args(args))
    return common.print_report(out)


@dataclass(frozen=True)
class Checkpoint:
    """One point of the sweep: its step, its name, and the model_args that load it."""

    step: int
    name: str
    model_args: str | dict[str, Any]
    is_init: bool = False

    @property
    def key(self) -> str:
        """Its part of the results keys: ``step<N>``, or ``init`` for the random initialisation."""
        return "init" if self.is_init else f"step{self.step}"


def split_revisions(model_args: str | Mapping[str, Any] | None) -> tuple[str | dict[str, Any] | None, list[str]]:
    """``"pretrained=ID,revisions=step1,step2,dtype=bf16"`` → (``"pretrained=ID,dtype=bf16"``, ["step1", "step2"]):
    the items after ``revisions=`` that are not key=value are further revisions. A mapping may give a list."""
    if model_args is None:
        return None, []
    if not isinstance(model_args, str):
        rest = dict(model_args)
        revs = rest.pop("revisions", None) or []
        revs = [r.strip() for r in revs.split(",")] if isinstance(revs, str) else [str(r) for r in revs]
        return rest, [r for r in revs if r]
    kept, revisions, in_revisions = [], [], False
    for part in (p.strip() for p in model_args.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep and key.strip() == "revisions":
            in_revisions = True
            revisions.append(value.strip())
        elif not sep and in_revisions:
            revisions.append(part)
        else:
            in_revisions = False
            kept.append(part)
    return ",".join(kept), [r for r in revisions if r]


def _step_from_name(name: str) -> int | None:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def _read_json(path: Path, what: str) -> Any:
    """A small JSON file of a checkpoint folder, or one line naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MatrixEvalError(f"{what} {str(path)!r} is not UTF-8 text; re-save it (it should be JSON)") from None
    except json.JSONDecodeError as err:
        raise MatrixEvalError(f"{what} {str(path)!r} is not valid JSON ({err.msg}, line {err.lineno}); "
                              "repair or remove it") from None
    except OSError as err:
        raise MatrixEvalError(f"cannot read {what} {str(path)!r} ({err.strerror})") from None


def _folder_step(folder: Path) -> int | None:
    """``global_step`` of the folder's trainer_state.json (which must then be a non-negative integer), else the
    last number of its name."""
    state_file = folder / "trainer_state.json"
    if state_file.is_file():
        state = _read_json(state_file, "trainer_state.json")
        if not isinstance(state, dict):
            raise MatrixEvalError(f"trainer_state.json {str(state_file)!r} is not a JSON object; repair or remove it")
        if "global_step" in state:
            step = state["global_step"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise MatrixEvalError(f"trainer_state.json {str(state_file)!r} has global_step {step!r}, not a "
                                      "non-negative integer; repair it (or remove it to use the folder's name)")
            return step
    return _step_from_name(folder.name)


def _architecture(folder: Path) -> dict[str, Any] | None:
    """The shape-defining fields of a folder's config.json (None when it has none: loading then says why)."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    config = _read_json(path, "config.json")
    if not isinstance(config, dict):
        raise MatrixEvalError(f"config.json {str(path)!r} is not a JSON object; repair or re-save the checkpoint")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return {k: text.get(k, config.get(k)) for k in ARCHITECTURE_FIELDS if k in config or k in text}


def _check_one_architecture(folders: Sequence[Path]) -> None:
    """Checkpoints of one model only: mixed depths or widths on one curve would read as training."""
    first, first_arch = None, None
    for folder in folders:
        arch = _architecture(folder)
        if arch is None:
            continue
        if first_arch is None:
            first, first_arch = folder, arch
            continue
        diff = next((k for k in ARCHITECTURE_FIELDS if arch.get(k) != first_arch.get(k)), None)
        if diff is not None:
            raise MatrixEvalError(
                f"checkpoints {first.name!r} and {folder.name!r} differ in architecture ({diff} "
                f"{first_arch.get(diff)!r} vs {arch.get(diff)!r}); one sweep measures one model's checkpoints: "
                "narrow the --checkpoints glob")


def _revisions_need_hub_id(base: str | dict[str, Any]) -> None:
    pretrained = parse_model_args(base).pretrained
    path = os.path.expanduser(pretrained)
    if os.path.isdir(path) or pretrained.startswith(("/", ".", "~")) or pretrained.count("/") > 1:
        raise MatrixEvalError(
            f"revisions= needs a Hub ID, and {pretrained!r} is a local path, where every revision would load the "
            "same files; for checkpoint folders use --checkpoints 'DIR/checkpoint-*' (a local git repository is "
            "not supported: check out each revision into its own folder)")


def resolve_checkpoints(model_args: str | Mapping[str, Any] | None, checkpoints: str | None) -> list[Checkpoint]:
    """The sweep's checkpoints, sorted by step; exactly one of hub revisions and a folder glob must be given."""
    base, revisions = split_revisions(model_args)
    if bool(revisions) == bool(checkpoints):
        raise MatrixEvalError("give the checkpoints either as --checkpoints 'DIR/checkpoint-*' or as hub revisions "
                              "in --model_args pretrained=ID,revisions=step1000,step2000 (one of the two)")
    points = []
    if revisions:
        if "revision=" in (base if isinstance(base, str) else ",".join(f"{k}=" for k in base)):
            raise MatrixEvalError("model_args set both revision= and revisions=; keep revisions=R1,R2,...")
        _revisions_need_hub_id(base)
        for rev in revisions:
            step = _step_from_name(rev)
            if step is None:
                raise MatrixEvalError(f"revision {rev!r} has no step number in its name; name revisions like step1000")
            args = f"{base},revision={rev}" if isinstance(base, str) else {**base, "revision": rev}
            points.append(Checkpoint(step, rev, args))
    else:
        folders = sorted(Path(p) for p in glob.glob(checkpoints) if Path(p).is_dir())
        if not folders:
            raise MatrixEvalError(f"--checkpoints {checkpoints!r} matches no folder; give a glob such as "
                                  "'out/checkpoint-*' (quoted, so the shell leaves it to matrixeval)")
        extra = _extra_args(model_args)
        for folder in folders:
            step = _folder_step(folder)
            if step is None:
                raise MatrixEvalError(f"checkpoint {folder} has no trainer_state.json global_step and no number in "
                                      "its name; name it like checkpoint-500")
            points.append(Checkpoint(step, folder.name, f"pretrained={folder}{extra}"))
        _check_one_architecture(folders)
    points.sort(key=lambda p: p.step)
    steps = [p.step for p in points]
    duplicates = sorted({s for s in steps if steps.count(s) > 1})
    if duplicates:
        names = [p.name for p in points if p.step == duplicates[0]]
        raise MatrixEvalError(f"checkpoints {names} share step {duplicates[0]}; give one checkpoint per step")
    return points


def resolve_baseline(baseline: str | None, points: Sequence[Checkpoint], model_args: str | Mapping[str, Any] | None,
                     checkpoints: str | None) -> Checkpoint | None:
    """Diff-eRank's reference from --baseline: None for the seeded init (``None`` or ``"init"``), else a checkpoint
    of the sweep (by name, step or folder) or another model folder of the same architecture. Needs no weights."""
    if baseline is None or baseline.strip() == "init":
        return None
    text = baseline.strip()
    for p in points:
        if text == p.name or (text.isdigit() and int(text) == p.step):
            return p
    folder = Path(os.path.expanduser(text))
    if folder.is_dir():
        for p in points:
            if checkpoints and Path(parse_model_args(p.model_args).pretrained).resolve() == folder.resolve():
                return p
        if checkpoints:
            sweep_arch = next((a for a in (_architecture(Path(parse_model_args(p.model_args).pretrained))
                                           for p in points) if a is not None), None)
            arch = _architecture(folder)
            if sweep_arch is not None and arch is not None and arch != sweep_arch:
                diff = next(k for k in ARCHITECTURE_FIELDS if arch.get(k) != sweep_arch.get(k))
                raise MatrixEvalError(f"--baseline {text!r} is another architecture than the checkpoints ({diff} "
                                      f"{arch.get(diff)!r} vs {sweep_arch.get(diff)!r}); give one of this model")
        extra = _extra_args(model_args) if checkpoints else ""
        return Checkpoint(_folder_step(folder) or 0, folder.name, f"pretrained={folder}{extra}")
    names = ", ".join(p.name for p in points)
    raise MatrixEvalError(f"--baseline {text!r} is neither 'init', a checkpoint of this sweep ({names}) or its step, "
                          "nor a model folder")


def _extra_args(model_args: str | Mapping[str, Any] | None) -> str:
    """With --checkpoints, --model_args may still set dtype etc. (not pretrained)."""
    if not model_args:
        return ""
    items = model_args if isinstance(model_args, str) else ",".join(f"{k}={v}" for k, v in model_args.items())
    parts = [p.strip() for p in items.split(",") if p.strip()]
    if any(p.split("=")[0].strip() == "pretrained" for p in parts):
        raise MatrixEvalError("--checkpoints names the models; drop pretrained= from --model_args (dtype etc. may stay)")
    return "".join(f",{p}" for p in parts)


def _family_name(model_args, checkpoints: str | None) -> str:
    """Where the sweep's JSON goes: the hub model's name, or the checkpoints' parent folder."""
    if checkpoints:
        return model_name(parse_model_args({"pretrained": str(Path(checkpoints).parent)}))
    base, _ = split_revisions(model_args)
    return model_name(parse_model_args(base))


def _swept_model_args(model_args, checkpoints: str | None) -> str:
    """The results config's model_args: the sweep as the user gave it, never the random init's folder."""
    if checkpoints:
        return f"pretrained={Path(checkpoints).parent}{_extra_args(model_args)}"
    if isinstance(model_args, str):
        return model_args
    return ",".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                    for k, v in dict(model_args).items())


def _check_metrics_for_baseline(metrics, baseline: Checkpoint | None) -> None:
    if baseline is None or metrics is None:
        return
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    if "diff_erank" not in names:
        raise MatrixEvalError("--baseline sets Diff-eRank's reference, and --metrics has no diff_erank; add it or "
                              "drop --baseline")


def checkpoints_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    checkpoints: str | None = None,
    include_init: bool = False,
    metrics: str | Sequence[str] | None = None,
    baseline: str | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure every checkpoint (and, with `include_init`, the seeded random init at step 0) on every task;
    see the module docstring. Returns the results dict (``results["<task>/step<N>"]`` and ``<task>/init``,
    ``table``, ``checkpoints``) on rank 0 and None elsewhere."""
    from ..engine.dist import broadcast_from_main

    opts = common.options(common_options)
    points = resolve_checkpoints(model_args, checkpoints)
    reference_point = resolve_baseline(baseline, points, model_args, checkpoints)
    _check_metrics_for_baseline(metrics, reference_point)
    family = _family_name(model_args, checkpoints)
    loaded = common.load_tasks(tasks, opts)  # data first: a bad file fails before a model loads
    wanted = metrics
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    scratch = None
    session = None
    reference = None
    todo = list(points)
    init: Checkpoint | None = None
    while todo:
        point = todo.pop(0)
        if session is not None:
            session = None  # one model in memory at a time
            common.release_memory()
        session, wanted = _open(point, wanted, opts)
        if include_init and init is None:
            init_dir, scratch = _write_init(session, opts, family)
            init = Checkpoint(0, "init", _init_args(point.model_args, init_dir), is_init=True)
            todo.append(init)
        if reference_point is not None and session.reference is not None:
            reference = reference or _load_reference(reference_point, session)
            session.reference, session.reference_key = reference
        diagnosis = None
        point_note = None
        for task in loaded:
            label = f"{task.name} @ {point.name}"
            entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source,
                                         require_spectral=False, label=label)
            error = _zero_valid_error(label, entry, session) if entry is not None else None
            error = broadcast_from_main(error, session.world)  # every rank stops, none waits at a collective
            if error:
                raise MatrixEvalError(error)
            if entry is None:
                continue
            n_bad = max(entry["skipped_by_status"].get("nonfinite", 0), entry.get("loss_n_nonfinite") or 0)
            if n_bad:
                diagnosis = diagnosis or _nonfinite_cause(session)
                entry["nonfinite_cause"] = diagnosis
                point_note = (f"checkpoint {point.name!r}, task {task.name}: {n_bad} of {len(task.documents)} samples "
                              f"had NaN/Inf hidden states or loss in a {_dtype(session)} model: {diagnosis}; its rows "
                              "count them in n_nonfinite and keep no value for them, and the sweep goes on")
                print(f"matrixeval: warning: {point_note}", file=sys.stderr)
            key = f"{task.name}/{point.key}"
            results[key], per_sample[key] = entry, records
            rows.extend(_rows(point, task.name, entry, session))
        info = {"step": point.step, "checkpoint": point.name, "model_name": session.lm.name}
        if point_note:
            info["nonfinite"] = point_note
        sweep.append(info)
    if session.world.is_main and not any(r["n_samples"] for r in rows):
        error = "every checkpoint's samples had NaN/Inf hidden states; see the lines above for the causes"
    else:
        error = None
    error = broadcast_from_main(error, session.world)
    if error:
        raise MatrixEvalError(error)
    order = {"init": 0}
    rows.sort(key=lambda r: (r["step"], order.get(r["checkpoint"], 1), r["task"], r["layer"]))
    sweep.sort(key=lambda s: (s["step"], order.get(s["checkpoint"], 1)))
    if opts.output_path is not None:
        session.run_dir = Path(opts.output_path) / family  # the sweep's files go under the family, not its last member
    title = family.split("__")[-1]
    reference_name = reference_point.name if reference_point is not None else f"init (seed {opts.seed})"
    plots = {"": _plotter(results, rows, session, title, reference_name, sweep)}
    out = common.finish(session, "checkpoints", results, rows, opts=opts, per_sample=per_sample,
                        extra_config={"checkpoints": checkpoints, "include_init": include_init, "tasks": tasks,
                                      "model_name": family, "model_args": _swept_model_args(model_args, checkpoints),
                                      "diff_erank_baseline": reference_name},
                        plots=plots, sweep=sweep)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _open(point: Checkpoint, wanted, opts: common.Options):
    """The checkpoint's Session; with no --metrics, the default set (loss/perplexity only with an LM head)."""
    if wanted is not None:
        return common.open_session(point.model_args, wanted, opts), wanted
    try:
        return common.open_session(point.model_args, [*SPECTRAL_DEFAULT, *LM_HEAD], opts), [*SPECTRAL_DEFAULT, *LM_HEAD]
    except NoLMHead:
        return common.open_session(point.model_args, list(SPECTRAL_DEFAULT), opts), list(SPECTRAL_DEFAULT)


def _dtype(session) -> str:
    return str(session.lm.dtype).replace("torch.", "")


def _zero_valid_error(label: str, entry: Mapping[str, Any], session) -> str | None:
    """A checkpoint with no valid sample for another reason than NaN/Inf stops the sweep, as `run` would."""
    from ..results import zero_valid_hint

    if entry["n_samples"] or entry["skipped_by_status"].get("nonfinite"):
        return None
    return (f"task {label!r} has zero valid samples (skipped: {entry['skipped_by_status']}); "
            + zero_valid_hint(entry["skipped_by_status"], _dtype(session)))


def _nonfinite_cause(session) -> str:
    """Why a checkpoint's hidden states are NaN/Inf: its weights (named), or an overflow of finite weights."""
    import torch

    bad = [name for name, p in session.lm.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return f"its weights hold NaN/Inf ({len(bad)} tensors, e.g. {bad[0]})"
    if _dtype(session) == "float16":
        return "its weights are finite, so the activations overflowed float16: load it with dtype=bfloat16 or float32"
    return ("its weights are finite, so the forward pass itself produced NaN/Inf (this is not a float16 overflow): "
            "check the checkpoint's training state")


def _load_reference(point: Checkpoint, session) -> tuple[Any, Any]:
    """The --baseline checkpoint loaded as Diff-eRank's reference, and its part of the store's key."""
    from ..engine.keys import model_identity
    from ..models import load_model

    args = parse_model_args(point.model_args)
    lm = load_model(args, str(session.lm.device))
    if (lm.hidden_size, lm.num_hidden_layers) != (session.lm.hidden_size, session.lm.num_hidden_layers):
        raise MatrixEvalError(f"--baseline {point.name!r} has hidden size {lm.hidden_size} and {lm.num_hidden_layers} "
                              f"layers, the checkpoints {session.lm.hidden_size} and {session.lm.num_hidden_layers}; "
                              "give a checkpoint of this model")
    return lm, {"baseline": model_identity(args)}


def _tokenizer_items(tokenizer) -> list[Any]:
    """What makes a tokenizer: its full serialisation when fast, else its vocabulary and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return [type(tokenizer).__name__, body, sorted(map(str, tokenizer.all_special_tokens))]


def _write_init(session, opts: common.Options, family: str) -> tuple[Path, Path | None]:
    """Save the seeded random init of the session's architecture as a model folder (rank 0 writes, every rank
    waits), so it is measured, stored and resumed like a checkpoint. The folder is keyed by the architecture's
    config, the tokenizer, dtype and seed (`engine.keys`): a shared --store gives every architecture its own init,
    and the same one is reused. Returns (folder, scratch to delete)."""
    from ..engine.dist import barrier, broadcast_from_main
    from ..engine.files import write_folder_atomic, write_text_atomic
    from ..engine.keys import config_identity, inputs_digest, key_path, make_key, say_reused
    from ..models import random_init_like
    from ..models.loading import unwrap

    scratch = None
    if opts.store is not None:
        root = Path(opts.store)
    elif opts.output_path is not None:
        root = Path(opts.output_path) / family
    else:
        scratch = Path(broadcast_from_main(tempfile.mkdtemp(prefix="matrixeval-init-")
                                           if session.world.is_main else None, session.world))
        root = scratch
    config = unwrap(session.lm.model).config
    key = make_key("random_init", config_identity(config), inputs_digest(_tokenizer_items(session.lm.tokenizer)),
                   {"seed": session.seed, "dtype": _dtype(session)})
    folder = key_path(root, f"random_init_seed{session.seed}", key)
    if session.world.is_main:
        if (folder / "config.json").is_file():
            say_reused("random init", folder, f"{config.model_type}, seed {session.seed}")
        else:
            reference = session.reference or random_init_like(session.lm, session.seed)

            def fill(tmp: Path) -> None:
                reference.model.save_pretrained(tmp)
                session.lm.tokenizer.save_pretrained(tmp)
                write_text_atomic(tmp / "matrixeval_key.json", json.dumps(key, indent=2, default=str))

            try:
                write_folder_atomic(folder, fill)  # a killed write never looks finished
            except MatrixEvalError:
                if not (folder / "config.json").is_file():  # another sweep on this store wrote it first: use it
                    raise
    barrier(session.world)
    return folder, scratch


def _init_args(model_args: str | dict[str, Any], folder: Path) -> str:
    """The checkpoint's model_args with pretrained= the init folder and no revision."""
    items = model_args if isinstance(model_args, str) else ",".join(f"{k}={v}" for k, v in model_args.items())
    kept = [p for p in items.split(",") if p.split("=")[0].strip() not in ("pretrained", "revision", "adapter")]
    return ",".join([f"pretrained={folder}", *kept])


def _rows(point: Checkpoint, task: str, entry: Mapping[str, Any], session) -> list[dict[str, Any]]:
    rows = []
    for layer, values in entry["by_layer"].items():
        row = {"step": point.step, "checkpoint": point.name, "task": task, "layer": int(layer),
               "n_samples": values["n_samples"],
               "n_nonfinite": max(values.get("skipped_by_status", {}).get("nonfinite", 0),
                                  entry.get("loss_n_nonfinite") or 0)}
        for m in session.metrics:
            source = entry if m in LM_HEAD else values
            if m in source:
                row[m], row[f"{m}_stderr"] = source[m], source.get(f"{m}_stderr")
        rows.append(row)
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plotter(results: Mapping[str, Any], rows: list[dict[str, Any]], session, title: str, reference: str,
             sweep: Sequence[Mapping[str, Any]]):
    """A drawer for `finish`: one panel per metric against step, one line per task (or layer); the init as a
    hollow diamond of the line's colour beside a real step-0 point; n documents per point; bands labelled."""

    def draw(path: Path) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        from ..engine.files import atomic_savefig
        from ..report.plots import metric_axis_label, step_scale
        from ..results import higher_is_better

        tasks = list(dict.fromkeys(r["task"] for r in rows))
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        panels: dict[str, dict[str, list]] = {}
        for r in rows:
            if len(layers) > 1 and len(tasks) > 1:
                label = f"{r['task']} / layer {r['layer']}"
            else:
                label = f"layer {r['layer']}" if len(layers) > 1 else r["task"]
            entry = results[f"{r['task']}/{'init' if r['checkpoint'] == 'init' else 'step' + str(r['step'])}"]
            for m in session.metrics:
                if m in LM_HEAD and r["layer"] != layers[0]:
                    continue  # loss has no layer: one line per task
                if not _finite(r.get(m)):
                    continue
                source = entry if m in LM_HEAD else entry["by_layer"][str(r["layer"])]
                lo, hi = source.get(f"{m}_ci95") or (None, None)
                n = source.get("loss_n_samples", r["n_samples"]) if m in LM_HEAD else r["n_samples"]
                line = r["task"] if m in LM_HEAD else label
                panels.setdefault(m, {}).setdefault(line, []).append(
                    (r["step"], r[m], lo, hi, n, r["checkpoint"] == "init"))
        if not panels:
            raise MatrixEvalError("no finite value to plot")
        directions = higher_is_better(session.metrics)
        labels = list(dict.fromkeys(line for lines in panels.values() for line in lines))
        colors = {line: f"C{i % 10}" for i, line in enumerate(labels)}
        bad_steps = [(s["step"], s["checkpoint"]) for s in sweep if s.get("nonfinite")]
        scale, linthresh = step_scale([r["step"] for r in rows])
        count = len(panels)
        cols = 1 if count == 1 else 2
        nrows = math.ceil(count / cols)
        fig = Figure(figsize=(5.6 * cols, 3.5 * nrows + 1.3), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, cols, squeeze=False).ravel()
        ns: set[int] = set()
        has_band = has_init = False
        for ax, (metric, lines) in zip(axes, panels.items()):
            ax.grid(True, which="both", alpha=0.3)
            for line, points in lines.items():
                trained = sorted((p for p in points if not p[5]), key=lambda p: p[0])
                inits = [p for p in points if p[5]]
                if trained:
                    ax.plot([p[0] for p in trained], [p[1] for p in trained], marker="o", markersize=4,
                            color=colors[line], label=line)
                    band = [p for p in trained if _finite(p[2]) and _finite(p[3])]
                    if len(band) >= 2:
                        ax.fill_between([p[0] for p in band], [p[2] for p in band], [p[3] for p in band],
                                        color=colors[line], alpha=0.2, linewidth=0)
                        has_band = True
                for p in inits:
                    has_init = True
                    ax.plot([p[0]], [p[1]], marker="D", markersize=8, markerfacecolor="none",
                            markeredgewidth=1.5, color=colors[line], linestyle="none")
                    if _finite(p[2]) and _finite(p[3]):
                        ax.errorbar([p[0]], [p[1]], yerr=[[p[1] - p[2]], [p[3] - p[1]]], color=colors[line],
                                    capsize=3, linewidth=1)
                    ax.annotate("init", (p[0], p[1]), textcoords="offset points", xytext=(6, -10), fontsize=7,
                                color=colors[line])
                ns.update(p[4] for p in points)
                if len({p[4] for p in points}) > 1:  # n differs between points: write it at each
                    for p in points:
                        ax.annotate(f"n={p[4]}", (p[0], p[1]), textcoords="offset points", xytext=(4, 5),
                                    fontsize=6, color=colors[line])
            for step, name in bad_steps:
                ax.axvline(step, color="red", linestyle=":", linewidth=1)
            if scale == "symlog":
                ax.set_xscale("symlog", linthresh=linthresh or 1.0)
            label_text = metric_axis_label(metric, directions.get(metric))
            if metric == "diff_erank":
                label_text += f"\nrelative to {reference}"
            ax.set_ylabel(label_text, fontsize=8)
        for i, ax in enumerate(axes):
            if i >= count:
                ax.set_visible(False)
            elif i >= count - cols:
                ax.set_xlabel("training step" + (" (symmetric log)" if scale == "symlog" else ""))
        handles = {}
        for ax in axes[:count]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        if has_init:
            handles[f"init: random weights, seed {session.seed} (step 0); its bar: 95 % bootstrap interval"] = Line2D(
                [], [], marker="D", markerfacecolor="none", color="gray", linestyle="none")
        if has_band:
            handles["shaded: 95 % bootstrap interval of the mean over documents"] = Patch(color="gray", alpha=0.25)
        if bad_steps:
            handles["dotted red: NaN/Inf hidden states (" + ", ".join(n for _, n in bad_steps) + ")"] = Line2D(
                [], [], color="red", linestyle=":")
        n_text = (f"n = {min(ns)} documents per point" if len(ns) == 1
                  else f"n = {min(ns)}-{max(ns)} documents per point (written at each point)")
        fig.suptitle(f"{title}: metrics across checkpoints ({n_text})", fontsize=11)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2, fontsize=8)
        atomic_savefig(fig, path, dpi=150)

    return draw
