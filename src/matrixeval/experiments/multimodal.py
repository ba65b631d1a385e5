"""Matrix entropy inside a vision-language model (entropy paper §6, Tables 5 and 6).

Per sample (one image, an instruction and a response), matrix entropy / log d of its own hidden size at:
  H1  the vision features the connector receives (LLaVA-1.5: layer -2 without CLS)
  H2  the connector (projector) output for the same image
  H3  the LLM's final layer at the image-token positions, input = the image only
  H4  the LLM's final layer at the instruction and response tokens, input = instruction + response
  H5  the LLM's final layer at the image, instruction and response tokens, input = image + instruction + response
and per data set: image_reduction = H1 - H2, image_text_alignment = min(H3,H4,H5) / max(H3,H4,H5).
The prompt format (chat template, or LLaVA-1.5's "USER: ... ASSISTANT: ...") and BOS go to the model as
context but are not in the H4/H5 matrices; --include_template puts every position of the prompt in them.

Operations, each its own row next to the unchanged "base":
  rotateD                  each image turned D degrees clockwise before the processor (--rotate 90,180,270;
                           the paper says rotating "is equivalent to reversing the patch token in ViT", which
                           holds for 180 degrees on a square patch grid)
  reverse_after_connector  the projected image tokens reversed before they enter the LLM

Data (.jsonl/.json): records {image, instruction, response} (or "output" for the response); LLaVA
conversation records {image, conversations: [{from: human, value: "<image>\\nQ"}, {from: gpt, value: A}]};
or MiniGPT-4's cc_sbu_align filter_cap.json as released, {"annotations": [{image_id, caption}]}: image
IMAGE_ID.jpg, the caption as the response, --instruction as the instruction (default: "Describe this image
in detail.", the first of MiniGPT-4's alignment prompts). Relative image paths are joined to --image_root
(default: the data file's folder; for cc_sbu_align its image/ subfolder, as released).
Models: HF LLaVA works as is; name other models' parts in --model_args with vision_module=...,
projector_module=... (and language_module=...), dotted paths as print(model) shows them.
Samples run one at a time, on the LLM's final layer; nothing is truncated (a sample longer than the
model's positions is an error), so run's --layers, --batch_size, --max_length and --text_field are not offered.
Finished samples are stored under --store and a re-run resumes. A missing or unreadable image stops the
run, or with --on_error skip is skipped and counted (n_skipped).

Output columns (.md/.csv next to the JSON):
  task, operation          the task and the operation (base, rotate90, ..., reverse_after_connector)
  H1 .. H5                 mean matrix entropy / log d over the samples with all five defined
  image_reduction          H1 - H2
  image_text_alignment     min(H3, H4, H5) / max(H3, H4, H5)
  n                        samples with all five defined

Example:
  matrixeval experiment multimodal --model_args pretrained=llava-hf/llava-1.5-7b-hf,dtype=bfloat16 \\
      --tasks coco=coco2014_val_gpt4_qa_30x3.jsonl --image_root val2014 --rotate 90,180 --reverse_after_connector
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..caveats import CaveatThresholds, few_samples, parse_thresholds
from ..caveats import report as report_caveats
from .._version import __version__
from ..data.readers import read_rows
from ..engine.files import write_text_atomic
from ..engine.runner import fault_pause
from ..engine.store import NullStore, ShardStore, config_key
from ..errors import MatrixEvalError
from ..metrics import SpectralMetrics, aggregate, spectral_metrics
from ..models import parse_model_args
from ..models.vision import (VisionLanguageModel, build_prompts, capture, content_mask, first_line,
                             load_vision_language_model)
from ..results import json_safe

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DEFAULT_INSTRUCTION", "DESCRIPTION", "LEVELS", "OPERATIONS", "ROTATIONS", "Sample", "UnreadableImage",
           "load_samples", "measure_sample", "multimodal", "parse_rotations", "rotate_image", "summary_rows"]

logger = logging.getLogger(__name__)

DESCRIPTION = "entropy at five places of a vision-language model: H1..H5, image reduction, image-text alignment"
LEVELS = ("H1", "H2", "H3", "H4", "H5")
ROTATIONS = (90, 180, 270)  # degrees clockwise
OPERATIONS = ("base", *(f"rotate{d}" for d in ROTATIONS), "reverse_after_connector")
# MiniGPT-4 draws one of four alignment prompts per cc_sbu_align sample (prompts/alignment.txt); we fix the first.
DEFAULT_INSTRUCTION = "Describe this image in detail."
COLUMNS = ["task", "operation", *LEVELS, "image_reduction", "image_text_alignment", "n"]


@dataclass(frozen=True)
class Sample:
    doc_id: int  # index of the record in its file
    image: Path
    instruction: str
    response: str


class UnreadableImage(MatrixEvalError):
    """An image file that exists but cannot be decoded."""


class _Skip(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def load_samples(
    path: str | Path, task: str, *, image_root: str | Path | None = None, limit: int | None = None,
    on_error: str = "fail", instruction: str = DEFAULT_INSTRUCTION,
) -> tuple[list[Sample], dict[str, int]]:
    """The first `limit` usable samples of a data file and the counts of records skipped, by reason.

    Bad records (malformed, missing fields, a missing image file or one that is not an image) raise a one-line
    MatrixEvalError, or are skipped and counted with on_error="skip". `instruction` is the instruction of
    cc_sbu_align records ({image_id, caption}), which have none of their own.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise MatrixEvalError(f"instruction must be a non-empty text, got {instruction!r}")
    if on_error not in ("skip", "fail"):
        raise MatrixEvalError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise MatrixEvalError(f"limit must be a positive number of samples (or None for all), got {limit!r}")
    root = Path(image_root) if image_root is not None else None
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    for row in read_rows(path, task):
        if limit is not None and len(samples) >= limit:
            break
        try:
            if row.problem is not None:
                raise _Skip(*row.problem)
            samples.append(_sample(row.index, row.record, row.where, Path(path).parent, root, instruction))
        except _Skip as skip:
            if on_error == "fail":
                raise MatrixEvalError(str(skip)) from None
            skipped[skip.reason] += 1
    if not samples:
        raise MatrixEvalError(f"task {task!r} has no usable samples in {path} (skipped: {dict(skipped) or 'none'})")
    return samples, dict(skipped)


