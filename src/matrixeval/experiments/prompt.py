"""Metrics of question-answer pairs with and without a prefix prompt (Wei et al. 2024 Table 3 / Table 10).

Each document becomes its QA text: the recipe's (question, answer) joined by a newline for tasks that split
into question and answer (openorca, dolly, hh_rlhf, openbookqa, piqa, alpaca, ...), otherwise the document
text. For openorca the question is the record's `question` alone: its own `system_prompt` is not part of the QA
(task `openorca_system` keeps it in the question). Each QA is measured once without a prompt (row "none": no
system prompt at all) and once after each prompt. The prompt and a newline are context only: read by the
model before the QA, in neither the matrix nor the loss. The tokenizer's special tokens sit in the same place
in every arm: its leading ones (e.g. BOS, [CLS]) first, then the prompt (if any), then the QA, then its
trailing ones (e.g. [SEP]), the QA tokenised on its own. So every arm's matrix holds exactly the same tokens:
the QA's, without BOS. A plain `run` of the same texts also keeps BOS in the matrix. Each prompt is its own
variant "<task>/<prompt>" (stored, resumable, data-parallel like `run`). The default task is pydoc_topics
(no QA split: the whole paragraph). The paper measures OpenOrca: use --tasks openorca (or
openorca=LOCAL_FILE).

Built-in prompts (--prompts FILE replaces them), verbatim from the paper's Table 10, typos included:
  prompt1  "You are an AI assistant that follows instruction extremely well. Help as much as you can."
  prompt2  "You are a helpful assistant, who always provide explanation. Think like you are answering to a
           five year old."
  prompt3  "You are an AI assistant. User will you give you a task. Your goal is to complete the task as
           faithfully as you can. While performing the task think step-by-step and justify your steps."
--prompts FILE: a .json list of strings (or {name: prompt}), a .jsonl of strings or {"name", "prompt"}
objects, or a text file with one prompt per non-empty line.

Output columns (table .md/.csv next to prompt_<timestamp>.json, and the "table" key of the JSON):
  task                the task
  prompt              "none" (no prompt), a prompt's name, or "average" (the mean over the prompts)
  n_samples           samples with a defined value
  n_truncated         samples cut at max_length (a long prompt leaves less room for the QA: check it is 0;
                      a prompted arm whose QA tokens differ from the arm without a prompt in any document
                      gets the ``arms_differ`` warning, also on the plot; --caveat max_arm_mismatch_fraction=F)
  mean_matrix_tokens  mean number of tokens in each sample's matrix (the QA tokens only)
  <metric>            the metric's data-set value on the QA tokens (e.g. matrix_entropy, loss); on the
                      "average" row the mean of the prompts' values (the paper's "Average" column)
  <metric>_stderr     its standard error over samples
  <metric>_delta      Δ = value with the prompt − value without; on the "average" row, Δ averaged over prompts
The JSON's "prompts" section holds every prompt's text, "average" the average value and "average_delta" the
average Δ per task and metric.
Plot: <stem>.png, bars of the first metric per task and prompt; further metrics in <stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..caveats import arms_differ
from ..caveats import report as report_caveats
from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = "QA pairs with and without a prefix prompt, prompt tokens outside the matrix (entropy paper Table 3)"

# Verbatim from the entropy paper's Table 10 (typos included): do not correct them.
PAPER_PROMPTS = {
    "prompt1": "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
    "prompt2": "You are a helpful assistant, who always provide explanation. Think like you are answering to a "
               "five year old.",
    "prompt3": "You are an AI assistant. User will you give you a task. Your goal is to complete the task as "
               "faithfully as you can. While performing the task think step-by-step and justify your steps.",
}
NO_PROMPT = "none"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", default=None,
                        help="file of prompts (.json list or mapping, .jsonl, or one per line) replacing the three "
                             "built-in prompts of the paper's Table 10 (default: those three)")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    prompts = read_prompts(args.prompts) if args.prompts else None
    out = prompt_experiment(args.model_args, args.tasks, prompts=prompts, metrics=args.metrics,
                            **common.options_from_args(args))
    return common.print_report(out)


def read_prompts(path: str | Path) -> dict[str, str]:
    """Named prompts from a .json / .jsonl / text file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise MatrixEvalError(f"cannot read prompts file {path} ({err.strerror}); pass an existing file") from None
    try:
        if path.suffix == ".json":
            items = json.loads(text)
        elif path.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = [line.strip() for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise MatrixEvalError(f"prompts file {path} is not valid JSON ({err})") from None
    if isinstance(items, list):
        items = [(it.get("name") or f"prompt{i + 1}", it.get("prompt")) if isinstance(it, dict)
                 else (f"prompt{i + 1}", it) for i, it in enumerate(items)]
    elif isinstance(items, dict):
        items = list(items.items())
    else:
        items = []
    prompts = {str(name): p for name, p in items}
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts.values()):
        raise MatrixEvalError(f"prompts file {path} holds no prompts or a non-text one; see `experiment prompt --help`")
    if NO_PROMPT in prompts or "average" in prompts:
        raise MatrixEvalError(f"prompts file {path} names a prompt 'none' or 'average'; those names are reserved")
    return prompts


