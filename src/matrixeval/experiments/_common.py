"""What every experiment shares: its options, its session and tasks, and writing its table, JSON and plots.

An experiment's Python function takes the shared options as keyword arguments (``**common``, the same names as
the CLI flags: text_field, layers, batch_size, max_length, limit, seed, device, output_path, store, exclude_bos,
on_error, log_samples, sample_size, sample_seed, rolling, dist_timeout, min_tokens, fixed_tokens, caveat,
include_path, and the definitions: convention, lbl_normalization, renyi_alpha, alpha_req_window, n_views,
infonce_temperature, dime_iters). :func:`finish` writes
``<output_path>/<model>/<experiment>_<timestamp>.json`` (through ``Session.finish``) and, next to it with the same stem, the table as ``.md`` and ``.csv`` and any plots as ``.png``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..caveats import CaveatThresholds, parse_thresholds
from ..data import DEFAULT_TASK, Task, load_task, parse_task_specs
from ..engine.files import write_text_atomic
from ..errors import MatrixEvalError, WriteError
from ..metric_info import NoLMHead
from ..results import PER_SAMPLE_SPECTRAL, exp_or_inf
from ..session import DEFAULT_MAX_LENGTH, Session

logger = logging.getLogger(__name__)

__all__ = [
    "Options",
    "add_log_samples_arg",
    "add_metrics_arg",
    "delta_plotter",
    "finish",
    "load_tasks",
    "mean_std",
    "metric_cells",
    "metric_label",
    "open_causal_session",
    "open_session",
    "options",
    "options_from_args",
    "paired_delta",
    "parse_list",
    "positive_ints",
    "print_report",
    "question_answer",
    "require_causal_model",
    "sample_values",
    "short_name",
]


@dataclass(frozen=True)
class Options:
    """The options shared by every experiment (and by `matrixeval run`)."""

    text_field: str | None = None
    txt_split: str = "blank"
    layers: str | Sequence[int] | None = "last"
    batch_size: int | str = 8
    max_length: int = DEFAULT_MAX_LENGTH
    limit: int | None = None
    seed: int = 1234
    device: str | None = None
    output_path: str | Path | None = "results"
    store: str | Path | None = None
    exclude_bos: bool = False
    on_error: str = "fail"
    log_samples: bool = False
    sample_size: int | None = None
    sample_seed: int | None = None
    include_path: str | Sequence[str] | None = None  # folders (or files) of task files whose tasks --tasks may name
    rolling: bool = False
    dist_timeout: float = 600.0
    min_tokens: int | None = None
    fixed_tokens: int | None = None
    caveat: CaveatThresholds | Mapping[str, Any] | Sequence[str] | None = None
    # Each metric's definition (cli.add_definition_args; recorded in the results config's conventions)
    convention: str = "wei2024"
    lbl_normalization: str | None = None
    renyi_alpha: float | None = None
    alpha_req_window: str | Sequence[int] | None = None
    n_views: int | None = None
    infonce_temperature: float | None = None
    dime_iters: int | None = None

    @property
    def thresholds(self) -> CaveatThresholds:
        """The caveat thresholds (``--caveat KEY=VALUE``) as one :class:`CaveatThresholds`."""
        return parse_thresholds(self.caveat)


_NAMES = tuple(f.name for f in fields(Options))


def options(common: Mapping[str, Any]) -> Options:
    """The shared options from an experiment's ``**common`` keyword arguments; unknown names are an error."""
    unknown = sorted(set(common) - set(_NAMES))
    if unknown:
        raise MatrixEvalError(f"unknown option {unknown[0]!r}; the shared options are: {', '.join(_NAMES)}")
    opts = Options(**common)
    opts.thresholds  # a bad --caveat fails here, before any model loads
    return opts


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The shared options from parsed CLI flags, as keyword arguments for an experiment's function."""
    return {name: getattr(args, name) for name in _NAMES if hasattr(args, name)}


