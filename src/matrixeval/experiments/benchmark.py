"""Multiple-choice accuracy beside matrix entropy, loss and perplexity (Wei et al. 2024 Table 1).

Tasks: openbookqa, winogrande, piqa (recipe names; offline, give local copies as NAME=LOCAL_FILE, e.g.
openbookqa=dev.jsonl, winogrande=dev_llmfoundry.jsonl, piqa=valid_labeled.jsonl). Accuracy is scored as
lm-evaluation-harness scores these tasks, by the log-likelihood of each choice given its context:
  openbookqa  context = the question stem; choices = " " + each answer text
  piqa        context = "Question: <goal>\\nAnswer:"; choices = " " + sol1, " " + sol2
  winogrande  the sentence cut at the blank and filled with each option is the context (the choices are the
              contexts), and the shared rest of the sentence, " " + continuation, is what is scored
Every (question, choice) pair is one document with doc_id = question_index × n_choices + choice_index,
measured through the engine as the variant "<task>/choices" (stored, resumable, data-parallel): the context
conditions the model, and the log-likelihood of the choice is the negated sum of its tokens' NLL (context
and choice are tokenised separately; the context carries the tokenizer's special tokens). A question with a
pair cut at --max_length is left out (counted). Then the task's own documents (question + correct answer)
are measured as the variant "<task>" for the metrics.

Output columns (table .md/.csv next to benchmark_<timestamp>.json, and the "table" key of the JSON):
  task              the task
  n_questions       questions scored
  chance            accuracy of a uniform guess, 1/n_choices averaged over the questions (dashed on the plot)
  accuracy          share of questions whose highest summed log-likelihood is the correct choice ("acc")
  accuracy_stderr   its standard error, sqrt(p(1−p)/(n−1))
  acc_norm          the same with each log-likelihood divided by the choice's length in characters, as
                    lm-eval's code computes acc_norm (its docs say bytes: the same for ASCII text); equal to
                    accuracy for winogrande, whose scored text is shared
  acc_norm_stderr   its standard error
  <metric>          the metric on question + correct answer (default matrix_entropy, loss, perplexity)
  <metric>_stderr   its standard error over samples
The results entry of each task holds the metrics plus accuracy and acc_norm (so `matrixeval compare`
correlates them), n_questions, n_questions_truncated and n_questions_rejected (records that are no valid
question: an answer key that names no choice, fewer than 2 choices, an empty choice or continuation; an error
naming the file and line unless --on_error skip, which leaves them out of every column); the JSON's "questions" section lists, per task and
question, the gold index, each choice's log-likelihood and the predictions. Plot: <stem>.png, accuracy and
acc_norm per task.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..data import Document, parse_task_specs
from ..errors import MatrixEvalError
from . import _common as common

logger = logging.getLogger(__name__)

DESCRIPTION = "multiple-choice accuracy (log-likelihood, lm-eval style) beside ME/loss/PPL (entropy paper Table 1)"
DEFAULT_TASKS = "openbookqa,winogrande,piqa"
DEFAULT_METRICS = "matrix_entropy,loss,perplexity"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: choice i is scored as `continuations[i]` after `contexts[i]`."""

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int
    norm_lengths: tuple[int, ...]  # characters of each choice, for acc_norm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.set_help(parser, "--tasks", "comma-separated multiple-choice tasks: NAME=LOCAL_FILE (offline) or NAME "
                                       f"(from the hub) of openbookqa, winogrande, piqa (default: {DEFAULT_TASKS})")
    common.add_metrics_arg(parser, DEFAULT_METRICS)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = benchmark_experiment(args.model_args, DEFAULT_TASKS if args.tasks is None else args.tasks, metrics=args.metrics,
                               **common.options_from_args(args))
    return common.print_report(out)


class BadQuestion(ValueError):
    """A record that is no valid multiple-choice question (it would be scored as a miss, or as a sure hit)."""


