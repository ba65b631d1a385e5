"""Task recipes as data: where a data set lives and which fields make the text."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import MatrixEvalError

__all__ = ["TaskRecipe", "register_task", "get_task", "list_tasks", "task_names"]

Record = Mapping[str, Any]

TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class TaskRecipe:
    """One data set: its location and how a record becomes the text the model reads.

    `to_text` returns None when a record is not usable by this recipe (e.g. dolly without context);
    `to_qa` (optional) splits a record into (question, answer) for experiments that need them apart.
    `sample_size` recipes take a seeded random sample of that many records before any limit, drawn by
    ``random.Random(seed).sample(range(n_records), sample_size)``; `sample_seed` is the recipe's own seed
    (e.g. 123, the reference code's ``random.seed(123)``), None for the loader's default.
    """

    name: str
    description: str
    fields: tuple[str, ...]
    to_text: Callable[[Record], str | None] | None  # None: the field `text`, else the record's only string field
    hf_path: str | None = None
    hf_name: str | None = None
    split: str = "train"
    sample_size: int | None = None
    sample_seed: int | None = None
    builtin: Callable[[], list[Record]] | None = None
    to_qa: Callable[[Record], tuple[str, str] | None] | None = None
    # Token controls and scoring mode a task may set (task files: min_tokens, max_tokens, output_type). None/False:
    # the run's own flags decide. rolling: loss/perplexity over every token (lm-eval's loglikelihood_rolling).
    min_tokens: int | None = None
    max_tokens: int | None = None
    rolling: bool = False
    # Rolling mode: the text whose words and bytes word_perplexity etc. count (None: the scored text, as lm-eval's
    # default; its wikitext counts the page before detokenisation).
    count_text: Callable[[Record], str] | None = None
    # From task files (data/taskfile.py; the built-ins are such files too): the text read before each document as
    # context only (Document.context), a local data file or folder, the hub's data_files, a .txt split, the
    # metrics a run measures when it names none, and the task file itself (None for a recipe made in code).
    to_context: Callable[[Record], str | None] | None = None
    local_path: str | None = None
    data_files: str | None = None
    txt_split: str | None = None
    metrics: tuple[str, ...] | None = None
    file: str | None = None


_REGISTRY: dict[str, TaskRecipe] = {}


def register_task(recipe: TaskRecipe) -> TaskRecipe:
    """Add `recipe` to the registry (a name may be registered once) and return it."""
    if not TASK_NAME.match(recipe.name):
        raise MatrixEvalError(
            f"invalid task name {recipe.name!r}; use letters, digits, '_' and '-', starting with a letter or '_'"
        )
    if recipe.name in _REGISTRY:
        raise MatrixEvalError(f"task {recipe.name!r} is already registered; pick another name")
    if recipe.sample_size is not None and recipe.sample_size < 1:
        raise MatrixEvalError(f"task {recipe.name!r}: sample_size must be a positive number, got {recipe.sample_size}")
    _REGISTRY[recipe.name] = recipe
    return recipe


def task_names() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskRecipe:
    """The recipe called `name`, or a one-line error suggesting the closest valid name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    names = task_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise MatrixEvalError(
        f"unknown task {name!r}; {hint}Valid tasks: {', '.join(names)} (or give a data file path, or NAME=LOCAL_FILE)"
    )


def list_tasks() -> list[TaskRecipe]:
    """All registered recipes, sorted by name."""
    return [_REGISTRY[n] for n in task_names()]