def _sample(index: int, record: Mapping[str, Any], where: str, folder: Path, image_root: Path | None,
            default_instruction: str) -> Sample:
    image = record.get("image")
    default_root = folder
    if "conversations" in record:
        instruction, response = _first_exchange(record["conversations"])
    elif image is None and "image_id" in record and "caption" in record:  # MiniGPT-4's cc_sbu_align
        image, instruction, response = f"{record['image_id']}.jpg", default_instruction, record["caption"]
        default_root = folder / "image"
    else:
        instruction, response = record.get("instruction"), record.get("response", record.get("output"))
    root_given = image_root is not None
    root = image_root if root_given else default_root
    for name, value in (("image", image), ("instruction", instruction), ("response", response)):
        if not isinstance(value, str) or not value.strip():
            raise _Skip("missing_field", f"{where}: no {name} string (fields: {', '.join(map(str, record))}); "
                        "records need image, instruction and response (or output), or LLaVA conversations")
    file = Path(image).expanduser()
    file = file if file.is_absolute() else root / file
    if not file.is_file():
        given = f"--image_root {str(root)!r}" if root_given else f"no --image_root (so relative to {str(root)!r})"
        raise _Skip("missing_image", f"{where}: image file {str(file)!r} not found ({image!r} with {given}); "
                    "pass the image folder with --image_root DIR, or --on_error skip")
    problem = _unreadable(file)
    if problem:
        raise _Skip("unreadable_image", f"{where}: image file {str(file)!r} cannot be read ({problem}); "
                    "replace the file, or pass --on_error skip")
    return Sample(index, file, instruction.replace("<image>", "").strip(), response.strip())


def _unreadable(file: Path) -> str | None:
    """Why PIL cannot identify the image file from its header, or None (decoding is checked when measuring)."""
    from PIL import Image

    try:
        with Image.open(file):
            return None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return first_line(err)


def parse_rotations(rotate: int | str | Sequence[int | str] | None) -> list[int]:
    """Clockwise angles from ``90``, ``"90,180"`` or a list of such (e.g. the CLI's repeated --rotate), in the
    order given, each once. None or False: no rotation."""
    if rotate is None or rotate is False:
        return []
    tokens: list[Any] = []
    for item in [rotate] if isinstance(rotate, (int, str)) else list(rotate):
        tokens += item.split(",") if isinstance(item, str) else [item]
    angles: list[int] = []
    for token in tokens:
        angle = _angle(token)
        if angle not in ROTATIONS:
            raise MatrixEvalError(f"--rotate takes degrees clockwise, 90, 180 or 270 (comma-separated for several), "
                                  f"got {rotate!r}")
        if angle not in angles:
            angles.append(angle)
    return angles


