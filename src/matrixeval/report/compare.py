"""Compare model runs from their results files: tables, scaling fits, rankings, correlations.

Everything here reads the numbers already in the results (``results[task][metric]``, ``config``,
``higher_is_better``); nothing recomputes a metric from hidden states. Rows are plain dicts, ready for
:mod:`matrixeval.report.tables`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from matrixeval.errors import MatrixEvalError
from matrixeval.report.fit import PowerLawFit, fit_power_law

__all__ = [
    "DUPLICATES",
    "bootstrap_ranking",
    "compare_table",
    "ranking_notes",
    "dedupe",
    "identity_of",
    "label_of",
    "correlations",
    "fit_scaling",
    "fit_table",
    "layer_profiles",
    "load_results",
    "metric_direction",
    "model_name",
    "rank_models",
    "series_by_model",
    "unique_names",
]


def load_results(paths: str | Path | Iterable[str | Path]) -> list[dict]:
    """Read results JSON files (one per model run), in the order given.

    Raises:
        MatrixEvalError: for a missing file, a directory, the same file given twice, invalid JSON, or JSON without
            a ``"results"`` object.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    loaded = []
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        if path.resolve() in seen:
            raise MatrixEvalError(f"{path} is given twice (also as {seen[path.resolve()]}); "
                                  "pass each results file once, or its model would appear twice")
        seen[path.resolve()] = path
        if path.is_dir():
            raise MatrixEvalError(f"{path} is a directory; pass the results JSON files inside it, e.g. {path}/*.json")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MatrixEvalError(f"results file {path} not found; pass paths of results JSON files") from None
        except UnicodeDecodeError as err:
            raise MatrixEvalError(f"{path} is not UTF-8 text (byte {err.start}); "
                                  "pass a results JSON file written by matrixeval") from None
        except OSError as err:
            raise MatrixEvalError(f"cannot read {path}: {err.strerror or err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise MatrixEvalError(
                f"{path} is not valid JSON ({err}); pass a results file written by matrixeval"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise MatrixEvalError(f'{path} has no "results" object; pass a results file written by matrixeval')
        _check_shape(path, data)
        data.setdefault("_source", str(path))
        loaded.append(data)
    return loaded


def _check_shape(path: Path, data: dict) -> None:
    """One line naming the file for the shapes the rest of compare cannot read (an entry or config not an object)."""
    for task, entry in data["results"].items():
        if not isinstance(entry, dict):
            raise MatrixEvalError(f"{path}: results[{task!r}] is a {type(entry).__name__}, not an object; "
                                  "pass a results file written by matrixeval")
    if "config" in data and not isinstance(data["config"], dict):
        raise MatrixEvalError(f'{path}: "config" is a {type(data["config"]).__name__}, not an object; '
                              "pass a results file written by matrixeval")


# What a results file's config names its model by (the sweep's model first: a checkpoints file keeps it there).
_IDENTITY_KEYS = ("model_args", "dtype", "model_files", "model_fingerprint", "revision", "checkpoint")
DUPLICATES = ("keep-newest", "error", "keep-all")


def identity_of(result: dict) -> str:
    """The model's identity in a results file: its model arguments (sorted, so argument order does not matter),
    dtype and checkpoint fingerprint where the config has them. Two files of one model at fp32 and bf16 differ;
    two runs of the same model with the same arguments are the same identity, whatever their display names."""
    config = _sweep_config(result)
    parts = {}
    for key in _IDENTITY_KEYS:
        if key in config:
            value = config[key]
            if key == "model_args":
                value = ",".join(sorted(a.strip() for a in str(value).split(",") if a.strip()))
            parts[key] = value
    if not parts.get("model_args") and config.get("model_name"):
        parts["model_name"] = config["model_name"]
    return json.dumps(parts, sort_keys=True, default=str) if parts else f"unknown:{result.get('_source', id(result))}"


def _sweep_config(result: dict) -> dict:
    """``config`` — or, for a checkpoints sweep that records the swept model (``config.sweep``), that model's part."""
    config = result.get("config") or {}
    sweep = config.get("sweep") if isinstance(config.get("sweep"), dict) else None
    return {**config, **{k: v for k, v in sweep.items() if k in ("model_args", "model_name")}} if sweep else config


def label_of(result: dict) -> str:
    """The display name: ``config.model_name`` (of the swept model for a checkpoints file, when it records it under
    ``config.sweep``), else ``pretrained=`` from ``config.model_args``, else "unknown-model"."""
    config = _sweep_config(result)
    if config.get("model_name"):
        return str(config["model_name"])
    for arg in str(config.get("model_args", "")).split(","):
        key, _, value = arg.partition("=")
        if key.strip() == "pretrained" and value:
            return value.strip().replace("/", "__")
    return "unknown-model"


def dedupe(results: Sequence[dict], policy: str = "keep-newest") -> tuple[list[dict], list[str]]:
    """One result per model identity (:func:`identity_of`), and lines saying which files were dropped.

    ``keep-newest`` keeps the newest by the results' ``date`` (later in input order on a tie); ``error`` refuses
    two files of one identity; ``keep-all`` keeps every file (rows then carry a ``#n`` suffix).
    """
    if policy not in DUPLICATES:
        raise MatrixEvalError(f"unknown --duplicates {policy!r}; use one of: {', '.join(DUPLICATES)}")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault(identity_of(r), []).append(i)
    dups = {k: v for k, v in groups.items() if len(v) > 1}
    if not dups or policy == "keep-all":
        return list(results), []
    if policy == "error":
        k, idx = next(iter(dups.items()))
        raise MatrixEvalError(f"{len(idx)} files are the same model ({label_of(results[idx[0]])}): "
                              f"{', '.join(_source(results[i]) for i in idx)}; pass one, or --duplicates keep-newest")
    keep, notes = set(), []
    for idx in groups.values():
        newest = max(idx, key=lambda i: (str(results[i].get("date", "")), i))
        keep.add(newest)
        for i in idx:
            if i != newest:
                notes.append(f"dropped {_source(results[i])}: same model as {_source(results[newest])} "
                             f"({label_of(results[i])}), which is newer")
    return [r for i, r in enumerate(results) if i in keep], notes


def _source(result: dict) -> str:
    return str(result.get("_source", label_of(result)))


def model_name(result: dict) -> str:
    """The row name of a result: :func:`label_of`, plus its dtype when :func:`_unique_names` had to tell apart two
    identities of one label (``_row_name``, set by :func:`unique_names`)."""
    return str(result.get("_row_name") or label_of(result))


def unique_names(results: Sequence[dict]) -> list[dict]:
    """Give every identity a distinct row name: a label shared by several identities gets its dtype appended, and
    a ``#n`` suffix where even that is shared. Rankings key rows by this name, so two identities never merge."""
    labels = [label_of(r) for r in results]
    out = []
    seen: dict[str, int] = {}
    for r, label in zip(results, labels):
        name = label
        if labels.count(label) > 1:
            name = f"{label} ({(r.get('config') or {}).get('dtype', '?')})"
        seen[name] = seen.get(name, 0) + 1
        out.append({**r, "_row_name": name})
    counts: dict[str, int] = {}
    for r in out:
        if seen[r["_row_name"]] > 1:
            counts[r["_row_name"]] = counts.get(r["_row_name"], 0) + 1
            r["_row_name"] = f"{r['_row_name']} #{counts[r['_row_name']]}"
    return out


def compare_table(results: Sequence[dict], x: str | None = "n_params", layer: int | None = None) -> list[dict]:
    """One row per model × task: ``{"model", x, "task", <every scalar metric present>}``.

    Models are ordered by ``config[x]`` (input order when ``x`` is None, and for ties), tasks by name.
    A ``[lo, hi]`` interval such as ``matrix_entropy_ci95`` becomes two columns ``..._lo`` and ``..._hi``;
    nested objects (``by_layer``, ``skipped_by_status``) are left out. With ``layer``, metrics come from
    ``by_layer[str(layer)]`` instead of the task's top level.
    """
    rows = []
    for result in _ordered(results, x):
        for task in sorted(result["results"]):
            row = {"model": model_name(result)}
            if x is not None:
                row[x] = _x_value(result, x)
            row["task"] = task
            row.update(_task_metrics(result, task, layer))
            rows.append(row)
    return rows


def fit_scaling(results: Sequence[dict], metric: str, x: str = "n_params",
                layer: int | None = None) -> dict[str, PowerLawFit]:
    """Power-law fit ``metric = L0 + k * x**alpha`` across models, one per task that has the metric."""
    return {task: fit_power_law(xs, ys) for task, (xs, ys, _) in _points_by_task(results, metric, x, layer).items()}


def fit_table(results: Sequence[dict], x: str = "n_params", metrics: str | Sequence[str] | None = None,
              layer: int | None = None) -> list[dict]:
    """Rows ``{"metric", "task", "L0", "L0_stderr", "k", "k_stderr", "alpha", "alpha_stderr", "r2", "n", "note"}``,
    one per metric and task.

    ``metrics`` defaults to every metric declared in ``higher_is_better`` that the results contain. ``note``
    is empty for a good fit, otherwise why it is ill-posed or means little (poor R², extreme or undetermined
    parameters: :attr:`PowerLawFit.caution`) and how many models had no finite value.
    """
    if metrics is None:
        declared = {m for r in results for m in r.get("higher_is_better", {})}
        metrics = [m for m in _metric_names(results, layer) if m in declared]
    elif isinstance(metrics, str):
        metrics = [metrics]
    rows = []
    for metric in metrics:
        points = _points_by_task(results, metric, x, layer)
        if not points:
            _require_metric(results, metric, layer)
        for task, (xs, ys, n_missing) in points.items():
            fit = fit_power_law(xs, ys)
            notes = [note for note in (fit.ill_posed, fit.caution) if note]
            if n_missing:
                notes.append(f"{n_missing} model(s) without a finite value left out")
            rows.append({"metric": metric, "task": task, "L0": fit.L0, "L0_stderr": fit.L0_stderr, "k": fit.k,
                         "k_stderr": fit.k_stderr, "alpha": fit.alpha, "alpha_stderr": fit.alpha_stderr,
                         "r2": fit.r2, "n": fit.n_points, "note": "; ".join(notes)})
    return rows


RANK_BY = ("mean", "mean_rank")


def rank_models(results: Sequence[dict], metric: str, task: str | None = None, layer: int | None = None,
                higher_is_better: bool | None = None, by: str = "mean") -> list[dict]:
    """Rank models by ``metric``, best first (rank 1), in the direction :func:`metric_direction` gives unless given.

    With ``task``: rows ``{"rank", "model", metric}``. Without, over the tasks every model has a finite value for:
    ``by="mean"`` (the Matrix Nuclear-Norm paper's Table 4, "Avg Score") ranks by the mean of the metric over those
    tasks, rows ``{"rank", "model", "average", <task>: value, ...}``; ``by="mean_rank"`` ranks within every task and
    then by the mean of those ranks, rows ``{"rank", "model", "mean_rank", <task>: rank, ...}``. Ties share the
    average rank (scipy.stats.rankdata ``method="average"``).
    """
    from scipy.stats import rankdata

    if by not in RANK_BY:
        raise MatrixEvalError(f"unknown ranking {by!r}; use one of: {', '.join(RANK_BY)}")
    _require_metric(results, metric, layer)
    better_high = metric_direction(results, metric) if higher_is_better is None else higher_is_better
    names = [model_name(r) for r in results]
    if task is not None:
        values = np.array([_value(r, task, metric, layer) for r in results], dtype=np.float64)
        if np.isnan(values).any():
            missing = [n for n, v in zip(names, values) if np.isnan(v)]
            raise MatrixEvalError(
                f"models {missing} have no finite {metric!r} for task {task!r}; drop them or pick another task"
            )
        ranks = rankdata(-values if better_high else values, method="average")
        rows = [{"rank": float(rk), "model": n, metric: float(v)} for rk, n, v in zip(ranks, names, values)]
        return sorted(rows, key=lambda row: row["rank"])

    tasks = [t for t in _tasks(results) if all(math.isfinite(_value(r, t, metric, layer)) for r in results)]
    if not tasks:
        raise MatrixEvalError(f"no task has {metric!r} for every model; pass task=... to rank within one task")
    if by == "mean":
        values = {t: [_value(r, t, metric, layer) for r in results] for t in tasks}
        average = np.mean([values[t] for t in tasks], axis=0)
        rows = [{"model": n, "average": float(average[i]), **{t: values[t][i] for t in tasks}}
                for i, n in enumerate(names)]
        final = rankdata(-average if better_high else average, method="average")
    else:
        per_task = {t: {row["model"]: row["rank"] for row in rank_models(results, metric, t, layer, better_high)}
                    for t in tasks}
        rows = [{"model": n, "mean_rank": float(np.mean([per_task[t][n] for t in tasks])),
                 **{t: per_task[t][n] for t in tasks}} for n in names]
        final = rankdata([row["mean_rank"] for row in rows], method="average")
    rows = [{"rank": float(rk), **row} for rk, row in zip(final, rows)]
    return sorted(rows, key=lambda row: row["rank"])


# Below this many models a correlation is computed but carries a note: with 3 or 4 points one model decides it.
MIN_MODELS_FOR_CORRELATION = 5


def correlations(results: Sequence[dict], metric: str | Sequence[str], with_: str = "accuracy",
                 task: str | None = None, layer: int | None = None) -> list[dict]:
    """Spearman and Kendall correlation across models of each metric with ``with_`` (default accuracy).

    Rows ``{"metric", "with", "task", "n", "spearman", "spearman_p", "kendall", "kendall_p", "note"}`` per metric
    and task. ``with_`` is read from the task's top level (also when ``layer`` selects per-layer metrics). When a
    task has no ``with_`` values, fewer than 3 models with both, or constant values, the statistics are NaN and
    ``note`` says why; with 3 or 4 models they are computed and ``note`` says they rest on few models.
    """
    from scipy.stats import ConstantInputWarning, kendalltau, spearmanr

    metrics = [metric] if isinstance(metric, str) else list(metric)
    rows = []
    for m in metrics:
        for t in [task] if task is not None else _tasks(results):
            pairs = [(_value(r, t, m, layer), _value(r, t, with_, None)) for r in results]
            pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
            row = {"metric": m, "with": with_, "task": t, "n": len(pairs), "spearman": math.nan, "spearman_p": math.nan,
                   "kendall": math.nan, "kendall_p": math.nan, "note": ""}
            if not any(math.isfinite(_value(r, t, with_, None)) for r in results):
                row["note"] = f"no {with_!r} in the results for task {t!r}; correlations need it per model"
            elif len(pairs) < 3:
                row["note"] = f"{len(pairs)} model(s) have both {m!r} and {with_!r}; correlations need at least 3"
            else:
                a, b = np.array(pairs).T
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConstantInputWarning)
                    rho, kendall = spearmanr(a, b), kendalltau(a, b)
                row.update(spearman=float(rho.statistic), spearman_p=float(rho.pvalue),
                           kendall=float(kendall.statistic), kendall_p=float(kendall.pvalue))
                if np.ptp(a) == 0 or np.ptp(b) == 0:
                    row["note"] = "constant values; correlation undefined"
                elif len(pairs) < MIN_MODELS_FOR_CORRELATION:
                    row["note"] = (f"only {len(pairs)} models (fewer than {MIN_MODELS_FOR_CORRELATION}): one model "
                                   "moves the correlation a lot; read it as a hint, not a finding")
            rows.append(row)
    return rows