def set_help(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    """Say this experiment's own default for a shared flag (e.g. its own --tasks)."""
    action = parser._option_string_actions.get(flag)
    if action is not None:
        action.help = text


def release_memory() -> None:
    """Give back a released model's memory before the next one loads (one model in memory at a time)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def open_session(model_args: str | Mapping[str, Any] | None, metrics: str | Sequence[str] | None,
                 opts: Options) -> Session:
    """Load the model once for the whole experiment."""
    return Session(model_args, metrics=metrics, layers=opts.layers, batch_size=opts.batch_size,
                   max_length=opts.max_length, seed=opts.seed, device=opts.device, output_path=opts.output_path,
                   store=opts.store, exclude_bos=opts.exclude_bos, rolling=opts.rolling,
                   dist_timeout=opts.dist_timeout, caveats=opts.thresholds, min_tokens=opts.min_tokens,
                   fixed_tokens=opts.fixed_tokens, convention=opts.convention,
                   lbl_normalization=opts.lbl_normalization, renyi_alpha=opts.renyi_alpha,
                   alpha_req_window=opts.alpha_req_window, n_views=opts.n_views,
                   infonce_temperature=opts.infonce_temperature, dime_iters=opts.dime_iters)


def open_causal_session(model_args: str | Mapping[str, Any] | None, metrics: str | Sequence[str] | None,
                        opts: Options, why: str) -> Session:
    """Like :func:`open_session` for an experiment that needs a causal LM head; `why` completes "a causal LM
    head is needed to ..." in the error for any other model."""
    try:
        session = open_session(model_args, metrics, opts)
    except NoLMHead:
        session = None
    if session is None or not session.lm.has_lm_head:
        raise MatrixEvalError(f"a causal LM head is needed to {why}, and model {model_args or 'MiniLM (default)'!r} "
                              "has none; pass a causal LM in --model_args")
    return session


def require_causal_model(model_args: str | Mapping[str, Any] | None, experiment: str, why: str) -> None:
    """Before anything loads: one line when no model is given to an experiment whose default model cannot run it
    (the packaged MiniLM is an encoder, with no causal LM head)."""
    if model_args is None or (isinstance(model_args, str) and not model_args.strip()):
        raise MatrixEvalError(f"{experiment}: a causal LM head is needed to {why}, and the default model (the "
                              "packaged MiniLM encoder) has none; pass --model_args pretrained=ID_OR_PATH of a causal "
                              "LM (e.g. pretrained=EleutherAI/pythia-160m)")


def load_tasks(tasks: str | Sequence[str] | None, opts: Options, *, default: str = DEFAULT_TASK,
               limit: int | None | str = "options") -> list[Task]:
    """Load every task named in `tasks` (default `default`); `limit` overrides the options' limit."""
    specs = parse_task_specs(default if tasks is None else tasks, opts.include_path)
    lim = opts.limit if limit == "options" else limit
    return [load_task(s, text_field=opts.text_field, txt_split=opts.txt_split, limit=lim, sample_size=opts.sample_size,
                      sample_seed=opts.sample_seed, on_error=opts.on_error) for s in specs]


def question_answer(task: Task, doc) -> tuple[str, str] | None:
    """(question, answer) of a document by its recipe's `to_qa`, or None when the task has no such split."""
    if task.recipe is None or task.recipe.to_qa is None or doc.record is None:
        return None
    return task.recipe.to_qa(doc.record)


def metric_cells(entry: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """``{metric: value, metric_stderr: stderr}`` for each requested metric the entry has."""
    cells: dict[str, Any] = {}
    for m in metrics:
        if m in entry:
            cells[m] = entry[m]
            cells[f"{m}_stderr"] = entry.get(f"{m}_stderr")
    return cells


def parse_list(text: str | Sequence, kind: Callable[[str], Any], flag: str) -> list:
    """``"64,128"`` (or a sequence) → ``[64, 128]``, converted by `kind`; empty or unparsable is an error."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    items = [t for t in items if t != ""]
    try:
        values = [kind(t) if isinstance(t, str) else t for t in items]
    except ValueError:
        raise MatrixEvalError(f"{flag} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise MatrixEvalError(f"{flag} is empty; give at least one value")
    return values


def positive_ints(text: str | Sequence, flag: str) -> list[int]:
    """:func:`parse_list` of integers that must all be at least 1."""
    values = parse_list(text, int, flag)
    if any(not isinstance(v, int) or v < 1 for v in values):
        raise MatrixEvalError(f"{flag} must hold positive integers, got {text!r}")
    return values


def add_metrics_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    shown = default or "matrix_entropy, plus loss,perplexity when the model has an LM head"
    parser.add_argument("--metrics", default=default,
                        help="comma-separated: matrix_entropy,effective_rank,nuclear_norm,nuclear_norm_exact,loss,"
                             f"perplexity,diff_erank (default: {shown})")


def add_log_samples_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log_samples", action="store_true",
                        help="also write samples_<variant>_<timestamp>.jsonl (per-sample records) next to the JSON")


def finish(
    session: Session,
    experiment: str,
    results: Mapping[str, Any],
    table: list[dict[str, Any]],
    *,
    opts: Options,
    per_sample: Mapping[str, list[dict[str, Any]]] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    plots: Mapping[str, Callable[[Path], Any]] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    **sections: Any,
) -> dict[str, Any] | None:
    """Write ``<stem>.md``, ``<stem>.csv`` and the plots, then the experiment's JSON (with its ``table``) last:
    all or nothing, so a failed write leaves none of them (the store keeps the samples for the re-run).

    `plots` maps a suffix to a function drawing a PNG at the path it is given: ``""`` → ``<stem>.png``, ``"x"`` →
    ``<stem>_x.png``. `higher_is_better` declares extra columns (e.g. accuracy) for `matrixeval compare`.
    Returns the results dict with ``table`` and, when files were written, ``results_path`` and ``outputs``;
    None on ranks other than 0.
    """
    from ..report.tables import to_markdown, warnings_markdown, write_csv

    outputs: dict[str, Any] = {}

    def companions(path: Path, out: dict[str, Any]) -> list[Path]:
        """The table as .md and .csv and the plots beside the JSON, written before it (see Session.finish)."""
        stem = str(path)[: -len(path.suffix)]  # the timestamp has a "." of its own: no with_suffix
        outputs.update(json=str(path), markdown=f"{stem}.md", csv=f"{stem}.csv", plots=[])
        written: list[Path] = []
        try:
            notes = warnings_markdown(out)
            written.append(write_text_atomic(outputs["markdown"], to_markdown(table)
                                             + (f"\n\n{notes}" if notes else "") + "\n"))
            written.append(write_csv(outputs["csv"], table))
            for suffix, draw in (plots or {}).items():
                target = Path(f"{stem}.png" if not suffix else f"{stem}_{suffix}.png")
                try:
                    draw(target)
                except WriteError:
                    raise
                except MatrixEvalError as err:  # e.g. a metric with no finite value: the numbers are written anyway
                    logger.warning("no plot %s: %s", target.name, err)
                    continue
                outputs["plots"].append(str(target))
                written.append(target)
        except BaseException:
            for done in written:  # all or nothing: the set's files written so far go too
                done.unlink(missing_ok=True)
            raise
        return written

    out = session.finish(results, per_sample=per_sample if opts.log_samples else None, prefix=experiment,
                         extra_config={"experiment": experiment, "limit": opts.limit, "sample_size": opts.sample_size,
                                       "sample_seed": opts.sample_seed, **(extra_config or {})},
                         higher_is_better=higher_is_better, table=table, companions=companions, **sections)
    if out is None or "results_path" not in out:
        return out
    out["outputs"] = outputs
    return out


def sample_values(records: Sequence[Mapping[str, Any]], metric: str, layer: str,
                  hidden_size: int) -> dict[int, float] | None:
    """Each sample's own value of `metric` by doc_id, the values whose mean is the data-set value (NaN where the
    sample is not valid); None for a metric that is not a mean over samples (diff_erank)."""
    out: dict[int, float] = {}
    for r in records:
        if metric in ("loss", "perplexity"):
            loss = r.get("loss")
            value = math.nan if loss is None else (loss if metric == "loss" else exp_or_inf(loss))
        elif metric == "matrix_entropy" or metric in PER_SAMPLE_SPECTRAL:
            v = r["layers"][layer]
            key = "entropy" if metric == "matrix_entropy" else metric
            value = v[key] if v["status"] == "ok" and v.get(key) is not None else math.nan
            if metric == "matrix_entropy":
                value /= math.log(hidden_size)
        else:
            return None
        out[r["doc_id"]] = value
    return out


def paired_delta(base: Mapping[int, float], variants: Sequence[Mapping[int, float]], seed: int):
    """Summary (mean, stderr, bootstrap 95% interval, n) of the per-document Δ: each document's value in the
    variants (averaged over them when several) minus its value in `base`, over the documents finite in all."""
    from ..metrics import summarize

    diffs = []
    for doc, b in base.items():
        values = [v.get(doc, math.nan) for v in variants]
        if math.isfinite(b) and all(math.isfinite(x) for x in values):
            diffs.append(sum(values) / len(values) - b)
    return summarize(diffs, seed=seed)


def delta_plotter(rows: Sequence[Mapping[str, Any]], per_sample: Mapping[str, Sequence[Mapping[str, Any]]],
                  metric: str, variant: str, *, base: str, session: Session, seed: int, title: str,
                  average: str | None = None, notes: Sequence[str] = ()):
    """A drawer for `finish`'s plots: per task, one bar per `variant` value other than `base`, of the row's
    ``<metric>_delta`` (value − base value), with the 95% bootstrap interval of the mean per-document Δ
    (paired: the same documents in both; the `average` row pairs each document's mean Δ over the variants).
    The figure says what the bars and error bars are and gives each task's base value, and writes `notes`
    (the caveats concerning it)."""

    def draw(path: Path) -> None:
        from ..report.plots import plot_bars

        layer = str(max(session.layers))
        groups: dict[str, dict[str, float]] = {}
        errors: dict[str, dict[str, tuple[float, float]]] = {}
        sizes: set[int] = set()
        bases: list[str] = []
        for r in rows:
            task, name, delta = r["task"], r[variant], r.get(f"{metric}_delta")
            if name == base:
                if r.get(metric) is not None:
                    stderr = r.get(f"{metric}_stderr")
                    bases.append(f"{task} {r[metric]:.4g}" + (f" ± {stderr:.2g}" if stderr is not None else ""))
                continue
            if delta is None:
                continue
            groups.setdefault(task, {})[name] = delta
            names = ([n for n in dict.fromkeys(q[variant] for q in rows if q["task"] == task)
                      if n not in (base, average)] if name == average else [name])
            values = [sample_values(per_sample.get(f"{task}/{n}", []), metric, layer, session.lm.hidden_size)
                      for n in (base, *names)]
            if all(v is not None for v in values):
                summary = paired_delta(values[0], values[1:], seed)
                if summary.n > 1:
                    errors.setdefault(task, {})[name] = summary.ci95
                    sizes.add(summary.n)
        if not groups:
            raise MatrixEvalError(f"no {metric}_delta to plot; include {base!r} and another variant")
        n = f"{min(sizes)}" if len(sizes) == 1 else f"{min(sizes)}-{max(sizes)}" if sizes else "0"
        label = (f"Bars: Δ = value − value of {base!r} (data-set values). Error bars: 95% bootstrap interval "
                 f"(1000 resamples) of the mean per-document Δ, paired over the same {n} documents"
                 if errors else
                 f"Bars: Δ = value − value of {base!r}. No error bars: {metric} is not a mean over samples")
        label += f". {base} = " + "; ".join(bases) + " (± stderr)." if bases else "."
        plot_bars(groups, path, ylabel=f"Δ {metric_label(metric)}", title=title, errors=errors or None,
                  error_label=label, zero_line=True, notes=notes)

    return draw


def short_name(model_name: str) -> str:
    """``EleutherAI__pythia-160m`` → ``pythia-160m``: the model as plot titles show it."""
    return model_name.split("__")[-1] or model_name


def metric_label(metric: str) -> str:
    """An axis label: the metric and which direction is better, e.g. "matrix_entropy (lower is better)"."""
    from ..metric_info import METRICS

    info = METRICS.get(metric)
    if info is None or info.higher_is_better is None:
        return metric
    return f"{metric} ({'higher' if info.higher_is_better else 'lower'} is better)"


def print_report(out: Mapping[str, Any] | None) -> int:
    """The CLI's output: the table in Markdown on stdout with the caveats under it, where the files went on
    stderr. Returns 0."""
    if out is None:  # a rank other than 0
        return 0
    from ..report.tables import to_markdown, warnings_markdown

    notes = warnings_markdown(out)
    print(to_markdown(out["table"]) + (f"\n\n{notes}" if notes else ""))
    outputs = out.get("outputs")
    if outputs:
        files = [outputs["json"], outputs["markdown"], outputs["csv"], *outputs["plots"]]
        print("\nwritten: " + ", ".join(files), file=sys.stderr)
    return 0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than 2) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
