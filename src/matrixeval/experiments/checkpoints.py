"""Metrics across training checkpoints: watch a model learn to compress (Diff-eRank's and matrix entropy's
training-dynamics view, on any checkpoints).

Checkpoints are hub revisions (``--model_args pretrained=ID,revisions=step1000,step2000,...``, Pythia style) or
local folders (``--checkpoints 'out/checkpoint-*'``, HF Trainer style). Each has a step: ``global_step`` of
its ``trainer_state.json`` when there is one, else the last number in its name (``step1000``,
``checkpoint-500``); they are measured in order of step. ``--include_init`` adds step 0: the same
architecture randomly initialised under --seed (written once as a model folder next to the results, so
it is stored and resumed like any checkpoint).

Every checkpoint runs through the same Session as `matrixeval run`: its samples are stored (under its own
``<output_path>/<checkpoint>/store``, the store a plain `run` of that checkpoint also uses), so a killed sweep
resumes at the checkpoint and the sample where it stopped, and torchrun shards the samples. One checkpoint is
in memory at a time (with its Diff-eRank reference).

Diff-eRank is relative to the initialisation: every checkpoint is compared, sample by sample, with the same
seeded random init of its architecture (the one --include_init measures as step 0, whose Diff-eRank is
therefore 0).

Output columns (table .md/.csv next to <output_path>/<model>/checkpoints_<timestamp>.json, "table" in the JSON):
  step            the training step (0 = the random initialisation)
  checkpoint      the revision or folder name (``init`` for the random initialisation)
  task            the task
  layer           the hidden-state layer (HF numbering, 0 = embeddings)
  n_samples       samples with a defined value
  <metric>        every metric's data-set value at this layer (default matrix_entropy, effective_rank,
                  nuclear_norm, diff_erank and, with an LM head, loss and perplexity, which have no layer and
                  repeat on every layer's row), with <metric>_stderr
Plot: <stem>.png, one panel per metric against step (symmetric-log x when the steps span two decades or more,
so step 0 still shows), one line per task (per layer with several --layers), 95% intervals as bands.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import shutil
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", default=None, metavar="DIR_GLOB",
                        help="checkpoint folders, e.g. 'out/checkpoint-*' (quote it); alternatively hub revisions "
                             "in --model_args pretrained=ID,revisions=step1000,step2000,...")
    parser.add_argument("--include_init", action="store_true",
                        help="also measure the random initialisation (seeded by --seed) as step 0")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated: matrix_entropy,effective_rank,nuclear_norm,nuclear_norm_exact,loss,"
                             f"perplexity,diff_erank (default: {','.join(SPECTRAL_DEFAULT)}, plus loss,perplexity "
                             "when the model has an LM head)")
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = checkpoints_experiment(args.model_args, args.tasks, checkpoints=args.checkpoints,
                                 include_init=args.include_init, metrics=args.metrics,
                                 **common.options_from_args(args))
    return common.print_report(out)


@dataclass(frozen=True)
class Checkpoint:
    """One point of the sweep: its step, its name, and the model_args that load it."""

    step: int
    name: str
    model_args: str | dict[str, Any]


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


def _folder_step(folder: Path) -> int | None:
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
        except (json.JSONDecodeError, AttributeError):
            step = None
        if isinstance(step, int):
            return step
    return _step_from_name(folder.name)


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
    points.sort(key=lambda p: p.step)
    steps = [p.step for p in points]
    duplicates = sorted({s for s in steps if steps.count(s) > 1})
    if duplicates:
        names = [p.name for p in points if p.step == duplicates[0]]
        raise MatrixEvalError(f"checkpoints {names} share step {duplicates[0]}; give one checkpoint per step")
    return points


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


def checkpoints_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    checkpoints: str | None = None,
    include_init: bool = False,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure every checkpoint (and, with `include_init`, the seeded random init as step 0) on every task;
    see the module docstring. Returns the results dict (``results["<task>/step<N>"]``, ``table``,
    ``checkpoints``) on rank 0 and None elsewhere."""
    opts = common.options(common_options)
    points = resolve_checkpoints(model_args, checkpoints)
    family = _family_name(model_args, checkpoints)
    loaded = common.load_tasks(tasks, opts)  # data first: a bad file fails before a model loads
    wanted = metrics
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    scratch = None
    session = None
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
            init = Checkpoint(0, "init", _init_args(point.model_args, init_dir))
            todo.append(init)
        for task in loaded:
            entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            key = f"{task.name}/step{point.step}"
            results[key], per_sample[key] = entry, records
            rows.extend(_rows(point, task.name, entry, session))
        sweep.append({"step": point.step, "checkpoint": point.name, "model_name": session.lm.name})
    rows.sort(key=lambda r: (r["step"], r["task"], r["layer"]))
    sweep.sort(key=lambda s: s["step"])
    if opts.output_path is not None:
        session.run_dir = Path(opts.output_path) / family  # the sweep's files go under the family, not its last member
    title = family.split("__")[-1]
    plots = {"": _plotter(results, rows, session, title)}
    out = common.finish(session, "checkpoints", results, rows, opts=opts, per_sample=per_sample,
                        extra_config={"checkpoints": checkpoints, "include_init": include_init, "tasks": tasks},
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




def _write_init(session, opts: common.Options, family: str) -> tuple[Path, Path | None]:
    """Save the seeded random init of the session's architecture as a model folder, once (rank 0 writes, every
    rank waits), so it is measured, stored and resumed like a checkpoint. Returns (folder, scratch to delete)."""
    from ..engine.dist import barrier, broadcast_from_main
    from ..models import random_init_like

    scratch = None
    if opts.store is not None:
        root = Path(opts.store)
    elif opts.output_path is not None:
        root = Path(opts.output_path) / family
    else:
        scratch = Path(broadcast_from_main(tempfile.mkdtemp(prefix="matrixeval-init-")
                                           if session.world.is_main else None, session.world))
        root = scratch
    folder = root / f"random_init_seed{session.seed}"
    if session.world.is_main and not (folder / "config.json").is_file():
        reference = session.reference or random_init_like(session.lm, session.seed)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        reference.model.save_pretrained(partial)
        session.lm.tokenizer.save_pretrained(partial)
        partial.rename(folder)  # a killed write never looks finished
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
               "n_samples": values["n_samples"]}
        for m in session.metrics:
            source = entry if m in LM_HEAD else values
            if m in source:
                row[m], row[f"{m}_stderr"] = source[m], source.get(f"{m}_stderr")
        rows.append(row)
    return rows