def series_by_model(results: Sequence[dict], metric: str, x: str, task: str,
                    layer: int | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """``{model: (xs, ys)}`` of ``metric`` for ``task`` against ``config[x]`` (e.g. ``max_length``), grouping runs
    of the same model and sorting each series by x; input for :func:`matrixeval.report.plots.plot_series`."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        value = _value(r, task, metric, layer)
        if math.isfinite(value):
            series.setdefault(model_name(r), []).append((float(_x_value(r, x)), value))
    if not series:
        raise MatrixEvalError(
            f"no results have {metric!r} for task {task!r}; available tasks: {', '.join(_tasks(results))}"
        )
    return {name: tuple(map(list, zip(*sorted(points)))) for name, points in series.items()}


def _ordered(results: Sequence[dict], x: str | None) -> list[dict]:
    if x is None:
        return list(results)
    return sorted(results, key=lambda r: _x_value(r, x))  # sorted() is stable: ties keep input order


def _x_value(result: dict, x: str):
    value = result.get("config", {}).get(x)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise MatrixEvalError(f"results for {model_name(result)} have no numeric config[{x!r}] (got {value!r}); "
                              "pass x= a numeric config key that every result has")
    return value


def _task_metrics(result: dict, task: str, layer: int | None) -> dict:
    entry = result["results"].get(task, {})
    if layer is not None:
        by_layer = entry.get("by_layer", {})
        if str(layer) not in by_layer:
            raise MatrixEvalError(f"{model_name(result)} / {task} has no by_layer[{str(layer)!r}]; "
                                  f"available layers: {', '.join(by_layer) or 'none'}")
        entry = by_layer[str(layer)]
    metrics = {}
    for key, value in entry.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = value
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            metrics[f"{key}_lo"], metrics[f"{key}_hi"] = value
    return metrics


def _value(result: dict, task: str, metric: str, layer: int | None) -> float:
    """The metric as a float; NaN when this run has no such task or metric."""
    if task not in result["results"]:
        return math.nan
    value = _task_metrics(result, task, layer).get(metric)
    return math.nan if value is None else float(value)


def _tasks(results: Sequence[dict]) -> list[str]:
    return sorted({t for r in results for t in r["results"]})


def _require_metric(results: Sequence[dict], metric: str, layer: int | None) -> None:
    """Fail with what the files do hold when none of them has ``metric`` (before asking for its direction)."""
    available = _metric_names(results, layer)
    if metric not in available:
        raise MatrixEvalError(f"no results contain metric {metric!r}; pick one of: {', '.join(available)}")


def _metric_names(results: Sequence[dict], layer: int | None) -> list[str]:
    names: dict[str, None] = {}
    for r in results:
        for t in r["results"]:
            names.update(dict.fromkeys(_task_metrics(r, t, layer)))
    return list(names)


def _points_by_task(results, metric, x, layer) -> dict[str, tuple[list, list, int]]:
    """{task: (xs, ys, n_missing)} over models with a finite value, for tasks where any model has the metric."""
    points = {}
    for t in _tasks(results):
        pairs = [(_x_value(r, x), _value(r, t, metric, layer)) for r in results if t in r["results"]]
        finite = [(a, b) for a, b in pairs if math.isfinite(b)]
        if finite:
            points[t] = ([a for a, _ in finite], [b for _, b in finite], len(pairs) - len(finite))
    return points


def metric_direction(results: Sequence[dict], metric: str) -> bool:
    """Whether higher is better for ``metric``: matrixeval's own direction for the metrics it writes (so files
    written before a direction was corrected rank right), else what the results declare in ``higher_is_better``.

    Raises:
        MatrixEvalError: when the results declare no direction, or disagree, for a metric matrixeval does not know.
    """
    from matrixeval.metric_info import direction, has_no_direction

    if has_no_direction(metric):
        raise MatrixEvalError(f"{metric!r} is neither better high nor low; to rank by it anyway pass "
                              f"--higher_is_better {metric}=true|false (higher_is_better= in Python)")
    known = direction(metric)
    if known is not None:
        return known
    declared = {bool(r["higher_is_better"][metric]) for r in results if metric in r.get("higher_is_better", {})}
    if len(declared) != 1:
        problem = "declare no" if not declared else "disagree on"
        raise MatrixEvalError(
            f"the results {problem} higher_is_better for {metric!r}; "
            f"pass --higher_is_better {metric}=true|false (higher_is_better= in Python)"
        )
    return declared.pop()


def layer_profiles(results: Sequence[dict], metrics: Sequence[str] | None = None) -> list[dict]:
    """One row per model × task × layer: ``{"model", "task", "layer", "relative_depth", <metric>,
    <metric>_stderr, <metric>_lo, <metric>_hi, ...}`` from each task's ``by_layer``.

    ``relative_depth`` = layer / ``config.num_layers`` (Hugging Face numbering: 0 = embeddings, 1 = the last
    layer's output), so models of different depth line up. ``metrics`` defaults to every metric the by_layer
    entries hold (per-layer metrics only; loss has no layer); ``_lo``/``_hi`` are the 95% interval.
    """
    rows = []
    for result in results:
        depth = result.get("config", {}).get("num_layers")
        if not isinstance(depth, int) or depth < 1:
            raise MatrixEvalError(f"results for {model_name(result)} have no config.num_layers (got {depth!r}); "
                                  "pass results files written by matrixeval run")
        for task in sorted(result["results"]):
            by_layer = result["results"][task].get("by_layer") or {}
            for layer in sorted(by_layer, key=int):
                entry = by_layer[layer]
                row = {"model": model_name(result), "task": task, "layer": int(layer),
                       "relative_depth": int(layer) / depth}
                names = metrics if metrics is not None else [k for k in entry if f"{k}_stderr" in entry]
                for m in names:
                    if m not in entry:
                        continue
                    row[m] = entry[m]
                    row[f"{m}_stderr"] = entry.get(f"{m}_stderr")
                    ci = entry.get(f"{m}_ci95") or (None, None)
                    row[f"{m}_lo"], row[f"{m}_hi"] = ci
                rows.append(row)
    if not rows:
        raise MatrixEvalError("no results have by_layer values; run with --layers all (or several layers)")
    return rows


# ---- paired bootstrap of rankings over the documents every model shares ----

N_RESAMPLES = 1000


def _samples_path(result: dict, task: str) -> Path | None:
    """``samples_<task>_<stamp>.jsonl`` beside ``<prefix>_<stamp>.json`` (what ``--log_samples`` writes)."""
    source = result.get("_source")
    if not source or "_" not in Path(source).stem:
        return None
    stamp = Path(source).stem.rsplit("_", 1)[1]
    path = Path(source).with_name(f"samples_{task.replace('/', '__')}_{stamp}.jsonl")
    return path if path.is_file() else None


def _sample_values(result: dict, task: str, metric: str, layer: int | None) -> dict[int, float] | None:
    """``{doc_id: per-sample value}`` of ``metric`` from the run's samples file (finite values of ok samples), or
    None when there is no samples file or the metric has no per-sample column."""
    path = _samples_path(result, task)
    if path is None:
        return None
    entry = result["results"].get(task, {})
    layer_key = str(layer if layer is not None else entry.get("primary_layer", ""))
    field = "entropy" if metric == "matrix_entropy" else metric
    out: dict[int, float] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MatrixEvalError(f"cannot read samples file {path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            doc = int(record["doc_id"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise MatrixEvalError(f"{path} line {number} is not a samples record with a doc_id") from None
        if metric in ("loss", "perplexity"):
            value = record.get("loss")
            if value is not None and metric == "perplexity":
                value = math.exp(value) if value < 709 else math.inf
        else:
            values = (record.get("layers") or {}).get(layer_key) or {}
            if field not in values:
                return None
            value = values[field] if values.get("status", "ok") == "ok" else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[doc] = float(value)
    return out


def bootstrap_ranking(results: Sequence[dict], metric: str, task: str | None = None, layer: int | None = None,
                      higher_is_better: bool | None = None, by: str = "mean", n_resamples: int = N_RESAMPLES,
                      seed: int = 0) -> dict:
    """Paired bootstrap of :func:`rank_models` over the documents every model shares (matched by doc_id).

    Every resample draws, per task (in name order), the shared documents with replacement from one
    ``numpy.random.default_rng(seed)`` — the same draw for every model, so the comparison is paired — recomputes
    each model's per-task mean over them and ranks as ``by`` does. Returns ``{"n_resamples", "seed", "n_docs":
    {task: n}, "intervals": {model: [lo, hi]}`` (2.5 and 97.5 percentiles of the model's rank), ``"flips":
    [{"better", "worse", "flip_rate"}]`` (for neighbours in the ranking, the share of resamples that rank the
    worse strictly ahead)``}``, or ``{"unavailable": why}`` when not every file has samples for the metric.
    """
    from scipy.stats import rankdata

    if n_resamples < 1:
        raise MatrixEvalError(f"--bootstrap must be at least 1 (got {n_resamples})")
    better_high = metric_direction(results, metric) if higher_is_better is None else higher_is_better
    ranking = rank_models(results, metric, task, layer, better_high, by=by)
    names = [model_name(r) for r in results]
    tasks = [task] if task is not None else [t for t in _tasks(results) if t in ranking[0]]
    columns: dict[str, np.ndarray] = {}
    n_docs = {}
    from matrixeval.metric_info import METRICS

    if metric in METRICS and METRICS[metric].scope == "per data set":
        return {"unavailable": f"{metric} is one value of the whole data set, with no per-sample values to "
                               "resample; ranked without intervals"}
    for t in tasks:
        per_model = [_sample_values(r, t, metric, layer) for r in results]
        missing = [n for n, v in zip(names, per_model) if v is None]
        if missing:
            return {"unavailable": f"no per-sample {metric} for {t} from {', '.join(missing)} (run with "
                                   "--log_samples); ranked without intervals"}
        shared = sorted(set.intersection(*(set(v) for v in per_model)))
        if not shared:
            return {"unavailable": f"the models share no document with a finite {metric} on {t}; "
                                   "ranked without intervals"}
        n_docs[t] = len(shared)
        columns[t] = np.array([[v[d] for d in shared] for v in per_model])  # models × docs
    rng = np.random.default_rng(seed)
    sign = -1.0 if better_high else 1.0
    ranks = np.empty((n_resamples, len(results)))
    for b in range(n_resamples):
        scores = {}
        for t in tasks:
            idx = rng.integers(0, n_docs[t], n_docs[t])
            scores[t] = columns[t][:, idx].mean(axis=1)
        if by == "mean_rank" and task is None:
            per_task = np.array([rankdata(sign * scores[t], method="average") for t in tasks])
            ranks[b] = rankdata(per_task.mean(axis=0), method="average")
        else:
            ranks[b] = rankdata(sign * np.mean([scores[t] for t in tasks], axis=0), method="average")
    position = {n: i for i, n in enumerate(names)}
    intervals = {n: [float(np.percentile(ranks[:, i], 2.5)), float(np.percentile(ranks[:, i], 97.5))]
                 for n, i in position.items()}
    order = [row["model"] for row in ranking]
    flips = [{"better": a, "worse": b, "flip_rate": float(np.mean(ranks[:, position[b]] < ranks[:, position[a]]))}
             for a, b in zip(order, order[1:])]
    return {"n_resamples": n_resamples, "seed": seed, "n_docs": n_docs, "intervals": intervals, "flips": flips}


# ---- notes on rankings: the caveats (matrixeval.caveats codes in results' "warnings") that concern the metric ----

NUCLEAR_ORDER_DISAGREES = "nuclear_norm_order_disagrees"
_CAVEAT_METRICS = {  # caveat code -> metrics it concerns (None: every metric)
    "perplexity_dominated": ("perplexity",),
    "entropy_ceiling": ("matrix_entropy", "effective_rank", "effective_rank_sigma", "rankme", "rankme_reptrix"),
    "nuclear_norm_full": ("nuclear_norm",),
    "few_samples": None,
    "truncated": None,
    "views_truncated": ("lidar", "dime", "infonce", "infonce_mi_lower_bound"),
}


def ranking_notes(results: Sequence[dict], metric: str, task: str | None = None,
                  layer: int | None = None) -> list[str]:
    """One line per caveat in the files' ``warnings`` that concerns a ranking by ``metric`` (on ``task``, or on
    any task), and one when ``nuclear_norm`` and ``nuclear_norm_exact`` order the models differently."""
    notes = []
    for r in results:
        for t, entry in sorted(r["results"].items()):
            if task is not None and t != task:
                continue
            for w in entry.get("warnings") or []:
                if not isinstance(w, dict):
                    continue
                concerned = _CAVEAT_METRICS.get(str(w.get("code")), ())
                if concerned is None or metric in concerned:
                    notes.append(f"ranking by {metric}: {model_name(r)} / {t} has caveat [{w.get('code')}] "
                                 f"{w.get('message', '')}")
    if metric in ("nuclear_norm", "nuclear_norm_exact") and len(results) > 1:
        try:
            orders = [[row["model"] for row in rank_models(results, m, task, layer, False)]
                      for m in ("nuclear_norm", "nuclear_norm_exact")]
        except MatrixEvalError:
            orders = []
        if orders and orders[0] != orders[1]:
            notes.append(f"ranking by {metric}: [{NUCLEAR_ORDER_DISAGREES}] nuclear_norm orders the models "
                         f"{' > '.join(orders[0])} but nuclear_norm_exact {' > '.join(orders[1])} (best first); "
                         "the approximation (top-min(N, d) columns) changes the conclusion")
    return notes
