"""Generate each model's responses to instruction prompts and score the responses (Matrix Nuclear-Norm §5.3.3,
Table 2, and §6).

Prompts: the instructions of --tasks (default alpaca_eval,arena_hard; offline, give local copies as
alpaca_eval=alpaca_eval.jsonl, arena_hard=question.jsonl): the recipe's question where it has one (AlpacaEval's
instruction, OpenOrca's question), else the document text (Arena-Hard's first turn). Each instruction is fed as
a single user turn through the tokenizer's chat template when it has one (with the generation prompt), else as
it is. --system_prompt builtin (the three prompts of `experiment prompt`) or FILE (the same formats as its
--prompts) generates every response once without a system prompt (row "none") and once with each prompt, as a
system turn of the chat template (templates that refuse a system role, and tokenizers without a template, get
the prompt and a newline in front of the instruction). Generation is greedy by default, or sampled with --sample
--temperature --top_p --top_k, seeded by --seed (each batch of --batch_size prompts draws from its own seed, so a
resumed run gives the same responses); at most --max_new_tokens new tokens (default 256), fewer where the model's
position limit or --max_length leaves less room (a prompt that leaves none is skipped and counted). --preset
reference sets what the reference code (MLGroupJLU/MatrixNuclearNorm, code/vllm_inference.py) uses: sampling at
temperature 0.7, top_p 1, no top-k cut, 1000 new tokens (flags given explicitly still win). Responses are
saved, one JSON object per line (doc_id, instruction, system_prompt, prompt, response, n_new_tokens), to
<output_path>/<model>/responses_<task>[__<prompt>].jsonl as they are generated, and a re-run with the same
settings reuses them. --responses FILE scores existing responses instead (JSONL with instruction or prompt, and
response or output, e.g. AlpacaEval model outputs; task named after the file; --limit keeps the first N).

Scoring (--score_context, default none): "none" tokenises each response alone, with the tokenizer's own special
tokens (e.g. BOS), and measures all of them, as the reference code (code/MNN.py: tokenizer(response), one
forward, every token in the matrix); "prompt" feeds the prompt as fed at generation as context, so the model
reads the response in the context it was written in, and only the response's tokens (no BOS) enter the matrix
and the loss. Either way a variant "<task>" (or "<task>/<prompt>") is stored, resumable and data-parallel like
`run`. Encoders cannot generate; they can score given responses with --metrics matrix_entropy,nuclear_norm
(--model_args has no default for generating: pass a causal LM). To rank several models, run this per model and
pass the JSON files to `matrixeval compare --rank nuclear_norm` (lower is better).

Output columns (table .md/.csv next to responses_<timestamp>.json, and the "table" key of the JSON):
  task                  the task
  system_prompt         (with --system_prompt) "none" or the prompt's name
  n_responses           responses scored (empty and skipped ones are not)
  n_skipped             prompts that left no room to generate, and empty responses
  mean_response_tokens  mean tokens in each matrix (with --score_context none: the response's tokens and the
                        tokenizer's special tokens; with prompt: the response's tokens only)
  <metric>              the metric on those tokens (default matrix_entropy, nuclear_norm, loss)
  <metric>_stderr       its standard error over responses
The JSON's "generation" section records how the responses were made, how they were scored and where they
were saved; "system_prompts" holds every system prompt's text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = ("generate responses (optionally under system prompts) and score them like the reference code "
               "(nuclear-norm paper §5.3.3 Table 2, §6)")
DEFAULT_TASKS = "alpaca_eval,arena_hard"
DEFAULT_METRICS = "matrix_entropy,nuclear_norm,loss"
AUTO_GENERATION_BATCH = 8
SCORE_CONTEXTS = ("none", "prompt")
NO_PROMPT = "none"
# What code/vllm_inference.py of MLGroupJLU/MatrixNuclearNorm passes to vLLM (SamplingParams(temperature=0.7,
# max_tokens=1000); vLLM's defaults leave top_p at 1 and top-k off).
PRESETS = {"reference": {"sample": True, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "max_new_tokens": 1000}}
DEFAULTS = {"sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50, "max_new_tokens": 256}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.set_help(parser, "--tasks", f"comma-separated: NAME, NAME=LOCAL_FILE, or a data file (default: {DEFAULT_TASKS})")
    common.set_help(parser, "--model_args", "pretrained=ID_OR_PATH[,...] as for `run`; generating needs a causal LM "
                                      "(the default, the packaged MiniLM encoder, can only score --responses)")
    parser.add_argument("--responses", default=None,
                        help="score the responses in this JSONL file instead of generating")
    parser.add_argument("--system_prompt", default=None, metavar="FILE|builtin",
                        help="generate once without and once with each system prompt: 'builtin' (the three of "
                             "`experiment prompt`) or a prompts file; default: no system prompt, one row per task")
    parser.add_argument("--score_context", choices=SCORE_CONTEXTS, default="none",
                        help="none: score each response tokenised alone, special tokens included (the reference "
                             "code); prompt: the prompt as context, the response's tokens only (default: none)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="reference: sampling, temperature 0.7, top_p 1, no top-k, 1000 new tokens, as the "
                             "reference code (explicit flags still win; default: no preset)")
    parser.add_argument("--max_new_tokens", type=int, default=None,
                        help=f"tokens to generate at most (default: {DEFAULTS['max_new_tokens']}, 1000 with --preset reference)")
    parser.add_argument("--sample", action="store_true", default=None,
                        help="sample (seeded by --seed) instead of greedy decoding (default: greedy)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (default: 1.0; 0.7 with --preset reference)")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling threshold (default: 1.0)")
    parser.add_argument("--top_k", type=int, default=None,
                        help="keep the k likeliest tokens when sampling, 0 = no cut (default: 50, transformers' "
                             "default; 0 with --preset reference)")
    common.add_metrics_arg(parser, DEFAULT_METRICS)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    system_prompts = None
    if args.system_prompt is not None:
        from .prompt import read_prompts

        system_prompts = "builtin" if args.system_prompt == "builtin" else read_prompts(args.system_prompt)
    out = responses_experiment(args.model_args, args.tasks, responses=args.responses, system_prompts=system_prompts,
                               score_context=args.score_context, preset=args.preset,
                               max_new_tokens=args.max_new_tokens, sample=args.sample, temperature=args.temperature,
                               top_p=args.top_p, top_k=args.top_k, metrics=args.metrics,
                               **common.options_from_args(args))
    return common.print_report(out)


def generation_settings(preset: str | None = None, **given: Any) -> dict[str, Any]:
    """Sampling settings: the defaults, updated by the preset, updated by the values given (None = not given)."""
    if preset is not None and preset not in PRESETS:
        raise MatrixEvalError(f"unknown preset {preset!r}; use one of: {', '.join(sorted(PRESETS))}")
    settings = {**DEFAULTS, **(PRESETS[preset] if preset else {})}
    settings.update({k: v for k, v in given.items() if v is not None})
    if settings["max_new_tokens"] < 1:
        raise MatrixEvalError(f"max_new_tokens must be a positive integer, got {settings['max_new_tokens']}")
    if not math.isfinite(settings["temperature"]) or (settings["sample"] and not settings["temperature"] > 0):
        raise MatrixEvalError(f"temperature must be a finite number, > 0 when sampling (e.g. 0.7), "
                              f"got {settings['temperature']}")
    if not 0 < settings["top_p"] <= 1:
        raise MatrixEvalError(f"top_p must be in (0, 1] (1 keeps every token), got {settings['top_p']}")
    if settings["top_k"] < 0:
        raise MatrixEvalError(f"top_k must be 0 (no cut) or positive, got {settings['top_k']}")
    settings["sample"] = bool(settings["sample"])
    return settings


def format_prompt(tokenizer, instruction: str, system: str | None = None) -> str:
    """The instruction as the model reads it: a user turn (after a system turn when `system` is given) in the
    chat template when there is one; without one (or when the template refuses a system turn) the system prompt
    and a newline go in front of the instruction.

    When the template already writes the BOS token that the tokenizer adds again, the template's copy is
    dropped, so the model sees one BOS whether the prompt is tokenised for generation or for scoring.
    """
    from jinja2.exceptions import TemplateError

    if not getattr(tokenizer, "chat_template", None):
        return f"{system}\n{instruction}" if system else instruction
    messages = [{"role": "user", "content": instruction}]
    try:
        text = tokenizer.apply_chat_template(([{"role": "system", "content": system}] if system else []) + messages,
                                             tokenize=False, add_generation_prompt=True)
    except TemplateError:  # e.g. "System role not supported" (Gemma, Mistral v0.1)
        if not system:
            raise
        messages = [{"role": "user", "content": f"{system}\n{instruction}"}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
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
    system_prompts: str | Mapping[str, str] | Sequence[str] | None = None,
    score_context: str = "none",
    preset: str | None = None,
    max_new_tokens: int | None = None,
    sample: bool | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    metrics: str | Sequence[str] | None = DEFAULT_METRICS,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Generate (or read) responses and score them; see the module docstring.

    `system_prompts`: None (no system prompt), "builtin" (the prompt experiment's three), {name: text} or a list
    of texts. Generation settings left None take the `preset`'s value, else the module's DEFAULTS.
    Returns the results dict (``results[variant]``, ``table``, ``generation``, ``system_prompts``) on rank 0
    and None elsewhere.
    """
    opts = common.options(common_options)
    if score_context not in SCORE_CONTEXTS:
        raise MatrixEvalError(f"score_context must be one of {', '.join(SCORE_CONTEXTS)}, got {score_context!r}")
    settings = generation_settings(preset, max_new_tokens=max_new_tokens, sample=sample, temperature=temperature,
                                   top_p=top_p, top_k=top_k)
    named = _system_prompts(system_prompts)
    if named and responses is not None:
        raise MatrixEvalError("--system_prompt generates responses; it cannot be combined with --responses FILE")
    loaded = common.load_tasks(tasks, opts, default=DEFAULT_TASKS) if responses is None else []  # data first
    if responses is None:
        session = common.open_causal_session(model_args, metrics or DEFAULT_METRICS, opts,
                                             "generate responses (score existing ones with --responses FILE)")
    else:
        session = common.open_session(model_args, metrics or DEFAULT_METRICS, opts)
    tokenizer = session.lm.tokenizer
    settings.update(seed=opts.seed, chat_template=bool(getattr(tokenizer, "chat_template", None)))
    variants = {NO_PROMPT: None, **named} if named else {None: None}
    sets: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    if responses is not None:
        sets[(Path(responses).stem, None)] = _read_responses(Path(responses), tokenizer)[: opts.limit]
        generation = {"source": str(responses)}
    else:
        files = {}
        for task in loaded:
            for name, system in variants.items():
                items = [{"doc_id": d.doc_id, "instruction": _instruction(task, d), "system_prompt": system}
                         for d in task.documents]
                for it in items:
                    it["prompt"] = format_prompt(tokenizer, it["instruction"], system)
                stem = task.name if name is None else f"{task.name}__{name}"
                path = session.run_dir / f"responses_{stem}.jsonl" if opts.output_path is not None else None
                sets[(task.name, name)] = _generate(session, items, {**settings, "system_prompt": system}, path)
                files[task.name if name is None else f"{task.name}/{name}"] = str(path) if path else None
        generation = {**settings, "files": files}
    generation["score_context"] = score_context
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    for (task_name, name), items in sets.items():
        variant = task_name if name is None else f"{task_name}/{name}"
        usable = [it for it in items if it.get("response", "").strip()]
        if not usable:
            raise MatrixEvalError(f"no response of {variant!r} has text to score (all {len(items)} empty or skipped)")
        # none: the response alone, as the reference code tokenises it; prompt: a continuation of the prompt
        context = (lambda it: it["prompt"]) if score_context == "prompt" else (lambda it: None)
        docs = [Document(it["doc_id"], it["response"], {}, context=context(it)) for it in usable]
        entry, records = session.run(variant, docs, source=generation.get("source", task_name))
        if entry is None:
            continue
        layer = str(max(session.layers))
        sizes = [r["layers"][layer]["n_tokens"] + r["layers"][layer]["n_dropped"] for r in records]
        results[variant], per_sample[variant] = entry, records
        rows.append({"task": task_name, **({"system_prompt": name} if name is not None else {}),
                     "n_responses": entry["n_samples"], "n_skipped": len(items) - len(usable),
                     "mean_response_tokens": sum(sizes) / len(sizes), **common.metric_cells(entry, session.metrics)})
    return common.finish(session, "responses", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"tasks": tasks if responses is None else None, "score_context": score_context,
                                       "preset": preset},
                         generation=generation, system_prompts=dict(named))


def _system_prompts(prompts: str | Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if prompts is None:
        return {}
    from .prompt import PAPER_PROMPTS, named_prompts

    if prompts == "builtin":
        return dict(PAPER_PROMPTS)
    if isinstance(prompts, str):
        raise MatrixEvalError(f"system_prompts must be 'builtin', a mapping or a list of texts, got {prompts!r}; "
                              "on the command line, pass a prompts file")
    named = named_prompts(prompts)
    if NO_PROMPT in named:
        raise MatrixEvalError(f"a system prompt is named {NO_PROMPT!r}; that name is reserved for the row without one")
    return named


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
    if settings["sample"]:  # top_k=0 turns transformers' top-k cut off, as vLLM's default top_k=-1
        kwargs.update(temperature=settings["temperature"], top_p=settings["top_p"], top_k=settings["top_k"])
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
