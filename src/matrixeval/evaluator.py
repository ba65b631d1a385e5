"""`matrixeval.evaluate`: the one function the CLI, tests and notebooks call for a plain run."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .caveats import CaveatThresholds, parse_thresholds
from .data import load_task, parse_task_specs
from .data.recipes import DEFAULT_TASK
from .errors import MatrixEvalError
from .metric_info import LM_HEAD, ROLLING, NoLMHead, augment_options, family_options, needs_rolling
from .session import DEFAULT_MAX_LENGTH, EMBEDDED_DEFAULT_METRICS, Session

__all__ = ["DEFAULT_MAX_LENGTH", "EMBEDDED_DEFAULT_METRICS", "evaluate"]

logger = logging.getLogger(__name__)


def evaluate(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    text_field: str | None = None,
    txt_split: str = "blank",
    metrics: str | Sequence[str] | None = None,
    layers: str | Sequence[int] | None = "last",
    batch_size: int | str = 8,
    max_length: int = DEFAULT_MAX_LENGTH,
    limit: int | None = None,
    seed: int = 1234,
    device: str | None = None,
    output_path: str | os.PathLike | None = "results",
    log_samples: bool = False,
    exclude_bos: bool = False,
    on_error: str = "fail",
    store: str | os.PathLike | None = None,
    sample_size: int | None = None,
    sample_seed: int | None = None,
    caveats: CaveatThresholds | Mapping[str, Any] | Sequence[str] | None = None,
    rolling: bool = False,
    dist_timeout: float = 600.0,
    min_tokens: int | None = None,
    fixed_tokens: int | None = None,
    convention: str = "wei2024",
    lbl_normalization: str | None = None,
    renyi_alpha: float | None = None,
    alpha_req_window: str | Sequence[int] | None = None,
    n_views: int | None = None,
    infonce_temperature: float | None = None,
    dime_iters: int | None = None,
    include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> dict[str, Any] | None:
    """Evaluate one model on tasks and return the results dict (also written as JSON when output_path is set).

    `model_args` is lm-eval style ("pretrained=ID,dtype=bfloat16,..."); None = the packaged MiniLM, and
    then `metrics` None means EMBEDDED_DEFAULT_METRICS. `tasks` names recipes, NAME=LOCAL_FILE pairs or
    files; None = the built-in offline task. Under torchrun / accelerate launch every rank takes part and
    rank 0 returns the results; other ranks return None. Finished samples are stored durably as they
    complete (under `store`, default OUTPUT/<model>/store), so re-running the same call resumes; with
    output_path=None and no store nothing touches the disk. With two or more layers, ``<stem>_layers.png``
    (each metric against relative depth, one line per task) is drawn next to the JSON (``out["layers_plot"]``).
    `sample_size`/`sample_seed` set the random draw of the recipes that sample (default 10,000 records, seed
    1234 or the recipe's own), independent of `seed`. `caveats` sets the thresholds of the warnings each task
    carries in ``out["results"][task]["warnings"]`` (see `matrixeval.caveats`; also ``["KEY=VALUE"]`` or a
    mapping). `rolling` scores loss and perplexity over every token with lm-eval's rolling windows (a task whose
    recipe sets rolling does so anyway) and adds word_perplexity, byte_perplexity and bits_per_byte. Under
    torchrun a rank silent for `dist_timeout` seconds (stalled or dead) stops the others with one line (see
    `matrixeval.engine.dist`).
    `min_tokens` drops documents of fewer tokens, `fixed_tokens` L cuts every document to exactly L
    tokens and drops shorter ones (max_length becomes L); tokens are counted after tokenisation, special tokens
    included, and what is dropped is counted in ``skipped_by_status["too_short"]``. A task's own min_tokens /
    max_tokens (its recipe or task file) apply when neither is given. `convention` (wei2024 |
    layer_by_layer), `lbl_normalization`, `renyi_alpha` and `alpha_req_window` ("START:STOP") define the family
    metrics (prompt_entropy, dataset_entropy, alpha_req); ``config["conventions"]`` records every value's.
    `n_views` (default 8), `infonce_temperature` (0.1) and `dime_iters` (10) set the augmentation metrics
    (lidar, dime, infonce, infonce_mi_lower_bound: `n_views` seeded views per document, one forward each).
    `include_path` (folders or files, a list or a comma list) makes the tasks of those task files available by name; a task file may also
    be named in `tasks` directly. With `metrics` None, the metrics the task files name (``metrics:`` or
    ``metric_list:``) are measured, all those of every task that names some, in order.
    """
    if on_error not in ("skip", "fail"):
        raise MatrixEvalError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    caveats = parse_thresholds(caveats)
    family_options(convention, lbl_normalization=lbl_normalization, renyi_alpha=renyi_alpha,
                   alpha_req_window=alpha_req_window)  # a bad option fails before any data loads
    augment_options(n_views=n_views, lbl_normalization=lbl_normalization, renyi_alpha=renyi_alpha,
                    infonce_temperature=infonce_temperature, dime_iters=dime_iters)
    specs = parse_task_specs(DEFAULT_TASK if tasks is None else tasks, include_path)  # "" is an error, not the default
    # Data first: a bad file should fail in a second, not after minutes of loading a large model.
    loaded = [load_task(spec, text_field=text_field, txt_split=txt_split, limit=limit, sample_size=sample_size,
                        sample_seed=sample_seed, on_error=on_error) for spec in specs]
    from_files = [t.recipe for t in loaded if metrics is None and t.recipe is not None and t.recipe.metrics]
    if from_files:
        metrics = list(dict.fromkeys(m for recipe in from_files for m in recipe.metrics))
    rolls = {task.name: rolling or bool(task.recipe is not None and task.recipe.rolling) for task in loaded}
    asked = metrics.split(",") if isinstance(metrics, str) else list(metrics or ())
    for task in loaded:  # before the model loads
        needs_rolling([m.strip() for m in asked], rolls[task.name], task.name)
    try:
        session = Session(model_args, metrics=metrics, layers=layers, batch_size=batch_size, max_length=max_length,
                          seed=seed, device=device, output_path=output_path, store=store, exclude_bos=exclude_bos,
                          caveats=caveats, rolling=rolling, dist_timeout=dist_timeout, min_tokens=min_tokens,
                          fixed_tokens=fixed_tokens, convention=convention, lbl_normalization=lbl_normalization,
                          renyi_alpha=renyi_alpha, alpha_req_window=alpha_req_window, n_views=n_views,
                          infonce_temperature=infonce_temperature, dime_iters=dime_iters)
    except NoLMHead:
        if not from_files:
            raise
        raise MatrixEvalError(f"task file {from_files[0].file} asks for metrics {', '.join(from_files[0].metrics)}, "
                              "and loss/perplexity need a causal LM head this model lacks; pass --metrics or a "
                              "causal LM in --model_args") from None
    results: dict[str, Any] = {}
    per_sample: dict[str, list[dict[str, Any]]] = {}
    for task in loaded:
        recipe = task.recipe
        count = recipe.count_text if recipe is not None else None
        entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source,
                                     rolling=rolls[task.name], count_text=(lambda d, f=count: f(d.record)) if count else None,
                                     min_tokens=getattr(recipe, "min_tokens", None),
                                     max_tokens=getattr(recipe, "max_tokens", None))
        if entry is not None:
            results[task.name], per_sample[task.name] = entry, records
    out = session.finish(results, per_sample=per_sample if log_samples else None,
                         extra_config={"limit": limit, "tasks": [s.name for s in specs],
                                       "samples": {t.name: list(t.sample) for t in loaded if t.sample},
                                       "task_files": {s.name: s.recipe.file for s in specs if s.recipe is not None}})
    if out is not None and "results_path" in out and len(session.layers) > 1:
        out["layers_plot"] = _layers_plot(out)
    return out


def _layers_plot(out: dict[str, Any]) -> str | None:
    """Draw ``<stem>_layers.png`` next to the results JSON: each per-layer metric against relative depth."""
    from .report.compare import layer_profiles
    from .report.plots import caveat_notes, plot_layer_profiles

    path = out["results_path"]
    target = f"{path[: -len('.json')]}_layers.png"
    metrics = [m for m in out["config"]["metrics"] if m not in LM_HEAD and m not in ROLLING]
    if not metrics:
        return None
    try:
        plot_layer_profiles(layer_profiles([out], metrics), target, metrics=metrics,
                            higher_is_better=out["higher_is_better"],
                            title=f"{out['config']['model_name'].split('__')[-1]}: layer profiles",
                            notes=caveat_notes(out["results"]))
    except MatrixEvalError as err:  # e.g. no finite value: the numbers are written already
        logger.warning("no plot %s: %s", target, err)
        return None
    return target