def _choices(texts: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if not isinstance(texts, (list, tuple)) or len(texts) < 2:
        raise BadQuestion(f"{len(texts) if isinstance(texts, (list, tuple)) else 'no'} choices; a question needs "
                          "at least 2")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise BadQuestion("a choice is empty or not a string")
    return tuple(" " + t for t in texts), tuple(len(t) for t in texts)


def _gold(key: Any, labels: Sequence[str]) -> int:
    if key not in labels:
        raise BadQuestion(f"answer key {key!r} is none of the {len(labels)} choices' labels {', '.join(labels)}")
    return list(labels).index(key)


def openbookqa_question(record: Mapping[str, Any]) -> Question:
    stem = record["question_stem"]
    if "choice_texts" in record:  # the local copy
        texts, key = record["choice_texts"], record["answer_key"]
        labels = list("ABCDEFGH"[: len(texts)]) if isinstance(texts, list) else []
    else:  # the hub layout
        texts, labels = record["choices"]["text"], list(record["choices"]["label"])
        key = record.get("answerKey", record.get("answer_key"))
    continuations, lengths = _choices(texts)
    if len(labels) != len(texts):
        raise BadQuestion(f"{len(texts)} choices but {len(labels)} labels")
    return Question((stem,) * len(texts), continuations, _gold(key, labels), lengths)


def piqa_question(record: Mapping[str, Any]) -> Question:
    texts = [record["sol1"], record["sol2"]]
    continuations, lengths = _choices(texts)
    label = record["label"]
    if isinstance(label, bool) or str(label).strip() not in ("0", "1"):
        raise BadQuestion(f"label {label!r} is neither 0 (sol1) nor 1 (sol2)")
    return Question((f"Question: {record['goal']}\nAnswer:",) * 2, continuations, int(label), lengths)


def winogrande_question(record: Mapping[str, Any]) -> Question:
    if "context_options" in record:  # llm-foundry layout: the options are already filled in
        contexts, rest, gold = list(record["context_options"]), record["continuation"], int(record["gold"])
    else:
        sentence = record["sentence"]
        cut = sentence.index("_")
        contexts = [sentence[:cut] + record["option1"], sentence[:cut] + record["option2"]]
        answer = str(record["answer"]).strip()
        if answer not in ("1", "2"):
            raise BadQuestion(f"answer {record['answer']!r} is neither 1 nor 2")
        rest, gold = sentence[cut + 1:].strip(), int(answer) - 1
    if not isinstance(rest, str) or not rest.strip():
        raise BadQuestion("the continuation is empty: every option would score the same (nothing is scored)")
    if len(contexts) < 2 or not 0 <= gold < len(contexts) or isinstance(record.get("gold"), bool):
        raise BadQuestion(f"gold {gold!r} is no index into the {len(contexts)} options")
    continuation = " " + rest.strip()
    n = len(contexts)
    return Question(tuple(contexts), (continuation,) * n, gold, (len(rest.strip()),) * n)


QUESTIONS = {"openbookqa": openbookqa_question, "winogrande": winogrande_question, "piqa": piqa_question}


def benchmark_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = DEFAULT_TASKS,
    *,
    metrics: str | Sequence[str] | None = DEFAULT_METRICS,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Score multiple-choice accuracy and measure the metrics on each task; see the module docstring.

    Returns the results dict (``results[task]`` with accuracy, acc_norm and the metrics, ``table``,
    ``questions``) on rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    parse_task_specs(DEFAULT_TASKS if tasks is None else tasks, opts.include_path)  # an empty --tasks is said first
    common.require_causal_model(model_args, "benchmark", "score choices by their log-likelihood")
    metrics = common.parse_list(metrics or DEFAULT_METRICS, str, "metrics")
    if "loss" not in metrics:
        metrics.append("loss")  # the choices' log-likelihoods come from the loss computation
    loaded = common.load_tasks(tasks, opts, default=DEFAULT_TASKS)  # data first: a bad file fails before a large model loads
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    questions_out: dict[str, list] = {}
    rows: list[dict[str, Any]] = []
    for task in loaded:  # every record is checked before the model loads
        if task.name not in QUESTIONS:
            raise MatrixEvalError(f"benchmark scores {', '.join(QUESTIONS)}; task {task.name!r} is none of them "
                                  "(give e.g. piqa=LOCAL_FILE)")
    checked = {task.name: _questions(task, opts.on_error) for task in loaded}
    session = common.open_causal_session(model_args, metrics, opts, "score choices by their log-likelihood")
    for task in loaded:
        questions, rejected = checked[task.name]
        questions_by_id = dict(questions)
        if rejected:
            kept = {doc_id for doc_id, _ in questions}
            task.documents = [d for d in task.documents if d.doc_id in kept]  # nor measured for the metrics
            task.skipped["invalid_record"] = task.skipped.get("invalid_record", 0) + rejected
        stride = max(len(q.contexts) for _, q in questions)
        choice_docs = [Document(doc_id * stride + i, cont, {}, context=ctx)
                       for doc_id, q in questions for i, (ctx, cont) in enumerate(zip(q.contexts, q.continuations))]
        _, choice_records = session.run(f"{task.name}/choices", choice_docs, source=task.source,
                                        require_spectral=False, token_controls=False)  # every choice is scored
        entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source)
        if entry is None:
            continue
        scored = score(questions, {r["doc_id"]: r for r in choice_records}, stride)
        acc = _proportion([s["pred"] == s["gold"] for s in scored])
        acc_norm = _proportion([s["pred_norm"] == s["gold"] for s in scored])
        entry.update(accuracy=acc[0], accuracy_stderr=acc[1], acc_norm=acc_norm[0], acc_norm_stderr=acc_norm[1],
                     n_questions=len(scored), n_questions_truncated=len(questions) - len(scored),
                     n_questions_rejected=rejected)
        results[task.name], per_sample[task.name] = entry, records
        per_sample[f"{task.name}/choices"] = choice_records
        questions_out[task.name] = scored
        chance = sum(1 / len(questions_by_id[s["doc_id"]].contexts) for s in scored) / len(scored) if scored else None
        entry["chance"] = chance
        rows.append({"task": task.name, "n_questions": len(scored), "chance": chance,
                     "accuracy": acc[0], "accuracy_stderr": acc[1],
                     "acc_norm": acc_norm[0], "acc_norm_stderr": acc_norm[1],
                     **common.metric_cells(entry, session.metrics)})
    model = common.short_name(session.lm.name)
    return common.finish(session, "benchmark", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"tasks": tasks}, plots={"": _plotter(rows, model)},
                         higher_is_better={"accuracy": True, "acc_norm": True}, questions=questions_out)


