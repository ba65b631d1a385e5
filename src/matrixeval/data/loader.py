"""Loading a task: rows from the package, the hub or a local file, turned into Documents."""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import MatrixEvalError
from .fields import MissingField, get_path
from .readers import DatasetRows
from .readers import Row, describe_error, read_rows
from .registry import TaskRecipe, get_task, task_names
from .specs import TaskSpec
from .taskfile import BUILTIN_TASKS_DIR

__all__ = ["DEFAULT_SAMPLE_SEED", "Corpus", "Document", "Task", "load_task", "open_corpus", "sample_fields",
           "sample_seed_for", "SKIP_REASONS"]

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
# The seed of a sampling recipe's draw when neither the caller (--sample_seed) nor the recipe names one.
DEFAULT_SAMPLE_SEED = 1234


@dataclass(frozen=True)
class Document:
    doc_id: int  # index of the record in its source (stable under sampling and limits)
    text: str  # the text the model reads
    record: Mapping[str, Any]  # the raw source record
    # Text read before `text` as context only: its tokens condition the model but enter no metric
    # (a prompt before a QA pair, an instruction before a response, a question before a choice).
    # None: a plain document. A string, even "": `text` is a continuation whose tokens alone are measured.
    context: str | None = None
    where: str = ""  # the source position, "FILE:LINE" or "SOURCE record N", for samples files and messages


# Fields that identify a source record, looked up in this order for the samples files' `source_id`.
ID_FIELDS = ("question_id", "id", "ID", "_id", "uid", "idx", "example_id")
SAMPLE_TEXT_CHARS = 2000


def sample_fields(doc: Document) -> dict[str, Any]:
    """What a `--log_samples` row says about its document: the first SAMPLE_TEXT_CHARS characters of the text,
    its length and sha256 (of the UTF-8 text, whole), where it came from and the record's id field if any."""
    fields: dict[str, Any] = {
        "doc": doc.text[:SAMPLE_TEXT_CHARS],
        "doc_chars": len(doc.text),
        "doc_sha256": hashlib.sha256(doc.text.encode("utf-8")).hexdigest(),
        "source": doc.where,
    }
    if doc.context is not None:
        fields["context"] = doc.context[:SAMPLE_TEXT_CHARS]
    ids = [doc.record[k] for k in ID_FIELDS if isinstance(doc.record.get(k), (str, int))]
    if ids:
        fields["source_id"] = ids[0]
    return fields


@dataclass
class Task:
    """A loaded task. Invariant: n_records == len(documents) + sum(skipped.values())."""

    name: str
    source: str  # hub path, file path, or "builtin"
    documents: list[Document]
    skipped: dict[str, int]  # reason -> number of records dropped (see SKIP_REASONS)
    n_records: int  # records read (after sampling; reading stops once `limit` documents are kept)
    recipe: TaskRecipe | None = field(default=None, repr=False)  # None for a plain file
    sample: tuple[int, int] | None = None  # (size, seed) of the recipe's random sample, None when not sampled


class _Skip(Exception):
    def __init__(self, reason: str, message: str = ""):
        super().__init__(message)
        self.reason = reason


def _hub_rows(recipe: TaskRecipe) -> DatasetRows:
    import datasets

    try:
        extra = {"data_files": recipe.data_files} if recipe.data_files else {}
        dataset = datasets.load_dataset(recipe.hf_path, recipe.hf_name, split=recipe.split, **extra)
    except Exception as err:  # offline, missing, gated, renamed: all mean "give a local copy"
        raise MatrixEvalError(
            f"could not load data set {recipe.hf_path!r} for task {recipe.name!r} ({describe_error(err)}); "
            f"pass a local copy with {recipe.name}=LOCAL_FILE"
        ) from None
    return DatasetRows(dataset, recipe.hf_path)


