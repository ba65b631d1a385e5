"""Loading a task: rows from the package, the hub or a local file, turned into Documents."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import MatrixEvalError
from .fields import MissingField, get
from .readers import Row, describe_error, read_rows
from .registry import TaskRecipe, get_task, task_names
from .specs import TaskSpec

__all__ = ["Document", "Task", "load_task", "SKIP_REASONS"]

logger = logging.getLogger(__name__)

OnError = Literal["skip", "fail"]

# Reasons a record is dropped. The first four are errors in the data (on_error decides); the last two are
# records that simply have no text for this task and are always dropped.
SKIP_REASONS = (
    "malformed_line",
    "malformed_record",
    "missing_field",
    "invalid_record",
    "empty_text",
    "no_text_from_recipe",
)
_ERROR_REASONS = frozenset(SKIP_REASONS[:4])
_MAX_WARNINGS = 5


@dataclass(frozen=True)
class Document:
    doc_id: int  # index of the record in its source (stable under sampling and limits)
    text: str  # the text the model reads
    record: Mapping[str, Any]  # the raw source record
    # Text read before `text` as context only: its tokens condition the model but enter no metric
    # (a prompt before a QA pair, an instruction before a response, a question before a choice).
    # None: a plain document. A string, even "": `text` is a continuation whose tokens alone are measured.
    context: str | None = None


@dataclass
class Task:
    """A loaded task. Invariant: n_records == len(documents) + sum(skipped.values())."""

    name: str
    source: str  # hub path, file path, or "builtin"
    documents: list[Document]
    skipped: dict[str, int]  # reason -> number of records dropped (see SKIP_REASONS)
    n_records: int  # records read (after sampling; reading stops once `limit` documents are kept)
    recipe: TaskRecipe | None = field(default=None, repr=False)  # None for a plain file


class _Skip(Exception):
    def __init__(self, reason: str, message: str = ""):
        super().__init__(message)
        self.reason = reason


class _HubRows(Sequence[Row]):
    """A hub dataset as rows, with random access (for sampling) and lazy iteration."""

    def __init__(self, dataset: Any, where: str):
        self._ds, self._where = dataset, where

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> Row:  # type: ignore[override]
        return Row(i, f"{self._where} record {i}", self._ds[i])

    def __iter__(self) -> Iterator[Row]:
        for i, record in enumerate(self._ds):
            yield Row(i, f"{self._where} record {i}", record)


def _hub_rows(recipe: TaskRecipe) -> _HubRows:
    import datasets

    try:
        dataset = datasets.load_dataset(recipe.hf_path, recipe.hf_name, split=recipe.split)
    except Exception as err:  # offline, missing, gated, renamed: all mean "give a local copy"
        raise MatrixEvalError(
            f"could not load data set {recipe.hf_path!r} for task {recipe.name!r} ({describe_error(err)}); "
            f"pass a local copy with {recipe.name}=LOCAL_FILE"
        ) from None
    return _HubRows(dataset, recipe.hf_path)


def _open(spec: TaskSpec, recipe: TaskRecipe | None) -> tuple[str, Iterable[Row]]:
    if spec.path is not None:
        return spec.path, read_rows(spec.path, spec.name)
    assert recipe is not None
    if recipe.builtin is not None:
        return "builtin", [Row(i, f"{recipe.name} record {i}", r) for i, r in enumerate(recipe.builtin())]
    if recipe.hf_path is not None:
        return recipe.hf_path, _hub_rows(recipe)
    raise MatrixEvalError(f"task {spec.name!r} has no built-in or hub data; pass a file with {spec.name}=LOCAL_FILE")


def _sample(rows: Iterable[Row], size: int, seed: int) -> Iterator[Row]:
    """A seeded random sample of `size` rows, in sampled order (a smaller limit keeps a prefix of it)."""
    rows = rows if isinstance(rows, Sequence) else list(rows)
    order = random.Random(seed).sample(range(len(rows)), min(size, len(rows)))
    return (rows[i] for i in order)


def _plain_text(name: str) -> Callable[[Mapping[str, Any]], str]:
    def to_text(record: Mapping[str, Any]) -> str:
        value = get(record, name)
        return "" if value is None else value

    return to_text


def _detect_text_field(record: Mapping[str, Any], where: str) -> str:
    if "text" in record:
        return "text"
    strings = [k for k, v in record.items() if isinstance(v, str)]
    if len(strings) == 1:
        return strings[0]
    raise MatrixEvalError(
        f"{where}: cannot tell which field holds the text (fields: {', '.join(map(str, record)) or 'none'}); "
        "pass --text_field NAME"
    )


def _text(row: Row, to_text: Callable[[Mapping[str, Any]], Any] | None, task: str) -> str:
    """The document text of `row`, or _Skip with the reason it has none."""
    if row.problem is not None:
        raise _Skip(*row.problem)
    assert row.record is not None and to_text is not None
    try:
        text = to_text(row.record)
    except MissingField as err:
        present = ", ".join(map(str, row.record)) or "none"
        raise _Skip(
            "missing_field",
            f"{row.where}: task {task!r} needs field {err.field} (fields present: {present}); "
            "fix the data, pass --text_field, or use on_error='skip' to drop such records",
        ) from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise _Skip(
            "invalid_record",
            f"{row.where}: task {task!r} cannot read this record ({describe_error(err)}); "
            "fix the data or use on_error='skip' to drop such records",
        ) from None
    if text is None:
        raise _Skip("no_text_from_recipe")
    if not isinstance(text, str):
        raise _Skip(
            "invalid_record",
            f"{row.where}: the text for task {task!r} is a {type(text).__name__}, not a string; "
            "pass --text_field naming a text field",
        )
    if not text.strip():
        raise _Skip("empty_text")
    return text


def _check_options(limit: int | None, on_error: str) -> None:
    if on_error not in ("skip", "fail"):
        raise MatrixEvalError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise MatrixEvalError(f"limit must be a positive number of documents (or None for all), got {limit!r}")


def _counts(skipped: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(skipped.items())) or "none"


def load_task(
    spec: TaskSpec,
    *,
    text_field: str | None = None,
    limit: int | None = None,
    seed: int = 1234,
    on_error: OnError = "fail",
) -> Task:
    """Load the documents of one task.

    A spec naming a registered recipe uses it (on its built-in data, the hub, or `spec.path`); any other
    spec with a path is a plain file whose text is `text_field`, else `text`, else its only string field.
    `text_field` overrides the recipe's text. Sampling recipes draw with `random.Random(seed)` first, then the
    first `limit` usable documents are kept. Records with no usable text are dropped and counted in
    `Task.skipped`; bad records (malformed, missing field) raise unless `on_error="skip"`.
    """
    _check_options(limit, on_error)
    recipe = get_task(spec.name) if spec.path is None or spec.name in task_names() else None
    source, rows = _open(spec, recipe)
    if recipe is not None and recipe.sample_size is not None:
        rows = _sample(rows, recipe.sample_size, seed)
    to_text = _plain_text(text_field) if text_field is not None else recipe.to_text if recipe else None

    documents: list[Document] = []
    skipped: Counter[str] = Counter()
    n_records = 0
    for row in rows:
        if limit is not None and len(documents) >= limit:
            break
        n_records += 1
        if to_text is None and row.record is not None:
            to_text = _plain_text(_detect_text_field(row.record, row.where))
        try:
            documents.append(Document(row.index, _text(row, to_text, spec.name), row.record))
        except _Skip as skip:
            if skip.reason in _ERROR_REASONS:
                if on_error == "fail":
                    raise MatrixEvalError(str(skip)) from None
                if sum(skipped[r] for r in _ERROR_REASONS) < _MAX_WARNINGS:
                    logger.warning("skipping %s", skip)
            skipped[skip.reason] += 1

    if skipped:
        kept = len(documents)
        logger.info("task %s: kept %d of %d records; skipped %s", spec.name, kept, n_records, _counts(skipped))
    if not documents:
        raise MatrixEvalError(
            f"task {spec.name!r} has no usable documents ({n_records} records read from {source}; "
            f"skipped: {_counts(skipped)}); check the data or --text_field"
        )
    return Task(spec.name, source, documents, dict(skipped), n_records, recipe)