def _angle(token: Any) -> int | None:
    if isinstance(token, bool):
        return None
    if isinstance(token, int):
        return token
    try:
        return int(str(token).strip())
    except ValueError:
        return None


def rotate_image(image: Image.Image, degrees: int) -> Image.Image:
    """`image` turned `degrees` (90, 180 or 270) clockwise; the canvas turns with it (no crop, no fill)."""
    from PIL import Image

    # PIL's ROTATE_* turn counter-clockwise
    turn = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    if degrees not in turn:
        raise MatrixEvalError(f"rotation must be 90, 180 or 270 degrees clockwise, got {degrees!r}")
    return image.transpose(turn[degrees])


def _first_exchange(turns: Any) -> tuple[Any, Any]:
    """The first human turn and the assistant turn after it, from LLaVA's conversation list."""
    if not isinstance(turns, list):
        return None, None
    turns = [t if isinstance(t, dict) else {} for t in turns]
    roles = [str(t.get("from", t.get("role", ""))).lower() for t in turns]
    texts = [t.get("value", t.get("content")) for t in turns]
    for i, role in enumerate(roles[:-1]):
        if role in ("human", "user") and roles[i + 1] in ("gpt", "assistant"):
            return texts[i], texts[i + 1]
    return None, None


def measure_sample(
    vlm: VisionLanguageModel, sample: Sample, *, operation: str = "base", exclude_bos: bool = False,
    include_template: bool = False,
) -> dict[str, SpectralMetrics]:
    """H1..H5 of one sample under `operation` (one of OPERATIONS): the metric core's values for those states.

    H4/H5 hold the instruction and response tokens (H5 also the image tokens); with `include_template` every
    position of the prompt (BOS too, unless `exclude_bos`). An image that cannot be decoded raises
    UnreadableImage.
    """
    from PIL import Image

    if operation not in OPERATIONS:
        raise MatrixEvalError(f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}")
    try:
        with Image.open(sample.image) as raw:
            image = raw.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImage(f"cannot read image {str(sample.image)!r} ({first_line(err)}); replace the file, "
                              "or pass --on_error skip") from None
    if operation.startswith("rotate"):
        image = rotate_image(image, int(operation.removeprefix("rotate")))
    reverse = operation == "reverse_after_connector"
    prompts = build_prompts(vlm, sample.instruction, sample.response)
    alone = capture(vlm, prompts.image_only, image, reverse_after_connector=reverse)
    text = capture(vlm, prompts.text_only, offsets=not include_template)
    both = capture(vlm, prompts.image_text, image, reverse_after_connector=reverse, offsets=not include_template)
    if include_template:
        h4, h5 = _positions(vlm, text, exclude_bos), _positions(vlm, both, exclude_bos)
    else:
        pieces = (sample.instruction, sample.response)
        h4 = content_mask(vlm, prompts.text_only, text, pieces)
        h5 = content_mask(vlm, prompts.image_text, both, pieces) | both.image_mask
    return {
        "H1": spectral_metrics(alone.projector_input),
        "H2": spectral_metrics(alone.projector_output),
        "H3": spectral_metrics(alone.hidden, alone.image_mask),
        "H4": spectral_metrics(text.hidden, h4),
        "H5": spectral_metrics(both.hidden, h5),
    }


def _positions(vlm: VisionLanguageModel, cap, exclude_bos: bool) -> torch.Tensor:
    mask = cap.attention_mask.bool()
    if exclude_bos and vlm.bos_token_id is not None and int(cap.input_ids[0, 0]) == vlm.bos_token_id:
        mask = mask.clone()
        mask[:, 0] = False
    return mask


def _record(doc_id: int, values: Mapping[str, SpectralMetrics]) -> dict[str, Any]:
    return {"doc_id": doc_id, **{
        level: {"entropy": float(m.entropy[0]), "status": m.status[0], "n_tokens": int(m.n_tokens[0]),
                "hidden_size": m.hidden_size}
        for level, m in values.items()
    }}


def _digest(samples: Sequence[Sample]) -> str:
    """What the stored numbers depend on in the data: texts, image paths and the image files' size and mtime."""
    h = hashlib.sha256()
    for s in samples:
        stat = s.image.stat()
        h.update(f"{s.doc_id}\0{s.image}\0{stat.st_size}\0{stat.st_mtime_ns}\0{s.instruction}\0{s.response}\0".encode())
    return h.hexdigest()