def _open(spec: TaskSpec, recipe: TaskRecipe | None, txt_split: str = "blank") -> tuple[str, Iterable[Row]]:
    if recipe is not None and recipe.txt_split is not None:
        txt_split = recipe.txt_split  # the task file's own split wins over the run's
    split = recipe.split if recipe is not None else None
    if spec.path is not None:
        return spec.path, read_rows(spec.path, spec.name, txt_split=txt_split, split=split)
    assert recipe is not None
    if recipe.builtin is not None:
        return "builtin", [Row(i, f"{recipe.name} record {i}", r) for i, r in enumerate(recipe.builtin())]
    if recipe.local_path is not None:
        return recipe.local_path, read_rows(recipe.local_path, spec.name, txt_split=txt_split, split=split)
    if recipe.hf_path is not None:
        return recipe.hf_path, _hub_rows(recipe)
    raise MatrixEvalError(f"task {spec.name!r} has no built-in or hub data; pass a file with {spec.name}=LOCAL_FILE")


def _sample(rows: Iterable[Row], size: int, seed: int) -> Iterator[Row]:
    """A seeded random sample of `size` rows, in sampled order (a smaller limit keeps a prefix of it).

    ``random.Random(seed).sample(range(n), size)`` draws exactly the indices of the reference code's
    ``random.seed(seed); random.sample(range(n), size)``."""
    rows = rows if isinstance(rows, Sequence) else list(rows)
    order = random.Random(seed).sample(range(len(rows)), min(size, len(rows)))
    return (rows[i] for i in order)


def _sample_plan(recipe: TaskRecipe | None, sample_size: int | None, sample_seed: int | None) -> tuple[int, int] | None:
    """(size, seed) of the recipe's sample: the caller's values, else the recipe's, else DEFAULT_SAMPLE_SEED."""
    if sample_size is not None and (not isinstance(sample_size, int) or sample_size < 1):
        raise MatrixEvalError(f"sample_size must be a positive number of records, got {sample_size!r}")
    if sample_seed is not None and not isinstance(sample_seed, int):
        raise MatrixEvalError(f"sample_seed must be an integer, got {sample_seed!r}")
    if recipe is None or recipe.sample_size is None:
        return None  # only recipes that sample take a sample; --limit cuts the others
    size = recipe.sample_size if sample_size is None else sample_size
    return size, sample_seed_for(recipe, sample_seed)


def sample_seed_for(recipe: TaskRecipe | None, sample_seed: int | None) -> int:
    """The seed of a recipe's random draw: `sample_seed`, else the recipe's own (123 for the _reference
    variants), else DEFAULT_SAMPLE_SEED."""
    if sample_seed is not None:
        return sample_seed
    own = recipe.sample_seed if recipe is not None else None
    return DEFAULT_SAMPLE_SEED if own is None else own


def _plain_text(name: str) -> Callable[[Mapping[str, Any]], str]:
    def to_text(record: Mapping[str, Any]) -> str:
        value = get_path(record, name)
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


def _convert(row: Row, fn: Callable[[Mapping[str, Any]], Any], task: str, origin: str | None) -> Any:
    """`fn(record)`, or _Skip naming the field it lacks; `origin` ("FILE: KEY") says which task file key read it."""
    assert row.record is not None
    told = f" (read by {origin})" if origin else ""
    try:
        return fn(row.record)
    except MissingField as err:
        present = ", ".join(map(str, row.record)) or "none"
        raise _Skip(
            "missing_field",
            f"{row.where}: task {task!r} needs field {err.field}{told} (fields present: {present}); "
            "fix the data, pass --text_field, or use on_error='skip' to drop such records",
        ) from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise _Skip(
            "invalid_record",
            f"{row.where}: task {task!r} cannot read this record{told} ({describe_error(err)}); "
            "fix the data or use on_error='skip' to drop such records",
        ) from None


