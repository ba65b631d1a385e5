"""Generate each model's responses to instruction prompts and score the responses only (Matrix Nuclear-Norm §6).

Prompts: the instructions of --tasks (default alpaca_eval,arena_hard; offline, give local copies as
alpaca_eval=alpaca_eval.jsonl, arena_hard=question.jsonl): the recipe's question where it has one (AlpacaEval's
instruction), else the document text (Arena-Hard's first turn). Each instruction is fed as a single user turn
through the tokenizer's chat template when it has one (with the generation prompt), else as it is. Generation
is greedy by default, or sampled with --sample --temperature --top_p, seeded by --seed (each batch of
--batch_size prompts draws from its own seed, so a resumed run gives the same responses); at most
--max_new_tokens new tokens, fewer where the model's position limit or --max_length leaves less room (a prompt
that leaves none is skipped and counted). Responses are saved, one JSON object per line (doc_id, instruction,
prompt, response, n_new_tokens), to <output_path>/<model>/responses_<task>.jsonl as they are generated, and a
re-run with the same settings reuses them. --responses FILE scores existing responses instead (JSONL with
instruction or prompt, and response or output, e.g. AlpacaEval model outputs; task named after the file;
--limit keeps the first N).

Scoring: each response is a document whose context is the prompt as fed, so only the response's tokens enter
the matrix and the loss (variant "<task>", stored, resumable, data-parallel like `run`). Encoders cannot
generate; they can score given responses with --metrics matrix_entropy,nuclear_norm. To rank several models,
run this per model and pass the JSON files to `matrixeval compare --rank nuclear_norm`.

Output columns (table .md/.csv next to responses_<timestamp>.json, and the "table" key of the JSON):
  task                  the task
  n_responses           responses scored (empty and skipped ones are not)
  n_skipped             prompts that left no room to generate, and empty responses
  mean_response_tokens  mean tokens per response (the tokens in each matrix)
  <metric>              the metric on the response tokens (default matrix_entropy, nuclear_norm, loss)
  <metric>_stderr       its standard error over responses
The JSON's "generation" section records how the responses were made and where they were saved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = "generate responses to alpaca_eval / arena_hard prompts and score the response tokens (seed 003 §6)"
DEFAULT_TASKS = "alpaca_eval,arena_hard"
DEFAULT_METRICS = "matrix_entropy,nuclear_norm,loss"
AUTO_GENERATION_BATCH = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--responses", default=None,
                        help="score the responses in this JSONL file instead of generating")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="tokens to generate at most (default: 256)")
    parser.add_argument("--sample", action="store_true", help="sample (seeded by --seed) instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --sample)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling threshold (with --sample)")
    common.add_metrics_arg(parser, DEFAULT_METRICS)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = responses_experiment(args.model_args, args.tasks, responses=args.responses,
                               max_new_tokens=args.max_new_tokens, sample=args.sample, temperature=args.temperature,
                               top_p=args.top_p, metrics=args.metrics, **common.options_from_args(args))
    return common.print_report(out)


def format_prompt(tokenizer, instruction: str) -> str:
    """The instruction as the model reads it: a user turn in the chat template when there is one.

    When the template already writes the BOS token that the tokenizer adds again, the template's copy is
    dropped, so the model sees one BOS whether the prompt is tokenised for generation or for scoring.
    """
    if not getattr(tokenizer, "chat_template", None):
        return instruction
    text = tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                         add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) > 1 and ids[0] == ids[1] == tokenizer.bos_token_id:
            text = text[len(bos):]
    return text


def responses_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = DEFAULT_TASKS,
    *,
    responses: str | Path | None = None,
    max_new_tokens: int = 256,
    sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    metrics: str | Sequence[str] | None = DEFAULT_METRICS,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Generate (or read) responses and score their tokens; see the module docstring.

    Returns the results dict (``results[task]``, ``table``, ``generation``) on rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    if max_new_tokens < 1:
        raise MatrixEvalError(f"max_new_tokens must be a positive integer, got {max_new_tokens}")
    loaded = common.load_tasks(tasks or DEFAULT_TASKS, opts) if responses is None else []  # data first
    if responses is None:
        session = common.open_causal_session(model_args, metrics or DEFAULT_METRICS, opts,
                                             "generate responses (score existing ones with --responses FILE)")
    else:
        session = common.open_session(model_args, metrics or DEFAULT_METRICS, opts)
    tokenizer = session.lm.tokenizer
    settings = {"max_new_tokens": max_new_tokens, "sample": sample, "temperature": temperature, "top_p": top_p,
                "seed": opts.seed, "chat_template": bool(getattr(tokenizer, "chat_template", None))}
    if responses is not None:
        sets = {Path(responses).stem: _read_responses(Path(responses), tokenizer)[: opts.limit]}
        generation = {"source": str(responses)}
    else:
        sets, files = {}, {}
        for task in loaded:
            items = [{"doc_id": d.doc_id, "instruction": _instruction(task, d)} for d in task.documents]
            for it in items:
                it["prompt"] = format_prompt(tokenizer, it["instruction"])
            path = session.run_dir / f"responses_{task.name}.jsonl" if opts.output_path is not None else None
            sets[task.name] = _generate(session, items, settings, path)
            files[task.name] = str(path) if path else None
        generation = {**settings, "files": files}
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    for name, items in sets.items():
        usable = [it for it in items if it.get("response", "").strip()]
        if not usable:
            raise MatrixEvalError(f"no response of task {name!r} has text to score (all {len(items)} empty or skipped)")
        docs = [Document(it["doc_id"], it["response"], {}, context=it["prompt"]) for it in usable]
        entry, records = session.run(name, docs, source=generation.get("source", name))
        if entry is None:
            continue
        layer = str(max(session.layers))
        sizes = [r["layers"][layer]["n_tokens"] + r["layers"][layer]["n_dropped"] for r in records]
        results[name], per_sample[name] = entry, records
        rows.append({"task": name, "n_responses": entry["n_samples"], "n_skipped": len(items) - len(usable),
                     "mean_response_tokens": sum(sizes) / len(sizes), **common.metric_cells(entry, session.metrics)})
    return common.finish(session, "responses", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"tasks": tasks if responses is None else None}, generation=generation)


def _instruction(task, doc) -> str:
    qa = common.question_answer(task, doc)
    return qa[0] if qa else doc.text


def _read_responses(path: Path, tokenizer) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise MatrixEvalError(f"cannot read responses file {path} ({err.strerror}); "
                              "pass an existing JSONL file") from None
    items = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise MatrixEvalError(f"{path} line {i + 1} is not JSON ({err}); one object per line") from None
        response = rec.get("response", rec.get("output")) if isinstance(rec, dict) else None
        if not isinstance(response, str) or not (rec.get("prompt") or rec.get("instruction")):
            raise MatrixEvalError(f"{path} line {i + 1} needs 'instruction' (or 'prompt') and 'response' (or 'output')")
        prompt = rec.get("prompt") or format_prompt(tokenizer, rec["instruction"])
        items.append({"doc_id": int(rec.get("doc_id", len(items))), "instruction": rec.get("instruction"),
                      "prompt": prompt, "response": response})
    return items


def _generate(session, items: list[dict[str, Any]], settings: Mapping[str, Any], path: Path | None) -> list[dict]:
    """Responses for every item, reusing those saved in `path` under the same settings; saved as they come."""
    from ..engine.dist import broadcast_from_main, gather_to_main

    key = hashlib.sha256(json.dumps({**settings, "model": session.lm.name, "max_length": session.max_length},
                                    sort_keys=True).encode()).hexdigest()[:16]
    done = _saved(path, key)
    size = session.batch_size if isinstance(session.batch_size, int) else AUTO_GENERATION_BATCH
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    world = session.world
    mine = [(b, batch) for b, batch in enumerate(batches) if b % world.size == world.rank]
    new: list[dict[str, Any]] = []
    append = path is not None and world.size == 1
    if append:
        path.parent.mkdir(parents=True, exist_ok=True)
    for b, batch in mine:
        if all(it["doc_id"] in done for it in batch):
            continue
        out = _generate_batch(session, batch, settings, seed=settings["seed"] * 1_000_003 + b)
        for it in out:
            it["key"] = key
        new.extend(out)
        if append:
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(it) + "\n" for it in out)
    if world.size > 1:
        parts = gather_to_main(new, world)
        new = broadcast_from_main([it for part in parts for it in part] if parts else None, world)
        if world.is_main and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(it) + "\n" for it in new)
    done.update({it["doc_id"]: it for it in new})
    return [done[it["doc_id"]] for it in items]


def _saved(path: Path | None, key: str) -> dict[int, dict[str, Any]]:
    """Responses already in `path` that were made with the same settings (a torn last line is ignored)."""
    if path is None or not path.is_file():
        return {}
    saved = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("key") == key:
            saved[rec["doc_id"]] = rec
    return saved


def _generate_batch(session, batch: list[dict[str, Any]], settings: Mapping[str, Any], seed: int) -> list[dict]:
    import torch

    lm = session.lm
    tok = lm.tokenizer
    room = min(session.max_length, lm.max_positions or session.max_length)
    lengths = [len(tok(it["prompt"], add_special_tokens=True)["input_ids"]) for it in batch]
    fits = [it for it, n in zip(batch, lengths) if n < room]
    out = [{**it, "response": "", "n_new_tokens": 0, "skipped": "prompt_too_long"}
           for it, n in zip(batch, lengths) if n >= room]
    if not fits:
        return out
    tok.padding_side = "left"
    try:
        enc = tok([it["prompt"] for it in fits], add_special_tokens=True, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    width = enc["input_ids"].shape[1]
    kwargs: dict[str, Any] = {"max_new_tokens": min(settings["max_new_tokens"], room - width),
                              "pad_token_id": tok.pad_token_id, "do_sample": bool(settings["sample"])}
    if settings["sample"]:
        kwargs.update(temperature=settings["temperature"], top_p=settings["top_p"])
    devices = [lm.device] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        generated = lm.model.generate(input_ids=enc["input_ids"].to(lm.device),
                                      attention_mask=enc["attention_mask"].to(lm.device), **kwargs)
    for it, row in zip(fits, generated[:, width:].cpu().tolist()):
        ids = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
        out.append({**it, "response": tok.decode(ids, skip_special_tokens=True), "n_new_tokens": len(ids)})
    order = {it["doc_id"]: i for i, it in enumerate(batch)}
    return sorted(out, key=lambda it: order[it["doc_id"]])