def _plotter(results: Mapping[str, Any], rows: list[dict[str, Any]], session, title: str):
    def draw(path: Path) -> None:
        from ..report.plots import plot_metric_panels, step_scale
        from ..results import higher_is_better

        tasks = list(dict.fromkeys(r["task"] for r in rows))
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        panels: dict[str, dict[str, list]] = {}
        for r in rows:
            if len(layers) > 1 and len(tasks) > 1:
                label = f"{r['task']} / layer {r['layer']}"
            else:
                label = f"layer {r['layer']}" if len(layers) > 1 else r["task"]
            entry = results[f"{r['task']}/step{r['step']}"]
            for m in session.metrics:
                if m in LM_HEAD and r["layer"] != layers[0]:
                    continue  # loss has no layer: one line per task
                if r.get(m) is None:
                    continue
                source = entry if m in LM_HEAD else entry["by_layer"][str(r["layer"])]
                lo, hi = source.get(f"{m}_ci95") or (None, None)
                line = r["task"] if m in LM_HEAD else label
                panels.setdefault(m, {}).setdefault(line, []).append((r["step"], r[m], lo, hi))
        scale, linthresh = step_scale([r["step"] for r in rows])
        plot_metric_panels(panels, path, xlabel="training step" + (" (symmetric log)" if scale == "symlog" else ""),
                           title=f"{title}: metrics across checkpoints", higher_is_better=higher_is_better(session.metrics),
                           xscale=scale, linthresh=linthresh)

    return draw