def _text(row: Row, to_text: Callable[[Mapping[str, Any]], Any] | None, task: str, origin: str | None = None) -> str:
    """The document text of `row`, or _Skip with the reason it has none."""
    if row.problem is not None:
        raise _Skip(*row.problem)
    assert row.record is not None and to_text is not None
    text = _convert(row, to_text, task, origin)
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


def _context(row: Row, to_context, task: str, origin: str | None) -> str | None:
    """The context a task file's doc_to_context reads for `row` (None: none, a plain document)."""
    if to_context is None:
        return None
    context = _convert(row, to_context, task, origin)
    if context is not None and not isinstance(context, str):
        raise _Skip("invalid_record", f"{row.where}: the context for task {task!r} is a {type(context).__name__}, "
                                      f"not a string{f' (read by {origin})' if origin else ''}")
    return context


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
    sample_size: int | None = None,
    sample_seed: int | None = None,
    on_error: OnError = "fail",
    seed: int | None = None,
    txt_split: str = "blank",
) -> Task:
    """Load the documents of one task.

    A spec naming a registered recipe uses it (on its built-in data, the hub, or `spec.path`); any other
    spec with a path is a plain file whose text is `text_field`, else `text`, else its only string field.
    `text_field` overrides the recipe's text. Sampling recipes (wikipedia, openwebtext2 and their
    ``_reference`` variants) first draw `sample_size` records (default: the recipe's, 10,000) with
    ``random.Random(sample_seed)`` (default: the recipe's own seed, else DEFAULT_SAMPLE_SEED); other recipes
    ignore both. Then the first `limit` usable documents are kept. Records with no usable text are dropped and
    counted in `Task.skipped`; bad records (malformed, missing field) raise unless `on_error="skip"`.
    `seed` is an older name of `sample_seed` (used only when `sample_seed` is None). `text_field` (and the
    spec's own, which wins) is a field path: ``text`` or ``choices.0.turns.0.content``. `txt_split` cuts a
    .txt file: ``blank`` (paragraphs), ``line`` or ``wikitext`` (articles; see readers.TXT_SPLITS).
    """
    _check_options(limit, on_error)
    recipe = _recipe(spec)
    source, rows = _open(spec, recipe, txt_split)
    text_field = spec.text_field or text_field
    plan = _sample_plan(recipe, sample_size, sample_seed if sample_seed is not None else seed)
    if plan is not None:
        rows = _sample(rows, *plan)
    to_text = _plain_text(text_field) if text_field is not None else recipe.to_text if recipe else None
    documents, skipped, n_records = _collect(rows, to_text, spec.name, limit, on_error, recipe,
                                             user_text=text_field is not None)
    if not documents:
        raise MatrixEvalError(
            f"task {spec.name!r} has no usable documents ({n_records} records read from {source}; "
            f"skipped: {_counts(skipped)}); check the data or --text_field"
        )
    return Task(spec.name, source, documents, dict(skipped), n_records, recipe, plan)


@dataclass
class Corpus:
    """Every record of a task's source, without the recipe's random sample: what `experiment sampling` draws
    fresh subsets from. Only the records drawn are turned into documents (:meth:`take`)."""

    spec: TaskSpec
    source: str
    rows: Sequence[Row]
    recipe: TaskRecipe | None
    to_text: Callable[[Mapping[str, Any]], Any] | None
    on_error: OnError
    user_text: bool = False  # the text is --text_field's (or the spec's FILE:FIELD), not the recipe's

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: Iterable[int]) -> Task:
        """The documents of the records at `indices` (positions in the corpus, in ascending order; the doc_id
        of each is its index in the source), records without usable text dropped and counted."""
        chosen = sorted(set(indices))
        if chosen and not (0 <= chosen[0] and chosen[-1] < len(self.rows)):
            raise MatrixEvalError(f"record index out of range for the {len(self.rows)} records of {self.spec.name!r}")
        documents, skipped, n_records = _collect((self.rows[i] for i in chosen), self.to_text, self.spec.name,
                                                 None, self.on_error, self.recipe, user_text=self.user_text)
        return Task(self.spec.name, self.source, documents, dict(skipped), n_records, self.recipe)


