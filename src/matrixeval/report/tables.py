"""Render rows (lists of dicts) as aligned Markdown or write them as CSV.

Markdown is for people: floats get 4 significant digits (``0.6123``, ``120.5``, ``22.21``, ``0.004123``), integers
get thousands separators (``162,322,944``), numeric columns are right-aligned. CSV is for programs: full
precision, no separators. A missing cell is empty in both.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..engine.files import write_text_atomic
from ..metric_info import DERIVED, METRICS

__all__ = ["columns_of", "format_value", "results_markdown", "results_rows", "to_markdown", "warnings_markdown",
           "write_csv"]

DEFAULT_SIGNIFICANT = 4
# Columns whose floats read better with fewer digits.
SIGNIFICANT_BY_SUFFIX = {"_p": 2, "_stderr": 2}


def columns_of(rows: Sequence[Mapping]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def format_value(value, column: str = "", significant: int | None = None) -> str:
    """One Markdown cell: ``""`` for None, ``nan`` for NaN, ints with separators, floats to ``significant``
    digits (default 4; 2 for ``*_stderr`` and ``*_p`` columns)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if significant is None:
            suffix = next((s for s in SIGNIFICANT_BY_SUFFIX if column.endswith(s)), None)
            significant = SIGNIFICANT_BY_SUFFIX.get(suffix, DEFAULT_SIGNIFICANT)
        return f"{value:.{significant}g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[Mapping], columns: Sequence[str] | None = None,
                significant: Mapping[str, int] | None = None) -> str:
    """A GitHub-flavoured Markdown table with one line per row, padded so the columns line up.

    Args:
        rows: dicts; keys missing from a row give empty cells.
        columns: which keys, in order (default: :func:`columns_of`).
        significant: per-column significant digits for floats, overriding the defaults.

    Example:
        >>> print(to_markdown([{"model": "a", "matrix_entropy": 0.612345}]))
        | model | matrix_entropy |
        | :---- | -------------: |
        | a     |         0.6123 |
    """
    columns = list(columns) if columns is not None else columns_of(rows)
    significant = dict(significant or {})
    cells = [[format_value(row.get(c), c, significant.get(c)) for c in columns] for row in rows]
    numeric = [_is_numeric_column(rows, c) for c in columns]
    widths = [max([len(c), 3, *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]

    def line(values):
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    dashes = [("-" * (w - 1) + ":") if num else (":" + "-" * (w - 1)) for w, num in zip(widths, numeric)]
    rule = "| " + " | ".join(dashes) + " |"
    return "\n".join([line(columns), rule, *(line(values) for values in cells)])


def write_csv(path: str | Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    """Write rows to ``path`` as CSV with a header line; floats keep full precision, nested values become JSON.

    Returns the path written (parent folders are created).
    """
    columns = list(columns) if columns is not None else columns_of(rows)
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in columns})
    return write_text_atomic(path, handle.getvalue())


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _is_numeric_column(rows: Sequence[Mapping], column: str) -> bool:
    values = [row.get(column) for row in rows if row.get(column) is not None]
    return bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


# Every column a metric of the registry writes, each metric followed by its derived columns, in the registry's
# order: a metric added to `metric_info.METRICS` appears in the table without a change here.
_SHOWN = tuple(col for m in METRICS for col in (m, *(c for c, (base, _) in DERIVED.items() if base == m)))


def results_rows(out: Mapping) -> list[dict]:
    """One row per task × layer × metric of a results dict (`matrixeval.evaluate`'s return value)."""
    hib = out.get("higher_is_better", {})
    rows = []
    for task, entry in out["results"].items():
        for layer, values in entry["by_layer"].items():
            merged = dict(values)
            if int(layer) == entry["primary_layer"]:
                merged.update({k: v for k, v in entry.items() if k.startswith(("loss", "perplexity"))
                               or k in ("word_perplexity", "byte_perplexity", "bits_per_byte")})
            for metric in _SHOWN:
                if metric not in merged:
                    continue
                base = metric.split("_token_weighted")[0].removesuffix("_b").removesuffix("_c")
                arrow = {True: "↑", False: "↓"}.get(hib.get(metric, hib.get(base)), "")
                rows.append({"task": task, "layer": int(layer), "metric": f"{metric} {arrow}".strip(),
                             "value": merged[metric], "stderr": merged.get(f"{metric}_stderr"),
                             "n": values["n_samples"]})
    return rows


def results_markdown(out: Mapping) -> str:
    """The run's table for stdout: every metric of every task and layer, with standard errors, and the tasks'
    warnings under it."""
    table = to_markdown(results_rows(out), ["task", "layer", "metric", "value", "stderr", "n"])
    notes = warnings_markdown(out)
    return f"{table}\n\n{notes}" if notes else table


def warnings_markdown(out: Mapping) -> str:
    """The caveats of every task of a results dict as a Markdown list (``""`` when there are none)."""
    lines = [f"- **{task}** `{w['code']}`: {w['message']}; {w['advice']}"
             for task, entry in out.get("results", {}).items() if isinstance(entry, Mapping)
             for w in entry.get("warnings", [])]
    return "\n".join(["Warnings:", "", *lines]) if lines else ""