def _questions(task, on_error: str = "fail") -> tuple[list[tuple[int, Question]], int]:
    """The task's questions by doc_id, and how many records were rejected (only with on_error "skip"; else the
    first bad record is an error naming its file and line)."""
    make = QUESTIONS[task.name]
    out, rejected = [], 0
    for doc in task.documents:
        try:
            out.append((doc.doc_id, make(doc.record)))
        except (KeyError, ValueError, IndexError, TypeError) as err:
            reason = str(err) if isinstance(err, BadQuestion) else f"{type(err).__name__}: {err}"
            where = doc.where or f"record {doc.doc_id}"
            message = f"{where}: task {task.name!r}: not a valid multiple-choice question ({reason})"
            if on_error == "fail":
                raise MatrixEvalError(f"{message}; fix the record, or pass --on_error skip to leave such "
                                      "questions out (counted as n_questions_rejected)") from None
            if rejected < 5:
                logger.warning("skipping %s", message)
            rejected += 1
    if not out:
        raise MatrixEvalError(f"task {task.name!r}: none of its {len(task.documents)} records is a valid "
                              "multiple-choice question; check the file's layout")
    return out, rejected


def score(questions: Sequence[tuple[int, Question]], records: Mapping[int, Mapping[str, Any]],
          stride: int) -> list[dict[str, Any]]:
    """Per question: gold, each choice's log-likelihood (−nll_sum), the argmax prediction and the
    length-normalised one. Questions with a truncated pair are left out."""
    scored = []
    for doc_id, q in questions:
        recs = [records[doc_id * stride + i] for i in range(len(q.contexts))]
        if any(r["truncated"] for r in recs):
            continue
        loglik = [-r["nll_sum"] for r in recs]
        normed = [ll / max(n, 1) for ll, n in zip(loglik, q.norm_lengths)]
        scored.append({"doc_id": doc_id, "gold": q.gold, "loglik": loglik, "pred": _argmax(loglik),
                       "pred_norm": _argmax(normed)})
    return scored


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # ties: the first


def _proportion(hits: Sequence[bool]) -> tuple[float, float]:
    n = len(hits)
    if n == 0:
        return math.nan, math.nan
    p = sum(hits) / n
    return p, math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else math.nan


def _finite_or_zero(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else 0.0


def _plotter(rows: list[dict[str, Any]], model: str):
    def draw(path):
        from ..report.plots import plot_bars

        groups = {r["task"]: {"accuracy": r["accuracy"], "acc_norm": r["acc_norm"]} for r in rows}
        errors = {r["task"]: {k: _finite_or_zero(r[f"{k}_stderr"]) for k in ("accuracy", "acc_norm")} for r in rows}
        lines = {r["task"]: (r["chance"], f"chance {r['chance']:.3g}") for r in rows if r.get("chance") is not None}
        n = ", ".join(f"{r['task']} {r['n_questions']}" for r in rows)
        plot_bars(groups, path, ylabel="accuracy (higher is better)", title=f"{model}: multiple-choice accuracy",
                  errors=errors, lines=lines,
                  error_label=f"Error bars: ± 1 s.e., sqrt(p(1−p)/(n−1)). Dashed: chance, 1/n_choices averaged over "
                              f"the questions. Questions: {n}.")

    return draw