def open_corpus(
    spec: TaskSpec,
    *,
    text_field: str | None = None,
    limit: int | None = None,
    on_error: OnError = "fail",
    txt_split: str = "blank",
) -> Corpus:
    """The whole corpus of a task, for drawing subsets: all records of its source (the hub data set's split,
    the file, the built-in data), the recipe's sample not applied; with `limit`, the records up to and
    including the `limit`-th usable document. Hub data sets are read lazily, so nothing but the records
    drawn is converted. `text_field` and `txt_split` as in :func:`load_task`."""
    _check_options(limit, on_error)
    recipe = _recipe(spec)
    source, rows = _open(spec, recipe, txt_split)
    text_field = spec.text_field or text_field
    rows = rows if isinstance(rows, Sequence) else list(rows)
    to_text = _plain_text(text_field) if text_field is not None else recipe.to_text if recipe else None
    if to_text is None and len(rows) and rows[0].record is not None:
        to_text = _plain_text(_detect_text_field(rows[0].record, rows[0].where))
    if limit is not None:
        documents, _, n_records = _collect(rows, to_text, spec.name, limit, on_error, recipe,
                                           user_text=text_field is not None)
        if documents:
            rows = _Prefix(rows, n_records)
    if not len(rows):
        raise MatrixEvalError(f"task {spec.name!r} has no records ({source}); check the data")
    return Corpus(spec, source, rows, recipe, to_text, on_error, user_text=text_field is not None)


class _Prefix(Sequence[Row]):
    def __init__(self, rows: Sequence[Row], n: int):
        self._rows, self._n = rows, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Row:  # type: ignore[override]
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._rows[i]


def _recipe(spec: TaskSpec) -> TaskRecipe | None:
    if spec.recipe is not None:
        return spec.recipe
    return get_task(spec.name) if spec.path is None or spec.name in task_names() else None


def _origin(recipe: TaskRecipe | None, key: str) -> str | None:
    """"FILE: KEY" for a user's task file (messages about a built-in name the task alone)."""
    if recipe is None or recipe.file is None or Path(recipe.file).parent == BUILTIN_TASKS_DIR:
        return None
    return f"{recipe.file}: {key}"


def _collect(rows: Iterable[Row], to_text, name: str, limit: int | None, on_error: str,
             recipe: TaskRecipe | None = None, *, user_text: bool = False) -> tuple[list[Document], Counter[str], int]:
    """Documents from rows until `limit` are kept: (documents, skip reasons counted, records read). A recipe's
    `to_context` gives each document its context (read, never measured)."""
    to_context = recipe.to_context if recipe is not None else None
    text_origin = None if user_text else _origin(recipe, "doc_to_text")
    context_origin = _origin(recipe, "doc_to_context")
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
            text = _text(row, to_text, name, text_origin)
            context = _context(row, to_context, name, context_origin)
            documents.append(Document(row.index, text, row.record, context=context, where=row.where))
        except _Skip as skip:
            # A user's task file whose doc_to_text/doc_to_context cannot read the very first record is wrong, not
            # the record: an error even under on_error="skip", naming the file and the key.
            told = skip.reason in ("missing_field", "invalid_record") and n_records == 1 and (
                text_origin is not None or context_origin is not None) and "(read by " in str(skip)
            if skip.reason in _ERROR_REASONS:
                if on_error == "fail" or told:
                    raise MatrixEvalError(str(skip)) from None
                if sum(skipped[r] for r in _ERROR_REASONS) < _MAX_WARNINGS:
                    logger.warning("skipping %s", skip)
            skipped[skip.reason] += 1
    if skipped:
        logger.info("task %s: kept %d of %d records; skipped %s", name, len(documents), n_records, _counts(skipped))
    return documents, skipped, n_records