def prompt_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    prompts: Mapping[str, str] | Sequence[str] | None = None,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task's QA texts without a prompt and after each prompt; see the module docstring.

    `prompts`: {name: text}, a list of texts (named prompt1, prompt2, ...), or None for the paper's three.
    Returns the results dict (``results["<task>/<prompt>"]``, ``table``, ``prompts``, ``average``,
    ``average_delta``) on rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    prompts = named_prompts(prompts)
    loaded = common.load_tasks(tasks, opts)  # data first: a bad file fails before a large model loads
    session = common.open_session(model_args, metrics, opts)
    layer = str(max(session.layers))
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    average: dict[str, dict[str, float]] = {}
    average_delta: dict[str, dict[str, float]] = {}
    for task in loaded:
        qa_docs = _qa_documents(task)
        task_rows = []
        for name, prompt in {NO_PROMPT: "", **prompts}.items():
            # "" is an empty context, not none: the QA is measured as a continuation in every arm alike
            docs = [Document(d.doc_id, d.text, d.record, context=prompt + "\n" if prompt else "") for d in qa_docs]
            variant = f"{task.name}/{name}"
            entry, records = session.run(variant, docs, load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            results[variant], per_sample[variant] = entry, records
            sizes = [r["layers"][layer]["n_tokens"] + r["layers"][layer]["n_dropped"] for r in records]
            if name == NO_PROMPT:
                base_sizes = dict(zip((r["doc_id"] for r in records), sizes))
            else:  # every arm must measure the same QA tokens of each document as the arm without a prompt
                mine = dict(zip((r["doc_id"] for r in records), sizes))
                differ = sum(mine.get(doc) != n for doc, n in base_sizes.items())
                report_caveats(entry, variant, [arms_differ(name, NO_PROMPT, differ, len(base_sizes),
                                                            opts.thresholds)])
            task_rows.append({"task": task.name, "prompt": name, "n_samples": entry["n_samples"],
                              "n_truncated": entry["n_truncated"], "mean_matrix_tokens": sum(sizes) / len(sizes),
                              **common.metric_cells(entry, session.metrics)})
        if task_rows:
            summary = _deltas(task_rows, session.metrics)
            average[task.name] = {m: summary[m] for m in session.metrics if m in summary}
            average_delta[task.name] = {k.removesuffix("_delta"): v for k, v in summary.items() if k.endswith("_delta")}
            rows.extend(task_rows + [summary])
    model = common.short_name(session.lm.name)
    from ..report.plots import caveat_notes

    notes = caveat_notes(results, ["arms_differ"])
    plots = {
        ("" if i == 0 else m): common.delta_plotter(rows, per_sample, m, "prompt", base=NO_PROMPT, average="average",
                                                    session=session, seed=opts.seed, notes=notes,
                                                    title=f"{model}: {m} on the QA tokens, Δ per prompt")
        for i, m in enumerate(session.metrics)
    }
    return common.finish(session, "prompt", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"tasks": tasks, "prompt_names": list(prompts)}, plots=plots,
                         prompts=dict(prompts), average=average, average_delta=average_delta)


def named_prompts(prompts: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """{name: text} from a mapping, a list of texts (named prompt1, prompt2, ...) or None (the paper's three)."""
    if prompts is None:
        return dict(PAPER_PROMPTS)
    named = dict(prompts) if isinstance(prompts, Mapping) else {f"prompt{i + 1}": p for i, p in enumerate(prompts)}
    if not named or not all(isinstance(p, str) and p.strip() for p in named.values()):
        raise MatrixEvalError("prompts must be non-empty texts; pass {name: text}, a list of texts, or None")
    return named


def _qa_documents(task) -> list[Document]:
    """The task's documents as QA text: question + newline + answer where the recipe splits them."""
    docs = []
    for d in task.documents:
        qa = common.question_answer(task, d)
        text = "\n".join(p for p in qa if p) if qa else d.text
        docs.append(Document(d.doc_id, text, d.record))
    return docs


def _deltas(rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Add Δ to the prompted rows; return the task's "average" row (mean value and mean Δ over prompts)."""
    base = rows[0]
    summary: dict[str, Any] = {"task": base["task"], "prompt": "average"}
    for m in metrics:
        if base.get(m) is None:
            continue
        values, deltas = [], []
        for r in rows[1:]:
            if r.get(m) is not None:
                r[f"{m}_delta"] = r[m] - base[m]
                values.append(r[m])
                deltas.append(r[f"{m}_delta"])
        if deltas:
            summary[m] = sum(values) / len(values)
            summary[f"{m}_delta"] = sum(deltas) / len(deltas)
    return summary
