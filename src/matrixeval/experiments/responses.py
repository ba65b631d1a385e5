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
position limit or --max_length leaves less room (a prompt that leaves none is skipped and counted, as is an empty
or whitespace-only instruction, which is never generated from). --preset
reference sets what the reference code (MLGroupJLU/MatrixNuclearNorm, code/vllm_inference.py) uses: sampling at
temperature 0.7, top_p 1, no top-k cut, 1000 new tokens (flags given explicitly still win). Each batch's
responses are stored as soon as they are generated (append-only, checksummed lines, one file per process or rank,
under the store folder), keyed by the model's identity (arguments, checkpoint files, library versions), the exact
prompts (doc ids, instructions, system prompts, the task's data source) and every generation setting; a re-run
with the same key resumes (or reuses) them and says so, anything else generates anew. The responses are also
written whole to <output_path>/<model>/responses_<task>[__<prompt>].jsonl (doc_id, instruction, system_prompt,
prompt, response, n_new_tokens).

--responses FILE scores existing responses instead (JSONL, or a JSON array), read as they are: Arena-Hard-Auto
model_answer files (question_id, model_id, choices[0].turns[0].content), FastChat / MT-bench answer files
(question_id, text, model_id), AlpacaEval outputs (instruction, output, generator), or plain records
(instruction or prompt, response or output). The layout is detected from the first record, or named with
--responses_format; --text_field names the response's field (a path such as choices.0.turns.0.content). A file
holding several models' answers gives one row per model_id / generator, each scored by the --model_args model
(the paper scores a model's own answers: run once per model). The instruction is read only with --score_context
prompt. The task is named after the file; --limit keeps the first N answers of each model.

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
  answers_by            (with --responses, when the file names models) whose answers the row scores
  n_skipped             empty instructions, prompts that left no room to generate, and empty responses
                        (by reason in the JSON's generation.skipped)
  mean_response_tokens  mean tokens in each matrix (with --score_context none: the response's tokens and the
                        tokenizer's special tokens; with prompt: the response's tokens only)
  <metric>              the metric on those tokens (default matrix_entropy, nuclear_norm, and loss when the
                        model has a causal LM head)
  <metric>_stderr       its standard error over responses
The JSON's "generation" section records how the responses were made, how they were scored and where they
were saved; "system_prompts" holds every system prompt's text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = ("generate responses (optionally under system prompts) and score them like the reference code "
               "(nuclear-norm paper §5.3.3 Table 2, §6)")
DEFAULT_TASKS = "alpaca_eval,arena_hard"
# loss joins these when the model has a causal LM head (an encoder cannot compute it)
DEFAULT_METRICS = "matrix_entropy,nuclear_norm"
AUTO_GENERATION_BATCH = 8
SCORE_CONTEXTS = ("none", "prompt")
NO_PROMPT = "none"
# Layouts of --responses files: where the response, the instruction, the model and the question id are.
RESPONSE_FORMATS = ("auto", "arena", "fastchat", "alpaca_eval", "plain")
# What code/vllm_inference.py of MLGroupJLU/MatrixNuclearNorm passes to vLLM (SamplingParams(temperature=0.7,
# max_tokens=1000); vLLM's defaults leave top_p at 1 and top-k off).
PRESETS = {"reference": {"sample": True, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "max_new_tokens": 1000}}
DEFAULTS = {"sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50, "max_new_tokens": 256}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.set_help(parser, "--tasks", f"comma-separated: NAME, NAME=LOCAL_FILE, or a data file (default: {DEFAULT_TASKS})")
    common.set_help(parser, "--model_args", "pretrained=ID_OR_PATH[,...] as for `run`; generating needs a causal LM "
                                      "(the default, the packaged MiniLM encoder, can only score --responses)")
    common.set_help(parser, "--text_field", "generating: the task's text field; with --responses: the response's "
                                            "field path, e.g. choices.0.turns.0.content (default: by the layout)")
    parser.add_argument("--responses", default=None,
                        help="score the responses in this file (JSONL or a JSON array: Arena-Hard-Auto, FastChat / "
                             "MT-bench, AlpacaEval or plain records) instead of generating")
    parser.add_argument("--responses_format", choices=RESPONSE_FORMATS, default="auto",
                        help="layout of the --responses file: arena (question_id, model_id, choices[0].turns[0]."
                             "content), fastchat (question_id, text, model_id), alpaca_eval (instruction, output, "
                             "generator), plain (instruction|prompt, response|output); default: auto (detected "
                             "from the first record)")
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
    common.add_metrics_arg(parser, None)
    common.set_help(parser, "--metrics", "comma-separated: matrix_entropy,effective_rank,nuclear_norm,"
                                         "nuclear_norm_exact,loss,perplexity,diff_erank (default: matrix_entropy,"
                                         "nuclear_norm, plus loss when the model has a causal LM head)")
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    system_prompts = None
    if args.system_prompt is not None:
        from .prompt import read_prompts

        system_prompts = "builtin" if args.system_prompt == "builtin" else read_prompts(args.system_prompt)
    out = responses_experiment(args.model_args, args.tasks, responses=args.responses,
                               responses_format=args.responses_format, system_prompts=system_prompts,
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


def chat_template_text(tokenizer) -> str | None:
    """The tokenizer's chat template as text (a named set of templates as canonical JSON), None without one."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    return template if isinstance(template, str) else json.dumps(template, sort_keys=True, default=str)


def format_prompt(tokenizer, instruction: str, system: str | None = None) -> str:
    """The instruction as the model reads it: a user turn (after a system turn when `system` is given) in the
    chat template when there is one; without one (or when the template refuses a system turn) the system prompt
    and a newline go in front of the instruction.

    When the template already writes the BOS token that the tokenizer adds again, the template's copy is
    dropped, so the model sees one BOS whether the prompt is tokenised for generation or for scoring. A template
    that does not compile or raises is one MatrixEvalError naming the template.
    """
    from jinja2.exceptions import TemplateError, TemplateSyntaxError

    if not getattr(tokenizer, "chat_template", None):
        return f"{system}\n{instruction}" if system else instruction
    messages = [{"role": "user", "content": instruction}]
    try:
        try:
            text = tokenizer.apply_chat_template(
                ([{"role": "system", "content": system}] if system else []) + messages,
                tokenize=False, add_generation_prompt=True)
        except TemplateSyntaxError:
            raise
        except TemplateError:  # e.g. "System role not supported" (Gemma, Mistral v0.1)
            if not system:
                raise
            messages = [{"role": "user", "content": f"{system}\n{instruction}"}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # a user's template: any failure in it is theirs to fix, not a traceback
        raise MatrixEvalError(_template_error(tokenizer, err)) from None
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) > 1 and ids[0] == ids[1] == tokenizer.bos_token_id:
            text = text[len(bos):]
    return text


def _template_error(tokenizer, err: Exception) -> str:
    from jinja2.exceptions import TemplateSyntaxError

    where = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    template = " ".join(str(chat_template_text(tokenizer)).split())
    shown = template if len(template) <= 60 else template[:57] + "..."
    kind = (f"has a syntax error (template line {err.lineno})" if isinstance(err, TemplateSyntaxError)
            else "raised an error")
    message = " ".join(str(err).split()) or type(err).__name__
    return (f"the chat template of {where!r} ({shown!r}) {kind}: {message}; fix chat_template in its "
            "tokenizer_config.json (or chat_template.jinja)")


def responses_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = DEFAULT_TASKS,
    *,
    responses: str | Path | None = None,
    responses_format: str = "auto",
    system_prompts: str | Mapping[str, str] | Sequence[str] | None = None,
    score_context: str = "none",
    preset: str | None = None,
    max_new_tokens: int | None = None,
    sample: bool | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Generate (or read) responses and score them; see the module docstring.

    `system_prompts`: None (no system prompt), "builtin" (the prompt experiment's three), {name: text} or a list
    of texts. Generation settings left None take the `preset`'s value, else the module's DEFAULTS. `metrics`
    None: matrix_entropy and nuclear_norm, plus loss when the model has a causal LM head.
    Returns the results dict (``results[variant]``, ``table``, ``generation``, ``system_prompts``) on rank 0
    and None elsewhere.
    """
    opts = common.options(common_options)
    if score_context not in SCORE_CONTEXTS:
        raise MatrixEvalError(f"score_context must be one of {', '.join(SCORE_CONTEXTS)}, got {score_context!r}")
    if responses_format not in RESPONSE_FORMATS:
        raise MatrixEvalError(f"responses_format must be one of {', '.join(RESPONSE_FORMATS)}, "
                              f"got {responses_format!r}")
    settings = generation_settings(preset, max_new_tokens=max_new_tokens, sample=sample, temperature=temperature,
                                   top_p=top_p, top_k=top_k)
    named = _system_prompts(system_prompts)
    if named and responses is not None:
        raise MatrixEvalError("--system_prompt generates responses; it cannot be combined with --responses FILE")
    # Data first: a bad task or answers file is reported before any model loads.
    loaded, given = [], None
    if responses is None:
        loaded = common.load_tasks(tasks, opts, default=DEFAULT_TASKS)
    else:
        given = read_responses_file(responses, responses_format, text_field=opts.text_field,
                                    need_instruction=score_context == "prompt", limit=opts.limit)
    if metrics is None:
        metrics = _default_metrics(model_args)
    if responses is None or score_context == "prompt":
        _check_template(model_args, [None, *named.values()])
    if responses is None:
        session = common.open_causal_session(model_args, metrics, opts,
                                             "generate responses (score existing ones with --responses FILE)")
    else:
        session = common.open_session(model_args, metrics, opts)
    tokenizer = session.lm.tokenizer
    variants = {NO_PROMPT: None, **named} if named else {None: None}
    sets: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    answers_by: dict[tuple[str, str | None], str | None] = {}
    if given is not None:
        stem = Path(responses).stem
        models = list(dict.fromkeys(it["model"] for it in given.items))
        for model in models:
            items = [it for it in given.items if it["model"] == model]
            if score_context == "prompt":
                for it in items:
                    it["prompt"] = it["prompt"] or format_prompt(tokenizer, it["instruction"])
            sets[(stem, model if len(models) > 1 else None)] = items
            answers_by[(stem, model if len(models) > 1 else None)] = model
        generation = {"source": str(responses), "format": given.format, "text_field": given.text_field,
                      "sha256": given.sha256, "inputs_digest": given.digest, "models": models}
        if len(models) > 1:
            generation["note"] = (f"{responses} holds the answers of {len(models)} models ({', '.join(map(str, models))}); "
                                  f"every row is scored by {session.lm.name} (--model_args), not by the model that "
                                  "wrote the answers. The paper's protocol scores a model's own answers: to follow "
                                  "it, run once per model with that model in --model_args and compare its own row.")
            print(f"note: {generation['note']}", file=sys.stderr)
    else:
        settings.update(seed=opts.seed, chat_template=chat_template_text(tokenizer), max_length=session.max_length,
                        dtype=str(session.lm.dtype).replace("torch.", ""), device_type=session.lm.device.type,
                        batch_size=_generation_batch(session))
        files, stores = {}, {}
        for task in loaded:
            for name, system in variants.items():
                items = [{"doc_id": d.doc_id, "instruction": _instruction(task, d), "system_prompt": system}
                         for d in task.documents]
                for it in items:
                    it["prompt"] = format_prompt(tokenizer, it["instruction"], system) if it["instruction"].strip() else None
                stem = task.name if name is None else f"{task.name}__{name}"
                variant = task.name if name is None else f"{task.name}/{name}"
                path = session.run_dir / f"responses_{stem}.jsonl" if opts.output_path is not None else None
                sets[(task.name, name)], stores[variant] = _generate(
                    session, variant, stem, items, {**settings, "system_prompt": system}, task.source)
                if path is not None and session.world.is_main:
                    from ..engine.files import write_text_atomic

                    write_text_atomic(path, "".join(json.dumps(it) + "\n" for it in sets[(task.name, name)]))
                files[variant] = str(path) if path else None
        generation = {**settings, "files": files, "stores": stores}
    generation["score_context"] = score_context
    generation["skipped"] = {}
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    for (task_name, name), items in sets.items():
        variant = task_name if name is None else f"{task_name}/{name}"
        skipped = _skip_counts(items)
        generation["skipped"][variant] = skipped
        if skipped.get("empty_instruction") and session.world.is_main:
            ids = [it["doc_id"] for it in items if it.get("skipped") == "empty_instruction"]
            shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
            print(f"responses {variant}: {len(ids)} empty or whitespace-only instructions skipped, not generated "
                  f"(doc_id {shown})", file=sys.stderr)
        usable = [it for it in items if not it.get("skipped") and it.get("response", "").strip()]
        if not usable:
            raise MatrixEvalError(f"no response of {variant!r} has text to score (all {len(items)} empty or skipped: "
                                  + ", ".join(f"{k} {v}" for k, v in skipped.items()) + ")")
        # none: the response alone, as the reference code tokenises it; prompt: a continuation of the prompt
        context = (lambda it: it["prompt"]) if score_context == "prompt" else (lambda it: None)
        docs = [Document(it["doc_id"], it["response"], {}, context=context(it)) for it in usable]
        entry, records = session.run(variant, docs, source=generation.get("source", task_name))
        if entry is None:
            continue
        entry["skipped_responses"] = skipped
        layer = str(max(session.layers))
        sizes = [r["layers"][layer]["n_tokens"] + r["layers"][layer]["n_dropped"] for r in records]
        results[variant], per_sample[variant] = entry, records
        by = answers_by.get((task_name, name))
        rows.append({"task": task_name, **({"system_prompt": name} if name is not None else {}),
                     **({"answers_by": by} if by is not None else {}),
                     "n_responses": entry["n_samples"], "n_skipped": len(items) - len(usable),
                     "mean_response_tokens": sum(sizes) / len(sizes), **common.metric_cells(entry, session.metrics)})
    return common.finish(session, "responses", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"tasks": tasks if responses is None else None, "score_context": score_context,
                                       "preset": preset},
                         generation=generation, system_prompts=dict(named))


def _check_template(model_args: str | Mapping[str, Any] | None, systems: Sequence[str | None]) -> None:
    """Before any weights load: the chat template formats a probe instruction under every system prompt, or the
    run stops with format_prompt's one line naming the template."""
    from ..models import parse_model_args
    from ..models.loading import load_tokenizer

    tokenizer = load_tokenizer(parse_model_args(model_args))
    for system in systems:
        format_prompt(tokenizer, "Name three colours.", system)


def _default_metrics(model_args: str | Mapping[str, Any] | None) -> str:
    """matrix_entropy and nuclear_norm, and loss when the model (read from its config alone) has an LM head."""
    from ..models import parse_model_args
    from ..models.loading import inspect_model

    has_head = inspect_model(parse_model_args(model_args)).has_lm_head
    return DEFAULT_METRICS + (",loss" if has_head else "")


def _skip_counts(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for it in items:
        reason = it.get("skipped") or ("empty_response" if not it.get("response", "").strip() else None)
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


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
    text = qa[0] if qa else doc.text
    return text if isinstance(text, str) else ""


@dataclass
class GivenResponses:
    """The answers of a --responses file, as read: one item per answer, in file order."""

    items: list[dict[str, Any]]
    format: str  # the layout read (detected or named)
    text_field: str | None  # the response's field path when --text_field named one
    sha256: str  # of the file's bytes
    digest: str  # keys.inputs_digest of what is scored (ids, models, instructions, prompts, responses)


# Each layout: where the response is, which field names the model, which names the question.
_LAYOUTS = {
    "arena": {"response": "choices.0.turns.0", "model": "model_id", "question": "question_id"},
    "fastchat": {"response": "text", "model": "model_id", "question": "question_id"},
    "alpaca_eval": {"response": "output", "model": "generator", "question": None},
    "plain": {"response": None, "model": None, "question": None},
}


def detect_format(record: Mapping[str, Any]) -> str:
    """The layout a --responses record is in: arena (choices), fastchat (question_id and text), alpaca_eval
    (generator), else plain."""
    if "choices" in record:
        return "arena"
    if "question_id" in record and "text" in record:
        return "fastchat"
    if "generator" in record:
        return "alpaca_eval"
    return "plain"


def read_responses_file(path: str | Path, fmt: str = "auto", *, text_field: str | None = None,
                        need_instruction: bool = False, limit: int | None = None) -> GivenResponses:
    """Read the answers of a --responses file (JSONL or a JSON array) in any of RESPONSE_FORMATS, checked record by
    record: a bad record is one MatrixEvalError naming it (``file:line``, or ``file: record N`` in an array).

    Each item has doc_id (the record's doc_id, else its position among its model's answers), question_id, model
    (model_id or generator; None when the file names none), instruction, prompt, response and record (where it
    is). The instruction is needed only when `need_instruction` (scoring with the prompt as context). `limit`
    keeps the first N answers of each model.
    """
    from ..data.fields import MissingField, get_path
    from ..engine.keys import inputs_digest

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MatrixEvalError(f"cannot read responses file {str(path)!r} ({err.strerror}); "
                              "pass an existing JSONL or JSON file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise MatrixEvalError(f"responses file {str(path)!r} is not UTF-8 text (bad byte at offset {err.start}); "
                              "save it as UTF-8") from None
    records = _records(path, text)
    if not records:
        raise MatrixEvalError(f"responses file {str(path)!r} holds no records; give one JSON object per answer")
    for where, rec in records:
        if not isinstance(rec, dict):
            raise MatrixEvalError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    layout = detect_format(records[0][1]) if fmt == "auto" else fmt
    spec = _LAYOUTS[layout]
    items: list[dict[str, Any]] = []
    seen: dict[tuple[str, Any, Any], str] = {}
    per_model: dict[Any, int] = {}
    for where, rec in records:
        field = text_field or spec["response"]
        try:
            if field is None:
                response = get_path_any(rec, "response", "output")
            else:
                response = get_path(rec, field)
            if layout == "arena" and text_field is None and isinstance(response, Mapping):
                response = get_path(response, "content")  # Arena-Hard turns are {"content": ...}; MT-bench's are text
        except MissingField as err:
            need = (f"--text_field {text_field!r}" if text_field else
                    f"the {layout} layout's response field" + (f" {field!r}" if field else "s 'response' or 'output'"))
            raise MatrixEvalError(f"{where}: no response at {need}: {err.field}; name the layout with "
                                  "--responses_format or the field with --text_field") from None
        if not isinstance(response, str):
            raise MatrixEvalError(f"{where}: the response is a {type(response).__name__}, not text; point "
                                  "--text_field at the answer's text")
        model = rec.get(spec["model"]) if spec["model"] else rec.get("model_id", rec.get("generator"))
        model = None if model is None else str(model)
        question = rec.get(spec["question"]) if spec["question"] else rec.get("question_id")
        instruction = rec.get("instruction")
        prompt = rec.get("prompt") if isinstance(rec.get("prompt"), str) and rec.get("prompt") else None
        if instruction is not None and not isinstance(instruction, str):
            raise MatrixEvalError(f"{where}: the instruction is a {type(instruction).__name__}, not text")
        if need_instruction and prompt is None and not (instruction or "").strip():
            raise MatrixEvalError(f"{where}: no instruction (or prompt) to read, and --score_context prompt reads "
                                  "one; score this file with --score_context none")
        position = per_model.get(model, 0)
        per_model[model] = position + 1
        if "doc_id" in rec:
            doc_id = rec["doc_id"]
            if isinstance(doc_id, bool) or not isinstance(doc_id, int) or doc_id < 0:
                raise MatrixEvalError(f"{where}: doc_id must be a non-negative integer, got {json.dumps(doc_id)}")
        else:
            doc_id = position
        for name, value in (("doc_id", doc_id), ("question_id", question)):
            if value is None:
                continue
            marker = (name, model, json.dumps(value, sort_keys=True))
            if marker in seen:
                whose = f" of model {model!r}" if model is not None else ""
                raise MatrixEvalError(f"{where}: {name} {json.dumps(value)}{whose} repeats the one at {seen[marker]}; "
                                      f"each answer needs its own {name}")
            seen[marker] = where
        items.append({"doc_id": doc_id, "question_id": question, "model": model, "instruction": instruction,
                      "prompt": prompt, "response": response, "record": where})
    if limit is not None:
        kept: dict[Any, int] = {}
        limited = []
        for it in items:
            if kept.get(it["model"], 0) < limit:
                kept[it["model"]] = kept.get(it["model"], 0) + 1
                limited.append(it)
        items = limited
    digest = inputs_digest([{"format": layout, "text_field": text_field},
                            *({k: it[k] for k in ("doc_id", "question_id", "model", "instruction", "prompt",
                                                   "response")} for it in items)])
    return GivenResponses(items, layout, text_field, hashlib.sha256(data).hexdigest(), digest)


def get_path_any(record: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in `record` (each a field path); MissingField naming them all."""
    from ..data.fields import MissingField, get_path

    for name in names:
        try:
            return get_path(record, name)
        except MissingField:
            continue
    raise MissingField(" or ".join(repr(n) for n in names))


def _records(path: Path, text: str) -> list[tuple[str, Any]]:
    """(where, record) for every record of a JSON array (text starting with "[", as AlpacaEval's
    model_outputs.json) or of JSON lines (anything else)."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise MatrixEvalError(f"responses file {str(path)!r} is not valid JSON ({err}); give a JSON array or "
                                  "one object per line") from None
        return [(f"{path}: record {i + 1}", rec) for i, rec in enumerate(data)]
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            out.append((f"{path}:{i + 1}", json.loads(line)))
        except (ValueError, RecursionError) as err:
            raise MatrixEvalError(f"{path}:{i + 1} is not JSON ({err}); one object per line") from None
    return out


def _generation_batch(session) -> int:
    return session.batch_size if isinstance(session.batch_size, int) else AUTO_GENERATION_BATCH


def _generate(session, variant: str, stem: str, items: list[dict[str, Any]], settings: Mapping[str, Any],
              source: str) -> tuple[list[dict[str, Any]], str | None]:
    """Responses for every item, with the store folder they are kept in (None without a store).

    The store is keyed (engine.keys) by the model's identity, the exact inputs (the task's data source, each
    item's doc_id, instruction, system prompt and prompt, in order) and `settings`; each rank appends every
    batch's responses to its own shard as soon as they are generated, and batches already stored under the same
    key are reused. An item whose prompt is None (an empty instruction) is skipped, never generated.
    """
    from ..engine.dist import broadcast_from_main, gather_to_main
    from ..engine.keys import inputs_digest, key_path, make_key, model_identity, say_reused
    from ..engine.store import NullStore, ShardStore

    inputs = inputs_digest([{"source": source}, *({k: it[k] for k in ("doc_id", "instruction", "system_prompt",
                                                                      "prompt")} for it in items)])
    key = make_key("responses", model_identity(session.args), inputs, settings)
    store: ShardStore | NullStore = NullStore()
    if session.store_root is not None:
        store = ShardStore(key_path(session.store_root, f"responses_{stem}", key), key)
    todo = [it for it in items if it["prompt"] is not None]
    size = settings["batch_size"]
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    world = session.world
    delay = float(os.environ.get("MATRIXEVAL_FAULT_BATCH_DELAY", "0") or 0)  # fault tests: a kill lands mid-run
    done = store.load()
    mine: list[dict[str, Any]] = []
    n_reused = 0
    try:
        for b, batch in enumerate(batches):
            if b % world.size != world.rank:
                continue
            if all(it["doc_id"] in done for it in batch):
                mine.extend(done[it["doc_id"]] for it in batch)
                n_reused += len(batch)
                continue
            # The batch's own seed: a resumed or distributed run draws exactly what an uninterrupted one does.
            out = _generate_batch(session, batch, settings, seed=settings["seed"] * 1_000_003 + b)
            store.append(out)
            mine.extend(out)
            if delay:
                time.sleep(delay)
    finally:
        store.close()
    parts = gather_to_main((mine, n_reused), world)
    merged = None
    if parts is not None:
        merged = {r["doc_id"]: r for part, _ in parts for r in part}
        n_reused = sum(n for _, n in parts)
        where = getattr(store, "directory", None)
        if todo and n_reused == len(todo):
            say_reused(f"responses {variant}", where, f"{n_reused} responses")
        elif n_reused:
            print(f"responses {variant}: resumed {n_reused} of {len(todo)} from the store {str(where)!r}, "
                  f"generating {len(todo) - n_reused}", file=sys.stderr)
    merged = broadcast_from_main(merged, world)
    out_items = [merged[it["doc_id"]] if it["prompt"] is not None else
                 {**it, "response": "", "n_new_tokens": 0, "skipped": "empty_instruction"} for it in items]
    directory = getattr(store, "directory", None)
    return out_items, str(directory) if directory is not None else None


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