def _entry(records: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Data-set values over the samples whose five states are all defined (so H1-H2 and min/max pair up)."""
    complete = [all(r[level]["status"] == "ok" for level in LEVELS) for r in records]
    out: dict[str, Any] = {}
    for level in LEVELS:
        entropies = [r[level]["entropy"] if ok else math.nan for r, ok in zip(records, complete)]
        d = records[0][level]["hidden_size"]
        agg = aggregate(entropies, d, seed=seed)
        out[level], out[f"{level}_stderr"], out[f"{level}_ci95"] = agg.a.mean, agg.a.stderr, list(agg.a.ci95)
    h = [out[level] for level in LEVELS]
    out["image_reduction"] = h[0] - h[1]
    out["image_text_alignment"] = min(h[2:]) / max(h[2:])
    out["hidden_size"] = {level: records[0][level]["hidden_size"] for level in LEVELS}
    out["n_samples"] = sum(complete)
    out["skipped_by_status"] = dict(Counter(
        f"{level}:{r[level]['status']}" for r in records for level in LEVELS if r[level]["status"] != "ok"
    ))
    return out


def multimodal(
    model_args: str | Mapping[str, Any],
    tasks: str | None,
    *,
    image_root: str | Path | None = None,
    rotate: int | str | Sequence[int | str] | None = None,
    reverse_after_connector: bool = False,
    include_template: bool = False,
    instruction: str = DEFAULT_INSTRUCTION,
    limit: int | None = None,
    seed: int = 1234,
    device: str | None = None,
    output_path: str | Path | None = "results",
    store: str | Path | None = None,
    exclude_bos: bool = False,
    on_error: str = "fail",
    caveat: CaveatThresholds | Mapping[str, Any] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure H1..H5 on every task (NAME=FILE, comma-separated) for the base input and each requested operation.

    `caveat` sets the thresholds of the warnings each row carries (``warnings``; e.g. ``few_samples`` below 30
    samples with all five values), as ``--caveat KEY=VALUE`` does.

    `rotate`: clockwise angles (90, 180, 270; e.g. ``"90,180"``), one row each. See the module docstring.
    Returns the results dict (`results["TASK/OPERATION"]`), written with a Markdown and a CSV table to
    `output_path/<model>/multimodal_<timestamp>.*` unless output_path is None.
    """
    from ..engine.keys import model_identity
    from ..session import versions

    from ..session import check_writable

    started = time.time()
    thresholds = parse_thresholds(caveat)
    if not model_args:
        raise MatrixEvalError("multimodal needs a vision-language model: --model_args pretrained=ID_OR_PATH")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # it would do all the work on every rank and write it twice
        raise MatrixEvalError("multimodal measures in one process and does not shard across ranks; run it without "
                              "torchrun")
    if output_path is not None:  # before any loading: the results are written there at the end
        check_writable(Path(output_path), "output_path")
    if store:
        check_writable(Path(store), "store")
    specs = _task_files(tasks)
    operations = ["base", *(f"rotate{d}" for d in parse_rotations(rotate)),
                  *(["reverse_after_connector"] if reverse_after_connector else [])]
    loaded = {name: load_samples(path, name, image_root=image_root, limit=limit, on_error=on_error,
                                 instruction=instruction) for name, path in specs}
    args = parse_model_args(model_args)
    vlm = load_vision_language_model(args, device)
    run_dir = Path(output_path or ".") / vlm.name
    store_root = Path(store) if store else (run_dir / "store" if output_path is not None else None)
    results: dict[str, Any] = {}
    for name, path in specs:
        samples, skipped = loaded[name]
        for op in operations:
            key = {"matrixeval": __version__, "experiment": "multimodal", "task": name, "operation": op,
                   **model_identity(args), "modules": vlm.module_names,
                   "samples": _digest(samples), "exclude_bos": exclude_bos, "include_template": include_template,
                   "device_type": vlm.device.type}
            safe = name.replace("/", "__")
            where = store_root / f"multimodal-{safe}-{op}-{config_key(key)}" if store_root else None
            options = {"operation": op, "exclude_bos": exclude_bos, "include_template": include_template}
            records, n_resumed, unreadable = _measure_all(vlm, samples, options, on_error,
                                                          ShardStore(where, key) if where else NullStore())
            logger.info("multimodal %s/%s: %d samples, %d from the store", name, op, len(records), n_resumed)
            if n_resumed:  # as run says it: a reused result is never silent
                print(f"task {name}/{op}: resumed {n_resumed} of {len(samples)} from the store", file=sys.stderr)
            if unreadable:
                logger.warning("multimodal %s/%s: skipped %d unreadable image(s)", name, op, unreadable)
            if not records:
                raise MatrixEvalError(f"task {name!r} ({op}) has no sample with a readable image "
                                      f"(skipped: {dict(skipped)}, unreadable: {unreadable})")
            entry = _entry(records, seed)
            if entry["n_samples"] == 0:
                raise MatrixEvalError(f"task {name!r} ({op}) has no sample with all of H1..H5 defined "
                                      f"(statuses: {entry['skipped_by_status']}); use longer texts")
            results[f"{name}/{op}"] = json_safe({
                "task": name, "operation": op, **entry, "n_skipped": sum(skipped.values()) + unreadable,
                "skipped_on_load": skipped, "skipped_while_measuring": {"unreadable_image": unreadable} if unreadable
                else {}, "n_resumed": n_resumed, "source": str(path),
            })
            results[f"{name}/{op}"]["warnings"] = []
            report_caveats(results[f"{name}/{op}"], f"{name}/{op}", [few_samples(entry["n_samples"], thresholds)])
    out = {
        "results": results,
        "config": {**_config(vlm, model_args, operations, image_root, limit, seed, exclude_bos, specs),
                   "include_template": include_template, "instruction": instruction,
                   "caveat_thresholds": asdict(thresholds)},
        "higher_is_better": {"image_text_alignment": True},
        "versions": versions(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "total_evaluation_time_seconds": round(time.time() - started, 3),
    }
    if output_path is not None:
        out["results_path"] = str(_write(out, run_dir))
    return out


def _measure_all(vlm, samples, options, on_error, store) -> tuple[list[dict[str, Any]], int, int]:
    """Per-sample records (from the store or measured now), how many came from the store, how many images
    could not be decoded (skipped with on_error="skip"; nothing is stored for them, so a re-run retries)."""
    stored = store.load()
    done = {s.doc_id: stored[s.doc_id] for s in samples if s.doc_id in stored}
    unreadable = 0
    try:
        for s in samples:
            if s.doc_id not in done:
                try:
                    values = measure_sample(vlm, s, **options)
                except UnreadableImage:
                    if on_error != "skip":
                        raise
                    unreadable += 1
                    continue
                done[s.doc_id] = _record(s.doc_id, values)
                store.append([json_safe(done[s.doc_id])])
                fault_pause()
    finally:
        store.close()
    records = [done[s.doc_id] for s in samples if s.doc_id in done]
    for r in records:  # the store keeps NaN as null
        for level in LEVELS:
            r[level]["entropy"] = math.nan if r[level]["entropy"] is None else r[level]["entropy"]
    return records, sum(1 for s in samples if s.doc_id in stored), unreadable


def _config(vlm, model_args, operations, image_root, limit, seed, exclude_bos, specs) -> dict[str, Any]:
    return {
        "model_args": model_args if isinstance(model_args, str) else f"pretrained={vlm.args.pretrained}",
        "model_name": vlm.name,
        "n_params": vlm.n_params,
        "n_params_non_embedding": vlm.n_params_non_embedding,
        "dtype": str(vlm.dtype).replace("torch.", ""),
        "device": str(vlm.device),
        "modules": vlm.module_names,
        "image_token_id": vlm.image_token_id,
        "prompt_format": "chat_template" if getattr(vlm.processor, "chat_template", None) else "llava_plain",
        "operations": operations,
        "image_root": str(image_root) if image_root is not None else None,
        "limit": limit,
        "seed": seed,
        "exclude_bos": exclude_bos,
        "tasks": [name for name, _ in specs],
    }


def summary_rows(out: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per task × operation: the Table 5/6 layout."""
    return [{**{c: entry.get(c) for c in COLUMNS[:-1]}, "n": entry["n_samples"]} for entry in out["results"].values()]


def _write(out: Mapping[str, Any], run_dir: Path) -> Path:
    from ..report.tables import to_markdown, warnings_markdown, write_csv

    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
    path = run_dir / f"multimodal_{stamp}.json"
    write_text_atomic(path, json.dumps(json_safe(dict(out)), indent=2, allow_nan=False))
    rows = summary_rows(out)
    notes = warnings_markdown(out)
    write_text_atomic(path.with_suffix(".md"), to_markdown(rows, COLUMNS) + (f"\n\n{notes}" if notes else "") + "\n")
    write_csv(path.with_suffix(".csv"), rows, COLUMNS)
    return path


def _task_files(spec: str | None) -> list[tuple[str, str]]:
    """(name, file) pairs from "NAME=FILE,FILE2": a bare file is named after its stem."""
    tokens = [t.strip() for t in (spec or "").split(",") if t.strip()]
    if not tokens:
        raise MatrixEvalError("multimodal needs data: --tasks NAME=FILE.jsonl "
                              "(records with image, instruction and response)")
    pairs = []
    for token in tokens:
        name, sep, path = (p.strip() for p in token.partition("="))
        if not sep:
            name, path = Path(token).stem, token
        if not name or not path:
            raise MatrixEvalError(f"task spec {token!r} is incomplete; write NAME=FILE.jsonl")
        pairs.append((name, path))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise MatrixEvalError(f"a task name appears twice in {spec!r}; give each task once")
    return pairs


SHARED_ARGS = False  # run's text flags (--layers, --batch_size, --max_length, --text_field) do not apply here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model_args", default=None,
        help="required: a vision-language model, pretrained=ID_OR_PATH[,revision=R][,dtype=auto|float32|bfloat16|"
             "float16][,device_map=auto][,trust_remote_code=true][,adapter=PEFT_PATH]"
             "[,vision_module=PATH,projector_module=PATH,language_module=PATH]")
    add("--tasks", default=None,
        help="required: comma-separated NAME=FILE or FILE (.jsonl/.json; a bare file is named after its stem)")
    add("--limit", type=_positive_int, default=None,
        help="measure only the first N usable samples of each task (default: all)")
    add("--seed", type=int, default=1234, help="seed of the bootstrap intervals (default: 1234)")
    add("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    add("--output_path", default="results",
        help="directory for multimodal_<timestamp>.json/.md/.csv under the model's name (default: results)")
    add("--store", default=None, help="directory for the per-sample store (default: OUTPUT/<model>/store)")
    add("--exclude_bos", action="store_true",
        help="with --include_template, leave a leading BOS out of H4/H5 (without it BOS is never in them)")
    add("--on_error", choices=("skip", "fail"), default="fail",
        help="malformed records, missing or unreadable images: skip (counted in n_skipped) or fail (default: fail)")
    add("-v", "--verbose", action="store_true", help="log progress details")
    add("--caveat", action="append", default=None, metavar="KEY=VALUE",
        help="set a warning threshold, repeatable (e.g. min_samples=10; the keys as in `run --help`)")
    add("--image_root", default=None, help="folder that relative image paths are joined to "
        "(default: the data file's folder; for cc_sbu_align records its image/ subfolder)")
    add("--rotate", action="append", default=None, metavar="DEGREES",
        help="also measure with each image turned DEGREES clockwise before the processor: 90, 180 or 270, "
             "comma-separated or repeated for several, one row each (e.g. --rotate 90,180); the paper's rotation "
             "'equivalent to reversing the patch token in ViT' is 180 on a square patch grid (default: none)")
    add("--reverse_after_connector", action="store_true",
        help="also measure with the projected image tokens reversed before they enter the LLM")
    add("--include_template", action="store_true",
        help="H4/H5 over every position of the prompt (chat template or USER:/ASSISTANT: and BOS, unless "
             "--exclude_bos) instead of the instruction and response tokens only (default: off)")
    add("--instruction", default=DEFAULT_INSTRUCTION,
        help="the instruction of cc_sbu_align records ({image_id, caption}), which have none "
             f"(default: {DEFAULT_INSTRUCTION!r}, the first of MiniGPT-4's alignment prompts)")


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from ..report.tables import to_markdown

    out = multimodal(
        args.model_args, args.tasks, image_root=args.image_root, rotate=args.rotate,
        reverse_after_connector=args.reverse_after_connector, include_template=args.include_template,
        instruction=args.instruction, limit=args.limit, seed=args.seed, device=args.device,
        output_path=args.output_path, store=args.store, exclude_bos=args.exclude_bos, on_error=args.on_error,
        caveat=args.caveat,
    )
    from ..report.tables import warnings_markdown

    notes = warnings_markdown(out)
    print(to_markdown(summary_rows(out), COLUMNS) + (f"\n\n{notes}" if notes else ""))
    if "results_path" in out:
        print(f"\nresults written to {out['results_path']}", file=sys.stderr)
    return 0
